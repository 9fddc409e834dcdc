//! `payoff bench faults`: an operator's worst day, repeated. Servers (child
//! processes on loopback) take mixed load: event batches, single events,
//! support tickets, period closes racing each other, webhook deliveries to
//! a receiver in this process. One server is SIGKILLed at a random moment,
//! again and again, and restarted. Afterwards every promise is checked
//! against the database and the receiver:
//!
//! - every acknowledged event is stored exactly once, and the chains verify;
//! - the period was closed once, and its statement never changed;
//! - every acknowledged event a subscription asked for was delivered.
//!
//! With `--nodes 2` (PostgreSQL) two servers share the database: one is
//! killed each round while the other keeps serving. The figures say how
//! many kills, what was acknowledged, lost and duplicated, per database.
//! Exit 1 on any broken promise.

use std::collections::{HashMap, HashSet};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use payoff_store::scratch::ScratchDb;
use payoff_store::{EventFilter, Role, Store};
use serde_json::{json, Value};

use super::{start_server_under, ChildServer};
use crate::bad_input;

#[derive(Args)]
pub struct FaultsArgs {
    /// SIGKILLs per database.
    #[arg(long, default_value_t = 100)]
    kills: usize,
    /// Longest run of load before a kill, in milliseconds (each round picks
    /// a moment up to this).
    #[arg(long, default_value_t = 600)]
    load_ms: u64,
    /// Servers sharing the database (2 on PostgreSQL only).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Also on PostgreSQL: a server URL whose user may create databases.
    #[arg(long, env = "PAYOFF_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Seed of the kill moments and the mix of requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Failpoints: this percentage of the writes to the ledger (event rows,
    /// chain heads, audit records) fails inside the database, as a failed
    /// fsync or write would, while the kills go on. Every failed write
    /// must be refused, never acknowledged.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=50))]
    write_faults: u8,
    /// Failpoints on SQLite: every Nth `fsync`/`fdatasync` of the server
    /// fails with EIO (injected by `strace`, which must be installed), as
    /// a failing disk's would. PostgreSQL's fsyncs are its server's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..))]
    fsync_faults: Option<u32>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) const CONTRACT: &str = r#"
[contract]
customer = "acme"
currency = "USD"
starts = "2026-11-01"

[[outcome]]
name = "resolved"
when = 'event.type == "fault.resolved"'
price = { per_unit = "1.00" }
"#;

/// The period every closer races to close (ended before the bench runs).
const PERIOD: &str = "2026-11";
/// Events per batch request.
const BATCH: usize = 20;
/// Concurrent clients per node.
const CLIENTS: usize = 4;

