//! A stage: consumes a topic as one consumer of a group, runs each event
//! through a handler, emits what the handler returns to the reply topic,
//! and only then acknowledges the event (at-least-once end to end).
//!
//! - **Per-key order.** Events of one key ([`Event::key`]) run one at a
//!   time, in order, in a lane of their own; different keys run in
//!   parallel, up to `concurrency` at once. A failing event parks only its
//!   own lane (per-key quarantine) while the other keys flow.
//! - **Attempts.** A failure is retried in place after an exponential
//!   backoff; the delivery counter (raised by the transport when a crashed
//!   consumer's events are reclaimed) counts toward `max_attempts`. After
//!   the last attempt, or at once for a [`Permanent`](super::Permanent)
//!   error, the event goes to the dead-letter topic with its error and
//!   attempt history, and the lane moves on.
//! - **Maximum age.** An event older than `max_age` is dead-lettered
//!   unhandled, as expired.
//! - **Bounded.** At most `max_in_flight` events are received and not yet
//!   finished; the stage receives more only as they finish.
//! - **Shutdown** stops receiving, lets handlers in progress finish (within
//!   the drain limit), and leaves what was not finished unacknowledged, to
//!   be delivered again: a crash or a stop means redelivery, never loss.

use super::batch::{bisect, BatchHandler, BatchSettings};
use super::filter::Filter;
use super::layers::{is_permanent, BoxError, Handler};
use super::transport::{Delivery, DeliveryId, Receive, Transport};
use super::Event;
use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt;

/// Extension attributes a dead-lettered event carries (CloudEvents
/// extension names: lowercase letters and digits).
pub mod dead_letter_attr {
    /// The topic the event was consumed from (where `redrive` sends it).
    pub const TOPIC: &str = "dlqtopic";
    /// The stage that gave up on it.
    pub const STAGE: &str = "dlqstage";
    /// That stage's consumer group: a redriven event goes to it alone.
    pub const GROUP: &str = "dlqgroup";
    /// On a redriven event: the one consumer group that is to handle it
    /// (the others, which handled it the first time, skip it).
    pub const REDRIVE_FOR: &str = "redrivefor";
    /// Attempts made.
    pub const ATTEMPTS: &str = "dlqattempts";
    /// The last error.
    pub const ERROR: &str = "dlqerror";
    /// Every attempt's error, as a JSON array of strings.
    pub const HISTORY: &str = "dlqhistory";
    /// Why: `failed`, `permanent`, `expired` or `malformed`.
    pub const REASON: &str = "dlqreason";
}

/// How a stage consumes its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct StageConfig {
    /// The stage's name (and its consumer group's, unless `group` is set).
    pub name: String,
    /// The topic it consumes.
    pub topic: String,
    /// Its consumer group: stages in one group share the events; each
    /// group gets every event (fan-out).
    pub group: Option<String>,
    /// This consumer's name in the group.
    pub consumer: String,
    /// Which events it handles; the others are acknowledged and skipped.
    pub filter: Filter,
    /// Where the handler's events go; `None`: a handler that returns
    /// events is an error.
    pub reply_topic: Option<String>,
    /// Where events go after their last attempt (default `TOPIC.dlq`).
    pub dead_letter: Option<String>,
    /// Attempts in all before dead-lettering.
    pub max_attempts: u32,
    /// The backoff before the second attempt, doubling up to `max_backoff`.
    pub min_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// Events older than this are dead-lettered unhandled.
    pub max_age: Option<Duration>,
    /// Keys (or, unordered, events) handled at once.
    pub concurrency: usize,
    /// Per-key order (`false`: every event in parallel, up to
    /// `concurrency`).
    pub ordered: bool,
    /// Events received and not yet finished, at most.
    pub max_in_flight: usize,
    /// A delivery unacknowledged this long may be reclaimed by another
    /// consumer; the stage renews it while it works on the event.
    pub visibility: Duration,
    /// How long a consumer's hold on a partition lasts unless renewed
    /// (every third of it): a consumer that dies gives its partitions up to
    /// the group's others within this.
    pub lease: Duration,
}

