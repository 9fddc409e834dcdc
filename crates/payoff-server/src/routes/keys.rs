//! `/v1/keys`: API keys, shown once, stored hashed, revocable.
//!
//! An admin manages every key; an operator manages customer keys; a
//! customer admin manages the keys of its own customer. Nobody else may.

use std::str::FromStr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use payoff_store::{KeyInfo, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Allowed, Caller};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::{Body, Params};
use crate::{blocking, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    /// The customer the key acts for; absent for provider roles.
    pub customer: Option<String>,
    /// admin, operator, customer_admin, customer_viewer, agent or auditor.
    pub role: String,
    /// The knowledge groups this key reads as (e.g. `["finance"]`).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub key_id: String,
    pub role: String,
    pub customer: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyInfo> for KeyView {
    fn from(k: KeyInfo) -> Self {
        Self {
            key_id: k.key_id,
            role: k.role.to_string(),
            customer: k.customer,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key itself. It is shown only now; only its hash is kept.
    pub key: String,
    #[serde(flatten)]
    pub info: KeyView,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// Whether `caller` may hold power over a key of `role` for `customer`.
fn may_manage(caller: &Caller, role: Role, customer: Option<&str>) -> bool {
    match caller.0.role {
        Role::Admin => true,
        Role::Operator => !role.is_provider(),
        Role::CustomerAdmin => !role.is_provider() && caller.sees(customer) && customer.is_some(),
        _ => false,
    }
}

/// Creates a key and shows it once.
#[utoipa::path(post, path = "/v1/keys", operation_id = "create_key", tag = "keys", request_body = NewKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageKeys>,
    Body(request): Body<NewKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let role = Role::from_str(&request.role)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("role: {e}")))?;
    match (role.is_provider(), &request.customer) {
        (true, Some(_)) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("customer: a {role} key is a provider key and belongs to no customer"),
            ))
        }
        (false, None) => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("customer: a {role} key must name its customer"),
            ))
        }
        _ => {}
    }
    if !may_manage(&caller, role, request.customer.as_deref()) {
        if request.customer.is_some() && !caller.sees(request.customer.as_deref()) {
            return Err(ApiError::new(
                ErrorCode::UnknownCustomer,
                "unknown customer",
            ));
        }
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the role {} may not create {role} keys", caller.0.role),
        ));
    }
    let groups = match &request.groups {
        None => None,
        Some(groups) => {
            if groups.len() > 64 {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "groups: at most 64",
                ));
            }
            for g in groups {
                let ok = !g.is_empty()
                    && g.len() <= 64
                    && g.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:@-".contains(&b)
                    });
                if !ok {
                    return Err(ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("groups: \"{g}\" is not a group name (1-64 of a-z 0-9 _ . : @ -)"),
                    ));
                }
            }
            super::knowledge::check_acting_for(&state, &caller, "groups", groups).await?;
            Some(serde_json::to_string(groups).unwrap_or_default())
        }
    };
    let store = state.store.clone();
    let (new, info) = blocking(move || {
        let (new, info) = store.create_key(role, request.customer.as_deref(), state.now())?;
        if let Some(groups) = groups {
            store.set_key_groups(&info.key_id, &groups)?;
        }
        Ok((new, info))
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: new.key,
            info: info.into(),
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// Only the keys of this customer.
    customer: Option<String>,
}

/// Lists keys (never their secrets).
#[utoipa::path(get, path = "/v1/keys", operation_id = "list_keys", tag = "keys", params(KeyQuery),
    responses((status = 200, body = KeyList), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageKeys>,
    Params(query): Params<KeyQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let customer = match caller.0.customer {
        Some(_) => Some(caller.customer_scope(query.customer.as_deref())?),
        None => query.customer,
    };
    let store = state.store.clone();
    let keys = blocking(move || store.keys(customer.as_deref())).await?;
    let keys = keys
        .into_iter()
        .filter(|k| may_manage(&caller, k.role, k.customer.as_deref()))
        .map(Into::into)
        .collect();
    Ok(Json(KeyList { keys }))
}

/// Revokes a key at once.
#[utoipa::path(delete, path = "/v1/keys/{key_id}", operation_id = "revoke_key", tag = "keys", params(("key_id" = String, Path)),
    responses((status = 200, body = KeyView), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageKeys>,
    Path(key_id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let store = state.store.clone();
    let id = key_id.clone();
    let found = blocking(move || store.key(&id)).await?;
    let not_found = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no key \"{key_id}\" is visible to this key"),
        )
    };
    let key = found
        .filter(|k| caller.sees(k.customer.as_deref()))
        .ok_or_else(not_found)?;
    if !may_manage(&caller, key.role, key.customer.as_deref()) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "the role {} may not revoke {} keys",
                caller.0.role, key.role
            ),
        ));
    }
    let store = state.store.clone();
    let revoked = blocking(move || store.revoke_key(&key.key_id, state.now())).await?;
    Ok(Json(revoked.into()))
}
