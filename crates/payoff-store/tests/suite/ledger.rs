//! The ledger's storage contract, run on every backend (see `ScratchDb::all`).

use std::sync::Arc;

use payoff_ledger::{validate_event, Event, EventLimits, Head};
use payoff_store::scratch::ScratchDb;
use payoff_store::{
    AppendError, AppendRequest, EventFilter, EventStatus, Ledger, LedgerConfig, Role, Routed, Store,
};
use serde_json::json;

fn event(id: &str, body: &str) -> Event {
    validate_event(
        json!({"specversion": "1.0", "id": id, "source": "helpdesk", "type": "ticket.created",
               "subject": format!("T-{id}"), "time": "2026-11-02T09:00:00Z", "data": {"text": body}}),
        &EventLimits::default(),
    )
    .unwrap()
}

fn request(customer: &str, events: Vec<Event>) -> AppendRequest {
    AppendRequest::new(
        events
            .into_iter()
            .map(|event| Routed {
                customer: customer.into(),
                event,
            })
            .collect(),
    )
}

fn setup(db: &ScratchDb) -> (Store, Ledger) {
    let store = Store::open(&db.url).unwrap();
    store
        .create_customer("acme", "Acme Store", payoff_clock::wall())
        .unwrap();
    store
        .create_customer("globex", "Globex", payoff_clock::wall())
        .unwrap();
    let ledger = store.ledger(LedgerConfig::default()).unwrap();
    (store, ledger)
}

fn statuses(result: Result<Vec<EventStatus>, AppendError>) -> Vec<(u64, bool)> {
    result
        .unwrap()
        .into_iter()
        .map(|s| (s.sequence, s.duplicate))
        .collect()
}

#[test]
fn appended_events_form_a_verifiable_chain() {
    for db in ScratchDb::all() {
        let (store, ledger) = setup(&db);
        let r = ledger
            .append_blocking(request("acme", vec![event("1", "a"), event("2", "b")]))
            .unwrap();
        assert_eq!(statuses(r), [(1, false), (2, false)], "{}", db.label);
        let r = ledger
            .append_blocking(request("acme", vec![event("3", "c")]))
            .unwrap();
        assert_eq!(statuses(r), [(3, false)]);

        let expected = Head::EMPTY
            .append(&event("1", "a").canonical)
            .append(&event("2", "b").canonical)
            .append(&event("3", "c").canonical);
        assert_eq!(store.head("acme").unwrap(), Some(expected), "{}", db.label);
        assert_eq!(store.head("globex").unwrap(), Some(Head::EMPTY));
        let reports = store.verify().unwrap();
        assert!(reports.iter().all(|r| r.broken.is_none()), "{reports:?}");
        assert_eq!(
            reports
                .iter()
                .find(|r| r.customer == "acme")
                .unwrap()
                .events,
            3
        );
    }
}

#[test]
fn same_key_same_content_is_a_duplicate_and_stored_once() {
    for db in ScratchDb::all() {
        let (store, ledger) = setup(&db);
        ledger
            .append_blocking(request("acme", vec![event("1", "a")]))
            .unwrap()
            .unwrap();
        let head = store.head("acme").unwrap();
        let r = ledger
            .append_blocking(request(
                "acme",
                vec![event("1", "a"), event("2", "b"), event("2", "b")],
            ))
            .unwrap();
        assert_eq!(
            statuses(r),
            [(1, true), (2, false), (2, true)],
            "{}",
            db.label
        );
        assert_eq!(
            store.head("acme").unwrap().unwrap().sequence,
            head.unwrap().sequence + 1
        );
    }
}