impl StageConfig {
    /// A stage named `name` consuming `topic`, with the defaults: 5
    /// attempts, backoff 100 ms to 10 s, 16 keys at once, ordered, 1,024
    /// in flight, visibility 30 s.
    pub fn new(name: impl Into<String>, topic: impl Into<String>) -> StageConfig {
        let name = name.into();
        StageConfig {
            consumer: format!("{name}-{}", std::process::id()),
            name,
            topic: topic.into(),
            group: None,
            filter: Filter::default(),
            reply_topic: None,
            dead_letter: None,
            max_attempts: 5,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_age: None,
            concurrency: 16,
            ordered: true,
            max_in_flight: 1024,
            visibility: Duration::from_secs(30),
            lease: Duration::from_secs(10),
        }
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    /// The dead-letter topic.
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic))
    }

    /// Checks the settings, naming the first bad one and its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::invalid(format!("stage {:?}: {what}", self.name)));
        if self.name.is_empty() {
            return Err(Error::invalid("stage name \"\": must not be empty"));
        }
        if self.topic.is_empty() {
            return bad("topic \"\": must not be empty".into());
        }
        if self.max_attempts == 0 {
            return bad("max_attempts 0: must be at least 1".into());
        }
        if self.concurrency == 0 {
            return bad("concurrency 0: must be at least 1".into());
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight 0: must be at least 1".into());
        }
        if self.visibility < Duration::from_millis(10) {
            return bad(format!(
                "visibility {} ms: must be at least 10 ms",
                self.visibility.as_millis()
            ));
        }
        if self.lease < Duration::from_millis(30) {
            return bad(format!(
                "lease {} ms: must be at least 30 ms",
                self.lease.as_millis()
            ));
        }
        if self.min_backoff > self.max_backoff {
            return bad(format!(
                "min_backoff {} ms is above max_backoff {} ms",
                self.min_backoff.as_millis(),
                self.max_backoff.as_millis()
            ));
        }
        if self.reply_topic.as_deref() == Some(self.topic.as_str()) {
            return bad(format!(
                "reply_topic {:?} is the topic it consumes: a loop",
                self.topic
            ));
        }
        if self.dead_letter_topic() == self.topic {
            return bad(format!(
                "dead_letter {:?} is the topic it consumes: a loop",
                self.topic
            ));
        }
        Ok(())
    }
}

/// A stage's counters.
#[derive(Debug, Default)]
pub struct StageStats {
    /// Events handled and acknowledged.
    pub handled: AtomicU64,
    /// Handler failures (attempts that failed).
    pub failures: AtomicU64,
    /// Events sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Events the filter skipped.
    pub skipped: AtomicU64,
    /// Events emitted to the reply topic.
    pub emitted: AtomicU64,
    /// Deliveries that were redeliveries (a crashed or slow consumer's).
    pub redelivered: AtomicU64,
    /// Received and not yet finished.
    pub in_flight: AtomicU64,
}

/// A running stage. [`Stage::stop`] drains it; [`Stage::abort`] ends it
/// at once, as a crash would; dropping it stops receiving and lets the
/// events in progress finish in the background.
pub struct Stage {
    stop: watch::Sender<bool>,
    coordinator: tokio::task::JoinHandle<Vec<u32>>,
    acker: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

mod batches;
mod holds;

/// What runs events: a handler of one, or a batch handler with its
/// settings and the calls it may have in flight.
enum Work {
    One(Handler<Event, Vec<Event>>),
    Batch {
        handler: BatchHandler,
        settings: BatchSettings,
        calls: Arc<Semaphore>,
    },
}

struct Shared {
    cfg: StageConfig,
    transport: Arc<dyn Transport>,
    work: Work,
    stats: Arc<StageStats>,
    /// Lanes with work: key → events waiting behind the one in progress.
    lanes: Mutex<HashMap<String, VecDeque<Delivery>>>,
    /// Delivery ids received and not finished (a reclaim of our own is
    /// ignored).
    mine: Mutex<HashSet<(u32, DeliveryId)>>,
    workers: Semaphore,
    room: Notify,
    stop: watch::Receiver<bool>,
    /// Every lane task, so that `abort` can end them.
    lanes_running: Mutex<tokio::task::JoinSet<()>>,
    /// Every partition's receiving task, likewise.
    loops_running: Mutex<tokio::task::JoinSet<()>>,
    /// Received and not finished, per partition: a partition given up is
    /// released once its count is 0.
    part_in_flight: Vec<AtomicU64>,
    /// Finished deliveries waiting to be acknowledged, per partition: sent
    /// in batches (one XACK for many), a millisecond after the first.
    acks: Mutex<Vec<Vec<DeliveryId>>>,
    /// Per partition, deliveries acknowledged while a read may have been
    /// in flight, tagged with the reads started by then (see `acked`).
    acked_lately: Vec<Mutex<VecDeque<(u64, DeliveryId)>>>,
    /// Per partition, reads started.
    reads: Vec<AtomicU64>,
    acks_waiting: AtomicU64,
    ack_wake: Notify,
    /// Per partition, a batch stage's events that waited behind a failing
    /// key and go back to the partition's batches first (see `batches`).
    returned: Vec<batches::Returned>,
    /// Per partition, this consumer's hold on it (see `holds`).
    holds: Vec<holds::Hold>,
    epoch: std::time::Instant,
}

impl Stage {
    /// Starts consuming on the current tokio runtime: a coordinator that
    /// keeps this consumer's share of the partitions (rendezvous over the
    /// group's live consumers, each partition held exclusively), one
    /// receiving task per partition held, and a task per lane with work.
    pub fn start(
        transport: Arc<dyn Transport>,
        cfg: StageConfig,
        handler: Handler<Event, Vec<Event>>,
    ) -> Result<Stage> {
        cfg.validate()?;
        Self::run(transport, cfg, Work::One(handler))
    }

