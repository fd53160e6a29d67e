//! A batch stage's receiving loop, one per partition held: deliveries go to
//! the batch handler in batches of distinct keys, one call per batch, and
//! the batch is acknowledged in one call.
//!
//! The common case costs per event only what the contract needs: a key
//! check (a key's second event in a receive waits for the next batch, so
//! one key's events never run at once and stay in order), the handler's
//! result, and its id in the acknowledgement. Failures, malformed and
//! expired events leave the fast path for their key's lane (see the
//! parent's `lane`), and the key's later events queue behind them there,
//! so a failing key parks only itself.
//!
//! A partition has one call in flight at a time, which is what keeps its
//! keys in order; the stage's partitions run their calls in parallel, up to
//! the batch settings' `calls`.

use super::dead_letter_attr;
use super::{
    done_with, emit, finish, release, spawn_lane_after, stopping, BoxError, Delivery, DeliveryId,
    Receive, Shared, Work, ACK_BATCH,
};
use crate::hash::prehashed::BuildPreHashed;
use crate::pipeline::batch::{split, whole};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

/// A partition's events handed back by lanes, with the wake-up for its
/// loop.
#[derive(Default)]
pub(super) struct Returned {
    events: Mutex<Vec<Delivery>>,
    wake: Notify,
}

/// Hands a lane's queued events back to their partition's loop, which
/// batches them before anything else. Called with the lanes lock held.
pub(super) fn give_back(s: &Shared, partition: u32, rest: VecDeque<Delivery>) {
    let Some(r) = s.returned.get(partition as usize) else {
        return;
    };
    // They stay among the stage's own (`mine`) until the loop takes them
    // back, so a reclaim of them meanwhile is recognised.
    r.events.lock().expect("returned lock").extend(rest);
    r.wake.notify_one();
}

/// Receives, batches, calls and acknowledges one partition's events until
/// the stage stops or gives the partition up. What it received and did not
/// start is left unacknowledged, for redelivery.
pub(super) async fn batch_loop(
    s: Arc<Shared>,
    partition: u32,
    mut part_stop: watch::Receiver<bool>,
    _receiving: super::holds::Receiving,
) {
    let Work::Batch { settings, .. } = &s.work else {
        return;
    };
    let settings = *settings;
    let mut stop = s.stop.clone();
    let group = s.cfg.group().to_string();
    let mut errors = 0u32;
    let mut taking_over = true;
    // Received and not yet in a call, in partition order.
    let mut waiting: VecDeque<Delivery> = VecDeque::new();
    // The keys in the batch being made: kept from batch to batch, so that
    // its table is not grown again for each.
    let mut keys: HashSet<u64, BuildPreHashed> = HashSet::default();
    loop {
        if stopping(&s) || *part_stop.borrow() {
            break;
        }
        let used = s.stats.in_flight.load(Ordering::Relaxed) as usize;
        let room = s.cfg.max_in_flight.saturating_sub(used);
        let want = settings.max.saturating_sub(waiting.len()).min(room);
        if want == 0 && waiting.is_empty() {
            tokio::select! {
                _ = s.room.notified() => {}
                _ = s.returned[partition as usize].wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.changed() => break,
                _ = part_stop.changed() => break,
            }
            continue;
        }
        if want > 0 {
            // Taking a partition over: first everything its last holder
            // left unacknowledged, then new events (see `Receive`).
            let handed_back = !s.returned[partition as usize]
                .events
                .lock()
                .expect("returned lock")
                .is_empty();
            let wait = if !waiting.is_empty() || handed_back {
                Duration::ZERO
            } else if taking_over {
                Duration::from_millis(1)
            } else {
                super::READ_WAIT
            };
            let mut r = Receive {
                topic: &s.cfg.topic,
                group: &group,
                consumer: &s.cfg.consumer,
                partition,
                max: want,
                wait,
                visibility: s.cfg.visibility,
                take_over: taking_over,
            };
            // Not cut short for events handed back: a read cancelled on
            // this side may still deliver at the broker, and its events
            // would wait unseen, pending here, while their keys' later
            // events overtake them (see `super::read` for stops).
            let Some(got) = super::read(&s, r, &mut stop, &mut part_stop).await else {
                break;
            };
            let Some(mut got) = super::received(&s, got, &mut errors).await else {
                continue;
            };
            // A batch that is not full waits `linger` once for more.
            if !got.is_empty() && got.len() < want && !settings.linger.is_zero() && !taking_over {
                r.max = want - got.len();
                r.wait = settings.linger;
                let Some(more) = super::read(&s, r, &mut stop, &mut part_stop).await else {
                    break;
                };
                got.extend(more.unwrap_or_default());
            }
            if !admit(&s, partition, &group, got, &mut waiting).await {
                taking_over = false;
            }
        }
        let batch = take_batch(&s, partition, &mut waiting, &mut keys, settings.max);
        if !batch.is_empty() {
            run_batch(&s, partition, batch).await;
        }
        // With an in-process transport every step above may be ready at
        // once, so the loop would never give its thread up: let the
        // stage's coordinator (which renews the partitions' holds) and
        // the other partitions run between batches.
        tokio::task::yield_now().await;
    }
    let returned = std::mem::take(
        &mut *s.returned[partition as usize]
            .events
            .lock()
            .expect("returned lock"),
    );
    for d in waiting.iter().chain(&returned) {
        release(&s, d);
    }
}

