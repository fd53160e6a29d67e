//! Choosing the number of leaves: a model of gather latency.
//!
//! A gather waits for every one of its `n` leaves, so its latency is the
//! maximum of `n` leaf latencies. With leaf latencies independent and drawn
//! from one distribution `F`, `P(gather <= t) = F(t)^n`: the gather's median
//! sits near a single leaf's `1 - 0.5/n` quantile, which is why wide fan-outs
//! live in the leaves' tail ("The Tail at Scale").
//!
//! Hedging at delay `d` sends a second request to another replica when the
//! first has not answered after `d`, and takes whichever answers first. A
//! leaf's latency becomes `min(X1, d + X2)` with `X1`, `X2` independent draws
//! from `F`, so its survival function is
//! `S_h(t) = S(t) * S(t - d)` for `t > d` (and `S(t)` before), and the
//! gather's distribution is `(1 - S_h(t))^n`. The extra load is the share of
//! leaf calls that send the second request, `P(X1 > d) = S(d)`.
//!
//! The model assumes independence (no shared cause of slowness across leaves
//! or replicas) and that the hedge is not itself cancelled or budgeted; real
//! correlated stalls (GC, a shared switch) make real tails worse than this.
//!
//! # Accuracy
//!
//! Quantiles are found by bisection on `log t` until the bracket is narrower
//! than one part in 10^9, so the answer is exact to that relative precision
//! for the model's own CDF. Every CDF is evaluated through its survival
//! function and `ln_1p`, so `F(t)^n` keeps its precision when `F(t)` is
//! within 1e-12 of 1 (p99.9 of a 1,000-leaf gather needs a leaf survival near
//! 1e-6). The log-normal's `erfc` is Numerical Recipes' Chebyshev fit,
//! relative error below 1.2e-7 everywhere, which moves a quantile by far
//! less than 0.01%. A measured distribution is only as good as its data: the
//! quantiles of a sample set are exact order statistics of that set, and a
//! histogram interpolates linearly within each bucket.

use crate::{Error, Result};
use std::time::Duration;

/// The standard normal's 0.99 quantile: fits a log-normal's sigma from p99.
const Z99: f64 = 2.326_347_874_040_840_8;

/// The shortest latency the quantile search considers, in seconds (1 ns).
/// Below a nanosecond a latency model says nothing useful.
const T_MIN: f64 = 1e-9;

/// The longest latency the quantile search considers, in seconds (about 11.6
/// days). A quantile past this is reported as an error, not a number.
const T_MAX: f64 = 1e6;

/// A distribution of one leaf's latency.
#[derive(Debug, Clone, PartialEq)]
pub enum LeafLatency {
    /// A log-normal: `ln(latency in seconds)` is normal with mean `mu` and
    /// standard deviation `sigma`. Service latencies are skewed right with a
    /// long tail and a hard floor near zero, which a log-normal captures with
    /// two parameters that two measured percentiles determine.
    LogNormal {
        /// Mean of the logarithm of the latency in seconds.
        mu: f64,
        /// Standard deviation of the logarithm (> 0).
        sigma: f64,
    },
    /// Measured samples, in seconds, sorted ascending: the empirical CDF.
    Samples(Vec<f64>),
    /// A measured histogram: bucket upper bounds in seconds (ascending) and
    /// the cumulative share of observations at or below each bound. The
    /// first bucket starts at zero; the CDF is linear inside a bucket.
    Histogram {
        /// Upper bound of each bucket, in seconds, strictly ascending.
        bounds: Vec<f64>,
        /// Cumulative share at each bound; the last is 1.
        cumulative: Vec<f64>,
    },
}

impl LeafLatency {
    /// The log-normal whose median is `p50` and whose 99th percentile is
    /// `p99`: `mu = ln p50`, `sigma = (ln p99 - ln p50) / z(0.99)`.
    ///
    /// Errors when either is zero or `p99 <= p50` (a log-normal's tail is
    /// always above its median).
    pub fn log_normal(p50: Duration, p99: Duration) -> Result<Self> {
        if p50.is_zero() {
            return Err(Error::invalid(format!(
                "leaf p50 must be greater than zero, got {p50:?}"
            )));
        }
        if p99 <= p50 {
            return Err(Error::invalid(format!(
                "leaf p99 ({p99:?}) must be greater than p50 ({p50:?})"
            )));
        }
        let mu = p50.as_secs_f64().ln();
        let sigma = (p99.as_secs_f64().ln() - mu) / Z99;
        Ok(LeafLatency::LogNormal { mu, sigma })
    }

