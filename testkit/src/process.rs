//! Child processes of a test: found, spawned with a log, killed on drop,
//! and signalled.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed and reaped on drop, also when the test panics;
/// its stdout and stderr go to a log file.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout and stderr sent to `log`.
    ///
    /// # Panics
    /// When the log cannot be created or the command cannot start.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("create log file {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// Waits (at most `within`) for the process to exit, and its status;
    /// `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until every address in `addrs` accepts a TCP connection,
    /// checking all along that the process still runs.
    ///
    /// # Panics
    /// When the process exits, or `within` passes first; the message has
    /// the process's log and `more()` (other logs, the configuration).
    pub fn wait_listening(
        &mut self,
        addrs: &[SocketAddr],
        within: Duration,
        more: impl Fn() -> String,
    ) {
        let deadline = Instant::now() + within;
        for a in addrs {
            loop {
                self.assert_running();
                if TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} not listening on {a}; log:\n{}\n{}",
                    self.name,
                    self.log(),
                    more()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a required binary, from `PATH` and the usual system
/// directories.
///
/// # Panics
/// When it is not installed (a failure, never a skip: a suite that quietly
/// runs nothing proves nothing), naming the Debian package that provides it.
pub fn require(bin: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    for d in dirs {
        let p = d.join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{bin} is not installed: the tests need it (apt-get install {package}, or run `make deps`)"
    );
}

/// Whether this process runs as root (memcached and nginx need telling).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Sends `sig` (`-STOP`, `-CONT`, `-TERM`, ...) to `pid` with kill(1): std
/// has no signal API besides SIGKILL of its own children.
pub fn try_signal(pid: u32, sig: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill {sig} {pid} failed: {status}"
        )))
    }
}

/// [`try_signal`], failing the test when the signal cannot be sent.
///
/// # Panics
/// When kill(1) cannot run or fails (no such process).
pub fn signal(pid: u32, sig: &str) {
    try_signal(pid, sig).unwrap_or_else(|e| panic!("{e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_is_killed_on_drop_and_signals_reach_it() {
        let dir = crate::TempDir::new("testkit-proc");
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut p = Proc::spawn("sleep", cmd, dir.join("sleep.log"));
        p.assert_running();
        let pid = p.pid();
        signal(pid, "-STOP");
        signal(pid, "-CONT");
        drop(p);
        let gone = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
        };
        assert!(gone(pid), "sleep {pid} still runs");
        assert!(require("sh", "dash").is_file());
    }
}
