//! Real etcd servers for tests.
//!
//! Project rule: tests that need a server run the real one. [`EtcdCluster`]
//! starts `n` members of the installed etcd on 127.0.0.1 with free ports, in
//! a fresh directory under the system temp dir, and tears everything down on
//! drop. It has fault hooks (kill, pause, resume, restart) so failover can be
//! tested against real elections.
//!
//! The binary is `$SHARDKIT_ETCD_BIN`, else `/usr/bin/etcd`, else `etcd` on
//! `PATH`; [`etcd_binary`] says whether one exists, so a test can skip with a
//! note instead of failing on a machine without etcd.

use std::fs::{self, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::http;
use crate::net::try_free_addrs;
use crate::process::try_signal;
use crate::tempdir::TempDir;

/// How long a member may take to start answering. Generous because CI
/// machines are slow and shared; the wait ends as soon as it answers.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one HTTP probe of a member.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Attempts at starting a cluster: a free port can be taken by another
/// process between our probe and etcd's bind.
const START_ATTEMPTS: usize = 3;

/// Path of the etcd binary to run, or `None` when none is installed.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SHARDKIT_ETCD_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let default = PathBuf::from("/usr/bin/etcd");
    if default.is_file() {
        return Some(default);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

/// One etcd member started by an [`EtcdCluster`].
#[derive(Debug)]
pub struct EtcdProcess {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// The member id etcd chose (learned once it answers), to find the leader
    /// even when the leader itself cannot be asked.
    member_id: Option<String>,
    /// `--heartbeat-interval` and `--election-timeout`, in ms.
    timing: (u32, u32),
}

impl EtcdProcess {
    /// The member's name (`m0`, `m1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The OS process id, `None` when the member is not running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process runs (it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process is stopped with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The member's log file (etcd's stdout and stderr, across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn client_addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The last lines of the log, for error messages.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(15);
        lines[start..].join("\n")
    }

    fn spawn(
        &mut self,
        bin: &Path,
        initial_cluster: &str,
        token: &str,
        state: &str,
    ) -> io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let client = self.endpoint();
        let peer = self.peer_url();
        let child = Command::new(bin)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", token])
            // Fast elections keep failover tests short; loopback is quick
            // enough for these to be stable.
            .arg("--heartbeat-interval")
            .arg(self.timing.0.to_string())
            .arg("--election-timeout")
            .arg(self.timing.1.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start {}: {e}", bin.display()))
            })?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// One readiness check: `Ok(true)` once the member says it is healthy
    /// (it has a leader and serves) and told its id; an error when the
    /// process has exited, with its log tail.
    fn check_ready(&mut self) -> io::Result<bool> {
        let Some(child) = self.child.as_mut() else {
            return Err(io::Error::other(format!(
                "etcd member {} is not running",
                self.name
            )));
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            return Err(io::Error::other(format!(
                "etcd member {} exited with {status} while starting; log {}:\n{}",
                self.name,
                self.log_path.display(),
                self.log_tail()
            )));
        }
        match probe(&self.client_addr(), "GET", "/health", "") {
            Ok(body) if body.contains("\"health\":\"true\"") => {
                // The id is needed by leader_index; learn it now.
                if self.member_id.is_none() {
                    self.member_id = self.status().ok().and_then(|s| s.member_id);
                }
                Ok(self.member_id.is_some())
            }
            _ => Ok(false),
        }
    }

    /// The member's own view from the v3 JSON gateway.
    fn status(&self) -> io::Result<Status> {
        let body = probe(&self.client_addr(), "POST", "/v3/maintenance/status", "{}")?;
        Ok(Status {
            member_id: json_string(&body, "member_id"),
            leader: json_string(&body, "leader"),
        })
    }

    fn signal(&self, sig: &str) -> io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other(format!("etcd member {} is not running", self.name)))?;
        try_signal(pid, sig)
            .map_err(|e| io::Error::other(format!("{e} (etcd member {})", self.name)))
    }

    fn kill(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a stopped process; nothing to resume first.
            let _ = child.kill();
            child.wait()?;
        }
        self.paused = false;
        Ok(())
    }
}

struct Status {
    member_id: Option<String>,
    leader: Option<String>,
}

