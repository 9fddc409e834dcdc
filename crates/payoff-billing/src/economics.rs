//! Cost of service: what each model call and other cost cost, attributed
//! to the subject it served and, through it, to the outcome it produced.
//!
//! Prices are a versioned table, so a price change never rewrites the cost
//! of calls made before it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use crate::period::Period;
use crate::projection::BillingEvent;

pub use payoff_ledger::{ModelCall, COST_INCURRED, LLM_CALL};

/// Price of one model, in USD per million tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub model: String,
    #[serde(default)]
    pub provider: Option<String>,
    pub input_per_million: Decimal,
    pub output_per_million: Decimal,
    /// Input read from the provider's cache; defaults to the input price.
    #[serde(default)]
    pub cached_input_per_million: Option<Decimal>,
    /// Input written to the provider's cache (`cache_creation_input_tokens`);
    /// defaults to the input price.
    #[serde(default)]
    pub cache_write_per_million: Option<Decimal>,
    /// Output spent reasoning (`reasoning_tokens`); defaults to the output
    /// price.
    #[serde(default)]
    pub reasoning_per_million: Option<Decimal>,
}

/// A version of the price table, in force from `effective` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    pub effective: DateTime<Utc>,
    #[serde(rename = "model")]
    pub models: Vec<ModelPrice>,
}

/// List prices of common models (USD per million tokens, late 2026), so
/// that costs are visible before a provider configures its own.
pub const DEFAULT_PRICES: &str = r#"
effective = "2020-01-01T00:00:00Z"

[[model]]
model = "gpt-4o"
provider = "openai"
input_per_million = "2.50"
output_per_million = "10.00"
cached_input_per_million = "1.25"

[[model]]
model = "gpt-4o-mini"
provider = "openai"
input_per_million = "0.15"
output_per_million = "0.60"
cached_input_per_million = "0.075"

[[model]]
model = "gpt-4.1"
provider = "openai"
input_per_million = "2.00"
output_per_million = "8.00"
cached_input_per_million = "0.50"

[[model]]
model = "gpt-4.1-mini"
provider = "openai"
input_per_million = "0.40"
output_per_million = "1.60"
cached_input_per_million = "0.10"

[[model]]
model = "claude-sonnet-4"
provider = "anthropic"
input_per_million = "3.00"
output_per_million = "15.00"
cached_input_per_million = "0.30"

[[model]]
model = "claude-haiku-4"
provider = "anthropic"
input_per_million = "1.00"
output_per_million = "5.00"
cached_input_per_million = "0.10"

[[model]]
model = "extractive"
provider = "payoff"
input_per_million = "0"
output_per_million = "0"
"#;

impl PriceTable {
    /// Parses a price table; errors name the problem.
    pub fn parse(text: &str) -> Result<PriceTable, String> {
        let table: PriceTable = toml::from_str(text).map_err(|e| e.message().to_string())?;
        for m in &table.models {
            let prices = [
                Some(m.input_per_million),
                Some(m.output_per_million),
                m.cached_input_per_million,
                m.cache_write_per_million,
                m.reasoning_per_million,
            ];
            if prices.iter().flatten().any(|p| p.is_sign_negative()) {
                return Err(format!("model {}: prices must not be negative", m.model));
            }
        }
        Ok(table)
    }

    /// The table as TOML, in the form [`PriceTable::parse`] reads.
    pub fn to_toml(&self) -> String {
        let text = toml::to_string(self).expect("a price table is plain data");
        debug_assert_eq!(PriceTable::parse(&text).as_ref(), Ok(self));
        text
    }

    pub fn defaults() -> PriceTable {
        PriceTable::parse(DEFAULT_PRICES).expect("the default price table parses")
    }
}

/// The price tables in force over time: the newest one effective at a
/// call's time prices it.
#[derive(Debug, Clone)]
pub struct Prices {
    tables: Vec<PriceTable>,
}

