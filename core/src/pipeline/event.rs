//! CloudEvents 1.0: the one envelope every pipeline stage, handler and
//! transport speaks, so that events from (and to) other CloudEvents systems
//! pass through without an adapter.
//!
//! Two wire forms are supported, the two every CloudEvents SDK speaks:
//!
//! - structured content mode, JSON format (`application/cloudevents+json`):
//!   [`Event::to_json`] and [`Event::from_json`];
//! - HTTP binary content mode: attributes as `ce-` headers, the data as the
//!   body: [`Event::to_http_binary`] and [`Event::from_http_binary`].
//!
//! Every constructor and setter validates, so an [`Event`] in hand is always
//! one the spec allows: a stage never has to re-check what it was given, and
//! a bad event is refused where it enters, with a message naming the
//! attribute and the value.
//!
//! # Which data comes back as which variant
//!
//! Neither wire form says which [`Data`] variant was sent; the receiver
//! infers it from `datacontenttype`. The rules, the same in both modes as far
//! as each allows:
//!
//! - a JSON content type (`application/json`, `text/json`, `*/*+json`) or
//!   none: [`Data::Json`];
//! - `text/*`: [`Data::Text`];
//! - anything else: [`Data::Binary`] (structured mode: a JSON string under
//!   `data` is [`Data::Text`], `data_base64` is always [`Data::Binary`]).
//!
//! Binary mode sends `content-type` only when the event has a
//! `datacontenttype`, so that an event without one comes back without one.
//! A receiver then has no content type to go by: a non-empty body that
//! parses as JSON is [`Data::Json`], any other body [`Data::Binary`]. An
//! empty body is always [`Data::None`] (binary mode cannot tell "no data"
//! from "empty data").
//!
//! So an event round-trips through either mode exactly when its data agrees
//! with its content type: JSON with a JSON content type or none, text with
//! `text/*`, bytes with another type (e.g. `application/octet-stream`), and
//! in binary mode, non-empty.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::mem::ManuallyDrop;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use compact_str::CompactString as Str;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// The only CloudEvents version this module reads and writes; events of any
/// other version are refused rather than half-understood.
pub const SPEC_VERSION: &str = "1.0";

/// The CloudEvents partitioning extension's attribute: the key that keeps
/// related events on one partition (and in order), named by the spec so that
/// brokers and other SDKs agree on it.
pub const PARTITION_KEY: &str = "partitionkey";

/// The longest extension name: the spec asks for at most 20 characters so
/// that names fit every protocol's header or property limits.
const MAX_EXTENSION_NAME: usize = 20;

/// The context attributes the spec defines: not usable as extension names.
const CONTEXT_ATTRIBUTES: [&str; 8] = [
    "id",
    "source",
    "type",
    "specversion",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
];

/// The prefix of attribute headers in HTTP binary mode.
const HEADER_PREFIX: &str = "ce-";

/// The longest stretch of a bad value quoted in an error message: enough to
/// recognise it, short enough that a megabyte of garbage does not become a
/// megabyte of log line.
const SHOWN_CHARS: usize = 64;

/// A CloudEvent: the required attributes (id, source, type), the optional
/// ones, extensions and the data. Always valid: every way of making or
/// changing one checks what it is given.
#[derive(Clone, PartialEq)]
pub struct Event(Arc<Attrs>);

/// An event's attributes, shared by its clones until one of them is changed
/// (copy on write), so that handing an event to a handler, a transport's
/// pending list and a reply costs a reference count, not a copy.
///
/// The attributes proper ([`Parts`]) sit behind a [`Summary`] of them,
/// which `repr(C)` places right after the `Arc`'s counts, in the event's
/// first cache line. A stage draining a backlog touches little else of an
/// event: its count (to share and free it), whether it has an extension
/// (absent ones are answered from the summary), and whether freeing it
/// frees anything inside (not when every part is inline). So an event that
/// went cold in a queue costs one cache miss to hand out and free, not
/// three.
#[repr(C)]
struct Attrs {
    /// Kept equal to `Summary::of(&parts)` by every change (see `edit`).
    summary: Summary,
    /// Dropped by `Attrs`'s `Drop`, only when the summary says a part owns
    /// memory: the drop of a plain event then never reads past the
    /// summary.
    parts: ManuallyDrop<Parts>,
}

impl Attrs {
    fn new(parts: Parts) -> Attrs {
        Attrs {
            summary: Summary::of(&parts),
            parts: ManuallyDrop::new(parts),
        }
    }

    /// Changes the parts and brings the summary up to date. The summary
    /// says "owns memory" while `change` runs, so that a panic in it leaves
    /// nothing unfreed.
    fn edit<R>(&mut self, change: impl FnOnce(&mut Parts) -> R) -> R {
        self.summary = Summary::OWNER;
        let out = change(&mut self.parts);
        self.summary = Summary::of(&self.parts);
        out
    }
}

impl std::ops::Deref for Attrs {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl Clone for Attrs {
    fn clone(&self) -> Attrs {
        Attrs::new(Parts::clone(&self.parts))
    }
}

impl PartialEq for Attrs {
    fn eq(&self, other: &Attrs) -> bool {
        *self.parts == *other.parts
    }
}

impl Drop for Attrs {
    fn drop(&mut self) {
        if self.summary.owns_memory {
            // SAFETY: `parts` is dropped here once, in `Attrs`'s own drop,
            // and never used after it.
            unsafe { ManuallyDrop::drop(&mut self.parts) }
        } else {
            // Every part is inline: nothing to free, and nothing to read.
            debug_assert!(
                !Summary::of(&self.parts).owns_memory,
                "an event's summary says plain, but a part owns memory"
            );
        }
    }
}

/// What an event's attributes hold, in 8 bytes beside its reference count.
#[derive(Clone, Copy)]
struct Summary {
    /// Whether any part owns heap memory (a long string, optional
    /// attributes, a second extension, data): whether dropping the parts
    /// does anything.
    owns_memory: bool,
    /// A bit per extension name, by [`name_bit`]: an extension whose bit is
    /// clear is absent.
    names: u32,
}

impl Summary {
    /// The summary of parts being changed: everything may own memory, and
    /// any name may be present.
    const OWNER: Summary = Summary {
        owns_memory: true,
        names: u32::MAX,
    };

    fn of(p: &Parts) -> Summary {
        let heap = |s: &Str| s.is_heap_allocated();
        let owns_memory = heap(&p.id)
            || heap(&p.source)
            || heap(&p.ty)
            || p.rare.is_some()
            || p.extensions.0.spilled()
            || p.extensions.0.iter().any(|(k, v)| heap(k) || heap(v))
            || !matches!(p.data, Data::None);
        let names = p
            .extensions
            .0
            .iter()
            .fold(0, |bits, (k, _)| bits | name_bit(k));
        Summary { owns_memory, names }
    }

    /// Whether an extension `name` may be present.
    fn may_have(&self, name: &str) -> bool {
        self.names & name_bit(name) != 0
    }
}

/// An extension name's bit in [`Summary::names`]: from its length and last
/// byte, which tell apart the names a pipeline uses (`partitionkey`,
/// `redrivefor`, `traceparent`, ...) without hashing them.
fn name_bit(name: &str) -> u32 {
    let last = name.as_bytes().last().copied().unwrap_or(0) as usize;
    1 << ((name.len() * 7 + last) % 32)
}

/// The attributes proper.
///
/// Strings are compact (inline up to 24 bytes) and extensions a sorted list,
/// not a tree: a typical event is one allocation, which is what making, and
/// above all freeing, millions of them a second costs.
#[derive(Debug, Clone, PartialEq)]
struct Parts {
    id: Str,
    source: Str,
    ty: Str,
    /// The optional attributes, boxed: most events carry none of them, and
    /// a stage draining a backlog reads every byte of every event (to hand
    /// it out, then to free it), so the smaller the event the fewer cache
    /// lines it waits for.
    rare: Option<Box<Rare>>,
    extensions: Extensions,
    data: Data,
}

/// The optional context attributes.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rare {
    subject: Option<Str>,
    /// Kept as given (once parsed), so that an event relays byte for byte.
    time: Option<Str>,
    data_content_type: Option<Str>,
    data_schema: Option<Str>,
}

/// What an event without optional attributes reads them from.
static NO_RARE: Rare = Rare {
    subject: None,
    time: None,
    data_content_type: None,
    data_schema: None,
};

impl Parts {
    fn rare(&self) -> &Rare {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }
}

