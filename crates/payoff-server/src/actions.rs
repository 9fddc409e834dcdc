//! Action authorization for any agent, not only the support agent Payoff
//! ships: an agent asks whether it may do something (an action type its
//! customer declared, on a resource, with a context), the customer's
//! Cedar rules answer allow, deny or approval required; a person decides
//! an approval (API or dashboard, beside the support agent's drafts); the
//! agent then records what it did.
//!
//! Every step is one of Payoff's own ledger records, found by its key, so
//! an action is folded from at most three records and never from a scan:
//! `payoff.action.requested` (`action/<id>`: the question and the
//! decision), `payoff.action.decided` (`action/<id>/decision`: a person's
//! approval or rejection, or the expiry; one key, so of two people
//! deciding at once the first wins, and subscribers get it as a webhook)
//! and `payoff.action.completed` (`action/<id>/result`: what was done,
//! under the action's subject, so a contract can count an action the
//! control plane saw happen). Each step is in the audit chain too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use payoff_policy::{ActionQuestion, ActionRules, ActionVerdict};
use payoff_store::{AuditEntry, Principal, Store};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::problem::{ApiError, ErrorCode};
use crate::records::{
    data_as, micros, ActionCompleted, ActionDecided, ActionRequested, Decision, OwnRecord,
    ResourceName, ACTION_COMPLETED, ACTION_DECIDED, ACTION_REQUESTED, PAYOFF_SOURCE,
};
use crate::{blocking_with, record_own_audited, AppState};

/// How long an approval waits for a person unless the request says.
const APPROVAL_TTL_DEFAULT_S: i64 = 3600;
const APPROVAL_TTL_MIN_S: i64 = 60;
const APPROVAL_TTL_MAX_S: i64 = 7 * 24 * 3600;
/// The longest a reader may wait for a decision in one request.
pub const WAIT_MAX: StdDuration = StdDuration::from_secs(60);
/// How often a waiting reader looks again for a decision taken on
/// another node (a decision on this node wakes it at once).
const WAIT_RECHECK: StdDuration = StdDuration::from_millis(500);
/// The JSON of a context, of resource attributes or of a result's detail.
const JSON_BYTES_MAX: usize = 16 * 1024;
const NAME_CHARS_MAX: usize = 128;
const SUBJECT_CHARS_MAX: usize = 256;
const REASON_CHARS_MAX: usize = 2000;

/// The resource an action acts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    /// An entity type of the customer's action schema (`Order`).
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// Its attributes, typed by the schema.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub attributes: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// What an agent asks (`POST /v1/actions`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Required with a provider key.
    pub customer: Option<String>,
    /// The agent asking (lower-case letters, digits, `_ . -`).
    pub agent: String,
    /// An action type the customer declared (`issue_refund`).
    pub action: String,
    pub resource: ResourceRef,
    /// What the action is about, as contracts count it (a ticket, an
    /// order); the action's id when absent.
    pub subject: Option<String>,
    /// The action's context, typed by the schema.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub context: Value,
    /// Makes a retried request return the first decision instead of
    /// asking again.
    pub request_key: Option<String>,
    /// Seconds an approval waits for a person (60 to 604,800; 3,600 by default).
    pub approval_expires_in: Option<i64>,
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    Allowed,
    Denied,
    PendingApproval,
    Approved,
    Rejected,
    Expired,
}

impl ActionState {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }

    /// Whether the agent may go ahead.
    pub fn may_proceed(self) -> bool {
        matches!(self, ActionState::Allowed | ActionState::Approved)
    }
}

/// A person's decision, or the expiry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ApprovalView {
    pub expires_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// What the agent recorded it did.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ResultView {
    /// `succeeded` or `failed`.
    pub status: String,
    #[schema(value_type = Object)]
    pub detail: Value,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// One action, folded from its ledger records.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ActionView {
    pub id: String,
    pub customer: String,
    pub agent: String,
    pub action: String,
    pub resource: ResourceRef,
    pub subject: String,
    #[schema(value_type = Object)]
    pub context: Value,
    /// What the rules said when it was asked.
    #[schema(value_type = String)]
    pub decision: ActionVerdict,
    /// The policies that decided (`payoff.kill_switch` or `payoff.budget`
    /// when the agent was stopped before the rules were asked).
    pub policy_ids: Vec<String>,
    pub reason: String,
    /// The version of the customer's action rules that decided.
    pub rules_version: u32,
    pub state: ActionState,
    /// `state` is allowed or approved, and no result is recorded yet.
    pub may_proceed: bool,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub approval: Option<ApprovalView>,
    pub result: Option<ResultView>,
}

