//! The support agent: takes a ticket, asks for its holdout arm, checks the
//! budget, drafts a cited reply with the requester's permissions,
//! classifies the ticket, and lets the reply rule decide whether the reply
//! goes out, waits for a person, or the ticket goes to a person.
//!
//! Every step that acts leaves its audit record *before* the act, and every
//! act is a record in the customer's ledger (source `payoff`), so outcomes,
//! costs and statements follow from the ledger alone.

pub mod approvals;
pub mod triage;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use payoff_billing::attribution::{assign, Arm};
use payoff_billing::{ASSIGNMENT, PAYOFF_SOURCE};
use payoff_store::{AuditEntry, EventFilter, Principal, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::answers::{draft, Meter};
use crate::problem::{ApiError, ErrorCode};
use crate::records::{
    data_as, micros, ApprovalApproved, ApprovalExpired, ApprovalRejected, ApprovalRequested, Draft,
    Escalated, OwnRecord, APPROVAL_REQUESTED,
};
pub use crate::records::{AI_REPLIED, ESCALATED};
use crate::{blocking_with, record_own, AppState};
use approvals::{Approval, Record, Status};
use payoff_policy::{AgentRules, PolicyErrors, ReplyRule, TicketFacts, Verdict};
use triage::{classify, Category};

/// The agent's name in budgets, costs, pauses and the audit log.
pub const AGENT: &str = "support";
pub const TICKET_CREATED: &str = "ticket.created";
/// The source of tickets handed over through the agent's route. The
/// background pass leaves them alone: the route handles them itself, and
/// two handlers of one ticket at once would race.
pub const ROUTE_SOURCE: &str = "payoff-agents-support";

const TICKET_ID_CHARS_MAX: usize = 128;
const TICKET_TEXT_CHARS_MAX: usize = 20_000;
const GROUPS_MAX: usize = 64;

/// The support agent's settings.
#[derive(Debug, Clone)]
pub struct SupportConfig {
    /// The holdout experiment in the customer's contract.
    pub experiment: String,
    pub categories: Vec<Category>,
    pub rule: ReplyRule,
    /// How long a reply waits for a person.
    pub approval_ttl: Duration,
    /// What an expired approval does: escalate (default) or send.
    pub on_expiry: Verdict,
}

impl Default for SupportConfig {
    fn default() -> Self {
        SupportConfig {
            experiment: AGENT.to_owned(),
            categories: triage::default_categories(),
            rule: ReplyRule::default(),
            approval_ttl: Duration::hours(24),
            on_expiry: Verdict::Escalate,
        }
    }
}

/// A ticket as a help desk hands it over.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    pub id: String,
    pub subject: String,
    pub body: String,
    pub requester: String,
    /// The requester's groups: the agent reads only what they may read.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Provider keys: whose ticket it is.
    #[serde(default, skip_serializing)]
    pub customer: Option<String>,
    /// When the ticket was opened (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
}

impl Ticket {
    /// Checks sizes and shapes; the error names the field.
    pub fn check(&self) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::new(ErrorCode::InvalidRequest, m));
        let id_ok = !self.id.is_empty()
            && self.id.chars().count() <= TICKET_ID_CHARS_MAX
            && self.id.chars().all(|c| c.is_ascii_graphic());
        if !id_ok {
            return bad(format!(
                "id: must be 1 to {TICKET_ID_CHARS_MAX} printable ASCII characters without spaces"
            ));
        }
        for (field, text) in [
            ("subject", &self.subject),
            ("body", &self.body),
            ("requester", &self.requester),
        ] {
            if text.trim().is_empty() || text.chars().count() > TICKET_TEXT_CHARS_MAX {
                return bad(format!(
                    "{field}: must be 1 to {TICKET_TEXT_CHARS_MAX} characters"
                ));
            }
        }
        if self.groups.len() > GROUPS_MAX
            || self.groups.iter().any(|g| g.is_empty() || g.len() > 64)
        {
            return bad(format!(
                "groups: at most {GROUPS_MAX} names of 1 to 64 characters"
            ));
        }
        Ok(())
    }
}

/// What the agent did with a ticket.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Handled {
    pub ticket: String,
    /// `ai` or `control`; `null` when the contract has no holdout.
    pub arm: Option<&'static str>,
    /// `replied`, `awaiting_approval`, `escalated`, `left_to_humans`, or
    /// `already_handled`.
    pub status: &'static str,
    pub category: Option<String>,
    pub confidence: Option<f64>,
    pub reply: Option<String>,
    /// The knowledge passages the reply rests on, as search returns them.
    #[schema(value_type = Vec<Object>)]
    pub citations: Vec<Value>,
    pub approval: Option<String>,
    pub policy_ids: Vec<String>,
    pub reason: String,
}

impl Handled {
    fn plain(
        ticket: &str,
        arm: Option<&'static str>,
        status: &'static str,
        reason: String,
    ) -> Self {
        Handled {
            ticket: ticket.to_owned(),
            arm,
            status,
            category: None,
            confidence: None,
            reply: None,
            citations: Vec::new(),
            approval: None,
            policy_ids: Vec::new(),
            reason,
        }
    }
}

/// The id of the approval of a ticket: stable, so a retried ticket finds it.
pub fn approval_id(customer: &str, ticket: &str) -> String {
    let digest = Sha256::digest(format!("{customer}\0{ticket}").as_bytes());
    format!("apr_{}", &hex::encode(digest)[..20])
}

