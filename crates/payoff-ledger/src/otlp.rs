//! OpenTelemetry traces read as ledger events.
//!
//! The agents a vendor did not build with Payoff (LangChain, LlamaIndex,
//! the OpenAI Agents SDK, home-grown loops) already describe their model
//! calls, tool calls and runs as GenAI spans. An OTLP/HTTP export request
//! (protobuf or JSON) is read here into one CloudEvent per such span, so
//! those calls are metered, priced and attributed to outcomes like the
//! `llm.call` records Payoff writes itself. Spans of anything else (HTTP
//! handlers, database queries) are not Payoff's business and are skipped.
//!
//! Three generations of attribute names are read, newest first: the
//! OpenTelemetry GenAI semantic conventions (`gen_ai.provider.name`,
//! `gen_ai.usage.input_tokens`, `gen_ai.usage.cache_read.input_tokens`),
//! their older names (`gen_ai.system`, `gen_ai.usage.prompt_tokens`, the
//! OpenLLMetry cache names) and OpenInference's (`llm.model_name`,
//! `llm.token_count.*`, `openinference.span.kind`). All of them count
//! cached tokens inside the input tokens, as Payoff's prices do.
//!
//! Prompts, completions, tool arguments and results are never copied: the
//! ledger cannot forget, and it needs only the counts.
//!
//! The message types are the subset of `opentelemetry/proto` this reading
//! needs, with their field numbers; prost skips the fields not declared
//! here. The same types read the JSON encoding (OTLP's: lowerCamelCase
//! names, ids in hex, 64-bit integers as strings or numbers, enums as
//! numbers; unknown fields ignored).

use chrono::{DateTime, SecondsFormat, Utc};
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

/// `/v1/traces` bodies are OTLP `ExportTraceServiceRequest`s.
#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    #[serde(default)]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    #[serde(default)]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    #[serde(default)]
    pub spans: Vec<Span>,
}

#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(default, deserialize_with = "hex_id")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(default, deserialize_with = "hex_id")]
    pub span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    #[serde(default, deserialize_with = "hex_id")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    #[serde(default)]
    pub name: String,
    #[prost(fixed64, tag = "7")]
    #[serde(default, deserialize_with = "uint64")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    #[serde(default, deserialize_with = "uint64")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    #[serde(default)]
    pub attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    #[serde(default)]
    pub status: Option<Status>,
}

#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub message: String,
    /// 0 unset, 1 ok, 2 error.
    #[prost(int32, tag = "3")]
    #[serde(default)]
    pub code: i32,
}

/// `Status.code` of a failed span.
const STATUS_ERROR: i32 = 2;

#[derive(Clone, PartialEq, Message, Deserialize)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    #[serde(default)]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message, Deserialize)]
#[serde(try_from = "AnyValueJson")]
pub struct AnyValue {
    #[prost(oneof = "Scalar", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<Scalar>,
}

/// The value an attribute holds.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Scalar {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(ArrayValue),
    #[prost(message, tag = "6")]
    Kvlist(KeyValueList),
    #[prost(bytes, tag = "7")]
    Bytes(Vec<u8>),
}

#[derive(Clone, PartialEq, Message, Deserialize)]
pub struct ArrayValue {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub values: Vec<AnyValue>,
}

#[derive(Clone, PartialEq, Message, Deserialize)]
pub struct KeyValueList {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub values: Vec<KeyValue>,
}

/// `AnyValue` in OTLP's JSON: an object with one of these keys.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValueJson {
    string_value: Option<String>,
    bool_value: Option<bool>,
    #[serde(default, deserialize_with = "int64")]
    int_value: Option<i64>,
    double_value: Option<f64>,
    array_value: Option<ArrayValue>,
    kvlist_value: Option<KeyValueList>,
    bytes_value: Option<String>,
}

impl TryFrom<AnyValueJson> for AnyValue {
    type Error = String;

    fn try_from(j: AnyValueJson) -> Result<Self, String> {
        use base64::Engine as _;
        let value = if let Some(s) = j.string_value {
            Some(Scalar::String(s))
        } else if let Some(b) = j.bool_value {
            Some(Scalar::Bool(b))
        } else if let Some(i) = j.int_value {
            Some(Scalar::Int(i))
        } else if let Some(d) = j.double_value {
            Some(Scalar::Double(d))
        } else if let Some(a) = j.array_value {
            Some(Scalar::Array(a))
        } else if let Some(k) = j.kvlist_value {
            Some(Scalar::Kvlist(k))
        } else if let Some(b) = j.bytes_value {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&b)
                .map_err(|e| format!("bytesValue is not base64: {e}"))?;
            Some(Scalar::Bytes(bytes))
        } else {
            None
        };
        Ok(AnyValue { value })
    }
}

