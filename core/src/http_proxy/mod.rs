//! The consistent HTTP sharding proxy (`shardkit http-proxy`): an HTTP/1.1
//! reverse proxy that sends each request to the backend its shard key
//! hashes to, as nginx's `hash $request_uri consistent` does (and with the
//! same placement, by default), or by any other shardkit algorithm.
//!
//! ```no_run
//! use shardkit::http_proxy::{HttpProxy, HttpProxyConfig};
//! let cfg = HttpProxyConfig::new("127.0.0.1:8080", "127.0.0.1:8081, 127.0.0.1:8082 weight=2");
//! let proxy = HttpProxy::start(cfg)?;
//! println!("{}", proxy.listening());
//! proxy.stop();
//! # Ok::<(), shardkit::Error>(())
//! ```
//!
//! Membership is a static list, a file reloaded on SIGHUP (the CLI), or a
//! group of backends registered in etcd under leases (`membership`).
//!
//! The parts, each in its file: where a request's key comes from (`key`),
//! the backends, their ring and health (`upstreams`), connections to a
//! backend (`pool`), one request's way through hyper (`forward`), plain
//! GETs and HEADs forwarded by hand (`direct`, over the heads and framing
//! in `wire`), listeners and client connections (`serve`), counters
//! (`metrics`).
//!
//! - **Streaming.** Request and response bodies pass through as they come
//!   (chunked or sized), never buffered whole; connections to backends are
//!   kept alive and reused.
//! - **Replicas.** With `replicas` N, a key's first N nodes on the ring
//!   serve it alike; each request goes to one of them by power of two
//!   choices over latency EWMA and requests in flight (the scatter
//!   engine's replica choice), the others being its fallbacks.
//! - **Hedging.** With `hedge` set and replicas, a bodiless GET, HEAD or
//!   OPTIONS still unanswered after its backend's recent p95 (by default)
//!   goes to a second replica too; the first answer wins, and a budget
//!   caps the extra load at 5% of requests (the scatter engine's).
//! - **Failover.** A backend that refuses a connection is skipped for the
//!   next one on the ring (up to `tries`, as nginx's `proxy_next_upstream
//!   error`); one that refuses `max_fails` in a row is marked down, which
//!   moves only its own keys, until a probe finds it accepting again. A
//!   request already sent is not retried (the backend may have acted).
//! - **Errors** are the proxy's own 502 (no backend reached, or one failed
//!   mid-request) and 504 (no response within `response_timeout`), with a
//!   body saying which backend and why.

mod config;
mod direct;
mod forward;
mod key;
pub mod membership;
mod metrics;
mod pool;
mod serve;
mod upstreams;
mod wire;

pub use config::HttpProxyConfig;
pub use key::KeySource;
pub use serve::HttpProxy;

use hyper::header::HeaderName;
use std::sync::atomic::AtomicU64;

/// What every connection of one proxy shares.
pub(crate) struct Shared {
    pub(crate) cfg: HttpProxyConfig,
    pub(crate) upstreams: upstreams::Upstreams,
    pub(crate) shard_header: Option<HeaderName>,
    pub(crate) stats: ProxyStats,
    /// Draws for replica choice.
    pub(crate) rng: crate::scatter::replica::Rng,
    /// Pays for hedged copies (see [`HttpProxyConfig::hedge`]).
    pub(crate) hedge_budget: crate::scatter::hedge::Budget,
}

/// The proxy's own counters (per-backend ones live with each backend).
#[derive(Default)]
pub(crate) struct ProxyStats {
    pub(crate) connections: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) no_backend: AtomicU64,
    pub(crate) hedges_sent: AtomicU64,
    pub(crate) hedges_won: AtomicU64,
}
