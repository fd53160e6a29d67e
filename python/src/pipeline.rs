//! `Event` and `Pipeline`: core's event pipelines (`shardkit::pipeline`) in
//! a Python process. Thin: an `Event` is core's CloudEvent, a stage is
//! core's [`Stage`], the transports are core's; what is Python's own is the
//! handler call.
//!
//! Every stage runs through [`Stage::start_batched`], so the GIL is taken
//! once per batch of events, never once per event: a plain handler
//! (`batch=None`) is called once per event inside that one acquisition, a
//! batch handler once with the list. The call runs on tokio's blocking pool
//! (`spawn_blocking`), never on a runtime worker. Coroutine functions
//! (`async def`) run on an asyncio loop the pipeline keeps in a thread of
//! its own while it runs; the blocking thread waits for them with the GIL
//! released.
//!
//! A handler's exception becomes the event's error, `"ExcType: message"`
//! (retried, then dead-lettered by core), `shardkit.Permanent` a
//! [`Permanent`] error (dead-lettered at once). Nothing a handler does,
//! raising or panicking, ends the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyCFunction, PyDict, PyList, PyString, PyTuple};
use shardkit::pipeline::config::TransportConfig;
use shardkit::pipeline::runner::connect;
use shardkit::pipeline::{
    event::PARTITION_KEY, redrive, BatchHandler, BatchSettings, BoxError, Data, Event, Filter,
    ItemResult, Permanent, Stage, StageConfig, StageStats, Transport,
};
use shardkit::runtime::Home;
use tower::util::BoxCloneSyncService;

use crate::errors::{raise, OrRaise};
use crate::scope;
use crate::wait;

pyo3::create_exception!(
    shardkit,
    PyPermanent,
    PyException,
    "Raised by a pipeline handler for an event no retry can fix: the event \
     is dead-lettered at once, with this exception's message as its error."
);

/// The Python helpers the pipeline runs: the asyncio loop's thread and the
/// gathering of one batch's coroutines.
const HELPERS: &std::ffi::CStr = cr#"
import asyncio
import threading


def start_loop(name):
    loop = asyncio.new_event_loop()

    def run():
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for t in tasks:
                    t.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            finally:
                loop.close()

    threading.Thread(target=run, name=name, daemon=True).start()
    return loop


def stop_loop(loop):
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:
        pass  # closed already


async def run_all(coros):
    return await asyncio.gather(*coros, return_exceptions=True)


def run_on(loop, coro):
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
"#;

static HELPER_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    HELPER_MODULE
        .get_or_try_init(py, || {
            PyModule::from_code(
                py,
                HELPERS,
                c"shardkit/_pipeline_helpers.py",
                c"shardkit._pipeline_helpers",
            )
            .map(Bound::unbind)
        })
        .map(|m| m.bind(py))
}

fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    raise(py, shardkit::ErrorKind::InvalidArgument, message)
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .qualname()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

// --- Event -----------------------------------------------------------------

/// A CloudEvents 1.0 event. Immutable; every attribute is checked when it is
/// made.
#[pyclass(frozen, module = "shardkit", name = "Event")]
#[derive(Clone)]
pub(crate) struct PyEvent {
    pub(crate) inner: Event,
}

/// Python data as an event's payload: `str` text, `bytes` binary, `None`
/// nothing, anything else JSON (through Python's `json` module).
fn data_from_py(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Data> {
    if data.is_none() {
        return Ok(Data::None);
    }
    if let Ok(s) = data.cast::<PyString>() {
        return Ok(Data::Text(s.to_str()?.to_string()));
    }
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(Data::Binary(Bytes::copy_from_slice(b.as_bytes())));
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return Ok(Data::Binary(Bytes::from(b.to_vec())));
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("allow_nan", false)?;
    let text: String = match py
        .import("json")?
        .call_method("dumps", (data,), Some(&kwargs))
    {
        Ok(t) => t.extract()?,
        Err(e) => {
            return Err(invalid(
                py,
                format!(
                    "event data of type {}: not JSON, str or bytes ({})",
                    type_name(data),
                    e.value(py)
                ),
            ))
        }
    };
    serde_json::from_str(&text)
        .map(Data::Json)
        .map_err(|e| invalid(py, format!("event data {text:.64}: {e}")))
}

fn data_to_py<'py>(py: Python<'py>, data: &Data) -> PyResult<Bound<'py, PyAny>> {
    Ok(match data {
        Data::None => py.None().into_bound(py),
        Data::Text(s) => PyString::new(py, s).into_any(),
        Data::Binary(b) => PyBytes::new(py, b).into_any(),
        Data::Json(v) => py.import("json")?.call_method1("loads", (v.to_string(),))?,
    })
}

