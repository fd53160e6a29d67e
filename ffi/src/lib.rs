//! The C ABI of shardkit: a thin layer that converts C arguments, calls
//! [`shardkit`] core and converts the result back. It holds no logic of its
//! own; `include/shardkit.h` is generated from this crate by cbindgen.
//!
//! Conventions every export follows (see ARCHITECTURE.md):
//!
//! - fallible functions return [`shardkit_status`] and write their out-params
//!   only when they return `SHARDKIT_STATUS_OK` (the documented exceptions are
//!   the required lengths reported with `SHARDKIT_STATUS_BUFFER_TOO_SMALL`);
//! - on failure the detail is kept per thread for [`shardkit_last_error`];
//!   success leaves it untouched (like `errno`), so the hot path does no work;
//! - every body runs inside [`ffi_boundary!`], so a panic becomes
//!   `SHARDKIT_STATUS_PANIC` and never unwinds into C;
//! - a buffer pointer is followed by its `size_t` length, and `NULL` with a
//!   zero length is an empty buffer; text is (pointer, length) unless the
//!   export's docs say NUL-terminated;
//! - every opaque type is listed once in `handle.rs`, which ties it to its
//!   Rust type and tags every allocation, so a handle of another type is an
//!   error, not a misread object;
//! - arguments are converted by the one helper of each kind in `args.rs`.
//!
//! One file per core object (`sharder.rs`, `scatter.rs`, `merge.rs`, `proxy.rs`, and
//! `lease/` one file per object), so a new object is a new file.

// The exported names are the C names (`shardkit_sharder`, `shardkit_status`),
// which cbindgen copies into the header verbatim.
#![allow(non_camel_case_types)]
#![warn(missing_docs)]

#[macro_use]
mod boundary;
mod args;
mod callback;
mod handle;
mod lease;
mod merge;
mod pipeline;
mod proxy;
mod scatter;
mod sharder;
mod status;
mod string;
mod upstream;

pub use boundary::shardkit_last_error;
pub use lease::*;
pub use merge::*;
pub use proxy::*;
pub use scatter::*;
pub use sharder::*;
pub use status::{shardkit_status, shardkit_status_message};
pub use string::shardkit_string_free;
pub use upstream::*;

/// Major version of the library this header belongs to (Cargo.toml's).
pub const SHARDKIT_VERSION_MAJOR: u32 = 0;
/// Minor version of the library this header belongs to.
pub const SHARDKIT_VERSION_MINOR: u32 = 1;
/// Patch version of the library this header belongs to.
pub const SHARDKIT_VERSION_PATCH: u32 = 0;

/// The library version, e.g. "0.1.0": static, NUL-terminated, never freed.
/// Matches `SHARDKIT_VERSION_MAJOR.MINOR.PATCH` of the header it was built with.
#[no_mangle]
pub extern "C" fn shardkit_version() -> *const std::ffi::c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    ffi_boundary!(or VERSION.as_ptr().cast() => { VERSION.as_ptr().cast() })
}

#[cfg(test)]
mod tests;
