//! The command `shardkit lock` and `shardkit elect` run: started in its own
//! process group, sent signals, and stopped when the lock is lost.
//!
//! Signals go to the whole group, so a shell script's children stop with it:
//! when a lock is lost, nothing CMD started may keep writing as if it still
//! held the lock. Signals are sent only while the group leader is not yet
//! reaped, so its pid (and the group id it pins) cannot have been reused by
//! an unrelated process.

use std::ffi::OsString;
use std::io;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

/// Exit status when CMD was not found (as shells, `env` and `timeout` use).
pub(crate) const EXIT_NOT_FOUND: u8 = 127;
/// Exit status when CMD was found but could not be run.
pub(crate) const EXIT_CANNOT_RUN: u8 = 126;

/// A signal by the name `kill -s` takes and its number (the same on Linux
/// and the BSDs for these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sig {
    pub(crate) name: &'static str,
    pub(crate) number: i32,
}

pub(crate) const SIGHUP: Sig = Sig {
    name: "HUP",
    number: 1,
};
pub(crate) const SIGINT: Sig = Sig {
    name: "INT",
    number: 2,
};
pub(crate) const SIGQUIT: Sig = Sig {
    name: "QUIT",
    number: 3,
};
pub(crate) const SIGKILL: Sig = Sig {
    name: "KILL",
    number: 9,
};
pub(crate) const SIGTERM: Sig = Sig {
    name: "TERM",
    number: 15,
};

/// Catches the signals shardkit passes on to CMD instead of dying (HUP,
/// INT, QUIT, TERM) and SIGCHLD, to notice CMD's exit at once. Must be made
/// inside the runtime; from then on these signals no longer end shardkit by
/// default, so every wait must also watch them.
pub(crate) struct Signals {
    forwarded: Forwarded,
    child: Signal,
}

/// The signals passed on to CMD.
struct Forwarded {
    hup: Signal,
    int: Signal,
    quit: Signal,
    term: Signal,
}

impl Signals {
    pub(crate) fn catch() -> io::Result<Signals> {
        let raw = |s: Sig| signal(SignalKind::from_raw(s.number));
        Ok(Signals {
            forwarded: Forwarded {
                hup: raw(SIGHUP)?,
                int: raw(SIGINT)?,
                quit: raw(SIGQUIT)?,
                term: raw(SIGTERM)?,
            },
            child: signal(SignalKind::child())?,
        })
    }

    /// The next forwarded signal shardkit receives.
    pub(crate) async fn next(&mut self) -> Sig {
        self.forwarded.next().await
    }
}

impl Forwarded {
    async fn next(&mut self) -> Sig {
        // `recv` gives `None` only when the runtime shuts down; such a
        // branch is disabled and the others still count.
        tokio::select! {
            Some(()) = self.hup.recv() => SIGHUP,
            Some(()) = self.int.recv() => SIGINT,
            Some(()) = self.quit.recv() => SIGQUIT,
            Some(()) = self.term.recv() => SIGTERM,
            else => std::future::pending().await,
        }
    }
}

/// Resolves when some child process changed state (SIGCHLD).
async fn child_changed(sigchld: &mut Signal) {
    if sigchld.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}

/// Why CMD could not be started, with the exit status to report.
pub(crate) struct SpawnError {
    pub(crate) code: u8,
    pub(crate) message: String,
}

