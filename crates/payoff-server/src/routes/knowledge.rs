//! `/v1/knowledge`: documents with their readers, search with sources, and
//! answers that cite them. Every search filters by the caller's groups
//! inside the index query.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use payoff_knowledge::{Answer, Document, Hit};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::{may, Action, Allowed, Caller};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::{Body, Params};
use crate::{blocking_with, AppState};

/// Most documents in one upload.
const DOCUMENTS_MAX: usize = 1000;
/// Largest upload: several documents of the largest size, escaped as JSON.
pub const UPLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Longest question or query.
pub const QUESTION_CHARS_MAX: usize = 2000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload).layer(axum::extract::DefaultBodyLimit::max(UPLOAD_BYTES_MAX)))
        .routes(routes!(remove))
        .routes(routes!(search))
        .routes(routes!(answer))
        .routes(routes!(reindex))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// Required with a provider key.
    customer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    id: String,
    title: String,
    url: Option<String>,
    body: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// The best passages of `customer` for `query` that a reader of `groups`
/// may read: the one way the API, the dashboard and the support agent
/// search.
///
/// At most one search per core runs at a time; the others wait for a slot
/// without holding a thread. Sixty-four searches sharing two cores had each
/// take thirty-two times its own time, with the threads' switching on top.
pub(crate) async fn passages(
    state: &AppState,
    customer: &str,
    query: &str,
    groups: Vec<String>,
    limit: usize,
) -> Result<Vec<payoff_knowledge::Hit>, ApiError> {
    let asked = std::time::Instant::now();
    let _slot = state
        .search_slots
        .acquire()
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
    crate::metrics::note_wait(asked.elapsed());
    let state = state.clone();
    let (customer, query) = (customer.to_owned(), query.to_owned());
    let metrics = state.metrics.clone();
    let hits = tokio::task::spawn_blocking(move || {
        // Any node answers as of the documents' last change, whichever
        // node it was written through.
        if state.store.knowledge_head()? > state.knowledge.watermark() {
            state.catch_up_knowledge()?;
        }
        state
            .knowledge
            .search(&customer, &query, &groups, limit)
            .map_err(index_error)
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
    metrics.searches.inc();
    metrics
        .search_seconds
        .observe(asked.elapsed().as_secs_f64());
    hits
}

fn index_error(e: payoff_knowledge::IndexError) -> ApiError {
    use payoff_knowledge::IndexError as E;
    match e {
        E::Engine(_) | E::Directory { .. } | E::SchemaMismatch { .. } | E::Locked { .. } => {
            tracing::error!(error = %e, "knowledge index failure");
            ApiError::new(ErrorCode::Unavailable, e.to_string())
        }
        other => ApiError::new(ErrorCode::InvalidRequest, other.to_string()),
    }
}

/// Documents stored by an upload.
#[derive(Serialize, ToSchema)]
pub struct StoredDocuments {
    /// How many.
    pub stored: usize,
}

/// Adds or replaces documents (by id): a JSON object or an array of up to
/// 1,000 `{id, title, url, body, groups}`. A document with no groups is
/// readable by the whole customer. All are checked before any is stored.
#[utoipa::path(post, path = "/v1/knowledge/documents", tag = "knowledge", params(CustomerQuery),
    responses((status = 200, body = StoredDocuments), (status = 400), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageKnowledge>,
    Params(q): Params<CustomerQuery>,
    Body(upload): Body<Value>,
) -> Result<Json<StoredDocuments>, ApiError> {
    let customer = caller.customer_scope(q.customer.as_deref())?;
    let items = match upload {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "send a document object or an array of them",
            ))
        }
    };
    let raw = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value::<NewDocument>(item)
                .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("document {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if raw.is_empty() || raw.len() > DOCUMENTS_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("give 1 to {DOCUMENTS_MAX} documents"),
        ));
    }
    let mut documents = Vec::with_capacity(raw.len());
    for (i, d) in raw.into_iter().enumerate() {
        let doc = Document::new(d.id, d.title, d.url, d.body, d.groups)
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("document {i}: {e}")))?;
        documents.push(doc);
    }
    let n = documents.len();
    let now = state.now();
    let after = state.clone();
    blocking_with(
        move |store| {
            if store.customer(&customer)?.is_none() {
                return Err(ApiError::new(
                    ErrorCode::UnknownCustomer,
                    format!("unknown customer \"{customer}\""),
                ));
            }
            let rows: Vec<(String, String)> = documents
                .iter()
                .map(|d| (d.id.clone(), serde_json::to_string(d).unwrap_or_default()))
                .collect();
            store.put_documents(&customer, &rows, now)?;
            // This node's index takes the change at once; others at their
            // next search.
            after.catch_up_knowledge()?;
            Ok(())
        },
        &state,
    )
    .await?;
    Ok(Json(StoredDocuments { stored: n }))
}

