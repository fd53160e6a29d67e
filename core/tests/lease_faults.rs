//! Process faults against a real etcd: contenders are separate processes
//! (this test binary re-run as `contender_main`) that the driver kills with
//! SIGKILL, freezes with SIGSTOP, or cuts off by killing etcd itself.
//!
//! What must hold, whatever the fault:
//! - a killed holder's lock passes on within TTL + 1 s;
//! - a frozen holder wakes knowing it lost the lock, and its writes are
//!   refused (locally, or by etcd through the fencing compare);
//! - a counter incremented under the lock loses no update and doubles none,
//!   and fencing tokens of successive values strictly rise;
//! - no two holders ever both believe they hold the lock, across etcd
//!   restarts and leader failover;
//! - once everyone has gone, no key under `shardkit/` and no lease is left.
//!
//! TTL is 2 s to keep the suite short. The tests take turns (see
//! `fault_support::serial`): their timing asserts need the CPU. Every
//! measured figure is printed (`--nocapture`) for the benchmark report.
//! `SHARDKIT_SOAK_SECS` sets the lost-update checker's duration (default
//! 15 s; `make soak` runs it longer), `SHARDKIT_FAULT_SEED` replays a run,
//! `SHARDKIT_FAULT_KEEP` keeps the contenders' logs. Each test starts its
//! own etcd and ends by counting what is left in it (keys, leases).
//!
//! These are library-level (contenders use `shardkit::lease` directly); the
//! CLI's own kill -9 / SIGSTOP tests of `shardkit lock` are in
//! `cli/tests/coord.rs`.

mod fault_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use fault_support::contender::{
    COUNTER_ENV, DEADLINE_ENV, ENDPOINTS_ENV, ID_ENV, LOCK_ENV, LOG_ENV, RESOURCE_ENV, ROLE_ENV,
    SEED_ENV, TTL_ENV, WRITE_EVERY_ENV, WRITE_ONCE_ENV,
};
use fault_support::ledger::{self, Belief};
use fault_support::*;
use shardkit::lease::{Coordinator, EventKind, RangeOpts, SortOrder, SortTarget, LOCK_PREFIX};
use shardkit_testkit::{EtcdCluster, Rng};

const TTL: Duration = Duration::from_secs(2);

/// Not a test: the body of every contender process. Ignored so that a plain
/// `cargo test` skips it; the driver runs it with `--ignored --exact`.
#[test]
#[ignore = "contender process of the fault tests; they spawn it"]
fn contender_main() {
    fault_support::contender::run();
}

/// Environment shared by a test's contenders; they give up `secs` from now
/// at the latest, whatever the driver does.
fn base_env(cluster: &EtcdCluster, lock: &str, secs: u64) -> Vec<(&'static str, String)> {
    vec![
        (ENDPOINTS_ENV, cluster.endpoints().join(",")),
        (LOCK_ENV, lock.to_string()),
        (TTL_ENV, TTL.as_secs().to_string()),
        (DEADLINE_ENV, (now_us() / 1000 + secs * 1000).to_string()),
    ]
}

/// Keys in the waiter queue of lock `name`.
fn queue_len(rt: &tokio::runtime::Runtime, coord: &Coordinator, name: &str) -> usize {
    let prefix = format!("{LOCK_PREFIX}{name}/");
    rt.block_on(coord.range(prefix.as_bytes(), RangeOpts::prefix()))
        .expect("read lock queue")
        .kvs
        .len()
}

