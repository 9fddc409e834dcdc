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

use crate::sql::{Param, Sql, SqlRow};
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

/// Schema version 19: each indexed call's tokens written to the cache and
/// spent reasoning, priced at prices of their own. [`reindex_calls`] fills
/// them in for the rows indexed before.
pub(crate) const SCHEMA_CACHE_REASONING: &str =
    "ALTER TABLE cost_facts ADD COLUMN cache_creation_tokens BIGINT;
    ALTER TABLE cost_facts ADD COLUMN reasoning_tokens BIGINT;";

/// Rows read again per batch by [`reindex_calls`].
const REINDEX_BATCH_ROWS: usize = 1_000;

/// Indexes every `llm.call` again with today's [`ModelCall::read`], in the
/// migration's transaction, so a cost read from the index stays the cost
/// of the event: rows indexed before version 19 have no cache-write or
/// reasoning counts, and a call counted Anthropic's way
/// (`input_includes_cached: false`) kept an input without its cache
/// tokens. A call the reader refuses now (a new field of the wrong kind)
/// becomes a row read whole, as it would be indexed today; one indexed by
/// place only (stored before the index existed) gets its fields. Batches
/// in key order keep the memory bounded on a long ledger.
pub(crate) fn reindex_calls(tx: &mut dyn Sql) -> Result<(), StoreError> {
    let select = format!(
        "SELECT f.customer_id, f.time_us, f.sequence, e.body FROM cost_facts f
         JOIN events e ON e.customer_id = f.customer_id AND e.sequence = f.sequence
         WHERE (f.customer_id, f.time_us, f.sequence) > (?, ?, ?) AND e.type = ?
         ORDER BY f.customer_id, f.time_us, f.sequence LIMIT {REINDEX_BATCH_ROWS}"
    );
    let mut after = (String::new(), i64::MIN, i64::MIN);
    loop {
        let mut batch = Vec::with_capacity(REINDEX_BATCH_ROWS);
        tx.query(
            &select,
            &[
                after.0.as_str().into(),
                after.1.into(),
                after.2.into(),
                LLM_CALL.into(),
            ],
            &mut |r: &dyn SqlRow| {
                let body = r
                    .bytes(3)?
                    .ok_or_else(|| StoreError::Corrupt("an event's body is NULL".into()))?;
                batch.push((r.text_req(0)?, r.int_req(1)?, r.int_req(2)?, body));
                Ok(())
            },
        )?;
        for (customer, time_us, sequence, body) in &batch {
            let call = ModelCall::read(body);
            let call = call.as_ref();
            let count = |f: fn(&ModelCall<'_>) -> u64| Param::Int(call.map(|c| tokens(f(c))));
            tx.execute(
                "UPDATE cost_facts SET model = ?, agent = ?, subject = ?, input_tokens = ?,
                 output_tokens = ?, cached_input_tokens = ?, cache_creation_tokens = ?, reasoning_tokens = ?
                 WHERE customer_id = ? AND time_us = ? AND sequence = ?",
                &[
                    call.map(|c| c.model.as_ref()).into(),
                    call.and_then(|c| c.agent.as_deref()).into(),
                    call.and_then(|c| c.subject.as_deref()).into(),
                    count(|c| c.input_tokens),
                    count(|c| c.output_tokens),
                    count(|c| c.cached_input_tokens),
                    count(|c| c.cache_creation_tokens),
                    count(|c| c.reasoning_tokens),
                    customer.as_str().into(),
                    (*time_us).into(),
                    (*sequence).into(),
                ],
            )?;
        }
        if batch.len() < REINDEX_BATCH_ROWS {
            return Ok(());
        }
        if let Some((customer, time_us, sequence, _)) = batch.pop() {
            after = (customer, time_us, sequence);
        }
    }
}
