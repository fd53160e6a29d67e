//! A session is one lease kept alive in the background, with a local
//! deadline that always runs out before the server's.
//!
//! The deadline is measured from when the last *acknowledged* keepalive was
//! sent: the server restarts its TTL clock no earlier than that, so
//! `sent + ttl - margin` is strictly before the server can expire the lease,
//! whatever the network did in between. When the deadline passes without a
//! newer acknowledgement, the session declares itself lost, exactly once,
//! and everything held under it (locks, leadership, shards) must be treated
//! as gone. A paused process (SIGSTOP, a long GC) finds on waking that its
//! deadline has passed before it can act on a stale belief.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use super::backend::Backend;
use super::kv::{Cmp, CmpOp, CmpTarget, LeaseId, Op, Txn};
use crate::error::{Error, ErrorKind, Result};

/// The local deadline on two clocks. The monotonic clock is what timers use,
/// but it stops while the machine is suspended (and may in a frozen VM); the
/// wall clock keeps running. The deadline has passed when either says so,
/// so a host that wakes from suspend does not believe in a lease the server
/// expired meanwhile. A wall clock stepped forward can only end the session
/// early, the safe direction.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    mono: Instant,
    wall: SystemTime,
}

impl Deadline {
    /// `after` past the moment `at` (taken with [`stamp`]).
    fn after(at: (Instant, SystemTime), after: Duration) -> Deadline {
        Deadline {
            mono: at.0 + after,
            wall: at.1 + after,
        }
    }

    /// Time left on the stricter clock (zero once passed).
    fn left(&self) -> Duration {
        let mono = self.mono.saturating_duration_since(Instant::now());
        let wall = self
            .wall
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        mono.min(wall)
    }

    fn passed(&self) -> bool {
        self.left().is_zero()
    }
}

/// Both clocks, read together.
fn stamp() -> (Instant, SystemTime) {
    (Instant::now(), SystemTime::now())
}

/// A process-random number, so keys made by a resumed session never collide
/// with the keys of the incarnation it resumed.
fn session_nonce() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish() as u32
}

/// A key written by this session that must go: deleted on every keepalive
/// round until `until`, by which time any request that could still create
/// it has been answered or dropped.
#[derive(Debug)]
struct Orphan {
    key: Vec<u8>,
    until: Instant,
}

/// Longest TTL etcd accepts (its `MaxLeaseTTL`).
pub const MAX_TTL_SECS: u64 = 9_000_000_000;

/// How a session is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Lease time-to-live; whole seconds, at least 1 (etcd may require more).
    pub ttl: Duration,
    /// How long before the TTL the session declares itself lost. `None`
    /// picks a fifth of the TTL, between 200 ms and 3 s.
    pub margin: Option<Duration>,
    /// Upper bound on any single request; each request also gets no more
    /// than the time the lease has left.
    pub rpc_timeout: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ttl: Duration::from_secs(10),
            margin: None,
            rpc_timeout: Duration::from_secs(5),
        }
    }
}

impl SessionOptions {
    /// Options with this TTL and the defaults otherwise.
    pub fn with_ttl(ttl: Duration) -> SessionOptions {
        SessionOptions {
            ttl,
            ..SessionOptions::default()
        }
    }

    /// Checks the options and returns `(ttl_secs, margin)`.
    pub(crate) fn validate(&self) -> Result<(i64, Duration)> {
        let ttl = self.ttl;
        if ttl.is_zero() || ttl.subsec_nanos() != 0 || ttl.as_secs() > MAX_TTL_SECS {
            return Err(Error::invalid(format!(
                "ttl {}s: a lease TTL is a whole number of seconds from 1 to {MAX_TTL_SECS}",
                ttl.as_secs_f64()
            )));
        }
        let margin = self.margin.unwrap_or_else(|| default_margin(ttl));
        if margin.is_zero() || margin > ttl / 2 {
            return Err(Error::invalid(format!(
                "margin {margin:?} for ttl {ttl:?}: it must be above zero and at most half the TTL"
            )));
        }
        if self.rpc_timeout.is_zero() {
            return Err(Error::invalid(
                "rpc_timeout 0: every request needs time to answer",
            ));
        }
        Ok((ttl.as_secs() as i64, margin))
    }
}

/// A fifth of the TTL, between 200 ms and 3 s: room for a late keepalive
/// answer and clock-rate differences, without giving up much of the lease.
fn default_margin(ttl: Duration) -> Duration {
    (ttl / 5).clamp(Duration::from_millis(200), Duration::from_secs(3))
}

#[derive(Debug, Clone)]
enum State {
    Alive,
    Lost(Error),
    Closed,
}