#[pymethods]
impl PyEvent {
    #[new]
    #[pyo3(signature = (id, source, r#type, *, data = None, subject = None, time = None, key = None, datacontenttype = None, extensions = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        id: String,
        source: String,
        r#type: String,
        data: Option<&Bound<'_, PyAny>>,
        subject: Option<String>,
        time: Option<String>,
        key: Option<String>,
        datacontenttype: Option<String>,
        extensions: Option<BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let data = match data {
            Some(d) => data_from_py(py, d)?,
            None => Data::None,
        };
        if key.as_deref() == Some("") {
            return Err(invalid(
                py,
                "event key \"\": must not be empty (omit it to key by subject or id)",
            ));
        }
        let content_type = match (&data, datacontenttype) {
            (_, Some(ct)) => Some(ct),
            (Data::Text(_), None) => Some("text/plain".to_string()),
            _ => None,
        };
        let build = || -> shardkit::Result<Event> {
            let mut e = Event::new(id, source, r#type)?;
            if let Some(s) = subject {
                e = e.with_subject(s)?;
            }
            if let Some(t) = time {
                e = e.with_time(t)?;
            }
            if let Some(ct) = content_type {
                e = e.with_data_content_type(ct)?;
            }
            for (name, value) in extensions.unwrap_or_default() {
                e = e.with_extension(&name, value)?;
            }
            if let Some(k) = key {
                e = e.with_extension(PARTITION_KEY, k)?;
            }
            Ok(e.with_data(data))
        };
        Ok(PyEvent {
            inner: build().or_raise(py)?,
        })
    }

    /// The `id` attribute.
    #[getter]
    fn id(&self) -> &str {
        self.inner.id()
    }

    /// The `source` attribute.
    #[getter]
    fn source(&self) -> &str {
        self.inner.source()
    }

    /// The `type` attribute.
    #[getter(r#type)]
    fn ty(&self) -> &str {
        self.inner.ty()
    }

    /// The `subject` attribute.
    #[getter]
    fn subject(&self) -> Option<&str> {
        self.inner.subject()
    }

    /// The `time` attribute (RFC 3339, as given).
    #[getter]
    fn time(&self) -> Option<&str> {
        self.inner.time()
    }

    /// The key events are ordered and partitioned by: the `partitionkey`
    /// extension, else `subject`, else `id`.
    #[getter]
    fn key(&self) -> &str {
        self.inner.key()
    }

    /// The `datacontenttype` attribute.
    #[getter]
    fn datacontenttype(&self) -> Option<&str> {
        self.inner.data_content_type()
    }

