//! Server health: passive ejection (nutcracker's `auto_eject_hosts`,
//! `server_failure_limit`) plus an active probe after
//! `server_retry_timeout`.
//!
//! Connections report each failure (connect refused, timeout, a closed or
//! garbled connection) and each reply. `server_failure_limit` failures in
//! a row with no reply between them eject the server: the pool's route is
//! rebuilt without it (see [`super::route`]). nutcracker puts an ejected
//! server back when its retry timeout passes and lets the next request find
//! out whether it is up; here a probe (`version`, or `PING` after the
//! handshake) asks first, every `server_retry_timeout`, and only a server
//! that answers rejoins. No client request is spent on a dead server.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// What a pool's health watcher hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The server at this index was ejected.
    Ejected(usize),
}

/// One server's failure count and ejection state.
pub(crate) struct Health {
    index: usize,
    failures: AtomicU32,
    limit: u32,
    auto_eject: bool,
    ejected: AtomicBool,
    /// Unix seconds of the last ejection (nutcracker's `server_ejected_at`).
    pub(crate) ejected_at: AtomicU64,
    /// Ejections so far.
    pub(crate) ejections: AtomicU64,
    events: mpsc::UnboundedSender<Event>,
}

impl Health {
    pub(crate) fn new(
        index: usize,
        limit: u32,
        auto_eject: bool,
        events: mpsc::UnboundedSender<Event>,
    ) -> Health {
        Health {
            index,
            failures: AtomicU32::new(0),
            limit: limit.max(1),
            auto_eject,
            ejected: AtomicBool::new(false),
            ejected_at: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            events,
        }
    }

    /// A request or connection failed.
    pub(crate) fn failed(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.auto_eject && n >= self.limit && !self.ejected.swap(true, Ordering::AcqRel) {
            self.ejections.fetch_add(1, Ordering::Relaxed);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.ejected_at.store(now, Ordering::Relaxed);
            let _ = self.events.send(Event::Ejected(self.index));
        }
    }

    /// The server answered.
    pub(crate) fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A connection was made (no effect on the count: only a reply proves
    /// the server works).
    pub(crate) fn connected(&self) {}

    /// Whether the server is out of the pool now.
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    /// The probe got an answer: the server rejoins.
    pub(crate) fn rejoin(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.ejected.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_the_limit_of_failures_in_a_row() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let h = Health::new(3, 2, true, tx);
        h.failed();
        h.succeeded();
        h.failed();
        assert!(!h.is_ejected(), "a reply between failures resets the count");
        h.failed();
        assert!(h.is_ejected());
        h.failed();
        assert_eq!(rx.try_recv(), Ok(Event::Ejected(3)));
        assert!(rx.try_recv().is_err(), "one event per ejection");
        h.rejoin();
        assert!(!h.is_ejected());
        assert_eq!(h.ejections.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn never_ejects_without_auto_eject() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let h = Health::new(0, 1, false, tx);
        for _ in 0..10 {
            h.failed();
        }
        assert!(!h.is_ejected());
    }
}
