//! Leader election in the style of etcd's `concurrency.Election`: campaign,
//! proclaim, resign, leader and observe. The leader is the candidate with
//! the oldest key; its create revision is its fencing token.

use std::sync::Mutex;
use std::time::Duration;

use super::backend::Backend;
use super::kv::{Cmp, CmpOp, EventKind, Kv, Op, RangeOpts, SortOrder, SortTarget, Txn, Watch};
use super::queue::{self, WaitOptions};
use super::session::{lock, Session};
use super::token::{FencingToken, TokenKind};
use crate::error::{Error, ErrorKind, Result};

/// Key prefix of every election.
pub const ELECTION_PREFIX: &str = "shardkit/election/";

fn election_prefix(name: &str) -> Result<Vec<u8>> {
    queue::validate_name("election", name)?;
    Ok(format!("{ELECTION_PREFIX}{}/", queue::key_segment(name)).into_bytes())
}

/// Who leads an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The election's name.
    pub name: String,
    /// The leader's key.
    pub key: Vec<u8>,
    /// The value the leader proclaimed (its address, typically).
    pub value: Vec<u8>,
    /// The leader's create revision: its fencing token.
    pub revision: i64,
    /// The leader's lease.
    pub lease: i64,
}

impl LeaderInfo {
    fn from_kv(name: &str, kv: &Kv) -> LeaderInfo {
        LeaderInfo {
            name: name.to_string(),
            key: kv.key.clone(),
            value: kv.value.clone(),
            revision: kv.create_revision,
            lease: kv.lease,
        }
    }
}

/// One candidate in a named election, bound to a session.
#[derive(Debug)]
pub struct Election {
    session: Session,
    name: String,
    prefix: Vec<u8>,
    held: Mutex<Option<FencingToken>>,
}

impl Election {
    /// A candidate for election `name` under `session`.
    pub fn new(session: &Session, name: &str) -> Result<Election> {
        Ok(Election {
            session: session.clone(),
            name: name.to_string(),
            prefix: election_prefix(name)?,
            held: Mutex::new(None),
        })
    }

    /// The election's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until this candidate leads, proclaiming `value`; returns the
    /// leadership's fencing token. A session that ends while waiting gives
    /// an error (kind `SessionLost`), never leadership.
    pub async fn campaign(&self, value: &[u8]) -> Result<FencingToken> {
        self.campaign_with(value, &WaitOptions::default()).await
    }

    /// [`campaign`](Election::campaign) with a timeout and/or cancel signal;
    /// on every error the candidacy is withdrawn before the error returns.
    pub async fn campaign_with(&self, value: &[u8], opts: &WaitOptions) -> Result<FencingToken> {
        if let Some(t) = &*lock(&self.held) {
            return Err(Error::invalid(format!(
                "already leader of election {:?} through this handle (token {t}); resign first",
                self.name
            )));
        }
        let what = format!("leadership of election {:?}", self.name);
        let place =
            queue::acquire(&self.session, &self.prefix, value.to_vec(), &what, opts).await?;
        let token = FencingToken {
            kind: TokenKind::Leader,
            name: self.name.clone(),
            key: place.key,
            revision: place.revision,
            lease: self.session.lease_id(),
        };
        *lock(&self.held) = Some(token.clone());
        Ok(token)
    }

