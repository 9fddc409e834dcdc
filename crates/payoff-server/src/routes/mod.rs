//! Routers, one per area of the API.

pub mod actions;
pub mod agents;
pub mod assignments;
pub mod audit;
pub mod billing;
pub mod customers;
pub mod economics;
pub mod events;
pub mod keys;
pub mod knowledge;
pub mod ledger;
pub mod operations;
pub mod policies;
pub mod traces;
pub mod webhooks;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::{ApiError, ErrorCode};

/// `Json` whose rejections are problem documents naming what is wrong.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as application/json",
            )),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    "the request body is over this route's size limit; send it in smaller parts",
                ))
            }
            Err(e) => Err(ApiError::new(ErrorCode::InvalidRequest, e.body_text())),
        }
    }
}

/// A JSON body that may be left out entirely (then `T::default()`), for
/// actions whose every field is optional.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalBody)
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("body: {e}")))
    }
}

/// `Query` whose rejections are problem documents naming the parameter.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::new(ErrorCode::InvalidQuery, e.body_text()))
            }
            Err(e) => Err(ApiError::new(ErrorCode::InvalidQuery, e.body_text())),
        }
    }
}

/// Whether a response should be CSV: `format=csv`, or no `format` and an
/// `Accept` header asking for `text/csv`.
pub(crate) fn wants_csv(
    format: Option<&str>,
    headers: &axum::http::HeaderMap,
) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("format: \"{other}\" is not json or csv"),
        )),
        None => Ok(headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"))),
    }
}
