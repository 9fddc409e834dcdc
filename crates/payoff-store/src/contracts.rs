//! Contract versions, written once for both databases (`crate::sql`);
//! requests read them, so [`list`] is one statement.

use crate::sql::Sql;
use crate::store::{from_us, StoredContract};
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

/// Every version of a customer's contract, oldest first.
pub(crate) fn list(tx: &mut dyn Sql, customer: &str) -> Result<Vec<StoredContract>, StoreError> {
    tx.rows(
        "SELECT customer_id, version, effective, effective_us, sha256, body, uploaded_us FROM contracts WHERE customer_id = ? ORDER BY version",
        &[customer.into()],
        |r| {
            Ok(StoredContract {
                customer: r.text_req(0)?,
                version: r.int_req(1)? as u32,
                effective: r.text_req(2)?,
                effective_start: from_us(r.int_req(3)?),
                sha256: r.text_req(4)?,
                body: r.text_req(5)?,
                uploaded_at: from_us(r.int_req(6)?),
            })
        },
    )
}
