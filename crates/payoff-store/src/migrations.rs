//! Versioned schema migrations, applied in order at start, one list for
//! both databases.
//!
//! A migration is never edited once released: a change of schema is a new
//! version appended to the list, in SQL both databases read alike (the
//! types of [`crate::sql`]). The first versions were released in each
//! database's own words; they are written once here with those words as
//! `{name}`s, which [`words`] fills in per database exactly as released.

use crate::sql::{Dialect, Param, Sql};
use crate::StoreError;

/// Applies, inside `tx`, every version not applied yet, in order, each
/// with its Rust step, and records each. Every missing version counts, not
/// only those above the highest applied: branches developed side by side
/// may land their versions out of order.
pub(crate) fn apply(tx: &mut dyn Sql) -> Result<(), StoreError> {
    let dialect = tx.dialect();
    tx.execute_batch(&render(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version {int} PRIMARY KEY, applied_us {int} NOT NULL)",
        dialect,
    ))?;
    let applied = tx.rows("SELECT version FROM schema_migrations", &[], |r| {
        r.int_req(0)
    })?;
    for (version, sql) in all(dialect) {
        if applied.contains(&version) {
            continue;
        }
        tx.execute_batch(&sql)?;
        if let Some(step) = step(version) {
            step(tx)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations VALUES (?, ?)",
            &[
                Param::Int(Some(version)),
                Param::Int(Some(payoff_clock::wall().timestamp_micros())),
            ],
        )?;
    }
    Ok(())
}

/// Every version, in order, as `dialect` runs it.
pub(crate) fn all(dialect: Dialect) -> Vec<(i64, String)> {
    SCHEMA
        .iter()
        .map(|(v, sql)| (*v, render(sql, dialect)))
        .chain(SHARED.iter().map(|(v, sql)| (*v, (*sql).to_owned())))
        .collect()
}

/// What each `{name}` of [`SCHEMA`] reads on `dialect`.
fn words(dialect: Dialect) -> [(&'static str, &'static str); 5] {
    match dialect {
        Dialect::Sqlite => [
            ("{int}", "INTEGER"),
            ("{bytes}", "BLOB"),
            ("{without_rowid}", " WITHOUT ROWID"),
            ("{flag_off}", "INTEGER NOT NULL DEFAULT 0"),
            (
                "{events_key}",
                "\n    );\n    CREATE UNIQUE INDEX events_by_sequence ON events (customer_id, sequence);",
            ),
        ],
        Dialect::Postgres => [
            ("{int}", "BIGINT"),
            ("{bytes}", "BYTEA"),
            ("{without_rowid}", ""),
            ("{flag_off}", "BOOLEAN NOT NULL DEFAULT FALSE"),
            ("{events_key}", ",\n        PRIMARY KEY (customer_id, sequence)\n    );"),
        ],
    }
}

fn render(sql: &str, dialect: Dialect) -> String {
    let rendered = words(dialect)
        .iter()
        .fold(sql.to_owned(), |sql, (name, word)| sql.replace(name, word));
    assert!(
        !rendered.contains('{'),
        "a {{name}} without a word: {rendered}"
    );
    rendered
}

/// Work in Rust that a version does after its SQL, in the same
/// transaction (both databases): rows rewritten by code the SQL cannot
/// hold, such as reading events with the reader the ingest uses.
pub(crate) type Step = fn(&mut dyn Sql) -> Result<(), StoreError>;

/// The Rust step of `version`, if it has one.
pub(crate) fn step(version: i64) -> Option<Step> {
    const STEPS: &[(i64, Step)] = &[
        (19, crate::costs::reindex_calls),
        (23, crate::statements::fill_summaries),
    ];
    STEPS.iter().find(|(v, _)| *v == version).map(|(_, s)| *s)
}

