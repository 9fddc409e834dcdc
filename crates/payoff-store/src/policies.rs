//! Versions of a customer's agent rules, written once for both databases
//! (`crate::sql`); every agent request reads them, so [`list`] is one
//! statement.

use crate::sql::Sql;
use crate::store::{from_us, StoredPolicy};
use crate::StoreError;

/// Stores `policy`; false when its version number is taken.
pub(crate) fn insert(tx: &mut dyn Sql, policy: &StoredPolicy) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "INSERT INTO agent_policies (customer_id, version, body, sha256, uploaded_by, uploaded_us)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        &[
            policy.customer.as_str().into(),
            i64::from(policy.version).into(),
            policy.body.as_str().into(),
            policy.sha256.as_str().into(),
            policy.uploaded_by.as_str().into(),
            policy.uploaded_at.timestamp_micros().into(),
        ],
    )? == 1)
}

/// A customer's agent rules, oldest version first.
pub(crate) fn list(tx: &mut dyn Sql, customer: &str) -> Result<Vec<StoredPolicy>, StoreError> {
    tx.rows(
        "SELECT customer_id, version, body, sha256, uploaded_by, uploaded_us FROM agent_policies WHERE customer_id = ? ORDER BY version",
        &[customer.into()],
        |r| {
            Ok(StoredPolicy {
                customer: r.text_req(0)?,
                version: r.int_req(1)? as u32,
                body: r.text_req(2)?,
                sha256: r.text_req(3)?,
                uploaded_by: r.text_req(4)?,
                uploaded_at: from_us(r.int_req(5)?),
            })
        },
    )
}
