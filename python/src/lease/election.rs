//! `Election`, `Leader` and `Observer`.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shardkit::lease::{Election, LeaderInfo, Observer, WaitOptions};
use shardkit::runtime::Home;
use shardkit::{Error, ErrorKind};
use tokio::task::JoinHandle;

use super::opt_seconds;
use super::token::PyFencingToken;
use super::waiter::bytes_of;
use crate::awaitable::awaitable;
use crate::errors::{py_err, OrRaise};
use crate::wait::{block, hold, wait_or_drop};

/// Who leads an election, as read from the store.
#[pyclass(frozen, eq, module = "shardkit", name = "Leader")]
#[derive(PartialEq)]
pub(crate) struct PyLeader {
    inner: LeaderInfo,
}

impl From<LeaderInfo> for PyLeader {
    fn from(inner: LeaderInfo) -> Self {
        PyLeader { inner }
    }
}

#[pymethods]
impl PyLeader {
    /// The election's name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// The value the leader proclaimed (its address, typically).
    #[getter]
    fn value<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.value)
    }

    /// The leader's key in the store.
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.key)
    }

    /// The leader's create revision: the value of its fencing token.
    #[getter]
    fn revision(&self) -> i64 {
        self.inner.revision
    }

    /// The leader's lease.
    #[getter]
    fn lease(&self) -> i64 {
        self.inner.lease
    }

    fn __repr__(&self) -> String {
        format!(
            "<Leader {:?} value={:?} revision={} lease={:x}>",
            self.inner.name,
            String::from_utf8_lossy(&self.inner.value),
            self.inner.revision,
            self.inner.lease
        )
    }
}

/// One candidate in a named election, bound to a session
/// (`Session.election(name)`). The leader is the oldest candidate; its
/// token is its candidacy's create revision.
#[pyclass(frozen, module = "shardkit", name = "Election")]
pub(crate) struct PyElection {
    pub(crate) inner: Arc<Election>,
}

#[pymethods]
impl PyElection {
    /// The election's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The token of the current leadership through this object, or `None`.
    #[getter]
    fn token(&self) -> Option<PyFencingToken> {
        self.inner.token().map(PyFencingToken::from)
    }

    /// Waits until this candidate leads (at most `timeout` seconds),
    /// proclaiming `value`; returns the leadership's token. Ctrl-C withdraws
    /// the candidacy.
    #[pyo3(signature = (value, timeout = None))]
    fn campaign(&self, value: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<PyFencingToken> {
        let py = value.py();
        let value = bytes_of(value)?;
        let timeout = opt_seconds(py, "timeout", timeout)?;
        let election = &self.inner;
        let token = hold(
            py,
            timeout,
            |opts| async move { election.campaign_with(&value, &opts).await },
            |py| block(py, election.resign()),
        )?;
        Ok(token.into())
    }

    /// Replaces the proclaimed value, only while leading (`FencedError`).
    fn proclaim(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = bytes_of(value)?;
        let election = &self.inner;
        block(value.py(), election.proclaim(&v))
    }

    /// Gives up leadership (`InvalidArgumentError` when not leading).
    fn resign(&self, py: Python<'_>) -> PyResult<()> {
        let election = &self.inner;
        block(py, election.resign())
    }

    /// The current leader, or `None`.
    fn leader(&self, py: Python<'_>) -> PyResult<Option<PyLeader>> {
        let election = &self.inner;
        Ok(block(py, election.leader())?.map(PyLeader::from))
    }

    /// Awaitable `campaign`; cancelling the task withdraws the candidacy.
    #[pyo3(signature = (value, timeout = None))]
    fn campaign_async<'py>(
        &self,
        value: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = value.py();
        let value = bytes_of(value)?;
        let timeout = opt_seconds(py, "timeout", timeout)?;
        let election = self.inner.clone();
        awaitable(py, async move {
            let opts = WaitOptions {
                timeout,
                cancel: None,
            };
            election
                .campaign_with(&value, &opts)
                .await
                .map(PyFencingToken::from)
                .map_err(py_err)
        })
    }

    /// Awaitable `proclaim`.
    fn proclaim_async<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let v = bytes_of(value)?;
        let election = self.inner.clone();
        awaitable(value.py(), async move {
            election.proclaim(&v).await.map_err(py_err)
        })
    }

    /// Awaitable `resign`.
    fn resign_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let election = self.inner.clone();
        awaitable(py, async move { election.resign().await.map_err(py_err) })
    }

    /// Awaitable `leader`.
    fn leader_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let election = self.inner.clone();
        awaitable(py, async move {
            Ok(election.leader().await.map_err(py_err)?.map(PyLeader::from))
        })
    }

    fn __repr__(&self) -> String {
        match self.inner.token() {
            Some(t) => format!("<Election {:?} leading {t}>", self.inner.name()),
            None => format!("<Election {:?}>", self.inner.name()),
        }
    }
}

