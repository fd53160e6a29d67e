//! The entry point: a handle on a store (embedded or etcd) from which
//! sessions, locks, elections and shard owners are made.

use std::time::Duration;

use super::backend::Backend;
use super::election::{self, FollowPolicy, LeaderInfo, Observer};
use super::embedded::EmbeddedStore;
use super::endpoints::parse_endpoints;
use super::etcd::EtcdStore;
use super::kv::{LeaseId, Range, RangeOpts, Txn, TxnResult, Watch};
use super::scoped_lock::ScopedLock;
use super::session::{Session, SessionOptions};
use crate::error::{Error, Result};

/// Default bound on connecting and on requests made without a session.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on one store. Clones share it (and, for the embedded store, the
/// data): contenders in one process use clones of one coordinator.
#[derive(Clone, Debug)]
pub struct Coordinator {
    backend: Backend,
    timeout: Duration,
}

impl Coordinator {
    /// A new, empty in-process store with etcd's semantics.
    pub fn embedded() -> Coordinator {
        Coordinator {
            backend: Backend::Embedded(EmbeddedStore::new()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Connects to etcd at `endpoints` (comma-separated `host:port` or
    /// `http://host:port`). Fails with `Unavailable` within `timeout` when no
    /// endpoint answers.
    pub async fn connect(endpoints: &str, timeout: Duration) -> Result<Coordinator> {
        let list = parse_endpoints(endpoints)?;
        Coordinator::connect_list(&list, timeout).await
    }

    /// [`connect`](Coordinator::connect) with an already parsed list.
    pub async fn connect_list(endpoints: &[String], timeout: Duration) -> Result<Coordinator> {
        if timeout.is_zero() {
            return Err(Error::invalid("connect timeout 0: connecting needs time"));
        }
        let store = EtcdStore::connect(endpoints, timeout).await?;
        Ok(Coordinator {
            backend: Backend::Etcd(store),
            timeout,
        })
    }

    /// etcd when `endpoints` is given (or `SHARDKIT_ENDPOINTS` is set and
    /// non-empty), otherwise a new embedded store.
    pub async fn from_env(endpoints: Option<&str>, timeout: Duration) -> Result<Coordinator> {
        let env = std::env::var(super::endpoints::ENDPOINTS_ENV).ok();
        match endpoints.or(env.as_deref().filter(|s| !s.trim().is_empty())) {
            Some(list) => Coordinator::connect(list, timeout).await,
            None => Ok(Coordinator::embedded()),
        }
    }

    /// Whether this is the embedded store.
    pub fn is_embedded(&self) -> bool {
        matches!(self.backend, Backend::Embedded(_))
    }

    /// `embedded store` or `etcd at <endpoints>`.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// The bound on requests made without a session.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Grants a lease of `opts.ttl` and keeps it alive.
    pub async fn session(&self, opts: SessionOptions) -> Result<Session> {
        Session::start(self.backend.clone(), opts).await
    }

    /// A session with this TTL and default options.
    pub async fn session_ttl(&self, ttl: Duration) -> Result<Session> {
        self.session(SessionOptions::with_ttl(ttl)).await
    }

    /// Takes over the live lease `lease` (after a restart). `opts.ttl` is
    /// ignored: the lease keeps the TTL it was granted.
    pub async fn resume(&self, lease: LeaseId, opts: SessionOptions) -> Result<Session> {
        Session::resume(self.backend.clone(), lease, opts).await
    }

    /// The current leader of election `name`.
    pub async fn leader(&self, name: &str) -> Result<Option<LeaderInfo>> {
        election::leader(&self.backend, name, self.timeout).await
    }

    /// Follows the leadership of election `name` under the default
    /// [`FollowPolicy`].
    pub fn observe(&self, name: &str) -> Result<Observer> {
        self.observe_with(name, FollowPolicy::default())
    }

    /// Follows the leadership of election `name`, riding out store failures
    /// as `policy` says.
    pub fn observe_with(&self, name: &str, policy: FollowPolicy) -> Result<Observer> {
        Observer::new(self.backend.clone(), name, self.timeout, policy)
    }

    /// Runs a raw transaction (for callers building their own protocols).
    pub async fn txn(&self, txn: Txn) -> Result<TxnResult> {
        self.backend.txn(txn, self.timeout).await
    }

    /// Reads a key or prefix.
    pub async fn range(&self, key: &[u8], opts: RangeOpts) -> Result<Range> {
        self.backend.range(key, opts, self.timeout).await
    }

    /// Watches a key or prefix from `start_revision` (0: from now).
    pub async fn watch(&self, key: &[u8], prefix: bool, start_revision: i64) -> Result<Watch> {
        self.backend
            .watch(key, prefix, start_revision, self.timeout)
            .await
    }

    /// Revokes any lease by id (operators, tests); a lease already gone is fine.
    pub async fn revoke(&self, lease: LeaseId) -> Result<()> {
        self.backend.revoke(lease, self.timeout).await
    }

    /// `(granted, remaining)` TTL of a lease in seconds, `None` when gone.
    pub async fn lease_ttl(&self, lease: LeaseId) -> Result<Option<(i64, i64)>> {
        self.backend.time_to_live(lease, self.timeout).await
    }

    /// Compacts history before `revision`.
    pub async fn compact(&self, revision: i64) -> Result<()> {
        self.backend.compact(revision, self.timeout).await
    }

    /// A lock on `name` held for one scope under a lease of its own, made
    /// with `opts` at each acquire (see [`ScopedLock`]).
    pub fn scoped_lock(&self, name: &str, opts: SessionOptions) -> Result<ScopedLock> {
        ScopedLock::new(self, name, opts)
    }
}

impl Session {
    /// A contender for lock `name` under this session.
    pub fn lock(&self, name: &str) -> Result<super::lock::Lock> {
        super::lock::Lock::new(self, name)
    }

    /// A candidate in election `name` under this session.
    pub fn election(&self, name: &str) -> Result<super::election::Election> {
        super::election::Election::new(self, name)
    }
}
