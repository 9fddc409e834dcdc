//! `payoff demo`: a server, a customer, and a month of a small online
//! store's support and sales events sent through the real API; then what
//! the ledger holds, and proof that it is intact.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Args;
use payoff_server::AppState;
use payoff_store::{LedgerConfig, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::client::ApiClient;
use crate::commands::init::ensure_signing_key;
use crate::commands::open_store;
use crate::settings::Settings;

#[derive(Args)]
pub struct DemoArgs {
    /// Seed of the generated business: the same seed gives the same events
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Support tickets to generate
    #[arg(long, default_value_t = 600)]
    tickets: usize,
    /// Where to build the demo [default: ./payoff-demo, wiped first]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Address of the demo server
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Exit after the summary instead of serving
    #[arg(long)]
    no_serve: bool,
}

const MARKER: &str = ".payoff-demo";

pub fn run(settings: &Settings, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("payoff-demo"));
    if dir.exists() {
        anyhow::ensure!(
            dir.join(MARKER).exists(),
            "{} exists and was not made by `payoff demo`; choose another --dir",
            dir.display()
        );
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(MARKER),
        "made by payoff demo; removed by the next run\n",
    )?;
    let demo = Settings {
        data_dir: dir.clone(),
        database: dir.join("payoff.db").display().to_string(),
        ..settings.clone()
    };
    let store = open_store(&demo)?;
    let signing_key = ensure_signing_key(&demo.signing_key_path())?;
    let (admin, _) = store.create_key(Role::Admin, None, Utc::now())?;
    let addr = demo.listen_addr(Some(&args.listen))?;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = AppState::new(
            store.clone(),
            store.ledger(LedgerConfig::default())?,
            demo.server,
            signing_key,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(payoff_server::serve(listener, state, async {
            let _ = stopped.await;
        }));

        let provider = ApiClient::new(&url, &admin.key)?;
        ok(provider.post_json("/v1/customers", &json!({"id": "acme", "name": "Acme Outdoor Co."})).await?)?;
        let agent_key = ok(provider.post_json("/v1/keys", &json!({"customer": "acme", "role": "agent"})).await?)?["key"]
            .as_str()
            .context("key in reply")?
            .to_owned();
        let viewer_key = ok(provider.post_json("/v1/keys", &json!({"customer": "acme", "role": "customer_viewer"})).await?)?["key"]
            .as_str()
            .context("key in reply")?
            .to_owned();
        let agent = ApiClient::new(&url, &agent_key)?;

        let events = generate(args.seed, args.tickets);
        println!("Payoff demo: Acme Outdoor Co., October 2026 (seed {})", args.seed);
        println!("sending {} events through {url}/v1/events …", events.len());
        let mut accepted = 0;
        for chunk in events.chunks(500) {
            let reply = ok(agent.send(reqwest::Method::POST, "/v1/events", "application/cloudevents-batch+json", serde_json::to_vec(chunk)?).await?)?;
            accepted += reply["accepted"].as_u64().unwrap_or(0);
        }
        let again = ok(agent.send(reqwest::Method::POST, "/v1/events", "application/cloudevents-batch+json", serde_json::to_vec(&events[..100])?).await?)?;
        let mut changed = events[0].clone();
        changed["data"]["text"] = json!("an edited copy of an event already stored");
        let conflict = agent.send(reqwest::Method::POST, "/v1/events", "application/cloudevents+json", serde_json::to_vec(&changed)?).await?;

        let viewer = ApiClient::new(&url, &viewer_key)?;
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/events?limit=1000&cursor={c}"),
                None => "/v1/events?limit=1000".to_owned(),
            };
            let page = ok(viewer.get_json(&path).await?)?;
            for e in page["events"].as_array().into_iter().flatten() {
                *by_type.entry(e["event"]["type"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let head = ok(viewer.get_json("/v1/ledger/head").await?)?;
        let billing = bill_the_month(&provider, &url, &dir).await?;

        println!("\nstored: {accepted} events accepted; re-sending 100 of them gave {} duplicates and stored nothing new", again["duplicates"]);
        match conflict {
            Err(p) => println!("an edited copy of a stored event was refused: HTTP {} {}", p.status, p.code),
            Ok(_) => anyhow::bail!("the demo's conflicting event was accepted"),
        }
        println!("\n{:<24} {:>8}", "EVENT TYPE", "COUNT");
        for (kind, n) in &by_type {
            println!("{kind:<24} {n:>8}");
        }
        println!("\nledger head of acme: sequence {}, hash {}", head["sequence"], head["hash"].as_str().unwrap_or(""));
        let reports = store.verify()?;
        for r in &reports {
            println!("chain of {}: {}", r.customer, r.broken.as_deref().unwrap_or("intact (every hash recomputed)"));
        }
        billing.print();
        println!("\ndata: {} (check it yourself: payoff ledger verify --data-dir {})", dir.display(), dir.display());

        if args.no_serve {
            let _ = stop.send(());
        } else {
            println!("\nserving {url}  (Ctrl-C to stop)");
            println!("  provider admin key:  {}", admin.key);
            println!("  acme viewer key:     {viewer_key}");
            println!("  try: curl -H 'Authorization: Bearer {viewer_key}' {url}/v1/ledger/head");
            tokio::signal::ctrl_c().await?;
            let _ = stop.send(());
        }
        server.await??;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Acme's contract: a base fee, a success fee per ticket the AI resolved
/// that stays closed for 72 hours, a share of won deals, and an accuracy
/// service level.
const CONTRACT: &str = r#"
[contract]
customer = "acme"
currency = "USD"
period = "monthly"
starts = "2026-10-01"
base_fee = "300.00"
cap = "6000.00"
dispute_within = "45d"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
void_when = 'event.type == "ticket.reopened"'
matures_after = "72h"
clawback_within = "30d"
price = { tiers = [ { up_to = 200, price = "1.20" }, { price = "0.90" } ], mode = "graduated" }

[[outcome]]
name = "deal_won"
when = 'event.type == "deal.won"'
value = 'event.data.amount'
price = { percent_of = "value", rate = "0.02" }

[[service_level]]
name = "ai_resolution_rate"
numerator = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
denominator = 'event.type == "ticket.ai_replied"'
at_least = "0.60"
min_samples = 50
credit = "5%"
"#;

/// What the billing part of the demo established.
struct Billing {
    statement: Value,
    statement_path: PathBuf,
    bundle_path: PathBuf,
    public_key: String,
    verified: String,
    disputed: String,
    november: Value,
}

impl Billing {
    fn print(&self) {
        let s = &self.statement;
        println!(
            "\nstatement {} for {} ({}), contract v{} sha256 {}…",
            s["id"].as_str().unwrap_or(""),
            s["period"].as_str().unwrap_or(""),
            s["currency"].as_str().unwrap_or(""),
            s["contract"]["version"],
            &s["contract"]["sha256"].as_str().unwrap_or("")[..12]
        );
        println!("{:<16} {:<56} {:>12}", "LINE", "DESCRIPTION", "AMOUNT");
        for l in s["lines"].as_array().into_iter().flatten() {
            println!(
                "{:<16} {:<56} {:>12}",
                l["kind"].as_str().unwrap_or(""),
                l["description"].as_str().unwrap_or(""),
                l["amount"].as_str().unwrap_or("")
            );
        }
        println!(
            "{:>86}",
            format!(
                "total {} {}",
                s["total"].as_str().unwrap_or(""),
                s["currency"].as_str().unwrap_or("")
            )
        );
        println!("\nverified offline: {}", self.verified);
        println!(
            "  payoff verify {} --evidence {} --key {}",
            self.statement_path.display(),
            self.bundle_path.display(),
            self.public_key
        );
        println!(
            "the customer disputed {}; the operator accepted: November's draft already holds {} (a dispute_credit line)",
            self.disputed,
            self.november["lines"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|l| l["kind"] == "dispute_credit")
                .map(|l| l["amount"].as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// Uploads the contract, closes October, writes the statement and its
/// evidence, verifies them offline, and walks one dispute through.
async fn bill_the_month(
    provider: &ApiClient,
    url: &str,
    dir: &std::path::Path,
) -> anyhow::Result<Billing> {
    let contract = provider
        .send(
            reqwest::Method::POST,
            "/v1/customers/acme/contracts",
            "application/toml",
            CONTRACT.as_bytes().to_vec(),
        )
        .await?;
    ok(contract)?;
    let statement = ok(provider
        .send(
            reqwest::Method::POST,
            "/v1/customers/acme/periods/2026-10/close",
            "application/json",
            Vec::new(),
        )
        .await?)?;
    let id = statement["id"].as_str().context("statement id")?.to_owned();
    let body = provider.get_text(&format!("/v1/statements/{id}")).await?;
    let bundle = provider
        .get_text(&format!("/v1/statements/{id}/evidence"))
        .await?;
    let statement_path = dir.join(format!("{id}.json"));
    let bundle_path = dir.join(format!("{id}.evidence.json"));
    std::fs::write(&statement_path, &body)?;
    std::fs::write(&bundle_path, &bundle)?;
    let keys = ok(provider.get_json("/.well-known/payoff/keys").await?)?;
    let public_key = keys["keys"][0]["public_key"]
        .as_str()
        .context("public key")?
        .to_owned();
    let verified = payoff_billing::verify(
        &serde_json::from_str(&body)?,
        &serde_json::from_str(&bundle)?,
        &payoff_billing::parse_public_key(&public_key).map_err(anyhow::Error::msg)?,
    )
    .map_err(|e| anyhow::anyhow!("the demo statement does not verify: {e}"))?;
    let verified = format!(
        "signature, {} chained events and every line recomputed byte for byte",
        verified.events
    );

    let customer_admin = ok(provider
        .post_json(
            "/v1/keys",
            &json!({"customer": "acme", "role": "customer_admin"}),
        )
        .await?)?["key"]
        .as_str()
        .context("key")?
        .to_owned();
    let admin = ApiClient::new(url, &customer_admin)?;
    let billed = ok(admin
        .get_json("/v1/customers/acme/outcomes?state=billed&name=ticket_resolved&limit=1")
        .await?)?;
    let outcome = billed["outcomes"][0]["id"]
        .as_str()
        .context("a billed outcome")?
        .to_owned();
    ok(admin
        .post_json(
            &format!("/v1/outcomes/{outcome}/disputes"),
            &json!({"reason": "our agent Maria answered this one by phone"}),
        )
        .await?)?;
    ok(provider
        .post_json(
            &format!("/v1/outcomes/{outcome}/disputes/accept"),
            &json!({"note": "confirmed in the call log"}),
        )
        .await?)?;
    let november = ok(provider
        .get_json("/v1/customers/acme/periods/2026-11/preview")
        .await?)?;
    Ok(Billing {
        statement,
        statement_path,
        bundle_path,
        public_key,
        verified,
        disputed: outcome,
        november,
    })
}

fn ok(reply: Result<Value, crate::client::Problem>) -> anyhow::Result<Value> {
    reply.map_err(|p| anyhow::anyhow!("the demo server refused a request: {p}"))
}

const TOPICS: &[(&str, &[&str])] = &[
    (
        "orders",
        &[
            "Where is my order {n}?",
            "Order {n} shows delivered but nothing arrived",
            "Can I change the address on order {n}?",
        ],
    ),
    (
        "returns",
        &[
            "How do I return the hiking boots from order {n}?",
            "The tent I got is torn, I want a refund",
            "Return label for order {n} does not print",
        ],
    ),
    (
        "billing",
        &[
            "I was charged twice for order {n}",
            "Please send an invoice with our VAT number",
            "Why is there a fee on my card?",
        ],
    ),
    (
        "account",
        &[
            "I cannot log in, password reset mail never comes",
            "Please delete my account",
            "How do I change my email address?",
        ],
    ),
    (
        "shipping",
        &[
            "Do you ship to Norway?",
            "Shipping for order {n} is delayed for a week now!!",
            "Can I get express delivery?",
        ],
    ),
];

/// A month of support tickets, their follow-ups, model calls and a sales
/// pipeline, all from `seed`.
fn generate(seed: u64, tickets: usize) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let month = Utc
        .with_ymd_and_hms(2026, 10, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    let mut events = Vec::new();
    let event = |id: String,
                 source: &str,
                 kind: &str,
                 subject: &str,
                 time: DateTime<Utc>,
                 data: Value| {
        json!({"specversion": "1.0", "id": id, "source": source, "type": kind, "subject": subject,
               "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "datacontenttype": "application/json", "data": data})
    };
    for t in 0..tickets {
        let subject = format!("T-{}", 10_000 + t);
        let opened = month + Duration::minutes(rng.gen_range(0..29 * 24 * 60));
        let (topic, phrasings) = TOPICS[rng.gen_range(0..TOPICS.len())];
        let text = phrasings[rng.gen_range(0..phrasings.len())]
            .replace("{n}", &format!("A{}", rng.gen_range(100_000..999_999)));
        events.push(event(format!("{subject}-created"), "helpdesk", "ticket.created", &subject, opened,
            json!({"channel": if rng.gen_bool(0.7) { "email" } else { "chat" }, "category": topic, "text": text, "requester": format!("shopper{}@example.test", rng.gen_range(1..4000))})));
        let holdout = rng.gen_bool(0.1);
        let replied = opened + Duration::minutes(rng.gen_range(1..20));
        if !holdout {
            events.push(event(format!("{subject}-llm-1"), "payoff/agents/support", "llm.call", &subject, replied,
                json!({"model": "gpt-4o-mini", "input_tokens": rng.gen_range(600..2400), "output_tokens": rng.gen_range(80..400), "latency_ms": rng.gen_range(300..2500), "agent": "support"})));
            events.push(event(
                format!("{subject}-ai-replied"),
                "payoff/agents/support",
                "ticket.ai_replied",
                &subject,
                replied,
                json!({"confidence": (rng.gen_range(55..99) as f64) / 100.0}),
            ));
        }
        let resolved = rng.gen_bool(if holdout { 0.55 } else { 0.72 });
        let closed = replied + Duration::hours(rng.gen_range(1..30));
        if resolved {
            events.push(event(
                format!("{subject}-closed"),
                "helpdesk",
                "ticket.closed",
                &subject,
                closed,
                json!({"resolved_by": if holdout { "human" } else { "ai" }}),
            ));
            if rng.gen_bool(0.08) {
                events.push(event(
                    format!("{subject}-reopened"),
                    "helpdesk",
                    "ticket.reopened",
                    &subject,
                    closed + Duration::hours(48),
                    json!({"reason": "still broken"}),
                ));
            }
        } else {
            events.push(event(
                format!("{subject}-escalated"),
                "helpdesk",
                "ticket.escalated",
                &subject,
                closed,
                json!({"to": "tier2"}),
            ));
        }
    }
    for l in 0..tickets / 6 {
        let subject = format!("L-{}", 500 + l);
        let created = month + Duration::minutes(rng.gen_range(0..27 * 24 * 60));
        events.push(event(
            format!("{subject}-created"),
            "crm",
            "lead.created",
            &subject,
            created,
            json!({"source": "website"}),
        ));
        if rng.gen_bool(0.35) {
            events.push(event(format!("{subject}-sql"), "crm", "lead.stage_changed", &subject, created + Duration::hours(rng.gen_range(2..72)),
                json!({"stage": "SQL", "expected_value": format!("{}.00", rng.gen_range(200..5000))})));
            if rng.gen_bool(0.4) {
                events.push(event(format!("{subject}-won"), "crm", "deal.won", &subject, created + Duration::hours(rng.gen_range(80..200)),
                    json!({"amount": format!("{}.00", rng.gen_range(300..8000)), "currency": "USD"})));
            }
        }
    }
    events.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
    events
}
