//! The outcome read model: one row per outcome of each contract version,
//! kept up to date from the ledger, so that reads never replay it.
//!
//! Rows are folded by `payoff-outcomes` (the rules are billing's); this
//! module only stores and finds them, with SQL written once for both
//! databases (see [`crate::sql`]). Each (customer, version) fold has a
//! checkpoint, the ledger sequence it has applied, moved in the same
//! transaction as the rows it produced: a crash loses nothing, and two
//! nodes cannot apply the same events twice (the checkpoint row is locked).

use crate::sql::{placeholders, Dialect, Param, Sql, SqlRow};
use crate::StoreError;

/// One outcome as the fold of one contract version left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRow {
    pub customer: String,
    pub version: u32,
    pub kind: u32,
    pub subject: String,
    pub id: String,
    pub name: String,
    pub created_sequence: u64,
    pub created_event: String,
    pub created_us: i64,
    pub matures_us: i64,
    pub value: Option<String>,
    pub value_error: Option<String>,
    pub void_sequence: Option<u64>,
    pub void_event: Option<String>,
    pub void_us: Option<i64>,
    /// `none`, `open`, `rejected` or `accepted`: the state of its disputes
    /// after every event, which is what listings filter on.
    pub dispute: String,
    /// The exact times (the `_us` columns are for filtering and order) and
    /// every dispute with its decision, as JSON.
    pub detail: String,
    /// This version governs the period the outcome matures in (and its
    /// fold is ready): the row reads show. Exactly one row of an outcome
    /// id governs once its version is built.
    pub governs: bool,
    /// The statement that billed it, and the one that took it back.
    pub billed_in: Option<String>,
    pub credited_in: Option<String>,
    /// The latest event time (µs) among the events that touched it.
    pub touched_us: i64,
    /// The ledger sequence of the last event that touched it: with
    /// `touched_us`, what tells a close that an earlier period's billing
    /// stands as the last statement left it ([`untouched_since`]).
    pub touched_seq: u64,
    /// Set when an event touched it with a time earlier than one that
    /// touched it before (a late event): the latest such earlier time's
    /// running maximum. A close cut after it sees the same events as the
    /// fold did; one cut at or before it may not, and replays instead.
    pub disorder_us: Option<i64>,
}

const ROW_COLUMNS: &str = "r.customer_id, r.version, r.kind, r.subject, r.outcome_id, r.name, \
    r.created_seq, r.created_event, r.created_us, r.matures_us, r.value, r.value_error, \
    r.void_seq, r.void_event, r.void_us, r.dispute, r.detail, r.governs, b.billed_in, b.credited_in, \
    r.touched_us, r.disorder_us, r.touched_seq";

const FROM_ROWS: &str = "FROM outcome_rows r LEFT JOIN outcome_billing b \
    ON b.customer_id = r.customer_id AND b.outcome_id = r.outcome_id";

/// [`ROW_COLUMNS`] as a close reads a million of them: without the
/// billing join, and with the texts it does not read (the customer, which
/// it names, the kind's name and the dispute summary, which it derives,
/// and the ids of the events that created and voided the outcome, which a
/// statement never names: a close goes by their sequence and time) and a
/// detail of `{}` (almost every row's) given as empty text, which costs
/// no allocation per row. See [`kept_rows`].
const KEPT_COLUMNS: &str = "'', r.version, r.kind, r.subject, r.outcome_id, '', \
    r.created_seq, '', r.created_us, r.matures_us, r.value, r.value_error, \
    r.void_seq, CASE WHEN r.void_event IS NULL THEN NULL ELSE '' END, r.void_us, '', \
    CASE WHEN r.detail = '{}' THEN '' ELSE r.detail END, r.governs, NULL, NULL, \
    r.touched_us, r.disorder_us, r.touched_seq";

fn seq(v: i64) -> u64 {
    v as u64
}

fn read_row(r: &dyn SqlRow) -> Result<OutcomeRow, StoreError> {
    Ok(OutcomeRow {
        customer: r.text_req(0)?,
        version: r.int_req(1)? as u32,
        kind: r.int_req(2)? as u32,
        subject: r.text_req(3)?,
        id: r.text_req(4)?,
        name: r.text_req(5)?,
        created_sequence: seq(r.int_req(6)?),
        created_event: r.text_req(7)?,
        created_us: r.int_req(8)?,
        matures_us: r.int_req(9)?,
        value: r.text(10)?,
        value_error: r.text(11)?,
        void_sequence: r.int(12)?.map(seq),
        void_event: r.text(13)?,
        void_us: r.int(14)?,
        dispute: r.text_req(15)?,
        detail: r.text_req(16)?,
        governs: r.int_req(17)? != 0,
        billed_in: r.text(18)?,
        credited_in: r.text(19)?,
        touched_us: r.int_req(20)?,
        disorder_us: r.int(21)?,
        touched_seq: seq(r.int_req(22)?),
    })
}

/// The checkpoint of one fold, locked until the transaction ends; a fold
/// not started yet is created at 0.
pub fn lock_checkpoint(tx: &mut dyn Sql, customer: &str, version: u32) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO outcome_heads (customer_id, version, sequence, ready) VALUES (?, ?, 0, 0) \
         ON CONFLICT (customer_id, version) DO NOTHING",
        &[customer.into(), i64::from(version).into()],
    )?;
    let sql = format!(
        "SELECT sequence FROM outcome_heads WHERE customer_id = ? AND version = ?{}",
        tx.dialect().for_update()
    );
    let mut at = 0;
    tx.query(
        &sql,
        &[customer.into(), i64::from(version).into()],
        &mut |r| {
            at = seq(r.int_req(0)?);
            Ok(())
        },
    )?;
    Ok(at)
}

