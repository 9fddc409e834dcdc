//! `payoff ledger verify`: recompute every chain from the stored bytes,
//! and with `--deep` every outcome of the read model from a replay.

use std::process::ExitCode;

use clap::Subcommand;

use crate::commands::open_store;
use crate::settings::Settings;

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Recompute every customer's hash chain; exit 1 naming the first broken link.
    Verify {
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
        /// Also compare every outcome of the read model with a replay of
        /// the ledger; exit 1 naming each outcome that differs.
        #[arg(long)]
        deep: bool,
    },
}

pub fn run(settings: &Settings, command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let LedgerCommand::Verify { json, deep } = command;
    let store = open_store(settings)?;
    let reports = store.verify()?;
    let mut broken = reports.iter().filter(|r| r.broken.is_some()).count();
    let mut mismatches = Vec::new();
    if deep {
        for r in &reports {
            for m in payoff_outcomes::verify::deep(&store, &r.customer)? {
                mismatches.push(serde_json::json!({
                    "customer": r.customer,
                    "contract_version": m.version,
                    "outcome": m.outcome,
                    "difference": m.what,
                }));
            }
        }
        broken += mismatches.len();
    }
    if json {
        let mut out = serde_json::to_value(&reports)?;
        if deep {
            out = serde_json::json!({ "chains": out, "outcome_mismatches": mismatches });
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for m in &mismatches {
            println!(
                "{}: outcome {} (contract v{}) differs from the replay: {}",
                m["customer"].as_str().unwrap_or_default(),
                m["outcome"].as_str().unwrap_or_default(),
                m["contract_version"],
                m["difference"].as_str().unwrap_or_default()
            );
        }
        if deep {
            println!(
                "read model compared with a replay: {} outcomes differ",
                mismatches.len()
            );
        }
        for r in &reports {
            match &r.broken {
                None => println!(
                    "{}: ok, {} events, head {}",
                    r.customer, r.events, r.head_hash
                ),
                Some(why) => println!("{}: BROKEN: {why}", r.customer),
            }
        }
        println!("{} chains verified, {} broken", reports.len(), broken);
    }
    Ok(if broken == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
