//! A pipeline file's stages, started together on one transport: what
//! `shardkit pipeline run` runs, and what a service embeds to run the same
//! file in-process.

use super::config::{PipelineConfig, TransportConfig};
use super::http_function::HttpFunction;
use super::idempotency::{IdempotentLayer, MemorySeen, RedisSeen, SeenStore};
use super::layers::Layers;
use super::memory::Memory;
use super::redis_streams::{RedisOptions, RedisStreams};
use super::stage::{Stage, StageStats};
use super::transport::Transport;
use crate::error::Result;
use std::sync::Arc;
use std::time::Duration;
use tower::util::BoxCloneSyncService;
use tower::Layer;

/// Connects the transport a pipeline file names.
pub async fn connect(cfg: &TransportConfig) -> Result<Arc<dyn Transport>> {
    match (&cfg.redis, &cfg.memory) {
        (Some(url), _) => Ok(Arc::new(
            RedisStreams::connect(
                url,
                RedisOptions {
                    partitions: cfg.partitions,
                    prefix: cfg.prefix.clone(),
                    max_len: cfg.max_len,
                },
            )
            .await?,
        )),
        (None, Some(m)) => Ok(Arc::new(Memory::new(cfg.partitions, m.capacity)?)),
        (None, None) => Err(crate::error::Error::config(
            "transport needs redis: URL or memory: {}",
        )),
    }
}

/// Running stages.
pub struct Pipeline {
    transport: Arc<dyn Transport>,
    stages: Vec<(String, Stage)>,
}

impl Pipeline {
    /// Connects the transport and starts every stage, as consumer
    /// `consumer` of each stage's group. On any error nothing runs.
    pub async fn start(cfg: &PipelineConfig, consumer: &str) -> Result<Pipeline> {
        let transport = connect(&cfg.transport).await?;
        let seen: Option<Arc<dyn SeenStore>> = if cfg.stages.iter().any(|s| s.idempotent) {
            Some(match &cfg.transport.redis {
                Some(url) => Arc::new(
                    RedisSeen::connect(url, format!("{}seen:", cfg.transport.prefix)).await?,
                ),
                None => Arc::new(MemorySeen::default()),
            })
        } else {
            None
        };
        let mut stages: Vec<(String, Stage)> = Vec::new();
        for s in &cfg.stages {
            let url = s.function.as_deref().ok_or_else(|| {
                crate::error::Error::config(format!("stage {:?}: no function URL", s.name))
            })?;
            let function = HttpFunction::new(url)?;
            let layers = Layers {
                timeout: Some(s.call_timeout()),
                rate: s.rate,
                ..Layers::default()
            };
            let handler = match (&seen, s.idempotent) {
                (Some(store), true) => {
                    let idem = IdempotentLayer::new(
                        store.clone(),
                        s.name.clone(),
                        Duration::from_millis(cfg.idempotency_ttl),
                    );
                    layers.wrap(BoxCloneSyncService::new(idem.layer(function)))?
                }
                _ => layers.wrap(function)?,
            };
            match Stage::start(transport.clone(), s.stage_config(consumer), handler) {
                Ok(stage) => stages.push((s.name.clone(), stage)),
                Err(e) => {
                    for (_, st) in stages {
                        st.abort();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Pipeline { transport, stages })
    }

    /// The transport the stages run on.
    pub fn transport(&self) -> Arc<dyn Transport> {
        self.transport.clone()
    }

    /// Each stage's name and counters.
    pub fn stats(&self) -> Vec<(String, Arc<StageStats>)> {
        self.stages
            .iter()
            .map(|(n, s)| (n.clone(), s.stats()))
            .collect()
    }

    /// Stops every stage, letting events in progress finish within
    /// `drain`; the rest is delivered again later.
    pub async fn stop(self, drain: Duration) {
        // All at once: each stage's drain runs beside the others'.
        let stopping: Vec<_> = self
            .stages
            .into_iter()
            .map(|(_, s)| tokio::spawn(s.stop(drain)))
            .collect();
        for s in stopping {
            let _ = s.await;
        }
    }
}
