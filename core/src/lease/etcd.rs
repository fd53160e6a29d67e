//! The etcd backend: the kv model translated onto etcd's v3 API through
//! `etcd-client`. Everything here is a translation; the semantics are
//! etcd's. What this file adds is failure handling: errors mapped to
//! shardkit's kinds, retries where a request provably had no effect, and
//! keep-alive streams that are reopened (possibly on another endpoint) when
//! they break.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client as ec;
use tokio::sync::{mpsc, oneshot};

use super::kv::{
    Cmp, CmpOp, CmpTarget, Event, EventKind, Kv, LeaseId, Op, OpResult, Range, RangeOpts,
    SortOrder, SortTarget, Txn, TxnResult, Watch,
};
use super::validate::show_key;
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::Home;

/// HTTP/2 ping interval on connections with open streams. etcd's default
/// `--grpc-keepalive-min-time` is 5 s and it sends GOAWAY to clients that
/// ping more often, so stay above it.
const PING_INTERVAL: Duration = Duration::from_secs(6);
/// How long a ping may go unanswered before the connection counts as dead
/// (a frozen or partitioned member), failing its watch and keep-alive streams.
const PING_TIMEOUT: Duration = Duration::from_secs(4);
/// First pause between retries; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// Upper bound of one TCP connect to a member.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between connection probes in [`EtcdStore::connect`].
const PROBE_PAUSE: Duration = Duration::from_millis(50);
/// Period and per-member deadline of the health checks of [`watch_health`].
const HEALTH_PERIOD: Duration = Duration::from_millis(500);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive failed checks before a member leaves the rotation: one slow
/// answer should not cut the watch streams a member carries.
const HEALTH_STRIKES: u32 = 2;

/// One open keep-alive stream of a lease.
struct KeepAlive {
    keeper: ec::LeaseKeeper,
    stream: ec::LeaseKeepAliveStream,
}

impl KeepAlive {
    /// Sends one keep-alive and reads its answer: the TTL the lease now has
    /// (0 when it is gone), or `None` when etcd closed the stream.
    async fn renew(&mut self) -> std::result::Result<Option<i64>, ec::Error> {
        self.keeper.keep_alive().await?;
        match self.stream.message().await? {
            Some(resp) if resp.id() == self.keeper.id() => Ok(Some(resp.ttl().max(0))),
            Some(resp) => Err(ec::Error::LeaseKeepAliveError(format!(
                "answer for lease {} on the stream of lease {}",
                resp.id(),
                self.keeper.id()
            ))),
            None => Ok(None),
        }
    }
}

/// Client of a real etcd cluster. Cheap to clone: clones share one client
/// (one connection per member) and the keep-alive streams.
#[derive(Clone)]
pub(crate) struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: ec::Client,
    endpoints: Vec<String>,
    /// Open keep-alive streams by lease. A call takes its stream out while it
    /// uses it, so a call dropped half-way (timeout) drops the stream with it
    /// and no stale answer is ever read by the next call.
    keepers: Mutex<HashMap<LeaseId, KeepAlive>>,
    /// Dropped with the last clone of the store, which ends the health task.
    _health: Option<oneshot::Sender<()>>,
    /// The process whose runtime runs the client's connections (see
    /// `Backend`).
    home: Home,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints)
            .finish_non_exhaustive()
    }
}

/// What an etcd error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No connection to the chosen endpoint: the request never left, so
    /// retrying anything is safe.
    NotSent,
    /// The member has no leader and rejected the request before proposing
    /// it: safe to retry.
    NoLeader,
    /// Connection lost or deadline passed: the request may have been applied.
    Unavailable,
    /// etcd's "requested lease not found".
    LeaseNotFound,
    /// The revision asked for is compacted.
    Compacted,
    /// etcd rejected the request's content.
    Invalid,
    /// Anything else (auth, internal errors).
    Other,
}

/// gRPC status codes (stable numbers of the gRPC spec).
mod code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const OUT_OF_RANGE: i32 = 11;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

