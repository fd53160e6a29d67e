//! `shardkit lock`, `shardkit elect` and `shardkit leader`: run a command
//! while holding a lock or leadership on etcd, and show who leads.
//!
//! Every decision about leases, queues and tokens is core's; this module
//! connects, supervises the command, and turns outcomes into exit statuses.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use shardkit::lease::{
    parse_endpoints, validate_name, Coordinator, EventKind, FencingToken, LeaderInfo, ScopedLock,
    Session, SessionOptions, WaitOptions, Watch, ENDPOINTS_ENV,
};
use shardkit::{Error, ErrorKind};

use crate::child::{self, Child, Sig, Signals};

/// Other errors: the store could not be reached, a request failed.
pub(crate) const EXIT_ERROR: u8 = 1;
/// Invalid arguments (clap uses 2 for usage errors too).
pub(crate) const EXIT_USAGE: u8 = 2;
/// `leader`: the election has no leader.
pub(crate) const EXIT_NO_LEADER: u8 = 3;
/// The lock or leadership was not acquired (busy with --try, or --timeout
/// passed). EX_TEMPFAIL: try again later.
pub(crate) const EXIT_NOT_ACQUIRED: u8 = 75;
/// The lock or leadership was lost while CMD ran; CMD was stopped.
pub(crate) const EXIT_LOST: u8 = 76;

/// Environment variable CMD finds the fencing token (a revision) in.
pub(crate) const TOKEN_ENV: &str = "SHARDKIT_FENCING_TOKEN";
/// Environment variable with the session's lease id, in hex.
pub(crate) const LEASE_ENV: &str = "SHARDKIT_LEASE_ID";
/// Environment variable with the lock's name (`lock`).
pub(crate) const LOCK_NAME_ENV: &str = "SHARDKIT_LOCK_NAME";
/// Environment variable with the election's name (`elect`).
pub(crate) const ELECTION_NAME_ENV: &str = "SHARDKIT_ELECTION_NAME";

const LOCK_HELP: &str = "\
CMD runs in its own process group with SHARDKIT_FENCING_TOKEN (the lock's
revision: an integer that grows with every acquire, for external stores to
compare), SHARDKIT_LOCK_NAME and SHARDKIT_LEASE_ID (hex) in its environment.
The lock is released when CMD exits. HUP, INT, QUIT and TERM sent to shardkit
are passed on to CMD's process group. Being its own group, CMD cannot read from
the terminal: give it input from a file or a pipe.

