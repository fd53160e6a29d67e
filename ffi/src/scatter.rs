//! Scatter/gather over HTTP/JSON leaves from C: `shardkit_http_scatter`,
//! over `shardkit::scatter` and its HTTP transport.
//!
//! Leaves are given as NUL-terminated C strings (unlike most text in this
//! ABI, which is (pointer, length)), one per shard, each holding that shard's
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

use std::ffi::c_char;
use std::time::Duration;

use crate::args::{c_str, opt_text, out_ptr, slice, write};
use crate::handle::{borrow, into_handle, take};
use crate::lease::drop_in_runtime;
use crate::shardkit_status;
use crate::string::string_out;
use bytes::Bytes;
use serde_json::Value;
use shardkit::scatter::http::{split_replicas, HttpTransport};
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
pub(crate) struct HttpScatter(Scatter<Bytes, Value>);

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
                // Named as the C caller knows it, then as core says.
                split_replicas(i, leaf)
                    .map_err(|e| Error::new(e.kind(), format!("leaves[{i}]: {}", e.message())))
            })
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: NULL or readable, per the caller.
        let opts = unsafe { opts.as_ref() }.copied().unwrap_or_default();
        let leaves = HttpTransport::new().leaves::<Value>(&shards)?;
        let scatter = HttpScatter(Scatter::new(leaves, opts.config())?);
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(scatter)) };
        Ok(())
    })
}

/// # Safety
/// `s` NULL or a live handle.
unsafe fn scatter<'a>(s: *const shardkit_http_scatter) -> Result<&'a Scatter<Bytes, Value>> {
    // SAFETY: forwarded from the caller.
    unsafe { borrow(s, "s") }.map(|h| &h.0)
}

fn timeout(ms: u32) -> Result<Duration> {
    if ms == 0 {
        return Err(Error::invalid(
            "timeout_ms must be above 0, got 0 (a scatter call needs a deadline)",
        ));
    }
    Ok(Duration::from_millis(u64::from(ms)))
}

/// Hands JSON text to C as a string it frees with `shardkit_string_free`.
fn json_out(v: &Value) -> Result<*mut c_char> {
    // serde_json escapes U+0000 in strings, so the text has no NUL.
    let text = serde_json::to_string(v)
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot render JSON: {e}")))?;
    string_out(text, "rendered JSON")
}

/// Leaf sharding: POSTs `body` (`body_len` bytes; NULL with 0 sends an
/// empty body) to every leaf and gathers the answers for up to
/// `timeout_ms` (above 0) milliseconds. `coverage` (`coverage_len` bytes of
/// UTF-8; NULL/0 for `all`) is the coverage policy, spelled as in every
/// binding: `all` (every leaf must answer), `best-effort` (whatever
/// arrived, at least one), `K` or `K/N` (at least K of the N leaves).
/// Blocking.
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
/// `coverage` (the message names it), or a call from a runtime thread;
/// `INVALID_UTF8`; `NULL_POINTER`.
///
/// # Safety
/// `s` a live handle; `body` NULL or `body_len` readable bytes; `coverage`
/// NULL or `coverage_len` readable bytes; `out_json` a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_http_scatter_gather(
    s: *const shardkit_http_scatter,
    body: *const c_char,
    body_len: usize,
    timeout_ms: u32,
    coverage: *const u8,
    coverage_len: usize,
    out_json: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let (s, body, coverage) = unsafe {
            (
                scatter(s)?,
                slice(body.cast::<u8>(), body_len, "body")?,
                opt_text(coverage, coverage_len, "coverage")?,
            )
        };
        let out = out_ptr(out_json, "out_json")?;
        let within = timeout(timeout_ms)?;
        let coverage = Coverage::parse(coverage.unwrap_or("all"), s.len())?;
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
        // The pool's connection tasks live on the runtime; dropping inside
        // it lets them be told to stop even from a plain C thread.
        // SAFETY: per the caller's contract.
        drop_in_runtime(unsafe { take(s, "s") });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scatter_needs_a_deadline() {
        assert!(timeout(0).is_err());
        assert_eq!(timeout(5).unwrap(), Duration::from_millis(5));
    }
}
