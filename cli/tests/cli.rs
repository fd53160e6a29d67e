//! The `shardkit` binary end to end: output formats, agreement with the core
//! API, and every error path (message names the value, non-zero exit, no panic).

use shardkit::config::twemproxy;
use shardkit_testkit::TempDir;
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
    let child_stdin = child.stdin.take().unwrap();
    let input = stdin.unwrap_or("").to_string();
    // Feed stdin from another thread: a large input would otherwise fill the
    // stdout pipe while this thread is still writing, and both would block.
    let feeder = std::thread::spawn(move || {
        let mut pipe = child_stdin;
        // The command may exit (on an error) before reading it all.
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn config_file() -> (TempDir, String) {
    let dir = TempDir::new("cli-test");
    let p = dir.file("nutcracker.yml");
    std::fs::write(&p, YAML).unwrap();
    (dir, p)
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
    assert_eq!(out.lines().count(), 2);
    // The same upstream list placed by another algorithm, as `http-proxy
    // --algorithm` and the nginx Lua module place it.
    let list = "127.0.0.1:8081 weight=2,127.0.0.1:8082,127.0.0.1:8083";
    let keys: Vec<String> = (0..40).map(|i| format!("/item/{i}")).collect();
    let mut args = vec!["route", "--nginx", list, "--algorithm", "maglev"];
    args.extend(keys.iter().map(String::as_str));
    let out = stdout(&shardkit(&args, None));
    let s = shardkit::config::nginx::parse_upstream_with(
        list,
        shardkit::shard::Algorithm::from_name("maglev").unwrap(),
    )
    .unwrap();
    for line in out.lines() {
        let (k, server) = line.split_once('\t').unwrap();
        assert_eq!(server, s.lookup(k.as_bytes()).unwrap().name(), "{k}");
    }
    assert_eq!(out.lines().count(), keys.len());
}

#[test]
fn route_replicas_match_lookup_n() {
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let mut args = vec![
        "route",
        "--nodes",
        "a,b=2,c,d",
        "--algorithm",
        "rendezvous",
        "--hash",
        "fnv1a_64",
        "--replicas",
        "3",
    ];
    args.extend(keys.iter().map(String::as_str));
    let out = stdout(&shardkit(&args, None));
    let s = shardkit::Sharder::new(
        shardkit::node::parse_node_list("a,b=2,c,d").unwrap(),
        shardkit::ShardConfig::from_names(Some("rendezvous"), Some("fnv1a_64"), None).unwrap(),
    )
    .unwrap();
    assert_eq!(out.lines().count(), keys.len());
    for (line, key) in out.lines().zip(&keys) {
        let cols: Vec<&str> = line.split('\t').collect();
        let want: Vec<&str> = s
            .lookup_n(key.as_bytes(), 3)
            .unwrap()
            .into_iter()
            .map(|slot| s.node(slot).unwrap().name())
            .collect();
        assert_eq!(cols[0], key);
        assert_eq!(cols[1..], want[..], "{key}");
        assert_eq!(cols[1], s.lookup(key.as_bytes()).unwrap().name());
    }
}

#[test]
fn route_streams_large_stdin_and_keeps_key_bytes() {
    // 100k keys, the last without a newline, one empty line, CRLF endings.
    let n = 100_000;
    let mut input: String = (0..n).map(|i| format!("session:{i}\r\n")).collect();
    input.push_str("\nlast");
    let out = stdout(&shardkit(
        &["route", "--nodes", "a,b,c=3", "--algorithm", "maglev"],
        Some(&input),
    ));
    let s = shardkit::Sharder::new(
        shardkit::node::parse_node_list("a,b,c=3").unwrap(),
        shardkit::ShardConfig::from_names(Some("maglev"), None, None).unwrap(),
    )
    .unwrap();
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    assert_eq!(lines.len(), n + 2);
    for (i, line) in lines.iter().enumerate().step_by(997) {
        assert_eq!(
            line,
            &format!(
                "session:{i}\t{}",
                s.lookup(format!("session:{i}").as_bytes()).unwrap().name()
            )
        );
    }
    assert_eq!(lines[n], format!("\t{}", s.lookup(b"").unwrap().name()));
    assert_eq!(
        lines[n + 1],
        format!("last\t{}", s.lookup(b"last").unwrap().name())
    );
    assert_eq!(stdout(&shardkit(&["route", "--nodes", "a"], Some(""))), "");
}

#[cfg(unix)]
#[test]
fn route_takes_non_utf8_keys_from_arguments() {
    use std::os::unix::ffi::OsStrExt;
    let key = std::ffi::OsStr::from_bytes(b"bin\xff\xfekey");
    let o = Command::new(env!("CARGO_BIN_EXE_shardkit"))
        .args(["route", "--nodes", "a,b,c,d,e"])
        .arg(key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = shardkit::Sharder::new(
        shardkit::node::parse_node_list("a,b,c,d,e").unwrap(),
        shardkit::ShardConfig::from_names(None, None, None).unwrap(),
    )
    .unwrap();
    let mut want = b"bin\xff\xfekey\t".to_vec();
    want.extend_from_slice(s.lookup(b"bin\xff\xfekey").unwrap().name().as_bytes());
    want.push(b'\n');
    assert_eq!(o.stdout, want);
}

/// Parses `plan --format tsv` into header-keyed rows.
fn tsv_rows(out: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), header.len(), "{l:?}");
            header
                .iter()
                .zip(cols)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
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
    let rows = tsv_rows(&out);
    let names: Vec<&str> = rows.iter().map(|r| r["algorithm"].as_str()).collect();
    assert_eq!(
        names,
        shardkit::shard::ALGORITHM_NAMES,
        "one row each, no current row"
    );
    let moved = |name: &str| -> f64 {
        rows.iter().find(|r| r["algorithm"] == name).unwrap()["moved_fraction"]
            .parse()
            .unwrap()
    };
    for r in &rows {
        assert_eq!(r["skipped"], "", "{r:?}");
        let m: f64 = r["moved_fraction"].parse().unwrap();
        assert!((0.0..=1.0).contains(&m), "{r:?}");
        let min: f64 = r["minimum_fraction"].parse().unwrap();
        assert!((min - 1.0 / 9.0).abs() < 1e-6, "{r:?}");
        for col in ["before_peak_to_mean", "after_peak_to_mean"] {
            let p: f64 = r[col].parse().unwrap();
            assert!((1.0..2.0).contains(&p), "{col} {r:?}");
        }
    }
    // Modulo reshuffles almost everything; consistent functions move close
    // to the 1/9 minimum.
    assert!(moved("modulo") > 0.8, "modulo moved {}", moved("modulo"));
    for consistent in ["jump", "jumpback", "maglev", "rendezvous", "memento"] {
        assert!(
            moved(consistent) < 0.13,
            "{consistent} moved {}",
            moved(consistent)
        );
    }
}

#[test]
fn plan_table_skips_what_cannot_take_weights_and_names_a_winner() {
    let table = stdout(&shardkit(
        &[
            "plan",
            "--nodes",
            "a=1,b=2,c=1",
            "--remove",
            "a",
            "--samples",
            "5000",
        ],
        None,
    ));
    for name in shardkit::shard::ALGORITHM_NAMES {
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "no row for {name}:\n{table}"
        );
    }
    assert!(
        table.contains("jump") && table.contains("skipped: jump does not support weights"),
        "{table}"
    );
    assert!(
        table.contains("peak/mean") && table.contains("moved"),
        "{table}"
    );
    assert!(table.contains("Least movement"), "{table}");
    // Removing 1 of 4 weight units: the minimum is 25%.
    assert!(table.contains("25.00%"), "{table}");
}