const SCHEMA: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_us {int} NOT NULL
    );
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        secret_hash {bytes} NOT NULL,
        role TEXT NOT NULL,
        customer_id TEXT REFERENCES customers(id),
        created_us {int} NOT NULL,
        revoked_us {int}
    );
    CREATE TABLE ledger_heads (
        customer_id TEXT PRIMARY KEY REFERENCES customers(id),
        sequence {int} NOT NULL,
        hash {bytes} NOT NULL
    );
    CREATE TABLE events (
        customer_id TEXT NOT NULL,
        sequence {int} NOT NULL,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        subject TEXT,
        time_us {int} NOT NULL,
        recorded_us {int} NOT NULL,
        body {bytes} NOT NULL,
        hash {bytes} NOT NULL{events_key}
    CREATE UNIQUE INDEX events_by_key ON events (customer_id, source, event_id);",
    ),
    (
        2,
        "CREATE TABLE contracts (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        version {int} NOT NULL,
        effective TEXT NOT NULL,
        effective_us {int} NOT NULL,
        sha256 TEXT NOT NULL,
        body TEXT NOT NULL,
        uploaded_us {int} NOT NULL,
        PRIMARY KEY (customer_id, version)
    );
    CREATE TABLE statements (
        id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL REFERENCES customers(id),
        period TEXT NOT NULL,
        period_start_us {int} NOT NULL,
        body TEXT NOT NULL,
        issued_us {int} NOT NULL
    );
    CREATE UNIQUE INDEX statements_by_period ON statements (customer_id, period);",
    ),
    (
        3,
        "CREATE TABLE price_tables (
        version {int} PRIMARY KEY,
        effective_us {int} NOT NULL,
        body TEXT NOT NULL,
        uploaded_us {int} NOT NULL
    );
    CREATE TABLE budgets (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        agent TEXT NOT NULL,
        limit_amount TEXT NOT NULL,
        warn_amount TEXT,
        updated_us {int} NOT NULL,
        PRIMARY KEY (customer_id, agent)
    );",
    ),
    (
        4,
        "CREATE TABLE key_groups (
        key_id TEXT PRIMARY KEY REFERENCES api_keys(key_id),
        groups TEXT NOT NULL
    );
    CREATE TABLE knowledge_documents (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        doc_id TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_us {int} NOT NULL,
        PRIMARY KEY (customer_id, doc_id)
    );",
    ),
    (
        6,
        "CREATE TABLE audit_log (
        sequence {int} PRIMARY KEY,
        at_us {int} NOT NULL,
        actor TEXT NOT NULL,
        customer_id TEXT,
        action TEXT NOT NULL,
        decision TEXT NOT NULL,
        body TEXT NOT NULL,
        hash {bytes} NOT NULL
    );
    CREATE INDEX audit_by_customer ON audit_log (customer_id, sequence);
    CREATE TABLE agent_pauses (
        agent TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        paused_by TEXT NOT NULL,
        paused_us {int} NOT NULL,
        PRIMARY KEY (agent, customer_id)
    );
    CREATE TABLE agent_cursors (
        agent TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        sequence {int} NOT NULL,
        PRIMARY KEY (agent, customer_id)
    );",
    ),
    (
        7,
        "CREATE TABLE agent_policies (
        customer_id TEXT NOT NULL,
        version {int} NOT NULL,
        body TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        uploaded_us {int} NOT NULL,
        PRIMARY KEY (customer_id, version)
    );
    CREATE TABLE webhook_subscriptions (
        id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        url TEXT NOT NULL,
        event_types TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_us {int} NOT NULL,
        cursor {int} NOT NULL,
        deleted_us {int}
    );
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        subscription_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        sequence {int} NOT NULL,
        event_type TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts {int} NOT NULL,
        next_attempt_us {int} NOT NULL,
        lease_until_us {int} NOT NULL,
        last_status {int},
        last_error TEXT,
        created_us {int} NOT NULL,
        delivered_us {int}
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_us);
    CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, sequence);",
    ),
    (
        8,
        "CREATE TABLE dashboard_sessions (
        token_hash {bytes} PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES api_keys(key_id),
        csrf_token TEXT NOT NULL,
        created_us {int} NOT NULL,
        expires_us {int} NOT NULL
    );
    CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_us);",
    ),
    (
        9,
        "CREATE INDEX events_by_type ON events (customer_id, type, sequence);
    CREATE INDEX events_by_subject ON events (customer_id, subject, sequence);",
    ),
    (
        10,
        "CREATE TABLE cost_facts (
        customer_id TEXT NOT NULL,
        time_us {int} NOT NULL,
        sequence {int} NOT NULL,
        event_id TEXT NOT NULL,
        model TEXT,
        agent TEXT,
        subject TEXT,
        input_tokens {int},
        output_tokens {int},
        cached_input_tokens {int},
        PRIMARY KEY (customer_id, time_us, sequence)
    ){without_rowid};
    INSERT INTO cost_facts (customer_id, time_us, sequence, event_id)
        SELECT customer_id, time_us, sequence, event_id FROM events
        WHERE type IN ('llm.call', 'cost.incurred');",
    ),
    (
        11,
        "ALTER TABLE statements ADD COLUMN outcomes_kept {flag_off};
    CREATE TABLE period_outcomes (
        customer_id TEXT NOT NULL,
        period TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        PRIMARY KEY (customer_id, period, kind, subject)
    ){without_rowid};",
    ),
];

/// Versions written once for both databases in the first place.
const SHARED: &[(i64, &str)] = &[
    (12, crate::outcomes::SCHEMA),
    (13, crate::knowledge::SCHEMA),
    (14, crate::webhooks::CLAIM_INDEX),
    (15, crate::session::SCHEMA_SEEN),
    (16, crate::outcomes::SCHEMA_ORDER),
    (17, crate::actions::SCHEMA),
    (18, crate::mcp::SCHEMA),
    (19, crate::costs::SCHEMA_CACHE_REASONING),
    (20, crate::append::SCHEMA_PROBE),
    (21, crate::outcomes::SCHEMA_PERIOD_INDEX),
    (22, crate::outcomes::SCHEMA_TOUCHED),
    (23, crate::statements::SCHEMA_SUMMARY),
    (24, crate::outcomes::SCHEMA_GOVERNING_VERSION),
    (25, crate::glances::SCHEMA),
    (26, crate::outcomes::SCHEMA_BY_ID_GOVERNS),
    (27, crate::statements::SCHEMA_OUTCOME_SETS),
];
