//! The one tokio runtime a process's bindings share (C ABI, Python, CLI),
//! started on first use, and the guard that keeps blocking calls off it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Environment variable that sizes the runtime when
/// [`set_threads`] was not called.
pub const THREADS_ENV: &str = "SHARDKIT_THREADS";

static THREADS: AtomicUsize = AtomicUsize::new(0);
static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();

/// Sets the number of worker threads; only before the runtime starts.
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

/// The shared runtime, started on first call.
pub fn shared() -> Result<&'static tokio::runtime::Runtime> {
    let rt = RUNTIME.get_or_init(|| {
        let mut n = THREADS.load(Ordering::SeqCst);
        if n == 0 {
            n = std::env::var(THREADS_ENV)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| (1..=1024).contains(n))
                .unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map_or(2, |n| n.get())
                        .min(8)
                });
        }
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
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