/// A running CMD, leader of its own process group.
pub(crate) struct Child {
    child: std::process::Child,
    pid: u32,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts `argv` with `env` added to shardkit's environment, in a new
    /// process group whose id is its pid.
    pub(crate) fn spawn(argv: &[OsString], env: &[(&str, String)]) -> Result<Child, SpawnError> {
        use std::os::unix::process::CommandExt;
        let (program, rest) = argv.split_first().ok_or_else(|| SpawnError {
            code: 2,
            message: "error: no command given to run".into(),
        })?;
        let mut cmd = Command::new(program);
        cmd.args(rest)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .process_group(0);
        // If shardkit itself dies (kill -9), nothing is left to stop CMD when
        // the lock passes on: have the kernel kill CMD with it. The death
        // signal is tied to the forking thread, which is the main thread
        // (the CLI runs its future with `block_on` there) and lives as long
        // as the process. Only CMD itself gets the signal, not processes it
        // started in turn: a shell CMD should `exec` its worker.
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only async-signal-safe functions (prctl, getppid, _exit).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // shardkit died between fork and prctl: nobody will stop us.
                if libc::getppid() as u32 != parent {
                    libc::_exit(EXIT_CANNOT_RUN as i32);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            let code = if e.kind() == io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_RUN
            };
            SpawnError {
                code,
                message: format!("error: cannot run {program:?}: {e}"),
            }
        })?;
        Ok(Child {
            pid: child.id(),
            child,
            status: None,
        })
    }

    /// CMD's exit status if it has exited; reaps it.
    pub(crate) fn poll(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Whether CMD has exited, without reaping it where the OS lets us look
    /// (Linux `/proc`): an unreaped leader keeps its group id from being
    /// reused, so a final SIGKILL to the group stays safe.
    fn exited_keep_group(&mut self) -> io::Result<bool> {
        if self.status.is_some() {
            return Ok(true);
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // The state letter follows the command name, which is in
            // parentheses and may itself contain ") ".
            Ok(stat) => match stat.rsplit_once(')') {
                Some((_, rest)) => Ok(matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
                None => Ok(self.poll()?.is_some()),
            },
            Err(_) => Ok(self.poll()?.is_some()),
        }
    }

    /// Sends `sig` to CMD's process group, if CMD is not yet reaped.
    pub(crate) fn signal(&mut self, sig: Sig) {
        if self.status.is_some() {
            return;
        }
        let group = format!("-{}", self.pid);
        let sent = Command::new("kill")
            .args(["-s", sig.name, "--", &group])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if sig == SIGKILL && !sent.is_ok_and(|s| s.success()) {
            // `kill` could not be run (or the group is gone): at least the
            // leader must die, and std can do that without a helper.
            let _ = self.child.kill();
        }
    }

    /// Waits until CMD exits, watching SIGCHLD and polling as a fallback.
    /// Returns early with the forwarded signal received meanwhile.
    pub(crate) async fn wait_or_signal(
        &mut self,
        signals: &mut Signals,
    ) -> io::Result<Result<ExitStatus, Sig>> {
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(st) = self.poll()? {
                return Ok(Ok(st));
            }
            let Signals { forwarded, child } = &mut *signals;
            tokio::select! {
                biased;
                _ = child_changed(child) => {}
                sig = forwarded.next() => return Ok(Err(sig)),
                // SIGCHLD is the fast path; this only bounds a missed one.
                _ = tokio::time::sleep(pause) => pause = (pause * 2).min(Duration::from_millis(500)),
            }
        }
    }

    /// Stops CMD because the lock is gone: SIGTERM to the group, SIGKILL to
    /// the group after `grace` (even when the leader exited, so its
    /// children go too), then reaps the leader. Bounded: a process that
    /// SIGKILL cannot end within 5 s (stuck in the kernel) is left behind
    /// and `None` is returned.
    pub(crate) async fn terminate(
        &mut self,
        grace: Duration,
        signals: &mut Signals,
    ) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + grace;
        if !grace.is_zero() {
            self.signal(SIGTERM);
        }
        while Instant::now() < deadline && !self.exited_keep_group()? {
            tokio::select! {
                _ = child_changed(&mut signals.child) => {}
                _ = tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_millis(10))) => {}
            }
        }
        self.signal(SIGKILL);
        let reap_by = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(st) = self.poll()? {
                return Ok(Some(st));
            }
            if Instant::now() >= reap_by {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The status to exit with for CMD's `status`: its code, or 128 + the
/// signal that ended it, as shells report it.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => (c & 0xff) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}
