//! The decorator pattern's hands-on: request defaulting in front of a
//! function. The function (a search) needs every field; callers send what
//! they care about; a layer fills the rest, without the function or the
//! callers knowing of it. A second layer bounds each call's time.
//!
//! Run: `cargo run -p shardkit --example request_defaulting`

use serde_json::{json, Value};
use shardkit::pipeline::{BoxError, DefaultsLayer, Layers};
use std::time::Duration;
use tower::{service_fn, Layer, ServiceExt};

/// The function: it takes a full request and says what it would do.
async fn search(req: Value) -> Result<Value, BoxError> {
    let need = ["query", "page", "per_page", "lang", "safe"];
    for field in need {
        if req.get(field).is_none_or(Value::is_null) {
            return Err(format!("missing {field}").into());
        }
    }
    Ok(json!({
        "searched": req["query"],
        "page": req["page"],
        "per_page": req["per_page"],
        "lang": req["lang"],
        "safe": req["safe"],
    }))
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let defaults = DefaultsLayer::new(json!({
            "page": 1, "per_page": 20, "lang": "en", "safe": true
        }))
        .expect("defaults are an object");
        // Decorators compose: defaulting, then a time limit, then the function.
        let layered = Layers {
            timeout: Some(Duration::from_millis(500)),
            ..Layers::default()
        }
        .wrap(defaults.layer(service_fn(search)))
        .expect("valid layers");

        let asked = json!({"query": "consistent hashing", "lang": "fr"});
        let answer = layered.clone().oneshot(asked.clone()).await.expect("answered");
        println!("asked    {asked}\nanswered {answer}");
        assert_eq!(
            answer,
            json!({"searched": "consistent hashing", "page": 1, "per_page": 20, "lang": "fr", "safe": true})
        );

        // Without the decorator the same request fails: the function itself
        // stayed strict.
        let bare = search(asked).await;
        println!("without defaults: {}", bare.as_ref().unwrap_err());
        assert!(bare.is_err());
    });
}

#[test]
fn runs() {
    main();
}
