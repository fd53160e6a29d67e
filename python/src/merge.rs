//! `top_k`, `top_k_arrays`, `intersect` and `union`: core's `shardkit::merge`
//! over Python input. Each input list is either Python objects (pairs or
//! ints) or a one-dimensional contiguous buffer (`array.array`, numpy).
//!
//! Buffers are copied (GIL held) rather than read in place with the GIL
//! released: a numpy operation in another thread may write the same memory
//! without the GIL, and reading memory while it is written is undefined
//! behaviour in Rust. Hit buffers are read straight into core's hits (one
//! pass, about a nanosecond a hit); posting lists are copied with `memcpy`
//! and checked for negative ids afterwards. The merge, intersection or union
//! itself always runs with the GIL released. Big temporary allocations are
//! kept few on purpose: each fresh megabyte costs page faults that, on a
//! small VM, outweigh the merge itself.

use crate::errors::OrRaise;
use crate::keys::type_name;
use pyo3::buffer::{Element, PyUntypedBuffer};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple};
use shardkit::merge::{self, Hit};
use shardkit::{Error, Result};

/// What a buffer holds, as far as merging cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    F32,
    F64,
    U32,
    U64,
    I32,
    I64,
}

impl Elem {
    /// The element of a buffer with struct-module `format` and `itemsize`;
    /// only native byte order (`@`, `=`, or the platform's own `<`/`>`).
    fn of(format: &[u8], itemsize: usize) -> Option<Elem> {
        let native = if cfg!(target_endian = "little") {
            b'<'
        } else {
            b'>'
        };
        let code = match format {
            [c] => *c,
            [p, c] if *p == b'@' || *p == b'=' || *p == native => *c,
            _ => return None,
        };
        match (code, itemsize) {
            (b'f', 4) => Some(Elem::F32),
            (b'd', 8) => Some(Elem::F64),
            (b'I' | b'L' | b'Q' | b'N', 4) => Some(Elem::U32),
            (b'I' | b'L' | b'Q' | b'N', 8) => Some(Elem::U64),
            (b'i' | b'l' | b'q' | b'n', 4) => Some(Elem::I32),
            (b'i' | b'l' | b'q' | b'n', 8) => Some(Elem::I64),
            _ => None,
        }
    }
}

