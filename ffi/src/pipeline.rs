//! `shardkit_pipeline`: event pipeline stages (`shardkit::pipeline`) whose
//! handlers are C functions, on the in-process transport or Redis Streams.
//!
//! Threads: a handler runs on one of the runtime's blocking-pool threads,
//! never on the caller's, and may run concurrently for different keys (one
//! key's events one at a time, in order). After `shardkit_pipeline_free`
//! returns, no handler is running and none will run.

use crate::args::{opt_text, out_ptr, text, write};
use crate::callback::{CallbackGate, UserData};
use crate::handle::{borrow, into_handle, take};
use crate::shardkit_status;
use crate::string::string_out;
use shardkit::pipeline::config::{StageEntry, TransportConfig};
use shardkit::pipeline::runner::connect;
use shardkit::pipeline::{BoxError, Event, Permanent, Stage, Transport};
use shardkit::{runtime, Error};
use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::util::BoxCloneSyncService;

/// Running stages over one transport. Free with `shardkit_pipeline_free`.
pub struct shardkit_pipeline {
    _private: [u8; 0],
}

/// What a handler hands back besides its return code: events to emit to the
/// stage's reply topic (`shardkit_reply_emit`) and an error message
/// (`shardkit_reply_error`). Valid only during the handler's call.
pub struct shardkit_reply {
    _private: [u8; 0],
}

/// A handler: `event` is one event in CloudEvents structured JSON
/// (`event_len` bytes of UTF-8, also NUL-terminated), valid only during the
/// call. Return `SHARDKIT_HANDLED` (0) when done, `SHARDKIT_RETRY` (1) to
/// have it tried again (after a backoff, up to the stage's attempts), or
/// `SHARDKIT_REJECT` (2) to dead-letter it at once; any other value counts
/// as `SHARDKIT_RETRY`.
pub type shardkit_event_handler = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        event: *const c_char,
        event_len: usize,
        reply: *mut shardkit_reply,
    ) -> i32,
>;

/// The handler is done with the event.
pub const SHARDKIT_HANDLED: i32 = 0;
/// The event failed: try it again later.
pub const SHARDKIT_RETRY: i32 = 1;
/// The event can never succeed: dead-letter it now.
pub const SHARDKIT_REJECT: i32 = 2;

pub(crate) struct PipelineHandle {
    transport: Arc<dyn Transport>,
    stages: Mutex<Vec<(Stage, Arc<CallbackGate>)>>,
    consumer: String,
}

/// A handler's reply, filled during its call.
#[derive(Default)]
pub(crate) struct Reply {
    inner: Mutex<(Vec<Event>, Option<String>)>,
}

/// Opens a pipeline on `transport` (`(ptr, len)`: `memory`, at most 10,000
/// unacknowledged events per partition, or a `redis://` URL, connected now) with `partitions` partitions per topic
/// (1 to 4096). Blocking.
///
/// # Safety
/// `(transport, transport_len)` readable; `out` must point to a writable
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn shardkit_pipeline_open(
    transport: *const u8,
    transport_len: usize,
    partitions: u32,
    out: *mut *mut shardkit_pipeline,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let spec = unsafe { text(transport, transport_len, "transport")? };
        let cfg = TransportConfig::from_spec(spec, partitions)?;
        let t = runtime::block_on(connect(&cfg))??;
        let handle = PipelineHandle {
            transport: t,
            stages: Mutex::new(Vec::new()),
            consumer: format!("c-{}", std::process::id()),
        };
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, into_handle(handle)) };
        Ok(())
    })
}

/// Starts a stage: `settings` (`(ptr, len)`, YAML or JSON) are a pipeline
/// file's stage keys without `function` (`name`, `topic`, `filter`,
/// `reply_topic`, `max_attempts`, `concurrency`, ...; unknown keys are
/// errors naming the key), and `handler` runs each event with `userdata`.
///
/// # Safety
/// `pipeline` a live handle; `(settings, settings_len)` readable; `handler`
/// safe to call from other threads with `userdata` until
/// `shardkit_pipeline_free` returns.
#[no_mangle]
pub unsafe extern "C" fn shardkit_pipeline_stage(
    pipeline: *const shardkit_pipeline,
    settings: *const u8,
    settings_len: usize,
    handler: shardkit_event_handler,
    userdata: *mut c_void,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let p = unsafe { borrow(pipeline, "pipeline")? };
        // SAFETY: per the caller's contract.
        let settings = unsafe { text(settings, settings_len, "settings")? };
        let Some(f) = handler else {
            return Err(crate::args::null("handler"));
        };
        let entry = StageEntry::parse(settings)?;
        if entry.function.is_some() {
            return Err(Error::invalid(format!(
                "stage {:?}: a C stage's handler is its callback; remove function",
                entry.name
            )));
        }
        let gate = CallbackGate::new();
        let call = CHandler {
            f,
            userdata: UserData(userdata),
            gate: gate.clone(),
        };
        let svc = tower::service_fn(move |e: Event| {
            let call = call.clone();
            async move {
                tokio::task::spawn_blocking(move || call.run(&e))
                    .await
                    .map_err(|e| BoxError::from(format!("handler thread: {e}")))?
            }
        });
        let rt = runtime::shared()?;
        let _in = rt.enter();
        let stage = Stage::start(
            p.transport.clone(),
            entry.stage_config(&p.consumer),
            BoxCloneSyncService::new(svc),
        )?;
        p.stages.lock().expect("stages lock").push((stage, gate));
        Ok(())
    })
}

