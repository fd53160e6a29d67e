//! `shardkit search-root`: the root of the distributed document search. It
//! scatters a query to one leaf per shard (core's `shardkit::scatter` over
//! HTTP, with a deadline, a coverage policy and optional hedging across a
//! shard's replicas), merges the leaves' top hits with
//! `shardkit::merge::top_k` and prints or serves the page as JSON.

use crate::search_leaf::{announce, encode, error_response, json_response};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use shardkit::scatter::http::HttpTransport;
use shardkit::scatter::{Coverage, GatherOptions, HedgeConfig, Scatter, ScatterConfig};
use shardkit::search::{LeafAnswer, Op, SearchRequest};
use shardkit::{Error, ErrorKind, Result};
use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
--leaves lists one item per shard, in shard order (item i must be the leaf started with \
--shard i/N); replicas of one shard are joined with `|`. An item is a URL \
(http://host:port/search) or a bare host:port, which means http://host:port/search.

Coverage: `all` needs every shard; `best-effort` takes whatever answered by the \
deadline (at least one shard); N needs at least N shards. Missing shards are listed \
under \"missing\" and set \"degraded\": true. Exit status 0 for an answer (degraded \
or not), 1 when the coverage policy is not met or the input is bad, 2 for usage errors.

Scores are BM25 from each shard's own statistics (no global-statistics phase), so \
they are comparable across shards only approximately.

Examples:
  shardkit search-root --leaves 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --query \"light darkness\"
  shardkit search-root --leaves 'http://a:7001/search|http://b:7001/search,http://c:7002/search' \\
      --query \"faith hope charity\" --op or --k 5 --coverage best-effort --hedge
  shardkit search-root --leaves ... --listen 127.0.0.1:8080   # then POST /search")]
pub(crate) struct SearchRootArgs {
    /// One item per shard, comma-separated; a shard's replicas joined with `|`.
    #[arg(long, value_name = "LIST")]
    leaves: String,
    /// The query text (one search, printed as JSON on stdout).
    #[arg(
        long,
        value_name = "TEXT",
        required_unless_present = "listen",
        conflicts_with = "listen"
    )]
    query: Option<String>,
    /// How the terms combine: and, or.
    #[arg(
        long,
        default_value = "and",
        value_name = "and|or",
        conflicts_with = "listen"
    )]
    op: String,
    /// Hits per page.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "N",
        conflicts_with = "listen"
    )]
    k: usize,
    /// Hits to skip (paging).
    #[arg(long, default_value_t = 0, value_name = "N", conflicts_with = "listen")]
    offset: usize,
    /// How long to wait for the leaves, e.g. 500ms, 2s.
    #[arg(long, default_value = "500ms", value_name = "DURATION")]
    deadline: String,
    /// How many shards must answer: all, best-effort or a number.
    #[arg(long, default_value = "best-effort", value_name = "all|best-effort|N")]
    coverage: String,
    /// Hedge a slow leaf call to another replica of its shard (at the leaf's p95, once
    /// 20 calls have been timed: so with --listen, not for a single --query).
    #[arg(long)]
    hedge: bool,
    /// Serve POST /search (the leaf request shape) here instead of one --query.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

/// The scatter and the policies every query runs under.
struct Root {
    scatter: Scatter<Bytes, LeafAnswer>,
    urls: Vec<Vec<String>>,
    deadline: Duration,
    coverage: Coverage,
}

