//! Every record Payoff writes into a customer's ledger itself, as one
//! type: [`OwnRecord`] builds the event ([`OwnRecord::to_event`]) and the
//! readers parse the same structs back, so what is written and what is
//! read cannot drift apart (they were `json!` literals on one side and
//! lookups by string key on the other). Billing's own records (dispute
//! steps, holdout assignments and releases, which a close reads) are
//! `payoff_billing::Record`, one variant here.
//!
//! A record's bytes are part of the chain and of every statement's
//! evidence: each struct serialises to exactly the members its literal
//! had (an absent optional member stays absent, a `null` one stays
//! `null`; the ledger keeps canonical JSON, so member order does not
//! matter), which the tests below pin byte for byte. Fields an earlier
//! build may not have written default when read.

use chrono::{DateTime, SecondsFormat, Utc};
use payoff_policy::ActionVerdict;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::ResourceRef;
use crate::watch::Drift;

pub use payoff_billing::PAYOFF_SOURCE;

/// Event types of an action's three records.
pub const ACTION_REQUESTED: &str = "payoff.action.requested";
pub const ACTION_DECIDED: &str = "payoff.action.decided";
pub const ACTION_COMPLETED: &str = "payoff.action.completed";
/// Event types of a budget crossing its warning threshold or its limit.
pub const BUDGET_WARNING: &str = "payoff.budget.warning";
pub const BUDGET_EXCEEDED: &str = "payoff.budget.exceeded";
/// Event type of an agent's quality measure outside its band.
pub const QUALITY_DRIFT: &str = "payoff.quality.drift";
/// Event types of a drafted reply's approval: its request, and at most
/// one decision (approved, rejected or expired).
pub const APPROVAL_REQUESTED: &str = "payoff.approval.requested";
pub const APPROVAL_APPROVED: &str = "payoff.approval.approved";
pub const APPROVAL_REJECTED: &str = "payoff.approval.rejected";
pub const APPROVAL_EXPIRED: &str = "payoff.approval.expired";
/// Event types of the support agent's reply sent and of a ticket handed
/// to a person.
pub const AI_REPLIED: &str = "ticket.ai_replied";
pub const ESCALATED: &str = "ticket.escalated";

/// One record Payoff writes into a customer's ledger.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnRecord {
    /// Dispute steps, holdout assignments and releases: billing reads them.
    Billing(payoff_billing::Record),
    /// An agent asked to act; the rules' decision.
    ActionRequested(ActionRequested),
    /// A person approved or rejected the action, or its approval expired.
    ActionDecided(ActionDecided),
    /// The agent recorded what it did.
    ActionCompleted(ActionCompleted),
    /// A budget crossed its warning threshold (`exceeded: false`) or its
    /// limit.
    Budget {
        exceeded: bool,
        crossing: BudgetCrossing,
    },
    /// An agent's quality measure left its band in a week.
    QualityDrift(Drift),
    /// The support agent's draft waits for a person.
    ApprovalRequested(ApprovalRequested),
    /// A person approved the draft (perhaps with their own text).
    ApprovalApproved(ApprovalApproved),
    /// A person rejected the draft.
    ApprovalRejected(ApprovalRejected),
    /// No one decided in time.
    ApprovalExpired(ApprovalExpired),
    /// The support agent's reply went out.
    Replied(Draft),
    /// The ticket went to a person.
    Escalated(Escalated),
    /// A model call the support agent's answerer made (`llm.call`).
    AnswerCall(AnswerCall),
    /// A model call through the gateway, whatever became of it (`llm.call`).
    GatewayCall(GatewayCall),
}

/// `data` of [`OwnRecord::AnswerCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerCall {
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub latency_ms: u64,
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// `data` of [`OwnRecord::GatewayCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayCall {
    /// The model that answered (else the one asked for).
    pub model: String,
    pub requested_model: String,
    pub upstream: String,
    pub endpoint: String,
    pub agent: String,
    pub stream: bool,
    /// OpenAI's convention: input counts the cached tokens read.
    pub input_tokens: u64,
    pub input_includes_cached: bool,
    pub cached_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub reasoning_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    /// The upstream's HTTP status, if it answered.
    pub status: Option<u16>,
    pub result: String,
    /// Always `gateway`: how a reader tells it from an answerer's call.
    pub via: String,
    /// The cost the upstream reported, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_cost: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// A reply the support agent drafted, with why it was (or was not) sent.