pub fn run(args: FaultsArgs) -> anyhow::Result<ExitCode> {
    if args.kills == 0 || !(1..=2).contains(&args.nodes) || args.load_ms == 0 {
        return bad_input("--kills and --load-ms at least 1, --nodes 1 or 2");
    }
    if args.nodes == 2 && args.postgres.is_none() {
        return bad_input(
            "--nodes 2: two servers share a PostgreSQL database; give --postgres URL",
        );
    }
    if args.fsync_faults.is_some()
        && !Command::new("strace")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return bad_input(
            "--fsync-faults injects failures with strace: install it (apt install strace)",
        );
    }
    let mut runs = Vec::new();
    if args.nodes == 1 {
        runs.push(measure(&args, &ScratchDb::sqlite(), 1)?);
    }
    if let Some(url) = &args.postgres {
        runs.push(measure(&args, &ScratchDb::postgres_on(url), args.nodes)?);
    }
    let broken = runs
        .iter()
        .any(|r| !r["promises_kept"].as_bool().unwrap_or(false));
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "runs": runs }))?
        );
    } else {
        println!(
            "{:<10} {:>5} {:>6} {:>8} {:>10} {:>6} {:>6} {:>6} {:>8} {:>9} {:>9} {:>7}",
            "BACKEND",
            "NODES",
            "KILLS",
            "503S",
            "ACKED",
            "LOST",
            "DUPS",
            "CLOSED",
            "CHANGED",
            "DELIVERED",
            "UNDELIV.",
            "SECONDS"
        );
        for r in &runs {
            let n = |k: &str| r[k].as_u64().unwrap_or_default();
            println!(
                "{:<10} {:>5} {:>6} {:>8} {:>10} {:>6} {:>6} {:>6} {:>8} {:>9} {:>9} {:>7.0}",
                r["backend"].as_str().unwrap_or_default(),
                n("nodes"),
                n("kills"),
                n("answers_503"),
                n("events_acknowledged"),
                n("events_lost"),
                n("events_duplicated"),
                n("statements_for_period"),
                r["statement_changed"].as_bool().unwrap_or_default(),
                n("webhooks_delivered"),
                n("webhooks_undelivered"),
                r["seconds"].as_f64().unwrap_or_default(),
            );
            for fault in r["faults"].as_array().into_iter().flatten() {
                println!("  {}", fault.as_str().unwrap_or_default());
            }
        }
    }
    Ok(if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What the database holds of the fault suite's events (source
/// `faults`), read directly in one pass: how often each id is stored, at
/// which sequence, and how many rows the ledger has.
pub(super) struct Stored {
    pub(super) counts: HashMap<String, usize>,
    pub(super) sequences: HashMap<String, u64>,
    pub(super) rows: usize,
}

pub(super) fn stored(store: &Store) -> anyhow::Result<Stored> {
    let mut out = Stored {
        counts: HashMap::new(),
        sequences: HashMap::new(),
        rows: 0,
    };
    let mut filter = EventFilter {
        customer: "acme".into(),
        limit: 10_000,
        ..Default::default()
    };
    loop {
        let page = store.events(&filter)?;
        for e in &page.events {
            if e.source == "faults" {
                *out.counts.entry(e.id.clone()).or_default() += 1;
                out.sequences.insert(e.id.clone(), e.sequence);
            }
            out.rows += 1;
        }
        match page.next_cursor {
            Some(c) => filter.after_sequence = Some(c),
            None => break,
        }
    }
    Ok(out)
}

/// The ledger's promises: acknowledged events not stored (lost), ids
/// stored more than once, and chains that do not verify.
pub(super) fn promises(
    store: &Store,
    acked: &HashSet<String>,
    stored: &HashMap<String, usize>,
) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let lost = acked.iter().filter(|id| !stored.contains_key(*id)).count();
    let duplicated = stored.values().filter(|n| **n > 1).count();
    let chains_broken = store
        .verify()?
        .into_iter()
        .filter_map(|r| r.broken.map(|b| format!("{}: {b}", r.customer)))
        .collect();
    Ok((lost, duplicated, chains_broken))
}

/// xorshift64*: kill moments and the request mix, the same for a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// What the clients saw, shared by all of them.
#[derive(Default)]
pub(super) struct Seen {
    /// Answers by kind: `ok` (2xx), `unavailable` (503).
    pub(super) answers: HashMap<&'static str, u64>,
    /// Ids of events a server acknowledged (2xx).
    pub(super) acked: HashSet<String>,
    /// The statement the first successful close answered; every later
    /// answer and the stored one must be the same.
    statement: Option<Value>,
    /// Closes answered 201 (this request stored the statement).
    closes_ok: usize,
    /// Closes answered 200 (closed before: the same statement).
    closes_again: usize,
    closes_refused: usize,
    tickets: usize,
    /// Answers no client should get: a 5xx, a refusal of a valid request.
    pub(super) faults: Vec<String>,
}

