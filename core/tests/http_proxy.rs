//! `shardkit http-proxy` end to end: real HTTP backends on loopback, the
//! proxy in front, requests from a real client. Placement equals the
//! sharder's for every algorithm (and so nginx's for `ketama:nginx`, which
//! compat_nginx.rs checks against nginx itself); shard keys from headers,
//! cookies, arguments and path prefixes; bodies streamed both ways; the
//! forwarding headers; a killed backend moves only its own keys and comes
//! back; 502 and 504 say why; reload without dropping; metrics; bad
//! settings named.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use shardkit::config::nginx;
use shardkit::http_proxy::{HttpProxy, HttpProxyConfig, KeySource};
use shardkit::shard::Algorithm;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A backend: answers with its own address and what it saw (a few
/// headers, the body's length), `/slow` after 2 s, `/big` with 1 MiB
/// chunked.
struct Backend {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Backend {
    async fn start(addr: Option<SocketAddr>) -> Backend {
        Backend::start_slow(addr, Duration::ZERO).await
    }

    /// A backend that takes `delay` over every answer.
    async fn start_slow(addr: Option<SocketAddr>, delay: Duration) -> Backend {
        Backend::start_with(addr, delay, false).await
    }

    /// With `hiccups`, it takes 800 ms over `/hiccup/...` requests (a GC
    /// pause, say), answering the rest at once.
    async fn start_with(addr: Option<SocketAddr>, delay: Duration, hiccups: bool) -> Backend {
        let l = tokio::net::TcpListener::bind(addr.unwrap_or("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (s, _) = tokio::select! {
                    r = l.accept() => r.unwrap(),
                    _ = stopped.changed() => break,
                };
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        if hiccups && req.uri().path().starts_with("/hiccup") {
                            tokio::time::sleep(Duration::from_millis(800)).await;
                        }
                        answer(addr, req).await
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
            // Killed: its open connections die with it.
            conns.abort_all();
        });
        Backend { addr, stop }
    }

    fn name(&self) -> String {
        self.addr.to_string()
    }

    fn kill(self) {
        let _ = self.stop.send(true);
    }
}

type AnyBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(me: SocketAddr, req: Request<Incoming>) -> Result<Response<AnyBody>, Infallible> {
    let path = req.uri().path().to_string();
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let seen = format!(
        "{me}\nxff={}\nproto={}\nvia={}\nhost={}\nconnection={}",
        h("x-forwarded-for"),
        h("x-forwarded-proto"),
        h("via"),
        h("host"),
        h("x-hop")
    );
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if path == "/big" {
        // 1 MiB in 64 chunks of 16 KiB, sent as they are made.
        let chunks = (0..64).map(|i| {
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![
                b'a' + (i % 26) as u8;
                16 << 10
            ])))
        });
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        return Ok(Response::new(body.boxed()));
    }
    let len = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    Ok(Response::new(
        Full::new(Bytes::from(format!("{seen}\nbody={len}"))).boxed(),
    ))
}

/// One request through a fresh keep-alive client connection.
async fn get(
    proxy: SocketAddr,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, hyper::HeaderMap) {
    let s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut b = Request::get(uri).header("host", "shop.example");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let resp = tx
        .send_request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let text = String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).to_string();
    (parts.status, text, parts.headers)
}

/// Sends every URI over one kept-alive connection; the answering backend
/// of each.
async fn placements(proxy: SocketAddr, uris: &[String]) -> Vec<String> {
    let s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for u in uris {
        let req = Request::get(u.as_str())
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        tx.ready().await.unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{u}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        out.push(
            String::from_utf8_lossy(&body)
                .lines()
                .next()
                .unwrap()
                .to_string(),
        );
    }
    out
}

fn uris(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("/item/{i}?v={}", i * 7 % 13))
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(list: &str) -> HttpProxyConfig {
    let mut c = HttpProxyConfig::new("127.0.0.1:0", list);
    c.threads = 2;
    c.probe_interval = Duration::from_millis(100);
    c
}

async fn backends(n: usize) -> Vec<Backend> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Backend::start(None).await);
    }
    out
}

