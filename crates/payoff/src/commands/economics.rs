//! `payoff economics` and `payoff roi`: a period's cost, margin and the
//! customer's return, read from the configured database.

use std::process::ExitCode;

use clap::Args;
use payoff_accounting::economics;

use crate::commands::open_store;
use crate::settings::Settings;
use crate::BadInput;

#[derive(Args)]
pub struct PeriodArgs {
    /// The customer.
    #[arg(long)]
    customer: String,
    /// The period, e.g. 2026-10.
    #[arg(long)]
    period: String,
    /// Print JSON (what roi prints unless --csv).
    #[arg(long)]
    json: bool,
    /// CSV instead of a table (roi only).
    #[arg(long)]
    csv: bool,
}

fn shell_error(e: payoff_accounting::billing::BillingError) -> anyhow::Error {
    match e {
        payoff_accounting::billing::BillingError::Store(s) => crate::commands::user_error(s),
        payoff_accounting::billing::BillingError::Corrupt(_) => e.into(),
        other => BadInput(other.to_string()).into(),
    }
}

pub fn economics(settings: &Settings, args: PeriodArgs) -> anyhow::Result<ExitCode> {
    if args.csv {
        return crate::bad_input(
            "--csv: economics has no CSV form (its parts have different columns); use --json",
        );
    }
    let store = open_store(settings)?;
    let e = economics::economics(&store, &args.customer, &args.period, settings.clock.now())
        .map_err(shell_error)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {} ({} statement), {}",
        e.customer, e.period, e.statement, e.currency
    );
    println!("revenue {:>14}", e.revenue_total);
    for l in &e.revenue {
        println!("  {:<16} {:<48} {:>12}", l.kind, l.description, l.amount);
    }
    println!(
        "cost    {:>14} USD ({} model calls)",
        e.cost.total, e.cost.calls
    );
    for (model, c) in &e.cost.by_model {
        println!("  model    {model:<40} {c:>14}");
    }
    for (category, c) in &e.cost.by_category {
        println!("  category {category:<40} {c:>14}");
    }
    for (kind, c) in &e.cost.by_outcome {
        println!(
            "  outcome  {kind:<40} {:>14} for {} outcomes, {} each",
            c.cost, c.outcomes, c.per_outcome
        );
    }
    println!(
        "  subjects without an outcome {:>27}",
        e.cost.without_outcome
    );
    println!(
        "gross margin {} ({}%)",
        e.gross_margin,
        e.gross_margin_percent
            .map(|p| p.to_string())
            .unwrap_or_else(|| "n/a".into())
    );
    for w in &e.cost.warnings {
        println!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn roi(settings: &Settings, args: PeriodArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    let r = economics::roi(&store, &args.customer, &args.period, settings.clock.now())
        .map_err(shell_error)?;
    if args.csv {
        print!("{}", r.csv());
    } else {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(ExitCode::SUCCESS)
}
