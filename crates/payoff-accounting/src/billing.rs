//! The imperative shell around the billing core: loads a customer's
//! contract versions, events and statements from the store, runs the pure
//! computation, signs and stores what it closes.
//!
//! Everything here is blocking; the server calls it from its blocking pool.

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use payoff_billing::{
    compute, compute_with_outcomes, periods_before, sign, BillingEvent, Bundle, BundleContract,
    BundleEvent, CloseError, CloseInput, Contract, ContractErrors, Earlier, EarlierLines,
    EventSource, HeadRef, KeptOutcomes, Line, Period, PeriodOutcomes, Statement, TypeFilter,
    BUNDLE_FORMAT,
};
use payoff_ledger::Head;
use payoff_outcomes::OutcomesError;
use payoff_store::{StatementSummary, Store, StoreError, StoredContract, StoredStatement};

/// Why a billing request cannot be served, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("customer \"{0}\" has no contract yet: upload one first")]
    NoContract(String),
    #[error("{0}")]
    BadPeriod(String),
    #[error("{0}")]
    Close(#[from] CloseError),
    #[error("period {period} ends at {end}; it can be closed from then on (preview it meanwhile)")]
    NotEnded { period: String, end: String },
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Signing(#[from] payoff_billing::AlreadySigned),
}

/// Why an upload is refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Invalid(ContractErrors),
    #[error("{0}")]
    Refused(String),
    /// The version would govern a period already closed.
    #[error("{0}")]
    Closed(String),
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl From<StoreError> for UploadError {
    fn from(e: StoreError) -> Self {
        UploadError::Billing(e.into())
    }
}

/// Checks and stores a new contract version for `customer`, effective
/// from `effective` (default: the contract's start for a first version,
/// else the first period not closed yet).
pub fn upload_contract(
    store: &Store,
    customer: &str,
    text: &str,
    effective: Option<&str>,
    now: DateTime<Utc>,
) -> Result<StoredContract, UploadError> {
    let contract =
        Contract::parse(&format!("{customer}.toml"), text).map_err(UploadError::Invalid)?;
    if contract.customer != customer {
        return Err(UploadError::Refused(format!(
            "contract.customer is \"{}\" but the contract is uploaded for \"{customer}\"",
            contract.customer
        )));
    }
    let effective = match effective {
        Some(name) => Some(
            Period::parse(contract.cadence, name)
                .map_err(|e| UploadError::Refused(format!("effective: {e}")))?,
        ),
        None => None,
    };
    let earlier = store.contracts(customer)?;
    if let Some(first) = earlier.first() {
        let old =
            payoff_outcomes::compiled(first).map_err(|e| BillingError::Corrupt(e.to_string()))?;
        if old.cadence != contract.cadence {
            return Err(UploadError::Refused(format!(
                "contract.period: the customer is billed {}; a new version cannot change it to {}",
                old.cadence.name(),
                contract.cadence.name()
            )));
        }
    }
    let last_closed = store
        .statement_summaries(customer)?
        .last()
        .map(|s| s.period_start);
    let effective = match (effective, last_closed) {
        (Some(p), _) => p,
        (None, Some(start)) => Period::containing(contract.cadence, start).next(),
        (None, None) => contract.starts,
    };
    if effective.start < contract.starts.start {
        return Err(UploadError::Refused(format!(
            "effective: {effective} is before the contract starts ({})",
            contract.starts
        )));
    }
    if last_closed.is_some_and(|start| effective.start <= start) {
        return Err(UploadError::Closed(format!(
            "effective: {effective} is already closed; a new version can only govern periods not closed yet"
        )));
    }
    Ok(store.add_contract(
        customer,
        &effective.to_string(),
        effective.start,
        &contract.sha256,
        text,
        now,
    )?)
}

pub use payoff_outcomes::{OutcomeNow, Versions};

impl From<OutcomesError> for BillingError {
    fn from(e: OutcomesError) -> Self {
        match e {
            OutcomesError::Store(e) => BillingError::Store(e),
            OutcomesError::NoContract(c) => BillingError::NoContract(c),
            OutcomesError::Corrupt(e) => BillingError::Corrupt(e),
            OutcomesError::BadPeriod(e) => BillingError::BadPeriod(e),
        }
    }
}

/// A customer's events up to a fixed head, streamed from the store each
/// time a close replays them, so memory does not grow with the ledger.
pub struct StoredEvents<'s> {
    pub store: &'s Store,
    pub customer: String,
    pub head: Head,
}

