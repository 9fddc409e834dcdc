//! Folding new events into the read model.
//!
//! Each (customer, contract version) fold reads the events after its
//! checkpoint, a bounded batch per transaction, asks billing's
//! [`OutcomeRules`] which outcomes each event touches, loads those rows
//! only, applies the events to them in ledger order, and writes back the
//! rows that changed with the new checkpoint. The same rules drive the
//! close's in-memory projection, so the two cannot disagree on a rule;
//! [`crate::verify`] checks that they agree on the data.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use payoff_billing::{
    BillingEvent, Outcome, OutcomeRules, OutcomeSlots, Period, Statement, TypeFilter,
};
use payoff_store::outcomes::{self as model, OutcomeRow};
use payoff_store::sql::Sql;
use payoff_store::{Store, StoreError};

use crate::row::{from_row, to_row, Order};
use crate::{OutcomesError, Versions};

/// Ledger sequences one transaction of a fold covers at most: bounds the
/// memory and the lock time of a step whatever the ledger's size.
pub const BATCH_SEQUENCES: u64 = 20_000;

/// The fold that records which statements billed or credited outcomes
/// keeps its checkpoint (statements applied) under this version number;
/// contract versions count from 1.
const BILLING_FOLD: u32 = 0;

/// Where one fold stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub version: u32,
    pub applied: u64,
    pub head: u64,
}

/// The outcomes one batch touches, as loaded, and as the events leave them.
struct Slots {
    loaded: HashMap<(usize, String), Outcome>,
    now: HashMap<(usize, String), Outcome>,
}

impl OutcomeSlots for Slots {
    fn slot(&mut self, kind: usize, subject: &str) -> Option<&mut Outcome> {
        // Keys are few per batch; building the owned key is cheaper than
        // a second map keyed by borrowed parts.
        self.now.get_mut(&(kind, subject.to_owned()))
    }

    fn create(&mut self, outcome: Outcome) {
        let key = (outcome.kind, outcome.subject.clone());
        debug_assert!(!self.now.contains_key(&key));
        self.now.insert(key, outcome);
    }
}

/// Events a read folds itself at most per fold before answering: a fold
/// further behind (a new contract version being built over a long ledger)
/// is left to the background projector, and the read is answered from the
/// version before it and says so ([`crate::Freshness`]).
pub const READ_LAG_MAX: u64 = BATCH_SEQUENCES;

/// How far a catch-up goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every fold up to the head: the background projector, a rebuild.
    All,
    /// Folds at most [`READ_LAG_MAX`] events behind: a read, whose cost
    /// must not depend on the ledger's size.
    Near,
}

/// Brings the folds of `customer` up to its ledger head as it is now,
/// reporting each step. Does nothing (one read) when the model is current.
pub fn catch_up(
    store: &Store,
    customer: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), OutcomesError> {
    catch_up_within(store, customer, Reach::All, progress)
}