/// Deletes a document from the store and the index.
#[utoipa::path(delete, path = "/v1/knowledge/documents/{id}", operation_id = "remove_document", tag = "knowledge", params(CustomerQuery),
    responses((status = 204), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageKnowledge>,
    Path(id): Path<String>,
    Params(q): Params<CustomerQuery>,
) -> Result<StatusCode, ApiError> {
    let customer = caller.customer_scope(q.customer.as_deref())?;
    let after = state.clone();
    blocking_with(
        move |store| {
            if store.delete_document(&customer, &id)?.is_none() {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no document \"{id}\""),
                ));
            }
            after.catch_up_knowledge()?;
            Ok(())
        },
        &state,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A customer's passages, rebuilt.
#[derive(Serialize, ToSchema)]
pub struct Reindexed {
    /// How many passages its documents now make.
    pub passages: usize,
}

/// Rebuilds a customer's passages from its stored documents.
#[utoipa::path(post, path = "/v1/knowledge/reindex", tag = "knowledge", params(CustomerQuery),
    responses((status = 200, body = Reindexed), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn reindex(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageKnowledge>,
    Params(q): Params<CustomerQuery>,
) -> Result<Json<Reindexed>, ApiError> {
    let customer = caller.customer_scope(q.customer.as_deref())?;
    let index = state.knowledge.clone();
    let passages = blocking_with(
        move |store| {
            let documents = stored_documents(store, Some(&customer))?;
            let docs: Vec<Document> = documents.into_iter().map(|(_, d)| d).collect();
            let n = index.reindex(&customer, &docs).map_err(index_error)?;
            index.commit().map_err(index_error)?;
            Ok(n)
        },
        &state,
    )
    .await?;
    Ok(Json(Reindexed { passages }))
}

/// The stored documents of one customer or of all.
pub fn stored_documents(
    store: &payoff_store::Store,
    customer: Option<&str>,
) -> Result<Vec<(String, Document)>, ApiError> {
    store
        .documents(customer)?
        .into_iter()
        .map(|(c, body)| document_of(&body).map(|d| (c, d)))
        .collect()
}

/// The groups a request reads as: an agent acting for an end user passes
/// that user's groups; every other key reads as the groups it was given.
async fn reader_groups(
    state: &AppState,
    caller: &Caller,
    passed: Option<Vec<String>>,
) -> Result<Vec<String>, ApiError> {
    if let Some(groups) = passed {
        if caller.0.role != payoff_store::Role::Agent {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "groups: only an agent key may act for a user's groups; other keys read as their own",
            ));
        }
        return Ok(groups);
    }
    own_groups(state, caller).await
}

/// The groups the caller's key was given (none: it reads ungrouped
/// documents only).
async fn own_groups(state: &AppState, caller: &Caller) -> Result<Vec<String>, ApiError> {
    let key_id = caller.0.key_id.clone();
    let stored = blocking_with(move |store| Ok(store.key_groups(&key_id)?), state).await?;
    Ok(stored
        .and_then(|g| serde_json::from_str(&g).ok())
        .unwrap_or_default())
}

/// Refuses a caller acting for `groups` it may not: the one rule behind
/// keys that grant groups, tickets handed to the support agent and
/// `ticket.created` events. Agent keys act for end users and provider keys
/// mint every customer's keys, so both may name any group; any other
/// customer key only groups it holds itself, or a customer admin could
/// have the agent draft from the finance folder into approvals that every
/// viewer reads, or mint itself a key to any folder.
pub(crate) async fn check_acting_for(
    state: &AppState,
    caller: &Caller,
    field: &str,
    groups: &[String],
) -> Result<(), ApiError> {
    if groups.is_empty()
        || caller.0.role == payoff_store::Role::Agent
        || caller.0.customer.is_none()
    {
        return Ok(());
    }
    let own = own_groups(state, caller).await?;
    match groups.iter().find(|g| !own.contains(g)) {
        None => Ok(()),
        Some(foreign) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("{field}: this key does not hold the group \"{foreign}\"; only an agent key may act for other people's groups"),
        )),
    }
}

