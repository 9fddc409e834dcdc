//! `payoff bench close`: closes one month of a large ledger.
//!
//! The ledger (by default 10,000,000 events of 1,000,000 support tickets,
//! each ticket resolved once by the AI) is written once into a SQLite
//! database under `--dir` and reused by later runs. The close itself runs
//! in a child process, so that its time and peak memory are its own. From
//! the read model it is the whole close an operator runs (computed,
//! signed, stored with the period's outcomes), on a copy of the database
//! made outside the measure, so the next run closes the period again;
//! from a replay it is the statement computed, signed and encoded (the
//! independent check, which a close never takes).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context;
use chrono::{Duration, TimeZone, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use payoff_ledger::{validate_event, EventLimits};
use payoff_store::{AppendRequest, LedgerConfig, Routed, Store};
use serde_json::json;

use crate::bad_input;
use crate::settings::Settings;

#[derive(Args, Clone)]
pub struct CloseArgs {
    /// Events in the ledger.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Tickets; each is resolved once, so each makes one outcome.
    #[arg(long, default_value_t = 1_000_000)]
    outcomes: u64,
    /// Where the generated ledger is kept between runs.
    #[arg(long, default_value = "payoff-bench-close")]
    dir: PathBuf,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// Where the close takes its outcomes from: the read model (built
    /// first, and kept in `--dir` for later runs) or a replay of the ledger.
    #[arg(long, value_enum, default_value_t = From::Model)]
    from: From,
    /// Internal: the measured close, run in a child process.
    #[arg(long, hide = true)]
    child: bool,
}

/// `payoff bench close`: the ledger, and which of its periods is measured.
#[derive(Args, Clone)]
pub struct CloseCommand {
    #[command(flatten)]
    ledger: CloseArgs,
    /// The period measured: `2026-10` (the month the ledger's tickets
    /// mature in), or `2026-11`, a month after it: October is then closed
    /// first, outside the measure, so the measured close shows what
    /// re-pricing a large closed month costs the next one.
    #[arg(long, default_value = PERIOD)]
    period: String,
}

/// Where a measured close takes its outcomes from.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    Model,
    Replay,
}

impl CloseArgs {
    /// The bench ledger's database, written first if it is not there yet.
    pub(super) fn ledger(&self) -> anyhow::Result<PathBuf> {
        let db = self.dir.join("bench.sqlite");
        if !marker(&self.dir, self).exists() {
            populate(&db, self)?;
        }
        Ok(db)
    }
}

impl CloseArgs {
    pub(super) fn events_total(&self) -> u64 {
        self.events
    }
}

pub(super) const BENCH_CUSTOMER: &str = CUSTOMER;
pub(super) const BENCH_PERIOD: &str = PERIOD;

const CUSTOMER: &str = "bench";
const PERIOD: &str = "2026-10";
/// The month after the ledger's: nothing matures in it, so its close is
/// the re-pricing of October.
const NEXT_PERIOD: &str = "2026-11";

/// Graduated tiers, so that pricing does real work.
const CONTRACT: &str = r#"
[contract]
customer = "bench"
currency = "USD"
period = "monthly"
starts = "2026-10-01"
base_fee = "5000.00"
cap = "900000.00"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
void_when = 'event.type == "ticket.reopened"'
matures_after = "72h"
price = { tiers = [ { up_to = 100000, price = "0.90" }, { up_to = 500000, price = "0.70" }, { price = "0.50" } ], mode = "graduated" }
"#;

fn marker(dir: &Path, args: &CloseArgs) -> PathBuf {
    dir.join(format!("ready-v4-{}-{}", args.events, args.outcomes))
}