async fn audit(
    state: &AppState,
    customer: &str,
    action: &str,
    resource: String,
    decision: &str,
    reason: &str,
    policy_ids: &[String],
) -> Result<(), ApiError> {
    crate::audit::write(
        state,
        AuditEntry {
            at: state.now(),
            actor: format!("agent:{AGENT}"),
            role: Some("agent".into()),
            customer: Some(customer.to_owned()),
            action: action.to_owned(),
            resource,
            decision: decision.to_owned(),
            reason: reason.to_owned(),
            policy_ids: policy_ids.to_vec(),
        },
    )
    .await
}

/// Records one of the agent's own acts. A record with the same id and
/// other content already stands: the act was done before (a retry), so
/// it is not repeated.
async fn act(
    state: &AppState,
    customer: &str,
    id: String,
    subject: &str,
    record: OwnRecord,
) -> Result<bool, ApiError> {
    act_at(state, customer, id, subject, record, state.now()).await
}

/// [`act`] at `time`.
async fn act_at(
    state: &AppState,
    customer: &str,
    id: String,
    subject: &str,
    record: OwnRecord,
    time: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let event = record.to_event(&id, Some(subject), time);
    Ok(record_own(state, customer, event).await?.is_ok())
}

/// The `data` of the ticket recorded under `ticket` by the agent's route.
fn recorded_ticket(store: &Store, customer: &str, ticket: &str) -> Result<Option<Value>, ApiError> {
    Ok(store
        .event_by_key(customer, ROUTE_SOURCE, ticket)?
        .and_then(|e| serde_json::from_slice::<Value>(&e.canonical).ok())
        .map(|body| body["data"].clone()))
}

/// The earlier acts of the agent on a ticket, from the ledger.
fn earlier(
    store: &Store,
    customer: &str,
    ticket: &str,
) -> Result<Option<(&'static str, Option<&'static str>)>, ApiError> {
    let page = store.events(&EventFilter {
        customer: customer.to_owned(),
        subject: Some(ticket.to_owned()),
        limit: 1000,
        ..Default::default()
    })?;
    let mut arm = None;
    let mut status = None;
    for e in page.events.iter().filter(|e| e.source == PAYOFF_SOURCE) {
        match e.event_type.as_str() {
            ASSIGNMENT => {
                let data = crate::data_of(&e.canonical);
                if let Some(Ok(payoff_billing::Record::Assignment(a))) =
                    payoff_billing::Record::parse(
                        &e.source,
                        &e.event_type,
                        e.subject.as_deref(),
                        &data,
                    )
                {
                    arm = Some(a.arm.name());
                }
            }
            AI_REPLIED => status = Some("replied"),
            ESCALATED => status = status.or(Some("escalated")),
            approvals::REQUESTED => status = status.or(Some("awaiting_approval")),
            _ => {}
        }
    }
    Ok(match (arm, status) {
        (_, Some(s)) => Some((s, arm)),
        (Some("control"), None) => Some(("left_to_humans", arm)),
        _ => None,
    })
}

