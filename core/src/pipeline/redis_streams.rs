//! The Redis Streams transport: a topic is `partitions` streams
//! (`PREFIX TOPIC:P`), an event one entry holding its structured JSON, a
//! stage's group a consumer group on each stream.
//!
//! How the transport's promises map onto Redis:
//! - stored before `publish` returns: XADD's reply (durable as the server's
//!   `appendfsync` makes it);
//! - pending until acknowledged: the group's pending entries list (PEL),
//!   XACK;
//! - reclaimed after the visibility timeout, delivery count raised:
//!   XAUTOCLAIM (counts from XPENDING); a consumer renews what it still
//!   works on with XCLAIM JUSTID (`touch`);
//! - trimming: an entry every group has acknowledged is removed (XTRIM
//!   MINID, after acks), never one a group still needs; `max_len` adds an
//!   approximate cap for topics nobody consumes;
//! - a group's consumers: each worker run is one (`stage-pid`); a stream's
//!   next holder deletes the past ones it leaves with nothing pending
//!   (`PRUNE`, atomic), so they do not pile up over restarts.
//!
//! Blocking reads (XREADGROUP BLOCK) get connections of their own, so they
//! never hold up the publishes and acks multiplexed on the shared one.

use super::transport::{key_hash, partition_of, Delivery, DeliveryId, Fut, Receive, Transport};
use super::{Data, Event};
use crate::error::{Error, ErrorKind, Result};
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

/// How a [`RedisStreams`] transport is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisOptions {
    /// Streams per topic. Publishers and consumers of a topic must agree.
    pub partitions: u32,
    /// Prepended to every stream key.
    pub prefix: String,
    /// An approximate cap on each stream's length (XADD MAXLEN ~), for
    /// topics that may have no consumer; `None`: only acknowledged entries
    /// are trimmed.
    pub max_len: Option<u64>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            partitions: 8,
            prefix: "shardkit:".into(),
            max_len: None,
        }
    }
}

/// Topics on Redis Streams.
pub struct RedisStreams {
    client: redis::Client,
    shared: ConnectionManager,
    /// Idle connections for blocking reads.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    options: RedisOptions,
    acks: AtomicU64,
}

/// Heartbeat: KEYS[1] the members set, ARGV[1] the consumer, ARGV[2] the
/// lease in ms; scores are the server's clock.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// Take or renew a partition hold: KEYS[1] the hold, ARGV[1] the
/// consumer, ARGV[2] the lease in ms. 1 when the consumer holds it now.
const ACQUIRE: &str = r"
local h = redis.call('GET', KEYS[1])
if h == false or h == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Forget a stream's past consumers: KEYS[1] the stream, ARGV[1] the
/// group, ARGV[2] the consumer taking the stream over, ARGV[3] an idle
/// time in ms. Every other consumer with nothing pending and idle that
/// long is deleted; the check and the deletion are one atomic step, so no
/// pending entry goes with one. Each worker run is a consumer of its own
/// (`stage-pid`), and redis keeps a group's consumers until deleted.
const PRUNE: &str = r"
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[2] and tonumber(f['pending']) == 0
     and tonumber(f['idle']) >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n
";

/// Release a hold only if the consumer has it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Acknowledgements between two trims of a stream.
const TRIM_EVERY: u64 = 256;

fn redis_err(what: &str, e: redis::RedisError) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Io
    };
    Error::new(kind, format!("redis: {what}: {e}"))
}

impl RedisStreams {
    /// Connects to `url` (`redis://host:port/db`, with a password if the
    /// server wants one).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisStreams> {
        if options.partitions == 0 || options.partitions > 4096 {
            return Err(Error::invalid(format!(
                "redis transport: partitions {}: must be 1..=4096",
                options.partitions
            )));
        }
        let client = redis::Client::open(url)
            .map_err(|e| Error::invalid(format!("redis URL {url:?}: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let shared = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| redis_err(&format!("connecting to {url}"), e))?;
        Ok(RedisStreams {
            client,
            shared,
            blocking: Mutex::new(Vec::new()),
            options,
            acks: AtomicU64::new(0),
        })
    }

    /// The stream of one partition of a topic.
    pub fn stream(&self, topic: &str, partition: u32) -> String {
        format!("{}{topic}:{partition}", self.options.prefix)
    }

    async fn query(&self, what: &str, cmd: &redis::Cmd) -> Result<Value> {
        let mut c = self.shared.clone();
        cmd.query_async::<Value>(&mut c)
            .await
            .map_err(|e| redis_err(what, e))
    }

    async fn blocking_conn(&self) -> Result<MultiplexedConnection> {
        if let Some(c) = self.blocking.lock().expect("pool lock").pop() {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| redis_err("connecting for a blocking read", e))
    }

    async fn create_group(&self, key: &str, group: &str) -> Result<()> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(key)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM");
        let mut c = self.shared.clone();
        match cmd.query_async::<Value>(&mut c).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(redis_err(&format!("XGROUP CREATE {key} {group}"), e)),
        }
    }

