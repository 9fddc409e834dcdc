//! The server through real HTTP, on every backend.
//!
//! One test binary for the whole crate (each file a module): a test
//! binary links the whole crate and its dependencies, so one instead of
//! 8 saves that much linking per build.

mod agents;
mod api;
mod attribution;
mod billing;
mod common;
mod dashboard;
mod economics;
mod knowledge;
mod webhooks;