/// Handles one ticket. With `record_ticket`, the ticket is first recorded
/// as a `ticket.created` event (when it came through the agent's route
/// rather than the ledger). Handling a ticket twice does nothing new.
pub async fn handle(
    state: &AppState,
    customer: &str,
    ticket: Ticket,
    record_ticket: bool,
) -> Result<Handled, ApiError> {
    ticket.check()?;
    if record_ticket {
        let time = ticket.time.unwrap_or_else(|| state.now());
        let data = json!({ "subject": ticket.subject, "body": ticket.body, "requester": ticket.requester, "groups": ticket.groups });
        let event = json!({
            "specversion": "1.0", "id": ticket.id, "source": ROUTE_SOURCE, "type": TICKET_CREATED,
            "subject": ticket.id, "time": micros(time), "data": data,
        });
        if let Err(e) = record_own(state, customer, event).await? {
            // A retry without a time of its own is stamped anew; it is the
            // same ticket when everything else is the same.
            let (c, id) = (customer.to_owned(), ticket.id.clone());
            let stored = blocking_with(move |s| recorded_ticket(s, &c, &id), state).await?;
            if ticket.time.is_some() || stored.as_ref() != Some(&data) {
                return Err(ApiError::new(ErrorCode::EventConflict, format!("id: {e}")));
            }
        }
    }
    let (c, t) = (customer.to_owned(), ticket.id.clone());
    if let Some((status, arm)) = blocking_with(move |s| earlier(s, &c, &t), state).await? {
        return Ok(Handled::plain(
            &ticket.id,
            arm,
            "already_handled",
            format!("the ticket was {status} before"),
        ));
    }
    let resource = format!("ticket/{}", ticket.id);

    // The kill switch stops every act but the hand-over to people.
    let c = customer.to_owned();
    if let Some(pause) = blocking_with(move |s| Ok(s.agent_paused(AGENT, &c)?), state).await? {
        let reason = format!(
            "the support agent is paused (by {} at {})",
            pause.paused_by,
            micros(pause.paused_at)
        );
        audit(state, customer, "escalate", resource, "allow", &reason, &[]).await?;
        escalate(state, customer, &ticket.id, &reason, None).await?;
        return Ok(Handled::plain(&ticket.id, None, "escalated", reason));
    }

    // Holdout: control tickets are left to people, untouched.
    let arm = holdout_arm(state, customer, &ticket.id).await?;
    if arm == Some(Arm::Control) {
        let reason = "the ticket is in the control arm of the holdout".to_owned();
        audit(
            state,
            customer,
            "leave_to_humans",
            resource,
            "allow",
            &reason,
            &[],
        )
        .await?;
        return Ok(Handled::plain(
            &ticket.id,
            Some("control"),
            "left_to_humans",
            reason,
        ));
    }
    let arm_name = arm.map(|a| a.name());

    // Budget: stop before spending.
    let c = customer.to_owned();
    let now = state.now();
    let budget = blocking_with(
        move |s| {
            if s.budgets(&c)?
                .iter()
                .all(|b| b.agent != "*" && b.agent != AGENT)
            {
                return Ok(None);
            }
            Ok(Some(payoff_accounting::economics::check_budget(
                s,
                &c,
                Some(AGENT),
                now,
            )?))
        },
        state,
    )
    .await?;
    if let Some(check) = budget.filter(|b| !b.allow) {
        let reason = format!("budget: {}", check.reason);
        audit(
            state,
            customer,
            "escalate",
            resource,
            "allow",
            &reason,
            &["builtin.budget".into()],
        )
        .await?;
        escalate(state, customer, &ticket.id, &reason, None).await?;
        return Ok(Handled::plain(&ticket.id, arm_name, "escalated", reason));
    }

    // Draft with the requester's permissions.
    let question = triage::request_text(&ticket.subject, &ticket.body);
    let hits =
        crate::routes::knowledge::passages(state, customer, &question, ticket.groups.clone(), 5)
            .await?;
    let meter = Meter {
        customer,
        agent: AGENT,
        subject: Some(&ticket.id),
    };
    let answer = match draft(state, &hits, &question, meter).await {
        Ok(a) => a,
        Err(e) => {
            let reason = format!("no draft: {}", e.detail);
            audit(
                state,
                customer,
                "escalate",
                resource,
                "allow",
                &reason,
                &["builtin.model_failure".into()],
            )
            .await?;
            escalate(state, customer, &ticket.id, &reason, None).await?;
            return Ok(Handled::plain(&ticket.id, arm_name, "escalated", reason));
        }
    };
    let category = classify(&state.support.categories, &question);
    let c = customer.to_owned();
    let policies = state.agent_policies.clone();
    let rules = blocking_with(move |s| Ok(policies.for_customer(s, &c)), state).await?;
    let decision = match rules {
        Ok(rules) => rules.decide(
            AGENT,
            &TicketFacts {
                ticket: &ticket.id,
                customer,
                category: &category,
                confidence: answer.confidence,
                no_answer: answer.no_answer,
                citations: answer.citations.len(),
                requester: &ticket.requester,
            },
        ),
        // Rules that no longer compile decide nothing: a person does.
        Err(why) => payoff_policy::AgentDecision {
            verdict: Verdict::Escalate,
            policy_ids: vec!["builtin.broken_rules".into()],
            reason: why,
        },
    };
    let citations: Vec<Value> = answer
        .citations
        .iter()
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .collect();
    // The groups the draft was read as: only readers holding all of them
    // see it in the approval queue (`DraftReader::redact_approval`).
    let mut read_as = ticket.groups.clone();
    read_as.sort();
    read_as.dedup();
    let draft = Draft {
        ticket: ticket.id.clone(),
        agent: AGENT.into(),
        reply: answer.text.clone(),
        citations: citations.clone(),
        read_as,
        confidence: answer.confidence,
        category: category.clone(),
        requester: ticket.requester.clone(),
        policy_ids: decision.policy_ids.clone(),
        reason: decision.reason.clone(),
        approved_by: None,
    };
    audit(
        state,
        customer,
        decision.verdict.action(),
        resource,
        "allow",
        &decision.reason,
        &decision.policy_ids,
    )
    .await?;

    let mut handled = Handled {
        ticket: ticket.id.clone(),
        arm: arm_name,
        status: "",
        category: Some(category.clone()),
        confidence: Some(answer.confidence),
        reply: (!answer.no_answer).then(|| answer.text.clone()),
        citations,
        approval: None,
        policy_ids: decision.policy_ids.clone(),
        reason: decision.reason.clone(),
    };
    match decision.verdict {
        Verdict::Send => {
            act(
                state,
                customer,
                format!("reply/{}", ticket.id),
                &ticket.id,
                OwnRecord::Replied(draft),
            )
            .await?;
            handled.status = "replied";
        }
        Verdict::NeedsApproval => {
            let id = approval_id(customer, &ticket.id);
            let requested = ApprovalRequested {
                draft,
                approval: id.clone(),
                expires_at: Some(micros(state.now() + state.support.approval_ttl)),
                on_expiry: Some(state.support.on_expiry.action().into()),
            };
            act(
                state,
                customer,
                format!("approval/{id}"),
                &ticket.id,
                OwnRecord::ApprovalRequested(requested),
            )
            .await?;
            handled.status = "awaiting_approval";
            handled.approval = Some(id);
        }
        Verdict::Escalate => {
            escalate(state, customer, &ticket.id, &decision.reason, Some(draft)).await?;
            handled.status = "escalated";
        }
    }
    Ok(handled)
}

