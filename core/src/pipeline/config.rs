//! The pipeline file `shardkit pipeline run --config FILE` reads: the
//! transport and the stages, each naming its topic, filter, function,
//! reply topic, attempts, dead-letter topic, concurrency and ordering.
//!
//! ```yaml
//! transport:
//!   redis: redis://127.0.0.1:6379/0   # or  memory: {partitions: 8, capacity: 10000}
//!   partitions: 8
//! stages:
//!   - name: welcome-email
//!     topic: users
//!     filter: {type: user.created}
//!     function: http://127.0.0.1:8081/welcome
//!     reply_topic: emails
//! ```
//!
//! Unknown keys are errors naming the key and its line; every value is
//! checked before anything starts.

use super::filter::Filter;
use super::layers::Rate;
use super::stage::StageConfig;
use crate::error::{Error, ErrorKind, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A whole pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Where topics live.
    pub transport: TransportConfig,
    /// How long the idempotency helper remembers a finished event (ms), for
    /// stages with `idempotent: true`. Default one day.
    #[serde(default = "default_idempotency_ttl")]
    pub idempotency_ttl: u64,
    /// The stages, started together.
    pub stages: Vec<StageEntry>,
}

fn default_idempotency_ttl() -> u64 {
    86_400_000
}

/// The transport: Redis Streams (`redis: URL`) or in-process (`memory`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    /// A Redis URL: topics are streams there.
    pub redis: Option<String>,
    /// In this process only (for trying a pipeline out).
    pub memory: Option<MemoryConfig>,
    /// Partitions (streams) per topic; every publisher and consumer of a
    /// topic must agree. Default 8.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Redis key prefix. Default `shardkit:`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Redis: an approximate cap on each stream's length.
    pub max_len: Option<u64>,
}

fn default_partitions() -> u32 {
    8
}

fn default_prefix() -> String {
    "shardkit:".into()
}

impl TransportConfig {
    /// A transport named by one string, as the bindings take it: `memory`
    /// (this process only) or a Redis URL (`redis://`, `rediss://`,
    /// `redis+unix://`, `unix://`), with the defaults for everything else.
    /// Anything else is an error naming it.
    pub fn from_spec(spec: &str, partitions: u32) -> Result<TransportConfig> {
        let (redis, memory) = if spec == "memory" {
            (
                None,
                Some(MemoryConfig {
                    capacity: default_capacity(),
                }),
            )
        } else if ["redis://", "rediss://", "redis+unix://", "unix://"]
            .iter()
            .any(|scheme| spec.starts_with(scheme))
        {
            (Some(spec.to_string()), None)
        } else {
            return Err(Error::invalid(format!(
                "transport {spec:?}: expected \"memory\" or a redis:// URL"
            )));
        };
        Ok(TransportConfig {
            redis,
            memory,
            partitions,
            prefix: default_prefix(),
            max_len: None,
        })
    }
}

/// The in-process transport's bound.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Unacknowledged events per partition at most. Default 10,000.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
}

fn default_capacity() -> usize {
    10_000
}

/// Ordering of a stage's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// One key's events one at a time, in order (the default).
    Key,
    /// Every event in parallel.
    None,
}

/// One stage in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageEntry {
    /// The stage's name (its consumer group's too, unless `group`).
    pub name: String,
    /// The topic it consumes.
    pub topic: String,
    /// The consumer group.
    pub group: Option<String>,
    /// CloudEvents attributes the events must have (`type`, `source`,
    /// `subject`, extensions); a value ending in `*` is a prefix.
    #[serde(default)]
    pub filter: BTreeMap<String, String>,
    /// The function: an `http://` URL each event is POSTed to. Required in
    /// a pipeline file; a stage whose handler is code (C, Go) has none.
    pub function: Option<String>,
    /// Where the function's reply events go.
    pub reply_topic: Option<String>,
    /// Where events go after their last attempt (default `TOPIC.dlq`).
    pub dead_letter: Option<String>,
    /// Attempts in all before dead-lettering. Default 5.
    pub max_attempts: Option<u32>,
    /// First backoff between attempts (ms). Default 100.
    pub min_backoff: Option<u64>,
    /// Longest backoff (ms). Default 10,000.
    pub max_backoff: Option<u64>,
    /// Events older than this (ms) are dead-lettered unhandled.
    pub max_age: Option<u64>,
    /// Keys (or events) handled at once. Default 16.
    pub concurrency: Option<usize>,
    /// `key` (default) or `none`.
    pub ordering: Option<Ordering>,
    /// Events received and not finished at most. Default 1,024.
    pub max_in_flight: Option<usize>,
    /// Unacknowledged this long (ms), an event may go to another worker.
    /// Default 30,000.
    pub visibility: Option<u64>,
    /// A worker's hold on its partitions lasts this long (ms) unless
    /// renewed: a dead worker's partitions move to the others within it.
    /// Default 10,000.
    pub lease: Option<u64>,
    /// Each call's time limit (ms). Default 10,000.
    pub timeout: Option<u64>,
    /// Calls per period at most.
    pub rate: Option<Rate>,
    /// Skip events this stage already finished (the idempotency helper).
    #[serde(default)]
    pub idempotent: bool,
}

