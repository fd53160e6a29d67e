//! The proxy's configuration: nutcracker's YAML, every pool key nutcracker
//! knows, plus shardkit's own keys. `shardkit proxy --config FILE` serves
//! every pool in the file, as `nutcracker -c FILE` does, and places keys as
//! nutcracker does unless a pool says `algorithm:`.
//!
//! nutcracker's keys (defaults as in nutcracker 0.5):
//!
//! | key | meaning |
//! |---|---|
//! | `listen` | `host:port`, or a unix socket path (`/path [mode]`) |
//! | `hash`, `hash_tag`, `distribution` | placement (`ketama`, `modula`) |
//! | `timeout` | ms a backend may take to answer (default: no limit) |
//! | `backlog` | listen backlog (512) |
//! | `client_connections` | most clients at once (0: no limit) |
//! | `redis` | RESP pool instead of memcache (false) |
//! | `redis_auth` | password clients must give, and the proxy gives backends |
//! | `redis_db` | database the proxy SELECTs on backends (0) |
//! | `preconnect` | connect to every backend at start (false) |
//! | `server_connections` | shared connections per backend (1) |
//! | `auto_eject_hosts` | take failing servers out of the pool (false) |
//! | `server_retry_timeout` | ms before an ejected server is tried again (30000) |
//! | `server_failure_limit` | consecutive failures that eject (2) |
//! | `servers` | `host:port:weight [name]` entries |
//! | `tcpkeepalive`, `reuseport` | socket options |
//!
//! shardkit's keys:
//!
//! | key | meaning |
//! |---|---|
//! | `algorithm` | any shardkit algorithm (`jump`, `maglev`, ...), replacing `distribution` |
//! | `replicas` | write each key to its N nodes, read from one, fail over (1) |
//! | `eject_mode` | `reshuffle` (nutcracker's: the ring is rebuilt without the server) or `next` (a down server's keys go to their next node; no other key moves) |
//! | `hot_keys` | detect hot keys and serve their reads from a short-lived in-proxy copy (false) |
//! | `hot_key_ttl` | ms a copy may be served: the staleness bound (200) |
//! | `hot_key_max` | most keys copied at once (64) |
//! | `item_size_max` | largest value accepted, bytes (1 MiB) |
//! | `client_idle_timeout` | ms of client silence before the proxy hangs up (0: never) |
//! | `client_pending_max` | requests a client may have unanswered before the proxy stops reading from it (1024) |

use super::parse::Limits;
use crate::config::twemproxy::{self, Placement, Server};
use crate::error::{Error, ErrorKind, Result};
use crate::shard::Sharder;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

/// A whole configuration: every pool of the file.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The pools, in the file's order of names (sorted).
    pub pools: Vec<PoolConfig>,
}

/// Where a pool listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// A TCP address as written (`127.0.0.1:22121`, `localhost:22121`).
    Tcp(String),
    /// A unix socket path, and the mode to give it (nutcracker's
    /// `/path 0666`).
    Unix(String, Option<u32>),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => f.write_str(a),
            Listen::Unix(p, _) => f.write_str(p),
        }
    }
}

/// How a pool routes around servers that are down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectMode {
    /// nutcracker's: the ring is rebuilt from the live servers, which moves
    /// some keys between live servers too.
    Reshuffle,
    /// shardkit's: a down server's keys go to their next node in the key's
    /// order of preference; no other key moves.
    Next,
}

/// One pool, checked.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The pool's name.
    pub name: String,
    /// Where it listens.
    pub listen: Listen,
    /// The servers, in the sharder's node order.
    pub servers: Vec<Server>,
    /// Places keys over all servers.
    pub sharder: Sharder,
    /// RESP instead of memcache.
    pub redis: bool,
    /// The password clients give (AUTH) and the proxy gives backends.
    pub redis_auth: Option<String>,
    /// The database selected on backends.
    pub redis_db: u32,
    /// How long a backend may take to answer.
    pub timeout: Option<Duration>,
    /// The listen backlog.
    pub backlog: u32,
    /// Most clients at once (0: no limit).
    pub client_connections: u32,
    /// Connect to backends at start.
    pub preconnect: bool,
    /// Shared connections per backend.
    pub server_connections: u32,
    /// Take failing servers out.
    pub auto_eject_hosts: bool,
    /// How long an ejected server stays out before it is probed.
    pub server_retry_timeout: Duration,
    /// Consecutive failures that eject a server.
    pub server_failure_limit: u32,
    /// TCP keepalive on client and backend sockets.
    pub tcpkeepalive: bool,
    /// SO_REUSEPORT on the listener.
    pub reuseport: bool,
    /// Nodes each key is written to.
    pub replicas: usize,
    /// How failing servers are routed around.
    pub eject_mode: EjectMode,
    /// Hot-key spreading, with its settings.
    pub hot_keys: Option<HotKeySettings>,
    /// Request size limits.
    pub limits: Limits,
    /// Client silence before the proxy hangs up.
    pub client_idle_timeout: Option<Duration>,
    /// Unanswered requests per client before the proxy stops reading it.
    pub client_pending_max: usize,
    /// The placement directives as written (to rebuild the ring without
    /// ejected servers).
    pub(crate) placement: PlacementOwned,
}

