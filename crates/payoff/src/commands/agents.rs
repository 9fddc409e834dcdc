//! `payoff agent pause|resume|status`: the kill switch, from the command
//! line (the same switch as `POST /v1/agents/{agent}/pause`).

use std::process::ExitCode;

use chrono::Utc;
use clap::Subcommand;
use payoff_server::support::AGENT;
use payoff_store::AgentPause;

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
    },
    /// Turn the kill switch off again.
    Resume {
        agent: String,
        #[arg(long)]
        customer: Option<String>,
    },
    /// Where the agent is paused.
    Status { agent: String },
}

pub fn run(settings: &Settings, command: AgentCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    let (agent, customer, paused) = match command {
        AgentCommand::Status { agent } => {
            known(&agent)?;
            let pauses: Vec<AgentPause> = store
                .agent_pauses()?
                .into_iter()
                .filter(|p| p.agent == agent)
                .collect();
            if pauses.is_empty() {
                println!("{agent}: running for every customer");
            }
            for p in pauses {
                println!(
                    "{agent}: paused for {} by {} at {}",
                    if p.customer == "*" {
                        "every customer"
                    } else {
                        &p.customer
                    },
                    p.paused_by,
                    p.paused_at.to_rfc3339()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        AgentCommand::Pause { agent, customer } => (agent, customer, true),
        AgentCommand::Resume { agent, customer } => (agent, customer, false),
    };
    known(&agent)?;
    if let Some(c) = &customer {
        if store.customer(c)?.is_none() {
            return bad_input(format!("--customer: no customer \"{c}\""));
        }
    }
    let scope = customer.clone().unwrap_or_else(|| "*".into());
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    store.set_agent_pause(
        &AgentPause {
            agent: agent.clone(),
            customer: scope.clone(),
            paused_by: format!("cli:{user}"),
            paused_at: Utc::now(),
        },
        paused,
    )?;
    let action = if paused { "pause" } else { "resume" };
    audit_local(
        &store,
        customer.as_deref(),
        action,
        &format!("agent/{agent}"),
        &format!("for {scope}"),
    )?;
    println!(
        "{agent}: {} for {}",
        if paused { "paused" } else { "resumed" },
        if scope == "*" {
            "every customer"
        } else {
            &scope
        }
    );
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
