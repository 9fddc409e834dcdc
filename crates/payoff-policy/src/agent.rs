//! What the support agent may do with a drafted reply: the built-in rules
//! plus a customer's own, in one Cedar policy set.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, PolicyId, PolicySet, RestrictedExpression,
    Schema, ValidationMode, Validator,
};
use serde::{Deserialize, Serialize};

use crate::problems::PolicyErrors;
use crate::roles::with_annotated_ids;
use crate::{CUSTOMER_RULES_BYTES_MAX, DEPTH_MAX};

const BUILTIN: &str = include_str!("agent.cedar");
const BUILTIN_PREFIX: &str = "builtin.";

/// The thresholds of the built-in agent rules (the agent's settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRule {
    /// Confidence from which a reply may go out alone.
    pub auto_send_min: f64,
    /// Confidence from which a reply is worth a person's approval; below,
    /// the ticket goes to a person.
    pub approval_min: f64,
    /// Categories never sent without a person (money, for a start).
    pub approval_categories: Vec<String>,
}

impl Default for ReplyRule {
    fn default() -> Self {
        ReplyRule {
            auto_send_min: 0.6,
            approval_min: 0.3,
            approval_categories: vec!["billing".to_owned()],
        }
    }
}

/// What happens to a drafted reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Sent to the requester at once.
    Send,
    /// Held until a person approves, edits or rejects it.
    NeedsApproval,
    /// The ticket goes to a person, the draft attached.
    Escalate,
}

impl Verdict {
    /// The agent action this verdict performs, as policies and the audit name it.
    pub fn action(self) -> &'static str {
        match self {
            Verdict::Send => "send_reply",
            Verdict::NeedsApproval => "queue_for_approval",
            Verdict::Escalate => "escalate",
        }
    }
}

/// What a policy may know of a ticket and its draft.
#[derive(Debug, Clone)]
pub struct TicketFacts<'a> {
    pub ticket: &'a str,
    pub customer: &'a str,
    pub category: &'a str,
    /// In `[0, 1]`; policies see it with four decimals.
    pub confidence: f64,
    pub no_answer: bool,
    pub citations: usize,
    pub requester: &'a str,
}

/// A verdict, the policies that gave it, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentDecision {
    pub verdict: Verdict,
    /// The policies that permitted the verdict's action and those that
    /// forbade the bolder ones, sorted.
    pub policy_ids: Vec<String>,
    pub reason: String,
}

/// The compiled agent rules of one customer (or the built-in ones alone).
#[derive(Clone)]
pub struct AgentRules {
    set: PolicySet,
    schema: Schema,
    /// Policy id → the `@reason` its author gave.
    reasons: HashMap<String, String>,
    /// The Cedar text of the built-in rules, thresholds filled in.
    builtin_text: String,
    customer_ids: Vec<String>,
}