/// Polls `cond` every 20 ms for at most `limit`.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// 1. `kill -9` of the holder: the waiting process gets the lock within
///    TTL + 1 s of the kill (the lease must expire on the server first).
#[test]
fn kill9_holder_lock_passes_on_within_ttl() {
    let _turn = serial();
    let cluster = etcd(1);
    let rt = runtime();
    let coord = connect(&rt, &cluster);
    let mut rng = Rng::new(seed_from_env());
    let mut fleet = Fleet::new("kill9", &base_env(&cluster, "kill9", 60));
    let a = fleet.spawn("A", &[(ROLE_ENV, "holder".into()), (ID_ENV, "A".into())]);
    let held = fleet
        .wait_for(Duration::from_secs(20), |m| m.proc == a && m.tag == "HOLD")
        .expect("A takes the free lock");
    let b = fleet.spawn("B", &[(ROLE_ENV, "holder".into()), (ID_ENV, "B".into())]);
    assert!(
        wait_until(Duration::from_secs(20), || queue_len(&rt, &coord, "kill9")
            == 2),
        "B never queued behind A"
    );
    // Kill at a random point of A's keepalive cycle (TTL/3).
    std::thread::sleep(rng.millis(0, 700));
    let killed = Instant::now();
    fleet.kill9(a);
    let got = fleet
        .wait_for(TTL + Duration::from_secs(10), |m| {
            m.proc == b && m.tag == "HOLD"
        })
        .expect("B never got the lock after A was killed");
    assert!(got.at >= killed, "B held the lock while A was alive");
    let took = got.at - killed;
    println!(
        "kill -9 failover: the waiting process acquired {} ms after the holder was killed (ttl {} s, bound {} ms)",
        ms(took),
        TTL.as_secs(),
        ms(TTL + Duration::from_secs(1))
    );
    assert!(
        took <= TTL + Duration::from_secs(1),
        "failover after kill -9 took {took:?}, above TTL + 1 s"
    );
    assert!(
        got.int(0) > held.int(0),
        "tokens must rise: {held:?} then {got:?}"
    );
    fleet.stop_all();
    fleet.wait_all_exit(Duration::from_secs(15));
    assert_no_leftovers("kill -9", &rt, &coord, &cluster, TTL * 3);
}

