//! The PostgreSQL backend, for production and for several server nodes
//! sharing one database. Every session runs with `synchronous_commit = on`,
//! and ledger heads are row-locked, so nodes append to a chain one at a time.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use payoff_ledger::{Head, ModelCall};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

use crate::append::{apply_group, Existing, GroupWriter, LedgerTx, NewRow, RequestResult};
use crate::audit::AuditEntry;
use crate::costs::{self, CostFact, CostSink};
use crate::migrations;
use crate::pool::Pool;
use crate::sql::postgres::{Cached, Prepared};
use crate::store::{from_us, hash32, Backend, BodySink, TxBody};
use crate::{AppendRequest, StoreError};

pub(crate) struct Postgres {
    config: Config,
    readers: Pool<Conn>,
}

/// A pooled connection and the statements it has prepared (for the SQL
/// layer, [`Cached`], in a transaction or in autocommit).
pub(crate) struct Conn {
    client: Client,
    prepared: Prepared,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

fn connect(config: &Config) -> Result<Client, StoreError> {
    let mut client = config.connect(NoTls)?;
    // Statements are prepared once per connection (`Cached`), but each
    // execution is still planned for its own parameters: a generic plan,
    // which PostgreSQL adopts after five executions, made the fold's
    // batch reads ten times slower at 1M events (3,301 against 35k
    // events/s).
    client.batch_execute("SET synchronous_commit = on; SET plan_cache_mode = force_custom_plan")?;
    Ok(client)
}

/// Rows per INSERT statement; keeps each statement's parameters bounded.
const INSERT_ROWS_MAX: usize = 5_000;

impl Postgres {
    pub(crate) fn open(url: &str) -> Result<Postgres, StoreError> {
        let config = Config::from_str(url)
            .map_err(|e| StoreError::Open(format!("invalid PostgreSQL URL: {e}")))?;
        let mut client = connect(&config)
            .map_err(|e| StoreError::Open(format!("cannot connect to PostgreSQL: {e}")))?;
        migrate(&mut client)?;
        let owned = config.clone();
        Ok(Postgres {
            config,
            readers: Pool::new(
                64,
                Box::new(move || {
                    Ok(Conn {
                        client: connect(&owned)?,
                        prepared: Prepared::default(),
                    })
                }),
                |c: &Conn, e: &StoreError| connection_gone(c, e),
            ),
        })
    }
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    // Several nodes may start at once; one migrates, the others wait.
    tx.execute("SELECT pg_advisory_xact_lock(7243001)", &[])?;
    migrations::apply(&mut Cached {
        client: &mut tx,
        prepared: &mut Prepared::default(),
    })?;
    tx.commit()?;
    Ok(())
}

impl Backend for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn free_space(&self) -> Option<Result<u64, StoreError>> {
        None
    }

    fn backup(&self, _to: &std::path::Path) -> Option<Result<(), StoreError>> {
        None
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .with_retry(|c| Ok(c.batch_execute("SELECT 1")?))
    }

