//! `shardkit_sharder_from_upstream`: an nginx upstream server list placed by
//! any algorithm, over `shardkit::config::nginx::parse_upstream_with`. The
//! Lua balancer inside nginx (lua/resty/shardkit.lua) builds its rings here.

use crate::args::{opt_text, out_ptr, text, write};
use crate::handle::into_handle;
use crate::sharder::shardkit_sharder;
use crate::shardkit_status;
use shardkit::config::nginx;
use shardkit::shard::Algorithm;

/// Builds a snapshot over an nginx upstream server list such as
/// "127.0.0.1:8081 weight=2, 127.0.0.1:8082" (separators: ',', ';' or
/// newline; the list syntax of `shardkit_sharder_from_nginx_upstream`),
/// placed by `algorithm` (e.g. "jump", "maglev", "rendezvous"; NULL/0 selects
/// "ketama:nginx", which places keys as nginx `hash $key consistent` does)
/// with that algorithm's default key hash. Node names are the addresses as
/// written; `weight=N` is the node's weight; `down` entries are marked down.
/// Both strings are UTF-8, not NUL-terminated.
///
/// Errors: `INVALID_ARGUMENT` (an unknown algorithm or bad algorithm
/// parameter, an unparsable entry or parameter such as `weight=0`, or a
/// weight above 1 under an algorithm without weights: jump, jumpback,
/// memento; the detail names the value), `EMPTY_NODE_SET` (no entries),
/// `DUPLICATE_NODE` (an address listed twice), `INVALID_UTF8`,
/// `NULL_POINTER`.
///
/// # Safety
/// `list` and `algorithm` must be NULL or point to their lengths in readable
/// bytes; `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_sharder_from_upstream(
    list: *const u8,
    list_len: usize,
    algorithm: *const u8,
    algorithm_len: usize,
    out: *mut *mut shardkit_sharder,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let (list, algorithm) = unsafe {
            (
                text(list, list_len, "list")?,
                opt_text(algorithm, algorithm_len, "algorithm")?,
            )
        };
        let algorithm = Algorithm::from_name(algorithm.unwrap_or("ketama:nginx"))?;
        let s = nginx::parse_upstream_with(list, algorithm)?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(s)) };
        Ok(())
    })
}
