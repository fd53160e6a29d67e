//! The proxy's counters, and the two ways they are read: Prometheus text
//! (`/metrics` on `--metrics-addr`) and nutcracker's JSON stats (on
//! `--stats-addr`, written to whoever connects, as nutcracker does), so
//! existing twemproxy monitoring keeps working.
//!
//! Counters are plain atomics bumped on the request path; the exposition is
//! generated from them when scraped. A metrics crate's labelled families
//! would put a map lookup behind a lock on every request, which is the
//! cost this proxy exists to avoid.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histograms' buckets, in seconds.
const BOUNDS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A cumulative latency histogram of fixed buckets (Prometheus's shape).
#[derive(Default)]
pub(crate) struct Latency {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_us: AtomicU64,
}

impl Latency {
    pub(crate) fn record(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BOUNDS.iter().position(|b| s <= *b).unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cum += b.load(Ordering::Relaxed);
            let le = BOUNDS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cum}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cum}");
    }
}

/// One backend server's counters (nutcracker's server stats and more).
#[derive(Default)]
pub(crate) struct BackendStats {
    pub requests: AtomicU64,
    pub request_bytes: AtomicU64,
    pub responses: AtomicU64,
    pub response_bytes: AtomicU64,
    /// Connect failures and garbled replies.
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    /// Connections the server closed.
    pub eof: AtomicU64,
    /// Open connections.
    pub connections: AtomicU64,
    /// Requests queued and not yet written.
    pub in_queue: AtomicU64,
    /// Replies served from the hot-key copy instead of this server.
    pub hot_hits: AtomicU64,
    pub latency: Latency,
}

/// One pool's counters.
#[derive(Default)]
pub(crate) struct PoolStats {
    pub client_connections: AtomicU64,
    pub total_connections: AtomicU64,
    pub client_eof: AtomicU64,
    pub client_err: AtomicU64,
    /// Client connections refused over `client_connections`.
    pub client_refused: AtomicU64,
    pub requests: AtomicU64,
    /// Requests answered with an error because a backend failed.
    pub forward_error: AtomicU64,
    /// Backend requests a multi-key request was split into.
    pub fragments: AtomicU64,
    /// Requests rejected as bad input.
    pub client_errors: AtomicU64,
    /// Times a reload changed this pool.
    pub reloads: AtomicU64,
    pub latency: Latency,
}

/// What a scrape reads of one backend (its health lives elsewhere).
pub(crate) struct BackendView<'a> {
    pub label: &'a str,
    pub stats: &'a BackendStats,
    pub ejected: bool,
    pub ejections: u64,
    pub ejected_at: u64,
}

/// What a scrape reads of one pool.
pub(crate) struct PoolView<'a> {
    pub name: &'a str,
    pub stats: &'a PoolStats,
    pub backends: Vec<BackendView<'a>>,
    /// The hottest keys now, with their estimated recent counts.
    pub hot_keys: Vec<(Vec<u8>, u64)>,
}

fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn key_label(k: &[u8]) -> String {
    let shown: String = k
        .iter()
        .take(64)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    label_value(&shown)
}

/// A counter's metric name, help text and where it lives in `S`.
type Counter<S> = (&'static str, &'static str, fn(&S) -> &AtomicU64);

