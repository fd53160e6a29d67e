//! Replica choice: power of two choices over a C3-style score.
//!
//! Each replica keeps an EWMA of its observed latency and a count of calls
//! outstanding from this process. The score is
//!
//! ```text
//! score = ewma_latency * (1 + outstanding)^3
//! ```
//!
//! and of two replicas drawn at random the lower score wins. The cube is
//! C3's (Suresh et al., NSDI '15): a linear queue term lets a replica that
//! was fast a moment ago absorb a burst and become the slow one (herding);
//! the cubic term makes a growing queue outweigh a small latency edge
//! quickly. Drawing two instead of scanning all also avoids herding, because
//! no single replica is everyone's choice (Mitzenmacher).
//!
//! A replica never observed scores 0, so each one is tried early. Estimates
//! decay (halve every `half_life` without a refresh) so none is shunned for
//! good, and a failure sets the estimate to twice the slowest peer's.

use super::{CallFuture, Replica};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Marks "no sample yet" in the EWMA cell (not a valid f64 bit pattern we
/// would ever store: it is a NaN).
const NO_SAMPLE: u64 = u64::MAX;

/// What replica choice knows of one replica: a decaying latency estimate
/// and the calls outstanding on it. The scatter engine keeps one per leaf
/// replica; the cache proxy one per backend server.
pub(crate) struct Score {
    /// f64 microseconds, as bits. Updates race (load, mix, store); a lost
    /// update only drops one sample from an average, which is cheaper than
    /// a lock on every call.
    ewma_us: AtomicU64,
    /// When the estimate was last refreshed, in µs since `born`.
    updated_us: AtomicU64,
    born: Instant,
    half_life: Duration,
    outstanding: AtomicUsize,
    calls: AtomicU64,
}

/// Weight of a new latency sample in the estimate.
pub(crate) const ALPHA: f64 = 0.3;

impl Score {
    pub(crate) fn new(half_life: Duration) -> Self {
        Score {
            ewma_us: AtomicU64::new(NO_SAMPLE),
            updated_us: AtomicU64::new(0),
            born: Instant::now(),
            half_life,
            outstanding: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
        }
    }

    pub(crate) fn ewma(&self) -> Option<Duration> {
        let bits = self.ewma_us.load(Ordering::Relaxed);
        (bits != NO_SAMPLE).then(|| Duration::from_secs_f64(self.ewma_us() / 1e6))
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The estimate, halved for every `half_life` since it was refreshed.
    /// Without the decay a replica that was slow or failing once would
    /// lose every draw and never be measured again; with it, it is tried
    /// again after a while and its real latency replaces the old verdict.
    pub(crate) fn ewma_us(&self) -> f64 {
        let bits = self.ewma_us.load(Ordering::Relaxed);
        if bits == NO_SAMPLE {
            return 0.0;
        }
        let idle = self
            .now_us()
            .saturating_sub(self.updated_us.load(Ordering::Relaxed));
        let halvings = idle as f64 / (self.half_life.as_secs_f64() * 1e6).max(1.0);
        f64::from_bits(bits) * 0.5f64.powf(halvings)
    }

    pub(crate) fn score(&self) -> f64 {
        let q = 1.0 + self.outstanding() as f64;
        self.ewma_us() * q * q * q
    }

    fn store(&self, us: f64) {
        self.ewma_us.store(us.to_bits(), Ordering::Relaxed);
        self.updated_us.store(self.now_us(), Ordering::Relaxed);
    }

    fn observe(&self, sample_us: f64, alpha: f64) {
        let next = if self.ewma_us.load(Ordering::Relaxed) == NO_SAMPLE {
            sample_us
        } else {
            alpha * sample_us + (1.0 - alpha) * self.ewma_us()
        };
        self.store(next);
    }

    /// A call starts.
    pub(crate) fn begin(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// A call begun with [`Score::begin`] answered after `took`.
    pub(crate) fn succeeded(&self, took: Duration) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.observe(took.as_secs_f64() * 1e6, ALPHA);
    }

    /// A call begun with [`Score::begin`] failed after `took`. A replica
    /// that fails fast must not attract traffic by looking quick, so its
    /// estimate jumps (no averaging) to at least twice its own and twice
    /// `peer_worst_us`, the slowest estimate among its peers: it loses
    /// every draw until the decay brings it back.
    pub(crate) fn failed(&self, took: Duration, peer_worst_us: f64) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.penalise(took, peer_worst_us);
    }

    /// A call begun with [`Score::begin`] that nobody waits for any more:
    /// the time it ran is a lower bound on its latency.
    pub(crate) fn abandoned(&self, took: Duration) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        let sample = (took.as_secs_f64() * 1e6).max(self.ewma_us());
        self.observe(sample, ALPHA);
    }

    fn penalise(&self, took: Duration, peer_worst_us: f64) {
        let elapsed = took.as_secs_f64() * 1e6;
        // A failure with no estimate anywhere still costs: 1 ms.
        let penalty = 2.0 * elapsed.max(self.ewma_us()).max(peer_worst_us).max(1_000.0);
        self.store(penalty);
    }
}

/// One replica with the state replica choice needs.
pub(crate) struct Slot<Req, Resp> {
    pub(crate) replica: Arc<dyn Replica<Req, Resp>>,
    pub(crate) score: Score,
}

impl<Req, Resp> Slot<Req, Resp> {
    pub(crate) fn new(replica: Arc<dyn Replica<Req, Resp>>, half_life: Duration) -> Self {
        Slot {
            replica,
            score: Score::new(half_life),
        }
    }

    pub(crate) fn ewma(&self) -> Option<Duration> {
        self.score.ewma()
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.score.outstanding()
    }

    pub(crate) fn calls(&self) -> u64 {
        self.score.calls()
    }

