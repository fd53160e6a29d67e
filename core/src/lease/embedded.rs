//! An in-process store with etcd v3's semantics for the subset in
//! [`kv`](super::kv): the default backend when no etcd endpoints are given.
//!
//! Everything lives behind one `std::sync::Mutex` that is never held across
//! an `.await`; every method does its work synchronously under it, so a txn
//! is atomic and watchers see batches in revision order.
//!
//! Where etcd's behaviour is a choice, this store makes etcd's (3.4):
//! - the revision of an empty store is 1; every txn that changes something
//!   takes exactly one new revision, shared by all its writes; one that
//!   changes nothing (reads, deletes of absent keys) takes none;
//! - a txn is checked before anything runs: at most 128 ops per branch and
//!   128 compares (etcd's default `--max-txn-ops`), non-empty keys, no key
//!   put twice or put and deleted in one branch ("duplicate key"), and every
//!   lease its chosen branch puts under must exist; a failing check changes
//!   nothing;
//! - a value compare on a missing key is false whatever the operator; other
//!   compares see a missing key as revision/version/lease 0;
//! - a lease that expires (or is revoked) deletes its keys in one revision,
//!   in key order, and watchers get the delete events; expiry is active: a
//!   reaper task deletes the keys at the deadline even if nobody calls;
//! - `compact(r)` makes every revision below `r` unavailable: a watch
//!   starting below `r` gets a `Compacted` error, one starting at `r` or
//!   later replays normally. Compacting at or below the current compaction
//!   point is a `Compacted` error, above the current revision an
//!   `InvalidArgument` (etcd's "future revision").
//!
//! Memory is bounded: the event history used to replay watches keeps at most
//! [`HISTORY_LIMIT`] events; beyond that the oldest whole revisions are
//! compacted automatically (like etcd's auto-compaction), so a long-running
//! process does not grow without bound.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::kv::{
    key_matches, Cmp, CmpOp, CmpTarget, Event, EventKind, Kv, LeaseId, Op, OpResult, Range,
    RangeOpts, SortOrder, SortTarget, Txn, TxnResult, Watch,
};
use super::validate::show_key;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::Home;

/// Most events kept for watch replay; older revisions are compacted away.
pub(crate) const HISTORY_LIMIT: usize = 100_000;

/// Lease ids live in the positive half of `i64`.
const ID_MASK: u64 = i64::MAX as u64;

/// In-process store with etcd's semantics. Clones share one store.
#[derive(Clone)]
pub(crate) struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes the reaper early: a nearer lease deadline, or the store dropped.
    /// Shared outside `Inner` so the reaper can wait on it without keeping
    /// the store alive.
    wake: Arc<Notify>,
    /// The process whose runtime runs the reaper (see `Backend`).
    home: Home,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The reaper waits on `wake` holding only a `Weak`; wake it so it sees
        // the store is gone and ends instead of sleeping forever.
        self.wake.notify_one();
    }
}

struct Lease {
    ttl: i64,
    expires_at: Instant,
    keys: BTreeSet<Vec<u8>>,
}

struct Watcher {
    key: Vec<u8>,
    prefix: bool,
    /// First revision this watcher wants (a watch may start in the future).
    start: i64,
    tx: mpsc::UnboundedSender<Result<Vec<Event>>>,
}

impl Watcher {
    fn matches(&self, key: &[u8]) -> bool {
        key_matches(&self.key, self.prefix, key)
    }
}

struct State {
    revision: i64,
    kvs: BTreeMap<Vec<u8>, Kv>,
    leases: HashMap<LeaseId, Lease>,
    /// Lease deadlines in order, so expiry checks are O(1) when none is due.
    deadlines: BTreeSet<(Instant, LeaseId)>,
    /// Every event with revision >= `compact_rev`, in revision order (an
    /// event's revision is its `kv.mod_revision`).
    history: VecDeque<Event>,
    /// Revisions below this are compacted (0: nothing compacted yet).
    compact_rev: i64,
    history_limit: usize,
    watchers: Vec<Watcher>,
    lease_counter: u64,
    lease_seed: u64,
    reaper: Option<JoinHandle<()>>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("EmbeddedStore")
            .field("revision", &st.revision)
            .field("keys", &st.kvs.len())
            .field("leases", &st.leases.len())
            .field("watchers", &st.watchers.len())
            .finish_non_exhaustive()
    }
}

