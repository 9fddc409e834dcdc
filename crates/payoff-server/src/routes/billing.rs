//! Contracts, outcomes, disputes, periods and statements.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use payoff_accounting::billing::{self, rfc3339, BillingError, OutcomeNow, UploadError};
use payoff_accounting::customers::check_customer_id;
use payoff_accounting::disputes::{self, DisputeError, DisputeStep};
use payoff_billing::{customer_of_id, CloseError, Decision, Outcome};
use payoff_outcomes::{Freshness, PageQuery};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Action, Allowed, Caller};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::{wants_csv, Body, Params};
use crate::{blocking_with, record_own, AppState};

/// Largest contract file accepted.
pub const CONTRACT_BYTES_MAX: usize = 256 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_contracts, upload_contract))
        .routes(routes!(list_outcomes))
        .routes(routes!(show_outcome))
        .routes(routes!(raise_dispute))
        .routes(routes!(accept_dispute))
        .routes(routes!(reject_dispute))
        .routes(routes!(preview))
        .routes(routes!(close))
        .routes(routes!(list_statements))
        .routes(routes!(show_statement))
        .routes(routes!(evidence))
        .routes(routes!(public_keys))
}

impl From<payoff_outcomes::OutcomesError> for ApiError {
    fn from(e: payoff_outcomes::OutcomesError) -> Self {
        BillingError::from(e).into()
    }
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        let code = match &e {
            BillingError::Store(_) => {
                let BillingError::Store(s) = e else {
                    unreachable!()
                };
                return s.into();
            }
            BillingError::NoContract(_) => ErrorCode::NoContract,
            BillingError::BadPeriod(_) => ErrorCode::InvalidRequest,
            BillingError::NotEnded { .. } => ErrorCode::PeriodNotEnded,
            BillingError::Close(CloseError::OutOfOrder { .. }) => ErrorCode::PeriodOutOfOrder,
            BillingError::Close(CloseError::NoContract(_)) => ErrorCode::NoContract,
            BillingError::Close(CloseError::Invariant(_)) | BillingError::Signing(_) => {
                tracing::error!(error = %e, "billing invariant broken");
                ErrorCode::InvariantBroken
            }
            BillingError::Close(_) | BillingError::Corrupt(_) => {
                tracing::error!(error = %e, "billing failure");
                ErrorCode::Unavailable
            }
        };
        ApiError::new(code, e.to_string())
    }
}

/// Scopes a path customer to the caller (404 for another tenant's).
pub(crate) fn scoped(caller: &Caller, customer: &str) -> Result<String, ApiError> {
    check_customer_id(customer).map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e))?;
    caller.customer_scope(Some(customer))
}

/// The customer an outcome or statement id belongs to, if the caller sees it.
pub(crate) fn scoped_id(caller: &Caller, id: &str, what: &str) -> Result<String, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("no {what} \"{id}\""));
    let customer = customer_of_id(id).ok_or_else(not_found)?;
    if !caller.sees(Some(customer)) {
        return Err(not_found());
    }
    Ok(customer.to_owned())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// First period the version governs (e.g. `2026-12`). Default: the
    /// contract's start for a first version, else the period after the
    /// last closed one.
    effective: Option<String>,
}

/// A contract version as its upload stored it.
#[derive(Serialize, ToSchema)]
pub struct UploadedContract {
    pub customer: String,
    pub version: u32,
    /// The first period it governs, e.g. `2026-12`.
    pub effective: String,
    /// Hex SHA-256 of the text as uploaded.
    pub sha256: String,
    pub uploaded_at: DateTime<Utc>,
}

