//! Scatter/gather for Python over core's `shardkit::scatter`: fan a request
//! out to leaves (HTTP/JSON URLs, callables or coroutine functions) and
//! gather the answers under a deadline and a coverage policy.
//!
//! Blocking calls release the GIL and run Python's signal handlers as they
//! wait (`crate::wait`): Ctrl-C drops the gather, which cancels every leaf
//! call still outstanding. `*_async` calls return asyncio awaitables
//! (`crate::awaitable`); cancelling one does the same.

mod convert;
mod leaves;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString};
use shardkit::scatter::{Coverage, GatherOptions, HedgeConfig, Scatter, ScatterConfig};
use shardkit::ErrorKind;
use tokio::time::Instant;

use crate::awaitable::awaitable;
use crate::errors::{raise, OrRaise};
use crate::wait::wait_or_drop;
use convert::{answer_to_py, error_to_py, metrics_to_py, PyGathered};
use leaves::{Answer, Causes, Request};

/// Adds the scatter classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyScatter>()?;
    m.add_class::<PyGathered>()?;
    Ok(())
}

/// A fan-out over leaves, one per shard, each served by one or more
/// interchangeable replicas.
///
/// A replica is an `http://host:port/path` URL (the request is POSTed as
/// JSON, the answer parsed from JSON), a callable (called with the request
/// object on a worker thread; its return value is the answer), or a
/// coroutine function (run on the caller's event loop, `*_async` calls
/// only). Replica statistics, latency histograms and the hedge budget are
/// learned across calls: keep one `Scatter` and share it.
///
/// Every call has a deadline; when it returns, every leaf call still
/// outstanding has been dropped: HTTP requests are aborted, and coroutine
/// tasks have had `Task.cancel()` called on the caller's loop, so they see
/// `CancelledError` at the loop's next step, ahead of the code awaiting the
/// gather. A plain callable cannot be stopped once running: it finishes on
/// its worker thread and its result is discarded.
///
/// Blocking `gather`/`first` refuse a scatter with coroutine-function leaves
/// (`InvalidArgumentError`): those need the caller's event loop, so use
/// `gather_async`/`first_async`. HTTP requests are the request object as
/// JSON (`json.dumps`, NaN refused), serialised once per call; callables get
/// the object itself.
#[pyclass(frozen, module = "shardkit", name = "Scatter")]
pub(crate) struct PyScatter {
    inner: Arc<Scatter<Request, Answer>>,
    http: bool,
    coroutines: bool,
}

/// A timeout in seconds: finite and above zero.
fn timeout_of(py: Python<'_>, secs: f64) -> PyResult<Duration> {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => {
            // As Python writes it (Rust says "NaN").
            let shown = if secs.is_nan() {
                "nan".to_string()
            } else {
                secs.to_string()
            };
            Err(raise(
                py,
                ErrorKind::InvalidArgument,
                format!("timeout {shown}: must be a finite number of seconds above 0"),
            ))
        }
    }
}

/// A coverage argument for a scatter over `total` leaves: text goes to
/// core's parser as it is, and an int k as the text `K`, so both are checked
/// (and refused) with the words every binding and the CLI use.
fn coverage_of(obj: &Bound<'_, PyAny>, total: usize) -> PyResult<Coverage> {
    let py = obj.py();
    let text = if let Ok(s) = obj.cast::<PyString>() {
        s.to_str()?.to_string()
    } else if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        obj.str()?.to_str()?.to_string()
    } else {
        // The type is this binding's to check; the values are core's.
        return Err(raise(
            py,
            ErrorKind::InvalidArgument,
            format!(
                "coverage {}: expected a str (\"all\", \"best-effort\", \"K\" or \"K/N\") \
                 or an int K, got {}",
                obj.repr()?,
                obj.get_type().qualname()?
            ),
        ));
    };
    Coverage::parse(&text, total).or_raise(py)
}

impl PyScatter {
    /// The request as every replica kind needs it; `asynchronous` says
    /// whether coroutine replicas can run (on the running loop).
    fn request(&self, obj: &Bound<'_, PyAny>, asynchronous: bool) -> PyResult<Request> {
        let py = obj.py();
        let body = if self.http {
            let kwargs = PyDict::new(py);
            kwargs.set_item("allow_nan", false)?;
            kwargs.set_item("separators", (",", ":"))?;
            let text = py
                .import("json")?
                .call_method("dumps", (obj,), Some(&kwargs))?;
            Bytes::from(text.cast::<PyString>()?.to_str()?.as_bytes().to_vec())
        } else {
            Bytes::new()
        };
        let event_loop = if self.coroutines {
            if !asynchronous {
                return Err(raise(
                    py,
                    ErrorKind::InvalidArgument,
                    "this scatter has coroutine-function leaves, which need an event loop: \
                     use gather_async / first_async",
                ));
            }
            let lp = py.import("asyncio")?.call_method0("get_running_loop")?;
            Some(Arc::new(lp.unbind()))
        } else {
            None
        };
        Ok(Request {
            obj: Arc::new(obj.clone().unbind()),
            body,
            event_loop,
            causes: Arc::new(Causes::default()),
        })
    }
}

