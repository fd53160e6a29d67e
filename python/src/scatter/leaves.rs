//! Leaves from Python values: a replica is an `http://` URL (core's
//! HTTP/JSON transport), a plain callable (run on tokio's blocking pool,
//! holding the GIL) or a coroutine function (run on the caller's asyncio
//! loop, cancelled when the call is dropped).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCFunction, PyDict, PySequence, PyString, PyTuple};
use shardkit::runtime::Home;
use shardkit::scatter::http::{HttpReplica, HttpTransport};
use shardkit::scatter::{CallFuture, Leaf, Replica};
use shardkit::{Error, ErrorKind};
use tokio::sync::oneshot;

use crate::errors::OrRaise;

/// One gather's request as every kind of replica needs it.
pub(crate) struct Request {
    /// The caller's object, passed as is to callable replicas.
    pub(crate) obj: Arc<Py<PyAny>>,
    /// The object as JSON, serialised once per gather; empty when the
    /// scatter has no HTTP replica.
    pub(crate) body: Bytes,
    /// The asyncio loop coroutine replicas run on (`*_async` calls only).
    pub(crate) event_loop: Option<Arc<Py<PyAny>>>,
    /// Exceptions raised by callable replicas, kept to chain them as the
    /// `__cause__` of the shardkit error that reports them.
    pub(crate) causes: Arc<Causes>,
}

/// An answer: parsed JSON from an HTTP replica, or a callable's return value.
pub(crate) enum Answer {
    Json(serde_json::Value),
    Py(Py<PyAny>),
}

/// Python exceptions behind core errors, found again by leaf and message.
#[derive(Default)]
pub(crate) struct Causes(Mutex<Vec<(usize, String, PyErr)>>);

impl Causes {
    /// Reports `err`, raised by a callable of leaf `leaf`, as a core error
    /// and keeps the exception for [`Causes::take`].
    fn record(&self, py: Python<'_>, leaf: usize, what: &str, err: PyErr) -> Error {
        let ty = err
            .get_type(py)
            .qualname()
            .map_or_else(|_| "exception".to_string(), |n| n.to_string());
        let text = err.value(py).to_string();
        let message = if text.is_empty() {
            format!("leaf {leaf} {what} raised {ty}")
        } else {
            format!("leaf {leaf} {what} raised {ty}: {text}")
        };
        self.lock().push((leaf, message.clone(), err));
        // The leaf answered, with an error: as an HTTP leaf's 500.
        Error::new(ErrorKind::BadResponse, message)
    }

    /// The exception behind `e` reported for `leaf`, if a callable raised it.
    pub(crate) fn take(&self, leaf: usize, e: &Error) -> Option<PyErr> {
        let mut v = self.lock();
        let pos = v
            .iter()
            .position(|(l, m, _)| *l == leaf && m == e.message())?;
        Some(v.swap_remove(pos).2)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(usize, String, PyErr)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) type PyLeaf = Leaf<Request, Answer>;

/// What a `Scatter(leaves)` argument held, beyond the leaves themselves.
pub(crate) struct Built {
    pub(crate) leaves: Vec<PyLeaf>,
    /// Some replica is an HTTP URL: requests must be serialised to JSON.
    pub(crate) http: bool,
    /// Some replica is a coroutine function: only `*_async` calls can run it.
    pub(crate) coroutines: bool,
}

/// Builds the leaves from a list whose entries are a URL, a callable, or a
/// list of them (a leaf's replicas).
pub(crate) fn build(list: &Bound<'_, PyAny>) -> PyResult<Built> {
    let py = list.py();
    if !is_sequence(list) {
        return Err(PyTypeError::new_err(format!(
            "leaves must be a list (one entry per shard), got {}",
            type_name(list)
        )));
    }
    let inspect = py.import("inspect")?;
    let mut transport: Option<HttpTransport> = None;
    let mut built = Built {
        leaves: Vec::new(),
        http: false,
        coroutines: false,
    };
    for (i, entry) in list.try_iter()?.enumerate() {
        let entry = entry?;
        let items: Vec<Bound<'_, PyAny>> = if is_sequence(&entry) {
            entry.try_iter()?.collect::<PyResult<_>>()?
        } else {
            vec![entry]
        };
        let mut replicas: Vec<Arc<dyn Replica<Request, Answer>>> = Vec::with_capacity(items.len());
        // Core names the leaf after these (`Leaf::for_shard`), as it names
        // HTTP leaves, so errors and metrics say which servers or functions
        // they mean.
        let mut names: Vec<String> = Vec::with_capacity(items.len());
        for item in &items {
            if let Ok(url) = item.cast::<PyString>() {
                let url = url.to_str()?;
                names.push(url.to_string());
                let t = transport.get_or_insert_with(HttpTransport::new);
                let http = t.replica::<serde_json::Value>(url).or_raise(py)?;
                built.http = true;
                replicas.push(Arc::new(HttpLeaf(http)));
            } else if item.is_callable() {
                let what = describe(item);
                names.push(what.to_string());
                let func = Arc::new(item.clone().unbind());
                let is_coro = inspect
                    .call_method1("iscoroutinefunction", (item,))?
                    .is_truthy()?;
                if is_coro {
                    built.coroutines = true;
                    replicas.push(Arc::new(move |req: &Request| {
                        call_coroutine(i, what.clone(), func.clone(), req)
                    }));
                } else {
                    replicas.push(Arc::new(move |req: &Request| {
                        call_blocking(i, what.clone(), func.clone(), req)
                    }));
                }
            } else {
                return Err(PyTypeError::new_err(format!(
                    "leaf {i}: a replica must be an http:// URL string or a callable, got {}",
                    type_name(item)
                )));
            }
        }
        built
            .leaves
            .push(Leaf::for_shard(i, &names, replicas).or_raise(py)?);
    }
    Ok(built)
}

