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
use payoff_billing::{KeptOutcomes, Outcome, OutcomeSink, ServiceCounts};
use payoff_ledger::Head;
use payoff_store::outcomes as model;
use std::sync::mpsc;

use payoff_store::outcomes::OutcomeRow;
use payoff_store::{Store, StoreError};

use crate::fold::{catch_up_within, Reach};
use crate::row::into_outcome;
use crate::{OutcomesError, Versions};

/// Rows handed to the converting thread at a time.
const BATCH: usize = 1024;

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
        (from, until): (DateTime<Utc>, DateTime<Utc>),
        cut: DateTime<Utc>,
        sink: &mut dyn OutcomeSink,
    ) -> Result<bool, String> {
        let matures = (from.timestamp_micros(), until.timestamp_micros());
        let cut_us = cut.timestamp_micros();
        // One snapshot: the fold's checkpoint, its order marks and its rows.
        // The database is read on this thread while a second one turns rows
        // into outcomes (half the time of a close over a million on two
        // cores); outcomes come back in order to this thread's sink.
        self.store
            .read_scan(|tx| {
                let Some(span) = model::kept_bound(
                    tx,
                    &self.customer,
                    version,
                    self.head.sequence,
                    cut_us,
                    matures,
                )?
                else {
                    return Ok(false);
                };
                sink.reserve(span.rows);
                std::thread::scope(|scope| {
                    let (rows, to_convert) = mpsc::sync_channel::<Vec<OutcomeRow>>(8);
                    // Unbounded back: the converter never waits on this
                    // thread, which drains it as it reads.
                    let (converted, done) = mpsc::channel::<Result<Vec<Outcome>, String>>();
                    scope.spawn(move || {
                        for batch in to_convert {
                            let outcomes = batch
                                .into_iter()
                                .map(|row| into_outcome(row).map(|o| as_of(o, cut)))
                                .collect::<Result<Vec<_>, _>>()
                                .map_err(|e| e.to_string());
                            if converted.send(outcomes).is_err() {
                                return;
                            }
                        }
                    });
                    let mut take = |batch: Result<Vec<Outcome>, String>| {
                        batch
                            .map(|outcomes| outcomes.into_iter().for_each(|o| sink.take(o)))
                            .map_err(StoreError::Corrupt)
                    };
                    let mut batch = Vec::with_capacity(BATCH);
                    model::kept_rows(
                        tx,
                        &self.customer,
                        version,
                        cut_us,
                        matures,
                        span,
                        &mut |row| {
                            batch.push(row);
                            if batch.len() == BATCH {
                                rows.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                                    .map_err(|_| {
                                        StoreError::Stopped("the row converter stopped".into())
                                    })?;
                                while let Ok(outcomes) = done.try_recv() {
                                    take(outcomes)?;
                                }
                            }
                            Ok(())
                        },
                    )?;
                    if !batch.is_empty() {
                        rows.send(batch)
                            .map_err(|_| StoreError::Stopped("the row converter stopped".into()))?;
                    }
                    drop(rows);
                    for outcomes in done {
                        take(outcomes)?;
                    }
                    Ok::<(), StoreError>(())
                })?;
                Ok(true)
            })
            .map_err(|e| e.to_string())
    }

    fn untouched_since(
        &self,
        version: u32,
        (from, until): (DateTime<Utc>, DateTime<Utc>),
        (since_seq, since): (u64, DateTime<Utc>),
    ) -> Result<bool, String> {
        self.store
            .read(|tx| {
                model::untouched_since(
                    tx,
                    &self.customer,
                    version,
                    self.head.sequence,
                    (from.timestamp_micros(), until.timestamp_micros()),
                    (since_seq, since.timestamp_micros()),
                )
            })
            .map(|untouched| untouched == Some(true))
            .map_err(|e| e.to_string())
    }

    fn service_counts(
        &self,
        version: u32,
        period: &str,
        levels: usize,
    ) -> Result<Option<Vec<ServiceCounts>>, String> {
        self.service(version, period, levels)
            .map_err(|e| e.to_string())
    }
}

impl Kept<'_> {
    fn service(
        &self,
        version: u32,
        period: &str,
        levels: usize,
    ) -> Result<Option<Vec<ServiceCounts>>, StoreError> {
        let Some(kept) = self.store.read(|tx| {
            model::service_counts(tx, &self.customer, version, self.head.sequence, period)
        })?
        else {
            return Ok(None);
        };
        let mut counts = vec![ServiceCounts::default(); levels];
        for (level, numerator, denominator) in kept {
            // A level the contract does not have is a corrupt model.
            let c = counts.get_mut(level as usize).ok_or_else(|| {
                StoreError::Corrupt(format!("service level {level} of version {version}"))
            })?;
            *c = ServiceCounts {
                numerator,
                denominator,
            };
        }
        Ok(Some(counts))
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
