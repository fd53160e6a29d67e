//! `shardkit_observer`: follows one election's leadership and calls back on
//! every change, and on store failures that outlast core's follow policy
//! (`shardkit::lease::FollowPolicy`), as Python's observer raises them.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::{drop_in_runtime, millis, shardkit_coordinator};
use crate::args::{null, out_ptr, text, write};
use crate::callback::{c_text, CallbackGate, UserData};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;
use shardkit::lease::{FollowPolicy, LeaderInfo};
use shardkit::{runtime, Error};

/// A running watch of one election's leadership, calling back on changes.
pub struct shardkit_observer {
    _private: [u8; 0],
}

/// How an observer rides out a failing store (core's follow policy): a
/// failed read or watch is retried after a pause starting at
/// `retry_min_ms` and doubling up to `retry_max_ms`; once failures have
/// lasted `report_after_ms`, the callback hears of the last one and the
/// observer goes on following. Fill one with
/// `shardkit_follow_policy_default`; pass NULL for the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct shardkit_follow_policy {
    /// The first pause after a failure, in milliseconds (above 0).
    pub retry_min_ms: u64,
    /// The longest pause between attempts (at least `retry_min_ms`).
    pub retry_max_ms: u64,
    /// How long failures may last before they are reported; 0 reports
    /// the first.
    pub report_after_ms: u64,
}

impl From<FollowPolicy> for shardkit_follow_policy {
    fn from(p: FollowPolicy) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        shardkit_follow_policy {
            retry_min_ms: ms(p.retry_min),
            retry_max_ms: ms(p.retry_max),
            report_after_ms: ms(p.report_after),
        }
    }
}

impl From<shardkit_follow_policy> for FollowPolicy {
    fn from(p: shardkit_follow_policy) -> Self {
        FollowPolicy {
            retry_min: millis(p.retry_min_ms),
            retry_max: millis(p.retry_max_ms),
            report_after: millis(p.report_after_ms),
        }
    }
}

/// What an observer's callback is told: a leadership state, or a failure.
///
/// - `status` `SHARDKIT_STATUS_OK`: a state. `has_leader` false means no
///   leader (then `value` is NULL and the numbers are 0); otherwise `value`
///   is the leader's proclaimed value (`value_len` bytes), `revision` its
///   fencing token and `lease` the lease it holds under.
/// - any other status (`UNAVAILABLE`, `TIMEOUT`, `IO`, ...): the store kept
///   failing for the policy's `report_after_ms`; `message` (`message_len`
///   bytes of UTF-8, also NUL-terminated) says what failed. The observer
///   keeps following; the next state comes once the store answers.
///
/// Every pointer is valid only during the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct shardkit_leader_event {
    /// OK for a state, else the failure's status.
    pub status: shardkit_status,
    /// The failure, NUL-terminated; "" for a state.
    pub message: *const c_char,
    /// Length of `message` without the NUL.
    pub message_len: usize,
    /// Whether the election has a leader.
    pub has_leader: bool,
    /// The leader's proclaimed value; NULL without a leader.
    pub value: *const u8,
    /// Length of `value` in bytes.
    pub value_len: usize,
    /// The leader's fencing token (its create revision); 0 without one.
    pub revision: i64,
    /// The lease the leader holds under; 0 without one.
    pub lease: i64,
}

/// Called with each leadership state or reported failure, in order, one
/// at a time.
pub type shardkit_leader_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const shardkit_leader_event)>;

pub(crate) struct ObserverHandle {
    gate: Arc<CallbackGate>,
    /// Aborts the observing task (its JoinHandle, type-erased: this crate
    /// does not name tokio).
    abort: Box<dyn Fn() + Send + Sync>,
}

/// Writes core's default follow policy (50 ms doubling to 1 s, failures
/// reported after 5 s) into `*out`.
///
/// # Safety
/// `out` must point to a writable `shardkit_follow_policy`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_follow_policy_default(
    out: *mut shardkit_follow_policy,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, FollowPolicy::default().into()) };
        Ok(())
    })
}

