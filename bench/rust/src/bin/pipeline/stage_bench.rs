//! The pipeline bench's Rust side: a stage's events per second in process
//! (one handler call per event, and batch handlers), beside a crossbeam
//! channel's floor (the cost of handing a message from one thread to
//! another at all), and on Redis Streams when a URL is given. Prints one
//! JSON object. Built twice: `pipeline` with mimalloc as the process's
//! allocator, `pipeline_system_alloc` with the system's (glibc).
//!
//!   pipeline [--quick] [--redis URL] [--only batched] [--events N]

use shardkit::pipeline::{
    BatchSettings, BoxError, Event, ItemResult, Memory, RedisOptions, RedisStreams, Stage,
    StageConfig, Transport,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tower::service_fn;
use tower::util::BoxCloneSyncService;

fn channel_floor(n: u64, batch: usize) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u64>>(1024);
    let t0 = Instant::now();
    let consumer = std::thread::spawn(move || {
        let mut sum = 0u64;
        for v in rx {
            for x in v {
                sum = sum.wrapping_add(x);
            }
        }
        sum
    });
    let mut i = 0;
    while i < n {
        let take = (batch as u64).min(n - i);
        tx.send((i..i + take).collect()).unwrap();
        i += take;
    }
    drop(tx);
    std::hint::black_box(consumer.join().unwrap());
    t0.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn events(n: u64, keys: u64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::new(format!("e{i}"), "/bench", "bench.event")
                .unwrap()
                .with_extension("partitionkey", format!("k{}", i % keys))
                .unwrap()
        })
        .collect()
}

fn cfg(topic: &str, ordered: bool) -> StageConfig {
    let mut c = StageConfig::new("bench", topic);
    c.concurrency = 1024;
    c.max_in_flight = 8192;
    c.ordered = ordered;
    c.lease = Duration::from_millis(500);
    c
}

/// This process's CPU time so far (user + system, all threads), in
/// seconds: what a stage costs per event, beside its wall-clock rate.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th from the state on, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// Events per second through one stage: all published first, then timed
/// from the stage's start to the last event handled. Also the CPU time it
/// took per event (all threads), in nanoseconds.
async fn stage_rate(
    t: Arc<dyn Transport>,
    topic: &str,
    n: u64,
    keys: u64,
    batch: Option<usize>,
) -> (f64, f64) {
    for chunk in events(n, keys).chunks(1000) {
        t.publish(topic, chunk.to_vec()).await.unwrap();
    }
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    // The handler marks the first call and the call that brings the count
    // to `n`: the stage's own span, without a poller's timer granularity.
    let clock = Arc::new(Clock::new(n));
    let stage = match batch {
        None => {
            let clock = clock.clone();
            Stage::start(
                t.clone(),
                cfg(topic, true),
                BoxCloneSyncService::new(service_fn(move |_e: Event| {
                    clock.saw(1);
                    async { Ok::<_, BoxError>(vec![]) }
                })),
            )
        }
        Some(max) => {
            let clock = clock.clone();
            Stage::start_batched(
                t.clone(),
                cfg(topic, true),
                BoxCloneSyncService::new(service_fn(move |es: Vec<Event>| {
                    clock.saw(es.len() as u64);
                    async move {
                        Ok::<Vec<ItemResult>, BoxError>(es.iter().map(|_| Ok(vec![])).collect())
                    }
                })),
                BatchSettings {
                    max,
                    linger: Duration::from_millis(1),
                    calls: 2,
                },
            )
        }
    }
    .unwrap();
    clock.done.notified().await;
    let (first, last) = clock.span();
    let cpu = cpu_seconds() - cpu0;
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!(
            "{topic}: first call after {:?}, last after {:?}",
            first.duration_since(t0),
            last.duration_since(t0)
        );
    }
    let secs = last.duration_since(t0).as_secs_f64();
    stage.stop(Duration::from_secs(5)).await;
    (n as f64 / secs, cpu * 1e9 / n as f64)
}

/// When a handler saw its first event and its `n`th.
struct Clock {
    n: u64,
    seen: AtomicU64,
    first: std::sync::OnceLock<Instant>,
    last: std::sync::OnceLock<Instant>,
    done: tokio::sync::Notify,
}

impl Clock {
    fn new(n: u64) -> Clock {
        Clock {
            n,
            seen: AtomicU64::new(0),
            first: std::sync::OnceLock::new(),
            last: std::sync::OnceLock::new(),
            done: tokio::sync::Notify::new(),
        }
    }

    fn saw(&self, k: u64) {
        self.first.get_or_init(Instant::now);
        let before = self.seen.fetch_add(k, Ordering::Relaxed);
        if before < self.n && before + k >= self.n {
            self.last.get_or_init(Instant::now);
            self.done.notify_one();
        }
    }

    fn span(&self) -> (Instant, Instant) {
        (*self.first.get().unwrap(), *self.last.get().unwrap())
    }
}

/// Rounds of the in-process stage: this machine is shared and its speed
/// drifts within minutes, so one short run says little; the median of
/// several does.
const ROUNDS: usize = 7;

/// `k` runs of `n` events through a fresh in-process stage (batched when
/// `batch` is set): each run's (events/s, CPU ns per event).
async fn rounds(k: usize, n: u64, batch: Option<usize>) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(k);
    for _ in 0..k {
        let t: Arc<dyn Transport> = Arc::new(Memory::new(8, n as usize).unwrap());
        out.push(stage_rate(t, "in-process", n, 10_000, batch).await);
    }
    out
}

