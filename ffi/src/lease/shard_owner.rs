//! `shardkit_shard_owner`: a worker in a shard group, told which shards it
//! owns.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::{block_on, drop_in_runtime, shardkit_session};
use crate::args::{null, out_ptr, slice, text, write};
use crate::callback::{c_text, CallbackGate, UserData};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;
use shardkit::lease::{OwnershipEvent, OwnershipHandler, ShardOwner};
use shardkit::Result;

/// A worker taking part in a shard group, told which shards it owns.
pub struct shardkit_shard_owner {
    _private: [u8; 0],
}

/// Called for every change in a shard owner's holdings, in order: `gained`
/// true with the ownership's fencing token (its revision), or false (token
/// 0) when the shard is lost and must no longer be acted on. `shard` is
/// `shard_len` bytes of UTF-8 (also NUL-terminated), valid only during the
/// call. A lost shard is released only after the call returns.
pub type shardkit_ownership_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        gained: bool,
        shard: *const c_char,
        shard_len: usize,
        token: i64,
    ),
>;

pub(crate) struct ShardOwnerHandle {
    owner: ShardOwner,
    gate: Arc<CallbackGate>,
}

/// Joins shard group `group` as `worker` under `session`, competing for the
/// `n_shards` shards `shards[i]` (`shard_lens[i]` bytes of UTF-8 each).
/// Every worker of a group must pass the same list. Shards are shared out by
/// rendezvous hashing over the live workers; `callback` hears each shard
/// gained and lost, in order, on a runtime thread. Blocking (registers the
/// worker before returning; shards are then taken in the background).
///
/// Errors: `INVALID_ARGUMENT` (empty or bad names, a '/' in the worker name,
/// no shards), `DUPLICATE_NODE` (a shard listed twice, or the worker name
/// already live in the group), `SESSION_LOST`, store errors, `NULL_POINTER`,
/// `INVALID_UTF8`.
///
/// # Safety
/// `session` a live handle; `group`, `worker` NULL or their lengths in
/// readable bytes; `shards` and `shard_lens` NULL (n 0) or `n_shards`
/// entries, each shard valid for its length; `callback` a valid function;
/// `userdata` valid until `shardkit_shard_owner_free` returns and usable
/// from another thread; `out` a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_shard_owner_start(
    session: *const shardkit_session,
    group: *const u8,
    group_len: usize,
    worker: *const u8,
    worker_len: usize,
    shards: *const *const c_char,
    shard_lens: *const usize,
    n_shards: usize,
    callback: shardkit_ownership_callback,
    userdata: *mut c_void,
    out: *mut *mut shardkit_shard_owner,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (h, group, worker, ptrs, lens) = unsafe {
            (
                borrow(session, "session")?,
                text(group, group_len, "group")?,
                text(worker, worker_len, "worker")?,
                slice(shards, n_shards, "shards")?,
                slice(shard_lens, n_shards, "shard_lens")?,
            )
        };
        let callback = callback.ok_or_else(|| null("callback"))?;
        let out = out_ptr(out, "out")?;
        let names = ptrs
            .iter()
            .zip(lens)
            .enumerate()
            .map(|(i, (&p, &len))| {
                // SAFETY: each shard is valid for its length, per the caller.
                unsafe { text(p.cast::<u8>(), len, format_args!("shards[{i}]")) }
                    .map(str::to_string)
            })
            .collect::<Result<Vec<_>>>()?;
        let gate = CallbackGate::new();
        let handler_gate = gate.clone();
        let userdata = UserData(userdata);
        let handler: OwnershipHandler = Arc::new(move |ev: &OwnershipEvent| {
            let (gained, shard, token) = match ev {
                OwnershipEvent::Gained { shard, token } => (true, shard, token.revision),
                OwnershipEvent::Lost { shard, .. } => (false, shard, 0),
            };
            handler_gate.run(|| {
                let ud = userdata;
                let shard = c_text(shard);
                // SAFETY: the caller's function and userdata, valid until
                // the gate closes; `shard` lives through the call.
                unsafe { callback(ud.0, gained, shard.as_ptr(), shard.as_bytes().len(), token) }
            });
        });
        let owner = block_on(ShardOwner::start(&h.session, group, worker, names, handler))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(ShardOwnerHandle { owner, gate })) };
        Ok(())
    })
}

/// Whether the worker owns `shard` now (`*out_owned`) and, if so, the
/// ownership's token value (`*out_token`, else 0). Not blocking.
///
/// # Safety
/// `owner` a live handle; `shard` NULL or `shard_len` readable bytes; the
/// outs writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_shard_owner_owns(
    owner: *const shardkit_shard_owner,
    shard: *const u8,
    shard_len: usize,
    out_owned: *mut bool,
    out_token: *mut i64,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (h, shard) = unsafe { (borrow(owner, "owner")?, text(shard, shard_len, "shard")?) };
        let (owned, token) = (
            out_ptr(out_owned, "out_owned")?,
            out_ptr(out_token, "out_token")?,
        );
        let t = h.owner.owned().get(shard).map(|t| t.revision);
        // SAFETY: checked by out_ptr above.
        unsafe {
            write(owned, t.is_some());
            write(token, t.unwrap_or(0));
        }
        Ok(())
    })
}

/// Leaves the group: every owned shard is reported lost through the
/// callback, then released so other workers take it at once. Blocking.
/// The handle must still be freed.
///
/// # Safety
/// `owner` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_shard_owner_close(
    owner: *const shardkit_shard_owner,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        block_on(unsafe { borrow(owner, "owner")? }.owner.close())
    })
}

/// Stops taking part without releasing: NULL is a no-op. Owned shards stay
/// held until the session is closed or its lease ends, and no `lost` call
/// is made for them. Returns only once the callback is not running on
/// another thread and never will again, so `userdata` may be freed after.
///
/// # Safety
/// `owner` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_shard_owner_free(owner: *mut shardkit_shard_owner) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        if let Some(h) = unsafe { take(owner, "owner") } {
            h.gate.close();
            drop_in_runtime(Some(h));
        }
    })
}
