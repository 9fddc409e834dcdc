//! The deep check: the model against a full replay of the ledger.
//!
//! The replay is the independent computation (the close and `payoff
//! verify` use it); a difference means the model must be rebuilt, and
//! names the outcome so the cause can be found.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use payoff_billing::{BillingEvent, Projector, TypeFilter};
use payoff_store::outcomes as model;
use payoff_store::{Store, StoreError};

use crate::row::from_row;
use crate::{catch_up, OutcomesError, Versions};

/// One outcome on which the model and the replay disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub version: u32,
    pub outcome: String,
    pub what: String,
}

/// Compares every fold of `customer` with a replay of its events up to the
/// head the fold has applied. Empty when they agree.
pub fn deep(store: &Store, customer: &str) -> Result<Vec<Mismatch>, OutcomesError> {
    catch_up(store, customer, &mut |_| {})?;
    let versions = match Versions::load(store, customer) {
        Ok(v) => v,
        Err(OutcomesError::NoContract(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let at = store.read(|tx| model::checkpoints(tx, customer))?;
    let governed = versions.governed(&|v| at.iter().any(|a| a.0 == v && a.2));
    let mut out = Vec::new();
    for (stored, contract) in versions.stored.iter().zip(&versions.contracts) {
        let version = stored.version;
        let up_to = at.iter().find(|a| a.0 == version).map_or(0, |a| a.1);
        let mut projector = Projector::new(customer, contract, DateTime::<Utc>::MAX_UTC, None);
        let filter = TypeFilter::of(&[contract]);
        let mut unreadable = None;
        store.scan_bodies(
            customer,
            up_to,
            filter.types().as_deref(),
            |sequence, body| {
                match serde_json::from_slice::<serde_json::Value>(body) {
                    Ok(v) => {
                        if let Some(e) = BillingEvent::from_json(sequence, &v) {
                            projector.feed(&e);
                        }
                    }
                    Err(e) => {
                        unreadable.get_or_insert(format!("event {sequence} is not JSON: {e}"));
                    }
                }
                Ok(())
            },
        )?;
        if let Some(e) = unreadable {
            return Err(OutcomesError::Corrupt(e));
        }
        let mut replayed: HashMap<String, _> = projector
            .finish()
            .outcomes
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        let mut mismatch = |outcome: &str, what: String| {
            out.push(Mismatch {
                version,
                outcome: outcome.to_owned(),
                what,
            })
        };
        store.read(|tx| {
            model::scan(tx, customer, version, &mut |row| {
                let kept = from_row(&row).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let governs = governed.iter().any(|g| {
                    g.version == version
                        && g.from_us <= row.matures_us
                        && row.matures_us < g.until_us
                });
                if governs != row.governs {
                    mismatch(
                        &row.id,
                        format!(
                            "shown: {}, but the version governing it is {}",
                            row.governs,
                            if governs { "this one" } else { "another" }
                        ),
                    );
                }
                match replayed.remove(&row.id) {
                    None => mismatch(&row.id, "in the model but not in the replay".into()),
                    Some(o) if o != kept => {
                        mismatch(&row.id, format!("the model has {kept:?}, the replay {o:?}"))
                    }
                    Some(_) => {}
                }
                Ok(())
            })
        })?;
        let mut missing: Vec<String> = replayed.into_keys().collect();
        missing.sort();
        for id in missing {
            mismatch(&id, "in the replay but not in the model".into());
        }
    }
    Ok(out)
}
