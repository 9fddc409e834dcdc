//! Watching agents: what each agent of a customer did in a window, read
//! from the ledger whatever door its records came through (the model
//! gateway, OpenTelemetry, events it sent, the MCP gateway, the support
//! agent), and its quality over time: per agent and ISO week, measures
//! whose band the provider configures (`[[quality.band]]`); a measure
//! outside its band becomes a `payoff.quality.drift` ledger record (once
//! per agent, measure and week), which subscribers receive as a signed
//! webhook and the dashboard's Agents page shows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use payoff_billing::PAYOFF_SOURCE;
use payoff_billing::{cost_of_call, Cadence, ModelCall, Period, Prices};
use payoff_store::{EventFilter, Store};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::actions::{self, ActionState};
use crate::problem::ApiError;
use crate::{blocking_with, AppState};

/// The name shown for records that name no agent.
pub const UNNAMED: &str = "(unnamed)";
/// The record of a measure leaving its band.
pub const DRIFT: &str = "payoff.quality.drift";

/// What one agent did in the window.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AgentFigures {
    pub calls: u64,
    pub errors: u64,
    /// Milliseconds of each call that reported its latency.
    latencies: Vec<u64>,
    pub cost: Decimal,
    pub tool_calls: u64,
    pub runs: u64,
    pub allowed: u64,
    pub denied: u64,
    pub pending: u64,
    /// The support agent's drafts a person decided, and of those the ones
    /// approved with edits or rejected.
    pub drafts_decided: u64,
    pub drafts_reworked: u64,
    /// Model calls per day of the window.
    pub per_day: Vec<u64>,
}

impl AgentFigures {
    /// The latency below which `q` of the calls fall (nearest rank).
    pub fn latency(&self, q: f64) -> Option<u64> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = ((sorted.len() as f64 * q).ceil() as usize).max(1);
        sorted.get(rank - 1).copied()
    }
}

/// Whether a model call's record says it failed: a `result` other than
/// `ok`, an HTTP status of 400 or more, or an `error`.
fn failed(data: &Value) -> bool {
    data["result"].as_str().is_some_and(|r| r != "ok")
        || data["status"].as_u64().is_some_and(|s| s >= 400)
        || !data["error"].is_null()
}

/// The figures of every agent of `customer` in `[since, until)`, one slot
/// of `per_day` per day from `since`.
pub fn gather(
    store: &Store,
    prices: &Prices,
    customer: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<BTreeMap<String, AgentFigures>, ApiError> {
    let days = (until - since).num_days().max(1) as usize;
    let mut agents: BTreeMap<String, AgentFigures> = BTreeMap::new();
    fn entry<'a>(
        agents: &'a mut BTreeMap<String, AgentFigures>,
        name: Option<&str>,
        days: usize,
    ) -> &'a mut AgentFigures {
        let name = name.filter(|n| !n.is_empty()).unwrap_or(UNNAMED).to_owned();
        agents.entry(name).or_insert_with(|| AgentFigures {
            per_day: vec![0; days],
            ..AgentFigures::default()
        })
    }
    for kind in ["llm.call", "tool.call", "agent.run"] {
        let mut after = None;
        loop {
            let page = store.events(&EventFilter {
                customer: customer.to_owned(),
                event_type: Some(kind.to_owned()),
                since: Some(since),
                until: Some(until),
                after_sequence: after,
                limit: 1000,
                ..Default::default()
            })?;
            for e in &page.events {
                let body: Value = serde_json::from_slice(&e.canonical).unwrap_or_default();
                let data = &body["data"];
                let f = entry(&mut agents, data["agent"].as_str(), days);
                match kind {
                    "llm.call" => {
                        f.calls += 1;
                        f.errors += u64::from(failed(data));
                        if let Some(ms) = data["latency_ms"].as_u64() {
                            f.latencies.push(ms);
                        }
                        if let Some(call) = ModelCall::read(&e.canonical) {
                            f.cost += cost_of_call(prices, &e.id, e.time, &call).amount;
                        }
                        let day = (e.time - since).num_days();
                        if let Some(n) =
                            usize::try_from(day).ok().and_then(|d| f.per_day.get_mut(d))
                        {
                            *n += 1;
                        }
                    }
                    "tool.call" => f.tool_calls += 1,
                    _ => f.runs += 1,
                }
            }
            match page.next_cursor {
                Some(c) => after = Some(c),
                None => break,
            }
        }
    }
    for a in actions::list(store, customer)? {
        if a.requested_at < since || a.requested_at >= until {
            continue;
        }
        let f = entry(&mut agents, Some(&a.agent), days);
        match a.state {
            ActionState::Allowed | ActionState::Approved => f.allowed += 1,
            ActionState::PendingApproval => f.pending += 1,
            ActionState::Denied | ActionState::Rejected | ActionState::Expired => f.denied += 1,
        }
    }
    for a in crate::support::approvals(store, customer)? {
        if !a.decided_at.is_some_and(|t| t >= since && t < until) {
            continue;
        }
        let f = entry(&mut agents, Some(crate::support::AGENT), days);
        f.drafts_decided += 1;
        let edited = a
            .request
            .get("edited")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || a.final_text.is_some();
        if a.status == crate::support::approvals::Status::Rejected || edited {
            f.drafts_reworked += 1;
        }
    }
    Ok(agents)
}

