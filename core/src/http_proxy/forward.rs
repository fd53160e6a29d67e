//! One client request through the proxy: its shard key placed on the ring,
//! a connection to the key's backend (the next one on the ring when that
//! refuses, up to `tries`), the request streamed there with the
//! forwarding headers, and the response streamed back; or a 502 or 504
//! saying what failed.

use super::pool::{own, Pooled, ProxyBody, ReqBody};
use super::upstreams::{Backend, Members};
use super::Shared;
use crate::scatter::replica::p2c;
use http_body_util::{Either, Empty};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::Method;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::wire::{why, VIA};

/// [`wire::HOP_BY_HOP`](super::wire::HOP_BY_HOP) as header names, so that
/// removing them does not parse each name per request.
const HOP_BY_HOP: [HeaderName; 8] = {
    let n = super::wire::HOP_BY_HOP;
    [
        HeaderName::from_static(n[0]),
        HeaderName::from_static(n[1]),
        HeaderName::from_static(n[2]),
        HeaderName::from_static(n[3]),
        HeaderName::from_static(n[4]),
        HeaderName::from_static(n[5]),
        HeaderName::from_static(n[6]),
        HeaderName::from_static(n[7]),
    ]
};

/// Serves one request.
pub(crate) async fn forward(
    px: Arc<Shared>,
    client: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let members = px.upstreams.load();
    let key = px.cfg.key.key_or_uri(&parts);
    let live = members.ring.len();
    let replicas = px.cfg.replicas.min(live).max(1);
    let tries = px.cfg.tries.max(replicas).min(live);
    let mut slots = match members.ring.lookup_n(key, tries) {
        Ok(s) => s,
        Err(e) => {
            px.stats.no_backend.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::BAD_GATEWAY, why::no_ring(e));
        }
    };
    // Replicas: the key's first `replicas` nodes serve it alike; one is
    // chosen by power of two choices, the rest stay in ring order behind it.
    let n = replicas.min(slots.len());
    if n > 1 {
        let idx: Vec<usize> = (0..n).collect();
        let score = |i: usize| {
            members
                .backend(slots[i])
                .map_or(f64::MAX, |b| b.score.score())
        };
        if let Some(first) = p2c(&idx, score, &px.rng) {
            let chosen = slots.remove(first);
            slots.insert(0, chosen);
        }
    }
    strip_hop_by_hop(&mut parts.headers);
    add_forwarding(&mut parts.headers, client);
    // Origin form: the backend gets the path and query the client sent.
    if parts.uri.scheme().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        parts.uri = pq.parse().unwrap_or_default();
    }
    if let Some(delay) = hedge_delay(&px, &members, &slots, n, &parts.method, &body) {
        drop(body);
        return hedged(&px, &members, &slots, &parts, delay).await;
    }
    // A bodiless request of an idempotent method can be sent again: when a
    // backend fails it mid-request, the next one gets it (nginx's
    // `proxy_next_upstream error` for idempotent requests).
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if idempotent && body.is_end_stream() {
        drop(body);
        return in_order(&px, &members, &slots, copy(&parts), Some(&parts))
            .await
            .unwrap_or_else(|e| e);
    }
    let req = Request::from_parts(parts, Either::Left(body));
    in_order(&px, &members, &slots, req, None)
        .await
        .unwrap_or_else(|e| e)
}

/// When to hedge this request, if it may be: hedging is on, the key has
/// replicas, the method is safe to send twice (GET, HEAD, OPTIONS), there
/// is no body, and the first backend has enough recent samples for its
/// latency percentile.
fn hedge_delay(
    px: &Shared,
    members: &Members,
    slots: &[u32],
    replicas: usize,
    method: &Method,
    body: &Incoming,
) -> Option<Duration> {
    let h = px.cfg.hedge.as_ref()?;
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if replicas < 2 || slots.len() < 2 || !safe || !body.is_end_stream() {
        return None;
    }
    let first = members.backend(slots[0])?;
    let p = first.latency.percentile(h.percentile, h.min_samples)?;
    Some(p.max(h.min_delay))
}

