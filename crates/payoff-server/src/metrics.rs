//! Prometheus metrics, kept with `prometheus-client` and served at
//! `/metrics` in the OpenMetrics text format: requests and latencies by
//! route, events ingested, duplicates and conflicts, statement closes,
//! model calls (gateway and support agent) by result, knowledge searches,
//! requests refused by the rate limits, webhook deliveries by result, and
//! how far the outcome read model was behind. No label ever carries a
//! customer, so `/metrics` reveals no tenant's data.

use std::cell::Cell;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing::Instrument;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS_S.iter().copied())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// What became of something: `ok`, `timeout`, `delivered`, `failed`…
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// Which rate limit refused a request: `key`, `address` or `login`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    pub scope: String,
}

/// Where a model call came from: `gateway` or `support_agent`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub via: String,
    pub result: String,
}

/// The metrics of one server process.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub events_accepted: Counter,
    pub events_duplicate: Counter,
    pub event_conflicts: Counter,
    pub closes: Family<ResultLabels, Counter>,
    pub close_seconds: Histogram,
    pub model_calls: Family<CallLabels, Counter>,
    pub model_call_seconds: Histogram,
    pub searches: Counter,
    pub search_seconds: Histogram,
    pub rate_limited: Family<ScopeLabels, Counter>,
    pub webhook_deliveries: Family<ResultLabels, Counter>,
    pub outcome_model_behind: Gauge,
    pub cost_warnings: Family<ResultLabels, Counter>,
    pub otlp_spans: Family<ResultLabels, Counter>,
    pub actions: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            events_accepted: Counter::default(),
            events_duplicate: Counter::default(),
            event_conflicts: Counter::default(),
            closes: Family::default(),
            close_seconds: latency_histogram(),
            model_calls: Family::default(),
            model_call_seconds: latency_histogram(),
            searches: Counter::default(),
            search_seconds: latency_histogram(),
            rate_limited: Family::default(),
            webhook_deliveries: Family::default(),
            outcome_model_behind: Gauge::default(),
            cost_warnings: Family::default(),
            otlp_spans: Family::default(),
            actions: Family::default(),
        };
        {
            let mut r = m.registry.lock().expect("metrics");
            r.register(
                "payoff_http_requests",
                "HTTP requests by route and status",
                m.requests.clone(),
            );
            r.register(
                "payoff_http_request_duration_seconds",
                "Request latency by route",
                m.latency.clone(),
            );
            r.register(
                "payoff_events_accepted",
                "Events stored",
                m.events_accepted.clone(),
            );
            r.register(
                "payoff_events_duplicate",
                "Events received again with the same content (stored once)",
                m.events_duplicate.clone(),
            );
            r.register(
                "payoff_event_conflicts",
                "Requests refused because an event id was reused with other content",
                m.event_conflicts.clone(),
            );
            r.register(
                "payoff_statement_closes",
                "Period closes by result (closed, refused, failed)",
                m.closes.clone(),
            );
            r.register(
                "payoff_statement_close_duration_seconds",
                "Time to close a period",
                m.close_seconds.clone(),
            );
            r.register(
                "payoff_model_calls",
                "Model calls by where they came from and what became of them",
                m.model_calls.clone(),
            );
            r.register(
                "payoff_model_call_duration_seconds",
                "Model call latency through the gateway",
                m.model_call_seconds.clone(),
            );
            r.register(
                "payoff_knowledge_searches",
                "Knowledge searches",
                m.searches.clone(),
            );
            r.register(
                "payoff_knowledge_search_duration_seconds",
                "Knowledge search time, the wait for a core included",
                m.search_seconds.clone(),
            );
            r.register(
                "payoff_rate_limited",
                "Requests refused by a rate limit, by limit",
                m.rate_limited.clone(),
            );
            r.register(
                "payoff_webhook_deliveries",
                "Webhook delivery attempts by result",
                m.webhook_deliveries.clone(),
            );
            r.register(
                "payoff_llm_call_warnings",
                "Model calls stored that cost nothing as sent (unpriced_model, no_model, no_token_counts)",
                m.cost_warnings.clone(),
            );
            r.register(
                "payoff_otlp_spans",
                "Spans received on /v1/traces by result (recorded, skipped: not GenAI, rejected)",
                m.otlp_spans.clone(),
            );
            r.register(
                "payoff_actions",
                "Agent actions by what became of them (allow, deny, approval_required; approved, rejected, expired; succeeded, failed)",
                m.actions.clone(),
            );
            r.register(
                "payoff_outcome_model_behind_events",
                "Events the outcome read model was behind the ledger at its last pass (largest over customers)",
                m.outcome_model_behind.clone(),
            );
        }
        m
    }
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts one outcome of something under `family`.
    pub fn result(family: &Family<ResultLabels, Counter>, result: &str) {
        Self::result_by(family, result, 1);
    }

    /// Counts `n` outcomes of something under `family`.
    pub fn result_by(family: &Family<ResultLabels, Counter>, result: &str, n: u64) {
        family
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc_by(n);
    }

    /// One model call, from `via`, with its result.
    pub fn model_call(&self, via: &str, result: &str) {
        self.model_calls
            .get_or_create(&CallLabels {
                via: via.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(
            &mut out,
            &self.registry.lock().expect("metrics"),
        )
        .expect("writing to a String cannot fail");
        out
    }
}

pub(crate) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    // The client's request id when it sends a sane one, else a new one:
    // every log line of the request carries it, and the answer says it.
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| hex::encode(rand::random::<[u8; 8]>()), str::to_owned);
    // At the warning level, so that at the default filter every warning and
    // error of the request carries its id and route.
    let span = tracing::span!(
        target: "payoff::access",
        tracing::Level::WARN,
        "request",
        id = %request_id,
        method = %method,
        route = %route
    );
    let started = Instant::now();
    let (mut response, waited) = WAITED
        .scope(Cell::new(Duration::ZERO), async {
            let response = next.run(request).instrument(span.clone()).await;
            (response, WAITED.with(Cell::get))
        })
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.observe(&method, &route, status, elapsed);
    // The access log (`PAYOFF_LOG=payoff::access=info`); no customer data,
    // no query string, no key.
    span.in_scope(|| {
        tracing::info!(
            target: "payoff::access",
            status,
            duration_ms = elapsed * 1000.0,
            "{method} {route} {status}"
        );
    });
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    // The time spent in the server, for clients and benchmarks that want
    // it apart from the network (W3C Server Timing), and the part of it
    // spent waiting for a free core.
    let timing = format!(
        "app;dur={:.3}, wait;dur={:.3}",
        elapsed * 1000.0,
        waited.as_secs_f64() * 1000.0
    );
    if let Ok(value) = timing.parse() {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

tokio::task_local! {
    /// Time the request being served has waited for a search slot.
    static WAITED: Cell<Duration>;
}

/// Adds `waited` to the current request's wait (see [`record`]); nothing
/// outside a request.
pub(crate) fn note_wait(waited: Duration) {
    let _ = WAITED.try_with(|w| w.set(w.get() + waited));
}