    /// The payload: JSON decoded, text as `str`, binary as `bytes`, or None.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        data_to_py(py, self.inner.data())
    }

    /// Every extension attribute, name to value.
    #[getter]
    fn extensions(&self) -> BTreeMap<String, String> {
        self.inner
            .extensions()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Structured content mode: the event as one JSON object.
    fn to_json<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_json())
    }

    /// Parses structured content mode; `InvalidArgumentError` names what is
    /// wrong.
    #[staticmethod]
    fn from_json(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<PyEvent> {
        let bytes: Vec<u8> = if let Ok(s) = data.cast::<PyString>() {
            s.to_str()?.as_bytes().to_vec()
        } else if let Ok(b) = data.cast::<PyBytes>() {
            b.as_bytes().to_vec()
        } else if let Ok(b) = data.cast::<PyByteArray>() {
            b.to_vec()
        } else {
            return Err(invalid(
                py,
                format!(
                    "Event.from_json takes bytes or str, got {}",
                    type_name(data)
                ),
            ));
        };
        Ok(PyEvent {
            inner: py.detach(|| Event::from_json(&bytes)).or_raise(py)?,
        })
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> Py<PyAny> {
        let py = other.py();
        let Ok(other) = other.cast::<PyEvent>() else {
            return py.NotImplemented();
        };
        let eq = self.inner == other.get().inner;
        match op {
            CompareOp::Eq => eq
                .into_pyobject(py)
                .map_or_else(|_| py.None(), |b| b.to_owned().into_any().unbind()),
            CompareOp::Ne => (!eq)
                .into_pyobject(py)
                .map_or_else(|_| py.None(), |b| b.to_owned().into_any().unbind()),
            _ => py.NotImplemented(),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let data = match self.inner.data() {
            Data::None => String::new(),
            d => {
                let r = data_to_py(py, d)
                    .and_then(|v| v.repr().map(|r| r.to_string()))
                    .unwrap_or_else(|_| "?".to_string());
                let r: String = if r.chars().count() > 80 {
                    r.chars().take(77).collect::<String>() + "..."
                } else {
                    r
                };
                format!(", data={r}")
            }
        };
        format!(
            "Event(id={:?}, source={:?}, type={:?}, key={:?}{data})",
            self.inner.id(),
            self.inner.source(),
            self.inner.ty(),
            self.inner.key()
        )
    }
}

/// `Event | Sequence[Event]` as events.
fn events_from_py(py: Python<'_>, events: &Bound<'_, PyAny>) -> PyResult<Vec<Event>> {
    if let Ok(e) = events.cast::<PyEvent>() {
        return Ok(vec![e.get().inner.clone()]);
    }
    if events.cast::<PyList>().is_err() && events.cast::<PyTuple>().is_err() {
        return Err(invalid(
            py,
            format!(
                "events: expected an Event or a list of Event, got {}",
                type_name(events)
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, item) in events.try_iter()?.enumerate() {
        let item = item?;
        match item.cast::<PyEvent>() {
            Ok(e) => out.push(e.get().inner.clone()),
            Err(_) => {
                return Err(invalid(
                    py,
                    format!("events[{i}]: expected an Event, got {}", type_name(&item)),
                ))
            }
        }
    }
    Ok(out)
}

fn events_to_py(py: Python<'_>, events: Vec<Event>) -> PyResult<Bound<'_, PyList>> {
    let objs = events
        .into_iter()
        .map(|inner| Bound::new(py, PyEvent { inner }))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, objs)
}

// --- calling Python from a stage -------------------------------------------

/// One stage's Python handler, as its batch handler calls it.
struct Call {
    stage: String,
    func: Py<PyAny>,
    /// `batch=N`: called with a list, answers a list.
    batched: bool,
    /// The asyncio loop, for a coroutine function.
    event_loop: Option<Py<PyAny>>,
}

/// An exception as a handler error: `Permanent`'s message as [`Permanent`],
/// anything else as "ExcType: message".
fn exc_error(py: Python<'_>, exc: &Bound<'_, PyAny>) -> BoxError {
    let msg = exc
        .str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "<unprintable>".to_string());
    if exc.is_instance_of::<PyPermanent>() {
        let _ = py;
        return Box::new(Permanent(msg));
    }
    let name = type_name(exc);
    if msg.is_empty() {
        name.into()
    } else {
        format!("{name}: {msg}").into()
    }
}

fn err_error(py: Python<'_>, e: PyErr) -> BoxError {
    exc_error(py, e.value(py).as_any())
}

impl Call {
    /// What the handler answered for one event: `None`, an `Event`, a list
    /// of them, or (in a batch's list) an exception.
    fn item(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> ItemResult {
        if v.is_none() {
            return Ok(Vec::new());
        }
        if let Ok(e) = v.cast::<PyEvent>() {
            return Ok(vec![e.get().inner.clone()]);
        }
        if v.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            return Err(exc_error(py, v));
        }
        if v.cast::<PyList>().is_ok() || v.cast::<PyTuple>().is_ok() {
            let mut out = Vec::new();
            for item in v.try_iter().map_err(|e| err_error(py, e))? {
                let item = item.map_err(|e| err_error(py, e))?;
                match item.cast::<PyEvent>() {
                    Ok(e) => out.push(e.get().inner.clone()),
                    Err(_) => {
                        return Err(format!(
                            "stage {:?}: the handler returned a list holding {}: expected Event",
                            self.stage,
                            type_name(&item)
                        )
                        .into())
                    }
                }
            }
            return Ok(out);
        }
        if v.hasattr("__await__").unwrap_or(false) {
            // Nobody awaits it: close it quietly.
            let _ = v.call_method0("close");
            return Err(format!(
                "stage {:?}: the handler returned an awaitable ({}); declare it `async def`",
                self.stage,
                type_name(v)
            )
            .into());
        }
        Err(format!(
            "stage {:?}: the handler returned {}: expected Event, list of Event or None",
            self.stage,
            type_name(v)
        )
        .into())
    }

    /// Runs a coroutine on the pipeline's loop and waits for it (the GIL is
    /// released while waiting).
    fn on_loop<'py>(
        &self,
        py: Python<'py>,
        coro: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some(event_loop) = &self.event_loop else {
            return Err(invalid(py, "the pipeline's event loop is not running"));
        };
        helpers(py)?.call_method1("run_on", (event_loop.bind(py), coro))
    }

    /// One batch, in one GIL acquisition.
    fn run(&self, py: Python<'_>, events: Vec<Event>) -> Result<Vec<ItemResult>, BoxError> {
        let n = events.len();
        let func = self.func.bind(py);
        let objs = events_to_py(py, events).map_err(|e| err_error(py, e))?;
        if self.batched {
            let out = if self.event_loop.is_some() {
                func.call1((objs,)).and_then(|c| self.on_loop(py, c))
            } else {
                func.call1((objs,))
            }
            .map_err(|e| err_error(py, e))?;
            if out.cast::<PyList>().is_err() && out.cast::<PyTuple>().is_err() {
                let _ = out.hasattr("__await__").map(|a| {
                    if a {
                        let _ = out.call_method0("close");
                    }
                });
                return Err(format!(
                    "stage {:?}: the batch handler returned {}: expected a list of {n} results",
                    self.stage,
                    type_name(&out)
                )
                .into());
            }
            let items = out
                .try_iter()
                .and_then(|it| it.collect::<PyResult<Vec<_>>>())
                .map_err(|e| err_error(py, e))?;
            return Ok(items.iter().map(|v| self.item(py, v)).collect());
        }
        if self.event_loop.is_none() {
            return Ok(objs
                .iter()
                .map(|ev| match func.call1((ev,)) {
                    Ok(v) => self.item(py, &v),
                    Err(e) => Err(err_error(py, e)),
                })
                .collect());
        }
        // Coroutine functions: every event's coroutine at once, gathered.
        let mut results: Vec<Option<ItemResult>> = (0..n).map(|_| None).collect();
        let mut coros = Vec::new();
        let mut index = Vec::new();
        for (i, ev) in objs.iter().enumerate() {
            match func.call1((ev,)) {
                Ok(c) => {
                    coros.push(c);
                    index.push(i);
                }
                Err(e) => results[i] = Some(Err(err_error(py, e))),
            }
        }
        if !coros.is_empty() {
            let gathered = PyList::new(py, coros)
                .and_then(|l| helpers(py)?.call_method1("run_all", (l,)))
                .and_then(|c| self.on_loop(py, c))
                .and_then(|r| r.try_iter()?.collect::<PyResult<Vec<_>>>())
                .map_err(|e| err_error(py, e))?;
            for (i, v) in index.into_iter().zip(gathered.iter()) {
                results[i] = Some(self.item(py, v));
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("the handler gave no result".into())))
            .collect())
    }
}

/// The batch handler of a stage: each call takes the GIL once, on tokio's
/// blocking pool.
fn batch_handler(call: Arc<Call>) -> BatchHandler {
    BoxCloneSyncService::new(tower::service_fn(move |events: Vec<Event>| {
        let call = call.clone();
        async move {
            let stage = call.stage.clone();
            let ran = tokio::task::spawn_blocking(move || {
                Python::try_attach(|py| call.run(py, events))
                    .unwrap_or_else(|| Err(BoxError::from("the Python interpreter is not running")))
            })
            .await;
            match ran {
                Ok(r) => r,
                Err(e) => Err(BoxError::from(format!(
                    "stage {stage:?}: the Python handler did not finish: {e}"
                ))),
            }
        }
    }))
}

// --- Pipeline ----------------------------------------------------------------

/// A stage as registered: started by `start()`.
struct Spec {
    cfg: StageConfig,
    func: Py<PyAny>,
    batched: bool,
    is_async: bool,
    settings: BatchSettings,
}

#[derive(Default)]
struct State {
    specs: Vec<Arc<Spec>>,
    /// Running stages, by name.
    running: Vec<(String, Stage)>,
    /// Every stage's counters, by name (the last run's after a stop).
    stats: Vec<(String, Arc<StageStats>)>,
    /// The asyncio loop coroutine handlers run on, while running.
    event_loop: Option<Py<PyAny>>,
}

/// Stages consuming topics of one transport, each calling a Python handler.
#[pyclass(frozen, module = "shardkit", name = "Pipeline")]
pub(crate) struct PyPipeline {
    transport: Arc<dyn Transport>,
    home: Home,
    /// Locked briefly, never while calling Python or waiting.
    state: Mutex<State>,
}

fn secs(py: Python<'_>, what: &str, v: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| {
        invalid(
            py,
            format!("{what} {v}: must be a non-negative number of seconds"),
        )
    })
}

