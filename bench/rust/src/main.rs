//! The Rust half of `make bench` (driven by bench/run.sh).
//!
//! Measures, for every algorithm in [`ALGORITHM_NAMES`] at 10 to 10,000
//! nodes, the cost of one lookup of a precomputed key hash
//! ([`Sharder::lookup_hash`]) and of one 20-byte key including its hash
//! ([`Sharder::lookup_slot`]); the extra rows the targets name
//! (JumpBackHash up to 10⁹ buckets, Memento at 1M nodes with 2% removed);
//! a 1M-key batch on rayon pools of 1 and 2 threads; and balance and
//! movement at 100 nodes. It writes one JSON document that bench/report.py
//! turns into bench/results/sharding.md. Nothing here judges a figure.
//!
//! Usage: `shardkit-bench [--quick] [--out PATH]` or
//! `shardkit-bench --list-algorithms`.

use serde_json::{json, Value};
use shardkit::shard::{jump_hash, jumpback_hash, ALGORITHM_NAMES, DEFAULT_LOAD_FACTOR};
use shardkit::{Algorithm, Change, Node, ShardConfig, Sharder};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Node counts of the main table.
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// Bucket counts for the raw jump / JumpBackHash functions.
const RAW_SIZES: [u32; 6] = [10, 100, 1_000, 10_000, 1_000_000, 1_000_000_000];
/// Keys are this long, as in the targets.
const KEY_LEN: usize = 20;
/// Keys (and hashes) cycled through by the timed loops: enough to defeat
/// branch prediction, few enough (16K × 20 B) to stay in L2 beside the table.
const KEYS: usize = 1 << 14;
/// Keys whose slots are summed into the cross-language placement checksum.
const CHECK_KEYS: usize = 4096;
/// The key count of the batch measurement.
const BATCH_KEYS: usize = 1_000_000;
/// Keys sampled for balance and movement.
const REPORT_SAMPLES: usize = 1_000_000;
/// Seeds of the key and hash streams; C, Go and Python use the same ones.
const KEY_SEED: u64 = 0x5eed_0001;
const HASH_SEED: u64 = 0x5eed_0002;

/// SplitMix64: the stream every language's benchmark regenerates, so their
/// keys are byte for byte the same and their placement checksums must match.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// `n` keys of 20 lowercase letters (printable, so Python can pass the same
/// keys as `str` to uhashring): byte `j` of a key is byte `j % 8` of the
/// stream's `j / 8`-th draw for that key, mapped to `'a' + b % 26`.
fn make_keys(n: usize) -> Vec<[u8; KEY_LEN]> {
    let mut rng = SplitMix(KEY_SEED);
    (0..n)
        .map(|_| {
            let mut k = [0u8; KEY_LEN];
            let mut r = 0u64;
            for (j, b) in k.iter_mut().enumerate() {
                if j % 8 == 0 {
                    r = rng.next();
                }
                *b = b'a' + ((r >> (8 * (j % 8))) & 0xff) as u8 % 26;
            }
            k
        })
        .collect()
}

fn make_hashes(n: usize) -> Vec<u64> {
    let mut rng = SplitMix(HASH_SEED);
    (0..n).map(|_| rng.next()).collect()
}

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| Node::new(format!("node-{i}"), 1).expect("valid node"))
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Adaptive timing: calibrates an operation count that takes about `rep`,
/// then reports the median over `reps` repetitions.
struct Timer {
    rep: Duration,
    reps: usize,
}

impl Timer {
    /// Median nanoseconds per operation; `run(n)` performs `n` operations and
    /// returns a value that depends on all of them (so none is optimised out).
    fn ns_per_op(&self, mut run: impl FnMut(u64) -> u64) -> f64 {
        let mut n = 16u64;
        let target = self.rep.as_secs_f64();
        let n = loop {
            let t = Instant::now();
            black_box(run(n));
            let e = t.elapsed().as_secs_f64();
            if e >= target / 10.0 {
                break ((n as f64 * target / e).ceil() as u64).max(1);
            }
            n *= 4;
        };
        let mut v: Vec<f64> = (0..self.reps)
            .map(|_| {
                let t = Instant::now();
                black_box(run(n));
                t.elapsed().as_nanos() as f64 / n as f64
            })
            .collect();
        median(&mut v)
    }
}

