//! The model price table, kept as numbered versions. Written once for
//! both databases (`crate::sql`).

use crate::sql::Sql;
use crate::store::{from_us, StoredPriceTable};
use crate::StoreError;

/// Stores `table`; false when its version number is taken.
pub(crate) fn insert(tx: &mut dyn Sql, table: &StoredPriceTable) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "INSERT INTO price_tables (version, effective_us, body, uploaded_us) VALUES (?, ?, ?, ?)
         ON CONFLICT DO NOTHING",
        &[
            i64::from(table.version).into(),
            table.effective.timestamp_micros().into(),
            table.body.as_str().into(),
            table.uploaded_at.timestamp_micros().into(),
        ],
    )? == 1)
}

/// Every version, oldest first.
pub(crate) fn versions(tx: &mut dyn Sql) -> Result<Vec<StoredPriceTable>, StoreError> {
    tx.rows(
        "SELECT version, effective_us, body, uploaded_us FROM price_tables ORDER BY version",
        &[],
        |r| {
            Ok(StoredPriceTable {
                version: u32::try_from(r.int_req(0)?).map_err(|_| {
                    StoreError::Corrupt("a price table version out of range".into())
                })?,
                effective: from_us(r.int_req(1)?),
                body: r.text_req(2)?,
                uploaded_at: from_us(r.int_req(3)?),
            })
        },
    )
}
