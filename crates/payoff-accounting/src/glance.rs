//! A period at a glance, kept: the figures of the dashboard's Overview
//! and Economics pages (the statement or its preview, revenue, cost and
//! margin, outcomes per day, open disputes) as last computed, stored
//! beside the ledger head they reflect.
//!
//! Why: those figures price every outcome of the period. At a million
//! outcomes that takes seconds, and the Overview is the page a person
//! opens first and reloads. So a look answers from the kept figures when
//! they are current (same contract versions and statements, no newer
//! event, younger than [`Policy::max_age`]); when they are not, it
//! computes them again in the request if that was cheap the last time
//! ([`Policy::exact_below`]: a small customer always sees exact figures),
//! else it answers the kept ones marked stale, and the caller refreshes
//! them in the background ([`refresh`]). Figures are never shown over
//! another basis: a new contract version or a new statement makes the
//! look compute in the request.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use payoff_billing::{Period, Statement};
use payoff_store::{StatementSummary, Store, StoredGlance};
use serde::{Deserialize, Serialize};

use crate::billing::{BillingError, Versions};
use crate::economics::{self, Economics};

/// When kept figures are shown as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Figures that took less than this to compute are computed again in
    /// the request once stale; slower ones are shown stale and refreshed
    /// in the background.
    pub exact_below: Duration,
    /// Figures older than this are stale even without a newer event (an
    /// open period's outcomes mature as time passes).
    pub max_age: chrono::Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            exact_below: Duration::from_millis(250),
            max_age: chrono::Duration::seconds(60),
        }
    }
}

/// The figures of one period's Overview.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Glance {
    /// The stored statement of a closed period, else its preview; the
    /// lines keep their outcome hashes but not the ids (a million of them
    /// are not shown on a page).
    pub statement: Statement,
    /// Earlier open periods the preview assumes closed as previewed.
    pub assumed: Vec<String>,
    /// Revenue, cost and margin (shown to provider roles only).
    pub economics: Economics,
    /// Outcomes created in the period: (kind name, day of the period, count).
    pub created: Vec<(String, u64, u64)>,
    pub open_disputes: u64,
}

/// Figures with what they reflect.
#[derive(Debug, Clone)]
pub struct Kept {
    pub glance: Glance,
    /// Every event up to this ledger sequence is counted.
    pub head: u64,
    pub computed_at: DateTime<Utc>,
    pub took: Duration,
}

/// What a look found.
#[derive(Debug)]
pub enum Look {
    /// Current figures (kept, or computed in this request).
    Current(Kept),
    /// Kept figures that newer events or time have passed: shown as they
    /// are, refreshed by the caller in the background. `behind` is how
    /// many events they do not count.
    Stale { kept: Kept, behind: u64 },
}

impl Look {
    /// The figures, and how many events they leave out when stale.
    pub fn split(self) -> (Kept, Option<u64>) {
        match self {
            Look::Current(kept) => (kept, None),
            Look::Stale { kept, behind } => (kept, Some(behind)),
        }
    }
}

/// What the figures are computed over besides the ledger: the contract
/// versions and the closed statements (closed in order, never changed,
/// so their count and the last id name them all).
fn basis(versions: &Versions, closed: &[StatementSummary]) -> String {
    let mut basis = String::new();
    for s in &versions.stored {
        basis.push_str(&format!("v{}:{}:{},", s.version, s.sha256, s.effective));
    }
    basis.push_str(&format!(
        "s{}:{}",
        closed.len(),
        closed.last().map_or("", |s| s.id.as_str())
    ));
    basis
}

/// The Overview figures of `period`, as `policy` allows them to be kept.
pub fn look(
    store: &Store,
    customer: &str,
    versions: &Versions,
    closed: &[StatementSummary],
    period: Period,
    now: DateTime<Utc>,
    policy: Policy,
) -> Result<Look, BillingError> {
    let basis = basis(versions, closed);
    let head = store.head(customer)?.map_or(0, |h| h.sequence);
    let kept = store
        .glance(customer, &period.to_string())?
        .filter(|g| g.basis == basis)
        .and_then(|g| parse(g).ok());
    match kept {
        Some(k) if k.head >= head && now - k.computed_at < policy.max_age => Ok(Look::Current(k)),
        Some(k) if k.took >= policy.exact_below => Ok(Look::Stale {
            behind: head.saturating_sub(k.head),
            kept: k,
        }),
        _ => compute(store, customer, versions, &basis, head, period, now).map(Look::Current),
    }
}

/// Computes the figures of `period` again and keeps them: the
/// background half of a [`Look::Stale`].
pub fn refresh(
    store: &Store,
    customer: &str,
    period: &str,
    now: DateTime<Utc>,
) -> Result<Kept, BillingError> {
    let versions = Versions::load(store, customer)?;
    let closed = store.statement_summaries(customer)?;
    let period = versions.period(period)?;
    let head = store.head(customer)?.map_or(0, |h| h.sequence);
    compute(
        store,
        customer,
        &versions,
        &basis(&versions, &closed),
        head,
        period,
        now,
    )
}

/// `head` is read before anything is computed, so an event appended
/// meanwhile is never taken as counted.
fn compute(
    store: &Store,
    customer: &str,
    versions: &Versions,
    basis: &str,
    head: u64,
    period: Period,
    now: DateTime<Utc>,
) -> Result<Kept, BillingError> {
    let started = Instant::now();
    let (preview, e) = economics::preview_with_economics(store, customer, versions, period, now)?;
    let counts = payoff_outcomes::overview(store, customer, period, now)?;
    let mut statement = preview.statement;
    for line in &mut statement.lines {
        line.outcomes = Vec::new();
    }
    let glance = Glance {
        statement,
        assumed: preview.assumed,
        economics: e,
        created: counts.created,
        open_disputes: counts.open_disputes,
    };
    let kept = Kept {
        glance,
        head,
        computed_at: now,
        took: started.elapsed(),
    };
    store.put_glance(&StoredGlance {
        customer: customer.to_owned(),
        period: period.to_string(),
        basis: basis.to_owned(),
        head,
        computed_at: now,
        took_us: u64::try_from(kept.took.as_micros()).unwrap_or(u64::MAX),
        body: serde_json::to_string(&kept.glance)
            .map_err(|e| BillingError::Corrupt(format!("glance: {e}")))?,
    })?;
    Ok(kept)
}

/// Kept figures that no longer parse (written by another build) are
/// computed again rather than shown.
fn parse(g: StoredGlance) -> Result<Kept, serde_json::Error> {
    Ok(Kept {
        glance: serde_json::from_str(&g.body)?,
        head: g.head,
        computed_at: g.computed_at,
        took: Duration::from_micros(g.took_us),
    })
}