type Next = shardkit::Result<Option<LeaderInfo>>;

/// The observer and its step in flight. A step runs as its own task and
/// survives a caller that stops waiting (timeout, Ctrl-C, task cancel): the
/// next call picks up its result, so no change is ever skipped.
struct ObserverState {
    observer: Arc<tokio::sync::Mutex<Observer>>,
    pending: Option<JoinHandle<Next>>,
    /// The process whose runtime runs `pending`.
    home: Home,
}

impl Drop for ObserverState {
    fn drop(&mut self) {
        if let Some(task) = self.pending.take() {
            if self.home.is_here() {
                task.abort();
            } else {
                // A forked child: aborting would schedule the parent's task
                // on a runtime with no threads here.
                std::mem::forget(task);
            }
        }
    }
}

/// Waits (at most `timeout`) for the next leadership state. Must run inside
/// the runtime (it spawns the step).
async fn next_state(
    state: &tokio::sync::Mutex<ObserverState>,
    timeout: Option<Duration>,
) -> Option<Next> {
    let mut st = state.lock().await;
    let observer = st.observer.clone();
    let task = st
        .pending
        .get_or_insert_with(|| tokio::spawn(async move { observer.lock().await.next().await }));
    let joined = match timeout {
        Some(t) => tokio::time::timeout(t, task).await.ok()?,
        None => task.await,
    };
    st.pending = None;
    Some(joined.unwrap_or_else(|e| {
        Err(Error::new(
            ErrorKind::Io,
            format!("election observer task failed: {e}"),
        ))
    }))
}

fn leader_object(py: Python<'_>, state: Option<LeaderInfo>) -> PyResult<Py<PyAny>> {
    match state {
        Some(info) => Ok(Py::new(py, PyLeader::from(info))?.into_any()),
        None => Ok(py.None()),
    }
}

/// Follows the leadership of one election (`Coordinator.observe(name)`).
///
/// Iterating (with `for` or `async for`) yields the current state first,
/// then every change: a `Leader`, or `None` when nobody leads. The
/// iteration never ends by itself; `wait(timeout)` gives one state with a
/// bound.
#[pyclass(frozen, module = "shardkit", name = "Observer")]
pub(crate) struct PyObserver {
    name: String,
    state: Arc<tokio::sync::Mutex<ObserverState>>,
    /// Where the step in flight runs: a forked child would wait on it
    /// forever (or on the locks it holds), so it is refused there first.
    home: Home,
}

impl PyObserver {
    pub(crate) fn new(name: &str, observer: Observer) -> PyObserver {
        let home = Home::here();
        PyObserver {
            name: name.to_string(),
            state: Arc::new(tokio::sync::Mutex::new(ObserverState {
                observer: Arc::new(tokio::sync::Mutex::new(observer)),
                pending: None,
                home,
            })),
            home,
        }
    }

    fn check_process(&self, py: Python<'_>) -> PyResult<()> {
        self.home.check("this Observer").or_raise(py)
    }

    fn timed_out(&self, timeout: Option<Duration>) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "no leadership state of election {:?} within {} ms",
                self.name,
                timeout.unwrap_or_default().as_millis()
            ),
        )
    }
}

#[pymethods]
impl PyObserver {
    /// The election observed.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The next leadership state (the current one on the first call):
    /// a `Leader` or `None`. Raises `ShardkitTimeoutError` after `timeout`
    /// seconds without a change; the change is not lost, the next call gets it.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let timeout = opt_seconds(py, "timeout", timeout)?;
        self.check_process(py)?;
        // Cancel-safe: a wait dropped by Ctrl-C leaves its step running for
        // the next call.
        match wait_or_drop(py, next_state(&self.state, timeout))? {
            Some(r) => leader_object(py, r.or_raise(py)?),
            None => Err(crate::errors::to_py(py, self.timed_out(timeout))),
        }
    }

    /// Awaitable `wait`.
    #[pyo3(signature = (timeout = None))]
    fn wait_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = opt_seconds(py, "timeout", timeout)?;
        self.check_process(py)?;
        let state = self.state.clone();
        let timed_out = self.timed_out(timeout);
        awaitable(py, async move {
            match next_state(&state, timeout).await {
                Some(r) => {
                    let r = r.map_err(py_err)?;
                    Python::attach(|py| leader_object(py, r))
                }
                None => Err(py_err(timed_out)),
            }
        })
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.wait(py, None)
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.wait_async(py, None)
    }

    fn __repr__(&self) -> String {
        format!("<Observer {:?}>", self.name)
    }
}
