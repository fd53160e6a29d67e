//! Ownership election for Python: coordinators, sessions, locks, elections,
//! fencing tokens and shard owners over core's `shardkit::lease`.
//!
//! Every operation comes two ways: a blocking method (GIL released, run on
//! the caller's thread through `shardkit::runtime::block_on`) and an
//! `*_async` method returning an asyncio awaitable (pyo3-async-runtimes, on
//! the same shared runtime). Blocking waits that can last (acquire,
//! campaign, observe, shard events) wake every [`POLL`] to run Python's
//! signal handlers, so Ctrl-C interrupts them and core cleans up the waiter.

mod coordinator;
mod election;
mod session;
mod shards;
mod token;
mod waiter;

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use pyo3::prelude::*;
use shardkit::lease::Cancel;
use shardkit::{Error, ErrorKind};

use crate::errors::{raise, to_py, OrRaise};

/// How often a blocking wait comes back to check for signals (Ctrl-C).
const POLL: Duration = Duration::from_millis(100);

/// Adds the lease classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<coordinator::PyCoordinator>()?;
    m.add_class::<coordinator::PyScopedLock>()?;
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

/// A core error as its exception, from any thread (futures finish on
/// runtime threads, which hold no GIL).
fn py_err(e: Error) -> PyErr {
    Python::attach(|py| to_py(py, e))
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

/// Runs `fut` to completion on the shared runtime with the GIL released.
/// Called from a runtime thread (inside a callback) it raises instead of
/// deadlocking.
fn block<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = shardkit::Result<T>> + Send,
) -> PyResult<T> {
    py.detach(|| shardkit::runtime::block_on(fut).and_then(|r| r))
        .or_raise(py)
}

/// Makes pyo3-async-runtimes drive its futures on shardkit's one runtime,
/// before its first use (it would otherwise build a second runtime).
fn use_shared_runtime(py: Python<'_>) -> PyResult<()> {
    let rt = shardkit::runtime::shared().or_raise(py)?;
    // Err means it was set already, and only this function sets it.
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(rt);
    Ok(())
}

/// Wraps `fut` in an asyncio awaitable. Cancelling the asyncio future drops
/// `fut`, which is how core's waits clean up after themselves.
fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    use_shared_runtime(py)?;
    pyo3_async_runtimes::tokio::future_into_py(py, fut)
}

/// How a signal-interruptible wait ended.
enum Waited<T> {
    /// The wait finished (successfully or not) on its own.
    Done(shardkit::Result<T>),
    /// A signal handler raised (Ctrl-C): `cancel` was fired and the wait run
    /// to its end; `late` holds a success that arrived anyway, for the caller
    /// to undo.
    Interrupted { signal: PyErr, late: Option<T> },
}

/// Runs `fut` with the GIL released, coming back every [`POLL`] to run
/// Python's signal handlers. When one raises, fires `cancel` (which `fut`
/// must watch) and finishes `fut`, so its cleanup (deleting a waiter key)
/// is done before the exception reaches the caller.
fn wait_interruptible<T: Send>(
    py: Python<'_>,
    cancel: &Cancel,
    fut: impl Future<Output = shardkit::Result<T>> + Send,
) -> Waited<T> {
    let mut fut = pin!(fut);
    loop {
        let step = py.detach(|| {
            shardkit::runtime::block_on(async {
                tokio::time::timeout(POLL, fut.as_mut()).await.ok()
            })
        });
        match step {
            Err(e) => return Waited::Done(Err(e)),
            Ok(Some(r)) => return Waited::Done(r),
            Ok(None) => {}
        }
        if let Err(signal) = py.check_signals() {
            cancel.cancel();
            let late = py.detach(|| shardkit::runtime::block_on(fut.as_mut()));
            return Waited::Interrupted {
                signal,
                late: late.ok().and_then(|r| r.ok()),
            };
        }
    }
}
