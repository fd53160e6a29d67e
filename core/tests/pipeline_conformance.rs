//! One conformance suite for every pipeline transport: the transport's own
//! promises (order within a partition, fan-out to groups, reclaiming,
//! acknowledgement) and a stage's on top of it (at-least-once, per-key
//! order under parallel lanes, poison events dead-lettered while other
//! keys flow, permanent errors, maximum age, filters, drain, a crashed
//! consumer's events handled by the next, bounded memory).
//!
//! Each check is a function over a transport; the `memory` module runs
//! them all on the in-process transport.

use serde_json::json;
use shardkit::pipeline::stage::dead_letter_attr;
use shardkit::pipeline::{
    partition_of, BatchSettings, BoxError, Data, DeliveryId, Event, Filter, Handler, ItemResult,
    Permanent, Receive, Stage, StageConfig, Transport,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceExt};

fn ev(key: &str, n: u64) -> Event {
    Event::new(format!("{key}-{n}"), "/test", "test.event")
        .unwrap()
        .with_extension("partitionkey", key)
        .unwrap()
        .with_data(Data::Json(json!({"key": key, "n": n})))
}

fn n_of(e: &Event) -> u64 {
    match e.data() {
        Data::Json(v) => v["n"].as_u64().unwrap(),
        other => panic!("unexpected data {other:?}"),
    }
}

fn handler<F, Fut>(f: F) -> Handler<Event, Vec<Event>>
where
    F: Fn(Event) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<Event>, BoxError>> + Send + 'static,
{
    BoxCloneSyncService::new(service_fn(f))
}

/// How a check's stages call their handler: one event per call, or the
/// same handler behind a batch handler (the batch path: batches of
/// distinct keys, one acknowledgement per batch), so that every check holds
/// for both.
#[derive(Clone, Copy, Debug)]
enum Mode {
    One,
    Batched,
}

/// Starts a stage in `mode`. Batched, each call runs the handler on its
/// events in order, one result each, as a user's batch handler would.
/// The runtime each check runs on: two worker threads, as the machines
/// the suite runs on have.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A handler that counts its calls in `n` and does nothing else.
fn counting(n: &Arc<AtomicUsize>) -> Handler<Event, Vec<Event>> {
    let n = n.clone();
    handler(move |_e: Event| {
        let n = n.clone();
        async move {
            n.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        }
    })
}

fn start(
    mode: Mode,
    t: Arc<dyn Transport>,
    cfg: StageConfig,
    h: Handler<Event, Vec<Event>>,
) -> shardkit::Result<Stage> {
    match mode {
        Mode::One => Stage::start(t, cfg, h),
        Mode::Batched => {
            let batch = BoxCloneSyncService::new(service_fn(move |events: Vec<Event>| {
                let h = h.clone();
                async move {
                    let mut out = Vec::with_capacity(events.len());
                    for e in events {
                        out.push(h.clone().oneshot(e).await);
                    }
                    Ok::<Vec<ItemResult>, BoxError>(out)
                }
            }));
            let settings = BatchSettings {
                max: 64,
                linger: Duration::from_millis(1),
                calls: 2,
            };
            Stage::start_batched(t, cfg, batch, settings)
        }
    }
}

fn quick(name: &str, topic: &str) -> StageConfig {
    let mut c = StageConfig::new(name, topic);
    c.min_backoff = Duration::from_millis(1);
    c.max_backoff = Duration::from_millis(5);
    c.visibility = Duration::from_millis(500);
    c.lease = Duration::from_millis(300);
    c
}

async fn until(limit: Duration, mut f: impl FnMut() -> bool, what: &str) {
    // (what is formatted before the wait: a description, not live state)
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn recv<'a>(topic: &'a str, group: &'a str, consumer: &'a str, p: u32) -> Receive<'a> {
    Receive {
        topic,
        group,
        consumer,
        partition: p,
        max: 1000,
        wait: Duration::from_millis(50),
        visibility: Duration::from_millis(200),
        take_over: false,
    }
}

