//! `make demo`: three candidates elect a leader on the embedded store; the
//! leader crashes (its process would simply stop: no resign, no revoke), its
//! lease runs out, and the next candidate takes over with a larger fencing
//! token. The crashed leader's late write is then refused twice over: by the
//! store (guarded write) and by an external resource fenced with the token.
//!
//! `cargo run -p shardkit --example election`

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardkit::lease::{Coordinator, FenceGate, TokenKind};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> shardkit::Result<()> {
    let start = Instant::now();
    let t = move || format!("{:5.2}s", start.elapsed().as_secs_f64());
    let coord = Coordinator::embedded();
    let ttl = Duration::from_secs(2);
    println!(
        "{} {} with three candidates, lease ttl {}s",
        t(),
        coord.describe(),
        ttl.as_secs()
    );

    // Everyone can watch the leadership, candidate or not.
    let mut observer = coord.observe("scheduler")?;
    let t2 = t;
    let watcher = tokio::spawn(async move {
        while let Ok(change) = observer.next().await {
            match change {
                Some(l) => println!(
                    "{} observe: leader is {} (token {})",
                    t2(),
                    String::from_utf8_lossy(&l.value),
                    l.revision
                ),
                None => println!("{} observe: no leader", t2()),
            }
        }
    });

    // An external resource (say, a job table in another database) that
    // remembers the newest leader token it has seen.
    let jobs = Arc::new(FenceGate::new(TokenKind::Leader, "scheduler")?);

    let mut candidates = Vec::new();
    for name in ["candidate-a", "candidate-b", "candidate-c"] {
        let session = coord.session_ttl(ttl).await?;
        let election = Arc::new(session.election("scheduler")?);
        candidates.push((name, session, election));
        tokio::time::sleep(Duration::from_millis(20)).await; // a, then b, then c
    }
    let mut wins = Vec::new();
    for (name, _, election) in &candidates {
        let (name, election, jobs) = (*name, election.clone(), jobs.clone());
        wins.push(tokio::spawn(async move {
            let token = election.campaign(name.as_bytes()).await?;
            println!("{} {name} won, token {}", t(), token.revision);
            jobs.admit(b"jobs", &token)?;
            println!(
                "{} {name} wrote to the job table with token {}",
                t(),
                token.revision
            );
            Ok::<_, shardkit::Error>(token)
        }));
    }
    let first = wins.remove(0).await.expect("task")?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The leader crashes: its keepalives stop; nothing is resigned or
    // revoked. Dropping every handle of its session stops the keepalive loop,
    // so the store expires the lease one TTL after the last renewal.
    let (name, session, election) = candidates.remove(0);
    println!(
        "{} {name} crashes (as kill -9 would): its lease must run out",
        t()
    );
    drop(election);
    drop(session);
    let second = wins.remove(0).await.expect("task")?;
    assert!(second.revision > first.revision);
    println!(
        "{} fencing token rose from {} to {}",
        t(),
        first.revision,
        second.revision
    );

    // The old leader wakes up and tries to write with its old token.
    match jobs.admit(b"jobs", &first) {
        Err(e) => println!("{} stale write by {name} refused: {e}", t()),
        Ok(()) => unreachable!("a stale token was admitted"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, session_b, election_b) = &candidates[0];
    election_b.resign().await?;
    let third = wins.remove(0).await.expect("task")?;
    println!("{} candidate-b resigned; token now {}", t(), third.revision);
    assert!(third.revision > second.revision);
    for (_, s, _) in &candidates {
        s.close().await?;
    }
    let _ = session_b;
    tokio::time::sleep(Duration::from_millis(100)).await;
    watcher.abort();
    Ok(())
}
