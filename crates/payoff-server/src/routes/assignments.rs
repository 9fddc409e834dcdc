//! Holdout assignments: which arm a subject is in, decided by a stable
//! hash, so every node and every retry gives the same answer with no
//! shared state. The first assignment of a subject is recorded in the
//! ledger (`payoff.assignment`), which is what estimation reads.

use axum::extract::{Path, State};
use axum::Json;
use chrono::DurationRound;
use payoff_accounting::billing::Versions;
use payoff_billing::attribution::{assign, Arm};
use payoff_billing::{Assigned, Record, Released};
use payoff_store::AppendRequest;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Allowed};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::{Body, Params};
use crate::{blocking_with, own_event, record_own, AppState};

/// Most subjects in one batch request.
const BATCH_MAX: usize = 10_000;
const SUBJECT_CHARS_MAX: usize = 256;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(one))
        .routes(routes!(batch))
        .routes(routes!(release))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    experiment: String,
}

/// A holdout line released for a period.
#[derive(Serialize, ToSchema)]
pub struct Release {
    pub customer: String,
    pub period: String,
    pub experiment: String,
    /// Always true: released now, or by an earlier release that stands.
    pub released: bool,
}

/// An operator releases a holdout line held for a sample-ratio mismatch,
/// before the period closes. The release is a ledger event dated at the
/// period's last second: it is a statement about that period.
#[utoipa::path(post, path = "/v1/customers/{customer}/periods/{period}/release", tag = "attribution",
    responses((status = 200, body = Release), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn release(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::CloseStatements>,
    Path((customer, period)): Path<(String, String)>,
    Body(req): Body<ReleaseRequest>,
) -> Result<Json<Release>, ApiError> {
    let customer = caller.customer_scope(Some(&customer))?;
    let (id, experiment) = (customer.clone(), req.experiment.clone());
    let period = blocking_with(
        move |store| {
            let versions = Versions::load(store, &id)?;
            let period = versions.period(&period)?;
            if versions.latest().experiment(&experiment).is_none() {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("the contract has no holdout experiment \"{experiment}\""),
                ));
            }
            if store
                .statement_summaries(&id)?
                .iter()
                .any(|s| s.period == period.to_string())
            {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("{period} is closed; its statement cannot change"),
                ));
            }
            Ok(period)
        },
        &state,
    )
    .await?;
    let event = Record::Release(Released {
        experiment: req.experiment.clone(),
        period: period.to_string(),
        by: caller.0.key_id.clone(),
    })
    .to_event(
        &format!("release/{}/{period}", req.experiment),
        period.end - chrono::Duration::seconds(1),
    );
    // Released twice (by anyone): the first release stands.
    let _ = record_own(&state, &customer, event).await?;
    Ok(Json(Release {
        customer,
        period: period.to_string(),
        experiment: req.experiment,
        released: true,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// Required with a provider key.
    customer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    customer: Option<String>,
    experiment: String,
    subjects: Vec<String>,
}

fn check_subject(subject: &str) -> Result<(), ApiError> {
    if subject.is_empty() || subject.chars().count() > SUBJECT_CHARS_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("subject: must be 1 to {SUBJECT_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

/// The holdout share of `experiment` in the customer's newest contract.
async fn holdout(state: &AppState, customer: &str, experiment: &str) -> Result<f64, ApiError> {
    let (customer, experiment) = (customer.to_owned(), experiment.to_owned());
    blocking_with(
        move |store| {
            let versions = Versions::load(store, &customer)?;
            let (_, share) = versions.latest().experiment(&experiment).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!(
                        "the contract of {customer} has no holdout experiment \"{experiment}\""
                    ),
                )
            })?;
            Ok(share.to_string().parse::<f64>().unwrap_or(0.0))
        },
        state,
    )
    .await
}

/// Records first assignments. Their time is the UTC day, so a retry the
/// same day is a duplicate; on a later day the stored record stands.
pub(crate) async fn record(
    state: &AppState,
    customer: &str,
    experiment: &str,
    arms: &[(String, Arm)],
) -> Result<(), ApiError> {
    let day = state
        .now()
        .duration_trunc(chrono::Duration::days(1))
        .unwrap_or_else(|_| state.now());
    let mut events = Vec::with_capacity(arms.len());
    for (subject, arm) in arms {
        let event = Record::Assignment(Assigned {
            subject: subject.clone(),
            experiment: experiment.to_owned(),
            arm: *arm,
        })
        .to_event(&format!("assignment/{experiment}/{subject}"), day);
        events.push(own_event(state, customer, event)?);
    }
    let whole = state
        .ledger
        .append(AppendRequest::new(events.clone()))
        .await?;
    if whole.is_ok() {
        return Ok(());
    }
    // Some were recorded on an earlier day: record the others one by one
    // (the writer still commits them together).
    let singles = events.into_iter().map(|e| {
        let ledger = state.ledger.clone();
        async move { ledger.append(AppendRequest::new(vec![e])).await }
    });
    for result in futures_join(singles).await {
        result?.ok();
    }
    Ok(())
}

async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// A subject's arm in a customer's holdout experiment.
#[derive(Serialize, ToSchema)]
pub struct Assignment {
    pub customer: String,
    pub experiment: String,
    pub subject: String,
    /// `ai` or `control`.
    pub arm: &'static str,
    /// The experiment's holdout share, 0 to 1.
    pub holdout: f64,
}

/// The arm of one subject: `ai` (the agent may act) or `control` (leave
/// it to humans).
#[utoipa::path(get, path = "/v1/assignments/{experiment}/{subject}", tag = "attribution", params(CustomerQuery),
    responses((status = 200, body = Assignment), (status = 400), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn one(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::Assign>,
    Path((experiment, subject)): Path<(String, String)>,
    Params(q): Params<CustomerQuery>,
) -> Result<Json<Assignment>, ApiError> {
    let customer = caller.customer_scope(q.customer.as_deref())?;
    check_subject(&subject)?;
    let share = holdout(&state, &customer, &experiment).await?;
    let arm = assign(&format!("{customer}/{experiment}"), &subject, share);
    record(&state, &customer, &experiment, &[(subject.clone(), arm)]).await?;
    Ok(Json(Assignment {
        customer,
        experiment,
        subject,
        arm: arm.name(),
        holdout: share,
    }))
}

/// The arms of many subjects in a customer's holdout experiment.
#[derive(Serialize, ToSchema)]
pub struct Assignments {
    pub customer: String,
    pub experiment: String,
    /// The experiment's holdout share, 0 to 1.
    pub holdout: f64,
    /// In the order of the request's subjects, repeats included.
    pub assignments: Vec<SubjectArm>,
}

#[derive(Serialize, ToSchema)]
pub struct SubjectArm {
    pub subject: String,
    /// `ai` or `control`.
    pub arm: &'static str,
}

/// The arms of many subjects at once (up to 10,000).
#[utoipa::path(post, path = "/v1/assignments", tag = "attribution",
    responses((status = 200, body = Assignments), (status = 400), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn batch(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::Assign>,
    Body(req): Body<BatchRequest>,
) -> Result<Json<Assignments>, ApiError> {
    let customer = caller.customer_scope(req.customer.as_deref())?;
    if req.subjects.is_empty() || req.subjects.len() > BATCH_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("subjects: give 1 to {BATCH_MAX} subjects"),
        ));
    }
    for (i, s) in req.subjects.iter().enumerate() {
        check_subject(s)
            .map_err(|e| ApiError::new(e.code, format!("subjects[{i}]: {}", e.detail)))?;
    }
    let share = holdout(&state, &customer, &req.experiment).await?;
    let salt = format!("{customer}/{}", req.experiment);
    let mut seen = std::collections::HashSet::new();
    let arms: Vec<(String, Arm)> = req
        .subjects
        .iter()
        .filter(|s| seen.insert(s.as_str()))
        .map(|s| (s.clone(), assign(&salt, s, share)))
        .collect();
    record(&state, &customer, &req.experiment, &arms).await?;
    let assignments = req
        .subjects
        .iter()
        .map(|s| SubjectArm {
            subject: s.clone(),
            arm: assign(&salt, s, share).name(),
        })
        .collect();
    Ok(Json(Assignments {
        customer,
        experiment: req.experiment,
        holdout: share,
        assignments,
    }))
}
