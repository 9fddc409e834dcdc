//! Closed statements and the outcomes kept beside them, stored and read
//! back, written once for both databases (`crate::sql`).

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::sql::{Param, Sql, SqlRow};
use crate::store::{from_us, StatementSummary, StoredStatement};
use crate::StoreError;

const SUMMARY_COLUMNS: &str = "id, customer_id, period, period_start_us, period_end_us, head_seq, \
    currency, total, line_count, issued_us";

fn summary(r: &dyn SqlRow) -> Result<StatementSummary, StoreError> {
    let id = r.text_req(0)?;
    let filled = |v: Option<i64>| {
        v.ok_or_else(|| StoreError::Corrupt(format!("statement {id} has no summary")))
    };
    Ok(StatementSummary {
        customer: r.text_req(1)?,
        period: r.text_req(2)?,
        period_start: from_us(r.int_req(3)?),
        period_end: from_us(filled(r.int(4)?)?),
        head: filled(r.int(5)?)? as u64,
        currency: r.text_req(6)?,
        total: r.text_req(7)?,
        lines: filled(r.int(8)?)? as u64,
        issued_at: from_us(r.int_req(9)?),
        id,
    })
}

/// The statement with `id`, its signed bytes and all.
pub(crate) fn by_id(tx: &mut dyn Sql, id: &str) -> Result<Option<StoredStatement>, StoreError> {
    Ok(tx
        .rows(
            &format!("SELECT {SUMMARY_COLUMNS}, body FROM statements WHERE id = ?"),
            &[id.into()],
            |r| {
                Ok(StoredStatement {
                    summary: summary(r)?,
                    body: r.text_req(10)?,
                })
            },
        )?
        .pop())
}

/// A customer's statements by period, without their bodies.
pub(crate) fn summaries(
    tx: &mut dyn Sql,
    customer: &str,
) -> Result<Vec<StatementSummary>, StoreError> {
    tx.rows(
        &format!(
            "SELECT {SUMMARY_COLUMNS} FROM statements WHERE customer_id = ? ORDER BY period_start_us"
        ),
        &[customer.into()],
        summary,
    )
}

/// Migration 23: the summary of each statement in columns beside its
/// body, so that listing periods and closing the next one read no body.
pub(crate) const SCHEMA_SUMMARY: &str = "ALTER TABLE statements ADD COLUMN period_end_us BIGINT;
    ALTER TABLE statements ADD COLUMN head_seq BIGINT;
    ALTER TABLE statements ADD COLUMN currency TEXT;
    ALTER TABLE statements ADD COLUMN total TEXT;
    ALTER TABLE statements ADD COLUMN line_count BIGINT;";

/// What migration 23 reads of a stored statement's JSON: the fields of
/// its summary (the lines only counted, never kept).
#[derive(Deserialize)]
struct Header {
    period_end: String,
    ledger_head: HeadSequence,
    currency: String,
    total: String,
    lines: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct HeadSequence {
    sequence: u64,
}

/// Migration 23's step: fills the summary of the statements stored
/// before it, one at a time (each may name a million outcomes).
pub(crate) fn fill_summaries(tx: &mut dyn Sql) -> Result<(), StoreError> {
    let ids = tx.rows(
        "SELECT id FROM statements WHERE line_count IS NULL ORDER BY id",
        &[],
        |r| r.text_req(0),
    )?;
    for id in ids {
        let body = tx
            .rows(
                "SELECT body FROM statements WHERE id = ?",
                &[id.as_str().into()],
                |r| r.text_req(0),
            )?
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("statement {id} vanished")))?;
        let corrupt = |e: String| StoreError::Corrupt(format!("statement {id}: {e}"));
        let h: Header = serde_json::from_str(&body).map_err(|e| corrupt(e.to_string()))?;
        let end = chrono::DateTime::parse_from_rfc3339(&h.period_end)
            .map_err(|e| corrupt(format!("period_end: {e}")))?;
        tx.execute(
            "UPDATE statements SET period_end_us = ?, head_seq = ?, currency = ?, total = ?, line_count = ? \
             WHERE id = ?",
            &[
                end.timestamp_micros().into(),
                (h.ledger_head.sequence as i64).into(),
                h.currency.as_str().into(),
                h.total.as_str().into(),
                (h.lines.len() as i64).into(),
                id.as_str().into(),
            ],
        )?;
    }
    Ok(())
}

