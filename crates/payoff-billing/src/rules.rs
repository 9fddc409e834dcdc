//! CEL rules over events: compiled once per contract version, evaluated
//! per event.
//!
//! Each expression sees one variable, `event`, a map of the event's
//! attributes and its `data`. Most rules start with a test of the event's
//! type; that test is read off the compiled expression so that events of
//! other types skip evaluation altogether.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{Expr, LiteralValue};
use cel::objects::{Key, Map};
use cel::{Context, Env, IdedExpr, Program, Value};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::str::FromStr;

use crate::projection::BillingEvent;

/// One compiled CEL expression and the source it came from.
pub struct Rule {
    pub source: String,
    program: Program,
    /// The event types the expression can be true for, when its top-level
    /// conjunction pins them; `None` when any type could match.
    types: Option<Vec<String>>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("source", &self.source)
            .finish()
    }
}

/// Why an expression does not compile: the position is inside the
/// expression, 1-based line, 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// The shared evaluation environment (CEL's standard library).
#[derive(Clone)]
pub struct RuleEnv {
    env: Arc<Env>,
}

impl Default for RuleEnv {
    fn default() -> Self {
        RuleEnv {
            env: Arc::new(Env::stdlib()),
        }
    }
}

/// An event prepared once for every rule that looks at it.
pub struct Scope {
    context: Context<'static, 'static>,
}

impl RuleEnv {
    /// Binds `event` for evaluation.
    pub fn scope(&self, event: &BillingEvent) -> Scope {
        let mut context = Context::with_env(self.env.clone());
        context.add_variable_from_value("event", event_value(event));
        Scope { context }
    }
}

impl Rule {
    pub fn compile(source: &str) -> Result<Rule, CompileError> {
        // CEL's parser recurses once per level: a rule nested a few hundred
        // levels deep would overflow the stack and abort the server, so the
        // depth is bounded before the parser sees the text.
        payoff_nesting::check(
            source,
            &payoff_nesting::Syntax::CEL,
            payoff_nesting::DEPTH_MAX,
        )
        .map_err(|e| CompileError {
            line: e.line as u32,
            column: e.column as u32,
            message: e.to_string(),
        })?;
        let program = Program::compile(source).map_err(|errors| {
            let first = errors.errors.first();
            CompileError {
                line: first.map(|e| e.pos.0.max(1) as u32).unwrap_or(1),
                column: first.map(|e| e.pos.1.max(0) as u32 + 1).unwrap_or(1),
                message: first
                    .map(|e| e.msg.clone())
                    .unwrap_or_else(|| "does not parse".into()),
            }
        })?;
        let types = pinned_types(program.expression());
        Ok(Rule {
            source: source.to_string(),
            program,
            types,
        })
    }

    /// The event types the rule can hold for, when it pins them.
    pub fn pinned_types(&self) -> Option<&[String]> {
        self.types.as_deref()
    }

    /// False only when the rule certainly does not hold for an event of
    /// this type.
    pub fn may_match(&self, event_type: &str) -> bool {
        match &self.types {
            Some(types) => types.iter().any(|t| t == event_type),
            None => true,
        }
    }

    fn eval(&self, scope: &Scope) -> Result<Value, String> {
        self.program
            .execute(&scope.context)
            .map_err(|e| e.to_string())
    }

    /// Evaluates a condition. A missing field or a type error counts as
    /// "does not hold", as CEL's `has()`-less style expects, so that events
    /// of other shapes never create outcomes by accident.
    pub fn holds(&self, scope: &Scope) -> bool {
        matches!(self.eval(scope), Ok(Value::Bool(true)))
    }

    /// Evaluates an expression that must give a string (a subject).
    pub fn text(&self, scope: &Scope) -> Result<String, String> {
        match self.eval(scope)? {
            Value::String(s) => Ok(s.to_string()),
            Value::Int(i) => Ok(i.to_string()),
            Value::UInt(u) => Ok(u.to_string()),
            other => Err(format!("gives {}, not a string", type_name(&other))),
        }
    }

    /// Evaluates an expression that must give a decimal: a decimal string,
    /// an integer, or a double (taken by its shortest decimal form).
    pub fn decimal(&self, scope: &Scope) -> Result<Decimal, String> {
        match self.eval(scope)? {
            Value::String(s) => Decimal::from_str(s.trim())
                .map_err(|_| format!("gives {:?}, not a decimal number", s.as_str())),
            Value::Int(i) => Ok(Decimal::from(i)),
            Value::UInt(u) => Ok(Decimal::from(u)),
            Value::Float(f) if f.is_finite() => Decimal::from_str(&format!("{f}"))
                .or_else(|_| Decimal::from_scientific(&format!("{f:e}")))
                .map_err(|_| format!("gives {f}, out of range")),
            other => Err(format!("gives {}, not a number", type_name(&other))),
        }
    }

    /// What a probe evaluation says about the result type, for load-time
    /// checks: `Some(type name)` when the expression evaluated cleanly.
    pub fn probe_type(&self, scope: &Scope) -> Option<&'static str> {
        self.eval(scope).ok().map(|v| type_name(&v))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Function(..) => "a function",
        Value::Int(_) => "an int",
        Value::UInt(_) => "a uint",
        Value::Float(_) => "a double",
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "a bool",
        Value::Duration(_) => "a duration",
        Value::Timestamp(_) => "a timestamp",
        Value::Null => "null",
        _ => "a value",
    }
}