async fn escalate(
    state: &AppState,
    customer: &str,
    ticket: &str,
    reason: &str,
    draft: Option<Draft>,
) -> Result<(), ApiError> {
    let record = OwnRecord::Escalated(Escalated {
        ticket: ticket.to_owned(),
        agent: AGENT.into(),
        reason: reason.to_owned(),
        draft,
    });
    act(
        state,
        customer,
        format!("escalation/{ticket}"),
        ticket,
        record,
    )
    .await?;
    Ok(())
}

/// The ticket's arm when the customer's contract runs the agent's holdout
/// experiment; its first assignment is recorded like any other.
async fn holdout_arm(
    state: &AppState,
    customer: &str,
    ticket: &str,
) -> Result<Option<Arm>, ApiError> {
    let (c, experiment) = (customer.to_owned(), state.support.experiment.clone());
    let share = blocking_with(
        move |s| match payoff_accounting::billing::Versions::load(s, &c) {
            Ok(v) => Ok(v.latest().experiment(&experiment).map(|(_, share)| share)),
            Err(payoff_outcomes::OutcomesError::NoContract(_)) => Ok(None),
            Err(e) => Err(e.into()),
        },
        state,
    )
    .await?;
    let Some(share) = share else {
        return Ok(None);
    };
    let share = share.to_string().parse::<f64>().unwrap_or(0.0);
    let experiment = &state.support.experiment;
    let arm = assign(&format!("{customer}/{experiment}"), ticket, share);
    crate::routes::assignments::record(state, customer, experiment, &[(ticket.to_owned(), arm)])
        .await?;
    Ok(Some(arm))
}

/// The agent rules in force: the built-in ones (from the settings) and,
/// per customer, those plus the customer's latest uploaded version,
/// compiled once per version.
pub struct AgentPolicies {
    builtin: AgentRules,
    compiled: Mutex<HashMap<String, (u32, Arc<AgentRules>)>>,
}

