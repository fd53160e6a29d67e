//! A raw byte client for protocol tests: send exactly these bytes, read
//! whatever comes back, to compare a proxy's replies byte for byte with a
//! real server's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One TCP connection, written and read as bytes.
pub struct Raw {
    s: TcpStream,
}

impl Raw {
    /// Connects to `addr` (`host:port`), retrying for a few seconds.
    pub fn connect(addr: &str) -> Raw {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_nodelay(true).unwrap();
                    return Raw { s };
                }
                Err(e) if Instant::now() > deadline => panic!("connect {addr}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Reads until nothing arrives for `idle` (or the peer closes).
    pub fn read_idle(&mut self, idle: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        self.s.set_read_timeout(Some(idle)).unwrap();
        let mut buf = [0u8; 65536];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return out,
            }
        }
    }

    /// Reads until `n` bytes came, the peer closed, or `limit` passed.
    pub fn read_len(&mut self, n: usize, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
            }
        }
        out
    }

    /// Reads until `out` ends with `suffix` (or `limit` passes).
    pub fn read_until(&mut self, suffix: &[u8], limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while !out.ends_with(suffix) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
            }
        }
        out
    }

    /// Sends `bytes` and reads the reply up to and including `suffix`.
    pub fn ask(&mut self, bytes: &[u8], suffix: &[u8]) -> Vec<u8> {
        self.send(bytes);
        self.read_until(suffix, Duration::from_secs(10))
    }
}

/// Sends `bytes` to `reference` and to `subject` on fresh connections and
/// returns both replies: the reference's read until idle, the subject's
/// read until it has as many bytes (or 5 s pass).
pub fn both(reference: &str, subject: &str, bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut r = Raw::connect(reference);
    r.send(bytes);
    let want = r.read_idle(Duration::from_millis(300));
    let mut s = Raw::connect(subject);
    s.send(bytes);
    let mut got = s.read_len(want.len(), Duration::from_secs(5));
    // Anything extra the subject sends is a difference too.
    got.extend(s.read_idle(Duration::from_millis(100)));
    (want, got)
}