/// Whether the error's cause chain holds a connection-setup failure (tonic
/// and hyper wrap those in types named `ConnectError`; tonic is not a direct
/// dependency, so the name is matched rather than downcast).
fn is_connect_error(mut err: Option<&(dyn StdError + 'static)>) -> bool {
    while let Some(e) = err {
        if format!("{e:?}").starts_with("ConnectError") {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        err = e.source();
    }
    false
}

fn classify(e: &ec::Error) -> Failure {
    match e {
        ec::Error::GRpcStatus(s) => {
            let msg = s.message();
            let transport = s.source().is_some();
            match i32::from(s.code()) {
                _ if is_connect_error(s.source()) => Failure::NotSent,
                code::UNAVAILABLE if msg.contains("no leader") => Failure::NoLeader,
                code::UNAVAILABLE | code::DEADLINE_EXCEEDED | code::CANCELLED => {
                    Failure::Unavailable
                }
                code::UNKNOWN | code::INTERNAL if transport => Failure::Unavailable,
                code::NOT_FOUND if msg.contains("lease not found") => Failure::LeaseNotFound,
                code::OUT_OF_RANGE if msg.contains("compacted") => Failure::Compacted,
                code::OUT_OF_RANGE | code::INVALID_ARGUMENT => Failure::Invalid,
                _ => Failure::Other,
            }
        }
        ec::Error::TransportError(t) => {
            if is_connect_error(Some(t)) {
                Failure::NotSent
            } else {
                Failure::Unavailable
            }
        }
        ec::Error::IoError(_) => Failure::Unavailable,
        ec::Error::LeaseKeepAliveError(m) if m.contains("lease not found") => {
            Failure::LeaseNotFound
        }
        // etcd-client reports a closed request channel of a stream this way.
        ec::Error::LeaseKeepAliveError(_) | ec::Error::WatchError(_) => Failure::Unavailable,
        ec::Error::InvalidArgs(_) | ec::Error::InvalidUri(_) => Failure::Invalid,
        _ => Failure::Other,
    }
}

/// The error's text without etcd-client's prefixes and tonic's debug dumps.
fn detail(e: &ec::Error) -> String {
    match e {
        ec::Error::GRpcStatus(s) => {
            let mut out = s.message().to_string();
            let mut src = s.source();
            while let Some(cause) = src {
                let text = cause.to_string();
                if !text.is_empty() && !out.contains(&text) {
                    out.push_str(": ");
                    out.push_str(&text);
                }
                src = cause.source();
            }
            out
        }
        other => other.to_string(),
    }
}

fn retryable(e: &ec::Error, idempotent: bool) -> bool {
    match classify(e) {
        Failure::NotSent | Failure::NoLeader => true,
        Failure::Unavailable => idempotent,
        _ => false,
    }
}

/// Hex and decimal: etcdctl prints lease ids in hex, etcd logs them in
/// decimal.
fn lease_name(id: LeaseId) -> String {
    format!("{id:x} ({id})")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can leave the map half-updated, so a poisoned lock is safe.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EtcdStore {
    /// Connects to `endpoints` (`http://host:port`) and checks that one of
    /// them answers within `timeout`; requests are balanced over all.
    pub(crate) async fn connect(endpoints: &[String], timeout: Duration) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(Error::invalid("etcd: the endpoint list is empty"));
        }
        let names = endpoints.join(",");
        let options = ec::ConnectOptions::new()
            // Also bounds every later reconnect, so a long call timeout
            // must not make a black-holed member cost that long each time.
            .with_connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .with_keep_alive(PING_INTERVAL, PING_TIMEOUT)
            // etcd answers pings on idle connections with GOAWAY.
            .with_keep_alive_while_idle(false)
            // A member cut off from the quorum then fails fast ("no leader")
            // and cancels its watches, instead of serving stale silence.
            .with_require_leader(true);
        let mut last: Option<String> = None;
        let connected = tokio::time::timeout(timeout, async {
            let client = ec::Client::connect(endpoints, Some(options.clone()))
                .await
                .map_err(|e| Error::invalid(format!("etcd endpoints {names:?}: {}", detail(&e))))?;
            // etcd-client connects lazily: ask until some member answers.
            loop {
                let mut m = client.maintenance_client();
                match m.status().await {
                    Ok(_) => return Ok(client),
                    Err(e) => match classify(&e) {
                        Failure::NotSent | Failure::NoLeader | Failure::Unavailable => {
                            last = Some(detail(&e));
                            tokio::time::sleep(PROBE_PAUSE).await;
                        }
                        _ => {
                            return Err(Error::new(
                                ErrorKind::Io,
                                format!("etcd at {names}: {}", detail(&e)),
                            ))
                        }
                    },
                }
            }
        })
        .await;
        match connected {
            Ok(Ok(client)) => {
                let health = (endpoints.len() > 1).then(|| {
                    let (stop_tx, stop_rx) = oneshot::channel();
                    let task = watch_health(client.clone(), endpoints.to_vec(), options, stop_rx);
                    tokio::spawn(task);
                    stop_tx
                });
                Ok(EtcdStore {
                    inner: Arc::new(Inner {
                        client,
                        endpoints: endpoints.to_vec(),
                        keepers: Mutex::default(),
                        _health: health,
                        home: Home::here(),
                    }),
                })
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let why = last
                    .map(|l| format!(" (last error: {l})"))
                    .unwrap_or_default();
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "no etcd endpoint answered within {} ms: {names}{why}",
                        timeout.as_millis()
                    ),
                ))
            }
        }
    }

    /// The process the client was connected from.
    pub(crate) fn home(&self) -> Home {
        self.inner.home
    }

    /// The endpoints given to [`connect`](EtcdStore::connect).
    pub(crate) fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Maps an etcd error of operation `what` to shardkit's error.
    fn error(&self, what: &str, e: &ec::Error) -> Error {
        let names = self.inner.endpoints.join(",");
        let d = detail(e);
        match classify(e) {
            Failure::NotSent | Failure::NoLeader | Failure::Unavailable => Error::new(
                ErrorKind::Unavailable,
                format!("{what}: etcd at {names} unavailable: {d}"),
            ),
            Failure::LeaseNotFound => Error::new(ErrorKind::NotFound, format!("{what}: {d}")),
            Failure::Compacted => Error::new(ErrorKind::Compacted, format!("{what}: {d}")),
            Failure::Invalid => Error::invalid(format!("{what}: etcd rejected the request: {d}")),
            Failure::Other => Error::new(ErrorKind::Io, format!("{what}: etcd at {names}: {d}")),
        }
    }

    /// Runs `call`, again on failures that prove it had no effect (and on any
    /// connection failure when `idempotent`), a bounded number of times. The
    /// balanced channel picks an endpoint per attempt, which is how a dead
    /// member is skipped.
    async fn retry<T, F, Fut>(
        &self,
        idempotent: bool,
        mut call: F,
    ) -> std::result::Result<T, ec::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, ec::Error>>,
    {
        let attempts = 2 * self.inner.endpoints.len() + 2;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let r = call().await;
            match &r {
                Err(e) if attempt < attempts && retryable(e, idempotent) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                _ => return r,
            }
        }
    }

    /// Grants a lease of `ttl` seconds: `(id, granted_ttl)`.
    pub(crate) async fn grant(&self, ttl: i64) -> Result<(LeaseId, i64)> {
        // Not idempotent: a lost answer would leak a lease (until its TTL).
        let resp = self
            .retry(false, || {
                let mut c = self.inner.client.lease_client();
                async move { c.grant(ttl, None).await }
            })
            .await
            .map_err(|e| self.error(&format!("lease grant (ttl {ttl} s)"), &e))?;
        if !resp.error().is_empty() {
            return Err(Error::new(
                ErrorKind::Io,
                format!("lease grant (ttl {ttl} s): {}", resp.error()),
            ));
        }
        Ok((resp.id(), resp.ttl()))
    }

    /// Renews lease `id`: the TTL it now has, 0 when it is gone.
    pub(crate) async fn keep_alive(&self, id: LeaseId) -> Result<i64> {
        let what = || format!("lease keepalive of {}", lease_name(id));
        let cached = lock(&self.inner.keepers).remove(&id);
        if let Some(mut ka) = cached {
            // Any failure means the stream (or its endpoint) broke: fall
            // through to a fresh stream, which may land on another member.
            if let Ok(Some(ttl)) = ka.renew().await {
                if ttl > 0 {
                    lock(&self.inner.keepers).insert(id, ka);
                }
                return Ok(ttl);
            }
        }
        let opened = self
            .retry(true, || {
                let mut c = self.inner.client.lease_client();
                async move { c.keep_alive(id).await }
            })
            .await;
        let mut ka = match opened {
            Ok((keeper, stream)) => KeepAlive { keeper, stream },
            Err(e) if classify(&e) == Failure::LeaseNotFound => return Ok(0),
            Err(e) => return Err(self.error(&what(), &e)),
        };
        // Opening already renewed once, but etcd-client keeps that answer to
        // itself; one more round trip gives the TTL.
        match ka.renew().await {
            Ok(Some(ttl)) => {
                if ttl > 0 {
                    lock(&self.inner.keepers).insert(id, ka);
                }
                Ok(ttl)
            }
            Ok(None) => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{}: etcd at {} closed the keep-alive stream",
                    what(),
                    self.inner.endpoints.join(",")
                ),
            )),
            Err(e) => Err(self.error(&what(), &e)),
        }
    }

    /// Revokes lease `id` (deleting its keys); a lease already gone is fine.
    pub(crate) async fn revoke(&self, id: LeaseId) -> Result<()> {
        lock(&self.inner.keepers).remove(&id);
        match self
            .retry(true, || {
                let mut c = self.inner.client.lease_client();
                async move { c.revoke(id).await }
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if classify(&e) == Failure::LeaseNotFound => Ok(()),
            Err(e) => Err(self.error(&format!("lease revoke of {}", lease_name(id)), &e)),
        }
    }

    /// `(granted_ttl, remaining_ttl)` of lease `id`, `None` when it is gone.
    pub(crate) async fn time_to_live(&self, id: LeaseId) -> Result<Option<(i64, i64)>> {
        match self
            .retry(true, || {
                let mut c = self.inner.client.lease_client();
                async move { c.time_to_live(id, None).await }
            })
            .await
        {
            // etcd answers TTL -1 for a lease that does not exist.
            Ok(resp) if resp.ttl() < 0 => Ok(None),
            Ok(resp) => Ok(Some((resp.granted_ttl(), resp.ttl()))),
            Err(e) if classify(&e) == Failure::LeaseNotFound => Ok(None),
            Err(e) => Err(self.error(&format!("lease time-to-live of {}", lease_name(id)), &e)),
        }
    }

    /// Runs `txn` atomically.
    pub(crate) async fn txn(&self, txn: Txn) -> Result<TxnResult> {
        let request = to_etcd_txn(&txn);
        // A txn is not idempotent: retry only when it provably did nothing.
        let resp = self
            .retry(false, || {
                let mut c = self.inner.client.kv_client();
                let request = request.clone();
                async move { c.txn(request).await }
            })
            .await
            .map_err(|e| {
                if classify(&e) == Failure::LeaseNotFound {
                    lease_not_found(&txn, &e)
                } else {
                    self.error("transaction", &e)
                }
            })?;
        let results = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                ec::TxnOpResponse::Get(g) => OpResult {
                    kvs: g.kvs().iter().map(to_kv).collect(),
                    deleted: 0,
                },
                ec::TxnOpResponse::Delete(d) => OpResult {
                    kvs: Vec::new(),
                    deleted: d.deleted(),
                },
                ec::TxnOpResponse::Put(_) | ec::TxnOpResponse::Txn(_) => OpResult::default(),
            })
            .collect();
        Ok(TxnResult {
            succeeded: resp.succeeded(),
            revision: resp.header().map_or(0, |h| h.revision()),
            results,
        })
    }

    /// Reads `key` (or the prefix `key`).
    pub(crate) async fn range(&self, key: &[u8], opts: RangeOpts) -> Result<Range> {
        let options = get_options(&opts);
        let mut resp = self
            .retry(true, || {
                let mut c = self.inner.client.kv_client();
                let options = options.clone();
                async move { c.get(key, Some(options)).await }
            })
            .await
            .map_err(|e| self.error(&format!("range of {}", show_key(key)), &e))?;
        Ok(Range {
            revision: resp.header().map_or(0, |h| h.revision()),
            kvs: resp.take_kvs().iter().map(to_kv).collect(),
        })
    }

    /// Watches `key` (or the prefix) from revision `start` (0: from now).
    /// Returns once etcd has created the watcher, so no later write is missed.
    pub(crate) async fn watch(&self, key: &[u8], prefix: bool, start: i64) -> Result<Watch> {
        let mut options = ec::WatchOptions::new();
        if start > 0 {
            options = options.with_start_revision(start);
        }
        if prefix {
            options = options.with_prefix();
        }
        let what = format!("watch of {}", show_key(key));
        let (stream, first) = self
            .retry(true, || {
                let mut c = self.inner.client.watch_client();
                let options = options.clone();
                async move {
                    let mut stream = c.watch(key, Some(options)).await?;
                    match stream.message().await? {
                        Some(resp) if resp.created() => Ok((stream, resp)),
                        Some(_) => Err(ec::Error::WatchError(
                            "etcd sent events before confirming the watch".into(),
                        )),
                        None => Err(ec::Error::WatchError(
                            "etcd closed the watch before creating it".into(),
                        )),
                    }
                }
            })
            .await
            .map_err(|e| self.error(&what, &e))?;

        let (tx, rx) = mpsc::unbounded_channel();
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let feed = WatchFeed {
            tx,
            what,
            start,
            endpoints: self.inner.endpoints.join(","),
        };
        tokio::spawn(feed.run(stream, first, cancel_rx));
        Ok(Watch::new(rx, Some(cancel_tx)))
    }

    /// Compacts the history before `rev` (logically; etcd frees the space in
    /// the background).
    pub(crate) async fn compact(&self, rev: i64) -> Result<()> {
        self.retry(true, || {
            let mut c = self.inner.client.kv_client();
            async move { c.compact(rev, None).await }
        })
        .await
        .map(|_| ())
        .map_err(|e| self.error(&format!("compact to revision {rev}"), &e))
    }
}

