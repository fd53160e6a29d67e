//! `shardkit_scoped_lock`: a lock held for one scope under a lease of its
//! own (core's `ScopedLock`): acquire grants a lease and takes the lock,
//! release unlocks and revokes, so nothing of the hold outlives the scope.

use super::{
    block_on, drop_in_runtime, session_options, shardkit_cancel, shardkit_coordinator,
    shardkit_fencing_token, wait_for_token, wait_options,
};
use crate::args::{out_ptr, text, write};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;

/// A lock on one name, taken under a fresh lease at each acquire and given
/// back with the lease at each release. Held at most once at a time; may be
/// acquired again after a release. Usable from any thread.
pub struct shardkit_scoped_lock {
    _private: [u8; 0],
}

/// A scoped lock on `name` (UTF-8, the rules of lock names) in `coord`'s
/// store, whose holds live under leases of `ttl_secs` seconds (the loss
/// margin and request bound at their defaults, as for
/// `shardkit_session_new`). Sends nothing yet.
///
/// Errors: `INVALID_ARGUMENT` (a bad name, ttl 0 or too large),
/// `INVALID_UTF8`, `NULL_POINTER`.
///
/// # Safety
/// `coord` a live handle; `name` NULL or `name_len` readable bytes; `out`
/// a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_scoped_lock_new(
    coord: *const shardkit_coordinator,
    name: *const u8,
    name_len: usize,
    ttl_secs: u64,
    out: *mut *mut shardkit_scoped_lock,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (coord, name) = unsafe { (borrow(coord, "coord")?, text(name, name_len, "name")?) };
        let out = out_ptr(out, "out")?;
        let lock = coord.scoped_lock(name, session_options(ttl_secs, 0, 0))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(lock)) };
        Ok(())
    })
}

/// Grants a lease, then waits until the lock is held under it, and writes
/// its fencing token. Blocking. `timeout_ms` < 0 waits without a timeout
/// (0: only if free at once); `cancel` (may be NULL) fired from another
/// thread ends the wait with `CANCELLED`. On every error the lease is
/// revoked and the handle is idle again.
///
/// Errors: `TIMEOUT`, `CANCELLED`, `INVALID_ARGUMENT` (already held through
/// this handle, or called from a runtime thread), store errors
/// (`UNAVAILABLE`, `IO`, ...), `NULL_POINTER`.
///
/// # Safety
/// `lock` a live handle; `cancel` NULL or a live handle; `out_token`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_scoped_lock_acquire(
    lock: *const shardkit_scoped_lock,
    timeout_ms: i64,
    cancel: *const shardkit_cancel,
    out_token: *mut shardkit_fencing_token,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (lock, opts) = unsafe { (borrow(lock, "lock")?, wait_options(timeout_ms, cancel)?) };
        wait_for_token(out_token, lock.acquire(&opts))
    })
}

/// Unlocks and revokes the lease; both are attempted and the first error
/// is returned: `FENCED` when the hold had already ended (its lease expired
/// or was revoked: someone else may hold it now), `INVALID_ARGUMENT` when
/// not held through this handle. Blocking.
///
/// # Safety
/// `lock` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_scoped_lock_release(
    lock: *const shardkit_scoped_lock,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        block_on(unsafe { borrow(lock, "lock")? }.release())
    })
}

/// Whether the lock is held through this handle (`*out_held`) and, if so,
/// its token (`*out_token`, else `{0, 0}`). Not blocking.
///
/// # Safety
/// `lock` a live handle; the outs writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_scoped_lock_token(
    lock: *const shardkit_scoped_lock,
    out_held: *mut bool,
    out_token: *mut shardkit_fencing_token,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let lock = unsafe { borrow(lock, "lock")? };
        let (held, out) = (
            out_ptr(out_held, "out_held")?,
            out_ptr(out_token, "out_token")?,
        );
        let token = lock.token();
        // SAFETY: checked by out_ptr above.
        unsafe {
            write(held, token.is_some());
            write(out, token.as_ref().map(Into::into).unwrap_or_default());
        }
        Ok(())
    })
}

/// Frees the handle; NULL is a no-op. A hold still in place is given up:
/// its lease is revoked in the background, which frees the lock at once.
///
/// # Safety
/// `lock` must be NULL or a live handle, not used again afterwards (no call
/// on it may still be running).
#[no_mangle]
pub unsafe extern "C" fn shardkit_scoped_lock_free(lock: *mut shardkit_scoped_lock) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        drop_in_runtime(unsafe { take(lock, "lock") });
    })
}
