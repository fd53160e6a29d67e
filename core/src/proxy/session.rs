//! One client connection: a reader that parses requests and hands them to
//! backends, and a writer that sends the replies back in request order.
//! Protocol-specific work (parsing, splitting, reassembling) is a
//! [`Protocol`]'s; this file only moves bytes and keeps order.
//!
//! The two halves are joined by a bounded queue of pending replies
//! (`client_pending_max`): a client that sends without reading fills it,
//! the reader stops reading, and TCP pushes back on the client. Memory per
//! client is bounded by the queue, one read buffer (itself bounded by the
//! parsers' limits) and the replies in flight.

use super::parse::Reject;
use super::pool::PoolSlot;
use super::stats::PoolStats;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A reply that is due, in request order.
pub(crate) enum Pending {
    /// Known now (a local answer, an error).
    Ready(Bytes),
    /// Comes from backends; `None` means the client gets nothing (quiet
    /// mode, `noreply`).
    Wait(Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>),
    /// Nothing to send, but later replies must still wait their turn.
    Nothing,
    /// Send this, then hang up.
    Close(Bytes),
}

/// What [`Protocol::feed`] asks of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Read more.
    More,
    /// Stop reading; close once the pending replies are written.
    Close,
}

/// A wire protocol's side of a client connection.
pub(crate) trait Protocol: Send + 'static {
    /// Parses complete requests at the front of `buf` (consuming them),
    /// dispatching each and pushing its reply to `out` in order, until the
    /// buffer holds no complete request or `out` holds `max` replies. The
    /// limit is what makes backpressure work: a request is dispatched (and
    /// its backend reply buffered) only once the client has room for it.
    fn feed(
        &mut self,
        buf: &mut BytesMut,
        slot: &PoolSlot,
        out: &mut Vec<Pending>,
        max: usize,
    ) -> Flow;
}

/// Answers bad input the way the real server does: discards what the
/// parser says, counts it, and queues the reply (nothing for an empty one).
/// `Flow::Close` when the real server would hang up after it.
pub(crate) fn reject(
    r: Reject,
    buf: &mut BytesMut,
    stats: &PoolStats,
    out: &mut Vec<Pending>,
) -> Flow {
    buf.advance(r.consumed);
    stats.client_errors.fetch_add(1, Ordering::Relaxed);
    let reply = Bytes::from(r.reply);
    if r.close {
        out.push(Pending::Close(reply));
        return Flow::Close;
    }
    if !reply.is_empty() {
        out.push(Pending::Ready(reply));
    }
    Flow::More
}

