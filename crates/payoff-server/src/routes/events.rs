//! `/v1/events`: ingest in every CloudEvents HTTP mode, and listing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Json;
use chrono::{DateTime, Utc};
use payoff_ledger::{
    decode_http, BatchError, Event, FieldError, HttpDecodeError, CUSTOMER_EXTENSION,
};
use payoff_store::{AppendError, AppendRequest, EventFilter, Routed};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Allowed, Caller};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::Params;
use crate::{blocking_with, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ingest, list))
        // OpenMeter's ingest path, so its clients (LiteLLM's OpenMeter
        // callback among them) need only Payoff's URL and key.
        .route("/api/v1/events", post(ingest))
}

/// The fate of one event of an accepted request.
#[derive(Serialize, ToSchema)]
pub struct EventResult {
    pub index: usize,
    pub id: String,
    pub source: String,
    /// `accepted` (stored now) or `duplicate` (stored before with the same content).
    pub status: &'static str,
    /// Its place in the customer's chain.
    pub sequence: u64,
}

#[derive(Serialize, ToSchema)]
pub struct IngestReply {
    pub accepted: usize,
    pub duplicates: usize,
    pub results: Vec<EventResult>,
    /// Stored events that will not be costed as sent: a model call whose
    /// model has no price, or without a model or token counts. Stored all
    /// the same, never silently counted as zero.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<EventWarning>,
}

/// Something to mend in a stored event.
#[derive(Serialize, ToSchema)]
pub struct EventWarning {
    pub index: usize,
    pub id: String,
    /// `unpriced_model`, `no_model` or `no_token_counts`.
    pub code: &'static str,
    pub detail: String,
}

/// The warnings of a request's model calls, as its events will be costed.
fn cost_warnings(
    prices: &payoff_billing::Prices,
    calls: &[(usize, String, chrono::DateTime<Utc>, Vec<u8>)],
) -> Vec<EventWarning> {
    calls
        .iter()
        .filter_map(|(index, id, time, canonical)| {
            let warn = |code, detail: String| EventWarning {
                index: *index,
                id: id.clone(),
                code,
                detail,
            };
            let Some(call) = payoff_ledger::ModelCall::read(canonical) else {
                return Some(warn(
                    "no_model",
                    "an llm.call without data.model (or with counts that are not whole numbers) costs nothing".into(),
                ));
            };
            if call.input_tokens + call.output_tokens + call.cached_input_tokens == 0 {
                return Some(warn(
                    "no_token_counts",
                    "no token counts (data.input_tokens, data.output_tokens, or prompt_tokens, completion_tokens): it costs nothing".into(),
                ));
            }
            payoff_billing::cost_of_call(prices, id, *time, &call)
                .warning
                .map(|w| warn("unpriced_model", w))
        })
        .collect()
}

/// A CloudEvent 1.0 as Payoff reads it. Documentation only: events are
/// checked by `payoff_ledger::validate_event`, which names every fault.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CloudEvent {
    /// `1.0`.
    specversion: String,
    /// Unique per `source`: a repeated (source, id) is stored once.
    id: String,
    source: String,
    /// What happened, e.g. `ticket.closed`; contract rules match on it.
    #[serde(rename = "type")]
    event_type: String,
    /// What it happened to (the ticket, the lead): outcomes are per subject.
    subject: Option<String>,
    /// RFC 3339, years 1970 to 2999; default: when it is stored.
    time: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    data: Option<Value>,
    /// Base64 (RFC 4648) data, instead of `data`.
    data_base64: Option<String>,
    /// Provider keys: the customer the event belongs to.
    payoffcustomer: Option<String>,
}

/// Ingests events. The reply is sent only once they are durable.
///
/// The body is a JSON array of CloudEvents (batch mode, shown here), one
/// CloudEvent as `application/cloudevents+json` or `application/json`
/// (structured mode), or the event's data with `ce-*` headers (binary mode).
#[utoipa::path(post, path = "/v1/events", operation_id = "ingest_events", tag = "events",
    request_body(description = "CloudEvents in batch mode; structured and binary modes are accepted too",
        content((Vec<CloudEvent> = "application/cloudevents-batch+json"))),
    responses(
        (status = 200, description = "Every event is stored (now or before)", body = IngestReply),
        (status = 400, description = "Invalid events; nothing stored"),
        (status = 401, description = "Missing or unknown key"),
        (status = 403, description = "Role may not ingest, or the event names another customer"),
        (status = 404, description = "Unknown customer"),
        (status = 409, description = "An id was reused with different content; nothing stored"),
        (status = 413, description = "Body too large"),
        (status = 415, description = "Unsupported content type")),
    security(("bearer" = [])))]