    /// The empirical distribution of measured latencies.
    ///
    /// Errors when there are no samples.
    pub fn from_samples(samples: &[Duration]) -> Result<Self> {
        if samples.is_empty() {
            return Err(Error::invalid(
                "a measured leaf latency distribution needs at least one sample, got none",
            ));
        }
        let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(f64::total_cmp);
        Ok(LeafLatency::Samples(s))
    }

    /// A histogram of measured latencies: `(upper bound, count)` per bucket,
    /// bounds strictly ascending, the first bucket starting at zero.
    ///
    /// Errors when there are no buckets, bounds are not strictly ascending
    /// or the counts sum to zero.
    pub fn from_histogram(buckets: &[(Duration, u64)]) -> Result<Self> {
        if buckets.is_empty() {
            return Err(Error::invalid(
                "a latency histogram needs at least one bucket, got none",
            ));
        }
        let mut bounds = Vec::with_capacity(buckets.len());
        let mut total: u64 = 0;
        for (i, &(bound, count)) in buckets.iter().enumerate() {
            if bounds
                .last()
                .is_some_and(|&prev| bound.as_secs_f64() <= prev)
                || bound.is_zero()
            {
                return Err(Error::invalid(format!(
                    "histogram bucket bounds must be positive and strictly ascending, \
                     bucket {i} has bound {bound:?}"
                )));
            }
            bounds.push(bound.as_secs_f64());
            total = total.checked_add(count).ok_or_else(|| {
                Error::invalid(format!("histogram counts overflow at bucket {i}"))
            })?;
        }
        if total == 0 {
            return Err(Error::invalid("a latency histogram's counts sum to zero"));
        }
        let mut running = 0u64;
        let cumulative = buckets
            .iter()
            .map(|&(_, c)| {
                running += c;
                running as f64 / total as f64
            })
            .collect();
        Ok(LeafLatency::Histogram { bounds, cumulative })
    }

    /// `P(latency > t)` for `t` in seconds.
    pub fn survival(&self, t: f64) -> f64 {
        if t <= 0.0 {
            // No distribution here puts mass at or below zero except samples
            // of exactly zero, which count as at-or-below any t >= 0.
            return match self {
                LeafLatency::Samples(s) if t == 0.0 => {
                    1.0 - s.partition_point(|&x| x <= 0.0) as f64 / s.len() as f64
                }
                _ => 1.0,
            };
        }
        match self {
            LeafLatency::LogNormal { mu, sigma } => {
                0.5 * erfc((t.ln() - mu) / (sigma * std::f64::consts::SQRT_2))
            }
            LeafLatency::Samples(s) => {
                let above = s.len() - s.partition_point(|&x| x <= t);
                above as f64 / s.len() as f64
            }
            LeafLatency::Histogram { bounds, cumulative } => {
                let i = bounds.partition_point(|&b| b < t);
                if i >= bounds.len() {
                    return 0.0;
                }
                let (lo, c_lo) = if i == 0 {
                    (0.0, 0.0)
                } else {
                    (bounds[i - 1], cumulative[i - 1])
                };
                let frac = (t - lo) / (bounds[i] - lo);
                1.0 - (c_lo + frac * (cumulative[i] - c_lo))
            }
        }
    }

    /// `P(latency <= t)` for `t` in seconds.
    pub fn cdf(&self, t: f64) -> f64 {
        1.0 - self.survival(t)
    }

    /// The leaf's own `q`-quantile (`q` in (0, 1)).
    pub fn quantile(&self, q: f64) -> Result<Duration> {
        GatherModel::new(self.clone()).gather_quantile(1, None, q)
    }
}

/// When a hedged request goes out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAt {
    /// At this quantile of the leaf's own latency (e.g. 0.95: Dean and
    /// Barroso's "after the 95th percentile").
    Quantile(f64),
    /// After a fixed delay.
    Delay(Duration),
}

impl Default for HedgeAt {
    fn default() -> Self {
        HedgeAt::Quantile(0.95)
    }
}

/// Predicted gather latency for one fan-out width.
#[derive(Debug, Clone, PartialEq)]
pub struct GatherPrediction {
    /// Number of leaves the gather waits for.
    pub leaves: usize,
    /// Predicted gather latency at each asked-for percentile, without hedging.
    pub unhedged: Vec<Duration>,
    /// The same percentiles with hedging.
    pub hedged: Vec<Duration>,
    /// The hedge delay used.
    pub hedge_delay: Duration,
    /// Expected extra leaf requests from hedging, as a share of leaf calls:
    /// `P(leaf latency > hedge delay)`.
    pub hedge_extra_load: f64,
}

/// Predicts percentiles of gather latency from a per-leaf distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct GatherModel {
    leaf: LeafLatency,
}