fn build(alg: &str, n: usize) -> (Sharder, f64) {
    let algorithm = Algorithm::from_name(alg).expect("names come from ALGORITHM_NAMES");
    let nodes = nodes(n);
    let t = Instant::now();
    let s = Sharder::new(nodes, ShardConfig::new(algorithm))
        .unwrap_or_else(|e| panic!("building {alg} over {n} nodes: {e}"));
    (s, t.elapsed().as_secs_f64() * 1e3)
}

/// Per-lookup cost over precomputed key hashes.
fn time_hash(t: &Timer, s: &Sharder, hashes: &[u64]) -> f64 {
    t.ns_per_op(|n| {
        let mut acc = 0u64;
        for i in 0..n as usize {
            let slot = s.lookup_hash(hashes[i % KEYS]).unwrap_or(u32::MAX);
            acc = acc.wrapping_add(slot as u64);
        }
        acc
    })
}

/// Per-lookup cost of a 20-byte key, its hash included.
fn time_key(t: &Timer, s: &Sharder, keys: &[[u8; KEY_LEN]]) -> f64 {
    t.ns_per_op(|n| {
        let mut acc = 0u64;
        for i in 0..n as usize {
            let slot = s.lookup_slot(&keys[i % KEYS]).unwrap_or(u32::MAX);
            acc = acc.wrapping_add(slot as u64);
        }
        acc
    })
}

/// Sums of slots over the first keys and hashes: what C, Go and Python must
/// reproduce for their figures to be about the same placement.
fn checksums(s: &Sharder, keys: &[[u8; KEY_LEN]], hashes: &[u64]) -> (u64, u64) {
    let by_key = keys[..CHECK_KEYS]
        .iter()
        .map(|k| s.lookup_slot(k).expect("no node is down") as u64)
        .sum();
    let by_hash = hashes[..CHECK_KEYS]
        .iter()
        .map(|h| s.lookup_hash(*h).expect("no node is down") as u64)
        .sum();
    (by_key, by_hash)
}

fn lookups(t: &Timer, keys: &[[u8; KEY_LEN]], hashes: &[u64]) -> Vec<Value> {
    let mut rows = Vec::new();
    for alg in ALGORITHM_NAMES {
        for n in SIZES {
            let (s, build_ms) = build(alg, n);
            let ns_hash = time_hash(t, &s, hashes);
            let ns_key = time_key(t, &s, keys);
            let (check_key, check_hash) = checksums(&s, keys, hashes);
            eprintln!("rust: {alg:>16} n={n:<6} hash {ns_hash:7.1} ns  key {ns_key:7.1} ns");
            rows.push(json!({
                "algorithm": alg, "nodes": n, "build_ms": build_ms,
                "ns_hash": ns_hash, "ns_key": ns_key,
                "check_key": check_key, "check_hash": check_hash,
            }));
        }
    }
    rows
}

/// JumpBackHash (the O(1) successor) and jump beyond what a Sharder can
/// hold: the raw functions up to 10⁹ buckets, and Sharders at 1M nodes.
fn successor(t: &Timer, keys: &[[u8; KEY_LEN]], hashes: &[u64]) -> Value {
    let raw = |f: fn(u64, u32) -> u32, buckets: u32| {
        t.ns_per_op(|n| {
            let mut acc = 0u64;
            for i in 0..n as usize {
                acc = acc.wrapping_add(f(hashes[i % KEYS], buckets) as u64);
            }
            acc
        })
    };
    let mut raw_rows = Vec::new();
    for b in RAW_SIZES {
        let jb = raw(jumpback_hash, b);
        let j = raw(jump_hash, b);
        eprintln!("rust: raw buckets={b:<10} jumpback {jb:6.1} ns  jump {j:6.1} ns");
        raw_rows.push(json!({"buckets": b, "jumpback_ns": jb, "jump_ns": j}));
    }
    let mut sharders = Vec::new();
    for alg in ["jumpback", "jump"] {
        let (s, build_ms) = build(alg, 1_000_000);
        let ns_hash = time_hash(t, &s, hashes);
        let ns_key = time_key(t, &s, keys);
        eprintln!("rust: {alg} n=1M hash {ns_hash:.1} ns key {ns_key:.1} ns");
        sharders.push(json!({
            "algorithm": alg, "nodes": 1_000_000, "build_ms": build_ms,
            "ns_hash": ns_hash, "ns_key": ns_key,
        }));
    }
    json!({"raw": raw_rows, "sharders": sharders})
}

