//! `payoff bench gateway`: what the model gateway adds. An upstream that
//! answers at once (in this process, on loopback) is called directly and
//! through a real server (a child process), in the same run: sequential
//! calls for the added latency (p50, p99), then concurrent clients for
//! calls per second. Every gateway call is metered durably before it is
//! answered, as in production. Then action authorization
//! (`POST /v1/actions` under the example rules, each decision audited and
//! in the ledger before it is answered): p50, p99 and decisions per
//! second, beside the direct upstream call of the same run. The floor
//! under both is one durable record: a single new event POSTed to the
//! same server, measured in the same run.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use payoff_store::scratch::ScratchDb;
use payoff_store::{Role, Store};
use serde_json::{json, Value};

use super::start_server_with;
use crate::bad_input;

#[derive(Args)]
pub struct GatewayArgs {
    /// Sequential calls for the latency, each way.
    #[arg(long, default_value_t = 2_000)]
    calls: usize,
    /// Calls for the throughput, each way.
    #[arg(long, default_value_t = 20_000)]
    load_calls: usize,
    /// Concurrent clients for the throughput.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    if args.calls == 0 || args.load_calls == 0 || args.clients == 0 {
        return bad_input("--calls, --load-calls and --clients at least 1");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are only meaningful from `cargo run --release`");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let upstream = runtime.block_on(upstream())?;
    let db = ScratchDb::sqlite();
    let data_dir = tempfile::tempdir()?;
    let store = Store::open(&db.url)?;
    store.create_customer("bench", "bench", payoff_clock::wall())?;
    let agent = store
        .create_key(Role::Agent, Some("bench"), payoff_clock::wall())?
        .0
        .key;
    let customer_admin = store
        .create_key(Role::CustomerAdmin, Some("bench"), payoff_clock::wall())?
        .0
        .key;
    drop(store);
    let server = start_server_with(
        &db.url,
        data_dir.path(),
        &format!("\n[[gateway.upstream]]\nname = \"local\"\nbase_url = \"http://{upstream}/v1\"\nmodels = [\"bench-model\"]\n"),
    )?;
    let figures = runtime.block_on(async {
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
        let direct = format!("http://{upstream}/v1/chat/completions");
        let through = format!("{}/gateway/v1/chat/completions", server.url);
        let body = Arc::new(json!({"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}));
        // Warm both paths (connections, caches) before measuring.
        for url in [&direct, &through] {
            for _ in 0..50 {
                call(&http, url, &agent, &body).await?;
            }
        }
        let same = |_: usize| (*body).clone();
        let direct_lat = sequential(&http, &direct, &agent, same, args.calls).await?;
        let through_lat = sequential(&http, &through, &agent, same, args.calls).await?;
        // The reference for what one durable record costs through this
        // server: a single event, each new (so each is a commit).
        let events = format!("{}/v1/events", server.url);
        let event = |n: usize| json!({"specversion": "1.0", "id": format!("ref-{n}"), "source": "bench",
            "type": "bench.reference", "subject": format!("s-{n}"), "time": "2026-12-01T00:00:00Z", "data": {}});
        let event_lat = sequential(&http, &events, &agent, event, args.calls).await?;
        let direct_rate = load(&http, &direct, &agent, &body, args.load_calls, args.clients).await?;
        let through_rate = load(&http, &through, &agent, &body, args.load_calls, args.clients).await?;

        let rules = json!({
            "schema": include_str!("../../../../examples/actions/schema.cedarschema"),
            "rules": include_str!("../../../../examples/actions/rules.cedar"),
        });
        call(&http, &format!("{}/v1/customers/bench/action-rules", server.url), &customer_admin, &rules).await?;
        let actions = format!("{}/v1/actions", server.url);
        let question = Arc::new(json!({"agent": "refunds", "action": "issue_refund", "subject": "order/o-1",
            "resource": {"type": "Order", "id": "o-1", "attributes": {"country": "FR", "closed": false}},
            "context": {"amount": "12.50", "currency": "EUR"}}));
        for _ in 0..50 {
            call(&http, &actions, &agent, &question).await?;
        }
        let action_lat = sequential(&http, &actions, &agent, |_| (*question).clone(), args.calls).await?;
        let action_rate = load(&http, &actions, &agent, &question, args.load_calls / 4, args.clients).await?;
        anyhow::Ok(json!({
            "calls": args.calls,
            "load_calls": args.load_calls,
            "clients": args.clients,
            "direct_p50_ms": direct_lat.0, "direct_p99_ms": direct_lat.1,
            "gateway_p50_ms": through_lat.0, "gateway_p99_ms": through_lat.1,
            "added_p50_ms": through_lat.0 - direct_lat.0, "added_p99_ms": through_lat.1 - direct_lat.1,
            "event_p50_ms": event_lat.0, "event_p99_ms": event_lat.1,
            "direct_calls_per_s": direct_rate, "gateway_calls_per_s": through_rate,
            "action_p50_ms": action_lat.0, "action_p99_ms": action_lat.1,
            "action_decisions_per_s": action_rate,
        }))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        let f = |k: &str| figures[k].as_f64().unwrap_or_default();
        println!(
            "{:<10} {:>10} {:>10} {:>12}",
            "PATH", "P50 MS", "P99 MS", "CALLS/S"
        );
        println!(
            "{:<10} {:>10.3} {:>10.3} {:>12.0}",
            "direct",
            f("direct_p50_ms"),
            f("direct_p99_ms"),
            f("direct_calls_per_s")
        );
        println!(
            "{:<10} {:>10.3} {:>10.3} {:>12.0}",
            "gateway",
            f("gateway_p50_ms"),
            f("gateway_p99_ms"),
            f("gateway_calls_per_s")
        );
        println!(
            "{:<10} {:>10.3} {:>10.3}",
            "added",
            f("added_p50_ms"),
            f("added_p99_ms")
        );
        println!(
            "{:<10} {:>10.3} {:>10.3}   (one durable event POST: the floor under a metered call)",
            "event",
            f("event_p50_ms"),
            f("event_p99_ms")
        );
        println!(
            "{:<10} {:>10.3} {:>10.3} {:>12.0}",
            "actions",
            f("action_p50_ms"),
            f("action_p99_ms"),
            f("action_decisions_per_s")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// An upstream answering every chat completion at once, with usage.
async fn upstream() -> anyhow::Result<std::net::SocketAddr> {
    let answer = json!({"id": "c", "object": "chat.completion", "created": 0, "model": "bench-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hello"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}});
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let answer = answer.clone();
            async move { axum::Json(answer) }
        }),
    );
    super::serve_on_loopback(app).await
}

async fn call(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> anyhow::Result<()> {
    let r = http.post(url).bearer_auth(key).json(body).send().await?;
    if !r.status().is_success() {
        anyhow::bail!(
            "{url} answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    r.bytes().await?;
    Ok(())
}

/// p50 and p99 of `n` calls one after another, in milliseconds.
async fn sequential(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: impl Fn(usize) -> Value,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let body = body(i);
        let t = Instant::now();
        call(http, url, key, &body).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    Ok((at(0.5), at(0.99)))
}

/// Calls per second of `n` calls shared by `clients` concurrent clients.
async fn load(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Arc<Value>,
    n: usize,
    clients: usize,
) -> anyhow::Result<f64> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, key, body, next) = (
            http.clone(),
            url.to_owned(),
            key.to_owned(),
            body.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                call(&http, &url, &key, &body).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
