//! Contract files: TOML in, a checked [`Contract`] with compiled rules out.
//!
//! Loading is where every mistake is caught, all at once, each named by
//! file, line and column, so that a contract that loads can always be
//! evaluated and a wrong contract is never stored.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::money::{Currency, Rounding};
use crate::period::{Cadence, Period};
use crate::projection::BillingEvent;
use crate::rules::{Rule, RuleEnv};

/// A loaded contract version.
#[derive(Debug)]
pub struct Contract {
    pub customer: String,
    pub currency: Currency,
    pub cadence: Cadence,
    /// The first period the contract bills.
    pub starts: Period,
    pub base_fee: Decimal,
    pub included: Option<u64>,
    pub minimum: Option<Decimal>,
    pub cap: Option<Decimal>,
    pub rounding: Rounding,
    pub dispute_within: Duration,
    /// What one unit of work costs the customer without the AI (e.g. a
    /// human-handled ticket): the baseline of its ROI.
    pub baseline_unit_cost: Option<Decimal>,
    /// The yearly licence the contract replaces, for the ROI comparison.
    pub licence_equivalent: Option<Decimal>,
    pub outcomes: Vec<OutcomeRule>,
    pub service_levels: Vec<ServiceLevel>,
    /// Hex SHA-256 of the file's bytes: what statements cite.
    pub sha256: String,
    pub source: String,
}

