//! Functions over HTTP (a stage's handler is a URL, Knative style) against
//! a real HTTP server on loopback, and effectively-once handling with the
//! idempotency helper.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use shardkit::pipeline::stage::dead_letter_attr;
use shardkit::pipeline::{
    BoxError, Data, Event, HttpFunction, IdempotentLayer, Memory, MemorySeen, SeenStore, Stage,
    StageConfig, Transport,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What the test function saw: event ids in arrival order.
type Seen = Arc<Mutex<Vec<String>>>;

/// A function server: `signup` events get a binary-mode reply event,
/// `welcome` a structured one; `flaky` fails with 503 twice per event;
/// `bad` is refused with 422; anything else gets 204.
async fn serve_function(listener: tokio::net::TcpListener, seen: Seen) {
    let tries: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    loop {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (seen, tries) = (seen.clone(), tries.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (seen, tries) = (seen.clone(), tries.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let pairs: Vec<(&str, &[u8])> = parts
                            .headers
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_bytes()))
                            .collect();
                        let event = Event::from_http_binary(pairs, body).unwrap();
                        seen.lock().unwrap().push(event.id().to_string());
                        let n = {
                            let mut t = tries.lock().unwrap();
                            let n = t.entry(event.id().to_string()).or_default();
                            *n += 1;
                            *n
                        };
                        let resp = hyper::Response::builder();
                        let resp = match event.ty() {
                            "user.created" => {
                                let reply = Event::new(
                                    format!("welcome-{}", event.id()),
                                    "/fn",
                                    "email.requested",
                                )
                                .unwrap()
                                .with_extension("partitionkey", event.key())
                                .unwrap()
                                .with_data(Data::Json(json!({"to": event.key()})));
                                let (headers, body) = reply.to_http_binary();
                                let mut r = resp.status(200);
                                for (k, v) in headers {
                                    r = r.header(k, v);
                                }
                                r.body(Full::new(body))
                            }
                            "user.welcome" => {
                                let reply = Event::new(
                                    format!("s-{}", event.id()),
                                    "/fn",
                                    "structured.reply",
                                )
                                .unwrap();
                                resp.status(200)
                                    .header("content-type", "application/cloudevents+json")
                                    .body(Full::new(Bytes::from(reply.to_json())))
                            }
                            "flaky" if n <= 2 => {
                                resp.status(503).body(Full::new(Bytes::from("busy")))
                            }
                            // A reply that claims to be an event and is not.
                            "garbled" => resp
                                .status(200)
                                .header("content-type", "application/cloudevents+json")
                                .body(Full::new(Bytes::from("{\"specversion\":\"0.3\"}"))),
                            "bad" => resp
                                .status(422)
                                .body(Full::new(Bytes::from("no such plan"))),
                            _ => resp.status(204).body(Full::new(Bytes::new())),
                        };
                        Ok::<_, std::convert::Infallible>(resp.unwrap())
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
        });
    }
}

fn cfg(name: &str, topic: &str) -> StageConfig {
    let mut c = StageConfig::new(name, topic);
    c.min_backoff = Duration::from_millis(5);
    c.max_backoff = Duration::from_millis(50);
    c.max_attempts = 4;
    c.visibility = Duration::from_secs(5);
    c.lease = Duration::from_millis(300);
    c
}

async fn until(limit: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn a_function_url_handles_events_and_its_replies_are_emitted() {
    rt().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/fn", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let server = tokio::spawn(serve_function(listener, seen.clone()));
        let t: Arc<dyn Transport> = Arc::new(Memory::new(2, 1000).unwrap());
        let mut c = cfg("fn", "users");
        c.reply_topic = Some("emails".into());
        let f = HttpFunction::new(&url).unwrap();
        let stage = Stage::start(t.clone(), c, BoxCloneSyncService::new(f)).unwrap();
        let ev = |id: &str, ty: &str| Event::new(id, "/test", ty).unwrap();
        t.publish(
            "users",
            vec![
                ev("u1", "user.created")
                    .with_extension("partitionkey", "ann")
                    .unwrap(),
                ev("u2", "user.welcome"),
                ev("u3", "flaky"),
                ev("u4", "bad"),
                ev("u5", "other"),
                ev("u6", "garbled"),
            ],
        )
        .await
        .unwrap();
        let stats = stage.stats();
        until(
            Duration::from_secs(10),
            || {
                stats.handled.load(Ordering::Relaxed) == 4
                    && stats.dead_lettered.load(Ordering::Relaxed) == 2
            },
            "4 handled, 1 refused and 1 bad reply",
        )
        .await;
        stage.stop(Duration::from_secs(2)).await;
        // The flaky one took three tries; the refused one one.
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.iter().filter(|i| *i == "u3").count(), 3);
        assert_eq!(seen.iter().filter(|i| *i == "u4").count(), 1);
        let emitted = t.peek("emails", 10).await.unwrap();
        let mut ids: Vec<&str> = emitted.iter().map(|d| d.event.id()).collect();
        ids.sort();
        assert_eq!(ids, vec!["s-u2", "welcome-u1"]);
        let welcome = emitted
            .iter()
            .find(|d| d.event.id() == "welcome-u1")
            .unwrap();
        assert_eq!(welcome.event.key(), "ann");
        assert_eq!(welcome.event.data(), &Data::Json(json!({"to": "ann"})));
        let dead = t.peek("users.dlq", 10).await.unwrap();
        assert_eq!(dead.len(), 2);
        let dead_of = |id: &str| dead.iter().find(|d| d.event.id() == id).unwrap();
        assert_eq!(
            dead_of("u4").event.extension(dead_letter_attr::REASON),
            Some("permanent")
        );
        let why = dead_of("u4")
            .event
            .extension(dead_letter_attr::ERROR)
            .unwrap();
        assert!(why.contains("422") && why.contains("no such plan"), "{why}");
        // A reply that is not an event is not retried (the function ran):
        // dead-lettered at once, saying why.
        let why = dead_of("u6")
            .event
            .extension(dead_letter_attr::ERROR)
            .unwrap();
        assert!(why.contains("bad event") && why.contains("0.3"), "{why}");
        assert_eq!(seen.iter().filter(|i| *i == "u6").count(), 1);
        server.abort();
    });
}

