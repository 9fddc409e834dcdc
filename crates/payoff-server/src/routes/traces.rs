//! `/v1/traces`: OpenTelemetry traces (OTLP/HTTP) as ledger events.
//!
//! An agent instrumented with OpenTelemetry points its OTLP exporter at
//! Payoff with its key in the `Authorization` header; its GenAI spans
//! become `llm.call`, `tool.call` and `agent.run` events
//! (`payoff_ledger::otlp`), stored like any other event. The reply is
//! OTLP's, in the request's encoding: its partial success counts the spans
//! that could not be recorded and says why, and carries the warnings of
//! calls stored that will cost nothing as sent (an unpriced model).

use std::io::Read as _;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use payoff_ledger::otlp::{self, Encoding};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Allowed};
use crate::problem::{ApiError, ErrorCode};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export))
}

/// Reasons listed one by one in a reply; the rest are counted.
const REASONS_MAX: usize = 20;

/// Receives an OTLP/HTTP trace export (protobuf or JSON, gzip or not).
///
/// GenAI spans (current and older OpenTelemetry semantic conventions, and
/// OpenInference's) become `llm.call`, `tool.call` and `agent.run` events;
/// other spans are skipped. The subject is the span's (else the resource's)
/// `payoff.subject` attribute, or the one `[traces] subject_attribute`
/// names; a provider key names the customer with the resource attribute
/// `payoff.customer`. A span sent again is stored once.
#[utoipa::path(post, path = "/v1/traces", operation_id = "export_traces", tag = "events",
    request_body(description = "An OTLP ExportTraceServiceRequest",
        content((String = "application/x-protobuf"), (serde_json::Value = "application/json"))),
    responses(
        (status = 200, description = "OTLP ExportTraceServiceResponse, in the request's encoding; its partialSuccess counts the spans not recorded and says why",
            content((otlp::ExportTraceServiceResponse = "application/json"), (String = "application/x-protobuf"))),
        (status = 400, description = "Not an OTLP export request; nothing stored"),
        (status = 401, description = "Missing or unknown key"),
        (status = 403, description = "Role may not ingest, or the resource names another customer"),
        (status = 409, description = "A span was stored before with different content; nothing stored"),
        (status = 413, description = "Body too large"),
        (status = 415, description = "Not protobuf or JSON, or an unknown content encoding")),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::IngestEvents>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    let encoding = Encoding::of(content_type).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type \"{content_type}\": send OTLP as application/x-protobuf or application/json"),
        )
    })?;
    let limit = state.config.body_bytes_max;
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the body exceeds {limit} bytes (uncompressed); export fewer spans per request"
            ),
        )
    };
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let body = match header_text(&headers, header::CONTENT_ENCODING) {
        "" | "identity" => body.to_vec(),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("body: not valid gzip ({e})"),
                    )
                })?;
            if out.len() > limit {
                return Err(too_large());
            }
            out
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("Content-Encoding \"{other}\": send the body as it is or gzip"),
            ))
        }
    };
    let request = otlp::decode(&body, encoding)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("body: {e}")))?;
    let read = otlp::events(&request, &state.config.traces);
    let limits = &state.config.limits;
    if read.events.len() > limits.batch_events_max {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request holds {} spans to record; at most {} are taken per request",
                read.events.len(),
                limits.batch_events_max
            ),
        ));
    }
    let mut rejected = read.rejected;
    let mut spans = Vec::with_capacity(read.events.len());
    let mut events = Vec::with_capacity(read.events.len());
    for (index, value) in read.events {
        if caller.0.customer.is_none() && value.get(payoff_ledger::CUSTOMER_EXTENSION).is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("resource attribute {}: is required when sending with a provider key: name the customer whose spans these are (span {index})", otlp::CUSTOMER_ATTRIBUTE),
            ));
        }
        match payoff_ledger::validate_event(value, limits) {
            Ok(event) => {
                spans.push(index);
                events.push(event);
            }
            Err(errors) => {
                let why = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                rejected.push((index, why));
            }
        }
    }
    let recorded = events.len();
    let skipped = read.spans - recorded - rejected.len();
    let mut reasons: Vec<(usize, String)> = Vec::new();
    if !events.is_empty() {
        let reply = super::events::store(&state, &caller, events).await?;
        reasons.extend(
            reply
                .warnings
                .into_iter()
                .map(|w| (spans[w.index], format!("{}: {}", w.code, w.detail))),
        );
    }
    for (result, n) in [
        ("recorded", recorded),
        ("skipped", skipped),
        ("rejected", rejected.len()),
    ] {
        if n > 0 {
            crate::Metrics::result_by(&state.metrics.otlp_spans, result, n as u64);
        }
    }
    rejected.sort();
    reasons.extend(rejected.iter().cloned());
    reasons.sort();
    let mut message: Vec<String> = reasons
        .iter()
        .take(REASONS_MAX)
        .map(|(index, why)| format!("span {index}: {why}"))
        .collect();
    if reasons.len() > REASONS_MAX {
        message.push(format!("and {} more", reasons.len() - REASONS_MAX));
    }
    let body = otlp::reply(encoding, rejected.len(), &message.join("\n"));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response())
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
}
