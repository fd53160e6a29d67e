//! The tail-at-scale benchmark of bench/scatter.sh (issue 4, item 7): a
//! root gathers from 16 local HTTP leaves, each with two replicas, where 1%
//! of leaf calls are slowed 50x. The same query stream runs without and with
//! hedging (shardkit's default policy: hedge past the leaf's p95, at most 5%
//! extra calls), and the report gives the gather latency's p50, p99 and
//! p99.9 and the extra requests the leaves received.
//!
//! The leaves are real HTTP servers (axum) on 127.0.0.1 in this process, on
//! a runtime of their own so the root's work does not queue behind theirs.
//! A leaf's latency is injected with a sleep: `base` plus a small jitter,
//! times 50 for 1% of calls, drawn from a seeded generator, so both runs
//! see the same distribution.
//!
//! Usage: http_tail [--queries N] [--leaves 16] [--base-ms 2] [--slow-every 100]
//!        [--slow-factor 50] [--md PATH] [--json PATH]

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use shardkit::scatter::http::HttpTransport;
use shardkit::scatter::{GatherOptions, HedgeConfig, Scatter, ScatterConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    queries: usize,
    leaves: usize,
    base: Duration,
    slow_every: u64,
    slow_factor: u32,
    md: Option<String>,
    json: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        queries: 4000,
        leaves: 16,
        base: Duration::from_millis(2),
        slow_every: 100,
        slow_factor: 50,
        md: None,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} takes a positive integer, got {v:?}"))
        };
        match flag.as_str() {
            "--queries" => a.queries = num(&val)? as usize,
            "--leaves" => a.leaves = num(&val)? as usize,
            "--base-ms" => a.base = Duration::from_millis(num(&val)?),
            "--slow-every" => a.slow_every = num(&val)?,
            "--slow-factor" => a.slow_factor = num(&val)? as u32,
            "--md" => a.md = Some(val),
            "--json" => a.json = Some(val),
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    if a.queries == 0 || a.leaves == 0 || a.slow_every == 0 || a.slow_factor == 0 {
        return Err("--queries, --leaves, --slow-every and --slow-factor must be positive".into());
    }
    Ok(a)
}

/// One leaf replica's server state.
struct Leaf {
    base: Duration,
    slow_every: u64,
    slow_factor: u32,
    rng: AtomicU64,
    served: Arc<AtomicU64>,
}