impl AgentPolicies {
    pub fn new(rule: &ReplyRule) -> Result<AgentPolicies, PolicyErrors> {
        Ok(AgentPolicies {
            builtin: AgentRules::builtin(rule)?,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// The built-in rules, which uploaded customer rules are checked with.
    pub fn builtin(&self) -> &AgentRules {
        &self.builtin
    }

    /// The rules deciding for `customer` now; `Err` says why the stored
    /// rules cannot be used (the agent then hands tickets to people).
    pub fn for_customer(&self, store: &Store, customer: &str) -> Result<Arc<AgentRules>, String> {
        let latest = store
            .policies(customer)
            .map_err(|e| format!("the customer's rules could not be read: {e}"))?
            .pop();
        let Some(latest) = latest else {
            return Ok(Arc::new(self.builtin.clone()));
        };
        let mut compiled = self.compiled.lock().expect("policy cache");
        if let Some((version, rules)) = compiled.get(customer) {
            if *version == latest.version {
                return Ok(rules.clone());
            }
        }
        let label = payoff_policy::rules_label(customer, latest.version);
        let rules = Arc::new(
            self.builtin
                .with_customer(&label, &latest.body)
                .map_err(|e| {
                    format!(
                        "the customer's rules v{} do not compile: {e}",
                        latest.version
                    )
                })?,
        );
        compiled.insert(customer.to_owned(), (latest.version, rules.clone()));
        Ok(rules)
    }
}

/// The approvals page's two lists, as `reader` may see them: every draft
/// still waiting, and the `decided_max` decided last (newest first). Read
/// newest first, and only as far back as either list can still change: a
/// draft is decided within [`pending_window`] of being asked.
pub fn approvals_page(
    store: &Store,
    customer: &str,
    reader: &Principal,
    now: DateTime<Utc>,
    ttl: chrono::Duration,
    decided_max: usize,
) -> Result<(Vec<Approval>, Vec<Approval>), ApiError> {
    let window = pending_window(ttl);
    let (mut pending, mut decided): (Vec<Approval>, Vec<Approval>) = (Vec::new(), Vec::new());
    walk_approvals_newest(store, customer, None, |_, a| {
        let asked = a.requested_at;
        if a.status == Status::Pending {
            pending.push(a);
        } else {
            decided.push(a);
            if decided.len() > decided_max {
                decided.sort_by_key(|d| std::cmp::Reverse(d.decided_at));
                decided.truncate(decided_max);
            }
        }
        // An older draft was decided before `asked + window`: once the
        // list is full of decisions later than that, it cannot enter.
        let full_since = (decided.len() == decided_max)
            .then(|| decided.iter().filter_map(|d| d.decided_at).min())
            .flatten();
        asked >= now - window || full_since.is_none_or(|d| asked + window >= d)
    })?;
    decided.sort_by_key(|d| std::cmp::Reverse(d.decided_at));
    decided.truncate(decided_max);
    pending.sort_by_key(|a| a.expires_at);
    let reader = DraftReader::of(store, reader)?;
    for a in pending.iter_mut().chain(decided.iter_mut()) {
        reader.redact_approval(a);
    }
    Ok((pending, decided))
}

fn withheld_reason(missing: &[String]) -> String {
    format!(
        "the draft was written from documents of groups this key does not hold ({})",
        missing.join(", ")
    )
}

/// Who may read what the agent drafted. A draft read as groups (the
/// ticket's, recorded as `read_as` on every record that carries its text)
/// may quote documents of those groups, so a customer's key sees it only
/// when it holds every one of them. Agent keys act for end users and
/// provider keys mint every customer's keys: they see every draft.
pub struct DraftReader {
    /// `None` for readers who see every draft.
    groups: Option<Vec<String>>,
}

impl DraftReader {
    pub fn of(store: &Store, reader: &Principal) -> Result<Self, ApiError> {
        Self::of_key(
            store,
            &reader.key_id,
            reader.role,
            reader.customer.is_some(),
        )
    }

    /// The reader behind a key id recorded earlier (a webhook's creator);
    /// an id that names no key reads as a key without groups.
    pub fn of_key_id(store: &Store, key_id: &str) -> Result<Self, ApiError> {
        match store.key(key_id)? {
            Some(k) => Self::of_key(store, key_id, k.role, k.customer.is_some()),
            None => Ok(Self {
                groups: Some(Vec::new()),
            }),
        }
    }

    fn of_key(
        store: &Store,
        key_id: &str,
        role: payoff_store::Role,
        customer_key: bool,
    ) -> Result<Self, ApiError> {
        if !customer_key || role == payoff_store::Role::Agent {
            return Ok(Self { groups: None });
        }
        Ok(Self {
            groups: Some(
                store
                    .key_groups(key_id)?
                    .and_then(|g| serde_json::from_str(&g).ok())
                    .unwrap_or_default(),
            ),
        })
    }

    /// The groups of a record's `read_as` (in `data`, or in the draft an
    /// escalation carries) that this reader lacks.
    pub fn missing(&self, data: &Value) -> Vec<String> {
        let Some(own) = &self.groups else {
            return Vec::new();
        };
        [&data["read_as"], &data["draft"]["read_as"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(Value::as_str)
            .filter(|g| !own.iter().any(|o| o == g))
            .map(str::to_owned)
            .collect()
    }

    /// Withholds the draft of an approval this reader may not read: its
    /// reply, citations and final text, saying which groups it lacks.
    pub fn redact_approval(&self, a: &mut Approval) {
        let missing = self.missing(&a.request);
        if !missing.is_empty() {
            a.request["reply"] = Value::Null;
            a.request["citations"] = json!([]);
            a.final_text = None;
            a.request["withheld"] = withheld_reason(&missing).into();
        }
    }

    /// Withholds the `data` of one of the agent's records (a CloudEvent
    /// as JSON) when it carries a draft this reader may not read; the
    /// envelope stays, so the record's place in the ledger is still seen.
    /// Returns whether it withheld anything.
    pub fn redact_event(&self, event: &mut Value) -> bool {
        if event["source"] != PAYOFF_SOURCE {
            return false;
        }
        let missing = self.missing(&event["data"]);
        if missing.is_empty() {
            return false;
        }
        let data = &event["data"];
        let read_as = if data["read_as"].is_array() {
            &data["read_as"]
        } else {
            &data["draft"]["read_as"]
        };
        event["data"] = json!({
            "ticket": data["ticket"], "approval": data["approval"], "read_as": read_as,
            "withheld": withheld_reason(&missing),
        });
        true
    }

    /// [`Self::redact_event`] on canonical bytes: the same bytes back when
    /// nothing is withheld, so a reader who may see everything gets the
    /// ledger's bytes exactly.
    pub fn redact_bytes(&self, canonical: Vec<u8>) -> Vec<u8> {
        if self.groups.is_none() || !contains(&canonical, b"read_as") {
            return canonical;
        }
        let Ok(mut event) = serde_json::from_slice::<Value>(&canonical) else {
            return canonical;
        };
        if self.redact_event(&mut event) {
            payoff_ledger::canonical_json(&event)
        } else {
            canonical
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// How long before `now` a draft still waiting for a person can have
/// been asked: its time to live (as configured now, or a week if that is
/// longer: the setting may have been longer when it was asked), and a day
/// for a sweep that was late. Older ones are decided or expired.
pub fn pending_window(ttl: chrono::Duration) -> chrono::Duration {
    ttl.max(chrono::Duration::days(7)) + chrono::Duration::days(1)
}

/// Walks a customer's drafts awaiting approval newest first, each folded
/// from its request and its decision (one lookup by key), and hands each
/// to `visit` until it answers false: a page or a count costs what it
/// reads, not every draft the customer ever had.
pub fn walk_approvals_newest(
    store: &Store,
    customer: &str,
    before: Option<u64>,
    mut visit: impl FnMut(u64, Approval) -> bool,
) -> Result<(), ApiError> {
    store.walk_own_records_newest(customer, approvals::REQUESTED, before, |r| {
        let data = crate::data_of(&r.canonical);
        let id = data_as::<ApprovalRequested>(APPROVAL_REQUESTED, &data)?.approval;
        let decided = store
            .event_by_key(customer, PAYOFF_SOURCE, &format!("approval/{id}/decision"))?
            .map(|e| (crate::data_of(&e.canonical), e));
        let mut records = vec![Record {
            event_type: approvals::REQUESTED,
            time: r.time,
            data: &data,
        }];
        if let Some((d, e)) = &decided {
            records.push(Record {
                event_type: &e.event_type,
                time: e.time,
                data: d,
            });
        }
        Ok(approvals::fold(records)?
            .into_iter()
            .all(|a| visit(r.sequence, a)))
    })
}

/// Folds Payoff's approval records, in ledger order, into approvals.
fn fold_stored(events: Vec<payoff_store::StoredEvent>) -> Result<Vec<Approval>, ApiError> {
    let parsed: Vec<(String, DateTime<Utc>, Value)> = events
        .into_iter()
        .filter(|e| e.source == PAYOFF_SOURCE && approvals::TYPES.contains(&e.event_type.as_str()))
        .map(|e| {
            let data = crate::data_of(&e.canonical);
            (e.event_type, e.time, data)
        })
        .collect();
    Ok(approvals::fold(parsed.iter().map(|(t, time, data)| {
        Record {
            event_type: t,
            time: *time,
            data,
        }
    }))?)
}

/// One approval, found by the key of its request record and folded from
/// its ticket's records alone.
pub fn find_approval(
    store: &Store,
    customer: &str,
    id: &str,
) -> Result<Option<Approval>, ApiError> {
    let Some(request) = store.event_by_key(customer, PAYOFF_SOURCE, &format!("approval/{id}"))?
    else {
        return Ok(None);
    };
    let page = store.events(&EventFilter {
        customer: customer.to_owned(),
        subject: request.subject.clone(),
        limit: 1000,
        ..Default::default()
    })?;
    Ok(fold_stored(page.events)?.into_iter().find(|a| a.id == id))
}

/// A person's decision on a pending approval.
pub enum Choice {
    Approve { text: Option<String> },
    Reject { reason: Option<String> },
}

/// Applies a person's decision (or the expiry default) and performs what
/// follows: the reply goes out, or the ticket goes to a person.
pub async fn decide_approval(
    state: &AppState,
    customer: &str,
    id: &str,
    by: &Principal,
    choice: Choice,
) -> Result<Approval, ApiError> {
    let (c, wanted, reader) = (customer.to_owned(), id.to_owned(), by.clone());
    let (approval, own) = blocking_with(
        move |s| Ok((find_approval(s, &c, &wanted)?, DraftReader::of(s, &reader)?)),
        state,
    )
    .await?;
    let approval = approval
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no approval \"{id}\"")))?;
    // Deciding on a draft one may not read would be deciding blind.
    let missing = own.missing(&approval.request);
    if !missing.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "approval {id}: its draft was written from documents of groups this key does not hold ({})",
                missing.join(", ")
            ),
        ));
    }
    let (role, by) = (by.role.as_str(), by.key_id.as_str());
    if approval.status != Status::Pending {
        return Err(ApiError::new(
            ErrorCode::AlreadyDecided,
            format!("approval {id} was already {:?}", approval.status).to_lowercase(),
        ));
    }
    if approval.expires_at <= state.now() {
        expire(state, customer, &approval).await?;
        return Err(ApiError::new(
            ErrorCode::AlreadyDecided,
            format!("approval {id} expired at {}", micros(approval.expires_at)),
        ));
    }
    let c = customer.to_owned();
    if blocking_with(move |s| Ok(s.agent_paused(AGENT, &c)?), state)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            ErrorCode::AgentPaused,
            "the support agent is paused: resume it before replies go out",
        ));
    }
    let resource = format!("approval/{id}");
    // An edited reply may quote what the draft quoted.
    let read_as = approval
        .request
        .get("read_as")
        .and_then(|r| serde_json::from_value::<Vec<String>>(r.clone()).ok());
    let (record, text, follow) = match choice {
        Choice::Approve { text } => {
            if let Some(t) = &text {
                if t.trim().is_empty() || t.chars().count() > TICKET_TEXT_CHARS_MAX {
                    return Err(ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("text: must be 1 to {TICKET_TEXT_CHARS_MAX} characters"),
                    ));
                }
            }
            let record = OwnRecord::ApprovalApproved(ApprovalApproved {
                approval: id.to_owned(),
                by: by.to_owned(),
                edited: text.is_some(),
                text: text.clone(),
                ticket: approval.ticket.clone(),
                read_as,
            });
            (record, text, Verdict::Send)
        }
        Choice::Reject { reason } => {
            let record = OwnRecord::ApprovalRejected(ApprovalRejected {
                approval: id.to_owned(),
                by: by.to_owned(),
                reason,
                ticket: approval.ticket.clone(),
                read_as,
            });
            (record, None, Verdict::Escalate)
        }
    };
    let action = if follow == Verdict::Send {
        "approve"
    } else {
        "reject"
    };
    crate::audit::write(
        state,
        AuditEntry {
            at: state.now(),
            actor: by.to_owned(),
            role: Some(role.to_owned()),
            customer: Some(customer.to_owned()),
            action: action.to_owned(),
            resource,
            decision: "allow".into(),
            reason: format!("ticket {}", approval.ticket),
            policy_ids: Vec::new(),
        },
    )
    .await?;
    if !act(
        state,
        customer,
        format!("approval/{id}/decision"),
        &approval.ticket,
        record,
    )
    .await?
    {
        return Err(ApiError::new(
            ErrorCode::AlreadyDecided,
            format!("approval {id} was decided by someone else just now"),
        ));
    }
    follow_up(state, customer, &approval, follow, text.as_deref(), by).await?;
    let (c, wanted) = (customer.to_owned(), id.to_owned());
    blocking_with(move |s| find_approval(s, &c, &wanted), state)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no approval \"{id}\"")))
}

