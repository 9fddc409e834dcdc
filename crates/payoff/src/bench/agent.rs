//! `payoff bench agent`: the support agent's own work per ticket through
//! the real server (holdout assignment, budget check, permission-aware
//! retrieval, an extractive draft, classification, the Cedar decision, the
//! durable ledger and audit records), everything but a model call. Reports
//! the time the server spent per ticket (`server-timing`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::Datelike;
use clap::Args;
use payoff_store::scratch::ScratchDb;
use payoff_store::{Role, Store};
use serde_json::{json, Value};

use super::{start_server, Latencies};
use crate::bad_input;
use crate::client::ApiClient;

#[derive(Args)]
pub struct AgentArgs {
    /// Tickets handed to the agent.
    #[arg(long, default_value_t = 5_000)]
    tickets: usize,
    /// Concurrent help desks sending them.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Knowledge passages of the customer.
    #[arg(long, default_value_t = 5_000)]
    passages: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

const CUSTOMER: &str = "acme";

/// Subjects and bodies of tickets, combined in turn.
const SUBJECTS: &[&str] = &[
    "Refund not received",
    "Wrong delivery address",
    "Cannot log in",
    "Parcel is late",
    "Cancel my order",
    "Invoice needed",
    "Return label",
    "Damaged item",
];
const BODIES: &[&str] = &[
    "Hello, I returned my order two weeks ago and the refund has not reached my card yet. When will it arrive?",
    "I typed the wrong delivery address on my order this morning. Can I still change it before it ships?",
    "I reset my password twice but I still cannot log in to my account. What should I do?",
    "My parcel was supposed to arrive on Monday and the tracking has not changed since. Where is it?",
    "Please cancel the order I placed an hour ago, I ordered the wrong size.",
    "Our accounts team needs an invoice with our VAT number for last month's order.",
    "Where do I print the prepaid return label for the item I want to send back?",
    "The item arrived broken in the box. Can I get a replacement or a refund?",
];

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if args.clients == 0 || args.tickets == 0 {
        return bad_input("--tickets and --clients must be at least 1");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are only meaningful from `cargo run --release`");
    }
    let db = ScratchDb::sqlite();
    let data_dir = tempfile::tempdir()?;
    let store = Store::open(&db.url)?;
    let now = payoff_clock::wall();
    store.create_customer(CUSTOMER, "Acme Outdoor Co.", now)?;
    let editor = store
        .create_key(Role::CustomerAdmin, Some(CUSTOMER), now)?
        .0
        .key;
    let operator = store.create_key(Role::Operator, None, now)?.0.key;
    let agent = store.create_key(Role::Agent, Some(CUSTOMER), now)?.0.key;
    drop(store);
    let server = start_server(&db.url, data_dir.path())?;
    let runtime = tokio::runtime::Runtime::new()?;

    let contract = format!(
        r#"[contract]
customer = "{CUSTOMER}"
currency = "USD"
starts = "{}-{:02}-01"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.ai_replied"'
attribution = {{ holdout = 0.1, confidence = 0.95, bill = "lower_bound", experiment = "support" }}
price = {{ per_unit = "0.90" }}
"#,
        now.year(),
        now.month()
    );
    eprintln!(
        "a contract with a 10 % holdout and {} passages…",
        args.passages
    );
    runtime.block_on(async {
        let op = ApiClient::new(&server.url, &operator)?;
        op.send(
            reqwest::Method::POST,
            &format!("/v1/customers/{CUSTOMER}/contracts"),
            "application/toml",
            contract.into_bytes(),
        )
        .await?
        .map_err(|p| anyhow::anyhow!("contract refused: {p}"))?;
        let ed = ApiClient::new(&server.url, &editor)?;
        // The whole corpus goes to one customer: its size is what matters.
        let docs: Vec<Value> = payoff_knowledge::synthetic_corpus(args.passages, 11)
            .into_iter()
            .enumerate()
            .map(|(i, (_, mut d))| {
                d.id = format!("{}-{i}", d.id);
                serde_json::to_value(d)
            })
            .collect::<Result<_, _>>()?;
        for chunk in docs.chunks(super::search::UPLOAD_DOCUMENTS_MAX) {
            ed.post_json("/v1/knowledge/documents", &Value::Array(chunk.to_vec()))
                .await?
                .map_err(|p| anyhow::anyhow!("upload refused: {p}"))?;
        }
        anyhow::Ok(())
    })?;

    eprintln!("{} tickets from {} clients…", args.tickets, args.clients);
    let client = ApiClient::new(&server.url, &agent)?;
    let next = Arc::new(AtomicUsize::new(0));
    let statuses: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let started = Instant::now();
    let mut server_ms = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.clients {
            let (client, next, statuses) = (client.clone(), next.clone(), statuses.clone());
            let total = args.tickets;
            tasks.push(tokio::spawn(async move {
                let mut server = Latencies::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let ticket = json!({
                        "id": format!("T-{i}"),
                        "subject": SUBJECTS[i % SUBJECTS.len()],
                        "body": BODIES[(i / SUBJECTS.len() + i) % BODIES.len()],
                        "requester": format!("customer{}@example.test", i % 997),
                        "groups": if i % 3 == 0 { vec!["support"] } else { vec![] },
                    });
                    let (reply, timing) = client
                        .timed(
                            reqwest::Method::POST,
                            "/v1/agents/support/tickets",
                            Some("application/json"),
                            serde_json::to_vec(&ticket)?,
                        )
                        .await?;
                    let reply = reply.map_err(|p| anyhow::anyhow!("ticket refused: {p}"))?;
                    server.push(
                        timing
                            .ok_or_else(|| anyhow::anyhow!("no server-timing header"))?
                            .app,
                    );
                    let status = reply["status"].as_str().unwrap_or("?").to_owned();
                    *statuses
                        .lock()
                        .expect("statuses")
                        .entry(status)
                        .or_default() += 1;
                }
                anyhow::Ok(server)
            }));
        }
        let mut all = Latencies::default();
        for task in tasks {
            all.extend(task.await??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let statuses = statuses.lock().expect("statuses").clone();
    let report = json!({
        "tickets": args.tickets,
        "clients": args.clients,
        "passages": args.passages,
        "tickets_per_s": args.tickets as f64 / elapsed,
        "server": server_ms.summary(),
        "statuses": statuses,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "support agent, extractive answers, {} passages, {} tickets from {} clients: {:.0} tickets/s",
            args.passages,
            args.tickets,
            args.clients,
            args.tickets as f64 / elapsed
        );
        println!(
            "  per ticket at the server: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
            server_ms.quantile(0.5),
            server_ms.quantile(0.95),
            server_ms.quantile(0.99)
        );
        println!("  {}", serde_json::to_string(&statuses)?);
    }
    Ok(ExitCode::SUCCESS)
}
