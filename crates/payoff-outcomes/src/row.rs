//! An outcome as a row of the read model, and back, losing nothing.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use payoff_billing::{Decision, Dispute, DisputeState, Mark, Outcome};
use payoff_store::outcomes::OutcomeRow;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::OutcomesError;

/// What the columns do not hold exactly: event times with sub-microsecond
/// digits keep them here (a time that is whole microseconds, as almost all
/// are, is left to its `_us` column), so a row gives back the very outcome
/// the replay computes. Most details are `{}`, which a close over a
/// million rows then never parses.
#[derive(Serialize, Deserialize, Default)]
struct Detail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    matures_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    void_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    disputes: Vec<DisputeDetail>,
}

#[derive(Serialize, Deserialize)]
struct MarkDetail {
    sequence: u64,
    event: String,
    at: String,
}

#[derive(Serialize, Deserialize)]
struct DisputeDetail {
    opened: MarkDetail,
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decision: Option<DecisionDetail>,
}

#[derive(Serialize, Deserialize)]
struct DecisionDetail {
    accepted: bool,
    mark: MarkDetail,
    note: String,
}

fn exact(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The time in full when its `_us` column does not hold it exactly.
fn beyond_micros(t: DateTime<Utc>) -> Option<String> {
    (!t.timestamp_subsec_nanos().is_multiple_of(1_000)).then(|| exact(t))
}

/// A time from its detail if kept there, else from its `_us` column.
fn time_of(detail: Option<&str>, us: i64) -> Result<DateTime<Utc>, OutcomesError> {
    match detail {
        Some(text) => time(text),
        None => DateTime::from_timestamp_micros(us)
            .ok_or_else(|| OutcomesError::Corrupt(format!("outcome time {us} µs"))),
    }
}

fn time(text: &str) -> Result<DateTime<Utc>, OutcomesError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| OutcomesError::Corrupt(format!("outcome time {text}: {e}")))
}

fn mark_detail(m: &Mark) -> MarkDetail {
    MarkDetail {
        sequence: m.sequence,
        event: m.event_id.clone(),
        at: exact(m.time),
    }
}

fn mark(d: &MarkDetail) -> Result<Mark, OutcomesError> {
    Ok(Mark {
        sequence: d.sequence,
        event_id: d.event.clone(),
        time: time(&d.at)?,
    })
}

/// The dispute state after every event, as the `dispute` column names it.
fn dispute_column(o: &Outcome) -> &'static str {
    match o.dispute_state(DateTime::<Utc>::MAX_UTC) {
        DisputeState::None => "none",
        DisputeState::Open => "open",
        DisputeState::Rejected => "rejected",
        DisputeState::Accepted(_) => "accepted",
    }
}

/// When and in what order the events touching one outcome arrived, which
/// the outcome itself does not hold: whether the fold saw them in time
/// order, which lets a close cut at a time read the row instead of
/// replaying (see `payoff_store::outcomes::OutcomeRow::disorder_us`), and
/// the last one's sequence, which tells a close whether an earlier
/// period's billing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Order {
    pub touched_seq: u64,
    pub touched_us: i64,
    pub disorder_us: Option<i64>,
}

impl Order {
    /// Event `sequence`, dated `at`, touched the outcome; events come in
    /// ledger order, so it is the last to have touched it (a row migrated
    /// with an unknown sequence gets a known one).
    pub fn touch(&mut self, sequence: u64, at: i64) {
        if at < self.touched_us {
            self.disorder_us = Some(
                self.disorder_us
                    .map_or(self.touched_us, |d| d.max(self.touched_us)),
            );
        }
        self.touched_us = self.touched_us.max(at);
        self.touched_seq = sequence;
    }
}