/// A running etcd cluster of real processes on loopback. Dropping it kills
/// every member and removes its directory.
#[derive(Debug)]
pub struct EtcdCluster {
    bin: PathBuf,
    dir: TempDir,
    token: String,
    initial_cluster: String,
    members: Vec<EtcdProcess>,
}

impl EtcdCluster {
    /// A one-member cluster.
    pub fn single() -> io::Result<EtcdCluster> {
        EtcdCluster::start(1)
    }

    /// Starts `n` members and waits until every one is healthy.
    pub fn start(n: usize) -> io::Result<EtcdCluster> {
        EtcdCluster::start_with_timing(n, 50, 500)
    }

    /// [`start`](EtcdCluster::start) with etcd's `--heartbeat-interval` and
    /// `--election-timeout` (ms). They also set etcd's minimum lease TTL,
    /// `1.5 × election timeout` rounded up to whole seconds, so slow timings
    /// let tests ask for a TTL below the server's minimum.
    pub fn start_with_timing(
        n: usize,
        heartbeat_ms: u32,
        election_ms: u32,
    ) -> io::Result<EtcdCluster> {
        let timing = (heartbeat_ms, election_ms);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an etcd cluster needs at least 1 member, got 0",
            ));
        }
        let bin = etcd_binary().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no etcd binary: set SHARDKIT_ETCD_BIN or install etcd at /usr/bin/etcd",
            )
        })?;
        let mut attempt = 1;
        loop {
            match EtcdCluster::try_start(&bin, n, timing) {
                Ok(c) => return Ok(c),
                // Only a lost port race is worth another try.
                Err(e)
                    if attempt < START_ATTEMPTS
                        && e.to_string().contains("address already in use") =>
                {
                    attempt += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_start(bin: &Path, n: usize, timing: (u32, u32)) -> io::Result<EtcdCluster> {
        let dir = TempDir::try_new("etcd")?;
        // Unique per cluster: the directory's name is.
        let token = dir.path().file_name().map_or_else(
            || "shardkit-etcd".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let ports: Vec<u16> = try_free_addrs(Ipv4Addr::LOCALHOST, 2 * n)?
            .iter()
            .map(|a| a.port())
            .collect();
        let members: Vec<EtcdProcess> = (0..n)
            .map(|i| EtcdProcess {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.join(&format!("m{i}.data")),
                log_path: dir.join(&format!("m{i}.log")),
                child: None,
                paused: false,
                member_id: None,
                timing,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        // Built before spawning so a failure below still cleans up on drop.
        let mut cluster = EtcdCluster {
            bin: bin.to_path_buf(),
            dir,
            token,
            initial_cluster,
            members,
        };
        for i in 0..n {
            let EtcdCluster {
                bin,
                token,
                initial_cluster,
                members,
                ..
            } = &mut cluster;
            members[i].spawn(bin, initial_cluster, token, "new")?;
        }
        cluster.wait_ready(&(0..n).collect::<Vec<_>>())?;
        Ok(cluster)
    }

    /// Waits until members `which` are healthy. Checks them all in each
    /// round, so one member that dies at start (a port taken meanwhile) ends
    /// the wait at once instead of after the others time out without quorum.
    fn wait_ready(&mut self, which: &[usize]) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending: Vec<usize> = which.to_vec();
        loop {
            let mut still = Vec::new();
            for &i in &pending {
                if !self.members[i].check_ready()? {
                    still.push(i);
                }
            }
            pending = still;
            let Some(&first) = pending.first() else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                let m = &self.members[first];
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd member {} at {} not healthy after {} s; log {}:\n{}",
                        m.name,
                        m.endpoint(),
                        START_TIMEOUT.as_secs(),
                        m.log_path.display(),
                        m.log_tail()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Client URLs of all members (running or not), in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdProcess::endpoint).collect()
    }

    /// Client URL of member `i`.
    ///
    /// # Panics
    /// When `i` is not a member index (a bug in the calling test).
    pub fn member_endpoint(&self, i: usize) -> String {
        self.member(i).endpoint()
    }

    /// Member `i`.
    ///
    /// # Panics
    /// When `i` is not a member index (a bug in the calling test).
    pub fn member(&self, i: usize) -> &EtcdProcess {
        &self.members[i]
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The cluster's directory (data dirs and logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn member_mut(&mut self, i: usize) -> io::Result<&mut EtcdProcess> {
        let n = self.members.len();
        self.members.get_mut(i).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no etcd member {i}: the cluster has {n}"),
            )
        })
    }

    /// Kills member `i` with SIGKILL and reaps it. Killing a dead member is
    /// a no-op.
    pub fn kill(&mut self, i: usize) -> io::Result<()> {
        self.member_mut(i)?.kill()
    }

    /// Freezes member `i` with SIGSTOP: its sockets stay open but nothing
    /// answers, like a hung machine.
    pub fn pause(&mut self, i: usize) -> io::Result<()> {
        let m = self.member_mut(i)?;
        m.signal("-STOP")?;
        m.paused = true;
        Ok(())
    }

    /// Same as [`pause`](EtcdCluster::pause).
    pub fn stop(&mut self, i: usize) -> io::Result<()> {
        self.pause(i)
    }

    /// Resumes a paused member with SIGCONT.
    pub fn resume(&mut self, i: usize) -> io::Result<()> {
        let m = self.member_mut(i)?;
        m.signal("-CONT")?;
        m.paused = false;
        Ok(())
    }

    /// Starts member `i` again on its data dir and ports (killing it first
    /// if it runs) and waits until it is healthy, which needs a quorum.
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.member_mut(i)?.kill()?;
        let EtcdCluster {
            bin,
            token,
            initial_cluster,
            members,
            ..
        } = self;
        let m = &mut members[i];
        m.spawn(bin, initial_cluster, token, "existing")?;
        self.wait_ready(&[i])
    }

    /// Index of the member that says it is the leader, `None` when no
    /// running, unpaused member does. Asking the leader itself, rather than
    /// trusting followers, skips a dead leader they have not noticed yet.
    pub fn leader_index(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.is_running()
                && !m.paused
                && m.member_id.is_some()
                && m.status()
                    .is_ok_and(|s| s.leader.is_some() && s.leader == m.member_id)
        })
    }

    /// Polls [`leader_index`](EtcdCluster::leader_index) until a leader is
    /// known or `timeout` passes.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader_index() {
                return Some(i);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.kill();
        }
        // The directory goes when `dir` drops, after this.
    }
}

