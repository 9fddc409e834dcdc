//! Overview: a period at a glance. Outcomes per day, what was billed
//! against the licence it replaces, cost against revenue (provider
//! roles), the lift of holdout-attributed outcomes with its interval, and
//! what waits for a person.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use chrono::{DateTime, NaiveDate, Utc};
use maud::{html, Markup};
use payoff_accounting::billing;
use payoff_accounting::economics::{self, Roi};
use payoff_accounting::glance;
use payoff_billing::{Period, Statement};
use payoff_store::StatementSummary;
use rust_decimal::Decimal;
use serde::Deserialize;

use super::Filters;
use crate::auth::Action;
use crate::dashboard::charts::{self, Bar, Series};
use crate::dashboard::format::{grouped, money, points};
use crate::dashboard::layout::{self, Tab};
use crate::dashboard::{Ctx, Viewer};
use crate::problem::ApiError;
use crate::support::{self, approvals::Status};
use crate::{blocking_with, glances, AppState};

#[derive(Deserialize)]
pub struct PeriodQuery {
    period: Option<String>,
}

impl PeriodQuery {
    pub(super) fn asked(&self) -> Option<&str> {
        self.period.as_deref()
    }
}

/// The periods a person can pick: the closed ones and the current one.
pub(super) struct PeriodChoice {
    pub name: String,
    pub closed: bool,
}

pub(super) fn period_choices(closed: &[StatementSummary], current: Period) -> Vec<PeriodChoice> {
    let mut list: Vec<PeriodChoice> = closed
        .iter()
        .map(|s| PeriodChoice {
            name: s.period.clone(),
            closed: true,
        })
        .collect();
    if !closed.iter().any(|s| s.period == current.to_string()) {
        list.push(PeriodChoice {
            name: current.to_string(),
            closed: false,
        });
    }
    list.reverse();
    list
}

/// The period picker of a page: a GET form on the page itself.
pub(super) fn period_picker(action: &str, choices: &[PeriodChoice], selected: &str) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            label { "Period"
                select name="period" data-autosubmit {
                    @for c in choices {
                        option value=(c.name) selected[c.name == selected] {
                            (c.name) @if c.closed { " (closed)" } @else { " (so far, preview)" }
                        }
                    }
                }
            }
            noscript { button type="submit" { "Show" } }
        }
    }
}

/// The period a page shows: the one asked for, else the latest closed
/// one (what the customer was billed), else the current one.
pub(super) fn chosen_period(asked: Option<&str>, choices: &[PeriodChoice]) -> String {
    asked
        .map(str::to_owned)
        .or_else(|| choices.iter().find(|c| c.closed).map(|c| c.name.clone()))
        .or_else(|| choices.first().map(|c| c.name.clone()))
        .unwrap_or_default()
}

struct Overview {
    period: Period,
    choices: Vec<PeriodChoice>,
    /// The figures, as kept or just computed ([`glance`]).
    kept: glance::Kept,
    /// Events the figures do not count yet (a refresh is under way).
    behind: Option<u64>,
    days: Vec<NaiveDate>,
    per_day: Vec<Series>,
    roi: Roi,
    open_approvals: usize,
}

