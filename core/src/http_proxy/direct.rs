//! The direct path: plain requests (GET or HEAD over HTTP/1.1, no body)
//! read, placed and forwarded by hand on kept-alive backend sockets, each
//! response streamed back as it arrives.
//!
//! Why: hyper's path runs each backend connection as a task of its own,
//! with channels between it and the request, and builds header maps both
//! ways. Measured with wrk at 2 workers, that machinery was the gap to
//! nginx (28.5 µs of CPU per request against nginx's 24.3 µs, at the same
//! four system calls), and the plain GET is most of what a sharding proxy
//! serves. Here a request costs its four system calls and two head
//! rewrites.
//!
//! The first request on a connection that is anything else (a body, an
//! upgrade, HTTP/1.0, a head too large or malformed) hands the connection,
//! with what was read of it, to hyper's path (`serve`) for the rest of its
//! life, which answers it and any error as before. So does a proxy with
//! replicas or hedging, whose replica choice and second copies live there.

use super::key::RequestHead;
use super::upstreams::{Backend, Members};
use super::wire::{self, Chunked, Framing, Plain};
use super::Shared;
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How a client connection left the direct path.
pub(crate) enum Outcome {
    /// It is over (closed by either side, timed out, or the proxy stops).
    Closed,
    /// hyper's path takes it from here: the socket, and the bytes read
    /// from it that start the next request.
    Hyper(Prefixed),
}

/// Whether the direct path may serve this proxy's connections at all.
pub(crate) fn applies(px: &Shared) -> bool {
    px.cfg.replicas <= 1 && px.cfg.hedge.is_none()
}

/// Serves one client connection's plain requests until it closes, or
/// until one is not plain.
pub(crate) async fn serve(
    px: &Shared,
    mut client: TcpStream,
    peer: SocketAddr,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let ip = peer.ip().to_string();
    let mut buf = BytesMut::with_capacity(4096);
    // The head sent to the backend, the head answered with, and the
    // backend's bytes: kept for the connection's life, so a request
    // allocates nothing for them.
    let mut to_backend = Vec::with_capacity(1024);
    let mut to_client = Vec::with_capacity(4096);
    let mut from_backend = Vec::with_capacity(16 << 10);
    let mut need_more = buf.is_empty();
    // The whole of the next head (and the wait for it) must come within
    // the header timeout, however slowly it trickles in.
    let mut deadline = None;
    loop {
        if need_more {
            let by = *deadline
                .get_or_insert_with(|| tokio::time::Instant::now() + px.cfg.header_timeout);
            match read_more(&mut client, &mut buf, by, stop).await {
                Some(()) => {}
                None => return Outcome::Closed,
            }
        }
        let (used, plan) = {
            let mut hs = [httparse::EMPTY_HEADER; wire::MAX_HEADERS];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => match plan(px, &req, &ip, &mut to_backend) {
                    Some(plan) => (n, plan),
                    None => return Outcome::Hyper(Prefixed::new(client, buf)),
                },
                Ok(httparse::Status::Partial) if buf.len() < px.cfg.max_header_bytes => {
                    need_more = true;
                    continue;
                }
                // Too large, too many headers, or not HTTP: hyper's path
                // answers it as it always has (431, 400).
                _ => return Outcome::Hyper(Prefixed::new(client, buf)),
            }
        };
        buf.advance(used);
        need_more = buf.is_empty();
        deadline = None;
        px.stats.requests.fetch_add(1, Ordering::Relaxed);
        let open = forward(
            px,
            &plan,
            &mut client,
            &to_backend,
            &mut to_client,
            &mut from_backend,
        )
        .await;
        if !open || plan.kind.close || *stop.borrow() {
            let _ = client.shutdown().await;
            return Outcome::Closed;
        }
    }
}

/// Reads more of the next request head: `None` when the client closed,
/// the head is not whole by `deadline`, or the proxy stops.
async fn read_more(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
    stop: &mut watch::Receiver<bool>,
) -> Option<()> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    tokio::select! {
        r = tokio::time::timeout_at(deadline, client.read_buf(buf)) => match r {
            Ok(Ok(n)) if n > 0 => Some(()),
            _ => None,
        },
        _ = stop.changed() => None,
    }
}

