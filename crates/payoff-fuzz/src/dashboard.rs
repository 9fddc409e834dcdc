//! The dashboard's forms and query strings, through the whole router of a
//! server over a scratch SQLite database, as a logged-in operator.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{header, Method, Request};
use payoff_server::{AppState, ServerConfig};
use payoff_store::{LedgerConfig, Role, Store};
use tower::ServiceExt;

/// The pages and forms, `{}` standing for a path segment the input gives.
const ROUTES: [(&str, &str); 18] = [
    ("GET", "/ui/login"),
    ("POST", "/ui/login"),
    ("GET", "/ui/customers"),
    ("GET", "/ui/go"),
    ("GET", "/ui/customers/acme/overview"),
    ("GET", "/ui/customers/acme/outcomes"),
    ("GET", "/ui/customers/acme/outcomes/{}"),
    ("GET", "/ui/customers/acme/disputes"),
    ("POST", "/ui/customers/acme/disputes"),
    ("POST", "/ui/customers/acme/disputes/decide"),
    ("GET", "/ui/customers/acme/statements"),
    ("GET", "/ui/customers/acme/statements/preview/{}"),
    ("GET", "/ui/customers/acme/statements/{}"),
    ("GET", "/ui/customers/acme/approvals"),
    ("POST", "/ui/customers/acme/approvals/decide"),
    ("GET", "/ui/customers/acme/knowledge"),
    ("GET", "/ui/customers/acme/audit"),
    ("GET", "/ui/customers/acme/economics"),
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    cookie: String,
    csrf: String,
    _dir: tempfile::TempDir,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        // In memory where the system offers it: fsyncs of the audit
        // records would otherwise bound how many inputs a second run.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("scratch directory");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let url = dir.path().join("payoff.db").display().to_string();
        let store = Store::open(&url).expect("scratch database");
        let now = payoff_clock::wall();
        store.create_customer("acme", "Acme", now).expect("customer");
        let (admin, _) = store.create_key(Role::Admin, None, now).expect("key");
        let session = store
            .open_session(&admin.key_id, now, chrono::Duration::hours(12))
            .expect("session");
        let app = runtime.block_on(async {
            let ledger = store.ledger(LedgerConfig::default()).expect("ledger");
            let app = payoff_server::router(AppState::new(
                store,
                ledger,
                ServerConfig::default(),
                ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
            ));
            // The example contract and a ticket it bills, so the pages
            // have something to show.
            let event = r#"{"specversion":"1.0","id":"seed-1","source":"helpdesk","type":"ticket.closed",
                "subject":"T-1","time":"2026-11-02T09:15:00Z","payoffcustomer":"acme","data":{"resolved_by":"ai"}}"#;
            for (path, media, body) in [
                (
                    "/v1/customers/acme/contracts",
                    "application/toml",
                    include_str!("../../../examples/acme.toml"),
                ),
                ("/v1/events", "application/cloudevents+json", event),
            ] {
                let request = Request::post(path)
                    .header(header::AUTHORIZATION, format!("Bearer {}", admin.key))
                    .header(header::CONTENT_TYPE, media)
                    .body(Body::from(body))
                    .expect("request");
                let response = app.clone().oneshot(request).await.expect("infallible");
                assert!(response.status().is_success(), "{path}: {}", response.status());
            }
            app
        });
        Fixture {
            runtime,
            app,
            cookie: format!("payoff_session={}", session.token),
            csrf: session.csrf_token,
            _dir: dir,
        }
    })
}

/// The first byte picks a route; up to the first newline is the path
/// segment `{}` stands for, the rest the query string (pages) or the form
/// body (forms, sent with the session's CSRF token first). No answer may
/// be a 5xx.
pub fn dashboard(data: &[u8]) {
    if let Some((request, status)) = answer(data) {
        assert!(!status.is_server_error(), "{request}: {status}");
    }
}

/// The request an input makes and the status it gets; `None` for an
/// input that makes no request.
pub(crate) fn answer(data: &[u8]) -> Option<(String, axum::http::StatusCode)> {
    let (&pick, rest) = data.split_first()?;
    let (method, template) = ROUTES[pick as usize % ROUTES.len()];
    let (segment, tail) = match rest.iter().position(|&b| b == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&b"x"[..], rest),
    };
    let segment = encode(segment, false);
    if segment.is_empty() && template.contains("{}") {
        return None;
    }
    let mut uri = template.replace("{}", &segment);
    let f = fixture();
    let body = if method == "GET" {
        uri.push('?');
        uri.push_str(&encode(tail, true));
        Body::empty()
    } else {
        let mut form = format!("csrf={}&", f.csrf).into_bytes();
        form.extend_from_slice(tail);
        Body::from(form)
    };
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(&uri)
        .header(header::HOST, "localhost")
        .header(header::COOKIE, &f.cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .ok()?;
    let response = f
        .runtime
        .block_on(f.app.clone().oneshot(request))
        .expect("the router is infallible");
    Some((format!("{method} {uri}"), response.status()))
}

/// Bytes as a URI path segment or query: what a URI may carry as is,
/// the rest percent-encoded (in a query, `&`, `=` and `%` stay, so the
/// input shapes the fields and may write its own escapes).
fn encode(bytes: &[u8], query: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        let plain = b.is_ascii_alphanumeric()
            || b"-._~".contains(&b)
            || (query && b"&=%+,;:@!$'()*/?".contains(&b));
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
