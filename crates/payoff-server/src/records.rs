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
use serde_json::{Map, Value};

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
#[derive(Debug, thiserror::Error)]
#[error("{event_type} record: {reason}")]
pub struct RecordError {
    pub event_type: String,
    pub reason: String,
}

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
        }
        .expect("records hold JSON values, text and numbers only");
        let mut event = Map::new();
        event.insert("specversion".into(), "1.0".into());
        event.insert("id".into(), id.into());
        event.insert("source".into(), PAYOFF_SOURCE.into());
        event.insert("type".into(), self.event_type().into());
        if let Some(subject) = subject {
            event.insert("subject".into(), subject.into());
        }
        let format = match self {
            OwnRecord::Budget { .. } => SecondsFormat::AutoSi,
            _ => SecondsFormat::Micros,
        };
        event.insert("time".into(), time.to_rfc3339_opts(format, true).into());
        event.insert("data".into(), data);
        Value::Object(event)
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
        let failed = |e: serde_json::Error| RecordError {
            event_type: event_type.to_owned(),
            reason: e.to_string(),
        };
        Some(match event_type {
            ACTION_REQUESTED => ActionRequested::deserialize(data)
                .map(OwnRecord::ActionRequested)
                .map_err(failed),
            ACTION_DECIDED => ActionDecided::deserialize(data)
                .map(OwnRecord::ActionDecided)
                .map_err(failed),
            ACTION_COMPLETED => ActionCompleted::deserialize(data)
                .map(OwnRecord::ActionCompleted)
                .map_err(failed),
            BUDGET_WARNING | BUDGET_EXCEEDED => BudgetCrossing::deserialize(data)
                .map(|crossing| OwnRecord::Budget {
                    exceeded: event_type == BUDGET_EXCEEDED,
                    crossing,
                })
                .map_err(failed),
            QUALITY_DRIFT => Drift::deserialize(data)
                .map(OwnRecord::QualityDrift)
                .map_err(failed),
            _ => {
                return payoff_billing::Record::parse(source, event_type, subject, data).map(|r| {
                    r.map(OwnRecord::Billing).map_err(|e| RecordError {
                        event_type: e.event_type,
                        reason: e.reason,
                    })
                })
            }
        })
    }
}

/// Business time as the action and agent records write it.
pub fn micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One record's `data`, parsed as `T`; the error names the record.
pub fn data_as<T: serde::de::DeserializeOwned>(
    event_type: &str,
    data: Value,
) -> Result<T, RecordError> {
    serde_json::from_value(data).map_err(|e| RecordError {
        event_type: event_type.to_owned(),
        reason: e.to_string(),
    })
}

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
}