/// Keeps only answering members in the client's rotation.
///
/// The balancer cannot tell a frozen member (SIGSTOP, hung machine) from a
/// healthy one: the kernel still accepts its connections, so requests routed
/// there just hang, and reconnecting after an HTTP/2 ping timeout lands on
/// the same silent socket. So each member is asked for its status on its own
/// connection every [`HEALTH_PERIOD`]; one that fails [`HEALTH_STRIKES`]
/// checks in a row (timeout, refused, or "no leader") leaves the rotation
/// while some other member answers, and returns on its first good answer.
async fn watch_health(
    client: ec::Client,
    endpoints: Vec<String>,
    options: ec::ConnectOptions,
    mut stop: oneshot::Receiver<()>,
) {
    let mut probes = Vec::with_capacity(endpoints.len());
    for ep in &endpoints {
        match ec::Client::connect([ep], Some(options.clone())).await {
            Ok(c) => probes.push(c.maintenance_client()),
            // Cannot happen for endpoints the main client accepted; without
            // probes the rotation simply stays whole.
            Err(_) => return,
        }
    }
    let mut strikes = vec![0u32; endpoints.len()];
    let mut in_rotation = vec![true; endpoints.len()];
    loop {
        tokio::select! {
            // Fires when the last store clone drops the sender.
            _ = &mut stop => return,
            _ = tokio::time::sleep(HEALTH_PERIOD) => {}
        }
        let mut checks = tokio::task::JoinSet::new();
        for (i, probe) in probes.iter().enumerate() {
            let mut probe = probe.clone();
            checks.spawn(async move {
                let ok = matches!(
                    tokio::time::timeout(HEALTH_TIMEOUT, probe.status()).await,
                    Ok(Ok(_))
                );
                (i, ok)
            });
        }
        let mut healthy = vec![false; endpoints.len()];
        while let Some(done) = checks.join_next().await {
            if let Ok((i, ok)) = done {
                healthy[i] = ok;
            }
        }
        if !healthy.contains(&true) {
            // Nobody answers (an election, or all down): ejecting would not
            // route anything better, so leave the rotation as it is.
            continue;
        }
        for (i, ep) in endpoints.iter().enumerate() {
            if healthy[i] {
                strikes[i] = 0;
                if !in_rotation[i] && client.add_endpoint(ep).await.is_ok() {
                    in_rotation[i] = true;
                }
            } else {
                strikes[i] += 1;
                if in_rotation[i]
                    && strikes[i] >= HEALTH_STRIKES
                    && client.remove_endpoint(ep).await.is_ok()
                {
                    in_rotation[i] = false;
                }
            }
        }
    }
}

