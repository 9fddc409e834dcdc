//! CloudEvents 1.0 events: raw JSON in, validated [`Event`] out.
//!
//! A raw event is only JSON; it becomes an [`Event`] through
//! [`validate_event`], which checks every attribute and reports every
//! problem with the attribute's name, so a sender can fix all of them at once.

use std::ops::RangeInclusive;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::canonical::canonical_json_into;

/// The extension attribute with which a provider key names the customer an
/// event belongs to. It routes the event and is not part of its content.
pub const CUSTOMER_EXTENSION: &str = "payoffcustomer";

const ID_BYTES_MAX: usize = 256;
const SOURCE_BYTES_MAX: usize = 1024;
const TYPE_BYTES_MAX: usize = 256;
const SUBJECT_BYTES_MAX: usize = 1024;
const EXTENSION_NAME_BYTES_MAX: usize = 20;

/// Limits on what one event and one request may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Largest canonical size of one event.
    pub event_bytes_max: usize,
    /// Most events in one request.
    pub batch_events_max: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            event_bytes_max: 256 * 1024,
            batch_events_max: 10_000,
        }
    }
}

/// One problem with one attribute of one event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The attribute, e.g. `time` or `data`.
    pub field: String,
    /// What is wrong with it, in words a sender can act on.
    pub reason: String,
}

impl FieldError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A problem of one event inside a request, located by its index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchError {
    /// Position of the event in the request, from 0.
    pub index: usize,
    /// The event's `id` when it had a readable one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub error: FieldError,
}

/// A validated CloudEvent.
///
/// `canonical` holds the RFC 8785 bytes of the event as stored: the
/// attributes as sent, with `time` normalised to UTC and the routing
/// extension [`CUSTOMER_EXTENSION`] removed. Two events are the same content
/// exactly when their canonical bytes are equal.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: Option<DateTime<Utc>>,
    /// The customer named by [`CUSTOMER_EXTENSION`], if any.
    pub customer: Option<String>,
    pub canonical: Vec<u8>,
}

impl Event {
    /// The stored JSON object, parsed back from the canonical bytes.
    pub fn to_json(&self) -> Value {
        serde_json::from_slice(&self.canonical).expect("canonical bytes are JSON")
    }

    /// Rebuilds an event from canonical bytes read back from storage.
    ///
    /// Verification uses this to check that the columns stored beside the
    /// bytes still say what the bytes say.
    pub fn from_canonical(canonical: &[u8]) -> Result<Event, FieldError> {
        let value: Value = serde_json::from_slice(canonical)
            .map_err(|e| FieldError::new("body", format!("stored bytes are not JSON: {e}")))?;
        let event = validate_event(
            value,
            &EventLimits {
                event_bytes_max: usize::MAX,
                batch_events_max: 1,
            },
        )
        .map_err(|mut errors| errors.remove(0))?;
        if event.canonical != canonical {
            return Err(FieldError::new(
                "body",
                "stored bytes are not in canonical form",
            ));
        }
        Ok(event)
    }
}

/// Parses one event from JSON bytes (structured mode).
pub fn parse_event(body: &[u8], limits: &EventLimits) -> Result<Event, Vec<BatchError>> {
    let value = parse_json(body).map_err(|e| vec![e])?;
    if !value.is_object() {
        return Err(vec![located(
            0,
            None,
            FieldError::new("event", "must be a JSON object"),
        )]);
    }
    validate_all(vec![value], limits).map(|mut v| v.remove(0))
}

/// Parses a batch: a JSON array of events, or with `allow_single` also one
/// object (plain `application/json` accepts both).
pub fn parse_event_batch(
    body: &[u8],
    allow_single: bool,
    limits: &EventLimits,
) -> Result<Vec<Event>, Vec<BatchError>> {
    let value = parse_json(body).map_err(|e| vec![e])?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(_) if allow_single => vec![value],
        _ => {
            let expected = if allow_single {
                "a JSON object or an array of objects"
            } else {
                "a JSON array of events"
            };
            return Err(vec![located(
                0,
                None,
                FieldError::new("body", format!("must be {expected}")),
            )]);
        }
    };
    if items.is_empty() {
        return Err(vec![located(
            0,
            None,
            FieldError::new("body", "the batch holds no events"),
        )]);
    }
    if items.len() > limits.batch_events_max {
        return Err(vec![located(
            limits.batch_events_max,
            None,
            FieldError::new(
                "body",
                format!(
                    "the batch holds {} events; at most {} are allowed per request",
                    items.len(),
                    limits.batch_events_max
                ),
            ),
        )]);
    }
    validate_all(items, limits)
}

