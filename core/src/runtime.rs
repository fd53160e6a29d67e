//! The one tokio runtime a process's bindings share (C ABI, Python, CLI),
//! started on first use, the guard that keeps blocking calls off it, and
//! the pool parallel computations run on.
//!
//! "One per process" holds across `fork()`: a forked child starts a runtime
//! (and a rayon pool) of its own on first use, because the parent's threads
//! do not exist in it. The parent's are left alone, never dropped. Objects
//! whose work runs on the parent's runtime (sessions, store clients, HTTP
//! connection pools) know their [`Home`] and fail in the child with an error
//! saying so, instead of waiting forever. See the `fork` module.

mod fork;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

pub use fork::Home;
pub(crate) use fork::PerProcess;

/// Environment variable that sizes the runtime when
/// [`set_threads`] was not called.
pub const THREADS_ENV: &str = "SHARDKIT_THREADS";

static THREADS: AtomicUsize = AtomicUsize::new(0);
static RUNTIME: PerProcess<std::result::Result<tokio::runtime::Runtime, String>> =
    PerProcess::new();

/// Sets the number of worker threads; only before the runtime starts (in a
/// forked child: before the child's runtime starts).
pub fn set_threads(n: usize) -> Result<()> {
    if n == 0 || n > 1024 {
        return Err(Error::invalid(format!(
            "thread count {n}: must be 1..=1024"
        )));
    }
    if RUNTIME.get().is_some() {
        return Err(Error::invalid(format!(
            "thread count {n}: the runtime is already running; set it before the first call"
        )));
    }
    THREADS.store(n, Ordering::SeqCst);
    Ok(())
}

/// The worker thread count: [`set_threads`]'s, else [`THREADS_ENV`]'s,
/// else the core count (at most 8). Servers that run event loops of their
/// own (the cache proxy) size them by it too.
pub fn threads() -> usize {
    match THREADS.load(Ordering::SeqCst) {
        0 => std::env::var(THREADS_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| (1..=1024).contains(n))
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(2, |n| n.get())
                    .min(8)
            }),
        n => n,
    }
}

/// This process's runtime, started on first call (in a forked child, on the
/// child's first call).
pub fn shared() -> Result<&'static tokio::runtime::Runtime> {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads())
            .thread_name("shardkit-rt")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    rt.as_ref().map_err(|e| {
        Error::new(
            crate::ErrorKind::Io,
            format!("could not start the runtime: {e}"),
        )
    })
}

/// Runs `fut` to completion from a thread outside any async runtime. Called
/// from a runtime thread it returns an error instead of deadlocking.
pub fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::invalid(
            "blocking call made from an async runtime thread; use the async API there",
        ));
    }
    Ok(shared()?.block_on(fut))
}

/// A rayon pool for forked children: rayon's global pool keeps its
/// (missing) parent threads, so a child that used it would wait forever.
static CHILD_POOL: PerProcess<Option<rayon::ThreadPool>> = PerProcess::new();

/// Runs `op`, whose rayon parallel iterators then run on this process's
/// pool: rayon's global pool in the process that loaded shardkit (so its
/// configuration, `RAYON_NUM_THREADS` or `build_global`, applies as
/// before), a pool of the child's own in a forked child. On a rayon worker
/// thread already (a caller's own pool) `op` runs there.
pub fn parallel<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    // Before the global pool's threads start: a fork after that must be seen.
    fork::watch_forks();
    if fork::generation() == 0 || rayon::current_thread_index().is_some() {
        return op();
    }
    let pool = CHILD_POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("shardkit-par-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(op),
        // No thread could be started: nothing parallel can run anyway.
        None => op(),
    }
}
