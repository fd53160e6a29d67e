//! Running core futures from a Python thread: with the GIL released, and,
//! for waits that can last, coming back every [`POLL`] to run Python's
//! signal handlers so Ctrl-C interrupts them. Every blocking method of the
//! lease and scatter classes goes through here.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use pyo3::prelude::*;
use shardkit::lease::{Cancel, WaitOptions};

use crate::errors::OrRaise;

/// How often a blocking wait comes back to check for signals (Ctrl-C).
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Runs `fut` to completion on this process's runtime with the GIL
/// released, for calls that end promptly on their own (bounded requests).
/// Called from a runtime thread (inside a callback) it raises instead of
/// deadlocking.
pub(crate) fn block<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = shardkit::Result<T>> + Send,
) -> PyResult<T> {
    py.detach(|| shardkit::runtime::block_on(fut).and_then(|r| r))
        .or_raise(py)
}

/// How an interruptible wait ended.
enum Waited<T> {
    /// `fut` finished on its own.
    Done(T),
    /// A signal handler raised (Ctrl-C). With a `cancel`, it was fired and
    /// `fut` run to its end, which `late` holds (a success there arrived
    /// anyway, for the caller to undo); without one, `fut` was dropped.
    Interrupted { signal: PyErr, late: Option<T> },
}

/// Runs `fut` with the GIL released, coming back every [`POLL`] to run
/// Python's signal handlers. When one raises: with `cancel` (which `fut`
/// must watch), fires it and finishes `fut`, so cleanup that needs requests
/// (deleting a waiter key) is done before the exception reaches the caller;
/// without, drops `fut`, which must clean up on drop.
fn wait<T: Send>(
    py: Python<'_>,
    cancel: Option<&Cancel>,
    fut: impl Future<Output = T> + Send,
) -> PyResult<Waited<T>> {
    let mut fut = pin!(fut);
    loop {
        let step = py
            .detach(|| {
                shardkit::runtime::block_on(async {
                    tokio::time::timeout(POLL, fut.as_mut()).await.ok()
                })
            })
            .or_raise(py)?;
        if let Some(out) = step {
            return Ok(Waited::Done(out));
        }
        if let Err(signal) = py.check_signals() {
            let late = match cancel {
                Some(cancel) => {
                    cancel.cancel();
                    py.detach(|| shardkit::runtime::block_on(fut.as_mut())).ok()
                }
                None => None,
            };
            return Ok(Waited::Interrupted { signal, late });
        }
    }
}

/// [`wait`] for a future that cleans up on drop: its output, or the signal
/// handler's exception once it has been dropped.
pub(crate) fn wait_or_drop<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = T> + Send,
) -> PyResult<T> {
    match wait(py, None, fut)? {
        Waited::Done(out) => Ok(out),
        Waited::Interrupted { signal, .. } => Err(signal),
    }
}

/// Waits from a Python thread for a hold (a lock, a leadership) that `take`
/// asks core for under the [`WaitOptions`] it is given, at most `timeout`.
/// On Ctrl-C the wait is cancelled, so core withdraws its waiter, and a hold
/// granted in the meantime is given back with `give_back`, all before
/// `KeyboardInterrupt` reaches the caller: nothing is left held.
pub(crate) fn hold<T: Send, F>(
    py: Python<'_>,
    timeout: Option<Duration>,
    take: impl FnOnce(WaitOptions) -> F,
    give_back: impl FnOnce(Python<'_>) -> PyResult<()>,
) -> PyResult<T>
where
    F: Future<Output = shardkit::Result<T>> + Send,
{
    let cancel = Cancel::new();
    let opts = WaitOptions {
        timeout,
        cancel: Some(cancel.clone()),
    };
    match wait(py, Some(&cancel), take(opts))? {
        Waited::Done(r) => r.or_raise(py),
        Waited::Interrupted { signal, late } => {
            if matches!(late, Some(Ok(_))) {
                // The interrupt is what the caller hears of.
                let _ = give_back(py);
            }
            Err(signal)
        }
    }
}
