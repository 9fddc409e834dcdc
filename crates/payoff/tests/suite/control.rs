//! The control-plane commands through the real binary, on every backend:
//! agent rules (check, push, list), the kill switch, and the audit chain
//! (export, verify, tampering).

use crate::common::*;
use payoff_store::scratch::ScratchDb;
use serde_json::Value;

const CAREFUL: &str = "@id(\"careful\")\nforbid(principal, action == Payoff::Action::\"send_reply\", resource)\nwhen { resource.confidence.lessThan(decimal(\"0.9\")) };\n";

#[test]
fn policy_check_push_and_list() {
    for db in ScratchDb::all() {
        init(&db);
        customer_with_key(&db, "acme", "customer_admin");
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("careful.cedar");
        write(&good, CAREFUL);
        let o = payoff(&db, &["policy", "check", good.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("customer.careful"), "{}", stdout(&o));

        // Two errors: both named with file, line and column; exit 2.
        let bad = dir.path().join("bad.cedar");
        write(
            &bad,
            "forbid(principal, action, resource)\nwhen { resource.confidance == 1 };\nforbid(principal, action, resource) when { resource.category > 2 };\n",
        );
        let o = payoff(&db, &["policy", "check", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("bad.cedar:2:"), "{err}");
        assert!(err.contains("bad.cedar:3:"), "{err}");
        let o = payoff(
            &db,
            &[
                "policy",
                "push",
                bad.to_str().unwrap(),
                "--customer",
                "acme",
            ],
        );
        assert_eq!(o.status.code(), Some(2));
        assert_bad_input(
            &payoff(&db, &["policy", "check", "/nonexistent.cedar"]),
            "/nonexistent.cedar",
        );

        let o = payoff(
            &db,
            &[
                "policy",
                "push",
                good.to_str().unwrap(),
                "--customer",
                "acme",
            ],
        );
        assert!(o.status.success(), "{}: {}", db.label, stderr(&o));
        assert!(stdout(&o).contains("version 1"));
        assert_bad_input(
            &payoff(
                &db,
                &[
                    "policy",
                    "push",
                    good.to_str().unwrap(),
                    "--customer",
                    "nobody",
                ],
            ),
            "nobody",
        );
        let o = payoff(&db, &["policy", "list", "--customer", "acme", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let listed: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(listed[0]["version"], 1, "{listed}");
        let o = payoff(&db, &["policy", "list", "--customer", "acme", "--show"]);
        assert!(o.status.success());
        let out = stdout(&o);
        assert!(
            out.contains("v1 ") && out.contains("decimal(\"0.9\")"),
            "{out}"
        );
    }
}

#[test]
fn the_kill_switch_and_the_audit_chain_from_the_command_line() {
    for db in ScratchDb::all() {
        init(&db);
        customer_with_key(&db, "acme", "agent");
        assert_bad_input(
            &payoff(&db, &["agent", "pause", "nobody"]),
            "no agent \"nobody\"",
        );
        assert_bad_input(
            &payoff(&db, &["agent", "pause", "support", "--customer", "ghost"]),
            "ghost",
        );
        let o = payoff(&db, &["agent", "pause", "support", "--customer", "acme"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = payoff(&db, &["agent", "status", "support"]);
        assert!(stdout(&o).contains("paused for acme"), "{}", stdout(&o));
        let o = payoff(&db, &["agent", "resume", "support", "--customer", "acme"]);
        assert!(o.status.success());
        let o = payoff(&db, &["agent", "status", "support"]);
        assert!(stdout(&o).contains("running for every customer"));

        // Both acts are in the audit chain, which verifies, in the database
        // and as an export; so are the customer and the key made from the
        // command line (issue 16: local writes left no record).
        let o = payoff(&db, &["audit", "verify"]);
        assert!(o.status.success(), "{}", stdout(&o));
        assert!(stdout(&o).contains("ok: 4 records"), "{}", stdout(&o));
        let dir = tempfile::tempdir().unwrap();
        let export = dir.path().join("audit.jsonl");
        let o = payoff(
            &db,
            &["audit", "export", "--output", export.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&export).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("\"action\":\"pause\"") && text.contains("\"action\":\"resume\""));
        assert!(
            text.contains("\"action\":\"customers create\"")
                && text.contains("\"action\":\"keys create\"")
                && text.contains("\"actor\":\"cli:"),
            "{text}"
        );
        let o = payoff(
            &db,
            &["audit", "verify", "--file", export.to_str().unwrap()],
        );
        assert!(o.status.success(), "{}", stdout(&o));

        // One word changed in the export: the record is named.
        let tampered = dir.path().join("tampered.jsonl");
        write(
            &tampered,
            &text.replacen("\"action\":\"resume\"", "\"action\":\"pause\"", 1),
        );
        let o = payoff(
            &db,
            &["audit", "verify", "--file", tampered.to_str().unwrap()],
        );
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(
            stdout(&o).contains("BROKEN after 3 good records"),
            "{}",
            stdout(&o)
        );
    }
}
