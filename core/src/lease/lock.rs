//! A distributed lock in the style of etcd's `concurrency.Mutex`, with a
//! fencing token from every acquire.

use std::sync::Mutex;
use std::time::Duration;

use super::kv::{Cmp, Op, TxnResult};
use super::queue::{self, WaitOptions};
use super::session::{lock, Session};
use super::token::{FencingToken, TokenKind};
use crate::error::{Error, ErrorKind, Result};

/// Key prefix of every lock.
pub const LOCK_PREFIX: &str = "shardkit/lock/";

/// One contender for a named lock, bound to a session. Each `Lock` value is
/// its own waiter, so two `Lock`s of one session exclude each other too.
#[derive(Debug)]
pub struct Lock {
    session: Session,
    name: String,
    prefix: Vec<u8>,
    held: Mutex<Option<FencingToken>>,
}

impl Lock {
    /// A contender for lock `name` under `session` (no request is sent yet).
    pub fn new(session: &Session, name: &str) -> Result<Lock> {
        queue::validate_name("lock", name)?;
        Ok(Lock {
            session: session.clone(),
            name: name.to_string(),
            prefix: format!("{LOCK_PREFIX}{}/", queue::key_segment(name)).into_bytes(),
            held: Mutex::new(None),
        })
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The session the lock is held under.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Waits until the lock is held; returns its fencing token.
    pub async fn lock(&self) -> Result<FencingToken> {
        self.lock_with(&WaitOptions::default()).await
    }

    /// Waits at most `timeout` (error kind `Timeout`).
    pub async fn lock_timeout(&self, timeout: Duration) -> Result<FencingToken> {
        self.lock_with(&WaitOptions::timeout(timeout)).await
    }

    /// Takes the lock only if it is free now; `None` when it is held.
    pub async fn try_lock(&self) -> Result<Option<FencingToken>> {
        self.not_held()?;
        let key = self.session.unique_key(&self.prefix);
        let mut guard = queue::LeaveOnDrop::new(&self.session, &key);
        let place = queue::enqueue(&self.session, &self.prefix, key, Vec::new()).await;
        let place = match place {
            Ok(p) => p,
            Err(e) => {
                guard.armed = false; // enqueue abandoned the key itself
                return Err(e);
            }
        };
        if !place.first {
            queue::leave(&self.session, &place).await;
            guard.armed = false;
            return Ok(None);
        }
        guard.armed = false;
        Ok(Some(self.grant(&place)))
    }

    /// Waits for the lock with a timeout and/or a cancel signal. On every
    /// error (timeout, cancel, session lost, store failure) the waiter's key
    /// is deleted before the error is returned; if the returned future is
    /// dropped instead, the key is deleted in the background.
    pub async fn lock_with(&self, opts: &WaitOptions) -> Result<FencingToken> {
        self.not_held()?;
        let what = format!("lock {:?}", self.name);
        let place = queue::acquire(&self.session, &self.prefix, Vec::new(), &what, opts).await?;
        Ok(self.grant(&place))
    }

    fn grant(&self, place: &queue::Place) -> FencingToken {
        let token = FencingToken {
            kind: TokenKind::Lock,
            name: self.name.clone(),
            key: place.key.clone(),
            revision: place.revision,
            lease: self.session.lease_id(),
        };
        *lock(&self.held) = Some(token.clone());
        token
    }

    fn not_held(&self) -> Result<()> {
        if let Some(t) = &*lock(&self.held) {
            return Err(Error::invalid(format!(
                "lock {:?} is already held through this handle (token {t}); unlock it first",
                self.name
            )));
        }
        Ok(())
    }

    /// The token of the current hold, if any (as far as this process knows;
    /// see [`Session::check`]).
    pub fn token(&self) -> Option<FencingToken> {
        lock(&self.held).clone()
    }

    /// Releases the lock. Errors with `Fenced` when the hold had already
    /// ended (the key was gone: the lease expired), with `InvalidArgument`
    /// when the lock is not held through this handle.
    pub async fn unlock(&self) -> Result<()> {
        // In a forked child, fail before taking the token: the hold is the parent's.
        self.session.check_process()?;
        let token = lock(&self.held).take().ok_or_else(|| {
            Error::invalid(format!(
                "lock {:?} is not held through this handle",
                self.name
            ))
        })?;
        // A dropped unlock future must not leave the key with nobody holding it.
        let mut guard = queue::LeaveOnDrop::new(&self.session, &token.key);
        let res = self
            .session
            .inner
            .backend
            .txn(
                super::kv::Txn {
                    compare: vec![Cmp::create_revision(
                        token.key.clone(),
                        super::kv::CmpOp::Equal,
                        token.revision,
                    )],
                    success: vec![Op::delete(token.key.clone())],
                    failure: vec![],
                },
                self.session.inner_rpc_timeout(),
            )
            .await;
        if res.is_ok() {
            guard.armed = false;
        }
        match res {
            Ok(r) if r.succeeded => Ok(()),
            Ok(_) => Err(Error::new(
                ErrorKind::Fenced,
                format!(
                    "lock {:?} was no longer held at unlock (token {token}): its lease ended",
                    self.name
                ),
            )),
            Err(e) => {
                // Unknown outcome: make sure the key goes.
                self.session
                    .delete_own_key(&token.key, token.revision)
                    .await;
                guard.armed = false;
                Err(e)
            }
        }
    }

    /// Writes `key = value` only while this lock is held.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<i64> {
        let token = self.held_token()?;
        self.session.guarded_put(&token, key, value).await
    }

    /// A transaction that applies only while this lock is held.
    pub async fn txn(
        &self,
        compare: Vec<Cmp>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResult> {
        let token = self.held_token()?;
        self.session
            .guarded_txn(&token, compare, success, failure)
            .await
    }

    /// A guarded write with an explicit token, which must be this lock's.
    pub async fn put_with(&self, token: &FencingToken, key: &[u8], value: &[u8]) -> Result<i64> {
        token.expect(TokenKind::Lock, &self.name)?;
        self.session.guarded_put(token, key, value).await
    }

    /// The token of the current hold, or a `Fenced` error naming the lock
    /// when it is not held through this handle (what a guarded write gets).
    pub fn held_token(&self) -> Result<FencingToken> {
        lock(&self.held).clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Fenced,
                format!("lock {:?} is not held through this handle", self.name),
            )
        })
    }
}
