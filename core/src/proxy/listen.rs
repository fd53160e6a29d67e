//! The proxy as a whole: one listener per pool, the stats and metrics
//! listeners, reload and shutdown. [`Proxy`] is what the CLI runs and what
//! the bindings start in-process.

use super::config::{Listen, PoolConfig, ProxyConfig};
use super::memcache::Memcache;
use super::pool::{Pool, PoolSlot};
use super::redis::Redis;
use super::session;
use super::stats::{self, BackendView, PoolStats, PoolView};
use super::workers::Workers;
use crate::error::{Error, ErrorKind, Result};
use arc_swap::ArcSwap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Where the proxy reports on itself. Nothing listens unless asked.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// nutcracker's stats port: every connection gets the JSON stats and is
    /// closed (`nutcracker -s`/`-a`).
    pub stats_addr: Option<String>,
    /// HTTP address serving Prometheus text at `/metrics`.
    pub metrics_addr: Option<String>,
    /// Worker threads, each an event loop serving its share of the
    /// clients with its own backend connections; `None`: the process's
    /// thread count ([`crate::runtime::threads`]).
    pub threads: Option<usize>,
}

/// A running proxy. Dropping it (or [`Proxy::stop`]) closes its listeners;
/// client connections already open finish the requests they sent.
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<Vec<Listener>>,
    workers: Workers,
    /// The process that started the proxy: a forked child's copy has no
    /// tasks to wait for.
    home: crate::runtime::Home,
    started: Instant,
    stats_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
}

