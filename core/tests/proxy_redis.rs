//! `shardkit::proxy` in front of real redis-server (RESP2 pools): keys
//! placed as nutcracker places them, multi-key commands split and answered
//! as one redis-server answers them, AUTH and SELECT, errors.
//!
//! Run with `make test-compat` (or `tests/compat/run.sh`).

use shardkit::proxy::{Proxy, ProxyConfig, ProxyOptions};
use shardkit_testkit::nutcracker::start_nutcracker;
use shardkit_testkit::redis::{command, start_redis, Redis};
use shardkit_testkit::wire::{both, Raw};
use shardkit_testkit::{free_addrs, Rng, TempDir};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

fn lo(n: usize) -> Vec<SocketAddr> {
    free_addrs(Ipv4Addr::LOCALHOST, n)
}

fn redises(dir: &TempDir, n: usize, pw: Option<&str>) -> Vec<Redis> {
    lo(n)
        .into_iter()
        .map(|a| start_redis(dir.path(), a, pw))
        .collect()
}

fn pool(name: &str, listen: SocketAddr, servers: &[Redis], extra: &str) -> String {
    format!(
        "{name}:\n  listen: {listen}\n  redis: true\n{extra}  servers:\n{}",
        servers
            .iter()
            .map(|r| format!("   - {}:1\n", r.addr))
            .collect::<String>()
    )
}

fn start(yaml: &str) -> (Proxy, String) {
    let p = Proxy::start(ProxyConfig::parse(yaml).unwrap(), ProxyOptions::default()).unwrap();
    let addr = p.listening()[0].1.clone();
    (p, addr)
}

/// Sends one command and reads one reply line (enough for the simple
/// replies these tests read this way).
fn ask(c: &mut Raw, args: &[&[u8]]) -> Vec<u8> {
    c.ask(&command(args), b"\r\n")
}

#[test]
#[ignore = "needs redis-server and nutcracker: run by make test-compat"]
fn keys_and_hash_tags_land_where_nutcracker_puts_them() {
    let dir = TempDir::new("proxy-redis-place");
    let servers = redises(&dir, 3, None);
    let extra = "  hash: murmur\n  hash_tag: \"{}\"\n  distribution: ketama\n";
    let nl = lo(1)[0];
    let conf = dir.join("nutcracker.yml");
    std::fs::write(&conf, pool("r", nl, &servers, extra)).unwrap();
    let _nut = start_nutcracker(dir.path(), &conf, &[nl]);
    let (_p, ours) = start(&pool("r", lo(1)[0], &servers, extra));
    let mut nut = Raw::connect(&nl.to_string());
    let mut sk = Raw::connect(&ours);
    for i in 0..300 {
        let k = if i % 3 == 0 {
            format!("user:{{{}}}:{i}", i % 17)
        } else {
            format!("key:{i}")
        };
        assert_eq!(ask(&mut nut, &[b"SET", k.as_bytes(), b"v"]), b"+OK\r\n");
        assert_eq!(
            sk.ask(&command(&[b"GET", k.as_bytes()]), b"v\r\n"),
            b"$1\r\nv\r\n",
            "{k} is not where nutcracker put it"
        );
        assert_eq!(ask(&mut sk, &[b"SET", k.as_bytes(), b"w"]), b"+OK\r\n");
        assert_eq!(
            nut.ask(&command(&[b"GET", k.as_bytes()]), b"w\r\n"),
            b"$1\r\nw\r\n"
        );
    }
    // The keys did spread.
    let used = servers
        .iter()
        .filter(|r| {
            let mut c = r.raw();
            ask(&mut c, &[b"DBSIZE"]) != b":0\r\n"
        })
        .count();
    assert_eq!(used, 3);
}

