//! Rate limits: per API key, per client address for requests without a
//! key, and a stricter one on dashboard logins. A caller over its limit
//! gets 429 problem+json with `Retry-After`; nothing it sent is read.
//!
//! The buckets are GCRA (`governor`), kept in memory per process: with
//! several nodes each enforces its own share. Behind a proxy every client
//! has the proxy's address, so the per-address limits then apply to the
//! proxy as a whole; keep them off there (0) and limit at the proxy.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::problem::{ApiError, ErrorCode};
use crate::AppState;

/// How many requests each caller may send. Zero turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Per API key: requests per second, sustained.
    pub key_per_second: u32,
    /// Per API key: requests allowed at once above the sustained rate.
    pub key_burst: u32,
    /// Per client address, for requests without an API key (the dashboard,
    /// anonymous callers): requests per second.
    pub address_per_second: u32,
    pub address_burst: u32,
    /// Dashboard login attempts per client address per minute.
    pub login_per_minute: u32,
    pub login_burst: u32,
}

impl Default for RateLimits {
    /// Far above what one integration or one person sends, far below what
    /// a loop can: a flood is cut off, a busy vendor is not.
    fn default() -> Self {
        RateLimits {
            key_per_second: 500,
            key_burst: 1_000,
            address_per_second: 100,
            address_burst: 300,
            login_per_minute: 10,
            login_burst: 10,
        }
    }
}

impl RateLimits {
    /// No limits (the demo, which replays a month in minutes, and benches).
    pub const OFF: RateLimits = RateLimits {
        key_per_second: 0,
        key_burst: 0,
        address_per_second: 0,
        address_burst: 0,
        login_per_minute: 0,
        login_burst: 0,
    };
}

/// Buckets beyond which the ones not used lately are dropped: keys are
/// cheap to invent, memory is not.
const BUCKETS_MAX: usize = 100_000;

/// The limiters of one process.
pub struct Limiters {
    keys: Option<DefaultKeyedRateLimiter<String>>,
    addresses: Option<DefaultKeyedRateLimiter<IpAddr>>,
    logins: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn quota(rate: u32, burst: u32, per_minute: bool) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
    let quota = if per_minute {
        Quota::per_minute(rate)
    } else {
        Quota::per_second(rate)
    };
    Some(quota.allow_burst(burst))
}

impl Limiters {
    pub fn new(limits: RateLimits) -> Arc<Limiters> {
        Arc::new(Limiters {
            keys: quota(limits.key_per_second, limits.key_burst, false).map(RateLimiter::keyed),
            addresses: quota(limits.address_per_second, limits.address_burst, false)
                .map(RateLimiter::keyed),
            logins: quota(limits.login_per_minute, limits.login_burst, true)
                .map(RateLimiter::keyed),
        })
    }
}

/// Checks `key` against `limiter`; the wait until it may come back if not.
fn check<K>(limiter: &Option<DefaultKeyedRateLimiter<K>>, key: &K) -> Result<(), u64>
where
    K: Clone + Eq + std::hash::Hash,
{
    let Some(limiter) = limiter else {
        return Ok(());
    };
    if limiter.len() > BUCKETS_MAX {
        limiter.retain_recent();
    }
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    })
}

/// The key id a request presents (`pyk_<id>_…`), unchecked: the bucket is
/// the key's whether or not the key turns out to be valid.
fn presented_key(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let id = token
        .strip_prefix("pyk_")
        .and_then(|rest| rest.split('_').next())
        .unwrap_or(token);
    Some(id.chars().take(64).collect())
}

pub(crate) async fn enforce(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let limiters = &state.limiters;
    let mut verdict = match (presented_key(&request), address) {
        (Some(key), _) => check(&limiters.keys, &key).map_err(|w| ("key", w)),
        (None, Some(ip)) => check(&limiters.addresses, &ip).map_err(|w| ("address", w)),
        (None, None) => Ok(()),
    };
    if verdict.is_ok() && request.method() == Method::POST && path == "/ui/login" {
        if let Some(ip) = address {
            verdict = check(&limiters.logins, &ip).map_err(|w| ("login", w));
        }
    }
    match verdict {
        Ok(()) => next.run(request).await,
        Err((scope, wait_s)) => {
            state
                .metrics
                .rate_limited
                .get_or_create(&crate::metrics::ScopeLabels {
                    scope: scope.to_owned(),
                })
                .inc();
            let mut response = ApiError::new(
                ErrorCode::RateLimited,
                format!("too many requests; retry in {wait_s} s"),
            )
            .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&wait_s.max(1).to_string()).expect("digits"),
            );
            response
        }
    }
}