    /// Starts a stage whose handler takes batches (see `batch`): each
    /// partition's events are received in batches of up to `settings.max`
    /// and handed to `handler` in one call, at most one event of a key per
    /// call (so per-key order holds as in single mode), then acknowledged
    /// in one call. An event that fails goes to its key's lane, retried on
    /// its own, and the key's later events wait behind it.
    pub fn start_batched(
        transport: Arc<dyn Transport>,
        cfg: StageConfig,
        handler: BatchHandler,
        settings: BatchSettings,
    ) -> Result<Stage> {
        cfg.validate()?;
        settings.validate()?;
        Self::run(
            transport,
            cfg,
            Work::Batch {
                handler,
                calls: Arc::new(Semaphore::new(settings.calls)),
                settings,
            },
        )
    }

    fn run(transport: Arc<dyn Transport>, cfg: StageConfig, work: Work) -> Result<Stage> {
        let (stop, stop_rx) = watch::channel(false);
        let partitions = transport.partitions(&cfg.topic);
        let shared = Arc::new(Shared {
            workers: Semaphore::new(cfg.concurrency),
            cfg,
            transport,
            work,
            stats: Arc::new(StageStats::default()),
            lanes: Mutex::new(HashMap::new()),
            mine: Mutex::new(HashSet::new()),
            room: Notify::new(),
            stop: stop_rx,
            lanes_running: Mutex::new(tokio::task::JoinSet::new()),
            loops_running: Mutex::new(tokio::task::JoinSet::new()),
            part_in_flight: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            acks: Mutex::new(vec![Vec::new(); partitions as usize]),
            acked_lately: (0..partitions).map(|_| Default::default()).collect(),
            reads: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            acks_waiting: AtomicU64::new(0),
            ack_wake: Notify::new(),
            returned: (0..partitions).map(|_| Default::default()).collect(),
            holds: (0..partitions).map(|_| Default::default()).collect(),
            epoch: std::time::Instant::now(),
        });
        let coordinator = tokio::spawn(coordinate(shared.clone()));
        let acker = tokio::spawn(acknowledge(shared.clone()));
        Ok(Stage {
            stop,
            coordinator,
            acker,
            shared,
        })
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.shared.cfg.name
    }

    /// The stage's counters, live.
    pub fn stats(&self) -> Arc<StageStats> {
        self.shared.stats.clone()
    }

    /// Ends the stage at once, as `kill -9` would end its process: handlers
    /// in progress are dropped mid-call and nothing they held is
    /// acknowledged, so it is all delivered again (to the next consumer of
    /// the group, after the visibility timeout).
    pub fn abort(self) {
        let _ = self.stop.send(true);
        self.coordinator.abort();
        // Acknowledgements not yet sent are lost with the "process": those
        // events come back, as after a real crash.
        self.acker.abort();
        self.shared
            .loops_running
            .lock()
            .expect("loops lock")
            .abort_all();
        self.shared
            .lanes_running
            .lock()
            .expect("lanes lock")
            .abort_all();
    }

