//! The approval queue, folded from Payoff's own ledger records: a request
//! (`payoff.approval.requested`) and at most one decision (approved,
//! rejected or expired). The decision records of one approval share one
//! event id, so of two people deciding at once the first one wins.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

pub const REQUESTED: &str = "payoff.approval.requested";
pub const APPROVED: &str = "payoff.approval.approved";
pub const REJECTED: &str = "payoff.approval.rejected";
pub const EXPIRED: &str = "payoff.approval.expired";
pub const TYPES: [&str; 4] = [REQUESTED, APPROVED, REJECTED, EXPIRED];

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Expired,
}

/// One drafted reply waiting for, or having had, a person's decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub id: String,
    pub ticket: String,
    pub status: Status,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// What happens at expiry: `escalate` or `send`.
    pub on_expiry: String,
    /// The request as recorded: draft, citations, confidence, category, requester.
    pub request: Value,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The text sent, when an approver replaced the draft.
    pub final_text: Option<String>,
    pub reason: Option<String>,
}

/// One of Payoff's approval records, as read from the ledger.
pub struct Record<'a> {
    pub event_type: &'a str,
    pub time: DateTime<Utc>,
    pub data: &'a Value,
}

/// Folds records (ledger order) into approvals by id, oldest first. A
/// decision without its request, or a second decision, is ignored.
pub fn fold<'a>(records: impl IntoIterator<Item = Record<'a>>) -> Vec<Approval> {
    let mut out: Vec<Approval> = Vec::new();
    for r in records {
        let Some(id) = r.data.get("approval").and_then(Value::as_str) else {
            continue;
        };
        let text = |k: &str| r.data.get(k).and_then(Value::as_str).map(str::to_owned);
        if r.event_type == REQUESTED {
            if out.iter().any(|a| a.id == id) {
                continue;
            }
            let expires_at = text("expires_at")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map_or(r.time, |t| t.with_timezone(&Utc));
            out.push(Approval {
                id: id.to_owned(),
                ticket: text("ticket").unwrap_or_default(),
                status: Status::Pending,
                requested_at: r.time,
                expires_at,
                on_expiry: text("on_expiry").unwrap_or_else(|| "escalate".into()),
                request: r.data.clone(),
                decided_by: None,
                decided_at: None,
                final_text: None,
                reason: None,
            });
            continue;
        }
        let status = match r.event_type {
            APPROVED => Status::Approved,
            REJECTED => Status::Rejected,
            EXPIRED => Status::Expired,
            _ => continue,
        };
        if let Some(a) = out
            .iter_mut()
            .find(|a| a.id == id && a.status == Status::Pending)
        {
            a.status = status;
            a.decided_by = text("by");
            a.decided_at = Some(r.time);
            a.final_text = text("text");
            a.reason = text("reason");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    #[test]
    fn a_request_then_one_decision_and_later_decisions_are_ignored() {
        let req = json!({"approval": "apr_1", "ticket": "T-1", "draft": "Hi", "expires_at": "2026-11-02T00:00:00Z"});
        let ok = json!({"approval": "apr_1", "by": "key_a", "text": "Hello"});
        let no = json!({"approval": "apr_1", "by": "key_b", "reason": "late"});
        let orphan = json!({"approval": "apr_9", "by": "key_a"});
        let list = fold([
            Record {
                event_type: APPROVED,
                time: at(5),
                data: &orphan,
            },
            Record {
                event_type: REQUESTED,
                time: at(10),
                data: &req,
            },
            Record {
                event_type: APPROVED,
                time: at(20),
                data: &ok,
            },
            Record {
                event_type: REJECTED,
                time: at(30),
                data: &no,
            },
        ]);
        assert_eq!(list.len(), 1);
        let a = &list[0];
        assert_eq!((a.status, a.ticket.as_str()), (Status::Approved, "T-1"));
        assert_eq!(a.decided_by.as_deref(), Some("key_a"));
        assert_eq!(a.final_text.as_deref(), Some("Hello"));
        assert_eq!(a.decided_at, Some(at(20)));
        assert_eq!(a.expires_at.to_rfc3339(), "2026-11-02T00:00:00+00:00");
    }

    #[test]
    fn an_undecided_request_stays_pending() {
        let req = json!({"approval": "apr_2", "ticket": "T-2"});
        let list = fold([Record {
            event_type: REQUESTED,
            time: at(1),
            data: &req,
        }]);
        assert_eq!(list[0].status, Status::Pending);
        assert_eq!(list[0].on_expiry, "escalate");
    }
}