If the lock is lost while CMD runs (no keepalive acknowledged in time, or the
lock's key deleted), the whole group gets SIGTERM and then SIGKILL after
min(--grace, margin/2), so it is dead before the server frees the lock for
another holder. If shardkit itself is killed (kill -9), the kernel kills CMD
with it (SIGKILL); processes CMD started in turn are not reached, so a shell
CMD should `exec` its worker. A shardkit that is stopped (SIGSTOP, Ctrl-Z)
cannot supervise: CMD runs on unsupervised until shardkit resumes.

Exit status:
  CMD's status  CMD finished while the lock was held (128+N: signal N ended it)
  75            lock not acquired: held elsewhere (--try) or --timeout passed
  76            lock lost while CMD ran; CMD was stopped
  126, 127      CMD could not be run / was not found
  128+N         shardkit got signal N before CMD started
  2             invalid arguments (no endpoints, bad name, TTL, endpoint list)
  1             other errors (store unreachable, request failed)";

const ELECT_HELP: &str = "\
CMD runs in its own process group once this candidate leads, with
SHARDKIT_FENCING_TOKEN (the leadership's revision), SHARDKIT_ELECTION_NAME and
SHARDKIT_LEASE_ID (hex) in its environment. Leadership is resigned when CMD
exits. HUP, INT, QUIT and TERM sent to shardkit are passed on to CMD's group.
If leadership is lost while CMD runs, CMD's group gets SIGTERM, then SIGKILL
after min(--grace, margin/2).

Exit status:
  CMD's status  CMD finished while leading (128+N: signal N ended it)
  75            not leader within --timeout
  76            leadership lost while CMD ran; CMD was stopped
  126, 127      CMD could not be run / was not found
  128+N         shardkit got signal N before CMD started
  2             invalid arguments (no endpoints, bad name, TTL, endpoint list)
  1             other errors (store unreachable, request failed)";

const LEADER_HELP: &str = "\
Prints VALUE<TAB>REVISION<TAB>LEASE (lease in hex), or \"no leader\"; with
--json one object per line: {\"name\":..., \"leader\": null | {\"value\":...,
\"revision\":..., \"lease\":...}}.

Exit status:
  0   a leader was printed (--watch: stopped by INT or TERM)
  3   no leader (without --watch)
  2   invalid arguments (no endpoints, bad name, endpoint list)
  1   other errors (store unreachable, watch failed)";

/// Where the store is.
#[derive(clap::Args, Debug)]
pub(crate) struct StoreArgs {
    /// etcd endpoints, comma-separated host:port or http://host:port [default: $SHARDKIT_ENDPOINTS].
    #[arg(long, value_name = "LIST")]
    endpoints: Option<String>,
    /// Give up connecting after this long.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = positive_secs)]
    connect_timeout: Duration,
}

/// The session a lock or leadership is held under.
#[derive(clap::Args, Debug)]
pub(crate) struct SessionArgs {
    /// Lease TTL in whole seconds: how long the lock outlives a crashed shardkit.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    ttl: u64,
    /// How long before the TTL a session without acknowledged keepalives gives up [default: TTL/5, 0.2 to 3 s].
    #[arg(long, value_name = "SECONDS", value_parser = positive_secs)]
    margin: Option<Duration>,
    /// Time CMD gets between SIGTERM and SIGKILL when the lock is lost; at most half the margin is used.
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = secs)]
    grace: Duration,
    /// Wait at most this long to acquire (exit 75 when it passes) [default: wait forever].
    #[arg(long, value_name = "SECONDS", value_parser = positive_secs)]
    timeout: Option<Duration>,
}

/// `shardkit lock`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = LOCK_HELP,
    override_usage = "shardkit lock [OPTIONS] <NAME> [--] <CMD>..."
)]
pub(crate) struct LockArgs {
    /// The lock's name.
    #[arg(value_name = "NAME")]
    name: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    session: SessionArgs,
    /// Do not wait: exit 75 at once when the lock is held.
    #[arg(long = "try", conflicts_with = "timeout")]
    try_only: bool,
    /// The command to run, with its arguments (after `--` when they start with `-`).
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

/// `shardkit elect`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = ELECT_HELP,
    override_usage = "shardkit elect [OPTIONS] <NAME> [--] <CMD>..."
)]
pub(crate) struct ElectArgs {
    /// The election's name.
    #[arg(value_name = "NAME")]
    name: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    session: SessionArgs,
    /// The value to proclaim while leading (what `shardkit leader` prints) [default: HOSTNAME:PID].
    #[arg(long, value_name = "TEXT")]
    value: Option<String>,
    /// The command to run, with its arguments (after `--` when they start with `-`).
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true)]
    command: Vec<OsString>,
}

/// `shardkit leader`.
#[derive(clap::Args, Debug)]
#[command(after_help = LEADER_HELP)]
pub(crate) struct LeaderArgs {
    /// The election's name.
    #[arg(value_name = "NAME")]
    name: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Keep printing each change (including "no leader") until interrupted.
    #[arg(long)]
    watch: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

fn secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?}: seconds must be a finite number >= 0"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("{s:?}: {e}"))
}

fn positive_secs(s: &str) -> Result<Duration, String> {
    let d = secs(s)?;
    if d.is_zero() {
        return Err(format!("{s:?}: must be more than 0 seconds"));
    }
    Ok(d)
}

/// Why a command ends other than with CMD's own status: the exit status and
/// the one line printed on stderr.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    fn interrupted(sig: Sig, when: &str) -> Failure {
        Failure::new(
            128 + sig.number as u8,
            format!("interrupted by SIG{} {when}", sig.name),
        )
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = if e.kind() == ErrorKind::InvalidArgument {
            EXIT_USAGE
        } else {
            EXIT_ERROR
        };
        Failure::new(code, format!("error: {e}"))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::new(EXIT_ERROR, format!("error: {e}"))
    }
}

