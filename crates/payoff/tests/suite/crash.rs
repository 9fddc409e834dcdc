//! Acknowledged means durable: the server is SIGKILLed while clients are
//! sending, restarted, and every acknowledged event must be there exactly
//! once, with an intact chain, and the outcome read model (which the
//! server folds while the events arrive) must equal a replay.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::*;
use payoff_store::scratch::ScratchDb;
use payoff_store::{EventFilter, Store};
use serde_json::json;

const CLIENTS: usize = 4;

const CONTRACT: &str = r#"
[contract]
customer = "acme"
currency = "USD"
period = "monthly"
starts = "2026-11-01"

[[outcome]]
name = "opened"
when = 'event.type == "ticket.created" && event.data.i % 2 == 0'
void_when = 'event.type == "ticket.created" && event.data.i % 2 == 1'
matures_after = "72h"
price = { per_unit = "1.00" }
"#;
const BATCH: usize = 200;

fn batch_body(client: usize, batch: usize) -> Vec<u8> {
    let events: Vec<_> = (0..BATCH)
        .map(|i| {
            json!({"specversion": "1.0", "id": format!("c{client}-b{batch}-e{i}"), "source": "crash-test",
                   "type": "ticket.created", "subject": format!("T-{client}-{batch}-{}", i / 2),
                   "time": "2026-11-05T10:00:00Z", "data": {"i": i}})
        })
        .collect();
    serde_json::to_vec(&events).unwrap()
}

