//! A lock held for one scope under a lease of its own: the whole recipe of
//! "grant a session, take the lock, do the work, unlock, revoke" as one
//! object, so nothing of the hold outlives the scope. Python's
//! `with coord.lock(name)`, Go's `ScopedLock`, C's `shardkit_scoped_lock_*`
//! and `shardkit lock NAME -- CMD` are all this type.

use std::sync::{Arc, Mutex, MutexGuard};

use super::coordinator::Coordinator;
use super::lock::Lock;
use super::queue::{self, WaitOptions};
use super::session::{Session, SessionOptions};
use super::token::FencingToken;
use crate::error::{Error, ErrorKind, Result};

/// A lock on `name` that each acquire takes under a fresh lease (of the
/// [`SessionOptions`] given) and each release gives back together with the
/// lease. One object is held at most once at a time; it may be acquired
/// again after a release.
///
/// Dropping it while held (or dropping an acquire half-way) revokes the
/// lease in the background, which frees the lock at once.
#[derive(Debug)]
pub struct ScopedLock {
    coord: Coordinator,
    name: String,
    opts: SessionOptions,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// An acquire is in flight.
    Acquiring,
    Held {
        session: Session,
        lock: Lock,
    },
}

impl ScopedLock {
    /// A scoped lock on `name` (the rules of lock names) whose holds live
    /// under leases made with `opts`. Sends nothing yet.
    pub fn new(coord: &Coordinator, name: &str, opts: SessionOptions) -> Result<ScopedLock> {
        queue::validate_name("lock", name)?;
        opts.validate()?;
        Ok(ScopedLock {
            coord: coord.clone(),
            name: name.to_string(),
            opts,
            state: Arc::default(),
        })
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token of the current hold, if held.
    pub fn token(&self) -> Option<FencingToken> {
        match &*self.state() {
            State::Held { lock, .. } => lock.token(),
            _ => None,
        }
    }

    /// The session of the current hold, if held: to hear of its loss
    /// ([`Session::on_lost`]) or check it before acting.
    pub fn session(&self) -> Option<Session> {
        match &*self.state() {
            State::Held { session, .. } => Some(session.clone()),
            _ => None,
        }
    }

    /// Grants a lease, then waits (as `wait` says) until the lock is held
    /// under it. On any error, or when the future is dropped, the lease is
    /// revoked and the object is idle again. `InvalidArgument` when already
    /// held (or being acquired) through this object.
    pub async fn acquire(&self, wait: &WaitOptions) -> Result<FencingToken> {
        let token = self.take(Some(wait)).await?;
        token.ok_or_else(|| {
            Error::invalid(format!(
                "lock {:?}: a waiting acquire returned no token",
                self.name
            ))
        })
    }

    /// Takes the lock only if it is free now, under a fresh lease (revoked
    /// again when the lock is busy); `None` when it is held elsewhere.
    pub async fn try_acquire(&self) -> Result<Option<FencingToken>> {
        self.take(None).await
    }

    /// `wait`: how to wait for the lock; `None` does not wait.
    async fn take(&self, wait: Option<&WaitOptions>) -> Result<Option<FencingToken>> {
        {
            let mut st = self.state();
            if !matches!(*st, State::Idle) {
                return Err(Error::invalid(format!(
                    "lock {:?} is already entered through this scoped lock (already held, \
                     or being acquired); release it first",
                    self.name
                )));
            }
            *st = State::Acquiring;
        }
        let mut undo = Undo {
            state: &self.state,
            session: None,
        };
        // The caller's timeout and cancel cover the lease grant too, not
        // only the wait for the lock.
        let started = tokio::time::Instant::now();
        let session = self.grant(wait).await?;
        undo.session = Some(session.clone());
        let got = async {
            let lock = Lock::new(&session, &self.name)?;
            let token = match wait {
                Some(wait) => {
                    let left = WaitOptions {
                        timeout: wait.timeout.map(|t| t.saturating_sub(started.elapsed())),
                        cancel: wait.cancel.clone(),
                    };
                    let token = lock
                        .lock_with(&left)
                        .await
                        .map_err(|e| match wait.timeout {
                            // Said in the caller's terms: the whole timeout.
                            Some(t) if e.kind() == ErrorKind::Timeout => {
                                not_acquired_within(&self.name, t, "")
                            }
                            _ => e,
                        })?;
                    Some(token)
                }
                None => lock.try_lock().await?,
            };
            Ok::<_, Error>((lock, token))
        }
        .await;
        // From here on the state is settled below, not by `undo`.
        undo.session = None;
        match got {
            Ok((lock, Some(token))) => {
                *self.state() = State::Held { session, lock };
                Ok(Some(token))
            }
            Ok((_, None)) => {
                *self.state() = State::Idle;
                session.close().await?;
                Ok(None)
            }
            Err(e) => {
                *self.state() = State::Idle;
                // The caller's error is the one that matters; the lease
                // ends with its TTL if this revoke fails too.
                let _ = session.close().await;
                Err(e)
            }
        }
    }

    /// Grants the lease for one hold, within `wait`'s timeout and until its
    /// cancel fires.
    async fn grant(&self, wait: Option<&WaitOptions>) -> Result<Session> {
        let grant = self.coord.session(self.opts);
        let cancelled = async {
            match wait.and_then(|w| w.cancel.as_ref()) {
                Some(c) => c.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let timeout = wait.and_then(|w| w.timeout);
        tokio::select! {
            r = grant => r,
            () = cancelled => Err(Error::new(
                ErrorKind::Cancelled,
                format!("acquire of lock {:?} cancelled while granting its lease", self.name),
            )),
            () = sleep_for(timeout) => Err(not_acquired_within(
                &self.name,
                timeout.unwrap_or_default(),
                ": its lease was still being granted",
            )),
        }
    }

    /// Unlocks and revokes the lease. Both are attempted; the first error
    /// is returned (`Fenced` when the hold had already ended, as
    /// [`Lock::unlock`] says). `InvalidArgument` when not held.
    pub async fn release(&self) -> Result<()> {
        // Looked at and taken under one lock: an acquire in flight (or
        // failing right now) is left exactly as it is.
        let (session, lock) = {
            let mut st = self.state();
            match std::mem::take(&mut *st) {
                State::Held { session, lock } => (session, lock),
                other => {
                    *st = other;
                    return Err(Error::invalid(format!(
                        "lock {:?} is not held through this scoped lock",
                        self.name
                    )));
                }
            }
        };
        let unlocked = lock.unlock().await;
        let closed = session.close().await;
        unlocked.and(closed)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No state is left half-updated by a panic (plain assignments).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for ScopedLock {
    fn drop(&mut self) {
        if let State::Held { session, .. } = std::mem::take(&mut *self.state()) {
            close_in_background(session);
        }
    }
}

/// Resets an acquire that did not finish: the state goes back to idle and
/// the lease, once granted, is revoked.
struct Undo<'a> {
    state: &'a Mutex<State>,
    session: Option<Session>,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*st, State::Acquiring) {
            *st = State::Idle;
        }
        drop(st);
        if let Some(session) = self.session.take() {
            close_in_background(session);
        }
    }
}

/// The `Timeout` error of an acquire that ran out of `timeout`.
fn not_acquired_within(name: &str, timeout: std::time::Duration, why: &str) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "lock {name:?} not acquired within {} ms{why}",
            timeout.as_millis()
        ),
    )
}