/// The task that moves one etcd watch's events into a [`Watch`] channel.
struct WatchFeed {
    tx: mpsc::UnboundedSender<Result<Vec<Event>>>,
    what: String,
    start: i64,
    endpoints: String,
}

impl WatchFeed {
    async fn run(
        self,
        stream: ec::WatchStream,
        first: ec::WatchResponse,
        mut cancel: oneshot::Receiver<()>,
    ) {
        let watch_id = first.watch_id();
        let (mut requests, mut responses) = stream.split();
        if !self.forward(&first) {
            return;
        }
        loop {
            tokio::select! {
                // Fires on send or on drop of the sender: either way the
                // Watch is gone.
                _ = &mut cancel => break,
                _ = self.tx.closed() => break,
                msg = responses.message() => match msg {
                    Ok(Some(resp)) => {
                        if !self.forward(&resp) {
                            return;
                        }
                    }
                    Ok(None) => {
                        self.fail(ErrorKind::Unavailable, "etcd closed the watch stream".into());
                        return;
                    }
                    Err(e) => {
                        self.fail(ErrorKind::Unavailable, detail(&e));
                        return;
                    }
                },
            }
        }
        // Dropping the stream also ends the watcher on etcd; the cancel
        // request just says so explicitly. It only queues, so it is quick.
        let _ = requests.cancel(watch_id).await;
    }

