//! The shipped role rules of the API.

use std::collections::HashSet;
use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Decision, Entities, Entity, PolicySet, Request, Schema};

use crate::ROLE_POLICIES;

/// Whether a role may do an action, and the policies that said so
/// (empty when nothing permits it: Cedar's default deny).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDecision {
    pub allowed: bool,
    pub policy_ids: Vec<String>,
}

/// The role rules, compiled once.
pub struct RoleRules {
    set: PolicySet,
    schema: Schema,
    authorizer: Authorizer,
}

impl RoleRules {
    /// The shipped rules (`roles.cedar`).
    pub fn shipped() -> RoleRules {
        let set = PolicySet::from_str(ROLE_POLICIES)
            .expect("the shipped role rules parse (checked by the tests of this crate)");
        RoleRules {
            set: with_annotated_ids(&set, "")
                .expect("ids of the shipped rules are unique (checked by the tests of this crate)"),
            schema: crate::schema(crate::ROLE_SCHEMA),
            authorizer: Authorizer::new(),
        }
    }

    /// Every problem the schema validator finds in the shipped rules.
    pub fn validate(&self) -> Vec<String> {
        let v = cedar_policy::Validator::new(self.schema.clone());
        v.validate(&self.set, cedar_policy::ValidationMode::Strict)
            .validation_errors()
            .map(|e| e.to_string())
            .collect()
    }

    /// May a key of `role` do `action` (snake_case names, as in the
    /// schema)? An unknown action is denied.
    pub fn decide(&self, role: &str, action: &str) -> RoleDecision {
        let denied = RoleDecision {
            allowed: false,
            policy_ids: Vec::new(),
        };
        let (Some(role_uid), Some(key), Some(action), Some(customer)) = (
            crate::uid("Role", role),
            crate::uid("Key", "caller"),
            crate::uid("Action", action),
            crate::uid("Customer", "any"),
        ) else {
            return denied;
        };
        let entities = [
            Entity::new_no_attrs(role_uid.clone(), HashSet::new()),
            Entity::new_no_attrs(key.clone(), HashSet::from([role_uid])),
            Entity::new_no_attrs(customer.clone(), HashSet::new()),
        ];
        let Ok(entities) = Entities::from_entities(entities, Some(&self.schema)) else {
            return denied;
        };
        let Ok(request) = Request::new(key, action, customer, Context::empty(), Some(&self.schema))
        else {
            return denied;
        };
        let response = self
            .authorizer
            .is_authorized(&request, &self.set, &entities);
        let mut policy_ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        policy_ids.sort();
        RoleDecision {
            allowed: response.decision() == Decision::Allow
                && response.diagnostics().errors().next().is_none(),
            policy_ids,
        }
    }
}

/// Renames each policy after its `@id` annotation (prefixed with
/// `prefix`), so decisions name the policies as their authors did. Two
/// policies with one id are an error naming the id.
pub(crate) fn with_annotated_ids(set: &PolicySet, prefix: &str) -> Result<PolicySet, String> {
    let mut renamed = PolicySet::new();
    for policy in set.policies() {
        let id = match policy.annotation("id") {
            Some(id) => format!("{prefix}{id}"),
            None => format!("{prefix}{}", policy.id()),
        };
        renamed
            .add(policy.new_id(cedar_policy::PolicyId::new(&id)))
            .map_err(|_| format!("two policies have the id \"{id}\""))?;
    }
    Ok(renamed)
}