#[test]
fn plan_from_twemproxy_matches_core_and_adds_server_entries() {
    let (_dir, cfg) = config_file();
    let entry = "127.0.0.1:11214:1 cache-d";
    let out = stdout(&shardkit(
        &[
            "plan",
            "--config",
            &cfg,
            "--add",
            entry,
            "--samples",
            "5000",
            "--format",
            "tsv",
            "--algorithms",
            "maglev",
        ],
        None,
    ));
    let rows = tsv_rows(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0]["algorithm"], "ketama:twemproxy");
    assert_eq!(rows[0]["current"], "true");
    assert_eq!(rows[1]["algorithm"], "maglev");
    // The added entry is hashed onto the ring as nutcracker would (by its
    // alias), so the current row must equal core's own figures for that pool.
    let pool = twemproxy::select_pool(twemproxy::parse_pools(YAML).unwrap(), None).unwrap();
    let server = twemproxy::Server::parse(entry).unwrap();
    let node = shardkit::Node::new(server.name, server.weight as i64)
        .unwrap()
        .with_ring_id(server.ring_id);
    let next = pool.sharder.apply(&[shardkit::Change::Add(node)]).unwrap();
    let m = pool.sharder.movement(&next, 5000).unwrap();
    let b = next.balance(5000).unwrap();
    assert_eq!(rows[0]["moved_fraction"], format!("{:.6}", m.fraction));
    assert_eq!(rows[0]["minimum_fraction"], format!("{:.6}", m.minimum));
    assert_eq!(
        rows[0]["after_peak_to_mean"],
        format!("{:.6}", b.peak_to_mean)
    );
}

