//! Ownership election for Python: coordinators, sessions, locks, elections,
//! fencing tokens and shard owners over core's `shardkit::lease`.
//!
//! Every operation comes two ways: a blocking method (GIL released, run on
//! the caller's thread by `crate::wait`) and an `*_async` method returning
//! an asyncio awaitable (`crate::awaitable`), both on this process's
//! runtime. Blocking waits that can last (acquire, campaign, observe, shard
//! events) run Python's signal handlers as they wait, so Ctrl-C interrupts
//! them and core cleans up the waiter.

mod coordinator;
mod election;
mod scoped_lock;
mod session;
mod shards;
mod token;
mod waiter;

use std::time::Duration;

use pyo3::prelude::*;
use shardkit::ErrorKind;

use crate::errors::raise;

/// Adds the lease classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<coordinator::PyCoordinator>()?;
    m.add_class::<scoped_lock::PyScopedLock>()?;
    m.add_class::<session::PySession>()?;
    m.add_class::<waiter::PyLock>()?;
    m.add_class::<election::PyElection>()?;
    m.add_class::<election::PyLeader>()?;
    m.add_class::<election::PyObserver>()?;
    m.add_class::<token::PyFencingToken>()?;
    m.add_class::<token::PyFenceGate>()?;
    m.add_class::<shards::PyShardOwner>()?;
    m.add_class::<shards::PyOwnershipEvent>()?;
    Ok(())
}

/// Seconds given by the caller as a `Duration`: finite and not negative.
fn seconds(py: Python<'_>, what: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        // As Python writes it (Rust says "NaN").
        let shown = if secs.is_nan() {
            "nan".to_string()
        } else {
            secs.to_string()
        };
        raise(
            py,
            ErrorKind::InvalidArgument,
            format!("{what} {shown}: must be a finite number of seconds, 0 or more"),
        )
    })
}

/// `None` (no limit) or seconds.
fn opt_seconds(py: Python<'_>, what: &str, secs: Option<f64>) -> PyResult<Option<Duration>> {
    secs.map(|s| seconds(py, what, s)).transpose()
}
