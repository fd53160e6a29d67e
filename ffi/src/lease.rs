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

use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::boundary::{out_ptr, slice, slice_mut, text, write};
use crate::shardkit_status;
use shardkit::lease::{
    Cancel, Coordinator, Election, FenceGate, FencingToken, LeaderInfo, Lock, OwnershipEvent,
    OwnershipHandler, Session, SessionOptions, ShardOwner, WaitOptions,
};
use shardkit::{runtime, Error, ErrorKind, Result};

// ---- opaque handles --------------------------------------------------------

/// A cancellation signal for a waiting acquire or campaign. Fire it with
/// `shardkit_cancel_cancel` from any thread (a signal handler excepted),
/// including from a callback; firing is permanent. Free with
/// `shardkit_cancel_free` once no call is waiting with it.
pub struct shardkit_cancel {
    _private: [u8; 0],
}

/// A handle on a store: a real etcd (`shardkit_coordinator_connect`) or an
/// in-process store with etcd's semantics (`shardkit_coordinator_new_embedded`).
/// Sessions made from one coordinator share its store. Free with
/// `shardkit_coordinator_free`; sessions made from it stay valid.
pub struct shardkit_coordinator {
    _private: [u8; 0],
}

/// A lease kept alive in the background, with a local deadline that runs out
/// before the server's. Locks, elections and shard owners are made under a
/// session and end when it is lost.
pub struct shardkit_session {
    _private: [u8; 0],
}

/// One contender for a named lock under a session. Each handle is its own
/// waiter: two handles exclude each other even under one session.
pub struct shardkit_lock {
    _private: [u8; 0],
}

/// One candidate in a named election under a session.
pub struct shardkit_election {
    _private: [u8; 0],
}

/// A running watch of one election's leadership, calling back on changes.
pub struct shardkit_observer {
    _private: [u8; 0],
}

/// Remembers the newest fencing token seen per resource and refuses older
/// ones: what an external resource runs to fence stale lock holders.
pub struct shardkit_fence_gate {
    _private: [u8; 0],
}

/// A worker taking part in a shard group, told which shards it owns.
pub struct shardkit_shard_owner {
    _private: [u8; 0],
}

/// A fencing token: proof of holding a lock, leadership or shard.
/// `revision` is the number external resources compare (larger is newer;
/// pass it to `shardkit_fence_gate_admit` or a store's compare); `lease` is
/// the lease the hold lives under.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct shardkit_fencing_token {
    /// The holder key's create revision: the token value. Always positive.
    pub revision: i64,
    /// The lease the holder key lives under.
    pub lease: i64,
}

impl From<&FencingToken> for shardkit_fencing_token {
    fn from(t: &FencingToken) -> Self {
        shardkit_fencing_token {
            revision: t.revision,
            lease: t.lease,
        }
    }
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

/// Called with an election's leadership: `has_leader` false means no
/// leader (then `value` is NULL, `value_len` and `revision` 0). Otherwise
/// `value` is the leader's proclaimed value (`value_len` bytes, valid only
/// during the call) and `revision` its fencing token.
pub type shardkit_leader_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        has_leader: bool,
        value: *const u8,
        value_len: usize,
        revision: i64,
    ),
>;

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

struct SessionHandle {
    session: Session,
    /// Gates the loss callbacks registered through this handle.
    gate: Arc<CallbackGate>,
}

struct ObserverHandle {
    gate: Arc<CallbackGate>,
    /// Aborts the observing task (its JoinHandle, type-erased: this crate
    /// does not name tokio).
    abort: Box<dyn Fn() + Send + Sync>,
}

struct ShardOwnerHandle {
    owner: ShardOwner,
    gate: Arc<CallbackGate>,
}

// ---- callback plumbing -----------------------------------------------------

/// The caller's `userdata`, carried to runtime threads.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);

// SAFETY: the pointer is never dereferenced by shardkit, only handed back to
// the caller's own callback; every function taking `userdata` documents that
// the callback runs on another thread, so the caller vouches that the data
// behind it may be used from there (and concurrently, where documented).
unsafe impl Send for UserData {}
// SAFETY: as for Send; shardkit only copies the pointer value.
unsafe impl Sync for UserData {}

/// Makes "after `_free` returns, the callback is not running and never will
/// run" true, so C can free `userdata` right after.
///
/// A callback enters only while the gate is open and registers its thread;
/// closing waits until no *other* thread is inside. The closing thread's own
/// entry is not waited for, so a callback may free its own object without
/// deadlocking on itself.
struct CallbackGate {
    state: Mutex<GateState>,
    idle: Condvar,
}