/// The Prometheus text exposition of every pool.
pub(crate) fn prometheus(pools: &[PoolView<'_>]) -> String {
    let mut out = String::with_capacity(4096);
    let pool_counters: [Counter<PoolStats>; 9] = [
        ("shardkit_proxy_requests_total", "Client requests.", |s| {
            &s.requests
        }),
        (
            "shardkit_proxy_forward_errors_total",
            "Requests answered with an error because a backend failed.",
            |s| &s.forward_error,
        ),
        (
            "shardkit_proxy_fragments_total",
            "Backend requests that multi-key requests were split into.",
            |s| &s.fragments,
        ),
        (
            "shardkit_proxy_client_errors_total",
            "Requests rejected as bad input.",
            |s| &s.client_errors,
        ),
        (
            "shardkit_proxy_client_connections",
            "Client connections open now.",
            |s| &s.client_connections,
        ),
        (
            "shardkit_proxy_client_connections_total",
            "Client connections accepted.",
            |s| &s.total_connections,
        ),
        (
            "shardkit_proxy_client_refused_total",
            "Client connections refused over client_connections.",
            |s| &s.client_refused,
        ),
        (
            "shardkit_proxy_client_eof_total",
            "Client connections closed by the client.",
            |s| &s.client_eof,
        ),
        (
            "shardkit_proxy_reloads_total",
            "Reloads that changed the pool.",
            |s| &s.reloads,
        ),
    ];
    for (name, help, get) in pool_counters {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in pools {
            let v = get(p.stats).load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{pool=\"{}\"}} {v}", label_value(p.name));
        }
    }
    let name = "shardkit_proxy_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Client request latency through the proxy.\n# TYPE {name} histogram"
    );
    for p in pools {
        p.stats
            .latency
            .write(&mut out, name, &format!("pool=\"{}\"", label_value(p.name)));
    }
    let backend_counters: [Counter<BackendStats>; 9] = [
        (
            "shardkit_proxy_backend_requests_total",
            "Requests sent to the backend.",
            |s| &s.requests,
        ),
        (
            "shardkit_proxy_backend_request_bytes_total",
            "Request bytes sent to the backend.",
            |s| &s.request_bytes,
        ),
        (
            "shardkit_proxy_backend_responses_total",
            "Replies read from the backend.",
            |s| &s.responses,
        ),
        (
            "shardkit_proxy_backend_response_bytes_total",
            "Reply bytes read from the backend.",
            |s| &s.response_bytes,
        ),
        (
            "shardkit_proxy_backend_errors_total",
            "Connect failures and bad replies.",
            |s| &s.errors,
        ),
        (
            "shardkit_proxy_backend_timeouts_total",
            "Requests that timed out.",
            |s| &s.timeouts,
        ),
        (
            "shardkit_proxy_backend_eof_total",
            "Connections the backend closed.",
            |s| &s.eof,
        ),
        (
            "shardkit_proxy_backend_connections",
            "Connections open to the backend.",
            |s| &s.connections,
        ),
        (
            "shardkit_proxy_hot_key_hits_total",
            "Reads of the backend's keys served from the proxy's hot-key copy.",
            |s| &s.hot_hits,
        ),
    ];
    for (name, help, get) in backend_counters {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in pools {
            for b in &p.backends {
                let v = get(b.stats).load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}{{pool=\"{}\",backend=\"{}\"}} {v}",
                    label_value(p.name),
                    label_value(b.label)
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP shardkit_proxy_backend_ejected Whether the backend is ejected now.\n# TYPE shardkit_proxy_backend_ejected gauge");
    for p in pools {
        for b in &p.backends {
            let _ = writeln!(
                out,
                "shardkit_proxy_backend_ejected{{pool=\"{}\",backend=\"{}\"}} {}",
                label_value(p.name),
                label_value(b.label),
                u8::from(b.ejected)
            );
        }
    }
    let _ = writeln!(out, "# HELP shardkit_proxy_backend_ejections_total Times the backend was ejected.\n# TYPE shardkit_proxy_backend_ejections_total counter");
    for p in pools {
        for b in &p.backends {
            let _ = writeln!(
                out,
                "shardkit_proxy_backend_ejections_total{{pool=\"{}\",backend=\"{}\"}} {}",
                label_value(p.name),
                label_value(b.label),
                b.ejections
            );
        }
    }
    let name = "shardkit_proxy_backend_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Backend reply latency.\n# TYPE {name} histogram"
    );
    for p in pools {
        for b in &p.backends {
            b.stats.latency.write(
                &mut out,
                name,
                &format!(
                    "pool=\"{}\",backend=\"{}\"",
                    label_value(p.name),
                    label_value(b.label)
                ),
            );
        }
    }
    let _ = writeln!(out, "# HELP shardkit_proxy_hot_key_requests Estimated recent requests of each hot key.\n# TYPE shardkit_proxy_hot_key_requests gauge");
    for p in pools {
        for (k, n) in &p.hot_keys {
            let _ = writeln!(
                out,
                "shardkit_proxy_hot_key_requests{{pool=\"{}\",key=\"{}\"}} {n}",
                label_value(p.name),
                key_label(k)
            );
        }
    }
    out
}

/// nutcracker's stats JSON (`nc_stats.c`): service fields, then one object
/// per pool holding its counters and one object per server.
pub(crate) fn nutcracker_json(
    pools: &[PoolView<'_>],
    source: &str,
    uptime: Duration,
    now_unix: u64,
) -> String {
    use serde_json::{json, Map, Value};
    let mut root = Map::new();
    root.insert("service".into(), json!("nutcracker"));
    root.insert("source".into(), json!(source));
    root.insert(
        "version".into(),
        json!(format!("shardkit-{}", crate::VERSION)),
    );
    root.insert("uptime".into(), json!(uptime.as_secs()));
    root.insert("timestamp".into(), json!(now_unix));
    let total: u64 = pools
        .iter()
        .map(|p| p.stats.total_connections.load(Ordering::Relaxed))
        .sum();
    let curr: u64 = pools
        .iter()
        .map(|p| p.stats.client_connections.load(Ordering::Relaxed))
        .sum();
    root.insert("total_connections".into(), json!(total));
    root.insert("curr_connections".into(), json!(curr));
    for p in pools {
        let s = p.stats;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut pool = Map::new();
        pool.insert("client_eof".into(), json!(ld(&s.client_eof)));
        pool.insert("client_err".into(), json!(ld(&s.client_err)));
        pool.insert(
            "client_connections".into(),
            json!(ld(&s.client_connections)),
        );
        let ejects: u64 = p.backends.iter().map(|b| b.ejections).sum();
        pool.insert("server_ejects".into(), json!(ejects));
        pool.insert("forward_error".into(), json!(ld(&s.forward_error)));
        pool.insert("fragments".into(), json!(ld(&s.fragments)));
        for b in &p.backends {
            let t = b.stats;
            let server = json!({
                "server_eof": ld(&t.eof),
                "server_err": ld(&t.errors),
                "server_timedout": ld(&t.timeouts),
                "server_connections": ld(&t.connections),
                "server_ejected_at": b.ejected_at * 1_000_000,
                "requests": ld(&t.requests),
                "request_bytes": ld(&t.request_bytes),
                "responses": ld(&t.responses),
                "response_bytes": ld(&t.response_bytes),
                "in_queue": ld(&t.in_queue),
                "in_queue_bytes": 0,
                "out_queue": 0,
                "out_queue_bytes": 0,
            });
            pool.insert(b.label.to_string(), server);
        }
        root.insert(p.name.to_string(), Value::Object(pool));
    }
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_expositions_name_pools_and_backends() {
        let ps = PoolStats::default();
        ps.requests.fetch_add(5, Ordering::Relaxed);
        ps.latency.record(Duration::from_micros(300));
        let bs = BackendStats::default();
        bs.requests.fetch_add(3, Ordering::Relaxed);
        let views = vec![PoolView {
            name: "alpha",
            stats: &ps,
            backends: vec![BackendView {
                label: "cache-a",
                stats: &bs,
                ejected: true,
                ejections: 2,
                ejected_at: 7,
            }],
            hot_keys: vec![(b"hot\"key".to_vec(), 42)],
        }];
        let text = prometheus(&views);
        assert!(text.contains("shardkit_proxy_requests_total{pool=\"alpha\"} 5"));
        assert!(text.contains(
            "shardkit_proxy_backend_requests_total{pool=\"alpha\",backend=\"cache-a\"} 3"
        ));
        assert!(
            text.contains("shardkit_proxy_backend_ejected{pool=\"alpha\",backend=\"cache-a\"} 1")
        );
        assert!(text.contains(
            "shardkit_proxy_request_duration_seconds_bucket{pool=\"alpha\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains("key=\"hot\\\\\\\"key\"} 42"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&nutcracker_json(&views, "host", Duration::from_secs(9), 1))
                .unwrap();
        assert_eq!(json["service"], "nutcracker");
        assert_eq!(json["alpha"]["server_ejects"], 2);
        assert_eq!(json["alpha"]["cache-a"]["requests"], 3);
    }
}
