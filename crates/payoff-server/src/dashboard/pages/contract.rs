//! Contract: a version rendered readably (fees, what makes each outcome,
//! how it is attributed and priced, service levels), its exact text, and
//! the list of versions with the period each took effect.

use axum::extract::{Path, State};
use maud::{html, Markup};
use payoff_accounting::billing::BillingError;
use payoff_billing::{Attribution, Bound, Contract, Credit, HoldoutBill, Price, TierMode};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::Filters;
use crate::auth::Action;
use crate::dashboard::format::{datetime, duration, grouped, money, short_hash};
use crate::dashboard::layout::{self, Tab};
use crate::dashboard::{Ctx, Viewer};
use crate::problem::{ApiError, ErrorCode};
use crate::{blocking_with, AppState};

#[derive(Deserialize)]
pub struct VersionQuery {
    version: Option<u32>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
    Filters(q): Filters<VersionQuery>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    let id = ctx.id();
    let versions = blocking_with(move |store| Ok(store.contracts(&id)?), &state).await?;
    let Some(latest) = versions.last() else {
        let body = html! { p.muted { "This customer has no contract yet." } };
        return Ok(layout::page(&ctx, Tab::Contract, "Contract", body));
    };
    let wanted = q.version.unwrap_or(latest.version);
    let stored = versions
        .iter()
        .find(|v| v.version == wanted)
        .ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("no contract version {wanted}"))
        })?;
    let contract =
        payoff_outcomes::compiled(stored).map_err(|e| BillingError::Corrupt(e.to_string()))?;
    let body = html! {
        p {
            "Version " strong { (stored.version) } @if stored.version == latest.version { " (current)" }
            ", in force from period " strong { (stored.effective) } ", uploaded " (datetime(stored.uploaded_at))
            ", sha256 " span.mono title=(stored.sha256) { (short_hash(&stored.sha256)) } "."
        }
        (render(&contract))
        details {
            summary { "The contract file, exactly as uploaded" }
            pre { (stored.body) }
        }
        h2 { "Versions" }
        div.table-wrap { table #versions {
            thead { tr { th { "Version" } th { "In force from" } th { "Uploaded" } th { "sha256" } } }
            tbody {
                @for v in versions.iter().rev() {
                    tr {
                        td { a href=(format!("{}?version={}", ctx.path("contract"), v.version)) { "v" (v.version) } @if v.version == stored.version { " (shown)" } }
                        td { (v.effective) }
                        td { (datetime(v.uploaded_at)) }
                        td.mono { (short_hash(&v.sha256)) }
                    }
                }
            }
        } }
    };
    Ok(layout::page(&ctx, Tab::Contract, "Contract", body))
}

fn price(p: &Price, currency: &str) -> Markup {
    html! {
        @match p {
            Price::PerUnit(u) => { (money(u, currency)) " per outcome" }
            Price::Tiers { mode, tiers } => {
                (match mode { TierMode::Graduated => "graduated tiers (each unit at its tier's price)", TierMode::Volume => "volume tiers (all units at the price of the tier the count reaches)" })
                ul { @for t in tiers {
                    li { @match t.up_to { Some(n) => { "up to " (grouped(&n.to_string())) } None => { "beyond" } } ": " (money(t.price, currency)) " each" }
                } }
            }
            Price::Percent { rate, .. } => { ((rate * Decimal::ONE_HUNDRED).normalize()) " % of the outcome's value" }
        }
    }
}

fn render(c: &Contract) -> Markup {
    let cur = c.currency.code;
    html! {
        section.card {
            h2 { "Terms" }
            dl.facts {
                dt { "Customer" } dd { (c.customer) }
                dt { "Billed" } dd { (c.cadence.name()) " in " (cur) ", from " (c.starts) }
                dt { "Base fee" } dd { (money(c.base_fee, cur)) " per period" }
                @if let Some(n) = c.included { dt { "Included" } dd { (grouped(&n.to_string())) " outcomes per period before any is charged" } }
                @if let Some(m) = c.minimum { dt { "Minimum" } dd { (money(m, cur)) " per period" } }
                @if let Some(cap) = c.cap { dt { "Cap" } dd { "never more than " (money(cap, cur)) " per period" } }
                dt { "Rounding" } dd { (c.rounding.name().replace('_', " ")) }
                dt { "Disputes" } dd { "within " (duration(c.dispute_within)) " after the period an outcome matured in" }
                @if let Some(b) = c.baseline_unit_cost { dt { "Human baseline" } dd { (money(b, cur)) " per unit of work done by people" } }
                @if let Some(l) = c.licence_equivalent { dt { "Licence replaced" } dd { (money(l, cur)) " per year" } }
            }
        }
        h2 { "Outcomes" }
        @for o in &c.outcomes {
            section.card {
                h3 { (o.name) }
                dl.facts {
                    dt { "Recognised when" } dd { code { (o.when.source) } }
                    @if let Some(s) = &o.subject { dt { "Subject" } dd { code { (s.source) } } }
                    @if let Some(v) = &o.void_when { dt { "Voided when" } dd { code { (v.source) } } }
                    dt { "Billable after" } dd { (duration(o.matures_after)) " without being voided" }
                    @if let Some(w) = o.clawback_within { dt { "Clawed back" } dd { "if voided within " (duration(w)) " after billing" } }
                    @if let Some(v) = &o.value { dt { "Value" } dd { code { (v.source) } } }
                    @if let Some(n) = o.included { dt { "Included" } dd { (grouped(&n.to_string())) " per period" } }
                    dt { "Attribution" } dd {
                        @match &o.attribution {
                            Attribution::Direct => { "direct: every outcome counts" }
                            Attribution::Holdout { holdout, confidence, bill, experiment, min_subjects } => {
                                "holdout: " ((holdout * Decimal::ONE_HUNDRED).normalize()) " % of subjects (experiment "
                                code { (experiment.as_deref().unwrap_or(&o.name)) } ") are kept from the AI; only the lift proven at "
                                ((confidence * Decimal::ONE_HUNDRED).normalize()) " % confidence is billed, at its "
                                (match bill { HoldoutBill::LowerBound => "lower bound", HoldoutBill::Estimate => "estimate" })
                                ", with at least " (min_subjects) " subjects per arm"
                            }
                        }
                    }
                    dt { "Price" } dd { (price(&o.price, cur)) }
                }
            }
        }
        @if !c.service_levels.is_empty() {
            h2 { "Service levels" }
            @for s in &c.service_levels {
                section.card {
                    h3 { (s.name) }
                    dl.facts {
                        dt { "Measured as" } dd { "share of " code { (s.denominator.source) } " where " code { (s.numerator.source) } }
                        dt { "Promise" } dd { @match s.bound { Bound::AtLeast(b) => { "at least " ((b * Decimal::ONE_HUNDRED).normalize()) " %" } Bound::AtMost(b) => { "at most " ((b * Decimal::ONE_HUNDRED).normalize()) " %" } }
                            " (from " (s.min_samples) " samples)" }
                        dt { "Credit when missed" } dd { @match s.credit { Credit::Percent(p) => { ((p * Decimal::ONE_HUNDRED).normalize()) " % of the period's charges" } Credit::Amount(a) => { (money(a, cur)) } } }
                    }
                }
            }
        }
    }
}
