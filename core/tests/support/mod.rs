//! Helpers for tests that run real servers (memcached, nutcracker, nginx):
//! each test gets a temporary directory, free loopback ports, and processes
//! that are killed when their guard drops, also when the test panics.
//!
//! A missing binary is a test failure, never a skip: the compatibility suite
//! proves nothing if it quietly runs nothing.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A directory removed (with its contents) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh directory under the system temp dir, unique per process and call.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "shardkit-{tag}-{}-{n}-{}",
            std::process::id(),
            nanos_now() % 1_000_000_000
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn nanos_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A child process killed and reaped on drop.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr sent to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early ({status}); its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a required binary. Panics (fails the test) when it is not
/// installed, naming the Debian package that provides it.
pub fn require(bin: &str, package: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    for d in dirs {
        let p = d.join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!("{bin} is not installed: the compatibility tests need it (apt-get install {package}, or run `make deps`)");
}

/// Whether this process runs as root (memcached and nginx need telling).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A port that was free on `ip` a moment ago and that no other caller in
/// this process has been given: tests run in parallel, and the kernel may
/// hand the same ephemeral port out again once its probe socket is closed.
pub fn free_port(ip: Ipv4Addr) -> u16 {
    free_addrs(ip, 1)[0].port()
}

/// `n` distinct addresses on `ip`, each with a port that was free a moment
/// ago and not handed out before in this process.
pub fn free_addrs(ip: Ipv4Addr, n: usize) -> Vec<SocketAddr> {
    static GIVEN: Mutex<Option<HashSet<SocketAddr>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // Hold every probe socket until all are chosen, so no port repeats.
    let mut held = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let l = TcpListener::bind((ip, 0)).expect("bind an ephemeral port");
        let a = l.local_addr().unwrap();
        held.push(l);
        if given.insert(a) {
            out.push(a);
        }
    }
    out
}

/// A loopback /24 picked per process, so that concurrent runs (and
/// Debian's own memcached on 127.0.0.1:11211) do not collide on fixed ports.
pub fn loopback_net() -> [u8; 2] {
    let seed = (std::process::id() as u128 ^ nanos_now()) as u64;
    let x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    [10 + (x % 200) as u8, (x >> 8) as u8]
}

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

/// A running nutcracker.
pub struct Nutcracker {
    proc: Proc,
}

/// Starts nutcracker on `conf` and waits until every `listen` accepts.
pub fn start_nutcracker(dir: &Path, conf: &Path, listens: &[SocketAddr]) -> Nutcracker {
    let bin = require("nutcracker", "nutcracker");
    let stats = free_port(Ipv4Addr::LOCALHOST);
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(conf)
        .arg("-o")
        .arg(dir.join("nutcracker.out"))
        .args(["-s", &stats.to_string(), "-a", "127.0.0.1"])
        .arg("-p")
        .arg(dir.join(format!("nutcracker-{stats}.pid")));
    let mut proc = Proc::spawn(
        "nutcracker",
        cmd,
        dir.join(format!("nutcracker-{stats}.log")),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    for a in listens {
        loop {
            proc.assert_running();
            if TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "nutcracker not listening on {a}; log:\n{}\n{}",
                    proc.log(),
                    std::fs::read_to_string(dir.join("nutcracker.out")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Nutcracker { proc }
}

/// `nutcracker -t -c conf`: whether nutcracker accepts the configuration.
pub fn nutcracker_accepts(conf: &Path) -> (bool, String) {
    let bin = require("nutcracker", "nutcracker");
    let out = Command::new(bin)
        .arg("-t")
        .arg("-c")
        .arg(conf)
        .output()
        .expect("run nutcracker -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
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
        self.w.write_all(b"stats\r\n").unwrap();
        let mut items = None;
        loop {
            let line = self.line();
            if line == b"END" {
                break;
            }
            let l = String::from_utf8_lossy(&line);
            if let Some(v) = l.strip_prefix("STAT curr_items ") {
                items = v.trim().parse().ok();
            }
        }
        items.unwrap_or_else(|| panic!("{}: no curr_items in stats", self.what))
    }
}

/// Deterministic pseudo-random numbers (splitmix64): test keys must be the
/// same on every run so a failure can be reproduced.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
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

/// Printable form of a key for failure messages.
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
