//! Action authorization for any agent (see [`crate::actions`]): the
//! customer's action schema and rules, the question, the long-polled
//! answer, the result.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::actions::{self, ActionRequest, ActionState, ActionView, ResultRequest};
use crate::auth::{may, Action, Allowed, PresentedKey};
use crate::paging::{self, Walk};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::billing::scoped;
use crate::routes::policies::invalid_policy;
use crate::routes::{Body, Params};
use crate::{blocking_with, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ask, list))
        .routes(routes!(show))
        .routes(routes!(record_result))
        .routes(routes!(list_rules, upload_rules))
}

/// Asks whether an agent may act: `allow`, `deny` (with the policies
/// that decided) or `approval_required` (then wait on
/// `GET /v1/actions/{id}?wait=30s` or an `payoff.action.decided` webhook).
/// 201 when asked, 200 when a request with the same `request_key` asked
/// before.
#[utoipa::path(post, path = "/v1/actions", operation_id = "authorize_action", tag = "actions", request_body = ActionRequest,
    responses((status = 201, body = ActionView), (status = 200, body = ActionView), (status = 400), (status = 401), (status = 403), (status = 409)),
    security(("bearer" = [])))]
pub async fn ask(
    State(state): State<AppState>,
    key: PresentedKey,
    body: Result<Body<ActionRequest>, ApiError>,
) -> Result<(StatusCode, Json<ActionView>), ApiError> {
    // The key is checked with the decision's own reads (one blocking
    // step), but always before anything is said about the body: 401,
    // then 403, then 400.
    let req = match body {
        Ok(Body(req)) => req,
        Err(e) => {
            blocking_with(
                move |s| key.admit(s)?.require(Action::AuthorizeActions),
                &state,
            )
            .await?;
            return Err(e);
        }
    };
    let (asked, view) = actions::request(&state, req, move |s, req| {
        let caller = key.admit(s)?;
        caller.require(Action::AuthorizeActions)?;
        let customer = caller.customer_scope(req.customer.as_deref())?;
        Ok((caller.0, customer))
    })
    .await?;
    let status = if asked {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ShowQuery {
    /// Required with a provider key.
    customer: Option<String>,
    /// Wait up to this long for a pending approval to be decided:
    /// `30s`, `500ms` or seconds (at most 60 s).
    wait: Option<String>,
}

/// `30s`, `500ms`, `30`: at most [`actions::WAIT_MAX`].
fn wait_of(text: &str) -> Result<std::time::Duration, ApiError> {
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else {
        (text, 1000)
    };
    let ms = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .filter(|&ms| ms <= actions::WAIT_MAX.as_millis() as u64)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!("wait: \"{text}\" is not a duration of at most 60s (e.g. 30s, 500ms)"),
            )
        })?;
    Ok(std::time::Duration::from_millis(ms))
}

/// One action. With `wait`, a pending approval is answered when a person
/// decides it (or it expires), or when the wait is over, still pending.
#[utoipa::path(get, path = "/v1/actions/{id}", operation_id = "show_action", tag = "actions", params(("id" = String, Path), ShowQuery),
    responses((status = 200, body = ActionView), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadActions>,
    Path(id): Path<String>,
    Params(q): Params<ShowQuery>,
) -> Result<Json<ActionView>, ApiError> {
    let customer = caller.customer_scope(q.customer.as_deref())?;
    let wait = q
        .wait
        .as_deref()
        .map(wait_of)
        .transpose()?
        .unwrap_or_default();
    actions::wait(&state, &customer, &id, wait)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no action \"{id}\"")))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Required with a provider key.
    customer: Option<String>,
    /// allowed, denied, pending_approval, approved, rejected or expired.
    state: Option<String>,
    agent: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<usize>,
    /// Continue a listing: the `next_before` of the previous page.
    before: Option<u64>,
}