fn parse_json(body: &[u8]) -> Result<Value, BatchError> {
    // serde_json validates UTF-8 itself; only a failed parse pays for the
    // second look that names an encoding problem precisely.
    serde_json::from_slice(body).map_err(|e| {
        let reason = match std::str::from_utf8(body) {
            Err(bad) => format!("is not valid UTF-8 (at byte {})", bad.valid_up_to()),
            Ok(_) => format!("is not valid JSON: {e}"),
        };
        located(0, None, FieldError::new("body", reason))
    })
}

fn located(index: usize, id: Option<String>, error: FieldError) -> BatchError {
    BatchError { index, id, error }
}

/// Validates every event and returns all problems of all events, or none.
fn validate_all(items: Vec<Value>, limits: &EventLimits) -> Result<Vec<Event>, Vec<BatchError>> {
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let id = item.get("id").and_then(Value::as_str).map(str::to_owned);
        match validate_event(item, limits) {
            Ok(event) => events.push(event),
            Err(es) => errors.extend(es.into_iter().map(|e| located(index, id.clone(), e))),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
    }
}

/// The years an event's `time` may name: a typo such as year 9999 would
/// otherwise sit in the ledger forever, in no period anyone closes.
const TIME_YEARS: RangeInclusive<i32> = 1970..=2999;

/// Validates one raw event (a JSON value) into an [`Event`].
pub fn validate_event(value: Value, limits: &EventLimits) -> Result<Event, Vec<FieldError>> {
    let Value::Object(mut map) = value else {
        return Err(vec![FieldError::new("event", "must be a JSON object")]);
    };
    let mut errors = Vec::new();

    match map.get("specversion") {
        Some(Value::String(v)) if v == "1.0" => {}
        Some(Value::String(v)) => errors.push(FieldError::new(
            "specversion",
            format!("must be \"1.0\", got \"{}\"", truncate(v)),
        )),
        Some(_) => errors.push(FieldError::new("specversion", "must be the string \"1.0\"")),
        None => errors.push(FieldError::new("specversion", "is required (\"1.0\")")),
    }
    let id = required_string(&map, "id", ID_BYTES_MAX, &mut errors);
    let source = required_string(&map, "source", SOURCE_BYTES_MAX, &mut errors);
    let event_type = required_string(&map, "type", TYPE_BYTES_MAX, &mut errors);
    let subject = optional_string(&map, "subject", SUBJECT_BYTES_MAX, &mut errors);
    optional_string(&map, "datacontenttype", 256, &mut errors);
    optional_string(&map, "dataschema", 2048, &mut errors);
    if map.contains_key("data") && map.contains_key("data_base64") {
        errors.push(FieldError::new(
            "data_base64",
            "must not be present together with data",
        ));
    }
    match map.get("data_base64") {
        None => {}
        Some(Value::String(v)) => {
            use base64::Engine as _;
            if let Err(e) = base64::engine::general_purpose::STANDARD.decode(v) {
                errors.push(FieldError::new(
                    "data_base64",
                    format!("is not base64 (RFC 4648, with padding): {e}"),
                ));
            }
        }
        Some(_) => errors.push(FieldError::new("data_base64", "must be a base64 string")),
    }

    let time = match map.get("time") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => {
            match DateTime::parse_from_rfc3339(t) {
                Ok(parsed) if !(TIME_YEARS.contains(&parsed.with_timezone(&Utc).year())) => {
                    errors.push(FieldError::new(
                        "time",
                        format!(
                            "\"{}\" is outside the years {} to {}",
                            truncate(t),
                            TIME_YEARS.start(),
                            TIME_YEARS.end()
                        ),
                    ));
                    None
                }
                Ok(parsed) => {
                    let utc = parsed.with_timezone(&Utc);
                    map.insert(
                        "time".into(),
                        Value::String(utc.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                    );
                    Some(utc)
                }
                Err(e) => {
                    errors.push(FieldError::new("time", format!("\"{}\" is not an RFC 3339 timestamp ({e}); example: 2026-11-03T14:05:00Z", truncate(t))));
                    None
                }
            }
        }
        Some(_) => {
            errors.push(FieldError::new(
                "time",
                "must be an RFC 3339 timestamp string",
            ));
            None
        }
    };
    if map.get("time").is_some_and(Value::is_null) {
        map.remove("time");
    }

    let customer = match map.remove(CUSTOMER_EXTENSION) {
        None => None,
        Some(Value::String(c)) if !c.is_empty() => Some(c),
        Some(_) => {
            errors.push(FieldError::new(
                CUSTOMER_EXTENSION,
                "must be a non-empty customer id string",
            ));
            None
        }
    };

    for (name, value) in &map {
        if is_context_attribute(name) {
            continue;
        }
        if name.len() > EXTENSION_NAME_BYTES_MAX
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            errors.push(FieldError::new(name, "is not a CloudEvents attribute; extension names are 1-20 lowercase letters or digits"));
        } else if !(value.is_string() || value.is_number() || value.is_boolean()) {
            errors.push(FieldError::new(
                name,
                "extension attributes must be a string, number or boolean",
            ));
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let mut canonical = Vec::with_capacity(256);
    canonical_json_into(&Value::Object(map), &mut canonical);
    if canonical.len() > limits.event_bytes_max {
        return Err(vec![FieldError::new(
            "event",
            format!(
                "is {} bytes; at most {} bytes are allowed per event",
                canonical.len(),
                limits.event_bytes_max
            ),
        )]);
    }
    Ok(Event {
        id: id.unwrap_or_default(),
        source: source.unwrap_or_default(),
        event_type: event_type.unwrap_or_default(),
        subject,
        time,
        customer,
        canonical,
    })
}

fn is_context_attribute(name: &str) -> bool {
    matches!(
        name,
        "specversion"
            | "id"
            | "source"
            | "type"
            | "subject"
            | "time"
            | "datacontenttype"
            | "dataschema"
            | "data"
            | "data_base64"
    )
}

fn required_string(
    map: &Map<String, Value>,
    field: &str,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match map.get(field) {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(field, "is required"));
            None
        }
        Some(_) => optional_string(map, field, max, errors),
    }
}

