//! Keeps every customer's outcome read model near the ledger head in the
//! background, so that reads (which catch up first) rarely have work to do.
//! Ingest wakes it; a poll covers events appended by other nodes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::AppState;

/// How often a pass runs when nothing wakes it: other nodes append too.
const POLL: Duration = Duration::from_secs(1);

/// One pass: every customer's folds brought up to its head. Returns the
/// customers that failed, with why (one customer's bad data never stops
/// the others).
pub fn pass(store: &payoff_store::Store) -> Vec<(String, String)> {
    pass_measured(store).0
}

/// [`pass`], and the most events any customer's model was behind when a
/// batch of its catch-up was applied (0 when every one was current).
fn pass_measured(store: &payoff_store::Store) -> (Vec<(String, String)>, u64) {
    let customers = match store.customers() {
        Ok(c) => c,
        Err(e) => return (vec![("*".into(), e.to_string())], 0),
    };
    let mut behind = 0;
    let failed = customers
        .iter()
        .filter_map(|c| {
            payoff_outcomes::catch_up(store, &c.id, &mut |p| {
                behind = behind.max(p.head.saturating_sub(p.applied));
            })
            .err()
            .map(|e| (c.id.clone(), e.to_string()))
        })
        .collect();
    (failed, behind)
}

pub async fn run(state: AppState, stop: Arc<Notify>) {
    loop {
        let store = state.store.clone();
        match tokio::task::spawn_blocking(move || pass_measured(&store)).await {
            Ok((failed, behind)) => {
                state
                    .metrics
                    .outcome_model_behind
                    .set(i64::try_from(behind).unwrap_or(i64::MAX));
                // One customer's bad data keeps only that customer behind
                // (its reads say so); the node is ready once every
                // customer had its pass. A database that does not answer
                // (`*`) keeps it not ready.
                if !failed.iter().any(|(c, _)| c == "*") {
                    state.startup.outcomes.send_if_modified(|p| {
                        let first = *p == crate::startup::Phase::Pending;
                        if first {
                            *p = crate::startup::Phase::Done(failed.len());
                        }
                        first
                    });
                }
                for (customer, error) in failed {
                    tracing::error!(%customer, %error, "outcome read model could not catch up");
                }
            }
            Err(e) => tracing::error!(error = %e, "outcome projector task failed"),
        }
        tokio::select! {
            _ = stop.notified() => return,
            _ = state.projector_due.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