/// Locks every fold's checkpoint of a customer, in version order, until
/// the transaction ends: steps of one customer's folds run one at a time,
/// so the readiness a step reads cannot change under it.
pub fn lock_all(tx: &mut dyn Sql, customer: &str) -> Result<Vec<(u32, u64, bool)>, StoreError> {
    let sql = format!(
        "SELECT version, sequence, ready FROM outcome_heads WHERE customer_id = ? \
         ORDER BY version{}",
        tx.dialect().for_update()
    );
    let mut out = Vec::new();
    tx.query(&sql, &[customer.into()], &mut |r| {
        out.push((r.int_req(0)? as u32, seq(r.int_req(1)?), r.int_req(2)? != 0));
        Ok(())
    })?;
    Ok(out)
}

/// Hands a stretch of maturity times to `version`: its rows there govern,
/// every other version's rows there no longer do. Run when that version's
/// fold becomes ready, in the same transaction.
pub fn govern(tx: &mut dyn Sql, customer: &str, stretch: &Governed) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE outcome_rows SET governs = CASE WHEN version = ? THEN 1 ELSE 0 END \
         WHERE customer_id = ? AND matures_us >= ? AND matures_us < ?",
        &[
            i64::from(stretch.version).into(),
            customer.into(),
            stretch.from_us.into(),
            stretch.until_us.into(),
        ],
    )?;
    Ok(())
}

/// Moves a fold's checkpoint; `ready` once it has caught up with the
/// ledger for the first time (until then reads use the previous version),
/// and ready it stays.
pub fn set_checkpoint(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    sequence: u64,
    ready: bool,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE outcome_heads SET sequence = ?, ready = CASE WHEN CAST(? AS BIGINT) = 1 THEN 1 ELSE ready END \
         WHERE customer_id = ? AND version = ?",
        &[
            (sequence as i64).into(),
            i64::from(ready).into(),
            customer.into(),
            i64::from(version).into(),
        ],
    )?;
    Ok(())
}

/// Where each fold of a customer stands: (version, sequence, ready).
pub fn checkpoints(tx: &mut dyn Sql, customer: &str) -> Result<Vec<(u32, u64, bool)>, StoreError> {
    let mut out = Vec::new();
    tx.query(
        "SELECT version, sequence, ready FROM outcome_heads WHERE customer_id = ? ORDER BY version",
        &[customer.into()],
        &mut |r| {
            out.push((r.int_req(0)? as u32, seq(r.int_req(1)?), r.int_req(2)? != 0));
            Ok(())
        },
    )?;
    Ok(out)
}

/// Keys per statement when loading rows by key.
const KEYS_PER_QUERY: usize = 400;

/// The stored rows of these (kind, subject) outcomes of one fold.
pub fn load(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    keys: &[(u32, &str)],
) -> Result<Vec<OutcomeRow>, StoreError> {
    let mut by_kind: std::collections::BTreeMap<u32, Vec<&str>> = Default::default();
    for (kind, subject) in keys {
        by_kind.entry(*kind).or_default().push(subject);
    }
    let mut out = Vec::new();
    for (kind, subjects) in by_kind {
        for chunk in subjects.chunks(KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT {ROW_COLUMNS} {FROM_ROWS} WHERE r.customer_id = ? AND r.version = ? \
                 AND r.kind = ? AND r.subject IN ({})",
                placeholders(chunk.len())
            );
            let mut params: Vec<Param> = vec![
                customer.into(),
                i64::from(version).into(),
                i64::from(kind).into(),
            ];
            params.extend(chunk.iter().map(|s| Param::from(*s)));
            tx.query(&sql, &params, &mut |r| {
                out.push(read_row(r)?);
                Ok(())
            })?;
        }
    }
    Ok(out)
}

/// Rows per INSERT statement ([`UPSERT_PARAMS`] parameters each).
const ROWS_PER_INSERT: usize = 100;
const UPSERT_PARAMS: usize = 21;

/// Inserts or replaces the folded part of these rows (never their
/// billing, which the close writes).
pub fn upsert(tx: &mut dyn Sql, rows: &[&OutcomeRow]) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let one = format!("({})", placeholders(UPSERT_PARAMS));
        let values = vec![one; chunk.len()].join(",");
        let sql = format!(
            "INSERT INTO outcome_rows (customer_id, version, kind, subject, outcome_id, name, \
             created_seq, created_event, created_us, matures_us, value, value_error, void_seq, \
             void_event, void_us, dispute, detail, governs, touched_us, disorder_us, touched_seq) \
             VALUES {values} \
             ON CONFLICT (customer_id, version, kind, subject) DO UPDATE SET \
             created_seq = excluded.created_seq, created_event = excluded.created_event, \
             created_us = excluded.created_us, matures_us = excluded.matures_us, \
             value = excluded.value, value_error = excluded.value_error, \
             void_seq = excluded.void_seq, void_event = excluded.void_event, \
             void_us = excluded.void_us, dispute = excluded.dispute, detail = excluded.detail, \
             governs = excluded.governs, touched_us = excluded.touched_us, \
             disorder_us = excluded.disorder_us, touched_seq = excluded.touched_seq"
        );
        let mut params: Vec<Param> = Vec::with_capacity(chunk.len() * UPSERT_PARAMS);
        for r in chunk {
            params.extend::<[Param; UPSERT_PARAMS]>([
                r.customer.as_str().into(),
                i64::from(r.version).into(),
                i64::from(r.kind).into(),
                r.subject.as_str().into(),
                r.id.as_str().into(),
                r.name.as_str().into(),
                (r.created_sequence as i64).into(),
                r.created_event.as_str().into(),
                r.created_us.into(),
                r.matures_us.into(),
                r.value.as_deref().into(),
                r.value_error.as_deref().into(),
                r.void_sequence.map(|s| s as i64).into(),
                r.void_event.as_deref().into(),
                r.void_us.into(),
                r.dispute.as_str().into(),
                r.detail.as_str().into(),
                i64::from(r.governs).into(),
                r.touched_us.into(),
                r.disorder_us.into(),
                (r.touched_seq as i64).into(),
            ]);
        }
        tx.execute(&sql, &params)?;
    }
    Ok(())
}

