//! `shardkit pipeline run`, `shardkit events publish` and `shardkit dlq` as
//! operators run them, on a real redis-server (append-only, fsync always)
//! with a real HTTP function: a worker killed with -9 mid-batch and the
//! Redis server killed and restarted lose no event; duplicates are counted;
//! a poison event is dead-lettered, listed, and redriven.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use shardkit_testkit::redis::start_durable_redis;
use shardkit_testkit::{free_addrs, signal, Proc, TempDir};
use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shardkit")
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The function: calls per event id; `poison` events fail (500) until
/// `cure` is set; `user.created` answers with a welcome event.
#[derive(Default)]
struct Function {
    calls: Mutex<HashMap<String, usize>>,
    cure: AtomicBool,
}

fn start_function(f: Arc<Function>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/fn",
                axum::routing::post(move |headers: HeaderMap, _body: Bytes| {
                    let f = f.clone();
                    async move {
                        let h = |n: &str| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        let (id, ty, key) = (h("ce-id"), h("ce-type"), h("ce-partitionkey"));
                        *f.calls.lock().unwrap().entry(id.clone()).or_default() += 1;
                        if ty == "poison" && !f.cure.load(Ordering::SeqCst) {
                            return (
                                StatusCode::INTERNAL_SERVER_ERROR,
                                HeaderMap::new(),
                                "cannot".to_string(),
                            );
                        }
                        let mut out = HeaderMap::new();
                        if ty == "user.created" {
                            out.insert("ce-specversion", "1.0".parse().unwrap());
                            out.insert("ce-id", format!("welcome-{id}").parse().unwrap());
                            out.insert("ce-source", "/fn".parse().unwrap());
                            out.insert("ce-type", "email.welcome".parse().unwrap());
                            out.insert("ce-partitionkey", key.parse().unwrap());
                            return (StatusCode::OK, out, String::new());
                        }
                        (StatusCode::NO_CONTENT, out, String::new())
                    }
                }),
            );
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (addr, t)
}

fn worker(dir: &TempDir, conf: &std::path::Path, name: &str) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.args([
        "pipeline",
        "run",
        "--consumer",
        name,
        "--drain-ms",
        "2000",
        "--config",
    ])
    .arg(conf);
    Proc::spawn(
        &format!("worker-{name}"),
        cmd,
        dir.join(&format!("worker-{name}.log")),
    )
}

