//! The records Payoff writes into a customer's ledger itself and billing
//! reads back: dispute steps, holdout assignments and releases. One type
//! builds them and parses them, so what the server writes and what a
//! close reads cannot drift apart (they were `json!` literals on one side
//! and string lookups on the other).
//!
//! A record's bytes are part of the chain and of every statement's
//! evidence, so each serialises exactly as its earlier literal did: the
//! same attributes, the `data` fields in the same order (serde_json keeps
//! insertion order in this build). The golden statement tests hold this.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::attribution::Arm;
use crate::projection::BillingEvent;

/// The source of the events Payoff records itself. The API refuses it
/// from senders, so no one else can decide a dispute or assign an arm.
pub const PAYOFF_SOURCE: &str = "payoff";

/// Event type of a subject's first assignment to an experiment's arm.
pub const ASSIGNMENT: &str = "payoff.assignment";

/// Event type of an operator's release of a held holdout line.
pub const RELEASE: &str = "payoff.attribution.released";

/// Event types the provider writes to record a dispute's life.
pub const DISPUTE_OPENED: &str = "payoff.dispute.opened";
pub const DISPUTE_ACCEPTED: &str = "payoff.dispute.accepted";
pub const DISPUTE_REJECTED: &str = "payoff.dispute.rejected";

/// Every type a [`Record`] is written under.
pub const RECORD_TYPES: &[&str] = &[
    DISPUTE_OPENED,
    DISPUTE_ACCEPTED,
    DISPUTE_REJECTED,
    ASSIGNMENT,
    RELEASE,
];

/// One record Payoff writes into a customer's ledger and billing reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A customer disputes an outcome.
    DisputeOpened(DisputeOpened),
    /// The provider accepts the open dispute: the outcome is credited.
    DisputeAccepted(DisputeDecided),
    /// The provider rejects the open dispute: the outcome stands.
    DisputeRejected(DisputeDecided),
    /// A subject's first assignment to an experiment's arm.
    Assignment(Assigned),
    /// An operator releases a held holdout line for a period.
    Release(Released),
}

/// `data` of [`Record::DisputeOpened`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeOpened {
    /// The outcome's kind (its name in the contract).
    pub outcome: String,
    pub subject: String,
    #[serde(default)]
    pub reason: String,
    /// The key that raised it (absent from records written by hand, as in
    /// the corpus).
    #[serde(default)]
    pub by: String,
}

/// `data` of [`Record::DisputeAccepted`] and [`Record::DisputeRejected`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeDecided {
    /// The outcome's kind (its name in the contract).
    pub outcome: String,
    pub subject: String,
    #[serde(default)]
    pub note: String,
    /// The key that decided it.
    #[serde(default)]
    pub by: String,
}

/// [`Record::Assignment`]: the subject is the event's, the rest its `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assigned {
    #[serde(skip)]
    pub subject: String,
    pub experiment: String,
    #[serde(with = "arm_name")]
    pub arm: Arm,
}

/// `data` of [`Record::Release`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub experiment: String,
    /// The period, as its id (`2026-11`).
    pub period: String,
    /// The key that released it.
    #[serde(default)]
    pub by: String,
}

/// Why an event of one of the record types is not a record.
#[derive(Debug, thiserror::Error)]
#[error("{event_type} record: {reason}")]
pub struct RecordError {
    pub event_type: String,
    pub reason: String,
}

/// A record's `data` read as `T`; the error names the record's type.
pub fn record_data<T: serde::de::DeserializeOwned>(
    event_type: &str,
    data: &Value,
) -> Result<T, RecordError> {
    T::deserialize(data).map_err(|e| RecordError {
        event_type: event_type.to_owned(),
        reason: e.to_string(),
    })
}