/// Counts received deliveries in flight and queues them in `waiting`,
/// except a reclaim of one this stage still works on (ignored) and those
/// the stage skips (acknowledged at once). Whether any was a redelivery
/// (while taking a partition over: more may be left behind).
async fn admit(
    s: &Arc<Shared>,
    partition: u32,
    group: &str,
    got: Vec<Delivery>,
    waiting: &mut VecDeque<Delivery>,
) -> bool {
    let redriven_elsewhere = |d: &Delivery| {
        d.event
            .extension(dead_letter_attr::REDRIVE_FOR)
            .is_some_and(|g| g != group)
    };
    // The common case, a first delivery of events this stage takes, with
    // nothing waiting: the received list becomes the queue as it is,
    // without moving each delivery.
    if waiting.is_empty()
        && got
            .iter()
            .all(|d| d.deliveries <= 1 && !redriven_elsewhere(d) && s.cfg.filter.matches(&d.event))
    {
        let admitted = got.len() as u64;
        *waiting = VecDeque::from(got);
        s.stats.in_flight.fetch_add(admitted, Ordering::Relaxed);
        s.part_in_flight[partition as usize].fetch_add(admitted, Ordering::SeqCst);
        return false;
    }
    let mut left_behind = false;
    let mut admitted = 0u64;
    for d in got {
        if d.deliveries > 1 {
            // Our own delivery, reclaimed because we are slow with it: it
            // is being handled (or waits) here already.
            let ours = s
                .mine
                .lock()
                .expect("mine lock")
                .contains(&(partition, d.id))
                || waiting.iter().any(|w| w.id == d.id)
                // Reclaimed just before its acknowledgement arrived.
                || super::acked_lately(s, partition, d.id);
            if ours {
                continue;
            }
            s.stats.redelivered.fetch_add(1, Ordering::Relaxed);
            left_behind = true;
        }
        admitted += 1;
        if redriven_elsewhere(&d) || !s.cfg.filter.matches(&d.event) {
            s.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            s.part_in_flight[partition as usize].fetch_add(1, Ordering::SeqCst);
            s.stats.skipped.fetch_add(1, Ordering::Relaxed);
            admitted -= 1;
            finish(s, &d, true).await;
            continue;
        }
        waiting.push_back(d);
    }
    s.stats.in_flight.fetch_add(admitted, Ordering::Relaxed);
    s.part_in_flight[partition as usize].fetch_add(admitted, Ordering::SeqCst);
    left_behind
}

/// The next batch from `waiting`: up to `max` deliveries, at most one per
/// key (ordered stages). A key's later deliveries stay at the front of
/// `waiting`, in order, for the next batch; a key with a lane (failing, or
/// behind a malformed or expired event) gets its deliveries queued there;
/// malformed and expired deliveries start a lane of their own, which
/// dead-letters them.
fn take_batch(
    s: &Arc<Shared>,
    partition: u32,
    waiting: &mut VecDeque<Delivery>,
    keys: &mut HashSet<u64, BuildPreHashed>,
    max: usize,
) -> Vec<Delivery> {
    let ordered = s.cfg.ordered;
    keys.clear();
    let mut batch = Vec::new();
    let mut later: Vec<Delivery> = Vec::new();
    let mut to_lanes: Vec<(Option<String>, Delivery)> = Vec::new();
    let too_old = s
        .cfg
        .max_age
        .and_then(|age| SystemTime::now().checked_sub(age));
    {
        let mut lanes = s.lanes.lock().expect("lanes lock");
        // Handed back by lanes: before everything still waiting (they were
        // received first), taken under the lanes lock (see `give_back`).
        if let Some(r) = s.returned.get(partition as usize) {
            let back = std::mem::take(&mut *r.events.lock().expect("returned lock"));
            let mut mine = s.mine.lock().expect("mine lock");
            for d in back.into_iter().rev() {
                mine.remove(&(d.partition, d.id));
                waiting.push_front(d);
            }
        }
        // The common case: everything waiting goes in the batch (no key
        // twice, none with a lane, none malformed or expired). Checked
        // first, so that the queue then becomes the batch as it is,
        // without moving each delivery.
        let whole = waiting.len() <= max
            && waiting.iter().all(|d| {
                (!ordered || (lanes.is_empty() && keys.insert(d.key_hash)))
                    && d.malformed.is_none()
                    && too_old.is_none_or(|t| d.published >= t)
            });
        if whole {
            return Vec::from(std::mem::take(waiting));
        }
        keys.clear();
        batch.reserve_exact(max.min(waiting.len()));
        while batch.len() < max {
            let Some(d) = waiting.pop_front() else {
                break;
            };
            if ordered {
                if !lanes.is_empty() {
                    if let Some(q) = lanes.get_mut(d.event.key()) {
                        // Ours while it waits there (a reclaim of it is
                        // recognised).
                        s.mine
                            .lock()
                            .expect("mine lock")
                            .insert((d.partition, d.id));
                        q.push_back(d);
                        continue;
                    }
                }
                // Hashes, not keys, are compared: a collision only holds an
                // event back one batch.
                if !keys.insert(d.key_hash) {
                    later.push(d);
                    continue;
                }
            }
            let expired = too_old.is_some_and(|t| d.published < t);
            if d.malformed.is_some() || expired {
                let key = ordered.then(|| d.event.key().to_string());
                if let Some(k) = &key {
                    lanes.insert(k.clone(), VecDeque::new());
                }
                to_lanes.push((key, d));
                continue;
            }
            batch.push(d);
        }
    }
    // The held-back events came before everything still waiting.
    for d in later.into_iter().rev() {
        waiting.push_front(d);
    }
    for (key, d) in to_lanes {
        s.mine
            .lock()
            .expect("mine lock")
            .insert((d.partition, d.id));
        spawn_lane_after(s, key, d, None);
    }
    batch
}

