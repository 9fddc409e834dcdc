//! The support agent's routes: tickets in, the approval queue, and the
//! kill switch.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use payoff_store::AgentPause;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::actions::{ActionState, ActionView};
use crate::auth::{may, Action, Allowed, Caller};
use crate::paging::{self, Walk};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::{Body, OptionalBody, Params};
use crate::support::approvals::{Approval, Status};
use crate::support::{self, Choice, Handled, Ticket, AGENT};
use crate::{blocking_with, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit))
        .routes(routes!(show_agent))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(watched))
        .routes(routes!(list_approvals))
        .routes(routes!(approve))
        .routes(routes!(reject))
}

/// Hands a ticket to the support agent and says what it did.
#[utoipa::path(post, path = "/v1/agents/support/tickets", tag = "agents",
    responses((status = 200, body = Handled), (status = 400), (status = 401), (status = 403), (status = 409)), security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::SubmitTickets>,
    Body(ticket): Body<Ticket>,
) -> Result<Json<Handled>, ApiError> {
    let customer = caller.customer_scope(ticket.customer.as_deref())?;
    crate::routes::knowledge::check_acting_for(&state, &caller, "groups", &ticket.groups).await?;
    Ok(Json(
        support::handle(&state, &customer, ticket, true).await?,
    ))
}

/// An agent name: the support agent's, or one an agent gives itself when
/// it calls models through the gateway (`x-payoff-agent`); the kill
/// switch works on both. Lower-case letters, digits, `_`, `.`, `-`, 1 to
/// 64 characters, starting with a letter or digit.
pub(crate) fn known_agent(agent: &str) -> Result<(), ApiError> {
    let well_formed = (1..=64).contains(&agent.len())
        && agent.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && agent
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if well_formed {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no agent \"{agent}\": agent names are 1 to 64 lower-case letters, digits, _ . - (the built-in one is {AGENT})"),
        ))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Provider keys: pause for this customer only (default: every customer).
    customer: Option<String>,
}

/// Which customer a pause concerns: a customer key's own; a provider key's
/// named one, or `*` for all.
fn pause_scope(caller: &Caller, named: Option<String>) -> Result<String, ApiError> {
    match (&caller.0.customer, named) {
        (None, None) => Ok("*".to_owned()),
        (_, named) => caller.customer_scope(named.as_deref()),
    }
}

/// The kill switch of an agent for one customer or all, as just set.
#[derive(Serialize, ToSchema)]
pub struct AgentSwitch {
    pub agent: String,
    /// The customer, or `*` for every customer.
    pub customer: String,
    pub paused: bool,
}

async fn switch(
    state: &AppState,
    caller: &Caller,
    agent: &str,
    req: PauseRequest,
    paused: bool,
) -> Result<Json<AgentSwitch>, ApiError> {
    caller.require(Action::ControlAgents)?;
    known_agent(agent)?;
    let customer = pause_scope(caller, req.customer)?;
    let pause = AgentPause {
        agent: agent.to_owned(),
        customer,
        paused_by: caller.0.key_id.clone(),
        paused_at: state.now(),
    };
    let stored = pause.clone();
    blocking_with(move |s| Ok(s.set_agent_pause(&stored, paused)?), state).await?;
    Ok(Json(AgentSwitch {
        agent: agent.to_owned(),
        customer: pause.customer,
        paused,
    }))
}

/// The kill switch: the agent takes no action (tickets go to people) until resumed.
#[utoipa::path(post, path = "/v1/agents/{agent}/pause", tag = "agents",
    responses((status = 200, body = AgentSwitch), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn pause(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ControlAgents>,
    Path(agent): Path<String>,
    OptionalBody(body): OptionalBody<PauseRequest>,
) -> Result<Json<AgentSwitch>, ApiError> {
    switch(&state, &caller, &agent, body, true).await
}

/// Turns the kill switch off again.
#[utoipa::path(post, path = "/v1/agents/{agent}/resume", tag = "agents",
    responses((status = 200, body = AgentSwitch), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ControlAgents>,
    Path(agent): Path<String>,
    OptionalBody(body): OptionalBody<PauseRequest>,
) -> Result<Json<AgentSwitch>, ApiError> {
    switch(&state, &caller, &agent, body, false).await
}

/// An agent's kill switches that the caller sees.
#[derive(Serialize, ToSchema)]
pub struct AgentStatus {
    pub agent: String,
    /// Each pause in force: `agent`, `customer` (`*` for every
    /// customer), `paused_by` and `paused_at`; empty when it runs.
    #[schema(value_type = Vec<Object>)]
    pub paused: Vec<AgentPause>,
}

/// Whether the agent is paused, and for whom (a customer key sees only
/// what concerns its customer).
#[utoipa::path(get, path = "/v1/agents/{agent}", tag = "agents",
    responses((status = 200, body = AgentStatus), (status = 401), (status = 404)), security(("bearer" = [])))]
