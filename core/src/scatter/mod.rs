//! Scatter/gather with tail tolerance: fan one request out to leaves, each
//! leaf a group of replicas, and gather the answers under a deadline.
//!
//! Two shapes, after the scatter/gather chapter of *Designing Distributed
//! Systems*:
//!
//! - **Root distribution** ([`Scatter::first`]): the data is replicated, so
//!   any replica can answer. Build a scatter with one [`Leaf`] whose replicas
//!   are the replicated leaves; the call goes to one of them (power of two
//!   choices) and is hedged to another when it runs long.
//! - **Leaf sharding** ([`Scatter::gather`], or [`Scatter::gather_each`]
//!   with a request per shard): each leaf holds one shard and answers its
//!   part; the answer is every shard's part, or as many as the [`Coverage`]
//!   policy accepts by the deadline.
//!
//! The transport is a [`Replica`]: anything that turns a request into a
//! boxed future of a response. An HTTP/JSON replica, a Python coroutine or
//! an in-process closure all plug in the same way.
//!
//! Policies (see "The Tail at Scale", Dean and Barroso, CACM 2013):
//!
//! - **Deadline**: every call carries one; when the answer is complete, when
//!   the policy can no longer be met, or when the deadline passes, every
//!   outstanding replica call is dropped (cancelled) before the method
//!   returns. A deadline already past is [`ErrorKind::InvalidArgument`]
//!   (the caller asked for the impossible; nothing was sent), unlike a
//!   deadline that passes while waiting, which is [`ErrorKind::Timeout`].
//! - **Hedging** ([`HedgeConfig`]): a call that outlives the leaf's recent
//!   p95 (from a rotating histogram) goes to a second replica too; first
//!   answer wins; a token bucket caps the extra load.
//! - **Tied requests** ([`ScatterConfig::tied`]): both copies go at once and
//!   the loser is dropped when the winner answers. (Dean's tied requests
//!   cancel when the other *starts*; a replica here cannot report that, so
//!   the cancel comes on the answer.)
//! - **Partial results** ([`Coverage`]): require all, at least k of n, or
//!   best effort; the result carries coverage and a degraded flag.
//! - **Replica choice**: power of two choices over a C3-style score, see
//!   the `replica` module's notes: `ewma_latency * (1 + outstanding)^3`.
//! - **Metrics** ([`Scatter::metrics`]): per leaf latency histogram, calls,
//!   hedges sent and won, timeouts, errors, and per-replica state.
//!
//! ```
//! use shardkit::scatter::{CallFuture, Coverage, GatherOptions, Leaf, Scatter, ScatterConfig};
//! use std::time::Duration;
//!
//! fn shard(i: u32) -> Leaf<String, u32> {
//!     let replica = move |q: &String| -> CallFuture<u32> {
//!         let n = q.len() as u32 + i;
//!         Box::pin(async move { Ok(n) })
//!     };
//!     Leaf::new(format!("shard-{i}"), vec![std::sync::Arc::new(replica) as _]).unwrap()
//! }
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let s = Scatter::new(vec![shard(0), shard(1)], ScatterConfig::default())?;
//! let got = s
//!     .gather(&"abc".to_string(), &GatherOptions::within(Duration::from_secs(1)))
//!     .await?;
//! assert_eq!(got.coverage(), (2, 2));
//! assert_eq!(got.answers, vec![(0, 3), (1, 4)]);
//! # Ok::<(), shardkit::Error>(())
//! # }).unwrap();
//! ```

mod gather;
pub(crate) mod hedge;
pub(crate) mod histogram;
pub mod http;
mod metrics;
pub(crate) mod replica;

pub use hedge::HedgeConfig;
pub use histogram::HistogramSnapshot;
pub use metrics::{LeafMetrics, ReplicaMetrics};

use crate::runtime::Home;
use crate::{Error, ErrorKind, Result};
use hedge::Budget;
use metrics::LeafStats;
use replica::{Rng, Slot};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The future a replica call returns. `'static` so a transport can move it
/// to another task if it wants; dropping it must cancel the call.
pub type CallFuture<Resp> = Pin<Box<dyn Future<Output = Result<Resp>> + Send + 'static>>;

