//! One Python exception class per core [`ErrorKind`], each a subclass of
//! `shardkit.ShardkitError` *and* of the matching builtin, so callers can catch
//! either `shardkit.NotFoundError` or plain `KeyError`.
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

/// The Python name, builtin base, and docstring of each kind's class.
struct ClassSpec {
    kind: ErrorKind,
    name: &'static str,
    doc: &'static str,
}

const SPECS: &[ClassSpec] = &[
    ClassSpec {
        kind: ErrorKind::InvalidArgument,
        name: "InvalidArgumentError",
        doc: "A value is outside what the operation accepts (weight, table size, name).",
    },
    ClassSpec {
        kind: ErrorKind::EmptyNodeSet,
        name: "EmptyNodeSetError",
        doc: "A node set with no nodes where at least one is needed.",
    },
    ClassSpec {
        kind: ErrorKind::DuplicateNode,
        name: "DuplicateNodeError",
        doc: "Two nodes share a name.",
    },
    ClassSpec {
        kind: ErrorKind::NotFound,
        name: "NotFoundError",
        doc: "A named node (or pool, or slot) does not exist.",
    },
    ClassSpec {
        kind: ErrorKind::Config,
        name: "ConfigError",
        doc: "A configuration document could not be parsed or is inconsistent.",
    },
    ClassSpec {
        kind: ErrorKind::Io,
        name: "ShardkitIOError",
        doc: "Reading a file failed.",
    },
    ClassSpec {
        kind: ErrorKind::InvalidUtf8,
        name: "InvalidUtf8Error",
        doc: "Text was required and the value was not valid UTF-8.",
    },
    ClassSpec {
        kind: ErrorKind::Unavailable,
        name: "UnavailableError",
        doc: "No node can serve: every node is marked down, or no endpoint answers.",
    },
    ClassSpec {
        kind: ErrorKind::Timeout,
        name: "ShardkitTimeoutError",
        doc: "An operation did not finish within its timeout (an acquire, a campaign, a request).",
    },
    ClassSpec {
        kind: ErrorKind::SessionLost,
        name: "SessionLostError",
        doc: "The session's lease is gone (expired, revoked, or its local deadline passed), \
              or the session was closed: nothing held under it may be used any more.",
    },
    ClassSpec {
        kind: ErrorKind::Cancelled,
        name: "CancelledError",
        doc: "The operation was cancelled while it waited.",
    },
    ClassSpec {
        kind: ErrorKind::Fenced,
        name: "FencedError",
        doc: "A fencing token is no longer current (or older than one already seen): \
              the lock, leadership or shard it proves has passed on, and the write was refused.",
    },
    ClassSpec {
        kind: ErrorKind::Compacted,
        name: "CompactedError",
        doc: "History was asked for that the store has already compacted away.",
    },
    ClassSpec {
        kind: ErrorKind::BadResponse,
        name: "BadResponseError",
        doc: "A remote peer (a scatter leaf) answered with a non-2xx status or a body \
              that is not the JSON the protocol asks for.",
    },
];

/// The classes, created once at module import.
pub(crate) struct Classes {
    base: Py<PyType>,
    by_kind: Vec<(ErrorKind, Py<PyType>)>,
}

static CLASSES: PyOnceLock<Classes> = PyOnceLock::new();

fn builtin_base(py: Python<'_>, kind: ErrorKind) -> Bound<'_, PyType> {
    match kind {
        ErrorKind::NotFound => py.get_type::<PyKeyError>(),
        ErrorKind::Io => py.get_type::<PyOSError>(),
        ErrorKind::Unavailable => py.get_type::<PyConnectionError>(),
        ErrorKind::Timeout => py.get_type::<PyTimeoutError>(),
        // States, not bad values: the lease ended, the caller gave up, the
        // token was overtaken.
        ErrorKind::SessionLost | ErrorKind::Cancelled | ErrorKind::Fenced => {
            py.get_type::<PyRuntimeError>()
        }
        // The revision asked for is no longer there to look up.
        ErrorKind::Compacted => py.get_type::<PyLookupError>(),
        // The peer was reached and answered wrongly: a connection-level
        // failure of the exchange, as ConnectionError's users expect.
        ErrorKind::BadResponse => py.get_type::<PyConnectionError>(),
        _ => py.get_type::<PyValueError>(),
    }
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

/// Creates the classes (idempotent) and adds them to `m`.
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
        let mut by_kind = Vec::with_capacity(SPECS.len());
        for spec in SPECS {
            let bases = PyTuple::new(py, [base.clone(), builtin_base(py, spec.kind)])?;
            let cls = make_class(py, spec.name, spec.doc, Some(spec.kind.code()), bases)?;
            by_kind.push((spec.kind, cls.unbind()));
        }
        Ok(Classes {
            base: base.unbind(),
            by_kind,
        })
    })?;
    m.add("ShardkitError", classes.base.bind(py))?;
    for (spec, (_, cls)) in SPECS.iter().zip(&classes.by_kind) {
        m.add(spec.name, cls.bind(py))?;
    }
    Ok(())
}

/// The class for `kind`; kinds that only the C ABI produces map to the base.
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
