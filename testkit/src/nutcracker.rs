//! nutcracker (twemproxy) for tests: started on a configuration, or asked
//! whether it accepts one.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::net::free_port;
use crate::process::{require, Proc};

/// A running nutcracker, stopped on drop.
#[derive(Debug)]
pub struct Nutcracker {
    proc: Proc,
}

impl Nutcracker {
    /// Its log so far (stdout and stderr; `-o` output is `nutcracker.out`
    /// in the directory it was started in).
    pub fn log(&self) -> String {
        self.proc.log()
    }
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
    proc.wait_listening(listens, Duration::from_secs(10), || {
        std::fs::read_to_string(dir.join("nutcracker.out")).unwrap_or_default()
    });
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
