//! Shard ownership: N named shards shared out among the live workers of a
//! group, each shard held through a key under its owner's lease.
//!
//! Every worker registers a member key and computes the same assignment
//! from the member list with the sharding engine (rendezvous hashing over
//! worker names), so a join or a leave moves only about 1/n of the shards.
//! A shard is *taken* only by creating its owner key, which succeeds only
//! once the previous owner has released it or its lease has ended, so two
//! workers never hold a shard at once. The handler hears `Gained` after the
//! key is created and `Lost` before it is deleted, so a worker never holds
//! a shard it has been told it lost; when the session is lost, every shard
//! is reported lost at the local deadline, before the server frees them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cancel::Cancel;
use super::kv::{Cmp, CmpOp, Op, RangeOpts, Txn};
use super::queue::{key_segment, validate_name, LeaveOnDrop};
use super::session::{lock, Session};
use super::token::{FencingToken, TokenKind};
use crate::error::{Error, ErrorKind, Result};
use crate::node::Node;
use crate::shard::{Algorithm, ShardConfig, Sharder};

/// Key prefix of every shard group.
pub const SHARDS_PREFIX: &str = "shardkit/shards/";

/// What a shard owner is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnershipEvent {
    /// The worker now owns `shard`; `token` fences writes made for it.
    Gained {
        /// The shard.
        shard: String,
        /// Fencing token of this ownership.
        token: FencingToken,
    },
    /// The worker no longer owns `shard` and must stop acting for it.
    Lost {
        /// The shard.
        shard: String,
        /// Why: rebalanced to another worker, session lost, or closed.
        reason: String,
    },
}

/// Called for every ownership change, on a runtime thread, in order. A shard
/// is released only after the `Lost` call returns, so it should return soon.
pub type OwnershipHandler = Arc<dyn Fn(&OwnershipEvent) + Send + Sync>;

struct Shared {
    /// Dropped when the worker stops, so bindings that feed a queue from it
    /// see the queue end.
    handler: Option<OwnershipHandler>,
    owned: BTreeMap<String, FencingToken>,
    stopped: bool,
    error: Option<Error>,
}

/// A worker taking part in a shard group. Dropping it reports its shards
/// lost and hands them back in the background; [`close`](ShardOwner::close)
/// does the same and waits until they are released.
pub struct ShardOwner {
    group: String,
    worker: String,
    session: Session,
    member_key: Vec<u8>,
    shared: Arc<Mutex<Shared>>,
    stop: Cancel,
    close_hook: u64,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for ShardOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardOwner")
            .field("group", &self.group)
            .field("worker", &self.worker)
            .finish()
    }
}

/// Reports every owned shard lost, once: the owned set is emptied under its
/// lock, so whichever path gets there first (session lost, close, drop)
/// reports each shard, and the others find nothing left.
fn lose_all(shared: &Mutex<Shared>, reason: &str) -> Vec<FencingToken> {
    let (owned, handler) = {
        let mut s = lock(shared);
        (std::mem::take(&mut s.owned), s.handler.clone())
    };
    let Some(handler) = handler else {
        return Vec::new();
    };
    let mut tokens = Vec::with_capacity(owned.len());
    for (shard, token) in owned {
        handler(&OwnershipEvent::Lost {
            shard,
            reason: reason.to_string(),
        });
        tokens.push(token);
    }
    tokens
}

impl Drop for ShardOwner {
    fn drop(&mut self) {
        if self.session.check_process().is_err() {
            // A forked child: the worker task and the shards are the
            // parent's. Aborting the task would schedule it on the parent's
            // runtime, which has no threads here; leave it all alone.
            let task = self.task.get_mut().unwrap_or_else(|p| p.into_inner());
            std::mem::forget(task.take());
            return;
        }
        self.session.remove_close_hook(self.close_hook);
        let running = lock(&self.task).take();
        if let Some(t) = running {
            t.abort();
            // Hand the shards back: reported lost first, then their keys go
            // (in the background; queued synchronously, so no runtime is
            // needed here).
            for token in lose_all(&self.shared, "shard owner dropped") {
                self.session.forget_later(&token.key);
            }
            self.session.forget_later(&self.member_key);
            lock(&self.shared).handler = None;
        }
    }
}

struct Worker {
    session: Session,
    group: String,
    worker: String,
    shards: Vec<String>,
    member_key: Vec<u8>,
    members_prefix: Vec<u8>,
    owners_prefix: Vec<u8>,
    group_prefix: Vec<u8>,
    shared: Arc<Mutex<Shared>>,
}

