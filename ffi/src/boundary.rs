//! What every export shares: the status codes, the panic boundary, the
//! per-thread last error, and the checked conversions of C arguments.

use shardkit::{Error, ErrorKind, Result};
use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::fmt::Display;
use std::sync::OnceLock;

/// The result of every fallible call. `SHARDKIT_STATUS_OK` is 0; the other
/// codes are shardkit's stable error-kind codes and are never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum shardkit_status {
    /// Success; out-params were written.
    Ok = 0,
    /// A value is outside what the operation accepts (weight, table size, name, length).
    InvalidArgument = 1,
    /// A node set with no nodes where at least one is needed.
    EmptyNodeSet = 2,
    /// Two nodes share a name.
    DuplicateNode = 3,
    /// A named node, slot or pool does not exist.
    NotFound = 4,
    /// A configuration document could not be parsed or is inconsistent.
    Config = 5,
    /// Reading or writing a file or socket failed.
    Io = 6,
    /// Text was required and the bytes were not valid UTF-8.
    InvalidUtf8 = 7,
    /// A NULL pointer was passed where an object or a non-empty buffer was required.
    NullPointer = 8,
    /// An output buffer was too small for the result.
    BufferTooSmall = 9,
    /// A panic was caught at the boundary (a bug in shardkit: please report it).
    Panic = 10,
    /// No node can serve: every node is marked down, or no etcd endpoint answers.
    Unavailable = 11,
    /// An operation did not finish within its timeout (an acquire, a campaign).
    Timeout = 12,
    /// The session's lease is gone (expired, revoked, or its local deadline
    /// passed, or the session was closed): nothing held under it may be used.
    SessionLost = 13,
    /// The caller fired the `shardkit_cancel` the call was waiting with.
    Cancelled = 14,
    /// A fencing token is no longer current (the lock or leadership passed
    /// on, or an older token reached a fence gate): the write was rejected.
    Fenced = 15,
    /// A watch asked for history the store has already compacted away.
    Compacted = 16,
    /// A remote peer (a scatter leaf) answered with a non-2xx status or a
    /// body that is not the JSON the protocol asks for.
    BadResponse = 17,
}

impl shardkit_status {
    /// The status for a core error kind. Core's kinds are `non_exhaustive`;
    /// the unit tests check every kind in `ErrorKind::ALL` maps to its code, so
    /// the fallback arm is only reachable by a kind added without a variant.
    pub(crate) fn from_kind(kind: ErrorKind) -> shardkit_status {
        match kind {
            ErrorKind::InvalidArgument => shardkit_status::InvalidArgument,
            ErrorKind::EmptyNodeSet => shardkit_status::EmptyNodeSet,
            ErrorKind::DuplicateNode => shardkit_status::DuplicateNode,
            ErrorKind::NotFound => shardkit_status::NotFound,
            ErrorKind::Config => shardkit_status::Config,
            ErrorKind::Io => shardkit_status::Io,
            ErrorKind::InvalidUtf8 => shardkit_status::InvalidUtf8,
            ErrorKind::NullPointer => shardkit_status::NullPointer,
            ErrorKind::BufferTooSmall => shardkit_status::BufferTooSmall,
            ErrorKind::Panic => shardkit_status::Panic,
            ErrorKind::Unavailable => shardkit_status::Unavailable,
            ErrorKind::Timeout => shardkit_status::Timeout,
            ErrorKind::SessionLost => shardkit_status::SessionLost,
            ErrorKind::Cancelled => shardkit_status::Cancelled,
            ErrorKind::Fenced => shardkit_status::Fenced,
            ErrorKind::Compacted => shardkit_status::Compacted,
            ErrorKind::BadResponse => shardkit_status::BadResponse,
            _ => shardkit_status::InvalidArgument,
        }
    }
}

