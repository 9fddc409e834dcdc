//! `payoff`: the command line of Payoff, a thin shell over the crates.
//!
//! Exit codes: 0 success, 1 failure (a check failed, a server is down),
//! 2 bad input (one readable line on standard error).

mod bench;
mod client;
mod commands;
mod demo;
mod settings;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use settings::GlobalArgs;

/// Closes and cost reports allocate on a reader thread and free on another;
/// glibc's malloc spent a third of a close's time on that (measured).
/// `--features system-allocator` leaves it out, so that heap profilers
/// that hook malloc (heaptrack, massif) see every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "payoff",
    version,
    about = "Outcome ledger and control plane for AI services: pay for results, not seats."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the data directory, the provider signing key and a first admin key.
    Init(commands::init::InitArgs),
    /// Run the HTTP API.
    Serve(commands::serve::ServeArgs),
    /// Manage customers.
    #[command(subcommand)]
    Customers(commands::customers::CustomersCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Rotate and list the provider's statement-signing keys.
    #[command(subcommand)]
    Signing(commands::signing::SigningCommand),
    /// Send or export events.
    #[command(subcommand)]
    Events(commands::events::EventsCommand),
    /// Check the ledger's hash chains.
    #[command(subcommand)]
    Ledger(commands::ledger::LedgerCommand),
    /// Rebuild the outcome read model from the ledger.
    Reindex(commands::reindex::ReindexArgs),
    /// Copy a SQLite data directory, consistent while the server runs.
    Backup(commands::backup::BackupArgs),
    /// Put a backup into a new data directory, and verify it.
    Restore(commands::backup::RestoreArgs),
    /// Check, store and simulate contracts.
    #[command(subcommand)]
    Contract(commands::billing::ContractCommand),
    /// Close, preview, show and export statements.
    #[command(subcommand)]
    Statement(commands::billing::StatementCommand),
    /// Verify a statement offline: signature, chain, recomputation.
    Verify {
        /// The statement JSON file.
        statement: std::path::PathBuf,
        /// The evidence bundle file.
        #[arg(long)]
        evidence: std::path::PathBuf,
        /// The provider's public key: 64 hex digits, a file holding them, or
        /// its keys document (`/.well-known/payoff/keys`) as a file or URL;
        /// from a document, the key that signed the statement is used.
        #[arg(long)]
        key: String,
        /// Print the verdict as JSON (the exit code is the same).
        #[arg(long)]
        json: bool,
    },
    /// Add documents to the knowledge base, or rebuild its index (through a server).
    #[command(subcommand)]
    Knowledge(commands::knowledge::KnowledgeCommand),
    /// Revenue, cost of service and gross margin of a customer's period.
    Economics(commands::economics::PeriodArgs),
    /// What a customer got for what it paid (JSON, or --csv).
    Roi(commands::economics::PeriodArgs),
    /// The model price table: import LiteLLM's price file, list versions.
    #[command(subcommand)]
    Prices(commands::prices::PricesCommand),
    /// The agents' kill switch.
    #[command(subcommand)]
    Agent(commands::agents::AgentCommand),
    /// Export and verify the audit chain.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Check, store and list customers' agent rules (Cedar).
    #[command(subcommand)]
    Policy(commands::policy::PolicyCommand),
    /// Measure throughput and latency (release builds).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run a demonstration: a server, a customer and a realistic stream of events.
    Demo(demo::DemoArgs),
    /// Write the completion script of a shell to standard output.
    Completions(commands::manual::CompletionsArgs),
    /// Write a manual page (roff) for payoff and for each of its commands.
    Man(commands::manual::ManArgs),
}

