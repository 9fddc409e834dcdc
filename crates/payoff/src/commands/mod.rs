//! One module per command group; each opens what it needs and prints.

pub mod agents;
pub mod audit;
pub mod backup;
pub mod billing;
pub mod customers;
pub mod economics;
pub mod events;
pub mod init;
pub mod keys;
pub mod knowledge;
pub mod ledger;
pub mod manual;
pub mod policy;
pub mod prices;
pub mod reindex;
pub mod serve;
pub mod signing;

use anyhow::Context;
use payoff_store::Store;

use crate::settings::Settings;

/// Creates `dir` (and missing parents) readable by its owner only: the
/// data directory holds the database, with webhook secrets, and the
/// signing key.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens the database of an initialised data directory, running pending
/// migrations. A data directory without its signing key was never
/// `payoff init`ed: most likely a mistyped `--data-dir`, which must not grow
/// a new empty ledger and a new signing key.
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let key = settings.signing_key_path();
    if !key.exists() {
        return Err(crate::BadInput(format!(
            "{} is not an initialised Payoff data directory (it has no {}): check --data-dir / PAYOFF_DATA_DIR, or run `payoff init` there first",
            settings.data_dir.display(),
            key.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        ))
        .into());
    }
    create_store(settings)
}

/// Creates the data directory and the database if need be (`init`, the
/// demo), running pending migrations.
pub fn create_store(settings: &Settings) -> anyhow::Result<Store> {
    if !settings.database.starts_with("postgres") {
        private_dir(&settings.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    // An `Open` error names the database and the cause already.
    Store::open(&settings.database).map_err(|e| match e {
        payoff_store::StoreError::Open(_) => anyhow::Error::from(e),
        other => anyhow::Error::from(other)
            .context(format!("cannot open the database {}", settings.database)),
    })
}

/// Turns a store error about the user's input into bad input (exit 2).
pub fn user_error(e: payoff_store::StoreError) -> anyhow::Error {
    match e {
        payoff_store::StoreError::AlreadyExists { .. }
        | payoff_store::StoreError::NotFound { .. } => crate::BadInput(e.to_string()).into(),
        other => other.into(),
    }
}

/// A text file the user named; a missing or unreadable one is bad input.
pub fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| crate::BadInput(format!("{}: {e}", path.display())).into())
}

/// Records an action taken from the command line in the audit chain, so
/// that local commands leave the same trail as the API.
pub fn audit_local(
    store: &Store,
    at: chrono::DateTime<chrono::Utc>,
    customer: Option<&str>,
    action: &str,
    resource: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    store.append_audit(&payoff_store::AuditEntry {
        at,
        actor: format!("cli:{user}"),
        role: None,
        customer: customer.map(str::to_owned),
        action: action.to_owned(),
        resource: resource.to_owned(),
        decision: "allow".into(),
        reason: reason.to_owned(),
        policy_ids: Vec::new(),
    })?;
    Ok(())
}
