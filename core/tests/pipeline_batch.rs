//! Batch handlers: events of many keys in one call, a result per event
//! (partial failures retried on their own), bisection of a batch that
//! fails whole, per-key order kept.

use serde_json::json;
use shardkit::pipeline::batch::from_failures;
use shardkit::pipeline::stage::dead_letter_attr;
use shardkit::pipeline::{
    BatchSettings, BoxError, Data, Event, ItemResult, Memory, Stage, StageConfig, Transport,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::service_fn;
use tower::util::BoxCloneSyncService;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn ev(key: &str, n: u64) -> Event {
    Event::new(format!("{key}-{n}"), "/test", "test.event")
        .unwrap()
        .with_extension("partitionkey", key)
        .unwrap()
        .with_data(Data::Json(json!({ "n": n })))
}

fn n_of(e: &Event) -> u64 {
    match e.data() {
        Data::Json(v) => v["n"].as_u64().unwrap(),
        _ => panic!(),
    }
}

fn cfg(topic: &str) -> StageConfig {
    let mut c = StageConfig::new("batcher", topic);
    c.concurrency = 128;
    c.min_backoff = Duration::from_millis(1);
    c.max_backoff = Duration::from_millis(5);
    c.lease = Duration::from_millis(300);
    c
}

async fn until(limit: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn batches_gather_many_keys_and_partial_failures_retry_alone() {
    rt().block_on(async {
        let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
        let order: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
        let failed_once: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (s2, o2, f2) = (sizes.clone(), order.clone(), failed_once.clone());
        let h = BoxCloneSyncService::new(service_fn(move |events: Vec<Event>| {
            let (sizes, order, failed_once) = (s2.clone(), o2.clone(), f2.clone());
            async move {
                sizes.lock().unwrap().push(events.len());
                // Every 10th event fails its first time: reported by id, as
                // Lambda's batchItemFailures.
                let mut failed = Vec::new();
                for e in &events {
                    if n_of(e) % 10 == 3 && failed_once.lock().unwrap().insert(e.id().to_string()) {
                        failed.push((e.id().to_string(), "flaky".to_string()));
                    } else {
                        order
                            .lock()
                            .unwrap()
                            .entry(e.key().to_string())
                            .or_default()
                            .push(n_of(e));
                    }
                }
                Ok::<Vec<ItemResult>, BoxError>(from_failures(&events, &failed))
            }
        }));
        let t: Arc<dyn Transport> = Arc::new(Memory::new(4, 100_000).unwrap());
        let settings = BatchSettings {
            max: 50,
            linger: Duration::from_millis(2),
            calls: 2,
        };
        let stage = Stage::start_batched(t.clone(), cfg("b1"), h, settings).unwrap();
        let (keys, per_key) = (200u64, 10u64);
        let mut batch = Vec::new();
        for n in 0..per_key {
            for k in 0..keys {
                batch.push(ev(&format!("k{k}"), n));
            }
        }
        t.publish("b1", batch).await.unwrap();
        let stats = stage.stats();
        let total = keys * per_key;
        until(
            Duration::from_secs(30),
            || stats.handled.load(Ordering::Relaxed) == total,
            "all handled",
        )
        .await;
        stage.stop(Duration::from_secs(2)).await;
        {
            let sizes = sizes.lock().unwrap();
            let calls = sizes.len();
            let biggest = *sizes.iter().max().unwrap();
            eprintln!("{total} events in {calls} calls, at most {biggest} per call");
            assert!(biggest <= 50);
            assert!(
                calls * 5 <= total as usize + failed_once.lock().unwrap().len(),
                "{calls} calls: not batched"
            );
            assert_eq!(
                stats.failures.load(Ordering::Relaxed) as usize,
                failed_once.lock().unwrap().len()
            );
            for (k, ns) in order.lock().unwrap().iter() {
                assert_eq!(
                    ns,
                    &(0..per_key).collect::<Vec<_>>(),
                    "key {k} out of order"
                );
            }
        }
        assert_eq!(t.backlog("b1").await.unwrap(), 0);
    });
}

#[test]
fn a_batch_that_fails_whole_is_bisected_down_to_its_poison_event() {
    rt().block_on(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let handled: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (c2, h2) = (calls.clone(), handled.clone());
        let h = BoxCloneSyncService::new(service_fn(move |events: Vec<Event>| {
            let (calls, handled) = (c2.clone(), h2.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                // One poison event makes the whole call fail, as a handler
                // that throws would.
                if events.iter().any(|e| e.id() == "poison-0") {
                    return Err::<Vec<ItemResult>, BoxError>("cannot decode poison-0".into());
                }
                let mut h = handled.lock().unwrap();
                Ok(events
                    .iter()
                    .map(|e| {
                        h.insert(e.id().to_string());
                        Ok(vec![])
                    })
                    .collect())
            }
        }));
        let t: Arc<dyn Transport> = Arc::new(Memory::new(2, 100_000).unwrap());
        let mut c = cfg("b2");
        c.max_attempts = 3;
        let settings = BatchSettings {
            max: 64,
            linger: Duration::from_millis(5),
            calls: 1,
        };
        let stage = Stage::start_batched(t.clone(), c, h, settings).unwrap();
        let mut events = vec![ev("poison", 0)];
        events.extend((0..300).map(|i| ev(&format!("k{i}"), 0)));
        t.publish("b2", events).await.unwrap();
        let stats = stage.stats();
        until(
            Duration::from_secs(30),
            || {
                stats.handled.load(Ordering::Relaxed) == 300
                    && stats.dead_lettered.load(Ordering::Relaxed) == 1
            },
            "300 handled and the poison event dead-lettered",
        )
        .await;
        stage.stop(Duration::from_secs(2)).await;
        assert_eq!(handled.lock().unwrap().len(), 300);
        let dead = t.peek("b2.dlq", 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event.id(), "poison-0");
        assert_eq!(
            dead[0].event.extension(dead_letter_attr::ATTEMPTS),
            Some("3")
        );
        eprintln!("{} calls", calls.load(Ordering::SeqCst));
    });
}

#[test]
fn bad_batch_settings_are_named() {
    rt().block_on(async {
        let h = BoxCloneSyncService::new(service_fn(|e: Vec<Event>| async move {
            Ok::<Vec<ItemResult>, BoxError>(e.iter().map(|_| Ok(vec![])).collect())
        }));
        let t: Arc<dyn Transport> = Arc::new(Memory::new(1, 10).unwrap());
        let s = BatchSettings {
            max: 0,
            ..BatchSettings::default()
        };
        let err = Stage::start_batched(t.clone(), cfg("b3"), h.clone(), s)
            .err()
            .unwrap();
        assert!(err.message().contains("batch max 0"), "{err}");
        let s = BatchSettings {
            calls: 0,
            ..BatchSettings::default()
        };
        let err = Stage::start_batched(t, cfg("b3"), h, s).err().unwrap();
        assert!(err.message().contains("batch calls 0"), "{err}");
    });
}
