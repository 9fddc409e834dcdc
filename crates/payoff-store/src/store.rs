//! The storage facade: one API over SQLite and PostgreSQL.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use payoff_ledger::{verify_chain, ChainLink, Event, Head};
use serde::Serialize;

use crate::access::{
    generate_key, hash_secret, parse_key, Customer, KeyInfo, NewKey, Principal, Role,
};
use crate::actions::StoredActionRules;
use crate::append::{GroupWriter, Ledger, LedgerConfig};
use crate::audit::{verify_audit, AuditEntry, AuditFilter, AuditRecord, AuditReport};
use crate::costs::{CostFact, CostSink};
use crate::events::{stored_event, EVENT_COLUMNS};
use crate::session::{self, NewSession, SessionRow};
use crate::sql::Sql;
use crate::webhooks::{WebhookDelivery, WebhookSubscription};
use crate::StoreError;

/// An event as stored in a customer's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub customer: String,
    pub sequence: u64,
    /// Event time, or the time it was recorded when the event had none.
    pub time: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// RFC 8785 bytes of the event (see [`payoff_ledger::Event`]).
    pub canonical: Vec<u8>,
    pub hash: [u8; 32],
    /// The columns stored beside the bytes, checked by [`Store::verify`].
    pub source: String,
    pub id: String,
    pub event_type: String,
    pub subject: Option<String>,
}

/// Which events of one customer to list, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub customer: String,
    pub event_type: Option<String>,
    pub subject: Option<String>,
    /// Event time at or after.
    pub since: Option<DateTime<Utc>>,
    /// Event time strictly before.
    pub until: Option<DateTime<Utc>>,
    /// Only events after this sequence (the cursor of the previous page).
    pub after_sequence: Option<u64>,
    pub limit: usize,
}

/// One page of events and where the next one starts.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_cursor: Option<u64>,
}

/// The verification of one customer's chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub customer: String,
    pub events: u64,
    pub head_hash: String,
    /// The first broken link, in words; `None` when the chain is intact.
    pub broken: Option<String>,
}

/// One uploaded contract version: immutable once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredContract {
    pub customer: String,
    pub version: u32,
    /// The first period it governs, e.g. `2026-12`.
    pub effective: String,
    pub effective_start: DateTime<Utc>,
    pub sha256: String,
    /// The TOML text exactly as uploaded.
    pub body: String,
    pub uploaded_at: DateTime<Utc>,
}

/// A closed statement without its lines: what listing a customer's
/// periods and a close building on earlier ones read, so that neither
/// reads the signed bytes, which name every outcome billed (a million in
/// a large month). Kept in columns beside the body (migration 23).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementSummary {
    pub id: String,
    pub customer: String,
    pub period: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// The ledger sequence it was cut at.
    pub head: u64,
    pub currency: String,
    pub total: String,
    /// How many lines it has.
    pub lines: u64,
    pub issued_at: DateTime<Utc>,
}

/// One closed statement: the signed JSON, immutable once stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStatement {
    pub summary: StatementSummary,
    pub body: String,
}

/// One version of the model price table (TOML), immutable once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPriceTable {
    pub version: u32,
    pub effective: DateTime<Utc>,
    pub body: String,
    pub uploaded_at: DateTime<Utc>,
}

/// A spending limit of a customer (`agent` = `*`) or of one agent serving
/// it, per billing period, in USD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub customer: String,
    pub agent: String,
    pub limit: String,
    pub warn_at: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A kill switch that is on: `agent` takes no action for `customer`
/// (`*`: for every customer) until it is resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentPause {
    pub agent: String,
    pub customer: String,
    pub paused_by: String,
    pub paused_at: DateTime<Utc>,
}

/// One uploaded version of a customer's agent rules (Cedar): immutable
/// once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPolicy {
    pub customer: String,
    pub version: u32,
    pub sha256: String,
    /// The Cedar text exactly as uploaded.
    pub body: String,
    /// The key id that uploaded it.
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
}

/// Receives `(sequence, canonical bytes)` of each event a scan wants.
pub(crate) type BodySink<'a> = &'a mut dyn FnMut(u64, &[u8]) -> Result<(), StoreError>;

