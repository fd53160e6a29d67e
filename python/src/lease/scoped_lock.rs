//! `ScopedLock` (`coord.lock(...)`): core's `ScopedLock`, which does the
//! whole recipe (a lease of its own per hold, lock, unlock, revoke, and the
//! revoke of a hold dropped half-way), with `with` / `async with` on top.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use shardkit::lease::{ScopedLock, WaitOptions};

use super::opt_seconds;
use super::session::PySession;
use super::token::PyFencingToken;
use crate::awaitable::awaitable;
use crate::errors::py_err;
use crate::scope;
use crate::wait::{block, hold};

/// A lock held under a lease of its own (`Coordinator.lock(name, ttl,
/// timeout)`): each acquire grants a lease of `ttl` seconds and takes the
/// lock under it; each release unlocks and revokes the lease, so nothing of
/// the hold outlives it. Use it as `with coord.lock("jobs") as token:` (or
/// `async with`), which waits at most the `timeout` given to
/// `Coordinator.lock`, or call `acquire` / `try_acquire` / `release`.
///
/// One object is held at most once at a time and may be acquired again
/// after a release. A blocking `acquire` is interrupted by Ctrl-C, an
/// awaiting one by task cancellation; either way its lease is revoked. An
/// object dropped while held revokes its lease in the background.
#[pyclass(frozen, module = "shardkit", name = "ScopedLock")]
pub(crate) struct PyScopedLock {
    /// Shared with the awaitables, which outlive the call that made them.
    inner: Arc<ScopedLock>,
    /// How long a `with` / `async with` entry waits; `None`: as long as it takes.
    timeout: Option<Duration>,
}

impl PyScopedLock {
    pub(crate) fn new(inner: ScopedLock, timeout: Option<Duration>) -> Self {
        PyScopedLock {
            inner: Arc::new(inner),
            timeout,
        }
    }

    fn acquire_blocking(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
    ) -> PyResult<PyFencingToken> {
        let lock = &self.inner;
        let token = hold(
            py,
            timeout,
            |opts| async move { lock.acquire(&opts).await },
            |py| block(py, lock.release()),
        )?;
        Ok(token.into())
    }

    fn acquire_awaitable<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<Duration>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lock = self.inner.clone();
        awaitable(py, async move {
            let opts = WaitOptions {
                timeout,
                cancel: None,
            };
            // Cancelling the task drops this future: core revokes the lease.
            let token = lock.acquire(&opts).await.map_err(py_err)?;
            Ok(PyFencingToken::from(token))
        })
    }
}

#[pymethods]
impl PyScopedLock {
    /// The lock's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The token of the current hold, or `None`.
    #[getter]
    fn token(&self) -> Option<PyFencingToken> {
        self.inner.token().map(PyFencingToken::from)
    }

    /// The session (lease) of the current hold, or `None`: to check it, or
    /// await its loss, before acting under the lock.
    #[getter]
    fn session(&self) -> Option<PySession> {
        self.inner.session().map(|inner| PySession { inner })
    }

    /// Grants a lease and waits until the lock is held under it (at most
    /// `timeout` seconds, raising `ShardkitTimeoutError`; `None`: as long as
    /// it takes); returns the fencing token. On any error the lease is
    /// revoked and the object can be acquired again. `InvalidArgumentError`
    /// when already held through this object.
    #[pyo3(signature = (timeout = None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyFencingToken> {
        let timeout = opt_seconds(py, "timeout", timeout)?;
        self.acquire_blocking(py, timeout)
    }

    /// Takes the lock only if it is free now, under a fresh lease (revoked
    /// again when the lock is busy); `None` when it is held elsewhere.
    fn try_acquire(&self, py: Python<'_>) -> PyResult<Option<PyFencingToken>> {
        let lock = &self.inner;
        Ok(block(py, lock.try_acquire())?.map(PyFencingToken::from))
    }

    /// Unlocks and revokes the lease; both are attempted and the first error
    /// raised (`FencedError` when the hold had already ended).
    /// `InvalidArgumentError` when not held through this object.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let lock = &self.inner;
        block(py, lock.release())
    }

    /// Awaitable `acquire`; cancelling the task revokes the lease.
    #[pyo3(signature = (timeout = None))]
    fn acquire_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = opt_seconds(py, "timeout", timeout)?;
        self.acquire_awaitable(py, timeout)
    }

    /// Awaitable `try_acquire`.
    fn try_acquire_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lock = self.inner.clone();
        awaitable(py, async move {
            Ok(lock
                .try_acquire()
                .await
                .map_err(py_err)?
                .map(PyFencingToken::from))
        })
    }

    /// Awaitable `release`.
    fn release_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lock = self.inner.clone();
        awaitable(py, async move { lock.release().await.map_err(py_err) })
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<PyFencingToken> {
        self.acquire_blocking(py, self.timeout)
    }

    /// Releases and revokes; errors are raised only when the block did not
    /// raise (so they never hide the block's exception).
    #[pyo3(signature = (exc_type, exc, tb))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc, tb);
        scope::exit(exc_type, self.release(py))
    }

    fn __aenter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.acquire_awaitable(py, self.timeout)
    }

    #[pyo3(signature = (exc_type, exc, tb))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        exc_type: Option<&Bound<'py, PyAny>>,
        exc: Option<&Bound<'py, PyAny>>,
        tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (exc, tb);
        let lock = self.inner.clone();
        scope::aexit(py, exc_type, async move { lock.release().await })
    }

    fn __repr__(&self) -> String {
        match self.inner.token() {
            Some(t) => format!("<ScopedLock {:?} held {t}>", self.inner.name()),
            None => format!("<ScopedLock {:?}>", self.inner.name()),
        }
    }
}
