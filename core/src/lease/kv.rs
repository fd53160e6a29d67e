//! The small key-value model both lease backends speak: keys with revisions
//! and leases, compare-and-swap transactions, ranges and watches. It is a
//! subset of etcd's v3 API, so the etcd backend is a translation and the
//! embedded store a faithful reimplementation; locks, elections and guarded
//! writes are written once on top of it.

use crate::error::Result;

/// A lease id as etcd numbers it (`0` means "no lease").
pub type LeaseId = i64;

/// One stored key with the revisions that order it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty for delete events).
    pub value: Vec<u8>,
    /// Revision of the write that created this key (unique per creation;
    /// the order of lock waiters and the number in a fencing token).
    pub create_revision: i64,
    /// Revision of the last write to this key (of the delete, in events).
    pub mod_revision: i64,
    /// Number of writes since creation (0 in delete events).
    pub version: i64,
    /// The lease the key is attached to, or 0.
    pub lease: LeaseId,
}

/// What a [`Cmp`] compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmpTarget {
    /// The key's create revision (0 when the key does not exist).
    CreateRevision(i64),
    /// The key's mod revision (0 when the key does not exist).
    ModRevision(i64),
    /// The key's version (0 when the key does not exist).
    Version(i64),
    /// The key's value (a missing key never compares equal).
    Value(Vec<u8>),
    /// The key's lease (0 when it has none or does not exist).
    Lease(LeaseId),
}

/// Comparison operator of a [`Cmp`]: `stored <op> given`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// One guard of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmp {
    /// The key compared.
    pub key: Vec<u8>,
    /// The operator.
    pub op: CmpOp,
    /// The field and value compared against.
    pub target: CmpTarget,
}

impl Cmp {
    /// `create_revision(key) <op> rev`.
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CmpOp, rev: i64) -> Cmp {
        Cmp {
            key: key.into(),
            op,
            target: CmpTarget::CreateRevision(rev),
        }
    }
    /// `mod_revision(key) <op> rev`.
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CmpOp, rev: i64) -> Cmp {
        Cmp {
            key: key.into(),
            op,
            target: CmpTarget::ModRevision(rev),
        }
    }
    /// `version(key) <op> v`.
    pub fn version(key: impl Into<Vec<u8>>, op: CmpOp, v: i64) -> Cmp {
        Cmp {
            key: key.into(),
            op,
            target: CmpTarget::Version(v),
        }
    }
    /// `value(key) <op> value`.
    pub fn value(key: impl Into<Vec<u8>>, op: CmpOp, value: impl Into<Vec<u8>>) -> Cmp {
        Cmp {
            key: key.into(),
            op,
            target: CmpTarget::Value(value.into()),
        }
    }
}

/// Sort field of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortTarget {
    /// By key bytes.
    Key,
    /// By create revision.
    Create,
}

/// Sort direction of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Smallest first.
    Ascend,
    /// Largest first.
    Descend,
}

/// Options of a range read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RangeOpts {
    /// Read every key starting with the given key instead of the key alone.
    pub prefix: bool,
    /// Sort the result; `None` means by key, ascending (etcd's default).
    pub sort: Option<(SortTarget, SortOrder)>,
    /// At most this many keys (0: no limit).
    pub limit: i64,
    /// Only keys with `create_revision <= max_create_revision` (0: no bound).
    pub max_create_revision: i64,
}

impl RangeOpts {
    /// Every key under a prefix, by key.
    pub fn prefix() -> RangeOpts {
        RangeOpts {
            prefix: true,
            ..RangeOpts::default()
        }
    }
}

/// Result of a range read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Range {
    /// The keys read, in the requested order, at most `limit`.
    pub kvs: Vec<Kv>,
    /// The store's revision when the read was served.
    pub revision: i64,
}

/// One operation inside a [`Txn`] branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read a key or prefix.
    Get {
        /// The key (or prefix).
        key: Vec<u8>,
        /// Range options.
        opts: RangeOpts,
    },
    /// Write a key, attached to `lease` unless it is 0.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// Lease to attach, or 0.
        lease: LeaseId,
    },
    /// Delete a key (or every key under a prefix).
    Delete {
        /// The key (or prefix).
        key: Vec<u8>,
        /// Delete the whole prefix.
        prefix: bool,
    },
}

impl Op {
    /// A put without lease.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }
    /// A get of one key.
    pub fn get(key: impl Into<Vec<u8>>) -> Op {
        Op::Get {
            key: key.into(),
            opts: RangeOpts::default(),
        }
    }
    /// A delete of one key.
    pub fn delete(key: impl Into<Vec<u8>>) -> Op {
        Op::Delete {
            key: key.into(),
            prefix: false,
        }
    }
}

/// An atomic compare-and-swap: if every compare holds, run `success`, else
/// `failure`. The whole transaction takes one revision if it writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Txn {
    /// Guards, all of which must hold.
    pub compare: Vec<Cmp>,
    /// Operations run when the guards hold.
    pub success: Vec<Op>,
    /// Operations run otherwise.
    pub failure: Vec<Op>,
}

/// Result of one [`Op`] of the branch a transaction ran.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpResult {
    /// Keys read by a `Get` (empty for other ops).
    pub kvs: Vec<Kv>,
    /// Keys removed by a `Delete` (0 for other ops).
    pub deleted: i64,
}

/// Result of a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnResult {
    /// Whether the guards held (so `success` ran).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// One result per op of the branch that ran, in order.
    pub results: Vec<OpResult>,
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A key was created or overwritten.
    Put,
    /// A key was deleted (by a delete or by its lease ending).
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change (for deletes: the key, with `mod_revision`
    /// the revision of the delete).
    pub kv: Kv,
}

/// A live watch: batches of events in revision order. Dropping it cancels the
/// watch on the server.
#[derive(Debug)]
pub struct Watch {
    pub(crate) rx: tokio::sync::mpsc::UnboundedReceiver<Result<Vec<Event>>>,
    pub(crate) _cancel: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Watch {
    /// Builds a watch from the channel a backend feeds. Dropping the watch
    /// drops `cancel`, which tells the feeding task to stop.
    pub(crate) fn new(
        rx: tokio::sync::mpsc::UnboundedReceiver<Result<Vec<Event>>>,
        cancel: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Watch {
        Watch {
            rx,
            _cancel: cancel,
        }
    }

    /// The next batch of events. An error ends the watch: kind
    /// [`Compacted`](crate::ErrorKind::Compacted) when the start revision was
    /// already compacted, `Unavailable` when the connection failed. `None`
    /// means the backend closed the watch.
    pub async fn next(&mut self) -> Option<Result<Vec<Event>>> {
        self.rx.recv().await
    }
}

/// Whether `key` is `watched`, or under it when `prefix` (the empty prefix
/// holds every key).
pub(crate) fn key_matches(watched: &[u8], prefix: bool, key: &[u8]) -> bool {
    if prefix {
        key.starts_with(watched)
    } else {
        key == watched
    }
}