struct GateState {
    open: bool,
    running: Vec<ThreadMark>,
}

/// Identifies the current thread: the address of a thread-local. Unlike
/// `std::thread::current()` it allocates nothing (on the C main thread that
/// handle would be allocated lazily and outlive every leak check), and a
/// thread cannot exit while it is inside `run`, so no stale mark is compared.
type ThreadMark = usize;

fn thread_mark() -> ThreadMark {
    thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.with(|m| std::ptr::from_ref(m) as usize)
}

impl CallbackGate {
    fn new() -> Arc<CallbackGate> {
        Arc::new(CallbackGate {
            state: Mutex::new(GateState {
                open: true,
                running: Vec::new(),
            }),
            idle: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        // Poisoning cannot leave GateState half-updated (plain pushes and
        // removals), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` if the gate is open. A panic in `f` (in our glue; C cannot
    /// unwind through an `extern "C"` call) is swallowed here: callbacks run
    /// inside core's tasks, which must not unwind either.
    fn run(&self, f: impl FnOnce()) {
        let me = thread_mark();
        {
            let mut s = self.state();
            if !s.open {
                return;
            }
            s.running.push(me);
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        {
            let mut s = self.state();
            if let Some(i) = s.running.iter().position(|t| *t == me) {
                s.running.swap_remove(i);
            }
        }
        self.idle.notify_all();
        if let Err(p) = r {
            // Dropping a payload can panic in turn; leak it instead.
            std::mem::forget(p);
        }
    }

    /// Closes the gate and waits until no other thread is inside a callback.
    fn close(&self) {
        let me = thread_mark();
        let mut s = self.state();
        s.open = false;
        while s.running.iter().any(|t| *t != me) {
            s = self.idle.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// `text` as a C string for a callback; interior NULs (impossible in names,
/// unlikely in messages) are dropped rather than failing the callback.
fn c_text(text: &str) -> CString {
    CString::new(text)
        .unwrap_or_else(|_| CString::new(text.replace('\0', "")).expect("NULs were removed"))
}

// ---- argument helpers ------------------------------------------------------

fn null(what: &str) -> Error {
    Error::new(ErrorKind::NullPointer, format!("{what} is NULL"))
}

/// Borrows the Rust value behind a C handle.
///
/// # Safety
/// `ptr` must be NULL or a live handle of the type `T` is boxed as.
unsafe fn handle<'a, C, T>(ptr: *const C, what: &str) -> Result<&'a T> {
    // SAFETY: non-NULL handles of type C are `Box<T>` pointers from `into_c`,
    // live until their `_free`, per the caller.
    unsafe { ptr.cast::<T>().as_ref() }.ok_or_else(|| null(what))
}

fn into_c<C, T>(v: T) -> *mut C {
    Box::into_raw(Box::new(v)).cast()
}

/// Takes back a handle for freeing; `None` for NULL.
///
/// # Safety
/// `ptr` must be NULL or a live handle of the type `T` is boxed as, not used
/// again afterwards.
unsafe fn take<C, T>(ptr: *mut C) -> Option<Box<T>> {
    // SAFETY: a live handle is a `Box<T>` from `into_c`; the caller gives up
    // ownership.
    (!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr.cast::<T>()) })
}

/// Drops `v` inside the runtime's context: some of core's types spawn or
/// abort tasks as they drop, which needs a runtime even on a C thread.
fn drop_in_runtime<T>(v: T) {
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

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Wait options from a C timeout (negative: none) and optional cancel.
///
/// # Safety
/// `cancel` must be NULL or a live `shardkit_cancel`.
unsafe fn wait_options(timeout_ms: i64, cancel: *const shardkit_cancel) -> Result<WaitOptions> {
    // SAFETY: per the caller's contract.
    let cancel = unsafe { cancel.cast::<Cancel>().as_ref() }.cloned();
    Ok(WaitOptions {
        timeout: u64::try_from(timeout_ms).ok().map(millis),
        cancel,
    })
}

/// Copies `bytes` out with the buffer protocol of the whole ABI: `*out_len`
/// gets the full length even when `buf` is too small (`BUFFER_TOO_SMALL`).
///
/// # Safety
/// `buf` NULL or `buf_len` writable bytes; `out_len` from `out_ptr`.
unsafe fn copy_out(
    bytes: &[u8],
    buf: *mut u8,
    buf_len: usize,
    out_len: *mut usize,
    what: &str,
) -> Result<()> {
    // SAFETY: per the caller's contract.
    let dst = unsafe { slice_mut(buf, buf_len, "buf")? };
    // SAFETY: checked by out_ptr (caller); written in both outcomes, see docs.
    unsafe { write(out_len, bytes.len()) };
    dst.get_mut(..bytes.len())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::BufferTooSmall,
                format!("{what} needs {} bytes, buf_len is {buf_len}", bytes.len()),
            )
        })?
        .copy_from_slice(bytes);
    Ok(())
}

// ---- cancel ----------------------------------------------------------------

/// A new, unfired cancellation signal in `*out`.
///
/// # Safety
/// `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_cancel_new(out: *mut *mut shardkit_cancel) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_c(Cancel::new())) };
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
        unsafe { handle::<_, Cancel>(cancel, "cancel")? }.cancel();
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
        unsafe { handle::<_, Cancel>(cancel, "cancel") }.is_ok_and(Cancel::is_cancelled)
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
        drop(unsafe { take::<_, Cancel>(cancel) });
    })
}

