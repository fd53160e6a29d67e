//! MementoHash (Coluzzi, Brocco, Antonucci & Leidi, "MementoHash: A Stateful,
//! Minimal Memory, Best Performing Consistent Hash Algorithm", 2023,
//! arXiv:2306.09783): jump hash over the slot array, plus a small memory of
//! the buckets removed out of order.
//!
//! While nothing has been removed it *is* jump (same slots, same hash), and
//! removing the last slot just shrinks the array as jump does. Removing any
//! other slot records `bucket -> replacer`, where the replacer is the size of
//! the working set after that removal; a key landing on a removed bucket
//! rehashes into `[0, replacer)` and follows replacers onward until it lands
//! on a working bucket. Only the removed node's keys move, the array has no
//! capacity limit, and memory is proportional to the removals.
//!
//! The base hash is jump, as in the paper, so `memento` places keys exactly
//! where `jump` does until a node leaves out of order. `memento:jumpback`
//! runs the same memory over JumpBackHash instead: identical guarantees, but
//! O(1) per lookup where jump grows with log n, which is what makes large
//! sets (a million nodes) fast; it equals `jumpback` until something is
//! removed.
//!
//! The snapshot stores which slots are holes in removal order; the table is
//! rebuilt by replaying those removals from the full array. Because an added
//! node refills the most recently removed slot, which is exactly what
//! MementoHash's `addBucket` restores, the replayed table equals the one the
//! algorithm would hold after the real history of adds and removes.

use super::jump::jump_hash;
use super::jumpback::jumpback_hash;
use super::{rehash_walk, Placement};
use crate::error::Result;
use crate::hash::mix64;
use crate::node::Node;

/// Multiplier of the rehash of a key on a removed bucket. Pinned, and
/// distinct from the preference walk's so the two sequences are unrelated.
const REHASH_K: u64 = 0xd6e8_feb8_6659_fd93;

/// The consistent hash Memento extends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base {
    Jump,
    JumpBack,
}

pub(crate) struct Memento {
    base: Base,
    /// Size of the b-array jump hashes into (holes included).
    buckets: u32,
    /// Bit `b` set: bucket `b` was removed out of order.
    removed_bits: Vec<u64>,
    /// Removed bucket -> replacer, open addressing.
    map: ReplacerMap,
    live: usize,
}

impl Memento {
    /// Replays `removed` (oldest first) from the full array of `slots.len()`.
    pub(crate) fn build(base: Base, slots: &[Option<Node>], removed: &[u32]) -> Result<Memento> {
        let mut n = slots.len() as u32;
        let mut entries: Vec<(u32, u32)> = Vec::new();
        for &b in removed {
            debug_assert!(b < n && slots[b as usize].is_none());
            if entries.is_empty() && b + 1 == n {
                // Jump's own removal: the array shrinks, nothing to remember.
                n = b;
                continue;
            }
            let working = n - entries.len() as u32;
            entries.push((b, working - 1));
        }
        let mut removed_bits = vec![0u64; (n as usize).div_ceil(64)];
        for &(b, _) in &entries {
            removed_bits[(b / 64) as usize] |= 1 << (b % 64);
        }
        let live = slots.iter().filter(|s| s.is_some()).count();
        debug_assert_eq!(live, n as usize - entries.len());
        Ok(Memento {
            base,
            buckets: n,
            removed_bits,
            map: ReplacerMap::new(&entries),
            live,
        })
    }

    #[inline]
    fn replacer(&self, b: u32) -> Option<u32> {
        if self.removed_bits[(b / 64) as usize] & (1 << (b % 64)) == 0 {
            None
        } else {
            Some(self.map.get(b))
        }
    }
}

/// The rehash of key hash `h` after it landed on removed bucket `b`.
#[inline]
fn rehash(h: u64, b: u32) -> u64 {
    mix64(h ^ (b as u64 + 1).wrapping_mul(REHASH_K))
}

impl Placement for Memento {
    #[inline]
    fn locate(&self, h: u64) -> u32 {
        let mut b = match self.base {
            Base::Jump => jump_hash(h, self.buckets),
            Base::JumpBack => jumpback_hash(h, self.buckets),
        };
        if self.map.is_empty() {
            return b;
        }
        let mut r = self.replacer(b);
        while let Some(rep) = r {
            // Uniform over the working set as it was when `b` was removed.
            b = ((rehash(h, b) as u128 * rep as u128) >> 64) as u32;
            let mut next = self.replacer(b);
            // A bucket removed later than `b`'s removal (its replacer is at
            // least `rep`) hands over to its replacer directly.
            while let Some(v) = next {
                if v < rep {
                    break;
                }
                b = v;
                next = self.replacer(b);
            }
            r = next;
        }
        b
    }

    fn walk(&self, h: u64, visit: &mut dyn FnMut(u32) -> bool) {
        rehash_walk(h, 4 * self.live, |x| self.locate(x), visit);
    }
}

