//! Approvals: the support agent's drafted replies that wait for a person,
//! each with the requester's question, the draft and the sources it
//! cites; approve as drafted, approve an edited text, or reject, through
//! the same function as `POST /v1/approvals/{id}/approve|reject`. Below
//! them, the actions any other agent asked for (`POST /v1/actions`) that
//! the customer's rules send to a person, decided the same way.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};
use payoff_store::EventFilter;
use serde::Deserialize;
use serde_json::Value;

use super::{flash, Filters};
use crate::actions::ActionView;
use crate::auth::Action;
use crate::dashboard::format::{datetime, url_encode, web_href};
use crate::dashboard::layout::{self, csrf, Tab};
use crate::dashboard::{see_other, Ctx, Posted, Viewer};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::agents::{decide as decide_approval, DecisionRequest};
use crate::support::{self, approvals::Approval, approvals::Status, TICKET_CREATED};
use crate::{blocking_with, AppState};

/// Pending approvals shown per page (each looks up its ticket).
const PENDING_SHOWN_MAX: usize = 10;
/// Decided approvals shown below them.
const DECIDED_SHOWN_MAX: usize = 50;

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
    approval: Option<String>,
}

/// The requester's subject and text of a ticket, from its creation event.
fn question(
    store: &payoff_store::Store,
    customer: &str,
    ticket: &str,
) -> Result<Option<(String, String)>, ApiError> {
    let page = store.events(&EventFilter {
        customer: customer.to_owned(),
        event_type: Some(TICKET_CREATED.to_owned()),
        subject: Some(ticket.to_owned()),
        limit: 1,
        ..Default::default()
    })?;
    Ok(page.events.first().map(|e| {
        let v: Value = serde_json::from_slice(&e.canonical).unwrap_or(Value::Null);
        let text = |k: &str| v["data"][k].as_str().unwrap_or("").to_owned();
        (text("subject"), text("body"))
    }))
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
    Filters(done): Filters<Done>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadApprovals).await?;
    let id = ctx.id();
    let reader = ctx.viewer.caller.0.clone();
    let (now, ttl) = (state.now(), state.support.approval_ttl);
    let (pending_total, pending, decided, actions) = blocking_with(
        move |store| {
            let mut actions: Vec<ActionView> = crate::actions::pending(store, &id, now)?;
            actions.sort_by_key(|a| a.approval.as_ref().map(|p| p.expires_at));
            actions.truncate(PENDING_SHOWN_MAX);
            let (mut pending, decided) =
                support::approvals_page(store, &id, &reader, now, ttl, DECIDED_SHOWN_MAX)?;
            let pending_total = pending.len();
            pending.truncate(PENDING_SHOWN_MAX);
            let mut with_questions = Vec::new();
            for a in pending {
                let q = question(store, &id, &a.ticket)?;
                with_questions.push((a, q));
            }
            Ok((pending_total, with_questions, decided, actions))
        },
        &state,
    )
    .await?;
    let message = match (done.done.as_deref(), done.approval.as_deref()) {
        (Some("approve"), Some(a)) if crate::actions::is_action_id(a) => {
            Some(format!("Approved {a}: the agent may go ahead."))
        }
        (Some("reject"), Some(a)) if crate::actions::is_action_id(a) => {
            Some(format!("Rejected {a}: the agent may not do it."))
        }
        (Some("approve"), Some(a)) => Some(format!("Approved {a}: the reply was sent.")),
        (Some("reject"), Some(a)) => Some(format!("Rejected {a}: the ticket went to a person.")),
        _ => None,
    };
    let may_decide = ctx.allows(Action::DecideApprovals);
    let body = html! {
        (flash(message))
        p { strong { (pending_total) } " replies wait for approval"
            @if pending_total > pending.len() { " (the " (pending.len()) " expiring first are shown)" } "." }
        @for (a, q) in &pending {
            section.card.approval id=(a.id) {
                h2 { "Ticket " (a.ticket) " " span.badge.status-pending { "pending" } }
                p.muted { "Requested " (datetime(a.requested_at)) "; expires " (datetime(a.expires_at)) " (then: " (a.on_expiry) ")."
                    @if let Some(c) = a.request["category"].as_str() { " Category " strong { (c) } "." }
                    @if let Some(c) = a.request["confidence"].as_f64() { " Confidence " (format!("{c:.2}")) "." }
                    @if let Some(r) = a.request["reason"].as_str() { " Why it waits: " (r) "." } }
                @if let Some((subject, text)) = q {
                    h3 { "The question" }
                    p { strong { (subject) } @if let Some(r) = a.request["requester"].as_str() { " " span.muted { "from " (r) } } }
                    div.draft { (text) }
                }
                h3 { "The drafted reply" }
                @if let Some(why) = a.request["withheld"].as_str() {
                    p.muted.withheld { "Withheld: " (why) "." }
                } @else {
                    div.draft { (a.request["reply"].as_str().unwrap_or("")) }
                    (citations(&a.request["citations"]))
                    @if may_decide { (decide_forms(&ctx, a)) }
                }
            }
        }
        @if !actions.is_empty() {
            h2 { "Agents' actions waiting for a person" }
            @for a in &actions { (action_card(&ctx, a, may_decide)) }
        }
        @if !decided.is_empty() {
            h2 { "Decided recently" }
            div.table-wrap { table #decided {
                thead { tr { th { "Ticket" } th { "Decision" } th { "By" } th { "When" } th { "Reason or sent text" } } }
                tbody {
                    @for a in &decided {
                        tr {
                            td { (a.ticket) }
                            td { span class=(format!("badge status-{}", status_name(a.status))) { (status_name(a.status)) } }
                            td.mono { (a.decided_by.as_deref().unwrap_or("")) }
                            td { @if let Some(t) = a.decided_at { (datetime(t)) } }
                            td { (a.reason.as_deref().or(a.final_text.as_deref()).unwrap_or("")) }
                        }
                    }
                }
            } }
        }
    };
    Ok(layout::page(&ctx, Tab::Approvals, "Approvals", body))
}

