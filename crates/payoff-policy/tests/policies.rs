//! The shipped rules against their specifications: the role table in
//! `roles.table`, the agent cases in `agent_cases.toml` and the action
//! cases in `action_cases.toml`.

use payoff_policy::{
    check_customer_rules, ActionQuestion, ActionRules, ActionVerdict, AgentRules, ReplyRule,
    RoleRules, TicketFacts, Verdict,
};
use serde::Deserialize;

const ROLES: [&str; 6] = [
    "admin",
    "operator",
    "customer_admin",
    "customer_viewer",
    "agent",
    "auditor",
];

#[test]
fn the_role_rules_match_the_table_and_validate() {
    let rules = RoleRules::shipped();
    assert_eq!(rules.validate(), Vec::<String>::new());
    let table = include_str!("roles.table");
    let mut rows = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells.len(), 1 + ROLES.len(), "row: {line}");
        for (role, cell) in ROLES.iter().zip(&cells[1..]) {
            let d = rules.decide(role, cells[0]);
            assert_eq!(d.allowed, *cell == "y", "{role} {}: {d:?}", cells[0]);
            if d.allowed {
                assert_eq!(d.policy_ids, vec![format!("role.{role}")]);
            } else {
                assert!(d.policy_ids.is_empty(), "{d:?}");
            }
        }
        rows += 1;
    }
    assert_eq!(rows, 31);
    // Unknown roles and actions: denied, never an error.
    assert!(!rules.decide("root", "read_events").allowed);
    assert!(!rules.decide("admin", "drop_tables").allowed);
    assert!(!rules.decide("admin\"", "read\"events").allowed);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    case: Vec<Case>,
    invalid: Vec<Invalid>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    rules: Option<String>,
    #[serde(default)]
    facts: Facts,
    verdict: Verdict,
    policy_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Facts {
    category: String,
    confidence: f64,
    no_answer: bool,
    citations: usize,
    requester: String,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            category: "returns".into(),
            confidence: 0.9,
            no_answer: false,
            citations: 1,
            requester: "jane@example.test".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Invalid {
    name: String,
    rules: String,
    error: String,
    line: usize,
}

fn cases() -> Cases {
    toml::from_str(include_str!("agent_cases.toml")).expect("agent_cases.toml parses")
}

#[test]
fn agent_decisions_follow_the_table_of_cases() {
    let builtin = AgentRules::builtin(&ReplyRule::default()).unwrap();
    for case in cases().case {
        let rules = match &case.rules {
            Some(text) => builtin
                .with_customer("acme.v1", text)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name)),
            None => builtin.clone(),
        };
        let f = &case.facts;
        let d = rules.decide(
            "support",
            &TicketFacts {
                ticket: "T-1",
                customer: "acme",
                category: &f.category,
                confidence: f.confidence,
                no_answer: f.no_answer,
                citations: f.citations,
                requester: &f.requester,
            },
        );
        assert_eq!(
            (d.verdict, &d.policy_ids),
            (case.verdict, &case.policy_ids),
            "{}: {}",
            case.name,
            d.reason
        );
        assert!(!d.reason.is_empty());
    }
}

#[test]
fn rules_that_do_not_validate_are_refused_with_their_position() {
    for case in cases().invalid {
        let errors =
            check_customer_rules(&case.rules).expect_err(&format!("{}: accepted", case.name));
        let first = &errors.problems[0];
        assert!(
            errors.to_string().contains(&case.error),
            "{}: {errors}",
            case.name
        );
        assert_eq!(first.line, case.line, "{}: {errors}", case.name);
    }
}

#[test]
fn checked_rules_name_their_policies() {
    let ids = check_customer_rules(
        "@id(\"careful\")\nforbid(principal, action, resource) when { resource.confidence.lessThan(decimal(\"0.8\")) };\nforbid(principal, action, resource) when { resource.category == \"legal\" };",
    )
    .unwrap();
    assert_eq!(ids, vec!["customer.careful", "customer.policy1"]);
    let huge = format!(
        "{}forbid(principal, action, resource);",
        "// padding\n".repeat(7000)
    );
    assert!(check_customer_rules(&huge)
        .unwrap_err()
        .to_string()
        .contains("at most"));
}

#[test]
fn thresholds_outside_zero_to_one_are_refused() {
    let rule = ReplyRule {
        auto_send_min: 1.5,
        ..ReplyRule::default()
    };
    assert!(AgentRules::builtin(&rule)
        .err()
        .unwrap()
        .to_string()
        .contains("auto_send_min"));
}

/// `forbid(...) when { ((…(resource.citations > 0)…)) };` nested `depth` deep.
fn nested_rule(depth: usize) -> String {
    format!(
        "forbid(principal, action, resource) when {{ {}resource.citations > 0{} }};",
        "(".repeat(depth),
        ")".repeat(depth)
    )
}

