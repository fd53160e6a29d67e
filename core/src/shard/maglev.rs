//! Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
//! Network Load Balancer", NSDI 2016): a lookup table of prime size `M`
//! filled by letting nodes take turns claiming their next preferred free
//! entry, each node's preferences being the permutation
//! `(offset + j * skip) mod M`. A lookup is one reduction and one load.
//!
//! Weights: turns are scheduled by stride (node `i` takes its `t`-th turn at
//! virtual time `t / w_i`), so over the fill each node claims entries in
//! proportion to its weight; with equal weights this is the paper's round
//! robin. Turn order among equal times follows the node's hash, not the list
//! order, so two clients given the same nodes in a different order build the
//! same table.

use super::{walk_table, FastMod, Placement};
use crate::error::{Error, Result};
use crate::node::Node;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The table size `maglev` uses when none is named: prime, 2^16 + 1, and
/// large enough for good balance up to several hundred nodes.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// The largest table size accepted: the first prime above 2^24 (a 64 MiB
/// table). Larger tables only cost memory and build time.
pub const MAX_TABLE_SIZE: u32 = 16_777_259;

/// Seeds of the two independent hashes of a node's ring id. Pinned.
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b; // "maglevsk"

/// Whether `n` is prime (trial division: `n` is at most [`MAX_TABLE_SIZE`]).
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3u32;
    while d.saturating_mul(d) <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// Checks a table size on its own (the node count is checked at build).
pub(crate) fn validate_table_size(m: u32) -> Result<()> {
    if !is_prime(m) || m > MAX_TABLE_SIZE {
        return Err(Error::invalid(format!(
            "maglev table size must be a prime between 2 and {MAX_TABLE_SIZE}, got {m}"
        )));
    }
    Ok(())
}

pub(crate) struct Maglev {
    table: Vec<u32>,
    reduce: FastMod,
}

/// A node's place in the turn schedule.
struct Turn {
    /// Turns taken so far.
    taken: u64,
    weight: u64,
    /// Order among equal times: the node's offset hash, then its index.
    tie: (u64, usize),
}

impl Turn {
    /// Compares virtual times `taken / weight` exactly.
    fn time_cmp(&self, other: &Turn) -> Ordering {
        (self.taken * other.weight).cmp(&(other.taken * self.weight))
    }
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Turn {}
impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Turn {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest turn.
    fn cmp(&self, other: &Self) -> Ordering {
        self.time_cmp(other)
            .then_with(|| self.tie.cmp(&other.tie))
            .reverse()
    }
}

impl Maglev {
    pub(crate) fn build(table_size: u32, slots: &[Option<Node>]) -> Result<Maglev> {
        validate_table_size(table_size)?;
        let live: Vec<(u32, &Node)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i as u32, n)))
            .collect();
        let m = table_size as u64;
        if live.len() as u64 > m {
            return Err(Error::invalid(format!(
                "maglev table size must be a prime at least the node count {}, got {table_size}; \
                 name a larger one, e.g. maglev:{}",
                live.len(),
                next_prime_at_least(live.len() as u64 * 100)
            )));
        }
        // Per node: current permutation position and stride.
        let mut pos = Vec::with_capacity(live.len());
        let mut skip = Vec::with_capacity(live.len());
        let mut heap = BinaryHeap::with_capacity(live.len());
        for (i, (_, node)) in live.iter().enumerate() {
            let id = node.ring_id().as_bytes();
            let h_off = xxhash_rust::xxh3::xxh3_64_with_seed(id, OFFSET_SEED);
            let h_skip = xxhash_rust::xxh3::xxh3_64_with_seed(id, SKIP_SEED);
            pos.push(h_off % m);
            skip.push(h_skip % (m - 1) + 1);
            heap.push(Turn {
                taken: 0,
                weight: node.weight() as u64,
                tie: (h_off, i),
            });
        }
        const EMPTY: u32 = u32::MAX;
        let mut table = vec![EMPTY; table_size as usize];
        let mut filled = 0u64;
        while filled < m {
            let mut turn = heap.pop().expect("every node stays scheduled");
            let i = turn.tie.1;
            // The permutation visits every entry (skip < m, m prime), and an
            // entry is free, so this ends.
            let mut p = pos[i];
            while table[p as usize] != EMPTY {
                p += skip[i];
                if p >= m {
                    p -= m;
                }
            }
            table[p as usize] = live[i].0;
            pos[i] = p;
            filled += 1;
            turn.taken += 1;
            heap.push(turn);
        }
        Ok(Maglev {
            table,
            reduce: FastMod::new(table_size),
        })
    }
}