/// Forgets a fold: its rows and its checkpoint (a rebuild starts over).
pub fn clear(tx: &mut dyn Sql, customer: &str, version: Option<u32>) -> Result<(), StoreError> {
    match version {
        Some(v) => {
            for table in ["outcome_rows", "outcome_heads", "outcome_service_counts"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE customer_id = ? AND version = ?"),
                    &[customer.into(), i64::from(v).into()],
                )?;
            }
        }
        None => {
            for table in [
                "outcome_rows",
                "outcome_heads",
                "outcome_billing",
                "outcome_service_counts",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE customer_id = ?"),
                    &[customer.into()],
                )?;
            }
        }
    }
    Ok(())
}

/// Outcomes recorded per statement by [`record_billing`]: three
/// parameters each, well under both databases' limits (SQLite 32,766,
/// PostgreSQL 65,535).
const BILLING_ROWS: usize = 1000;

/// Records which statement billed the outcomes `ids` (the first one
/// stands) or took them back (the latest one stands), as the statements
/// say in order. A thousand rows per statement: one statement per outcome
/// cost a round trip each on PostgreSQL, paid by the first read after a
/// close (`payoff bench reads` at 300,000 events: the next close took
/// 1.02 s, 0.28 s in batches; 6.6 s at a million events).
pub fn record_billing(
    tx: &mut dyn Sql,
    customer: &str,
    ids: &[impl AsRef<str>],
    statement: &str,
    credited: bool,
) -> Result<(), StoreError> {
    let set = if credited {
        "credited_in = excluded.credited_in"
    } else {
        "billed_in = COALESCE(outcome_billing.billed_in, excluded.billed_in)"
    };
    let column = if credited { "credited_in" } else { "billed_in" };
    // PostgreSQL refuses a statement that updates a row twice; an id given
    // twice says the same thing twice.
    let mut ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(BILLING_ROWS) {
        let rows = vec![format!("({})", placeholders(3)); chunk.len()].join(",");
        let params: Vec<Param> = chunk
            .iter()
            .flat_map(|&id| [customer.into(), id.into(), statement.into()])
            .collect();
        tx.execute(
            &format!(
                "INSERT INTO outcome_billing (customer_id, outcome_id, {column}) VALUES {rows} \
                 ON CONFLICT (customer_id, outcome_id) DO UPDATE SET {set}"
            ),
            &params,
        )?;
    }
    Ok(())
}

/// The ledger head of a customer (0 for an empty chain).
pub fn ledger_head(tx: &mut dyn Sql, customer: &str) -> Result<u64, StoreError> {
    let mut head = 0;
    tx.query(
        "SELECT sequence FROM ledger_heads WHERE customer_id = ?",
        &[customer.into()],
        &mut |r| {
            head = seq(r.int_req(0)?);
            Ok(())
        },
    )?;
    Ok(head)
}

/// The events of a customer with a sequence in `(after, up_to]`, in
/// ledger order, as (sequence, canonical bytes); only those of `types`
/// when given.
pub fn events_between(
    tx: &mut dyn Sql,
    customer: &str,
    after: u64,
    up_to: u64,
    types: Option<&[&str]>,
    sink: &mut dyn FnMut(u64, Vec<u8>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut sql = String::from(
        "SELECT sequence, body FROM events WHERE customer_id = ? AND sequence > ? AND sequence <= ?",
    );
    let mut params: Vec<Param> = vec![
        customer.into(),
        (after as i64).into(),
        (up_to as i64).into(),
    ];
    if let Some(types) = types {
        sql.push_str(&format!(" AND type IN ({})", placeholders(types.len())));
        params.extend(types.iter().map(|t| Param::from(*t)));
    }
    sql.push_str(" ORDER BY sequence");
    tx.query(&sql, &params, &mut |r| {
        let body = r
            .bytes(1)?
            .ok_or_else(|| StoreError::Corrupt("an event without a body".into()))?;
        sink(seq(r.int_req(0)?), body)
    })
}

/// A stored event an outcome cites as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceEvent {
    pub sequence: u64,
    pub hash: [u8; 32],
    pub canonical: Vec<u8>,
}

/// The events of a customer at `sequences` (each once, in ledger order):
/// one query for an outcome's few evidence events.
pub fn events_at(
    tx: &mut dyn Sql,
    customer: &str,
    sequences: &[u64],
) -> Result<Vec<EvidenceEvent>, StoreError> {
    let mut wanted: Vec<u64> = sequences.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut out = Vec::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(out);
    }
    let mut params: Vec<Param> = vec![customer.into()];
    params.extend(wanted.iter().map(|&s| Param::from(s as i64)));
    tx.query(
        &format!(
            "SELECT sequence, hash, body FROM events WHERE customer_id = ? AND sequence IN ({}) \
             ORDER BY sequence",
            placeholders(wanted.len())
        ),
        &params,
        &mut |r| {
            let hash = r
                .bytes(1)?
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
                .ok_or_else(|| StoreError::Corrupt("an event hash is not 32 bytes".into()))?;
            let canonical = r
                .bytes(2)?
                .ok_or_else(|| StoreError::Corrupt("an event without a body".into()))?;
            out.push(EvidenceEvent {
                sequence: seq(r.int_req(0)?),
                hash,
                canonical,
            });
            Ok(())
        },
    )?;
    Ok(out)
}

/// How many statements a customer has.
pub fn statement_count(tx: &mut dyn Sql, customer: &str) -> Result<u64, StoreError> {
    let mut n = 0;
    tx.query(
        "SELECT COUNT(*) FROM statements WHERE customer_id = ?",
        &[customer.into()],
        &mut |r| {
            n = seq(r.int_req(0)?);
            Ok(())
        },
    )?;
    Ok(n)
}