struct Listener {
    name: String,
    listen: Listen,
    local: String,
    slot: Arc<PoolSlot>,
    stats: Arc<PoolStats>,
    stop: watch::Sender<bool>,
    /// Hears from the accept loop once it has closed the listening socket.
    closed: std::sync::mpsc::Receiver<()>,
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Proxy {
    /// Binds every pool's listener (and the stats and metrics addresses),
    /// then serves on the process's runtime. Fails, with nothing left
    /// listening, if any address cannot be bound.
    pub fn start(config: ProxyConfig, options: ProxyOptions) -> Result<Proxy> {
        let workers = Workers::start(options.threads.unwrap_or_else(crate::runtime::threads))?;
        let started = Self::start_on(config, options, workers.clone());
        if started.is_err() {
            workers.shutdown();
        }
        started
    }

    fn start_on(config: ProxyConfig, options: ProxyOptions, workers: Workers) -> Result<Proxy> {
        let _enter = workers.enter();
        let mut bound = Vec::new();
        for cfg in &config.pools {
            bound.push(bind(cfg)?);
        }
        let (stop, _) = watch::channel(false);
        let stats_listener = options
            .stats_addr
            .as_deref()
            .map(|a| bind_tcp(a, 128, false, "stats address"))
            .transpose()?;
        let metrics_listener = options
            .metrics_addr
            .as_deref()
            .map(|a| bind_tcp(a, 128, false, "metrics address"))
            .transpose()?;
        let mut listeners = Vec::new();
        for (cfg, (b, local)) in config.pools.into_iter().zip(bound) {
            let pool = Pool::build(cfg, None, &workers)?;
            listeners.push(Listener::spawn(pool, b, local, &workers));
        }
        let inner = Arc::new(Inner {
            state: Mutex::new(listeners),
            workers: workers.clone(),
            home: crate::runtime::Home::here(),
            started: Instant::now(),
            stats_addr: stats_listener.as_ref().and_then(|l| l.local_addr().ok()),
            metrics_addr: metrics_listener.as_ref().and_then(|l| l.local_addr().ok()),
            stop,
        });
        if let Some(l) = stats_listener {
            workers.spawn(serve_stats(
                l,
                Arc::downgrade(&inner),
                inner.stop.subscribe(),
            ));
        }
        if let Some(l) = metrics_listener {
            workers.spawn(serve_metrics(
                l,
                Arc::downgrade(&inner),
                inner.stop.subscribe(),
            ));
        }
        Ok(Proxy { inner })
    }

    /// Applies a new configuration without dropping client connections:
    /// pools that stay keep their listeners (and, when their servers are
    /// unchanged, their backend connections); new pools start listening;
    /// removed pools stop. On any error nothing changes.
    pub fn reload(&self, config: ProxyConfig) -> Result<()> {
        let _enter = self.inner.workers.enter();
        let mut state = self.inner.state.lock().expect("proxy state lock");
        // Check and build everything first; commit only when all of it works.
        let mut keep = Vec::new();
        let mut fresh = Vec::new();
        for cfg in config.pools {
            // The same pool on the same address (as configured, or as bound
            // when the first configuration said port 0) keeps its listener.
            let same = |l: &Listener| {
                l.name == cfg.name
                    && (same_address(&l.listen, &cfg.listen)
                        || Listen::Tcp(l.local.clone()) == cfg.listen)
            };
            match state.iter().position(same) {
                Some(i) => {
                    let old = state[i].slot.load();
                    if old.cfg.redis != cfg.redis {
                        return Err(Error::config(format!(
                            "pool {:?}: changing redis on a live listener needs a restart (or a new listen address)",
                            cfg.name
                        )));
                    }
                    let mut cfg = cfg;
                    cfg.listen = state[i].listen.clone();
                    let pool = Pool::build(cfg, Some(&old), &self.inner.workers)?;
                    keep.push((i, pool));
                }
                None => {
                    let taken = state
                        .iter()
                        .any(|l| l.listen == cfg.listen && !config_keeps(&keep, &state, &l.name));
                    if taken {
                        return Err(Error::config(format!(
                            "pool {:?}: listen address {} is still in use by another pool; move or rename in two reloads",
                            cfg.name, cfg.listen
                        )));
                    }
                    let b = bind(&cfg)?;
                    let pool = Pool::build(cfg, None, &self.inner.workers)?;
                    fresh.push((pool, b));
                }
            }
        }
        let mut next = Vec::new();
        let mut kept = vec![false; state.len()];
        for (i, pool) in keep {
            kept[i] = true;
            let l = &state[i];
            if !Arc::ptr_eq(&l.slot.load().servers, &pool.servers)
                || l.slot.load().cfg.hot_keys != pool.cfg.hot_keys
            {
                l.stats.reloads.fetch_add(1, Ordering::Relaxed);
            }
            l.slot.store(Arc::new(pool));
        }
        let mut removed = Vec::new();
        for (i, l) in std::mem::take(&mut *state).into_iter().enumerate() {
            if kept[i] {
                next.push(l);
            } else {
                let _ = l.stop.send(true);
                removed.push(l);
            }
        }
        for (pool, (b, local)) in fresh {
            next.push(Listener::spawn(pool, b, local, &self.inner.workers));
        }
        *state = next;
        drop(state);
        // A removed pool's address is free when reload returns (a caller
        // may move another pool onto it next). The accept loops run on the
        // proxy's workers, so this short wait never waits on itself; the
        // state lock is released first, so scrapes are not held up by it.
        for l in removed {
            let _ = l.closed.recv_timeout(Duration::from_secs(2));
        }
        Ok(())
    }

    /// Each pool's name and the address it listens on (the port chosen by
    /// the system when the configuration said `:0`).
    pub fn listening(&self) -> Vec<(String, String)> {
        let state = self.inner.state.lock().expect("proxy state lock");
        state
            .iter()
            .map(|l| (l.name.clone(), l.local.clone()))
            .collect()
    }

    /// The address pool `pool` listens on. A pool that does not exist is
    /// [`ErrorKind::NotFound`], naming the pools there are.
    pub fn address(&self, pool: &str) -> Result<String> {
        let all = self.listening();
        if let Some((_, addr)) = all.iter().find(|(name, _)| name == pool) {
            return Ok(addr.clone());
        }
        let names: Vec<String> = all.iter().map(|(n, _)| format!("{n:?}")).collect();
        Err(Error::new(
            ErrorKind::NotFound,
            format!("no pool named {pool:?}; pools: {}", names.join(", ")),
        ))
    }

    /// The stats address, once bound.
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.inner.stats_addr
    }