    /// Stops receiving and waits, at most `drain`, for the events in
    /// progress to finish (keeping their partitions' holds renewed
    /// meanwhile), then gives up its partitions. Handlers still running at
    /// the drain limit are cancelled (their futures dropped), so that once
    /// `stop` returns none of them runs while the next holder starts their
    /// keys; work a handler moved to a thread of its own (as the Python
    /// binding runs a plain function) is not stopped by that, so a drain
    /// longer than such a handler's longest call is what keeps it alone.
    /// What did not finish stays unacknowledged and is delivered again.
    pub async fn stop(self, drain: Duration) {
        let _ = self.stop.send(true);
        let held = self.coordinator.await.unwrap_or_default();
        let s = &self.shared;
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            let loops_done = {
                let mut loops = s.loops_running.lock().expect("loops lock");
                while loops.try_join_next().is_some() {}
                loops.is_empty()
            };
            let now = tokio::time::Instant::now();
            let busy = s.workers.available_permits() < s.cfg.concurrency;
            if (!busy && loops_done) || now >= deadline {
                break;
            }
            holds::renew_busy(s, &held).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Handlers still running at the drain limit are cancelled. The
        // receiving tasks end after the read in progress, if any (see
        // `holds`: one cut short may still deliver at the broker after the
        // next holder took the partition over); only one stuck beyond a
        // read's longest wait is cancelled.
        let mut lanes = std::mem::take(&mut *s.lanes_running.lock().expect("lanes lock"));
        lanes.shutdown().await;
        let linger = match &s.work {
            Work::Batch { settings, .. } => settings.linger,
            Work::One(_) => Duration::ZERO,
        };
        let reads_end = tokio::time::Instant::now() + READ_WAIT + linger + READ_WAIT / 4;
        let mut loops = std::mem::take(&mut *s.loops_running.lock().expect("loops lock"));
        while !loops.is_empty() && tokio::time::Instant::now() < reads_end {
            // Held until the reads end, or the next holder's takeover
            // could come before a read's delivery.
            holds::renew_busy(s, &held).await;
            tokio::select! {
                _ = loops.join_next() => {}
                _ = tokio::time::sleep(s.cfg.lease / 8) => {}
                _ = tokio::time::sleep_until(reads_end) => {}
            }
        }
        loops.shutdown().await;
        let _ = self.acker.await;
        flush_acks(s).await;
        for p in held {
            holds::release_now(s, p).await;
        }
        // Leave the group now (a heartbeat whose lease has already ended),
        // so the others take this consumer's share at once.
        let _ = s
            .transport
            .heartbeat(&s.cfg.topic, s.cfg.group(), &s.cfg.consumer, Duration::ZERO)
            .await;
    }
}

/// How long a read waits for new events. Where reads may not be cut short
/// (see `read`), a receiving task told to stop ends within this (plus a
/// batch's linger).
const READ_WAIT: Duration = Duration::from_millis(200);

/// Keeps this consumer's share of the partitions: heartbeats, computes the
/// share from the live consumers, takes and renews holds, starts a
/// receiving task for each partition held and stops those it no longer
/// should hold (releasing each once its events in progress are done).
/// Returns the partitions held when the stage stops.
async fn coordinate(s: Arc<Shared>) -> Vec<u32> {
    let mut stop = s.stop.clone();
    let group = s.cfg.group().to_string();
    let (topic, me) = (s.cfg.topic.clone(), s.cfg.consumer.clone());
    let mut errors = 0u32;
    while let Err(e) = s.transport.join(&topic, &group).await {
        errors = errors.saturating_add(1);
        eprintln!("shardkit stage {:?}: joining {topic:?}: {e}", s.cfg.name);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50 << errors.min(6))) => {}
            _ = stop.changed() => return Vec::new(),
        }
    }
    let partitions = s.part_in_flight.len() as u32;
    let lease = s.cfg.lease;
    let mut running: HashMap<u32, watch::Sender<bool>> = HashMap::new();
    let mut leaving: HashSet<u32> = HashSet::new();
    loop {
        if stopping(&s) {
            break;
        }
        match s.transport.heartbeat(&topic, &group, &me, lease).await {
            Ok(members) => {
                for p in 0..partitions {
                    let should = super::transport::assign(p, &members) == Some(me.as_str());
                    let have = running.contains_key(&p);
                    // Take (or renew) what should be ours; a partition
                    // still being released by its last holder is taken
                    // on a later round.
                    // A partition whose events were left unstarted is
                    // given up and taken again, its receiving task
                    // restarted (see `holds`).
                    let held = should
                        && !leaving.contains(&p)
                        && !(have && holds::needs_restart(&s, p))
                        && holds::take(&s, p).await;
                    if held && !have {
                        let (tx, rx) = watch::channel(false);
                        running.insert(p, tx);
                        let mut loops = s.loops_running.lock().expect("loops lock");
                        while loops.try_join_next().is_some() {}
                        let live = holds::receiving(&s, p);
                        match s.work {
                            Work::One(_) => loops.spawn(receive_loop(s.clone(), p, rx, live)),
                            Work::Batch { .. } => {
                                loops.spawn(batches::batch_loop(s.clone(), p, rx, live))
                            }
                        };
                    } else if !held && have {
                        // Not ours any more (or the hold was lost): stop
                        // reading it, release it once its events are done.
                        if let Some(tx) = running.remove(&p) {
                            let _ = tx.send(true);
                        }
                        leaving.insert(p);
                    }
                }
                errors = 0;
            }
            Err(e) => {
                errors = errors.saturating_add(1);
                eprintln!("shardkit stage {:?}: heartbeat: {e}", s.cfg.name);
            }
        }
        if !leaving.is_empty() {
            // Acknowledged before released: the next holder takes over
            // only what is really unfinished.
            flush_acks(&s).await;
        }
        let mut released = Vec::new();
        for &p in &leaving {
            if holds::give_up(&s, p).await == holds::GiveUp::Released {
                released.push(p);
            }
        }
        for p in released {
            leaving.remove(&p);
        }
        tokio::select! {
            _ = tokio::time::sleep(lease / 3) => {}
            _ = stop.changed() => {}
        }
    }
    // Stopping: the receiving tasks end on the stage's stop (`stop` waits
    // for them, renewing the holds meanwhile).
    for tx in running.values() {
        let _ = tx.send(true);
    }
    running.into_keys().chain(leaving).collect()
}

