//! Batch handlers: one call for many events, with a result per event (AWS
//! Lambda's `batchItemFailures`): the events that failed are retried or
//! dead-lettered on their own, the others are done.
//!
//! A stage in batch mode still runs one lane per key (per-key order holds,
//! as in single mode); each lane hands its next event to the batcher, which
//! gathers events from many lanes, up to `max` or until `linger` passes, and
//! makes one call. A call that fails as a whole is bisected (Lambda's
//! `BisectBatchOnFunctionError`): each half is tried on its own, down to
//! single events, so one poison event cannot fail its neighbours.

use super::layers::{BoxError, Handler};
use super::Event;
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
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
    /// How long the first event of a batch waits for others.
    pub linger: Duration,
    /// Calls in flight at once.
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

type Ask = (Event, oneshot::Sender<ItemResult>);

/// Gathers events from lanes into calls of a batch handler.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<Ask>,
}

impl Batcher {
    /// Starts the gathering task on the current runtime.
    pub(crate) fn start(handler: BatchHandler, settings: BatchSettings) -> Batcher {
        let (tx, rx) = mpsc::channel(settings.max.saturating_mul(2).max(16));
        tokio::spawn(gather(handler, settings, rx));
        Batcher { tx }
    }

    /// One event's result, from whichever batch it went in.
    pub(crate) async fn call(&self, event: Event) -> ItemResult {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((event, tx))
            .await
            .map_err(|_| BoxError::from("the stage's batcher has stopped"))?;
        rx.await
            .unwrap_or_else(|_| Err("the batch call was dropped".into()))
    }
}

async fn gather(handler: BatchHandler, settings: BatchSettings, mut rx: mpsc::Receiver<Ask>) {
    let calls = Arc::new(Semaphore::new(settings.calls));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + settings.linger;
        while batch.len() < settings.max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(a)) => batch.push(a),
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = calls.clone().acquire_owned().await else {
            return;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let (events, replies): (Vec<Event>, Vec<_>) = batch.into_iter().unzip();
            let results = bisect(handler, events).await;
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
            drop(permit);
        });
    }
}

/// Calls `handler` on `events`; a call that fails as a whole (or answers
/// with the wrong number of results) is split in two, each half tried on
/// its own, down to single events.
fn bisect(
    handler: BatchHandler,
    events: Vec<Event>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<ItemResult>> + Send>> {
    Box::pin(async move {
        let n = events.len();
        let whole = handler.clone().oneshot(events.clone()).await;
        let err = match whole {
            Ok(results) if results.len() == n => return results,
            Ok(results) => BoxError::from(format!(
                "the batch handler answered {} results for {n} events",
                results.len()
            )),
            Err(e) => e,
        };
        if n == 1 {
            return vec![Err(err)];
        }
        let mut left = events;
        let right = left.split_off(n / 2);
        let mut out = bisect(handler.clone(), left).await;
        out.extend(bisect(handler, right).await);
        out
    })
}