async fn follow_up(
    state: &AppState,
    customer: &str,
    approval: &Approval,
    verdict: Verdict,
    text: Option<&str>,
    by: &str,
) -> Result<(), ApiError> {
    let requested: ApprovalRequested = data_as(APPROVAL_REQUESTED, &approval.request)?;
    let mut draft = requested.draft;
    match verdict {
        Verdict::Send => {
            if let Some(t) = text {
                draft.reply = t.to_owned();
            }
            draft.approved_by = Some(by.to_owned());
            act(
                state,
                customer,
                format!("reply/{}", approval.ticket),
                &approval.ticket,
                OwnRecord::Replied(draft),
            )
            .await?;
        }
        _ => {
            let reason = format!("the drafted reply was not approved ({by})");
            escalate(state, customer, &approval.ticket, &reason, Some(draft)).await?;
        }
    }
    Ok(())
}

/// Applies the expiry default to an approval whose time is up. The
/// record's time is the expiry itself, so sweeps racing each other write
/// the same record once; true when this call wrote it.
pub async fn expire(
    state: &AppState,
    customer: &str,
    approval: &Approval,
) -> Result<bool, ApiError> {
    let by = format!("agent:{AGENT}");
    let resource = format!("approval/{}", approval.id);
    let follow = if approval.on_expiry == "send_reply" {
        Verdict::Send
    } else {
        Verdict::Escalate
    };
    audit(
        state,
        customer,
        "expire",
        resource,
        "allow",
        &format!("expired; default: {}", follow.action()),
        &["builtin.expiry".into()],
    )
    .await?;
    let record = OwnRecord::ApprovalExpired(ApprovalExpired {
        approval: approval.id.clone(),
        ticket: approval.ticket.clone(),
        by: by.clone(),
    });
    let wrote = act_at(
        state,
        customer,
        format!("approval/{}/decision", approval.id),
        &approval.ticket,
        record,
        approval.expires_at,
    )
    .await?;
    if wrote {
        follow_up(state, customer, approval, follow, None, &by).await?;
    }
    Ok(wrote)
}