impl Record {
    /// The event type it is written under.
    pub fn event_type(&self) -> &'static str {
        match self {
            Record::DisputeOpened(_) => DISPUTE_OPENED,
            Record::DisputeAccepted(_) => DISPUTE_ACCEPTED,
            Record::DisputeRejected(_) => DISPUTE_REJECTED,
            Record::Assignment(_) => ASSIGNMENT,
            Record::Release(_) => RELEASE,
        }
    }

    /// The event's subject: the disputed outcome's, the assigned one's; a
    /// release concerns a period, not a subject.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Record::DisputeOpened(d) => Some(&d.subject),
            Record::DisputeAccepted(d) | Record::DisputeRejected(d) => Some(&d.subject),
            Record::Assignment(a) => Some(&a.subject),
            Record::Release(_) => None,
        }
    }

    /// Whether it is a step of a dispute.
    pub fn is_dispute(&self) -> bool {
        matches!(
            self,
            Record::DisputeOpened(_) | Record::DisputeAccepted(_) | Record::DisputeRejected(_)
        )
    }

    /// The CloudEvent that carries the record under `id`, at `time`.
    pub fn to_event(&self, id: &str, time: DateTime<Utc>) -> Value {
        let data = match self {
            Record::DisputeOpened(d) => serde_json::to_value(d),
            Record::DisputeAccepted(d) | Record::DisputeRejected(d) => serde_json::to_value(d),
            Record::Assignment(a) => serde_json::to_value(a),
            Record::Release(r) => serde_json::to_value(r),
        }
        .expect("records are plain strings");
        own_event(
            id,
            self.event_type(),
            self.subject(),
            &time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            data,
        )
    }

    /// Reads a record back from an event's parts. `None` when the event is
    /// not one (another source, another type); an error when it is one of
    /// the record types but its content is not the record's.
    pub fn parse(
        source: &str,
        event_type: &str,
        subject: Option<&str>,
        data: &Value,
    ) -> Option<Result<Record, RecordError>> {
        if source != PAYOFF_SOURCE {
            return None;
        }
        Some(match event_type {
            DISPUTE_OPENED => record_data(event_type, data).map(Record::DisputeOpened),
            DISPUTE_ACCEPTED => record_data(event_type, data).map(Record::DisputeAccepted),
            DISPUTE_REJECTED => record_data(event_type, data).map(Record::DisputeRejected),
            ASSIGNMENT => match subject.filter(|s| !s.is_empty()) {
                None => Err(RecordError {
                    event_type: event_type.to_owned(),
                    reason: "an assignment names its subject".into(),
                }),
                Some(subject) => record_data(event_type, data).map(|a: Assigned| {
                    Record::Assignment(Assigned {
                        subject: subject.to_owned(),
                        ..a
                    })
                }),
            },
            RELEASE => record_data(event_type, data).map(Record::Release),
            _ => return None,
        })
    }

    /// The record an event carries, if it carries a well-formed one.
    /// Billing passes over a malformed one, as over any event no rule
    /// reads: only Payoff writes this source, through [`Record::to_event`].
    pub fn of(event: &BillingEvent) -> Option<Record> {
        Record::parse(
            &event.source,
            &event.event_type,
            event.subject.as_deref(),
            &event.data,
        )?
        .ok()
    }
}

/// The CloudEvent of one of Payoff's own records (source
/// [`PAYOFF_SOURCE`]): the envelope every record shares, billing's and the
/// server's.
pub fn own_event(
    id: &str,
    event_type: &str,
    subject: Option<&str>,
    time: &str,
    data: Value,
) -> Value {
    let mut event = Map::new();
    event.insert("specversion".into(), "1.0".into());
    event.insert("id".into(), id.into());
    event.insert("source".into(), PAYOFF_SOURCE.into());
    event.insert("type".into(), event_type.into());
    if let Some(subject) = subject {
        event.insert("subject".into(), subject.into());
    }
    event.insert("time".into(), time.into());
    event.insert("data".into(), data);
    Value::Object(event)
}