/// Within a partition a group receives in publication order; every event
/// of a key is in that key's partition; a second group gets everything too.
async fn order_partitions_and_fan_out(t: Arc<dyn Transport>, _m: Mode) {
    let parts = t.partitions("orders");
    let events: Vec<Event> = (0..200).map(|i| ev(&format!("k{}", i % 17), i)).collect();
    // Groups created before publishing receive everything.
    t.join("orders", "g1").await.unwrap();
    t.join("orders", "g2").await.unwrap();
    t.publish("orders", events.clone()).await.unwrap();
    for group in ["g1", "g2"] {
        let mut seen = Vec::new();
        for p in 0..parts {
            let got = t.receive(recv("orders", group, "c", p)).await.unwrap();
            let mut last = None;
            for d in &got {
                assert_eq!(partition_of(d.event.key(), parts), p, "{:?}", d.event.key());
                assert_eq!(d.deliveries, 1);
                let n = n_of(&d.event);
                assert!(last < Some(n), "partition {p}: {n} after {last:?}");
                last = Some(n);
            }
            let ids: Vec<DeliveryId> = got.iter().map(|d| d.id).collect();
            t.ack("orders", group, p, &ids).await.unwrap();
            seen.extend(got.into_iter().map(|d| d.event));
        }
        assert_eq!(seen.len(), events.len(), "group {group}");
        let want: HashSet<_> = events.iter().map(|e| e.id().to_string()).collect();
        let got: HashSet<_> = seen.iter().map(|e| e.id().to_string()).collect();
        assert_eq!(got, want);
    }
    assert_eq!(t.backlog("orders").await.unwrap(), 0);
}