/// Works the tickets that arrived as ledger events since the last pass;
/// returns how many were handled.
async fn work_tickets(state: &AppState) -> Result<usize, ApiError> {
    let customers = blocking_with(move |s| Ok(s.customers()?), state).await?;
    let mut handled = 0;
    for customer in customers.iter().map(|c| c.id.clone()) {
        let c = customer.clone();
        let (cursor, page) = blocking_with(
            move |s| {
                let cursor = s.agent_cursor(AGENT, &c)?;
                let page = s.events(&EventFilter {
                    customer: c.clone(),
                    event_type: Some(TICKET_CREATED.to_owned()),
                    after_sequence: Some(cursor),
                    limit: 200,
                    ..Default::default()
                })?;
                Ok((cursor, page))
            },
            state,
        )
        .await?;
        let mut last = cursor;
        for event in page.events {
            last = event.sequence;
            if event.source == ROUTE_SOURCE {
                continue;
            }
            let body: Value = serde_json::from_slice(&event.canonical).unwrap_or_default();
            let data = &body["data"];
            let text = |k: &str| {
                data.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let ticket = Ticket {
                id: event.subject.clone().unwrap_or_else(|| event.id.clone()),
                subject: text("subject"),
                body: text("body"),
                requester: text("requester"),
                groups: ticket_groups(data),
                customer: None,
                time: Some(event.time),
            };
            match handle(state, &customer, ticket, false).await {
                Ok(_) => handled += 1,
                // A malformed ticket is left to people; the audit says why.
                Err(e) if e.code == ErrorCode::InvalidRequest => {
                    let resource =
                        format!("ticket/{}", event.subject.as_deref().unwrap_or(&event.id));
                    audit(state, &customer, "skip", resource, "fail", &e.detail, &[]).await?;
                }
                Err(e) => return Err(e),
            }
        }
        if last != cursor {
            let c = customer.clone();
            blocking_with(move |s| Ok(s.set_agent_cursor(AGENT, &c, last)?), state).await?;
        }
    }
    Ok(handled)
}

/// What a sweep of approvals did: how many it expired, and the earliest
/// expiry still ahead among the pending ones it read (the next sweep need
/// not wait longer than that).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Swept {
    pub expired: usize,
    pub next_expiry: Option<DateTime<Utc>>,
}

impl Swept {
    /// Notes a pending approval expiring at `at`, still ahead.
    pub fn ahead(&mut self, at: DateTime<Utc>) {
        self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
    }
}

/// Applies the expiry default to every draft whose approval time is up at
/// `now`.
async fn expire_due(state: &AppState, now: DateTime<Utc>) -> Result<Swept, ApiError> {
    let customers = blocking_with(move |s| Ok(s.customers()?), state).await?;
    let mut swept = Swept::default();
    for customer in customers.into_iter().map(|c| c.id) {
        let c = customer.clone();
        // Newest first, back to the oldest draft that can still be waiting.
        let since = now - pending_window(state.support.approval_ttl);
        let (due, ahead): (Vec<Approval>, Vec<Approval>) = blocking_with(
            move |s| {
                let mut pending = Vec::new();
                walk_approvals_newest(s, &c, None, |_, a| {
                    let asked = a.requested_at;
                    if a.status == Status::Pending {
                        pending.push(a);
                    }
                    asked >= since
                })?;
                Ok(pending.into_iter().partition(|a| a.expires_at <= now))
            },
            state,
        )
        .await?;
        for a in ahead {
            swept.ahead(a.expires_at);
        }
        for a in due {
            if expire(state, &customer, &a).await? {
                swept.expired += 1;
            }
        }
    }
    Ok(swept)
}