/// A small open-addressing map from removed bucket to replacer: lookups are
/// on the hot path for the keys that hit removed buckets, and the removed set
/// is small beside the array.
struct ReplacerMap {
    /// (bucket, replacer); bucket `u32::MAX` marks an empty entry (no bucket
    /// can have that number: the array is shorter).
    entries: Vec<(u32, u32)>,
    shift: u32,
    len: usize,
}

impl ReplacerMap {
    fn new(items: &[(u32, u32)]) -> ReplacerMap {
        let cap = (items.len() * 2).next_power_of_two().max(2);
        let mut m = ReplacerMap {
            entries: vec![(u32::MAX, 0); cap],
            shift: 64 - cap.trailing_zeros(),
            len: items.len(),
        };
        for &(k, v) in items {
            let mut i = m.index(k);
            while m.entries[i].0 != u32::MAX {
                i = (i + 1) & (cap - 1);
            }
            m.entries[i] = (k, v);
        }
        m
    }

    #[inline]
    fn index(&self, k: u32) -> usize {
        ((k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The replacer of `k`, which must be present.
    #[inline]
    fn get(&self, k: u32) -> u32 {
        let mask = self.entries.len() - 1;
        let mut i = self.index(k);
        loop {
            let (key, v) = self.entries[i];
            if key == k {
                return v;
            }
            debug_assert!(
                key != u32::MAX,
                "bucket {k} is marked removed but has no replacer"
            );
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(n: usize) -> Vec<Option<Node>> {
        (0..n)
            .map(|i| Some(Node::named(format!("node-{i}")).unwrap()))
            .collect()
    }

    fn without(mut slots: Vec<Option<Node>>, removed: &[u32]) -> Vec<Option<Node>> {
        for &r in removed {
            slots[r as usize] = None;
        }
        slots
    }

    #[test]
    fn equals_jump_until_something_is_removed() {
        let m = Memento::build(Base::Jump, &full(37), &[]).unwrap();
        for i in 0..5000u64 {
            let h = mix64(i);
            assert_eq!(m.locate(h), jump_hash(h, 37));
        }
        // Removing the last bucket is jump's own shrink.
        let m = Memento::build(Base::Jump, &without(full(37), &[36]), &[36]).unwrap();
        for i in 0..5000u64 {
            let h = mix64(i);
            assert_eq!(m.locate(h), jump_hash(h, 36));
        }
    }

    #[test]
    fn removal_moves_only_the_removed_buckets_keys() {
        let n = 50;
        let mut removed = Vec::new();
        let mut prev = Memento::build(Base::Jump, &full(n), &[]).unwrap();
        for b in [7u32, 31, 0, 49, 12, 48] {
            removed.push(b);
            let next = Memento::build(Base::Jump, &without(full(n), &removed), &removed).unwrap();
            for i in 0..20_000u64 {
                let h = mix64(i);
                let (x, y) = (prev.locate(h), next.locate(h));
                assert!(!removed.contains(&y), "key on removed bucket {y}");
                if x != b {
                    assert_eq!(x, y, "a key off bucket {b} moved from {x} to {y}");
                }
            }
            prev = next;
        }
    }

    #[test]
    fn jumpback_base_equals_jumpback_and_removes_minimally() {
        let m = Memento::build(Base::JumpBack, &full(37), &[]).unwrap();
        for i in 0..5000u64 {
            let h = mix64(i);
            assert_eq!(m.locate(h), jumpback_hash(h, 37));
        }
        let removed = [5u32, 36, 20];
        let r = Memento::build(Base::JumpBack, &without(full(37), &removed), &removed).unwrap();
        for i in 0..20_000u64 {
            let h = mix64(i);
            let (x, y) = (m.locate(h), r.locate(h));
            assert!(!removed.contains(&y));
            if !removed.contains(&x) {
                assert_eq!(x, y);
            }
        }
        let got: Vec<u32> = (0..12u64).map(|i| r.locate(mix64(i))).collect();
        assert_eq!(got, PINNED_JUMPBACK);
    }

    const PINNED_JUMPBACK: [u32; 12] = [25, 2, 28, 34, 12, 9, 6, 31, 10, 35, 0, 29];

    #[test]
    fn replacer_map_finds_every_entry() {
        let items: Vec<(u32, u32)> = (0..1000u32).map(|i| (i * 7919 % 100_003, i)).collect();
        let m = ReplacerMap::new(&items);
        for &(k, v) in &items {
            assert_eq!(m.get(k), v);
        }
    }

    #[test]
    fn placement_is_pinned() {
        let removed = [3u32, 9, 1];
        let m = Memento::build(Base::Jump, &without(full(12), &removed), &removed).unwrap();
        let got: Vec<u32> = (0..12u64).map(|i| m.locate(mix64(i))).collect();
        assert_eq!(got, PINNED);
    }

    const PINNED: [u32; 12] = [0, 0, 7, 2, 11, 8, 4, 8, 7, 7, 10, 4];
}
