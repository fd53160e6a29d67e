//! `Lock`: one contender for a named lock under a session.

use std::sync::Arc;

use pyo3::prelude::*;
use shardkit::lease::{Lock, WaitOptions};

use super::opt_seconds;
use super::token::PyFencingToken;
use crate::awaitable::awaitable;
use crate::errors::py_err;
use crate::keys::with_key;
use crate::scope;
use crate::wait::{block, hold};

/// Bytes of a key or value argument (`bytes | str | bytearray | memoryview`).
pub(super) fn bytes_of(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    with_key(obj, <[u8]>::to_vec)
}

/// A contender for a named lock, bound to a session (`Session.lock(name)`).
///
/// Each `Lock` object is its own waiter: two `Lock`s of one session exclude
/// each other. `with lock as token:` acquires (waiting as long as it takes)
/// and releases on exit; `async with` does the same without blocking.
/// Blocking methods release the GIL; a blocking `acquire` is interrupted by
/// Ctrl-C, and an awaiting `acquire_async` by task cancellation, in both
/// cases leaving no waiter key behind.
#[pyclass(frozen, module = "shardkit", name = "Lock")]
pub(crate) struct PyLock {
    pub(crate) inner: Arc<Lock>,
}

#[pymethods]
impl PyLock {
    /// The lock's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The token of the current hold through this object, or `None`.
    #[getter]
    fn token(&self) -> Option<PyFencingToken> {
        self.inner.token().map(PyFencingToken::from)
    }

    /// Waits until the lock is held (at most `timeout` seconds, raising
    /// `ShardkitTimeoutError`); returns the fencing token.
    #[pyo3(signature = (timeout = None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<PyFencingToken> {
        let timeout = opt_seconds(py, "timeout", timeout)?;
        let lock = &self.inner;
        let token = hold(
            py,
            timeout,
            |opts| async move { lock.lock_with(&opts).await },
            |py| block(py, lock.unlock()),
        )?;
        Ok(token.into())
    }

    /// Takes the lock only if it is free now; `None` when it is held.
    fn try_acquire(&self, py: Python<'_>) -> PyResult<Option<PyFencingToken>> {
        let lock = &self.inner;
        Ok(block(py, lock.try_lock())?.map(PyFencingToken::from))
    }

    /// Releases the lock. `FencedError` when the hold had already ended (its
    /// lease expired); `InvalidArgumentError` when not held through this object.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let lock = &self.inner;
        block(py, lock.unlock())
    }

    /// Writes `key = value` only while this lock is held (`FencedError`
    /// otherwise); returns the write's revision.
    fn put(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<i64> {
        let (k, v) = (bytes_of(key)?, bytes_of(value)?);
        let lock = &self.inner;
        block(key.py(), lock.put(&k, &v))
    }

    /// `put` with an explicit token, which must be one of this lock's.
    fn put_with(
        &self,
        token: &PyFencingToken,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<i64> {
        let (k, v) = (bytes_of(key)?, bytes_of(value)?);
        let (lock, token) = (&self.inner, &token.inner);
        block(key.py(), lock.put_with(token, &k, &v))
    }

    /// Awaitable `acquire`; cancelling the task withdraws the waiter.
    #[pyo3(signature = (timeout = None))]
    fn acquire_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = opt_seconds(py, "timeout", timeout)?;
        let lock = self.inner.clone();
        awaitable(py, async move {
            let opts = WaitOptions {
                timeout,
                cancel: None,
            };
            lock.lock_with(&opts)
                .await
                .map(PyFencingToken::from)
                .map_err(py_err)
        })
    }

    /// Awaitable `try_acquire`.
    fn try_acquire_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lock = self.inner.clone();
        awaitable(py, async move {
            Ok(lock
                .try_lock()
                .await
                .map_err(py_err)?
                .map(PyFencingToken::from))
        })
    }

    /// Awaitable `release`.
    fn release_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lock = self.inner.clone();
        awaitable(py, async move { lock.unlock().await.map_err(py_err) })
    }

    /// Awaitable `put`.
    fn put_async<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (k, v) = (bytes_of(key)?, bytes_of(value)?);
        let lock = self.inner.clone();
        awaitable(
            key.py(),
            async move { lock.put(&k, &v).await.map_err(py_err) },
        )
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<PyFencingToken> {
        self.acquire(py, None)
    }

    /// Releases. When the block raised, a failed release is not allowed to
    /// hide that exception; otherwise it raises (`FencedError`: the hold
    /// ended before the block did).
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
        self.acquire_async(py, None)
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
        scope::aexit(py, exc_type, async move { lock.unlock().await })
    }

    fn __repr__(&self) -> String {
        match self.inner.token() {
            Some(t) => format!("<Lock {:?} held {t}>", self.inner.name()),
            None => format!("<Lock {:?}>", self.inner.name()),
        }
    }
}
