//! The cache ambassador: a nutcracker (twemproxy) drop-in for memcache
//! (text and meta) and Redis (RESP2), with replicas, failover, live reload,
//! hot-key spreading and metrics, on every core.
//!
//! ```no_run
//! use shardkit::proxy::{Proxy, ProxyConfig, ProxyOptions};
//! let config = ProxyConfig::parse(r#"
//! cache:
//!   listen: 127.0.0.1:22121
//!   hash: fnv1a_64
//!   distribution: ketama
//!   servers:
//!    - 127.0.0.1:11211:1
//!    - 127.0.0.1:11212:1
//! "#)?;
//! let proxy = Proxy::start(config, ProxyOptions::default())?;
//! println!("{:?}", proxy.listening());
//! proxy.stop();
//! # Ok::<(), shardkit::Error>(())
//! ```
//!
//! The layers, each in its file:
//! - wire formats, pure and fuzzed: [`text`](self) (memcache text),
//!   `meta` (memcache meta), `resp` (Redis), and the limits they share
//!   (`parse`);
//! - per-protocol client handling: `memcache`, `redis`;
//! - sending a key's request to its replicas: `forward`; where keys go:
//!   `route`; server health, ejection and probes: `health`;
//! - shared pipelined backend connections: `backend`;
//! - a pool in service, swapped whole on reload: `pool`;
//! - client connections: `session`; listeners and the proxy: this file and
//!   `listen`; hot keys: `hotkeys`; counters and their expositions: `stats`;
//!   the worker threads the proxy runs on: `workers`.
//!
//! The proxy runs on worker threads of its own, one event loop each (see
//! `workers` for why), not on the process's shared runtime; their number is
//! [`ProxyOptions::threads`], by default [`crate::runtime::threads`] (so
//! `--threads`, `SHARDKIT_THREADS` or [`crate::runtime::set_threads`]).

mod backend;
mod config;
mod forward;
mod health;
mod hotkeys;
mod listen;
mod memcache;
mod meta;
mod parse;
mod pool;
mod redis;
mod resp;
mod route;
mod session;
mod stats;
mod text;
pub(crate) mod workers;

pub use config::{EjectMode, HotKeySettings, Listen, PoolConfig, ProxyConfig};
pub use listen::{Proxy, ProxyOptions};
pub use parse::Limits;
