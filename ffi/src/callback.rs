//! What every export that takes a callback shares: the caller's `userdata`
//! carried to runtime threads, and the gate that makes "once `_free`
//! returns, the callback is not running and never will" true.

use std::ffi::{c_void, CString};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The caller's `userdata`, carried to runtime threads.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);

// SAFETY: the pointer is never dereferenced by shardkit, only handed back to
// the caller's own callback; every function taking `userdata` documents that
// the callback runs on another thread, so the caller vouches that the data
// behind it may be used from there (and concurrently, where documented).
unsafe impl Send for UserData {}
// SAFETY: as for Send; shardkit only copies the pointer value.
unsafe impl Sync for UserData {}

/// Makes "after `_free` returns, the callback is not running and never will
/// run" true, so C can free `userdata` right after.
///
/// A callback enters only while the gate is open and registers its thread;
/// closing waits until no *other* thread is inside. The closing thread's own
/// entry is not waited for, so a callback may free its own object without
/// deadlocking on itself.
pub(crate) struct CallbackGate {
    state: Mutex<GateState>,
    idle: Condvar,
}

struct GateState {
    open: bool,
    running: Vec<ThreadMark>,
}

/// Identifies the current thread: the address of a thread-local. Unlike
/// `std::thread::current()` it allocates nothing (on the C main thread that
/// handle would be allocated lazily and outlive every leak check), and a
/// thread cannot exit while it is inside `run`, so no stale mark is compared.
type ThreadMark = usize;

fn thread_mark() -> ThreadMark {
    thread_local! {
        static MARK: u8 = const { 0 };
    }
    MARK.with(|m| std::ptr::from_ref(m) as usize)
}

impl CallbackGate {
    pub(crate) fn new() -> Arc<CallbackGate> {
        Arc::new(CallbackGate {
            state: Mutex::new(GateState {
                open: true,
                running: Vec::new(),
            }),
            idle: Condvar::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        // Poisoning cannot leave GateState half-updated (plain pushes and
        // removals), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` if the gate is open. A panic in `f` (in our glue; C cannot
    /// unwind through an `extern "C"` call) is swallowed here: callbacks run
    /// inside core's tasks, which must not unwind either.
    pub(crate) fn run(&self, f: impl FnOnce()) {
        let me = thread_mark();
        {
            let mut s = self.state();
            if !s.open {
                return;
            }
            s.running.push(me);
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        {
            let mut s = self.state();
            if let Some(i) = s.running.iter().position(|t| *t == me) {
                s.running.swap_remove(i);
            }
        }
        self.idle.notify_all();
        if let Err(p) = r {
            // Dropping a payload can panic in turn; leak it instead.
            std::mem::forget(p);
        }
    }

    /// Closes the gate and waits until no other thread is inside a callback.
    pub(crate) fn close(&self) {
        let me = thread_mark();
        let mut s = self.state();
        s.open = false;
        while s.running.iter().any(|t| *t != me) {
            s = self.idle.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// `text` as a C string for a callback; interior NULs (impossible in names,
/// unlikely in messages) are dropped rather than failing the callback.
pub(crate) fn c_text(text: &str) -> CString {
    CString::new(text)
        .unwrap_or_else(|_| CString::new(text.replace('\0', "")).expect("NULs were removed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn gate_waits_for_a_running_callback_and_then_stays_shut() {
        let gate = CallbackGate::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let g = gate.clone();
        let c = calls.clone();
        let t = std::thread::spawn(move || {
            g.run(|| {
                started_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                c.fetch_add(1, Ordering::SeqCst);
            })
        });
        started_rx.recv().unwrap();
        gate.close();
        // close returned only after the running call finished.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        gate.run(|| {
            calls.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        t.join().unwrap();
    }

    #[test]
    fn gate_closed_from_inside_its_own_callback_does_not_deadlock() {
        let gate = CallbackGate::new();
        let g = gate.clone();
        gate.run(|| g.close());
        let mut ran = false;
        gate.run(|| ran = true);
        assert!(!ran);
    }

    #[test]
    fn gate_swallows_a_panic() {
        let gate = CallbackGate::new();
        gate.run(|| panic!("boom"));
        let mut ran = false;
        gate.run(|| ran = true);
        assert!(ran);
    }
}