/// Runs one query (exit 0 with JSON on stdout, 1 with a message on
/// stderr) or, with --listen, serves until killed.
pub(crate) fn run(args: SearchRootArgs) -> ExitCode {
    let result = Root::new(&args).and_then(|root| match &args.listen {
        Some(addr) => serve(root, addr),
        None => one_query(&root, &args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardkit: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn one_query(root: &Root, args: &SearchRootArgs) -> std::result::Result<(), String> {
    let req = SearchRequest {
        q: args.query.clone().unwrap_or_default(),
        op: Op::parse(&args.op).map_err(|e| format!("--op: {}", e.message()))?,
        k: args.k,
        offset: args.offset,
        postings: false,
    };
    let page = shardkit::runtime::block_on(root.search(&req))
        .and_then(|r| r)
        .map_err(|e| e.to_string())?;
    let out = serde_json::to_string(&page).map_err(|e| format!("encoding the answer: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{out}")
        .and_then(|()| stdout.flush())
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Ok(()),
            _ => Err(format!("writing output: {e}")),
        })
}

fn serve(root: Root, listen: &str) -> std::result::Result<(), String> {
    let app = Router::new()
        .route("/search", post(search))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(root));
    shardkit::runtime::block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("--listen {listen:?}: cannot listen there: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("--listen {listen:?}: {e}"))?;
        announce(addr)?;
        axum::serve(listener, app)
            .await
            .map_err(|e| format!("serving on {addr}: {e}"))
    })
    .map_err(|e| e.to_string())?
}

async fn search(State(root): State<Arc<Root>>, body: Bytes) -> Response {
    let out = match SearchRequest::from_json(&body) {
        Ok(req) => root.search(&req).await,
        Err(e) => Err(e),
    };
    match out {
        Ok(page) => json_response(StatusCode::OK, encode(&page)),
        Err(e) => error_response(&e),
    }
}

/// Splits --leaves into shards of replica URLs; a bare `host:port`
/// becomes `http://host:port/search`. Errors name the empty item.
fn parse_leaves(list: &str) -> Result<Vec<Vec<String>>> {
    list.split(',')
        .enumerate()
        .map(|(i, item)| {
            item.split('|')
                .map(|r| {
                    let r = r.trim();
                    if r.is_empty() {
                        Err(Error::invalid(format!(
                            "--leaves {list:?}: shard {i} ({item:?}) has an empty replica; \
                             list shards with `,` and a shard's replicas with `|`"
                        )))
                    } else if r.contains("://") {
                        Ok(r.to_string())
                    } else if r.contains('/') {
                        Err(Error::invalid(format!(
                            "--leaves: leaf {r:?} has a path but no scheme; write \
                             http://{r} or a bare host:port"
                        )))
                    } else {
                        Ok(format!("http://{r}/search"))
                    }
                })
                .collect()
        })
        .collect()
}

fn parse_coverage(text: &str, shards: usize) -> Result<Coverage> {
    match text.trim() {
        "all" => Ok(Coverage::RequireAll),
        "best-effort" => Ok(Coverage::BestEffort),
        n => match n.parse::<usize>() {
            Ok(k) if (1..=shards).contains(&k) => Ok(Coverage::AtLeast(k)),
            Ok(k) => Err(Error::invalid(format!(
                "--coverage {k}: must be between 1 and the {shards} shards given"
            ))),
            Err(_) => Err(Error::invalid(format!(
                "--coverage {text:?}: expected all, best-effort or a number of shards"
            ))),
        },
    }
}

impl Root {
    fn new(args: &SearchRootArgs) -> std::result::Result<Root, String> {
        let urls = parse_leaves(&args.leaves).map_err(|e| e.message().to_string())?;
        let coverage =
            parse_coverage(&args.coverage, urls.len()).map_err(|e| e.message().to_string())?;
        let deadline = shardkit::fanout::parse_duration(&args.deadline)
            .map_err(|e| format!("--deadline: {}", e.message()))?;
        if deadline.is_zero() {
            return Err(format!("--deadline {:?}: must be positive", args.deadline));
        }
        let leaves = HttpTransport::new()
            .leaves::<LeafAnswer>(&urls)
            .map_err(|e| format!("--leaves: {}", e.message()))?;
        let config = ScatterConfig {
            hedge: args.hedge.then(HedgeConfig::default),
            ..ScatterConfig::default()
        };
        let scatter = Scatter::new(leaves, config).map_err(|e| e.to_string())?;
        Ok(Root {
            scatter,
            urls,
            deadline,
            coverage,
        })
    }

    /// `e` with the URLs of the leaves appended: the scatter names leaves
    /// `shard-<i>`, and a timed-out one is otherwise not traceable.
    fn name_leaves(&self, e: Error) -> Error {
        if !matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unavailable) {
            return e;
        }
        let urls: Vec<String> = self
            .urls
            .iter()
            .enumerate()
            .map(|(i, u)| format!("shard-{i} = {}", u.join("|")))
            .collect();
        Error::new(
            e.kind(),
            format!("{} (leaves: {})", e.message(), urls.join(", ")),
        )
    }

    /// One search: scatter, check each answer is the shard it is listed
    /// as, merge, and build the JSON page.
    async fn search(&self, req: &SearchRequest) -> Result<Page> {
        let started = Instant::now();
        // Bad requests fail here, not N times at the leaves.
        req.query()?;
        if req.postings {
            return Err(Error::invalid(
                "postings: true is for leaves (each returns its shard's match list); \
                 the root returns merged hits only",
            ));
        }
        let body = Bytes::from(req.to_json());
        let opts = GatherOptions::within(self.deadline).with_coverage(self.coverage);
        let got = self
            .scatter
            .gather(&body, &opts)
            .await
            .map_err(|e| self.name_leaves(e))?;
        let n = self.urls.len();
        let mut missing: Vec<(usize, Error)> = got.missing;
        let mut answers: Vec<(usize, LeafAnswer)> = Vec::new();
        for (i, a) in got.answers {
            if a.shard as usize != i || a.shards as usize != n {
                missing.push((
                    i,
                    Error::new(
                        ErrorKind::BadResponse,
                        format!(
                            "leaf {} serves shard {}/{} but is listed as shard {i}/{n}: \
                             list the leaves in shard order",
                            self.urls[i].join("|"),
                            a.shard,
                            a.shards
                        ),
                    ),
                ));
            } else {
                answers.push((i, a));
            }
        }
        missing.sort_by_key(|(i, _)| *i);
        let needed = match self.coverage {
            Coverage::RequireAll => n,
            Coverage::AtLeast(k) => k,
            Coverage::BestEffort => 1,
        };
        if answers.len() < needed {
            let detail: Vec<String> = missing
                .iter()
                .map(|(i, e)| format!("shard {i}: {e}"))
                .collect();
            return Err(self.name_leaves(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "coverage {}/{n} does not meet the policy; missing: {}",
                    answers.len(),
                    detail.join("; ")
                ),
            )));
        }
        let lists: Vec<Vec<shardkit::merge::Hit>> = answers
            .iter()
            .map(|(i, a)| a.merge_hits(*i as u32))
            .collect();
        let refs: Vec<&[shardkit::merge::Hit]> = lists.iter().map(Vec::as_slice).collect();
        let page = shardkit::merge::top_k(&refs, req.offset, req.k)?;
        let names: HashMap<(u32, u64), &str> = answers
            .iter()
            .flat_map(|(i, a)| {
                a.hits
                    .iter()
                    .map(move |h| ((*i as u32, h.doc), h.name.as_str()))
            })
            .collect();
        let hits = page
            .iter()
            .map(|h| PageHit {
                name: names[&(h.shard, h.doc)].to_string(),
                doc: h.doc,
                shard: h.shard,
                score: h.score,
            })
            .collect();
        let answered = answers.len();
        Ok(Page {
            query: req.q.clone(),
            op: req.op.name(),
            k: req.k,
            offset: req.offset,
            hits,
            total: answers.iter().map(|(_, a)| a.total).sum(),
            coverage: PageCoverage { answered, total: n },
            degraded: answered < n,
            missing: missing
                .iter()
                .map(|(i, e)| PageMissing {
                    leaf: *i,
                    url: self.urls[*i].join("|"),
                    error: e.to_string(),
                })
                .collect(),
            // Microseconds are plenty; more digits are noise.
            took_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        })
    }
}

