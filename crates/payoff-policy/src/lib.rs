//! Payoff's authorization rules, written in Cedar.
//!
//! Two policy sets, each with its schema:
//! - the **role rules** (`roles.cedar`, `roles.cedarschema`), shipped:
//!   which role may do which action of the API ([`RoleRules`]);
//! - the **agent rules** (`agent.cedarschema`): the built-in rules of the
//!   support agent (`agent.cedar`, with thresholds from its settings) plus,
//!   per customer, the customer's own rules, checked against the schema
//!   when they are uploaded ([`AgentRules`], [`check_customer_rules`]).
//!   Kept apart from the role rules so that no customer rule can ever
//!   reach an action of the API.
//! - the **action rules** (`actions.cedarschema` under a customer's own
//!   schema): the action types any agent may ask about, declared by the
//!   customer, and its rules deciding them: allow, deny or approval
//!   required ([`ActionRules`]).
//!
//! Cedar denies by default and a `forbid` beats any `permit`. Every
//! decision names the policies that made it, so the audit log can say why.
//! Pure: no I/O, no clock.

mod actions;
mod agent;
mod problems;
mod roles;

pub use actions::{
    ActionDecision, ActionErrors, ActionInputError, ActionQuestion, ActionRules, ActionType,
    ActionVerdict, APPROVAL_ANNOTATION, CALL_MODEL, MCP_SERVER_TYPE, MODEL_TYPE,
};
pub use agent::{AgentDecision, AgentRules, ReplyRule, TicketFacts, Verdict};
pub use problems::{PolicyErrors, Problem};
pub use roles::{RoleDecision, RoleRules};

/// The label a customer's rules version is compiled under (agent rules
/// and action rules alike): its decisions name each policy `<label>.<id>`.
pub fn rules_label(customer: &str, version: u32) -> String {
    format!("{customer}.v{version}")
}

/// A new version's policy ids, checked before it had a version
/// (`<customer>.<id>`), as its decisions will name them
/// (`<customer>.v<version>.<id>`).
pub fn as_decisions_name(customer: &str, version: u32, ids: &[String]) -> Vec<String> {
    let prefix = format!("{customer}.");
    let label = format!("{}.", rules_label(customer, version));
    ids.iter()
        .map(|id| id.replacen(&prefix, &label, 1))
        .collect()
}

/// The Cedar schema of the role rules.
pub const ROLE_SCHEMA: &str = include_str!("roles.cedarschema");

/// The Cedar schema of agent rules, the customers' own included.
pub const AGENT_SCHEMA: &str = include_str!("agent.cedarschema");

/// The shipped role rules.
pub const ROLE_POLICIES: &str = include_str!("roles.cedar");

/// The limit on a customer's rules, in bytes.
pub const CUSTOMER_RULES_BYTES_MAX: usize = 64 * 1024;

/// The deepest nesting of brackets a customer's rules may hold, checked
/// before Cedar parses them (`payoff-nesting`).
pub const DEPTH_MAX: usize = payoff_nesting::DEPTH_MAX;

/// Checks a customer's rules against the schema and the built-in agent
/// rules (default thresholds), and returns the ids of its policies.
pub fn check_customer_rules(text: &str) -> Result<Vec<String>, PolicyErrors> {
    let rules = AgentRules::builtin(&ReplyRule::default())?.with_customer("customer", text)?;
    Ok(rules.customer_policy_ids())
}

fn schema(text: &str) -> cedar_policy::Schema {
    let (schema, _warnings) = cedar_policy::Schema::from_cedarschema_str(text)
        .expect("the shipped schemas parse (checked by the tests of this crate)");
    schema
}

/// The entity `Payoff::<kind>::"<id>"`; `None` if it cannot be written.
fn uid(kind: &str, id: &str) -> Option<cedar_policy::EntityUid> {
    std::str::FromStr::from_str(&format!("Payoff::{kind}::{id:?}")).ok()
}