pub async fn ingest(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::IngestEvents>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<IngestReply>, ApiError> {
    let body = axum::body::to_bytes(body, state.config.body_bytes_max)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the body exceeds {} bytes; send fewer events per request",
                    state.config.body_bytes_max
                ),
            )
        })?;
    let events = decode(&headers, &body, &state)?;
    store(&state, &caller, events).await.map(Json)
}

/// Stores validated events as one request: the sender's rights over each,
/// its customer, the append, and the warnings of its model calls. Every
/// way events arrive (CloudEvents, OTLP traces) ends here.
pub(crate) async fn store(
    state: &AppState,
    caller: &Caller,
    events: Vec<Event>,
) -> Result<IngestReply, ApiError> {
    refuse_reserved_source(&events)?;
    refuse_foreign_groups(state, caller, &events).await?;
    let request = route(caller, events)?;
    let calls: Vec<(usize, String, DateTime<Utc>, Vec<u8>)> = request
        .events
        .iter()
        .enumerate()
        .filter(|(_, r)| r.event.event_type == payoff_billing::LLM_CALL)
        .map(|(i, r)| {
            let time = r.event.time.unwrap_or_else(|| state.now());
            (i, r.event.id.clone(), time, r.event.canonical.clone())
        })
        .collect();
    let (ids, sources): (Vec<String>, Vec<String>) = request
        .events
        .iter()
        .map(|r| (r.event.id.clone(), r.event.source.clone()))
        .unzip();
    let outcome = state.ledger.append(request).await?;
    state.projector_due.notify_one();
    match outcome {
        Ok(statuses) => {
            let duplicates = statuses.iter().filter(|s| s.duplicate).count();
            let accepted = statuses.len() - duplicates;
            state.metrics.events_accepted.inc_by(accepted as u64);
            state.metrics.events_duplicate.inc_by(duplicates as u64);
            let results = statuses
                .into_iter()
                .zip(ids.into_iter().zip(sources))
                .enumerate()
                .map(|(index, (s, (id, source)))| EventResult {
                    index,
                    id,
                    source,
                    status: if s.duplicate { "duplicate" } else { "accepted" },
                    sequence: s.sequence,
                })
                .collect();
            let warnings = if calls.is_empty() {
                Vec::new()
            } else {
                let prices =
                    blocking_with(|s| Ok(payoff_accounting::economics::prices(s)?), state).await?;
                cost_warnings(&prices, &calls)
            };
            for w in &warnings {
                crate::Metrics::result(&state.metrics.cost_warnings, w.code);
            }
            Ok(IngestReply {
                accepted,
                duplicates,
                results,
                warnings,
            })
        }
        Err(AppendError::Conflict {
            index,
            event_source,
            id,
        }) => {
            state.metrics.event_conflicts.inc();
            let detail = format!(
                "event {index} (source \"{event_source}\", id \"{id}\") was stored before with different content; nothing of this request was stored"
            );
            Err(ApiError::new(ErrorCode::EventConflict, detail).with(
                "event",
                json!({"index": index, "id": id, "source": event_source}),
            ))
        }
        Err(e @ AppendError::UnknownCustomer(_)) => {
            Err(ApiError::new(ErrorCode::UnknownCustomer, e.to_string()))
        }
    }
}

/// The source Payoff writes its own records under (dispute decisions) is
/// not open to senders: otherwise an agent could decide a dispute.
fn refuse_reserved_source(events: &[Event]) -> Result<(), ApiError> {
    let bad: Vec<BatchError> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.source == payoff_billing::PAYOFF_SOURCE)
        .map(|(index, e)| BatchError {
            index,
            id: Some(e.id.clone()),
            error: FieldError {
                field: "source".into(),
                reason: format!(
                    "\"{}\" is reserved for the records Payoff writes itself",
                    payoff_billing::PAYOFF_SOURCE
                ),
            },
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_events(bad))
    }
}

/// A ticket handed to the support agent reads the help centre as its
/// `data.groups`: the sender must be allowed to act for them.
async fn refuse_foreign_groups(
    state: &AppState,
    caller: &Caller,
    events: &[Event],
) -> Result<(), ApiError> {
    for (index, event) in events.iter().enumerate() {
        if event.event_type != crate::support::TICKET_CREATED {
            continue;
        }
        let body: Value = serde_json::from_slice(&event.canonical).unwrap_or_default();
        let groups = crate::support::ticket_groups(&body["data"]);
        let field = format!("event {index} (id \"{}\"): data.groups", event.id);
        super::knowledge::check_acting_for(state, caller, &field, &groups).await?;
    }
    Ok(())
}

