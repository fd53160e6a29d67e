//! `shardkit leaves` end to end: table and JSON shape, predictions that grow
//! with the number of leaves, hedging that never hurts, and bad input that
//! exits 2 with a message naming the value.

use std::process::{Command, Output};

fn shardkit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shardkit"))
        .arg("leaves")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    serde_json::from_str(&stdout(&shardkit(&all))).unwrap()
}

/// A table cell such as "12.3ms" in milliseconds.
fn cell_ms(cell: &str) -> f64 {
    for (unit, scale) in [("us", 1e-3), ("ms", 1.0), ("s", 1e3)] {
        if let Some(v) = cell.strip_suffix(unit) {
            if let Ok(v) = v.parse::<f64>() {
                return v * scale;
            }
        }
    }
    panic!("not a duration cell: {cell:?}");
}

#[test]
fn table_has_a_row_per_power_of_two_and_every_column() {
    let out = stdout(&shardkit(&[
        "--p50",
        "5ms",
        "--p99",
        "50ms",
        "--max-leaves",
        "64",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "leaves", "p50", "p99", "p99.9", "hedged", "p50", "hedged", "p99", "hedged", "p99.9",
            "hedge", "load"
        ],
        "{out}"
    );
    let rows: Vec<Vec<&str>> = lines[1..8]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let leaves: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(leaves, ["1", "2", "4", "8", "16", "32", "64"], "{out}");
    for r in &rows {
        assert_eq!(r.len(), 8, "{r:?}");
        // p50 of one leaf is the given p50, hedged or not; load is the hedge
        // at the leaf's p95 firing on 5% of calls.
        assert_eq!(r[7], "5.0%", "{r:?}");
        let plain: Vec<f64> = r[1..4].iter().map(|c| cell_ms(c)).collect();
        let hedged: Vec<f64> = r[4..7].iter().map(|c| cell_ms(c)).collect();
        for (h, p) in hedged.iter().zip(&plain) {
            assert!(h <= p, "hedged above unhedged: {r:?}");
        }
    }
    assert_eq!(cell_ms(rows[0][1]), 5.0, "{out}");
    assert_eq!(cell_ms(rows[0][2]), 50.0, "{out}");
    assert!(
        out.contains("after 25.5ms"),
        "hedge delay at the leaf's p95: {out}"
    );
    // A max that is not a power of two gets its own last row.
    let out = stdout(&shardkit(&[
        "--p50",
        "5ms",
        "--p99",
        "50ms",
        "--max-leaves",
        "10",
    ]));
    let leaves: Vec<&str> = out
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(leaves, ["1", "2", "4", "8", "10"], "{out}");
}

#[test]
fn predictions_grow_with_leaves_and_hedging_helps() {
    let doc = json(&["--p50", "5ms", "--p99", "50ms", "--max-leaves", "1024"]);
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 11);
    let delay = doc["hedge_delay_ms"].as_f64().unwrap();
    assert!((delay - 25.47).abs() < 0.01, "{delay}");
    let mut last = [0.0f64; 3];
    for r in rows {
        for (i, p) in ["p50", "p99", "p99.9"].iter().enumerate() {
            let plain = r["unhedged_ms"][p].as_f64().unwrap();
            let hedged = r["hedged_ms"][p].as_f64().unwrap();
            assert!(plain > last[i], "{p} must grow with leaves: {r}");
            assert!(hedged <= plain, "{r}");
            last[i] = plain;
        }
        // Past the hedge delay the tail is cut: at p99.9 hedging always helps.
        assert!(
            r["hedged_ms"]["p99.9"].as_f64().unwrap() < r["unhedged_ms"]["p99.9"].as_f64().unwrap()
        );
        assert!(
            (r["hedge_extra_load"].as_f64().unwrap() - 0.05).abs() < 1e-4,
            "{r}"
        );
    }
}

#[test]
fn hedge_at_and_percentiles_are_configurable() {
    let doc = json(&[
        "--p50",
        "250us",
        "--p99",
        "0.004s",
        "--max-leaves",
        "4",
        "--hedge-at",
        "2ms",
        "--percentiles",
        "90,99.99",
    ]);
    assert_eq!(doc["hedge_delay_ms"].as_f64().unwrap(), 2.0);
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let keys: Vec<&String> = rows[0]["unhedged_ms"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2);
    assert!(rows[0]["unhedged_ms"]["p90"].is_f64() && rows[0]["hedged_ms"]["p99.99"].is_f64());
    // A later hedge fires less often.
    let load = rows[0]["hedge_extra_load"].as_f64().unwrap();
    assert!(load > 0.0 && load < 0.05, "{load}");
    let p99 = json(&[
        "--p50",
        "5ms",
        "--p99",
        "50ms",
        "--hedge-at",
        "p99",
        "--max-leaves",
        "1",
    ]);
    assert!((p99["hedge_delay_ms"].as_f64().unwrap() - 50.0).abs() < 0.01);
}

#[test]
fn bad_input_exits_2_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["--p50", "50ms", "--p99", "5ms"], "\"5ms\""),
        (&["--p50", "5ms", "--p99", "5ms"], "--p99"),
        (&["--p50", "0ms", "--p99", "5ms"], "\"0ms\""),
        (&["--p50", "5xs", "--p99", "50ms"], "\"5xs\""),
        (&["--p50", "5", "--p99", "50ms"], "no unit"),
        (&["--p50", "5ms", "--p99", "fast"], "\"fast\""),
        (
            &["--p50", "5ms", "--p99", "50ms", "--max-leaves", "0"],
            "got 0",
        ),
        (
            &["--p50", "5ms", "--p99", "50ms", "--max-leaves", "-3"],
            "-3",
        ),
        (
            &["--p50", "5ms", "--p99", "50ms", "--hedge-at", "p150"],
            "\"p150\"",
        ),
        (
            &["--p50", "5ms", "--p99", "50ms", "--hedge-at", "0s"],
            "\"0s\"",
        ),
        (
            &["--p50", "5ms", "--p99", "50ms", "--hedge-at", "soon"],
            "\"soon\"",
        ),
        (
            &["--p50", "5ms", "--p99", "50ms", "--percentiles", "50,100"],
            "\"100\"",
        ),
        (
            &["--p50", "5ms", "--p99", "50ms", "--percentiles", "50,,99"],
            "\"\"",
        ),
        (&["--p99", "50ms"], "--p50"),
    ];
    for (args, needle) in cases {
        let o = shardkit(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("shardkit: error: ") || err.starts_with("shardkit: "),
            "{err}"
        );
        assert!(err.contains(needle), "{args:?}: {needle} not in {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
