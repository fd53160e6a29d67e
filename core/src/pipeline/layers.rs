//! Handlers and the layers in front of them: the decorator pattern, for
//! events and for plain requests alike.
//!
//! A handler is a [`tower::Service`]; [`Layers`] wraps one in tower's own
//! middleware, outermost first: load shedding, a shared queue, a
//! concurrency limit, a rate limit, retry (exponential backoff with jitter,
//! capped by a retry budget) and a per-attempt timeout. Request defaulting
//! ([`DefaultsLayer`]) and response transformation (tower's `map_response`)
//! are layers too, composed with [`tower::ServiceBuilder`] like any other.
//!
//! Retries here are the quick kind, inside one delivery. A failure that
//! outlasts them is the stage's to handle: it redelivers later and, after
//! its last attempt, dead-letters the event (see `stage`).

use crate::error::{Error, Result};
use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::rng::HasherRng;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

/// What a handler's errors are: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A handler with its layers: cheap to clone, shareable between tasks.
pub type Handler<Req, Resp> = BoxCloneSyncService<Req, Resp, BoxError>;

/// An error no retry can fix (a malformed request, a refused input): not
/// retried by [`Layers`], and dead-lettered by a stage at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permanent(pub String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// Whether `e` (or an error it wraps) is [`Permanent`].
pub fn is_permanent(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<Permanent>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Retry inside one delivery: `attempts` tries in all, waiting an
/// exponentially growing, jittered backoff between them, while the retry
/// budget allows (retries at most `budget_percent` of first tries, plus
/// `budget_min_per_sec`), so a failing dependency is not hit with a storm.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Tries in all, the first included (1: no retry).
    pub attempts: u32,
    /// The first backoff (ms in a config file).
    #[serde(with = "millis")]
    pub min_backoff: Duration,
    /// The longest backoff (ms in a config file).
    #[serde(with = "millis")]
    pub max_backoff: Duration,
    /// Up to this share of the backoff is added at random (0 to 100).
    pub jitter: f64,
    /// Retries allowed, as a share of recent first tries (0.2: 20%).
    pub budget_percent: f32,
    /// Retries allowed per second whatever the traffic.
    pub budget_min_per_sec: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            attempts: 3,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            jitter: 0.5,
            budget_percent: 0.2,
            budget_min_per_sec: 10,
        }
    }
}

/// A rate limit: at most `requests` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests allowed in each period.
    pub requests: u64,
    /// The period (ms in a config file).
    #[serde(with = "millis")]
    pub per: Duration,
}

/// The layers in front of a handler. Every one is optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Layers {
    /// Each attempt's time limit (ms in a config file).
    #[serde(with = "opt_millis")]
    pub timeout: Option<Duration>,
    /// Retry inside one delivery.
    pub retry: Option<RetrySettings>,
    /// Calls in flight at most.
    pub concurrency: Option<usize>,
    /// Calls started per period at most.
    pub rate: Option<Rate>,
    /// Refuse a call at once (a [`tower::load_shed::error::Overloaded`]
    /// error) instead of queueing it when the handler is saturated.
    pub load_shed: bool,
    /// Calls that may wait for the handler, shared by every caller.
    pub queue: usize,
}

impl Default for Layers {
    fn default() -> Self {
        Layers {
            timeout: None,
            retry: None,
            concurrency: None,
            rate: None,
            load_shed: false,
            queue: 1024,
        }
    }
}

impl Layers {
    /// Checks every setting, naming the first bad one and its value.
    pub fn validate(&self) -> Result<()> {
        if self.timeout == Some(Duration::ZERO) {
            return Err(Error::invalid("layers: timeout 0: must be at least 1 ms"));
        }
        if self.concurrency == Some(0) {
            return Err(Error::invalid("layers: concurrency 0: must be at least 1"));
        }
        if self.queue == 0 {
            return Err(Error::invalid("layers: queue 0: must be at least 1"));
        }
        if let Some(r) = &self.rate {
            if r.requests == 0 || r.per.is_zero() {
                return Err(Error::invalid(format!(
                    "layers: rate {} per {} ms: both must be at least 1",
                    r.requests,
                    r.per.as_millis()
                )));
            }
        }
        if let Some(r) = &self.retry {
            if r.attempts == 0 {
                return Err(Error::invalid(
                    "layers: retry attempts 0: must be at least 1 (1: no retry)",
                ));
            }
            if !(0.0..=1000.0).contains(&r.budget_percent) {
                return Err(Error::invalid(format!(
                    "layers: retry budget_percent {}: must be 0 to 1000",
                    r.budget_percent
                )));
            }
            ExponentialBackoffMaker::new(
                r.min_backoff,
                r.max_backoff,
                r.jitter,
                HasherRng::default(),
            )
            .map_err(|e| {
                Error::invalid(format!(
                    "layers: retry backoff {} to {} ms, jitter {}: {e}",
                    r.min_backoff.as_millis(),
                    r.max_backoff.as_millis(),
                    r.jitter
                ))
            })?;
        }
        Ok(())
    }

