//! Disputes: every disputed outcome, open ones first; customer admins
//! raise them, operators accept or reject them, through the same function
//! as `POST /v1/outcomes/{id}/disputes[/accept|/reject]`.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};
use payoff_accounting::disputes::DisputeStep;
use payoff_billing::{customer_of_id, Decision};
use serde::Deserialize;

use super::outcomes::decide_forms;
use super::{flash, state_badge, Filters};
use crate::auth::Action;
use crate::dashboard::format::{datetime, url_encode};
use crate::dashboard::layout::{self, csrf, Tab};
use crate::dashboard::{see_other, Ctx, Posted, Viewer};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::billing::dispute;
use crate::{blocking_with, AppState};

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
    outcome: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
    Filters(done): Filters<Done>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    let id = ctx.id();
    let now = state.now();
    let mut disputed = blocking_with(
        move |store| Ok(payoff_outcomes::disputed(store, &id, now)?),
        &state,
    )
    .await?;
    // Open first, then the most recently raised.
    disputed.sort_by_key(|o| {
        let last = o.outcome.disputes.last().expect("filtered on disputes");
        (last.decision.is_some(), std::cmp::Reverse(last.opened.time))
    });
    let message = match (done.done.as_deref(), done.outcome.as_deref()) {
        (Some("raised"), Some(o)) => Some(format!("Dispute raised for outcome {o}.")),
        (Some("accept"), Some(o)) => Some(format!("Dispute of outcome {o} accepted.")),
        (Some("reject"), Some(o)) => Some(format!("Dispute of outcome {o} rejected.")),
        _ => None,
    };
    let body = html! {
        (flash(message))
        @if ctx.allows(Action::RaiseDispute) {
            details.card {
                summary { "Raise a dispute" }
                p.muted { "Or open the outcome from " a href=(ctx.path("outcomes")) { "Outcomes" } " and dispute it there, with its evidence in view." }
                form.stack method="post" action=(ctx.path("disputes")) {
                    (csrf(&ctx.viewer.csrf))
                    label { "Outcome id" input type="text" name="outcome" required maxlength="200" placeholder=(format!("out.{}.…", ctx.customer.id)); }
                    label { "Why is it wrong?" textarea name="reason" required maxlength="2000" {} }
                    button type="submit" { "Raise the dispute" }
                }
            }
        }
        @if disputed.is_empty() {
            p.muted { "No outcome has been disputed." }
        } @else {
            div.table-wrap { table #disputes {
                thead { tr { th { "Outcome" } th { "Kind · subject" } th { "State" } th { "Raised" } th { "Reason" } th { "Decision" } } }
                tbody {
                    @for o in &disputed {
                        @let d = o.outcome.disputes.last().expect("filtered on disputes");
                        tr {
                            td.mono { a href=(ctx.path(&format!("outcomes/{}", o.outcome.id))) { (o.outcome.id) } }
                            td { (o.name) br; span.muted { (o.outcome.subject) } }
                            td { (state_badge(o.state)) }
                            td.when { (datetime(d.opened.time)) }
                            td { (d.reason) }
                            td {
                                @match &d.decision {
                                    None => {
                                        @if ctx.allows(Action::DecideDispute) { (decide_forms(&ctx, &o.outcome.id)) }
                                        @else { span.badge.warn { "open" } }
                                    }
                                    Some((Decision::Accepted, m, note)) => { span.badge.good { "accepted" } " " (datetime(m.time)) @if !note.is_empty() { br; (note) } }
                                    Some((Decision::Rejected, m, note)) => { span.badge.bad { "rejected" } " " (datetime(m.time)) br; (note) }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    Ok(layout::page(&ctx, Tab::Disputes, "Disputes", body))
}

/// The outcome a form names, if it is this customer's (else 404, as for
/// any other tenant's data).
fn own_outcome(ctx: &Ctx, outcome: Option<String>) -> Result<String, ApiError> {
    let outcome = outcome
        .map(|o| o.trim().to_owned())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "outcome: is required"))?;
    if customer_of_id(&outcome) != Some(ctx.customer.id.as_str()) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no outcome \"{outcome}\""),
        ));
    }
    Ok(outcome)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaiseForm {
    outcome: Option<String>,
    reason: Option<String>,
}

pub async fn raise(
    State(state): State<AppState>,
    Path(customer): Path<String>,
    posted: Posted<RaiseForm>,
) -> Result<Response, ApiError> {
    let ctx = Ctx::open(&state, posted.viewer, &customer, Action::RaiseDispute).await?;
    let outcome = own_outcome(&ctx, posted.form.outcome)?;
    let _ = dispute(
        state,
        ctx.caller(),
        outcome.clone(),
        DisputeStep::Raise,
        posted.form.reason,
    )
    .await?;
    Ok(see_other(&format!(
        "{}?done=raised&outcome={}",
        ctx.path("disputes"),
        url_encode(&outcome)
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideForm {
    outcome: Option<String>,
    decision: Option<String>,
    note: Option<String>,
}

pub async fn decide(
    State(state): State<AppState>,
    Path(customer): Path<String>,
    posted: Posted<DecideForm>,
) -> Result<Response, ApiError> {
    let ctx = Ctx::open(&state, posted.viewer, &customer, Action::DecideDispute).await?;
    let outcome = own_outcome(&ctx, posted.form.outcome)?;
    let (step, word) = match posted.form.decision.as_deref() {
        Some("accept") => (DisputeStep::Accept, "accept"),
        Some("reject") => (DisputeStep::Reject, "reject"),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "decision: must be accept or reject",
            ))
        }
    };
    let _ = dispute(state, ctx.caller(), outcome.clone(), step, posted.form.note).await?;
    Ok(see_other(&format!(
        "{}?done={word}&outcome={}",
        ctx.path("disputes"),
        url_encode(&outcome)
    )))
}
