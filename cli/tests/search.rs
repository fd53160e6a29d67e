//! `shardkit search-leaf` and `search-root` end to end, as separate
//! processes on loopback over the KJV sample corpus: three leaves must
//! answer exactly what a scan of the whole file finds, in merge order, with
//! consistent paging; a killed leaf degrades a best-effort search and fails
//! a require-all one; bad input is rejected with a message naming it.

use serde_json::Value;
use shardkit::search::Placement;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/kjv-verses.tsv");

fn shardkit(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shardkit"));
    c.args(args).stdin(Stdio::null());
    c
}

fn run(args: &[&str]) -> Output {
    shardkit(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A server process (leaf or root), killed on drop.
struct Server {
    child: Child,
    /// `127.0.0.1:PORT`, from its first stdout line.
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = shardkit(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        // Generous: a debug build indexes a third of the corpus in about
        // half a second, but the test machine may be busy.
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                panic!("{args:?} printed no address: {e}");
            }
        };
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{args:?}: unexpected first line {line:?}"))
            .to_string();
        Server { child, addr }
    }

    fn leaf(i: usize, n: usize) -> Server {
        let shard = format!("{i}/{n}");
        Server::start(&[
            "search-leaf",
            "--shard",
            &shard,
            "--docs",
            CORPUS,
            "--listen",
            "127.0.0.1:0",
        ])
    }

    fn url(&self) -> String {
        format!("http://{}/search", self.addr)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts leaves 0..n of n (in parallel: each indexes on its own).
fn leaves(n: usize) -> Vec<Server> {
    let handles: Vec<_> = (0..n)
        .map(|i| std::thread::spawn(move || Server::leaf(i, n)))
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn leaf_list(leaves: &[Server]) -> String {
    leaves
        .iter()
        .map(|l| l.addr.clone())
        .collect::<Vec<_>>()
        .join(",")
}

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = shardkit_testkit::http::request(addr, method, path, body, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
    (r.status, r.body)
}

/// The corpus as (name, lowercase words) per line, scanned directly.
fn corpus() -> Vec<(String, BTreeSet<String>)> {
    std::fs::read_to_string(CORPUS)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, text) = l.split_once('\t').unwrap();
            let words = text
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            (name.to_string(), words)
        })
        .collect()
}

/// Ids of the documents matching `terms` under `op`, by a full scan.
fn scan(corpus: &[(String, BTreeSet<String>)], terms: &[&str], op: &str) -> BTreeSet<u64> {
    (0..corpus.len())
        .filter(|&i| {
            let w = &corpus[i].1;
            if op == "and" {
                terms.iter().all(|t| w.contains(*t))
            } else {
                terms.iter().any(|t| w.contains(*t))
            }
        })
        .map(|i| i as u64)
        .collect()
}

fn root(leaves: &str, extra: &[&str]) -> Output {
    let mut args = vec!["search-root", "--leaves", leaves, "--deadline", "10s"];
    args.extend(extra);
    run(&args)
}

fn root_json(leaves: &str, extra: &[&str]) -> Value {
    let o = root(leaves, extra);
    assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// (score, shard, doc) of each hit, checked to be in merge order.
fn checked_hits(page: &Value) -> Vec<(f64, u64, u64)> {
    let hits: Vec<(f64, u64, u64)> = page["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["score"].as_f64().unwrap(),
                h["shard"].as_u64().unwrap(),
                h["doc"].as_u64().unwrap(),
            )
        })
        .collect();
    for w in hits.windows(2) {
        let (a, b) = (w[0], w[1]);
        let ordered = a.0 > b.0 || (a.0 == b.0 && (a.1, a.2) < (b.1, b.2));
        assert!(ordered, "hits out of order: {a:?} then {b:?}");
    }
    hits
}

