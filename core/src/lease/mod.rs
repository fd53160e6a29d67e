//! Ownership election: sessions (leases kept alive), locks with fencing
//! tokens, elections, guarded writes and shard ownership, on a real etcd or
//! on an embedded in-process store with the same semantics.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::time::Duration;
//! use shardkit::lease::Coordinator;
//! let coord = Coordinator::embedded();
//! let session = coord.session_ttl(Duration::from_secs(5)).await?;
//! let lock = session.lock("jobs")?;
//! let token = lock.lock().await?;
//! lock.put(b"jobs/state", b"running").await?; // applies only while held
//! assert!(token.revision > 0);
//! lock.unlock().await?;
//! session.close().await?;
//! # Ok::<(), shardkit::Error>(())
//! # }).unwrap();
//! ```

mod backend;
mod cancel;
mod coordinator;
mod election;
mod embedded;
mod endpoints;
mod etcd;
mod fence;
pub mod kv;
mod lock;
mod ownership;
mod queue;
mod scoped_lock;
mod session;
mod token;
mod validate;

pub use cancel::Cancel;
pub use coordinator::{Coordinator, DEFAULT_TIMEOUT};
pub use election::{Election, FollowPolicy, LeaderInfo, Observer, ELECTION_PREFIX};
pub use endpoints::{parse_endpoints, ENDPOINTS_ENV};
pub use fence::FenceGate;
pub use kv::{
    Cmp, CmpOp, CmpTarget, Event, EventKind, Kv, LeaseId, Op, OpResult, Range, RangeOpts,
    SortOrder, SortTarget, Txn, TxnResult, Watch,
};
pub use lock::{Lock, LOCK_PREFIX};
pub use ownership::{OwnershipEvent, OwnershipHandler, ShardOwner, SHARDS_PREFIX};
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use queue::waiter_wakeups;
pub use queue::{validate_name, WaitOptions, MAX_NAME_LEN};
pub use scoped_lock::ScopedLock;
pub use session::{Session, SessionOptions, MAX_TTL_SECS};
pub use token::{FencingToken, TokenKind};
