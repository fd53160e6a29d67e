//! Where a pool's keys go now: the sharder over the servers in service,
//! rebuilt whenever a server is ejected or rejoins, and read without locks
//! (an immutable snapshot behind an `ArcSwap`).
//!
//! Two ways to route around an ejected server:
//! - [`EjectMode::Reshuffle`], nutcracker's: the ring is rebuilt from the
//!   live servers alone, exactly as nutcracker rebuilds its continuum, so
//!   keys land where nutcracker would put them while a server is out (and
//!   some keys of live servers move too);
//! - [`EjectMode::Next`], shardkit's: the server is marked down in the full
//!   sharder, so its keys go to their next node in preference order and no
//!   other key moves.

use super::config::{EjectMode, PoolConfig};
use crate::config::twemproxy;
use crate::error::Result;
use crate::shard::{Change, Sharder};

/// A routing snapshot.
pub(crate) struct Route {
    sharder: Sharder,
    /// The sharder with every server in service, and which are out: a
    /// replicated key is read from the servers it was written to.
    full: Sharder,
    ejected: Vec<bool>,
    /// Backend index of each sharder slot.
    backend_of_slot: Vec<usize>,
    /// Nodes per key.
    replicas: usize,
}

impl Route {
    /// The route with the servers marked in `ejected` out of service.
    pub(crate) fn build(cfg: &PoolConfig, ejected: &[bool]) -> Result<Route> {
        let live = ejected.iter().filter(|e| !**e).count();
        let sharder = if live == ejected.len() || live == 0 {
            // With every server out, routing over all of them at least
            // gives each request its own error, as nutcracker does.
            cfg.sharder.clone()
        } else {
            match cfg.eject_mode {
                EjectMode::Reshuffle => {
                    let servers: Vec<_> = cfg
                        .servers
                        .iter()
                        .zip(ejected)
                        .filter(|(_, e)| !**e)
                        .map(|(s, _)| s.clone())
                        .collect();
                    let sc = cfg.sharder.config();
                    twemproxy::servers_sharder(
                        &cfg.name,
                        &servers,
                        sc.algorithm,
                        sc.effective_hash(),
                        sc.key_selector.clone(),
                    )?
                }
                EjectMode::Next => {
                    let downs: Vec<Change> = cfg
                        .servers
                        .iter()
                        .zip(ejected)
                        .filter(|(_, e)| **e)
                        .map(|(s, _)| Change::Down(s.name.clone()))
                        .collect();
                    cfg.sharder.apply(&downs)?
                }
            }
        };
        let backend_of_slot = (0..sharder.slot_count() as u32)
            .map(|slot| {
                sharder
                    .node(slot)
                    .and_then(|n| cfg.servers.iter().position(|s| s.name == n.name()))
                    .unwrap_or(usize::MAX)
            })
            .collect();
        Ok(Route {
            sharder,
            full: cfg.sharder.clone(),
            ejected: ejected.to_vec(),
            backend_of_slot,
            replicas: cfg.replicas,
        })
    }

    /// The backend serving `key` first.
    #[inline]
    pub(crate) fn primary(&self, key: &[u8]) -> Option<usize> {
        let slot = self.sharder.lookup_slot(key).ok()?;
        self.backend_of_slot.get(slot as usize).copied()
    }

    /// The key's hash on this pool's ring (pins a key to a connection).
    #[inline]
    pub(crate) fn key_hash(&self, key: &[u8]) -> u64 {
        self.sharder.key_hash(key)
    }

    /// Where to read a replicated key: those of its replicas (with every
    /// server in service) that are in service now, in preference order; if
    /// none is, where it is written now. Reading from the write set instead
    /// would send a read to a server that took the key over when another
    /// went out, and miss what the surviving replica still holds.
    pub(crate) fn read_replicas(&self, key: &[u8], out: &mut Vec<usize>) {
        out.clear();
        if self.replicas == 1 || !self.ejected.iter().any(|e| *e) {
            return self.replicas(key, out);
        }
        if let Ok(slots) = self.full.lookup_n(key, self.replicas.min(self.full.len())) {
            // The full sharder's slots are the configuration's, and so are
            // the backend indexes.
            out.extend(
                slots
                    .into_iter()
                    .filter_map(|s| self.full.node(s))
                    .filter_map(|n| self.backend_named(n.name()))
                    .filter(|&b| !self.ejected[b]),
            );
        }
        if out.is_empty() {
            self.replicas(key, out);
        }
    }

    fn backend_named(&self, name: &str) -> Option<usize> {
        let slot = self.sharder.slot_of(name)?;
        self.backend_of_slot.get(slot as usize).copied()
    }

    /// The key's replicas in preference order (primary first), skipping
    /// servers that are out: where it is written. `out` is cleared first.
    pub(crate) fn replicas(&self, key: &[u8], out: &mut Vec<usize>) {
        out.clear();
        if self.replicas == 1 {
            out.extend(self.primary(key));
            return;
        }
        if let Ok(slots) = self
            .sharder
            .lookup_n(key, self.replicas.min(self.sharder.len()))
        {
            out.extend(
                slots
                    .into_iter()
                    .filter_map(|s| self.backend_of_slot.get(s as usize).copied()),
            );
        }
    }

    /// Nodes per key.
    pub(crate) fn replica_count(&self) -> usize {
        self.replicas
    }
}
