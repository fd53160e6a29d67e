//! The proxy's backends and the ring that places keys on them: built from
//! an nginx upstream list with any shardkit algorithm, swapped whole on
//! reload, with passive ejection (a backend that refuses `max_fails`
//! connections in a row is marked down, so only its own keys move, to the
//! next backend on the ring) and an active probe that brings it back once
//! it accepts connections again.

use super::pool::Pool;
use crate::config::nginx::{self, UpstreamServer};
use crate::error::Result;
use crate::scatter::histogram::RotatingHistogram;
use crate::scatter::replica::Score;
use crate::shard::{Algorithm, Change, Sharder};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One backend: its connections, health and counters. Kept across reloads
/// for as long as its address stays in the list.
pub(crate) struct Backend {
    /// The address as written in the list: the node's name on the ring.
    pub(crate) name: String,
    pub(crate) pool: Arc<Pool>,
    failures: AtomicU32,
    ejected: AtomicBool,
    /// Requests answered, by status class (1xx..5xx at 0..=4).
    pub(crate) answered: [AtomicU64; 5],
    /// Connect failures, and requests that failed once sent.
    pub(crate) connect_errors: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) ejections: AtomicU64,
    /// Latency EWMA and requests in flight, for replica choice.
    pub(crate) score: Score,
    /// Recent response-header latency, for the hedging delay.
    pub(crate) latency: RotatingHistogram,
}

impl Backend {
    fn new(name: &str) -> Arc<Backend> {
        Arc::new(Backend {
            name: name.to_string(),
            pool: Pool::new(name),
            failures: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            answered: Default::default(),
            connect_errors: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            score: Score::new(Duration::from_secs(10)),
            latency: RotatingHistogram::new(Duration::from_secs(10)),
        })
    }

    /// Whether passive health has marked it down.
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }
}

/// One generation of the membership: the list, its ring (with ejected
/// backends marked down) and its backends.
pub(crate) struct Members {
    list: String,
    servers: Vec<UpstreamServer>,
    algorithm: Algorithm,
    /// The ring as configured (`down` entries down).
    base: Sharder,
    /// `base` with the ejected backends down too: what requests use.
    pub(crate) ring: Sharder,
    backends: HashMap<String, Arc<Backend>>,
}

impl Members {
    /// The backend a ring slot names.
    pub(crate) fn backend(&self, slot: u32) -> Option<&Arc<Backend>> {
        self.backends.get(self.ring.node(slot)?.name())
    }

    /// Every backend, in list order.
    pub(crate) fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.servers
            .iter()
            .filter_map(|s| self.backends.get(&s.address))
    }

    /// The list this generation was built from.
    pub(crate) fn list(&self) -> &str {
        &self.list
    }
}

/// The live membership.
pub(crate) struct Upstreams {
    current: ArcSwap<Members>,
    max_fails: u32,
    /// Serialises rebuilds (reload, eject, rejoin), so none is lost.
    rebuild: Mutex<()>,
}

impl Upstreams {
    /// Parses `list` (nginx upstream syntax) and builds its ring with
    /// `algorithm`. Errors name the bad entry.
    pub(crate) fn new(list: &str, algorithm: Algorithm, max_fails: u32) -> Result<Upstreams> {
        let members = build(list, algorithm, &HashMap::new())?;
        Ok(Upstreams {
            current: ArcSwap::from_pointee(members),
            max_fails: max_fails.max(1),
            rebuild: Mutex::new(()),
        })
    }

    /// The current generation.
    pub(crate) fn load(&self) -> Arc<Members> {
        self.current.load_full()
    }

    /// Replaces the list (a reload): backends still listed keep their
    /// connections and health. On error nothing changes.
    pub(crate) fn reload(&self, list: &str) -> Result<()> {
        let _g = self.rebuild.lock().expect("rebuild lock");
        let old = self.current.load_full();
        let members = build(list, old.algorithm, &old.backends)?;
        self.current.store(Arc::new(members));
        Ok(())
    }

    /// A connection to `b` failed: ejected after `max_fails` in a row.
    pub(crate) fn connect_failed(&self, b: &Backend) {
        b.connect_errors.fetch_add(1, Ordering::Relaxed);
        let n = b.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.max_fails && !b.ejected.swap(true, Ordering::Relaxed) {
            b.ejections.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "shardkit http-proxy: backend {} ejected after {n} failed connections",
                b.name
            );
            self.remark();
        }
    }

    /// `b` answered: its failure count starts over.
    pub(crate) fn answered(&self, b: &Backend) {
        // Written only when there is something to reset: a read leaves the
        // line shared between the worker threads, a write moves it.
        if b.failures.load(Ordering::Relaxed) != 0 {
            b.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Probes every ejected backend (a TCP connect within `timeout`) and
    /// brings back those that accept.
    pub(crate) async fn probe(&self, timeout: Duration) {
        let members = self.load();
        let mut back = false;
        for b in members.backends().filter(|b| b.is_ejected()) {
            let up = matches!(
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&b.name)).await,
                Ok(Ok(_))
            );
            if up {
                b.failures.store(0, Ordering::Relaxed);
                b.ejected.store(false, Ordering::Relaxed);
                eprintln!("shardkit http-proxy: backend {} is back", b.name);
                back = true;
            }
        }
        if back {
            self.remark();
        }
    }

    /// Rebuilds the ring from the base with the ejected backends down.
    fn remark(&self) {
        let _g = self.rebuild.lock().expect("rebuild lock");
        let old = self.current.load_full();
        let down: Vec<Change> = old
            .backends()
            .filter(|b| b.is_ejected())
            .map(|b| Change::Down(b.name.clone()))
            .collect();
        let ring = if down.is_empty() {
            Ok(old.base.clone())
        } else {
            old.base.apply(&down)
        };
        match ring {
            Ok(ring) => self.current.store(Arc::new(Members {
                list: old.list.clone(),
                servers: old.servers.clone(),
                algorithm: old.algorithm,
                base: old.base.clone(),
                ring,
                backends: old.backends.clone(),
            })),
            Err(e) => eprintln!("shardkit http-proxy: cannot mark backends down: {e}"),
        }
    }
}

fn build(
    list: &str,
    algorithm: Algorithm,
    keep: &HashMap<String, Arc<Backend>>,
) -> Result<Members> {
    let servers = nginx::parse_servers(list)?;
    let base = nginx::parse_upstream_with(list, algorithm)?;
    let backends: HashMap<String, Arc<Backend>> = servers
        .iter()
        .map(|s| {
            let b = keep
                .get(&s.address)
                .cloned()
                .unwrap_or_else(|| Backend::new(&s.address));
            (s.address.clone(), b)
        })
        .collect();
    let down: Vec<Change> = servers
        .iter()
        .filter(|s| backends[&s.address].is_ejected())
        .map(|s| Change::Down(s.address.clone()))
        .collect();
    let ring = if down.is_empty() {
        base.clone()
    } else {
        base.apply(&down)?
    };
    Ok(Members {
        list: list.to_string(),
        servers,
        algorithm,
        base,
        ring,
        backends,
    })
}
