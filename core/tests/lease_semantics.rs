//! The semantic suite of ownership election, run against both backends:
//! the embedded store and a real etcd started on loopback. Each test body is
//! written once over a `Coordinator`; the `both!` macro instantiates it per
//! backend. Process faults (kill -9, SIGSTOP, etcd restarts) live in
//! `lease_faults.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardkit::lease::{
    waiter_wakeups, Cancel, Coordinator, FenceGate, OwnershipEvent, RangeOpts, SessionOptions,
    ShardOwner, WaitOptions, ELECTION_PREFIX, LOCK_PREFIX, SHARDS_PREFIX,
};
use shardkit::ErrorKind;
use shardkit_testkit::{free_port, EtcdCluster};

/// One backend under test; keeps an etcd process alive for the test.
struct Env {
    coord: Coordinator,
    etcd: Option<EtcdCluster>,
}

impl Env {
    fn embedded() -> Env {
        Env {
            coord: Coordinator::embedded(),
            etcd: None,
        }
    }

    async fn etcd() -> Env {
        let cluster = tokio::task::spawn_blocking(EtcdCluster::single)
            .await
            .unwrap()
            .expect("start etcd (is etcd-server installed?)");
        let coord = Coordinator::connect_list(&cluster.endpoints(), Duration::from_secs(5))
            .await
            .expect("connect to etcd");
        Env {
            coord,
            etcd: Some(cluster),
        }
    }

    /// Another client of the same store (a second process would have one).
    async fn client(&self) -> Coordinator {
        match &self.etcd {
            None => self.coord.clone(),
            Some(c) => Coordinator::connect_list(&c.endpoints(), Duration::from_secs(5))
                .await
                .unwrap(),
        }
    }

    async fn session(&self, ttl: u64) -> shardkit::lease::Session {
        self.client()
            .await
            .session_ttl(Duration::from_secs(ttl))
            .await
            .unwrap()
    }

    /// Keys left under a prefix.
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let r = self
            .coord
            .range(prefix.as_bytes(), RangeOpts::prefix())
            .await
            .unwrap();
        r.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect()
    }

    /// Waits until the prefix holds exactly `n` keys (bounded).
    async fn wait_keys(&self, prefix: &str, n: usize, within: Duration) -> Vec<String> {
        let until = Instant::now() + within;
        loop {
            let k = self.keys(prefix).await;
            if k.len() == n || Instant::now() > until {
                return k;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                super::$name(super::Env::embedded()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn etcd() {
                super::$name(super::Env::etcd().await).await
            }
        }
    )*};
}

both!(
    lock_tokens_rise,
    lock_hands_off_to_waiter,
    try_lock_busy_leaves_no_key,
    lock_timeout_cleans_up,
    lock_cancel_cleans_up,
    dropped_acquire_cleans_up,
    tiny_timeout_leaves_no_stale_key,
    herd_one_release_wakes_one,
    lease_end_while_waiting_in_lock_is_an_error,
    lease_end_while_campaigning_is_an_error,
    compaction_during_wait,
    election_campaign_proclaim_resign_observe,
    guarded_writes_apply_only_while_current,
    fence_gate_rejects_older_tokens,
    session_lost_once_and_close_revokes,
    session_resume_by_id,
    shard_ownership_moves_few_and_takes_over,
    bad_input_is_named,
    nested_names_do_not_collide,
    on_lost_callback_may_close,
    resumed_session_never_reuses_a_waiter_key,
    session_close_reports_shards_lost_before_release,
);

const LOCKS: &str = LOCK_PREFIX;

