//! `payoff audit export|verify`: the audit chain as JSON Lines, and its
//! recomputation (from the database or from an export).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use payoff_store::{AuditFilter, AuditReport};

use crate::commands::open_store;
use crate::settings::Settings;
use crate::BadInput;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write audit records as JSON Lines, oldest first (stdout by default).
    /// An export of every record (no --customer) can be verified offline.
    Export {
        /// Only this customer's records (such an export cannot be verified alone).
        #[arg(long)]
        customer: Option<String>,
        /// Output file [default: standard output]
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Recompute the audit chain; exit 1 naming the first broken record.
    Verify {
        /// An unfiltered export to check instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

const PAGE: usize = 1000;

pub fn run(settings: &Settings, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Export { customer, output } => {
            let store = open_store(settings)?;
            let mut out: Box<dyn Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .map_err(|e| BadInput(format!("--output {}: {e}", path.display())))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut after = None;
            let mut written = 0u64;
            loop {
                let page = store.audit(&AuditFilter {
                    customer: customer.clone(),
                    after_sequence: after,
                    limit: PAGE,
                    ..Default::default()
                })?;
                for record in &page {
                    writeln!(out, "{}", record.to_json())?;
                }
                written += page.len() as u64;
                match page.last() {
                    Some(last) if page.len() == PAGE => after = Some(last.sequence),
                    _ => break,
                }
            }
            out.flush()?;
            if output.is_some() {
                eprintln!("{written} audit records written");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { file, json } => {
            let report = match &file {
                None => open_store(settings)?.verify_audit()?,
                Some(path) => {
                    let f = std::fs::File::open(path)
                        .map_err(|e| BadInput(format!("--file {}: {e}", path.display())))?;
                    let lines: Vec<Result<serde_json::Value, String>> = std::io::BufReader::new(f)
                        .lines()
                        .enumerate()
                        .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
                        .map(|(i, l)| {
                            l.map_err(|e| e.to_string()).and_then(|l| {
                                serde_json::from_str(&l)
                                    .map_err(|e| format!("line {} is not JSON: {e}", i + 1))
                            })
                        })
                        .collect();
                    payoff_store::audit::verify_audit(lines)
                }
            };
            print_report(&report, json)?;
            Ok(if report.broken.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn print_report(report: &AuditReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    match &report.broken {
        None => println!(
            "audit chain ok: {} records, head {}",
            report.records, report.head_hash
        ),
        Some(why) => println!(
            "audit chain BROKEN after {} good records: {why}",
            report.records
        ),
    }
    Ok(())
}