/// A copied integer buffer.
enum Column {
    U32(Vec<u32>),
    U64(Vec<u64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl Column {
    fn is_64(&self) -> bool {
        matches!(self, Column::U64(_) | Column::I64(_))
    }
}

/// Whether `obj` exports the buffer protocol.
fn is_buffer(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object and the GIL is held (it is a `Bound`).
    unsafe { pyo3::ffi::PyObject_CheckBuffer(obj.as_ptr()) == 1 }
}

/// The items of a contiguous buffer of `T`, copied byte-wise (so the buffer
/// need not be aligned for `T`).
fn copy_items<T: Element>(buf: &PyUntypedBuffer) -> Vec<T> {
    let n = buf.item_count();
    let mut out = Vec::<T>::with_capacity(n);
    if n > 0 {
        // SAFETY: the caller checked that the buffer is C-contiguous and that
        // its items are `T` of `size_of::<T>()` bytes (`open_buffer`), so it
        // holds `n * size_of::<T>()` bytes at `buf_ptr`, alive while the view
        // `buf` is held (with the GIL). Every bit pattern is a valid `T` (a
        // plain number: `Element`), and `out` has room for `n`. Copying
        // through raw pointers makes no Rust reference to memory that another
        // thread might write.
        unsafe {
            std::ptr::copy_nonoverlapping(
                buf.buf_ptr().cast::<u8>().cast_const(),
                out.as_mut_ptr().cast::<u8>(),
                n * std::mem::size_of::<T>(),
            );
            out.set_len(n);
        }
    }
    out
}

/// A view of `obj` as a one-dimensional contiguous buffer of one of `accept`.
fn open_buffer(
    what: &str,
    obj: &Bound<'_, PyAny>,
    accept: &[Elem],
    expected: &str,
) -> PyResult<(PyUntypedBuffer, Elem)> {
    let py = obj.py();
    let buf = PyUntypedBuffer::get(obj)?;
    let format = buf.format().to_string_lossy().into_owned();
    let elem = Elem::of(buf.format().to_bytes(), buf.item_size()).filter(|e| accept.contains(e));
    let Some(elem) = elem else {
        return Err(PyTypeError::new_err(format!(
            "{what}: buffer of format {format:?} (item size {}) from {}; expected {expected}",
            buf.item_size(),
            type_name(obj)
        )));
    };
    if buf.dimensions() != 1 {
        return Err(crate::errors::to_py(
            py,
            Error::invalid(format!(
                "{what}: buffer must be one-dimensional, got shape {:?}",
                buf.shape()
            )),
        ));
    }
    if !buf.is_c_contiguous() {
        return Err(crate::errors::to_py(
            py,
            Error::invalid(format!(
                "{what}: buffer is not contiguous (stride {} bytes for items of {} bytes); \
                 pass a contiguous copy (numpy.ascontiguousarray)",
                buf.strides()[0],
                buf.item_size()
            )),
        ));
    }
    Ok((buf, elem))
}

/// Copies `obj`, a one-dimensional contiguous buffer of integers.
fn read_id_buffer(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<Column> {
    let (buf, elem) = open_buffer(what, obj, INTS, ID_FORMATS)?;
    let col = match elem {
        Elem::U32 => Column::U32(copy_items(&buf)),
        Elem::U64 => Column::U64(copy_items(&buf)),
        Elem::I32 => Column::I32(copy_items(&buf)),
        Elem::I64 => Column::I64(copy_items(&buf)),
        Elem::F32 | Elem::F64 => unreachable!("INTS accepts integers only"),
    };
    buf.release(obj.py());
    Ok(col)
}

const ID_FORMATS: &str = "32- or 64-bit integers (array typecode 'I', 'L', 'Q', 'i', 'l', 'q'; \
                          numpy uint32, uint64, int32, int64)";
const SCORE_FORMATS: &str = "float32 or float64 (array typecode 'f' or 'd', numpy float32/float64)";
const INTS: &[Elem] = &[Elem::U32, Elem::U64, Elem::I32, Elem::I64];
const FLOATS: &[Elem] = &[Elem::F32, Elem::F64];

/// The first position of a negative id, as an error naming it.
fn negative<T: Copy + Into<i64>>(what: &str, v: &[T]) -> Result<()> {
    match v.iter().position(|&x| x.into() < 0) {
        None => Ok(()),
        Some(p) => Err(Error::invalid(format!(
            "{what}: id {} at position {p} is negative (ids are unsigned)",
            v[p].into()
        ))),
    }
}

/// One posting list as read (GIL held).
enum Ids {
    Column(String, Column),
    Ints(Vec<u64>),
}

impl Ids {
    fn into_u32(self) -> Result<Vec<u32>> {
        match self {
            Ids::Column(_, Column::U32(v)) => Ok(v),
            Ids::Column(what, Column::I32(v)) => {
                negative(&what, &v)?;
                Ok(v.into_iter().map(|x| x as u32).collect())
            }
            _ => unreachable!("the 32-bit path runs only when every list is 32-bit"),
        }
    }

    fn into_u64(self) -> Result<Vec<u64>> {
        match self {
            Ids::Ints(v) | Ids::Column(_, Column::U64(v)) => Ok(v),
            Ids::Column(_, Column::U32(v)) => Ok(v.into_iter().map(u64::from).collect()),
            Ids::Column(what, Column::I32(v)) => {
                negative(&what, &v)?;
                Ok(v.into_iter().map(|x| x as u64).collect())
            }
            Ids::Column(what, Column::I64(v)) => {
                negative(&what, &v)?;
                Ok(v.into_iter().map(|x| x as u64).collect())
            }
        }
    }
}

/// An int in `[0, 2**64)`, or an error naming where it came from.
fn doc_id(what: &dyn Fn() -> String, obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(v);
    }
    if obj.is_instance_of::<pyo3::types::PyInt>() {
        return Err(crate::errors::to_py(
            obj.py(),
            Error::invalid(format!(
                "{}: id {obj} is outside [0, 2**64) (ids are unsigned 64-bit)",
                what()
            )),
        ));
    }
    Err(PyTypeError::new_err(format!(
        "{}: id must be an int, not {}",
        what(),
        type_name(obj)
    )))
}

/// The lists of `lists` (any iterable), rejecting a lone str/bytes.
fn outer<'py>(name: &str, lists: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if is_buffer(lists) || lists.is_instance_of::<pyo3::types::PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a sequence of lists, not a single {}; wrap it in a list",
            type_name(lists)
        )));
    }
    let iter = lists.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a sequence of lists, not {}",
            type_name(lists)
        ))
    })?;
    iter.collect()
}