/// Uploads a contract version (TOML body). Each upload is a new immutable
/// version, effective from a period that is not closed yet.
#[utoipa::path(post, path = "/v1/customers/{customer}/contracts", tag = "billing", params(UploadQuery),
    request_body(content = String, content_type = "application/toml"),
    responses((status = 201, body = UploadedContract), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub async fn upload_contract(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageContracts>,
    Path(customer): Path<String>,
    Params(query): Params<UploadQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<UploadedContract>), ApiError> {
    let customer = scoped(&caller, &customer)?;
    if body.len() > CONTRACT_BYTES_MAX {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a contract is at most {CONTRACT_BYTES_MAX} bytes"),
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidContract, "the contract is not UTF-8"))?
        .to_owned();
    let effective = query.effective.clone();
    let now = state.now();
    let stored = blocking_with(
        move |store| {
            billing::upload_contract(store, &customer, &text, effective.as_deref(), now)
                .map_err(|e| match e {
                    UploadError::Invalid(errors) => {
                        let list: Vec<Value> = errors
                            .0
                            .iter()
                            .map(|e| json!({"line": e.line, "column": e.column, "message": e.message}))
                            .collect();
                        ApiError::new(ErrorCode::InvalidContract, errors.to_string())
                            .with("errors", Value::Array(list))
                    }
                    UploadError::Refused(why) => ApiError::new(ErrorCode::InvalidContract, why),
                    UploadError::Closed(why) => ApiError::new(ErrorCode::AlreadyExists, why),
                    UploadError::Billing(e) => e.into(),
                })
        },
        &state,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadedContract {
            customer: stored.customer,
            version: stored.version,
            effective: stored.effective,
            sha256: stored.sha256,
            uploaded_at: stored.uploaded_at,
        }),
    ))
}

/// Every version of a customer's contract, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ContractList {
    /// Each version as stored: `customer`, `version`, `effective` (its
    /// first period) and `effective_start`, `sha256`, the TOML text as
    /// uploaded (`body`) and `uploaded_at`.
    #[schema(value_type = Vec<Object>)]
    pub contracts: Vec<payoff_store::StoredContract>,
}

/// Every version of the customer's contract, oldest first, with its text.
#[utoipa::path(get, path = "/v1/customers/{customer}/contracts", tag = "billing",
    responses((status = 200, body = ContractList), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn list_contracts(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadBilling>,
    Path(customer): Path<String>,
) -> Result<Json<ContractList>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let contracts = blocking_with(move |store| Ok(store.contracts(&customer)?), &state).await?;
    Ok(Json(ContractList { contracts }))
}

#[derive(Deserialize, IntoParams, Default)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutcomeQuery {
    pub(crate) name: Option<String>,
    /// pending, billable, billed, voided, disputed or credited.
    pub(crate) state: Option<String>,
    pub(crate) subject: Option<String>,
    /// Outcomes maturing in this period.
    pub(crate) period: Option<String>,
    /// Outcomes created at or after this time.
    pub(crate) since: Option<DateTime<Utc>>,
    /// Outcomes created before this time.
    pub(crate) until: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
    /// 1 to 1000; default 100.
    pub(crate) limit: Option<usize>,
    /// Also count every match (`total`); costs a pass over the matches.
    pub(crate) count: Option<bool>,
}

pub(crate) const STATES: [&str; 6] = [
    "pending", "billable", "billed", "voided", "disputed", "credited",
];

/// An outcome as it stands, under the contract version that governs the
/// period it matures in.
#[derive(Serialize, ToSchema)]
pub struct OutcomeView {
    pub id: String,
    /// The name of its `[[outcome]]` kind in the contract.
    pub name: String,
    pub subject: String,
    /// pending, billable, billed, voided, disputed or credited.
    pub state: &'static str,
    /// RFC 3339, to the second.
    pub created_at: String,
    /// RFC 3339, to the second: when it stops being disputable.
    pub matures_at: String,
    /// A decimal, as text; `null` when the kind has no value or it could
    /// not be read (then `value_error` says why).
    pub value: Option<String>,
    pub value_error: Option<String>,
    /// The statement that billed it.
    pub billed_in: Option<String>,
    /// The statement that credited it back.
    pub credited_in: Option<String>,
    pub contract_version: u32,
}

impl From<&OutcomeNow> for OutcomeView {
    fn from(o: &OutcomeNow) -> Self {
        let outcome: &Outcome = &o.outcome;
        OutcomeView {
            id: outcome.id.clone(),
            name: o.name.clone(),
            subject: outcome.subject.clone(),
            state: o.state,
            created_at: rfc3339(outcome.created.time),
            matures_at: rfc3339(outcome.matures_at),
            value: outcome.value.map(|v| v.normalize().to_string()),
            value_error: outcome.value_error.as_deref().map(str::to_owned),
            billed_in: o.billed_in.clone(),
            credited_in: o.credited_in.clone(),
            contract_version: o.version,
        }
    }
}

