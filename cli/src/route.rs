//! `shardkit route`: KEY<TAB>SERVER for keys from the arguments or stdin.

use crate::{CliError, SourceArgs};
use shardkit::Sharder;
use std::ffi::OsString;
use std::io::{self, BufRead, BufWriter, Write};

#[derive(clap::Args, Debug)]
pub(crate) struct RouteArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Print this many distinct servers per key (primary first), TAB-separated.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    replicas: u32,
    /// Keys to route; read from stdin, one per line (LF or CRLF), when none are given.
    #[arg(value_name = "KEY")]
    keys: Vec<OsString>,
}

pub(crate) fn run(args: RouteArgs) -> Result<(), CliError> {
    let sharder = args.source.sharder()?;
    let replicas = args.replicas as usize;
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    if args.keys.is_empty() {
        // Line by line, so input of any size runs in constant memory.
        let mut input = io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            if input
                .read_until(b'\n', &mut line)
                .map_err(CliError::Input)?
                == 0
            {
                break;
            }
            let key = line.strip_suffix(b"\n").unwrap_or(&line);
            let key = key.strip_suffix(b"\r").unwrap_or(key);
            route(&sharder, key, replicas, &mut out)?;
        }
    } else {
        for key in &args.keys {
            route(&sharder, &key_bytes(key)?, replicas, &mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn route(
    sharder: &Sharder,
    key: &[u8],
    replicas: usize,
    out: &mut impl Write,
) -> Result<(), CliError> {
    // Look up before writing, so a failed key leaves no partial line.
    if replicas == 1 {
        let node = sharder.lookup(key)?;
        out.write_all(key)?;
        out.write_all(b"\t")?;
        out.write_all(node.name().as_bytes())?;
    } else {
        let slots = sharder.lookup_n(key, replicas)?;
        out.write_all(key)?;
        for node in slots.into_iter().filter_map(|slot| sharder.node(slot)) {
            out.write_all(b"\t")?;
            out.write_all(node.name().as_bytes())?;
        }
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// Keys are bytes: on Unix an argument is taken as given, UTF-8 or not.
#[cfg(unix)]
fn key_bytes(key: &OsString) -> Result<std::borrow::Cow<'_, [u8]>, CliError> {
    use std::os::unix::ffi::OsStrExt;
    Ok(std::borrow::Cow::Borrowed(key.as_bytes()))
}

/// Elsewhere the OS gives no byte view of an argument, so keys must be text.
#[cfg(not(unix))]
fn key_bytes(key: &OsString) -> Result<std::borrow::Cow<'_, [u8]>, CliError> {
    match key.to_str() {
        Some(s) => Ok(std::borrow::Cow::Borrowed(s.as_bytes())),
        None => Err(shardkit::Error::new(
            shardkit::ErrorKind::InvalidUtf8,
            format!("key {key:?} is not valid Unicode; pass such keys on stdin"),
        )
        .into()),
    }
}
