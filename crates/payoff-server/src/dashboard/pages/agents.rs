//! Agents: every agent that worked for the customer over the last days,
//! read from the ledger whatever door its records came through (the model
//! gateway, OpenTelemetry, events it sent itself, the MCP gateway): its
//! model calls per day, their errors and latency percentiles, tool calls
//! and runs, the actions it asked for (denied, waiting for a person) and,
//! for the provider's roles, what its calls cost; then, for those roles,
//! every customer's agents in one table.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use maud::{html, Markup};
use payoff_billing::{cost_of_call, ModelCall, Prices};
use payoff_store::{EventFilter, Store};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use super::Filters;
use crate::actions::{self, ActionState};
use crate::auth::Action;
use crate::dashboard::charts::{self, Series};
use crate::dashboard::format::{grouped, points};
use crate::dashboard::layout::{self, Tab};
use crate::dashboard::{Ctx, Viewer};
use crate::problem::{ApiError, ErrorCode};
use crate::{blocking_with, AppState};

/// Agents drawn in the chart; the table lists them all.
const CHART_SERIES_MAX: usize = 6;
/// The name shown for records that name no agent.
const UNNAMED: &str = "(unnamed)";

#[derive(Deserialize)]
pub struct DaysQuery {
    /// 1, 7 or 30: the window, ending now.
    days: Option<u32>,
}

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
    Ok(agents)
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
    Filters(q): Filters<DaysQuery>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadApprovals).await?;
    let days = q.days.unwrap_or(7);
    if ![1, 7, 30].contains(&days) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "days: 1, 7 or 30"));
    }
    let until = state.now();
    let since = until - Duration::days(i64::from(days));
    let provider = ctx.allows(Action::ReadEconomics);
    let (id, others) = (
        ctx.id(),
        if provider {
            ctx.customers.iter().map(|c| c.id.clone()).collect()
        } else {
            Vec::new()
        },
    );
    let (own, everyone) = blocking_with(
        move |store| {
            let prices = crate::economics::prices(store)?;
            let own = gather(store, &prices, &id, since, until)?;
            let mut everyone = Vec::new();
            for other in others {
                for (agent, f) in gather(store, &prices, &other, since, until)? {
                    everyone.push((other.clone(), agent, f));
                }
            }
            Ok((own, everyone))
        },
        &state,
    )
    .await?;
    let first = since.date_naive();
    let day_list: Vec<NaiveDate> = first.iter_days().take(days as usize).collect();
    let mut busiest: Vec<(&String, &AgentFigures)> = own.iter().collect();
    busiest.sort_by_key(|(_, f)| std::cmp::Reverse(f.calls));
    let series: Vec<Series> = busiest
        .iter()
        .filter(|(_, f)| f.calls > 0)
        .take(CHART_SERIES_MAX)
        .map(|(name, f)| Series {
            name: (*name).clone(),
            counts: f.per_day.clone(),
        })
        .collect();
    let body = html! {
        nav.filters { "Window: "
            @for d in [1u32, 7, 30] {
                @if d == days { strong { "last " (d) " days" } } @else { a href=(format!("{}?days={d}", ctx.path("agents"))) { "last " (d) " days" } }
                " "
            }
        }
        @if own.is_empty() {
            p.muted { "No agent left a record in this window: model calls (through the gateway, OpenTelemetry or as llm.call events), tool calls, runs and actions show here." }
        } @else {
            @if !series.is_empty() {
                (charts::daily_counts("Model calls per day", "calls", &day_list, &series))
            }
            (table(&own, provider))
        }
        @if provider && !everyone.is_empty() {
            h2 { "Every customer's agents" }
            (everyone_table(&everyone))
        }
    };
    Ok(layout::page(&ctx, Tab::Agents, "Agents", body))
}

fn latency(f: &AgentFigures, q: f64) -> String {
    f.latency(q)
        .map_or_else(|| "–".to_owned(), |ms| grouped(&ms.to_string()))
}

fn error_share(f: &AgentFigures) -> String {
    if f.calls == 0 {
        "–".to_owned()
    } else {
        format!("{}%", points(f.errors as f64 / f.calls as f64))
    }
}

fn table(agents: &BTreeMap<String, AgentFigures>, costs: bool) -> Markup {
    html! {
        div.table-wrap { table #agents {
            thead { tr {
                th { "Agent" } th.num { "Model calls" } th.num { "Errors" } th.num { "p50 ms" } th.num { "p95 ms" }
                @if costs { th.num { "Cost" } }
                th.num { "Tool calls" } th.num { "Runs" } th.num { "Actions allowed" } th.num { "Denied" } th.num { "Waiting" }
            } }
            tbody {
                @for (name, f) in agents {
                    tr {
                        td.mono { (name) }
                        td.num { (grouped(&f.calls.to_string())) }
                        td.num { (grouped(&f.errors.to_string())) " (" (error_share(f)) ")" }
                        td.num { (latency(f, 0.5)) }
                        td.num { (latency(f, 0.95)) }
                        @if costs { td.num { (f.cost.round_dp(4).normalize()) } }
                        td.num { (f.tool_calls) }
                        td.num { (f.runs) }
                        td.num { (f.allowed) }
                        td.num { (f.denied) }
                        td.num { @if f.pending > 0 { strong { (f.pending) } } @else { "0" } }
                    }
                }
            }
        } }
    }
}

fn everyone_table(rows: &[(String, String, AgentFigures)]) -> Markup {
    html! {
        div.table-wrap { table #all-agents {
            thead { tr {
                th { "Customer" } th { "Agent" } th.num { "Model calls" } th.num { "Errors" } th.num { "p95 ms" } th.num { "Cost" } th.num { "Denied" } th.num { "Waiting" }
            } }
            tbody {
                @for (customer, name, f) in rows {
                    tr {
                        td.mono { (customer) } td.mono { (name) }
                        td.num { (grouped(&f.calls.to_string())) }
                        td.num { (error_share(f)) }
                        td.num { (latency(f, 0.95)) }
                        td.num { (f.cost.round_dp(4).normalize()) }
                        td.num { (f.denied) }
                        td.num { (f.pending) }
                    }
                }
            }
        } }
    }
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
}