// ---- coordinator -----------------------------------------------------------

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
        unsafe { write(out, into_c(Coordinator::embedded())) };
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
        unsafe { write(out, into_c(coord)) };
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
        let coord = unsafe { handle::<_, Coordinator>(coord, "coord")? };
        let out_len = out_ptr(out_len, "out_len")?;
        // SAFETY: per the caller's contract; out_len checked above.
        unsafe {
            copy_out(
                coord.describe().as_bytes(),
                buf,
                buf_len,
                out_len,
                "the description",
            )
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
        let (coord, name) = unsafe {
            (
                handle::<_, Coordinator>(coord, "coord")?,
                text(name, name_len, "name")?,
            )
        };
        let (found, len, token) = (
            out_ptr(out_found, "out_found")?,
            out_ptr(out_len, "out_len")?,
            out_ptr(out_token, "out_token")?,
        );
        // SAFETY: per the caller's contract (checked before the request).
        unsafe { slice_mut(buf, buf_len, "buf")? };
        let leader: Option<LeaderInfo> = block_on(coord.leader(name))?;
        let value = leader.as_ref().map_or(&[][..], |l| l.value.as_slice());
        // SAFETY: per the caller's contract; `len` checked above.
        unsafe { copy_out(value, buf, buf_len, len, "the leader's value")? };
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
        let coord = unsafe { handle::<_, Coordinator>(coord, "coord")? };
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
        drop_in_runtime(unsafe { take::<_, Coordinator>(coord) });
    })
}

// ---- session ---------------------------------------------------------------

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
        let coord = unsafe { handle::<_, Coordinator>(coord, "coord")? };
        let out = out_ptr(out, "out")?;
        let opts = options(ttl_secs, margin_ms, rpc_timeout_ms);
        let session = block_on(coord.session(opts))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, new_session(session)) };
        Ok(())
    })
}

fn options(ttl_secs: u64, margin_ms: u64, rpc_timeout_ms: u64) -> SessionOptions {
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

fn new_session(session: Session) -> *mut shardkit_session {
    into_c(SessionHandle {
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
        let coord = unsafe { handle::<_, Coordinator>(coord, "coord")? };
        let out = out_ptr(out, "out")?;
        let session = block_on(coord.resume(lease_id, SessionOptions::default()))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, new_session(session)) };
        Ok(())
    })
}

/// # Safety
/// `s` must be NULL or a live session handle.
unsafe fn session<'a>(s: *const shardkit_session) -> Result<&'a SessionHandle> {
    // SAFETY: forwarded from the caller.
    unsafe { handle::<_, SessionHandle>(s, "session") }
}

/// The session's lease id (0 for NULL): for `shardkit_session_resume` and
/// `shardkit_coordinator_revoke`.
///
/// # Safety
/// `s` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_lease_id(s: *const shardkit_session) -> i64 {
    // SAFETY: per the caller's contract.
    ffi_boundary!(or 0 => { unsafe { session(s) }.map_or(0, |h| h.session.lease_id()) })
}

