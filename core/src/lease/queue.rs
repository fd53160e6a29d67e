//! The waiter queue locks and elections share, as etcd's `concurrency`
//! package builds it: one key per waiter under a prefix, ordered by create
//! revision; each waiter watches only the key just before its own, so a
//! release wakes exactly one waiter (no herd).

use std::time::Duration;

use tokio::time::Instant;

use super::cancel::{cancelled, Cancel};
use super::kv::{Cmp, CmpOp, EventKind, Kv, Op, RangeOpts, SortOrder, SortTarget, Txn};
use super::session::Session;
use crate::error::{Error, ErrorKind, Result};

/// Times a waiter was woken by its predecessor's delete, process-wide: the
/// herd test checks one release wakes exactly one waiter.
#[cfg(feature = "test-hooks")]
static WAKEUPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many waiter wake-ups this process has seen. A test hook (cargo
/// feature `test-hooks`, which only shardkit's own tests enable), not API.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub fn waiter_wakeups() -> u64 {
    WAKEUPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Longest name accepted for a lock, election or shard group.
pub const MAX_NAME_LEN: usize = 512;

/// Checks a lock/election/group name: non-empty text without control
/// characters, so it can be written in keys, logs and environment variables.
/// `what` names the kind of name in the message ("lock", "election").
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{what} name is empty")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{what} name {:?}... is {} bytes; at most {MAX_NAME_LEN}",
            &name[..name.char_indices().nth(32).map_or(name.len(), |(i, _)| i)],
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} name {name:?} contains control characters"
        )));
    }
    Ok(())
}

/// The key segment for a validated name: `/` and `%` are percent-encoded,
/// so names nest in no one else's prefix (lock `a` is not a prefix of lock
/// `a/b`) while hierarchical names such as `jobs/daily` stay legible.
pub(crate) fn key_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// Options for a wait in `lock` or `campaign`.
#[derive(Debug, Clone, Default)]
pub struct WaitOptions {
    /// Give up after this long (error kind `Timeout`); `None` waits until
    /// acquired, cancelled or the session ends.
    pub timeout: Option<Duration>,
    /// Give up when this fires (error kind `Cancelled`).
    pub cancel: Option<Cancel>,
}

impl WaitOptions {
    /// Wait at most `timeout`.
    pub fn timeout(timeout: Duration) -> WaitOptions {
        WaitOptions {
            timeout: Some(timeout),
            cancel: None,
        }
    }
}

/// A waiter's place in a queue.
pub(crate) struct Place {
    pub(crate) key: Vec<u8>,
    pub(crate) revision: i64,
    /// True when no key under the prefix is older than ours.
    pub(crate) first: bool,
}

/// Adds `key` (with `value`, under the session's lease) to the queue at
/// `prefix`. A request that fails may still have been applied by the server,
/// so on error the key is deleted (or left to the session to retry).
pub(crate) async fn enqueue(
    session: &Session,
    prefix: &[u8],
    key: Vec<u8>,
    value: Vec<u8>,
) -> Result<Place> {
    let timeout = session.rpc_timeout()?;
    let lease = session.lease_id();
    let first_op = Op::Get {
        key: prefix.to_vec(),
        opts: RangeOpts {
            prefix: true,
            sort: Some((SortTarget::Create, SortOrder::Ascend)),
            limit: 1,
            max_create_revision: 0,
        },
    };
    let txn = Txn {
        compare: vec![Cmp::create_revision(key.clone(), CmpOp::Equal, 0)],
        success: vec![
            Op::Put {
                key: key.clone(),
                value,
                lease,
            },
            first_op.clone(),
        ],
        failure: vec![Op::get(key.clone()), first_op],
    };
    let res = match session.inner.backend.txn(txn, timeout).await {
        Ok(r) => r,
        Err(e) => {
            session.abandon_key(&key).await;
            return Err(e);
        }
    };
    let revision = if res.succeeded {
        res.revision
    } else {
        // Our unique key already exists: only possible when a previous
        // attempt's answer was lost. Reuse it.
        match res.results.first().and_then(|r| r.kvs.first()) {
            Some(kv) => kv.create_revision,
            None => {
                return Err(Error::new(
                    ErrorKind::Io,
                    "queue key vanished inside a transaction",
                ));
            }
        }
    };
    let first = match res.results.get(1).and_then(|r| r.kvs.first()) {
        Some(owner) => owner.create_revision == revision,
        None => true,
    };
    Ok(Place {
        key,
        revision,
        first,
    })
}

/// Waits until no key under `prefix` is older than `place`, watching only
/// the immediate predecessor each round. Then re-reads our own key: if it
/// vanished (lease expired, key deleted), the wait failed.
pub(crate) async fn wait_first(
    session: &Session,
    prefix: &[u8],
    place: &Place,
    what: &str,
    opts: &WaitOptions,
) -> Result<()> {
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    // One select around the whole wait, requests included, so a timeout or
    // cancel is honoured even while a read or watch is in flight.
    tokio::select! {
        biased;
        e = session.ended() => Err(e),
        _ = cancelled(opts.cancel.as_ref()) => {
            Err(Error::new(ErrorKind::Cancelled, format!("{what} cancelled while waiting")))
        }
        _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => Err(Error::new(
            ErrorKind::Timeout,
            format!("{what} not acquired within {} ms", opts.timeout.unwrap_or_default().as_millis()),
        )),
        r = wait_predecessors(session, prefix, place) => r,
    }?;
    check_own_key(session, place, what).await
}

