//! Results into Python values: JSON answers, gathered answers with their
//! missing shards as exception objects, and metrics as dicts.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shardkit::scatter::{Gathered, LeafMetrics};
use shardkit::Error;

use super::leaves::{Answer, Causes};
use crate::errors::to_py;

/// A JSON value as the object `json.loads` would give (integers beyond
/// 64 bits arrive as floats: serde_json parses them so).
pub(crate) fn json_to_py<'py>(
    py: Python<'py>,
    v: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                dict.set_item(k, json_to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

pub(crate) fn answer_to_py(py: Python<'_>, a: Answer) -> PyResult<Py<PyAny>> {
    match a {
        Answer::Json(v) => Ok(json_to_py(py, &v)?.unbind()),
        Answer::Py(o) => Ok(o),
    }
}

/// Core's error for leaf `leaf` as its exception, chained (`__cause__`) to
/// the Python exception a callable replica raised, if that is what it was.
pub(crate) fn error_to_py(py: Python<'_>, causes: &Causes, leaf: usize, e: Error) -> PyErr {
    let cause = causes.take(leaf, &e);
    let err = to_py(py, e);
    if cause.is_some() {
        err.set_cause(py, cause);
    }
    err
}

/// What a gather returned: the answers that arrived, in leaf order, and
/// the leaves that did not answer with the exception saying why.
#[pyclass(frozen, module = "shardkit", name = "Gathered")]
pub(crate) struct PyGathered {
    answers: Vec<(usize, Py<PyAny>)>,
    missing: Vec<(usize, Py<PyAny>)>,
    total: usize,
}

impl PyGathered {
    pub(crate) fn new(py: Python<'_>, g: Gathered<Answer>, causes: &Causes) -> PyResult<Self> {
        let answers = g
            .answers
            .into_iter()
            .map(|(i, a)| Ok((i, answer_to_py(py, a)?)))
            .collect::<PyResult<_>>()?;
        let missing = g
            .missing
            .into_iter()
            .map(|(i, e)| (i, error_to_py(py, causes, i, e).into_value(py).into_any()))
            .collect();
        Ok(PyGathered {
            answers,
            missing,
            total: g.total,
        })
    }
}

#[pymethods]
impl PyGathered {
    /// `(leaf index, answer)` for each leaf that answered, in leaf order.
    #[getter]
    fn answers(&self, py: Python<'_>) -> Vec<(usize, Py<PyAny>)> {
        self.answers
            .iter()
            .map(|(i, a)| (*i, a.clone_ref(py)))
            .collect()
    }

    /// `(leaf index, exception)` for each leaf without an answer, in leaf
    /// order: `ShardkitTimeoutError` (cut off by the deadline),
    /// `CancelledError` (dropped once the coverage could no longer be met),
    /// or the leaf's own failure (`BadResponseError`, `UnavailableError`).
    #[getter]
    fn missing(&self, py: Python<'_>) -> Vec<(usize, Py<PyAny>)> {
        self.missing
            .iter()
            .map(|(i, e)| (*i, e.clone_ref(py)))
            .collect()
    }

    /// Number of leaves that answered.
    #[getter]
    fn answered(&self) -> usize {
        self.answers.len()
    }

    /// Number of leaves asked.
    #[getter]
    fn total(&self) -> usize {
        self.total
    }

    /// True when some leaf's part is missing.
    #[getter]
    fn degraded(&self) -> bool {
        self.answers.len() < self.total
    }

    fn __repr__(&self) -> String {
        let missing: Vec<String> = self.missing.iter().map(|(i, _)| i.to_string()).collect();
        format!(
            "<Gathered {}/{} missing=[{}]>",
            self.answers.len(),
            self.total,
            missing.join(", ")
        )
    }
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

/// One leaf's metrics as a dict (see the stub's `LeafMetrics`).
pub(crate) fn metrics_to_py<'py>(py: Python<'py>, m: &LeafMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &m.name)?;
    d.set_item("calls", m.calls)?;
    d.set_item("hedges_sent", m.hedges_sent)?;
    d.set_item("hedges_won", m.hedges_won)?;
    d.set_item("timeouts", m.timeouts)?;
    d.set_item("errors", m.errors)?;
    d.set_item("samples", m.latency.count())?;
    d.set_item("p50", secs(m.latency.percentile(0.50)))?;
    d.set_item("p95", secs(m.latency.percentile(0.95)))?;
    d.set_item("p99", secs(m.latency.percentile(0.99)))?;
    let replicas = PyList::empty(py);
    for r in &m.replicas {
        let rd = PyDict::new(py);
        rd.set_item("calls", r.calls)?;
        rd.set_item("outstanding", r.outstanding)?;
        rd.set_item("ewma", secs(r.ewma))?;
        replicas.append(rd)?;
    }
    d.set_item("replicas", replicas)?;
    Ok(d)
}
