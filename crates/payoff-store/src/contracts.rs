//! Storing contract versions, written once for both databases
//! (`crate::sql`); reading them stays in each backend, since requests
//! read them.

use crate::sql::Sql;
use crate::store::StoredContract;
use crate::StoreError;

/// Stores `contract`; false when its version number is taken.
pub(crate) fn insert(tx: &mut dyn Sql, contract: &StoredContract) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "INSERT INTO contracts (customer_id, version, effective, effective_us, sha256, body, uploaded_us)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        &[
            contract.customer.as_str().into(),
            i64::from(contract.version).into(),
            contract.effective.as_str().into(),
            contract.effective_start.timestamp_micros().into(),
            contract.sha256.as_str().into(),
            contract.body.as_str().into(),
            contract.uploaded_at.timestamp_micros().into(),
        ],
    )? == 1)
}
