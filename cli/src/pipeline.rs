//! `shardkit pipeline run`, `shardkit events publish` and `shardkit dlq`:
//! flags, signals and output; the pipeline is `shardkit::pipeline`.

use shardkit::pipeline::config::{PipelineConfig, TransportConfig};
use shardkit::pipeline::runner::{connect, Pipeline};
use shardkit::pipeline::stage::dead_letter_attr;
use shardkit::pipeline::{redrive, Data, Event, Transport};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Where topics live: a pipeline file's transport, or a Redis URL.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct TransportArgs {
    /// Use this pipeline file's transport.
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "redis")]
    config: Option<PathBuf>,
    /// Redis URL (redis://host:port/db).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Partitions per topic (with --redis; must match the pipeline's).
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Redis key prefix (with --redis).
    #[arg(long, default_value = "shardkit:")]
    prefix: String,
}

impl TransportArgs {
    fn config(&self) -> Result<TransportConfig, shardkit::Error> {
        match (&self.config, &self.redis) {
            (Some(path), _) => {
                let t = PipelineConfig::load(path)?.transport;
                if t.redis.is_none() {
                    return Err(shardkit::Error::config(format!(
                        "{}: its transport is in-process memory, which another process cannot reach",
                        path.display()
                    )));
                }
                Ok(t)
            }
            (None, Some(url)) => Ok(TransportConfig {
                redis: Some(url.clone()),
                memory: None,
                partitions: self.partitions,
                prefix: self.prefix.clone(),
                max_len: None,
            }),
            (None, None) => Err(shardkit::Error::invalid(
                "where are the topics? give --config FILE or --redis URL",
            )),
        }
    }
}

/// `shardkit pipeline ...`
#[derive(clap::Subcommand, Debug)]
pub(crate) enum PipelineCommand {
    /// Run a pipeline file's stages until SIGINT or SIGTERM, then drain.
    Run(RunArgs),
    /// Check a pipeline file and exit.
    Check {
        /// The pipeline file.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
    },
}

/// `shardkit pipeline run`.
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// The pipeline file (see the README for its keys).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// This worker's consumer name in each stage's group (default
    /// HOSTNAME-PID); workers with one name share their pending events.
    #[arg(long)]
    consumer: Option<String>,
    /// On SIGINT/SIGTERM, how long events in progress may take to finish (ms).
    #[arg(long, default_value_t = 10_000)]
    drain_ms: u64,
}

/// `shardkit events ...`
#[derive(clap::Subcommand, Debug)]
pub(crate) enum EventsCommand {
    /// Publish one event from flags, or (without --type) JSON lines from
    /// stdin, each a structured-mode CloudEvent.
    Publish(PublishArgs),
}

/// `shardkit events publish`.
#[derive(clap::Args, Debug)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    transport: TransportArgs,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// The event's type; without it, events are read from stdin.
    #[arg(long = "type")]
    ty: Option<String>,
    /// The event's source.
    #[arg(long, default_value = "shardkit-cli")]
    source: String,
    /// The event's id (default: a fresh one).
    #[arg(long)]
    id: Option<String>,
    /// The event's subject.
    #[arg(long)]
    subject: Option<String>,
    /// The partition key (per-key order; the `partitionkey` extension).
    #[arg(long)]
    key: Option<String>,
    /// JSON data.
    #[arg(long, conflicts_with = "text")]
    data: Option<String>,
    /// Text data (text/plain).
    #[arg(long)]
    text: Option<String>,
}

/// `shardkit dlq ...`
#[derive(clap::Subcommand, Debug)]
pub(crate) enum DlqCommand {
    /// One line per dead letter: PARTITION ID KEY REASON ATTEMPTS ERROR (tab-separated).
    List(DlqArgs),
    /// One dead letter as structured JSON, its attempt history included.
    Show {
        #[command(flatten)]
        dlq: DlqArgs,
        /// The event id.
        id: String,
    },
    /// Send dead letters back to their topics (per-key order kept), then delete them here.
    Redrive {
        #[command(flatten)]
        dlq: DlqArgs,
        /// Only this event.
        #[arg(long)]
        id: Option<String>,
    },
}