/// A delivery left unacknowledged comes back after the visibility timeout,
/// to another consumer, with its delivery count raised; touching it keeps
/// it; acknowledging ends it.
async fn reclaim_after_visibility(t: Arc<dyn Transport>, _m: Mode) {
    let e = ev("only", 1);
    let p = partition_of(e.key(), t.partitions("rc"));
    t.publish("rc", vec![e]).await.unwrap();
    let first = t.receive(recv("rc", "g", "a", p)).await.unwrap();
    assert_eq!(first.len(), 1);
    // Not yet: b gets nothing while a's delivery is fresh...
    let none = t
        .receive(Receive {
            wait: Duration::from_millis(20),
            ..recv("rc", "g", "b", p)
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    // ... nor after a touched it.
    tokio::time::sleep(Duration::from_millis(120)).await;
    t.touch(recv("rc", "g", "a", p), &[first[0].id])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    let none = t
        .receive(Receive {
            wait: Duration::from_millis(10),
            ..recv("rc", "g", "b", p)
        })
        .await
        .unwrap();
    assert!(none.is_empty(), "reclaimed although touched");
    // Past the timeout, b reclaims it.
    let again = t
        .receive(Receive {
            wait: Duration::from_millis(500),
            ..recv("rc", "g", "b", p)
        })
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[0].deliveries, 2);
    t.ack("rc", "g", p, &[again[0].id]).await.unwrap();
    let none = t
        .receive(Receive {
            wait: Duration::from_millis(300),
            ..recv("rc", "g", "c", p)
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Transient failures are retried; every event is handled and its output
/// emitted; per-key order holds under 8 parallel lanes.
async fn at_least_once_in_key_order(t: Arc<dyn Transport>, m: Mode) {
    let keys = 40;
    let per_key = 25;
    let seen: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let failed_once: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (s2, f2) = (seen.clone(), failed_once.clone());
    let h = handler(move |e: Event| {
        let (seen, failed_once) = (s2.clone(), f2.clone());
        async move {
            let n = n_of(&e);
            // Every 7th event fails on its first try.
            if n % 7 == 3 && failed_once.lock().unwrap().insert(e.id().to_string()) {
                return Err("transient".into());
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
            seen.lock()
                .unwrap()
                .entry(e.key().to_string())
                .or_default()
                .push(n);
            let out = Event::new(format!("out-{}", e.id()), "/stage", "test.out")?
                .with_extension("partitionkey", e.key())?;
            Ok(vec![out])
        }
    });
    let mut cfg = quick("orderly", "in");
    cfg.concurrency = 8;
    cfg.reply_topic = Some("out".into());
    let stage = start(m, t.clone(), cfg, h).unwrap();
    let mut batch = Vec::new();
    for i in 0..per_key {
        for k in 0..keys {
            batch.push(ev(&format!("user{k}"), i));
        }
    }
    t.publish("in", batch).await.unwrap();
    let stats = stage.stats();
    // At least once: on a loaded machine an event may outlive its
    // visibility (its acknowledgement still queued) and come back, so
    // handlings may exceed the events; what is awaited is every event
    // handled at least once.
    let distinct = |seen: &HashMap<String, Vec<u64>>| -> u64 {
        seen.values()
            .map(|v| v.iter().collect::<HashSet<_>>().len() as u64)
            .sum()
    };
    until(
        Duration::from_secs(30),
        || distinct(&seen.lock().unwrap()) == keys * per_key,
        "every event handled",
    )
    .await;
    stage.stop(Duration::from_secs(5)).await;
    let handled = stats.handled.load(Ordering::Relaxed);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len() as u64, keys);
        for (k, ns) in seen.iter() {
            // Each key's events were first handled in order, and all of
            // them; a redelivery may repeat one later.
            let mut first = Vec::new();
            for n in ns {
                if !first.contains(n) {
                    first.push(*n);
                }
            }
            assert_eq!(
                first,
                (0..per_key).collect::<Vec<u64>>(),
                "key {k} out of order: {ns:?}"
            );
        }
    }
    assert_eq!(
        stats.failures.load(Ordering::Relaxed) as usize,
        failed_once.lock().unwrap().len()
    );
    assert!(stats.failures.load(Ordering::Relaxed) > 0);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    assert_eq!(stats.emitted.load(Ordering::Relaxed), handled);
    // A handling beyond the first of an event is of a redelivery, and
    // counted so.
    let redelivered = stats.redelivered.load(Ordering::Relaxed);
    assert!(
        handled - keys * per_key <= redelivered,
        "handled {handled} of {} events, {redelivered} redelivered",
        keys * per_key
    );
    assert_eq!(t.backlog("in").await.unwrap(), 0, "everything acknowledged");
    assert_eq!(t.backlog("out").await.unwrap(), handled);
}

/// A poison event is dead-lettered after max_attempts with its history,
/// while 1,000 other keys keep flowing; its own key waits behind it, then
/// goes on.
async fn poison_goes_to_dead_letters_while_others_flow(t: Arc<dyn Transport>, m: Mode) {
    let handled = Arc::new(AtomicUsize::new(0));
    let after_poison = Arc::new(AtomicUsize::new(0));
    let (h2, a2) = (handled.clone(), after_poison.clone());
    let h = handler(move |e: Event| {
        let (handled, after) = (h2.clone(), a2.clone());
        async move {
            if e.id() == "poison-0" {
                return Err("cannot parse the order".into());
            }
            if e.key() == "poison" {
                after.fetch_add(1, Ordering::SeqCst);
            }
            handled.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        }
    });
    let mut cfg = quick("poisoned", "orders2");
    cfg.max_attempts = 4;
    let stage = start(m, t.clone(), cfg, h).unwrap();
    let mut batch = vec![ev("poison", 0), ev("poison", 1)];
    batch.extend((0..1000).map(|k| ev(&format!("k{k}"), 0)));
    t.publish("orders2", batch).await.unwrap();
    let stats = stage.stats();
    until(
        Duration::from_secs(30),
        || handled.load(Ordering::SeqCst) == 1001,
        "the other keys and the poison key's next event",
    )
    .await;
    stage.stop(Duration::from_secs(5)).await;
    assert_eq!(
        after_poison.load(Ordering::SeqCst),
        1,
        "the poison key went on after it"
    );
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failures.load(Ordering::Relaxed), 4);
    let dead = t.peek("orders2.dlq", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let e = &dead[0].event;
    assert_eq!(e.id(), "poison-0");
    assert_eq!(e.extension(dead_letter_attr::TOPIC), Some("orders2"));
    assert_eq!(e.extension(dead_letter_attr::ATTEMPTS), Some("4"));
    assert_eq!(e.extension(dead_letter_attr::REASON), Some("failed"));
    assert_eq!(
        e.extension(dead_letter_attr::ERROR),
        Some("attempt 4: cannot parse the order")
    );
    let history: Vec<String> =
        serde_json::from_str(e.extension(dead_letter_attr::HISTORY).unwrap()).unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(t.backlog("orders2").await.unwrap(), 0);
}

/// Permanent errors skip the retries; expired events are not handled;
/// filtered-out events are acknowledged unhandled.
async fn permanent_expired_and_filtered(t: Arc<dyn Transport>, m: Mode) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let h = handler(move |e: Event| {
        let calls = c2.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if e.id().starts_with("bad") {
                return Err(Box::new(Permanent(format!("{} is malformed", e.id()))) as BoxError);
            }
            Ok(vec![])
        }
    });
    let mut cfg = quick("picky", "mixed");
    cfg.filter = Filter::on("type", "test.*");
    let stage = start(m, t.clone(), cfg, h).unwrap();
    let other = Event::new("x-1", "/test", "other.event").unwrap();
    t.publish(
        "mixed",
        vec![
            ev("a", 1),
            Event::new("bad-1", "/test", "test.event").unwrap(),
            other,
        ],
    )
    .await
    .unwrap();
    let stats = stage.stats();
    until(
        Duration::from_secs(10),
        || {
            stats.handled.load(Ordering::Relaxed) == 1
                && stats.dead_lettered.load(Ordering::Relaxed) == 1
                && stats.skipped.load(Ordering::Relaxed) == 1
        },
        "handled, dead-lettered and skipped",
    )
    .await;
    stage.stop(Duration::from_secs(5)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one try each; the filtered event never reached the handler"
    );
    let dead = t.peek("mixed.dlq", 10).await.unwrap();
    assert_eq!(
        dead[0].event.extension(dead_letter_attr::REASON),
        Some("permanent")
    );

    // Maximum age: events published before the stage existed, older than it.
    t.publish("aged", vec![ev("old", 1)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let h = counting(&calls);
    let mut cfg = quick("fresh-only", "aged");
    cfg.max_age = Some(Duration::from_millis(100));
    let stage = start(m, t.clone(), cfg, h).unwrap();
    let stats = stage.stats();
    until(
        Duration::from_secs(10),
        || stats.dead_lettered.load(Ordering::Relaxed) == 1,
        "expired",
    )
    .await;
    stage.stop(Duration::from_secs(5)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let dead = t.peek("aged.dlq", 10).await.unwrap();
    assert_eq!(
        dead[0].event.extension(dead_letter_attr::REASON),
        Some("expired")
    );
}

/// A consumer that dies mid-batch loses nothing: its unacknowledged events
/// are reclaimed by the next one after the visibility timeout. Duplicates
/// are possible (counted), loss is not.
async fn a_crashed_consumer_loses_nothing(t: Arc<dyn Transport>, m: Mode) {
    let total = 500u64;
    let done: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let d2 = done.clone();
    let slow = handler(move |e: Event| {
        let done = d2.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            *done.lock().unwrap().entry(e.id().to_string()).or_default() += 1;
            Ok(vec![])
        }
    });
    let mut cfg = quick("crashy", "work");
    cfg.consumer = "first".into();
    cfg.visibility = Duration::from_millis(300);
    let first = start(m, t.clone(), cfg.clone(), slow.clone()).unwrap();
    t.publish(
        "work",
        (0..total).map(|i| ev(&format!("k{}", i % 50), i)).collect(),
    )
    .await
    .unwrap();
    until(
        Duration::from_secs(10),
        || done.lock().unwrap().len() >= 50,
        "some progress",
    )
    .await;
    // "kill -9": ended mid-batch, handlers cut off mid-call; nothing it
    // held is acknowledged.
    first.abort();
    cfg.consumer = "second".into();
    let second = start(m, t.clone(), cfg, slow).unwrap();
    until(
        Duration::from_secs(30),
        || done.lock().unwrap().len() == total as usize,
        "every event handled by someone",
    )
    .await;
    let stats = second.stats();
    second.stop(Duration::from_secs(5)).await;
    assert!(
        stats.redelivered.load(Ordering::Relaxed) > 0,
        "the first consumer's events came back"
    );
    assert_eq!(t.backlog("work").await.unwrap(), 0);
}

/// Graceful stop: the handler call in progress finishes and is
/// acknowledged; what was not started is delivered to the next consumer.
async fn stop_drains_in_flight(t: Arc<dyn Transport>, m: Mode) {
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (s2, f2) = (started.clone(), finished.clone());
    let h = handler(move |_e: Event| {
        let (started, finished) = (s2.clone(), f2.clone());
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        }
    });
    let mut cfg = quick("drainer", "drain");
    cfg.concurrency = 2;
    let stage = start(m, t.clone(), cfg.clone(), h.clone()).unwrap();
    t.publish("drain", (0..20).map(|i| ev(&format!("k{i}"), i)).collect())
        .await
        .unwrap();
    until(
        Duration::from_secs(5),
        || started.load(Ordering::SeqCst) >= 2,
        "two in progress",
    )
    .await;
    stage.stop(Duration::from_secs(5)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        finished.load(Ordering::SeqCst),
        "a call was cut off"
    );
    let handled_first = finished.load(Ordering::SeqCst);
    assert!(handled_first < 20);
    // The rest: to the next consumer, once their visibility passes.
    cfg.consumer = "next".into();
    let next = start(m, t.clone(), cfg, h).unwrap();
    let stats = next.stats();
    until(
        Duration::from_secs(10),
        || stats.handled.load(Ordering::Relaxed) as usize + handled_first >= 20,
        "the rest",
    )
    .await;
    next.stop(Duration::from_secs(5)).await;
    assert_eq!(t.backlog("drain").await.unwrap(), 0);
}

/// Per-key order holds with 8 workers in one group while one of them
/// stops and another crashes mid-run and a ninth joins: a partition is read
/// by one worker at a time, and a new holder first finishes what the last
/// one left. No two events of one key are ever handled at once.
async fn key_order_across_eight_workers(t: Arc<dyn Transport>, m: Mode) {
    let keys = 40u64;
    let per_key = 30u64;
    let order: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let overlaps = Arc::new(AtomicUsize::new(0));
    struct Busy(Arc<Mutex<HashSet<String>>>, String);
    impl Drop for Busy {
        fn drop(&mut self) {
            self.0.lock().unwrap().remove(&self.1);
        }
    }
    let (o2, b2, v2) = (order.clone(), busy.clone(), overlaps.clone());
    let h = handler(move |e: Event| {
        let (order, busy, overlaps) = (o2.clone(), b2.clone(), v2.clone());
        async move {
            let key = e.key().to_string();
            if !busy.lock().unwrap().insert(key.clone()) {
                overlaps.fetch_add(1, Ordering::SeqCst);
            }
            let _busy = Busy(busy, key.clone());
            tokio::time::sleep(Duration::from_micros(500)).await;
            order.lock().unwrap().entry(key).or_default().push(n_of(&e));
            Ok(vec![])
        }
    });
    let worker = |i: usize| {
        let mut c = quick("eight", "ordered8");
        c.consumer = format!("w{i}");
        c.concurrency = 4;
        start(m, t.clone(), c, h.clone()).unwrap()
    };
    let mut workers: Vec<Option<Stage>> = (0..8).map(|i| Some(worker(i))).collect();
    let mut batch = Vec::new();
    for n in 0..per_key {
        for k in 0..keys {
            batch.push(ev(&format!("key{k}"), n));
        }
    }
    t.publish("ordered8", batch).await.unwrap();
    let firsts = |order: &HashMap<String, Vec<u64>>| -> usize {
        order
            .values()
            .map(|v| v.iter().collect::<HashSet<_>>().len())
            .sum()
    };
    let total = (keys * per_key) as usize;
    until(
        Duration::from_secs(30),
        || firsts(&order.lock().unwrap()) >= total / 3,
        "a third handled",
    )
    .await;
    let stopping = tokio::spawn(workers[0].take().unwrap().stop(Duration::from_secs(5)));
    workers[1].take().unwrap().abort();
    workers.push(Some(worker(8)));
    until(
        Duration::from_secs(30),
        || firsts(&order.lock().unwrap()) == total,
        "every event handled",
    )
    .await;
    stopping.await.unwrap();
    for w in workers.into_iter().flatten() {
        w.stop(Duration::from_secs(5)).await;
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two events of one key at once"
    );
    let order = order.lock().unwrap();
    for (k, ns) in order.iter() {
        // Redelivered events may come twice (at-least-once); the first
        // time each is handled, they are in order.
        let mut seen = HashSet::new();
        let firsts: Vec<u64> = ns.iter().copied().filter(|n| seen.insert(*n)).collect();
        assert_eq!(firsts, (0..per_key).collect::<Vec<_>>(), "key {k}: {ns:?}");
        // A crash replays the key's unacknowledged tail (acknowledgements
        // are sent in batches, so that tail may be a few events long), in
        // order: every step is to the next event or back to where a replay
        // starts, never past an event not yet handled.
        // A replay may step over events acknowledged while it ran (they
        // were handled already), never over one not handled yet.
        let mut last: Option<u64> = None;
        let mut handled = HashSet::new();
        for &n in ns {
            if let Some(l) = last {
                let skipped_unhandled = (l + 1..n).find(|m| !handled.contains(m));
                assert!(
                    n <= l || skipped_unhandled.is_none(),
                    "key {k} went from {l} to {n} past {skipped_unhandled:?}, not yet handled: {ns:?}"
                );
            }
            handled.insert(n);
            last = Some(n);
        }
    }
}

/// A redriven dead letter goes back to its topic for the one group that
/// gave up on it: the topic's other groups, which handled it, skip it.
async fn redrive_goes_to_the_failed_group_alone(t: Arc<dyn Transport>, m: Mode) {
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a_runs, b_runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (f2, a2) = (fixed.clone(), a_runs.clone());
    let a = handler(move |_e: Event| {
        let (fixed, runs) = (f2.clone(), a2.clone());
        async move {
            if !fixed.load(Ordering::SeqCst) {
                return Err(Box::new(Permanent("not yet".into())) as BoxError);
            }
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        }
    });
    let b2 = b_runs.clone();
    let b = handler(move |_e: Event| {
        let runs = b2.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        }
    });
    let sa = start(m, t.clone(), quick("a", "fan"), a).unwrap();
    let sb = start(m, t.clone(), quick("b", "fan"), b).unwrap();
    t.publish("fan", vec![ev("x", 1)]).await.unwrap();
    let (sta, stb) = (sa.stats(), sb.stats());
    until(
        Duration::from_secs(10),
        || sta.dead_lettered.load(Ordering::Relaxed) == 1 && b_runs.load(Ordering::SeqCst) == 1,
        "a gave up, b handled",
    )
    .await;
    fixed.store(true, Ordering::SeqCst);
    let moved = shardkit::pipeline::redrive::redrive(t.as_ref(), "fan.dlq", None)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    until(
        Duration::from_secs(10),
        || a_runs.load(Ordering::SeqCst) == 1 && stb.skipped.load(Ordering::Relaxed) == 1,
        "a handled the redriven event, b skipped it",
    )
    .await;
    sa.stop(Duration::from_secs(2)).await;
    sb.stop(Duration::from_secs(2)).await;
    assert_eq!(b_runs.load(Ordering::SeqCst), 1, "b handled it once");
    assert!(t.peek("fan.dlq", 10).await.unwrap().is_empty());
    let err = shardkit::pipeline::redrive::redrive(t.as_ref(), "fan.dlq", Some("nope"))
        .await
        .unwrap_err();
    assert!(err.message().contains("\"nope\""), "{err}");
}

/// Text that is not a delivery id is refused naming it; an id the
/// transport never gave is refused naming it (in process) or changes
/// nothing (Redis): the event is still stored and delivered first time.
async fn a_foreign_delivery_id_is_named(t: Arc<dyn Transport>, _m: Mode) {
    let err = "not-an-id".parse::<DeliveryId>().unwrap_err();
    assert!(err.message().contains("\"not-an-id\""), "parse: {err}");
    assert_eq!(
        "17-4".parse::<DeliveryId>().unwrap(),
        DeliveryId { ms: 17, seq: 4 }
    );
    t.join("ids", "g").await.unwrap();
    t.publish("ids", vec![ev("k", 1)]).await.unwrap();
    let p = partition_of("k", t.partitions("ids"));
    let bad = [DeliveryId { ms: 7, seq: 0 }];
    let named = |what: &str, r: shardkit::Result<()>| {
        if let Err(e) = r {
            assert!(e.message().contains("\"7-0\""), "{what}: {e}");
        }
    };
    named("ack", t.ack("ids", "g", p, &bad).await);
    named("touch", t.touch(recv("ids", "g", "c", p), &bad).await);
    named("remove", t.remove("ids", p, &bad).await);
    assert_eq!(t.backlog("ids").await.unwrap(), 1);
    let got = t.receive(recv("ids", "g", "c", p)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].deliveries, 1);
}