/// Whether the stage is stopping: told to, or its `Stage` dropped (the
/// sender gone).
fn stopping(s: &Shared) -> bool {
    *s.stop.borrow() || s.stop.has_changed().is_err()
}

async fn receive_loop(
    s: Arc<Shared>,
    partition: u32,
    mut part_stop: watch::Receiver<bool>,
    _receiving: holds::Receiving,
) {
    let mut stop = s.stop.clone();
    let group = s.cfg.group().to_string();
    let mut errors = 0u32;
    let mut taking_over = true;
    loop {
        if stopping(&s) || *part_stop.borrow() {
            return;
        }
        // Receive only as much as there is room for.
        let room = {
            let used = s.stats.in_flight.load(Ordering::Relaxed) as usize;
            s.cfg.max_in_flight.saturating_sub(used)
        };
        if room == 0 {
            tokio::select! {
                _ = s.room.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        // Taking a partition over, first everything its last holder left
        // unacknowledged, whatever its age, and only then new events: one
        // key's events stay in order across a change of holder.
        let r = Receive {
            topic: &s.cfg.topic,
            group: &group,
            consumer: &s.cfg.consumer,
            partition,
            max: room.min(256),
            wait: if taking_over {
                Duration::from_millis(1)
            } else {
                READ_WAIT
            },
            visibility: s.cfg.visibility,
            take_over: taking_over,
        };
        let Some(got) = read(&s, r, &mut stop, &mut part_stop).await else {
            return;
        };
        let Some(deliveries) = received(&s, got, &mut errors).await else {
            continue;
        };
        let mut left_behind = false;
        for d in deliveries {
            if !s.mine.lock().expect("mine lock").insert((partition, d.id)) {
                // Our own delivery, reclaimed because we are slow with it:
                // it is being handled here already.
                continue;
            }
            if d.deliveries > 1 && acked_lately(&s, partition, d.id) {
                // Reclaimed just before its acknowledgement arrived (looked
                // up after `mine`, which keeps it until it is recorded).
                s.mine.lock().expect("mine lock").remove(&(partition, d.id));
                continue;
            }
            if d.deliveries > 1 {
                s.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                left_behind = true;
            }
            s.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            s.part_in_flight[partition as usize].fetch_add(1, Ordering::SeqCst);
            let redriven_elsewhere = d
                .event
                .extension(dead_letter_attr::REDRIVE_FOR)
                .is_some_and(|g| g != group);
            if redriven_elsewhere || !s.cfg.filter.matches(&d.event) {
                s.stats.skipped.fetch_add(1, Ordering::Relaxed);
                finish(&s, &d, true).await;
                continue;
            }
            if !s.cfg.ordered {
                spawn_lane(&s, None, d);
                continue;
            }
            let key = d.event.key().to_string();
            let mut lanes = s.lanes.lock().expect("lanes lock");
            match lanes.get_mut(&key) {
                Some(q) => q.push_back(d),
                None => {
                    lanes.insert(key.clone(), VecDeque::new());
                    drop(lanes);
                    spawn_lane(&s, Some(key), d);
                }
            }
        }
        if !left_behind {
            taking_over = false;
        }
    }
}

/// One read of a receiving task, or `None` once the stage or the
/// partition is stopping (what the read delivered is then left pending,
/// for the partition's next holder, or this consumer's next run, to take
/// over in order). A read is cut short by a stop only where the transport
/// says a dropped read delivered nothing; elsewhere it lasts its wait
/// (see `holds`: one cut short may still deliver at the broker, after
/// the next holder took the partition over).
async fn read(
    s: &Shared,
    r: Receive<'_>,
    stop: &mut watch::Receiver<bool>,
    part_stop: &mut watch::Receiver<bool>,
) -> Option<Result<Vec<Delivery>>> {
    let partition = r.partition;
    let n = read_starting(s, partition);
    let got = if s.transport.receive_cancel_safe() {
        tokio::select! {
            biased;
            _ = stop.changed() => None,
            _ = part_stop.changed() => None,
            got = s.transport.receive(r) => Some(got),
        }
    } else {
        Some(s.transport.receive(r).await)
    };
    read_done(s, partition, n);
    if stopping(s) || *part_stop.borrow() {
        return None;
    }
    got
}

/// A receive's deliveries, or `None` after a failed one: a broker that is
/// down is logged and tried again, slower each time (up to 3.2 s apart).
async fn received(
    s: &Shared,
    got: Result<Vec<Delivery>>,
    errors: &mut u32,
) -> Option<Vec<Delivery>> {
    match got {
        Ok(d) => {
            *errors = 0;
            Some(d)
        }
        Err(e) => {
            *errors = errors.saturating_add(1);
            eprintln!(
                "shardkit stage {:?}: receive from {:?}: {e}",
                s.cfg.name, s.cfg.topic
            );
            tokio::time::sleep(Duration::from_millis(50 << (*errors).min(6))).await;
            None
        }
    }
}

fn spawn_lane(s: &Arc<Shared>, key: Option<String>, first: Delivery) {
    spawn_lane_after(s, key, first, None);
}

/// Starts a lane whose first event has already failed once with `failed`
/// (in a batch call): it is retried after the backoff, not at once.
fn spawn_lane_after(
    s: &Arc<Shared>,
    key: Option<String>,
    first: Delivery,
    failed: Option<BoxError>,
) {
    let mut running = s.lanes_running.lock().expect("lanes lock");
    // Reap finished lanes, so the set holds only running ones.
    while running.try_join_next().is_some() {}
    running.spawn(lane(s.clone(), key, first, failed));
}

/// Works through one key's events in order (or one event, unordered).
async fn lane(s: Arc<Shared>, key: Option<String>, first: Delivery, failed: Option<BoxError>) {
    let mut failed = failed;
    let mut next = Some(first);
    while let Some(d) = next.take() {
        if !holds::may_start(&s, d.partition).await {
            // Left for redelivery, with the rest of the lane.
            release(&s, &d);
            if let Some(k) = &key {
                let rest = s.lanes.lock().expect("lanes lock").remove(k);
                for d in rest.into_iter().flatten() {
                    release(&s, &d);
                }
            }
            return;
        }
        let permit = s.workers.acquire().await.expect("never closed");
        if !holds::may_start(&s, d.partition).await {
            // Stopped (or the hold unconfirmed) while waiting for a turn:
            // not started; the check above leaves it for redelivery.
            drop(permit);
            next = Some(d);
            continue;
        }
        let done = handle(&s, &d, failed.take()).await;
        drop(permit);
        match done {
            Done::Finished => finish(&s, &d, true).await,
            Done::Left => release(&s, &d),
        }
        if let Some(k) = &key {
            let mut lanes = s.lanes.lock().expect("lanes lock");
            if let Work::Batch { .. } = s.work {
                // A batch stage's lane runs only the event that left the
                // batches; the key's events queued behind it go back to
                // the front of the partition's batches, in order (moved
                // under the lanes lock, so no later event of the key
                // overtakes them).
                let rest = lanes.remove(k).unwrap_or_default();
                if !rest.is_empty() {
                    batches::give_back(&s, d.partition, rest);
                }
                continue;
            }
            match lanes.get_mut(k).and_then(VecDeque::pop_front) {
                Some(n) => next = Some(n),
                None => {
                    lanes.remove(k);
                }
            }
        }
    }
}

enum Done {
    /// Handled (and its output emitted), or dead-lettered: acknowledge.
    Finished,
    /// Not finished (shutting down, or the broker refused): leave it
    /// unacknowledged for redelivery.
    Left,
}

/// Runs one delivery to its end: handled, or dead-lettered, or left for
/// redelivery. `failed`: its first attempt already failed so (in a batch
/// call), and the next waits for the backoff.
async fn handle(s: &Shared, d: &Delivery, failed: Option<BoxError>) -> Done {
    let mut attempt = d.deliveries.max(1);
    let mut history: Vec<String> = Vec::new();
    if let Some(why) = &d.malformed {
        s.stats.failures.fetch_add(1, Ordering::Relaxed);
        return dead_letter(s, d, "malformed", 0, std::slice::from_ref(why)).await;
    }
    let mut failed = failed;
    loop {
        if let Some(err) = failed.take() {
            s.stats.failures.fetch_add(1, Ordering::Relaxed);
            history.push(format!("attempt {attempt}: {err}"));
            if is_permanent(err.as_ref()) {
                return dead_letter(s, d, "permanent", attempt, &history).await;
            }
            if attempt >= s.cfg.max_attempts {
                return dead_letter(s, d, "failed", attempt, &history).await;
            }
            // Wait, keeping the delivery ours, then try again.
            let backoff = backoff(&s.cfg, attempt);
            let mut stop = s.stop.clone();
            let r = Receive {
                topic: &s.cfg.topic,
                group: s.cfg.group(),
                consumer: &s.cfg.consumer,
                partition: d.partition,
                max: 0,
                wait: Duration::ZERO,
                visibility: s.cfg.visibility,
                take_over: false,
            };
            let _ = s.transport.touch(r, std::slice::from_ref(&d.id)).await;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|v| *v) => return Done::Left,
            }
            let _ = s.transport.touch(r, std::slice::from_ref(&d.id)).await;
            attempt += 1;
        }
        if let Some(max_age) = s.cfg.max_age {
            let age = SystemTime::now()
                .duration_since(d.published)
                .unwrap_or_default();
            if age > max_age {
                let why = format!(
                    "expired: {} ms old, max_age {} ms",
                    age.as_millis(),
                    max_age.as_millis()
                );
                history.push(why);
                return dead_letter(s, d, "expired", attempt - 1, &history).await;
            }
        }
        let result = match &s.work {
            Work::One(h) => h.clone().oneshot(d.event.clone()).await,
            Work::Batch { handler, .. } => bisect(handler.clone(), vec![d.event.clone()])
                .await
                .pop()
                .unwrap_or_else(|| Err("the batch handler gave no result".into())),
        };
        let err: BoxError = match result {
            Ok(out) => match emit(s, out).await {
                Ok(()) => {
                    s.stats.handled.fetch_add(1, Ordering::Relaxed);
                    return Done::Finished;
                }
                Err(e) => e.into(),
            },
            Err(e) => e,
        };
        failed = Some(err);
    }
}

