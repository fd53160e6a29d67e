//! memcached for tests: started on TCP or a unix socket, and a pipelining
//! text-protocol client; key generators for what memcached accepts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{is_root, require, Proc};
use crate::rng::Rng;

/// Where a memcached listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// TCP address.
    Tcp(SocketAddr),
    /// Unix socket path.
    Unix(PathBuf),
}

impl Endpoint {
    /// Parses `host:port` or a socket path (as in a twemproxy server entry).
    pub fn from_address(addr: &str) -> Endpoint {
        if addr.starts_with('/') {
            Endpoint::Unix(PathBuf::from(addr))
        } else {
            Endpoint::Tcp(addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}")))
        }
    }

    /// Connects, retrying until `deadline`.
    pub fn connect_until(&self, deadline: Instant) -> std::io::Result<Stream> {
        loop {
            let r = match self {
                Endpoint::Tcp(a) => {
                    TcpStream::connect_timeout(a, Duration::from_millis(200)).map(Stream::Tcp)
                }
                Endpoint::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
            };
            match r {
                Ok(s) => return Ok(s),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// A TCP or unix stream.
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix.
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

impl Stream {
    fn set_timeout(&self, t: Duration) {
        match self {
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(t)).unwrap();
                s.set_nodelay(true).unwrap();
            }
            Stream::Unix(s) => s.set_read_timeout(Some(t)).unwrap(),
        }
    }
    fn try_clone(&self) -> Stream {
        match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone().unwrap()),
            Stream::Unix(s) => Stream::Unix(s.try_clone().unwrap()),
        }
    }
}

/// A running memcached.
#[derive(Debug)]
pub struct Memcached {
    /// Where it listens.
    pub endpoint: Endpoint,
    proc: Proc,
}

/// Starts memcached on `endpoint` (TCP or unix socket); does not wait for it.
pub fn spawn_memcached(dir: &Path, endpoint: Endpoint) -> Memcached {
    let bin = require("memcached", "memcached");
    let mut cmd = Command::new(bin);
    // Small and single-threaded: the sweep runs 200 of them.
    cmd.args(["-U", "0", "-m", "8", "-t", "1", "-c", "1024"]);
    if is_root() {
        cmd.args(["-u", "root"]);
    }
    let tag = match &endpoint {
        Endpoint::Tcp(a) => {
            cmd.args(["-l", &a.ip().to_string(), "-p", &a.port().to_string()]);
            format!("{}_{}", a.ip(), a.port())
        }
        Endpoint::Unix(p) => {
            cmd.arg("-s").arg(p);
            p.file_name().unwrap().to_string_lossy().into_owned()
        }
    };
    let proc = Proc::spawn("memcached", cmd, dir.join(format!("memcached-{tag}.log")));
    Memcached { endpoint, proc }
}

impl Memcached {
    /// Waits until it accepts connections.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.proc.assert_running();
            match self.endpoint.connect_until(Instant::now()) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!(
                        "memcached on {:?} not ready: {e}\n{}",
                        self.endpoint,
                        self.proc.log()
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Its process id (to pause it with SIGSTOP, say).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// A client connection.
    pub fn client(&self) -> McClient {
        McClient::connect(&self.endpoint)
    }
}

/// Starts memcached on each TCP address and waits for all of them.
pub fn start_memcached_tcp(dir: &Path, addrs: &[SocketAddr]) -> Vec<Memcached> {
    let mut all: Vec<Memcached> = addrs
        .iter()
        .map(|a| spawn_memcached(dir, Endpoint::Tcp(*a)))
        .collect();
    for m in &mut all {
        m.wait_ready();
    }
    all
}

/// Requests written before their replies are read (memcached and nutcracker
/// both pipeline; this bounds what sits in socket buffers).
const PIPELINE: usize = 256;

/// A memcached text-protocol client over one connection.
pub struct McClient {
    w: Stream,
    r: BufReader<Stream>,
    what: String,
}

impl McClient {
    /// Connects (retrying for a few seconds).
    pub fn connect(endpoint: &Endpoint) -> McClient {
        let s = endpoint
            .connect_until(Instant::now() + Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {endpoint:?}: {e}"));
        s.set_timeout(Duration::from_secs(20));
        let r = BufReader::with_capacity(1 << 16, s.try_clone());
        McClient {
            w: s,
            r,
            what: format!("{endpoint:?}"),
        }
    }

    fn line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        self.r
            .read_until(b'\n', &mut line)
            .unwrap_or_else(|e| panic!("read from {}: {e}", self.what));
        assert!(
            line.ends_with(b"\r\n"),
            "{}: truncated reply {:?}",
            self.what,
            String::from_utf8_lossy(&line)
        );
        line.truncate(line.len() - 2);
        line
    }

