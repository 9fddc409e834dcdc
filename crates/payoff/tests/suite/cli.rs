//! The `payoff` command as users script it, on every backend.

use crate::common::*;
use payoff_store::scratch::ScratchDb;
use serde_json::{json, Value};

fn event_line(i: usize) -> String {
    json!({"specversion": "1.0", "id": format!("e{i}"), "source": "crm", "type": "lead.created",
           "subject": format!("L-{i}"), "time": "2026-11-05T08:00:00Z", "data": {"n": i}})
    .to_string()
}

#[test]
fn init_prints_the_admin_key_alone_on_the_last_line_and_refuses_twice() {
    for db in ScratchDb::all() {
        let key = init(&db);
        assert!(
            key.starts_with("pyk_") && !key.contains(' '),
            "{}: {key}",
            db.label
        );
        assert!(data_dir(&db).join("signing-key.pem").exists());
        assert_bad_input(&payoff(&db, &["init"]), "already initialised");
        let keys: Value =
            serde_json::from_str(&stdout(&payoff(&db, &["keys", "list", "--json"]))).unwrap();
        assert_eq!(keys[0]["role"], "admin");
        assert!(
            !stdout(&payoff(&db, &["keys", "list", "--json"])).contains(&key[20..]),
            "secrets are never listed"
        );
        let _ = std::fs::remove_dir_all(data_dir(&db));
    }
}

