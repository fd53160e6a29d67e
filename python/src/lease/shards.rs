//! `ShardOwner` and `OwnershipEvent`.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyStopAsyncIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use shardkit::lease::{OwnershipEvent, OwnershipHandler, ShardOwner};
use shardkit::runtime::Home;
use shardkit::{Error, ErrorKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::opt_seconds;
use super::token::PyFencingToken;
use crate::awaitable::awaitable;
use crate::errors::{exception_object, py_err, raise, OrRaise};
use crate::scope;
use crate::wait::{block, wait_or_drop};

type Events = Arc<tokio::sync::Mutex<UnboundedReceiver<OwnershipEvent>>>;

/// A change of ownership of one shard.
#[pyclass(frozen, module = "shardkit", name = "OwnershipEvent")]
pub(crate) struct PyOwnershipEvent {
    inner: OwnershipEvent,
}

#[pymethods]
impl PyOwnershipEvent {
    /// `"gained"` or `"lost"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner {
            OwnershipEvent::Gained { .. } => "gained",
            OwnershipEvent::Lost { .. } => "lost",
        }
    }

    /// The shard.
    #[getter]
    fn shard(&self) -> &str {
        match &self.inner {
            OwnershipEvent::Gained { shard, .. } | OwnershipEvent::Lost { shard, .. } => shard,
        }
    }

    /// The token fencing writes made for the shard (gained only).
    #[getter]
    fn token(&self) -> Option<PyFencingToken> {
        match &self.inner {
            OwnershipEvent::Gained { token, .. } => Some(token.clone().into()),
            OwnershipEvent::Lost { .. } => None,
        }
    }

    /// Why the shard was lost (lost only).
    #[getter]
    fn reason(&self) -> Option<&str> {
        match &self.inner {
            OwnershipEvent::Gained { .. } => None,
            OwnershipEvent::Lost { reason, .. } => Some(reason),
        }
    }

    fn __repr__(&self) -> String {
        match &self.inner {
            OwnershipEvent::Gained { shard, token } => {
                format!("<OwnershipEvent gained {shard:?} {token}>")
            }
            OwnershipEvent::Lost { shard, reason } => {
                format!("<OwnershipEvent lost {shard:?}: {reason}>")
            }
        }
    }
}

/// The core handler for `on_change`: the callback when given, a queue
/// for iteration otherwise.
pub(super) fn handler(
    on_change: Option<Bound<'_, PyAny>>,
) -> PyResult<(OwnershipHandler, Option<Events>)> {
    match on_change {
        Some(cb) if !cb.is_none() => {
            if !cb.is_callable() {
                return Err(PyTypeError::new_err(format!(
                    "on_change must be callable, not {}",
                    crate::keys::type_name(&cb)
                )));
            }
            let cb = cb.unbind();
            let h: OwnershipHandler = Arc::new(move |ev: &OwnershipEvent| {
                // Skipped during interpreter shutdown.
                let _ = Python::try_attach(|py| {
                    let ev = PyOwnershipEvent { inner: ev.clone() };
                    if let Err(err) = cb.call1(py, (ev,)) {
                        err.write_unraisable(py, Some(cb.bind(py)));
                    }
                });
            });
            Ok((h, None))
        }
        _ => {
            let (tx, rx) = unbounded_channel();
            let h: OwnershipHandler = Arc::new(move |ev: &OwnershipEvent| {
                let _ = tx.send(ev.clone());
            });
            Ok((h, Some(Arc::new(tokio::sync::Mutex::new(rx)))))
        }
    }
}

/// Receives the next event within `timeout`: `Some(None)` once the owner
/// stopped and every event was taken, `None` on timeout.
async fn recv(events: &Events, timeout: Option<Duration>) -> Option<Option<OwnershipEvent>> {
    let mut rx = events.lock().await;
    match timeout {
        Some(t) => tokio::time::timeout(t, rx.recv()).await.ok(),
        None => Some(rx.recv().await),
    }
}

/// A worker taking part in a shard group (`Session.own_shards`).
///
/// Without an `on_change` callback, iterating it (`for` / `async for`)
/// yields `OwnershipEvent`s until the owner stops (closed, or its session
/// ended). `close()` (or leaving `with` / `async with`) hands every shard
/// over at once; dropping it stops taking part and the lease frees them.
#[pyclass(frozen, module = "shardkit", name = "ShardOwner")]
pub(crate) struct PyShardOwner {
    group: String,
    worker: String,
    inner: Arc<ShardOwner>,
    events: Option<Events>,
    /// The events come from the owner's worker task, which runs in this
    /// process only: a forked child would wait for them forever.
    home: Home,
}

