//! This consumer's holds on partitions: taking and renewing them (the
//! coordinator), checking one before an event is started (the lanes and
//! batch calls), and giving one up.
//!
//! A partition's events run on its holder alone, so that two consumers
//! never run one key at once. A hold is a lease at the broker; the stage
//! knows a lower bound of when it ends (`until`). Three rules keep the
//! exclusivity:
//!
//! - An event is started only while the hold has at least a quarter of a
//!   lease left, so an event started just before the hold would lapse
//!   (its renewals stalled) is not still running when the next holder
//!   starts its key, unless it takes that long.
//! - A lane that finds the hold lapsed (its coordinator late) renews it
//!   itself, but never takes back a partition the coordinator gave up:
//!   renewing and giving up are serialised per partition.
//! - A partition is given up only once its receiving task has ended and
//!   no event of it is in flight (checked after its bound is cleared, so
//!   an event counted in flight a moment later sees the hold gone and is
//!   left for the next holder instead of run here). The receiving task
//!   is not cut short in a read unless the transport's reads are cancel
//!   safe (see `super::read`): a blocking read cancelled on the client
//!   may still be served by the broker later, after the next holder took
//!   the partition over, and the events it delivered would wait unseen
//!   while their keys' later events run.
//! - Events left unstarted because the hold could not be confirmed put
//!   the partition in `reset`: no event of it starts until its receiving
//!   task is restarted, which first takes over everything pending (those
//!   events included) in order. Otherwise the task would go on reading
//!   newer events, and a key's later events would overtake its earlier
//!   ones.

use super::Shared;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// One partition's hold, as this consumer knows it.
#[derive(Default)]
pub(super) struct Hold {
    /// Whether the coordinator has taken the partition and not given it
    /// up; held across the broker call of every take, renewal and release.
    ours: tokio::sync::Mutex<bool>,
    /// Until when (ms since the stage's `epoch`) the hold is known to
    /// last; 0 once given up.
    until: AtomicU64,
    /// Whether the partition's receiving task runs.
    receiving: AtomicBool,
    /// Events were left unstarted, the hold unconfirmed: nothing more
    /// starts until the receiving task is restarted.
    reset: AtomicBool,
}

/// Marks partition `p`'s receiving task as running until dropped: made
/// before the task is spawned and moved into it, so that it is set from
/// the start and cleared however the task ends (aborted included).
pub(super) struct Receiving {
    s: Arc<Shared>,
    p: u32,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.s.holds[self.p as usize]
            .receiving
            .store(false, Ordering::SeqCst);
    }
}

/// Marks partition `p`'s receiving task started, ending any `reset`.
pub(super) fn receiving(s: &Arc<Shared>, p: u32) -> Receiving {
    let hold = &s.holds[p as usize];
    hold.receiving.store(true, Ordering::SeqCst);
    hold.reset.store(false, Ordering::SeqCst);
    Receiving { s: s.clone(), p }
}

/// Whether an event (or a batch) of partition `p` may start now: the
/// stage is not stopping and the hold is confirmed. When the hold is not,
/// the caller leaves its events unstarted and the partition is marked for
/// a restart (see the module's notes).
pub(super) async fn may_start(s: &Shared, p: u32) -> bool {
    if super::stopping(s) {
        return false;
    }
    if confirm(s, p).await {
        return true;
    }
    left_unstarted(s, p);
    false
}

/// Records that events of partition `p` were left unstarted because its
/// hold could not be confirmed (see the module's notes).
fn left_unstarted(s: &Shared, p: u32) {
    s.holds[p as usize].reset.store(true, Ordering::SeqCst);
}

/// Whether partition `p`'s receiving task must be restarted (see
/// `left_unstarted`).
pub(super) fn needs_restart(s: &Shared, p: u32) -> bool {
    s.holds[p as usize].reset.load(Ordering::SeqCst)
}

/// Takes or renews this consumer's hold on partition `p` (the
/// coordinator): whether it holds it.
pub(super) async fn take(s: &Shared, p: u32) -> bool {
    let hold = &s.holds[p as usize];
    let mut ours = hold.ours.lock().await;
    let held = acquire(s, p).await;
    *ours = held;
    held
}