/// 2. SIGSTOP of the holder for longer than the TTL, then SIGCONT: the
///    holder learns it is lost, its write is refused, and the other process
///    took the lock meanwhile; etcd holds no write of the old holder made
///    after the new one acquired.
#[test]
fn sigstopped_holder_wakes_lost_and_fenced() {
    let _turn = serial();
    let cluster = etcd(1);
    let rt = runtime();
    let coord = connect(&rt, &cluster);
    let mut rng = Rng::new(seed_from_env());
    let resource = "faults/stall/resource";
    let mut fleet = Fleet::new("sigstop", &base_env(&cluster, "stall", 60));
    let a = fleet.spawn(
        "A",
        &[
            (ROLE_ENV, "holder".into()),
            (ID_ENV, "A".into()),
            (RESOURCE_ENV, resource.into()),
            (WRITE_EVERY_ENV, "100".into()),
        ],
    );
    let a_hold = fleet
        .wait_for(Duration::from_secs(20), |m| m.proc == a && m.tag == "HOLD")
        .expect("A takes the free lock");
    fleet
        .wait_for(Duration::from_secs(10), |m| {
            m.proc == a && m.tag == "WRITE" && m.s(0) == "ok"
        })
        .expect("A writes while it holds the lock");
    let b = fleet.spawn(
        "B",
        &[
            (ROLE_ENV, "holder".into()),
            (ID_ENV, "B".into()),
            (RESOURCE_ENV, resource.into()),
            (WRITE_ONCE_ENV, "1".into()),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(20), || queue_len(&rt, &coord, "stall")
            == 2),
        "B never queued behind A"
    );
    std::thread::sleep(rng.millis(0, 600));
    let stopped = Instant::now();
    fleet.pause(a);
    let b_hold = fleet
        .wait_for(TTL + Duration::from_secs(10), |m| {
            m.proc == b && m.tag == "HOLD"
        })
        .expect("B never got the lock while A was stopped");
    let b_after = b_hold.at - stopped;
    fleet
        .wait_for(Duration::from_secs(5), |m| m.proc == b && m.tag == "WROTE")
        .expect("B writes under its new hold");
    // Longer than the TTL in any case.
    let min_stop = TTL * 3 / 2;
    if stopped.elapsed() < min_stop {
        std::thread::sleep(min_stop - stopped.elapsed());
    }
    let stopped_for = stopped.elapsed();
    let resumed = Instant::now();
    fleet.resume(a);

    let lost = fleet
        .wait_for(Duration::from_secs(5), |m| m.proc == a && m.tag == "LOST")
        .expect("A's lost notice never fired after SIGCONT");
    assert_eq!(lost.s(1), "SessionLost", "{lost:?}");
    let refused = fleet
        .wait_for(Duration::from_secs(5), |m| {
            m.proc == a && m.tag == "WRITE" && m.s(0) == "err"
        })
        .expect("A's writes were never refused after SIGCONT");
    let kind = refused.s(2).to_string();
    assert!(
        kind == "SessionLost" || kind == "Fenced",
        "A's stale write failed with {kind}, not SessionLost/Fenced: {refused:?}"
    );
    let check = fleet
        .wait_for(Duration::from_secs(5), |m| m.proc == a && m.tag == "CHECK")
        .expect("A reports check()");
    assert_eq!(check.s(0), "SessionLost", "check() after waking: {check:?}");
    // The same write sent as a client that skips the session check and
    // only carries the token: etcd itself must refuse it.
    let raw = fleet
        .wait_for(Duration::from_secs(5), |m| m.proc == a && m.tag == "RAW")
        .expect("A reports its token-only write");
    assert_eq!(
        raw.s(0),
        "StoreFenced",
        "A's token-only write after waking: {raw:?}"
    );
    let unlock = fleet
        .wait_for(Duration::from_secs(5), |m| m.proc == a && m.tag == "UNLOCK")
        .expect("A unlocks");
    assert_eq!(unlock.s(0), "Fenced", "A's unlock after losing: {unlock:?}");
    fleet
        .wait_for(Duration::from_secs(10), |m| m.proc == a && m.tag == "EXIT")
        .expect("A exits");

    let (a_token, b_token) = (a_hold.int(0), b_hold.int(0));
    assert!(b_token > a_token, "tokens must rise");
    // When did the lock pass on? At the revision that deleted A's lock key
    // (its lease expired), read from etcd's own history of the queue.
    let queue = prefix_events(&rt, &coord, &format!("{LOCK_PREFIX}stall/"));
    let a_key = queue
        .iter()
        .find(|e| e.kind == EventKind::Put && e.kv.create_revision == a_token)
        .map(|e| e.kv.key.clone())
        .expect("A's lock key in the queue history");
    let passed_on = queue
        .iter()
        .find(|e| e.kind == EventKind::Delete && e.kv.key == a_key)
        .map(|e| e.kv.mod_revision)
        .expect("A's lock key was deleted");
    // A write A saw acknowledged was applied while A held the lock (one in
    // flight at SIGSTOP may be acknowledged after SIGCONT, legitimately).
    for m in fleet.lines(a, "WRITE") {
        if m.s(0) == "ok" {
            assert!(
                m.int(2) < passed_on,
                "A's write {m:?} landed after its lock passed on at revision {passed_on}"
            );
        }
    }
    // etcd's own history of the resource: every write of A precedes the
    // hand-over, B's write follows it and is the last.
    let hist = history(&rt, &coord, resource.as_bytes());
    let mut a_writes = 0;
    for kv in &hist {
        let v = String::from_utf8_lossy(&kv.value);
        if v.starts_with("A ") {
            a_writes += 1;
            assert!(
                kv.mod_revision < passed_on,
                "stale write {v:?} at revision {} after the lock passed on at {passed_on}",
                kv.mod_revision
            );
        }
    }
    let last = hist.last().expect("resource history");
    let last_value = String::from_utf8_lossy(&last.value).into_owned();
    assert!(
        last_value.starts_with("B ") && last.mod_revision > passed_on,
        "the resource ends with {last_value:?} at {}, not B's write after {passed_on}",
        last.mod_revision
    );
    println!(
        "SIGSTOP: holder stopped {} ms (ttl {} s); the other process acquired {} ms after the stop; \
         after SIGCONT the holder's lost notice came in {} ms and its write was refused ({kind}) in {} ms, by etcd too (StoreFenced); \
         {a_writes} writes of the old holder, all before the hand-over at revision {passed_on}",
        ms(stopped_for),
        TTL.as_secs(),
        ms(b_after),
        ms(lost.at.saturating_duration_since(resumed)),
        ms(refused.at.saturating_duration_since(resumed)),
    );
    fleet.stop_all();
    fleet.wait_all_exit(Duration::from_secs(15));
    assert_no_leftovers("SIGSTOP", &rt, &coord, &cluster, TTL * 3);
}