/// Bad stage settings are refused, naming the value.
async fn bad_stage_settings_are_named(t: Arc<dyn Transport>, m: Mode) {
    let h = handler(|_e: Event| async { Ok(vec![]) });
    let mut cases = Vec::new();
    let mut c = quick("s", "t");
    c.max_attempts = 0;
    cases.push((c, "max_attempts 0"));
    let mut c = quick("s", "t");
    c.reply_topic = Some("t".into());
    cases.push((c, "reply_topic \"t\""));
    let mut c = quick("s", "t");
    c.concurrency = 0;
    cases.push((c, "concurrency 0"));
    let mut c = quick("s", "t");
    c.dead_letter = Some("t".into());
    cases.push((c, "dead_letter \"t\""));
    let mut c = quick("s", "t");
    c.lease = Duration::from_millis(5);
    cases.push((c, "lease 5 ms"));
    let mut c = quick("s", "t");
    c.visibility = Duration::from_millis(1);
    cases.push((c, "visibility 1 ms"));
    let mut c = quick("s", "t");
    c.min_backoff = Duration::from_secs(2);
    c.max_backoff = Duration::from_secs(1);
    cases.push((c, "min_backoff 2000 ms"));
    for (cfg, want) in cases {
        let err = start(m, t.clone(), cfg, h.clone()).err().expect("refused");
        assert!(err.message().contains(want), "{err} lacks {want:?}");
    }
}