/// A page of a customer's actions, newest first.
#[derive(Serialize, ToSchema)]
pub struct ActionList {
    pub actions: Vec<ActionView>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// A customer's actions, newest first, a page at a time: `next_before`
/// (absent on the last page) continues it.
#[utoipa::path(get, path = "/v1/actions", operation_id = "list_actions", tag = "actions", params(ListQuery),
    responses((status = 200, body = ActionList), (status = 400), (status = 401), (status = 403)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadActions>,
    Params(q): Params<ListQuery>,
) -> Result<Json<ActionList>, ApiError> {
    let customer = caller.customer_scope(q.customer.as_deref())?;
    let wanted = q
        .state
        .as_deref()
        .map(|s| {
            ActionState::parse(s).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    "state: must be allowed, denied, pending_approval, approved, rejected or expired",
                )
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit: 1 to 1000"));
    }
    let page = blocking_with(
        move |s| {
            let mut page = Walk::new(limit);
            actions::walk_newest(s, &customer, q.before, |sequence, a| {
                let keep = wanted.is_none_or(|w| a.state == w)
                    && q.agent.as_ref().is_none_or(|g| *g == a.agent);
                page.visit(sequence, keep.then_some(a))
            })?;
            Ok(paging::merge(vec![page]))
        },
        &state,
    )
    .await?;
    Ok(Json(ActionList {
        actions: page.items,
        next_before: page.next_before,
    }))
}

/// Records what the agent did: `succeeded` or `failed`, with a detail.
/// Only an allowed or approved action takes a result, once. The record
/// (`payoff.action.completed`) is in the ledger under the action's
/// subject, where a contract can count it.
#[utoipa::path(post, path = "/v1/actions/{id}/result", operation_id = "record_action_result", tag = "actions", request_body = ResultRequest,
    params(("id" = String, Path)),
    responses((status = 201, body = ActionView), (status = 200, body = ActionView), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub async fn record_result(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::AuthorizeActions>,
    Path(id): Path<String>,
    Body(req): Body<ResultRequest>,
) -> Result<(StatusCode, Json<ActionView>), ApiError> {
    let customer = caller.customer_scope(req.customer.as_deref())?;
    let (recorded, view) = actions::complete(&state, &customer, &id, &caller.0, req).await?;
    let status = if recorded {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// A new version of a customer's action schema and rules: both Cedar.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesUpload {
    /// Cedar schema: the action types (outside any namespace, principal
    /// `Payoff::Agent`), their resources and contexts.
    schema: String,
    /// Cedar policies over that schema; a `permit` annotated `@approval`
    /// asks a person first.
    rules: String,
}

/// A version of a customer's action schema and rules, as its upload
/// stored it.
#[derive(Serialize, ToSchema)]
pub struct UploadedRules {
    pub customer: String,
    pub version: u32,
    /// Hex SHA-256 of the schema, a NUL byte, then the rules.
    pub sha256: String,
    /// The action types the schema declares: `name`, and the entity
    /// types it may act on (`resources`).
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<payoff_policy::ActionType>,
    /// The ids of its policies, as decisions name them
    /// (`<customer>.v<version>.<id>`).
    pub policy_ids: Vec<String>,
    /// The key id that uploaded it.
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
}

/// Uploads a new version of the customer's action schema and rules.
/// Nothing is stored unless both compile and every policy validates.
#[utoipa::path(post, path = "/v1/customers/{customer}/action-rules", operation_id = "upload_action_rules", tag = "actions", request_body = RulesUpload,
    params(("customer" = String, Path)),
    responses((status = 201, body = UploadedRules), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413)),
    security(("bearer" = [])))]
pub async fn upload_rules(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManagePolicies>,
    Path(customer): Path<String>,
    Body(upload): Body<RulesUpload>,
) -> Result<(StatusCode, Json<UploadedRules>), ApiError> {
    let customer = scoped(&caller, &customer)?;
    for (field, text) in [("schema", &upload.schema), ("rules", &upload.rules)] {
        if text.len() > payoff_policy::CUSTOMER_RULES_BYTES_MAX {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "{field}: at most {} bytes",
                    payoff_policy::CUSTOMER_RULES_BYTES_MAX
                ),
            ));
        }
    }
    let compiled = payoff_policy::ActionRules::compile(&customer, &upload.schema, &upload.rules)
        .map_err(|e| {
            let mut problem = invalid_policy(e.problems());
            problem.detail = format!("{}: {}", e.part(), problem.detail);
            problem
        })?;
    let by = caller.0.key_id.clone();
    let now = state.now();
    let stored = blocking_with(
        move |s| Ok(s.add_action_rules(&customer, &upload.schema, &upload.rules, &by, now)?),
        &state,
    )
    .await?;
    let policy_ids =
        payoff_policy::as_decisions_name(&stored.customer, stored.version, &compiled.policy_ids());
    Ok((
        StatusCode::CREATED,
        Json(UploadedRules {
            customer: stored.customer,
            version: stored.version,
            sha256: stored.sha256,
            actions: compiled.actions().to_vec(),
            policy_ids,
            uploaded_by: stored.uploaded_by,
            uploaded_at: stored.uploaded_at,
        }),
    ))
}

/// Every version of the customer's action schema and rules, oldest first;
/// the last is in force.
#[utoipa::path(get, path = "/v1/customers/{customer}/action-rules", operation_id = "list_action_rules", tag = "actions",
    params(("customer" = String, Path)),
    responses((status = 200, body = RulesList), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn list_rules(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadPolicies>,
    Path(customer): Path<String>,
) -> Result<Json<RulesList>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let c = customer.clone();
    let versions = blocking_with(move |s| Ok(s.action_rules(&c)?), &state).await?;
    Ok(Json(RulesList { customer, versions }))
}

/// Every version of a customer's action schema and rules, oldest first.
#[derive(Serialize, ToSchema)]
pub struct RulesList {
    pub customer: String,
    /// Each version as stored: `customer`, `version`, `sha256`, the Cedar
    /// `schema` and `rules` as uploaded, `uploaded_by` and `uploaded_at`.
    #[schema(value_type = Vec<Object>)]
    pub versions: Vec<payoff_store::StoredActionRules>,
}