impl PyShardOwner {
    pub(super) fn new(
        group: &str,
        worker: &str,
        owner: ShardOwner,
        events: Option<Events>,
    ) -> PyShardOwner {
        PyShardOwner {
            group: group.to_string(),
            worker: worker.to_string(),
            inner: Arc::new(owner),
            events,
            home: Home::here(),
        }
    }

    fn events(&self, py: Python<'_>) -> PyResult<&Events> {
        self.home.check("this ShardOwner").or_raise(py)?;
        self.events.as_ref().ok_or_else(|| {
            raise(
                py,
                ErrorKind::InvalidArgument,
                format!(
                    "worker {:?} of shard group {:?} reports to its on_change callback; there are no events to iterate",
                    self.worker, self.group
                ),
            )
        })
    }

    fn timed_out(&self, py: Python<'_>, timeout: Option<Duration>) -> PyErr {
        raise(
            py,
            ErrorKind::Timeout,
            format!(
                "no ownership event for worker {:?} within {} ms",
                self.worker,
                timeout.unwrap_or_default().as_millis()
            ),
        )
    }
}

#[pymethods]
impl PyShardOwner {
    /// The shard group.
    #[getter]
    fn group(&self) -> &str {
        &self.group
    }

    /// This worker's name.
    #[getter]
    fn worker(&self) -> &str {
        &self.worker
    }

    /// The shards owned now, with their tokens.
    #[getter]
    fn owned<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (shard, token) in self.inner.owned() {
            d.set_item(shard, PyFencingToken::from(token))?;
        }
        Ok(d)
    }

    /// Whether the owner has stopped (closed, or its session ended).
    #[getter]
    fn stopped(&self) -> bool {
        self.inner.stopped().0
    }

    /// Why the owner stopped, when it was not closed: a `SessionLostError`.
    #[getter]
    fn error(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.stopped().1.map(|e| exception_object(py, e))
    }

    /// The next event, waiting at most `timeout` seconds
    /// (`ShardkitTimeoutError`); `None` once the owner has stopped and every
    /// event was taken.
    #[pyo3(signature = (timeout = None))]
    fn next_event(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<PyOwnershipEvent>> {
        let timeout = opt_seconds(py, "timeout", timeout)?;
        let events = self.events(py)?;
        // Receiving is cancel-safe: a wait dropped by Ctrl-C loses no event.
        match wait_or_drop(py, recv(events, timeout))? {
            Some(ev) => Ok(ev.map(|inner| PyOwnershipEvent { inner })),
            None => Err(self.timed_out(py, timeout)),
        }
    }

    /// Awaitable `next_event`.
    #[pyo3(signature = (timeout = None))]
    fn next_event_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = opt_seconds(py, "timeout", timeout)?;
        let events = self.events(py)?.clone();
        let worker = self.worker.clone();
        awaitable(py, async move {
            match recv(&events, timeout).await {
                Some(ev) => Ok(ev.map(|inner| PyOwnershipEvent { inner })),
                None => Err(py_err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no ownership event for worker {worker:?} within {} ms",
                        timeout.unwrap_or_default().as_millis()
                    ),
                ))),
            }
        })
    }

    /// Leaves the group: every owned shard is reported lost and released,
    /// so other workers take them at once.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let owner = &self.inner;
        block(py, owner.close())
    }

    /// Awaitable `close`.
    fn close_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let owner = self.inner.clone();
        awaitable(py, async move { owner.close().await.map_err(py_err) })
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyOwnershipEvent>> {
        self.next_event(py, None)
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = self.events(py)?.clone();
        awaitable(py, async move {
            match recv(&events, None).await.flatten() {
                Some(inner) => Ok(PyOwnershipEvent { inner }),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
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
        let owner = self.inner.clone();
        scope::aexit(py, exc_type, async move { owner.close().await })
    }

    fn __repr__(&self) -> String {
        format!(
            "<ShardOwner group={:?} worker={:?} owns {}>",
            self.group,
            self.worker,
            self.inner.owned().len()
        )
    }
}
