//! The audit chain's storage contract, run on every backend.

use chrono::{DateTime, Utc};
use payoff_store::scratch::ScratchDb;
use payoff_store::{AuditEntry, AuditFilter, Store};

fn entry(
    actor: &str,
    customer: Option<&str>,
    action: &str,
    decision: &str,
    at_s: i64,
) -> AuditEntry {
    AuditEntry {
        at: DateTime::<Utc>::from_timestamp(at_s, 0).unwrap(),
        actor: actor.into(),
        role: Some("operator".into()),
        customer: customer.map(str::to_owned),
        action: action.into(),
        resource: format!("/v1/{action}"),
        decision: decision.into(),
        reason: "because".into(),
        policy_ids: vec!["role.operator".into()],
    }
}

#[test]
fn concurrent_writers_make_one_gapless_chain_that_verifies() {
    for db in ScratchDb::all() {
        let store = Store::open(&db.url).unwrap();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let store = store.clone();
                scope.spawn(move || {
                    for i in 0..25 {
                        store
                            .append_audit(&entry(
                                &format!("key_{t}"),
                                Some("acme"),
                                "close",
                                "allow",
                                1_790_000_000 + i,
                            ))
                            .unwrap();
                    }
                });
            }
        });
        let all = store
            .audit(&AuditFilter {
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        let sequences: Vec<u64> = all.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, (1..=100).collect::<Vec<_>>(), "{}", db.label);
        let report = store.verify_audit().unwrap();
        assert_eq!(report.records, 100, "{}", db.label);
        assert_eq!(report.broken, None, "{}", db.label);
        assert_eq!(report.head_hash, hex::encode(all[99].hash), "{}", db.label);
    }
}

#[test]
fn filters_select_by_customer_actor_action_decision_and_time() {
    for db in ScratchDb::all() {
        let store = Store::open(&db.url).unwrap();
        store
            .append_audit(&entry(
                "key_a",
                Some("acme"),
                "POST /v1/close",
                "allow",
                100,
            ))
            .unwrap();
        store
            .append_audit(&entry("key_b", Some("beta"), "POST /v1/close", "deny", 200))
            .unwrap();
        store
            .append_audit(&entry(
                "agent:support",
                Some("acme"),
                "send_reply",
                "allow",
                300,
            ))
            .unwrap();
        store
            .append_audit(&entry("anonymous", None, "GET /v1/events", "deny", 400))
            .unwrap();
        let seqs = |f: AuditFilter| -> Vec<u64> {
            store
                .audit(&AuditFilter {
                    limit: if f.limit == 0 { 100 } else { f.limit },
                    ..f
                })
                .unwrap()
                .iter()
                .map(|r| r.sequence)
                .collect()
        };
        assert_eq!(
            seqs(AuditFilter {
                customer: Some("acme".into()),
                ..Default::default()
            }),
            [1, 3]
        );
        assert_eq!(
            seqs(AuditFilter {
                actor: Some("key_b".into()),
                ..Default::default()
            }),
            [2]
        );
        assert_eq!(
            seqs(AuditFilter {
                action: Some("close".into()),
                ..Default::default()
            }),
            [1, 2]
        );
        assert_eq!(
            seqs(AuditFilter {
                decision: Some("deny".into()),
                ..Default::default()
            }),
            [2, 4]
        );
        let t = |s| DateTime::<Utc>::from_timestamp(s, 0);
        assert_eq!(
            seqs(AuditFilter {
                since: t(200),
                until: t(400),
                ..Default::default()
            }),
            [2, 3]
        );
        assert_eq!(
            seqs(AuditFilter {
                after_sequence: Some(2),
                limit: 1,
                ..Default::default()
            }),
            [3]
        );
        assert_eq!(
            seqs(AuditFilter {
                newest_first: true,
                ..Default::default()
            }),
            [4, 3, 2, 1]
        );
        assert_eq!(
            seqs(AuditFilter {
                newest_first: true,
                before_sequence: Some(4),
                customer: Some("acme".into()),
                ..Default::default()
            }),
            [3, 1]
        );
        let back = &store
            .audit(&AuditFilter {
                limit: 1,
                ..Default::default()
            })
            .unwrap()[0];
        assert_eq!(
            back.entry,
            entry("key_a", Some("acme"), "POST /v1/close", "allow", 100)
        );
    }
}

#[test]
fn an_altered_row_is_named_by_verification() {
    for db in ScratchDb::all() {
        let store = Store::open(&db.url).unwrap();
        for i in 0..3 {
            store
                .append_audit(&entry("key_a", Some("acme"), "close", "deny", 100 + i))
                .unwrap();
        }
        db.execute_sql(
            "UPDATE audit_log SET body = replace(body, '\"deny\"', '\"allow\"') WHERE sequence = 2",
        );
        let report = store.verify_audit().unwrap();
        assert_eq!(report.records, 1, "{}", db.label);
        assert!(
            report.broken.as_deref().unwrap().starts_with("record 2:"),
            "{}: {report:?}",
            db.label
        );
    }
}