/// One request to a member's HTTP gateway; the body when the status is 200.
fn probe(addr: &str, method: &str, path: &str, body: &str) -> io::Result<String> {
    let r = http::request(addr, method, path, body, PROBE_TIMEOUT)?;
    if r.status != 200 {
        return Err(io::Error::other(format!(
            "{method} {path} on {addr}: status {}",
            r.status
        )));
    }
    Ok(r.body)
}

/// The string value of `"key":"value"` in etcd's flat JSON (ids are strings
/// there because they are 64-bit).
fn json_string(body: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = body.find(&pat)? + pat.len();
    let len = body[start..].find('"')?;
    Some(body[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_faults_and_cleanup() {
        if etcd_binary().is_none() {
            eprintln!("skipping: no etcd binary (set SHARDKIT_ETCD_BIN)");
            return;
        }
        assert!(EtcdCluster::start(0).is_err());
        let mut c = EtcdCluster::start(3).expect("start etcd");
        let dir = c.dir().to_path_buf();
        assert_eq!(c.endpoints().len(), 3);
        assert!(c.endpoints()[1].starts_with("http://127.0.0.1:"));
        let leader = c.wait_leader(Duration::from_secs(5)).expect("a leader");
        assert!(leader < 3);

        c.kill(leader).unwrap();
        assert!(!c.member(leader).is_running());
        let next = c
            .wait_leader(Duration::from_secs(10))
            .expect("a new leader");
        assert_ne!(next, leader);
        c.restart(leader).unwrap();
        assert!(c.member(leader).is_running());

        let other = (next + 1) % 3;
        c.pause(other).unwrap();
        assert!(c.member(other).is_paused());
        c.resume(other).unwrap();
        assert!(!c.member(other).is_paused());
        assert!(c.kill(7).is_err());

        let pids: Vec<u32> = (0..3).filter_map(|i| c.member(i).pid()).collect();
        drop(c);
        assert!(!dir.exists(), "{} left behind", dir.display());
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "etcd {pid} still runs"
            );
        }
    }
}
