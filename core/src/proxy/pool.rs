//! A pool in service: its configuration, its backends with their shared
//! connections, the route over the servers in service, and the health
//! watcher that rebuilds the route when a server is ejected or rejoins.
//!
//! A listener holds its pool in a [`PoolSlot`]; a reload swaps the pool in
//! the slot. Client connections read the slot per batch of requests, so
//! they move to the new pool without being dropped, while requests already
//! sent finish on the old one's connections.

use super::backend::{Address, Backend, ConnSettings, Frame};
use super::config::PoolConfig;
use super::health::{Event, Health};
use super::hotkeys::{HotKeyConfig, HotKeys};
use super::parse::Limits;
use super::resp;
use super::route::Route;
use super::workers::Workers;
use crate::error::Result;
use crate::scatter::replica::{p2c, Rng};
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Where a listener finds its current pool.
pub(crate) type PoolSlot = ArcSwap<Pool>;

/// A pool in service.
pub(crate) struct Pool {
    pub cfg: PoolConfig,
    pub servers: Arc<Servers>,
    pub hot: Option<Arc<HotKeys>>,
}

/// A pool's backends and route: kept across a reload that leaves the
/// servers and their settings alone, so connections survive it.
pub(crate) struct Servers {
    pub backends: Vec<Arc<Backend>>,
    pub route: ArcSwap<Route>,
    rng: Rng,
    /// Dropped with the servers: wakes their probes, which then end.
    _alive: watch::Sender<()>,
}

impl Pool {
    /// Builds a pool, reusing `old`'s servers when nothing about them
    /// changed. Starts its tasks on `workers`.
    pub(crate) fn build(cfg: PoolConfig, old: Option<&Pool>, workers: &Workers) -> Result<Pool> {
        let servers = match old {
            Some(o) if same_servers(&o.cfg, &cfg) => o.servers.clone(),
            _ => Servers::start(&cfg, workers)?,
        };
        let hot = match (old, cfg.hot_keys) {
            (_, None) => None,
            (Some(o), Some(h)) if o.cfg.hot_keys == Some(h) && o.hot.is_some() => o.hot.clone(),
            (_, Some(h)) => Some(Arc::new(HotKeys::new(HotKeyConfig {
                ttl: h.ttl,
                max_hot: h.max_hot,
                ..HotKeyConfig::default()
            }))),
        };
        Ok(Pool { cfg, servers, hot })
    }
}

/// Whether a reload may keep the old backends and their connections.
fn same_servers(a: &PoolConfig, b: &PoolConfig) -> bool {
    a.servers == b.servers
        && a.redis == b.redis
        && a.redis_auth == b.redis_auth
        && a.redis_db == b.redis_db
        && a.timeout == b.timeout
        && a.server_connections == b.server_connections
        && a.auto_eject_hosts == b.auto_eject_hosts
        && a.server_retry_timeout == b.server_retry_timeout
        && a.server_failure_limit == b.server_failure_limit
        && a.replicas == b.replicas
        && a.eject_mode == b.eject_mode
        && a.limits == b.limits
        && a.placement == b.placement
}

impl Servers {
    fn start(cfg: &PoolConfig, workers: &Workers) -> Result<Arc<Servers>> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let settings = conn_settings(cfg);
        let backends = cfg
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let address = match s.port {
                    Some(_) => Address::Tcp(s.address()),
                    None => Address::Unix(s.host.clone()),
                };
                let health = Arc::new(Health::new(
                    i,
                    cfg.server_failure_limit,
                    cfg.auto_eject_hosts,
                    events_tx.clone(),
                ));
                Arc::new(Backend::start(
                    s.name.clone(),
                    s.alias.clone(),
                    address,
                    cfg.server_connections as usize,
                    settings.clone(),
                    health,
                    workers,
                ))
            })
            .collect::<Vec<_>>();
        let route = Route::build(cfg, &vec![false; backends.len()])?;
        let (alive, alive_rx) = watch::channel(());
        let servers = Arc::new(Servers {
            backends,
            route: ArcSwap::from_pointee(route),
            rng: Rng::new(0x5eed ^ cfg.servers.len() as u64),
            _alive: alive,
        });
        workers.spawn(watch_health(
            Arc::downgrade(&servers),
            cfg.clone(),
            settings,
            events_rx,
            (workers.clone(), alive_rx),
        ));
        Ok(servers)
    }

    /// Of the key's replicas not in `tried`, the one to read from: power
    /// of two choices over latency and load, as the scatter engine picks
    /// replicas.
    pub(crate) fn choose(&self, replicas: &[usize], tried: &[usize]) -> Option<usize> {
        let left: Vec<usize> = replicas
            .iter()
            .copied()
            .filter(|r| !tried.contains(r))
            .collect();
        p2c(&left, |b| self.backends[b].score.score(), &self.rng)
    }
}

