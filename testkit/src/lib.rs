//! Test support for shardkit's crates. Not part of shardkit: this crate is
//! `publish = false` and only ever a `[dev-dependencies]` entry (as tokio
//! does with tokio-test), so nothing here is compiled into the library, the
//! C library or the Python wheel.
//!
//! - [`etcd`]: real etcd clusters on loopback with fault hooks (kill,
//!   SIGSTOP/SIGCONT, restart, leader lookup).
//! - [`memcached`], [`nutcracker`], [`redis`]: real cache servers and a memcached
//!   text-protocol client.
//! - [`process`]: child processes killed on drop, required binaries,
//!   signals.
//! - [`TempDir`], [`free_port`] / [`free_addrs`], [`loopback_net`]: where
//!   servers keep files and listen.
//! - [`Rng`]: the one seeded random generator of the tests.
//! - [`http`]: a blocking HTTP/1.1 client for probing servers;
//! - [`wire`]: a raw byte client, to compare replies byte for byte.
//!
//! std only, with no dependency on `shardkit`, so core's own unit tests can
//! use it without a second copy of core. Helpers fail the test (panic) where
//! a test could do nothing else; those with a `try_` twin return the error.

#![warn(missing_docs)]

pub mod etcd;
pub mod http;
pub mod memcached;
pub mod net;
pub mod nutcracker;
pub mod process;
pub mod redis;
pub mod rng;
pub mod tempdir;
pub mod wire;

pub use etcd::{etcd_binary, EtcdCluster, EtcdProcess};
pub use net::{free_addrs, free_port, loopback_net};
pub use process::{is_root, require, signal, try_signal, Proc};
pub use rng::Rng;
pub use tempdir::TempDir;

/// Printable form of a key or URI for failure messages: printable ASCII as
/// is (but `\`), every other byte as `\xNN`.
pub fn show(key: &[u8]) -> String {
    key.iter()
        .map(|&b| {
            if (0x21..0x7f).contains(&b) && b != b'\\' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}
