//! Health, readiness, metrics and the OpenAPI document: no key needed, no
//! customer data exposed.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::problem::{ApiError, ErrorCode};
use crate::{blocking, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    crate::openapi_json(),
                )
            }),
        )
}

/// Free space below which a node with its database on local disk
/// (SQLite) says it is not ready: a checkpoint of a full WAL (about 4 MiB)
/// and room for the writes in flight.
const READY_FREE_BYTES: u64 = 16 * 1024 * 1024;

/// Ready when the database answers, its disk has room (SQLite), events
/// can be written, and the node has caught up.
async fn ready(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let store = state.store.clone();
    let backend = store.backend_name();
    let free = blocking(move || {
        store.ping()?;
        store.free_space().transpose()
    })
    .await
    .map_err(|e| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the {backend} database does not answer: {}", e.detail),
        )
    })?;
    // A nearly full disk takes a small write and refuses the next larger
    // one, so a probe that fits says too little: below this much free
    // space the node says it is not ready, before writes start failing.
    if let Some(free) = free {
        if free < READY_FREE_BYTES {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the disk is full: {} MiB free on the database's disk, {} MiB needed to take writes",
                    free / (1024 * 1024),
                    READY_FREE_BYTES / (1024 * 1024)
                ),
            ));
        }
    }
    // The last group of events failed: the writer tries its connection
    // again with an empty group, and the node is not ready until it holds.
    if let Some(fault) = state.ledger.fault() {
        let probe = payoff_store::AppendRequest::new(Vec::new());
        if state.ledger.append(probe).await.is_err() {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("events cannot be written: {fault}"),
            ));
        }
    }
    if let Some(why) = state.startup.waiting_for() {
        return Err(ApiError::new(ErrorCode::Unavailable, why));
    }
    Ok((
        StatusCode::OK,
        Json(json!({"status": "ready", "database": backend})),
    ))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
