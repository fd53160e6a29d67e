//! `shardkit_cancel`: a cancellation signal for a waiting call.

use crate::args::{out_ptr, write};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;
use shardkit::lease::Cancel;

/// A cancellation signal for a waiting acquire or campaign. Fire it with
/// `shardkit_cancel_cancel` from any thread (a signal handler excepted),
/// including from a callback; firing is permanent. Free with
/// `shardkit_cancel_free` once no call is waiting with it.
pub struct shardkit_cancel {
    _private: [u8; 0],
}

/// A new, unfired cancellation signal in `*out`.
///
/// # Safety
/// `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_cancel_new(out: *mut *mut shardkit_cancel) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(Cancel::new())) };
        Ok(())
    })
}

/// Fires the signal: every acquire or campaign waiting with it returns
/// `SHARDKIT_STATUS_CANCELLED` at once, and later ones fail before trying.
/// Callable from any thread, any number of times, including from inside a
/// shardkit callback (it never blocks).
///
/// # Safety
/// `cancel` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_cancel_cancel(cancel: *const shardkit_cancel) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe { borrow(cancel, "cancel")? }.cancel();
        Ok(())
    })
}

/// Whether the signal has fired (false for NULL).
///
/// # Safety
/// `cancel` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_cancel_is_cancelled(cancel: *const shardkit_cancel) -> bool {
    ffi_boundary!(or false => {
        // SAFETY: per the caller's contract.
        unsafe { borrow(cancel, "cancel") }.is_ok_and(Cancel::is_cancelled)
    })
}

/// Frees the signal; NULL is a no-op. No call may still be waiting with it.
///
/// # Safety
/// `cancel` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_cancel_free(cancel: *mut shardkit_cancel) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        drop(unsafe { take(cancel, "cancel") });
    })
}