/// An id (trace or span) in OTLP JSON: hex, as the specification says.
fn hex_id<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    hex::decode(&text)
        .map_err(|_| serde::de::Error::custom(format!("\"{text}\" is not a hex trace or span id")))
}

/// A 64-bit integer in proto3 JSON: a string of digits or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Wide<T> {
    Number(T),
    Text(String),
}

fn wide<'de, D: Deserializer<'de>, T: std::str::FromStr + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    match Wide::<T>::deserialize(d)? {
        Wide::Number(n) => Ok(n),
        Wide::Text(s) => s
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("\"{s}\" is not a 64-bit integer"))),
    }
}

fn uint64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    wide(d)
}

fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    wide(d).map(Some)
}

/// How an export request's body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names, if OTLP/HTTP has it.
    pub fn of(content_type: &str) -> Option<Encoding> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The content type of a reply in this encoding (OTLP answers in the
    /// request's encoding).
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Nesting allowed in attribute values (arrays and key-value lists) of a
/// JSON request: far beyond what instrumentation writes, far below what a
/// thread's stack parses.
pub const DEPTH_MAX: usize = 16;

/// An export request that cannot be read, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Reads an export request. The JSON encoding's nesting is bounded before
/// it is parsed; the protobuf decoder bounds its own (prost refuses
/// messages nested deeper than 100).
pub fn decode(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)
            .map_err(|e| DecodeError(format!("not an OTLP protobuf export request: {e}"))),
        Encoding::Json => {
            let text = std::str::from_utf8(body)
                .map_err(|e| DecodeError(format!("not UTF-8 (at byte {})", e.valid_up_to())))?;
            // Each attribute level is three JSON levels (a value, its
            // array or list, its values), on top of the envelope's ten.
            payoff_nesting::check(text, &payoff_nesting::Syntax::JSON, 10 + 3 * DEPTH_MAX)
                .map_err(|e| DecodeError(format!("the JSON is {e}")))?;
            serde_json::from_str(text)
                .map_err(|e| DecodeError(format!("not an OTLP JSON export request: {e}")))
        }
    }
}

/// The reply to an export: OTLP's `ExportTraceServiceResponse`, whose
/// partial success counts the spans refused and says why. An empty message
/// and no refusals is full success (`{}` in JSON).
#[derive(Clone, PartialEq, Message, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ExportTraceServiceResponse {
    /// Absent when every span was taken.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub partial_success: Option<PartialSuccess>,
}

/// The spans an export did not record, and why.
#[derive(Clone, PartialEq, Message, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PartialSuccess {
    /// An int64, so a string in proto3 JSON (`"2"`).
    #[prost(int64, tag = "1")]
    #[serde(serialize_with = "int64_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Int64))]
    pub rejected_spans: i64,
    /// One line per span, `span <index>: <why>`.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// proto3 JSON writes an int64 as a string.
fn int64_text<S: serde::Serializer>(n: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

/// The reply's bytes in the request's encoding.
pub fn reply(encoding: Encoding, rejected_spans: usize, message: &str) -> Vec<u8> {
    let partial = (rejected_spans > 0 || !message.is_empty()).then(|| PartialSuccess {
        rejected_spans: rejected_spans as i64,
        error_message: message.to_owned(),
    });
    let response = ExportTraceServiceResponse {
        partial_success: partial,
    };
    match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&response).expect("a reply serialises"),
    }
}

/// What the reading needs to know beyond the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// The attribute (of the span, else of its resource) naming the
    /// subject a call served: the ticket, the lead. Outcomes are per
    /// subject, so this is what lets cost per outcome work unchanged.
    pub subject_attribute: String,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            subject_attribute: "payoff.subject".into(),
        }
    }
}

/// The resource attribute with which a provider key names the customer
/// whose spans a request carries (a customer's own key needs none).
pub const CUSTOMER_ATTRIBUTE: &str = "payoff.customer";
/// The span attribute naming the outcome kind a call worked towards.
pub const OUTCOME_ATTRIBUTE: &str = "payoff.outcome";
/// Event type of a tool an agent called.
pub const TOOL_CALL: &str = "tool.call";
/// Event type of one run of an agent.
pub const AGENT_RUN: &str = "agent.run";

/// The events of one export request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Read {
    /// One raw CloudEvent per span Payoff records, each beside the index of
    /// its span in the request (counted across resources and scopes).
    pub events: Vec<(usize, Value)>,
    /// Spans that cannot be recorded, by index, with the reason.
    pub rejected: Vec<(usize, String)>,
    /// Spans in the request.
    pub spans: usize,
}