#[test]
fn plan_json_and_nginx() {
    let json = stdout(&shardkit(
        &[
            "plan",
            "--nginx",
            "10.0.0.1:80,10.0.0.2:80 down,10.0.0.3:80",
            "--add",
            "10.0.0.4:80 weight=2",
            "--samples",
            "5000",
            "--algorithms",
            "maglev,rendezvous",
            "--format",
            "json",
        ],
        None,
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["changes"][0], "add 10.0.0.4:80=2");
    assert_eq!(v["nodes_before"], 3);
    assert_eq!(v["nodes_after"], 4);
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["algorithm"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ketama:nginx", "maglev", "rendezvous"]);
    for r in rows {
        // The down server takes no keys under any algorithm: the new one's
        // weight 2 against the 2 up is half the weight.
        assert_eq!(r["minimum_fraction"], 0.5, "{r}");
        let m = r["moved_fraction"].as_f64().unwrap();
        assert!((0.4..0.6).contains(&m), "{r}");
    }
}

#[test]
fn plan_with_algorithm_and_hash_shows_the_current_row() {
    let out = stdout(&shardkit(
        &[
            "plan",
            "--nodes",
            "a,b,c",
            "--algorithm",
            "jump",
            "--hash",
            "fnv1a_64",
            "--add",
            "d",
            "--samples",
            "4000",
            "--algorithms",
            "jump",
            "--format",
            "tsv",
        ],
        None,
    ));
    let rows = tsv_rows(&out);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["current"], "true");
    // --hash applies to the alternatives too, so the same algorithm gives
    // the same figures.
    for col in ["moved_fraction", "before_peak_to_mean", "after_stddev"] {
        assert_eq!(rows[0][col], rows[1][col], "{col}");
    }
}

fn fails(args: &[&str], needle: &str, code: i32) {
    let o = shardkit(args, None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(o.stdout.is_empty(), "{args:?} wrote to stdout");
    assert!(
        err.starts_with("shardkit: error: "),
        "{args:?}: stderr {err:?}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: stderr {err:?} does not name {needle:?}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

/// Bad values core rejects: exit 1, core's message naming the value.
fn fails_naming(args: &[&str], needle: &str) {
    fails(args, needle, 1);
}

#[test]
fn errors_name_the_bad_value() {
    let (dir, cfg) = config_file();
    let missing = dir.join("nope.yml");
    fails_naming(
        &["route", "--config", missing.to_str().unwrap(), "k"],
        "nope.yml",
    );
    let bad = dir.join("bad.yml");
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
    fails_naming(&["route", "--nodes", "a,b", "--hash-tag", "{", "k"], "{");
    fails_naming(&["route", "--nodes", "a,b=0", "k"], "got 0");
    fails_naming(&["route", "--nodes", "a,b=-2", "k"], "got -2");
    fails_naming(&["route", "--nodes", "a,b=x", "k"], "\"x\"");
    fails_naming(&["route", "--nodes", "a,a", "k"], "\"a\"");
    fails_naming(&["route", "--nodes", ",", "k"], "empty");
    fails_naming(&["route", "--nginx", "", "k"], "no servers");
    fails_naming(
        &["route", "--nginx", "10.0.0.1:80 weight=0", "k"],
        "weight=0",
    );
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
    fails_naming(&["plan", "--nodes", "a,b", "--add", "a"], "\"a\"");
    fails_naming(&["plan", "--nodes", "a,b", "--reweight", "a"], "\"a\"");
    fails_naming(&["plan", "--nodes", "a,b", "--reweight", "a=0"], "got 0");
    fails_naming(
        &["plan", "--nodes", "a,b", "--reweight", "a=heavy"],
        "\"heavy\"",
    );
    fails_naming(&["plan", "--nodes", "a,b", "--reweight", "zed=2"], "zed");
    fails_naming(
        &[
            "plan",
            "--nodes",
            "a,b",
            "--add",
            "c",
            "--algorithms",
            "maglev,wobbly",
        ],
        "wobbly",
    );
    fails_naming(
        &["plan", "--config", &cfg, "--add", "10.0.0.9:11211"],
        "10.0.0.9:11211",
    );
    fails_naming(
        &["plan", "--nginx", "a:80,b:80", "--add", "c:80 down"],
        "c:80 down",
    );
}

#[test]
fn usage_errors_exit_2() {
    fails(&["route", "--frobnicate"], "--frobnicate", 2);
    fails(
        &["route", "k"],
        "<--config <FILE>|--nginx <LIST>|--nodes <LIST>>",
        2,
    );
    fails(
        &["route", "--nodes", "a", "--config", "x.yml", "k"],
        "--config",
        2,
    );
    fails(
        &["route", "--nodes", "a", "--pool", "p", "k"],
        "'--pool <NAME>'",
        2,
    );
    fails(
        &["route", "--config", "x.yml", "--algorithm", "jump", "k"],
        "'--algorithm <NAME>'",
        2,
    );
    fails(&["route", "--nodes", "a", "--replicas", "0", "k"], "'0'", 2);
    fails(&["plan", "--nodes", "a,b"], "--add", 2);
    fails(
        &["plan", "--nodes", "a,b", "--add", "c", "--samples", "0"],
        "'0'",
        2,
    );
    fails(
        &["plan", "--nodes", "a,b", "--add", "c", "--format", "xml"],
        "xml",
        2,
    );
}

#[test]
fn help_and_version() {
    for cmd in [&["--help"][..], &["route", "--help"], &["plan", "--help"]] {
        let out = stdout(&shardkit(cmd, None));
        assert!(out.contains("Usage: shardkit"), "{out}");
    }
    let route = stdout(&shardkit(&["route", "--help"], None));
    for name in shardkit::shard::ALGORITHM_NAMES {
        assert!(route.contains(name), "route --help lacks {name}");
    }
    let out = stdout(&shardkit(&["--version"], None));
    assert_eq!(out.trim(), format!("shardkit {}", shardkit::VERSION));
}
