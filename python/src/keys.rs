//! Python keys to Rust bytes. Keys are `bytes | str` (str as UTF-8), plus
//! `bytearray` and `memoryview`; anything else is a `TypeError` naming the type.
//! `bytes` and `str` are read in place, without a copy.

use crate::errors::raise;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};
use shardkit::ErrorKind;
use std::ptr::NonNull;

/// The type name of `obj`, for error messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

fn wrong_type(what: &str, obj: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "{what} must be bytes or str (or bytearray, memoryview), not {}",
        type_name(obj)
    ))
}

/// A str that cannot be UTF-8 (lone surrogates) is InvalidUtf8Error naming it.
fn not_utf8(what: &str, s: &Bound<'_, PyString>, cause: PyErr) -> PyErr {
    let py = s.py();
    let shown = s
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into());
    raise(
        py,
        ErrorKind::InvalidUtf8,
        format!(
            "{what} {shown} cannot be encoded as UTF-8: {}",
            cause.value(py)
        ),
    )
}

/// The UTF-8 bytes of a str, in place: CPython keeps a UTF-8 copy inside
/// the str object (for ASCII strings, the text itself), so no allocation per
/// key (`PyUnicode_AsUTF8AndSize`, in the stable ABI since 3.10).
fn str_utf8<'a>(what: &str, s: &'a Bound<'_, PyString>) -> PyResult<&'a [u8]> {
    s.to_str()
        .map(str::as_bytes)
        .map_err(|e| not_utf8(what, s, e))
}

/// A key's bytes kept alive for a batch: a strong reference to the Python
/// object that owns them (or a copy), so the batch can run with the GIL
/// released even if another thread mutates the caller's list meanwhile.
pub(crate) struct HeldKey {
    _owner: Owner,
    data: NonNull<[u8]>,
}

// Never read: the owner only keeps `data` alive.
#[allow(dead_code)]
enum Owner {
    /// `bytes` or `str`: immutable objects whose buffer `data` points into.
    Object(Py<PyAny>),
    /// A copy (bytearray, memoryview); a boxed slice's heap data never moves.
    Copy(Box<[u8]>),
}

// SAFETY: `data` points into an immutable buffer (a bytes or str object's
// data, or our own boxed copy) kept alive by `_owner` for as long as the
// HeldKey exists; reading immutable bytes from any thread is sound, and `Py`
// itself is Send + Sync.
unsafe impl Send for HeldKey {}
// SAFETY: as for Send: shared access only ever reads the immutable bytes.
unsafe impl Sync for HeldKey {}

impl AsRef<[u8]> for HeldKey {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see the Send impl: the buffer is alive and immutable.
        unsafe { self.data.as_ref() }
    }
}

impl HeldKey {
    fn object(obj: Bound<'_, PyAny>, data: &[u8]) -> HeldKey {
        HeldKey {
            data: NonNull::from(data),
            _owner: Owner::Object(obj.unbind()),
        }
    }

    fn copy(data: Box<[u8]>) -> HeldKey {
        HeldKey {
            data: NonNull::from(&*data),
            _owner: Owner::Copy(data),
        }
    }

    fn new(what: &dyn Fn() -> String, key: Bound<'_, PyAny>) -> PyResult<HeldKey> {
        if let Ok(b) = key.cast::<PyBytes>() {
            let data: *const [u8] = b.as_bytes();
            // SAFETY: `data` is the buffer of the bytes object `key`, which the
            // HeldKey owns from here on (bytes are immutable).
            return Ok(HeldKey::object(key, unsafe { &*data }));
        }
        if let Ok(s) = key.cast::<PyString>() {
            let data: *const [u8] = str_utf8(&what(), s)?;
            // SAFETY: `data` is the UTF-8 buffer cached inside the str
            // `key`, which the HeldKey owns from here on.
            return Ok(HeldKey::object(key, unsafe { &*data }));
        }
        Ok(HeldKey::copy(copied_key(&what(), &key)?))
    }
}

/// Runs `f` on the bytes of one key. The GIL stays held, so borrowed buffers
/// cannot change under `f`.
#[inline]
pub(crate) fn with_key<R>(key: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(b) = key.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(f(str_utf8("key", s)?));
    }
    Ok(f(&copied_key("key", key)?))
}

/// The rarer key types, copied.
fn copied_key(what: &str, key: &Bound<'_, PyAny>) -> PyResult<Box<[u8]>> {
    if let Ok(b) = key.cast::<PyByteArray>() {
        return Ok(b.to_vec().into_boxed_slice());
    }
    if key.cast::<PyMemoryView>().is_ok() {
        // tobytes() flattens non-contiguous views too.
        let b = key.call_method0("tobytes")?.cast_into::<PyBytes>()?;
        return Ok(b.as_bytes().into());
    }
    Err(wrong_type(what, key))
}

/// Holds every key of a batch (any iterable of keys), in order.
pub(crate) fn collect_keys(keys: &Bound<'_, PyAny>) -> PyResult<Vec<HeldKey>> {
    if keys.is_instance_of::<PyString>()
        || keys.is_instance_of::<PyBytes>()
        || keys.is_instance_of::<PyByteArray>()
    {
        return Err(PyTypeError::new_err(format!(
            "keys must be a sequence of keys (bytes or str), not a single {}; wrap it in a list",
            type_name(keys)
        )));
    }
    let iter = keys.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "keys must be an iterable of bytes or str, not {}",
            type_name(keys)
        ))
    })?;
    let mut out = Vec::with_capacity(keys.len().unwrap_or(0));
    for (i, key) in iter.enumerate() {
        out.push(HeldKey::new(&|| format!("keys[{i}]"), key?)?);
    }
    Ok(out)
}