fn read_ids(lists: &Bound<'_, PyAny>) -> PyResult<Vec<Ids>> {
    let mut out = Vec::new();
    for (i, list) in outer("lists", lists)?.into_iter().enumerate() {
        let what = format!("lists[{i}]");
        if is_buffer(&list) {
            let col = read_id_buffer(&what, &list)?;
            out.push(Ids::Column(what, col));
        } else {
            let iter = list.try_iter().map_err(|_| {
                PyTypeError::new_err(format!(
                    "{what} must be a sequence of ints or an integer buffer, not {}",
                    type_name(&list)
                ))
            })?;
            let mut v = Vec::with_capacity(list.len().unwrap_or(0));
            for (j, x) in iter.enumerate() {
                v.push(doc_id(&|| format!("{what}[{j}]"), &x?)?);
            }
            out.push(Ids::Ints(v));
        }
    }
    Ok(out)
}

fn array_type(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static ARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    ARRAY.import(py, "array", "array")
}

/// A new `array.array(code)` of `n` items of `T`, written by `fill`. The
/// array is made at its final size and filled in place: no intermediate
/// copy (see the module docs on allocations).
fn filled_array<'py, T: Element>(
    py: Python<'py>,
    code: &str,
    n: usize,
    fill: impl FnOnce(&mut [T]),
) -> PyResult<Bound<'py, PyAny>> {
    if n == 0 {
        return array_type(py)?.call1((code,));
    }
    // `array(code, [0]) * n` allocates the n items once and fills them by
    // doubling memcpy.
    let arr = array_type(py)?.call1((code, (0,)))?.mul(n)?;
    let buf = PyUntypedBuffer::get(&arr)?;
    let ptr = buf.buf_ptr().cast::<T>();
    if buf.readonly()
        || buf.item_size() != std::mem::size_of::<T>()
        || buf.item_count() != n
        || ptr.align_offset(std::mem::align_of::<T>()) != 0
    {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
            "array.array({code:?}) has an unexpected layout (item size {}, {} items)",
            buf.item_size(),
            buf.item_count()
        )));
    }
    // SAFETY: `arr` was created above and is referenced nowhere else, so
    // nothing else reads or writes its items while `fill` runs; the view
    // `buf` keeps them in place (an exported array cannot be resized); the
    // checks above make `ptr` an aligned pointer to `n` writable items of
    // `T`, any bit pattern of which is valid.
    fill(unsafe { std::slice::from_raw_parts_mut(ptr, n) });
    buf.release(py);
    Ok(arr)
}

enum IdsOut {
    U32(Vec<u32>),
    U64(Vec<u64>),
}

#[derive(Clone, Copy)]
enum SetOp {
    Intersect,
    Union,
}

