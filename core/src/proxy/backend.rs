//! Connections to one backend server, shared and pipelined by every client
//! of the pool (as predixy does): a few sockets per server whatever the
//! client count, with the requests of many clients written back to back
//! and the replies matched to them in order.
//!
//! Each connection is a task owning its socket: a writer half that drains
//! queued requests into one write, and a reader half that frames replies
//! ([`Frame`]) and hands each to the request that is oldest. A reply that
//! cannot be matched (a backend speaking garbage), a `timeout` passing on
//! the oldest request, or the socket closing ends the connection and fails
//! every request on it; the next request reconnects. The failure counts
//! toward the server's ejection ([`super::health`]).

use super::health::Health;
use super::parse::Limits;
use super::stats::BackendStats;
use super::workers::Workers;
use super::{meta, resp, text};
use crate::scatter::replica::Score;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How to find the end of a reply on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// memcache `get`-like: `VALUE` items up to `END`.
    TextRetrieval,
    /// memcache: one line.
    TextLine,
    /// memcache meta: `VA` with data, or one line.
    Meta,
    /// memcache meta, fenced: at most one reply, then `MN` (see
    /// `meta::Framing::Fenced`).
    MetaFenced,
    /// One RESP value.
    Resp,
}

impl Frame {
    fn reply_len(self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, String> {
        match self {
            Frame::TextRetrieval => text::reply_len(buf, true, limits),
            Frame::TextLine => text::reply_len(buf, false, limits),
            Frame::Meta => meta::reply_len(buf, limits),
            Frame::MetaFenced => meta::fenced_reply_len(buf, limits),
            Frame::Resp => resp::reply_len(buf, limits),
        }
    }
}

/// Why a backend gave no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection could be made.
    Connect(String),
    /// The request waited longer than the pool's `timeout`.
    Timeout,
    /// The connection closed or failed before the reply came.
    Closed(String),
    /// The backend's reply was not its protocol.
    Protocol(String),
    /// The proxy is shutting down, or the server left the pool.
    Gone,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Closed(e) => write!(f, "connection lost: {e}"),
            Failure::Protocol(e) => write!(f, "bad reply: {e}"),
            Failure::Gone => f.write_str("server left the pool"),
        }
    }
}

/// A backend's reply, or why there is none.
pub(crate) type Reply = Result<Bytes, Failure>;

struct Job {
    bytes: Bytes,
    frame: Frame,
    reply: Option<oneshot::Sender<Reply>>,
}

struct InFlight {
    frame: Frame,
    reply: Option<oneshot::Sender<Reply>>,
    sent: Instant,
}

/// A call counted in its backend's outstanding calls until it ends, or
/// until nobody waits for it any more (a write whose first replica already
/// answered, a client gone): dropped, it still leaves the count, so an
/// abandoned call never makes a replica look busy for good.
struct Outstanding {
    score: Arc<Score>,
    started: Instant,
    ended: bool,
}

impl Outstanding {
    fn begin(score: Arc<Score>) -> Outstanding {
        score.begin();
        Outstanding {
            score,
            started: Instant::now(),
            ended: false,
        }
    }

    fn end(mut self, ok: bool) {
        let took = self.started.elapsed();
        if ok {
            self.score.succeeded(took);
        } else {
            self.score.failed(took, 0.0);
        }
        self.ended = true;
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        if !self.ended {
            self.score.abandoned(self.started.elapsed());
        }
    }
}

/// Where a backend listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Address {
    Tcp(String),
    Unix(String),
}

/// What a connection says first on every (re)connect: AUTH and SELECT for
/// Redis pools.
pub(crate) type Handshake = Option<(Bytes, usize)>;

/// Settings a backend's connections share.
#[derive(Clone)]
pub(crate) struct ConnSettings {
    pub timeout: Option<Duration>,
    pub limits: Limits,
    pub keepalive: bool,
    /// Bytes written after connecting, and how many replies they produce
    /// (each must not be an error).
    pub handshake: Handshake,
    pub handshake_frame: Frame,
    /// Connect at start rather than on first use.
    pub preconnect: bool,
}

/// One backend server: its connections, health and statistics.
pub(crate) struct Backend {
    /// The server entry without its alias (the node name).
    pub name: String,
    /// The server's alias, if given.
    pub alias: Option<String>,
    pub address: Address,
    /// Each worker's connections, worker-major: worker `w`'s are
    /// `conns[w * per_worker..][..per_worker]`.
    conns: Vec<mpsc::UnboundedSender<Job>>,
    per_worker: usize,
    pub health: Arc<Health>,
    pub stats: Arc<BackendStats>,
    /// Latency estimate and outstanding calls, for replica choice.
    pub score: Arc<Score>,
}

