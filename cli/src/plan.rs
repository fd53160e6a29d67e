//! `shardkit plan`: for one membership change, how every algorithm balances
//! before and after and how many keys it moves.

use crate::{parse_node, CliError, SourceArgs, SourceKind};
use clap::ArgGroup;
use shardkit::shard::ALGORITHM_NAMES;
use shardkit::{Balance, Change, Movement, Node, ShardConfig, Sharder};
use std::io::Write;

#[derive(clap::Args, Debug)]
#[group(skip)]
#[command(group(
    ArgGroup::new("change")
        .args(["add", "remove", "reweight"])
        .required(true)
        .multiple(true)
))]
#[command(after_help = "\
The changes are applied as one batch: removals, then additions, then reweights \
(so --remove X --add Y plans a replacement). --add takes a node in the syntax of \
the node set: a twemproxy server entry (\"10.0.0.4:11211:1 [alias]\") with --config, \
an nginx server (\"10.0.0.4:8080 weight=2\") with --nginx, \"name[=weight]\" with --nodes.

Examples:
  shardkit plan --nodes a,b,c,d --add e
  shardkit plan --config nutcracker.yml --pool alpha --remove 127.0.0.1:11213:1
  shardkit plan --nginx \"10.0.0.1:80,10.0.0.2:80\" --reweight 10.0.0.1:80=3 --format json")]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Add a node (repeatable).
    #[arg(long, value_name = "NODE")]
    add: Vec<String>,
    /// Remove a node by name (repeatable).
    #[arg(long, value_name = "NAME")]
    remove: Vec<String>,
    /// Set a node's weight (repeatable).
    #[arg(long, value_name = "NAME=WEIGHT")]
    reweight: Vec<String>,
    /// Synthetic keys sampled for balance and movement.
    #[arg(long, default_value_t = 200_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    samples: u64,
    /// Only these algorithms, comma-separated (default: every one shardkit has).
    #[arg(long, value_name = "LIST")]
    algorithms: Option<String>,
    /// Output format: an aligned table with a summary, or TSV / JSON at full precision for scripts.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Table,
    Tsv,
    Json,
}

/// One algorithm's outcome: figures, or why it cannot take this node set.
struct Row {
    algorithm: String,
    /// The algorithm the node set is configured with (--config, --nginx,
    /// or --nodes with --algorithm), as opposed to an alternative.
    current: bool,
    outcome: Result<Figures, String>,
}

struct Figures {
    before: Balance,
    after: Balance,
    movement: Movement,
}

/// Peak-to-mean at or under this counts as acceptably balanced in the summary.
const ACCEPTABLE_PEAK: f64 = 1.10;

/// What the table and the machine formats describe besides the rows.
struct Plan {
    nodes_before: usize,
    nodes_after: usize,
    changes: Vec<String>,
    samples: usize,
    rows: Vec<Row>,
}

pub(crate) fn run(args: PlanArgs) -> Result<(), CliError> {
    let base = args.source.sharder()?;
    let kind = args.source.kind();
    let changes = changes(&args, kind)?;
    // Checked once against the given set, so a typo is one error rather
    // than a row of identical failures.
    let after = base.apply(&changes)?;
    let samples = args.samples as usize;

    // Every algorithm name is checked before any sampling starts.
    let names: Vec<&str> = match &args.algorithms {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
        None => ALGORITHM_NAMES.to_vec(),
    };
    if names.is_empty() {
        return Err(shardkit::Error::invalid(format!(
            "--algorithms names no algorithm, got {:?}",
            args.algorithms.unwrap_or_default()
        ))
        .into());
    }
    let configs = names
        .iter()
        .map(|name| {
            // With --nodes, --hash and --hash-tag apply to every algorithm;
            // a config file's hash belongs to its own algorithm only.
            let cfg = match kind {
                SourceKind::Nodes => args.source.shard_config(Some(name)),
                _ => ShardConfig::from_names(Some(name), None, None),
            }?;
            Ok((name.to_string(), cfg))
        })
        .collect::<shardkit::Result<Vec<_>>>()?;

    let nodes: Vec<Node> = base.nodes().cloned().collect();
    // Nodes marked down in the source (nginx `down`) stay down under every
    // algorithm, so the comparison is like for like.
    let downs: Vec<Change> = base
        .nodes()
        .filter(|n| base.is_down(n.name()) == Some(true))
        .map(|n| Change::Down(n.name().to_string()))
        .collect();

    let mut rows = Vec::new();
    if kind != SourceKind::Nodes || args.source.algorithm.is_some() {
        rows.push(Row {
            algorithm: base.algorithm().name(),
            current: true,
            outcome: figures(&base, &changes, samples),
        });
    }
    for (name, cfg) in configs {
        let outcome = Sharder::new(nodes.clone(), cfg)
            .and_then(|s| s.apply(&downs))
            .map_err(|e| e.message().to_string())
            .and_then(|s| figures(&s, &changes, samples));
        rows.push(Row {
            algorithm: name,
            current: false,
            outcome,
        });
    }
    let plan = Plan {
        nodes_before: base.len(),
        nodes_after: after.len(),
        changes: changes.iter().map(describe).collect(),
        samples,
        rows,
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Table => table(&mut out, &plan)?,
        Format::Tsv => tsv(&mut out, &plan)?,
        Format::Json => json(&mut out, &plan)?,
    }
    out.flush()?;
    Ok(())
}

