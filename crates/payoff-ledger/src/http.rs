//! The CloudEvents HTTP binding: a request's `Content-Type`, `ce-*`
//! headers and body become events. Pure, so the whole door events come
//! through is fuzzed (`fuzz/`) without a server.

use base64::Engine;
use serde_json::{Map, Value};

use crate::event::{parse_event, parse_event_batch, validate_event};
use crate::{BatchError, Event, EventLimits, FieldError};

/// Why a request's body is not events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpDecodeError {
    /// The media type is not one events arrive in; the text says which are.
    UnsupportedMediaType(String),
    /// Events that are not valid, each named by index and attribute.
    Invalid(Vec<BatchError>),
}

/// Decodes one HTTP request's events. `headers` are the request's headers
/// (lower-case names, raw values); with `ce-specversion` among them the
/// request is in binary mode, else the media type picks structured
/// (`application/cloudevents+json`) or batch mode
/// (`application/cloudevents-batch+json`, or `application/json` holding
/// one event or an array).
pub fn decode_http(
    content_type: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    limits: &EventLimits,
) -> Result<Vec<Event>, HttpDecodeError> {
    let media = media_type(content_type);
    if headers.iter().any(|(name, _)| *name == "ce-specversion") {
        return binary_mode(headers, content_type, &media, body, limits).map(|e| vec![e]);
    }
    let parsed = match media.as_str() {
        "application/cloudevents+json" => parse_event(body, limits).map(|e| vec![e]),
        "application/cloudevents-batch+json" => parse_event_batch(body, false, limits),
        "application/json" => parse_event_batch(body, true, limits),
        "" => return Err(HttpDecodeError::UnsupportedMediaType("missing Content-Type; use application/cloudevents+json, application/cloudevents-batch+json, application/json, or binary mode with ce-* headers".into())),
        other => return Err(HttpDecodeError::UnsupportedMediaType(format!("Content-Type {other} is not accepted without ce-* headers; use application/cloudevents+json, application/cloudevents-batch+json or application/json"))),
    };
    parsed.map_err(HttpDecodeError::Invalid)
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Binary mode: attributes in `ce-*` headers (percent-encoded), the body
/// is the data.
fn binary_mode(
    headers: &[(&str, &[u8])],
    content_type: &str,
    media: &str,
    body: &[u8],
    limits: &EventLimits,
) -> Result<Event, HttpDecodeError> {
    let invalid = |field: &str, reason: &str| {
        HttpDecodeError::Invalid(vec![BatchError {
            index: 0,
            id: None,
            error: FieldError {
                field: field.into(),
                reason: reason.into(),
            },
        }])
    };
    let mut map = Map::new();
    for &(name, value) in headers {
        let Some(attribute) = name.strip_prefix("ce-") else {
            continue;
        };
        // What HTTP allows in a header value that a text can carry.
        if !value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(invalid(attribute, "header value is not visible ASCII"));
        }
        let value = std::str::from_utf8(value).expect("checked ASCII");
        let decoded = percent_decode(value)
            .ok_or_else(|| invalid(attribute, "header value has an invalid percent-encoding"))?;
        map.insert(attribute.to_owned(), Value::String(decoded));
    }
    if !content_type.is_empty() {
        map.insert(
            "datacontenttype".into(),
            Value::String(content_type.to_owned()),
        );
    }
    if !body.is_empty() {
        let declared_json = media == "application/json" || media.ends_with("+json");
        let json = if declared_json {
            Some(serde_json::from_slice::<Value>(body).map_err(|e| {
                invalid(
                    "data",
                    &format!("the body is declared JSON but is not valid JSON: {e}"),
                )
            })?)
        } else if media.is_empty() {
            // No Content-Type (the CloudEvents SDKs send none in binary
            // mode when the data is a dict): JSON data when the body is
            // JSON, as the SDKs' own readers take it.
            serde_json::from_slice::<Value>(body).ok()
        } else {
            None
        };
        if let Some(data) = json {
            map.insert("data".into(), data);
        } else if let Ok(text) = std::str::from_utf8(body) {
            map.insert("data".into(), Value::String(text.to_owned()));
        } else {
            map.insert(
                "data_base64".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            );
        }
    }
    validate_event(Value::Object(map), limits).map_err(|errors| {
        HttpDecodeError::Invalid(
            errors
                .into_iter()
                .map(|error| BatchError {
                    index: 0,
                    id: None,
                    error,
                })
                .collect(),
        )
    })
}

/// `%XX` escapes (two hex digits each) decoded; `None` when an escape is
/// cut short or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_need_two_hex_digits() {
        assert_eq!(percent_decode("a%20b%C3%A9").as_deref(), Some("a bé"));
        for bad in ["%", "%2", "%+1", "%-1", "%zz", "%C3"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }
}