/// The signed bodies of a customer's statements from the `skip`-th on,
/// in period order.
pub fn statements_from(
    tx: &mut dyn Sql,
    customer: &str,
    skip: u64,
    sink: &mut dyn FnMut(String) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut ids = Vec::new();
    tx.query(
        "SELECT id FROM statements WHERE customer_id = ? ORDER BY period_start_us",
        &[customer.into()],
        &mut |r| {
            ids.push(r.text_req(0)?);
            Ok(())
        },
    )?;
    for id in ids.iter().skip(skip as usize) {
        tx.query(
            "SELECT body FROM statements WHERE id = ?",
            &[id.as_str().into()],
            &mut |r| sink(r.text_req(0)?),
        )?;
    }
    Ok(())
}

/// One stretch of maturity times governed by one contract version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Governed {
    pub version: u32,
    /// Maturity at or after (µs since the epoch).
    pub from_us: i64,
    /// Maturity strictly before.
    pub until_us: i64,
}

/// What an outcome listing asks for, besides the customer.
#[derive(Debug, Clone, Default)]
pub struct OutcomeFilter {
    pub name: Option<String>,
    pub subject: Option<String>,
    /// A state as the API names it (see [`state_condition`]).
    pub state: Option<String>,
    pub matures_from_us: Option<i64>,
    pub matures_until_us: Option<i64>,
    pub created_from_us: Option<i64>,
    pub created_until_us: Option<i64>,
    /// Keyset: only outcomes after this (creation sequence, kind, version).
    pub after: Option<(u64, u32, u32)>,
    pub limit: usize,
    /// The time `pending` and `billable` are judged at.
    pub now_us: i64,
}

// The billing of an outcome as (NOT) EXISTS: PostgreSQL estimates a
// filter on the outer-joined billing row as one row, and then sorts every
// governing row for a page of voided outcomes (38 ms at 100,000 outcomes)
// where an anti join walks the index and stops at the page (0.4 ms).
macro_rules! billing_row {
    ($cond:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM outcome_billing x WHERE x.customer_id = r.customer_id \
             AND x.outcome_id = r.outcome_id AND ",
            $cond,
            ")"
        )
    };
}

// Neither billed nor credited by any statement.
macro_rules! unbilled {
    () => {
        concat!(
            "NOT ",
            billing_row!("(x.billed_in IS NOT NULL OR x.credited_in IS NOT NULL)")
        )
    };
}

/// The SQL condition of a state: the same decision as the state an
/// outcome is shown in, so a filter never disagrees with the listing.
/// `None` for a name that is not a state.
pub fn state_condition(state: &str) -> Option<&'static str> {
    Some(match state {
        "credited" => billing_row!("x.credited_in IS NOT NULL"),
        "disputed" => concat!(
            "NOT ",
            billing_row!("x.credited_in IS NOT NULL"),
            " AND r.dispute = 'open'"
        ),
        "billed" => concat!(
            billing_row!("x.billed_in IS NOT NULL AND x.credited_in IS NULL"),
            " AND r.dispute <> 'open'"
        ),
        "voided" => concat!(
            unbilled!(),
            " AND r.dispute <> 'open' AND (r.void_us IS NOT NULL OR r.dispute = 'accepted')"
        ),
        "billable" => concat!(
            unbilled!(),
            " AND r.dispute NOT IN ('open', 'accepted') AND r.void_us IS NULL AND r.matures_us <= ?"
        ),
        "pending" => concat!(
            unbilled!(),
            " AND r.dispute NOT IN ('open', 'accepted') AND r.void_us IS NULL AND r.matures_us > ?"
        ),
        _ => return None,
    })
}

/// Builds the WHERE clause shared by a page and a count.
fn conditions<'a>(
    customer: &'a str,
    f: &'a OutcomeFilter,
    keyset: bool,
) -> Result<(String, Vec<Param<'a>>), StoreError> {
    let mut sql = String::from("r.customer_id = ? AND r.governs = 1");
    let mut params: Vec<Param> = vec![customer.into()];
    if let Some(n) = &f.name {
        sql.push_str(" AND r.name = ?");
        params.push(n.as_str().into());
    }
    if let Some(s) = &f.subject {
        sql.push_str(" AND r.subject = ?");
        params.push(s.as_str().into());
    }
    if let Some(state) = &f.state {
        let cond = state_condition(state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown outcome state {state}")))?;
        sql.push_str(" AND ");
        sql.push_str(cond);
        if cond.ends_with('?') {
            params.push(f.now_us.into());
        }
    }
    for (column, op, bound) in [
        ("r.matures_us", ">=", f.matures_from_us),
        ("r.matures_us", "<", f.matures_until_us),
        ("r.created_us", ">=", f.created_from_us),
        ("r.created_us", "<", f.created_until_us),
    ] {
        if let Some(b) = bound {
            sql.push_str(&format!(" AND {column} {op} ?"));
            params.push(b.into());
        }
    }
    if keyset {
        if let Some((s, k, v)) = f.after {
            sql.push_str(
                " AND (r.created_seq > ? OR (r.created_seq = ? AND (r.kind > ? \
                 OR (r.kind = ? AND r.version > ?))))",
            );
            params.extend([
                Param::from(s as i64),
                Param::from(s as i64),
                Param::from(i64::from(k)),
                Param::from(i64::from(k)),
                Param::from(i64::from(v)),
            ]);
        }
    }
    Ok((sql, params))
}

/// The query of [`page`].
fn page_query<'a>(
    dialect: Dialect,
    customer: &'a str,
    f: &'a OutcomeFilter,
) -> Result<(String, Vec<Param<'a>>), StoreError> {
    let (cond, params) = conditions(customer, f, true)?;
    let sql = format!(
        "SELECT {ROW_COLUMNS} {} WHERE {cond} ORDER BY r.created_seq, r.kind, r.version LIMIT {}",
        from_rows(dialect, f),
        f.limit
    );
    Ok((sql, params))
}