/// The batch to apply: removals first, so that removing one node and adding
/// another plans a replacement (Memento refills the freed slot).
fn changes(args: &PlanArgs, kind: SourceKind) -> shardkit::Result<Vec<Change>> {
    let mut changes = Vec::new();
    for name in &args.remove {
        changes.push(Change::Remove(name.trim().to_string()));
    }
    for spec in &args.add {
        changes.push(Change::Add(parse_node(kind, spec)?));
    }
    for spec in &args.reweight {
        if !spec.contains('=') {
            return Err(shardkit::Error::invalid(format!(
                "--reweight takes NAME=WEIGHT, got {spec:?}"
            )));
        }
        let node = Node::parse(spec)?;
        let (name, weight) = (node.name(), node.weight() as i64);
        changes.push(Change::Reweight(name.to_string(), weight));
    }
    Ok(changes)
}

fn figures(s: &Sharder, changes: &[Change], samples: usize) -> Result<Figures, String> {
    let run = || -> shardkit::Result<Figures> {
        let next = s.apply(changes)?;
        Ok(Figures {
            before: s.balance(samples)?,
            after: next.balance(samples)?,
            movement: s.movement(&next, samples)?,
        })
    };
    run().map_err(|e| e.message().to_string())
}

fn describe(c: &Change) -> String {
    match c {
        Change::Add(n) => format!("add {}={}", n.name(), n.weight()),
        Change::Remove(n) => format!("remove {n}"),
        Change::Reweight(n, w) => format!("reweight {n}={w}"),
        Change::Down(n) => format!("down {n}"),
        Change::Up(n) => format!("up {n}"),
    }
}

impl Plan {
    /// The row with least movement among those balanced within
    /// [`ACCEPTABLE_PEAK`] after the change.
    fn best(&self) -> Option<(&Row, &Figures)> {
        self.rows
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok().map(|f| (r, f)))
            .filter(|(_, f)| f.after.peak_to_mean <= ACCEPTABLE_PEAK)
            .min_by(|a, b| a.1.movement.fraction.total_cmp(&b.1.movement.fraction))
    }
}

