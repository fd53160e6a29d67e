//! Driver side of the process-fault suite: contender processes (this test
//! binary re-run with a role), the line protocol they report on, store
//! history and leftover accounting. etcd itself, signals and the seeded RNG
//! come from `shardkit_testkit`.
//!
//! Contenders are whole processes because the faults under test are process
//! faults: `kill -9` and SIGSTOP hit every thread of a process at once,
//! keepalive task included, which no in-process simulation reproduces.

#![allow(dead_code)] // not every test uses every helper

pub mod contender;
pub mod ledger;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shardkit::lease::{Coordinator, Event, EventKind, Kv, Op, RangeOpts, Txn};
use shardkit_testkit::{signal, EtcdCluster};

/// Prefix of every line a contender reports on stdout; everything else there
/// (libtest's own chatter) is ignored.
pub const LINE_PREFIX: &str = "@@ ";

/// Microseconds since the Unix epoch. Contenders and the driver share one
/// machine and so one clock; wall time is used (not `Instant`) because
/// `Instant`s cannot cross a process boundary. NTP slewing during a test
/// run is far below the margins compared here.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A seed from the environment (`SHARDKIT_FAULT_SEED`, decimal or 0x-hex)
/// or the clock; printed by the caller so a failing run can be replayed.
pub fn seed_from_env() -> u64 {
    match std::env::var("SHARDKIT_FAULT_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("SHARDKIT_FAULT_SEED={s:?} is not a u64: {e}"))
        }
        Err(_) => now_us() ^ (u64::from(std::process::id()) << 32),
    }
}

/// The fault tests compare timings against the TTL on a small shared
/// machine; running them one at a time keeps one test's eight busy
/// contenders from starving another's measurement.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// One report line of a contender: `@@ TAG field...`.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Which process (index into the fleet) sent it.
    pub proc: usize,
    /// The tag (`HOLD`, `LOST`, ...).
    pub tag: String,
    /// The whitespace-separated fields after the tag.
    pub f: Vec<String>,
    /// When the driver read it.
    pub at: Instant,
}

impl Msg {
    /// Field `i` parsed as a decimal integer.
    ///
    /// # Panics
    /// When the field is missing or not a number (a protocol bug).
    pub fn int(&self, i: usize) -> i64 {
        self.f
            .get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("field {i} of {self:?} is not an integer"))
    }

    /// Field `i` parsed as a hex lease id.
    pub fn lease(&self, i: usize) -> i64 {
        self.f
            .get(i)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .map(|v| v as i64)
            .unwrap_or_else(|| panic!("field {i} of {self:?} is not a hex lease"))
    }

    /// Field `i` as text ("" when missing).
    pub fn s(&self, i: usize) -> &str {
        self.f.get(i).map_or("", String::as_str)
    }
}

/// One spawned contender process.
#[derive(Debug)]
pub struct Proc {
    /// Index in the fleet.
    pub id: usize,
    /// What the test calls it (`A`, `c3.1`, ...).
    pub label: String,
    /// OS process id.
    pub pid: u32,
    child: Option<Child>,
    /// Exit status once reaped.
    pub status: Option<ExitStatus>,
    /// Whether the driver killed it with SIGKILL.
    pub killed: bool,
    /// Whether it is stopped with SIGSTOP now.
    pub paused: bool,
    stderr: PathBuf,
}

/// The contender processes of one test, their reports, and a directory for
/// their files. Dropping it kills every process still running (SIGKILL also
/// ends stopped ones), also when the test panics.
pub struct Fleet {
    /// Scratch directory (logs, stop file, stderr files); removed on drop.
    pub dir: PathBuf,
    exe: PathBuf,
    env: Vec<(String, String)>,
    /// Every process ever spawned, by id.
    pub procs: Vec<Proc>,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    /// Every report line read so far, in arrival order.
    pub msgs: Vec<Msg>,
}