/// A status code as C passes it in. Rust must not receive an out-of-range
/// value as `shardkit_status` (that would be undefined behaviour), so inputs
/// take the raw integer; cbindgen renames it back to `shardkit_status` in the
/// header, where both are `uint32_t`.
pub type StatusCode = u32;

thread_local! {
    /// The detail of the last failed call on this thread ("" when none).
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `e` for [`shardkit_last_error`] and returns its status. Cold: the
/// success path never comes here.
#[cold]
#[inline(never)]
pub(crate) fn fail(e: Error) -> shardkit_status {
    let status = shardkit_status::from_kind(e.kind());
    set_last_error(e.to_string());
    status
}

fn set_last_error(text: String) {
    // `try_with` because a call during thread teardown may find the slot
    // already destroyed; losing the detail beats aborting the host.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            *s = text;
        }
    });
}

/// Records a caught panic for [`shardkit_last_error`] and returns `PANIC`.
#[cold]
#[inline(never)]
pub(crate) fn panicked(payload: Box<dyn Any + Send>) -> shardkit_status {
    let what = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "a non-string payload"
    };
    set_last_error(format!("{}: {what}", ErrorKind::Panic.description()));
    // Dropping a payload can itself panic (its Drop is foreign code to us);
    // leak it rather than risk unwinding out of the boundary.
    std::mem::forget(payload);
    shardkit_status::Panic
}

/// Folds a caught result into a status; inlined so the success path is one
/// compare.
#[inline(always)]
pub(crate) fn status_of(r: std::thread::Result<Result<()>>) -> shardkit_status {
    match r {
        Ok(Ok(())) => shardkit_status::Ok,
        Ok(Err(e)) => fail(e),
        Err(p) => panicked(p),
    }
}

/// The one panic boundary around every export.
///
/// - `ffi_boundary!({ ... })`: the block evaluates to `shardkit::Result<()>`
///   and the export returns the matching [`shardkit_status`];
/// - `ffi_boundary!(or FALLBACK => { ... })`: for exports that return a value
///   instead of a status; a panic records the detail and returns `FALLBACK`.
///
/// `AssertUnwindSafe` is sound here because nothing a body touches can be
/// seen half-updated after a panic: sharders are immutable snapshots, new
/// ones are only published through out-params after the body succeeded, and
/// the caller's buffers carry no invariants.
macro_rules! ffi_boundary {
    (or $fallback:expr => $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(p) => {
                $crate::boundary::panicked(p);
                $fallback
            }
        }
    };
    ($body:block) => {
        $crate::boundary::status_of(::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> ::shardkit::Result<()> { $body },
        )))
    };
}

fn null(what: impl Display) -> Error {
    Error::new(ErrorKind::NullPointer, format!("{what} is NULL"))
}

/// Checks an out-param and returns it for a later `write`.
#[inline(always)]
pub(crate) fn out_ptr<T>(ptr: *mut T, what: impl Display) -> Result<*mut T> {
    if ptr.is_null() {
        return Err(null(what));
    }
    if !ptr.is_aligned() {
        return Err(misaligned(what, ptr as usize, std::mem::align_of::<T>()));
    }
    Ok(ptr)
}

#[cold]
fn misaligned(what: impl Display, addr: usize, align: usize) -> Error {
    Error::invalid(format!(
        "{what} ({addr:#x}) is not aligned to {align} bytes"
    ))
}

#[cold]
fn null_with_len(what: impl Display, len: usize) -> Error {
    Error::new(
        ErrorKind::NullPointer,
        format!("{what} is NULL but its length is {len}"),
    )
}

#[cold]
fn too_long(what: impl Display, len: usize) -> Error {
    Error::invalid(format!(
        "{what} length {len} exceeds the largest object size (isize::MAX bytes)"
    ))
}

