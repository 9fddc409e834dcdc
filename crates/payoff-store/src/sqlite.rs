//! The embedded SQLite backend: one file, WAL journal, `synchronous=FULL`
//! so that a committed transaction survives power loss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use payoff_ledger::{Head, ModelCall};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::borrow::Cow;

use crate::append::{apply_group, Existing, GroupWriter, LedgerTx, NewRow, RequestResult};
use crate::audit::AuditEntry;
use crate::costs::{self, CostFact, CostSink};
use crate::migrations;
use crate::pool::Pool;
use crate::store::{from_us, hash32, Backend, BodySink, TxBody};
use crate::{AppendRequest, StoreError};

pub(crate) struct Sqlite {
    path: PathBuf,
    readers: Pool<Connection>,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn =
        Connection::open(path).map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache keeps the key index of a busy ledger in memory.
    conn.execute_batch(crate::sql::SQLITE_CACHE)?;
    Ok(conn)
}

impl Sqlite {
    pub(crate) fn open(path: &Path) -> Result<Sqlite, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir).map_err(|e| StoreError::Open(format!("{}: {e}", dir.display())))?;
        }
        // The database holds webhook secrets: only its owner reads it.
        // SQLite gives its -wal and -shm files the same mode.
        let mut create = std::fs::OpenOptions::new();
        create.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
        create
            .open(path)
            .map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))?;
        let mut conn = connect(path).map_err(|e| named_open_error(path, e))?;
        migrate(&mut conn).map_err(|e| named_open_error(path, e))?;
        let owned = path.to_owned();
        Ok(Sqlite {
            path: path.to_owned(),
            readers: Pool::new(64, Box::new(move || connect(&owned)), |_, _| false),
        })
    }
}

/// An open that failed on a full disk says so: SQLite's own words are an
/// I/O error about its shared-memory file (it cannot create it), which
/// names nothing an operator acts on.
fn named_open_error(path: &Path, e: StoreError) -> StoreError {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    match fs4::available_space(dir.unwrap_or(Path::new("."))) {
        Ok(free) if free < 1024 * 1024 => StoreError::Open(format!(
            "{}: the disk is full ({free} bytes free on its filesystem): {e}",
            path.display()
        )),
        _ => e,
    }
}

/// Creates `dir` and its missing parents, readable by the owner only.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    migrations::apply(&mut tx)?;
    tx.commit()?;
    Ok(())
}