/// A measure of an agent's quality in a week: a share of its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Model calls that failed, of its model calls.
    ErrorRate,
    /// Actions denied, rejected or expired, of the actions it asked for.
    DenialRate,
    /// Drafts approved with edits or rejected, of the drafts a person decided.
    DraftReworkRate,
}

impl Measure {
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::ErrorRate => "error_rate",
            Measure::DenialRate => "denial_rate",
            Measure::DraftReworkRate => "draft_rework_rate",
        }
    }

    /// `(hits, samples)` of this measure in `f`.
    pub fn of(self, f: &AgentFigures) -> (u64, u64) {
        match self {
            Measure::ErrorRate => (f.errors, f.calls),
            Measure::DenialRate => (f.denied, f.denied + f.allowed),
            Measure::DraftReworkRate => (f.drafts_reworked, f.drafts_decided),
        }
    }
}

/// The band a measure should stay in (`[[quality.band]]` in payoff.toml).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub measure: Measure,
    /// An agent's name, or `*` for every agent.
    #[serde(default = "every_agent")]
    pub agent: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Below this many samples in the week the measure says nothing.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
}

fn every_agent() -> String {
    "*".to_owned()
}

fn default_min_samples() -> u64 {
    20
}

/// `[quality]`: the bands, and how often they are checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualitySettings {
    #[serde(default)]
    pub band: Vec<Band>,
    /// Seconds between checks.
    #[serde(default = "default_every")]
    pub every_seconds: f64,
}

fn default_every() -> f64 {
    60.0
}

impl Default for QualitySettings {
    fn default() -> Self {
        QualitySettings {
            band: Vec::new(),
            every_seconds: default_every(),
        }
    }
}

impl QualitySettings {
    /// Every problem of the settings, named by its place.
    pub fn check(&self) -> Result<(), String> {
        if !(self.every_seconds.is_finite() && (0.05..=86_400.0).contains(&self.every_seconds)) {
            return Err("quality.every_seconds: 0.05 to 86400".into());
        }
        for (i, b) in self.band.iter().enumerate() {
            let place = format!("quality.band[{i}]");
            if b.min.is_none() && b.max.is_none() {
                return Err(format!("{place}: give min, max or both"));
            }
            for (name, v) in [("min", b.min), ("max", b.max)] {
                if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                    return Err(format!("{place}.{name}: a share, 0 to 1"));
                }
            }
            if let (Some(lo), Some(hi)) = (b.min, b.max) {
                if lo > hi {
                    return Err(format!("{place}: min is above max"));
                }
            }
            if b.min_samples == 0 {
                return Err(format!("{place}.min_samples: at least 1"));
            }
        }
        Ok(())
    }
}

/// One measure outside its band.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub agent: String,
    pub measure: Measure,
    pub week: String,
    /// The share, four decimals.
    pub value: String,
    pub hits: u64,
    pub samples: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The measures of `figures` outside their `bands` in `week`. Pure.
pub fn drifts(figures: &BTreeMap<String, AgentFigures>, bands: &[Band], week: &str) -> Vec<Drift> {
    let mut out = Vec::new();
    for (agent, f) in figures {
        for b in bands.iter().filter(|b| b.agent == "*" || b.agent == *agent) {
            let (hits, samples) = b.measure.of(f);
            if samples < b.min_samples {
                continue;
            }
            let share = hits as f64 / samples as f64;
            let outside = b.min.is_some_and(|lo| share < lo) || b.max.is_some_and(|hi| share > hi);
            if outside
                && !out
                    .iter()
                    .any(|d: &Drift| d.agent == *agent && d.measure == b.measure)
            {
                out.push(Drift {
                    agent: agent.clone(),
                    measure: b.measure,
                    week: week.to_owned(),
                    value: format!("{share:.4}"),
                    hits,
                    samples,
                    min: b.min,
                    max: b.max,
                });
            }
        }
    }
    out
}

/// Checks every customer's agents this week; the drifts newly recorded.
pub async fn check_once(state: &AppState) -> Result<usize, ApiError> {
    let bands = state.config.quality.band.clone();
    if bands.is_empty() {
        return Ok(0);
    }
    let now = state.now();
    let week = Period::containing(Cadence::Weekly, now);
    let customers = blocking_with(move |s| Ok(s.customers()?), state).await?;
    let mut recorded = 0;
    for customer in customers.into_iter().map(|c| c.id) {
        let (c, start) = (customer.clone(), week.start);
        let figures = blocking_with(
            move |s| {
                let prices = crate::economics::prices(s)?;
                gather(s, &prices, &c, start, now)
            },
            state,
        )
        .await?;
        for d in drifts(&figures, &bands, &week.to_string()) {
            // One record per agent, measure and week: the first crossing
            // stands; later checks of the same week find it and write nothing.
            let key = format!("quality/{}/{}/{}", d.agent, d.measure.as_str(), d.week);
            let c = customer.clone();
            let k = key.clone();
            let known =
                blocking_with(move |s| Ok(s.event_by_key(&c, PAYOFF_SOURCE, &k)?), state).await?;
            if known.is_some() {
                continue;
            }
            let event = json!({
                "specversion": "1.0", "id": key, "source": PAYOFF_SOURCE, "type": DRIFT,
                "subject": format!("agent/{}", d.agent),
                "time": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "data": d,
            });
            if crate::record_own(state, &customer, event).await?.is_ok() {
                recorded += 1;
            }
        }
    }
    Ok(recorded)
}

