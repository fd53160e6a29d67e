//! `shardkit_coordinator`: a handle on a store (etcd or embedded), and the
//! calls that need no session.

use super::{block_on, drop_in_runtime, millis, shardkit_fencing_token};
use crate::args::{copy_bytes, out_ptr, slice_mut, text, write};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;
use shardkit::lease::{Coordinator, LeaderInfo};

/// A handle on a store: a real etcd (`shardkit_coordinator_connect`) or an
/// in-process store with etcd's semantics (`shardkit_coordinator_new_embedded`).
/// Sessions made from one coordinator share its store. Free with
/// `shardkit_coordinator_free`; sessions made from it stay valid.
pub struct shardkit_coordinator {
    _private: [u8; 0],
}

/// A new, empty in-process store with etcd's semantics (one per call; share
/// it between contenders by making their sessions from this one handle).
///
/// # Safety
/// `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_coordinator_new_embedded(
    out: *mut *mut shardkit_coordinator,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(Coordinator::embedded())) };
        Ok(())
    })
}

/// Connects to etcd at `endpoints`: UTF-8, comma-separated `host:port` or
/// `http://host:port` entries (as the CLI's `--endpoints`). `timeout_ms`
/// bounds the connect and every later request made without a session; it
/// must be above 0. Blocking.
///
/// Errors: `INVALID_ARGUMENT` (an unparsable entry, `https://`, timeout 0),
/// `UNAVAILABLE` when no endpoint answers within the timeout, `IO`,
/// `INVALID_UTF8`, `NULL_POINTER`.
///
/// # Safety
/// `endpoints` must be NULL or `endpoints_len` readable bytes; `out` must
/// point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_coordinator_connect(
    endpoints: *const u8,
    endpoints_len: usize,
    timeout_ms: u64,
    out: *mut *mut shardkit_coordinator,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let endpoints = unsafe { text(endpoints, endpoints_len, "endpoints")? };
        let coord = block_on(Coordinator::connect(endpoints, millis(timeout_ms)))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(coord)) };
        Ok(())
    })
}

/// Copies a description of the store ("embedded store", or "etcd at
/// http://..." with its endpoints) into `buf`, not NUL-terminated, with the
/// buffer protocol of `shardkit_sharder_node_name` (`BUFFER_TOO_SMALL` still
/// sets `*out_len`).
///
/// # Safety
/// `coord` a live handle; `buf` NULL or `buf_len` writable bytes; `out_len`
/// a writable `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_coordinator_describe(
    coord: *const shardkit_coordinator,
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let coord = unsafe { borrow(coord, "coord")? };
        let out_len = out_ptr(out_len, "out_len")?;
        // SAFETY: per the caller's contract; out_len checked above.
        unsafe {
            let buf = slice_mut(buf, buf_len, "buf")?;
            copy_bytes(coord.describe().as_bytes(), buf, out_len, "the description")
        }
    })
}

/// The current leader of election `name`. Blocking.
///
/// With a leader: `*out_found = true`, its proclaimed value is copied into
/// `buf` (`*out_len` bytes) and `*out_token` is its fencing token. Without
/// one: `*out_found = false`, `*out_len = 0`, `*out_token = {0, 0}`. When the
/// value does not fit, `BUFFER_TOO_SMALL` and (only) `*out_len` is set to
/// the size needed.
///
/// # Safety
/// `coord` a live handle; `name` NULL or `name_len` readable bytes; `buf`
/// NULL or `buf_len` writable bytes; the outs writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_coordinator_leader(
    coord: *const shardkit_coordinator,
    name: *const u8,
    name_len: usize,
    buf: *mut u8,
    buf_len: usize,
    out_found: *mut bool,
    out_len: *mut usize,
    out_token: *mut shardkit_fencing_token,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (coord, name) = unsafe { (borrow(coord, "coord")?, text(name, name_len, "name")?) };
        let (found, len, token) = (
            out_ptr(out_found, "out_found")?,
            out_ptr(out_len, "out_len")?,
            out_ptr(out_token, "out_token")?,
        );
        // SAFETY: per the caller's contract (checked before the request).
        let buf = unsafe { slice_mut(buf, buf_len, "buf")? };
        let leader: Option<LeaderInfo> = block_on(coord.leader(name))?;
        let value = leader.as_ref().map_or(&[][..], |l| l.value.as_slice());
        // SAFETY: `len` checked above.
        unsafe { copy_bytes(value, buf, len, "the leader's value")? };
        let t = leader
            .as_ref()
            .map_or_else(Default::default, |l| shardkit_fencing_token {
                revision: l.revision,
                lease: l.lease,
            });
        // SAFETY: checked by out_ptr above.
        unsafe {
            write(found, leader.is_some());
            write(token, t);
        }
        Ok(())
    })
}

/// Revokes any lease by id, deleting every key held under it (operators,
/// tests; a lease already gone is fine). The session that held it notices
/// at its next keepalive and is lost. Blocking.
///
/// # Safety
/// `coord` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_coordinator_revoke(
    coord: *const shardkit_coordinator,
    lease_id: i64,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let coord = unsafe { borrow(coord, "coord")? };
        block_on(coord.revoke(lease_id))
    })
}

/// Frees the handle; NULL is a no-op. Sessions, observers and everything
/// made from it stay valid (they share the store).
///
/// # Safety
/// `coord` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_coordinator_free(coord: *mut shardkit_coordinator) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        drop_in_runtime(unsafe { take(coord, "coord") });
    })
}
