//! The HTTP/JSON transport: a leaf replica is a URL; a call POSTs the
//! request body (JSON) to it and expects `200`/`2xx` with a JSON body.
//!
//! One [`HttpTransport`] holds a keep-alive connection pool (hyper's client,
//! HTTP/1.1, `TCP_NODELAY`) shared by all its replicas, so a fan-out over
//! many leaves reuses warm connections instead of paying a handshake per
//! call. Dropping a call's future drops its request: hyper closes that
//! connection rather than returning it to the pool half-read, which is what
//! makes the scatter's "no call outlives its request" hold over HTTP.
//!
//! Errors name the URL: a refused or reset connection is `Unavailable`; a
//! non-2xx status, a body over the size limit, or a body that does not
//! parse as the expected JSON is `BadResponse` (with the status and the
//! start of the body, which is usually the leaf's own error message).

use super::{CallFuture, Leaf, Replica};
use crate::runtime::Home;
use crate::{Error, ErrorKind, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Default cap on a leaf's response body: far above any sane page of hits,
/// low enough that a runaway leaf cannot exhaust the root's memory.
pub const DEFAULT_MAX_BODY: usize = 64 << 20;

/// A shared HTTP/1.1 client with a connection pool; make one per process
/// (or per scatter) and build replicas from it.
#[derive(Clone)]
pub struct HttpTransport {
    client: Client<HttpConnector, Full<Bytes>>,
    max_body: usize,
    /// The process whose runtime runs the pool's connections.
    home: Home,
}

/// In a forked child the pool's last handle must not go: dropping it closes
/// connections whose tasks are the parent's, waking them on a runtime with
/// no threads here. A clone forgotten keeps the pool alive instead.
fn keep_in_child(home: &Home, client: &Client<HttpConnector, Full<Bytes>>) {
    if !home.is_here() {
        std::mem::forget(client.clone());
    }
}

impl Drop for HttpTransport {
    fn drop(&mut self) {
        keep_in_child(&self.home, &self.client);
    }
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl Default for HttpTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpTransport {
    /// A transport with a 1 s connect timeout, 90 s idle keep-alive and
    /// the [`DEFAULT_MAX_BODY`] response cap.
    pub fn new() -> Self {
        Self::with_options(Duration::from_secs(1), DEFAULT_MAX_BODY)
    }

    /// A transport with the given connect timeout and response body cap.
    pub fn with_options(connect_timeout: Duration, max_body: usize) -> Self {
        let mut connector = HttpConnector::new();
        // Small JSON requests: Nagle would hold each one back an RTT.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            // Hedged and concurrent calls open parallel connections to one
            // leaf; keep enough of them warm.
            .pool_max_idle_per_host(64)
            .build(connector);
        HttpTransport {
            client,
            max_body,
            home: Home::here(),
        }
    }

    /// A replica at `url` (`http://host:port/path`) whose answers parse as
    /// `T`. Errors: `InvalidArgument` naming the URL when it does not parse,
    /// is not `http://`, or has no host.
    pub fn replica<T>(&self, url: &str) -> Result<HttpReplica<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let uri = parse_url(url)?;
        Ok(HttpReplica {
            client: self.client.clone(),
            uri,
            url: Arc::from(url),
            max_body: self.max_body,
            home: self.home,
            _answer: PhantomData,
        })
    }

    /// One leaf per entry of `shards`, each served by the replica URLs in
    /// it, named `shard-<i> (<url>|<url>...)`. Errors: `EmptyNodeSet` for no shards,
    /// `InvalidArgument` for a shard with no URLs or a bad URL.
    pub fn leaves<T>(&self, shards: &[Vec<String>]) -> Result<Vec<Leaf<Bytes, T>>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        if shards.is_empty() {
            return Err(Error::new(
                ErrorKind::EmptyNodeSet,
                "scatter needs at least one leaf, got an empty leaf set",
            ));
        }
        shards
            .iter()
            .enumerate()
            .map(|(i, urls)| {
                if urls.is_empty() {
                    return Err(Error::invalid(format!(
                        "leaf {i} has no replica URLs; a leaf needs at least one"
                    )));
                }
                let replicas = urls
                    .iter()
                    .map(|u| Ok(Arc::new(self.replica::<T>(u)?) as Arc<dyn Replica<Bytes, T>>))
                    .collect::<Result<Vec<_>>>()?;
                Leaf::for_shard(i, urls, replicas)
            })
            .collect()
    }
}

/// Splits shard `index`'s replica list, `url|url|...` (the form C, Go and the
/// CLI take a shard's replicas in), trimming blanks around each URL. An
/// empty list or an empty URL is an `InvalidArgument` error naming the text;
/// the URLs themselves are checked when the leaves are built.
pub fn split_replicas(index: usize, text: &str) -> Result<Vec<String>> {
    text.split('|')
        .map(|u| {
            let u = u.trim();
            if u.is_empty() {
                return Err(Error::invalid(format!(
                    "shard {index} ({text:?}) has an empty replica URL; \
                     separate a leaf's replica URLs with '|'"
                )));
            }
            Ok(u.to_string())
        })
        .collect()
}

