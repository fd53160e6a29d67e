//! `shardkit search-leaf`: one shard of the distributed document search. It
//! indexes the documents of a corpus file that the placement puts on its
//! shard and answers `POST /search` (core's `shardkit::search` protocol),
//! `GET /healthz` and `GET /stats` over HTTP.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use shardkit::search::{Corpus, Index, SearchRequest, ShardSpec};
use shardkit::ErrorKind;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Documents are placed on shards by jump consistent hash of their name, so every leaf \
reads the whole file and keeps its share. A document's id is its 0-based line number.

Once the index is built the leaf prints `listening on http://ADDR` as the first line on \
stdout (the bound address, so --listen 127.0.0.1:0 picks a free port) and serves:
  POST /search   {\"q\": \"light darkness\", \"op\": \"and\"|\"or\", \"k\": 10, \"offset\": 0, \"postings\": false}
  GET  /healthz  ok
  GET  /stats    documents, terms, postings, build time
A bad request body, k = 0 or a query without terms is answered 400 {\"error\": \"...\"}.

Example:
  shardkit search-leaf --shard 0/3 --docs tests/data/kjv-verses.tsv --listen 127.0.0.1:0")]
pub(crate) struct SearchLeafArgs {
    /// This leaf's shard as i/N (shard i of N, 0-based), e.g. 0/3.
    #[arg(long, value_name = "i/N")]
    shard: String,
    /// The corpus: a TSV file, one `name<TAB>text` document per line.
    #[arg(long, value_name = "PATH")]
    docs: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: String,
}

/// What the handlers share.
struct Leaf {
    index: Index,
    load_ms: f64,
}

/// Runs the leaf until it is killed; exits 1 on bad arguments, an
/// unreadable corpus or an address it cannot bind.
pub(crate) fn run(args: SearchLeafArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardkit: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: SearchLeafArgs) -> Result<(), String> {
    let spec = ShardSpec::parse(&args.shard).map_err(|e| format!("--shard: {}", e.message()))?;
    let started = Instant::now();
    let corpus = Corpus::load(&args.docs).map_err(|e| e.to_string())?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let index = Index::build(&corpus, spec).map_err(|e| e.to_string())?;
    drop(corpus);
    let stats = index.stats();
    eprintln!(
        "shardkit search-leaf {spec}: {} documents, {} terms, {} postings; \
         loaded in {load_ms:.0} ms, indexed in {:.0} ms",
        stats.docs, stats.terms, stats.postings, stats.build_ms
    );
    let leaf = Arc::new(Leaf { index, load_ms });
    let app = Router::new()
        .route("/search", post(search))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/stats", get(stats_handler))
        .with_state(leaf);
    let listen = args.listen;
    shardkit::runtime::block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
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

/// Prints the bound address as the first stdout line, flushed at once:
/// scripts and tests wait for it to learn the port.
pub(crate) fn announce(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the listening address: {e}"))
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `value` as JSON text; straight from the struct (not through
/// `serde_json::Value`, which would widen `f32` scores to long `f64`s).
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("answers hold no maps with non-string keys")
}

/// `{"error": message}` with the status that fits the error's kind.
pub(crate) fn error_response(e: &shardkit::Error) -> Response {
    let status = match e.kind() {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unavailable | ErrorKind::BadResponse => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json_response(status, json!({"error": e.message()}).to_string())
}

async fn search(State(leaf): State<Arc<Leaf>>, body: Bytes) -> Response {
    match SearchRequest::from_json(&body).and_then(|req| leaf.index.answer(&req)) {
        Ok(answer) => json_response(StatusCode::OK, encode(&answer)),
        Err(e) => error_response(&e),
    }
}

async fn stats_handler(State(leaf): State<Arc<Leaf>>) -> Response {
    #[derive(serde::Serialize)]
    struct Stats {
        #[serde(flatten)]
        index: shardkit::search::IndexStats,
        load_ms: f64,
    }
    let stats = Stats {
        index: leaf.index.stats(),
        load_ms: leaf.load_ms,
    };
    json_response(StatusCode::OK, encode(&stats))
}
