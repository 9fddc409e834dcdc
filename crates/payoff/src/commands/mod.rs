//! One module per command group; each opens what it needs and prints.

pub mod billing;
pub mod customers;
pub mod economics;
pub mod events;
pub mod init;
pub mod keys;
pub mod knowledge;
pub mod ledger;
pub mod serve;

use anyhow::Context;
use payoff_store::Store;

use crate::settings::Settings;

/// Opens the configured database, running pending migrations.
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    if !settings.database.starts_with("postgres") {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    Store::open(&settings.database)
        .with_context(|| format!("cannot open the database {}", settings.database))
}

/// Turns a store error about the user's input into bad input (exit 2).
pub fn user_error(e: payoff_store::StoreError) -> anyhow::Error {
    match e {
        payoff_store::StoreError::AlreadyExists { .. }
        | payoff_store::StoreError::NotFound { .. } => crate::BadInput(e.to_string()).into(),
        other => other.into(),
    }
}