impl Prices {
    pub fn new(mut tables: Vec<PriceTable>) -> Prices {
        if tables.is_empty() {
            tables.push(PriceTable::defaults());
        }
        tables.sort_by_key(|t| t.effective);
        Prices { tables }
    }

    fn model(&self, model: &str, at: DateTime<Utc>) -> Option<&ModelPrice> {
        self.tables
            .iter()
            .rev()
            .find(|t| t.effective <= at)
            .or(self.tables.first())
            .and_then(|t| t.models.iter().find(|m| m.model == model))
    }
}

/// The cost of one event, with why it may be incomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    pub amount: Decimal,
    /// The model for calls, the category for other costs.
    pub label: String,
    pub is_model: bool,
    pub agent: Option<String>,
    pub subject: Option<String>,
    /// Set when the event could not be priced fully (unknown model,
    /// another currency): it is counted at zero and shown.
    pub warning: Option<String>,
}

fn count(data: &serde_json::Value, key: &str) -> Result<u64, String> {
    match data.get(key) {
        None | Some(serde_json::Value::Null) => Ok(0),
        Some(v) => match v.as_u64() {
            Some(n) => Ok(n),
            None => Err(format!(
                "data.{key} must be a whole number of tokens, 0 or more"
            )),
        },
    }
}

/// Prices one event; `None` for events that are not costs. Malformed costs
/// are returned at zero with a warning, never dropped silently.
pub fn cost_of(event: &BillingEvent, prices: &Prices) -> Option<Cost> {
    let data = &event.data;
    let text = |k: &str| data.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let subject = text("subject").or_else(|| event.subject.clone());
    match event.event_type.as_str() {
        LLM_CALL => {
            let model = text("model").unwrap_or_else(|| "unknown".into());
            let call = |[input, output, cached, creation, reasoning]: [u64; 5],
                        includes_cached: bool| ModelCall {
                model: Cow::Borrowed(model.as_str()),
                agent: text("agent").map(Cow::Owned),
                subject: subject.clone().map(Cow::Owned),
                input_tokens: ModelCall::input_with_caches(
                    input,
                    cached,
                    creation,
                    includes_cached,
                ),
                output_tokens: output,
                cached_input_tokens: cached,
                cache_creation_tokens: creation,
                reasoning_tokens: reasoning,
            };
            let read = (|| {
                let tokens = [
                    count(data, "input_tokens")?,
                    count(data, "output_tokens")?,
                    count(data, "cached_input_tokens")?,
                    count(data, "cache_creation_input_tokens")?,
                    count(data, "reasoning_tokens")?,
                ];
                let includes_cached = match data.get("input_includes_cached") {
                    None | Some(serde_json::Value::Null) => true,
                    Some(serde_json::Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err("data.input_includes_cached must be true or false".into())
                    }
                };
                Ok::<_, String>(call(tokens, includes_cached))
            })();
            Some(match read {
                Ok(call) => cost_of_call(prices, &event.id, event.time, &call),
                Err(e) => {
                    let mut cost = cost_of_call(prices, &event.id, event.time, &call([0; 5], true));
                    cost.warning = Some(format!("event {}: {e}; counted at 0", event.id));
                    cost
                }
            })
        }
        COST_INCURRED => {
            let mut cost = Cost {
                amount: Decimal::ZERO,
                label: text("category").unwrap_or_else(|| "other".into()),
                is_model: false,
                agent: text("agent"),
                subject,
                warning: None,
            };
            let amount = data.get("amount").and_then(|v| match v {
                serde_json::Value::String(s) => Decimal::from_str(s).ok(),
                serde_json::Value::Number(n) => Decimal::from_str(&n.to_string()).ok(),
                _ => None,
            });
            match (amount, text("currency").as_deref()) {
                (Some(a), Some("USD") | None) if !a.is_sign_negative() => cost.amount = a,
                (Some(_), Some(other)) if other != "USD" => {
                    cost.warning = Some(format!(
                        "event {}: cost in {other}; only USD costs are counted, this one at 0",
                        event.id
                    ))
                }
                _ => {
                    cost.warning = Some(format!(
                        "event {}: data.amount must be a decimal amount, 0 or more; counted at 0",
                        event.id
                    ))
                }
            }
            Some(cost)
        }
        _ => None,
    }
}

