//! `Coordinator` (the entry point) and `ScopedLock` (`coord.lock(...)`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use shardkit::lease::{Coordinator, Lock, Session, SessionOptions, WaitOptions, DEFAULT_TIMEOUT};
use shardkit::ErrorKind;

use super::election::{PyLeader, PyObserver};
use super::session::PySession;
use super::token::PyFencingToken;
use super::waiter::acquire_blocking;
use super::{awaitable, block, opt_seconds, py_err, seconds};
use crate::errors::{raise, OrRaise};

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
    fn observe(&self, py: Python<'_>, name: &str) -> PyResult<PyObserver> {
        let observer = self.inner.observe(name).or_raise(py)?;
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

    /// Lock `name` for the length of a `with` / `async with` block:
    /// `with coord.lock("jobs") as token:`. Each entry grants its own lease
    /// of `ttl` seconds, waits at most `timeout` seconds for the lock
    /// (`None`: as long as it takes), and on exit releases the lock and
    /// revokes the lease, so nothing outlives the block.
    #[pyo3(signature = (name, ttl = 10, timeout = None))]
    fn lock(
        &self,
        py: Python<'_>,
        name: String,
        ttl: i64,
        timeout: Option<f64>,
    ) -> PyResult<PyScopedLock> {
        Ok(PyScopedLock {
            coord: self.inner.clone(),
            name,
            opts: session_options(py, ttl, None, DEFAULT_TIMEOUT.as_secs_f64())?,
            timeout: opt_seconds(py, "timeout", timeout)?,
            held: Arc::new(Mutex::new(None)),
        })
    }

    fn __repr__(&self) -> String {
        format!("<Coordinator {}>", self.inner.describe())
    }
}

type Held = Arc<Mutex<Option<(Session, Arc<Lock>)>>>;

fn take(held: &Held) -> Option<(Session, Arc<Lock>)> {
    held.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Revokes a session unless disarmed: an `async with` entry cancelled
/// half-way must not leave its lease to run out on its own.
struct CloseOnDrop(Option<Session>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let (Some(session), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move { session.close().await });
        }
    }
}

/// Releases the lock and revokes the lease; the first error, if any.
async fn release(session: Session, lock: Arc<Lock>) -> shardkit::Result<()> {
    let unlocked = lock.unlock().await;
    let closed = session.close().await;
    unlocked.and(closed)
}

/// `coord.lock(name, ttl, timeout)`: a lock held for one `with` block under
/// a lease of its own. One object is entered once at a time.
#[pyclass(frozen, module = "shardkit", name = "ScopedLock")]
pub(crate) struct PyScopedLock {
    coord: Coordinator,
    name: String,
    opts: SessionOptions,
    timeout: Option<Duration>,
    held: Held,
}

impl PyScopedLock {
    fn not_entered(&self, py: Python<'_>) -> PyResult<()> {
        if self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return Err(raise(
                py,
                ErrorKind::InvalidArgument,
                format!(
                    "lock {:?} is already entered through this object",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl PyScopedLock {
    /// The lock's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The token while entered, else `None`.
    #[getter]
    fn token(&self) -> Option<PyFencingToken> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref()
            .and_then(|(_, l)| l.token())
            .map(PyFencingToken::from)
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<PyFencingToken> {
        self.not_entered(py)?;
        let coord = &self.coord;
        let session = block(py, coord.session(self.opts))?;
        let got = Lock::new(&session, &self.name)
            .or_raise(py)
            .and_then(|lock| {
                let lock = Arc::new(lock);
                acquire_blocking(py, &lock, self.timeout).map(|t| (lock, t))
            });
        match got {
            Ok((lock, token)) => {
                *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((session, lock));
                Ok(token.into())
            }
            Err(e) => {
                let _ = block(py, session.close());
                Err(e)
            }
        }
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
        let Some((session, lock)) = take(&self.held) else {
            return Ok(false);
        };
        let r = block(py, release(session, lock));
        if exc_type.is_none() {
            r?;
        }
        Ok(false)
    }

    fn __aenter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.not_entered(py)?;
        let (coord, name, opts, held) = (
            self.coord.clone(),
            self.name.clone(),
            self.opts,
            self.held.clone(),
        );
        let wait = WaitOptions {
            timeout: self.timeout,
            cancel: None,
        };
        awaitable(py, async move {
            let session = coord.session(opts).await.map_err(py_err)?;
            let mut guard = CloseOnDrop(Some(session.clone()));
            let lock = Arc::new(Lock::new(&session, &name).map_err(py_err)?);
            let token = lock.lock_with(&wait).await.map_err(py_err)?;
            guard.0 = None;
            *held.lock().unwrap_or_else(|p| p.into_inner()) = Some((session, lock));
            Ok(PyFencingToken::from(token))
        })
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
        let raised = exc_type.is_some();
        let held = take(&self.held);
        awaitable(py, async move {
            if let Some((session, lock)) = held {
                if let Err(e) = release(session, lock).await {
                    if !raised {
                        return Err(py_err(e));
                    }
                }
            }
            Ok(false)
        })
    }

    fn __repr__(&self) -> String {
        format!("<ScopedLock {:?}>", self.name)
    }
}