    fn writer(&self) -> Result<Box<dyn GroupWriter>, StoreError> {
        Ok(Box::new(PostgresWriter {
            client: connect(&self.config)?,
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
            let up_to = up_to as i64;
            let mut rows = match types {
                None => {
                    let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&customer, &up_to];
                    c.query_raw(
                        "SELECT sequence, body FROM events WHERE customer_id = $1 AND sequence <= $2 ORDER BY sequence",
                        params,
                    )?
                }
                Some(types) => {
                    let params: [&(dyn postgres::types::ToSql + Sync); 3] =
                        [&customer, &up_to, &types];
                    c.query_raw(
                        "SELECT sequence, body FROM events WHERE customer_id = $1 AND sequence <= $2
                         AND type = ANY($3::TEXT[]) ORDER BY sequence",
                        params,
                    )?
                }
            };
            while let Some(row) = rows.next()? {
                sink(row.get::<_, i64>(0) as u64, row.get::<_, &[u8]>(1))?;
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
        self.readers.with(|c| {
            let (from, until, up_to) = (from.timestamp_micros(), until.timestamp_micros(), up_to as i64);
            let params: [&(dyn postgres::types::ToSql + Sync); 4] = [&customer, &from, &until, &up_to];
            {
            let mut rows = c.query_raw(
                "SELECT sequence, event_id, time_us, model, agent, subject, input_tokens, output_tokens, cached_input_tokens,
                 cache_creation_tokens, reasoning_tokens
                 FROM cost_facts WHERE customer_id = $1 AND time_us >= $2 AND time_us < $3 AND sequence <= $4
                 AND model IS NOT NULL ORDER BY time_us, sequence",
                params,
            )?;
            while let Some(row) = rows.next()? {
                let count = |i: usize| row.get::<_, i64>(i).max(0) as u64;
                sink(CostFact::Call {
                    sequence: row.get::<_, i64>(0) as u64,
                    event_id: row.get(1),
                    time: from_us(row.get(2)),
                    call: ModelCall {
                        model: Cow::Borrowed(row.get(3)),
                        agent: row.get::<_, Option<&str>>(4).map(Cow::Borrowed),
                        subject: row.get::<_, Option<&str>>(5).map(Cow::Borrowed),
                        input_tokens: count(6),
                        output_tokens: count(7),
                        cached_input_tokens: count(8),
                        cache_creation_tokens: count(9),
                        reasoning_tokens: count(10),
                    },
                })?;
            }
            }
            let mut rows = c.query_raw(
                "SELECT f.sequence, e.body FROM cost_facts f
                 JOIN events e ON e.customer_id = f.customer_id AND e.sequence = f.sequence
                 WHERE f.customer_id = $1 AND f.time_us >= $2 AND f.time_us < $3 AND f.sequence <= $4
                 AND f.model IS NULL ORDER BY f.time_us, f.sequence",
                params,
            )?;
            while let Some(row) = rows.next()? {
                sink(CostFact::Event {
                    sequence: row.get::<_, i64>(0) as u64,
                    body: row.get(1),
                })?;
            }
            Ok(())
        })
    }

    fn transaction(&self, write: bool, f: TxBody<'_>) -> Result<(), StoreError> {
        // A body that began on a lost connection is not run again (see
        // `Store::run`); one that never began is, on a new connection.
        self.readers.with_retry(|c| {
            let Conn { client, prepared } = c;
            let mut tx = if write {
                client.transaction()?
            } else {
                client
                    .build_transaction()
                    .read_only(true)
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .start()?
            };
            f(&mut Cached {
                client: &mut tx,
                prepared,
            })?;
            tx.commit()?;
            Ok(())
        })
    }

    fn autocommit(&self, f: TxBody<'_>) -> Result<(), StoreError> {
        // Every request's first query (its key) comes this way: after an
        // outage it meets the lost session, and tries again on a new one
        // rather than failing.
        self.readers.with_retry(|c| {
            f(&mut Cached {
                client: &mut c.client,
                prepared: &mut c.prepared,
            })
        })
    }
}

struct PostgresWriter {
    client: Client,
}

/// Whether `error` means the session is over: the client saw the socket
/// close, or the server said it is ending the session (SQLSTATE class 57P:
/// an administrator, a shutdown, a crash) or the connection failed (08).
fn connection_gone(client: &Client, error: &StoreError) -> bool {
    client.is_closed()
        || matches!(error, StoreError::Postgres(e) if e.is_closed()
            || e.code().is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08")))
}

impl GroupWriter for PostgresWriter {
    fn is_gone(&self, error: &StoreError) -> bool {
        connection_gone(&self.client, error)
    }

    fn append_group(
        &mut self,
        requests: &[AppendRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<RequestResult>, StoreError> {
        let mut tx = PostgresTx {
            tx: self.client.transaction()?,
        };
        let results = apply_group(&mut tx, requests, now)?;
        tx.tx.commit()?;
        Ok(results)
    }
}

struct PostgresTx<'c> {
    tx: postgres::Transaction<'c>,
}

impl LedgerTx for PostgresTx<'_> {
    fn lock_heads(&mut self, customers: &[&str]) -> Result<HashMap<String, Head>, StoreError> {
        let rows = self.tx.query(
            "SELECT customer_id, sequence, hash FROM ledger_heads WHERE customer_id = ANY($1) ORDER BY customer_id FOR UPDATE",
            &[&customers],
        )?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get(0),
                    Head {
                        sequence: r.get::<_, i64>(1) as u64,
                        hash: hash32(r.get(2))?,
                    },
                ))
            })
            .collect()
    }