#[test]
fn three_leaves_answer_what_a_full_scan_finds() {
    let leaves = leaves(3);
    let list = leaf_list(&leaves);
    let corpus = corpus();
    let placement = Placement::new(3).unwrap();
    let queries: [(&str, &[&str], &str); 5] = [
        ("light darkness", &["light", "darkness"], "and"),
        ("Faith, hope & CHARITY", &["faith", "hope", "charity"], "or"),
        ("the lord god", &["the", "lord", "god"], "and"),
        ("jesus wept", &["jesus", "wept"], "and"),
        ("xyzzy light", &["xyzzy", "light"], "and"),
    ];
    for (q, terms, op) in queries {
        let want = scan(&corpus, terms, op);
        let page = root_json(&list, &["--query", q, "--op", op, "--coverage", "all"]);
        assert_eq!(page["coverage"]["answered"], 3, "{page}");
        assert_eq!(page["coverage"]["total"], 3);
        assert_eq!(page["degraded"], false);
        assert_eq!(page["missing"].as_array().unwrap().len(), 0);
        assert_eq!(page["query"], q);
        assert_eq!(page["op"], op);
        assert_eq!(page["total"].as_u64().unwrap(), want.len() as u64, "{q}");
        let hits = checked_hits(&page);
        assert_eq!(hits.len(), want.len().min(10), "{q}: k respected");
        for (h, (_, shard, doc)) in page["hits"].as_array().unwrap().iter().zip(&hits) {
            let (name, words) = &corpus[*doc as usize];
            assert_eq!(h["name"], name.as_str());
            assert!(want.contains(doc), "{q}: {name} does not match");
            if op == "and" {
                assert!(terms.iter().all(|t| words.contains(*t)), "{q}: {name}");
            }
            // Each hit came from the shard the placement puts it on.
            assert_eq!(u64::from(placement.shard_of(name)), *shard);
        }
        // All matches at once: exactly the scan's set, once each.
        let all = root_json(
            &list,
            &[
                "--query",
                q,
                "--op",
                op,
                "--k",
                "10000",
                "--coverage",
                "all",
            ],
        );
        let docs: Vec<u64> = checked_hits(&all).iter().map(|h| h.2).collect();
        let set: BTreeSet<u64> = docs.iter().copied().collect();
        assert_eq!(set.len(), docs.len(), "{q}: duplicate hits");
        assert_eq!(set, want, "{q}");
    }

    // Paging: pages cut from one ranking.
    let q = ["--query", "faith hope charity", "--op", "or"];
    let first30 = checked_hits(&root_json(&list, &[&q[..], &["--k", "30"]].concat()));
    assert_eq!(first30.len(), 30);
    for offset in [0usize, 10, 20, 25] {
        let o = offset.to_string();
        let page = root_json(&list, &[&q[..], &["--k", "5", "--offset", &o]].concat());
        assert_eq!(page["offset"], offset);
        assert_eq!(
            checked_hits(&page),
            first30[offset..offset + 5],
            "offset {offset}"
        );
    }
    let past = root_json(&list, &[&q[..], &["--offset", "9000"]].concat());
    assert_eq!(past["hits"].as_array().unwrap().len(), 0);
    assert!(past["total"].as_u64().unwrap() > 300);

    // The leaves: health, stats adding up to the corpus, 400s naming the
    // bad value.
    let mut docs = 0;
    for l in &leaves {
        assert_eq!(http(&l.addr, "GET", "/healthz", ""), (200, "ok\n".into()));
        let (status, body) = http(&l.addr, "GET", "/stats", "");
        assert_eq!(status, 200);
        let stats: Value = serde_json::from_str(&body).unwrap();
        assert!(stats["terms"].as_u64().unwrap() > 5000, "{stats}");
        assert!(stats["build_ms"].as_f64().unwrap() > 0.0);
        docs += stats["docs"].as_u64().unwrap();
    }
    assert_eq!(docs, corpus.len() as u64);
    let a = &leaves[0].addr;
    for (body, says) in [
        ("{\"q\": \"light\"", "EOF"),
        ("{\"q\": \"light\", \"kk\": 3}", "unknown field `kk`"),
        (
            "{\"q\": \"light\", \"op\": \"xor\"}",
            "unknown variant `xor`",
        ),
        ("{\"q\": \"light\", \"k\": 0}", "k = 0"),
        ("{\"q\": \" ?! \"}", "query \\\" ?! \\\" has no terms"),
    ] {
        let (status, resp) = http(a, "POST", "/search", body);
        assert_eq!(status, 400, "{body}: {resp}");
        let err: Value = serde_json::from_str(&resp).unwrap();
        let msg = err["error"].as_str().unwrap();
        assert!(resp.contains(says), "{body}: {msg}");
    }
    let (status, resp) = http(
        a,
        "POST",
        "/search",
        r#"{"q": "light", "k": 2, "offset": 1, "postings": true}"#,
    );
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(answer["shard"], 0);
    assert_eq!(answer["shards"], 3);
    assert_eq!(answer["hits"].as_array().unwrap().len(), 3, "offset + k");
    let postings = answer["postings"].as_array().unwrap();
    assert_eq!(postings.len() as u64, answer["total"].as_u64().unwrap());

    // Leaves listed out of shard order are caught, not merged wrongly.
    let swapped = format!("{},{},{}", leaves[1].addr, leaves[0].addr, leaves[2].addr);
    let page = root_json(&swapped, &["--query", "light"]);
    assert_eq!(page["coverage"]["answered"], 1, "{page}");
    assert!(page["missing"][0]["error"]
        .as_str()
        .unwrap()
        .contains("serves shard 1/3 but is listed as shard 0/3"));
    let o = root(&swapped, &["--query", "light", "--coverage", "all"]);
    assert_eq!(o.status.code(), Some(1));

    // The root as a server gives the same page.
    let server = Server::start(&[
        "search-root",
        "--leaves",
        &list,
        "--listen",
        "127.0.0.1:0",
        "--deadline",
        "10s",
    ]);
    let cli = root_json(&list, &["--query", "light darkness", "--k", "7"]);
    for _ in 0..3 {
        let (status, body) = http(
            &server.addr,
            "POST",
            "/search",
            r#"{"q": "light darkness", "k": 7}"#,
        );
        assert_eq!(status, 200, "{body}");
        let served: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(served["hits"], cli["hits"]);
        assert_eq!(served["total"], cli["total"]);
    }
    let (status, body) = http(&server.addr, "POST", "/search", r#"{"q": "light", "k": 0}"#);
    assert_eq!((status, body.contains("k = 0")), (400, true), "{body}");
    let (status, body) = http(
        &server.addr,
        "POST",
        "/search",
        r#"{"q": "light", "postings": true}"#,
    );
    assert_eq!((status, body.contains("postings")), (400, true), "{body}");
}

#[test]
fn a_dead_leaf_degrades_best_effort_and_fails_require_all() {
    let mut leaves = leaves(3);
    let list = leaf_list(&leaves);
    let dead = leaves[1].url();
    leaves[1].kill();
    let corpus = corpus();
    let placement = Placement::new(3).unwrap();
    let want: BTreeSet<u64> = scan(&corpus, &["light"], "and")
        .into_iter()
        .filter(|&d| placement.shard_of(&corpus[d as usize].0) != 1)
        .collect();

    for coverage in ["best-effort", "best_effort", "2", "2/3"] {
        let page = root_json(
            &list,
            &["--query", "light", "--k", "10000", "--coverage", coverage],
        );
        assert_eq!(page["coverage"]["answered"], 2, "{page}");
        assert_eq!(page["coverage"]["total"], 3);
        assert_eq!(page["degraded"], true);
        let missing = page["missing"].as_array().unwrap();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0]["leaf"], 1);
        assert!(
            missing[0]["error"].as_str().unwrap().contains(&dead),
            "{missing:?}"
        );
        assert_eq!(page["total"].as_u64().unwrap(), want.len() as u64);
        let hits = checked_hits(&page);
        assert!(hits.iter().all(|h| h.1 != 1), "a hit from the dead shard");
        let docs: BTreeSet<u64> = hits.iter().map(|h| h.2).collect();
        assert_eq!(docs, want);
    }

    for coverage in ["all", "3", "3/3"] {
        let o = root(&list, &["--query", "light", "--coverage", coverage]);
        assert_eq!(o.status.code(), Some(1), "{coverage}");
        assert!(o.stdout.is_empty());
        let err = stderr(&o);
        assert!(err.starts_with("shardkit: error: "), "{err}");
        // Fails as soon as the dead leaf refuses (the others are then
        // cancelled), not at the deadline.
        assert!(
            err.contains("does not meet") && err.contains(&dead),
            "{err}"
        );
    }

    // A leaf that accepts connections but never answers: cut off by the
    // deadline, named in the answer.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let slow = format!("{},{silent_addr},{}", leaves[0].addr, leaves[2].addr);
    let started = std::time::Instant::now();
    let o = run(&[
        "search-root",
        "--leaves",
        &slow,
        "--query",
        "light",
        "--deadline",
        "300ms",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(started.elapsed() >= Duration::from_millis(300));
    let page: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(page["coverage"]["answered"], 2, "{page}");
    assert_eq!(page["degraded"], true);
    assert_eq!(page["missing"][0]["leaf"], 1);
    assert_eq!(
        page["missing"][0]["url"],
        format!("http://{silent_addr}/search")
    );
    let err = page["missing"][0]["error"].as_str().unwrap();
    assert!(err.contains("did not answer by the deadline"), "{err}");
    assert!(page["took_ms"].as_f64().unwrap() >= 300.0, "{page}");
    let o = run(&[
        "search-root",
        "--leaves",
        &slow,
        "--query",
        "light",
        "--deadline",
        "300ms",
        "--coverage",
        "all",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("timed out") && err.contains(&silent_addr),
        "{err}"
    );
    drop(silent);

    // Every leaf dead: even best effort fails.
    leaves[0].kill();
    leaves[2].kill();
    let o = root(&list, &["--query", "light"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("coverage 0/3"), "{}", stderr(&o));
}

#[test]
fn bad_input_is_rejected_with_its_value() {
    for (shard, says) in [
        ("3/3", "shard 3/3: the index must be below the count"),
        ("0/0", "shard 0/0: the shard count must be at least 1"),
        ("x", "shard \"x\" is not `i/N`"),
    ] {
        let o = run(&["search-leaf", "--shard", shard, "--docs", CORPUS]);
        assert_eq!(o.status.code(), Some(1), "{shard}");
        assert!(stderr(&o).contains(says), "{shard}: {}", stderr(&o));
    }
    let o = run(&[
        "search-leaf",
        "--shard",
        "0/1",
        "--docs",
        "/nonexistent/x.tsv",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/x.tsv"), "{}", stderr(&o));
    let o = run(&[
        "search-leaf",
        "--shard",
        "0/1",
        "--docs",
        CORPUS,
        "--listen",
        "nowhere",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--listen \"nowhere\""),
        "{}",
        stderr(&o)
    );

    // Port 9 (discard) on loopback: nothing listens, nothing is sent for
    // requests that are rejected before the scatter.
    let leaves = "127.0.0.1:9,127.0.0.1:9";
    for (extra, says) in [
        (&["--query", "light", "--k", "0"][..], "k = 0"),
        (&["--query", " ?! "], "query \" ?! \" has no terms"),
        (
            &["--query", "light", "--op", "xor"],
            "--op: operator \"xor\"",
        ),
        (&["--query", "light", "--coverage", "3"], "--coverage 3"),
        (
            &["--query", "light", "--coverage", "1/3"],
            "--coverage \"1/3\": N is 3 but the scatter has 2 leaves",
        ),
        (
            &["--query", "light", "--coverage", "most"],
            "--coverage \"most\"",
        ),
        (
            &["--query", "light", "--offset", "9995"],
            "exceeds the result window",
        ),
    ] {
        let o = root(leaves, extra);
        assert_eq!(o.status.code(), Some(1), "{extra:?}");
        assert!(stderr(&o).contains(says), "{extra:?}: {}", stderr(&o));
    }
    let o = run(&[
        "search-root",
        "--leaves",
        leaves,
        "--query",
        "light",
        "--deadline",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--deadline: duration \"5\" has no unit"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "search-root",
        "--leaves",
        "https://127.0.0.1:9/search",
        "--query",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("\"https://127.0.0.1:9/search\""),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "search-root",
        "--leaves",
        "127.0.0.1:9,,127.0.0.1:9",
        "--query",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("shard 1"), "{}", stderr(&o));
    // Query flags with --listen would be ignored: a usage error instead.
    let o = run(&[
        "search-root",
        "--leaves",
        "127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--k",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--k"), "{}", stderr(&o));
    // Neither --query nor --listen is a usage error.
    let o = run(&["search-root", "--leaves", "127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(2));
}
