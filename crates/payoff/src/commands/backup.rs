//! `payoff backup` and `payoff restore`: a SQLite data directory copied
//! whole and consistent while the server goes on writing, and put back.
//!
//! A backup is a folder: `payoff.db` (SQLite's `VACUUM INTO`, one read
//! transaction, so every chain in it ends at a committed head),
//! `signing-key.pem` (statements closed after a restore are signed by the
//! same key), `secrets.key` (it seals the webhook secrets in the database),
//! and `manifest.json` (when, and each customer's head). The
//! knowledge index is not copied: a restored server builds it from the
//! documents' change log. PostgreSQL has its own tools (`pg_dump`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::commands::{open_store, private_dir};
use crate::settings::Settings;
use crate::{bad_input, BadInput};

const DATABASE: &str = "payoff.db";
const SIGNING_KEY: &str = "signing-key.pem";
const MANIFEST: &str = "manifest.json";
/// Seals webhook secrets: without it a restored server cannot sign.
const SECRETS_KEY: &str = "secrets.key";

#[derive(Args)]
pub struct BackupArgs {
    /// A new folder to write the backup to.
    #[arg(long)]
    output: PathBuf,
    /// Print what was copied (each customer's head) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A folder written by `payoff backup`.
    from: PathBuf,
    /// Print what was restored (each customer's head) as JSON.
    #[arg(long)]
    json: bool,
}

pub fn backup(settings: &Settings, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    if args.output.exists() {
        return bad_input(format!(
            "--output: {} exists; a backup goes to a new folder",
            args.output.display()
        ));
    }
    private_dir(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let database = args.output.join(DATABASE);
    match store.backup(&database) {
        None => {
            std::fs::remove_dir(&args.output).ok();
            return bad_input(
                "the database is PostgreSQL: back it up with `pg_dump --format=custom` (and keep signing-key.pem from the data directory); see the README",
            );
        }
        Some(copied) => copied.context("cannot copy the database")?,
    }
    owner_only(&database)?;
    copy_private(&settings.signing_key_path(), &args.output.join(SIGNING_KEY))?;
    if settings.secrets_key_path().exists() {
        copy_private(&settings.secrets_key_path(), &args.output.join(SECRETS_KEY))?;
    }
    // The heads as the copy holds them, read from the copy itself.
    let copy = payoff_store::Store::open(&database.display().to_string())?;
    let heads = heads(&copy)?;
    let events: u64 = heads
        .iter()
        .map(|h| h["sequence"].as_u64().unwrap_or(0))
        .sum();
    let manifest = json!({
        "created_at": payoff_clock::wall().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "payoff": env!("CARGO_PKG_VERSION"),
        "heads": heads,
    });
    std::fs::write(
        args.output.join(MANIFEST),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    if args.json {
        let report = json!({
            "output": args.output.display().to_string(),
            "customers": heads.len(),
            "events": events,
            "heads": heads,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "backed up {} customers, {events} events, to {}",
            heads.len(),
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn restore(settings: &Settings, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    if settings.database.starts_with("postgres") {
        return bad_input("--database is PostgreSQL: restore it with `pg_restore`; this restores SQLite data directories");
    }
    let target = &settings.data_dir;
    let database = PathBuf::from(&settings.database);
    if settings.signing_key_path().exists() || database.exists() {
        return bad_input(format!(
            "{} already holds a ledger; restore into a new --data-dir",
            target.display()
        ));
    }
    let manifest_text = std::fs::read_to_string(args.from.join(MANIFEST)).map_err(|e| {
        BadInput(format!(
            "{}: not a backup ({MANIFEST}: {e})",
            args.from.display()
        ))
    })?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest_text)
        .map_err(|e| BadInput(format!("{}: {e}", args.from.join(MANIFEST).display())))?;
    for part in [DATABASE, SIGNING_KEY] {
        if !args.from.join(part).is_file() {
            return bad_input(format!("{}: not a backup (no {part})", args.from.display()));
        }
    }
    private_dir(target).with_context(|| format!("cannot create {}", target.display()))?;
    copy_private(&args.from.join(DATABASE), &database)?;
    copy_private(&args.from.join(SIGNING_KEY), &settings.signing_key_path())?;
    if args.from.join(SECRETS_KEY).is_file() {
        copy_private(&args.from.join(SECRETS_KEY), &settings.secrets_key_path())?;
    }
    let store = open_store(settings)?;
    let reports = store.verify()?;
    if let Some(r) = reports.iter().find(|r| r.broken.is_some()) {
        anyhow::bail!(
            "the restored ledger of {} does not verify: {:?}",
            r.customer,
            r.broken
        );
    }
    let restored = heads(&store)?;
    if restored != manifest["heads"].as_array().cloned().unwrap_or_default() {
        anyhow::bail!("the restored heads differ from the backup's manifest");
    }
    if args.json {
        let report = json!({
            "data_dir": target.display().to_string(),
            "customers": reports.len(),
            "heads": restored,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "restored {} customers into {}; every chain verifies and ends at the backup's head",
            reports.len(),
            target.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Every customer's chain head, in customer order.
fn heads(store: &payoff_store::Store) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for c in store.customers()? {
        let head = store.head(&c.id)?.unwrap_or(payoff_ledger::Head::EMPTY);
        out.push(json!({
            "customer": c.id,
            "sequence": head.sequence,
            "hash": hex::encode(head.hash),
        }));
    }
    Ok(out)
}

/// Copies `from` to the new file `to`, readable by its owner only.
fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    owner_only(to)
}

fn owner_only(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    Ok(())
}