/// An action an agent asked for, what it would act on and why it waits.
fn action_card(ctx: &Ctx, a: &ActionView, may_decide: bool) -> Markup {
    let action = ctx.path("approvals/decide");
    html! {
        section.card.approval.agent-action id=(a.id) {
            h2 { "Agent " (a.agent) ": " (a.action) " " span.badge.status-pending { "pending" } }
            p.muted { "Requested " (datetime(a.requested_at))
                @if let Some(p) = &a.approval { "; expires " (datetime(p.expires_at)) " (then: refused)" } "." }
            p { "On " strong { (a.resource.kind) " " (a.resource.id) } " for " span.mono { (a.subject) } ". Why it waits: " (a.reason) }
            h3 { "Context" }
            pre.draft { (serde_json::to_string_pretty(&a.context).unwrap_or_default()) }
            @if a.resource.attributes.as_object().is_some_and(|o| !o.is_empty()) {
                h3 { "Resource" }
                pre.draft { (serde_json::to_string_pretty(&a.resource.attributes).unwrap_or_default()) }
            }
            @if may_decide {
                div.actions {
                    form.inline method="post" action=(action) {
                        (csrf(&ctx.viewer.csrf))
                        input type="hidden" name="approval" value=(a.id);
                        input type="hidden" name="decision" value="approve";
                        button type="submit" { "Approve" }
                    }
                    form.inline method="post" action=(action) {
                        (csrf(&ctx.viewer.csrf))
                        input type="hidden" name="approval" value=(a.id);
                        input type="hidden" name="decision" value="reject";
                        input type="text" name="reason" maxlength="2000" placeholder="why (optional)" aria-label="reason for rejecting";
                        button.danger type="submit" { "Reject" }
                    }
                }
            }
        }
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Approved => "approved",
        Status::Rejected => "rejected",
        Status::Expired => "expired",
    }
}

/// The sources a draft cites, by number; only web addresses are links.
fn citations(list: &Value) -> Markup {
    let items = list.as_array().cloned().unwrap_or_default();
    html! {
        @if items.is_empty() { p.muted { "The draft cites no source." } }
        @else {
            h3 { "Cited sources" }
            ol.citations {
                @for c in &items {
                    @let title = c["title"].as_str().unwrap_or("");
                    li value=(c["n"].as_u64().unwrap_or(0)) {
                        @match c["url"].as_str().and_then(web_href) {
                            Some(url) => { a href=(url) rel="noreferrer noopener" target="_blank" { (title) } }
                            None => { (title) }
                        }
                        " " span.muted.mono { (c["doc_id"].as_str().unwrap_or("")) }
                    }
                }
            }
        }
    }
}

fn decide_forms(ctx: &Ctx, a: &Approval) -> Markup {
    let action = ctx.path("approvals/decide");
    let draft = a.request["reply"].as_str().unwrap_or("");
    html! {
        div.actions {
            form.inline method="post" action=(action) {
                (csrf(&ctx.viewer.csrf))
                input type="hidden" name="approval" value=(a.id);
                input type="hidden" name="decision" value="approve";
                button type="submit" { "Approve and send" }
            }
            form.inline method="post" action=(action) {
                (csrf(&ctx.viewer.csrf))
                input type="hidden" name="approval" value=(a.id);
                input type="hidden" name="decision" value="reject";
                input type="text" name="reason" maxlength="2000" placeholder="why (optional)" aria-label="reason for rejecting";
                button.danger type="submit" { "Reject" }
            }
            details {
                summary { "Edit, then send" }
                form.stack method="post" action=(action) {
                    (csrf(&ctx.viewer.csrf))
                    input type="hidden" name="approval" value=(a.id);
                    input type="hidden" name="decision" value="approve";
                    textarea name="text" required maxlength="20000" aria-label="reply to send" { (draft) }
                    button type="submit" { "Send this text" }
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideForm {
    approval: Option<String>,
    decision: Option<String>,
    text: Option<String>,
    reason: Option<String>,
}

pub async fn decide(
    State(state): State<AppState>,
    Path(customer): Path<String>,
    posted: Posted<DecideForm>,
) -> Result<Response, ApiError> {
    let ctx = Ctx::open(&state, posted.viewer, &customer, Action::DecideApprovals).await?;
    let form = posted.form;
    let approval = form
        .approval
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "approval: is required"))?;
    let approve = match form.decision.as_deref() {
        Some("approve") => true,
        Some("reject") => false,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "decision: must be approve or reject",
            ))
        }
    };
    let request = DecisionRequest {
        customer: Some(ctx.id()),
        text: form.text,
        reason: form.reason,
    };
    // The decision's own record is in the ledger and the audit log.
    let _ = decide_approval(state, ctx.caller(), approval.clone(), request, approve).await?;
    Ok(see_other(&format!(
        "{}?done={}&approval={}",
        ctx.path("approvals"),
        if approve { "approve" } else { "reject" },
        url_encode(&approval)
    )))
}