/// A bodiless copy of the request (for hedging, which sends it twice).
fn copy(parts: &Parts) -> Request<ReqBody> {
    let mut r = Request::new(Either::Right(Empty::new()));
    *r.method_mut() = parts.method.clone();
    *r.uri_mut() = parts.uri.clone();
    *r.version_mut() = parts.version;
    *r.headers_mut() = parts.headers.clone();
    r
}

/// Sends the request down `slots` in order, and, when no answer has come
/// within `delay` and the budget allows, a copy down the same list starting
/// from the second replica; the first answer wins (the other copy is
/// dropped, closing its connection).
async fn hedged(
    px: &Arc<Shared>,
    members: &Members,
    slots: &[u32],
    parts: &Parts,
    delay: Duration,
) -> Response<ProxyBody> {
    px.hedge_budget.deposit();
    let first = in_order(px, members, slots, copy(parts), Some(parts));
    tokio::pin!(first);
    tokio::select! {
        r = &mut first => return r.unwrap_or_else(|e| e),
        _ = tokio::time::sleep(delay) => {}
    }
    if !px.hedge_budget.try_withdraw() {
        return first.await.unwrap_or_else(|e| e);
    }
    px.stats.hedges_sent.fetch_add(1, Ordering::Relaxed);
    let mut rest = slots.to_vec();
    rest.rotate_left(1);
    let second = in_order(px, members, &rest, copy(parts), Some(parts));
    tokio::pin!(second);
    // A copy that reached no backend waits for the other one.
    tokio::select! {
        r = &mut first => match r {
            Ok(resp) => resp,
            Err(e) => second.await.unwrap_or(e),
        },
        r = &mut second => match r {
            Ok(resp) => {
                px.stats.hedges_won.fetch_add(1, Ordering::Relaxed);
                resp
            }
            Err(e) => first.await.unwrap_or(e),
        },
    }
}

/// Tries `slots` in order: the first backend that takes a connection
/// answers (its response, or the proxy's 502/504 for a request it failed;
/// with `replay`, a request failed mid-way goes on to the next backend, as
/// a copy of those parts); `Err`: none could be reached, with the 502
/// saying why for each.
async fn in_order(
    px: &Shared,
    members: &Members,
    slots: &[u32],
    mut req: Request<ReqBody>,
    replay: Option<&Parts>,
) -> Result<Response<ProxyBody>, Response<ProxyBody>> {
    let mut failed: Vec<String> = Vec::new();
    for &slot in slots {
        let Some(b) = members.backend(slot) else {
            continue;
        };
        // A kept-alive connection the backend has closed meanwhile hands
        // the request back unsent: tried again on another (each attempt
        // drops a dead one, so this ends with a new connection).
        loop {
            let (sender, reused) = match b.pool.get(px.cfg.connect_timeout).await {
                Ok(s) => s,
                Err(why) => {
                    px.upstreams.connect_failed(b);
                    failed.push(why);
                    break;
                }
            };
            match send(px, b, sender, req).await {
                Sent::Answered(resp) => return Ok(resp),
                Sent::Failed(resp, why) => match replay {
                    Some(parts) => {
                        failed.push(why);
                        req = copy(parts);
                        break;
                    }
                    None => return Ok(resp),
                },
                Sent::Unsent(r, why) => {
                    req = r;
                    if !reused {
                        px.upstreams.connect_failed(b);
                        failed.push(why);
                        break;
                    }
                }
            }
        }
    }
    Err(error(StatusCode::BAD_GATEWAY, why::unreached(&failed)))
}

/// What became of a request put on a connection.
enum Sent {
    /// The backend's response, or the proxy's 504.
    Answered(Response<ProxyBody>),
    /// The connection failed with the request on its way: the proxy's 502,
    /// and why.
    Failed(Response<ProxyBody>, String),
    /// The connection failed before any of the request was written: the
    /// request, intact, and why.
    Unsent(Request<ReqBody>, String),
}

