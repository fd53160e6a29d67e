//! `shardkit.Sharder`: one immutable sharding snapshot, plus the `Movement`
//! and `Balance` reports. Every behaviour is core's; this file converts
//! arguments, releases the GIL around real work, and maps results back.

use crate::errors::{raise, OrRaise};
use crate::keys::{collect_keys, type_name, with_key};
use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyMapping, PyString, PyTuple};
use shardkit::config::{nginx, twemproxy};
use shardkit::{Change, ErrorKind, KeySelector, Node, ShardConfig};
use std::path::PathBuf;

/// Batches shorter than this keep the GIL: giving it up and taking it back
/// can cost more than the lookups themselves (up to the interpreter's switch
/// interval when another thread is waiting).
const DETACH_MIN_KEYS: usize = 256;

/// A sharding snapshot over a set of named, weighted nodes.
///
/// Immutable: membership changes (`with_node`, `without_node`, ...) return a
/// new `Sharder`. Safe to share between threads.
#[pyclass(frozen, module = "shardkit", name = "Sharder")]
pub struct PySharder {
    inner: shardkit::Sharder,
    /// Node names by slot, created once per snapshot so lookups return a
    /// shared `str` instead of allocating one per key.
    names: Vec<Option<Py<PyString>>>,
}

impl PySharder {
    fn wrap(py: Python<'_>, inner: shardkit::Sharder) -> PySharder {
        let names = (0..inner.slot_count() as u32)
            .map(|slot| {
                inner
                    .node(slot)
                    .map(|n| PyString::new(py, n.name()).unbind())
            })
            .collect();
        PySharder { inner, names }
    }

    #[inline]
    fn name<'py>(&self, py: Python<'py>, slot: u32) -> Bound<'py, PyString> {
        self.names[slot as usize]
            .as_ref()
            .expect("core returns live slots")
            .bind(py)
            .clone()
    }

    /// Builds the snapshot for `changes` with the GIL released (tables for
    /// large node sets take milliseconds).
    fn changed(&self, py: Python<'_>, changes: Vec<Change>) -> PyResult<PySharder> {
        let inner = &self.inner;
        let next = py.detach(|| inner.apply(&changes)).or_raise(py)?;
        Ok(PySharder::wrap(py, next))
    }

    /// Slots of `keys`, computed with the GIL released for large batches.
    fn slots_of(&self, keys: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        let py = keys.py();
        let keys = collect_keys(keys)?;
        let mut out = vec![0u32; keys.len()];
        let inner = &self.inner;
        let res = if keys.len() >= DETACH_MIN_KEYS {
            py.detach(|| inner.lookup_batch(&keys, &mut out))
        } else {
            inner.lookup_batch(&keys, &mut out)
        };
        res.or_raise(py)?;
        // Dropped here, attached: each key releases its Python reference
        // directly instead of through pyo3's deferred pool.
        drop(keys);
        Ok(out)
    }
}

/// Parses a weight: an `int` (not `bool`), passed to core as `i64` so its
/// range check names the value.
fn weight_of(name: &str, w: &Bound<'_, PyAny>) -> PyResult<i64> {
    if w.is_instance_of::<PyBool>() || !w.hasattr("__index__")? {
        return Err(PyTypeError::new_err(format!(
            "weight of node {name:?} must be an int, not {}",
            type_name(w)
        )));
    }
    match w.extract::<i64>() {
        Ok(v) => Ok(v),
        Err(e) if e.is_instance_of::<PyOverflowError>(w.py()) => Err(raise(
            w.py(),
            ErrorKind::InvalidArgument,
            format!(
                "weight must be between 1 and {}, got {} for node {name:?}",
                shardkit::node::MAX_WEIGHT,
                w.str()?
            ),
        )),
        Err(e) => Err(e),
    }
}

fn name_of(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    match obj.cast::<PyString>() {
        Ok(s) => Ok(s.to_cow()?.into_owned()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be a str, not {}",
            type_name(obj)
        ))),
    }
}

fn node_from(name: &Bound<'_, PyAny>, weight: Option<&Bound<'_, PyAny>>) -> PyResult<Node> {
    let py = name.py();
    let name = name_of("node name", name)?;
    let weight = match weight {
        Some(w) => weight_of(&name, w)?,
        None => 1,
    };
    Node::new(name, weight).or_raise(py)
}

