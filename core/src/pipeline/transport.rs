//! The broker-neutral transport a stage runs on: topics split into
//! partitions by event key, consumer groups, deliveries that stay pending
//! until acknowledged, and reclaiming of deliveries a dead consumer left.
//!
//! Every transport keeps the same promises, checked by one conformance
//! suite: an event published is stored before `publish` returns; within a
//! partition, a group receives events in publication order; a delivery not
//! acknowledged within the visibility timeout is delivered again (to any
//! consumer of the group) with its delivery count raised; nothing is
//! dropped unacknowledged.

use super::Event;
use crate::error::Result;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// A transport's future.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One event as a consumer received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The event.
    pub event: Event,
    /// The partition it is in.
    pub partition: u32,
    /// The transport's id for it: what [`Transport::ack`] takes.
    pub id: DeliveryId,
    /// [`key_hash`] of the event's key, which placed it in its partition:
    /// what a batch tells keys apart by, without touching the event.
    pub key_hash: u64,
    /// Deliveries so far, this one included (1: the first): a crashed or
    /// timed-out consumer's deliveries come back with it raised.
    pub deliveries: u32,
    /// When it was published, for a stage's maximum event age.
    pub published: SystemTime,
    /// Set when the stored entry is not a valid event (written by something
    /// else, or damaged): why. `event` then holds its raw bytes as binary
    /// data, and a stage dead-letters it unhandled.
    pub malformed: Option<String>,
}

/// A delivery's id in its transport: a Redis stream entry id `MS-SEQ`, or
/// the in-process transport's sequence number (written `0-SEQ`). Two
/// integers, so that tracking and acknowledging deliveries allocates
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DeliveryId {
    /// Milliseconds (Redis), or 0 (in process).
    pub ms: u64,
    /// The sequence within them.
    pub seq: u64,
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl std::str::FromStr for DeliveryId {
    type Err = crate::error::Error;

    /// Parses `MS-SEQ` (what [`Display`](std::fmt::Display) writes), or
    /// names the text that is not one.
    fn from_str(s: &str) -> Result<DeliveryId> {
        s.split_once('-')
            .and_then(|(ms, seq)| {
                Some(DeliveryId {
                    ms: ms.parse().ok()?,
                    seq: seq.parse().ok()?,
                })
            })
            .ok_or_else(|| {
                crate::error::Error::invalid(format!(
                    "delivery id {s:?}: not MS-SEQ (two integers joined by '-')"
                ))
            })
    }
}

/// What a consumer asks [`Transport::receive`] for.
#[derive(Debug, Clone, Copy)]
pub struct Receive<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The consumer group: each group receives every event once.
    pub group: &'a str,
    /// This consumer's name within the group.
    pub consumer: &'a str,
    /// The partition to read.
    pub partition: u32,
    /// Deliveries at most.
    pub max: usize,
    /// Waits this long for something to arrive before returning empty.
    pub wait: Duration,
    /// A delivery left unacknowledged this long is reclaimed (delivered
    /// again, possibly to another consumer).
    pub visibility: Duration,
    /// Taking the partition over: reclaim every delivery left
    /// unacknowledged, whatever its age and whoever it went to (the caller
    /// holds the partition, so no other consumer works on it, and has none
    /// of it in progress itself: what is pending under its own name was
    /// left by an earlier run), before any new one.
    pub take_over: bool,
}

