//! `payoff reindex`: rebuild the outcome read model from the ledger.

use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::commands::open_store;
use crate::settings::Settings;

#[derive(Args)]
pub struct ReindexArgs {
    /// Only this customer (default: every customer).
    #[arg(long)]
    customer: Option<String>,
    /// Print what was rebuilt as JSON instead of a progress bar.
    #[arg(long)]
    json: bool,
}

/// Forgets the read model and folds the ledger into it again. Each batch
/// commits with its checkpoint, so an interrupted rebuild is consistent
/// and the server (or the next run) continues it.
pub fn run(settings: &Settings, args: ReindexArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    let customers: Vec<String> = match args.customer {
        Some(c) => {
            if store.customer(&c)?.is_none() {
                return crate::bad_input(format!("--customer: no customer \"{c}\""));
            }
            vec![c]
        }
        None => store.customers()?.into_iter().map(|c| c.id).collect(),
    };
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec}, {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut report = Vec::new();
    for customer in &customers {
        let mut last = (0, 0);
        payoff_outcomes::rebuild(&store, customer, None, &mut |p| {
            bar.set_message(format!("{customer} v{}", p.version));
            bar.set_length(p.head);
            bar.set_position(p.applied);
            last = (p.applied, p.head);
        })?;
        report.push(serde_json::json!({ "customer": customer, "events": last.1 }));
    }
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "outcome read model rebuilt for {} customers",
            customers.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
