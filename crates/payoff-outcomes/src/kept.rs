//! The read model standing in for the outcome part of a close's replay.
//!
//! A close cut at a time needs each version's outcomes as a replay of the
//! events before the cut leaves them. A fold has applied every event, in
//! ledger order; when the events of an outcome arrived in time order
//! around the cut, the replay saw a prefix of them, so the fold's row with
//! every mark at or after the cut taken off is exactly the replay's
//! outcome. A row touched out of time order across the cut
//! (`disorder_us`) cannot say, and the close replays instead.

use chrono::{DateTime, Utc};
use payoff_billing::{KeptOutcomes, Outcome};
use payoff_ledger::Head;
use payoff_store::outcomes as model;
use payoff_store::{Store, StoreError};

use crate::fold::{catch_up_within, Reach};
use crate::row::into_outcome;
use crate::{OutcomesError, Versions};

/// A customer's read model pinned at one ledger head, every fold at it.
pub struct Kept<'s> {
    store: &'s Store,
    customer: String,
    head: Head,
}

impl<'s> Kept<'s> {
    /// Brings the model near the head and pins the head every fold of the
    /// customer has reached, with its chain hash; `None` when the folds
    /// are not all ready at one head (a version being built, events
    /// landing meanwhile): then the close replays.
    pub fn pin(store: &'s Store, customer: &str) -> Result<Option<Kept<'s>>, OutcomesError> {
        catch_up_within(store, customer, Reach::Near, &mut |_| {})?;
        let versions = match Versions::load(store, customer) {
            Ok(v) => v,
            Err(OutcomesError::NoContract(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let pinned = store.read(|tx| {
            let Some((sequence, hash)) = model::ledger_head_ref(tx, customer)? else {
                return Ok(None);
            };
            let at = model::checkpoints(tx, customer)?;
            let all_there = versions.stored.iter().all(|v| {
                at.iter()
                    .any(|&(version, s, ready)| version == v.version && s == sequence && ready)
            });
            Ok(all_there.then_some((sequence, hash)))
        })?;
        let Some((sequence, hash)) = pinned else {
            return Ok(None);
        };
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| OutcomesError::Corrupt(format!("the chain hash of {customer}")))?;
        Ok(Some(Kept {
            store,
            customer: customer.to_owned(),
            head: Head { sequence, hash },
        }))
    }

    /// The ledger head the close must be cut at to read this model.
    pub fn head(&self) -> Head {
        self.head
    }
}

impl KeptOutcomes for Kept<'_> {
    fn outcomes(
        &self,
        version: u32,
        (from, cut): (DateTime<Utc>, DateTime<Utc>),
        sink: &mut dyn FnMut(Outcome),
    ) -> Result<bool, String> {
        self.store
            .read(|tx| {
                model::kept_rows(
                    tx,
                    &self.customer,
                    version,
                    self.head.sequence,
                    (from.timestamp_micros(), cut.timestamp_micros()),
                    &mut |row| {
                        let o =
                            into_outcome(row).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        sink(as_of(o, cut));
                        Ok(())
                    },
                )
            })
            .map_err(|e| e.to_string())
    }
}

/// The outcome as the events before `cut` left it: the void and the
/// disputes and decisions recorded at or after it taken off. Exact for a
/// row whose events arrived in time order around the cut, where those
/// marks are exactly what the later events added.
fn as_of(mut o: Outcome, cut: DateTime<Utc>) -> Outcome {
    debug_assert!(
        o.created.time < cut,
        "rows created after the cut are not given"
    );
    if o.void.as_ref().is_some_and(|v| v.time >= cut) {
        o.void = None;
    }
    o.disputes.retain(|d| d.opened.time < cut);
    for d in &mut o.disputes {
        if d.decision.as_ref().is_some_and(|(_, m, _)| m.time >= cut) {
            d.decision = None;
        }
    }
    o
}
