//! Budgets, written once for both databases (`crate::sql`); budget
//! checks run per request, so [`list`] is one statement.

use crate::sql::Sql;
use crate::store::{from_us, Budget};
use crate::StoreError;

/// Sets (or replaces) the budget of `budget.customer` and `budget.agent`.
pub(crate) fn put(tx: &mut dyn Sql, budget: &Budget) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO budgets (customer_id, agent, limit_amount, warn_amount, updated_us) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (customer_id, agent) DO UPDATE SET limit_amount = excluded.limit_amount,
             warn_amount = excluded.warn_amount, updated_us = excluded.updated_us",
        &[
            budget.customer.as_str().into(),
            budget.agent.as_str().into(),
            budget.limit.as_str().into(),
            budget.warn_at.as_deref().into(),
            budget.updated_at.timestamp_micros().into(),
        ],
    )?;
    Ok(())
}

/// A customer's budgets by agent (`*`, the customer's own, sorts first).
pub(crate) fn list(tx: &mut dyn Sql, customer: &str) -> Result<Vec<Budget>, StoreError> {
    tx.rows(
        "SELECT customer_id, agent, limit_amount, warn_amount, updated_us FROM budgets WHERE customer_id = ? ORDER BY agent",
        &[customer.into()],
        |r| {
            Ok(Budget {
                customer: r.text_req(0)?,
                agent: r.text_req(1)?,
                limit: r.text_req(2)?,
                warn_at: r.text(3)?,
                updated_at: from_us(r.int_req(4)?),
            })
        },
    )
}
