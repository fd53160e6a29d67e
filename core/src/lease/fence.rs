//! Fencing an external resource: the resource remembers the newest token it
//! has seen and refuses writes that carry an older one (Kleppmann's fencing
//! token, as in "How to do distributed locking").
//!
//! A lock holder that paused past its lease may wake and write; the lock has
//! since passed on and its successor has written with a larger token, so the
//! stale write is refused here even though it never asked etcd. Tokens of
//! one lock are comparable with each other only, hence one gate per lock.

use std::collections::HashMap;
use std::sync::Mutex;

use super::session::lock;
use super::token::{FencingToken, TokenKind};
use crate::error::{Error, ErrorKind, Result};

/// Keeps the newest token seen per resource and admits only writes that
/// carry a token at least that new.
#[derive(Debug)]
pub struct FenceGate {
    kind: TokenKind,
    name: String,
    newest: Mutex<HashMap<Vec<u8>, i64>>,
}

impl FenceGate {
    /// A gate for tokens of the lock `name`.
    pub fn for_lock(name: &str) -> Result<FenceGate> {
        FenceGate::new(TokenKind::Lock, name)
    }

    /// A gate for tokens of `kind` named `name`; the name follows the rules
    /// of lock and election names (non-empty, no control characters).
    pub fn new(kind: TokenKind, name: &str) -> Result<FenceGate> {
        super::queue::validate_name("fence gate", name)?;
        Ok(FenceGate {
            kind,
            name: name.to_string(),
            newest: Mutex::new(HashMap::new()),
        })
    }

    /// Admits a write to `resource` carrying `token`: records it as the
    /// newest and returns Ok, or returns `Fenced` (and records nothing) when
    /// a newer token was already seen. A token of another lock is an
    /// `InvalidArgument` error.
    pub fn admit(&self, resource: &[u8], token: &FencingToken) -> Result<()> {
        token.expect(self.kind, &self.name)?;
        self.admit_value(resource, token.revision)
    }

    /// [`admit`](FenceGate::admit) for a bare token value, as an external
    /// process receives it (`SHARDKIT_FENCING_TOKEN`).
    pub fn admit_value(&self, resource: &[u8], token: i64) -> Result<()> {
        if token <= 0 {
            return Err(Error::invalid(format!(
                "fencing token {token}: tokens are positive"
            )));
        }
        let mut newest = lock(&self.newest);
        let seen = newest.entry(resource.to_vec()).or_insert(0);
        if token < *seen {
            return Err(Error::new(
                ErrorKind::Fenced,
                format!(
                    "write to {:?} with token {token} rejected: token {} was already seen",
                    String::from_utf8_lossy(resource),
                    *seen
                ),
            ));
        }
        *seen = token;
        Ok(())
    }

    /// The newest token seen for `resource` (0 if none).
    pub fn newest(&self, resource: &[u8]) -> i64 {
        lock(&self.newest).get(resource).copied().unwrap_or(0)
    }
}
