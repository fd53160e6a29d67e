//! Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam,
//! SODA 2018), in the partitioned form Go users know from
//! buraksezer/consistent: keys hash to one of `P` partitions
//! (`hash % P`), and partitions are assigned in order by walking a ring of
//! node points clockwise from the partition's own point, skipping nodes that
//! already hold their capacity. A lookup is one reduction and one load.
//!
//! Capacity: node `i`'s fair share is `P * w_i / W`. Its capacity is
//! `floor(c * share)` whenever those floors add up to at least `P`, which
//! makes partition-level peak-to-mean at most `c` exactly; otherwise (few
//! partitions per node, roughly `P < n / (c - 1)`) it is the paper's
//! `ceil(c * share)`, which bounds a node by `c * share + 1`. Under the
//! floor rule a node whose fair share is far below one partition may get
//! none, as a ketama ring gives no points to such a node.
//!
//! Ring points are spread in proportion to weight (about
//! [`POINTS_PER_NODE`] per average node, fewer for very large sets), so that
//! the bound is rarely what decides an assignment and keys move little when
//! the set changes. The ring is only needed to build the owner table; the
//! preference order of a key walks the owner table onward from its
//! partition, which spreads a down node's keys over many nodes.

use super::{walk_table, FastMod, Placement};
use crate::error::{Error, Result};
use crate::node::Node;

/// The load factor `bounded` uses when none is named.
pub const DEFAULT_LOAD_FACTOR: f64 = 1.25;

/// The partition count `bounded` uses when none is named: prime, so weak key
/// hashes still spread, and large enough that a node's share is hundreds of
/// partitions at a hundred nodes, which keeps key-level balance within `c`.
pub const DEFAULT_PARTITIONS: u32 = 65_537;

/// The largest partition count accepted (a 64 MiB owner table).
pub const MAX_PARTITIONS: u32 = 1 << 24;

/// Ring points for an average node; heavier nodes get proportionally more.
pub const POINTS_PER_NODE: u64 = 1000;

/// The ring never has more points than this, whatever the node count.
const MAX_POINTS: u64 = 1 << 21;

/// Seed of the partition positions on the ring. Pinned.
const PARTITION_SALT: u64 = 0x626f_756e_6465_6470; // "boundedp"

/// Checks a load factor on its own.
pub(crate) fn validate_load_factor(c: f64) -> Result<()> {
    if !(c.is_finite() && c > 1.0) {
        return Err(Error::invalid(format!(
            "bounded load factor must be a finite number greater than 1.0, got {c}"
        )));
    }
    Ok(())
}

/// Checks a partition count on its own (the node count is checked at build).
pub(crate) fn validate_partitions(p: u32) -> Result<()> {
    if p == 0 || p > MAX_PARTITIONS {
        return Err(Error::invalid(format!(
            "bounded partition count must be between 1 and {MAX_PARTITIONS}, got {p}"
        )));
    }
    Ok(())
}

pub(crate) struct Bounded {
    owners: Vec<u32>,
    reduce: FastMod,
}