/// Checks the bands every `[quality] every_seconds` until `stop`.
pub async fn run(state: AppState, stop: std::sync::Arc<tokio::sync::Notify>) {
    if state.config.quality.band.is_empty() {
        return;
    }
    let every = std::time::Duration::from_secs_f64(state.config.quality.every_seconds);
    let mut last_error = None;
    loop {
        if let Err(e) = check_once(&state).await {
            if last_error.as_ref() != Some(&e.detail) {
                tracing::error!(error = %e.detail, "quality check failed");
                last_error = Some(e.detail);
            }
        }
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The drift records of `customer` in `[since, until)`, newest first.
pub fn recorded_drifts(
    store: &Store,
    customer: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Value>, ApiError> {
    let page = store.events(&EventFilter {
        customer: customer.to_owned(),
        event_type: Some(DRIFT.to_owned()),
        since: Some(since),
        until: Some(until),
        limit: 1000,
        ..Default::default()
    })?;
    let mut out: Vec<Value> = page
        .events
        .iter()
        .filter(|e| e.source == PAYOFF_SOURCE)
        .filter_map(|e| serde_json::from_slice::<Value>(&e.canonical).ok())
        .map(|mut body| body["data"].take())
        .collect();
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_are_nearest_rank() {
        let f = AgentFigures {
            latencies: (1..=100).rev().collect(),
            ..AgentFigures::default()
        };
        assert_eq!(
            (f.latency(0.5), f.latency(0.95), f.latency(1.0)),
            (Some(50), Some(95), Some(100))
        );
        assert_eq!(AgentFigures::default().latency(0.5), None);
        let one = AgentFigures {
            latencies: vec![7],
            ..AgentFigures::default()
        };
        assert_eq!(one.latency(0.95), Some(7));
    }

    #[test]
    fn a_call_failed_when_its_record_says_so() {
        use serde_json::json;
        assert!(!failed(&json!({"result": "ok", "status": 200})));
        assert!(!failed(&json!({})));
        assert!(failed(&json!({"result": "timeout"})));
        assert!(failed(&json!({"status": 502})));
        assert!(failed(&json!({"error": "boom"})));
    }

    #[test]
    fn a_measure_outside_its_band_drifts_once_and_small_samples_say_nothing() {
        let mut figures = BTreeMap::new();
        figures.insert(
            "lead-bot".to_owned(),
            AgentFigures {
                calls: 10,
                errors: 3,
                allowed: 1,
                denied: 0,
                ..AgentFigures::default()
            },
        );
        figures.insert(
            "tiny".to_owned(),
            AgentFigures {
                calls: 2,
                errors: 2,
                ..AgentFigures::default()
            },
        );
        let band = |measure, agent: &str, max| Band {
            measure,
            agent: agent.to_owned(),
            min: None,
            max: Some(max),
            min_samples: 5,
        };
        let bands = [
            band(Measure::ErrorRate, "*", 0.2),
            band(Measure::ErrorRate, "lead-bot", 0.1),
            band(Measure::DenialRate, "*", 0.0),
        ];
        let found = drifts(&figures, &bands, "2026-W49");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (
                found[0].agent.as_str(),
                found[0].value.as_str(),
                found[0].samples
            ),
            ("lead-bot", "0.3000", 10)
        );
        let within = [band(Measure::ErrorRate, "*", 0.3)];
        assert!(
            drifts(&figures, &within, "2026-W49").is_empty(),
            "at the edge is inside"
        );
        let floor = [Band {
            min: Some(0.5),
            max: None,
            ..band(Measure::ErrorRate, "*", 1.0)
        }];
        assert_eq!(drifts(&figures, &floor, "w")[0].agent, "lead-bot");
    }

    #[test]
    fn bands_that_cannot_hold_are_refused_by_place() {
        let mut s = QualitySettings::default();
        s.band.push(Band {
            measure: Measure::ErrorRate,
            agent: "*".into(),
            min: Some(0.5),
            max: Some(0.2),
            min_samples: 1,
        });
        assert!(s.check().unwrap_err().contains("quality.band[0]"));
        s.band[0].min = None;
        s.band[0].max = Some(1.5);
        assert!(s.check().unwrap_err().contains("quality.band[0].max"));
        s.band[0].max = Some(0.2);
        assert!(s.check().is_ok());
    }
}