/// Sleeps for `d`, or forever when there is no timeout.
async fn sleep_for(d: Option<std::time::Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Revokes `session` without waiting: from a drop, which cannot await.
fn close_in_background(session: Session) {
    let handle = tokio::runtime::Handle::try_current()
        .ok()
        .or_else(|| crate::runtime::shared().ok().map(|rt| rt.handle().clone()));
    if let Some(rt) = handle {
        rt.spawn(async move {
            let _ = session.close().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::kv::RangeOpts;
    use crate::lease::LOCK_PREFIX;
    use std::time::Duration;

    fn opts() -> SessionOptions {
        SessionOptions {
            ttl: Duration::from_secs(30),
            ..SessionOptions::default()
        }
    }

    /// Keys under the lock's prefix: what a hold (or a waiter) leaves.
    async fn keys(coord: &Coordinator, name: &str) -> usize {
        let prefix = format!("{LOCK_PREFIX}{name}/");
        let r = coord.range(prefix.as_bytes(), RangeOpts::prefix()).await;
        r.unwrap().kvs.len()
    }

    #[tokio::test]
    async fn holds_exclude_and_release_revokes_the_lease() {
        let coord = Coordinator::embedded();
        let a = coord.scoped_lock("jobs", opts()).unwrap();
        let b = coord.scoped_lock("jobs", opts()).unwrap();
        let t1 = a.acquire(&WaitOptions::default()).await.unwrap();
        assert_eq!(a.token(), Some(t1.clone()));
        let lease = a.session().unwrap().lease_id();
        assert_eq!(b.try_acquire().await.unwrap(), None);
        assert!(b.token().is_none() && b.session().is_none());
        assert_eq!(keys(&coord, "jobs").await, 1, "a busy try leaves no key");

        a.release().await.unwrap();
        assert!(a.token().is_none());
        assert_eq!(coord.lease_ttl(lease).await.unwrap(), None, "lease revoked");
        let t2 = b.acquire(&WaitOptions::default()).await.unwrap();
        assert!(t2.revision > t1.revision, "{t2} after {t1}");
        b.release().await.unwrap();
        // Reusable after a release.
        let t3 = a.acquire(&WaitOptions::default()).await.unwrap();
        assert!(t3.revision > t2.revision);
        a.release().await.unwrap();
        assert_eq!(keys(&coord, "jobs").await, 0);
    }

    #[tokio::test]
    async fn misuse_is_an_error_that_changes_nothing() {
        let coord = Coordinator::embedded();
        let e = coord.scoped_lock("", opts()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let bad_ttl = SessionOptions {
            ttl: Duration::ZERO,
            ..SessionOptions::default()
        };
        let e = coord.scoped_lock("x", bad_ttl).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);

        let a = coord.scoped_lock("x", opts()).unwrap();
        let e = a.release().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("not held"), "{e}");
        let t = a.acquire(&WaitOptions::default()).await.unwrap();
        let e = a.acquire(&WaitOptions::default()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("already held"), "{e}");
        assert_eq!(a.token(), Some(t), "the hold is untouched");
        a.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_timed_out_or_dropped_acquire_leaves_nothing() {
        let coord = Coordinator::embedded();
        let holder = coord.scoped_lock("busy", opts()).unwrap();
        holder.acquire(&WaitOptions::default()).await.unwrap();
        let waiter = coord.scoped_lock("busy", opts()).unwrap();

        let e = waiter
            .acquire(&WaitOptions::timeout(Duration::from_millis(50)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(waiter.session().is_none());
        assert_eq!(keys(&coord, "busy").await, 1, "only the holder's key");

        // Dropped mid-wait: its lease is revoked in the background.
        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            waiter.acquire(&WaitOptions::default()),
        )
        .await;
        assert!(dropped.is_err());
        for _ in 0..100 {
            if keys(&coord, "busy").await == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(keys(&coord, "busy").await, 1, "the waiter's key went");
        // And the object is idle again.
        holder.release().await.unwrap();
        waiter.acquire(&WaitOptions::default()).await.unwrap();
        waiter.release().await.unwrap();
    }

    /// A release racing a failing acquire leaves the object idle, never
    /// stuck "being acquired".
    #[test]
    fn release_racing_a_failed_acquire_leaves_it_idle() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let coord = Coordinator::embedded();
        let holder = coord.scoped_lock("race", opts()).unwrap();
        rt.block_on(holder.acquire(&WaitOptions::default()))
            .unwrap();
        let a = Arc::new(coord.scoped_lock("race", opts()).unwrap());
        let done = Arc::new(AtomicBool::new(false));
        // Releases from other threads, as fast as they go.
        let spammers: Vec<_> = (0..2)
            .map(|_| {
                let (a, done, rt) = (a.clone(), done.clone(), rt.handle().clone());
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        let _ = rt.block_on(a.release());
                    }
                })
            })
            .collect();
        for _ in 0..3000 {
            let e = rt
                .block_on(a.acquire(&WaitOptions::timeout(Duration::ZERO)))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        }
        done.store(true, Ordering::Relaxed);
        for t in spammers {
            t.join().unwrap();
        }
        assert!(matches!(*a.state(), State::Idle), "{:?}", *a.state());
        rt.block_on(holder.release()).unwrap();
    }

    #[tokio::test]
    async fn a_cancelled_acquire_is_cancelled_and_leaves_nothing() {
        let coord = Coordinator::embedded();
        let a = coord.scoped_lock("c", opts()).unwrap();
        let cancel = crate::lease::Cancel::new();
        cancel.cancel();
        let wait = WaitOptions {
            timeout: None,
            cancel: Some(cancel),
        };
        let e = a.acquire(&wait).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
        assert!(a.session().is_none());
        assert_eq!(keys(&coord, "c").await, 0);
        a.acquire(&WaitOptions::default()).await.unwrap();
        a.release().await.unwrap();
    }

    #[tokio::test]
    async fn dropping_a_held_lock_frees_it_without_waiting_for_the_ttl() {
        let coord = Coordinator::embedded();
        let a = coord.scoped_lock("gone", opts()).unwrap();
        a.acquire(&WaitOptions::default()).await.unwrap();
        drop(a);
        let b = coord.scoped_lock("gone", opts()).unwrap();
        // The TTL is 30 s: only the revoke frees it this soon.
        b.acquire(&WaitOptions::timeout(Duration::from_secs(5)))
            .await
            .unwrap();
        b.release().await.unwrap();
    }
}
