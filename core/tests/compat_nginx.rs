//! shardkit against real nginx `hash $request_uri consistent`: one nginx
//! runs several backends (server blocks that answer with their own address)
//! and proxies through an upstream built from an upstream list. Each request
//! URI's answering backend must be the node `config::nginx::parse_upstream`
//! returns for that URI, given the same list.
//!
//! Run with `make test-compat` (or `tests/compat/run.sh`).

use shardkit::config::nginx;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shardkit_testkit::{free_port, is_root, loopback_net, require, show, Proc, Rng, TempDir};

/// A running nginx.
struct Nginx {
    _proc: Proc,
}

/// Starts nginx with `http_body` inside its `http {}` block and waits for
/// every address in `listens`.
fn start_nginx(dir: &Path, http_body: &str, listens: &[SocketAddr]) -> Nginx {
    let bin = require("nginx", "nginx");
    let d = dir.display();
    for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    // One process (no master) so that killing it stops everything; `user`
    // only where nginx would otherwise drop root for an account that cannot
    // read this directory.
    let conf = format!(
        "{user}master_process off;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log notice;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         keepalive_requests 1000000;\n{http_body}}}\n",
        user = if is_root() { "user root;\n" } else { "" },
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, &conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("logs/error.log"))
        .args(["-g", "daemon off;"]);
    let mut proc = Proc::spawn("nginx", cmd, dir.join("nginx.out"));
    proc.wait_listening(listens, Duration::from_secs(10), || {
        let errors = std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default();
        format!("{errors}\n{conf}")
    });
    Nginx { _proc: proc }
}

/// Sends `GET uri` for every URI over one keep-alive connection, pipelined,
/// and returns each response body.
fn fetch_all(proxy: SocketAddr, uris: &[Vec<u8>]) -> Vec<String> {
    let s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut out = Vec::with_capacity(uris.len());
    for chunk in uris.chunks(128) {
        let mut buf = Vec::new();
        for u in chunk {
            buf.extend_from_slice(b"GET ");
            buf.extend_from_slice(u);
            buf.extend_from_slice(b" HTTP/1.1\r\nHost: compat\r\n\r\n");
        }
        w.write_all(&buf).unwrap();
        for u in chunk {
            let mut status = String::new();
            r.read_line(&mut status).unwrap();
            let mut len = None;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse::<usize>().ok();
                    }
                }
            }
            let len =
                len.unwrap_or_else(|| panic!("no Content-Length for {} ({status:?})", show(u)));
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            assert!(
                status.starts_with("HTTP/1.1 200"),
                "GET {} answered {status:?}: {body}",
                show(u)
            );
            out.push(body);
        }
    }
    out
}

/// Request URIs: paths and query strings, percent escapes, and raw bytes
/// >= 0x80 (nginx hashes `$request_uri` as received, undecoded).
fn uris(n: usize, seed: u64) -> Vec<Vec<u8>> {
    const SAFE: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@";
    let mut rng = Rng::new(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut u = Vec::new();
        for _ in 0..1 + rng.below(4) {
            u.extend_from_slice(b"/");
            for _ in 0..rng.below(12) {
                match rng.below(20) {
                    // nginx refuses an encoded NUL with 400.
                    0 => u.extend_from_slice(format!("%{:02X}", 1 + rng.below(255)).as_bytes()),
                    1 => u.push(0x80 + rng.below(128) as u8),
                    _ => u.push(SAFE[rng.below(SAFE.len() as u64) as usize]),
                }
            }
        }
        if rng.below(2) == 0 {
            u.push(b'?');
            for p in 0..1 + rng.below(3) {
                if p > 0 {
                    u.push(b'&');
                }
                let pair = format!("q{}={}", rng.below(100), rng.next_u64() % 100_000);
                u.extend_from_slice(pair.as_bytes());
            }
        }
        if seen.insert(u.clone()) {
            out.push(u);
        }
    }
    out
}