fn postings<'py>(lists: &Bound<'py, PyAny>, op: SetOp) -> PyResult<Bound<'py, PyAny>> {
    let py = lists.py();
    let ids = read_ids(lists)?;
    let buffers = !ids.is_empty() && ids.iter().all(|l| matches!(l, Ids::Column(..)));
    let narrow = buffers
        && ids
            .iter()
            .all(|l| matches!(l, Ids::Column(_, c) if !c.is_64()));
    let out = py
        .detach(move || -> Result<IdsOut> {
            if narrow {
                let v = ids
                    .into_iter()
                    .map(Ids::into_u32)
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&[u32]> = v.iter().map(|l| l.as_slice()).collect();
                Ok(IdsOut::U32(match op {
                    SetOp::Intersect => merge::intersect_par(&refs)?,
                    SetOp::Union => merge::union_par(&refs)?,
                }))
            } else {
                let v = ids
                    .into_iter()
                    .map(Ids::into_u64)
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&[u64]> = v.iter().map(|l| l.as_slice()).collect();
                Ok(IdsOut::U64(match op {
                    SetOp::Intersect => merge::intersect_par(&refs)?,
                    SetOp::Union => merge::union_par(&refs)?,
                }))
            }
        })
        .or_raise(py)?;
    match (out, buffers) {
        (IdsOut::U32(v), true) => filled_array(py, "I", v.len(), |o| o.copy_from_slice(&v)),
        (IdsOut::U64(v), true) => filled_array(py, "Q", v.len(), |o| o.copy_from_slice(&v)),
        (IdsOut::U32(v), false) => Ok(PyList::new(py, v)?.into_any()),
        (IdsOut::U64(v), false) => Ok(PyList::new(py, v)?.into_any()),
    }
}

/// The ids present in every list, ascending. An `array.array` ('I' when
/// every list is a 32-bit buffer, else 'Q') when every list is a buffer, a
/// list of ints otherwise. The GIL is released while it runs.
#[pyfunction]
pub(crate) fn intersect<'py>(lists: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    postings(lists, SetOp::Intersect)
}

/// The ids present in any list, ascending, each once; result types as for
/// `intersect`.
#[pyfunction]
pub(crate) fn union<'py>(lists: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    postings(lists, SetOp::Union)
}

/// A buffer item a score is read from (rounded to core's f32).
trait ScoreItem: Element {
    fn score(self) -> f32;
}

impl ScoreItem for f32 {
    fn score(self) -> f32 {
        self
    }
}

impl ScoreItem for f64 {
    fn score(self) -> f32 {
        self as f32
    }
}

/// A buffer item a doc id is read from.
trait IdItem: Element {
    /// Whether the type can hold negative values (checked before use).
    const SIGNED: bool;
    fn wide(self) -> i128;
}

impl IdItem for u32 {
    const SIGNED: bool = false;
    fn wide(self) -> i128 {
        self.into()
    }
}

impl IdItem for u64 {
    const SIGNED: bool = false;
    fn wide(self) -> i128 {
        self.into()
    }
}

impl IdItem for i32 {
    const SIGNED: bool = true;
    fn wide(self) -> i128 {
        self.into()
    }
}

impl IdItem for i64 {
    const SIGNED: bool = true;
    fn wide(self) -> i128 {
        self.into()
    }
}

/// The first `n` hits of shard `shard` from a score and a doc buffer;
/// `Err((position, value))` for a negative doc id.
///
/// # Safety
///
/// `scores` and `docs` point at `n` or more items (not necessarily aligned)
/// that stay alive for the call.
unsafe fn hits_from<S: ScoreItem, D: IdItem>(
    scores: *const S,
    docs: *const D,
    n: usize,
    shard: u32,
) -> std::result::Result<Vec<Hit>, (usize, i128)> {
    // SAFETY: `i < n`, within both buffers (the caller's contract);
    // unaligned reads through raw pointers, no reference is made.
    let doc = |i: usize| unsafe { docs.add(i).read_unaligned() }.wide();
    if D::SIGNED {
        // A separate pass keeps the conversion below branch-free.
        if let Some(i) = (0..n).find(|&i| doc(i) < 0) {
            return Err((i, doc(i)));
        }
    }
    Ok((0..n)
        .map(|i| {
            // SAFETY: as for `doc` above.
            let s = unsafe { scores.add(i).read_unaligned() };
            Hit::new(s.score(), shard, doc(i) as u64)
        })
        .collect())
}

