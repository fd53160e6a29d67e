//! The Redis side of a client connection (RESP2, `redis: true` pools):
//! commands parsed ([`super::resp`]), routed by key (hash tags honoured by
//! the pool's key selector), multi-key commands split across shards and
//! their replies reassembled, as nutcracker does.
//!
//! - MGET is split into one MGET per server and the values put back in
//!   request order; DEL, EXISTS, UNLINK and TOUCH are split and their counts
//!   summed; MSET is split and answers `+OK` once every part has.
//! - AUTH checks `redis_auth` (the proxy gives it to backends itself);
//!   until a client has authenticated, everything but AUTH and QUIT gets
//!   `-NOAUTH`. SELECT of the pool's `redis_db` is accepted; any other
//!   database is refused (a proxy's backends are all on one). PING is
//!   answered by the proxy.
//! - A command outside the table gets an error naming it; a backend that
//!   fails gets `-ERR` naming why (a single-key read first fails over to the
//!   key's other replicas; a part of a multi-key command does not, so the
//!   whole command fails).
//! - On a replicated pool, reads go to one replica and writes to all; the
//!   client gets the first replica's reply.

use super::backend::{Failure, Frame, Reply};
use super::forward::{self, ReadFrom};
use super::hotkeys::HotKeys;
use super::parse::Parse;
use super::pool::{PoolSlot, Servers};
use super::resp::{self, Kind};
use super::session::{self, Flow, Pending, Protocol};
use super::stats::PoolStats;
use bytes::{Bytes, BytesMut};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Per-connection state of a Redis client.
pub(crate) struct Redis {
    stats: Arc<PoolStats>,
    password: Option<String>,
    authed: bool,
}

impl Redis {
    pub(crate) fn new(stats: Arc<PoolStats>, password: Option<String>) -> Redis {
        let authed = password.is_none();
        Redis {
            stats,
            password,
            authed,
        }
    }
}

fn backend_error(f: &Failure) -> Bytes {
    Bytes::from(format!("-ERR shardkit proxy: backend {f}\r\n"))
}

/// Commands that only read: on a replicated pool they go to one replica;
/// everything else is a write and goes to all (and invalidates a hot key's
/// copy).
fn is_read(name: &[u8]) -> bool {
    const READS: &[&str] = &[
        "GET",
        "MGET",
        "EXISTS",
        "TTL",
        "PTTL",
        "TYPE",
        "STRLEN",
        "GETRANGE",
        "SUBSTR",
        "GETBIT",
        "BITCOUNT",
        "BITPOS",
        "HGET",
        "HMGET",
        "HGETALL",
        "HKEYS",
        "HVALS",
        "HLEN",
        "HEXISTS",
        "HSTRLEN",
        "HSCAN",
        "HRANDFIELD",
        "LRANGE",
        "LINDEX",
        "LLEN",
        "LPOS",
        "SCARD",
        "SISMEMBER",
        "SMISMEMBER",
        "SMEMBERS",
        "SSCAN",
        "ZCARD",
        "ZCOUNT",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZREVRANGE",
        "ZREVRANGEBYSCORE",
        "ZRANK",
        "ZREVRANK",
        "ZSCORE",
        "ZMSCORE",
        "ZLEXCOUNT",
        "ZRANGEBYLEX",
        "ZREVRANGEBYLEX",
        "ZSCAN",
        "ZRANDMEMBER",
        "PFCOUNT",
        "DUMP",
        "GEOPOS",
        "GEODIST",
        "GEOHASH",
        "GEORADIUS_RO",
        "GEORADIUSBYMEMBER_RO",
        "GEOSEARCH",
        "SORT_RO",
        "OBJECT",
    ];
    READS
        .iter()
        .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
}

impl Protocol for Redis {
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
            if buf.is_empty() {
                return Flow::More;
            }
            match resp::parse_command(buf, &limits) {
                Parse::Incomplete => return Flow::More,
                Parse::Reject(r) => {
                    if session::reject(r, buf, &self.stats, out) == Flow::Close {
                        return Flow::Close;
                    }
                }
                Parse::Request(cmd, n) => {
                    let raw = buf.split_to(n).freeze();
                    if cmd.args.is_empty() {
                        continue;
                    }
                    match self.dispatch(&cmd.args, raw, &pool.servers, pool.hot.as_ref(), &pool.cfg)
                    {
                        Some(p) => {
                            let close = matches!(p, Pending::Close(_));
                            out.push(p);
                            if close {
                                return Flow::Close;
                            }
                        }
                        None => continue,
                    }
                }
            }
        }
        Flow::More
    }
}

