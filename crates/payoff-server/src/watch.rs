//! Watching agents: what each agent of a customer did in a window, read
//! from the ledger whatever door its records came through (the model
//! gateway, OpenTelemetry, events it sent, the MCP gateway, the support
//! agent), and its quality over time: per agent and ISO week, measures
//! whose band the provider configures (`[[quality.band]]`); a measure
//! outside its band becomes a `payoff.quality.drift` ledger record (once
//! per agent, measure and week), which subscribers receive as a signed
//! webhook and the dashboard's Agents page shows.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::records::{OwnRecord, PAYOFF_SOURCE, QUALITY_DRIFT};
use chrono::{DateTime, Utc};
use payoff_billing::{
    cost_of_call, BillingEvent, Cadence, ModelCall, OutcomeRules, Period, Prices,
};
use payoff_store::{EventFilter, Store};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::{self, ActionState};
use crate::problem::ApiError;
use crate::{blocking_with, AppState};

/// The name shown for records that name no agent.
pub const UNNAMED: &str = "(unnamed)";
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
    /// Outcomes created in the window for subjects the agent served (a
    /// model call, tool call or run of it named the subject), and of those
    /// the ones voided (a reopen, a void rule, an accepted dispute).
    pub outcomes: u64,
    pub outcomes_voided: u64,
    /// Per `[[service_level]]` of the contract: `(numerator, denominator)`
    /// hits of the events in the window about subjects it served.
    pub service: BTreeMap<String, (u64, u64)>,
    /// The subjects it served in the window.
    subjects: HashSet<String>,
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
    draft_ttl: chrono::Duration,
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
                // The subject as billing reads it for a call: its data's,
                // else the envelope's.
                if let Some(subject) = data["subject"].as_str().or(e.subject.as_deref()) {
                    if !f.subjects.contains(subject) {
                        f.subjects.insert(subject.to_owned());
                    }
                }
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
    // Newest first, as far back as the window goes.
    actions::walk_newest(store, customer, None, |_, a| {
        if a.requested_at >= since && a.requested_at < until {
            let f = entry(&mut agents, Some(&a.agent), days);
            match a.state {
                ActionState::Allowed | ActionState::Approved => f.allowed += 1,
                ActionState::PendingApproval => f.pending += 1,
                ActionState::Denied | ActionState::Rejected | ActionState::Expired => f.denied += 1,
            }
        }
        a.requested_at >= since
    })?;
    if agents.values().any(|f| !f.subjects.is_empty()) && !store.contracts(customer)?.is_empty() {
        outcomes_served(store, customer, since, until, &mut agents)?;
        service_levels_served(store, customer, since, until, &mut agents)?;
    }
    // A draft decided in the window was asked at most its time to live
    // before it (see `pending_window`): newest first, back that far.
    let asked_since = since - crate::support::pending_window(draft_ttl);
    crate::support::walk_approvals_newest(store, customer, None, |_, a| {
        if a.decided_at.is_some_and(|t| t >= since && t < until) {
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
        a.requested_at >= asked_since
    })?;
    Ok(agents)
}