    /// Replaces the leader's value, only while this candidate leads.
    pub async fn proclaim(&self, value: &[u8]) -> Result<()> {
        let token = self.leader_token()?;
        let timeout = self.session.rpc_timeout()?;
        let txn = Txn {
            compare: vec![Cmp::create_revision(
                token.key.clone(),
                CmpOp::Equal,
                token.revision,
            )],
            success: vec![Op::Put {
                key: token.key.clone(),
                value: value.to_vec(),
                lease: token.lease,
            }],
            failure: vec![],
        };
        let r = self.session.inner.backend.txn(txn, timeout).await?;
        if !r.succeeded {
            *lock(&self.held) = None;
            return Err(Error::new(
                ErrorKind::Fenced,
                format!(
                    "not leader of election {:?} any more (token {token}): proclaim rejected",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// Gives up leadership (deletes this candidate's key). Resigning when
    /// not leader is an `InvalidArgument` error.
    pub async fn resign(&self) -> Result<()> {
        // In a forked child, fail before taking the token: the hold is the parent's.
        self.session.check_process()?;
        let token = lock(&self.held).take().ok_or_else(|| {
            Error::invalid(format!(
                "not leader of election {:?} through this handle",
                self.name
            ))
        })?;
        let txn = Txn {
            compare: vec![Cmp::create_revision(
                token.key.clone(),
                CmpOp::Equal,
                token.revision,
            )],
            success: vec![Op::delete(token.key.clone())],
            failure: vec![],
        };
        // A dropped resign future must not leave a leader nobody is.
        let mut guard = queue::LeaveOnDrop::new(&self.session, &token.key);
        let res = self
            .session
            .inner
            .backend
            .txn(txn, self.session.inner_rpc_timeout())
            .await;
        match res {
            Ok(_) => {
                guard.armed = false;
                Ok(())
            }
            Err(e) => {
                self.session
                    .delete_own_key(&token.key, token.revision)
                    .await;
                guard.armed = false;
                Err(e)
            }
        }
    }

    /// The token of the current leadership through this handle, if any.
    pub fn token(&self) -> Option<FencingToken> {
        lock(&self.held).clone()
    }

    /// The token of the current leadership, or a `Fenced` error naming the
    /// election when this handle does not lead (what a proclaim gets).
    pub fn leader_token(&self) -> Result<FencingToken> {
        lock(&self.held).clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Fenced,
                format!("not leader of election {:?} through this handle", self.name),
            )
        })
    }

    /// The current leader (any candidate's view).
    pub async fn leader(&self) -> Result<Option<LeaderInfo>> {
        let timeout = self.session.rpc_timeout()?;
        leader(&self.session.inner.backend, &self.name, timeout).await
    }
}

pub(crate) async fn leader(
    backend: &Backend,
    name: &str,
    timeout: Duration,
) -> Result<Option<LeaderInfo>> {
    let prefix = election_prefix(name)?;
    Ok(read_leader(backend, name, &prefix, timeout).await?.0)
}

async fn read_leader(
    backend: &Backend,
    name: &str,
    prefix: &[u8],
    timeout: Duration,
) -> Result<(Option<LeaderInfo>, i64)> {
    let opts = RangeOpts {
        prefix: true,
        sort: Some((SortTarget::Create, SortOrder::Ascend)),
        limit: 1,
        max_create_revision: 0,
    };
    let r = backend.range(prefix, opts, timeout).await?;
    Ok((
        r.kvs.first().map(|kv| LeaderInfo::from_kv(name, kv)),
        r.revision,
    ))
}

/// How an [`Observer`] rides out a failing store: every binding follows a
/// leader with this one policy. A failed read or watch is retried after a
/// pause that starts at `retry_min` and doubles up to `retry_max`; only when
/// the store has kept failing for `report_after` does
/// [`Observer::next`] return the error (the observer stays usable: the next
/// call follows on, and the window starts again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowPolicy {
    /// The first pause after a failure.
    pub retry_min: Duration,
    /// The longest pause between attempts.
    pub retry_max: Duration,
    /// How long failures may last before they are reported; zero reports
    /// the first one.
    pub report_after: Duration,
}

impl Default for FollowPolicy {
    /// 50 ms doubling to 1 s; failures reported after 5 s, which rides out an
    /// etcd leader change (about a second by default) but not an outage.
    fn default() -> Self {
        FollowPolicy {
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(1),
            report_after: Duration::from_secs(5),
        }
    }
}

/// A stream of leadership changes of one election, including "no leader".
#[derive(Debug)]
pub struct Observer {
    backend: Backend,
    name: String,
    prefix: Vec<u8>,
    timeout: Duration,
    policy: FollowPolicy,
    watch: Option<Watch>,
    last: Option<Option<LeaderInfo>>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        // In a forked child the watch's channels lead to the parent's tasks:
        // closing them would wake those tasks on a runtime with no threads.
        if self.backend.check_process().is_err() {
            std::mem::forget(self.watch.take());
        }
    }
}

