//! `payoff bench reads`: what reading outcomes costs as the ledger grows.
//!
//! Builds a ledger of N events for one customer (tickets opened, answered
//! by metered model calls and closed by the AI, a tenth of them reopened,
//! some disputed, two contract versions), times building the outcome read
//! model from it, then serves it from a child `payoff serve` and measures,
//! over HTTP on loopback, the reads a client and the dashboard make. For
//! SQLite and, with `--postgres`, for PostgreSQL.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use chrono::{Duration, TimeZone, Utc};
use clap::Args;
use payoff_ledger::{validate_event, EventLimits};
use payoff_store::scratch::ScratchDb;
use payoff_store::{AppendRequest, LedgerConfig, Role, Routed, Store};
use serde_json::{json, Value};

use super::{start_server, Latencies};
use crate::bad_input;
use crate::settings::Settings;

#[derive(Args)]
pub struct ReadsArgs {
    /// Events in the ledger.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Tickets; each is closed by the AI once, so each makes one outcome.
    #[arg(long, default_value_t = 1_000_000)]
    outcomes: u64,
    /// Requests per read measured.
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// Also measure PostgreSQL: a server URL whose user may create databases.
    #[arg(long, env = "PAYOFF_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

const CUSTOMER: &str = "bench";

/// Version 1 governs October, version 2 (another price) November on.
fn contract(price: &str) -> String {
    format!(
        r#"
[contract]
customer = "bench"
currency = "USD"
period = "monthly"
starts = "2026-10-01"
base_fee = "500.00"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
void_when = 'event.type == "ticket.reopened"'
matures_after = "72h"
price = {{ per_unit = "{price}" }}
"#
    )
}

pub fn run(_settings: &Settings, args: ReadsArgs) -> anyhow::Result<ExitCode> {
    if args.outcomes == 0 || args.events < args.outcomes * 3 {
        return bad_input(
            "--events must be at least three times --outcomes (opened, answered, closed)",
        );
    }
    if args.requests == 0 {
        return bad_input("--requests must be at least 1");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are only meaningful from `cargo run --release`");
    }
    let mut dbs = vec![ScratchDb::sqlite()];
    if let Some(url) = &args.postgres {
        dbs.push(ScratchDb::postgres_on(url));
    }
    let mut reports = Vec::new();
    for db in &dbs {
        reports.push(measure(&args, db)?);
    }
    if args.json {
        println!("{}", Value::Array(reports));
    } else {
        for r in &reports {
            println!(
                "{} at {} events ({} outcomes): read model built in {:.1} s ({:.0} events/s)",
                r["backend"].as_str().unwrap_or(""),
                r["events"],
                r["outcomes"],
                r["model_build_seconds"].as_f64().unwrap_or(0.0),
                r["model_build_events_per_second"].as_f64().unwrap_or(0.0),
            );
            if let Some(reads) = r["reads"].as_object() {
                for (name, s) in reads {
                    println!(
                        "  {name:<32} p50 {:>8.2} ms  p99 {:>8.2} ms",
                        s["p50_ms"].as_f64().unwrap_or(0.0),
                        s["p99_ms"].as_f64().unwrap_or(0.0)
                    );
                }
            }
            if let Some(closes) = r["closes"].as_object() {
                for (name, c) in closes {
                    println!(
                        "  {name:<32} {:>8.2} s, a signed statement of {} bytes",
                        c["seconds"].as_f64().unwrap_or(0.0),
                        c["statement_bytes"]
                    );
                }
            }
            println!(
                "  server peak memory {:.0} MB after the reads, {:.0} MB after the closes",
                r["server_peak_rss_mb_reads"].as_f64().unwrap_or(0.0),
                r["server_peak_rss_mb"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(args: &ReadsArgs, db: &ScratchDb) -> anyhow::Result<Value> {
    let data_dir = tempfile::tempdir()?;
    let store = Store::open(&db.url)?;
    let now = payoff_clock::wall();
    store.create_customer(CUSTOMER, "Bench Co.", now)?;
    for (price, effective) in [("0.90", None), ("0.80", Some("2026-11"))] {
        payoff_accounting::billing::upload_contract(
            &store,
            CUSTOMER,
            &contract(price),
            effective,
            now,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // The ledger's tickets are history: with the support agent on, it
    // would work through them (appending its own records) while the reads
    // are measured, which measures the agent instead.
    store.set_agent_pause(
        &payoff_store::AgentPause {
            agent: "support".into(),
            customer: CUSTOMER.into(),
            paused_by: "bench".into(),
            paused_at: now,
        },
        true,
    )?;
    let (key, _) = store.create_key(Role::Admin, None, now)?;
    eprintln!("{}: writing {} events…", db.label, args.events);
    let some_outcome = populate(&store, args)?;

    let started = Instant::now();
    payoff_outcomes::catch_up(&store, CUSTOMER, &mut |_| {})?;
    let build = started.elapsed().as_secs_f64();
    drop(store);

    let server = start_server(&db.url, data_dir.path())?;
    let base = server.url.trim_end_matches('/').to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let figures = runtime.block_on(read_all(&base, &key.key, &some_outcome, args.requests))?;
    let reads_peak = super::peak_rss_mb(server.child.id());
    let closes = runtime.block_on(close_all(&base, &key.key))?;
    Ok(json!({
        "backend": db.label,
        "events": args.events,
        "outcomes": args.outcomes,
        "model_build_seconds": build,
        "model_build_events_per_second": args.events as f64 / build,
        "reads": figures,
        "closes": closes,
        "server_peak_rss_mb_reads": reads_peak,
        "server_peak_rss_mb": super::peak_rss_mb(server.child.id()),
    }))
}

/// Closes October, then November (two contract versions), through the
/// API as an operator would, after the reads: each close once, timed from
/// request to reply, which is the signed statement as stored.
async fn close_all(base: &str, key: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let client = reqwest::Client::new();
    let mut figures = serde_json::Map::new();
    for period in ["2026-10", "2026-11"] {
        let path = format!("/v1/customers/{CUSTOMER}/periods/{period}/close");
        let started = Instant::now();
        let response = client
            .post(format!("{base}{path}"))
            .bearer_auth(key)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        let seconds = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            status == reqwest::StatusCode::CREATED,
            "POST {path}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        figures.insert(
            format!("close {period}"),
            json!({"seconds": seconds, "statement_bytes": body.len()}),
        );
    }
    Ok(figures)
}

/// Measures each read `requests` times, one at a time.
async fn read_all(
    base: &str,
    key: &str,
    some_outcome: &str,
    requests: usize,
) -> anyhow::Result<serde_json::Map<String, Value>> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = client
        .post(format!("{base}/ui/login"))
        .header("origin", base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .with_context(|| format!("dashboard login gave no session ({})", login.status()))?;
    // The Overview's first look computes its figures and keeps them
    // (`payoff_accounting::glance`): measured once, apart from the looks
    // after it, which read them.
    let reads: [(&str, String, bool); 7] = [
        (
            "outcomes first page",
            format!("/v1/customers/{CUSTOMER}/outcomes?limit=50"),
            true,
        ),
        (
            "outcomes voided",
            format!("/v1/customers/{CUSTOMER}/outcomes?limit=50&state=voided"),
            true,
        ),
        ("one outcome", format!("/v1/outcomes/{some_outcome}"), true),
        (
            "dashboard outcomes page",
            format!("/ui/customers/{CUSTOMER}/outcomes"),
            false,
        ),
        (
            "dashboard overview, first look",
            format!("/ui/customers/{CUSTOMER}/overview?period=2026-11"),
            false,
        ),
        (
            "dashboard overview",
            format!("/ui/customers/{CUSTOMER}/overview?period=2026-11"),
            false,
        ),
        (
            "preview 2026-11",
            format!("/v1/customers/{CUSTOMER}/periods/2026-11/preview"),
            true,
        ),
    ];
    let mut figures = serde_json::Map::new();
    for (name, path, api) in reads {
        let mut latencies = Latencies::default();
        let times = if name.ends_with("first look") {
            1
        } else {
            requests
        };
        for _ in 0..times {
            let request = client.get(format!("{base}{path}"));
            let request = if api {
                request.bearer_auth(key)
            } else {
                request.header("cookie", &cookie)
            };
            let started = Instant::now();
            let response = request.send().await?;
            let status = response.status();
            let _ = response.bytes().await?;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        }
        figures.insert(name.to_owned(), latencies.summary());
    }
    Ok(figures)
}

/// Writes the ledger through the group-commit writer; returns the id of
/// one outcome (a November one, so version 2 governs it).
fn populate(store: &Store, args: &ReadsArgs) -> anyhow::Result<String> {
    let ledger = store.ledger(LedgerConfig::default())?;
    let limits = EventLimits::default();
    let tickets = args.outcomes;
    let per_ticket = args.events / tickets;
    let extra = args.events - per_ticket * tickets;
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    // Tickets open over October and November.
    let spacing_ms = (58 * 24 * 3_600_000) / tickets as i64;
    let mut batch = Vec::with_capacity(10_000);
    let push = |batch: &mut Vec<Routed>, event: Value| -> anyhow::Result<()> {
        batch.push(Routed {
            customer: CUSTOMER.into(),
            event: validate_event(event, &limits).map_err(|e| anyhow::anyhow!("{e:?}"))?,
        });
        if batch.len() >= 10_000 {
            ledger
                .append_blocking(AppendRequest::new(std::mem::take(batch)))?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    };
    let mut some_outcome = String::new();
    for t in 0..tickets {
        let opened = start + Duration::milliseconds(t as i64 * spacing_ms);
        let n = per_ticket + u64::from(t < extra);
        let subject = format!("T-{t}");
        for k in 0..n {
            let at = opened + Duration::minutes(k as i64 * 7);
            let (kind, source, data) = if k == 0 {
                ("ticket.created", "helpdesk", json!({"channel": "email"}))
            } else if k + 2 == n {
                ("ticket.closed", "helpdesk", json!({"resolved_by": "ai"}))
            } else if k + 1 == n && t % 10 == 3 {
                (
                    "ticket.reopened",
                    "helpdesk",
                    json!({"why": "still broken"}),
                )
            } else if k + 1 == n && t % 50 == 7 {
                (
                    "payoff.dispute.opened",
                    "payoff",
                    json!({"outcome": "ticket_resolved", "subject": subject, "reason": "a person solved it", "by": "bench"}),
                )
            } else {
                (
                    "llm.call",
                    "agent",
                    json!({"model": "gpt-4o-mini", "input_tokens": 900, "output_tokens": 150, "agent": "support"}),
                )
            };
            push(
                &mut batch,
                json!({
                    "specversion": "1.0", "id": format!("{t}-{k}"), "source": source, "type": kind,
                    "subject": subject, "time": at.to_rfc3339(), "data": data,
                }),
            )?;
        }
        if t == tickets * 3 / 4 {
            some_outcome = payoff_billing::outcome_id(CUSTOMER, "ticket_resolved", &subject);
        }
    }
    if !batch.is_empty() {
        ledger
            .append_blocking(AppendRequest::new(batch))?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    anyhow::ensure!(!some_outcome.is_empty(), "no outcome chosen");
    Ok(some_outcome)
}
