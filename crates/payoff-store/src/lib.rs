//! Durable storage for Payoff: the ledger, customers and API keys, in
//! embedded SQLite (the zero-setup default) or PostgreSQL (production and
//! multi-node). Both backends run the same algorithms; only SQL differs.
//!
//! Writes of events go through [`Ledger`], a single writer per process that
//! group-commits concurrent requests into one transaction and replies only
//! after that transaction is durable.

mod access;
mod actions;
mod agents;
mod append;
pub mod audit;
mod budgets;
mod contracts;
mod costs;
mod customers;
mod error;
mod events;
mod glances;
mod keys;
mod knowledge;
mod mcp;
mod migrations;
pub mod outcomes;
mod policies;
mod pool;
mod postgres;
mod prices;
pub mod scratch;
mod session;
pub mod sql;
mod sqlite;
mod statements;
mod store;
pub mod webhooks;

pub use access::{
    generate_key, hash_secret, parse_key, Customer, KeyInfo, NewKey, Principal, Role,
};
pub use actions::{OwnRecord, StoredActionRules};
pub use append::{AppendError, AppendRequest, EventStatus, Ledger, LedgerConfig, Routed};
pub use audit::{AuditEntry, AuditFilter, AuditRecord, AuditReport};
pub use costs::CostFact;
pub use error::StoreError;
pub use glances::StoredGlance;
pub use knowledge::KnowledgeChange;
pub use mcp::McpServer;
pub use session::{NewSession, IDLE as SESSION_IDLE};
pub use store::{
    AgentPause, Budget, ChainReport, EventFilter, EventPage, StatementSummary, Store,
    StoredContract, StoredEvent, StoredPolicy, StoredPriceTable, StoredStatement,
};
pub use webhooks::{ClaimLimits, DeliveryStatus, WebhookDelivery, WebhookSubscription};