/// Whether the session has been declared lost (false for NULL, and for a
/// session that was closed instead).
///
/// # Safety
/// `s` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_session_is_lost(s: *const shardkit_session) -> bool {
    // SAFETY: per the caller's contract.
    ffi_boundary!(or false => { unsafe { session(s) }.is_ok_and(|h| h.session.is_lost()) })
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
        unsafe { session(s) }.map_or(0, |h| {
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
        unsafe { session(s)? }.session.check()
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
        let h = unsafe { session(s)? };
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
        let h = unsafe { session(s)? };
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
        if let Some(h) = unsafe { take::<_, SessionHandle>(s) } {
            h.gate.close();
            drop_in_runtime(h);
        }
    })
}

// ---- lock ------------------------------------------------------------------

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
        let (h, name) = unsafe { (self::session(session)?, text(name, name_len, "name")?) };
        let out = out_ptr(out, "out")?;
        let lock = h.session.lock(name)?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_c(lock)) };
        Ok(())
    })
}

/// # Safety
/// `l` must be NULL or a live lock handle.
unsafe fn lock_ref<'a>(l: *const shardkit_lock) -> Result<&'a Lock> {
    // SAFETY: forwarded from the caller.
    unsafe { handle::<_, Lock>(l, "lock") }
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
        let (lock, opts) = unsafe { (lock_ref(lock)?, wait_options(timeout_ms, cancel)?) };
        let out = out_ptr(out_token, "out_token")?;
        let token = block_on(lock.lock_with(&opts))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, (&token).into()) };
        Ok(())
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
        let lock = unsafe { lock_ref(lock)? };
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
        let lock = unsafe { lock_ref(lock)? };
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
                lock_ref(lock)?,
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
/// protocol of `shardkit_coordinator_describe`. `NOT_FOUND` when not held
/// through this handle.
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
        let lock = unsafe { lock_ref(lock)? };
        let out_len = out_ptr(out_len, "out_len")?;
        let token = lock.token().ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("lock {:?} is not held through this handle", lock.name()),
            )
        })?;
        // SAFETY: per the caller's contract; out_len checked above.
        unsafe {
            copy_out(
                token.to_string().as_bytes(),
                buf,
                buf_len,
                out_len,
                "the token",
            )
        }
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
        drop_in_runtime(unsafe { take::<_, Lock>(lock) });
    })
}

// ---- election --------------------------------------------------------------

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
        let (h, name) = unsafe { (self::session(session)?, text(name, name_len, "name")?) };
        let out = out_ptr(out, "out")?;
        let e = h.session.election(name)?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_c(e)) };
        Ok(())
    })
}

/// # Safety
/// `e` must be NULL or a live election handle.
unsafe fn election<'a>(e: *const shardkit_election) -> Result<&'a Election> {
    // SAFETY: forwarded from the caller.
    unsafe { handle::<_, Election>(e, "election") }
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
                self::election(election)?,
                slice(value, value_len, "value")?,
                wait_options(timeout_ms, cancel)?,
            )
        };
        let out = out_ptr(out_token, "out_token")?;
        let token = block_on(e.campaign_with(value, &opts))?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, (&token).into()) };
        Ok(())
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
        let (e, value) = unsafe { (self::election(election)?, slice(value, value_len, "value")?) };
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
        block_on(unsafe { self::election(election)? }.resign())
    })
}

/// The text form of the current leadership's token (e.g.
/// `leader:primary@88/694d7a3c1e2f0a11`), as `shardkit_lock_token_text`.
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
        let e = unsafe { self::election(election)? };
        let out_len = out_ptr(out_len, "out_len")?;
        let token = e.token().ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("not leader of election {:?} through this handle", e.name()),
            )
        })?;
        // SAFETY: per the caller's contract; out_len checked above.
        unsafe {
            copy_out(
                token.to_string().as_bytes(),
                buf,
                buf_len,
                out_len,
                "the token",
            )
        }
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
        drop_in_runtime(unsafe { take::<_, Election>(election) });
    })
}

// ---- observer --------------------------------------------------------------

