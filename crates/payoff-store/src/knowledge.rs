//! Knowledge documents as stored, and their change log.
//!
//! The database is the source of truth for documents; each node's search
//! index is a copy that follows the change log. Every write of a document
//! appends one change, numbered in commit order (a lock on the log makes
//! the numbers and the commits agree, so a follower reading "changes after
//! N" never passes over one that commits later with a smaller number). An
//! index that has applied every change up to N answers as any other node
//! that has, and catches up from N after a restart instead of rebuilding.

use crate::sql::{Param, Sql, SqlRow};
use crate::StoreError;

/// Schema version 13: the change log, with one change per document already
/// stored, so that an index starting from nothing catches up to them all.
pub(crate) const SCHEMA: &str = "CREATE TABLE knowledge_changes (
        seq BIGINT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        doc_id TEXT NOT NULL
    );
    INSERT INTO knowledge_changes (seq, customer_id, doc_id)
        SELECT ROW_NUMBER() OVER (ORDER BY customer_id, doc_id), customer_id, doc_id
        FROM knowledge_documents;";

/// One change of the log, with the document as it is now: `None` when it
/// has been deleted since (or by this change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeChange {
    pub seq: u64,
    pub customer: String,
    pub doc_id: String,
    pub body: Option<String>,
}

/// The next change number, under a lock held until commit.
fn next_seq(tx: &mut dyn Sql) -> Result<u64, StoreError> {
    if let Some(lock) = tx.dialect().lock_table_exclusive("knowledge_changes") {
        tx.execute(&lock, &[])?;
    }
    Ok(head(tx)? + 1)
}

fn record(tx: &mut dyn Sql, customer: &str, doc_id: &str) -> Result<u64, StoreError> {
    let seq = next_seq(tx)?;
    tx.execute(
        "INSERT INTO knowledge_changes (seq, customer_id, doc_id) VALUES (?, ?, ?)",
        &[Param::from(seq as i64), customer.into(), doc_id.into()],
    )?;
    Ok(seq)
}

/// Stores (or replaces) documents `(id, JSON)` of `customer`; returns the
/// number of the last change.
pub(crate) fn put(
    tx: &mut dyn Sql,
    customer: &str,
    documents: &[(String, String)],
    at_us: i64,
) -> Result<u64, StoreError> {
    let mut last = head(tx)?;
    for (doc_id, body) in documents {
        tx.execute(
            "INSERT INTO knowledge_documents (customer_id, doc_id, body, updated_us) VALUES (?, ?, ?, ?)
             ON CONFLICT (customer_id, doc_id) DO UPDATE SET body = excluded.body, updated_us = excluded.updated_us",
            &[customer.into(), doc_id.as_str().into(), body.as_str().into(), at_us.into()],
        )?;
        last = record(tx, customer, doc_id)?;
    }
    Ok(last)
}

/// Deletes a document; the number of its change, `None` if there was none.
pub(crate) fn delete(
    tx: &mut dyn Sql,
    customer: &str,
    doc_id: &str,
) -> Result<Option<u64>, StoreError> {
    let gone = tx.execute(
        "DELETE FROM knowledge_documents WHERE customer_id = ? AND doc_id = ?",
        &[customer.into(), doc_id.into()],
    )?;
    if gone == 0 {
        return Ok(None);
    }
    record(tx, customer, doc_id).map(Some)
}

/// The number of the last change (0 when there is none).
pub(crate) fn head(tx: &mut dyn Sql) -> Result<u64, StoreError> {
    let mut last = 0;
    tx.query(
        "SELECT COALESCE(MAX(seq), 0) FROM knowledge_changes",
        &[],
        &mut |r: &dyn SqlRow| {
            last = r.int_req(0)? as u64;
            Ok(())
        },
    )?;
    Ok(last)
}

/// Up to `limit` changes after `after`, in order, each with its document
/// as it is now.
pub(crate) fn changes_after(
    tx: &mut dyn Sql,
    after: u64,
    limit: usize,
) -> Result<Vec<KnowledgeChange>, StoreError> {
    let mut out = Vec::new();
    tx.query(
        "SELECT c.seq, c.customer_id, c.doc_id, d.body FROM knowledge_changes c
         LEFT JOIN knowledge_documents d ON d.customer_id = c.customer_id AND d.doc_id = c.doc_id
         WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
        &[Param::from(after as i64), Param::from(limit as i64)],
        &mut |r: &dyn SqlRow| {
            out.push(KnowledgeChange {
                seq: r.int_req(0)? as u64,
                customer: r.text_req(1)?,
                doc_id: r.text_req(2)?,
                body: r.text(3)?,
            });
            Ok(())
        },
    )?;
    Ok(out)
}

/// `(customer, document JSON)` of one customer or of all, by id.
pub(crate) fn documents(
    tx: &mut dyn Sql,
    customer: Option<&str>,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    let mut sink = |r: &dyn SqlRow| {
        out.push((r.text_req(0)?, r.text_req(1)?));
        Ok(())
    };
    match customer {
        Some(c) => tx.query(
            "SELECT customer_id, body FROM knowledge_documents WHERE customer_id = ? ORDER BY doc_id",
            &[c.into()],
            &mut sink,
        )?,
        None => tx.query(
            "SELECT customer_id, body FROM knowledge_documents ORDER BY customer_id, doc_id",
            &[],
            &mut sink,
        )?,
    }
    Ok(out)
}
