//! Throwaway databases for tests and benchmarks: always a fresh SQLite
//! file, and a fresh PostgreSQL database when `PAYOFF_TEST_POSTGRES_URL` is set. When it is set but the
//! server cannot be reached, tests fail: they never skip PostgreSQL silently.

use std::str::FromStr;

use postgres::{Config, NoTls};

/// The environment variable naming the PostgreSQL server for tests.
pub const POSTGRES_ENV: &str = "PAYOFF_TEST_POSTGRES_URL";

/// A throwaway database, removed when dropped.
pub struct ScratchDb {
    /// What to pass to [`crate::Store::open`] or `--database`.
    pub url: String,
    /// `"sqlite"` or `"postgres"`, for test messages.
    pub label: &'static str,
    /// Removed with the database: a data directory beside it never
    /// outlives the test (PostgreSQL ones included).
    dir: tempfile::TempDir,
    postgres: Option<(Config, String)>,
}

impl ScratchDb {
    pub fn sqlite() -> ScratchDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = dir.path().join("payoff.db").display().to_string();
        ScratchDb {
            url,
            label: "sqlite",
            dir,
            postgres: None,
        }
    }

    /// A new empty database on the test PostgreSQL server, if one is configured.
    pub fn postgres() -> Option<ScratchDb> {
        let admin_url = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())?;
        Some(ScratchDb::postgres_on(&admin_url))
    }

    /// A new empty database on the PostgreSQL server at `admin_url`.
    /// Panics when the server cannot be reached: tests must fail, not skip.
    pub fn postgres_on(admin_url: &str) -> ScratchDb {
        let admin = Config::from_str(admin_url)
            .unwrap_or_else(|e| panic!("{admin_url} is not a valid PostgreSQL URL: {e}"));
        let name = format!("payoff_test_{}", hex::encode(rand::random::<[u8; 8]>()));
        let mut client = admin
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} cannot be reached: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let mut config = admin.clone();
        config.dbname(&name);
        let url = postgres_url(&config);
        ScratchDb {
            url,
            label: "postgres",
            dir: tempfile::tempdir().expect("temporary directory"),
            postgres: Some((admin, name)),
        }
    }

    /// Every backend the suite must pass on, here.
    pub fn all() -> Vec<ScratchDb> {
        let mut dbs = vec![ScratchDb::sqlite()];
        dbs.extend(ScratchDb::postgres());
        dbs
    }

    /// A directory that lives as long as this database (for data dirs).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Runs SQL straight against the database, behind the store's back
    /// (tamper tests).
    pub fn execute_sql(&self, sql: &str) {
        execute_sql(&self.url, sql);
    }
}

/// Runs SQL straight against the database at `url` (a PostgreSQL URL or a
/// SQLite file), behind the store's back: tamper tests and failpoints.
/// Blocking.
pub fn execute_sql(url: &str, sql: &str) {
    if url.starts_with("postgres") {
        Config::from_str(url)
            .expect("a PostgreSQL URL")
            .connect(NoTls)
            .expect("connect")
            .batch_execute(sql)
            .expect("tamper SQL");
    } else {
        let conn = rusqlite::Connection::open(url).expect("open sqlite");
        conn.execute_batch(sql).expect("tamper SQL");
    }
}

/// Ends every other session on the PostgreSQL database at `url`, as a
/// restart or a failover would (fault tests). Blocking.
pub fn terminate_postgres_sessions(url: &str) -> u64 {
    let config = Config::from_str(url).expect("a PostgreSQL URL");
    let mut client = config.connect(NoTls).expect("connect");
    client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .expect("terminate sessions")
        .len() as u64
}

/// The first column of every row `sql` gives, as text, read straight from
/// the database at `url` (tests that check what is stored at rest).
/// Blocking.
pub fn query_texts(url: &str, sql: &str) -> Vec<String> {
    if url.starts_with("postgres") {
        Config::from_str(url)
            .expect("a PostgreSQL URL")
            .connect(NoTls)
            .expect("connect")
            .query(sql, &[])
            .expect("query")
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    } else {
        let conn = rusqlite::Connection::open(url).expect("open sqlite");
        let mut stmt = conn.prepare(sql).expect("prepare");
        stmt.query_map([], |r| r.get::<_, String>(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }
}

fn postgres_url(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{user}@{host}:{port}/{db}")
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.postgres {
            if let Ok(mut client) = admin.connect(NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// The physical reference of the ingest benchmark: `events` inserted
/// straight into a new SQLite file at `path` in one transaction, timed from
/// BEGIN to the end of COMMIT.
pub fn sqlite_reference_insert(
    path: &std::path::Path,
    customer: &str,
    events: &[payoff_ledger::Event],
) -> Result<std::time::Duration, crate::StoreError> {
    crate::sqlite::reference_insert(path, customer, events)
}

/// A failpoint for fault tests and benches: the SQL that arms it and the
/// SQL that disarms it. Triggers make `percent` of the row writes `ops`
/// names (table, `INSERT` or `UPDATE`) fail with `message`, as a full disk
/// or a broken connection would fail them. `name` prefixes every object it
/// creates, so several can be armed at once.
pub fn failpoint(
    postgres: bool,
    name: &str,
    ops: &[(&str, &str)],
    percent: u8,
    message: &str,
) -> (String, String) {
    assert!(
        !message.contains('\'') && percent <= 100,
        "a message without quotes, a percentage"
    );
    let (mut arm, mut disarm) = (String::new(), String::new());
    if postgres {
        arm.push_str(&format!(
            "CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN
               IF random() * 100 < {percent} THEN RAISE EXCEPTION '{message}'; END IF;
               RETURN NEW; END $$ LANGUAGE plpgsql;"
        ));
    }
    for (table, op) in ops {
        let trigger = format!("{name}_{table}_{}", op.to_lowercase());
        if postgres {
            arm.push_str(&format!(
                "CREATE TRIGGER {trigger} BEFORE {op} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}();"
            ));
            disarm.push_str(&format!("DROP TRIGGER {trigger} ON {table};"));
        } else {
            arm.push_str(&format!(
                "CREATE TRIGGER {trigger} BEFORE {op} ON {table} WHEN abs(random()) % 100 < {percent}
                 BEGIN SELECT RAISE(ABORT, '{message}'); END;"
            ));
            disarm.push_str(&format!("DROP TRIGGER {trigger};"));
        }
    }
    if postgres {
        disarm.push_str(&format!("DROP FUNCTION {name}();"));
    }
    (arm, disarm)
}

/// A small tmpfs mounted over a directory for disk-fault tests and benches
/// (needs root: CAP_SYS_ADMIN), lazily unmounted when dropped.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts `size_mib` MiB over `dir`; what `mount` said when it cannot.
    pub fn mount(dir: &std::path::Path, size_mib: u64) -> Result<Tmpfs, String> {
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(dir.to_owned()))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Remounts it `ro` or `rw`.
    pub fn remount(&self, mode: &str) -> Result<(), String> {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(())
            .ok_or_else(|| format!("remount {mode} of {} failed", self.0.display()))
    }

    /// Fills the filesystem to its last byte; the file returned is the
    /// ballast to remove when space should come back.
    pub fn fill(&self) -> std::io::Result<std::path::PathBuf> {
        use std::io::Write;
        let path = self.0.join("ballast");
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(e),
            }
        }
        // Whatever a 64 KiB write left, byte by byte.
        while file.write(&[0]).is_ok_and(|n| n == 1) {}
        let _ = file.sync_all();
        Ok(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
