//! `payoff bench disk`: a full disk and a read-only one under a running
//! server. The data directory and the SQLite database live on a small
//! tmpfs mounted for the run (so it needs root: CAP_SYS_ADMIN), and the
//! fault suite's clients keep sending while the disk is filled to the last
//! byte, while it is remounted read-only, and while a server killed on a
//! full disk is started again. After each fault the space (or the write
//! access) comes back, and the bench measures how long until `/readyz`
//! says ready and events are acknowledged again. Then every promise is
//! checked against the database: nothing acknowledged that is not stored,
//! nothing stored twice, chains intact, and `/readyz` named the cause
//! while the fault lasted.
//!
//! PostgreSQL's disk is its server's, outside Payoff: the writer reports
//! its `disk_full` (53100) the same way, which `payoff_store`'s tests map.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use payoff_store::scratch::Tmpfs;
use payoff_store::{Role, Store};
use serde_json::{json, Value};

use super::faults::{drive, promises, stored, Seen, CONTRACT};
use super::start_server;
use crate::bad_input;

#[derive(Args)]
pub struct DiskArgs {
    /// How long the clients keep sending while each fault lasts, in
    /// milliseconds.
    #[arg(long, default_value_t = 2_000)]
    fault_ms: u64,
    /// Size of the tmpfs the data lives on, in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// Seed of the clients' request mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// Clients sending during each phase.
const CLIENTS: usize = 4;
/// Longest wait for a server to say ready again once the fault is gone.
const RECOVERY_MAX: Duration = Duration::from_secs(30);

pub fn run(args: DiskArgs) -> anyhow::Result<ExitCode> {
    if args.fault_ms == 0 || args.size_mib < 16 {
        return bad_input("--fault-ms at least 1 and --size-mib at least 16");
    }
    let dir = tempfile::tempdir()?;
    let mounted = match Tmpfs::mount(dir.path(), args.size_mib) {
        Ok(m) => m,
        Err(why) => {
            return bad_input(format!(
                "bench disk mounts a small tmpfs for its data and needs root (CAP_SYS_ADMIN): mount said: {why}"
            ))
        }
    };
    let database = mounted.path().join("payoff.db").display().to_string();
    let data_dir = mounted.path().join("data");
    std::fs::create_dir(&data_dir)?;
    let store = Store::open(&database)?;
    let now = payoff_clock::wall();
    let admin = store.create_key(Role::Admin, None, now)?.0.key;
    store.create_customer("acme", "Acme", now)?;
    payoff_accounting::billing::upload_contract(&store, "acme", CONTRACT, None, now)
        .map_err(|e| anyhow::anyhow!("the bench's contract: {e}"))?;
    drop(store);
    let runtime = tokio::runtime::Runtime::new()?;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let mut server = Some(start_server(&database, &data_dir)?);
    let mut phases = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    let fault_for = Duration::from_millis(args.fault_ms);
    let mut seed = args.seed.max(1);

    for phase in ["disk_full", "killed_on_full_disk", "read_only_restart"] {
        let url = server.as_ref().map(|s| s.url.clone()).unwrap_or_default();
        let acked_before = seen.lock().expect("seen").acked.len();
        let ballast = match phase {
            "read_only_restart" => {
                // Linux refuses a read-only remount while files are open
                // for writing: the server is killed first, then started on
                // the read-only disk (the finding: it said "index is
                // locked by another writer").
                drop(server.take());
                mounted.remount("ro").map_err(anyhow::Error::msg)?;
                None
            }
            _ => Some(mounted.fill()?),
        };
        if phase == "killed_on_full_disk" {
            drop(server.take());
        }
        let mut restarted = None;
        if server.is_none() {
            let started = start_server(&database, &data_dir);
            restarted = Some(started.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
            server = started.ok();
        }
        let during_url = server.as_ref().map(|s| s.url.clone());
        seed += 1;
        let (during, ready_during, write_after_ready) = match &during_url {
            Some(url) => {
                let during = runtime.block_on(load(url, &admin, phase, seed, &seen, fault_for));
                let ready = runtime.block_on(readyz(url));
                // A nearly full disk may take a small write and refuse a
                // larger one: "ready" is true if the next write is stored.
                let write = (ready.0 == 200)
                    .then(|| runtime.block_on(one_event(url, &admin, phase, &seen)));
                (during, ready, write)
            }
            None => (json!({"ok": 0, "unavailable": 0}), (0, String::new()), None),
        };
        let acked_during = seen.lock().expect("seen").acked.len() - acked_before;
        // The fault goes away.
        match &ballast {
            Some(path) => std::fs::remove_file(path)?,
            None => mounted.remount("rw").map_err(anyhow::Error::msg)?,
        }
        let freed = Instant::now();
        if server.is_none() {
            // It could not start on the full disk: it must now.
            server = Some(start_server(&database, &data_dir).with_context(|| {
                format!("{phase}: the server did not start once space was back")
            })?);
        }
        let url = server.as_ref().map(|s| s.url.clone()).unwrap_or(url);
        let ready_after = runtime.block_on(until_ready(&url));
        let recovery_ms = freed.elapsed().as_secs_f64() * 1000.0;
        let acked_mid = seen.lock().expect("seen").acked.len();
        seed += 1;
        runtime.block_on(load(
            &url,
            &admin,
            phase,
            seed,
            &seen,
            Duration::from_millis(300),
        ));
        let acked_after = seen.lock().expect("seen").acked.len() - acked_mid;

        let (ready_status, ready_detail) = ready_during;
        let cause = match phase {
            "read_only_restart" => "read-only",
            _ => "disk is full",
        };
        // Either the server said, not ready, why; or it would not start
        // and said why.
        let said = match (&restarted, during_url.is_some()) {
            (Some(Err(why)), false) => why.clone(),
            _ if ready_status == 200 => {
                if write_after_ready != Some(true) {
                    broken.push(format!(
                        "{phase}: /readyz said ready and the next write was refused"
                    ));
                }
                String::new()
            }
            _ => ready_detail.clone(),
        };
        if !said.is_empty() && !said.to_lowercase().contains(cause) {
            broken.push(format!(
                "{phase}: the cause ({cause}) was not named: {said}"
            ));
        }
        if !ready_after {
            broken.push(format!(
                "{phase}: not ready {} s after the fault was gone",
                RECOVERY_MAX.as_secs()
            ));
        }
        if acked_after == 0 {
            broken.push(format!("{phase}: no event was acknowledged after recovery"));
        }
        phases.push(json!({
            "phase": phase,
            "answers_during": during,
            "events_acknowledged_during": acked_during,
            "readyz_during": {"status": ready_status, "detail": ready_detail},
            "restart_on_faulty_disk": restarted.map(|r| r.err().unwrap_or_else(|| "started".into())),
            "recovery_ms": recovery_ms,
            "events_acknowledged_after": acked_after,
        }));
    }
    drop(server);

    // The database, read directly.
    let store = Store::open(&database)?;
    let stored = stored(&store)?.counts;
    let seen = seen.lock().expect("seen");
    let acked: &HashSet<String> = &seen.acked;
    let (lost, duplicated, chains_broken) = promises(&store, acked, &stored)?;
    broken.extend(chains_broken.iter().cloned());
    broken.extend(seen.faults.iter().take(10).cloned());
    let kept = lost == 0 && duplicated == 0 && broken.is_empty();
    let figures = json!({
        "phases": phases,
        "events_acknowledged": acked.len(),
        "events_stored": stored.len(),
        "events_lost": lost,
        "events_duplicated": duplicated,
        "unexpected_answers": seen.faults.len(),
        "broken": broken,
        "promises_kept": kept,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>12} {:>10}  READYZ DURING",
            "PHASE", "2XX", "503", "ACKED", "RECOVERY MS", "ACKED AFTER"
        );
        for p in &phases {
            let n = |k: &str| p["answers_during"][k].as_u64().unwrap_or_default();
            println!(
                "{:<22} {:>8} {:>8} {:>8} {:>12.0} {:>10}  {} {}",
                p["phase"].as_str().unwrap_or_default(),
                n("ok"),
                n("unavailable"),
                p["events_acknowledged_during"],
                p["recovery_ms"].as_f64().unwrap_or_default(),
                p["events_acknowledged_after"],
                p["readyz_during"]["status"],
                p["readyz_during"]["detail"].as_str().unwrap_or_default(),
            );
            if let Some(r) = p["restart_on_faulty_disk"].as_str() {
                println!("  restarted on the faulty disk: {r}");
            }
        }
        println!(
            "acknowledged {}, stored {}, lost {lost}, duplicated {duplicated}",
            acked.len(),
            stored.len()
        );
        for b in &broken {
            println!("  broken: {b}");
        }
    }
    Ok(if kept {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The fault suite's clients for `for_`, then how the server answered.
async fn load(
    url: &str,
    key: &str,
    phase: &str,
    seed: u64,
    seen: &Arc<Mutex<Seen>>,
    for_: Duration,
) -> Value {
    let stop = Arc::new(AtomicBool::new(false));
    let before = seen.lock().expect("seen").answers.clone();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (url, key, seen, stop) = (url.to_owned(), key.to_owned(), seen.clone(), stop.clone());
        let tag = format!("{phase}-{seed}-c{c}");
        tasks.push(tokio::spawn(async move {
            drive(&url, &key, &tag, seed * 31 + c as u64, &seen, &stop).await
        }));
    }
    tokio::time::sleep(for_).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let after = seen.lock().expect("seen").answers.clone();
    let delta = |k: &str| after.get(k).unwrap_or(&0) - before.get(k).unwrap_or(&0);
    json!({"ok": delta("ok"), "unavailable": delta("unavailable")})
}

/// Sends one event right after `/readyz` said ready; true when it was
/// acknowledged (and so counted among the events that must be stored).
async fn one_event(url: &str, key: &str, phase: &str, seen: &Mutex<Seen>) -> bool {
    let id = format!("fault-after-ready-{phase}");
    let answer = reqwest::Client::new()
        .post(format!("{url}/v1/events"))
        .bearer_auth(key)
        .json(&super::faults::event(&id, 0))
        .send()
        .await;
    let acked = answer.is_ok_and(|a| a.status().is_success());
    if acked {
        seen.lock().expect("seen").acked.insert(id);
    }
    acked
}

/// `/readyz`'s status and detail.
async fn readyz(url: &str) -> (u16, String) {
    match reqwest::get(format!("{url}/readyz")).await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let detail = body["detail"]
                .as_str()
                .or(body["status"].as_str())
                .unwrap_or_default()
                .to_owned();
            (status, detail)
        }
        Err(e) => (0, format!("no answer: {e}")),
    }
}

/// Waits, polling, until `/readyz` says ready; false after [`RECOVERY_MAX`].
async fn until_ready(url: &str) -> bool {
    let deadline = Instant::now() + RECOVERY_MAX;
    while Instant::now() < deadline {
        if readyz(url).await.0 == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
