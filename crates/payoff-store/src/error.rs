/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {}", postgres_cause(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("the ledger writer has stopped; the server must restart")]
    WriterGone,
    #[error("{what} \"{id}\" already exists")]
    AlreadyExists { what: &'static str, id: String },
    #[error("unknown {what} \"{id}\"")]
    NotFound { what: &'static str, id: String },
    #[error("reading stopped: {0}")]
    Stopped(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A production assertion failed before anything was written.
    #[error("invariant broken, nothing written: {0}")]
    Invariant(String),
}

/// What a PostgreSQL error says, down to its cause: the client's own text
/// is only "db error" for anything the server reports, which names nothing.
fn postgres_cause(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
