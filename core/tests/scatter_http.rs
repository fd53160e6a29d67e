//! The HTTP/JSON transport against real sockets: a small HTTP/1.1 server in
//! this file answers well, malformed, with a wrong status, slowly, or not
//! at all, and notices when the client hangs up on a call in progress.

use bytes::Bytes;
use serde_json::{json, Value};
use shardkit::scatter::http::HttpTransport;
use shardkit::scatter::{Coverage, GatherOptions, HedgeConfig, Scatter, ScatterConfig};
use shardkit::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// What the test server saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    /// Slow calls whose client hung up before the answer was due.
    hung_up: AtomicU64,
    /// Slow calls received.
    slow_started: AtomicU64,
    /// Slow calls answered in full.
    slow_answered: AtomicU64,
}

/// Serves on 127.0.0.1:0 until the runtime ends; returns its base URL.
async fn serve(seen: Arc<Seen>, slow: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(connection(sock, seen.clone(), slow));
        }
    });
    format!("http://{addr}")
}

async fn connection(mut sock: TcpStream, seen: Arc<Seen>, slow: Duration) {
    let mut buf = Vec::new();
    loop {
        // One request: head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
        buf.drain(..head_end + len);
        seen.requests.fetch_add(1, Ordering::SeqCst);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (status, answer) = match path.as_str() {
            "/echo" => (
                "200 OK",
                json!({"echo": serde_json::from_str::<Value>(&body).ok()}).to_string(),
            ),
            "/echo50" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                (
                    "200 OK",
                    json!({"echo": serde_json::from_str::<Value>(&body).ok()}).to_string(),
                )
            }
            "/malformed" => ("200 OK", "{\"hits\": [1, 2".to_string()),
            "/status500" => (
                "500 Internal Server Error",
                "{\"error\": \"index not loaded\"}".to_string(),
            ),
            "/status404" => ("404 Not Found", String::new()),
            "/slow" => {
                // Answer after `slow`, unless the client hangs up first
                // (a read of 0 bytes): that is the cancel the test wants.
                seen.slow_started.fetch_add(1, Ordering::SeqCst);
                let mut probe = [0u8; 1];
                tokio::select! {
                    _ = tokio::time::sleep(slow) => {
                        seen.slow_answered.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", json!({"slow": true}).to_string())
                    }
                    r = sock.read(&mut probe) => {
                        if matches!(r, Ok(0) | Err(_)) {
                            seen.hung_up.fetch_add(1, Ordering::SeqCst);
                        }
                        return;
                    }
                }
            }
            _ => ("404 Not Found", "no such path".to_string()),
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if sock.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn scatter(shards: &[Vec<String>]) -> Scatter<Bytes, Value> {
    let leaves = HttpTransport::new().leaves::<Value>(shards).unwrap();
    Scatter::new(leaves, ScatterConfig::default()).unwrap()
}

fn body(v: Value) -> Bytes {
    Bytes::from(v.to_string())
}

#[test]
fn answers_parse_and_coverage_is_complete() {
    rt().block_on(async {
        let seen = Arc::new(Seen::default());
        let base = serve(seen.clone(), Duration::from_secs(5)).await;
        let shards: Vec<Vec<String>> = (0..3).map(|_| vec![format!("{base}/echo")]).collect();
        let s = scatter(&shards);
        let got = s
            .gather(
                &body(json!({"q": "light"})),
                &GatherOptions::within(Duration::from_secs(5)),
            )
            .await
            .unwrap();
        assert_eq!(got.coverage(), (3, 3));
        assert!(!got.degraded());
        for (i, (leaf, answer)) in got.answers.iter().enumerate() {
            assert_eq!(*leaf, i);
            assert_eq!(answer, &json!({"echo": {"q": "light"}}));
        }
        let report = got.to_json();
        assert_eq!(report["answered"], 3);
        assert_eq!(report["total"], 3);
        assert_eq!(report["degraded"], false);
        assert_eq!(report["answers"][2]["leaf"], 2);
        // Keep-alive: 3 calls, then 3 more over the same pool.
        s.gather(
            &body(json!(1)),
            &GatherOptions::within(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        assert_eq!(seen.requests.load(Ordering::SeqCst), 6);
    });
}

#[test]
fn malformed_json_and_wrong_status_are_bad_responses_naming_the_leaf() {
    rt().block_on(async {
        let seen = Arc::new(Seen::default());
        let base = serve(seen, Duration::from_secs(5)).await;
        let shards = vec![
            vec![format!("{base}/echo")],
            vec![format!("{base}/malformed")],
            vec![format!("{base}/status500")],
            vec![format!("{base}/status404")],
        ];
        let s = scatter(&shards);
        let opts =
            GatherOptions::within(Duration::from_secs(5)).with_coverage(Coverage::BestEffort);
        let got = s.gather(&body(json!({})), &opts).await.unwrap();
        assert_eq!(got.coverage(), (1, 4));
        assert!(got.degraded());
        let missing: Vec<_> = got
            .missing
            .iter()
            .map(|(i, e)| (*i, e.kind(), e.message().to_string()))
            .collect();
        assert_eq!(missing.len(), 3);
        let (i, kind, msg) = &missing[0];
        assert_eq!((*i, *kind), (1, ErrorKind::BadResponse));
        assert!(
            msg.contains(&format!("{base}/malformed")) && msg.contains("malformed JSON"),
            "{msg}"
        );
        let (i, kind, msg) = &missing[1];
        assert_eq!((*i, *kind), (2, ErrorKind::BadResponse));
        assert!(
            msg.contains("500") && msg.contains("index not loaded"),
            "{msg}"
        );
        let (i, kind, msg) = &missing[2];
        assert_eq!((*i, *kind), (3, ErrorKind::BadResponse));
        assert!(msg.contains("404") && msg.contains("(empty body)"), "{msg}");
        let report = got.to_json();
        assert_eq!(report["missing"][0]["code"], 17);

        // Requiring every shard turns the same answers into an error.
        let e = s
            .gather(
                &body(json!({})),
                &GatherOptions::within(Duration::from_secs(5)),
            )
            .await
            .unwrap_err();
        // Fail-fast: the first bad answer ends the gather, the other calls
        // are cancelled, and the error says which shard answered badly.
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(
            e.message()
                .contains("bad response from a remote peer: leaf http://"),
            "{e}"
        );
    });
}

#[test]
fn a_refused_connection_is_unavailable() {
    rt().block_on(async {
        // Bind, note the port, close: nothing listens there now.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/search");
        let s = scatter(&[vec![url.clone()]]);
        let e = s
            .first(&body(json!({})), Instant::now() + Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.message().contains(&url), "{e}");
    });
}

#[test]
fn a_slow_leaf_is_cut_off_at_the_deadline_and_its_call_closed() {
    rt().block_on(async {
        let seen = Arc::new(Seen::default());
        let base = serve(seen.clone(), Duration::from_secs(3)).await;
        let shards = vec![
            vec![format!("{base}/echo")],
            vec![format!("{base}/slow")],
            vec![format!("{base}/echo")],
        ];
        let s = scatter(&shards);
        let opts =
            GatherOptions::within(Duration::from_millis(300)).with_coverage(Coverage::BestEffort);
        let t0 = Instant::now();
        let got = s.gather(&body(json!({})), &opts).await.unwrap();
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(1000), "took {took:?}");
        assert_eq!(got.coverage(), (2, 3));
        assert_eq!(got.missing[0].0, 1);
        assert_eq!(got.missing[0].1.kind(), ErrorKind::Timeout);
        // The dropped call closed its connection: the server sees the hang-up
        // well before the 3 s answer would have been due.
        let wait = Instant::now();
        while seen.hung_up.load(Ordering::SeqCst) == 0 && wait.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seen.hung_up.load(Ordering::SeqCst), 1);
        assert_eq!(seen.slow_answered.load(Ordering::SeqCst), 0);

        // k of n: 2 of 3 by the deadline is an answer, not an error, while
        // requiring all 3 is a timeout naming the slow shard.
        let opts =
            GatherOptions::within(Duration::from_millis(300)).with_coverage(Coverage::AtLeast(2));
        let got = s.gather(&body(json!({})), &opts).await.unwrap();
        assert_eq!(got.coverage(), (2, 3));
        let e = s
            .gather(
                &body(json!({})),
                &GatherOptions::within(Duration::from_millis(300)),
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(e.message().contains("shard-1"), "{e}");
    });
}

#[test]
fn tied_requests_drop_the_losing_copy_over_http() {
    rt().block_on(async {
        let seen = Arc::new(Seen::default());
        let base = serve(seen.clone(), Duration::from_secs(3)).await;
        let leaves = HttpTransport::new()
            .leaves::<Value>(&[vec![format!("{base}/echo50"), format!("{base}/slow")]])
            .unwrap();
        let config = ScatterConfig {
            tied: true,
            hedge: Some(HedgeConfig::default()),
            ..ScatterConfig::default()
        };
        let s = Scatter::new(leaves, config).unwrap();
        // Both copies go at once; the fast replica's answer (50 ms: time
        // for the other copy to connect and be sent) wins and the slow
        // copy's connection is closed, never answered.
        for _ in 0..10 {
            let t0 = Instant::now();
            let got = s
                .first(&body(json!(1)), Instant::now() + Duration::from_secs(2))
                .await
                .unwrap();
            assert_eq!(got, json!({"echo": 1}));
            assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        }
        let wait = Instant::now();
        // A copy dropped before its connection was up never reached the
        // server; every copy that did was hung up on.
        let started = || seen.slow_started.load(Ordering::SeqCst);
        while seen.hung_up.load(Ordering::SeqCst) < started()
            && wait.elapsed() < Duration::from_secs(2)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            started() >= 5,
            "only {} tied copies reached the slow replica",
            started()
        );
        assert_eq!(seen.hung_up.load(Ordering::SeqCst), started());
        assert_eq!(seen.slow_answered.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let t = HttpTransport::new();
    let e = t.leaves::<Value>(&[]).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::EmptyNodeSet);
    let e = t.leaves::<Value>(&[vec![]]).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("leaf 0"), "{e}");
    let e = t
        .leaves::<Value>(&[vec!["localhost:80".into()]])
        .err()
        .unwrap();
    assert!(e.message().contains("\"localhost:80\""), "{e}");
    rt().block_on(async {
        let s = scatter(&[vec!["http://127.0.0.1:9/x".into()]]);
        let past = GatherOptions {
            deadline: Instant::now() - Duration::from_millis(1),
            coverage: Coverage::RequireAll,
        };
        let e = s.gather(&body(json!({})), &past).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    });
}