#[test]
fn placement_equals_the_sharders_for_every_algorithm() {
    rt().block_on(async {
        let bs = backends(4).await;
        let list = format!(
            "{} weight=2, {}, {}, {}",
            bs[0].name(),
            bs[1].name(),
            bs[2].name(),
            bs[3].name()
        );
        let plain = bs.iter().map(Backend::name).collect::<Vec<_>>().join(",");
        let uris = uris(400);
        for algo in [
            "ketama:nginx",
            "ketama:uhashring",
            "rendezvous",
            "maglev",
            "jump",
            "jumpback",
            "memento",
            "bounded",
        ] {
            let algorithm = Algorithm::from_name(algo).unwrap();
            // Weightless algorithms get the list without weights.
            let list = if algorithm.weighted() {
                list.clone()
            } else {
                plain.clone()
            };
            let mut c = config(&list);
            c.algorithm = algorithm;
            c.shard_header = Some("X-Shard".into());
            let proxy = HttpProxy::start(c).unwrap();
            let want = nginx::parse_upstream_with(&list, algorithm).unwrap();
            let got = placements(proxy.listening(), &uris).await;
            let mut per_backend = std::collections::HashMap::new();
            for (u, g) in uris.iter().zip(&got) {
                assert_eq!(g, want.lookup(u.as_bytes()).unwrap().name(), "{algo}: {u}");
                *per_backend.entry(g.clone()).or_insert(0) += 1;
            }
            assert_eq!(
                per_backend.len(),
                4,
                "{algo}: every backend gets keys: {per_backend:?}"
            );
            let (_, _, headers) = get(proxy.listening(), &uris[0], &[]).await;
            assert_eq!(headers["x-shard"], got[0].as_str(), "{algo}");
            proxy.stop();
        }
    });
}

#[test]
fn keys_from_headers_cookies_arguments_and_path_prefixes() {
    rt().block_on(async {
        let bs = backends(3).await;
        let list = bs.iter().map(Backend::name).collect::<Vec<_>>().join(",");
        let ring = nginx::parse_upstream(&list).unwrap();
        let on = |k: &str| ring.lookup(k.as_bytes()).unwrap().name().to_string();
        for (spec, uri, headers, key) in [
            ("header:X-User", "/a/1", vec![("x-user", "ann")], "ann"),
            ("header:X-User", "/b/2?q", vec![("x-user", "ann")], "ann"),
            (
                "cookie:sid",
                "/c",
                vec![("cookie", "a=1; sid=s-77")],
                "s-77",
            ),
            ("arg:user", "/d?x=1&user=bob", vec![], "bob"),
            ("path:2", "/users/42/photos/9", vec![], "/users/42"),
            // No such header: the URI is the key.
            ("header:X-User", "/e/5", vec![], "/e/5"),
        ] {
            let mut c = config(&list);
            c.key = KeySource::parse(spec).unwrap();
            let proxy = HttpProxy::start(c).unwrap();
            let (status, body, _) = get(proxy.listening(), uri, &headers).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body.lines().next().unwrap(), on(key), "{spec} {uri}");
            proxy.stop();
        }
    });
}

#[test]
fn bodies_stream_both_ways_with_forwarding_headers() {
    rt().block_on(async {
        let bs = backends(2).await;
        let list = bs.iter().map(Backend::name).collect::<Vec<_>>().join(",");
        let proxy = HttpProxy::start(config(&list)).unwrap();
        // A 4 MiB chunked upload, sent as it is made.
        let s = tokio::net::TcpStream::connect(proxy.listening())
            .await
            .unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        let chunks =
            (0..256).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![7u8; 16 << 10]))));
        let req = Request::post("/upload")
            .header("host", "shop.example")
            .header("x-forwarded-for", "10.1.2.3")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "must not pass")
            .body(StreamBody::new(futures_util::stream::iter(chunks)))
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["via"], "1.1 shardkit");
        let body = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(body.contains("body=4194304"), "{body}");
        assert!(body.contains("xff=10.1.2.3, 127.0.0.1"), "{body}");
        assert!(body.contains("proto=http"), "{body}");
        assert!(body.contains("via=1.1 shardkit"), "{body}");
        assert!(body.contains("host=shop.example"), "{body}");
        assert!(
            body.contains("connection=-"),
            "hop-by-hop header passed: {body}"
        );
        // 1 MiB back, chunked.
        let (status, got, headers) = get(proxy.listening(), "/big", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["transfer-encoding"], "chunked");
        assert_eq!(got.len(), 1 << 20);
        proxy.stop();
    });
}

