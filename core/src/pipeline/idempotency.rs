//! Effectively-once handling on an at-least-once pipeline: remember which
//! events a handler finished (by CloudEvents identity, `source` + `id`, for
//! a TTL), with the events it returned, and when one comes again answer
//! with those instead of running the handler: the stage emits them again
//! (at-least-once downstream) and nothing is lost if the first run's
//! worker died before emitting them.
//!
//! The mark is written after the handler succeeds, never before: a crash
//! between the two means the event runs again (a duplicate), never that it
//! is skipped unhandled (a loss). So this suppresses the duplicates
//! redelivery makes (a consumer killed after its handler finished but
//! before its ack, a visibility timeout passing on a slow handler); a
//! handler whose side effects must never repeat must also make them
//! idempotent itself.

use super::layers::BoxError;
use super::transport::Fut;
use super::Event;
use crate::error::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

/// Where finished events are remembered, with the handler's answer.
pub trait SeenStore: Send + Sync + 'static {
    /// The answer stored under `key`, if marked and not expired.
    fn seen<'a>(&'a self, key: &'a str) -> Fut<'a, Result<Option<Vec<u8>>>>;
    /// Stores `answer` under `key` for `ttl`.
    fn mark<'a>(&'a self, key: &'a str, answer: Vec<u8>, ttl: Duration) -> Fut<'a, Result<()>>;
}

/// In this process's memory: for the in-process transport and tests.
/// Expired marks are swept as new ones are written.
#[derive(Default)]
pub struct MemorySeen {
    marks: Mutex<HashMap<String, (Instant, Vec<u8>)>>,
}

impl SeenStore for MemorySeen {
    fn seen<'a>(&'a self, key: &'a str) -> Fut<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let marks = self.marks.lock().expect("marks lock");
            Ok(marks
                .get(key)
                .filter(|(until, _)| *until > Instant::now())
                .map(|(_, answer)| answer.clone()))
        })
    }

    fn mark<'a>(&'a self, key: &'a str, answer: Vec<u8>, ttl: Duration) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut marks = self.marks.lock().expect("marks lock");
            // Sweep when the map reaches a power of two (amortized).
            if marks.len() >= 1024 && marks.len().is_power_of_two() {
                marks.retain(|_, (until, _)| *until > now);
            }
            marks.insert(key.to_string(), (now + ttl, answer));
            Ok(())
        })
    }
}

/// In Redis (`SET key ANSWER PX ttl`), shared by every worker of a
/// pipeline.
pub struct RedisSeen {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

impl RedisSeen {
    /// Connects to `url`; keys are `PREFIX` + the event's key.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<RedisSeen> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::invalid(format!("redis URL {url:?}: {e}")))?;
        let conn = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("redis {url}: {e}")))?;
        Ok(RedisSeen {
            conn,
            prefix: prefix.into(),
        })
    }
}

impl SeenStore for RedisSeen {
    fn seen<'a>(&'a self, key: &'a str) -> Fut<'a, Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg(format!("{}{key}", self.prefix))
                .query_async(&mut c)
                .await
                .map_err(|e| Error::new(ErrorKind::Unavailable, format!("redis GET: {e}")))?;
            Ok(v)
        })
    }

    fn mark<'a>(&'a self, key: &'a str, answer: Vec<u8>, ttl: Duration) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            redis::cmd("SET")
                .arg(format!("{}{key}", self.prefix))
                .arg(answer)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async::<redis::Value>(&mut c)
                .await
                .map_err(|e| Error::new(ErrorKind::Unavailable, format!("redis SET: {e}")))?;
            Ok(())
        })
    }
}

/// Answers events a handler already finished (within `ttl`) with what it
/// returned then, in front of a handler of events. `scope` keeps stages apart (one event may be meant
/// for several).
#[derive(Clone)]
pub struct IdempotentLayer {
    store: Arc<dyn SeenStore>,
    scope: String,
    ttl: Duration,
    duplicates: Arc<AtomicU64>,
}

impl IdempotentLayer {
    /// Remembers finished events in `store` for `ttl`, under `scope`.
    pub fn new(store: Arc<dyn SeenStore>, scope: impl Into<String>, ttl: Duration) -> Self {
        IdempotentLayer {
            store,
            scope: scope.into(),
            ttl,
            duplicates: Arc::default(),
        }
    }

    /// Duplicates skipped so far.
    pub fn duplicates(&self) -> Arc<AtomicU64> {
        self.duplicates.clone()
    }
}

impl<S> Layer<S> for IdempotentLayer {
    type Service = Idempotent<S>;

    fn layer(&self, inner: S) -> Idempotent<S> {
        Idempotent {
            inner,
            layer: self.clone(),
        }
    }
}

/// A handler behind [`IdempotentLayer`].
#[derive(Clone)]
pub struct Idempotent<S> {
    inner: S,
    layer: IdempotentLayer,
}

impl<S> Service<Event> for Idempotent<S>
where
    S: Service<Event, Response = Vec<Event>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    type Response = Vec<Event>;
    type Error = BoxError;
    type Future = Fut<'static, std::result::Result<Vec<Event>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, event: Event) -> Self::Future {
        // The inner service was made ready by poll_ready: call that one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let key = format!("{}:{}:{}", layer.scope, event.source(), event.id());
            if let Some(answer) = layer.store.seen(&key).await? {
                layer.duplicates.fetch_add(1, Ordering::Relaxed);
                return decode(&answer);
            }
            let out = inner.call(event).await.map_err(Into::into)?;
            layer.store.mark(&key, encode(&out), layer.ttl).await?;
            Ok(out)
        })
    }
}

/// A handler's answer as stored: a JSON array of structured events.
fn encode(events: &[Event]) -> Vec<u8> {
    let v: Vec<serde_json::Value> = events.iter().map(Event::to_json_value).collect();
    serde_json::to_vec(&v).unwrap_or_else(|_| b"[]".to_vec())
}

fn decode(answer: &[u8]) -> std::result::Result<Vec<Event>, BoxError> {
    let values: Vec<serde_json::Value> = serde_json::from_slice(answer)
        .map_err(|e| format!("a stored answer that is not a JSON array: {e}"))?;
    values
        .into_iter()
        .map(|v| Event::from_json_value(v).map_err(|e| e.to_string().into()))
        .collect()
}