impl Bounded {
    pub(crate) fn build(
        load_factor: f64,
        partitions: u32,
        slots: &[Option<Node>],
    ) -> Result<Bounded> {
        validate_load_factor(load_factor)?;
        validate_partitions(partitions)?;
        let live: Vec<(u32, &Node)> = slots
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i as u32, n)))
            .collect();
        let n = live.len();
        if (partitions as usize) < n {
            return Err(Error::invalid(format!(
                "bounded partition count must be at least the node count {n}, got {partitions}"
            )));
        }
        let p = partitions as u64;
        let total_w: u64 = live.iter().map(|(_, nd)| nd.weight() as u64).sum();
        let caps = capacities(load_factor, p, &live, total_w);

        // Ring points: (position, node index), sorted.
        let budget = (POINTS_PER_NODE * n as u64).min(MAX_POINTS).max(n as u64);
        let mut ring: Vec<(u64, u32)> = Vec::new();
        for (i, (_, node)) in live.iter().enumerate() {
            let k = ((budget as u128 * node.weight() as u128 + total_w as u128 / 2)
                / total_w as u128)
                .max(1) as u64;
            let id = node.ring_id().as_bytes();
            for j in 0..k {
                ring.push((xxhash_rust::xxh3::xxh3_64_with_seed(id, j), i as u32));
            }
        }
        // Ties (vanishingly rare) go to the node that sorts first by name, so
        // the ring never depends on list order.
        ring.sort_unstable_by_key(|r| r.0);
        let mut i = 0;
        while i < ring.len() {
            let mut j = i + 1;
            while j < ring.len() && ring[j].0 == ring[i].0 {
                j += 1;
            }
            if j - i > 1 {
                ring[i..j]
                    .sort_by(|a, b| live[a.1 as usize].1.name().cmp(live[b.1 as usize].1.name()));
            }
            i = j;
        }
        let positions: Vec<u64> = ring.iter().map(|r| r.0).collect();
        let owner_of_point: Vec<u32> = ring.iter().map(|r| r.1).collect();

        // Points of each node, to retire them all when the node fills up.
        let mut start = vec![0usize; n + 1];
        for &o in &owner_of_point {
            start[o as usize + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut points_of = vec![0usize; ring.len()];
        for (j, &o) in owner_of_point.iter().enumerate() {
            points_of[fill[o as usize]] = j;
            fill[o as usize] += 1;
        }

        // `next[j]`: a point at or after j (clockwise) whose node may still
        // have room; full nodes' points forward to their successor. Path
        // halving keeps the whole assignment near-linear even when almost
        // every node is full.
        let len = ring.len();
        let mut next: Vec<usize> = (0..len).collect();
        let find = |next: &mut Vec<usize>, mut j: usize| {
            while next[j] != j {
                let up = next[next[j]];
                next[j] = up;
                j = up;
            }
            j
        };
        let retire = |next: &mut Vec<usize>, i: usize| {
            for &q in &points_of[start[i]..start[i + 1]] {
                next[q] = if q + 1 == len { 0 } else { q + 1 };
            }
        };
        // A node too light for even one partition under the floor rule.
        for (i, &cap) in caps.iter().enumerate() {
            if cap == 0 {
                retire(&mut next, i);
            }
        }
        let mut load = vec![0u64; n];
        let mut owners = vec![0u32; partitions as usize];
        for (part, owner) in owners.iter_mut().enumerate() {
            let h = partition_position(part as u64, p);
            let at = positions.partition_point(|&x| x < h);
            let j = find(&mut next, if at == len { 0 } else { at });
            let i = owner_of_point[j] as usize;
            *owner = live[i].0;
            load[i] += 1;
            if load[i] == caps[i] {
                retire(&mut next, i);
            }
        }
        Ok(Bounded {
            owners,
            reduce: FastMod::new(partitions),
        })
    }
}

/// Where partition `part` of `p` sits on the ring: evenly spaced (from a
/// pinned offset), so a node's partition count tracks its arc of the ring
/// with no sampling noise of its own. Random positions, as buraksezer's
/// hashed partition ids are, would add a binomial spread of about
/// `1/sqrt(P/n)` to every node's load.
fn partition_position(part: u64, p: u64) -> u64 {
    let step = ((1u128 << 64) / p as u128) as u64;
    (part * step).wrapping_add(PARTITION_SALT)
}

