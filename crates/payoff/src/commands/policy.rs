//! `payoff policy check|push|list`: a customer's agent rules (Cedar).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use payoff_policy::AgentRules;

use crate::commands::{audit_local, open_store, read_text, user_error};
use crate::settings::Settings;
use crate::BadInput;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check rules against the schema and the built-in rules, offline;
    /// exit 2 with every error as FILE:LINE:COLUMN.
    Check {
        /// The rules (Cedar).
        file: PathBuf,
        /// Print the ids of the rules as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store the rules as the customer's next version (checked first).
    Push {
        /// The rules (Cedar).
        file: PathBuf,
        /// The customer whose rules they are.
        #[arg(long)]
        customer: String,
        /// Print the stored version (with its text) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A customer's rule versions; --show prints the one in force.
    List {
        /// The customer.
        #[arg(long)]
        customer: String,
        /// Also print the text of the version in force.
        #[arg(long)]
        show: bool,
        /// Print the versions (with their text) as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: PolicyCommand) -> anyhow::Result<ExitCode> {
    let builtin = AgentRules::builtin(&settings.support.rule)
        .map_err(|e| BadInput(format!("support: {e}")))?;
    match command {
        PolicyCommand::Check { file, json } => {
            let ids = checked(&builtin, &file, "customer")?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "file": file.display().to_string(), "policies": ids })
                );
            } else {
                println!(
                    "{}: ok, {} policies: {}",
                    file.display(),
                    ids.len(),
                    ids.join(", ")
                );
            }
        }
        PolicyCommand::Push {
            file,
            customer,
            json,
        } => {
            checked(&builtin, &file, &customer)?;
            let text = read_text(&file)?;
            let store = open_store(settings)?;
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let stored = store
                .add_policy(
                    &customer,
                    &text,
                    &format!("cli:{user}"),
                    settings.clock.now(),
                )
                .map_err(user_error)?;
            audit_local(
                &store,
                settings.clock.now(),
                Some(&customer),
                "push_policies",
                &format!("policies/{customer}/v{}", stored.version),
                &format!("sha256 {}", stored.sha256),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stored)?);
            } else {
                println!(
                    "stored agent rules version {} for {customer}, sha256 {}",
                    stored.version, stored.sha256
                );
            }
        }
        PolicyCommand::List {
            customer,
            show,
            json,
        } => {
            let store = open_store(settings)?;
            let versions = store.policies(&customer)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
                return Ok(ExitCode::SUCCESS);
            }
            if versions.is_empty() {
                println!("{customer}: no rules of its own; the built-in rules decide");
            }
            for v in &versions {
                println!(
                    "v{}  {}  {}  sha256 {}",
                    v.version,
                    v.uploaded_at.to_rfc3339(),
                    v.uploaded_by,
                    v.sha256
                );
            }
            if show {
                match versions.last() {
                    Some(v) => println!("\n{}", v.body),
                    None => println!("\n{}", builtin.text()),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The ids of the rules in `file`, or every problem as `file:line:column`.
fn checked(builtin: &AgentRules, file: &Path, label: &str) -> anyhow::Result<Vec<String>> {
    let text = read_text(file)?;
    match builtin.with_customer(label, &text) {
        Ok(rules) => Ok(rules.customer_policy_ids()),
        Err(errors) => {
            let lines: Vec<String> = errors
                .problems
                .iter()
                .map(|p| format!("{}:{}:{}: {}", file.display(), p.line, p.column, p.message))
                .collect();
            Err(BadInput(lines.join("\n")).into())
        }
    }
}
