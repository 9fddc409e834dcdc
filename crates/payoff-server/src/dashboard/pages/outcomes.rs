//! Outcomes: a filtered list, and one outcome with the evidence behind
//! it (every event of its subject, the ones that made it marked), its
//! state history, its disputes and the forms to dispute or decide.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use payoff_accounting::billing::{self, OutcomeNow};
use payoff_billing::{customer_of_id, Decision};
use payoff_store::{EventFilter, StoredEvent};
use serde::Deserialize;
use serde_json::Value;

use super::{day_start, state_badge, Filters};
use crate::auth::Action;

use crate::dashboard::format::{
    datetime, datetime_text, duration, grouped, short_hash, url_encode,
};
use crate::dashboard::layout::{self, csrf, Tab};
use crate::dashboard::{Ctx, Viewer};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::billing::{find_outcome, outcome_page, OutcomeQuery, STATES};
use crate::{blocking_with, AppState};

const PAGE_SIZE: usize = 50;
/// Events of one subject shown on an outcome's page.
const SUBJECT_EVENTS_MAX: usize = 200;
/// Bytes of an event's data shown before it is cut.
const EVENT_DATA_CHARS_MAX: usize = 4000;

#[derive(Deserialize)]
pub struct ListQuery {
    kind: Option<String>,
    state: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Outcomes maturing in this period (a statement's lines link here).
    period: Option<String>,
    cursor: Option<String>,
}

impl ListQuery {
    fn link(&self, base: &str, cursor: Option<&str>) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("kind", &self.kind),
            ("state", &self.state),
            ("from", &self.from),
            ("to", &self.to),
            ("period", &self.period),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", url_encode(v)));
            }
        }
        if let Some(c) = cursor {
            parts.push(format!("cursor={c}"));
        }
        format!("{base}?{}", parts.join("&"))
    }
}

/// The page counts matches up to this many: beyond, it says "more than",
/// so a filter over millions of outcomes costs what one over a thousand
/// does. Ten thousand cost 2.5 ms of each page from a million outcomes
/// on (`payoff bench reads`: 3.4 ms against 0.9 ms at 2,000 outcomes).
const COUNT_SHOWN: u64 = 1_000;

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
    Filters(q): Filters<ListQuery>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    let query = OutcomeQuery {
        name: q.kind.clone(),
        state: q.state.clone(),
        since: day_start("from", q.from.as_deref(), false)?,
        until: day_start("to", q.to.as_deref(), true)?,
        period: q.period.clone(),
        cursor: q.cursor.clone(),
        limit: Some(PAGE_SIZE),
        count: Some(true),
        ..Default::default()
    };
    let id = ctx.id();
    let now = state.now();
    let (page, kinds) = blocking_with(
        move |store| {
            let kinds: Vec<String> = billing::Versions::load(store, &id)?
                .latest()
                .outcomes
                .iter()
                .map(|o| o.name.clone())
                .collect();
            Ok((
                outcome_page(store, &id, &query, now, COUNT_SHOWN + 1)?,
                kinds,
            ))
        },
        &state,
    )
    .await?;
    let base = ctx.path("outcomes");
    let body = html! {
        form.filters method="get" action=(base) {
            label { "Kind" select name="kind" {
                option value="" { "any" }
                @for k in &kinds { option value=(k) selected[q.kind.as_deref() == Some(k.as_str())] { (k) } }
            } }
            label { "State" select name="state" {
                option value="" { "any" }
                @for s in STATES { option value=(s) selected[q.state.as_deref() == Some(s)] { (s) } }
            } }
            label { "Recognised from" input type="date" name="from" value=[q.from.as_deref()]; }
            label { "to (inclusive)" input type="date" name="to" value=[q.to.as_deref()]; }
            label { "Maturing in period" input type="text" name="period" value=[q.period.as_deref()] size="8" placeholder="YYYY-MM"; }
            button type="submit" { "Filter" }
        }
        p.muted {
            @match page.total.unwrap_or_default() {
                n if n > COUNT_SHOWN => { "More than " (grouped(&COUNT_SHOWN.to_string())) " outcomes match." }
                n => { (grouped(&n.to_string())) " outcomes match." }
            }
        }
        @if !page.items.is_empty() {
            div.table-wrap { table #outcomes {
                thead { tr { th { "Outcome" } th { "Kind" } th { "Subject" } th { "State" } th { "Recognised" } th { "Matures" } th { "Statement" } } }
                tbody {
                    @for o in &page.items {
                        tr {
                            td.mono { a href=(ctx.path(&format!("outcomes/{}", o.outcome.id))) { (o.outcome.id) } }
                            td { (o.name) }
                            td { (o.outcome.subject) }
                            td { (state_badge(o.state)) }
                            td { (datetime(o.outcome.created.time)) }
                            td { (datetime(o.outcome.matures_at)) }
                            td { @if let Some(st) = &o.billed_in { a href=(ctx.path(&format!("statements/{st}"))) { (st) } } }
                        }
                    }
                }
            } }
        }
        div.pager {
            @if q.cursor.is_some() {
                a href=(q.link(&base, None)) { "← First page" }
            }
            @if let Some(next) = &page.next_cursor { a href=(q.link(&base, Some(next))) { "Next page →" } }
        }
    };
    Ok(layout::page(&ctx, Tab::Outcomes, "Outcomes", body))
}

