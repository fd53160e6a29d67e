//! Contender side of the process-fault suite. The test binary re-runs
//! itself (`contender_main`) with `SHARDKIT_FAULT_ROLE` set; the role talks
//! to etcd through the public API only, on its own runtime, and reports what
//! it saw as `@@ TAG field...` lines on stdout (line-buffered, so a line is
//! out before the next action: a kill loses at most the line in progress).
//!
//! Every loop is bounded by a stop file the driver creates and by a hard
//! wall-clock deadline, so a contender outlives neither its test nor a
//! driver that died without cleaning up.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shardkit::lease::{
    Cmp, CmpOp, Coordinator, FencingToken, Op, RangeOpts, Session, SessionOptions, Txn,
};
use shardkit::ErrorKind;

use super::{now_us, LINE_PREFIX};
use shardkit_testkit::Rng;

/// Which role to play (`holder`, `counter`, `belief`); empty or unset: none.
pub const ROLE_ENV: &str = "SHARDKIT_FAULT_ROLE";
/// Stop file: the contender finishes (unlocks, closes) once it exists.
pub const STOP_ENV: &str = "SHARDKIT_FAULT_STOP";
/// etcd endpoints, comma-separated.
pub const ENDPOINTS_ENV: &str = "SHARDKIT_FAULT_ENDPOINTS";
/// Lock name.
pub const LOCK_ENV: &str = "SHARDKIT_FAULT_LOCK";
/// Session TTL in seconds.
pub const TTL_ENV: &str = "SHARDKIT_FAULT_TTL";
/// Hard end, Unix milliseconds.
pub const DEADLINE_ENV: &str = "SHARDKIT_FAULT_DEADLINE_MS";
/// PRNG seed of this contender.
pub const SEED_ENV: &str = "SHARDKIT_FAULT_CHILD_SEED";
/// Identity written into values (the driver's process id for it).
pub const ID_ENV: &str = "SHARDKIT_FAULT_ID";
/// holder: how long to wait for the lock, ms.
pub const WAIT_ENV: &str = "SHARDKIT_FAULT_WAIT_MS";
/// holder: key written under the lock.
pub const RESOURCE_ENV: &str = "SHARDKIT_FAULT_RESOURCE";
/// holder: write the resource every this many ms while holding (0: never).
pub const WRITE_EVERY_ENV: &str = "SHARDKIT_FAULT_WRITE_EVERY_MS";
/// holder: write the resource once right after acquiring ("1").
pub const WRITE_ONCE_ENV: &str = "SHARDKIT_FAULT_WRITE_ONCE";
/// counter: the counter key.
pub const COUNTER_ENV: &str = "SHARDKIT_FAULT_COUNTER";
/// counter: append-only log of committed increments.
pub const LOG_ENV: &str = "SHARDKIT_FAULT_LOG";

/// Prints one report line.
pub fn emit(tag: &str, rest: impl std::fmt::Display) {
    println!("{LINE_PREFIX}{tag} {rest}");
}

struct Cfg {
    endpoints: String,
    lock: String,
    ttl: Duration,
    stop: PathBuf,
    deadline_us: u64,
    seed: u64,
    id: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn need(name: &str) -> Result<String, String> {
    var(name).ok_or_else(|| format!("{name} is not set"))
}

fn num(name: &str, default: u64) -> Result<u64, String> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|e| format!("{name}={v:?} is not a number: {e}")),
    }
}

impl Cfg {
    fn from_env() -> Result<Cfg, String> {
        Ok(Cfg {
            endpoints: need(ENDPOINTS_ENV)?,
            lock: need(LOCK_ENV)?,
            ttl: Duration::from_secs(num(TTL_ENV, 2)?),
            stop: PathBuf::from(need(STOP_ENV)?),
            deadline_us: num(DEADLINE_ENV, now_us() / 1000 + 120_000)? * 1000,
            seed: num(SEED_ENV, u64::from(std::process::id()))?,
            id: var(ID_ENV).unwrap_or_else(|| std::process::id().to_string()),
        })
    }

