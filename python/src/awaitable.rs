//! Core futures as asyncio awaitables (pyo3-async-runtimes), run on this
//! process's runtime: `shardkit::runtime::shared()`, which a forked child
//! starts afresh. pyo3-async-runtimes' own tokio module keeps the first
//! runtime it is given for good, so a child would spawn onto its parent's
//! runtime, whose threads it does not have; its generic module takes the
//! runtime as a type instead ([`ProcessRuntime`]), asked on every spawn.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;

use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{ContextExt, Runtime};
use pyo3_async_runtimes::TaskLocals;

use crate::errors::OrRaise;

/// pyo3-async-runtimes' runtime for shardkit: whichever runtime this
/// process has.
struct ProcessRuntime;

tokio::task_local! {
    /// The asyncio loop and context of the awaitable a task serves.
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

/// This process's runtime. Started by [`awaitable`] before any spawn, so
/// it is there: a failure to start was raised then.
fn runtime() -> &'static tokio::runtime::Runtime {
    shardkit::runtime::shared().expect("awaitable() started the runtime of this process")
}

impl Runtime for ProcessRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        runtime().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        runtime().spawn_blocking(f)
    }
}

impl ContextExt for ProcessRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// Wraps `fut` in an asyncio awaitable. Cancelling the asyncio future drops
/// `fut`, which is how core's waits clean up after themselves.
pub(crate) fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    shardkit::runtime::shared().or_raise(py)?;
    pyo3_async_runtimes::generic::future_into_py::<ProcessRuntime, F, T>(py, fut)
}
