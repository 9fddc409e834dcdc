//! The audit trail of the API: every request of a known key that changes
//! something or is refused leaves a record in the audit chain before its
//! answer leaves the server. Requests without a valid key are counted in
//! the metrics, not stored one by one.
//!
//! Successful event ingestion and assignments are not repeated here: the
//! customer's ledger is their record, and doubling the writes of the hot
//! path would halve its throughput.

use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use payoff_store::{AuditEntry, Principal};

use crate::problem::{ApiError, ErrorCode};
use crate::AppState;

/// Where the `Caller` extractor leaves who called, for the audit layer.
#[derive(Clone, Default)]
pub(crate) struct CallerSlot(pub Arc<Mutex<Option<Principal>>>);

/// What an error response says, for the audit layer.
#[derive(Clone)]
pub(crate) struct ProblemNote {
    pub code: &'static str,
    pub detail: String,
}

/// Appends `entry` to the audit chain; a failure is logged, never hidden.
pub(crate) async fn write(
    state: &AppState,
    entry: AuditEntry,
) -> Result<(), crate::problem::ApiError> {
    let store = state.store.clone();
    crate::blocking(move || store.append_audit(&entry).map(|_| ())).await
}

fn audited(method: &Method, route: &str, status: StatusCode) -> bool {
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return true;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    // The ledger is the record of accepted events and assignments and of
    // each model call through the gateway (its `llm.call`); an approval
    // decision, an agent's action and its result (through the API or the
    // MCP gateway) write their own, richer records.
    let recorded_elsewhere = route == "/v1/events"
        || route == "/api/v1/events"
        || route == "/v1/traces"
        || route.starts_with("/gateway/")
        || route == "/v1/assignments"
        || route.starts_with("/v1/approvals/")
        || route == "/v1/actions"
        || route == "/v1/actions/{id}/result"
        || route.starts_with("/mcp/")
        || route == "/ui/customers/{customer}/approvals/decide";
    // A dashboard form answers a success with a redirect.
    !(recorded_elsewhere && (status.is_success() || status.is_redirection()))
}

/// The customer a request's path or query names (a customer key's own
/// customer takes precedence over this).
fn customer_named(route: &str, request: &Request) -> Option<String> {
    let path = request.uri().path();
    for (template, actual) in route.split('/').zip(path.split('/')) {
        if template == "{customer}" {
            return Some(actual.to_owned());
        }
    }
    request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("customer="))
            .map(str::to_owned)
    })
}

pub(crate) async fn record(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let resource: String = request.uri().path().chars().take(512).collect();
    let customer_named = customer_named(&route, &request);

    let response = next.run(request).await;

    let status = response.status();
    if !audited(&method, &route, status) {
        return response;
    }
    let principal = slot.0.lock().expect("caller slot").clone();
    // A request with no valid key (or to no route) proves nothing about who
    // sent it: storing each one would let anyone write without limit into
    // the log of the tenant its path names. The metrics count them by route
    // and status instead.
    if principal.is_none() {
        return response;
    }
    let customer = principal
        .as_ref()
        .and_then(|p| p.customer.clone())
        .or(customer_named)
        .map(|c| c.chars().take(64).collect());
    let decision = match status {
        s if s.is_success() || s.is_redirection() => "allow",
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "deny",
        _ => "fail",
    };
    let reason = match response.extensions().get::<ProblemNote>() {
        Some(note) => format!("{} {}: {}", status.as_u16(), note.code, note.detail),
        None => status.as_u16().to_string(),
    };
    let entry = AuditEntry {
        at: state.now(),
        actor: principal
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |p| p.key_id.clone()),
        role: principal.as_ref().map(|p| p.role.as_str().to_owned()),
        customer,
        action: format!("{method} {route}"),
        resource,
        decision: decision.to_owned(),
        reason: reason.chars().take(1024).collect(),
        policy_ids: Vec::new(),
    };
    match write(&state, entry).await {
        Ok(()) => response,
        // A change must not stand unrecorded behind a success: the caller
        // learns that its record is missing (the change itself may stand).
        Err(e) => {
            tracing::error!(error = %e.detail, "the audit record of a request could not be written");
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the request was handled ({}) but its audit record could not be written: {}",
                    status.as_u16(),
                    e.detail
                ),
            )
            .into_response()
        }
    }
}