/// Issue 15, finding 1: rules nested 150 levels deep overflowed a worker's
/// stack and aborted the server; 1,000 aborted `payoff policy check`.
/// Run on a thread with a server worker's stack (2 MiB).
#[test]
fn deeply_nested_rules_are_refused_before_cedar_parses_them() {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            for depth in [150, 1_000, 30_000] {
                let errors = check_customer_rules(&nested_rule(depth)).unwrap_err();
                let first = &errors.problems[0];
                assert!(
                    first.message.contains("nested more than 64 levels"),
                    "{depth}: {errors}"
                );
                // `{` opens level 1 at column 42; the 64th `(` (column 43 + 64) opens level 65.
                assert_eq!((first.line, first.column), (1, 43 + 64), "{errors}");
            }
            let ids = check_customer_rules(&nested_rule(payoff_policy::DEPTH_MAX - 1)).unwrap();
            assert_eq!(ids, vec!["customer.policy0"]);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionCases {
    set: Vec<ActionSet>,
    invalid: Vec<InvalidUpload>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionSet {
    name: String,
    schema: String,
    rules: String,
    case: Vec<ActionCase>,
    #[serde(default)]
    reach: Vec<ReachCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReachCase {
    agent: String,
    action: String,
    server: String,
    reachable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionCase {
    name: String,
    agent: Option<String>,
    action: String,
    resource: ResourceCase,
    #[serde(default)]
    context: Option<serde_json::Value>,
    verdict: Option<ActionVerdict>,
    policy_ids: Option<Vec<String>>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceCase {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    attributes: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidUpload {
    name: String,
    schema: String,
    rules: String,
    part: String,
    message: String,
}

fn action_cases() -> ActionCases {
    toml::from_str(include_str!("action_cases.toml")).expect("action_cases.toml parses")
}

#[test]
fn action_decisions_follow_the_table_of_cases() {
    for set in action_cases().set {
        let rules = ActionRules::compile("acme.v1", &set.schema, &set.rules)
            .unwrap_or_else(|e| panic!("{}: {e}", set.name));
        for r in &set.reach {
            assert_eq!(
                rules.reachable(
                    &r.agent,
                    &r.action,
                    payoff_policy::MCP_SERVER_TYPE,
                    &r.server
                ),
                r.reachable,
                "{}: {} {} on {}",
                set.name,
                r.agent,
                r.action,
                r.server
            );
        }
        for case in set.case {
            let context = case
                .context
                .clone()
                .unwrap_or_else(|| serde_json::json!({}));
            let got = rules.decide(&ActionQuestion {
                agent: case.agent.as_deref().unwrap_or("refunds"),
                action: &case.action,
                resource_type: &case.resource.kind,
                resource_id: &case.resource.id,
                resource_attributes: &case.resource.attributes,
                context: &context,
            });
            let name = format!("{} / {}", set.name, case.name);
            match (&case.error, got) {
                (Some(field), Err(e)) => assert_eq!(e.field, field, "{name}: {e}"),
                (Some(field), Ok(d)) => {
                    panic!("{name}: decided {d:?}, expected an error on {field}")
                }
                (None, Err(e)) => panic!("{name}: {e}"),
                (None, Ok(d)) => {
                    assert_eq!(
                        (Some(d.verdict), Some(&d.policy_ids)),
                        (case.verdict, case.policy_ids.as_ref()),
                        "{name}: {}",
                        d.reason
                    );
                    assert!(!d.reason.is_empty(), "{name}");
                }
            }
        }
    }
}

#[test]
fn action_uploads_that_do_not_compile_name_their_part() {
    for case in action_cases().invalid {
        let err = ActionRules::compile("acme.v1", &case.schema, &case.rules)
            .err()
            .unwrap_or_else(|| panic!("{}: accepted", case.name));
        assert_eq!(err.part(), case.part, "{}: {err}", case.name);
        assert!(
            err.to_string().contains(&case.message),
            "{}: {err}",
            case.name
        );
        assert!(!err.problems().problems.is_empty(), "{}", case.name);
    }
}

#[test]
fn an_action_schema_nested_too_deep_is_refused_before_cedar_parses_it() {
    let schema = format!(
        "entity Order = {}\"a\": Long{};\naction \"x\" appliesTo {{ principal: [Payoff::Agent], resource: [Order] }};",
        "{ \"b\": ".repeat(500),
        " }".repeat(500)
    );
    let err = ActionRules::compile("acme.v1", &schema, "permit(principal, action, resource);")
        .err()
        .unwrap();
    assert_eq!(err.part(), "schema");
    assert!(
        err.to_string().contains("nested more than 64 levels"),
        "{err}"
    );
}

/// The sample action schema and rules the README points to compile.
#[test]
fn the_example_action_rules_compile() {
    let rules = ActionRules::compile(
        "shop.v1",
        include_str!("../../../examples/actions/schema.cedarschema"),
        include_str!("../../../examples/actions/rules.cedar"),
    )
    .unwrap();
    let names: Vec<&str> = rules.actions().iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["issue_refund", "send_email"]);
}