/// Issue 16: a mistyped `--data-dir` silently created an empty ledger, and
/// `serve` made a new signing key on it. Every command but `init` (and the
/// demo) refuses a data directory that was never initialised, and creates
/// nothing there.
#[test]
fn an_uninitialised_data_directory_is_refused_not_created() {
    let parent = tempfile::tempdir().unwrap();
    let typo = parent.path().join("payof-data");
    for args in [
        &["customers", "list"][..],
        &["keys", "create", "--role", "admin"],
        &["serve", "--listen", "127.0.0.1:0"],
        &["ledger", "verify"],
    ] {
        let o = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(&typo)
            .args(args)
            .env_remove("PAYOFF_DATA_DIR")
            .env_remove("PAYOFF_DATABASE_URL")
            .output()
            .unwrap();
        assert_bad_input(&o, "not an initialised Payoff data directory");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
}

#[test]
fn bad_input_exits_2_with_one_line() {
    for db in ScratchDb::all() {
        init(&db);
        assert_bad_input(
            &payoff(&db, &["customers", "create", "Bad Id!"]),
            "not a valid customer id",
        );
        assert!(payoff(&db, &["customers", "create", "acme"])
            .status
            .success());
        assert_bad_input(
            &payoff(&db, &["customers", "create", "acme"]),
            "already exists",
        );
        assert_bad_input(
            &payoff(&db, &["keys", "create", "--role", "root"]),
            "unknown role",
        );
        // Issue 16: `economics --csv` was silently ignored.
        assert_bad_input(
            &payoff(
                &db,
                &[
                    "economics",
                    "--customer",
                    "acme",
                    "--period",
                    "2026-09",
                    "--csv",
                ],
            ),
            "--csv: economics has no CSV form",
        );
        assert_bad_input(
            &payoff(&db, &["keys", "create", "--role", "agent"]),
            "must name its customer",
        );
        assert_bad_input(
            &payoff(
                &db,
                &["keys", "create", "--role", "admin", "--customer", "acme"],
            ),
            "provider key",
        );
        assert_bad_input(
            &payoff(
                &db,
                &["keys", "create", "--role", "agent", "--customer", "nobody"],
            ),
            "unknown customer",
        );
        assert_bad_input(
            &payoff(&db, &["keys", "revoke", "0000000000000000"]),
            "unknown key",
        );
        assert_bad_input(
            &payoff(&db, &["events", "export", "--customer", "nobody"]),
            "unknown customer",
        );
        assert_bad_input(&payoff(&db, &["serve", "--listen", "nowhere"]), "--listen");
        // Refused before any ledger is written.
        let bench = data_dir(&db).join("bench-close");
        assert_bad_input(
            &payoff(
                &db,
                &[
                    "bench",
                    "close",
                    "--period",
                    "2027-01",
                    "--dir",
                    bench.to_str().unwrap(),
                ],
            ),
            "--period: \"2027-01\" is not measured here",
        );
        assert!(!bench.exists(), "nothing written for a refused period");
        assert_eq!(
            payoff(&db, &["frobnicate"]).status.code(),
            Some(2),
            "unknown commands are usage errors"
        );
        let _ = std::fs::remove_dir_all(data_dir(&db));
    }
}

#[test]
fn events_send_is_resumable_and_names_the_bad_line() {
    for db in ScratchDb::all() {
        init(&db);
        let key = customer_with_key(&db, "acme", "agent");
        let server = Server::start(&db);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        let lines: Vec<String> = (0..2500).map(event_line).collect();
        write(&file, &(lines.join("\n") + "\n\n"));
        let send = |path: &std::path::Path| {
            command(&db)
                .args([
                    "events",
                    "send",
                    "--json",
                    "--batch",
                    "1000",
                    "--url",
                    &server.url,
                    "--key",
                    &key,
                ])
                .arg(path)
                .output()
                .unwrap()
        };
        let o = send(&file);
        assert!(o.status.success(), "{}: {}", db.label, stderr(&o));
        assert_eq!(
            serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
            json!({"accepted": 2500, "duplicates": 0})
        );
        let o = send(&file);
        assert_eq!(
            serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
            json!({"accepted": 0, "duplicates": 2500}),
            "re-sending is harmless"
        );

        let broken = dir.path().join("broken.jsonl");
        write(
            &broken,
            &format!("{}\n{}\n{{not json\n", event_line(1), event_line(2)),
        );
        assert_bad_input(&send(&broken), "broken.jsonl:3: not valid JSON");
        let invalid = dir.path().join("invalid.jsonl");
        let mut no_type: Value = serde_json::from_str(&event_line(9000)).unwrap();
        no_type.as_object_mut().unwrap().remove("type");
        write(&invalid, &format!("{}\n{}\n", event_line(9001), no_type));
        assert_bad_input(&send(&invalid), "invalid.jsonl:2: type is required");
        let conflicting = dir.path().join("conflict.jsonl");
        write(&conflicting, &event_line(5).replace("\"n\":5", "\"n\":55"));
        assert_bad_input(&send(&conflicting), "409");

        // An array file (a CloudEvents batch) works as well.
        let array = dir.path().join("batch.json");
        write(
            &array,
            &format!("[{},{}]", event_line(7000), event_line(7001)),
        );
        let o = send(&array);
        assert_eq!(
            serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
            json!({"accepted": 2, "duplicates": 0})
        );

        // Export gives back exactly what is stored; re-sending it changes nothing.
        let exported = dir.path().join("export.jsonl");
        let o = payoff(
            &db,
            &[
                "events",
                "export",
                "--customer",
                "acme",
                "--output",
                exported.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&exported).unwrap();
        assert_eq!(text.lines().count(), 2502);
        let o = send(&exported);
        assert_eq!(
            serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
            json!({"accepted": 0, "duplicates": 2502})
        );

        let o = payoff(&db, &["ledger", "verify"]);
        assert!(o.status.success(), "{}", stdout(&o));
        assert!(
            stdout(&o).contains("acme: ok, 2502 events"),
            "{}",
            stdout(&o)
        );
        server.kill();
        let _ = std::fs::remove_dir_all(data_dir(&db));
    }
}

#[test]
fn ledger_verify_fails_naming_the_edited_row() {
    for db in ScratchDb::all() {
        init(&db);
        let key = customer_with_key(&db, "acme", "agent");
        let server = Server::start(&db);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.jsonl");
        write(
            &file,
            &(0..10).map(event_line).collect::<Vec<_>>().join("\n"),
        );
        let o = command(&db)
            .args(["events", "send", "--url", &server.url, "--key", &key])
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        server.kill();
        db.execute_sql("UPDATE events SET subject = 'L-999' WHERE sequence = 4");
        let o = payoff(&db, &["ledger", "verify"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(
            stdout(&o).contains("acme: BROKEN: sequence 4: column subject"),
            "{}",
            stdout(&o)
        );
        let _ = std::fs::remove_dir_all(data_dir(&db));
    }
}

#[test]
fn settings_come_from_flags_then_environment_then_payoff_toml() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("payoff.toml"),
        "data_dir = \"from-file\"\n",
    );
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.current_dir(dir.path())
            .env_remove("PAYOFF_DATA_DIR")
            .env_remove("PAYOFF_DATABASE_URL");
        if let Some(e) = env {
            cmd.env("PAYOFF_DATA_DIR", e);
        }
        if let Some(f) = flag {
            cmd.args(["--data-dir", f]);
        }
        let o = cmd.args(["init"]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run(None, None);
    assert!(dir.path().join("from-file/payoff.db").exists());
    run(Some("from-env"), None);
    assert!(dir.path().join("from-env/payoff.db").exists());
    run(Some("from-env"), Some("from-flag"));
    assert!(dir.path().join("from-flag/payoff.db").exists());
    write(&dir.path().join("payoff.toml"), "data_dri = \"typo\"\n");
    let o = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args(["customers", "list"])
        .output()
        .unwrap();
    assert_bad_input(&o, "unknown field `data_dri`");
}

const CONTRACT: &str = r#"
[contract]
customer = "acme"
currency = "EUR"
starts = "2026-09-01"
base_fee = "50.00"

[[outcome]]
name = "lead_created"
when = 'event.type == "lead.created"'
price = { per_unit = "0.10" }
"#;

#[test]
fn contracts_close_into_statements_that_verify_offline_and_tampering_fails() {
    for db in ScratchDb::all() {
        init(&db);
        let key = customer_with_key(&db, "acme", "agent");
        let dir = tempfile::tempdir().unwrap();
        let contract = dir.path().join("acme.toml");

        // check: every error on its own line, exit 2; nothing needs a database.
        write(
            &contract,
            &CONTRACT
                .replace("\"EUR\"", "\"EUX\"")
                .replace("\"0.10\"", "\"ten\""),
        );
        let o = payoff(&db, &["contract", "check", contract.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("acme.toml:4:12: currency: \"EUX\""), "{err}");
        assert!(
            err.contains("per_unit: \"ten\" is not a decimal number"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 2, "one line per error: {err}");
        write(&contract, CONTRACT);
        let o = payoff(&db, &["contract", "check", contract.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));

        // simulate, offline: 3 leads in September, 2 created twice (duplicates).
        let events = dir.path().join("events.jsonl");
        let lines: Vec<String> = [1, 2, 3, 1, 2]
            .iter()
            .map(|i| {
                json!({"specversion": "1.0", "id": format!("e{i}"), "source": "crm", "type": "lead.created",
                       "subject": format!("L-{i}"), "time": format!("2026-09-0{i}T08:00:00Z")})
                .to_string()
            })
            .collect();
        write(&events, &lines.join("\n"));
        let o = payoff(
            &db,
            &[
                "contract",
                "simulate",
                contract.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
                "--period",
                "2026-09",
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let simulated: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(simulated["total"], "50.30", "{simulated}");

        // push, send, close, export evidence, verify.
        let o = payoff(&db, &["contract", "push", contract.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("version 1"), "{}", stdout(&o));
        let server = Server::start(&db);
        let o = command(&db)
            .args(["events", "send", "--url", &server.url, "--key", &key])
            .arg(&events)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        server.kill();
        let o = payoff(
            &db,
            &[
                "statement",
                "close",
                "--customer",
                "acme",
                "--period",
                "2026-09",
                "--json",
            ],
        );
        assert!(o.status.success(), "{}: {}", db.label, stderr(&o));
        let closed: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(closed["total"], "50.30");
        assert_bad_input(
            &payoff(
                &db,
                &[
                    "statement",
                    "close",
                    "--customer",
                    "acme",
                    "--period",
                    "2099-01",
                ],
            ),
            "period 2099-01 ends at",
        );
        assert_bad_input(
            &payoff(
                &db,
                &[
                    "statement",
                    "close",
                    "--customer",
                    "nobody",
                    "--period",
                    "2026-09",
                ],
            ),
            "has no contract",
        );
        let out = dir.path().join("out");
        let o = payoff(
            &db,
            &[
                "statement",
                "evidence",
                "st.acme.2026-09",
                "--output",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let public_key = stdout(&o).split("--key ").nth(1).unwrap().trim().to_owned();
        let statement = out.join("st.acme.2026-09.json");
        let bundle = out.join("st.acme.2026-09.evidence.json");
        let verify = |statement: &std::path::Path, bundle: &std::path::Path| {
            command(&db)
                .arg("verify")
                .arg(statement)
                .arg("--evidence")
                .arg(bundle)
                .args(["--key", &public_key])
                .output()
                .unwrap()
        };
        let o = verify(&statement, &bundle);
        assert!(o.status.success(), "{}: {}", stdout(&o), stderr(&o));
        assert!(stdout(&o).starts_with("verified: statement st.acme.2026-09 total 50.30 EUR"));

        // One byte changed anywhere: exit 1, naming where.
        let text = std::fs::read_to_string(&statement).unwrap();
        let forged = dir.path().join("forged.json");
        write(
            &forged,
            &text.replace("\"total\":\"50.30\"", "\"total\":\"50.20\""),
        );
        let o = verify(&forged, &bundle);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stdout(&o).contains("differs from its recomputation at total"),
            "{}",
            stdout(&o)
        );
        let bundle_text = std::fs::read_to_string(&bundle).unwrap();
        let forged_bundle = dir.path().join("forged-bundle.json");
        write(&forged_bundle, &bundle_text.replacen("L-2", "L-7", 1));
        let o = verify(&statement, &forged_bundle);
        assert_eq!(o.status.code(), Some(1));
        assert!(stdout(&o).contains("event at sequence 2"), "{}", stdout(&o));
        write(&forged_bundle, &bundle_text.replacen("0.10", "0.01", 1));
        let o = verify(&statement, &forged_bundle);
        assert_eq!(o.status.code(), Some(1));
        assert!(stdout(&o).contains("contract version 1"), "{}", stdout(&o));
        assert_bad_input(
            &verify(&statement, &dir.path().join("missing.json")),
            "missing.json",
        );

        // Issue 15: `--key` refused the keys document the server publishes.
        // It takes it, file or URL, and uses the key that signed; a document
        // that does not list that key is refused.
        let verify_with = |key: &str| {
            command(&db)
                .arg("verify")
                .arg(&statement)
                .arg("--evidence")
                .arg(&bundle)
                .args(["--key", key])
                .output()
                .unwrap()
        };
        let other = "11".repeat(32);
        let document = json!({"keys": [
            {"algorithm": "ed25519", "public_key": other},
            {"algorithm": "ed25519", "public_key": public_key},
        ]});
        let keys_file = dir.path().join("keys.json");
        write(&keys_file, &document.to_string());
        let o = verify_with(keys_file.to_str().unwrap());
        assert!(o.status.success(), "{}: {}", stdout(&o), stderr(&o));
        let server = Server::start(&db);
        let o = verify_with(&format!("{}/.well-known/payoff/keys", server.url));
        server.kill();
        assert!(o.status.success(), "{}: {}", stdout(&o), stderr(&o));
        write(
            &keys_file,
            &json!({"keys": [{"algorithm": "ed25519", "public_key": other}]}).to_string(),
        );
        assert_bad_input(
            &verify_with(keys_file.to_str().unwrap()),
            "which the keys document does not list",
        );
        // Statements name their key by id: the document's entry of that id
        // is used, and an entry whose id is not its key's is refused.
        let signed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&statement).unwrap()).unwrap();
        let id = signed["signature"]["key_id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("ed25519:") && id.len() == 24, "{id}");
        write(
            &keys_file,
            &json!({"keys": [
                {"algorithm": "ed25519", "public_key": other},
                {"algorithm": "ed25519", "key_id": id, "public_key": public_key},
            ]})
            .to_string(),
        );
        let o = verify_with(keys_file.to_str().unwrap());
        assert!(o.status.success(), "{}: {}", stdout(&o), stderr(&o));
        write(
            &keys_file,
            &json!({"keys": [{"algorithm": "ed25519", "key_id": id, "public_key": other}]})
                .to_string(),
        );
        assert_bad_input(
            &verify_with(keys_file.to_str().unwrap()),
            "which is not that key's id",
        );
        let _ = std::fs::remove_dir_all(data_dir(&db));
    }
}

#[test]
fn knowledge_add_sends_a_folder_and_names_a_bad_file() {
    let db = ScratchDb::sqlite();
    init(&db);
    let key = customer_with_key(&db, "acme", "customer_admin");
    let server = Server::start(&db);
    let dir = tempfile::tempdir().unwrap();
    let kb = dir.path().join("kb");
    std::fs::create_dir_all(kb.join("billing")).unwrap();
    write(
        &kb.join("returns.md"),
        "# Returns\n\nYou can return any item within 30 days of delivery.\n",
    );
    write(
        &kb.join("billing/invoices.html"),
        "<h1>Invoices</h1><p>Invoices are emailed on the first day of each month.</p>",
    );
    write(
        &kb.join("internal.jsonl"),
        &json!({"id": "runbook", "title": "Refund runbook", "body": "Refunds over 500 need a second approver.", "groups": ["finance"]}).to_string(),
    );
    write(&kb.join("notes.bin"), "ignored: not a document format");
    // Issue 15: a link back up the tree was followed forever; each real
    // folder is read once.
    std::os::unix::fs::symlink(&kb, kb.join("billing/loop")).unwrap();
    let run = |args: &[&str]| {
        command(&db)
            .args(args)
            .args(["--url", &server.url, "--key", &key])
            .output()
            .unwrap()
    };
    let o = run(&["knowledge", "add", kb.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "stored 3 documents");
    let o = run(&["knowledge", "reindex"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("reindexed: "), "{}", stdout(&o));
    let passages: u64 = stdout(&o)
        .trim()
        .rsplit(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(passages >= 3, "{passages}");
    let empty = dir.path().join("empty.md");
    write(&empty, "   \n");
    assert_bad_input(
        &run(&["knowledge", "add", empty.to_str().unwrap()]),
        "empty.md",
    );
    server.kill();

    // An index of another layout (an older release's) is rebuilt from the
    // stored documents at the next start.
    let index_dir = data_dir(&db).join("knowledge");
    std::fs::remove_dir_all(&index_dir).unwrap();
    std::fs::create_dir_all(&index_dir).unwrap();
    let mut older = tantivy::schema::Schema::builder();
    older.add_text_field("text", tantivy::schema::TEXT);
    drop(tantivy::Index::create_in_dir(&index_dir, older.build()).unwrap());
    let server = Server::start(&db);
    assert!(
        server
            .banner
            .contains(&format!(", {passages} knowledge passages")),
        "{}",
        server.banner
    );
    server.kill();
    // Issue 16: every start rebuilt the index (10 s for 400k passages).
    // Nothing changed since the last start: nothing is applied again.
    let server = Server::start(&db);
    assert!(
        server.banner.contains(&format!(
            ", {passages} knowledge passages, 0 knowledge changes applied at start"
        )),
        "{}",
        server.banner
    );
    server.kill();
}

#[test]
fn the_data_directory_and_its_secrets_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.current_dir(dir.path())
            .env_remove("PAYOFF_DATA_DIR")
            .env_remove("PAYOFF_DATABASE_URL")
            .env_remove("PAYOFF_EGRESS_ALLOW")
            .env_remove("PAYOFF_CONFIG");
        cmd.envs(env.iter().copied());
        cmd.args(["--data-dir", "data"])
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["init"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("data"), 0o700);
    assert_eq!(mode("data/payoff.db"), 0o600, "it holds webhook secrets");
    assert_eq!(mode("data/signing-key.pem"), 0o600);

    // The egress allow list is checked at start, by source.
    write(
        &dir.path().join("payoff.toml"),
        "[egress]\nallow = [\"10.0.0.0/8\", \"not a host!\"]\n",
    );
    assert_bad_input(&run(&["customers", "list"], &[]), "egress.allow");
    assert_bad_input(
        &run(
            &["customers", "list"],
            &[("PAYOFF_EGRESS_ALLOW", "127.0.0.0/8,10.0.0.0/33")],
        ),
        "PAYOFF_EGRESS_ALLOW",
    );
    write(
        &dir.path().join("payoff.toml"),
        "[egress]\nallow = [\"10.0.0.0/8\", \"hooks.internal\"]\n",
    );
    let o = run(&["customers", "list"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Issue 16: logs were plain text with no access log. With
/// `PAYOFF_LOG_FORMAT=json` every line is one JSON object, and each request
/// leaves an access record with its route, status and request id.
#[test]
fn the_access_log_is_json_lines_with_a_request_id() {
    use std::io::{BufRead, BufReader};
    let db = ScratchDb::sqlite();
    init(&db);
    let mut child = command(&db)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PAYOFF_LOG", "warn,payoff::access=info")
        .env("PAYOFF_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answered_id = runtime.block_on(async {
        let reply = reqwest::Client::new()
            .get(format!("{url}/v1/customers"))
            .header("x-request-id", "req-42")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 401);
        reply.headers()["x-request-id"].to_str().unwrap().to_owned()
    });
    assert_eq!(answered_id, "req-42");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let records: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = records
        .iter()
        .find(|r| r["target"] == "payoff::access")
        .unwrap_or_else(|| panic!("no access record in {stderr}"));
    assert_eq!(access["fields"]["status"], 401, "{access}");
    assert_eq!(access["span"]["route"], "/v1/customers", "{access}");
    assert_eq!(access["span"]["id"], "req-42", "{access}");
}

/// Issue 16: there was no backup command. A backup taken while a server
/// ingests holds a consistent ledger (every chain verifies, ending at a
/// head between what was acknowledged before and after it), restores into
/// a new data directory only, and PostgreSQL is sent to `pg_dump`.
#[test]
fn a_backup_taken_under_load_restores_into_a_verified_ledger() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let db = ScratchDb::sqlite();
    init(&db);
    let key = customer_with_key(&db, "acme", "agent");
    let server = Server::start(&db);
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let sender = {
        let (stop, acked, url) = (stop.clone(), acked.clone(), server.url.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let http = reqwest::Client::new();
                for batch in 0.. {
                    let events: Vec<Value> = (0..50)
                        .map(|i| json!({"specversion": "1.0", "id": format!("b{batch}-{i}"), "source": "load",
                            "type": "ticket.created", "subject": format!("T-{batch}"), "data": {}}))
                        .collect();
                    let reply = http
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(&key)
                        .json(&events)
                        .send()
                        .await
                        .unwrap();
                    assert!(reply.status().is_success());
                    acked.fetch_add(50, Ordering::SeqCst);
                    if batch == 3 {
                        started_tx.send(()).unwrap();
                    }
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                }
            });
        })
    };
    started_rx.recv().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backup_dir = dir.path().join("backup");
    let before = acked.load(Ordering::SeqCst);
    let o = payoff(&db, &["backup", "--output", backup_dir.to_str().unwrap()]);
    let after = acked.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    server.kill();
    assert!(o.status.success(), "{}", stderr(&o));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(backup_dir.join("manifest.json")).unwrap())
            .unwrap();
    let head = manifest["heads"][0]["sequence"].as_u64().unwrap();
    assert!(
        (before..=after + 50).contains(&head),
        "the backup's head {head} is between {before} and {after} acknowledged"
    );
    assert_bad_input(
        &payoff(&db, &["backup", "--output", backup_dir.to_str().unwrap()]),
        "exists",
    );

    let restored = dir.path().join("restored");
    let in_restored = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(&restored)
            .args(args)
            .env_remove("PAYOFF_DATA_DIR")
            .env_remove("PAYOFF_DATABASE_URL")
            .output()
            .unwrap()
    };
    let o = in_restored(&["restore", backup_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = in_restored(&["ledger", "verify", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let chains: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(chains[0]["events"].as_u64(), Some(head), "{chains}");
    assert_bad_input(
        &in_restored(&["restore", backup_dir.to_str().unwrap()]),
        "already holds a ledger",
    );

    if let Some(pg) = ScratchDb::postgres() {
        init(&pg);
        assert_bad_input(
            &payoff(
                &pg,
                &[
                    "backup",
                    "--output",
                    dir.path().join("pg").to_str().unwrap(),
                ],
            ),
            "pg_dump",
        );
    }
}

/// docs/configuration.md lists every `payoff.toml` key; its example is
/// taken whole by the binary (unknown keys are refused, so a key the
/// document misspells or the code renamed fails here).
#[test]
fn the_documented_settings_file_is_accepted_whole() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap();
    let example = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml example");
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("payoff.toml"), example);
    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .current_dir(dir.path())
            .args(args)
            .env_remove("PAYOFF_DATA_DIR")
            .env_remove("PAYOFF_DATABASE_URL")
            .env_remove("PAYOFF_MODEL_KEY")
            .env("OPENAI_API_KEY", "sk-test")
            .output()
            .unwrap()
    };
    let o = run(&["init"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["customers", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    write(
        &dir.path().join("payoff.toml"),
        &example.replace("[rate_limits]", "[rate_limits]\nkeys_per_second = 1"),
    );
    assert_bad_input(
        &run(&["customers", "list"]),
        "unknown field `keys_per_second`",
    );
    // A quality band that cannot hold is named by its place.
    write(
        &dir.path().join("payoff.toml"),
        &example.replace("max = 0.05", "max = 1.5"),
    );
    assert_bad_input(&run(&["customers", "list"]), "quality.band[0].max");
}

/// Issue 16: the README's path could not be followed as written (no sample
/// files, unclear keys). Its first run, the first `sh` block under "Using
/// it", runs here as written (only the port differs), in a scratch folder
/// holding the repository's `examples/`, with this build's `payoff`.
#[test]
fn the_readme_first_run_works_as_written() {
    use std::os::unix::process::CommandExt;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let block = readme
        .split("## Using it")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("a sh block under Using it");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = block.replace("8080", &port.to_string());
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        std::fs::canonicalize(format!("{root}/examples")).unwrap(),
        dir.path().join("examples"),
    )
    .unwrap();
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("PAYOFF_LISTEN", format!("127.0.0.1:{port}"))
        .env("PAYOFF_URL", format!("http://127.0.0.1:{port}"))
        .env_remove("PAYOFF_DATA_DIR")
        .env_remove("PAYOFF_DATABASE_URL")
        .env_remove("PAYOFF_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id();
    // The script's output is small (well under a pipe's buffer): wait for
    // the script, then end whatever it started (a failed step leaves the
    // server running, holding the pipes), then read.
    let status = child.wait().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .output();
    let mut out = String::new();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "the README's first run failed:\n{out}\n{err}"
    );
    assert!(out.contains("568.40"), "{out}");
    assert!(
        out.contains("verified: statement st.acme.2026-11 total 568.40 USD"),
        "{out}"
    );
}

/// Issue 15: one signing key, no rotation. After `payoff signing rotate`,
/// new statements are signed by the new key, the server publishes both
/// keys with their windows, and a statement closed before the rotation
/// still verifies against the published document.
#[test]
fn a_rotated_signing_key_stays_published_and_old_statements_verify() {
    let db = ScratchDb::sqlite();
    init(&db);
    customer_with_key(&db, "acme", "agent");
    let dir = tempfile::tempdir().unwrap();
    let contract = dir.path().join("acme.toml");
    write(&contract, CONTRACT);
    assert!(
        payoff(&db, &["contract", "push", contract.to_str().unwrap()])
            .status
            .success()
    );
    let close = |period: &str| {
        let o = payoff(
            &db,
            &[
                "statement",
                "close",
                "--customer",
                "acme",
                "--period",
                period,
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()["signature"]["public_key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let o = payoff(&db, &["contract", "list", "--customer", "acme", "--json"]);
    let versions: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(versions[0]["version"], 1, "{versions}");
    let first = close("2026-09");
    let o = payoff(&db, &["signing", "rotate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let second = close("2026-10");
    assert_ne!(first, second, "the new key signs");
    let o = payoff(&db, &["signing", "list", "--json"]);
    let listed: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(listed[0]["public_key"], first.as_str(), "{listed}");
    assert!(listed[0]["valid_until"].is_string(), "{listed}");
    assert_eq!(listed[1]["public_key"], second.as_str());
    assert!(listed[1]["valid_until"].is_null());

    let server = Server::start(&db);
    let keys_url = format!("{}/.well-known/payoff/keys", server.url);
    let out = dir.path().join("out");
    let o = payoff(
        &db,
        &[
            "statement",
            "evidence",
            "st.acme.2026-09",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = command(&db)
        .arg("verify")
        .arg(out.join("st.acme.2026-09.json"))
        .arg("--evidence")
        .arg(out.join("st.acme.2026-09.evidence.json"))
        .args(["--key", &keys_url])
        .output()
        .unwrap();
    server.kill();
    assert!(o.status.success(), "{}: {}", stdout(&o), stderr(&o));
}

/// The commands `payoff --help` (or `payoff GROUP --help`) lists, but
/// `help`: read from the binary, not copied from the code.
fn listed_commands(path: &[&str]) -> Vec<String> {
    let o = std::process::Command::new(BIN)
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success(), "{path:?}: {}", stderr(&o));
    stdout(&o)
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path under `path`, groups and leaves, as `help` lists them.
fn every_command(path: Vec<String>, out: &mut Vec<Vec<String>>) {
    let args: Vec<&str> = path.iter().map(String::as_str).collect();
    for name in listed_commands(&args) {
        let mut sub = path.clone();
        sub.push(name);
        out.push(sub.clone());
        every_command(sub, out);
    }
}

/// `payoff ARGS` in an empty folder, with a data directory that does not
/// exist: what a newcomer gets before `payoff init`.
fn uninitialised(args: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let place = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(place.path().join("payoff-data"))
        .args(args)
        .current_dir(place.path())
        .env_remove("PAYOFF_DATA_DIR")
        .env_remove("PAYOFF_DATABASE_URL")
        .env_remove("PAYOFF_CONFIG")
        .output()
        .unwrap();
    assert!(
        !place.path().join("payoff-data").exists(),
        "{args:?} created a data directory"
    );
    (o, place)
}

#[test]
fn shell_completions_name_every_command_and_need_no_data_directory() {
    let top = listed_commands(&[]);
    assert!(top.len() > 10, "{top:?}");
    let (o, _place) = uninitialised(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    assert!(
        script.contains("complete -F _payoff"),
        "not a bash completion script"
    );
    for name in &top {
        assert!(
            script.contains(&format!("payoff,{name})")),
            "the bash completions miss `payoff {name}`"
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (o, _place) = uninitialised(&["completions", shell]);
        assert!(
            o.status.success() && !o.stdout.is_empty(),
            "{shell}: {}",
            stderr(&o)
        );
    }
    let (o, _place) = uninitialised(&["completions", "tcsh"]);
    assert_bad_input(&o, "\"tcsh\" is not a shell; the shells are bash");
}

#[test]
fn manual_pages_cover_every_command_and_name_it() {
    let mut commands = Vec::new();
    every_command(Vec::new(), &mut commands);
    assert!(
        commands.iter().any(|c| c == &["contract", "push"]),
        "{commands:?}"
    );
    let (o, place) = uninitialised(&["man", "--output", "man1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = place.path().join("man1");
    let mut pages = vec![vec!["payoff".to_owned()]];
    pages.extend(commands.into_iter().map(|c| {
        let mut page = vec!["payoff".to_owned()];
        page.extend(c);
        page
    }));
    for page in pages {
        let name = page.join("-");
        let path = dir.join(format!("{name}.1"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no page for `{}`: {e}", page.join(" ")));
        assert!(
            text.lines().any(|l| l.starts_with(".TH ")),
            "{name}.1 is not a roff page"
        );
        // roff escapes hyphens: `payoff\-contract\-push \- Store …`.
        let named = text
            .lines()
            .skip_while(|l| l.trim() != ".SH NAME")
            .nth(1)
            .unwrap_or_default()
            .replace("\\-", "-");
        assert!(
            named.starts_with(&format!("{name} - ")),
            "{name}.1 names {named:?}"
        );
    }
}

/// The `--json` renderings of commands that had none: one JSON document
/// each, with what the text shows. (Rendering does not depend on the
/// backend, so SQLite alone.)
#[test]
fn commands_print_json_when_asked() {
    let json_of = |o: std::process::Output| -> Value {
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        serde_json::from_str(&stdout(&o))
            .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", stdout(&o)))
    };
    let db = ScratchDb::sqlite();
    let made = json_of(payoff(&db, &["init", "--json"]));
    assert!(
        made["admin_key"].as_str().unwrap().starts_with("pyk_"),
        "{made}"
    );
    assert_eq!(made["backend"], "sqlite");
    let dir = tempfile::tempdir().unwrap();
    let contract = dir.path().join("acme.toml");
    write(&contract, CONTRACT);
    let checked = json_of(payoff(
        &db,
        &["contract", "check", contract.to_str().unwrap(), "--json"],
    ));
    assert_eq!(checked["customer"], "acme");
    assert_eq!(checked["outcome_kinds"], 1);
    assert!(payoff(&db, &["customers", "create", "acme"])
        .status
        .success());
    assert!(
        payoff(&db, &["contract", "push", contract.to_str().unwrap()])
            .status
            .success()
    );
    assert!(payoff(
        &db,
        &[
            "statement",
            "close",
            "--customer",
            "acme",
            "--period",
            "2026-09"
        ]
    )
    .status
    .success());

    let listed = json_of(payoff(
        &db,
        &["statement", "list", "--customer", "acme", "--json"],
    ));
    assert_eq!(listed[0]["id"], "st.acme.2026-09", "{listed}");
    assert_eq!(listed[0]["total"], "50.00");
    let out = dir.path().join("out");
    let written = json_of(payoff(
        &db,
        &[
            "statement",
            "evidence",
            "st.acme.2026-09",
            "--output",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    let verify = |statement: &str| {
        std::process::Command::new(BIN)
            .args(["verify", statement, "--evidence"])
            .arg(written["evidence"].as_str().unwrap())
            .args(["--key", written["public_key"].as_str().unwrap(), "--json"])
            .output()
            .unwrap()
    };
    let verdict = json_of(verify(written["statement"].as_str().unwrap()));
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["total"], "50.00");
    let tampered = dir.path().join("tampered.json");
    let text = std::fs::read_to_string(written["statement"].as_str().unwrap()).unwrap();
    write(&tampered, &text.replace("50.00", "40.00"));
    let o = verify(tampered.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1), "a failed check still exits 1");
    let verdict: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(verdict["verified"], false, "{verdict}");
    assert!(verdict["problem"].as_str().is_some_and(|p| !p.is_empty()));

    let switched = json_of(payoff(
        &db,
        &["agent", "pause", "support", "--customer", "acme", "--json"],
    ));
    assert_eq!(
        switched,
        json!({"agent": "support", "customer": "acme", "paused": true})
    );
    let status = json_of(payoff(&db, &["agent", "status", "support", "--json"]));
    assert_eq!(status["pauses"][0]["customer"], "acme", "{status}");
    assert!(status["pauses"][0]["paused_by"]
        .as_str()
        .unwrap()
        .starts_with("cli:"));

    let created = json_of(payoff(
        &db,
        &[
            "keys",
            "create",
            "--role",
            "agent",
            "--customer",
            "acme",
            "--json",
        ],
    ));
    let revoked = json_of(payoff(
        &db,
        &[
            "keys",
            "revoke",
            created["key_id"].as_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(revoked["key_id"], created["key_id"]);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
}

/// Issue 17: `payoff prices import` reads LiteLLM's price file into a new
/// price-table version that prices model calls; a bad file, a time in the
/// past and a provider it does not list are refused in one line.
#[test]
fn prices_import_reads_litellms_price_file_into_a_new_version() {
    let file = std::env::temp_dir().join(format!("litellm-prices-{}.json", std::process::id()));
    // LiteLLM's format; 3e-06 a token is 3 a million.
    std::fs::write(
        &file,
        r#"{"sample_spec": {"mode": "one of chat, embedding"},
            "acme-chat": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                          "cache_read_input_token_cost": 3e-07, "litellm_provider": "acme-ai", "mode": "chat"},
            "acme-image": {"output_cost_per_image": 0.04, "litellm_provider": "acme-ai", "mode": "image_generation"},
            "other-chat": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "litellm_provider": "other", "mode": "chat"}}"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    for db in ScratchDb::all() {
        init(&db);
        let dry = payoff(
            &db,
            &[
                "prices",
                "import",
                path,
                "--provider",
                "acme-ai",
                "--effective",
                "2030-01-01T00:00:00Z",
                "--dry-run",
            ],
        );
        assert!(dry.status.success(), "{}", stderr(&dry));
        let table = stdout(&dry);
        assert!(
            table.contains("model = \"acme-chat\"")
                && table.contains("input_per_million = \"3\"")
                && table.contains("output_per_million = \"15\"")
                && table.contains("cached_input_per_million = \"0.3\""),
            "{table}"
        );
        assert!(
            !table.contains("other-chat") && !table.contains("acme-image"),
            "{table}"
        );
        let listed = payoff(&db, &["prices", "list", "--json"]);
        assert_eq!(
            serde_json::from_str::<Value>(&stdout(&listed)).unwrap(),
            json!([]),
            "a dry run stores nothing"
        );

        let stored = payoff(
            &db,
            &[
                "prices",
                "import",
                path,
                "--effective",
                "2030-01-01T00:00:00Z",
                "--json",
            ],
        );
        assert!(stored.status.success(), "{}", stderr(&stored));
        let report: Value = serde_json::from_str(&stdout(&stored)).unwrap();
        assert_eq!(
            (&report["version"], &report["models"]),
            (&json!(1), &json!(2)),
            "{report}"
        );
        assert_eq!(
            report["skipped"],
            json!([{"model": "acme-image", "reason": "mode \"image_generation\" is not priced per token"}])
        );
        let listed: Value =
            serde_json::from_str(&stdout(&payoff(&db, &["prices", "list", "--json"]))).unwrap();
        assert_eq!(listed[0]["version"], 1, "{listed}");
        assert!(
            listed[0]["body"].as_str().unwrap().contains("acme-chat"),
            "{listed}"
        );
        let audit = stdout(&payoff(&db, &["audit", "export"]));
        assert!(
            audit.contains("prices import"),
            "the import is audited: {audit}"
        );

        assert_bad_input(
            &payoff(
                &db,
                &[
                    "prices",
                    "import",
                    path,
                    "--effective",
                    "2020-01-01T00:00:00Z",
                ],
            ),
            "is in the past",
        );
        assert_bad_input(
            &payoff(&db, &["prices", "import", path, "--effective", "tomorrow"]),
            "--effective",
        );
        assert_bad_input(
            &payoff(&db, &["prices", "import", path, "--provider", "nobody"]),
            "prices no model of nobody",
        );
        assert_bad_input(
            &payoff(&db, &["prices", "import", "/nonexistent/prices.json"]),
            "/nonexistent/prices.json",
        );
        let _ = std::fs::remove_dir_all(data_dir(&db));
    }
    let _ = std::fs::remove_file(&file);
}
