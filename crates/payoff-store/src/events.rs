//! Reads of the ledger that requests make, written once for both databases
//! (`crate::sql`), each one statement for [`crate::Store::read_one`]. The
//! writer ([`crate::append`]) and the scans that stream a whole chain stay
//! in each backend.

use payoff_ledger::Head;

use crate::sql::{Param, Sql, SqlRow};
use crate::store::{from_us, hash32, EventFilter, StoredEvent};
use crate::StoreError;

/// The columns of a stored event, as `stored_event` and the backends' scans read them.
pub(crate) const EVENT_COLUMNS: &str =
    "customer_id, sequence, time_us, recorded_us, body, hash, source, event_id, type, subject";

pub(crate) fn stored_event(r: &dyn SqlRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        customer: r.text_req(0)?,
        sequence: r.int_req(1)? as u64,
        time: from_us(r.int_req(2)?),
        recorded_at: from_us(r.int_req(3)?),
        canonical: r.bytes_req(4)?,
        hash: hash32(&r.bytes_req(5)?)?,
        source: r.text_req(6)?,
        id: r.text_req(7)?,
        event_type: r.text_req(8)?,
        subject: r.text(9)?,
    })
}

/// The customer's chain head, `None` for an unknown customer.
pub(crate) fn head(tx: &mut dyn Sql, customer: &str) -> Result<Option<Head>, StoreError> {
    tx.row(
        "SELECT sequence, hash FROM ledger_heads WHERE customer_id = ?",
        &[customer.into()],
        |r| {
            Ok(Head {
                sequence: r.int_req(0)? as u64,
                hash: hash32(&r.bytes_req(1)?)?,
            })
        },
    )
}

/// Up to `filter.limit` events of `filter.customer` matching it, oldest
/// first. Only the filters given become conditions, so the database can
/// use its index by type or by subject (an `? IS NULL OR type = ?` would
/// hide it from SQLite).
pub(crate) fn list(tx: &mut dyn Sql, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
    let mut sql =
        format!("SELECT {EVENT_COLUMNS} FROM events WHERE customer_id = ? AND sequence > ?");
    let mut params: Vec<Param<'_>> = vec![
        filter.customer.as_str().into(),
        (filter.after_sequence.unwrap_or(0) as i64).into(),
    ];
    if let Some(t) = &filter.event_type {
        sql.push_str(" AND type = ?");
        params.push(t.as_str().into());
    }
    if let Some(s) = &filter.subject {
        sql.push_str(" AND subject = ?");
        params.push(s.as_str().into());
    }
    if let Some(t) = filter.since {
        sql.push_str(" AND time_us >= ?");
        params.push(t.timestamp_micros().into());
    }
    if let Some(t) = filter.until {
        sql.push_str(" AND time_us < ?");
        params.push(t.timestamp_micros().into());
    }
    sql.push_str(" ORDER BY sequence LIMIT ?");
    params.push((filter.limit as i64).into());
    tx.rows(&sql, &params, stored_event)
}

/// The event of `customer` stored under its idempotency key, if any.
pub(crate) fn by_key(
    tx: &mut dyn Sql,
    customer: &str,
    source: &str,
    id: &str,
) -> Result<Option<StoredEvent>, StoreError> {
    tx.row(
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE customer_id = ? AND source = ? AND event_id = ?"
        ),
        &[customer.into(), source.into(), id.into()],
        stored_event,
    )
}
