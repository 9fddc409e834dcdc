//! Prometheus metrics: requests, latencies, events ingested, duplicates,
//! conflicts. No label ever carries a customer, so `/metrics` reveals no
//! tenant's data.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::Instrument;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

/// Counters of one server process.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    pub events_accepted: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub event_conflicts: AtomicU64,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .expect("metrics")
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let mut latency = self.latency.lock().expect("metrics");
        let h = latency.entry(route.to_owned()).or_default();
        h.count += 1;
        h.sum_s += seconds;
        for (i, bound) in BUCKETS_S.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP payoff_http_requests_total HTTP requests by route and status.\n# TYPE payoff_http_requests_total counter\n");
        for ((method, route, status), n) in self.requests.lock().expect("metrics").iter() {
            let _ = writeln!(out, "payoff_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP payoff_http_request_duration_seconds Request latency by route.\n# TYPE payoff_http_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().expect("metrics").iter() {
            for (bound, n) in BUCKETS_S.iter().zip(h.buckets) {
                let _ = writeln!(out, "payoff_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "payoff_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "payoff_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum_s
            );
            let _ = writeln!(
                out,
                "payoff_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        for (name, help, value) in [
            (
                "payoff_events_accepted_total",
                "Events stored.",
                &self.events_accepted,
            ),
            (
                "payoff_events_duplicate_total",
                "Events received again with the same content (stored once).",
                &self.events_duplicate,
            ),
            (
                "payoff_event_conflicts_total",
                "Requests refused because an event id was reused with other content.",
                &self.event_conflicts,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
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