fn optional_string(
    map: &Map<String, Value>,
    field: &str,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match map.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => {
            errors.push(FieldError::new(field, "must not be empty"));
            None
        }
        Some(Value::String(s)) if s.len() > max => {
            errors.push(FieldError::new(
                field,
                format!("is {} bytes long; at most {max} are allowed", s.len()),
            ));
            None
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            errors.push(FieldError::new(
                field,
                "must not contain control characters (NUL, line breaks, tabs…)",
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= 64 {
        return s.to_owned();
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({"specversion": "1.0", "id": "e1", "source": "helpdesk", "type": "ticket.closed",
               "subject": "T-1", "time": "2026-11-03T15:05:00+01:00", "data": {"resolved_by": "ai"}})
    }

    type Patch = Box<dyn Fn(&mut Map<String, Value>)>;

    fn errors_of(mut patch: impl FnMut(&mut Map<String, Value>)) -> Vec<FieldError> {
        let mut v = valid();
        patch(v.as_object_mut().unwrap());
        validate_event(v, &EventLimits::default()).unwrap_err()
    }

    #[test]
    fn valid_event_normalises_time_to_utc() {
        let e = validate_event(valid(), &EventLimits::default()).unwrap();
        assert_eq!(e.time.unwrap().to_rfc3339(), "2026-11-03T14:05:00+00:00");
        assert_eq!(e.to_json()["time"], "2026-11-03T14:05:00Z");
        assert_eq!(e.subject.as_deref(), Some("T-1"));
    }

    #[test]
    fn same_instant_in_other_offset_has_same_content() {
        let mut other = valid();
        other["time"] = json!("2026-11-03T14:05:00Z");
        let a = validate_event(valid(), &EventLimits::default()).unwrap();
        let b = validate_event(other, &EventLimits::default()).unwrap();
        assert_eq!(a.canonical, b.canonical);
    }

    #[test]
    fn customer_extension_routes_but_is_not_content() {
        let mut routed = valid();
        routed[CUSTOMER_EXTENSION] = json!("acme");
        let a = validate_event(routed, &EventLimits::default()).unwrap();
        let b = validate_event(valid(), &EventLimits::default()).unwrap();
        assert_eq!(a.customer.as_deref(), Some("acme"));
        assert_eq!(a.canonical, b.canonical);
    }

    #[test]
    fn each_bad_attribute_is_named() {
        let cases: Vec<(&str, Patch)> = vec![
            (
                "id",
                Box::new(|m| {
                    m.remove("id");
                }),
            ),
            (
                "id",
                Box::new(|m| {
                    m.insert("id".into(), json!(7));
                }),
            ),
            (
                "id",
                Box::new(|m| {
                    m.insert("id".into(), json!(""));
                }),
            ),
            (
                "source",
                Box::new(|m| {
                    m.remove("source");
                }),
            ),
            (
                "type",
                Box::new(|m| {
                    m.insert("type".into(), json!(null));
                }),
            ),
            (
                "specversion",
                Box::new(|m| {
                    m.insert("specversion".into(), json!("0.3"));
                }),
            ),
            (
                "specversion",
                Box::new(|m| {
                    m.remove("specversion");
                }),
            ),
            (
                "time",
                Box::new(|m| {
                    m.insert("time".into(), json!("yesterday"));
                }),
            ),
            (
                "time",
                Box::new(|m| {
                    m.insert("time".into(), json!("2026-11-03 14:05"));
                }),
            ),
            (
                "subject",
                Box::new(|m| {
                    m.insert("subject".into(), json!(["T-1"]));
                }),
            ),
            (
                "Bad_Name",
                Box::new(|m| {
                    m.insert("Bad_Name".into(), json!("x"));
                }),
            ),
            (
                "nested",
                Box::new(|m| {
                    m.insert("nested".into(), json!({"a": 1}));
                }),
            ),
            (
                CUSTOMER_EXTENSION,
                Box::new(|m| {
                    m.insert(CUSTOMER_EXTENSION.into(), json!(1));
                }),
            ),
            (
                "data_base64",
                Box::new(|m| {
                    m.insert("data_base64".into(), json!("AA=="));
                }),
            ),
            (
                "data_base64",
                Box::new(|m| {
                    m.remove("data");
                    m.insert("data_base64".into(), json!("not base64!"));
                }),
            ),
            (
                "id",
                Box::new(|m| {
                    m.insert("id".into(), json!("e\u{0}1"));
                }),
            ),
            (
                "subject",
                Box::new(|m| {
                    m.insert("subject".into(), json!("T-1\nT-2"));
                }),
            ),
            (
                "time",
                Box::new(|m| {
                    m.insert("time".into(), json!("9999-12-31T23:59:59Z"));
                }),
            ),
            (
                "time",
                Box::new(|m| {
                    m.insert("time".into(), json!("1969-12-31T23:59:59Z"));
                }),
            ),
        ];
        for (field, patch) in cases {
            let errors = errors_of(patch);
            assert_eq!(errors.len(), 1, "{field}: {errors:?}");
            assert_eq!(errors[0].field, field, "{errors:?}");
        }
    }

    #[test]
    fn every_problem_of_an_event_is_reported() {
        let errors = errors_of(|m| {
            m.remove("id");
            m.remove("source");
            m.insert("time".into(), json!("soon"));
        });
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["id", "source", "time"]);
    }

    #[test]
    fn oversized_event_is_rejected() {
        let mut v = valid();
        v["data"] = json!({"text": "x".repeat(300 * 1024)});
        let errors = validate_event(v, &EventLimits::default()).unwrap_err();
        assert_eq!(errors[0].field, "event");
        assert!(errors[0].reason.contains("262144"), "{}", errors[0].reason);
    }

    #[test]
    fn batch_lists_every_bad_event_with_its_index() {
        let body = json!([valid(), {"specversion": "1.0", "id": "x", "source": "s"}, valid(), {"id": "y"}]);
        let errors = parse_event_batch(body.to_string().as_bytes(), false, &EventLimits::default())
            .unwrap_err();
        let located: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.index, e.error.field.as_str()))
            .collect();
        assert_eq!(
            located,
            [(1, "type"), (3, "specversion"), (3, "source"), (3, "type")]
        );
        assert_eq!(errors[0].id.as_deref(), Some("x"));
    }

    #[test]
    fn batch_over_the_count_limit_is_rejected_whole() {
        let limits = EventLimits {
            batch_events_max: 2,
            ..EventLimits::default()
        };
        let body = json!([valid(), valid(), valid()]);
        let errors = parse_event_batch(body.to_string().as_bytes(), false, &limits).unwrap_err();
        assert!(errors[0].error.reason.contains("at most 2"));
    }

    #[test]
    fn invalid_utf8_and_malformed_json_are_named() {
        let errors = parse_event(b"{\"id\": \"\xff\"}", &EventLimits::default()).unwrap_err();
        assert!(errors[0].error.reason.contains("UTF-8"), "{errors:?}");
        let errors = parse_event(b"{\"id\": ", &EventLimits::default()).unwrap_err();
        assert!(
            errors[0].error.reason.contains("not valid JSON"),
            "{errors:?}"
        );
    }

    #[test]
    fn plain_json_accepts_object_or_array_but_batch_mode_wants_array() {
        let one = valid().to_string();
        assert_eq!(
            parse_event_batch(one.as_bytes(), true, &EventLimits::default())
                .unwrap()
                .len(),
            1
        );
        assert!(parse_event_batch(one.as_bytes(), false, &EventLimits::default()).is_err());
    }

    #[test]
    fn canonical_bytes_round_trip_through_storage() {
        let e = validate_event(valid(), &EventLimits::default()).unwrap();
        let back = Event::from_canonical(&e.canonical).unwrap();
        assert_eq!(back, e);
        assert!(Event::from_canonical(
            br#"{"type":"a", "id":"1","source":"s","specversion":"1.0"}"#
        )
        .is_err());
    }
}
