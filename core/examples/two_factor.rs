//! The event handler's hands-on: two-factor authentication. A login event
//! reaches a handler that generates a one-time code, stores it with a TTL
//! and "sends" it by emitting an event to a sink topic (an SMS gateway
//! would consume it). Verification accepts the code once, within its TTL:
//! a wrong code, a used code and an expired code are refused.
//!
//! Run: `cargo run -p shardkit --example two_factor`

use serde_json::json;
use shardkit::pipeline::{BoxError, Data, Event, Memory, Stage, StageConfig, Transport};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::service_fn;
use tower::util::BoxCloneSyncService;

/// Codes by user, each with its expiry: the code store (Redis `SET PX`
/// in production; the same TTL semantics here).
#[derive(Default, Clone)]
struct Codes(Arc<Mutex<HashMap<String, (String, Instant)>>>);

#[derive(Debug, PartialEq)]
enum Verdict {
    Accepted,
    Wrong,
    ExpiredOrUsed,
}

impl Codes {
    fn issue(&self, user: &str, ttl: Duration) -> String {
        let code = format!("{:06}", fastrand::u32(0..1_000_000));
        self.0
            .lock()
            .unwrap()
            .insert(user.to_string(), (code.clone(), Instant::now() + ttl));
        code
    }

    /// Accepts a code once: it is deleted on use.
    fn verify(&self, user: &str, code: &str) -> Verdict {
        let mut codes = self.0.lock().unwrap();
        match codes.get(user) {
            Some((_, until)) if *until <= Instant::now() => {
                codes.remove(user);
                Verdict::ExpiredOrUsed
            }
            Some((c, _)) if c == code => {
                codes.remove(user);
                Verdict::Accepted
            }
            Some(_) => Verdict::Wrong,
            None => Verdict::ExpiredOrUsed,
        }
    }
}

fn login(user: &str) -> Event {
    Event::new(
        format!("login-{user}-{}", fastrand::u64(..)),
        "/auth",
        "user.login",
    )
    .unwrap()
    .with_extension("partitionkey", user)
    .unwrap()
    .with_data(Data::Json(json!({"user": user})))
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let t: Arc<dyn Transport> = Arc::new(Memory::new(4, 1000).unwrap());
        let codes = Codes::default();
        let ttl = Duration::from_millis(300);
        // The handler: login -> code stored with a TTL -> "sent" to the sms topic.
        let store = codes.clone();
        let handler = BoxCloneSyncService::new(service_fn(move |e: Event| {
            let store = store.clone();
            async move {
                let user = e.key().to_string();
                let code = store.issue(&user, ttl);
                let sms = Event::new(format!("sms-{}", e.id()), "/auth/2fa", "sms.send")?
                    .with_extension("partitionkey", user.clone())?
                    .with_data(Data::Json(
                        json!({"to": user, "text": format!("your code: {code}")}),
                    ));
                Ok::<_, BoxError>(vec![sms])
            }
        }));
        let mut cfg = StageConfig::new("two-factor", "logins");
        cfg.reply_topic = Some("sms".into());
        cfg.lease = Duration::from_millis(300);
        let stage = Stage::start(t.clone(), cfg, handler).unwrap();

        t.publish("logins", vec![login("ann"), login("bob")])
            .await
            .unwrap();
        // The sink: read the "sent" messages.
        let mut sent = Vec::new();
        for _ in 0..200 {
            sent = t.peek("sms", 10).await.unwrap();
            if sent.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(sent.len(), 2, "both codes sent");
        let code_of = |user: &str| -> String {
            let d = sent.iter().find(|d| d.event.key() == user).unwrap();
            let Data::Json(v) = d.event.data() else {
                panic!()
            };
            let text = v["text"].as_str().unwrap().to_string();
            println!("sms to {user}: {text}");
            text.rsplit(' ').next().unwrap().to_string()
        };
        let (ann, bob) = (code_of("ann"), code_of("bob"));

        let wrong = if ann == "000000" { "000001" } else { "000000" };
        assert_eq!(codes.verify("ann", wrong), Verdict::Wrong);
        assert_eq!(codes.verify("ann", &ann), Verdict::Accepted);
        assert_eq!(
            codes.verify("ann", &ann),
            Verdict::ExpiredOrUsed,
            "a code works once"
        );
        println!("ann: wrong code refused, right code accepted once, then refused");
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert_eq!(codes.verify("bob", &bob), Verdict::ExpiredOrUsed, "expired");
        println!("bob: code refused after its {} ms TTL", ttl.as_millis());
        stage.stop(Duration::from_secs(1)).await;
    });
}

#[test]
fn runs() {
    main();
}
