//! The audit log: who did what to which resource, the decision and why.
//!
//! It is a chain of its own, apart from the customers' ledgers: a refused
//! request must leave a trace without changing a customer's billing data.
//! Record `n` hashes as `SHA-256(hash_{n-1} || canonical JSON of record n)`
//! from 32 zero bytes, the rule of the ledger, so one verifier serves both
//! and an export can be checked offline.

use chrono::{DateTime, SecondsFormat, Utc};
use payoff_ledger::{canonical_json, Head};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sql::{Param, Sql};
use crate::store::hash32;
use crate::StoreError;

/// One thing that happened, before it takes its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// UTC, to the microsecond.
    pub at: DateTime<Utc>,
    /// The key id (`key_…`) or `agent:<name>`; `anonymous` when no valid key was shown.
    pub actor: String,
    pub role: Option<String>,
    /// The customer whose data was touched, when there is one.
    pub customer: Option<String>,
    /// A route (`POST /v1/customers/{customer}/contracts`) or an agent action (`send_reply`).
    pub action: String,
    /// The concrete resource: a path, a ticket, an approval.
    pub resource: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// Why, in words: the status and problem of a request, or the policy's reasons.
    pub reason: String,
    /// The policies that decided, when a policy decided.
    #[serde(default)]
    pub policy_ids: Vec<String>,
}

/// An entry with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub sequence: u64,
    pub entry: AuditEntry,
    pub hash: [u8; 32],
}

/// Which records to list, oldest first unless `newest_first`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub customer: Option<String>,
    pub actor: Option<String>,
    /// Matches records whose action contains this text.
    pub action: Option<String>,
    pub decision: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub after_sequence: Option<u64>,
    /// Only records before this sequence (the cursor of a newest-first page).
    pub before_sequence: Option<u64>,
    /// Newest first, as a person reading a log wants it.
    pub newest_first: bool,
    pub limit: usize,
}

/// Appends `entries` to the audit chain inside the caller's write
/// transaction, one SQL text for both databases. The chain is one for the
/// installation: on PostgreSQL the table lock makes other writers (of
/// every node) wait while readers go on, and is taken after any head lock,
/// never before, so no two transactions wait on each other; SQLite's write
/// transaction holds the database's one write lock already.
pub(crate) fn insert(
    tx: &mut dyn Sql,
    entries: &[&AuditEntry],
) -> Result<Vec<AuditRecord>, StoreError> {
    if let Some(lock) = tx.dialect().lock_table_exclusive("audit_log") {
        tx.execute_batch(&lock)?;
    }
    let mut last = tx.row(
        "SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1",
        &[],
        |r| Ok((r.int_req(0)?, r.bytes_req(1)?)),
    )?;
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        let (record, body) = next_audit(last.take(), entry)?;
        tx.execute(
            "INSERT INTO audit_log (sequence, at_us, actor, customer_id, action, decision, body, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                (record.sequence as i64).into(),
                entry.at.timestamp_micros().into(),
                entry.actor.as_str().into(),
                entry.customer.as_deref().into(),
                entry.action.as_str().into(),
                entry.decision.as_str().into(),
                body.as_str().into(),
                record.hash.as_slice().into(),
            ],
        )?;
        last = Some((record.sequence as i64, record.hash.to_vec()));
        records.push(record);
    }
    Ok(records)
}

/// `(sequence, body, hash)` of every audit record, in order.
pub(crate) fn rows(
    tx: &mut dyn Sql,
    sink: &mut dyn FnMut(u64, String, Vec<u8>),
) -> Result<(), StoreError> {
    tx.query(
        "SELECT sequence, body, hash FROM audit_log ORDER BY sequence",
        &[],
        &mut |r| {
            sink(r.int_req(0)? as u64, r.text_req(1)?, r.bytes_req(2)?);
            Ok(())
        },
    )
}

/// Records matching `filter`, in its order (one statement, for
/// [`crate::Store::read_one`]). Only the filters given become conditions.
pub(crate) fn records(tx: &mut dyn Sql, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
    let contains = tx.dialect().contains("action");
    let mut sql = String::from("SELECT sequence, body, hash FROM audit_log WHERE sequence > ?");
    let mut params: Vec<Param<'_>> = vec![(f.after_sequence.unwrap_or(0) as i64).into()];
    let conditions: [(&str, Option<Param<'_>>); 7] = [
        ("customer_id = ?", f.customer.as_deref().map(Param::from)),
        ("actor = ?", f.actor.as_deref().map(Param::from)),
        (&contains, f.action.as_deref().map(Param::from)),
        ("decision = ?", f.decision.as_deref().map(Param::from)),
        ("at_us >= ?", f.since.map(|t| t.timestamp_micros().into())),
        ("at_us < ?", f.until.map(|t| t.timestamp_micros().into())),
        ("sequence < ?", f.before_sequence.map(|b| (b as i64).into())),
    ];
    for (condition, value) in conditions {
        if let Some(value) = value {
            sql.push_str(" AND ");
            sql.push_str(condition);
            params.push(value);
        }
    }
    sql.push_str(if f.newest_first {
        " ORDER BY sequence DESC LIMIT ?"
    } else {
        " ORDER BY sequence ASC LIMIT ?"
    });
    params.push((f.limit as i64).into());
    tx.rows(&sql, &params, |r| {
        audit_record(r.int_req(0)?, &r.text_req(1)?, &r.bytes_req(2)?)
    })
}

/// The bytes a record's hash covers: its sequence and entry, canonical.
pub fn audit_body(sequence: u64, entry: &AuditEntry) -> Vec<u8> {
    canonical_json(&body_value(sequence, entry))
}

fn body_value(sequence: u64, entry: &AuditEntry) -> Value {
    serde_json::json!({
        "sequence": sequence,
        "at": entry.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "actor": entry.actor,
        "role": entry.role,
        "customer": entry.customer,
        "action": entry.action,
        "resource": entry.resource,
        "decision": entry.decision,
        "reason": entry.reason,
        "policy_ids": entry.policy_ids,
    })
}

impl AuditRecord {
    /// The record as one line of an export: its body plus its hash.
    pub fn to_json(&self) -> Value {
        let mut v = body_value(self.sequence, &self.entry);
        v["hash"] = Value::String(hex::encode(self.hash));
        v
    }
}

/// The check of an audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditReport {
    /// Records checked.
    pub records: u64,
    /// Hex hash of the last record checked.
    pub head_hash: String,
    /// The first broken link, in words; `None` when the chain is intact.
    pub broken: Option<String>,
}