impl Default for EmbeddedStore {
    fn default() -> Self {
        EmbeddedStore::new()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, and every mutation is
        // validated before it starts, so a poisoned state is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EmbeddedStore {
    /// An empty store at revision 1.
    pub(crate) fn new() -> EmbeddedStore {
        EmbeddedStore::with_history_limit(HISTORY_LIMIT)
    }

    fn with_history_limit(history_limit: usize) -> EmbeddedStore {
        // A per-store random seed makes lease ids look like etcd's (random)
        // and differ between stores, while the counter keeps them unique.
        let h = std::collections::hash_map::RandomState::new().build_hasher();
        let state = State {
            revision: 1,
            kvs: BTreeMap::new(),
            leases: HashMap::new(),
            deadlines: BTreeSet::new(),
            history: VecDeque::new(),
            compact_rev: 0,
            history_limit: history_limit.max(1),
            watchers: Vec::new(),
            lease_counter: 0,
            lease_seed: h.finish(),
            reaper: None,
        };
        EmbeddedStore {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                wake: Arc::new(Notify::new()),
                home: Home::here(),
            }),
        }
    }

    /// The process the store was made in.
    pub(crate) fn home(&self) -> Home {
        self.inner.home
    }

    /// Locks the state and applies every lease expiry that is due, so no
    /// operation depends on when the reaper last ran.
    fn lock_now(&self) -> MutexGuard<'_, State> {
        let mut st = self.inner.lock();
        st.expire_due(Instant::now());
        st
    }

    /// Grants a lease of `ttl` seconds (1 to etcd's maximum); returns its id
    /// and the TTL granted.
    pub(crate) async fn grant(&self, ttl: i64) -> Result<(LeaseId, i64)> {
        let now = Instant::now();
        let mut st = self.inner.lock();
        st.expire_due(now);
        let id = st.next_lease_id();
        let expires_at = deadline(now, ttl);
        st.leases.insert(
            id,
            Lease {
                ttl,
                expires_at,
                keys: BTreeSet::new(),
            },
        );
        st.deadlines.insert((expires_at, id));
        self.ensure_reaper(&mut st);
        if st.deadlines.first() == Some(&(expires_at, id)) {
            // The reaper may be sleeping towards a later deadline.
            self.inner.wake.notify_one();
        }
        Ok((id, ttl))
    }

    /// Renews a lease to its full TTL; returns that TTL, or 0 when the lease
    /// is unknown or already expired.
    pub(crate) async fn keep_alive(&self, id: LeaseId) -> Result<i64> {
        let now = Instant::now();
        let mut st = self.inner.lock();
        st.expire_due(now);
        let Some(lease) = st.leases.get_mut(&id) else {
            return Ok(0);
        };
        let old = lease.expires_at;
        let ttl = lease.ttl;
        let new = deadline(now, ttl);
        lease.expires_at = new;
        // The deadline only moves later, so the reaper needs no wake-up: it
        // finds nothing due when it wakes at the old one and sleeps again.
        st.deadlines.remove(&(old, id));
        st.deadlines.insert((new, id));
        Ok(ttl)
    }

    /// Revokes a lease and deletes its keys in one revision; an unknown
    /// lease is fine.
    pub(crate) async fn revoke(&self, id: LeaseId) -> Result<()> {
        let mut st = self.lock_now();
        st.revoke_lease(id);
        Ok(())
    }

    /// `(granted_ttl, remaining_secs)` of a live lease, the remainder rounded
    /// up to whole seconds; `None` when the lease is gone.
    pub(crate) async fn time_to_live(&self, id: LeaseId) -> Result<Option<(i64, i64)>> {
        let now = Instant::now();
        let mut st = self.inner.lock();
        st.expire_due(now);
        Ok(st.leases.get(&id).map(|l| {
            let left = l.expires_at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            (l.ttl, i64::try_from(secs).unwrap_or(i64::MAX))
        }))
    }

    /// Runs a transaction atomically (see the module docs for the checks).
    pub(crate) async fn txn(&self, txn: Txn) -> Result<TxnResult> {
        let mut st = self.lock_now();
        let succeeded = txn.compare.iter().all(|c| st.compare(c));
        let ops = if succeeded { txn.success } else { txn.failure };
        // Checked before anything is applied: no half-applied txn.
        for op in &ops {
            if let Op::Put { lease, .. } = op {
                if *lease != 0 && !st.leases.contains_key(lease) {
                    return Err(lease_not_found(*lease));
                }
            }
        }
        let rev = st.revision + 1;
        let mut events = Vec::new();
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            // Reads see the writes before them in the txn, as in etcd.
            let res = match op {
                Op::Get { key, opts } => OpResult {
                    kvs: st.read(&key, &opts),
                    deleted: 0,
                },
                Op::Put { key, value, lease } => {
                    st.put(rev, key, value, lease, &mut events);
                    OpResult::default()
                }
                Op::Delete { key, prefix } => OpResult {
                    kvs: Vec::new(),
                    deleted: st.delete(rev, &key, prefix, &mut events),
                },
            };
            results.push(res);
        }
        st.commit(rev, events);
        Ok(TxnResult {
            succeeded,
            revision: st.revision,
            results,
        })
    }

    /// Reads a key, or every key under a prefix (the empty prefix is every
    /// key): filtered by `max_create_revision`, sorted, then limited.
    pub(crate) async fn range(&self, key: &[u8], opts: RangeOpts) -> Result<Range> {
        let st = self.lock_now();
        Ok(Range {
            kvs: st.read(key, &opts),
            revision: st.revision,
        })
    }

    /// Watches a key (or prefix) from `start` (0: from the next revision).
    /// History from `start` is replayed first, one batch per revision, then
    /// live changes follow. A `start` below the compaction point yields one
    /// `Compacted` error and ends the watch.
    pub(crate) async fn watch(&self, key: &[u8], prefix: bool, start: i64) -> Result<Watch> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.lock_now();
        // Watches closed since the last write would otherwise linger while
        // the store is idle.
        st.watchers.retain(|w| !w.tx.is_closed());
        let start = if start == 0 { st.revision + 1 } else { start };
        if start < st.compact_rev {
            // The receiver is still open, so this send cannot fail.
            let _ = tx.send(Err(Error::new(
                ErrorKind::Compacted,
                format!(
                    "watch of {} from revision {start}: revisions below {} have been compacted",
                    show_key(key),
                    st.compact_rev
                ),
            )));
            return Ok(Watch::new(rx, None));
        }
        let from = st.history.partition_point(|e| e.kv.mod_revision < start);
        let mut batch: Vec<Event> = Vec::new();
        let mut batch_rev = 0;
        for ev in st.history.range(from..) {
            if ev.kv.mod_revision != batch_rev && !batch.is_empty() {
                let _ = tx.send(Ok(std::mem::take(&mut batch)));
            }
            batch_rev = ev.kv.mod_revision;
            if key_matches(key, prefix, &ev.kv.key) {
                batch.push(ev.clone());
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Ok(batch));
        }
        // Registered under the same lock as the replay: no event is missed
        // or seen twice between the two.
        st.watchers.push(Watcher {
            key: key.to_vec(),
            prefix,
            start,
            tx,
        });
        Ok(Watch::new(rx, None))
    }

    /// Drops history below `rev`: watches starting there fail with
    /// `Compacted` from now on.
    pub(crate) async fn compact(&self, rev: i64) -> Result<()> {
        let mut st = self.lock_now();
        if rev > st.revision {
            return Err(Error::invalid(format!(
                "compact revision {rev} is in the future (current revision {})",
                st.revision
            )));
        }
        if rev <= st.compact_rev {
            return Err(Error::new(
                ErrorKind::Compacted,
                format!(
                    "compact revision {rev}: already compacted up to revision {}",
                    st.compact_rev
                ),
            ));
        }
        st.compact_to(rev);
        Ok(())
    }

    /// Starts the reaper if none runs (first grant, or its runtime is gone).
    fn ensure_reaper(&self, st: &mut State) {
        if st.reaper.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        // Outside a tokio runtime there is no reaper; expiry then happens at
        // the next operation, and the next grant inside a runtime starts one.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&self.inner);
            let wake = Arc::clone(&self.inner.wake);
            st.reaper = Some(rt.spawn(reap(weak, wake)));
        }
    }
}