impl PipelineConfig {
    /// Parses a pipeline file. Errors are [`ErrorKind::Config`], naming the
    /// key and line (YAML, unknown keys) or the stage and value.
    pub fn parse(yaml: &str) -> Result<PipelineConfig> {
        let cfg: PipelineConfig = serde_yaml_ng::from_str(yaml)
            .map_err(|e| Error::config(format!("pipeline config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a pipeline file; errors name the path.
    pub fn load(path: &Path) -> Result<PipelineConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot read pipeline config {}: {e}", path.display()),
            )
        })?;
        Self::parse(&text)
            .map_err(|e| Error::new(e.kind(), format!("{}: {}", path.display(), e.message())))
    }

    fn validate(&self) -> Result<()> {
        match (&self.transport.redis, &self.transport.memory) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "pipeline config: transport has both redis and memory; choose one",
                ))
            }
            (None, None) => {
                return Err(Error::config(
                    "pipeline config: transport needs redis: URL or memory: {}",
                ))
            }
            _ => {}
        }
        if self.transport.partitions == 0 || self.transport.partitions > 4096 {
            return Err(Error::config(format!(
                "pipeline config: transport partitions {}: must be 1..=4096",
                self.transport.partitions
            )));
        }
        if self.stages.is_empty() {
            return Err(Error::config("pipeline config: no stages"));
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.stages {
            if !names.insert(s.name.as_str()) {
                return Err(Error::config(format!(
                    "pipeline config: two stages are named {:?}",
                    s.name
                )));
            }
            let Some(function) = &s.function else {
                return Err(Error::config(format!(
                    "stage {:?}: no function: give its http:// URL",
                    s.name
                )));
            };
            crate::scatter::http::parse_http_url(function, "function URL")
                .map_err(|e| Error::config(format!("stage {:?}: {}", s.name, e.message())))?;
            s.validate()?;
        }
        Ok(())
    }
}

impl StageEntry {
    /// Parses one stage's settings (the keys of a pipeline file's stage),
    /// from YAML or JSON: for stages whose handler is code, not a URL.
    pub fn parse(text: &str) -> Result<StageEntry> {
        let s: StageEntry = serde_yaml_ng::from_str(text)
            .map_err(|e| Error::config(format!("stage settings: {e}")))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks the values (not the function: a file requires one, code
    /// stages have none).
    pub fn validate(&self) -> Result<()> {
        if self.timeout == Some(0) {
            return Err(Error::config(format!(
                "stage {:?}: timeout 0: must be at least 1 ms",
                self.name
            )));
        }
        if let Some(r) = &self.rate {
            if r.requests == 0 || r.per.is_zero() {
                return Err(Error::config(format!(
                    "stage {:?}: rate {} per {} ms: both must be at least 1",
                    self.name,
                    r.requests,
                    r.per.as_millis()
                )));
            }
        }
        self.stage_config("check")
            .validate()
            .map_err(|e| Error::config(e.message().to_string()))
    }

    /// The stage's settings, for consumer `consumer`.
    pub fn stage_config(&self, consumer: &str) -> StageConfig {
        let mut c = StageConfig::new(self.name.clone(), self.topic.clone());
        let ms = Duration::from_millis;
        c.consumer = consumer.to_string();
        c.group = self.group.clone();
        c.filter = Filter {
            attributes: self.filter.clone(),
        };
        c.reply_topic = self.reply_topic.clone();
        c.dead_letter = self.dead_letter.clone();
        if let Some(v) = self.max_attempts {
            c.max_attempts = v;
        }
        if let Some(v) = self.min_backoff {
            c.min_backoff = ms(v);
        }
        if let Some(v) = self.max_backoff {
            c.max_backoff = ms(v);
        }
        c.max_age = self.max_age.map(ms);
        if let Some(v) = self.concurrency {
            c.concurrency = v;
        }
        c.ordered = self.ordering != Some(Ordering::None);
        if let Some(v) = self.max_in_flight {
            c.max_in_flight = v;
        }
        if let Some(v) = self.visibility {
            c.visibility = ms(v);
        }
        if let Some(v) = self.lease {
            c.lease = ms(v);
        }
        c
    }

    /// Each call's time limit.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.timeout.unwrap_or(10_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_spec_is_memory_or_a_redis_url() {
        let m = TransportConfig::from_spec("memory", 4).unwrap();
        assert_eq!(m.memory, Some(MemoryConfig { capacity: 10_000 }));
        assert_eq!((m.redis, m.partitions), (None, 4));
        for url in [
            "redis://127.0.0.1:6379/0",
            "rediss://h/",
            "unix:///tmp/r.sock",
        ] {
            let r = TransportConfig::from_spec(url, 8).unwrap();
            assert_eq!(r.redis.as_deref(), Some(url));
            assert_eq!(r.prefix, "shardkit:");
        }
        let err = TransportConfig::from_spec("kafka://x", 8).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("\"kafka://x\""), "{err}");
    }
}
