//! `Coordinator`: the entry point to a store.

use std::time::Duration;

use pyo3::prelude::*;
use shardkit::lease::{Coordinator, FollowPolicy, SessionOptions, DEFAULT_TIMEOUT};
use shardkit::ErrorKind;

use super::election::{PyLeader, PyObserver};
use super::scoped_lock::PyScopedLock;
use super::session::PySession;
use super::{opt_seconds, seconds};
use crate::awaitable::awaitable;
use crate::errors::{py_err, raise, OrRaise};
use crate::wait::block;

/// Session options from Python arguments, checked by core when used.
fn session_options(
    py: Python<'_>,
    ttl: i64,
    margin: Option<f64>,
    rpc_timeout: f64,
) -> PyResult<SessionOptions> {
    if ttl < 1 {
        // Said here in Python's terms (core would print a Duration).
        return Err(raise(
            py,
            ErrorKind::InvalidArgument,
            format!("ttl {ttl}: a lease TTL is a whole number of seconds, 1 or more"),
        ));
    }
    Ok(SessionOptions {
        ttl: Duration::from_secs(ttl as u64),
        margin: opt_seconds(py, "margin", margin)?,
        rpc_timeout: seconds(py, "rpc_timeout", rpc_timeout)?,
    })
}

/// A handle on a store: a real etcd cluster, or an embedded in-process
/// store with the same semantics. Sessions, locks, elections and shard
/// owners are made from it.
///
/// `Coordinator()` connects to `endpoints` when given, else to
/// `SHARDKIT_ENDPOINTS` when set, else makes a new embedded store.
/// `Coordinator.embedded()` always makes a new embedded store; share one
/// coordinator between the contenders of a process (it is thread-safe).
#[pyclass(frozen, module = "shardkit", name = "Coordinator")]
pub(crate) struct PyCoordinator {
    inner: Coordinator,
}

#[pymethods]
impl PyCoordinator {
    #[new]
    #[pyo3(signature = (endpoints = None, timeout = 5.0))]
    fn new(py: Python<'_>, endpoints: Option<&str>, timeout: f64) -> PyResult<Self> {
        let timeout = seconds(py, "timeout", timeout)?;
        let inner = block(py, Coordinator::from_env(endpoints, timeout))?;
        Ok(PyCoordinator { inner })
    }

    /// A new, empty in-process store.
    #[staticmethod]
    fn embedded() -> Self {
        PyCoordinator {
            inner: Coordinator::embedded(),
        }
    }

    /// Connects to etcd at `endpoints` (`"host:port,host:port"`, or
    /// `http://host:port`); fails within `timeout` seconds when none answers.
    #[staticmethod]
    #[pyo3(signature = (endpoints, timeout = 5.0))]
    fn connect(py: Python<'_>, endpoints: &str, timeout: f64) -> PyResult<Self> {
        let timeout = seconds(py, "timeout", timeout)?;
        let inner = block(py, Coordinator::connect(endpoints, timeout))?;
        Ok(PyCoordinator { inner })
    }

