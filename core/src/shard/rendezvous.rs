//! Weighted rendezvous (highest-random-weight) hashing, in the logarithmic
//! form of Schindelhauer & Schomaker: node `i` scores `-w_i / ln(u_i)` for a
//! key, with `u_i` uniform in (0, 1) from the key hash and the node's seed,
//! and the highest score wins. Each node then wins with probability exactly
//! its share of the weight, and a change to one node only moves keys to or
//! from that node. Lookups are O(n); the preference order is the scores in
//! descending order, so replicas and down-node fallbacks need no extra state.

use super::Placement;
use crate::error::Result;
use crate::hash::mix64;
use crate::node::Node;
use std::cmp::Ordering;

/// Seed for the per-node hash of the ring id. Pinned: changing it moves keys.
const NODE_SEED: u64 = 0x7265_6e64_657a_766f; // "rendezvo"

/// 2^-53: turns a 53-bit integer into a fraction.
const INV_2_53: f64 = 1.0 / (1u64 << 53) as f64;

pub(crate) struct Rendezvous {
    /// Per-node seeds, in slot order of `slots`.
    seeds: Vec<u64>,
    weights: Vec<f64>,
    slots: Vec<u32>,
    /// Every weight is the same: the score is monotone in `u` alone, so the
    /// comparison can skip the logarithm and give the same winner.
    uniform: bool,
}

/// One node's draw for a key: 53 random bits.
#[inline]
fn draw(h: u64, seed: u64) -> u64 {
    mix64(h ^ seed) >> 11
}

/// `-w / ln(u)` with `u = (bits + 0.5) / 2^53`, strictly inside (0, 1).
#[inline]
fn score(bits: u64, weight: f64) -> f64 {
    let u = (bits as f64 + 0.5) * INV_2_53;
    -weight / u.ln()
}

/// The node's seed: xxh3 of its ring id, so placement follows names and not
/// list order.
pub(crate) fn node_seed(node: &Node) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(node.ring_id().as_bytes(), NODE_SEED)
}

/// Total order of candidates: score, then the raw draw (so equal weights
/// order exactly by draw, as the fast path does), then the seed and the slot
/// so that even exact ties never depend on anything unstable.
#[inline]
fn better(a: (f64, u64, u64, u32), b: (f64, u64, u64, u32)) -> bool {
    match a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => (a.1, a.2, std::cmp::Reverse(a.3)) > (b.1, b.2, std::cmp::Reverse(b.3)),
    }
}

impl Rendezvous {
    pub(crate) fn build(slots: &[Option<Node>]) -> Result<Rendezvous> {
        let mut r = Rendezvous {
            seeds: Vec::new(),
            weights: Vec::new(),
            slots: Vec::new(),
            uniform: true,
        };
        for (i, n) in slots.iter().enumerate() {
            if let Some(n) = n {
                r.seeds.push(node_seed(n));
                r.weights.push(n.weight() as f64);
                r.slots.push(i as u32);
            }
        }
        r.uniform = r.weights.windows(2).all(|w| w[0] == w[1]);
        Ok(r)
    }

    /// Every live node with its candidate key, best first.
    fn ranked(&self, h: u64) -> Vec<(f64, u64, u64, u32)> {
        let mut all: Vec<_> = (0..self.seeds.len())
            .map(|i| {
                let bits = draw(h, self.seeds[i]);
                (
                    score(bits, self.weights[i]),
                    bits,
                    self.seeds[i],
                    self.slots[i],
                )
            })
            .collect();
        all.sort_unstable_by(|a, b| {
            if better(*a, *b) {
                Ordering::Less
            } else if better(*b, *a) {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        });
        all
    }
}

impl Placement for Rendezvous {
    #[inline]
    fn locate(&self, h: u64) -> u32 {
        if self.uniform {
            let mut best = (0u64, 0u64, 0usize);
            for (i, &seed) in self.seeds.iter().enumerate() {
                let bits = draw(h, seed);
                // Ties on bits fall to the larger seed, then the lower slot,
                // exactly as `better` orders them.
                if i == 0 || (bits, seed) > (best.0, best.1) {
                    best = (bits, seed, i);
                }
            }
            return self.slots[best.2];
        }
        let mut best: Option<(f64, u64, u64, u32)> = None;
        for i in 0..self.seeds.len() {
            let bits = draw(h, self.seeds[i]);
            let cand = (
                score(bits, self.weights[i]),
                bits,
                self.seeds[i],
                self.slots[i],
            );
            let take = match best {
                None => true,
                Some(b) => better(cand, b),
            };
            if take {
                best = Some(cand);
            }
        }
        best.expect("a snapshot has a live node").3
    }

    fn walk(&self, h: u64, visit: &mut dyn FnMut(u32) -> bool) {
        for (_, _, _, slot) in self.ranked(h) {
            if !visit(slot) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(spec: &[(&str, i64)]) -> Vec<Option<Node>> {
        spec.iter()
            .map(|(n, w)| Some(Node::new(*n, *w).unwrap()))
            .collect()
    }

    #[test]
    fn uniform_fast_path_agrees_with_scores() {
        let s = slots(&[("a", 2), ("b", 2), ("c", 2), ("d", 2), ("e", 2)]);
        let r = Rendezvous::build(&s).unwrap();
        assert!(r.uniform);
        for i in 0..5000u64 {
            let h = mix64(i);
            assert_eq!(r.locate(h), r.ranked(h)[0].3);
        }
    }

    #[test]
    fn weighted_locate_is_the_top_of_the_ranking() {
        let s = slots(&[("a", 1), ("b", 3), ("c", 2)]);
        let r = Rendezvous::build(&s).unwrap();
        assert!(!r.uniform);
        for i in 0..5000u64 {
            let h = mix64(i);
            let ranked = r.ranked(h);
            assert_eq!(r.locate(h), ranked[0].3);
            assert!(ranked.windows(2).all(|w| w[0].0 >= w[1].0));
        }
    }

    #[test]
    fn placement_is_pinned() {
        // Fixed vectors: a change here moves keys for every user.
        let r = Rendezvous::build(&slots(&[
            ("node-0", 1),
            ("node-1", 1),
            ("node-2", 1),
            ("node-3", 1),
            ("node-4", 1),
        ]))
        .unwrap();
        let got: Vec<u32> = (0..12u64).map(|i| r.locate(mix64(i))).collect();
        assert_eq!(got, PINNED_UNIFORM);
        let w = Rendezvous::build(&slots(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)])).unwrap();
        let got: Vec<u32> = (0..12u64).map(|i| w.locate(mix64(i))).collect();
        assert_eq!(got, PINNED_WEIGHTED);
    }

    const PINNED_UNIFORM: [u32; 12] = [3, 1, 1, 1, 2, 0, 1, 0, 0, 3, 3, 4];
    const PINNED_WEIGHTED: [u32; 12] = [0, 2, 2, 3, 2, 3, 2, 3, 0, 2, 2, 2];
}