/// Which ledger head a read reflects, and the folds still being rebuilt
/// (their periods are answered from the previous version meanwhile).
#[derive(Serialize, ToSchema)]
pub struct FreshnessView {
    /// Every event up to this sequence is reflected.
    pub ledger_head: u64,
    pub rebuilding: Vec<Rebuilding>,
}

/// A contract version's fold that is not ready yet.
#[derive(Serialize, ToSchema)]
pub struct Rebuilding {
    pub contract_version: u32,
    pub events_applied: u64,
    /// The ledger head it is catching up with.
    pub ledger_head: u64,
}

impl From<&Freshness> for FreshnessView {
    fn from(f: &Freshness) -> Self {
        FreshnessView {
            ledger_head: f.ledger_head,
            rebuilding: f
                .rebuilding
                .iter()
                .map(
                    |&(contract_version, events_applied, ledger_head)| Rebuilding {
                        contract_version,
                        events_applied,
                        ledger_head,
                    },
                )
                .collect(),
        }
    }
}

/// One page of a customer's outcomes.
#[derive(Serialize, ToSchema)]
pub struct OutcomeList {
    pub outcomes: Vec<OutcomeView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Every match, when `count=true` asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    pub freshness: FreshnessView,
}

/// One page of a customer's outcomes that match a query.
pub(crate) struct OutcomePage {
    pub items: Vec<OutcomeNow>,
    pub total: Option<u64>,
    pub next_cursor: Option<String>,
    pub freshness: Freshness,
}

/// A keyset cursor: the (sequence, kind) of the last outcome of a page.
/// `sequence.kind.version`; a cursor of the older form `sequence.kind`
/// still means "after every outcome of that event and kind".
fn parse_cursor(text: &str) -> Option<(u64, u32, u32)> {
    let mut parts = text.split('.');
    let sequence = parts.next()?.parse().ok()?;
    let kind = parts.next()?.parse().ok()?;
    let version = match parts.next() {
        Some(v) => v.parse().ok()?,
        None => u32::MAX,
    };
    parts.next().is_none().then_some((sequence, kind, version))
}

/// The outcomes matching `q`, ordered by creation, one page of them, from
/// the read model: what the API lists and the dashboard shows. Matches
/// are counted when `q.count` asks, up to `count_at_most`.
pub(crate) fn outcome_page(
    store: &payoff_store::Store,
    customer: &str,
    q: &OutcomeQuery,
    now: DateTime<Utc>,
    count_at_most: u64,
) -> Result<OutcomePage, ApiError> {
    if let Some(s) = &q.state {
        if !STATES.contains(&s.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("state: \"{s}\" is not one of {}", STATES.join(", ")),
            ));
        }
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "limit: must be 1 to 1000",
        ));
    }
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                "cursor: not a cursor this API gave",
            )
        })?),
    };
    let period = match &q.period {
        None => None,
        Some(p) => Some(billing::Versions::load(store, customer)?.period(p)?),
    };
    let page = payoff_outcomes::page(
        store,
        customer,
        &PageQuery {
            name: q.name.clone(),
            subject: q.subject.clone(),
            state: q.state.clone(),
            period,
            since: q.since,
            until: q.until,
            after,
            limit,
            count: q.count.unwrap_or(false).then_some(count_at_most),
        },
        now,
    )?;
    Ok(OutcomePage {
        items: page.items,
        total: page.total,
        next_cursor: page.next.map(|(s, k, v)| format!("{s}.{k}.{v}")),
        freshness: page.freshness,
    })
}

