//! Nanoseconds per lookup of a precomputed key hash, for every algorithm at
//! several node counts. A quick microbenchmark, not a test: run with
//! `cargo run --release -p shardkit --example lookup_speed [SIZES...]`
//! (default sizes 10, 1000 and 1000000).

use shardkit::hash::mix64;
use shardkit::shard::{jump_hash, jumpback_hash, ALGORITHM_NAMES};
use shardkit::{Algorithm, Change, HashFn, Node, ShardConfig, Sharder};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Distinct hashes cycled through, so table lookups see cache misses as a
/// real key stream would, not one hot entry.
const HASHES: usize = 1 << 20;

/// Runs `f` over the hash stream in five rounds of about `budget / 5` and
/// returns the best round's nanoseconds per call: the machine is shared, and
/// the minimum is the figure least disturbed by other work.
fn time_per_call(hashes: &[u64], budget: Duration, mut f: impl FnMut(u64) -> u32) -> f64 {
    // Warm up (caches, branch predictors, page faults on the table).
    let mut acc = 0u64;
    for &h in hashes.iter().take(10_000) {
        acc = acc.wrapping_add(f(h) as u64);
    }
    let mut best = f64::MAX;
    let mut at = 0usize;
    for _ in 0..5 {
        let start = Instant::now();
        let mut calls = 0usize;
        while start.elapsed() < budget / 5 {
            for &h in &hashes[at..at + 4096] {
                acc = acc.wrapping_add(f(black_box(h)) as u64);
            }
            at = (at + 4096) % hashes.len();
            calls += 4096;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / calls as f64);
    }
    black_box(acc);
    best
}

/// The spelling used at `n` nodes: table-based algorithms need a table or
/// partition count of at least `n`.
fn spelling(name: &str, n: usize) -> Option<String> {
    match name {
        "maglev" if n > 65_537 => Some("maglev:16777259".into()),
        "bounded" if n > 65_537 => Some("bounded:1.25:4194304".into()),
        // 160 ring points per node: a 1M-node ring is over a gigabyte.
        n_ if n_.starts_with("ketama") && n > 100_000 => None,
        _ => Some(name.to_string()),
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("node counts are integers"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 1000, 1_000_000]
    } else {
        sizes
    };
    let hashes: Vec<u64> = (0..HASHES as u64).map(mix64).collect();
    let budget = Duration::from_millis(300);

    println!("| algorithm | nodes | build ms | ns/lookup |");
    println!("|---|---:|---:|---:|");
    for &n in &sizes {
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node::named(format!("node-{i}")).unwrap())
            .collect();
        for name in ALGORITHM_NAMES {
            let Some(spelled) = spelling(name, n) else {
                println!("| {name} | {n} | - | not built |");
                continue;
            };
            let alg = Algorithm::from_name(&spelled).unwrap();
            let t0 = Instant::now();
            let s = Sharder::new(nodes.clone(), ShardConfig::new(alg)).unwrap();
            let build = t0.elapsed().as_secs_f64() * 1e3;
            // O(n) per lookup: fewer calls, same figure.
            let b = if *name == "rendezvous" && n > 10_000 {
                Duration::from_millis(50)
            } else {
                budget
            };
            let ns = time_per_call(&hashes, b, |h| s.lookup_hash(h).unwrap());
            println!("| {spelled} | {n} | {build:.1} | {ns:.1} |");
        }
        // Memento with 2% of the nodes removed at random (with nothing
        // removed it is in the loop above).
        let removals: Vec<Change> = {
            let mut picked: Vec<usize> = (0..n).collect();
            // Fisher-Yates with a pinned stream, for a stable benchmark.
            for i in (1..n).rev() {
                let j = (mix64(i as u64 ^ 0xbe4c) % (i as u64 + 1)) as usize;
                picked.swap(i, j);
            }
            picked
                .into_iter()
                .take(n / 50)
                .map(|i| Change::Remove(format!("node-{i}")))
                .collect()
        };
        if !removals.is_empty() {
            for alg in [Algorithm::Memento, Algorithm::MementoJumpBack] {
                let s = Sharder::new(nodes.clone(), ShardConfig::new(alg)).unwrap();
                let t0 = Instant::now();
                let r = s.apply(&removals).unwrap();
                let build = t0.elapsed().as_secs_f64() * 1e3;
                let ns = time_per_call(&hashes, budget, |h| r.lookup_hash(h).unwrap());
                println!("| {alg}, 2% removed | {n} | {build:.1} | {ns:.1} |");
            }
        }
    }
    // Balance over 1M keys and movement on add/remove, at 100 nodes.
    println!();
    println!("| algorithm (100 nodes) | peak/mean, 1M keys | moved on add (min) | moved on remove (min) |");
    println!("|---|---:|---:|---:|");
    let hundred: Vec<Node> = (0..100)
        .map(|i| Node::named(format!("node-{i}")).unwrap())
        .collect();
    for name in ALGORITHM_NAMES {
        let s = Sharder::new(
            hundred.clone(),
            ShardConfig::new(Algorithm::from_name(name).unwrap()),
        )
        .unwrap();
        let b = s.balance(1_000_000).unwrap();
        let add = s
            .movement(
                &s.with_added(Node::named("node-100").unwrap()).unwrap(),
                200_000,
            )
            .unwrap();
        let rem = s
            .movement(&s.with_removed("node-37").unwrap(), 200_000)
            .unwrap();
        println!(
            "| {name} | {:.3} | {:.4} ({:.4}) | {:.4} ({:.4}) |",
            b.peak_to_mean, add.fraction, add.minimum, rem.fraction, rem.minimum
        );
    }
    println!();
    // The bucket functions alone, at sizes no node set reaches.
    for buckets in [1000u32, 1_000_000, 1_000_000_000] {
        let ns = time_per_call(&hashes, budget, |h| jump_hash(h, buckets));
        println!("| jump_hash (function) | {buckets} | - | {ns:.1} |");
        let ns = time_per_call(&hashes, budget, |h| jumpback_hash(h, buckets));
        println!("| jumpback_hash (function) | {buckets} | - | {ns:.1} |");
    }
    let xxh3 = HashFn::default();
    let mut key = *b"user:1234567890:abcd"; // 20 bytes
    let ns = time_per_call(&hashes, budget, |h| {
        key[..8].copy_from_slice(&h.to_le_bytes());
        xxh3.hash(&key) as u32
    });
    println!("| xxh3 of a 20-byte key | - | - | {ns:.1} |");
}