/// The checks shared by every borrowed C array: `Ok(false)` for NULL with
/// length 0 (an empty slice), an error for NULL with a length, a size past
/// `isize::MAX` or a misaligned pointer, else `Ok(true)`.
#[inline(always)]
fn buffer_ok<T>(ptr: *const T, len: usize, what: &impl Display) -> Result<bool> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(false)
        } else {
            Err(null_with_len(what, len))
        };
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(too_long(what, len));
    }
    if !ptr.is_aligned() {
        return Err(misaligned(what, ptr as usize, std::mem::align_of::<T>()));
    }
    Ok(true)
}

/// Borrows a C array of `len` `T`s; NULL with `len == 0` is empty.
///
/// # Safety
/// When `ptr` is not NULL it must point to `len` initialised `T`s that stay
/// valid and unmodified for `'a`.
#[inline(always)]
pub(crate) unsafe fn slice<'a, T>(
    ptr: *const T,
    len: usize,
    what: impl Display,
) -> Result<&'a [T]> {
    if !buffer_ok(ptr, len, &what)? {
        return Ok(&[]);
    }
    // SAFETY: non-NULL, aligned, total size checked against isize::MAX, and
    // the caller guarantees `len` valid elements for 'a.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows a C output array of `len` `T`s; NULL with `len == 0` is empty.
///
/// # Safety
/// When `ptr` is not NULL it must point to `len` writable `T`s, not aliased
/// by anything else for `'a`. The elements are only written, never read, so
/// they need not be initialised for plain integers.
#[inline(always)]
pub(crate) unsafe fn slice_mut<'a, T>(
    ptr: *mut T,
    len: usize,
    what: impl Display,
) -> Result<&'a mut [T]> {
    if !buffer_ok(ptr, len, &what)? {
        return Ok(&mut []);
    }
    // SAFETY: as in `slice`, plus the caller guarantees exclusive access.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Borrows C bytes that must be UTF-8 text (names, algorithm and hash names,
/// documents); the error says which argument and where the bad byte is.
///
/// # Safety
/// As for [`slice`].
pub(crate) unsafe fn text<'a>(ptr: *const u8, len: usize, what: impl Display) -> Result<&'a str> {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { slice(ptr, len, &what)? };
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidUtf8,
            format!(
                "{what} is not valid UTF-8: byte {} (0x{:02x}) of {} starts an invalid sequence",
                e.valid_up_to(),
                bytes[e.valid_up_to()],
                bytes.len()
            ),
        )
    })
}

/// Like [`text`], but an empty argument means "not given".
///
/// # Safety
/// As for [`slice`].
pub(crate) unsafe fn opt_text<'a>(
    ptr: *const u8,
    len: usize,
    what: impl Display,
) -> Result<Option<&'a str>> {
    // SAFETY: forwarded from the caller.
    let t = unsafe { text(ptr, len, what)? };
    Ok((!t.is_empty()).then_some(t))
}

/// Writes `v` through a checked out-param.
///
/// # Safety
/// `ptr` came from [`out_ptr`] and points to writable memory for a `T`.
#[inline(always)]
pub(crate) unsafe fn write<T>(ptr: *mut T, v: T) {
    // SAFETY: non-NULL and aligned (checked by `out_ptr`); writable per the
    // caller. `write` does not drop the old (possibly uninitialised) value.
    unsafe { ptr.write(v) }
}

/// The static text of a status code: "ok" for `SHARDKIT_STATUS_OK`, the kind's
/// description for the others, and "unknown status code" for any other value.
/// The pointer stays valid for the life of the process; never free it.
#[no_mangle]
pub extern "C" fn shardkit_status_message(code: StatusCode) -> *const c_char {
    static UNKNOWN: &std::ffi::CStr = c"unknown status code";
    static TABLE: OnceLock<Vec<(u32, CString)>> = OnceLock::new();
    ffi_boundary!(or UNKNOWN.as_ptr() => {
        if code == shardkit_status::Ok as u32 {
            return c"ok".as_ptr();
        }
        // Built from core's descriptions so the text never drifts from them.
        let table = TABLE.get_or_init(|| {
            ErrorKind::ALL
                .iter()
                .map(|k| {
                    let text = CString::new(k.description()).expect("descriptions have no NUL");
                    (k.code(), text)
                })
                .collect()
        });
        table
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(UNKNOWN.as_ptr(), |(_, t)| t.as_ptr())
    })
}

