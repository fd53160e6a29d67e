//! A small log-bucketed latency histogram that forgets: two windows, the
//! current one and the one before it, rotated every `period`. Hedging asks it
//! for a percentile of *recent* latency, so a leaf that was slow an hour ago
//! is not hedged on that basis today.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Buckets per power of two: four keeps the error of a reported percentile
/// under 19% while the whole histogram stays a few hundred bytes.
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;
/// Octaves of microseconds covered: 2^37 µs is about 38 hours; longer
/// latencies land in the last bucket.
const OCTAVES: u64 = 37;
/// Bucket 0 holds latencies under one microsecond.
pub(crate) const BUCKETS: usize = (1 + OCTAVES * SUB) as usize;

fn bucket_of(d: Duration) -> usize {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    if us == 0 {
        return 0;
    }
    let octave = u64::from(63 - us.leading_zeros());
    let frac = if octave >= u64::from(SUB_BITS) {
        (us >> (octave - u64::from(SUB_BITS))) & (SUB - 1)
    } else {
        (us << (u64::from(SUB_BITS) - octave)) & (SUB - 1)
    };
    let idx = 1 + octave * SUB + frac;
    (idx as usize).min(BUCKETS - 1)
}

/// The largest latency a bucket can hold, so a percentile read from buckets
/// never under-states the true one (an early hedge costs load; a late one
/// only costs some of the gain).
fn upper_bound(idx: usize) -> Duration {
    if idx == 0 {
        return Duration::from_micros(1);
    }
    let i = (idx - 1) as u64;
    let octave = i / SUB;
    let frac = i % SUB;
    let upper = ((SUB + frac + 1) << octave).div_ceil(SUB);
    Duration::from_micros(upper)
}

/// A point-in-time copy of a latency histogram (both windows merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    counts: Vec<u64>,
}

impl HistogramSnapshot {
    /// How many latencies were recorded in the windows this covers.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (`0 < q <= 1`, e.g. `0.99`) as the upper edge of its
    /// bucket, or `None` when nothing was recorded or `q` is out of range.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        percentile_of(self.counts.iter().copied(), q)
    }
}

/// Takes the bucket counts as an iterator so the hot path (a percentile on
/// every leaf call) can merge the two windows without allocating.
fn percentile_of(counts: impl Iterator<Item = u64> + Clone, q: f64) -> Option<Duration> {
    if !(q > 0.0 && q <= 1.0) {
        return None;
    }
    let total: u64 = counts.clone().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (idx, c) in counts.enumerate() {
        seen += c;
        if seen >= rank {
            return Some(upper_bound(idx));
        }
    }
    Some(upper_bound(BUCKETS - 1))
}

struct Windows {
    current: Vec<u64>,
    previous: Vec<u64>,
    started: Instant,
}

/// Latency histogram over the last one to two `period`s.
pub(crate) struct RotatingHistogram {
    period: Duration,
    windows: Mutex<Windows>,
}

impl RotatingHistogram {
    pub(crate) fn new(period: Duration) -> Self {
        RotatingHistogram {
            period,
            windows: Mutex::new(Windows {
                current: vec![0; BUCKETS],
                previous: vec![0; BUCKETS],
                started: Instant::now(),
            }),
        }
    }

    fn rotate(&self, w: &mut Windows, now: Instant) {
        let age = now.saturating_duration_since(w.started);
        if age < self.period {
            return;
        }
        if age >= self.period * 2 {
            // Idle for two whole periods: everything held is stale.
            w.previous.iter_mut().for_each(|c| *c = 0);
        } else {
            std::mem::swap(&mut w.previous, &mut w.current);
        }
        w.current.iter_mut().for_each(|c| *c = 0);
        w.started = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        // A panic while holding this lock cannot leave counts inconsistent
        // in a way that matters, so poisoning is ignored.
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record(&self, d: Duration) {
        let mut w = self.lock();
        self.rotate(&mut w, Instant::now());
        w.current[bucket_of(d)] += 1;
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut w = self.lock();
        self.rotate(&mut w, Instant::now());
        let counts = w
            .current
            .iter()
            .zip(&w.previous)
            .map(|(a, b)| a + b)
            .collect();
        HistogramSnapshot { counts }
    }

    /// The `q` quantile of recent latency, once at least `min_samples` are
    /// held (fewer give a percentile too noisy to hedge on).
    pub(crate) fn percentile(&self, q: f64, min_samples: u64) -> Option<Duration> {
        let mut w = self.lock();
        self.rotate(&mut w, Instant::now());
        let merged = w.current.iter().zip(&w.previous).map(|(a, b)| a + b);
        if merged.clone().sum::<u64>() < min_samples.max(1) {
            return None;
        }
        percentile_of(merged, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_contain_their_values() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let us = x % 50_000_000;
            let d = Duration::from_micros(us);
            let b = bucket_of(d);
            assert!(upper_bound(b) >= d, "{us}us in bucket {b}");
            if b > 1 {
                assert!(upper_bound(b - 1) <= d, "{us}us above bucket {}", b - 1);
            }
            // Bounded relative error keeps percentiles useful.
            assert!(upper_bound(b).as_micros() as f64 <= (us as f64) * 1.25 + 2.0);
        }
    }

    #[tokio::test]
    async fn percentile_reads_the_tail() {
        let h = RotatingHistogram::new(Duration::from_secs(60));
        for _ in 0..95 {
            h.record(Duration::from_millis(2));
        }
        for _ in 0..5 {
            h.record(Duration::from_millis(100));
        }
        let p50 = h.percentile(0.5, 10).unwrap();
        let p99 = h.percentile(0.99, 10).unwrap();
        assert!(p50 >= Duration::from_millis(2) && p50 < Duration::from_millis(3));
        assert!(p99 >= Duration::from_millis(100) && p99 < Duration::from_millis(125));
        assert_eq!(h.percentile(0.5, 1000), None);
    }

    #[tokio::test]
    async fn old_windows_age_out() {
        let h = RotatingHistogram::new(Duration::from_millis(20));
        h.record(Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(25)).await;
        h.record(Duration::from_millis(1));
        // One rotation: the old sample is still in the previous window.
        assert_eq!(h.snapshot().count(), 2);
        tokio::time::sleep(Duration::from_millis(45)).await;
        assert_eq!(h.snapshot().count(), 0);
    }
}