/// The root's answer. A struct rather than `json!` so fields keep this
/// order and scores print as the leaves' `f32`s (shortest form).
#[derive(Serialize)]
struct Page {
    query: String,
    op: &'static str,
    k: usize,
    offset: usize,
    hits: Vec<PageHit>,
    /// Matches summed over the shards that answered.
    total: u64,
    coverage: PageCoverage,
    degraded: bool,
    missing: Vec<PageMissing>,
    took_ms: f64,
}

#[derive(Serialize)]
struct PageHit {
    name: String,
    doc: u64,
    shard: u32,
    score: f32,
}

#[derive(Serialize)]
struct PageCoverage {
    answered: usize,
    total: usize,
}

#[derive(Serialize)]
struct PageMissing {
    leaf: usize,
    /// The shard's replica URLs, `|`-joined: a timeout names only the leaf.
    url: String,
    error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_parse() {
        let got = parse_leaves("127.0.0.1:1, http://h:2/x|127.0.0.1:3").unwrap();
        assert_eq!(
            got,
            vec![
                vec!["http://127.0.0.1:1/search".to_string()],
                vec![
                    "http://h:2/x".to_string(),
                    "http://127.0.0.1:3/search".to_string()
                ],
            ]
        );
        for bad in ["", "a:1,,b:2", "a:1|", "a:1/search"] {
            let e = parse_leaves(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn coverage_parses() {
        assert_eq!(parse_coverage("all", 3).unwrap(), Coverage::RequireAll);
        assert_eq!(
            parse_coverage("best-effort", 3).unwrap(),
            Coverage::BestEffort
        );
        assert_eq!(parse_coverage("2", 3).unwrap(), Coverage::AtLeast(2));
        for bad in ["0", "4", "most", ""] {
            assert!(parse_coverage(bad, 3).is_err(), "{bad}");
        }
    }
}