/// What a listing reads from: [`FROM_ROWS`]. A subject names few rows,
/// but SQLite (without statistics) would rather walk all the customer's
/// governing rows in the listing's order than find the subject's few and
/// sort them (32 ms instead of 0.5 at 100,000 outcomes), so it is told
/// the index ([`Dialect::indexed_by`]).
fn from_rows(dialect: Dialect, f: &OutcomeFilter) -> String {
    match &f.subject {
        Some(_) => FROM_ROWS.replacen(
            "outcome_rows r",
            &format!(
                "outcome_rows r{}",
                dialect.indexed_by("outcome_rows_by_subject")
            ),
            1,
        ),
        None => FROM_ROWS.to_owned(),
    }
}

/// One page of the governing outcomes in creation order (ledger sequence,
/// kind, version): one walk of the index by (governs, creation).
pub fn page(
    tx: &mut dyn Sql,
    customer: &str,
    f: &OutcomeFilter,
) -> Result<Vec<OutcomeRow>, StoreError> {
    let (sql, params) = page_query(tx.dialect(), customer, f)?;
    let mut out = Vec::new();
    tx.query(&sql, &params, &mut |r| {
        out.push(read_row(r)?);
        Ok(())
    })?;
    Ok(out)
}

/// How many governing outcomes match a filter (the keyset cursor
/// ignored), counting at most `at_most` of them: a page that only shows
/// "more than N" need not walk a million rows.
pub fn count(
    tx: &mut dyn Sql,
    customer: &str,
    f: &OutcomeFilter,
    at_most: Option<u64>,
) -> Result<u64, StoreError> {
    let (cond, mut params) = conditions(customer, f, false)?;
    let from = from_rows(tx.dialect(), f);
    let sql = match at_most {
        Some(n) => {
            params.push((n.min(i64::MAX as u64) as i64).into());
            format!("SELECT COUNT(*) FROM (SELECT 1 {from} WHERE {cond} LIMIT ?) counted")
        }
        None => format!("SELECT COUNT(*) {from} WHERE {cond}"),
    };
    let mut total = 0;
    tx.query(&sql, &params, &mut |r| {
        total = seq(r.int_req(0)?);
        Ok(())
    })?;
    Ok(total)
}

/// Every governing outcome that has been disputed, in creation order
/// (disputes are few: a page of them needs no cursor).
pub fn disputed(tx: &mut dyn Sql, customer: &str) -> Result<Vec<OutcomeRow>, StoreError> {
    let mut out = Vec::new();
    tx.query(
        &format!(
            "SELECT {ROW_COLUMNS} {FROM_ROWS} WHERE r.customer_id = ? AND r.governs = 1 \
             AND r.dispute <> 'none' ORDER BY r.created_seq, r.kind"
        ),
        &[customer.into()],
        &mut |r| {
            out.push(read_row(r)?);
            Ok(())
        },
    )?;
    Ok(out)
}

/// Governing outcomes created in `[from_us, until_us)` per kind name and
/// day (whole days of 86,400 s from `from_us`), counted by the database.
pub fn created_per_day(
    tx: &mut dyn Sql,
    customer: &str,
    from_us: i64,
    until_us: i64,
) -> Result<Vec<(String, u64, u64)>, StoreError> {
    let mut out = Vec::new();
    tx.query(
        "SELECT r.name, (r.created_us - ?) / 86400000000, COUNT(*) FROM outcome_rows r \
         WHERE r.customer_id = ? AND r.governs = 1 AND r.created_us >= ? AND r.created_us < ? \
         GROUP BY 1, 2",
        &[
            from_us.into(),
            customer.into(),
            from_us.into(),
            until_us.into(),
        ],
        &mut |r| {
            out.push((r.text_req(0)?, seq(r.int_req(1)?), seq(r.int_req(2)?)));
            Ok(())
        },
    )?;
    Ok(out)
}

/// The query of [`by_id`]. (No ORDER BY: with one, SQLite would rather
/// walk an index in that order than find the id.)
fn by_id_query() -> String {
    format!(
        "SELECT {ROW_COLUMNS} {FROM_ROWS} WHERE r.customer_id = ? AND r.outcome_id = ? \
         AND r.governs = 1"
    )
}

/// The governing row of one outcome id, if any.
pub fn by_id(tx: &mut dyn Sql, customer: &str, id: &str) -> Result<Option<OutcomeRow>, StoreError> {
    let mut out = None;
    tx.query(&by_id_query(), &[customer.into(), id.into()], &mut |r| {
        let row = read_row(r)?;
        if out.is_some() {
            return Err(StoreError::Corrupt(format!(
                "outcome {} has two governing rows; run payoff reindex",
                row.id
            )));
        }
        out = Some(row);
        Ok(())
    })?;
    Ok(out)
}

/// Every row of one fold, in creation order, handed to `sink` one at a
/// time (a deep verification compares them with a replay).
pub fn scan(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    sink: &mut dyn FnMut(OutcomeRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    tx.query(
        &format!(
            "SELECT {ROW_COLUMNS} {FROM_ROWS} WHERE r.customer_id = ? AND r.version = ? \
             ORDER BY r.created_seq, r.kind"
        ),
        &[customer.into(), i64::from(version).into()],
        &mut |r| sink(read_row(r)?),
    )
}

/// The rows of a fold that mature in a period: how many there are, and
/// the first and last creation sequence among them. Counted from
/// `outcome_rows_period` alone (migration 21), so a close reads what it
/// needs to reserve and where its scan starts and stops without touching
/// a row, however long the history before and after the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptSpan {
    /// An upper bound of what [`kept_rows`] gives: rows maturing in the
    /// period, created before the cut or not.
    pub rows: usize,
    /// Creation sequences `first..=last` hold every one of them.
    pub first: i64,
    pub last: i64,
}

