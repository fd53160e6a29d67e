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

use super::pool::PoolSlot;
use super::stats::PoolStats;
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
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

/// Serves one client until it leaves, errs, idles out or is told to close.
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
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<(Pending, Instant)>(pending_max.max(1));
    let writer = tokio::spawn(write_replies(wr, rx, stats.clone()));
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out = Vec::new();
    let batch = pending_max.clamp(1, 64);
    'read: loop {
        // Dispatch what is buffered, a batch at a time, each batch only once
        // the writer has room for it.
        let now = Instant::now();
        let flow = proto.feed(&mut buf, &slot, &mut out, batch);
        let produced = !out.is_empty();
        for p in out.drain(..) {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let close = matches!(p, Pending::Close(_));
            if tx.send((p, now)).await.is_err() {
                break 'read;
            }
            if close {
                break 'read;
            }
        }
        if flow == Flow::Close {
            break;
        }
        if produced {
            continue;
        }
        // A parser that returned without a request waits for more bytes;
        // the parsers' own limits reject lines and values that would grow
        // the buffer without bound.
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let read = tokio::select! {
            r = read_some(&mut rd, &mut buf, idle) => match r {
                Some(r) => r,
                None => break,
            },
            // The listener stopped: answer what was sent, then hang up.
            _ = stop.changed() => break,
        };
        match read {
            Ok(0) => {
                stats.client_eof.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Ok(_) => {}
            Err(_) => {
                stats.client_err.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// One read, or `None` when the client was idle for `idle`.
async fn read_some<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    idle: Option<Duration>,
) -> Option<std::io::Result<usize>> {
    match idle {
        Some(t) => tokio::time::timeout(t, rd.read_buf(buf)).await.ok(),
        None => Some(rd.read_buf(buf).await),
    }
}

async fn write_replies<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<(Pending, Instant)>,
    stats: Arc<PoolStats>,
) {
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        // Take the next reply; if none is queued, first flush what we have.
        let next = match rx.try_recv() {
            Ok(p) => Some(p),
            Err(_) => {
                if !out.is_empty() {
                    if wr.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
                rx.recv().await
            }
        };
        let Some((pending, started)) = next else {
            break;
        };
        let mut close = false;
        let reply = match pending {
            Pending::Ready(b) => Some(b),
            Pending::Nothing => None,
            Pending::Close(b) => {
                close = true;
                Some(b)
            }
            Pending::Wait(mut fut) => {
                // Flush before waiting, unless the reply is already there.
                let now = {
                    let waker = futures_noop_waker();
                    let mut cx = std::task::Context::from_waker(&waker);
                    fut.as_mut().poll(&mut cx)
                };
                match now {
                    std::task::Poll::Ready(r) => r,
                    std::task::Poll::Pending => {
                        if !out.is_empty() {
                            if wr.write_all(&out).await.is_err() {
                                return;
                            }
                            out.clear();
                        }
                        fut.await
                    }
                }
            }
        };
        stats.latency.record(started.elapsed());
        if let Some(b) = reply {
            out.extend_from_slice(&b);
        }
        if close {
            break;
        }
        if out.len() >= 256 * 1024 {
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
    if !out.is_empty() {
        let _ = wr.write_all(&out).await;
    }
    let _ = wr.shutdown().await;
}

/// A waker that does nothing: the writer polls a reply once to see whether
/// it is already complete, and awaits it properly (with the real waker)
/// when it is not.
fn futures_noop_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}
