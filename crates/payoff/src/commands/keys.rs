//! `payoff keys create|list|revoke`, on the local database.

use std::process::ExitCode;

use clap::Subcommand;
use payoff_store::Role;

use crate::bad_input;
use crate::commands::{audit_local, open_store, user_error};
use crate::settings::Settings;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key; the key is printed alone on the last line, once.
    Create {
        /// admin, operator, customer_admin, customer_viewer, agent or auditor
        #[arg(long)]
        role: String,
        /// The customer of a customer-scoped key
        #[arg(long)]
        customer: Option<String>,
        /// Print the key (and its id, role and customer) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Only this customer's keys [default: every key]
        #[arg(long)]
        customer: Option<String>,
        /// Print the keys as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id, as `keys list` shows it.
        key_id: String,
        /// Print the revoked key as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    match command {
        KeysCommand::Create {
            role,
            customer,
            json,
        } => {
            let role: Role = match role.parse() {
                Ok(r) => r,
                Err(e) => return bad_input(format!("--role: {e}")),
            };
            match (role.is_provider(), &customer) {
                (true, Some(_)) => {
                    return bad_input(format!(
                        "--customer: a {role} key is a provider key and belongs to no customer"
                    ))
                }
                (false, None) => {
                    return bad_input(format!("--customer: a {role} key must name its customer"))
                }
                _ => {}
            }
            let (new, info) = store
                .create_key(role, customer.as_deref(), settings.clock.now())
                .map_err(user_error)?;
            audit_local(
                &store,
                settings.clock.now(),
                customer.as_deref(),
                "keys create",
                &format!("/v1/keys/{}", info.key_id),
                &format!("a {role} key"),
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"key": new.key, "key_id": info.key_id, "role": info.role, "customer": info.customer})
                );
            } else {
                println!(
                    "created {} key {}{}",
                    info.role,
                    info.key_id,
                    info.customer
                        .map(|c| format!(" for {c}"))
                        .unwrap_or_default()
                );
                println!("{}", new.key);
            }
        }
        KeysCommand::List { customer, json } => {
            let keys = store.keys(customer.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                println!(
                    "{:<18} {:<16} {:<20} {:<22} REVOKED",
                    "KEY ID", "ROLE", "CUSTOMER", "CREATED"
                );
                for k in keys {
                    println!(
                        "{:<18} {:<16} {:<20} {:<22} {}",
                        k.key_id,
                        k.role,
                        k.customer.as_deref().unwrap_or("-"),
                        k.created_at.format("%Y-%m-%d %H:%M:%SZ"),
                        k.revoked_at
                            .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
        }
        KeysCommand::Revoke { key_id, json } => {
            let info = store
                .revoke_key(&key_id, settings.clock.now())
                .map_err(user_error)?;
            audit_local(
                &store,
                settings.clock.now(),
                info.customer.as_deref(),
                "keys revoke",
                &format!("/v1/keys/{}", info.key_id),
                &format!("a {} key", info.role),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("revoked key {} ({})", info.key_id, info.role);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