    /// Awaitable `connect`.
    #[staticmethod]
    #[pyo3(signature = (endpoints, timeout = 5.0))]
    fn connect_async(
        py: Python<'_>,
        endpoints: String,
        timeout: f64,
    ) -> PyResult<Bound<'_, PyAny>> {
        let timeout = seconds(py, "timeout", timeout)?;
        awaitable(py, async move {
            let inner = Coordinator::connect(&endpoints, timeout)
                .await
                .map_err(py_err)?;
            Ok(PyCoordinator { inner })
        })
    }

    /// Whether this is an embedded store.
    #[getter]
    fn is_embedded(&self) -> bool {
        self.inner.is_embedded()
    }

    /// `"embedded store"` or `"etcd at <endpoints>"`.
    #[getter]
    fn description(&self) -> String {
        self.inner.describe()
    }

    /// The bound, in seconds, on requests made without a session.
    #[getter]
    fn timeout(&self) -> f64 {
        self.inner.timeout().as_secs_f64()
    }

    /// Grants a lease of `ttl` seconds and keeps it alive. The session gives
    /// itself up `margin` seconds before the TTL (default: a fifth of it,
    /// 0.2 to 3 s); each request waits at most `rpc_timeout` seconds.
    #[pyo3(signature = (ttl = 10, margin = None, rpc_timeout = 5.0))]
    fn session(
        &self,
        py: Python<'_>,
        ttl: i64,
        margin: Option<f64>,
        rpc_timeout: f64,
    ) -> PyResult<PySession> {
        let opts = session_options(py, ttl, margin, rpc_timeout)?;
        let coord = &self.inner;
        let inner = block(py, coord.session(opts))?;
        Ok(PySession { inner })
    }

    /// Awaitable `session`.
    #[pyo3(signature = (ttl = 10, margin = None, rpc_timeout = 5.0))]
    fn session_async<'py>(
        &self,
        py: Python<'py>,
        ttl: i64,
        margin: Option<f64>,
        rpc_timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let opts = session_options(py, ttl, margin, rpc_timeout)?;
        let coord = self.inner.clone();
        awaitable(py, async move {
            let inner = coord.session(opts).await.map_err(py_err)?;
            Ok(PySession { inner })
        })
    }

    /// Takes over the live lease `lease_id` (after a restart); it keeps the
    /// TTL it was granted. `NotFoundError` when it has expired.
    #[pyo3(signature = (lease_id, margin = None, rpc_timeout = 5.0))]
    fn resume(
        &self,
        py: Python<'_>,
        lease_id: i64,
        margin: Option<f64>,
        rpc_timeout: f64,
    ) -> PyResult<PySession> {
        let opts = session_options(py, 10, margin, rpc_timeout)?;
        let coord = &self.inner;
        let inner = block(py, coord.resume(lease_id, opts))?;
        Ok(PySession { inner })
    }

    /// Awaitable `resume`.
    #[pyo3(signature = (lease_id, margin = None, rpc_timeout = 5.0))]
    fn resume_async<'py>(
        &self,
        py: Python<'py>,
        lease_id: i64,
        margin: Option<f64>,
        rpc_timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let opts = session_options(py, 10, margin, rpc_timeout)?;
        let coord = self.inner.clone();
        awaitable(py, async move {
            let inner = coord.resume(lease_id, opts).await.map_err(py_err)?;
            Ok(PySession { inner })
        })
    }

    /// The current leader of election `name`, or `None`.
    fn leader(&self, py: Python<'_>, name: &str) -> PyResult<Option<PyLeader>> {
        let coord = &self.inner;
        Ok(block(py, coord.leader(name))?.map(PyLeader::from))
    }

    /// Awaitable `leader`.
    fn leader_async<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let coord = self.inner.clone();
        awaitable(py, async move {
            Ok(coord
                .leader(&name)
                .await
                .map_err(py_err)?
                .map(PyLeader::from))
        })
    }

    /// Follows the leadership of election `name` (iterate it, or `wait()`).
    /// A failing store is retried, pausing `retry_min` seconds at first and
    /// doubling up to `retry_max`; `wait()` and iteration raise the store's
    /// error only once it has kept failing for `report_after` seconds (0:
    /// at the first failure), and the call after that gets the state the
    /// store then has. `None` takes core's default, the policy of every
    /// binding: 0.05, 1 and 5 seconds.
    #[pyo3(signature = (name, *, retry_min = None, retry_max = None, report_after = None))]
    fn observe(
        &self,
        py: Python<'_>,
        name: &str,
        retry_min: Option<f64>,
        retry_max: Option<f64>,
        report_after: Option<f64>,
    ) -> PyResult<PyObserver> {
        let default = FollowPolicy::default();
        let policy = FollowPolicy {
            retry_min: opt_seconds(py, "retry_min", retry_min)?.unwrap_or(default.retry_min),
            retry_max: opt_seconds(py, "retry_max", retry_max)?.unwrap_or(default.retry_max),
            report_after: opt_seconds(py, "report_after", report_after)?
                .unwrap_or(default.report_after),
        };
        let observer = self.inner.observe_with(name, policy).or_raise(py)?;
        Ok(PyObserver::new(name, observer))
    }

    /// Revokes lease `lease_id` (operators, tests): its keys are deleted and
    /// its session, wherever it runs, finds itself lost. A lease already
    /// gone is fine.
    fn revoke(&self, py: Python<'_>, lease_id: i64) -> PyResult<()> {
        let coord = &self.inner;
        block(py, coord.revoke(lease_id))
    }

    /// Awaitable `revoke`.
    fn revoke_async<'py>(&self, py: Python<'py>, lease_id: i64) -> PyResult<Bound<'py, PyAny>> {
        let coord = self.inner.clone();
        awaitable(
            py,
            async move { coord.revoke(lease_id).await.map_err(py_err) },
        )
    }

    /// `(granted, remaining)` TTL of lease `lease_id` in seconds, `None`
    /// when it is gone.
    fn lease_ttl(&self, py: Python<'_>, lease_id: i64) -> PyResult<Option<(i64, i64)>> {
        let coord = &self.inner;
        block(py, coord.lease_ttl(lease_id))
    }

    /// Lock `name` under a lease of its own, for the length of a `with` /
    /// `async with` block (`with coord.lock("jobs") as token:`) or between
    /// `acquire` and `release`. Each hold grants its own lease of `ttl`
    /// seconds and each release revokes it, so nothing outlives the hold.
    /// A `with` entry waits at most `timeout` seconds for the lock (`None`:
    /// as long as it takes).
    #[pyo3(signature = (name, ttl = 10, timeout = None))]
    fn lock(
        &self,
        py: Python<'_>,
        name: &str,
        ttl: i64,
        timeout: Option<f64>,
    ) -> PyResult<PyScopedLock> {
        let opts = session_options(py, ttl, None, DEFAULT_TIMEOUT.as_secs_f64())?;
        let timeout = opt_seconds(py, "timeout", timeout)?;
        let inner = self.inner.scoped_lock(name, opts).or_raise(py)?;
        Ok(PyScopedLock::new(inner, timeout))
    }

    fn __repr__(&self) -> String {
        format!("<Coordinator {}>", self.inner.describe())
    }
}
