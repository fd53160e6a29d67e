//! `shardkit_election`: one candidate in a named election under a session.

use super::{
    block_on, drop_in_runtime, shardkit_cancel, shardkit_fencing_token, shardkit_session,
    wait_for_token, wait_options,
};
use crate::args::{copy_bytes, out_ptr, slice, slice_mut, text, write};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;

/// One candidate in a named election under a session.
pub struct shardkit_election {
    _private: [u8; 0],
}

/// A candidate in election `name` (same rules as lock names) under
/// `session`. Sends nothing yet.
///
/// # Safety
/// `session` a live handle; `name` NULL or `name_len` readable bytes; `out`
/// a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_election_new(
    session: *const shardkit_session,
    name: *const u8,
    name_len: usize,
    out: *mut *mut shardkit_election,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (h, name) = unsafe { (borrow(session, "session")?, text(name, name_len, "name")?) };
        let out = out_ptr(out, "out")?;
        let e = h.session.election(name)?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(e)) };
        Ok(())
    })
}

/// Waits until this candidate leads, proclaiming `value` (bytes), and
/// writes the leadership's fencing token. `timeout_ms` and `cancel` as for
/// `shardkit_lock_acquire`; the same errors. Blocking.
///
/// # Safety
/// `election` a live handle; `value` NULL or `value_len` readable bytes;
/// `cancel` NULL or a live handle; `out_token` writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_election_campaign(
    election: *const shardkit_election,
    value: *const u8,
    value_len: usize,
    timeout_ms: i64,
    cancel: *const shardkit_cancel,
    out_token: *mut shardkit_fencing_token,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (e, value, opts) = unsafe {
            (
                borrow(election, "election")?,
                slice(value, value_len, "value")?,
                wait_options(timeout_ms, cancel)?,
            )
        };
        wait_for_token(out_token, e.campaign_with(value, &opts))
    })
}

/// Replaces the leader's value, only while this candidate leads (`FENCED`
/// otherwise). Blocking.
///
/// # Safety
/// `election` a live handle; `value` NULL or `value_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shardkit_election_proclaim(
    election: *const shardkit_election,
    value: *const u8,
    value_len: usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (e, value) = unsafe {
            (
                borrow(election, "election")?,
                slice(value, value_len, "value")?,
            )
        };
        block_on(e.proclaim(value))
    })
}

/// Gives up leadership (`INVALID_ARGUMENT` when not leader through this
/// handle). Blocking.
///
/// # Safety
/// `election` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_election_resign(
    election: *const shardkit_election,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        block_on(unsafe { borrow(election, "election")? }.resign())
    })
}

/// The text form of the current leadership's token (e.g.
/// `leader:primary@88/694d7a3c1e2f0a11`), as `shardkit_lock_token_text`;
/// `FENCED` when this handle does not lead.
///
/// # Safety
/// `election` a live handle; `buf` NULL or `buf_len` writable bytes;
/// `out_len` a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_election_token_text(
    election: *const shardkit_election,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let e = unsafe { borrow(election, "election")? };
        let out_len = out_ptr(out_len, "out_len")?;
        // SAFETY: per the caller's contract.
        let buf = unsafe { slice_mut(buf, buf_len, "buf")? };
        let token = e.leader_token()?.to_string();
        // SAFETY: out_len checked above.
        unsafe { copy_bytes(token.as_bytes(), buf, out_len, "the token") }
    })
}

/// Frees the handle without resigning: NULL is a no-op. Leadership (or a
/// candidacy) stays until the session is closed or its lease ends.
///
/// # Safety
/// `election` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_election_free(election: *mut shardkit_election) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        drop_in_runtime(unsafe { take(election, "election") });
    })
}
