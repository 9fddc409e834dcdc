//! `payoff completions SHELL` and `payoff man --output DIR`: the command
//! line described for shells and for `man`, generated from the same clap
//! tree that parses it, so they never fall behind it. Neither reads
//! settings nor touches a data directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use clap_complete::Shell;

use crate::BadInput;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: String,
}

#[derive(Args)]
pub struct ManArgs {
    /// The folder to write the pages into (created if need be):
    /// `payoff.1`, `payoff-contract-push.1`, …
    #[arg(long)]
    output: PathBuf,
}

/// Writes the completion script of the shell named to standard output.
pub fn completions(mut cli: clap::Command, args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    // Parsed here rather than by clap, whose refusal takes several lines.
    let Ok(shell) = Shell::from_str(&args.shell, true) else {
        let known: Vec<String> = Shell::value_variants()
            .iter()
            .filter_map(|s| s.to_possible_value().map(|v| v.get_name().to_owned()))
            .collect();
        return Err(BadInput(format!(
            "completions: \"{}\" is not a shell; the shells are {}",
            args.shell,
            known.join(", ")
        ))
        .into());
    };
    let name = cli.get_name().to_owned();
    // Into memory first: the generator panics on a failed write (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, name, &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the completion script")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Writes one page per command and subcommand (hidden ones aside):
/// `payoff.1`, `payoff-keys.1`, `payoff-keys-create.1`, …
pub fn man(cli: clap::Command, args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.output)
        .map_err(|e| BadInput(format!("--output {}: {e}", args.output.display())))?;
    // Built once, so each subcommand knows its full name (`payoff-keys-create`).
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    let written = write_pages(&cli, &args.output)?;
    eprintln!("wrote {written} manual pages to {}", args.output.display());
    Ok(ExitCode::SUCCESS)
}

fn write_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<usize> {
    let page = clap_mangen::Man::new(cmd.clone())
        .source(format!("payoff {}", env!("CARGO_PKG_VERSION")))
        .manual("Payoff");
    let path = dir.join(page.get_filename());
    page.generate_to(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written += write_pages(sub, dir)?;
    }
    Ok(written)
}