/// Extension attributes, sorted by name so that serialization and
/// iteration are deterministic. A list: events carry a handful at most, so
/// a search of it beats a tree's pointer chasing. The first is inline (a
/// partition key, the common case): a second inline one would make every
/// event a cache line longer.
#[derive(Clone, Default, PartialEq)]
struct Extensions(smallvec::SmallVec<[(Str, Str); 1]>);

impl Extensions {
    fn get(&self, name: &str) -> Option<&str> {
        // Linear: shorter than a binary search's branches for a handful.
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn insert(&mut self, name: &str, value: Str) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (Str::from(name), value)),
        }
    }

    fn remove(&mut self, name: &str) -> Option<Str> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(i).1)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// An event's payload, in the shape it travels in: the variant decides how
/// the data is written (see the module docs for how a receiver infers it).
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// No data: structured mode omits `data`, binary mode sends an empty
    /// body.
    None,
    /// JSON data (structured mode `data` holding any JSON value;
    /// datacontenttype application/json or absent), kept as a value so that
    /// JSON events nest in the envelope rather than as an escaped string.
    Json(Value),
    /// Text data (`data` as a JSON string with a non-JSON datacontenttype
    /// such as text/plain): XML, CSV and the like, carried as a string in
    /// structured mode so that it stays readable.
    Text(String),
    /// Binary data (structured mode `data_base64`): anything that is neither
    /// JSON nor text.
    Binary(Bytes),
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Printed as the attributes it holds, as before sharing.
        let a = &*self.0;
        f.debug_struct("Event")
            .field("id", &a.id)
            .field("source", &a.source)
            .field("ty", &a.ty)
            .field("subject", &a.rare().subject)
            .field("time", &a.rare().time)
            .field("data_content_type", &a.rare().data_content_type)
            .field("data_schema", &a.rare().data_schema)
            .field("extensions", &a.extensions)
            .field("data", &a.data)
            .finish()
    }
}

