//! `shardkit`: the operator's command. Argument parsing and output only; every
//! placement decision is made by the `shardkit` core crate.

mod plan;
mod route;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "shardkit",
    version,
    about = "Sharding, scatter/gather, pipelines and ownership election: the shardkit engine's command line"
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Route(args) => route::run(args),
        Command::Plan(args) => plan::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `shardkit route ... | head` closing the pipe early is not an error.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardkit: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Errors a subcommand reports: core's, or writing the output.
#[derive(Debug)]
pub(crate) enum CliError {
    Core(shardkit::Error),
    Output(std::io::Error),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Core(e) => write!(f, "{e}"),
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

/// Where a node set comes from: shared by `route` and `plan`.
#[derive(clap::Args, Debug)]
pub(crate) struct SourceArgs {
    /// A twemproxy (nutcracker) YAML file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["nginx", "nodes"])]
    config: Option<std::path::PathBuf>,
    /// The pool to use from --config (default: the first).
    #[arg(long, value_name = "NAME", requires = "config")]
    pool: Option<String>,
    /// An nginx consistent-hash upstream: "host:port [weight=N],...".
    #[arg(long, value_name = "LIST", conflicts_with = "nodes")]
    nginx: Option<String>,
    /// Nodes as "name[=weight],...", placed with --algorithm.
    #[arg(long, value_name = "LIST")]
    nodes: Option<String>,
    /// Sharding algorithm for --nodes (e.g. maglev, jump, ketama:twemproxy, bounded:1.25).
    #[arg(long, value_name = "NAME", requires = "nodes")]
    algorithm: Option<String>,
    /// Key hash for --nodes (e.g. xxh3, xxh3:SEED, fnv1a_64, md5).
    #[arg(long, value_name = "NAME", requires = "nodes")]
    hash: Option<String>,
    /// Hash-tag delimiters for --nodes, e.g. "{}".
    #[arg(long, value_name = "TWO CHARS", requires = "nodes")]
    hash_tag: Option<String>,
}

impl SourceArgs {
    /// Builds the sharder the arguments describe.
    pub(crate) fn sharder(&self) -> shardkit::Result<shardkit::Sharder> {
        use shardkit::config::{nginx, twemproxy};
        if let Some(path) = &self.config {
            let pools = twemproxy::load_pools(path)?;
            return Ok(twemproxy::select_pool(pools, self.pool.as_deref())?.sharder);
        }
        if let Some(list) = &self.nginx {
            return nginx::parse_upstream(list);
        }
        if let Some(list) = &self.nodes {
            let cfg = shardkit::ShardConfig::from_names(
                self.algorithm.as_deref(),
                self.hash.as_deref(),
                self.hash_tag.as_deref(),
            )?;
            return shardkit::Sharder::new(shardkit::node::parse_node_list(list)?, cfg);
        }
        Err(shardkit::Error::invalid(
            "no node set given: pass --config FILE, --nginx LIST or --nodes LIST",
        ))
    }
}