/// What an agent records it did (`POST /v1/actions/{id}/result`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultRequest {
    pub customer: Option<String>,
    /// `succeeded` or `failed`.
    pub status: String,
    /// What was done (an order number, an error), kept in the ledger.
    #[schema(value_type = Object)]
    pub detail: Option<Value>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

/// What an action's later records name of its resource.
fn resource_name(r: &ResourceRef) -> ResourceName {
    ResourceName {
        kind: r.kind.clone(),
        id: r.id.clone(),
    }
}

/// A JSON object of at most [`JSON_BYTES_MAX`] bytes.
fn check_object(field: &str, v: &Value) -> Result<(), ApiError> {
    if !v.is_object() {
        return Err(bad(format!("{field}: must be an object")));
    }
    let len = serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    if len > JSON_BYTES_MAX {
        return Err(bad(format!(
            "{field}: {len} bytes of JSON; at most {JSON_BYTES_MAX}"
        )));
    }
    Ok(())
}

fn check_text(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(bad(format!(
            "{field}: 1 to {max} characters, no control characters"
        )));
    }
    Ok(())
}

impl ActionRequest {
    fn check(&self) -> Result<(), ApiError> {
        crate::routes::agents::known_agent(&self.agent)
            .map_err(|e| bad(format!("agent: {}", e.detail)))?;
        check_text("action", &self.action, NAME_CHARS_MAX)?;
        check_text("resource.type", &self.resource.kind, NAME_CHARS_MAX)?;
        check_text("resource.id", &self.resource.id, NAME_CHARS_MAX)?;
        check_object("resource.attributes", &self.resource.attributes)?;
        check_object("context", &self.context)?;
        if let Some(s) = &self.subject {
            check_text("subject", s, SUBJECT_CHARS_MAX)?;
        }
        if let Some(k) = &self.request_key {
            check_text("request_key", k, NAME_CHARS_MAX)?;
        }
        if let Some(t) = self.approval_expires_in {
            if !(APPROVAL_TTL_MIN_S..=APPROVAL_TTL_MAX_S).contains(&t) {
                return Err(bad(format!(
                    "approval_expires_in: {APPROVAL_TTL_MIN_S} to {APPROVAL_TTL_MAX_S} seconds"
                )));
            }
        }
        Ok(())
    }
}

/// The id of an action: from the request key when given (so a retry
/// finds the first decision), random otherwise.
fn action_id(customer: &str, agent: &str, request_key: Option<&str>) -> String {
    let hex = match request_key {
        Some(k) => hex::encode(Sha256::digest(
            format!("{customer}\0{agent}\0{k}").as_bytes(),
        )),
        None => {
            let mut bytes = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        }
    };
    format!("act_{}", &hex[..24])
}

/// Whether an approval id names an action (the support agent's are `apr_…`).
pub fn is_action_id(id: &str) -> bool {
    id.starts_with("act_")
}

/// Each customer's action rules in force, compiled once per version.
#[derive(Default)]
pub struct ActionPolicies {
    compiled: Mutex<HashMap<String, (u32, Arc<ActionRules>)>>,
}

impl ActionPolicies {
    /// The rules in force for `customer` and their version.
    pub(crate) fn for_customer(
        &self,
        store: &Store,
        customer: &str,
    ) -> Result<(u32, Arc<ActionRules>), ApiError> {
        let latest = store.latest_action_rules(customer)?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoActionRules,
                format!("customer \"{customer}\" has declared no action types: upload a schema and rules to /v1/customers/{customer}/action-rules first"),
            )
        })?;
        let mut compiled = self.compiled.lock().expect("action rules cache");
        if let Some((version, rules)) = compiled.get(customer) {
            if *version == latest.version {
                return Ok((*version, rules.clone()));
            }
        }
        let label = payoff_policy::rules_label(customer, latest.version);
        let rules = Arc::new(
            ActionRules::compile(&label, &latest.schema, &latest.rules).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidPolicy,
                    format!(
                        "the customer's action rules v{} no longer compile: {e}",
                        latest.version
                    ),
                )
            })?,
        );
        compiled.insert(customer.to_owned(), (latest.version, rules.clone()));
        Ok((latest.version, rules))
    }
}

