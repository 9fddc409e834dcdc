//! Appending events: group commit and the idempotency rules.
//!
//! One writer thread per process drains the queue of append requests,
//! applies as many as are waiting in one transaction, commits it (with
//! fsync), and only then answers every request of the group. A request is
//! all-or-nothing: if any of its events conflicts with a stored one, none of
//! its events is written, while the other requests of the group go ahead.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use payoff_ledger::{Event, Head};
use tokio::sync::{mpsc, oneshot};

use crate::{AuditEntry, StoreError};

/// An event and the customer whose ledger it goes to.
#[derive(Debug, Clone)]
pub struct Routed {
    pub customer: String,
    pub event: Event,
}

/// The events of one client request: appended together or not at all.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub events: Vec<Routed>,
    /// Audit records of the request, written in the same transaction as
    /// its events when it is accepted: one commit (one fsync) makes both
    /// durable, and neither stands without the other.
    pub audit: Vec<AuditEntry>,
}

impl AppendRequest {
    pub fn new(events: Vec<Routed>) -> AppendRequest {
        AppendRequest {
            events,
            audit: Vec::new(),
        }
    }
}

/// What became of one event of an accepted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventStatus {
    /// The event's place in its customer's chain (the earlier one for a duplicate).
    pub sequence: u64,
    /// The same key with the same content was already stored.
    pub duplicate: bool,
}

/// Why a request was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("event {index} (source \"{event_source}\", id \"{id}\") conflicts with a stored event with the same source and id but different content")]
    Conflict {
        index: usize,
        event_source: String,
        id: String,
    },
    #[error("unknown customer \"{0}\"")]
    UnknownCustomer(String),
}

pub(crate) type RequestResult = Result<Vec<EventStatus>, AppendError>;

/// A row about to be inserted.
pub(crate) struct NewRow<'a> {
    pub customer: &'a str,
    pub sequence: u64,
    pub event: &'a Event,
    /// Event time if it has one, else the time it was recorded.
    pub time_us: i64,
    pub recorded_us: i64,
    pub hash: [u8; 32],
}

/// A stored event found under a requested key.
pub(crate) struct Existing {
    pub sequence: u64,
    pub canonical: Vec<u8>,
}

