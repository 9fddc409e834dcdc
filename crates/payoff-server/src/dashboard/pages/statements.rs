//! Statements: the closed ones, one with its lines and totals, the
//! downloads (signed JSON, evidence bundle, CSV), and a "verified" badge.
//!
//! The badge is checked on the server with `payoff_billing::verify`, the
//! same function as `payoff verify`: the signature against the key
//! published at `/.well-known/payoff/keys`, the hash chain of every event
//! up to the head the statement cites, and the statement recomputed from
//! them byte for byte. The page fetches it after it has shown, because a
//! recomputation reads the whole ledger.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::{html, Markup};
use payoff_accounting::billing;
use payoff_billing::{customer_of_id, Period, Statement};
use serde_json::{json, Value};

use crate::auth::Action;
use crate::dashboard::format::{datetime, grouped, money, short_hash, url_encode};
use crate::dashboard::layout::{self, Tab};
use crate::dashboard::{Ctx, Viewer};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::billing::{published_key, statement_with_evidence, stored_statement};
use crate::{blocking_with, AppState};

fn line_kind(line: &payoff_billing::Line) -> String {
    serde_json::to_value(line.kind)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(customer): Path<String>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    let id = ctx.id();
    let now = state.now();
    let (closed, current) = blocking_with(
        move |store| {
            let closed = billing::summaries(store, &id)?;
            let current = match billing::Versions::load(store, &id) {
                Ok(v) => Some(Period::containing(v.latest().cadence, now)),
                Err(payoff_outcomes::OutcomesError::NoContract(_)) => None,
                Err(e) => return Err(e.into()),
            };
            Ok((closed, current))
        },
        &state,
    )
    .await?;
    let body = html! {
        @if let Some(p) = current.filter(|p| !closed.iter().any(|s| s.period == p.to_string())) {
            p { "Current period " strong { (p) } ": " a href=(ctx.path(&format!("statements/preview/{p}"))) { "preview what it would bill so far" } " (not closed, not signed)." }
        }
        @if closed.is_empty() {
            p.muted { "No period has been closed yet." }
        } @else {
            div.table-wrap { table #statements {
                thead { tr { th { "Period" } th { "Statement" } th.num { "Lines" } th.num { "Total" } th { "Issued" } } }
                tbody {
                    @for s in closed.iter().rev() {
                        tr {
                            td { (s.period) }
                            td.mono { a href=(ctx.path(&format!("statements/{}", s.id))) { (s.id) } }
                            td.num { (s.lines) }
                            td.num { (money(&s.total, &s.currency)) }
                            td { (datetime(s.issued_at)) }
                        }
                    }
                }
            } }
        }
    };
    Ok(layout::page(&ctx, Tab::Statements, "Statements", body))
}

/// The lines and totals of a statement (closed or previewed).
fn lines(ctx: &Ctx, s: &Statement) -> Markup {
    let currency = &s.currency;
    html! {
        div.table-wrap { table #lines {
            thead { tr { th { "Kind" } th { "Description" } th.num { "Quantity" } th.num { "Unit price" } th.num { "Amount" } th { "Evidence" } } }
            tbody {
                @for l in &s.lines {
                    tr {
                        td { (line_kind(l)) }
                        td { (l.description)
                            @if let Some(p) = &l.period { br; span.muted { "concerns " (p) } }
                            @if let Some(i) = l.included { br; span.muted { (grouped(&i.to_string())) " included" } }
                        }
                        td.num { (grouped(&l.quantity.to_string())) }
                        td.num { @if let Some(p) = &l.unit_price { (money(p, currency)) } }
                        td.num { (money(l.amount, currency)) }
                        td {
                            @if !l.outcomes.is_empty() {
                                a href=(ctx.path(&format!("outcomes?kind={}&period={}", url_encode(l.outcome.as_deref().unwrap_or("")), l.period.as_deref().unwrap_or(&s.period)))) { (grouped(&l.outcomes.len().to_string())) " outcomes" }
                                @if let Some(h) = &l.outcomes_hash { br; span.muted.mono title=(h) { "sha256 " (short_hash(h)) } }
                            }
                            @if let Some(a) = &l.attribution {
                                span.muted { (a.ai.subjects) " AI / " (a.control.subjects) " control subjects" }
                            }
                        }
                    }
                }
                tr { td colspan="4" { "Subtotal" } td.num { (money(s.subtotal, currency)) } td {} }
                tr.total { td colspan="4" { "Total" } td.num #statement-total { (money(s.total, currency)) } td {} }
            }
        } }
    }
}

fn facts(s: &Statement) -> Markup {
    html! {
        dl.facts {
            dt { "Customer" } dd { (s.customer) }
            dt { "Period" } dd { (s.period) " (" (datetime(s.period_start)) " to " (datetime(s.period_end)) ", end excluded)" }
            dt { "Contract" } dd { "version " (s.contract.version) ", sha256 " span.mono title=(s.contract.sha256) { (short_hash(&s.contract.sha256)) } }
            dt { "Ledger head" } dd { "event #" (s.ledger_head.sequence) ", hash " span.mono title=(s.ledger_head.hash) { (short_hash(&s.ledger_head.hash)) } }
            dt { "Issued" } dd { (datetime(s.issued_at)) }
            @if !s.depends_on.is_empty() { dt { "Builds on" } dd { (s.depends_on.join(", ")) } }
        }
    }
}

