//! Prices, economics, budgets and ROI.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use payoff_accounting::customers::check_customer_id;
use payoff_accounting::economics;
use payoff_billing::PriceTable;
use payoff_store::{Budget, StoredPriceTable};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Allowed, Caller};
use crate::problem::{ApiError, ErrorCode};
use crate::records::{BudgetCrossing, OwnRecord};
use crate::routes::{wants_csv, Body, Params};
use crate::{blocking_with, record_own, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_prices, upload_prices))
        .routes(routes!(show_economics))
        .routes(routes!(list_budgets, set_budgets))
        .routes(routes!(check_budget))
        .routes(routes!(show_roi))
}

fn scoped(caller: &Caller, customer: &str) -> Result<String, ApiError> {
    check_customer_id(customer).map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e))?;
    caller.customer_scope(Some(customer))
}

/// A price table version as its upload stored it.
#[derive(Serialize, ToSchema)]
pub struct UploadedPrices {
    pub version: u32,
    /// When it takes effect.
    pub effective: DateTime<Utc>,
}

/// Stores a new version of the model price table (TOML with `effective`
/// and `[[model]]` entries). It may not take effect in the past, so costs
/// already incurred are never re-priced.
#[utoipa::path(post, path = "/v1/prices", tag = "economics",
    request_body(content = String, content_type = "application/toml"),
    responses((status = 201, body = UploadedPrices), (status = 400), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn upload_prices(
    State(state): State<AppState>,
    _: Allowed<may::ManagePrices>,
    body: Bytes,
) -> Result<(StatusCode, Json<UploadedPrices>), ApiError> {
    if body.len() > economics::PRICE_TABLE_BYTES_MAX {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "a price table is at most {} bytes",
                economics::PRICE_TABLE_BYTES_MAX
            ),
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "the price table is not UTF-8"))?
        .to_owned();
    let now = state.now();
    let stored = blocking_with(
        move |store| {
            economics::store_prices(store, &text, now).map_err(|e| match e {
                economics::PricesError::Store(s) => s.into(),
                other => ApiError::new(ErrorCode::InvalidRequest, other.to_string()),
            })
        },
        &state,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadedPrices {
            version: stored.version,
            effective: stored.effective,
        }),
    ))
}

/// The model prices Payoff costs calls with.
#[derive(Serialize, ToSchema)]
pub struct PriceList {
    /// The built-in table, in force before any version was stored.
    #[schema(value_type = Object)]
    pub defaults: PriceTable,
    /// Each stored version: `version`, `effective`, the TOML text
    /// (`body`) and `uploaded_at`.
    #[schema(value_type = Vec<Object>)]
    pub versions: Vec<StoredPriceTable>,
}

/// The default prices and every stored version.
#[utoipa::path(get, path = "/v1/prices", tag = "economics",
    responses((status = 200, body = PriceList), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn list_prices(
    State(state): State<AppState>,
    _: Allowed<may::ReadEconomics>,
) -> Result<Json<PriceList>, ApiError> {
    let versions = blocking_with(move |store| Ok(store.price_tables()?), &state).await?;
    Ok(Json(PriceList {
        defaults: PriceTable::defaults(),
        versions,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// e.g. `2026-10`.
    period: String,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// Revenue by line, cost by model, category, agent and outcome kind, the
/// cost of subjects without an outcome, gross margin (provider roles).
#[utoipa::path(get, path = "/v1/customers/{customer}/economics", tag = "economics", params(PeriodQuery),
    responses((status = 200, description = "The period's economics", body = economics::Economics),
        (status = 400), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn show_economics(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadEconomics>,
    Path(customer): Path<String>,
    Params(q): Params<PeriodQuery>,
) -> Result<Json<economics::Economics>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let now = state.now();
    let report = blocking_with(
        move |store| Ok(economics::economics(store, &customer, &q.period, now)?),
        &state,
    )
    .await?;
    Ok(Json(report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// USD per period.
    limit: String,
    warn_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    /// The whole customer's limit.
    customer: Option<Limit>,
    /// Limits per agent name.
    #[serde(default)]
    agents: BTreeMap<String, Limit>,
}

fn check_limit(who: &str, l: &Limit) -> Result<(), ApiError> {
    let bad = |field: &str, why: &str| {
        Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{who}.{field}: {why}"),
        ))
    };
    let limit = match Decimal::from_str(&l.limit) {
        Ok(d) if !d.is_sign_negative() => d,
        _ => return bad("limit", "must be a decimal amount of USD, 0 or more"),
    };
    if let Some(w) = &l.warn_at {
        match Decimal::from_str(w) {
            Ok(d) if !d.is_sign_negative() && d <= limit => {}
            _ => {
                return bad(
                    "warn_at",
                    "must be a decimal amount between 0 and the limit",
                )
            }
        }
    }
    Ok(())
}

/// A customer's spending limits per period.
#[derive(Serialize, ToSchema)]
pub struct BudgetList {
    /// Each limit: `customer`, `agent` (`*` for the whole customer),
    /// `limit` and `warn_at` (USD, decimals as text) and `updated_at`.
    #[schema(value_type = Vec<Object>)]
    pub budgets: Vec<Budget>,
}

/// Sets the customer's budget and its agents' budgets for each period.
#[utoipa::path(put, path = "/v1/customers/{customer}/budgets", tag = "economics",
    responses((status = 200, body = BudgetList), (status = 400), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn set_budgets(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageBudgets>,
    Path(customer): Path<String>,
    Body(req): Body<BudgetRequest>,
) -> Result<Json<BudgetList>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let mut rows = Vec::new();
    if let Some(l) = &req.customer {
        check_limit("customer", l)?;
        rows.push(("*".to_owned(), l));
    }
    for (agent, l) in &req.agents {
        if agent.is_empty() || agent == "*" || agent.len() > 100 {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("agents: \"{agent}\" is not an agent name"),
            ));
        }
        check_limit(&format!("agents.{agent}"), l)?;
        rows.push((agent.clone(), l));
    }
    if rows.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "give `customer` and/or `agents` limits",
        ));
    }
    let budgets: Vec<Budget> = rows
        .into_iter()
        .map(|(agent, l)| Budget {
            customer: customer.clone(),
            agent,
            limit: l.limit.clone(),
            warn_at: l.warn_at.clone(),
            updated_at: state.now(),
        })
        .collect();
    let id = customer.clone();
    let budgets = blocking_with(
        move |store| {
            for b in &budgets {
                store.put_budget(b)?;
            }
            Ok(store.budgets(&id)?)
        },
        &state,
    )
    .await?;
    Ok(Json(BudgetList { budgets }))
}

