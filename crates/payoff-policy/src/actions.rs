//! What any agent may do: a customer declares its own action types in a
//! Cedar schema (the resources they act on, the context each carries) and
//! writes the rules deciding them. A decision is `allow`, `deny` or
//! `approval_required`: a `permit` annotated `@approval` lets the action
//! through only once a person approves it, and it wins over a plain
//! `permit` (asking a person is the more careful answer), while a `forbid`
//! wins over both.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityTypeName, EntityUid, PolicyId, PolicySet,
    Request, Schema, SchemaFragment, ValidationMode, Validator,
};
use serde::Serialize;
use serde_json::{json, Value};

use crate::problems::PolicyErrors;
use crate::roles::with_annotated_ids;
use crate::{CUSTOMER_RULES_BYTES_MAX, DEPTH_MAX};

const BASE: &str = include_str!("actions.cedarschema");
/// The entity type of the agent asking.
const AGENT_TYPE: &str = "Payoff::Agent";
/// The entity type of an MCP server whose tools are actions.
pub const MCP_SERVER_TYPE: &str = "Payoff::McpServer";
/// The entity type of a model the gateway serves.
pub const MODEL_TYPE: &str = "Payoff::Model";
/// The action the model gateway asks about, when the schema declares it.
pub const CALL_MODEL: &str = "call_model";
/// The annotation of a `permit` that lets its action through only once a
/// person approves it.
pub const APPROVAL_ANNOTATION: &str = "approval";

/// What happens to an action an agent asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionVerdict {
    Allow,
    Deny,
    ApprovalRequired,
}

impl ActionVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionVerdict::Allow => "allow",
            ActionVerdict::Deny => "deny",
            ActionVerdict::ApprovalRequired => "approval_required",
        }
    }
}

/// A verdict, the policies that gave it, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionDecision {
    pub verdict: ActionVerdict,
    /// Allow: the permits that matched. Approval: the `@approval` permits
    /// that matched. Deny: the forbids that matched (empty when no policy
    /// permits the action). Sorted.
    pub policy_ids: Vec<String>,
    pub reason: String,
}

/// What an agent asks: may `agent` do `action` to `resource`, given `context`?
#[derive(Debug, Clone, Copy)]
pub struct ActionQuestion<'a> {
    pub agent: &'a str,
    pub action: &'a str,
    /// The resource's entity type as the schema declares it (`Order`).
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    /// The resource's attributes (a JSON object), typed by the schema.
    pub resource_attributes: &'a Value,
    /// The action's context (a JSON object), typed by the schema.
    pub context: &'a Value,
}

/// A question the schema cannot type: names the field of the request and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ActionInputError {
    pub field: &'static str,
    pub message: String,
}

fn input(field: &'static str, message: impl Into<String>) -> ActionInputError {
    ActionInputError {
        field,
        message: message.into(),
    }
}

/// One action type of a customer's schema, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionType {
    pub name: String,
    /// The entity types it may act on.
    pub resources: Vec<String>,
}

/// A customer's compiled action schema and rules.
#[derive(Clone)]
pub struct ActionRules {
    set: PolicySet,
    schema: Schema,
    /// Policy id → the `@reason` its author gave.
    reasons: HashMap<String, String>,
    /// The permits annotated `@approval`.
    approval: BTreeSet<String>,
    actions: Vec<ActionType>,
    /// The policies reduced to their scopes for [`Self::reachable`]:
    /// permits without their conditions, forbids only when they have none.
    scopes: Option<PolicySet>,
}