/// One replica of a leaf: something that answers a request asynchronously.
///
/// Implemented for every `Fn(&Req) -> CallFuture<Resp>` closure, which is
/// the quickest way to plug in a transport or a test double.
pub trait Replica<Req, Resp>: Send + Sync {
    /// Starts a call. The request is borrowed only while the future is
    /// built; copy or serialise what the call needs.
    fn call(&self, req: &Req) -> CallFuture<Resp>;

    /// The process whose runtime this replica's connections live on, for a
    /// replica that has any (HTTP): a scatter over it refuses calls in a
    /// child forked after it was made, which could only wait on the
    /// parent's connections. `None` (the default): works in any process.
    fn home(&self) -> Option<Home> {
        None
    }
}

impl<Req, Resp, F> Replica<Req, Resp> for F
where
    F: Fn(&Req) -> CallFuture<Resp> + Send + Sync,
{
    fn call(&self, req: &Req) -> CallFuture<Resp> {
        self(req)
    }
}

/// A leaf: one shard's (or, for root distribution, the whole data set's)
/// group of interchangeable replicas.
pub struct Leaf<Req, Resp> {
    name: String,
    replicas: Vec<Arc<dyn Replica<Req, Resp>>>,
}

impl<Req, Resp> Leaf<Req, Resp> {
    /// A leaf named `name` served by `replicas` (at least one).
    pub fn new(
        name: impl Into<String>,
        replicas: Vec<Arc<dyn Replica<Req, Resp>>>,
    ) -> Result<Self> {
        let name = name.into();
        if replicas.is_empty() {
            return Err(Error::invalid(format!(
                "leaf {name:?} has no replicas; a leaf needs at least one"
            )));
        }
        Ok(Leaf { name, replicas })
    }

    /// Shard `index`'s leaf, named `shard-<index> (<replica>|<replica>...)`
    /// after its replicas' names (URLs, function names): every binding names
    /// shard leaves this way, so a timeout or a metrics row says which
    /// servers it means, not only a position.
    pub fn for_shard<S: AsRef<str>>(
        index: usize,
        replica_names: &[S],
        replicas: Vec<Arc<dyn Replica<Req, Resp>>>,
    ) -> Result<Self> {
        let names: Vec<&str> = replica_names.iter().map(AsRef::as_ref).collect();
        Leaf::new(format!("shard-{index} ({})", names.join("|")), replicas)
    }

    /// The leaf's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// How a scatter treats slow calls and picks replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterConfig {
    /// Hedge slow calls; `None` turns hedging off.
    pub hedge: Option<HedgeConfig>,
    /// Send every leaf call to two replicas at once (where the leaf has
    /// two); the extra copies count as hedges in the metrics but are not
    /// limited by the hedge budget, since the caller asked for all of them.
    /// Tied calls are not hedged again later.
    pub tied: bool,
    /// Weight of a new latency sample in a replica's EWMA, in `(0, 1]`.
    pub ewma_alpha: f64,
    /// A replica's latency estimate halves for every `ewma_half_life`
    /// without a fresh sample, so a replica shunned for being slow or
    /// failing is tried again eventually.
    pub ewma_half_life: Duration,
    /// Seed for replica choice, so runs can be repeated.
    pub seed: u64,
}

impl Default for ScatterConfig {
    /// Hedging at p95 with a 5% budget, no tied requests, EWMA weight 0.3
    /// with a 5-second half-life.
    fn default() -> Self {
        ScatterConfig {
            hedge: Some(HedgeConfig::default()),
            tied: false,
            ewma_alpha: 0.3,
            ewma_half_life: Duration::from_secs(5),
            seed: 0x5CA7_7E12,
        }
    }
}

/// How much of a sharded answer is enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every shard must answer.
    RequireAll,
    /// At least this many shards must answer (k of n, `1 <= k <= n`).
    AtLeast(usize),
    /// Whatever arrived by the deadline, as long as one shard answered
    /// (as Elasticsearch's partial results: a search no shard answered is
    /// a failure, not an empty result).
    BestEffort,
}

