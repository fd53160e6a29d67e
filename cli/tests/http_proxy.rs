//! `shardkit http-proxy` as operators run it: backends from a file, SIGHUP
//! reloads it (a bad file refused, logged, the old list kept), the shard
//! header, bad flags named, a clean stop on SIGTERM.

use shardkit::config::nginx;
use shardkit_testkit::http::request;
use shardkit_testkit::{free_addrs, signal, Proc, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

/// A backend on its own thread: answers every request on a connection
/// with its address (so the test sees where a request went).
fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    // The request head, then nothing (GETs only here).
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let body = addr.to_string();
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    addr
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(proxy: SocketAddr, path: &str) -> String {
    let r = request(&proxy.to_string(), "GET", path, "", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.body
}

#[test]
fn sighup_reloads_the_upstream_file_and_a_bad_one_is_refused() {
    let dir = TempDir::new("cli-http-proxy");
    let bs: Vec<SocketAddr> = (0..3).map(|_| backend()).collect();
    let two = format!("server {};\nserver {};\n", bs[0], bs[1]);
    let three = format!("{two}server {} weight=2;\n", bs[2]);
    let file = dir.join("upstream.conf");
    std::fs::write(&file, &two).unwrap();
    let listen = free_addrs(Ipv4Addr::LOCALHOST, 1)[0];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardkit"));
    cmd.args([
        "http-proxy",
        "--listen",
        &listen.to_string(),
        "--threads",
        "2",
        "--upstream-file",
    ])
    .arg(&file);
    let mut proc = Proc::spawn("shardkit http-proxy", cmd, dir.join("proxy.log"));
    proc.wait_listening(&[listen], Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default()
    });
    let uris: Vec<String> = (0..200).map(|i| format!("/p/{i}")).collect();
    let ring = nginx::parse_upstream(&two).unwrap();
    for u in &uris {
        assert_eq!(get(listen, u), ring.lookup(u.as_bytes()).unwrap().name());
    }
    std::fs::write(&file, &three).unwrap();
    signal(proc.pid(), "-HUP");
    let log = || std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
    wait_for("the reload", || log().contains("reloaded"));
    let ring = nginx::parse_upstream(&three).unwrap();
    for u in &uris {
        assert_eq!(get(listen, u), ring.lookup(u.as_bytes()).unwrap().name());
    }
    std::fs::write(&file, format!("{three}server 127.0.0.1:1 weight=zero;\n")).unwrap();
    signal(proc.pid(), "-HUP");
    wait_for("the refusal", || log().contains("reload refused"));
    assert!(log().contains("weight=zero"), "{}", log());
    for u in &uris {
        assert_eq!(get(listen, u), ring.lookup(u.as_bytes()).unwrap().name());
    }
    signal(proc.pid(), "-TERM");
    wait_for("the stop", || log().contains("stopping"));
}

#[test]
fn bad_flags_are_named() {
    for (args, what) in [
        (vec!["--upstream", "127.0.0.1:1 weight=0"], "weight=0"),
        (
            vec!["--upstream", "127.0.0.1:1", "--algorithm", "ketamax"],
            "ketamax",
        ),
        (
            vec!["--upstream", "127.0.0.1:1", "--key", "header:"],
            "header:",
        ),
        (vec!["--upstream", "127.0.0.1:1", "--tries", "0"], "tries 0"),
        (
            vec!["--upstream", "127.0.0.1:1", "--connect-timeout=-1"],
            "--connect-timeout -1",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_shardkit"))
            .args(["http-proxy", "--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
}