impl ActionRules {
    /// Compiles a customer's schema and rules. Policy ids become
    /// `label.<@id>` so a decision says which version decided. Every
    /// problem of either text is reported with its position; nothing
    /// half-compiled is returned.
    pub fn compile(label: &str, schema_text: &str, rules_text: &str) -> Result<Self, ActionErrors> {
        let schema = customer_schema(schema_text).map_err(ActionErrors::Schema)?;
        let actions = declared_actions(&schema).map_err(ActionErrors::Schema)?;
        let set = customer_rules(label, rules_text).map_err(ActionErrors::Rules)?;
        let mut approval = BTreeSet::new();
        for policy in set.policies() {
            if policy.annotation(APPROVAL_ANNOTATION).is_some() {
                if policy.effect() == cedar_policy::Effect::Forbid {
                    return Err(ActionErrors::Rules(PolicyErrors::one(format!(
                        "policy \"{}\": @{APPROVAL_ANNOTATION} belongs on a permit (a forbid refuses outright)",
                        policy.id()
                    ))));
                }
                approval.insert(policy.id().to_string());
            }
        }
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            return Err(ActionErrors::Rules(PolicyErrors::from_diagnostics(
                rules_text,
                result
                    .validation_errors()
                    .map(|d| d as &dyn miette::Diagnostic),
            )));
        }
        let reasons = set
            .policies()
            .filter_map(|p| {
                p.annotation("reason")
                    .map(|r| (p.id().to_string(), r.to_owned()))
            })
            .collect();
        let rules = ActionRules {
            scopes: scopes_of(&set),
            set,
            schema,
            reasons,
            approval,
            actions,
        };
        // The gateway's question must type under the customer's
        // declaration, or every model call would be refused as malformed.
        if rules.governs_models()
            && rules
                .model_call("probe", "probe", "chat/completions", "probe")
                .is_err()
        {
            return Err(ActionErrors::Schema(PolicyErrors::one(format!(
                "action \"{CALL_MODEL}\" is the model gateway's question: declare it \
                 appliesTo {{ principal: [{AGENT_TYPE}], resource: [{MODEL_TYPE}], \
                 context: {{ \"endpoint\": String, \"upstream\": String }} }}"
            ))));
        }
        Ok(rules)
    }

    /// The action types the schema declares, sorted by name.
    pub fn actions(&self) -> &[ActionType] {
        &self.actions
    }

    /// The action types that act on `resource_type` (an MCP server's
    /// tools: [`MCP_SERVER_TYPE`]).
    pub fn actions_on<'a>(
        &'a self,
        resource_type: &'a str,
    ) -> impl Iterator<Item = &'a ActionType> {
        self.actions
            .iter()
            .filter(move |a| a.resources.iter().any(|r| r == resource_type))
    }

    /// Whether any rule could let `agent` do `action` to the resource,
    /// whatever the context and attributes: some `permit` whose scope
    /// (principal, action, resource) covers it, and no unconditional
    /// `forbid` that does. What an agent is shown before it asks (the
    /// tools an MCP client lists); the question itself is still decided
    /// in full when it is asked.
    pub fn reachable(
        &self,
        agent: &str,
        action: &str,
        resource_type: &str,
        resource_id: &str,
    ) -> bool {
        let Some(set) = self.scopes.as_ref() else {
            return false;
        };
        let uids = (
            EntityUid::from_str(&format!("{AGENT_TYPE}::{agent:?}")),
            EntityUid::from_str(&format!("Action::{action:?}")),
            EntityUid::from_str(&format!("{resource_type}::{resource_id:?}")),
        );
        let (Ok(principal), Ok(action), Ok(resource)) = uids else {
            return false;
        };
        let Ok(mut entities) = self.schema.action_entities() else {
            return false;
        };
        let plain = [
            cedar_policy::Entity::new_no_attrs(principal.clone(), Default::default()),
            cedar_policy::Entity::new_no_attrs(resource.clone(), Default::default()),
        ];
        entities = match entities.add_entities(plain, None) {
            Ok(e) => e,
            Err(_) => return false,
        };
        let Ok(request) = Request::new(principal, action, resource, Context::empty(), None) else {
            return false;
        };
        Authorizer::new()
            .is_authorized(&request, set, &entities)
            .decision()
            == Decision::Allow
    }

    /// Whether the schema declares [`CALL_MODEL`]: the model gateway then
    /// asks these rules before every call.
    pub fn governs_models(&self) -> bool {
        self.actions.iter().any(|a| a.name == CALL_MODEL)
    }

    /// May `agent` call `model` (on `endpoint`, served by `upstream`)?
    pub fn model_call(
        &self,
        agent: &str,
        model: &str,
        endpoint: &str,
        upstream: &str,
    ) -> Result<ActionDecision, ActionInputError> {
        self.decide(&ActionQuestion {
            agent,
            action: CALL_MODEL,
            resource_type: MODEL_TYPE,
            resource_id: model,
            resource_attributes: &json!({}),
            context: &json!({"endpoint": endpoint, "upstream": upstream}),
        })
    }

    /// The ids of every policy, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.set.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        ids
    }

    /// Decides a question. A question the schema cannot type (an unknown
    /// action, a resource type the action does not apply to, a missing
    /// or mistyped attribute) is an error naming the field, never a
    /// decision; a policy that fails to evaluate denies.
    pub fn decide(&self, q: &ActionQuestion<'_>) -> Result<ActionDecision, ActionInputError> {
        let declared = self.actions.iter().find(|a| a.name == q.action);
        let action = EntityUid::from_str(&format!("Action::{:?}", q.action))
            .ok()
            .filter(|_| declared.is_some())
            .ok_or_else(|| {
                let known: Vec<&str> = self.actions.iter().map(|a| a.name.as_str()).collect();
                input(
                    "action",
                    format!(
                        "\"{}\" is not an action type of the customer's schema (declared: {})",
                        q.action,
                        known.join(", ")
                    ),
                )
            })?;
        let declared = declared.map(|a| a.resources.as_slice()).unwrap_or_default();
        if EntityTypeName::from_str(q.resource_type).is_err()
            || !declared.iter().any(|r| r == q.resource_type)
        {
            return Err(input(
                "resource.type",
                format!(
                    "\"{}\": action \"{}\" applies to {}",
                    q.resource_type,
                    q.action,
                    declared.join(", ")
                ),
            ));
        }
        if !q.resource_attributes.is_object() {
            return Err(input("resource.attributes", "must be an object"));
        }
        if !q.context.is_object() {
            return Err(input("context", "must be an object"));
        }
        let principal = EntityUid::from_str(&format!("{AGENT_TYPE}::{:?}", q.agent))
            .map_err(|e| input("agent", e.to_string()))?;
        let resource = EntityUid::from_str(&format!("{}::{:?}", q.resource_type, q.resource_id))
            .map_err(|e| input("resource.id", e.to_string()))?;
        let entities = Entities::from_json_value(
            json!([
                { "uid": { "type": AGENT_TYPE, "id": q.agent }, "attrs": {}, "parents": [] },
                { "uid": { "type": q.resource_type, "id": q.resource_id },
                  "attrs": q.resource_attributes, "parents": [] },
            ]),
            Some(&self.schema),
        )
        .map_err(|e| input("resource.attributes", e.to_string()))?;
        let context = Context::from_json_value(q.context.clone(), Some((&self.schema, &action)))
            .map_err(|e| input("context", e.to_string()))?;
        let request = Request::new(principal, action, resource, context, Some(&self.schema))
            .map_err(|e| input("context", e.to_string()))?;
        let response = Authorizer::new().is_authorized(&request, &self.set, &entities);
        let mut ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(PolicyId::to_string)
            .collect();
        ids.sort();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        if !errors.is_empty() {
            return Ok(ActionDecision {
                verdict: ActionVerdict::Deny,
                policy_ids: ids,
                reason: format!("a policy failed to evaluate: {}", errors.join(", ")),
            });
        }
        if response.decision() == Decision::Deny {
            let reason = if ids.is_empty() {
                "no policy permits it".to_owned()
            } else {
                format!("forbidden ({})", self.explain(&ids))
            };
            return Ok(ActionDecision {
                verdict: ActionVerdict::Deny,
                policy_ids: ids,
                reason,
            });
        }
        let asking: Vec<String> = ids
            .iter()
            .filter(|id| self.approval.contains(*id))
            .cloned()
            .collect();
        Ok(if asking.is_empty() {
            ActionDecision {
                verdict: ActionVerdict::Allow,
                reason: format!("permitted ({})", self.explain(&ids)),
                policy_ids: ids,
            }
        } else {
            ActionDecision {
                verdict: ActionVerdict::ApprovalRequired,
                reason: format!("a person must approve it ({})", self.explain(&asking)),
                policy_ids: asking,
            }
        })
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
}