fn split_groups(text: Option<&str>) -> Option<Vec<String>> {
    text.map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

fn check_text(field: &str, text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.chars().count() > QUESTION_CHARS_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{field}: must be 1 to {QUESTION_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    q: String,
    /// For agent keys acting for an end user: that user's groups, comma-separated.
    groups: Option<String>,
    /// 1 to 50, default 10.
    limit: Option<usize>,
    customer: Option<String>,
}

/// The passages a search found.
#[derive(Serialize, ToSchema)]
pub struct SearchHits {
    /// Best first: `doc_id`, `title`, `url`, `heading`, `snippet_html`
    /// (escaped, query terms in `<b>`), the passage's `text` and its
    /// `score` (comparable only within one search).
    #[schema(value_type = Vec<Object>)]
    pub hits: Vec<Hit>,
}

/// Passages the caller may read, best first, with highlighted snippets.
#[utoipa::path(get, path = "/v1/knowledge/search", tag = "knowledge", params(SearchQuery),
    responses((status = 200, body = SearchHits), (status = 400), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn search(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::SearchKnowledge>,
    Params(q): Params<SearchQuery>,
) -> Result<Json<SearchHits>, ApiError> {
    let customer = caller.customer_scope(q.customer.as_deref())?;
    check_text("q", &q.q)?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "limit: must be 1 to 50",
        ));
    }
    let groups = reader_groups(&state, &caller, split_groups(q.groups.as_deref())).await?;
    let hits = passages(&state, &customer, &q.q, groups, limit).await?;
    Ok(Json(SearchHits { hits }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    question: String,
    groups: Option<Vec<String>>,
    customer: Option<String>,
}

/// The passages a caller may read for `question` and the answer drawn
/// from them: the one path of the API's answers and the dashboard's
/// knowledge page.
pub(crate) async fn ask(
    state: &AppState,
    caller: &Caller,
    customer: &str,
    question: &str,
    groups: Option<Vec<String>>,
) -> Result<(Vec<payoff_knowledge::Hit>, payoff_knowledge::Answer), ApiError> {
    caller.require(Action::SearchKnowledge)?;
    check_text("question", question)?;
    let groups = reader_groups(state, caller, groups).await?;
    let hits = passages(state, customer, question, groups, 5).await?;
    let meter = crate::answers::Meter {
        customer,
        agent: "knowledge",
        subject: None,
    };
    let answer = crate::answers::draft(state, &hits, question, meter).await?;
    Ok((hits, answer))
}

/// An answer drawn from the passages the caller may read.
#[derive(Serialize, ToSchema)]
pub struct KnowledgeAnswer {
    /// `text` (sentences from the passages, each followed by ` [n]`),
    /// `citations`, `confidence` (0 to 1) and `no_answer`.
    #[schema(value_type = Object)]
    pub answer: Answer,
    /// What drafted it: `extractive` or `openai`.
    pub provider: &'static str,
}

/// An answer whose sentences cite the passages they came from, or
/// `no_answer` when the knowledge the caller may read does not cover it.
#[utoipa::path(post, path = "/v1/knowledge/answer", tag = "knowledge",
    responses((status = 200, body = KnowledgeAnswer), (status = 400), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn answer(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::SearchKnowledge>,
    Body(req): Body<AnswerRequest>,
) -> Result<Json<KnowledgeAnswer>, ApiError> {
    let customer = caller.customer_scope(req.customer.as_deref())?;
    let (_, answer) = ask(&state, &caller, &customer, &req.question, req.groups).await?;
    Ok(Json(KnowledgeAnswer {
        answer,
        provider: state.answerer.name(),
    }))
}

/// A stored document's JSON as a document.
pub(crate) fn document_of(body: &str) -> Result<Document, ApiError> {
    let unreadable = |e: String| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("a stored document is unreadable: {e}"),
        )
    };
    let d: NewDocument = serde_json::from_str(body).map_err(|e| unreadable(e.to_string()))?;
    Document::new(d.id, d.title, d.url, d.body, d.groups).map_err(|e| unreadable(e.to_string()))
}