impl<'s> StoredEvents<'s> {
    /// Pins the customer's current head.
    pub fn at_head(store: &'s Store, customer: &str) -> Result<StoredEvents<'s>, BillingError> {
        let head = store.head(customer)?.ok_or_else(|| StoreError::NotFound {
            what: "customer",
            id: customer.to_owned(),
        })?;
        Ok(StoredEvents {
            store,
            customer: customer.to_owned(),
            head,
        })
    }

    pub fn head_ref(&self) -> HeadRef {
        HeadRef {
            sequence: self.head.sequence,
            hash: self.head.hash_hex(),
        }
    }

    /// Every event up to the head, parsed.
    pub fn all(&self) -> Result<Vec<BillingEvent>, BillingError> {
        let mut out = Vec::new();
        self.replay(&TypeFilter::everything(), &mut |e| out.push(e.clone()))
            .map_err(BillingError::Corrupt)?;
        Ok(out)
    }
}

impl StoredEvents<'_> {
    /// Reads every wanted event in ledger order on a second thread, which
    /// also runs `parse` on its bytes, while this thread consumes the
    /// results: on two cores a pass over ten million events takes half the
    /// time.
    pub fn replay_parsed<T: Send>(
        &self,
        wants: &TypeFilter,
        parse: &(dyn Fn(u64, &[u8]) -> T + Sync),
        sink: &mut dyn FnMut(T),
    ) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<T>>(8);
        std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let mut batch: Vec<T> = Vec::with_capacity(1024);
                self.store.scan_bodies(
                    &self.customer,
                    self.head.sequence,
                    wants.types().as_deref(),
                    |sequence, body| {
                        batch.push(parse(sequence, body));
                        if batch.len() == 1024 {
                            tx.send(std::mem::replace(&mut batch, Vec::with_capacity(1024)))
                                .map_err(|_| {
                                    StoreError::Stopped("the reader's consumer stopped".into())
                                })?;
                        }
                        Ok(())
                    },
                )?;
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
                Ok::<(), StoreError>(())
            });
            for batch in rx {
                for item in batch {
                    sink(item);
                }
            }
            match reader.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the event reader panicked".to_string()),
            }
        })
    }
}

/// Parses stored bytes for billing; `Err` names the event.
pub fn parse_stored(sequence: u64, body: &[u8]) -> Result<Option<BillingEvent>, String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .map(|value| BillingEvent::from_json(sequence, &value))
        .map_err(|e| format!("event {sequence} is not JSON: {e}"))
}

impl EventSource for StoredEvents<'_> {
    fn replay(
        &self,
        wants: &TypeFilter,
        sink: &mut dyn FnMut(&BillingEvent),
    ) -> Result<(), String> {
        // The reader copies bytes; this thread parses and projects, which
        // balances the two threads of a close best (measured).
        let mut failure = None;
        let copy = |sequence: u64, body: &[u8]| (sequence, body.to_vec());
        self.replay_parsed(
            wants,
            &copy,
            &mut |(sequence, body)| match parse_stored(sequence, &body) {
                Ok(Some(e)) => sink(&e),
                Ok(None) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            },
        )?;
        failure.map_or(Ok(()), Err)
    }
}

fn parse_statement(stored: &StoredStatement) -> Result<Statement, BillingError> {
    serde_json::from_str(&stored.body)
        .map_err(|e| BillingError::Corrupt(format!("statement {}: {e}", stored.summary.id)))
}

/// A customer's closed statements without their lines, oldest first:
/// what listing them needs, without reading the outcomes each one names.
pub fn summaries(store: &Store, customer: &str) -> Result<Vec<StatementSummary>, BillingError> {
    Ok(store.statement_summaries(customer)?)
}

/// The stored statement of `id`, parsed.
fn stored_statement(store: &Store, id: &str) -> Result<StoredStatement, BillingError> {
    store
        .statement(id)?
        .ok_or_else(|| BillingError::Corrupt(format!("statement {id} is listed but not stored")))
}