/// One `[[outcome]]`: how events make a result and what it costs.
#[derive(Debug)]
pub struct OutcomeRule {
    pub name: String,
    pub when: Rule,
    pub subject: Option<Rule>,
    pub void_when: Option<Rule>,
    pub matures_after: Duration,
    pub clawback_within: Option<Duration>,
    pub value: Option<Rule>,
    pub included: Option<u64>,
    pub attribution: Attribution,
    pub price: Price,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attribution {
    /// Every outcome counts.
    Direct,
    /// Only the lift proven against a holdout counts (estimated by the
    /// attribution engine; until then such outcomes are listed, not billed).
    Holdout {
        holdout: Decimal,
        confidence: Decimal,
        bill: HoldoutBill,
        /// The experiment whose assignments split subjects; default: the
        /// outcome's name.
        experiment: Option<String>,
        /// Fewer subjects than this in either arm bills nothing.
        min_subjects: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldoutBill {
    LowerBound,
    Estimate,
}

#[derive(Debug)]
pub enum Price {
    PerUnit(Decimal),
    Tiers { mode: TierMode, tiers: Vec<Tier> },
    Percent { of: PercentOf, rate: Decimal },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierMode {
    /// Each unit at the price of the tier it falls in.
    Graduated,
    /// All units at the price of the tier the count falls in.
    Volume,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Last unit of the tier (inclusive); `None` for the open last tier.
    pub up_to: Option<u64>,
    pub price: Decimal,
}

#[derive(Debug)]
pub enum PercentOf {
    /// The outcome's `value` expression.
    Value,
    /// Another expression over the creating event.
    Expression(Rule),
}

/// One `[[service_level]]`.
#[derive(Debug)]
pub struct ServiceLevel {
    pub name: String,
    pub numerator: Rule,
    pub denominator: Rule,
    pub bound: Bound,
    pub min_samples: u64,
    pub credit: Credit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    AtLeast(Decimal),
    AtMost(Decimal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credit {
    /// A fraction (10 % is 0.10) of the period's charges.
    Percent(Decimal),
    Amount(Decimal),
}

/// One problem in a contract file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ContractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// All the problems of one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ContractErrors(pub Vec<ContractError>);

impl fmt::Display for ContractErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    contract: Spanned<RawContract>,
    #[serde(default)]
    outcome: Vec<Spanned<RawOutcome>>,
    #[serde(default)]
    service_level: Vec<Spanned<RawServiceLevel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    customer: Text,
    currency: Text,
    period: Option<Text>,
    starts: Text,
    base_fee: Option<Text>,
    included: Option<Spanned<i64>>,
    minimum: Option<Text>,
    cap: Option<Text>,
    rounding: Option<Text>,
    dispute_within: Option<Text>,
    baseline_unit_cost: Option<Text>,
    licence_equivalent: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutcome {
    name: Text,
    when: Text,
    subject: Option<Text>,
    void_when: Option<Text>,
    matures_after: Option<Text>,
    clawback_within: Option<Text>,
    value: Option<Text>,
    included: Option<Spanned<i64>>,
    attribution: Option<Spanned<toml::Value>>,
    price: Spanned<RawPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    per_unit: Option<Text>,
    tiers: Option<Vec<Spanned<RawTier>>>,
    mode: Option<Text>,
    percent_of: Option<Text>,
    rate: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    up_to: Option<Spanned<i64>>,
    price: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceLevel {
    name: Text,
    numerator: Text,
    denominator: Text,
    at_least: Option<Spanned<toml::Value>>,
    at_most: Option<Spanned<toml::Value>>,
    min_samples: Option<Spanned<i64>>,
    credit: Text,
}

/// Collects errors against one file's text.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<ContractError>,
}

impl Checker<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
        (line, column)
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = self.position(span.start);
        self.errors.push(ContractError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    fn decimal(&mut self, key: &str, value: &Text) -> Option<Decimal> {
        match Decimal::from_str(value.get_ref().trim()) {
            Ok(d) => Some(d),
            Err(_) => {
                self.error(
                    value.span(),
                    format!(
                        "{key}: {:?} is not a decimal number (write amounts as strings like \"12.50\")",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A non-negative amount that needs no rounding in `currency`.
    fn amount(&mut self, key: &str, value: &Text, currency: Option<Currency>) -> Option<Decimal> {
        let d = self.decimal(key, value)?;
        if d.is_sign_negative() {
            self.error(
                value.span(),
                format!("{key}: must not be negative, got {d}"),
            );
            return None;
        }
        if let Some(c) = currency {
            if !c.is_exact(d) {
                self.error(
                    value.span(),
                    format!(
                        "{key}: {d} has more decimals than {} allows ({})",
                        c.code, c.minor_digits
                    ),
                );
                return None;
            }
        }
        Some(d)
    }

    fn price(&mut self, key: &str, value: &Text) -> Option<Decimal> {
        let d = self.decimal(key, value)?;
        if d.is_sign_negative() {
            self.error(
                value.span(),
                format!("{key}: a price must not be negative, got {d}"),
            );
            return None;
        }
        Some(d)
    }

    fn count(&mut self, key: &str, value: &Spanned<i64>) -> Option<u64> {
        match u64::try_from(*value.get_ref()) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(value.span(), format!("{key}: must be 0 or more"));
                None
            }
        }
    }

    fn duration(&mut self, key: &str, value: &Text) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(reason) => {
                self.error(value.span(), format!("{key}: {reason}"));
                None
            }
        }
    }

    fn number(&mut self, key: &str, value: &Spanned<toml::Value>) -> Option<Decimal> {
        let parsed = match value.get_ref() {
            toml::Value::String(s) => Decimal::from_str(s.trim()).ok(),
            toml::Value::Integer(i) => Some(Decimal::from(*i)),
            toml::Value::Float(f) => Decimal::from_str(&f.to_string()).ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                value.span(),
                format!("{key}: must be a number like \"0.95\""),
            );
        }
        parsed
    }

    /// Compiles an expression; errors point into the file at the
    /// expression's own line and column.
    fn rule(&mut self, key: &str, value: &Text, expect: Expect, env: &RuleEnv) -> Option<Rule> {
        let source = value.get_ref();
        match Rule::compile(source) {
            Ok(rule) => {
                if let Some(found) = probe(&rule, env) {
                    if !expect.accepts(found) {
                        self.error(
                            value.span(),
                            format!(
                                "{key}: the expression `{source}` gives {found}, it must give {}",
                                expect.name()
                            ),
                        );
                        return None;
                    }
                }
                Some(rule)
            }
            Err(e) => {
                // The span starts at the opening quote of the TOML string.
                let quote = self.text[value.span()].find(['\'', '"']).unwrap_or(0);
                let (line, column) = self.position(value.span().start + quote + 1);
                let (line, column) = if e.line <= 1 {
                    (line, column + e.column as usize - 1)
                } else {
                    (line + e.line as usize - 1, e.column as usize)
                };
                self.errors.push(ContractError {
                    file: self.file.to_string(),
                    line,
                    column,
                    message: format!(
                        "{key}: the expression `{source}` does not compile: {}",
                        e.message
                    ),
                });
                None
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Expect {
    Bool,
    Text,
    Number,
}

impl Expect {
    fn accepts(&self, found: &str) -> bool {
        match self {
            Expect::Bool => found == "a bool",
            Expect::Text => matches!(found, "a string" | "an int" | "a uint" | "null"),
            Expect::Number => {
                matches!(
                    found,
                    "a string" | "an int" | "a uint" | "a double" | "null"
                )
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Expect::Bool => "a bool",
            Expect::Text => "a string",
            Expect::Number => "a number or a decimal string",
        }
    }
}

/// Evaluates a rule on an empty event of a type it accepts, to catch
/// expressions that can only give the wrong type (`when = 'event.type'`).
fn probe(rule: &Rule, env: &RuleEnv) -> Option<&'static str> {
    let event = BillingEvent {
        sequence: 0,
        id: "probe".into(),
        source: "probe".into(),
        event_type: "probe".into(),
        subject: Some("probe".into()),
        time: chrono::DateTime::UNIX_EPOCH,
        data: serde_json::Value::Object(Default::default()),
    };
    rule.probe_type(&env.scope(&event))
}

/// Parses `72h`, `30d`, `1d12h`, `90s`: whole numbers of days, hours,
/// minutes and seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like \"72h\", \"30d\" or \"1d12h\"");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let part = match c {
            'd' => Duration::try_days(n),
            'h' => Duration::try_hours(n),
            'm' => Duration::try_minutes(n),
            's' => Duration::try_seconds(n),
            _ => None,
        }
        .ok_or_else(bad)?;
        total = total.checked_add(&part).ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

impl Contract {
    /// Loads a contract file; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Contract, ContractErrors> {
        let mut check = Checker {
            file,
            text,
            errors: Vec::new(),
        };
        if let Err(e) = payoff_nesting::check(
            text,
            &payoff_nesting::Syntax::TOML,
            payoff_nesting::DEPTH_MAX,
        ) {
            check.error(e.offset..e.offset + 1, format!("the file is {e}"));
            return Err(ContractErrors(check.errors));
        }
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                check.error(span, e.message().to_string());
                return Err(ContractErrors(check.errors));
            }
        };
        let env = RuleEnv::default();
        let c = raw.contract.get_ref();

        let customer = c.customer.get_ref().clone();
        if customer.is_empty() {
            check.error(c.customer.span(), "customer: must not be empty");
        }
        let currency = Currency::from_code(c.currency.get_ref());
        if currency.is_none() {
            check.error(
                c.currency.span(),
                format!(
                    "currency: {:?} is not an ISO 4217 code like \"USD\"",
                    c.currency.get_ref()
                ),
            );
        }
        let cadence = match &c.period {
            None => Some(Cadence::Monthly),
            Some(p) => {
                let cadence = Cadence::parse(p.get_ref());
                if cadence.is_none() {
                    check.error(
                        p.span(),
                        format!("period: {:?} is not \"monthly\" or \"weekly\"", p.get_ref()),
                    );
                }
                cadence
            }
        };
        let starts = match NaiveDate::parse_from_str(c.starts.get_ref(), "%Y-%m-%d") {
            Err(_) => {
                check.error(
                    c.starts.span(),
                    format!(
                        "starts: {:?} is not a date like \"2026-11-01\"",
                        c.starts.get_ref()
                    ),
                );
                None
            }
            Ok(date) => cadence.and_then(|cadence| {
                let p = Period::starting_on(cadence, date);
                if p.is_none() {
                    check.error(
                        c.starts.span(),
                        format!(
                            "starts: {date} is not the first day of a {} period",
                            cadence.name()
                        ),
                    );
                }
                p
            }),
        };
        let base_fee = match &c.base_fee {
            Some(v) => check.amount("base_fee", v, currency),
            None => Some(Decimal::ZERO),
        };
        let included = c.included.as_ref().and_then(|v| check.count("included", v));
        let minimum = c
            .minimum
            .as_ref()
            .map(|v| check.amount("minimum", v, currency));
        let cap = c.cap.as_ref().map(|v| check.amount("cap", v, currency));
        let rounding = match &c.rounding {
            None => Some(Rounding::default()),
            Some(r) => {
                let rule = Rounding::parse(r.get_ref());
                if rule.is_none() {
                    check.error(
                        r.span(),
                        format!(
                            "rounding: {:?} is not one of half_even, half_up, down, up",
                            r.get_ref()
                        ),
                    );
                }
                rule
            }
        };
        let baseline_unit_cost = c
            .baseline_unit_cost
            .as_ref()
            .map(|v| check.price("baseline_unit_cost", v));
        let licence_equivalent = c
            .licence_equivalent
            .as_ref()
            .map(|v| check.amount("licence_equivalent", v, currency));
        let dispute_within = match &c.dispute_within {
            Some(v) => check.duration("dispute_within", v),
            None => Some(Duration::days(30)),
        };

        let mut names = BTreeSet::new();
        let mut outcomes = Vec::new();
        if raw.outcome.is_empty() {
            check.error(raw.contract.span(), "the contract defines no [[outcome]]");
        }
        for o in &raw.outcome {
            let o = o.get_ref();
            let name = o.name.get_ref();
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                check.error(
                    o.name.span(),
                    format!("outcome name {name:?}: use lowercase letters, digits and _"),
                );
            } else if !names.insert(name.clone()) {
                check.error(
                    o.name.span(),
                    format!("outcome name {name:?} is used twice"),
                );
            }
            let when = check.rule("when", &o.when, Expect::Bool, &env);
            let subject = o
                .subject
                .as_ref()
                .map(|v| check.rule("subject", v, Expect::Text, &env));
            let void_when = o
                .void_when
                .as_ref()
                .map(|v| check.rule("void_when", v, Expect::Bool, &env));
            let value = o
                .value
                .as_ref()
                .map(|v| check.rule("value", v, Expect::Number, &env));
            let matures_after = match &o.matures_after {
                Some(v) => check.duration("matures_after", v),
                None => Some(Duration::zero()),
            };
            let clawback_within = o
                .clawback_within
                .as_ref()
                .map(|v| check.duration("clawback_within", v));
            let included = o.included.as_ref().map(|v| check.count("included", v));
            let attribution = match &o.attribution {
                None => Some(Attribution::Direct),
                Some(a) => attribution(&mut check, a),
            };
            let price = price(&mut check, &o.price, o.value.is_some(), &env);
            if let (
                Some(when),
                Some(subject),
                Some(void_when),
                Some(value),
                Some(matures_after),
                Some(clawback_within),
                Some(included),
                Some(attribution),
                Some(price),
            ) = (
                when,
                subject.transpose_all(),
                void_when.transpose_all(),
                value.transpose_all(),
                matures_after,
                clawback_within.transpose_all(),
                included.transpose_all(),
                attribution,
                price,
            ) {
                outcomes.push(OutcomeRule {
                    name: name.clone(),
                    when,
                    subject,
                    void_when,
                    matures_after,
                    clawback_within,
                    value,
                    included,
                    attribution,
                    price,
                });
            }
        }

        let mut service_levels = Vec::new();
        for s in &raw.service_level {
            let s = s.get_ref();
            let name = s.name.get_ref().clone();
            if !names.insert(name.clone()) {
                check.error(s.name.span(), format!("name {name:?} is used twice"));
            }
            let numerator = check.rule("numerator", &s.numerator, Expect::Bool, &env);
            let denominator = check.rule("denominator", &s.denominator, Expect::Bool, &env);
            let bound = match (&s.at_least, &s.at_most) {
                (Some(v), None) => check.number("at_least", v).map(Bound::AtLeast),
                (None, Some(v)) => check.number("at_most", v).map(Bound::AtMost),
                _ => {
                    check.error(
                        s.name.span(),
                        format!("service level {name:?}: give exactly one of at_least or at_most"),
                    );
                    None
                }
            };
            let min_samples = match &s.min_samples {
                Some(v) => check.count("min_samples", v),
                None => Some(1),
            };
            let credit = credit(&mut check, &s.credit, currency);
            if let (
                Some(numerator),
                Some(denominator),
                Some(bound),
                Some(min_samples),
                Some(credit),
            ) = (numerator, denominator, bound, min_samples, credit)
            {
                service_levels.push(ServiceLevel {
                    name,
                    numerator,
                    denominator,
                    bound,
                    min_samples,
                    credit,
                });
            }
        }

        check.errors.sort_by_key(|e| (e.line, e.column));
        match (
            currency,
            cadence,
            starts,
            base_fee,
            minimum.transpose_all(),
            cap.transpose_all(),
            rounding,
            dispute_within,
        ) {
            (
                Some(currency),
                Some(cadence),
                Some(starts),
                Some(base_fee),
                Some(minimum),
                Some(cap),
                Some(rounding),
                Some(dispute_within),
            ) if check.errors.is_empty() => Ok(Contract {
                customer,
                currency,
                cadence,
                starts,
                base_fee,
                included,
                minimum,
                cap,
                rounding,
                dispute_within,
                baseline_unit_cost: baseline_unit_cost.flatten(),
                licence_equivalent: licence_equivalent.flatten(),
                outcomes,
                service_levels,
                sha256: hex::encode(Sha256::digest(text.as_bytes())),
                source: text.to_string(),
            }),
            _ => Err(ContractErrors(check.errors)),
        }
    }

    /// The holdout share of an experiment, from the outcome that names it.
    pub fn experiment(&self, name: &str) -> Option<(usize, Decimal)> {
        self.outcomes
            .iter()
            .enumerate()
            .find_map(|(i, o)| match &o.attribution {
                Attribution::Holdout {
                    holdout,
                    experiment,
                    ..
                } if experiment.as_deref().unwrap_or(&o.name) == name => Some((i, *holdout)),
                _ => None,
            })
    }

    /// The index of an outcome kind by name.
    pub fn outcome_index(&self, name: &str) -> Option<usize> {
        self.outcomes.iter().position(|o| o.name == name)
    }
}

/// Which event types some contracts can need, as plain data that any
/// thread can consult: a close reads millions of events and skips, without
/// parsing, those no rule can match.
#[derive(Debug, Clone, Default)]
pub struct TypeFilter {
    any: bool,
    types: BTreeSet<String>,
    /// Payoff's own event types wanted besides the rules' types.
    own: &'static [&'static str],
}

/// What a holdout reads besides outcomes.
const HOLDOUT_TYPES: &[&str] = &[crate::record::ASSIGNMENT, crate::record::RELEASE];

impl TypeFilter {
    pub fn of(contracts: &[&Contract]) -> TypeFilter {
        let mut filter = TypeFilter {
            own: crate::record::RECORD_TYPES,
            ..TypeFilter::default()
        };
        let mut add = |rule: &Rule| match rule.pinned_types() {
            Some(types) => filter.types.extend(types.iter().cloned()),
            None => filter.any = true,
        };
        for c in contracts {
            for o in &c.outcomes {
                add(&o.when);
                if let Some(v) = &o.void_when {
                    add(v);
                }
            }
            for s in &c.service_levels {
                add(&s.numerator);
                add(&s.denominator);
            }
        }
        filter
    }

    /// What a close still reads when the outcomes come kept from a read
    /// model ([`crate::KeptOutcomes`]): the service levels' events unless
    /// their counts are kept too, and for holdout kinds the assignments and
    /// releases. `None` when that is nothing, so the close reads no event.
    pub fn side(contracts: &[&Contract], service: bool) -> Option<TypeFilter> {
        let mut filter = TypeFilter::default();
        for c in contracts {
            for s in c.service_levels.iter().filter(|_| service) {
                for rule in [&s.numerator, &s.denominator] {
                    match rule.pinned_types() {
                        Some(types) => filter.types.extend(types.iter().cloned()),
                        None => filter.any = true,
                    }
                }
            }
            if c.outcomes
                .iter()
                .any(|o| matches!(o.attribution, Attribution::Holdout { .. }))
            {
                filter.own = HOLDOUT_TYPES;
            }
        }
        (filter.any || !filter.types.is_empty() || !filter.own.is_empty()).then_some(filter)
    }

    /// Everything: for readers that need every event.
    pub fn everything() -> TypeFilter {
        TypeFilter {
            any: true,
            types: BTreeSet::new(),
            own: crate::record::RECORD_TYPES,
        }
    }

    /// The event types wanted, for a store to select; `None` for every
    /// event. The projection's own types are always among them.
    pub fn types(&self) -> Option<Vec<&str>> {
        if self.any {
            return None;
        }
        let mut types: Vec<&str> = self.types.iter().map(String::as_str).collect();
        for &own in self.own {
            if !types.contains(&own) {
                types.push(own);
            }
        }
        Some(types)
    }

    pub fn wants(&self, event_type: &str) -> bool {
        self.any || self.own.contains(&event_type) || self.types.contains(event_type)
    }
}

/// `Option<Option<T>>` where the inner `None` means "failed": `Some(None)`
/// for an absent key, `None` when it failed.
trait TransposeAll<T> {
    fn transpose_all(self) -> Option<Option<T>>;
}

impl<T> TransposeAll<T> for Option<Option<T>> {
    fn transpose_all(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(Some(v)) => Some(Some(v)),
            Some(None) => None,
        }
    }
}

fn attribution(check: &mut Checker, value: &Spanned<toml::Value>) -> Option<Attribution> {
    let span = value.span();
    match value.get_ref() {
        toml::Value::String(s) if s == "direct" => Some(Attribution::Direct),
        toml::Value::Table(t) => {
            let allowed = [
                "holdout",
                "confidence",
                "bill",
                "experiment",
                "min_subjects",
            ];
            if let Some(k) = t.keys().find(|k| !allowed.contains(&k.as_str())) {
                check.error(span, format!("attribution: unknown key {k:?}"));
                return None;
            }
            let share = |key: &str, default: Option<Decimal>| -> Result<Decimal, String> {
                match t.get(key) {
                    None => default.ok_or(format!("attribution: {key} is required")),
                    Some(toml::Value::Float(f)) => Decimal::from_str(&f.to_string())
                        .map_err(|_| format!("attribution: {key} is not a number")),
                    Some(toml::Value::String(s)) => Decimal::from_str(s)
                        .map_err(|_| format!("attribution: {key} is not a number")),
                    Some(_) => Err(format!("attribution: {key} must be a number like 0.10")),
                }
                .and_then(|d| {
                    if d > Decimal::ZERO && d < Decimal::ONE {
                        Ok(d)
                    } else {
                        Err(format!(
                            "attribution: {key} must be between 0 and 1, got {d}"
                        ))
                    }
                })
            };
            let holdout = share("holdout", None).and_then(|h| {
                if h <= Decimal::new(5, 1) {
                    Ok(h)
                } else {
                    Err(format!(
                        "attribution: holdout must be in (0, 0.5]: the AI serves the larger arm, got {h}"
                    ))
                }
            });
            let min_subjects = match t.get("min_subjects") {
                None => Ok(100),
                Some(toml::Value::Integer(n)) if *n >= 2 => Ok(*n as u64),
                Some(_) => {
                    Err("attribution: min_subjects must be a whole number, 2 or more".to_string())
                }
            };
            let confidence = share("confidence", Some(Decimal::new(95, 2)));
            let bill = match t.get("bill").map(|v| v.as_str()) {
                None | Some(Some("lower_bound")) => Ok(HoldoutBill::LowerBound),
                Some(Some("estimate")) => Ok(HoldoutBill::Estimate),
                _ => Err("attribution: bill must be \"lower_bound\" or \"estimate\"".to_string()),
            };
            let experiment = match t.get("experiment") {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err("attribution: experiment must be a string".to_string()),
            };
            match (holdout, confidence, bill, experiment, min_subjects) {
                (Ok(holdout), Ok(confidence), Ok(bill), Ok(experiment), Ok(min_subjects)) => {
                    Some(Attribution::Holdout {
                        holdout,
                        confidence,
                        bill,
                        experiment,
                        min_subjects,
                    })
                }
                (h, c, b, x, m) => {
                    for e in [h.err(), c.err(), b.err(), x.err(), m.err()]
                        .into_iter()
                        .flatten()
                    {
                        check.error(span.clone(), e);
                    }
                    None
                }
            }
        }
        _ => {
            check.error(
                span,
                "attribution: must be \"direct\" or { holdout = 0.10, confidence = 0.95, bill = \"lower_bound\" }",
            );
            None
        }
    }
}

fn price(
    check: &mut Checker,
    raw: &Spanned<RawPrice>,
    has_value: bool,
    env: &RuleEnv,
) -> Option<Price> {
    let span = raw.span();
    let p = raw.get_ref();
    let forms = [
        p.per_unit.is_some(),
        p.tiers.is_some(),
        p.percent_of.is_some(),
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        check.error(
            span,
            "price: give exactly one of per_unit, tiers or percent_of",
        );
        return None;
    }
    if let Some(v) = &p.per_unit {
        if p.mode.is_some() || p.rate.is_some() {
            check.error(span, "price: per_unit takes no mode or rate");
            return None;
        }
        return check.price("per_unit", v).map(Price::PerUnit);
    }
    if let Some(tiers) = &p.tiers {
        if p.rate.is_some() {
            check.error(span, "price: tiers take no rate");
            return None;
        }
        let mode = match p.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
            None | Some(("graduated", _)) => Some(TierMode::Graduated),
            Some(("volume", _)) => Some(TierMode::Volume),
            Some((other, span)) => {
                check.error(
                    span,
                    format!("price: mode {other:?} is not \"graduated\" or \"volume\""),
                );
                None
            }
        };
        if tiers.is_empty() {
            check.error(span, "price: tiers must not be empty");
            return None;
        }
        let mut out = Vec::new();
        let mut last: Option<u64> = None;
        let mut ok = true;
        for (i, t) in tiers.iter().enumerate() {
            let is_last = i + 1 == tiers.len();
            let tier = t.get_ref();
            let price = check.price("tiers.price", &tier.price);
            let up_to = match &tier.up_to {
                None if is_last => None,
                None => {
                    check.error(t.span(), "tiers: only the last tier may omit up_to");
                    ok = false;
                    None
                }
                Some(u) => {
                    let n = check.count("tiers.up_to", u);
                    if let (Some(n), Some(prev)) = (n, last) {
                        if n <= prev {
                            check.error(
                                u.span(),
                                format!(
                                    "tiers.up_to: {n} must be above the previous tier's {prev}"
                                ),
                            );
                            ok = false;
                        }
                    }
                    if n == Some(0) {
                        check.error(u.span(), "tiers.up_to: must be at least 1");
                        ok = false;
                    }
                    last = n.or(last);
                    n
                }
            };
            match price {
                Some(price) => out.push(Tier { up_to, price }),
                None => ok = false,
            }
        }
        if ok && out.last().is_some_and(|t| t.up_to.is_some()) {
            check.error(
                span,
                "tiers: the last tier must have no up_to, so that every unit has a price",
            );
            ok = false;
        }
        return (ok && mode.is_some()).then(|| Price::Tiers {
            mode: mode.expect("checked"),
            tiers: out,
        });
    }
    let of = p.percent_of.as_ref().expect("one form is present");
    if p.mode.is_some() {
        check.error(span.clone(), "price: percent_of takes no mode");
    }
    let rate = match &p.rate {
        Some(r) => check.price("rate", r),
        None => {
            check.error(span, "price: percent_of needs a rate, e.g. rate = \"0.03\"");
            None
        }
    };
    let of = if of.get_ref() == "value" {
        if !has_value {
            check.error(
                of.span(),
                "percent_of = \"value\" needs the outcome's value expression",
            );
            None
        } else {
            Some(PercentOf::Value)
        }
    } else {
        check
            .rule("percent_of", of, Expect::Number, env)
            .map(PercentOf::Expression)
    };
    Some(Price::Percent {
        of: of?,
        rate: rate?,
    })
}

fn credit(check: &mut Checker, value: &Text, currency: Option<Currency>) -> Option<Credit> {
    let text = value.get_ref().trim();
    if let Some(pct) = text.strip_suffix('%') {
        match Decimal::from_str(pct.trim()) {
            Ok(p) if p >= Decimal::ZERO && p <= Decimal::ONE_HUNDRED => {
                Some(Credit::Percent(p / Decimal::ONE_HUNDRED))
            }
            _ => {
                check.error(
                    value.span(),
                    format!("credit: {text:?} is not a percentage between 0% and 100%"),
                );
                None
            }
        }
    } else {
        check.amount("credit", value, currency).map(Credit::Amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[contract]
customer = "acme"
currency = "USD"
period = "monthly"
starts = "2026-11-01"
base_fee = "500.00"
cap = "5000.00"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
void_when = 'event.type == "ticket.reopened"'
matures_after = "72h"
price = { per_unit = "0.90" }

[[outcome]]
name = "qualified_lead"
when = 'event.type == "lead.stage_changed" && event.data.stage == "SQL"'
value = 'event.data.expected_value'
attribution = { holdout = 0.10, confidence = 0.95, bill = "lower_bound" }
price = { percent_of = "value", rate = "0.03" }

[[service_level]]
name = "answer_accuracy"
numerator = 'event.type == "review.done" && event.data.correct'
denominator = 'event.type == "review.done"'
at_least = 0.95
credit = "10%"
"#;

    #[test]
    fn the_product_example_loads() {
        let c = Contract::parse("acme.toml", GOOD).unwrap();
        assert_eq!(c.currency.code, "USD");
        assert_eq!(c.outcomes.len(), 2);
        assert_eq!(c.outcomes[0].matures_after, Duration::hours(72));
        assert!(matches!(
            c.outcomes[1].attribution,
            Attribution::Holdout { .. }
        ));
        assert_eq!(
            c.service_levels[0].credit,
            Credit::Percent(Decimal::new(10, 2))
        );
        assert_eq!(c.dispute_within, Duration::days(30));
        assert_eq!(c.sha256.len(), 64);
    }

    fn errors(text: &str) -> Vec<String> {
        Contract::parse("c.toml", text)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn every_error_is_reported_with_its_position() {
        let bad = GOOD
            .replace("\"USD\"", "\"USX\"")
            .replace("\"0.90\"", "\"-0.90\"")
            .replace("\"72h\"", "\"three days\"");
        let errs = errors(&bad);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].starts_with("c.toml:4:12: currency: \"USX\""),
            "{}",
            errs[0]
        );
        assert!(errs
            .iter()
            .any(|e| e.contains("matures_after: \"three days\"")));
        assert!(errs
            .iter()
            .any(|e| e.contains("per_unit: a price must not be negative")));
    }

    #[test]
    fn cel_errors_name_line_column_and_expression() {
        let bad = GOOD.replace(
            r#"when = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'"#,
            r#"when = 'event.type == "ticket.closed" &&'"#,
        );
        let errs = errors(&bad);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].starts_with("c.toml:12:"), "{}", errs[0]);
        assert!(errs[0].contains("`event.type == \"ticket.closed\" &&` does not compile"));
        let wrong_type = GOOD.replace(
            r#"void_when = 'event.type == "ticket.reopened"'"#,
            r#"void_when = 'event.type'"#,
        );
        let errs = errors(&wrong_type);
        assert!(
            errs[0].contains("gives a string, it must give a bool"),
            "{errs:?}"
        );
    }

    /// Issue 15: CEL and TOML parsers recurse once per level, so a contract
    /// nested deep enough overflowed a worker's stack and aborted the server.
    /// Checked on a thread with a server worker's stack (2 MiB).
    #[test]
    fn deeply_nested_rules_and_tables_are_refused_before_parsing() {
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                for depth in [65, 1_000, 100_000] {
                    let deep_rule = GOOD.replace(
                        r#"void_when = 'event.type == "ticket.reopened"'"#,
                        &format!(
                            r#"void_when = '{}event.type == "ticket.reopened"{}'"#,
                            "(".repeat(depth),
                            ")".repeat(depth)
                        ),
                    );
                    let errs = errors(&deep_rule);
                    assert_eq!(errs.len(), 1, "{errs:#?}");
                    assert!(
                        errs[0].contains("nested more than 64 levels"),
                        "{}",
                        errs[0]
                    );
                    let deep_table =
                        format!("{GOOD}\nx = {}{}\n", "[".repeat(depth), "]".repeat(depth));
                    let errs = errors(&deep_table);
                    assert!(
                        errs[0].contains("nested more than 64 levels"),
                        "{}",
                        errs[0]
                    );
                }
                let at_limit = GOOD.replace(
                    r#"void_when = 'event.type == "ticket.reopened"'"#,
                    &format!(
                        r#"void_when = '{}event.type == "ticket.reopened"{}'"#,
                        "(".repeat(60),
                        ")".repeat(60)
                    ),
                );
                Contract::parse("c.toml", &at_limit).expect("60 levels are allowed");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_shapes_are_refused() {
        let errs = errors(&GOOD.replace("cap = ", "ceiling = "));
        assert!(errs[0].contains("unknown field `ceiling`"), "{errs:?}");
        let errs = errors(&GOOD.replace(
            "price = { per_unit = \"0.90\" }",
            "price = { tiers = [ { up_to = 10, price = \"1\" }, { up_to = 5, price = \"0.5\" } ] }",
        ));
        assert!(
            errs.iter()
                .any(|e| e.contains("must be above the previous")),
            "{errs:?}"
        );
        let errs = errors(&GOOD.replace(
            "price = { per_unit = \"0.90\" }",
            "price = { tiers = [ { up_to = 10, price = \"1\" }, { up_to = 20, price = \"0.5\" } ] }",
        ));
        assert!(
            errs.iter()
                .any(|e| e.contains("last tier must have no up_to")),
            "{errs:?}"
        );
        let errs = errors(&GOOD.replace("base_fee = \"500.00\"", "base_fee = \"500.001\""));
        assert!(
            errs[0].contains("more decimals than USD allows"),
            "{errs:?}"
        );
        let errs = errors(&GOOD.replace("starts = \"2026-11-01\"", "starts = \"2026-11-02\""));
        assert!(
            errs[0].contains("not the first day of a monthly period"),
            "{errs:?}"
        );
        for share in ["0.6", "0", "-0.1"] {
            let errs = errors(&GOOD.replace("holdout = 0.10", &format!("holdout = {share}")));
            assert!(
                errs[0].contains("attribution: holdout"),
                "{share}: {errs:?}"
            );
        }
        let errs = errors(&GOOD.replace("holdout = 0.10", "holdout = 0.10, min_subjects = 1"));
        assert!(errs[0].contains("min_subjects"), "{errs:?}");
        let errs = errors(&GOOD.replace("credit = \"10%\"", "credit = \"110%\""));
        assert!(errs[0].contains("between 0% and 100%"), "{errs:?}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("72h").unwrap(), Duration::hours(72));
        assert_eq!(parse_duration("1d12h").unwrap(), Duration::hours(36));
        assert_eq!(parse_duration("90s").unwrap(), Duration::seconds(90));
        assert_eq!(parse_duration("0s").unwrap(), Duration::zero());
        for bad in ["", "72", "h", "3 days", "1w", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