/// Migration 27: a closed period's outcomes as one row per kind, its
/// subjects one JSON array (see `payoff_billing::PeriodOutcomes`). A close
/// of a million outcomes inserted a million `period_outcomes` rows, most
/// of its time; periods closed before keep theirs there and are read from
/// there.
pub(crate) const SCHEMA_OUTCOME_SETS: &str = "CREATE TABLE period_outcome_sets (
        customer_id TEXT NOT NULL,
        period TEXT NOT NULL,
        kind TEXT NOT NULL,
        subjects TEXT NOT NULL,
        PRIMARY KEY (customer_id, period, kind)
    );";

/// The outcomes kept with a closed period's statement as (kind, JSON array
/// of subjects), kinds by name; `None` when none were kept (not closed, or
/// closed before they were).
pub(crate) fn outcome_sets(
    tx: &mut dyn Sql,
    customer: &str,
    period: &str,
) -> Result<Option<Vec<(String, String)>>, StoreError> {
    let kept = tx.row(
        "SELECT CAST(CASE WHEN outcomes_kept THEN 1 ELSE 0 END AS BIGINT) FROM statements \
         WHERE customer_id = ? AND period = ?",
        &[customer.into(), period.into()],
        |r| r.int_req(0),
    )?;
    if kept != Some(1) {
        return Ok(None);
    }
    let mut sets = tx.rows(
        "SELECT kind, subjects FROM period_outcome_sets WHERE customer_id = ? AND period = ? \
         ORDER BY kind",
        &[customer.into(), period.into()],
        |r| Ok((r.text_req(0)?, r.text_req(1)?)),
    )?;
    // Kept one row per outcome before migration 27.
    let mut legacy: Vec<(String, Vec<String>)> = Vec::new();
    tx.query(
        "SELECT kind, subject FROM period_outcomes WHERE customer_id = ? AND period = ? \
         ORDER BY kind, subject",
        &[customer.into(), period.into()],
        &mut |r| {
            let (kind, subject) = (r.text_req(0)?, r.text_req(1)?);
            match legacy.last_mut() {
                Some((k, subjects)) if *k == kind => subjects.push(subject),
                _ => legacy.push((kind, vec![subject])),
            }
            Ok(())
        },
    )?;
    for (kind, subjects) in legacy {
        let array = serde_json::to_string(&subjects)
            .map_err(|e| StoreError::Corrupt(format!("period outcomes of {kind}: {e}")))?;
        sets.push((kind, array));
    }
    Ok(Some(sets))
}

/// Stores a closed statement and its period's outcome sets, one SQL text
/// for both databases; false, writing nothing, when the customer's period
/// (or the id) is stored already.
pub(crate) fn insert(
    tx: &mut dyn Sql,
    s: &StoredStatement,
    outcome_sets: &[(String, String)],
) -> Result<bool, StoreError> {
    let h = &s.summary;
    let inserted = tx.execute(
        "INSERT INTO statements (id, customer_id, period, period_start_us, body, issued_us, \
         outcomes_kept, period_end_us, head_seq, currency, total, line_count) \
         VALUES (?, ?, ?, ?, ?, ?, TRUE, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        &[
            h.id.as_str().into(),
            h.customer.as_str().into(),
            h.period.as_str().into(),
            h.period_start.timestamp_micros().into(),
            s.body.as_str().into(),
            h.issued_at.timestamp_micros().into(),
            h.period_end.timestamp_micros().into(),
            (h.head as i64).into(),
            h.currency.as_str().into(),
            h.total.as_str().into(),
            (h.lines as i64).into(),
        ],
    )? == 1;
    if inserted {
        for (kind, subjects) in outcome_sets {
            let row: [Param; 4] = [
                h.customer.as_str().into(),
                h.period.as_str().into(),
                kind.as_str().into(),
                subjects.as_str().into(),
            ];
            tx.execute(
                "INSERT INTO period_outcome_sets (customer_id, period, kind, subjects) VALUES (?, ?, ?, ?)",
                &row,
            )?;
        }
    }
    Ok(inserted)
}
