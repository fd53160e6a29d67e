//! The Rust side of bench/scatter.sh (issue 4, item 7): shardkit's merge
//! functions beside the peers a Rust user would otherwise reach for, in one
//! process on the same inputs:
//!
//! 1. top-k k-way merge of 16 lists x 100k hits, the whole merge (k = all)
//!    and one page (k = 1000): `top_k` and `top_k_trusted` against
//!    itertools' `kmerge_by` and a std `BinaryHeap` merge;
//! 2. posting-list intersection (u32) at size ratios 1:1, 1:100, 1:1000
//!    against a plain two-pointer merge, and union against a two-pointer
//!    union (2 lists) and itertools' `kmerge().dedup()` (16 lists);
//! 3. rayon scaling of `top_k_par`, `intersect_par` and `union_par` at the
//!    thread counts given, each in its own `ThreadPool`.
//!
//! Every peer's answer is checked equal to shardkit's before anything is
//! timed, so a fast wrong peer cannot win. It measures and reports; it
//! fails only on bad arguments, a disagreement, or an unwritable output.
//!
//! Usage: shardkit-scatter-bench [--reps N] [--threads 1,2] [--json PATH]
//!        [--md PATH] [--date STAMP] [--rustc VERSION] [--quick]

use itertools::Itertools;
use serde_json::{json, Value};
use shardkit::merge::{
    intersect, intersect_par, top_k, top_k_par, top_k_trusted, union, union_par, Hit, PAR_THRESHOLD,
};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

/// Lists in the merge and union workloads, and hits per list.
const LISTS: usize = 16;
const PER_LIST: usize = 100_000;
/// The page size of the "one page" merge.
const PAGE: usize = 1000;
/// Length of the large posting list in the intersection workloads.
const BIG: usize = 1_000_000;
/// Each timed sample runs the operation enough times to last at least this
/// long, so the clock's resolution and one-off stalls do not dominate.
const MIN_SAMPLE_NS: f64 = 2e6;

struct Args {
    reps: usize,
    threads: Vec<usize>,
    json: Option<String>,
    md: Option<String>,
    date: String,
    rustc: String,
    quick: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        reps: 15,
        threads: vec![1, 2],
        json: None,
        md: None,
        date: "unknown".into(),
        rustc: "unknown".into(),
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--quick" {
            a.quick = true;
            continue;
        }
        let val = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value, got none"))?;
        match flag.as_str() {
            "--reps" => {
                a.reps = val
                    .parse()
                    .ok()
                    .filter(|&r: &usize| r >= 1)
                    .ok_or_else(|| format!("--reps must be a whole number >= 1, got {val:?}"))?;
            }
            "--threads" => {
                a.threads = val
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .ok()
                            .filter(|&t: &usize| t >= 1)
                            .ok_or_else(|| {
                                format!(
                                    "--threads takes counts >= 1 like 1,2; got {s:?} in {val:?}"
                                )
                            })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--json" => a.json = Some(val),
            "--md" => a.md = Some(val),
            "--date" => a.date = val,
            "--rustc" => a.rustc = val,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(a)
}

/// A small seeded xorshift generator: the inputs are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The merge order the peers must reproduce: score descending, then shard,
/// then doc (what shardkit documents for `top_k`).
fn hit_order(a: &Hit, b: &Hit) -> Ordering {
    b.score
        .partial_cmp(&a.score)
        .unwrap_or(Ordering::Equal)
        .then(a.shard.cmp(&b.shard))
        .then(a.doc.cmp(&b.doc))
}

/// `LISTS` lists of `PER_LIST` hits each, every list in merge order.
fn hit_lists(rng: &mut Rng) -> Vec<Vec<Hit>> {
    (0..LISTS)
        .map(|shard| {
            let mut l: Vec<Hit> = (0..PER_LIST)
                .map(|_| {
                    let score = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                    Hit::new(score, shard as u32, rng.below(1 << 40))
                })
                .collect();
            l.sort_by(hit_order);
            l
        })
        .collect()
}

/// A strictly increasing list of `n` ids with gaps uniform in `1..=2*mean-1`.
fn postings(rng: &mut Rng, n: usize, mean_gap: u64) -> Vec<u32> {
    let mut v = Vec::with_capacity(n);
    let mut x = 0u64;
    for _ in 0..n {
        x += 1 + rng.below(2 * mean_gap - 1);
        v.push(x as u32);
    }
    v
}

/// Peer: itertools' k-way merge, lazily, first `k` hits.
fn peer_kmerge(lists: &[&[Hit]], k: usize) -> Vec<Hit> {
    lists
        .iter()
        .map(|l| l.iter().copied())
        .kmerge_by(|a, b| hit_order(a, b) == Ordering::Less)
        .take(k)
        .collect()
}

/// One list head in the std-heap peer; ordered so the max-heap pops the
/// best hit.
struct Head {
    hit: Hit,
    list: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Self) -> Ordering {
        hit_order(&o.hit, &self.hit).then(o.list.cmp(&self.list))
    }
}