    /// Removes the entries of `key` that every group has acknowledged.
    async fn trim(&self, key: &str) -> Result<()> {
        let groups = self
            .query("XINFO GROUPS", redis::cmd("XINFO").arg("GROUPS").arg(key))
            .await?;
        let mut keep_from: Option<(u64, u64)> = None;
        let Value::Array(groups) = groups else {
            return Ok(());
        };
        for g in groups {
            let fields = pairs(&g);
            let name = fields.get("name").and_then(text).unwrap_or_default();
            let last = fields
                .get("last-delivered-id")
                .and_then(text)
                .and_then(|s| parse_id(&s))
                .unwrap_or((0, 0));
            // Everything after the last delivered entry is still needed.
            let mut from = next_id(last);
            let pending = fields.get("pending").and_then(int).unwrap_or(0);
            if pending > 0 {
                let summary = self
                    .query(
                        "XPENDING",
                        redis::cmd("XPENDING").arg(key).arg(name.as_str()),
                    )
                    .await?;
                if let Value::Array(s) = summary {
                    if let Some(oldest) = s.get(1).and_then(text).and_then(|s| parse_id(&s)) {
                        from = from.min(oldest);
                    }
                }
            }
            keep_from = Some(keep_from.map_or(from, |k| k.min(from)));
        }
        if let Some((ms, seq)) = keep_from {
            self.query(
                "XTRIM",
                redis::cmd("XTRIM")
                    .arg(key)
                    .arg("MINID")
                    .arg(format!("{ms}-{seq}")),
            )
            .await?;
        }
        Ok(())
    }

