//! The provider roles' list of customers; customer roles go straight to
//! their own.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use payoff_accounting::customers::check_customer_id;
use serde::Deserialize;

use super::Filters;
use crate::dashboard::{format, layout, see_other, Viewer};
use crate::problem::{ApiError, ErrorCode};
use crate::{blocking, AppState};

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Result<Response, ApiError> {
    if let Some(own) = &viewer.principal().customer {
        return Ok(see_other(&format!("/ui/customers/{own}/overview")));
    }
    let store = state.store.clone();
    let customers = blocking(move || store.customers()).await?;
    let body = html! {
        @if customers.is_empty() {
            p { "No customer yet. Create one with " code { "payoff customers create ID --name NAME" } "." }
        } @else {
            p.muted { "Pick the customer to look at; every page then shows that customer only." }
            div.table-wrap { table {
                thead { tr { th { "Customer" } th { "Id" } th { "Since" } } }
                tbody {
                    @for c in &customers {
                        tr {
                            td { a href=(format!("/ui/customers/{}/overview", c.id)) { (c.name) } }
                            td.mono { (c.id) }
                            td { (format::datetime(c.created_at)) }
                        }
                    }
                }
            } }
        }
    };
    Ok(layout::plain(&viewer, "Customers", body).into_response())
}

#[derive(Deserialize)]
pub struct Pick {
    customer: Option<String>,
}

/// The customer picker's target.
pub async fn go(_viewer: Viewer, Filters(pick): Filters<Pick>) -> Result<Response, ApiError> {
    let id = pick.customer.unwrap_or_default();
    check_customer_id(&id).map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e))?;
    Ok(see_other(&format!("/ui/customers/{id}/overview")))
}

/// `/ui/customers/{customer}` opens its overview.
pub async fn open(_viewer: Viewer, Path(customer): Path<String>) -> Result<Response, ApiError> {
    check_customer_id(&customer).map_err(|e| ApiError::new(ErrorCode::NotFound, e))?;
    Ok(see_other(&format!("/ui/customers/{customer}/overview")))
}