/// A broker: the in-process one ([`super::memory::Memory`]) or Redis
/// Streams.
pub trait Transport: Send + Sync + 'static {
    /// How many partitions `topic` has.
    fn partitions(&self, topic: &str) -> u32;

    /// Creates consumer group `group` of `topic` if it is new: it will
    /// receive every event still stored and every event published from
    /// now on. (Receiving creates the group too; joining first means no
    /// event published meanwhile is missed.)
    fn join<'a>(&'a self, topic: &'a str, group: &'a str) -> Fut<'a, Result<()>>;

    /// Stores `events` in `topic`, each in the partition of its
    /// [`Event::key`], in order; returns once stored. Waits while the
    /// topic is full (backpressure), never grows without bound.
    fn publish<'a>(&'a self, topic: &'a str, events: Vec<Event>) -> Fut<'a, Result<()>>;

    /// Deliveries for a consumer of a group from one partition: first any
    /// left unacknowledged past the visibility timeout, then new ones in
    /// publication order. Empty after `wait` with nothing to deliver.
    fn receive<'a>(&'a self, r: Receive<'a>) -> Fut<'a, Result<Vec<Delivery>>>;

    /// Whether a `receive` dropped before it answers has delivered
    /// nothing, so that a stopping stage may cut its reads short. False
    /// (the default) where the broker may still serve a read the client
    /// gave up on, as redis does a blocking XREADGROUP.
    fn receive_cancel_safe(&self) -> bool {
        false
    }

    /// Marks deliveries done for `group`: never delivered to it again.
    fn ack<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        partition: u32,
        ids: &'a [DeliveryId],
    ) -> Fut<'a, Result<()>>;

    /// Restarts the visibility timeout of deliveries this consumer still
    /// works on (a handler retrying, a slow batch), so no other consumer
    /// reclaims them meanwhile.
    fn touch<'a>(&'a self, r: Receive<'a>, ids: &'a [DeliveryId]) -> Fut<'a, Result<()>>;

    /// Events stored and not yet acknowledged by every group, or not yet
    /// delivered: what a topic holds. For tests, metrics and `dlq list`.
    fn backlog<'a>(&'a self, topic: &'a str) -> Fut<'a, Result<u64>>;

    /// Says `consumer` of `group` is alive for `lease`, and returns the
    /// group's live consumers, sorted: what partition assignment is
    /// computed from ([`assign`]). A zero lease leaves the group.
    fn heartbeat<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        consumer: &'a str,
        lease: Duration,
    ) -> Fut<'a, Result<Vec<String>>>;

    /// Takes (or renews) `consumer`'s exclusive hold on one partition of
    /// the group for `lease`: whether it holds it now. One consumer at a
    /// time reads a partition, so one key's events are never handled by
    /// two workers at once.
    fn acquire<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        consumer: &'a str,
        partition: u32,
        lease: Duration,
    ) -> Fut<'a, Result<bool>>;

    /// Gives up `consumer`'s hold on a partition (if it has it).
    fn release<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        consumer: &'a str,
        partition: u32,
    ) -> Fut<'a, Result<()>>;

    /// Deletes entries of one partition outright, whoever still needs
    /// them: how `dlq redrive` takes an event out of a dead-letter topic
    /// once it is back in its own.
    fn remove<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        ids: &'a [DeliveryId],
    ) -> Fut<'a, Result<()>>;

    /// The events of `topic`, oldest first, up to `max` per partition,
    /// without delivering them: how `dlq list` and `dlq show` read a
    /// dead-letter topic.
    fn peek<'a>(&'a self, topic: &'a str, max: usize) -> Fut<'a, Result<Vec<Delivery>>>;
}

/// The partition of `key` among `partitions`: jump consistent hash over
/// xxh3, so adding partitions moves the fewest keys. Every transport places
/// keys with it, so an event's partition does not depend on the broker.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    partition_of_hash(key_hash(key), partitions)
}

/// The hash a key is placed by (xxh3), for [`partition_of_hash`] and
/// [`Delivery::key_hash`].
pub fn key_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// [`partition_of`] for a key already hashed with [`key_hash`].
pub fn partition_of_hash(hash: u64, partitions: u32) -> u32 {
    crate::shard::jump_hash(hash, partitions.max(1))
}

/// Which of `members` (sorted, live) should hold `partition`: rendezvous
/// hashing, so a consumer joining or leaving moves only the partitions it
/// takes or gives up, and every consumer computes the same answer from the
/// same member list.
pub fn assign(partition: u32, members: &[String]) -> Option<&str> {
    members
        .iter()
        .max_by_key(|m| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(m.as_bytes());
            h.update(&partition.to_le_bytes());
            h.digest()
        })
        .map(String::as_str)
}
