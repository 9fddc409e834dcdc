//! `/v1/webhooks`: a customer's subscriptions to its ledger's events, and
//! their delivery log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use payoff_store::{WebhookDelivery, WebhookSubscription};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Allowed, Caller};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::{Body, Params};
use crate::webhooks::{check_subscription, new_secret};
use crate::{blocking_with, AppState};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(remove))
        .routes(routes!(deliveries))
}

const SUBSCRIPTIONS_MAX: usize = 32;
const DELIVERIES_LIMIT_MAX: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// Where deliveries are POSTed: https, to a public address, unless the
    /// operator's egress allow list says otherwise.
    url: String,
    /// Exact types, prefixes ending in `*` (`ticket.*`), or `*`.
    event_types: Vec<String>,
    /// Provider keys: whose events.
    customer: Option<String>,
}

/// A subscription, never its secret.
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub customer: String,
    pub url: String,
    /// Exact types, prefixes ending in `*` (`ticket.*`), or `*`.
    pub event_types: Vec<String>,
    /// The key id that created it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// `null` while it is live.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<&WebhookSubscription> for WebhookView {
    fn from(w: &WebhookSubscription) -> Self {
        WebhookView {
            id: w.id.clone(),
            customer: w.customer.clone(),
            url: w.url.clone(),
            event_types: w.event_types.clone(),
            created_by: w.created_by.clone(),
            created_at: w.created_at,
            deleted_at: w.deleted_at,
        }
    }
}

/// A new subscription, with the secret its deliveries are signed with.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub subscription: WebhookView,
    /// `whsec_` and the base64 key (Standard Webhooks): shown only now.
    pub secret: String,
}

/// Subscribes a URL to event types. The signing secret is in this reply
/// only; deliveries start with the next event recorded.
#[utoipa::path(post, path = "/v1/webhooks", operation_id = "create_webhook", tag = "webhooks",
    responses((status = 201, body = CreatedWebhook), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageWebhooks>,
    Body(request): Body<NewSubscription>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let customer = caller.customer_scope(request.customer.as_deref())?;
    check_subscription(&state.egress, &request.url, &request.event_types)?;
    let mut id = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let by = caller.0.key_id.clone();
    let secret = new_secret();
    let sealed = state.secrets.seal(&secret);
    let now = state.now();
    let created = blocking_with(
        move |s| {
            let live = s
                .webhooks(Some(&customer))?
                .iter()
                .filter(|w| w.deleted_at.is_none())
                .count();
            if live >= SUBSCRIPTIONS_MAX {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("a customer has at most {SUBSCRIPTIONS_MAX} subscriptions; delete one first"),
                ));
            }
            let head = s.head(&customer)?.ok_or_else(|| {
                ApiError::new(ErrorCode::UnknownCustomer, "unknown customer")
            })?;
            let subscription = WebhookSubscription {
                id: format!("wh_{}", hex::encode(id)),
                customer,
                url: request.url,
                event_types: request.event_types,
                secret: sealed,
                created_by: by,
                created_at: now,
                cursor: head.sequence,
                deleted_at: None,
            };
            s.add_webhook(&subscription)?;
            Ok(subscription)
        },
        &state,
    )
    .await?;
    state.webhooks_due.notify_one();
    // Shown once, here; stored sealed.
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            subscription: WebhookView::from(&created),
            secret,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Provider keys: one customer's only (default: all).
    customer: Option<String>,
}

/// A customer's (or every customer's) subscriptions.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// Subscriptions, deleted ones included (with `deleted_at`); never secrets.
#[utoipa::path(get, path = "/v1/webhooks", operation_id = "list_webhooks", tag = "webhooks", params(ListQuery),
    responses((status = 200, body = WebhookList), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadWebhooks>,
    Params(q): Params<ListQuery>,
) -> Result<Json<WebhookList>, ApiError> {
    let customer = match (&caller.0.customer, q.customer) {
        (None, named) => named,
        (Some(_), named) => Some(caller.customer_scope(named.as_deref())?),
    };
    let all = blocking_with(move |s| Ok(s.webhooks(customer.as_deref())?), &state).await?;
    Ok(Json(WebhookList {
        webhooks: all.iter().map(WebhookView::from).collect(),
    }))
}

/// The subscription `id` if the caller sees its customer (else 404).
async fn visible(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> Result<WebhookSubscription, ApiError> {
    let found = blocking_with(
        move |s| Ok(s.webhooks(None)?.into_iter().find(|w| w.id == id)),
        state,
    )
    .await?;
    found
        .filter(|w| caller.sees(Some(&w.customer)))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such webhook subscription"))
}

/// A subscription stopped.
#[derive(Serialize, ToSchema)]
pub struct RemovedWebhook {
    pub id: String,
    /// Always true.
    pub deleted: bool,
}

/// Stops a subscription: nothing new is enqueued, deliveries still
/// pending fail with that reason, and the log stays readable.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", operation_id = "remove_webhook", tag = "webhooks",
    responses((status = 200, body = RemovedWebhook), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManageWebhooks>,
    Path(id): Path<String>,
) -> Result<Json<RemovedWebhook>, ApiError> {
    let sub = visible(&state, &caller, id).await?;
    let sub_id = sub.id.clone();
    let now = state.now();
    let deleted = blocking_with(move |s| Ok(s.delete_webhook(&sub_id, now)?), &state).await?;
    if !deleted {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "the subscription was deleted already",
        ));
    }
    Ok(Json(RemovedWebhook {
        id: sub.id,
        deleted: true,
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<u64>,
    /// 1 to 1000, default 100.
    limit: Option<usize>,
}

/// A page of a subscription's delivery log.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    /// Each delivery: `id` (the `webhook-id` its receiver sees),
    /// `subscription`, `customer`, the ledger `sequence` and `event_type`
    /// delivered, `status`, `attempts`, `next_attempt_at`, `last_status`
    /// (HTTP), `last_error`, `created_at` and `delivered_at`.
    #[schema(value_type = Vec<Object>)]
    pub deliveries: Vec<WebhookDelivery>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<u64>,
}

/// The delivery log of a subscription, in ledger order: status, attempts,
/// the last HTTP status or error, and when it is tried next.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", operation_id = "list_webhook_deliveries", tag = "webhooks", params(DeliveryQuery),
    responses((status = 200, body = DeliveryPage), (status = 400), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadWebhooks>,
    Path(id): Path<String>,
    Params(q): Params<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=DELIVERIES_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit: must be 1 to {DELIVERIES_LIMIT_MAX}"),
        ));
    }
    let sub = visible(&state, &caller, id).await?;
    let after = q.cursor.unwrap_or(0);
    let mut list = blocking_with(
        move |s| Ok(s.deliveries(&sub.id, after, limit + 1)?),
        &state,
    )
    .await?;
    let more = list.len() > limit;
    list.truncate(limit);
    let next_cursor = more.then(|| list.last().map(|d| d.sequence)).flatten();
    Ok(Json(DeliveryPage {
        deliveries: list,
        next_cursor,
    }))
}