async fn lock_tokens_rise(env: Env) {
    let a = env.session(5).await;
    let b = env.session(5).await;
    let la = a.lock("rise").unwrap();
    let lb = b.lock("rise").unwrap();
    let t1 = la.lock().await.unwrap();
    la.unlock().await.unwrap();
    let t2 = lb.lock().await.unwrap();
    assert!(t2.revision > t1.revision, "{t1} then {t2}");
    assert_eq!(t2.lease, b.lease_id());
    lb.unlock().await.unwrap();
    let t3 = la.lock().await.unwrap();
    assert!(t3.revision > t2.revision);
    // The same handle cannot lock twice; unlock twice is an error too.
    let e = la.lock().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    la.unlock().await.unwrap();
    assert_eq!(
        la.unlock().await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
    assert!(env.keys(&format!("{LOCKS}rise/")).await.is_empty());
}

async fn lock_hands_off_to_waiter(env: Env) {
    let a = env.session(5).await;
    let b = env.session(5).await;
    let la = a.lock("handoff").unwrap();
    let t1 = la.lock().await.unwrap();
    let lb = Arc::new(b.lock("handoff").unwrap());
    let lb2 = lb.clone();
    let waiter = tokio::spawn(async move {
        let t = lb2.lock().await.unwrap();
        (t, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "waiter acquired while the lock was held"
    );
    let released = Instant::now();
    la.unlock().await.unwrap();
    let (t2, acquired) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(t2.revision > t1.revision);
    let handoff = acquired.duration_since(released);
    assert!(
        handoff < Duration::from_millis(500),
        "hand-off took {handoff:?}"
    );
    lb.unlock().await.unwrap();
}

async fn try_lock_busy_leaves_no_key(env: Env) {
    let a = env.session(5).await;
    let b = env.session(5).await;
    let la = a.lock("busy").unwrap();
    la.lock().await.unwrap();
    let lb = b.lock("busy").unwrap();
    assert!(lb.try_lock().await.unwrap().is_none());
    assert_eq!(env.keys(&format!("{LOCKS}busy/")).await.len(), 1);
    la.unlock().await.unwrap();
    let t = lb.try_lock().await.unwrap().expect("free lock");
    assert_eq!(t.lease, b.lease_id());
    lb.unlock().await.unwrap();
}

async fn lock_timeout_cleans_up(env: Env) {
    let a = env.session(5).await;
    let b = env.session(5).await;
    let la = a.lock("timeout").unwrap();
    la.lock().await.unwrap();
    let lb = b.lock("timeout").unwrap();
    let start = Instant::now();
    let e = lb
        .lock_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.message().contains("300 ms"), "{e}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The waiter's key is gone by the time the error is returned.
    assert_eq!(env.keys(&format!("{LOCKS}timeout/")).await.len(), 1);
    la.unlock().await.unwrap();
    assert!(lb.try_lock().await.unwrap().is_some());
}

async fn lock_cancel_cleans_up(env: Env) {
    let a = env.session(5).await;
    let b = env.session(5).await;
    let la = a.lock("cancel").unwrap();
    la.lock().await.unwrap();
    let lb = Arc::new(b.lock("cancel").unwrap());
    let cancel = Cancel::new();
    let (lb2, c2) = (lb.clone(), cancel.clone());
    let waiter = tokio::spawn(async move {
        lb2.lock_with(&WaitOptions {
            timeout: None,
            cancel: Some(c2),
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.keys(&format!("{LOCKS}cancel/")).await.len(), 2);
    // Fired from a plain thread, as C and Go do.
    std::thread::spawn(move || cancel.cancel()).join().unwrap();
    let e = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    assert_eq!(env.keys(&format!("{LOCKS}cancel/")).await.len(), 1);
}

async fn dropped_acquire_cleans_up(env: Env) {
    let a = env.session(5).await;
    let b = env.session(5).await;
    let la = a.lock("drop").unwrap();
    la.lock().await.unwrap();
    let lb = b.lock("drop").unwrap();
    // Dropping the future (as asyncio task.cancel() does) withdraws the waiter.
    let r = tokio::time::timeout(Duration::from_millis(200), lb.lock()).await;
    assert!(r.is_err());
    let left = env
        .wait_keys(&format!("{LOCKS}drop/"), 1, Duration::from_secs(2))
        .await;
    assert_eq!(left.len(), 1, "{left:?}");
}

async fn tiny_timeout_leaves_no_stale_key(env: Env) {
    // A timeout shorter than one round trip: the server may complete the
    // enqueue after the client gave up. No key may survive that.
    let b = env.session(3).await;
    for i in 0..20 {
        let lb = b.lock("tiny").unwrap();
        let r = lb.lock_timeout(Duration::from_micros(1 + i * 50)).await;
        if r.is_ok() {
            lb.unlock().await.unwrap();
        }
    }
    // Orphans are retried on the next keepalive round (TTL/3).
    let left = env
        .wait_keys(&format!("{LOCKS}tiny/"), 0, Duration::from_secs(3))
        .await;
    assert!(left.is_empty(), "stale keys: {left:?}");
}

async fn herd_one_release_wakes_one(env: Env) {
    let holder = env.session(10).await;
    let lh = holder.lock("herd").unwrap();
    lh.lock().await.unwrap();
    let s = env.session(10).await;
    let acquired = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut locks = Vec::new();
    for i in 0..50 {
        let l = Arc::new(s.lock("herd").unwrap());
        locks.push(l.clone());
        let acq = acquired.clone();
        tasks.push(tokio::spawn(async move {
            let t = l.lock().await.unwrap();
            acq.lock().unwrap().push((i, t.revision));
        }));
        // Queue in order, so each waiter's predecessor is the one before.
        env.wait_keys(&format!("{LOCKS}herd/"), i + 2, Duration::from_secs(5))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = s.waiter_wakeups();
    let before_all = waiter_wakeups();
    lh.unlock().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Counted on this test's session: the process-wide count also takes in
    // the waiters other tests wake meanwhile (this test's twin on the other
    // store wakes 49 in a row when it releases its queue).
    let woken = s.waiter_wakeups() - before;
    assert_eq!(acquired.lock().unwrap().len(), 1);
    assert_eq!(woken, 1, "one release woke {woken} waiters");
    assert!(waiter_wakeups() - before_all >= 1);
    // Release the rest one by one: each release wakes the next in order.
    for _ in 0..49 {
        let (i, _) = *acquired.lock().unwrap().last().unwrap();
        // Counted before the unlock: the next waiter may acquire before
        // the unlock call returns.
        let n = acquired.lock().unwrap().len();
        locks[i].unlock().await.unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while acquired.lock().unwrap().len() == n && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let order: Vec<usize> = acquired.lock().unwrap().iter().map(|(i, _)| *i).collect();
    assert_eq!(
        order,
        (0..50).collect::<Vec<_>>(),
        "FIFO by create revision"
    );
    let revs: Vec<i64> = acquired.lock().unwrap().iter().map(|(_, r)| *r).collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]));
    for t in tasks {
        t.await.unwrap();
    }
}

async fn lease_end_while_waiting_in_lock_is_an_error(env: Env) {
    let a = env.session(5).await;
    let b = env.session(2).await;
    let la = a.lock("expire").unwrap();
    la.lock().await.unwrap();
    let lb = Arc::new(b.lock("expire").unwrap());
    let lb2 = lb.clone();
    let waiter = tokio::spawn(async move { lb2.lock().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The waiter's lease ends under it (an operator revoke, or expiry).
    env.coord.revoke(b.lease_id()).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(4), waiter)
        .await
        .expect("waiter returned")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SessionLost, "{e}");
    assert!(b.is_lost());
    la.unlock().await.unwrap();
    assert!(env
        .wait_keys(&format!("{LOCKS}expire/"), 0, Duration::from_secs(2))
        .await
        .is_empty());
}

async fn lease_end_while_campaigning_is_an_error(env: Env) {
    let a = env.session(5).await;
    let b = env.session(2).await;
    let ea = a.election("expire").unwrap();
    ea.campaign(b"a").await.unwrap();
    let eb = Arc::new(b.election("expire").unwrap());
    let eb2 = eb.clone();
    let waiter = tokio::spawn(async move { eb2.campaign(b"b").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.coord.revoke(b.lease_id()).await.unwrap();
    // Even though the leader then resigns, b must not become leader.
    ea.resign().await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(4), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SessionLost, "{e}");
    assert!(eb.token().is_none());
    assert_eq!(env.coord.leader("expire").await.unwrap(), None);
}

async fn compaction_during_wait(env: Env) {
    let a = env.session(5).await;
    let b = env.session(5).await;
    let la = a.lock("compact").unwrap();
    la.lock().await.unwrap();
    let lb = Arc::new(b.lock("compact").unwrap());
    let lb2 = lb.clone();
    let waiter = tokio::spawn(async move { lb2.lock().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut rev = 0;
    for i in 0..20 {
        let r = env
            .coord
            .txn(shardkit::lease::Txn {
                compare: vec![],
                success: vec![shardkit::lease::Op::put(format!("noise/{i}"), "x")],
                failure: vec![],
            })
            .await
            .unwrap();
        rev = r.revision;
    }
    env.coord.compact(rev).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    la.unlock().await.unwrap();
    let t = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(t.lease, b.lease_id());
    lb.unlock().await.unwrap();
    assert!(env.keys(&format!("{LOCKS}compact/")).await.is_empty());
    // A watch from a compacted revision reports it as such.
    let mut w = env.coord.watch(b"noise/", true, 1).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(2), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");
}

async fn election_campaign_proclaim_resign_observe(env: Env) {
    let mut obs = env.coord.observe("lead").unwrap();
    assert_eq!(obs.next().await.unwrap(), None, "no leader yet");
    let a = env.session(5).await;
    let b = env.session(5).await;
    let ea = a.election("lead").unwrap();
    let ta = ea.campaign(b"node-a").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(2), obs.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.value, b"node-a");
    assert_eq!(seen.revision, ta.revision);
    let eb = Arc::new(b.election("lead").unwrap());
    let eb2 = eb.clone();
    let waiter = tokio::spawn(async move { eb2.campaign(b"node-b").await });
    ea.proclaim(b"node-a:v2").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(2), obs.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.value, b"node-a:v2");
    assert_eq!(
        env.coord.leader("lead").await.unwrap().unwrap().value,
        b"node-a:v2"
    );
    assert!(!waiter.is_finished());
    ea.resign().await.unwrap();
    assert_eq!(
        ea.proclaim(b"x").await.unwrap_err().kind(),
        ErrorKind::Fenced
    );
    let tb = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(tb.revision > ta.revision);
    let seen = tokio::time::timeout(Duration::from_secs(2), obs.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.value, b"node-b");
    b.close().await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(2), obs.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, None, "leader's session closed: no leader");
    assert!(env.keys(ELECTION_PREFIX).await.is_empty());
}

async fn guarded_writes_apply_only_while_current(env: Env) {
    let a = env.session(5).await;
    let b = env.session(5).await;
    let la = a.lock("guard").unwrap();
    let ta = la.lock().await.unwrap();
    la.put(b"guarded/x", b"1").await.unwrap();
    // A token of another lock, or of another session, is refused by name.
    let other = a.lock("other").unwrap();
    let e = other.put_with(&ta, b"guarded/x", b"2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("\"other\""), "{e}");
    let e = b.guarded_put(&ta, b"guarded/x", b"2").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    // The lock passes on (a's lease revoked): a's token is stale.
    env.coord.revoke(a.lease_id()).await.unwrap();
    let lb = b.lock("guard").unwrap();
    let tb = lb.lock_timeout(Duration::from_secs(3)).await.unwrap();
    assert!(tb.revision > ta.revision);
    let e = a
        .guarded_put(&ta, b"guarded/x", b"stale")
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Fenced | ErrorKind::SessionLost),
        "{e}"
    );
    lb.put(b"guarded/x", b"3").await.unwrap();
    let v = env
        .coord
        .range(b"guarded/x", RangeOpts::default())
        .await
        .unwrap();
    assert_eq!(v.kvs[0].value, b"3");
    // A user compare failing is not fencing: the txn reports it.
    let r = lb
        .txn(
            vec![shardkit::lease::Cmp::value(
                b"guarded/x".to_vec(),
                shardkit::lease::CmpOp::Equal,
                b"nope".to_vec(),
            )],
            vec![shardkit::lease::Op::put("guarded/x", "4")],
            vec![shardkit::lease::Op::get("guarded/x")],
        )
        .await
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.results[0].kvs[0].value, b"3");
    lb.unlock().await.unwrap();
    assert_eq!(
        lb.put(b"guarded/x", b"5").await.unwrap_err().kind(),
        ErrorKind::Fenced
    );
}

async fn fence_gate_rejects_older_tokens(env: Env) {
    let gate = FenceGate::for_lock("fence").unwrap();
    let a = env.session(5).await;
    let b = env.session(5).await;
    let la = a.lock("fence").unwrap();
    let ta = la.lock().await.unwrap();
    gate.admit(b"db", &ta).unwrap();
    gate.admit(b"db", &ta).unwrap(); // the same holder may write again
    la.unlock().await.unwrap();
    let lb = b.lock("fence").unwrap();
    let tb = lb.lock().await.unwrap();
    gate.admit(b"db", &tb).unwrap();
    let e = gate.admit(b"db", &ta).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fenced);
    assert!(e.message().contains(&ta.revision.to_string()), "{e}");
    assert_eq!(gate.newest(b"db"), tb.revision);
    let other = b.lock("other").unwrap().lock().await.unwrap();
    assert_eq!(
        gate.admit(b"db", &other).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        gate.admit_value(b"db", 0).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

async fn session_lost_once_and_close_revokes(env: Env) {
    let s = env.session(2).await;
    let count = Arc::new(Mutex::new(0));
    let c2 = count.clone();
    s.on_lost(move |e| {
        assert_eq!(e.kind(), ErrorKind::SessionLost);
        *c2.lock().unwrap() += 1;
    });
    let lost = tokio::spawn({
        let s = s.clone();
        async move { s.lost().await }
    });
    env.coord.revoke(s.lease_id()).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(3), lost)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::SessionLost);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(*count.lock().unwrap(), 1);
    assert!(s.check().is_err());
    assert_eq!(s.remaining(), Duration::ZERO);
    // A callback registered after the loss runs at once, once.
    let c3 = count.clone();
    s.on_lost(move |_| *c3.lock().unwrap() += 1);
    assert_eq!(*count.lock().unwrap(), 2);
    s.close().await.unwrap();

    let t = env.session(5).await;
    let id = t.lease_id();
    assert!(env.coord.lease_ttl(id).await.unwrap().is_some());
    t.close().await.unwrap();
    assert!(
        env.coord.lease_ttl(id).await.unwrap().is_none(),
        "close revokes"
    );
    assert!(!t.is_lost() && t.is_closed());
    assert_eq!(
        t.lock("x").unwrap().lock().await.unwrap_err().kind(),
        ErrorKind::SessionLost
    );
}

