//! Fencing tokens and the writes they guard.
//!
//! A token is the create revision of the holder's key (plus the lease it
//! lives under). Revisions only grow, so of two holders of one lock the later
//! always has the larger token. Writes through [`Session::guarded_txn`] carry
//! the token as a compare on the holder's key: once the lock has passed on,
//! the key is gone and the write is refused by the store itself, however
//! late the stale holder's request arrives.

use std::fmt;

use super::kv::{Cmp, CmpOp, LeaseId, Op, Txn, TxnResult};
use super::session::Session;
use crate::error::{Error, ErrorKind, Result};

/// What a token was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A lock acquire.
    Lock,
    /// An election win.
    Leader,
    /// A shard taken by a shard owner.
    Shard,
}

impl TokenKind {
    fn tag(self) -> &'static str {
        match self {
            TokenKind::Lock => "lock",
            TokenKind::Leader => "leader",
            TokenKind::Shard => "shard",
        }
    }
}

/// Proof of holding a lock, leadership or a shard at some revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FencingToken {
    /// Lock, leader or shard.
    pub kind: TokenKind,
    /// The lock, election or shard name.
    pub name: String,
    /// The holder's key in the store.
    pub key: Vec<u8>,
    /// The key's create revision: the number external resources compare.
    pub revision: i64,
    /// The lease the key lives under.
    pub lease: LeaseId,
}

impl fmt::Display for FencingToken {
    /// `kind:name@revision/lease-hex`, e.g. `lock:jobs@1234/694d7a3c1e2f0a11`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}@{}/{:016x}",
            self.kind.tag(),
            self.name,
            self.revision,
            self.lease
        )
    }
}

impl FencingToken {
    /// The token's revision: the integer an external store compares.
    pub fn value(&self) -> i64 {
        self.revision
    }

    /// Errors unless this token was issued for `kind` named `name`.
    pub fn expect(&self, kind: TokenKind, name: &str) -> Result<()> {
        if self.kind != kind || self.name != name {
            return Err(Error::invalid(format!(
                "token {self} is not for {} {name:?}",
                kind.tag()
            )));
        }
        Ok(())
    }
}

impl Session {
    /// Runs `success` atomically only while `token` is current (the holder's
    /// key still exists with the token's revision) and every extra compare
    /// holds; `failure` runs otherwise.
    ///
    /// Errors: `Fenced` when the token is no longer current (nothing was
    /// written); `Timeout` or `Unavailable` mean the outcome is unknown (the
    /// store may have applied the write after the client stopped waiting), `InvalidArgument` for a token of another session,
    /// `SessionLost` once the session is lost. When only an extra compare
    /// fails, the result has `succeeded == false` and the `failure` results.
    pub async fn guarded_txn(
        &self,
        token: &FencingToken,
        compare: Vec<Cmp>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnResult> {
        if token.lease != self.lease_id() {
            return Err(Error::invalid(format!(
                "token {token} belongs to lease {:x}, not to this session's lease {:x}",
                token.lease,
                self.lease_id()
            )));
        }
        let timeout = self.rpc_timeout()?;
        let mut all = vec![Cmp::create_revision(
            token.key.clone(),
            CmpOp::Equal,
            token.revision,
        )];
        all.extend(compare);
        let mut fail_ops = vec![Op::get(token.key.clone())];
        fail_ops.extend(failure);
        let mut res = self
            .inner
            .backend
            .txn(
                Txn {
                    compare: all,
                    success,
                    failure: fail_ops,
                },
                timeout,
            )
            .await?;
        if res.succeeded {
            return Ok(res);
        }
        let holder = res.results.remove(0);
        match holder.kvs.first() {
            Some(kv) if kv.create_revision == token.revision => Ok(res),
            _ => Err(Error::new(
                ErrorKind::Fenced,
                format!("token {token} is no longer current: the write was rejected"),
            )),
        }
    }

    /// Writes `key = value` only while `token` is current; returns the
    /// revision of the write. See [`guarded_txn`](Session::guarded_txn).
    pub async fn guarded_put(&self, token: &FencingToken, key: &[u8], value: &[u8]) -> Result<i64> {
        let r = self
            .guarded_txn(
                token,
                vec![],
                vec![Op::put(key.to_vec(), value.to_vec())],
                vec![],
            )
            .await?;
        Ok(r.revision)
    }
}
