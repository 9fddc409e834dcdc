//! Storing versions of a customer's agent rules, written once for both
//! databases (`crate::sql`); reading them stays in each backend, since
//! every agent request reads them.

use crate::sql::Sql;
use crate::store::StoredPolicy;
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
