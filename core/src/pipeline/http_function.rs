//! Functions over HTTP, Knative style: a stage's handler is a URL. Each
//! event is POSTed in CloudEvents binary mode; a 2xx answer acknowledges
//! it, and an event in the answer (binary or structured mode) is the
//! stage's reply, emitted to its reply topic.
//!
//! What an answer means for delivery: 2xx is success; 400, 401, 403, 413,
//! 415 and 422 say the function refuses this event, so it is
//! [`Permanent`](super::Permanent) (dead-lettered without retries); any
//! other status, a refused connection or a timeout is worth retrying (the
//! function may be restarting), and the stage's attempts and backoff apply.

use super::layers::{BoxError, Permanent};
use super::Event;
use crate::error::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;

/// Reply bodies larger than this are refused.
pub const MAX_REPLY: usize = 4 << 20;

/// A function at a URL, as a handler of events.
#[derive(Clone)]
pub struct HttpFunction {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    url: Arc<str>,
}

impl std::fmt::Debug for HttpFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFunction")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl HttpFunction {
    /// The function at `url` (`http://host:port/path`); the error names a
    /// URL that is not one.
    pub fn new(url: &str) -> Result<HttpFunction> {
        let uri = crate::scatter::http::parse_http_url(url, "function URL")?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(HttpFunction {
            client,
            uri,
            url: Arc::from(url),
        })
    }

    async fn post(self, event: Event) -> std::result::Result<Vec<Event>, BoxError> {
        let (headers, body) = event.to_http_binary();
        let mut req = hyper::Request::post(self.uri.clone());
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| Permanent(format!("event {:?} as an HTTP request: {e}", event.id())))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("function {}: {e}", self.url))?;
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_REPLY)
            .collect()
            .await
            .map_err(|e| format!("function {}: reading the reply: {e}", self.url))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            let msg = format!("function {} answered {status}: {}", self.url, text.trim());
            return Err(match status.as_u16() {
                400 | 401 | 403 | 413 | 415 | 422 => Box::new(Permanent(msg)),
                _ => msg.into(),
            });
        }
        let content_type = parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // A reply event: structured, or binary (it has a ce-id).
        let reply = if content_type.starts_with("application/cloudevents+json") {
            Some(Event::from_json(&body))
        } else if parts.headers.contains_key("ce-id") {
            let pairs: Vec<(&str, &[u8])> = parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            Some(Event::from_http_binary(pairs, body))
        } else {
            None
        };
        match reply {
            None => Ok(Vec::new()),
            Some(Ok(e)) => Ok(vec![e]),
            // The function ran; its reply is unusable. Retrying would run
            // it again for the same bad reply.
            Some(Err(e)) => Err(Box::new(Permanent(format!(
                "function {} replied with a bad event: {e}",
                self.url
            )))),
        }
    }
}

impl Service<Event> for HttpFunction {
    type Response = Vec<Event>;
    type Error = BoxError;
    type Future = super::transport::Fut<'static, std::result::Result<Vec<Event>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, event: Event) -> Self::Future {
        Box::pin(self.clone().post(event))
    }
}