/// A plain request, placed: what forwarding it needs once its head's
/// bytes are gone from the read buffer.
struct Plan {
    kind: Plain,
    members: Arc<Members>,
    /// The key's backend, or why there is none.
    first: Result<u32, String>,
    /// Its hash key, for the next backends on the ring when the first
    /// cannot be reached.
    key: smallvec::SmallVec<[u8; 64]>,
}

/// A plain request's plan, its backend head written to `to_backend`;
/// `None` when it is not plain.
fn plan(
    px: &Shared,
    req: &httparse::Request<'_, '_>,
    ip: &str,
    to_backend: &mut Vec<u8>,
) -> Option<Plan> {
    let kind = wire::plain(req)?;
    let head = Head(req);
    let key = px.cfg.key.key_or_uri_of(&head);
    let members = px.upstreams.load();
    let first = members.ring.lookup_slot(key).map_err(|e| e.to_string());
    to_backend.clear();
    wire::request_head(to_backend, req, ip);
    Some(Plan {
        kind,
        key: key.into(),
        members,
        first,
    })
}

/// A parsed head as a shard key's source.
struct Head<'r, 'h, 'b>(&'r httparse::Request<'h, 'b>);

impl RequestHead for Head<'_, '_, '_> {
    fn request_uri(&self) -> &str {
        self.0.path.unwrap_or("/")
    }

    fn header_values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.0
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Forwards one plain request down its backends in ring order (the next
/// when one refuses, up to `tries`, as nginx's `proxy_next_upstream
/// error`), and answers the client: the backend's response, or the
/// proxy's 502 or 504 saying why. Whether the client's connection stays
/// open.
async fn forward(
    px: &Shared,
    plan: &Plan,
    client: &mut TcpStream,
    to_backend: &[u8],
    to_client: &mut Vec<u8>,
    from_backend: &mut Vec<u8>,
) -> bool {
    let members = &plan.members;
    let first = match &plan.first {
        Ok(slot) => *slot,
        Err(e) => {
            px.stats.no_backend.fetch_add(1, Ordering::Relaxed);
            let why = wire::why::no_ring(e);
            return own(client, to_client, 502, &why, plan.kind).await;
        }
    };
    let mut failed: Vec<String> = Vec::new();
    let mut io = Io {
        client,
        to_backend,
        to_client,
        from_backend,
    };
    if let Some(open) = attempt(px, members, first, plan.kind, &mut io, &mut failed).await {
        return open;
    }
    // The first backend could not be reached: the rest of the key's list,
    // in the ring's order.
    let tries = px.cfg.tries.min(members.ring.len());
    if let Ok(rest) = members.ring.lookup_n(&plan.key, tries) {
        for slot in rest.into_iter().filter(|&s| s != first) {
            if let Some(open) = attempt(px, members, slot, plan.kind, &mut io, &mut failed).await {
                return open;
            }
        }
    }
    let why = wire::why::unreached(&failed);
    own(io.client, io.to_client, 502, &why, plan.kind).await
}

/// The sockets and buffers one request goes through.
struct Io<'a> {
    client: &'a mut TcpStream,
    to_backend: &'a [u8],
    to_client: &'a mut Vec<u8>,
    from_backend: &'a mut Vec<u8>,
}

/// The request on the backend in `slot`: `Some` once the client is
/// answered (by the backend, or with the proxy's 504 or 502 for a backend
/// that took the request and failed it), with whether its connection
/// stays open; `None` when the backend could not be reached (why is added
/// to `failed`), so the next may take it.
async fn attempt(
    px: &Shared,
    members: &Members,
    slot: u32,
    kind: Plain,
    io: &mut Io<'_>,
    failed: &mut Vec<String>,
) -> Option<bool> {
    let b = members.backend(slot)?;
    let why = match on_backend(px, b, kind, io).await {
        Ok(open) => return Some(open),
        Err(Failed::Unreached(why)) => {
            failed.push(why);
            return None;
        }
        Err(Failed::Timeout) => {
            b.timeouts.fetch_add(1, Ordering::Relaxed);
            (504, wire::why::timed_out(&b.name, px.cfg.response_timeout))
        }
        Err(Failed::Invalid(why)) => {
            b.send_errors.fetch_add(1, Ordering::Relaxed);
            (502, format!("backend {}: {why}", b.name))
        }
    };
    Some(own(io.client, io.to_client, why.0, &why.1, kind).await)
}