pub(crate) fn to_row(
    customer: &str,
    version: u32,
    o: &Outcome,
    name: &str,
    governs: bool,
    order: Order,
) -> OutcomeRow {
    let detail = Detail {
        created_at: beyond_micros(o.created.time),
        matures_at: beyond_micros(o.matures_at),
        void_at: o.void.as_ref().and_then(|v| beyond_micros(v.time)),
        disputes: o
            .disputes
            .iter()
            .map(|d| DisputeDetail {
                opened: mark_detail(&d.opened),
                reason: d.reason.clone(),
                decision: d.decision.as_ref().map(|(k, m, note)| DecisionDetail {
                    accepted: *k == Decision::Accepted,
                    mark: mark_detail(m),
                    note: note.clone(),
                }),
            })
            .collect(),
    };
    OutcomeRow {
        customer: customer.to_owned(),
        version,
        kind: o.kind as u32,
        subject: o.subject.clone(),
        id: o.id.clone(),
        name: name.to_owned(),
        created_sequence: o.created.sequence,
        created_event: o.created.event_id.clone(),
        created_us: o.created.time.timestamp_micros(),
        matures_us: o.matures_at.timestamp_micros(),
        value: o.value.map(|v| v.to_string()),
        value_error: o.value_error.as_deref().map(str::to_owned),
        void_sequence: o.void.as_ref().map(|v| v.sequence),
        void_event: o.void.as_ref().map(|v| v.event_id.clone()),
        void_us: o.void.as_ref().map(|v| v.time.timestamp_micros()),
        dispute: dispute_column(o).to_owned(),
        detail: serde_json::to_string(&detail).expect("details serialise"),
        governs,
        billed_in: None,
        credited_in: None,
        touched_us: order.touched_us,
        disorder_us: order.disorder_us,
        touched_seq: order.touched_seq,
    }
}

pub(crate) fn from_row(r: &OutcomeRow) -> Result<Outcome, OutcomesError> {
    into_outcome(r.clone())
}

/// [`from_row`] taking the row, so its strings move instead of being copied
/// (a close reads a million rows).
pub(crate) fn into_outcome(r: OutcomeRow) -> Result<Outcome, OutcomesError> {
    // Empty when a close's trimmed row stands for `{}`.
    let d: Detail = if r.detail == "{}" || r.detail.is_empty() {
        Detail::default()
    } else {
        serde_json::from_str(&r.detail)
            .map_err(|e| OutcomesError::Corrupt(format!("outcome {}: {e}", r.id)))?
    };
    let void = match (r.void_sequence, r.void_event, r.void_us) {
        (Some(sequence), Some(event_id), Some(us)) => Some(Box::new(Mark {
            sequence,
            event_id,
            time: time_of(d.void_at.as_deref(), us)?,
        })),
        (None, None, None) => None,
        _ => {
            return Err(OutcomesError::Corrupt(format!(
                "outcome {}: half a void",
                r.id
            )))
        }
    };
    let value = r
        .value
        .as_deref()
        .map(Decimal::from_str)
        .transpose()
        .map_err(|e| OutcomesError::Corrupt(format!("outcome {} value: {e}", r.id)))?;
    let disputes = d
        .disputes
        .iter()
        .map(|x| {
            Ok(Dispute {
                opened: mark(&x.opened)?,
                reason: x.reason.clone(),
                decision: match &x.decision {
                    None => None,
                    Some(k) => Some((
                        if k.accepted {
                            Decision::Accepted
                        } else {
                            Decision::Rejected
                        },
                        mark(&k.mark)?,
                        k.note.clone(),
                    )),
                },
            })
        })
        .collect::<Result<Vec<_>, OutcomesError>>()?;
    Ok(Outcome {
        created: Mark {
            sequence: r.created_sequence,
            event_id: r.created_event,
            time: time_of(d.created_at.as_deref(), r.created_us)?,
        },
        matures_at: time_of(d.matures_at.as_deref(), r.matures_us)?,
        id: r.id,
        kind: r.kind as usize,
        subject: r.subject,
        value,
        value_error: r.value_error.map(String::into_boxed_str),
        void,
        disputes,
    })
}