/// Fields an earlier build may not have written default when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub ticket: String,
    #[serde(default)]
    pub agent: String,
    #[serde(default)]
    pub reply: String,
    #[serde(default)]
    pub citations: Vec<Value>,
    /// The groups the draft was read as: only readers holding them all
    /// see it.
    #[serde(default)]
    pub read_as: Vec<String>,
    #[serde(default)]
    pub confidence: f64,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub requester: String,
    #[serde(default)]
    pub policy_ids: Vec<String>,
    #[serde(default)]
    pub reason: String,
    /// Who approved it, when a person did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

/// `data` of [`OwnRecord::ApprovalRequested`]: the draft and its approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    #[serde(flatten)]
    pub draft: Draft,
    pub approval: String,
    /// RFC 3339; absent from records written by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// `escalate` or `send_reply`; absent means `escalate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_expiry: Option<String>,
}

/// `data` of [`OwnRecord::ApprovalApproved`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalApproved {
    pub approval: String,
    pub by: String,
    /// The approver's own text, replacing the draft.
    pub text: Option<String>,
    #[serde(default)]
    pub edited: bool,
    #[serde(default)]
    pub ticket: String,
    /// The draft's groups (an edited reply may quote what it quoted).
    pub read_as: Option<Vec<String>>,
}

/// `data` of [`OwnRecord::ApprovalRejected`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRejected {
    pub approval: String,
    pub by: String,
    pub reason: Option<String>,
    #[serde(default)]
    pub ticket: String,
    pub read_as: Option<Vec<String>>,
}

/// `data` of [`OwnRecord::ApprovalExpired`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalExpired {
    pub approval: String,
    #[serde(default)]
    pub ticket: String,
    pub by: String,
}

/// `data` of [`OwnRecord::Escalated`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalated {
    pub ticket: String,
    pub agent: String,
    pub reason: String,
    /// The draft a person may start from, if there was one.
    pub draft: Option<Draft>,
}

/// `data` of [`OwnRecord::ActionRequested`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequested {
    pub action: String,
    pub agent: String,
    /// The action type (`issue_refund`).
    #[serde(rename = "type")]
    pub action_type: String,
    pub resource: ResourceRef,
    pub subject: String,
    pub context: Value,
    pub decision: ActionVerdict,
    #[serde(default)]
    pub policy_ids: Vec<String>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub rules_version: u32,
    /// The key that asked.
    #[serde(default)]
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_key: Option<String>,
    /// When an approval is required: when it expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// The resource an action's later records name (without its attributes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceName {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// A decision on an action waiting for approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    Rejected,
    Expired,
}

/// `data` of [`OwnRecord::ActionDecided`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionDecided {
    pub action: String,
    pub decision: Decision,
    /// The key that decided (`payoff` for an expiry).
    pub by: String,
    pub reason: Option<String>,
    pub agent: String,
    #[serde(rename = "type")]
    pub action_type: String,
    pub resource: ResourceName,
}

/// `data` of [`OwnRecord::ActionCompleted`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionCompleted {
    pub action: String,
    pub agent: String,
    #[serde(rename = "type")]
    pub action_type: String,
    /// `succeeded` or `failed`.
    pub status: String,
    pub resource: ResourceName,
    pub detail: Value,
    /// The key that recorded it.
    pub by: String,
}

/// `data` of [`OwnRecord::Budget`]: the budget's figures when crossed
/// (decimals as text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetCrossing {
    /// The agent, or `None` for the customer's own budget.
    pub agent: Option<String>,
    pub period: String,
    pub limit: Option<rust_decimal::Decimal>,
    pub warn_at: Option<rust_decimal::Decimal>,
}

/// Why an event of one of the record types is not its record.
pub use payoff_billing::RecordError;

/// A stored record that does not parse is damaged data, answered as the
/// store answers any (logged, 503), never read as empty.
impl From<RecordError> for crate::problem::ApiError {
    fn from(e: RecordError) -> Self {
        payoff_store::StoreError::Corrupt(e.to_string()).into()
    }
}

