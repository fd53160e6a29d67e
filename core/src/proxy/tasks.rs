//! The proxy's tasks, counted, so that stopping a proxy can wait until
//! every one of them has finished: an embedding program (a test, a C
//! caller under valgrind) gets its memory back when `stop` returns instead
//! of at some later point on the shared runtime.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Spawns tasks on the current runtime and counts those still running.
#[derive(Clone, Default)]
pub(crate) struct Tasks(Arc<Live>);

#[derive(Default)]
struct Live {
    count: Mutex<usize>,
    idle: Condvar,
}

/// Decrements the count when its task ends, finished or dropped.
struct Running(Tasks);

impl Drop for Running {
    fn drop(&mut self) {
        let live = &self.0 .0;
        let mut n = live.count.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        if *n == 0 {
            live.idle.notify_all();
        }
    }
}

impl Tasks {
    /// Spawns `fut` on the current runtime, counted.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        *self.0.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let running = Running(self.clone());
        tokio::spawn(async move {
            let _running = running;
            fut.await;
        });
    }

    /// Blocks until no counted task runs, or `limit` passes; whether they
    /// all ended. Never call it from a runtime thread.
    pub(crate) fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut n = self.0.count.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = self
                .0
                .idle
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}
