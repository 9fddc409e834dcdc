//! One SQL text for both databases.
//!
//! Repositories write each statement once, with `?` placeholders, against
//! [`Sql`]; the PostgreSQL side renders the placeholders as `$1, $2, …`.
//! The two dialects agree on everything else we use (`INSERT … ON CONFLICT
//! … DO UPDATE`, `BIGINT`, `TEXT`); where they differ, [`Dialect`] says so
//! in one place (row locks, which SQLite does not need because its write
//! transactions are exclusive, and planner statistics).
//!
//! Only two column types cross this layer, 64-bit integers and text, each
//! nullable: that is all the read model needs, and it keeps both drivers'
//! type rules (PostgreSQL's are strict) out of the repositories.

use std::borrow::Cow;

use crate::StoreError;

/// Which database a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The page cache of each SQLite connection: 64 MB.
pub(crate) const SQLITE_CACHE: &str = "PRAGMA cache_size = -65536";

impl Dialect {
    /// Statements around a read that passes over many rows once (a
    /// close's million outcomes), the first run before it and the second
    /// after: on SQLite the connection's page cache is held small
    /// meanwhile, because such pages are read once and a full cache only
    /// holds them (64 MB more at the peak of a close). None on PostgreSQL,
    /// whose cache is the server's.
    pub fn scan_cache(self) -> Option<(&'static str, &'static str)> {
        match self {
            Dialect::Sqlite => Some(("PRAGMA cache_size = -4096", SQLITE_CACHE)),
            Dialect::Postgres => None,
        }
    }

    /// What follows a table's alias in `FROM` to make the planner use
    /// `index`: SQLite's `INDEXED BY`, for a query whose best index it
    /// cannot tell without statistics; nothing on PostgreSQL, whose
    /// planner has them.
    pub fn indexed_by(self, index: &str) -> String {
        match self {
            Dialect::Sqlite => format!(" INDEXED BY {index}"),
            Dialect::Postgres => String::new(),
        }
    }

    /// What ends a `SELECT` that must lock the rows it reads until commit.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// A statement that locks `table` against other writers until commit
    /// (readers go on); none on SQLite, whose write transactions are
    /// exclusive already.
    pub fn lock_table_exclusive(self, table: &str) -> Option<String> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(format!("LOCK TABLE {table} IN EXCLUSIVE MODE")),
        }
    }

    /// A statement that refreshes the planner's statistics of `table`,
    /// after a bulk change: PostgreSQL without them plans a page of a
    /// freshly built read model as a sort of every row (45 ms at 100,000
    /// outcomes instead of 0.1 ms) until autovacuum gets to it. None on
    /// SQLite, whose plans here do not depend on statistics.
    pub fn refresh_statistics(self, table: &str) -> Option<String> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some(format!("ANALYZE {table}")),
        }
    }

    /// A condition that the text `column` contains the next parameter's
    /// text (SQLite has `instr`, PostgreSQL `strpos`).
    pub fn contains(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({column}, ?) > 0"),
            Dialect::Postgres => format!("strpos({column}, ?) > 0"),
        }
    }

    /// What ends a `SELECT` that locks the rows it reads and passes over
    /// rows another transaction has locked, so nodes claiming work at
    /// once take different rows.
    pub fn for_update_skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bytes(Option<&'a [u8]>),
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Bytes(Some(v))
    }
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}

/// One result row, read by column position.
pub trait SqlRow {
    fn int(&self, column: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, column: usize) -> Result<Option<String>, StoreError>;
    fn bytes(&self, column: usize) -> Result<Option<Vec<u8>>, StoreError>;

