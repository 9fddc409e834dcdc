//! Customers, each created with the empty head of its chain. Written once
//! for both databases (`crate::sql`).

use payoff_ledger::Head;

use crate::access::Customer;
use crate::sql::Sql;
use crate::store::from_us;
use crate::StoreError;

/// Every customer, by id (one statement: requests read it).
pub(crate) fn list(tx: &mut dyn Sql) -> Result<Vec<Customer>, StoreError> {
    tx.rows(
        "SELECT id, name, created_us FROM customers ORDER BY id",
        &[],
        |r| {
            Ok(Customer {
                id: r.text_req(0)?,
                name: r.text_req(1)?,
                created_at: from_us(r.int_req(2)?),
            })
        },
    )
}

/// Stores a new customer and its empty chain head in the caller's one
/// transaction; `AlreadyExists` when the id is taken.
pub(crate) fn insert(tx: &mut dyn Sql, customer: &Customer) -> Result<(), StoreError> {
    let inserted = tx.execute(
        "INSERT INTO customers (id, name, created_us) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        &[
            customer.id.as_str().into(),
            customer.name.as_str().into(),
            customer.created_at.timestamp_micros().into(),
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::AlreadyExists {
            what: "customer",
            id: customer.id.clone(),
        });
    }
    tx.execute(
        "INSERT INTO ledger_heads (customer_id, sequence, hash) VALUES (?, 0, ?)",
        &[
            customer.id.as_str().into(),
            Head::EMPTY.hash.as_slice().into(),
        ],
    )?;
    Ok(())
}