#[derive(Clone)]
struct CHandler {
    f: unsafe extern "C" fn(*mut c_void, *const c_char, usize, *mut shardkit_reply) -> i32,
    userdata: UserData,
    gate: Arc<CallbackGate>,
}

impl CHandler {
    fn run(&self, event: &Event) -> std::result::Result<Vec<Event>, BoxError> {
        let json = event.to_json();
        let mut text = json.clone();
        text.push(0);
        let reply = into_handle::<shardkit_reply>(Reply::default());
        let mut code = None;
        self.gate.run(|| {
            // SAFETY: per shardkit_pipeline_stage's contract; `text` and
            // `reply` live through the call.
            code =
                Some(unsafe { (self.f)(self.userdata.0, text.as_ptr().cast(), json.len(), reply) });
        });
        // SAFETY: made above, not freed by C (it only borrows it).
        let reply = unsafe { take(reply, "reply") }.unwrap_or_default();
        let (events, error) = std::mem::take(&mut *reply.inner.lock().expect("reply lock"));
        let why = || {
            error
                .clone()
                .unwrap_or_else(|| "the handler failed".to_string())
        };
        match code {
            None => Err("the pipeline is being freed".into()),
            Some(SHARDKIT_HANDLED) => Ok(events),
            Some(SHARDKIT_REJECT) => Err(Box::new(Permanent(why()))),
            Some(SHARDKIT_RETRY) => Err(why().into()),
            Some(other) => Err(format!("handler returned {other}: {}", why()).into()),
        }
    }
}

/// Adds an event (`(ptr, len)`, one event in structured JSON) to what the
/// handler emits to its stage's reply topic. INVALID_ARGUMENT names what is
/// wrong with a bad event.
///
/// # Safety
/// `reply` the pointer the handler was given, during its call;
/// `(event, event_len)` readable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_reply_emit(
    reply: *mut shardkit_reply,
    event: *const u8,
    event_len: usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let r = unsafe { borrow(reply, "reply")? };
        // SAFETY: per the caller's contract.
        let json = unsafe { text(event, event_len, "event")? };
        let e = Event::from_json(json.as_bytes())?;
        r.inner.lock().expect("reply lock").0.push(e);
        Ok(())
    })
}

/// Sets the error message a failed (RETRY) or rejected (REJECT) event is
/// recorded with in its attempt history and dead letter.
///
/// # Safety
/// `reply` the pointer the handler was given, during its call;
/// `(message, message_len)` readable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_reply_error(
    reply: *mut shardkit_reply,
    message: *const u8,
    message_len: usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let r = unsafe { borrow(reply, "reply")? };
        // SAFETY: per the caller's contract.
        let m = unsafe { text(message, message_len, "message")? };
        r.inner.lock().expect("reply lock").1 = Some(m.to_string());
        Ok(())
    })
}

/// Publishes to `topic` the events in `events` (`(ptr, len)`: one event in
/// structured JSON, or a JSON array of them), in order. Blocking; on a bad
/// event nothing is published and the error names it.
///
/// # Safety
/// `pipeline` a live handle; both `(ptr, len)` readable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_pipeline_publish(
    pipeline: *const shardkit_pipeline,
    topic: *const u8,
    topic_len: usize,
    events: *const u8,
    events_len: usize,
) -> shardkit_status {
    ffi_boundary!({
        // SAFETY: per the caller's contract.
        let p = unsafe { borrow(pipeline, "pipeline")? };
        // SAFETY: per the caller's contract.
        let topic = unsafe { text(topic, topic_len, "topic")? };
        // SAFETY: per the caller's contract.
        let json = unsafe { text(events, events_len, "events")? };
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::invalid(format!("events are not JSON: {e}")))?;
        let list = match v {
            serde_json::Value::Array(a) => a,
            one => vec![one],
        };
        let events = list
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                Event::from_json_value(v)
                    .map_err(|e| Error::new(e.kind(), format!("event {i}: {}", e.message())))
            })
            .collect::<shardkit::Result<Vec<Event>>>()?;
        let t = p.transport.clone();
        let topic = topic.to_string();
        runtime::block_on(async move { t.publish(&topic, events).await })?
    })
}