/// What stops an agent before any rule is asked: its kill switch, then
/// its budgets. `(policy id, reason)`.
pub(crate) fn halted(
    store: &Store,
    customer: &str,
    agent: &str,
    now: DateTime<Utc>,
) -> Result<Option<(ErrorCode, &'static str, String)>, ApiError> {
    if store.agent_paused(agent, customer)?.is_some() {
        return Ok(Some((
            ErrorCode::AgentPaused,
            "payoff.kill_switch",
            format!("agent \"{agent}\" is paused for this customer"),
        )));
    }
    if store
        .budgets(customer)?
        .iter()
        .all(|b| b.agent != "*" && b.agent != agent)
    {
        return Ok(None);
    }
    let check = payoff_accounting::economics::check_budget(store, customer, Some(agent), now)?;
    Ok((!check.allow).then(|| {
        (
            ErrorCode::BudgetExceeded,
            "payoff.budget",
            format!("budget: {}", check.reason),
        )
    }))
}

/// Asks the customer's rules and records the question with its decision.
/// `(true, view)` when this request asked; `(false, view)` when a request
/// with the same `request_key` had asked before.
pub async fn request(
    state: &AppState,
    req: ActionRequest,
    who: impl FnOnce(&Store, &ActionRequest) -> Result<(Principal, String), ApiError> + Send + 'static,
) -> Result<(bool, ActionView), ApiError> {
    let now = state.now();
    let policies = state.action_policies.clone();
    // One step on the blocking pool for everything the store must say
    // before the decision: who asks, an earlier request with this key,
    // the customer's rules, whether the agent is stopped.
    let (req, by, customer, id, before) = blocking_with(
        move |s| {
            let (by, customer) = who(s, &req)?;
            req.check()?;
            let id = action_id(&customer, &req.agent, req.request_key.as_deref());
            if req.request_key.is_some() {
                if let Some(earlier) = find(s, &customer, &id)? {
                    return Ok((req, by, customer, id, Err(earlier)));
                }
            }
            let (version, rules) = policies.for_customer(s, &customer)?;
            let halt = halted(s, &customer, &req.agent, now)?;
            Ok((req, by, customer, id, Ok((version, rules, halt))))
        },
        state,
    )
    .await?;
    let (version, rules, halt) = match before {
        Ok(asking) => asking,
        Err(earlier) => return same_request(&earlier, &req).map(|()| (false, earlier)),
    };
    let (customer, by) = (customer.as_str(), &by);
    let decision = rules
        .decide(&ActionQuestion {
            agent: &req.agent,
            action: &req.action,
            resource_type: &req.resource.kind,
            resource_id: &req.resource.id,
            resource_attributes: &req.resource.attributes,
            context: &req.context,
        })
        .map_err(|e| bad(e.to_string()).with("field", e.field.into()))?;
    let (verdict, policy_ids, reason) = match halt {
        Some((_, policy, why)) => (ActionVerdict::Deny, vec![policy.to_owned()], why),
        None => (decision.verdict, decision.policy_ids, decision.reason),
    };
    let subject = req.subject.clone().unwrap_or_else(|| id.clone());
    let requested = ActionRequested {
        action: id.clone(),
        agent: req.agent.clone(),
        action_type: req.action.clone(),
        resource: req.resource.clone(),
        subject: subject.clone(),
        context: req.context.clone(),
        decision: verdict,
        policy_ids: policy_ids.clone(),
        reason: reason.clone(),
        rules_version: version,
        requested_by: by.key_id.clone(),
        request_key: req.request_key.clone(),
        expires_at: (verdict == ActionVerdict::ApprovalRequired).then(|| {
            let ttl = req.approval_expires_in.unwrap_or(APPROVAL_TTL_DEFAULT_S);
            micros(now + Duration::seconds(ttl))
        }),
    };
    let reason_text = format!(
        "{} on {}/{}: {reason}",
        req.action, req.resource.kind, req.resource.id
    );
    let audit = audit_entry(
        state,
        customer,
        by,
        "authorize_action",
        &id,
        verdict.as_str(),
        reason_text,
        &policy_ids,
    );
    let stored = append(
        state,
        customer,
        format!("action/{id}"),
        &subject,
        now,
        OwnRecord::ActionRequested(requested.clone()),
        Some(audit),
    )
    .await;
    if !stored? {
        // Two requests with one key raced; the first one stands.
        let view = find_async(state, customer, &id).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("action {id} was not found after it was stored"),
            )
        })?;
        return same_request(&view, &req).map(|()| (false, view));
    }
    // What was stored, read back the way every later read folds it.
    let stored_at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let view = fold(customer, (stored_at, requested), None, None);
    crate::Metrics::result_by(&state.metrics.actions, verdict.as_str(), 1);
    Ok((true, view))
}