    /// The metrics address, once bound.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.inner.metrics_addr
    }

    /// The Prometheus text exposition, as `/metrics` serves it.
    pub fn metrics(&self) -> String {
        self.inner.render(stats::prometheus)
    }

    /// nutcracker's JSON stats, as the stats address serves them.
    pub fn stats_json(&self) -> String {
        self.inner.stats_json()
    }

    /// Stops listening. Connections already open finish what they sent.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.inner.stop.send(true);
        if let Ok(mut state) = self.inner.state.lock() {
            for l in state.iter() {
                let _ = l.stop.send(true);
            }
            // The slots go with their tasks; dropping ours lets the pools
            // (and their backend connections) end once the tasks have.
            state.clear();
        }
        // A forked child's copy has no threads to stop.
        if !self.inner.home.is_here() {
            return;
        }
        // Clients finish what they sent (a bounded while), then the workers
        // stop, dropping what is left. The caller has its sockets and
        // memory back when this returns, unless it is on an async runtime
        // (which must not block): then a thread of its own does the
        // waiting.
        let workers = self.inner.workers.clone();
        let finish = move || {
            workers.wait_idle(Duration::from_secs(5));
            workers.shutdown();
        };
        if tokio::runtime::Handle::try_current().is_err() {
            finish();
        } else if std::thread::Builder::new()
            .name("shardkit-proxy-stop".into())
            .spawn(finish)
            .is_err()
        {
            // No thread to wait on: stop at once.
            self.inner.workers.shutdown();
        }
    }
}

/// Whether two listen addresses are the same place (a unix socket's mode
/// does not make it another socket).
fn same_address(a: &Listen, b: &Listen) -> bool {
    match (a, b) {
        (Listen::Unix(p, _), Listen::Unix(q, _)) => p == q,
        _ => a == b,
    }
}

fn config_keeps(keep: &[(usize, Pool)], state: &[Listener], name: &str) -> bool {
    keep.iter().any(|(i, _)| state[*i].name == name)
}

impl Inner {
    fn render(&self, f: impl Fn(&[PoolView<'_>]) -> String) -> String {
        let held: Vec<(String, Arc<PoolStats>, Arc<Pool>)> = {
            let state = self.state.lock().expect("proxy state lock");
            state
                .iter()
                .map(|l| (l.name.clone(), l.stats.clone(), l.slot.load_full()))
                .collect()
        };
        let views: Vec<PoolView<'_>> = held
            .iter()
            .map(|(name, stats, pool)| PoolView {
                name,
                stats,
                backends: pool
                    .servers
                    .backends
                    .iter()
                    .map(|b| BackendView {
                        label: b.label(),
                        stats: &b.stats,
                        ejected: b.health.is_ejected(),
                        ejections: b.health.ejections.load(Ordering::Relaxed),
                        ejected_at: b.health.ejected_at.load(Ordering::Relaxed),
                    })
                    .collect(),
                hot_keys: pool.hot.as_ref().map_or_else(Vec::new, |h| h.hot(64)),
            })
            .collect();
        f(&views)
    }

    fn stats_json(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let source = hostname();
        let uptime = self.started.elapsed();
        self.render(|v| stats::nutcracker_json(v, &source, uptime, now))
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl Listener {
    /// Serves a pool built beforehand (so that starting can no longer fail).
    fn spawn(pool: Pool, bound: Bound, local: String, workers: &Workers) -> Listener {
        let (stop, stop_rx) = watch::channel(false);
        let name = pool.cfg.name.clone();
        let listen = pool.cfg.listen.clone();
        let slot = Arc::new(ArcSwap::from_pointee(pool));
        let stats = Arc::new(PoolStats::default());
        let (closed_tx, closed) = std::sync::mpsc::channel();
        let accepting = accept_loop(bound, slot.clone(), stats.clone(), stop_rx, workers.clone());
        workers.spawn(async move {
            accepting.await;
            let _ = closed_tx.send(());
        });
        Listener {
            name,
            listen,
            local,
            slot,
            stats,
            stop,
            closed,
        }
    }
}

fn bind(cfg: &PoolConfig) -> Result<(Bound, String)> {
    match &cfg.listen {
        Listen::Tcp(addr) => {
            let l = bind_tcp(
                addr,
                cfg.backlog,
                cfg.reuseport,
                &format!("pool {:?}", cfg.name),
            )?;
            let local = l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| addr.clone());
            Ok((Bound::Tcp(l), local))
        }
        Listen::Unix(path, mode) => {
            // nutcracker removes a stale socket file before binding.
            if std::fs::symlink_metadata(path)
                .map(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                })
                .unwrap_or(false)
            {
                let _ = std::fs::remove_file(path);
            }
            let l = tokio::net::UnixListener::bind(path).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("pool {:?}: cannot listen on {path}: {e}", cfg.name),
                )
            })?;
            if let Some(mode) = mode {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode));
            }
            Ok((Bound::Unix(l), path.clone()))
        }
    }
}

