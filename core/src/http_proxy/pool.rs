//! Keep-alive connections to one backend: plain sockets for the direct
//! path (`direct`), and hyper HTTP/1.1 connections of our own making for
//! the rest, so that a connect error is known before the request's body is
//! touched (and the request can go to the next backend, as nginx's
//! `proxy_next_upstream error` does), and a connection goes back to the
//! idle list only once its response body has been read to the end.
//!
//! Idle connections are kept per worker thread: a connection's task runs on
//! the worker that made it, so a request sent on it from another worker
//! would cross threads twice (a futex wake-up each way). Measured with wrk
//! at 2 workers, a shared list made the second worker add nothing.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// What the proxy sends a backend: the client's body, streamed, or none
/// (a hedged copy of a bodiless request).
pub(crate) type ReqBody = http_body_util::Either<Incoming, http_body_util::Empty<Bytes>>;

/// Idle connections kept per backend and worker, at most.
const MAX_IDLE: usize = 64;

/// Idle lists per backend: one per worker (workers beyond this share, by
/// their index modulo it).
const LANES: usize = 16;

/// One backend's connections: hyper's (for requests with bodies,
/// upgrades, hedging) and plain sockets (the direct path's), each kept
/// idle per worker.
pub(crate) struct Pool {
    addr: String,
    idle: [Mutex<Vec<SendRequest<ReqBody>>>; LANES],
    raw: [Mutex<Vec<TcpStream>>; LANES],
}

impl Pool {
    pub(crate) fn new(addr: &str) -> Arc<Pool> {
        Arc::new(Pool {
            addr: addr.to_string(),
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
            raw: std::array::from_fn(|_| Mutex::new(Vec::new())),
        })
    }

    /// The calling worker's lane among `LANES` (the first, off the workers).
    fn lane_index() -> usize {
        crate::proxy::workers::Workers::current().unwrap_or(0) % LANES
    }

    /// The calling worker's idle list (the first, off the workers).
    fn lane(&self) -> &Mutex<Vec<SendRequest<ReqBody>>> {
        &self.idle[Pool::lane_index()]
    }

    /// An idle plain connection of this worker's, most recently used
    /// first. It may have been closed by the backend meanwhile: the direct
    /// path finds out when nothing answers, and tries a new one.
    pub(crate) fn take_raw(&self) -> Option<TcpStream> {
        self.raw[Pool::lane_index()]
            .lock()
            .expect("pool lock")
            .pop()
    }

    /// Keeps a plain connection whose response was read to the end.
    pub(crate) fn put_raw(&self, s: TcpStream) {
        let mut idle = self.raw[Pool::lane_index()].lock().expect("pool lock");
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    /// A new connection, made within `timeout`; the error says why the
    /// backend could not be reached.
    pub(crate) async fn dial(&self, timeout: Duration) -> Result<TcpStream, String> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(&self.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("connect to {}: {e}", self.addr)),
            Err(_) => {
                return Err(format!(
                    "connect to {}: no answer within {} ms",
                    self.addr,
                    timeout.as_millis()
                ))
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// An idle connection ready for a request (`true`: reused), or a new
    /// one (connected within `timeout`). The error says why the backend
    /// could not be reached.
    pub(crate) async fn get(
        &self,
        timeout: Duration,
    ) -> Result<(SendRequest<ReqBody>, bool), String> {
        loop {
            let Some(mut s) = self.lane().lock().expect("pool lock").pop() else {
                break;
            };
            if s.is_closed() {
                continue;
            }
            // Ready now (the usual case): no timer to arm and cancel.
            if s.is_ready() {
                return Ok((s, true));
            }
            // A connection whose last response ended is ready at once, or
            // about to be; one the backend closed says so.
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(50), s.ready()).await {
                return Ok((s, true));
            }
        }
        let stream = self.dial(timeout).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {}: {e}", self.addr))?;
        tokio::spawn(async move {
            // Ends when the backend or we close it; its errors are the
            // request's, reported there.
            let _ = conn.await;
        });
        Ok((sender, false))
    }

    fn put(&self, s: SendRequest<ReqBody>) {
        let mut idle = self.lane().lock().expect("pool lock");
        if idle.len() < MAX_IDLE && !s.is_closed() {
            idle.push(s);
        }
    }

    /// Idle connections now (for tests and metrics).
    pub(crate) fn idle(&self) -> usize {
        let hyper: usize = self
            .idle
            .iter()
            .map(|l| l.lock().expect("pool lock").len())
            .sum();
        let raw: usize = self
            .raw
            .iter()
            .map(|l| l.lock().expect("pool lock").len())
            .sum();
        hyper + raw
    }
}

/// A backend's response body on its way to the client: when it has been
/// read to the end, its connection goes back to the pool; dropped before
/// that (the client went away), the connection is closed with it.
pub(crate) struct Pooled {
    inner: Incoming,
    back: Option<(Arc<Pool>, SendRequest<ReqBody>)>,
}

impl Pooled {
    pub(crate) fn new(inner: Incoming, pool: Arc<Pool>, s: SendRequest<ReqBody>) -> Pooled {
        let mut p = Pooled {
            inner,
            back: Some((pool, s)),
        };
        if p.inner.is_end_stream() {
            p.give_back();
        }
        p
    }

    fn give_back(&mut self) {
        if let Some((pool, s)) = self.back.take() {
            pool.put(s);
        }
    }
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body type the proxy answers with: a backend's, streamed,
/// or one of its own (errors, metrics).
pub(crate) type ProxyBody = http_body_util::Either<Pooled, http_body_util::Full<Bytes>>;

/// A body of the proxy's own.
pub(crate) fn own(text: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Either::Right(http_body_util::Full::new(text.into()))
}
