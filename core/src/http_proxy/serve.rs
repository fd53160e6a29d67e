//! Listeners and client connections: one listening socket per worker
//! thread (SO_REUSEPORT, so the kernel spreads connections), HTTP/1.1 with
//! keep-alive, a header timeout and size limit, and a cap on connections.

use super::direct;
use super::forward::forward;
use super::metrics;
use super::upstreams::Upstreams;
use super::{HttpProxyConfig, ProxyStats, Shared};
use crate::error::{Error, ErrorKind, Result};
use crate::proxy::workers::Workers;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// A running HTTP sharding proxy. [`HttpProxy::stop`] (or dropping it)
/// stops it.
pub struct HttpProxy {
    shared: Arc<Shared>,
    workers: Workers,
    stop: watch::Sender<bool>,
    listening: SocketAddr,
    metrics: Option<SocketAddr>,
}

impl HttpProxy {
    /// Binds, builds the ring and starts serving on worker threads of its
    /// own. Errors name the bad setting, upstream entry or address.
    pub fn start(cfg: HttpProxyConfig) -> Result<HttpProxy> {
        cfg.validate()?;
        let upstreams = Upstreams::new(&cfg.upstream, cfg.algorithm, cfg.max_fails)?;
        let threads = if cfg.threads == 0 {
            crate::runtime::threads()
        } else {
            cfg.threads
        };
        let shard_header = cfg
            .shard_header
            .as_deref()
            .map(|h| hyper::header::HeaderName::from_bytes(h.as_bytes()))
            .transpose()
            .map_err(|e| Error::invalid(format!("http-proxy: shard_header: {e}")))?;
        let listeners = bind(&cfg.listen, threads)?;
        let listening = listeners[0]
            .local_addr()
            .map_err(|e| Error::new(ErrorKind::Io, format!("http-proxy: {e}")))?;
        let metrics_listener = match &cfg.metrics {
            Some(addr) => Some(bind(addr, 1)?.remove(0)),
            None => None,
        };
        let metrics = metrics_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()
            .map_err(|e| Error::new(ErrorKind::Io, format!("http-proxy: {e}")))?;
        let workers = Workers::start(threads)?;
        let cfg_hedge = cfg.hedge.clone();
        let shared = Arc::new(Shared {
            cfg,
            upstreams,
            shard_header,
            stats: ProxyStats::default(),
            hedge_budget: {
                let h = cfg_hedge.clone().unwrap_or_default();
                crate::scatter::hedge::Budget::new(h.budget_ratio, h.budget_burst)
            },
            rng: crate::scatter::replica::Rng::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(7, |d| d.as_nanos() as u64),
            ),
        });
        let (stop, stop_rx) = watch::channel(false);
        let conns = Arc::new(Semaphore::new(shared.cfg.max_connections));
        for (w, l) in listeners.into_iter().enumerate() {
            let (px, stop, conns) = (shared.clone(), stop_rx.clone(), conns.clone());
            workers.spawn_on(w, async move {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => accept_loop(px, l, stop, conns).await,
                    Err(e) => eprintln!("shardkit http-proxy: listener: {e}"),
                }
            });
        }
        let (px, mut stopped) = (shared.clone(), stop_rx.clone());
        workers.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(px.cfg.probe_interval) => {}
                    _ = stopped.changed() => return,
                }
                let limit = px.cfg.connect_timeout.min(Duration::from_secs(1));
                px.upstreams.probe(limit).await;
            }
        });
        if let Some(l) = metrics_listener {
            let (px, stopped) = (shared.clone(), stop_rx.clone());
            workers.spawn(async move {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => metrics::serve(px, l, stopped).await,
                    Err(e) => eprintln!("shardkit http-proxy: metrics listener: {e}"),
                }
            });
        }
        Ok(HttpProxy {
            shared,
            workers,
            stop,
            listening,
            metrics,
        })
    }

    /// The address it listens on.
    pub fn listening(&self) -> SocketAddr {
        self.listening
    }

    /// Where metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Replaces the backend list (nginx upstream syntax) without dropping
    /// a connection: requests from now on use the new ring; backends still
    /// listed keep their connections and health. On error (the bad entry
    /// is named) the old list stays.
    pub fn reload(&self, upstream: &str) -> Result<()> {
        self.shared.upstreams.reload(upstream)
    }

    /// The backend list in use.
    pub fn upstream(&self) -> String {
        self.shared.upstreams.load().list().to_string()
    }

    /// The Prometheus exposition of its counters (what `/metrics` serves).
    pub fn metrics_text(&self) -> String {
        metrics::render(&self.shared)
    }

    /// Stops accepting, lets requests in progress finish (at most 5 s),
    /// and ends the worker threads.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.workers.wait_idle(Duration::from_secs(5));
        self.workers.shutdown();
    }
}

/// `n` listening sockets on `addr`, sharing its port (the first picks it
/// when the port is 0).
fn bind(addr: &str, n: usize) -> Result<Vec<std::net::TcpListener>> {
    let io = |e: std::io::Error| {
        Error::new(
            ErrorKind::Io,
            format!("http-proxy: cannot listen on {addr}: {e}"),
        )
    };
    let mut sa = addr
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| Error::invalid(format!("http-proxy: {addr} resolves to no address")))?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(sa),
            socket2::Type::STREAM,
            None,
        )
        .map_err(io)?;
        sock.set_reuse_address(true).map_err(io)?;
        sock.set_reuse_port(true).map_err(io)?;
        sock.set_nonblocking(true).map_err(io)?;
        sock.bind(&sa.into()).map_err(io)?;
        sock.listen(1024).map_err(io)?;
        let l: std::net::TcpListener = sock.into();
        if sa.port() == 0 {
            sa = l.local_addr().map_err(io)?;
        }
        out.push(l);
    }
    Ok(out)
}

async fn accept_loop(
    px: Arc<Shared>,
    l: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
    conns: Arc<Semaphore>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = l.accept() => match r {
                Ok((s, peer)) => {
                    let Ok(permit) = conns.clone().try_acquire_owned() else {
                        // Over max_connections: closed at once, as nginx
                        // does past worker_connections.
                        px.stats.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    px.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let (px, stop) = (px.clone(), stop.clone());
                    tokio::spawn(async move {
                        serve_conn(px, s, peer, stop).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("shardkit http-proxy: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn serve_conn(
    px: Arc<Shared>,
    s: tokio::net::TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    px.stats.connections.fetch_add(1, Ordering::Relaxed);
    // Plain requests go the direct way until one is not plain; hyper
    // serves the rest of the connection from there.
    let s = if direct::applies(&px) {
        match direct::serve(&px, s, peer, &mut stop).await {
            direct::Outcome::Closed => {
                px.stats.connections.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            direct::Outcome::Hyper(s) => s,
        }
    } else {
        direct::Prefixed::new(s, Default::default())
    };
    let p2 = px.clone();
    let svc = service_fn(move |req| {
        let px = p2.clone();
        async move {
            px.stats.requests.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Infallible>(forward(px, peer, req).await)
        }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(px.cfg.header_timeout)
        .max_buf_size(px.cfg.max_header_bytes)
        .keep_alive(true);
    let conn = b.serve_connection(TokioIo::new(s), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            // Finish the request in progress, then close.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    px.stats.connections.fetch_sub(1, Ordering::Relaxed);
}