/// Peer: the textbook k-way merge on std's `BinaryHeap`, first `k` hits.
fn peer_heap(lists: &[&[Hit]], k: usize) -> Vec<Hit> {
    let mut pos = vec![1usize; lists.len()];
    let mut heap: BinaryHeap<Head> = lists
        .iter()
        .enumerate()
        .filter_map(|(list, l)| l.first().map(|&hit| Head { hit, list }))
        .collect();
    let mut out = Vec::with_capacity(k.min(lists.iter().map(|l| l.len()).sum()));
    while out.len() < k {
        let Some(mut top) = heap.peek_mut() else {
            break;
        };
        out.push(top.hit);
        let l = top.list;
        if let Some(&next) = lists[l].get(pos[l]) {
            pos[l] += 1;
            top.hit = next;
        } else {
            std::collections::binary_heap::PeekMut::pop(top);
        }
    }
    out
}

/// Peer: plain two-pointer intersection.
fn peer_intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Peer: plain two-pointer union.
fn peer_union2(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Peer: itertools' k-way merge then dedup.
fn peer_union_kmerge(lists: &[&[u32]]) -> Vec<u32> {
    lists
        .iter()
        .map(|l| l.iter().copied())
        .kmerge()
        .dedup()
        .collect()
}

/// Best and median nanoseconds per call over `reps` samples.
#[derive(Clone, Copy)]
struct Stat {
    best: f64,
    median: f64,
    inner: usize,
}

fn measure<R>(reps: usize, mut f: impl FnMut() -> R) -> Stat {
    // One untimed warm-up call, which also sizes the inner loop.
    let t = Instant::now();
    black_box(f());
    let once = t.elapsed().as_nanos().max(1) as f64;
    let inner = ((MIN_SAMPLE_NS / once).ceil() as usize).clamp(1, 1_000_000);
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..inner {
                black_box(f());
            }
            t.elapsed().as_nanos() as f64 / inner as f64
        })
        .collect();
    v.sort_by(f64::total_cmp);
    Stat {
        best: v[0],
        median: v[v.len() / 2],
        inner,
    }
}

fn stat_json(s: Stat, elements: usize) -> Value {
    json!({
        "best_ns": s.best, "median_ns": s.median, "calls_per_sample": s.inner,
        "best_ns_per_element": s.best / elements as f64,
        "median_ns_per_element": s.median / elements as f64,
    })
}

