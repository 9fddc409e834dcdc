//! Running the real `payoff` binary from tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use payoff_store::scratch::ScratchDb;

pub const BIN: &str = env!("CARGO_BIN_EXE_payoff");

/// `payoff ARGS` with the data directory and database of `db`.
pub fn payoff(db: &ScratchDb, args: &[&str]) -> Output {
    command(db).args(args).output().expect("run payoff")
}

pub fn command(db: &ScratchDb) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(data_dir(db))
        .arg("--database")
        .arg(&db.url);
    cmd.env_remove("PAYOFF_DATA_DIR")
        .env_remove("PAYOFF_DATABASE_URL")
        .env_remove("PAYOFF_KEY")
        .env_remove("PAYOFF_URL");
    cmd
}

pub fn data_dir(db: &ScratchDb) -> std::path::PathBuf {
    db.dir().join("data")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The last line of standard output (where commands print a new key).
pub fn last_line(o: &Output) -> String {
    stdout(o).lines().last().unwrap_or_default().to_owned()
}

/// Asserts a bad-input exit: code 2 and exactly one line on standard error.
pub fn assert_bad_input(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected exit 2, got {:?}; stderr: {err}",
        o.status
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

/// A `payoff serve` child process on a free loopback port.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The line the server printed when it was ready.
    pub banner: String,
}

impl Server {
    pub fn start(db: &ScratchDb) -> Server {
        let mut child = command(db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start payoff serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Server {
            child,
            url,
            banner: line,
        }
    }

    /// SIGKILL: no shutdown, no flush, nothing the server can do about it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Initialises `db` and returns the admin key.
pub fn init(db: &ScratchDb) -> String {
    let o = payoff(db, &["init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    last_line(&o)
}

/// Creates customer `id` and a key of `role` for it; returns the key.
pub fn customer_with_key(db: &ScratchDb, id: &str, role: &str) -> String {
    let o = payoff(db, &["customers", "create", id, "--name", "Test customer"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = payoff(db, &["keys", "create", "--role", role, "--customer", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    last_line(&o)
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}