/// Why a backend gave no response.
enum Failed {
    /// No connection, or it failed before the response began: the next
    /// backend may take the request (a GET or HEAD, safe to send again).
    Unreached(String),
    /// No response head within the response timeout.
    Timeout,
    /// What came back is not an HTTP response.
    Invalid(String),
}

/// The request on one backend: on a kept-alive connection if there is one
/// (tried again on a new one when it turns out closed), else a new one.
/// `Ok`: the client was answered; whether its connection stays open.
async fn on_backend(
    px: &Shared,
    b: &Backend,
    kind: Plain,
    io: &mut Io<'_>,
) -> Result<bool, Failed> {
    loop {
        let (mut conn, reused) = match b.pool.take_raw() {
            // Something arrived while it was idle (the backend closed it,
            // or sent what no request asked for): not used again.
            Some(c) if !drained(&c) => continue,
            Some(c) => (c, true),
            None => match b.pool.dial(px.cfg.connect_timeout).await {
                Ok(c) => (c, false),
                Err(why) => {
                    px.upstreams.connect_failed(b);
                    return Err(Failed::Unreached(why));
                }
            },
        };
        match exchange(px, b, &mut conn, kind, io).await {
            Ok((open, reusable)) => {
                if reusable {
                    b.pool.put_raw(conn);
                }
                return Ok(open);
            }
            // A kept-alive connection the backend closed meanwhile: the
            // request never reached it; again on another.
            Err(Failed::Unreached(_)) if reused => continue,
            Err(Failed::Unreached(why)) => {
                b.send_errors.fetch_add(1, Ordering::Relaxed);
                return Err(Failed::Unreached(wire::why::mid_request(&b.name, why)));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends the request head on `conn`, reads the response head (within the
/// response timeout), and streams the response to the client. `Ok`:
/// whether the client's connection stays open, and whether `conn` may be
/// used again.
async fn exchange(
    px: &Shared,
    b: &Backend,
    conn: &mut TcpStream,
    kind: Plain,
    io: &mut Io<'_>,
) -> Result<(bool, bool), Failed> {
    let Io {
        client,
        to_backend,
        to_client,
        from_backend,
    } = io;
    if let Err(e) = conn.write_all(to_backend).await {
        return Err(Failed::Unreached(e.to_string()));
    }
    from_backend.clear();
    let deadline = tokio::time::Instant::now() + px.cfg.response_timeout;
    let mut parsed_upto = 0;
    let (head_len, answer) = loop {
        match tokio::time::timeout_at(deadline, conn.read_buf(from_backend)).await {
            Err(_) => return Err(Failed::Timeout),
            Ok(Ok(n)) if n > 0 => {}
            Ok(r) => {
                let why = match r {
                    Err(e) => e.to_string(),
                    _ => "connection closed".to_string(),
                };
                return Err(if from_backend.is_empty() {
                    Failed::Unreached(why)
                } else {
                    Failed::Invalid(format!("{why} mid-response"))
                });
            }
        }
        if let Some(head) =
            response_head(px, b, kind, &from_backend[..], &mut parsed_upto, to_client)?
        {
            break head;
        }
    };
    let open = !kind.close && answer.framing != Framing::Close;
    // The body: what came with the head goes out in the same write.
    let mut body = Body::new(answer.framing);
    let (end, more) = body
        .take(&from_backend[head_len..])
        .map_err(Failed::Invalid)?;
    to_client.extend_from_slice(&from_backend[head_len..head_len + end]);
    // Bytes past the response's end: the backend misbehaves; its
    // connection is not used again.
    let mut clean = head_len + end == from_backend.len();
    if client.write_all(to_client).await.is_err() {
        return Ok((false, false));
    }
    let mut done = !more;
    while !done {
        from_backend.clear();
        // Between reads of the body, as nginx's proxy_read_timeout: a
        // backend that stalls mid-body ends the client's connection.
        match tokio::time::timeout(px.cfg.response_timeout, conn.read_buf(from_backend)).await {
            Ok(Ok(n)) if n > 0 => {}
            // The body's end for a close-delimited one; otherwise it was
            // cut short: the client's connection is closed so it sees so.
            _ => return Ok((answer.framing == Framing::Close && open, false)),
        }
        let (end, more) = match body.take(from_backend) {
            Ok(t) => t,
            Err(_) => return Ok((false, false)),
        };
        clean = end == from_backend.len();
        if client.write_all(&from_backend[..end]).await.is_err() {
            return Ok((false, false));
        }
        done = !more;
    }
    Ok((open, answer.keep_alive && clean && drained(conn)))
}

/// The response head in `from_backend` past `parsed_upto`, once whole:
/// its length (from the start) and what it says of the body, with the
/// client's head written to `to_client` and the answer counted. Interim
/// (1xx) responses are skipped, as hyper's client does.
fn response_head(
    px: &Shared,
    b: &Backend,
    kind: Plain,
    from_backend: &[u8],
    parsed_upto: &mut usize,
    to_client: &mut Vec<u8>,
) -> Result<Option<(usize, wire::Answer)>, Failed> {
    loop {
        let mut hs = [httparse::EMPTY_HEADER; wire::MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&from_backend[*parsed_upto..]) {
            Ok(httparse::Status::Complete(n)) => {
                let code = resp.code.unwrap_or(0);
                if code == 101 {
                    return Err(Failed::Invalid("101 to a request without Upgrade".into()));
                }
                if (100..200).contains(&code) {
                    *parsed_upto += n;
                    continue;
                }
                let answer = wire::answer(&resp, kind.head).map_err(Failed::Invalid)?;
                let open = !kind.close && answer.framing != Framing::Close;
                to_client.clear();
                let shard = px
                    .shard_header
                    .as_ref()
                    .map(|h| (h.as_str(), b.name.as_str()));
                wire::response_head(to_client, &resp, shard, !open);
                px.upstreams.answered(b);
                let class = (code / 100).clamp(1, 5) as usize - 1;
                b.answered[class].fetch_add(1, Ordering::Relaxed);
                return Ok(Some((*parsed_upto + n, answer)));
            }
            Ok(httparse::Status::Partial) => {
                // Interim heads count too: a backend sending them for ever
                // must not grow the buffer for ever.
                if from_backend.len() > px.cfg.max_header_bytes {
                    return Err(Failed::Invalid(format!(
                        "response head over {} bytes",
                        px.cfg.max_header_bytes
                    )));
                }
                return Ok(None);
            }
            Err(e) => return Err(Failed::Invalid(format!("invalid response head: {e}"))),
        }
    }
}

/// Whether nothing more waits on a backend connection whose response is
/// over: bytes past a response (a body to a HEAD, more than its length) or
/// its close must not meet the next request sent on it. A read that finds
/// nothing also leaves tokio knowing the socket is drained, so the check
/// when the connection is taken again reads only if something came since.
fn drained(conn: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(conn.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Where a response body ends, as it streams.
enum Body {
    Empty,
    Length(u64),
    Chunked(Chunked),
    Close,
}

impl Body {
    fn new(f: Framing) -> Body {
        match f {
            Framing::Empty => Body::Empty,
            Framing::Length(n) => Body::Length(n),
            Framing::Chunked => Body::Chunked(Chunked::default()),
            Framing::Close => Body::Close,
        }
    }

    /// Of `bytes`, how many belong to the body, and whether more is to
    /// come.
    fn take(&mut self, bytes: &[u8]) -> Result<(usize, bool), String> {
        Ok(match self {
            Body::Empty => (0, false),
            Body::Length(left) => {
                let n = (*left).min(bytes.len() as u64);
                *left -= n;
                (n as usize, *left > 0)
            }
            Body::Chunked(c) => match c.advance(bytes)? {
                Some(n) => (n, false),
                None => (bytes.len(), true),
            },
            Body::Close => (bytes.len(), true),
        })
    }
}

/// Answers with the proxy's own response; whether the connection stays
/// open.
async fn own(
    client: &mut TcpStream,
    to_client: &mut Vec<u8>,
    status: u16,
    why: &str,
    kind: Plain,
) -> bool {
    to_client.clear();
    wire::own_response(to_client, status, why, kind.head, kind.close);
    client.write_all(to_client).await.is_ok() && !kind.close
}

/// A client socket handed to hyper with the bytes already read from it:
/// they are read again first.
pub(crate) struct Prefixed {
    prefix: BytesMut,
    inner: TcpStream,
}

impl Prefixed {
    /// `inner`, to be read after `prefix`.
    pub(crate) fn new(inner: TcpStream, prefix: BytesMut) -> Prefixed {
        Prefixed { prefix, inner }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