    /// `set`s every key with its value, pipelined; panics unless each is STORED.
    pub fn set_all(&mut self, items: &[(Vec<u8>, Vec<u8>)]) {
        for chunk in items.chunks(PIPELINE) {
            let mut buf = Vec::with_capacity(chunk.len() * 64);
            for (k, v) in chunk {
                buf.extend_from_slice(b"set ");
                buf.extend_from_slice(k);
                buf.extend_from_slice(format!(" 0 0 {}\r\n", v.len()).as_bytes());
                buf.extend_from_slice(v);
                buf.extend_from_slice(b"\r\n");
            }
            self.w.write_all(&buf).unwrap();
            for (k, _) in chunk {
                let reply = self.line();
                assert_eq!(
                    reply,
                    b"STORED",
                    "{}: set {:?} answered {:?}",
                    self.what,
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(&reply)
                );
            }
        }
    }

    /// `get`s each key, pipelined; `None` where the server has no such key.
    pub fn get_all(&mut self, keys: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(PIPELINE) {
            let mut buf = Vec::with_capacity(chunk.len() * 48);
            for k in chunk {
                buf.extend_from_slice(b"get ");
                buf.extend_from_slice(k);
                buf.extend_from_slice(b"\r\n");
            }
            self.w.write_all(&buf).unwrap();
            for k in chunk {
                let first = self.line();
                if first == b"END" {
                    out.push(None);
                    continue;
                }
                let head = String::from_utf8_lossy(&first).into_owned();
                let len: usize = head
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{}: bad get reply {head:?}", self.what));
                assert!(
                    first.starts_with(b"VALUE ") && first[6..].starts_with(k),
                    "{}: get {:?} answered {head:?}",
                    self.what,
                    String::from_utf8_lossy(k)
                );
                let mut data = vec![0u8; len + 2];
                self.r.read_exact(&mut data).unwrap();
                data.truncate(len);
                let end = self.line();
                assert_eq!(end, b"END", "{}", self.what);
                out.push(Some(data));
            }
        }
        out
    }

    /// The `curr_items` statistic.
    pub fn curr_items(&mut self) -> u64 {
        self.stat("curr_items")
    }

    /// A numeric general statistic (`stats`), by name.
    pub fn stat(&mut self, name: &str) -> u64 {
        self.w.write_all(b"stats\r\n").unwrap();
        let prefix = format!("STAT {name} ");
        let mut value = None;
        loop {
            let line = self.line();
            if line == b"END" {
                break;
            }
            let l = String::from_utf8_lossy(&line);
            if let Some(v) = l.strip_prefix(&prefix) {
                value = v.trim().parse().ok();
            }
        }
        value.unwrap_or_else(|| panic!("{}: no {name} in stats", self.what))
    }
}

/// A byte allowed in a memcached text-protocol key: no space, no control
/// character, anything else including bytes >= 0x80.
pub fn key_byte(rng: &mut Rng, high_share: u64) -> u8 {
    if rng.below(100) < high_share {
        0x80 + rng.below(128) as u8
    } else {
        0x21 + rng.below(0x7f - 0x21) as u8
    }
}

/// `n` distinct memcached-valid keys starting with `prefix`: about half are
/// printable ASCII, the rest carry bytes >= 0x80 (sign-extended by
/// nutcracker's `const char *` hashing); lengths vary from short to 250.
pub fn keys(prefix: &str, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let i = out.len();
        let mut k = prefix.as_bytes().to_vec();
        let len = match rng.below(100) {
            0 => 200 + rng.below(250 - 200 + 1) as usize - prefix.len().min(200),
            1..=9 => 1 + rng.below(4) as usize,
            _ => 4 + rng.below(36) as usize,
        };
        let high = if i % 2 == 0 { 0 } else { 40 };
        for _ in 0..len {
            k.push(key_byte(&mut rng, high));
        }
        k.truncate(250);
        if seen.insert(k.clone()) {
            out.push(k);
        }
    }
    out
}