impl Row {
    fn label(&self) -> String {
        if self.current {
            format!("{} (current)", self.algorithm)
        } else {
            self.algorithm.clone()
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Moved over the minimum: 1.00x is optimal.
fn excess(m: &Movement) -> String {
    if m.minimum > 0.0 {
        format!("{:.2}x", m.fraction / m.minimum)
    } else {
        "-".to_string()
    }
}

fn table(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    writeln!(
        out,
        "Plan: {}; {} -> {} nodes; {} sampled keys.",
        plan.changes.join(", "),
        plan.nodes_before,
        plan.nodes_after,
        plan.samples
    )?;
    writeln!(
        out,
        "Balance: each node's load over its weighted fair share, peak/mean and stddev (1.000 and 0.000 are perfect).\n\
         Moved: share of keys that change node; minimum: the share of weight that changes hands; excess: moved/minimum.\n"
    )?;
    let w = plan
        .rows
        .iter()
        .map(|r| r.label().len())
        .chain(["algorithm".len()])
        .max()
        .unwrap_or(0);
    writeln!(
        out,
        "{:<w$}  {:-^18}  {:-^18}  {:-^25}",
        "", " before ", " after ", " keys moved "
    )?;
    writeln!(
        out,
        "{:<w$}  {:>9} {:>8}  {:>9} {:>8}  {:>8} {:>8} {:>7}",
        "algorithm", "peak/mean", "stddev", "peak/mean", "stddev", "moved", "minimum", "excess"
    )?;
    for r in &plan.rows {
        match &r.outcome {
            Ok(f) => writeln!(
                out,
                "{:<w$}  {:>9.3} {:>8.3}  {:>9.3} {:>8.3}  {:>8} {:>8} {:>7}",
                r.label(),
                f.before.peak_to_mean,
                f.before.stddev,
                f.after.peak_to_mean,
                f.after.stddev,
                pct(f.movement.fraction),
                pct(f.movement.minimum),
                excess(&f.movement),
            )?,
            Err(why) => writeln!(out, "{:<w$}  skipped: {why}", r.label())?,
        }
    }
    match plan.best() {
        Some((r, f)) => writeln!(
            out,
            "\nLeast movement at peak/mean <= {ACCEPTABLE_PEAK:.2} after the change: {}, moving {} of keys (minimum {}).",
            r.label(),
            pct(f.movement.fraction),
            pct(f.movement.minimum)
        ),
        None => writeln!(
            out,
            "\nNo algorithm keeps peak/mean <= {ACCEPTABLE_PEAK:.2} after this change."
        ),
    }
}

fn tsv(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    writeln!(
        out,
        "algorithm\tcurrent\tbefore_peak_to_mean\tbefore_min_to_mean\tbefore_stddev\t\
         after_peak_to_mean\tafter_min_to_mean\tafter_stddev\tmoved_fraction\tminimum_fraction\tskipped"
    )?;
    for r in &plan.rows {
        match &r.outcome {
            Ok(f) => writeln!(
                out,
                "{}\t{}\t{:.6}\t{:.6}\t{:.6}\t{:.6}\t{:.6}\t{:.6}\t{:.6}\t{:.6}\t",
                r.algorithm,
                r.current,
                f.before.peak_to_mean,
                f.before.min_to_mean,
                f.before.stddev,
                f.after.peak_to_mean,
                f.after.min_to_mean,
                f.after.stddev,
                f.movement.fraction,
                f.movement.minimum
            )?,
            // Reasons come from core and never hold tabs or newlines, but a
            // row must stay one line whatever they hold.
            Err(why) => writeln!(
                out,
                "{}\t{}\t\t\t\t\t\t\t\t\t{}",
                r.algorithm,
                r.current,
                why.replace(['\t', '\n', '\r'], " ")
            )?,
        }
    }
    Ok(())
}

fn json(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    let balance = |b: &Balance| {
        serde_json::json!({
            "peak_to_mean": b.peak_to_mean,
            "min_to_mean": b.min_to_mean,
            "stddev": b.stddev,
        })
    };
    let rows: Vec<serde_json::Value> = plan
        .rows
        .iter()
        .map(|r| match &r.outcome {
            Ok(f) => serde_json::json!({
                "algorithm": r.algorithm,
                "current": r.current,
                "before": balance(&f.before),
                "after": balance(&f.after),
                "moved_fraction": f.movement.fraction,
                "minimum_fraction": f.movement.minimum,
            }),
            Err(why) => serde_json::json!({
                "algorithm": r.algorithm,
                "current": r.current,
                "skipped": why,
            }),
        })
        .collect();
    let doc = serde_json::json!({
        "changes": plan.changes,
        "nodes_before": plan.nodes_before,
        "nodes_after": plan.nodes_after,
        "samples": plan.samples,
        "acceptable_peak_to_mean": ACCEPTABLE_PEAK,
        "least_movement": plan.best().map(|(r, _)| r.algorithm.clone()),
        "rows": rows,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
