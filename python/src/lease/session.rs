//! `Session`: one lease kept alive in the background.

use std::sync::Arc;

use pyo3::prelude::*;
use shardkit::lease::{Election, Lock, Session};
use shardkit::{Error, ErrorKind};

use super::election::PyElection;
use super::shards::{self, PyShardOwner};
use super::token::PyFencingToken;
use super::waiter::{bytes_of, PyLock};
use crate::awaitable::awaitable;
use crate::errors::{exception_object, py_err, OrRaise};
use crate::scope;
use crate::wait::block;

/// A lease kept alive in the background (`Coordinator.session()`).
///
/// The session declares itself lost (exactly once) when no keepalive was
/// acknowledged within `ttl - margin`, always before the server can expire
/// the lease; from then on everything held under it must be treated as gone.
/// Close it (or use `with` / `async with`) to revoke the lease at once,
/// releasing every lock, candidacy and shard held under it; a session that
/// is only dropped stops its keepalives and its lease expires after `ttl`.
#[pyclass(frozen, module = "shardkit", name = "Session")]
pub(crate) struct PySession {
    pub(crate) inner: Session,
}

#[pymethods]
impl PySession {
    /// The lease id (pass it to `Coordinator.resume` after a restart).
    #[getter]
    fn lease_id(&self) -> i64 {
        self.inner.lease_id()
    }

    /// The TTL the server granted, in seconds.
    #[getter]
    fn ttl(&self) -> u64 {
        self.inner.ttl().as_secs()
    }

    /// How long before the TTL the session gives up, in seconds.
    #[getter]
    fn margin(&self) -> f64 {
        self.inner.margin().as_secs_f64()
    }

    /// Seconds left before the local deadline (0 once lost or closed).
    #[getter]
    fn remaining(&self) -> f64 {
        self.inner.remaining().as_secs_f64()
    }

    /// Whether the session has been declared lost (not merely closed).
    #[getter]
    fn is_lost(&self) -> bool {
        self.inner.is_lost()
    }

    /// Whether `close()` was called.
    #[getter]
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Raises `SessionLostError` once the session is lost or closed.
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.check().or_raise(py)
    }

    /// An awaitable that resolves, once the session is lost, with the reason
    /// (a `SessionLostError` instance, returned, not raised). It never
    /// resolves for a session that is closed instead. In a child forked
    /// after the session was made it raises at once (the session cannot be
    /// followed there).
    fn lost<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let session = self.inner.clone();
        awaitable(py, async move {
            let e = session.lost().await;
            if e.kind() != ErrorKind::SessionLost {
                return Err(py_err(e));
            }
            Ok(Python::attach(|py| exception_object(py, e)))
        })
    }

    /// Calls `callback(error)` exactly once when the session is lost (at
    /// once if it already is), with a `SessionLostError`. It runs on a
    /// runtime thread holding the GIL and must return promptly; what it
    /// raises goes to `sys.unraisablehook`. It never runs after `close()`.
    fn on_lost(&self, callback: Bound<'_, PyAny>) -> PyResult<()> {
        if !callback.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "on_lost callback must be callable, not {}",
                crate::keys::type_name(&callback)
            )));
        }
        let callback = callback.unbind();
        self.inner.on_lost(move |e: &Error| {
            let e = e.clone();
            // Not at all during interpreter shutdown.
            let _ = Python::try_attach(|py| {
                let exc = exception_object(py, e);
                if let Err(err) = callback.call1(py, (exc,)) {
                    err.write_unraisable(py, Some(callback.bind(py)));
                }
            });
        });
        Ok(())
    }

    /// Stops the keepalives and revokes the lease, deleting every key held
    /// under it. Lost callbacks never run afterwards.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let session = &self.inner;
        block(py, session.close())
    }

    /// Awaitable `close`.
    fn close_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let session = self.inner.clone();
        awaitable(py, async move { session.close().await.map_err(py_err) })
    }

    /// A contender for lock `name` under this session (nothing is sent yet).
    fn lock(&self, py: Python<'_>, name: &str) -> PyResult<PyLock> {
        let lock = Lock::new(&self.inner, name).or_raise(py)?;
        Ok(PyLock {
            inner: Arc::new(lock),
        })
    }

    /// A candidate in election `name` under this session.
    fn election(&self, py: Python<'_>, name: &str) -> PyResult<PyElection> {
        let election = Election::new(&self.inner, name).or_raise(py)?;
        Ok(PyElection {
            inner: Arc::new(election),
        })
    }

    /// Writes `key = value` only while `token` (of this session) is
    /// current; returns the write's revision. `FencedError` when the hold
    /// has passed on, `SessionLostError` once the session is lost.
    fn guarded_put(
        &self,
        token: &PyFencingToken,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<i64> {
        let (k, v) = (bytes_of(key)?, bytes_of(value)?);
        let (session, token) = (&self.inner, &token.inner);
        block(key.py(), session.guarded_put(token, &k, &v))
    }

    /// Awaitable `guarded_put`.
    fn guarded_put_async<'py>(
        &self,
        token: &PyFencingToken,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (k, v) = (bytes_of(key)?, bytes_of(value)?);
        let (session, token) = (self.inner.clone(), token.inner.clone());
        awaitable(key.py(), async move {
            session.guarded_put(&token, &k, &v).await.map_err(py_err)
        })
    }

    /// Joins shard group `group` as `worker`, competing for `shards` (every
    /// worker of a group passes the same list). With `on_change`, each
    /// `OwnershipEvent` is passed to it on a runtime thread holding the GIL
    /// (exceptions go to `sys.unraisablehook`; a shard is released only
    /// after its "lost" call returns). Without it, events queue up for
    /// iterating the returned `ShardOwner`.
    #[pyo3(signature = (group, worker, shards, on_change = None))]
    fn own_shards(
        &self,
        py: Python<'_>,
        group: &str,
        worker: &str,
        shards: Vec<String>,
        on_change: Option<Bound<'_, PyAny>>,
    ) -> PyResult<PyShardOwner> {
        let (handler, events) = shards::handler(on_change)?;
        let session = &self.inner;
        let owner = block(
            py,
            shardkit::lease::ShardOwner::start(session, group, worker, shards, handler),
        )?;
        Ok(PyShardOwner::new(group, worker, owner, events))
    }

    /// Awaitable `own_shards`.
    #[pyo3(signature = (group, worker, shards, on_change = None))]
    fn own_shards_async<'py>(
        &self,
        py: Python<'py>,
        group: String,
        worker: String,
        shards: Vec<String>,
        on_change: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (handler, events) = shards::handler(on_change)?;
        let session = self.inner.clone();
        awaitable(py, async move {
            let owner =
                shardkit::lease::ShardOwner::start(&session, &group, &worker, shards, handler)
                    .await
                    .map_err(py_err)?;
            Ok(PyShardOwner::new(&group, &worker, owner, events))
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type, exc, tb))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        exc: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let _ = (exc, tb);
        scope::exit(exc_type, self.close(py))
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        scope::aenter_self(slf)
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
        let session = self.inner.clone();
        scope::aexit(py, exc_type, async move { session.close().await })
    }

    fn __repr__(&self) -> String {
        let state = if self.inner.is_lost() {
            "lost"
        } else if self.inner.is_closed() {
            "closed"
        } else {
            "alive"
        };
        format!(
            "<Session lease={:x} ttl={}s {state}>",
            self.inner.lease_id(),
            self.inner.ttl().as_secs()
        )
    }
}