impl Redis {
    fn dispatch(
        &mut self,
        args: &[Range<usize>],
        raw: Bytes,
        servers: &Arc<Servers>,
        hot: Option<&Arc<HotKeys>>,
        cfg: &super::config::PoolConfig,
    ) -> Option<Pending> {
        let name = &raw[args[0].clone()];
        let arg = |i: usize| &raw[args[i].clone()];
        let ready = |b: Vec<u8>| Some(Pending::Ready(Bytes::from(b)));
        let Some(spec) = resp::command_spec(name) else {
            self.stats.client_errors.fetch_add(1, Ordering::Relaxed);
            return ready(resp::unsupported(name));
        };
        if !spec.arity_ok(args.len()) {
            self.stats.client_errors.fetch_add(1, Ordering::Relaxed);
            return ready(resp::wrong_arity(name));
        }
        if !self.authed && !matches!(spec.kind, Kind::Auth | Kind::Quit) {
            return ready(b"-NOAUTH Authentication required.\r\n".to_vec());
        }
        match spec.kind {
            Kind::Ping => {
                if args.len() == 1 {
                    return ready(resp::PONG.to_vec());
                }
                let v = arg(1);
                ready([format!("${}\r\n", v.len()).as_bytes(), v, b"\r\n"].concat())
            }
            Kind::Quit => Some(Pending::Close(Bytes::from_static(resp::OK))),
            Kind::Auth => {
                let given = arg(args.len() - 1);
                match &self.password {
                    None => ready(b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n".to_vec()),
                    Some(p) if p.as_bytes() == given => {
                        self.authed = true;
                        ready(resp::OK.to_vec())
                    }
                    Some(_) => ready(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n".to_vec()),
                }
            }
            Kind::Select => {
                if arg(1) == cfg.redis_db.to_string().as_bytes() {
                    ready(resp::OK.to_vec())
                } else {
                    ready(resp::error(&format!(
                        "SELECT {} is not supported: this pool's backends use database {}",
                        String::from_utf8_lossy(arg(1)),
                        cfg.redis_db
                    )))
                }
            }
            Kind::SingleKey => Some(self.single(name, arg(1), &raw, args, servers, hot)),
            Kind::Eval => match resp::eval_numkeys(
                &raw,
                &resp::Command {
                    args: args.to_vec(),
                },
            ) {
                Ok(_) => Some(self.single(name, arg(3), &raw, args, servers, hot)),
                Err(reply) => ready(reply),
            },
            Kind::MultiKey { step } => Some(self.multi(name, step, &raw, args, servers, hot)),
        }
    }

    fn wire(raw: &Bytes, args: &[Range<usize>]) -> Bytes {
        if raw.first() == Some(&b'*') {
            return raw.clone();
        }
        // An inline command goes to the backend as multibulk.
        let parts: Vec<&[u8]> = args.iter().map(|r| &raw[r.clone()]).collect();
        let mut out = Vec::with_capacity(raw.len() + 16 * args.len());
        resp::encode_command(&parts, &mut out);
        Bytes::from(out)
    }

    fn single(
        &self,
        name: &[u8],
        key: &[u8],
        raw: &Bytes,
        args: &[Range<usize>],
        servers: &Arc<Servers>,
        hot: Option<&Arc<HotKeys>>,
    ) -> Pending {
        let bytes = Self::wire(raw, args);
        let stats = self.stats.clone();
        let fail = move |f: Failure| {
            stats.forward_error.fetch_add(1, Ordering::Relaxed);
            backend_error(&f)
        };
        if !is_read(name) {
            // Invalidated before the write is sent and again once it is
            // answered: see the memcache side's `write_text`.
            let after = hot.map(|h| {
                h.invalidate(key);
                (h.clone(), Bytes::copy_from_slice(key))
            });
            return match forward::write(servers, key, bytes, Frame::Resp, true) {
                Some(call) => Pending::Wait(Box::pin(async move {
                    let r = call.await;
                    if let Some((h, k)) = &after {
                        h.invalidate(k);
                    }
                    Some(r.unwrap_or_else(fail))
                })),
                None => Pending::Nothing,
            };
        }
        let mut ticket = None;
        if let (Some(h), true) = (hot, name.eq_ignore_ascii_case(b"GET")) {
            if h.record(key) {
                if let Some(reply) = h.get(key) {
                    let route = servers.route.load();
                    if let Some(b) = route.primary(key) {
                        servers.backends[b]
                            .stats
                            .hot_hits
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    return Pending::Ready(reply);
                }
                ticket = h.begin_fill(key).map(|t| (t, h.clone()));
            }
        }
        let call = forward::read(servers, key, bytes, Frame::Resp, ReadFrom::Any);
        Pending::Wait(Box::pin(async move {
            let r = call.await;
            if let (Some((t, h)), Ok(reply)) = (ticket, &r) {
                if !resp::is_error(reply) {
                    h.complete_fill(t, reply.clone());
                }
            }
            Some(r.unwrap_or_else(fail))
        }))
    }

    fn multi(
        &self,
        name: &[u8],
        step: usize,
        raw: &Bytes,
        args: &[Range<usize>],
        servers: &Arc<Servers>,
        hot: Option<&Arc<HotKeys>>,
    ) -> Pending {
        let read = is_read(name);
        let route = servers.route.load();
        let nkeys = (args.len() - 1) / step;
        if (args.len() - 1) % step != 0 {
            return Pending::Ready(Bytes::from(resp::wrong_arity(name)));
        }
        let key_of = |i: usize| &raw[args[1 + i * step].clone()];
        // Group the keys by server: a read by each key's chosen replica,
        // a write by every replica (the first replica's group answers).
        let mut groups: Vec<(usize, Vec<usize>, bool)> = Vec::new();
        let mut reps = Vec::new();
        let mut written = Vec::new();
        for i in 0..nkeys {
            let key = key_of(i);
            if !read {
                if let Some(h) = hot {
                    h.invalidate(key);
                    written.push(Bytes::copy_from_slice(key));
                }
            }
            if read {
                route.read_replicas(key, &mut reps);
            } else {
                route.replicas(key, &mut reps);
            }
            let targets: Vec<(usize, bool)> = if read {
                servers
                    .choose(&reps, &[])
                    .map(|b| (b, true))
                    .into_iter()
                    .collect()
            } else {
                reps.iter().enumerate().map(|(j, &b)| (b, j == 0)).collect()
            };
            for (b, answers) in targets {
                match groups.iter_mut().find(|(g, _, a)| *g == b && *a == answers) {
                    Some((_, keys, _)) => keys.push(i),
                    None => groups.push((b, vec![i], answers)),
                }
            }
        }
        if groups.len() > 1 {
            self.stats
                .fragments
                .fetch_add(groups.len() as u64, Ordering::Relaxed);
        }
        let mut calls = Vec::new();
        for (b, keys, answers) in groups {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + keys.len() * step);
            parts.push(name);
            for &i in &keys {
                for j in 0..step {
                    parts.push(&raw[args[1 + i * step + j].clone()]);
                }
            }
            let mut bytes = Vec::new();
            resp::encode_command(&parts, &mut bytes);
            let pin = route.key_hash(key_of(keys[0]));
            if answers {
                calls.push((
                    keys,
                    servers.backends[b].call(pin, Bytes::from(bytes), Frame::Resp),
                ));
            } else {
                servers.backends[b].send(pin, Bytes::from(bytes), Frame::Resp);
            }
        }
        let stats = self.stats.clone();
        let upper = name.to_ascii_uppercase();
        let hot = hot.cloned();
        Pending::Wait(Box::pin(async move {
            let mut values: Vec<Option<Bytes>> = vec![None; nkeys];
            let mut sum: i64 = 0;
            for (keys, call) in calls {
                let reply: Reply = call.await;
                if let Some(h) = &hot {
                    for k in &written {
                        h.invalidate(k);
                    }
                }
                let reply = match reply {
                    Ok(r) => r,
                    Err(f) => {
                        stats.forward_error.fetch_add(1, Ordering::Relaxed);
                        return Some(backend_error(&f));
                    }
                };
                if resp::is_error(&reply) {
                    return Some(reply);
                }
                match upper.as_slice() {
                    b"MGET" => {
                        let Ok(elems) = resp::array_elements(&reply) else {
                            return Some(Bytes::from(resp::error(
                                "shardkit proxy: a backend's MGET reply is not an array",
                            )));
                        };
                        if elems.len() != keys.len() {
                            return Some(Bytes::from(resp::error(
                                "shardkit proxy: a backend's MGET reply has the wrong length",
                            )));
                        }
                        for (&i, e) in keys.iter().zip(elems) {
                            values[i] = Some(reply.slice(e));
                        }
                    }
                    b"MSET" => {}
                    _ => sum += resp::integer_value(&reply).unwrap_or(0),
                }
            }
            let mut out = Vec::new();
            match upper.as_slice() {
                b"MGET" => {
                    resp::array_header(nkeys, &mut out);
                    for v in values {
                        out.extend_from_slice(v.as_deref().unwrap_or(resp::NULL_BULK));
                    }
                }
                b"MSET" => out.extend_from_slice(resp::OK),
                _ => resp::integer(sum, &mut out),
            }
            Some(Bytes::from(out))
        }))
    }
}
