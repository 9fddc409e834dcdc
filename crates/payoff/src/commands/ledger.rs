//! `payoff ledger verify`: recompute every chain from the stored bytes.

use std::process::ExitCode;

use clap::Subcommand;

use crate::commands::open_store;
use crate::settings::Settings;

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Recompute every customer's hash chain; exit 1 naming the first broken link.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: LedgerCommand) -> anyhow::Result<ExitCode> {
    let LedgerCommand::Verify { json } = command;
    let store = open_store(settings)?;
    let reports = store.verify()?;
    let broken = reports.iter().filter(|r| r.broken.is_some()).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
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
