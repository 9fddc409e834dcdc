//! Setting budgets, written once for both databases (`crate::sql`);
//! reading them stays in each backend, since budget checks run per
//! request.

use crate::sql::Sql;
use crate::store::Budget;
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