fn shardkit(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(bin()).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn no_event_is_lost_to_a_killed_worker_or_a_restarted_redis() {
    let dir = TempDir::new("cli-pipeline");
    let addr = free_addrs(Ipv4Addr::LOCALHOST, 1)[0];
    let mut redis = Some(start_durable_redis(dir.path(), addr));
    let f = Arc::new(Function::default());
    let (faddr, _server) = start_function(f.clone());
    let conf = dir.join("pipeline.yml");
    std::fs::write(
        &conf,
        format!(
            "transport:\n  redis: redis://{addr}/\n  partitions: 4\nstages:\n  - name: signup\n    topic: users\n    function: http://{faddr}/fn\n    reply_topic: emails\n    max_attempts: 3\n    min_backoff: 10\n    max_backoff: 50\n    visibility: 1000\n    lease: 1000\n    timeout: 2000\n    concurrency: 8\n    idempotent: true\n"
        ),
    )
    .unwrap();
    let (ok, out, err) = shardkit(&["pipeline", "check", "--config", conf.to_str().unwrap()]);
    assert!(ok, "{out}{err}");

    // 300 signups over 30 keys, and one poison event, from stdin.
    let total = 300;
    let mut lines = String::new();
    for i in 0..total {
        lines.push_str(&format!(
            "{{\"specversion\":\"1.0\",\"id\":\"u{i}\",\"source\":\"/signup\",\"type\":\"user.created\",\"partitionkey\":\"user{}\",\"data\":{{\"n\":{i}}}}}\n",
            i % 30
        ));
    }
    lines.push_str(
        "{\"specversion\":\"1.0\",\"id\":\"bad-1\",\"source\":\"/signup\",\"type\":\"poison\"}\n",
    );
    let mut p = Command::new(bin())
        .args(["events", "publish", "--topic", "users", "--config"])
        .arg(&conf)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let seen = |f: &Function| {
        f.calls
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with('u'))
            .count()
    };
    // Worker A: killed with -9 mid-batch.
    let a = worker(&dir, &conf, "a");
    wait_for("worker a to handle some", Duration::from_secs(20), || {
        seen(&f) >= 60
    });
    signal(a.pid(), "-KILL");
    drop(a);
    // Redis: killed with -9 and started again on its append-only file.
    signal(redis.as_ref().unwrap().pid(), "-KILL");
    drop(redis.take());
    redis = Some(start_durable_redis(dir.path(), addr));
    // Worker B finds everything: A's unacknowledged events once their
    // visibility passes, and what nobody had read.
    let mut b = worker(&dir, &conf, "b");
    wait_for("every signup handled", Duration::from_secs(60), || {
        seen(&f) == total
    });
    let dlq_list = || {
        shardkit(&[
            "dlq",
            "list",
            "--topic",
            "users.dlq",
            "--config",
            conf.to_str().unwrap(),
        ])
    };
    wait_for(
        "the poison event dead-lettered",
        Duration::from_secs(20),
        || dlq_list().1.lines().count() == 1,
    );
    let (ok, out, err) = dlq_list();
    assert!(ok, "{err}");
    let cols: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(&cols[1..5], &["bad-1", "bad-1", "failed", "3"], "{out}");
    assert!(cols[5].contains("500"), "{out}");
    let (ok, out, _) = shardkit(&[
        "dlq",
        "show",
        "--topic",
        "users.dlq",
        "--config",
        conf.to_str().unwrap(),
        "bad-1",
    ]);
    assert!(ok && out.contains("\"dlqhistory\""), "{out}");
    let conf_s = conf.to_str().unwrap();
    let (ok, _, err) = shardkit(&[
        "dlq",
        "show",
        "--topic",
        "users.dlq",
        "--config",
        conf_s,
        "nope",
    ]);
    assert!(!ok && err.contains("\"nope\""), "{err}");
    let (ok, _, err) = shardkit(&[
        "dlq",
        "redrive",
        "--topic",
        "users.dlq",
        "--config",
        conf_s,
        "--id",
        "nope",
    ]);
    assert!(!ok && err.contains("\"nope\""), "{err}");

    // Redrive once the function is fixed: the event runs, the topic empties.
    f.cure.store(true, Ordering::SeqCst);
    let (ok, out, err) = shardkit(&[
        "dlq",
        "redrive",
        "--topic",
        "users.dlq",
        "--config",
        conf.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("redrove 1 events"), "{out}");
    wait_for(
        "the redriven event handled",
        Duration::from_secs(20),
        || f.calls.lock().unwrap().get("bad-1").copied().unwrap_or(0) >= 4,
    );
    assert_eq!(dlq_list().1, "");

    // Every welcome email was emitted (duplicates allowed: at-least-once).
    let (ok, emails, _) = shardkit(&[
        "dlq",
        "list",
        "--topic",
        "emails",
        "--config",
        conf.to_str().unwrap(),
    ]);
    assert!(ok);
    let welcomed: std::collections::HashSet<&str> = emails
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .collect();
    assert_eq!(welcomed.len(), total, "every signup's welcome event");

    // Duplicates: calls beyond one per event (A's killed batch).
    let calls: usize = f
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with('u'))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "function calls for {total} signups: {calls} ({} duplicates)",
        calls - total
    );

    // SIGTERM: drains and exits 0, with its counters.
    signal(b.pid(), "-TERM");
    let status = b
        .wait_exit(Duration::from_secs(10))
        .expect("worker b exits on SIGTERM");
    assert!(status.success(), "{status}: {}", b.log());
    let log = b.log();
    // The poison event was dead-lettered once (the list above held it
    // alone): by B, or by A before it was killed, when A reached it first.
    assert!(
        log.contains("1 dead-lettered") || log.contains("0 dead-lettered"),
        "{log}"
    );
    // B took over what A was working on when it died: redeliveries, which
    // the idempotency helper answered without calling the function again
    // where A had finished the call.
    let redelivered: u64 = log
        .lines()
        .find(|l| l.contains("redelivered"))
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counters in {log}"));
    eprintln!("worker b: {redelivered} redelivered from worker a");
    assert!(redelivered > 0, "{log}");
    drop(redis);
}

#[test]
fn a_bad_pipeline_file_is_named() {
    let dir = TempDir::new("cli-pipeline-bad");
    let conf = dir.join("bad.yml");
    std::fs::write(
        &conf,
        "transport:\n  redis: redis://127.0.0.1:1/\nstages:\n  - name: s\n    topic: t\n    function: http://127.0.0.1:1/\n    retries: 3\n",
    )
    .unwrap();
    let (ok, _, err) = shardkit(&["pipeline", "check", "--config", conf.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("retries") && err.contains("line 7"), "{err}");
    std::fs::write(
        &conf,
        "transport:\n  redis: redis://127.0.0.1:1/\nstages:\n  - name: s\n    topic: t\n    function: ftp://x/\n",
    )
    .unwrap();
    let (ok, _, err) = shardkit(&["pipeline", "check", "--config", conf.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("ftp://x/"), "{err}");
    // A bad event on the command line names its value.
    let (ok, _, err) = shardkit(&[
        "events",
        "publish",
        "--redis",
        "redis://127.0.0.1:1/",
        "--topic",
        "t",
        "--type",
        "x",
        "--data",
        "{nope",
    ]);
    assert!(!ok);
    assert!(err.contains("{nope"), "{err}");
}
