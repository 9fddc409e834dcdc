//! `payoff customers create|list`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::bad_input;
use crate::commands::{audit_local, open_store, user_error};
use crate::settings::Settings;

#[derive(Subcommand)]
pub enum CustomersCommand {
    /// Create a customer.
    Create {
        /// Customer id: 1-64 lowercase letters, digits, '-' or '_'.
        id: String,
        /// Display name [default: the id]
        #[arg(long)]
        name: Option<String>,
        /// Print the customer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List customers.
    List {
        /// Print the customers as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(settings: &Settings, command: CustomersCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    match command {
        CustomersCommand::Create { id, name, json } => {
            if let Err(e) = payoff_accounting::customers::check_customer_id(&id) {
                return bad_input(e);
            }
            let name = name.unwrap_or_else(|| id.clone());
            let customer = store
                .create_customer(&id, &name, settings.clock.now())
                .map_err(user_error)?;
            audit_local(
                &store,
                settings.clock.now(),
                Some(&customer.id),
                "customers create",
                &format!("/v1/customers/{}", customer.id),
                &customer.name,
            )?;
            if json {
                println!("{}", serde_json::to_string(&customer)?);
            } else {
                println!("created customer {} ({})", customer.id, customer.name);
            }
        }
        CustomersCommand::List { json } => {
            let customers = store.customers()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&customers)?);
            } else {
                println!("{:<24} {:<32} CREATED", "ID", "NAME");
                for c in customers {
                    println!(
                        "{:<24} {:<32} {}",
                        c.id,
                        c.name,
                        c.created_at.format("%Y-%m-%d %H:%M:%SZ")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
