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
                    // One write: split ones meet Nagle and delayed ACKs
                    // (40 ms a response once the connection is warm).
                    let body = addr.to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = w.write_all(resp.as_bytes());
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

#[test]
fn backends_registered_in_etcd_join_and_a_crashed_one_leaves_within_its_ttl() {
    if shardkit_testkit::etcd_binary().is_none() {
        eprintln!("skipping: no etcd binary");
        return;
    }
    let etcd = shardkit_testkit::EtcdCluster::single().expect("start etcd");
    let endpoints = etcd.endpoints().join(",");
    let dir = TempDir::new("cli-http-etcd");
    let bs: Vec<SocketAddr> = (0..3).map(|_| backend()).collect();
    let group = format!("shop{}", std::process::id());
    let log = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let mut regs: Vec<Option<Proc>> = Vec::new();
    for (i, b) in bs.iter().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardkit"));
        cmd.args([
            "http-register",
            "--endpoints",
            &endpoints,
            "--group",
            &group,
            "--ttl",
            "2",
        ])
        .args(["--server", &b.to_string()]);
        let name = format!("reg{i}.log");
        regs.push(Some(Proc::spawn(
            "shardkit http-register",
            cmd,
            dir.join(&name),
        )));
        wait_for("registration", || log(&name).contains("registered"));
    }
    let listen = free_addrs(Ipv4Addr::LOCALHOST, 1)[0];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardkit"));
    cmd.args([
        "http-proxy",
        "--listen",
        &listen.to_string(),
        "--threads",
        "2",
    ])
    .args(["--group", &group, "--endpoints", &endpoints]);
    let mut proxy = Proc::spawn("shardkit http-proxy", cmd, dir.join("proxy.log"));
    proxy.wait_listening(&[listen], Duration::from_secs(10), || log("proxy.log"));
    let uris: Vec<String> = (0..150).map(|i| format!("/g/{i}")).collect();
    let placed_as = |members: &[SocketAddr]| {
        let mut names: Vec<String> = members.iter().map(|a| a.to_string()).collect();
        names.sort();
        let ring = nginx::parse_upstream(&names.join(", ")).unwrap();
        uris.iter()
            .all(|u| get(listen, u) == ring.lookup(u.as_bytes()).unwrap().name())
    };
    assert!(placed_as(&bs), "{}", log("proxy.log"));
    // kill -9 of a registrant: its key outlives it by the TTL, no more.
    let t0 = Instant::now();
    signal(regs[1].as_ref().unwrap().pid(), "-KILL");
    regs[1] = None;
    wait_for("the crashed backend to leave", || {
        placed_as(&[bs[0], bs[2]])
    });
    let left = t0.elapsed();
    assert!(left < Duration::from_secs(2 + 3), "left after {left:?}");
    // A clean stop deregisters at once.
    let t0 = Instant::now();
    signal(regs[2].as_ref().unwrap().pid(), "-TERM");
    wait_for("the stopped backend to leave", || placed_as(&[bs[0]]));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    eprintln!("etcd membership: a crashed backend left after {left:?} (ttl 2 s)");
    signal(proxy.pid(), "-TERM");
    wait_for("the stop", || log("proxy.log").contains("stopping"));
    // Bad registrations are named, and nothing is registered.
    for (args, what) in [
        (
            vec!["--group", "", "--server", "127.0.0.1:1"],
            "group name is empty",
        ),
        (
            vec!["--group", "shop", "--server", "127.0.0.1:1 weight=0"],
            "weight=0",
        ),
        (
            vec!["--group", "shop", "--server", "127.0.0.1:1, 127.0.0.1:2"],
            "expected one server, got 2",
        ),
        (
            vec!["--group", "shop", "--server", "127.0.0.1:1", "--ttl", "0"],
            "ttl 0s",
        ),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_shardkit"))
            .args(["http-register", "--endpoints", &endpoints])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
    // A group nobody registered in is named.
    let o = Command::new(env!("CARGO_BIN_EXE_shardkit"))
        .args([
            "http-proxy",
            "--listen",
            "127.0.0.1:0",
            "--group",
            "nobody",
            "--endpoints",
            &endpoints,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"nobody\"") && err.contains("no backends"),
        "{err}"
    );
}