/// Every Memento variant at 1M nodes, before and after removing 2% of the
/// nodes (chosen at random, so removals land everywhere, not only at the end).
fn memento(t: &Timer, keys: &[[u8; KEY_LEN]], hashes: &[u64]) -> Vec<Value> {
    const N: usize = 1_000_000;
    const REMOVE: usize = N / 50;
    let mut rng = SplitMix(0x5eed_0003);
    let mut gone = vec![false; N];
    let mut changes = Vec::with_capacity(REMOVE);
    while changes.len() < REMOVE {
        let i = (rng.next() % N as u64) as usize;
        if !gone[i] {
            gone[i] = true;
            changes.push(Change::Remove(format!("node-{i}")));
        }
    }
    let mut rows = Vec::new();
    for alg in ALGORITHM_NAMES.iter().filter(|a| a.starts_with("memento")) {
        let (s, build_ms) = build(alg, N);
        let intact = time_hash(t, &s, hashes);
        let t0 = Instant::now();
        let s2 = s.apply(&changes).expect("removing existing nodes");
        let apply_ms = t0.elapsed().as_secs_f64() * 1e3;
        drop(s);
        let ns_hash = time_hash(t, &s2, hashes);
        let ns_key = time_key(t, &s2, keys);
        eprintln!(
            "rust: {alg} 1M -2%: hash {ns_hash:.1} ns key {ns_key:.1} ns (intact {intact:.1} ns)"
        );
        rows.push(json!({
            "algorithm": alg, "nodes": N, "removed": REMOVE, "build_ms": build_ms,
            "apply_ms": apply_ms, "ns_hash_intact": intact, "ns_hash": ns_hash, "ns_key": ns_key,
        }));
    }
    rows
}

/// One 1M-key batch (`lookup_batch`, 20-byte keys, hashing included) on
/// rayon pools of 1 and 2 threads.
fn batch(quick: bool) -> Vec<Value> {
    let keys = {
        let mut rng = SplitMix(0x5eed_0004);
        (0..BATCH_KEYS)
            .map(|_| {
                let mut k = [0u8; KEY_LEN];
                for c in k.chunks_mut(8) {
                    c.copy_from_slice(&rng.next().to_le_bytes()[..c.len()]);
                }
                k
            })
            .collect::<Vec<_>>()
    };
    let reps = if quick { 3 } else { 9 };
    let mut rows = Vec::new();
    for alg in ["maglev", "jump", "ketama:twemproxy"] {
        let (s, _) = build(alg, 100);
        let mut out = vec![0u32; BATCH_KEYS];
        let pools: Vec<rayon::ThreadPool> = [1usize, 2]
            .iter()
            .map(|&k| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(k)
                    .build()
                    .expect("a rayon pool")
            })
            .collect();
        let mut time_in = |pool: &rayon::ThreadPool| {
            pool.install(|| {
                let t = Instant::now();
                s.lookup_batch(&keys, &mut out).expect("batch");
                black_box(&out);
                t.elapsed().as_secs_f64() * 1e3
            })
        };
        for pool in &pools {
            time_in(pool); // warm-up: first touch of `out`, threads started
        }
        // Alternate the pools batch by batch, so a burst of load from
        // elsewhere on a shared machine weighs on both alike.
        let mut v = [Vec::new(), Vec::new()];
        for _ in 0..reps {
            for (i, pool) in pools.iter().enumerate() {
                v[i].push(time_in(pool));
            }
        }
        let ms = [median(&mut v[0]), median(&mut v[1])];
        let (t1, t2) = (ms[0], ms[1]);
        eprintln!(
            "rust: batch {alg} 1M keys: 1 thread {t1:.1} ms, 2 threads {t2:.1} ms, {:.2}x",
            t1 / t2
        );
        rows.push(json!({
            "algorithm": alg, "nodes": 100, "keys": BATCH_KEYS,
            "ms_1": t1, "ms_2": t2, "speedup": t1 / t2,
            "keys_per_s_1": BATCH_KEYS as f64 / (t1 / 1e3),
            "keys_per_s_2": BATCH_KEYS as f64 / (t2 / 1e3),
        }));
    }
    rows
}

