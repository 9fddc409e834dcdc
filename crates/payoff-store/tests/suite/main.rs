//! The store on every backend: the ledger, audit chain, sessions, webhooks,
//! kept Overview figures.
//!
//! One test binary for the whole crate (each file a module): a test
//! binary links the whole crate and its dependencies, so one instead of
//! 4 saves that much linking per build.

mod audit;
mod glances;
mod ledger;
mod sessions;
mod webhooks;