/// The CloudEvents of a request's GenAI spans; other spans are skipped.
///
/// The event id is the span's trace and span id, so an exporter that sends
/// a batch again (as OTLP exporters do after a timeout) stores it once.
pub fn events(request: &ExportTraceServiceRequest, settings: &TraceSettings) -> Read {
    let mut read = Read::default();
    for resource_spans in &request.resource_spans {
        let resource = Attributes(
            resource_spans
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes[..]),
        );
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            let index = read.spans;
            read.spans += 1;
            match event_of(span, &resource, settings) {
                Ok(Some(event)) => read.events.push((index, event)),
                Ok(None) => {}
                Err(why) => read.rejected.push((index, why)),
            }
        }
    }
    read
}

/// A list of attributes, looked up by key.
struct Attributes<'a>(&'a [KeyValue]);

impl Attributes<'_> {
    fn get(&self, key: &str) -> Option<&Scalar> {
        self.0
            .iter()
            .rev() // the last of repeated keys wins, as in the SDKs
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    /// The first of `keys` that holds text.
    fn text(&self, keys: &[&str]) -> Option<&str> {
        keys.iter().find_map(|k| match self.get(k) {
            Some(Scalar::String(s)) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        })
    }

    /// The first of `keys` that holds a whole number of 0 or more
    /// (instrumentations write counts as integers, some as doubles or text).
    fn count(&self, keys: &[&str]) -> Option<u64> {
        keys.iter().find_map(|k| match self.get(k)? {
            Scalar::Int(i) => u64::try_from(*i).ok(),
            Scalar::Double(d) if *d >= 0.0 && d.fract() == 0.0 && *d < 9.0e15 => Some(*d as u64),
            Scalar::String(s) => s.trim().parse().ok(),
            _ => None,
        })
    }

    /// The first of `keys` that holds a number of 0 or more.
    fn amount(&self, keys: &[&str]) -> Option<f64> {
        keys.iter().find_map(|k| match self.get(k)? {
            Scalar::Int(i) if *i >= 0 => Some(*i as f64),
            Scalar::Double(d) if d.is_finite() && *d >= 0.0 => Some(*d),
            Scalar::String(s) => s.trim().parse().ok().filter(|d: &f64| d.is_finite()),
            _ => None,
        })
    }

    fn has_any(&self, keys: &[&str]) -> bool {
        keys.iter().any(|k| self.get(k).is_some())
    }
}

// Attribute names, newest convention first.
const OPERATION: &[&str] = &["gen_ai.operation.name", "llm.request.type"];
const OPENINFERENCE_KIND: &str = "openinference.span.kind";
const RESPONSE_MODEL: &[&str] = &["gen_ai.response.model", "llm.response.model"];
const REQUEST_MODEL: &[&str] = &["gen_ai.request.model", "llm.model_name"];
const PROVIDER: &[&str] = &[
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "llm.system",
];
const INPUT_TOKENS: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
];
const OUTPUT_TOKENS: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
];
const CACHE_READ_TOKENS: &[&str] = &[
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
];
const CACHE_CREATION_TOKENS: &[&str] = &[
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
];
const REASONING_TOKENS: &[&str] = &[
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
];
const COST: &[&str] = &["gen_ai.usage.cost", "llm.cost.total"];
const AGENT_NAME: &[&str] = &["gen_ai.agent.name", "agent.name"];
const AGENT_ID: &[&str] = &["gen_ai.agent.id"];
const TOOL_NAME: &[&str] = &["gen_ai.tool.name", "tool.name"];
const TOOL_CALL_ID: &[&str] = &["gen_ai.tool.call.id"];
const CONVERSATION: &[&str] = &["gen_ai.conversation.id", "session.id"];
const ERROR_TYPE: &[&str] = &["error.type"];
const SERVICE_NAME: &[&str] = &["service.name"];