impl Event {
    /// New event with the required attributes; validates them (non-empty id,
    /// source, type, none with control characters), so that no event without
    /// an identity exists.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
    ) -> Result<Event> {
        let (id, source, ty) = (id.into(), source.into(), ty.into());
        check_required("id", &id)?;
        check_required("source", &source)?;
        check_required("type", &ty)?;
        Ok(Event(Arc::new(Attrs::new(Parts {
            id: Str::from(id),
            source: Str::from(source),
            ty: Str::from(ty),
            rare: None,
            extensions: Extensions::default(),
            data: Data::None,
        }))))
    }

    /// Reads the event's first cache line, its count and summary (ordinary
    /// loads, unlike a clone's locked increment), so that a transport about
    /// to hand out many cold events has the CPU fetch them in parallel
    /// first, rather than one cache miss at a time as each is cloned. For a
    /// stage that only passes the event on, the line is all it reads (see
    /// [`Attrs`]).
    pub(crate) fn warm(&self) {
        let s = self.0.summary;
        std::hint::black_box((Arc::strong_count(&self.0), s.owns_memory, s.names));
    }

    /// The `id` attribute: with `source`, what identifies the event (and
    /// what a consumer deduplicates on).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The `source` attribute: the context (a URI-reference) the event
    /// happened in.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// The `type` attribute: what happened, and so what routes the event to
    /// its handler (`type` is a Rust keyword, hence the name).
    pub fn ty(&self) -> &str {
        &self.0.ty
    }

    /// The `specversion` attribute: always [`SPEC_VERSION`], as no other is
    /// accepted.
    pub fn spec_version(&self) -> &str {
        SPEC_VERSION
    }

    /// The `subject` attribute: what within the source the event is about;
    /// the key's fallback when there is no partition key.
    pub fn subject(&self) -> Option<&str> {
        self.0.rare().subject.as_deref()
    }

    /// The `time` attribute, an RFC 3339 timestamp exactly as it was set or
    /// received.
    pub fn time(&self) -> Option<&str> {
        self.0.rare().time.as_deref()
    }

    /// The `datacontenttype` attribute: the media type of the data, which
    /// decides how a receiver reads it.
    pub fn data_content_type(&self) -> Option<&str> {
        self.0.rare().data_content_type.as_deref()
    }

    /// The `dataschema` attribute: an absolute URI of the schema the data
    /// follows.
    pub fn data_schema(&self) -> Option<&str> {
        self.0.rare().data_schema.as_deref()
    }

    /// The payload.
    pub fn data(&self) -> &Data {
        &self.0.data
    }

    /// Sets `subject` (non-empty, no control characters), builder-style so
    /// that an event is made in one expression.
    pub fn with_subject(mut self, s: impl Into<String>) -> Result<Event> {
        let s = s.into();
        check_required("subject", &s)?;
        Arc::make_mut(&mut self.0).edit(|p| p.rare_mut().subject = Some(Str::from(s)));
        Ok(self)
    }

    /// Sets `time`, which must parse as RFC 3339 (any offset); kept as given
    /// once validated, so a relayed event is not rewritten.
    pub fn with_time(mut self, rfc3339: impl Into<String>) -> Result<Event> {
        let t = rfc3339.into();
        check_time(&t)?;
        Arc::make_mut(&mut self.0).edit(|p| p.rare_mut().time = Some(Str::from(t)));
        Ok(self)
    }

    /// Sets `time` to the current UTC time in RFC 3339: what a producer
    /// stamps on an event it creates.
    pub fn with_time_now(mut self) -> Event {
        // Formatting only fails for years outside 0..=9999, which the clock
        // does not reach.
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .expect("the current time formats as RFC 3339");
        Arc::make_mut(&mut self.0).edit(|p| p.rare_mut().time = Some(Str::from(now)));
        self
    }

    /// Sets `datacontenttype`, which must be a media type (`type/subtype`,
    /// optional parameters) in printable ASCII, since binary mode sends it
    /// as the `content-type` header as is.
    pub fn with_data_content_type(mut self, ct: impl Into<String>) -> Result<Event> {
        let ct = ct.into();
        check_content_type(&ct)?;
        Arc::make_mut(&mut self.0).edit(|p| p.rare_mut().data_content_type = Some(Str::from(ct)));
        Ok(self)
    }

    /// Sets `dataschema`, which must be an absolute URI (a scheme, then no
    /// whitespace): a relative one means nothing to a receiver elsewhere.
    pub fn with_data_schema(mut self, uri: impl Into<String>) -> Result<Event> {
        let uri = uri.into();
        check_absolute_uri("dataschema", &uri)?;
        Arc::make_mut(&mut self.0).edit(|p| p.rare_mut().data_schema = Some(Str::from(uri)));
        Ok(self)
    }

    /// Sets the payload. Not checked against `datacontenttype`: any pairing
    /// is a valid event, though only matching ones round-trip (see the
    /// module docs).
    pub fn with_data(mut self, data: Data) -> Event {
        Arc::make_mut(&mut self.0).edit(|p| p.data = data);
        self
    }

    /// Sets an extension attribute. The name is 1..=20 characters of
    /// `[a-z0-9]` (what every protocol binding can carry), not a context
    /// attribute's name nor `data`/`data_base64`; the value is a string
    /// without control characters (extensions of other types are kept as
    /// their canonical string form).
    pub fn with_extension(mut self, name: &str, value: impl Into<String>) -> Result<Event> {
        check_extension_name(name)?;
        let value = value.into();
        check_string(name, &value)?;
        Arc::make_mut(&mut self.0).edit(|p| p.extensions.insert(name, Str::from(value)));
        Ok(self)
    }

    /// An extension's value by name, if set.
    pub fn extension(&self, name: &str) -> Option<&str> {
        // Most lookups are of extensions an event lacks (a redrive mark, a
        // trace parent): answered from the first cache line.
        if !self.0.summary.may_have(name) {
            return None;
        }
        self.0.extensions.get(name)
    }

    /// Every extension as (name, value), sorted by name, so that output made
    /// from them is deterministic.
    pub fn extensions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.extensions.iter()
    }

    /// Removes an extension, returning its value: for stages that strip
    /// routing-only attributes before passing an event on.
    pub fn remove_extension(&mut self, name: &str) -> Option<String> {
        // Not there: the event stays shared.
        self.extension(name)?;
        Arc::make_mut(&mut self.0)
            .edit(|p| p.extensions.remove(name))
            .map(String::from)
    }

    /// The partition key: the `partitionkey` extension if set.
    pub fn partition_key(&self) -> Option<&str> {
        self.extension(PARTITION_KEY)
    }

    /// What per-key ordering and partitioning use: partitionkey, else
    /// subject, else id. Never empty, so every event has a partition (events
    /// without a key spread by id).
    pub fn key(&self) -> &str {
        self.partition_key()
            .or(self.0.rare().subject.as_deref())
            .unwrap_or(self.0.id.as_str())
    }

    /// Any attribute by its CloudEvents name (id, source, type, specversion,
    /// subject, time, datacontenttype, dataschema, or an extension), so that
    /// filters can name attributes as the spec does.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        match name {
            "id" => Some(self.0.id.as_str()),
            "source" => Some(self.0.source.as_str()),
            "type" => Some(self.0.ty.as_str()),
            "specversion" => Some(SPEC_VERSION),
            "subject" => self.0.rare().subject.as_deref(),
            "time" => self.0.rare().time.as_deref(),
            "datacontenttype" => self.0.rare().data_content_type.as_deref(),
            "dataschema" => self.0.rare().data_schema.as_deref(),
            _ => self.extension(name),
        }
    }

    /// The data as bytes, as binary mode sends it: JSON serialized, text as
    /// UTF-8, binary as is; empty for None.
    pub fn data_bytes(&self) -> Bytes {
        match &self.0.data {
            Data::None => Bytes::new(),
            Data::Json(v) => Bytes::from(v.to_string()),
            Data::Text(s) => Bytes::from(s.clone()),
            Data::Binary(b) => b.clone(),
        }
    }

    /// Structured content mode (`application/cloudevents+json`): the event
    /// as one JSON object, for transports without headers of their own.
    pub fn to_json(&self) -> Vec<u8> {
        self.to_json_value().to_string().into_bytes()
    }

    /// Structured content mode as a JSON value, for embedding an event in a
    /// larger document (a batch, a log record). Extension values are written
    /// as strings, their canonical form.
    pub fn to_json_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("specversion".into(), SPEC_VERSION.into());
        m.insert("id".into(), self.0.id.as_str().into());
        m.insert("source".into(), self.0.source.as_str().into());
        m.insert("type".into(), self.0.ty.as_str().into());
        let optional = [
            ("subject", &self.0.rare().subject),
            ("time", &self.0.rare().time),
            ("datacontenttype", &self.0.rare().data_content_type),
            ("dataschema", &self.0.rare().data_schema),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                m.insert(name.into(), v.as_str().into());
            }
        }
        for (name, value) in self.0.extensions.iter() {
            m.insert(name.into(), value.into());
        }
        match &self.0.data {
            Data::None => {}
            Data::Json(v) => {
                m.insert("data".into(), v.clone());
            }
            Data::Text(s) => {
                m.insert("data".into(), s.clone().into());
            }
            Data::Binary(b) => {
                m.insert("data_base64".into(), BASE64.encode(b).into());
            }
        }
        Value::Object(m)
    }

    /// Parses structured content mode from its bytes; refuses anything that
    /// is not a valid CloudEvents 1.0 JSON event, with a message naming the
    /// attribute and the value.
    pub fn from_json(bytes: &[u8]) -> Result<Event> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(format!("structured event is not valid JSON: {e}")))?;
        Event::from_json_value(v)
    }

    /// Parses structured content mode from a JSON value (an event taken out
    /// of a larger document). Members other than the context attributes,
    /// `data` and `data_base64` are extensions; their values may be strings,
    /// numbers or booleans, kept in string form. A `null` context attribute
    /// counts as absent, as the JSON format requires.
    pub fn from_json_value(v: Value) -> Result<Event> {
        let mut m = match v {
            Value::Object(m) => m,
            other => {
                return Err(Error::invalid(format!(
                    "structured event must be a JSON object, got {} {}",
                    json_kind(&other),
                    show_json(&other)
                )))
            }
        };
        let spec_version = take_required(&mut m, "specversion")?;
        check_spec_version(&spec_version)?;
        let id = take_required(&mut m, "id")?;
        let source = take_required(&mut m, "source")?;
        let ty = take_required(&mut m, "type")?;
        let mut e = Event::new(id, source, ty)?;
        if let Some(s) = take_optional(&mut m, "subject")? {
            e = e.with_subject(s)?;
        }
        if let Some(t) = take_optional(&mut m, "time")? {
            e = e.with_time(t)?;
        }
        if let Some(ct) = take_optional(&mut m, "datacontenttype")? {
            e = e.with_data_content_type(ct)?;
        }
        if let Some(uri) = take_optional(&mut m, "dataschema")? {
            e = e.with_data_schema(uri)?;
        }
        let data = m.remove("data");
        let data_base64 = m.remove("data_base64").filter(|v| !v.is_null());
        let data = match (data, data_base64) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "event has both \"data\" and \"data_base64\" (at most one is allowed)",
                ))
            }
            (None, Some(Value::String(s))) => {
                let bytes = BASE64.decode(s.as_bytes()).map_err(|err| {
                    Error::invalid(format!(
                        "event member \"data_base64\": {} is not base64 \
                         (standard alphabet, padded): {err}",
                        show(&s)
                    ))
                })?;
                Data::Binary(Bytes::from(bytes))
            }
            (None, Some(other)) => {
                return Err(Error::invalid(format!(
                    "event member \"data_base64\": {} is not a string (a JSON {})",
                    show_json(&other),
                    json_kind(&other)
                )))
            }
            (Some(d), None) => match (e.0.rare().data_content_type.as_deref(), d) {
                (Some(ct), Value::String(s)) if !is_json_content_type(ct) => Data::Text(s),
                (_, d) => Data::Json(d),
            },
            (None, None) => Data::None,
        };
        Arc::make_mut(&mut e.0).edit(|p| p.data = data);
        for (name, value) in m {
            check_extension_name(&name)?;
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(Error::invalid(format!(
                        "event extension \"{name}\": {} is a JSON {}, not a string, \
                         number or boolean",
                        show_json(&other),
                        json_kind(&other)
                    )))
                }
            };
            check_string(&name, &value)?;
            Arc::make_mut(&mut e.0).edit(|p| p.extensions.insert(&name, Str::from(value)));
        }
        Ok(e)
    }

    /// HTTP binary content mode: `ce-` headers (lowercase names, values
    /// percent-encoded per the CloudEvents HTTP binding: space, double
    /// quote, percent and any byte outside printable ASCII) plus
    /// `content-type` from datacontenttype, only when the event has one (so
    /// that its absence round-trips); the body is [`data_bytes`]. Binary
    /// mode keeps the data out of an envelope, so brokers and proxies see
    /// the payload as is.
    ///
    /// [`data_bytes`]: Event::data_bytes
    pub fn to_http_binary(&self) -> (Vec<(String, String)>, Bytes) {
        let mut headers = Vec::with_capacity(8 + self.0.extensions.len());
        let mut push = |name: &str, value: &str| {
            headers.push((format!("{HEADER_PREFIX}{name}"), percent_encode(value)));
        };
        push("specversion", SPEC_VERSION);
        push("id", &self.0.id);
        push("source", &self.0.source);
        push("type", &self.0.ty);
        let optional = [
            ("subject", &self.0.rare().subject),
            ("time", &self.0.rare().time),
            ("dataschema", &self.0.rare().data_schema),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                push(name, v);
            }
        }
        for (name, value) in self.0.extensions.iter() {
            push(name, value);
        }
        if let Some(ct) = &self.0.rare().data_content_type {
            headers.push(("content-type".to_string(), ct.to_string()));
        }
        (headers, self.data_bytes())
    }

    /// Parses binary mode from header (name, value) pairs (names matched
    /// case-insensitively; non-ce headers other than content-type ignored)
    /// and the body. The body becomes [`Data::Json`] when content-type is
    /// JSON (`application/json`, `text/json`, `*/*+json`) and parses as JSON
    /// (else an error naming the content type), [`Data::Text`] when
    /// content-type starts with `text/` (must be UTF-8), else
    /// [`Data::Binary`]. Without a content-type, a body that parses as JSON
    /// is [`Data::Json`] (what [`to_http_binary`] sends for JSON data without
    /// a datacontenttype) and any other body [`Data::Binary`]. An empty body
    /// is [`Data::None`] whatever the content type. Header values are
    /// percent-decoded strictly: a bad escape or a result that is not UTF-8
    /// is an error naming the header, as is a header given twice.
    ///
    /// [`to_http_binary`]: Event::to_http_binary
    pub fn from_http_binary<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        body: Bytes,
    ) -> Result<Event> {
        let mut attrs: BTreeMap<String, String> = BTreeMap::new();
        let mut content_type: Option<String> = None;
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if lower == "content-type" {
                if content_type.is_some() {
                    return Err(duplicate_header(name));
                }
                let v = std::str::from_utf8(trim_ows(value)).map_err(|_| {
                    Error::invalid(format!(
                        "header {name:?}: {} is not UTF-8",
                        show_bytes(value)
                    ))
                })?;
                content_type = Some(v.to_string());
                continue;
            }
            let Some(attr) = lower.strip_prefix(HEADER_PREFIX) else {
                continue;
            };
            let decoded = percent_decode(name, trim_ows(value))?;
            if attrs.insert(attr.to_string(), decoded).is_some() {
                return Err(duplicate_header(name));
            }
        }
        let mut required = |attr: &str| {
            attrs.remove(attr).ok_or_else(|| {
                Error::invalid(format!(
                    "event attribute {attr:?} is missing (header \"{HEADER_PREFIX}{attr}\")"
                ))
            })
        };
        let spec_version = required("specversion")?;
        check_spec_version(&spec_version)?;
        let id = required("id")?;
        let source = required("source")?;
        let ty = required("type")?;
        let mut e = Event::new(id, source, ty)?;
        if let Some(s) = attrs.remove("subject") {
            e = e.with_subject(s)?;
        }
        if let Some(t) = attrs.remove("time") {
            e = e.with_time(t)?;
        }
        if let Some(uri) = attrs.remove("dataschema") {
            e = e.with_data_schema(uri)?;
        }
        if let Some(v) = attrs.remove("datacontenttype") {
            return Err(Error::invalid(format!(
                "header \"{HEADER_PREFIX}datacontenttype\" ({}): binary mode carries \
                 datacontenttype in content-type",
                show(&v)
            )));
        }
        for (name, value) in attrs {
            e = e.with_extension(&name, value)?;
        }
        if let Some(ct) = content_type {
            e = e.with_data_content_type(ct)?;
        }
        let data = body_data(e.0.rare().data_content_type.as_deref(), body)?;
        Arc::make_mut(&mut e.0).edit(|p| p.data = data);
        Ok(e)
    }
}

