//! Where the demo keeps its ledger: a SQLite file in its directory
//! (removed with it), or the database `--database` names, which the demo
//! builds in only when it is new or was built by an earlier demo.
//!
//! A database is looked at before anything is written to it: opening one
//! runs Payoff's migrations, which must never add tables to someone
//! else's database. A demo's database is known by its first audit record,
//! [`MARK`], which the demo writes before anything else.

use std::path::{Path, PathBuf};

use anyhow::Context;
use payoff_store::{AuditFilter, Store};

use crate::BadInput;

/// The action of the first audit record of a database the demo built.
pub const MARK: &str = "demo build";

/// The table every Payoff database has (its applied migrations).
const MIGRATIONS: &str = "schema_migrations";

/// A database the demo may build in.
pub enum Found {
    /// Nothing in it yet (or no file yet).
    New,
    /// An earlier demo's: cleared before the demo builds again.
    Demo(Clear),
}

/// How to clear an earlier demo's database.
pub enum Clear {
    /// The SQLite file and its journal files.
    Files(Vec<PathBuf>),
    /// Every table of a PostgreSQL database, schema-qualified and quoted.
    Tables(String, Vec<String>),
}

impl Clear {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Clear::Files(files) => {
                for f in files.iter().filter(|f| f.exists()) {
                    std::fs::remove_file(f)
                        .with_context(|| format!("cannot remove {}", f.display()))?;
                }
            }
            Clear::Tables(url, tables) => {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)
                    .context("cannot connect to --database")?;
                client
                    .batch_execute(&format!("DROP TABLE {} CASCADE", tables.join(", ")))
                    .context("cannot clear the earlier demo's tables in --database")?;
            }
        }
        Ok(())
    }
}

/// The SQLite file a database URL names, if it names one.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    Some(PathBuf::from(url.strip_prefix("sqlite:").unwrap_or(url)))
}

/// What the database at `url` holds, refusing one that holds anything the
/// demo did not make (bad input: choose another).
pub fn look(url: &str) -> anyhow::Result<Found> {
    let (tables, clear) = match sqlite_path(url) {
        Some(path) => {
            let tables = sqlite_tables(&path)?;
            let mut files = vec![path.clone()];
            for suffix in ["-wal", "-shm", "-journal"] {
                let mut name = path.clone().into_os_string();
                name.push(suffix);
                files.push(name.into());
            }
            (tables, Clear::Files(files))
        }
        None => {
            let tables = postgres_tables(url)?;
            let quoted = tables.iter().map(|(_, quoted)| quoted.clone()).collect();
            (
                tables.into_iter().map(|(name, _)| name).collect(),
                Clear::Tables(url.to_owned(), quoted),
            )
        }
    };
    if tables.is_empty() {
        return Ok(Found::New);
    }
    let refused = || -> anyhow::Result<Found> {
        Err(BadInput(
            "the database --database (or PAYOFF_DATABASE_URL, or payoff.toml) names holds data that was not made by `payoff demo`; give the demo a new, empty database".into(),
        )
        .into())
    };
    if !tables.iter().any(|t| t == MIGRATIONS) {
        return refused();
    }
    // A Payoff database: opening it runs only Payoff's own migrations.
    let store = Store::open(url).context("cannot open --database")?;
    let first = store.audit(&AuditFilter {
        limit: 1,
        ..Default::default()
    })?;
    if first.first().is_some_and(|r| r.entry.action == MARK) {
        Ok(Found::Demo(clear))
    } else {
        refused()
    }
}

/// The tables of a SQLite file; none when there is no file.
fn sqlite_tables(path: &Path) -> anyhow::Result<Vec<String>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let not_ours = |e: rusqlite::Error| {
        BadInput(format!(
            "--database {}: not a database `payoff demo` made ({e})",
            path.display()
        ))
    };
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(not_ours)?;
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .map_err(not_ours)?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(not_ours)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(not_ours)?;
    Ok(names)
}

/// The tables of a PostgreSQL database outside its catalogs: each name,
/// and its schema-qualified, quoted form.
fn postgres_tables(url: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut client =
        postgres::Client::connect(url, postgres::NoTls).context("cannot connect to --database")?;
    let rows = client.query(
        "SELECT table_name::text, quote_ident(table_schema) || '.' || quote_ident(table_name)
         FROM information_schema.tables
         WHERE table_type = 'BASE TABLE'
           AND table_schema NOT IN ('pg_catalog', 'information_schema')",
        &[],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