impl ShardOwner {
    /// Joins group `group` as `worker` under `session`, competing for
    /// `shards`. Every worker of a group must pass the same shard list.
    /// Errors: an empty or duplicate shard name, an empty worker or group
    /// name, or a worker name already live in the group (`DuplicateNode`).
    pub async fn start(
        session: &Session,
        group: &str,
        worker: &str,
        shards: Vec<String>,
        handler: OwnershipHandler,
    ) -> Result<ShardOwner> {
        validate_name("shard group", group)?;
        validate_name("worker", worker)?;
        if worker.contains('/') {
            return Err(Error::invalid(format!(
                "worker name {worker:?} contains '/'"
            )));
        }
        if shards.is_empty() {
            return Err(Error::invalid(format!(
                "shard group {group:?}: the shard list is empty"
            )));
        }
        let mut seen = BTreeSet::new();
        for s in &shards {
            validate_name("shard", s)?;
            if !seen.insert(s.as_str()) {
                return Err(Error::new(
                    ErrorKind::DuplicateNode,
                    format!("shard {s:?} is listed twice"),
                ));
            }
        }
        let group_prefix = format!("{SHARDS_PREFIX}{}/", key_segment(group)).into_bytes();
        let w = Worker {
            session: session.clone(),
            group: group.to_string(),
            worker: worker.to_string(),
            shards,
            member_key: [
                group_prefix.as_slice(),
                b"members/",
                key_segment(worker).as_bytes(),
            ]
            .concat(),
            members_prefix: [group_prefix.as_slice(), b"members/"].concat(),
            owners_prefix: [group_prefix.as_slice(), b"owners/"].concat(),
            group_prefix,
            shared: Arc::new(Mutex::new(Shared {
                handler: Some(handler),
                owned: BTreeMap::new(),
                stopped: false,
                error: None,
            })),
        };
        w.register().await?;
        let shared = w.shared.clone();
        let member_key = w.member_key.clone();
        // Closing the session revokes the lease, which frees every shard at
        // once: the owner must hear "lost" before that, not after.
        let hook = {
            let shared = shared.clone();
            Arc::new(move || {
                lose_all(&shared, "session closed");
            })
        };
        let close_hook = session.add_close_hook(hook);
        let stop = Cancel::new();
        let task = tokio::spawn(w.run(stop.clone()));
        Ok(ShardOwner {
            group: group.to_string(),
            worker: worker.to_string(),
            session: session.clone(),
            member_key,
            shared,
            stop,
            close_hook,
            task: Mutex::new(Some(task)),
        })
    }

    /// The shards owned now, with their tokens.
    pub fn owned(&self) -> BTreeMap<String, FencingToken> {
        lock(&self.shared).owned.clone()
    }

    /// Whether the worker has stopped (closed, or its session ended); the
    /// error says why when it was not a close.
    pub fn stopped(&self) -> (bool, Option<Error>) {
        let s = lock(&self.shared);
        (s.stopped, s.error.clone())
    }

    /// Leaves the group: every owned shard is reported lost and released
    /// (so another worker takes it at once), then the member key goes.
    ///
    /// In a child forked after the owner started it fails at once
    /// (`InvalidArgument`): the worker runs in the parent.
    pub async fn close(&self) -> Result<()> {
        self.session.check_process()?;
        self.session.remove_close_hook(self.close_hook);
        self.stop.cancel();
        let task = lock(&self.task).take();
        if let Some(t) = task {
            let _ = t.await;
        }
        Ok(())
    }
}

impl Worker {
    fn owner_key(&self, shard: &str) -> Vec<u8> {
        [self.owners_prefix.as_slice(), key_segment(shard).as_bytes()].concat()
    }

    async fn register(&self) -> Result<()> {
        let timeout = self.session.rpc_timeout()?;
        let lease = self.session.lease_id();
        let txn = Txn {
            compare: vec![Cmp::create_revision(
                self.member_key.clone(),
                CmpOp::Equal,
                0,
            )],
            success: vec![Op::Put {
                key: self.member_key.clone(),
                value: self.worker.clone().into_bytes(),
                lease,
            }],
            failure: vec![Op::get(self.member_key.clone())],
        };
        let r = self.session.inner.backend.txn(txn, timeout).await?;
        if !r.succeeded {
            let other = r
                .results
                .first()
                .and_then(|x| x.kvs.first())
                .map(|kv| kv.lease)
                .unwrap_or(0);
            if other != lease {
                return Err(Error::new(
                    ErrorKind::DuplicateNode,
                    format!(
                        "worker {:?} is already live in shard group {:?} (lease {other:x})",
                        self.worker, self.group
                    ),
                ));
            }
        }
        Ok(())
    }

    fn emit(&self, ev: OwnershipEvent) {
        let handler = lock(&self.shared).handler.clone();
        if let Some(h) = handler {
            h(&ev);
        }
    }

    fn lose_all(&self, reason: &str) {
        lose_all(&self.shared, reason);
    }

