//! The read model against the replay, over every hand-worked case of
//! `tests/cases/` (a user adds a case there, not here), on SQLite and on
//! PostgreSQL: events arrive in batches of varying sizes with catch-ups in
//! between, and afterwards every fold equals the full replay, listings show
//! each outcome under the version that governs it, and every state filter
//! agrees with the state each outcome is shown in.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use payoff_billing::{
    canonical_bytes, compute, compute_with_outcomes, version_for, CloseInput, Contract, Earlier,
    EarlierLines, HeadRef, KeptOutcomes, OutcomeSink, Period, Projection, Statement,
};
use payoff_ledger::{validate_event, EventLimits};
use payoff_outcomes::{catch_up, page, verify, Kept, PageQuery, Versions};
use payoff_store::scratch::ScratchDb;
use payoff_store::{AppendRequest, Ledger, LedgerConfig, Routed, Store};
use serde::Deserialize;

#[derive(Deserialize)]
struct CaseFile {
    #[serde(default)]
    contract: Vec<CaseContract>,
    #[serde(default)]
    close: Vec<CaseClose>,
}

/// A close of the case: its period, and how many events the ledger held.
#[derive(Deserialize)]
struct CaseClose {
    period: String,
    events: Option<usize>,
}

#[derive(Deserialize)]
struct CaseContract {
    file: String,
    effective: String,
}

/// When the test's contracts and customers were made.
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cases");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .expect("tests/cases")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("case.toml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 40, "the corpus is there");
    dirs
}

fn databases() -> Vec<ScratchDb> {
    let mut dbs = vec![ScratchDb::sqlite()];
    dbs.extend(ScratchDb::postgres());
    dbs
}

fn case_file(dir: &Path) -> CaseFile {
    toml::from_str(&fs::read_to_string(dir.join("case.toml")).unwrap()).unwrap()
}

