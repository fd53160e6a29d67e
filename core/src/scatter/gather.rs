//! The call loops: one leaf call (replica choice, hedging, failover) and
//! the gather over all leaves under a deadline.
//!
//! Everything runs inside the caller's future and nothing is spawned, so
//! dropping that future, or returning from it, drops every replica call
//! still outstanding: no call outlives its request.

use super::metrics::LeafStats;
use super::replica::{pick, worst_us, InFlight};
use super::{check_deadline, CallFuture, Coverage, GatherOptions, Gathered, LeafState, Scatter};
use crate::{Error, ErrorKind, Result};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};

/// Waits for the first of `futs` to finish; returns its index and output.
/// Pending futures stay in place, to be polled again or dropped.
async fn first_ready<F: Future + ?Sized>(futs: &mut [Pin<Box<F>>]) -> (usize, F::Output) {
    poll_fn(|cx| {
        for (i, f) in futs.iter_mut().enumerate() {
            if let Poll::Ready(out) = f.as_mut().poll(cx) {
                return Poll::Ready((i, out));
            }
        }
        Poll::Pending
    })
    .await
}

impl<Req: Sync, Resp: Send> Scatter<Req, Resp> {
    /// Root distribution: sends `req` to one replica of the single leaf
    /// (hedging as configured) and returns the first answer.
    ///
    /// Errors: `InvalidArgument` when the scatter has more than one leaf
    /// (use [`Scatter::gather`]), the deadline is already past, or this is
    /// a child forked after the scatter's HTTP replicas were made; `Timeout`
    /// when no replica answered by `deadline`; the last replica error when
    /// every replica failed.
    pub async fn first(&self, req: &Req, deadline: Instant) -> Result<Resp> {
        self.check_process()?;
        if self.leaves.len() != 1 {
            return Err(Error::invalid(format!(
                "root distribution needs exactly one leaf (its replicas are the \
                 replicated leaves), got {} leaves; use gather for sharded leaves",
                self.leaves.len()
            )));
        }
        check_deadline(deadline)?;
        let leaf = &self.leaves[0];
        tokio::select! {
            out = self.call_leaf(leaf, req) => out,
            _ = sleep_until(deadline) => {
                LeafStats::bump(&leaf.stats.timeouts);
                Err(Error::new(ErrorKind::Timeout, format!(
                    "leaf {:?} did not answer by the deadline", leaf.name)))
            }
        }
    }

    /// Leaf sharding: sends `req` to every leaf and gathers their answers
    /// until all are in, the coverage policy can no longer be met, or the
    /// deadline passes. Every outstanding call is dropped before it returns.
    ///
    /// Errors: `InvalidArgument` for a past deadline, a coverage policy
    /// the leaf count cannot meet (`AtLeast(0)`, `AtLeast(k)` with k > n),
    /// or a call in a child forked after its HTTP replicas were made;
    /// otherwise, when too few shards answered, `Timeout` (if a shard was
    /// cut off by the deadline) or `Unavailable` (if shards only failed),
    /// with the coverage and each missing shard in the message.
    pub async fn gather(&self, req: &Req, opts: &GatherOptions) -> Result<Gathered<Resp>> {
        self.gather_with(|_| req, opts).await
    }

    /// Leaf sharding with a request per shard: `reqs[i]` goes to leaf `i`
    /// (a multi-get split by shard, say). Otherwise as [`Scatter::gather`];
    /// `reqs` of another length than the leaf set is `InvalidArgument`.
    pub async fn gather_each(&self, reqs: &[Req], opts: &GatherOptions) -> Result<Gathered<Resp>> {
        if reqs.len() != self.leaves.len() {
            return Err(Error::invalid(format!(
                "gather_each needs one request per leaf: got {} requests for {} leaves",
                reqs.len(),
                self.leaves.len()
            )));
        }
        self.gather_with(|i| &reqs[i], opts).await
    }

