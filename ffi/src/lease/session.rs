//! `shardkit_session`: a lease kept alive in the background, with loss
//! callbacks.

use std::ffi::c_void;
use std::sync::Arc;

use super::{block_on, drop_in_runtime, session_options, shardkit_coordinator};
use crate::args::{null, out_ptr, write};
use crate::callback::{c_text, CallbackGate, UserData};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;
use shardkit::lease::{Session, SessionOptions};
use shardkit::{runtime, Error};
use std::ffi::c_char;

/// A lease kept alive in the background, with a local deadline that runs out
/// before the server's. Locks, elections and shard owners are made under a
/// session and end when it is lost.
pub struct shardkit_session {
    _private: [u8; 0],
}

/// Called once when a session is lost: `code` is `SHARDKIT_STATUS_SESSION_LOST`
/// and `message` (`message_len` bytes of UTF-8, also NUL-terminated) says why;
/// it is valid only during the call.
pub type shardkit_lost_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        code: shardkit_status,
        message: *const c_char,
        message_len: usize,
    ),
>;

pub(crate) struct SessionHandle {
    pub(crate) session: Session,
    /// Gates the loss callbacks registered through this handle.
    gate: Arc<CallbackGate>,
}

/// Grants a lease of `ttl_secs` seconds (1 to 9e9; etcd may require more)
/// and keeps it alive in the background. Blocking.
///
/// Errors: `INVALID_ARGUMENT` (ttl 0 or too large, or below the server's
/// minimum), `UNAVAILABLE`/`TIMEOUT`/`IO` from the store, `NULL_POINTER`.
///
/// # Safety
/// `coord` must be a live handle; `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_new(
    coord: *const shardkit_coordinator,
    ttl_secs: u64,
    out: *mut *mut shardkit_session,
) -> shardkit_status {
    // SAFETY: forwarded from the caller.
    unsafe { shardkit_session_new_with(coord, ttl_secs, 0, 0, out) }
}

/// `shardkit_session_new` with the loss margin (how long before the TTL the
/// session declares itself lost; 0: a fifth of the TTL, 200 ms to 3 s; at
/// most half the TTL) and the bound on any single request (0: 5 s).
///
/// # Safety
/// As for `shardkit_session_new`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_new_with(
    coord: *const shardkit_coordinator,
    ttl_secs: u64,
    margin_ms: u64,
    rpc_timeout_ms: u64,
    out: *mut *mut shardkit_session,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let coord = unsafe { borrow(coord, "coord")? };
        let out = out_ptr(out, "out")?;
        let opts = session_options(ttl_secs, margin_ms, rpc_timeout_ms);
        let session = block_on(coord.session(opts))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, new_session(session)) };
        Ok(())
    })
}

fn new_session(session: Session) -> *mut shardkit_session {
    into_handle(SessionHandle {
        session,
        gate: CallbackGate::new(),
    })
}

/// Takes over the live lease `lease_id` (after a restart, with the id
/// `shardkit_session_lease_id` gave), renewing it at once; it keeps the TTL
/// it was granted. Blocking. `NOT_FOUND` when the lease expired or was
/// revoked.
///
/// # Safety
/// `coord` must be a live handle; `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_resume(
    coord: *const shardkit_coordinator,
    lease_id: i64,
    out: *mut *mut shardkit_session,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let coord = unsafe { borrow(coord, "coord")? };
        let out = out_ptr(out, "out")?;
        let session = block_on(coord.resume(lease_id, SessionOptions::default()))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, new_session(session)) };
        Ok(())
    })
}

/// The session's lease id (0 for NULL): for `shardkit_session_resume` and
/// `shardkit_coordinator_revoke`.
///
/// # Safety
/// `s` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_lease_id(s: *const shardkit_session) -> i64 {
    // SAFETY: per the caller's contract.
    ffi_boundary!(or 0 => { unsafe { borrow(s, "session") }.map_or(0, |h| h.session.lease_id()) })
}