/// A store holding a case's contract versions, and its events as JSON.
fn load_case(dir: &Path, store: &Store, customer: &str) -> Vec<serde_json::Value> {
    let case = case_file(dir);
    let specs = if case.contract.is_empty() {
        vec![CaseContract {
            file: "contract.toml".into(),
            effective: String::new(),
        }]
    } else {
        case.contract
    };
    store.create_customer(customer, "Case", epoch()).unwrap();
    for spec in specs {
        let text = fs::read_to_string(dir.join(&spec.file)).unwrap();
        let effective = Some(spec.effective.as_str()).filter(|e| !e.is_empty());
        add_version(store, customer, &spec.file, &text, effective);
    }
    fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Stores a contract version, effective from `effective` (default: its start).
fn add_version(store: &Store, customer: &str, file: &str, text: &str, effective: Option<&str>) {
    let contract = Contract::parse(file, text).unwrap();
    let effective = match effective {
        Some(name) => Period::parse(contract.cadence, name).unwrap(),
        None => contract.starts,
    };
    store
        .add_contract(
            customer,
            &effective.to_string(),
            effective.start,
            &contract.sha256,
            text,
            epoch(),
        )
        .unwrap();
}

/// The first outcome listed, and the freshness of the listing.
fn first(store: &Store, customer: &str) -> payoff_outcomes::Page {
    let q = PageQuery {
        limit: 1,
        ..Default::default()
    };
    page(store, customer, &q, epoch()).unwrap()
}

fn append(ledger: &Ledger, customer: &str, events: &[serde_json::Value]) {
    let request = AppendRequest::new(
        events
            .iter()
            .map(|e| Routed {
                customer: customer.into(),
                event: validate_event(e.clone(), &EventLimits::default()).unwrap(),
            })
            .collect(),
    );
    ledger.append_blocking(request).unwrap().unwrap();
}

/// Batch sizes 1, 2, 3, … so that folds start and stop at every kind of
/// place in a case.
fn batches(events: &[serde_json::Value]) -> Vec<&[serde_json::Value]> {
    let mut out = Vec::new();
    let (mut at, mut size) = (0, 1);
    while at < events.len() {
        let end = (at + size).min(events.len());
        out.push(&events[at..end]);
        at = end;
        size += 1;
    }
    out
}

fn all(
    store: &Store,
    customer: &str,
    q: PageQuery,
    now: DateTime<Utc>,
) -> Vec<payoff_outcomes::OutcomeNow> {
    let mut items = Vec::new();
    let mut q = PageQuery { limit: 2, ..q };
    loop {
        let p = page(store, customer, &q, now).unwrap();
        items.extend(p.items);
        match p.next {
            Some(next) => q.after = Some(next),
            None => return items,
        }
    }
}

#[test]
fn the_model_equals_the_replay_for_every_case() {
    for db in databases() {
        let store = Store::open(&db.url).unwrap();
        let ledger = store.ledger(LedgerConfig::default()).unwrap();
        for (i, dir) in cases().into_iter().enumerate() {
            let name = format!("{} on {}", dir.display(), db.label);
            let customer = &format!("case{i}");
            let events = load_case(&dir, &store, customer);
            for batch in batches(&events) {
                append(&ledger, customer, batch);
                catch_up(&store, customer, &mut |_| {}).unwrap();
            }
            let mismatches = verify::deep(&store, customer).unwrap();
            assert!(mismatches.is_empty(), "{name}: {mismatches:?}");

            // Listed: each replayed outcome under the version governing
            // the period it matures in (the first version before any).
            let versions = Versions::load(&store, customer).unwrap();
            let list = versions.list();
            let parsed: Vec<_> = events
                .iter()
                .enumerate()
                .filter_map(|(i, e)| payoff_billing::BillingEvent::from_json(i as u64 + 1, e))
                .collect();
            let mut expected = Vec::new();
            for v in &list {
                let replay = Projection::run(
                    customer,
                    v.contract,
                    &parsed,
                    DateTime::<Utc>::MAX_UTC,
                    None,
                );
                for o in replay.outcomes {
                    let period = Period::containing(v.contract.cadence, o.matures_at);
                    let governing =
                        version_for(&list, period).map_or(list[0].version, |g| g.version);
                    if governing == v.version {
                        expected.push((o.created.sequence, o.kind, o.id.clone()));
                    }
                }
            }
            expected.sort();
            let now = Utc.with_ymd_and_hms(2027, 6, 1, 0, 0, 0).unwrap();
            let listed = all(&store, customer, PageQuery::default(), now);
            let got: Vec<_> = listed
                .iter()
                .map(|o| {
                    (
                        o.outcome.created.sequence,
                        o.outcome.kind,
                        o.outcome.id.clone(),
                    )
                })
                .collect();
            assert_eq!(got, expected, "{name}: listing");

            // Every state filter selects exactly the outcomes shown in it,
            // at a time when some are still pending.
            let mid = listed
                .iter()
                .map(|o| o.outcome.matures_at)
                .min()
                .unwrap_or(now);
            let shown = all(&store, customer, PageQuery::default(), mid);
            for state in [
                "pending", "billable", "billed", "voided", "disputed", "credited",
            ] {
                let filtered: Vec<String> = all(
                    &store,
                    customer,
                    PageQuery {
                        state: Some(state.into()),
                        ..Default::default()
                    },
                    mid,
                )
                .into_iter()
                .map(|o| o.outcome.id)
                .collect();
                let want: Vec<String> = shown
                    .iter()
                    .filter(|o| o.state == state)
                    .map(|o| o.outcome.id.clone())
                    .collect();
                assert_eq!(filtered, want, "{name}: state {state}");
            }
        }
    }
}

const TWIN_CONTRACT: &str = r#"
[contract]
customer = "twins"
currency = "USD"
period = "monthly"
starts = "2026-11-01"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed"'
void_when = 'event.type == "ticket.reopened"'
matures_after = "72h"
price = { per_unit = "1.00" }
"#;

/// Two nodes on one database fold the same customer at the same time
/// while events arrive: each event is applied once (a dispute applied
/// twice would show as two disputes, a void twice as a changed mark, a
/// service-level event twice as a count above the events sent).
#[test]
fn two_nodes_keep_one_model_without_double_counting() {
    let contract = format!(
        "{TWIN_CONTRACT}
[[service_level]]
name = \"reopen_rate\"
numerator = 'event.type == \"ticket.reopened\"'
denominator = 'event.type == \"ticket.closed\"'
at_most = \"0.5\"
credit = \"1.00\"
"
    );
    for db in databases() {
        let nodes = [Store::open(&db.url).unwrap(), Store::open(&db.url).unwrap()];
        nodes[0].create_customer("twins", "Twins", epoch()).unwrap();
        add_version(&nodes[0], "twins", "twins.toml", &contract, None);
        let ledger = nodes[0].ledger(LedgerConfig::default()).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for node in &nodes {
                let done = &done;
                scope.spawn(move || {
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        catch_up(node, "twins", &mut |_| {}).unwrap();
                    }
                });
            }
            for batch in 0..40 {
                let events: Vec<serde_json::Value> = (0..10)
                    .flat_map(|i| {
                        let t = batch * 10 + i;
                        let at = |m: i64| {
                            (Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap()
                                + chrono::Duration::minutes(t * 10 + m))
                            .to_rfc3339()
                        };
                        let subject = format!("T-{t}");
                        let mut out = vec![serde_json::json!({"specversion": "1.0", "id": format!("c{t}"), "source": "desk",
                            "type": "ticket.closed", "subject": subject, "time": at(0), "data": {}})];
                        if t % 3 == 0 {
                            out.push(serde_json::json!({"specversion": "1.0", "id": format!("r{t}"), "source": "desk",
                                "type": "ticket.reopened", "subject": subject, "time": at(1), "data": {}}));
                        }
                        if t % 4 == 1 {
                            out.push(serde_json::json!({"specversion": "1.0", "id": format!("d{t}"), "source": "payoff",
                                "type": "payoff.dispute.opened", "subject": subject, "time": at(2),
                                "data": {"outcome": "ticket_resolved", "subject": subject, "reason": "no"}}));
                        }
                        out
                    })
                    .collect();
                append(&ledger, "twins", &events);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mismatches = verify::deep(&nodes[1], "twins").unwrap();
        assert!(mismatches.is_empty(), "{}: {mismatches:?}", db.label);
        // 400 tickets closed, the 134 with t % 3 == 0 reopened, all in November.
        let counts = nodes[1]
            .read(|tx| {
                let head = payoff_store::outcomes::ledger_head(tx, "twins")?;
                payoff_store::outcomes::service_counts(tx, "twins", 1, head, "2026-11")
            })
            .unwrap();
        assert_eq!(counts, Some(vec![(0, 134, 400)]), "{}", db.label);
        let p = page(
            &nodes[0],
            "twins",
            &PageQuery {
                state: Some("disputed".into()),
                limit: 1000,
                count: Some(u64::MAX),
                ..Default::default()
            },
            epoch(),
        )
        .unwrap();
        // Subjects t % 4 == 1 are disputed; those also reopened (t % 3 == 0) too.
        assert_eq!(p.total, Some(100), "{}", db.label);
        assert!(p.items.iter().all(|o| o.outcome.disputes.len() == 1));
        // A bounded count stops at its bound (the dashboard shows "more
        // than" beyond it).
        let bounded = page(
            &nodes[0],
            "twins",
            &PageQuery {
                state: Some("disputed".into()),
                limit: 10,
                count: Some(40),
                ..Default::default()
            },
            epoch(),
        )
        .unwrap();
        assert_eq!(bounded.total, Some(40), "{}", db.label);
    }
}

/// A new contract version over a long ledger is built in the background:
/// meanwhile reads answer its periods from the version before it and say
/// so, without doing the rebuild themselves; once built, it governs.
#[test]
fn a_new_version_is_answered_from_the_previous_one_until_it_is_built() {
    for db in databases() {
        let store = Store::open(&db.url).unwrap();
        store.create_customer("twins", "Twins", epoch()).unwrap();
        add_version(&store, "twins", "v1.toml", TWIN_CONTRACT, None);
        let ledger = store.ledger(LedgerConfig::default()).unwrap();
        let n = payoff_outcomes::fold::READ_LAG_MAX as i64 + 10;
        let events: Vec<serde_json::Value> = (0..n)
            .map(|t| {
                let at = Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap()
                    + chrono::Duration::seconds(t);
                serde_json::json!({"specversion": "1.0", "id": format!("c{t}"), "source": "desk",
                    "type": "ticket.closed", "subject": format!("T-{t}"), "time": at.to_rfc3339(), "data": {}})
            })
            .collect();
        append(&ledger, "twins", &events);
        // Too far behind for a read to fold: the projector's work.
        let unbuilt = first(&store, "twins");
        assert_eq!(
            unbuilt.freshness.rebuilding,
            vec![(1, 0, n as u64)],
            "{}",
            db.label
        );
        catch_up(&store, "twins", &mut |_| {}).unwrap();
        assert_eq!(first(&store, "twins").items[0].version, 1, "{}", db.label);
        if db.label == "postgres" {
            // A catch-up of that many events refreshed the planner's
            // statistics (a new table has none: reltuples is -1), so a page
            // is planned as an index walk, not a sort of every row.
            let mut tuples = -1;
            store
                .read(|tx| {
                    tx.query(
                        "SELECT reltuples::bigint FROM pg_class WHERE relname = 'outcome_rows'",
                        &[],
                        &mut |r| {
                            tuples = r.int_req(0)?;
                            Ok(())
                        },
                    )
                })
                .unwrap();
            assert!(tuples >= n, "{tuples} rows in the statistics, {n} folded");
        }

        // Version 2 governs December, where every outcome matures.
        let text = TWIN_CONTRACT.replace("1.00", "2.00");
        add_version(&store, "twins", "v2.toml", &text, Some("2026-12"));
        let during = first(&store, "twins");
        assert_eq!(during.items[0].version, 1, "{}: answered from v1", db.label);
        assert_eq!(
            during.freshness.rebuilding,
            vec![(2, 0, n as u64)],
            "{}: and says v2 is being built",
            db.label
        );

        catch_up(&store, "twins", &mut |_| {}).unwrap();
        let after = first(&store, "twins");
        assert_eq!(after.items[0].version, 2, "{}", db.label);
        assert!(after.freshness.rebuilding.is_empty(), "{}", db.label);
        assert_eq!(after.freshness.ledger_head, n as u64);
    }
}

/// Counts the versions the read model gave outcomes for, so the test
/// knows the model stood in (a close that fell back to the replay would
/// compare the replay with itself).
struct Counting<'k> {
    kept: &'k Kept<'k>,
    given: std::cell::Cell<usize>,
    /// Closes whose service levels the model counted.
    counted: std::cell::Cell<usize>,
    /// Earlier periods the model said stand as last billed (not re-read).
    stood: std::cell::Cell<usize>,
}

