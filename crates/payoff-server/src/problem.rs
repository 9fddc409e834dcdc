//! Every error the API returns, as RFC 9457 `application/problem+json`.
//!
//! Codes are stable snake_case strings kept in one table, so clients can
//! match on them and the documentation can list them.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use payoff_ledger::BatchError;
use serde::Serialize;
use serde_json::Value;

macro_rules! error_codes {
    ($($variant:ident => ($status:ident, $code:literal, $title:literal)),* $(,)?) => {
        /// The stable identity of an API error.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $($variant),* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];
            pub fn status(self) -> StatusCode { match self { $(ErrorCode::$variant => StatusCode::$status),* } }
            pub fn code(self) -> &'static str { match self { $(ErrorCode::$variant => $code),* } }
            pub fn title(self) -> &'static str { match self { $(ErrorCode::$variant => $title),* } }
        }
    };
}

error_codes! {
    MissingApiKey => (UNAUTHORIZED, "missing_api_key", "An API key is required"),
    InvalidApiKey => (UNAUTHORIZED, "invalid_api_key", "The API key is unknown or revoked"),
    NotLoggedIn => (UNAUTHORIZED, "not_logged_in", "Log in to the dashboard first"),
    CsrfRejected => (FORBIDDEN, "csrf_rejected", "The form's security token is missing, stale or from another site"),
    Forbidden => (FORBIDDEN, "forbidden", "This key's role may not do this"),
    CustomerMismatch => (FORBIDDEN, "customer_mismatch", "This key belongs to another customer"),
    NotFound => (NOT_FOUND, "not_found", "Not found"),
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method_not_allowed", "This route does not answer this method"),
    UnknownCustomer => (NOT_FOUND, "unknown_customer", "Unknown customer"),
    InvalidEvents => (BAD_REQUEST, "invalid_events", "Some events are invalid; nothing was stored"),
    InvalidRequest => (BAD_REQUEST, "invalid_request", "The request is invalid"),
    InvalidQuery => (BAD_REQUEST, "invalid_query", "A query parameter is invalid"),
    UrlRefused => (UNPROCESSABLE_ENTITY, "url_refused", "The URL is refused by the egress policy"),
    EventConflict => (CONFLICT, "event_conflict", "An event with this source and id was stored with different content"),
    AlreadyExists => (CONFLICT, "already_exists", "It already exists"),
    AlreadyDecided => (CONFLICT, "already_decided", "It was decided already"),
    AgentPaused => (CONFLICT, "agent_paused", "The agent is paused"),
    NoActionRules => (CONFLICT, "no_action_rules", "The customer has declared no action types"),
    ActionPending => (CONFLICT, "action_pending", "The action waits for a person's approval"),
    ActionNotAllowed => (CONFLICT, "action_not_allowed", "The action was not allowed"),
    ModelNotAllowed => (FORBIDDEN, "model_not_allowed", "The customer's rules do not let this agent call this model"),
    InvalidContract => (BAD_REQUEST, "invalid_contract", "The contract is invalid; nothing was stored"),
    InvalidPolicy => (BAD_REQUEST, "invalid_policy", "The policies do not validate; nothing was stored"),
    NoContract => (NOT_FOUND, "no_contract", "The customer has no contract"),
    PeriodNotEnded => (CONFLICT, "period_not_ended", "The period has not ended"),
    PeriodOutOfOrder => (CONFLICT, "period_out_of_order", "Close the earlier periods first"),
    DisputeNotAllowed => (CONFLICT, "dispute_not_allowed", "The dispute cannot be raised or decided now"),
    PayloadTooLarge => (PAYLOAD_TOO_LARGE, "payload_too_large", "The request body is too large"),
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported content type"),
    RateLimited => (TOO_MANY_REQUESTS, "rate_limited", "Too many requests; retry after the time given"),
    BudgetExceeded => (TOO_MANY_REQUESTS, "budget_exceeded", "A budget stops further spending this period"),
    UnknownModel => (NOT_FOUND, "unknown_model", "No upstream of the gateway serves this model"),
    UpstreamFailed => (BAD_GATEWAY, "upstream_failed", "The model's upstream could not be reached or answered nonsense"),
    UpstreamTimeout => (GATEWAY_TIMEOUT, "upstream_timeout", "The model's upstream did not answer in time"),
    Unavailable => (SERVICE_UNAVAILABLE, "unavailable", "The service cannot store data right now"),
    InvariantBroken => (INTERNAL_SERVER_ERROR, "invariant_broken", "An internal consistency check failed; nothing was written"),
}

/// An API error: a code, a sentence for a person, and optional details.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub extra: Option<(&'static str, Value)>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    code: &'a str,
    detail: &'a str,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            extra: None,
        }
    }

    pub fn with(mut self, name: &'static str, value: Value) -> Self {
        self.extra = Some((name, value));
        self
    }

    /// A 400 listing every bad event with its index, field and reason.
    pub fn invalid_events(errors: Vec<BatchError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!(
                "event {}: {} {}",
                one.index, one.error.field, one.error.reason
            ),
            many => format!("{} problems in the events; see `errors`", many.len()),
        };
        ApiError::new(ErrorCode::InvalidEvents, detail)
            .with("errors", serde_json::to_value(errors).unwrap_or_default())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let problem = Problem {
            kind: format!("https://payoff.dev/errors#{}", self.code.code()),
            title: self.code.title(),
            status: status.as_u16(),
            code: self.code.code(),
            detail: &self.detail,
        };
        let mut body = serde_json::to_value(&problem).unwrap_or_default();
        if let (Some((name, value)), Some(map)) = (self.extra, body.as_object_mut()) {
            map.insert(name.to_owned(), value);
        }
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(crate::audit::ProblemNote {
            code: self.code.code(),
            detail: self.detail,
        });
        response
    }
}

impl From<payoff_store::StoreError> for ApiError {
    fn from(e: payoff_store::StoreError) -> Self {
        use payoff_store::StoreError as S;
        match e {
            S::AlreadyExists { .. } => ApiError::new(ErrorCode::AlreadyExists, e.to_string()),
            S::NotFound {
                what: "customer", ..
            } => ApiError::new(ErrorCode::UnknownCustomer, e.to_string()),
            S::NotFound { .. } => ApiError::new(ErrorCode::NotFound, e.to_string()),
            S::Invariant(_) => {
                tracing::error!(error = %e, "storage invariant broken");
                ApiError::new(ErrorCode::InvariantBroken, e.to_string())
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                ApiError::new(ErrorCode::Unavailable, format!("{other}; retry later"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_errors_are_4xx_or_503_or_the_gateways_or_a_broken_invariant()
    {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.code()), "duplicate {}", code.code());
            assert!(code
                .code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            let s = code.status().as_u16();
            // 502 and 504 say only that a model's upstream failed.
            let upstream = matches!(code, ErrorCode::UpstreamFailed | ErrorCode::UpstreamTimeout);
            // 500 says only that a production assertion stopped an operation.
            let invariant = matches!(code, ErrorCode::InvariantBroken);
            assert!(
                (400..500).contains(&s)
                    || s == 503
                    || upstream && (s == 502 || s == 504)
                    || invariant && s == 500,
                "{}",
                code.code()
            );
        }
    }
}
