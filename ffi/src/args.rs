//! The checked conversions of C arguments, one of each: out-params, borrowed
//! arrays, text given as (pointer, length), text given NUL-terminated, the
//! NULL-argument error, and the copy-out of the ABI's buffer convention.

use shardkit::{Error, ErrorKind, Result};
use std::ffi::{c_char, CStr};
use std::fmt::Display;

/// The one error for a NULL argument that must not be NULL.
#[cold]
pub(crate) fn null(what: impl Display) -> Error {
    Error::new(ErrorKind::NullPointer, format!("{what} is NULL"))
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

/// Checks an out-param and returns it for a later [`write`].
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

/// Bytes that must be UTF-8 text; the one wording of the error, naming the
/// argument and where the bad byte is.
fn utf8(bytes: &[u8], what: impl Display) -> Result<&str> {
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

/// Borrows text given as (pointer, length): names, algorithm and hash
/// names, documents. NULL with length 0 is "".
///
/// # Safety
/// As for [`slice`].
pub(crate) unsafe fn text<'a>(ptr: *const u8, len: usize, what: impl Display) -> Result<&'a str> {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { slice(ptr, len, &what)? };
    utf8(bytes, what)
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

/// Borrows NUL-terminated text (the few arguments the header documents as
/// NUL-terminated); NULL is an error.
///
/// # Safety
/// `ptr` NULL or a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: impl Display) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL and NUL-terminated, per the caller.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    utf8(bytes, what)
}

/// The ABI's buffer convention, in one place: `*out_len` receives the
/// result's length either way; the elements (converted) are copied into
/// `dst` only when they all fit, else the result is `BUFFER_TOO_SMALL`
/// naming `what`, the length needed and the capacity argument `cap_arg`,
/// and nothing is copied.
///
/// # Safety
/// `out_len` came from [`out_ptr`].
pub(crate) unsafe fn copy_out<R: Copy, C>(
    src: &[R],
    convert: impl Fn(R) -> C,
    dst: &mut [C],
    out_len: *mut usize,
    what: impl Display,
    cap_arg: &str,
) -> Result<()> {
    // SAFETY: checked by out_ptr (caller); written in both outcomes, as
    // the header's conventions say.
    unsafe { write(out_len, src.len()) };
    if src.len() > dst.len() {
        // Text needs bytes; a list has elements.
        let size = if std::mem::size_of::<C>() == 1 {
            format!("needs {} bytes", src.len())
        } else {
            format!("has {} elements", src.len())
        };
        return Err(Error::new(
            ErrorKind::BufferTooSmall,
            format!("{what} {size}, {cap_arg} is {}", dst.len()),
        ));
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = convert(s);
    }
    Ok(())
}

/// [`copy_out`] for bytes into `buf` of `buf_len`.
///
/// # Safety
/// As for [`copy_out`].
pub(crate) unsafe fn copy_bytes(
    src: &[u8],
    buf: &mut [u8],
    out_len: *mut usize,
    what: impl Display,
) -> Result<()> {
    // SAFETY: forwarded from the caller.
    unsafe { copy_out(src, |b| b, buf, out_len, what, "buf_len") }
}
