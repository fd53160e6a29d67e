//! Hedging policy and the budget that caps its extra load.

use crate::{Error, Result};
use std::sync::Mutex;
use std::time::Duration;

/// When to send a second copy of a slow leaf call, and how many to allow.
///
/// A call that has run longer than the leaf's recent `percentile` latency is
/// sent to another replica too; the first answer wins and the other call is
/// dropped. Hedges are paid for from a token bucket: every leaf call adds
/// `budget_ratio` tokens (up to `budget_burst`), every hedge takes one, so
/// over time hedges stay at or under `budget_ratio` of calls even when a
/// whole leaf turns slow (when hedging would only add load).
#[derive(Debug, Clone, PartialEq)]
pub struct HedgeConfig {
    /// The latency quantile after which a call is hedged, in `(0, 1]`.
    pub percentile: f64,
    /// Samples a leaf's histogram must hold before its calls are hedged.
    pub min_samples: u64,
    /// Never hedge sooner than this, whatever the percentile says.
    pub min_delay: Duration,
    /// Hedges allowed per leaf call, in `[0, 1]` (0.05 = at most 5% extra).
    pub budget_ratio: f64,
    /// Tokens the bucket can hold: how many hedges a burst may spend at once.
    pub budget_burst: f64,
    /// The latency histograms rotate every `window`, so a percentile reflects
    /// the last one to two windows.
    pub window: Duration,
    /// Copies a call may get beyond the first, each after another
    /// `percentile` wait: to an untried replica while there is one, then to
    /// any replica but the one that got the last copy. One hedge leaves a
    /// floor at "both copies slow" (probability p^2 per leaf call, which a
    /// 16-leaf gather meets 16 times); a second brings it to p^3. The
    /// budget caps the total either way.
    pub max_hedges: u32,
}

impl Default for HedgeConfig {
    /// p95, after 20 samples, at most 5% extra calls, 10-second windows,
    /// up to 2 hedges per call.
    fn default() -> Self {
        HedgeConfig {
            percentile: 0.95,
            min_samples: 20,
            min_delay: Duration::from_micros(100),
            budget_ratio: 0.05,
            budget_burst: 10.0,
            window: Duration::from_secs(10),
            max_hedges: 2,
        }
    }
}

impl HedgeConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.percentile > 0.0 && self.percentile <= 1.0) {
            return Err(Error::invalid(format!(
                "hedge percentile must be in (0, 1], got {}",
                self.percentile
            )));
        }
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            return Err(Error::invalid(format!(
                "hedge budget_ratio must be in [0, 1], got {}",
                self.budget_ratio
            )));
        }
        if !(self.budget_burst >= 0.0 && self.budget_burst.is_finite()) {
            return Err(Error::invalid(format!(
                "hedge budget_burst must be finite and >= 0, got {}",
                self.budget_burst
            )));
        }
        if self.window.is_zero() {
            return Err(Error::invalid("hedge window must be positive, got 0s"));
        }
        if !(1..=8).contains(&self.max_hedges) {
            return Err(Error::invalid(format!(
                "hedge max_hedges must be in 1..=8, got {}",
                self.max_hedges
            )));
        }
        Ok(())
    }
}

/// Token bucket shared by all leaves of one scatter.
pub(crate) struct Budget {
    ratio: f64,
    burst: f64,
    tokens: Mutex<f64>,
}

impl Budget {
    pub(crate) fn new(ratio: f64, burst: f64) -> Self {
        // Starts empty: a cold scatter has no history to justify extra load.
        Budget {
            ratio,
            burst,
            tokens: Mutex::new(0.0),
        }
    }

    pub(crate) fn deposit(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        *t = (*t + self.ratio).min(self.burst);
    }

    pub(crate) fn try_withdraw(&self) -> bool {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_ratio_of_calls_plus_burst() {
        let b = Budget::new(0.05, 2.0);
        assert!(!b.try_withdraw(), "a cold budget has no tokens");
        let mut granted = 0;
        for _ in 0..1_000 {
            b.deposit();
            if b.try_withdraw() {
                granted += 1;
            }
        }
        assert!((49..=50).contains(&granted), "{granted}");
        // Unspent tokens cap at the burst.
        for _ in 0..1_000 {
            b.deposit();
        }
        assert!(b.try_withdraw() && b.try_withdraw() && !b.try_withdraw());
    }

    #[test]
    fn config_validation_names_the_bad_value() {
        let bad = HedgeConfig {
            budget_burst: f64::NAN,
            ..HedgeConfig::default()
        };
        assert!(bad.validate().unwrap_err().message().contains("NaN"));
        let bad = HedgeConfig {
            window: Duration::ZERO,
            ..HedgeConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(HedgeConfig::default().validate().is_ok());
    }
}