/// A transport for one check, and whatever must live as long as it (the
/// server it talks to).
type Setup = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Arc<dyn Transport>, Box<dyn std::any::Any + Send>)>>,
>;

macro_rules! conformance {
    ($(#[$attr:meta])* mode = $mode:expr, make = $make:expr) => {
        fn run(check: fn(Arc<dyn Transport>, Mode) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
            let rt = runtime();
            let make: fn() -> Setup = $make;
            rt.block_on(async {
                let (t, _keep) = make().await;
                check(t, $mode).await
            });
        }
        #[test]
        $(#[$attr])*
        fn order_partitions_and_fan_out() {
            run(|t, m| Box::pin(super::order_partitions_and_fan_out(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn reclaim_after_visibility() {
            run(|t, m| Box::pin(super::reclaim_after_visibility(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn at_least_once_in_key_order() {
            run(|t, m| Box::pin(super::at_least_once_in_key_order(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn poison_goes_to_dead_letters_while_others_flow() {
            run(|t, m| Box::pin(super::poison_goes_to_dead_letters_while_others_flow(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn permanent_expired_and_filtered() {
            run(|t, m| Box::pin(super::permanent_expired_and_filtered(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn a_crashed_consumer_loses_nothing() {
            run(|t, m| Box::pin(super::a_crashed_consumer_loses_nothing(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn stop_drains_in_flight() {
            run(|t, m| Box::pin(super::stop_drains_in_flight(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn key_order_across_eight_workers() {
            run(|t, m| Box::pin(super::key_order_across_eight_workers(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn redrive_goes_to_the_failed_group_alone() {
            run(|t, m| Box::pin(super::redrive_goes_to_the_failed_group_alone(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn a_foreign_delivery_id_is_named() {
            run(|t, m| Box::pin(super::a_foreign_delivery_id_is_named(t, m)));
        }
        #[test]
        $(#[$attr])*
        fn bad_stage_settings_are_named() {
            run(|t, m| Box::pin(super::bad_stage_settings_are_named(t, m)));
        }
    };
}

mod memory {
    use super::*;
    conformance!(
        mode = Mode::One,
        make = || Box::pin(async {
            let t: Arc<dyn Transport> =
                Arc::new(shardkit::pipeline::Memory::new(8, 10_000).unwrap());
            (t, Box::new(()) as Box<dyn std::any::Any + Send>)
        })
    );
}

/// The same checks with batch handlers.
mod memory_batched {
    use super::*;
    conformance!(
        mode = Mode::Batched,
        make = || Box::pin(async {
            let t: Arc<dyn Transport> =
                Arc::new(shardkit::pipeline::Memory::new(8, 10_000).unwrap());
            (t, Box::new(()) as Box<dyn std::any::Any + Send>)
        })
    );
}

/// The same checks on Redis Streams, against a real redis-server of each
/// check's own.
mod redis_streams {
    use super::*;
    use shardkit::pipeline::{RedisOptions, RedisStreams};
    use shardkit_testkit::redis::start_redis;
    use shardkit_testkit::{free_addrs, TempDir};

    conformance!(
        #[ignore = "needs redis-server: run by make test-compat"]
        mode = Mode::One,
        make = || Box::pin(async {
            let dir = TempDir::new("pipeline-redis");
            let addr = free_addrs(std::net::Ipv4Addr::LOCALHOST, 1)[0];
            let server = start_redis(dir.path(), addr, None);
            let options = RedisOptions {
                partitions: 8,
                ..RedisOptions::default()
            };
            let t = RedisStreams::connect(&format!("redis://{addr}/"), options)
                .await
                .unwrap();
            let t: Arc<dyn Transport> = Arc::new(t);
            (t, Box::new((server, dir)) as Box<dyn std::any::Any + Send>)
        })
    );

    /// Each worker run is a consumer of its own: a partition's next holder
    /// deletes the past ones it leaves with nothing pending. A crashed
    /// consumer's pending entry is taken over and handled first, and only
    /// then is that consumer forgotten.
    #[test]
    #[ignore = "needs redis-server: run by make test-compat"]
    fn past_consumers_are_forgotten_on_take_over() {
        let rt = runtime();
        rt.block_on(async {
            let dir = TempDir::new("pipeline-redis");
            let addr = free_addrs(std::net::Ipv4Addr::LOCALHOST, 1)[0];
            let _server = start_redis(dir.path(), addr, None);
            let url = format!("redis://{addr}/");
            let options = RedisOptions {
                partitions: 2,
                ..RedisOptions::default()
            };
            let rs = RedisStreams::connect(&url, options).await.unwrap();
            let stream0 = rs.stream("tidy", 0);
            let t: Arc<dyn Transport> = Arc::new(rs);
            let done = Arc::new(AtomicUsize::new(0));
            let h = counting(&done);
            let run = |consumer: &str| {
                let mut c = quick("tidy", "tidy");
                c.consumer = consumer.into();
                Stage::start(t.clone(), c, h.clone()).unwrap()
            };
            let consumers = || async {
                let client = redis::Client::open(url.as_str()).unwrap();
                let mut c = client.get_multiplexed_async_connection().await.unwrap();
                let mut names = Vec::new();
                for p in 0..2 {
                    let v: redis::Value = redis::cmd("XINFO")
                        .arg("CONSUMERS")
                        .arg(format!("shardkit:tidy:{p}"))
                        .arg("tidy")
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    let redis::Value::Array(rows) = v else {
                        panic!("XINFO CONSUMERS: {v:?}")
                    };
                    for row in rows {
                        let redis::Value::Array(f) = row else {
                            continue;
                        };
                        if let Some(redis::Value::BulkString(n)) = f.get(1) {
                            names.push((p, String::from_utf8_lossy(n).to_string()));
                        }
                    }
                }
                names.sort();
                names.dedup();
                names
            };
            let publish = |from: u64| {
                let batch: Vec<Event> =
                    (from..from + 40).map(|n| ev(&format!("k{n}"), n)).collect();
                let t = t.clone();
                async move { t.publish("tidy", batch).await.unwrap() }
            };
            // Three runs one after another, each finishing its events.
            for (i, name) in ["run1", "run2", "run3"].iter().enumerate() {
                let stage = run(name);
                publish(i as u64 * 40).await;
                let want = (i + 1) * 40;
                until(
                    Duration::from_secs(10),
                    || done.load(Ordering::SeqCst) >= want,
                    "a run's events",
                )
                .await;
                stage.stop(Duration::from_secs(5)).await;
                // Idle past the visibility timeout before the next run.
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
            let left = consumers().await;
            assert!(
                left.iter().all(|(_, n)| n == "run3"),
                "past consumers left: {left:?}"
            );
            // A past consumer with an entry pending is kept: one read
            // (never acknowledged) as "crashed", then a run takes over.
            let mut c = redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            redis::cmd("XADD")
                .arg(&stream0)
                .arg("*")
                .arg("e")
                .arg(ev("late", 0).to_json())
                .query_async::<redis::Value>(&mut c)
                .await
                .unwrap();
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("tidy")
                .arg("crashed")
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(&stream0)
                .arg(">")
                .query_async::<redis::Value>(&mut c)
                .await
                .unwrap();
            assert!(consumers().await.contains(&(0, "crashed".to_string())));
            tokio::time::sleep(Duration::from_millis(600)).await;
            // run4 takes the crashed consumer's entry over and handles it;
            // run5, taking over after run4, finds both with nothing
            // pending and forgets them.
            let before = done.load(Ordering::SeqCst);
            let stage = run("run4");
            until(
                Duration::from_secs(10),
                || done.load(Ordering::SeqCst) > before,
                "the crashed consumer's entry",
            )
            .await;
            stage.stop(Duration::from_secs(5)).await;
            tokio::time::sleep(Duration::from_millis(600)).await;
            let stage = run("run5");
            publish(1000).await;
            until(
                Duration::from_secs(10),
                || done.load(Ordering::SeqCst) >= before + 41,
                "run5's events",
            )
            .await;
            stage.stop(Duration::from_secs(5)).await;
            let left = consumers().await;
            assert!(
                left.iter().all(|(_, n)| n == "run5"),
                "past consumers left: {left:?}"
            );
        });
    }
}

/// The Redis checks with batch handlers.
mod redis_streams_batched {
    use super::*;
    use shardkit::pipeline::{RedisOptions, RedisStreams};
    use shardkit_testkit::redis::start_redis;
    use shardkit_testkit::{free_addrs, TempDir};

    conformance!(
        #[ignore = "needs redis-server: run by make test-compat"]
        mode = Mode::Batched,
        make = || Box::pin(async {
            let dir = TempDir::new("pipeline-redis");
            let addr = free_addrs(std::net::Ipv4Addr::LOCALHOST, 1)[0];
            let server = start_redis(dir.path(), addr, None);
            let options = RedisOptions {
                partitions: 8,
                ..RedisOptions::default()
            };
            let t = RedisStreams::connect(&format!("redis://{addr}/"), options)
                .await
                .unwrap();
            let t: Arc<dyn Transport> = Arc::new(t);
            (t, Box::new((server, dir)) as Box<dyn std::any::Any + Send>)
        })
    );
}

/// The in-process transport's own bound: a publisher waits when a
/// partition is full, so a slow handler never lets memory grow.
#[test]
fn memory_transport_is_bounded() {
    let rt = runtime();
    rt.block_on(async {
        let t: Arc<dyn Transport> = Arc::new(shardkit::pipeline::Memory::new(1, 50).unwrap());
        let h = handler(|_e: Event| async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(vec![])
        });
        let mut cfg = quick("slow", "flood");
        cfg.max_in_flight = 20;
        let stage = Stage::start(t.clone(), cfg, h).unwrap();
        let stats = stage.stats();
        let mut peak_backlog = 0;
        let mut peak_in_flight = 0;
        for i in 0..400u64 {
            t.publish("flood", vec![ev(&format!("k{}", i % 8), i)])
                .await
                .unwrap();
            peak_backlog = peak_backlog.max(t.backlog("flood").await.unwrap());
            peak_in_flight = peak_in_flight.max(stats.in_flight.load(Ordering::Relaxed));
        }
        until(
            Duration::from_secs(30),
            || stats.handled.load(Ordering::Relaxed) == 400,
            "all handled",
        )
        .await;
        stage.stop(Duration::from_secs(5)).await;
        assert!(peak_backlog <= 50, "backlog reached {peak_backlog}");
        assert!(peak_in_flight <= 20, "in flight reached {peak_in_flight}");
    });
    let err = shardkit::pipeline::Memory::new(0, 10).err().unwrap();
    assert!(err.message().contains("partitions 0"), "{err}");
    let err = shardkit::pipeline::Memory::new(2, 0).err().unwrap();
    assert!(err.message().contains("capacity 0"), "{err}");
}