/// [`hits_from`] for a score buffer of `S` and the doc buffer `docs`.
///
/// # Safety
///
/// As for [`hits_from`]; `docs` holds `n` or more items of `elem`.
unsafe fn hits_from_docs<S: ScoreItem>(
    scores: *const S,
    docs: &PyUntypedBuffer,
    elem: Elem,
    n: usize,
    shard: u32,
) -> std::result::Result<Vec<Hit>, (usize, i128)> {
    let d = docs.buf_ptr().cast_const();
    // SAFETY: forwarded from the caller; `elem` says what `d` holds.
    unsafe {
        match elem {
            Elem::U32 => hits_from(scores, d.cast::<u32>(), n, shard),
            Elem::U64 => hits_from(scores, d.cast::<u64>(), n, shard),
            Elem::I32 => hits_from(scores, d.cast::<i32>(), n, shard),
            Elem::I64 => hits_from(scores, d.cast::<i64>(), n, shard),
            Elem::F32 | Elem::F64 => unreachable!("INTS accepts integers only"),
        }
    }
}

/// The first `limit` hits of shard `shard` given as `(scores, docs)` buffers.
fn hits_from_buffers(
    what: &str,
    shard: u32,
    scores: &Bound<'_, PyAny>,
    docs: &Bound<'_, PyAny>,
    limit: usize,
) -> PyResult<Vec<Hit>> {
    let py = scores.py();
    let (sbuf, selem) = open_buffer(&format!("{what} scores"), scores, FLOATS, SCORE_FORMATS)?;
    if !is_buffer(docs) {
        return Err(PyTypeError::new_err(format!(
            "{what}: scores are a buffer, so docs must be an integer buffer too, not {}",
            type_name(docs)
        )));
    }
    let (dbuf, delem) = open_buffer(&format!("{what} docs"), docs, INTS, ID_FORMATS)?;
    let (sn, dn) = (sbuf.item_count(), dbuf.item_count());
    if sn != dn {
        return Err(crate::errors::to_py(
            py,
            Error::invalid(format!(
                "{what}: {sn} scores but {dn} docs (they must have equal lengths)"
            )),
        ));
    }
    let n = sn.min(limit);
    let s = sbuf.buf_ptr().cast_const();
    // SAFETY: both views are held (with the GIL) for the call, are
    // C-contiguous and hold `sn == dn >= n` items of the elements
    // `open_buffer` found. Reading with the GIL held is what CPython's own
    // copies do.
    let hits = unsafe {
        match selem {
            Elem::F32 => hits_from_docs(s.cast::<f32>(), &dbuf, delem, n, shard),
            Elem::F64 => hits_from_docs(s.cast::<f64>(), &dbuf, delem, n, shard),
            _ => unreachable!("FLOATS accepts floats only"),
        }
    };
    sbuf.release(py);
    dbuf.release(py);
    hits.map_err(|(p, v)| {
        crate::errors::to_py(
            py,
            Error::invalid(format!(
                "{what} docs: id {v} at position {p} is negative (ids are unsigned)"
            )),
        )
    })
}

/// Items 0 and 1 of a 2-tuple or 2-list, else `None`.
fn two<'py>(obj: &Bound<'py, PyAny>) -> Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let Ok(t) = obj.cast::<PyTuple>() {
        if t.len() == 2 {
            return Some((t.get_item(0).ok()?, t.get_item(1).ok()?));
        }
    } else if let Ok(l) = obj.cast::<PyList>() {
        if l.len() == 2 {
            return Some((l.get_item(0).ok()?, l.get_item(1).ok()?));
        }
    }
    None
}

