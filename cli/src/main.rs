//! `shardkit`: the operator's command. Argument parsing and output only; every
//! placement decision is made by the `shardkit` core crate.

// Running a command under a lock needs Unix processes and signals.
#[cfg(unix)]
mod child;
#[cfg(unix)]
mod coord;
#[cfg(unix)]
mod http_proxy;
mod leaves;
#[cfg(unix)]
mod pipeline;
mod plan;
mod proxy;
mod route;
mod search_leaf;
mod search_root;
#[cfg(unix)]
mod signals;

use clap::{ArgGroup, Parser, Subcommand};
use shardkit::config::{nginx, twemproxy};
use shardkit::{Node, ShardConfig, Sharder};
use std::process::ExitCode;

/// Exit status for bad input found by core (missing file, bad weight, ...).
/// clap exits 2 on usage errors (unknown flag, missing node source).
const EXIT_ERROR: u8 = 1;

#[derive(Parser)]
#[command(
    name = "shardkit",
    version,
    about = "Sharding, scatter/gather and ownership election: the shardkit engine's command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the server each key maps to (KEY<TAB>SERVER), as twemproxy, nginx or any algorithm would route it.
    Route(route::RouteArgs),
    /// Compare every algorithm's balance and key movement for a planned membership change.
    Plan(plan::PlanArgs),
    /// Predict gather latency percentiles for 1..N leaves, with and without hedging, from a leaf's p50 and p99.
    Leaves(leaves::LeavesArgs),
    /// Serve one shard of a document corpus for distributed search (POST /search).
    SearchLeaf(search_leaf::SearchLeafArgs),
    /// Scatter a search to the shards' leaves, merge their top hits, print (or serve) JSON.
    SearchRoot(search_root::SearchRootArgs),
    #[cfg(unix)]
    /// Shard HTTP requests over backends by a key (the URI by default), as nginx's `hash $request_uri consistent` places them (SIGHUP reloads --upstream-file).
    HttpProxy(http_proxy::HttpProxyArgs),
    #[cfg(unix)]
    /// Register a backend in an etcd group that `http-proxy --group` follows, until SIGTERM (a crash leaves it for --ttl).
    HttpRegister(http_proxy::RegisterArgs),
    #[cfg(unix)]
    /// Serve memcache and Redis pools as a nutcracker drop-in (nutcracker's YAML; SIGHUP reloads it).
    Proxy(proxy::ProxyArgs),
    #[cfg(unix)]
    /// Run event pipeline stages from a pipeline file (Redis Streams or in-process), at-least-once.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    #[cfg(unix)]
    /// Publish CloudEvents to a topic: one from flags, or JSON lines from stdin.
    #[command(subcommand)]
    Events(pipeline::EventsCommand),
    #[cfg(unix)]
    /// List, show and redrive a dead-letter topic's events.
    #[command(subcommand)]
    Dlq(pipeline::DlqCommand),
    #[cfg(unix)]
    /// Run a command while holding a distributed lock on etcd; its fencing token is in SHARDKIT_FENCING_TOKEN.
    Lock(coord::LockArgs),
    #[cfg(unix)]
    /// Run a command while leading an election on etcd; resign when it exits.
    Elect(coord::ElectArgs),
    #[cfg(unix)]
    /// Print an election's leader (VALUE<TAB>REVISION<TAB>LEASE) or "no leader"; --watch follows changes.
    Leader(coord::LeaderArgs),
}

/// The process's allocator (see cli/Cargo.toml: events freed across
/// threads).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One prefix for every error the command prints, usage or not,
            // so scripts can grep for it.
            eprint!("shardkit: {}", e.render());
            return ExitCode::from(e.exit_code().clamp(1, 255) as u8);
        }
        // --help and --version.
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let result = match cli.command {
        Command::Route(args) => route::run(args),
        Command::Plan(args) => plan::run(args),
        // Exits 2 on bad input, like a usage error (see its --help).
        Command::Leaves(args) => return leaves::run(args),
        Command::SearchLeaf(args) => return search_leaf::run(args),
        Command::SearchRoot(args) => return search_root::run(args),
        // These choose their own exit statuses (see their --help).
        #[cfg(unix)]
        Command::HttpProxy(args) => return http_proxy::run(args),
        #[cfg(unix)]
        Command::HttpRegister(args) => return http_proxy::register(args),
        #[cfg(unix)]
        Command::Proxy(args) => return proxy::run(args),
        #[cfg(unix)]
        Command::Pipeline(cmd) => return pipeline::pipeline(cmd),
        #[cfg(unix)]
        Command::Events(cmd) => return pipeline::events(cmd),
        #[cfg(unix)]
        Command::Dlq(cmd) => return pipeline::dlq(cmd),
        #[cfg(unix)]
        Command::Lock(args) => return coord::lock(args),
        #[cfg(unix)]
        Command::Elect(args) => return coord::elect(args),
        #[cfg(unix)]
        Command::Leader(args) => return coord::leader(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `shardkit route ... | head` closing the pipe early is not an error.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardkit: error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Errors a subcommand reports: core's, or reading input / writing output.
#[derive(Debug)]
pub(crate) enum CliError {
    Core(shardkit::Error),
    Input(std::io::Error),
    Output(std::io::Error),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Core(e) => write!(f, "{e}"),
            CliError::Input(e) => write!(f, "reading keys from stdin: {e}"),
            CliError::Output(e) => write!(f, "writing output: {e}"),
        }
    }
}

