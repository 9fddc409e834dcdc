//! One module per page. Each handler opens a [`Ctx`](super::Ctx) (role and
//! tenant checked), calls the functions the JSON routes call, and renders.

pub mod agents;
pub mod approvals;
pub mod audit;
pub mod contract;
pub mod customers;
pub mod disputes;
pub mod economics;
pub mod knowledge;
pub mod outcomes;
pub mod overview;
pub mod statements;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, NaiveDate, Utc};
use maud::{html, Markup};
use serde::de::DeserializeOwned;

use crate::dashboard::session::decode;
use crate::problem::{ApiError, ErrorCode};

/// A page's query string, with empty fields left out (a filter form sends
/// every field, filled or not); rejections name the field.
pub struct Filters<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Filters<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let fields: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, format!("query: {e}")))?;
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        decode(&fields)
            .map(Filters)
            .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.detail))
    }
}

/// The start (UTC) of a `YYYY-MM-DD` day a date field gives, or of the
/// day after it (`after`), for half-open ranges.
fn day_start(
    field: &str,
    text: Option<&str>,
    after: bool,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidQuery,
            format!("{field}: \"{text}\" is not a date (YYYY-MM-DD)"),
        )
    })?;
    let day = if after {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    Ok(Some(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()))
}

/// An outcome's state as a coloured word.
fn state_badge(state: &str) -> Markup {
    html! { span class=(format!("badge state-{state}")) { (state) } }
}

/// A short confirmation after a form, from the redirect's query.
fn flash(message: Option<String>) -> Markup {
    html! { @if let Some(m) = message { p.flash role="status" { (m) } } }
}