/// The backoff before attempt `attempt + 1`: doubling from `min_backoff`,
/// at most `max_backoff`, with up to half of it added at random so that
/// lanes failing together do not retry together.
fn backoff(cfg: &StageConfig, attempt: u32) -> Duration {
    let base = cfg
        .min_backoff
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20))
        .min(cfg.max_backoff);
    let jitter = fastrand::u64(0..=base.as_micros() as u64 / 2);
    base + Duration::from_micros(jitter)
}

async fn emit(s: &Shared, out: Vec<Event>) -> Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let Some(topic) = &s.cfg.reply_topic else {
        return Err(Error::invalid(format!(
            "stage {:?}: the handler returned {} event(s) and the stage has no reply_topic",
            s.cfg.name,
            out.len()
        )));
    };
    let n = out.len() as u64;
    s.transport.publish(topic, out).await?;
    s.stats.emitted.fetch_add(n, Ordering::Relaxed);
    Ok(())
}

async fn dead_letter(
    s: &Shared,
    d: &Delivery,
    reason: &str,
    attempts: u32,
    history: &[String],
) -> Done {
    use dead_letter_attr as a;
    let last = history.last().cloned().unwrap_or_default();
    let truncate = |t: &str| t.chars().take(1024).collect::<String>();
    let history = serde_json::to_string(
        &history
            .iter()
            .rev()
            .take(20)
            .rev()
            .map(|h| truncate(h))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    let event = (|| {
        d.event
            .clone()
            .with_extension(a::TOPIC, s.cfg.topic.clone())?
            .with_extension(a::STAGE, s.cfg.name.clone())?
            .with_extension(a::GROUP, s.cfg.group().to_string())?
            .with_extension(a::ATTEMPTS, attempts.to_string())?
            .with_extension(a::REASON, reason)?
            .with_extension(a::ERROR, truncate(&last))?
            .with_extension(a::HISTORY, history)
    })();
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            eprintln!("shardkit stage {:?}: cannot dead-letter: {e}", s.cfg.name);
            return Done::Left;
        }
    };
    match s
        .transport
        .publish(&s.cfg.dead_letter_topic(), vec![event])
        .await
    {
        Ok(()) => {
            s.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            Done::Finished
        }
        // Never acknowledged unless the dead-letter topic has it.
        Err(e) => {
            eprintln!(
                "shardkit stage {:?}: dead-letter topic refused the event: {e}",
                s.cfg.name
            );
            Done::Left
        }
    }
}