/// Checks every URI's backend against the sharder built from `list`.
fn check(case: &str, list: &str, proxy: SocketAddr, uris: &[Vec<u8>]) {
    let sharder = nginx::parse_upstream(list).unwrap_or_else(|e| panic!("{list}: {e}"));
    let answered = fetch_all(proxy, uris);
    let mut wrong = Vec::new();
    let mut per_node = std::collections::HashMap::<String, usize>::new();
    for (u, got) in uris.iter().zip(&answered) {
        let want = sharder.lookup(u).unwrap().name();
        *per_node.entry(got.clone()).or_default() += 1;
        if want != got {
            wrong.push((show(u), want.to_string(), got.clone()));
        }
    }
    let mut msg = String::new();
    for (u, want, got) in wrong.iter().take(10) {
        writeln!(msg, "  {u}: shardkit {want}, nginx {got}").unwrap();
    }
    assert!(
        wrong.is_empty(),
        "{case}: {} of {} URIs answered by another backend than shardkit picks:\n{msg}",
        wrong.len(),
        uris.len()
    );
    assert!(per_node.len() > 1, "{case}: every URI went to one backend");
    eprintln!(
        "compat nginx {case}: {} URIs placed identically across {} backends",
        uris.len(),
        per_node.len()
    );
}

#[test]
#[ignore = "needs nutcracker, memcached and nginx: run by make test-compat"]
fn hash_request_uri_consistent_with_unequal_weights() {
    let dir = TempDir::new("nginx");
    let [a, b] = loopback_net();
    // Backends on several loopback IPs, some sharing one: the ring hashes
    // the address as written, host and port separately.
    let weights = [1u32, 2, 3, 1, 5, 2, 8];
    let backends: Vec<SocketAddr> = weights
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let ip = Ipv4Addr::new(127, a, b, 2 + (i as u8 % 4));
            SocketAddr::from((ip, free_port(ip)))
        })
        .collect();
    let list: String = backends
        .iter()
        .zip(weights)
        .map(|(addr, w)| format!("{addr} weight={w}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The same backends with one marked down, and nginx's ignored knobs.
    let down_list = format!("{list}; {} max_fails=3 fail_timeout=5s", "127.0.0.1:1 down");
    let proxy = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST)));
    let proxy_down = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(Ipv4Addr::LOCALHOST)));

    let mut http = String::new();
    for (name, l) in [("weighted", &list), ("withdown", &down_list)] {
        writeln!(
            http,
            "  upstream {name} {{\n    hash $request_uri consistent;"
        )
        .unwrap();
        for entry in l.split([',', ';']) {
            writeln!(http, "    server {};", entry.trim()).unwrap();
        }
        writeln!(http, "    keepalive 16;\n  }}").unwrap();
    }
    for be in &backends {
        writeln!(
            http,
            "  server {{ listen {be}; location / {{ return 200 \"{be}\"; }} }}"
        )
        .unwrap();
    }
    for (p, up) in [(proxy, "weighted"), (proxy_down, "withdown")] {
        writeln!(
            http,
            "  server {{ listen {p}; location / {{ proxy_pass http://{up}; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        )
        .unwrap();
    }
    let mut listens = backends.clone();
    listens.extend([proxy, proxy_down]);
    let _nginx = start_nginx(dir.path(), &http, &listens);

    let sample = uris(12_000, 21);
    check("weights 1,2,3,1,5,2,8", &list, proxy, &sample);
    // shardkit's own HTTP proxy in front of the same backends answers each
    // URI from the backend nginx's hash picks.
    let mut cfg = shardkit::http_proxy::HttpProxyConfig::new("127.0.0.1:0", list.clone());
    cfg.threads = 2;
    let ours = shardkit::http_proxy::HttpProxy::start(cfg).unwrap();
    // Raw bytes >= 0x80 in a request target are refused (400) by hyper's
    // parser, which keeps to RFC 3986; nginx takes them. Clients send such
    // URIs percent-encoded, which both place alike.
    let ascii: Vec<Vec<u8>> = sample.iter().filter(|u| u.is_ascii()).cloned().collect();
    assert!(ascii.len() > 1000, "{} ASCII URIs", ascii.len());
    assert_eq!(
        fetch_all(ours.listening(), &ascii),
        fetch_all(proxy, &ascii),
        "shardkit http-proxy and nginx placed some URI differently"
    );
    eprintln!(
        "compat nginx: shardkit http-proxy placed {} URIs as nginx's hash $request_uri consistent",
        ascii.len()
    );
    ours.stop();
    // A down server keeps its points; the URIs on them go on to the next
    // point's server, in nginx and in shardkit (nginx never connects to it).
    let down_uris = uris(3000, 22);
    check("with a down server", &down_list, proxy_down, &down_uris);
    let all_up = nginx::parse_upstream(&down_list.replace(" down", "")).unwrap();
    let rerouted = down_uris
        .iter()
        .filter(|u| all_up.lookup(u).unwrap().name() == "127.0.0.1:1")
        .count();
    assert!(rerouted > 0, "no URI hashed to the down server's points");
    eprintln!("compat nginx with a down server: {rerouted} URIs rerouted past it as nginx does");
}