/// The round with the median rate, as (events/s, CPU ns per event).
fn median(rounds: &[(f64, f64)]) -> (f64, f64) {
    let mut sorted = rounds.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    sorted[sorted.len() / 2]
}

/// End-to-end latency on Redis at a paced rate: published at `rate`/s,
/// latency from publication to the handler.
async fn redis_latency(
    t: Arc<dyn Transport>,
    topic: &str,
    rate: u64,
    secs: u64,
) -> (f64, f64, u64) {
    let lat: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
    let seen = Arc::new(AtomicU64::new(0));
    let (l2, s2) = (lat.clone(), seen.clone());
    let h = BoxCloneSyncService::new(service_fn(move |e: Event| {
        let (lat, seen) = (l2.clone(), s2.clone());
        async move {
            let sent: f64 = e.extension("sentat").unwrap().parse().unwrap();
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            lat.lock().unwrap().push((now - sent) * 1000.0);
            seen.fetch_add(1, Ordering::Relaxed);
            Ok::<_, BoxError>(vec![])
        }
    }));
    let stage = Stage::start(t.clone(), cfg(topic, true), h).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = rate * secs;
    // Paced every millisecond (the timer's resolution): at 10k/s, 10
    // events a tick, not bursts of 100 every 10 ms that the last of each
    // would wait behind.
    let tick = Duration::from_millis(1);
    let per_tick = (rate / 1000).max(1);
    let mut i = 0;
    let mut next = tokio::time::Instant::now();
    while i < total {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let batch: Vec<Event> = (i..(i + per_tick).min(total))
            .map(|j| {
                Event::new(format!("l{j}"), "/bench", "bench.event")
                    .unwrap()
                    .with_extension("partitionkey", format!("k{}", j % 1000))
                    .unwrap()
                    .with_extension("sentat", format!("{now:.6}"))
                    .unwrap()
            })
            .collect();
        i += batch.len() as u64;
        t.publish(topic, batch).await.unwrap();
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stage.stop(Duration::from_secs(5)).await;
    let mut l = lat.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    let q = |p: f64| l[((l.len() as f64 - 1.0) * p) as usize];
    (q(0.5), q(0.99), l.len() as u64)
}

/// Runs the bench with the arguments the process was given.
pub fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let redis = args
        .iter()
        .position(|a| a == "--redis")
        .map(|i| args[i + 1].clone());
    let n: u64 = match args.iter().position(|a| a == "--events") {
        // `--events N`: more events, for steadier timings when profiling.
        Some(i) => args[i + 1].parse().expect("--events N"),
        None if quick => 50_000,
        None => 400_000,
    };
    // `--only batched`: the in-process batched stage alone (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1].clone());
    if only.as_deref() == Some("batched") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let rounds = rt.block_on(rounds(ROUNDS, n, Some(1000)));
        let (rate, cpu) = median(&rounds);
        println!(
            "{}",
            serde_json::json!({
                "memory_batched_events_per_s": rate,
                "cpu_ns_per_event": cpu,
                "memory_batched_rounds": rounds,
            })
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let floor_unbatched = channel_floor(n * 5, 1);
    let floor_batched = channel_floor(n * 5, 1000);
    let (single, batched, redis_rate, redis_lat, redis_lat_runs) = rt.block_on(async {
        // `--only redis`: the Redis figures alone (for profiling).
        let in_process = only.as_deref() != Some("redis");
        let single = if in_process {
            rounds(3, n, None).await
        } else {
            vec![(0.0, 0.0)]
        };
        let batched = if in_process {
            rounds(ROUNDS, n, Some(1000)).await
        } else {
            vec![(0.0, 0.0)]
        };
        let (mut redis_rate, mut redis_lat, mut redis_lat_runs) = (None, None, Vec::new());
        if let Some(url) = &redis {
            let t: Arc<dyn Transport> = Arc::new(
                RedisStreams::connect(
                    url,
                    RedisOptions {
                        partitions: 8,
                        ..RedisOptions::default()
                    },
                )
                .await
                .unwrap(),
            );
            redis_rate = Some(
                stage_rate(t.clone(), "rate", n / 4, 10_000, Some(1000))
                    .await
                    .0,
            );
            // Three runs, the one with the median p99: a stretch of the
            // shared machine's stalls lands in one run, not in the figure.
            let mut runs = Vec::new();
            for run in 0..if quick { 1 } else { 3 } {
                let topic = format!("lat{run}");
                runs.push(
                    redis_latency(t.clone(), &topic, 10_000, if quick { 2 } else { 5 }).await,
                );
            }
            runs.sort_by(|a, b| a.1.total_cmp(&b.1));
            redis_lat = Some(runs[runs.len() / 2]);
            redis_lat_runs = runs;
        }
        (single, batched, redis_rate, redis_lat, redis_lat_runs)
    });
    let out = serde_json::json!({
        "events": n,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "crossbeam_ns_per_msg_unbatched": floor_unbatched,
        "crossbeam_ns_per_msg_batched": floor_batched,
        "memory_single_events_per_s": median(&single).0,
        "memory_single_cpu_ns_per_event": median(&single).1,
        "memory_single_rounds": single,
        "memory_batched_events_per_s": median(&batched).0,
        "memory_batched_cpu_ns_per_event": median(&batched).1,
        "memory_batched_rounds": batched,
        "redis_batched_events_per_s": redis_rate,
        "redis_latency_ms_p50_p99_count_at_10k_per_s": redis_lat,
        "redis_latency_runs": redis_lat_runs,
    });
    println!("{out}");
}