#[pymethods]
impl PyScatter {
    /// A scatter over `leaves`: one entry per shard, each a replica (URL or
    /// callable) or a list of replicas. `hedge` sends a second copy of a
    /// leaf call that outlives the leaf's recent `hedge_percentile` latency,
    /// at most `hedge_budget` extra calls per call (both ignored unless
    /// `hedge`); `tied` sends every call to two replicas at once.
    #[new]
    #[pyo3(signature = (leaves, *, hedge = false, hedge_percentile = 0.95, hedge_budget = 0.05, tied = false))]
    fn new(
        leaves: &Bound<'_, PyAny>,
        hedge: bool,
        hedge_percentile: f64,
        hedge_budget: f64,
        tied: bool,
    ) -> PyResult<Self> {
        let py = leaves.py();
        let built = leaves::build(leaves)?;
        let config = ScatterConfig {
            hedge: hedge.then(|| HedgeConfig {
                percentile: hedge_percentile,
                budget_ratio: hedge_budget,
                ..HedgeConfig::default()
            }),
            tied,
            ..ScatterConfig::default()
        };
        let inner = Scatter::new(built.leaves, config).or_raise(py)?;
        Ok(PyScatter {
            inner: Arc::new(inner),
            http: built.http,
            coroutines: built.coroutines,
        })
    }

    /// Number of leaves.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Sends `request` to every leaf and gathers the answers within
    /// `timeout` seconds. `coverage`: `"all"` (every leaf must answer),
    /// `"best-effort"` or `"best_effort"` (at least one), or at least K of
    /// the N leaves as the int K or the text `"K"` or `"K/N"` (N must be the
    /// leaf count); anything else raises `InvalidArgumentError` naming the
    /// value. The same spellings as the CLI and every binding. Too few answers
    /// raise `ShardkitTimeoutError` (a leaf was cut off by the deadline) or
    /// `UnavailableError` (leaves only failed), naming each missing leaf.
    #[pyo3(
        signature = (request, *, timeout, coverage = None),
        text_signature = "($self, request, *, timeout, coverage='all')"
    )]
    fn gather(
        &self,
        request: &Bound<'_, PyAny>,
        timeout: f64,
        coverage: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyGathered> {
        let py = request.py();
        let opts = options(py, timeout, coverage, self.inner.len())?;
        let req = self.request(request, false)?;
        let scatter = &self.inner;
        let out = wait_or_drop(py, scatter.gather(&req, &opts))?;
        match out {
            Ok(g) => PyGathered::new(py, g, &req.causes),
            Err(e) => Err(crate::errors::to_py(py, e)),
        }
    }

    /// Awaitable `gather`; cancelling the task cancels every leaf call.
    #[pyo3(
        signature = (request, *, timeout, coverage = None),
        text_signature = "($self, request, *, timeout, coverage='all')"
    )]
    fn gather_async<'py>(
        &self,
        request: &Bound<'py, PyAny>,
        timeout: f64,
        coverage: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = request.py();
        let opts = options(py, timeout, coverage, self.inner.len())?;
        let req = self.request(request, true)?;
        let scatter = self.inner.clone();
        awaitable(py, async move {
            let out = scatter.gather(&req, &opts).await;
            Python::attach(|py| match out {
                Ok(g) => PyGathered::new(py, g, &req.causes),
                Err(e) => Err(crate::errors::to_py(py, e)),
            })
        })
    }

    /// Root distribution: the scatter's single leaf holds replicated data;
    /// `request` goes to one replica (hedged to another when configured)
    /// and the first answer within `timeout` seconds is returned.
    #[pyo3(signature = (request, *, timeout))]
    fn first(&self, request: &Bound<'_, PyAny>, timeout: f64) -> PyResult<Py<PyAny>> {
        let py = request.py();
        let deadline = Instant::now() + timeout_of(py, timeout)?;
        let req = self.request(request, false)?;
        let scatter = &self.inner;
        let out = wait_or_drop(py, scatter.first(&req, deadline))?;
        match out {
            Ok(a) => answer_to_py(py, a),
            Err(e) => Err(error_to_py(py, &req.causes, 0, e)),
        }
    }

    /// Awaitable `first`.
    #[pyo3(signature = (request, *, timeout))]
    fn first_async<'py>(
        &self,
        request: &Bound<'py, PyAny>,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = request.py();
        let deadline = Instant::now() + timeout_of(py, timeout)?;
        let req = self.request(request, true)?;
        let scatter = self.inner.clone();
        awaitable(py, async move {
            let out = scatter.first(&req, deadline).await;
            Python::attach(|py| match out {
                Ok(a) => answer_to_py(py, a),
                Err(e) => Err(error_to_py(py, &req.causes, 0, e)),
            })
        })
    }

    /// Per leaf, in leaf order: calls, hedges sent and won, timeouts,
    /// replica errors, latency percentiles (seconds, `None` before any
    /// answer) and per-replica state.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for m in self.inner.metrics() {
            list.append(metrics_to_py(py, &m)?)?;
        }
        Ok(list)
    }

    fn __repr__(&self) -> String {
        format!("<Scatter leaves={}>", self.inner.len())
    }
}

/// Deadline and coverage of one gather over `total` leaves.
fn options(
    py: Python<'_>,
    timeout: f64,
    coverage: Option<&Bound<'_, PyAny>>,
    total: usize,
) -> PyResult<GatherOptions> {
    let within = timeout_of(py, timeout)?;
    let coverage = match coverage {
        Some(c) => coverage_of(c, total)?,
        None => Coverage::RequireAll,
    };
    Ok(GatherOptions::within(within).with_coverage(coverage))
}
