//! Period glances, written once for both databases (`crate::sql`): the
//! figures of a period's dashboard Overview as they were last computed,
//! kept so that a look at a period of a million outcomes reads one row
//! instead of pricing them all again. What a glance holds is
//! `payoff-accounting`'s to say; here it is an opaque JSON body with the
//! facts that decide whether it may still be shown: the contract
//! versions and statements it was computed over (`basis`), the ledger
//! head it reflects, when it was computed and how long that took.

use chrono::{DateTime, Utc};

use crate::sql::Sql;
use crate::store::from_us;
use crate::StoreError;

/// Migration 25.
pub(crate) const SCHEMA: &str = "CREATE TABLE period_glances (
        customer_id TEXT NOT NULL,
        period TEXT NOT NULL,
        basis TEXT NOT NULL,
        head_seq BIGINT NOT NULL,
        computed_us BIGINT NOT NULL,
        took_us BIGINT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (customer_id, period)
    );";

/// One period's kept figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGlance {
    pub customer: String,
    pub period: String,
    /// What the figures were computed over besides the ledger (contract
    /// versions, closed statements): a glance of another basis is never
    /// shown.
    pub basis: String,
    /// The ledger head (sequence) read before the figures were computed:
    /// every event up to it is counted.
    pub head: u64,
    /// Business time the figures are as of.
    pub computed_at: DateTime<Utc>,
    /// How long computing them took, in microseconds.
    pub took_us: u64,
    pub body: String,
}

/// The kept glance of a customer's period, if any.
pub(crate) fn get(
    tx: &mut dyn Sql,
    customer: &str,
    period: &str,
) -> Result<Option<StoredGlance>, StoreError> {
    tx.row(
        "SELECT basis, head_seq, computed_us, took_us, body FROM period_glances \
         WHERE customer_id = ? AND period = ?",
        &[customer.into(), period.into()],
        |r| {
            Ok(StoredGlance {
                customer: customer.to_owned(),
                period: period.to_owned(),
                basis: r.text_req(0)?,
                head: u64::try_from(r.int_req(1)?).unwrap_or(0),
                computed_at: from_us(r.int_req(2)?),
                took_us: u64::try_from(r.int_req(3)?).unwrap_or(0),
                body: r.text_req(4)?,
            })
        },
    )
}

/// Keeps `glance` unless one computed later is kept already (two nodes,
/// or two refreshes, may finish out of order: the later figures win).
pub(crate) fn put(tx: &mut dyn Sql, glance: &StoredGlance) -> Result<(), StoreError> {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO period_glances (customer_id, period, basis, head_seq, computed_us, took_us, body)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (customer_id, period) DO UPDATE SET basis = excluded.basis,
             head_seq = excluded.head_seq, computed_us = excluded.computed_us,
             took_us = excluded.took_us, body = excluded.body
         WHERE period_glances.computed_us <= excluded.computed_us",
        &[
            glance.customer.as_str().into(),
            glance.period.as_str().into(),
            glance.basis.as_str().into(),
            clamp(glance.head).into(),
            glance.computed_at.timestamp_micros().into(),
            clamp(glance.took_us).into(),
            glance.body.as_str().into(),
        ],
    )?;
    Ok(())
}
