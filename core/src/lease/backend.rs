//! The one abstraction over the two stores: an enum, so calls dispatch
//! without boxing futures, and so every RPC gets its request checks
//! ([`validate`]), its process check (after `fork()`) and its timeout in
//! one place.

use std::future::Future;
use std::time::Duration;

use super::embedded::EmbeddedStore;
use super::etcd::EtcdStore;
use super::kv::{LeaseId, Range, RangeOpts, Txn, TxnResult, Watch};
use super::validate;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::Home;

/// Where leases and keys live.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// In this process; same semantics as etcd, no network.
    Embedded(EmbeddedStore),
    /// A real etcd cluster through `etcd-client`.
    Etcd(EtcdStore),
}

impl Drop for Backend {
    fn drop(&mut self) {
        // In a forked child the store's last clone must never go: dropping it
        // aborts or wakes the parent's tasks, on a runtime whose threads (and
        // perhaps the locks they held) the child does not have. A clone
        // forgotten here keeps it alive; dropping `self` then only counts
        // down.
        if !self.home().is_here() {
            std::mem::forget(self.clone());
        }
    }
}

/// Runs `fut` for at most `timeout`; a late answer is a `Timeout` error that
/// names the operation, so a caller never waits past what it allowed.
pub(crate) async fn with_timeout<T>(
    what: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    if timeout.is_zero() {
        return Err(Error::new(
            ErrorKind::Timeout,
            format!("{what}: no time left to send the request"),
        ));
    }
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("{what}: no answer within {} ms", timeout.as_millis()),
        )),
    }
}

macro_rules! dispatch {
    ($self:ident, $what:expr, $timeout:expr, $s:ident => $call:expr) => {{
        $self.check_process()?;
        match $self {
            Backend::Embedded($s) => with_timeout($what, $timeout, $call).await,
            Backend::Etcd($s) => with_timeout($what, $timeout, $call).await,
        }
    }};
}

impl Backend {
    /// The process the store's client (or the embedded store's background
    /// tasks) lives in.
    fn home(&self) -> Home {
        match self {
            Backend::Embedded(s) => s.home(),
            Backend::Etcd(s) => s.home(),
        }
    }

    /// Ok in the process the store was made in; in a forked child, the
    /// error saying the coordinator must be made again there.
    pub(crate) fn check_process(&self) -> Result<()> {
        let home = self.home();
        if home.is_here() {
            // The description is built only for the error.
            return Ok(());
        }
        home.check(format_args!(
            "the Coordinator ({}) behind this object",
            self.describe()
        ))
    }

    /// Grants a lease of `ttl` seconds; returns its id and the TTL granted
    /// (which a server may raise to its minimum).
    pub(crate) async fn grant(&self, ttl: i64, timeout: Duration) -> Result<(LeaseId, i64)> {
        validate::ttl(ttl)?;
        dispatch!(self, "lease grant", timeout, s => s.grant(ttl))
    }

    /// Renews a lease; returns the TTL it now has, or 0 when it is gone.
    pub(crate) async fn keep_alive(&self, id: LeaseId, timeout: Duration) -> Result<i64> {
        dispatch!(self, "lease keepalive", timeout, s => s.keep_alive(id))
    }

    /// Revokes a lease and deletes its keys; a lease already gone is fine.
    pub(crate) async fn revoke(&self, id: LeaseId, timeout: Duration) -> Result<()> {
        dispatch!(self, "lease revoke", timeout, s => s.revoke(id))
    }

    /// `(granted_ttl, remaining_ttl)` of a live lease, `None` when it is gone.
    pub(crate) async fn time_to_live(
        &self,
        id: LeaseId,
        timeout: Duration,
    ) -> Result<Option<(i64, i64)>> {
        dispatch!(self, "lease time-to-live", timeout, s => s.time_to_live(id))
    }

    /// Runs a transaction atomically.
    pub(crate) async fn txn(&self, txn: Txn, timeout: Duration) -> Result<TxnResult> {
        validate::txn(&txn)?;
        dispatch!(self, "transaction", timeout, s => s.txn(txn))
    }

    /// Reads a key or prefix.
    pub(crate) async fn range(
        &self,
        key: &[u8],
        opts: RangeOpts,
        timeout: Duration,
    ) -> Result<Range> {
        validate::range(key, &opts)?;
        dispatch!(self, "range", timeout, s => s.range(key, opts))
    }

    /// Watches a key (or prefix) from `start_revision` (0: from now).
    pub(crate) async fn watch(
        &self,
        key: &[u8],
        prefix: bool,
        start_revision: i64,
        timeout: Duration,
    ) -> Result<Watch> {
        validate::watch(key, start_revision)?;
        dispatch!(self, "watch", timeout, s => s.watch(key, prefix, start_revision))
    }

    /// Compacts history before `revision` (tests and operators).
    pub(crate) async fn compact(&self, revision: i64, timeout: Duration) -> Result<()> {
        validate::compact(revision)?;
        dispatch!(self, "compact", timeout, s => s.compact(revision))
    }

    /// A short name for messages: `embedded` or the endpoints.
    pub(crate) fn describe(&self) -> String {
        match self {
            Backend::Embedded(_) => "embedded store".to_string(),
            Backend::Etcd(s) => format!("etcd at {}", s.endpoints().join(",")),
        }
    }
}