pub async fn show_agent(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadApprovals>,
    Path(agent): Path<String>,
) -> Result<Json<AgentStatus>, ApiError> {
    known_agent(&agent)?;
    let pauses = blocking_with(move |s| Ok(s.agent_pauses()?), &state).await?;
    let paused = pauses
        .into_iter()
        .filter(|p| p.agent == agent && (p.customer == "*" || caller.sees(Some(&p.customer))))
        .collect();
    Ok(Json(AgentStatus { agent, paused }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// The window, in days ending now: 1 to 90 (default 7).
    days: Option<u32>,
}

/// What every agent of the customer did in the window, whichever door its
/// records came through (the dashboard's Agents tab, as data): model
/// calls per day, errors, latency percentiles, tool calls, runs, actions,
/// drafts, outcomes of the subjects it served and the contract's service
/// levels over them, and the quality drifts recorded in the window. Costs
/// only for roles that read economics.
#[utoipa::path(get, path = "/v1/customers/{customer}/agents", operation_id = "watch_agents", tag = "agents",
    params(("customer" = String, Path), WatchQuery),
    responses((status = 200, body = WatchedAgents), (status = 400), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn watched(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadApprovals>,
    Path(customer): Path<String>,
    Params(q): Params<WatchQuery>,
) -> Result<Json<WatchedAgents>, ApiError> {
    let customer = crate::routes::billing::scoped(&caller, &customer)?;
    let days = q.days.unwrap_or(7);
    if !(1..=90).contains(&days) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "days: 1 to 90"));
    }
    let costs = crate::auth::allows(caller.0.role, Action::ReadEconomics);
    let until = state.now();
    let since = until - chrono::Duration::days(i64::from(days));
    let (c, ttl) = (customer.clone(), state.support.approval_ttl);
    let (figures, drifts) = blocking_with(
        move |s| {
            if s.customer(&c)?.is_none() {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no customer \"{c}\""),
                ));
            }
            let prices = payoff_accounting::economics::prices(s)?;
            Ok((
                crate::watch::gather(s, &prices, &c, since, until, ttl)?,
                crate::watch::recorded_drifts(s, &c, since, until)?,
            ))
        },
        &state,
    )
    .await?;
    let agents = figures
        .iter()
        .map(|(name, f)| WatchedAgent {
            agent: name.clone(),
            model_calls: f.calls,
            errors: f.errors,
            latency_p50_ms: f.latency(0.5),
            latency_p95_ms: f.latency(0.95),
            tool_calls: f.tool_calls,
            runs: f.runs,
            actions: ActionCounts {
                allowed: f.allowed,
                denied: f.denied,
                pending: f.pending,
            },
            drafts: DraftCounts {
                decided: f.drafts_decided,
                reworked: f.drafts_reworked,
            },
            outcomes: OutcomeCounts {
                created: f.outcomes,
                voided: f.outcomes_voided,
            },
            service_levels: f
                .service
                .iter()
                .map(|(level, &(numerator, denominator))| {
                    (
                        level.clone(),
                        ServiceLevelHits {
                            numerator,
                            denominator,
                        },
                    )
                })
                .collect(),
            model_calls_per_day: f.per_day.clone(),
            cost: costs.then(|| f.cost.round_dp(6).normalize().to_string()),
        })
        .collect();
    Ok(Json(WatchedAgents {
        customer,
        since: since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        until: until.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        agents,
        drifts,
    }))
}

/// What a customer's agents did in a window.
#[derive(Serialize, ToSchema)]
pub struct WatchedAgents {
    pub customer: String,
    /// RFC 3339, to the microsecond: the window's start.
    pub since: String,
    /// RFC 3339, to the microsecond: now.
    pub until: String,
    /// By agent name.
    pub agents: Vec<WatchedAgent>,
    /// The `payoff.quality.drift` records of the window: a measure of an
    /// agent outside the provider's band for it.
    #[schema(value_type = Vec<Object>)]
    pub drifts: Vec<crate::watch::Drift>,
}

