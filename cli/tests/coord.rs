//! `shardkit lock`, `elect` and `leader` end to end, as separate processes
//! against a real etcd: tokens in CMD's environment, exit statuses, mutual
//! exclusion across processes, a crashed holder, a paused holder, and every
//! bad-input path.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use shardkit_testkit::{etcd_binary, signal, EtcdCluster, TempDir};

/// One etcd for the tests that run at the same time; the last test to let
/// go of it stops it, so nothing outlives the test binary.
fn etcd() -> Option<Arc<EtcdCluster>> {
    static SHARED: Mutex<Weak<EtcdCluster>> = Mutex::new(Weak::new());
    if etcd_binary().is_none() {
        eprintln!("skipping: no etcd binary (install etcd or set SHARDKIT_ETCD_BIN)");
        return None;
    }
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = shared.upgrade() {
        return Some(c);
    }
    let c = Arc::new(EtcdCluster::single().expect("start etcd"));
    *shared = Arc::downgrade(&c);
    Some(c)
}

/// The binary, with the environment's endpoints cleared so only what a
/// test passes counts.
fn shardkit(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardkit"));
    c.args(args)
        .env_remove("SHARDKIT_ENDPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(args: &[&str]) -> Output {
    shardkit(args).output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls until `path` exists and is non-empty; panics after `limit`.
fn wait_file(path: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path} not written within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` at most `limit`, killing it (and failing) beyond.
fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "shardkit still running after {limit:?}; stderr: {}",
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process with this pid exists (zombies count as gone).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

#[test]
fn lock_runs_cmd_with_token_env_and_passes_its_status_on() {
    let Some(etcd) = etcd() else { return };
    let ep = etcd.member_endpoint(0);
    let o = run(&[
        "lock",
        "cli-env",
        "--endpoints",
        &ep,
        "--",
        "sh",
        "-c",
        "echo \"$SHARDKIT_FENCING_TOKEN $SHARDKIT_LOCK_NAME $SHARDKIT_LEASE_ID\"; exit 7",
    ]);
    assert_eq!(code(&o), 7, "stderr: {}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{out:?}");
    let token: i64 = fields[0].parse().unwrap();
    assert!(token > 0);
    assert_eq!(fields[1], "cli-env");
    assert_eq!(fields[2].len(), 16);
    assert!(i64::from_str_radix(fields[2], 16).is_ok(), "{out:?}");

    // Released on exit: --try gets it at once, with a newer token; the
    // endpoints may come from the environment too.
    let o = shardkit(&[
        "lock",
        "cli-env",
        "--try",
        "--",
        "sh",
        "-c",
        "echo $SHARDKIT_FENCING_TOKEN",
    ])
    .env("SHARDKIT_ENDPOINTS", &ep)
    .output()
    .unwrap();
    assert_eq!(code(&o), 0, "stderr: {}", stderr(&o));
    let next: i64 = String::from_utf8(o.stdout).unwrap().trim().parse().unwrap();
    assert!(next > token);

    // Death by a signal is reported as the shell does: 128 + N.
    let o = run(&[
        "lock",
        "cli-env",
        "--endpoints",
        &ep,
        "sh",
        "-c",
        "kill -9 $$",
    ]);
    assert_eq!(code(&o), 137, "stderr: {}", stderr(&o));

    let o = run(&[
        "lock",
        "cli-env",
        "--endpoints",
        &ep,
        "--",
        "/nonexistent/cmd",
    ]);
    assert_eq!(code(&o), 127);
    assert!(stderr(&o).contains("/nonexistent/cmd"), "{}", stderr(&o));
}

#[test]
fn two_processes_on_one_lock_take_turns_with_rising_tokens() {
    let Some(etcd) = etcd() else { return };
    let ep = etcd.member_endpoint(0);
    let dir = TempDir::new("serialize");
    let log = dir.file("log");
    let script = format!(
        "echo \"start $SHARDKIT_FENCING_TOKEN\" >> {log}; sleep 1; echo \"end $SHARDKIT_FENCING_TOKEN\" >> {log}"
    );
    let args = [
        "lock",
        "cli-turns",
        "--endpoints",
        &ep,
        "--ttl",
        "3",
        "--",
        "sh",
        "-c",
        &script,
    ];
    let first = shardkit(&args).spawn().unwrap();
    wait_file(&log, Duration::from_secs(10));
    let second = shardkit(&args).spawn().unwrap();
    let a = wait_output(first, Duration::from_secs(10));
    let b = wait_output(second, Duration::from_secs(10));
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert_eq!(code(&b), 0, "{}", stderr(&b));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<(&str, i64)> = text
        .lines()
        .map(|l| {
            let (what, tok) = l.split_once(' ').unwrap();
            (what, tok.parse().unwrap())
        })
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    // The second CMD started only after the first ended.
    assert_eq!(lines[0].0, "start");
    assert_eq!(lines[1], ("end", lines[0].1));
    assert_eq!(lines[2].0, "start");
    assert_eq!(lines[3], ("end", lines[2].1));
    assert!(lines[2].1 > lines[0].1, "{text}");
}

#[test]
fn busy_lock_try_and_timeout_exit_75_and_signals_reach_cmd() {
    let Some(etcd) = etcd() else { return };
    let ep = etcd.member_endpoint(0);
    let dir = TempDir::new("busy");
    let started = dir.file("started");
    let script = format!("echo up > {started}; exec sleep 30");
    let holder = shardkit(&[
        "lock",
        "cli-busy",
        "--endpoints",
        &ep,
        "--",
        "sh",
        "-c",
        &script,
    ])
    .spawn()
    .unwrap();
    wait_file(&started, Duration::from_secs(10));

    let t = Instant::now();
    let o = run(&[
        "lock",
        "cli-busy",
        "--endpoints",
        &ep,
        "--try",
        "--",
        "true",
    ]);
    assert_eq!(code(&o), 75, "{}", stderr(&o));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(stderr(&o).contains("cli-busy"), "{}", stderr(&o));

    let t = Instant::now();
    let o = run(&[
        "lock",
        "cli-busy",
        "--endpoints",
        &ep,
        "--timeout",
        "0.5",
        "--",
        "true",
    ]);
    let took = t.elapsed();
    assert_eq!(code(&o), 75, "{}", stderr(&o));
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(stderr(&o).contains("500 ms"), "{}", stderr(&o));

    // SIGTERM to shardkit is passed on: CMD dies of it, and shardkit
    // reports that as CMD's status.
    signal(holder.id(), "-TERM");
    let o = wait_output(holder, Duration::from_secs(5));
    assert_eq!(code(&o), 128 + 15, "{}", stderr(&o));
    let o = run(&[
        "lock",
        "cli-busy",
        "--endpoints",
        &ep,
        "--try",
        "--",
        "true",
    ]);
    assert_eq!(code(&o), 0, "released after CMD died: {}", stderr(&o));
}

#[test]
fn a_killed_holder_frees_the_lock_within_ttl() {
    let Some(etcd) = etcd() else { return };
    let ep = etcd.member_endpoint(0);
    let dir = TempDir::new("kill9");
    let pidfile = dir.file("pid");
    let second_ran = dir.file("second");
    let holder_script = format!("echo $$ > {pidfile}; exec sleep 30");
    let mut holder = shardkit(&[
        "lock",
        "cli-kill",
        "--endpoints",
        &ep,
        "--ttl",
        "2",
        "--",
        "sh",
        "-c",
        &holder_script,
    ])
    .spawn()
    .unwrap();
    let cmd_pid: u32 = wait_file(&pidfile, Duration::from_secs(10))
        .trim()
        .parse()
        .unwrap();
    let contender = shardkit(&[
        "lock",
        "cli-kill",
        "--endpoints",
        &ep,
        "--ttl",
        "2",
        "--",
        "sh",
        "-c",
        &format!("echo ran > {second_ran}"),
    ])
    .spawn()
    .unwrap();
    // Let the contender queue up behind the holder.
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    holder.kill().unwrap();
    holder.wait().unwrap();
    // CMD dies with its shardkit (the kernel's parent-death signal), long
    // before the lock can pass on.
    let until = Instant::now() + Duration::from_secs(2);
    while alive(cmd_pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !alive(cmd_pid),
        "CMD {cmd_pid} outlived its kill -9'd shardkit"
    );
    wait_file(&second_ran, Duration::from_secs(10));
    let took = killed.elapsed();
    // The lease outlives its holder by up to the TTL, never much longer.
    assert!(
        took < Duration::from_secs(3),
        "acquired {took:?} after kill -9"
    );
    // And by at least the part of the TTL since its last renewal (every
    // TTL/3): the lock was not free before the lease expired.
    assert!(
        took > Duration::from_secs(1),
        "acquired {took:?} after kill -9"
    );
    let o = wait_output(contender, Duration::from_secs(5));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Belt and braces: never leave a stray process behind a failed run.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{cmd_pid}")])
        .status();
}

#[test]
fn a_paused_holder_stops_cmd_and_exits_76() {
    let Some(etcd) = etcd() else { return };
    let ep = etcd.member_endpoint(0);
    let dir = TempDir::new("pause");
    let pidfile = dir.file("pid");
    let log = dir.file("log");
    // A CMD with a child of its own: the whole group must go.
    let script = format!(
        "trap 'echo term >> {log}; exit 3' TERM; sleep 30 & echo \"$$ $!\" > {pidfile}; wait"
    );
    let holder = shardkit(&[
        "lock",
        "cli-pause",
        "--endpoints",
        &ep,
        "--ttl",
        "2",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .spawn()
    .unwrap();
    let pids = wait_file(&pidfile, Duration::from_secs(10));
    let pids: Vec<u32> = pids
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    signal(holder.id(), "-STOP");
    // While the holder sleeps its lease runs out and the lock passes on.
    let o = run(&[
        "lock",
        "cli-pause",
        "--endpoints",
        &ep,
        "--timeout",
        "5",
        "--",
        "true",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let t = Instant::now();
    signal(holder.id(), "-CONT");
    let o = wait_output(holder, Duration::from_secs(5));
    assert_eq!(code(&o), 76, "{}", stderr(&o));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(stderr(&o).contains("lost"), "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("term"),
        "CMD got no SIGTERM"
    );
    for pid in pids {
        assert!(!alive(pid), "process {pid} of CMD's group survived");
    }
}

/// Lines of a running `shardkit leader --watch`, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn next_line(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("leader --watch printed nothing within 10 s")
}

#[test]
fn elect_and_leader_watch_follow_the_leadership() {
    let Some(etcd) = etcd() else { return };
    let ep = etcd.member_endpoint(0);
    let dir = TempDir::new("elect");
    let o = run(&["leader", "cli-el", "--endpoints", &ep]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "no leader\n");

    let mut watcher = shardkit(&["leader", "cli-el", "--endpoints", &ep, "--watch"])
        .spawn()
        .unwrap();
    let lines = lines_of(&mut watcher);
    assert_eq!(next_line(&lines), "no leader");

    let alpha_tok = dir.file("alpha");
    let beta_tok = dir.file("beta");
    let elect = |value: &str, file: &str, hold: &str| {
        shardkit(&[
            "elect",
            "cli-el",
            "--endpoints",
            &ep,
            "--ttl",
            "3",
            "--value",
            value,
            "--",
            "sh",
            "-c",
            &format!("echo $SHARDKIT_FENCING_TOKEN $SHARDKIT_ELECTION_NAME > {file}; sleep {hold}"),
        ])
        .spawn()
        .unwrap()
    };
    let alpha = elect("alpha", &alpha_tok, "1");
    let line = next_line(&lines);
    let a_tok = wait_file(&alpha_tok, Duration::from_secs(10));
    let a_rev: i64 = a_tok.split_whitespace().next().unwrap().parse().unwrap();
    assert!(a_tok.ends_with(" cli-el\n"), "{a_tok:?}");
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(
        fields[..2],
        ["alpha", a_rev.to_string().as_str()],
        "{line:?}"
    );

    // While alpha leads, the one-shot form agrees, in JSON too.
    let o = run(&["leader", "cli-el", "--endpoints", &ep, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["name"], "cli-el");
    assert_eq!(v["leader"]["value"], "alpha");
    assert_eq!(v["leader"]["revision"], a_rev);

    // Beta queues behind alpha and leads when alpha resigns.
    let beta = elect("beta", &beta_tok, "0.5");
    let o = wait_output(alpha, Duration::from_secs(10));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let line = next_line(&lines);
    assert!(line.starts_with("beta\t"), "{line:?}");
    let o = wait_output(beta, Duration::from_secs(10));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let b_rev: i64 = wait_file(&beta_tok, Duration::from_secs(1))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(b_rev > a_rev);
    assert_eq!(next_line(&lines), "no leader");

    let o = run(&["leader", "cli-el", "--endpoints", &ep, "--json"]);
    assert_eq!(code(&o), 3);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["leader"].is_null(), "{v}");

    // Interrupting a watch is its normal end.
    signal(watcher.id(), "-INT");
    let o = wait_output(watcher, Duration::from_secs(5));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn bad_input_is_refused_clearly() {
    // Checked before any connection: no etcd needed.
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["lock", "", "--endpoints", "127.0.0.1:1", "--", "true"],
            2,
            "name is empty",
        ),
        (
            &["elect", "", "--endpoints", "127.0.0.1:1", "--", "true"],
            2,
            "name is empty",
        ),
        (
            &["leader", "", "--endpoints", "127.0.0.1:1"],
            2,
            "name is empty",
        ),
        (
            &["lock", "a\nb", "--endpoints", "127.0.0.1:1", "true"],
            2,
            "control characters",
        ),
        (&["lock", "x", "--", "true"], 2, "needs etcd endpoints"),
        (&["elect", "x", "--", "true"], 2, "needs etcd endpoints"),
        (&["leader", "x"], 2, "needs etcd endpoints"),
        (
            &["lock", "x", "--endpoints", "nonsense", "--", "true"],
            2,
            "\"nonsense\"",
        ),
        (
            &["lock", "x", "--endpoints", "h:0", "--", "true"],
            2,
            "invalid port",
        ),
        (
            &["lock", "x", "--endpoints", "https://h:1", "--", "true"],
            2,
            "TLS",
        ),
        (
            &[
                "lock",
                "x",
                "--endpoints",
                "h:1",
                "--try",
                "--timeout",
                "1",
                "true",
            ],
            2,
            "--timeout",
        ),
        (
            &["lock", "x", "--endpoints", "h:1", "--timeout=-1", "true"],
            2,
            "\"-1\"",
        ),
        (
            &["lock", "x", "--endpoints", "h:1", "--timeout", "0", "true"],
            2,
            "more than 0",
        ),
        (
            &["lock", "x", "--endpoints", "h:1", "--grace", "soon", "true"],
            2,
            "\"soon\"",
        ),
        (
            &["lock", "x", "--endpoints", "h:1", "--ttl", "-3", "true"],
            2,
            "-3",
        ),
        (&["lock", "x", "--endpoints", "h:1"], 2, "<CMD>"),
    ];
    for (args, want, needle) in cases {
        let o = run(args);
        let err = stderr(&o);
        assert_eq!(code(&o), *want, "{args:?}: {err}");
        assert!(err.starts_with("shardkit: "), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
}

#[test]
fn bad_ttl_is_refused_by_the_server_check() {
    let Some(etcd) = etcd() else { return };
    let ep = etcd.member_endpoint(0);
    let o = run(&[
        "lock",
        "cli-ttl",
        "--endpoints",
        &ep,
        "--ttl",
        "0",
        "--",
        "true",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("ttl"), "{}", stderr(&o));
    let o = run(&[
        "elect",
        "cli-ttl",
        "--endpoints",
        &ep,
        "--ttl",
        "2",
        "--margin",
        "1.5",
        "--",
        "true",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("margin"), "{}", stderr(&o));
}

#[test]
fn unreachable_endpoints_fail_within_the_connect_timeout() {
    // A listener that never answers: connecting hangs rather than being
    // refused, so only the timeout can end it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    for args in [
        vec![
            "lock",
            "x",
            "--endpoints",
            &ep,
            "--connect-timeout",
            "1",
            "--",
            "true",
        ],
        vec!["leader", "x", "--endpoints", &ep, "--connect-timeout", "1"],
    ] {
        let t = Instant::now();
        let o = run(&args);
        let took = t.elapsed();
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        assert!(took < Duration::from_secs(2), "{args:?} took {took:?}");
        assert!(stderr(&o).contains(&ep), "{args:?}: {}", stderr(&o));
    }
    drop(silent);
}
