//! The checks every store makes before it runs a request, in one place and
//! one wording, so the embedded store and etcd refuse the same requests with
//! the same messages. [`Backend`](super::backend::Backend) runs them before
//! dispatching; the stores themselves check only what depends on their state
//! (a lease that must exist, a compaction point).

use std::collections::HashSet;

use super::kv::{key_matches, Op, RangeOpts, Txn};
use crate::error::{Error, Result};

/// etcd's default `--max-txn-ops`: most compares, and most ops per branch.
pub(crate) const MAX_TXN_OPS: usize = 128;

/// etcd's `MaxLeaseTTL` (about 285 years); larger TTLs are refused.
pub(crate) const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// A key for messages: `key "text"`, with bytes that are not printable ASCII
/// escaped (keys are bytes).
pub(crate) fn show_key(key: &[u8]) -> String {
    format!("key \"{}\"", key.escape_ascii())
}

/// A lease TTL in seconds: 1 to etcd's maximum.
pub(crate) fn ttl(ttl: i64) -> Result<()> {
    if !(1..=MAX_LEASE_TTL).contains(&ttl) {
        return Err(Error::invalid(format!(
            "lease TTL must be between 1 and {MAX_LEASE_TTL} seconds, got {ttl}"
        )));
    }
    Ok(())
}

/// A read of `key` (or the prefix) with `opts`.
pub(crate) fn range(key: &[u8], opts: &RangeOpts) -> Result<()> {
    if key.is_empty() && !opts.prefix {
        return Err(Error::invalid(
            "range needs a key (the empty key reads nothing; use a prefix read for every key)",
        ));
    }
    if opts.limit < 0 {
        return Err(Error::invalid(format!(
            "range limit must be 0 (none) or positive, got {}",
            opts.limit
        )));
    }
    if opts.max_create_revision < 0 {
        return Err(Error::invalid(format!(
            "range max_create_revision must be 0 (none) or positive, got {}",
            opts.max_create_revision
        )));
    }
    Ok(())
}

/// A watch of `key` from revision `start` (0: from now).
pub(crate) fn watch(key: &[u8], start: i64) -> Result<()> {
    if start < 0 {
        return Err(Error::invalid(format!(
            "watch of {}: start revision must be 0 (now) or positive, got {start}",
            show_key(key)
        )));
    }
    Ok(())
}

/// A compaction before revision `rev`.
pub(crate) fn compact(rev: i64) -> Result<()> {
    if rev < 1 {
        return Err(Error::invalid(format!(
            "compact revision must be positive, got {rev}"
        )));
    }
    Ok(())
}

/// What etcd checks before running a txn: sizes, keys, and no key written
/// twice (or put and deleted) in one branch ("duplicate key").
pub(crate) fn txn(txn: &Txn) -> Result<()> {
    if txn.compare.len() > MAX_TXN_OPS {
        return Err(Error::invalid(format!(
            "txn has {} compares, more than the limit of {MAX_TXN_OPS}",
            txn.compare.len()
        )));
    }
    for (name, ops) in [("success", &txn.success), ("failure", &txn.failure)] {
        if ops.len() > MAX_TXN_OPS {
            return Err(Error::invalid(format!(
                "txn {name} branch has {} ops, more than the limit of {MAX_TXN_OPS}",
                ops.len()
            )));
        }
        let mut deletes: Vec<(&[u8], bool)> = Vec::new();
        for op in ops.iter() {
            match op {
                Op::Get { key, opts } => range(key, opts)?,
                Op::Put { key, .. } if key.is_empty() => {
                    return Err(Error::invalid(format!(
                        "txn {name} branch: put needs a key"
                    )))
                }
                Op::Delete { key, prefix } => {
                    if key.is_empty() && !prefix {
                        return Err(Error::invalid(format!(
                            "txn {name} branch: delete needs a key (or prefix = true)"
                        )));
                    }
                    deletes.push((key, *prefix));
                }
                Op::Put { .. } => {}
            }
        }
        let mut puts: HashSet<&[u8]> = HashSet::new();
        for op in ops.iter() {
            if let Op::Put { key, .. } = op {
                let deleted = deletes.iter().any(|&(d, p)| key_matches(d, p, key));
                if !puts.insert(key) || deleted {
                    return Err(Error::invalid(format!(
                        "duplicate key given in txn request: {} is written twice in the {name} branch",
                        show_key(key)
                    )));
                }
            }
        }
    }
    Ok(())
}