/// Bad input from the user: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Shorthand for returning bad input.
pub fn bad_input<T>(message: impl Into<String>) -> anyhow::Result<T> {
    Err(BadInput(message.into()).into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAYOFF_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr);
    // One JSON object per line for log shippers; text for people.
    if std::env::var("PAYOFF_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        // Descriptions of the command line itself: no settings, no data
        // directory, so they work before anything is set up.
        Command::Completions(args) => commands::manual::completions(Cli::command(), args),
        Command::Man(args) => commands::manual::man(Cli::command(), args),
        command => {
            settings::Settings::load(&cli.global).and_then(|settings| run(command, &settings))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) if e.is::<BadInput>() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command, settings: &settings::Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(args) => commands::init::run(settings, args),
        Command::Serve(args) => commands::serve::run(settings, args),
        Command::Customers(c) => commands::customers::run(settings, c),
        Command::Keys(c) => commands::keys::run(settings, c),
        Command::Events(c) => commands::events::run(settings, c),
        Command::Ledger(c) => commands::ledger::run(settings, c),
        Command::Reindex(args) => commands::reindex::run(settings, args),
        Command::Signing(command) => commands::signing::run(settings, command),
        Command::Backup(args) => commands::backup::backup(settings, args),
        Command::Restore(args) => commands::backup::restore(settings, args),
        Command::Contract(c) => commands::billing::contract(settings, c),
        Command::Statement(c) => commands::billing::statement(settings, c),
        Command::Verify {
            statement,
            evidence,
            key,
            json,
        } => commands::billing::verify_statement(&statement, &evidence, &key, json),
        Command::Knowledge(c) => commands::knowledge::run(settings, c),
        Command::Economics(args) => commands::economics::economics(settings, args),
        Command::Roi(args) => commands::economics::roi(settings, args),
        Command::Prices(c) => commands::prices::run(settings, c),
        Command::Agent(c) => commands::agents::run(settings, c),
        Command::Audit(c) => commands::audit::run(settings, c),
        Command::Policy(c) => commands::policy::run(settings, c),
        Command::Bench(c) => bench::run(settings, c),
        Command::Demo(args) => demo::run(settings, args),
        Command::Completions(_) | Command::Man(_) => {
            unreachable!("answered in main, before the settings are read")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commands that print no data of their own, so no `--json`: each
    /// with the reason.
    const NO_DATA: &[&str] = &[
        // Runs until stopped; its one line says where it listens.
        "serve",
        // A story told to a person; its data is in the files it writes
        // (statement, evidence, logins.json) and in its database.
        "demo",
        // Write JSON Lines already, one record per line.
        "events export",
        "audit export",
        // Describe the command line: a script, and files.
        "completions",
        "man",
    ];

    /// Every command of the tree with its path (`keys list`), root first.
    fn commands() -> Vec<(String, clap::Command)> {
        fn walk(path: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            out.push((path.to_owned(), cmd.clone()));
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let path = format!("{path} {}", sub.get_name()).trim().to_owned();
                walk(&path, sub, out);
            }
        }
        let mut out = Vec::new();
        walk("", &Cli::command(), &mut out);
        out
    }

    #[test]
    fn the_command_tree_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_and_argument_has_help() {
        let mut missing = Vec::new();
        for (path, cmd) in commands() {
            if cmd
                .get_about()
                .is_none_or(|a| a.to_string().trim().is_empty())
                && !path.is_empty()
            {
                missing.push(format!("payoff {path} (the command itself)"));
            }
            for arg in cmd.get_arguments() {
                if matches!(arg.get_id().as_str(), "help" | "version") {
                    continue;
                }
                let help = arg.get_help().or(arg.get_long_help());
                if help.is_none_or(|h| h.to_string().trim().is_empty()) {
                    let name = arg.get_long().map_or_else(
                        || format!("<{}>", arg.get_id().as_str().to_uppercase()),
                        |l| format!("--{l}"),
                    );
                    missing.push(format!("payoff {path} {name}").replace("  ", " "));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "without help text:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn every_command_that_prints_data_takes_json() {
        let leaves: Vec<(String, clap::Command)> = commands()
            .into_iter()
            .filter(|(path, cmd)| !path.is_empty() && !cmd.has_subcommands())
            .collect();
        for exempt in NO_DATA {
            assert!(
                leaves.iter().any(|(path, _)| path == exempt),
                "NO_DATA names \"{exempt}\", which is not a command"
            );
        }
        let without: Vec<&str> = leaves
            .iter()
            .filter(|(path, _)| !NO_DATA.contains(&path.as_str()))
            .filter(|(_, cmd)| !cmd.get_arguments().any(|a| a.get_long() == Some("json")))
            .map(|(path, _)| path.as_str())
            .collect();
        assert!(
            without.is_empty(),
            "these commands print data but take no --json: {without:?}"
        );
    }
}
