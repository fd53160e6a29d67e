//! Functions and event pipelines: CloudEvents ([`Event`]), handlers with
//! layers in front of them (the decorator pattern: [`Layers`],
//! [`DefaultsLayer`]), and stages ([`Stage`]) that consume a topic
//! at-least-once over a broker-neutral [`Transport`]: in process
//! ([`Memory`]) or on Redis Streams.
//!
//! The files: `event` (CloudEvents, structured JSON and HTTP binary mode),
//! `layers` (handlers and tower layers), `filter` (triggers), `http_function`
//! (a handler that is a URL), `idempotency` (effectively-once), `transport`
//! (the broker interface and key partitioning), `memory` (the in-process
//! broker), `redis_streams` (Redis Streams), `stage` (consuming: lanes, attempts, dead letters, drain), `config`
//! (the pipeline file), `runner` (a file's stages started together),
//! `redrive` (dead letters back to their topics).

pub mod batch;
pub mod config;
pub mod event;
pub mod filter;
pub mod http_function;
pub mod idempotency;
pub mod layers;
pub mod memory;
pub mod redis_streams;
pub mod redrive;
pub mod runner;
pub mod stage;
pub mod transport;

pub use batch::{BatchHandler, BatchSettings, ItemResult};
pub use config::PipelineConfig;
pub use event::{Data, Event};
pub use filter::Filter;
pub use http_function::HttpFunction;
pub use idempotency::{IdempotentLayer, MemorySeen, RedisSeen, SeenStore};
pub use layers::{
    is_permanent, BoxError, DefaultsLayer, Handler, Layers, Permanent, Rate, RetrySettings,
};
pub use memory::Memory;
pub use redis_streams::{RedisOptions, RedisStreams};
pub use runner::Pipeline;
pub use stage::{Stage, StageConfig, StageStats};
pub use transport::{partition_of, Delivery, DeliveryId, Receive, Transport};
