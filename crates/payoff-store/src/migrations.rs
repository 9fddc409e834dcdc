//! Versioned schema migrations, applied in order at start.
//!
//! A migration is never edited once released: a change of schema is a new
//! version appended to the list of each backend.

use crate::sql::Sql;
use crate::StoreError;

/// The migrations not applied yet, in order. Every missing version counts,
/// not only those above the highest applied: branches developed side by
/// side may land their versions out of order.
pub(crate) fn pending<'a>(
    all: &'a [(i64, &'a str)],
    applied: &'a [i64],
) -> impl Iterator<Item = &'a (i64, &'a str)> {
    all.iter().filter(move |(v, _)| !applied.contains(v))
}

/// Work in Rust that a version does after its SQL, in the same
/// transaction (both databases): rows rewritten by code the SQL cannot
/// hold, such as reading events with the reader the ingest uses.
pub(crate) type Step = fn(&mut dyn Sql) -> Result<(), StoreError>;

/// The Rust step of `version`, if it has one.
pub(crate) fn step(version: i64) -> Option<Step> {
    const STEPS: &[(i64, Step)] = &[(19, crate::costs::reindex_calls)];
    STEPS.iter().find(|(v, _)| *v == version).map(|(_, s)| *s)
}

pub(crate) const SQLITE: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_us INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        secret_hash BLOB NOT NULL,
        role TEXT NOT NULL,
        customer_id TEXT REFERENCES customers(id),
        created_us INTEGER NOT NULL,
        revoked_us INTEGER
    );
    CREATE TABLE ledger_heads (
        customer_id TEXT PRIMARY KEY REFERENCES customers(id),
        sequence INTEGER NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE TABLE events (
        customer_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        subject TEXT,
        time_us INTEGER NOT NULL,
        recorded_us INTEGER NOT NULL,
        body BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE UNIQUE INDEX events_by_sequence ON events (customer_id, sequence);
    CREATE UNIQUE INDEX events_by_key ON events (customer_id, source, event_id);",
    ),
    (
        2,
        "CREATE TABLE contracts (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        version INTEGER NOT NULL,
        effective TEXT NOT NULL,
        effective_us INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        body TEXT NOT NULL,
        uploaded_us INTEGER NOT NULL,
        PRIMARY KEY (customer_id, version)
    );
    CREATE TABLE statements (
        id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL REFERENCES customers(id),
        period TEXT NOT NULL,
        period_start_us INTEGER NOT NULL,
        body TEXT NOT NULL,
        issued_us INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX statements_by_period ON statements (customer_id, period);",
    ),
    (
        3,
        "CREATE TABLE price_tables (
        version INTEGER PRIMARY KEY,
        effective_us INTEGER NOT NULL,
        body TEXT NOT NULL,
        uploaded_us INTEGER NOT NULL
    );
    CREATE TABLE budgets (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        agent TEXT NOT NULL,
        limit_amount TEXT NOT NULL,
        warn_amount TEXT,
        updated_us INTEGER NOT NULL,
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
        updated_us INTEGER NOT NULL,
        PRIMARY KEY (customer_id, doc_id)
    );",
    ),
    (
        6,
        "CREATE TABLE audit_log (
        sequence INTEGER PRIMARY KEY,
        at_us INTEGER NOT NULL,
        actor TEXT NOT NULL,
        customer_id TEXT,
        action TEXT NOT NULL,
        decision TEXT NOT NULL,
        body TEXT NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE INDEX audit_by_customer ON audit_log (customer_id, sequence);
    CREATE TABLE agent_pauses (
        agent TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        paused_by TEXT NOT NULL,
        paused_us INTEGER NOT NULL,
        PRIMARY KEY (agent, customer_id)
    );
    CREATE TABLE agent_cursors (
        agent TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        PRIMARY KEY (agent, customer_id)
    );",
    ),
    (
        7,
        "CREATE TABLE agent_policies (
        customer_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        uploaded_us INTEGER NOT NULL,
        PRIMARY KEY (customer_id, version)
    );
    CREATE TABLE webhook_subscriptions (
        id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        url TEXT NOT NULL,
        event_types TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        cursor INTEGER NOT NULL,
        deleted_us INTEGER
    );
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        subscription_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_us INTEGER NOT NULL,
        lease_until_us INTEGER NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        created_us INTEGER NOT NULL,
        delivered_us INTEGER
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_us);
    CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, sequence);",
    ),
    (
        8,
        "CREATE TABLE dashboard_sessions (
        token_hash BLOB PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES api_keys(key_id),
        csrf_token TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        expires_us INTEGER NOT NULL
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
        time_us INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        model TEXT,
        agent TEXT,
        subject TEXT,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cached_input_tokens INTEGER,
        PRIMARY KEY (customer_id, time_us, sequence)
    ) WITHOUT ROWID;
    INSERT INTO cost_facts (customer_id, time_us, sequence, event_id)
        SELECT customer_id, time_us, sequence, event_id FROM events
        WHERE type IN ('llm.call', 'cost.incurred');",
    ),
    (
        11,
        "ALTER TABLE statements ADD COLUMN outcomes_kept INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE period_outcomes (
        customer_id TEXT NOT NULL,
        period TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        PRIMARY KEY (customer_id, period, kind, subject)
    ) WITHOUT ROWID;",
    ),
    (12, crate::outcomes::SCHEMA),
    (13, crate::knowledge::SCHEMA),
    (14, crate::webhooks::CLAIM_INDEX),
    (15, crate::session::SCHEMA_SEEN),
    (16, crate::outcomes::SCHEMA_ORDER),
    (17, crate::actions::SCHEMA),
    (18, crate::mcp::SCHEMA),
    (19, crate::costs::SCHEMA_CACHE_REASONING),
    (20, crate::append::SCHEMA_PROBE),
];

