//! Reading outcomes from the model: a page, one outcome.
//!
//! Every read first brings the model up to the ledger head as the read
//! found it ([`crate::fold::catch_up_within`], for folds near it), then
//! answers from one snapshot, so a client sees the events it has just
//! sent, and the answer says which ledger head it reflects.

use chrono::{DateTime, Utc};
use payoff_billing::{DisputeState, Outcome, Period};
use payoff_store::outcomes::{self as model, OutcomeFilter, OutcomeRow};
use payoff_store::Store;

use crate::fold::{catch_up_within, Reach};
use crate::row::from_row;
use crate::{OutcomesError, Versions};

/// An outcome with the state it is in now.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeNow {
    pub outcome: Outcome,
    pub state: &'static str,
    /// The statement that billed it, if any.
    pub billed_in: Option<String>,
    pub credited_in: Option<String>,
    /// The contract version whose rules recognised it: the one governing
    /// the period it matures in.
    pub version: u32,
}

/// The state an outcome is shown in. The store's `state_condition` is the
/// same decision in SQL; a test holds the two together.
pub fn state_of(
    o: &Outcome,
    billed_in: Option<&str>,
    credited_in: Option<&str>,
    now: DateTime<Utc>,
) -> &'static str {
    let dispute = o.dispute_state(DateTime::<Utc>::MAX_UTC);
    if credited_in.is_some() {
        "credited"
    } else if matches!(dispute, DisputeState::Open) {
        "disputed"
    } else if billed_in.is_some() {
        "billed"
    } else if o.void.is_some() || matches!(dispute, DisputeState::Accepted(_)) {
        "voided"
    } else if o.matures_at.timestamp_micros() <= now.timestamp_micros() {
        "billable"
    } else {
        "pending"
    }
}

fn now_of(row: &OutcomeRow, now: DateTime<Utc>) -> Result<OutcomeNow, OutcomesError> {
    let outcome = from_row(row)?;
    Ok(OutcomeNow {
        state: state_of(
            &outcome,
            row.billed_in.as_deref(),
            row.credited_in.as_deref(),
            now,
        ),
        billed_in: row.billed_in.clone(),
        credited_in: row.credited_in.clone(),
        version: row.version,
        outcome,
    })
}

/// Which ledger head a read reflects, and which folds are still being
/// built (their stretches are answered from an older version meanwhile).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Every event up to this sequence is reflected.
    pub ledger_head: u64,
    /// (version, events applied, ledger head) of folds not ready yet.
    pub rebuilding: Vec<(u32, u64, u64)>,
}

/// What a page asks for.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub name: Option<String>,
    pub subject: Option<String>,
    pub state: Option<String>,
    pub period: Option<Period>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Keyset cursor: outcomes created after this (sequence, kind).
    pub after: Option<(u64, u32)>,
    pub limit: usize,
    /// Count the matches up to this many (one more pass over them, which
    /// a bound keeps short); `None` counts nothing.
    pub count: Option<u64>,
}

/// One page of outcomes in creation order.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<OutcomeNow>,
    /// The cursor of the next page, when there is one.
    pub next: Option<(u64, u32)>,
    pub total: Option<u64>,
    pub freshness: Freshness,
}

/// Brings the model up to date (the folds near the head) and says what the
/// answer will reflect.
fn prepare(store: &Store, customer: &str) -> Result<Freshness, OutcomesError> {
    catch_up_within(store, customer, Reach::Near, &mut |_| {})?;
    let versions = Versions::load(store, customer)?;
    let (head, at) = store.read(|tx| {
        Ok((
            model::ledger_head(tx, customer)?,
            model::checkpoints(tx, customer)?,
        ))
    })?;
    let fold = |v: u32| {
        at.iter()
            .find(|a| a.0 == v)
            .map_or((0, false), |a| (a.1, a.2))
    };
    Ok(Freshness {
        ledger_head: versions
            .stored
            .iter()
            .map(|s| fold(s.version))
            .filter(|f| f.1)
            .map(|f| f.0)
            .min()
            .unwrap_or(head)
            .min(head),
        rebuilding: versions
            .stored
            .iter()
            .filter(|s| !fold(s.version).1)
            .map(|s| (s.version, fold(s.version).0, head))
            .collect(),
    })
}

/// One page of a customer's outcomes matching `q`.
pub fn page(
    store: &Store,
    customer: &str,
    q: &PageQuery,
    now: DateTime<Utc>,
) -> Result<Page, OutcomesError> {
    assert!(q.limit >= 1, "a page holds at least one outcome");
    let freshness = prepare(store, customer)?;
    let filter = OutcomeFilter {
        name: q.name.clone(),
        subject: q.subject.clone(),
        state: q.state.clone(),
        matures_from_us: q.period.map(|p| p.start.timestamp_micros()),
        matures_until_us: q.period.map(|p| p.end.timestamp_micros()),
        created_from_us: q.since.map(|t| t.timestamp_micros()),
        created_until_us: q.until.map(|t| t.timestamp_micros()),
        after: q.after,
        limit: q.limit + 1,
        now_us: now.timestamp_micros(),
    };
    let (rows, total) = store.read(|tx| {
        let rows = model::page(tx, customer, &filter)?;
        let total = match q.count {
            Some(at_most) => Some(model::count(tx, customer, &filter, Some(at_most))?),
            None => None,
        };
        Ok((rows, total))
    })?;
    let more = rows.len() > q.limit;
    let items = rows
        .iter()
        .take(q.limit)
        .map(|r| now_of(r, now))
        .collect::<Result<Vec<_>, _>>()?;
    let next = if more {
        items
            .last()
            .map(|o| (o.outcome.created.sequence, o.outcome.kind as u32))
    } else {
        None
    };
    Ok(Page {
        items,
        next,
        total,
        freshness,
    })
}

/// One outcome by id, under the version that governs it.
pub fn find(
    store: &Store,
    customer: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<(OutcomeNow, Freshness)>, OutcomesError> {
    let freshness = prepare(store, customer)?;
    match store.read(|tx| model::by_id(tx, customer, id))? {
        Some(row) => Ok(Some((now_of(&row, now)?, freshness))),
        None => Ok(None),
    }
}

/// Every outcome that has been disputed, under its governing version.
pub fn disputed(
    store: &Store,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<Vec<OutcomeNow>, OutcomesError> {
    prepare(store, customer)?;
    store
        .read(|tx| model::disputed(tx, customer))?
        .iter()
        .map(|r| now_of(r, now))
        .collect()
}

/// The Overview's figures, counted by the database rather than by
/// reading the outcomes.
#[derive(Debug, Clone, Default)]
pub struct OverviewCounts {
    /// Outcomes created in the period: (kind name, day of the period, count).
    pub created: Vec<(String, u64, u64)>,
    pub open_disputes: u64,
}

/// Outcomes created in `period` per kind and day, and open disputes.
pub fn overview(
    store: &Store,
    customer: &str,
    period: Period,
    now: DateTime<Utc>,
) -> Result<OverviewCounts, OutcomesError> {
    prepare(store, customer)?;
    let filter = OutcomeFilter {
        state: Some("disputed".into()),
        now_us: now.timestamp_micros(),
        ..Default::default()
    };
    Ok(store.read(|tx| {
        Ok(OverviewCounts {
            created: model::created_per_day(
                tx,
                customer,
                period.start.timestamp_micros(),
                period.end.timestamp_micros(),
            )?,
            open_disputes: model::count(tx, customer, &filter, None)?,
        })
    })?)
}