/// The events of `topic` without consuming them (a reply or dead-letter
/// topic, say), at most `max` per partition, as a JSON array in `*out`
/// (free with `shardkit_string_free`). Blocking.
///
/// # Safety
/// `pipeline` a live handle; `(topic, topic_len)` readable; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_pipeline_peek(
    pipeline: *const shardkit_pipeline,
    topic: *const u8,
    topic_len: usize,
    max: usize,
    out: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let p = unsafe { borrow(pipeline, "pipeline")? };
        // SAFETY: per the caller's contract.
        let topic = unsafe { text(topic, topic_len, "topic")? }.to_string();
        let t = p.transport.clone();
        let got = runtime::block_on(async move { t.peek(&topic, max).await })??;
        let arr: Vec<serde_json::Value> = got.iter().map(|d| d.event.to_json_value()).collect();
        let s = string_out(serde_json::Value::Array(arr).to_string(), "events")?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, s) };
        Ok(())
    })
}

/// Each stage's counters as JSON (`{"name": {"handled": n, ...}}`) in
/// `*out` (free with `shardkit_string_free`). `stage` (`(ptr, len)`, may be
/// empty for all) narrows it to one.
///
/// # Safety
/// `pipeline` a live handle; `(stage, stage_len)` readable or empty; `out`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shardkit_pipeline_stats(
    pipeline: *const shardkit_pipeline,
    stage: *const u8,
    stage_len: usize,
    out: *mut *mut c_char,
) -> shardkit_status {
    ffi_boundary!({
        use std::sync::atomic::Ordering::Relaxed;
        let out = out_ptr(out, "out")?;
        // SAFETY: per the caller's contract.
        let p = unsafe { borrow(pipeline, "pipeline")? };
        // SAFETY: per the caller's contract.
        let only = unsafe { opt_text(stage, stage_len, "stage")? };
        let mut all = serde_json::Map::new();
        for (s, _) in p.stages.lock().expect("stages lock").iter() {
            let name = s.name().to_string();
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let st = s.stats();
            all.insert(
                name,
                serde_json::json!({
                    "handled": st.handled.load(Relaxed),
                    "failures": st.failures.load(Relaxed),
                    "dead_lettered": st.dead_lettered.load(Relaxed),
                    "skipped": st.skipped.load(Relaxed),
                    "emitted": st.emitted.load(Relaxed),
                    "redelivered": st.redelivered.load(Relaxed),
                    "in_flight": st.in_flight.load(Relaxed),
                }),
            );
        }
        let s = string_out(serde_json::Value::Object(all).to_string(), "stats")?;
        // SAFETY: checked by out_ptr above.
        unsafe { write(out, s) };
        Ok(())
    })
}

/// Stops every stage, letting events in progress finish within `drain_ms`
/// (the rest is delivered again later), then frees the pipeline; NULL is a
/// no-op. When it returns no handler runs and none will. Blocking.
///
/// # Safety
/// `pipeline` NULL or a live handle, not used again afterwards. Not from a
/// handler.
#[no_mangle]
pub unsafe extern "C" fn shardkit_pipeline_free(pipeline: *mut shardkit_pipeline, drain_ms: u64) {
    ffi_boundary!(or () => {
        // SAFETY: per the caller's contract.
        let Some(p) = (unsafe { take(pipeline, "pipeline") }) else { return };
        let stages = std::mem::take(&mut *p.stages.lock().expect("stages lock"));
        let drain = Duration::from_millis(drain_ms);
        let mut gates = Vec::new();
        let mut stopping = Vec::new();
        for (s, g) in stages {
            stopping.push(s);
            gates.push(g);
        }
        let stopped = runtime::block_on(async move {
            for s in stopping {
                s.stop(drain).await;
            }
        });
        if stopped.is_err() {
            // Called from a runtime thread (a handler): nothing can be
            // waited for; the gates still shut the callbacks out.
        }
        for g in &gates {
            g.close();
        }
    })
}