/// Starts following the leadership of election `name`. `callback` is called
/// first with the current state (possibly "no leader"), then on every change:
/// a new leader, a new proclaimed value, or no leader. Calls are in order,
/// one at a time, on a runtime thread; store errors are retried in the
/// background (with a pause of up to 1 s), never reported. Not blocking.
///
/// # Safety
/// `coord` a live handle; `name` NULL or `name_len` readable bytes;
/// `callback` a valid function; `userdata` valid until
/// `shardkit_observer_free` returns and usable from another thread; `out`
/// a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_observer_start(
    coord: *const shardkit_coordinator,
    name: *const u8,
    name_len: usize,
    callback: shardkit_leader_callback,
    userdata: *mut c_void,
    out: *mut *mut shardkit_observer,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (coord, name) = unsafe {
            (
                handle::<_, Coordinator>(coord, "coord")?,
                text(name, name_len, "name")?,
            )
        };
        let callback = callback.ok_or_else(|| null("callback"))?;
        let out = out_ptr(out, "out")?;
        let mut observer = coord.observe(name)?;
        let rt = runtime::shared()?;
        let gate = CallbackGate::new();
        let task_gate = gate.clone();
        let userdata = UserData(userdata);
        let task = rt.spawn(async move {
            let mut backoff = RETRY_MIN;
            loop {
                match observer.next().await {
                    Ok(leader) => {
                        backoff = RETRY_MIN;
                        task_gate.run(|| {
                            let ud = userdata;
                            let (value, rev) = leader
                                .as_ref()
                                .map_or((&[][..], 0), |l| (l.value.as_slice(), l.revision));
                            let ptr = if leader.is_some() {
                                value.as_ptr()
                            } else {
                                std::ptr::null()
                            };
                            // SAFETY: the caller's function and userdata,
                            // valid until the gate closes; `value` lives
                            // through the call.
                            unsafe { callback(ud.0, leader.is_some(), ptr, value.len(), rev) }
                        });
                    }
                    Err(_) => {
                        pause(backoff).await;
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                }
            }
        });
        let handle = ObserverHandle {
            gate,
            abort: Box::new(move || task.abort()),
        };
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_c(handle)) };
        Ok(())
    })
}

const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Sleeps without holding a runtime worker. This crate does not depend on
/// tokio directly, so the timer is a blocking-pool sleep; it only runs while
/// the store is failing, at most once a second per observer.
async fn pause(d: Duration) {
    if let Ok(rt) = runtime::shared() {
        let _ = rt.spawn_blocking(move || std::thread::sleep(d)).await;
    }
}

/// Stops the observer: NULL is a no-op. Returns only once the callback is
/// not running on another thread and will never be called again, so
/// `userdata` may be freed right after. May be called from inside the
/// callback itself (then that call simply finishes).
///
/// # Safety
/// `observer` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_observer_free(observer: *mut shardkit_observer) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        if let Some(h) = unsafe { take::<_, ObserverHandle>(observer) } {
            h.gate.close();
            (h.abort)();
            drop_in_runtime(h);
        }
    })
}

// ---- fence gate ------------------------------------------------------------

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
        unsafe { write(out, into_c(FenceGate::for_lock(name)?)) };
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
                handle::<_, FenceGate>(gate, "gate")?,
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
            handle::<_, FenceGate>(gate, "gate")
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
        drop(unsafe { take::<_, FenceGate>(gate) });
    })
}

// ---- shard owner -----------------------------------------------------------

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
                self::session(session)?,
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
        unsafe { write(out, into_c(ShardOwnerHandle { owner, gate })) };
        Ok(())
    })
}

/// # Safety
/// `o` must be NULL or a live shard owner handle.
unsafe fn owner<'a>(o: *const shardkit_shard_owner) -> Result<&'a ShardOwnerHandle> {
    // SAFETY: forwarded from the caller.
    unsafe { handle::<_, ShardOwnerHandle>(o, "owner") }
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
        let (h, shard) = unsafe { (self::owner(owner)?, text(shard, shard_len, "shard")?) };
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
        block_on(unsafe { self::owner(owner)? }.owner.close())
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
        if let Some(h) = unsafe { take::<_, ShardOwnerHandle>(owner) } {
            h.gate.close();
            drop_in_runtime(h);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn gate_waits_for_a_running_callback_and_then_stays_shut() {
        let gate = CallbackGate::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let g = gate.clone();
        let c = calls.clone();
        let t = std::thread::spawn(move || {
            g.run(|| {
                started_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                c.fetch_add(1, Ordering::SeqCst);
            })
        });
        started_rx.recv().unwrap();
        gate.close();
        // close returned only after the running call finished.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        gate.run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        t.join().unwrap();
    }

    #[test]
    fn gate_closed_from_inside_its_own_callback_does_not_deadlock() {
        let gate = CallbackGate::new();
        let g = gate.clone();
        gate.run(|| g.close());
        let mut ran = false;
        gate.run(|| ran = true);
        assert!(!ran);
    }

    #[test]
    fn gate_swallows_a_panic() {
        let gate = CallbackGate::new();
        gate.run(|| panic!("boom"));
        let mut ran = false;
        gate.run(|| ran = true);
        assert!(ran);
    }
}
