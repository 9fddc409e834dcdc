//! `payoff bench ingest`: a real server in a child process on loopback,
//! driven by concurrent HTTP clients; `payoff bench close`: see [`close`].
//! Run them from a release build.

mod agent;
mod attribution;
mod close;
mod disk;
mod faults;
mod gateway;
mod reads;
mod search;
mod webhooks;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use payoff_ledger::{validate_event, EventLimits};
use payoff_store::scratch::{sqlite_reference_insert, ScratchDb};
use payoff_store::{Role, Store};
use serde_json::{json, Value};

use crate::bad_input;
use crate::client::ApiClient;
use crate::settings::Settings;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Ingest throughput and latency, durable, over HTTP.
    Ingest(IngestArgs),
    /// Closing a period over a large ledger: time, events/s, peak memory.
    Close(close::CloseCommand),
    /// Lift over a million subjects; economics of ten million events.
    Attribution(attribution::AttributionArgs),
    /// Knowledge search with permissions, many concurrent clients.
    Search(search::SearchArgs),
    /// The support agent's own work per ticket (extractive answers).
    Agent(agent::AgentArgs),
    /// Reading outcomes (API and dashboard) from the read model at N events.
    Reads(reads::ReadsArgs),
    /// Webhook deliveries per second to a receiver on loopback.
    Webhooks(webhooks::WebhooksArgs),
    /// The model gateway's added latency and calls per second over direct
    /// calls to the same upstream on loopback.
    Gateway(gateway::GatewayArgs),
    /// SIGKILLs under mixed load, then every promise checked: events stored
    /// once, chains intact, one unchanged statement, every webhook delivered.
    Faults(faults::FaultsArgs),
    /// A full disk and a read-only one under load (SQLite on a tmpfs; needs
    /// root): nothing acknowledged that is not stored, readiness names the
    /// cause, recovery when space returns.
    Disk(disk::DiskArgs),
}

#[derive(Args)]
pub struct IngestArgs {
    /// Events sent in batches
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events per batch request
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent clients sending batches
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Events sent one per request
    #[arg(long, default_value_t = 200_000)]
    single_events: usize,
    /// Concurrent clients sending single events
    #[arg(long, default_value_t = 64)]
    single_clients: usize,
    /// Also measure PostgreSQL: a server URL whose user may create databases
    #[arg(long, env = "PAYOFF_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// Upload no contract, so that no outcome read model is folded: the
    /// model's share of the ingest cost is the difference.
    #[arg(long)]
    without_model: bool,
}

pub fn run(settings: &Settings, command: BenchCommand) -> anyhow::Result<ExitCode> {
    let args = match command {
        BenchCommand::Ingest(args) => args,
        BenchCommand::Close(args) => return close::run(settings, args),
        BenchCommand::Reads(args) => return reads::run(settings, args),
        BenchCommand::Attribution(args) => return attribution::run(settings, args),
        BenchCommand::Search(args) => return search::run(args),
        BenchCommand::Agent(args) => return agent::run(args),
        BenchCommand::Webhooks(args) => return webhooks::run(args),
        BenchCommand::Gateway(args) => return gateway::run(args),
        BenchCommand::Faults(args) => return faults::run(args),
        BenchCommand::Disk(args) => return disk::run(args),
    };
    if args.batch == 0 || args.batch > 10_000 || args.clients == 0 || args.single_clients == 0 {
        return bad_input("--batch must be 1..=10000 and --clients, --single-clients at least 1");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are only meaningful from `cargo run --release`");
    }
    let mut results = Vec::new();
    let sqlite = ScratchDb::sqlite();
    results.push(measure(&args, &sqlite)?);
    let reference = physical_reference(&args)?;
    if let Some(url) = &args.postgres {
        let pg = ScratchDb::postgres_on(url);
        results.push(measure(&args, &pg)?);
    }
    let sqlite_batch = results[0].batch.events_per_s;
    let report = json!({
        "runs": results.iter().map(Run::to_json).collect::<Vec<_>>(),
        "physical_reference": {
            "what": "the same rows inserted straight into SQLite in one transaction (synchronous=FULL), no HTTP, no idempotency checks",
            "events": args.events,
            "events_per_s": reference,
            "ratio_of_ingest_to_reference": sqlite_batch / reference,
        }
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:<10} {:<28} {:>12} {:>14} {:>10} {:>10} {:>12}",
            "BACKEND", "WORKLOAD", "EVENTS", "EVENTS/S", "P50 MS", "P99 MS", "PEAK RSS MB"
        );
        for run in &results {
            for (name, phase) in [
                (
                    format!("batches of {} x {} clients", args.batch, args.clients),
                    &run.batch,
                ),
                (
                    format!("single events x {} clients", args.single_clients),
                    &run.single,
                ),
            ] {
                println!(
                    "{:<10} {:<28} {:>12} {:>14.0} {:>10.2} {:>10.2} {:>12.1}",
                    run.backend,
                    name,
                    phase.events,
                    phase.events_per_s,
                    phase.p50_ms,
                    phase.p99_ms,
                    run.peak_rss_mb
                );
            }
        }
        for run in &results {
            if let Some(lag) = run.model_lag_s {
                println!(
                    "{:<10} the outcome read model, folded while the batches arrived, was current {lag:.2} s after the last one",
                    run.backend
                );
            }
        }
        println!(
            "physical reference (SQLite, one transaction, {} rows): {:.0} events/s; batch ingest / reference = {:.2}",
            args.events,
            reference,
            sqlite_batch / reference
        );
    }
    Ok(ExitCode::SUCCESS)
}