type LostCallback = Box<dyn FnOnce(&Error) + Send>;

/// A lease kept alive in the background. Clones share the lease.
#[derive(Clone)]
pub struct Session {
    pub(crate) inner: Arc<SessionInner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("lease", &format_args!("{:x}", self.inner.lease))
            .field("ttl", &self.inner.ttl)
            .field("lost", &self.is_lost())
            .finish()
    }
}

pub(crate) struct SessionInner {
    pub(crate) backend: Backend,
    pub(crate) lease: LeaseId,
    ttl: Duration,
    margin: Duration,
    rpc_timeout: Duration,
    deadline: Mutex<Deadline>,
    state: watch::Sender<State>,
    callbacks: Mutex<Vec<LostCallback>>,
    /// Keys this session wrote but could not be sure are gone (a request
    /// timed out after the server may have applied it, a future dropped
    /// mid-request); deleted on keepalive rounds, so no stale key outlives
    /// the error that left it.
    orphans: Mutex<Vec<Orphan>>,
    cleaning: AtomicBool,
    /// Run by `close` before the revoke, so holders (shard owners) report
    /// their losses before anyone else can take over.
    close_hooks: Mutex<Vec<(u64, CloseHook)>>,
    nonce: u32,
    seq: AtomicU64,
    /// Times this session's lock and election waiters were woken by their
    /// predecessor's delete (see `Session::waiter_wakeups`, a test hook).
    #[cfg(feature = "test-hooks")]
    pub(crate) wakeups: AtomicU64,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A hook `close` runs before revoking.
pub(crate) type CloseHook = Arc<dyn Fn() + Send + Sync>;

impl Drop for SessionInner {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // In a forked child the last handle must not drop the session: that
        // aborts the keepalive task and wakes waiters, all on the parent's
        // runtime, whose threads (and the locks they held) the child does
        // not have. A clone forgotten here keeps it alive instead.
        if self.inner.backend.check_process().is_err() {
            std::mem::forget(self.clone());
        }
    }
}

impl Session {
    /// Grants a lease and starts keeping it alive.
    pub(crate) async fn start(backend: Backend, opts: SessionOptions) -> Result<Session> {
        let (ttl_secs, margin) = opts.validate()?;
        let sent = stamp();
        let (lease, granted) = backend.grant(ttl_secs, opts.rpc_timeout).await?;
        if granted > ttl_secs {
            // The server raised the TTL to its minimum: our deadline would be
            // based on a TTL the operator did not ask for. Refuse clearly.
            let _ = backend.revoke(lease, opts.rpc_timeout).await;
            return Err(Error::invalid(format!(
                "ttl {ttl_secs}s is below the server's minimum lease TTL of {granted}s ({})",
                backend.describe()
            )));
        }
        let ttl = Duration::from_secs(granted.max(1) as u64);
        Ok(Session::spawn(
            backend,
            lease,
            ttl,
            margin,
            opts.rpc_timeout,
            Deadline::after(sent, ttl - margin),
        ))
    }