/// Acknowledges a finished delivery. It stays among this stage's own
/// (`mine`) until the acknowledgement is sent, so that a reclaim of it
/// meanwhile is not handled a second time.
async fn finish(s: &Shared, d: &Delivery, ack: bool) {
    if !ack {
        release(s, d);
        return;
    }
    let full = {
        let mut acks = s.acks.lock().expect("acks lock");
        let buf = &mut acks[d.partition as usize];
        buf.push(d.id);
        buf.len() >= ACK_BATCH
    };
    if s.acks_waiting.fetch_add(1, Ordering::Relaxed) == 0 || full {
        s.ack_wake.notify_one();
    }
    done_with(s, d.partition, 1);
}

/// Acknowledgements sent in one call at most.
const ACK_BATCH: usize = 256;

/// Sends waiting acknowledgements in batches: a millisecond after the
/// first waits (or at once when a partition has a full batch), until the
/// stage stops.
async fn acknowledge(s: Arc<Shared>) {
    let mut stop = s.stop.clone();
    loop {
        if s.acks_waiting.load(Ordering::Relaxed) == 0 {
            tokio::select! {
                _ = s.ack_wake.notified() => {}
                _ = stop.wait_for(|v| *v) => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        flush_acks(&s).await;
    }
}

async fn flush_acks(s: &Shared) {
    let batches: Vec<(u32, Vec<DeliveryId>)> = {
        let mut acks = s.acks.lock().expect("acks lock");
        acks.iter_mut()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(p, b)| (p as u32, std::mem::take(b)))
            .collect()
    };
    for (p, ids) in batches {
        s.acks_waiting
            .fetch_sub(ids.len() as u64, Ordering::Relaxed);
        for chunk in ids.chunks(ACK_BATCH) {
            if let Err(e) = s.transport.ack(&s.cfg.topic, s.cfg.group(), p, chunk).await {
                // Unacknowledged: they come back, and are handled again.
                eprintln!("shardkit stage {:?}: ack: {e}", s.cfg.name);
            } else {
                acked(s, p, chunk);
            }
            let mut mine = s.mine.lock().expect("mine lock");
            for id in chunk {
                mine.remove(&(p, *id));
            }
        }
    }
}

/// Records deliveries of partition `p` just acknowledged. A read of the
/// partition sent before the acknowledgement reached the broker may
/// still answer with them (reclaimed, as slow), after they left `mine`:
/// they are recognised until every such read has answered (see
/// `read_starting`, `read_done`) instead of handled a second time.
fn acked(s: &Shared, p: u32, ids: &[DeliveryId]) {
    let tag = s.reads[p as usize].load(Ordering::SeqCst);
    s.acked_lately[p as usize]
        .lock()
        .expect("acked lock")
        .extend(ids.iter().map(|id| (tag, *id)));
}

/// Counts a read of partition `p` starting: its number, for `read_done`.
fn read_starting(s: &Shared, p: u32) -> u64 {
    s.reads[p as usize].fetch_add(1, Ordering::SeqCst) + 1
}

/// A read numbered `n` has answered: acknowledgements recorded before it
/// started can no longer come back in a read, and are forgotten.
fn read_done(s: &Shared, p: u32, n: u64) {
    let mut lately = s.acked_lately[p as usize].lock().expect("acked lock");
    while lately.front().is_some_and(|(tag, _)| *tag < n) {
        lately.pop_front();
    }
}

/// Whether a reclaimed delivery was acknowledged lately (see `acked`).
fn acked_lately(s: &Shared, p: u32, id: DeliveryId) -> bool {
    s.acked_lately[p as usize]
        .lock()
        .expect("acked lock")
        .iter()
        .any(|(_, a)| *a == id)
}

/// Forgets a delivery this consumer no longer works on.
fn release(s: &Shared, d: &Delivery) {
    s.mine
        .lock()
        .expect("mine lock")
        .remove(&(d.partition, d.id));
    done_with(s, d.partition, 1);
}

/// Counts `n` deliveries of `partition` no longer in flight, making room
/// for more.
fn done_with(s: &Shared, partition: u32, n: u64) {
    s.stats.in_flight.fetch_sub(n, Ordering::Relaxed);
    if let Some(c) = s.part_in_flight.get(partition as usize) {
        c.fetch_sub(n, Ordering::Relaxed);
    }
    s.room.notify_waiters();
}