    fn existing(
        &mut self,
        customer: &str,
        keys: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), Existing>, StoreError> {
        let sources: Vec<&str> = keys.iter().map(|k| k.0).collect();
        let ids: Vec<&str> = keys.iter().map(|k| k.1).collect();
        let rows = self.tx.query(
            // One index lookup per key. `OFFSET 0` stops the planner from
            // flattening the lateral subquery into a hash join over all of
            // the customer's events, which it does while the table has no
            // statistics yet and which makes every append linear in its size.
            "SELECT e.source, e.event_id, e.sequence, e.body
             FROM unnest($2::TEXT[], $3::TEXT[]) AS k(source, event_id)
             CROSS JOIN LATERAL (
                 SELECT source, event_id, sequence, body FROM events
                 WHERE customer_id = $1 AND source = k.source AND event_id = k.event_id
                 OFFSET 0
             ) AS e",
            &[&customer, &sources, &ids],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    (r.get(0), r.get(1)),
                    Existing {
                        sequence: r.get::<_, i64>(2) as u64,
                        canonical: r.get(3),
                    },
                )
            })
            .collect())
    }

    fn insert(&mut self, rows: &[NewRow<'_>]) -> Result<(), StoreError> {
        let statement = self.tx.prepare(
            "INSERT INTO events (customer_id, sequence, source, event_id, type, subject, time_us, recorded_us, body, hash)
             SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
                                  $7::BIGINT[], $8::BIGINT[], $9::BYTEA[], $10::BYTEA[])",
        )?;
        for chunk in rows.chunks(INSERT_ROWS_MAX) {
            let customers: Vec<&str> = chunk.iter().map(|r| r.customer).collect();
            let sequences: Vec<i64> = chunk.iter().map(|r| r.sequence as i64).collect();
            let sources: Vec<&str> = chunk.iter().map(|r| r.event.source.as_str()).collect();
            let ids: Vec<&str> = chunk.iter().map(|r| r.event.id.as_str()).collect();
            let types: Vec<&str> = chunk.iter().map(|r| r.event.event_type.as_str()).collect();
            let subjects: Vec<Option<&str>> =
                chunk.iter().map(|r| r.event.subject.as_deref()).collect();
            let times: Vec<i64> = chunk.iter().map(|r| r.time_us).collect();
            let recorded: Vec<i64> = chunk.iter().map(|r| r.recorded_us).collect();
            let bodies: Vec<&[u8]> = chunk.iter().map(|r| r.event.canonical.as_slice()).collect();
            let hashes: Vec<&[u8]> = chunk.iter().map(|r| &r.hash[..]).collect();
            self.tx.execute(
                &statement,
                &[
                    &customers, &sequences, &sources, &ids, &types, &subjects, &times, &recorded,
                    &bodies, &hashes,
                ],
            )?;
        }
        let facts: Vec<(&NewRow<'_>, Option<ModelCall<'_>>)> = rows
            .iter()
            .filter_map(|r| costs::indexed(r.event).map(|call| (r, call)))
            .collect();
        if facts.is_empty() {
            return Ok(());
        }
        let statement = self.tx.prepare(
            "INSERT INTO cost_facts (customer_id, time_us, sequence, event_id, model, agent, subject, input_tokens, output_tokens, cached_input_tokens,
                                     cache_creation_tokens, reasoning_tokens)
             SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[],
                                  $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[])",
        )?;
        for chunk in facts.chunks(INSERT_ROWS_MAX) {
            let customers: Vec<&str> = chunk.iter().map(|(r, _)| r.customer).collect();
            let times: Vec<i64> = chunk.iter().map(|(r, _)| r.time_us).collect();
            let sequences: Vec<i64> = chunk.iter().map(|(r, _)| r.sequence as i64).collect();
            let ids: Vec<&str> = chunk.iter().map(|(r, _)| r.event.id.as_str()).collect();
            let field = |f: for<'c> fn(&'c ModelCall<'c>) -> Option<&'c str>| -> Vec<Option<&str>> {
                chunk.iter().map(|(_, c)| c.as_ref().and_then(f)).collect()
            };
            let count = |f: fn(&ModelCall<'_>) -> u64| -> Vec<Option<i64>> {
                chunk
                    .iter()
                    .map(|(_, c)| c.as_ref().map(|c| costs::tokens(f(c))))
                    .collect()
            };
            self.tx.execute(
                &statement,
                &[
                    &customers,
                    &times,
                    &sequences,
                    &ids,
                    &field(|c| Some(c.model.as_ref())),
                    &field(|c| c.agent.as_deref()),
                    &field(|c| c.subject.as_deref()),
                    &count(|c| c.input_tokens),
                    &count(|c| c.output_tokens),
                    &count(|c| c.cached_input_tokens),
                    &count(|c| c.cache_creation_tokens),
                    &count(|c| c.reasoning_tokens),
                ],
            )?;
        }
        Ok(())
    }

    fn save_heads(&mut self, heads: &HashMap<String, Head>) -> Result<(), StoreError> {
        for (customer, head) in heads {
            self.tx.execute(
                "UPDATE ledger_heads SET sequence = $2, hash = $3 WHERE customer_id = $1",
                &[customer, &(head.sequence as i64), &&head.hash[..]],
            )?;
        }
        Ok(())
    }

    fn append_audit(&mut self, entries: &[&AuditEntry]) -> Result<(), StoreError> {
        crate::audit::insert(
            &mut Cached {
                client: &mut self.tx,
                prepared: &mut Prepared::default(),
            },
            entries,
        )
        .map(|_| ())
    }

    fn probe(&mut self, at_us: i64, pad: &[u8]) -> Result<(), StoreError> {
        let sql = crate::sql::numbered(crate::append::PROBE);
        self.tx.execute(sql.as_ref(), &[&at_us, &pad])?;
        Ok(())
    }
}
