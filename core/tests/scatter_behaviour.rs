//! Behaviour of `shardkit::scatter` against simulated replicas: closures
//! with injected latency and failures, real (short) sleeps.

use shardkit::scatter::{
    CallFuture, Coverage, GatherOptions, HedgeConfig, Leaf, Replica, Scatter, ScatterConfig,
};
use shardkit::{Error, ErrorKind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Counts replica calls alive right now: created when the call starts,
/// dropped when its future finishes or is cancelled.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(c: &Arc<AtomicUsize>) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        Live(c.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Shared counters for a set of simulated replicas.
#[derive(Clone, Default)]
struct Probe {
    live: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    finished: Arc<AtomicUsize>,
}

/// A replica that answers `value` after `delay(call number)`, or fails when
/// that returns `Err`.
fn sim<F>(probe: &Probe, value: u32, delay: F) -> Arc<dyn Replica<u32, u32>>
where
    F: Fn(u64) -> Result<Duration, Error> + Send + Sync + 'static,
{
    let probe = probe.clone();
    let n = AtomicU64::new(0);
    Arc::new(move |_req: &u32| -> CallFuture<u32> {
        let guard = Live::new(&probe.live);
        probe.started.fetch_add(1, Ordering::SeqCst);
        let finished = probe.finished.clone();
        let d = delay(n.fetch_add(1, Ordering::Relaxed));
        Box::pin(async move {
            let _guard = guard;
            let out = match d {
                Ok(d) => {
                    tokio::time::sleep(d).await;
                    Ok(value)
                }
                Err(e) => Err(e),
            };
            finished.fetch_add(1, Ordering::SeqCst);
            out
        })
    })
}

fn fixed(ms: u64) -> impl Fn(u64) -> Result<Duration, Error> + Send + Sync + 'static {
    move |_| Ok(Duration::from_millis(ms))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn no_hedge() -> ScatterConfig {
    ScatterConfig {
        hedge: None,
        ..ScatterConfig::default()
    }
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let rank = ((v.len() as f64) * 0.99).ceil() as usize;
    v[rank - 1]
}

#[tokio::test]
async fn no_leaf_call_outlives_a_completed_gather() {
    let probe = Probe::default();
    // Tied requests: every leaf call goes to two replicas, one of which is
    // always slow, so each gather leaves losers to cancel.
    let leaves = (0..4)
        .map(|i| {
            Leaf::new(
                format!("shard-{i}"),
                vec![sim(&probe, i, fixed(5)), sim(&probe, i, fixed(300))],
            )
            .unwrap()
        })
        .collect();
    let config = ScatterConfig {
        tied: true,
        ..ScatterConfig::default()
    };
    let s = Scatter::new(leaves, config).unwrap();
    for _ in 0..5 {
        let t = Instant::now();
        let got = s
            .gather(&7, &GatherOptions::within(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(
            probe.live.load(Ordering::SeqCst),
            0,
            "calls outlived gather"
        );
        assert_eq!(got.coverage(), (4, 4));
        assert!(!got.degraded());
        assert!(t.elapsed() < ms(200), "waited for the slow tied copy");
    }
    // Half the calls were cut off, which is what made the check meaningful.
    assert_eq!(probe.started.load(Ordering::SeqCst), 40);
    assert_eq!(probe.finished.load(Ordering::SeqCst), 20);
    let m = s.metrics();
    assert!(m.iter().all(|l| l.calls == 5 && l.hedges_sent == 5));
}

#[tokio::test]
async fn no_leaf_call_outlives_its_deadline() {
    let probe = Probe::default();
    let leaves = (0..3)
        .map(|i| Leaf::new(format!("s{i}"), vec![sim(&probe, i, fixed(10_000))]).unwrap())
        .collect();
    let s = Scatter::new(leaves, no_hedge()).unwrap();
    let t = Instant::now();
    let opts = GatherOptions::within(ms(50)).with_coverage(Coverage::BestEffort);
    let err = s.gather(&1, &opts).await.unwrap_err();
    assert!(t.elapsed() < ms(1_000));
    assert_eq!(probe.live.load(Ordering::SeqCst), 0);
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.message().contains("coverage 0/3"), "{err}");
    assert!(s.metrics().iter().all(|l| l.timeouts == 1));

    // Root distribution: the same for `first`.
    let one = Scatter::new(
        vec![Leaf::new(
            "r",
            vec![sim(&probe, 1, fixed(10_000)), sim(&probe, 2, fixed(10_000))],
        )
        .unwrap()],
        ScatterConfig::default(),
    )
    .unwrap();
    let err = one.first(&1, Instant::now() + ms(30)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(probe.live.load(Ordering::SeqCst), 0);

    // A caller that drops the gather future (its own timeout) cancels too.
    let opts = GatherOptions::within(Duration::from_secs(60));
    assert!(tokio::time::timeout(ms(30), s.gather(&1, &opts))
        .await
        .is_err());
    assert_eq!(probe.live.load(Ordering::SeqCst), 0);
}

/// One leaf of three replicas; every replica slows exactly one call in 25
/// (4%) by 50x, each at its own phase.
fn flaky_leaf(probe: &Probe) -> Leaf<u32, u32> {
    let replicas = (0..3u64)
        .map(|r| {
            sim(probe, r as u32, move |n| {
                Ok(if (n + 8 * r) % 25 == 24 {
                    ms(100)
                } else {
                    ms(2)
                })
            })
        })
        .collect();
    Leaf::new("flaky", replicas).unwrap()
}

async fn run_first(s: &Scatter<u32, u32>, n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.first(&0, Instant::now() + Duration::from_secs(2))
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    lat
}

#[tokio::test]
async fn hedging_lowers_the_tail_within_budget() {
    let plain_probe = Probe::default();
    let plain = Scatter::new(vec![flaky_leaf(&plain_probe)], no_hedge()).unwrap();
    let hedge = HedgeConfig {
        percentile: 0.95,
        min_samples: 20,
        min_delay: ms(1),
        budget_ratio: 0.15,
        budget_burst: 5.0,
        window: Duration::from_secs(10),
        max_hedges: 1,
    };
    let hedged_probe = Probe::default();
    let hedged = Scatter::new(
        vec![flaky_leaf(&hedged_probe)],
        ScatterConfig {
            hedge: Some(hedge),
            ..ScatterConfig::default()
        },
    )
    .unwrap();
    // Warm up the histograms and EWMAs, then measure.
    run_first(&plain, 30).await;
    run_first(&hedged, 30).await;
    let before = hedged.metrics()[0].hedges_sent;
    let plain_p99 = p99(run_first(&plain, 200).await);
    let hedged_p99 = p99(run_first(&hedged, 200).await);
    let m = &hedged.metrics()[0];
    let extra = m.hedges_sent - before;
    eprintln!("plain p99 {plain_p99:?}, hedged p99 {hedged_p99:?}, {extra} hedges, {m:?}");
    assert!(
        plain_p99 >= ms(90),
        "without hedging the slowed calls should show at p99, got {plain_p99:?}"
    );
    assert!(
        hedged_p99 * 4 < plain_p99,
        "hedged p99 {hedged_p99:?} vs plain {plain_p99:?}; {m:?}"
    );
    assert!(extra > 0 && m.hedges_won > 0);
    assert!(extra as f64 <= 0.15 * 200.0 + 5.0, "{extra} hedges");
    assert_eq!(hedged_probe.live.load(Ordering::SeqCst), 0);
    assert_eq!(plain.metrics()[0].hedges_sent, 0);
}

/// Two replicas; the first copy and the first hedge of call 31 are both
/// slow. One hedge waits for one of them; a second hedge (back to the first
/// replica, as a new request) answers at once.
async fn both_first_copies_slow(max_hedges: u32) -> (Duration, u64, u64) {
    let probe = Probe::default();
    let global = Arc::new(AtomicU64::new(0));
    let replicas = (0..2)
        .map(|r| {
            let g = global.clone();
            sim(&probe, r, move |_| {
                let n = g.fetch_add(1, Ordering::SeqCst);
                Ok(if n == 30 || n == 31 { ms(1000) } else { ms(2) })
            })
        })
        .collect();
    let hedge = HedgeConfig {
        min_delay: ms(50),
        budget_ratio: 1.0,
        max_hedges,
        ..HedgeConfig::default()
    };
    let s = Scatter::new(
        vec![Leaf::new("l", replicas).unwrap()],
        ScatterConfig {
            hedge: Some(hedge),
            ..ScatterConfig::default()
        },
    )
    .unwrap();
    run_first(&s, 30).await;
    assert_eq!(
        s.metrics()[0].hedges_sent,
        0,
        "warm-up calls are far under 50 ms"
    );
    let t = Instant::now();
    s.first(&0, Instant::now() + Duration::from_secs(3))
        .await
        .unwrap();
    let took = t.elapsed();
    let m = &s.metrics()[0];
    (took, m.hedges_sent, m.hedges_won)
}

#[tokio::test]
async fn a_second_hedge_covers_two_slow_copies() {
    let (took, sent, won) = both_first_copies_slow(2).await;
    assert!(took >= ms(100) && took < ms(600), "took {took:?}");
    assert_eq!((sent, won), (2, 1));
    let (took, sent, won) = both_first_copies_slow(1).await;
    assert!(
        took >= ms(1000),
        "one hedge waits for a slow copy, took {took:?}"
    );
    assert_eq!(sent, 1);
    assert_eq!(
        won, 0,
        "the first copy (1000 ms) beats the hedge sent at 50 ms"
    );
}

#[tokio::test]
async fn hedge_budget_caps_extra_calls() {
    let probe = Probe::default();
    // Quick at first, so the histogram's low percentile is far below every
    // later call.
    let replicas = (0..3)
        .map(|r| sim(&probe, r, |n| Ok(if n < 3 { ms(1) } else { ms(15) })))
        .collect();
    let leaf = Leaf::new("l", replicas).unwrap();
    // Every later call outlives the p1: all would hedge if allowed.
    let hedge = HedgeConfig {
        percentile: 0.01,
        min_samples: 1,
        min_delay: Duration::ZERO,
        budget_ratio: 0.05,
        budget_burst: 2.0,
        window: Duration::from_secs(10),
        max_hedges: 1,
    };
    let s = Scatter::new(
        vec![leaf],
        ScatterConfig {
            hedge: Some(hedge),
            ..ScatterConfig::default()
        },
    )
    .unwrap();
    let calls = 100u64;
    run_first(&s, calls as usize).await;
    let m = &s.metrics()[0];
    assert_eq!(m.calls, calls);
    assert!(m.hedges_sent <= (0.05 * calls as f64 + 2.0) as u64, "{m:?}");
    assert!(m.hedges_sent >= 4, "budget was never spent: {m:?}");
    let replica_calls: u64 = m.replicas.iter().map(|r| r.calls).sum();
    assert_eq!(replica_calls, calls + m.hedges_sent);
    assert_eq!(probe.started.load(Ordering::SeqCst) as u64, replica_calls);
}

fn eight_shards(probe: &Probe, slow: &[u32]) -> Scatter<u32, u32> {
    let leaves = (0..8)
        .map(|i| {
            let d = if slow.contains(&i) { 2_000 } else { 5 };
            Leaf::new(format!("shard-{i}"), vec![sim(probe, i * 10, fixed(d))]).unwrap()
        })
        .collect();
    Scatter::new(leaves, no_hedge()).unwrap()
}

#[tokio::test]
async fn partial_results_report_coverage_exactly() {
    let probe = Probe::default();
    let s = eight_shards(&probe, &[2, 5, 7]);
    let within = || GatherOptions::within(ms(150));

    let got = s
        .gather(&0, &within().with_coverage(Coverage::BestEffort))
        .await
        .unwrap();
    assert_eq!(got.coverage(), (5, 8));
    assert!(got.degraded());
    let answered: Vec<usize> = got.answers.iter().map(|(i, _)| *i).collect();
    assert_eq!(answered, vec![0, 1, 3, 4, 6]);
    assert_eq!(got.answers[2], (3, 30));
    let missing: Vec<(usize, ErrorKind)> =
        got.missing.iter().map(|(i, e)| (*i, e.kind())).collect();
    assert_eq!(
        missing,
        vec![
            (2, ErrorKind::Timeout),
            (5, ErrorKind::Timeout),
            (7, ErrorKind::Timeout)
        ]
    );
    assert_eq!(probe.live.load(Ordering::SeqCst), 0);

    let err = s.gather(&0, &within()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.message().contains("coverage 5/8"), "{err}");
    assert!(err.message().contains("require all 8"), "{err}");
    assert!(err.message().contains("shard-5"), "{err}");

    let ok = s
        .gather(&0, &within().with_coverage(Coverage::AtLeast(5)))
        .await
        .unwrap();
    assert_eq!(ok.coverage(), (5, 8));
    let err = s
        .gather(&0, &within().with_coverage(Coverage::AtLeast(6)))
        .await
        .unwrap_err();
    assert!(err.message().contains("coverage 5/8"), "{err}");
    assert!(err.message().contains("at least 6 of 8"), "{err}");

    let m = s.metrics();
    assert_eq!(m[5].timeouts, 4);
    assert_eq!(m[4].timeouts, 0);

    let all_fast = eight_shards(&probe, &[]);
    let got = all_fast.gather(&0, &within()).await.unwrap();
    assert_eq!(got.coverage(), (8, 8));
    assert!(!got.degraded() && got.missing.is_empty());
}

#[tokio::test]
async fn a_failed_shard_ends_a_require_all_gather_at_once() {
    let probe = Probe::default();
    let mut leaves: Vec<Leaf<u32, u32>> = (0..3)
        .map(|i| Leaf::new(format!("s{i}"), vec![sim(&probe, i, fixed(5_000))]).unwrap())
        .collect();
    leaves.push(
        Leaf::new(
            "broken",
            vec![sim(&probe, 9, |_| {
                Err(Error::new(ErrorKind::Unavailable, "replica refused"))
            })],
        )
        .unwrap(),
    );
    let s = Scatter::new(leaves, no_hedge()).unwrap();
    let t = Instant::now();
    let err = s
        .gather(&0, &GatherOptions::within(Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(t.elapsed() < ms(1_000));
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("coverage 0/4"), "{err}");
    assert!(err.message().contains("replica refused"), "{err}");
    assert_eq!(probe.live.load(Ordering::SeqCst), 0);
    assert_eq!(s.metrics()[3].errors, 1);
}

#[tokio::test]
async fn a_failed_replica_fails_over_to_another() {
    let probe = Probe::default();
    let leaf = Leaf::new(
        "l",
        vec![
            sim(&probe, 1, |_| {
                Err(Error::new(ErrorKind::Io, "connection reset"))
            }),
            sim(&probe, 2, fixed(1)),
        ],
    )
    .unwrap();
    let s = Scatter::new(vec![leaf], no_hedge()).unwrap();
    for _ in 0..10 {
        assert_eq!(s.first(&0, Instant::now() + ms(500)).await.unwrap(), 2);
    }
    let m = &s.metrics()[0];
    assert!(m.errors >= 1);
    // The failing replica's doubled estimate steers traffic away from it.
    assert!(m.replicas[0].calls <= 3, "{m:?}");
}

#[tokio::test]
async fn p2c_prefers_the_fast_replica_after_warm_up() {
    let probe = Probe::default();
    let leaf = Leaf::new(
        "l",
        vec![
            sim(&probe, 0, fixed(15)),
            sim(&probe, 1, fixed(1)),
            sim(&probe, 2, fixed(15)),
        ],
    )
    .unwrap();
    let s = Scatter::new(vec![leaf], no_hedge()).unwrap();
    run_first(&s, 20).await;
    let before: Vec<u64> = s.metrics()[0].replicas.iter().map(|r| r.calls).collect();
    let n = 150;
    run_first(&s, n).await;
    let after: Vec<u64> = s.metrics()[0].replicas.iter().map(|r| r.calls).collect();
    let fast = after[1] - before[1];
    // A uniform choice would give the fast one a third; power of two
    // choices gives it every draw it is part of, two thirds.
    assert!(
        fast as f64 > 0.55 * n as f64,
        "fast replica got {fast} of {n}"
    );
    let ewma = s.metrics()[0].replicas[1].ewma.unwrap();
    assert!(ewma < ms(10), "{ewma:?}");
}

#[tokio::test]
async fn gather_each_sends_each_shard_its_own_part() {
    let leaves = (0..3)
        .map(|i| {
            let r = move |req: &u32| -> CallFuture<u32> {
                let v = *req * 10 + i;
                Box::pin(async move { Ok(v) })
            };
            Leaf::new(
                format!("s{i}"),
                vec![Arc::new(r) as Arc<dyn Replica<u32, u32>>],
            )
            .unwrap()
        })
        .collect();
    let s = Scatter::new(leaves, no_hedge()).unwrap();
    let got = s
        .gather_each(&[7, 8, 9], &GatherOptions::within(ms(500)))
        .await
        .unwrap();
    assert_eq!(got.answers, vec![(0, 70), (1, 81), (2, 92)]);
    let err = s
        .gather_each(&[7, 8], &GatherOptions::within(ms(500)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.message().contains("got 2 requests for 3 leaves"),
        "{err}"
    );
}

#[tokio::test]
async fn a_scatter_can_run_on_another_task() {
    let probe = Probe::default();
    let s = Arc::new(eight_shards(&probe, &[]));
    let s2 = s.clone();
    let got = tokio::spawn(async move {
        s2.gather(&0, &GatherOptions::within(ms(500)))
            .await
            .map(|g| g.coverage())
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(got, (8, 8));
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let probe = Probe::default();
    let err = Scatter::<u32, u32>::new(vec![], ScatterConfig::default())
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::EmptyNodeSet);
    assert!(err.message().contains("empty leaf set"), "{err}");

    let err = Leaf::<u32, u32>::new("orphan", vec![]).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.message().contains("\"orphan\" has no replicas"),
        "{err}"
    );

    let s = eight_shards(&probe, &[]);
    let past = GatherOptions {
        deadline: Instant::now() - ms(5),
        coverage: Coverage::RequireAll,
    };
    let err = s.gather(&0, &past).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("deadline is already past"), "{err}");
    assert_eq!(probe.started.load(Ordering::SeqCst), 0, "a call was sent");

    let err = s
        .gather(
            &0,
            &GatherOptions::within(ms(100)).with_coverage(Coverage::AtLeast(9)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.message().contains("AtLeast(9)") && err.message().contains("8"),
        "{err}"
    );
    let err = s
        .gather(
            &0,
            &GatherOptions::within(ms(100)).with_coverage(Coverage::AtLeast(0)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    let err = s.first(&0, Instant::now() + ms(100)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("got 8 leaves"), "{err}");

    let one = Scatter::new(
        vec![Leaf::new("r", vec![sim(&probe, 1, fixed(1))]).unwrap()],
        ScatterConfig::default(),
    )
    .unwrap();
    let err = one.first(&0, Instant::now() - ms(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    let bad = |hedge: HedgeConfig| {
        Scatter::new(
            vec![Leaf::new("r", vec![sim(&probe, 1, fixed(1))]).unwrap()],
            ScatterConfig {
                hedge: Some(hedge),
                ..ScatterConfig::default()
            },
        )
        .err()
        .unwrap()
    };
    let err = bad(HedgeConfig {
        percentile: 1.5,
        ..HedgeConfig::default()
    });
    assert!(err.message().contains("1.5"), "{err}");
    let err = bad(HedgeConfig {
        budget_ratio: -0.1,
        ..HedgeConfig::default()
    });
    assert!(err.message().contains("-0.1"), "{err}");
    let err = bad(HedgeConfig {
        max_hedges: 0,
        ..HedgeConfig::default()
    });
    assert!(
        err.message().contains("max_hedges") && err.message().contains("got 0"),
        "{err}"
    );
    let err = Scatter::new(
        vec![Leaf::new("r", vec![sim(&probe, 1, fixed(1))]).unwrap()],
        ScatterConfig {
            ewma_alpha: 0.0,
            ..ScatterConfig::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.message().contains("ewma_alpha"), "{err}");
    assert_eq!(probe.started.load(Ordering::SeqCst), 0);
}