/// Copies the detail of the last failed call on this thread (its kind and a
/// message naming the bad value) into `buf` as NUL-terminated UTF-8.
///
/// Successful calls leave the detail unchanged, and this function never
/// changes it either. With no failure yet on this thread the text is "".
///
/// - `*out_len` (when `out_len` is not NULL) receives the full length of the
///   text, without the NUL.
/// - If `len` is at least that length + 1 the whole text is copied and the
///   result is `SHARDKIT_STATUS_OK`.
/// - Otherwise, as a documented exception to "out-params only on success",
///   the longest prefix that fits (cut on a character boundary) is copied and
///   NUL-terminated when `len > 0`, `*out_len` still receives the full length,
///   and the result is `SHARDKIT_STATUS_BUFFER_TOO_SMALL`. So `buf = NULL,
///   len = 0` asks for the length.
/// - `buf == NULL` with `len > 0` returns `SHARDKIT_STATUS_NULL_POINTER`.
///
/// # Safety
/// `buf` must be NULL or point to `len` writable bytes; `out_len` must be NULL
/// or point to a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_last_error(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!(or shardkit_status::Panic => {
        if buf.is_null() && len > 0 {
            return shardkit_status::NullPointer;
        }
        if !out_len.is_null() && !out_len.is_aligned() {
            return shardkit_status::InvalidArgument;
        }
        LAST_ERROR
            .try_with(|slot| {
                let text = slot.borrow();
                let full = text.len();
                let fits = len > full;
                if len > 0 {
                    let mut n = full.min(len - 1);
                    while !text.is_char_boundary(n) {
                        n -= 1;
                    }
                    // SAFETY: `buf` is non-NULL (len > 0 and the check above)
                    // with `len` writable bytes; we write n + 1 <= len bytes,
                    // from a String that cannot overlap the caller's buffer.
                    unsafe {
                        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
                        buf.add(n).write(0);
                    }
                }
                if !out_len.is_null() {
                    // SAFETY: non-NULL and aligned (checked above), writable per
                    // the caller.
                    unsafe { out_len.write(full) };
                }
                if fits {
                    shardkit_status::Ok
                } else {
                    shardkit_status::BufferTooSmall
                }
            })
            .unwrap_or(shardkit_status::Panic)
    })
}

/// The library version, e.g. "0.1.0": static, NUL-terminated, never freed.
/// Matches `SHARDKIT_VERSION_MAJOR.MINOR.PATCH` of the header it was built with.
#[no_mangle]
pub extern "C" fn shardkit_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    ffi_boundary!(or VERSION.as_ptr().cast() => { VERSION.as_ptr().cast() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lease-era codes are ABI: C, Go and Python hard-code them.
    #[test]
    fn lease_status_codes_are_pinned() {
        let pinned = [
            (ErrorKind::Timeout, shardkit_status::Timeout, 12),
            (ErrorKind::SessionLost, shardkit_status::SessionLost, 13),
            (ErrorKind::Cancelled, shardkit_status::Cancelled, 14),
            (ErrorKind::Fenced, shardkit_status::Fenced, 15),
            (ErrorKind::Compacted, shardkit_status::Compacted, 16),
            (ErrorKind::BadResponse, shardkit_status::BadResponse, 17),
        ];
        for (kind, status, code) in pinned {
            assert_eq!(shardkit_status::from_kind(kind), status, "{kind:?}");
            assert_eq!(status as u32, code, "{kind:?}");
            assert_eq!(kind.code(), code, "{kind:?}");
        }
    }
}