fn measure(args: &FaultsArgs, db: &ScratchDb, nodes: usize) -> anyhow::Result<Value> {
    let started = Instant::now();
    let store = Store::open(&db.url)?;
    let now = payoff_clock::wall();
    let admin = store.create_key(Role::Admin, None, now)?.0.key;
    store.create_customer("acme", "Acme", now)?;
    payoff_accounting::billing::upload_contract(&store, "acme", CONTRACT, None, now)
        .map_err(|e| anyhow::anyhow!("the bench's contract: {e}"))?;
    drop(store);
    let wrapper: Vec<String> = match args.fsync_faults {
        // Only the database's own files: the knowledge index's fsyncs at
        // start would keep the server from starting at all (it says so).
        Some(every) if db.label == "sqlite" => [
            "strace",
            "-f",
            "--seccomp-bpf",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=fsync,fdatasync",
            "-P",
            &db.url,
            "-P",
            &format!("{}-wal", db.url),
            "-e",
            &format!("inject=fsync,fdatasync:error=EIO:when={every}+{every}"),
        ]
        .map(str::to_owned)
        .to_vec(),
        _ => Vec::new(),
    };
    // One data directory per node: nodes share a database, not a disk.
    let dirs: Vec<tempfile::TempDir> = (0..nodes)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let delivered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let receiver = runtime.block_on(receiver(delivered.clone()))?;
    let mut servers: Vec<Option<ChildServer>> = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        if n > 0 {
            // Nodes of one installation share the provider's signing key
            // and the key that seals webhook secrets (as deploy/ says).
            for file in ["signing-key.pem", "secrets.key"] {
                std::fs::copy(dirs[0].path().join(file), dir.path().join(file))
                    .with_context(|| format!("sharing {file} with node {n}"))?;
            }
        }
        servers.push(Some(start_server_under(&db.url, dir.path(), "", &wrapper)?));
    }
    let first = servers[0]
        .as_ref()
        .map(|s| s.url.clone())
        .unwrap_or_default();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let reply = client
            .post(format!("{first}/v1/webhooks"))
            .bearer_auth(&admin)
            .json(&json!({"customer": "acme", "url": format!("http://{receiver}/hook"), "event_types": ["fault.*"]}))
            .send()
            .await?;
        anyhow::ensure!(reply.status().is_success(), "the subscription was refused: {}", reply.text().await?);
        Ok(())
    })?;

    // Armed once the bench's own setup is done: a share of the writes to
    // the ledger's tables (an event row, a chain head's update, an audit
    // record) fails inside the database. A failure anywhere in a group
    // must roll the whole group back and answer 503.
    if args.write_faults > 0 {
        payoff_store::scratch::execute_sql(
            &db.url,
            &payoff_store::scratch::failpoint(
                db.label == "postgres",
                "payoff_failpoint",
                &[
                    ("events", "INSERT"),
                    ("ledger_heads", "UPDATE"),
                    ("audit_log", "INSERT"),
                ],
                args.write_faults,
                "failpoint: write failed (injected)",
            )
            .0,
        );
    }
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let mut rng = Rng(args.seed.max(1) * 0x9E37_79B9_7F4A_7C15);
    let mut kills = 0;
    let mut restarts: Vec<f64> = Vec::new();
    for round in 0..args.kills {
        let urls: Vec<String> = servers.iter().flatten().map(|s| s.url.clone()).collect();
        let victim = round % nodes;
        let load_for = Duration::from_millis(20 + rng.below(args.load_ms));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (n, url) in urls.iter().enumerate() {
            for c in 0..CLIENTS {
                let (seen, stop, url, admin) =
                    (seen.clone(), stop.clone(), url.clone(), admin.clone());
                let tag = format!("r{round}n{n}c{c}");
                let seed = rng.below(u64::MAX);
                tasks.push(
                    runtime
                        .spawn(async move { drive(&url, &admin, &tag, seed, &seen, &stop).await }),
                );
            }
        }
        std::thread::sleep(load_for);
        // SIGKILL, with the clients still sending.
        // (Dropping a child server kills it with SIGKILL.)
        if let Some(server) = servers[victim].take() {
            drop(server);
            kills += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in tasks {
            runtime.block_on(t)?;
        }
        let restart = Instant::now();
        servers[victim] = Some(
            start_server_under(&db.url, dirs[victim].path(), "", &wrapper)
                .with_context(|| format!("round {round}: the server did not come back"))?,
        );
        restarts.push(restart.elapsed().as_secs_f64());
    }

    // Every acknowledged event a subscription asked for must arrive.
    let acked: HashSet<String> = seen.lock().expect("seen").acked.clone();
    let wanted: HashSet<&String> = acked.iter().filter(|id| id.starts_with("fault-")).collect();
    let drain = Instant::now();
    let deadline = drain + Duration::from_secs(60 + wanted.len() as u64 / 200);
    loop {
        let got = delivered.lock().expect("delivered");
        if wanted.iter().all(|id| got.contains(*id)) || Instant::now() > deadline {
            break;
        }
        drop(got);
        std::thread::sleep(Duration::from_millis(200));
    }
    let drain_s = drain.elapsed().as_secs_f64();
    let undelivered = {
        let got = delivered.lock().expect("delivered");
        wanted.iter().filter(|id| !got.contains(**id)).count()
    };

    // The database, read directly.
    let store = Store::open(&db.url)?;
    let Stored {
        counts: stored,
        sequences,
        rows: total,
    } = stored(&store)?;
    // Where the undelivered stand: no delivery row, or one by status.
    let mut outbox: HashMap<u64, String> = HashMap::new();
    let mut cursor = 0;
    for sub in store.webhooks(Some("acme"))? {
        cursor = sub.cursor;
        let mut after = 0;
        loop {
            let page = store.deliveries(&sub.id, after, 1000)?;
            let Some(last) = page.last().map(|d| d.sequence) else {
                break;
            };
            for d in page {
                let mut state = format!("{:?}", d.status).to_lowercase();
                if d.attempts > 0 {
                    state.push_str(&format!(
                        " after {} attempts ({})",
                        d.attempts,
                        d.last_error.as_deref().unwrap_or("no error")
                    ));
                }
                outbox.insert(d.sequence, state);
            }
            after = last;
        }
    }
    let mut undelivered_by_state: HashMap<String, usize> = HashMap::new();
    {
        let got = delivered.lock().expect("delivered");
        for id in wanted.iter().filter(|id| !got.contains(**id)) {
            let state = match sequences.get(*id) {
                None => "not stored".to_owned(),
                Some(seq) => outbox
                    .get(seq)
                    .cloned()
                    .unwrap_or_else(|| format!("no delivery (cursor {cursor})")),
            };
            *undelivered_by_state.entry(state).or_default() += 1;
        }
    }
    let (lost, duplicated, chains_broken) = promises(&store, &acked, &stored)?;
    let seen = seen.lock().expect("seen");
    let (for_period, stored_statement) = runtime.block_on(async {
        let url = servers
            .iter()
            .flatten()
            .next()
            .map(|s| s.url.clone())
            .unwrap_or_default();
        let http = reqwest::Client::new();
        let list = http
            .get(format!("{url}/v1/customers/acme/statements"))
            .bearer_auth(&admin)
            .send()
            .await?
            .json::<Value>()
            .await?;
        let ids: Vec<String> = list["statements"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["period"] == PERIOD)
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect();
        let stored = match ids.first() {
            Some(id) => Some(
                http.get(format!("{url}/v1/statements/{id}"))
                    .bearer_auth(&admin)
                    .send()
                    .await?
                    .json::<Value>()
                    .await?,
            ),
            None => None,
        };
        Ok::<_, anyhow::Error>((ids.len(), stored))
    })?;
    let changed = match (&seen.statement, &stored_statement) {
        (Some(first), Some(now)) => first != now,
        (None, None) => false,
        _ => seen.closes_ok + seen.closes_again > 0,
    };
    let mut faults: Vec<String> = seen.faults.iter().take(10).cloned().collect();
    faults.extend(chains_broken.iter().cloned());
    let kept = lost == 0
        && duplicated == 0
        && chains_broken.is_empty()
        && for_period == usize::from(seen.closes_ok + seen.closes_again > 0)
        && seen.closes_ok <= 1
        && !changed
        && undelivered == 0
        && seen.faults.is_empty();
    Ok(json!({
        "backend": db.label,
        "nodes": nodes,
        "kills": kills,
        "write_faults_percent": args.write_faults,
        "fsync_fault_every": if wrapper.is_empty() { None } else { args.fsync_faults },
        "answers_503": seen.answers.get("unavailable").copied().unwrap_or_default(),
        "events_acknowledged": acked.len(),
        "events_stored": stored.len(),
        "ledger_rows": total,
        "events_lost": lost,
        "events_duplicated": duplicated,
        "chains_broken": chains_broken.len(),
        "closes_answered_201": seen.closes_ok,
        "closes_answered_200": seen.closes_again,
        "closes_refused_409": seen.closes_refused,
        "statements_for_period": for_period,
        "statement_changed": changed,
        "tickets_handled": seen.tickets,
        "webhooks_wanted": wanted.len(),
        "webhooks_delivered": wanted.len() - undelivered,
        "webhooks_undelivered": undelivered,
        "webhooks_drain_s": drain_s,
        "webhooks_undelivered_by_state": undelivered_by_state,
        "unexpected_answers": seen.faults.len(),
        "faults": faults,
        "promises_kept": kept,
        "seconds": started.elapsed().as_secs_f64(),
        "restart_s_max": restarts.iter().cloned().fold(0.0, f64::max),
        "restart_s_mean": restarts.iter().sum::<f64>() / restarts.len().max(1) as f64,
    }))
}