/// Prices one model call made at `time` (event `id`, named in a warning
/// when the model has no price: it is then counted at zero, never dropped).
pub fn cost_of_call(prices: &Prices, id: &str, time: DateTime<Utc>, call: &ModelCall<'_>) -> Cost {
    let (amount, warning) = match prices.model(&call.model, time) {
        Some(p) => (price_tokens(p, call), None),
        None => (
            Decimal::ZERO,
            Some(format!(
                "event {id}: model \"{}\" has no price; counted at 0 until the price table lists it",
                call.model
            )),
        ),
    };
    Cost {
        amount,
        label: call.model.to_string(),
        is_model: true,
        agent: call.agent.as_deref().map(str::to_owned),
        subject: call.subject.as_deref().map(str::to_owned),
        warning,
    }
}

/// Each part of the input and output at its own price: the input left
/// after cache reads and writes at the input price, reasoning at the
/// reasoning price and the rest of the output at the output price. Parts
/// larger than their whole are priced as counted, the rest as 0.
/// Exact: a division by a million only moves the decimal point.
fn price_tokens(p: &ModelPrice, call: &ModelCall<'_>) -> Decimal {
    let uncached = call
        .input_tokens
        .saturating_sub(call.cached_input_tokens)
        .saturating_sub(call.cache_creation_tokens);
    let answer = call.output_tokens.saturating_sub(call.reasoning_tokens);
    let input = p.input_per_million;
    let output = p.output_per_million;
    (Decimal::from(uncached) * input
        + Decimal::from(call.cached_input_tokens) * p.cached_input_per_million.unwrap_or(input)
        + Decimal::from(call.cache_creation_tokens) * p.cache_write_per_million.unwrap_or(input)
        + Decimal::from(answer) * output
        + Decimal::from(call.reasoning_tokens) * p.reasoning_per_million.unwrap_or(output))
        / Decimal::from(1_000_000)
}

/// Cost totals of one period, attributed to subjects and outcomes.
/// Amounts are decimals as text (`"0.0125"`), in `currency`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CostReport {
    /// `USD`.
    pub currency: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub total: Decimal,
    /// Per model: its cost, a decimal as text.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub by_model: BTreeMap<String, Decimal>,
    /// Per category: its cost, a decimal as text.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub by_category: BTreeMap<String, Decimal>,
    /// Per agent: its cost, a decimal as text.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub by_agent: BTreeMap<String, Decimal>,
    /// Per outcome kind: cost of the subjects that produced one, the
    /// number of outcomes, and the cost per outcome.
    pub by_outcome: BTreeMap<String, OutcomeCost>,
    /// Cost of subjects that produced no outcome of any kind.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub without_outcome: Decimal,
    /// Cost not tied to any subject.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub unattributed: Decimal,
    pub calls: u64,
    pub warnings: Vec<String>,
}

/// One outcome kind's cost; decimals as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutcomeCost {
    pub outcomes: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub cost: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub per_outcome: Decimal,
}

/// Accumulates costs event by event (a month may hold millions of calls).
#[derive(Debug)]
pub struct CostLedger<'p> {
    prices: &'p Prices,
    period: Period,
    report: CostReport,
    /// Millions of lookups a month: a fast seeded hasher.
    by_subject: HashMap<String, Decimal, foldhash::fast::RandomState>,
}