impl Backend {
    /// Starts `count` connection tasks on each worker (they connect on
    /// first use, or now when `settings.preconnect`).
    pub(crate) fn start(
        name: String,
        alias: Option<String>,
        address: Address,
        count: usize,
        settings: ConnSettings,
        health: Arc<Health>,
        workers: &Workers,
    ) -> Backend {
        let preconnect = settings.preconnect;
        let stats = Arc::new(BackendStats::default());
        let score = Arc::new(Score::new(Duration::from_secs(10)));
        let per_worker = count.max(1);
        let mut conns = Vec::with_capacity(per_worker * workers.len());
        for w in 0..workers.len() {
            for _ in 0..per_worker {
                let (tx, rx) = mpsc::unbounded_channel();
                let conn = Conn {
                    address: address.clone(),
                    settings: settings.clone(),
                    health: health.clone(),
                    stats: stats.clone(),
                };
                workers.spawn_on(w, conn.run(rx, preconnect));
                conns.push(tx);
            }
        }
        Backend {
            name,
            alias,
            address,
            conns,
            per_worker,
            health,
            stats,
            score,
        }
    }

    /// Sends a request and returns its reply. `pin` picks the connection, so
    /// that one key's requests from one client keep their order (a write
    /// then a read of it): a client's requests all come from one worker.
    pub(crate) fn call(
        &self,
        pin: u64,
        bytes: Bytes,
        frame: Frame,
    ) -> impl std::future::Future<Output = Reply> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.queue(pin, bytes, frame, Some(tx));
        let guard = Outstanding::begin(self.score.clone());
        let stats = self.stats.clone();
        async move {
            let out = if sent {
                rx.await.unwrap_or(Err(Failure::Gone))
            } else {
                Err(Failure::Gone)
            };
            let took = guard.started.elapsed();
            stats.latency.record(took);
            guard.end(out.is_ok());
            out
        }
    }

    /// Sends a request whose reply nobody waits for (the client said
    /// `noreply`); the reply is still read, to keep the connection in step.
    pub(crate) fn send(&self, pin: u64, bytes: Bytes, frame: Frame) {
        self.queue(pin, bytes, frame, None);
    }

    fn queue(
        &self,
        pin: u64,
        bytes: Bytes,
        frame: Frame,
        reply: Option<oneshot::Sender<Reply>>,
    ) -> bool {
        // The calling worker's own connections: the request and its reply
        // stay on this thread. (Any other caller uses worker 0's.)
        let workers = self.conns.len() / self.per_worker;
        let w = Workers::current().unwrap_or(0) % workers;
        let i = w * self.per_worker + (pin % self.per_worker as u64) as usize;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .request_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.stats.in_queue.fetch_add(1, Ordering::Relaxed);
        self.conns[i]
            .send(Job {
                bytes,
                frame,
                reply,
            })
            .is_ok()
    }

    /// A label for logs and metrics: the alias, else the address.
    pub(crate) fn label(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

struct Conn {
    address: Address,
    settings: ConnSettings,
    health: Arc<Health>,
    stats: Arc<BackendStats>,
}

/// Writes at most this much before letting the reader catch up.
const WRITE_BATCH: usize = 256 * 1024;

impl Conn {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Job>, preconnect: bool) {
        let mut first = None;
        if !preconnect {
            first = match rx.recv().await {
                Some(job) => Some(job),
                None => return,
            };
        }
        loop {
            match self.connect().await {
                Ok(stream) => {
                    self.health.connected();
                    self.stats.connections.fetch_add(1, Ordering::Relaxed);
                    let end = match stream {
                        Stream::Tcp(s) => self.serve(s, first.take(), &mut rx).await,
                        Stream::Unix(s) => self.serve(s, first.take(), &mut rx).await,
                    };
                    self.stats.connections.fetch_sub(1, Ordering::Relaxed);
                    match end {
                        End::Dropped => return,
                        End::Failed(f) => {
                            match f {
                                Failure::Timeout => &self.stats.timeouts,
                                Failure::Closed(_) => &self.stats.eof,
                                _ => &self.stats.errors,
                            }
                            .fetch_add(1, Ordering::Relaxed);
                            self.health.failed();
                        }
                    }
                }
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    self.health.failed();
                    let f = Failure::Connect(e);
                    // Everything queued now fails at once rather than each
                    // request waiting out its own connect attempt.
                    if let Some(job) = first.take() {
                        self.fail(job, &f);
                    }
                    while let Ok(job) = rx.try_recv() {
                        self.fail(job, &f);
                    }
                }
            }
            first = match rx.recv().await {
                Some(job) => Some(job),
                None => return,
            };
        }
    }

    fn fail(&self, job: Job, f: &Failure) {
        self.stats.in_queue.fetch_sub(1, Ordering::Relaxed);
        if let Some(tx) = job.reply {
            let _ = tx.send(Err(f.clone()));
        }
    }

    async fn connect(&self) -> Result<Stream, String> {
        let limit = self
            .settings
            .timeout
            .unwrap_or(Duration::from_secs(5))
            .max(Duration::from_millis(100));
        let attempt = async {
            match &self.address {
                Address::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a.as_str())
                        .await
                        .map_err(|e| format!("{a}: {e}"))?;
                    let _ = s.set_nodelay(true);
                    if self.settings.keepalive {
                        let _ = socket2::SockRef::from(&s).set_keepalive(true);
                    }
                    Ok(Stream::Tcp(s))
                }
                Address::Unix(p) => tokio::net::UnixStream::connect(p)
                    .await
                    .map(Stream::Unix)
                    .map_err(|e| format!("{p}: {e}")),
            }
        };
        let mut stream = tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| format!("{}: connect timed out", self.label()))??;
        if let Some((bytes, replies)) = &self.settings.handshake {
            match &mut stream {
                Stream::Tcp(s) => self.handshake(s, bytes, *replies, limit).await?,
                Stream::Unix(s) => self.handshake(s, bytes, *replies, limit).await?,
            }
        }
        Ok(stream)
    }

    fn label(&self) -> String {
        match &self.address {
            Address::Tcp(a) | Address::Unix(a) => a.clone(),
        }
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        s: &mut S,
        bytes: &Bytes,
        replies: usize,
        limit: Duration,
    ) -> Result<(), String> {
        let work = async {
            s.write_all(bytes).await.map_err(|e| e.to_string())?;
            let mut buf = BytesMut::with_capacity(256);
            for _ in 0..replies {
                loop {
                    match self
                        .settings
                        .handshake_frame
                        .reply_len(&buf, &self.settings.limits)?
                    {
                        Some(n) => {
                            let r = buf.split_to(n);
                            if r.first() == Some(&b'-') {
                                return Err(String::from_utf8_lossy(&r).trim_end().to_string());
                            }
                            break;
                        }
                        None => {
                            if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                                return Err("closed during the handshake".into());
                            }
                        }
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| format!("{}: handshake: {e}", self.label()))
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &self,
        stream: S,
        first: Option<Job>,
        rx: &mut mpsc::UnboundedReceiver<Job>,
    ) -> End {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let inflight = std::sync::Mutex::new(VecDeque::<InFlight>::new());
        let wake = tokio::sync::Notify::new();
        // Set when the backend was dropped: the reader finishes the replies
        // still owed, then the connection closes.
        let closing = std::sync::atomic::AtomicBool::new(false);
        let writer = async {
            let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
            let mut next = first;
            loop {
                let job = match next.take() {
                    Some(j) => j,
                    None => match rx.recv().await {
                        Some(j) => j,
                        None => {
                            closing.store(true, Ordering::Relaxed);
                            wake.notify_one();
                            return std::future::pending().await;
                        }
                    },
                };
                buf.clear();
                {
                    let mut q = inflight.lock().expect("inflight lock");
                    let now = Instant::now();
                    let mut job = Some(job);
                    while let Some(j) = job.take() {
                        self.stats.in_queue.fetch_sub(1, Ordering::Relaxed);
                        buf.extend_from_slice(&j.bytes);
                        q.push_back(InFlight {
                            frame: j.frame,
                            reply: j.reply,
                            sent: now,
                        });
                        if buf.len() < WRITE_BATCH {
                            job = rx.try_recv().ok();
                        }
                    }
                }
                wake.notify_one();
                if let Err(e) = wr.write_all(&buf).await {
                    return End::Failed(Failure::Closed(e.to_string()));
                }
            }
        };
        let reader = async {
            let mut buf = BytesMut::with_capacity(16 * 1024);
            let mut resp_scan = resp::ReplyScanner::default();
            loop {
                // Frame every complete reply in the buffer.
                let mut framed = false;
                loop {
                    let frame = match inflight.lock().expect("inflight lock").front() {
                        Some(f) => f.frame,
                        None => break,
                    };
                    // A large RESP reply arriving in many reads is framed on
                    // from where the last read stopped, not from its start.
                    let framing = match frame {
                        Frame::Resp => resp_scan.advance(&buf, &self.settings.limits),
                        _ => frame.reply_len(&buf, &self.settings.limits),
                    };
                    match framing {
                        Ok(Some(n)) => {
                            let reply = buf.split_to(n).freeze();
                            let head = inflight
                                .lock()
                                .expect("inflight lock")
                                .pop_front()
                                .expect("head exists");
                            self.stats.responses.fetch_add(1, Ordering::Relaxed);
                            self.stats
                                .response_bytes
                                .fetch_add(n as u64, Ordering::Relaxed);
                            if let Some(tx) = head.reply {
                                let _ = tx.send(Ok(reply));
                            }
                            framed = true;
                        }
                        Ok(None) => break,
                        Err(e) => return End::Failed(Failure::Protocol(e)),
                    }
                }
                // Only a reply proves the server works: a server that accepts
                // connections but never answers must still be ejected.
                if framed {
                    self.health.succeeded();
                }
                let deadline = {
                    let q = inflight.lock().expect("inflight lock");
                    match (q.front(), self.settings.timeout) {
                        (Some(f), Some(t)) => Some(f.sent + t),
                        _ => None,
                    }
                };
                let waiting = !inflight.lock().expect("inflight lock").is_empty();
                if !waiting && closing.load(Ordering::Relaxed) {
                    return End::Dropped;
                }
                if !buf.is_empty() && !waiting {
                    return End::Failed(Failure::Protocol(format!(
                        "{} bytes nobody asked for",
                        buf.len()
                    )));
                }
                tokio::select! {
                    r = rd.read_buf(&mut buf) => match r {
                        Ok(0) => return End::Failed(Failure::Closed("the server closed the connection".into())),
                        Ok(_) => {}
                        Err(e) => return End::Failed(Failure::Closed(e.to_string())),
                    },
                    _ = sleep_until(deadline), if deadline.is_some() => {
                        return End::Failed(Failure::Timeout);
                    }
                    _ = wake.notified(), if !waiting => {}
                }
            }
        };
        let end = tokio::select! {
            e = writer => e,
            e = reader => e,
        };
        let f = match &end {
            End::Failed(f) => f.clone(),
            End::Dropped => Failure::Gone,
        };
        for job in inflight.lock().expect("inflight lock").drain(..) {
            if let Some(tx) = job.reply {
                let _ = tx.send(Err(f.clone()));
            }
        }
        end
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

enum End {
    /// The backend was dropped (reload removed it, or shutdown).
    Dropped,
    Failed(Failure),
}

/// Whether the server at `address` answers `bytes` (after the pool's
/// handshake) within the pool's timeout: the active health probe.
pub(crate) async fn probe(
    address: &Address,
    settings: &ConnSettings,
    bytes: &[u8],
    frame: Frame,
) -> bool {
    let (events, _) = mpsc::unbounded_channel();
    let conn = Conn {
        address: address.clone(),
        settings: settings.clone(),
        health: Arc::new(Health::new(0, 1, false, events)),
        stats: Arc::new(BackendStats::default()),
    };
    let limit = settings.timeout.unwrap_or(Duration::from_secs(1));
    let attempt = async {
        let reply = |s: &mut Vec<u8>| frame.reply_len(s, &settings.limits);
        let mut buf = Vec::new();
        macro_rules! ask {
            ($s:expr) => {{
                $s.write_all(bytes).await.ok()?;
                loop {
                    match reply(&mut buf) {
                        Ok(Some(_)) => return Some(()),
                        Ok(None) => {}
                        Err(_) => return None,
                    }
                    if $s.read_buf(&mut buf).await.ok()? == 0 {
                        return None;
                    }
                }
            }};
        }
        match conn.connect().await.ok()? {
            Stream::Tcp(mut s) => ask!(s),
            Stream::Unix(mut s) => ask!(s),
        }
    };
    matches!(tokio::time::timeout(limit, attempt).await, Ok(Some(())))
}