    /// Takes over a lease that is still alive (after a restart): checks it
    /// exists, renews it at once, and keeps it alive from then on.
    pub(crate) async fn resume(
        backend: Backend,
        lease: LeaseId,
        opts: SessionOptions,
    ) -> Result<Session> {
        let ttl_info = backend.time_to_live(lease, opts.rpc_timeout).await?;
        let Some((granted, _)) = ttl_info else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("lease {lease:x} ({lease}) not found: it expired or was revoked"),
            ));
        };
        let sent = stamp();
        let ttl_left = backend.keep_alive(lease, opts.rpc_timeout).await?;
        if ttl_left <= 0 {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("lease {lease:x} ({lease}) expired while resuming"),
            ));
        }
        let ttl = Duration::from_secs(granted.max(1) as u64);
        let (_, margin) = SessionOptions { ttl, ..opts }.validate()?;
        if margin > ttl / 2 {
            return Err(Error::invalid(format!(
                "margin {margin:?} is more than half of lease {lease:x}'s TTL of {ttl:?}"
            )));
        }
        Ok(Session::spawn(
            backend,
            lease,
            ttl,
            margin,
            opts.rpc_timeout,
            Deadline::after(sent, ttl - margin),
        ))
    }

    fn spawn(
        backend: Backend,
        lease: LeaseId,
        ttl: Duration,
        margin: Duration,
        rpc_timeout: Duration,
        deadline: Deadline,
    ) -> Session {
        let inner = Arc::new(SessionInner {
            backend,
            lease,
            ttl,
            margin,
            rpc_timeout,
            deadline: Mutex::new(deadline),
            state: watch::Sender::new(State::Alive),
            callbacks: Mutex::new(Vec::new()),
            orphans: Mutex::new(Vec::new()),
            cleaning: AtomicBool::new(false),
            close_hooks: Mutex::new(Vec::new()),
            nonce: session_nonce(),
            seq: AtomicU64::new(0),
            #[cfg(feature = "test-hooks")]
            wakeups: AtomicU64::new(0),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(keepalive_loop(Arc::downgrade(&inner)));
        *lock(&inner.task) = Some(task);
        Session { inner }
    }

    /// How many times this session's lock and election waiters were woken
    /// by their predecessor's delete. One release should wake one waiter;
    /// a count that jumps by the queue length on one release is a herd.
    /// A test hook (cargo feature `test-hooks`, which only shardkit's own
    /// tests enable), not API.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn waiter_wakeups(&self) -> u64 {
        self.inner.wakeups.load(Ordering::Relaxed)
    }

    /// The lease id (for resuming after a restart, and in fencing tokens).
    pub fn lease_id(&self) -> LeaseId {
        self.inner.lease
    }

    /// The TTL the server granted.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// How long before the TTL the session gives up.
    pub fn margin(&self) -> Duration {
        self.inner.margin
    }

    /// Time left before the local deadline (zero once passed or lost).
    pub fn remaining(&self) -> Duration {
        if !matches!(*self.inner.state.borrow(), State::Alive) {
            return Duration::ZERO;
        }
        lock(&self.inner.deadline).left()
    }

    /// Whether the session has been declared lost (not merely closed).
    pub fn is_lost(&self) -> bool {
        matches!(*self.inner.state.borrow(), State::Lost(_))
    }

    /// Whether [`close`](Session::close) was called.
    pub fn is_closed(&self) -> bool {
        matches!(*self.inner.state.borrow(), State::Closed)
    }

    /// Resolves with the reason once the session is lost. Never resolves for
    /// a session that is closed instead.
    ///
    /// In a child forked after the session was made, which can neither keep
    /// it alive nor hear of its loss, it resolves at once with the error
    /// saying so (kind `InvalidArgument`).
    pub async fn lost(&self) -> Error {
        if let Err(e) = self.inner.backend.check_process() {
            return e;
        }
        let mut rx = self.inner.state.subscribe();
        loop {
            if let State::Lost(e) = &*rx.borrow_and_update() {
                return e.clone();
            }
            if rx.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Resolves when the session is lost or closed; the error says which.
    pub(crate) async fn ended(&self) -> Error {
        if let Err(e) = self.inner.backend.check_process() {
            return e;
        }
        let mut rx = self.inner.state.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                State::Lost(e) => return e.clone(),
                State::Closed => return closed_error(self.inner.lease),
                State::Alive => {}
            }
            if rx.changed().await.is_err() {
                return closed_error(self.inner.lease);
            }
        }
    }

    /// Registers `callback` to run exactly once when the session is lost,
    /// on the thread that notices (a runtime thread, or the caller's when it
    /// is already lost). It must return promptly. It never runs for a
    /// session that is closed.
    pub fn on_lost(&self, callback: impl FnOnce(&Error) + Send + 'static) {
        let mut cbs = lock(&self.inner.callbacks);
        // Clone the reason out so neither lock is held while the callback
        // runs: it may well call `close`, which needs both.
        let lost = match &*self.inner.state.borrow() {
            State::Lost(e) => Some(e.clone()),
            _ => None,
        };
        match lost {
            Some(e) => {
                drop(cbs);
                callback(&e);
            }
            None => cbs.push(Box::new(callback)),
        }
    }

    /// Ok while the session may still act; the loss reason otherwise. Also
    /// declares the session lost when the deadline has passed but the
    /// background task has not run yet (a process just woken from a pause).
    /// In a child forked after the session was made: `InvalidArgument`,
    /// saying so (everything under the session fails the same way).
    pub fn check(&self) -> Result<()> {
        self.inner.check()
    }

    /// Ok in the process the session was made in; in a forked child, the
    /// error saying it cannot be used there.
    pub(crate) fn check_process(&self) -> Result<()> {
        self.inner.backend.check_process()
    }

    /// The timeout for the next request: the configured bound, cut to the
    /// time the lease has left. Errors when nothing is left.
    pub(crate) fn rpc_timeout(&self) -> Result<Duration> {
        self.inner.check()?;
        let left = lock(&self.inner.deadline).left();
        Ok(self.inner.rpc_timeout.min(left))
    }

    /// A key unique to this session and object: `prefix` + lease + sequence,
    /// so two locks of one session never share a waiter key.
    pub(crate) fn unique_key(&self, prefix: &[u8]) -> Vec<u8> {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let mut k = prefix.to_vec();
        k.extend_from_slice(
            format!("{:016x}.{:08x}.{n}", self.inner.lease, self.inner.nonce).as_bytes(),
        );
        k
    }

    /// Deletes our `key` if it still has `create_revision` (0: if it is
    /// still under our lease); when that fails, leaves it to the keepalive
    /// rounds to retry.
    pub(crate) async fn delete_own_key(&self, key: &[u8], create_revision: i64) {
        let timeout = self.inner.rpc_timeout;
        if delete_key(
            &self.inner.backend,
            key,
            create_revision,
            self.inner.lease,
            timeout,
        )
        .await
        .is_err()
        {
            self.forget_later(key);
        }
    }

    /// Deletes `key` now and on the keepalive rounds of the next request
    /// timeout: a write whose answer we stopped waiting for may still land
    /// after the first delete, and must not outlive the error that
    /// abandoned it.
    pub(crate) async fn abandon_key(&self, key: &[u8]) {
        self.forget_later(key);
        self.delete_own_key(key, 0).await;
    }

    /// Queues `key` for deletion by the keepalive rounds. Synchronous and
    /// runtime-free, so `Drop` impls can use it.
    pub(crate) fn forget_later(&self, key: &[u8]) {
        let until = Instant::now() + self.inner.rpc_timeout + self.inner.ttl / 3;
        lock(&self.inner.orphans).push(Orphan {
            key: key.to_vec(),
            until,
        });
    }

    /// Registers a hook `close` runs before it revokes; returns its id.
    pub(crate) fn add_close_hook(&self, hook: CloseHook) -> u64 {
        let id = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.close_hooks).push((id, hook));
        id
    }

    /// Removes a hook added by [`add_close_hook`](Session::add_close_hook).
    pub(crate) fn remove_close_hook(&self, id: u64) {
        lock(&self.inner.close_hooks).retain(|(i, _)| *i != id);
    }

    /// Stops keeping the lease alive and revokes it, deleting every key held
    /// under it (locks, candidacies, shards). Lost callbacks do not run.
    ///
    /// In a child forked after the session was made it fails at once
    /// (`InvalidArgument`) and changes nothing: the parent still owns it.
    pub async fn close(&self) -> Result<()> {
        self.inner.backend.check_process()?;
        let was_alive = self.inner.state.send_if_modified(|s| {
            if matches!(s, State::Alive) {
                *s = State::Closed;
                true
            } else {
                false
            }
        });
        if let Some(t) = lock(&self.inner.task).take() {
            t.abort();
        }
        lock(&self.inner.callbacks).clear();
        let hooks: Vec<CloseHook> = std::mem::take(&mut *lock(&self.inner.close_hooks))
            .into_iter()
            .map(|(_, h)| h)
            .collect();
        for hook in hooks {
            hook();
        }
        if !was_alive && self.is_lost() {
            // Declaring the loss already started revoking in the background.
            return Ok(());
        }
        let r = self
            .inner
            .backend
            .revoke(self.inner.lease, self.inner.rpc_timeout)
            .await;
        if r.is_err() {
            revoke_in_background(&self.inner);
        }
        r
    }
}

