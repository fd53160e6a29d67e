//! `shardkit http-proxy`: the consistent HTTP sharding proxy. Flags,
//! signals and logging only; the proxy is `shardkit::http_proxy`.

use shardkit::http_proxy::{membership, HttpProxy, HttpProxyConfig, KeySource};
use shardkit::lease::Coordinator;
use shardkit::shard::Algorithm;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `shardkit http-proxy`.
#[derive(clap::Args, Debug)]
pub(crate) struct HttpProxyArgs {
    /// Where to listen (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT")]
    listen: String,
    /// The backends, nginx upstream style: "host:port [weight=N] [down],...".
    #[arg(long, value_name = "LIST", conflicts_with_all = ["upstream_file", "group"], required_unless_present_any = ["upstream_file", "group"])]
    upstream: Option<String>,
    /// Follow the backends registered in this etcd group (`shardkit http-register`) instead of a list.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "upstream_file",
        requires = "endpoints"
    )]
    group: Option<String>,
    /// etcd endpoints for --group, comma-separated host:port.
    #[arg(long, value_name = "LIST")]
    endpoints: Option<String>,
    /// A file holding the backend list (same syntax; `server` lines of an nginx upstream block work); SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    upstream_file: Option<PathBuf>,
    /// Placement algorithm (default ketama:nginx, nginx's `hash ... consistent`); see `shardkit route --help`.
    #[arg(long, value_name = "NAME", default_value = "ketama:nginx")]
    algorithm: String,
    /// The shard key: uri, header:NAME, cookie:NAME, arg:NAME or path:N.
    #[arg(long, value_name = "SOURCE", default_value = "uri")]
    key: String,
    /// Backends tried when connections are refused (the key's, then the next on the ring).
    #[arg(long, value_name = "N", default_value_t = 3)]
    tries: usize,
    /// Backends holding each key: its first N nodes on the ring, one chosen per request by power of two choices over latency.
    #[arg(long, value_name = "N", default_value_t = 1)]
    replicas: usize,
    /// Hedge bodiless GET/HEAD/OPTIONS requests (needs --replicas 2 or more): a copy goes to another replica after the backend's recent p95, the first answer wins, at most 5% extra requests.
    #[arg(long)]
    hedge: bool,
    /// Refused connections in a row that mark a backend down until a probe finds it up.
    #[arg(long, value_name = "N", default_value_t = 1)]
    max_fails: u32,
    /// Seconds to connect to a backend.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    connect_timeout: f64,
    /// Seconds to wait for a backend's response headers (then 504).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    response_timeout: f64,
    /// Seconds to wait for a client's request headers.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    header_timeout: f64,
    /// Largest request head accepted, in bytes (431 above it).
    #[arg(long, value_name = "BYTES", default_value_t = 32768)]
    max_header_bytes: usize,
    /// Client connections at once, at most.
    #[arg(long, value_name = "N", default_value_t = 10000)]
    max_connections: usize,
    /// Name the chosen backend in this response header (for debugging), e.g. X-Shard.
    #[arg(long, value_name = "HEADER")]
    shard_header: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Worker threads (default: the number of cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

fn secs(what: &str, v: f64) -> Result<Duration, shardkit::Error> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        shardkit::Error::invalid(format!(
            "--{what} {v}: must be a non-negative number of seconds"
        ))
    })
}

fn config(args: &HttpProxyArgs) -> Result<HttpProxyConfig, shardkit::Error> {
    let list = match (&args.upstream, &args.upstream_file) {
        (Some(l), _) => l.clone(),
        (None, Some(f)) => read_list(f)?,
        (None, None) => {
            return Err(shardkit::Error::invalid(
                "give --upstream, --upstream-file or --group",
            ))
        }
    };
    let mut cfg = HttpProxyConfig::new(args.listen.clone(), list);
    cfg.algorithm = Algorithm::from_name(&args.algorithm)?;
    cfg.key = KeySource::parse(&args.key)?;
    cfg.tries = args.tries;
    cfg.replicas = args.replicas;
    cfg.hedge = args.hedge.then(shardkit::scatter::HedgeConfig::default);
    cfg.max_fails = args.max_fails;
    cfg.connect_timeout = secs("connect-timeout", args.connect_timeout)?;
    cfg.response_timeout = secs("response-timeout", args.response_timeout)?;
    cfg.header_timeout = secs("header-timeout", args.header_timeout)?;
    cfg.max_header_bytes = args.max_header_bytes;
    cfg.max_connections = args.max_connections;
    cfg.shard_header = args.shard_header.clone();
    cfg.metrics = args.metrics_addr.clone();
    cfg.threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    Ok(cfg)
}

fn read_list(path: &PathBuf) -> Result<String, shardkit::Error> {
    std::fs::read_to_string(path).map_err(|e| {
        shardkit::Error::new(
            shardkit::ErrorKind::Io,
            format!("upstream file {}: {e}", path.display()),
        )
    })
}