pub fn run(_settings: &Settings, command: CloseCommand) -> anyhow::Result<ExitCode> {
    let CloseCommand {
        ledger: args,
        period,
    } = command;
    if args.outcomes == 0 || args.events < args.outcomes * 2 {
        return bad_input(
            "--events must be at least twice --outcomes (a ticket is created, then closed)",
        );
    }
    if period != PERIOD && period != NEXT_PERIOD {
        return bad_input(format!(
            "--period: {period:?} is not measured here: the bench ledger has {PERIOD} and {NEXT_PERIOD}"
        ));
    }
    let db = args.dir.join("bench.sqlite");
    if args.child {
        return measured_close(&db, &args, &period);
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are only meaningful from `cargo run --release`");
    }
    args.ledger()?;
    if args.from == From::Model {
        build_model(&db)?;
    }
    if period == NEXT_PERIOD {
        close_first_month(&db)?;
    }
    if args.from == From::Model {
        copy_database(&db, &measured_copy(&args.dir))?;
    }
    let exe = std::env::current_exe()?;
    let from = match args.from {
        From::Model => "model",
        From::Replay => "replay",
    };
    let child = Command::new(exe)
        .args(["bench", "close", "--child", "--json", "--from", from])
        .arg("--events")
        .arg(args.events.to_string())
        .arg("--outcomes")
        .arg(args.outcomes.to_string())
        .arg("--dir")
        .arg(&args.dir)
        .arg("--period")
        .arg(&period)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the measured close")?;
    if !child.status.success() {
        anyhow::bail!("the measured close failed ({})", child.status);
    }
    let report: serde_json::Value = serde_json::from_slice(&child.stdout)?;
    if args.json {
        println!("{report}");
    } else {
        println!(
            "closed {period} from the {} over {} events ({} outcomes billed) in {:.2} s: {:.0} events/s, peak memory {:.0} MB; total {}",
            report["outcomes_from"].as_str().unwrap_or(""),
            report["events"], report["outcomes_billed"], report["seconds"].as_f64().unwrap_or(0.0),
            report["events_per_second"].as_f64().unwrap_or(0.0), report["peak_rss_mb"].as_f64().unwrap_or(0.0),
            report["total"].as_str().unwrap_or("")
        );
        match args.from {
            From::Model => println!(
                "  computed, signed and stored ({} bytes) with the period's outcomes, in a copy of the bench database",
                report["statement_bytes"]
            ),
            From::Replay => println!(
                "  of which computing the statement {:.2} s (peak memory {:.0} MB), signing and encoding its {} bytes the rest (nothing stored)",
                report["compute_seconds"].as_f64().unwrap_or(0.0),
                report["compute_peak_rss_mb"].as_f64().unwrap_or(0.0),
                report["statement_bytes"]
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the ledger through the group-commit writer, as ingest would.
fn populate(db: &Path, args: &CloseArgs) -> anyhow::Result<()> {
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let store = Store::open(&db.display().to_string())?;
    store.create_customer(CUSTOMER, "Bench Co.", payoff_clock::wall())?;
    payoff_accounting::billing::upload_contract(
        &store,
        CUSTOMER,
        CONTRACT,
        None,
        payoff_clock::wall(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ledger = store.ledger(LedgerConfig::default())?;
    let limits = EventLimits::default();
    let tickets = args.outcomes;
    let per_ticket = args.events / tickets;
    let extra = args.events - per_ticket * tickets;
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    // Tickets open over the first 27 days so that all mature in October.
    let spacing_ms = (27 * 24 * 3_600_000) / tickets as i64;
    let progress = ProgressBar::new(args.events);
    progress.set_style(
        ProgressStyle::with_template("writing the ledger {bar:40} {pos}/{len} {per_sec}")
            .expect("template"),
    );
    let mut batch = Vec::with_capacity(10_000);
    let mut written = 0u64;
    for t in 0..tickets {
        let opened = start + Duration::milliseconds(t as i64 * spacing_ms);
        let n = per_ticket + u64::from(t < extra);
        for k in 0..n {
            let (kind, data) = if k == 0 {
                (
                    "ticket.created",
                    json!({"channel": "email", "text": "My order has not arrived yet, can you check?"}),
                )
            } else if k + 1 == n {
                ("ticket.closed", json!({"resolved_by": "ai"}))
            } else if k % 2 == 1 {
                // The agent's replies: each one a metered model call.
                (
                    "llm.call",
                    json!({"model": "gpt-4o-mini", "input_tokens": 900 + k, "output_tokens": 150,
                           "latency_ms": 800, "agent": "support"}),
                )
            } else {
                (
                    "ticket.message",
                    json!({"from": "customer", "words": 40 + k}),
                )
            };
            let event = json!({
                "specversion": "1.0", "id": format!("{t}-{k}"), "source": "helpdesk", "type": kind,
                "subject": format!("T-{t}"), "time": (opened + Duration::minutes(k as i64 * 7)).to_rfc3339(),
                "data": data,
            });
            let event = validate_event(event, &limits).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            batch.push(Routed {
                customer: CUSTOMER.into(),
                event,
            });
            if batch.len() == 10_000 {
                written += batch.len() as u64;
                append(&ledger, std::mem::take(&mut batch))?;
                progress.set_position(written);
            }
        }
    }
    if !batch.is_empty() {
        append(&ledger, batch)?;
    }
    progress.finish_and_clear();
    std::fs::write(marker(&args.dir, args), b"")?;
    Ok(())
}

fn append(ledger: &payoff_store::Ledger, events: Vec<Routed>) -> anyhow::Result<()> {
    ledger
        .append_blocking(AppendRequest::new(events))?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Folds the ledger into the read model (once: the model stays in the
/// bench database), outside the measured close.
fn build_model(db: &Path) -> anyhow::Result<()> {
    let store = Store::open(&db.display().to_string())?;
    let started = Instant::now();
    let progress = ProgressBar::new(0);
    progress.set_style(ProgressStyle::with_template(
        "building the read model {bar:40} {pos}/{len} events",
    )?);
    payoff_outcomes::catch_up(&store, CUSTOMER, &mut |p| {
        progress.set_length(p.head);
        progress.set_position(p.applied);
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    progress.finish_and_clear();
    if started.elapsed().as_secs() > 1 {
        eprintln!(
            "read model built in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Closes October (stored and signed, as an operator would) unless it is
/// closed already, outside the measured close of November.
fn close_first_month(db: &Path) -> anyhow::Result<()> {
    let store = Store::open(&db.display().to_string())?;
    let started = Instant::now();
    let closed = close_period(&store, PERIOD)?;
    if closed.created {
        eprintln!(
            "closed {PERIOD} first in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Closes a period of the bench customer as an operator would: signed
/// and stored.
fn close_period(store: &Store, period: &str) -> anyhow::Result<payoff_accounting::billing::Closed> {
    payoff_accounting::billing::close(
        store,
        &signing_key(),
        CUSTOMER,
        period,
        payoff_clock::wall(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The bench's signing key: fixed, so that runs sign alike.
fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[3; 32])
}

/// Where a measured close from the model stores its statement: a copy of
/// the bench database, made again before each run.
fn measured_copy(dir: &Path) -> PathBuf {
    dir.join("measured.sqlite")
}

/// Copies a SQLite database no process has open, with its write-ahead log.
fn copy_database(from: &Path, to: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let (from, to) = (
            PathBuf::from(format!("{}{suffix}", from.display())),
            PathBuf::from(format!("{}{suffix}", to.display())),
        );
        if to.exists() {
            std::fs::remove_file(&to)?;
        }
        if suffix != "-shm" && from.exists() {
            std::fs::copy(&from, &to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
            // On disk before the measure starts, so that the close does not
            // share the disk with the copy's write-back.
            std::fs::File::open(&to)?.sync_all()?;
        }
    }
    Ok(())
}

/// One measured close.
struct Measured {
    seconds: f64,
    /// The statement computed, before it is signed (a replay only: a
    /// close computes and stores in one call).
    computed: Option<(f64, f64)>,
    peak_mb: f64,
    statement: payoff_billing::Statement,
    bytes: usize,
    from: &'static str,
}

fn measured_close(db: &Path, args: &CloseArgs, period: &str) -> anyhow::Result<ExitCode> {
    let m = match args.from {
        From::Model => close_from_model(&measured_copy(&args.dir), period)?,
        From::Replay => compute_from_replay(db, period)?,
    };
    let billed: usize = m
        .statement
        .lines
        .iter()
        .filter(|l| l.outcome.is_some())
        .map(|l| l.outcomes.len())
        .sum();
    let (compute_seconds, compute_peak) = m.computed.unwrap_or((m.seconds, m.peak_mb));
    println!(
        "{}",
        json!({
            "events": args.events, "outcomes_billed": billed, "seconds": m.seconds,
            "events_per_second": args.events as f64 / m.seconds,
            "peak_rss_mb": m.peak_mb, "compute_peak_rss_mb": compute_peak,
            "total": m.statement.total, "statement_bytes": m.bytes, "compute_seconds": compute_seconds,
            "outcomes_from": m.from,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// The close an operator runs: computed, signed and stored with the
/// period's outcomes, in the copy made for this run.
fn close_from_model(copy: &Path, period: &str) -> anyhow::Result<Measured> {
    let store = Store::open(&copy.display().to_string())?;
    let started = Instant::now();
    // Whether the model can stand in is decided inside the close; ask the
    // same question to report which way it went.
    let from = match payoff_outcomes::Kept::pin(&store, CUSTOMER)? {
        Some(_) => "read model",
        None => "ledger (the read model could not stand in)",
    };
    let closed = close_period(&store, period)?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_mb = super::peak_rss_mb(std::process::id());
    anyhow::ensure!(closed.created, "{period} was closed already in the copy");
    Ok(Measured {
        seconds,
        computed: None,
        peak_mb,
        bytes: closed.stored.body.len(),
        statement: closed.statement().map_err(|e| anyhow::anyhow!("{e}"))?,
        from,
    })
}

/// The statement computed from a replay of the ledger, signed and encoded
/// as a close stores it (the independent check; nothing is stored).
fn compute_from_replay(db: &Path, period: &str) -> anyhow::Result<Measured> {
    let store = Store::open(&db.display().to_string())?;
    let started = Instant::now();
    let mut statement = payoff_accounting::billing::recompute(
        &store,
        CUSTOMER,
        period,
        payoff_clock::wall(),
        payoff_accounting::billing::Outcomes::Replayed,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let computed = (
        started.elapsed().as_secs_f64(),
        super::peak_rss_mb(std::process::id()),
    );
    let bytes = payoff_billing::sign(&mut statement, &signing_key())?.len();
    Ok(Measured {
        seconds: started.elapsed().as_secs_f64(),
        computed: Some(computed),
        peak_mb: super::peak_rss_mb(std::process::id()),
        statement,
        bytes,
        from: "ledger",
    })
}
