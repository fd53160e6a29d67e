//! The Rust side of `bench/lease.sh`.
//!
//!     shardkit-lease-bench latency (--endpoints LIST | --embedded) [--iters N] [--warmup N] [--name NAME] [--out FILE]
//!     shardkit-lease-bench handoff --endpoints LIST [--iters N] [--warmup N] [--settle-ms MS] [--name NAME] [--out FILE]
//!     shardkit-lease-bench rtt --endpoints LIST [--iters N] [--warmup N] [--out FILE]
//!     shardkit-lease-bench stamp
//!
//! `latency`: one session and one `Lock` reused, `lock()` then `unlock()`
//! per iteration, each timed. `handoff`: two sessions on one connection; A
//! holds, B waits (its key queued `--settle-ms` before), then the time from the start of A's
//! `unlock()` to B's `lock()` returning. `rtt`: plain requests without a
//! lock (a one-key read, a one-put transaction) through the same client, the
//! floor under the lock figures. `stamp`: prints CLOCK_MONOTONIC in
//! ns, the clock the failover driver reads, so a contender run by
//! `shardkit lock NAME -- shardkit-lease-bench stamp` reports when it got the
//! lock. Raw samples go out as JSON; bench/lease/report.py summarises.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use shardkit::lease::{Coordinator, Op, RangeOpts, Txn, LOCK_PREFIX};

/// How long the benchmark waits for the store to show a queued waiter: far
/// more than loopback needs, so only a broken run hits it.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

struct Args {
    endpoints: Option<String>,
    embedded: bool,
    iters: usize,
    warmup: usize,
    ttl: u64,
    name: String,
    out: Option<String>,
    settle_ms: u64,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        endpoints: None,
        embedded: false,
        iters: 2000,
        warmup: 200,
        ttl: 10,
        name: "bench-latency-rust".into(),
        out: None,
        settle_ms: 200,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag} {v:?} is not a whole number"))
        };
        match flag.as_str() {
            "--endpoints" => a.endpoints = Some(value()?),
            "--embedded" => a.embedded = true,
            "--iters" => a.iters = number(value()?)?,
            "--warmup" => a.warmup = number(value()?)?,
            "--ttl" => a.ttl = number(value()?)? as u64,
            "--name" => a.name = value()?,
            "--out" => a.out = Some(value()?),
            "--settle-ms" => a.settle_ms = number(value()?)? as u64,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.iters == 0 {
        return Err("--iters must be at least 1".into());
    }
    Ok(a)
}

/// CLOCK_MONOTONIC in ns: shared by every process on the machine.
fn monotonic_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

async fn coordinator(a: &Args) -> Result<Coordinator, String> {
    match (&a.endpoints, a.embedded) {
        (_, true) => Ok(Coordinator::embedded()),
        (Some(ep), false) => Coordinator::connect(ep, Duration::from_secs(5))
            .await
            .map_err(|e| format!("connect {ep}: {e}")),
        (None, false) => Err("give --endpoints LIST or --embedded".into()),
    }
}

fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

async fn latency(a: &Args) -> Result<serde_json::Value, String> {
    let coord = coordinator(a).await?;
    let session = coord
        .session_ttl(Duration::from_secs(a.ttl))
        .await
        .map_err(|e| e.to_string())?;
    let lock = session.lock(&a.name).map_err(|e| e.to_string())?;
    let (mut both, mut acq, mut rel) = (vec![], vec![], vec![]);
    for i in 0..a.warmup + a.iters {
        let t0 = Instant::now();
        lock.lock().await.map_err(|e| format!("lock: {e}"))?;
        let t1 = Instant::now();
        lock.unlock().await.map_err(|e| format!("unlock: {e}"))?;
        let t2 = Instant::now();
        if i >= a.warmup {
            both.push(ns(t2 - t0));
            acq.push(ns(t1 - t0));
            rel.push(ns(t2 - t1));
        }
    }
    session.close().await.map_err(|e| e.to_string())?;
    Ok(json!({
        "impl": "shardkit-rust",
        "backend": if a.embedded { "embedded" } else { "etcd" },
        "iters": a.iters, "warmup": a.warmup, "ttl": a.ttl,
        "acquire_release_ns": both, "acquire_ns": acq, "release_ns": rel,
    }))
}