type Outcome = Result<u8, Failure>;

/// Runs `fut` on the process's shared runtime and turns its outcome into
/// the exit status, printing the reason for a failure.
fn finish(fut: impl std::future::Future<Output = Outcome>) -> ExitCode {
    let outcome = match shardkit::runtime::block_on(fut) {
        Ok(o) => o,
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            // An empty message is a quiet end (the output pipe closed).
            if !f.message.is_empty() {
                eprintln!("shardkit: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

/// The rules core applies to names, checked before any connection is made
/// so a typo costs no round trip.
/// Core's name rules, checked before connecting so a bad name is a usage
/// error (exit 2) rather than a store error.
fn check_name(what: &str, name: &str) -> Result<(), Failure> {
    validate_name(what, name)
        .map_err(|e| Failure::new(EXIT_USAGE, format!("error: {}", e.message())))
}

impl StoreArgs {
    /// The endpoint list from --endpoints or the environment. The embedded
    /// store is refused: it lives inside this one process, so a lock or
    /// election on it could never be seen by anyone else.
    fn endpoints(&self, command: &str) -> Result<Vec<String>, Failure> {
        let env = match std::env::var_os(ENDPOINTS_ENV) {
            Some(v) => match v.into_string() {
                Ok(s) => Some(s).filter(|s| !s.trim().is_empty()),
                Err(v) => {
                    return Err(Failure::new(
                        EXIT_USAGE,
                        format!("error: {ENDPOINTS_ENV}={v:?} is not valid Unicode"),
                    ))
                }
            },
            None => None,
        };
        let Some(list) = self.endpoints.clone().or(env) else {
            return Err(Failure::new(
                EXIT_USAGE,
                format!(
                    "error: `shardkit {command}` needs etcd endpoints: pass --endpoints HOST:PORT[,...] \
                     or set {ENDPOINTS_ENV} (an embedded store would live only inside this process, \
                     so no other process could see it)"
                ),
            ));
        };
        Ok(parse_endpoints(&list)?)
    }

    async fn connect(
        &self,
        list: &[String],
        signals: &mut Signals,
    ) -> Result<Coordinator, Failure> {
        tokio::select! {
            r = Coordinator::connect_list(list, self.connect_timeout) => Ok(r?),
            sig = signals.next() => Err(Failure::interrupted(sig, "while connecting")),
        }
    }
}

impl SessionArgs {
    fn options(&self) -> SessionOptions {
        SessionOptions {
            ttl: Duration::from_secs(self.ttl),
            margin: self.margin,
            ..SessionOptions::default()
        }
    }

    async fn session(
        &self,
        coord: &Coordinator,
        signals: &mut Signals,
    ) -> Result<Session, Failure> {
        tokio::select! {
            r = coord.session(self.options()) => Ok(r?),
            sig = signals.next() => Err(Failure::interrupted(sig, "while starting a session")),
        }
    }

    fn wait_options(&self) -> WaitOptions {
        WaitOptions {
            timeout: self.timeout,
            cancel: None,
        }
    }
}

/// `shardkit lock NAME -- CMD...`: core's [`ScopedLock`], a lease of its own
/// for the one hold, with CMD run while it lasts.
pub(crate) fn lock(args: LockArgs) -> ExitCode {
    finish(async move {
        check_name("lock", &args.name)?;
        let list = args.store.endpoints("lock")?;
        let mut signals = Signals::catch()?;
        let coord = args.store.connect(&list, &mut signals).await?;
        let scoped = coord.scoped_lock(&args.name, args.session.options())?;
        let outcome = lock_held(&args, &coord, &scoped, &mut signals).await;
        if let Some(session) = scoped.session() {
            if let Err(e) = scoped.release().await {
                warn_unreleased(&session, &format!("lock {:?}", args.name), &e, &outcome);
            }
        }
        outcome
    })
}

async fn lock_held(
    args: &LockArgs,
    coord: &Coordinator,
    scoped: &ScopedLock,
    signals: &mut Signals,
) -> Outcome {
    let name = &args.name;
    let wait = args.session.wait_options();
    let acquired = tokio::select! {
        r = async {
            if args.try_only {
                scoped.try_acquire().await
            } else {
                scoped.acquire(&wait).await.map(Some)
            }
        } => r,
        sig = signals.next() => {
            return Err(Failure::interrupted(sig, &format!("while waiting for lock {name:?}")));
        }
    };
    let token = match acquired {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(Failure::new(
                EXIT_NOT_ACQUIRED,
                format!("lock {name:?} is held by another holder; not waiting (--try)"),
            ))
        }
        Err(e) if e.kind() == ErrorKind::Timeout => {
            return Err(Failure::new(EXIT_NOT_ACQUIRED, e.message().to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let session = scoped
        .session()
        .ok_or_else(|| Failure::new(EXIT_ERROR, format!("lock {name:?} was released at once")))?;
    let env = [
        (TOKEN_ENV, token.value().to_string()),
        (LOCK_NAME_ENV, name.clone()),
        (LEASE_ENV, format!("{:016x}", session.lease_id())),
    ];
    let what = format!("lock {name:?}");
    run_held(
        coord,
        &session,
        &token,
        &what,
        &args.command,
        &env,
        args.session.grace,
        signals,
    )
    .await
}

/// `shardkit elect NAME -- CMD...`.
pub(crate) fn elect(args: ElectArgs) -> ExitCode {
    finish(async move {
        check_name("election", &args.name)?;
        let list = args.store.endpoints("elect")?;
        let mut signals = Signals::catch()?;
        let coord = args.store.connect(&list, &mut signals).await?;
        let session = args.session.session(&coord, &mut signals).await?;
        let election = session.election(&args.name)?;
        let outcome = elect_held(&args, &coord, &session, &election, &mut signals).await;
        if election.token().is_some() {
            // Resign first so watchers see the leader step down at once;
            // closing the session below would remove the key anyway.
            let _ = election.resign().await;
        }
        release(
            &session,
            &format!("leadership of {:?}", args.name),
            &outcome,
        )
        .await;
        outcome
    })
}

async fn elect_held(
    args: &ElectArgs,
    coord: &Coordinator,
    session: &Session,
    election: &shardkit::lease::Election,
    signals: &mut Signals,
) -> Outcome {
    let name = &args.name;
    let value = args.value.clone().unwrap_or_else(default_value);
    let wait = args.session.wait_options();
    let won = tokio::select! {
        r = election.campaign_with(value.as_bytes(), &wait) => r,
        sig = signals.next() => {
            return Err(Failure::interrupted(sig, &format!("while campaigning in election {name:?}")));
        }
    };
    let token = match won {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::Timeout => {
            return Err(Failure::new(EXIT_NOT_ACQUIRED, e.message().to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let env = [
        (TOKEN_ENV, token.value().to_string()),
        (ELECTION_NAME_ENV, name.clone()),
        (LEASE_ENV, format!("{:016x}", session.lease_id())),
    ];
    let what = format!("leadership of election {name:?}");
    run_held(
        coord,
        session,
        &token,
        &what,
        &args.command,
        &env,
        args.session.grace,
        signals,
    )
    .await
}

/// `HOSTNAME:PID`: enough for an operator to find the leader.
fn default_value() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// Runs CMD while `token` is held, and stops it if the hold ends first.
#[allow(clippy::too_many_arguments)]
async fn run_held(
    coord: &Coordinator,
    session: &Session,
    token: &FencingToken,
    what: &str,
    argv: &[OsString],
    env: &[(&str, String)],
    grace: Duration,
    signals: &mut Signals,
) -> Outcome {
    // The session notices a lease that stops being renewed; this watch
    // notices the key itself going (an operator deleting it), which no
    // keepalive would show. Best effort: without it the session still
    // guards the hold.
    let mut key_watch = coord
        .watch(&token.key, false, token.revision + 1)
        .await
        .ok();
    let mut child = Child::spawn(argv, env).map_err(|e| Failure::new(e.code, e.message))?;
    let reason = loop {
        tokio::select! {
            biased;
            e = session.lost() => break e.message().to_string(),
            () = key_deleted(&mut key_watch) => break "its key was deleted".to_string(),
            r = child.wait_or_signal(signals) => match r? {
                Ok(status) => {
                    return match session.check() {
                        Ok(()) => Ok(child::exit_code(status)),
                        Err(e) => Err(Failure::new(
                            EXIT_LOST,
                            format!(
                                "{what} was lost by the time CMD exited ({status}): {}",
                                e.message()
                            ),
                        )),
                    };
                }
                Err(sig) => child.signal(sig),
            },
        }
    };
    // The lost notice comes a margin before the server can free the lock:
    // CMD must be gone within that margin, SIGKILL included.
    let grace = grace.min(session.margin() / 2);
    let ended = match child.terminate(grace, signals).await? {
        Some(status) => format!("CMD was stopped ({status})"),
        None => "CMD did not die within 5 s of SIGKILL".to_string(),
    };
    Err(Failure::new(
        EXIT_LOST,
        format!("{what} lost while CMD ran ({reason}); {ended}"),
    ))
}

/// Resolves when the watched key is deleted; never when there is no watch
/// (or it failed, which drops it).
async fn key_deleted(watch: &mut Option<Watch>) {
    loop {
        let Some(w) = watch.as_mut() else {
            return std::future::pending().await;
        };
        match w.next().await {
            Some(Ok(events)) => {
                if events.iter().any(|e| e.kind == EventKind::Delete) {
                    return;
                }
            }
            Some(Err(_)) | None => *watch = None,
        }
    }
}

/// Ends the session (revoking the lease frees the lock or leadership at
/// once). A failure is only a warning: the lease then expires within its
/// TTL, and CMD's own status is still the right one to report.
async fn release(session: &Session, what: &str, outcome: &Outcome) {
    if let Err(e) = session.close().await {
        warn_unreleased(session, what, &e, outcome);
    }
}

fn warn_unreleased(session: &Session, what: &str, e: &Error, outcome: &Outcome) {
    // After a loss the lease is gone already; no news for anyone.
    let lost = matches!(outcome, Err(f) if f.code == EXIT_LOST);
    if !lost {
        eprintln!(
            "shardkit: warning: could not release {what}: {e}; it frees itself when lease {:016x} expires (within {} s)",
            session.lease_id(),
            session.ttl().as_secs()
        );
    }
}

/// `shardkit leader NAME`.
pub(crate) fn leader(args: LeaderArgs) -> ExitCode {
    finish(async move {
        check_name("election", &args.name)?;
        let list = args.store.endpoints("leader")?;
        let mut signals = Signals::catch()?;
        let coord = args.store.connect(&list, &mut signals).await?;
        let out = std::io::stdout();
        if !args.watch {
            let current = tokio::select! {
                r = coord.leader(&args.name) => r?,
                sig = signals.next() => return Err(Failure::interrupted(sig, "while reading the leader")),
            };
            let code = if current.is_some() { 0 } else { EXIT_NO_LEADER };
            return print_leader(&mut out.lock(), &args, current.as_ref()).map(|()| code);
        }
        let mut observer = coord.observe(&args.name)?;
        loop {
            let current = tokio::select! {
                r = observer.next() => r?,
                // Stopping a watch is its normal end.
                _ = signals.next() => return Ok(0),
            };
            print_leader(&mut out.lock(), &args, current.as_ref())?;
        }
    })
}

fn print_leader(
    out: &mut impl Write,
    args: &LeaderArgs,
    leader: Option<&LeaderInfo>,
) -> Result<(), Failure> {
    let written = if args.json {
        let leader = leader.map(|l| {
            serde_json::json!({
                "value": String::from_utf8_lossy(&l.value),
                "revision": l.revision,
                "lease": format!("{:016x}", l.lease),
            })
        });
        let line = serde_json::json!({ "name": args.name, "leader": leader });
        writeln!(out, "{line}")
    } else {
        match leader {
            Some(l) => out
                .write_all(&l.value)
                .and_then(|()| writeln!(out, "\t{}\t{:016x}", l.revision, l.lease)),
            None => writeln!(out, "no leader"),
        }
    };
    // Each line is flushed so a pipe reader sees a change when it happens.
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // `shardkit leader --watch | head -1`: the reader is done.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::new(0, "")),
        Err(e) => Err(Failure::new(
            EXIT_ERROR,
            format!("error: writing output: {e}"),
        )),
    }
}