/// The statements a close builds on, as it reads them: the closed ones
/// (`closed`) with their lines read from the database only if the close
/// needs them, then those a preview assumes (`assumed`, at hand).
fn earlier<'a>(
    store: &'a Store,
    closed: &'a [StatementSummary],
    assumed: &'a [Statement],
) -> Result<Vec<Earlier<'a>>, BillingError> {
    let mut all: Vec<Earlier<'a>> = closed
        .iter()
        .map(|s| Earlier {
            id: s.id.clone(),
            period: s.period.clone(),
            period_end: s.period_end,
            head: s.head,
            lines: EarlierLines::Later(Box::new(move || stored_lines(store, &s.id))),
        })
        .collect();
    for s in assumed {
        all.push(Earlier::of(s)?);
    }
    Ok(all)
}

/// The lines of a stored statement, the rest of it skipped.
fn stored_lines(store: &Store, id: &str) -> Result<Vec<Line>, String> {
    #[derive(serde::Deserialize)]
    struct Lines {
        lines: Vec<Line>,
    }
    let stored = stored_statement(store, id).map_err(|e| e.to_string())?;
    serde_json::from_str::<Lines>(&stored.body)
        .map(|l| l.lines)
        .map_err(|e| e.to_string())
}

/// A period's statement as it stands, and the earlier periods it assumes
/// closed as previewed because they are not closed yet.
pub struct Preview {
    pub statement: Statement,
    /// Earlier open periods, oldest first; empty for a closed period or
    /// when every earlier one is closed.
    pub assumed: Vec<String>,
    /// The outcomes the preview was computed from, for an open period
    /// previewed [`Listing::Listed`]: economics attributes costs to them
    /// without reading them again.
    pub outcomes: Option<PeriodOutcomes>,
}

/// Whether a preview also lists the period's outcomes: economics wants
/// them; a preview shown as it is does not (a pass over a million
/// outcomes and their subjects' text, then thrown away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Listed,
    Unlisted,
}

/// The statement of a period: the stored one if the period is closed,
/// else the one a close would give now (not stored, not signed). Earlier
/// periods that are still open are previewed first, in order, and the
/// later ones built on them, as if each closed as previewed: a preview
/// never waits for an earlier close (the first days of every month).
pub fn preview(
    store: &Store,
    customer: &str,
    period: &str,
    now: DateTime<Utc>,
    listing: Listing,
) -> Result<Preview, BillingError> {
    let closed = store.statement_summaries(customer)?;
    if let Some(s) = closed.iter().find(|s| s.period == period) {
        return Ok(Preview {
            statement: parse_statement(&stored_statement(store, &s.id)?)?,
            assumed: Vec::new(),
            outcomes: None,
        });
    }
    let versions = Versions::load(store, customer)?;
    let period = versions.period(period)?;
    // A period that has not started has nothing to bill yet, and each
    // open period before it is previewed in turn: `2999-12` took minutes
    // and gigabytes (found by the dashboard fuzz target).
    if period.start > now {
        return Err(BillingError::BadPeriod(format!(
            "period {period} has not started yet (it starts {}); only periods that have started can be previewed",
            rfc3339(period.start)
        )));
    }
    let closed: Vec<StatementSummary> = closed
        .into_iter()
        .filter(|s| s.period_start < period.start)
        .collect();
    let (ledger, kept) = sources(store, customer, Outcomes::Kept)?;
    let list = versions.list();
    let mut assumed: Vec<Statement> = Vec::new();
    let base = CloseInput {
        customer,
        period,
        versions: &list,
        events: &ledger,
        head: ledger.head_ref(),
        prior: &[],
        issued_at: now,
        kept: kept.as_ref().map(|k| k as &dyn KeptOutcomes),
    };
    for p in periods_before(&list, period) {
        if !closed.iter().any(|s| s.period == p.to_string()) {
            let prior = earlier(store, &closed, &assumed)?;
            let previewed = compute(&CloseInput {
                period: p,
                prior: &prior,
                head: base.head.clone(),
                ..base
            })?;
            drop(prior);
            assumed.push(previewed);
        }
    }
    let prior = earlier(store, &closed, &assumed)?;
    let input = CloseInput {
        prior: &prior,
        ..base
    };
    let (statement, outcomes) = match listing {
        Listing::Listed => compute_with_outcomes(&input).map(|(s, o)| (s, Some(o)))?,
        Listing::Unlisted => (compute(&input)?, None),
    };
    drop(prior);
    Ok(Preview {
        statement,
        assumed: assumed.into_iter().map(|s| s.period).collect(),
        outcomes,
    })
}