#[test]
fn events_wait_while_the_function_is_down_and_none_is_lost() {
    rt().block_on(async {
        // A port with nothing on it yet: the function is "killed".
        let addr: SocketAddr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let t: Arc<dyn Transport> = Arc::new(Memory::new(2, 1000).unwrap());
        let mut c = cfg("fn", "orders");
        c.max_attempts = 1000;
        c.max_backoff = Duration::from_millis(20);
        let f = HttpFunction::new(&format!("http://{addr}/")).unwrap();
        let stage = Stage::start(t.clone(), c, BoxCloneSyncService::new(f)).unwrap();
        let events: Vec<Event> = (0..50)
            .map(|i| Event::new(format!("o{i}"), "/test", "order.placed").unwrap())
            .collect();
        t.publish("orders", events).await.unwrap();
        let stats = stage.stats();
        until(
            Duration::from_secs(5),
            || stats.failures.load(Ordering::Relaxed) >= 10,
            "failed attempts",
        )
        .await;
        assert_eq!(stats.handled.load(Ordering::Relaxed), 0);
        assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
        // The function comes back on its port.
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let seen: Seen = Arc::default();
        let server = tokio::spawn(serve_function(listener, seen.clone()));
        until(
            Duration::from_secs(20),
            || stats.handled.load(Ordering::Relaxed) == 50,
            "all 50 handled",
        )
        .await;
        stage.stop(Duration::from_secs(2)).await;
        assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
        server.abort();
    });
}

#[test]
fn a_bad_function_url_is_named() {
    for (url, want) in [
        ("ftp://x/", "scheme \"ftp\""),
        ("localhost:80", "function URL \"localhost:80\""),
        ("http:///nohost", "function URL"),
    ] {
        let err = HttpFunction::new(url).unwrap_err();
        assert!(err.message().contains(want), "{url}: {err}");
    }
}

#[test]
fn the_idempotency_helper_suppresses_redelivered_duplicates() {
    rt().block_on(async {
        let runs = Arc::new(AtomicUsize::new(0));
        let r2 = runs.clone();
        let inner = service_fn(move |_e: Event| {
            let runs = r2.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(vec![])
            }
        });
        let store: Arc<dyn SeenStore> = Arc::new(MemorySeen::default());
        let layer = IdempotentLayer::new(store, "billing", Duration::from_secs(60));
        let dups = layer.duplicates();
        let h = BoxCloneSyncService::new(layer.layer(inner));
        let t: Arc<dyn Transport> = Arc::new(Memory::new(2, 1000).unwrap());
        let stage = Stage::start(t.clone(), cfg("billing", "charges"), h).unwrap();
        // Every event published twice, as a redelivery would bring it back.
        let events: Vec<Event> = (0..100)
            .flat_map(|i| {
                let e = Event::new(format!("c{i}"), "/shop", "charge").unwrap();
                [e.clone(), e]
            })
            .collect();
        t.publish("charges", events).await.unwrap();
        let stats = stage.stats();
        until(
            Duration::from_secs(10),
            || stats.handled.load(Ordering::Relaxed) == 200,
            "all deliveries",
        )
        .await;
        stage.stop(Duration::from_secs(2)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 100, "each charge ran once");
        assert_eq!(dups.load(Ordering::Relaxed), 100);
    });
}