/// Calls `callback` with one event, inside the gate.
fn deliver(
    gate: &CallbackGate,
    callback: unsafe extern "C" fn(*mut c_void, *const shardkit_leader_event),
    userdata: UserData,
    state: Result<Option<LeaderInfo>, Error>,
) {
    gate.run(|| {
        let ud = userdata;
        let (status, message, leader) = match &state {
            Ok(leader) => (shardkit_status::Ok, c_text(""), leader.as_ref()),
            Err(e) => (
                shardkit_status::from_kind(e.kind()),
                c_text(&e.to_string()),
                None,
            ),
        };
        let event = shardkit_leader_event {
            status,
            message: message.as_ptr(),
            message_len: message.as_bytes().len(),
            has_leader: leader.is_some(),
            value: leader.map_or(std::ptr::null(), |l| l.value.as_ptr()),
            value_len: leader.map_or(0, |l| l.value.len()),
            revision: leader.map_or(0, |l| l.revision),
            lease: leader.map_or(0, |l| l.lease),
        };
        // SAFETY: the caller's function and userdata, valid until the gate
        // closes; `event` and what it points to live through the call.
        unsafe { callback(ud.0, &event) }
    });
}

/// Starts following the leadership of election `name`. `callback` is called
/// first with the current state (possibly "no leader"), then on every change
/// (a new leader, a new proclaimed value, no leader) and on every store
/// failure the follow `policy` (NULL: the defaults) reports. Calls are in
/// order, one at a time, on a runtime thread. Not blocking.
///
/// Errors: `INVALID_ARGUMENT` (a bad name or policy), `NULL_POINTER`,
/// `INVALID_UTF8`.
///
/// # Safety
/// `coord` a live handle; `name` NULL or `name_len` readable bytes;
/// `policy` NULL or readable; `callback` a valid function; `userdata` valid
/// until `shardkit_observer_free` returns and usable from another thread;
/// `out` a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_observer_start(
    coord: *const shardkit_coordinator,
    name: *const u8,
    name_len: usize,
    policy: *const shardkit_follow_policy,
    callback: shardkit_leader_callback,
    userdata: *mut c_void,
    out: *mut *mut shardkit_observer,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (coord, name, policy) = unsafe {
            (
                borrow(coord, "coord")?,
                text(name, name_len, "name")?,
                policy.as_ref().copied(),
            )
        };
        let callback = callback.ok_or_else(|| null("callback"))?;
        let out = out_ptr(out, "out")?;
        let policy = policy.map_or_else(FollowPolicy::default, Into::into);
        let mut observer = coord.observe_with(name, policy)?;
        let rt = runtime::shared()?;
        let gate = CallbackGate::new();
        let task_gate = gate.clone();
        let userdata = UserData(userdata);
        let task = rt.spawn(async move {
            loop {
                let state = observer.next().await;
                deliver(&task_gate, callback, userdata, state);
            }
        });
        let handle = ObserverHandle {
            gate,
            abort: Box::new(move || task.abort()),
        };
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(handle)) };
        Ok(())
    })
}

/// Stops the observer: NULL is a no-op. Returns only once the callback is
/// not running on another thread and will never be called again, so
/// `userdata` may be freed right after. May be called from inside the
/// callback itself (then that call simply finishes).
///
/// # Safety
/// `observer` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_observer_free(observer: *mut shardkit_observer) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        if let Some(h) = unsafe { take(observer, "observer") } {
            h.gate.close();
            (h.abort)();
            drop_in_runtime(Some(h));
        }
    })
}