#[test]
#[ignore = "needs redis-server and nutcracker: run by make test-compat"]
fn multi_key_commands_answer_as_one_redis() {
    let dir = TempDir::new("proxy-redis-multi");
    let servers = redises(&dir, 4, None);
    let single = redises(&dir, 1, None);
    let (_p, ours) = start(&pool("r", lo(1)[0], &servers, ""));
    let mut rng = Rng::new(5);
    let mut stream = Vec::new();
    let key = |rng: &mut Rng| format!("k{}", rng.below(40)).into_bytes();
    for _ in 0..300 {
        let n = 1 + rng.below(6) as usize;
        let keys: Vec<Vec<u8>> = (0..n).map(|_| key(&mut rng)).collect();
        let mut args: Vec<Vec<u8>> = Vec::new();
        match rng.below(8) {
            0 | 1 => {
                args.push(b"MSET".to_vec());
                for k in &keys {
                    args.push(k.clone());
                    args.push(format!("v{}", rng.below(100)).into_bytes());
                }
            }
            2 | 3 => {
                args.push(b"MGET".to_vec());
                args.extend(keys);
            }
            4 => {
                args.push(b"DEL".to_vec());
                args.extend(keys);
            }
            5 => {
                args.push(b"EXISTS".to_vec());
                args.extend(keys);
            }
            6 => {
                args.push(b"UNLINK".to_vec());
                args.extend(keys);
            }
            _ => {
                args.push(b"INCRBY".to_vec());
                args.push(keys[0].clone());
                args.push(b"3".to_vec());
            }
        }
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        stream.extend(command(&refs));
    }
    // Errors, inline commands, PING, and an unknown command along the way.
    stream.extend_from_slice(b"PING\r\nget k1\r\n");
    stream.extend(command(&[b"GET"]));
    stream.extend(command(&[b"MSET", b"a"]));
    stream.extend(command(&[b"PING", b"hello"]));
    let (want, got) = both(&single[0].addr.to_string(), &ours, &stream);
    assert!(want.len() > 1000);
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

#[test]
#[ignore = "needs redis-server and nutcracker: run by make test-compat"]
fn auth_select_and_errors() {
    let dir = TempDir::new("proxy-redis-auth");
    let servers = redises(&dir, 2, Some("s3cret"));
    let (_p, ours) = start(&pool(
        "r",
        lo(1)[0],
        &servers,
        "  redis_auth: s3cret\n  redis_db: 2\n",
    ));
    let mut c = Raw::connect(&ours);
    assert_eq!(
        ask(&mut c, &[b"GET", b"a"]),
        b"-NOAUTH Authentication required.\r\n"
    );
    assert!(ask(&mut c, &[b"AUTH", b"wrong"]).starts_with(b"-WRONGPASS"));
    assert_eq!(ask(&mut c, &[b"AUTH", b"s3cret"]), b"+OK\r\n");
    assert_eq!(ask(&mut c, &[b"SET", b"dbkey", b"x"]), b"+OK\r\n");
    // The proxy authenticated to the backend and selected database 2.
    let found = servers.iter().any(|r| {
        let mut d = r.raw();
        ask(&mut d, &[b"AUTH", b"s3cret"]);
        ask(&mut d, &[b"SELECT", b"2"]);
        d.ask(&command(&[b"GET", b"dbkey"]), b"x\r\n") == b"$1\r\nx\r\n"
    });
    assert!(found, "dbkey is not in database 2 of any backend");
    assert_eq!(ask(&mut c, &[b"SELECT", b"2"]), b"+OK\r\n");
    assert!(ask(&mut c, &[b"SELECT", b"0"]).starts_with(b"-ERR SELECT"));
    let r = ask(&mut c, &[b"FLUSHALL"]);
    assert!(
        r.starts_with(b"-ERR") && r.windows(8).any(|w| w.eq_ignore_ascii_case(b"flushall")),
        "{}",
        String::from_utf8_lossy(&r)
    );
    assert_eq!(ask(&mut c, &[b"PING"]), b"+PONG\r\n");
    // A protocol error is answered as redis answers it, then the proxy hangs up.
    c.send(b"*1\r\n$x\r\n");
    let r = c.read_idle(Duration::from_millis(500));
    assert_eq!(r, b"-ERR Protocol error: invalid bulk length\r\n");
}

#[test]
#[ignore = "needs redis-server and nutcracker: run by make test-compat"]
fn redis_benchmark_runs_through_the_proxy() {
    let dir = TempDir::new("proxy-redis-bench");
    let servers = redises(&dir, 2, None);
    let (_p, ours) = start(&pool("r", lo(1)[0], &servers, ""));
    let (host, port) = ours.rsplit_once(':').unwrap();
    let bin = shardkit_testkit::require("redis-benchmark", "redis-tools");
    let out = std::process::Command::new(bin)
        .args([
            "-h", host, "-p", port, "-t", "get,set", "-n", "2000", "-c", "8", "-P", "4", "-q",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
}