/// What is wrong with an upload: the schema's problems or the rules'.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionErrors {
    #[error("schema: {0}")]
    Schema(PolicyErrors),
    #[error("rules: {0}")]
    Rules(PolicyErrors),
}

impl ActionErrors {
    /// `schema` or `rules`: the part of the upload the problems are in.
    pub fn part(&self) -> &'static str {
        match self {
            ActionErrors::Schema(_) => "schema",
            ActionErrors::Rules(_) => "rules",
        }
    }

    pub fn problems(&self) -> &PolicyErrors {
        match self {
            ActionErrors::Schema(p) | ActionErrors::Rules(p) => p,
        }
    }
}

/// Bounds a customer text before a Cedar parser sees it.
fn bounded(text: &str, what: &str) -> Result<(), PolicyErrors> {
    if text.len() > CUSTOMER_RULES_BYTES_MAX {
        return Err(PolicyErrors::one(format!(
            "the {what} is {} bytes; at most {CUSTOMER_RULES_BYTES_MAX}",
            text.len()
        )));
    }
    // Cedar's parsers recurse once per level: bound the depth first, or a
    // deeply nested text overflows the stack and aborts the process.
    payoff_nesting::check(text, &payoff_nesting::Syntax::CEDAR, DEPTH_MAX)
        .map_err(|e| PolicyErrors::at(e.line, e.column, format!("the {what} is {e}")))
}

