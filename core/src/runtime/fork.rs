//! Telling a forked child from the process it was forked from.
//!
//! After `fork()` only the forking thread exists in the child: a tokio
//! runtime's workers, rayon's pool, and every task and pooled connection on
//! them are gone, though their memory (and any lock they held) was copied.
//! Waiting on any of it hangs. So each process gets values of its own
//! ([`PerProcess`]), and objects whose work runs on their process's tasks
//! remember where they were made ([`Home`]) and refuse to work elsewhere.
//!
//! A fork is noticed by a `pthread_atfork` child handler that bumps a
//! generation counter: one atomic load tells whether anything changed, where
//! `getpid()` would be a system call on every check.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use crate::error::{Error, Result};

/// How many forks lie between the process image that loaded shardkit and
/// this process. Every process a value can travel to by fork has a larger
/// one than the process it was made in.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Whether the fork handler is installed (it is inherited by children).
static WATCHING: AtomicBool = AtomicBool::new(false);

/// This process's generation.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Installs the fork handler, once. Called before anything fork-sensitive is
/// made, so a fork that could leave it stale is always counted. Not a
/// `Once`: a fork while another thread ran it would leave the child's
/// `Once` running forever.
pub(crate) fn watch_forks() {
    if WATCHING.load(Ordering::Acquire) || WATCHING.swap(true, Ordering::AcqRel) {
        return;
    }
    #[cfg(unix)]
    {
        /// Runs in the child right after `fork()`, where only
        /// async-signal-safe work is allowed: one atomic add.
        extern "C" fn forked() {
            GENERATION.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `forked` is a plain `extern "C" fn()` with no captured
        // state, valid for the life of the process (this library is never
        // unloaded while its values live); it only touches an atomic, which
        // is what a handler run in the child of a multi-threaded fork may do.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forked)) };
        // Only ENOMEM can fail it; forks then go unnoticed, as they did
        // before this module existed.
        debug_assert_eq!(rc, 0, "pthread_atfork failed");
    }
}

/// Where a value was made: the process whose runtime runs its tasks and
/// owns its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Home {
    generation: u64,
    pid: u32,
}

impl Home {
    /// This process.
    pub fn here() -> Home {
        watch_forks();
        Home {
            generation: generation(),
            pid: std::process::id(),
        }
    }

    /// Whether this is still the process the value was made in (false in a
    /// child forked after it was made).
    #[inline]
    pub fn is_here(&self) -> bool {
        self.generation == generation()
    }

    /// Ok in the process the value was made in (`what` is only formatted
    /// otherwise, so a `format_args!` costs nothing on the way through). In
    /// a forked child, an
    /// `InvalidArgument` error saying `what` was made before the fork: its
    /// tasks and connections stayed in the parent, so nothing it does can
    /// finish here, and the caller must make a new one (a programming
    /// error, like a blocking call from a runtime thread; retrying never
    /// helps, so not `Unavailable`).
    #[inline]
    pub fn check(&self, what: impl std::fmt::Display) -> Result<()> {
        if self.is_here() {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "{what} was created in process {} before fork(); create a new one in this \
             process (pid {})",
            self.pid,
            std::process::id()
        )))
    }
}

/// What a [`PerProcess`] holds for one process.
struct Made<T> {
    generation: u64,
    value: T,
}

/// A value made lazily once per process. In a forked child the parent's
/// value is left where it is, never dropped (dropping a runtime or a pool
/// waits for threads the child does not have), and the child makes its own
/// on first use.
pub(crate) struct PerProcess<T: Send + Sync + 'static> {
    /// Points at a leaked `Box<Made<T>>`, never freed; null before first use.
    current: AtomicPtr<Made<T>>,
}

impl<T: Send + Sync + 'static> PerProcess<T> {
    pub(crate) const fn new() -> Self {
        PerProcess {
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn made(&self) -> Option<&'static Made<T>> {
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here came from `Box::into_raw` in
        // `get_or_init` and is never freed, so it is valid for 'static; the
        // Acquire load pairs with the Release of the exchange publishing it.
        unsafe { p.as_ref() }
    }

    /// This process's value, if it was made.
    #[inline]
    pub(crate) fn get(&self) -> Option<&'static T> {
        let made = self.made()?;
        (made.generation == generation()).then_some(&made.value)
    }

    /// This process's value, made by `init` on first use. Two threads making
    /// it at once both run `init`; one value wins and the other is leaked
    /// (it may be a runtime, whose drop can block): a cost paid at most once
    /// per process, in exchange for no lock a fork could leave held.
    pub(crate) fn get_or_init(&self, init: impl FnOnce() -> T) -> &'static T {
        if let Some(v) = self.get() {
            return v;
        }
        watch_forks();
        let generation = generation();
        let fresh = Box::into_raw(Box::new(Made {
            generation,
            value: init(),
        }));
        let mut seen = self.current.load(Ordering::Acquire);
        loop {
            // SAFETY: as in `made`: published pointers are never freed.
            if let Some(made) = unsafe { seen.as_ref() } {
                if made.generation == generation {
                    return &made.value;
                }
            }
            match self
                .current
                .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // The value replaced (if any) belonged to the parent: leaked.
                // SAFETY: `fresh` is from `Box::into_raw` above and, now
                // published, is never freed.
                Ok(_) => return unsafe { &(*fresh).value },
                Err(now) => seen = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_here_until_a_fork() {
        let home = Home::here();
        assert!(home.is_here());
        assert!(home.check("the thing").is_ok());
        // What a forked child sees: a later generation.
        let parent = Home {
            generation: generation().wrapping_sub(1),
            pid: 1,
        };
        let e = parent.check("the embedded store").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert_eq!(
            e.message(),
            format!(
                "the embedded store was created in process 1 before fork(); create a new \
                 one in this process (pid {})",
                std::process::id()
            )
        );
    }

    #[test]
    fn per_process_makes_one_value() {
        static CELL: PerProcess<u32> = PerProcess::new();
        assert!(CELL.get().is_none());
        let a: *const u32 = CELL.get_or_init(|| 7);
        let b: *const u32 = CELL.get_or_init(|| unreachable!("made once"));
        assert_eq!(a, b);
        assert_eq!(CELL.get(), Some(&7));
    }
}