/// A `(name, weight)` pair: a 2-tuple, or a 2-list as JSON gives it.
fn pair_of<'py>(
    item: &Bound<'py, PyAny>,
) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    if let Ok(t) = item.cast::<PyTuple>() {
        if t.len() == 2 {
            return Ok(Some((t.get_item(0)?, t.get_item(1)?)));
        }
    } else if let Ok(l) = item.cast::<PyList>() {
        if l.len() == 2 {
            return Ok(Some((l.get_item(0)?, l.get_item(1)?)));
        }
    }
    Ok(None)
}

/// `Sequence[str] | Mapping[str, int] | Iterable[tuple[str, int]]` to nodes,
/// in the caller's order (which fixes slot order).
fn parse_nodes(nodes: &Bound<'_, PyAny>) -> PyResult<Vec<Node>> {
    const SHAPES: &str =
        "a sequence of names, a mapping of name to weight, or an iterable of (name, weight) pairs";
    if nodes.is_instance_of::<PyString>() || nodes.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(format!(
            "nodes must be {SHAPES}, not a single {}",
            type_name(nodes)
        )));
    }
    if let Ok(map) = nodes.cast::<PyMapping>() {
        let mut out = Vec::with_capacity(map.len()?);
        for item in map.items()?.iter() {
            let (name, weight) = item.extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()?;
            out.push(node_from(&name, Some(&weight))?);
        }
        return Ok(out);
    }
    let iter = nodes.try_iter().map_err(|_| {
        PyTypeError::new_err(format!("nodes must be {SHAPES}, not {}", type_name(nodes)))
    })?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        if item.is_instance_of::<PyString>() {
            out.push(node_from(&item, None)?);
        } else if let Some((name, weight)) = pair_of(&item)? {
            out.push(node_from(&name, Some(&weight))?);
        } else {
            return Err(PyTypeError::new_err(format!(
                "nodes[{i}] must be a name (str) or a (name, weight) pair, not {}",
                type_name(&item)
            )));
        }
    }
    Ok(out)
}

/// One `apply` change: `("add", name[, weight])`, `("remove", name)`,
/// `("weight", name, weight)`, `("down", name)` or `("up", name)`.
fn parse_change(i: usize, ch: &Bound<'_, PyAny>) -> PyResult<Change> {
    let bad = |why: String| PyTypeError::new_err(format!("changes[{i}] {why}"));
    let t = ch.cast::<PyTuple>().map_err(|_| {
        bad(format!(
            "must be a tuple like (\"add\", name, weight), not {}",
            type_name(ch)
        ))
    })?;
    if t.len() < 2 {
        return Err(bad(format!("needs an operation and a node name, got {t}")));
    }
    let op = name_of(&format!("changes[{i}][0]"), &t.get_item(0)?)?;
    let arity = |n: usize| -> PyResult<()> {
        if t.len() == n {
            Ok(())
        } else {
            Err(bad(format!(
                "({op:?}, ...) takes {n} items, got {}",
                t.len()
            )))
        }
    };
    let name = || name_of(&format!("changes[{i}][1]"), &t.get_item(1)?);
    Ok(match op.as_str() {
        "add" => {
            if t.len() == 2 {
                Change::Add(node_from(&t.get_item(1)?, None)?)
            } else {
                arity(3)?;
                Change::Add(node_from(&t.get_item(1)?, Some(&t.get_item(2)?))?)
            }
        }
        "remove" => {
            arity(2)?;
            Change::Remove(name()?)
        }
        "weight" => {
            arity(3)?;
            let n = name()?;
            let w = weight_of(&n, &t.get_item(2)?)?;
            Change::Reweight(n, w)
        }
        "down" => {
            arity(2)?;
            Change::Down(name()?)
        }
        "up" => {
            arity(2)?;
            Change::Up(name()?)
        }
        other => {
            return Err(raise(
                ch.py(),
                ErrorKind::InvalidArgument,
                format!(
                    "changes[{i}] has unknown operation {other:?}; expected add, remove, weight, down or up"
                ),
            ))
        }
    })
}

fn array_type(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static ARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    ARRAY.import(py, "array", "array")
}