/// Parses and checks a leaf URL.
pub fn parse_url(url: &str) -> Result<Uri> {
    parse_http_url(url, "leaf URL")
}

/// Parses an `http://` URL, the errors naming it as `what` (a leaf URL, a
/// function URL).
pub(crate) fn parse_http_url(url: &str, what: &str) -> Result<Uri> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::invalid(format!("{what} {url:?} does not parse: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(Error::invalid(format!(
                "{what} {url:?} has scheme {other:?}; only http:// is supported \
                 (terminate TLS in front of it)"
            )))
        }
        None => {
            return Err(Error::invalid(format!(
                "{what} {url:?} has no scheme; write it as http://host:port/path"
            )))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(Error::invalid(format!("{what} {url:?} has no host")));
    }
    Ok(uri)
}

/// One HTTP leaf replica: POSTs the request body to its URL.
pub struct HttpReplica<T> {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    url: Arc<str>,
    max_body: usize,
    home: Home,
    _answer: PhantomData<fn() -> T>,
}

impl<T> Drop for HttpReplica<T> {
    fn drop(&mut self) {
        keep_in_child(&self.home, &self.client);
    }
}

impl<T> HttpReplica<T> {
    /// The URL calls go to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl<T> Replica<Bytes, T> for HttpReplica<T>
where
    T: DeserializeOwned + Send + 'static,
{
    fn home(&self) -> Option<Home> {
        Some(self.home)
    }

    fn call(&self, body: &Bytes) -> CallFuture<T> {
        // A forked child has none of the pool's connections (their tasks
        // ran on the parent's runtime): say so instead of waiting on them.
        if let Err(e) = self.home.check(format_args!(
            "the HTTP transport (connection pool) of leaf {}",
            self.url
        )) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let mut req = Request::post(self.uri.clone())
            .body(Full::new(body.clone()))
            .expect("a parsed URI and a POST always build a request");
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let sent = self.client.request(req);
        let url = self.url.clone();
        let max_body = self.max_body;
        Box::pin(async move {
            let resp = sent.await.map_err(|e| {
                let kind = if e.is_connect() {
                    ErrorKind::Unavailable
                } else {
                    ErrorKind::Io
                };
                Error::new(kind, format!("leaf {url}: {}", error_chain(&e)))
            })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), max_body)
                .collect()
                .await
                .map_err(|e| {
                    let limit = e
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some();
                    if limit {
                        Error::new(
                            ErrorKind::BadResponse,
                            format!("leaf {url} answered a body over {max_body} bytes"),
                        )
                    } else {
                        Error::new(ErrorKind::Io, format!("leaf {url}: reading the body: {e}"))
                    }
                })?
                .to_bytes();
            if !status.is_success() {
                return Err(Error::new(
                    ErrorKind::BadResponse,
                    format!("leaf {url} answered status {status}: {}", excerpt(&body)),
                ));
            }
            serde_json::from_slice(&body).map_err(|e| {
                Error::new(
                    ErrorKind::BadResponse,
                    format!(
                        "leaf {url} answered malformed JSON ({e}): {}",
                        excerpt(&body)
                    ),
                )
            })
        })
    }
}

impl super::Gathered<serde_json::Value> {
    /// The gathered answers as one JSON document, the shape the C, Go and
    /// CLI clients return:
    /// `{"answers": [{"leaf": 0, "answer": ...}], "missing": [{"leaf": 1,
    /// "code": 12, "kind": "timed out", "error": "..."}], "answered": 1,
    /// "total": 2, "degraded": true}`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let answers: Vec<_> = self
            .answers
            .iter()
            .map(|(leaf, answer)| json!({"leaf": leaf, "answer": answer}))
            .collect();
        let missing: Vec<_> = self
            .missing
            .iter()
            .map(|(leaf, e)| {
                json!({"leaf": leaf, "code": e.kind().code(),
                       "kind": e.kind().description(), "error": e.message()})
            })
            .collect();
        let (answered, total) = self.coverage();
        json!({"answers": answers, "missing": missing, "answered": answered,
               "total": total, "degraded": self.degraded()})
    }
}

/// The start of a body, for an error message: enough to see the leaf's
/// own error text, never a megabyte.
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_string()
    } else if body.len() > MAX {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

/// hyper's errors put the useful part ("connection refused") in sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("http://127.0.0.1:80/search").is_ok());
        for bad in [
            "",
            "127.0.0.1:80",
            "https://a/b",
            "http:///x",
            "ftp://a",
            "http://a b",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(e.message().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt(b"nope"), "\"nope\"");
        assert!(excerpt(&[b'x'; 5000]).len() < 220);
    }
}
