//! `payoff bench search`: knowledge search through the real server (a
//! child process on loopback, index on disk), over a seeded corpus of
//! support articles with group restrictions, from many concurrent clients.
//! Every query filters by the caller's groups. Reports the time the server
//! spent (its `server-timing` header) and the time the clients saw.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use payoff_store::scratch::ScratchDb;
use payoff_store::{Role, Store};
use serde_json::{json, Value};

use super::{start_server, Latencies};
use crate::bad_input;
use crate::client::ApiClient;

#[derive(Args)]
pub struct SearchArgs {
    /// Passages in the corpus (spread over four customers).
    #[arg(long, default_value_t = 100_000)]
    passages: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Searches in all.
    #[arg(long, default_value_t = 50_000)]
    queries: usize,
    /// Seed of the generated corpus and queries.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// What people type into a help centre's search box.
const QUERIES: &[&str] = &[
    "refund to my card",
    "change delivery address",
    "reset password",
    "where is my parcel",
    "cancel my order",
    "invoice with VAT number",
    "print return label",
    "item arrived damaged",
    "express shipping cost",
    "payment declined",
    "account locked after login attempts",
    "order confirmation email missing",
    "exchange for another size",
    "courier tracking not updating",
    "change plan billing",
    "warranty claim",
];

/// Who searches: no group, one group, two groups, and an agent acting for
/// a user of one group.
const CALLERS: &[(Role, &[&str], Option<&str>)] = &[
    (Role::CustomerViewer, &[], None),
    (Role::CustomerViewer, &["support"], None),
    (Role::CustomerViewer, &["finance", "hr"], None),
    (Role::Agent, &[], Some("support")),
];

/// Documents per upload: well inside the request size limit (2 MiB).
pub(super) const UPLOAD_DOCUMENTS_MAX: usize = 250;

pub fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    if args.clients == 0 || args.queries == 0 || args.passages == 0 {
        return bad_input("--passages, --clients and --queries must be at least 1");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are only meaningful from `cargo run --release`");
    }
    let corpus = payoff_knowledge::synthetic_corpus(args.passages, args.seed);
    let customers: BTreeSet<String> = corpus.iter().map(|(c, _)| c.clone()).collect();

    let db = ScratchDb::sqlite();
    let data_dir = tempfile::tempdir()?;
    let store = Store::open(&db.url)?;
    let now = payoff_clock::wall();
    let mut editors = Vec::new();
    let mut callers = Vec::new();
    for customer in &customers {
        store.create_customer(customer, customer, now)?;
        editors.push((
            customer.clone(),
            store
                .create_key(Role::CustomerAdmin, Some(customer), now)?
                .0
                .key,
        ));
        for (role, groups, acting_for) in CALLERS {
            let (key, info) = store.create_key(*role, Some(customer), now)?;
            if !groups.is_empty() {
                store.set_key_groups(&info.key_id, &serde_json::to_string(groups)?)?;
            }
            callers.push((key.key, *acting_for));
        }
    }
    drop(store);
    let server = start_server(&db.url, data_dir.path())?;
    let runtime = tokio::runtime::Runtime::new()?;

    eprintln!(
        "uploading {} documents ({} passages)…",
        corpus.len(),
        args.passages
    );
    let started = Instant::now();
    runtime.block_on(async {
        for (customer, key) in &editors {
            let client = ApiClient::new(&server.url, key)?;
            let docs: Vec<Value> = corpus
                .iter()
                .filter(|(c, _)| c == customer)
                .map(|(_, d)| serde_json::to_value(d))
                .collect::<Result<_, _>>()?;
            for chunk in docs.chunks(UPLOAD_DOCUMENTS_MAX) {
                client
                    .post_json("/v1/knowledge/documents", &Value::Array(chunk.to_vec()))
                    .await?
                    .map_err(|p| anyhow::anyhow!("upload refused: {p}"))?;
            }
        }
        anyhow::Ok(())
    })?;
    let indexing_s = started.elapsed().as_secs_f64();

    eprintln!("{} searches from {} clients…", args.queries, args.clients);
    let clients: Vec<(ApiClient, Option<&str>)> = callers
        .iter()
        .map(|(key, acting)| Ok((ApiClient::new(&server.url, key)?, *acting)))
        .collect::<anyhow::Result<_>>()?;
    let clients = Arc::new(clients);
    let next = Arc::new(AtomicUsize::new(0));
    let with_hits = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let (mut server_ms, mut waited_ms, mut client_ms) = runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.clients {
            let (clients, next, with_hits) = (clients.clone(), next.clone(), with_hits.clone());
            let total = args.queries;
            tasks.push(tokio::spawn(async move {
                let (mut server, mut waited, mut client) = (
                    Latencies::default(),
                    Latencies::default(),
                    Latencies::default(),
                );
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let (api, acting) = &clients[i % clients.len()];
                    let q = QUERIES[(i / clients.len()) % QUERIES.len()].replace(' ', "+");
                    let path = match acting {
                        Some(g) => format!("/v1/knowledge/search?q={q}&groups={g}"),
                        None => format!("/v1/knowledge/search?q={q}"),
                    };
                    let sent = Instant::now();
                    let (reply, timing) = api
                        .timed(reqwest::Method::GET, &path, None, Vec::new())
                        .await?;
                    client.push(sent.elapsed().as_secs_f64() * 1000.0);
                    let reply = reply.map_err(|p| anyhow::anyhow!("search refused: {p}"))?;
                    let timing =
                        timing.ok_or_else(|| anyhow::anyhow!("no server-timing header"))?;
                    server.push(timing.app);
                    waited.push(timing.wait);
                    if reply["hits"].as_array().is_some_and(|h| !h.is_empty()) {
                        with_hits.fetch_add(1, Ordering::Relaxed);
                    }
                }
                anyhow::Ok((server, waited, client))
            }));
        }
        let (mut server, mut waited, mut client) = (
            Latencies::default(),
            Latencies::default(),
            Latencies::default(),
        );
        for task in tasks {
            let (s, w, c) = task.await??;
            server.extend(s);
            waited.extend(w);
            client.extend(c);
        }
        anyhow::Ok((server, waited, client))
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let report = json!({
        "passages": args.passages,
        "documents": corpus.len(),
        "indexing_s": indexing_s,
        "clients": args.clients,
        "queries": args.queries,
        "queries_per_s": args.queries as f64 / elapsed,
        "share_with_hits": with_hits.load(Ordering::Relaxed) as f64 / args.queries as f64,
        "server": server_ms.summary(),
        "server_waiting_for_a_core": waited_ms.summary(),
        "client": client_ms.summary(),
        "server_peak_rss_mb": super::peak_rss_mb(server.child.id()),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "search over {} passages ({} documents, indexed through the API in {indexing_s:.1} s), {} clients, {} queries: {:.0} queries/s",
            args.passages, corpus.len(), args.clients, args.queries, args.queries as f64 / elapsed
        );
        println!(
            "  at the server: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
            server_ms.quantile(0.5),
            server_ms.quantile(0.95),
            server_ms.quantile(0.99)
        );
        println!(
            "    of which waiting for a free core: p50 {:.2} ms, p95 {:.2} ms",
            waited_ms.quantile(0.5),
            waited_ms.quantile(0.95)
        );
        println!(
            "  at the client: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
            client_ms.quantile(0.5),
            client_ms.quantile(0.95),
            client_ms.quantile(0.99)
        );
        println!(
            "  {:.0} % of searches found something the caller may read",
            report["share_with_hits"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