async fn session_resume_by_id(env: Env) {
    let s = env.session(3).await;
    let id = s.lease_id();
    let l = s.lock("resume").unwrap();
    l.lock().await.unwrap();
    // A restarted process resumes the lease by id and keeps it alive; the
    // original handle is dropped without revoking (as a crash would).
    drop(l);
    drop(s);
    let r = env
        .client()
        .await
        .resume(id, SessionOptions::default())
        .await
        .unwrap();
    assert_eq!(r.lease_id(), id);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        env.coord.lease_ttl(id).await.unwrap().is_some(),
        "resumed lease kept alive"
    );
    assert_eq!(env.keys(&format!("{LOCKS}resume/")).await.len(), 1);
    r.close().await.unwrap();
    let e = env
        .coord
        .resume(id, SessionOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

type Log = Arc<Mutex<Vec<(String, OwnershipEvent)>>>;

fn recorder(worker: &str, log: &Log) -> shardkit::lease::OwnershipHandler {
    let (w, log) = (worker.to_string(), log.clone());
    Arc::new(move |ev: &OwnershipEvent| log.lock().unwrap().push((w.clone(), ev.clone())))
}

/// Replays the event log into shard -> owner, checking nobody gains a shard
/// another still holds (in the order events were reported).
fn owners(log: &Log) -> BTreeMap<String, String> {
    let mut held: BTreeMap<String, String> = BTreeMap::new();
    let events = log.lock().unwrap().clone();
    for (w, ev) in events.iter() {
        match ev {
            OwnershipEvent::Gained { shard, .. } => {
                if let Some(prev) = held.insert(shard.clone(), w.clone()) {
                    let all: Vec<String> = events
                        .iter()
                        .filter(|(_, e)| matches!(e, OwnershipEvent::Gained { shard: s, .. } | OwnershipEvent::Lost { shard: s, .. } if s == shard))
                        .map(|(w, e)| format!("{w}: {e:?}"))
                        .collect();
                    panic!("{w} gained {shard} while {prev} held it: {all:#?}");
                }
            }
            OwnershipEvent::Lost { shard, .. } => {
                assert_eq!(
                    held.remove(shard).as_deref(),
                    Some(w.as_str()),
                    "{w} lost {shard} it did not hold"
                );
            }
        }
    }
    held
}

/// Waits until every shard is owned by `want_workers` workers AND no event
/// has been reported for 500 ms: "all owned" alone can hold mid-rebalance,
/// while a shard still sits with a worker that has yet to hand it on.
async fn settle(log: &Log, n: usize, want_workers: usize) -> BTreeMap<String, String> {
    let until = Instant::now() + Duration::from_secs(10);
    let mut seen = (usize::MAX, Instant::now());
    loop {
        let len = log.lock().unwrap().len();
        if len != seen.0 {
            seen = (len, Instant::now());
        }
        let o = owners(log);
        let workers: BTreeSet<&String> = o.values().collect();
        let done = o.len() == n && workers.len() == want_workers;
        let quiet = seen.1.elapsed() >= Duration::from_millis(500);
        if (done && quiet) || Instant::now() > until {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn shard_ownership_moves_few_and_takes_over(env: Env) {
    let shards: Vec<String> = (0..60).map(|i| format!("s{i:02}")).collect();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let mut sessions = Vec::new();
    let mut owners_h = Vec::new();
    for w in ["w1", "w2", "w3"] {
        let s = env.session(2).await;
        owners_h.push(
            ShardOwner::start(&s, "grp", w, shards.clone(), recorder(w, &log))
                .await
                .unwrap(),
        );
        sessions.push(s);
    }
    let before = settle(&log, 60, 3).await;
    assert_eq!(before.len(), 60, "every shard owned");
    for (i, h) in owners_h.iter().enumerate() {
        let mine: BTreeSet<String> = h.owned().into_keys().collect();
        let expect: BTreeSet<String> = before
            .iter()
            .filter(|(_, w)| **w == format!("w{}", i + 1))
            .map(|(s, _)| s.clone())
            .collect();
        assert_eq!(mine, expect);
    }
    // A fourth worker joins: only about a quarter of the shards move, all to it.
    let s4 = env.session(2).await;
    let h4 = ShardOwner::start(&s4, "grp", "w4", shards.clone(), recorder("w4", &log))
        .await
        .unwrap();
    let after = settle(&log, 60, 4).await;
    let moved: Vec<&String> = shards
        .iter()
        .filter(|s| before.get(*s) != after.get(*s))
        .collect();
    assert!(
        moved.iter().all(|s| after[*s] == "w4"),
        "only moves to the new worker"
    );
    assert!(
        (5..=30).contains(&moved.len()),
        "moved {} of 60",
        moved.len()
    );
    // A duplicate worker name is refused.
    let dup = ShardOwner::start(&s4, "grp", "w1", shards.clone(), recorder("w1", &log))
        .await
        .unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::DuplicateNode);
    // w4 leaves cleanly: its shards go back, nothing else moves.
    h4.close().await.unwrap();
    let back = settle(&log, 60, 3).await;
    assert_eq!(back, before, "leave restores the 3-worker assignment");
    // w1 dies (its lease ends without a goodbye): w2/w3 take over its shards
    // once the lease is gone; w1 is told it lost them.
    // The process is gone: it hears nothing more, so the log records its
    // shards as lost at the moment of death.
    drop(owners_h.remove(0));
    for (shard, w) in owners(&log) {
        if w == "w1" {
            let reason = "process died".to_string();
            log.lock()
                .unwrap()
                .push((w, OwnershipEvent::Lost { shard, reason }));
        }
    }
    env.coord.revoke(sessions[0].lease_id()).await.unwrap();
    let dead = settle(&log, 60, 2).await;
    assert_eq!(dead.len(), 60);
    assert!(dead.values().all(|w| w != "w1"));
    assert!(env.keys(&format!("{SHARDS_PREFIX}grp/owners/")).await.len() == 60);
    for h in owners_h {
        h.close().await.unwrap();
    }
    assert!(env
        .wait_keys(
            &format!("{SHARDS_PREFIX}grp/owners/"),
            0,
            Duration::from_secs(2)
        )
        .await
        .is_empty());
}

async fn bad_input_is_named(env: Env) {
    let c = &env.coord;
    for ttl in [Duration::ZERO, Duration::from_millis(1500)] {
        let e = c.session_ttl(ttl).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("ttl"), "{e}");
    }
    let e = c
        .session(SessionOptions {
            ttl: Duration::from_secs(4),
            margin: Some(Duration::from_secs(3)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("margin"), "{e}");
    let s = env.session(5).await;
    for bad in ["", "a\nb"] {
        assert_eq!(s.lock(bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            s.election(bad).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert!(c.observe(bad).is_err());
    }
    assert!(s.lock("").unwrap_err().message().contains("empty"));
    assert!(FenceGate::for_lock("")
        .unwrap_err()
        .message()
        .contains("empty"));
    let e = ShardOwner::start(
        &s,
        "g",
        "w",
        vec!["a".into(), "a".into()],
        Arc::new(|_: &OwnershipEvent| {}),
    )
    .await
    .unwrap_err();
    assert!(e.message().contains("\"a\""), "{e}");
    let e = ShardOwner::start(&s, "g", "w", vec![], Arc::new(|_: &OwnershipEvent| {}))
        .await
        .unwrap_err();
    assert!(e.message().contains("empty"), "{e}");
    // Unreachable endpoints fail within the timeout, naming them.
    let port = free_port(std::net::Ipv4Addr::LOCALHOST);
    let start = Instant::now();
    let e = Coordinator::connect(&format!("127.0.0.1:{port}"), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{e}"
    );
    assert!(e.message().contains(&port.to_string()), "{e}");
    let e = Coordinator::connect("nohost", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(e.message().contains("nohost"), "{e}");
}

/// etcd raises a TTL below its minimum (1.5 × election timeout) without
/// saying so; shardkit refuses it instead, because its local deadline would
/// rest on a TTL nobody asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_ttl_below_server_minimum_is_refused() {
    let cluster = tokio::task::spawn_blocking(|| EtcdCluster::start_with_timing(1, 100, 2000))
        .await
        .unwrap()
        .expect("start etcd");
    let coord = Coordinator::connect_list(&cluster.endpoints(), Duration::from_secs(5))
        .await
        .unwrap();
    let e = coord.session_ttl(Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(
        e.message()
            .contains("ttl 1s is below the server's minimum lease TTL of 3s"),
        "{e}"
    );
    // Nothing is left behind: the raised lease was revoked.
    let ok = coord.session_ttl(Duration::from_secs(3)).await.unwrap();
    ok.close().await.unwrap();
}

async fn nested_names_do_not_collide(env: Env) {
    let a = env.session(5).await;
    let b = env.session(5).await;
    let deep = a.lock("jobs/daily").unwrap();
    deep.lock().await.unwrap();
    // "jobs" is not a prefix of "jobs/daily": it is free.
    let top = b.lock("jobs").unwrap();
    assert!(top.try_lock().await.unwrap().is_some());
    let e = a.election("svc/x").unwrap();
    e.campaign(b"x").await.unwrap();
    assert_eq!(env.coord.leader("svc").await.unwrap(), None);
    assert_eq!(
        env.coord.leader("svc/x").await.unwrap().unwrap().value,
        b"x"
    );
    let pct = b.lock("100%").unwrap();
    assert!(pct.try_lock().await.unwrap().is_some());
}

async fn on_lost_callback_may_close(env: Env) {
    let s = env.session(2).await;
    env.coord.revoke(s.lease_id()).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(3), s.lost())
        .await
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::SessionLost);
    // Registered after the loss, the callback runs at once on this thread;
    // it may call back into the session (here: close it) without deadlock.
    let s2 = s.clone();
    let closed = Arc::new(Mutex::new(false));
    let c2 = closed.clone();
    tokio::task::block_in_place(|| {
        s.on_lost(move |_| {
            let h = tokio::runtime::Handle::current();
            h.block_on(s2.close()).unwrap();
            *c2.lock().unwrap() = true;
        })
    });
    assert!(*closed.lock().unwrap());
}

async fn resumed_session_never_reuses_a_waiter_key(env: Env) {
    let s = env.session(5).await;
    let old = s.lock("reuse").unwrap();
    let t_old = old.lock().await.unwrap();
    // The same lease taken over by a new incarnation (the old one is still
    // alive: paused, say). Its lock must not adopt the old waiter key.
    let r = env
        .client()
        .await
        .resume(s.lease_id(), SessionOptions::default())
        .await
        .unwrap();
    let new = r.lock("reuse").unwrap();
    assert!(
        new.try_lock().await.unwrap().is_none(),
        "the lease's old hold is not ours to reuse"
    );
    old.unlock().await.unwrap();
    let t_new = new.try_lock().await.unwrap().unwrap();
    assert!(t_new.revision > t_old.revision && t_new.key != t_old.key);
}

async fn session_close_reports_shards_lost_before_release(env: Env) {
    let shards: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let s1 = env.session(5).await;
    let s2 = env.session(5).await;
    let _h1 = ShardOwner::start(&s1, "closing", "w1", shards.clone(), recorder("w1", &log))
        .await
        .unwrap();
    let h2 = ShardOwner::start(&s2, "closing", "w2", shards.clone(), recorder("w2", &log))
        .await
        .unwrap();
    settle(&log, 16, 2).await;
    // Closing w1's session directly (not its owner) revokes the lease; w1
    // must hear "lost" before w2 can take its shards. owners() panics on any
    // overlap in the reported order.
    s1.close().await.unwrap();
    let after = settle(&log, 16, 1).await;
    assert!(after.values().all(|w| w == "w2"), "{after:?}");
    assert_eq!(h2.owned().len(), 16);
}