impl Leaf {
    /// splitmix64 over a shared counter: a seeded, lock-free stream.
    fn draw(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

async fn answer(State(leaf): State<Arc<Leaf>>, _body: Bytes) -> Json<Value> {
    leaf.served.fetch_add(1, Ordering::Relaxed);
    let r = leaf.draw();
    // Up to +25% jitter so the latency has a spread to take a p95 of.
    let jitter = leaf
        .base
        .mul_f64((r >> 40) as f64 / (1u64 << 24) as f64 * 0.25);
    let mut delay = leaf.base + jitter;
    if r % leaf.slow_every == 0 {
        delay *= leaf.slow_factor;
    }
    tokio::time::sleep(delay).await;
    Json(json!({"hits": [], "total": 0}))
}

/// Starts `n` leaf replicas; returns their URLs.
fn start_leaves(
    rt: &tokio::runtime::Runtime,
    n: usize,
    a: &Args,
    served: &Arc<AtomicU64>,
) -> Vec<String> {
    (0..n)
        .map(|i| {
            let leaf = Arc::new(Leaf {
                base: a.base,
                slow_every: a.slow_every,
                slow_factor: a.slow_factor,
                rng: AtomicU64::new(0x5eed ^ (i as u64) << 32),
                served: served.clone(),
            });
            let app = Router::new()
                .route("/search", post(answer))
                .with_state(leaf);
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind a loopback port");
            let addr = listener.local_addr().unwrap();
            rt.spawn(async move { axum::serve(listener, app).await });
            format!("http://{addr}/search")
        })
        .collect()
}

struct Run {
    name: &'static str,
    lat_us: Vec<f64>,
    calls: u64,
    served: u64,
    hedges: u64,
    hedges_won: u64,
    wall: Duration,
}

impl Run {
    fn pct(&self, q: f64) -> f64 {
        let i = ((self.lat_us.len() as f64 * q).ceil() as usize).clamp(1, self.lat_us.len()) - 1;
        self.lat_us[i] / 1000.0
    }
    fn extra(&self) -> f64 {
        (self.served as f64 / self.calls as f64 - 1.0) * 100.0
    }
}

fn run(
    name: &'static str,
    shards: &[Vec<String>],
    hedge: Option<HedgeConfig>,
    queries: usize,
    served: &AtomicU64,
) -> Run {
    let leaves = HttpTransport::new()
        .leaves::<Value>(shards)
        .expect("leaf URLs");
    let config = ScatterConfig {
        hedge,
        seed: 7,
        ..ScatterConfig::default()
    };
    let scatter = Scatter::new(leaves, config).expect("scatter");
    let body = Bytes::from_static(br#"{"q":"light","k":10}"#);
    let opts = || GatherOptions::within(Duration::from_secs(5));
    let rt = shardkit::runtime::shared().expect("the shared runtime");
    // Warm-up: connections and the latency histograms the hedge reads.
    for _ in 0..200 {
        rt.block_on(scatter.gather(&body, &opts()))
            .expect("warm-up gather");
    }
    let served0 = served.load(Ordering::Relaxed);
    let m0 = scatter.metrics();
    let t0 = Instant::now();
    let mut lat_us = Vec::with_capacity(queries);
    for _ in 0..queries {
        let t = Instant::now();
        let got = rt.block_on(scatter.gather(&body, &opts())).expect("gather");
        assert_eq!(got.coverage().0, shards.len());
        lat_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let wall = t0.elapsed();
    // Late hedge losers are dropped at once, but let the servers count any
    // request that was already on its way.
    std::thread::sleep(Duration::from_millis(200));
    let m1 = scatter.metrics();
    let sum = |m: &[shardkit::scatter::LeafMetrics],
               f: fn(&shardkit::scatter::LeafMetrics) -> u64| {
        m.iter().map(f).sum::<u64>()
    };
    lat_us.sort_by(f64::total_cmp);
    Run {
        name,
        lat_us,
        calls: (queries * shards.len()) as u64,
        served: served.load(Ordering::Relaxed) - served0,
        hedges: sum(&m1, |l| l.hedges_sent) - sum(&m0, |l| l.hedges_sent),
        hedges_won: sum(&m1, |l| l.hedges_won) - sum(&m0, |l| l.hedges_won),
        wall,
    }
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("http_tail: {e}");
            std::process::exit(2);
        }
    };
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let served = Arc::new(AtomicU64::new(0));
    let urls = start_leaves(&servers, a.leaves * 2, &a, &served);
    let shards: Vec<Vec<String>> = urls.chunks(2).map(|c| c.to_vec()).collect();
    eprintln!(
        "http_tail: {} leaves x 2 replicas, {} queries per run, base {:?}, 1 in {} calls x{}",
        a.leaves, a.queries, a.base, a.slow_every, a.slow_factor
    );
    let plain = run("no hedging", &shards, None, a.queries, &served);
    let hedged = run(
        "hedged (p95, budget 5%)",
        &shards,
        Some(HedgeConfig::default()),
        a.queries,
        &served,
    );
    let cut = plain.pct(0.999) / hedged.pct(0.999);
    let mut md = String::new();
    md.push_str(&format!(
        "## Tail at scale: {} HTTP leaves (2 replicas each), 1 in {} calls slowed {}x\n\n\
         Each leaf call sleeps {:?} plus up to 25% jitter, {}x that for 1 in {} calls. \
         {} sequential gathers per run after 200 warm-up gathers; every gather needs all {} shards. \
         Extra requests = requests the leaves received / leaf calls - 1.\n\n\
         | run | p50 ms | p99 ms | p99.9 ms | max ms | extra requests | hedges won | gathers/s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        a.leaves, a.slow_every, a.slow_factor, a.base, a.slow_factor, a.slow_every, a.queries, a.leaves
    ));
    for r in [&plain, &hedged] {
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}% | {} of {} | {:.0} |\n",
            r.name,
            r.pct(0.5),
            r.pct(0.99),
            r.pct(0.999),
            r.lat_us.last().unwrap() / 1000.0,
            r.extra(),
            r.hedges_won,
            r.hedges,
            r.lat_us.len() as f64 / r.wall.as_secs_f64()
        ));
    }
    md.push_str(&format!(
        "\nHedging cuts p99.9 {:.1}x (p99 {:.1}x) for {:.2}% extra requests \
         (target: at least 5x for at most 5%: {}).\n",
        cut,
        plain.pct(0.99) / hedged.pct(0.99),
        hedged.extra(),
        if cut >= 5.0 && hedged.extra() <= 5.0 {
            "met"
        } else {
            "NOT met"
        }
    ));
    print!("{md}");
    if let Some(path) = &a.md {
        std::fs::write(path, &md).expect("write --md");
    }
    if let Some(path) = &a.json {
        let j = |r: &Run| {
            json!({"p50_ms": r.pct(0.5), "p99_ms": r.pct(0.99), "p999_ms": r.pct(0.999),
                   "extra_pct": r.extra(), "hedges": r.hedges, "hedges_won": r.hedges_won})
        };
        let doc = json!({"leaves": a.leaves, "queries": a.queries, "base_ms": a.base.as_secs_f64() * 1e3,
                         "slow_every": a.slow_every, "slow_factor": a.slow_factor,
                         "plain": j(&plain), "hedged": j(&hedged), "p999_cut": cut});
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).expect("write --json");
    }
}
