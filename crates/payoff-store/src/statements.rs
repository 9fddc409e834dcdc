//! Reading closed statements, written once for both databases
//! (`crate::sql`) as one statement for [`crate::Store::read_one`]. Storing
//! one, with its period's outcomes, stays in each backend.

use crate::sql::Sql;
use crate::store::{from_us, StoredStatement};
use crate::StoreError;

/// A customer's statements by period, or the one with `id`.
pub(crate) fn list(
    tx: &mut dyn Sql,
    customer: Option<&str>,
    id: Option<&str>,
) -> Result<Vec<StoredStatement>, StoreError> {
    tx.rows(
        "SELECT id, customer_id, period, period_start_us, body, issued_us FROM statements
         WHERE (CAST(? AS TEXT) IS NULL OR customer_id = ?) AND (CAST(? AS TEXT) IS NULL OR id = ?)
         ORDER BY customer_id, period_start_us",
        &[customer.into(), customer.into(), id.into(), id.into()],
        |r| {
            Ok(StoredStatement {
                id: r.text_req(0)?,
                customer: r.text_req(1)?,
                period: r.text_req(2)?,
                period_start: from_us(r.int_req(3)?),
                body: r.text_req(4)?,
                issued_at: from_us(r.int_req(5)?),
            })
        },
    )
}