/// Reads one shard's hits: `(scores, docs)` buffers or `(score, doc)` pairs,
/// at most `limit` of them.
fn read_shard(i: usize, list: &Bound<'_, PyAny>, limit: usize) -> PyResult<Vec<Hit>> {
    let what = format!("lists[{i}]");
    let shard = u32::try_from(i).map_err(|_| {
        crate::errors::to_py(
            list.py(),
            Error::invalid(format!("at most 2**32 shards, got shard {i}")),
        )
    })?;
    if let Some((scores, docs)) = two(list).filter(|(s, _)| is_buffer(s)) {
        return hits_from_buffers(&what, shard, &scores, &docs, limit);
    }
    let iter = list.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a sequence of (score, doc) pairs or a (scores, docs) pair of buffers, not {}",
            type_name(list)
        ))
    })?;
    let mut hits = Vec::with_capacity(list.len().unwrap_or(0).min(limit));
    for (j, item) in iter.take(limit).enumerate() {
        let item = item?;
        let Some((score, doc)) = two(&item) else {
            return Err(PyTypeError::new_err(format!(
                "{what}[{j}] must be a (score, doc) pair, not {}",
                type_name(&item)
            )));
        };
        let score: f64 = score.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what}[{j}]: score must be a float, not {}",
                type_name(&score)
            ))
        })?;
        let doc = doc_id(&|| format!("{what}[{j}]"), &doc)?;
        hits.push(Hit::new(score as f32, shard, doc));
    }
    Ok(hits)
}

/// Runs the merge on Python input: every hit read, or with `trusted` only
/// each list's first `offset + size`.
fn merged(
    py: Python<'_>,
    lists: &Bound<'_, PyAny>,
    size: i64,
    offset: i64,
    trusted: bool,
) -> PyResult<Vec<Hit>> {
    if size < 0 || offset < 0 {
        return Err(crate::errors::to_py(
            py,
            Error::invalid(format!(
                "size and offset must be non-negative, got size {size}, offset {offset}"
            )),
        ));
    }
    // Beyond usize (32-bit platforms) a page is "everything".
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit = if trusted {
        offset.saturating_add(size)
    } else {
        usize::MAX
    };
    let shards = outer("lists", lists)?
        .iter()
        .enumerate()
        .map(|(i, l)| read_shard(i, l, limit))
        .collect::<PyResult<Vec<_>>>()?;
    py.detach(move || -> Result<Vec<Hit>> {
        let refs: Vec<&[Hit]> = shards.iter().map(|l| l.as_slice()).collect();
        if trusted {
            merge::top_k_trusted(&refs, offset, size)
        } else {
            merge::top_k_par(&refs, offset, size)
        }
    })
    .or_raise(py)
}

/// The hits at ranks `offset .. offset + size` of the merged lists, as
/// `(score, shard, doc)` tuples.
#[pyfunction]
#[pyo3(signature = (lists, size, offset = 0, *, trusted = false))]
pub(crate) fn top_k<'py>(
    py: Python<'py>,
    lists: &Bound<'py, PyAny>,
    size: i64,
    offset: i64,
    trusted: bool,
) -> PyResult<Bound<'py, PyList>> {
    let hits = merged(py, lists, size, offset, trusted)?;
    PyList::new(
        py,
        hits.iter().map(|h| (f64::from(h.score), h.shard, h.doc)),
    )
}

/// As `top_k`, but as three `array.array`s: scores ('f'), shards ('I'),
/// docs ('Q').
#[pyfunction]
#[pyo3(signature = (lists, size, offset = 0, *, trusted = false))]
pub(crate) fn top_k_arrays<'py>(
    py: Python<'py>,
    lists: &Bound<'py, PyAny>,
    size: i64,
    offset: i64,
    trusted: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let hits = merged(py, lists, size, offset, trusted)?;
    let n = hits.len();
    let column = |o: &mut [f32]| o.iter_mut().zip(&hits).for_each(|(o, h)| *o = h.score);
    let scores = filled_array(py, "f", n, column)?;
    let column = |o: &mut [u32]| o.iter_mut().zip(&hits).for_each(|(o, h)| *o = h.shard);
    let shards = filled_array(py, "I", n, column)?;
    let column = |o: &mut [u64]| o.iter_mut().zip(&hits).for_each(|(o, h)| *o = h.doc);
    let docs = filled_array(py, "Q", n, column)?;
    PyTuple::new(py, [scores, shards, docs])
}

/// Adds the merge functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(top_k, m)?)?;
    m.add_function(wrap_pyfunction!(top_k_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(intersect, m)?)?;
    m.add_function(wrap_pyfunction!(union, m)?)?;
    Ok(())
}