fn load(
    store: &payoff_store::Store,
    customer: &str,
    asked: Option<&str>,
    now: DateTime<Utc>,
    pending_since: DateTime<Utc>,
    policy: glance::Policy,
) -> Result<Overview, ApiError> {
    let versions = billing::Versions::load(store, customer)?;
    let closed = billing::summaries(store, customer)?;
    let choices = period_choices(&closed, Period::containing(versions.latest().cadence, now));
    let name = chosen_period(asked, &choices);
    let period = versions.period(&name)?;
    let (kept, behind) =
        glance::look(store, customer, &versions, &closed, period, now, policy)?.split();
    let first = period.start.date_naive();
    let days: Vec<NaiveDate> = first
        .iter_days()
        .take_while(|d| {
            d.and_hms_opt(0, 0, 0)
                .is_some_and(|t| t.and_utc() < period.end)
        })
        .collect();
    let mut counts: BTreeMap<&str, Vec<u64>> = versions
        .latest()
        .outcomes
        .iter()
        .map(|o| (o.name.as_str(), vec![0; days.len()]))
        .collect();
    for (name, day, n) in &kept.glance.created {
        if let Some(slot) = counts
            .get_mut(name.as_str())
            .and_then(|c| c.get_mut(*day as usize))
        {
            *slot += n;
        }
    }
    let per_day = counts
        .into_iter()
        .map(|(name, counts)| Series {
            name: name.to_owned(),
            counts,
        })
        .collect();

    // Newest first, back to the oldest draft that can still be waiting.
    let mut open_approvals = 0;
    support::walk_approvals_newest(store, customer, None, |_, a| {
        if a.status == Status::Pending {
            open_approvals += 1;
        }
        a.requested_at >= pending_since
    })?;
    // One statement (or preview) serves every figure of the page.
    let statement = &kept.glance.statement;
    let roi = economics::roi_of(&versions, period, statement, economics::state_of(statement));
    Ok(Overview {
        period,
        choices,
        kept,
        behind,
        days,
        per_day,
        roi,
        open_approvals,
    })
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
    Filters(q): Filters<PeriodQuery>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    let id = ctx.id();
    let now = state.now();
    let pending_since = now - support::pending_window(state.support.approval_ttl);
    let policy = state.config.overview;
    let loaded = blocking_with(
        move |store| match load(store, &id, q.period.as_deref(), now, pending_since, policy) {
            Err(e) if e.code == crate::problem::ErrorCode::NoContract => Ok(None),
            other => other.map(Some),
        },
        &state,
    )
    .await?;
    let body = match loaded {
        None => html! {
            p { "This customer has no contract yet, so nothing is measured or billed. "
                "Upload one with " code { "payoff contract push FILE.toml" } "." }
        },
        Some(o) => {
            if o.behind.is_some() {
                glances::want(&state, &ctx.id(), &o.period.to_string());
            }
            render(&ctx, &o)
        }
    };
    Ok(layout::page(&ctx, Tab::Overview, "Overview", body))
}

fn render(ctx: &Ctx, o: &Overview) -> Markup {
    let s = &o.kept.glance.statement;
    let closed = s.signature.is_some();
    let currency = s.currency.as_str();
    let outcomes_in_period: u64 = o.per_day.iter().flat_map(|s| &s.counts).sum();
    html! {
        (period_picker(&ctx.path("overview"), &o.choices, &o.period.to_string()))
        (super::statements::assumed_notice(&o.kept.glance.assumed))
        (as_of(o))
        div.tiles {
            div.tile {
                span.figure { (grouped(&outcomes_in_period.to_string())) }
                span.caption { "outcomes recognised in " (o.period) }
            }
            div.tile {
                span.figure #billed-total { (money(s.total, currency)) }
                span.caption {
                    @if closed { "billed (statement " a href=(ctx.path(&format!("statements/{}", s.id))) { (s.id) } ")" }
                    @else { "to bill so far (preview, not closed)" }
                }
            }
            div.tile {
                span.figure { (o.roi.effective_price_per_outcome.map_or("–".to_owned(), |p| money(p, currency))) }
                span.caption { "per unit of work delivered" }
            }
            @if let Some(saving) = o.roi.implied_saving {
                div.tile {
                    span.figure { (money(saving, currency)) }
                    span.caption { "saved against the human baseline" }
                }
            }
            div.tile {
                a href=(ctx.path("approvals")) { span.figure { (o.open_approvals) } }
                span.caption { "replies waiting for approval" }
            }
            div.tile {
                a href=(ctx.path("disputes")) { span.figure { (o.kept.glance.open_disputes) } }
                span.caption { "open disputes" }
            }
        }
        section.card {
            (charts::daily_counts(
                &format!("Outcomes per day, {} (by the day they were recognised)", o.period),
                "outcomes per day",
                &o.days,
                &o.per_day,
            ))
        }
        div.grid {
            section.card { (billed_versus_licence(o, currency)) }
            @if ctx.allows(Action::ReadEconomics) {
                section.card { (cost_versus_revenue(&o.kept.glance.economics)) }
            }
        }
        section.card {
            h2 { "Lift proven against the holdout" }
            (lift(s))
        }
    }
}