/// Whether the session has been declared lost (false for NULL, and for a
/// session that was closed instead).
///
/// # Safety
/// `s` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_is_lost(s: *const shardkit_session) -> bool {
    // SAFETY: per the caller's contract.
    ffi_boundary!(or false => { unsafe { borrow(s, "session") }.is_ok_and(|h| h.session.is_lost()) })
}

/// Milliseconds left before the session's local deadline (0 once lost or
/// closed, and for NULL).
///
/// # Safety
/// `s` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_remaining_ms(s: *const shardkit_session) -> u64 {
    ffi_boundary!(or 0 => {
        // SAFETY: per the caller's contract.
        unsafe { borrow(s, "session") }.map_or(0, |h| {
            u64::try_from(h.session.remaining().as_millis()).unwrap_or(u64::MAX)
        })
    })
}

/// `OK` while the session may still act; `SESSION_LOST` (with the reason)
/// once it is lost or closed. Also declares the loss when the deadline has
/// passed but the background task has not noticed yet (a process waking
/// from a pause), running the loss callbacks on this thread. Not blocking.
///
/// # Safety
/// `s` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_check(s: *const shardkit_session) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe { borrow(s, "session")? }.session.check()
    })
}

/// Registers `callback` to be called exactly once when the session is lost,
/// with `userdata`, `SHARDKIT_STATUS_SESSION_LOST` and the reason (valid only
/// during the call).
///
/// It runs on a runtime thread (the keepalive noticed), or on the thread of
/// a shardkit call that noticed first, or right here on this thread when the
/// session is already lost. It must return promptly and must not make
/// blocking calls (they fail with `INVALID_ARGUMENT` on runtime threads).
/// It is never called once `shardkit_session_close` or `shardkit_session_free`
/// of this handle has returned (both wait for a running call to finish), so
/// `userdata` may be released after either. Several callbacks may be
/// registered.
///
/// # Safety
/// `s` must be a live handle; `callback` a valid function; `userdata` must
/// stay valid until the callback ran or the handle was closed or freed, and
/// be usable from another thread.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_on_lost(
    s: *const shardkit_session,
    callback: shardkit_lost_callback,
    userdata: *mut c_void,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let h = unsafe { borrow(s, "session")? };
        let callback = callback.ok_or_else(|| null("callback"))?;
        let gate = h.gate.clone();
        let userdata = UserData(userdata);
        h.session.on_lost(move |e: &Error| {
            gate.run(|| {
                let ud = userdata;
                let code = shardkit_status::from_kind(e.kind());
                let msg = c_text(&e.to_string());
                // SAFETY: the caller's function and userdata, valid until
                // the gate closes (see the docs); `msg` lives through the call.
                unsafe { callback(ud.0, code, msg.as_ptr(), msg.as_bytes().len()) }
            });
        });
        Ok(())
    })
}

/// Stops keeping the lease alive and revokes it, releasing every lock,
/// leadership and shard held under it at once. Loss callbacks do not run
/// after this (a running one is waited for). The handle must still be freed;
/// locks and elections made under it then fail with `SESSION_LOST`. Blocking.
///
/// # Safety
/// `s` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_close(s: *const shardkit_session) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let h = unsafe { borrow(s, "session")? };
        let closed = runtime::block_on(h.session.close())?;
        // Only after the close ran: a call refused for being on a runtime
        // thread must leave the callbacks armed.
        h.gate.close();
        closed
    })
}

/// Frees the handle without revoking: NULL is a no-op. Loss callbacks
/// registered through it are disarmed (a running one is waited for). The
/// lease stays alive while any lock, election or shard owner made under the
/// session is alive; once the last goes, keepalives stop and the server
/// expires the lease after its TTL. Use `shardkit_session_close` to release
/// at once.
///
/// # Safety
/// `s` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_free(s: *mut shardkit_session) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        if let Some(h) = unsafe { take(s, "s") } {
            h.gate.close();
            drop_in_runtime(Some(h));
        }
    })
}
