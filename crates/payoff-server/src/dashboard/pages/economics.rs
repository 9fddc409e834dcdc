//! Economics (provider roles only): what serving the customer cost, per
//! outcome and per model, the margin of every customer in the period, and
//! the budgets that stop runaway spending.

use axum::extract::{Path, State};
use maud::{html, Markup};
use payoff_accounting::billing;
use payoff_accounting::economics::{self, BudgetCheck, Economics};
use payoff_accounting::glance;
use payoff_billing::Period;
use rust_decimal::Decimal;

use super::overview::{chosen_period, period_choices, period_picker, PeriodQuery};
use super::Filters;
use crate::auth::Action;
use crate::dashboard::charts::{self, Bar};
use crate::dashboard::format::{grouped, money};
use crate::dashboard::layout::{self, Tab};
use crate::dashboard::{Ctx, Viewer};
use crate::problem::ApiError;
use crate::{blocking_with, glances, AppState};

/// Customers compared in the margin chart; more are listed in the table.
const MARGIN_BARS_MAX: usize = 12;

struct Margin {
    customer: String,
    /// `None` when the customer has no contract (nothing billed).
    economics: Option<Economics>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
    Filters(q): Filters<PeriodQuery>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadEconomics).await?;
    let id = ctx.id();
    let others: Vec<String> = ctx.customers.iter().map(|c| c.id.clone()).collect();
    let now = state.now();
    let policy = state.config.overview;
    // Every figure of the page but the budgets is the kept figures of the
    // Overview (`glance`): one row per customer when current, so the page
    // costs what it reads, not a preview of every customer's period.
    let loaded = blocking_with(
        move |store| {
            let versions = match billing::Versions::load(store, &id) {
                Ok(v) => v,
                Err(payoff_outcomes::OutcomesError::NoContract(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let closed = billing::summaries(store, &id)?;
            let choices =
                period_choices(&closed, Period::containing(versions.latest().cadence, now));
            let period = versions.period(&chosen_period(q.asked(), &choices))?;
            let mut stale = Vec::new();
            let mut kept = |customer: &str,
                            versions: &billing::Versions,
                            closed: &[payoff_store::StatementSummary],
                            period: Period|
             -> Result<Economics, ApiError> {
                let (kept, behind) =
                    glance::look(store, customer, versions, closed, period, now, policy)?.split();
                if behind.is_some() {
                    stale.push((customer.to_owned(), period.to_string()));
                }
                Ok(kept.glance.economics)
            };
            let report = kept(&id, &versions, &closed, period)?;
            let mut budgets = Vec::new();
            for b in store.budgets(&id)? {
                let agent = (b.agent != "*").then_some(b.agent.as_str());
                let check = economics::check_budget(store, &id, agent, now)?;
                budgets.push((b, check));
            }
            let mut margins = Vec::new();
            for other in others {
                let economics = match billing::Versions::load(store, &other) {
                    Err(payoff_outcomes::OutcomesError::NoContract(_)) => None,
                    Err(e) => return Err(e.into()),
                    // Another cadence names no such period: nothing to compare.
                    Ok(v) => match v.period(&period.to_string()) {
                        Err(_) => None,
                        Ok(p) => {
                            let closed = billing::summaries(store, &other)?;
                            Some(kept(&other, &v, &closed, p)?)
                        }
                    },
                };
                margins.push(Margin {
                    customer: other,
                    economics,
                });
            }
            Ok(Some((choices, report, budgets, margins, stale)))
        },
        &state,
    )
    .await?;
    if let Some((.., stale)) = &loaded {
        for (customer, period) in stale {
            glances::want(&state, customer, period);
        }
    }
    let body = match loaded {
        None => {
            html! { p.muted { "This customer has no contract yet: nothing is billed, so there is no margin." } }
        }
        Some((choices, report, budgets, margins, stale)) => html! {
            @if !stale.is_empty() {
                p.muted #figures-as-of { strong { "Being brought up to date" } ": newer events are being counted for "
                    (stale.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", ")) "; reload in a moment." }
            }
            (period_picker(&ctx.path("economics"), &choices, &report.period))
            (figures(&report))
            div.grid {
                section.card { (per_outcome(&report)) }
                section.card { (by_model(&report)) }
            }
            section.card { (margin_per_customer(&ctx, &report.period, &margins)) }
            section.card { (budget_section(&budgets)) }
        },
    };
    Ok(layout::page(&ctx, Tab::Economics, "Economics", body))
}