/// The states an outcome went through, from its own record.
fn history(ctx: &Ctx, o: &OutcomeNow, now: DateTime<Utc>) -> Vec<(DateTime<Utc>, Markup)> {
    let out = &o.outcome;
    let mut steps = vec![(
        out.created.time,
        html! { "Recognised as " strong { (o.name) } " (pending): event " span.mono { (out.created.event_id) } },
    )];
    let matured = out.matures_at <= now;
    steps.push((
        out.matures_at,
        html! { @if matured { "Matured: billable from here" } @else { "Will mature (become billable) unless voided first" } },
    ));
    if let Some(v) = &out.void {
        steps.push((
            v.time,
            html! { "Voided by event " span.mono { (v.event_id) } },
        ));
    }
    for d in &out.disputes {
        steps.push((d.opened.time, html! { "Disputed: " q { (d.reason) } }));
        if let Some((decision, mark, note)) = &d.decision {
            let word = match decision {
                Decision::Accepted => {
                    "Dispute accepted: the outcome is not billed (or credited if it was)"
                }
                Decision::Rejected => "Dispute rejected: billable again",
            };
            steps.push((
                mark.time,
                html! { (word) @if !note.is_empty() { ": " q { (note) } } },
            ));
        }
    }
    steps.sort_by_key(|(t, _)| *t);
    if let Some(st) = &o.billed_in {
        steps.push((
            DateTime::<Utc>::MAX_UTC,
            html! { "Billed on statement " a href=(ctx.path(&format!("statements/{st}"))) { (st) } },
        ));
    }
    if let Some(st) = &o.credited_in {
        steps.push((
            DateTime::<Utc>::MAX_UTC,
            html! { "Credited on statement " a href=(ctx.path(&format!("statements/{st}"))) { (st) } },
        ));
    }
    steps
}

/// One event on an outcome's evidence timeline.
struct Row {
    sequence: u64,
    hash: String,
    event: Value,
}

impl Row {
    fn of(e: &StoredEvent) -> Row {
        Row {
            sequence: e.sequence,
            hash: hex::encode(e.hash),
            event: serde_json::from_slice(&e.canonical).unwrap_or(Value::Null),
        }
    }

    fn text(&self, field: &str) -> &str {
        self.event[field].as_str().unwrap_or("")
    }

