//! Per-leaf counters and their public snapshot.

use super::histogram::{HistogramSnapshot, RotatingHistogram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) struct LeafStats {
    pub(crate) calls: AtomicU64,
    pub(crate) hedges_sent: AtomicU64,
    pub(crate) hedges_won: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) latency: RotatingHistogram,
}

impl LeafStats {
    pub(crate) fn new(window: Duration) -> Self {
        LeafStats {
            calls: AtomicU64::new(0),
            hedges_sent: AtomicU64::new(0),
            hedges_won: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: RotatingHistogram::new(window),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one replica looks like to replica choice right now.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaMetrics {
    /// Calls sent to this replica (first tries, hedges and failovers).
    pub calls: u64,
    /// Calls to it outstanding from this process.
    pub outstanding: usize,
    /// EWMA of its latency; `None` until it has been observed.
    pub ewma: Option<Duration>,
}

/// A snapshot of one leaf's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafMetrics {
    /// The leaf's name.
    pub name: String,
    /// Leaf calls: one per request that reached this leaf, however many
    /// replicas it went to.
    pub calls: u64,
    /// Extra replica calls sent by hedging or tied requests.
    pub hedges_sent: u64,
    /// Leaf calls answered by a hedge (or the second tied copy) first.
    pub hedges_won: u64,
    /// Leaf calls still unanswered when their deadline passed.
    pub timeouts: u64,
    /// Replica calls that returned an error.
    pub errors: u64,
    /// Latency of answered leaf calls over the last one to two windows.
    pub latency: HistogramSnapshot,
    /// Per replica, in the order given to [`Leaf::new`](super::Leaf::new).
    pub replicas: Vec<ReplicaMetrics>,
}

pub(crate) fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