impl<'p> CostLedger<'p> {
    pub fn new(prices: &'p Prices, period: Period) -> CostLedger<'p> {
        CostLedger {
            prices,
            period,
            report: CostReport {
                currency: "USD".into(),
                ..CostReport::default()
            },
            by_subject: HashMap::default(),
        }
    }

    pub fn feed(&mut self, event: &BillingEvent) {
        if !self.period.contains(event.time) {
            return;
        }
        let Some(cost) = cost_of(event, self.prices) else {
            return;
        };
        self.add(cost);
    }

    /// Adds a model call read from the cost index: priced here without
    /// copying its labels, since a month may hold millions of calls.
    pub fn add_call(&mut self, id: &str, time: DateTime<Utc>, call: &ModelCall<'_>) {
        if !self.period.contains(time) {
            return;
        }
        match self.prices.model(&call.model, time) {
            Some(p) => {
                let amount = price_tokens(p, call);
                self.tally(
                    amount,
                    &call.model,
                    true,
                    call.agent.as_deref(),
                    call.subject.as_deref(),
                );
            }
            None => self.add(cost_of_call(self.prices, id, time, call)),
        }
    }

    /// Adds a cost priced elsewhere.
    pub fn add(&mut self, cost: Cost) {
        if let Some(w) = cost.warning {
            if self.report.warnings.len() < 100 {
                self.report.warnings.push(w);
            }
        }
        self.tally(
            cost.amount,
            &cost.label,
            cost.is_model,
            cost.agent.as_deref(),
            cost.subject.as_deref(),
        );
    }

    fn tally(
        &mut self,
        amount: Decimal,
        label: &str,
        is_model: bool,
        agent: Option<&str>,
        subject: Option<&str>,
    ) {
        let r = &mut self.report;
        r.total += amount;
        if is_model {
            r.calls += 1;
            *entry(&mut r.by_model, label) += amount;
        } else {
            *entry(&mut r.by_category, label) += amount;
        }
        if let Some(agent) = agent {
            *entry(&mut r.by_agent, agent) += amount;
        }
        match subject {
            Some(s) => match self.by_subject.get_mut(s) {
                Some(total) => *total += amount,
                None => {
                    self.by_subject.insert(s.to_owned(), amount);
                }
            },
            None => r.unattributed += amount,
        }
    }

    /// Attributes subject costs to the outcomes (of any period) those
    /// subjects produced, given as (kind name, subject), as a closed period
    /// keeps them; the cost of a subject with outcomes of several kinds
    /// counts for each kind.
    pub fn finish<'o>(
        mut self,
        outcomes: impl IntoIterator<Item = (&'o str, &'o str)>,
    ) -> CostReport {
        let mut produced: HashSet<&str, foldhash::fast::RandomState> = HashSet::default();
        for (name, subject) in outcomes {
            produced.insert(subject);
            let cost = self.by_subject.get(subject).copied().unwrap_or_default();
            let kind = entry(&mut self.report.by_outcome, name);
            kind.outcomes += 1;
            kind.cost += cost;
        }
        for (subject, cost) in &self.by_subject {
            if !produced.contains(subject.as_str()) {
                self.report.without_outcome += *cost;
            }
        }
        for c in self.report.by_outcome.values_mut() {
            if c.outcomes > 0 {
                c.per_outcome = (c.cost / Decimal::from(c.outcomes)).round_dp(6);
            }
        }
        let round = |d: &mut Decimal| *d = d.round_dp(6);
        round(&mut self.report.total);
        round(&mut self.report.without_outcome);
        round(&mut self.report.unattributed);
        for map in [
            &mut self.report.by_model,
            &mut self.report.by_category,
            &mut self.report.by_agent,
        ] {
            map.values_mut().for_each(round);
        }
        for c in self.report.by_outcome.values_mut() {
            round(&mut c.cost);
        }
        self.report
    }
}

