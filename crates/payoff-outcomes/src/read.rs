//! Reading outcomes from the model: a page, one outcome.
//!
//! Every read first brings the model up to the ledger head as the read
//! found it ([`crate::fold::catch_up_within`], for folds near it), then
//! answers from one snapshot, so a client sees the events it has just
//! sent, and the answer says which ledger head it reflects.

use chrono::{DateTime, Utc};
use payoff_billing::{Decision, DisputeState, Outcome, Period};
use payoff_store::outcomes::{self as model, OutcomeFilter, OutcomeRow};
use payoff_store::sql::Sql;
use payoff_store::{Store, StoreError};

use crate::fold::{catch_up_within, Reach, Seen};
use crate::row::from_row;
use crate::{OutcomesError, Versions};

/// An outcome with the state it is in now.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeNow {
    pub outcome: Outcome,
    /// Its kind's name (the outcome holds the kind's index in the
    /// contract version that recognised it).
    pub name: String,
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
        name: row.name.clone(),
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
    /// Keyset cursor: outcomes after this (creation sequence, kind,
    /// contract version): an event may create an outcome under two
    /// versions that each govern it, in the periods it matures in under
    /// each.
    pub after: Option<(u64, u32, u32)>,
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
    pub next: Option<(u64, u32, u32)>,
    pub total: Option<u64>,
    pub freshness: Freshness,
}

/// Runs `read` on a snapshot that reflects the ledger head it finds, and
/// says which head that is. When the model is already current (the usual
/// case) one snapshot holds both the check and the read; otherwise the
/// folds near the head catch up first and the read takes a new snapshot.
/// (On PostgreSQL each snapshot is a round trip or more: the one-outcome
/// read took three, and the contracts twice.)
fn fresh<T>(
    store: &Store,
    customer: &str,
    read: impl Fn(&mut dyn Sql) -> Result<T, StoreError>,
) -> Result<(T, Freshness), OutcomesError> {
    let versions = Versions::load(store, customer)?;
    let (seen, value) = store.read(|tx| {
        let seen = Seen::read(tx, customer)?;
        let value = match seen.current(&versions) {
            true => Some(read(tx)?),
            false => None,
        };
        Ok((seen, value))
    })?;
    if let Some(value) = value {
        return Ok((value, freshness(&versions, &seen)));
    }
    catch_up_within(store, customer, Reach::Near, &mut |_| {})?;
    let versions = Versions::load(store, customer)?;
    let (seen, value) = store.read(|tx| Ok((Seen::read(tx, customer)?, read(tx)?)))?;
    Ok((value, freshness(&versions, &seen)))
}

/// Which head an answer read with `seen` reflects: the least of the ready
/// folds' checkpoints (a fold far behind is answered for by the version
/// before it, and listed as rebuilding).
fn freshness(versions: &Versions, seen: &Seen) -> Freshness {
    let head = seen.head;
    Freshness {
        ledger_head: versions
            .stored
            .iter()
            .map(|s| seen.fold(s.version))
            .filter(|f| f.1)
            .map(|f| f.0)
            .min()
            .unwrap_or(head)
            .min(head),
        rebuilding: versions
            .stored
            .iter()
            .filter(|s| !seen.fold(s.version).1)
            .map(|s| (s.version, seen.fold(s.version).0, head))
            .collect(),
    }
}

/// One page of a customer's outcomes matching `q`.
pub fn page(
    store: &Store,
    customer: &str,
    q: &PageQuery,
    now: DateTime<Utc>,
) -> Result<Page, OutcomesError> {
    assert!(q.limit >= 1, "a page holds at least one outcome");
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
    let ((rows, total), freshness) = fresh(store, customer, |tx| {
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
            .map(|o| (o.outcome.created.sequence, o.outcome.kind as u32, o.version))
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

/// One outcome found by id, with the events that are its evidence.
#[derive(Debug, Clone)]
pub struct Found {
    pub outcome: OutcomeNow,
    /// The stored events [`evidence_of`] names, from the same snapshot.
    pub evidence: Vec<model::EvidenceEvent>,
    pub freshness: Freshness,
}

/// An outcome's evidence as (ledger sequence, role): the event that
/// created it, the one that voided it, each dispute's opening and decision.
pub fn evidence_of(o: &Outcome) -> Vec<(u64, &'static str)> {
    let mut out = vec![(o.created.sequence, "created")];
    out.extend(o.void.as_ref().map(|v| (v.sequence, "voided")));
    for d in &o.disputes {
        out.push((d.opened.sequence, "dispute_opened"));
        out.extend(d.decision.as_ref().map(|(decision, m, _)| {
            let role = match decision {
                Decision::Accepted => "dispute_accepted",
                Decision::Rejected => "dispute_rejected",
            };
            (m.sequence, role)
        }));
    }
    out
}

/// One outcome by id, under the version that governs it, with its
/// evidence: one snapshot when the model is current.
pub fn find(
    store: &Store,
    customer: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<Found>, OutcomesError> {
    let (found, freshness) = fresh(store, customer, |tx| {
        let Some(row) = model::by_id(tx, customer, id)? else {
            return Ok(None);
        };
        let outcome = now_of(&row, now).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sequences: Vec<u64> = evidence_of(&outcome.outcome).iter().map(|e| e.0).collect();
        let evidence = model::events_at(tx, customer, &sequences)?;
        Ok(Some((outcome, evidence)))
    })?;
    Ok(found.map(|(outcome, evidence)| Found {
        outcome,
        evidence,
        freshness,
    }))
}

/// Every outcome that has been disputed, under its governing version.
pub fn disputed(
    store: &Store,
    customer: &str,
    now: DateTime<Utc>,
) -> Result<Vec<OutcomeNow>, OutcomesError> {
    fresh(store, customer, |tx| model::disputed(tx, customer))?
        .0
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
    let filter = OutcomeFilter {
        state: Some("disputed".into()),
        now_us: now.timestamp_micros(),
        ..Default::default()
    };
    Ok(fresh(store, customer, |tx| {
        Ok(OverviewCounts {
            created: model::created_per_day(
                tx,
                customer,
                period.start.timestamp_micros(),
                period.end.timestamp_micros(),
            )?,
            open_disputes: model::count(tx, customer, &filter, None)?,
        })
    })?
    .0)
}