/// Reports of store failures through the callback, as core's follow policy
/// says, on a real etcd that is paused and restarted: C hears of an outage
/// (it used to retry forever in silence) and then of the state again.
#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::lease::*;
    use shardkit_testkit::EtcdCluster;

    #[derive(Debug)]
    enum Seen {
        Leader(Option<Vec<u8>>),
        Failed(shardkit_status, String),
    }

    unsafe extern "C" fn on_event(userdata: *mut c_void, event: *const shardkit_leader_event) {
        // SAFETY: userdata is the test's sender, alive until the observer is
        // freed; the event is valid during the call.
        let (tx, ev) = unsafe { (&*userdata.cast::<Mutex<Sender<Seen>>>(), &*event) };
        let seen =
            if ev.status == shardkit_status::Ok {
                // SAFETY: value_len bytes at value when there is a leader.
                Seen::Leader(ev.has_leader.then(|| unsafe {
                    std::slice::from_raw_parts(ev.value, ev.value_len).to_vec()
                }))
            } else {
                // SAFETY: a NUL-terminated message.
                let msg = unsafe { CStr::from_ptr(ev.message) }
                    .to_string_lossy()
                    .into_owned();
                assert_eq!(msg.len(), ev.message_len);
                Seen::Failed(ev.status, msg)
            };
        let _ = tx.lock().unwrap().send(seen);
    }

    fn ok(st: shardkit_status) {
        assert_eq!(st, shardkit_status::Ok);
    }

    fn next(rx: &Receiver<Seen>) -> Seen {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("an observer event")
    }

    #[test]
    fn c_observers_hear_store_failures_and_the_state_after() {
        let mut cluster = EtcdCluster::single().expect("start etcd (is etcd-server installed?)");
        let endpoints = cluster.endpoints().join(",");
        let mut coord = null_mut();
        // SAFETY: valid buffers, handles and out-pointers throughout; the
        // sender behind `tx` outlives the observer.
        unsafe {
            ok(shardkit_coordinator_connect(
                endpoints.as_ptr(),
                endpoints.len(),
                2000,
                &mut coord,
            ));
            let mut session = null_mut();
            ok(shardkit_session_new(coord, 60, &mut session));
            let mut election = null_mut();
            ok(shardkit_election_new(
                session,
                b"svc".as_ptr(),
                3,
                &mut election,
            ));
            let mut token = shardkit_fencing_token::default();
            ok(shardkit_election_campaign(
                election,
                b"me".as_ptr(),
                2,
                -1,
                null(),
                &mut token,
            ));

            let mut policy = shardkit_follow_policy {
                retry_min_ms: 0,
                retry_max_ms: 0,
                report_after_ms: 0,
            };
            ok(shardkit_follow_policy_default(&mut policy));
            assert_eq!(policy.report_after_ms, 5000);
            let mut bad = policy;
            bad.retry_min_ms = 0;
            let mut obs = null_mut();
            let st = shardkit_observer_start(
                coord,
                b"svc".as_ptr(),
                3,
                &bad,
                Some(on_event),
                null_mut(),
                &mut obs,
            );
            assert_eq!(st, shardkit_status::InvalidArgument);
            assert!(obs.is_null());

            policy.report_after_ms = 800;
            let (tx, rx) = channel();
            let tx = Box::into_raw(Box::new(Mutex::new(tx)));
            ok(shardkit_observer_start(
                coord,
                b"svc".as_ptr(),
                3,
                &policy,
                Some(on_event),
                tx.cast(),
                &mut obs,
            ));
            assert!(matches!(next(&rx), Seen::Leader(Some(v)) if v == b"me"));

            cluster.stop(0).unwrap();
            let stopped = Instant::now();
            match next(&rx) {
                Seen::Failed(st, msg) => {
                    assert!(stopped.elapsed() >= Duration::from_millis(800));
                    assert!(
                        matches!(
                            st,
                            shardkit_status::Unavailable
                                | shardkit_status::Timeout
                                | shardkit_status::Io
                        ),
                        "{st:?}: {msg}"
                    );
                    assert!(msg.contains("following election \"svc\""), "{msg}");
                }
                other => panic!("expected a reported failure, got {other:?}"),
            }
            cluster.restart(0).unwrap();
            // Failures may be reported again while etcd comes up; then the state.
            loop {
                match next(&rx) {
                    Seen::Failed(..) => continue,
                    Seen::Leader(v) => {
                        assert_eq!(v.as_deref(), Some(&b"me"[..]));
                        break;
                    }
                }
            }

            shardkit_observer_free(obs);
            drop(Box::from_raw(tx));
            shardkit_election_free(election);
            ok(shardkit_session_close(session));
            shardkit_session_free(session);
            shardkit_coordinator_free(coord);
        }
    }
}