impl KeptOutcomes for Counting<'_> {
    fn outcomes(
        &self,
        version: u32,
        matures: (DateTime<Utc>, DateTime<Utc>),
        cut: DateTime<Utc>,
        sink: &mut dyn OutcomeSink,
    ) -> Result<bool, String> {
        let vouched = self.kept.outcomes(version, matures, cut, sink)?;
        if vouched {
            self.given.set(self.given.get() + 1);
        }
        Ok(vouched)
    }

    fn untouched_since(
        &self,
        version: u32,
        matures: (DateTime<Utc>, DateTime<Utc>),
        since: (u64, DateTime<Utc>),
    ) -> Result<bool, String> {
        let untouched = self.kept.untouched_since(version, matures, since)?;
        if untouched {
            self.stood.set(self.stood.get() + 1);
        }
        Ok(untouched)
    }

    fn service_counts(
        &self,
        version: u32,
        period: &str,
        levels: usize,
    ) -> Result<Option<Vec<payoff_billing::ServiceCounts>>, String> {
        let counts = self.kept.service_counts(version, period, levels)?;
        if counts.is_some() {
            self.counted.set(self.counted.get() + 1);
        }
        Ok(counts)
    }
}

/// The outcomes the model gives for a span, `None` when it cannot vouch.
fn kept_outcomes(
    kept: &Kept<'_>,
    span: (DateTime<Utc>, DateTime<Utc>),
) -> Option<Vec<payoff_billing::Outcome>> {
    let mut out = Vec::new();
    kept.outcomes(1, span, span.1, &mut out)
        .unwrap()
        .then_some(out)
}