/// An arm as its name in events (`"ai"`, `"control"`).
mod arm_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::attribution::Arm;

    pub fn serialize<S: Serializer>(arm: &Arm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(arm.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arm, D::Error> {
        match String::deserialize(d)?.as_str() {
            "ai" => Ok(Arm::Ai),
            "control" => Ok(Arm::Control),
            other => Err(serde::de::Error::custom(format!(
                "arm \"{other}\" is neither \"ai\" nor \"control\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        "2026-11-03T14:05:00Z".parse().unwrap()
    }

    /// The bytes each record had when it was written as a literal: the
    /// chain and every statement's evidence depend on them.
    #[test]
    fn records_serialise_as_the_literals_they_replace() {
        let cases = [
            (
                Record::DisputeOpened(DisputeOpened {
                    outcome: "resolved".into(),
                    subject: "T-1".into(),
                    reason: "not fixed".into(),
                    by: "k1".into(),
                }),
                json!({"specversion": "1.0", "id": "o/dispute-1/opened", "source": "payoff",
                    "type": "payoff.dispute.opened", "subject": "T-1", "time": "2026-11-03T14:05:00Z",
                    "data": {"outcome": "resolved", "subject": "T-1", "reason": "not fixed", "by": "k1"}}),
            ),
            (
                Record::DisputeRejected(DisputeDecided {
                    outcome: "resolved".into(),
                    subject: "T-1".into(),
                    note: "it was".into(),
                    by: "k2".into(),
                }),
                json!({"specversion": "1.0", "id": "o/dispute-1/opened", "source": "payoff",
                    "type": "payoff.dispute.rejected", "subject": "T-1", "time": "2026-11-03T14:05:00Z",
                    "data": {"outcome": "resolved", "subject": "T-1", "note": "it was", "by": "k2"}}),
            ),
            (
                Record::Assignment(Assigned {
                    subject: "T-1".into(),
                    experiment: "x".into(),
                    arm: Arm::Control,
                }),
                json!({"specversion": "1.0", "id": "o/dispute-1/opened", "source": "payoff",
                    "type": "payoff.assignment", "subject": "T-1", "time": "2026-11-03T14:05:00Z",
                    "data": {"experiment": "x", "arm": "control"}}),
            ),
            (
                Record::Release(Released {
                    experiment: "x".into(),
                    period: "2026-11".into(),
                    by: "k3".into(),
                }),
                json!({"specversion": "1.0", "id": "o/dispute-1/opened", "source": "payoff",
                    "type": "payoff.attribution.released", "time": "2026-11-03T14:05:00Z",
                    "data": {"experiment": "x", "period": "2026-11", "by": "k3"}}),
            ),
        ];
        for (record, literal) in cases {
            let event = record.to_event("o/dispute-1/opened", at());
            // Byte for byte, order included.
            assert_eq!(event.to_string(), literal.to_string());
            let back = Record::parse(
                "payoff",
                record.event_type(),
                record.subject(),
                &event["data"],
            );
            assert_eq!(back.unwrap().unwrap(), record);
        }
    }

    #[test]
    fn other_sources_and_types_are_not_records_and_bad_content_is_named() {
        let data = json!({"experiment": "x", "arm": "ai"});
        assert!(Record::parse("crm", ASSIGNMENT, Some("T-1"), &data).is_none());
        assert!(Record::parse("payoff", "payoff.budget.warning", None, &data).is_none());
        // Every type a projection asks the store for is one parse knows.
        for kind in RECORD_TYPES {
            assert!(
                Record::parse("payoff", kind, Some("T-1"), &json!({})).is_some(),
                "{kind}"
            );
        }
        let cases = [
            (
                ASSIGNMENT,
                Some("T-1"),
                json!({"experiment": "x", "arm": "both"}),
                "arm",
            ),
            (ASSIGNMENT, None, data.clone(), "subject"),
            (
                DISPUTE_OPENED,
                Some("T-1"),
                json!({"outcome": "r", "reason": "wrong"}),
                "subject",
            ),
            (
                RELEASE,
                None,
                json!({"experiment": "x", "period": 7, "by": "k"}),
                "string",
            ),
        ];
        for (kind, subject, data, named) in cases {
            let e = Record::parse("payoff", kind, subject, &data)
                .unwrap()
                .unwrap_err();
            assert!(e.to_string().contains(named), "{kind}: {e}");
        }
    }
}
