//! `/v1/audit`: the audit trail, filtered; customer keys see their own
//! customer's records only.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use payoff_store::{AuditFilter, AuditRecord, AuditReport};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Action, Allowed, Caller};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::Params;
use crate::{blocking, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(verify))
}

const LIMIT_MAX: usize = 1000;

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Provider keys: only this customer's records.
    pub(crate) customer: Option<String>,
    /// A key id or `agent:<name>`.
    pub(crate) actor: Option<String>,
    /// Text the action contains, e.g. `contracts` or `send_reply`.
    pub(crate) action: Option<String>,
    /// `allow`, `deny` or `fail`.
    pub(crate) decision: Option<String>,
    pub(crate) since: Option<DateTime<Utc>>,
    pub(crate) until: Option<DateTime<Utc>>,
    /// `oldest` (default) or `newest` first.
    pub(crate) order: Option<String>,
    /// The `next_cursor` of the previous page (in the same order).
    pub(crate) cursor: Option<u64>,
    /// 1 to 1000, default 100.
    pub(crate) limit: Option<usize>,
}

/// One page of the audit records a caller may read, and the cursor of
/// the next: what the API lists and the dashboard shows.
pub(crate) async fn page(
    state: &AppState,
    caller: &Caller,
    q: AuditQuery,
) -> Result<(Vec<AuditRecord>, Option<u64>), ApiError> {
    caller.require(Action::ReadAudit)?;
    let customer = match (&caller.0.customer, q.customer) {
        (None, named) => named,
        (Some(_), named) => Some(caller.customer_scope(named.as_deref())?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=LIMIT_MAX).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit: must be 1 to {LIMIT_MAX}"),
        ));
    }
    if let Some(d) = &q.decision {
        if !["allow", "deny", "fail"].contains(&d.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "decision: must be allow, deny or fail",
            ));
        }
    }
    for (field, text) in [("actor", &q.actor), ("action", &q.action)] {
        if text.as_ref().is_some_and(|t| t.is_empty() || t.len() > 256) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("{field}: must be 1 to 256 characters"),
            ));
        }
    }
    let newest_first = match q.order.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "order: must be oldest or newest",
            ))
        }
    };
    let (after_sequence, before_sequence) = if newest_first {
        (None, q.cursor)
    } else {
        (q.cursor, None)
    };
    let filter = AuditFilter {
        customer,
        actor: q.actor,
        action: q.action,
        decision: q.decision,
        since: q.since,
        until: q.until,
        after_sequence,
        before_sequence,
        newest_first,
        limit: limit + 1,
    };
    let store = state.store.clone();
    let mut records = blocking(move || store.audit(&filter)).await?;
    let more = records.len() > limit;
    records.truncate(limit);
    let next_cursor = more.then(|| records.last().map(|r| r.sequence)).flatten();
    Ok((records, next_cursor))
}

/// A page of audit records.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Each record as the chain hashes it (`sequence`, `at`, `actor`,
    /// `role`, `customer`, `action`, `resource`, `decision`, `reason`,
    /// `policy_ids`), with its `hash`.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<Value>,
    /// Pass as `cursor` (in the same order) for the next page; `null` on
    /// the last page.
    pub next_cursor: Option<u64>,
}

/// Audit records, oldest first (or `order=newest`), each with its hash in
/// the chain.
#[utoipa::path(get, path = "/v1/audit", operation_id = "list_audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadAudit>,
    Params(q): Params<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let (records, next_cursor) = page(&state, &caller, q).await?;
    Ok(Json(AuditPage {
        records: records.iter().map(AuditRecord::to_json).collect(),
        next_cursor,
    }))
}

/// Recomputes the whole audit chain (provider keys only: it spans every
/// customer).
#[utoipa::path(get, path = "/v1/audit/verify", operation_id = "verify_audit", tag = "audit",
    responses((status = 200, body = AuditReport), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadAudit>,
) -> Result<Json<AuditReport>, ApiError> {
    if caller.0.customer.is_some() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the whole audit chain spans every customer; only provider keys may verify it",
        ));
    }
    let store = state.store.clone();
    let report = blocking(move || store.verify_audit()).await?;
    Ok(Json(report))
}
