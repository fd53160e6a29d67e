//! `shardkit plan`: for one membership change, how every algorithm balances
//! before and after and how many keys it moves.

use crate::{CliError, SourceArgs};
use shardkit::shard::ALGORITHM_NAMES;
use shardkit::{Change, Node, ShardConfig, Sharder};
use std::io::Write;

#[derive(clap::Args, Debug)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Add a node, "name[=weight]" (repeatable).
    #[arg(long, value_name = "NODE")]
    add: Vec<String>,
    /// Remove a node by name (repeatable).
    #[arg(long, value_name = "NAME")]
    remove: Vec<String>,
    /// Change a node's weight, "name=weight" (repeatable).
    #[arg(long, value_name = "NAME=W")]
    reweight: Vec<String>,
    /// Keys sampled for balance and movement.
    #[arg(long, default_value_t = 200_000)]
    samples: usize,
    /// Only these algorithms, comma-separated (default: all).
    #[arg(long, value_name = "LIST")]
    algorithms: Option<String>,
    /// Output format.
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
    outcome: Result<Figures, String>,
}

struct Figures {
    before: shardkit::Balance,
    after: shardkit::Balance,
    movement: shardkit::Movement,
}

/// Peak-to-mean at or under this counts as acceptably balanced in the summary.
const ACCEPTABLE_PEAK: f64 = 1.10;

pub(crate) fn run(args: PlanArgs) -> Result<(), CliError> {
    let base = args.source.sharder()?;
    let changes = changes(&args)?;
    if changes.is_empty() {
        return Err(shardkit::Error::invalid(
            "no change to plan: pass --add, --remove or --reweight",
        )
        .into());
    }
    // Validate the change once against the given set, so a typo is an error
    // rather than a row of identical failures.
    base.apply(&changes)?;
    let nodes: Vec<Node> = base.nodes().cloned().collect();
    let names: Vec<String> = match &args.algorithms {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => ALGORITHM_NAMES.iter().map(|s| s.to_string()).collect(),
    };
    let mut rows = Vec::new();
    if args.source.nodes.is_none() {
        rows.push(Row {
            algorithm: format!("{} (as configured)", base.algorithm()),
            outcome: figures(&base, &changes, args.samples),
        });
    }
    for name in names {
        let cfg = ShardConfig::from_names(Some(&name), None, None)?;
        let outcome = Sharder::new(nodes.clone(), cfg)
            .map_err(|e| e.message().to_string())
            .and_then(|s| figures(&s, &changes, args.samples));
        rows.push(Row {
            algorithm: name,
            outcome,
        });
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Table => table(&mut out, &base, &changes, args.samples, &rows)?,
        Format::Tsv => tsv(&mut out, &rows)?,
        Format::Json => json(&mut out, &rows)?,
    }
    out.flush()?;
    Ok(())
}

