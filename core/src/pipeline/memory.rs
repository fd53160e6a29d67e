//! The in-process transport: each topic's partitions are bounded logs in
//! memory with consumer groups, pending deliveries and reclaiming, the same
//! semantics as the Redis Streams transport, for one process (tests, a
//! service's internal pipeline, the same stages run without a broker).
//!
//! Bounded, never unbounded: a partition holds at most `capacity` events
//! that some group has not acknowledged (or that no group has read yet);
//! `publish` waits for room. An event every group has acknowledged is
//! dropped.

use super::transport::{
    key_hash, partition_of_hash, Delivery, DeliveryId, Fut, Receive, Transport,
};
use super::Event;
use crate::error::{Error, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// The in-process broker. Clones share it.
#[derive(Clone)]
pub struct Memory(Arc<Inner>);

struct Inner {
    partitions: u32,
    capacity: usize,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    /// (topic, group) → consumer → lease end.
    members: Mutex<HashMap<(String, String), HashMap<String, Instant>>>,
    /// (topic, group, partition) → holder and lease end.
    holds: Mutex<HashMap<PartitionOf, (String, Instant)>>,
}

/// A partition of a group's topic: (topic, group, partition).
type PartitionOf = (String, String, u32);

struct Topic {
    parts: Vec<Mutex<Part>>,
    /// Wakes receivers when events arrive and publishers when room frees.
    arrived: Vec<Notify>,
    room: Vec<Notify>,
}

#[derive(Default)]
struct Part {
    /// Events from sequence number `base` on.
    log: VecDeque<Stored>,
    base: u64,
    groups: HashMap<String, Group>,
}

struct Stored {
    /// `None` once removed (`remove`): skipped by readers, dropped by trim.
    event: Option<Event>,
    published: SystemTime,
    /// The key's hash, computed once to place it (see
    /// [`Delivery::key_hash`]).
    key_hash: u64,
}

#[derive(Default)]
struct Group {
    /// The next sequence number never delivered to this group.
    next: u64,
    /// Delivered and not acknowledged.
    pending: Pendings,
    /// The consumers its pending deliveries name (by index), so that a
    /// delivery carries an index rather than a shared name, whose count
    /// would be a locked increment and decrement per event. Emptied
    /// whenever nothing is pending, so names of consumers long gone do
    /// not pile up.
    consumers: Vec<Arc<str>>,
}

impl Group {
    fn starting_at(next: u64) -> Group {
        Group {
            next,
            pending: Pendings::default(),
            consumers: Vec::new(),
        }
    }

    /// The index of `consumer` in `consumers`, added if new.
    fn consumer_index(&mut self, consumer: &str) -> u32 {
        if self.pending.count == 0 {
            self.consumers.clear();
        }
        let i = match self.consumers.iter().position(|c| **c == *consumer) {
            Some(i) => i,
            None => {
                self.consumers.push(Arc::from(consumer));
                self.consumers.len() - 1
            }
        };
        u32::try_from(i).expect("fewer than 2^32 consumers")
    }
}

struct Pending {
    /// Who has it: an index into its group's `consumers`.
    consumer: u32,
    deliveries: u32,
    since: Instant,
}

/// A group's pending deliveries by sequence number: a window of slots from
/// `from`, as deliveries go out in sequence order and are mostly
/// acknowledged in it, so adding and acknowledging one is an index, not a
/// tree operation.
#[derive(Default)]
struct Pendings {
    /// The first slot's sequence number; the first slot is always taken.
    from: u64,
    slots: VecDeque<Option<Pending>>,
    count: usize,
    /// No pending delivery is older than this (it may be older than the
    /// oldest, once that is acknowledged or touched): reclaiming scans
    /// only once this has passed the visibility timeout.
    oldest: Option<Instant>,
}

impl Pendings {
    fn first(&self) -> Option<u64> {
        (self.count > 0).then_some(self.from)
    }

    fn contains(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    fn get(&self, seq: u64) -> Option<&Pending> {
        let i = seq.checked_sub(self.from)?;
        self.slots.get(usize::try_from(i).ok()?)?.as_ref()
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Pending> {
        let i = seq.checked_sub(self.from)?;
        self.slots.get_mut(usize::try_from(i).ok()?)?.as_mut()
    }

    /// Adds a delivery of `seq`, which is after every pending one (new
    /// deliveries go out in order).
    fn push(&mut self, seq: u64, p: Pending) {
        if self.count == 0 {
            self.slots.clear();
            self.from = seq;
        }
        debug_assert!(seq >= self.from + self.slots.len() as u64);
        while self.from + (self.slots.len() as u64) < seq {
            self.slots.push_back(None);
        }
        self.oldest = Some(self.oldest.map_or(p.since, |o| o.min(p.since)));
        self.slots.push_back(Some(p));
        self.count += 1;
    }

    fn remove(&mut self, seq: u64) -> Option<Pending> {
        let i = usize::try_from(seq.checked_sub(self.from)?).ok()?;
        let p = self.slots.get_mut(i)?.take()?;
        self.count -= 1;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.from += 1;
        }
        if self.count == 0 {
            self.oldest = None;
        }
        Some(p)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut Pending)> {
        let from = self.from;
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(move |(i, p)| p.as_mut().map(|p| (from + i as u64, p)))
    }

    /// Whether any delivery may have been pending `visibility` by `now`.
    fn may_have_expired(&self, now: Instant, visibility: Duration) -> bool {
        self.oldest
            .is_some_and(|o| now.saturating_duration_since(o) >= visibility)
    }

    /// Recomputes `oldest` exactly (after a scan).
    fn refresh_oldest(&mut self) {
        self.oldest = self.slots.iter().flatten().map(|p| p.since).min();
    }
}

impl Memory {
    /// A broker whose topics have `partitions` partitions of at most
    /// `capacity` unacknowledged events each.
    pub fn new(partitions: u32, capacity: usize) -> Result<Memory> {
        if partitions == 0 || partitions > 4096 {
            return Err(Error::invalid(format!(
                "memory transport: partitions {partitions}: must be 1..=4096"
            )));
        }
        if capacity == 0 {
            return Err(Error::invalid(
                "memory transport: capacity 0: must be at least 1",
            ));
        }
        Ok(Memory(Arc::new(Inner {
            partitions,
            capacity,
            topics: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
            holds: Mutex::new(HashMap::new()),
        })))
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.0.topics.lock().expect("topics lock");
        topics
            .entry(name.to_string())
            .or_insert_with(|| {
                let n = self.0.partitions as usize;
                Arc::new(Topic {
                    parts: (0..n).map(|_| Mutex::new(Part::default())).collect(),
                    arrived: (0..n).map(|_| Notify::new()).collect(),
                    room: (0..n).map(|_| Notify::new()).collect(),
                })
            })
            .clone()
    }
}

thread_local! {
    /// Events trimmed from a partition, dropped once its lock is released.
    /// Kept from call to call so that its memory is reused: a fresh list
    /// per acknowledgement touched new pages, a page fault every few
    /// events.
    static TRIMMED: std::cell::RefCell<Vec<Event>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Capacity of the trimmed list a thread keeps between acknowledgements.
const TRIMMED_KEPT: usize = 16 * 1024;

impl Part {
    /// Takes out events every group has acknowledged into `gone`, for the
    /// caller to drop once the partition's lock is released. With no group
    /// yet, nothing is taken: the first consumer reads from the start.
    fn trim(&mut self, gone: &mut Vec<Event>) {
        if self.groups.is_empty() {
            return;
        }
        let keep_from = self
            .groups
            .values()
            .map(|g| g.pending.first().unwrap_or(g.next))
            .min()
            .unwrap_or(self.base);
        while self.base < keep_from {
            let Some(s) = self.log.pop_front() else {
                break;
            };
            gone.extend(s.event);
            self.base += 1;
        }
    }

    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }
}

impl Transport for Memory {
    fn partitions(&self, _topic: &str) -> u32 {
        self.0.partitions
    }

    fn publish<'a>(&'a self, topic: &'a str, events: Vec<Event>) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            let t = self.topic(topic);
            for event in events {
                let hash = key_hash(event.key());
                let p = partition_of_hash(hash, self.0.partitions) as usize;
                let mut event = Some(event);
                loop {
                    // Registered before the check, so a trim between the
                    // check and the wait is not missed.
                    let room = t.room[p].notified();
                    {
                        let mut part = t.parts[p].lock().expect("partition lock");
                        if part.log.len() < self.0.capacity {
                            part.log.push_back(Stored {
                                event: Some(event.take().expect("not yet stored")),
                                published: SystemTime::now(),
                                key_hash: hash,
                            });
                            break;
                        }
                    }
                    room.await;
                }
                t.arrived[p].notify_waiters();
            }
            Ok(())
        })
    }

    fn join<'a>(&'a self, topic: &'a str, group: &'a str) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            let t = self.topic(topic);
            for part in &t.parts {
                let mut part = part.lock().expect("partition lock");
                let base = part.base;
                part.groups
                    .entry(group.to_string())
                    .or_insert_with(|| Group::starting_at(base));
            }
            Ok(())
        })
    }

    /// A read takes its deliveries under the partition's lock and answers
    /// at once; it waits only before taking any.
    fn receive_cancel_safe(&self) -> bool {
        true
    }

    fn receive<'a>(&'a self, r: Receive<'a>) -> Fut<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            if r.partition >= self.0.partitions {
                return Err(Error::invalid(format!(
                    "topic {:?}: partition {} does not exist (it has {})",
                    r.topic, r.partition, self.0.partitions
                )));
            }
            let t = self.topic(r.topic);
            let p = r.partition as usize;
            let deadline = tokio::time::Instant::now() + r.wait;
            loop {
                let arrived = t.arrived[p].notified();
                let mut out = Vec::new();
                {
                    let mut part = t.parts[p].lock().expect("partition lock");
                    let base = part.base;
                    let end = part.end();
                    let now = Instant::now();
                    let part = &mut *part;
                    let group = match part.groups.get_mut(r.group) {
                        Some(g) => g,
                        None => part
                            .groups
                            .entry(r.group.to_string())
                            .or_insert_with(|| Group::starting_at(base)),
                    };
                    let me = group.consumer_index(r.consumer);
                    // Reclaimed first: the oldest work of a consumer that
                    // died or stalled. Scanned only when something may
                    // have expired.
                    let mut gone = Vec::new();
                    let scan = r.take_over || group.pending.may_have_expired(now, r.visibility);
                    for (seq, pend) in group.pending.iter_mut().filter(|_| scan) {
                        if out.len() >= r.max {
                            break;
                        }
                        // Taking over, everything pending is abandoned,
                        // this consumer's own too (an earlier run of it).
                        let abandoned = if r.take_over {
                            true
                        } else {
                            now.duration_since(pend.since) >= r.visibility
                        };
                        if abandoned {
                            let s = &part.log[(seq - base) as usize];
                            let Some(event) = &s.event else {
                                // Removed meanwhile: nothing to deliver.
                                gone.push(seq);
                                continue;
                            };
                            pend.consumer = me;
                            pend.deliveries += 1;
                            pend.since = now;
                            out.push(Delivery {
                                event: event.clone(),
                                partition: r.partition,
                                id: id_of(seq),
                                key_hash: s.key_hash,
                                deliveries: pend.deliveries,
                                published: s.published,
                                malformed: None,
                            });
                        }
                    }
                    for seq in gone {
                        group.pending.remove(seq);
                    }
                    if scan {
                        group.pending.refresh_oldest();
                    }
                    // The events about to go out were likely stored long
                    // ago and are out of cache. Read them all first, so the
                    // CPU fetches them in parallel: cloning one is a locked
                    // increment, which waits for its own fetch alone.
                    let ahead = (r.max - out.len()).min((end - group.next) as usize);
                    // Sized once: grown by doubling, a batch's deliveries
                    // were copied about twice over, into fresh memory.
                    out.reserve_exact(ahead);
                    let from = (group.next - base) as usize;
                    for s in part.log.range(from..from + ahead) {
                        if let Some(e) = &s.event {
                            e.warm();
                        }
                    }
                    while out.len() < r.max && group.next < end {
                        let seq = group.next;
                        group.next += 1;
                        let s = &part.log[(seq - base) as usize];
                        let Some(event) = &s.event else {
                            continue;
                        };
                        group.pending.push(
                            seq,
                            Pending {
                                consumer: me,
                                deliveries: 1,
                                since: now,
                            },
                        );
                        out.push(Delivery {
                            event: event.clone(),
                            partition: r.partition,
                            id: id_of(seq),
                            key_hash: s.key_hash,
                            deliveries: 1,
                            published: s.published,
                            malformed: None,
                        });
                    }
                }
                if !out.is_empty() {
                    return Ok(out);
                }
                // Wake for new events, or in time to reclaim the oldest
                // pending one, or at the deadline.
                let wake = {
                    let part = t.parts[p].lock().expect("partition lock");
                    part.groups
                        .get(r.group)
                        .and_then(|g| g.pending.oldest)
                        .map(|since| tokio::time::Instant::from_std(since + r.visibility))
                        .map_or(deadline, |w| w.min(deadline))
                };
                if tokio::time::Instant::now() >= deadline {
                    return Ok(out);
                }
                tokio::select! {
                    _ = arrived => {}
                    _ = tokio::time::sleep_until(wake) => {}
                }
            }
        })
    }

    fn ack<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        partition: u32,
        ids: &'a [DeliveryId],
    ) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            if partition >= self.0.partitions {
                return Err(Error::invalid(format!(
                    "topic {topic:?}: partition {partition} does not exist"
                )));
            }
            for id in ids {
                seq_of(id)?;
            }
            let t = self.topic(topic);
            let p = partition as usize;
            // No await from here on: the thread's list is ours throughout.
            TRIMMED.with_borrow_mut(|gone| {
                {
                    let mut part = t.parts[p].lock().expect("partition lock");
                    let Some(g) = part.groups.get_mut(group) else {
                        return Err(Error::new(
                            crate::error::ErrorKind::NotFound,
                            format!("topic {topic:?}: no consumer group {group:?}"),
                        ));
                    };
                    for id in ids {
                        // Acknowledging twice (after a reclaim) is harmless.
                        g.pending.remove(id.seq);
                    }
                    part.trim(gone);
                }
                t.room[p].notify_waiters();
                gone.clear();
                // A burst's worth is not kept for ever.
                gone.shrink_to(TRIMMED_KEPT);
                Ok(())
            })
        })
    }

    fn touch<'a>(&'a self, r: Receive<'a>, ids: &'a [DeliveryId]) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            let t = self.topic(r.topic);
            let Some(part) = t.parts.get(r.partition as usize) else {
                return Ok(());
            };
            let mut part = part.lock().expect("partition lock");
            if let Some(g) = part.groups.get_mut(r.group) {
                let now = Instant::now();
                let Some(me) = g.consumers.iter().position(|c| **c == *r.consumer) else {
                    // Nothing pending is this consumer's.
                    return Ok(());
                };
                for id in ids {
                    if let Some(p) = g.pending.get_mut(seq_of(id)?) {
                        if p.consumer as usize == me {
                            p.since = now;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    fn remove<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        ids: &'a [DeliveryId],
    ) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            let t = self.topic(topic);
            let Some(part) = t.parts.get(partition as usize) else {
                return Err(Error::invalid(format!(
                    "topic {topic:?}: partition {partition} does not exist"
                )));
            };
            {
                let mut part = part.lock().expect("partition lock");
                for id in ids {
                    seq_of(id)?;
                }
                for id in ids {
                    let seq = id.seq;
                    if seq >= part.base {
                        let i = (seq - part.base) as usize;
                        if let Some(s) = part.log.get_mut(i) {
                            s.event = None;
                        }
                    }
                }
                // Removed entries at the front no group needs can go.
                while part.log.front().is_some_and(|s| s.event.is_none())
                    && part
                        .groups
                        .values()
                        .all(|g| g.next > part.base && !g.pending.contains(part.base))
                {
                    part.log.pop_front();
                    part.base += 1;
                }
                if part.groups.is_empty() {
                    while part.log.front().is_some_and(|s| s.event.is_none()) {
                        part.log.pop_front();
                        part.base += 1;
                    }
                }
            }
            t.room[partition as usize].notify_waiters();
            Ok(())
        })
    }

    fn heartbeat<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        consumer: &'a str,
        lease: Duration,
    ) -> Fut<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut all = self.0.members.lock().expect("members lock");
            let members = all
                .entry((topic.to_string(), group.to_string()))
                .or_default();
            members.insert(consumer.to_string(), now + lease);
            members.retain(|_, until| *until > now);
            let mut live: Vec<String> = members.keys().cloned().collect();
            live.sort();
            Ok(live)
        })
    }

    fn acquire<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        consumer: &'a str,
        partition: u32,
        lease: Duration,
    ) -> Fut<'a, Result<bool>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut holds = self.0.holds.lock().expect("holds lock");
            let key = (topic.to_string(), group.to_string(), partition);
            match holds.get(&key) {
                Some((holder, until)) if holder != consumer && *until > now => Ok(false),
                _ => {
                    holds.insert(key, (consumer.to_string(), now + lease));
                    Ok(true)
                }
            }
        })
    }

    fn release<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        consumer: &'a str,
        partition: u32,
    ) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            let mut holds = self.0.holds.lock().expect("holds lock");
            let key = (topic.to_string(), group.to_string(), partition);
            if holds.get(&key).is_some_and(|(h, _)| h == consumer) {
                holds.remove(&key);
            }
            Ok(())
        })
    }

    fn backlog<'a>(&'a self, topic: &'a str) -> Fut<'a, Result<u64>> {
        Box::pin(async move {
            let t = self.topic(topic);
            Ok(t.parts
                .iter()
                .map(|p| {
                    let p = p.lock().expect("partition lock");
                    p.log.iter().filter(|s| s.event.is_some()).count() as u64
                })
                .sum())
        })
    }

    fn peek<'a>(&'a self, topic: &'a str, max: usize) -> Fut<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            let t = self.topic(topic);
            let mut out = Vec::new();
            for (i, p) in t.parts.iter().enumerate() {
                let part = p.lock().expect("partition lock");
                let live = part
                    .log
                    .iter()
                    .enumerate()
                    .filter_map(|(j, s)| s.event.as_ref().map(|e| (j, s, e)));
                for (j, s, event) in live.take(max) {
                    out.push(Delivery {
                        event: event.clone(),
                        partition: i as u32,
                        id: id_of(part.base + j as u64),
                        key_hash: s.key_hash,
                        deliveries: 0,
                        published: s.published,
                        malformed: None,
                    });
                }
            }
            Ok(out)
        })
    }
}