/// Runs the proxy until SIGINT or SIGTERM; SIGHUP reloads `--upstream-file`.
pub(crate) fn run(args: HttpProxyArgs) -> ExitCode {
    let fail = |e: shardkit::Error| {
        eprintln!("shardkit: error: {e}");
        ExitCode::from(1)
    };
    // The proxy runs on worker threads of its own; the shared runtime only
    // waits for signals (and follows etcd).
    if let Err(e) = shardkit::runtime::set_threads(1) {
        return fail(e);
    }
    let rt = match shardkit::runtime::shared() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let mut args = args;
    let mut coord = None;
    if let (Some(group), Some(endpoints)) = (&args.group, &args.endpoints) {
        let got = rt.block_on(async {
            let c = Coordinator::connect(endpoints, Duration::from_secs(5)).await?;
            let (list, _) = membership::group_list(&c, group).await?;
            Ok::<_, shardkit::Error>((c, list))
        });
        match got {
            Ok((_, list)) if list.is_empty() => {
                return fail(shardkit::Error::invalid(format!(
                    "group {group:?} has no backends registered (shardkit http-register)"
                )))
            }
            Ok((c, list)) => {
                args.upstream = Some(list);
                coord = Some(c);
            }
            Err(e) => return fail(e),
        }
    }
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // Installed before anything listens: a HUP sent as soon as the port
    // answers must reload, not kill (SIGHUP's default).
    let Some(crate::signals::ServerSignals {
        mut hup,
        mut term,
        mut int,
    }) = crate::signals::install(rt)
    else {
        return ExitCode::from(1);
    };
    let proxy = match HttpProxy::start(cfg) {
        Ok(p) => Arc::new(p),
        Err(e) => return fail(e),
    };
    if let (Some(c), Some(group)) = (coord, args.group.clone()) {
        let p = proxy.clone();
        rt.spawn(async move {
            loop {
                let why = membership::follow(c.clone(), group.clone(), p.clone()).await;
                eprintln!("shardkit http-proxy: following group {group:?}: {why}; again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    eprintln!(
        "shardkit http-proxy: listening on {} ({} by {})",
        proxy.listening(),
        args.algorithm,
        args.key
    );
    if let Some(a) = proxy.metrics_addr() {
        eprintln!("shardkit http-proxy: metrics on http://{a}/metrics");
    }
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let Some(path) = &args.upstream_file else {
                        eprintln!("shardkit http-proxy: SIGHUP: no --upstream-file to reload");
                        continue;
                    };
                    // A bad file is refused and the running list kept.
                    match read_list(path).and_then(|l| proxy.reload(&l)) {
                        Ok(()) => eprintln!("shardkit http-proxy: reloaded {}", path.display()),
                        Err(e) => eprintln!("shardkit http-proxy: reload refused, keeping the running list: {e}"),
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
    });
    eprintln!("shardkit http-proxy: stopping");
    drop(proxy);
    ExitCode::SUCCESS
}

/// Arguments of `shardkit http-register`.
#[derive(clap::Args, Debug)]
pub(crate) struct RegisterArgs {
    /// etcd endpoints, comma-separated host:port.
    #[arg(long, value_name = "LIST")]
    endpoints: String,
    /// The group proxies follow (`shardkit http-proxy --group`).
    #[arg(long, value_name = "NAME")]
    group: String,
    /// This backend, as in an nginx upstream list: "host:port [weight=N]".
    #[arg(long, value_name = "SERVER")]
    server: String,
    /// Seconds the registration outlives this process if it dies.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    ttl: u64,
}

/// Registers a backend until SIGINT or SIGTERM (deregistered at once) or
/// the session's loss (exit 1); a crash leaves it registered for the TTL.
pub(crate) fn register(args: RegisterArgs) -> ExitCode {
    let fail = |e: shardkit::Error| {
        eprintln!("shardkit: error: {e}");
        ExitCode::from(1)
    };
    let rt = match shardkit::runtime::shared() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    // SIGHUP is caught and ignored: a registration outlives a closed
    // terminal, as under nohup.
    let Some(crate::signals::ServerSignals {
        hup: _hup,
        mut term,
        mut int,
    }) = crate::signals::install(rt)
    else {
        return ExitCode::from(1);
    };
    rt.block_on(async {
        let coord = match Coordinator::connect(&args.endpoints, Duration::from_secs(5)).await {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let reg = match membership::Registration::register(
            &coord,
            &args.group,
            &args.server,
            Duration::from_secs(args.ttl),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        eprintln!(
            "shardkit http-register: {} registered in group {:?} (ttl {} s)",
            args.server.trim(),
            args.group,
            args.ttl
        );
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            e = reg.session().lost() => return fail(e),
        }
        match reg.close().await {
            Ok(()) => {
                eprintln!("shardkit http-register: deregistered");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    })
}