/// Settings of a pool's hot-key spreading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HotKeySettings {
    /// How long a copy may be served: the staleness bound.
    pub ttl: Duration,
    /// Most keys copied at once.
    pub max_hot: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PlacementOwned {
    pub hash: Option<String>,
    pub hash_tag: Option<String>,
    pub distribution: Option<String>,
    pub algorithm: Option<String>,
}

impl PlacementOwned {
    pub(crate) fn borrow(&self) -> Placement<'_> {
        Placement {
            hash: self.hash.as_deref(),
            hash_tag: self.hash_tag.as_deref(),
            distribution: self.distribution.as_deref(),
            algorithm: self.algorithm.as_deref(),
        }
    }
}

/// A pool as written: serde refuses unknown keys, naming the key and its
/// line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    listen: Option<String>,
    hash: Option<String>,
    hash_tag: Option<String>,
    distribution: Option<String>,
    timeout: Option<u64>,
    backlog: Option<u32>,
    client_connections: Option<u32>,
    redis: Option<bool>,
    redis_auth: Option<String>,
    redis_db: Option<u32>,
    preconnect: Option<bool>,
    auto_eject_hosts: Option<bool>,
    server_connections: Option<u32>,
    server_retry_timeout: Option<u64>,
    server_failure_limit: Option<u32>,
    servers: Option<Vec<String>>,
    tcpkeepalive: Option<bool>,
    reuseport: Option<bool>,
    // shardkit's own
    algorithm: Option<String>,
    replicas: Option<usize>,
    eject_mode: Option<String>,
    hot_keys: Option<bool>,
    hot_key_ttl: Option<u64>,
    hot_key_max: Option<usize>,
    item_size_max: Option<usize>,
    client_idle_timeout: Option<u64>,
    client_pending_max: Option<usize>,
}

impl ProxyConfig {
    /// Parses a configuration. Errors are [`ErrorKind::Config`] and name the
    /// pool, the key and the value (and, for YAML and unknown keys, the
    /// line).
    pub fn parse(yaml: &str) -> Result<ProxyConfig> {
        let raw: BTreeMap<String, RawPool> = serde_yaml_ng::from_str(yaml)
            .map_err(|e| Error::config(format!("proxy config: {e}")))?;
        if raw.is_empty() {
            return Err(Error::config("proxy config has no pools"));
        }
        let mut listens: HashMap<Listen, String> = HashMap::new();
        let mut pools = Vec::with_capacity(raw.len());
        for (name, raw) in raw {
            let pool = PoolConfig::from_raw(&name, raw)?;
            // Port 0 asks the system for a free port, different each time.
            let any_port = matches!(&pool.listen, Listen::Tcp(a) if a.ends_with(":0"));
            if any_port {
                pools.push(pool);
                continue;
            }
            if let Some(other) = listens.insert(pool.listen.clone(), name.clone()) {
                return Err(Error::config(format!(
                    "pools {other:?} and {name:?} both listen on {}",
                    pool.listen
                )));
            }
            pools.push(pool);
        }
        Ok(ProxyConfig { pools })
    }

    /// Reads and parses a configuration file; errors name the path.
    pub fn load(path: &Path) -> Result<ProxyConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot read proxy config {}: {e}", path.display()),
            )
        })?;
        ProxyConfig::parse(&text)
            .map_err(|e| Error::new(e.kind(), format!("{}: {}", path.display(), e.message())))
    }
}