    /// Sends a response's events on; false when the watch has ended.
    fn forward(&self, resp: &ec::WatchResponse) -> bool {
        if resp.compact_revision() > 0 {
            self.fail(
                ErrorKind::Compacted,
                format!(
                    "start revision {} is compacted; etcd keeps history from revision {} on",
                    self.start,
                    resp.compact_revision()
                ),
            );
            return false;
        }
        if resp.canceled() {
            let reason = match resp.cancel_reason() {
                "" => "no reason given".to_string(),
                r => r.to_string(),
            };
            self.fail(
                ErrorKind::Unavailable,
                format!("etcd cancelled the watch: {reason}"),
            );
            return false;
        }
        let events: Vec<Event> = resp
            .events()
            .iter()
            .filter_map(|ev| {
                let kind = match ev.event_type() {
                    ec::EventType::Put => EventKind::Put,
                    ec::EventType::Delete => EventKind::Delete,
                };
                ev.kv().map(|kv| Event {
                    kind,
                    kv: to_kv(kv),
                })
            })
            .collect();
        events.is_empty() || self.tx.send(Ok(events)).is_ok()
    }

    fn fail(&self, kind: ErrorKind, why: String) {
        let msg = if kind == ErrorKind::Unavailable {
            format!("{} on etcd at {}: {why}", self.what, self.endpoints)
        } else {
            format!("{}: {why}", self.what)
        };
        let _ = self.tx.send(Err(Error::new(kind, msg)));
    }
}

/// The NotFound error of a transaction that named a lease etcd does not
/// know, naming the leases the transaction used.
fn lease_not_found(txn: &Txn, e: &ec::Error) -> Error {
    let leases: Vec<String> = txn
        .success
        .iter()
        .chain(&txn.failure)
        .filter_map(|op| match op {
            Op::Put { lease, .. } if *lease != 0 => Some(lease_name(*lease)),
            _ => None,
        })
        .collect();
    Error::new(
        ErrorKind::NotFound,
        format!(
            "transaction: lease {} not found (expired or revoked): {}",
            leases.join(", "),
            detail(e)
        ),
    )
}