/// Waits until no key under `prefix` is older than `place`.
async fn wait_predecessors(session: &Session, prefix: &[u8], place: &Place) -> Result<()> {
    let backend = &session.inner.backend;
    loop {
        let timeout = session.rpc_timeout()?;
        let opts_pred = RangeOpts {
            prefix: true,
            sort: Some((SortTarget::Create, SortOrder::Descend)),
            limit: 1,
            max_create_revision: place.revision - 1,
        };
        let r = backend.range(prefix, opts_pred, timeout).await?;
        let Some(pred) = r.kvs.first().cloned() else {
            return Ok(());
        };
        let mut watch = backend
            .watch(&pred.key, false, r.revision + 1, timeout)
            .await?;
        loop {
            match watch.next().await {
                Some(Ok(events)) => {
                    if events.iter().any(|e| e.kind == EventKind::Delete) {
                        #[cfg(feature = "test-hooks")]
                        {
                            WAKEUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            session
                                .inner
                                .wakeups
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        break;
                    }
                }
                // History we asked for was compacted, or the stream closed:
                // read the queue again and watch afresh; the wait is not
                // lost with the watch.
                Some(Err(e)) if e.kind() == ErrorKind::Compacted => break,
                None => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    break;
                }
                Some(Err(e)) => return Err(e),
            }
        }
    }
}

/// Confirms our key still exists with our revision.
pub(crate) async fn check_own_key(session: &Session, place: &Place, what: &str) -> Result<()> {
    let timeout = session.rpc_timeout()?;
    let r = session
        .inner
        .backend
        .range(&place.key, RangeOpts::default(), timeout)
        .await?;
    match r.kvs.first() {
        Some(Kv { create_revision, .. }) if *create_revision == place.revision => Ok(()),
        _ => Err(Error::new(
            ErrorKind::SessionLost,
            format!(
                "{what}: waiter key {} vanished while waiting (lease {:x} expired or the key was deleted)",
                String::from_utf8_lossy(&place.key),
                session.lease_id()
            ),
        )),
    }
}

/// Leaves the queue after an error: deletes our key, awaiting the delete so
/// that no stale key is left when the error reaches the caller.
pub(crate) async fn leave(session: &Session, place: &Place) {
    session.delete_own_key(&place.key, place.revision).await;
}

/// Cleanup for a dropped future: if an acquire (or release) future is
/// dropped while its key may exist, the key is queued for deletion at once
/// (synchronously, no runtime needed) and a delete is started when a runtime
/// is at hand.
pub(crate) struct LeaveOnDrop {
    pub(crate) session: Session,
    pub(crate) key: Vec<u8>,
    pub(crate) armed: bool,
}

impl LeaveOnDrop {
    pub(crate) fn new(session: &Session, key: &[u8]) -> LeaveOnDrop {
        LeaveOnDrop {
            session: session.clone(),
            key: key.to_vec(),
            armed: true,
        }
    }
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.session.forget_later(&self.key);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let session = self.session.clone();
            let key = std::mem::take(&mut self.key);
            handle.spawn(async move { session.delete_own_key(&key, 0).await });
        }
    }
}

/// Enqueues a fresh key and waits to be first, all within `opts`: the
/// timeout covers the enqueue too. On error the key is gone before the error
/// returns; a dropped future deletes it in the background.
pub(crate) async fn acquire(
    session: &Session,
    prefix: &[u8],
    value: Vec<u8>,
    what: &str,
    opts: &WaitOptions,
) -> Result<Place> {
    if opts.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
        return Err(Error::new(
            ErrorKind::Cancelled,
            format!("{what} cancelled before it was tried"),
        ));
    }
    let started = Instant::now();
    let key = session.unique_key(prefix);
    let mut guard = LeaveOnDrop::new(session, &key);
    let enq = enqueue(session, prefix, key.clone(), value);
    let place = match opts.timeout {
        Some(t) => match tokio::time::timeout(t, enq).await {
            Ok(r) => r,
            Err(_) => {
                // The request may be applied after we stopped waiting.
                guard.armed = false;
                session.abandon_key(&key).await;
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{what} not acquired within {} ms", t.as_millis()),
                ));
            }
        },
        None => enq.await,
    };
    let place = match place {
        Ok(p) => p,
        Err(e) => {
            guard.armed = false; // enqueue abandoned the key itself
            return Err(e);
        }
    };
    if !place.first {
        let rest = WaitOptions {
            timeout: opts.timeout.map(|t| t.saturating_sub(started.elapsed())),
            cancel: opts.cancel.clone(),
        };
        if let Err(e) = wait_first(session, prefix, &place, what, &rest).await {
            // Stays armed until the delete is done: a drop mid-delete still
            // leaves the key queued for cleanup.
            leave(session, &place).await;
            guard.armed = false;
            let e = if e.kind() == ErrorKind::Timeout && opts.timeout.is_some() {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{what} not acquired within {} ms",
                        opts.timeout.unwrap_or_default().as_millis()
                    ),
                )
            } else {
                e
            };
            return Err(e);
        }
    }
    guard.armed = false;
    Ok(place)
}