fn movement_json(a: &Sharder, b: &Sharder) -> Value {
    let m = a.movement(b, REPORT_SAMPLES).expect("movement");
    json!({"fraction": m.fraction, "minimum": m.minimum, "moved": m.moved})
}

/// Balance over 1M keys, and movement when node-100 joins, when node-50 (a
/// middle one) leaves and when node-99 (the last) leaves, at 100 nodes.
fn balance_movement() -> Vec<Value> {
    let mut rows = Vec::new();
    for alg in ALGORITHM_NAMES {
        let (s, _) = build(alg, 100);
        let b = s.balance(REPORT_SAMPLES).expect("balance");
        let added = s
            .with_added(Node::new("node-100", 1).expect("node"))
            .expect("add");
        let mid = s.with_removed("node-50").expect("remove");
        let last = s.with_removed("node-99").expect("remove");
        eprintln!("rust: balance {alg:>16} peak/mean {:.3}", b.peak_to_mean);
        rows.push(json!({
            "algorithm": alg, "nodes": 100, "samples": REPORT_SAMPLES,
            "peak_to_mean": b.peak_to_mean, "min_to_mean": b.min_to_mean, "stddev": b.stddev,
            "add": movement_json(&s, &added),
            "remove_middle": movement_json(&s, &mid),
            "remove_last": movement_json(&s, &last),
        }));
    }
    rows
}

fn main() {
    let mut quick = false;
    let mut out: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(args.next().expect("--out needs a path")),
            "--list-algorithms" => {
                println!("{}", ALGORITHM_NAMES.join("\n"));
                return;
            }
            other => {
                eprintln!("usage: shardkit-bench [--quick] [--out PATH] | --list-algorithms; got {other:?}");
                std::process::exit(2);
            }
        }
    }
    let timer = if quick {
        Timer {
            rep: Duration::from_millis(5),
            reps: 3,
        }
    } else {
        // Many short repetitions: on a shared machine, interference comes in
        // bursts, and the median of many short runs steps around them.
        Timer {
            rep: Duration::from_millis(30),
            reps: 7,
        }
    };
    let keys = make_keys(KEYS);
    let hashes = make_hashes(KEYS);
    let started = Instant::now();
    let mut doc = json!({
        "quick": quick,
        "rep_ms": timer.rep.as_secs_f64() * 1e3,
        "reps": timer.reps,
        "threads_available": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "key_len": KEY_LEN,
        "keys_cycled": KEYS,
        "check_keys": CHECK_KEYS,
        "bounded_load_factor": DEFAULT_LOAD_FACTOR,
        "default_algorithm": shardkit::shard::DEFAULT_ALGORITHM,
        "lookups": lookups(&timer, &keys, &hashes),
        "successor": successor(&timer, &keys, &hashes),
        "memento": memento(&timer, &keys, &hashes),
        "batch": batch(quick),
        "balance": balance_movement(),
    });
    doc["seconds"] = json!(started.elapsed().as_secs_f64());
    let text = serde_json::to_string_pretty(&doc).expect("JSON");
    match out {
        Some(path) => {
            std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("writing {path}: {e}"))
        }
        None => println!("{text}"),
    }
}