    fn data(&self) -> String {
        let text = serde_json::to_string_pretty(&self.event["data"]).unwrap_or_default();
        if text.chars().count() > EVENT_DATA_CHARS_MAX {
            let cut: String = text.chars().take(EVENT_DATA_CHARS_MAX).collect();
            format!("{cut}\n… (cut; the whole event is in the evidence bundle)")
        } else {
            text
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((customer, id)): Path<(String, String)>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    if customer_of_id(&id) != Some(customer.as_str()) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no outcome \"{id}\""),
        ));
    }
    let c = ctx.id();
    let now = state.now();
    let reader = ctx.viewer.caller.0.clone();
    let (o, evidence, events) = blocking_with(
        move |store| {
            let (o, evidence) = find_outcome(store, &c, &id, now, &reader)?;
            let drafts = crate::support::DraftReader::of(store, &reader)?;
            let events = store
                .events(&EventFilter {
                    customer: c.clone(),
                    subject: Some(o.outcome.subject.clone()),
                    limit: SUBJECT_EVENTS_MAX,
                    ..Default::default()
                })?
                .events
                .into_iter()
                .map(|mut e| {
                    e.canonical = drafts.redact_bytes(e.canonical);
                    e
                })
                .collect::<Vec<_>>();
            Ok((o, evidence, events))
        },
        &state,
    )
    .await?;
    let roles: Vec<(u64, String)> = evidence
        .iter()
        .map(|e| (e.sequence, e.role.to_owned()))
        .collect();
    // The subject's events, and the outcome's own evidence even where a
    // contract reads the subject from elsewhere than the event's subject.
    let mut rows: Vec<Row> = events.iter().map(Row::of).collect();
    for e in evidence {
        if !rows.iter().any(|r| r.sequence == e.sequence) {
            rows.push(Row {
                sequence: e.sequence,
                hash: e.hash,
                event: e.event,
            });
        }
    }
    rows.sort_by_key(|r| r.sequence);
    let out = &o.outcome;
    let open = out.disputes.last().is_some_and(|d| d.decision.is_none());
    let body = html! {
        dl.facts {
            dt { "Outcome" } dd.mono { (out.id) }
            dt { "Kind" } dd { (o.name) }
            dt { "Subject" } dd { (out.subject) }
            dt { "State" } dd #outcome-state { (state_badge(o.state)) }
            dt { "Recognised" } dd { (datetime(out.created.time)) }
            dt { "Matures" } dd { (datetime(out.matures_at)) " (after " (duration(out.matures_at - out.created.time)) ")" }
            @if let Some(v) = out.value { dt { "Value" } dd { (grouped(&v.normalize().to_string())) } }
            @if let Some(e) = &out.value_error { dt { "Value problem" } dd { (e) } }
        }
        div.grid {
            section.card {
                h2 { "State history" }
                ol.timeline {
                    @for (t, what) in history(&ctx, &o, now) {
                        li.key { @if t < DateTime::<Utc>::MAX_UTC { span.when { (datetime(t)) } br; } (what) }
                    }
                }
            }
            section.card #dispute {
                h2 { "Dispute" }
                (dispute_forms(&ctx, &o, open))
            }
        }
        section.card {
            h2 { "Evidence: the events of subject " q { (out.subject) } }
            p.muted { "In ledger order, each with its place and hash in the customer's chain. The ones that made this outcome what it is are marked." }
            ol.timeline #evidence {
                @for r in &rows {
                    @let role = roles.iter().find(|(s, _)| *s == r.sequence).map(|(_, r)| r.as_str());
                    li.key[role.is_some()] {
                        span.when { (datetime_text(r.text("time"))) " · #" (r.sequence) " · " span.mono title=(r.hash) { (short_hash(&r.hash)) } }
                        br;
                        strong { (r.text("type")) } " from " (r.text("source")) " (id " span.mono { (r.text("id")) } ")"
                        @if let Some(role) = role { " " span.badge.good { (role.replace('_', " ")) } }
                        details { summary { "data" } pre { (r.data()) } }
                    }
                }
            }
            @if events.len() == SUBJECT_EVENTS_MAX { p.muted { "Only the first " (SUBJECT_EVENTS_MAX) " events are shown; the evidence bundle has them all." } }
        }
    };
    Ok(layout::page(&ctx, Tab::Outcomes, "Outcome", body))
}

/// What this person may do about the outcome's dispute.
fn dispute_forms(ctx: &Ctx, o: &OutcomeNow, open: bool) -> Markup {
    let out = &o.outcome;
    let action = ctx.path("disputes");
    html! {
        @for d in &out.disputes {
            p {
                "Raised " (datetime(d.opened.time)) ": " q { (d.reason) }
                @match &d.decision {
                    None => { " " span.badge.warn { "open" } }
                    Some((Decision::Accepted, m, note)) => { " " span.badge.good { "accepted " (datetime(m.time)) } @if !note.is_empty() { " " q { (note) } } }
                    Some((Decision::Rejected, m, note)) => { " " span.badge.bad { "rejected " (datetime(m.time)) } " " q { (note) } }
                }
            }
        }
        @if out.disputes.is_empty() { p.muted { "Not disputed." } }
        @if ctx.allows(Action::RaiseDispute) && !open && !matches!(o.state, "voided" | "credited") {
            form.stack method="post" action=(action) {
                (csrf(&ctx.viewer.csrf))
                input type="hidden" name="outcome" value=(out.id);
                label { "Why is this outcome wrong?" textarea name="reason" required maxlength="2000" {} }
                button type="submit" { "Dispute this outcome" }
            }
        }
        @if ctx.allows(Action::DecideDispute) && open {
            (decide_forms(ctx, &out.id))
        }
    }
}

/// An operator's accept and reject forms for an open dispute.
pub(super) fn decide_forms(ctx: &Ctx, outcome: &str) -> Markup {
    let action = ctx.path("disputes/decide");
    html! {
        form.inline method="post" action=(action) {
            (csrf(&ctx.viewer.csrf))
            input type="hidden" name="outcome" value=(outcome);
            input type="hidden" name="decision" value="accept";
            input type="text" name="note" maxlength="2000" placeholder="note (optional)" aria-label="note for accepting";
            button type="submit" { "Accept" }
        }
        form.inline method="post" action=(action) {
            (csrf(&ctx.viewer.csrf))
            input type="hidden" name="outcome" value=(outcome);
            input type="hidden" name="decision" value="reject";
            input type="text" name="note" maxlength="2000" required placeholder="why (required)" aria-label="note for rejecting";
            button.danger type="submit" { "Reject" }
        }
    }
}
