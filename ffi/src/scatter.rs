//! Scatter/gather over HTTP/JSON leaves from C: `shardkit_http_scatter`,
//! over `shardkit::scatter` and its HTTP transport.
//!
//! Leaves are given as C strings, one per shard, each holding that shard's
//! replica URLs separated by `|` (`"http://10.0.0.1:8080/search|http://
//! 10.0.0.2:8080/search"`); blanks around a URL are ignored. A call POSTs
//! the caller's body (JSON, sent as is with `Content-Type:
//! application/json`) to one replica of every leaf and expects a `2xx`
//! answer with a JSON body.
//!
//! Threads. A handle may be used from many threads at once; replica
//! statistics and the hedge budget are learned across calls. Gather and
//! first are *blocking*: they run on the calling thread through
//! `shardkit::runtime::block_on` and return `INVALID_ARGUMENT` when called
//! from a shardkit runtime thread (a callback) instead of deadlocking.
//!
//! Strings returned through `char **out_json` are NUL-terminated UTF-8
//! JSON owned by the caller, who frees them with `shardkit_string_free`.

use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use crate::boundary::{out_ptr, slice, write};
use crate::shardkit_status;
use bytes::Bytes;
use serde_json::Value;
use shardkit::scatter::http::HttpTransport;
use shardkit::scatter::{Coverage, GatherOptions, HedgeConfig, Scatter, ScatterConfig};
use shardkit::{runtime, Error, ErrorKind, Result};

/// A scatter over HTTP/JSON leaves with a pooled keep-alive client. Make
/// one with `shardkit_http_scatter_new`, free it with
/// `shardkit_http_scatter_free` once no call on it is running.
pub struct shardkit_http_scatter {
    _private: [u8; 0],
}

/// How a scatter treats slow calls. Pass NULL for the defaults (no
/// hedging, no tied requests), or fill one with
/// `shardkit_scatter_options_default` and change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct shardkit_scatter_options {
    /// Send a second copy of a leaf call that outlives the leaf's recent
    /// `hedge_percentile` latency to another replica; first answer wins.
    pub hedge: bool,
    /// The latency quantile after which a call is hedged, in (0, 1]
    /// (default 0.95).
    pub hedge_percentile: f64,
    /// Hedges allowed per leaf call, in [0, 1] (default 0.05: at most 5%
    /// extra calls).
    pub hedge_budget: f64,
    /// Latency samples a leaf needs before its calls are hedged (default 20).
    pub hedge_min_samples: u64,
    /// Send every leaf call to two replicas at once (where the leaf has
    /// two); the loser is dropped when the winner answers.
    pub tied: bool,
}

impl Default for shardkit_scatter_options {
    fn default() -> Self {
        let h = HedgeConfig::default();
        shardkit_scatter_options {
            hedge: false,
            hedge_percentile: h.percentile,
            hedge_budget: h.budget_ratio,
            hedge_min_samples: h.min_samples,
            tied: false,
        }
    }
}

impl shardkit_scatter_options {
    fn config(&self) -> ScatterConfig {
        let hedge = self.hedge.then(|| HedgeConfig {
            percentile: self.hedge_percentile,
            budget_ratio: self.hedge_budget,
            min_samples: self.hedge_min_samples,
            ..HedgeConfig::default()
        });
        ScatterConfig {
            hedge,
            tied: self.tied,
            ..ScatterConfig::default()
        }
    }
}

/// What a handle points to.
struct HttpScatter(Scatter<Bytes, Value>);

/// Writes the default options (no hedging; hedge settings at their
/// defaults for when `hedge` is turned on) into `*out`.
///
/// # Safety
/// `out` must point to a writable `shardkit_scatter_options`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_scatter_options_default(
    out: *mut shardkit_scatter_options,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, shardkit_scatter_options::default()) };
        Ok(())
    })
}

/// Borrows a NUL-terminated C string that must be UTF-8.
///
/// # Safety
/// `ptr` NULL or a NUL-terminated string valid for `'a`.
unsafe fn c_str<'a>(ptr: *const c_char, what: impl std::fmt::Display) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::new(
            ErrorKind::NullPointer,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated, per the caller.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidUtf8,
            format!(
                "{what} is not valid UTF-8: byte {} of {} starts an invalid sequence",
                e.valid_up_to(),
                bytes.len()
            ),
        )
    })
}

/// Splits one leaf string into its replica URLs.
fn replica_urls(i: usize, leaf: &str) -> Result<Vec<String>> {
    leaf.split('|')
        .map(|u| {
            let u = u.trim();
            if u.is_empty() {
                return Err(Error::invalid(format!(
                    "leaves[{i}] = {leaf:?} has an empty replica URL \
                     (URLs are separated by '|')"
                )));
            }
            Ok(u.to_string())
        })
        .collect()
}