/// Deletes the keys of expired leases at their deadlines. Holds only a
/// `Weak` between rounds, so it never keeps the store alive, and ends once
/// the store is dropped.
async fn reap(store: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(inner) = store.upgrade() else {
                return;
            };
            let mut st = inner.lock();
            st.expire_due(Instant::now());
            st.deadlines.first().map(|&(at, _)| at)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

impl State {
    fn next_lease_id(&mut self) -> LeaseId {
        loop {
            self.lease_counter += 1;
            // A bijection on 63 bits of the counter: unique ids, never
            // repeating, that do not reveal how many leases were granted.
            let mut x = self.lease_counter & ID_MASK;
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) & ID_MASK;
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9) & ID_MASK;
            x ^= x >> 32;
            x ^= self.lease_seed & ID_MASK;
            let id = x as LeaseId;
            if id != 0 && !self.leases.contains_key(&id) {
                return id;
            }
        }
    }

    fn expire_due(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            // Each expired lease is its own revision, as etcd revokes them.
            self.revoke_lease(id);
        }
    }

    fn revoke_lease(&mut self, id: LeaseId) {
        let Some(lease) = self.leases.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(lease.expires_at, id));
        let rev = self.revision + 1;
        let mut events = Vec::with_capacity(lease.keys.len());
        for key in lease.keys {
            if let Some(kv) = self.kvs.remove(&key) {
                events.push(delete_event(kv.key, rev));
            }
        }
        self.commit(rev, events);
    }

    fn compare(&self, c: &Cmp) -> bool {
        let kv = self.kvs.get(&c.key);
        let ord = match (&c.target, kv) {
            // etcd: a value compare on a missing key fails for every operator.
            (CmpTarget::Value(_), None) => return false,
            (CmpTarget::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
            (CmpTarget::CreateRevision(r), _) => kv.map_or(0, |k| k.create_revision).cmp(r),
            (CmpTarget::ModRevision(r), _) => kv.map_or(0, |k| k.mod_revision).cmp(r),
            (CmpTarget::Version(v), _) => kv.map_or(0, |k| k.version).cmp(v),
            (CmpTarget::Lease(l), _) => kv.map_or(0, |k| k.lease).cmp(l),
        };
        match c.op {
            CmpOp::Equal => ord.is_eq(),
            CmpOp::NotEqual => ord.is_ne(),
            CmpOp::Less => ord.is_lt(),
            CmpOp::Greater => ord.is_gt(),
        }
    }

    fn read(&self, key: &[u8], opts: &RangeOpts) -> Vec<Kv> {
        let max_create = opts.max_create_revision;
        let keep = |kv: &&Kv| max_create == 0 || kv.create_revision <= max_create;
        let limit = usize::try_from(opts.limit).unwrap_or(0);
        let by_key = matches!(opts.sort, None | Some((SortTarget::Key, SortOrder::Ascend)));
        let mut out: Vec<Kv> = if !opts.prefix {
            self.kvs
                .get(key)
                .filter(keep)
                .cloned()
                .into_iter()
                .collect()
        } else if by_key && limit > 0 {
            // Key order is the map's order: stop at the limit.
            self.prefix_iter(key)
                .filter(keep)
                .take(limit)
                .cloned()
                .collect()
        } else {
            self.prefix_iter(key).filter(keep).cloned().collect()
        };
        match opts.sort {
            None | Some((SortTarget::Key, SortOrder::Ascend)) => {}
            Some((SortTarget::Key, SortOrder::Descend)) => out.reverse(),
            Some((SortTarget::Create, SortOrder::Ascend)) => {
                out.sort_by_key(|kv| kv.create_revision)
            }
            Some((SortTarget::Create, SortOrder::Descend)) => {
                out.sort_by_key(|kv| std::cmp::Reverse(kv.create_revision))
            }
        }
        if limit > 0 {
            out.truncate(limit);
        }
        out
    }

    fn prefix_iter<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = &'a Kv> + 'a {
        self.kvs
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv)
    }

    fn put(&mut self, rev: i64, key: Vec<u8>, value: Vec<u8>, lease: LeaseId, ev: &mut Vec<Event>) {
        let (create_revision, version, old_lease) = match self.kvs.get(&key) {
            Some(old) => (old.create_revision, old.version + 1, old.lease),
            None => (rev, 1, 0),
        };
        if old_lease != lease {
            if let Some(l) = self.leases.get_mut(&old_lease) {
                l.keys.remove(&key);
            }
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(key.clone());
            }
        }
        let kv = Kv {
            key: key.clone(),
            value,
            create_revision,
            mod_revision: rev,
            version,
            lease,
        };
        ev.push(Event {
            kind: EventKind::Put,
            kv: kv.clone(),
        });
        self.kvs.insert(key, kv);
    }

    fn delete(&mut self, rev: i64, key: &[u8], prefix: bool, ev: &mut Vec<Event>) -> i64 {
        let doomed: Vec<Vec<u8>> = if prefix {
            self.prefix_iter(key).map(|kv| kv.key.clone()).collect()
        } else if self.kvs.contains_key(key) {
            vec![key.to_vec()]
        } else {
            Vec::new()
        };
        let n = doomed.len() as i64;
        for k in doomed {
            if let Some(kv) = self.kvs.remove(&k) {
                if let Some(l) = self.leases.get_mut(&kv.lease) {
                    l.keys.remove(&kv.key);
                }
                ev.push(delete_event(kv.key, rev));
            }
        }
        n
    }

    /// Makes the writes of one txn visible at `rev`: bumps the revision,
    /// records history and feeds watchers. No events, no new revision.
    fn commit(&mut self, rev: i64, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.revision = rev;
        self.watchers.retain(|w| {
            if w.tx.is_closed() {
                return false;
            }
            if rev < w.start {
                return true;
            }
            let batch: Vec<Event> = events
                .iter()
                .filter(|e| w.matches(&e.kv.key))
                .cloned()
                .collect();
            batch.is_empty() || w.tx.send(Ok(batch)).is_ok()
        });
        self.history.extend(events);
        if self.history.len() > self.history_limit {
            // Drop whole revisions, oldest first, until under the limit.
            let excess = self.history.len() - self.history_limit;
            let last_dropped = self.history[excess - 1].kv.mod_revision;
            self.compact_to(last_dropped + 1);
        }
    }

    fn compact_to(&mut self, rev: i64) {
        let keep_from = self.history.partition_point(|e| e.kv.mod_revision < rev);
        self.history.drain(..keep_from);
        self.compact_rev = self.compact_rev.max(rev);
    }
}