/// Renews the hold on partition `p` if the coordinator still has it:
/// whether it holds it now. For a lane whose coordinator is late; never
/// takes a partition back after it was given up.
async fn renew_if_ours(s: &Shared, p: u32) -> bool {
    let hold = &s.holds[p as usize];
    let mut ours = hold.ours.lock().await;
    if !*ours {
        return false;
    }
    if lasts(s, p) {
        // Renewed by another lane while this one waited for the lock.
        return true;
    }
    *ours = acquire(s, p).await;
    *ours
}

/// One broker call taking or renewing the hold; on success, the hold is
/// known to last until `until`, counted from before the call (the
/// broker's lease can only end later). Called under `ours`.
async fn acquire(s: &Shared, p: u32) -> bool {
    let asked = s.epoch.elapsed();
    let held = s
        .transport
        .acquire(&s.cfg.topic, s.cfg.group(), &s.cfg.consumer, p, s.cfg.lease)
        .await
        .unwrap_or(false);
    if held {
        // A tenth of the lease spare, for the broker's clock running a
        // little fast against this one.
        let until = asked + s.cfg.lease - s.cfg.lease / 10;
        s.holds[p as usize]
            .until
            .store(until.as_millis() as u64, Ordering::SeqCst);
    }
    held
}

/// Whether an event of partition `p` may start now: the hold is known to
/// last at least a quarter of a lease more, or was renewed just now. A
/// renewal that succeeded but answered too late to count is tried again
/// (twice): the hold is there, the broker was slow.
async fn confirm(s: &Shared, p: u32) -> bool {
    for _ in 0..3 {
        if needs_restart(s, p) {
            return false;
        }
        if lasts(s, p) {
            return true;
        }
        if !renew_if_ours(s, p).await {
            return false;
        }
    }
    lasts(s, p)
}

/// Whether the hold on `p` is known to last at least a quarter of a
/// lease more: the time an event may take past a stalled renewal before
/// the next holder can start its key.
fn lasts(s: &Shared, p: u32) -> bool {
    let until = s.holds[p as usize].until.load(Ordering::SeqCst);
    let now = s.epoch.elapsed() + s.cfg.lease / 4;
    (now.as_millis() as u64) < until
}

/// What `give_up` did.
#[derive(Debug, PartialEq)]
pub(super) enum GiveUp {
    /// Released at the broker (or known lost): the next holder may take
    /// it.
    Released,
    /// Its receiving task still reads, or events of it are still in
    /// flight: the hold was renewed for them, try again later.
    Busy,
}

/// Gives up partition `p` once its receiving task has ended and none of
/// its events is in flight; until then keeps the hold renewed, so that
/// the next holder cannot start the same keys while they finish.
pub(super) async fn give_up(s: &Shared, p: u32) -> GiveUp {
    let hold = &s.holds[p as usize];
    let mut ours = hold.ours.lock().await;
    // Cleared first, counted second: an event counted in flight after the
    // count below reads the cleared bound (both sequentially consistent)
    // and is not started.
    hold.until.store(0, Ordering::SeqCst);
    if hold.receiving.load(Ordering::SeqCst)
        || s.part_in_flight[p as usize].load(Ordering::SeqCst) > 0
    {
        *ours = *ours && acquire(s, p).await;
        return GiveUp::Busy;
    }
    *ours = false;
    // Unreleased (the broker away), it lapses within a lease: it is not
    // renewed any more.
    let _ = s
        .transport
        .release(&s.cfg.topic, s.cfg.group(), &s.cfg.consumer, p)
        .await;
    GiveUp::Released
}

/// Gives up partition `p` at once (a stopped stage, whose handlers have
/// all ended).
pub(super) async fn release_now(s: &Shared, p: u32) {
    let hold = &s.holds[p as usize];
    let mut ours = hold.ours.lock().await;
    hold.until.store(0, Ordering::SeqCst);
    *ours = false;
    let _ = s
        .transport
        .release(&s.cfg.topic, s.cfg.group(), &s.cfg.consumer, p)
        .await;
}

/// Renews, while a stopping stage drains, the holds of the partitions
/// still reading or with events in flight, once they have less than a
/// quarter of a lease left.
pub(super) async fn renew_busy(s: &Shared, held: &[u32]) {
    for &p in held {
        let hold = &s.holds[p as usize];
        if hold.receiving.load(Ordering::SeqCst)
            || s.part_in_flight[p as usize].load(Ordering::SeqCst) > 0
        {
            renew_if_ours(s, p).await;
        }
    }
}