    async fn gather_with<'r>(
        &self,
        req_of: impl Fn(usize) -> &'r Req,
        opts: &GatherOptions,
    ) -> Result<Gathered<Resp>>
    where
        Req: 'r,
    {
        self.check_process()?;
        let total = self.leaves.len();
        let needed = opts.coverage.needed(total)?;
        check_deadline(opts.deadline)?;
        let mut index: Vec<usize> = (0..total).collect();
        let mut pending: Vec<_> = self
            .leaves
            .iter()
            .enumerate()
            .map(|(i, leaf)| Box::pin(self.call_leaf(leaf, req_of(i))))
            .collect();
        let mut answers = Vec::with_capacity(total);
        let mut missing = Vec::new();
        let deadline = sleep_until(opts.deadline);
        tokio::pin!(deadline);
        while !pending.is_empty() && answers.len() + pending.len() >= needed {
            tokio::select! {
                (pos, out) = first_ready(&mut pending) => {
                    drop(pending.swap_remove(pos));
                    let leaf = index.swap_remove(pos);
                    match out {
                        Ok(resp) => answers.push((leaf, resp)),
                        Err(e) => missing.push((leaf, e)),
                    }
                }
                _ = &mut deadline => {
                    for &leaf in &index {
                        LeafStats::bump(&self.leaves[leaf].stats.timeouts);
                        missing.push((leaf, Error::new(ErrorKind::Timeout, format!(
                            "leaf {:?} did not answer by the deadline",
                            self.leaves[leaf].name))));
                    }
                    index.clear();
                    break;
                }
            }
        }
        // Cancels whatever is still running (the policy can no longer be
        // met): those leaves are reported as cancelled, not timed out.
        drop(pending);
        for &leaf in &index {
            missing.push((
                leaf,
                Error::new(
                    ErrorKind::Cancelled,
                    format!(
                        "leaf {:?} was cancelled: the coverage policy could no longer be met",
                        self.leaves[leaf].name
                    ),
                ),
            ));
        }
        answers.sort_by_key(|(i, _)| *i);
        missing.sort_by_key(|(i, _)| *i);
        if answers.len() >= needed {
            return Ok(Gathered {
                answers,
                missing,
                total,
            });
        }
        let kind = if missing.iter().any(|(_, e)| e.kind() == ErrorKind::Timeout) {
            ErrorKind::Timeout
        } else {
            ErrorKind::Unavailable
        };
        let policy = match opts.coverage {
            Coverage::RequireAll => format!("require all {total}"),
            Coverage::AtLeast(k) => format!("at least {k} of {total}"),
            Coverage::BestEffort => "best effort (at least 1)".to_string(),
        };
        // The leaves that failed or timed out first: they are the reason.
        // Those cancelled because the policy had already failed go last,
        // by name only.
        let detail: Vec<String> = missing
            .iter()
            .filter(|(i, _)| !index.contains(i))
            .map(|(i, e)| format!("{}: {}", self.leaves[*i].name, e))
            .collect();
        index.sort_unstable();
        let cancelled: Vec<&str> = index
            .iter()
            .map(|&i| self.leaves[i].name.as_str())
            .collect();
        let mut msg = format!(
            "coverage {}/{} does not meet policy {policy}; missing: {}",
            answers.len(),
            total,
            detail.join("; ")
        );
        if !cancelled.is_empty() {
            msg.push_str(&format!(
                "; cancelled once the policy could not be met: {}",
                cancelled.join(", ")
            ));
        }
        Err(Error::new(kind, msg))
    }

    /// One leaf call: a first replica by power of two choices, a hedge (or a
    /// tied copy) to another replica when configured, failover to an untried
    /// replica when every call in flight has failed.
    async fn call_leaf<'a>(&'a self, leaf: &'a LeafState<Req, Resp>, req: &'a Req) -> Result<Resp> {
        let stats = &leaf.stats;
        LeafStats::bump(&stats.calls);
        self.budget.deposit();
        let alpha = self.config.ewma_alpha;
        let started = Instant::now();
        let mut tried: Vec<usize> = Vec::new();
        // Parallel vectors: the futures (polled together) and, per future,
        // its in-flight guard and whether it was an extra copy.
        let mut calls: Vec<CallFuture<Resp>> = Vec::new();
        let mut meta: Vec<(InFlight<'a, Req, Resp>, bool)> = Vec::new();
        let launch = |slot: usize,
                      extra: bool,
                      tried: &mut Vec<usize>,
                      calls: &mut Vec<CallFuture<Resp>>,
                      meta: &mut Vec<(InFlight<'a, Req, Resp>, bool)>| {
            tried.push(slot);
            let (guard, fut) = InFlight::start(&leaf.slots[slot], req, alpha);
            calls.push(fut);
            meta.push((guard, extra));
            if extra {
                LeafStats::bump(&stats.hedges_sent);
            }
        };
        let mut hedge_at = None;
        let mut hedge_delay = Duration::ZERO;
        let mut hedges_left = 0;
        if let Some(first) = pick(&leaf.slots, &tried, &self.rng) {
            launch(first, false, &mut tried, &mut calls, &mut meta);
        }
        if self.config.tied {
            if let Some(second) = pick(&leaf.slots, &tried, &self.rng) {
                launch(second, true, &mut tried, &mut calls, &mut meta);
            }
        } else if let Some(h) = &self.config.hedge {
            if let Some(p) = stats.latency.percentile(h.percentile, h.min_samples) {
                hedge_delay = p.max(h.min_delay);
                hedge_at = Some(started + hedge_delay);
                hedges_left = h.max_hedges;
            }
        }
        let mut last_err = None;
        loop {
            if calls.is_empty() {
                // Everything in flight failed: fail over to an untried
                // replica, or give up with the last error.
                match pick(&leaf.slots, &tried, &self.rng) {
                    Some(next) => launch(next, false, &mut tried, &mut calls, &mut meta),
                    None => {
                        return Err(last_err.unwrap_or_else(|| {
                            Error::new(
                                ErrorKind::Unavailable,
                                format!("leaf {:?}: no replica to call", leaf.name),
                            )
                        }))
                    }
                }
            }
            let hedge_timer = async {
                match hedge_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                (pos, out) = first_ready(&mut calls) => {
                    drop(calls.swap_remove(pos));
                    let (guard, extra) = meta.swap_remove(pos);
                    match out {
                        Ok(resp) => {
                            guard.succeeded();
                            stats.latency.record(started.elapsed());
                            if extra {
                                LeafStats::bump(&stats.hedges_won);
                            }
                            // Returning drops `calls`: the losers are cancelled.
                            return Ok(resp);
                        }
                        Err(e) => {
                            guard.failed(worst_us(&leaf.slots));
                            LeafStats::bump(&stats.errors);
                            last_err = Some(e);
                        }
                    }
                }
                _ = hedge_timer => {
                    hedge_at = None;
                    // An untried replica first; past those, any but the
                    // one that got the last copy (slowness is often per
                    // call: a GC pause, a queue, a lost packet).
                    let last = tried.last().copied();
                    let next = pick(&leaf.slots, &tried, &self.rng).or_else(|| {
                        let exclude: Vec<usize> = last.into_iter().collect();
                        pick(&leaf.slots, &exclude, &self.rng)
                    });
                    if let Some(next) = next {
                        if self.budget.try_withdraw() {
                            launch(next, true, &mut tried, &mut calls, &mut meta);
                            hedges_left -= 1;
                        }
                        // Refused by the budget: look again after another
                        // wait, when tokens may have come in (a call still
                        // running then is even likelier the straggler).
                        if hedges_left > 0 {
                            hedge_at = Some(Instant::now() + hedge_delay);
                        }
                    }
                }
            }
        }
    }
}