/// What one pass of the support agent did (see [`Worker::tick`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Tickets that arrived as ledger events, handled.
    pub tickets: usize,
    /// Whether this pass swept the approvals (the sweep has its own
    /// schedule, see [`Worker`]).
    pub swept: bool,
    /// Drafts whose approval expired in this pass.
    pub approvals_expired: usize,
    /// Actions whose approval expired in this pass.
    pub actions_expired: usize,
}

/// The support agent's background work, one [`Worker::tick`] at a time.
/// It holds the sweep's schedule, kept in business time (`state.clock`),
/// so a simulation that sets the clock decides when approvals are looked
/// at and expire, and the same ticks give the same records.
///
/// Reading every approval is the costly part of a pass, so the sweep runs
/// every tenth of the approval window (between 1 and 30 s of business
/// time), and sooner when a pending approval it read expires sooner: each
/// approval that was pending at a sweep expires at the first pass at or
/// after its deadline.
#[derive(Debug, Default)]
pub struct Worker {
    /// Business time from which the next pass sweeps; none: the first does.
    next_sweep_at: Option<DateTime<Utc>>,
}

impl Worker {
    /// One pass at the business time of `state.clock`: works the tickets
    /// that arrived as ledger events since the last pass, then, when the
    /// sweep is due, applies the expiry default to every approval (drafts
    /// and actions) whose time is up. Each part runs even when one before
    /// it failed (a customer whose tickets fail must not keep approvals
    /// from expiring); the first error is returned.
    pub async fn tick(&mut self, state: &AppState) -> Result<Pass, ApiError> {
        let tickets = work_tickets(state).await;
        let now = state.now();
        if self.next_sweep_at.is_some_and(|at| now < at) {
            return tickets.map(|tickets| Pass {
                tickets,
                ..Pass::default()
            });
        }
        let drafts = expire_due(state, now).await;
        let actions = crate::actions::expire_due(state, now).await;
        let every = (state.support.approval_ttl / 10).clamp(SWEEP_EVERY_MIN, SWEEP_EVERY_MAX);
        // A failed sweep is tried again a period later, not at every pass.
        let ahead = [&drafts, &actions]
            .into_iter()
            .filter_map(|s| s.as_ref().ok()?.next_expiry);
        self.next_sweep_at = Some(ahead.fold(now + every, DateTime::min));
        Ok(Pass {
            tickets: tickets?,
            swept: true,
            approvals_expired: drafts?.expired,
            actions_expired: actions?.expired,
        })
    }
}

/// The sweep's period in business time, at least and at most.
const SWEEP_EVERY_MIN: Duration = Duration::seconds(1);
const SWEEP_EVERY_MAX: Duration = Duration::seconds(30);

/// Ticks a [`Worker`] every `every` of real time until `stop` is
/// notified (not started when the server's background work is manual).
pub async fn run(
    state: AppState,
    every: std::time::Duration,
    stop: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut worker = Worker::default();
    let mut seen_errors = BTreeSet::new();
    loop {
        if let Err(e) = worker.tick(&state).await {
            if seen_errors.insert(e.detail.clone()) {
                tracing::error!(error = %e.detail, "support agent pass failed");
            }
        }
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The groups a `ticket.created` event's `data` asks the agent to read as.
pub(crate) fn ticket_groups(data: &Value) -> Vec<String> {
    data.get("groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(groups: Option<&[&str]>) -> DraftReader {
        DraftReader {
            groups: groups.map(|g| g.iter().map(|s| s.to_string()).collect()),
        }
    }

    /// The bytes a webhook sends: the ledger's own bytes unless a draft is
    /// withheld, and then no word of the draft.
    #[test]
    fn a_draft_is_withheld_from_bytes_for_readers_without_its_groups() {
        let escalated = json!({"specversion": "1.0", "id": "escalation/t1", "source": PAYOFF_SOURCE,
            "type": "ticket.escalated", "subject": "t1",
            "data": {"ticket": "t1", "reason": "low confidence",
                "draft": {"reply": "the VIP rebate is 40%", "read_as": ["finance", "vip"]}}});
        let bytes = payoff_ledger::canonical_json(&escalated);
        for (label, r) in [
            ("everyone", reader(None)),
            ("both groups", reader(Some(&["vip", "finance"]))),
        ] {
            assert_eq!(r.redact_bytes(bytes.clone()), bytes, "{label}");
        }
        let out = reader(Some(&["vip"])).redact_bytes(bytes.clone());
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("rebate"), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], "escalation/t1");
        assert_eq!(v["data"]["ticket"], "t1");
        assert_eq!(v["data"]["read_as"], json!(["finance", "vip"]));
        assert!(
            v["data"]["withheld"]
                .as_str()
                .unwrap()
                .contains("(finance)"),
            "{v}"
        );

        // Another source's event is never touched, whatever it carries.
        let foreign = json!({"specversion": "1.0", "id": "x", "source": "helpdesk", "type": "note",
            "data": {"read_as": ["vip"], "reply": "kept"}});
        let bytes = payoff_ledger::canonical_json(&foreign);
        assert_eq!(reader(Some(&[])).redact_bytes(bytes.clone()), bytes);
    }
}
