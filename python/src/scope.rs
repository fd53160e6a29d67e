//! `with` / `async with` for objects that release something on exit
//! (sessions, locks, scoped locks, shard owners): one rule for all of them.
//! The release always runs; its error is raised only when the block did not
//! raise, so a failed release never hides the block's own exception; the
//! block's exception is never suppressed.

use std::future::Future;

use pyo3::prelude::*;
use pyo3::PyClass;

use crate::awaitable::awaitable;
use crate::errors::py_err;

/// `__exit__`, given what the release returned.
pub(crate) fn exit(exc_type: Option<&Bound<'_, PyAny>>, released: PyResult<()>) -> PyResult<bool> {
    if exc_type.is_none() {
        released?;
    }
    Ok(false)
}

/// `__aexit__`: an awaitable that runs `release`, under [`exit`]'s rule.
pub(crate) fn aexit<'py>(
    py: Python<'py>,
    exc_type: Option<&Bound<'py, PyAny>>,
    release: impl Future<Output = shardkit::Result<()>> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>> {
    let raised = exc_type.is_some();
    awaitable(py, async move {
        match release.await {
            Err(e) if !raised => Err(py_err(e)),
            _ => Ok(false),
        }
    })
}

/// `__aenter__` of an object that is its own context value.
pub(crate) fn aenter_self<'py, T: PyClass>(slf: Bound<'py, T>) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let me = slf.unbind();
    awaitable(py, async move { Ok(me) })
}