/// One client's mixed load until `stop` (or its server is gone): mostly
/// event batches, some single events, tickets for the support agent, and
/// closes of the period.
pub(super) async fn drive(
    url: &str,
    key: &str,
    tag: &str,
    seed: u64,
    seen: &Mutex<Seen>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let http = reqwest::Client::new();
    let mut rng = Rng(seed | 1);
    for n in 0.. {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let pick = rng.below(20);
        let (path, body, ids): (&str, Value, Vec<String>) = match pick {
            0..=11 => {
                let ids: Vec<String> = (0..BATCH).map(|i| format!("fault-{tag}-{n}-{i}")).collect();
                let events = ids.iter().enumerate().map(|(i, id)| event(id, i)).collect();
                ("/v1/events", Value::Array(events), ids)
            }
            12..=16 => {
                let id = format!("fault-{tag}-{n}");
                ("/v1/events", event(&id, n), vec![id])
            }
            17..=18 => (
                "/v1/agents/support/tickets",
                json!({"id": format!("T-{tag}-{n}"), "subject": "Where is my order?",
                       "body": "My order has not arrived.", "requester": "pat@acme.example", "customer": "acme"}),
                Vec::new(),
            ),
            _ => (
                "/v1/customers/acme/periods/2026-11/close",
                Value::Null,
                Vec::new(),
            ),
        };
        let mut request = http.post(format!("{url}{path}")).bearer_auth(key);
        if !body.is_null() {
            request = request.json(&body);
        }
        let Ok(response) = request.send().await else {
            return; // the server is gone: nothing was acknowledged
        };
        let status = response.status();
        let Ok(text) = response.text().await else {
            return; // killed mid-answer: not acknowledged either
        };
        let mut seen = seen.lock().expect("seen");
        if status.is_success() {
            *seen.answers.entry("ok").or_default() += 1;
        } else if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            *seen.answers.entry("unavailable").or_default() += 1;
        }
        match (path, status.as_u16()) {
            ("/v1/events", 200) => seen.acked.extend(ids),
            ("/v1/agents/support/tickets", 200) => seen.tickets += 1,
            (p, code @ (200 | 201)) if p.ends_with("/close") => {
                if code == 201 {
                    seen.closes_ok += 1;
                } else {
                    seen.closes_again += 1;
                }
                match (serde_json::from_str::<Value>(&text), &seen.statement) {
                    (Ok(statement), None) => seen.statement = Some(statement),
                    (Ok(statement), Some(first)) if statement != *first => seen.faults.push(
                        format!("a close answered another statement: {}", statement["id"]),
                    ),
                    (Ok(_), Some(_)) => {}
                    (Err(e), _) => seen.faults.push(format!("a close answered no JSON: {e}")),
                }
            }
            (p, 409) if p.ends_with("/close") => seen.closes_refused += 1,
            // A node catching up says so; the client would retry.
            (_, 503) => {}
            (p, s) => seen.faults.push(format!(
                "{p}: {s} {}",
                text.chars().take(200).collect::<String>()
            )),
        }
    }
}

pub(super) fn event(id: &str, i: usize) -> Value {
    let kind = if i.is_multiple_of(3) {
        "fault.resolved"
    } else {
        "fault.noted"
    };
    json!({"specversion": "1.0", "id": id, "source": "faults", "type": kind, "payoffcustomer": "acme",
           "subject": format!("S-{id}"), "time": "2026-11-05T10:00:00Z", "data": {"i": i}})
}

/// A webhook receiver that keeps the id of every event delivered to it.
async fn receiver(delivered: Arc<Mutex<HashSet<String>>>) -> anyhow::Result<std::net::SocketAddr> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let delivered = delivered.clone();
            async move {
                if let Some(id) = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned))
                {
                    delivered.lock().expect("delivered").insert(id);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    super::serve_on_loopback(app).await
}