#[pymethods]
impl PySharder {
    /// Builds a snapshot over `nodes` with `algorithm` (see `ALGORITHMS`).
    #[new]
    // The literal keeps the default visible in the signature; a test checks it
    // equals core's DEFAULT_ALGORITHM.
    #[pyo3(signature = (nodes, algorithm = "maglev", *, hash = None, hash_tag = None))]
    fn new(
        py: Python<'_>,
        nodes: &Bound<'_, PyAny>,
        algorithm: &str,
        hash: Option<&str>,
        hash_tag: Option<&str>,
    ) -> PyResult<PySharder> {
        let nodes = parse_nodes(nodes)?;
        let cfg = ShardConfig::from_names(Some(algorithm), hash, hash_tag).or_raise(py)?;
        let inner = py
            .detach(|| shardkit::Sharder::new(nodes, cfg))
            .or_raise(py)?;
        Ok(PySharder::wrap(py, inner))
    }

    /// The sharder of a pool in a twemproxy (nutcracker) YAML document; the
    /// first pool when `pool` is None.
    #[staticmethod]
    #[pyo3(signature = (yaml, pool = None))]
    fn from_twemproxy(py: Python<'_>, yaml: &str, pool: Option<&str>) -> PyResult<PySharder> {
        let pool = py
            .detach(|| twemproxy::select_pool(twemproxy::parse_pools(yaml)?, pool))
            .or_raise(py)?;
        Ok(PySharder::wrap(py, pool.sharder))
    }

    /// Like `from_twemproxy`, reading the YAML from `path`.
    #[staticmethod]
    #[pyo3(signature = (path, pool = None))]
    fn from_twemproxy_file(
        py: Python<'_>,
        path: PathBuf,
        pool: Option<&str>,
    ) -> PyResult<PySharder> {
        let pool = py
            .detach(|| twemproxy::select_pool(twemproxy::load_pools(&path)?, pool))
            .or_raise(py)?;
        Ok(PySharder::wrap(py, pool.sharder))
    }

    /// An nginx `hash $key consistent` upstream from a server list such as
    /// `"127.0.0.1:8081 weight=2,127.0.0.1:8082"`; with `algorithm`, the
    /// same servers placed by that algorithm instead.
    #[staticmethod]
    #[pyo3(signature = (upstream, algorithm = None))]
    fn from_nginx(py: Python<'_>, upstream: &str, algorithm: Option<&str>) -> PyResult<PySharder> {
        let inner = py
            .detach(|| match algorithm {
                Some(a) => {
                    nginx::parse_upstream_with(upstream, shardkit::shard::Algorithm::from_name(a)?)
                }
                None => nginx::parse_upstream(upstream),
            })
            .or_raise(py)?;
        Ok(PySharder::wrap(py, inner))
    }