/// A retried request must ask the same question as the first.
fn same_request(earlier: &ActionView, req: &ActionRequest) -> Result<(), ApiError> {
    let same = earlier.agent == req.agent
        && earlier.action == req.action
        && earlier.resource == req.resource
        && earlier.context == req.context
        && req.subject.as_ref().is_none_or(|s| *s == earlier.subject);
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::EventConflict,
            format!(
                "request_key: action {} was asked with this key about something else",
                earlier.id
            ),
        ))
    }
}

/// The audit record of one step, written with the step's ledger record
/// in one transaction (one commit makes both durable).
#[allow(clippy::too_many_arguments)]
fn audit_entry(
    state: &AppState,
    customer: &str,
    by: &Principal,
    action: &str,
    id: &str,
    decision: &str,
    reason: String,
    policy_ids: &[String],
) -> AuditEntry {
    AuditEntry {
        at: state.now(),
        actor: by.key_id.clone(),
        role: Some(by.role.as_str().to_owned()),
        customer: Some(customer.to_owned()),
        action: action.to_owned(),
        resource: format!("action/{id}"),
        decision: decision.to_owned(),
        reason,
        policy_ids: policy_ids.to_vec(),
    }
}

/// Appends one of the action's records (with the step's audit record, if
/// a person or agent took it); `false` when a record with this key
/// already stands with other content (someone else was first), and then
/// no audit record is written either.
async fn append(
    state: &AppState,
    customer: &str,
    key: String,
    subject: &str,
    time: DateTime<Utc>,
    record: OwnRecord,
    audit: Option<AuditEntry>,
) -> Result<bool, ApiError> {
    let event = record.to_event(&key, Some(subject), time);
    Ok(
        record_own_audited(state, customer, event, audit.into_iter().collect())
            .await?
            .is_ok(),
    )
}

/// The time and content of one of the action's records, of type
/// `event_type`.
fn record<T: serde::de::DeserializeOwned>(
    store: &Store,
    customer: &str,
    key: &str,
    event_type: &str,
) -> Result<Option<(DateTime<Utc>, T)>, ApiError> {
    match store.event_by_key(customer, PAYOFF_SOURCE, key)? {
        None => Ok(None),
        Some(e) => Ok(Some((
            e.time,
            data_as(event_type, &crate::data_of(&e.canonical))?,
        ))),
    }
}

/// One action, from its (at most three) records.
pub fn find(store: &Store, customer: &str, id: &str) -> Result<Option<ActionView>, ApiError> {
    if !is_action_id(id) || id.len() > 64 {
        return Ok(None);
    }
    let Some(requested) = record(store, customer, &format!("action/{id}"), ACTION_REQUESTED)?
    else {
        return Ok(None);
    };
    let (decided, completed) = later_records(store, customer, id)?;
    Ok(Some(fold(customer, requested, decided, completed)))
}

async fn find_async(
    state: &AppState,
    customer: &str,
    id: &str,
) -> Result<Option<ActionView>, ApiError> {
    let (c, i) = (customer.to_owned(), id.to_owned());
    blocking_with(move |s| find(s, &c, &i), state).await
}