impl GatherModel {
    /// A model over this leaf latency distribution.
    pub fn new(leaf: LeafLatency) -> Self {
        GatherModel { leaf }
    }

    /// The leaf distribution.
    pub fn leaf(&self) -> &LeafLatency {
        &self.leaf
    }

    /// The hedge delay `at` describes for this leaf distribution.
    pub fn hedge_delay(&self, at: HedgeAt) -> Result<Duration> {
        match at {
            HedgeAt::Quantile(q) => self.leaf.quantile(q),
            HedgeAt::Delay(d) => Ok(d),
        }
    }

    /// Survival of one leaf, hedged at `hedge` seconds when given.
    fn leaf_survival(&self, t: f64, hedge: Option<f64>) -> f64 {
        let s = self.leaf.survival(t);
        match hedge {
            Some(d) if t > d => s * self.leaf.survival(t - d),
            _ => s,
        }
    }

    /// `P(gather of n leaves <= t)`, hedged after `hedge` when given.
    pub fn gather_cdf(&self, n: usize, hedge: Option<Duration>, t: Duration) -> f64 {
        self.gather_cdf_secs(n, hedge.map(|d| d.as_secs_f64()), t.as_secs_f64())
    }

    fn gather_cdf_secs(&self, n: usize, hedge: Option<f64>, t: f64) -> f64 {
        let s = self.leaf_survival(t, hedge);
        if s >= 1.0 {
            return 0.0;
        }
        // (1 - s)^n through logs: stays exact when s is tiny and n is large.
        (n as f64 * (-s).ln_1p()).exp()
    }

    /// The `q`-quantile (`q` in (0, 1)) of the latency of a gather over `n`
    /// leaves, hedged after `hedge` when given. See the module docs for the
    /// accuracy.
    pub fn gather_quantile(&self, n: usize, hedge: Option<Duration>, q: f64) -> Result<Duration> {
        if n == 0 {
            return Err(Error::invalid("a gather needs at least one leaf, got 0"));
        }
        if !(q > 0.0 && q < 1.0) {
            return Err(Error::invalid(format!(
                "a quantile must be strictly between 0 and 1, got {q}"
            )));
        }
        let hedge = hedge.map(|d| d.as_secs_f64());
        let reached = |t: f64| self.gather_cdf_secs(n, hedge, t) >= q;
        if reached(T_MIN) {
            return Ok(Duration::from_secs_f64(T_MIN));
        }
        if !reached(T_MAX) {
            return Err(Error::invalid(format!(
                "the {q} quantile of a {n}-leaf gather is beyond {T_MAX} s: \
                 the leaf distribution's tail is too heavy to model"
            )));
        }
        // Bisect on log t: latencies span orders of magnitude, and a relative
        // bracket gives the same precision at 100 us as at 10 s.
        let (mut lo, mut hi) = (T_MIN.ln(), T_MAX.ln());
        while hi - lo > 1e-9 {
            let mid = 0.5 * (lo + hi);
            if reached(mid.exp()) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(Duration::from_secs_f64(hi.exp()))
    }

    /// Predicted gather latency for `n` leaves at each percentile (in
    /// (0, 100), e.g. 99.9), with and without hedging at `hedge`.
    pub fn predict(
        &self,
        n: usize,
        percentiles: &[f64],
        hedge: HedgeAt,
    ) -> Result<GatherPrediction> {
        let delay = self.hedge_delay(hedge)?;
        let mut unhedged = Vec::with_capacity(percentiles.len());
        let mut hedged = Vec::with_capacity(percentiles.len());
        for &p in percentiles {
            if !(p > 0.0 && p < 100.0) {
                return Err(Error::invalid(format!(
                    "a percentile must be strictly between 0 and 100, got {p}"
                )));
            }
            unhedged.push(self.gather_quantile(n, None, p / 100.0)?);
            hedged.push(self.gather_quantile(n, Some(delay), p / 100.0)?);
        }
        Ok(GatherPrediction {
            leaves: n,
            unhedged,
            hedged,
            hedge_delay: delay,
            hedge_extra_load: self.leaf.survival(delay.as_secs_f64()),
        })
    }
}

/// The fan-out widths worth tabulating up to `max`: powers of two, then `max`
/// itself when it is not one.
pub fn leaf_counts(max: usize) -> Vec<usize> {
    let mut out: Vec<usize> = std::iter::successors(Some(1usize), |&n| n.checked_mul(2))
        .take_while(|&n| n <= max)
        .collect();
    if max > 0 && out.last() != Some(&max) {
        out.push(max);
    }
    out
}

/// Parses a duration such as `5ms`, `0.5s`, `250us` (also `µs`, `ns`, `m`).
///
/// Errors, naming the text, on a missing or unknown unit, a number that does
/// not parse, or a negative or non-finite value.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "" => {
            return Err(Error::invalid(format!(
                "duration {text:?} has no unit: use ns, us, ms, s or m (e.g. \"5ms\")"
            )))
        }
        other => {
            return Err(Error::invalid(format!(
                "duration {text:?} has unknown unit {other:?}: use ns, us, ms, s or m"
            )))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| Error::invalid(format!("duration {text:?} does not start with a number")))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| Error::invalid(format!("duration {text:?} is out of range")))
}

