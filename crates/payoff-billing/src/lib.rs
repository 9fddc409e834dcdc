//! The pure billing core of Payoff: contracts, outcomes and statements.
//!
//! A contract file becomes a [`Contract`] with compiled CEL rules; the
//! customer's events fold through it into [`Outcome`]s; a period closes
//! into a [`Statement`] that anyone holding the evidence [`Bundle`] can
//! recompute and [`verify`]. Nothing here performs I/O or reads a clock.

mod contract;
mod economics;
mod evidence;
mod holdout;
pub mod litellm;
mod money;
mod period;
mod projection;
mod record;
mod rules;
mod statement;

pub use contract::{
    parse_duration, Attribution, Bound, Contract, ContractError, ContractErrors, Credit,
    HoldoutBill, OutcomeRule, PercentOf, Price, ServiceLevel, Tier, TierMode, TypeFilter,
};
pub use economics::{
    cost_of, cost_of_call, Cost, CostLedger, CostReport, ModelCall, ModelPrice, OutcomeCost,
    PriceTable, Prices, COST_INCURRED, DEFAULT_PRICES, LLM_CALL,
};
pub use evidence::{
    bundle_events, canonical_bytes, check_signature, key_id, key_id_matches, parse_public_key,
    sign, stored_bytes, verify, AlreadySigned, Bundle, BundleContract, BundleEvent, Verified,
    VerifyError, BUNDLE_FORMAT,
};
pub use holdout::{holdout_lines, ArmFigures, AttributionFigures, SRM_THRESHOLD};
pub use money::{Currency, Rounding};
pub use period::{Cadence, Period};
pub use projection::{
    customer_of_id, dispute_window_end, outcome_id, Assignment, BillingEvent, Decision, Dispute,
    DisputeState, Mark, Outcome, OutcomeRules, OutcomeSlots, Projection, Projector, ServiceCounts,
    ServiceHit,
};
pub use record::{
    own_event, record_data, Assigned, DisputeDecided, DisputeOpened, Record, RecordError, Released,
    ASSIGNMENT, DISPUTE_ACCEPTED, DISPUTE_OPENED, DISPUTE_REJECTED, PAYOFF_SOURCE, RECORD_TYPES,
    RELEASE,
};
pub use statement::{
    compute, compute_with_outcomes, period_outcomes, periods_before, rfc3339, statement_id,
    version_for, CloseError, CloseInput, ContractRef, ContractVersion, Earlier, EarlierLines,
    EventSource, HeadRef, KeptOutcomes, Line, LineKind, OutcomeSink, PeriodOutcomes, Signature,
    Statement,
};

pub mod attribution;