/// Drives the server with `CLIENTS` concurrent senders and kills it once
/// `kill_after` batches have been acknowledged, while others are in flight.
/// Returns the ids of every event of every acknowledged batch.
fn drive_and_kill(server: Server, key: &str, kill_after: usize, round: usize) -> HashSet<String> {
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = server.url.clone();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (acked, count, url, key, killed_tx) = (
            acked.clone(),
            count.clone(),
            url.clone(),
            key.to_owned(),
            killed_tx.clone(),
        );
        tasks.push(runtime.spawn(async move {
            let http = reqwest::Client::new();
            for batch in 0.. {
                let sent = http
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(&key)
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(batch_body(client + 10 * round, batch))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        let mut set = acked.lock().unwrap();
                        set.extend(
                            (0..BATCH).map(|i| format!("c{}-b{batch}-e{i}", client + 10 * round)),
                        );
                        drop(set);
                        if count.fetch_add(1, Ordering::SeqCst) + 1 == kill_after {
                            let _ = killed_tx.send(());
                        }
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    drop(killed_tx);
    killed_rx.recv().unwrap();
    server.kill();
    for t in tasks {
        runtime.block_on(t).unwrap();
    }
    let set = acked.lock().unwrap().clone();
    set
}

#[test]
fn every_acknowledged_event_survives_sigkill_exactly_once() {
    for db in ScratchDb::all() {
        init(&db);
        let key = customer_with_key(&db, "acme", "agent");
        // Even events make an outcome of their subject, odd ones void it.
        let contract = data_dir(&db).join("acme.toml");
        write(&contract, CONTRACT);
        let o = payoff(&db, &["contract", "push", contract.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut acknowledged = HashSet::new();
        for (round, kill_after) in [1usize, 7, 23, 60].into_iter().enumerate() {
            let server = Server::start(&db);
            acknowledged.extend(drive_and_kill(server, &key, kill_after, round));

            // Restart; the ledger must hold every acknowledged event once.
            let server = Server::start(&db);
            let store = Store::open(&db.url).unwrap();
            let mut stored = Vec::new();
            let mut filter = EventFilter {
                customer: "acme".into(),
                limit: 10_000,
                ..Default::default()
            };
            loop {
                let page = store.events(&filter).unwrap();
                stored.extend(page.events.iter().map(|e| (e.sequence, e.id.clone())));
                match page.next_cursor {
                    Some(c) => filter.after_sequence = Some(c),
                    None => break,
                }
            }
            let ids: HashSet<&String> = stored.iter().map(|(_, id)| id).collect();
            assert_eq!(
                ids.len(),
                stored.len(),
                "{}: an event is stored twice",
                db.label
            );
            let missing: Vec<_> = acknowledged
                .iter()
                .filter(|id| !ids.contains(id))
                .take(3)
                .collect();
            assert!(
                missing.is_empty(),
                "{} round {round}: acknowledged but lost: {missing:?}",
                db.label
            );
            let sequences: Vec<u64> = stored.iter().map(|(s, _)| *s).collect();
            assert_eq!(
                sequences,
                (1..=stored.len() as u64).collect::<Vec<_>>(),
                "sequence has gaps"
            );
            assert_eq!(stored.len() % BATCH, 0, "a batch was stored in part");
            let o = payoff(&db, &["ledger", "verify", "--deep"]);
            assert!(
                o.status.success() && stdout(&o).contains("0 outcomes differ"),
                "{} round {round}: {}",
                db.label,
                stdout(&o)
            );
            let listed = payoff_outcomes::page(
                &store,
                "acme",
                &payoff_outcomes::PageQuery {
                    limit: 1,
                    count: Some(u64::MAX),
                    ..Default::default()
                },
                payoff_clock::wall(),
            )
            .unwrap();
            assert_eq!(
                listed.total,
                Some(stored.len() as u64 / 2),
                "{} round {round}: one outcome per pair of events",
                db.label
            );
            server.kill();
        }
        // A rebuild from the ledger gives the same model.
        let o = payoff(&db, &["reindex", "--customer", "acme", "--json"]);
        assert!(o.status.success(), "{}: {}", db.label, stderr(&o));
        let rebuilt: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(rebuilt[0]["customer"], "acme", "{rebuilt}");
        let o = payoff(&db, &["ledger", "verify", "--deep"]);
        assert!(
            o.status.success() && stdout(&o).contains("0 outcomes differ"),
            "{}: {}",
            db.label,
            stdout(&o)
        );
        // A row that no longer matches the ledger is named by outcome id,
        // and a rebuild repairs it.
        let store = Store::open(&db.url).unwrap();
        let first = payoff_outcomes::page(
            &store,
            "acme",
            &payoff_outcomes::PageQuery {
                limit: 1,
                ..Default::default()
            },
            payoff_clock::wall(),
        )
        .unwrap();
        let id = first.items[0].outcome.id.clone();
        store
            .write(|tx| {
                tx.execute(
                    "UPDATE outcome_rows SET value = ? WHERE outcome_id = ?",
                    &["7".into(), id.as_str().into()],
                )
            })
            .unwrap();
        let o = payoff(&db, &["ledger", "verify", "--deep"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stdout(&o).contains(&id), "{}", stdout(&o));
        assert!(payoff(&db, &["reindex"]).status.success());
        let o = payoff(&db, &["ledger", "verify", "--deep"]);
        assert!(o.status.success(), "{}", stdout(&o));
        assert_bad_input(
            &payoff(&db, &["reindex", "--customer", "nobody"]),
            "--customer: no customer \"nobody\"",
        );
        let _ = std::fs::remove_dir_all(data_dir(&db));
    }
}

/// Issue 16: the fault suite is `payoff bench faults` (100 kills per
/// database by hand); CI runs its short version: a few SIGKILLs under
/// mixed load (batches, single events, tickets, racing closes, webhook
/// deliveries) on SQLite, and with two nodes on PostgreSQL when it is
/// configured, every promise checked by the bench itself.
#[test]
fn the_fault_suite_keeps_every_promise_in_its_short_version() {
    let mut command = std::process::Command::new(BIN);
    command.args([
        "bench",
        "faults",
        "--kills",
        "3",
        "--load-ms",
        "300",
        "--json",
    ]);
    let postgres = std::env::var("PAYOFF_TEST_POSTGRES_URL").ok();
    command.env_remove("PAYOFF_BENCH_POSTGRES_URL");
    let o = command.output().expect("run payoff");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let mut runs: Vec<serde_json::Value> = serde_json::from_str::<serde_json::Value>(&stdout(&o))
        .unwrap()["runs"]
        .as_array()
        .unwrap()
        .clone();
    if let Some(url) = postgres {
        let o = std::process::Command::new(BIN)
            .args([
                "bench",
                "faults",
                "--kills",
                "4",
                "--load-ms",
                "300",
                "--nodes",
                "2",
                "--json",
                "--postgres",
                &url,
            ])
            .output()
            .expect("run payoff");
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        runs.extend(
            serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()["runs"]
                .as_array()
                .unwrap()
                .clone(),
        );
    }
    for run in &runs {
        assert_eq!(run["promises_kept"], true, "{run:#}");
        assert!(run["kills"].as_u64().unwrap() >= 3, "{run:#}");
        assert!(
            run["events_acknowledged"].as_u64().unwrap() > 0,
            "load reached the server: {run:#}"
        );
        assert_eq!(
            (
                run["events_lost"].as_u64(),
                run["events_duplicated"].as_u64()
            ),
            (Some(0), Some(0)),
            "{run:#}"
        );
    }
}
