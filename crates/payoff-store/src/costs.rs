//! The cost index: one row per cost event, written with the event in the
//! same transaction, so that the cost of a month is read from narrow rows
//! instead of re-parsing millions of stored events.
//!
//! A model call in the common shape ([`ModelCall`]) keeps its fields in the
//! row; any other cost (a `cost.incurred`, a call with odd fields, rows of
//! events stored before the index existed) keeps only its place, and a scan
//! hands back the whole stored event for billing to read.

use chrono::{DateTime, Utc};
use payoff_ledger::{Event, ModelCall, COST_INCURRED, LLM_CALL};

use crate::StoreError;

/// One cost found by [`crate::Store::scan_costs`].
pub enum CostFact<'a> {
    /// A model call read at ingest.
    Call {
        sequence: u64,
        event_id: &'a str,
        time: DateTime<Utc>,
        call: ModelCall<'a>,
    },
    /// Any other cost event: its stored bytes, to be read whole.
    Event { sequence: u64, body: &'a [u8] },
}

pub(crate) type CostSink<'a> = &'a mut dyn FnMut(CostFact<'_>) -> Result<(), StoreError>;

/// Whether an event goes into the cost index, and with which call fields.
/// Events without a time are not costs (billing ignores them).
pub(crate) fn indexed(event: &Event) -> Option<Option<ModelCall<'_>>> {
    event.time?;
    match event.event_type.as_str() {
        LLM_CALL => Some(ModelCall::read(&event.canonical)),
        COST_INCURRED => Some(None),
        _ => None,
    }
}

/// A whole number of tokens as the databases store it.
pub(crate) fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
