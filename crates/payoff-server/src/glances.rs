//! Keeps the dashboard Overview's figures fresh in the background
//! (`payoff_accounting::glance`): a look that finds them stale answers
//! them as they are and asks here for a refresh, so the person waits for
//! one row, not for a million outcomes to be priced.
//!
//! At most one refresh of a period runs at a time on a node (a refresh
//! at that scale takes seconds of a core; more looks meanwhile ask for
//! the same one). Nodes sharing a database each refresh what their own
//! looks asked for; the store keeps the figures computed last.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use crate::{AppState, Background};

/// A customer and a period.
type Key = (String, String);

/// The periods asked for: being refreshed (`Background::Running`) or
/// waiting for [`tick`] (`Background::Manual`).
#[derive(Default)]
pub struct Refreshes {
    wanted: Mutex<BTreeSet<Key>>,
}

impl Refreshes {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeSet<Key>) -> T) -> T {
        f(&mut self.wanted.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Asks for `customer`'s figures of `period` to be computed again. With
/// `Background::Running` the refresh starts now unless one of that period
/// runs already; with `Background::Manual` it waits for [`tick`].
pub fn want(state: &AppState, customer: &str, period: &str) {
    let key = (customer.to_owned(), period.to_owned());
    if !state.glances.with(|w| w.insert(key.clone())) {
        return;
    }
    if state.config.background == Background::Running {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let done = Done(state, key);
            refresh(&done.0, &done.1);
        });
    }
}

/// Forgets a running refresh however it ends, so the next look may ask
/// again.
struct Done(AppState, Key);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.glances.with(|w| w.remove(&self.1));
    }
}

/// Refreshes every period asked for (`Background::Manual`); returns how
/// many.
pub async fn tick(state: &AppState) -> usize {
    let keys = state.glances.with(std::mem::take);
    let count = keys.len();
    let state = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for key in &keys {
            refresh(&state, key);
        }
    })
    .await;
    count
}

/// A failed refresh leaves the figures as they were (still marked stale)
/// and is asked for again by the next look.
fn refresh(state: &AppState, (customer, period): &Key) {
    if let Err(error) =
        payoff_accounting::glance::refresh(&state.store, customer, period, state.now())
    {
        tracing::warn!(%customer, %period, %error, "overview figures could not be refreshed");
    }
}