/// One agent's figures over the window.
#[derive(Serialize, ToSchema)]
pub struct WatchedAgent {
    pub agent: String,
    pub model_calls: u64,
    pub errors: u64,
    /// `null` when no call reported its latency.
    pub latency_p50_ms: Option<u64>,
    pub latency_p95_ms: Option<u64>,
    pub tool_calls: u64,
    pub runs: u64,
    pub actions: ActionCounts,
    pub drafts: DraftCounts,
    /// Outcomes of the subjects it served.
    pub outcomes: OutcomeCounts,
    /// Per service level of the contract, over the subjects it served.
    pub service_levels: BTreeMap<String, ServiceLevelHits>,
    /// Model calls per day of the window, oldest first.
    pub model_calls_per_day: Vec<u64>,
    /// USD, a decimal as text; only for roles that read economics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
}

/// The actions an agent asked for, by what the rules said.
#[derive(Serialize, ToSchema)]
pub struct ActionCounts {
    pub allowed: u64,
    pub denied: u64,
    pub pending: u64,
}

/// The support agent's drafts a person decided, and of those the ones
/// approved with edits or rejected.
#[derive(Serialize, ToSchema)]
pub struct DraftCounts {
    pub decided: u64,
    pub reworked: u64,
}

/// Outcomes created in the window, and of those the ones voided.
#[derive(Serialize, ToSchema)]
pub struct OutcomeCounts {
    pub created: u64,
    pub voided: u64,
}

/// A service level's hits: `numerator` of `denominator` events.
#[derive(Serialize, ToSchema)]
pub struct ServiceLevelHits {
    pub numerator: u64,
    pub denominator: u64,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApprovalQuery {
    /// Required with a provider key.
    customer: Option<String>,
    /// `pending`, `approved`, `rejected` or `expired`.
    status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<usize>,
    /// Continue a listing: the `next_before` of the previous page.
    before: Option<u64>,
}

/// A page of the approval queue, newest first.
#[derive(Serialize, ToSchema)]
pub struct ApprovalList {
    pub approvals: Vec<QueuedApproval>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// One entry of the approval queue: the support agent's drafted reply
/// (`kind` `reply`) or an agent's action (`kind` `action`).
// A reply value, built once per request and serialised at once: the
// variants' sizes do not matter, and boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum QueuedApproval {
    Reply(ReplyApproval),
    Action(ActionApproval),
}

/// A drafted reply waiting for, or having had, a person's decision.
#[derive(Serialize, ToSchema)]
pub struct ReplyApproval {
    /// `id`, `ticket`, `status`, `requested_at`, `expires_at`,
    /// `on_expiry`, the `request` as recorded (draft, citations,
    /// confidence, category, requester), `decided_by`, `decided_at`,
    /// `final_text` and `reason`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub approval: Approval,
    /// `reply`.
    pub kind: &'static str,
}

/// An action an agent asked for that a person must decide.
#[derive(Serialize, ToSchema)]
pub struct ActionApproval {
    /// `action`.
    pub kind: &'static str,
    pub id: String,
    /// `pending`, `approved`, `rejected` or `expired`.
    #[schema(value_type = String)]
    pub status: Status,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub action: ActionView,
}

/// The approval queue of a customer, newest first.
#[utoipa::path(get, path = "/v1/approvals", tag = "agents", params(ApprovalQuery),
    responses((status = 200, body = ApprovalList), (status = 400), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn list_approvals(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadApprovals>,
    Params(q): Params<ApprovalQuery>,
) -> Result<Json<ApprovalList>, ApiError> {
    let customer = caller.customer_scope(q.customer.as_deref())?;
    let wanted = match q.status.as_deref() {
        None => None,
        Some("pending") => Some(Status::Pending),
        Some("approved") => Some(Status::Approved),
        Some("rejected") => Some(Status::Rejected),
        Some("expired") => Some(Status::Expired),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "status: must be pending, approved, rejected or expired",
            ))
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit: 1 to 1000"));
    }
    let reader = caller.0.clone();
    // The support agent's drafts and any agent's actions, in one queue:
    // two newest-first walks merged a page at a time.
    let page = blocking_with(
        move |s| {
            let reader = support::DraftReader::of(s, &reader)?;
            let mut drafts = Walk::new(limit);
            support::walk_approvals_newest(s, &customer, q.before, |sequence, mut a| {
                let keep = wanted.is_none_or(|w| a.status == w);
                drafts.visit(
                    sequence,
                    keep.then(|| {
                        reader.redact_approval(&mut a);
                        QueuedApproval::Reply(ReplyApproval {
                            approval: a,
                            kind: "reply",
                        })
                    }),
                )
            })?;
            let mut acts = Walk::new(limit);
            crate::actions::walk_newest(s, &customer, q.before, |sequence, a| {
                acts.visit(sequence, action_approval(a, wanted))
            })?;
            Ok(paging::merge(vec![drafts, acts]))
        },
        &state,
    )
    .await?;
    Ok(Json(ApprovalList {
        approvals: page.items,
        next_before: page.next_before,
    }))
}

