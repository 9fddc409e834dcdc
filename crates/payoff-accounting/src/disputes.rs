//! Disputes of outcomes: whether a step may be taken now, and the ledger
//! record that takes it. The API and the dashboard both come here, then
//! append the record through the server's ledger writer; the record, not
//! a table, is what statements and their verification read.

use chrono::{DateTime, Utc};
use payoff_billing::{dispute_window_end, DisputeDecided, DisputeOpened, Record};
use payoff_store::Store;
use serde_json::Value;

use crate::billing::{rfc3339, BillingError, Versions};

/// Longest dispute reason or decision note, in characters.
pub const NOTE_CHARS_MAX: usize = 2000;

/// One step of a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeStep {
    /// A customer admin disputes an outcome (a reason is required).
    Raise,
    /// An operator accepts the open dispute (a note is optional).
    Accept,
    /// An operator rejects the open dispute (a note is required).
    Reject,
}

/// Why a dispute step is not taken.
#[derive(Debug, thiserror::Error)]
pub enum DisputeError {
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// The customer has no outcome of that id.
    #[error("no outcome \"{0}\"")]
    NotFound(String),
    /// The reason or note is missing or too long: `field: reason`.
    #[error("{field}: {reason}")]
    BadText { field: &'static str, reason: String },
    /// The outcome's state or the dispute window does not allow the step.
    #[error("{0}")]
    NotAllowed(String),
}

impl From<payoff_outcomes::OutcomesError> for DisputeError {
    fn from(e: payoff_outcomes::OutcomesError) -> Self {
        DisputeError::Billing(e.into())
    }
}

impl DisputeStep {
    /// The step's text, trimmed, checked against what the step requires:
    /// a reason to raise, a note to reject, at most [`NOTE_CHARS_MAX`].
    pub fn text(self, text: Option<String>) -> Result<String, DisputeError> {
        let (field, required) = match self {
            DisputeStep::Raise => ("reason", true),
            DisputeStep::Accept => ("note", false),
            DisputeStep::Reject => ("note", true),
        };
        let text = text.unwrap_or_default().trim().to_owned();
        if required && text.is_empty() {
            return Err(DisputeError::BadText {
                field,
                reason: "is required".into(),
            });
        }
        if text.chars().count() > NOTE_CHARS_MAX {
            return Err(DisputeError::BadText {
                field,
                reason: format!("at most {NOTE_CHARS_MAX} characters"),
            });
        }
        Ok(text)
    }
}

/// Decides whether `step` may be taken on outcome `id` of `customer` at
/// `now`, and returns the ledger record (a CloudEvent from source
/// `payoff`) that takes it, written by `by`. The dispute window is the
/// rule of the contract version governing the outcome, as billing decides
/// it ([`dispute_window_end`]). Each step has an id of its own
/// (`<outcome>/dispute-<n>/<step>`): a retried step is stored once, and a
/// second decision on the same dispute is refused by the ledger.
pub fn record(
    store: &Store,
    customer: &str,
    id: &str,
    step: DisputeStep,
    text: String,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Value, DisputeError> {
    let found = payoff_outcomes::find(store, customer, id, now)?
        .ok_or_else(|| DisputeError::NotFound(id.to_owned()))?;
    let outcome = found.outcome;
    let versions = Versions::load(store, customer)?;
    let contract = versions.contract(outcome.version).ok_or_else(|| {
        BillingError::Corrupt(format!("outcome {id}: no contract v{}", outcome.version))
    })?;
    let o = &outcome.outcome;
    let window_end = dispute_window_end(contract, o);
    let open = o.disputes.last().is_some_and(|d| d.decision.is_none());
    let refuse = |why: String| Err(DisputeError::NotAllowed(why));
    match step {
        DisputeStep::Raise if open => {
            return refuse(format!("outcome {id} already has an open dispute"))
        }
        DisputeStep::Raise if matches!(outcome.state, "voided" | "credited") => {
            return refuse(format!(
                "outcome {id} is {}; there is nothing to dispute",
                outcome.state
            ))
        }
        DisputeStep::Raise if now > window_end => {
            return refuse(format!(
                "the dispute window ({} days after the period of maturity) closed at {}",
                contract.dispute_within.num_days(),
                rfc3339(window_end)
            ))
        }
        DisputeStep::Accept | DisputeStep::Reject if !open => {
            return refuse(format!("outcome {id} has no open dispute"))
        }
        _ => {}
    }
    let name = &contract.outcomes[o.kind].name;
    let decided = |note| DisputeDecided {
        outcome: name.clone(),
        subject: o.subject.clone(),
        note,
        by: by.to_owned(),
    };
    let record = match step {
        DisputeStep::Raise => Record::DisputeOpened(DisputeOpened {
            outcome: name.clone(),
            subject: o.subject.clone(),
            reason: text,
            by: by.to_owned(),
        }),
        DisputeStep::Accept => Record::DisputeAccepted(decided(text)),
        DisputeStep::Reject => Record::DisputeRejected(decided(text)),
    };
    let number = o.disputes.len() + usize::from(step == DisputeStep::Raise);
    let kind = record.event_type();
    Ok(record.to_event(
        &format!(
            "{id}/dispute-{number}/{}",
            kind.rsplit('.').next().unwrap_or(kind)
        ),
        now,
    ))
}