fn closed_error(lease: LeaseId) -> Error {
    Error::new(
        ErrorKind::SessionLost,
        format!("session of lease {lease:x} was closed"),
    )
}

impl SessionInner {
    fn check(&self) -> Result<()> {
        // First: in a forked child the state below is a stale copy.
        self.backend.check_process()?;
        match &*self.state.borrow() {
            State::Lost(e) => return Err(e.clone()),
            State::Closed => return Err(closed_error(self.lease)),
            State::Alive => {}
        }
        if lock(&self.deadline).passed() {
            return Err(self.declare_lost(self.deadline_message()));
        }
        Ok(())
    }

    fn deadline_message(&self) -> String {
        format!(
            "no keepalive of lease {:x} acknowledged within ttl {}s - margin {} ms",
            self.lease,
            self.ttl.as_secs(),
            self.margin.as_millis()
        )
    }

    fn declare_lost(&self, why: String) -> Error {
        let err = Error::new(ErrorKind::SessionLost, why);
        let first = self.state.send_if_modified(|s| {
            if matches!(s, State::Alive) {
                *s = State::Lost(err.clone());
                true
            } else {
                false
            }
        });
        if first {
            revoke_in_background(self);
            let cbs = std::mem::take(&mut *lock(&self.callbacks));
            for cb in cbs {
                cb(&err);
            }
            err
        } else {
            match &*self.state.borrow() {
                State::Lost(e) => e.clone(),
                _ => closed_error(self.lease),
            }
        }
    }
}

