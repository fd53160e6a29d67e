//! One Python exception class per core [`ErrorKind`], each a subclass of
//! `shardkit.ShardkitError` *and* of the matching builtin, so callers can catch
//! either `shardkit.NotFoundError` or plain `KeyError`.
//!
//! Core's table declares each kind once (code, name, description, doc); the
//! classes take their `code` and docstring from it. Only what is Python's
//! own is written here: each class's name and builtin base.
//! `tests/test_errors.py` checks the classes against the table
//! (`error_kinds()`), both ways.
//!
//! `create_exception!` takes a single base, so the classes are built at module
//! import with `type(name, (ShardkitError, Builtin), namespace)`.

use pyo3::exceptions::{
    PyBaseException, PyConnectionError, PyException, PyKeyError, PyLookupError, PyOSError,
    PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use shardkit::{Error, ErrorKind};

/// The classes, created once at module import.
pub(crate) struct Classes {
    base: Py<PyType>,
    by_kind: Vec<(ErrorKind, Py<PyType>)>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

/// The Python class name and builtin base of `kind`; `None` for a kind core
/// added that has no class yet (raised as `ShardkitError`; the test fails
/// until it is named here).
fn python_class(py: Python<'_>, kind: ErrorKind) -> Option<(&'static str, Bound<'_, PyType>)> {
    let value = || py.get_type::<PyValueError>();
    Some(match kind {
        ErrorKind::InvalidArgument => ("InvalidArgumentError", value()),
        ErrorKind::EmptyNodeSet => ("EmptyNodeSetError", value()),
        ErrorKind::DuplicateNode => ("DuplicateNodeError", value()),
        ErrorKind::NotFound => ("NotFoundError", py.get_type::<PyKeyError>()),
        ErrorKind::Config => ("ConfigError", value()),
        // Prefixed where the plain name would shadow a builtin.
        ErrorKind::Io => ("ShardkitIOError", py.get_type::<PyOSError>()),
        ErrorKind::InvalidUtf8 => ("InvalidUtf8Error", value()),
        // The C ABI's own kinds: Python passes no pointers or buffers and
        // turns panics into its PanicException, so these are never raised;
        // they exist so every code has its class.
        ErrorKind::NullPointer => ("NullPointerError", value()),
        ErrorKind::BufferTooSmall => ("BufferTooSmallError", value()),
        ErrorKind::Panic => ("PanicError", py.get_type::<PyRuntimeError>()),
        ErrorKind::Unavailable => ("UnavailableError", py.get_type::<PyConnectionError>()),
        ErrorKind::Timeout => ("ShardkitTimeoutError", py.get_type::<PyTimeoutError>()),
        // States, not bad values: the lease ended, the caller gave up, the
        // token was overtaken.
        ErrorKind::SessionLost => ("SessionLostError", py.get_type::<PyRuntimeError>()),
        ErrorKind::Cancelled => ("CancelledError", py.get_type::<PyRuntimeError>()),
        ErrorKind::Fenced => ("FencedError", py.get_type::<PyRuntimeError>()),
        // The revision asked for is no longer there to look up.
        ErrorKind::Compacted => ("CompactedError", py.get_type::<PyLookupError>()),
        // The peer was reached and answered wrongly: a connection-level
        // failure of the exchange, as ConnectionError's users expect.
        ErrorKind::BadResponse => ("BadResponseError", py.get_type::<PyConnectionError>()),
        _ => return None,
    })
}

/// Core's error table: `(code, name, description)` of every kind, in code
/// order.
#[pyfunction]
fn error_kinds() -> Vec<(u32, &'static str, &'static str)> {
    ErrorKind::ALL
        .iter()
        .map(|k| (k.code(), k.name(), k.description()))
        .collect()
}

fn make_class<'py>(
    py: Python<'py>,
    name: &str,
    doc: &str,
    code: Option<u32>,
    bases: Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "shardkit")?;
    ns.set_item("__doc__", doc)?;
    if let Some(code) = code {
        ns.set_item("code", code)?;
    }
    if name == "NotFoundError" {
        // KeyError's __str__ shows repr(message), quotes and escapes included;
        // core's messages are prose, so print them as BaseException does.
        ns.set_item(
            "__str__",
            py.get_type::<PyBaseException>().getattr("__str__")?,
        )?;
    }
    let cls = py.get_type::<PyType>().call1((name, bases, ns))?;
    Ok(cls.cast_into::<PyType>()?)
}

/// Creates the classes (idempotent) and adds them, and `error_kinds`, to `m`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let classes = CLASSES.get_or_try_init(py, || -> PyResult<Classes> {
        let base = make_class(
            py,
            "ShardkitError",
            "Base class of every error shardkit raises. `code` is the stable \
             numeric code shared with the C ABI and Go.",
            None,
            PyTuple::new(py, [py.get_type::<PyException>()])?,
        )?;
        let mut by_kind = Vec::with_capacity(ErrorKind::ALL.len());
        for &kind in ErrorKind::ALL {
            let Some((name, builtin)) = python_class(py, kind) else {
                continue;
            };
            let bases = PyTuple::new(py, [base.clone(), builtin])?;
            let cls = make_class(py, name, kind.doc(), Some(kind.code()), bases)?;
            by_kind.push((kind, cls.unbind()));
        }
        Ok(Classes {
            base: base.unbind(),
            by_kind,
        })
    })?;
    m.add("ShardkitError", classes.base.bind(py))?;
    for (_, cls) in &classes.by_kind {
        let cls = cls.bind(py);
        m.add(cls.name()?, cls)?;
    }
    m.add_function(wrap_pyfunction!(error_kinds, m)?)?;
    Ok(())
}

/// The class for `kind`; a kind without one (see [`python_class`]) maps to
/// the base.
fn class_for(py: Python<'_>, kind: ErrorKind) -> Bound<'_, PyType> {
    let classes = CLASSES
        .get(py)
        .expect("exception classes are created when the module is imported");
    classes
        .by_kind
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, c)| c)
        .unwrap_or(&classes.base)
        .bind(py)
        .clone()
}

/// A Python exception of `kind` carrying `message`.
pub(crate) fn raise(py: Python<'_>, kind: ErrorKind, message: impl Into<String>) -> PyErr {
    PyErr::from_type(class_for(py, kind), message.into())
}

/// Converts a core error into its Python exception. The message is core's
/// detail (the class already says the kind).
pub(crate) fn to_py(py: Python<'_>, e: Error) -> PyErr {
    raise(py, e.kind(), e.message().to_string())
}

/// [`to_py`] from any thread: futures finish on runtime threads, which hold
/// no GIL.
pub(crate) fn py_err(e: Error) -> PyErr {
    Python::attach(|py| to_py(py, e))
}

/// The exception object for `e`, handed over rather than raised (a lost
/// session's reason, a shard owner's error).
pub(crate) fn exception_object(py: Python<'_>, e: Error) -> Py<PyAny> {
    to_py(py, e).into_value(py).into_any()
}

/// `result.or_raise(py)?` converts core errors at the binding boundary.
pub(crate) trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, Error> {
    #[inline]
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