fn deadline(now: Instant, ttl: i64) -> Instant {
    let secs = u64::try_from(ttl).unwrap_or(0);
    // Unreachable overflow for TTLs within MAX_LEASE_TTL; fall back to a
    // far deadline rather than panic.
    now.checked_add(Duration::from_secs(secs))
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

fn delete_event(key: Vec<u8>, rev: i64) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: Kv {
            key,
            mod_revision: rev,
            ..Kv::default()
        },
    }
}

fn lease_not_found(id: LeaseId) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("lease {id} ({id:#x}) not found"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::put(key, value)
    }

    fn put_lease(key: &str, value: &str, lease: LeaseId) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }

    async fn write(s: &EmbeddedStore, ops: Vec<Op>) -> TxnResult {
        s.txn(Txn {
            success: ops,
            ..Txn::default()
        })
        .await
        .unwrap()
    }

    async fn get(s: &EmbeddedStore, key: &str) -> Option<Kv> {
        s.range(key.as_bytes(), RangeOpts::default())
            .await
            .unwrap()
            .kvs
            .pop()
    }

    async fn next(w: &mut Watch) -> Vec<Event> {
        tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("watch event within 5 s")
            .expect("watch open")
            .expect("no watch error")
    }

    fn keys(kvs: &[Kv]) -> Vec<&[u8]> {
        kvs.iter().map(|kv| kv.key.as_slice()).collect()
    }

    #[tokio::test]
    async fn revisions_count_writing_txns() {
        let s = EmbeddedStore::new();
        assert_eq!(s.range(b"", RangeOpts::prefix()).await.unwrap().revision, 1);
        let r = write(&s, vec![put("a", "1"), put("b", "1")]).await;
        assert_eq!(r.revision, 2);
        let a = get(&s, "a").await.unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 2, 1));
        assert_eq!(get(&s, "b").await.unwrap().mod_revision, 2);

        let r = write(&s, vec![put("a", "2")]).await;
        assert_eq!(r.revision, 3);
        let a = get(&s, "a").await.unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));
        assert_eq!(a.value, b"2");

        // Reads and deletes of nothing take no revision.
        assert_eq!(write(&s, vec![Op::get("a")]).await.revision, 3);
        let r = write(&s, vec![Op::delete("zz")]).await;
        assert_eq!((r.revision, r.results[0].deleted), (3, 0));

        let r = write(
            &s,
            vec![Op::Delete {
                key: b"".to_vec(),
                prefix: true,
            }],
        )
        .await;
        assert_eq!((r.revision, r.results[0].deleted), (4, 2));
        assert!(get(&s, "a").await.is_none());

        // Re-creation starts a new life: new create revision, version 1.
        write(&s, vec![put("a", "3")]).await;
        let a = get(&s, "a").await.unwrap();
        assert_eq!((a.create_revision, a.version), (5, 1));
    }

    #[tokio::test]
    async fn create_if_absent() {
        let s = EmbeddedStore::new();
        let txn = |v: &str| Txn {
            compare: vec![Cmp::create_revision("lock", CmpOp::Equal, 0)],
            success: vec![put("lock", v)],
            failure: vec![Op::get("lock")],
        };
        let r = s.txn(txn("me")).await.unwrap();
        assert!(r.succeeded);
        assert_eq!(r.revision, 2);
        assert_eq!(r.results, vec![OpResult::default()]);

        let r = s.txn(txn("you")).await.unwrap();
        assert!(!r.succeeded);
        assert_eq!(r.revision, 2);
        let kv = &r.results[0].kvs[0];
        assert_eq!((kv.value.as_slice(), kv.create_revision), (&b"me"[..], 2));
    }

    #[tokio::test]
    async fn compares() {
        let s = EmbeddedStore::new();
        write(&s, vec![put("k", "b")]).await;
        let holds = |c: Cmp| {
            let s = s.clone();
            async move {
                s.txn(Txn {
                    compare: vec![c],
                    ..Txn::default()
                })
                .await
                .unwrap()
                .succeeded
            }
        };
        assert!(holds(Cmp::value("k", CmpOp::Equal, "b")).await);
        assert!(holds(Cmp::value("k", CmpOp::Greater, "a")).await);
        assert!(holds(Cmp::value("k", CmpOp::Less, "ba")).await);
        assert!(holds(Cmp::mod_revision("k", CmpOp::Equal, 2)).await);
        assert!(holds(Cmp::version("k", CmpOp::Greater, 0)).await);
        // A missing key: zero revisions, and value compares always fail.
        assert!(holds(Cmp::version("x", CmpOp::Equal, 0)).await);
        assert!(!holds(Cmp::value("x", CmpOp::Equal, "")).await);
        assert!(!holds(Cmp::value("x", CmpOp::NotEqual, "b")).await);
        let lease0 = Cmp {
            key: b"x".to_vec(),
            op: CmpOp::Equal,
            target: CmpTarget::Lease(0),
        };
        assert!(holds(lease0).await);
    }

    #[tokio::test]
    async fn txn_reads_its_own_writes() {
        let s = EmbeddedStore::new();
        write(&s, vec![put("p/a", "1")]).await;
        let r = write(
            &s,
            vec![
                put("p/b", "2"),
                Op::delete("p/a"),
                Op::Get {
                    key: b"p/".to_vec(),
                    opts: RangeOpts::prefix(),
                },
            ],
        )
        .await;
        assert_eq!(r.revision, 3);
        assert_eq!(r.results[1].deleted, 1);
        assert_eq!(keys(&r.results[2].kvs), vec![&b"p/b"[..]]);
        assert_eq!(r.results[2].kvs[0].mod_revision, 3);
    }

    #[tokio::test]
    async fn bad_txns_change_nothing() {
        let s = EmbeddedStore::new();
        let (lease, _) = s.grant(30).await.unwrap();
        let e = s
            .txn(Txn {
                success: vec![put("a", "1"), put_lease("b", "1", 7587)],
                ..Txn::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.message(), "lease 7587 (0x1da3) not found");
        assert!(get(&s, "a").await.is_none());
        assert_eq!(s.range(b"", RangeOpts::prefix()).await.unwrap().revision, 1);

        // Only the branch that runs needs its leases.
        let r = s
            .txn(Txn {
                compare: vec![Cmp::version("a", CmpOp::Equal, 0)],
                success: vec![put_lease("a", "1", lease)],
                failure: vec![put_lease("a", "1", 7587)],
            })
            .await
            .unwrap();
        assert!(r.succeeded);

        let checked = super::super::backend::Backend::Embedded(s.clone());
        const T: Duration = Duration::from_secs(5);
        for bad in [
            vec![put("x", "1"), put("x", "2")],
            vec![
                Op::Delete {
                    key: b"x".to_vec(),
                    prefix: true,
                },
                put("xy", "1"),
            ],
            vec![put("", "1")],
            vec![Op::get("")],
            vec![put("k", "v"); super::super::validate::MAX_TXN_OPS + 1],
        ] {
            // The request checks run in front of every store (validate.rs).
            let e = checked
                .txn(
                    Txn {
                        failure: bad,
                        ..Txn::default()
                    },
                    T,
                )
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        }
        assert_eq!(s.range(b"", RangeOpts::prefix()).await.unwrap().revision, 2);
        assert!(checked
            .grant(0, T)
            .await
            .unwrap_err()
            .message()
            .contains("got 0"));
        assert!(checked.compact(0, T).await.is_err());
        let e = s.compact(99).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(checked.watch(b"k", false, -1, T).await.is_err());
    }

    #[tokio::test]
    async fn range_sort_limit_and_lock_predecessor() {
        let s = EmbeddedStore::new();
        // Waiters created in revisions 2, 3, 4 under keys out of create order.
        write(&s, vec![put("lock/c", "")]).await;
        write(&s, vec![put("lock/a", "")]).await;
        write(&s, vec![put("lock/b", "")]).await;
        write(&s, vec![put("lockx", ""), put("other", "")]).await;

        let all = s.range(b"lock/", RangeOpts::prefix()).await.unwrap();
        assert_eq!(keys(&all.kvs), vec![&b"lock/a"[..], b"lock/b", b"lock/c"]);
        assert_eq!(all.revision, 5);

        let by = |target, order, limit, max| RangeOpts {
            prefix: true,
            sort: Some((target, order)),
            limit,
            max_create_revision: max,
        };
        let r = s
            .range(b"lock/", by(SortTarget::Create, SortOrder::Ascend, 0, 0))
            .await
            .unwrap();
        assert_eq!(keys(&r.kvs), vec![&b"lock/c"[..], b"lock/a", b"lock/b"]);
        let r = s
            .range(b"lock/", by(SortTarget::Key, SortOrder::Descend, 2, 0))
            .await
            .unwrap();
        assert_eq!(keys(&r.kvs), vec![&b"lock/c"[..], b"lock/b"]);
        let r = s
            .range(
                b"lock/",
                RangeOpts {
                    limit: 2,
                    ..RangeOpts::prefix()
                },
            )
            .await
            .unwrap();
        assert_eq!(keys(&r.kvs), vec![&b"lock/a"[..], b"lock/b"]);

        // The lock's predecessor query: the newest waiter older than me.
        let me = get(&s, "lock/b").await.unwrap().create_revision;
        let pred = |max| s.range(b"lock/", by(SortTarget::Create, SortOrder::Descend, 1, max));
        assert_eq!(keys(&pred(me - 1).await.unwrap().kvs), vec![&b"lock/a"[..]]);
        let first = get(&s, "lock/c").await.unwrap().create_revision;
        assert!(pred(first - 1).await.unwrap().kvs.is_empty());

        let every = s.range(b"", RangeOpts::prefix()).await.unwrap();
        assert_eq!(every.kvs.len(), 5);
        // The request checks run in front of every store (validate.rs).
        let checked = super::super::backend::Backend::Embedded(s.clone());
        let bad = RangeOpts {
            limit: -1,
            ..RangeOpts::default()
        };
        let e = checked
            .range(b"a", bad, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.message().contains("-1"));
    }

    #[tokio::test]
    async fn watch_replays_then_follows() {
        let s = EmbeddedStore::new();
        write(&s, vec![put("w/a", "1"), put("z", "1")]).await; // rev 2
        write(&s, vec![put("z", "2")]).await; // rev 3, not watched
        write(&s, vec![put("w/b", "1"), Op::delete("w/a")]).await; // rev 4

        let mut w = s.watch(b"w/", true, 2).await.unwrap();
        let b = next(&mut w).await;
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].kind, b[0].kv.key.as_slice()),
            (EventKind::Put, &b"w/a"[..])
        );
        let b = next(&mut w).await;
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].kind, EventKind::Put);
        assert_eq!(b[1].kind, EventKind::Delete);
        assert_eq!(
            b[1].kv,
            Kv {
                key: b"w/a".to_vec(),
                mod_revision: 4,
                ..Kv::default()
            }
        );

        // Live: from now on (start 0), one batch per revision.
        let mut live = s.watch(b"w/b", false, 0).await.unwrap();
        write(&s, vec![put("w/b", "2")]).await; // rev 5
        write(&s, vec![put("w/c", "1")]).await; // rev 6: only the prefix watch
        write(&s, vec![Op::delete("w/b")]).await; // rev 7
        let b = next(&mut live).await;
        assert_eq!(
            (b.len(), b[0].kind, b[0].kv.version),
            (1, EventKind::Put, 2)
        );
        let b = next(&mut live).await;
        assert_eq!((b[0].kind, b[0].kv.mod_revision), (EventKind::Delete, 7));
        let revs: Vec<i64> = [next(&mut w).await, next(&mut w).await, next(&mut w).await]
            .iter()
            .map(|b| b[0].kv.mod_revision)
            .collect();
        assert_eq!(revs, vec![5, 6, 7]);

        // A watch from a future revision sees nothing before it.
        let mut fut = s.watch(b"w/", true, 9).await.unwrap();
        write(&s, vec![put("w/x", "1")]).await; // rev 8
        write(&s, vec![put("w/y", "1")]).await; // rev 9
        assert_eq!(next(&mut fut).await[0].kv.key, b"w/y");
    }

    #[tokio::test]
    async fn compaction() {
        let s = EmbeddedStore::new();
        for i in 0..5 {
            write(&s, vec![put("k", &i.to_string())]).await; // revs 2..=6
        }
        s.compact(4).await.unwrap();
        let mut w = s.watch(b"k", false, 3).await.unwrap();
        let e = w.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Compacted);
        assert!(
            e.message().contains("revision 3") && e.message().contains("below 4"),
            "{e}"
        );
        assert!(w.next().await.is_none());

        let mut w = s.watch(b"k", false, 4).await.unwrap();
        assert_eq!(next(&mut w).await[0].kv.mod_revision, 4);
        assert_eq!(s.compact(4).await.unwrap_err().kind(), ErrorKind::Compacted);
        s.compact(6).await.unwrap();

        // Automatic compaction keeps at most the limit, whole revisions only.
        let s = EmbeddedStore::with_history_limit(3);
        write(&s, vec![put("a", "1"), put("b", "1")]).await; // rev 2
        write(&s, vec![put("a", "2"), put("b", "2")]).await; // rev 3
        assert!(s
            .watch(b"a", false, 2)
            .await
            .unwrap()
            .next()
            .await
            .unwrap()
            .is_err());
        let mut w = s.watch(b"", true, 3).await.unwrap();
        assert_eq!(next(&mut w).await.len(), 2);
        assert_eq!(s.inner.lock().history.len(), 2);
    }

    #[tokio::test]
    async fn dropped_watch_is_pruned() {
        let s = EmbeddedStore::new();
        let w = s.watch(b"k", false, 0).await.unwrap();
        let _other = s.watch(b"other", false, 0).await.unwrap();
        assert_eq!(s.inner.lock().watchers.len(), 2);
        drop(w);
        // Pruned on the next write, even one the watch would not match.
        write(&s, vec![put("unrelated", "1")]).await;
        assert_eq!(s.inner.lock().watchers.len(), 1);
        let w = s.watch(b"k", false, 0).await.unwrap();
        drop(w);
        let _third = s.watch(b"k", false, 0).await.unwrap();
        assert_eq!(s.inner.lock().watchers.len(), 2);
    }

    #[tokio::test]
    async fn leases() {
        let s = EmbeddedStore::new();
        let (a, ttl) = s.grant(30).await.unwrap();
        let (b, _) = s.grant(30).await.unwrap();
        assert_eq!(ttl, 30);
        assert!(a > 0 && b > 0 && a != b);
        assert_eq!(s.time_to_live(a).await.unwrap(), Some((30, 30)));
        assert_eq!(s.keep_alive(a).await.unwrap(), 30);

        write(&s, vec![put_lease("x", "1", a), put_lease("y", "1", a)]).await; // rev 2
        write(&s, vec![put_lease("y", "2", b)]).await; // rev 3: y moves to b
        assert_eq!(get(&s, "y").await.unwrap().lease, b);
        let mut w = s.watch(b"", true, 0).await.unwrap();

        s.revoke(a).await.unwrap();
        let ev = next(&mut w).await;
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].kind, ev[0].kv.key.as_slice(), ev[0].kv.mod_revision),
            (EventKind::Delete, &b"x"[..], 4)
        );
        assert!(get(&s, "y").await.is_some());
        assert_eq!(s.time_to_live(a).await.unwrap(), None);
        assert_eq!(s.keep_alive(a).await.unwrap(), 0);
        s.revoke(a).await.unwrap();
        s.revoke(12345).await.unwrap();

        // Revoking a lease without keys takes no revision.
        let (c, _) = s.grant(5).await.unwrap();
        s.revoke(c).await.unwrap();
        assert_eq!(
            s.range(b"y", RangeOpts::default()).await.unwrap().revision,
            4
        );

        // A deleted key leaves its lease; revoking then deletes nothing.
        write(&s, vec![Op::delete("y")]).await; // rev 5
        s.revoke(b).await.unwrap();
        assert_eq!(
            s.range(b"y", RangeOpts::default()).await.unwrap().revision,
            5
        );
        assert!(s.inner.lock().leases.is_empty());
    }

    #[tokio::test]
    async fn lease_ids_are_unique() {
        let s = EmbeddedStore::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let (id, _) = s.grant(60).await.unwrap();
            assert!(id > 0);
            assert!(seen.insert(id));
        }
    }

    // Real time: TTLs are whole seconds, so these take about 2.5 s each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expiry_is_active() {
        let s = EmbeddedStore::new();
        let (long, _) = s.grant(60).await.unwrap();
        // Let the reaper go to sleep towards the 60 s deadline: the nearer
        // one granted next must wake it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (short, _) = s.grant(1).await.unwrap();
        write(
            &s,
            vec![
                put_lease("a", "1", short),
                put_lease("b", "1", short),
                put_lease("c", "1", long),
            ],
        )
        .await;
        let mut w = s.watch(b"", true, 0).await.unwrap();
        let t0 = std::time::Instant::now();
        // Nobody calls the store: the reaper alone must delete the keys.
        let ev = next(&mut w).await;
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(800), "{waited:?}");
        assert!(waited < Duration::from_millis(2500), "{waited:?}");
        assert_eq!(ev.len(), 2);
        assert!(ev
            .iter()
            .all(|e| e.kind == EventKind::Delete && e.kv.mod_revision == 3));
        assert_eq!(
            keys(&s.range(b"", RangeOpts::prefix()).await.unwrap().kvs),
            vec![&b"c"[..]]
        );
        assert_eq!(s.keep_alive(short).await.unwrap(), 0);
        let e = s
            .txn(Txn {
                success: vec![put_lease("d", "1", short)],
                ..Txn::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);

        // The reaper holds no strong reference and ends with the store.
        let reaper = s.inner.lock().reaper.take().unwrap();
        drop((s, w));
        tokio::time::timeout(Duration::from_secs(2), reaper)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_extends() {
        let s = EmbeddedStore::new();
        let (id, _) = s.grant(3).await.unwrap();
        write(&s, vec![put_lease("k", "1", id)]).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (ttl, left) = s.time_to_live(id).await.unwrap().unwrap();
        assert!(ttl == 3 && (1..=2).contains(&left), "{left}");
        assert_eq!(s.keep_alive(id).await.unwrap(), 3);
        assert_eq!(s.time_to_live(id).await.unwrap(), Some((3, 3)));
        tokio::time::sleep(Duration::from_millis(2000)).await;
        // 3.5 s after the grant, alive only thanks to the renewal.
        assert!(get(&s, "k").await.is_some());
    }
}
