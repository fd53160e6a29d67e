//! `shardkit proxy`: the cache ambassador, a nutcracker drop-in. Flags,
//! signals and logging only; the proxy is `shardkit::proxy`.

use shardkit::proxy::{Proxy, ProxyConfig, ProxyOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `shardkit proxy`.
#[derive(clap::Args, Debug)]
pub(crate) struct ProxyArgs {
    /// nutcracker's YAML (every pool is served), plus shardkit's own pool keys (see the README).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration and exit (nutcracker's -t).
    #[arg(long, short = 't')]
    test_conf: bool,
    /// Worker threads (default: the number of cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Serve nutcracker's JSON stats here (e.g. 127.0.0.1:22222); nothing listens unless given.
    #[arg(long, value_name = "HOST:PORT")]
    stats_addr: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics; nothing listens unless given.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
}

/// Runs the proxy until SIGINT or SIGTERM; SIGHUP reloads the file.
pub(crate) fn run(args: ProxyArgs) -> ExitCode {
    let fail = |e: shardkit::Error| {
        eprintln!("shardkit: error: {e}");
        ExitCode::from(1)
    };
    let config = match ProxyConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if args.test_conf {
        println!(
            "shardkit: configuration file '{}' syntax is ok ({} pools)",
            args.config.display(),
            config.pools.len()
        );
        return ExitCode::SUCCESS;
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    // The proxy runs on worker threads of its own; the shared runtime only
    // waits for signals.
    if let Err(e) = shardkit::runtime::set_threads(1) {
        return fail(e);
    }
    let rt = match shardkit::runtime::shared() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    // The handlers go in before anything listens: a HUP sent as soon as the
    // port answers must reload, not kill (SIGHUP's default).
    let Some(crate::signals::ServerSignals {
        mut hup,
        mut term,
        mut int,
    }) = crate::signals::install(rt)
    else {
        return ExitCode::from(1);
    };
    let options = ProxyOptions {
        stats_addr: args.stats_addr,
        metrics_addr: args.metrics_addr,
        threads: Some(threads),
    };
    let proxy = match Proxy::start(config, options) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    for (pool, addr) in proxy.listening() {
        eprintln!("shardkit proxy: pool {pool:?} listening on {addr}");
    }
    if let Some(a) = proxy.stats_addr() {
        eprintln!("shardkit proxy: stats on {a}");
    }
    if let Some(a) = proxy.metrics_addr() {
        eprintln!("shardkit proxy: metrics on http://{a}/metrics");
    }
    let path = args.config;
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    // A bad file is refused and the running config kept.
                    match ProxyConfig::load(&path).and_then(|c| proxy.reload(c)) {
                        Ok(()) => eprintln!("shardkit proxy: reloaded {}", path.display()),
                        Err(e) => eprintln!("shardkit proxy: reload refused, keeping the running configuration: {e}"),
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
    });
    eprintln!("shardkit proxy: stopping");
    proxy.stop();
    ExitCode::SUCCESS
}