/// Checks records given in order (from the database or an export): each
/// sequence follows the last, and each hash is the chain rule applied to
/// the record's own content. Names the first record that fails.
pub fn verify_audit(records: impl IntoIterator<Item = Result<Value, String>>) -> AuditReport {
    let mut head = Head::EMPTY;
    for (i, record) in records.into_iter().enumerate() {
        let at = i as u64 + 1;
        let broken = |why: String, head: &Head| AuditReport {
            records: head.sequence,
            head_hash: head.hash_hex(),
            broken: Some(format!("record {at}: {why}")),
        };
        let mut value = match record {
            Ok(v) => v,
            Err(e) => return broken(e, &head),
        };
        let Some(hash) = value
            .as_object_mut()
            .and_then(|o| o.remove("hash"))
            .and_then(|h| h.as_str().map(str::to_owned))
        else {
            return broken("has no \"hash\"".into(), &head);
        };
        if value.get("sequence").and_then(Value::as_u64) != Some(at) {
            return broken(format!("its sequence is not {at}"), &head);
        }
        let next = head.append(&canonical_json(&value));
        if next.hash_hex() != hash {
            return broken(
                "its content does not match its hash (altered, or an earlier record was)".into(),
                &head,
            );
        }
        head = next;
    }
    AuditReport {
        records: head.sequence,
        head_hash: head.hash_hex(),
        broken: None,
    }
}

/// The record that follows `last` (`(sequence, hash)` of the newest row),
/// and the body to store with it.
fn next_audit(
    last: Option<(i64, Vec<u8>)>,
    entry: &AuditEntry,
) -> Result<(AuditRecord, String), StoreError> {
    let head = match last {
        None => payoff_ledger::Head::EMPTY,
        Some((sequence, hash)) => payoff_ledger::Head {
            sequence: sequence as u64,
            hash: hash32(&hash)?,
        },
    };
    let body = audit_body(head.sequence + 1, entry);
    let next = head.append(&body);
    let body = String::from_utf8(body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((
        AuditRecord {
            sequence: next.sequence,
            entry: entry.clone(),
            hash: next.hash,
        },
        body,
    ))
}

/// A stored audit row read back.
fn audit_record(sequence: i64, body: &str, hash: &[u8]) -> Result<AuditRecord, StoreError> {
    let entry: AuditEntry = serde_json::from_str(body)
        .map_err(|e| StoreError::Corrupt(format!("audit record {sequence}: {e}")))?;
    Ok(AuditRecord {
        sequence: sequence as u64,
        entry,
        hash: hash32(hash)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str) -> AuditEntry {
        AuditEntry {
            at: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
            actor: actor.into(),
            role: Some("operator".into()),
            customer: Some("acme".into()),
            action: "POST /v1/customers/{customer}/contracts".into(),
            resource: "/v1/customers/acme/contracts".into(),
            decision: "allow".into(),
            reason: "201".into(),
            policy_ids: vec![],
        }
    }

    fn chain(actors: &[&str]) -> Vec<Value> {
        let mut head = Head::EMPTY;
        actors
            .iter()
            .map(|a| {
                let e = entry(a);
                head = head.append(&audit_body(head.sequence + 1, &e));
                AuditRecord {
                    sequence: head.sequence,
                    entry: e,
                    hash: head.hash,
                }
                .to_json()
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_is_named() {
        let records = chain(&["key_a", "key_b", "key_c"]);
        let ok = verify_audit(records.iter().cloned().map(Ok));
        assert_eq!(ok.records, 3);
        assert_eq!(ok.broken, None);

        let mut altered = records.clone();
        altered[1]["decision"] = "deny".into();
        let report = verify_audit(altered.into_iter().map(Ok));
        assert_eq!(report.records, 1);
        assert!(report.broken.unwrap().starts_with("record 2:"));

        let mut dropped = records.clone();
        dropped.remove(0);
        let report = verify_audit(dropped.into_iter().map(Ok));
        assert!(report.broken.unwrap().contains("sequence is not 1"));

        let report = verify_audit(vec![Err("not JSON".to_string())]);
        assert_eq!(report.broken.as_deref(), Some("record 1: not JSON"));
    }
}