/// Each node's partition capacity (see the module docs); they add up to at
/// least `p`, so the assignment always finds room.
fn capacities(c: f64, p: u64, live: &[(u32, &Node)], total_w: u64) -> Vec<u64> {
    let share = |w: u32| p as f64 * w as f64 / total_w as f64;
    let floors: Vec<u64> = live
        .iter()
        .map(|(_, nd)| ((c * share(nd.weight())).floor() as u64).min(p))
        .collect();
    let mut caps = if floors.iter().sum::<u64>() >= p {
        floors
    } else {
        live.iter()
            .map(|(_, nd)| ((c * share(nd.weight())).ceil() as u64).clamp(1, p))
            .collect()
    };
    // sum(ceil(c * share)) >= c * p > p in exact arithmetic; guard the last
    // ulp of float rounding by topping up the largest nodes.
    let mut sum: u64 = caps.iter().sum();
    let (mut i, n) = (0, caps.len());
    while sum < p {
        caps[i % n] += 1;
        sum += 1;
        i += 1;
    }
    caps
}

impl Placement for Bounded {
    #[inline]
    fn locate(&self, h: u64) -> u32 {
        self.owners[self.reduce.reduce(h) as usize]
    }

    fn walk(&self, h: u64, visit: &mut dyn FnMut(u32) -> bool) {
        walk_table(&self.owners, self.reduce.reduce(h) as usize, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix64;

    fn nodes(spec: &[i64]) -> Vec<Option<Node>> {
        spec.iter()
            .enumerate()
            .map(|(i, w)| Some(Node::new(format!("node-{i}"), *w).unwrap()))
            .collect()
    }

    fn counts(b: &Bounded, n: usize) -> Vec<u64> {
        let mut c = vec![0u64; n];
        for &o in &b.owners {
            c[o as usize] += 1;
        }
        c
    }

    #[test]
    fn partition_loads_never_exceed_capacity() {
        for (c, p, n) in [
            (1.25, 65_537u32, 100usize),
            (1.05, 10_007, 50),
            (1.5, 271, 100),
            (1.01, 1000, 999),
        ] {
            let s = nodes(&vec![1; n]);
            let b = Bounded::build(c, p, &s).unwrap();
            let fair = p as f64 / n as f64;
            let peak = *counts(&b, n).iter().max().unwrap() as f64;
            // floor(c * fair) when it covers P, else ceil(c * fair).
            assert!(
                peak <= (c * fair).ceil(),
                "c={c} p={p} n={n}: peak {peak}, fair {fair}"
            );
            if (c * fair).floor() * n as f64 >= p as f64 {
                assert!(peak / fair <= c, "c={c} p={p} n={n}: {}", peak / fair);
            }
        }
    }

    #[test]
    fn weighted_capacity_is_honoured() {
        let s = nodes(&[1, 1, 1, 5]);
        let b = Bounded::build(1.1, 8000, &s).unwrap();
        let c = counts(&b, 4);
        // Node 3 has 5/8 of the weight: 5000 partitions fair, at most 5500.
        assert!(c[3] <= 5500 && c[3] >= 4500, "{c:?}");
        for &x in &c[..3] {
            assert!(x <= 1100, "{c:?}");
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        for c in [1.0, 0.5, f64::NAN, f64::INFINITY, -2.0] {
            let e = Bounded::build(c, 100, &nodes(&[1, 1])).err().unwrap();
            assert!(e.message().contains(&format!("got {c}")), "{e}");
        }
        let e = Bounded::build(1.25, 3, &nodes(&[1; 4])).err().unwrap();
        assert!(
            e.message().contains("got 3") && e.message().contains("4"),
            "{e}"
        );
        let e = Bounded::build(1.25, 0, &nodes(&[1])).err().unwrap();
        assert!(e.message().contains("got 0"), "{e}");
    }

    #[test]
    fn placement_is_pinned() {
        let b = Bounded::build(DEFAULT_LOAD_FACTOR, DEFAULT_PARTITIONS, &nodes(&[1; 5])).unwrap();
        let got: Vec<u32> = (0..12u64).map(|i| b.locate(mix64(i))).collect();
        assert_eq!(got, PINNED);
    }

    const PINNED: [u32; 12] = [3, 2, 3, 0, 0, 1, 0, 2, 3, 4, 4, 2];
}