pub(crate) const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE customers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_us BIGINT NOT NULL
    );
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        secret_hash BYTEA NOT NULL,
        role TEXT NOT NULL,
        customer_id TEXT REFERENCES customers(id),
        created_us BIGINT NOT NULL,
        revoked_us BIGINT
    );
    CREATE TABLE ledger_heads (
        customer_id TEXT PRIMARY KEY REFERENCES customers(id),
        sequence BIGINT NOT NULL,
        hash BYTEA NOT NULL
    );
    CREATE TABLE events (
        customer_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        subject TEXT,
        time_us BIGINT NOT NULL,
        recorded_us BIGINT NOT NULL,
        body BYTEA NOT NULL,
        hash BYTEA NOT NULL,
        PRIMARY KEY (customer_id, sequence)
    );
    CREATE UNIQUE INDEX events_by_key ON events (customer_id, source, event_id);",
    ),
    (
        2,
        "CREATE TABLE contracts (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        version BIGINT NOT NULL,
        effective TEXT NOT NULL,
        effective_us BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        body TEXT NOT NULL,
        uploaded_us BIGINT NOT NULL,
        PRIMARY KEY (customer_id, version)
    );
    CREATE TABLE statements (
        id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL REFERENCES customers(id),
        period TEXT NOT NULL,
        period_start_us BIGINT NOT NULL,
        body TEXT NOT NULL,
        issued_us BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX statements_by_period ON statements (customer_id, period);",
    ),
    (
        3,
        "CREATE TABLE price_tables (
        version BIGINT PRIMARY KEY,
        effective_us BIGINT NOT NULL,
        body TEXT NOT NULL,
        uploaded_us BIGINT NOT NULL
    );
    CREATE TABLE budgets (
        customer_id TEXT NOT NULL REFERENCES customers(id),
        agent TEXT NOT NULL,
        limit_amount TEXT NOT NULL,
        warn_amount TEXT,
        updated_us BIGINT NOT NULL,
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
        updated_us BIGINT NOT NULL,
        PRIMARY KEY (customer_id, doc_id)
    );",
    ),
    (
        6,
        "CREATE TABLE audit_log (
        sequence BIGINT PRIMARY KEY,
        at_us BIGINT NOT NULL,
        actor TEXT NOT NULL,
        customer_id TEXT,
        action TEXT NOT NULL,
        decision TEXT NOT NULL,
        body TEXT NOT NULL,
        hash BYTEA NOT NULL
    );
    CREATE INDEX audit_by_customer ON audit_log (customer_id, sequence);
    CREATE TABLE agent_pauses (
        agent TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        paused_by TEXT NOT NULL,
        paused_us BIGINT NOT NULL,
        PRIMARY KEY (agent, customer_id)
    );
    CREATE TABLE agent_cursors (
        agent TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        PRIMARY KEY (agent, customer_id)
    );",
    ),
    (
        7,
        "CREATE TABLE agent_policies (
        customer_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        body TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        uploaded_by TEXT NOT NULL,
        uploaded_us BIGINT NOT NULL,
        PRIMARY KEY (customer_id, version)
    );
    CREATE TABLE webhook_subscriptions (
        id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        url TEXT NOT NULL,
        event_types TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_us BIGINT NOT NULL,
        cursor BIGINT NOT NULL,
        deleted_us BIGINT
    );
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        subscription_id TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        event_type TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_attempt_us BIGINT NOT NULL,
        lease_until_us BIGINT NOT NULL,
        last_status BIGINT,
        last_error TEXT,
        created_us BIGINT NOT NULL,
        delivered_us BIGINT
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_us);
    CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, sequence);",
    ),
    (
        8,
        "CREATE TABLE dashboard_sessions (
        token_hash BYTEA PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES api_keys(key_id),
        csrf_token TEXT NOT NULL,
        created_us BIGINT NOT NULL,
        expires_us BIGINT NOT NULL
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
        time_us BIGINT NOT NULL,
        sequence BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        model TEXT,
        agent TEXT,
        subject TEXT,
        input_tokens BIGINT,
        output_tokens BIGINT,
        cached_input_tokens BIGINT,
        PRIMARY KEY (customer_id, time_us, sequence)
    );
    INSERT INTO cost_facts (customer_id, time_us, sequence, event_id)
        SELECT customer_id, time_us, sequence, event_id FROM events
        WHERE type IN ('llm.call', 'cost.incurred');",
    ),
    (
        11,
        "ALTER TABLE statements ADD COLUMN outcomes_kept BOOLEAN NOT NULL DEFAULT FALSE;
    CREATE TABLE period_outcomes (
        customer_id TEXT NOT NULL,
        period TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        PRIMARY KEY (customer_id, period, kind, subject)
    );",
    ),
    (12, crate::outcomes::SCHEMA),
    (13, crate::knowledge::SCHEMA),
    (14, crate::webhooks::CLAIM_INDEX),
    (15, crate::session::SCHEMA_SEEN),
    (16, crate::outcomes::SCHEMA_ORDER),
    (17, crate::actions::SCHEMA),
    (18, crate::mcp::SCHEMA),
    (19, crate::costs::SCHEMA_CACHE_REASONING),
    (20, crate::append::SCHEMA_PROBE),
];
