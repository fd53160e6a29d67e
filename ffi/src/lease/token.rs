//! `shardkit_fencing_token`: proof of holding a lock, leadership or shard,
//! as C sees it.

use shardkit::lease::FencingToken;

/// A fencing token: proof of holding a lock, leadership or shard.
/// `revision` is the number external resources compare (larger is newer;
/// pass it to `shardkit_fence_gate_admit` or a store's compare); `lease` is
/// the lease the hold lives under.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct shardkit_fencing_token {
    /// The holder key's create revision: the token value. Always positive.
    pub revision: i64,
    /// The lease the holder key lives under.
    pub lease: i64,
}

impl From<&FencingToken> for shardkit_fencing_token {
    fn from(t: &FencingToken) -> Self {
        shardkit_fencing_token {
            revision: t.revision,
            lease: t.lease,
        }
    }
}