/// The statement of an id in the path, if it is this customer's.
fn own_statement(customer: &str, id: &str) -> Result<(), ApiError> {
    if customer_of_id(id) == Some(customer) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no statement \"{id}\""),
        ))
    }
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((customer, id)): Path<(String, String)>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    own_statement(&customer, &id)?;
    let caller = ctx.caller();
    let stored = blocking_with(move |store| stored_statement(store, &caller, &id), &state).await?;
    let s: Statement = serde_json::from_str(&stored.body).map_err(|e| {
        billing::BillingError::Corrupt(format!("statement {}: {e}", stored.summary.id))
    })?;
    let download = |file: &str| ctx.path(&format!("statements/{}/download/{file}", s.id));
    let key = hex::encode(published_key(&state).as_bytes());
    let body = html! {
        p {
            span.badge #verified data-verify=(ctx.path(&format!("statements/{}/verification", s.id))) { "Checking…" }
            " "
            span #verification-detail.muted { "The server recomputes this statement from its evidence and checks its signature." }
        }
        noscript { p { a href=(ctx.path(&format!("statements/{}/verification", s.id))) { "See the verification" } } }
        (facts(&s))
        h2 { "Lines" }
        (lines(&ctx, &s))
        h2 { "Downloads" }
        ul {
            li { a href=(download("statement.json")) download { "Statement (signed JSON)" } }
            li { a href=(download("evidence.json")) download { "Evidence bundle (JSON)" } " — contract versions, every event up to the head with its chain hash, earlier statements" }
            li { a href=(download("statement.csv")) download { "Lines as CSV" } " — for a spreadsheet; the signed JSON is the statement of record" }
        }
        section.card {
            h2 { "How it is verified" }
            p { "The badge comes from the server running " code { "payoff_billing::verify" } ", the check of " code { "payoff verify" } ": the Ed25519 signature against the provider key published at "
                a href="/.well-known/payoff/keys" { "/.well-known/payoff/keys" } " (" span.mono title=(key) { (short_hash(&key)) "…" } "), the hash chain of every event up to the cited head, and the statement recomputed from contract and events, byte for byte." }
            p { "To check it without trusting this server, download the statement and the evidence, then run:" }
            pre { "payoff verify " (s.id) ".json --evidence " (s.id) ".evidence.json --key " (key) }
        }
    };
    Ok(layout::page(
        &ctx,
        Tab::Statements,
        &format!("Statement {}", s.period),
        body,
    ))
}

pub async fn preview(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((customer, period)): Path<(String, String)>,
) -> Result<Markup, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    let id = ctx.id();
    let now = state.now();
    let preview = blocking_with(
        move |store| {
            Ok(billing::preview(
                store,
                &id,
                &period,
                now,
                billing::Listing::Unlisted,
            )?)
        },
        &state,
    )
    .await?;
    let s = &preview.statement;
    let body = html! {
        p.flash.bad { "A preview: what closing " (s.period) " would bill now. It is not closed, not signed, and will change as events arrive." }
        (assumed_notice(&preview.assumed))
        (facts(s))
        h2 { "Lines" }
        (lines(&ctx, s))
    };
    Ok(layout::page(
        &ctx,
        Tab::Statements,
        &format!("Preview {}", s.period),
        body,
    ))
}

/// Says which earlier open periods a preview assumes closed as previewed,
/// and that the operator can close them.
pub(crate) fn assumed_notice(assumed: &[String]) -> Markup {
    html! {
        @if !assumed.is_empty() {
            p.flash.notice #assumed {
                "Earlier periods are not closed yet (" (assumed.join(", ")) "): these figures assume they close as previewed. "
                "Close them in order from Statements (or " code { "payoff statement close" } ") to make them final."
            }
        }
    }
}

/// The badge's answer: verified or not, and why, in a sentence.
pub async fn verification(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((customer, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    own_statement(&customer, &id)?;
    let caller = ctx.caller();
    let key = published_key(&state);
    let answer = blocking_with(
        move |store| {
            let (statement, bundle) = statement_with_evidence(store, &caller, &id)?;
            Ok(match payoff_billing::verify(&statement, &bundle, &key) {
                Ok(v) => json!({
                    "verified": true,
                    "detail": format!(
                        "Signature valid for the published provider key; {} events chain to the cited head; recomputed byte for byte: total {} {}.",
                        v.events, v.total, v.currency
                    ),
                }),
                Err(e) => json!({ "verified": false, "detail": format!("Not verified: {e}.") }),
            })
        },
        &state,
    )
    .await?;
    Ok(Json(answer))
}

/// The signed statement, its evidence bundle, or its lines as CSV, as
/// files (the same bytes as `GET /v1/statements/{id}` and `/evidence`).
pub async fn download(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((customer, id, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let ctx = Ctx::open(&state, viewer, &customer, Action::ReadBilling).await?;
    own_statement(&customer, &id)?;
    let caller = ctx.caller();
    let (name, media, body) = blocking_with(
        move |store| {
            Ok(match file.as_str() {
                "statement.json" => (
                    format!("{id}.json"),
                    "application/json",
                    stored_statement(store, &caller, &id)?.body,
                ),
                "evidence.json" => (
                    format!("{id}.evidence.json"),
                    "application/json",
                    serde_json::to_string(&statement_with_evidence(store, &caller, &id)?.1)
                        .unwrap_or_default(),
                ),
                "statement.csv" => {
                    let stored = stored_statement(store, &caller, &id)?;
                    let s: Statement = serde_json::from_str(&stored.body).map_err(|e| {
                        billing::BillingError::Corrupt(format!("statement {id}: {e}"))
                    })?;
                    (format!("{id}.csv"), "text/csv", billing::statement_csv(&s))
                }
                other => {
                    return Err(ApiError::new(
                        ErrorCode::NotFound,
                        format!("no download \"{other}\"; there are statement.json, evidence.json and statement.csv"),
                    ))
                }
            })
        },
        &state,
    )
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, media.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}
