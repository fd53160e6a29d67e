//! The decorator pattern: tower's layers in front of a handler, configured
//! by `Layers`, and request defaulting. Plain JSON requests, not events:
//! the layers are not only for events.

use serde_json::{json, Value};
use shardkit::pipeline::{BoxError, DefaultsLayer, Layers, Permanent, Rate, RetrySettings};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::{service_fn, Layer, ServiceExt};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn request_defaulting_fills_only_what_is_missing() {
    let echo = service_fn(|v: Value| async move { Ok::<_, BoxError>(v) });
    let svc = DefaultsLayer::new(json!({"lang": "en", "page": {"size": 20, "n": 1}, "tz": "UTC"}))
        .unwrap()
        .layer(echo);
    let got = rt()
        .block_on(svc.oneshot(json!({"lang": "fr", "page": {"n": 3}, "tz": null})))
        .unwrap();
    assert_eq!(
        got,
        json!({"lang": "fr", "page": {"size": 20, "n": 3}, "tz": "UTC"})
    );
    let err = DefaultsLayer::new(json!([1, 2])).unwrap_err();
    assert!(err.message().contains("[1,2]"), "{err}");
}

#[test]
fn timeout_bounds_each_call() {
    let rt = rt();
    let slow = service_fn(|_: Value| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, BoxError>(json!(1))
    });
    let layers = Layers {
        timeout: Some(Duration::from_millis(50)),
        ..Layers::default()
    };
    let t0 = Instant::now();
    let err = rt
        .block_on(async { layers.wrap(slow).unwrap().oneshot(json!(0)).await })
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(
        err.to_string().contains("timed out") || err.to_string().contains("elapsed"),
        "{err}"
    );
}

#[test]
fn retry_repeats_failures_up_to_its_attempts_and_never_a_permanent_error() {
    let rt = rt();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    // Fails twice, then works.
    let flaky = service_fn(move |_: Value| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err::<Value, BoxError>(format!("flake {n}").into())
            } else {
                Ok(json!("ok"))
            }
        }
    });
    let layers = Layers {
        retry: Some(RetrySettings {
            attempts: 3,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetrySettings::default()
        }),
        ..Layers::default()
    };
    let got = rt.block_on(async { layers.wrap(flaky).unwrap().oneshot(json!(0)).await });
    assert_eq!(got.unwrap(), json!("ok"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Always failing: exactly `attempts` calls, then the last error.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let broken = service_fn(move |_: Value| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<Value, BoxError>("down".into()) }
    });
    let err = rt
        .block_on(async { layers.wrap(broken).unwrap().oneshot(json!(0)).await })
        .unwrap_err();
    assert_eq!(err.to_string(), "down");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A permanent error is not retried.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let refuses = service_fn(move |_: Value| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<Value, BoxError>(Box::new(Permanent("bad input".into()))) }
    });
    let err = rt
        .block_on(async { layers.wrap(refuses).unwrap().oneshot(json!(0)).await })
        .unwrap_err();
    assert_eq!(err.to_string(), "bad input");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn the_retry_budget_caps_retries_when_everything_fails() {
    let rt = rt();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let broken = service_fn(move |_: Value| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<Value, BoxError>("down".into()) }
    });
    let layers = Layers {
        retry: Some(RetrySettings {
            attempts: 10,
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            jitter: 0.0,
            budget_percent: 0.1,
            budget_min_per_sec: 1,
        }),
        ..Layers::default()
    };
    let svc = rt.block_on(async { layers.wrap(broken) }).unwrap();
    let requests = 200;
    rt.block_on(async {
        for _ in 0..requests {
            let _ = svc.clone().oneshot(json!(0)).await;
        }
    });
    let calls = calls.load(Ordering::SeqCst);
    // Without a budget: 2,000 calls. With 10% plus a floor of 1/s (10 s
    // window): at most about 200 + 10% + 10.
    assert!(calls >= requests, "{calls}");
    assert!(
        calls <= requests + requests / 10 + 15,
        "{calls} calls: the budget did not hold"
    );
}

#[test]
fn concurrency_limit_and_load_shedding() {
    let rt = rt();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n2, p2) = (now.clone(), peak.clone());
    let slow = service_fn(move |_: Value| {
        let (n, p) = (n2.clone(), p2.clone());
        async move {
            let cur = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(cur, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            n.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, BoxError>(json!(1))
        }
    });
    let layers = Layers {
        concurrency: Some(3),
        ..Layers::default()
    };
    rt.block_on(async {
        let svc = layers.wrap(slow.clone()).unwrap();
        let calls: Vec<_> = (0..20).map(|_| svc.clone().oneshot(json!(0))).collect();
        for r in futures_join(calls).await {
            r.unwrap();
        }
    });
    assert_eq!(peak.load(Ordering::SeqCst), 3);

    // Shedding: with one call in flight and a queue of 1, the rest are
    // refused at once instead of waiting.
    let layers = Layers {
        concurrency: Some(1),
        queue: 1,
        load_shed: true,
        ..Layers::default()
    };
    let (ok, shed) = rt.block_on(async {
        let svc = layers.wrap(slow).unwrap();
        let calls: Vec<_> = (0..20).map(|_| svc.clone().oneshot(json!(0))).collect();
        let results = futures_join(calls).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let shed = results
            .iter()
            .filter(|r| matches!(r, Err(e) if e.to_string().contains("overloaded")))
            .count();
        (ok, shed)
    });
    assert!(ok >= 1, "{ok} served");
    assert!(shed >= 10, "{shed} shed of 20");
    assert_eq!(ok + shed, 20);
}

#[test]
fn rate_limit_spaces_calls() {
    let rt = rt();
    let echo = service_fn(|v: Value| async move { Ok::<_, BoxError>(v) });
    let layers = Layers {
        rate: Some(Rate {
            requests: 10,
            per: Duration::from_millis(100),
        }),
        ..Layers::default()
    };
    let t0 = Instant::now();
    rt.block_on(async {
        let svc = layers.wrap(echo).unwrap();
        for i in 0..35 {
            svc.clone().oneshot(json!(i)).await.unwrap();
        }
    });
    // 35 calls at 10 per 100 ms: three full periods must pass.
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn bad_layer_settings_are_named() {
    let cases: Vec<(Layers, &str)> = vec![
        (
            Layers {
                concurrency: Some(0),
                ..Layers::default()
            },
            "concurrency 0",
        ),
        (
            Layers {
                timeout: Some(Duration::ZERO),
                ..Layers::default()
            },
            "timeout 0",
        ),
        (
            Layers {
                rate: Some(Rate {
                    requests: 0,
                    per: Duration::from_secs(1),
                }),
                ..Layers::default()
            },
            "rate 0",
        ),
        (
            Layers {
                retry: Some(RetrySettings {
                    attempts: 0,
                    ..RetrySettings::default()
                }),
                ..Layers::default()
            },
            "attempts 0",
        ),
        (
            Layers {
                retry: Some(RetrySettings {
                    min_backoff: Duration::from_secs(5),
                    max_backoff: Duration::from_secs(1),
                    ..RetrySettings::default()
                }),
                ..Layers::default()
            },
            "5000 to 1000 ms",
        ),
    ];
    for (layers, want) in cases {
        let err = layers.validate().unwrap_err();
        assert!(err.message().contains(want), "{err} lacks {want:?}");
    }
}

async fn futures_join<F: std::future::Future + Send + 'static>(fs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
