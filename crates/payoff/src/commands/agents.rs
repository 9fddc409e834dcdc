//! `payoff agent pause|resume|status`: the kill switch, from the command
//! line (the same switch as `POST /v1/agents/{agent}/pause`).

use std::process::ExitCode;

use clap::Subcommand;
use payoff_server::support::AGENT;
use payoff_store::AgentPause;
use serde::Serialize;

use crate::bad_input;
use crate::commands::{audit_local, open_store};
use crate::settings::Settings;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Stop every action of an agent (its tickets go to people) until resumed.
    Pause {
        /// The agent [possible values: support]
        agent: String,
        /// Only for this customer [default: every customer]
        #[arg(long)]
        customer: Option<String>,
        /// Print the switch as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Turn the kill switch off again.
    Resume {
        /// The agent [possible values: support]
        agent: String,
        /// Only for this customer [default: every customer]
        #[arg(long)]
        customer: Option<String>,
        /// Print the switch as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where the agent is paused.
    Status {
        /// The agent [possible values: support]
        agent: String,
        /// Print the pauses as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where an agent is paused: `pauses` empty, it runs for every customer.
#[derive(Serialize)]
struct Status {
    agent: String,
    pauses: Vec<AgentPause>,
}

/// A switch just thrown: `customer` `*` is every customer.
#[derive(Serialize)]
struct Switched {
    agent: String,
    customer: String,
    paused: bool,
}

fn scope(customer: &str) -> &str {
    if customer == "*" {
        "every customer"
    } else {
        customer
    }
}

pub fn run(settings: &Settings, command: AgentCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    let (agent, customer, paused, json) = match command {
        AgentCommand::Status { agent, json } => {
            known(&agent)?;
            let status = Status {
                pauses: store
                    .agent_pauses()?
                    .into_iter()
                    .filter(|p| p.agent == agent)
                    .collect(),
                agent,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(ExitCode::SUCCESS);
            }
            if status.pauses.is_empty() {
                println!("{}: running for every customer", status.agent);
            }
            for p in &status.pauses {
                println!(
                    "{}: paused for {} by {} at {}",
                    status.agent,
                    scope(&p.customer),
                    p.paused_by,
                    p.paused_at.to_rfc3339()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        AgentCommand::Pause {
            agent,
            customer,
            json,
        } => (agent, customer, true, json),
        AgentCommand::Resume {
            agent,
            customer,
            json,
        } => (agent, customer, false, json),
    };
    known(&agent)?;
    if let Some(c) = &customer {
        if store.customer(c)?.is_none() {
            return bad_input(format!("--customer: no customer \"{c}\""));
        }
    }
    let switched = Switched {
        agent,
        customer: customer.clone().unwrap_or_else(|| "*".into()),
        paused,
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    store.set_agent_pause(
        &AgentPause {
            agent: switched.agent.clone(),
            customer: switched.customer.clone(),
            paused_by: format!("cli:{user}"),
            paused_at: settings.clock.now(),
        },
        paused,
    )?;
    let action = if paused { "pause" } else { "resume" };
    audit_local(
        &store,
        settings.clock.now(),
        customer.as_deref(),
        action,
        &format!("agent/{}", switched.agent),
        &format!("for {}", switched.customer),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&switched)?);
    } else {
        println!(
            "{}: {} for {}",
            switched.agent,
            if paused { "paused" } else { "resumed" },
            scope(&switched.customer)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn known(agent: &str) -> anyhow::Result<()> {
    if agent == AGENT {
        Ok(())
    } else {
        bad_input(format!(
            "agent: no agent \"{agent}\"; the agents are: {AGENT}"
        ))
    }
}