/// The data a binary-mode body holds, read by its content type (see
/// [`Event::from_http_binary`]).
fn body_data(content_type: Option<&str>, body: Bytes) -> Result<Data> {
    if body.is_empty() {
        return Ok(Data::None);
    }
    match content_type {
        Some(ct) if is_json_content_type(ct) => {
            serde_json::from_slice(&body).map(Data::Json).map_err(|e| {
                Error::invalid(format!(
                    "body is not valid JSON for content-type {}: {e}",
                    show(ct)
                ))
            })
        }
        Some(ct) if is_text_content_type(ct) => match String::from_utf8(body.to_vec()) {
            Ok(s) => Ok(Data::Text(s)),
            Err(e) => Err(Error::invalid(format!(
                "body is not UTF-8 for content-type {}: {e}",
                show(ct)
            ))),
        },
        Some(_) => Ok(Data::Binary(body)),
        None => Ok(match serde_json::from_slice(&body) {
            Ok(v) => Data::Json(v),
            Err(_) => Data::Binary(body),
        }),
    }
}

/// The media type without parameters, lowercased: what content types are
/// compared by.
fn media_type_essence(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether data of this content type is JSON, by the JSON format's rule
/// (`application/json`, `text/json`, or a `+json` suffix).
fn is_json_content_type(ct: &str) -> bool {
    let essence = media_type_essence(ct);
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Whether data of this content type is text (and so UTF-8 here).
fn is_text_content_type(ct: &str) -> bool {
    media_type_essence(ct).starts_with("text/")
}

/// A value quoted for an error message, truncated so that a huge value does
/// not make a huge message.
fn show(v: &str) -> String {
    if v.chars().count() <= SHOWN_CHARS {
        format!("{v:?}")
    } else {
        let head: String = v.chars().take(SHOWN_CHARS).collect();
        format!("{head:?}...")
    }
}

/// Raw bytes quoted for an error message (lossily, as they are not text).
fn show_bytes(v: &[u8]) -> String {
    show(&String::from_utf8_lossy(v))
}

/// A JSON value for an error message: compact JSON, truncated.
fn show_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= SHOWN_CHARS {
        s
    } else {
        let head: String = s.chars().take(SHOWN_CHARS).collect();
        format!("{head}...")
    }
}

/// The JSON type of a value, for error messages.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A required attribute taken out of a structured event: present, a string.
fn take_required(m: &mut Map<String, Value>, name: &str) -> Result<String> {
    match take_optional(m, name)? {
        Some(s) => Ok(s),
        None => Err(Error::invalid(format!(
            "event attribute {name:?} is missing"
        ))),
    }
}

/// An optional attribute taken out of a structured event: absent or null
/// (the JSON format's "unset"), or a string.
fn take_optional(m: &mut Map<String, Value>, name: &str) -> Result<Option<String>> {
    match m.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::invalid(format!(
            "event attribute {name:?}: {} is not a string (a JSON {})",
            show_json(&other),
            json_kind(&other)
        ))),
    }
}

fn check_spec_version(v: &str) -> Result<()> {
    if v == SPEC_VERSION {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "event attribute \"specversion\": {} is not supported (only {SPEC_VERSION:?})",
            show(v)
        )))
    }
}

/// A string the spec's String type allows: no control characters (U+0000 to
/// U+001F, U+007F to U+009F) and no noncharacters. Surrogates cannot occur in
/// a Rust string.
fn check_string(attr: &str, v: &str) -> Result<()> {
    let bad = v.chars().find(|&c| {
        let u = c as u32;
        c.is_control() || (0xFDD0..=0xFDEF).contains(&u) || u & 0xFFFE == 0xFFFE
    });
    match bad {
        None => Ok(()),
        Some(c) => Err(Error::invalid(format!(
            "event attribute {attr:?}: {} contains U+{:04X}, which CloudEvents strings \
             may not hold (control characters and noncharacters)",
            show(v),
            c as u32
        ))),
    }
}

/// A string attribute that, when present, must not be empty.
fn check_required(attr: &str, v: &str) -> Result<()> {
    if v.is_empty() {
        return Err(Error::invalid(format!(
            "event attribute {attr:?}: \"\" is empty (it must be a non-empty string)"
        )));
    }
    check_string(attr, v)
}

fn check_time(v: &str) -> Result<()> {
    match OffsetDateTime::parse(v, &Rfc3339) {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::invalid(format!(
            "event attribute \"time\": {} is not an RFC 3339 timestamp ({e})",
            show(v)
        ))),
    }
}

/// RFC 7230's token characters: what a media type's type and subtype are
/// made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_content_type(v: &str) -> Result<()> {
    let attr = "datacontenttype";
    if !v.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
        return Err(Error::invalid(format!(
            "event attribute {attr:?}: {} is not printable ASCII (binary mode sends it \
             as the content-type header)",
            show(v)
        )));
    }
    let essence = v.split(';').next().unwrap_or_default().trim();
    let ok = match essence.split_once('/') {
        Some((t, s)) => {
            !t.is_empty() && !s.is_empty() && t.bytes().all(is_tchar) && s.bytes().all(is_tchar)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "event attribute {attr:?}: {} is not a media type (type/subtype, then \
             optional parameters)",
            show(v)
        )))
    }
}

/// An absolute URI, as far as a cheap check goes: a scheme (RFC 3986: a
/// letter, then letters, digits, `+`, `-`, `.`), a colon, and no whitespace.
fn check_absolute_uri(attr: &str, v: &str) -> Result<()> {
    check_required(attr, v)?;
    let scheme_ok = match v.split_once(':') {
        Some((scheme, _)) => {
            let mut b = scheme.bytes();
            b.next().is_some_and(|c| c.is_ascii_alphabetic())
                && b.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        }
        None => false,
    };
    if scheme_ok && !v.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "event attribute {attr:?}: {} is not an absolute URI (scheme:...)",
            show(v)
        )))
    }
}

fn check_extension_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        "names may not be empty".to_string()
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        "names are lowercase letters and digits (a-z, 0-9)".to_string()
    } else if name.len() > MAX_EXTENSION_NAME {
        format!(
            "names are at most {MAX_EXTENSION_NAME} characters, this one has {}",
            name.len()
        )
    } else if CONTEXT_ATTRIBUTES.contains(&name) || name == "data" {
        "that name is the spec's own, not an extension's".to_string()
    } else {
        return Ok(());
    };
    Err(Error::invalid(format!(
        "event extension name {}: {why}",
        show(name)
    )))
}

/// Percent-encodes a header value as the HTTP binding requires: space,
/// double quote, percent and any byte outside printable ASCII.
fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x21..=0x7E).contains(&b) && b != b'"' && b != b'%' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strictly percent-decodes a header value: every `%` starts two hex digits,
/// and the result must be UTF-8.
fn percent_decode(header: &str, v: &[u8]) -> Result<String> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            let hi = v.get(i + 1).copied().and_then(hex_value);
            let lo = v.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => {
                    return Err(Error::invalid(format!(
                        "header {header:?}: {} has a bad percent-escape at byte {i} \
                         (% must be followed by two hex digits)",
                        show_bytes(v)
                    )))
                }
            }
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        Error::invalid(format!(
            "header {header:?}: {} is not UTF-8 once percent-decoded",
            show_bytes(v)
        ))
    })
}

