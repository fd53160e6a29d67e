//! `shardkit_lock`: one contender for a named lock under a session.

use super::{
    block_on, drop_in_runtime, shardkit_cancel, shardkit_fencing_token, shardkit_session,
    wait_for_token, wait_options,
};
use crate::args::{copy_bytes, out_ptr, slice, slice_mut, text, write};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;

/// One contender for a named lock under a session. Each handle is its own
/// waiter: two handles exclude each other even under one session.
pub struct shardkit_lock {
    _private: [u8; 0],
}

/// A contender for the lock `name` (UTF-8, 1 to 512 bytes, no control
/// characters) under `session`. Sends nothing yet. The lock keeps the
/// session's lease alive until it is freed.
///
/// # Safety
/// `session` a live handle; `name` NULL or `name_len` readable bytes; `out`
/// a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_lock_new(
    session: *const shardkit_session,
    name: *const u8,
    name_len: usize,
    out: *mut *mut shardkit_lock,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (h, name) = unsafe { (borrow(session, "session")?, text(name, name_len, "name")?) };
        let out = out_ptr(out, "out")?;
        let lock = h.session.lock(name)?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(lock)) };
        Ok(())
    })
}

/// Waits until the lock is held and writes its fencing token. Blocking.
///
/// `timeout_ms` < 0 waits without a timeout; otherwise `TIMEOUT` after that
/// long (0: only if free at once). `cancel` (may be NULL) fired from another
/// thread ends the wait with `CANCELLED`. Also `SESSION_LOST`, and
/// `INVALID_ARGUMENT` when already held through this handle or when called
/// from a runtime thread (a callback). On every error the waiter has left
/// the queue.
///
/// # Safety
/// `lock` a live handle; `cancel` NULL or a live handle; `out_token` writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_lock_acquire(
    lock: *const shardkit_lock,
    timeout_ms: i64,
    cancel: *const shardkit_cancel,
    out_token: *mut shardkit_fencing_token,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (lock, opts) = unsafe { (borrow(lock, "lock")?, wait_options(timeout_ms, cancel)?) };
        wait_for_token(out_token, lock.lock_with(&opts))
    })
}

/// Takes the lock only if it is free now. `*out_acquired` says whether it
/// was; `*out_token` gets the token, or `{0, 0}` when not acquired. Blocking.
///
/// # Safety
/// `lock` a live handle; the outs writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_lock_try_acquire(
    lock: *const shardkit_lock,
    out_acquired: *mut bool,
    out_token: *mut shardkit_fencing_token,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let lock = unsafe { borrow(lock, "lock")? };
        let (acquired, out) = (
            out_ptr(out_acquired, "out_acquired")?,
            out_ptr(out_token, "out_token")?,
        );
        let token = block_on(lock.try_lock())?;
        // SAFETY: checked by out_ptr above.
        unsafe {
            write(acquired, token.is_some());
            write(out, token.as_ref().map(Into::into).unwrap_or_default());
        }
        Ok(())
    })
}

/// Releases the lock. `FENCED` when the hold had already ended (its lease
/// expired or was revoked: someone else may hold it now), `INVALID_ARGUMENT`
/// when it is not held through this handle. Blocking.
///
/// # Safety
/// `lock` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_lock_release(lock: *const shardkit_lock) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let lock = unsafe { borrow(lock, "lock")? };
        block_on(lock.unlock())
    })
}

/// Writes `key = value` into the store only while this lock is held (the
/// store itself checks the hold in the same transaction) and writes the
/// write's revision. `FENCED` when the lock is not held through this handle
/// (never acquired, released) or its hold has ended; `SESSION_LOST`.
/// Blocking.
///
/// # Safety
/// `lock` a live handle; `key` and `value` NULL or their lengths in readable
/// bytes; `out_revision` writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_lock_put(
    lock: *const shardkit_lock,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    out_revision: *mut i64,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (lock, key, value) = unsafe {
            (
                borrow(lock, "lock")?,
                slice(key, key_len, "key")?,
                slice(value, value_len, "value")?,
            )
        };
        let out = out_ptr(out_revision, "out_revision")?;
        let rev = block_on(lock.put(key, value))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, rev) };
        Ok(())
    })
}

/// Copies the text form of the current hold's token (e.g.
/// `lock:jobs@1234/694d7a3c1e2f0a11`), not NUL-terminated, with the buffer
/// protocol of `shardkit_coordinator_describe`. `FENCED` when not held
/// through this handle (as a guarded write through it would be).
///
/// # Safety
/// `lock` a live handle; `buf` NULL or `buf_len` writable bytes; `out_len` a
/// writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_lock_token_text(
    lock: *const shardkit_lock,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let lock = unsafe { borrow(lock, "lock")? };
        let out_len = out_ptr(out_len, "out_len")?;
        // SAFETY: per the caller's contract.
        let buf = unsafe { slice_mut(buf, buf_len, "buf")? };
        let token = lock.held_token()?.to_string();
        // SAFETY: out_len checked above.
        unsafe { copy_bytes(token.as_bytes(), buf, out_len, "the token") }
    })
}

/// Frees the handle without releasing: NULL is a no-op. A hold (or a wait's
/// queue key) stays until the session is closed or its lease ends; call
/// `shardkit_lock_release` first to hand the lock on at once.
///
/// # Safety
/// `lock` must be NULL or a live handle, not used again afterwards (no call
/// on it may still be running).
#[no_mangle]
pub unsafe extern "C" fn shardkit_lock_free(lock: *mut shardkit_lock) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        drop_in_runtime(unsafe { take(lock, "lock") });
    })
}