    /// The driver asked us to finish, or the hard deadline passed.
    fn done(&self) -> bool {
        self.stop.exists() || now_us() >= self.deadline_us
    }

    /// Claims the driver's request for a long hold, if there is one.
    fn long_asked(&self) -> bool {
        let ask = self.stop.with_file_name("long");
        let mine = self
            .stop
            .with_file_name(format!("long.{}", std::process::id()));
        std::fs::rename(ask, mine).is_ok()
    }

    /// Time to the hard deadline.
    fn left(&self) -> Duration {
        Duration::from_micros(self.deadline_us.saturating_sub(now_us()))
    }

    fn opts(&self) -> SessionOptions {
        SessionOptions::with_ttl(self.ttl)
    }

    /// Connects, retrying while etcd is down, until the deadline.
    async fn connect(&self) -> Result<Coordinator, String> {
        loop {
            match Coordinator::connect(&self.endpoints, Duration::from_secs(3)).await {
                Ok(c) => return Ok(c),
                Err(e) if !self.done() => {
                    emit("ERR", format_args!("connect {:?}", e.kind()));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(format!("connect: {e}")),
            }
        }
    }
}

/// Entry point in the child: plays the role named in the environment, or
/// does nothing when none is (a plain `cargo test -- --ignored`).
pub fn run() {
    let Some(role) = var(ROLE_ENV) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("contender runtime");
    let res = rt.block_on(async {
        let cfg = Cfg::from_env()?;
        match role.as_str() {
            "holder" => holder(&cfg).await,
            "counter" => counter(&cfg).await,
            "belief" => belief(&cfg).await,
            other => Err(format!("{ROLE_ENV}={other:?}: unknown role")),
        }
    });
    if let Err(e) = res {
        emit("FAIL", &e);
        panic!("contender role {role}: {e}");
    }
    emit("EXIT", "ok");
}

fn kind_of<T>(r: &shardkit::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Takes the lock once and holds it until stopped (or killed), optionally
/// writing a resource under it. Reports `SESSION`, `WAITING`, `HOLD`,
/// `WROTE`, `WRITE ok|err`, `CHECK`, `LOST` (from the lost notice), `UNLOCK`.
async fn holder(cfg: &Cfg) -> Result<(), String> {
    let wait = Duration::from_millis(num(WAIT_ENV, 20_000)?);
    let every = num(WRITE_EVERY_ENV, 0)?;
    let once = var(WRITE_ONCE_ENV).is_some();
    let resource = var(RESOURCE_ENV).unwrap_or_else(|| "faults/resource".into());
    let coord = cfg.connect().await?;
    let session = coord
        .session(cfg.opts())
        .await
        .map_err(|e| format!("session: {e}"))?;
    let lease = session.lease_id();
    emit("SESSION", format_args!("{lease:x} {}", now_us()));
    session.on_lost(move |e| {
        emit(
            "LOST",
            format_args!("{lease:x} {:?} {}", e.kind(), now_us()),
        )
    });
    let lock = session.lock(&cfg.lock).map_err(|e| e.to_string())?;
    emit("WAITING", now_us());
    let token = lock
        .lock_timeout(wait)
        .await
        .map_err(|e| format!("lock: {e}"))?;
    emit(
        "HOLD",
        format_args!("{} {:x} {}", token.revision, token.lease, now_us()),
    );
    if once {
        let r = lock
            .put(
                resource.as_bytes(),
                format!("{} {}", cfg.id, token.revision).as_bytes(),
            )
            .await
            .map_err(|e| format!("write once: {e}"))?;
        emit("WROTE", r);
    }
    let mut n = 0u64;
    while !cfg.done() {
        if every == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        n += 1;
        let value = format!("{} {} {n}", cfg.id, token.revision);
        match lock.put(resource.as_bytes(), value.as_bytes()).await {
            Ok(rev) => emit("WRITE", format_args!("ok {n} {rev} {}", now_us())),
            Err(e) => {
                emit(
                    "WRITE",
                    format_args!("err {n} {:?} {} {}", e.kind(), now_us(), e),
                );
                // What the session says of itself once a write was refused.
                emit("CHECK", kind_of(&session.check()));
                // The same write from a client that only has the token (no
                // session to check): etcd's compare alone must refuse it.
                let put = vec![Op::put(resource.clone().into_bytes(), value.into_bytes())];
                let raw = match store_fenced_txn(&coord, &token, vec![], put).await {
                    Outcome::Committed(rev) => format!("Committed {rev}"),
                    Outcome::Conflict => "Conflict".into(),
                    Outcome::Rejected(why) => why,
                    Outcome::Unknown(why) => format!("Unknown {why}"),
                };
                emit("RAW", raw);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(every)).await;
    }
    emit("UNLOCK", kind_of(&lock.unlock().await));
    session.close().await.map_err(|e| format!("close: {e}"))?;
    Ok(())
}

/// The lost-update contender: lock, read the counter, think (sometimes long
/// enough to be paused or to outlive the lease), write counter+1 in a
/// transaction guarded by the lock's token and by the counter's mod revision
/// and value, log the committed increment, unlock. One increment per hold,
/// so tokens of successive values must strictly increase.
///
/// The log line follows the commit; a kill in between loses the line but
/// not the increment, which the driver finds in etcd's history. A write
/// whose outcome is unknown (timeout, lost connection) is logged as `U`
/// (uncertain) so the driver can tell it from a lost update.
async fn counter(cfg: &Cfg) -> Result<(), String> {
    let key = need(COUNTER_ENV)?.into_bytes();
    let log_path = need(LOG_ENV)?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("open log {log_path}: {e}"))?;
    let mut rng = Rng::new(cfg.seed);
    let coord = cfg.connect().await?;
    let mut session: Option<Session> = None;
    let mut incs = 0u64;
    while !cfg.done() {
        let s = match live_session(&coord, cfg, &mut session).await {
            Some(s) => s,
            None => continue,
        };
        let lock = s.lock(&cfg.lock).map_err(|e| e.to_string())?;
        let wait = cfg.left().min(Duration::from_secs(2));
        let token = match lock.lock_timeout(wait).await {
            Ok(t) => t,
            Err(e) => {
                if e.kind() != ErrorKind::Timeout {
                    emit("ERR", format_args!("lock {:?}", e.kind()));
                }
                continue;
            }
        };
        let (n, compare) = match coord.range(&key, RangeOpts::default()).await {
            Ok(r) => match r.kvs.first() {
                Some(kv) => {
                    let text = String::from_utf8_lossy(&kv.value);
                    let n: u64 = text
                        .split_whitespace()
                        .next()
                        .and_then(|w| w.parse().ok())
                        .ok_or_else(|| format!("counter value {text:?} is not a count"))?;
                    let cmp = vec![
                        Cmp::mod_revision(key.clone(), CmpOp::Equal, kv.mod_revision),
                        Cmp::value(key.clone(), CmpOp::Equal, kv.value.clone()),
                    ];
                    (n, cmp)
                }
                // etcd compares an absent key's mod revision as 0.
                None => (0, vec![Cmp::mod_revision(key.clone(), CmpOp::Equal, 0)]),
            },
            Err(e) => {
                emit("ERR", format_args!("read {:?}", e.kind()));
                let _ = lock.unlock().await;
                continue;
            }
        };
        let think = if rng.chance(5) {
            rng.millis(200, 1200)
        } else {
            rng.millis(0, 10)
        };
        tokio::time::sleep(think).await;
        let next = n + 1;
        let value = format!("{next} {} {:x} {}", token.revision, token.lease, cfg.id);
        let put = vec![Op::put(key.clone(), value.into_bytes())];
        // Mostly through the API (`Lock::txn`: local session check, then
        // the token compare in etcd). Sometimes as a client that never
        // checks its session and only carries the token: then etcd's
        // compare alone must refuse a stale write.
        let outcome = if rng.chance(30) {
            store_fenced_txn(&coord, &token, compare, put).await
        } else {
            match lock.txn(compare, put, vec![]).await {
                Ok(r) if r.succeeded => Outcome::Committed(r.revision),
                Ok(_) => Outcome::Conflict,
                Err(e) if matches!(e.kind(), ErrorKind::Fenced | ErrorKind::SessionLost) => {
                    Outcome::Rejected(format!("{:?}", e.kind()))
                }
                Err(e) => Outcome::Unknown(format!("{:?}", e.kind())),
            }
        };
        match outcome {
            Outcome::Committed(rev) => {
                writeln!(log, "C {next} {} {:x} {rev}", token.revision, token.lease)
                    .and_then(|_| log.flush())
                    .map_err(|e| format!("log: {e}"))?;
                incs += 1;
            }
            // The lock key is still ours yet the counter moved: someone
            // wrote while we held the lock. A safety violation.
            Outcome::Conflict => emit(
                "CONFLICT",
                format_args!("{next} {} {:x}", token.revision, token.lease),
            ),
            Outcome::Rejected(why) => emit("REJECT", why),
            Outcome::Unknown(why) => {
                writeln!(log, "U {next} {} {:x}", token.revision, token.lease)
                    .and_then(|_| log.flush())
                    .map_err(|e| format!("log: {e}"))?;
                emit("UNKNOWN", why);
            }
        }
        // Fenced here is expected after a loss; the key is gone either way.
        let _ = lock.unlock().await;
    }
    if let Some(s) = session {
        let _ = s.close().await;
    }
    emit("INCS", incs);
    Ok(())
}

/// What became of one increment.
enum Outcome {
    /// Applied at this revision.
    Committed(i64),
    /// The token was current but the counter had moved.
    Conflict,
    /// Refused: the token was not current (or the session knew it was lost).
    Rejected(String),
    /// No answer: it may or may not have been applied.
    Unknown(String),
}

/// The guarded write as a client that only has the token would send it
/// (no session check): the token compare runs in etcd, atomically with the
/// counter compares. `StoreFenced` when etcd found the token stale.
async fn store_fenced_txn(
    coord: &Coordinator,
    token: &FencingToken,
    compare: Vec<Cmp>,
    put: Vec<Op>,
) -> Outcome {
    let mut all = vec![Cmp::create_revision(
        token.key.clone(),
        CmpOp::Equal,
        token.revision,
    )];
    all.extend(compare);
    let txn = Txn {
        compare: all,
        success: put,
        failure: vec![Op::get(token.key.clone())],
    };
    match coord.txn(txn).await {
        Ok(r) if r.succeeded => Outcome::Committed(r.revision),
        Ok(r) => {
            let current = r
                .results
                .first()
                .and_then(|g| g.kvs.first())
                .is_some_and(|kv| kv.create_revision == token.revision);
            if current {
                Outcome::Conflict
            } else {
                Outcome::Rejected("StoreFenced".into())
            }
        }
        Err(e) => Outcome::Unknown(format!("{:?}", e.kind())),
    }
}

/// The session to use now: the current one while it is alive, else a new
/// one (the old one closed, best effort). `None` after a failed attempt.
async fn live_session(
    coord: &Coordinator,
    cfg: &Cfg,
    slot: &mut Option<Session>,
) -> Option<Session> {
    if let Some(s) = slot.as_ref() {
        if s.check().is_ok() {
            return Some(s.clone());
        }
    }
    if let Some(old) = slot.take() {
        let _ = old.close().await;
    }
    match coord.session(cfg.opts()).await {
        Ok(s) => {
            let lease = s.lease_id();
            emit("SESSION", format_args!("{lease:x} {}", now_us()));
            s.on_lost(move |e| {
                emit(
                    "LOST",
                    format_args!("{lease:x} {:?} {}", e.kind(), now_us()),
                )
            });
            *slot = Some(s.clone());
            Some(s)
        }
        Err(e) => {
            emit("ERR", format_args!("session {:?}", e.kind()));
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// Asks etcd whether our lease exists, THEN asks the session whether it is
/// alive. If etcd already dropped the lease, the local deadline (which runs
/// out before the server's) has passed too, so `check` must fail; a session
/// that still says Ok would be silently holding a lease it lost.
async fn probe(coord: &Coordinator, s: &Session) {
    let asked = tokio::time::timeout(Duration::from_millis(500), coord.lease_ttl(s.lease_id()));
    if let Ok(Ok(None)) = asked.await {
        if s.check().is_ok() {
            emit("SILENT", format_args!("{:x} {}", s.lease_id(), now_us()));
        }
    }
}

/// Contends in a loop and reports each hold as a belief interval
/// `BELIEF token lease first last how`: `first`/`last` are wall times taken
/// just BEFORE the first and the last `check()` that returned Ok while
/// holding, so the reported interval lies inside the time the process
/// really believed it held the lock. If reported intervals of two holders
/// overlap, their real beliefs overlapped: no scheduling delay can fake it.
async fn belief(cfg: &Cfg) -> Result<(), String> {
    let mut rng = Rng::new(cfg.seed);
    let coord = cfg.connect().await?;
    let mut session: Option<Session> = None;
    let mut next_probe = Instant::now();
    while !cfg.done() {
        let s = match live_session(&coord, cfg, &mut session).await {
            Some(s) => s,
            None => continue,
        };
        if Instant::now() >= next_probe {
            probe(&coord, &s).await;
            next_probe = Instant::now() + Duration::from_millis(250);
        }
        let lock = s.lock(&cfg.lock).map_err(|e| e.to_string())?;
        let wait = cfg.left().min(Duration::from_secs(2));
        let token = match lock.lock_timeout(wait).await {
            Ok(t) => t,
            Err(e) => {
                if e.kind() != ErrorKind::Timeout {
                    emit("ERR", format_args!("lock {:?}", e.kind()));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        // Mostly short holds; some outlast the local deadline when etcd is
        // down, so a belief can end by the lost notice mid-hold.
        // Mostly short holds. When the driver asks (by creating the "long"
        // file, which exactly one contender claims by renaming it), a hold
        // of 3 s: longer than the local deadline, so an etcd outage that
        // starts now ends this belief with the lost notice.
        let claimed = cfg.long_asked();
        let hold = if claimed {
            Duration::from_secs(3)
        } else if rng.chance(10) {
            rng.millis(1000, 3000)
        } else {
            rng.millis(100, 800)
        };
        let acquired = Instant::now();
        let (mut first, mut last) = (None, 0u64);
        let mut how = "unlock";
        loop {
            let before = now_us();
            if s.check().is_err() {
                how = "lost";
                break;
            }
            if first.is_none() {
                first = Some(before);
                // After the first Ok check, so a fault the driver injects
                // on seeing this line falls inside the reported interval.
                emit(
                    "HOLDING",
                    format_args!("{} {} {}", token.revision, hold.as_millis(), before),
                );
            }
            last = before;
            if acquired.elapsed() >= hold || cfg.done() {
                break;
            }
            if Instant::now() >= next_probe {
                probe(&coord, &s).await;
                next_probe = Instant::now() + Duration::from_millis(250);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(first) = first {
            emit(
                "BELIEF",
                format_args!("{} {:x} {first} {last} {how}", token.revision, token.lease),
            );
        }
        let unlocked = lock.unlock().await;
        if how == "unlock" {
            if let Err(e) = unlocked {
                emit("UNLOCK_ERR", format_args!("{:?}", e.kind()));
            }
        }
    }
    if let Some(s) = session.take() {
        // Reported before the revoke so the driver's lease audit never sees
        // a lease gone that nobody reported ending.
        emit("CLOSED", format_args!("{:x}", s.lease_id()));
        let _ = s.close().await;
    }
    Ok(())
}