/// Whether a fold can stand in for a replay cut at `cut_us`: `None` when
/// the fold is not ready and at `head`, or a row was touched out of time
/// order at or after the cut (see [`OutcomeRow::disorder_us`]); else the
/// span of the rows maturing in `[from_us, until_us)` (`until_us` at most
/// the cut). Read in the same transaction as [`kept_rows`], whose
/// snapshot holds checkpoint and rows together.
pub fn kept_bound(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    head: u64,
    cut_us: i64,
    (from_us, until_us): (i64, i64),
) -> Result<Option<KeptSpan>, StoreError> {
    assert!(
        until_us <= cut_us,
        "a close reads no row maturing after its cut"
    );
    if !at_head(tx, customer, version, head)? {
        return Ok(None);
    }
    let mut unsure = false;
    tx.query(
        "SELECT 1 FROM outcome_rows WHERE customer_id = ? AND version = ? AND disorder_us >= ? \
         LIMIT 1",
        &[customer.into(), i64::from(version).into(), cut_us.into()],
        &mut |_| {
            unsure = true;
            Ok(())
        },
    )?;
    if unsure {
        return Ok(None);
    }
    let mut span = KeptSpan {
        rows: 0,
        first: 0,
        last: -1,
    };
    tx.query(
        "SELECT COUNT(*), MIN(created_seq), MAX(created_seq) FROM outcome_rows \
         WHERE customer_id = ? AND version = ? AND matures_us >= ? AND matures_us < ?",
        &[
            customer.into(),
            i64::from(version).into(),
            from_us.into(),
            until_us.into(),
        ],
        &mut |r| {
            let rows = r.int_req(0)?;
            if rows > 0 {
                span = KeptSpan {
                    rows: usize::try_from(rows).unwrap_or(0),
                    first: r.int_req(1)?,
                    last: r.int_req(2)?,
                };
            }
            Ok(())
        },
    )?;
    Ok(Some(span))
}

/// Whether the fold of `version` is ready and at `head`.
fn at_head(tx: &mut dyn Sql, customer: &str, version: u32, head: u64) -> Result<bool, StoreError> {
    Ok(checkpoints(tx, customer)?
        .iter()
        .any(|&(v, s, ready)| v == version && s == head && ready))
}

/// Whether no row of the fold of `version` maturing in `[from_us,
/// until_us)` was touched by an event after ledger sequence `since_seq` or
/// dated at or after `since_us`; `None` when the fold is not ready and at
/// `head`. A statement cut at `since_us` over the ledger up to `since_seq`
/// saw every such row as it is now, so what it billed of them stands: a
/// later close re-prices the period only when this is `Some(false)`.
/// Answered from `outcome_rows_period` alone (migration 22), stopping at
/// the first touched row.
pub fn untouched_since(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    head: u64,
    (from_us, until_us): (i64, i64),
    (since_seq, since_us): (u64, i64),
) -> Result<Option<bool>, StoreError> {
    if !at_head(tx, customer, version, head)? {
        return Ok(None);
    }
    let mut touched = false;
    tx.query(
        "SELECT 1 FROM outcome_rows WHERE customer_id = ? AND version = ? \
         AND matures_us >= ? AND matures_us < ? AND (touched_seq > ? OR touched_us >= ?) LIMIT 1",
        &[
            customer.into(),
            i64::from(version).into(),
            from_us.into(),
            until_us.into(),
            (since_seq as i64).into(),
            since_us.into(),
        ],
        &mut |_| {
            touched = true;
            Ok(())
        },
    )?;
    Ok(Some(!touched))
}