/// A scatter over `nleaves` leaves: `leaves[i]` is shard `i`'s replica URLs
/// separated by `|` (see the module docs), each `http://host:port/path`.
/// `opts` NULL means the defaults (no hedging). Sends nothing yet.
///
/// Errors: `EMPTY_NODE_SET` for no leaves, `INVALID_ARGUMENT` naming a bad
/// URL (unparsable, not `http://`, no host), an empty leaf or URL, or a bad
/// option (percentile outside (0, 1], budget outside [0, 1]),
/// `INVALID_UTF8`, `NULL_POINTER` (`leaves` NULL with `nleaves` > 0, a NULL
/// entry, `out`).
///
/// # Safety
/// `leaves` NULL (`nleaves` 0) or `nleaves` readable pointers, each NULL or
/// a NUL-terminated string; `opts` NULL or readable; `out` a writable
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_http_scatter_new(
    leaves: *const *const c_char,
    nleaves: usize,
    opts: *const shardkit_scatter_options,
    out: *mut *mut shardkit_http_scatter,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let ptrs = unsafe { slice(leaves, nleaves, "leaves")? };
        let shards = ptrs
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                // SAFETY: each entry NULL or a C string, per the caller.
                let leaf = unsafe { c_str(p, format_args!("leaves[{i}]"))? };
                replica_urls(i, leaf)
            })
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: NULL or readable, per the caller.
        let opts = unsafe { opts.as_ref() }.copied().unwrap_or_default();
        let leaves = HttpTransport::new().leaves::<Value>(&shards)?;
        let scatter = HttpScatter(Scatter::new(leaves, opts.config())?);
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, Box::into_raw(Box::new(scatter)).cast()) };
        Ok(())
    })
}

/// # Safety
/// `s` NULL or a live handle.
unsafe fn scatter<'a>(s: *const shardkit_http_scatter) -> Result<&'a Scatter<Bytes, Value>> {
    // SAFETY: non-NULL handles are `Box<HttpScatter>` pointers from
    // `shardkit_http_scatter_new`, live until `_free`, per the caller.
    unsafe { s.cast::<HttpScatter>().as_ref() }
        .map(|h| &h.0)
        .ok_or_else(|| Error::new(ErrorKind::NullPointer, "s is NULL"))
}

fn timeout(ms: u32) -> Result<Duration> {
    if ms == 0 {
        return Err(Error::invalid(
            "timeout_ms must be above 0, got 0 (a scatter call needs a deadline)",
        ));
    }
    Ok(Duration::from_millis(u64::from(ms)))
}

fn coverage(min_answers: i32) -> Result<Coverage> {
    match min_answers {
        -1 => Ok(Coverage::RequireAll),
        0 => Ok(Coverage::BestEffort),
        k if k > 0 => Ok(Coverage::AtLeast(k as usize)),
        k => Err(Error::invalid(format!(
            "min_answers {k}: use -1 (all leaves), 0 (best effort) or k >= 1"
        ))),
    }
}

/// Hands JSON text to C as a string it frees with `shardkit_string_free`.
fn json_out(v: &Value) -> Result<*mut c_char> {
    // serde_json escapes U+0000 in strings, so the text has no NUL.
    let text = serde_json::to_string(v)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot render JSON: {e}")))?;
    CString::new(text)
        .map(CString::into_raw)
        .map_err(|e| Error::invalid(format!("rendered JSON holds a NUL byte: {e}")))
}

/// Leaf sharding: POSTs `body` (`body_len` bytes; NULL with 0 sends an
/// empty body) to every leaf and gathers the answers for up to
/// `timeout_ms` (above 0) milliseconds. `min_answers` is the coverage
/// policy: -1 every leaf must answer, 0 best effort (whatever arrived, at
/// least one), k >= 1 at least k leaves. Blocking.
///
/// On success `*out_json` receives the gathered document:
/// `{"answers":[{"leaf":0,"answer":<the leaf's JSON>}],
/// "missing":[{"leaf":1,"code":12,"kind":"timed out","error":"..."}],
/// "answered":1,"total":2,"degraded":true}`; `code` is the status code of
/// why that leaf is missing (`BAD_RESPONSE` for a non-2xx status or
/// malformed JSON, `UNAVAILABLE` for a refused connection, `TIMEOUT`,
/// `CANCELLED` once the policy was met or could no longer be). Free it with
/// `shardkit_string_free`.
///
/// Errors (nothing written): when the policy is not met, `TIMEOUT` if a
/// leaf was cut off by the deadline, else `UNAVAILABLE`, the message naming
/// every missing leaf and why; `INVALID_ARGUMENT` for `timeout_ms` 0, a bad
/// `min_answers` (below -1, or above the leaf count), or a call from a
/// runtime thread; `NULL_POINTER`.
///
/// # Safety
/// `s` a live handle; `body` NULL or `body_len` readable bytes; `out_json`
/// a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_http_scatter_gather(
    s: *const shardkit_http_scatter,
    body: *const c_char,
    body_len: usize,
    timeout_ms: u32,
    min_answers: i32,
    out_json: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (s, body) = unsafe { (scatter(s)?, slice(body.cast::<u8>(), body_len, "body")?) };
        let out = out_ptr(out_json, "out_json")?;
        let (within, coverage) = (timeout(timeout_ms)?, coverage(min_answers)?);
        let req = Bytes::copy_from_slice(body);
        let gathered = runtime::block_on(async {
            // The deadline starts once the call is on the runtime, so time
            // spent starting the runtime does not eat into it.
            let opts = GatherOptions::within(within).with_coverage(coverage);
            s.gather(&req, &opts).await
        })??;
        let text = json_out(&gathered.to_json())?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, text) };
        Ok(())
    })
}