/// Every close of every corpus case, computed with the outcomes from the
/// read model and from a replay of the same events: the same bytes. The
/// closes happen where the case says (some before all events are in),
/// against the statements closed before them.
#[test]
fn closes_from_the_model_are_byte_identical_to_the_replay() {
    let (mut closes, mut from_model, mut service_counted, mut stood) = (0, 0, 0, 0);
    let lines_read = std::cell::Cell::new(0usize);
    let mut statements_before = 0;
    for db in databases() {
        let store = Store::open(&db.url).unwrap();
        let ledger = store.ledger(LedgerConfig::default()).unwrap();
        for (i, dir) in cases().into_iter().enumerate() {
            let customer = &format!("case{i}");
            let events = load_case(&dir, &store, customer);
            let versions = Versions::load(&store, customer).unwrap();
            let list = versions.list();
            let parsed: Vec<_> = events
                .iter()
                .enumerate()
                .filter_map(|(i, e)| payoff_billing::BillingEvent::from_json(i as u64 + 1, e))
                .collect();
            let mut appended = 0;
            let mut prior = Vec::new();
            for close in case_file(&dir).close {
                let n = close.events.unwrap_or(events.len()).min(events.len());
                if n > appended {
                    append(&ledger, customer, &events[appended..n]);
                    appended = n;
                }
                let name = format!("{} {} on {}", dir.display(), close.period, db.label);
                let kept = Kept::pin(&store, customer).unwrap();
                let kept = kept
                    .as_ref()
                    .unwrap_or_else(|| panic!("{name}: the model is at the head"));
                assert_eq!(kept.head().sequence, n as u64, "{name}");
                let period = Period::parse(list[0].contract.cadence, &close.period).unwrap();
                let known: Vec<_> = parsed
                    .iter()
                    .filter(|e| e.sequence <= n as u64)
                    .cloned()
                    .collect();
                let counting = Counting {
                    kept,
                    given: std::cell::Cell::new(0),
                    counted: std::cell::Cell::new(0),
                    stood: std::cell::Cell::new(0),
                };
                // Both closes are cut at the model's head.
                let head = HeadRef {
                    sequence: n as u64,
                    hash: kept.head().hash_hex(),
                };
                let input = |kept: Option<&dyn KeptOutcomes>, prior: &[Earlier]| {
                    compute_with_outcomes(&CloseInput {
                        customer,
                        period,
                        versions: &list,
                        events: &known,
                        head: head.clone(),
                        prior,
                        issued_at: period.end,
                        kept,
                    })
                };
                // The replay has the earlier statements at hand; the close
                // from the model reads each one's lines from its stored
                // bytes only when it needs them, as a close from the
                // database does.
                let at_hand = Earlier::all(&prior).unwrap();
                let stored: Vec<Vec<u8>> = prior.iter().map(canonical_bytes).collect();
                let lines_read = &lines_read;
                statements_before += prior.len();
                let read_later: Vec<Earlier> = at_hand
                    .iter()
                    .zip(&stored)
                    .map(|(e, bytes)| Earlier {
                        id: e.id.clone(),
                        period: e.period.clone(),
                        period_end: e.period_end,
                        head: e.head,
                        lines: EarlierLines::Later(Box::new(move || {
                            lines_read.set(lines_read.get() + 1);
                            serde_json::from_slice::<Statement>(bytes)
                                .map(|s| s.lines)
                                .map_err(|e| e.to_string())
                        })),
                    })
                    .collect();
                let (replayed, replayed_outcomes) =
                    input(None, &at_hand).unwrap_or_else(|e| panic!("{name}: {e}"));
                let (modelled, modelled_outcomes) =
                    input(Some(&counting), &read_later).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    String::from_utf8(canonical_bytes(&modelled)).unwrap(),
                    String::from_utf8(canonical_bytes(&replayed)).unwrap(),
                    "{name}"
                );
                // And the outcomes kept beside the statement (costs are
                // attributed to them).
                assert_eq!(modelled_outcomes, replayed_outcomes, "{name}");
                closes += 1;
                if counting.given.get() > 0 {
                    from_model += 1;
                }
                service_counted += counting.counted.get();
                stood += counting.stood.get();
                drop((read_later, at_hand));
                prior.push(replayed);
            }
        }
    }
    // Most closes come after events stamped later than their period's end
    // arrived in order: the model stands in for those.
    eprintln!(
        "{from_model} of {closes} closes took their outcomes from the model, {service_counted} their service counts; {stood} earlier periods stood as last billed"
    );
    // A close reads an earlier statement's lines only for a period it
    // re-prices or to learn whether outcomes it may bill were billed.
    let lines_read = lines_read.get();
    eprintln!("{lines_read} of {statements_before} earlier statements' lines were read");
    assert!(
        lines_read < statements_before,
        "every earlier statement was read ({lines_read})"
    );
    // Where no event touched an earlier period's outcomes since the last
    // statement, the close does not re-read them: the same bytes all the
    // same (the replay re-prices every earlier period).
    assert!(stood >= 10, "{stood} earlier periods stood as last billed");
    // The corpus has cases with service levels: their counts come kept.
    assert!(
        service_counted >= 2,
        "{service_counted} closes counted by the model"
    );
    assert!(closes >= 40, "{closes} closes");
    assert!(
        from_model * 10 >= closes * 8,
        "the model stood in for only {from_model} of {closes} closes"
    );
}