impl OwnRecord {
    /// The event type it is written under.
    pub fn event_type(&self) -> &'static str {
        match self {
            OwnRecord::Billing(r) => r.event_type(),
            OwnRecord::ActionRequested(_) => ACTION_REQUESTED,
            OwnRecord::ActionDecided(_) => ACTION_DECIDED,
            OwnRecord::ActionCompleted(_) => ACTION_COMPLETED,
            OwnRecord::Budget {
                exceeded: false, ..
            } => BUDGET_WARNING,
            OwnRecord::Budget { exceeded: true, .. } => BUDGET_EXCEEDED,
            OwnRecord::QualityDrift(_) => QUALITY_DRIFT,
            OwnRecord::ApprovalRequested(_) => APPROVAL_REQUESTED,
            OwnRecord::ApprovalApproved(_) => APPROVAL_APPROVED,
            OwnRecord::ApprovalRejected(_) => APPROVAL_REJECTED,
            OwnRecord::ApprovalExpired(_) => APPROVAL_EXPIRED,
            OwnRecord::Replied(_) => AI_REPLIED,
            OwnRecord::Escalated(_) => ESCALATED,
            OwnRecord::AnswerCall(_) | OwnRecord::GatewayCall(_) => payoff_billing::LLM_CALL,
        }
    }

    /// The CloudEvent that carries the record under `id`, about
    /// `subject` (billing's records name their own), at `time`. The time
    /// is written as each record has always written it (the text is part
    /// of the record's bytes): to the microsecond, but billing's records
    /// and budget crossings (midnight) without a fraction.
    pub fn to_event(&self, id: &str, subject: Option<&str>, time: DateTime<Utc>) -> Value {
        let data = match self {
            OwnRecord::Billing(r) => return r.to_event(id, time),
            OwnRecord::ActionRequested(r) => serde_json::to_value(r),
            OwnRecord::ActionDecided(r) => serde_json::to_value(r),
            OwnRecord::ActionCompleted(r) => serde_json::to_value(r),
            OwnRecord::Budget { crossing, .. } => serde_json::to_value(crossing),
            OwnRecord::QualityDrift(d) => serde_json::to_value(d),
            OwnRecord::ApprovalRequested(r) => serde_json::to_value(r),
            OwnRecord::ApprovalApproved(r) => serde_json::to_value(r),
            OwnRecord::ApprovalRejected(r) => serde_json::to_value(r),
            OwnRecord::ApprovalExpired(r) => serde_json::to_value(r),
            OwnRecord::Replied(d) => serde_json::to_value(d),
            OwnRecord::Escalated(e) => serde_json::to_value(e),
            OwnRecord::AnswerCall(c) => serde_json::to_value(c),
            OwnRecord::GatewayCall(c) => serde_json::to_value(c),
        }
        .expect("records hold JSON values, text and numbers only");
        let format = match self {
            OwnRecord::Budget { .. } => SecondsFormat::AutoSi,
            _ => SecondsFormat::Micros,
        };
        let mut event = payoff_billing::own_event(
            id,
            self.event_type(),
            subject,
            &time.to_rfc3339_opts(format, true),
            data,
        );
        // Metered calls have always written a subject, `null` for none
        // (the ledger keeps it so).
        if subject.is_none() && matches!(self, OwnRecord::AnswerCall(_) | OwnRecord::GatewayCall(_))
        {
            event["subject"] = Value::Null;
        }
        event
    }

    /// Reads a record back from an event's parts. `None` when the event
    /// is not one (another source, another type); an error when it is of
    /// a record type but its content is not the record's.
    pub fn parse(
        source: &str,
        event_type: &str,
        subject: Option<&str>,
        data: &Value,
    ) -> Option<Result<OwnRecord, RecordError>> {
        if source != PAYOFF_SOURCE {
            return None;
        }
        Some(match event_type {
            ACTION_REQUESTED => data_as(event_type, data).map(OwnRecord::ActionRequested),
            ACTION_DECIDED => data_as(event_type, data).map(OwnRecord::ActionDecided),
            ACTION_COMPLETED => data_as(event_type, data).map(OwnRecord::ActionCompleted),
            BUDGET_WARNING | BUDGET_EXCEEDED => {
                data_as(event_type, data).map(|crossing| OwnRecord::Budget {
                    exceeded: event_type == BUDGET_EXCEEDED,
                    crossing,
                })
            }
            QUALITY_DRIFT => data_as(event_type, data).map(OwnRecord::QualityDrift),
            APPROVAL_REQUESTED => data_as(event_type, data).map(OwnRecord::ApprovalRequested),
            APPROVAL_APPROVED => data_as(event_type, data).map(OwnRecord::ApprovalApproved),
            APPROVAL_REJECTED => data_as(event_type, data).map(OwnRecord::ApprovalRejected),
            APPROVAL_EXPIRED => data_as(event_type, data).map(OwnRecord::ApprovalExpired),
            AI_REPLIED => data_as(event_type, data).map(OwnRecord::Replied),
            ESCALATED => data_as(event_type, data).map(OwnRecord::Escalated),
            payoff_billing::LLM_CALL if data["via"] == "gateway" => {
                data_as(event_type, data).map(OwnRecord::GatewayCall)
            }
            payoff_billing::LLM_CALL => data_as(event_type, data).map(OwnRecord::AnswerCall),
            _ => {
                return payoff_billing::Record::parse(source, event_type, subject, data)
                    .map(|r| r.map(OwnRecord::Billing))
            }
        })
    }
}

