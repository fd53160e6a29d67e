//! `shardkit_fence_gate`: refuses writes that carry an older fencing token.

use crate::args::{out_ptr, slice, text, write};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;
use shardkit::lease::FenceGate;

/// Remembers the newest fencing token seen per resource and refuses older
/// ones: what an external resource runs to fence stale lock holders.
pub struct shardkit_fence_gate {
    _private: [u8; 0],
}

/// A gate for the tokens of lock `name`: tokens of one lock are comparable
/// with each other only, so use one gate per lock. Errors:
/// `INVALID_ARGUMENT` for an empty name or one with control characters.
///
/// # Safety
/// `name` NULL or `name_len` readable bytes; `out` a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_fence_gate_new(
    name: *const u8,
    name_len: usize,
    out: *mut *mut shardkit_fence_gate,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let name = unsafe { text(name, name_len, "name")? };
        let out = out_ptr(out, "out")?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(FenceGate::for_lock(name)?)) };
        Ok(())
    })
}

/// Admits a write to `resource` (bytes) carrying the token value `token`
/// (a `shardkit_fencing_token.revision`, or `SHARDKIT_FENCING_TOKEN` from
/// the CLI): records it as the newest and returns `OK`, or returns `FENCED`
/// (recording nothing) when a newer token was already seen for `resource`.
/// `INVALID_ARGUMENT` for a token <= 0. Thread-safe, not blocking.
///
/// # Safety
/// `gate` a live handle; `resource` NULL or `resource_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shardkit_fence_gate_admit(
    gate: *const shardkit_fence_gate,
    resource: *const u8,
    resource_len: usize,
    token: i64,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (gate, resource) = unsafe {
            (
                borrow(gate, "gate")?,
                slice(resource, resource_len, "resource")?,
            )
        };
        gate.admit_value(resource, token)
    })
}

/// The newest token admitted for `resource` (0 when none, and for a NULL
/// gate or a bad buffer).
///
/// # Safety
/// `gate` NULL or a live handle; `resource` NULL or `resource_len` readable
/// bytes.
#[no_mangle]
pub unsafe extern "C" fn shardkit_fence_gate_newest(
    gate: *const shardkit_fence_gate,
    resource: *const u8,
    resource_len: usize,
) -> i64 {
    ffi_boundary!(or 0 => {
        // SAFETY: per the caller's contract.
        let args = unsafe {
            borrow(gate, "gate")
                .and_then(|g| Ok((g, slice(resource, resource_len, "resource")?)))
        };
        args.map_or(0, |(g, r)| g.newest(r))
    })
}

/// Frees the gate; NULL is a no-op.
///
/// # Safety
/// `gate` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_fence_gate_free(gate: *mut shardkit_fence_gate) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        drop(unsafe { take(gate, "gate") });
    })
}
