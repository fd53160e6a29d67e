//! The event pipeline's hands-on: new-user signup. One `user.created`
//! event fans out to three stages, each its own consumer group: a welcome
//! email, a newsletter subscription, analytics. The analytics stage fails
//! (its warehouse is down) and its events wait and retry; the other two
//! stages are not held up. When analytics recovers, nothing was lost.
//!
//! Run: `cargo run -p shardkit --example signup`

use serde_json::json;
use shardkit::pipeline::{BoxError, Data, Event, Filter, Memory, Stage, StageConfig, Transport};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::service_fn;
use tower::util::BoxCloneSyncService;

fn signup(i: usize) -> Event {
    Event::new(format!("signup-{i}"), "/web/signup", "user.created")
        .unwrap()
        .with_extension("partitionkey", format!("user{i}"))
        .unwrap()
        .with_data(Data::Json(json!({"email": format!("user{i}@example.com")})))
}

fn stage(t: &Arc<dyn Transport>, name: &str, done: Arc<AtomicUsize>, up: Arc<AtomicBool>) -> Stage {
    let handler = BoxCloneSyncService::new(service_fn(move |_e: Event| {
        let (done, up) = (done.clone(), up.clone());
        async move {
            if !up.load(Ordering::SeqCst) {
                return Err::<Vec<Event>, BoxError>("warehouse unavailable".into());
            }
            done.fetch_add(1, Ordering::SeqCst);
            Ok(vec![])
        }
    }));
    let mut cfg = StageConfig::new(name, "users");
    cfg.filter = Filter::on("type", "user.created");
    cfg.max_attempts = 1000;
    cfg.min_backoff = Duration::from_millis(5);
    cfg.max_backoff = Duration::from_millis(50);
    cfg.lease = Duration::from_millis(300);
    Stage::start(t.clone(), cfg, handler).unwrap()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let t: Arc<dyn Transport> = Arc::new(Memory::new(4, 10_000).unwrap());
        let n = 100;
        let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
        let up: Vec<Arc<AtomicBool>> = (0..3).map(|i| Arc::new(AtomicBool::new(i != 2))).collect();
        let names = ["welcome-email", "newsletter", "analytics"];
        let stages: Vec<Stage> = (0..3)
            .map(|i| stage(&t, names[i], counts[i].clone(), up[i].clone()))
            .collect();
        t.publish("users", (0..n).map(signup).collect()).await.unwrap();

        let t0 = Instant::now();
        while counts[0].load(Ordering::SeqCst) < n || counts[1].load(Ordering::SeqCst) < n {
            assert!(t0.elapsed() < Duration::from_secs(10), "the healthy stages were held up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!(
            "welcome-email {} and newsletter {} of {n} done while analytics is down ({} done, {} failed attempts)",
            counts[0].load(Ordering::SeqCst),
            counts[1].load(Ordering::SeqCst),
            counts[2].load(Ordering::SeqCst),
            stages[2].stats().failures.load(Ordering::Relaxed),
        );
        assert_eq!(counts[2].load(Ordering::SeqCst), 0);

        up[2].store(true, Ordering::SeqCst);
        let t0 = Instant::now();
        while counts[2].load(Ordering::SeqCst) < n {
            assert!(t0.elapsed() < Duration::from_secs(10), "analytics did not catch up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("analytics recovered: {} of {n} done, none lost", counts[2].load(Ordering::SeqCst));
        for s in stages {
            assert_eq!(s.stats().dead_lettered.load(Ordering::Relaxed), 0);
            s.stop(Duration::from_secs(1)).await;
        }
    });
}

#[test]
fn runs() {
    main();
}