const LATE_CONTRACT: &str = r#"
[contract]
customer = "late"
currency = "USD"
period = "monthly"
starts = "2026-11-01"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed"'
void_when = 'event.type == "ticket.reopened"'
matures_after = "24h"
price = { per_unit = "1.00" }
"#;

/// Events that arrive out of time order across the cut. Ticket T-1 is
/// closed on 10 December, then (late) on 5 November; T-3 is closed on 3
/// November, reopened on 28 December, then (late) on 20 November; T-2 is
/// closed on 6 November, in order. Cut at 1 December, the replay sees the
/// November events only: T-1 created on 5 November and billed, T-3 voided
/// on 20 November and not billed, T-2 billed. The fold, which saw the
/// December events first, holds T-1 created in December and T-3 voided in
/// December: the model says it cannot stand in for November, and the close
/// replays. For a cut after every event it can.
#[test]
fn a_row_touched_out_of_time_order_across_the_cut_is_replayed() {
    for db in databases() {
        let store = Store::open(&db.url).unwrap();
        store.create_customer("late", "Late", epoch()).unwrap();
        add_version(&store, "late", "late.toml", LATE_CONTRACT, None);
        let ledger = store.ledger(LedgerConfig::default()).unwrap();
        let event = |id: &str, kind: &str, subject: &str, day: &str| {
            serde_json::json!({"specversion": "1.0", "id": id, "source": "desk", "type": kind,
                "subject": subject, "time": format!("{day}T10:00:00Z"), "data": {}})
        };
        let events = vec![
            event("a", "ticket.closed", "T-1", "2026-12-10"),
            event("b", "ticket.closed", "T-1", "2026-11-05"),
            event("c", "ticket.closed", "T-3", "2026-11-03"),
            event("d", "ticket.reopened", "T-3", "2026-12-28"),
            event("e", "ticket.reopened", "T-3", "2026-11-20"),
            // Nanoseconds: kept in the row's detail, beyond its µs columns.
            serde_json::json!({"specversion": "1.0", "id": "f", "source": "desk", "type": "ticket.closed",
                "subject": "T-2", "time": "2026-11-06T10:00:00.123456789Z", "data": {}}),
        ];
        append(&ledger, "late", &events);
        let mismatches = verify::deep(&store, "late").unwrap();
        assert!(mismatches.is_empty(), "{}: {mismatches:?}", db.label);
        let kept = Kept::pin(&store, "late").unwrap().expect("at the head");
        let period = Period::parse(payoff_billing::Cadence::Monthly, "2026-11").unwrap();

        let versions = Versions::load(&store, "late").unwrap();
        let list = versions.list();
        let parsed: Vec<_> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| payoff_billing::BillingEvent::from_json(i as u64 + 1, e))
            .collect();
        let close = |kept: Option<&dyn KeptOutcomes>| {
            compute(&CloseInput {
                customer: "late",
                period,
                versions: &list,
                events: &parsed,
                head: HeadRef {
                    sequence: 6,
                    hash: String::new(),
                },
                prior: &[],
                issued_at: period.end,
                kept,
            })
            .unwrap()
        };
        let replayed = close(None);
        let text = |s: &Statement| String::from_utf8(canonical_bytes(s)).unwrap();
        assert_eq!(text(&close(Some(&kept))), text(&replayed), "{}", db.label);
        let billed: Vec<&String> = replayed
            .lines
            .iter()
            .flat_map(|l| l.outcomes.iter())
            .collect();
        assert_eq!(billed.len(), 2, "{}: {billed:?}", db.label);

        assert!(
            kept_outcomes(&kept, (period.start, period.end)).is_none(),
            "{}: T-1 and T-3 were touched out of order across the cut",
            db.label
        );
        // After December everything was seen in the fold's order too.
        let january = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let all = kept_outcomes(&kept, (period.start, january)).expect("vouched");
        assert_eq!(all.len(), 3, "{}", db.label);
        let t2 = all.iter().find(|o| o.subject == "T-2").unwrap();
        assert_eq!(t2.created.time.timestamp_subsec_nanos(), 123_456_789);
        let t1 = all.iter().find(|o| o.subject == "T-1").unwrap();
        // Event `a`, first in the ledger and dated December (a close's
        // rows name an event by its sequence and time, not its id).
        assert_eq!(
            (
                t1.created.sequence,
                t1.created.time.date_naive().to_string()
            ),
            (1, "2026-12-10".to_owned()),
            "{}: the fold's own order",
            db.label
        );
    }
}
