//! `shardkit leaves`: how gather latency grows with the number of leaves, with
//! and without hedging, from a leaf's p50 and p99 (the model is core's
//! `shardkit::fanout`).

use serde_json::json;
use shardkit::fanout::{self, GatherModel, GatherPrediction, HedgeAt, LeafLatency};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Bad input gets the same status clap gives a usage error: the command
/// line was wrong, and scripts can tell it from a failure to write output.
const EXIT_USAGE: u8 = 2;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
The leaf latency is modelled as log-normal through the given p50 and p99. A gather \
waits for all n leaves; hedging re-sends a leaf's request to another replica once it \
has waited --hedge-at, and takes the first answer. \"hedge load\" is the share of leaf \
calls that send a hedge. The model assumes leaves and replicas are slow independently; \
correlated stalls make real tails worse.

Examples:
  shardkit leaves --p50 5ms --p99 50ms --max-leaves 64
  shardkit leaves --p50 250us --p99 4ms --hedge-at 2ms --percentiles 50,99,99.99 --format json")]
pub(crate) struct LeavesArgs {
    /// A leaf's median latency, e.g. 5ms, 250us, 0.5s.
    #[arg(long, value_name = "DURATION")]
    p50: String,
    /// A leaf's 99th-percentile latency (greater than --p50).
    #[arg(long, value_name = "DURATION")]
    p99: String,
    /// The widest fan-out to tabulate: rows for 1, 2, 4, ... and this.
    #[arg(long, default_value_t = 64, value_name = "N")]
    max_leaves: u64,
    /// When to hedge: a percentile of the leaf's latency (p95) or a delay (10ms).
    #[arg(long, default_value = "p95", value_name = "pNN|DURATION")]
    hedge_at: String,
    /// Gather latency percentiles to predict, comma-separated.
    #[arg(long, default_value = "50,99,99.9", value_name = "LIST")]
    percentiles: String,
    /// Output format: an aligned table, or JSON (durations in milliseconds).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Table,
    Json,
}

/// Runs `shardkit leaves`; bad input exits 2, like a usage error.
pub(crate) fn run(args: LeavesArgs) -> ExitCode {
    let (predictions, percentiles) = match predict(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shardkit: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match args.format {
        Format::Table => write_table(&mut out, &predictions, &percentiles),
        Format::Json => write_json(&mut out, &predictions, &percentiles),
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardkit: error: writing output: {e}");
            ExitCode::from(1)
        }
    }
}

fn predict(args: &LeavesArgs) -> shardkit::Result<(Vec<GatherPrediction>, Vec<f64>)> {
    let p50 = fanout::parse_duration(&args.p50)
        .map_err(|e| shardkit::Error::invalid(format!("--p50: {}", e.message())))?;
    let p99 = fanout::parse_duration(&args.p99)
        .map_err(|e| shardkit::Error::invalid(format!("--p99: {}", e.message())))?;
    if p50.is_zero() {
        return Err(shardkit::Error::invalid(format!(
            "--p50 must be greater than zero, got {:?}",
            args.p50
        )));
    }
    if p99 <= p50 {
        return Err(shardkit::Error::invalid(format!(
            "--p99 ({:?}) must be greater than --p50 ({:?})",
            args.p99, args.p50
        )));
    }
    if args.max_leaves == 0 || args.max_leaves > 1 << 20 {
        return Err(shardkit::Error::invalid(format!(
            "--max-leaves must be between 1 and {}, got {}",
            1 << 20,
            args.max_leaves
        )));
    }
    let hedge = parse_hedge_at(&args.hedge_at)?;
    let percentiles = parse_percentiles(&args.percentiles)?;
    let model = GatherModel::new(LeafLatency::log_normal(p50, p99)?);
    let predictions = fanout::leaf_counts(args.max_leaves as usize)
        .into_iter()
        .map(|n| model.predict(n, &percentiles, hedge))
        .collect::<shardkit::Result<Vec<_>>>()?;
    Ok((predictions, percentiles))
}

fn parse_hedge_at(text: &str) -> shardkit::Result<HedgeAt> {
    if let Some(p) = text.trim().strip_prefix('p') {
        return match p.parse::<f64>() {
            Ok(p) if p > 0.0 && p < 100.0 => Ok(HedgeAt::Quantile(p / 100.0)),
            _ => Err(shardkit::Error::invalid(format!(
                "--hedge-at {text:?}: a percentile must be p followed by a number between 0 and 100, e.g. p95"
            ))),
        };
    }
    let d = fanout::parse_duration(text)
        .map_err(|e| shardkit::Error::invalid(format!("--hedge-at: {}", e.message())))?;
    if d.is_zero() {
        // Hedging at zero sends every request twice: not a hedge.
        return Err(shardkit::Error::invalid(format!(
            "--hedge-at must be greater than zero, got {text:?}"
        )));
    }
    Ok(HedgeAt::Delay(d))
}

fn parse_percentiles(text: &str) -> shardkit::Result<Vec<f64>> {
    let mut out = Vec::new();
    for item in text.split(',') {
        match item.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p < 100.0 => out.push(p),
            _ => {
                return Err(shardkit::Error::invalid(format!(
                    "--percentiles: {item:?} is not a percentile strictly between 0 and 100"
                )))
            }
        }
    }
    Ok(out)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A duration for the table: three significant figures in a fitting unit.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    let (v, unit) = if s >= 1.0 {
        (s, "s")
    } else if s >= 1e-3 {
        (s * 1e3, "ms")
    } else {
        (s * 1e6, "us")
    };
    let decimals = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.decimals$}{unit}")
}

fn label(p: f64) -> String {
    format!("p{p}")
}

fn write_table(
    out: &mut impl Write,
    rows: &[GatherPrediction],
    percentiles: &[f64],
) -> std::io::Result<()> {
    let mut header = vec!["leaves".to_string()];
    header.extend(percentiles.iter().map(|&p| label(p)));
    header.extend(percentiles.iter().map(|&p| format!("hedged {}", label(p))));
    header.push("hedge load".to_string());
    let mut cells: Vec<Vec<String>> = vec![header];
    for r in rows {
        let mut row = vec![r.leaves.to_string()];
        row.extend(r.unhedged.iter().map(|&d| human(d)));
        row.extend(r.hedged.iter().map(|&d| human(d)));
        row.push(format!("{:.1}%", r.hedge_extra_load * 100.0));
        cells.push(row);
    }
    let widths: Vec<usize> = (0..cells[0].len())
        .map(|c| cells.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell:>w$}"))
            .collect();
        writeln!(out, "{}", line.join("  "))?;
    }
    if let Some(r) = rows.first() {
        writeln!(
            out,
            "\nhedged: a second request to another replica after {} without an answer; first answer wins.",
            human(r.hedge_delay)
        )?;
    }
    Ok(())
}

fn write_json(
    out: &mut impl Write,
    rows: &[GatherPrediction],
    percentiles: &[f64],
) -> std::io::Result<()> {
    let hedge_delay_ms = rows.first().map(|r| millis(r.hedge_delay));
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            let by_label = |v: &[Duration]| {
                percentiles
                    .iter()
                    .zip(v)
                    .map(|(&p, &d)| (label(p), json!(millis(d))))
                    .collect::<serde_json::Map<_, _>>()
            };
            json!({
                "leaves": r.leaves,
                "unhedged_ms": by_label(&r.unhedged),
                "hedged_ms": by_label(&r.hedged),
                "hedge_extra_load": r.hedge_extra_load,
            })
        })
        .collect();
    let doc = json!({
        "hedge_delay_ms": hedge_delay_ms,
        "rows": rows,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