type Later = (
    Option<(DateTime<Utc>, ActionDecided)>,
    Option<(DateTime<Utc>, ActionCompleted)>,
);

/// An action's decision and result records, if written.
fn later_records(store: &Store, customer: &str, id: &str) -> Result<Later, ApiError> {
    Ok((
        record(
            store,
            customer,
            &format!("action/{id}/decision"),
            ACTION_DECIDED,
        )?,
        record(
            store,
            customer,
            &format!("action/{id}/result"),
            ACTION_COMPLETED,
        )?,
    ))
}

/// An action from its records. Pure: the list and the single read fold
/// the same way.
fn fold(
    customer: &str,
    (requested_at, r): (DateTime<Utc>, ActionRequested),
    decided: Option<(DateTime<Utc>, ActionDecided)>,
    completed: Option<(DateTime<Utc>, ActionCompleted)>,
) -> ActionView {
    let expires_at = r
        .expires_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let state = match (r.decision, &decided) {
        (ActionVerdict::Allow, _) => ActionState::Allowed,
        (ActionVerdict::Deny, _) => ActionState::Denied,
        (ActionVerdict::ApprovalRequired, None) => ActionState::PendingApproval,
        (ActionVerdict::ApprovalRequired, Some((_, d))) => match d.decision {
            Decision::Approved => ActionState::Approved,
            Decision::Rejected => ActionState::Rejected,
            Decision::Expired => ActionState::Expired,
        },
    };
    let approval = expires_at.map(|expires_at| ApprovalView {
        expires_at,
        decided_by: decided.as_ref().map(|(_, d)| d.by.clone()),
        decided_at: decided.as_ref().map(|(t, _)| *t),
        reason: decided.as_ref().and_then(|(_, d)| d.reason.clone()),
    });
    let result = completed.map(|(t, c)| ResultView {
        status: c.status,
        detail: c.detail,
        recorded_by: c.by,
        recorded_at: t,
    });
    ActionView {
        id: r.action,
        customer: customer.to_owned(),
        agent: r.agent,
        action: r.action_type,
        resource: r.resource,
        subject: r.subject,
        context: r.context,
        decision: r.decision,
        policy_ids: r.policy_ids,
        reason: r.reason,
        rules_version: r.rules_version,
        may_proceed: state.may_proceed() && result.is_none(),
        state,
        requested_by: r.requested_by,
        requested_at,
        approval,
        result,
    }
}

