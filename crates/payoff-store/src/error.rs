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
    /// A write (a group of ledger appends) failed and nothing of it was
    /// stored: `cause` is what an operator acts on (see [`write_cause`]).
    #[error("nothing was written: {cause} ({detail})")]
    WriteFailed { cause: &'static str, detail: String },
}

/// Names, for an operator, why a write failed: a full disk, a read-only
/// database, a lost connection, or (the rest) the error itself. The
/// finding it answers: every failed write said "cannot open the database".
pub fn write_cause(e: &StoreError) -> &'static str {
    use rusqlite::ErrorCode as C;
    match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => match f.code {
            C::DiskFull => "the disk is full",
            C::ReadOnly => "the database is read-only",
            C::SystemIoFailure => "the disk failed to read or write",
            C::DatabaseBusy | C::DatabaseLocked => "the database is locked by another writer",
            C::CannotOpen => "the database file cannot be opened",
            _ => "the database refused the write",
        },
        StoreError::Postgres(p) => match p.code().map(|c| c.code()) {
            Some("53100") => "the database server's disk is full",
            Some("25006") => "the database is read-only",
            Some(c) if c.starts_with("53") => "the database server is out of resources",
            Some(c) if c.starts_with("57P") || c.starts_with("08") => {
                "the connection to the database was lost"
            }
            None if p.is_closed() || p.as_db_error().is_none() => {
                "the connection to the database was lost"
            }
            _ => "the database refused the write",
        },
        StoreError::Open(_) => "the database cannot be reached",
        StoreError::WriteFailed { cause, .. } => cause,
        _ => "the write failed",
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's result codes (sqlite3.h) an operator meets, and what the
    /// failed write then says.
    #[test]
    fn a_failed_write_names_what_an_operator_acts_on() {
        let sqlite = |code: i32| {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        for (error, cause) in [
            (sqlite(13), "the disk is full"),
            (sqlite(8), "the database is read-only"),
            (sqlite(10), "the disk failed to read or write"),
            (sqlite(5), "the database is locked by another writer"),
            (sqlite(19), "the database refused the write"),
            (
                StoreError::Open("connection refused".into()),
                "the database cannot be reached",
            ),
        ] {
            assert_eq!(write_cause(&error), cause, "{error}");
        }
    }
}