fn to_kv(kv: &ec::KeyValue) -> Kv {
    Kv {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn get_options(opts: &RangeOpts) -> ec::GetOptions {
    let mut o = ec::GetOptions::new();
    if opts.prefix {
        o = o.with_prefix();
    }
    if let Some((target, order)) = opts.sort {
        let target = match target {
            SortTarget::Key => ec::SortTarget::Key,
            SortTarget::Create => ec::SortTarget::Create,
        };
        let order = match order {
            SortOrder::Ascend => ec::SortOrder::Ascend,
            SortOrder::Descend => ec::SortOrder::Descend,
        };
        o = o.with_sort(target, order);
    }
    if opts.limit > 0 {
        o = o.with_limit(opts.limit);
    }
    if opts.max_create_revision > 0 {
        o = o.with_max_create_revision(opts.max_create_revision);
    }
    o
}

fn to_compare(c: &Cmp) -> ec::Compare {
    let op = match c.op {
        CmpOp::Equal => ec::CompareOp::Equal,
        CmpOp::NotEqual => ec::CompareOp::NotEqual,
        CmpOp::Less => ec::CompareOp::Less,
        CmpOp::Greater => ec::CompareOp::Greater,
    };
    let key = c.key.clone();
    match &c.target {
        CmpTarget::CreateRevision(r) => ec::Compare::create_revision(key, op, *r),
        CmpTarget::ModRevision(r) => ec::Compare::mod_revision(key, op, *r),
        CmpTarget::Version(v) => ec::Compare::version(key, op, *v),
        CmpTarget::Value(v) => ec::Compare::value(key, op, v.clone()),
        CmpTarget::Lease(l) => ec::Compare::lease(key, op, *l),
    }
}

fn to_txn_op(op: &Op) -> ec::TxnOp {
    match op {
        Op::Get { key, opts } => ec::TxnOp::get(key.clone(), Some(get_options(opts))),
        Op::Put { key, value, lease } => {
            let opts = (*lease != 0).then(|| ec::PutOptions::new().with_lease(*lease));
            ec::TxnOp::put(key.clone(), value.clone(), opts)
        }
        Op::Delete { key, prefix } => {
            let opts = prefix.then(|| ec::DeleteOptions::new().with_prefix());
            ec::TxnOp::delete(key.clone(), opts)
        }
    }
}

fn to_etcd_txn(txn: &Txn) -> ec::Txn {
    ec::Txn::new()
        .when(txn.compare.iter().map(to_compare).collect::<Vec<_>>())
        .and_then(txn.success.iter().map(to_txn_op).collect::<Vec<_>>())
        .or_else(txn.failure.iter().map(to_txn_op).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardkit_testkit::{etcd_binary, EtcdCluster};
    use std::time::Instant;

    const T: Duration = Duration::from_secs(5);

    /// A started cluster and a store on it; `None` (with a note) only when
    /// no etcd binary is installed.
    async fn setup(n: usize) -> Option<(EtcdCluster, EtcdStore)> {
        if etcd_binary().is_none() {
            eprintln!("skipping: no etcd binary (set SHARDKIT_ETCD_BIN)");
            return None;
        }
        let cluster = tokio::task::spawn_blocking(move || EtcdCluster::start(n))
            .await
            .expect("start task")
            .expect("start etcd");
        let store = EtcdStore::connect(&cluster.endpoints(), T)
            .await
            .expect("connect");
        Some((cluster, store))
    }

    fn put_if_absent(key: &str, value: &str, lease: LeaseId) -> Txn {
        Txn {
            compare: vec![Cmp::create_revision(key, CmpOp::Equal, 0)],
            success: vec![Op::Put {
                key: key.into(),
                value: value.into(),
                lease,
            }],
            failure: vec![Op::get(key)],
        }
    }

    fn put(key: &str, value: &str) -> Txn {
        Txn {
            success: vec![Op::put(key, value)],
            ..Txn::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lease_lifecycle() {
        let Some((_c, s)) = setup(1).await else {
            return;
        };
        let (id, ttl) = s.grant(5).await.unwrap();
        assert!(id != 0 && ttl >= 5, "id {id} ttl {ttl}");
        // First call opens the stream, second reuses it.
        assert!(s.keep_alive(id).await.unwrap() >= 4);
        assert!(s.keep_alive(id).await.unwrap() >= 4);
        let (granted, left) = s.time_to_live(id).await.unwrap().expect("lease alive");
        assert_eq!(granted, 5);
        assert!((1..=5).contains(&left), "remaining {left}");
        s.revoke(id).await.unwrap();
        s.revoke(id).await.unwrap();
        assert_eq!(s.keep_alive(id).await.unwrap(), 0);
        assert_eq!(s.time_to_live(id).await.unwrap(), None);
        assert_eq!(s.keep_alive(0x7777).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn txn_create_if_absent() {
        let Some((_c, s)) = setup(1).await else {
            return;
        };
        let (lease, _) = s.grant(30).await.unwrap();
        let first = s.txn(put_if_absent("/lock/a", "one", lease)).await.unwrap();
        assert!(first.succeeded);
        assert_eq!(first.results, vec![OpResult::default()]);
        let second = s.txn(put_if_absent("/lock/a", "two", 0)).await.unwrap();
        assert!(!second.succeeded);
        assert_eq!(second.revision, first.revision);
        let kvs = &second.results[0].kvs;
        assert_eq!(kvs.len(), 1);
        assert_eq!(
            kvs[0],
            Kv {
                key: b"/lock/a".to_vec(),
                value: b"one".to_vec(),
                create_revision: first.revision,
                mod_revision: first.revision,
                version: 1,
                lease,
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn range_prefix_sorted_and_delete() {
        let Some((_c, s)) = setup(1).await else {
            return;
        };
        let mut revs = Vec::new();
        for k in ["/p/b", "/p/a", "/p/c"] {
            revs.push(s.txn(put(k, k)).await.unwrap().revision);
        }
        s.txn(put("/q", "outside")).await.unwrap();
        let newest = RangeOpts {
            prefix: true,
            sort: Some((SortTarget::Create, SortOrder::Descend)),
            limit: 1,
            max_create_revision: 0,
        };
        let r = s.range(b"/p/", newest).await.unwrap();
        assert_eq!(r.kvs.len(), 1);
        assert_eq!(r.kvs[0].key, b"/p/c");
        assert_eq!(r.revision, revs[2] + 1);
        let before = RangeOpts {
            max_create_revision: revs[1],
            ..newest
        };
        let r = s.range(b"/p/", before).await.unwrap();
        assert_eq!(r.kvs[0].key, b"/p/a");
        let all = s.range(b"/p/", RangeOpts::prefix()).await.unwrap();
        let keys: Vec<&[u8]> = all.kvs.iter().map(|kv| kv.key.as_slice()).collect();
        assert_eq!(keys, [&b"/p/a"[..], b"/p/b", b"/p/c"]);
        assert!(
            s.range(b"/p/a", RangeOpts::default())
                .await
                .unwrap()
                .kvs
                .len()
                == 1
        );

        let del = Txn {
            success: vec![Op::Delete {
                key: b"/p/".to_vec(),
                prefix: true,
            }],
            ..Txn::default()
        };
        let r = s.txn(del).await.unwrap();
        assert_eq!(r.results[0].deleted, 3);
        assert!(s
            .range(b"/p/", RangeOpts::prefix())
            .await
            .unwrap()
            .kvs
            .is_empty());

        let bad = RangeOpts {
            limit: -1,
            ..RangeOpts::default()
        };
        // The request checks run in front of every store (validate.rs).
        let checked = crate::lease::backend::Backend::Etcd(s.clone());
        let e = checked.range(b"/p/", bad, T).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("-1"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_from_revision_sees_delete_after_revoke() {
        let Some((_c, s)) = setup(1).await else {
            return;
        };
        let (lease, _) = s.grant(30).await.unwrap();
        let created = s.txn(put_if_absent("/w/k", "v", lease)).await.unwrap();
        let mut w = s.watch(b"/w/", true, created.revision).await.unwrap();
        let batch = tokio::time::timeout(T, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(batch[0].kind, EventKind::Put);
        assert_eq!(batch[0].kv.mod_revision, created.revision);
        assert_eq!(batch[0].kv.lease, lease);
        s.revoke(lease).await.unwrap();
        let batch = tokio::time::timeout(T, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].kind, EventKind::Delete);
        assert_eq!(batch[0].kv.key, b"/w/k");
        assert_eq!(batch[0].kv.mod_revision, created.revision + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_from_now_sees_next_write() {
        let Some((_c, s)) = setup(1).await else {
            return;
        };
        let mut w = s.watch(b"/now", false, 0).await.unwrap();
        // The watch is created on return, so a write right after is seen.
        let r = s.txn(put("/now", "x")).await.unwrap();
        s.txn(put("/now-other", "y")).await.unwrap();
        let batch = tokio::time::timeout(T, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].kv.value, b"x");
        assert_eq!(batch[0].kv.mod_revision, r.revision);
        drop(w);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_compacted_revision_fails() {
        let Some((_c, s)) = setup(1).await else {
            return;
        };
        let mut last = 0;
        for i in 0..4 {
            last = s.txn(put("/c", &i.to_string())).await.unwrap().revision;
        }
        s.compact(last).await.unwrap();
        let e = s.compact(last - 1).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");
        let mut w = s.watch(b"/c", false, 2).await.unwrap();
        let e = tokio::time::timeout(T, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");
        assert!(e.message().contains("revision 2"), "{e}");
        assert!(e.message().contains(&last.to_string()), "{e}");
        assert!(tokio::time::timeout(T, w.next()).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_with_unknown_lease_is_not_found() {
        let Some((_c, s)) = setup(1).await else {
            return;
        };
        let e = s.txn(put_if_absent("/x", "v", 0x1234)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(
            e.message().contains("1234") && e.message().contains("4660"),
            "{e}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_endpoint_is_unavailable_in_time() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let timeout = Duration::from_millis(500);
        let t0 = Instant::now();
        let e = EtcdStore::connect(std::slice::from_ref(&url), timeout)
            .await
            .unwrap_err();
        assert!(
            t0.elapsed() < timeout + Duration::from_secs(1),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(
            e.message().contains(&url) && e.message().contains("500 ms"),
            "{e}"
        );

        let e = EtcdStore::connect(&[], timeout).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = EtcdStore::connect(&["http://bad host:1".into()], timeout)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_leader_kill() {
        let Some((mut c, s)) = setup(3).await else {
            return;
        };
        let (lease, _) = s.grant(30).await.unwrap();
        assert!(s.keep_alive(lease).await.unwrap() > 0);
        let leader = c.wait_leader(T).expect("a leader");
        c.kill(leader).unwrap();
        // Calls caught in flight when the leader died wait for etcd's own
        // request timeout, so each attempt gets a short deadline, as the
        // backend gives every call.
        let attempt = Duration::from_secs(2);
        let t0 = Instant::now();
        let mut ok = (false, false, false);
        let mut last_err = None;
        while t0.elapsed() < Duration::from_secs(15) && !(ok.0 && ok.1 && ok.2) {
            if !ok.0 {
                match tokio::time::timeout(attempt, s.txn(put("/after", "kill"))).await {
                    Ok(Ok(r)) => ok.0 = r.succeeded,
                    Ok(Err(e)) => last_err = Some(e.to_string()),
                    Err(_) => last_err = Some("txn timed out".into()),
                }
            }
            if !ok.1 {
                match tokio::time::timeout(attempt, s.keep_alive(lease)).await {
                    Ok(Ok(ttl)) => ok.1 = ttl > 0,
                    Ok(Err(e)) => last_err = Some(e.to_string()),
                    Err(_) => last_err = Some("keepalive timed out".into()),
                }
            }
            if !ok.2 {
                match tokio::time::timeout(attempt, s.range(b"/after", RangeOpts::default())).await
                {
                    Ok(Ok(r)) => ok.2 = r.kvs.len() == 1,
                    Ok(Err(e)) => last_err = Some(e.to_string()),
                    Err(_) => last_err = Some("range timed out".into()),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            ok.0 && ok.1 && ok.2,
            "{ok:?} after {:?}: {last_err:?}",
            t0.elapsed()
        );
        eprintln!(
            "recovered after {:?} (last error {last_err:?})",
            t0.elapsed()
        );
        // Once recovered, calls keep working without errors.
        for _ in 0..20 {
            s.txn(put("/again", "x")).await.unwrap();
            assert!(s.keep_alive(lease).await.unwrap() > 0);
        }
    }

    /// A lone etcd that restarts: calls fail while it is down and work
    /// again once it is back, on the same store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_member_restart() {
        let Some((mut c, s)) = setup(1).await else {
            return;
        };
        s.txn(put("/r", "before")).await.unwrap();
        c.kill(0).unwrap();
        let e = tokio::time::timeout(T, s.range(b"/r", RangeOpts::default()))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.message().contains(&c.member_endpoint(0)), "{e}");
        let mut c = tokio::task::spawn_blocking(move || c.restart(0).map(|_| c))
            .await
            .unwrap()
            .unwrap();
        let r = tokio::time::timeout(T, s.range(b"/r", RangeOpts::default()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.kvs[0].value, b"before");
        c.kill(0).unwrap();
    }

    /// A frozen leader (SIGSTOP) accepts connections but never answers; the
    /// health checks must take it out of the rotation so calls stop hanging.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_frozen_leader() {
        let Some((mut c, s)) = setup(3).await else {
            return;
        };
        let (lease, _) = s.grant(30).await.unwrap();
        let mut w = s.watch(b"/f/", true, 0).await.unwrap();
        let leader = c.wait_leader(T).expect("a leader");
        c.pause(leader).unwrap();
        let attempt = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut good_in_a_row = 0;
        let mut i = 0;
        while good_in_a_row < 30 {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "calls still fail {:?} after freezing the leader",
                t0.elapsed()
            );
            i += 1;
            let t = tokio::time::timeout(attempt, s.txn(put(&format!("/f/{i}"), "x"))).await;
            let k = tokio::time::timeout(attempt, s.keep_alive(lease)).await;
            let r = tokio::time::timeout(attempt, s.range(b"/f/", RangeOpts::prefix())).await;
            if matches!(t, Ok(Ok(_)))
                && matches!(k, Ok(Ok(ttl)) if ttl > 0)
                && matches!(r, Ok(Ok(_)))
            {
                good_in_a_row += 1;
            } else {
                good_in_a_row = 0;
            }
        }
        eprintln!("stable {:?} after freezing the leader", t0.elapsed());
        c.resume(leader).unwrap();
        // The watch either still delivers, or ends with Unavailable (it was
        // on the frozen member) so the caller knows to watch again.
        match tokio::time::timeout(Duration::from_secs(15), w.next()).await {
            Ok(Some(Ok(batch))) => assert!(!batch.is_empty()),
            Ok(Some(Err(e))) => assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}"),
            other => panic!("watch neither delivered nor failed: {other:?}"),
        }
    }
}