/// What a span describes, if Payoff records it.
fn kind_of(span: &Attributes<'_>) -> Option<&'static str> {
    if let Some(kind) = span.text(&[OPENINFERENCE_KIND]) {
        return match kind.to_ascii_uppercase().as_str() {
            "LLM" | "EMBEDDING" => Some(crate::LLM_CALL),
            "TOOL" => Some(TOOL_CALL),
            "AGENT" => Some(AGENT_RUN),
            _ => None,
        };
    }
    match span.text(OPERATION) {
        Some("execute_tool") => Some(TOOL_CALL),
        Some("invoke_agent") => Some(AGENT_RUN),
        Some("create_agent") => None,
        // chat, text_completion, generate_content, embeddings, and
        // whatever a newer convention adds: a model call if it names a
        // model or counts tokens.
        _ if span.has_any(REQUEST_MODEL)
            || span.has_any(RESPONSE_MODEL)
            || span.has_any(INPUT_TOKENS)
            || span.has_any(OUTPUT_TOKENS) =>
        {
            Some(crate::LLM_CALL)
        }
        _ => None,
    }
}

/// Longest error text copied from a span.
const ERROR_CHARS_MAX: usize = 256;

/// The event of one span: `None` for a span Payoff does not record, an
/// error for one it should but cannot.
fn event_of(
    span: &Span,
    resource: &Attributes<'_>,
    settings: &TraceSettings,
) -> Result<Option<Value>, String> {
    let attrs = Attributes(&span.attributes);
    let Some(kind) = kind_of(&attrs) else {
        return Ok(None);
    };
    // The ids make the event's id: without them a resent batch would be
    // stored twice.
    if span.trace_id.len() != 16 || span.span_id.len() != 8 {
        return Err(format!(
            "span \"{}\": traceId must be 16 bytes and spanId 8 (got {} and {})",
            span.name,
            span.trace_id.len(),
            span.span_id.len()
        ));
    }
    let service = resource.text(SERVICE_NAME).unwrap_or("unknown_service");
    let mut data = Map::new();
    let mut put = |key: &str, value: Value| {
        if !value.is_null() {
            data.insert(key.to_owned(), value);
        }
    };
    put("via", "otlp".into());
    put("span", span.name.clone().into());
    put("operation", attrs.text(OPERATION).into());
    put(
        "agent",
        attrs
            .text(AGENT_NAME)
            .or(resource.text(AGENT_NAME))
            .unwrap_or(service)
            .into(),
    );
    put("agent_id", attrs.text(AGENT_ID).into());
    put("service", service.into());
    match kind {
        crate::LLM_CALL => {
            let requested = attrs.text(REQUEST_MODEL);
            put("model", attrs.text(RESPONSE_MODEL).or(requested).into());
            put("requested_model", requested.into());
            put("provider", attrs.text(PROVIDER).into());
            put("input_tokens", attrs.count(INPUT_TOKENS).into());
            // Every convention read here counts cached tokens as input.
            put("input_includes_cached", true.into());
            put("cached_input_tokens", attrs.count(CACHE_READ_TOKENS).into());
            put(
                "cache_creation_input_tokens",
                attrs.count(CACHE_CREATION_TOKENS).into(),
            );
            put("reasoning_tokens", attrs.count(REASONING_TOKENS).into());
            put("output_tokens", attrs.count(OUTPUT_TOKENS).into());
            put("provider_cost", attrs.amount(COST).into());
        }
        TOOL_CALL => {
            put("tool", attrs.text(TOOL_NAME).into());
            put("tool_call_id", attrs.text(TOOL_CALL_ID).into());
        }
        _ => {}
    }
    put("conversation", attrs.text(CONVERSATION).into());
    let subject_key = [settings.subject_attribute.as_str()];
    let subject = attrs.text(&subject_key).or(resource.text(&subject_key));
    put("subject", subject.into());
    put("outcome", attrs.text(&[OUTCOME_ATTRIBUTE]).into());
    if span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0 {
        put(
            "latency_ms",
            ((span.end_time_unix_nano - span.start_time_unix_nano) / 1_000_000).into(),
        );
    }
    let status = span.status.as_ref();
    let error_type = attrs.text(ERROR_TYPE);
    let failed = status.is_some_and(|s| s.code == STATUS_ERROR) || error_type.is_some();
    put("result", if failed { "error" } else { "ok" }.into());
    if failed {
        let why = error_type
            .map(str::to_owned)
            .or_else(|| status.map(|s| s.message.clone()).filter(|m| !m.is_empty()));
        put(
            "error",
            why.map(|w| w.chars().take(ERROR_CHARS_MAX).collect::<String>())
                .into(),
        );
    }
    put("trace_id", hex::encode(&span.trace_id).into());
    put("span_id", hex::encode(&span.span_id).into());
    if !span.parent_span_id.is_empty() {
        put("parent_span_id", hex::encode(&span.parent_span_id).into());
    }

    let mut event = json!({
        "specversion": "1.0",
        "id": format!("{}-{}", hex::encode(&span.trace_id), hex::encode(&span.span_id)),
        "source": format!("otlp/{service}"),
        "type": kind,
        "data": data,
    });
    if let Some(subject) = subject {
        event["subject"] = subject.into();
    }
    // When it happened: the span's end, else its start. A span with neither
    // is stamped when it is stored.
    let nanos = if span.end_time_unix_nano > 0 {
        span.end_time_unix_nano
    } else {
        span.start_time_unix_nano
    };
    if nanos > 0 {
        let time = DateTime::<Utc>::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX));
        event["time"] = time.to_rfc3339_opts(SecondsFormat::Micros, true).into();
    }
    if let Some(customer) = resource.text(&[CUSTOMER_ATTRIBUTE]) {
        event[crate::CUSTOMER_EXTENSION] = customer.into();
    }
    Ok(Some(event))
}

#[cfg(test)]
mod tests;