/// The few statements the append algorithm needs from a backend, all
/// inside one open transaction.
pub(crate) trait LedgerTx {
    /// Locks and reads the heads of these customers (sorted, so that two
    /// nodes never lock in opposite orders). Unknown customers are absent.
    fn lock_heads(&mut self, customers: &[&str]) -> Result<HashMap<String, Head>, StoreError>;
    /// The stored events among these `(source, id)` keys of one customer.
    fn existing(
        &mut self,
        customer: &str,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), Existing>, StoreError>;
    fn insert(&mut self, rows: &[NewRow<'_>]) -> Result<(), StoreError>;
    fn save_heads(&mut self, heads: &HashMap<String, Head>) -> Result<(), StoreError>;
    /// Appends these records to the audit chain, in order.
    fn append_audit(&mut self, entries: &[&AuditEntry]) -> Result<(), StoreError>;
    /// The readiness probe's write ([`PROBE`]): proof that this writer
    /// can still make something durable.
    fn probe(&mut self, at_us: i64, pad: &[u8]) -> Result<(), StoreError>;
}

/// The readiness probe writes one row, padded, in place of nothing: an
/// empty transaction commits on a full disk or a read-only database
/// (writing nothing), so a probe that wrote nothing said "ready" while
/// every event was refused. The pad makes the probe need a few pages of
/// space, as a small group of events does.
pub(crate) const PROBE: &str = "INSERT INTO ledger_probe (id, at_us, pad) VALUES (1, ?, ?)
    ON CONFLICT (id) DO UPDATE SET at_us = excluded.at_us, pad = excluded.pad";
/// The probe's pad, in bytes.
pub(crate) const PROBE_PAD: usize = 16 * 1024;
/// Migration 20: the probe's table (one row).
pub(crate) const SCHEMA_PROBE: &str =
    "CREATE TABLE ledger_probe (id BIGINT PRIMARY KEY, at_us BIGINT NOT NULL, pad BYTEA NOT NULL)";

/// Applies a group of requests inside `tx`; the caller commits.
///
/// The whole group costs one lookup per customer and one insert, whatever
/// the number of requests, so that many small requests are as cheap for
/// the database as one large one.
pub(crate) fn apply_group(
    tx: &mut impl LedgerTx,
    requests: &[AppendRequest],
    now: DateTime<Utc>,
) -> Result<Vec<RequestResult>, StoreError> {
    let mut keys_by_customer: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for routed in requests.iter().flat_map(|r| &r.events) {
        keys_by_customer
            .entry(&routed.customer)
            .or_default()
            .push((&routed.event.source, &routed.event.id));
    }
    let customers: Vec<&str> = keys_by_customer.keys().copied().collect();
    // A group with nothing in it is the readiness probe: it writes its row.
    if customers.is_empty() && requests.iter().all(|r| r.audit.is_empty()) {
        tx.probe(now.timestamp_micros(), &[0u8; PROBE_PAD])?;
        return Ok(requests.iter().map(|_| Ok(Vec::new())).collect());
    }
    let mut heads = if customers.is_empty() {
        HashMap::new()
    } else {
        tx.lock_heads(&customers)?
    };
    let locked = heads.clone();
    let mut found: Vec<(&str, (String, String), Existing)> = Vec::new();
    for (customer, keys) in &keys_by_customer {
        if heads.contains_key(*customer) {
            found.extend(
                tx.existing(customer, keys)?
                    .into_iter()
                    .map(|(key, existing)| (*customer, key, existing)),
            );
        }
    }
    let stored: HashMap<(&str, &str, &str), (u64, &[u8])> = found
        .iter()
        .map(|(c, (source, id), e)| {
            (
                (*c, source.as_str(), id.as_str()),
                (e.sequence, e.canonical.as_slice()),
            )
        })
        .collect();

    let recorded_us = now.timestamp_micros();
    let mut group = GroupState {
        heads: &mut heads,
        stored: &stored,
        pending: HashMap::new(),
        rows: Vec::new(),
    };
    let results: Vec<RequestResult> = requests
        .iter()
        .map(|request| group.apply(request, recorded_us))
        .collect();
    let GroupState { rows, .. } = group;
    if !rows.is_empty() {
        check_chain(&locked, &rows, &heads)?;
        tx.insert(&rows)?;
        let touched: HashMap<String, Head> = rows
            .iter()
            .map(|r| (r.customer.to_owned(), heads[r.customer]))
            .collect();
        tx.save_heads(&touched)?;
    }
    let audit: Vec<&AuditEntry> = requests
        .iter()
        .zip(&results)
        .filter(|(_, result)| result.is_ok())
        .flat_map(|(request, _)| &request.audit)
        .collect();
    // Only a group that carries audit records touches the audit chain (on
    // PostgreSQL a table lock), so plain ingest never waits for it.
    if !audit.is_empty() {
        tx.append_audit(&audit)?;
    }
    Ok(results)
}

/// Production assertion, before anything is written: each customer's new
/// rows continue its locked head without a gap or a repeat, and the head
/// saved with them is the last row's. A group that breaks it (a refused
/// request's sequence leaking into the next, a head cached across
/// transactions) fails whole instead of writing a chain `ledger verify`
/// would later find broken.
fn check_chain(
    locked: &HashMap<String, Head>,
    rows: &[NewRow<'_>],
    heads: &HashMap<String, Head>,
) -> Result<(), StoreError> {
    let mut last: HashMap<&str, (u64, [u8; 32])> = HashMap::new();
    for row in rows {
        let before = last
            .get(row.customer)
            .map(|(sequence, _)| *sequence)
            .or_else(|| locked.get(row.customer).map(|h| h.sequence));
        if before.map(|s| s + 1) != Some(row.sequence) {
            return Err(StoreError::Invariant(format!(
                "chain of {}: sequence {} follows {before:?}",
                row.customer, row.sequence
            )));
        }
        last.insert(row.customer, (row.sequence, row.hash));
    }
    for (customer, (sequence, hash)) in last {
        let head = heads.get(customer);
        if head.map(|h| (h.sequence, h.hash)) != Some((sequence, hash)) {
            return Err(StoreError::Invariant(format!(
                "chain of {customer}: the head saved is not the last row ({sequence})"
            )));
        }
    }
    Ok(())
}

/// What a group has decided so far: chain heads, and the events accepted
/// by its earlier requests (so a later request sees them as stored).
struct GroupState<'g, 'r> {
    heads: &'g mut HashMap<String, Head>,
    stored: &'g HashMap<(&'g str, &'g str, &'g str), (u64, &'g [u8])>,
    pending: HashMap<(&'r str, &'r str, &'r str), (u64, &'r [u8])>,
    rows: Vec<NewRow<'r>>,
}

impl<'r> GroupState<'_, 'r> {
    /// Classifies every event of one request; keeps its rows only if none conflicts.
    fn apply(&mut self, request: &'r AppendRequest, recorded_us: i64) -> RequestResult {
        if let Some(unknown) = request
            .events
            .iter()
            .find(|r| !self.heads.contains_key(&r.customer))
        {
            return Err(AppendError::UnknownCustomer(unknown.customer.clone()));
        }
        let mut new_heads: HashMap<&str, Head> = HashMap::new();
        let mut mine: HashMap<(&str, &str, &str), (u64, &[u8])> = HashMap::new();
        let mut rows = Vec::new();
        let mut statuses = Vec::with_capacity(request.events.len());
        for (index, routed) in request.events.iter().enumerate() {
            let (customer, event) = (routed.customer.as_str(), &routed.event);
            let key = (customer, event.source.as_str(), event.id.as_str());
            let earlier = mine
                .get(&key)
                .or_else(|| self.pending.get(&key))
                .copied()
                .or_else(|| self.stored.get(&key).copied());
            if let Some((sequence, canonical)) = earlier {
                if canonical != event.canonical.as_slice() {
                    return Err(AppendError::Conflict {
                        index,
                        event_source: event.source.clone(),
                        id: event.id.clone(),
                    });
                }
                statuses.push(EventStatus {
                    sequence,
                    duplicate: true,
                });
                continue;
            }
            let head = new_heads
                .entry(customer)
                .or_insert_with(|| self.heads[customer]);
            *head = head.append(&event.canonical);
            mine.insert(key, (head.sequence, &event.canonical));
            rows.push(NewRow {
                customer,
                sequence: head.sequence,
                event,
                time_us: event.time.map_or(recorded_us, |t| t.timestamp_micros()),
                recorded_us,
                hash: head.hash,
            });
            statuses.push(EventStatus {
                sequence: head.sequence,
                duplicate: false,
            });
        }
        for (customer, head) in new_heads {
            self.heads.insert(customer.to_owned(), head);
        }
        self.pending.extend(mine);
        self.rows.extend(rows);
        Ok(statuses)
    }
}

/// A backend's side of the writer: runs one group in one durable transaction.
pub(crate) trait GroupWriter: Send {
    /// Whether `error`, from this writer's last group, means its connection
    /// is gone (the server ended the session): the group is then tried once
    /// more on a new connection.
    fn is_gone(&self, _error: &StoreError) -> bool {
        false
    }
    fn append_group(
        &mut self,
        requests: &[AppendRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<RequestResult>, StoreError>;
}

/// Bounds of the writer's queue and of one group transaction.
#[derive(Debug, Clone, Copy)]
pub struct LedgerConfig {
    /// Requests waiting for the writer before senders wait too (back-pressure).
    pub queue_requests_max: usize,
    /// Events gathered into one transaction at most.
    pub group_events_max: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            queue_requests_max: 4096,
            group_events_max: 50_000,
        }
    }
}

type Reply = oneshot::Sender<Result<RequestResult, StoreError>>;

/// The handle through which every event is appended.
#[derive(Clone)]
pub struct Ledger {
    queue: mpsc::Sender<(AppendRequest, Reply)>,
    /// Why the last group failed, while the writer has not committed one
    /// since: `/readyz` reports it rather than saying ready while every
    /// write fails.
    fault: Arc<Mutex<Option<String>>>,
    /// Counts the groups that stored events: followers of the ledger (the
    /// webhook outbox) wake on it instead of polling.
    appended: tokio::sync::watch::Receiver<u64>,
}

/// The first wait before connecting again after a failed connect; doubled
/// after each failure up to [`RECONNECT_WAIT_MAX`].
const RECONNECT_WAIT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_WAIT_MAX: Duration = Duration::from_secs(5);

/// The writer's connection, opened again after it fails: a dropped database
/// connection costs the groups written while it was down, not every write
/// until the process restarts.
struct Connection {
    connect: Box<dyn Fn() -> Result<Box<dyn GroupWriter>, StoreError> + Send>,
    writer: Option<Box<dyn GroupWriter>>,
    /// No connect is tried before this instant (backoff).
    retry_at: Option<Instant>,
    wait: Duration,
}

impl Connection {
    fn writer(&mut self) -> Result<&mut Box<dyn GroupWriter>, StoreError> {
        if self.writer.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(StoreError::Open(
                    "the database connection is lost; reconnecting".into(),
                ));
            }
            match (self.connect)() {
                Ok(w) => {
                    self.writer = Some(w);
                    self.retry_at = None;
                    self.wait = RECONNECT_WAIT_MIN;
                }
                Err(e) => {
                    self.retry_at = Some(Instant::now() + self.wait);
                    self.wait = (self.wait * 2).min(RECONNECT_WAIT_MAX);
                    return Err(e);
                }
            }
        }
        Ok(self.writer.as_mut().expect("connected above"))
    }
}

