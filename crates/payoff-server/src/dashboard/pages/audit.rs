//! Audit: the customer's audit records, newest first, filtered by who,
//! what, the decision and the day, paged like `GET /v1/audit`.

use axum::extract::{Path, State};
use maud::{html, Markup};
use serde::Deserialize;

use super::{day_start, Filters};
use crate::auth::Action;
use crate::dashboard::format::{datetime, url_encode};
use crate::dashboard::layout::{self, Tab};
use crate::dashboard::{Ctx, Viewer};
use crate::problem::ApiError;
use crate::routes::audit::{page, AuditQuery};
use crate::AppState;

const PAGE_SIZE: usize = 100;

#[derive(Deserialize)]
pub struct ListQuery {
    actor: Option<String>,
    action: Option<String>,
    decision: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<u64>,
}

impl ListQuery {
    fn older(&self, base: &str, cursor: u64) -> String {
        let mut parts = vec![format!("cursor={cursor}")];
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("decision", &self.decision),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", url_encode(v)));
            }
        }
        format!("{base}?{}", parts.join("&"))
    }
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
    Filters(q): Filters<ListQuery>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadAudit).await?;
    let query = AuditQuery {
        customer: Some(ctx.id()),
        actor: q.actor.clone(),
        action: q.action.clone(),
        decision: q.decision.clone(),
        since: day_start("from", q.from.as_deref(), false)?,
        until: day_start("to", q.to.as_deref(), true)?,
        order: Some("newest".into()),
        cursor: q.cursor,
        limit: Some(PAGE_SIZE),
    };
    let (records, next) = page(&state, &ctx.caller(), query).await?;
    let base = ctx.path("audit");
    let body = html! {
        form.filters method="get" action=(base) {
            label { "Actor (key id or agent:name)" input type="text" name="actor" value=[q.actor.as_deref()] maxlength="256"; }
            label { "Action contains" input type="text" name="action" value=[q.action.as_deref()] maxlength="256" placeholder="e.g. approve, disputes"; }
            label { "Decision" select name="decision" {
                option value="" { "any" }
                @for d in ["allow", "deny", "fail"] { option value=(d) selected[q.decision.as_deref() == Some(d)] { (d) } }
            } }
            label { "From" input type="date" name="from" value=[q.from.as_deref()]; }
            label { "To (inclusive)" input type="date" name="to" value=[q.to.as_deref()]; }
            button type="submit" { "Filter" }
        }
        p.muted { "Every change, every refusal and every act of an agent, newest first. Each record is a link of a hash chain that " code { "GET /v1/audit/verify" } " recomputes." }
        @if records.is_empty() { p.muted { "No record matches." } }
        @else {
            div.table-wrap { table #audit {
                thead { tr { th { "#" } th { "When" } th { "Actor" } th { "Action" } th { "Resource" } th { "Decision" } th { "Reason" } } }
                tbody {
                    @for r in &records {
                        @let e = &r.entry;
                        tr {
                            td.num { (r.sequence) }
                            td.when { (datetime(e.at)) }
                            td { span.mono { (e.actor) } @if let Some(role) = &e.role { br; span.muted { (role) } } }
                            td.mono { (e.action) }
                            td.mono { (e.resource) }
                            td { span class=(format!("badge decision-{}", e.decision)) { (e.decision) } }
                            td { (e.reason) @if !e.policy_ids.is_empty() { br; span.muted { "policies: " (e.policy_ids.join(", ")) } } }
                        }
                    }
                }
            } }
        }
        @if let Some(c) = next { div.pager { a href=(q.older(&base, c)) { "Older records →" } } }
    };
    Ok(layout::page(&ctx, Tab::Audit, "Audit log", body))
}
