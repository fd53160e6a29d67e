//! After `fork()` the child has only the forking thread: the parent's
//! runtime workers and rayon threads are gone. The child must start a
//! runtime (and a pool) of its own, and the parent's session must refuse
//! to work there instead of waiting on the parent's tasks.
//!
//! One test in its own binary, so no other test thread can hold a lock
//! (stdout, the environment) at the moment of the fork. The child reports
//! only through its exit status and never prints.

#![cfg(unix)]

use std::time::{Duration, Instant};

use shardkit::lease::Coordinator;
use shardkit::shard::PARALLEL_BATCH_THRESHOLD;
use shardkit::{runtime, Algorithm, ErrorKind, Node, ShardConfig, Sharder};

/// What the child checks; returns the number of the first failed step, 0
/// when all passed.
fn child(parent: &Coordinator, session: &shardkit::lease::Session, sharder: &Sharder) -> i32 {
    let keys: Vec<String> = (0..PARALLEL_BATCH_THRESHOLD + 10)
        .map(|i| format!("k{i}"))
        .collect();
    let mut slots = vec![0u32; keys.len()];
    // 1: a parallel batch, on a pool the child starts.
    if sharder.lookup_batch(&keys, &mut slots).is_err() {
        return 1;
    }
    // 2-4: the parent's objects fail at once, naming the fork.
    let started = Instant::now();
    let refused = |e: Option<&shardkit::Error>| {
        e.is_some_and(|e| {
            e.kind() == ErrorKind::InvalidArgument && e.message().contains("before fork()")
        })
    };
    if !refused(session.check().as_ref().err()) {
        return 2;
    }
    match runtime::block_on(session.close()) {
        Ok(r) if refused(r.as_ref().err()) => {}
        _ => return 3,
    }
    match runtime::block_on(parent.session_ttl(Duration::from_secs(5))) {
        Ok(r) if refused(r.as_ref().err()) => {}
        _ => return 4,
    }
    if started.elapsed() > Duration::from_secs(2) {
        return 5;
    }
    // 6-8: a coordinator made here works, on the child's own runtime.
    let coord = Coordinator::embedded();
    let Ok(Ok(session)) = runtime::block_on(coord.session_ttl(Duration::from_secs(5))) else {
        return 6;
    };
    let Ok(lock) = session.lock("jobs") else {
        return 7;
    };
    let worked = runtime::block_on(async {
        lock.lock_timeout(Duration::from_secs(5)).await?;
        lock.unlock().await?;
        session.close().await
    });
    if !matches!(worked, Ok(Ok(()))) {
        return 8;
    }
    0
}

#[test]
fn a_forked_child_starts_its_own_runtime_and_refuses_the_parents_session() {
    let coord = Coordinator::embedded();
    let session = runtime::block_on(coord.session_ttl(Duration::from_secs(30)))
        .unwrap()
        .unwrap();
    let lock = session.lock("jobs").unwrap();
    runtime::block_on(lock.lock_timeout(Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    let nodes = ["a", "b", "c"].map(|n| Node::named(n).unwrap());
    let config = ShardConfig::new(Algorithm::from_name("maglev").unwrap());
    let sharder = Sharder::new(nodes.to_vec(), config).unwrap();
    let keys: Vec<String> = (0..PARALLEL_BATCH_THRESHOLD + 10)
        .map(|i| format!("k{i}"))
        .collect();
    let mut slots = vec![0u32; keys.len()];
    // The parent's batch runs on rayon's global pool, which the child lacks.
    sharder.lookup_batch(&keys, &mut slots).unwrap();

    // SAFETY: the child runs only `child`, which uses this library and
    // the allocator (both safe after fork with glibc) and never returns:
    // `_exit` skips destructors and atexit handlers that belong to the
    // parent.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child(&coord, &session, &sharder)
        }))
        .unwrap_or(100);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(done >= 0, "waitpid failed");
        if done == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: `pid` is our child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked child hung: killed after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(libc::WIFEXITED(status), "child died: status {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child failed at step");

    // The parent's session and lock are untouched.
    session.check().unwrap();
    assert!(lock.token().is_some());
    runtime::block_on(lock.unlock()).unwrap().unwrap();
    runtime::block_on(session.close()).unwrap().unwrap();
}