/// Root distribution: POSTs `body` to one replica of the single leaf
/// (hedged as configured, failing over to another replica on error) and
/// writes that replica's JSON answer to `*out_json` (free it with
/// `shardkit_string_free`). Blocking.
///
/// Errors: `INVALID_ARGUMENT` when the scatter has more than one leaf,
/// `timeout_ms` is 0, or on a runtime thread; `TIMEOUT` when no replica
/// answered in `timeout_ms`; otherwise the last replica's error
/// (`BAD_RESPONSE`, `UNAVAILABLE`, `IO`); `NULL_POINTER`.
///
/// # Safety
/// As for `shardkit_http_scatter_gather`.
#[no_mangle]
pub unsafe extern "C" fn shardkit_http_scatter_first(
    s: *const shardkit_http_scatter,
    body: *const c_char,
    body_len: usize,
    timeout_ms: u32,
    out_json: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (s, body) = unsafe { (scatter(s)?, slice(body.cast::<u8>(), body_len, "body")?) };
        let out = out_ptr(out_json, "out_json")?;
        let within = timeout(timeout_ms)?;
        let req = Bytes::copy_from_slice(body);
        let answer = runtime::block_on(async {
            let deadline = GatherOptions::within(within).deadline;
            s.first(&req, deadline).await
        })??;
        let text = json_out(&answer)?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, text) };
        Ok(())
    })
}

/// The number of leaves (0 for NULL).
///
/// # Safety
/// `s` NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shardkit_http_scatter_len(s: *const shardkit_http_scatter) -> usize {
    ffi_boundary!(or 0 => {
        // SAFETY: per the caller's contract.
        unsafe { scatter(s) }.map_or(0, |s| s.len())
    })
}

/// Frees the handle and closes its idle connections; NULL is a no-op.
///
/// # Safety
/// `s` NULL or a live handle, not used again afterwards (no call on it may
/// still be running).
#[no_mangle]
pub unsafe extern "C" fn shardkit_http_scatter_free(s: *mut shardkit_http_scatter) {
    ffi_boundary!(or () => {
        if s.is_null() {
            return;
        }
        // SAFETY: a live handle is a `Box<HttpScatter>`; the caller gives up
        // ownership.
        let s = unsafe { Box::from_raw(s.cast::<HttpScatter>()) };
        // The pool's connection tasks live on the runtime; dropping inside
        // it lets them be told to stop even from a plain C thread.
        match runtime::shared() {
            Ok(rt) => {
                let _guard = rt.enter();
                drop(s);
            }
            Err(_) => drop(s),
        }
    })
}

/// Frees a string this library returned through a `char **` out-param
/// (`shardkit_http_scatter_gather`, `shardkit_http_scatter_first`); NULL is
/// a no-op. Never pass it other memory, or a string twice.
///
/// # Safety
/// `s` NULL or a string from this library not freed before.
#[no_mangle]
pub unsafe extern "C" fn shardkit_string_free(s: *mut c_char) {
    ffi_boundary!(or () => {
        if !s.is_null() {
            // SAFETY: strings handed out come from `CString::into_raw`, per
            // the caller's contract.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_strings_split_on_bars() {
        assert_eq!(
            replica_urls(0, "http://a/x | http://b/x").unwrap(),
            vec!["http://a/x", "http://b/x"]
        );
        let e = replica_urls(3, "http://a/x||http://b/x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("leaves[3]"), "{e}");
    }

    #[test]
    fn coverage_codes() {
        assert_eq!(coverage(-1).unwrap(), Coverage::RequireAll);
        assert_eq!(coverage(0).unwrap(), Coverage::BestEffort);
        assert_eq!(coverage(2).unwrap(), Coverage::AtLeast(2));
        assert!(coverage(-2).unwrap_err().message().contains("-2"));
        assert!(timeout(0).is_err());
    }
}