impl Fleet {
    /// A fleet whose processes all get `env` (plus their own on spawn).
    pub fn new(tag: &str, env: &[(&str, String)]) -> Fleet {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shardkit-faults-{tag}-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            now_us() % 1_000_000_000
        ));
        fs::create_dir_all(&dir).expect("create fleet dir");
        let (tx, rx) = channel();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        env.push((
            contender::STOP_ENV.into(),
            dir.join("stop").display().to_string(),
        ));
        Fleet {
            exe: std::env::current_exe().expect("current test binary"),
            dir,
            env,
            procs: Vec::new(),
            tx,
            rx,
            msgs: Vec::new(),
        }
    }

    /// Starts this test binary as a contender (`contender_main`) with the
    /// fleet's environment plus `env`; returns its id.
    pub fn spawn(&mut self, label: &str, env: &[(&str, String)]) -> usize {
        let id = self.procs.len();
        let stderr = self.dir.join(format!("p{id}.stderr"));
        let mut cmd = Command::new(&self.exe);
        cmd.args([
            "--exact",
            "contender_main",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(contender::ROLE_ENV, "") // overwritten below; never inherited
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&stderr).expect("stderr file"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn contender");
        let out = child.stdout.take().expect("piped stdout");
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            // Ends at EOF, when the process exits or is killed.
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // libtest prints "test contender_main ... " without a newline
                // before the test's own output: the first report shares its
                // line.
                let Some(at) = line.find(LINE_PREFIX) else {
                    continue;
                };
                let mut words = line[at + LINE_PREFIX.len()..].split_whitespace();
                let Some(tag) = words.next() else { continue };
                let msg = Msg {
                    proc: id,
                    tag: tag.to_string(),
                    f: words.map(str::to_string).collect(),
                    at: Instant::now(),
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        self.procs.push(Proc {
            id,
            label: label.to_string(),
            pid: child.id(),
            child: Some(child),
            status: None,
            killed: false,
            paused: false,
            stderr,
        });
        id
    }

    /// Moves every line read so far into `msgs`; returns how many arrived.
    pub fn pump(&mut self) -> usize {
        let before = self.msgs.len();
        while let Ok(m) = self.rx.try_recv() {
            self.check_fail(&m);
            self.msgs.push(m);
        }
        self.msgs.len() - before
    }

    fn check_fail(&self, m: &Msg) {
        if m.tag == "FAIL" {
            panic!(
                "contender {} failed: {}\nstderr:\n{}",
                self.procs[m.proc].label,
                m.f.join(" "),
                self.stderr_tail(m.proc)
            );
        }
    }

    /// Waits up to `limit` for a line matching `pred` (among those already
    /// read, too); returns the first match.
    pub fn wait_for(&mut self, limit: Duration, pred: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let until = Instant::now() + limit;
        self.pump();
        if let Some(m) = self.msgs.iter().find(|m| pred(m)) {
            return Some(m.clone());
        }
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) => {
                    self.check_fail(&m);
                    let hit = pred(&m);
                    self.msgs.push(m.clone());
                    if hit {
                        return Some(m);
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    /// Waits up to `limit` until `n` lines match `pred`.
    pub fn wait_count(&mut self, limit: Duration, n: usize, pred: impl Fn(&Msg) -> bool) -> bool {
        let until = Instant::now() + limit;
        loop {
            self.pump();
            if self.msgs.iter().filter(|m| pred(m)).count() >= n {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lines of process `id` with tag `tag`.
    pub fn lines(&self, id: usize, tag: &str) -> Vec<&Msg> {
        self.msgs
            .iter()
            .filter(|m| m.proc == id && m.tag == tag)
            .collect()
    }

    /// Lines with tag `tag` from any process.
    pub fn tagged(&self, tag: &str) -> Vec<&Msg> {
        self.msgs.iter().filter(|m| m.tag == tag).collect()
    }

    /// `kill -9`, then reaps the process.
    pub fn kill9(&mut self, id: usize) {
        let p = &mut self.procs[id];
        if let Some(mut c) = p.child.take() {
            let _ = c.kill();
            p.status = c.wait().ok();
        }
        p.killed = true;
        p.paused = false;
    }

    /// SIGSTOP: every thread of the process freezes, keepalive included.
    pub fn pause(&mut self, id: usize) {
        signal(self.procs[id].pid, "-STOP");
        self.procs[id].paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self, id: usize) {
        signal(self.procs[id].pid, "-CONT");
        self.procs[id].paused = false;
    }

    /// Whether process `id` still runs (stopped counts as running).
    pub fn alive(&mut self, id: usize) -> bool {
        let p = &mut self.procs[id];
        match p.child.as_mut() {
            None => false,
            Some(c) => match c.try_wait() {
                Ok(Some(st)) => {
                    p.status = Some(st);
                    p.child = None;
                    false
                }
                _ => true,
            },
        }
    }

    /// Ids of processes still running.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.procs.len()).filter(|&i| self.alive(i)).collect()
    }

    /// Asks every contender to finish (they poll the stop file).
    pub fn stop_all(&self) {
        fs::write(self.dir.join("stop"), b"stop").expect("write stop file");
    }

    /// Waits up to `limit` for every process to exit; panics naming those
    /// that did not, or that exited with a failure (killed ones excepted).
    pub fn wait_all_exit(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        loop {
            self.pump();
            let live = self.live();
            if live.is_empty() {
                break;
            }
            if Instant::now() >= until {
                let names: Vec<String> = live
                    .iter()
                    .map(|&i| {
                        format!(
                            "{} (pid {}): stderr:\n{}",
                            self.procs[i].label,
                            self.procs[i].pid,
                            self.stderr_tail(i)
                        )
                    })
                    .collect();
                panic!(
                    "contenders did not exit within {limit:?}: {}",
                    names.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Readers may still hold the last lines of the processes just reaped.
        std::thread::sleep(Duration::from_millis(50));
        self.pump();
        for p in &self.procs {
            if p.killed {
                continue;
            }
            let ok = p.status.is_some_and(|s| s.success());
            assert!(
                ok,
                "contender {} exited with {:?}; stderr:\n{}",
                p.label,
                p.status,
                self.stderr_tail(p.id)
            );
        }
    }

    /// The last lines of a process's stderr.
    pub fn stderr_tail(&self, id: usize) -> String {
        let text = fs::read_to_string(&self.procs[id].stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A path in the fleet directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::env::var_os("SHARDKIT_FAULT_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kept {}", self.dir.display());
        }
    }
}

/// A runtime for the driver's own store calls (the driver is a plain
/// `#[test]`: it spends its time in blocking waits and signals).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("driver runtime")
}

/// Starts etcd (`n` members), failing the test clearly when it cannot.
pub fn etcd(n: usize) -> EtcdCluster {
    EtcdCluster::start(n).expect("start etcd (is etcd-server installed at /usr/bin/etcd?)")
}

/// The driver's client of `cluster`.
pub fn connect(rt: &tokio::runtime::Runtime, cluster: &EtcdCluster) -> Coordinator {
    rt.block_on(Coordinator::connect_list(
        &cluster.endpoints(),
        Duration::from_secs(5),
    ))
    .expect("driver connects to etcd")
}

/// Every put to `key` since revision 1, in revision order, read back with a
/// watch (etcd keeps the whole history until compaction; nothing compacts
/// here). Reads until the key's current mod revision.
pub fn history(rt: &tokio::runtime::Runtime, coord: &Coordinator, key: &[u8]) -> Vec<Kv> {
    rt.block_on(async {
        let now = coord
            .range(key, RangeOpts::default())
            .await
            .expect("read key");
        let Some(last) = now.kvs.first().map(|kv| kv.mod_revision) else {
            return Vec::new();
        };
        let mut w = coord.watch(key, false, 1).await.expect("watch history");
        let mut out = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let batch = tokio::time::timeout_at(until, w.next())
                .await
                .expect("history replay timed out")
                .expect("history watch ended early")
                .expect("history watch failed");
            for ev in batch {
                if ev.kind == EventKind::Put {
                    out.push(ev.kv.clone());
                }
                if ev.kv.mod_revision >= last {
                    return out;
                }
            }
        }
    })
}

/// Every event under `prefix` since revision 1 (puts and deletes, lease
/// expiries included), in revision order. A sentinel key written after
/// everything else marks where the replay ends; it is deleted again.
pub fn prefix_events(
    rt: &tokio::runtime::Runtime,
    coord: &Coordinator,
    prefix: &str,
) -> Vec<Event> {
    rt.block_on(async {
        let sentinel = format!("{prefix}~sentinel");
        let put = coord
            .txn(Txn {
                compare: vec![],
                success: vec![Op::put(sentinel.clone(), "end")],
                failure: vec![],
            })
            .await
            .expect("write sentinel");
        let mut w = coord
            .watch(prefix.as_bytes(), true, 1)
            .await
            .expect("watch prefix history");
        let mut out = Vec::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        'replay: loop {
            let batch = tokio::time::timeout_at(until, w.next())
                .await
                .expect("prefix replay timed out")
                .expect("prefix watch ended early")
                .expect("prefix watch failed");
            for ev in batch {
                if ev.kv.mod_revision >= put.revision {
                    break 'replay;
                }
                out.push(ev);
            }
        }
        coord
            .txn(Txn {
                compare: vec![],
                success: vec![Op::delete(sentinel)],
                failure: vec![],
            })
            .await
            .expect("delete sentinel");
        out
    })
}

/// Live lease count from `etcdctl lease list` (a `Coordinator` has no lease
/// listing: the project's API never needs one, so the operator tool counts).
pub fn lease_count(endpoints: &[String]) -> usize {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(["--command-timeout=3s", "lease", "list"])
        .output()
        .expect("run /usr/bin/etcdctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "etcdctl lease list failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    // "found N leases" then one hex id per line.
    text.lines()
        .find_map(|l| {
            l.strip_prefix("found ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("unexpected etcdctl output: {text:?}"))
}

/// Keys under `shardkit/`.
pub fn shardkit_keys(rt: &tokio::runtime::Runtime, coord: &Coordinator) -> Vec<String> {
    let r = rt
        .block_on(coord.range(b"shardkit/", RangeOpts::prefix()))
        .expect("count keys");
    r.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

/// Once every contender has exited (or its lease run out), waits up to
/// `limit` for 0 keys under `shardkit/` and 0 live leases; prints the
/// numbers and asserts both are 0.
pub fn assert_no_leftovers(
    test: &str,
    rt: &tokio::runtime::Runtime,
    coord: &Coordinator,
    cluster: &EtcdCluster,
    limit: Duration,
) {
    let started = Instant::now();
    let endpoints = cluster.endpoints();
    let (keys, leases) = loop {
        let keys = shardkit_keys(rt, coord);
        let leases = lease_count(&endpoints);
        if (keys.is_empty() && leases == 0) || started.elapsed() >= limit {
            break (keys, leases);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "leftovers after {test}: {} keys under shardkit/, {leases} leases (settled in {} ms)",
        keys.len(),
        started.elapsed().as_millis()
    );
    assert!(
        keys.is_empty() && leases == 0,
        "{test}: {} keys left under shardkit/ ({keys:?}) and {leases} leases after {limit:?}",
        keys.len()
    );
}

/// Tally of lines by their first `words` fields (e.g. the error kind of
/// `REJECT Fenced`, or `lock Unavailable` of an `ERR` line).
pub fn tally<'a>(msgs: impl Iterator<Item = &'a Msg>, words: usize) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for m in msgs {
        let key =
            m.f.iter()
                .take(words)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

/// Whether a path exists (stop-file polling).
pub fn exists(p: &Path) -> bool {
    p.exists()
}