struct Phase {
    events: usize,
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

struct Run {
    backend: &'static str,
    batch: Phase,
    single: Phase,
    peak_rss_mb: f64,
    /// Seconds a read waited for the model after the last batch; `None`
    /// without a model (`--without-model`).
    model_lag_s: Option<f64>,
}

impl Run {
    fn to_json(&self) -> Value {
        let phase = |p: &Phase| json!({"events": p.events, "events_per_s": p.events_per_s, "p50_ms": p.p50_ms, "p99_ms": p.p99_ms});
        json!({"backend": self.backend, "batches": phase(&self.batch), "single_events": phase(&self.single),
               "server_peak_rss_mb": self.peak_rss_mb, "read_model_lag_after_batches_s": self.model_lag_s})
    }
}

/// The ingest bench's contract: every closed ticket is an outcome.
const INGEST_CONTRACT: &str = r#"
[contract]
customer = "bench"
currency = "USD"
period = "monthly"
starts = "2026-11-01"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed"'
matures_after = "72h"
price = { per_unit = "0.90" }
"#;

/// A ticket event of realistic size (about 400 bytes).
fn bench_event(i: usize, prefix: &str) -> Value {
    let kinds = [
        "ticket.created",
        "ticket.ai_replied",
        "ticket.closed",
        "llm.call",
    ];
    json!({
        "specversion": "1.0",
        "id": format!("{prefix}-{i}"),
        "source": "bench/helpdesk",
        "type": kinds[i % kinds.len()],
        "subject": format!("T-{}", i / 4),
        "time": "2026-11-03T10:15:30.250Z",
        "datacontenttype": "application/json",
        "data": {
            "channel": "email",
            "category": "shipping",
            "requester": format!("customer{}@example.test", i % 997),
            "text": "My order has not arrived yet, can you tell me where it is and when it will be delivered?",
            "model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 164
        }
    })
}

struct ChildServer {
    child: Child,
    url: String,
}

impl Drop for ChildServer {
    /// SIGKILL to the server's process group: the server, and the tracer
    /// a fault bench may run it under (killing only the tracer would
    /// leave the server running, detached).
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let killed = Command::new("kill")
            .args(["-KILL", "--", &group])
            .status()
            .is_ok_and(|s| s.success());
        if !killed {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Starts `payoff serve` on `db` over `data_dir` (initialised here), with
/// no rate limits (a bench measures the server, not its limits) and
/// webhooks allowed to loopback (where a bench's receivers listen).
fn start_server(database: &str, data_dir: &std::path::Path) -> anyhow::Result<ChildServer> {
    start_server_with(database, data_dir, "")
}

/// [`start_server`] with more of `payoff.toml` (`extra`, appended).
fn start_server_with(
    database: &str,
    data_dir: &std::path::Path,
    extra: &str,
) -> anyhow::Result<ChildServer> {
    start_server_under(database, data_dir, extra, &[])
}

/// [`start_server_with`], the server run by `wrapper` (a command and its
/// arguments before the server's own: a tracer injecting faults), in a
/// process group of its own.
fn start_server_under(
    database: &str,
    data_dir: &std::path::Path,
    extra: &str,
    wrapper: &[String],
) -> anyhow::Result<ChildServer> {
    crate::commands::init::ensure_signing_key(&data_dir.join("signing-key.pem"))?;
    let config = data_dir.join("bench.toml");
    let text = format!("[rate_limits]\nkey_per_second = 0\naddress_per_second = 0\nlogin_per_minute = 0\n\n[egress]\nallow = [\"127.0.0.0/8\"]\n{extra}");
    // Written only when it changes: a restart may be on a read-only disk.
    if std::fs::read_to_string(&config).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&config, text)?;
    }
    let exe = std::env::current_exe()?;
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let mut child = command
        .process_group(0)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--database", database])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the server")?;
    // The server's log goes on to ours; its last lines say why it did not
    // start, when it did not.
    let tail: Arc<std::sync::Mutex<std::collections::VecDeque<String>>> = Arc::default();
    let stderr = child.stderr.take().context("server stderr")?;
    let kept = tail.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let mut kept = kept.lock().expect("stderr tail");
            if kept.len() == 20 {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
    let stdout = child.stdout.take().context("server stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
        let status = child.wait()?;
        // The child is gone, so its stderr ends and the reader with it.
        let _ = reader.join();
        let said = tail
            .lock()
            .expect("stderr tail")
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        anyhow::bail!("the server did not start ({status}): {said}");
    };
    let url = url.to_owned();
    Ok(ChildServer { child, url })
}

/// Serves `app` on a free loopback port for the rest of the run: the
/// benches' receivers and upstreams.
async fn serve_on_loopback(app: axum::Router) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

pub(crate) fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn measure(args: &IngestArgs, db: &ScratchDb) -> anyhow::Result<Run> {
    let data_dir = tempfile::tempdir()?;
    let store = Store::open(&db.url)?;
    store.create_customer("bench", "Benchmark", payoff_clock::wall())?;
    // A contract, so that the server folds the outcome read model while
    // the events arrive, as it does in production.
    if !args.without_model {
        payoff_accounting::billing::upload_contract(
            &store,
            "bench",
            INGEST_CONTRACT,
            None,
            payoff_clock::wall(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let (key, _) = store.create_key(Role::Agent, Some("bench"), payoff_clock::wall())?;
    let (reader, _) = store.create_key(Role::Admin, None, payoff_clock::wall())?;
    drop(store);
    let server = start_server(&db.url, data_dir.path())?;
    let client = ApiClient::new(&server.url, &key.key)?;
    eprintln!(
        "{}: preparing {} events…",
        db.label,
        args.events + args.single_events
    );
    let batches: Vec<Vec<u8>> = (0..args.events.div_ceil(args.batch))
        .map(|b| {
            let events: Vec<Value> = (b * args.batch..((b + 1) * args.batch).min(args.events))
                .map(|i| bench_event(i, "b"))
                .collect();
            serde_json::to_vec(&events).expect("json")
        })
        .collect();
    let singles: Vec<Vec<u8>> = (0..args.single_events)
        .map(|i| serde_json::to_vec(&bench_event(i, "s")).expect("json"))
        .collect();
    let runtime = tokio::runtime::Runtime::new()?;
    eprintln!("{}: batches…", db.label);
    let batch = runtime.block_on(drive(
        &client,
        batches,
        args.clients,
        "application/cloudevents-batch+json",
        args.events,
    ))?;
    // A read folds what the projector has not folded yet: how long the
    // model trails the acknowledged ledger once the batches stop.
    let model_lag_s = if args.without_model {
        None
    } else {
        let drained = Instant::now();
        runtime
            .block_on(
                ApiClient::new(&server.url, &reader.key)?
                    .get_json("/v1/customers/bench/outcomes?limit=1"),
            )?
            .map_err(|p| anyhow::anyhow!("reading outcomes failed: {p}"))?;
        Some(drained.elapsed().as_secs_f64())
    };
    eprintln!("{}: single events…", db.label);
    let single = runtime.block_on(drive(
        &client,
        singles,
        args.single_clients,
        "application/cloudevents+json",
        args.single_events,
    ))?;
    let peak_rss_mb = peak_rss_mb(server.child.id());
    let head = Store::open(&db.url)?
        .head("bench")?
        .map(|h| h.sequence)
        .unwrap_or(0);
    anyhow::ensure!(
        head as usize == args.events + args.single_events,
        "the server stored {head} events, expected {}",
        args.events + args.single_events
    );
    Ok(Run {
        backend: db.label,
        batch,
        single,
        peak_rss_mb,
        model_lag_s,
    })
}

/// Sends every body (holding `events` events in all) once, `clients` at a
/// time; every reply must be a 2xx.
async fn drive(
    client: &ApiClient,
    bodies: Vec<Vec<u8>>,
    clients: usize,
    content_type: &'static str,
    events: usize,
) -> anyhow::Result<Phase> {
    let total = bodies.len();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, bodies, next) = (client.clone(), bodies.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let sent = Instant::now();
                client
                    .send(
                        reqwest::Method::POST,
                        "/v1/events",
                        content_type,
                        body.clone(),
                    )
                    .await?
                    .map_err(|p| anyhow::anyhow!("the server refused a request: {p}"))?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Phase {
        events,
        events_per_s: events as f64 / elapsed,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}

fn physical_reference(args: &IngestArgs) -> anyhow::Result<f64> {
    let limits = EventLimits::default();
    let events: Vec<_> = (0..args.events)
        .map(|i| validate_event(bench_event(i, "b"), &limits).map_err(|e| anyhow::anyhow!("{e:?}")))
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let took = sqlite_reference_insert(&dir.path().join("reference.db"), "bench", &events)?;
    Ok(args.events as f64 / took.as_secs_f64())
}

/// Latencies of one workload, in milliseconds.
#[derive(Default)]
pub(crate) struct Latencies(Vec<f64>);

impl Latencies {
    pub(crate) fn push(&mut self, ms: f64) {
        self.0.push(ms);
    }

    pub(crate) fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile (nearest rank), 0 when empty.
    pub(crate) fn quantile(&mut self, q: f64) -> f64 {
        self.0.sort_unstable_by(f64::total_cmp);
        let n = self.0.len();
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.0[rank - 1]
    }

    pub(crate) fn summary(&mut self) -> Value {
        json!({
            "count": self.len(),
            "p50_ms": self.quantile(0.50),
            "p95_ms": self.quantile(0.95),
            "p99_ms": self.quantile(0.99),
            "max_ms": self.quantile(1.0),
        })
    }
}