/// The entry of `key`, made on first use: keys are copied once per label,
/// not once per cost.
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("just inserted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &str, subject: &str, data: serde_json::Value) -> BillingEvent {
        BillingEvent {
            sequence: 1,
            id: format!("{kind}-{subject}"),
            source: "s".into(),
            event_type: kind.into(),
            subject: Some(subject.into()),
            time: "2026-10-05T00:00:00Z".parse().unwrap(),
            data,
        }
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn calls_are_priced_per_million_tokens_with_cached_input_cheaper() {
        let prices = Prices::new(vec![]);
        // gpt-4o-mini: 1,000 input of which 400 cached, 500 output:
        // 600 × 0.15 + 400 × 0.075 + 500 × 0.60 = 90 + 30 + 300 per million.
        let c = cost_of(
            &ev("llm.call", "T1", json!({"model": "gpt-4o-mini", "input_tokens": 1000, "cached_input_tokens": 400, "output_tokens": 500})),
            &prices,
        )
        .unwrap();
        assert_eq!(c.amount, d("0.00042"));
        assert!(c.warning.is_none());
    }

    /// A table of one model, `m`, with cache-write and reasoning prices of
    /// its own, or without them.
    fn priced(own: bool) -> Prices {
        let extra = if own {
            "cache_write_per_million = \"3.75\"\nreasoning_per_million = \"20\"\n"
        } else {
            ""
        };
        let text = format!(
            "effective = \"2020-01-01T00:00:00Z\"\n[[model]]\nmodel = \"m\"\ninput_per_million = \"3\"\noutput_per_million = \"15\"\ncached_input_per_million = \"0.30\"\n{extra}"
        );
        Prices::new(vec![PriceTable::parse(&text).unwrap()])
    }

    #[test]
    fn cache_writes_and_reasoning_are_priced_at_their_own_prices() {
        // 10,000 input tokens holding 4,000 read from the cache and 2,000
        // written to it; 1,000 output tokens holding 600 of reasoning.
        let call = json!({"model": "m", "input_tokens": 10_000, "cached_input_tokens": 4_000,
            "cache_creation_input_tokens": 2_000, "output_tokens": 1_000, "reasoning_tokens": 600});
        // Per million: uncached 4,000 × 3 = 12,000; read 4,000 × 0.30 =
        // 1,200; written 2,000 × 3.75 = 7,500; answer 400 × 15 = 6,000;
        // reasoning 600 × 20 = 12,000. Sum 38,700 / 1,000,000 = 0.0387.
        let c = cost_of(&ev("llm.call", "T1", call.clone()), &priced(true)).unwrap();
        assert_eq!((c.amount, c.warning), (d("0.0387"), None));
        // Without prices of their own, writes cost what input does and
        // reasoning what output does: 12,000 + 1,200 + 2,000 × 3 (6,000) +
        // 6,000 + 600 × 15 (9,000) = 34,200 → 0.0342.
        let c = cost_of(&ev("llm.call", "T1", call), &priced(false)).unwrap();
        assert_eq!(c.amount, d("0.0342"));
        // Anthropic's counting: input 4,000 without either cache is the
        // same call (4,000 + 4,000 + 2,000 = 10,000): 0.0387 again.
        let anthropic = json!({"model": "m", "input_tokens": 4_000, "input_includes_cached": false,
            "cached_input_tokens": 4_000, "cache_creation_input_tokens": 2_000,
            "output_tokens": 1_000, "reasoning_tokens": 600});
        let c = cost_of(&ev("llm.call", "T1", anthropic), &priced(true)).unwrap();
        assert_eq!(c.amount, d("0.0387"));
        // Parts larger than their whole: input 100 but 80 read and 50
        // written, output 10 but 30 reasoning. Uncached and answer are 0;
        // 80 × 0.30 = 24, 50 × 3.75 = 187.5, 30 × 20 = 600. Sum 811.5 →
        // 0.0008115.
        let odd = json!({"model": "m", "input_tokens": 100, "cached_input_tokens": 80,
            "cache_creation_input_tokens": 50, "output_tokens": 10, "reasoning_tokens": 30});
        let c = cost_of(&ev("llm.call", "T1", odd), &priced(true)).unwrap();
        assert_eq!(c.amount, d("0.0008115"));
        // A flag that is not a boolean is named, the call counted at 0.
        let bad = json!({"model": "m", "input_tokens": 100, "input_includes_cached": "no"});
        let c = cost_of(&ev("llm.call", "T1", bad), &priced(true)).unwrap();
        assert_eq!(c.amount, Decimal::ZERO);
        assert!(c
            .warning
            .unwrap()
            .contains("data.input_includes_cached must be true or false"));
    }

    #[test]
    fn the_new_prices_round_trip_and_may_not_be_negative() {
        let text = "effective = \"2026-01-01T00:00:00Z\"\n[[model]]\nmodel = \"m\"\ninput_per_million = \"3\"\noutput_per_million = \"15\"\ncache_write_per_million = \"3.75\"\nreasoning_per_million = \"20\"\n";
        let table = PriceTable::parse(text).unwrap();
        assert_eq!(
            (
                table.models[0].cache_write_per_million,
                table.models[0].reasoning_per_million
            ),
            (Some(d("3.75")), Some(d("20")))
        );
        assert_eq!(PriceTable::parse(&table.to_toml()), Ok(table));
        // Tables stored before these prices existed still read, without them.
        let defaults = PriceTable::defaults();
        assert!(defaults
            .models
            .iter()
            .all(|m| m.cache_write_per_million.is_none() && m.reasoning_per_million.is_none()));
        assert!(!defaults.to_toml().contains("cache_write_per_million"));
        for key in ["cache_write_per_million", "reasoning_per_million"] {
            let negative = text.replace(&format!("{key} = \""), &format!("{key} = \"-"));
            assert_eq!(
                PriceTable::parse(&negative),
                Err("model m: prices must not be negative".into()),
                "{key}"
            );
        }
        assert!(
            PriceTable::parse(&text.replace("reasoning_per_million", "thinking_per_million"))
                .unwrap_err()
                .contains("unknown field")
        );
    }

    #[test]
    fn unknown_models_and_bad_tokens_cost_zero_with_a_warning() {
        let prices = Prices::new(vec![]);
        let c = cost_of(
            &ev(
                "llm.call",
                "T1",
                json!({"model": "mystery-9", "input_tokens": 10}),
            ),
            &prices,
        )
        .unwrap();
        assert_eq!(c.amount, Decimal::ZERO);
        assert!(c.warning.unwrap().contains("\"mystery-9\" has no price"));
        let c = cost_of(
            &ev(
                "llm.call",
                "T1",
                json!({"model": "gpt-4o", "input_tokens": -5}),
            ),
            &prices,
        )
        .unwrap();
        assert!(c
            .warning
            .unwrap()
            .contains("input_tokens must be a whole number"));
        let c = cost_of(
            &ev(
                "cost.incurred",
                "T1",
                json!({"amount": "-3", "category": "human"}),
            ),
            &prices,
        )
        .unwrap();
        assert!(c.warning.is_some());
    }

    #[test]
    fn a_new_price_table_does_not_reprice_earlier_calls() {
        let mut newer = PriceTable::defaults();
        newer.effective = "2026-10-10T00:00:00Z".parse().unwrap();
        newer
            .models
            .iter_mut()
            .for_each(|m| m.input_per_million *= Decimal::TEN);
        let prices = Prices::new(vec![PriceTable::defaults(), newer]);
        let mut early = ev(
            "llm.call",
            "T1",
            json!({"model": "gpt-4o", "input_tokens": 1_000_000}),
        );
        assert_eq!(cost_of(&early, &prices).unwrap().amount, d("2.50"));
        early.time = "2026-10-11T00:00:00Z".parse().unwrap();
        assert_eq!(cost_of(&early, &prices).unwrap().amount, d("25.00"));
    }

    #[test]
    fn indexed_calls_give_the_same_report_as_reading_events() {
        let prices = Prices::new(vec![]);
        let period = Period::parse(crate::Cadence::Monthly, "2026-10").unwrap();
        let events = [
            ev(
                "llm.call",
                "T1",
                json!({"model": "gpt-4o", "input_tokens": 1234, "output_tokens": 56, "cached_input_tokens": 1000, "agent": "a"}),
            ),
            ev(
                "llm.call",
                "T2",
                json!({"model": "gpt-4o-mini", "input_tokens": 10, "subject": "T9"}),
            ),
            ev(
                "llm.call",
                "T2",
                json!({"model": "gpt-4o", "input_tokens": 50, "input_includes_cached": false,
                    "cached_input_tokens": 2000, "cache_creation_input_tokens": 300,
                    "output_tokens": 90, "reasoning_tokens": 60}),
            ),
            ev(
                "llm.call",
                "T2",
                json!({"model": "gpt-4o", "input_tokens": 50, "input_includes_cached": "yes"}),
            ),
            ev(
                "llm.call",
                "T2",
                json!({"model": "gpt-4o", "input_tokens": 50, "reasoning_tokens": -1}),
            ),
            ev(
                "llm.call",
                "T3",
                json!({"model": "nope", "input_tokens": 10}),
            ),
            ev(
                "llm.call",
                "T3",
                json!({"model": "gpt-4o", "input_tokens": -1}),
            ),
            ev(
                "llm.call",
                "T3",
                json!({"model": "gpt-4o", "input_tokens": "12"}),
            ),
            ev(
                "cost.incurred",
                "T4",
                json!({"amount": "2.5", "category": "review"}),
            ),
            ev("ticket.closed", "T4", json!({})),
        ];
        let (mut a, mut b) = (
            CostLedger::new(&prices, period),
            CostLedger::new(&prices, period),
        );
        let mut fast = 0;
        for e in &events {
            a.feed(e);
            let body = serde_json::to_vec(
                &json!({"id": e.id, "source": e.source, "type": e.event_type,
                "subject": e.subject, "time": e.time.to_rfc3339(), "data": e.data}),
            )
            .unwrap();
            // The cost index keeps calls in the common shape; the rest are
            // read whole.
            match ModelCall::read(&body) {
                Some(call) => b.add_call(&e.id, e.time, &call),
                None => b.feed(e),
            }
            fast += usize::from(ModelCall::read(&body).is_some());
        }
        assert_eq!(fast, 4);
        assert_eq!(a.finish([]), b.finish([]));
    }

    #[test]
    fn costs_are_attributed_to_the_outcomes_their_subjects_produced() {
        let prices = Prices::new(vec![]);
        let period = Period::parse(crate::Cadence::Monthly, "2026-10").unwrap();
        let mut ledger = CostLedger::new(&prices, period);
        for (s, tokens) in [("T1", 1_000_000), ("T1", 1_000_000), ("T2", 1_000_000)] {
            ledger.feed(&ev(
                "llm.call",
                s,
                json!({"model": "gpt-4o", "input_tokens": tokens, "agent": "support"}),
            ));
        }
        ledger.feed(&ev(
            "cost.incurred",
            "T3",
            json!({"amount": "4.00", "category": "human_review"}),
        ));
        let r = ledger.finish([("ticket_resolved", "T1")]);
        assert_eq!(r.total, d("11.50"));
        assert_eq!(r.by_model["gpt-4o"], d("7.50"));
        assert_eq!(r.by_category["human_review"], d("4.00"));
        assert_eq!(r.by_outcome["ticket_resolved"].cost, d("5.00"));
        assert_eq!(r.by_outcome["ticket_resolved"].per_outcome, d("5.00"));
        assert_eq!(r.without_outcome, d("6.50"));
        assert_eq!(r.by_agent["support"], d("7.50"));
    }
}