/// Turns the body into events according to the CloudEvents HTTP binding.
fn decode(headers: &HeaderMap, body: &Bytes, state: &AppState) -> Result<Vec<Event>, ApiError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let pairs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    decode_http(content_type, &pairs, body, &state.config.limits).map_err(|e| match e {
        HttpDecodeError::UnsupportedMediaType(why) => {
            ApiError::new(ErrorCode::UnsupportedMediaType, why)
        }
        HttpDecodeError::Invalid(errors) => ApiError::invalid_events(errors),
    })
}

/// Assigns every event its customer: the key's own, or for a provider key
/// the one named by the `payoffcustomer` extension.
fn route(caller: &Caller, events: Vec<Event>) -> Result<AppendRequest, ApiError> {
    let mut missing = Vec::new();
    let mut routed = Vec::with_capacity(events.len());
    for (index, event) in events.into_iter().enumerate() {
        let customer = match (&caller.0.customer, &event.customer) {
            (Some(own), None) => own.clone(),
            (Some(own), Some(named)) if own == named => own.clone(),
            (Some(_), Some(named)) => {
                return Err(ApiError::new(
                    ErrorCode::CustomerMismatch,
                    format!("event {index} names customer \"{named}\" in {CUSTOMER_EXTENSION}, but this key may only send events for its own customer"),
                ))
            }
            (None, Some(named)) => named.clone(),
            (None, None) => {
                missing.push(BatchError {
                    index,
                    id: Some(event.id.clone()),
                    error: FieldError { field: CUSTOMER_EXTENSION.into(), reason: "is required when sending with a provider key: name the customer the event belongs to".into() },
                });
                continue;
            }
        };
        routed.push(Routed { customer, event });
    }
    if !missing.is_empty() {
        return Err(ApiError::invalid_events(missing));
    }
    Ok(AppendRequest::new(routed))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Required with a provider key: whose events.
    customer: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    subject: Option<String>,
    /// RFC 3339; events at or after.
    since: Option<String>,
    /// RFC 3339; events strictly before.
    until: Option<String>,
    /// 1 to 1000, default 100.
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ListedEvent {
    pub sequence: u64,
    pub recorded_at: DateTime<Utc>,
    /// Hex SHA-256 chain hash of this event.
    pub hash: String,
    /// The CloudEvent as stored.
    pub event: Value,
}

#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<ListedEvent>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

const LIST_LIMIT_MAX: usize = 1000;

/// Lists one customer's events in chain order.
#[utoipa::path(get, path = "/v1/events", operation_id = "list_events", tag = "events", params(ListQuery),
    responses((status = 200, body = EventList), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadEvents>,
    Params(query): Params<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let customer = caller.customer_scope(query.customer.as_deref())?;
    let time = |name: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
        v.as_deref()
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        ApiError::new(
                            ErrorCode::InvalidQuery,
                            format!("{name}: \"{t}\" is not an RFC 3339 timestamp ({e})"),
                        )
                    })
            })
            .transpose()
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=LIST_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit: must be between 1 and {LIST_LIMIT_MAX}, got {limit}"),
        ));
    }
    let after_sequence = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("cursor: \"{c}\" is not a cursor returned by this API"),
                )
            })
        })
        .transpose()?;
    let filter = EventFilter {
        since: time("since", &query.since)?,
        until: time("until", &query.until)?,
        customer: customer.clone(),
        event_type: query.event_type,
        subject: query.subject,
        after_sequence,
        limit,
    };
    let reader = caller.0.clone();
    let (known, page, drafts) = blocking_with(
        move |store| {
            Ok((
                store.head(&customer)?.is_some(),
                store.events(&filter)?,
                crate::support::DraftReader::of(store, &reader)?,
            ))
        },
        &state,
    )
    .await?;
    if !known {
        return Err(ApiError::new(
            ErrorCode::UnknownCustomer,
            "unknown customer",
        ));
    }
    let events = page
        .events
        .into_iter()
        .map(|e| ListedEvent {
            sequence: e.sequence,
            recorded_at: e.recorded_at,
            hash: hex::encode(e.hash),
            event: {
                let mut event = serde_json::from_slice(&e.canonical).unwrap_or(Value::Null);
                drafts.redact_event(&mut event);
                event
            },
        })
        .collect();
    Ok((
        StatusCode::OK,
        Json(EventList {
            events,
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        }),
    ))
}