/// Serves one client until it leaves, errs, idles out or is told to close.
///
/// One task does it all, polling in turn: the socket for writing (what is
/// ready goes out), the oldest pending reply (replies go out in request
/// order), and the socket for reading (requests are parsed and dispatched,
/// up to `pending_max` unanswered). A second task and a channel between
/// reader and writer would cost a wake-up per request; this costs none.
pub(crate) async fn serve<S, P>(
    stream: S,
    slot: Arc<PoolSlot>,
    stats: Arc<PoolStats>,
    mut proto: P,
    pending_max: usize,
    idle: Option<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
    P: Protocol,
{
    let mut stream = std::pin::pin!(stream);
    // Buffers start empty and grow with use, so an idle client costs little.
    let mut inbuf = BytesMut::new();
    let mut out: Vec<u8> = Vec::new();
    let mut sent = 0usize;
    let mut queue: VecDeque<(Pending, Instant)> = VecDeque::new();
    let mut fresh = Vec::new();
    let max = pending_max.max(1);
    let mut reading = true;
    let mut closing = false;
    let idle_timer = tokio::time::sleep(idle.unwrap_or(Duration::from_secs(86_400)));
    let mut idle_timer = std::pin::pin!(idle_timer);
    let stopped = stop.changed();
    let mut stopped = std::pin::pin!(stopped);
    std::future::poll_fn(|cx| {
        loop {
            let mut progress = false;
            // 1. Write what is ready.
            while sent < out.len() {
                match stream.as_mut().poll_write(cx, &out[sent..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        stats.client_err.fetch_add(1, Ordering::Relaxed);
                        return Poll::Ready(());
                    }
                    Poll::Ready(Ok(n)) => {
                        sent += n;
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            if sent == out.len() && sent > 0 {
                sent = 0;
                out.clear();
                // Give back a buffer a burst made large.
                if out.capacity() > 256 * 1024 {
                    out = Vec::new();
                }
            }
            // 2. Replies, in order, while the output is not backed up.
            while out.len() < 256 * 1024 {
                let Some((pending, started)) = queue.front_mut() else {
                    break;
                };
                let reply = match pending {
                    Pending::Ready(b) => Some(std::mem::take(b)),
                    Pending::Nothing => None,
                    Pending::Close(b) => {
                        closing = true;
                        reading = false;
                        Some(std::mem::take(b))
                    }
                    Pending::Wait(fut) => match fut.as_mut().poll(cx) {
                        Poll::Ready(r) => r,
                        Poll::Pending => break,
                    },
                };
                stats.latency.record(started.elapsed());
                if let Some(b) = reply {
                    out.extend_from_slice(&b);
                }
                // Idle means neither side has done anything: a slow reply
                // is activity too.
                if let Some(t) = idle {
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + t);
                }
                queue.pop_front();
                progress = true;
                if closing {
                    queue.clear();
                    break;
                }
            }
            if !out.is_empty() && sent < out.len() {
                // Loop to write what was just added.
                if progress {
                    continue;
                }
            }
            // 3. Read and dispatch, while the client has room.
            if reading && queue.len() < max {
                let now = Instant::now();
                let room = max - queue.len();
                let flow = proto.feed(&mut inbuf, &slot, &mut fresh, room.min(64));
                if !fresh.is_empty() {
                    stats
                        .requests
                        .fetch_add(fresh.len() as u64, Ordering::Relaxed);
                    queue.extend(fresh.drain(..).map(|p| (p, now)));
                    if flow == Flow::Close {
                        reading = false;
                    }
                    continue;
                }
                if flow == Flow::Close {
                    reading = false;
                    continue;
                }
                if inbuf.capacity() - inbuf.len() < 1024 {
                    inbuf.reserve(if inbuf.is_empty() { 2048 } else { 16 * 1024 });
                }
                match tokio_util::io::poll_read_buf(stream.as_mut(), cx, &mut inbuf) {
                    Poll::Ready(Ok(0)) => {
                        stats.client_eof.fetch_add(1, Ordering::Relaxed);
                        reading = false;
                        continue;
                    }
                    Poll::Ready(Ok(_)) => {
                        if let Some(t) = idle {
                            idle_timer.as_mut().reset(tokio::time::Instant::now() + t);
                        }
                        continue;
                    }
                    Poll::Ready(Err(_)) => {
                        stats.client_err.fetch_add(1, Ordering::Relaxed);
                        return Poll::Ready(());
                    }
                    Poll::Pending => {
                        if inbuf.is_empty() && inbuf.capacity() > 64 * 1024 {
                            inbuf = BytesMut::new();
                        }
                    }
                }
                if idle.is_some()
                    && queue.is_empty()
                    && out.is_empty()
                    && idle_timer.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(());
                }
            }
            if !reading && queue.is_empty() && out.is_empty() {
                return Poll::Ready(());
            }
            if !progress {
                // Before sleeping: has the listener stopped? Then answer
                // what was sent, and hang up.
                if reading && stopped.as_mut().poll(cx).is_ready() {
                    reading = false;
                    continue;
                }
                // Waiting on the client with nothing in hand: give the
                // buffers back, so an idle connection holds no memory of
                // its own beyond its task (a busy one reallocates them).
                if queue.is_empty() && out.is_empty() && inbuf.is_empty() {
                    if inbuf.capacity() > 0 {
                        inbuf = BytesMut::new();
                    }
                    if out.capacity() > 0 {
                        out = Vec::new();
                    }
                }
                return Poll::Pending;
            }
        }
    })
    .await;
    let _ = stream.as_mut().shutdown().await;
}