/// Counts, for each agent, the outcomes created in `[since, until)` for
/// subjects it served, and the voided ones among them, from the outcome
/// read model (each under the contract version governing it). A customer
/// without a contract has no outcomes.
fn outcomes_served(
    store: &Store,
    customer: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    agents: &mut BTreeMap<String, AgentFigures>,
) -> Result<(), ApiError> {
    let mut after = None;
    loop {
        let page = payoff_outcomes::page(
            store,
            customer,
            &payoff_outcomes::PageQuery {
                name: None,
                subject: None,
                state: None,
                period: None,
                since: Some(since),
                until: Some(until),
                after,
                limit: 1000,
                count: None,
            },
            until,
        )?;
        for o in &page.items {
            let voided = o.outcome.void.is_some() || matches!(o.state, "voided" | "credited");
            for f in agents
                .values_mut()
                .filter(|f| f.subjects.contains(&o.outcome.subject))
            {
                f.outcomes += 1;
                f.outcomes_voided += u64::from(voided);
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// Counts, for each agent, the service-level hits (numerator and
/// denominator of each `[[service_level]]`) of the events in `[since,
/// until)` about subjects it served, with the rules billing counts them
/// with, under the contract version governing each event's time.
fn service_levels_served(
    store: &Store,
    customer: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    agents: &mut BTreeMap<String, AgentFigures>,
) -> Result<(), ApiError> {
    let versions = payoff_outcomes::Versions::load(store, customer)?;
    if versions.list().iter().all(|v| {
        versions
            .contract(v.version)
            .is_none_or(|c| c.service_levels.is_empty())
    }) {
        return Ok(());
    }
    let mut rules: HashMap<u32, OutcomeRules<'_>> = HashMap::new();
    let mut after = None;
    loop {
        let page = store.events(&EventFilter {
            customer: customer.to_owned(),
            since: Some(since),
            until: Some(until),
            after_sequence: after,
            limit: 1000,
            ..Default::default()
        })?;
        for e in &page.events {
            let Some(subject) = e.subject.as_deref() else {
                continue;
            };
            if !agents.values().any(|f| f.subjects.contains(subject)) {
                continue;
            }
            let Ok(value) = serde_json::from_slice::<Value>(&e.canonical) else {
                continue;
            };
            let Some(event) = BillingEvent::from_json(e.sequence, &value) else {
                continue;
            };
            let version = versions.governing(event.time);
            let Some(contract) = versions.contract(version) else {
                continue;
            };
            let rules = rules
                .entry(version)
                .or_insert_with(|| OutcomeRules::new(customer, contract));
            for hit in rules.service_hits(&event) {
                let level = &contract.service_levels[hit.level].name;
                for f in agents.values_mut().filter(|f| f.subjects.contains(subject)) {
                    let counts = f.service.entry(level.clone()).or_default();
                    counts.0 += u64::from(hit.numerator);
                    counts.1 += u64::from(hit.denominator);
                }
            }
        }
        match page.next_cursor {
            Some(c) => after = Some(c),
            None => return Ok(()),
        }
    }
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
    /// Outcomes voided (reopened, voided by a rule, disputed away), of the
    /// outcomes created for the subjects it served.
    VoidRate,
    /// One `[[service_level]]` of the contract (the band's `level`): its
    /// numerator's hits, of its denominator's, over the events about the
    /// subjects it served.
    ServiceLevel,
}

impl Measure {
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::ErrorRate => "error_rate",
            Measure::DenialRate => "denial_rate",
            Measure::DraftReworkRate => "draft_rework_rate",
            Measure::VoidRate => "void_rate",
            Measure::ServiceLevel => "service_level",
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
    /// The `[[service_level]]` name, for `measure = "service_level"` only.
    #[serde(default)]
    pub level: Option<String>,
}

impl Band {
    /// `(hits, samples)` of this band's measure in `f`.
    pub fn of(&self, f: &AgentFigures) -> (u64, u64) {
        match self.measure {
            Measure::ErrorRate => (f.errors, f.calls),
            Measure::DenialRate => (f.denied, f.denied + f.allowed),
            Measure::DraftReworkRate => (f.drafts_reworked, f.drafts_decided),
            Measure::VoidRate => (f.outcomes_voided, f.outcomes),
            Measure::ServiceLevel => self
                .level
                .as_ref()
                .and_then(|l| f.service.get(l))
                .copied()
                .unwrap_or_default(),
        }
    }
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
            match (b.measure, &b.level) {
                (Measure::ServiceLevel, None) => {
                    return Err(format!(
                        "{place}.level: required for service_level, the [[service_level]] name"
                    ))
                }
                (Measure::ServiceLevel, Some(l)) if l.is_empty() || l.len() > 64 => {
                    return Err(format!("{place}.level: 1 to 64 characters"))
                }
                (Measure::ServiceLevel, Some(_)) | (_, None) => {}
                (_, Some(_)) => {
                    return Err(format!(
                        "{place}.level: only for measure = \"service_level\""
                    ))
                }
            }
        }
        Ok(())
    }
}

/// One measure outside its band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub agent: String,
    pub measure: Measure,
    /// The service level, for `service_level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
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
            let (hits, samples) = b.of(f);
            if samples < b.min_samples {
                continue;
            }
            let share = hits as f64 / samples as f64;
            let outside = b.min.is_some_and(|lo| share < lo) || b.max.is_some_and(|hi| share > hi);
            if outside
                && !out.iter().any(|d: &Drift| {
                    d.agent == *agent && d.measure == b.measure && d.level == b.level
                })
            {
                out.push(Drift {
                    agent: agent.clone(),
                    measure: b.measure,
                    level: b.level.clone(),
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

/// One pass at the business time of `state.clock`: checks every
/// customer's agents in the week up to then; the drifts newly recorded.
pub async fn tick(state: &AppState) -> Result<usize, ApiError> {
    let bands = state.config.quality.band.clone();
    if bands.is_empty() {
        return Ok(0);
    }
    let now = state.now();
    let week = Period::containing(Cadence::Weekly, now);
    let customers = blocking_with(move |s| Ok(s.customers()?), state).await?;
    let mut recorded = 0;
    for customer in customers.into_iter().map(|c| c.id) {
        let (c, start, ttl) = (customer.clone(), week.start, state.support.approval_ttl);
        let figures = blocking_with(
            move |s| {
                let prices = payoff_accounting::economics::prices(s)?;
                gather(s, &prices, &c, start, now, ttl)
            },
            state,
        )
        .await?;
        for d in drifts(&figures, &bands, &week.to_string()) {
            // One record per agent, measure and week: the first crossing
            // stands; later checks of the same week find it and write nothing.
            let measure = match &d.level {
                Some(level) => format!("{}:{level}", d.measure.as_str()),
                None => d.measure.as_str().to_owned(),
            };
            let key = format!("quality/{}/{measure}/{}", d.agent, d.week);
            let c = customer.clone();
            let k = key.clone();
            let known =
                blocking_with(move |s| Ok(s.event_by_key(&c, PAYOFF_SOURCE, &k)?), state).await?;
            if known.is_some() {
                continue;
            }
            let subject = format!("agent/{}", d.agent);
            let event = OwnRecord::QualityDrift(d).to_event(&key, Some(&subject), now);
            if crate::record_own(state, &customer, event).await?.is_ok() {
                recorded += 1;
            }
        }
    }
    Ok(recorded)
}

/// Ticks every `[quality] every_seconds` of real time until `stop` (not
/// started when the server's background work is manual).
pub async fn run(state: AppState, stop: std::sync::Arc<tokio::sync::Notify>) {
    if state.config.quality.band.is_empty() {
        return;
    }
    let every = std::time::Duration::from_secs_f64(state.config.quality.every_seconds);
    let mut last_error = None;
    loop {
        if let Err(e) = tick(&state).await {
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
) -> Result<Vec<Drift>, ApiError> {
    let page = store.events(&EventFilter {
        customer: customer.to_owned(),
        event_type: Some(QUALITY_DRIFT.to_owned()),
        since: Some(since),
        until: Some(until),
        limit: 1000,
        ..Default::default()
    })?;
    let mut out = Vec::new();
    for e in page.events.iter().filter(|e| e.source == PAYOFF_SOURCE) {
        out.push(crate::records::data_as(
            QUALITY_DRIFT,
            &crate::data_of(&e.canonical),
        )?);
    }
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
            level: None,
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
    fn a_service_level_band_reads_its_own_level() {
        let mut figures = BTreeMap::new();
        let mut f = AgentFigures::default();
        // 6 of 10 tickets answered in time; the other level is fine.
        f.service.insert("first_response".into(), (6, 10));
        f.service.insert("resolution".into(), (10, 10));
        figures.insert("support".to_owned(), f);
        let band = |level: &str| Band {
            measure: Measure::ServiceLevel,
            agent: "*".into(),
            min: Some(0.9),
            max: None,
            min_samples: 5,
            level: Some(level.into()),
        };
        let found = drifts(
            &figures,
            &[band("first_response"), band("resolution"), band("unknown")],
            "2026-W49",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (
                found[0].level.as_deref(),
                found[0].value.as_str(),
                found[0].hits,
                found[0].samples
            ),
            (Some("first_response"), "0.6000", 6, 10)
        );
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
            level: None,
        });
        assert!(s.check().unwrap_err().contains("quality.band[0]"));
        s.band[0].min = None;
        s.band[0].max = Some(1.5);
        assert!(s.check().unwrap_err().contains("quality.band[0].max"));
        s.band[0].max = Some(0.2);
        assert!(s.check().is_ok());
        s.band[0].level = Some("first_response".into());
        assert!(s.check().unwrap_err().contains("quality.band[0].level"));
        s.band[0].measure = Measure::ServiceLevel;
        assert!(s.check().is_ok());
        s.band[0].level = None;
        assert!(s.check().unwrap_err().contains("quality.band[0].level"));
    }
}