impl Observer {
    pub(crate) fn new(
        backend: Backend,
        name: &str,
        timeout: Duration,
        policy: FollowPolicy,
    ) -> Result<Observer> {
        if policy.retry_min.is_zero() || policy.retry_max < policy.retry_min {
            return Err(Error::invalid(format!(
                "follow policy for election {name:?}: retry_min ({} ms) must be above 0 and \
                 at most retry_max ({} ms)",
                policy.retry_min.as_millis(),
                policy.retry_max.as_millis()
            )));
        }
        Ok(Observer {
            backend,
            name: name.to_string(),
            prefix: election_prefix(name)?,
            timeout,
            policy,
            watch: None,
            last: None,
        })
    }

    /// The election followed.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next leadership state that differs from the last one returned;
    /// the first call returns the current state. `None` inside means "no
    /// leader". A new leader, a changed proclaimed value, and the leader's
    /// key ending are all changes.
    ///
    /// Store failures are retried under the observer's [`FollowPolicy`];
    /// the error returned is the last failure, once they have lasted
    /// `report_after`. After an error the next call returns the state the
    /// store then has, changed or not. Cancel-safe: dropping the future
    /// loses no change.
    ///
    /// In a child forked after the observer was made it fails at once
    /// (`InvalidArgument`, not retried): its store lives in the parent.
    pub async fn next(&mut self) -> Result<Option<LeaderInfo>> {
        self.backend.check_process()?;
        let mut pause = self.policy.retry_min;
        let mut failing_since: Option<tokio::time::Instant> = None;
        loop {
            match self.step().await {
                Ok(state) => return Ok(state),
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= self.policy.report_after {
                        // Whatever comes once the store answers again is
                        // news to a caller that was told of the failure.
                        self.last = None;
                        return Err(Error::new(
                            e.kind(),
                            format!(
                                "following election {:?}: the store kept failing for {} ms: {}",
                                self.name,
                                since.elapsed().as_millis(),
                                e.message()
                            ),
                        ));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.policy.retry_max);
                }
            }
        }
    }

    /// One attempt at the next state: a store failure ends it (the watch is
    /// dropped, so the next attempt reads the state afresh).
    async fn step(&mut self) -> Result<Option<LeaderInfo>> {
        loop {
            if self.watch.is_none() {
                let (cur, rev) =
                    read_leader(&self.backend, &self.name, &self.prefix, self.timeout).await?;
                self.watch = Some(
                    self.backend
                        .watch(&self.prefix, true, rev + 1, self.timeout)
                        .await?,
                );
                if self.last.as_ref() != Some(&cur) {
                    self.last = Some(cur.clone());
                    return Ok(cur);
                }
            }
            let w = self.watch.as_mut().expect("watch set above");
            match w.next().await {
                Some(Ok(events)) => {
                    if !events
                        .iter()
                        .any(|e| matches!(e.kind, EventKind::Put | EventKind::Delete))
                    {
                        continue;
                    }
                    let (cur, _) =
                        read_leader(&self.backend, &self.name, &self.prefix, self.timeout).await?;
                    if self.last.as_ref() != Some(&cur) {
                        self.last = Some(cur.clone());
                        return Ok(cur);
                    }
                }
                Some(Err(e)) if e.kind() == ErrorKind::Compacted => self.watch = None,
                None => {
                    // The backend closed the stream (reconnect): do not spin.
                    self.watch = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(Err(e)) => {
                    self.watch = None;
                    return Err(e);
                }
            }
        }
    }
}