/// The complementary error function; Numerical Recipes' `erfcc`, fractional
/// error below 1.2e-7 for every x. Relative (not absolute) error matters
/// here: the tail survivals the model raises to large powers are tiny.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Seeded xorshift64*: the same Monte Carlo samples every run.
    use shardkit_testkit::Rng;

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1e3)
    }

    fn model(p50: f64, p99: f64) -> (GatherModel, f64, f64) {
        let leaf = LeafLatency::log_normal(ms(p50), ms(p99)).unwrap();
        let LeafLatency::LogNormal { mu, sigma } = leaf else {
            unreachable!()
        };
        (GatherModel::new(leaf), mu, sigma)
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b
    }

    fn sim_quantile(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * q).ceil() as usize - 1).min(v.len() - 1)]
    }

    #[test]
    fn fitted_log_normal_reproduces_p50_and_p99() {
        for (p50, p99) in [(5.0, 50.0), (0.2, 0.3), (2.0, 20.0), (100.0, 5000.0)] {
            let leaf = LeafLatency::log_normal(ms(p50), ms(p99)).unwrap();
            let got50 = leaf.quantile(0.5).unwrap().as_secs_f64() * 1e3;
            let got99 = leaf.quantile(0.99).unwrap().as_secs_f64() * 1e3;
            assert!(rel(got50, p50) < 1e-5, "p50 {got50} vs {p50}");
            assert!(rel(got99, p99) < 1e-5, "p99 {got99} vs {p99}");
        }
    }

    #[test]
    fn erfc_matches_known_values() {
        // erfc(0) = 1, erfc(1) = 0.157299207..., erfc(3) = 2.20904970e-5,
        // erfc(-1) = 1.842700792...
        for (x, want) in [
            (0.0, 1.0),
            (1.0, 0.157_299_207_050_285_1),
            (3.0, 2.209_049_699_858_544e-5),
            (-1.0, 1.842_700_792_949_715),
            (5.0, 1.537_459_794_428_035e-12),
        ] {
            assert!(
                rel(erfc(x), want) < 2e-7,
                "erfc({x}) = {} want {want}",
                erfc(x)
            );
        }
    }

    #[test]
    fn model_matches_monte_carlo() {
        let (m, mu, sigma) = model(5.0, 50.0);
        let delay = m.hedge_delay(HedgeAt::default()).unwrap().as_secs_f64();
        let mut rng = Rng::new(0x5eed_f00d);
        for (n, gathers) in [(1usize, 200_000usize), (8, 40_000), (64, 8_000)] {
            let mut plain = Vec::with_capacity(gathers);
            let mut hedged = Vec::with_capacity(gathers);
            for _ in 0..gathers {
                let (mut worst, mut worst_h) = (0.0f64, 0.0f64);
                for _ in 0..n {
                    let x1 = rng.log_normal(mu, sigma);
                    let x2 = delay + rng.log_normal(mu, sigma);
                    worst = worst.max(x1);
                    worst_h = worst_h.max(x1.min(x2));
                }
                plain.push(worst);
                hedged.push(worst_h);
            }
            for (q, tol) in [(0.5, 0.02), (0.99, 0.05)] {
                let sim = sim_quantile(plain.clone(), q);
                let sim_h = sim_quantile(hedged.clone(), q);
                let pred = m.gather_quantile(n, None, q).unwrap().as_secs_f64();
                let pred_h = m
                    .gather_quantile(n, Some(Duration::from_secs_f64(delay)), q)
                    .unwrap()
                    .as_secs_f64();
                assert!(rel(pred, sim) < tol, "n={n} q={q}: model {pred} sim {sim}");
                assert!(
                    rel(pred_h, sim_h) < tol,
                    "n={n} q={q} hedged: model {pred_h} sim {sim_h}"
                );
            }
        }
    }

    #[test]
    fn hedging_never_increases_latency() {
        let mut rng = Rng::new(42);
        for _ in 0..200 {
            let p50 = 0.1 + rng.uniform() * 50.0;
            let p99 = p50 * (1.01 + rng.uniform() * 30.0);
            let (m, _, _) = model(p50, p99);
            let n = 1 + (rng.next_u64() % 500) as usize;
            let q = 0.001 + rng.uniform() * 0.998;
            let d = ms(rng.uniform() * p99 * 2.0);
            let plain = m.gather_quantile(n, None, q).unwrap();
            let hedged = m.gather_quantile(n, Some(d), q).unwrap();
            // Equal within the bisection's precision when the hedge never fires.
            assert!(
                hedged.as_secs_f64() <= plain.as_secs_f64() * (1.0 + 1e-8),
                "n={n} q={q} d={d:?}: hedged {hedged:?} > plain {plain:?}"
            );
        }
    }

    #[test]
    fn gather_latency_grows_with_leaves() {
        let (m, _, _) = model(5.0, 50.0);
        let mut last = [Duration::ZERO; 2];
        for n in leaf_counts(1024) {
            let p = m.predict(n, &[50.0, 99.9], HedgeAt::default()).unwrap();
            assert!(p.unhedged[0] > last[0] && p.unhedged[1] > last[1], "n={n}");
            assert!(p.hedged[1] < p.unhedged[1], "n={n}: hedging must cut p99.9");
            last = [p.unhedged[0], p.unhedged[1]];
            // The hedge at the leaf's p95 fires on 5% of calls.
            assert!(
                rel(p.hedge_extra_load, 0.05) < 1e-4,
                "{}",
                p.hedge_extra_load
            );
        }
    }

    #[test]
    fn measured_distributions_agree_with_the_parametric_one() {
        let (m, mu, sigma) = model(2.0, 20.0);
        let mut rng = Rng::new(7);
        let samples: Vec<Duration> = (0..100_000)
            .map(|_| Duration::from_secs_f64(rng.log_normal(mu, sigma)))
            .collect();
        // Fine log-spaced buckets (10% wide), as a latency histogram keeps.
        let mut buckets = Vec::new();
        let mut bound = 1e-5f64;
        while bound < 10.0 {
            let count = samples
                .iter()
                .filter(|s| s.as_secs_f64() <= bound && s.as_secs_f64() > bound / 1.1)
                .count() as u64;
            buckets.push((Duration::from_secs_f64(bound), count));
            bound *= 1.1;
        }
        let below = samples
            .iter()
            .filter(|s| s.as_secs_f64() <= 1e-5 / 1.1)
            .count() as u64;
        buckets[0].1 += below;
        let measured = [
            GatherModel::new(LeafLatency::from_samples(&samples).unwrap()),
            GatherModel::new(LeafLatency::from_histogram(&buckets).unwrap()),
        ];
        for mm in &measured {
            for n in [1, 16] {
                for q in [0.5, 0.9] {
                    let want = m.gather_quantile(n, None, q).unwrap().as_secs_f64();
                    let got = mm.gather_quantile(n, None, q).unwrap().as_secs_f64();
                    assert!(rel(got, want) < 0.05, "n={n} q={q}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn bad_input_is_an_error_naming_the_value() {
        let e = LeafLatency::log_normal(ms(50.0), ms(5.0)).unwrap_err();
        assert!(e.message().contains("50ms"), "{e}");
        assert!(LeafLatency::log_normal(Duration::ZERO, ms(5.0)).is_err());
        assert!(LeafLatency::log_normal(ms(5.0), ms(5.0)).is_err());
        assert!(LeafLatency::from_samples(&[]).is_err());
        assert!(LeafLatency::from_histogram(&[]).is_err());
        assert!(LeafLatency::from_histogram(&[(ms(2.0), 1), (ms(1.0), 1)]).is_err());
        assert!(LeafLatency::from_histogram(&[(ms(2.0), 0)]).is_err());
        let (m, _, _) = model(5.0, 50.0);
        assert!(m.gather_quantile(0, None, 0.5).is_err());
        for q in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(m.gather_quantile(4, None, q).is_err(), "q={q}");
        }
        let e = m.predict(4, &[100.0], HedgeAt::default()).unwrap_err();
        assert!(e.message().contains("100"), "{e}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5ms").unwrap(), ms(5.0));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("250µs").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        for bad in ["5", "5xs", "ms", "", "-5ms", "1e3ms", "5 parsecs"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.message().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn leaf_counts_are_powers_of_two_then_max() {
        assert_eq!(leaf_counts(64), vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(leaf_counts(10), vec![1, 2, 4, 8, 10]);
        assert_eq!(leaf_counts(1), vec![1]);
        assert!(leaf_counts(0).is_empty());
    }
}