/// One parallel workload: its name, its input elements, and the figure at
/// each thread count.
type Scaling = (&'static str, usize, Vec<(usize, Stat)>);

/// One shardkit-against-peer comparison.
struct Row {
    group: &'static str,
    case: String,
    elements: usize,
    per: &'static str,
    shardkit: (&'static str, Stat),
    peer: (&'static str, Stat),
}

fn check<T: PartialEq>(what: &str, ours: &T, theirs: &T) -> Result<(), String> {
    if ours == theirs {
        Ok(())
    } else {
        Err(format!(
            "peer disagrees with shardkit on {what}; nothing timed is meaningful"
        ))
    }
}

/// A speedup with enough digits that a small one does not print as 0.00.
fn fmt_ratio(r: f64) -> String {
    if r < 0.095 {
        format!("{r:.4}")
    } else {
        format!("{r:.2}")
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let reps = args.reps;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut rows: Vec<Row> = Vec::new();

    // 1. Top-k merge.
    let hits = hit_lists(&mut rng);
    let hl: Vec<&[Hit]> = hits.iter().map(|v| v.as_slice()).collect();
    let total = LISTS * PER_LIST;
    for (case, k) in [
        ("k = all (1.6M hits out)", total),
        ("k = 1000 (one page)", PAGE),
    ] {
        let ours = top_k(&hl, 0, k).map_err(|e| e.to_string())?;
        check(
            case,
            &ours,
            &top_k_trusted(&hl, 0, k).map_err(|e| e.to_string())?,
        )?;
        check(case, &ours, &peer_kmerge(&hl, k))?;
        check(case, &ours, &peer_heap(&hl, k))?;
        eprintln!("scatter bench: top-k {case}");
        let sk = measure(reps, || top_k(&hl, 0, k));
        let st = measure(reps, || top_k_trusted(&hl, 0, k));
        let km = measure(reps, || peer_kmerge(&hl, k));
        let hp = measure(reps, || peer_heap(&hl, k));
        for (s, p) in [
            (("top_k", sk), ("itertools kmerge_by", km)),
            (("top_k", sk), ("std BinaryHeap", hp)),
            (("top_k_trusted", st), ("itertools kmerge_by", km)),
            (("top_k_trusted", st), ("std BinaryHeap", hp)),
        ] {
            rows.push(Row {
                group: "top-k merge, 16 lists x 100k hits",
                case: case.into(),
                elements: k,
                per: "hit out",
                shardkit: s,
                peer: p,
            });
        }
    }

    // 2. Intersection and union of u32 posting lists. The large list has
    // density 1/4 over its range; the small one spans the same range, so
    // about a quarter of it is in the result whatever the ratio.
    let big = postings(&mut rng, BIG, 4);
    for (case, small_len) in [("1:1", BIG), ("1:100", BIG / 100), ("1:1000", BIG / 1000)] {
        let small = postings(&mut rng, small_len, 4 * (BIG / small_len) as u64);
        let lists: [&[u32]; 2] = [&small, &big];
        let ours = intersect(&lists).map_err(|e| e.to_string())?;
        check(case, &ours, &peer_intersect(&small, &big))?;
        eprintln!("scatter bench: intersect {case}");
        let sk = measure(reps, || intersect(&lists));
        let pe = measure(reps, || peer_intersect(&small, &big));
        rows.push(Row {
            group: "intersection, 2 u32 posting lists (large = 1M ids)",
            case: format!(
                "{case} ({} ∩ {} ids, {} out)",
                small.len(),
                big.len(),
                ours.len()
            ),
            elements: small.len() + big.len(),
            per: "id in",
            shardkit: ("intersect", sk),
            peer: ("two-pointer merge", pe),
        });
    }
    // What shardkit's input check alone costs on the large list (the same
    // strictly-increasing test, written here): at skewed ratios the
    // galloping itself is microseconds and this pass is most of the figure.
    let check_floor = measure(reps, || big.windows(2).all(|w| w[0] < w[1]));
    let other = postings(&mut rng, BIG, 4);
    let two: [&[u32]; 2] = [&big, &other];
    let ours = union(&two).map_err(|e| e.to_string())?;
    check("union 1:1", &ours, &peer_union2(&big, &other))?;
    eprintln!("scatter bench: union");
    let sk = measure(reps, || union(&two));
    let pe = measure(reps, || peer_union2(&big, &other));
    rows.push(Row {
        group: "union, u32 posting lists",
        case: format!("2 lists 1:1 (1M + 1M ids, {} out)", ours.len()),
        elements: 2 * BIG,
        per: "id in",
        shardkit: ("union", sk),
        peer: ("two-pointer merge", pe),
    });
    let many: Vec<Vec<u32>> = (0..LISTS)
        .map(|_| postings(&mut rng, PER_LIST, 16))
        .collect();
    let ml: Vec<&[u32]> = many.iter().map(|v| v.as_slice()).collect();
    let ours = union(&ml).map_err(|e| e.to_string())?;
    check("union 16 lists", &ours, &peer_union_kmerge(&ml))?;
    let sk = measure(reps, || union(&ml));
    let pe = measure(reps, || peer_union_kmerge(&ml));
    rows.push(Row {
        group: "union, u32 posting lists",
        case: format!("16 lists x 100k ids ({} out)", ours.len()),
        elements: total,
        per: "id in",
        shardkit: ("union", sk),
        peer: ("itertools kmerge + dedup", pe),
    });

    // 3. Rayon scaling, every input above PAR_THRESHOLD.
    let small = postings(&mut rng, BIG, 4);
    let pair: [&[u32]; 2] = [&small, &big];
    let want_top = top_k(&hl, 0, PAGE).map_err(|e| e.to_string())?;
    let want_int = intersect(&pair).map_err(|e| e.to_string())?;
    let want_uni = union(&ml).map_err(|e| e.to_string())?;
    let mut scaling: Vec<Scaling> = vec![
        ("top_k_par, 16 x 100k hits, k = 1000", total, vec![]),
        ("intersect_par, 2 x 1M ids (1:1)", 2 * BIG, vec![]),
        ("union_par, 16 x 100k ids", total, vec![]),
    ];
    for &t in &args.threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map_err(|e| format!("cannot build a rayon pool of {t} threads: {e}"))?;
        eprintln!("scatter bench: rayon, {t} thread(s)");
        pool.install(|| -> Result<(), String> {
            check(
                "top_k_par",
                &want_top,
                &top_k_par(&hl, 0, PAGE).map_err(|e| e.to_string())?,
            )?;
            check(
                "intersect_par",
                &want_int,
                &intersect_par(&pair).map_err(|e| e.to_string())?,
            )?;
            check(
                "union_par",
                &want_uni,
                &union_par(&ml).map_err(|e| e.to_string())?,
            )?;
            scaling[0]
                .2
                .push((t, measure(reps, || top_k_par(&hl, 0, PAGE))));
            scaling[1]
                .2
                .push((t, measure(reps, || intersect_par(&pair))));
            scaling[2].2.push((t, measure(reps, || union_par(&ml))));
            Ok(())
        })?;
    }
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // Reports.
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load1 = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");

    if let Some(path) = &args.json {
        let j = json!({
            "date": args.date, "rustc": args.rustc, "cpu": model, "cpus": cpus,
            "loadavg_start": load1(&load_start), "loadavg_end": load1(&load_end),
            "quick": args.quick, "reps": reps, "par_threshold": PAR_THRESHOLD,
            "sortedness_check_1m_u32": stat_json(check_floor, BIG),
            "comparisons": rows.iter().map(|r| json!({
                "group": r.group, "case": r.case, "elements": r.elements, "per": r.per,
                "shardkit_fn": r.shardkit.0, "shardkit": stat_json(r.shardkit.1, r.elements),
                "peer": r.peer.0, "peer_stat": stat_json(r.peer.1, r.elements),
                "peer_over_shardkit_median": r.peer.1.median / r.shardkit.1.median,
            })).collect::<Vec<_>>(),
            "scaling": scaling.iter().map(|(name, el, v)| json!({
                "workload": name,
                "threads": v.iter().map(|(t, s)| json!({
                    "threads": t, "stat": stat_json(*s, *el),
                    "speedup_vs_first": v[0].1.median / s.median,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        std::fs::write(
            path,
            serde_json::to_string_pretty(&j).unwrap_or_default() + "\n",
        )
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    }

    let mut md = String::new();
    let _ = writeln!(md, "# Scatter/gather merge benchmark (Rust)\n");
    let _ = writeln!(
        md,
        "Written by `bench/scatter.sh` (issue 4, item 7). Date {}; {} on {cpus} CPUs; \
         load average {} at the start, {} at the end (the machine is shared with \
         other work, so treat differences under ~20% as noise); {}; {} samples per \
         figure{}. Release build, the root workspace's release profile.\n",
        args.date,
        model,
        load1(&load_start),
        load1(&load_end),
        args.rustc,
        reps,
        if args.quick { " (BENCH_QUICK=1)" } else { "" },
    );
    let _ = writeln!(
        md,
        "Every figure is the time of one call (each sample loops the call for at \
         least 2 ms), best and median over the samples, and ns per element (hits \
         out for the merge, ids in for the posting lists). *Speedup* = peer median / \
         shardkit median: above 1 shardkit is faster. Every peer's output was \
         checked equal to shardkit's before timing. shardkit's functions validate \
         their input (sortedness, NaN) and the peers do not: that pass is inside \
         shardkit's figures (except `top_k_trusted`, which checks only what it \
         consumes).\n"
    );
    let mut group = "";
    for r in &rows {
        if r.group != group {
            if group.starts_with("top-k") {
                let _ = writeln!(
                    md,
                    "\n`top_k` checks every input hit (order, NaN) before merging, so \
                     for one page of long lists its time is that check over all 1.6M \
                     hits; `top_k_trusted` checks only what it consumes and is the \
                     page path. The peers check nothing."
                );
            }
            if group.starts_with("intersection") {
                let _ = writeln!(
                    md,
                    "\nFor scale: a plain strictly-increasing check of the 1M-id list \
                     (what `intersect` runs on every input before intersecting) takes \
                     {} median here, {:.2} ns/id; at 1:100 and 1:1000 that check is \
                     most of `intersect`'s time, the galloping itself is the rest.",
                    fmt_ns(check_floor.median),
                    check_floor.median / BIG as f64
                );
            }
            group = r.group;
            let _ = writeln!(md, "\n## {group}\n");
            let _ = writeln!(
                md,
                "| case | shardkit | best | median | ns/{0} | peer | best | median | ns/{0} | speedup |",
                r.per
            );
            let _ = writeln!(md, "|---|---|---:|---:|---:|---|---:|---:|---:|---:|");
        }
        let (s, p) = (r.shardkit.1, r.peer.1);
        let e = r.elements as f64;
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {} | {:.2} | {} | {} | {} | {:.2} | **{}×** |",
            r.case,
            r.shardkit.0,
            fmt_ns(s.best),
            fmt_ns(s.median),
            s.median / e,
            r.peer.0,
            fmt_ns(p.best),
            fmt_ns(p.median),
            p.median / e,
            fmt_ratio(p.median / s.median)
        );
    }
    let _ = writeln!(
        md,
        "\n## rayon scaling of the parallel variants\n\nEach thread count runs in its \
         own `rayon::ThreadPool`; inputs are above `PAR_THRESHOLD` ({PAR_THRESHOLD} \
         elements). At 1 thread the parallel functions fall back to the sequential \
         ones. **This machine has {cpus} CPUs shared with other work**, so counts \
         above {cpus} and any busy core cap the speedup; read these as \"does it \
         scale at all\", not as the ceiling.\n"
    );
    let _ = writeln!(
        md,
        "| workload | threads | best | median | speedup vs {} thread{} |",
        args.threads[0],
        if args.threads[0] == 1 { "" } else { "s" }
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for (name, _, v) in &scaling {
        for (t, s) in v {
            let _ = writeln!(
                md,
                "| {name} | {t} | {} | {} | {:.2}× |",
                fmt_ns(s.best),
                fmt_ns(s.median),
                v[0].1.median / s.median
            );
        }
    }
    let _ = writeln!(
        md,
        "\n`top_k_par` on a page: almost all of its time is the input check (see \
         `top_k` at k = 1000 above); it checks the lists in parallel once, then \
         merges each group without checking again."
    );
    let _ = writeln!(
        md,
        "\nThe tail-at-scale run over HTTP leaves and the Python side follow \
         (bench/scatter.sh appends them)."
    );
    if let Some(path) = &args.md {
        std::fs::write(path, &md).map_err(|e| format!("cannot write {path}: {e}"))?;
    } else {
        print!("{md}");
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("shardkit-scatter-bench: {e}");
        std::process::exit(1);
    }
}