/// Lists outcomes with filters; ordered by creation, paged by cursor.
/// Each outcome is shown under the contract version that governs the
/// period it matures in; `ledger_head` says up to which event the list
/// reflects the ledger (at least the head when the request arrived).
#[utoipa::path(get, path = "/v1/customers/{customer}/outcomes", tag = "billing", params(OutcomeQuery),
    responses((status = 200, body = OutcomeList), (status = 400), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn list_outcomes(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadBilling>,
    Path(customer): Path<String>,
    Params(q): Params<OutcomeQuery>,
) -> Result<Json<OutcomeList>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let now = state.now();
    let page = blocking_with(
        move |store| outcome_page(store, &customer, &q, now, u64::MAX),
        &state,
    )
    .await?;
    Ok(Json(OutcomeList {
        outcomes: page.items.iter().map(OutcomeView::from).collect(),
        next_cursor: page.next_cursor,
        total: page.total,
        freshness: FreshnessView::from(&page.freshness),
    }))
}

/// One event behind an outcome.
#[derive(Serialize, ToSchema)]
pub struct EvidenceView {
    /// `created`, `voided`, `disputed` or `decided`.
    pub role: &'static str,
    pub sequence: u64,
    /// Hex SHA-256 chain hash of the event.
    pub hash: String,
    /// The CloudEvent as stored (an agent's draft the reader may not
    /// read withheld).
    #[schema(value_type = Object)]
    pub event: Value,
}

/// Finds one outcome by id with its evidence events, as `reader` may see
/// them (an agent's draft it may not read is withheld).
pub(crate) fn find_outcome(
    store: &payoff_store::Store,
    customer: &str,
    id: &str,
    now: chrono::DateTime<Utc>,
    reader: &payoff_store::Principal,
) -> Result<(OutcomeNow, Vec<EvidenceView>), ApiError> {
    let drafts = crate::support::DraftReader::of(store, reader)?;
    let found = payoff_outcomes::find(store, customer, id, now)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no outcome \"{id}\"")))?;
    let mut evidence = Vec::new();
    for (sequence, role) in payoff_outcomes::evidence_of(&found.outcome.outcome) {
        if let Some(e) = found.evidence.iter().find(|e| e.sequence == sequence) {
            let mut event: Value = serde_json::from_slice(&e.canonical).unwrap_or(Value::Null);
            drafts.redact_event(&mut event);
            evidence.push(EvidenceView {
                role,
                sequence: e.sequence,
                hash: hex::encode(e.hash),
                event,
            });
        }
    }
    Ok((found.outcome, evidence))
}

/// One outcome with its customer, disputes and evidence.
#[derive(Serialize, ToSchema)]
pub struct OutcomeDetail {
    #[serde(flatten)]
    pub outcome: OutcomeView,
    pub customer: String,
    /// Oldest first.
    pub disputes: Vec<DisputeView>,
    pub evidence: Vec<EvidenceView>,
}

/// A dispute of an outcome, and its decision once there is one.
#[derive(Serialize, ToSchema)]
pub struct DisputeView {
    /// RFC 3339, to the second.
    pub opened_at: String,
    pub reason: String,
    /// `null` while the dispute is open.
    pub decision: Option<DisputeDecision>,
}

#[derive(Serialize, ToSchema)]
pub struct DisputeDecision {
    /// `accepted` or `rejected`.
    pub outcome: &'static str,
    /// RFC 3339, to the second.
    pub at: String,
    pub note: String,
}

fn outcome_detail(o: &OutcomeNow, evidence: Vec<EvidenceView>, customer: &str) -> OutcomeDetail {
    let disputes = o
        .outcome
        .disputes
        .iter()
        .map(|d| DisputeView {
            opened_at: rfc3339(d.opened.time),
            reason: d.reason.clone(),
            decision: d.decision.as_ref().map(|(k, m, note)| DisputeDecision {
                outcome: match k {
                    Decision::Accepted => "accepted",
                    Decision::Rejected => "rejected",
                },
                at: rfc3339(m.time),
                note: note.clone(),
            }),
        })
        .collect();
    OutcomeDetail {
        outcome: OutcomeView::from(o),
        customer: customer.to_owned(),
        disputes,
        evidence,
    }
}

/// One outcome with its evidence: the events that created it, voided it,
/// and disputed it.
#[utoipa::path(get, path = "/v1/outcomes/{id}", tag = "billing",
    responses((status = 200, body = OutcomeDetail), (status = 401), (status = 404)), security(("bearer" = [])))]
