//! `/v1/ledger/head`: the end of a customer's hash chain.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Allowed};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::Params;
use crate::{blocking, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(head))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HeadQuery {
    /// Required with a provider key.
    customer: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HeadView {
    pub customer: String,
    /// Number of events in the chain.
    pub sequence: u64,
    /// Hex SHA-256 of the last link (64 zeros for an empty chain).
    pub hash: String,
}

/// The customer's chain head: publish it, and the history before it is pinned.
#[utoipa::path(get, path = "/v1/ledger/head", tag = "ledger", params(HeadQuery),
    responses((status = 200, body = HeadView), (status = 400), (status = 401), (status = 404)), security(("bearer" = [])))]
pub async fn head(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadLedgerHead>,
    Params(query): Params<HeadQuery>,
) -> Result<Json<HeadView>, ApiError> {
    let customer = caller.customer_scope(query.customer.as_deref())?;
    let store = state.store.clone();
    let id = customer.clone();
    let head = blocking(move || store.head(&id))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownCustomer, "unknown customer"))?;
    Ok(Json(HeadView {
        customer,
        sequence: head.sequence,
        hash: head.hash_hex(),
    }))
}
