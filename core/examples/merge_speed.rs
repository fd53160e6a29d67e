//! Nanoseconds per element of the top-k merge, against a plain
//! `BinaryHeap` k-way merge doing the same work. A quick microbenchmark,
//! not a test: run with
//! `cargo run --release -p shardkit --example merge_speed [LISTS] [PER_LIST]`
//! (default 16 lists of 100000 hits). The side-by-side against itertools'
//! `kmerge` and Python's `heapq.merge` lives in bench/.

use shardkit::merge::{intersect, top_k, top_k_par, top_k_trusted, Hit};
// Seeded, so runs are repeatable.
use shardkit_testkit::Rng;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::Instant;

/// The merge order as an `Ord` wrapper for the heap baseline.
#[derive(Clone, Copy, PartialEq)]
struct ByRank(Hit);

impl Eq for ByRank {}

impl PartialOrd for ByRank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByRank {
    fn cmp(&self, o: &Self) -> Ordering {
        // Smaller = earlier in the merge: score desc, shard asc, doc asc.
        o.0.score
            .total_cmp(&self.0.score)
            .then(self.0.shard.cmp(&o.0.shard))
            .then(self.0.doc.cmp(&o.0.doc))
    }
}

/// The baseline: a min-heap of (head, list) popped `k` times.
fn heap_merge(lists: &[&[Hit]], k: usize) -> Vec<Hit> {
    let mut heap: BinaryHeap<Reverse<(ByRank, usize)>> = lists
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.first().map(|&h| Reverse((ByRank(h), i))))
        .collect();
    let mut pos = vec![1usize; lists.len()];
    let mut out = Vec::with_capacity(k.min(lists.iter().map(|l| l.len()).sum()));
    while out.len() < k {
        let Some(Reverse((ByRank(h), i))) = heap.pop() else {
            break;
        };
        out.push(h);
        if let Some(&n) = lists[i].get(pos[i]) {
            pos[i] += 1;
            heap.push(Reverse((ByRank(n), i)));
        }
    }
    out
}

/// Best of five runs, in nanoseconds per output element.
fn ns_per(elements: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed().as_nanos() as f64 / elements as f64);
    }
    best
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are LISTS PER_LIST"))
        .collect();
    let n_lists = args.first().copied().unwrap_or(16);
    let per = args.get(1).copied().unwrap_or(100_000);
    let mut rng = Rng::new(0x1234_5678_9ABC_DEF1);
    let lists: Vec<Vec<Hit>> = (0..n_lists as u32)
        .map(|s| {
            let mut v: Vec<Hit> = (0..per)
                .map(|d| Hit::new(rng.below(1_000_000) as f32 / 1000.0, s, d as u64))
                .collect();
            v.sort_by_key(|h| ByRank(*h));
            v
        })
        .collect();
    let refs: Vec<&[Hit]> = lists.iter().map(|l| l.as_slice()).collect();
    let total = n_lists * per;
    assert_eq!(top_k(&refs, 0, total).unwrap(), heap_merge(&refs, total));
    println!(
        "{n_lists} lists x {per} hits, rayon threads {}",
        rayon::current_num_threads()
    );
    println!("{:<44} {:>10}", "case", "ns/elem");
    for k in [total, 1000] {
        let row = |name: &str, ns: f64| println!("{:<44} {:>10.2}", format!("{name} k={k}"), ns);
        row(
            "top_k (validates all input)",
            ns_per(k, || top_k(&refs, 0, k).unwrap().len()),
        );
        row(
            "top_k_trusted (checks consumed prefix)",
            ns_per(k, || top_k_trusted(&refs, 0, k).unwrap().len()),
        );
        row(
            "top_k_par",
            ns_per(k, || top_k_par(&refs, 0, k).unwrap().len()),
        );
        row(
            "BinaryHeap k-way merge",
            ns_per(k, || heap_merge(&refs, k).len()),
        );
        // The floor: copying k hits into a fresh output (allocation, page
        // faults, memory bandwidth) with no merging at all.
        row(
            "copy floor (no merge)",
            ns_per(k, || {
                let v: Vec<Hit> = refs
                    .iter()
                    .flat_map(|l| l.iter())
                    .take(k)
                    .copied()
                    .collect();
                v.len()
            }),
        );
    }
    // Intersection: a small list against a big one (galloping) and two
    // equal lists (linear), per element of input.
    let big: Vec<u64> = (0..(total as u64)).map(|i| i * 3).collect();
    let small: Vec<u64> = (0..(total as u64 / 1000)).map(|i| i * 2999).collect();
    let even: Vec<u64> = (0..(total as u64)).map(|i| i * 2).collect();
    let n = big.len() + small.len();
    println!(
        "{:<44} {:>10.2}",
        "intersect skewed (1:1000), per input elem",
        ns_per(n, || intersect(&[&big, &small]).unwrap().len())
    );
    println!(
        "{:<44} {:>10.2}",
        "intersect even (1:1), per input elem",
        ns_per(2 * big.len(), || intersect(&[&big, &even]).unwrap().len())
    );
}
