//! redis-server for tests: started on a loopback TCP address with no
//! persistence, optionally with a password.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{require, Proc};
use crate::wire::Raw;

/// A running redis-server, stopped on drop.
pub struct Redis {
    /// Where it listens.
    pub addr: SocketAddr,
    _proc: Proc,
}

/// Starts redis-server on `addr` with an append-only file fsynced on every
/// write (`appendfsync always`) in `dir`: started again on the same `dir`
/// after a kill -9, it has every write it acknowledged.
pub fn start_durable_redis(dir: &Path, addr: SocketAddr) -> Redis {
    let aof = format!("aof-{}.aof", addr.port());
    spawn_redis(
        dir,
        addr,
        &[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--appendfilename",
            &aof,
        ],
    )
}

/// Starts redis-server on `addr` (with `requirepass` when `password` is
/// given) and waits until it answers.
pub fn start_redis(dir: &Path, addr: SocketAddr, password: Option<&str>) -> Redis {
    let rdb = format!("dump-{}.rdb", addr.port());
    let mut args = vec!["--appendonly", "no", "--dbfilename", &rdb];
    if let Some(pw) = password {
        args.extend(["--requirepass", pw]);
    }
    spawn_redis(dir, addr, &args)
}

/// redis-server on `addr`, working in `dir`, with no snapshots and `extra`
/// settings; returns once it accepts connections.
fn spawn_redis(dir: &Path, addr: SocketAddr, extra: &[&str]) -> Redis {
    let bin = require("redis-server", "redis-server");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--bind",
        &addr.ip().to_string(),
        "--port",
        &addr.port().to_string(),
        "--save",
        "",
        "--dir",
    ])
    .arg(dir)
    .args(extra);
    let mut proc = Proc::spawn(
        "redis-server",
        cmd,
        dir.join(format!("redis-{}.log", addr.port())),
    );
    proc.wait_listening(&[addr], Duration::from_secs(10), String::new);
    Redis { addr, _proc: proc }
}

impl Redis {
    /// The server's process id (to kill it as a crash would).
    pub fn pid(&self) -> u32 {
        self._proc.pid()
    }
}

impl Redis {
    /// A raw connection to it.
    pub fn raw(&self) -> Raw {
        Raw::connect(&self.addr.to_string())
    }
}

/// A RESP multibulk command.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