/// Business time as the action and agent records write it.
pub fn micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One record's `data`, parsed as `T`; the error names the record.
pub use payoff_billing::record_data as data_as;

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        "2026-11-03T14:05:00.250Z".parse().unwrap()
    }

    /// The record's event, as canonical bytes, equals the literal it
    /// replaced, and parses back to the same record.
    fn same(record: OwnRecord, id: &str, subject: Option<&str>, literal: Value) {
        let event = record.to_event(id, subject, at());
        assert_eq!(
            String::from_utf8(payoff_ledger::canonical_json(&event)).unwrap(),
            String::from_utf8(payoff_ledger::canonical_json(&literal)).unwrap(),
        );
        let back = OwnRecord::parse(
            event["source"].as_str().unwrap(),
            event["type"].as_str().unwrap(),
            event["subject"].as_str(),
            &event["data"],
        )
        .unwrap()
        .unwrap();
        assert_eq!(back, record);
    }

    fn resource() -> ResourceRef {
        ResourceRef {
            kind: "Order".into(),
            id: "o-1".into(),
            attributes: json!({"amount": 120}),
        }
    }

    fn requested(key: Option<&str>, expires_at: Option<&str>) -> ActionRequested {
        ActionRequested {
            action: "act_1".into(),
            agent: "support".into(),
            action_type: "issue_refund".into(),
            resource: resource(),
            subject: "T-1".into(),
            context: json!({"channel": "email"}),
            decision: if expires_at.is_some() {
                ActionVerdict::ApprovalRequired
            } else {
                ActionVerdict::Allow
            },
            policy_ids: vec!["small-refunds".into()],
            reason: "permitted".into(),
            rules_version: 2,
            requested_by: "key_a".into(),
            request_key: key.map(str::to_owned),
            expires_at: expires_at.map(str::to_owned),
        }
    }

    #[test]
    fn action_records_are_written_as_their_literals_were() {
        let envelope = |id: &str, kind: &str, data: Value| {
            json!({"specversion": "1.0", "id": id, "source": "payoff", "type": kind,
                   "subject": "T-1", "time": "2026-11-03T14:05:00.250000Z", "data": data})
        };
        let mut data = json!({
            "action": "act_1", "agent": "support", "type": "issue_refund",
            "resource": {"type": "Order", "id": "o-1", "attributes": {"amount": 120}},
            "subject": "T-1", "context": {"channel": "email"}, "decision": "allow",
            "policy_ids": ["small-refunds"], "reason": "permitted", "rules_version": 2,
            "requested_by": "key_a",
        });
        same(
            OwnRecord::ActionRequested(requested(None, None)),
            "action/act_1",
            Some("T-1"),
            envelope("action/act_1", ACTION_REQUESTED, data.clone()),
        );
        data["decision"] = "approval_required".into();
        data["request_key"] = "k-1".into();
        data["expires_at"] = "2026-11-03T15:05:00.250000Z".into();
        same(
            OwnRecord::ActionRequested(requested(Some("k-1"), Some("2026-11-03T15:05:00.250000Z"))),
            "action/act_1",
            Some("T-1"),
            envelope("action/act_1", ACTION_REQUESTED, data),
        );
        let name = ResourceName {
            kind: "Order".into(),
            id: "o-1".into(),
        };
        for (decision, by, reason) in [
            (Decision::Approved, "key_b", None),
            (Decision::Rejected, "key_b", Some("too much")),
            (
                Decision::Expired,
                "payoff",
                Some("no one decided before the approval expired"),
            ),
        ] {
            same(
                OwnRecord::ActionDecided(ActionDecided {
                    action: "act_1".into(),
                    decision,
                    by: by.into(),
                    reason: reason.map(str::to_owned),
                    agent: "support".into(),
                    action_type: "issue_refund".into(),
                    resource: name.clone(),
                }),
                "action/act_1/decision",
                Some("T-1"),
                envelope(
                    "action/act_1/decision",
                    ACTION_DECIDED,
                    json!({"action": "act_1", "decision": decision, "by": by, "reason": reason,
                           "agent": "support", "type": "issue_refund",
                           "resource": {"type": "Order", "id": "o-1"}}),
                ),
            );
        }
        same(
            OwnRecord::ActionCompleted(ActionCompleted {
                action: "act_1".into(),
                agent: "support".into(),
                action_type: "issue_refund".into(),
                status: "succeeded".into(),
                resource: name,
                detail: json!({"refund": "r-9"}),
                by: "key_c".into(),
            }),
            "action/act_1/result",
            Some("T-1"),
            envelope(
                "action/act_1/result",
                ACTION_COMPLETED,
                json!({"action": "act_1", "agent": "support", "type": "issue_refund",
                       "status": "succeeded", "resource": {"type": "Order", "id": "o-1"},
                       "detail": {"refund": "r-9"}, "by": "key_c"}),
            ),
        );
    }

    #[test]
    fn budget_and_drift_records_are_written_as_their_literals_were() {
        let midnight: DateTime<Utc> = "2026-11-03T00:00:00Z".parse().unwrap();
        for (exceeded, agent) in [(false, Some("support")), (true, None)] {
            let record = OwnRecord::Budget {
                exceeded,
                crossing: BudgetCrossing {
                    agent: agent.map(str::to_owned),
                    period: "2026-11".into(),
                    limit: Some(Decimal::new(10000, 2)),
                    warn_at: None,
                },
            };
            let kind = if exceeded {
                BUDGET_EXCEEDED
            } else {
                BUDGET_WARNING
            };
            let id = format!("{kind}/{}/2026-11-03", agent.unwrap_or("*"));
            let event = record.to_event(&id, None, midnight);
            let literal = json!({
                "specversion": "1.0", "id": id, "source": "payoff", "type": kind,
                "time": "2026-11-03T00:00:00Z",
                "data": {"agent": agent, "period": "2026-11", "limit": "100.00", "warn_at": null},
            });
            assert_eq!(
                payoff_ledger::canonical_json(&event),
                payoff_ledger::canonical_json(&literal)
            );
            let parsed = OwnRecord::parse("payoff", kind, None, &event["data"]);
            assert_eq!(parsed.unwrap().unwrap(), record);
        }
        let drift = Drift {
            agent: "lead-bot".into(),
            measure: crate::watch::Measure::ErrorRate,
            level: None,
            week: "2026-W45".into(),
            value: "0.5000".into(),
            hits: 2,
            samples: 4,
            min: None,
            max: Some(0.2),
        };
        same(
            OwnRecord::QualityDrift(drift),
            "quality/lead-bot/error_rate/2026-W45",
            Some("agent/lead-bot"),
            json!({"specversion": "1.0", "id": "quality/lead-bot/error_rate/2026-W45", "source": "payoff",
                   "type": QUALITY_DRIFT, "subject": "agent/lead-bot", "time": "2026-11-03T14:05:00.250000Z",
                   "data": {"agent": "lead-bot", "measure": "error_rate", "week": "2026-W45", "value": "0.5000",
                            "hits": 2, "samples": 4, "min": null, "max": 0.2}}),
        );
    }

    #[test]
    fn a_record_that_is_not_its_type_is_refused_by_name_and_others_are_not_records() {
        let e = OwnRecord::parse("payoff", ACTION_DECIDED, None, &json!({"action": "a"}))
            .unwrap()
            .unwrap_err();
        assert!(
            e.to_string().starts_with("payoff.action.decided record: "),
            "{e}"
        );
        assert!(OwnRecord::parse("helpdesk", ACTION_DECIDED, None, &json!({})).is_none());
        assert!(OwnRecord::parse("payoff", "ticket.closed", None, &json!({})).is_none());
        // Billing's records are one variant.
        let opened = json!({"outcome": "ticket_resolved", "subject": "T-1"});
        assert!(matches!(
            OwnRecord::parse(
                "payoff",
                payoff_billing::DISPUTE_OPENED,
                Some("T-1"),
                &opened
            ),
            Some(Ok(OwnRecord::Billing(_)))
        ));
    }

    fn draft() -> Draft {
        Draft {
            ticket: "T-1".into(),
            agent: "support".into(),
            reply: "Refunds take five days.".into(),
            citations: vec![json!({"doc": "refunds", "title": "Refunds"})],
            read_as: vec!["finance".into()],
            confidence: 0.75,
            category: "refund".into(),
            requester: "jane@example.com".into(),
            policy_ids: vec!["builtin.approval".into()],
            reason: "a refund waits for a person".into(),
            approved_by: None,
        }
    }

    fn draft_literal() -> Value {
        json!({
            "ticket": "T-1", "agent": "support", "reply": "Refunds take five days.",
            "citations": [{"doc": "refunds", "title": "Refunds"}], "read_as": ["finance"],
            "confidence": 0.75, "category": "refund", "requester": "jane@example.com",
            "policy_ids": ["builtin.approval"], "reason": "a refund waits for a person",
        })
    }

    #[test]
    fn the_support_agents_records_are_written_as_their_literals_were() {
        let envelope = |id: &str, kind: &str, data: Value| {
            json!({"specversion": "1.0", "id": id, "source": "payoff", "type": kind,
                   "subject": "T-1", "time": "2026-11-03T14:05:00.250000Z", "data": data})
        };
        same(
            OwnRecord::Replied(draft()),
            "reply/T-1",
            Some("T-1"),
            envelope("reply/T-1", AI_REPLIED, draft_literal()),
        );
        let mut requested = draft_literal();
        requested["approval"] = "apr_1".into();
        requested["expires_at"] = "2026-11-04T14:05:00.250000Z".into();
        requested["on_expiry"] = "escalate".into();
        same(
            OwnRecord::ApprovalRequested(ApprovalRequested {
                draft: draft(),
                approval: "apr_1".into(),
                expires_at: Some("2026-11-04T14:05:00.250000Z".into()),
                on_expiry: Some("escalate".into()),
            }),
            "approval/apr_1",
            Some("T-1"),
            envelope("approval/apr_1", APPROVAL_REQUESTED, requested),
        );
        // The approver's own text: the reply it sends names them.
        let mut approved = draft();
        approved.reply = "Paid today.".into();
        approved.approved_by = Some("key_a".into());
        let mut literal = draft_literal();
        literal["reply"] = "Paid today.".into();
        literal["approved_by"] = "key_a".into();
        same(
            OwnRecord::Replied(approved),
            "reply/T-1",
            Some("T-1"),
            envelope("reply/T-1", AI_REPLIED, literal),
        );
        for (text, read_as) in [
            (Some("Paid today."), Some(vec!["finance".to_owned()])),
            (None, None),
        ] {
            same(
                OwnRecord::ApprovalApproved(ApprovalApproved {
                    approval: "apr_1".into(),
                    by: "key_a".into(),
                    text: text.map(str::to_owned),
                    edited: text.is_some(),
                    ticket: "T-1".into(),
                    read_as: read_as.clone(),
                }),
                "approval/apr_1/decision",
                Some("T-1"),
                envelope(
                    "approval/apr_1/decision",
                    APPROVAL_APPROVED,
                    json!({"approval": "apr_1", "by": "key_a", "text": text, "edited": text.is_some(),
                           "ticket": "T-1", "read_as": read_as}),
                ),
            );
        }
        same(
            OwnRecord::ApprovalRejected(ApprovalRejected {
                approval: "apr_1".into(),
                by: "key_b".into(),
                reason: None,
                ticket: "T-1".into(),
                read_as: Some(vec!["finance".into()]),
            }),
            "approval/apr_1/decision",
            Some("T-1"),
            envelope(
                "approval/apr_1/decision",
                APPROVAL_REJECTED,
                json!({"approval": "apr_1", "by": "key_b", "reason": null, "ticket": "T-1",
                       "read_as": ["finance"]}),
            ),
        );
        same(
            OwnRecord::ApprovalExpired(ApprovalExpired {
                approval: "apr_1".into(),
                ticket: "T-1".into(),
                by: "agent:support".into(),
            }),
            "approval/apr_1/decision",
            Some("T-1"),
            envelope(
                "approval/apr_1/decision",
                APPROVAL_EXPIRED,
                json!({"approval": "apr_1", "ticket": "T-1", "by": "agent:support"}),
            ),
        );
        for draft_given in [true, false] {
            same(
                OwnRecord::Escalated(Escalated {
                    ticket: "T-1".into(),
                    agent: "support".into(),
                    reason: "the model failed".into(),
                    draft: draft_given.then(draft),
                }),
                "escalation/T-1",
                Some("T-1"),
                envelope(
                    "escalation/T-1",
                    ESCALATED,
                    json!({"ticket": "T-1", "agent": "support", "reason": "the model failed",
                           "draft": if draft_given { draft_literal() } else { Value::Null }}),
                ),
            );
        }
    }

    #[test]
    fn metered_calls_are_written_as_their_literals_were() {
        for subject in [Some("T-1"), None] {
            let mut data = json!({"model": "gpt-4o-mini", "input_tokens": 900, "output_tokens": 150,
                                  "cached_input_tokens": 0, "latency_ms": 420, "agent": "support"});
            if let Some(s) = subject {
                data["subject"] = s.into();
            }
            same(
                OwnRecord::AnswerCall(AnswerCall {
                    model: "gpt-4o-mini".into(),
                    input_tokens: 900,
                    output_tokens: 150,
                    cached_input_tokens: 0,
                    latency_ms: 420,
                    agent: "support".into(),
                    subject: subject.map(str::to_owned),
                }),
                "llm/support/1",
                subject,
                json!({"specversion": "1.0", "id": "llm/support/1", "source": "payoff",
                       "type": "llm.call", "subject": subject, "time": "2026-11-03T14:05:00.250000Z",
                       "data": data}),
            );
        }
        let call = GatewayCall {
            model: "gpt-4o-mini-2024-07-18".into(),
            requested_model: "gpt-4o-mini".into(),
            upstream: "openai".into(),
            endpoint: "chat/completions".into(),
            agent: "lead-bot".into(),
            stream: false,
            input_tokens: 12,
            input_includes_cached: true,
            cached_input_tokens: 0,
            cache_creation_input_tokens: 0,
            reasoning_tokens: 0,
            output_tokens: 3,
            latency_ms: 5,
            status: None,
            result: "timeout".into(),
            via: "gateway".into(),
            provider_cost: Some(json!(0.00012)),
            subject: None,
            outcome: Some("lead_qualified".into()),
        };
        same(
            OwnRecord::GatewayCall(call),
            "gateway/lead-bot/ab",
            None,
            json!({"specversion": "1.0", "id": "gateway/lead-bot/ab", "source": "payoff",
                   "type": "llm.call", "subject": null, "time": "2026-11-03T14:05:00.250000Z",
                   "data": {"model": "gpt-4o-mini-2024-07-18", "requested_model": "gpt-4o-mini",
                            "upstream": "openai", "endpoint": "chat/completions", "agent": "lead-bot",
                            "stream": false, "input_tokens": 12, "input_includes_cached": true,
                            "cached_input_tokens": 0, "cache_creation_input_tokens": 0,
                            "reasoning_tokens": 0, "output_tokens": 3, "latency_ms": 5,
                            "status": null, "result": "timeout", "via": "gateway",
                            "provider_cost": 0.00012, "outcome": "lead_qualified"}}),
        );
    }
}