pub async fn show_outcome(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadBilling>,
    Path(id): Path<String>,
) -> Result<Json<OutcomeDetail>, ApiError> {
    let customer = scoped_id(&caller, &id, "outcome")?;
    let now = state.now();
    let view = blocking_with(
        move |store| {
            let (o, evidence) = find_outcome(store, &customer, &id, now, &caller.0)?;
            Ok(outcome_detail(&o, evidence, &customer))
        },
        &state,
    )
    .await?;
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisputeRequest {
    reason: Option<String>,
    note: Option<String>,
}

impl From<DisputeError> for ApiError {
    fn from(e: DisputeError) -> Self {
        match e {
            DisputeError::Billing(e) => e.into(),
            DisputeError::NotFound(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
            DisputeError::BadText { .. } => ApiError::new(ErrorCode::InvalidRequest, e.to_string()),
            DisputeError::NotAllowed(_) => {
                ApiError::new(ErrorCode::DisputeNotAllowed, e.to_string())
            }
        }
    }
}

/// Checks the caller's role and the text, then records the step (decided
/// by `payoff_accounting::disputes`) as a ledger event, so that statements
/// and their verification see exactly what the server saw: the one path
/// by which the API and the dashboard change a dispute.
pub(crate) async fn dispute(
    state: AppState,
    caller: Caller,
    id: String,
    step: DisputeStep,
    text: Option<String>,
) -> Result<Json<OutcomeDetail>, ApiError> {
    caller.require(match step {
        DisputeStep::Raise => Action::RaiseDispute,
        DisputeStep::Accept | DisputeStep::Reject => Action::DecideDispute,
    })?;
    let text = step.text(text)?;
    let customer = scoped_id(&caller, &id, "outcome")?;
    let by = caller.0.key_id.clone();
    let (c, i) = (customer.clone(), id.clone());
    let now = state.now();
    let event = blocking_with(
        move |store| Ok(disputes::record(store, &c, &i, step, text, &by, now)?),
        &state,
    )
    .await?;
    if let Err(e) = record_own(&state, &customer, event).await? {
        return Err(
            DisputeError::NotAllowed(format!("{e}; another decision was recorded first")).into(),
        );
    }
    let view = blocking_with(
        move |store| {
            let (o, evidence) = find_outcome(store, &customer, &id, now, &caller.0)?;
            Ok(outcome_detail(&o, evidence, &customer))
        },
        &state,
    )
    .await?;
    Ok(Json(view))
}

/// A customer admin disputes one outcome, within `dispute_within`.
#[utoipa::path(post, path = "/v1/outcomes/{id}/disputes", tag = "billing",
    responses((status = 201, body = OutcomeDetail), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn raise_dispute(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::RaiseDispute>,
    Path(id): Path<String>,
    Body(req): Body<DisputeRequest>,
) -> Result<(StatusCode, Json<OutcomeDetail>), ApiError> {
    let view = dispute(state, caller, id, DisputeStep::Raise, req.reason).await?;
    Ok((StatusCode::CREATED, view))
}

/// An operator accepts the open dispute: the outcome is voided, or
/// credited on the next statement if it was billed.
#[utoipa::path(post, path = "/v1/outcomes/{id}/disputes/accept", tag = "billing",
    responses((status = 200, body = OutcomeDetail), (status = 401), (status = 403), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn accept_dispute(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::DecideDispute>,
    Path(id): Path<String>,
    Body(req): Body<DisputeRequest>,
) -> Result<Json<OutcomeDetail>, ApiError> {
    dispute(state, caller, id, DisputeStep::Accept, req.note).await
}

/// An operator rejects the open dispute with a note: the outcome is
/// billable again.
#[utoipa::path(post, path = "/v1/outcomes/{id}/disputes/reject", tag = "billing",
    responses((status = 200, body = OutcomeDetail), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn reject_dispute(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::DecideDispute>,
    Path(id): Path<String>,
    Body(req): Body<DisputeRequest>,
) -> Result<Json<OutcomeDetail>, ApiError> {
    dispute(state, caller, id, DisputeStep::Reject, req.note).await
}

/// A period's statement as a close would give it now.
#[derive(Serialize, ToSchema)]
pub struct StatementPreview {
    /// The statement's members, unsigned (the stored, signed one for a
    /// closed period).
    #[serde(flatten)]
    pub statement: payoff_billing::Statement,
    /// Earlier periods still open, oldest first, that this preview
    /// assumes close as previewed; absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assumes_closed_as_previewed: Vec<String>,
}

/// The statement the period would close into now (not stored, not
/// signed). When earlier periods are still open, it assumes they close as
/// previewed, and lists them in `assumes_closed_as_previewed`.
#[utoipa::path(get, path = "/v1/customers/{customer}/periods/{period}/preview", tag = "billing",
    responses((status = 200, body = StatementPreview), (status = 400), (status = 401), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn preview(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadBilling>,
    Path((customer, period)): Path<(String, String)>,
) -> Result<Json<StatementPreview>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let now = state.now();
    let preview = blocking_with(
        move |store| {
            Ok(billing::preview(
                store,
                &customer,
                &period,
                now,
                billing::Listing::Unlisted,
            )?)
        },
        &state,
    )
    .await?;
    Ok(Json(StatementPreview {
        statement: preview.statement,
        assumes_closed_as_previewed: preview.assumed,
    }))
}

fn statement_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Closes a period into a signed, immutable statement. Closing it again
/// returns the same statement (200 instead of 201).
#[utoipa::path(post, path = "/v1/customers/{customer}/periods/{period}/close", tag = "billing",
    responses(
        (status = 201, description = "Closed now: the signed statement, as stored", body = payoff_billing::Statement),
        (status = 200, description = "Closed before: the same signed statement", body = payoff_billing::Statement),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)), security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::CloseStatements>,
    Path((customer, period)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let key = state.signing_key.clone();
    let now = state.now();
    let started = std::time::Instant::now();
    let closed = blocking_with(
        move |store| Ok(billing::close(store, &key, &customer, &period, now)?),
        &state,
    )
    .await;
    let result = match &closed {
        Ok(c) if c.created => "closed",
        Ok(_) => "already_closed",
        Err(e) if e.code.status().is_client_error() => "refused",
        Err(_) => "failed",
    };
    crate::Metrics::result(&state.metrics.closes, result);
    state
        .metrics
        .close_seconds
        .observe(started.elapsed().as_secs_f64());
    let closed = closed?;
    let status = if closed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    // The signed bytes as stored, not a re-serialised copy.
    Ok(statement_response(status, closed.stored.body))
}

/// A customer's closed statements, oldest first.
#[derive(Serialize, ToSchema)]
pub struct StatementList {
    pub statements: Vec<StatementSummary>,
}

/// A closed statement in brief: `GET /v1/statements/{id}` has the rest.
#[derive(Serialize, ToSchema)]
pub struct StatementSummary {
    pub id: String,
    pub period: String,
    pub currency: String,
    /// A decimal, as text.
    pub total: String,
    /// RFC 3339.
    pub issued_at: String,
    /// How many lines it has.
    pub lines: u64,
}

/// The customer's closed statements, oldest first.
#[utoipa::path(get, path = "/v1/customers/{customer}/statements", tag = "billing",
    responses((status = 200, body = StatementList), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn list_statements(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadBilling>,
    Path(customer): Path<String>,
) -> Result<Json<StatementList>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let statements = blocking_with(
        move |store| {
            Ok(billing::summaries(store, &customer)?
                .into_iter()
                .map(|s| StatementSummary {
                    lines: s.lines,
                    issued_at: billing::rfc3339(s.issued_at),
                    id: s.id,
                    period: s.period,
                    currency: s.currency,
                    total: s.total,
                })
                .collect())
        },
        &state,
    )
    .await?;
    Ok(Json(StatementList { statements }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// `json` (default: the signed statement) or `csv` (its lines).
    format: Option<String>,
}

/// A closed statement of a customer the caller sees, as stored.
pub(crate) fn stored_statement(
    store: &payoff_store::Store,
    caller: &Caller,
    id: &str,
) -> Result<payoff_store::StoredStatement, ApiError> {
    caller.require(Action::ReadBilling)?;
    scoped_id(caller, id, "statement")?;
    store
        .statement(id)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no statement \"{id}\"")))
}

/// A closed statement, exactly as signed and stored; `format=csv` (or
/// `Accept: text/csv`) for its lines as CSV.
#[utoipa::path(get, path = "/v1/statements/{id}", tag = "billing", params(FormatQuery),
    responses(
        (status = 200, description = "The signed statement as stored, or its lines as CSV",
            content((payoff_billing::Statement = "application/json"), (String = "text/csv"))),
        (status = 401), (status = 404)), security(("bearer" = [])))]
pub async fn show_statement(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadBilling>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Params(q): Params<FormatQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(q.format.as_deref(), &headers)?;
    let stored = blocking_with(move |store| stored_statement(store, &caller, &id), &state).await?;
    if !csv {
        return Ok(statement_response(StatusCode::OK, stored.body));
    }
    let statement = serde_json::from_str(&stored.body)
        .map_err(|e| BillingError::Corrupt(format!("statement {}: {e}", stored.summary.id)))?;
    Ok((
        [(header::CONTENT_TYPE, "text/csv")],
        billing::statement_csv(&statement),
    )
        .into_response())
}

/// A closed statement the caller sees with its evidence bundle.
pub(crate) fn statement_with_evidence(
    store: &payoff_store::Store,
    caller: &Caller,
    id: &str,
) -> Result<(payoff_billing::Statement, payoff_billing::Bundle), ApiError> {
    let stored = stored_statement(store, caller, id)?;
    let statement = serde_json::from_str(&stored.body)
        .map_err(|e| BillingError::Corrupt(format!("statement {id}: {e}")))?;
    let bundle = billing::evidence(store, &statement)?;
    Ok((statement, bundle))
}

/// The evidence bundle of a statement, for `payoff verify`.
#[utoipa::path(get, path = "/v1/statements/{id}/evidence", tag = "billing",
    responses(
        (status = 200, description = "The statement, the contract versions and events it was computed from, and their chain links: what `payoff verify` reads",
            body = payoff_billing::Bundle),
        (status = 401), (status = 404)), security(("bearer" = [])))]