/// The actions still waiting for a person's approval. An approval lasts
/// at most [`APPROVAL_TTL_MAX_S`], so only actions requested that recently
/// (and a day more, for a sweep that was late) are walked, not the whole
/// history; an older one whose expiry was never recorded (a node down for
/// over a week) is expired when it is read ([`wait`]).
pub fn pending(
    store: &Store,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<Vec<ActionView>, ApiError> {
    let since = now - Duration::seconds(APPROVAL_TTL_MAX_S) - Duration::days(1);
    let mut out = Vec::new();
    walk_newest(store, customer, None, |_, a| {
        let recent = a.requested_at >= since;
        if recent && a.state == ActionState::PendingApproval {
            out.push(a);
        }
        recent
    })?;
    Ok(out)
}

/// Walks a customer's actions newest first, from before the requested
/// record at sequence `before` (exclusive), folding each with its decision
/// and result (two lookups by key), and hands each to `visit` with that
/// sequence until `visit` answers false. A page costs what it shows and
/// what a filter passes over, not the customer's whole history (it read
/// every action record of the customer, for each page).
pub fn walk_newest(
    store: &Store,
    customer: &str,
    before: Option<u64>,
    mut visit: impl FnMut(u64, ActionView) -> bool,
) -> Result<(), ApiError> {
    store.walk_own_records_newest(customer, ACTION_REQUESTED, before, |r| {
        let requested: ActionRequested = data_as(ACTION_REQUESTED, &crate::data_of(&r.canonical))?;
        let (decided, completed) = later_records(store, customer, &requested.action)?;
        Ok(visit(
            r.sequence,
            fold(customer, (r.time, requested), decided, completed),
        ))
    })
}

/// Reads an action, waiting up to `wait` for a pending approval to be
/// decided (on this node: woken at once; on another: seen within half a
/// second). An approval whose time is up is expired on the way.
pub async fn wait(
    state: &AppState,
    customer: &str,
    id: &str,
    wait: StdDuration,
) -> Result<Option<ActionView>, ApiError> {
    let deadline = tokio::time::Instant::now() + wait.min(WAIT_MAX);
    loop {
        let decided = state.actions_decided.notified();
        tokio::pin!(decided);
        decided.as_mut().enable();
        let Some(view) = find_async(state, customer, id).await? else {
            return Ok(None);
        };
        if view.state != ActionState::PendingApproval {
            return Ok(Some(view));
        }
        if view
            .approval
            .as_ref()
            .is_some_and(|a| a.expires_at <= state.now())
        {
            expire(state, customer, &view).await?;
            continue;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(Some(view));
        }
        let _ = tokio::time::timeout((deadline - now).min(WAIT_RECHECK), decided).await;
    }
}

/// A person approves or rejects a pending action (the approvals API and
/// the dashboard both come here).
pub async fn decide(
    state: &AppState,
    customer: &str,
    id: &str,
    by: &Principal,
    approve: bool,
    reason: Option<String>,
) -> Result<ActionView, ApiError> {
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > REASON_CHARS_MAX)
    {
        return Err(bad(format!(
            "reason: at most {REASON_CHARS_MAX} characters"
        )));
    }
    let view = find_async(state, customer, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no approval \"{id}\"")))?;
    if view.state != ActionState::PendingApproval {
        return Err(ApiError::new(
            ErrorCode::AlreadyDecided,
            format!(
                "action {id} is {}, not pending approval",
                state_name(view.state)
            ),
        ));
    }
    if view
        .approval
        .as_ref()
        .is_some_and(|a| a.expires_at <= state.now())
    {
        expire(state, customer, &view).await?;
        return Err(ApiError::new(
            ErrorCode::AlreadyDecided,
            format!("the approval of action {id} expired"),
        ));
    }
    if approve {
        let (c, agent) = (customer.to_owned(), view.agent.clone());
        if blocking_with(move |s| Ok(s.agent_paused(&agent, &c)?), state)
            .await?
            .is_some()
        {
            return Err(ApiError::new(
                ErrorCode::AgentPaused,
                format!(
                    "agent \"{}\" is paused: resume it before approving its actions",
                    view.agent
                ),
            ));
        }
    }
    let decision = if approve { "approved" } else { "rejected" };
    let audit = audit_entry(
        state,
        customer,
        by,
        if approve { "approve" } else { "reject" },
        id,
        "allow",
        format!(
            "{} on {}/{}",
            view.action, view.resource.kind, view.resource.id
        ),
        &[],
    );
    let record = OwnRecord::ActionDecided(ActionDecided {
        action: id.to_owned(),
        decision: if approve {
            Decision::Approved
        } else {
            Decision::Rejected
        },
        by: by.key_id.clone(),
        reason,
        agent: view.agent.clone(),
        action_type: view.action.clone(),
        resource: resource_name(&view.resource),
    });
    if !append(
        state,
        customer,
        format!("action/{id}/decision"),
        &view.subject,
        state.now(),
        record,
        Some(audit),
    )
    .await?
    {
        return Err(ApiError::new(
            ErrorCode::AlreadyDecided,
            format!("action {id} was decided by someone else just now"),
        ));
    }
    crate::Metrics::result_by(&state.metrics.actions, decision, 1);
    state.actions_decided.notify_waiters();
    find_async(state, customer, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no action \"{id}\"")))
}

/// Records the expiry of an approval whose time is up. The record's time
/// is the expiry itself and its content fixed, so sweeps and readers
/// racing each other write it once; true when this call wrote it.
async fn expire(state: &AppState, customer: &str, view: &ActionView) -> Result<bool, ApiError> {
    let Some(approval) = &view.approval else {
        return Ok(false);
    };
    let record = OwnRecord::ActionDecided(ActionDecided {
        action: view.id.clone(),
        decision: Decision::Expired,
        by: "payoff".into(),
        reason: Some("no one decided before the approval expired".into()),
        agent: view.agent.clone(),
        action_type: view.action.clone(),
        resource: resource_name(&view.resource),
    });
    let wrote = append(
        state,
        customer,
        format!("action/{}/decision", view.id),
        &view.subject,
        approval.expires_at,
        record,
        None,
    )
    .await?;
    if wrote {
        crate::Metrics::result_by(&state.metrics.actions, "expired", 1);
    }
    state.actions_decided.notify_waiters();
    Ok(wrote)
}