/// How backend connections of this pool behave, Redis handshake included.
fn conn_settings(cfg: &PoolConfig) -> ConnSettings {
    let mut hello = Vec::new();
    let mut replies = 0;
    if cfg.redis {
        if let Some(pw) = &cfg.redis_auth {
            resp::encode_command(&[b"AUTH", pw.as_bytes()], &mut hello);
            replies += 1;
        }
        if cfg.redis_db != 0 {
            let db = cfg.redis_db.to_string();
            resp::encode_command(&[b"SELECT", db.as_bytes()], &mut hello);
            replies += 1;
        }
    }
    ConnSettings {
        timeout: cfg.timeout,
        // Replies are framed, not policed: a value may have grown past the
        // request limit (APPEND), and Redis allows 512 MiB.
        limits: Limits {
            max_value: 512 << 20,
            max_line: 1 << 20,
            ..cfg.limits
        },
        keepalive: cfg.tcpkeepalive,
        handshake: (replies > 0).then(|| (Bytes::from(hello), replies)),
        handshake_frame: if cfg.redis {
            Frame::Resp
        } else {
            Frame::TextLine
        },
        preconnect: cfg.preconnect,
    }
}

/// Rebuilds the route when a server is ejected, probes it every
/// `server_retry_timeout`, and rebuilds again when it answers.
async fn watch_health(
    servers: Weak<Servers>,
    cfg: PoolConfig,
    settings: ConnSettings,
    mut events: mpsc::UnboundedReceiver<Event>,
    (workers, alive): (Workers, watch::Receiver<()>),
) {
    let (rejoin_tx, mut rejoin_rx) = mpsc::unbounded_channel::<usize>();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => return,
                Some(Event::Ejected(i)) => {
                    let Some(s) = servers.upgrade() else { return };
                    rebuild(&s, &cfg);
                    let address = s.backends[i].address.clone();
                    drop(s);
                    workers.spawn(probe_until_up(
                        servers.clone(),
                        Probe {
                            index: i,
                            address,
                            settings: settings.clone(),
                            redis: cfg.redis,
                            flush: cfg.replicas > 1,
                            every: cfg.server_retry_timeout,
                        },
                        rejoin_tx.clone(),
                        alive.clone(),
                    ));
                }
            },
            Some(i) = rejoin_rx.recv() => {
                let Some(s) = servers.upgrade() else { return };
                s.backends[i].health.rejoin();
                rebuild(&s, &cfg);
            }
        }
    }
}

fn rebuild(s: &Servers, cfg: &PoolConfig) {
    let ejected: Vec<bool> = s.backends.iter().map(|b| b.health.is_ejected()).collect();
    match Route::build(cfg, &ejected) {
        Ok(r) => s.route.store(Arc::new(r)),
        // The full configuration built a route at start, so a subset can
        // only fail if every server is out; keep the last route then.
        Err(e) => eprintln!(
            "shardkit proxy: pool {:?}: route not rebuilt: {e}",
            cfg.name
        ),
    }
}

/// What probing one ejected server needs.
struct Probe {
    index: usize,
    address: Address,
    settings: ConnSettings,
    redis: bool,
    /// Send `flush_all` as the probe (replicated memcache pools).
    flush: bool,
    every: Duration,
}

async fn probe_until_up(
    servers: Weak<Servers>,
    p: Probe,
    rejoin: mpsc::UnboundedSender<usize>,
    mut alive: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(p.every) => {}
            // The servers were dropped (reload, stop): nothing to probe for.
            _ = alive.changed() => return,
        }
        if servers.strong_count() == 0 {
            return;
        }
        let (bytes, frame): (&[u8], Frame) = if p.redis {
            (b"PING\r\n", Frame::Resp)
        } else if p.flush {
            // A replicated cache server that was out may hold values
            // overwritten meanwhile on the others: it rejoins empty rather
            // than serve them.
            (b"flush_all\r\n", Frame::TextLine)
        } else {
            (b"version\r\n", Frame::TextLine)
        };
        if super::backend::probe(&p.address, &p.settings, bytes, frame).await {
            let _ = rejoin.send(p.index);
            return;
        }
    }
}
