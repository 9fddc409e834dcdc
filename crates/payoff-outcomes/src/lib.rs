//! The outcomes of every customer, kept as a read model that follows the
//! ledger, so that listing outcomes, showing one, or a dashboard page
//! costs the same at ten million events as at ten thousand.
//!
//! Each contract version of a customer is its own fold: billing's
//! [`OutcomeRules`](payoff_billing::OutcomeRules) applied to the events
//! after the fold's checkpoint, touching only the outcomes those events
//! name ([`fold`]). Rows and checkpoint move in one transaction, so a crash
//! or a second node never applies an event twice. Reads ([`read`]) show
//! each outcome under the version that governs the period it matures in,
//! and first bring the model up to the ledger head they were asked at, so
//! a client reads its own writes without waiting.
//!
//! The full replay stays as the independent check: [`verify`] compares
//! every row with `Projection::run` over the same events.

pub mod fold;
mod kept;
pub mod read;
mod row;
pub mod verify;
mod versions;

pub use fold::{catch_up, rebuild, Progress};
pub use kept::Kept;
pub use read::{
    disputed, evidence_of, find, overview, page, state_of, Found, Freshness, OutcomeNow,
    OverviewCounts, Page, PageQuery,
};
pub use versions::{compiled, Versions};

use payoff_store::StoreError;

/// Why the read model cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum OutcomesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("customer \"{0}\" has no contract yet: upload one first")]
    NoContract(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// A period name that is not one of the customer's cadence.
    #[error("{0}")]
    BadPeriod(String),
}
