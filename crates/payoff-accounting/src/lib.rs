//! The use-cases over a customer's books, shared by the two front doors:
//! the HTTP API and dashboard (`payoff-server`) and the command line
//! (`payoff`), so that closing a period never needs the HTTP crate.
//!
//! Each function takes the [`payoff_store::Store`] and the business time
//! (`now`) it acts at, runs the pure billing core over what it loads, and
//! returns values or a [`billing::BillingError`] a caller can act on; none
//! knows of requests, status codes or the terminal. Everything here is
//! blocking: the server calls it from its blocking pool.
//!
//! - [`billing`]: contract versions (upload, load, compile once), periods
//!   closed, signed and stored; previews; outcomes as they stand now;
//!   evidence bundles; re-computation from the ledger.
//! - [`economics`]: price tables, the cost of a period attributed to its
//!   outcomes, budget checks, ROI against a licence.
//! - [`glance`]: a period's Overview figures, kept with the ledger head
//!   they reflect, so a look does not price a million outcomes again.

pub mod billing;
pub mod customers;
pub mod disputes;
pub mod economics;
pub mod glance;