fn count(py: Python<'_>, what: &str, v: i64, min: i64) -> PyResult<usize> {
    if v < min {
        return Err(invalid(py, format!("{what} {v}: must be at least {min}")));
    }
    usize::try_from(v).map_err(|_| invalid(py, format!("{what} {v}: too large")))
}

/// The settings `@stage` was given, before it knows the function.
struct StageArgs {
    topic: String,
    name: Option<String>,
    filter: BTreeMap<String, String>,
    reply_topic: Option<String>,
    dead_letter: Option<String>,
    max_attempts: u32,
    min_backoff: Duration,
    max_backoff: Duration,
    max_age: Option<Duration>,
    concurrency: usize,
    ordered: bool,
    batch: Option<usize>,
    linger: Duration,
    visibility: Duration,
    lease: Duration,
}

impl PyPipeline {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn transport(&self, py: Python<'_>) -> PyResult<Arc<dyn Transport>> {
        self.home.check("this Pipeline").or_raise(py)?;
        Ok(self.transport.clone())
    }

    /// The asyncio loop, started if need be.
    fn event_loop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(l) = &self.lock().event_loop {
            return Ok(l.clone_ref(py));
        }
        let l = helpers(py)?
            .call_method1("start_loop", ("shardkit-pipeline-loop",))?
            .unbind();
        let mut state = self.lock();
        match &state.event_loop {
            // Another thread started one meanwhile.
            Some(other) => {
                let other = other.clone_ref(py);
                drop(state);
                helpers(py)?.call_method1("stop_loop", (l,))?;
                Ok(other)
            }
            None => {
                state.event_loop = Some(l.clone_ref(py));
                Ok(l)
            }
        }
    }

    /// Starts `spec` unless a stage of its name runs.
    fn start_one(&self, py: Python<'_>, spec: &Arc<Spec>) -> PyResult<()> {
        if self.lock().running.iter().any(|(n, _)| *n == spec.cfg.name) {
            return Ok(());
        }
        let event_loop = if spec.is_async {
            Some(self.event_loop(py)?)
        } else {
            None
        };
        let call = Arc::new(Call {
            stage: spec.cfg.name.clone(),
            func: spec.func.clone_ref(py),
            batched: spec.batched,
            event_loop,
        });
        let transport = self.transport(py)?;
        let (cfg, settings) = (spec.cfg.clone(), spec.settings);
        let stage = py
            .detach(|| {
                let rt = shardkit::runtime::shared()?;
                let _entered = rt.enter();
                Stage::start_batched(transport, cfg, batch_handler(call), settings)
            })
            .or_raise(py)?;
        let mut state = self.lock();
        let name = spec.cfg.name.clone();
        let stats = stage.stats();
        match state.stats.iter_mut().find(|(n, _)| *n == name) {
            Some(s) => s.1 = stats,
            None => state.stats.push((name.clone(), stats)),
        }
        state.running.push((name, stage));
        Ok(())
    }

    fn register(&self, py: Python<'_>, args: &StageArgs, func: &Bound<'_, PyAny>) -> PyResult<()> {
        if !func.is_callable() {
            return Err(invalid(
                py,
                format!("stage handler: {} is not callable", type_name(func)),
            ));
        }
        let name = match &args.name {
            Some(n) => n.clone(),
            None => func
                .getattr("__name__")
                .and_then(|n| n.extract::<String>())
                .map_err(|_| {
                    invalid(
                        py,
                        format!(
                            "stage handler {} has no __name__: pass name=",
                            type_name(func)
                        ),
                    )
                })?,
        };
        let mut cfg = StageConfig::new(name, args.topic.clone());
        cfg.filter = Filter {
            attributes: args.filter.clone(),
        };
        cfg.reply_topic = args.reply_topic.clone();
        cfg.dead_letter = args.dead_letter.clone();
        cfg.max_attempts = args.max_attempts;
        cfg.min_backoff = args.min_backoff;
        cfg.max_backoff = args.max_backoff;
        cfg.max_age = args.max_age;
        cfg.concurrency = args.concurrency;
        cfg.ordered = args.ordered;
        cfg.visibility = args.visibility;
        cfg.lease = args.lease;
        cfg.validate().or_raise(py)?;
        let settings = match args.batch {
            Some(max) => BatchSettings {
                max,
                linger: args.linger,
                calls: 1,
            },
            None => BatchSettings {
                max: args.concurrency.min(100_000),
                linger: Duration::from_millis(1),
                calls: 1,
            },
        };
        settings.validate().or_raise(py)?;
        let is_async: bool = py
            .import("inspect")?
            .call_method1("iscoroutinefunction", (func,))?
            .extract()?;
        let spec = Arc::new(Spec {
            cfg,
            func: func.clone().unbind(),
            batched: args.batch.is_some(),
            is_async,
            settings,
        });
        let running = {
            let mut state = self.lock();
            if state.specs.iter().any(|s| s.cfg.name == spec.cfg.name) {
                return Err(invalid(
                    py,
                    format!(
                        "stage {:?}: this pipeline has a stage of that name already; pass name=",
                        spec.cfg.name
                    ),
                ));
            }
            state.specs.push(spec.clone());
            !state.running.is_empty()
        };
        if running {
            self.start_one(py, &spec)?;
        }
        Ok(())
    }

    fn stop_all(&self, py: Python<'_>, drain: Duration) -> PyResult<()> {
        let (stages, event_loop) = {
            let mut state = self.lock();
            (std::mem::take(&mut state.running), state.event_loop.take())
        };
        if !stages.is_empty() {
            let stop = async move {
                let handles: Vec<_> = stages
                    .into_iter()
                    .map(|(_, s)| tokio::spawn(s.stop(drain)))
                    .collect();
                for h in handles {
                    let _ = h.await;
                }
                Ok(())
            };
            wait::block(py, stop)?;
        }
        if let Some(l) = event_loop {
            helpers(py)?.call_method1("stop_loop", (l,))?;
        }
        Ok(())
    }
}