#[test]
fn same_key_different_content_refuses_the_whole_request() {
    for db in ScratchDb::all() {
        let (store, ledger) = setup(&db);
        ledger
            .append_blocking(request("acme", vec![event("1", "a")]))
            .unwrap()
            .unwrap();
        let before = store.head("acme").unwrap();
        let r = ledger
            .append_blocking(request(
                "acme",
                vec![event("9", "new"), event("1", "changed")],
            ))
            .unwrap();
        assert_eq!(
            r.unwrap_err(),
            AppendError::Conflict {
                index: 1,
                event_source: "helpdesk".into(),
                id: "1".into()
            },
            "{}",
            db.label
        );
        assert_eq!(
            store.head("acme").unwrap(),
            before,
            "nothing of the refused request is stored"
        );
        let page = store
            .events(&EventFilter {
                customer: "acme".into(),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.events.len(), 1);
        // A conflict inside one request is refused too.
        let r = ledger
            .append_blocking(request("acme", vec![event("7", "x"), event("7", "y")]))
            .unwrap();
        assert!(
            matches!(r, Err(AppendError::Conflict { index: 1, .. })),
            "{r:?}"
        );
    }
}

#[test]
fn the_same_key_per_customer_is_independent() {
    for db in ScratchDb::all() {
        let (store, ledger) = setup(&db);
        ledger
            .append_blocking(request("acme", vec![event("1", "a")]))
            .unwrap()
            .unwrap();
        let r = ledger
            .append_blocking(request("globex", vec![event("1", "other")]))
            .unwrap();
        assert_eq!(statuses(r), [(1, false)], "{}", db.label);
        assert_eq!(store.head("globex").unwrap().unwrap().sequence, 1);
    }
}

#[test]
fn unknown_customer_is_refused() {
    for db in ScratchDb::all() {
        let (_store, ledger) = setup(&db);
        let r = ledger
            .append_blocking(request("nobody", vec![event("1", "a")]))
            .unwrap();
        assert_eq!(
            r.unwrap_err(),
            AppendError::UnknownCustomer("nobody".into()),
            "{}",
            db.label
        );
    }
}

#[test]
fn concurrent_requests_with_the_same_id_store_it_once() {
    for db in ScratchDb::all() {
        let (store, ledger) = setup(&db);
        let ledger = Arc::new(ledger);
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    ledger
                        .append_blocking(request(
                            "acme",
                            vec![event("same", "body"), event(&format!("own-{i}"), "x")],
                        ))
                        .unwrap()
                        .unwrap()
                })
            })
            .collect();
        let results: Vec<Vec<EventStatus>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let accepted_same = results.iter().filter(|r| !r[0].duplicate).count();
        assert_eq!(
            accepted_same, 1,
            "{}: exactly one request stores the shared id",
            db.label
        );
        assert!(results
            .iter()
            .all(|r| r[0].sequence == results[0][0].sequence || r[0].duplicate));
        assert_eq!(store.head("acme").unwrap().unwrap().sequence, 17);
        assert!(store.verify().unwrap().iter().all(|r| r.broken.is_none()));
    }
}