    async fn run(self, stop: Cancel) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let step = async {
                let rev = self.reconcile().await?;
                let timeout = self.session.rpc_timeout()?;
                let mut watch = self
                    .session
                    .inner
                    .backend
                    .watch(&self.group_prefix, true, rev + 1, timeout)
                    .await?;
                // Any change in the group may change the assignment; the
                // reconcile that follows reads the whole state afresh.
                match watch.next().await {
                    Some(Err(e)) if e.kind() != ErrorKind::Compacted => Err(e),
                    _ => Ok(()),
                }
            };
            let outcome = tokio::select! {
                biased;
                e = self.session.ended() => {
                    self.lose_all(&format!("session ended: {e}"));
                    let mut s = lock(&self.shared);
                    s.stopped = true;
                    s.error = Some(e);
                    s.handler = None;
                    return;
                }
                _ = stop.cancelled() => {
                    self.leave().await;
                    let mut s = lock(&self.shared);
                    s.stopped = true;
                    s.handler = None;
                    return;
                }
                r = step => r,
            };
            match outcome {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Brings held shards in line with the assignment; returns the revision
    /// the state was read at.
    async fn reconcile(&self) -> Result<i64> {
        let timeout = self.session.rpc_timeout()?;
        let backend = &self.session.inner.backend;
        let members = backend
            .range(&self.members_prefix, RangeOpts::prefix(), timeout)
            .await?;
        let names: Vec<String> = members
            .kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect();
        if !names.contains(&self.worker) {
            // Our member key is gone: the lease ended or someone removed us.
            self.register().await?;
        }
        let nodes: Vec<Node> = names
            .iter()
            .map(|n| Node::new(n.clone(), 1))
            .collect::<Result<_>>()?;
        let sharder = Sharder::new(nodes, ShardConfig::new(Algorithm::Rendezvous))?;
        let owners = backend
            .range(&self.owners_prefix, RangeOpts::prefix(), timeout)
            .await?;
        let by_key: BTreeMap<&[u8], (i64, i64)> = owners
            .kvs
            .iter()
            .map(|kv| (kv.key.as_slice(), (kv.create_revision, kv.lease)))
            .collect();
        let holder: BTreeMap<String, (i64, i64)> = self
            .shards
            .iter()
            .filter_map(|shard| {
                by_key
                    .get(self.owner_key(shard).as_slice())
                    .map(|h| (shard.clone(), *h))
            })
            .collect();
        let lease = self.session.lease_id();
        for shard in &self.shards {
            let mine = sharder.lookup(shard.as_bytes())?.name() == self.worker;
            let held = lock(&self.shared).owned.get(shard).cloned();
            match (held, mine) {
                (Some(token), true) => {
                    if holder.get(shard) != Some(&(token.revision, lease)) {
                        lock(&self.shared).owned.remove(shard);
                        self.emit(OwnershipEvent::Lost {
                            shard: shard.clone(),
                            reason: "owner key was removed".to_string(),
                        });
                    }
                }
                (Some(token), false) => {
                    lock(&self.shared).owned.remove(shard);
                    self.emit(OwnershipEvent::Lost {
                        shard: shard.clone(),
                        reason: "reassigned to another worker".to_string(),
                    });
                    self.session
                        .delete_own_key(&token.key, token.revision)
                        .await;
                }
                (None, true) => {
                    if holder.get(shard).is_some_and(|(_, l)| *l == lease) {
                        // Ours from an earlier incarnation of this session:
                        // release and retake so the token is fresh.
                        let key = self.owner_key(shard);
                        self.session.delete_own_key(&key, 0).await;
                    } else if holder.contains_key(shard) {
                        continue; // wait for the previous owner to let go
                    }
                    self.take(shard).await?;
                }
                (None, false) => {}
            }
        }
        // Watch from the EARLIER of the two reads: a member leaving between
        // them is not in the assignment computed above, and must still wake
        // us. Replaying a few events already seen costs one more reconcile.
        Ok(members.revision.min(owners.revision))
    }

    async fn take(&self, shard: &str) -> Result<()> {
        let timeout = self.session.rpc_timeout()?;
        let key = self.owner_key(shard);
        let txn = Txn {
            compare: vec![Cmp::create_revision(key.clone(), CmpOp::Equal, 0)],
            success: vec![Op::Put {
                key: key.clone(),
                value: self.worker.clone().into_bytes(),
                lease: self.session.lease_id(),
            }],
            failure: vec![],
        };
        // A close or a lost session cancels this future mid-request; the
        // server may still apply the put, leaving a shard key nobody owns
        // under a live lease. The guard queues it for deletion on drop.
        let mut guard = LeaveOnDrop::new(&self.session, &key);
        let r = match self.session.inner.backend.txn(txn, timeout).await {
            Ok(r) => r,
            Err(e) => {
                guard.armed = false;
                self.session.abandon_key(&key).await;
                return Err(e);
            }
        };
        guard.armed = false;
        if r.succeeded {
            let token = FencingToken {
                kind: TokenKind::Shard,
                name: shard.to_string(),
                key,
                revision: r.revision,
                lease: self.session.lease_id(),
            };
            lock(&self.shared)
                .owned
                .insert(shard.to_string(), token.clone());
            self.emit(OwnershipEvent::Gained {
                shard: shard.to_string(),
                token,
            });
        }
        Ok(())
    }

    async fn leave(&self) {
        let owned = std::mem::take(&mut lock(&self.shared).owned);
        for (shard, token) in owned {
            self.emit(OwnershipEvent::Lost {
                shard,
                reason: "worker closed".to_string(),
            });
            self.session
                .delete_own_key(&token.key, token.revision)
                .await;
        }
        self.session.delete_own_key(&self.member_key, 0).await;
    }
}
