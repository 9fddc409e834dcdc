/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {0}")]
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
}
