//! `payoff demo` end to end, small: the month is played, closed, signed and
//! verifiable, the dashboard's logins are written, and the same seed and
//! month give a byte-identical statement.

use std::process::Command;

use crate::common::{stderr, stdout, BIN};
use chrono::{Datelike, Months};
use payoff_store::scratch::ScratchDb;
use serde_json::Value;

fn last_month() -> String {
    let first = payoff_clock::wall().date_naive().with_day(1).unwrap() - Months::new(1);
    first.format("%Y-%m").to_string()
}

/// The month the statement test plays: fixed, so that its statement is
/// the golden one whatever the date of the run.
const MONTH: &str = "2026-10";

fn demo(dir: &std::path::Path, seed: &str) -> std::process::Output {
    Command::new(BIN)
        .args([
            "demo",
            "--no-serve",
            "--tickets",
            "400",
            "--leads",
            "300",
            "--seed",
            seed,
            "--month",
            MONTH,
        ])
        .arg("--dir")
        .arg(dir)
        .env_remove("PAYOFF_MODEL_URL")
        .env_remove("PAYOFF_DATABASE_URL")
        .output()
        .expect("run payoff demo")
}

#[test]
fn the_demo_month_closes_into_a_verifiable_statement_the_same_every_time() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let o = demo(&a, "11");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    for needle in [
        "Statement st.acme.",
        "lift",
        "Cost of service",
        "For Acme:",
        "payoff verify",
    ] {
        assert!(out.contains(needle), "{needle:?} missing from:\n{out}");
    }

    // The printed verify command works on the files it names.
    let verify_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("payoff verify"))
        .unwrap();
    let args: Vec<&str> = verify_line.split_whitespace().skip(1).collect();
    let v = Command::new(BIN).args(&args).output().unwrap();
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));

    let id = format!("st.acme.{MONTH}");
    let statement: Value =
        serde_json::from_slice(&std::fs::read(a.join(format!("{id}.json"))).unwrap()).unwrap();
    let kinds: Vec<&str> = statement["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["outcome"].as_str().unwrap_or(l["kind"].as_str().unwrap()))
        .collect();
    for kind in ["base_fee", "ticket_resolved", "qualified_lead", "deal_won"] {
        assert!(kinds.contains(&kind), "{kind} not in {kinds:?}");
    }
    let support = statement["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["outcome"] == "ticket_resolved")
        .unwrap();
    let arms = &support["attribution"];
    let (ai, control) = (
        arms["ai"]["subjects"].as_u64().unwrap(),
        arms["control"]["subjects"].as_u64().unwrap(),
    );
    assert_eq!(ai + control, 400, "every ticket was assigned once");
    assert!(
        (20..=70).contains(&control),
        "about a tenth held out: {control}"
    );

    // Offline, from the exported events and the contract in the evidence:
    // `payoff contract simulate` reads the arms from the assignment events
    // and gives the same holdout figures and total.
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(a.join(format!("{id}.evidence.json"))).unwrap())
            .unwrap();
    let contract = root.path().join("acme.toml");
    std::fs::write(&contract, bundle["contracts"][0]["toml"].as_str().unwrap()).unwrap();
    let exported = root.path().join("acme.jsonl");
    let o = Command::new(BIN)
        .args(["events", "export", "--customer", "acme", "--output"])
        .arg(&exported)
        .arg("--data-dir")
        .arg(&a)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new(BIN)
        .args(["contract", "simulate"])
        .arg(&contract)
        .arg("--events")
        .arg(&exported)
        .args(["--period", MONTH, "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let simulated: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(simulated["total"], statement["total"]);
    let figures = |s: &Value| -> Vec<Value> {
        s["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["attribution"].clone())
            .collect()
    };
    assert_eq!(figures(&simulated), figures(&statement));

    let logins: Value =
        serde_json::from_slice(&std::fs::read(a.join("logins.json")).unwrap()).unwrap();
    for role in [
        "admin",
        "operator",
        "customer_admin",
        "customer_viewer",
        "auditor",
    ] {
        assert!(
            logins["keys"][role].as_str().unwrap().starts_with("pyk_"),
            "{role}"
        );
    }
    assert_eq!(logins["period"], MONTH);

    // Same seed, same month: the same statement but for what names the
    // run's own random keys (its signature, and the ledger hash, which
    // covers the approver's key id in each decision).
    let o = demo(&b, "11");
    assert!(o.status.success(), "{}", stderr(&o));
    let comparable = |dir: &std::path::Path| {
        let text = std::fs::read_to_string(dir.join(format!("{id}.json"))).unwrap();
        let mut statement: Value = serde_json::from_str(&text).unwrap();
        statement["signature"] = Value::Null;
        statement["ledger_head"]["hash"] = Value::Null;
        statement
    };
    assert_eq!(
        comparable(&a),
        comparable(&b),
        "two runs of one seed gave different statements"
    );

    // And the same as every earlier build gave (issue 13: a change of the
    // middle of the house changes no byte of a statement). The golden file
    // holds the statement without its signature and ledger hash, which
    // differ per run (random keys); everything else is fixed by the seed.
    let mut now = comparable(&a);
    now.as_object_mut().unwrap().remove("signature");
    let golden: Value =
        serde_json::from_str(include_str!("../golden/demo-2026-10-seed-11.json")).unwrap();
    assert!(
        now == golden,
        "the demo's statement changed from tests/golden/demo-2026-10-seed-11.json:\n{}",
        serde_json::to_string_pretty(&now).unwrap()
    );
}

#[test]
fn a_month_that_has_not_ended_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let next = (payoff_clock::wall().date_naive() + Months::new(1))
        .format("%Y-%m")
        .to_string();
    let o = Command::new(BIN)
        .args(["demo", "--no-serve", "--month", &next, "--dir"])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("has not ended"), "{}", stderr(&o));
}

/// Issue 16: `payoff demo` ignored `--data-dir`. With no `--dir`, it
/// builds in the data directory named, and refuses one it did not make.
#[test]
fn the_demo_builds_in_the_data_directory_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("named");
    let o = Command::new(BIN)
        .arg("--data-dir")
        .arg(&target)
        .args([
            "demo",
            "--no-serve",
            "--tickets",
            "30",
            "--leads",
            "20",
            "--month",
        ])
        .arg(last_month())
        .env_remove("PAYOFF_DATA_DIR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(target.join("payoff.db").exists() && target.join(".payoff-demo").exists());
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("payoff.db"), b"not the demo's").unwrap();
    let o = Command::new(BIN)
        .arg("--data-dir")
        .arg(&foreign)
        .args(["demo", "--no-serve", "--tickets", "30", "--leads", "20"])
        .env_remove("PAYOFF_DATA_DIR")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("was not made by `payoff demo`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(foreign.join("payoff.db")).unwrap(),
        b"not the demo's"
    );
}