/// Where a close takes its outcomes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcomes {
    /// The read model, when every fold is at one head with the ledger
    /// (the close is then cut at that head); else a replay.
    Kept,
    /// A replay of the ledger: the independent check of the model.
    Replayed,
}

/// The events a close reads up to a pinned head, and the read model that
/// stands in for their outcomes when it can.
pub fn sources<'s>(
    store: &'s Store,
    customer: &str,
    how: Outcomes,
) -> Result<(StoredEvents<'s>, Option<payoff_outcomes::Kept<'s>>), BillingError> {
    if how == Outcomes::Kept {
        if let Some(kept) = payoff_outcomes::Kept::pin(store, customer)? {
            let events = StoredEvents {
                store,
                customer: customer.to_owned(),
                head: kept.head(),
            };
            return Ok((events, Some(kept)));
        }
    }
    Ok((StoredEvents::at_head(store, customer)?, None))
}

/// Computes a period's statement from the ledger as it is now, against
/// the statements closed before it, whether or not the period is closed.
pub fn recompute(
    store: &Store,
    customer: &str,
    period: &str,
    now: DateTime<Utc>,
    how: Outcomes,
) -> Result<Statement, BillingError> {
    let versions = Versions::load(store, customer)?;
    let period = versions.period(period)?;
    let closed: Vec<StatementSummary> = store
        .statement_summaries(customer)?
        .into_iter()
        .filter(|s| s.period_start < period.start)
        .collect();
    let prior = earlier(store, &closed, &[])?;
    let (ledger, kept) = sources(store, customer, how)?;
    let list = versions.list();
    Ok(compute(&CloseInput {
        customer,
        period,
        versions: &list,
        events: &ledger,
        head: ledger.head_ref(),
        prior: &prior,
        issued_at: now,
        kept: kept.as_ref().map(|k| k as &dyn KeptOutcomes),
    })?)
}

pub use payoff_billing::rfc3339;

/// Closes a period: computes, signs and stores its statement. Closing a
/// closed period returns the stored statement unchanged (`false`).
pub fn close(
    store: &Store,
    key: &SigningKey,
    customer: &str,
    period: &str,
    now: DateTime<Utc>,
) -> Result<Closed, BillingError> {
    let versions = Versions::load(store, customer)?;
    let period = versions.period(period)?;
    let closed = store.statement_summaries(customer)?;
    if let Some(existing) = closed.iter().find(|s| s.period == period.to_string()) {
        return Ok(Closed {
            stored: stored_statement(store, &existing.id)?,
            created: false,
        });
    }
    if now < period.end {
        return Err(BillingError::NotEnded {
            period: period.to_string(),
            end: rfc3339(period.end),
        });
    }
    let prior = earlier(store, &closed, &[])?;
    let (ledger, kept) = sources(store, customer, Outcomes::Kept)?;
    let list = versions.list();
    let (mut statement, outcomes) = compute_with_outcomes(&CloseInput {
        customer,
        period,
        versions: &list,
        events: &ledger,
        head: ledger.head_ref(),
        prior: &prior,
        issued_at: now,
        kept: kept.as_ref().map(|k| k as &dyn KeptOutcomes),
    })?;
    let body = String::from_utf8(sign(&mut statement, key)?).expect("canonical JSON is UTF-8");
    // The stored bytes are the statement from here on (the reply is read
    // back from them): a million outcomes' ids are not held twice.
    let lines = statement.lines.len() as u64;
    let Statement {
        id,
        period: name,
        currency,
        total,
        ledger_head,
        lines: billed,
        ..
    } = statement;
    // Freed before the store writes: the database's pages of the body take
    // the memory the million ids held.
    drop(billed);
    // A concurrent close may have stored its statement first: that one
    // stands, and only the call that stored it says it created it.
    let (saved, created) = store.save_statement(
        StoredStatement {
            summary: StatementSummary {
                id,
                customer: customer.to_owned(),
                period: name,
                period_start: period.start,
                period_end: period.end,
                head: ledger_head.sequence,
                currency,
                total: total.to_string(),
                lines,
                issued_at: now,
            },
            body,
        },
        &outcomes.kinds,
    )?;
    drop(outcomes);
    Ok(Closed {
        stored: saved,
        created,
    })
}

/// A closed period's statement: the signed bytes as stored (what a close
/// answers, byte for byte, without parsing a million outcome ids back),
/// and whether this call stored it.
pub struct Closed {
    pub stored: StoredStatement,
    pub created: bool,
}

