//! `payoff prices`: the model price table's versions, and importing one
//! from LiteLLM's price file.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use payoff_accounting::economics::{self, PricesError};

use crate::commands::{audit_local, open_store, read_text, user_error};
use crate::settings::Settings;
use crate::BadInput;

#[derive(Subcommand)]
pub enum PricesCommand {
    /// Store a new price-table version made from LiteLLM's
    /// model_prices_and_context_window.json (per-token prices, cached input).
    Import {
        /// LiteLLM's price file.
        file: PathBuf,
        /// When the new prices take effect, RFC 3339; not in the past [default: now].
        #[arg(long)]
        effective: Option<String>,
        /// Keep only the models of this LiteLLM provider (openai,
        /// anthropic, vertex_ai…); repeat for several [default: all].
        #[arg(long = "provider")]
        providers: Vec<String>,
        /// Print the price table (TOML) instead of storing it.
        #[arg(long)]
        dry_run: bool,
        /// Print what was stored, and what was left out, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the stored price-table versions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: PricesCommand) -> anyhow::Result<ExitCode> {
    match command {
        PricesCommand::Import {
            file,
            effective,
            providers,
            dry_run,
            json,
        } => {
            let now = settings.clock.now();
            let effective: DateTime<Utc> = match effective {
                Some(t) => DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| {
                        BadInput(format!(
                            "--effective: \"{t}\" is not an RFC 3339 time ({e})"
                        ))
                    })?
                    .with_timezone(&Utc),
                None => now,
            };
            let text = read_text(&file)?;
            let imported = payoff_billing::litellm::import(&text, effective, &providers)
                .map_err(|e| BadInput(format!("{}: {e}", file.display())))?;
            let toml = imported.table.to_toml();
            if dry_run {
                print!("{toml}");
                return Ok(ExitCode::SUCCESS);
            }
            let store = open_store(settings)?;
            let stored = economics::store_prices(&store, &toml, now).map_err(|e| match e {
                PricesError::Store(s) => user_error(s),
                other => BadInput(other.to_string()).into(),
            })?;
            audit_local(
                &store,
                now,
                None,
                "prices import",
                "/v1/prices",
                &format!(
                    "version {} effective {}, {} models from {}",
                    stored.version,
                    stored.effective.to_rfc3339(),
                    imported.table.models.len(),
                    file.display()
                ),
            )?;
            if json {
                let skipped: Vec<_> = imported
                    .skipped
                    .iter()
                    .map(|(model, reason)| serde_json::json!({"model": model, "reason": reason}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "version": stored.version,
                        "effective": stored.effective,
                        "models": imported.table.models.len(),
                        "skipped": skipped,
                    }))?
                );
            } else {
                println!(
                    "stored price table version {}, effective {}: {} models, {} entries left out (--json lists them)",
                    stored.version,
                    stored.effective.to_rfc3339(),
                    imported.table.models.len(),
                    imported.skipped.len()
                );
            }
        }
        PricesCommand::List { json } => {
            let store = open_store(settings)?;
            let tables = store.price_tables()?;
            if json {
                let listed: Vec<_> = tables
                    .iter()
                    .map(|t| {
                        serde_json::json!({"version": t.version, "effective": t.effective,
                                           "uploaded_at": t.uploaded_at, "body": t.body})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else if tables.is_empty() {
                println!("no stored price table: the default prices apply (GET /v1/prices)");
            } else {
                for t in &tables {
                    let models = payoff_billing::PriceTable::parse(&t.body)
                        .map(|p| p.models.len())
                        .unwrap_or(0);
                    println!(
                        "version {:>3}  effective {}  {} models",
                        t.version,
                        t.effective.to_rfc3339(),
                        models
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
