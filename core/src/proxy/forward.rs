//! Sending one key's request to its servers, for every protocol: reads go
//! to one replica and fail over to the next, writes go to every replica.
//!
//! A read picks among the key's replicas by power of two choices over each
//! backend's latency estimate and outstanding calls (the scatter engine's
//! replica choice), and on a failure (no connection, timeout, lost
//! connection) tries the next untried replica. An error *reply* (say
//! `SERVER_ERROR out of memory`) is an answer, not a failure, and is passed
//! on. A write goes to all of the key's replicas at once; the client gets
//! the reply of the first replica in preference order that answered.

use super::backend::{Frame, Reply};
use super::pool::Servers;
use bytes::Bytes;
use futures_util::future::Either;
use std::future::Future;
use std::sync::Arc;

/// How a read chooses among the key's replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFrom {
    /// Any replica, by replica choice.
    Any,
    /// The first in preference order that works: for requests whose
    /// meaning depends on one server's state (`gets` CAS values, meta
    /// leases and stale-while-revalidate).
    Primary,
}

/// Reads `key` from one of its replicas, failing over to the others.
pub(crate) fn read(
    servers: &Arc<Servers>,
    key: &[u8],
    bytes: Bytes,
    frame: Frame,
    from: ReadFrom,
) -> impl Future<Output = Reply> + Send + 'static {
    let route = servers.route.load();
    let pin = route.key_hash(key);
    if route.replica_count() == 1 {
        // One server per key: nothing to choose or fail over to.
        let call = route
            .primary(key)
            .map(|b| servers.backends[b].call(pin, bytes, frame));
        return Either::Left(async move {
            match call {
                Some(c) => c.await,
                None => Err(super::backend::Failure::Gone),
            }
        });
    }
    let mut replicas = Vec::with_capacity(route.replica_count());
    route.read_replicas(key, &mut replicas);
    let servers = servers.clone();
    let pick = move |servers: &Servers, replicas: &[usize], tried: &[usize]| match from {
        ReadFrom::Any => servers.choose(replicas, tried),
        ReadFrom::Primary => replicas.iter().copied().find(|r| !tried.contains(r)),
    };
    let first = pick(&servers, &replicas, &[]);
    // The first call is queued now, not when the future is first polled, so
    // pipelined requests reach the backend in the order they were read.
    let call = first.map(|b| servers.backends[b].call(pin, bytes.clone(), frame));
    Either::Right(async move {
        let (Some(first), Some(call)) = (first, call) else {
            return Err(super::backend::Failure::Gone);
        };
        let mut tried = vec![first];
        let mut reply = call.await;
        while reply.is_err() {
            let Some(next) = pick(&servers, &replicas, &tried) else {
                break;
            };
            tried.push(next);
            reply = servers.backends[next].call(pin, bytes.clone(), frame).await;
        }
        reply
    })
}

/// Writes to every replica of `key`. With `wait` false (the client said
/// `noreply`), nothing waits for the replies; otherwise the future gives
/// the first reply in preference order that came back.
pub(crate) fn write(
    servers: &Arc<Servers>,
    key: &[u8],
    bytes: Bytes,
    frame: Frame,
    wait: bool,
) -> Option<impl Future<Output = Reply> + Send + 'static> {
    let route = servers.route.load();
    let mut replicas = Vec::with_capacity(route.replica_count());
    route.replicas(key, &mut replicas);
    let pin = route.key_hash(key);
    if !wait {
        for &b in &replicas {
            servers.backends[b].send(pin, bytes.clone(), frame);
        }
        return None;
    }
    let calls: Vec<_> = replicas
        .iter()
        .map(|&b| servers.backends[b].call(pin, bytes.clone(), frame))
        .collect();
    Some(async move {
        let mut last = Err(super::backend::Failure::Gone);
        for call in calls {
            match call.await {
                Ok(r) => return Ok(r),
                Err(e) => last = Err(e),
            }
        }
        last
    })
}

/// The request to every distinct backend of the pool (`flush_all`), and
/// their replies in backend order.
pub(crate) fn broadcast(
    servers: &Arc<Servers>,
    bytes: Bytes,
    frame: Frame,
) -> impl Future<Output = Vec<Reply>> + Send + 'static {
    let calls: Vec<_> = servers
        .backends
        .iter()
        .map(|b| b.call(0, bytes.clone(), frame))
        .collect();
    async move {
        let mut out = Vec::with_capacity(calls.len());
        for c in calls {
            out.push(c.await);
        }
        out
    }
}