/// One call for `batch`, then: its output emitted in one publish, its
/// successes acknowledged in one call, each failure sent to its key's lane.
async fn run_batch(s: &Arc<Shared>, partition: u32, batch: Vec<Delivery>) {
    let Work::Batch { handler, calls, .. } = &s.work else {
        return;
    };
    // Held through the acknowledgement, so that a draining stop waits for
    // the call to be finished and acknowledged.
    let _worker = s.workers.acquire().await.expect("never closed");
    let _call = calls.acquire().await.expect("never closed");
    if !super::holds::may_start(s, partition).await {
        // Stopped, or the partition's hold may have ended, before the call
        // started: left for redelivery.
        for d in &batch {
            release(s, d);
        }
        return;
    }
    // The whole call gets the events moved in; only if it fails are they
    // copied again, from the batch, to be split (see `bisect`).
    let events = batch.iter().map(|d| d.event.clone()).collect();
    let results = match whole(handler.clone().oneshot(events).await, batch.len()) {
        Ok(results) => results,
        Err(err) => {
            let events = batch.iter().map(|d| d.event.clone()).collect();
            split(handler.clone(), events, err).await
        }
    };
    if results.iter().all(|r| r.as_ref().is_ok_and(Vec::is_empty)) {
        // The common case: every event done, nothing to emit.
        acknowledge_batch(s, partition, &batch).await;
        return;
    }
    let mut out = Vec::new();
    let mut ok = Vec::with_capacity(batch.len());
    let mut failed: Vec<(Delivery, BoxError)> = Vec::new();
    for (d, r) in batch.into_iter().zip(results) {
        match r {
            Ok(events) => {
                out.extend(events);
                ok.push(d);
            }
            Err(e) => failed.push((d, e)),
        }
    }
    if !out.is_empty() {
        if let Err(e) = emit(s, out).await {
            // Not emitted, so not done: each is an attempt that failed.
            let why = e.to_string();
            failed.extend(ok.drain(..).map(|d| (d, BoxError::from(why.clone()))));
        }
    }
    for (d, e) in failed {
        let key = s.cfg.ordered.then(|| d.event.key().to_string());
        if let Some(k) = &key {
            s.lanes
                .lock()
                .expect("lanes lock")
                .insert(k.clone(), VecDeque::new());
        }
        s.mine
            .lock()
            .expect("mine lock")
            .insert((d.partition, d.id));
        spawn_lane_after(s, key, d, Some(e));
    }
    acknowledge_batch(s, partition, &ok).await;
}

/// Acknowledges `done` (handled, their output emitted) in calls of at most
/// `ACK_BATCH`, and counts them handled.
async fn acknowledge_batch(s: &Shared, partition: u32, done: &[Delivery]) {
    let n = done.len() as u64;
    if n == 0 {
        return;
    }
    let ids: Vec<DeliveryId> = done.iter().map(|d| d.id).collect();
    for chunk in ids.chunks(ACK_BATCH) {
        if let Err(e) = s
            .transport
            .ack(&s.cfg.topic, s.cfg.group(), partition, chunk)
            .await
        {
            // Unacknowledged: they come back, and are handled again.
            eprintln!("shardkit stage {:?}: ack: {e}", s.cfg.name);
        }
    }
    s.stats.handled.fetch_add(n, Ordering::Relaxed);
    done_with(s, partition, n);
}