    /// Wraps `handler` in these layers. Must run inside a tokio runtime
    /// (the shared queue is a task).
    pub fn wrap<S, Req>(&self, handler: S) -> Result<Handler<Req, S::Response>>
    where
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        S::Response: Send + 'static,
        Req: Clone + Send + Sync + 'static,
    {
        self.validate()?;
        // Innermost first: the timeout bounds each attempt, retry repeats
        // attempts, the limits apply to calls (all their attempts).
        let svc = ServiceBuilder::new()
            .option_layer(self.timeout.map(tower::timeout::TimeoutLayer::new))
            .service(handler.map_err(Into::<BoxError>::into));
        let svc = svc.map_err(Into::<BoxError>::into);
        let svc = match &self.retry {
            Some(r) if r.attempts > 1 => {
                let policy = RetryPolicy::new(r);
                tower::util::Either::Left(
                    tower::retry::Retry::new(policy, svc).map_err(Into::<BoxError>::into),
                )
            }
            _ => tower::util::Either::Right(svc),
        };
        let svc = ServiceBuilder::new()
            .option_layer(
                self.rate
                    .map(|r| tower::limit::RateLimitLayer::new(r.requests, r.per)),
            )
            .option_layer(
                self.concurrency
                    .map(tower::limit::ConcurrencyLimitLayer::new),
            )
            .service(svc);
        let shared = tower::buffer::Buffer::new(svc.map_err(Into::<BoxError>::into), self.queue);
        let svc = ServiceBuilder::new()
            .option_layer(self.load_shed.then(tower::load_shed::LoadShedLayer::new))
            .service(shared)
            .map_err(Into::<BoxError>::into);
        Ok(BoxCloneSyncService::new(svc))
    }
}

/// tower's retry policy with our settings: retries while attempts and the
/// budget last, never a [`Permanent`] error.
#[derive(Clone)]
struct RetryPolicy {
    left: u32,
    backoff: ExponentialBackoff<HasherRng>,
    budget: Arc<TpsBudget>,
}

impl RetryPolicy {
    fn new(r: &RetrySettings) -> RetryPolicy {
        let mut maker = ExponentialBackoffMaker::new(
            r.min_backoff,
            r.max_backoff,
            r.jitter,
            HasherRng::default(),
        )
        .expect("validated by Layers::validate");
        RetryPolicy {
            left: r.attempts - 1,
            backoff: maker.make_backoff(),
            budget: Arc::new(TpsBudget::new(
                Duration::from_secs(10),
                r.budget_min_per_sec,
                r.budget_percent,
            )),
        }
    }
}

impl<Req: Clone, Res> tower::retry::Policy<Req, Res, BoxError> for RetryPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        _req: &mut Req,
        result: &mut std::result::Result<Res, BoxError>,
    ) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(e) => {
                if self.left == 0 || is_permanent(e.as_ref()) || !self.budget.withdraw() {
                    return None;
                }
                self.left -= 1;
                Some(Box::pin(self.backoff.next_backoff()))
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// What [`DefaultsLayer`] can fill in: a JSON object's missing members.
pub trait Defaultable {
    /// Sets every member of `defaults` that `self` lacks (or holds as
    /// null); members `self` has are kept.
    fn fill_defaults(&mut self, defaults: &serde_json::Map<String, serde_json::Value>);
}

impl Defaultable for serde_json::Value {
    fn fill_defaults(&mut self, defaults: &serde_json::Map<String, serde_json::Value>) {
        if self.is_null() {
            *self = serde_json::Value::Object(serde_json::Map::new());
        }
        if let serde_json::Value::Object(m) = self {
            for (k, v) in defaults {
                match m.get_mut(k) {
                    None | Some(serde_json::Value::Null) => {
                        m.insert(k.clone(), v.clone());
                    }
                    // Nested objects are defaulted member by member.
                    Some(have @ serde_json::Value::Object(_)) => {
                        if let serde_json::Value::Object(d) = v {
                            have.fill_defaults(d);
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

impl Defaultable for super::Event {
    /// An event's JSON data is defaulted; an event without data gets the
    /// defaults as its data; text or binary data is left alone.
    fn fill_defaults(&mut self, defaults: &serde_json::Map<String, serde_json::Value>) {
        let data = match self.data() {
            super::Data::None => serde_json::Value::Null,
            super::Data::Json(v) => v.clone(),
            _ => return,
        };
        let mut data = data;
        data.fill_defaults(defaults);
        *self = std::mem::replace(self, placeholder()).with_data(super::Data::Json(data));
    }
}

fn placeholder() -> super::Event {
    super::Event::new("-", "-", "-").expect("a valid placeholder event")
}

/// Request defaulting, the decorator pattern's first example: fills the
/// request's missing fields before the handler sees it.
#[derive(Debug, Clone)]
pub struct DefaultsLayer {
    defaults: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl DefaultsLayer {
    /// Defaults from a JSON object; anything else is an error naming it.
    pub fn new(defaults: serde_json::Value) -> Result<DefaultsLayer> {
        match defaults {
            serde_json::Value::Object(m) => Ok(DefaultsLayer {
                defaults: Arc::new(m),
            }),
            other => Err(Error::invalid(format!(
                "defaults {other}: must be a JSON object"
            ))),
        }
    }
}

impl<S> Layer<S> for DefaultsLayer {
    type Service = Defaults<S>;

    fn layer(&self, inner: S) -> Defaults<S> {
        Defaults {
            inner,
            defaults: self.defaults.clone(),
        }
    }
}

/// A handler behind [`DefaultsLayer`].
#[derive(Debug, Clone)]
pub struct Defaults<S> {
    inner: S,
    defaults: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl<S, Req> Service<Req> for Defaults<S>
where
    S: Service<Req>,
    Req: Defaultable,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Req) -> S::Future {
        req.fill_defaults(&self.defaults);
        self.inner.call(req)
    }
}

/// Durations as integer milliseconds in config files.
pub(crate) mod millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Optional durations as integer milliseconds in config files.
pub(crate) mod opt_millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
