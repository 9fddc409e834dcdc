//! `/v1/customers`: the provider's list of customers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use payoff_accounting::customers::check_customer_id;
use payoff_store::Customer;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Allowed};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::Body;
use crate::{blocking, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    /// 1-64 lowercase letters, digits, `-`, `_`.
    pub id: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerView {
    pub id: String,
    pub name: String,
    pub created_at: chrono::DateTime<Utc>,
}

impl From<Customer> for CustomerView {
    fn from(c: Customer) -> Self {
        Self {
            id: c.id,
            name: c.name,
            created_at: c.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CustomerList {
    pub customers: Vec<CustomerView>,
}

const NAME_CHARS_MAX: usize = 200;

/// Creates a customer (provider roles).
#[utoipa::path(post, path = "/v1/customers", operation_id = "create_customer", tag = "customers", request_body = NewCustomer,
    responses((status = 201, body = CustomerView), (status = 400), (status = 401), (status = 403), (status = 409)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    _: Allowed<may::CreateCustomer>,
    Body(new): Body<NewCustomer>,
) -> Result<(StatusCode, Json<CustomerView>), ApiError> {
    check_customer_id(&new.id)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("id: {e}")))?;
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > NAME_CHARS_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("name: must be 1 to {NAME_CHARS_MAX} characters"),
        ));
    }
    let store = state.store.clone();
    let customer = blocking(move || store.create_customer(&new.id, &name, state.now())).await?;
    Ok((StatusCode::CREATED, Json(customer.into())))
}

/// Lists customers (provider roles).
#[utoipa::path(get, path = "/v1/customers", operation_id = "list_customers", tag = "customers",
    responses((status = 200, body = CustomerList), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    _: Allowed<may::ListCustomers>,
) -> Result<Json<CustomerList>, ApiError> {
    let store = state.store.clone();
    let customers = blocking(move || store.customers()).await?;
    Ok(Json(CustomerList {
        customers: customers.into_iter().map(Into::into).collect(),
    }))
}

/// One customer: provider roles, or that customer's own keys.
#[utoipa::path(get, path = "/v1/customers/{customer}", tag = "customers", params(("customer" = String, Path)),
    responses((status = 200, body = CustomerView), (status = 401), (status = 404)), security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadCustomer>,
    Path(customer): Path<String>,
) -> Result<Json<CustomerView>, ApiError> {
    let customer = caller.customer_scope(Some(&customer))?;
    let store = state.store.clone();
    let found = blocking(move || store.customer(&customer)).await?;
    found
        .map(|c| Json(c.into()))
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownCustomer, "unknown customer"))
}
