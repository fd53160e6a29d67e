//! `FencingToken` and `FenceGate`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use shardkit::lease::{FenceGate, FencingToken, TokenKind};
use shardkit::ErrorKind;

use crate::errors::{raise, OrRaise};
use crate::keys::{type_name, with_key};

fn kind_name(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Lock => "lock",
        TokenKind::Leader => "leader",
        TokenKind::Shard => "shard",
    }
}

/// Proof of holding a lock, leadership or shard from a store revision on.
///
/// `int(token)` (or `token.value`) is the revision: the number an external
/// store compares to refuse writes from a holder that has been overtaken.
/// Tokens order by revision; equality compares every field.
#[pyclass(frozen, module = "shardkit", name = "FencingToken")]
pub(crate) struct PyFencingToken {
    pub(crate) inner: FencingToken,
}

impl From<FencingToken> for PyFencingToken {
    fn from(inner: FencingToken) -> Self {
        PyFencingToken { inner }
    }
}

#[pymethods]
impl PyFencingToken {
    /// The store revision at which the hold began.
    #[getter]
    fn revision(&self) -> i64 {
        self.inner.revision
    }

    /// Same as `revision`: the integer external stores compare.
    #[getter]
    fn value(&self) -> i64 {
        self.inner.value()
    }

    /// The lease the hold lives under.
    #[getter]
    fn lease(&self) -> i64 {
        self.inner.lease
    }

    /// The lock, election or shard name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// `"lock"`, `"leader"` or `"shard"`.
    #[getter]
    fn kind(&self) -> &'static str {
        kind_name(self.inner.kind)
    }

    /// The holder's key in the store.
    #[getter]
    fn key(&self) -> &[u8] {
        &self.inner.key
    }

    fn __int__(&self) -> i64 {
        self.inner.revision
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }

    fn __repr__(&self) -> String {
        format!("<FencingToken {}>", self.inner)
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.inner.hash(&mut h);
        h.finish()
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> Py<PyAny> {
        let py = other.py();
        let Ok(other) = other.cast::<PyFencingToken>() else {
            return py.NotImplemented();
        };
        let (a, b) = (&self.inner, &other.get().inner);
        let r = match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            CompareOp::Lt => a.revision < b.revision,
            CompareOp::Le => a.revision <= b.revision,
            CompareOp::Gt => a.revision > b.revision,
            CompareOp::Ge => a.revision >= b.revision,
        };
        pyo3::types::PyBool::new(py, r)
            .to_owned()
            .into_any()
            .unbind()
    }
}

/// Guards an external resource: remembers the newest token seen per
/// resource and refuses (`FencedError`) writes carrying an older one.
/// Tokens of one lock (or election, or shard) compare, so a gate serves one.
#[pyclass(frozen, module = "shardkit", name = "FenceGate")]
pub(crate) struct PyFenceGate {
    inner: FenceGate,
    name: String,
    kind: TokenKind,
}

#[pymethods]
impl PyFenceGate {
    /// A gate for tokens of lock `name` (or `kind="leader"` / `"shard"`).
    #[new]
    #[pyo3(signature = (name, kind = "lock"))]
    fn new(py: Python<'_>, name: &str, kind: &str) -> PyResult<Self> {
        let kind = match kind {
            "lock" => TokenKind::Lock,
            "leader" => TokenKind::Leader,
            "shard" => TokenKind::Shard,
            other => {
                return Err(raise(
                    py,
                    ErrorKind::InvalidArgument,
                    format!("token kind {other:?}: expected \"lock\", \"leader\" or \"shard\""),
                ))
            }
        };
        Ok(PyFenceGate {
            inner: FenceGate::new(kind, name).map_err(|e| crate::errors::to_py(py, e))?,
            name: name.to_string(),
            kind,
        })
    }

    /// The lock, election or shard whose tokens this gate admits.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// `"lock"`, `"leader"` or `"shard"`.
    #[getter]
    fn kind(&self) -> &'static str {
        kind_name(self.kind)
    }

    /// Admits a write to `resource` carrying `token` (a `FencingToken`, or
    /// its integer value as another process received it): records it as
    /// the newest, or raises `FencedError` when a newer one was seen.
    fn admit(&self, resource: &Bound<'_, PyAny>, token: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = resource.py();
        let resource = with_key(resource, <[u8]>::to_vec)?;
        if let Ok(t) = token.cast::<PyFencingToken>() {
            return self.inner.admit(&resource, &t.get().inner).or_raise(py);
        }
        if token.is_instance_of::<pyo3::types::PyBool>() || !token.hasattr("__index__")? {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "token must be a FencingToken or an int, not {}",
                type_name(token)
            )));
        }
        let value: i64 = token.extract().map_err(|_| {
            raise(
                py,
                ErrorKind::InvalidArgument,
                format!("fencing token {token}: out of range"),
            )
        })?;
        self.inner.admit_value(&resource, value).or_raise(py)
    }

    /// The newest token value admitted for `resource` (0 if none).
    fn newest(&self, resource: &Bound<'_, PyAny>) -> PyResult<i64> {
        with_key(resource, |r| self.inner.newest(r))
    }

    fn __repr__(&self) -> String {
        format!("<FenceGate {}:{}>", kind_name(self.kind), self.name)
    }
}