fn billed_versus_licence(o: &Overview, currency: &str) -> Markup {
    let billed = o.kept.glance.statement.total;
    let mut bars = vec![Bar {
        label: "Billed by Payoff".into(),
        value: billed,
        class: "s0",
    }];
    if let Some(l) = o.roi.licence_for_period {
        bars.push(Bar {
            label: "Licence it replaces".into(),
            value: l,
            class: "s5",
        });
    }
    if let Some(b) = o.roi.baseline_unit_cost {
        bars.push(Bar {
            label: "Same work by people".into(),
            value: b * Decimal::from(o.roi.outcomes_delivered),
            class: "s1",
        });
    }
    html! {
        (charts::amounts(&format!("Billed against the licence, {}", o.period), currency, &bars))
        @if o.roi.licence_for_period.is_none() {
            p.muted { "The contract names no licence equivalent (" code { "licence_equivalent" } ") to compare with." }
        }
        @if let Some(d) = o.roi.paid_versus_licence {
            p { @if d.is_sign_negative() { (money(-d, currency)) " less than the licence." }
                @else { (money(d, currency)) " more than the licence." } }
        }
    }
}

/// What the figures count: the ledger sequence and time they are as of,
/// and, while a refresh runs, how many newer events they leave out.
fn as_of(o: &Overview) -> Markup {
    let k = &o.kept;
    html! {
        p.muted #figures-as-of {
            "Figures as of " (k.computed_at.format("%Y-%m-%d %H:%M:%S UTC"))
            ", ledger sequence " (grouped(&k.head.to_string())) "."
            @if let Some(behind) = o.behind {
                " " strong { "Being brought up to date" }
                @if behind > 0 { " (" (grouped(&behind.to_string())) " newer events)" }
                ": reload in a moment."
            }
        }
    }
}

fn cost_versus_revenue(e: &payoff_accounting::economics::Economics) -> Markup {
    let bars = [
        Bar {
            label: "Revenue".into(),
            value: e.revenue_total,
            class: "s0",
        },
        Bar {
            label: "Cost of service".into(),
            value: e.cost.total,
            class: "s4",
        },
        Bar {
            label: "Gross margin".into(),
            value: e.gross_margin,
            class: if e.gross_margin.is_sign_negative() {
                "bad"
            } else {
                "good"
            },
        },
    ];
    html! {
        (charts::amounts(&format!("Cost against revenue, {} (provider only)", e.period), &e.currency, &bars))
        @if let Some(p) = e.gross_margin_percent { p { "Gross margin " strong { (p) " %" } " of revenue, " (e.cost.calls) " model calls." } }
    }
}

fn lift(s: &Statement) -> Markup {
    let lines: Vec<_> = s
        .lines
        .iter()
        .filter_map(|l| l.attribution.as_ref().map(|a| (l, a)))
        .collect();
    let number = |t: &str| t.parse::<f64>().unwrap_or(0.0);
    html! {
        @if lines.is_empty() {
            p.muted { "No outcome of this contract is billed by lift over a holdout." }
        }
        @for (line, a) in lines {
            @let proportions = a.method.contains("proportions");
            @let scale = if proportions { 100.0 } else { 1.0 };
            @let unit = if proportions { "percentage points".to_owned() } else { format!("{} per subject", s.currency) };
            @let (low, estimate, high) = (number(&a.low) * scale, number(&a.estimate) * scale, number(&a.high) * scale);
            @let billed = if a.bill == "lower_bound" { low } else { estimate }.max(0.0);
            h3 { (line.outcome.as_deref().unwrap_or("")) " " span class=(format!("badge {}", if a.status == "billed" { "good" } else { "warn" })) { (a.status) } }
            @if a.ai.subjects > 0 && a.control.subjects > 0 { (charts::interval(&charts::Interval {
                title: &format!("Lift of the AI arm over the control arm, {} % confidence", number(&a.confidence) * 100.0),
                unit: &unit,
                low, estimate, high, billed,
                billed_label: if a.bill == "lower_bound" { "billed at the lower bound" } else { "billed at the estimate" },
            })) }
            p {
                "AI arm: " strong { (grouped(&a.ai.subjects.to_string())) } " subjects, " (grouped(&a.ai.outcomes.to_string())) " outcomes"
                @if proportions { " (" (points(number(&a.ai.per_subject))) " %)" }
                "; control arm: " strong { (grouped(&a.control.subjects.to_string())) } " subjects, " (grouped(&a.control.outcomes.to_string())) " outcomes"
                @if proportions { " (" (points(number(&a.control.per_subject))) " %)" }
                ". Billed: "
                @if proportions { strong { (grouped(&a.billed_quantity)) } " incremental outcomes" }
                @else { strong { (money(&a.billed_quantity, &s.currency)) } " of incremental value" }
                ", " (money(line.amount, &s.currency)) "."
            }
            p.muted { (a.reason) ". " (a.method) "." }
        }
    }
}
