//! The panic boundary every export runs inside, and the per-thread last
//! error that failed calls leave for `shardkit_last_error`.

use crate::status::shardkit_status;
use shardkit::{Error, ErrorKind, Result};
use std::any::Any;
use std::cell::RefCell;
use std::ffi::c_char;

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
