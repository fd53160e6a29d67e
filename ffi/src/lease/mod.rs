//! Ownership election over C: coordinators, sessions, locks, elections,
//! observers, fence gates and shard owners, over `shardkit::lease`.
//!
//! Threads. Every handle here may be used from any thread. Calls that wait
//! on the store (connect, session, acquire, campaign, release, put, close,
//! leader, revoke) are *blocking*: they run on the calling thread through
//! `shardkit::runtime::block_on` and must not be made from a shardkit
//! callback (those run on runtime threads); there they return
//! `SHARDKIT_STATUS_INVALID_ARGUMENT` instead of deadlocking.
//!
//! Callbacks. Each callback gets the caller's `userdata` back as its first
//! argument. It runs on a shardkit runtime thread (or, where documented, on
//! the thread of the call that noticed the event), so `userdata` must be
//! usable from any thread. Freeing the object that registered a callback
//! (`_free`, and `shardkit_session_close` for loss callbacks) returns only
//! once no call of that callback is running on another thread and none will
//! start, so `userdata` may be released right after. Callbacks must return
//! promptly, must not unwind (C++ exceptions) and must not free the object
//! whose callback they are while holding a lock the freeing thread waits on.

pub(crate) mod cancel;
pub(crate) mod coordinator;
pub(crate) mod election;
pub(crate) mod fence_gate;
pub(crate) mod lock;
pub(crate) mod observer;
pub(crate) mod scoped_lock;
pub(crate) mod session;
pub(crate) mod shard_owner;
pub(crate) mod token;

pub use cancel::*;
pub use coordinator::*;
pub use election::*;
pub use fence_gate::*;
pub use lock::*;
pub use observer::*;
pub use scoped_lock::*;
pub use session::*;
pub use shard_owner::*;
pub use token::*;

use std::time::Duration;

use shardkit::lease::{SessionOptions, WaitOptions};
use shardkit::{runtime, Result};

/// Drops a handle's value inside the runtime's context: some of core's
/// types spawn or abort tasks as they drop, which needs a runtime even on a
/// C thread. Nothing (a NULL or refused handle) starts no runtime.
pub(crate) fn drop_in_runtime<T>(v: Option<T>) {
    let Some(v) = v else { return };
    match runtime::shared() {
        Ok(rt) => {
            let _guard = rt.enter();
            drop(v);
        }
        Err(_) => drop(v),
    }
}

/// Blocks on `fut` from a caller's thread (an error on a runtime thread).
fn block_on<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    runtime::block_on(fut)?
}

/// Waits for a hold (an acquire, a campaign) and writes its fencing token
/// through `out_token`, which is checked before the wait starts.
fn wait_for_token(
    out_token: *mut shardkit_fencing_token,
    hold: impl std::future::Future<Output = Result<shardkit::lease::FencingToken>>,
) -> Result<()> {
    let out = crate::args::out_ptr(out_token, "out_token")?;
    let token = block_on(hold)?;
    // SAFETY: checked by out_ptr above.
    unsafe { crate::args::write(out, (&token).into()) };
    Ok(())
}

/// Milliseconds from C.
fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Wait options from a C timeout (negative: none) and optional cancel.
///
/// # Safety
/// `cancel` must be NULL or a live `shardkit_cancel`.
unsafe fn wait_options(timeout_ms: i64, cancel: *const shardkit_cancel) -> Result<WaitOptions> {
    let cancel = if cancel.is_null() {
        None
    } else {
        // SAFETY: per the caller's contract.
        Some(unsafe { crate::handle::borrow(cancel, "cancel")? }.clone())
    };
    Ok(WaitOptions {
        timeout: u64::try_from(timeout_ms).ok().map(millis),
        cancel,
    })
}

/// Session options from C: 0 takes the default margin and request bound.
fn session_options(ttl_secs: u64, margin_ms: u64, rpc_timeout_ms: u64) -> SessionOptions {
    let default = SessionOptions::default();
    SessionOptions {
        ttl: Duration::from_secs(ttl_secs),
        margin: (margin_ms > 0).then(|| millis(margin_ms)),
        rpc_timeout: if rpc_timeout_ms > 0 {
            millis(rpc_timeout_ms)
        } else {
            default.rpc_timeout
        },
    }
}