/// An action's approval as the queue shows it, if it had one and it has
/// the status `wanted`.
fn action_approval(a: ActionView, wanted: Option<Status>) -> Option<QueuedApproval> {
    let status = match a.state {
        ActionState::PendingApproval => Status::Pending,
        ActionState::Approved => Status::Approved,
        ActionState::Rejected => Status::Rejected,
        ActionState::Expired => Status::Expired,
        ActionState::Allowed | ActionState::Denied => return None,
    };
    if wanted.is_some_and(|w| w != status) {
        return None;
    }
    let approval = a.approval.clone()?;
    Some(QueuedApproval::Action(ActionApproval {
        kind: "action",
        id: a.id.clone(),
        status,
        requested_at: a.requested_at,
        expires_at: approval.expires_at,
        decided_by: approval.decided_by,
        decided_at: approval.decided_at,
        reason: approval.reason,
        action: a,
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub(crate) customer: Option<String>,
    /// Approve: the text to send instead of the draft.
    pub(crate) text: Option<String>,
    /// Reject: why, for the person who takes the ticket.
    pub(crate) reason: Option<String>,
}

/// A decided approval: an agent's action, or a drafted reply.
// A reply value, built once per request and serialised at once: the
// variants' sizes do not matter, and boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Decided {
    Action(ActionView),
    Reply(DecidedReply),
}

/// A drafted reply's approval, decided.
#[derive(Serialize, ToSchema)]
pub struct DecidedReply {
    /// `id`, `ticket`, `status`, `requested_at`, `expires_at`,
    /// `on_expiry`, `request`, `decided_by`, `decided_at`, `final_text`
    /// and `reason`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub approval: Approval,
}

/// Approves or rejects a pending approval: the one path of the API and
/// the dashboard.
pub(crate) async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    req: DecisionRequest,
    approve: bool,
) -> Result<(StatusCode, Json<Decided>), ApiError> {
    caller.require(Action::DecideApprovals)?;
    let customer = caller.customer_scope(req.customer.as_deref())?;
    if crate::actions::is_action_id(&id) {
        if req.text.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "text: an agent's action has no draft to edit",
            ));
        }
        let view =
            crate::actions::decide(&state, &customer, &id, &caller.0, approve, req.reason).await?;
        return Ok((StatusCode::OK, Json(Decided::Action(view))));
    }
    if req
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 2000)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "reason: at most 2000 characters",
        ));
    }
    let choice = if approve {
        if req.reason.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "reason: only a rejection takes a reason",
            ));
        }
        Choice::Approve { text: req.text }
    } else {
        if req.text.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "text: only an approval takes a text",
            ));
        }
        Choice::Reject { reason: req.reason }
    };
    let approval = support::decide_approval(&state, &customer, &id, &caller.0, choice).await?;
    Ok((
        StatusCode::OK,
        Json(Decided::Reply(DecidedReply { approval })),
    ))
}

/// Sends the drafted reply (or the approver's edited text).
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "agents",
    responses((status = 200, body = Decided), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::DecideApprovals>,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<DecisionRequest>,
) -> Result<(StatusCode, Json<Decided>), ApiError> {
    decide(state, caller, id, body, true).await
}

/// Refuses the draft; the ticket goes to a person.
#[utoipa::path(post, path = "/v1/approvals/{id}/reject", tag = "agents",
    responses((status = 200, body = Decided), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn reject(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::DecideApprovals>,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<DecisionRequest>,
) -> Result<(StatusCode, Json<Decided>), ApiError> {
    decide(state, caller, id, body, false).await
}
