//! `shardkit route`: KEY<TAB>SERVER for keys from the arguments or stdin.

use crate::{CliError, SourceArgs};
use std::io::{self, BufRead, BufWriter, Write};

#[derive(clap::Args, Debug)]
pub(crate) struct RouteArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Print this many servers per key (primary first), TAB-separated.
    #[arg(long, default_value_t = 1, value_name = "N")]
    replicas: usize,
    /// Keys to route; read from stdin, one per line, when none are given.
    keys: Vec<String>,
}

pub(crate) fn run(args: RouteArgs) -> Result<(), CliError> {
    let sharder = args.source.sharder()?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let route = |key: &[u8], out: &mut BufWriter<io::StdoutLock<'_>>| -> Result<(), CliError> {
        out.write_all(key)?;
        if args.replicas == 1 {
            out.write_all(b"\t")?;
            out.write_all(sharder.lookup(key)?.name().as_bytes())?;
        } else {
            for slot in sharder.lookup_n(key, args.replicas)? {
                out.write_all(b"\t")?;
                out.write_all(
                    sharder
                        .node(slot)
                        .expect("lookup_n returns live slots")
                        .name()
                        .as_bytes(),
                )?;
            }
        }
        out.write_all(b"\n")?;
        Ok(())
    };
    if args.keys.is_empty() {
        let stdin = io::stdin();
        let mut line = Vec::new();
        let mut input = stdin.lock();
        loop {
            line.clear();
            if input
                .read_until(b'\n', &mut line)
                .map_err(CliError::Output)?
                == 0
            {
                break;
            }
            let key = line.strip_suffix(b"\n").unwrap_or(&line);
            let key = key.strip_suffix(b"\r").unwrap_or(key);
            route(key, &mut out)?;
        }
    } else {
        for key in &args.keys {
            route(key.as_bytes(), &mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}