impl Backend for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn free_space(&self) -> Option<Result<u64, StoreError>> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        Some(
            fs4::available_space(dir.unwrap_or(Path::new(".")))
                .map_err(|e| StoreError::Open(format!("{}: {e}", self.path.display()))),
        )
    }

    fn backup(&self, to: &Path) -> Option<Result<(), StoreError>> {
        let Some(to) = to.to_str() else {
            return Some(Err(StoreError::Open(format!(
                "{} is not a UTF-8 path",
                to.display()
            ))));
        };
        Some(self.readers.with(|c| {
            c.execute("VACUUM INTO ?1", params![to])?;
            Ok(())
        }))
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .with(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
    }

    fn writer(&self) -> Result<Box<dyn GroupWriter>, StoreError> {
        Ok(Box::new(SqliteWriter {
            conn: connect(&self.path)?,
        }))
    }

    fn scan_bodies(
        &self,
        customer: &str,
        up_to: u64,
        types: Option<&[&str]>,
        sink: BodySink<'_>,
    ) -> Result<(), StoreError> {
        self.readers.with(|c| {
            if let Some(types) = types {
                if few_enough(c, customer, up_to, types)? {
                    return merge_by_type(c, customer, up_to, types, sink);
                }
            }
            let mut stmt = c.prepare_cached(
                "SELECT sequence, type, body FROM events WHERE customer_id = ?1 AND sequence <= ?2 ORDER BY sequence",
            )?;
            let mut rows = stmt.query(params![customer, up_to as i64])?;
            while let Some(row) = rows.next()? {
                let kind = row.get_ref(1)?.as_str().map_err(corrupt)?;
                if types.is_none_or(|t| t.contains(&kind)) {
                    let body = row.get_ref(2)?.as_blob().map_err(corrupt)?;
                    sink(row.get::<_, i64>(0)? as u64, body)?;
                }
            }
            Ok(())
        })
    }

    fn scan_costs(
        &self,
        customer: &str,
        up_to: u64,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        sink: CostSink<'_>,
    ) -> Result<(), StoreError> {
        let range = params![
            customer,
            from.timestamp_micros(),
            until.timestamp_micros(),
            up_to as i64
        ];
        self.readers.with(|c| {
            let mut calls = c.prepare_cached(
                "SELECT sequence, event_id, time_us, model, agent, subject, input_tokens, output_tokens, cached_input_tokens,
                 cache_creation_tokens, reasoning_tokens
                 FROM cost_facts WHERE customer_id = ?1 AND time_us >= ?2 AND time_us < ?3 AND sequence <= ?4
                 AND model IS NOT NULL ORDER BY time_us, sequence",
            )?;
            let mut rows = calls.query(range)?;
            while let Some(row) = rows.next()? {
                let text = |i: usize| -> Result<Option<&str>, StoreError> {
                    row.get_ref(i)?.as_str_or_null().map_err(corrupt)
                };
                let count = |i: usize| -> Result<u64, StoreError> {
                    Ok(row.get::<_, i64>(i)?.max(0) as u64)
                };
                sink(CostFact::Call {
                    sequence: row.get::<_, i64>(0)? as u64,
                    event_id: text(1)?.unwrap_or_default(),
                    time: from_us(row.get(2)?),
                    call: ModelCall {
                        model: Cow::Borrowed(text(3)?.unwrap_or_default()),
                        agent: text(4)?.map(Cow::Borrowed),
                        subject: text(5)?.map(Cow::Borrowed),
                        input_tokens: count(6)?,
                        output_tokens: count(7)?,
                        cached_input_tokens: count(8)?,
                        cache_creation_tokens: count(9)?,
                        reasoning_tokens: count(10)?,
                    },
                })?;
            }
            let mut others = c.prepare_cached(
                "SELECT f.sequence, e.body FROM cost_facts f
                 JOIN events e ON e.customer_id = f.customer_id AND e.sequence = f.sequence
                 WHERE f.customer_id = ?1 AND f.time_us >= ?2 AND f.time_us < ?3 AND f.sequence <= ?4
                 AND f.model IS NULL ORDER BY f.time_us, f.sequence",
            )?;
            let mut rows = others.query(range)?;
            while let Some(row) = rows.next()? {
                sink(CostFact::Event {
                    sequence: row.get::<_, i64>(0)? as u64,
                    body: row.get_ref(1)?.as_blob().map_err(corrupt)?,
                })?;
            }
            Ok(())
        })
    }

    fn transaction(&self, write: bool, f: TxBody<'_>) -> Result<(), StoreError> {
        self.in_transaction(write, f)
    }

    fn autocommit(&self, f: TxBody<'_>) -> Result<(), StoreError> {
        self.readers.with(|conn| f(conn))
    }
}