/// The id of the event at sequence number `seq`.
fn id_of(seq: u64) -> DeliveryId {
    DeliveryId { ms: 0, seq }
}

/// The sequence number of one of this transport's delivery ids, or an
/// error naming an id it never gives.
fn seq_of(id: &DeliveryId) -> Result<u64> {
    if id.ms != 0 {
        return Err(Error::invalid(format!(
            "delivery id \"{id}\": not this transport's (its ids are 0-SEQ)"
        )));
    }
    Ok(id.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// What can happen to a group's pending deliveries.
    #[derive(Debug, Clone)]
    enum Op {
        /// Deliver the next `skip`-th sequence number (skipped ones were
        /// removed from the log, so never pending).
        Push { skip: u8 },
        /// Acknowledge the i-th pending one (modulo their count), or a
        /// sequence number never delivered.
        Remove { pick: u16, foreign: bool },
        /// Touch the i-th pending one.
        Touch { pick: u16 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3).prop_map(|skip| Op::Push { skip }),
            (any::<u16>(), any::<bool>()).prop_map(|(pick, foreign)| Op::Remove { pick, foreign }),
            any::<u16>().prop_map(|pick| Op::Touch { pick }),
        ]
    }

    proptest! {
        /// The window answers as an ordered map of the same deliveries
        /// would: first, membership, removal, iteration order, and a
        /// lower bound on the oldest `since`.
        #[test]
        fn pendings_behave_as_an_ordered_map(ops in proptest::collection::vec(op(), 0..300)) {
            let t0 = Instant::now();
            let mut window = Pendings::default();
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            let mut since: BTreeMap<u64, Instant> = BTreeMap::new();
            let mut next = 100u64;
            for (step, op) in ops.into_iter().enumerate() {
                let now = t0 + Duration::from_millis(step as u64);
                match op {
                    Op::Push { skip } => {
                        next += u64::from(skip);
                        window.push(next, Pending { consumer: 0, deliveries: step as u32, since: now });
                        model.insert(next, step as u32);
                        since.insert(next, now);
                        next += 1;
                    }
                    Op::Remove { pick, foreign } => {
                        let seq = if foreign || model.is_empty() {
                            next + 7
                        } else {
                            *model.keys().nth(pick as usize % model.len()).unwrap()
                        };
                        let got = window.remove(seq).map(|p| p.deliveries);
                        prop_assert_eq!(got, model.remove(&seq));
                        since.remove(&seq);
                    }
                    Op::Touch { pick } => {
                        if let Some(&seq) = model.keys().nth(pick as usize % model.len().max(1)) {
                            window.get_mut(seq).unwrap().since = now;
                            since.insert(seq, now);
                        }
                    }
                }
                prop_assert_eq!(window.first(), model.keys().next().copied());
                for seq in 95..next + 2 {
                    prop_assert_eq!(window.contains(seq), model.contains_key(&seq));
                }
                let seen: Vec<(u64, u32)> = window.iter_mut().map(|(s, p)| (s, p.deliveries)).collect();
                let want: Vec<(u64, u32)> = model.iter().map(|(s, d)| (*s, *d)).collect();
                prop_assert_eq!(seen, want);
                // `oldest` never later than the true oldest (reclaiming
                // must not skip an expired delivery), and exact once
                // refreshed.
                let truth = since.values().min().copied();
                match (window.oldest, truth) {
                    (_, None) => {}
                    (Some(o), Some(t)) => prop_assert!(o <= t),
                    (None, Some(_)) => prop_assert!(false, "oldest lost"),
                }
                if step % 5 == 0 {
                    window.refresh_oldest();
                    prop_assert_eq!(window.oldest, truth);
                }
            }
        }
    }
}