impl Coverage {
    /// Parses the one spelling every binding and the CLI accept, for a
    /// scatter over `total` leaves: `all`, `best-effort` (`best_effort` is
    /// the same), `K` (at least K leaves, 1 to `total`) or `K/N` (the same,
    /// with N stating the leaf count, which must be `total`). Anything else
    /// is an `InvalidArgument` error that starts `coverage <text>: `.
    pub fn parse(text: &str, total: usize) -> Result<Coverage> {
        let t = text.trim();
        // A bare number is shown as it is, anything else quoted.
        let shown = match t.parse::<usize>() {
            Ok(k) => k.to_string(),
            Err(_) => format!("{text:?}"),
        };
        let bad = |why: String| Error::invalid(format!("coverage {shown}: {why}"));
        let k = match t {
            "all" => return Ok(Coverage::RequireAll),
            "best-effort" | "best_effort" => return Ok(Coverage::BestEffort),
            _ => {
                let (k, n) = match t.split_once('/') {
                    Some((k, n)) => (k.trim().parse::<usize>(), Some(n.trim().parse::<usize>())),
                    None => (t.parse::<usize>(), None),
                };
                match (k, n) {
                    (Ok(k), None) => k,
                    (Ok(k), Some(Ok(n))) if n == total => k,
                    (Ok(_), Some(Ok(n))) => {
                        return Err(bad(format!("N is {n} but the scatter has {total} leaves")))
                    }
                    _ => {
                        return Err(bad(
                            "expected all, best-effort, K or K/N (K of N leaves)".to_string()
                        ))
                    }
                }
            }
        };
        if k == 0 || k > total {
            return Err(bad(format!("K must be between 1 and the {total} leaves")));
        }
        Ok(Coverage::AtLeast(k))
    }

    /// How many of `total` leaves this policy needs. Errors: `AtLeast(0)`,
    /// or `AtLeast(k)` with more than `total`.
    pub fn needed(self, total: usize) -> Result<usize> {
        match self {
            Coverage::RequireAll => Ok(total),
            Coverage::BestEffort => Ok(1),
            Coverage::AtLeast(0) => {
                Err(Error::invalid("coverage AtLeast(0): k must be at least 1"))
            }
            Coverage::AtLeast(k) if k > total => Err(Error::invalid(format!(
                "coverage AtLeast({k}) asks for more shards than the {total} there are"
            ))),
            Coverage::AtLeast(k) => Ok(k),
        }
    }
}

/// Deadline and coverage policy for one [`Scatter::gather`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatherOptions {
    /// When to stop waiting.
    pub deadline: Instant,
    /// How many answers are enough.
    pub coverage: Coverage,
}

impl GatherOptions {
    /// Deadline `timeout` from now, every shard required.
    pub fn within(timeout: Duration) -> Self {
        GatherOptions {
            deadline: Instant::now() + timeout,
            coverage: Coverage::RequireAll,
        }
    }

    /// The same deadline with another coverage policy.
    pub fn with_coverage(mut self, coverage: Coverage) -> Self {
        self.coverage = coverage;
        self
    }
}

/// What a gather returns: the answers that arrived and what is missing.
#[derive(Debug)]
pub struct Gathered<Resp> {
    /// `(leaf index, answer)`, in leaf order.
    pub answers: Vec<(usize, Resp)>,
    /// `(leaf index, why)` for each leaf without an answer, in leaf order.
    pub missing: Vec<(usize, Error)>,
    /// Number of leaves asked.
    pub total: usize,
}

impl<Resp> Gathered<Resp> {
    /// `(shards answered, shards asked)`.
    pub fn coverage(&self) -> (usize, usize) {
        (self.answers.len(), self.total)
    }

    /// True when some shard's part is missing from the answer.
    pub fn degraded(&self) -> bool {
        self.answers.len() < self.total
    }
}

pub(crate) struct LeafState<Req, Resp> {
    name: String,
    slots: Vec<Slot<Req, Resp>>,
    stats: LeafStats,
}

/// A fan-out over leaves with the policies configured in [`ScatterConfig`].
/// Share it (it is `Sync`): replica statistics, histograms and the hedge
/// budget are learned across calls.
pub struct Scatter<Req, Resp> {
    leaves: Vec<LeafState<Req, Resp>>,
    config: ScatterConfig,
    budget: Budget,
    rng: Rng,
    /// Where its replicas' connections live, when some have any.
    home: Option<Home>,
}