/// `event.type == "x"` terms of the top-level `&&` chain, or an `||` of them.
fn pinned_types(expr: &IdedExpr) -> Option<Vec<String>> {
    let Expr::Call(call) = &expr.expr else {
        return None;
    };
    match (call.func_name.as_str(), call.args.as_slice()) {
        ("_&&_", [a, b]) => pinned_types(a).or_else(|| pinned_types(b)),
        ("_||_", [a, b]) => {
            let mut types = pinned_types(a)?;
            types.extend(pinned_types(b)?);
            Some(types)
        }
        ("_==_", [a, b]) => type_literal(a, b).or_else(|| type_literal(b, a)),
        _ => None,
    }
}

fn type_literal(select: &IdedExpr, literal: &IdedExpr) -> Option<Vec<String>> {
    let Expr::Select(sel) = &select.expr else {
        return None;
    };
    let Expr::Ident(name) = &sel.operand.expr else {
        return None;
    };
    let Expr::Literal(LiteralValue::String(value)) = &literal.expr else {
        return None;
    };
    (name == "event" && sel.field == "type" && !sel.test).then(|| vec![value.inner().to_string()])
}

fn event_value(event: &BillingEvent) -> Value {
    let mut map: HashMap<Key, Value> = HashMap::with_capacity(6);
    let mut put = |k: &str, v: Value| {
        map.insert(Key::String(Arc::new(k.to_string())), v);
    };
    put("id", Value::String(Arc::new(event.id.clone())));
    put("source", Value::String(Arc::new(event.source.clone())));
    put("type", Value::String(Arc::new(event.event_type.clone())));
    put(
        "subject",
        event
            .subject
            .as_ref()
            .map(|s| Value::String(Arc::new(s.clone())))
            .unwrap_or(Value::Null),
    );
    put("time", timestamp(event.time));
    put("data", json_value(&event.data));
    Value::Map(Map { map: Arc::new(map) })
}

fn timestamp(t: DateTime<Utc>) -> Value {
    Value::Timestamp(t.fixed_offset())
}

fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_value).collect()))
        }
        serde_json::Value::Object(fields) => Value::Map(Map {
            map: Arc::new(
                fields
                    .iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_value(v)))
                    .collect(),
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(t: &str, data: serde_json::Value) -> BillingEvent {
        BillingEvent {
            sequence: 1,
            id: "e1".into(),
            source: "s".into(),
            event_type: t.into(),
            subject: Some("T-1".into()),
            time: "2026-11-02T10:00:00Z".parse().unwrap(),
            data,
        }
    }

    #[test]
    fn conditions_see_attributes_and_data() {
        let env = RuleEnv::default();
        let rule =
            Rule::compile(r#"event.type == "ticket.closed" && event.data.by == "ai""#).unwrap();
        let yes = env.scope(&event("ticket.closed", json!({"by": "ai"})));
        let no = env.scope(&event("ticket.closed", json!({"by": "human"})));
        let missing = env.scope(&event("ticket.closed", json!({})));
        assert!(rule.holds(&yes));
        assert!(!rule.holds(&no));
        assert!(!rule.holds(&missing), "a missing field is not a match");
        let subject = Rule::compile(r#"event.subject + "/x""#).unwrap();
        assert_eq!(subject.text(&yes).unwrap(), "T-1/x");
        let when = Rule::compile(r#"event.time > timestamp("2026-11-01T00:00:00Z")"#).unwrap();
        assert!(when.holds(&yes));
    }

    #[test]
    fn types_pinned_by_the_expression_are_read_off_it() {
        let r = Rule::compile(r#"event.type == "a" && event.data.x == 1"#).unwrap();
        assert!(r.may_match("a") && !r.may_match("b"));
        let r = Rule::compile(r#"(event.type == "a" || "b" == event.type) && true"#).unwrap();
        assert!(r.may_match("a") && r.may_match("b") && !r.may_match("c"));
        let r = Rule::compile(r#"event.type == "a" || event.data.x == 1"#).unwrap();
        assert!(r.may_match("zzz"), "an || with a free side pins nothing");
        let r = Rule::compile(r#"event.type != "a""#).unwrap();
        assert!(r.may_match("a"));
    }

    #[test]
    fn decimals_come_from_strings_ints_and_doubles() {
        let env = RuleEnv::default();
        let scope = env.scope(&event(
            "x",
            json!({"s": "1234.50", "i": 7, "f": 0.1, "b": true}),
        ));
        let get = |src: &str| Rule::compile(src).unwrap().decimal(&scope);
        assert_eq!(
            get("event.data.s").unwrap(),
            Decimal::from_str("1234.50").unwrap()
        );
        assert_eq!(get("event.data.i").unwrap(), Decimal::from(7));
        assert_eq!(
            get("event.data.f").unwrap(),
            Decimal::from_str("0.1").unwrap()
        );
        assert!(get("event.data.b").unwrap_err().contains("bool"));
        assert!(get("event.data.nope").is_err());
    }

    #[test]
    fn compile_errors_have_a_position() {
        let e = Rule::compile("event.type == ").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.column > 1, "{e:?}");
    }
}
