//! The gather latency model against real concurrent fan-outs: tokio tasks
//! sleep for leaf latencies drawn from the modelled log-normal, a gather
//! waits for all of them, and the measured gather percentiles must match the
//! model's prediction within sampling error plus timer granularity.

use shardkit::fanout::{GatherModel, HedgeAt, LeafLatency};
use shardkit_testkit::Rng;
use std::time::{Duration, Instant};

/// A leaf latency drawn from the log-normal (seeded: the same every run).
fn leaf_latency(rng: &mut Rng, mu: f64, sigma: f64) -> Duration {
    Duration::from_secs_f64(rng.log_normal(mu, sigma))
}

const LEAVES: usize = 16;
const GATHERS: usize = 400;
/// Gathers in flight at once.
const WAVE: usize = 20;

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * q).ceil() as usize - 1).min(v.len() - 1)]
}

/// One gather over `LEAVES` leaves: each leaf sleeps `x1`, or, hedged, is
/// re-sent after `hedge` to a replica that takes `x2`; first answer wins.
async fn gather(latencies: Vec<(Duration, Duration)>, hedge: Option<Duration>) -> Duration {
    let start = Instant::now();
    let leaves: Vec<_> = latencies
        .into_iter()
        .map(|(x1, x2)| {
            tokio::spawn(async move {
                // Latencies count from when the root sent the request, not
                // from when the runtime first polled this task: thousands of
                // tasks start at once here, and a queue wait at start is the
                // test's artefact, not the leaf's latency.
                let sent = tokio::time::Instant::from_std(start);
                match hedge {
                    None => tokio::time::sleep_until(sent + x1).await,
                    Some(d) => tokio::select! {
                        _ = tokio::time::sleep_until(sent + x1) => {}
                        _ = async {
                            // The hedge's own latency starts when it is sent.
                            tokio::time::sleep_until(sent + d).await;
                            tokio::time::sleep(x2).await;
                        } => {}
                    },
                }
            })
        })
        .collect();
    for leaf in leaves {
        leaf.await.unwrap();
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_predicts_measured_fanouts() {
    let leaf =
        LeafLatency::log_normal(Duration::from_millis(2), Duration::from_millis(20)).unwrap();
    let LeafLatency::LogNormal { mu, sigma } = leaf else {
        unreachable!()
    };
    let model = GatherModel::new(leaf);
    let delay = model.hedge_delay(HedgeAt::default()).unwrap();
    let mut rng = Rng::new(0x00dd_ba11);

    for hedge in [None, Some(delay)] {
        let draws: Vec<Vec<(Duration, Duration)>> = (0..GATHERS)
            .map(|_| {
                (0..LEAVES)
                    .map(|_| {
                        (
                            leaf_latency(&mut rng, mu, sigma),
                            leaf_latency(&mut rng, mu, sigma),
                        )
                    })
                    .collect()
            })
            .collect();
        // What the gathers would take on a perfect timer: separates the
        // model's error (sampling) from the runtime's (timers, scheduling).
        let mut ideal: Vec<Duration> = draws
            .iter()
            .map(|g| {
                g.iter()
                    .map(|&(x1, x2)| match hedge {
                        Some(d) => x1.min(d + x2),
                        None => x1,
                    })
                    .max()
                    .unwrap()
            })
            .collect();
        // Waves of concurrent gathers, each timing itself: the run takes
        // about as long as the slowest gather of each wave, not the sum of
        // all, while a wave stays small enough not to swamp the runtime.
        let run = tokio::time::timeout(Duration::from_secs(10), async {
            let mut out = Vec::with_capacity(GATHERS);
            let mut draws = draws.into_iter().peekable();
            while draws.peek().is_some() {
                let tasks: Vec<_> = draws
                    .by_ref()
                    .take(WAVE)
                    .map(|g| tokio::spawn(gather(g, hedge)))
                    .collect();
                for t in tasks {
                    out.push(t.await.unwrap());
                }
            }
            out
        });
        let mut measured = run.await.expect("fan-outs finish within 10 s");

        // A timer never fires early, so no gather beats its draws.
        for (m, i) in measured.iter().zip(&ideal) {
            assert!(
                m >= i,
                "hedge {hedge:?}: gather took {m:?}, its draws {i:?}"
            );
        }
        for q in [0.5, 0.9] {
            let predicted = model.gather_quantile(LEAVES, hedge, q).unwrap();
            let got = quantile(&mut measured, q);
            let perfect = quantile(&mut ideal, q);
            println!(
                "hedge {hedge:?} p{}: model {predicted:?}, measured {got:?}, ideal timer {perfect:?}",
                q * 100.0
            );
            // Sampling error of a quantile from 400 gathers is a few per
            // cent (the ideal-timer figure shows it); tokio rounds sleeps up
            // to its 1 ms tick and a loaded 2-core machine adds scheduling
            // delay, so the measured gather may run late by a few ms but
            // never early.
            let lo = predicted.as_secs_f64() * 0.85;
            let hi = predicted.as_secs_f64() * 1.15 + 0.004;
            let g = got.as_secs_f64();
            assert!(
                (lo..=hi).contains(&g),
                "hedge {hedge:?} q={q}: measured {got:?} outside [{lo:.4}s, {hi:.4}s] around model {predicted:?}"
            );
            // The model against the same draws without timer noise: tighter.
            let p = perfect.as_secs_f64();
            assert!(
                (p - predicted.as_secs_f64()).abs() <= predicted.as_secs_f64() * 0.12,
                "hedge {hedge:?} q={q}: ideal {perfect:?} vs model {predicted:?}"
            );
        }
    }
}
