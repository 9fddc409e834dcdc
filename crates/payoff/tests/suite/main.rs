//! The `payoff` binary end to end: commands, the control plane, crashes, the demo.
//!
//! One test binary for the whole crate (each file a module): a test
//! binary links the whole crate and its dependencies, so one instead of
//! 4 saves that much linking per build.

mod cli;
mod common;
mod control;
mod crash;
mod demo;
mod disk;