/// Expires every pending approval whose time is up at `now` (the support
/// agent's sweep calls this beside its own).
pub(crate) async fn expire_due(
    state: &AppState,
    now: DateTime<Utc>,
) -> Result<crate::support::Swept, ApiError> {
    let customers = blocking_with(move |s| Ok(s.customers()?), state).await?;
    let mut swept = crate::support::Swept::default();
    for customer in customers.into_iter().map(|c| c.id) {
        let c = customer.clone();
        let pending = blocking_with(move |s| pending(s, &c, now), state).await?;
        for a in pending {
            let Some(expires_at) = a.approval.as_ref().map(|p| p.expires_at) else {
                continue;
            };
            if expires_at > now {
                swept.ahead(expires_at);
            } else if expire(state, &customer, &a).await? {
                swept.expired += 1;
            }
        }
    }
    Ok(swept)
}

pub fn state_name(s: ActionState) -> &'static str {
    match s {
        ActionState::Allowed => "allowed",
        ActionState::Denied => "denied",
        ActionState::PendingApproval => "pending_approval",
        ActionState::Approved => "approved",
        ActionState::Rejected => "rejected",
        ActionState::Expired => "expired",
    }
}

/// Records what the agent did. Only an allowed or approved action takes
/// a result, once; the same result sent again is answered as stored.
pub async fn complete(
    state: &AppState,
    customer: &str,
    id: &str,
    by: &Principal,
    req: ResultRequest,
) -> Result<(bool, ActionView), ApiError> {
    if !matches!(req.status.as_str(), "succeeded" | "failed") {
        return Err(bad("status: must be succeeded or failed"));
    }
    let detail = req.detail.unwrap_or_else(empty_object);
    check_object("detail", &detail)?;
    let view = find_async(state, customer, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no action \"{id}\"")))?;
    if let Some(r) = &view.result {
        return if r.status == req.status && r.detail == detail {
            Ok((false, view))
        } else {
            Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("action {id}: a result ({}) was recorded already", r.status),
            ))
        };
    }
    match view.state {
        ActionState::Allowed | ActionState::Approved => {}
        ActionState::PendingApproval => {
            return Err(ApiError::new(
                ErrorCode::ActionPending,
                format!("action {id} waits for a person's approval: it may not have been done"),
            ))
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::ActionNotAllowed,
                format!(
                    "action {id} was {}: it may not have been done",
                    state_name(other)
                ),
            ))
        }
    }
    let audit = audit_entry(
        state,
        customer,
        by,
        "record_action_result",
        id,
        "allow",
        format!(
            "{} on {}/{}: {}",
            view.action, view.resource.kind, view.resource.id, req.status
        ),
        &[],
    );
    let record = OwnRecord::ActionCompleted(ActionCompleted {
        action: id.to_owned(),
        agent: view.agent.clone(),
        action_type: view.action.clone(),
        status: req.status.clone(),
        resource: resource_name(&view.resource),
        detail: detail.clone(),
        by: by.key_id.clone(),
    });
    if !append(
        state,
        customer,
        format!("action/{id}/result"),
        &view.subject,
        state.now(),
        record,
        Some(audit),
    )
    .await?
    {
        // Another request recorded a result first: answer as above.
        let view = find_async(state, customer, id).await?;
        return match view {
            Some(v)
                if v.result
                    .as_ref()
                    .is_some_and(|r| r.status == req.status && r.detail == detail) =>
            {
                Ok((false, v))
            }
            _ => Err(ApiError::new(
                ErrorCode::AlreadyExists,
                format!("action {id}: a result was recorded already"),
            )),
        };
    }
    crate::Metrics::result_by(&state.metrics.actions, &req.status, 1);
    let view = find_async(state, customer, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no action \"{id}\"")))?;
    Ok((true, view))
}