impl AgentRules {
    /// The built-in rules with `rule`'s thresholds.
    pub fn builtin(rule: &ReplyRule) -> Result<AgentRules, PolicyErrors> {
        for (field, v) in [
            ("auto_send_min", rule.auto_send_min),
            ("approval_min", rule.approval_min),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(PolicyErrors::one(format!(
                    "{field}: {v} is not between 0 and 1"
                )));
            }
        }
        let categories: Vec<String> = rule
            .approval_categories
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        let text = BUILTIN
            .replace("{auto_send_min}", &decimal(rule.auto_send_min))
            .replace("{approval_min}", &decimal(rule.approval_min))
            .replace(
                "{approval_categories}",
                &format!("[{}]", categories.join(", ")),
            );
        let parsed = PolicySet::from_str(&text).map_err(|e| {
            PolicyErrors::from_diagnostics(&text, e.iter().map(|d| d as &dyn miette::Diagnostic))
        })?;
        let set = with_annotated_ids(&parsed, "").map_err(PolicyErrors::one)?;
        let mut rules = AgentRules {
            reasons: reasons_of(&set),
            set,
            schema: crate::schema(crate::AGENT_SCHEMA),
            customer_ids: Vec::new(),
            builtin_text: text.clone(),
        };
        rules.validated(&text)?;
        Ok(rules)
    }

    /// These rules plus a customer's own, whose ids are prefixed with
    /// `label.` (e.g. `acme.v3.`) so a decision says which version decided.
    pub fn with_customer(&self, label: &str, text: &str) -> Result<AgentRules, PolicyErrors> {
        if text.len() > CUSTOMER_RULES_BYTES_MAX {
            return Err(PolicyErrors::one(format!(
                "the rules are {} bytes; at most {CUSTOMER_RULES_BYTES_MAX}",
                text.len()
            )));
        }
        // Cedar's parser recurses once per level: bound the depth first,
        // or a deeply nested text overflows the stack and aborts the process.
        payoff_nesting::check(text, &payoff_nesting::Syntax::CEDAR, DEPTH_MAX)
            .map_err(|e| PolicyErrors::at(e.line, e.column, format!("the rules are {e}")))?;
        let parsed = PolicySet::from_str(text).map_err(|e| {
            PolicyErrors::from_diagnostics(text, e.iter().map(|d| d as &dyn miette::Diagnostic))
        })?;
        if parsed.policies().next().is_none() {
            return Err(PolicyErrors::one("the rules hold no policy"));
        }
        if parsed.templates().next().is_some() {
            return Err(PolicyErrors::one(
                "templates are not supported: write the policies out",
            ));
        }
        let prefix = format!("{label}.");
        let own = with_annotated_ids(&parsed, &prefix).map_err(PolicyErrors::one)?;
        let mut set = self.set.clone();
        let mut customer_ids = Vec::new();
        for policy in own.policies() {
            let id = policy.id().to_string();
            if policy
                .annotation("id")
                .is_some_and(|a| a.starts_with(BUILTIN_PREFIX))
            {
                return Err(PolicyErrors::one(format!(
                    "policy id \"{}\": ids starting with \"{BUILTIN_PREFIX}\" are reserved",
                    policy.annotation("id").unwrap_or_default()
                )));
            }
            set.add(policy.clone())
                .map_err(|e| PolicyErrors::one(e.to_string()))?;
            customer_ids.push(id);
        }
        let mut rules = AgentRules {
            reasons: reasons_of(&set),
            set,
            schema: self.schema.clone(),
            customer_ids,
            builtin_text: self.builtin_text.clone(),
        };
        rules.validated(text)?;
        Ok(rules)
    }

    /// The built-in rules as Cedar text, thresholds filled in: what a
    /// customer's rules are added to.
    pub fn text(&self) -> &str {
        &self.builtin_text
    }

    /// The ids of the customer's own policies, as decisions name them.
    pub fn customer_policy_ids(&self) -> Vec<String> {
        self.customer_ids.clone()
    }

    /// Strict validation against the schema: a rule that could fail at
    /// run time (and so be skipped by Cedar, which would silently drop a
    /// `forbid`) is refused here instead.
    fn validated(&mut self, text: &str) -> Result<(), PolicyErrors> {
        let result =
            Validator::new(self.schema.clone()).validate(&self.set, ValidationMode::Strict);
        if result.validation_passed() {
            return Ok(());
        }
        Err(PolicyErrors::from_diagnostics(
            text,
            result
                .validation_errors()
                .map(|d| d as &dyn miette::Diagnostic),
        ))
    }

    /// Decides what `agent` does with the draft: send it if permitted,
    /// else queue it if permitted, else hand the ticket to a person. A
    /// policy that fails to evaluate counts as a refusal.
    pub fn decide(&self, agent: &str, facts: &TicketFacts<'_>) -> AgentDecision {
        let mut forbidden_by = Vec::new();
        let mut steps = Vec::new();
        for verdict in [Verdict::Send, Verdict::NeedsApproval] {
            let (allowed, ids, errors) = self.ask(agent, verdict.action(), facts);
            if allowed {
                let mut policy_ids = forbidden_by;
                policy_ids.extend(ids.iter().cloned());
                policy_ids.sort();
                policy_ids.dedup();
                steps.push(format!(
                    "{}: permitted ({})",
                    verdict.action(),
                    self.explain(&ids)
                ));
                return AgentDecision {
                    verdict,
                    policy_ids,
                    reason: steps.join("; "),
                };
            }
            let why = if !errors.is_empty() {
                format!("a policy failed to evaluate: {}", errors.join(", "))
            } else if ids.is_empty() {
                "no policy permits it".to_owned()
            } else {
                format!("forbidden ({})", self.explain(&ids))
            };
            steps.push(format!("{}: {why}", verdict.action()));
            forbidden_by.extend(ids);
        }
        forbidden_by.sort();
        forbidden_by.dedup();
        AgentDecision {
            verdict: Verdict::Escalate,
            policy_ids: forbidden_by,
            reason: steps.join("; "),
        }
    }

    fn explain(&self, ids: &[String]) -> String {
        ids.iter()
            .map(|id| match self.reasons.get(id) {
                Some(r) => format!("{id}: {r}"),
                None => id.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `(permitted, the policies that decided, evaluation errors)`.
    fn ask(
        &self,
        agent: &str,
        action: &str,
        facts: &TicketFacts<'_>,
    ) -> (bool, Vec<String>, Vec<String>) {
        let refused = |why: String| (false, Vec::new(), vec![why]);
        let (Some(principal), Some(action_uid), Some(resource)) = (
            crate::uid("Agent", agent),
            crate::uid("Action", action),
            crate::uid("Ticket", facts.ticket),
        ) else {
            return refused("the request could not be formed".into());
        };
        let attrs = HashMap::from([
            (
                "customer".to_owned(),
                RestrictedExpression::new_string(facts.customer.to_owned()),
            ),
            (
                "category".to_owned(),
                RestrictedExpression::new_string(facts.category.to_owned()),
            ),
            (
                "confidence".to_owned(),
                RestrictedExpression::new_decimal(decimal(facts.confidence)),
            ),
            (
                "no_answer".to_owned(),
                RestrictedExpression::new_bool(facts.no_answer),
            ),
            (
                "citations".to_owned(),
                RestrictedExpression::new_long(facts.citations.min(1_000_000) as i64),
            ),
            (
                "requester".to_owned(),
                RestrictedExpression::new_string(facts.requester.to_owned()),
            ),
        ]);
        let ticket = match Entity::new(resource.clone(), attrs, HashSet::new()) {
            Ok(t) => t,
            Err(e) => return refused(e.to_string()),
        };
        let entities = match Entities::from_entities(
            [
                Entity::new_no_attrs(principal.clone(), HashSet::new()),
                ticket,
            ],
            Some(&self.schema),
        ) {
            Ok(e) => e,
            Err(e) => return refused(e.to_string()),
        };
        let request = match cedar_policy::Request::new(
            principal,
            action_uid,
            resource,
            Context::empty(),
            Some(&self.schema),
        ) {
            Ok(r) => r,
            Err(e) => return refused(e.to_string()),
        };
        let response = Authorizer::new().is_authorized(&request, &self.set, &entities);
        let ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(PolicyId::to_string)
            .collect();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        let allowed = response.decision() == Decision::Allow && errors.is_empty();
        (allowed, ids, errors)
    }
}

fn reasons_of(set: &PolicySet) -> HashMap<String, String> {
    set.policies()
        .filter_map(|p| {
            p.annotation("reason")
                .map(|r| (p.id().to_string(), r.to_owned()))
        })
        .collect()
}

/// A number in `[0, 1]` as a Cedar decimal literal (four decimals; NaN is 0).
fn decimal(v: f64) -> String {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    format!("{v:.4}")
}