impl Sqlite {
    fn in_transaction(&self, write: bool, f: TxBody<'_>) -> Result<(), StoreError> {
        self.readers.with(|conn| {
            // IMMEDIATE takes the write lock up front, so a read-then-write
            // body cannot fail half way on a busy database.
            conn.execute_batch(if write { "BEGIN IMMEDIATE" } else { "BEGIN" })?;
            match f(conn) {
                Ok(()) => Ok(conn.execute_batch("COMMIT")?),
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }
}

struct SqliteWriter {
    conn: Connection,
}

impl GroupWriter for SqliteWriter {
    fn append_group(
        &mut self,
        requests: &[AppendRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<RequestResult>, StoreError> {
        let mut tx = SqliteTx {
            tx: self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?,
        };
        let results = apply_group(&mut tx, requests, now)?;
        tx.tx.commit()?;
        Ok(results)
    }
}

struct SqliteTx<'c> {
    tx: rusqlite::Transaction<'c>,
}

impl LedgerTx for SqliteTx<'_> {
    fn lock_heads(&mut self, customers: &[&str]) -> Result<HashMap<String, Head>, StoreError> {
        // BEGIN IMMEDIATE already holds the database's write lock.
        let mut stmt = self
            .tx
            .prepare_cached("SELECT sequence, hash FROM ledger_heads WHERE customer_id = ?1")?;
        let mut heads = HashMap::new();
        for customer in customers {
            if let Some((sequence, hash)) = stmt
                .query_row(params![customer], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()?
            {
                heads.insert(
                    customer.to_string(),
                    Head {
                        sequence: sequence as u64,
                        hash: hash32(&hash)?,
                    },
                );
            }
        }
        Ok(heads)
    }

    fn existing(
        &mut self,
        customer: &str,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), Existing>, StoreError> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT sequence, body FROM events WHERE customer_id = ?1 AND source = ?2 AND event_id = ?3")?;
        let mut found = HashMap::new();
        for (source, id) in keys {
            if let Some((sequence, canonical)) = stmt
                .query_row(params![customer, source, id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()?
            {
                found.insert(
                    (source.to_string(), id.to_string()),
                    Existing {
                        sequence: sequence as u64,
                        canonical,
                    },
                );
            }
        }
        Ok(found)
    }

    fn insert(&mut self, rows: &[NewRow<'_>]) -> Result<(), StoreError> {
        insert_rows(&self.tx, rows)
    }

    fn save_heads(&mut self, heads: &HashMap<String, Head>) -> Result<(), StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "UPDATE ledger_heads SET sequence = ?2, hash = ?3 WHERE customer_id = ?1",
        )?;
        for (customer, head) in heads {
            stmt.execute(params![customer, head.sequence as i64, &head.hash[..]])?;
        }
        Ok(())
    }

    fn append_audit(&mut self, entries: &[&AuditEntry]) -> Result<(), StoreError> {
        crate::audit::insert(&mut self.tx, entries).map(|_| ())
    }

    fn probe(&mut self, at_us: i64, pad: &[u8]) -> Result<(), StoreError> {
        crate::sql::Sql::execute(
            &mut self.tx,
            crate::append::PROBE,
            &[crate::sql::Param::Int(Some(at_us)), pad.into()],
        )
        .map(|_| ())
    }
}

/// The one INSERT of events, shared by the writer and the benchmark's
/// physical reference so both write exactly the same rows.
fn insert_rows(conn: &Connection, rows: &[NewRow<'_>]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (customer_id, sequence, source, event_id, type, subject, time_us, recorded_us, body, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut facts = conn.prepare_cached(
        "INSERT INTO cost_facts (customer_id, time_us, sequence, event_id, model, agent, subject, input_tokens, output_tokens, cached_input_tokens,
                                 cache_creation_tokens, reasoning_tokens)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    for row in rows {
        stmt.execute(params![
            row.customer,
            row.sequence as i64,
            row.event.source,
            row.event.id,
            row.event.event_type,
            row.event.subject,
            row.time_us,
            row.recorded_us,
            row.event.canonical,
            &row.hash[..]
        ])?;
        if let Some(call) = costs::indexed(row.event) {
            let call = call.as_ref();
            facts.execute(params![
                row.customer,
                row.time_us,
                row.sequence as i64,
                row.event.id,
                call.map(|c| c.model.as_ref()),
                call.and_then(|c| c.agent.as_deref()),
                call.and_then(|c| c.subject.as_deref()),
                call.map(|c| costs::tokens(c.input_tokens)),
                call.map(|c| costs::tokens(c.output_tokens)),
                call.map(|c| costs::tokens(c.cached_input_tokens)),
                call.map(|c| costs::tokens(c.cache_creation_tokens)),
                call.map(|c| costs::tokens(c.reasoning_tokens)),
            ])?;
        }
    }
    Ok(())
}

/// A stored value of the wrong type: the database was changed by hand.
fn corrupt(e: rusqlite::types::FromSqlError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Whether the events of `types` are few enough (a third of the ledger or
/// less) that reading them through the index by type beats one pass over
/// every event; counted on the index alone, and only up to that third.
fn few_enough(
    c: &Connection,
    customer: &str,
    up_to: u64,
    types: &[&str],
) -> Result<bool, StoreError> {
    let third = (up_to / 3) as i64;
    let mut seen = 0i64;
    for t in types {
        seen += c.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM events INDEXED BY events_by_type
             WHERE customer_id = ?1 AND type = ?2 AND sequence <= ?3 LIMIT ?4)",
            params![customer, t, up_to as i64, third - seen + 1],
            |r| r.get::<_, i64>(0),
        )?;
        if seen > third {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The events of `types` in chain order: one walk of the index by type per
/// type, merged by sequence.
fn merge_by_type(
    c: &Connection,
    customer: &str,
    up_to: u64,
    types: &[&str],
    sink: BodySink<'_>,
) -> Result<(), StoreError> {
    let mut statements = types
        .iter()
        .map(|_| {
            c.prepare(
                "SELECT sequence, body FROM events INDEXED BY events_by_type
                 WHERE customer_id = ?1 AND type = ?2 AND sequence <= ?3 ORDER BY sequence",
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut cursors = statements
        .iter_mut()
        .zip(types)
        .map(|(s, t)| s.query(params![customer, t, up_to as i64]))
        .collect::<Result<Vec<_>, _>>()?;
    let next = |rows: &mut rusqlite::Rows<'_>| -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Ok(match rows.next()? {
            Some(row) => Some((row.get::<_, i64>(0)? as u64, row.get(1)?)),
            None => None,
        })
    };
    let mut heads = cursors
        .iter_mut()
        .map(next)
        .collect::<Result<Vec<_>, _>>()?;
    while let Some(i) = (0..heads.len())
        .filter(|&i| heads[i].is_some())
        .min_by_key(|&i| heads[i].as_ref().map(|(s, _)| *s))
    {
        let (sequence, body) = heads[i].take().expect("a head");
        sink(sequence, &body)?;
        heads[i] = next(&mut cursors[i])?;
    }
    Ok(())
}

/// Inserts `events` straight into a new SQLite database at `path` in one
/// transaction, with no idempotency checks: the physical floor that the
/// ingest benchmark compares itself to. Returns the time from BEGIN to the
/// end of COMMIT.
pub(crate) fn reference_insert(
    path: &Path,
    customer: &str,
    events: &[payoff_ledger::Event],
) -> Result<std::time::Duration, StoreError> {
    let mut conn = connect(path)?;
    migrate(&mut conn)?;
    conn.execute(
        "INSERT INTO customers (id, name, created_us) VALUES (?1, ?1, 0)",
        params![customer],
    )?;
    let now = payoff_clock::wall().timestamp_micros();
    let mut head = Head::EMPTY;
    let rows: Vec<NewRow<'_>> = events
        .iter()
        .map(|event| {
            head = head.append(&event.canonical);
            NewRow {
                customer,
                sequence: head.sequence,
                event,
                time_us: event.time.map_or(now, |t| t.timestamp_micros()),
                recorded_us: now,
                hash: head.hash,
            }
        })
        .collect();
    let started = std::time::Instant::now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    insert_rows(&tx, &rows)?;
    tx.commit()?;
    Ok(started.elapsed())
}
