//! A customer's own agent rules (Cedar): uploaded as versions, checked
//! against the schema first, and read back with the built-in rules they
//! add to.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use payoff_store::StoredPolicy;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Allowed};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::billing::scoped;
use crate::{blocking_with, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_policies, upload_policies))
}

/// The problem of rules that do not validate, each error with its position.
pub(crate) fn invalid_policy(errors: &payoff_policy::PolicyErrors) -> ApiError {
    let list: Vec<Value> = errors
        .problems
        .iter()
        .map(|p| json!({"line": p.line, "column": p.column, "message": p.message}))
        .collect();
    ApiError::new(ErrorCode::InvalidPolicy, errors.to_string()).with("errors", Value::Array(list))
}

/// A version of a customer's agent rules, as its upload stored it.
#[derive(Serialize, ToSchema)]
pub struct UploadedPolicies {
    pub customer: String,
    pub version: u32,
    /// Hex SHA-256 of the Cedar text as uploaded.
    pub sha256: String,
    /// The ids of its policies, as decisions name them
    /// (`<customer>.v<version>.<id>`).
    pub policy_ids: Vec<String>,
    /// The key id that uploaded it.
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
}

/// Uploads a new version of the customer's agent rules (Cedar text).
/// Nothing is stored unless every policy validates against the schema.
#[utoipa::path(post, path = "/v1/customers/{customer}/policies", tag = "policies",
    request_body(content = String, content_type = "application/cedar"),
    responses((status = 201, body = UploadedPolicies), (status = 400), (status = 401), (status = 403), (status = 404), (status = 413)),
    security(("bearer" = [])))]
pub async fn upload_policies(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManagePolicies>,
    Path(customer): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<UploadedPolicies>), ApiError> {
    let customer = scoped(&caller, &customer)?;
    if body.len() > payoff_policy::CUSTOMER_RULES_BYTES_MAX {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "agent rules are at most {} bytes",
                payoff_policy::CUSTOMER_RULES_BYTES_MAX
            ),
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidPolicy, "the rules are not UTF-8"))?
        .to_owned();
    let checked = state
        .agent_policies
        .builtin()
        .with_customer(&customer, &text)
        .map_err(|e| invalid_policy(&e))?;
    let by = caller.0.key_id.clone();
    let now = state.now();
    let stored = blocking_with(
        move |store| Ok(store.add_policy(&customer, &text, &by, now)?),
        &state,
    )
    .await?;
    let policy_ids = payoff_policy::as_decisions_name(
        &stored.customer,
        stored.version,
        &checked.customer_policy_ids(),
    );
    Ok((
        StatusCode::CREATED,
        Json(UploadedPolicies {
            customer: stored.customer,
            version: stored.version,
            sha256: stored.sha256,
            policy_ids,
            uploaded_by: stored.uploaded_by,
            uploaded_at: stored.uploaded_at,
        }),
    ))
}

/// A customer's agent rules: every version, and the built-in rules they
/// add to.
#[derive(Serialize, ToSchema)]
pub struct PolicyList {
    pub customer: String,
    /// The built-in rules, Cedar text.
    pub builtin: String,
    /// Each version as stored, oldest first: `customer`, `version`,
    /// `sha256`, the Cedar text as uploaded (`body`), `uploaded_by` and
    /// `uploaded_at`.
    #[schema(value_type = Vec<Object>)]
    pub versions: Vec<StoredPolicy>,
}

/// Every version of the customer's agent rules, oldest first; the last is
/// in force, beside the built-in rules.
#[utoipa::path(get, path = "/v1/customers/{customer}/policies", tag = "policies",
    responses((status = 200, body = PolicyList), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn list_policies(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadPolicies>,
    Path(customer): Path<String>,
) -> Result<Json<PolicyList>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let c = customer.clone();
    let versions = blocking_with(move |store| Ok(store.policies(&c)?), &state).await?;
    Ok(Json(PolicyList {
        customer,
        builtin: state.agent_policies.builtin().text().to_owned(),
        versions,
    }))
}