fn customer_schema(text: &str) -> Result<Schema, PolicyErrors> {
    bounded(text, "schema")?;
    let (own, _warnings) = SchemaFragment::from_cedarschema_str(text)
        .map_err(|e| PolicyErrors::from_diagnostics(text, [&e as &dyn miette::Diagnostic]))?;
    let (base, _) =
        SchemaFragment::from_cedarschema_str(BASE).expect("the shipped base schema parses");
    Schema::from_schema_fragments([base, own])
        .map_err(|e| PolicyErrors::from_diagnostics(text, [&e as &dyn miette::Diagnostic]))
}

/// The customer's action types: in the empty namespace, named like an
/// agent (`[a-z0-9_.-]`, 1 to 64), asked by `Payoff::Agent` alone, on the
/// customer's own entity types.
fn declared_actions(schema: &Schema) -> Result<Vec<ActionType>, PolicyErrors> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for uid in schema.actions() {
        let name = uid.id().unescaped().to_owned();
        if uid.type_name().to_string() != "Action" {
            problems.push(format!(
                "action {uid}: declare action types outside any namespace, so agents name them plainly"
            ));
            continue;
        }
        let well_formed = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if !well_formed {
            problems.push(format!(
                "action \"{name}\": names are 1 to 64 lower-case letters, digits, _ . -"
            ));
            continue;
        }
        let principals: Vec<String> = schema
            .principals_for_action(uid)
            .map(|p| p.map(ToString::to_string).collect())
            .unwrap_or_default();
        let groups_only = principals.is_empty()
            && schema
                .resources_for_action(uid)
                .is_none_or(|mut r| r.next().is_none());
        if groups_only {
            // An action group (no `appliesTo`): rules name it, agents
            // ask about its members.
            continue;
        }
        if principals != [AGENT_TYPE] {
            problems.push(format!(
                "action \"{name}\": its principal must be {AGENT_TYPE} alone (found: {})",
                principals.join(", ")
            ));
            continue;
        }
        let mut resources: Vec<String> = schema
            .resources_for_action(uid)
            .map(|r| r.map(ToString::to_string).collect())
            .unwrap_or_default();
        resources.sort();
        if resources.is_empty() || resources.iter().any(|r| r == AGENT_TYPE) {
            problems.push(format!(
                "action \"{name}\": it must act on one of the customer's entity types"
            ));
            continue;
        }
        out.push(ActionType { name, resources });
    }
    for ty in schema.entity_types() {
        let ty = ty.to_string();
        if ![AGENT_TYPE, MCP_SERVER_TYPE, MODEL_TYPE].contains(&ty.as_str())
            && ty.starts_with("Payoff::")
        {
            problems.push(format!("entity {ty}: the Payoff namespace is reserved"));
        }
    }
    if out.is_empty() && problems.is_empty() {
        problems.push("the schema declares no action".to_owned());
    }
    if !problems.is_empty() {
        return Err(PolicyErrors {
            problems: problems
                .into_iter()
                .map(|message| crate::Problem {
                    line: 0,
                    column: 0,
                    message,
                })
                .collect(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Each permit without its conditions, and each forbid that has none.
fn scopes_of(set: &PolicySet) -> Option<PolicySet> {
    let mut out = PolicySet::new();
    for policy in set.policies() {
        let mut json = policy.to_json().ok()?;
        let conditions = json
            .get("conditions")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if policy.effect() == cedar_policy::Effect::Forbid {
            if conditions > 0 {
                continue;
            }
        } else {
            json["conditions"] = json!([]);
        }
        let scoped = cedar_policy::Policy::from_json(Some(policy.id().clone()), json).ok()?;
        out.add(scoped).ok()?;
    }
    Some(out)
}

fn customer_rules(label: &str, text: &str) -> Result<PolicySet, PolicyErrors> {
    bounded(text, "rules")?;
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
    with_annotated_ids(&parsed, &format!("{label}.")).map_err(PolicyErrors::one)
}
