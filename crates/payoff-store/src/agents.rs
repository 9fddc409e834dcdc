//! Agents' kill switches and the cursors of what each has handled, written
//! once for both databases (`crate::sql`); every agent request reads the
//! list of pauses, so [`pauses`] is one statement.

use crate::sql::Sql;
use crate::store::{from_us, AgentPause};
use crate::StoreError;

/// Turns a kill switch on (`paused`; one on already stays as it was) or
/// off.
pub(crate) fn set_pause(
    tx: &mut dyn Sql,
    pause: &AgentPause,
    paused: bool,
) -> Result<(), StoreError> {
    if paused {
        tx.execute(
            "INSERT INTO agent_pauses (agent, customer_id, paused_by, paused_us) VALUES (?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
            &[
                pause.agent.as_str().into(),
                pause.customer.as_str().into(),
                pause.paused_by.as_str().into(),
                pause.paused_at.timestamp_micros().into(),
            ],
        )?;
    } else {
        tx.execute(
            "DELETE FROM agent_pauses WHERE agent = ? AND customer_id = ?",
            &[pause.agent.as_str().into(), pause.customer.as_str().into()],
        )?;
    }
    Ok(())
}

/// Every kill switch that is on, by agent and customer.
pub(crate) fn pauses(tx: &mut dyn Sql) -> Result<Vec<AgentPause>, StoreError> {
    tx.rows(
        "SELECT agent, customer_id, paused_by, paused_us FROM agent_pauses ORDER BY agent, customer_id",
        &[],
        |r| {
            Ok(AgentPause {
                agent: r.text_req(0)?,
                customer: r.text_req(1)?,
                paused_by: r.text_req(2)?,
                paused_at: from_us(r.int_req(3)?),
            })
        },
    )
}

/// The last ledger sequence `agent` has handled for `customer` (0: none).
pub(crate) fn cursor(tx: &mut dyn Sql, agent: &str, customer: &str) -> Result<u64, StoreError> {
    Ok(tx
        .row(
            "SELECT sequence FROM agent_cursors WHERE agent = ? AND customer_id = ?",
            &[agent.into(), customer.into()],
            |r| r.int_req(0),
        )?
        .map_or(0, |s| s as u64))
}

/// Moves `agent`'s cursor for `customer` to `sequence`.
pub(crate) fn set_cursor(
    tx: &mut dyn Sql,
    agent: &str,
    customer: &str,
    sequence: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO agent_cursors (agent, customer_id, sequence) VALUES (?, ?, ?)
         ON CONFLICT (agent, customer_id) DO UPDATE SET sequence = excluded.sequence",
        &[agent.into(), customer.into(), (sequence as i64).into()],
    )?;
    Ok(())
}