/// The rows of a fold a close cut at `cut_us` reads, in the replay's order
/// (creation): those created before the cut that mature in
/// `[from_us, until_us)`, found within the creation sequences of `span`
/// ([`kept_bound`]) on the fold's index by creation, which gives them in
/// order: a period's close reads its own rows and those created among
/// them, not the fold's whole history. Their billing is not read (a
/// close does not need it), which spares a lookup per row; the rows come
/// trimmed as [`KEPT_COLUMNS`] says (empty `customer`, `name`,
/// `dispute` and event ids; an empty `detail` is `{}`). The unary `+`
/// (a no-op on both databases) keeps SQLite off the maturity indexes,
/// which would then sort a million whole rows in memory.
pub fn kept_rows(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    cut_us: i64,
    (from_us, until_us): (i64, i64),
    span: KeptSpan,
    sink: &mut dyn FnMut(OutcomeRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if span.rows == 0 {
        return Ok(());
    }
    tx.query(
        &format!(
            "SELECT {KEPT_COLUMNS} FROM outcome_rows r WHERE r.customer_id = ? AND r.version = ? \
             AND r.created_seq >= ? AND r.created_seq <= ? \
             AND +r.created_us < ? AND +r.matures_us >= ? AND +r.matures_us < ? \
             ORDER BY r.created_seq, r.kind"
        ),
        &[
            customer.into(),
            i64::from(version).into(),
            span.first.into(),
            span.last.into(),
            cut_us.into(),
            from_us.into(),
            until_us.into(),
        ],
        &mut |r| sink(read_row(r)?),
    )
}

/// Migration 21: a fold's rows by maturity, carrying their creation
/// sequence, so [`kept_bound`] finds a period's rows from the index alone.
pub(crate) const SCHEMA_PERIOD_INDEX: &str =
    "CREATE INDEX outcome_rows_period ON outcome_rows (customer_id, version, matures_us, created_seq);";

/// Migration 24: the listing's index carries the version, the last part
/// of its keyset (an event may create an outcome under two versions that
/// both govern it), so a page is still one walk of the index.
pub(crate) const SCHEMA_GOVERNING_VERSION: &str = "DROP INDEX outcome_rows_governing;
    CREATE INDEX outcome_rows_governing ON outcome_rows (customer_id, governs, created_seq, kind, version);";

/// Migration 26: the lookup of one outcome by id names `governs` in its
/// index too. Without it SQLite (no statistics) saw two indexes matching
/// two of its terms each and, once migration 24 had made the governing
/// index anew, took that one: every governing row of the customer walked
/// to find one id (0.5 ms became 32 ms at 100,000 outcomes).
/// The subject's index, which listings filtered by subject name (see
/// `from_rows`), carries `governs` likewise.
pub(crate) const SCHEMA_BY_ID_GOVERNS: &str = "DROP INDEX outcome_rows_by_id;
    CREATE INDEX outcome_rows_by_id ON outcome_rows (customer_id, outcome_id, governs);
    DROP INDEX outcome_rows_by_subject;
    CREATE INDEX outcome_rows_by_subject ON outcome_rows (customer_id, subject, governs);";

/// Migration 22: each row's last touching sequence
/// ([`OutcomeRow::touched_seq`]), and the period index carrying it with
/// the last touching time, so [`untouched_since`] reads the index alone.
/// Rows folded before it say they were touched at the last possible
/// sequence: every earlier period is re-priced from them, as before,
/// until `payoff reindex` folds them again.
pub(crate) const SCHEMA_TOUCHED: &str =
    "ALTER TABLE outcome_rows ADD COLUMN touched_seq BIGINT NOT NULL DEFAULT 9223372036854775807;
    DROP INDEX outcome_rows_period;
    CREATE INDEX outcome_rows_period ON outcome_rows
        (customer_id, version, matures_us, created_seq, touched_seq, touched_us);";

/// Refreshes the planner's statistics of the read model's rows, after a
/// fold applied many events at once (see [`crate::sql::Dialect::refresh_statistics`]).
pub fn refresh_statistics(tx: &mut dyn Sql) -> Result<(), StoreError> {
    match tx.dialect().refresh_statistics("outcome_rows") {
        Some(sql) => tx.execute(&sql, &[]).map(|_| ()),
        None => Ok(()),
    }
}

/// Adds one batch's service-level counts of a fold: (level, period,
/// numerator, denominator) increments, in the batch's transaction.
pub fn add_service_counts(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    deltas: &[(u32, String, u64, u64)],
) -> Result<(), StoreError> {
    for (level, period, numerator, denominator) in deltas {
        tx.execute(
            "INSERT INTO outcome_service_counts \
             (customer_id, version, level, period, numerator, denominator) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (customer_id, version, level, period) DO UPDATE SET \
             numerator = outcome_service_counts.numerator + excluded.numerator, \
             denominator = outcome_service_counts.denominator + excluded.denominator",
            &[
                customer.into(),
                i64::from(version).into(),
                i64::from(*level).into(),
                period.as_str().into(),
                (*numerator as i64).into(),
                (*denominator as i64).into(),
            ],
        )?;
    }
    Ok(())
}

/// One service level's kept counts: (level, numerator, denominator).
pub type LevelCounts = (u32, u64, u64);

/// A fold's service-level counts of one period, when the fold is ready at
/// `head` and has counted since its first event; `None` otherwise.
pub fn service_counts(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    head: u64,
    period: &str,
) -> Result<Option<Vec<LevelCounts>>, StoreError> {
    let mut whole = false;
    tx.query(
        "SELECT 1 FROM outcome_heads WHERE customer_id = ? AND version = ? AND sequence = ? \
         AND ready = 1 AND service_from = 0",
        &[
            customer.into(),
            i64::from(version).into(),
            (head as i64).into(),
        ],
        &mut |_| {
            whole = true;
            Ok(())
        },
    )?;
    if !whole {
        return Ok(None);
    }
    let mut out = Vec::new();
    tx.query(
        "SELECT level, numerator, denominator FROM outcome_service_counts \
         WHERE customer_id = ? AND version = ? AND period = ? ORDER BY level",
        &[customer.into(), i64::from(version).into(), period.into()],
        &mut |r| {
            out.push((r.int_req(0)? as u32, seq(r.int_req(1)?), seq(r.int_req(2)?)));
            Ok(())
        },
    )?;
    Ok(Some(out))
}

/// The ledger head of a customer with its chain hash, `None` before its
/// first event.
pub fn ledger_head_ref(
    tx: &mut dyn Sql,
    customer: &str,
) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let mut head = None;
    tx.query(
        "SELECT sequence, hash FROM ledger_heads WHERE customer_id = ?",
        &[customer.into()],
        &mut |r| {
            head = Some((seq(r.int_req(0)?), r.bytes(1)?.unwrap_or_default()));
            Ok(())
        },
    )?;
    Ok(head)
}

/// Migration 16: each row says how its events arrived in time
/// ([`OutcomeRow::disorder_us`]), so a close can take its outcomes from
/// the model, and each fold counts its service levels per period
/// (`outcome_service_counts`). Rows folded before it cannot say, and are
/// marked unsure, and a fold that had begun counts from where it stood
/// (`service_from`), so neither is trusted until `payoff reindex` folds
/// them again.
pub(crate) const SCHEMA_ORDER: &str =
    "ALTER TABLE outcome_rows ADD COLUMN touched_us BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE outcome_rows ADD COLUMN disorder_us BIGINT;
    UPDATE outcome_rows SET disorder_us = 9223372036854775807;
    CREATE INDEX outcome_rows_disorder ON outcome_rows (customer_id, version, disorder_us);
    CREATE INDEX outcome_rows_by_version ON outcome_rows (customer_id, version, created_seq, kind);
    CREATE TABLE outcome_service_counts (
        customer_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        level BIGINT NOT NULL,
        period TEXT NOT NULL,
        numerator BIGINT NOT NULL,
        denominator BIGINT NOT NULL,
        PRIMARY KEY (customer_id, version, level, period)
    );
    ALTER TABLE outcome_heads ADD COLUMN service_from BIGINT NOT NULL DEFAULT 0;
    UPDATE outcome_heads SET service_from = sequence;";

