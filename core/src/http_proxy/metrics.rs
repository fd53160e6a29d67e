//! The proxy's counters in Prometheus text format, served at `/metrics` on
//! a listener of their own (so no backend path is shadowed).

use super::pool::{own, ProxyBody};
use super::Shared;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

/// The exposition.
pub(crate) fn render(px: &Shared) -> String {
    let mut out = String::new();
    let s = &px.stats;
    let mut gauge = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    gauge(
        "shardkit_http_connections",
        "gauge",
        "Client connections open.",
        s.connections.load(Ordering::Relaxed),
    );
    gauge(
        "shardkit_http_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        s.accepted.load(Ordering::Relaxed),
    );
    gauge(
        "shardkit_http_connections_refused_total",
        "counter",
        "Client connections closed on accept (over max_connections).",
        s.refused.load(Ordering::Relaxed),
    );
    gauge(
        "shardkit_http_requests_total",
        "counter",
        "Client requests received.",
        s.requests.load(Ordering::Relaxed),
    );
    gauge(
        "shardkit_http_hedges_sent_total",
        "counter",
        "Hedged copies sent to a second replica.",
        s.hedges_sent.load(Ordering::Relaxed),
    );
    gauge(
        "shardkit_http_hedges_won_total",
        "counter",
        "Requests the hedged copy answered first.",
        s.hedges_won.load(Ordering::Relaxed),
    );
    gauge(
        "shardkit_http_no_backend_total",
        "counter",
        "Requests answered 502 because every backend of the key was down.",
        s.no_backend.load(Ordering::Relaxed),
    );
    let members = px.upstreams.load();
    let _ = writeln!(
        out,
        "# HELP shardkit_http_backend_responses_total Backend responses by status class.\n\
         # TYPE shardkit_http_backend_responses_total counter"
    );
    for b in members.backends() {
        for (i, n) in b.answered.iter().enumerate() {
            let _ = writeln!(
                out,
                "shardkit_http_backend_responses_total{{backend=\"{}\",code=\"{}xx\"}} {}",
                b.name,
                i + 1,
                n.load(Ordering::Relaxed)
            );
        }
    }
    for (name, help, f) in [
        (
            "shardkit_http_backend_connect_errors_total",
            "Connections to the backend that failed.",
            (|b| b.connect_errors.load(Ordering::Relaxed)) as fn(&super::upstreams::Backend) -> u64,
        ),
        (
            "shardkit_http_backend_send_errors_total",
            "Requests that failed once sent.",
            |b| b.send_errors.load(Ordering::Relaxed),
        ),
        (
            "shardkit_http_backend_timeouts_total",
            "Requests answered 504.",
            |b| b.timeouts.load(Ordering::Relaxed),
        ),
        (
            "shardkit_http_backend_ejections_total",
            "Times the backend was marked down.",
            |b| b.ejections.load(Ordering::Relaxed),
        ),
        ("shardkit_http_backend_up", "1 unless marked down.", |b| {
            u64::from(!b.is_ejected())
        }),
        (
            "shardkit_http_backend_idle_connections",
            "Kept-alive connections waiting.",
            |b| b.pool.idle() as u64,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for b in members.backends() {
            let _ = writeln!(out, "{name}{{backend=\"{}\"}} {}", b.name, f(b));
        }
    }
    out
}

/// Serves `GET /metrics` until stopped.
pub(crate) async fn serve(
    px: Arc<Shared>,
    l: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (s, _) = tokio::select! {
            _ = stop.changed() => return,
            r = l.accept() => match r {
                Ok(c) => c,
                Err(_) => continue,
            },
        };
        let px = px.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let px = px.clone();
                async move {
                    let mut r: Response<ProxyBody> = if req.uri().path() == "/metrics" {
                        Response::new(own(render(&px)))
                    } else {
                        let mut r = Response::new(own("not found: try /metrics\n"));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}