impl From<shardkit::Error> for CliError {
    fn from(e: shardkit::Error) -> Self {
        CliError::Core(e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Output(e)
    }
}

/// Where a node set comes from: shared by `route` and `plan`. Exactly one of
/// --config, --nginx and --nodes is required.
#[derive(clap::Args, Debug)]
#[group(skip)]
#[command(group(
    ArgGroup::new("source")
        .args(["config", "nginx", "nodes"])
        .required(true)
        .multiple(false)
))]
pub(crate) struct SourceArgs {
    /// A twemproxy (nutcracker) YAML file.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// The pool to use from --config (default: the first).
    // Not `requires = "config"`: clap lets any member of the "source" group
    // satisfy that (clap-rs/clap#4707). Conflicts plus the required group
    // say the same thing and are enforced.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["nginx", "nodes"])]
    pool: Option<String>,
    /// An nginx `hash $key consistent` upstream: "host:port [weight=N],...".
    #[arg(long, value_name = "LIST")]
    nginx: Option<String>,
    /// Nodes as "name[=weight],...", placed with --algorithm.
    #[arg(long, value_name = "LIST")]
    nodes: Option<String>,
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "config",
        help = format!(
            "Sharding algorithm for --nodes (default: {}) or --nginx (default: ketama:nginx, nginx's own): {}; maglev:TABLE_SIZE and bounded:LOAD_FACTOR set a parameter",
            shardkit::shard::DEFAULT_ALGORITHM,
            shardkit::shard::ALGORITHM_NAMES.join(", ")
        )
    )]
    algorithm: Option<String>,
    /// Key hash for --nodes (default: the algorithm's; e.g. xxh3, xxh3:SEED, fnv1a_64, md5, crc32).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["config", "nginx"])]
    hash: Option<String>,
    /// Hash-tag delimiters for --nodes, e.g. "{}": only the part of a key between them is hashed.
    #[arg(long, value_name = "TWO CHARS", conflicts_with_all = ["config", "nginx"])]
    hash_tag: Option<String>,
}

/// Which syntax the node set was given in; `plan --add` takes the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Twemproxy,
    Nginx,
    Nodes,
}

impl SourceArgs {
    pub(crate) fn kind(&self) -> SourceKind {
        if self.config.is_some() {
            SourceKind::Twemproxy
        } else if self.nginx.is_some() {
            SourceKind::Nginx
        } else {
            SourceKind::Nodes
        }
    }

    /// The configuration --nodes, --algorithm, --hash and --hash-tag describe,
    /// with `algorithm` standing in for --algorithm when given.
    pub(crate) fn shard_config(&self, algorithm: Option<&str>) -> shardkit::Result<ShardConfig> {
        ShardConfig::from_names(
            algorithm.or(self.algorithm.as_deref()),
            self.hash.as_deref(),
            self.hash_tag.as_deref(),
        )
    }

    /// Builds the sharder the arguments describe.
    pub(crate) fn sharder(&self) -> shardkit::Result<Sharder> {
        if let Some(path) = &self.config {
            let pools = twemproxy::load_pools(path)?;
            return Ok(twemproxy::select_pool(pools, self.pool.as_deref())?.sharder);
        }
        if let Some(list) = &self.nginx {
            // The same servers, placed by another algorithm when asked (as
            // `http-proxy --algorithm` and the nginx Lua module do).
            return match &self.algorithm {
                Some(a) => {
                    nginx::parse_upstream_with(list, shardkit::shard::Algorithm::from_name(a)?)
                }
                None => nginx::parse_upstream(list),
            };
        }
        if let Some(list) = &self.nodes {
            return Sharder::new(
                shardkit::node::parse_node_list(list)?,
                self.shard_config(None)?,
            );
        }
        // clap's "source" group makes this unreachable from the command line.
        Err(shardkit::Error::invalid(
            "no node set given: pass --config FILE, --nginx LIST or --nodes LIST",
        ))
    }
}

/// Parses one node in the syntax of the source: a twemproxy server entry
/// (`host:port:weight [alias]`, hashed onto rings as nutcracker does), an
/// nginx server (`host:port [weight=N]`), or `name[=weight]`.
pub(crate) fn parse_node(kind: SourceKind, spec: &str) -> shardkit::Result<Node> {
    match kind {
        SourceKind::Twemproxy => twemproxy::Server::parse(spec.trim())?.node(),
        SourceKind::Nginx => {
            let servers = nginx::parse_servers(spec)?;
            match servers.as_slice() {
                [s] if s.down => Err(shardkit::Error::invalid(format!(
                    "a server added as down takes no keys, so there is nothing to plan: {spec:?}"
                ))),
                [s] => s.node(),
                _ => Err(shardkit::Error::invalid(format!(
                    "expected one nginx server, got {} in {spec:?}",
                    servers.len()
                ))),
            }
        }
        SourceKind::Nodes => Node::parse(spec),
    }
}
