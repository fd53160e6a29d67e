//! `shardkit_proxy`: the cache ambassador (`shardkit::proxy`) run inside a
//! C program, for tests and sidecars.

use crate::args::{opt_text, out_ptr, text, write};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;
use crate::string::string_out;
use shardkit::proxy::{Proxy, ProxyConfig, ProxyOptions};
use shardkit::{Error, ErrorKind};
use std::ffi::c_char;

/// A running cache proxy: nutcracker's YAML, every pool served on
/// worker threads of its own (`SHARDKIT_THREADS` sets how many; by
/// default the core count, at most 8). Free with `shardkit_proxy_free`, which stops it.
pub struct shardkit_proxy {
    _private: [u8; 0],
}

/// Starts a proxy serving every pool of `config` (nutcracker YAML plus
/// shardkit's pool keys; UTF-8, `(ptr, len)`). `stats_addr` and
/// `metrics_addr` (`(ptr, len)`, empty for none) are where nutcracker's
/// JSON stats and Prometheus `/metrics` are served. Listen addresses may
/// use port 0; `shardkit_proxy_address` tells the port chosen. On error
/// (bad config: CONFIG naming the key and line; an address in use: IO)
/// nothing is left listening.
///
/// # Safety
/// Each `(ptr, len)` must be readable; `out` must point to a writable
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_proxy_start(
    config: *const u8,
    config_len: usize,
    stats_addr: *const u8,
    stats_addr_len: usize,
    metrics_addr: *const u8,
    metrics_addr_len: usize,
    out: *mut *mut shardkit_proxy,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let yaml = unsafe { text(config, config_len, "config")? };
        // SAFETY: per the caller's contract.
        let stats_addr = unsafe { opt_text(stats_addr, stats_addr_len, "stats_addr")? };
        // SAFETY: per the caller's contract.
        let metrics_addr = unsafe { opt_text(metrics_addr, metrics_addr_len, "metrics_addr")? };
        let proxy = Proxy::start(
            ProxyConfig::parse(yaml)?,
            ProxyOptions {
                stats_addr: stats_addr.map(str::to_string),
                metrics_addr: metrics_addr.map(str::to_string),
                ..ProxyOptions::default()
            },
        )?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(proxy)) };
        Ok(())
    })
}

/// Applies a new configuration without dropping client connections; on
/// error the running one is kept and nothing changes.
///
/// # Safety
/// `proxy` must be a live handle; `(config, config_len)` readable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_proxy_reload(
    proxy: *const shardkit_proxy,
    config: *const u8,
    config_len: usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let proxy = unsafe { borrow(proxy, "proxy")? };
        // SAFETY: per the caller's contract.
        let yaml = unsafe { text(config, config_len, "config")? };
        proxy.reload(ProxyConfig::parse(yaml)?)
    })
}

/// The address pool `pool` (`(ptr, len)`) listens on, in `*out` (free with
/// `shardkit_string_free`). NOT_FOUND names the pools there are.
///
/// # Safety
/// `proxy` must be a live handle; `(pool, pool_len)` readable; `out` must
/// point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_proxy_address(
    proxy: *const shardkit_proxy,
    pool: *const u8,
    pool_len: usize,
    out: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let pool = unsafe { text(pool, pool_len, "pool")? };
        // SAFETY: per the caller's contract.
        unsafe { text_out(proxy, out, "address", |proxy| proxy.address(pool)) }
    })
}

/// The Prometheus text exposition of every pool, in `*out` (free with
/// `shardkit_string_free`).
///
/// # Safety
/// `proxy` must be a live handle; `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_proxy_metrics(
    proxy: *const shardkit_proxy,
    out: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe { text_out(proxy, out, "metrics", |proxy| Ok(proxy.metrics())) }
    })
}

/// Every pool and the address it listens on, one `pool<TAB>address` line
/// each, in `*out` (free with `shardkit_string_free`).
///
/// # Safety
/// `proxy` must be a live handle; `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_proxy_listening(
    proxy: *const shardkit_proxy,
    out: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe {
            text_out(proxy, out, "listening", |proxy| {
                let text: String = proxy
                    .listening()
                    .iter()
                    .map(|(pool, addr)| format!("{pool}\t{addr}\n"))
                    .collect();
                Ok(text)
            })
        }
    })
}

/// nutcracker's JSON stats of every pool, as the stats address serves
/// them, in `*out` (free with `shardkit_string_free`).
///
/// # Safety
/// `proxy` must be a live handle; `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_proxy_stats(
    proxy: *const shardkit_proxy,
    out: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe { text_out(proxy, out, "stats", |proxy| Ok(proxy.stats_json())) }
    })
}

/// The address the stats (`which` 0) or metrics (`which` 1) listener is
/// bound to, in `*out` (free with `shardkit_string_free`): the port the
/// system chose when the start asked for port 0. NOT_FOUND when that
/// address was not asked for; INVALID_ARGUMENT for another `which`.
///
/// # Safety
/// `proxy` must be a live handle; `out` must point to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_proxy_admin_address(
    proxy: *const shardkit_proxy,
    which: u32,
    out: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        unsafe {
            text_out(proxy, out, "address", |proxy| {
                let (addr, what) = match which {
                    0 => (proxy.stats_addr(), "stats"),
                    1 => (proxy.metrics_addr(), "metrics"),
                    other => {
                        return Err(Error::invalid(format!(
                            "which {other}: expected 0 (stats) or 1 (metrics)"
                        )))
                    }
                };
                let addr = addr.ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("the proxy was started without a {what} address"),
                    )
                })?;
                Ok(addr.to_string())
            })
        }
    })
}

/// Stops the proxy (its listeners close; connections already open finish
/// what they sent) and frees it; NULL is a no-op.
///
/// # Safety
/// `proxy` must be NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn shardkit_proxy_free(proxy: *mut shardkit_proxy) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        drop(unsafe { take(proxy, "proxy") });
    })
}

/// The one shape of every export here that hands back text: borrow the
/// proxy, compute, copy the text out for `shardkit_string_free`.
///
/// # Safety
/// `proxy` NULL or a live handle; `out` NULL or writable.
unsafe fn text_out(
    proxy: *const shardkit_proxy,
    out: *mut *mut c_char,
    what: &str,
    f: impl FnOnce(&Proxy) -> shardkit::Result<String>,
) -> shardkit::Result<()> {
    let out = out_ptr(out, "out")?;
    // SAFETY: per the caller's contract.
    let proxy = unsafe { borrow(proxy, "proxy")? };
    let s = string_out(f(proxy)?, what)?;
    // SAFETY: checked by out_ptr above.
    unsafe { write(out, s) };
    Ok(())
}
