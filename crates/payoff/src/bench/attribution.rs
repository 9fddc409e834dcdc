//! `payoff bench attribution`: the lift and its interval over a million
//! subjects, and the economics of a month of ten million events.

use std::process::ExitCode;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use clap::Args;
use payoff_billing::{
    attribution::{assign, Arm},
    holdout_lines, Assignment, Contract, Mark, Outcome, Period, Projection,
};
use serde_json::json;

use super::close::{CloseArgs, BENCH_CUSTOMER, BENCH_PERIOD};
use crate::settings::Settings;

#[derive(Args)]
pub struct AttributionArgs {
    /// Subjects in the experiment.
    #[arg(long, default_value_t = 1_000_000)]
    subjects: u64,
    #[command(flatten)]
    ledger: CloseArgs,
}

const CONTRACT: &str = r#"
[contract]
customer = "bench"
currency = "USD"
starts = "2026-10-01"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed"'
attribution = { holdout = 0.1, confidence = 0.95, bill = "lower_bound", experiment = "support" }
price = { per_unit = "0.90" }
"#;

pub fn run(_settings: &Settings, args: AttributionArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are only meaningful from `cargo run --release`");
    }
    let contract = Contract::parse("bench.toml", CONTRACT).map_err(|e| anyhow::anyhow!("{e}"))?;
    let period = Period::parse(contract.cadence, "2026-10").map_err(anyhow::Error::msg)?;
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    // A million subjects split by the real assignment hash; the AI resolves
    // 62 % of its tickets, humans 55 % of theirs.
    let mut projection = Projection::default();
    for i in 0..args.subjects {
        let subject = format!("T-{i}");
        let arm = assign("bench/support", &subject, 0.1);
        let at = start + Duration::seconds(i as i64 % 2_000_000);
        let resolved = (i * 7919) % 100 < if arm == Arm::Ai { 62 } else { 55 };
        if resolved {
            projection.push_outcome(Outcome {
                id: format!("o{i}"),
                kind: 0,
                subject: subject.clone(),
                created: Mark {
                    sequence: i + 1,
                    event_id: format!("e{i}"),
                    time: at,
                },
                matures_at: at,
                value: None,
                value_error: None,
                void: None,
                disputes: Vec::new(),
            });
        }
        projection.assign(
            "support",
            &subject,
            Assignment {
                control: arm == Arm::Control,
                at,
            },
        );
    }
    let started = Instant::now();
    let lines = holdout_lines(&contract, &projection, period);
    let lift_ms = started.elapsed().as_secs_f64() * 1000.0;
    let figures = lines[0].attribution.as_ref().expect("a holdout line");

    // Economics of the bench ledger (closed first, untimed, if needed).
    let db = args.ledger.ledger()?;
    let store = payoff_store::Store::open(&db.display().to_string())?;
    if store
        .statement(&payoff_billing::statement_id(BENCH_CUSTOMER, BENCH_PERIOD))?
        .is_none()
    {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        payoff_accounting::billing::close(
            &store,
            &key,
            BENCH_CUSTOMER,
            BENCH_PERIOD,
            payoff_clock::wall(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let started = Instant::now();
    let economics = payoff_accounting::economics::economics(
        &store,
        BENCH_CUSTOMER,
        BENCH_PERIOD,
        payoff_clock::wall(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let economics_s = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "subjects": args.subjects, "lift_ms": lift_ms,
            "lift": {"estimate": figures.estimate, "low": figures.low, "high": figures.high, "billed": figures.billed_quantity},
            "economics_events": args.ledger.events_total(), "economics_seconds": economics_s,
            "model_calls": economics.cost.calls, "cost": economics.cost.total, "revenue": economics.revenue_total,
        })
    );
    Ok(ExitCode::SUCCESS)
}