    /// Deliveries left unacknowledged past the visibility timeout, now
    /// this consumer's (XAUTOCLAIM), with their delivery counts.
    async fn reclaim(&self, key: &str, r: &Receive<'_>, max: usize) -> Result<Vec<Delivery>> {
        if r.take_over {
            return self.take_over(key, r, max).await;
        }
        let mut c = self.shared.clone();
        let res = redis::cmd("XAUTOCLAIM")
            .arg(key)
            .arg(r.group)
            .arg(r.consumer)
            .arg(r.visibility.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async::<Value>(&mut c)
            .await;
        let claimed = match res {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOGROUP") => {
                self.create_group(key, r.group).await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(redis_err(&format!("XAUTOCLAIM {key}"), e)),
        };
        let reclaimed = match &claimed {
            Value::Array(parts) => parts.get(1).map(entries).unwrap_or_default(),
            _ => Vec::new(),
        };
        if reclaimed.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<DeliveryId> = reclaimed.iter().map(|(id, _)| *id).collect();
        let counts = self.delivery_counts(key, r.group, &ids).await?;
        Ok(reclaimed
            .into_iter()
            .map(|(id, raw)| {
                let n = counts.get(&id).copied().unwrap_or(2);
                delivery(id, raw, r.partition, n)
            })
            .collect())
    }

    /// Every entry other consumers left pending, oldest first, now this
    /// consumer's (XPENDING, then XCLAIM at any idle time).
    async fn take_over(&self, key: &str, r: &Receive<'_>, max: usize) -> Result<Vec<Delivery>> {
        let v = match self
            .query(
                "XPENDING",
                redis::cmd("XPENDING")
                    .arg(key)
                    .arg(r.group)
                    .arg("-")
                    .arg("+")
                    .arg(max.saturating_mul(4).max(16)),
            )
            .await
        {
            Ok(v) => v,
            Err(e) if e.message().contains("NOGROUP") => {
                self.create_group(key, r.group).await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut left: Vec<(DeliveryId, u32)> = Vec::new();
        if let Value::Array(rows) = v {
            for row in rows {
                if let Value::Array(f) = row {
                    let id = f.first().and_then(text).and_then(|t| t.parse().ok());
                    let n = f.get(3).and_then(int).unwrap_or(1);
                    // Whoever it went to, this consumer included: a stage
                    // taking a partition has none of it in progress, so
                    // what is pending under its own name was left by an
                    // earlier run of it.
                    if let Some(id) = id {
                        if left.len() < max {
                            left.push((id, n.clamp(1, u32::MAX as i64 - 1) as u32 + 1));
                        }
                    }
                }
            }
        }
        if left.is_empty() {
            // Taken over: the past consumers it leaves with nothing
            // pending are forgotten (see `PRUNE`). Only tidying, so a
            // failure is not the read's.
            let _ = self
                .query(
                    "prune consumers",
                    redis::cmd("EVAL")
                        .arg(PRUNE)
                        .arg(1)
                        .arg(key)
                        .arg(r.group)
                        .arg(r.consumer)
                        .arg(r.visibility.as_millis() as u64),
                )
                .await;
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(key).arg(r.group).arg(r.consumer).arg(0);
        for (id, _) in &left {
            cmd.arg(id.to_string());
        }
        let claimed = self.query(&format!("XCLAIM {key}"), &cmd).await?;
        let counts: std::collections::HashMap<DeliveryId, u32> = left.into_iter().collect();
        Ok(entries(&claimed)
            .into_iter()
            .map(|(id, raw)| {
                let n = counts.get(&id).copied().unwrap_or(2);
                delivery(id, raw, r.partition, n)
            })
            .collect())
    }

    /// Entries never delivered to the group (XREADGROUP `>`), waiting up to
    /// `block` for some, on a connection of the read's own.
    async fn read_new(
        &self,
        key: &str,
        r: &Receive<'_>,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>> {
        let mut conn = self.blocking_conn().await?;
        let res = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(r.group)
            .arg(r.consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(key)
            .arg(">")
            .query_async::<Value>(&mut conn)
            .await;
        let v = match res {
            Ok(v) => {
                self.blocking.lock().expect("pool lock").push(conn);
                v
            }
            Err(e) if e.code() == Some("NOGROUP") => {
                self.blocking.lock().expect("pool lock").push(conn);
                self.create_group(key, r.group).await?;
                return Ok(Vec::new());
            }
            // The connection may be broken: not returned to the pool.
            Err(e) => return Err(redis_err(&format!("XREADGROUP {key}"), e)),
        };
        let mut out = Vec::new();
        if let Value::Array(streams) = v {
            for s in streams {
                if let Value::Array(kv) = s {
                    if let Some(list) = kv.get(1) {
                        for (id, raw) in entries(list) {
                            out.push(delivery(id, raw, r.partition, 1));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Delivery counts of pending entries `ids` (from XPENDING).
    async fn delivery_counts(
        &self,
        key: &str,
        group: &str,
        ids: &[DeliveryId],
    ) -> Result<std::collections::HashMap<DeliveryId, u32>> {
        let mut out = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let (lo, hi) = ids
            .iter()
            .map(|i| (i.ms, i.seq))
            .fold(((u64::MAX, u64::MAX), (0, 0)), |(lo, hi), id| {
                (lo.min(id), hi.max(id))
            });
        let v = self
            .query(
                "XPENDING",
                redis::cmd("XPENDING")
                    .arg(key)
                    .arg(group)
                    .arg(format!("{}-{}", lo.0, lo.1))
                    .arg(format!("{}-{}", hi.0, hi.1))
                    .arg(ids.len().max(1) * 4),
            )
            .await?;
        if let Value::Array(rows) = v {
            for r in rows {
                if let Value::Array(f) = r {
                    if let (Some(id), Some(n)) = (
                        f.first().and_then(text).and_then(|t| t.parse().ok()),
                        f.get(3).and_then(int),
                    ) {
                        out.insert(id, n.clamp(1, u32::MAX as i64) as u32);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Transport for RedisStreams {
    fn partitions(&self, _topic: &str) -> u32 {
        self.options.partitions
    }

    fn join<'a>(&'a self, topic: &'a str, group: &'a str) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            for p in 0..self.options.partitions {
                self.create_group(&self.stream(topic, p), group).await?;
            }
            Ok(())
        })
    }

    fn publish<'a>(&'a self, topic: &'a str, events: Vec<Event>) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            // One round trip for the lot, in order.
            let mut pipe = redis::pipe();
            for e in &events {
                let key = self.stream(topic, partition_of(e.key(), self.options.partitions));
                let cmd = pipe.cmd("XADD").arg(&key);
                if let Some(cap) = self.options.max_len {
                    cmd.arg("MAXLEN").arg("~").arg(cap);
                }
                cmd.arg("*").arg("e").arg(e.to_json());
            }
            let mut c = self.shared.clone();
            pipe.query_async::<Value>(&mut c)
                .await
                .map_err(|e| redis_err(&format!("XADD to topic {topic:?}"), e))?;
            Ok(())
        })
    }

    fn receive<'a>(&'a self, r: Receive<'a>) -> Fut<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            if r.partition >= self.options.partitions {
                return Err(Error::invalid(format!(
                    "topic {:?}: partition {} does not exist (it has {})",
                    r.topic, r.partition, self.options.partitions
                )));
            }
            let key = self.stream(r.topic, r.partition);
            let max = r.max.max(1);
            let deadline = tokio::time::Instant::now() + r.wait;
            loop {
                let reclaimed = self.reclaim(&key, &r, max).await?;
                if !reclaimed.is_empty() {
                    return Ok(reclaimed);
                }
                // New entries, waiting at most until the next look for
                // abandoned ones (a quarter of the visibility timeout).
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let block = left.min(r.visibility / 4).max(Duration::from_millis(1));
                let fresh = self.read_new(&key, &r, max, block).await?;
                if !fresh.is_empty() || tokio::time::Instant::now() >= deadline {
                    return Ok(fresh);
                }
            }
        })
    }

    fn ack<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        partition: u32,
        ids: &'a [DeliveryId],
    ) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let key = self.stream(topic, partition);
            let mut cmd = redis::cmd("XACK");
            cmd.arg(&key).arg(group);
            add_ids(&mut cmd, ids);
            self.query(&format!("XACK {key}"), &cmd).await?;
            let n = self.acks.fetch_add(ids.len() as u64, Ordering::Relaxed);
            if (n + ids.len() as u64) / TRIM_EVERY != n / TRIM_EVERY {
                // Trimming is housekeeping: a failure is retried next time.
                let _ = self.trim(&key).await;
            }
            Ok(())
        })
    }

    fn touch<'a>(&'a self, r: Receive<'a>, ids: &'a [DeliveryId]) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let key = self.stream(r.topic, r.partition);
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&key).arg(r.group).arg(r.consumer).arg(0);
            add_ids(&mut cmd, ids);
            cmd.arg("JUSTID");
            self.query(&format!("XCLAIM {key}"), &cmd).await?;
            Ok(())
        })
    }

    fn remove<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        ids: &'a [DeliveryId],
    ) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let key = self.stream(topic, partition);
            let mut cmd = redis::cmd("XDEL");
            cmd.arg(&key);
            add_ids(&mut cmd, ids);
            self.query(&format!("XDEL {key}"), &cmd).await?;
            Ok(())
        })
    }

    fn heartbeat<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        consumer: &'a str,
        lease: Duration,
    ) -> Fut<'a, Result<Vec<String>>> {
        Box::pin(async move {
            // A sorted set of consumers scored by lease end (server time,
            // so workers' clocks do not matter): add, drop the expired,
            // read the rest, in one script.
            let key = format!("{}{topic}:{group}:members", self.options.prefix);
            let v = self
                .query(
                    "heartbeat",
                    redis::cmd("EVAL")
                        .arg(HEARTBEAT)
                        .arg(1)
                        .arg(&key)
                        .arg(consumer)
                        .arg(lease.as_millis() as u64),
                )
                .await?;
            let mut live: Vec<String> = match v {
                Value::Array(a) => a.iter().filter_map(text).collect(),
                _ => Vec::new(),
            };
            live.sort();
            Ok(live)
        })
    }

    fn acquire<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        consumer: &'a str,
        partition: u32,
        lease: Duration,
    ) -> Fut<'a, Result<bool>> {
        Box::pin(async move {
            let key = format!("{}{topic}:{group}:owner:{partition}", self.options.prefix);
            let v = self
                .query(
                    "acquire",
                    redis::cmd("EVAL")
                        .arg(ACQUIRE)
                        .arg(1)
                        .arg(&key)
                        .arg(consumer)
                        .arg(lease.as_millis().max(1) as u64),
                )
                .await?;
            Ok(matches!(v, Value::Int(1)))
        })
    }

    fn release<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
        consumer: &'a str,
        partition: u32,
    ) -> Fut<'a, Result<()>> {
        Box::pin(async move {
            let key = format!("{}{topic}:{group}:owner:{partition}", self.options.prefix);
            self.query(
                "release",
                redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(&key)
                    .arg(consumer),
            )
            .await?;
            Ok(())
        })
    }

    fn backlog<'a>(&'a self, topic: &'a str) -> Fut<'a, Result<u64>> {
        Box::pin(async move {
            let mut total = 0u64;
            for p in 0..self.options.partitions {
                let key = self.stream(topic, p);
                let len = match self.query("XLEN", redis::cmd("XLEN").arg(&key)).await? {
                    Value::Int(n) => n.max(0) as u64,
                    _ => 0,
                };
                let groups = self
                    .query("XINFO GROUPS", redis::cmd("XINFO").arg("GROUPS").arg(&key))
                    .await
                    .unwrap_or(Value::Nil);
                let mut need: Option<u64> = None;
                if let Value::Array(gs) = groups {
                    for g in gs {
                        let f = pairs(&g);
                        let pending = f.get("pending").and_then(int).unwrap_or(0).max(0) as u64;
                        // lag is unknown (nil) after some deletions: then
                        // count the whole stream.
                        let lag = f.get("lag").and_then(int).map_or(len, |l| l.max(0) as u64);
                        need = Some(need.unwrap_or(0).max(pending + lag));
                    }
                }
                total += need.unwrap_or(len);
            }
            Ok(total)
        })
    }

    fn peek<'a>(&'a self, topic: &'a str, max: usize) -> Fut<'a, Result<Vec<Delivery>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for p in 0..self.options.partitions {
                let key = self.stream(topic, p);
                let v = self
                    .query(
                        "XRANGE",
                        redis::cmd("XRANGE")
                            .arg(&key)
                            .arg("-")
                            .arg("+")
                            .arg("COUNT")
                            .arg(max.clamp(1, 1 << 40)),
                    )
                    .await?;
                for (id, raw) in entries(&v) {
                    out.push(delivery(id, raw, p, 0));
                }
            }
            Ok(out)
        })
    }
}

