//! A live, swappable sharder: lock-free reads of the current snapshot, and
//! membership changes published atomically.

use super::{Change, Sharder};
use crate::error::Result;
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex};

/// Holds the current [`Sharder`]; readers never block, writers serialise.
pub struct LiveSharder {
    current: ArcSwap<Sharder>,
    writer: Mutex<()>,
}

impl LiveSharder {
    /// Starts from `initial`.
    pub fn new(initial: Sharder) -> LiveSharder {
        LiveSharder {
            current: ArcSwap::from_pointee(initial),
            writer: Mutex::new(()),
        }
    }

    /// The current snapshot; it stays valid however the set changes later.
    pub fn load(&self) -> Arc<Sharder> {
        self.current.load_full()
    }

    /// Applies `changes` to the current snapshot and publishes the result.
    /// On error nothing is published. Returns the new snapshot.
    pub fn apply(&self, changes: &[Change]) -> Result<Arc<Sharder>> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let next = Arc::new(self.current.load().apply(changes)?);
        self.current.store(next.clone());
        Ok(next)
    }
}