/// [`catch_up`] within a reach.
pub fn catch_up_within(
    store: &Store,
    customer: &str,
    reach: Reach,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), OutcomesError> {
    let versions = match Versions::load(store, customer) {
        Ok(v) => v,
        Err(OutcomesError::NoContract(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some(Lags {
        folds: lags,
        statements_behind,
    }) = lags(store, customer, &versions)?
    else {
        return Ok(());
    };
    let mut folded = 0;
    for ((stored, contract), lag) in versions.stored.iter().zip(&versions.contracts).zip(lags) {
        if reach == Reach::Near && lag > READ_LAG_MAX {
            continue;
        }
        folded += lag;
        let rules = OutcomeRules::new(customer, contract);
        let filter = TypeFilter::of(&[contract]);
        let types = filter.types();
        loop {
            // The batch is read and folded on a snapshot, outside the
            // write lock (SQLite has one writer: a fold holding it while it
            // parses 20,000 events stalled ingest); the write applies it
            // only if no fold moved meanwhile, else the step starts again
            // from where the other one left the model.
            let plan = store.read(|tx| {
                plan_step(
                    tx,
                    customer,
                    &versions,
                    stored.version,
                    &rules,
                    types.as_deref(),
                )
            })?;
            let Some(step) = store.write(|tx| commit_step(tx, customer, stored.version, &plan))?
            else {
                continue;
            };
            progress(step);
            if step.applied >= step.head {
                break;
            }
        }
    }
    if statements_behind {
        // Only then: on SQLite every write is a durable commit, and a pass
        // runs after every ingested batch.
        store.write(|tx| apply_statements(tx, customer))?;
    }
    if folded >= BATCH_SEQUENCES {
        // Many rows changed at once (a build, a rebuild, a burst):
        // planners should see the model as it now is.
        store.write(model::refresh_statistics)?;
    }
    Ok(())
}

/// How far a customer's model trails its ledger and statements.
struct Lags {
    /// Events each contract version's fold trails the head by.
    folds: Vec<u64>,
    /// Some closed statement is not yet recorded on its outcomes.
    statements_behind: bool,
}

/// What a snapshot shows of a customer's model: the ledger head, each
/// fold's checkpoint and how many statements there are. Read in the same
/// snapshot as an answer, it says whether the answer is current.
pub(crate) struct Seen {
    pub head: u64,
    /// (version, events applied, ready) of each fold.
    pub at: Vec<(u32, u64, bool)>,
    statements: u64,
}

impl Seen {
    pub(crate) fn read(tx: &mut dyn Sql, customer: &str) -> Result<Seen, StoreError> {
        Ok(Seen {
            head: model::ledger_head(tx, customer)?,
            at: model::checkpoints(tx, customer)?,
            statements: model::statement_count(tx, customer)?,
        })
    }

    /// (events applied, ready) of `version`'s fold.
    pub(crate) fn fold(&self, version: u32) -> (u64, bool) {
        self.at
            .iter()
            .find(|a| a.0 == version)
            .map_or((0, false), |a| (a.1, a.2))
    }

    /// How far each fold trails the ledger head, or `None` when every fold
    /// is at the head and ready and every statement applied.
    fn lags(&self, versions: &Versions) -> Option<Lags> {
        let statements_behind = !self
            .at
            .iter()
            .any(|&(v, applied, _)| v == BILLING_FOLD && applied >= self.statements);
        let mut current = !statements_behind;
        let folds = versions
            .stored
            .iter()
            .map(|s| {
                let (applied, ready) = self.fold(s.version);
                current &= ready && applied >= self.head;
                self.head.saturating_sub(applied)
            })
            .collect();
        (!current).then_some(Lags {
            folds,
            statements_behind,
        })
    }

    /// Whether the model is current: nothing to fold, nothing to apply.
    pub(crate) fn current(&self, versions: &Versions) -> bool {
        self.lags(versions).is_none()
    }
}

/// One read: how far each fold trails the ledger head (see [`Seen::lags`]).
fn lags(store: &Store, customer: &str, versions: &Versions) -> Result<Option<Lags>, StoreError> {
    Ok(store.read(|tx| Seen::read(tx, customer))?.lags(versions))
}

/// One step of a fold, computed on a snapshot: what to write, and the
/// checkpoints it was computed from.
struct Plan {
    /// Every fold's (version, sequence, ready) as the step saw them, this
    /// fold's included even before it has a checkpoint row.
    folds: Vec<(u32, u64, bool)>,
    up_to: u64,
    head: u64,
    was_ready: bool,
    ready_now: bool,
    governed: Vec<model::Governed>,
    service: Vec<(u32, String, u64, u64)>,
    changed: Vec<OutcomeRow>,
}

/// Reads the next batch of one fold and folds it, writing nothing.
fn plan_step(
    tx: &mut dyn Sql,
    customer: &str,
    versions: &Versions,
    version: u32,
    rules: &OutcomeRules<'_>,
    types: Option<&[&str]>,
) -> Result<Plan, StoreError> {
    let mut folds = model::checkpoints(tx, customer)?;
    if !folds.iter().any(|f| f.0 == version) {
        folds.push((version, 0, false));
        folds.sort_unstable();
    }
    let (at, was_ready) = folds
        .iter()
        .find(|f| f.0 == version)
        .map(|f| (f.1, f.2))
        .expect("added above");
    let head = model::ledger_head(tx, customer)?;
    let up_to = head.min(at + BATCH_SEQUENCES);
    let ready_now = was_ready || up_to >= head;
    // Which version's rows govern each stretch of maturity, with this
    // fold's readiness as it is at the end of this step.
    let governed = versions
        .governed(&|v| (v == version && ready_now) || folds.iter().any(|f| f.0 == v && f.2));
    let (service, changed) = if at >= head {
        (Vec::new(), Vec::new())
    } else {
        fold_batch(tx, customer, version, rules, types, (at, up_to), &governed)?
    };
    Ok(Plan {
        folds,
        up_to: up_to.max(at),
        head,
        was_ready,
        ready_now,
        governed,
        service,
        changed,
    })
}

/// Writes a planned step if every fold is still where the plan saw it;
/// `None` (nothing written) when one moved.
fn commit_step(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    plan: &Plan,
) -> Result<Option<Progress>, StoreError> {
    model::lock_checkpoint(tx, customer, version)?;
    if model::lock_all(tx, customer)? != plan.folds {
        return Ok(None);
    }
    model::add_service_counts(tx, customer, version, &plan.service)?;
    model::upsert(tx, &plan.changed.iter().collect::<Vec<_>>())?;
    model::set_checkpoint(tx, customer, version, plan.up_to, plan.ready_now)?;
    if plan.ready_now && !plan.was_ready {
        // Built: the stretches it governs are handed over at once, so a
        // read sees the previous version's rows or this one's, never both.
        for stretch in plan.governed.iter().filter(|g| g.version == version) {
            model::govern(tx, customer, stretch)?;
        }
    }
    Ok(Some(Progress {
        version,
        applied: plan.up_to,
        head: plan.head,
    }))
}

/// Applies the events of `(after, up_to]` to the outcomes they touch:
/// the service-level counts they add and the rows they change.
fn fold_batch(
    tx: &mut dyn Sql,
    customer: &str,
    version: u32,
    rules: &OutcomeRules<'_>,
    types: Option<&[&str]>,
    (after, up_to): (u64, u64),
    governed: &[model::Governed],
) -> Result<FoldedBatch, StoreError> {
    let mut events = Vec::new();
    let mut unreadable = None;
    // Service-level counts by (level, period), added to the kept ones in
    // this transaction: each event counts once, in the period of its time.
    let cadence = rules.contract().cadence;
    let mut service: BTreeMap<(u32, String), (u64, u64)> = BTreeMap::new();
    model::events_between(tx, customer, after, up_to, types, &mut |sequence, body| {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(value) => {
                if let Some(e) = BillingEvent::from_json(sequence, &value) {
                    for hit in rules.service_hits(&e) {
                        let period = Period::containing(cadence, e.time).to_string();
                        let counts = service.entry((hit.level as u32, period)).or_default();
                        counts.0 += u64::from(hit.numerator);
                        counts.1 += u64::from(hit.denominator);
                    }
                    if rules.wants(&e) {
                        events.push(e);
                    }
                }
            }
            Err(e) => {
                unreadable.get_or_insert(format!("event {sequence} is not JSON: {e}"));
            }
        }
        Ok(())
    })?;
    if let Some(e) = unreadable {
        return Err(StoreError::Corrupt(e));
    }
    let deltas: Vec<(u32, String, u64, u64)> = service
        .into_iter()
        .map(|((level, period), (n, d))| (level, period, n, d))
        .collect();
    let touches: Vec<Vec<(usize, String)>> = events.iter().map(|e| rules.touches(e)).collect();
    let keys: BTreeSet<&(usize, String)> = touches.iter().flatten().collect();
    let key_refs: Vec<(u32, &str)> = keys.iter().map(|(k, s)| (*k as u32, s.as_str())).collect();
    let mut slots = Slots {
        loaded: HashMap::new(),
        now: HashMap::new(),
    };
    let mut orders: HashMap<(usize, String), Order> = HashMap::new();
    let mut loaded_orders: HashMap<(usize, String), Order> = HashMap::new();
    for row in model::load(tx, customer, version, &key_refs)? {
        let outcome = from_row(&row).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let key = (outcome.kind, outcome.subject.clone());
        let order = Order {
            touched_seq: row.touched_seq,
            touched_us: row.touched_us,
            disorder_us: row.disorder_us,
        };
        orders.insert(key.clone(), order);
        loaded_orders.insert(key.clone(), order);
        slots.loaded.insert(key.clone(), outcome.clone());
        slots.now.insert(key, outcome);
    }
    for (e, touched) in events.iter().zip(&touches) {
        rules.apply(e, &mut slots);
        let at = e.time.timestamp_micros();
        for key in touched.iter().filter(|k| slots.now.contains_key(*k)) {
            orders
                .entry(key.clone())
                .and_modify(|o| o.touch(e.sequence, at))
                .or_insert(Order {
                    touched_seq: e.sequence,
                    touched_us: at,
                    disorder_us: None,
                });
        }
    }
    let changed: Vec<OutcomeRow> = slots
        .now
        .iter()
        .filter(|(key, o)| {
            slots.loaded.get(*key) != Some(*o) || loaded_orders.get(*key) != orders.get(*key)
        })
        .map(|(key, o)| {
            let us = o.matures_at.timestamp_micros();
            let governs = governed
                .iter()
                .any(|g| g.version == version && g.from_us <= us && us < g.until_us);
            let name = &rules.contract().outcomes[o.kind].name;
            to_row(customer, version, o, name, governs, orders[key])
        })
        .collect();
    Ok((deltas, changed))
}

/// Service-level deltas (level, period, numerator, denominator) and rows.
type FoldedBatch = (Vec<(u32, String, u64, u64)>, Vec<OutcomeRow>);

/// Records, from the statements closed since the last time, which
/// statement billed or took back each outcome. Idempotent: a statement
/// applied twice changes nothing.
fn apply_statements(tx: &mut dyn Sql, customer: &str) -> Result<(), StoreError> {
    let done = model::lock_checkpoint(tx, customer, BILLING_FOLD)?;
    let mut applied = 0;
    let mut bodies = Vec::new();
    model::statements_from(tx, customer, done, &mut |body| {
        bodies.push(body);
        Ok(())
    })?;
    for body in bodies {
        let s: Statement = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("a statement of {customer}: {e}")))?;
        for line in &s.lines {
            let taking_back = line.quantity.is_sign_negative();
            if !taking_back && line.outcome.is_none() {
                continue;
            }
            model::record_billing(tx, customer, &line.outcomes, &s.id, taking_back)?;
        }
        applied += 1;
    }
    model::set_checkpoint(tx, customer, BILLING_FOLD, done + applied, true)
}

/// Forgets the read model of `customer` (every fold, or one version's)
/// and builds it again from the ledger, reporting progress. A crash part
/// way leaves a consistent model at the last committed batch, which the
/// next catch-up continues from.
pub fn rebuild(
    store: &Store,
    customer: &str,
    version: Option<u32>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), OutcomesError> {
    store.write(|tx| model::clear(tx, customer, version))?;
    catch_up(store, customer, progress)
}