    /// The node serving `key`.
    ///
    /// Keeps the GIL: one lookup takes tens of nanoseconds, less than giving
    /// the GIL up and taking it back.
    fn lookup<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
        let py = key.py();
        let slot = with_key(key, |k| self.inner.lookup_slot(k))?.or_raise(py)?;
        Ok(self.name(py, slot))
    }

    /// `n` distinct nodes for `key` in a stable order of preference, primary
    /// (`lookup(key)`) first; nodes marked down are skipped.
    fn lookup_n<'py>(&self, key: &Bound<'py, PyAny>, n: usize) -> PyResult<Bound<'py, PyList>> {
        let py = key.py();
        let slots = with_key(key, |k| self.inner.lookup_n(k, n))?.or_raise(py)?;
        PyList::new(py, slots.into_iter().map(|s| self.name(py, s)))
    }

    /// The node of each key, in order. Large batches run with the GIL
    /// released, split across threads in core above `PARALLEL_BATCH_THRESHOLD`.
    fn lookup_many<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let py = keys.py();
        let slots = self.slots_of(keys)?;
        let names = &self.names;
        PyList::new(
            py,
            slots.into_iter().map(|s| {
                names[s as usize]
                    .as_ref()
                    .expect("core returns live slots")
                    .bind(py)
            }),
        )
    }

    /// The slot of each key as an `array.array` of unsigned 32-bit ints (a
    /// buffer numpy can wrap without copying); map slots to names with
    /// `node(slot)` or `slot_names`.
    fn lookup_many_slots<'py>(&self, keys: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = keys.py();
        let slots = self.slots_of(keys)?;
        let bytes = PyBytes::new_with(py, slots.len() * 4, |buf| {
            for (chunk, s) in buf.chunks_exact_mut(4).zip(&slots) {
                chunk.copy_from_slice(&s.to_ne_bytes());
            }
            Ok(())
        })?;
        array_type(py)?.call1(("I", bytes))
    }

    /// The hash of `key` as this sharder places it (after hash-tag selection).
    fn key_hash(&self, key: &Bound<'_, PyAny>) -> PyResult<u64> {
        with_key(key, |k| self.inner.key_hash(k))
    }

    /// The node in `slot` (as returned by `lookup_many_slots`).
    fn node<'py>(&self, py: Python<'py>, slot: i64) -> PyResult<Bound<'py, PyString>> {
        usize::try_from(slot)
            .ok()
            .and_then(|s| self.names.get(s))
            .and_then(|n| n.as_ref())
            .map(|n| n.bind(py).clone())
            .ok_or_else(|| {
                raise(
                    py,
                    ErrorKind::NotFound,
                    format!(
                        "slot {slot} holds no node (slots are 0..{})",
                        self.names.len()
                    ),
                )
            })
    }

    /// Node names indexed by slot; `None` marks a slot left empty by a removal.
    #[getter]
    fn slot_names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            self.names.iter().map(|n| match n {
                Some(n) => n.bind(py).clone().into_any(),
                None => py.None().into_bound(py),
            }),
        )
    }

    /// Node names, in slot order (nodes marked down included).
    #[getter]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.names.iter().flatten().map(|n| n.bind(py)))
    }

    /// Node name to weight, in slot order.
    #[getter]
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for n in self.inner.nodes() {
            d.set_item(n.name(), n.weight())?;
        }
        Ok(d)
    }

    /// Names of the nodes marked down, in slot order.
    #[getter]
    fn down_nodes(&self) -> Vec<String> {
        self.inner
            .nodes()
            .filter(|n| self.inner.is_down(n.name()) == Some(true))
            .map(|n| n.name().to_string())
            .collect()
    }

    /// Whether the named node is marked down; NotFoundError if there is none.
    fn is_down(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        self.inner
            .is_down(name)
            .ok_or_else(|| raise(py, ErrorKind::NotFound, format!("no node named {name:?}")))
    }

    /// The canonical algorithm name, e.g. `"ketama:twemproxy"`.
    #[getter]
    fn algorithm(&self) -> String {
        self.inner.algorithm().name()
    }

    /// The canonical name of the key hash in effect, e.g. `"xxh3"`.
    #[getter]
    fn hash_name(&self) -> String {
        self.inner.hash_fn().name()
    }

    /// The hash-tag delimiters (e.g. `"{}"`), or None when whole keys are hashed.
    #[getter]
    fn hash_tag(&self) -> Option<String> {
        match self.inner.config().key_selector {
            KeySelector::HashTag { open, close } => {
                Some(String::from_utf8_lossy(&[open, close]).into_owned())
            }
            _ => None,
        }
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, name: &Bound<'_, PyAny>) -> bool {
        name.cast::<PyString>()
            .ok()
            .and_then(|s| s.to_cow().ok().map(|s| self.inner.slot_of(&s).is_some()))
            .unwrap_or(false)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let r = |s: String| PyString::new(py, &s).repr().map(|r| r.to_string());
        let down = self.down_nodes().len();
        let mut s = format!(
            "Sharder(algorithm={}, hash={}, nodes={}",
            r(self.algorithm())?,
            r(self.hash_name())?,
            self.inner.len()
        );
        if let Some(t) = self.hash_tag() {
            s.push_str(&format!(", hash_tag={}", r(t)?));
        }
        if down > 0 {
            s.push_str(&format!(", down={down}"));
        }
        s.push(')');
        Ok(s)
    }

    /// A new snapshot with the node added.
    #[pyo3(signature = (name, weight = 1))]
    fn with_node(&self, py: Python<'_>, name: String, weight: i64) -> PyResult<PySharder> {
        let node = Node::new(name, weight).or_raise(py)?;
        self.changed(py, vec![Change::Add(node)])
    }

    /// A new snapshot without the named node.
    fn without_node(&self, py: Python<'_>, name: String) -> PyResult<PySharder> {
        self.changed(py, vec![Change::Remove(name)])
    }

    /// A new snapshot with the named node's weight set.
    fn with_weight(&self, py: Python<'_>, name: String, weight: i64) -> PyResult<PySharder> {
        self.changed(py, vec![Change::Reweight(name, weight)])
    }

    /// A new snapshot with the named node marked down (lookups skip it to
    /// their next choice; nothing else moves), or up again with `down=False`.
    #[pyo3(signature = (name, down = true))]
    fn with_down(&self, py: Python<'_>, name: String, down: bool) -> PyResult<PySharder> {
        let ch = if down {
            Change::Down(name)
        } else {
            Change::Up(name)
        };
        self.changed(py, vec![ch])
    }

    /// Applies several changes at once and builds one new snapshot; on any
    /// error nothing is applied. Each change is a tuple: `("add", name)`,
    /// `("add", name, weight)`, `("remove", name)`, `("weight", name, w)`,
    /// `("down", name)` or `("up", name)`.
    fn apply(&self, py: Python<'_>, changes: &Bound<'_, PyAny>) -> PyResult<PySharder> {
        let mut parsed = Vec::new();
        for (i, ch) in changes.try_iter()?.enumerate() {
            parsed.push(parse_change(i, &ch?)?);
        }
        self.changed(py, parsed)
    }

    /// The share of `samples` synthetic keys that change node between this
    /// snapshot and `other`, and the least any algorithm must move.
    #[pyo3(signature = (other, samples = 100_000))]
    fn movement(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PySharder>,
        samples: usize,
    ) -> PyResult<Movement> {
        let (a, b) = (&self.inner, &other.get().inner);
        let m = py.detach(|| a.movement(b, samples)).or_raise(py)?;
        Ok(Movement {
            samples: m.samples,
            moved: m.moved,
            fraction: m.fraction,
            minimum: m.minimum,
        })
    }

    /// Load per node over `samples` synthetic keys, relative to weight.
    #[pyo3(signature = (samples = 100_000))]
    fn balance(&self, py: Python<'_>, samples: usize) -> PyResult<Balance> {
        let inner = &self.inner;
        let b = py.detach(|| inner.balance(samples)).or_raise(py)?;
        Ok(Balance {
            samples: b.samples,
            peak_to_mean: b.peak_to_mean,
            min_to_mean: b.min_to_mean,
            stddev: b.stddev,
            per_node: b.per_node,
        })
    }
}