/// A stream entry as a delivery; an entry that is not an event becomes a
/// malformed delivery carrying its raw bytes.
fn delivery(id: DeliveryId, raw: Option<Vec<u8>>, partition: u32, deliveries: u32) -> Delivery {
    let published = UNIX_EPOCH + Duration::from_millis(id.ms);
    let parsed = match &raw {
        Some(bytes) => Event::from_json(bytes).map_err(|e| e.to_string()),
        None => Err("the entry has no \"e\" field".to_string()),
    };
    let (event, malformed) = match parsed {
        Ok(e) => (e, None),
        Err(why) => {
            let e = Event::new(id.to_string(), "shardkit:redis", "dev.shardkit.malformed")
                .expect("a valid placeholder event")
                .with_data(Data::Binary(raw.unwrap_or_default().into()));
            (e, Some(format!("stream entry {id}: {why}")))
        }
    };
    Delivery {
        key_hash: key_hash(event.key()),
        event,
        partition,
        id,
        deliveries,
        published,
        malformed,
    }
}

/// The entries of an XRANGE / XREADGROUP / XAUTOCLAIM list: id and the
/// `e` field's bytes.
fn entries(v: &Value) -> Vec<(DeliveryId, Option<Vec<u8>>)> {
    let Value::Array(list) = v else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else {
                return None;
            };
            let id = parts.first().and_then(text)?.parse().ok()?;
            let mut raw = None;
            if let Some(Value::Array(fields)) = parts.get(1) {
                for kv in fields.chunks(2) {
                    if let [Value::BulkString(k), Value::BulkString(v)] = kv {
                        if k == b"e" {
                            raw = Some(v.clone());
                        }
                    }
                }
            }
            Some((id, raw))
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

/// A flat [k, v, k, v] reply (or a RESP3 map) as a map.
fn pairs(v: &Value) -> std::collections::HashMap<String, Value> {
    let mut out = std::collections::HashMap::new();
    match v {
        Value::Array(a) => {
            for kv in a.chunks(2) {
                if let [k, v] = kv {
                    if let Some(k) = text(k) {
                        out.insert(k, v.clone());
                    }
                }
            }
        }
        Value::Map(m) => {
            for (k, v) in m {
                if let Some(k) = text(k) {
                    out.insert(k, v.clone());
                }
            }
        }
        _ => {}
    }
    out
}

/// Appends delivery ids to a command: XACK, XCLAIM and XDEL take them
/// alike.
fn add_ids(cmd: &mut redis::Cmd, ids: &[DeliveryId]) {
    for id in ids {
        cmd.arg(id.to_string());
    }
}

/// A stream entry id `MS-SEQ`.
fn parse_id(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn next_id((ms, seq): (u64, u64)) -> (u64, u64) {
    match seq.checked_add(1) {
        Some(s) => (ms, s),
        None => (ms + 1, 0),
    }
}