impl<Req, Resp> Scatter<Req, Resp> {
    /// A scatter over `leaves` (at least one).
    pub fn new(leaves: Vec<Leaf<Req, Resp>>, config: ScatterConfig) -> Result<Self> {
        if leaves.is_empty() {
            return Err(Error::new(
                ErrorKind::EmptyNodeSet,
                "scatter needs at least one leaf, got an empty leaf set",
            ));
        }
        if !(config.ewma_alpha > 0.0 && config.ewma_alpha <= 1.0) {
            return Err(Error::invalid(format!(
                "ewma_alpha must be in (0, 1], got {}",
                config.ewma_alpha
            )));
        }
        if config.ewma_half_life.is_zero() {
            return Err(Error::invalid("ewma_half_life must be positive, got 0s"));
        }
        if let Some(h) = &config.hedge {
            h.validate()?;
        }
        let window = config
            .hedge
            .as_ref()
            .map_or(HedgeConfig::default().window, |h| h.window);
        let budget = match &config.hedge {
            Some(h) => Budget::new(h.budget_ratio, h.budget_burst),
            None => Budget::new(0.0, 0.0),
        };
        let home = leaves
            .iter()
            .flat_map(|l| &l.replicas)
            .find_map(|r| r.home());
        let leaves = leaves
            .into_iter()
            .map(|l| LeafState {
                name: l.name,
                slots: l
                    .replicas
                    .into_iter()
                    .map(|r| Slot::new(r, config.ewma_half_life))
                    .collect(),
                stats: LeafStats::new(window),
            })
            .collect();
        Ok(Scatter {
            leaves,
            rng: Rng::new(config.seed),
            config,
            budget,
            home,
        })
    }

    /// Ok unless this is a child forked after the scatter's connections
    /// were made (see [`Replica::home`]): then every call fails at once.
    fn check_process(&self) -> Result<()> {
        match &self.home {
            Some(home) => home.check("this Scatter's HTTP transport (its connection pool)"),
            None => Ok(()),
        }
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Always false: a scatter has at least one leaf.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// A snapshot of every leaf's counters, in leaf order.
    pub fn metrics(&self) -> Vec<LeafMetrics> {
        use metrics::load;
        self.leaves
            .iter()
            .map(|l| LeafMetrics {
                name: l.name.clone(),
                calls: load(&l.stats.calls),
                hedges_sent: load(&l.stats.hedges_sent),
                hedges_won: load(&l.stats.hedges_won),
                timeouts: load(&l.stats.timeouts),
                errors: load(&l.stats.errors),
                latency: l.stats.latency.snapshot(),
                replicas: l
                    .slots
                    .iter()
                    .map(|s| ReplicaMetrics {
                        calls: s.calls(),
                        outstanding: s.outstanding(),
                        ewma: s.ewma(),
                    })
                    .collect(),
            })
            .collect()
    }
}

fn check_deadline(deadline: Instant) -> Result<()> {
    let now = Instant::now();
    if deadline <= now {
        return Err(Error::invalid(format!(
            "deadline is already past (by {:?}); nothing was sent",
            now - deadline
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Coverage;

    #[test]
    fn coverage_parses_the_one_spelling() {
        assert_eq!(Coverage::parse("all", 4).unwrap(), Coverage::RequireAll);
        assert_eq!(
            Coverage::parse("best-effort", 4).unwrap(),
            Coverage::BestEffort
        );
        assert_eq!(
            Coverage::parse("best_effort", 4).unwrap(),
            Coverage::BestEffort
        );
        assert_eq!(Coverage::parse("3", 4).unwrap(), Coverage::AtLeast(3));
        assert_eq!(Coverage::parse(" 2/4 ", 4).unwrap(), Coverage::AtLeast(2));
        assert_eq!(Coverage::parse("4/4", 4).unwrap(), Coverage::AtLeast(4));
    }

    #[test]
    fn coverage_errors_name_the_text() {
        let expected = "expected all, best-effort, K or K/N (K of N leaves)";
        for (bad, says) in [
            ("", format!("coverage \"\": {expected}")),
            ("most", format!("coverage \"most\": {expected}")),
            ("All", format!("coverage \"All\": {expected}")),
            ("-1", format!("coverage \"-1\": {expected}")),
            ("2/x", format!("coverage \"2/x\": {expected}")),
            (
                "0",
                "coverage 0: K must be between 1 and the 4 leaves".into(),
            ),
            (
                "5",
                "coverage 5: K must be between 1 and the 4 leaves".into(),
            ),
            (
                "2/3",
                "coverage \"2/3\": N is 3 but the scatter has 4 leaves".into(),
            ),
            (
                "5/4",
                "coverage \"5/4\": K must be between 1 and the 4 leaves".into(),
            ),
        ] {
            let e = Coverage::parse(bad, 4).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
            assert_eq!(e.message(), says, "{bad:?}");
        }
    }
}
