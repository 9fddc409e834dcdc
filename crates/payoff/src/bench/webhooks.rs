//! `payoff bench webhooks`: deliveries per second from a real server (a
//! child process on loopback) to a receiver that answers at once, in this
//! process. Events are sent in batches; the clock runs from the first
//! batch to the last delivery received, so the figure is the outbox's
//! sustained rate with ingestion going on beside it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use payoff_store::scratch::ScratchDb;
use payoff_store::{Role, Store};
use serde_json::{json, Value};

use super::start_server;
use crate::bad_input;
use crate::client::ApiClient;

#[derive(Args)]
pub struct WebhooksArgs {
    /// Events sent, each delivered once.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events per batch request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Customers (each with its own subscription), sharing the events.
    #[arg(long, default_value_t = 1)]
    customers: usize,
    /// Also measure PostgreSQL: a server URL whose user may create databases
    #[arg(long, env = "PAYOFF_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: WebhooksArgs) -> anyhow::Result<ExitCode> {
    if args.events == 0 || args.batch == 0 || args.batch > 10_000 || args.customers == 0 {
        return bad_input("--events and --customers at least 1, --batch 1..=10000");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are only meaningful from `cargo run --release`");
    }
    let mut runs = vec![measure(&args, &ScratchDb::sqlite())?];
    if let Some(url) = &args.postgres {
        runs.push(measure(&args, &ScratchDb::postgres_on(url))?);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "runs": runs }))?
        );
    } else {
        println!(
            "{:<10} {:>10} {:>10} {:>12} {:>14} {:>16}",
            "BACKEND", "EVENTS", "CUSTOMERS", "INGEST S", "DELIVERED S", "DELIVERIES/S"
        );
        for r in &runs {
            println!(
                "{:<10} {:>10} {:>10} {:>12.2} {:>14.2} {:>16.0}",
                r["backend"].as_str().unwrap_or_default(),
                r["events"],
                r["customers"],
                r["ingest_s"].as_f64().unwrap_or_default(),
                r["delivered_s"].as_f64().unwrap_or_default(),
                r["deliveries_per_s"].as_f64().unwrap_or_default(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn measure(args: &WebhooksArgs, db: &ScratchDb) -> anyhow::Result<Value> {
    let data_dir = tempfile::tempdir()?;
    let store = Store::open(&db.url)?;
    let admin = store
        .create_key(Role::Admin, None, payoff_clock::wall())?
        .0
        .key;
    let customers: Vec<String> = (0..args.customers).map(|i| format!("hooks{i}")).collect();
    for c in &customers {
        store.create_customer(c, c, payoff_clock::wall())?;
    }
    drop(store);
    let server = start_server(&db.url, data_dir.path())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let received = Arc::new(AtomicUsize::new(0));
        let all_in = Arc::new(tokio::sync::Notify::new());
        let receiver = receiver(received.clone(), all_in.clone(), args.events).await?;
        let client = ApiClient::new(&server.url, &admin)?;
        for c in &customers {
            client
                .post_json(
                    "/v1/webhooks",
                    &json!({"customer": c, "url": format!("http://{receiver}/hook"), "event_types": ["bench.*"]}),
                )
                .await?
                .map_err(|p| anyhow::anyhow!("the server refused the subscription: {p}"))?;
        }
        let started = Instant::now();
        let mut sent = 0;
        let mut batch_no = 0;
        while sent < args.events {
            let n = args.batch.min(args.events - sent);
            let customer = &customers[batch_no % customers.len()];
            let batch: Vec<Value> = (sent..sent + n)
                .map(|i| json!({"specversion": "1.0", "id": format!("e{i}"), "source": "bench",
                    "type": "bench.happened", "subject": format!("s{i}"), "payoffcustomer": customer,
                    "time": "2026-11-05T10:00:00Z", "data": {"i": i}}))
                .collect();
            client
                .post_json("/v1/events", &Value::Array(batch))
                .await?
                .map_err(|p| anyhow::anyhow!("the server refused a batch: {p}"))?;
            sent += n;
            batch_no += 1;
        }
        let ingest_s = started.elapsed().as_secs_f64();
        let deadline = Duration::from_secs(60 + (args.events / 50) as u64);
        let waited = tokio::time::timeout(deadline, async {
            while received.load(Ordering::SeqCst) < args.events {
                all_in.notified().await;
            }
        })
        .await;
        let delivered_s = started.elapsed().as_secs_f64();
        let got = received.load(Ordering::SeqCst);
        if waited.is_err() {
            anyhow::bail!("only {got} of {} deliveries arrived within {deadline:?}", args.events);
        }
        Ok(json!({
            "backend": db.label,
            "events": args.events,
            "customers": args.customers,
            "ingest_s": ingest_s,
            "delivered_s": delivered_s,
            "deliveries_per_s": args.events as f64 / delivered_s,
            "received": got,
        }))
    })
}

/// A receiver that answers 204 at once and counts; `all_in` is notified
/// on every delivery from the `events`-th on.
async fn receiver(
    received: Arc<AtomicUsize>,
    all_in: Arc<tokio::sync::Notify>,
    events: usize,
) -> anyhow::Result<std::net::SocketAddr> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (received, all_in) = (received.clone(), all_in.clone());
            async move {
                if received.fetch_add(1, Ordering::SeqCst) + 1 >= events {
                    all_in.notify_one();
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    super::serve_on_loopback(app).await
}