#[pymethods]
impl PyPipeline {
    #[new]
    #[pyo3(signature = (transport = "memory", *, partitions = 8, capacity = 10000, prefix = "shardkit:"))]
    fn new(
        py: Python<'_>,
        transport: &str,
        partitions: i64,
        capacity: i64,
        prefix: &str,
    ) -> PyResult<Self> {
        let partitions = u32::try_from(partitions)
            .map_err(|_| invalid(py, format!("partitions {partitions}: must be 1..=4096")))?;
        let capacity = count(py, "capacity", capacity, 1)?;
        let home = Home::here();
        let mut cfg = TransportConfig::from_spec(transport, partitions).or_raise(py)?;
        cfg.prefix = prefix.to_string();
        if let Some(m) = &mut cfg.memory {
            m.capacity = capacity;
        }
        let t = wait::block(py, async move { connect(&cfg).await })?;
        Ok(PyPipeline {
            transport: t,
            home,
            state: Mutex::new(State::default()),
        })
    }

    /// Registers the decorated function as a stage consuming `topic`.
    #[pyo3(signature = (topic, *, name = None, filter = None, reply_topic = None, dead_letter = None, max_attempts = 5, min_backoff = 0.1, max_backoff = 10.0, max_age = None, concurrency = 16, ordered = true, batch = None, linger = 0.005, visibility = 30.0, lease = 10.0))]
    #[allow(clippy::too_many_arguments)]
    fn stage<'py>(
        slf: Bound<'py, Self>,
        topic: String,
        name: Option<String>,
        filter: Option<BTreeMap<String, String>>,
        reply_topic: Option<String>,
        dead_letter: Option<String>,
        max_attempts: i64,
        min_backoff: f64,
        max_backoff: f64,
        max_age: Option<f64>,
        concurrency: i64,
        ordered: bool,
        batch: Option<i64>,
        linger: f64,
        visibility: f64,
        lease: f64,
    ) -> PyResult<Bound<'py, PyCFunction>> {
        let py = slf.py();
        let args = StageArgs {
            topic,
            name,
            filter: filter.unwrap_or_default(),
            reply_topic,
            dead_letter,
            max_attempts: u32::try_from(count(py, "max_attempts", max_attempts, 1)?)
                .map_err(|_| invalid(py, format!("max_attempts {max_attempts}: too large")))?,
            min_backoff: secs(py, "min_backoff", min_backoff)?,
            max_backoff: secs(py, "max_backoff", max_backoff)?,
            max_age: max_age.map(|a| secs(py, "max_age", a)).transpose()?,
            concurrency: count(py, "concurrency", concurrency, 1)?,
            ordered,
            batch: batch.map(|b| count(py, "batch", b, 1)).transpose()?,
            linger: secs(py, "linger", linger)?,
            visibility: secs(py, "visibility", visibility)?,
            lease: secs(py, "lease", lease)?,
        };
        let pipeline = slf.unbind();
        PyCFunction::new_closure(
            py,
            None,
            None,
            move |a: &Bound<'_, PyTuple>, kw: Option<&Bound<'_, PyDict>>| -> PyResult<Py<PyAny>> {
                let py = a.py();
                if a.len() != 1 || kw.is_some_and(|k| !k.is_empty()) {
                    return Err(pyo3::exceptions::PyTypeError::new_err(
                        "Pipeline.stage(...) decorates one function: @pipeline.stage(topic)",
                    ));
                }
                let func = a.get_item(0)?;
                pipeline.get().register(py, &args, &func)?;
                Ok(func.unbind())
            },
        )
    }

    /// Publishes events to `topic`, each to the partition of its key.
    fn publish(&self, py: Python<'_>, topic: String, events: &Bound<'_, PyAny>) -> PyResult<()> {
        let events = events_from_py(py, events)?;
        let t = self.transport(py)?;
        wait::wait_or_drop(py, async move { t.publish(&topic, events).await })?.or_raise(py)
    }

    /// The events stored in `topic`, oldest first per partition.
    #[pyo3(signature = (topic, max = 1000))]
    fn peek<'py>(
        &self,
        py: Python<'py>,
        topic: String,
        max: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let t = self.transport(py)?;
        let got = wait::block(py, async move { t.peek(&topic, max).await })?;
        events_to_py(py, got.into_iter().map(|d| d.event).collect())
    }

    /// The dead-lettered events in dead-letter topic `topic`.
    #[pyo3(signature = (topic, max = 1000))]
    fn dead_letters<'py>(
        &self,
        py: Python<'py>,
        topic: String,
        max: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let t = self.transport(py)?;
        let got = wait::block(
            py,
            async move { redrive::list(t.as_ref(), &topic, max).await },
        )?;
        events_to_py(py, got.into_iter().map(|d| d.event).collect())
    }

    /// Sends the dead letters of `topic` back to the topics they came from.
    #[pyo3(signature = (topic, id = None))]
    fn redrive(&self, py: Python<'_>, topic: String, id: Option<String>) -> PyResult<usize> {
        let t = self.transport(py)?;
        wait::block(py, async move {
            redrive::redrive(t.as_ref(), &topic, id.as_deref()).await
        })
    }

    /// Events stored in `topic` and not yet acknowledged by every group.
    fn backlog(&self, py: Python<'_>, topic: String) -> PyResult<u64> {
        let t = self.transport(py)?;
        wait::block(py, async move { t.backlog(&topic).await })
    }

    /// Starts every registered stage (those running already keep running).
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        self.home.check("this Pipeline").or_raise(py)?;
        let specs = self.lock().specs.clone();
        if specs.is_empty() {
            return Err(invalid(
                py,
                "the pipeline has no stages: decorate a handler with @pipeline.stage(topic) first",
            ));
        }
        for spec in &specs {
            if let Err(e) = self.start_one(py, spec) {
                let _ = self.stop_all(py, Duration::ZERO);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Stops receiving and waits at most `drain` seconds for the events in
    /// progress; what did not finish is delivered again later. A coroutine
    /// still running at the limit is cancelled; a plain function runs on in
    /// its thread, so give `drain` more than its longest call if its key
    /// must not run beside the next worker's.
    #[pyo3(signature = (drain = 10.0))]
    fn stop(&self, py: Python<'_>, drain: f64) -> PyResult<()> {
        let drain = secs(py, "drain", drain)?;
        self.home.check("this Pipeline").or_raise(py)?;
        self.stop_all(py, drain)
    }

    /// Whether stages are running.
    #[getter]
    fn running(&self) -> bool {
        !self.lock().running.is_empty()
    }

    /// The registered stages' names, in registration order.
    #[getter]
    fn stages(&self) -> Vec<String> {
        self.lock()
            .specs
            .iter()
            .map(|s| s.cfg.name.clone())
            .collect()
    }

    /// Each stage's counters (those of its last run once stopped).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let all = self.lock().stats.clone();
        let out = PyDict::new(py);
        for (name, s) in all {
            use std::sync::atomic::Ordering::Relaxed;
            let d = PyDict::new(py);
            d.set_item("handled", s.handled.load(Relaxed))?;
            d.set_item("failures", s.failures.load(Relaxed))?;
            d.set_item("dead_lettered", s.dead_lettered.load(Relaxed))?;
            d.set_item("skipped", s.skipped.load(Relaxed))?;
            d.set_item("emitted", s.emitted.load(Relaxed))?;
            d.set_item("redelivered", s.redelivered.load(Relaxed))?;
            d.set_item("in_flight", s.in_flight.load(Relaxed))?;
            out.set_item(name, d)?;
        }
        Ok(out)
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().start(slf.py())?;
        Ok(slf)
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
        scope::exit(exc_type, self.stop(py, 10.0))
    }

    fn __repr__(&self) -> String {
        let state = self.lock();
        let names: Vec<String> = state
            .specs
            .iter()
            .map(|s| format!("{:?}", s.cfg.name))
            .collect();
        format!(
            "Pipeline(stages=[{}], running={})",
            names.join(", "),
            if state.running.is_empty() {
                "False"
            } else {
                "True"
            }
        )
    }
}

impl Drop for PyPipeline {
    fn drop(&mut self) {
        let state = std::mem::take(self.state.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !self.home.is_here() {
            // A forked child: the stages' tasks are the parent's.
            std::mem::forget(state.running);
            return;
        }
        // Dropping a stage stops its receiving; events in progress finish
        // in the background. Nothing here waits.
        drop(state.running);
        if let Some(l) = state.event_loop {
            let _ = Python::try_attach(|py| {
                if let Ok(h) = helpers(py) {
                    let _ = h.call_method1("stop_loop", (l,));
                }
            });
        }
    }
}

/// Adds `Event`, `Pipeline` and `Permanent` to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyEvent>()?;
    m.add_class::<PyPipeline>()?;
    m.add("Permanent", py.get_type::<PyPermanent>())?;
    m.add("PARTITION_KEY", PARTITION_KEY)?;
    Ok(())
}
