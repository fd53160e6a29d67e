//! The memcache side of a client connection: text and meta requests parsed
//! ([`super::text`], [`super::meta`]), sent to their keys' servers, and
//! answered as one memcached would answer them.
//!
//! - `get`/`gets`/`gat`/`gats` with many keys are split into one request per
//!   server and the items put back in request order. If a server fails
//!   (after failover to the key's other replicas) the whole request gets
//!   `SERVER_ERROR`, as with nutcracker.
//! - `noreply` and meta quiet mode are kept from the backends: the proxy
//!   asks for every reply (it needs them to match replies to requests on
//!   shared connections) and drops the ones the client did not ask for.
//!   `mn` is answered by the proxy, after every earlier reply.
//! - `gets`, `cas` and meta requests with lease flags (N, R, I) use the
//!   key's first server in service, so CAS values and leases mean what they
//!   mean on one memcached; after a `cas` stores on a replicated pool, the
//!   value is `set` on the other replicas.
//! - `version` answers with shardkit's version; `verbosity` is answered
//!   `OK` and goes nowhere; `flush_all` goes to every server and answers
//!   `OK` once all have (or the first error); `stats` answers with the
//!   proxy's own counters for the pool (`STAT` lines, then `END`), not the
//!   servers': per-server stats are on the metrics and stats addresses.