#[test]
fn events_are_filtered_and_paged_by_cursor() {
    for db in ScratchDb::all() {
        let (store, ledger) = setup(&db);
        let events: Vec<Event> = (0..25).map(|i| event(&i.to_string(), "x")).collect();
        ledger
            .append_blocking(request("acme", events))
            .unwrap()
            .unwrap();
        let mut filter = EventFilter {
            customer: "acme".into(),
            limit: 10,
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = store.events(&filter).unwrap();
            seen.extend(page.events.iter().map(|e| e.sequence));
            match page.next_cursor {
                Some(c) => filter.after_sequence = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, (1..=25).collect::<Vec<u64>>(), "{}", db.label);
        let one = store
            .events(&EventFilter {
                customer: "acme".into(),
                subject: Some("T-7".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(one.events.len(), 1);
        assert_eq!(one.events[0].id, "7");
        let other = store
            .events(&EventFilter {
                customer: "globex".into(),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert!(
            other.events.is_empty(),
            "another customer's events never show"
        );
    }
}

#[test]
fn edited_rows_are_named_by_verify() {
    let tampers = [
        (
            "UPDATE events SET body = replace(body, 'second', 'SECOND') WHERE sequence = 2",
            "sequence 2",
        ),
        (
            "UPDATE events SET type = 'ticket.closed' WHERE sequence = 3",
            "column type",
        ),
        ("DELETE FROM events WHERE sequence = 2", "sequence 2"),
        ("DELETE FROM events WHERE sequence = 3", "stored head"),
    ];
    for (sql, expected) in tampers {
        for db in ScratchDb::all() {
            let (store, ledger) = setup(&db);
            let events = vec![
                event("1", "first"),
                event("2", "second"),
                event("3", "third"),
            ];
            ledger
                .append_blocking(request("acme", events))
                .unwrap()
                .unwrap();
            let sql = if db.label == "postgres" {
                sql.replace("body = replace(body, 'second', 'SECOND')", "body = convert_to(replace(convert_from(body, 'UTF8'), 'second', 'SECOND'), 'UTF8')")
            } else {
                sql.replace(
                    "body = replace(body, 'second', 'SECOND')",
                    "body = CAST(replace(CAST(body AS TEXT), 'second', 'SECOND') AS BLOB)",
                )
            };
            db.execute_sql(&sql);
            let report = store
                .verify()
                .unwrap()
                .into_iter()
                .find(|r| r.customer == "acme")
                .unwrap();
            let broken = report
                .broken
                .unwrap_or_else(|| panic!("{}: {sql} went unnoticed", db.label));
            assert!(broken.contains(expected), "{}: {sql}: {broken}", db.label);
        }
    }
}

#[test]
fn keys_authenticate_until_revoked() {
    for db in ScratchDb::all() {
        let (store, _ledger) = setup(&db);
        let (key, info) = store
            .create_key(Role::CustomerViewer, Some("acme"), payoff_clock::wall())
            .unwrap();
        let principal = store
            .authenticate(&key.key)
            .unwrap()
            .expect("fresh key authenticates");
        assert_eq!(
            (principal.role, principal.customer.as_deref()),
            (Role::CustomerViewer, Some("acme"))
        );
        let mut wrong = key.key.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert!(
            store.authenticate(&wrong).unwrap().is_none(),
            "{}",
            db.label
        );
        assert!(store.authenticate("not a key").unwrap().is_none());
        store
            .revoke_key(&info.key_id, payoff_clock::wall())
            .unwrap();
        assert!(store.authenticate(&key.key).unwrap().is_none());
        assert!(store.keys(Some("acme")).unwrap()[0].revoked_at.is_some());
        assert!(store
            .create_key(Role::Agent, Some("nobody"), payoff_clock::wall())
            .is_err());
        assert!(store
            .create_customer("acme", "again", payoff_clock::wall())
            .is_err());
    }
}

fn typed(id: &str, kind: &str, time: &str, data: serde_json::Value) -> Event {
    validate_event(
        json!({"specversion": "1.0", "id": id, "source": "agent", "type": kind,
               "subject": "T-1", "time": time, "data": data}),
        &EventLimits::default(),
    )
    .unwrap()
}

#[test]
fn scans_select_by_type_in_chain_order_and_costs_come_from_the_index() {
    use payoff_store::CostFact;
    for db in ScratchDb::all() {
        let (store, ledger) = setup(&db);
        let nov = "2026-11-02T09:00:00Z";
        let mut events = vec![
            typed(
                "c1",
                "llm.call",
                nov,
                json!({"model": "gpt-4o", "input_tokens": 10, "agent": "support"}),
            ),
            typed("m1", "ticket.message", nov, json!({})),
            typed(
                "x1",
                "cost.incurred",
                nov,
                json!({"amount": "2.50", "category": "review"}),
            ),
            // Negative tokens: not the common shape, so read whole.
            typed(
                "c2",
                "llm.call",
                nov,
                json!({"model": "gpt-4o", "input_tokens": -1}),
            ),
            typed(
                "c3",
                "llm.call",
                "2026-12-01T00:00:00Z",
                json!({"model": "gpt-4o"}),
            ),
            typed("k1", "ticket.closed", nov, json!({})),
        ];
        // Enough other events that reading by type is the cheaper way.
        events.extend((0..20).map(|i| event(&format!("n{i}"), "noise")));
        ledger
            .append_blocking(request("acme", events))
            .unwrap()
            .unwrap();
        ledger
            .append_blocking(request(
                "globex",
                vec![typed("g1", "llm.call", nov, json!({"model": "gpt-4o"}))],
            ))
            .unwrap()
            .unwrap();
        let mut seen = Vec::new();
        store
            .scan_bodies(
                "acme",
                100,
                Some(&["ticket.closed", "ticket.message"]),
                |s, body| {
                    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                    seen.push((s, v["id"].as_str().unwrap().to_owned()));
                    Ok(())
                },
            )
            .unwrap();
        assert_eq!(
            seen,
            [(2, "m1".to_owned()), (6, "k1".to_owned())],
            "{}",
            db.label
        );
        let mut all = 0;
        store
            .scan_bodies("acme", 100, None, |_, _| {
                all += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(all, 26, "{}", db.label);

        let (from, until) = (
            "2026-11-01T00:00:00Z".parse().unwrap(),
            "2026-12-01T00:00:00Z".parse().unwrap(),
        );
        let mut facts = Vec::new();
        store
            .scan_costs("acme", 100, from, until, |fact| {
                facts.push(match fact {
                    CostFact::Call {
                        sequence,
                        event_id,
                        call,
                        ..
                    } => {
                        format!(
                            "{sequence} {event_id} {} {:?} {}",
                            call.model, call.agent, call.input_tokens
                        )
                    }
                    CostFact::Event { sequence, body } => {
                        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                        format!("{sequence} whole {}", v["id"])
                    }
                });
                Ok(())
            })
            .unwrap();
        assert_eq!(
            facts,
            [
                "1 c1 gpt-4o Some(\"support\") 10",
                "3 whole \"x1\"",
                "4 whole \"c2\""
            ],
            "{}: December's call and globex's are not November's costs of acme",
            db.label
        );
        // Pinned to a head: later events are not read.
        let mut early = 0;
        store
            .scan_costs("acme", 2, from, until, |_| {
                early += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(early, 1, "{}", db.label);
    }
}

/// Migration 19 adds the cache-write and reasoning counts to the cost
/// index and reads every indexed call again: rows indexed before it (by a
/// reader that knew neither count and took Anthropic's input as it came)
/// end as the ingest indexes them today, across batches and customers.
#[test]
fn migration_19_indexes_cache_writes_and_reasoning_of_calls_indexed_before() {
    use payoff_store::CostFact;
    type Counts = (u64, u64, u64, u64, u64);
    let nov = "2026-11-02T09:00:00Z";
    // Input 10,000 holding 4,000 read and 2,000 written; output 1,000
    // holding 600 of reasoning.
    let openai = json!({"model": "m", "input_tokens": 10_000, "input_includes_cached": true,
        "cached_input_tokens": 4_000, "cache_creation_input_tokens": 2_000,
        "output_tokens": 1_000, "reasoning_tokens": 600});
    // The same call counted Anthropic's way: 4,000 + 4,000 + 2,000.
    let anthropic = json!({"model": "m", "input_tokens": 4_000, "input_includes_cached": false,
        "cached_input_tokens": 4_000, "cache_creation_input_tokens": 2_000,
        "output_tokens": 1_000, "reasoning_tokens": 600});
    let whole_call = (10_000, 4_000, 2_000, 1_000, 600);
    // More calls than one batch of the migration reads: each 5 input
    // without its caches (5 + 1 + 2 = 8), 3 output holding 1 of reasoning.
    let small = json!({"model": "m", "input_tokens": 5, "input_includes_cached": false,
        "cached_input_tokens": 1, "cache_creation_input_tokens": 2,
        "output_tokens": 3, "reasoning_tokens": 1});
    let many = 1_100;
    let scan = |store: &Store, customer: &str| {
        let mut calls: Vec<(String, Counts)> = Vec::new();
        let mut whole = Vec::new();
        store
            .scan_costs(
                customer,
                u64::MAX >> 1,
                "2026-11-01T00:00:00Z".parse().unwrap(),
                "2026-12-01T00:00:00Z".parse().unwrap(),
                |fact| {
                    match fact {
                        CostFact::Call { event_id, call, .. } => calls.push((
                            event_id.to_owned(),
                            (
                                call.input_tokens,
                                call.cached_input_tokens,
                                call.cache_creation_tokens,
                                call.output_tokens,
                                call.reasoning_tokens,
                            ),
                        )),
                        CostFact::Event { body, .. } => {
                            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
                            whole.push(v["id"].as_str().unwrap().to_owned());
                        }
                    }
                    Ok(())
                },
            )
            .unwrap();
        (calls, whole)
    };
    let check = |store: &Store, label: &str| {
        let (calls, whole) = scan(store, "acme");
        assert_eq!(
            calls,
            [
                ("openai".to_owned(), whole_call),
                ("anthropic".to_owned(), whole_call),
                ("plain".to_owned(), (10, 0, 0, 0, 0)),
            ],
            "{label}"
        );
        assert_eq!(whole, ["odd"], "{label}: a negative count is read whole");
        let (calls, whole) = scan(store, "globex");
        assert!(whole.is_empty(), "{label}");
        assert_eq!(calls.len(), many, "{label}");
        assert!(
            calls.iter().all(|(_, c)| *c == (8, 1, 2, 3, 1)),
            "{label}: {:?}",
            calls.iter().find(|(_, c)| *c != (8, 1, 2, 3, 1))
        );
    };
    for db in ScratchDb::all() {
        {
            let (store, ledger) = setup(&db);
            let events = vec![
                typed("openai", "llm.call", nov, openai.clone()),
                typed("anthropic", "llm.call", nov, anthropic.clone()),
                typed(
                    "odd",
                    "llm.call",
                    nov,
                    json!({"model": "m", "input_tokens": 7, "reasoning_tokens": -1}),
                ),
                typed(
                    "plain",
                    "llm.call",
                    nov,
                    json!({"model": "m", "input_tokens": 10}),
                ),
            ];
            ledger
                .append_blocking(request("acme", events))
                .unwrap()
                .unwrap();
            let events = (0..many)
                .map(|i| typed(&format!("s{i}"), "llm.call", nov, small.clone()))
                .collect();
            ledger
                .append_blocking(request("globex", events))
                .unwrap()
                .unwrap();
            check(&store, &format!("{} as ingested", db.label));
        }
        // Back to the index as the reader before version 19 wrote it:
        // no new columns, Anthropic's input as sent, the odd call indexed
        // (its reasoning count unread), and the plain call indexed by
        // place only, as events stored before the index existed are.
        db.execute_sql(
            "ALTER TABLE cost_facts DROP COLUMN cache_creation_tokens;
             ALTER TABLE cost_facts DROP COLUMN reasoning_tokens;
             UPDATE cost_facts SET input_tokens = 4000 WHERE event_id = 'anthropic';
             UPDATE cost_facts SET input_tokens = 5 WHERE customer_id = 'globex';
             UPDATE cost_facts SET model = 'm', input_tokens = 7, output_tokens = 0, cached_input_tokens = 0
                 WHERE event_id = 'odd';
             UPDATE cost_facts SET model = NULL, agent = NULL, subject = NULL, input_tokens = NULL,
                 output_tokens = NULL, cached_input_tokens = NULL WHERE event_id = 'plain';
             DELETE FROM schema_migrations WHERE version = 19;",
        );
        let store = Store::open(&db.url).unwrap();
        check(&store, &format!("{} migrated", db.label));
    }
}

/// Migration 23 keeps each statement's summary in columns beside its body
/// and fills them for the statements stored before it, from their bodies:
/// a summary read after the migration is the one a close stores today.
#[test]
fn migration_23_summarises_the_statements_stored_before_it() {
    use payoff_store::{StatementSummary, StoredStatement};
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let statement = |customer: &str, period: &str, start: &str, end: &str, head: u64| {
        let id = format!("st.{customer}.{period}");
        let lines: Vec<serde_json::Value> = (0..head % 3 + 1)
            .map(|i| {
                json!({"kind": "outcome", "description": format!("line {i}"),
                "quantity": "1", "amount": "1.00", "outcomes": ["out.a", "out.b"]})
            })
            .collect();
        let body = json!({
            "id": id, "customer": customer, "period": period,
            "period_start": start, "period_end": end,
            "contract": {"version": 1, "sha256": "00"}, "currency": "EUR", "rounding": "half_even",
            "lines": lines, "subtotal": format!("{head}.50"), "total": format!("{head}.50"),
            "ledger_head": {"sequence": head, "hash": "ab"}, "depends_on": [],
            "issued_at": end,
        });
        StoredStatement {
            summary: StatementSummary {
                id,
                customer: customer.into(),
                period: period.into(),
                period_start: at(start),
                period_end: at(end),
                head,
                currency: "EUR".into(),
                total: format!("{head}.50"),
                lines: head % 3 + 1,
                issued_at: at(end),
            },
            body: body.to_string(),
        }
    };
    let stored = [
        statement(
            "acme",
            "2026-10",
            "2026-10-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
            40,
        ),
        statement(
            "acme",
            "2026-11",
            "2026-11-01T00:00:00Z",
            "2026-12-01T00:00:00Z",
            91,
        ),
        statement(
            "globex",
            "2026-11",
            "2026-11-01T00:00:00Z",
            "2026-12-01T00:00:00Z",
            7,
        ),
    ];
    let summaries = |store: &Store| {
        let mut all = store.statement_summaries("acme").unwrap();
        all.extend(store.statement_summaries("globex").unwrap());
        all
    };
    let want: Vec<StatementSummary> = stored.iter().map(|s| s.summary.clone()).collect();
    for db in ScratchDb::all() {
        {
            let (store, _ledger) = setup(&db);
            for s in &stored {
                let (_, created) = store.save_statement(s.clone(), &[]).unwrap();
                assert!(created, "{}", db.label);
            }
            assert_eq!(summaries(&store), want, "{} as stored", db.label);
            assert_eq!(
                store.statement("st.acme.2026-11").unwrap().as_ref(),
                Some(&stored[1]),
                "{}",
                db.label
            );
        }
        // Back to the table as it was before version 23.
        db.execute_sql(
            "ALTER TABLE statements DROP COLUMN period_end_us;
             ALTER TABLE statements DROP COLUMN head_seq;
             ALTER TABLE statements DROP COLUMN currency;
             ALTER TABLE statements DROP COLUMN total;
             ALTER TABLE statements DROP COLUMN line_count;
             DELETE FROM schema_migrations WHERE version = 23;",
        );
        let store = Store::open(&db.url).unwrap();
        assert_eq!(summaries(&store), want, "{} migrated", db.label);
    }
}

/// A close keeps its period's outcomes as one JSON array of subjects per
/// kind (migration 27), read back as stored; a period closed before keeps
/// one row per outcome, read back in the same form; a period not closed
/// has none.
#[test]
fn a_periods_outcomes_are_kept_per_kind_and_read_back_from_either_table() {
    use payoff_store::{StatementSummary, StoredStatement};
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let statement = |period: &str| StoredStatement {
        summary: StatementSummary {
            id: format!("st.acme.{period}"),
            customer: "acme".into(),
            period: period.into(),
            period_start: at("2026-10-01T00:00:00Z"),
            period_end: at("2026-11-01T00:00:00Z"),
            head: 3,
            currency: "EUR".into(),
            total: "1.00".into(),
            lines: 1,
            issued_at: at("2026-11-01T00:00:00Z"),
        },
        body: "{}".into(),
    };
    let sets = vec![
        ("resolved".to_string(), r#"["T-1","T \"2\"\n"]"#.to_string()),
        ("upsold".to_string(), r#"["T-1"]"#.to_string()),
    ];
    for db in ScratchDb::all() {
        let (store, _ledger) = setup(&db);
        assert_eq!(store.period_outcome_sets("acme", "2026-10").unwrap(), None);
        store.save_statement(statement("2026-10"), &sets).unwrap();
        assert_eq!(
            store.period_outcome_sets("acme", "2026-10").unwrap(),
            Some(sets.clone()),
            "{}",
            db.label
        );
        assert_eq!(
            store.period_outcome_sets("globex", "2026-10").unwrap(),
            None,
            "{}: another customer's period",
            db.label
        );
        // A period closed before migration 27: its rows, one per outcome.
        store.save_statement(statement("2026-09"), &[]).unwrap();
        db.execute_sql(
            "INSERT INTO period_outcomes (customer_id, period, kind, subject) VALUES
             ('acme', '2026-09', 'upsold', 'T-9'), ('acme', '2026-09', 'resolved', 'T-8'),
             ('acme', '2026-09', 'resolved', 'T \"7\"');",
        );
        assert_eq!(
            store.period_outcome_sets("acme", "2026-09").unwrap(),
            Some(vec![
                ("resolved".to_string(), r#"["T \"7\"","T-8"]"#.to_string()),
                ("upsold".to_string(), r#"["T-9"]"#.to_string()),
            ]),
            "{}",
            db.label
        );
    }
}
