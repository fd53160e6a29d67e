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
use shardkit::scatter::Coverage;
use shardkit::search::{parse_leaves, Op, SearchRequest, SearchRoot};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
--leaves lists one item per shard, in shard order (item i must be the leaf started with \
--shard i/N); replicas of one shard are joined with `|`. An item is a URL \
(http://host:port/search) or a bare host:port, which means http://host:port/search.

Coverage: `all` needs every shard; `best-effort` takes whatever answered by the \
deadline (at least one shard); K (or K/N, N the number of shards) needs at least K \
shards. Missing shards are listed \
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
    /// How many shards must answer: all, best-effort, K or K/N.
    #[arg(
        long,
        default_value = "best-effort",
        value_name = "all|best-effort|K|K/N"
    )]
    coverage: String,
    /// Hedge a slow leaf call to another replica of its shard (at the leaf's p95, once
    /// 20 calls have been timed: so with --listen, not for a single --query).
    #[arg(long)]
    hedge: bool,
    /// Serve POST /search (the leaf request shape) here instead of one --query.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

/// Runs one query (exit 0 with JSON on stdout, 1 with a message on
/// stderr) or, with --listen, serves until killed.
pub(crate) fn run(args: SearchRootArgs) -> ExitCode {
    let result = new_root(&args).and_then(|root| match &args.listen {
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

fn one_query(root: &SearchRoot, args: &SearchRootArgs) -> std::result::Result<(), String> {
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

fn serve(root: SearchRoot, listen: &str) -> std::result::Result<(), String> {
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

async fn search(State(root): State<Arc<SearchRoot>>, body: Bytes) -> Response {
    let out = match SearchRequest::from_json(&body) {
        Ok(req) => root.search(&req).await,
        Err(e) => Err(e),
    };
    match out {
        Ok(page) => json_response(StatusCode::OK, encode(&page)),
        Err(e) => error_response(&e),
    }
}

fn new_root(args: &SearchRootArgs) -> std::result::Result<SearchRoot, String> {
    let urls = parse_leaves(&args.leaves).map_err(|e| format!("--leaves: {}", e.message()))?;
    let coverage =
        Coverage::parse(&args.coverage, urls.len()).map_err(|e| format!("--{}", e.message()))?;
    let deadline = shardkit::fanout::parse_duration(&args.deadline)
        .map_err(|e| format!("--deadline: {}", e.message()))?;
    if deadline.is_zero() {
        return Err(format!("--deadline {:?}: must be positive", args.deadline));
    }
    SearchRoot::new(urls, deadline, coverage, args.hedge).map_err(|e| format!("--leaves: {e}"))
}