use super::backend::{Failure, Frame, Reply};
use super::forward::{self, ReadFrom};
use super::hotkeys::HotKeys;
use super::meta::{self, Framing, MetaCmd, MetaParse};
use super::parse::Parse;
use super::pool::{PoolSlot, Servers};
use super::session::{self, Flow, Pending, Protocol};
use super::stats::PoolStats;
use super::text::{self, TextCmd, TextParse, TextRequest};
use bytes::{Buf, Bytes, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;

const END: &[u8] = b"END\r\n";

/// Per-connection state of a memcache client.
pub(crate) struct Memcache {
    /// Bytes of an oversized value still to discard.
    swallow: usize,
    stats: Arc<PoolStats>,
}

impl Memcache {
    pub(crate) fn new(stats: Arc<PoolStats>) -> Memcache {
        Memcache { swallow: 0, stats }
    }
}

fn server_error(f: &Failure) -> Bytes {
    Bytes::from(format!("SERVER_ERROR {f}\r\n"))
}

impl Protocol for Memcache {
    fn feed(
        &mut self,
        buf: &mut BytesMut,
        slot: &PoolSlot,
        out: &mut Vec<Pending>,
        max: usize,
    ) -> Flow {
        let pool = slot.load();
        let limits = pool.cfg.limits;
        while out.len() < max {
            if self.swallow > 0 {
                let n = self.swallow.min(buf.len());
                buf.advance(n);
                self.swallow -= n;
                if self.swallow > 0 {
                    return Flow::More;
                }
            }
            if buf.is_empty() {
                return Flow::More;
            }
            if text::is_meta(buf) {
                match meta::parse(buf, &limits) {
                    MetaParse::Parsed(Parse::Incomplete) => return Flow::More,
                    MetaParse::Parsed(Parse::Reject(r)) => {
                        if session::reject(r, buf, &self.stats, out) == Flow::Close {
                            return Flow::Close;
                        }
                    }
                    MetaParse::Parsed(Parse::Request(req, n)) => {
                        buf.advance(n);
                        out.push(dispatch_meta(req, &pool.servers, pool.hot.as_ref()));
                    }
                    MetaParse::Swallow {
                        reject,
                        more,
                        invalidate,
                    } => {
                        buf.advance(reject.consumed);
                        self.swallow = more;
                        self.stats.client_errors.fetch_add(1, Ordering::Relaxed);
                        if let Some(inv) = invalidate {
                            // memcached drops the key whose overwrite failed;
                            // so does its server here. Nobody waits for it.
                            let _ = forward::write(
                                &pool.servers,
                                &inv.route_key,
                                Bytes::from(inv.backend),
                                Frame::Meta,
                                false,
                            );
                        }
                        out.push(Pending::Ready(Bytes::from(reject.reply)));
                    }
                }
                continue;
            }
            match text::parse(buf, &limits) {
                TextParse::TooLarge {
                    consumed,
                    swallow,
                    noreply,
                } => {
                    buf.advance(consumed);
                    self.swallow = swallow.bytes;
                    self.stats.client_errors.fetch_add(1, Ordering::Relaxed);
                    if !noreply {
                        out.push(Pending::Ready(Bytes::from_static(text::TOO_LARGE)));
                    }
                }
                TextParse::Parsed(Parse::Incomplete) => return Flow::More,
                TextParse::Parsed(Parse::Reject(r)) => {
                    if session::reject(r, buf, &self.stats, out) == Flow::Close {
                        return Flow::Close;
                    }
                }
                TextParse::Parsed(Parse::Request(req, n)) => {
                    let raw = buf.split_to(n).freeze();
                    if req.cmd == TextCmd::Quit {
                        return Flow::Close;
                    }
                    out.push(self.dispatch_text(req, raw, &pool.servers, pool.hot.as_ref()));
                }
            }
        }
        Flow::More
    }
}

impl Memcache {
    fn dispatch_text(
        &self,
        req: TextRequest,
        raw: Bytes,
        servers: &Arc<Servers>,
        hot: Option<&Arc<HotKeys>>,
    ) -> Pending {
        match req.cmd {
            TextCmd::Get | TextCmd::Gets | TextCmd::Gat | TextCmd::Gats => {
                let touches = matches!(req.cmd, TextCmd::Gat | TextCmd::Gats);
                if touches && servers.route.load().replica_count() > 1 {
                    // gat changes the TTL: on every replica, as touch does.
                    return self.gat_replicated(req, raw, servers);
                }
                if req.keys.len() == 1 && (hot.is_none() || req.cmd != TextCmd::Get) {
                    let key = &raw[req.keys[0].clone()];
                    let from = if matches!(req.cmd, TextCmd::Gets | TextCmd::Gats) {
                        ReadFrom::Primary
                    } else {
                        ReadFrom::Any
                    };
                    // `get <key>\r\n` as sent is what the backend gets.
                    let bytes = if req.cmd == TextCmd::Get
                        && req.keys[0].start == 4
                        && raw.len() == key.len() + 6
                        && raw.ends_with(b"\r\n")
                    {
                        raw.clone()
                    } else {
                        let mut b = Vec::with_capacity(raw.len());
                        text::encode_retrieval(&req, &raw, std::iter::once(key), &mut b);
                        Bytes::from(b)
                    };
                    let call = forward::read(servers, key, bytes, Frame::TextRetrieval, from);
                    let stats = self.stats.clone();
                    return Pending::Wait(Box::pin(async move {
                        Some(call.await.unwrap_or_else(|f| {
                            stats.forward_error.fetch_add(1, Ordering::Relaxed);
                            server_error(&f)
                        }))
                    }));
                }
                self.multi_get(req, raw, servers, hot)
            }
            TextCmd::Version => Pending::Ready(Bytes::from(format!(
                "VERSION shardkit-{}\r\n",
                crate::VERSION
            ))),
            TextCmd::Verbosity => {
                if req.noreply {
                    Pending::Nothing
                } else {
                    Pending::Ready(Bytes::from_static(b"OK\r\n"))
                }
            }
            TextCmd::Stats => Pending::Ready(self.stats_reply(servers)),
            TextCmd::FlushAll => {
                let mut b = b"flush_all".to_vec();
                if !req.args.is_empty() {
                    b.push(b' ');
                    b.extend_from_slice(&raw[req.args.clone()]);
                }
                b.extend_from_slice(b"\r\n");
                let all = forward::broadcast(servers, Bytes::from(b), Frame::TextLine);
                let noreply = req.noreply;
                Pending::Wait(Box::pin(async move {
                    let mut reply = Bytes::from_static(b"OK\r\n");
                    for r in all.await {
                        match r {
                            Ok(r) if r.as_ref() == b"OK\r\n" => {}
                            Ok(r) => {
                                reply = r;
                                break;
                            }
                            Err(f) => {
                                reply = server_error(&f);
                                break;
                            }
                        }
                    }
                    (!noreply).then_some(reply)
                }))
            }
            TextCmd::Quit => Pending::Nothing,
            _ => self.write_text(req, raw, servers, hot),
        }
    }

    fn write_text(
        &self,
        req: TextRequest,
        raw: Bytes,
        servers: &Arc<Servers>,
        hot: Option<&Arc<HotKeys>>,
    ) -> Pending {
        let key = &raw[req.keys[0].clone()];
        // Before the write is sent (no read after this fills the copy with
        // what the write replaces) and again when it is answered (a read
        // sent before it may have filled the copy meanwhile).
        let after = hot.map(|h| {
            h.invalidate(key);
            (h.clone(), Bytes::copy_from_slice(key))
        });
        let mut b = Vec::with_capacity(raw.len());
        text::encode_one(&req, &raw, key, &mut b);
        let bytes = Bytes::from(b);
        let stats = self.stats.clone();
        let fail = move |f: Failure| {
            stats.forward_error.fetch_add(1, Ordering::Relaxed);
            server_error(&f)
        };
        let replicated = servers.route.load().replica_count() > 1;
        if req.cmd == TextCmd::Cas && replicated {
            // A CAS value is one server's: check it there, then copy the
            // stored value to the other replicas.
            let call = forward::read(servers, key, bytes, Frame::TextLine, ReadFrom::Primary);
            let servers = servers.clone();
            let key = Bytes::copy_from_slice(key);
            let (req2, raw2) = (req.clone(), raw.clone());
            return Pending::Wait(Box::pin(async move {
                let r = call.await;
                if let Some((h, k)) = &after {
                    h.invalidate(k);
                }
                if matches!(&r, Ok(b) if b.as_ref() == b"STORED\r\n") {
                    copy_to_replicas(&servers, &key, &req2, &raw2);
                }
                let r = r.unwrap_or_else(fail);
                (!req2.noreply).then_some(r)
            }));
        }
        // A `noreply` write still waits for its reply here (and the client
        // gets nothing): it counts against `client_pending_max`, so a client
        // streaming noreply writes is slowed to its servers' pace instead of
        // queueing without bound.
        let noreply = req.noreply;
        match forward::write(servers, key, bytes, Frame::TextLine, true) {
            None => Pending::Nothing,
            Some(call) => Pending::Wait(Box::pin(async move {
                let r = call.await;
                if let Some((h, k)) = &after {
                    h.invalidate(k);
                }
                let r = r.unwrap_or_else(fail);
                (!noreply).then_some(r)
            })),
        }
    }

    /// `gat`/`gats` on a replicated pool: one request per key, to all of
    /// its replicas (the TTL changes everywhere), the first replica's items
    /// put together in request order.
    fn gat_replicated(&self, req: TextRequest, raw: Bytes, servers: &Arc<Servers>) -> Pending {
        let calls: Vec<_> = req
            .keys
            .iter()
            .filter_map(|k| {
                let key = &raw[k.clone()];
                let mut b = Vec::with_capacity(raw.len());
                text::encode_retrieval(&req, &raw, std::iter::once(key), &mut b);
                forward::write(servers, key, Bytes::from(b), Frame::TextRetrieval, true)
            })
            .collect();
        let stats = self.stats.clone();
        Pending::Wait(Box::pin(async move {
            let mut out = Vec::new();
            for call in calls {
                match call.await {
                    Ok(reply) => {
                        let body = reply.strip_suffix(END).unwrap_or(&reply);
                        if text::is_error_line(body.strip_suffix(b"\r\n").unwrap_or(body)) {
                            return Some(reply);
                        }
                        out.extend_from_slice(body);
                    }
                    Err(f) => {
                        stats.forward_error.fetch_add(1, Ordering::Relaxed);
                        return Some(server_error(&f));
                    }
                }
            }
            out.extend_from_slice(END);
            Some(Bytes::from(out))
        }))
    }

    fn multi_get(
        &self,
        req: TextRequest,
        raw: Bytes,
        servers: &Arc<Servers>,
        hot: Option<&Arc<HotKeys>>,
    ) -> Pending {
        let route = servers.route.load();
        let n = req.keys.len();
        let primary_only = matches!(req.cmd, TextCmd::Gets | TextCmd::Gats);
        let cacheable = req.cmd == TextCmd::Get;
        let mut found: Vec<Option<Bytes>> = vec![None; n];
        let mut tickets = Vec::new();
        let mut cached = vec![false; n];
        let mut replicas_of: Vec<Vec<usize>> = Vec::with_capacity(n);
        let mut reps = Vec::new();
        for (i, k) in req.keys.iter().enumerate() {
            let key = &raw[k.clone()];
            route.read_replicas(key, &mut reps);
            if let (Some(h), true) = (hot, cacheable) {
                if h.record(key) {
                    if let Some(item) = h.get(key) {
                        if let Some(&b) = reps.first() {
                            servers.backends[b]
                                .stats
                                .hot_hits
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        found[i] = Some(item);
                        cached[i] = true;
                    } else if let Some(t) = h.begin_fill(key) {
                        tickets.push((i, t));
                    }
                }
            }
            replicas_of.push(reps.clone());
        }
        let hot = hot.cloned();
        let servers = servers.clone();
        let stats = self.stats.clone();
        // First attempt: one part per chosen backend.
        let mut tried: Vec<Vec<usize>> = vec![Vec::new(); n];
        let todo: Vec<usize> = (0..n).filter(|&i| !cached[i]).collect();
        let first = send_parts(
            &servers,
            &req,
            &raw,
            &todo,
            &replicas_of,
            &mut tried,
            primary_only,
            &stats,
        );
        Pending::Wait(Box::pin(async move {
            let mut parts = first;
            loop {
                let mut retry = Vec::new();
                for (keys, call) in parts {
                    match call.await {
                        Ok(reply) => {
                            if let Err(line) = assign(&reply, &raw, &req, &keys, &mut found) {
                                // memcached answered the whole part with an
                                // error: that is the request's answer.
                                return Some(reply.slice(line));
                            }
                        }
                        Err(f) => {
                            if keys
                                .iter()
                                .all(|&i| replicas_of[i].iter().all(|b| tried[i].contains(b)))
                            {
                                stats.forward_error.fetch_add(1, Ordering::Relaxed);
                                return Some(server_error(&f));
                            }
                            retry.extend(keys);
                        }
                    }
                }
                if retry.is_empty() {
                    break;
                }
                parts = send_parts(
                    &servers,
                    &req,
                    &raw,
                    &retry,
                    &replicas_of,
                    &mut tried,
                    primary_only,
                    &stats,
                );
            }
            if let Some(h) = &hot {
                for (i, ticket) in tickets {
                    h.complete_fill(ticket, found[i].clone().unwrap_or_default());
                }
            }
            let mut out = Vec::new();
            for item in found.iter().flatten() {
                out.extend_from_slice(item);
            }
            out.extend_from_slice(END);
            Some(Bytes::from(out))
        }))
    }

    fn stats_reply(&self, servers: &Servers) -> Bytes {
        let s = &self.stats;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let ejected = servers
            .backends
            .iter()
            .filter(|b| b.health.is_ejected())
            .count();
        Bytes::from(format!(
            "STAT pid {}\r\nSTAT version shardkit-{}\r\nSTAT curr_connections {}\r\nSTAT total_connections {}\r\nSTAT cmd_total {}\r\nSTAT forward_error {}\r\nSTAT fragments {}\r\nSTAT client_errors {}\r\nSTAT servers {}\r\nSTAT servers_ejected {}\r\nEND\r\n",
            std::process::id(),
            crate::VERSION,
            ld(&s.client_connections),
            ld(&s.total_connections),
            ld(&s.requests),
            ld(&s.forward_error),
            ld(&s.fragments),
            ld(&s.client_errors),
            servers.backends.len(),
            ejected,
        ))
    }
}

type PartCall = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;

/// Sends the keys `todo` (indices into the request's keys), grouped by the
/// replica chosen for each among those not yet tried.
#[allow(clippy::too_many_arguments)]
fn send_parts(
    servers: &Arc<Servers>,
    req: &TextRequest,
    raw: &Bytes,
    todo: &[usize],
    replicas_of: &[Vec<usize>],
    tried: &mut [Vec<usize>],
    primary_only: bool,
    stats: &PoolStats,
) -> Vec<(Vec<usize>, PartCall)> {
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in todo {
        let reps = &replicas_of[i];
        let b = if primary_only {
            reps.iter().copied().find(|r| !tried[i].contains(r))
        } else {
            servers.choose(reps, &tried[i])
        };
        let Some(b) = b else { continue };
        tried[i].push(b);
        match groups.iter_mut().find(|(g, _)| *g == b) {
            Some((_, keys)) => keys.push(i),
            None => groups.push((b, vec![i])),
        }
    }
    if groups.len() > 1 {
        stats
            .fragments
            .fetch_add(groups.len() as u64, Ordering::Relaxed);
    }
    groups
        .into_iter()
        .map(|(b, keys)| {
            let mut bytes = Vec::with_capacity(64 + keys.len() * 16);
            text::encode_retrieval(
                req,
                raw,
                keys.iter().map(|&i| &raw[req.keys[i].clone()]),
                &mut bytes,
            );
            let pin = servers
                .route
                .load()
                .key_hash(&raw[req.keys[keys[0]].clone()]);
            let call: PartCall =
                Box::pin(servers.backends[b].call(pin, Bytes::from(bytes), Frame::TextRetrieval));
            (keys, call)
        })
        .collect()
}

/// Puts a part's items at their keys' places. A backend answers the hits of
/// its keys in the order it was asked, so the items are matched to the
/// part's keys in order (a key asked twice gets two items). `Err` is the
/// range of an error line that answered the whole part.
fn assign(
    reply: &Bytes,
    raw: &Bytes,
    req: &TextRequest,
    keys: &[usize],
    found: &mut [Option<Bytes>],
) -> Result<(), std::ops::Range<usize>> {
    let items = text::items(reply)?;
    let mut it = items.into_iter().peekable();
    for &i in keys {
        let key = &raw[req.keys[i].clone()];
        if let Some(item) = it.peek() {
            if &reply[item.key.clone()] == key {
                found[i] = Some(reply.slice(item.bytes.clone()));
                it.next();
            }
        }
    }
    Ok(())
}

/// After a `cas` stored on the key's first server: `set` the same value on
/// its other replicas, so they hold what the first one holds.
fn copy_to_replicas(servers: &Servers, key: &[u8], req: &TextRequest, raw: &Bytes) {
    let route = servers.route.load();
    let mut reps = Vec::new();
    route.replicas(key, &mut reps);
    let pin = route.key_hash(key);
    let mut set = req.clone();
    set.cmd = TextCmd::Set;
    // cas's args end with the CAS value: drop it.
    let args = &raw[req.args.clone()];
    let cut = args.iter().rposition(|&b| b == b' ').unwrap_or(args.len());
    set.args = req.args.start..req.args.start + cut;
    let mut b = Vec::with_capacity(raw.len());
    text::encode_one(&set, raw, key, &mut b);
    let bytes = Bytes::from(b);
    for &r in reps.iter().skip(1) {
        servers.backends[r].send(pin, bytes.clone(), Frame::TextLine);
    }
}

/// A meta request: sent to its key's servers, its reply dropped when the
/// client's quiet flag says memcached would have sent nothing.
fn dispatch_meta(
    mut req: meta::MetaRequest,
    servers: &Arc<Servers>,
    hot: Option<&Arc<HotKeys>>,
) -> Pending {
    if req.cmd == MetaCmd::Noop {
        return Pending::Ready(Bytes::from_static(b"MN\r\n"));
    }
    let frame = match req.framing {
        Framing::Fenced => Frame::MetaFenced,
        Framing::One | Framing::Discard => Frame::Meta,
    };
    let bytes = Bytes::from(std::mem::take(&mut req.backend));
    // A write invalidates the key's hot copy before it is sent and once it
    // is answered (see `write_text`).
    let after = if req.writes {
        hot.map(|h| {
            h.invalidate(&req.route_key);
            (h.clone(), Bytes::copy_from_slice(&req.route_key))
        })
    } else {
        None
    };
    let call: PartCall = if req.writes {
        if req.lease {
            Box::pin(forward::read(
                servers,
                &req.route_key,
                bytes,
                frame,
                ReadFrom::Primary,
            ))
        } else {
            match forward::write(servers, &req.route_key, bytes, frame, true) {
                Some(c) => Box::pin(c),
                None => return Pending::Nothing,
            }
        }
    } else {
        // On a replicated pool, meta reads use the key's first server in
        // service: a lease or CAS write went there alone, so another
        // replica could answer from an older state.
        let from =
            if req.lease || req.cmd == MetaCmd::Debug || servers.route.load().replica_count() > 1 {
                ReadFrom::Primary
            } else {
                ReadFrom::Any
            };
        Box::pin(forward::read(servers, &req.route_key, bytes, frame, from))
    };
    Pending::Wait(Box::pin(async move {
        let r = call.await;
        if let Some((h, k)) = &after {
            h.invalidate(k);
        }
        match r {
            Ok(reply) => {
                let part = meta::to_client(&req, &reply);
                (!part.is_empty()).then(|| reply.slice(part))
            }
            Err(f) => Some(server_error(&f)),
        }
    }))
}