impl Ledger {
    /// Starts the writer thread. The thread opens its own connection (the
    /// PostgreSQL client may not be created inside an async runtime, and
    /// this is called from one), and reports whether that worked. After a
    /// failed group the connection is dropped and `connect` opens another
    /// for the next group, with backoff.
    pub(crate) fn start(
        connect: Box<dyn Fn() -> Result<Box<dyn GroupWriter>, StoreError> + Send>,
        config: LedgerConfig,
    ) -> Result<Ledger, StoreError> {
        let (queue, mut inbox) = mpsc::channel::<(AppendRequest, Reply)>(config.queue_requests_max);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let fault = Arc::new(Mutex::new(None::<String>));
        let writer_fault = fault.clone();
        let (appended_tx, appended) = tokio::sync::watch::channel(0u64);
        thread::Builder::new()
            .name("payoff-ledger-writer".into())
            .spawn(move || {
                let mut connection = Connection {
                    connect,
                    writer: None,
                    retry_at: None,
                    wait: RECONNECT_WAIT_MIN,
                };
                if let Err(e) = connection.writer() {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                let _ = ready_tx.send(Ok(()));
                while let Some(first) = inbox.blocking_recv() {
                    let mut events = first.0.events.len();
                    let mut group = vec![first];
                    while events < config.group_events_max {
                        match inbox.try_recv() {
                            Ok(next) => {
                                events += next.0.events.len();
                                group.push(next);
                            }
                            Err(_) => break,
                        }
                    }
                    let (requests, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
                    let mut written = connection
                        .writer()
                        .and_then(|w| w.append_group(&requests, payoff_clock::wall()));
                    let gone = match (&written, &connection.writer) {
                        (Err(e), Some(w)) => w.is_gone(e),
                        _ => false,
                    };
                    if gone {
                        // The connection was gone (dropped by the server, a
                        // failover): the group is tried once more on a new
                        // one. Had it committed before the connection broke,
                        // the retry finds its events stored and reports them
                        // as duplicates: never stored twice.
                        connection.writer = None;
                        written = connection
                            .writer()
                            .and_then(|w| w.append_group(&requests, payoff_clock::wall()));
                    }
                    match written {
                        Ok(results) => {
                            *writer_fault.lock().expect("ledger fault") = None;
                            if requests.iter().any(|r| !r.events.is_empty()) {
                                appended_tx.send_modify(|groups| *groups += 1);
                            }
                            for (reply, result) in replies.into_iter().zip(results) {
                                let _ = reply.send(Ok(result));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "ledger group commit failed; nothing of it was acknowledged");
                            // The connection may be broken (dropped by the
                            // server, a failover): the next group opens another.
                            connection.writer = None;
                            let (cause, detail) = (crate::error::write_cause(&e), e.to_string());
                            *writer_fault.lock().expect("ledger fault") = Some(format!("{cause} ({detail})"));
                            for reply in replies {
                                let _ = reply.send(Err(StoreError::WriteFailed { cause, detail: detail.clone() }));
                            }
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Open(format!("cannot start the ledger writer: {e}")))?;
        ready_rx.recv().map_err(|_| StoreError::WriterGone)??;
        Ok(Ledger {
            queue,
            fault,
            appended,
        })
    }

    /// Changes whenever a group of events has been stored by this process.
    pub fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.clone()
    }

    /// Why appends are failing, if the last group failed and none has been
    /// committed since.
    pub fn fault(&self) -> Option<String> {
        self.fault.lock().expect("ledger fault").clone()
    }

    /// Appends one request; resolves once it is durable, refused, or failed.
    pub async fn append(&self, request: AppendRequest) -> Result<RequestResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// The blocking form, for callers outside an async runtime (the CLI, tests).
    pub fn append_blocking(&self, request: AppendRequest) -> Result<RequestResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .blocking_send((request, reply))
            .map_err(|_| StoreError::WriterGone)?;
        answer.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payoff_ledger::{validate_event, EventLimits};

    /// An in-memory transaction: the algorithm without a database.
    #[derive(Default)]
    struct MemoryTx {
        heads: HashMap<String, Head>,
        rows: Vec<(String, u64, String, String, Vec<u8>)>,
        lookups: usize,
        inserts: usize,
        audit: Vec<String>,
        probes: usize,
    }

    impl LedgerTx for MemoryTx {
        fn lock_heads(&mut self, customers: &[&str]) -> Result<HashMap<String, Head>, StoreError> {
            Ok(customers
                .iter()
                .filter_map(|c| self.heads.get(*c).map(|h| (c.to_string(), *h)))
                .collect())
        }
        fn existing(
            &mut self,
            customer: &str,
            keys: &[(&str, &str)],
        ) -> Result<HashMap<(String, String), Existing>, StoreError> {
            self.lookups += 1;
            Ok(self
                .rows
                .iter()
                .filter(|(c, _, s, i, _)| c == customer && keys.contains(&(s.as_str(), i.as_str())))
                .map(|(_, seq, s, i, body)| {
                    (
                        (s.clone(), i.clone()),
                        Existing {
                            sequence: *seq,
                            canonical: body.clone(),
                        },
                    )
                })
                .collect())
        }
        fn insert(&mut self, rows: &[NewRow<'_>]) -> Result<(), StoreError> {
            self.inserts += 1;
            self.rows.extend(rows.iter().map(|r| {
                (
                    r.customer.to_owned(),
                    r.sequence,
                    r.event.source.clone(),
                    r.event.id.clone(),
                    r.event.canonical.clone(),
                )
            }));
            Ok(())
        }
        fn save_heads(&mut self, heads: &HashMap<String, Head>) -> Result<(), StoreError> {
            self.heads
                .extend(heads.iter().map(|(c, h)| (c.clone(), *h)));
            Ok(())
        }
        fn append_audit(&mut self, entries: &[&AuditEntry]) -> Result<(), StoreError> {
            self.audit
                .extend(entries.iter().map(|e| e.resource.clone()));
            Ok(())
        }
        fn probe(&mut self, _: i64, _: &[u8]) -> Result<(), StoreError> {
            self.probes += 1;
            Ok(())
        }
    }

    fn request(events: &[(&str, &str, &str)]) -> AppendRequest {
        AppendRequest::new(
            events
                .iter()
                .map(|(customer, id, body)| Routed {
                    customer: customer.to_string(),
                    event: validate_event(
                        serde_json::json!({"specversion": "1.0", "id": id, "source": "s", "type": "t", "data": body}),
                        &EventLimits::default(),
                    )
                    .unwrap(),
                })
                .collect(),
        )
    }

    fn outcome(r: &RequestResult) -> Result<Vec<(u64, bool)>, AppendError> {
        r.clone()
            .map(|s| s.iter().map(|s| (s.sequence, s.duplicate)).collect())
    }

    #[test]
    fn a_group_whose_rows_skip_a_sequence_writes_nothing() {
        let event = request(&[("acme", "1", "{}")]).events.remove(0).event;
        let locked = HashMap::from([("acme".to_string(), Head::EMPTY)]);
        let head = Head::EMPTY.append(&event.canonical);
        let row = |sequence| NewRow {
            customer: "acme",
            sequence,
            event: &event,
            time_us: 0,
            recorded_us: 0,
            hash: head.hash,
        };
        let heads = HashMap::from([("acme".to_string(), head)]);
        assert!(check_chain(&locked, &[row(1)], &heads).is_ok());
        for (rows, why) in [
            (vec![row(2)], "a gap"),
            (vec![row(1), row(1)], "a repeat"),
            (vec![row(0)], "a step back"),
        ] {
            let e = check_chain(&locked, &rows, &heads).unwrap_err();
            assert!(matches!(e, StoreError::Invariant(_)), "{why}: {e}");
        }
        let stale = HashMap::from([("acme".to_string(), Head::EMPTY)]);
        assert!(
            check_chain(&locked, &[row(1)], &stale).is_err(),
            "a head not saved"
        );
    }

    #[test]
    fn one_group_sees_its_own_earlier_requests_and_isolates_refused_ones() {
        let mut tx = MemoryTx::default();
        tx.heads.insert("acme".into(), Head::EMPTY);
        let audited = |mut r: AppendRequest, resource: &str| {
            r.audit.push(AuditEntry {
                at: payoff_clock::wall(),
                actor: "key_1".into(),
                role: None,
                customer: Some("acme".into()),
                action: "authorize_action".into(),
                resource: resource.into(),
                decision: "allow".into(),
                reason: String::new(),
                policy_ids: Vec::new(),
            });
            r
        };
        let requests = [
            audited(request(&[("acme", "e1", "a"), ("acme", "e2", "b")]), "r1"),
            audited(request(&[("acme", "e2", "b"), ("acme", "e3", "c")]), "r2"),
            audited(
                request(&[("acme", "e5", "x"), ("acme", "e1", "changed")]),
                "r3",
            ),
            request(&[("acme", "e6", "y"), ("nobody", "e1", "a")]),
            audited(request(&[("acme", "e4", "d")]), "r5"),
        ];
        let results = apply_group(&mut tx, &requests, payoff_clock::wall()).unwrap();
        assert_eq!(outcome(&results[0]), Ok(vec![(1, false), (2, false)]));
        assert_eq!(outcome(&results[1]), Ok(vec![(2, true), (3, false)]));
        assert_eq!(
            outcome(&results[2]),
            Err(AppendError::Conflict {
                index: 1,
                event_source: "s".into(),
                id: "e1".into()
            })
        );
        assert_eq!(
            outcome(&results[3]),
            Err(AppendError::UnknownCustomer("nobody".into()))
        );
        assert_eq!(outcome(&results[4]), Ok(vec![(4, false)]));
        let ids: Vec<&str> = tx.rows.iter().map(|r| r.3.as_str()).collect();
        assert_eq!(
            ids,
            ["e1", "e2", "e3", "e4"],
            "refused requests leave nothing behind"
        );
        assert_eq!(tx.heads["acme"].sequence, 4);
        assert_eq!(
            tx.audit,
            ["r1", "r2", "r5"],
            "the audit records of accepted requests only, in their order"
        );
        assert_eq!(
            (tx.lookups, tx.inserts),
            (1, 1),
            "one lookup per customer and one insert per group"
        );
    }
}