/// What each backend provides; [`Store`] adds the logic they share.
/// Besides running [`Sql`] (in a transaction, or one statement on its
/// own) for the repositories written once against it, only the append
/// paths (ledger, audit chain, statements) and the scans that stream a
/// chain, in each backend's own SQL.
pub(crate) trait Backend: Send + Sync {
    fn name(&self) -> &'static str;
    fn ping(&self) -> Result<(), StoreError>;
    /// Writes a consistent copy of the whole database to the new file `to`
    /// while writers go on; `None` when the database has its own tools
    /// (PostgreSQL: `pg_dump`).
    fn backup(&self, to: &Path) -> Option<Result<(), StoreError>>;
    /// Bytes free on the disk holding the database; `None` when the
    /// database is a server's (PostgreSQL), whose disk is not ours to see.
    fn free_space(&self) -> Option<Result<u64, StoreError>>;
    fn writer(&self) -> Result<Box<dyn GroupWriter>, StoreError>;
    fn scan_bodies(
        &self,
        customer: &str,
        up_to: u64,
        types: Option<&[&str]>,
        sink: BodySink<'_>,
    ) -> Result<(), StoreError>;
    fn scan_costs(
        &self,
        customer: &str,
        up_to: u64,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        sink: CostSink<'_>,
    ) -> Result<(), StoreError>;
    /// Runs `f` in one transaction: a write transaction (exclusive on
    /// SQLite, row locks on PostgreSQL) or a consistent read-only snapshot.
    /// Commits when `f` succeeds, rolls back when it fails.
    fn transaction(&self, write: bool, f: TxBody<'_>) -> Result<(), StoreError>;
    /// Runs `f`, one statement, outside any explicit transaction (the
    /// statement is its own). When a pooled connection turns out to be
    /// gone, `f` runs again on a new one: one statement failed on a lost
    /// session changed nothing.
    fn autocommit(&self, f: TxBody<'_>) -> Result<(), StoreError>;
}

/// The body of a [`Backend::transaction`] or [`Backend::autocommit`].
pub(crate) type TxBody<'a> = &'a mut dyn FnMut(&mut dyn Sql) -> Result<(), StoreError>;

/// The database of one Payoff installation.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl Store {
    /// Opens `url`: `postgres://…` / `postgresql://…`, or a SQLite file path
    /// (optionally written `sqlite:PATH`). Runs pending migrations.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        let backend: Arc<dyn Backend> =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Arc::new(crate::postgres::Postgres::open(url)?)
            } else {
                Arc::new(crate::sqlite::Sqlite::open(Path::new(
                    url.strip_prefix("sqlite:").unwrap_or(url),
                ))?)
            };
        Ok(Store { backend })
    }

    /// Runs `f` in one write transaction, with SQL written once for both
    /// databases (see [`crate::sql`]); commits if `f` succeeds.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run(true, f)
    }

    /// [`Store::read`], for a body that passes over many rows once (a
    /// close reading a period's outcomes): their pages are not kept in
    /// the connection's cache ([`crate::sql::Dialect::scan_cache`]).
    pub fn read_scan<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.read(|tx| {
            let Some((small, full)) = tx.dialect().scan_cache() else {
                return f(tx);
            };
            tx.execute_batch(small)?;
            let out = f(tx);
            // The body's own failure is the one to report.
            let restored = tx.execute_batch(full);
            let out = out?;
            restored?;
            Ok(out)
        })
    }

    /// Runs `f` on one consistent read-only snapshot.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.run(false, f)
    }

    /// Runs `f`, a body of exactly one statement, with no transaction
    /// around it: the statement is its own transaction, and its own
    /// snapshot is consistent. Right for the reads requests make on every
    /// call (the key of each authenticated request, a customer's head,
    /// budgets, pauses); on PostgreSQL it saves [`read`](Self::read)'s
    /// `BEGIN` and `COMMIT`, two of its three round trips. A body of
    /// several statements that must agree belongs in `read`.
    ///
    /// `f` may run twice: when a pooled connection turns out to be gone
    /// (the server restarted or failed over), it runs again on a new one,
    /// as `read` begins again when its `BEGIN` meets a lost session;
    /// nothing of a lone read was done. So `f` builds its result from what
    /// it reads and has no other effect.
    pub fn read_one<T>(
        &self,
        mut f: impl FnMut(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut out = None;
        self.backend.autocommit(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("the body ran"))
    }

    fn run<T>(
        &self,
        write: bool,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut f = Some(f);
        let mut out = None;
        self.backend.transaction(write, &mut |tx| {
            // A body runs once. The pool tries a transaction again only when
            // its connection was gone; if that happened after the body began,
            // the server rolled it back, and so it is reported, not rerun.
            let Some(f) = f.take() else {
                return Err(StoreError::Open(
                    "the database connection was lost during the transaction; nothing of it was committed".into(),
                ));
            };
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("the body ran"))
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Writes a consistent copy of the whole database to the new file `to`
    /// while writers go on (SQLite's `VACUUM INTO`, one read transaction);
    /// `None` for PostgreSQL, whose copies are `pg_dump`'s.
    pub fn backup(&self, to: &Path) -> Option<Result<(), StoreError>> {
        self.backend.backup(to)
    }

    /// Checks that the database answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.backend.ping()
    }

    /// See [`Backend::free_space`].
    pub fn free_space(&self) -> Option<Result<u64, StoreError>> {
        self.backend.free_space()
    }

    /// Starts this process's ledger writer (one per process).
    pub fn ledger(&self, config: LedgerConfig) -> Result<Ledger, StoreError> {
        let backend = self.backend.clone();
        Ledger::start(Box::new(move || backend.writer()), config)
    }

    pub fn create_customer(
        &self,
        id: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Customer, StoreError> {
        let customer = Customer {
            id: id.to_owned(),
            name: name.to_owned(),
            created_at: trunc_us(now),
        };
        self.write(|tx| crate::customers::insert(tx, &customer))?;
        Ok(customer)
    }

    pub fn customers(&self) -> Result<Vec<Customer>, StoreError> {
        self.read_one(crate::customers::list)
    }

    pub fn customer(&self, id: &str) -> Result<Option<Customer>, StoreError> {
        Ok(self.customers()?.into_iter().find(|c| c.id == id))
    }

    /// Creates a key; the returned [`NewKey::key`] is the only copy of the secret.
    pub fn create_key(
        &self,
        role: Role,
        customer: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(NewKey, KeyInfo), StoreError> {
        if let Some(c) = customer {
            if self.customer(c)?.is_none() {
                return Err(StoreError::NotFound {
                    what: "customer",
                    id: c.to_owned(),
                });
            }
        }
        let new = generate_key();
        let info = KeyInfo {
            key_id: new.key_id.clone(),
            role,
            customer: customer.map(str::to_owned),
            created_at: trunc_us(now),
            revoked_at: None,
        };
        self.write(|tx| crate::keys::insert(tx, &info, &new.secret_hash))?;
        Ok((new, info))
    }

    /// Keys of one customer, or all keys.
    pub fn keys(&self, customer: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
        self.read_one(|tx| crate::keys::list(tx, customer))
    }

    pub fn key(&self, key_id: &str) -> Result<Option<KeyInfo>, StoreError> {
        Ok(self.key_secret(key_id)?.map(|(info, _)| info))
    }

    /// Revokes a key at once; later requests with it are refused.
    pub fn revoke_key(&self, key_id: &str, now: DateTime<Utc>) -> Result<KeyInfo, StoreError> {
        self.write(|tx| crate::keys::revoke(tx, key_id, trunc_us(now)))?;
        self.key(key_id)?.ok_or_else(|| StoreError::NotFound {
            what: "key",
            id: key_id.to_owned(),
        })
    }

    fn key_secret(&self, key_id: &str) -> Result<Option<(KeyInfo, Vec<u8>)>, StoreError> {
        self.read_one(|tx| crate::keys::secret(tx, key_id))
    }

    /// The principal of a presented key, or `None` for an unknown, malformed
    /// or revoked key. The secret is compared in constant time.
    pub fn authenticate(&self, presented: &str) -> Result<Option<Principal>, StoreError> {
        let Some((key_id, secret)) = parse_key(presented) else {
            return Ok(None);
        };
        let presented_hash = hash_secret(secret);
        let Some((info, stored_hash)) = self.key_secret(key_id)? else {
            return Ok(None);
        };
        let equal: bool =
            subtle::ConstantTimeEq::ct_eq(presented_hash.as_slice(), stored_hash.as_slice()).into();
        if !equal || info.revoked_at.is_some() {
            return Ok(None);
        }
        Ok(Some(Principal {
            key_id: info.key_id,
            role: info.role,
            customer: info.customer,
        }))
    }

    /// The customer's chain head, `None` for an unknown customer.
    pub fn head(&self, customer: &str) -> Result<Option<Head>, StoreError> {
        self.read_one(|tx| crate::events::head(tx, customer))
    }

    /// One page of a customer's events matching `filter`.
    /// The event of `customer` stored under `(source, id)`, if any: one
    /// lookup in the index that makes ingestion idempotent.
    pub fn event_by_key(
        &self,
        customer: &str,
        source: &str,
        id: &str,
    ) -> Result<Option<StoredEvent>, StoreError> {
        self.read_one(|tx| crate::events::by_key(tx, customer, source, id))
    }

    pub fn events(&self, filter: &EventFilter) -> Result<EventPage, StoreError> {
        let limit = filter.limit.max(1);
        let mut query = filter.clone();
        query.limit = limit + 1;
        let mut events = self.read_one(|tx| crate::events::list(tx, &query))?;
        let next_cursor = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.sequence)
        } else {
            None
        };
        Ok(EventPage {
            events,
            next_cursor,
        })
    }

    /// Streams every event of a customer after `after_sequence`, in chain order.
    pub fn scan(
        &self,
        customer: &str,
        after_sequence: u64,
        mut sink: impl FnMut(StoredEvent) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.read_scan(|tx| {
            tx.query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE customer_id = ? AND sequence > ? \
                     ORDER BY sequence"
                ),
                &[customer.into(), (after_sequence as i64).into()],
                &mut |r| sink(stored_event(r)?),
            )
        })
    }

    /// Stores a new contract version, numbered one above the last.
    pub fn add_contract(
        &self,
        customer: &str,
        effective: &str,
        effective_start: DateTime<Utc>,
        sha256: &str,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<StoredContract, StoreError> {
        if self.customer(customer)?.is_none() {
            return Err(StoreError::NotFound {
                what: "customer",
                id: customer.to_owned(),
            });
        }
        // Two uploads at once race for the same number; the loser retries.
        for _ in 0..8 {
            let version = self
                .contracts(customer)?
                .last()
                .map_or(1, |c| c.version + 1);
            let contract = StoredContract {
                customer: customer.to_owned(),
                version,
                effective: effective.to_owned(),
                effective_start,
                sha256: sha256.to_owned(),
                body: body.to_owned(),
                uploaded_at: trunc_us(now),
            };
            if self.write(|tx| crate::contracts::insert(tx, &contract))? {
                return Ok(contract);
            }
        }
        Err(StoreError::AlreadyExists {
            what: "contract version",
            id: customer.to_owned(),
        })
    }

    /// The groups a key reads knowledge as (JSON array), if set.
    pub fn key_groups(&self, key_id: &str) -> Result<Option<String>, StoreError> {
        self.read_one(|tx| crate::keys::groups(tx, key_id))
    }

    /// Sets the groups a key reads knowledge as (JSON array).
    pub fn set_key_groups(&self, key_id: &str, groups: &str) -> Result<(), StoreError> {
        self.write(|tx| crate::keys::set_groups(tx, key_id, groups))
    }

    /// Stores (or replaces) knowledge documents `(id, JSON)` of `customer`
    /// in one transaction, each with its change in the log that every
    /// node's index follows; returns the last change's number.
    pub fn put_documents(
        &self,
        customer: &str,
        documents: &[(String, String)],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.write(|tx| crate::knowledge::put(tx, customer, documents, at.timestamp_micros()))
    }

    /// Deletes a knowledge document; its change's number, `None` if there
    /// was no such document.
    pub fn delete_document(&self, customer: &str, doc_id: &str) -> Result<Option<u64>, StoreError> {
        self.write(|tx| crate::knowledge::delete(tx, customer, doc_id))
    }

    /// `(customer, document JSON)` of one customer or of all.
    pub fn documents(&self, customer: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|tx| crate::knowledge::documents(tx, customer))
    }

    /// The number of the last change of knowledge documents (0: none yet).
    pub fn knowledge_head(&self) -> Result<u64, StoreError> {
        self.read_one(crate::knowledge::head)
    }

    /// Up to `limit` changes of knowledge documents after `after`, each
    /// with the document as it is now (see [`crate::knowledge`]).
    pub fn knowledge_changes(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::KnowledgeChange>, StoreError> {
        self.read(|tx| crate::knowledge::changes_after(tx, after, limit))
    }

    /// Stores a new price table version, numbered one above the last.
    pub fn add_price_table(
        &self,
        effective: DateTime<Utc>,
        body: &str,
        now: DateTime<Utc>,
    ) -> Result<StoredPriceTable, StoreError> {
        for _ in 0..8 {
            let version = self.price_tables()?.last().map_or(1, |t| t.version + 1);
            let table = StoredPriceTable {
                version,
                effective: trunc_us(effective),
                body: body.to_owned(),
                uploaded_at: trunc_us(now),
            };
            if self.write(|tx| crate::prices::insert(tx, &table))? {
                return Ok(table);
            }
        }
        Err(StoreError::AlreadyExists {
            what: "price table version",
            id: "next".into(),
        })
    }

    /// Every price table version, oldest first.
    pub fn price_tables(&self) -> Result<Vec<StoredPriceTable>, StoreError> {
        self.read_one(crate::prices::versions)
    }

    /// Sets (or replaces) a budget.
    pub fn put_budget(&self, budget: &Budget) -> Result<(), StoreError> {
        if self.customer(&budget.customer)?.is_none() {
            return Err(StoreError::NotFound {
                what: "customer",
                id: budget.customer.clone(),
            });
        }
        self.write(|tx| crate::budgets::put(tx, budget))
    }

    /// The kept Overview figures of a customer's period, if any.
    pub fn glance(
        &self,
        customer: &str,
        period: &str,
    ) -> Result<Option<crate::StoredGlance>, StoreError> {
        self.read_one(|tx| crate::glances::get(tx, customer, period))
    }

    /// Keeps a period's Overview figures (unless later ones are kept).
    pub fn put_glance(&self, glance: &crate::StoredGlance) -> Result<(), StoreError> {
        self.write(|tx| crate::glances::put(tx, glance))
    }

    /// A customer's budgets: `*` for the customer, then per agent.
    pub fn budgets(&self, customer: &str) -> Result<Vec<Budget>, StoreError> {
        self.read_one(|tx| crate::budgets::list(tx, customer))
    }

    /// Every version of a customer's contract, oldest first.
    pub fn contracts(&self, customer: &str) -> Result<Vec<StoredContract>, StoreError> {
        self.read_one(|tx| crate::contracts::list(tx, customer))
    }

    /// Stores a closed statement and, in the same transaction, the
    /// period's outcomes that costs are attributed to, as (kind, JSON
    /// array of subjects) per kind (`payoff_billing::PeriodOutcomes`).
    /// If the period was closed meanwhile, the statement stored first wins
    /// and is returned: a period closes once. `true` when this call stored it.
    pub fn save_statement(
        &self,
        statement: StoredStatement,
        outcome_sets: &[(String, String)],
    ) -> Result<(StoredStatement, bool), StoreError> {
        if self.write(|tx| crate::statements::insert(tx, &statement, outcome_sets))? {
            return Ok((statement, true));
        }
        let id = &statement.summary.id;
        self.statement(id)?
            .map(|s| (s, false))
            .ok_or_else(|| StoreError::AlreadyExists {
                what: "statement",
                id: id.clone(),
            })
    }

    /// The outcomes kept with a closed period's statement, as
    /// [`save_statement`](Self::save_statement) took them (periods closed
    /// before migration 27 read back in the same form); `None` when none
    /// were kept (not closed, or closed before they were).
    pub fn period_outcome_sets(
        &self,
        customer: &str,
        period: &str,
    ) -> Result<Option<Vec<(String, String)>>, StoreError> {
        self.read(|tx| crate::statements::outcome_sets(tx, customer, period))
    }

    /// A closed statement by id, its signed bytes and all.
    pub fn statement(&self, id: &str) -> Result<Option<StoredStatement>, StoreError> {
        self.read_one(|tx| crate::statements::by_id(tx, id))
    }

    /// A customer's statements without their lines, oldest period first:
    /// listing them, or closing the next period, reads these, not the
    /// signed bytes, which name every outcome each one billed.
    pub fn statement_summaries(&self, customer: &str) -> Result<Vec<StatementSummary>, StoreError> {
        self.read_one(|tx| crate::statements::summaries(tx, customer))
    }

    /// Streams the canonical bytes of a customer's events up to `up_to`, in
    /// chain order: all of them, or only those of the given `types`, which
    /// the database selects through its index by type. A close reads
    /// millions of events and needs few of them.
    pub fn scan_bodies(
        &self,
        customer: &str,
        up_to: u64,
        types: Option<&[&str]>,
        mut sink: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.backend.scan_bodies(customer, up_to, types, &mut sink)
    }

    /// Streams the customer's costs with a time in `[from, until)` among
    /// its events up to `up_to`, from the cost index: model calls as
    /// their fields, in time order, then every other cost as its stored
    /// bytes, in time order.
    pub fn scan_costs(
        &self,
        customer: &str,
        up_to: u64,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        mut sink: impl FnMut(CostFact<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.backend
            .scan_costs(customer, up_to, from, until, &mut sink)
    }

    /// Records one entry in the audit chain.
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<AuditRecord, StoreError> {
        self.write(|tx| crate::audit::insert(tx, &[entry]))
            .map(|mut records| records.remove(0))
    }

    /// Audit records matching `filter`, oldest first.
    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.read_one(|tx| crate::audit::records(tx, filter))
    }

    /// Recomputes the whole audit chain from the stored rows.
    pub fn verify_audit(&self) -> Result<AuditReport, StoreError> {
        let mut rows = Vec::new();
        self.read_scan(|tx| {
            crate::audit::rows(tx, &mut |sequence, body, hash| {
                rows.push(
                    serde_json::from_str::<serde_json::Value>(&body)
                        .map_err(|e| format!("its stored body is not JSON: {e}"))
                        .and_then(|mut v| {
                            if v.get("sequence").and_then(serde_json::Value::as_u64)
                                != Some(sequence)
                            {
                                return Err(format!(
                                    "its body says another sequence than row {sequence}"
                                ));
                            }
                            v["hash"] = hex::encode(hash).into();
                            Ok(v)
                        }),
                )
            })
        })?;
        Ok(verify_audit(rows))
    }

    /// Turns an agent's kill switch on (`paused`) or off.
    pub fn set_agent_pause(&self, pause: &AgentPause, paused: bool) -> Result<(), StoreError> {
        self.write(|tx| crate::agents::set_pause(tx, pause, paused))
    }

    pub fn agent_pauses(&self) -> Result<Vec<AgentPause>, StoreError> {
        self.read_one(crate::agents::pauses)
    }

    /// The pause that stops `agent` for `customer`, if any.
    pub fn agent_paused(
        &self,
        agent: &str,
        customer: &str,
    ) -> Result<Option<AgentPause>, StoreError> {
        Ok(self
            .agent_pauses()?
            .into_iter()
            .find(|p| p.agent == agent && (p.customer == customer || p.customer == "*")))
    }

    pub fn agent_cursor(&self, agent: &str, customer: &str) -> Result<u64, StoreError> {
        self.read_one(|tx| crate::agents::cursor(tx, agent, customer))
    }

    pub fn set_agent_cursor(
        &self,
        agent: &str,
        customer: &str,
        sequence: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| crate::agents::set_cursor(tx, agent, customer, sequence))
    }

    /// Stores a new version of a customer's agent rules, numbered one
    /// above the last. The text must have been checked by the caller.
    pub fn add_policy(
        &self,
        customer: &str,
        body: &str,
        uploaded_by: &str,
        now: DateTime<Utc>,
    ) -> Result<StoredPolicy, StoreError> {
        if self.customer(customer)?.is_none() {
            return Err(StoreError::NotFound {
                what: "customer",
                id: customer.to_owned(),
            });
        }
        // Two uploads at once race for the same number; the loser retries.
        for _ in 0..8 {
            let version = self.policies(customer)?.last().map_or(1, |p| p.version + 1);
            let policy = StoredPolicy {
                customer: customer.to_owned(),
                version,
                sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes())),
                body: body.to_owned(),
                uploaded_by: uploaded_by.to_owned(),
                uploaded_at: trunc_us(now),
            };
            if self.write(|tx| crate::policies::insert(tx, &policy))? {
                return Ok(policy);
            }
        }
        Err(StoreError::AlreadyExists {
            what: "policy version",
            id: customer.to_owned(),
        })
    }

    /// Every version of a customer's agent rules, oldest first.
    pub fn policies(&self, customer: &str) -> Result<Vec<StoredPolicy>, StoreError> {
        self.read_one(|tx| crate::policies::list(tx, customer))
    }

    /// Stores a new version of a customer's action schema and rules,
    /// numbered one above the last. The texts must have been compiled by
    /// the caller.
    pub fn add_action_rules(
        &self,
        customer: &str,
        schema: &str,
        rules: &str,
        uploaded_by: &str,
        now: DateTime<Utc>,
    ) -> Result<StoredActionRules, StoreError> {
        if self.customer(customer)?.is_none() {
            return Err(StoreError::NotFound {
                what: "customer",
                id: customer.to_owned(),
            });
        }
        let mut digest = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut digest, schema.as_bytes());
        sha2::Digest::update(&mut digest, [0u8]);
        sha2::Digest::update(&mut digest, rules.as_bytes());
        let sha256 = hex::encode(sha2::Digest::finalize(digest));
        // Two uploads at once race for the same number; the loser retries.
        for _ in 0..8 {
            let stored = self.write(|tx| {
                let version = crate::actions::latest(tx, customer)?.map_or(1, |r| r.version + 1);
                let row = StoredActionRules {
                    customer: customer.to_owned(),
                    version,
                    sha256: sha256.clone(),
                    schema: schema.to_owned(),
                    rules: rules.to_owned(),
                    uploaded_by: uploaded_by.to_owned(),
                    uploaded_at: trunc_us(now),
                };
                Ok(crate::actions::insert(tx, &row)?.then_some(row))
            })?;
            if let Some(row) = stored {
                return Ok(row);
            }
        }
        Err(StoreError::AlreadyExists {
            what: "action rules version",
            id: customer.to_owned(),
        })
    }

    /// Every version of a customer's action schema and rules, oldest first.
    pub fn action_rules(&self, customer: &str) -> Result<Vec<StoredActionRules>, StoreError> {
        self.read_one(|tx| crate::actions::versions(tx, customer))
    }

    /// The customer's action schema and rules in force, if any.
    pub fn latest_action_rules(
        &self,
        customer: &str,
    ) -> Result<Option<StoredActionRules>, StoreError> {
        self.read_one(|tx| crate::actions::latest(tx, customer))
    }

    /// Registers a customer's MCP server under `server.name`, or points
    /// that name at a new URL.
    pub fn put_mcp_server(&self, server: &crate::McpServer) -> Result<(), StoreError> {
        if self.customer(&server.customer)?.is_none() {
            return Err(StoreError::NotFound {
                what: "customer",
                id: server.customer.clone(),
            });
        }
        self.write(|tx| crate::mcp::put(tx, server))
    }

    /// A customer's MCP servers, by name.
    pub fn mcp_servers(&self, customer: &str) -> Result<Vec<crate::McpServer>, StoreError> {
        self.read_one(|tx| crate::mcp::list(tx, customer, None))
    }

    /// One of a customer's MCP servers.
    pub fn mcp_server(
        &self,
        customer: &str,
        name: &str,
    ) -> Result<Option<crate::McpServer>, StoreError> {
        Ok(self
            .read(|tx| crate::mcp::list(tx, customer, Some(name)))?
            .pop())
    }

    /// Removes one of a customer's MCP servers; whether there was one.
    pub fn delete_mcp_server(&self, customer: &str, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| crate::mcp::delete(tx, customer, name))
    }

    /// Stores a new webhook subscription.
    pub fn add_webhook(&self, subscription: &WebhookSubscription) -> Result<(), StoreError> {
        if self.customer(&subscription.customer)?.is_none() {
            return Err(StoreError::NotFound {
                what: "customer",
                id: subscription.customer.clone(),
            });
        }
        self.write(|tx| crate::webhooks::insert_subscription(tx, subscription))
    }

    /// Subscriptions of a customer (or all), deleted ones included.
    pub fn webhooks(&self, customer: Option<&str>) -> Result<Vec<WebhookSubscription>, StoreError> {
        self.read_one(|tx| crate::webhooks::subscriptions(tx, customer))
    }

    /// Stops a subscription; its delivery log stays readable.
    pub fn delete_webhook(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.write(|tx| crate::webhooks::delete_subscription(tx, id, at))
    }

    /// Walks Payoff's own records of one type newest first, from before
    /// the sequence `before`, a page at a time (one read each; see
    /// [`crate::actions::own_records_newest`]), handing each to `visit`
    /// until it answers false: a walk costs what its reader looks at.
    pub fn walk_own_records_newest<E: From<StoreError>>(
        &self,
        customer: &str,
        event_type: &str,
        mut before: Option<u64>,
        mut visit: impl FnMut(crate::actions::OwnRecord) -> Result<bool, E>,
    ) -> Result<(), E> {
        const PAGE: usize = 200;
        loop {
            let page = self.read(|tx| {
                crate::actions::own_records_newest(tx, customer, event_type, before, PAGE)
            })?;
            let full = page.len() == PAGE;
            for record in page {
                before = Some(record.sequence);
                if !visit(record)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Moves a subscription's cursor and inserts the deliveries it
    /// passed, in one transaction; see [`crate::webhooks::advance`].
    pub fn advance_webhook(
        &self,
        id: &str,
        from: u64,
        to: u64,
        deliveries: &[WebhookDelivery],
    ) -> Result<bool, StoreError> {
        self.write(|tx| crate::webhooks::advance(tx, id, from, to, deliveries))
    }

    /// Leases due deliveries fairly between customers; see
    /// [`crate::webhooks::claim`].
    pub fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limits: crate::webhooks::ClaimLimits<'_>,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.write(|tx| crate::webhooks::claim(tx, now, lease_until, limits))
    }

    /// Extends the leases of deliveries a node is still sending; see
    /// [`crate::webhooks::renew`].
    pub fn renew_deliveries(
        &self,
        ids: &[String],
        lease_until: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.write(|tx| crate::webhooks::renew(tx, ids, lease_until))
    }

    /// Replaces the secrets `seal` turns into something else (those stored
    /// before secrets were sealed at rest), each only if it is still the
    /// value read, so nodes doing it at once agree; returns how many.
    pub fn reseal_webhook_secrets(
        &self,
        seal: &dyn Fn(&str) -> Option<String>,
    ) -> Result<usize, StoreError> {
        self.write(|tx| crate::webhooks::reseal(tx, seal))
    }

    /// Stores the outcomes of attempts and releases their leases, in one
    /// transaction.
    pub fn finish_deliveries(&self, deliveries: &[WebhookDelivery]) -> Result<(), StoreError> {
        self.write(|tx| crate::webhooks::finish(tx, deliveries))
    }

    /// A subscription's delivery log after `after_sequence`, oldest first.
    pub fn deliveries(
        &self,
        subscription: &str,
        after_sequence: u64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.read_one(|tx| crate::webhooks::deliveries(tx, subscription, after_sequence, limit))
    }

    /// Opens a dashboard session for the key `key_id`, valid until
    /// `now + ttl`; sessions expired by now are deleted on the way.
    pub fn open_session(
        &self,
        key_id: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<NewSession, StoreError> {
        let (token, csrf_token) = session::generate();
        let token_hash = session::hash_token(&token).expect("a generated token has the shape");
        let row = SessionRow {
            token_hash,
            key_id: key_id.to_owned(),
            csrf_token: csrf_token.clone(),
            created_at: trunc_us(now),
            expires_at: trunc_us(now + ttl),
        };
        self.write(|tx| session::insert(tx, &row, now))?;
        Ok(NewSession {
            token,
            csrf_token,
            expires_at: row.expires_at,
        })
    }

    /// The principal and CSRF token of a live session; `None` for a
    /// malformed, unknown or expired token, one unused for
    /// [`crate::SESSION_IDLE`], or one whose key was revoked.
    pub fn session(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Principal, String)>, StoreError> {
        let Some(hash) = session::hash_token(token) else {
            return Ok(None);
        };
        let Some(row) = self.read_one(|tx| session::get(tx, &hash))? else {
            return Ok(None);
        };
        if row.expires_at <= now {
            return Ok(None);
        }
        let now_us = now.timestamp_micros();
        let seen = self
            .read_one(|tx| session::last_used(tx, &hash))?
            .unwrap_or(row.created_at.timestamp_micros());
        let (alive, renew) = session::idle_state(seen, now_us);
        if !alive {
            return Ok(None);
        }
        if renew {
            self.write(|tx| session::touch(tx, &hash, now_us))?;
        }
        Ok(self
            .key(&row.key_id)?
            .filter(|k| k.revoked_at.is_none())
            .map(|k| {
                (
                    Principal {
                        key_id: k.key_id,
                        role: k.role,
                        customer: k.customer,
                    },
                    row.csrf_token,
                )
            }))
    }

    /// Ends a session (logout); false when there was none.
    pub fn close_session(&self, token: &str) -> Result<bool, StoreError> {
        match session::hash_token(token) {
            Some(hash) => self.write(|tx| session::delete(tx, &hash)),
            None => Ok(false),
        }
    }

    /// Recomputes every customer's chain from the stored bytes and checks
    /// that the columns beside them and the stored head agree.
    pub fn verify(&self) -> Result<Vec<ChainReport>, StoreError> {
        let mut reports = Vec::new();
        for customer in self.customers()? {
            reports.push(self.verify_customer(&customer.id)?);
        }
        Ok(reports)
    }

    fn verify_customer(&self, customer: &str) -> Result<ChainReport, StoreError> {
        let stored_head = self.head(customer)?.unwrap_or(Head::EMPTY);
        let mut head = Head::EMPTY;
        let mut broken: Option<String> = None;
        self.scan(customer, 0, |row| {
            if broken.is_some() {
                return Ok(());
            }
            if let Err(reason) = columns_match(&row) {
                broken = Some(format!("sequence {}: {reason}", row.sequence));
                return Ok(());
            }
            let link = ChainLink {
                sequence: row.sequence,
                canonical: &row.canonical,
                hash: &row.hash,
            };
            match verify_chain(head, [link]) {
                Ok(next) => head = next,
                Err(e) => broken = Some(e.to_string()),
            }
            Ok(())
        })?;
        if broken.is_none() && head != stored_head {
            broken = Some(format!(
                "the stored head (sequence {}, hash {}) does not match the recomputed chain end (sequence {}, hash {})",
                stored_head.sequence,
                stored_head.hash_hex(),
                head.sequence,
                head.hash_hex()
            ));
        }
        Ok(ChainReport {
            customer: customer.to_owned(),
            events: head.sequence,
            head_hash: head.hash_hex(),
            broken,
        })
    }
}

fn columns_match(row: &StoredEvent) -> Result<(), String> {
    let event =
        Event::from_canonical(&row.canonical).map_err(|e| format!("{} {}", e.field, e.reason))?;
    let mismatch = |column: &str| {
        Err(format!(
            "column {column} differs from the stored event bytes"
        ))
    };
    if event.source != row.source {
        return mismatch("source");
    }
    if event.id != row.id {
        return mismatch("event_id");
    }
    if event.event_type != row.event_type {
        return mismatch("type");
    }
    if event.subject != row.subject {
        return mismatch("subject");
    }
    if event.time.is_some_and(|t| t != row.time) {
        return mismatch("time_us");
    }
    Ok(())
}

/// Times are stored in microseconds; values handed back equal what is read later.
fn trunc_us(t: DateTime<Utc>) -> DateTime<Utc> {
    from_us(t.timestamp_micros())
}

pub(crate) fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

pub(crate) fn hash32(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| {
        StoreError::Corrupt(format!(
            "a stored hash has {} bytes instead of 32",
            bytes.len()
        ))
    })
}