/// How many keys change node between two snapshots (`Sharder.movement`).
#[pyclass(frozen, module = "shardkit", name = "Movement", get_all)]
pub struct Movement {
    /// Keys sampled.
    samples: usize,
    /// Keys whose node (by name) differs.
    moved: usize,
    /// `moved / samples`.
    fraction: f64,
    /// The least share any function must move: the weight that changes hands.
    minimum: f64,
}

#[pymethods]
impl Movement {
    fn __repr__(&self) -> String {
        format!(
            "Movement(fraction={:.6}, minimum={:.6}, moved={}, samples={})",
            self.fraction, self.minimum, self.moved, self.samples
        )
    }
}

/// How evenly keys spread relative to weight (`Sharder.balance`).
#[pyclass(frozen, module = "shardkit", name = "Balance")]
pub struct Balance {
    samples: usize,
    peak_to_mean: f64,
    min_to_mean: f64,
    stddev: f64,
    per_node: Vec<(String, u64)>,
}

#[pymethods]
impl Balance {
    /// Keys sampled.
    #[getter]
    fn samples(&self) -> usize {
        self.samples
    }

    /// Highest load over its fair share (1.0 is perfect).
    #[getter]
    fn peak_to_mean(&self) -> f64 {
        self.peak_to_mean
    }

    /// Lowest load over its fair share.
    #[getter]
    fn min_to_mean(&self) -> f64 {
        self.min_to_mean
    }

    /// Standard deviation of load over fair share.
    #[getter]
    fn stddev(&self) -> f64 {
        self.stddev
    }

    /// Keys per node name, in slot order.
    #[getter]
    fn per_node<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, count) in &self.per_node {
            d.set_item(name, count)?;
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Balance(peak_to_mean={:.4}, min_to_mean={:.4}, stddev={:.4}, samples={}, nodes={})",
            self.peak_to_mean,
            self.min_to_mean,
            self.stddev,
            self.samples,
            self.per_node.len()
        )
    }
}