/// The process holding lock `name` now, from the head of its queue.
fn holder_proc(
    rt: &tokio::runtime::Runtime,
    coord: &Coordinator,
    name: &str,
    by_lease: &BTreeMap<i64, usize>,
) -> Option<usize> {
    let prefix = format!("{LOCK_PREFIX}{name}/");
    let opts = RangeOpts {
        prefix: true,
        sort: Some((SortTarget::Create, SortOrder::Ascend)),
        limit: 1,
        max_create_revision: 0,
    };
    let r = rt.block_on(coord.range(prefix.as_bytes(), opts)).ok()?;
    r.kvs
        .first()
        .and_then(|kv| by_lease.get(&kv.lease).copied())
}

/// 3. The lost-update checker: 8 contender processes increment a counter
///    under the lock while the driver pauses and kills them at random.
#[test]
fn lost_update_checker_under_pauses_and_kills() {
    const CONTENDERS: usize = 8;
    const MAX_PAUSED: usize = 3;
    let _turn = serial();
    let secs: u64 = std::env::var("SHARDKIT_SOAK_SECS")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("SHARDKIT_SOAK_SECS={s:?}: {e}"))
        })
        .unwrap_or(15);
    let seed = seed_from_env();
    println!(
        "lost-update checker: seed {seed:#x} (replay with SHARDKIT_FAULT_SEED={seed:#x}), {secs} s"
    );
    let mut rng = Rng::new(seed);
    let cluster = etcd(1);
    let rt = runtime();
    let coord = connect(&rt, &cluster);
    let counter = "faults/counter";
    let lock = "counter";
    let mut fleet = Fleet::new("counter", &base_env(&cluster, lock, secs + 60));
    let spawn = |fleet: &mut Fleet, slot: usize, gen: usize, rng: &mut Rng| -> usize {
        let id = fleet.procs.len();
        let log = fleet.path(&format!("counter-p{id}.log"));
        fleet.spawn(
            &format!("c{slot}.{gen}"),
            &[
                (ROLE_ENV, "counter".into()),
                (ID_ENV, id.to_string()),
                (SEED_ENV, rng.next_u64().to_string()),
                (COUNTER_ENV, counter.into()),
                (LOG_ENV, log.display().to_string()),
            ],
        )
    };
    let mut slots: Vec<(usize, usize)> = (0..CONTENDERS)
        .map(|s| (spawn(&mut fleet, s, 0, &mut rng), 0))
        .collect();

    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut by_lease: BTreeMap<i64, usize> = BTreeMap::new();
    let mut seen_msgs = 0;
    let mut paused: Vec<(usize, Instant)> = Vec::new();
    let mut killed: BTreeSet<usize> = BTreeSet::new();
    let (mut kills, mut pauses, mut holder_hits) = (0usize, 0usize, 0usize);
    let mut next = started + rng.millis(400, 1500);
    let mut holder_wait: Option<Instant> = None;
    while Instant::now() < end {
        fleet.pump();
        for m in &fleet.msgs[seen_msgs..] {
            if m.tag == "SESSION" {
                by_lease.insert(m.lease(0), m.proc);
            }
        }
        seen_msgs = fleet.msgs.len();
        let now = Instant::now();
        paused.retain(|&(id, until)| {
            if now >= until {
                fleet.resume(id);
                false
            } else {
                true
            }
        });
        if now >= next {
            // Most faults hit whoever holds the lock now: that is where a
            // stale write could come from. While the head of the queue is a
            // process already stopped or killed (its lease still running
            // out), such a fault waits, up to 3 s, for a live holder. The
            // rest hit anyone running.
            let want_holder = match holder_wait {
                Some(until) => now < until,
                None => rng.chance(70),
            };
            let holder = if want_holder {
                holder_proc(&rt, &coord, lock, &by_lease)
                    .and_then(|id| slots.iter().position(|&(p, _)| p == id))
                    .filter(|&s| !fleet.procs[slots[s].0].paused)
            } else {
                None
            };
            if want_holder && holder.is_none() {
                holder_wait.get_or_insert(now + Duration::from_secs(3));
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            holder_wait = None;
            next = now + rng.millis(400, 1500);
            if holder.is_some() {
                holder_hits += 1;
            }
            let running: Vec<usize> = (0..CONTENDERS)
                .filter(|&s| !fleet.procs[slots[s].0].paused)
                .collect();
            let slot = match holder {
                Some(s) => s,
                None => running[rng.range(0, running.len() as u64 - 1) as usize],
            };
            let (id, gen) = slots[slot];
            let want_kill = rng.chance(30) || (kills == 0 && pauses >= 3);
            let force_pause = pauses == 0 && kills >= 2;
            if want_kill && !force_pause {
                paused.retain(|&(p, _)| p != id);
                fleet.kill9(id);
                killed.insert(id);
                kills += 1;
                slots[slot] = (spawn(&mut fleet, slot, gen + 1, &mut rng), gen + 1);
            } else if paused.len() < MAX_PAUSED {
                let hold = rng.millis(500, (TTL * 3 / 2).as_millis() as u64);
                fleet.pause(id);
                paused.push((id, Instant::now() + hold));
                pauses += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (id, _) in paused.drain(..) {
        fleet.resume(id);
    }
    let soak = started.elapsed();
    fleet.stop_all();
    fleet.wait_all_exit(Duration::from_secs(30));

    // Authoritative: etcd's history of the counter key.
    let hist = ledger::increments(&history(&rt, &coord, counter.as_bytes()));
    let final_value = rt
        .block_on(coord.range(counter.as_bytes(), RangeOpts::default()))
        .expect("read counter")
        .kvs
        .first()
        .map(|kv| {
            String::from_utf8_lossy(&kv.value)
                .split_whitespace()
                .next()
                .and_then(|w| w.parse::<u64>().ok())
                .expect("counter value")
        })
        .unwrap_or(0);
    let logs: Vec<ledger::LogLine> = (0..fleet.procs.len())
        .flat_map(|id| ledger::read_log(&fleet.path(&format!("counter-p{id}.log")), id))
        .collect();
    let verdict = ledger::check_counter(&hist, &logs, &killed, lock);
    let conflicts = fleet.tagged("CONFLICT").len();
    let rejects = tally(fleet.tagged("REJECT").into_iter(), 1);
    let unknown = tally(fleet.tagged("UNKNOWN").into_iter(), 1);
    let errs = tally(fleet.tagged("ERR").into_iter(), 2);
    println!(
        "lost-update checker: {} increments by {} processes in {} s, {kills} kills, {pauses} pauses, {} lost, {} doubled",
        verdict.increments,
        verdict.writers,
        soak.as_secs(),
        verdict.lost,
        verdict.doubled
    );
    println!(
        "lost-update detail: final counter {final_value}; {} processes spawned; faults on the holder {holder_hits}; \
         stale writes refused {rejects:?}; outcome unknown {unknown:?} ({} committed, {} not); \
         commits unlogged because killed {}; conflicts {conflicts}; other errors {errs:?}",
        fleet.procs.len(),
        verdict.uncertain_committed,
        verdict.uncertain_not,
        verdict.unlogged
    );
    assert!(
        verdict.ok(),
        "lost-update checker failed (seed {seed:#x}): {verdict:#?}"
    );
    assert_eq!(
        conflicts, 0,
        "the counter moved under a held lock (seed {seed:#x})"
    );
    assert_eq!(
        final_value as usize, verdict.increments,
        "final counter differs from the number of increments in etcd's history"
    );
    assert!(
        verdict.increments >= 10,
        "only {} increments in {secs} s: the checker proved little",
        verdict.increments
    );
    assert!(
        kills > 0 && pauses > 0,
        "no faults injected ({kills} kills, {pauses} pauses)"
    );
    assert_no_leftovers("lost-update checker", &rt, &coord, &cluster, TTL * 3);
}

/// Asserts no two holds' belief intervals overlap; prints the counts.
fn assert_single_believer(test: &str, fleet: &Fleet) -> Vec<Belief> {
    let beliefs = ledger::beliefs(&fleet.msgs);
    let lost = beliefs.iter().filter(|b| b.how == "lost").count();
    let bad = ledger::overlaps(beliefs.clone());
    let silent = fleet.tagged("SILENT");
    let unlock_errs = tally(fleet.tagged("UNLOCK_ERR").into_iter(), 1);
    println!(
        "{test}: {} holds by {} processes, {lost} ended by a lost session, {} overlapping pairs, \
         {} sessions alive on a lease etcd had dropped, unlock errors {unlock_errs:?}",
        beliefs.len(),
        beliefs
            .iter()
            .map(|b| b.proc)
            .collect::<BTreeSet<_>>()
            .len(),
        bad.len(),
        silent.len()
    );
    assert!(
        bad.is_empty(),
        "{test}: two holders believed they held the lock at once: {:#?}",
        &bad[..bad.len().min(5)]
    );
    assert!(
        silent.is_empty(),
        "{test}: sessions alive on a dropped lease: {silent:?}"
    );
    beliefs
}

/// Every session a contender reported and has not ended must have its lease
/// on the server; a lease the server dropped must be reported lost within
/// 500 ms (the local deadline ran out before the server's). Returns
/// (alive on the server, reported lost or closed so far).
fn audit_sessions(
    rt: &tokio::runtime::Runtime,
    coord: &Coordinator,
    fleet: &mut Fleet,
) -> (usize, usize) {
    fleet.pump();
    let ended = |fleet: &Fleet| -> BTreeSet<i64> {
        fleet
            .msgs
            .iter()
            .filter(|m| m.tag == "LOST" || m.tag == "CLOSED")
            .map(|m| m.lease(0))
            .collect()
    };
    let done = ended(fleet);
    let open: Vec<i64> = fleet
        .tagged("SESSION")
        .iter()
        .map(|m| m.lease(0))
        .filter(|l| !done.contains(l))
        .collect();
    let mut alive = 0;
    let mut gone = Vec::new();
    for lease in open {
        // The driver's own connection may still be settling after a fault.
        let mut answer = rt.block_on(coord.lease_ttl(lease));
        for _ in 0..5 {
            if answer.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            answer = rt.block_on(coord.lease_ttl(lease));
        }
        match answer {
            Ok(Some(_)) => alive += 1,
            Ok(None) => gone.push(lease),
            Err(e) => panic!("lease ttl of {lease:x}: {e}"),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    fleet.pump();
    let done = ended(fleet);
    let silent: Vec<String> = gone
        .iter()
        .filter(|l| !done.contains(l))
        .map(|l| format!("{l:x}"))
        .collect();
    assert!(
        silent.is_empty(),
        "leases gone on the server but never reported lost: {silent:?}"
    );
    (alive, done.len())
}

/// Asks one contender for a 3 s hold (longer than the local deadline) and
/// waits up to 10 s until it starts, so the fault that follows catches a
/// holder mid-hold; false when none started.
fn wait_long_hold(fleet: &mut Fleet) -> bool {
    let since = Instant::now();
    std::fs::write(fleet.path("long"), b"long").expect("write long-hold request");
    fleet
        .wait_for(Duration::from_secs(10), |m| {
            m.tag == "HOLDING" && m.int(1) >= 3000 && m.at >= since
        })
        .is_some()
}

/// The first hold that started after wall time `fault_us` (waiting up to
/// `limit` for it), and when the hold the fault caught ended (its last Ok
/// check; `fault_us` when it caught none): a holder may legitimately finish
/// its hold before the lock passes on, so availability is measured from
/// the later of the two. Both in wall µs.
fn next_hold(fleet: &mut Fleet, fault_us: u64, limit: Duration) -> (u64, u64) {
    let next = fleet
        .wait_for(limit, |m| m.tag == "BELIEF" && m.int(2) as u64 > fault_us)
        .map(|m| m.int(2) as u64)
        .expect("nobody acquired the lock after the fault");
    // The caught hold reported before the next one began; let its line in.
    std::thread::sleep(Duration::from_millis(100));
    fleet.pump();
    let caught_end = ledger::beliefs(&fleet.msgs)
        .iter()
        .filter(|b| b.first <= fault_us)
        .map(|b| b.last)
        .max()
        .unwrap_or(0)
        .max(fault_us);
    (next, caught_end)
}

fn us(d: u64) -> Duration {
    Duration::from_micros(d)
}

fn spawn_believers(fleet: &mut Fleet, n: usize, rng: &mut Rng) {
    for i in 0..n {
        fleet.spawn(
            &format!("b{i}"),
            &[
                (ROLE_ENV, "belief".into()),
                (ID_ENV, i.to_string()),
                (SEED_ENV, rng.next_u64().to_string()),
            ],
        );
    }
}

/// 4. Single-node etcd killed with SIGKILL and restarted, once after ~1 s
///    and once after more than the TTL: every session keeps its lease or
///    reports it lost, and no two holders ever believe at once.
#[test]
fn etcd_restart_keeps_one_believer() {
    let _turn = serial();
    let seed = seed_from_env();
    let mut rng = Rng::new(seed);
    let mut cluster = etcd(1);
    let rt = runtime();
    let coord = connect(&rt, &cluster);
    let mut fleet = Fleet::new("restart", &base_env(&cluster, "restart", 90));
    spawn_believers(&mut fleet, 4, &mut rng);
    assert!(
        fleet.wait_count(Duration::from_secs(20), 3, |m| m.tag == "BELIEF"),
        "contenders never took turns before the fault"
    );
    // etcd takes most of a second to restart, so the outages last about
    // 1 s (some sessions may ride it out), 1.7 s and 3.7 s (none can).
    let downs = [
        Duration::from_millis(200),
        Duration::from_secs(1),
        TTL + Duration::from_secs(1),
    ];
    let bound = TTL + Duration::from_secs(5);
    for (round, down) in downs.into_iter().enumerate() {
        fleet.pump();
        let before = fleet.tagged("LOST").len();
        let mid_hold = wait_long_hold(&mut fleet);
        let t_kill = now_us();
        cluster.kill(0).expect("kill etcd");
        std::thread::sleep(down);
        cluster.restart(0).expect("restart etcd");
        let up = Instant::now();
        let t_up = now_us();
        let (next, caught_end) = next_hold(&mut fleet, t_kill, bound + Duration::from_secs(5));
        let gap = us(next.saturating_sub(caught_end.max(t_up)));
        // Let every session settle (renew or run out) before the audit.
        std::thread::sleep(TTL.saturating_sub(up.elapsed()));
        let (alive, _) = audit_sessions(&rt, &coord, &mut fleet);
        let lost = fleet.tagged("LOST").len() - before;
        println!(
            "etcd restart {}: down {} ms (killed {}, restarted after {} ms); {lost} sessions reported lost, \
             {alive} alive on the server; next hold began {} ms after etcd was back and the caught hold ended \
             (bound {} ms)",
            round + 1,
            (t_up - t_kill) / 1000,
            if mid_hold { "mid-hold" } else { "between holds" },
            ms(down),
            ms(gap),
            ms(bound)
        );
        if down > TTL {
            assert!(
                lost > 0,
                "etcd was down past the TTL yet no session reported itself lost"
            );
        }
        assert!(
            gap < bound,
            "lock unavailable for {gap:?} after etcd came back"
        );
    }
    fleet.stop_all();
    fleet.wait_all_exit(Duration::from_secs(20));
    let beliefs = assert_single_believer("etcd restart", &fleet);
    assert!(
        beliefs.iter().any(|b| b.how == "lost"),
        "no hold ended by a lost session: the outages never caught a holder"
    );
    assert!(
        beliefs.len() >= 6,
        "too few holds to judge: {}",
        beliefs.len()
    );
    assert_no_leftovers("etcd restart", &rt, &coord, &cluster, TTL * 4);
}

/// 5. Three-node etcd: the leader is killed while contenders hold and
///    wait, then restarted. Same invariant, and the lock keeps working.
#[test]
fn etcd_leader_kill_keeps_one_believer() {
    let _turn = serial();
    let seed = seed_from_env();
    let mut rng = Rng::new(seed);
    let mut cluster = etcd(3);
    let rt = runtime();
    let coord = connect(&rt, &cluster);
    let mut fleet = Fleet::new("leader", &base_env(&cluster, "leader", 90));
    spawn_believers(&mut fleet, 4, &mut rng);
    assert!(
        fleet.wait_count(Duration::from_secs(20), 3, |m| m.tag == "BELIEF"),
        "contenders never took turns before the fault"
    );
    let bound = TTL + Duration::from_secs(5);
    let leader = cluster
        .wait_leader(Duration::from_secs(10))
        .expect("an etcd leader");
    let mid_hold = wait_long_hold(&mut fleet);
    let killed = Instant::now();
    let t_kill = now_us();
    cluster.kill(leader).expect("kill the leader");
    let elected = cluster.wait_leader(Duration::from_secs(10));
    let election = killed.elapsed();
    let (next, caught_end) = next_hold(&mut fleet, t_kill, bound + Duration::from_secs(5));
    let after_kill = us(next.saturating_sub(caught_end));
    std::thread::sleep(Duration::from_secs(1));
    cluster.restart(leader).expect("restart the old leader");
    let up = Instant::now();
    let t_up = now_us();
    let (next, caught_end) = next_hold(&mut fleet, t_up, bound + Duration::from_secs(5));
    let after_restart = us(next.saturating_sub(caught_end));
    std::thread::sleep(TTL.saturating_sub(up.elapsed()));
    let (alive, ended) = audit_sessions(&rt, &coord, &mut fleet);
    println!(
        "etcd leader kill: member {leader} killed {}; new leader {elected:?} seen after {} ms; \
         next hold began {} ms after the kill (and the caught hold's end), {} ms after the old leader \
         rejoined (bound {} ms); {} sessions reported lost, {alive} alive on the server, {ended} ended",
        if mid_hold { "mid-hold" } else { "between holds" },
        ms(election),
        ms(after_kill),
        ms(after_restart),
        ms(bound),
        fleet.tagged("LOST").len()
    );
    assert!(elected.is_some(), "no new leader within 10 s");
    assert!(
        after_kill < bound,
        "lock unavailable for {after_kill:?} after the leader kill"
    );
    assert!(
        after_restart < bound,
        "lock unavailable for {after_restart:?} after the restart"
    );
    fleet.stop_all();
    fleet.wait_all_exit(Duration::from_secs(20));
    let beliefs = assert_single_believer("etcd leader kill", &fleet);
    assert!(
        beliefs.len() >= 6,
        "too few holds to judge: {}",
        beliefs.len()
    );
    assert_no_leftovers("etcd leader kill", &rt, &coord, &cluster, TTL * 4);
}