impl Closed {
    /// The statement parsed from its stored bytes.
    pub fn statement(&self) -> Result<Statement, BillingError> {
        parse_statement(&self.stored)
    }
}

/// The evidence of a statement: contract versions, the chain up to its
/// head, and the statements it builds on.
pub fn evidence(store: &Store, statement: &Statement) -> Result<Bundle, BillingError> {
    let customer = &statement.customer;
    let versions = store.contracts(customer)?;
    let up_to = statement.ledger_head.sequence;
    let mut events = Vec::new();
    store.scan(customer, 0, |row| {
        if row.sequence <= up_to {
            events.push(BundleEvent {
                sequence: row.sequence,
                event: String::from_utf8(row.canonical).map_err(|_| {
                    StoreError::Corrupt(format!("event {} is not UTF-8", row.sequence))
                })?,
                hash: hex::encode(row.hash),
            });
        }
        Ok(())
    })?;
    let statements = statement
        .depends_on
        .iter()
        .map(|id| parse_statement(&stored_statement(store, id)?))
        .collect::<Result<_, _>>()?;
    Ok(Bundle {
        format: BUNDLE_FORMAT.into(),
        statement: statement.id.clone(),
        customer: customer.clone(),
        contracts: versions
            .into_iter()
            .map(|v| BundleContract {
                version: v.version,
                effective: v.effective,
                sha256: v.sha256,
                toml: v.body,
            })
            .collect(),
        events,
        statements,
    })
}

/// A statement's lines as CSV (RFC 4180), then its subtotal and total:
/// for a spreadsheet. The signed JSON remains the statement of record.
pub fn statement_csv(statement: &Statement) -> String {
    // Quoted always; a text cell a spreadsheet would run as a formula is
    // prefixed with an apostrophe.
    fn cell(text: &str, is_text: bool) -> String {
        let guarded = if is_text && text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{text}")
        } else {
            text.to_owned()
        };
        format!("\"{}\"", guarded.replace('"', "\"\""))
    }
    let mut out = String::from(
        "statement,period,currency,kind,description,outcome,concerns_period,quantity,included,unit_price,amount,outcomes\n",
    );
    let mut row =
        |kind: &str, line: Option<&payoff_billing::Line>, amount: rust_decimal::Decimal| {
            let text = |t: Option<&String>| cell(t.map_or("", String::as_str), true);
            let number = |t: Option<String>| cell(t.as_deref().unwrap_or(""), false);
            let fields = [
                cell(&statement.id, true),
                cell(&statement.period, true),
                cell(&statement.currency, true),
                cell(kind, true),
                text(line.map(|l| &l.description)),
                text(line.and_then(|l| l.outcome.as_ref())),
                text(line.and_then(|l| l.period.as_ref())),
                number(line.map(|l| l.quantity.to_string())),
                number(line.and_then(|l| l.included).map(|i| i.to_string())),
                number(line.and_then(|l| l.unit_price).map(|p| p.to_string())),
                cell(&amount.to_string(), false),
                cell(&line.map_or(0, |l| l.outcomes.len()).to_string(), false),
            ];
            out.push_str(&fields.join(","));
            out.push('\n');
        };
    for line in &statement.lines {
        let kind = serde_json::to_value(line.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        row(&kind, Some(line), line.amount);
    }
    row("subtotal", None, statement.subtotal);
    row("total", None, statement.total);
    out
}

/// A statement-signing key the provider publishes at
/// `/.well-known/payoff/keys`, with the window it signed in, so statements
/// closed before a rotation still verify.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyWindow {
    /// Hex of the Ed25519 public key (what a statement's signature names).
    pub public_key: String,
    /// When it started signing; `None` for a key made before windows were kept.
    pub valid_from: Option<String>,
    /// When it stopped; `None` for the key in use.
    pub valid_until: Option<String>,
}

impl KeyWindow {
    /// The entry of the keys document: algorithm, id, key and window.
    pub fn published(&self) -> serde_json::Value {
        let id = payoff_billing::parse_public_key(&self.public_key)
            .map(|k| payoff_billing::key_id(&k))
            .ok();
        serde_json::json!({"algorithm": "ed25519", "key_id": id, "public_key": self.public_key,
                           "valid_from": self.valid_from, "valid_until": self.valid_until})
    }
}
