//! Agents: every agent that worked for the customer over the last days,
//! read from the ledger whatever door its records came through (the model
//! gateway, OpenTelemetry, events it sent itself, the MCP gateway): its
//! model calls per day, their errors and latency percentiles, tool calls
//! and runs, the actions it asked for (denied, waiting for a person) and,
//! for the provider's roles, what its calls cost; then, for those roles,
//! every customer's agents in one table.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use chrono::{Duration, NaiveDate};
use maud::{html, Markup};
use serde::Deserialize;

use super::Filters;
use crate::auth::Action;
use crate::dashboard::charts::{self, Series};
use crate::dashboard::format::{grouped, points};
use crate::dashboard::layout::{self, Tab};
use crate::dashboard::{Ctx, Viewer};
use crate::problem::{ApiError, ErrorCode};
use crate::watch::{gather, recorded_drifts, AgentFigures, Drift};
use crate::{blocking_with, AppState};

/// Agents drawn in the chart; the table lists them all.
const CHART_SERIES_MAX: usize = 6;

#[derive(Deserialize)]
pub struct DaysQuery {
    /// 1, 7 or 30: the window, ending now.
    days: Option<u32>,
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
    let ttl = state.support.approval_ttl;
    let (own, everyone, drifted) = blocking_with(
        move |store| {
            let prices = payoff_accounting::economics::prices(store)?;
            let own = gather(store, &prices, &id, since, until, ttl)?;
            let drifted = recorded_drifts(store, &id, since, until)?;
            let mut everyone = Vec::new();
            for other in others {
                for (agent, f) in gather(store, &prices, &other, since, until, ttl)? {
                    everyone.push((other.clone(), agent, f));
                }
            }
            Ok((own, everyone, drifted))
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
        @for d in &drifted { (drift_notice(d)) }
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

/// A measure that left its band this window (a `payoff.quality.drift` record).
fn drift_notice(d: &Drift) -> Markup {
    let band = match (d.min, d.max) {
        (Some(lo), Some(hi)) => format!("{lo} to {hi}"),
        (Some(lo), None) => format!("at least {lo}"),
        (None, Some(hi)) => format!("at most {hi}"),
        (None, None) => String::new(),
    };
    html! {
        p.notice.drift role="status" {
            strong { "Quality: " } "agent " span.mono { (d.agent) } "'s " (d.measure.as_str().replace('_', " "))
            " was " strong { (d.value) } " in week " (d.week) " (" (d.hits) " of " (d.samples) "), outside its band (" (band) ")."
        }
    }
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
                th.num title="Outcomes of the subjects it served, and how many of them were voided (reopened, voided by a rule, disputed away)" { "Outcomes (voided)" }
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
                        td.num { (f.outcomes) " (" (f.outcomes_voided) ")" }
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