/// Renews the lease every TTL/3 and wakes at the deadline to declare the
/// session lost if no renewal was acknowledged. Holds only a weak reference,
/// so dropping every `Session` handle stops it (the lease then expires).
/// Nothing else runs in this loop: orphan cleanup has its own task, so a
/// slow delete can never hold up a renewal or the loss notice.
async fn keepalive_loop(weak: Weak<SessionInner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if !matches!(*inner.state.borrow(), State::Alive) {
            return;
        }
        let deadline = *lock(&inner.deadline);
        if deadline.passed() {
            inner.declare_lost(inner.deadline_message());
            return;
        }
        let interval = inner.ttl / 3;
        let sent = stamp();
        let timeout = inner.rpc_timeout.min(deadline.left());
        let next = match inner.backend.keep_alive(inner.lease, timeout).await {
            Ok(ttl) if ttl > 0 => {
                let ttl = Duration::from_secs(ttl as u64).min(inner.ttl);
                let fresh = Deadline::after(sent, ttl - inner.margin);
                {
                    let mut d = lock(&inner.deadline);
                    if fresh.mono > d.mono {
                        *d = fresh;
                    }
                }
                spawn_orphan_cleanup(&inner);
                sent.0 + interval
            }
            Ok(_) => {
                inner.declare_lost(format!("lease {:x} expired on the server", inner.lease));
                return;
            }
            Err(_) => {
                // Try again soon (another endpoint may answer), but never
                // past the deadline, which the next round enforces.
                Instant::now() + (interval / 4).max(Duration::from_millis(50))
            }
        };
        let wake = Instant::now() + lock(&inner.deadline).left();
        drop(inner);
        tokio::time::sleep_until(next.min(wake)).await;
    }
}

/// How long a lost or closed session keeps trying to revoke its lease.
const REVOKE_RETRY_FOR: Duration = Duration::from_secs(60);

/// Revokes the lease in the background, retrying while the store is
/// unreachable. A lost session's keys would otherwise wait out the TTL, and
/// etcd restarts its lease timers when it recovers from an outage, so after
/// a long outage the waiters behind a dead session would wait a whole TTL
/// more. Needs a runtime; without one the server's expiry does the work.
fn revoke_in_background(inner: &SessionInner) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (backend, lease, timeout) = (inner.backend.clone(), inner.lease, inner.rpc_timeout);
    handle.spawn(async move {
        let until = Instant::now() + REVOKE_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        while Instant::now() < until {
            if backend
                .revoke(lease, timeout.min(Duration::from_secs(2)))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    });
}

/// Deletes orphaned keys in a task of its own (one at a time per session),
/// each delete bounded by the configured request timeout.
fn spawn_orphan_cleanup(inner: &Arc<SessionInner>) {
    if lock(&inner.orphans).is_empty() || inner.cleaning.swap(true, Ordering::SeqCst) {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        let orphans = std::mem::take(&mut *lock(&inner.orphans));
        let mut keep = Vec::new();
        for o in orphans {
            let deleted =
                delete_key(&inner.backend, &o.key, 0, inner.lease, inner.rpc_timeout).await;
            if deleted.is_err() || Instant::now() < o.until {
                keep.push(o);
            }
        }
        lock(&inner.orphans).extend(keep);
        inner.cleaning.store(false, Ordering::SeqCst);
    });
}

/// Deletes `key` if it still has `create_revision`, or, when that is 0, if
/// it is still attached to `lease`: a cleanup must never remove a key that
/// meanwhile belongs to someone else (a shard taken over, say).
async fn delete_key(
    backend: &Backend,
    key: &[u8],
    create_revision: i64,
    lease: LeaseId,
    timeout: Duration,
) -> Result<()> {
    let guard = if create_revision > 0 {
        Cmp::create_revision(key.to_vec(), CmpOp::Equal, create_revision)
    } else {
        Cmp {
            key: key.to_vec(),
            op: CmpOp::Equal,
            target: CmpTarget::Lease(lease),
        }
    };
    let txn = Txn {
        compare: vec![guard],
        success: vec![Op::delete(key.to_vec())],
        failure: vec![],
    };
    backend.txn(txn, timeout).await.map(|_| ())
}

/// Locks a std mutex, ignoring poisoning: the data under these mutexes is
/// plain state that a panicking callback cannot leave half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// The configured request timeout, not cut by the deadline: for cleanup
    /// requests that must be tried even after the session is lost.
    pub(crate) fn inner_rpc_timeout(&self) -> Duration {
        self.inner.rpc_timeout
    }
}