/// `payoff demo --database URL` builds its ledger in that database, with
/// the signing and secrets keys and the knowledge index still in its
/// directory; builds there again (the database is the demo's own); and
/// refuses a database holding anything it did not make, a Payoff ledger
/// or another program's tables, without adding a table to it.
#[test]
fn the_demo_builds_in_the_database_it_is_given() {
    for db in ScratchDb::all() {
        let root = tempfile::tempdir().unwrap();
        let run = |dir: &std::path::Path, database: &str| {
            Command::new(BIN)
                .arg("--data-dir")
                .arg(dir)
                .args(["--database", database])
                .args(["demo", "--no-serve", "--tickets", "30", "--leads", "20"])
                .args(["--month", &last_month()])
                .env_remove("PAYOFF_DATA_DIR")
                .env_remove("PAYOFF_DATABASE_URL")
                .env_remove("PAYOFF_MODEL_URL")
                .output()
                .unwrap()
        };
        let local = |dir: &std::path::Path, database: &str, args: &[&str]| {
            Command::new(BIN)
                .arg("--data-dir")
                .arg(dir)
                .args(["--database", database])
                .args(args)
                .output()
                .unwrap()
        };
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let o = run(&a, &db.url);
        assert!(o.status.success(), "{}: {}", db.label, stderr(&o));
        for kept in ["signing-key.pem", "secrets.key", "knowledge", "logins.json"] {
            assert!(a.join(kept).exists(), "{}: no {kept}", db.label);
        }
        assert!(
            !a.join("payoff.db").exists(),
            "{}: a SQLite file beside",
            db.label
        );
        assert!(
            stdout(&o).contains(&format!("--database {}", db.url)),
            "the printed ledger check names the database: {}",
            stdout(&o)
        );
        let o = local(&a, &db.url, &["customers", "list", "--json"]);
        let customers: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(customers[0]["id"], "acme", "{}: {customers}", db.label);
        assert!(local(&a, &db.url, &["ledger", "verify"]).status.success());

        // Again, from another directory: the database is the demo's, so it
        // is cleared and built anew (six keys again, not twelve).
        let o = run(&b, &db.url);
        assert!(o.status.success(), "{}: {}", db.label, stderr(&o));
        let o = local(&b, &db.url, &["keys", "list", "--json"]);
        let keys: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(keys.as_array().unwrap().len(), 6, "{}: {keys}", db.label);

        // Someone's Payoff ledger: refused, untouched.
        let ledger = fresh_like(&db);
        let owner = root.path().join("owner");
        assert!(local(&owner, &ledger.url, &["init"]).status.success());
        let o = run(&root.path().join("c"), &ledger.url);
        assert_eq!(o.status.code(), Some(2), "{}: {}", db.label, stderr(&o));
        assert!(
            stderr(&o).contains("not made by `payoff demo`"),
            "{}",
            stderr(&o)
        );
        let o = local(&owner, &ledger.url, &["keys", "list", "--json"]);
        let keys: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(keys.as_array().unwrap().len(), 1, "{}: {keys}", db.label);

        // Another program's database: refused, and no table added to it.
        let theirs = fresh_like(&db);
        theirs.execute_sql("CREATE TABLE theirs (x INTEGER)");
        let o = run(&root.path().join("d"), &theirs.url);
        assert_eq!(o.status.code(), Some(2), "{}: {}", db.label, stderr(&o));
        let tables = match db.label {
            "sqlite" => "SELECT name FROM sqlite_master WHERE type = 'table'",
            _ => "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        };
        assert_eq!(
            payoff_store::scratch::query_texts(&theirs.url, tables),
            ["theirs"],
            "{}",
            db.label
        );
    }
}

/// A new empty database of the same kind as `db`.
fn fresh_like(db: &ScratchDb) -> ScratchDb {
    match db.label {
        "sqlite" => ScratchDb::sqlite(),
        _ => ScratchDb::postgres().expect("PostgreSQL is configured"),
    }
}