/// The schema of the read model: the same text for both databases.
pub(crate) const SCHEMA: &str = "CREATE TABLE outcome_rows (
        customer_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        kind BIGINT NOT NULL,
        subject TEXT NOT NULL,
        outcome_id TEXT NOT NULL,
        name TEXT NOT NULL,
        created_seq BIGINT NOT NULL,
        created_event TEXT NOT NULL,
        created_us BIGINT NOT NULL,
        matures_us BIGINT NOT NULL,
        value TEXT,
        value_error TEXT,
        void_seq BIGINT,
        void_event TEXT,
        void_us BIGINT,
        dispute TEXT NOT NULL,
        detail TEXT NOT NULL,
        governs BIGINT NOT NULL,
        PRIMARY KEY (customer_id, version, kind, subject)
    );
    CREATE INDEX outcome_rows_governing ON outcome_rows (customer_id, governs, created_seq, kind);
    CREATE INDEX outcome_rows_by_id ON outcome_rows (customer_id, outcome_id);
    CREATE INDEX outcome_rows_by_subject ON outcome_rows (customer_id, subject);
    CREATE INDEX outcome_rows_by_maturity ON outcome_rows (customer_id, matures_us);
    CREATE TABLE outcome_heads (
        customer_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        sequence BIGINT NOT NULL,
        ready BIGINT NOT NULL,
        PRIMARY KEY (customer_id, version)
    );
    CREATE TABLE outcome_billing (
        customer_id TEXT NOT NULL,
        outcome_id TEXT NOT NULL,
        billed_in TEXT,
        credited_in TEXT,
        PRIMARY KEY (customer_id, outcome_id)
    );";

#[cfg(test)]
mod tests {
    use crate::scratch::ScratchDb;
    use crate::Store;

    fn plan(store: &Store, sql: &str, params: &[crate::sql::Param<'_>]) -> String {
        store
            .read(|tx| {
                tx.rows(&format!("EXPLAIN QUERY PLAN {sql}"), params, |r| {
                    Ok(r.text(3)?.unwrap_or_default())
                })
            })
            .unwrap()
            .join("\n")
    }

    /// Regression (migration 26): SQLite finds one outcome by its id's
    /// index, and a page of one subject's outcomes by the subject's, not
    /// by walking every governing row of the customer.
    #[test]
    fn one_outcome_and_one_subject_are_found_by_their_index() {
        let db = ScratchDb::sqlite();
        let store = Store::open(&db.url).unwrap();
        let by_id = plan(
            &store,
            &super::by_id_query(),
            &["acme".into(), "out.acme.1".into()],
        );
        assert!(
            by_id.contains(
                "USING INDEX outcome_rows_by_id (customer_id=? AND outcome_id=? AND governs=?)"
            ),
            "{by_id}"
        );
        let filter = super::OutcomeFilter {
            subject: Some("T-1".into()),
            limit: 50,
            ..Default::default()
        };
        let (sql, params) =
            super::page_query(crate::sql::Dialect::Sqlite, "acme", &filter).unwrap();
        let page = plan(&store, &sql, &params);
        assert!(
            page.contains(
                "USING INDEX outcome_rows_by_subject (customer_id=? AND subject=? AND governs=?)"
            ),
            "{page}"
        );
    }

    /// Billing is recorded a thousand outcomes per statement: across the
    /// chunks of a large statement, with an id given twice, the first
    /// statement that billed an outcome stands and the latest that took it
    /// back does, on both databases.
    #[test]
    fn billing_is_recorded_for_every_outcome_of_a_large_statement() {
        for db in ScratchDb::all() {
            let store = Store::open(&db.url).unwrap();
            let ids: Vec<String> = (0..2500).map(|i| format!("out.acme.{i:05}")).collect();
            let all: Vec<&str> = ids.iter().map(String::as_str).collect();
            let mut twice = all.clone();
            twice.push(all[1700]);
            let record = |ids: &[&str], statement: &str, credited: bool| {
                store
                    .write(|tx| super::record_billing(tx, "acme", ids, statement, credited))
                    .unwrap()
            };
            record(&twice, "st.1", false);
            // A later statement billing the same outcomes does not replace
            // the first; it bills the ones the first did not.
            record(&all[2000..], "st.2", false);
            let more: Vec<String> = (2500..2600).map(|i| format!("out.acme.{i:05}")).collect();
            record(
                &more.iter().map(String::as_str).collect::<Vec<_>>(),
                "st.2",
                false,
            );
            record(&all[..1500], "st.3", true);
            record(&all[1000..1200], "st.4", true);
            // Another customer's outcome of the same id is its own row.
            store
                .write(|tx| super::record_billing(tx, "globex", &all[..1], "st.g", false))
                .unwrap();
            let rows = store
                .read(|tx| {
                    tx.rows(
                        "SELECT outcome_id, billed_in, credited_in FROM outcome_billing \
                         WHERE customer_id = ? ORDER BY outcome_id",
                        &["acme".into()],
                        |r| Ok((r.text_req(0)?, r.text(1)?, r.text(2)?)),
                    )
                })
                .unwrap();
            assert_eq!(rows.len(), 2600, "{}", db.label);
            for (i, (id, billed, credited)) in rows.into_iter().enumerate() {
                assert_eq!(id, format!("out.acme.{i:05}"), "{}", db.label);
                let billed_by = if i < 2500 { "st.1" } else { "st.2" };
                assert_eq!(billed.as_deref(), Some(billed_by), "{id} on {}", db.label);
                let credited_by = match i {
                    1000..1200 => Some("st.4"),
                    0..1500 => Some("st.3"),
                    _ => None,
                };
                assert_eq!(credited.as_deref(), credited_by, "{id} on {}", db.label);
            }
        }
    }
}