/// Waits until `n` keys are under `prefix` (the holder's and the queued
/// waiter's).
async fn wait_keys(coord: &Coordinator, prefix: &str, n: usize) -> Result<(), String> {
    let deadline = Instant::now() + QUEUE_WAIT;
    loop {
        let r = coord
            .range(prefix.as_bytes(), RangeOpts::prefix())
            .await
            .map_err(|e| e.to_string())?;
        if r.kvs.len() >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{n} keys under {prefix:?} not seen within {QUEUE_WAIT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn handoff(a: &Args) -> Result<serde_json::Value, String> {
    let coord = coordinator(a).await?;
    let ttl = Duration::from_secs(a.ttl);
    let sa = coord.session_ttl(ttl).await.map_err(|e| e.to_string())?;
    let sb = coord.session_ttl(ttl).await.map_err(|e| e.to_string())?;
    let la = sa.lock(&a.name).map_err(|e| e.to_string())?;
    let lb = Arc::new(sb.lock(&a.name).map_err(|e| e.to_string())?);
    let prefix = format!("{LOCK_PREFIX}{}/", a.name);
    let (mut handoffs, mut releases) = (vec![], vec![]);
    for i in 0..a.warmup + a.iters {
        la.lock().await.map_err(|e| format!("A lock: {e}"))?;
        let b = lb.clone();
        let waiter = tokio::spawn(async move {
            let r = b.lock().await;
            (r, Instant::now())
        });
        wait_keys(&coord, &prefix, 2).await?;
        // The waiter enqueues, then reads its predecessor and starts its
        // watch; a waiter queued this long is the steady state measured.
        tokio::time::sleep(Duration::from_millis(a.settle_ms)).await;
        let t0 = Instant::now();
        la.unlock().await.map_err(|e| format!("A unlock: {e}"))?;
        let t_rel = Instant::now();
        let (r, t1) = waiter.await.map_err(|e| e.to_string())?;
        r.map_err(|e| format!("B lock: {e}"))?;
        lb.unlock().await.map_err(|e| format!("B unlock: {e}"))?;
        if i >= a.warmup {
            handoffs.push(ns(t1 - t0));
            releases.push(ns(t_rel - t0));
        }
    }
    sa.close().await.map_err(|e| e.to_string())?;
    sb.close().await.map_err(|e| e.to_string())?;
    Ok(json!({
        "impl": "shardkit-rust", "backend": if a.embedded { "embedded" } else { "etcd" },
        "iters": a.iters, "warmup": a.warmup, "ttl": a.ttl,
        "settle_ms": a.settle_ms, "handoff_ns": handoffs, "release_call_ns": releases,
    }))
}

/// Plain requests through the coordinator: what one request costs without
/// any lock protocol around it.
async fn rtt(a: &Args) -> Result<serde_json::Value, String> {
    let coord = coordinator(a).await?;
    let key = format!("bench/rtt/{}", a.name).into_bytes();
    let (mut reads, mut writes) = (vec![], vec![]);
    for i in 0..a.warmup + a.iters {
        let t0 = Instant::now();
        coord
            .range(&key, RangeOpts::default())
            .await
            .map_err(|e| format!("range: {e}"))?;
        let t1 = Instant::now();
        let put = Txn {
            compare: vec![],
            success: vec![Op::put(key.clone(), b"v".to_vec())],
            failure: vec![],
        };
        coord.txn(put).await.map_err(|e| format!("txn: {e}"))?;
        let t2 = Instant::now();
        if i >= a.warmup {
            reads.push(ns(t1 - t0));
            writes.push(ns(t2 - t1));
        }
    }
    Ok(json!({
        "impl": "shardkit-rust", "backend": if a.embedded { "embedded" } else { "etcd" },
        "iters": a.iters, "warmup": a.warmup, "read_ns": reads, "write_txn_ns": writes,
    }))
}

fn write(out: Option<&str>, v: &serde_json::Value) -> Result<(), String> {
    let text = v.to_string();
    match out {
        Some(path) => std::fs::write(path, text + "\n").map_err(|e| format!("{path}: {e}")),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("stamp") => {
            println!("{}", monotonic_ns());
            Ok(())
        }
        Some(cmd @ ("latency" | "handoff" | "rtt")) => match parse(&argv[1..]) {
            Ok(a) => {
                let v = match cmd {
                    "latency" => latency(&a).await,
                    "handoff" => handoff(&a).await,
                    _ => rtt(&a).await,
                };
                v.and_then(|v| write(a.out.as_deref(), &v))
            }
            Err(e) => Err(e),
        },
        _ => Err("usage: shardkit-lease-bench latency|handoff|rtt|stamp [options]".into()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardkit-lease-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
