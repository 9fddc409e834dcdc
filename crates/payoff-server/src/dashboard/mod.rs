//! The web dashboard: server-rendered pages, served by the API's own
//! binary at `/` and `/ui/…`, with no front-end build and no network
//! beyond this server.
//!
//! HTML comes from `maud`, which escapes every interpolated value, so a
//! hostile string in a ticket, a document or a customer's name stays text.
//! Charts are inline SVG drawn here (`charts`); the only script
//! (`assets/app.js`) fetches the statement verification and submits the
//! customer picker. Handlers are as thin as the API's: each calls the same
//! functions the JSON routes call, with the same permission table and
//! tenant scoping ([`crate::auth`]), so the dashboard and the API cannot
//! disagree. Errors are the API's [`ApiError`], rendered as a page by
//! [`pages_layer`].

mod assets;
mod charts;
mod context;
mod format;
mod layout;
mod pages;
mod session;

use axum::extract::{OriginalUri, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::audit::ProblemNote;
use crate::problem::{ApiError, ErrorCode};
use crate::AppState;

pub(crate) use context::Ctx;
pub(crate) use session::{Posted, Viewer};

/// Largest form body (an approver's edited reply of 20,000 characters,
/// URL-encoded, fits).
pub const FORM_BYTES_MAX: usize = 256 * 1024;

/// The dashboard's routes, merged into [`crate::router`].
pub fn router() -> Router<AppState> {
    use pages::*;
    let ui = Router::new()
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/{file}", get(assets::serve))
        .route("/customers", get(customers::list))
        .route("/go", get(customers::go))
        .route("/customers/{customer}", get(customers::open))
        .route("/customers/{customer}/overview", get(overview::show))
        .route("/customers/{customer}/outcomes", get(outcomes::list))
        .route("/customers/{customer}/outcomes/{id}", get(outcomes::show))
        .route(
            "/customers/{customer}/disputes",
            get(disputes::list).post(disputes::raise),
        )
        .route(
            "/customers/{customer}/disputes/decide",
            post(disputes::decide),
        )
        .route("/customers/{customer}/statements", get(statements::list))
        .route(
            "/customers/{customer}/statements/preview/{period}",
            get(statements::preview),
        )
        .route(
            "/customers/{customer}/statements/{id}",
            get(statements::show),
        )
        .route(
            "/customers/{customer}/statements/{id}/verification",
            get(statements::verification),
        )
        .route(
            "/customers/{customer}/statements/{id}/download/{file}",
            get(statements::download),
        )
        .route("/customers/{customer}/approvals", get(approvals::list))
        .route("/customers/{customer}/agents", get(agents::show))
        .route(
            "/customers/{customer}/approvals/decide",
            post(approvals::decide),
        )
        .route("/customers/{customer}/knowledge", get(knowledge::search))
        .route("/customers/{customer}/audit", get(audit::list))
        .route("/customers/{customer}/contract", get(contract::show))
        .route("/customers/{customer}/economics", get(economics::show))
        .fallback(|| async {
            ApiError::new(ErrorCode::NotFound, "there is no such dashboard page")
        })
        .layer(axum::middleware::from_fn(pages_layer));
    Router::new().route("/", get(session::home)).nest("/ui", ui)
}

/// Turns every error of a dashboard route into a readable page (or, when
/// nobody is logged in, a redirect to the login page that comes back
/// here), and adds the headers that keep the pages from being framed,
/// sniffed, cached or given foreign scripts.
async fn pages_layer(request: Request, next: Next) -> Response {
    // The path as the browser asked for it (nesting strips `/ui`).
    let wanted = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri().clone(), |o| o.0.clone())
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let is_get = request.method() == axum::http::Method::GET;
    let response = next.run(request).await;
    let problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t == "application/problem+json");
    let note = response.extensions().get::<ProblemNote>().cloned();
    let mut response = match note.filter(|_| problem) {
        None => response,
        Some(note) => {
            let status = response.status();
            let mut page = if note.code == ErrorCode::NotLoggedIn.code() {
                let target = if is_get {
                    format!("/ui/login?next={}", format::url_encode(&wanted))
                } else {
                    "/ui/login".to_owned()
                };
                Redirect::to(&target).into_response()
            } else {
                (status, layout::error_page(status, &note.detail)).into_response()
            };
            // The audit layer reads what went wrong from here.
            page.extensions_mut().insert(note);
            page
        }
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A redirect after a form (303: the browser follows with a GET).
pub(crate) fn see_other(target: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, target.to_owned())],
    )
        .into_response()
}