/// Which dead-letter topic.
#[derive(clap::Args, Debug)]
pub(crate) struct DlqArgs {
    #[command(flatten)]
    transport: TransportArgs,
    /// The dead-letter topic (a stage's `dead_letter`, by default TOPIC.dlq).
    #[arg(long)]
    topic: String,
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("shardkit: error: {e}");
    ExitCode::from(1)
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, shardkit::Error> {
    shardkit::runtime::shared()
}

/// `shardkit pipeline`.
pub(crate) fn pipeline(cmd: PipelineCommand) -> ExitCode {
    match cmd {
        PipelineCommand::Check { config } => match PipelineConfig::load(&config) {
            Ok(c) => {
                println!(
                    "shardkit: pipeline file '{}' is ok ({} stages)",
                    config.display(),
                    c.stages.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        PipelineCommand::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let cfg = match PipelineConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let consumer = args.consumer.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return fail("cannot install signal handlers");
        };
        let p = match Pipeline::start(&cfg, &consumer).await {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        for s in &cfg.stages {
            eprintln!(
                "shardkit pipeline: stage {:?} consuming {:?} as {consumer:?}, function {}",
                s.name, s.topic, s.function.as_deref().unwrap_or("-")
            );
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("shardkit pipeline: stopping (draining up to {} ms)", args.drain_ms);
        let stats = p.stats();
        p.stop(Duration::from_millis(args.drain_ms)).await;
        for (name, s) in stats {
            eprintln!(
                "shardkit pipeline: stage {name:?}: {} handled, {} failed attempts, {} dead-lettered, {} skipped, {} emitted, {} redelivered",
                s.handled.load(Ordering::Relaxed),
                s.failures.load(Ordering::Relaxed),
                s.dead_lettered.load(Ordering::Relaxed),
                s.skipped.load(Ordering::Relaxed),
                s.emitted.load(Ordering::Relaxed),
                s.redelivered.load(Ordering::Relaxed),
            );
        }
        ExitCode::SUCCESS
    })
}

async fn transport(args: &TransportArgs) -> Result<Arc<dyn Transport>, shardkit::Error> {
    connect(&args.config()?).await
}

/// `shardkit events`.
pub(crate) fn events(cmd: EventsCommand) -> ExitCode {
    let EventsCommand::Publish(args) = cmd;
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(async {
        let Some(ty) = &args.ty else {
            let t = match transport(&args.transport).await {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            return publish_lines(t.as_ref(), &args.topic).await;
        };
        // The event is checked before anything is connected to.
        let event = (|| {
            let id = args.id.clone().unwrap_or_else(fresh_id);
            let mut e = Event::new(id, args.source.clone(), ty.clone())?.with_time_now();
            if let Some(s) = &args.subject {
                e = e.with_subject(s.clone())?;
            }
            if let Some(k) = &args.key {
                e = e.with_extension(shardkit::pipeline::event::PARTITION_KEY, k.clone())?;
            }
            if let Some(d) = &args.data {
                let v: serde_json::Value = serde_json::from_str(d).map_err(|err| {
                    shardkit::Error::invalid(format!("--data {d:?} is not JSON: {err}"))
                })?;
                e = e
                    .with_data_content_type("application/json")?
                    .with_data(Data::Json(v));
            } else if let Some(t) = &args.text {
                e = e
                    .with_data_content_type("text/plain")?
                    .with_data(Data::Text(t.clone()));
            }
            Ok::<_, shardkit::Error>(e)
        })();
        let event = match event {
            Ok(e) => e,
            Err(e) => return fail(e),
        };
        let id = event.id().to_string();
        let t = match transport(&args.transport).await {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        match t.publish(&args.topic, vec![event]).await {
            Ok(()) => {
                println!("{id}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    })
}

/// Publishes JSON lines from stdin in batches; a bad line is reported by
/// its number and skipped, and the exit status says some were.
async fn publish_lines(t: &dyn Transport, topic: &str) -> ExitCode {
    let stdin = std::io::stdin();
    let mut batch = Vec::new();
    let (mut sent, mut bad) = (0usize, 0usize);
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => return fail(format!("reading stdin: {e}")),
        };
        if line.trim().is_empty() {
            continue;
        }
        match Event::from_json(line.as_bytes()) {
            Ok(e) => batch.push(e),
            Err(e) => {
                bad += 1;
                eprintln!("shardkit: line {}: {e}", n + 1);
            }
        }
        if batch.len() >= 500 {
            sent += batch.len();
            if let Err(e) = t.publish(topic, std::mem::take(&mut batch)).await {
                return fail(e);
            }
        }
    }
    sent += batch.len();
    if let Err(e) = t.publish(topic, batch).await {
        return fail(e);
    }
    eprintln!(
        "shardkit: published {sent} events to {topic:?}{}",
        if bad > 0 {
            format!(", {bad} bad lines skipped")
        } else {
            String::new()
        }
    );
    if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// An event id: time and randomness, unique enough for events from the
/// command line.
fn fresh_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{now:x}-{:x}", std::process::id())
}

/// `shardkit dlq`.
pub(crate) fn dlq(cmd: DlqCommand) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(async {
        let args = match &cmd {
            DlqCommand::List(a)
            | DlqCommand::Show { dlq: a, .. }
            | DlqCommand::Redrive { dlq: a, .. } => a,
        };
        let t = match transport(&args.transport).await {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        match &cmd {
            DlqCommand::List(a) => {
                let dead = match redrive::list(t.as_ref(), &a.topic, usize::MAX).await {
                    Ok(d) => d,
                    Err(e) => return fail(e),
                };
                let mut out = std::io::stdout().lock();
                for d in dead {
                    let e = &d.event;
                    let attr = |n| e.extension(n).unwrap_or("-").replace(['\t', '\n'], " ");
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        d.partition,
                        e.id(),
                        e.key(),
                        attr(dead_letter_attr::REASON),
                        attr(dead_letter_attr::ATTEMPTS),
                        attr(dead_letter_attr::ERROR),
                    );
                }
                ExitCode::SUCCESS
            }
            DlqCommand::Show { dlq: a, id } => {
                let dead = match redrive::list(t.as_ref(), &a.topic, usize::MAX).await {
                    Ok(d) => d,
                    Err(e) => return fail(e),
                };
                match dead.into_iter().find(|d| d.event.id() == id) {
                    Some(d) => {
                        let v = d.event.to_json_value();
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                        ExitCode::SUCCESS
                    }
                    None => fail(format!(
                        "no event {id:?} in dead-letter topic {:?}",
                        a.topic
                    )),
                }
            }
            DlqCommand::Redrive { dlq: a, id } => {
                match redrive::redrive(t.as_ref(), &a.topic, id.as_deref()).await {
                    Ok(n) => {
                        println!("redrove {n} events from {:?}", a.topic);
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(e),
                }
            }
        }
    })
}
