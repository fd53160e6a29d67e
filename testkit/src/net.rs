//! Free loopback ports for servers the tests start.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

use crate::tempdir::nanos_now;

/// A port that was free on `ip` a moment ago and that no other caller in
/// this process has been given: tests run in parallel, and the kernel may
/// hand the same ephemeral port out again once its probe socket is closed.
///
/// # Panics
/// When no port can be bound on `ip`.
pub fn free_port(ip: Ipv4Addr) -> u16 {
    free_addrs(ip, 1)[0].port()
}

/// `n` distinct addresses on `ip`, each with a port that was free a moment
/// ago and not handed out before in this process.
///
/// # Panics
/// When no port can be bound on `ip`.
pub fn free_addrs(ip: Ipv4Addr, n: usize) -> Vec<SocketAddr> {
    try_free_addrs(ip, n).unwrap_or_else(|e| panic!("bind an ephemeral port on {ip}: {e}"))
}

/// [`free_addrs`] returning the error instead of panicking.
pub fn try_free_addrs(ip: Ipv4Addr, n: usize) -> io::Result<Vec<SocketAddr>> {
    static GIVEN: Mutex<Option<HashSet<SocketAddr>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // Hold every probe socket until all are chosen, so no port repeats.
    let mut held = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let l = TcpListener::bind((ip, 0))?;
        let a = l.local_addr()?;
        held.push(l);
        if given.insert(a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// A loopback /24 picked per process (`127.X.Y.0`), so that concurrent
/// runs (and Debian's own memcached on 127.0.0.1:11211) do not collide on
/// fixed ports.
pub fn loopback_net() -> [u8; 2] {
    let seed = (std::process::id() as u128 ^ nanos_now()) as u64;
    let x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    [10 + (x % 200) as u8, (x >> 8) as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let a = free_addrs(Ipv4Addr::LOCALHOST, 20);
        let b = free_addrs(Ipv4Addr::LOCALHOST, 20);
        let all: HashSet<SocketAddr> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 40);
        assert!(free_port(Ipv4Addr::LOCALHOST) > 0);
    }
}