/// Sends the request on a connection to `b` and answers with its response
/// (streamed), or 504 when its headers do not come within the response
/// timeout, or 502 when the connection fails once the request is on its
/// way (not retried: the backend may have acted on it).
async fn send(
    px: &Shared,
    b: &Arc<Backend>,
    mut sender: hyper::client::conn::http1::SendRequest<ReqBody>,
    req: Request<ReqBody>,
) -> Sent {
    let started = std::time::Instant::now();
    // The latency score feeds replica choice and the histogram the hedging
    // delay: kept only when those are on, as every update is shared by the
    // worker threads (a cache line that moves between cores per request).
    let scored = px.cfg.replicas > 1;
    if scored {
        b.score.begin();
    }
    let mut in_flight = InFlight {
        b,
        started,
        done: !scored,
    };
    let got = tokio::time::timeout(px.cfg.response_timeout, sender.try_send_request(req)).await;
    in_flight.done = true;
    let resp = match got {
        Ok(Ok(r)) => {
            if scored {
                b.score.succeeded(started.elapsed());
            }
            if px.cfg.hedge.is_some() {
                b.latency.record(started.elapsed());
            }
            r
        }
        Ok(Err(mut e)) => {
            // A failure must not look fast: replica choice shuns it.
            if scored {
                b.score.failed(started.elapsed(), 0.0);
            }
            if let Some(req) = e.take_message() {
                return Sent::Unsent(req, format!("{}: {}", b.name, e.error()));
            }
            b.send_errors.fetch_add(1, Ordering::Relaxed);
            let why = why::mid_request(&b.name, e.error());
            return Sent::Failed(error(StatusCode::BAD_GATEWAY, why.clone()), why);
        }
        Err(_) => {
            if scored {
                b.score.failed(started.elapsed(), 0.0);
            }
            b.timeouts.fetch_add(1, Ordering::Relaxed);
            return Sent::Answered(error(
                StatusCode::GATEWAY_TIMEOUT,
                why::timed_out(&b.name, px.cfg.response_timeout),
            ));
        }
    };
    px.upstreams.answered(b);
    let class = (resp.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    b.answered[class].fetch_add(1, Ordering::Relaxed);
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    append(&mut parts.headers, hyper::header::VIA, VIA);
    if let Some(h) = &px.shard_header {
        if let Ok(v) = HeaderValue::from_str(&b.name) {
            parts.headers.insert(h.clone(), v);
        }
    }
    let body = Pooled::new(body, b.pool.clone(), sender);
    Sent::Answered(Response::from_parts(
        parts,
        http_body_util::Either::Left(body),
    ))
}

/// A request on its way to `b`: if its future is dropped first (the other
/// copy of a hedged request won), the time it ran still counts, as a lower
/// bound on the backend's latency, and it is no longer outstanding.
struct InFlight<'a> {
    b: &'a Backend,
    started: std::time::Instant,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.b.score.abandoned(self.started.elapsed());
        }
    }
}

/// A response of the proxy's own: the status and a line saying why.
pub(crate) fn error(status: StatusCode, why: String) -> Response<ProxyBody> {
    let mut r = Response::new(own(super::wire::own_body(&why)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(hyper::header::VIA, HeaderValue::from_static(VIA));
    r
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

/// X-Forwarded-For gets the client's address appended (the chain so far
/// kept), X-Forwarded-Proto says `http` unless an earlier proxy said
/// otherwise, and `Via` records this hop.
fn add_forwarding(h: &mut HeaderMap, client: SocketAddr) {
    let ip = client.ip().to_string();
    let xff = HeaderName::from_static("x-forwarded-for");
    let chain = h
        .get_all(&xff)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let value = if chain.is_empty() {
        ip
    } else {
        format!("{chain}, {ip}")
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(xff, v);
    }
    let proto = HeaderName::from_static("x-forwarded-proto");
    if !h.contains_key(&proto) {
        h.insert(proto, HeaderValue::from_static("http"));
    }
    append(h, hyper::header::VIA, VIA);
}

fn append(h: &mut HeaderMap, name: HeaderName, token: &'static str) {
    let value = match h.get(&name).and_then(|v| v.to_str().ok()) {
        Some(v) if !v.is_empty() => format!("{v}, {token}"),
        // The common case, without an allocation.
        _ => {
            h.insert(name, HeaderValue::from_static(token));
            return;
        }
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_extend_the_chain_and_drop_hop_by_hop_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("via", HeaderValue::from_static("1.0 edge"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        add_forwarding(&mut h, "127.0.0.9:5000".parse().unwrap());
        assert!(h.get("connection").is_none());
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["via"], "1.0 edge, 1.1 shardkit");
        assert_eq!(h["x-kept"], "yes");
    }
}