fn figures(e: &Economics) -> Markup {
    let usd = e.cost.currency.as_str();
    html! {
        div.tiles {
            div.tile { span.figure { (money(e.revenue_total, &e.currency)) } span.caption { "revenue (" (e.statement) " statement)" } }
            div.tile { span.figure { (money(e.cost.total, usd)) } span.caption { "cost of service, " (grouped(&e.cost.calls.to_string())) " model calls" } }
            div.tile { span.figure { (money(e.gross_margin, &e.currency)) } span.caption { "gross margin"
                @if let Some(p) = e.gross_margin_percent { ", " (p) " % of revenue" } } }
            div.tile { span.figure { (money(e.cost.without_outcome, usd)) } span.caption { "spent on work that produced no outcome" } }
        }
        @for w in &e.cost.warnings { p.flash.bad { (w) } }
    }
}

fn per_outcome(e: &Economics) -> Markup {
    let usd = e.cost.currency.as_str();
    let bars: Vec<Bar> = e
        .cost
        .by_outcome
        .iter()
        .enumerate()
        .map(|(i, (kind, c))| Bar {
            label: kind.clone(),
            value: c.per_outcome,
            class: ["s0", "s1", "s2", "s3", "s4", "s5"][i % 6],
        })
        .collect();
    html! {
        @if bars.is_empty() { h3 { "Cost per outcome" } p.muted { "No outcome matured in this period." } }
        @else {
            (charts::amounts(&format!("Cost per outcome, {} ({usd} per outcome)", e.period), usd, &bars))
            table {
                thead { tr { th { "Kind" } th.num { "Outcomes" } th.num { "Cost" } th.num { "Per outcome" } } }
                tbody { @for (kind, c) in &e.cost.by_outcome {
                    tr { td { (kind) } td.num { (grouped(&c.outcomes.to_string())) } td.num { (money(c.cost, usd)) } td.num { (money(c.per_outcome, usd)) } }
                } }
            }
        }
    }
}

fn by_model(e: &Economics) -> Markup {
    let usd = e.cost.currency.as_str();
    let bars: Vec<Bar> = e
        .cost
        .by_model
        .iter()
        .map(|(model, cost)| Bar {
            label: model.clone(),
            value: *cost,
            class: "s3",
        })
        .collect();
    html! {
        @if bars.is_empty() { h3 { "Cost by model" } p.muted { "No model call was priced in this period." } }
        @else { (charts::amounts(&format!("Cost by model, {}", e.period), usd, &bars)) }
        @if !e.cost.by_agent.is_empty() {
            p { "By agent: " @for (i, (agent, cost)) in e.cost.by_agent.iter().enumerate() { @if i > 0 { "; " } strong { (agent) } " " (money(cost, usd)) } }
        }
    }
}

fn margin_per_customer(ctx: &Ctx, period: &str, margins: &[Margin]) -> Markup {
    let bars: Vec<Bar> = margins
        .iter()
        .filter_map(|m| {
            m.economics.as_ref().map(|e| Bar {
                label: m.customer.clone(),
                value: e.gross_margin,
                class: if e.gross_margin.is_sign_negative() {
                    "bad"
                } else {
                    "good"
                },
            })
        })
        .take(MARGIN_BARS_MAX)
        .collect();
    html! {
        (charts::amounts(&format!("Gross margin per customer, {period}"), "USD", &bars))
        table #margins {
            thead { tr { th { "Customer" } th.num { "Revenue" } th.num { "Cost" } th.num { "Margin" } th.num { "Margin %" } } }
            tbody { @for m in margins {
                tr {
                    td { a href=(format!("/ui/customers/{}/economics?period={period}", m.customer)) { (m.customer) } @if m.customer == ctx.customer.id { " (shown)" } }
                    @match &m.economics {
                        Some(e) => {
                            td.num { (money(e.revenue_total, &e.currency)) }
                            td.num { (money(e.cost.total, &e.cost.currency)) }
                            td.num { (money(e.gross_margin, &e.currency)) }
                            td.num { @if let Some(p) = e.gross_margin_percent { (p) " %" } @else { "–" } }
                        }
                        None => { td.muted colspan="4" { "no contract for this period" } }
                    }
                }
            } }
        }
    }
}

fn budget_section(budgets: &[(payoff_store::Budget, BudgetCheck)]) -> Markup {
    let amount = |t: &str| t.parse::<Decimal>().unwrap_or_default();
    html! {
        h2 { "Budgets" }
        @if budgets.is_empty() {
            p.muted { "No budget is set; spending is not limited. Set one with " code { "PUT /v1/customers/{customer}/budgets" } "." }
        }
        @for (b, check) in budgets {
            @let who = if b.agent == "*" { "The whole customer".to_owned() } else { format!("Agent {}", b.agent) };
            h3 { (who) ", " (check.period) }
            (charts::budget(&who, check.spent, amount(&b.limit), b.warn_at.as_deref().map(amount)))
            p { strong { @if check.allow { "Spending allowed" } @else { "Spending refused" } } ": " (check.reason) "." }
        }
    }
}
