//! Batch handlers: one call for many events, with a result per event (AWS
//! Lambda's `batchItemFailures`): the events that failed are retried or
//! dead-lettered on their own, the others are done.
//!
//! A stage in batch mode receives each partition's events in batches (up to
//! `max`, waiting up to `linger` for a batch to fill) and makes one call per
//! batch, with at most one event of a key in it, so per-key order holds as
//! in single mode; the batch is acknowledged in one call. A call that fails
//! as a whole is bisected (Lambda's `BisectBatchOnFunctionError`): each half
//! is tried on its own, down to single events, so one poison event cannot
//! fail its neighbours.

use super::layers::{BoxError, Handler};
use super::Event;
use crate::error::{Error, Result};
use std::time::Duration;
use tower::ServiceExt;

/// One event's result in a batch: the events it produced, or why it failed.
pub type ItemResult = std::result::Result<Vec<Event>, BoxError>;

/// A handler of batches: a result per event, in the batch's order.
pub type BatchHandler = Handler<Vec<Event>, Vec<ItemResult>>;

/// How a stage batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Events per call at most.
    pub max: usize,
    /// How long a batch that is not full waits for more events.
    pub linger: Duration,
    /// Calls in flight at once, across the stage's partitions (each
    /// partition has one at a time, so that its keys stay in order).
    pub calls: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max: 100,
            linger: Duration::from_millis(5),
            calls: 2,
        }
    }
}

impl BatchSettings {
    /// Checks the settings, naming a bad value.
    pub fn validate(&self) -> Result<()> {
        if self.max == 0 || self.max > 100_000 {
            return Err(Error::invalid(format!(
                "batch max {}: must be 1..=100000",
                self.max
            )));
        }
        if self.calls == 0 {
            return Err(Error::invalid("batch calls 0: must be at least 1"));
        }
        Ok(())
    }
}

/// Results for `events` from the ids that failed (Lambda's
/// `batchItemFailures`): every other event succeeded and produced nothing.
pub fn from_failures(events: &[Event], failed: &[(String, String)]) -> Vec<ItemResult> {
    events
        .iter()
        .map(|e| match failed.iter().find(|(id, _)| id == e.id()) {
            Some((_, why)) => Err(why.clone().into()),
            None => Ok(Vec::new()),
        })
        .collect()
}

/// Calls `handler` on `events`; a call that fails as a whole (or answers
/// with the wrong number of results) is split in two, each half tried on
/// its own, down to single events.
pub(crate) fn bisect(
    handler: BatchHandler,
    events: Vec<Event>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<ItemResult>> + Send>> {
    Box::pin(async move {
        let n = events.len();
        match whole(handler.clone().oneshot(events.clone()).await, n) {
            Ok(results) => results,
            Err(err) => split(handler, events, err).await,
        }
    })
}

/// A whole call's answer for `n` events: its results, or why the call as a
/// whole failed (an error, or the wrong number of results).
pub(crate) fn whole(
    answer: std::result::Result<Vec<ItemResult>, BoxError>,
    n: usize,
) -> std::result::Result<Vec<ItemResult>, BoxError> {
    match answer {
        Ok(results) if results.len() == n => Ok(results),
        Ok(results) => Err(BoxError::from(format!(
            "the batch handler answered {} results for {n} events",
            results.len()
        ))),
        Err(e) => Err(e),
    }
}

/// After a call of all of `events` failed with `err`: each half on its own
/// ([`bisect`]), a single event failing with `err`. A caller that made the
/// whole call itself (moving the events into it, with no copy kept for a
/// failure that seldom comes) continues here.
pub(crate) async fn split(
    handler: BatchHandler,
    events: Vec<Event>,
    err: BoxError,
) -> Vec<ItemResult> {
    let n = events.len();
    match n {
        0 => return Vec::new(),
        // The event's own error, as it is (a permanent one stays so).
        1 => return vec![Err(err)],
        _ => {}
    }
    let mut left = events;
    let right = left.split_off(n / 2);
    let mut out = bisect(handler.clone(), left).await;
    out.extend(bisect(handler, right).await);
    out
}
