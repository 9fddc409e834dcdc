//! A customer's action schema and rules (what any agent may do, see
//! `payoff_policy::ActionRules`), kept as numbered versions: the last is
//! in force, the earlier ones say what decided an older action. Written
//! once for both databases (`crate::sql`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::sql::{Sql, SqlRow};
use crate::store::from_us;
use crate::StoreError;

/// Schema version 17.
pub(crate) const SCHEMA: &str = "CREATE TABLE action_rules (
        customer_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        schema_text TEXT NOT NULL,
        rules_text TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        uploaded_us BIGINT NOT NULL,
        PRIMARY KEY (customer_id, version)
    );";

/// One version of a customer's action schema and rules, as uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredActionRules {
    pub customer: String,
    pub version: u32,
    /// SHA-256 of the schema, a NUL byte, then the rules.
    pub sha256: String,
    pub schema: String,
    pub rules: String,
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "customer_id, version, schema_text, rules_text, sha256, uploaded_by, uploaded_us";

fn row(r: &dyn SqlRow) -> Result<StoredActionRules, StoreError> {
    Ok(StoredActionRules {
        customer: r.text_req(0)?,
        version: u32::try_from(r.int_req(1)?)
            .map_err(|_| StoreError::Corrupt("an action rules version out of range".into()))?,
        schema: r.text_req(2)?,
        rules: r.text_req(3)?,
        sha256: r.text_req(4)?,
        uploaded_by: r.text_req(5)?,
        uploaded_at: from_us(r.int_req(6)?),
    })
}

/// Every version of a customer's rules, oldest first.
pub(crate) fn versions(
    tx: &mut dyn Sql,
    customer: &str,
) -> Result<Vec<StoredActionRules>, StoreError> {
    tx.rows(
        &format!("SELECT {COLUMNS} FROM action_rules WHERE customer_id = ? ORDER BY version"),
        &[customer.into()],
        row,
    )
}

/// The version in force, if any.
pub(crate) fn latest(
    tx: &mut dyn Sql,
    customer: &str,
) -> Result<Option<StoredActionRules>, StoreError> {
    tx.row(
        &format!(
            "SELECT {COLUMNS} FROM action_rules WHERE customer_id = ? ORDER BY version DESC LIMIT 1"
        ),
        &[customer.into()],
        row,
    )
}

/// Stores `rules` as the version after the last, unless another upload
/// took that number first (`false`: the caller tries again).
pub(crate) fn insert(tx: &mut dyn Sql, rules: &StoredActionRules) -> Result<bool, StoreError> {
    let changed = tx.execute(
        &format!("INSERT INTO action_rules ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
        &[
            rules.customer.as_str().into(),
            i64::from(rules.version).into(),
            rules.schema.as_str().into(),
            rules.rules.as_str().into(),
            rules.sha256.as_str().into(),
            rules.uploaded_by.as_str().into(),
            rules.uploaded_at.timestamp_micros().into(),
        ],
    )?;
    Ok(changed == 1)
}

/// One of Payoff's own ledger records, as a newest-first walk reads it.
#[derive(Debug, Clone)]
pub struct OwnRecord {
    pub sequence: u64,
    pub time: DateTime<Utc>,
    /// The event's canonical bytes.
    pub canonical: Vec<u8>,
}

/// At most `limit` of Payoff's own records (source `payoff`) of one type,
/// newest first, before the sequence `before`: the index by type walked
/// backwards, so a page costs its length, not the ledger's. One SQL text
/// for both databases.
pub(crate) fn own_records_newest(
    tx: &mut dyn Sql,
    customer: &str,
    event_type: &str,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<OwnRecord>, StoreError> {
    let mut out = Vec::with_capacity(limit.min(1024));
    tx.query(
        "SELECT sequence, time_us, body FROM events
         WHERE customer_id = ? AND type = ? AND sequence < ? AND source = 'payoff'
         ORDER BY sequence DESC LIMIT ?",
        &[
            customer.into(),
            event_type.into(),
            before.map_or(i64::MAX, |b| b as i64).into(),
            (limit as i64).into(),
        ],
        &mut |r| {
            out.push(OwnRecord {
                sequence: r.int_req(0)? as u64,
                time: from_us(r.int_req(1)?),
                canonical: r
                    .bytes(2)?
                    .ok_or_else(|| StoreError::Corrupt("an event without a body".into()))?,
            });
            Ok(())
        },
    )?;
    Ok(out)
}