/// The least prime `>= n` (capped at [`MAX_TABLE_SIZE`]), for error hints.
fn next_prime_at_least(n: u64) -> u32 {
    let mut c = n.clamp(2, MAX_TABLE_SIZE as u64) as u32;
    while !is_prime(c) && c < MAX_TABLE_SIZE {
        c += 1;
    }
    c
}

impl Placement for Maglev {
    #[inline]
    fn locate(&self, h: u64) -> u32 {
        self.table[self.reduce.reduce(h) as usize]
    }

    fn walk(&self, h: u64, visit: &mut dyn FnMut(u32) -> bool) {
        walk_table(&self.table, self.reduce.reduce(h) as usize, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix64;

    fn nodes(n: usize) -> Vec<Option<Node>> {
        (0..n)
            .map(|i| Some(Node::named(format!("node-{i}")).unwrap()))
            .collect()
    }

    #[test]
    fn primality_and_bounds() {
        assert!(is_prime(2) && is_prime(65_537) && is_prime(MAX_TABLE_SIZE));
        assert!(!is_prime(0) && !is_prime(1) && !is_prime(65_536) && !is_prime(65_535));
        // MAX_TABLE_SIZE is the first prime above 2^24.
        assert!(((1u32 << 24)..MAX_TABLE_SIZE).all(|n| !is_prime(n)));
        for bad in [0u32, 1, 4, 65_536, MAX_TABLE_SIZE + 2] {
            let e = validate_table_size(bad).err().unwrap();
            assert!(e.message().contains(&format!("got {bad}")), "{e}");
        }
    }

    #[test]
    fn equal_weights_fill_evenly() {
        let m = Maglev::build(65_537, &nodes(100)).unwrap();
        let mut counts = [0u32; 100];
        for &s in &m.table {
            counts[s as usize] += 1;
        }
        // Round robin: every node claims floor or ceil of M / n entries.
        assert!(counts.iter().all(|&c| c == 655 || c == 656), "{counts:?}");
    }

    #[test]
    fn weights_claim_proportional_entries() {
        let s: Vec<Option<Node>> = [1, 2, 3, 4]
            .iter()
            .enumerate()
            .map(|(i, w)| Some(Node::new(format!("n{i}"), *w).unwrap()))
            .collect();
        let m = Maglev::build(10_007, &s).unwrap();
        let mut counts = [0f64; 4];
        for &x in &m.table {
            counts[x as usize] += 1.0;
        }
        for (i, c) in counts.iter().enumerate() {
            let want = 10_007.0 * (i + 1) as f64 / 10.0;
            assert!(
                (c - want).abs() <= 2.0,
                "node {i}: {c} entries, want {want}"
            );
        }
    }

    #[test]
    fn table_does_not_depend_on_node_order() {
        let a = nodes(20);
        let mut b = a.clone();
        b.reverse();
        let ma = Maglev::build(1009, &a).unwrap();
        let mb = Maglev::build(1009, &b).unwrap();
        for (x, y) in ma.table.iter().zip(&mb.table) {
            assert_eq!(
                a[*x as usize].as_ref().unwrap().name(),
                b[*y as usize].as_ref().unwrap().name()
            );
        }
    }

    #[test]
    fn too_small_a_table_is_named() {
        let e = Maglev::build(7, &nodes(8)).err().unwrap();
        assert!(
            e.message().contains("got 7") && e.message().contains("8"),
            "{e}"
        );
    }

    #[test]
    fn placement_is_pinned() {
        let m = Maglev::build(DEFAULT_TABLE_SIZE, &nodes(5)).unwrap();
        let got: Vec<u32> = (0..12u64).map(|i| m.locate(mix64(i))).collect();
        assert_eq!(got, PINNED);
    }

    const PINNED: [u32; 12] = [4, 0, 4, 2, 2, 2, 3, 0, 2, 4, 4, 0];
}