/// Strips HTTP's optional whitespace around a header value (any meaningful
/// space was percent-encoded by the sender).
fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |p| p + 1);
    &v[start..end]
}

fn duplicate_header(name: &str) -> Error {
    Error::invalid(format!(
        "header {name:?} is given twice (an attribute has one value)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn base() -> Event {
        Event::new(
            "A234-1234-1234",
            "https://example.com/src",
            "com.example.created",
        )
        .unwrap()
    }

    fn full() -> Event {
        base()
            .with_subject("orders/42")
            .unwrap()
            .with_time("2018-04-05T17:31:00+02:00")
            .unwrap()
            .with_data_schema("https://example.com/schema.json")
            .unwrap()
            .with_extension("comexampleext", "v a\"l%ü")
            .unwrap()
            .with_extension(PARTITION_KEY, "tenant-7")
            .unwrap()
    }

    /// Asserts an invalid-argument error whose message holds every needle.
    #[track_caller]
    fn assert_invalid<T: std::fmt::Debug>(r: Result<T>, needles: &[&str]) {
        let e = r.expect_err("expected an error");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        for n in needles {
            assert!(e.message().contains(n), "{:?} lacks {n:?}", e.message());
        }
    }

    fn headers_of(h: &[(String, String)]) -> Vec<(&str, &[u8])> {
        h.iter().map(|(k, v)| (k.as_str(), v.as_bytes())).collect()
    }

    #[track_caller]
    fn round_trip_json(e: &Event) {
        assert_eq!(&Event::from_json(&e.to_json()).unwrap(), e);
        assert_eq!(&Event::from_json_value(e.to_json_value()).unwrap(), e);
    }

    #[track_caller]
    fn round_trip_http(e: &Event) {
        let (h, body) = e.to_http_binary();
        assert_eq!(&Event::from_http_binary(headers_of(&h), body).unwrap(), e);
    }

    /// An event is one allocation of 200 bytes at most (three cache lines
    /// and a word), and its summary comes right after the shared counts:
    /// of a plain event that only passes through, a stage reads those 24
    /// bytes and nothing else. An event with parts on the heap is read
    /// whole when freed, so it is kept small too.
    #[test]
    fn an_event_is_200_bytes_with_its_summary_after_the_counts() {
        let size = std::mem::size_of::<Attrs>() + 2 * std::mem::size_of::<usize>();
        assert!(size <= 200, "Arc<Attrs> is {size} bytes");
        let e = Event::new("e1", "/s", "t").unwrap();
        let inner = Arc::as_ptr(&e.0) as usize;
        let summary = std::ptr::addr_of!(e.0.summary) as usize;
        assert_eq!(summary, inner, "the summary leads the attributes");
    }

    /// The summary follows every change: "plain" exactly when nothing
    /// inside owns memory, and every extension set is found (the name bits
    /// only ever answer "absent" for names never set).
    #[test]
    fn the_summary_follows_every_change() {
        let plain = |e: &Event| !e.0.summary.owns_memory;
        let e = Event::new("e1", "/s", "t").unwrap();
        assert!(plain(&e));
        let e = e.with_extension("partitionkey", "k1").unwrap();
        assert!(plain(&e), "one short extension is inline");
        let mut e = e.with_extension("traceparent", "00-abc").unwrap();
        assert!(!plain(&e), "a second extension spills the list");
        assert_eq!(e.remove_extension("traceparent").as_deref(), Some("00-abc"));
        assert_eq!(e.extension("traceparent"), None);
        let e = e.with_data(Data::Text("x".into()));
        assert!(!plain(&e));
        let e = Event::new("x".repeat(40), "/s", "t").unwrap();
        assert!(!plain(&e), "a long id is on the heap");
        let e = Event::new("e1", "/s", "t")
            .unwrap()
            .with_subject("s")
            .unwrap();
        assert!(!plain(&e), "optional attributes are boxed");
        // Many names, colliding in the 32 bits: each is found, and absent
        // ones are not.
        let names: Vec<String> = (0..60).map(|i| format!("ext{i}")).collect();
        let mut e = Event::new("e1", "/s", "t").unwrap();
        for n in names.iter().step_by(2) {
            e = e.with_extension(n, n.as_str()).unwrap();
        }
        for (i, n) in names.iter().enumerate() {
            let want = (i % 2 == 0).then_some(n.as_str());
            assert_eq!(e.extension(n), want, "{n}");
        }
        // A clone shares; a changed clone has its own summary.
        let shared = e.clone();
        let changed = shared.clone().with_extension("zz", "1").unwrap();
        assert_eq!(shared.extension("zz"), None);
        assert_eq!(changed.extension("zz"), Some("1"));
    }

    #[test]
    fn new_validates_required_attributes() {
        assert_invalid(Event::new("", "s", "t"), &["\"id\"", "empty"]);
        assert_invalid(Event::new("i", "", "t"), &["\"source\"", "empty"]);
        assert_invalid(Event::new("i", "s", ""), &["\"type\"", "empty"]);
        assert_invalid(
            Event::new("a\nb", "s", "t"),
            &["\"id\"", "\"a\\nb\"", "U+000A"],
        );
        assert_invalid(Event::new("i", "s", "t\u{85}"), &["\"type\"", "U+0085"]);
        assert_invalid(Event::new("i", "s\u{FFFF}", "t"), &["\"source\"", "U+FFFF"]);
        let e = base();
        assert_eq!(e.id(), "A234-1234-1234");
        assert_eq!(e.source(), "https://example.com/src");
        assert_eq!(e.ty(), "com.example.created");
        assert_eq!(e.spec_version(), "1.0");
        assert_eq!(e.subject(), None);
        assert_eq!(e.time(), None);
        assert_eq!(e.data_content_type(), None);
        assert_eq!(e.data_schema(), None);
        assert_eq!(e.data(), &Data::None);
        assert_eq!(e.extensions().count(), 0);
    }

    #[test]
    fn setters_validate() {
        assert_invalid(base().with_subject(""), &["\"subject\"", "empty"]);
        assert_invalid(base().with_subject("x\ty"), &["\"subject\"", "\"x\\ty\""]);
        assert_invalid(
            base().with_time("yesterday"),
            &["\"time\"", "\"yesterday\"", "RFC 3339"],
        );
        assert_invalid(
            base().with_time("2018-04-05"),
            &["\"time\"", "\"2018-04-05\""],
        );
        assert_invalid(
            base().with_time("2018-13-05T17:31:00Z"),
            &["2018-13-05T17:31:00Z"],
        );
        assert_invalid(
            base().with_data_content_type("json"),
            &["\"datacontenttype\"", "\"json\""],
        );
        assert_invalid(base().with_data_content_type("text/"), &["\"text/\""]);
        assert_invalid(base().with_data_content_type("a b/c"), &["\"a b/c\""]);
        assert_invalid(
            base().with_data_content_type("text/plä"),
            &["\"text/plä\"", "ASCII"],
        );
        assert_invalid(
            base().with_data_schema("schema.json"),
            &["\"dataschema\"", "\"schema.json\""],
        );
        assert_invalid(base().with_data_schema("1http://x"), &["\"1http://x\""]);
        assert_invalid(base().with_data_schema("http://x y"), &["\"http://x y\""]);
        assert_invalid(base().with_data_schema(""), &["\"dataschema\"", "empty"]);

        let e = base()
            .with_time("2018-04-05T17:31:00.123-07:30")
            .unwrap()
            .with_data_content_type("Application/JSON; charset=\"utf-8\"")
            .unwrap()
            .with_data_schema("urn:example:schema")
            .unwrap();
        assert_eq!(
            e.time(),
            Some("2018-04-05T17:31:00.123-07:30"),
            "kept as given"
        );
        assert_eq!(
            e.data_content_type(),
            Some("Application/JSON; charset=\"utf-8\"")
        );
        assert_eq!(e.data_schema(), Some("urn:example:schema"));

        let now = base().with_time_now();
        let t = now.time().unwrap();
        assert!(OffsetDateTime::parse(t, &Rfc3339).is_ok(), "{t}");
        assert!(t.ends_with('Z'), "{t}");
    }

    #[test]
    fn extension_names_and_values() {
        assert_invalid(
            base().with_extension("Partition-Key", "x"),
            &[
                "\"Partition-Key\"",
                "lowercase letters and digits (a-z, 0-9)",
            ],
        );
        assert_invalid(base().with_extension("ABC", "x"), &["\"ABC\""]);
        assert_invalid(base().with_extension("", "x"), &["empty"]);
        let long = "a".repeat(21);
        assert_invalid(base().with_extension(&long, "x"), &[&long, "at most 20"]);
        for reserved in CONTEXT_ATTRIBUTES.iter().chain(&["data", "data_base64"]) {
            assert_invalid(base().with_extension(reserved, "x"), &[reserved]);
        }
        assert_invalid(
            base().with_extension("ok", "a\u{0}b"),
            &["\"ok\"", "U+0000"],
        );

        let twenty = "z".repeat(20);
        let mut e = base()
            .with_extension("b2", "two")
            .unwrap()
            .with_extension("a1", "")
            .unwrap()
            .with_extension(&twenty, "long")
            .unwrap()
            .with_extension("b2", "replaced")
            .unwrap();
        let all: Vec<_> = e.extensions().collect();
        assert_eq!(
            all,
            vec![("a1", ""), ("b2", "replaced"), (twenty.as_str(), "long")]
        );
        assert_eq!(e.extension("b2"), Some("replaced"));
        assert_eq!(e.remove_extension("b2"), Some("replaced".to_string()));
        assert_eq!(e.remove_extension("b2"), None);
        assert_eq!(e.extension("b2"), None);
        round_trip_json(&e);
        round_trip_http(&e);
    }

    #[test]
    fn partition_key_and_key_fallbacks() {
        let e = base();
        assert_eq!(e.partition_key(), None);
        assert_eq!(e.key(), "A234-1234-1234");
        let e = e.with_subject("orders/42").unwrap();
        assert_eq!(e.key(), "orders/42");
        let mut e = e.with_extension(PARTITION_KEY, "tenant-7").unwrap();
        assert_eq!(e.partition_key(), Some("tenant-7"));
        assert_eq!(e.key(), "tenant-7");
        e.remove_extension(PARTITION_KEY);
        assert_eq!(e.key(), "orders/42");
    }

    #[test]
    fn attribute_by_name() {
        let e = full().with_data_content_type("text/plain").unwrap();
        assert_eq!(e.attribute("id"), Some("A234-1234-1234"));
        assert_eq!(e.attribute("source"), Some("https://example.com/src"));
        assert_eq!(e.attribute("type"), Some("com.example.created"));
        assert_eq!(e.attribute("specversion"), Some("1.0"));
        assert_eq!(e.attribute("subject"), Some("orders/42"));
        assert_eq!(e.attribute("time"), Some("2018-04-05T17:31:00+02:00"));
        assert_eq!(e.attribute("datacontenttype"), Some("text/plain"));
        assert_eq!(
            e.attribute("dataschema"),
            Some("https://example.com/schema.json")
        );
        assert_eq!(e.attribute("comexampleext"), Some("v a\"l%ü"));
        assert_eq!(e.attribute(PARTITION_KEY), Some("tenant-7"));
        assert_eq!(e.attribute("missing"), None);
        assert_eq!(e.attribute("data"), None);
        let b = base();
        for name in ["subject", "time", "datacontenttype", "dataschema"] {
            assert_eq!(b.attribute(name), None, "{name}");
        }
    }

    #[test]
    fn data_bytes_per_variant() {
        assert!(base().data_bytes().is_empty());
        let j = base().with_data(Data::Json(json!({"a": [1, 2]})));
        assert_eq!(&j.data_bytes()[..], br#"{"a":[1,2]}"#);
        let t = base().with_data(Data::Text("héllo".into()));
        assert_eq!(&t.data_bytes()[..], "héllo".as_bytes());
        let b = base().with_data(Data::Binary(Bytes::from_static(&[0, 255, 7])));
        assert_eq!(&b.data_bytes()[..], &[0, 255, 7]);
    }

    #[test]
    fn spec_example_parses_as_text_with_extensions() {
        let doc = br#"{"specversion":"1.0","type":"com.github.pull_request.opened","source":"https://github.com/cloudevents/spec/pull","subject":"123","id":"A234-1234-1234","time":"2018-04-05T17:31:00Z","comexampleextension1":"value","comexampleothervalue":5,"datacontenttype":"text/xml","data":"<much wow=\"xml\"/>"}"#;
        let e = Event::from_json(doc).unwrap();
        assert_eq!(e.ty(), "com.github.pull_request.opened");
        assert_eq!(e.source(), "https://github.com/cloudevents/spec/pull");
        assert_eq!(e.subject(), Some("123"));
        assert_eq!(e.id(), "A234-1234-1234");
        assert_eq!(e.time(), Some("2018-04-05T17:31:00Z"));
        assert_eq!(e.data_content_type(), Some("text/xml"));
        assert_eq!(e.data(), &Data::Text("<much wow=\"xml\"/>".into()));
        assert_eq!(e.extension("comexampleextension1"), Some("value"));
        assert_eq!(e.extension("comexampleothervalue"), Some("5"));
        assert_eq!(e.key(), "123");
        // Written back, the number extension is a string: its canonical form.
        let v = e.to_json_value();
        assert_eq!(v["comexampleothervalue"], json!("5"));
        assert_eq!(v["data"], json!("<much wow=\"xml\"/>"));
        round_trip_json(&e);
        round_trip_http(&e);
    }

    #[test]
    fn data_base64_example() {
        let doc = json!({
            "specversion": "1.0", "type": "com.example.someevent", "source": "/mycontext",
            "id": "A234-1234-1234", "datacontenttype": "application/octet-stream",
            "data_base64": "AAEC/w==",
        });
        let e = Event::from_json_value(doc).unwrap();
        assert_eq!(e.data(), &Data::Binary(Bytes::from_static(&[0, 1, 2, 255])));
        assert_eq!(e.to_json_value()["data_base64"], json!("AAEC/w=="));
        assert!(e.to_json_value().get("data").is_none());
        round_trip_json(&e);
        round_trip_http(&e);
    }

    #[test]
    fn extensions_with_numbers_and_booleans() {
        let doc = json!({
            "specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "count": 42, "ratio": 0.5, "neg": -3, "flag": true, "off": false,
        });
        let e = Event::from_json_value(doc).unwrap();
        assert_eq!(e.extension("count"), Some("42"));
        assert_eq!(e.extension("ratio"), Some("0.5"));
        assert_eq!(e.extension("neg"), Some("-3"));
        assert_eq!(e.extension("flag"), Some("true"));
        assert_eq!(e.extension("off"), Some("false"));
        let v = e.to_json_value();
        assert_eq!(v["count"], json!("42"));
        assert_eq!(v["flag"], json!("true"));
        round_trip_json(&e);
        round_trip_http(&e);
    }

    #[test]
    fn structured_validation_errors() {
        let ok = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
        let with = |k: &str, v: Value| {
            let mut d = ok.clone();
            d[k] = v;
            Event::from_json_value(d)
        };
        let without = |k: &str| {
            let mut d = ok.clone();
            d.as_object_mut().unwrap().remove(k);
            Event::from_json_value(d)
        };
        assert!(Event::from_json_value(ok.clone()).is_ok());
        assert_invalid(
            with("specversion", json!("0.3")),
            &["event attribute \"specversion\": \"0.3\" is not supported (only \"1.0\")"],
        );
        assert_invalid(
            with("specversion", json!(1.0)),
            &["\"specversion\"", "1.0", "number"],
        );
        for attr in ["specversion", "id", "source", "type"] {
            assert_invalid(without(attr), &[attr, "missing"]);
            assert_invalid(with(attr, Value::Null), &[attr, "missing"]);
            assert_invalid(with(attr, json!("")), &[attr]);
        }
        assert_invalid(with("id", json!(5)), &["\"id\"", "5", "number"]);
        assert_invalid(with("source", json!(["x"])), &["\"source\"", "[\"x\"]"]);
        assert_invalid(with("type", json!(true)), &["\"type\"", "true"]);
        assert_invalid(with("subject", json!(7)), &["\"subject\"", "7"]);
        assert_invalid(
            with("time", json!("yesterday")),
            &["event attribute \"time\": \"yesterday\" is not an RFC 3339 timestamp"],
        );
        assert_invalid(
            with("time", json!(1_522_949_460)),
            &["\"time\"", "1522949460"],
        );
        assert_invalid(
            with("datacontenttype", json!("nonsense")),
            &["\"nonsense\""],
        );
        assert_invalid(
            with("dataschema", json!("relative/path")),
            &["\"relative/path\""],
        );
        assert_invalid(with("Partition-Key", json!("x")), &[
            "event extension name \"Partition-Key\": names are lowercase letters and digits (a-z, 0-9)",
        ]);
        let long = "x".repeat(21);
        assert_invalid(with(&long, json!("v")), &[&long]);
        assert_invalid(
            with("ext", json!({"a": 1})),
            &["\"ext\"", "{\"a\":1}", "object"],
        );
        assert_invalid(with("ext", json!([1])), &["\"ext\"", "[1]", "array"]);
        assert_invalid(with("ext", Value::Null), &["\"ext\"", "null"]);
        assert_invalid(with("ext", json!("bell\u{7}")), &["\"ext\"", "U+0007"]);
        let mut both = ok.clone();
        both["data"] = json!(1);
        both["data_base64"] = json!("AA==");
        assert_invalid(
            Event::from_json_value(both),
            &["\"data\"", "\"data_base64\""],
        );
        assert_invalid(
            with("data_base64", json!("not base64!")),
            &["\"not base64!\"", "base64"],
        );
        assert_invalid(with("data_base64", json!("AA")), &["\"AA\""]);
        assert_invalid(with("data_base64", json!(12)), &["data_base64", "12"]);
        assert_invalid(Event::from_json(b"{not json"), &["not valid JSON"]);
        assert_invalid(
            Event::from_json(b"[1,2]"),
            &["JSON object", "array", "[1,2]"],
        );
        assert_invalid(
            Event::from_json_value(json!("x")),
            &["JSON object", "\"x\""],
        );

        // Null optional attributes count as absent (the JSON format's unset).
        let e = with("subject", Value::Null).unwrap();
        assert_eq!(e.subject(), None);
        let e = with("data_base64", Value::Null).unwrap();
        assert_eq!(e.data(), &Data::None);
        // A huge bad value is quoted, but not whole.
        let huge = "y".repeat(10_000);
        let e = with("time", json!(huge)).unwrap_err();
        assert!(e.message().len() < 300, "{}", e.message());
    }

    #[test]
    fn structured_data_by_content_type() {
        let doc = |ct: Option<&str>, data: Value| {
            let mut d = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
            if let Some(ct) = ct {
                d["datacontenttype"] = json!(ct);
            }
            d["data"] = data;
            Event::from_json_value(d).unwrap().data().clone()
        };
        assert_eq!(doc(None, json!("s")), Data::Json(json!("s")));
        assert_eq!(doc(None, json!({"a": 1})), Data::Json(json!({"a": 1})));
        assert_eq!(
            doc(Some("application/json"), json!("s")),
            Data::Json(json!("s"))
        );
        assert_eq!(doc(Some("text/json"), json!("s")), Data::Json(json!("s")));
        assert_eq!(
            doc(Some("application/vnd.x+json; charset=utf-8"), json!("s")),
            Data::Json(json!("s"))
        );
        assert_eq!(doc(Some("text/plain"), json!("s")), Data::Text("s".into()));
        assert_eq!(doc(Some("text/plain"), json!(5)), Data::Json(json!(5)));
        assert_eq!(
            doc(Some("application/xml"), json!("<a/>")),
            Data::Text("<a/>".into())
        );
        assert_eq!(doc(None, Value::Null), Data::Json(Value::Null));
    }

    #[test]
    fn json_round_trips_every_variant() {
        let cases = [
            full(),
            full().with_data(Data::Json(json!({"n": 1, "s": "x", "l": [true, null]}))),
            full()
                .with_data_content_type("application/json")
                .unwrap()
                .with_data(Data::Json(json!("just a string"))),
            full()
                .with_data_content_type("text/plain; charset=utf-8")
                .unwrap()
                .with_data(Data::Text("hello\nwörld".into())),
            full()
                .with_data_content_type("application/octet-stream")
                .unwrap()
                .with_data(Data::Binary(Bytes::from_static(&[0, 1, 0xfe, 0xff]))),
            // In structured mode binary data keeps its variant whatever the
            // content type, as data_base64 says it.
            base().with_data(Data::Binary(Bytes::from_static(b"{}"))),
            base()
                .with_data(Data::Text(String::new()))
                .with_data_content_type("text/csv")
                .unwrap(),
        ];
        for e in &cases {
            round_trip_json(e);
        }
        let v = cases[3].to_json_value();
        assert_eq!(v["data"], json!("hello\nwörld"));
        assert_eq!(v["specversion"], json!("1.0"));
        assert_eq!(v["comexampleext"], json!("v a\"l%ü"));
        assert!(cases[0].to_json_value().get("data").is_none());
    }

    #[test]
    fn http_binary_round_trips_every_variant() {
        let cases = [
            full(),
            base(),
            full().with_data(Data::Json(json!({"n": 1, "s": "x"}))),
            base().with_data(Data::Json(json!([1, "two"]))),
            full()
                .with_data_content_type("application/cloudevents-batch+json")
                .unwrap()
                .with_data(Data::Json(json!("s"))),
            full()
                .with_data_content_type("text/plain; charset=utf-8")
                .unwrap()
                .with_data(Data::Text("not json at all".into())),
            full()
                .with_data_content_type("text/json")
                .unwrap()
                .with_data(Data::Json(json!(null))),
            full()
                .with_data_content_type("application/octet-stream")
                .unwrap()
                .with_data(Data::Binary(Bytes::from_static(
                    b"{\"looks\":\"like json\"}",
                ))),
            base().with_data(Data::Binary(Bytes::from_static(&[0xff, 0, 1]))),
        ];
        for e in &cases {
            round_trip_http(e);
        }
    }

    #[test]
    fn http_binary_headers_and_content_type_rule() {
        let e = full()
            .with_data_content_type("application/json")
            .unwrap()
            .with_data(Data::Json(json!({"a": 1})));
        let (h, body) = e.to_http_binary();
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("ce-specversion"), Some("1.0"));
        assert_eq!(get("ce-id"), Some("A234-1234-1234"));
        assert_eq!(get("ce-time"), Some("2018-04-05T17:31:00+02:00"));
        assert_eq!(get("ce-comexampleext"), Some("v%20a%22l%25%C3%BC"));
        assert_eq!(get("ce-partitionkey"), Some("tenant-7"));
        assert_eq!(get("content-type"), Some("application/json"));
        assert_eq!(get("ce-datacontenttype"), None);
        assert!(h.iter().all(|(k, _)| k == &k.to_ascii_lowercase()));
        assert_eq!(&body[..], br#"{"a":1}"#);

        // No datacontenttype: no content-type header; JSON data still comes
        // back as JSON (the body parses), and anything else as binary.
        let e = base().with_data(Data::Json(json!({"a": 1})));
        let (h, _) = e.to_http_binary();
        assert!(h.iter().all(|(k, _)| k != "content-type"));
        let parse = |ct: Option<&str>, body: &'static [u8]| {
            let mut h: Vec<(&str, &[u8])> = vec![
                ("CE-SpecVersion", b"1.0"),
                ("ce-id", b"1"),
                ("Ce-Source", b"s"),
                ("ce-type", b"t"),
                ("x-other", b"\xff%zz"),
            ];
            if let Some(ct) = ct {
                h.push(("Content-Type", ct.as_bytes()));
            }
            Event::from_http_binary(h, Bytes::from_static(body))
        };
        assert_eq!(parse(None, b"[1]").unwrap().data(), &Data::Json(json!([1])));
        assert_eq!(
            parse(None, b"plain").unwrap().data(),
            &Data::Binary(Bytes::from_static(b"plain"))
        );
        assert_eq!(parse(None, b"").unwrap().data(), &Data::None);
        assert_eq!(
            parse(Some("application/json"), b"").unwrap().data(),
            &Data::None
        );
        assert_eq!(
            parse(Some("text/html"), b"<p>").unwrap().data(),
            &Data::Text("<p>".into())
        );
        assert_eq!(
            parse(Some("image/png"), b"[1]").unwrap().data(),
            &Data::Binary(Bytes::from_static(b"[1]"))
        );
        let e = parse(Some(" application/json "), b" 7 ").unwrap();
        assert_eq!(e.data(), &Data::Json(json!(7)));
        assert_eq!(
            e.data_content_type(),
            Some("application/json"),
            "OWS trimmed"
        );
        assert_invalid(
            parse(Some("application/json"), b"{oops"),
            &["\"application/json\"", "JSON"],
        );
        assert_invalid(
            parse(Some("application/x+json"), b"nope"),
            &["\"application/x+json\""],
        );
        assert_invalid(
            parse(Some("text/plain"), b"\xff\xfe"),
            &["\"text/plain\"", "UTF-8"],
        );
        assert_invalid(
            parse(Some("garbage"), b"x"),
            &["\"garbage\"", "datacontenttype"],
        );
    }

    #[test]
    fn http_binary_validation_errors() {
        let good: Vec<(&str, &[u8])> = vec![
            ("ce-specversion", b"1.0"),
            ("ce-id", b"1"),
            ("ce-source", b"s"),
            ("ce-type", b"t"),
        ];
        let with = |name: &'static str, value: &'static [u8]| {
            let mut h: Vec<(&str, &[u8])> =
                good.iter().filter(|(k, _)| *k != name).copied().collect();
            h.push((name, value));
            Event::from_http_binary(h, Bytes::new())
        };
        let without = |name: &str| {
            let h: Vec<(&str, &[u8])> = good.iter().filter(|(k, _)| *k != name).copied().collect();
            Event::from_http_binary(h, Bytes::new())
        };
        assert!(Event::from_http_binary(good.clone(), Bytes::new()).is_ok());
        assert_invalid(
            with("ce-specversion", b"0.3"),
            &["event attribute \"specversion\": \"0.3\" is not supported (only \"1.0\")"],
        );
        for attr in ["specversion", "id", "source", "type"] {
            let header = format!("ce-{attr}");
            assert_invalid(without(&header), &[attr, "missing", &header]);
        }
        assert_invalid(with("ce-id", b""), &["\"id\"", "empty"]);
        assert_invalid(
            with("ce-id", b"a%2"),
            &["\"ce-id\"", "percent-escape", "a%2"],
        );
        assert_invalid(with("ce-id", b"a%zzb"), &["\"ce-id\"", "a%zzb"]);
        assert_invalid(with("ce-source", b"%C3%28"), &["\"ce-source\"", "UTF-8"]);
        assert_invalid(with("ce-source", b"\xff"), &["\"ce-source\"", "UTF-8"]);
        assert_invalid(with("ce-subject", b"a%0Ab"), &["\"subject\"", "U+000A"]);
        assert_invalid(
            with("ce-time", b"yesterday"),
            &["\"time\"", "\"yesterday\""],
        );
        assert_invalid(
            with("ce-dataschema", b"nope"),
            &["\"dataschema\"", "\"nope\""],
        );
        assert_invalid(
            with("ce-datacontenttype", b"text/plain"),
            &["ce-datacontenttype"],
        );
        assert_invalid(
            with("ce-partition_key", b"x"),
            &["\"partition_key\"", "a-z, 0-9"],
        );
        assert_invalid(
            with("ce-abcdefghijklmnopqrstu", b"x"),
            &["abcdefghijklmnopqrstu"],
        );
        assert_invalid(
            with("content-type", b"text/\xff"),
            &["\"content-type\"", "UTF-8"],
        );
        let mut dup = good.clone();
        dup.push(("CE-ID", b"2"));
        assert_invalid(
            Event::from_http_binary(dup, Bytes::new()),
            &["\"CE-ID\"", "twice"],
        );
        let mut dup = good.clone();
        dup.push(("content-type", b"text/plain"));
        dup.push(("Content-Type", b"text/plain"));
        assert_invalid(
            Event::from_http_binary(dup, Bytes::new()),
            &["\"Content-Type\"", "twice"],
        );

        // Names are case-insensitive and extensions come back lowercase;
        // escapes decode in either case of hex digit.
        let mut h = good.clone();
        h.push(("CE-MyExt", b"a%20b%c3%bc"));
        let e = Event::from_http_binary(h, Bytes::new()).unwrap();
        assert_eq!(e.extension("myext"), Some("a bü"));
    }

    #[test]
    fn percent_encoding_round_trips() {
        for s in [
            "",
            "plain",
            "a b",
            "\"q\"",
            "100%",
            "ü€😀",
            "~!#$&'()*+,/:;=?@[]",
        ] {
            let enc = percent_encode(s);
            assert!(
                enc.bytes().all(|b| (0x21..=0x7E).contains(&b) && b != b'"'),
                "{enc}"
            );
            assert_eq!(percent_decode("h", enc.as_bytes()).unwrap(), s);
        }
        assert_eq!(percent_encode("a b\"%"), "a%20b%22%25");
    }

    /// A tiny xorshift64 generator: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn byte(&mut self) -> u8 {
            // Mostly bytes that matter to the parsers, sometimes any byte.
            const INTERESTING: &[u8] = b"\"{}[]:,\\0159.-+eEtfn %AaZz/_\n";
            if self.below(3) == 0 {
                self.next() as u8
            } else {
                INTERESTING[self.below(INTERESTING.len())]
            }
        }
    }

    #[test]
    fn from_json_never_panics_on_mutations() {
        let seeds = [
            full()
                .with_data_content_type("application/json")
                .unwrap()
                .with_data(Data::Json(json!({"a": [1, 2.5, "x"], "b": null})))
                .to_json(),
            full()
                .with_data_content_type("text/plain")
                .unwrap()
                .with_data(Data::Text("hi".into()))
                .to_json(),
            base()
                .with_data(Data::Binary(Bytes::from_static(b"bytes!")))
                .with_extension("num", "5")
                .unwrap()
                .to_json(),
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","n":5,"b":true}"#.to_vec(),
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut ok, mut err) = (0, 0);
        for i in 0..4000 {
            let mut doc = seeds[i % seeds.len()].clone();
            for _ in 0..=rng.below(4) {
                match rng.below(3) {
                    0 if !doc.is_empty() => {
                        let at = rng.below(doc.len());
                        doc[at] ^= 1 << rng.below(8);
                    }
                    1 => {
                        let at = rng.below(doc.len() + 1);
                        let b = rng.byte();
                        doc.insert(at, b);
                    }
                    _ if !doc.is_empty() => {
                        let at = rng.below(doc.len());
                        doc.remove(at);
                    }
                    _ => {}
                }
            }
            match Event::from_json(&doc) {
                Ok(e) => {
                    ok += 1;
                    // Whatever was accepted writes back to the same event.
                    assert_eq!(Event::from_json(&e.to_json()).as_ref(), Ok(&e));
                }
                Err(e) => {
                    err += 1;
                    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                    assert!(!e.message().is_empty());
                }
            }
        }
        assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
    }

    #[test]
    fn from_http_binary_never_panics_on_random_headers() {
        const NAMES: &[&str] = &[
            "ce-specversion",
            "ce-id",
            "ce-source",
            "ce-type",
            "ce-subject",
            "ce-time",
            "ce-dataschema",
            "ce-datacontenttype",
            "ce-partitionkey",
            "ce-ext1",
            "CE-Ext1",
            "ce-Bad-Name",
            "content-type",
            "x-ignored",
        ];
        const VALUES: &[&[u8]] = &[
            b"1.0",
            b"1",
            b"s",
            b"t",
            b"2018-04-05T17:31:00Z",
            b"https://x/y",
            b"application/json",
            b"text/plain",
            b"application/octet-stream",
            b"%20",
            b"%C3%BC",
        ];
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let (mut ok, mut err) = (0, 0);
        for _ in 0..4000 {
            let mut owned: Vec<(&str, Vec<u8>)> = vec![
                ("ce-specversion", b"1.0".to_vec()),
                ("ce-id", b"1".to_vec()),
                ("ce-source", b"s".to_vec()),
                ("ce-type", b"t".to_vec()),
            ];
            // Drop some required headers now and then.
            if rng.below(4) == 0 {
                let at = rng.below(owned.len());
                owned.remove(at);
            }
            for _ in 0..rng.below(4) {
                let name = NAMES[rng.below(NAMES.len())];
                let mut v = VALUES[rng.below(VALUES.len())].to_vec();
                for _ in 0..rng.below(3) {
                    if rng.below(2) == 0 || v.is_empty() {
                        let at = rng.below(v.len() + 1);
                        let b = rng.byte();
                        v.insert(at, b);
                    } else {
                        let at = rng.below(v.len());
                        v[at] = rng.next() as u8;
                    }
                }
                owned.push((name, v));
            }
            let body: Vec<u8> = (0..rng.below(6)).map(|_| rng.byte()).collect();
            let headers: Vec<(&str, &[u8])> =
                owned.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            match Event::from_http_binary(headers, Bytes::from(body)) {
                Ok(e) => {
                    ok += 1;
                    let (h, body) = e.to_http_binary();
                    assert_eq!(
                        Event::from_http_binary(headers_of(&h), body).as_ref(),
                        Ok(&e)
                    );
                }
                Err(e) => {
                    err += 1;
                    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                }
            }
        }
        assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
    }
}
