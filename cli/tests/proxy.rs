//! `shardkit proxy` as operators run it: nutcracker's flags, SIGHUP reload
//! (a bad file refused, logged, the old config kept), the stats and metrics
//! addresses, a clean stop on SIGTERM. Over real memcached.

use shardkit_testkit::memcached::start_memcached_tcp;
use shardkit_testkit::wire::Raw;
use shardkit_testkit::{free_addrs, signal, Proc, TempDir};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

fn lo(n: usize) -> Vec<SocketAddr> {
    free_addrs(Ipv4Addr::LOCALHOST, n)
}

fn yaml(listen: SocketAddr, servers: &[SocketAddr], extra: &str) -> String {
    format!(
        "cache:\n  listen: {listen}\n{extra}  servers:\n{}",
        servers
            .iter()
            .map(|s| format!("   - {s}:1\n"))
            .collect::<String>()
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn test_conf_names_a_bad_key_and_its_line() {
    let dir = TempDir::new("cli-proxy-t");
    let conf = dir.join("bad.yml");
    std::fs::write(&conf, yaml(lo(1)[0], &lo(1), "  timeuot: 100\n")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_shardkit"))
        .args(["proxy", "-t", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("timeuot") && err.contains("line 3"), "{err}");
    std::fs::write(&conf, yaml(lo(1)[0], &lo(1), "")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_shardkit"))
        .args(["proxy", "-t", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn sighup_reloads_and_a_bad_file_is_refused() {
    let dir = TempDir::new("cli-proxy-hup");
    let servers = lo(2);
    let _mc = start_memcached_tcp(dir.path(), &servers);
    let [listen, second, stats, metrics] = lo(4)[..] else {
        unreachable!()
    };
    let conf = dir.join("proxy.yml");
    std::fs::write(&conf, yaml(listen, &servers, "")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardkit"));
    cmd.args(["proxy", "--threads", "2", "--config"])
        .arg(&conf)
        .args(["--stats-addr", &stats.to_string()])
        .args(["--metrics-addr", &metrics.to_string()]);
    let mut proc = Proc::spawn("shardkit proxy", cmd, dir.join("proxy.log"));
    proc.wait_listening(
        &[listen, stats, metrics],
        Duration::from_secs(10),
        String::new,
    );
    let mut c = Raw::connect(&listen.to_string());
    assert_eq!(
        c.ask(b"set k 0 0 1\r\nv\r\n", b"\r\n"),
        b"STORED\r\n",
        "{}",
        proc.log()
    );
    proc.assert_running();

    // A bad file: refused, logged, and the proxy goes on as it was.
    std::fs::write(&conf, yaml(listen, &servers, "  bogus: 1\n")).unwrap();
    signal(proc.pid(), "-HUP");
    wait_for("the refusal in the log", || {
        proc.log().contains("reload refused")
    });
    assert!(proc.log().contains("bogus"), "{}", proc.log());
    assert_eq!(
        c.ask(b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 1\r\nv\r\nEND\r\n"
    );

    // A good one: a second pool appears; the open connection keeps working.
    let two =
        yaml(listen, &servers, "") + &yaml(second, &servers, "").replacen("cache:", "more:", 1);
    std::fs::write(&conf, two).unwrap();
    signal(proc.pid(), "-HUP");
    wait_for("the second pool", || {
        std::net::TcpStream::connect(second).is_ok()
    });
    assert_eq!(
        c.ask(b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 1\r\nv\r\nEND\r\n"
    );
    let mut d = Raw::connect(&second.to_string());
    assert_eq!(
        d.ask(b"get k\r\n", b"END\r\n"),
        b"VALUE k 0 1\r\nv\r\nEND\r\n"
    );

    // nutcracker's stats: JSON to whoever connects; Prometheus over HTTP.
    let mut s = Raw::connect(&stats.to_string());
    let json: serde_json::Value =
        serde_json::from_slice(&s.read_idle(Duration::from_millis(500))).unwrap();
    assert_eq!(json["service"], "nutcracker");
    assert!(json["cache"]["client_connections"].as_u64().unwrap() >= 1);
    let r = shardkit_testkit::http::request(
        &metrics.to_string(),
        "GET",
        "/metrics",
        "",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("shardkit_proxy_requests_total{pool=\"more\"} 1"),
        "{}",
        r.body
    );

    signal(proc.pid(), "-TERM");
    wait_for("the proxy to exit", || proc.log().contains("stopping"));
}
