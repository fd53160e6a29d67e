//! The proxy's settings, with the defaults nginx users expect.

use super::key::KeySource;
use crate::error::{Error, Result};
use crate::scatter::HedgeConfig;
use crate::shard::{Algorithm, KetamaMode};
use std::time::Duration;

/// How an [`super::HttpProxy`] runs.
#[derive(Debug, Clone)]
pub struct HttpProxyConfig {
    /// Where it listens (`host:port`; port 0 picks one).
    pub listen: String,
    /// The backends, in nginx upstream syntax: `host:port [weight=N]
    /// [down]`, separated by `,`, `;` or newlines.
    pub upstream: String,
    /// How keys are placed (default `ketama:nginx`: nginx's `hash ...
    /// consistent`).
    pub algorithm: Algorithm,
    /// Where a request's key comes from (default: its URI).
    pub key: KeySource,
    /// Backends tried for one request when connections are refused: the
    /// key's own, then the next ones on the ring (default 3).
    pub tries: usize,
    /// Backends holding each key (default 1): the key's first `replicas`
    /// nodes on the ring serve it alike, and each request goes to one of
    /// them chosen by power of two choices over their latency EWMA and
    /// requests in flight (the others, then the next nodes, are its
    /// fallbacks).
    pub replicas: usize,
    /// Hedged requests (with `replicas` of 2 or more): a bodiless GET, HEAD
    /// or OPTIONS still unanswered after its backend's recent `percentile`
    /// latency is sent to another replica too, and the first answer wins;
    /// the budget caps the extra load (the scatter engine's hedging). Off
    /// unless set.
    pub hedge: Option<HedgeConfig>,
    /// Connection refusals in a row that mark a backend down (default 1,
    /// nginx's `max_fails`).
    pub max_fails: u32,
    /// How often a downed backend is probed (a TCP connect) to bring it
    /// back (default 1 s).
    pub probe_interval: Duration,
    /// Connecting to a backend, at most (default 5 s).
    pub connect_timeout: Duration,
    /// Waiting for a backend's response headers, at most (default 60 s,
    /// nginx's `proxy_read_timeout`); then 504.
    pub response_timeout: Duration,
    /// Waiting for a client's request headers, at most (default 60 s,
    /// nginx's `client_header_timeout`).
    pub header_timeout: Duration,
    /// The largest request head (request line and headers) accepted, in
    /// bytes (default 32 KiB, nginx's `large_client_header_buffers 4 8k`).
    pub max_header_bytes: usize,
    /// Client connections at once, at most; more are closed on accept
    /// (default 10,000).
    pub max_connections: usize,
    /// A response header naming the backend chosen (for debugging), if set.
    pub shard_header: Option<String>,
    /// Where Prometheus metrics are served (`GET /metrics`), if set.
    pub metrics: Option<String>,
    /// Worker threads (0: [`crate::runtime::threads`]).
    pub threads: usize,
}

impl HttpProxyConfig {
    /// Listening on `listen` in front of `upstream`, with the defaults.
    pub fn new(listen: impl Into<String>, upstream: impl Into<String>) -> HttpProxyConfig {
        HttpProxyConfig {
            listen: listen.into(),
            upstream: upstream.into(),
            algorithm: Algorithm::Ketama(KetamaMode::Nginx),
            key: KeySource::Uri,
            tries: 3,
            replicas: 1,
            hedge: None,
            max_fails: 1,
            probe_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(60),
            max_header_bytes: 32 << 10,
            max_connections: 10_000,
            shard_header: None,
            metrics: None,
            threads: 0,
        }
    }

    /// Checks the settings, naming the first bad one and its value.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::invalid(format!("http-proxy: {what}")));
        if self.tries == 0 {
            return bad("tries 0: must be at least 1".into());
        }
        if !(1..=16).contains(&self.replicas) {
            return bad(format!("replicas {}: must be 1..=16", self.replicas));
        }
        if let Some(h) = &self.hedge {
            h.validate()
                .map_err(|e| Error::invalid(format!("http-proxy: {}", e.message())))?;
        }
        if self.max_connections == 0 {
            return bad("max_connections 0: must be at least 1".into());
        }
        if self.max_header_bytes < 8192 {
            return bad(format!(
                "max_header_bytes {}: must be at least 8192",
                self.max_header_bytes
            ));
        }
        for (what, d) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("header_timeout", self.header_timeout),
            ("probe_interval", self.probe_interval),
        ] {
            if d.is_zero() {
                return bad(format!("{what} 0: must be above 0"));
            }
        }
        if let Some(h) = &self.shard_header {
            if hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return bad(format!("shard_header {h:?}: not a valid header name"));
            }
        }
        Ok(())
    }
}