#[test]
fn a_killed_backend_moves_only_its_own_keys_and_comes_back() {
    rt().block_on(async {
        let mut bs = backends(3).await;
        let list = bs.iter().map(Backend::name).collect::<Vec<_>>().join(",");
        let proxy = HttpProxy::start(config(&list)).unwrap();
        let uris = uris(600);
        let before = placements(proxy.listening(), &uris).await;
        let victim = bs.remove(1);
        let (victim_name, victim_addr) = (victim.name(), victim.addr);
        victim.kill();
        // Every request still answers 200: the first to the dead backend is
        // refused, goes to the next one on the ring, and the backend is
        // marked down.
        let during = placements(proxy.listening(), &uris).await;
        let ring = nginx::parse_upstream(&list).unwrap();
        let without = ring.with_down(&victim_name, true).unwrap();
        let mut moved = 0;
        for ((u, b), d) in uris.iter().zip(&before).zip(&during) {
            if *b == victim_name {
                moved += 1;
                assert_eq!(d, without.lookup(u.as_bytes()).unwrap().name(), "{u}");
            } else {
                assert_eq!(b, d, "{u} moved though its backend is up");
            }
        }
        assert!(moved > 100, "{moved} keys were on the victim");
        assert!(proxy.metrics_text().contains(&format!(
            "shardkit_http_backend_up{{backend=\"{victim_name}\"}} 0"
        )));
        // It comes back on the same address: the probe finds it, its keys
        // return.
        let back = Backend::start(Some(victim_addr)).await;
        let t0 = Instant::now();
        loop {
            let now = placements(proxy.listening(), &uris).await;
            if now == before {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "keys never returned"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        back.kill();
        proxy.stop();
    });
}

#[test]
fn no_backend_is_502_and_a_slow_one_504_each_saying_why() {
    rt().block_on(async {
        let b = Backend::start(None).await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut c = config(&format!("{},{dead}", b.name()));
        c.response_timeout = Duration::from_millis(300);
        c.shard_header = Some("X-Shard".into());
        let proxy = HttpProxy::start(c).unwrap();
        let (status, body, _) = get(proxy.listening(), "/slow", &[]).await;
        // /slow's key may be on either: where it lands alive it times out.
        if status == StatusCode::GATEWAY_TIMEOUT {
            assert!(body.contains("did not answer within 300 ms"), "{body}");
            assert!(body.contains(&b.name()), "{body}");
        } else {
            panic!("{status}: {body}");
        }
        proxy.stop();
        // Nothing up at all: 502 naming each refusal.
        let mut c = config(&dead.to_string());
        c.tries = 1;
        let proxy = HttpProxy::start(c).unwrap();
        let (status, body, headers) = get(proxy.listening(), "/x", &[]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(
            body.contains(&dead.to_string()) && body.contains("refused"),
            "{body}"
        );
        assert_eq!(headers["via"], "1.1 shardkit");
        // Marked down now: the next request says no backend can take it.
        let (status, body, _) = get(proxy.listening(), "/y", &[]).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert!(body.contains("no backend"), "{body}");
        proxy.stop();
        b.kill();
    });
}

#[test]
fn reload_swaps_the_ring_and_a_bad_list_changes_nothing() {
    rt().block_on(async {
        let bs = backends(3).await;
        let two = format!("{},{}", bs[0].name(), bs[1].name());
        let three = format!("{two},{}", bs[2].name());
        let proxy = HttpProxy::start(config(&two)).unwrap();
        let uris = uris(300);
        // One connection kept open across the reload.
        let s = tokio::net::TcpStream::connect(proxy.listening())
            .await
            .unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        proxy.reload(&three).unwrap();
        let want = nginx::parse_upstream(&three).unwrap();
        for u in &uris {
            let req = Request::get(u.as_str())
                .header("host", "x")
                .body(Full::new(Bytes::new()))
                .unwrap();
            tx.ready().await.unwrap();
            let resp = tx.send_request(req).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let first = String::from_utf8_lossy(&body)
                .lines()
                .next()
                .unwrap()
                .to_string();
            assert_eq!(first, want.lookup(u.as_bytes()).unwrap().name());
        }
        let err = proxy
            .reload(&format!("{three}, 127.0.0.1:9 weight=0"))
            .unwrap_err();
        assert!(err.message().contains("weight=0"), "{err}");
        assert_eq!(proxy.upstream(), three);
        let metrics = proxy.metrics_text();
        assert!(
            metrics.contains("shardkit_http_requests_total 300"),
            "{metrics}"
        );
        proxy.stop();
    });
}

#[test]
fn metrics_are_served_on_their_own_listener() {
    rt().block_on(async {
        let b = Backend::start(None).await;
        let mut c = config(&b.name());
        c.metrics = Some("127.0.0.1:0".into());
        let proxy = HttpProxy::start(c).unwrap();
        get(proxy.listening(), "/a", &[]).await;
        let (status, body, _) = get(proxy.metrics_addr().unwrap(), "/metrics", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains(&format!(
                "shardkit_http_backend_responses_total{{backend=\"{}\",code=\"2xx\"}} 1",
                b.name()
            )),
            "{body}"
        );
        proxy.stop();
    });
}

#[test]
fn bad_settings_are_named() {
    let bad = |c: HttpProxyConfig, what: &str| {
        let e = HttpProxy::start(c).err().expect("refused");
        assert!(e.message().contains(what), "{what}: {e}");
    };
    bad(config("127.0.0.1:1 weight=x"), "weight=x");
    bad(config(""), "no servers");
    let mut c = config("127.0.0.1:1");
    c.tries = 0;
    bad(c, "tries 0");
    let mut c = config("127.0.0.1:1");
    c.replicas = 0;
    bad(c, "replicas 0");
    let mut c = config("127.0.0.1:1");
    c.listen = "nowhere:http".into();
    bad(c, "nowhere:http");
    let mut c = config("127.0.0.1:1");
    c.shard_header = Some("bad header".into());
    bad(c, "bad header");
    let mut c = config("127.0.0.1:1");
    c.max_header_bytes = 100;
    bad(c, "max_header_bytes 100");
    assert!(KeySource::parse("cookie:")
        .unwrap_err()
        .message()
        .contains("cookie:"));
}

#[test]
fn a_kept_alive_connection_the_backend_closed_is_retried_unseen() {
    rt().block_on(async {
        let b = Backend::start(None).await;
        let addr = b.addr;
        let proxy = HttpProxy::start(config(&b.name())).unwrap();
        let uris = uris(50);
        placements(proxy.listening(), &uris).await;
        // The backend restarts: every connection the proxy keeps is dead.
        b.kill();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let b = Backend::start(Some(addr)).await;
        for u in &uris {
            let (status, body, _) = get(proxy.listening(), u, &[]).await;
            assert_eq!(status, StatusCode::OK, "{u}: {body}");
        }
        let m = proxy.metrics_text();
        assert!(
            m.contains(&format!(
                "shardkit_http_backend_ejections_total{{backend=\"{}\"}} 0",
                b.name()
            )),
            "{m}"
        );
        proxy.stop();
        b.kill();
    });
}

#[test]
fn replicas_share_a_key_and_the_slow_one_gets_less() {
    rt().block_on(async {
        let mut bs = backends(3).await;
        bs.push(Backend::start_slow(None, Duration::from_millis(20)).await);
        let slow = bs[3].name();
        let list = bs.iter().map(Backend::name).collect::<Vec<_>>().join(",");
        let mut c = config(&list);
        c.replicas = 2;
        let proxy = HttpProxy::start(c).unwrap();
        let ring = nginx::parse_upstream(&list).unwrap();
        let uris = uris(200);
        let mut to_slow = 0usize;
        let mut could_go_slow = 0usize;
        // Each URI three times: every answer from one of its 2 replicas.
        for round in 0..3 {
            let got = placements(proxy.listening(), &uris).await;
            for (u, g) in uris.iter().zip(&got) {
                let reps: Vec<String> = ring
                    .lookup_n(u.as_bytes(), 2)
                    .unwrap()
                    .iter()
                    .map(|&s| ring.node(s).unwrap().name().to_string())
                    .collect();
                assert!(reps.contains(g), "{u}: {g} is not one of {reps:?}");
                if round > 0 && reps.contains(&slow) {
                    could_go_slow += 1;
                    to_slow += usize::from(*g == slow);
                }
            }
        }
        // Once measured, the slow replica loses nearly every draw.
        assert!(could_go_slow > 50, "{could_go_slow}");
        assert!(
            to_slow * 5 < could_go_slow,
            "the 20 ms replica took {to_slow} of {could_go_slow} requests it shared"
        );
        proxy.stop();
    });
}

#[test]
fn a_hedged_request_is_answered_by_the_other_replica() {
    rt().block_on(async {
        // The first is faster (so replica choice sends it the first
        // hiccups), but pauses on /hiccup; the second takes 5 ms always.
        let bs = [
            Backend::start_with(None, Duration::ZERO, true).await,
            Backend::start_slow(None, Duration::from_millis(5)).await,
        ];
        let list = bs.iter().map(Backend::name).collect::<Vec<_>>().join(",");
        let mut c = config(&list);
        c.replicas = 2;
        c.hedge = Some(shardkit::scatter::HedgeConfig {
            min_samples: 10,
            min_delay: Duration::from_millis(20),
            budget_ratio: 0.5,
            ..Default::default()
        });
        let proxy = HttpProxy::start(c).unwrap();
        // Samples for both backends' percentiles.
        placements(proxy.listening(), &uris(100)).await;
        let t0 = Instant::now();
        let mut hiccups = Vec::new();
        for i in 0..30 {
            hiccups.push(format!("/hiccup/{i}"));
        }
        let got = placements(proxy.listening(), &hiccups).await;
        let took = t0.elapsed();
        // Every one answered by the backend without the pause: those sent
        // to the paused one first were hedged after about 20 ms.
        assert!(got.iter().all(|g| *g == bs[1].name()), "{got:?}");
        let m = proxy.metrics_text();
        let won: u64 = m
            .lines()
            .find_map(|l| l.strip_prefix("shardkit_http_hedges_won_total "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(won >= 1, "{m}");
        // Not one waited out the 800 ms pause.
        assert!(took < Duration::from_millis(700), "{took:?}");
        eprintln!("30 requests in {took:?}, {won} answered by the hedge");
        proxy.stop();
        // A bodiless GET only: a POST is never sent twice.
        let mut c = config(&list);
        c.replicas = 2;
        c.hedge = Some(Default::default());
        c.hedge.as_mut().unwrap().budget_ratio = 2.0;
        let e = HttpProxy::start(c).err().unwrap();
        assert!(e.message().contains("budget_ratio"), "{e}");
    });
}

#[test]
fn a_get_failed_mid_request_goes_to_the_next_backend_and_a_post_does_not() {
    rt().block_on(async {
        // A backend that reads each request and hangs up without a word.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rude = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                });
            }
        });
        let good = Backend::start(None).await;
        let list = format!("{rude},{}", good.name());
        let proxy = HttpProxy::start(config(&list)).unwrap();
        let ring = nginx::parse_upstream(&list).unwrap();
        let on_rude = uris(200)
            .into_iter()
            .find(|u| ring.lookup(u.as_bytes()).unwrap().name() == rude.to_string())
            .unwrap();
        let (status, body, _) = get(proxy.listening(), &on_rude, &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body.lines().next().unwrap(), good.name());
        // A POST with a body is not sent twice: the backend may have acted.
        let s = tokio::net::TcpStream::connect(proxy.listening())
            .await
            .unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::post(on_rude.as_str())
            .header("host", "x")
            .body(Full::new(Bytes::from_static(b"order=1")))
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("failed mid-request"),
            "{body:?}"
        );
        proxy.stop();
        good.kill();
    });
}

/// Reads from `s` until `n` responses (each with a Content-Length body, or
/// none after HEAD) have come, or the connection closes; their heads and
/// bodies as text.
async fn read_responses(s: &mut tokio::net::TcpStream, heads: &[bool]) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    while out.len() < heads.len() {
        let end = buf[at..].windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(e) = end {
            let head = String::from_utf8_lossy(&buf[at..at + e + 4]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let len = if heads[out.len()] { 0 } else { len };
            if buf.len() >= at + e + 4 + len {
                let body = String::from_utf8_lossy(&buf[at + e + 4..at + e + 4 + len]).to_string();
                out.push(format!("{head}{body}"));
                at += e + 4 + len;
                continue;
            }
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    out
}

#[test]
fn pipelined_plain_requests_then_a_body_on_the_same_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt().block_on(async {
        let bs = backends(3).await;
        let list = bs.iter().map(Backend::name).collect::<Vec<_>>().join(",");
        let mut cfg = config(&list);
        cfg.shard_header = Some("x-shard".into());
        let proxy = HttpProxy::start(cfg).unwrap();
        let mut s = tokio::net::TcpStream::connect(proxy.listening())
            .await
            .unwrap();
        // Three GETs and a HEAD in one write: answered in order, each by
        // its key's backend, the HEAD without a body.
        let uris = ["/p/1", "/p/2", "/p/3"];
        let mut req = String::new();
        for u in uris {
            req += &format!("GET {u} HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n");
        }
        req += "HEAD /p/1 HTTP/1.1\r\nHost: h\r\n\r\n";
        s.write_all(req.as_bytes()).await.unwrap();
        let got = read_responses(&mut s, &[false, false, false, true]).await;
        assert_eq!(got.len(), 4, "{got:?}");
        let sharder = nginx::parse_upstream(&list).unwrap();
        for (u, r) in uris.iter().zip(&got) {
            let want = sharder.lookup(u.as_bytes()).unwrap().name().to_string();
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
            assert!(r.contains(&format!("x-shard: {want}\r\n")), "{u}: {r}");
            assert!(r.contains(&format!("\r\n\r\n{want}\n")), "{u}: {r}");
            assert!(r.contains("xff=10.9.9.9, 127.0.0.1"), "{r}");
            assert!(r.contains("via=1.1 shardkit"), "{r}");
        }
        assert!(
            got[3].starts_with("HTTP/1.1 200 OK\r\n") && got[3].ends_with("\r\n\r\n"),
            "{}",
            got[3]
        );
        // A POST with a body next, on the same connection: hyper's path
        // takes the connection over and the body arrives whole.
        s.write_all(b"POST /p/1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap();
        let got = read_responses(&mut s, &[false]).await;
        assert!(got[0].contains("body=5"), "{got:?}");
        // And a GET after it, still answered there.
        s.write_all(b"GET /p/2 HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let got = read_responses(&mut s, &[false]).await;
        assert!(got[0].starts_with("HTTP/1.1 200 OK\r\n"), "{got:?}");
        // A fresh connection asking to close: answered, told so, closed.
        let mut s = tokio::net::TcpStream::connect(proxy.listening())
            .await
            .unwrap();
        s.write_all(b"GET /p/3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_responses(&mut s, &[false]).await;
        assert!(
            got[0]
                .to_ascii_lowercase()
                .contains("connection: close\r\n"),
            "{got:?}"
        );
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "closed after the response");
        // A head split across writes, byte by byte at first, still parses.
        let mut s = tokio::net::TcpStream::connect(proxy.listening())
            .await
            .unwrap();
        for b in b"GET /p/1 HT" {
            s.write_all(&[*b]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        s.write_all(b"TP/1.1\r\nHost: h\r\n\r\n").await.unwrap();
        let got = read_responses(&mut s, &[false]).await;
        assert!(got[0].starts_with("HTTP/1.1 200 OK\r\n"), "{got:?}");
        // Garbage gets hyper's 400.
        let mut s = tokio::net::TcpStream::connect(proxy.listening())
            .await
            .unwrap();
        s.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(
            String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&rest)
        );
        proxy.stop();
    });
}

#[test]
fn bytes_a_backend_sends_after_a_response_never_meet_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    rt().block_on(async {
        // A backend that answers each request, then, a moment later, sends
        // bytes nobody asked for on the same connection (a body to a HEAD
        // sent late, a misbehaving server).
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(n) if n > 0 => {}
                            _ => return,
                        }
                        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 418 SMUGGLED\r\nContent-Length: 0\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        let proxy = HttpProxy::start(config(&addr.to_string())).unwrap();
        for i in 0..5 {
            let (status, body, _) = get(proxy.listening(), "/same", &[]).await;
            assert_eq!(status, StatusCode::OK, "request {i}: {body}");
            assert_eq!(body, "ok", "request {i}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        proxy.stop();
    });
}
