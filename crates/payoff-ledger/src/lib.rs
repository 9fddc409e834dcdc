//! The pure core of the Payoff ledger: what an event is, how raw input
//! becomes a validated [`Event`], the canonical bytes that identify its
//! content, and the per-customer hash chain that makes tampering evident.
//!
//! Nothing here performs I/O or reads a clock: storage and HTTP call in.

mod calls;
mod canonical;
mod canonical_ser;
mod chain;
mod event;
mod http;
pub mod otlp;

pub use calls::{ModelCall, COST_INCURRED, LLM_CALL};
pub use canonical::{canonical_json, canonical_json_into};
pub use canonical_ser::{canonical_json_of, canonical_json_omitting, CanonicalError};
pub use chain::{verify_chain, ChainBreak, ChainLink, Head, GENESIS_HASH};
pub use event::{
    parse_event, parse_event_batch, validate_event, BatchError, Event, EventLimits, FieldError,
    CUSTOMER_EXTENSION,
};
pub use http::{decode_http, HttpDecodeError};
