//! The approval queue, folded from Payoff's own ledger records: a request
//! (`payoff.approval.requested`) and at most one decision (approved,
//! rejected or expired). The decision records of one approval share one
//! event id, so of two people deciding at once the first one wins.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::records::{
    data_as, ApprovalApproved, ApprovalExpired, ApprovalRejected, ApprovalRequested, RecordError,
};
pub use crate::records::{
    APPROVAL_APPROVED as APPROVED, APPROVAL_EXPIRED as EXPIRED, APPROVAL_REJECTED as REJECTED,
    APPROVAL_REQUESTED as REQUESTED,
};
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
/// decision without its request, or a second decision, is ignored; a
/// record that is not its type's is an error naming it.
pub fn fold<'a>(
    records: impl IntoIterator<Item = Record<'a>>,
) -> Result<Vec<Approval>, RecordError> {
    let mut out: Vec<Approval> = Vec::new();
    for r in records {
        if r.event_type == REQUESTED {
            let q: ApprovalRequested = data_as(REQUESTED, r.data)?;
            if out.iter().any(|a| a.id == q.approval) {
                continue;
            }
            let expires_at = q
                .expires_at
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or(r.time, |t| t.with_timezone(&Utc));
            out.push(Approval {
                id: q.approval,
                ticket: q.draft.ticket,
                status: Status::Pending,
                requested_at: r.time,
                expires_at,
                on_expiry: q.on_expiry.unwrap_or_else(|| "escalate".into()),
                request: r.data.clone(),
                decided_by: None,
                decided_at: None,
                final_text: None,
                reason: None,
            });
            continue;
        }
        let (id, status, by, text, reason) = match r.event_type {
            APPROVED => {
                let d: ApprovalApproved = data_as(APPROVED, r.data)?;
                (d.approval, Status::Approved, d.by, d.text, None)
            }
            REJECTED => {
                let d: ApprovalRejected = data_as(REJECTED, r.data)?;
                (d.approval, Status::Rejected, d.by, None, d.reason)
            }
            EXPIRED => {
                let d: ApprovalExpired = data_as(EXPIRED, r.data)?;
                (d.approval, Status::Expired, d.by, None, None)
            }
            _ => continue,
        };
        if let Some(a) = out
            .iter_mut()
            .find(|a| a.id == id && a.status == Status::Pending)
        {
            a.status = status;
            a.decided_by = Some(by);
            a.decided_at = Some(r.time);
            a.final_text = text;
            a.reason = reason;
        }
    }
    Ok(out)
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
        ])
        .unwrap();
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
        }])
        .unwrap();
        assert_eq!(list[0].status, Status::Pending);
        assert_eq!(list[0].on_expiry, "escalate");
    }

    #[test]
    fn a_record_that_is_not_its_type_is_an_error_naming_it() {
        let no_ticket = json!({"approval": "apr_3"});
        let e = fold([Record {
            event_type: REQUESTED,
            time: at(1),
            data: &no_ticket,
        }])
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("payoff.approval.requested record: "),
            "{e}"
        );
    }
}