    /// A column that may not be NULL.
    fn int_req(&self, column: usize) -> Result<i64, StoreError> {
        self.int(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {column} is NULL")))
    }

    /// A byte column that may not be NULL.
    fn bytes_req(&self, column: usize) -> Result<Vec<u8>, StoreError> {
        self.bytes(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {column} is NULL")))
    }

    /// A text column that may not be NULL.
    fn text_req(&self, column: usize) -> Result<String, StoreError> {
        self.text(column)?
            .ok_or_else(|| StoreError::Corrupt(format!("column {column} is NULL")))
    }
}

/// Receives each row of a query.
pub type RowSink<'a> = &'a mut dyn FnMut(&dyn SqlRow) -> Result<(), StoreError>;

/// An open transaction on either database.
pub trait Sql {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// Runs statements separated by `;`, without parameters (a schema).
    fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Runs a query, handing each row to `sink` in order.
    fn query(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        sink: RowSink<'_>,
    ) -> Result<(), StoreError>;
}

impl dyn Sql + '_ {
    /// Runs a query and returns each row as `map` reads it, in order.
    pub fn rows<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        mut map: impl FnMut(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.query(sql, params, &mut |r| {
            out.push(map(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs a lookup of at most one row and returns it as `map` reads it.
    pub fn row<T>(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        map: impl FnMut(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.rows(sql, params, map)?.pop())
    }
}

/// `?` placeholders as PostgreSQL's `$n`; a `?` inside a quoted literal
/// stays as it is.
pub(crate) fn numbered(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `count` placeholders separated by commas, for `IN (…)` lists and
/// multi-row `VALUES`.
pub fn placeholders(count: usize) -> String {
    let mut s = String::with_capacity(count * 2);
    for i in 0..count {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}

pub(crate) mod sqlite {
    use super::*;
    use rusqlite::types::{ToSqlOutput, Value, ValueRef};

    impl rusqlite::ToSql for Param<'_> {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(match *self {
                Param::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(v)),
                Param::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
                Param::Bytes(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
                Param::Int(None) | Param::Text(None) | Param::Bytes(None) => {
                    ToSqlOutput::Owned(Value::Null)
                }
            })
        }
    }

    impl SqlRow for rusqlite::Row<'_> {
        fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
            Ok(self.get(column)?)
        }
        fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
            Ok(self.get(column)?)
        }
        fn bytes(&self, column: usize) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.get(column)?)
        }
    }

    fn execute(
        c: &rusqlite::Connection,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<u64, StoreError> {
        let mut stmt = c.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(
        c: &rusqlite::Connection,
        sql: &str,
        params: &[Param<'_>],
        sink: RowSink<'_>,
    ) -> Result<(), StoreError> {
        let mut stmt = c.prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(row) = rows.next()? {
            sink(row)?;
        }
        Ok(())
    }

    /// One implementation for both: a connection inside a transaction begun
    /// with `BEGIN`, and a transaction of rusqlite's (the migrations run in
    /// one); each derefs to the connection the helpers above take.
    macro_rules! sqlite_sql {
        ($($ty:ty),*) => {$(
            impl Sql for $ty {
        fn dialect(&self) -> Dialect {
            Dialect::Sqlite
        }

        fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
            execute(self, sql, params)
        }

        fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
            Ok(rusqlite::Connection::execute_batch(self, sql)?)
        }

        fn query(
            &mut self,
            sql: &str,
            params: &[Param<'_>],
            sink: RowSink<'_>,
        ) -> Result<(), StoreError> {
            query(self, sql, params, sink)
        }
            }
        )*};
    }

    sqlite_sql!(rusqlite::Connection, rusqlite::Transaction<'_>);
}

pub(crate) mod postgres {
    use super::*;
    use ::postgres::fallible_iterator::FallibleIterator;
    use ::postgres::types::ToSql;
    use std::collections::HashMap;

    impl SqlRow for ::postgres::Row {
        fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
            Ok(self.try_get(column)?)
        }
        fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
            Ok(self.try_get(column)?)
        }
        fn bytes(&self, column: usize) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.try_get(column)?)
        }
    }

    /// Runs `f` with the parameters as the driver takes them.
    fn with_params<T>(params: &[Param<'_>], f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> T) -> T {
        let owned: Vec<Box<dyn ToSql + Sync + '_>> = params
            .iter()
            .map(|p| -> Box<dyn ToSql + Sync + '_> {
                match *p {
                    Param::Int(v) => Box::new(v),
                    Param::Text(v) => Box::new(v),
                    Param::Bytes(v) => Box::new(v),
                }
            })
            .collect();
        let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref()).collect();
        f(&refs)
    }

    /// Statements a connection has prepared, by their SQL text: a query
    /// sent as text costs two round trips (prepare, then execute), a
    /// prepared one costs one. Kept per connection (a statement belongs to
    /// its session) and bounded: text built per call (`IN` lists of every
    /// length) would otherwise grow it without end.
    #[derive(Default)]
    pub(crate) struct Prepared(HashMap<String, ::postgres::Statement>);

    /// Statements kept per connection at most; past it the cache starts over.
    const PREPARED_MAX: usize = 512;

    /// A connection's client, in a transaction (`Transaction`) or in
    /// autocommit (`Client`: each statement its own transaction), that
    /// prepares each statement once per connection.
    pub(crate) struct Cached<'c, C> {
        pub client: &'c mut C,
        pub prepared: &'c mut Prepared,
    }

    impl<C: ::postgres::GenericClient> Cached<'_, C> {
        fn statement(&mut self, sql: &str) -> Result<::postgres::Statement, StoreError> {
            if let Some(s) = self.prepared.0.get(sql) {
                return Ok(s.clone());
            }
            let statement = self.client.prepare(numbered(sql).as_ref())?;
            if self.prepared.0.len() >= PREPARED_MAX {
                self.prepared.0.clear();
            }
            self.prepared.0.insert(sql.to_owned(), statement.clone());
            Ok(statement)
        }
    }

    impl<C: ::postgres::GenericClient> Sql for Cached<'_, C> {
        fn dialect(&self) -> Dialect {
            Dialect::Postgres
        }

        fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
            let statement = self.statement(sql)?;
            with_params(params, |refs| Ok(self.client.execute(&statement, refs)?))
        }

        fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
            Ok(self.client.batch_execute(sql)?)
        }

        fn query(
            &mut self,
            sql: &str,
            params: &[Param<'_>],
            sink: RowSink<'_>,
        ) -> Result<(), StoreError> {
            let statement = self.statement(sql)?;
            // Rows are handed on as they arrive, never gathered first: a
            // close's million outcome rows were all held at once.
            with_params(params, |refs| {
                let mut rows = self.client.query_raw(&statement, refs.iter().copied())?;
                while let Some(row) = rows.next()? {
                    sink(&row)?;
                }
                Ok(())
            })
        }
    }
}
