//! The `shardkit` binary end to end: output formats, agreement with the core
//! API, and every error path (message names the value, non-zero exit, no panic).

use shardkit::config::twemproxy;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const YAML: &str = "\
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  hash_tag: \"{}\"
  distribution: ketama
  servers:
   - 127.0.0.1:11211:1
   - 127.0.0.1:11212:2 cache-b
   - 127.0.0.1:11213:1
beta:
  listen: 127.0.0.1:22122
  hash: md5
  distribution: modula
  servers:
   - 10.0.0.1:11211:1
   - 10.0.0.2:11211:3
";

fn shardkit(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardkit"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn config_file() -> (tempdir::Dir, String) {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("nutcracker.yml");
    std::fs::write(&path, YAML).unwrap();
    let p = path.to_str().unwrap().to_string();
    (dir, p)
}

/// A throwaway directory, removed on drop (no extra dependency for one use).
mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Dir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "shardkit-cli-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[test]
fn route_from_args_and_stdin_agree_with_core() {
    let (_dir, cfg) = config_file();
    let keys: Vec<String> = (0..200).map(|i| format!("user:{i}")).collect();
    let pool = twemproxy::select_pool(twemproxy::parse_pools(YAML).unwrap(), Some("beta")).unwrap();
    let mut args = vec!["route", "--config", &cfg, "--pool", "beta"];
    args.extend(keys.iter().map(String::as_str));
    let from_args = stdout(&shardkit(&args, None));
    let from_stdin = stdout(&shardkit(
        &["route", "--config", &cfg, "--pool", "beta"],
        Some(&keys.iter().map(|k| format!("{k}\r\n")).collect::<String>()),
    ));
    assert_eq!(from_args, from_stdin);
    for (line, key) in from_args.lines().zip(&keys) {
        let (k, server) = line.split_once('\t').unwrap();
        assert_eq!(k, key);
        assert_eq!(server, pool.sharder.lookup(key.as_bytes()).unwrap().name());
        assert!(
            server.ends_with(":1") || server.ends_with(":3"),
            "{server}: entry as written"
        );
    }
    assert_eq!(from_args.lines().count(), keys.len());
}

#[test]
fn route_defaults_to_first_pool_and_honours_hash_tags() {
    let (_dir, cfg) = config_file();
    let out = stdout(&shardkit(
        &["route", "--config", &cfg, "x{7}a", "y{7}b"],
        None,
    ));
    let servers: Vec<&str> = out.lines().map(|l| l.split('\t').nth(1).unwrap()).collect();
    assert_eq!(servers[0], servers[1]);
    assert!(!servers[0].contains("cache-b"), "aliases are not printed");
}

#[test]
fn route_nginx_and_replicas() {
    let out = stdout(&shardkit(
        &[
            "route",
            "--nginx",
            "127.0.0.1:8081 weight=2,127.0.0.1:8082",
            "/a",
            "/b?x=1",
        ],
        None,
    ));
    let s =
        shardkit::config::nginx::parse_upstream("127.0.0.1:8081 weight=2,127.0.0.1:8082").unwrap();
    for line in out.lines() {
        let (k, server) = line.split_once('\t').unwrap();
        assert_eq!(server, s.lookup(k.as_bytes()).unwrap().name());
    }
    let out = stdout(&shardkit(
        &[
            "route",
            "--nodes",
            "a,b,c",
            "--algorithm",
            "rendezvous",
            "--replicas",
            "3",
            "k",
        ],
        None,
    ));
    let cols: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(cols.len(), 4);
    let mut servers = cols[1..].to_vec();
    servers.sort_unstable();
    assert_eq!(servers, ["a", "b", "c"]);
}

#[test]
fn plan_reports_every_algorithm() {
    let out = stdout(&shardkit(
        &[
            "plan",
            "--nodes",
            "a,b,c,d,e,f,g,h",
            "--add",
            "i",
            "--samples",
            "20000",
            "--format",
            "tsv",
        ],
        None,
    ));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), shardkit::shard::ALGORITHM_NAMES.len());
    let moved = |name: &str| -> f64 {
        rows.iter().find(|r| r[0] == name).unwrap()[5]
            .parse()
            .unwrap()
    };
    for r in &rows {
        let m: f64 = r[5].parse().unwrap();
        assert!((0.0..=1.0).contains(&m), "{r:?}");
    }
    assert!(moved("modulo") > 0.5);
    for consistent in ["jump", "jumpback", "maglev", "rendezvous", "memento"] {
        assert!(
            moved(consistent) < 0.2,
            "{consistent} moved {}",
            moved(consistent)
        );
    }
    let table = stdout(&shardkit(
        &[
            "plan",
            "--nodes",
            "a=1,b=2",
            "--remove",
            "a",
            "--samples",
            "5000",
        ],
        None,
    ));
    assert!(
        table.contains("skipped:") && table.contains("weight"),
        "{table}"
    );
    assert!(table.contains("Least movement"), "{table}");
    let json = stdout(&shardkit(
        &[
            "plan",
            "--nodes",
            "a,b",
            "--reweight",
            "a=3",
            "--samples",
            "5000",
            "--algorithms",
            "maglev",
            "--format",
            "json",
        ],
        None,
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["algorithm"], "maglev");
}

fn fails_naming(args: &[&str], needle: &str) {
    let o = shardkit(args, None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(
        err.contains(needle),
        "{args:?}: stderr {err:?} does not name {needle:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn errors_name_the_bad_value() {
    let (dir, cfg) = config_file();
    let missing = dir.path.join("nope.yml");
    fails_naming(
        &["route", "--config", missing.to_str().unwrap(), "k"],
        "nope.yml",
    );
    let bad = dir.path.join("bad.yml");
    std::fs::write(&bad, "alpha: [unclosed").unwrap();
    fails_naming(
        &["route", "--config", bad.to_str().unwrap(), "k"],
        "invalid configuration",
    );
    fails_naming(
        &["route", "--config", &cfg, "--pool", "gamma", "k"],
        "gamma",
    );
    fails_naming(
        &["route", "--nodes", "a,b", "--algorithm", "wobbly", "k"],
        "wobbly",
    );
    fails_naming(&["route", "--nodes", "a,b", "--hash", "sha9", "k"], "sha9");
    fails_naming(&["route", "--nodes", "a,b=0", "k"], "got 0");
    fails_naming(&["route", "--nodes", "a,b=-2", "k"], "got -2");
    fails_naming(&["route", "--nodes", "a,a", "k"], "\"a\"");
    fails_naming(&["route", "--nodes", ",", "k"], "empty");
    fails_naming(
        &[
            "route",
            "--nodes",
            "a,b",
            "--algorithm",
            "maglev:65536",
            "k",
        ],
        "65536",
    );
    fails_naming(
        &["route", "--nodes", "a,b", "--replicas", "3", "k"],
        "got 3",
    );
    fails_naming(&["plan", "--nodes", "a,b", "--remove", "zed"], "zed");
    fails_naming(&["plan", "--nodes", "a,b"], "no change");
    fails_naming(&["route", "k"], "no node set");
    let usage = shardkit(&["route", "--frobnicate"], None);
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn version_matches_cargo() {
    let out = stdout(&shardkit(&["--version"], None));
    assert_eq!(out.trim(), format!("shardkit {}", shardkit::VERSION));
}