#[utoipa::path(get, path = "/v1/customers/{customer}/budgets", tag = "economics",
    responses((status = 200, body = BudgetList), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn list_budgets(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadEconomics>,
    Path(customer): Path<String>,
) -> Result<Json<BudgetList>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let budgets = blocking_with(move |store| Ok(store.budgets(&customer)?), &state).await?;
    Ok(Json(BudgetList { budgets }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckQuery {
    /// Required with a provider key.
    customer: Option<String>,
    agent: Option<String>,
}

/// Allow or deny: may this agent spend more for this customer now?
#[utoipa::path(get, path = "/v1/budgets/check", tag = "economics", params(CheckQuery),
    responses((status = 200, description = "The answer", body = economics::BudgetCheck),
        (status = 400), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn check_budget(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::CheckBudget>,
    Params(q): Params<CheckQuery>,
) -> Result<Json<economics::BudgetCheck>, ApiError> {
    let customer = caller.customer_scope(q.customer.as_deref())?;
    let (id, agent) = (customer.clone(), q.agent.clone());
    let now = state.now();
    let answer = blocking_with(
        move |store| Ok(economics::check_budget(store, &id, agent.as_deref(), now)?),
        &state,
    )
    .await?;
    if answer.warning || !answer.allow {
        record_budget_event(&state, &customer, &answer).await?;
    }
    Ok(Json(answer))
}

/// A budget crossing its warning threshold or its limit is recorded in the
/// ledger once per day and scope (`payoff.budget.warning` or
/// `payoff.budget.exceeded`), where alerting can pick it up.
async fn record_budget_event(
    state: &AppState,
    customer: &str,
    answer: &economics::BudgetCheck,
) -> Result<(), ApiError> {
    let record = OwnRecord::Budget {
        exceeded: !answer.allow,
        crossing: BudgetCrossing {
            agent: answer.agent.clone(),
            period: answer.period.clone(),
            limit: answer.limit,
            warn_at: answer.warn_at,
        },
    };
    let day = state.now().date_naive();
    let scope = answer.agent.as_deref().unwrap_or("*");
    let event = record.to_event(
        &format!("{}/{scope}/{day}", record.event_type()),
        None,
        day.and_time(chrono::NaiveTime::MIN).and_utc(),
    );
    // Recorded already today (perhaps with other figures): that one stands.
    let _ = record_own(state, customer, event).await?;
    Ok(())
}

/// Outcomes delivered, amount billed, price per outcome, saving against
/// the customer's baseline and the licence it replaces. `format=csv` or
/// `Accept: text/csv` for CSV.
#[utoipa::path(get, path = "/v1/customers/{customer}/roi", tag = "economics", params(PeriodQuery),
    responses((status = 200, description = "The period's return, or the same as CSV",
        content((economics::Roi = "application/json"), (String = "text/csv"))),
        (status = 400), (status = 401), (status = 404)), security(("bearer" = [])))]
pub async fn show_roi(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadBilling>,
    Path(customer): Path<String>,
    headers: HeaderMap,
    Params(q): Params<PeriodQuery>,
) -> Result<Response, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let csv = wants_csv(q.format.as_deref(), &headers)?;
    let period = q.period.clone();
    let now = state.now();
    let roi = blocking_with(
        move |store| Ok(economics::roi(store, &customer, &period, now)?),
        &state,
    )
    .await?;
    Ok(if csv {
        ([(header::CONTENT_TYPE, "text/csv")], roi.csv()).into_response()
    } else {
        Json(roi).into_response()
    })
}