/// An HTTP replica over this binding's request and answer types. A type
/// rather than a closure so the scatter sees its [`Replica::home`] (its
/// connection pool's process) and refuses calls in a forked child.
struct HttpLeaf(HttpReplica<serde_json::Value>);

impl Replica<Request, Answer> for HttpLeaf {
    fn call(&self, req: &Request) -> CallFuture<Answer> {
        let call = self.0.call(&req.body);
        Box::pin(async move { call.await.map(Answer::Json) })
    }

    fn home(&self) -> Option<Home> {
        self.0.home()
    }
}

/// A list, tuple or other sequence, but not text.
fn is_sequence(obj: &Bound<'_, PyAny>) -> bool {
    !obj.is_instance_of::<PyString>()
        && !obj.is_instance_of::<PyBytes>()
        && obj.cast::<PySequence>().is_ok()
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .qualname()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// "callable handler" for error messages.
fn describe(func: &Bound<'_, PyAny>) -> Arc<str> {
    let name = func
        .getattr("__qualname__")
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| type_name(func));
    Arc::from(format!("callable {name}"))
}

/// A plain callable, run on tokio's blocking pool with the GIL. Dropping the
/// call cannot stop Python code already running: it finishes and its result
/// is discarded.
fn call_blocking(
    leaf: usize,
    what: Arc<str>,
    func: Arc<Py<PyAny>>,
    req: &Request,
) -> CallFuture<Answer> {
    let arg = req.obj.clone();
    let causes = req.causes.clone();
    Box::pin(async move {
        let run = {
            let what = what.clone();
            move || {
                Python::attach(|py| {
                    let out = func.bind(py).call1((arg.bind(py),));
                    match out {
                        Ok(v) if v.hasattr("__await__").unwrap_or(false) => {
                            // Not awaited by anyone: close it quietly.
                            let _ = v.call_method0("close");
                            Err(Error::invalid(format!(
                                "leaf {leaf} {what} returned an awaitable ({}); declare it \
                                 `async def` so it runs as a coroutine, or return the answer",
                                type_name(&v)
                            )))
                        }
                        Ok(v) => Ok(Answer::Py(v.unbind())),
                        Err(e) => Err(causes.record(py, leaf, &what, e)),
                    }
                })
            }
        };
        tokio::task::spawn_blocking(run).await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("leaf {leaf} {what} did not finish: {e}"),
            )
        })?
    })
}

/// Cancels a coroutine's task on drop, unless it finished.
struct CancelOnDrop(Option<Py<PyAny>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(fut) = self.0.take() {
            // concurrent.futures.Future.cancel schedules Task.cancel on the
            // task's loop; the coroutine sees CancelledError there.
            // No interpreter (it is shutting down): no loop to cancel on.
            let _ = Python::try_attach(|py| {
                let _ = fut.bind(py).call_method0("cancel");
            });
        }
    }
}

type Outcome = PyResult<Py<PyAny>>;

/// A coroutine function, run as a task on the caller's asyncio loop; the
/// task is cancelled when the call is dropped (the request was answered,
/// timed out, or the caller was cancelled).
fn call_coroutine(
    leaf: usize,
    what: Arc<str>,
    func: Arc<Py<PyAny>>,
    req: &Request,
) -> CallFuture<Answer> {
    let arg = req.obj.clone();
    let causes = req.causes.clone();
    let event_loop = req.event_loop.clone();
    Box::pin(async move {
        let Some(event_loop) = event_loop else {
            return Err(Error::invalid(format!(
                "leaf {leaf} {what} is a coroutine function: use gather_async or first_async"
            )));
        };
        let started = Python::attach(|py| -> PyResult<_> {
            let coro = func.bind(py).call1((arg.bind(py),))?;
            let asyncio = py.import("asyncio")?;
            let task =
                asyncio.call_method1("run_coroutine_threadsafe", (coro, event_loop.bind(py)))?;
            let (tx, rx) = oneshot::channel::<Outcome>();
            let tx = Mutex::new(Some(tx));
            let done = PyCFunction::new_closure(
                py,
                None,
                None,
                move |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
                    let out = args.get_item(0)?.call_method0("result").map(Bound::unbind);
                    if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        let _ = tx.send(out);
                    }
                    Ok(())
                },
            )?;
            task.call_method1("add_done_callback", (done,))?;
            Ok((CancelOnDrop(Some(task.unbind())), rx))
        });
        let (mut guard, rx) = match started {
            Ok(s) => s,
            Err(e) => return Err(Python::attach(|py| causes.record(py, leaf, &what, e))),
        };
        let out = rx.await;
        guard.0 = None;
        match out {
            Ok(Ok(v)) => Ok(Answer::Py(v)),
            Ok(Err(e)) => Err(Python::attach(|py| causes.record(py, leaf, &what, e))),
            // The loop dropped the callback unrun: it was closed.
            Err(_) => Err(Error::new(
                ErrorKind::Cancelled,
                format!("leaf {leaf} {what}: its event loop closed before it finished"),
            )),
        }
    })
}