    pub(crate) fn ewma_us(&self) -> f64 {
        self.score.ewma_us()
    }

    pub(crate) fn score(&self) -> f64 {
        self.score.score()
    }

    #[cfg(test)]
    fn store(&self, us: f64) {
        self.score.store(us);
    }
}

/// A call in flight on one replica. Dropping it (the call was cancelled: a
/// hedge won, or the deadline passed) still tells the replica's statistics
/// something, which is what keeps a slow replica from looking fast just
/// because its calls never finish.
pub(crate) struct InFlight<'a, Req, Resp> {
    slot: &'a Slot<Req, Resp>,
    started: Instant,
    alpha: f64,
    done: bool,
}

impl<'a, Req, Resp> InFlight<'a, Req, Resp> {
    pub(crate) fn start(
        slot: &'a Slot<Req, Resp>,
        req: &Req,
        alpha: f64,
    ) -> (Self, CallFuture<Resp>) {
        slot.score.begin();
        let guard = InFlight {
            slot,
            started: Instant::now(),
            alpha,
            done: false,
        };
        (guard, slot.replica.call(req))
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The call answered.
    pub(crate) fn succeeded(mut self) {
        self.slot
            .score
            .observe(self.elapsed().as_secs_f64() * 1e6, self.alpha);
        self.done = true;
    }

    /// The call failed. A replica that fails fast must not attract traffic
    /// by looking quick, so its estimate jumps (no averaging) to at least
    /// twice its own and twice `peer_worst_us`, the slowest estimate among
    /// its peers: it loses every draw until the decay brings it back.
    pub(crate) fn failed(mut self, peer_worst_us: f64) {
        self.slot.score.penalise(self.elapsed(), peer_worst_us);
        self.done = true;
    }
}

impl<Req, Resp> Drop for InFlight<'_, Req, Resp> {
    fn drop(&mut self) {
        self.slot.score.outstanding.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            // Cancelled: the time it ran is a lower bound on its latency.
            let sample = (self.elapsed().as_secs_f64() * 1e6).max(self.slot.ewma_us());
            self.slot.score.observe(sample, self.alpha);
        }
    }
}

/// A lock-free pseudo-random source (splitmix64 over a shared counter):
/// replica choice needs spread, not cryptographic quality.
pub(crate) struct Rng(AtomicU64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(AtomicU64::new(seed))
    }

    pub(crate) fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The slowest estimate among `slots`, in µs (0 when none is known).
pub(crate) fn worst_us<Req, Resp>(slots: &[Slot<Req, Resp>]) -> f64 {
    slots.iter().map(Slot::ewma_us).fold(0.0, f64::max)
}

/// Power of two choices among the slots not in `exclude`.
pub(crate) fn pick<Req, Resp>(
    slots: &[Slot<Req, Resp>],
    exclude: &[usize],
    rng: &Rng,
) -> Option<usize> {
    let candidates: Vec<usize> = (0..slots.len()).filter(|i| !exclude.contains(i)).collect();
    p2c(&candidates, |i| slots[i].score(), rng)
}

/// Power of two choices: of two candidates drawn at random, the one with
/// the lower score (see [`Score::score`]).
pub(crate) fn p2c(candidates: &[usize], score: impl Fn(usize) -> f64, rng: &Rng) -> Option<usize> {
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => {
            let a = rng.below(n);
            let mut b = rng.below(n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (candidates[a], candidates[b]);
            Some(if score(b) < score(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;

    fn slots(n: usize, half_life: Duration) -> Vec<Slot<(), ()>> {
        (0..n)
            .map(|_| {
                let r = |_: &()| -> CallFuture<()> { Box::pin(async { Result::Ok(()) }) };
                Slot::new(Arc::new(r) as Arc<dyn Replica<(), ()>>, half_life)
            })
            .collect()
    }

    #[tokio::test]
    async fn pick_honours_exclusions_and_prefers_the_lower_score() {
        let s = slots(4, Duration::from_secs(60));
        let rng = Rng::new(7);
        for _ in 0..200 {
            let got = pick(&s, &[1, 3], &rng).unwrap();
            assert!(got == 0 || got == 2);
        }
        assert_eq!(pick(&s, &[0, 1, 2, 3], &rng), None);
        assert_eq!(pick(&s, &[0, 1, 2], &rng), Some(3));
        s[0].store(5_000.0);
        // Of two, the lower score always wins: slot 0 never does.
        for _ in 0..200 {
            assert_eq!(pick(&s, &[2, 3], &rng), Some(1));
        }
    }

    #[tokio::test]
    async fn outstanding_calls_weigh_cubically() {
        let s = slots(2, Duration::from_secs(60));
        s[0].store(1_000.0);
        s[1].store(3_000.0);
        assert!(s[0].score() < s[1].score());
        let (g1, _f1) = InFlight::start(&s[0], &(), 0.3);
        // 1000 * 2^3 = 8000 > 3000: one call outstanding tips the balance.
        assert!(s[0].score() > s[1].score());
        drop(g1);
        assert_eq!(s[0].outstanding(), 0);
    }

    #[tokio::test]
    async fn a_failure_makes_a_fast_replica_the_worst_and_decay_forgives_it() {
        let s = slots(2, Duration::from_millis(20));
        s[1].store(4_000.0);
        let (g, _f) = InFlight::start(&s[0], &(), 0.3);
        g.failed(worst_us(&s));
        assert!(s[0].ewma_us() > 7_000.0, "{}", s[0].ewma_us());
        assert!(s[0].score() > s[1].score());
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Both decayed by the same factor; refresh one and the other is
        // back below it.
        s[1].store(4_000.0);
        assert!(s[0].ewma_us() < 4_000.0, "{}", s[0].ewma_us());
    }
}