pub async fn evidence(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadBilling>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, bundle) = blocking_with(
        move |store| statement_with_evidence(store, &caller, &id),
        &state,
    )
    .await?;
    Ok(statement_response(
        StatusCode::OK,
        serde_json::to_string(&bundle).unwrap_or_default(),
    ))
}

/// The key published at `/.well-known/payoff/keys`: what statements are
/// checked against.
pub(crate) fn published_key(state: &AppState) -> ed25519_dalek::VerifyingKey {
    state.signing_key.verifying_key()
}

/// The provider's statement-signing public keys, each with the window it
/// signed in (no authentication): a statement verifies against the key its
/// signature names.
#[utoipa::path(get, path = "/.well-known/payoff/keys", tag = "billing", responses((status = 200, body = PublicKeys)))]
pub async fn public_keys(State(state): State<AppState>) -> Json<PublicKeys> {
    let active = hex::encode(published_key(&state).as_bytes());
    let mut keys: Vec<payoff_accounting::billing::KeyWindow> = state.key_history.as_ref().clone();
    if !keys.iter().any(|k| k.public_key == active) {
        keys.push(payoff_accounting::billing::KeyWindow {
            public_key: active,
            valid_from: None,
            valid_until: None,
        });
    }
    Json(PublicKeys {
        keys: keys
            .iter()
            .map(payoff_accounting::billing::KeyWindow::published)
            .collect(),
    })
}

/// The statement-signing keys a provider has used.
#[derive(Serialize, ToSchema)]
pub struct PublicKeys {
    /// Each key as `payoff_accounting::billing::KeyWindow::published`
    /// writes it: `algorithm` (`ed25519`), `key_id`, `public_key` (hex),
    /// and the window it signed in, `valid_from` and `valid_until`
    /// (`null` for the key in use).
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<Value>,
}