impl PoolConfig {
    fn from_raw(name: &str, raw: RawPool) -> Result<PoolConfig> {
        let ctx = |msg: String| Error::config(format!("pool {name:?}: {msg}"));
        let listen = match raw.listen.as_deref().map(str::trim) {
            None | Some("") => return Err(ctx("has no \"listen\" address".into())),
            Some(l) if l.starts_with('/') => {
                let (path, mode) = match l.split_once(' ') {
                    Some((p, m)) => {
                        let mode = u32::from_str_radix(m.trim(), 8).map_err(|_| {
                            ctx(format!("listen {l:?}: the mode {m:?} is not octal"))
                        })?;
                        (p, Some(mode))
                    }
                    None => (l, None),
                };
                Listen::Unix(path.to_string(), mode)
            }
            Some(l) => {
                let ok = l
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(ctx(format!(
                        "listen {l:?} is neither host:port nor a unix socket path"
                    )));
                }
                Listen::Tcp(l.to_string())
            }
        };
        let placement = PlacementOwned {
            hash: raw.hash,
            hash_tag: raw.hash_tag,
            distribution: raw.distribution,
            algorithm: raw.algorithm,
        };
        let entries = match raw.servers {
            Some(s) if !s.is_empty() => s,
            _ => return Err(ctx("has no servers".into())),
        };
        let (sharder, servers) = twemproxy::pool_sharder(name, &placement.borrow(), &entries)?;
        let redis = raw.redis.unwrap_or(false);
        let replicas = raw.replicas.unwrap_or(1);
        if replicas == 0 || replicas > servers.len() {
            return Err(ctx(format!(
                "replicas {replicas}: must be between 1 and the server count {}",
                servers.len()
            )));
        }
        let eject_mode = match raw.eject_mode.as_deref() {
            None | Some("reshuffle") => EjectMode::Reshuffle,
            Some("next") => EjectMode::Next,
            Some(other) => {
                return Err(ctx(format!(
                    "eject_mode {other:?}: expected reshuffle (nutcracker's) or next"
                )))
            }
        };
        if replicas > 1 && eject_mode == EjectMode::Reshuffle && raw.eject_mode.is_some() {
            return Err(ctx(
                "eject_mode reshuffle moves keys between live servers, which replicas cannot follow; use eject_mode next with replicas".into(),
            ));
        }
        let server_connections = raw.server_connections.unwrap_or(1);
        if server_connections == 0 || server_connections > 64 {
            return Err(ctx(format!(
                "server_connections {server_connections}: must be between 1 and 64"
            )));
        }
        let item_size_max = raw.item_size_max.unwrap_or(1 << 20);
        if item_size_max == 0 || item_size_max > 512 << 20 {
            return Err(ctx(format!(
                "item_size_max {item_size_max}: must be between 1 and 536870912 bytes"
            )));
        }
        let hot_keys = match raw.hot_keys.unwrap_or(false) {
            false => {
                if raw.hot_key_ttl.is_some() || raw.hot_key_max.is_some() {
                    return Err(ctx("hot_key_ttl and hot_key_max need hot_keys: true".into()));
                }
                None
            }
            true => {
                let ttl = raw.hot_key_ttl.unwrap_or(200);
                if ttl == 0 || ttl > 60_000 {
                    return Err(ctx(format!(
                        "hot_key_ttl {ttl}: must be between 1 and 60000 ms"
                    )));
                }
                let max_hot = raw.hot_key_max.unwrap_or(64);
                if max_hot == 0 || max_hot > 65536 {
                    return Err(ctx(format!(
                        "hot_key_max {max_hot}: must be between 1 and 65536"
                    )));
                }
                Some(HotKeySettings {
                    ttl: Duration::from_millis(ttl),
                    max_hot,
                })
            }
        };
        if !redis && (raw.redis_auth.is_some() || raw.redis_db.is_some()) {
            return Err(ctx("redis_auth and redis_db need redis: true".into()));
        }
        let ms = |v: Option<u64>| v.filter(|&t| t > 0).map(Duration::from_millis);
        Ok(PoolConfig {
            name: name.to_string(),
            listen,
            servers,
            sharder,
            redis,
            redis_auth: raw.redis_auth.filter(|a| !a.is_empty()),
            redis_db: raw.redis_db.unwrap_or(0),
            timeout: ms(raw.timeout),
            backlog: raw.backlog.unwrap_or(512),
            client_connections: raw.client_connections.unwrap_or(0),
            preconnect: raw.preconnect.unwrap_or(false),
            server_connections,
            auto_eject_hosts: raw.auto_eject_hosts.unwrap_or(false),
            server_retry_timeout: Duration::from_millis(
                raw.server_retry_timeout.unwrap_or(30_000).max(1),
            ),
            server_failure_limit: raw.server_failure_limit.unwrap_or(2).max(1),
            tcpkeepalive: raw.tcpkeepalive.unwrap_or(false),
            reuseport: raw.reuseport.unwrap_or(false),
            replicas,
            eject_mode: if replicas > 1 {
                EjectMode::Next
            } else {
                eject_mode
            },
            hot_keys,
            limits: Limits {
                max_value: item_size_max,
                ..Limits::default()
            },
            client_idle_timeout: ms(raw.client_idle_timeout),
            client_pending_max: raw.client_pending_max.unwrap_or(1024).clamp(1, 1 << 20),
            placement,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  distribution: ketama
  timeout: 400
  backlog: 1024
  preconnect: true
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 1
  server_connections: 2
  servers:
   - 127.0.0.1:11211:1
   - 127.0.0.1:11212:2 beta
beta:
  listen: /tmp/beta.sock 0666
  redis: true
  redis_auth: secret
  redis_db: 3
  algorithm: jump
  replicas: 2
  hot_keys: true
  hot_key_ttl: 50
  servers:
   - 127.0.0.1:6379:1
   - 127.0.0.1:6380:1
";

    #[test]
    fn every_key_is_read() {
        let c = ProxyConfig::parse(SAMPLE).unwrap();
        let a = &c.pools[0];
        assert_eq!(a.name, "alpha");
        assert_eq!(a.listen, Listen::Tcp("127.0.0.1:22121".into()));
        assert_eq!(a.timeout, Some(Duration::from_millis(400)));
        assert_eq!((a.backlog, a.server_connections), (1024, 2));
        assert!(a.preconnect && a.auto_eject_hosts);
        assert_eq!(a.server_failure_limit, 1);
        assert_eq!(a.servers.len(), 2);
        let b = &c.pools[1];
        assert_eq!(b.listen, Listen::Unix("/tmp/beta.sock".into(), Some(0o666)));
        assert!(b.redis);
        assert_eq!(b.redis_auth.as_deref(), Some("secret"));
        assert_eq!((b.redis_db, b.replicas), (3, 2));
        assert_eq!(b.eject_mode, EjectMode::Next);
        assert_eq!(b.hot_keys.unwrap().ttl, Duration::from_millis(50));
        assert_eq!(b.sharder.algorithm().name(), "jump");
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let bad = SAMPLE.replace("  backlog: 1024", "  backlgo: 1024");
        let e = ProxyConfig::parse(&bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("backlgo"), "{}", e.message());
        assert!(e.message().contains("line 6"), "{}", e.message());
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, want) in [
            ("  replicas: 2", "  replicas: 3", "replicas 3"),
            ("  hot_key_ttl: 50", "  hot_key_ttl: 0", "hot_key_ttl 0"),
            ("distribution: ketama", "distribution: rnd", "\"rnd\""),
            ("listen: 127.0.0.1:22121", "listen: nowhere", "\"nowhere\""),
            ("algorithm: jump", "algorithm: jumpy", "jumpy"),
            ("timeout: 400", "timeout: soon", "soon"),
        ] {
            let bad = SAMPLE.replace(from, to);
            let e = ProxyConfig::parse(&bad).unwrap_err();
            assert!(e.message().contains(want), "{to}: {}", e.message());
        }
        let alpha_only = |extra: &str| {
            SAMPLE.replace(
                "  server_connections: 2\n",
                &format!("  server_connections: 2\n{extra}"),
            )
        };
        for (extra, want) in [
            (
                "  redis_auth: pw\n",
                "redis_auth and redis_db need redis: true",
            ),
            (
                "  hot_key_ttl: 10\n",
                "hot_key_ttl and hot_key_max need hot_keys: true",
            ),
            (
                "  replicas: 2\n  eject_mode: reshuffle\n",
                "use eject_mode next with replicas",
            ),
            ("  eject_mode: sideways\n", "eject_mode \"sideways\""),
            ("  item_size_max: 0\n", "item_size_max 0"),
            ("  hot_keys: true\n  hot_key_max: 0\n", "hot_key_max 0"),
        ] {
            let e = ProxyConfig::parse(&alpha_only(extra)).unwrap_err();
            assert!(e.message().contains(want), "{extra}: {}", e.message());
        }
        let e =
            ProxyConfig::parse(&SAMPLE.replace("server_connections: 2", "server_connections: 0"))
                .unwrap_err();
        assert!(
            e.message().contains("server_connections 0"),
            "{}",
            e.message()
        );
        let e = ProxyConfig::parse(&SAMPLE.replace("/tmp/beta.sock 0666", "/tmp/beta.sock 0999"))
            .unwrap_err();
        assert!(
            e.message().contains("\"0999\" is not octal"),
            "{}",
            e.message()
        );
        let dup = SAMPLE.replace("/tmp/beta.sock 0666", "127.0.0.1:22121");
        assert!(ProxyConfig::parse(&dup)
            .unwrap_err()
            .message()
            .contains("both listen"));
    }
}