fn changes(args: &PlanArgs) -> shardkit::Result<Vec<Change>> {
    let mut changes = Vec::new();
    for spec in &args.add {
        changes.push(Change::Add(Node::parse(spec)?));
    }
    for name in &args.remove {
        changes.push(Change::Remove(name.clone()));
    }
    for spec in &args.reweight {
        let node = Node::parse(spec)?;
        if !spec.contains('=') {
            return Err(shardkit::Error::invalid(format!(
                "--reweight takes NAME=WEIGHT, got {spec:?}"
            )));
        }
        changes.push(Change::Reweight(
            node.name().to_string(),
            node.weight() as i64,
        ));
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

fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| match c {
            Change::Add(n) => format!("add {}={}", n.name(), n.weight()),
            Change::Remove(n) => format!("remove {n}"),
            Change::Reweight(n, w) => format!("reweight {n}={w}"),
            Change::Down(n) => format!("down {n}"),
            Change::Up(n) => format!("up {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn table(
    out: &mut impl Write,
    base: &Sharder,
    changes: &[Change],
    samples: usize,
    rows: &[Row],
) -> std::io::Result<()> {
    writeln!(
        out,
        "{} nodes, change: {}; {} sampled keys. Balance is peak-to-mean load (1.000 is perfect).",
        base.len(),
        describe(changes),
        samples
    )?;
    let width = rows
        .iter()
        .map(|r| r.algorithm.len())
        .max()
        .unwrap_or(9)
        .max(9);
    writeln!(
        out,
        "{:<width$}  {:>10} {:>8}  {:>10} {:>8}  {:>8} {:>8} {:>7}",
        "algorithm", "peak/mean", "stddev", "peak/mean", "stddev", "moved", "minimum", "excess"
    )?;
    writeln!(
        out,
        "{:<width$}  {:>19}  {:>19}",
        "", "------ before -----", "------ after ------"
    )?;
    for r in rows {
        match &r.outcome {
            Ok(f) => writeln!(
                out,
                "{:<width$}  {:>10.3} {:>8.3}  {:>10.3} {:>8.3}  {:>8} {:>8} {:>7}",
                r.algorithm,
                f.before.peak_to_mean,
                f.before.stddev,
                f.after.peak_to_mean,
                f.after.stddev,
                pct(f.movement.fraction),
                pct(f.movement.minimum),
                excess(&f.movement),
            )?,
            Err(why) => writeln!(out, "{:<width$}  skipped: {why}", r.algorithm)?,
        }
    }
    let best = rows
        .iter()
        .filter_map(|r| r.outcome.as_ref().ok().map(|f| (r, f)))
        .filter(|(_, f)| f.after.peak_to_mean <= ACCEPTABLE_PEAK)
        .min_by(|a, b| a.1.movement.fraction.total_cmp(&b.1.movement.fraction));
    match best {
        Some((r, f)) => writeln!(
            out,
            "\nLeast movement with peak/mean <= {ACCEPTABLE_PEAK:.2} after the change: {} ({} of keys move; the minimum is {}).",
            r.algorithm,
            pct(f.movement.fraction),
            pct(f.movement.minimum)
        )?,
        None => writeln!(out, "\nNo algorithm keeps peak/mean <= {ACCEPTABLE_PEAK:.2} after this change.")?,
    }
    Ok(())
}

/// Moved over the minimum: 1.00x is optimal.
fn excess(m: &shardkit::Movement) -> String {
    if m.minimum > 0.0 {
        format!("{:.2}x", m.fraction / m.minimum)
    } else {
        "-".to_string()
    }
}

fn tsv(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "algorithm\tbefore_peak_to_mean\tbefore_stddev\tafter_peak_to_mean\tafter_stddev\tmoved_fraction\tminimum_fraction\tskipped"
    )?;
    for r in rows {
        match &r.outcome {
            Ok(f) => writeln!(
                out,
                "{}\t{:.6}\t{:.6}\t{:.6}\t{:.6}\t{:.6}\t{:.6}\t",
                r.algorithm,
                f.before.peak_to_mean,
                f.before.stddev,
                f.after.peak_to_mean,
                f.after.stddev,
                f.movement.fraction,
                f.movement.minimum
            )?,
            Err(why) => writeln!(out, "{}\t\t\t\t\t\t\t{why}", r.algorithm)?,
        }
    }
    Ok(())
}

fn json(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| match &r.outcome {
            Ok(f) => serde_json::json!({
                "algorithm": r.algorithm,
                "before": {"peak_to_mean": f.before.peak_to_mean, "stddev": f.before.stddev},
                "after": {"peak_to_mean": f.after.peak_to_mean, "stddev": f.after.stddev},
                "moved_fraction": f.movement.fraction,
                "minimum_fraction": f.movement.minimum,
                "samples": f.movement.samples,
            }),
            Err(why) => serde_json::json!({"algorithm": r.algorithm, "skipped": why}),
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &rows)?;
    writeln!(out)
}