fn bind_tcp(
    addr: &str,
    backlog: u32,
    reuseport: bool,
    what: &str,
) -> Result<tokio::net::TcpListener> {
    let io = |e: std::io::Error| {
        Error::new(
            ErrorKind::Io,
            format!("{what}: cannot listen on {addr}: {e}"),
        )
    };
    let sa = addr
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| Error::config(format!("{what}: {addr} resolves to no address")))?;
    let sock = if sa.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(io)?;
    sock.set_reuseaddr(true).map_err(io)?;
    if reuseport {
        sock.set_reuseport(true).map_err(io)?;
    }
    sock.bind(sa).map_err(io)?;
    sock.listen(backlog.max(1)).map_err(io)
}

async fn accept_loop(
    bound: Bound,
    slot: Arc<PoolSlot>,
    stats: Arc<PoolStats>,
    mut stop: watch::Receiver<bool>,
    workers: Workers,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = accept(&bound) => match r {
                Ok(conn) => {
                    if let (Conn::Tcp(s), true) = (&conn, slot.load().cfg.tcpkeepalive) {
                        let _ = socket2::SockRef::from(s).set_keepalive(true);
                    }
                    start_client(conn, &slot, &stats, &workers, &stop)
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("shardkit proxy: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// An accepted connection on its way to another worker: out of the
/// accepting worker's event loop, into the serving one's.
enum Handoff {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Conn {
    fn hand_off(self) -> std::io::Result<Handoff> {
        Ok(match self {
            Conn::Tcp(s) => Handoff::Tcp(s.into_std()?),
            Conn::Unix(s) => Handoff::Unix(s.into_std()?),
        })
    }
}

impl Handoff {
    /// Registers the socket with the calling worker's event loop.
    fn take_up(self) -> std::io::Result<Conn> {
        Ok(match self {
            Handoff::Tcp(s) => Conn::Tcp(tokio::net::TcpStream::from_std(s)?),
            Handoff::Unix(s) => Conn::Unix(tokio::net::UnixStream::from_std(s)?),
        })
    }
}

async fn accept(b: &Bound) -> std::io::Result<Conn> {
    match b {
        Bound::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok(Conn::Tcp(s))
        }
        Bound::Unix(l) => Ok(Conn::Unix(l.accept().await?.0)),
    }
}

fn start_client(
    conn: Conn,
    slot: &Arc<PoolSlot>,
    stats: &Arc<PoolStats>,
    workers: &Workers,
    stop: &watch::Receiver<bool>,
) {
    let pool = slot.load();
    let limit = u64::from(pool.cfg.client_connections);
    let now = stats.client_connections.fetch_add(1, Ordering::Relaxed) + 1;
    if limit > 0 && now > limit {
        // Over client_connections: closed at once, as nutcracker does.
        stats.client_connections.fetch_sub(1, Ordering::Relaxed);
        stats.client_refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let conn = match conn.hand_off() {
        Ok(c) => c,
        Err(e) => {
            stats.client_connections.fetch_sub(1, Ordering::Relaxed);
            stats.client_err.fetch_add(1, Ordering::Relaxed);
            eprintln!("shardkit proxy: accepted connection lost: {e}");
            return;
        }
    };
    stats.total_connections.fetch_add(1, Ordering::Relaxed);
    let (slot, stats) = (slot.clone(), stats.clone());
    let pending = pool.cfg.client_pending_max;
    let idle = pool.cfg.client_idle_timeout;
    let redis = pool.cfg.redis;
    let auth = pool.cfg.redis_auth.clone();
    drop(pool);
    let stop = stop.clone();
    workers.spawn_on(workers.pick(), async move {
        let st = stats.clone();
        let password = redis.then_some(auth);
        match conn.take_up() {
            Ok(Conn::Tcp(s)) => serve_as(s, slot, st, pending, idle, stop, password).await,
            Ok(Conn::Unix(s)) => serve_as(s, slot, st, pending, idle, stop, password).await,
            Err(e) => {
                st.client_err.fetch_add(1, Ordering::Relaxed);
                eprintln!("shardkit proxy: accepted connection lost: {e}");
            }
        }
        stats.client_connections.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Serves one client in its pool's protocol: Redis when `redis` is given
/// (with the pool's password, if any), else memcache.
async fn serve_as<S>(
    s: S,
    slot: Arc<PoolSlot>,
    stats: Arc<PoolStats>,
    pending: usize,
    idle: Option<Duration>,
    stop: watch::Receiver<bool>,
    redis: Option<Option<String>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let st = stats.clone();
    match redis {
        None => session::serve(s, slot, stats, Memcache::new(st), pending, idle, stop).await,
        Some(auth) => {
            session::serve(s, slot, stats, Redis::new(st, auth), pending, idle, stop).await
        }
    }
}

async fn serve_stats(
    l: tokio::net::TcpListener,
    inner: std::sync::Weak<Inner>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::io::AsyncWriteExt;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = l.accept() => {
                let Ok((mut s, _)) = r else {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Some(inner) = inner.upgrade() else { return };
                let json = inner.stats_json();
                drop(inner);
                tokio::spawn(async move {
                    let _ = s.write_all(json.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        }
    }
}

async fn serve_metrics(
    l: tokio::net::TcpListener,
    inner: std::sync::Weak<Inner>,
    mut stop: watch::Receiver<bool>,
) {
    use http_body_util::Full;
    use hyper::{Response, StatusCode};
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = l.accept() => {
                let Ok((s, _)) = r else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let inner = inner.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let inner = inner.clone();
                        async move {
                            let resp = match (req.method() == hyper::Method::GET, req.uri().path(), inner.upgrade()) {
                                (true, "/metrics", Some(i)) => Response::builder()
                                    .header("content-type", "text/plain; version=0.0.4")
                                    .body(Full::new(bytes::Bytes::from(i.render(stats::prometheus)))),
                                (true, "/stats", Some(i)) => Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(bytes::Bytes::from(i.stats_json()))),
                                _ => Response::builder()
                                    .status(StatusCode::NOT_FOUND)
                                    .body(Full::new(bytes::Bytes::from_static(b"not found: try /metrics\n"))),
                            };
                            Ok::<_, std::convert::Infallible>(resp.expect("static response parts are valid"))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        }
    }
}
