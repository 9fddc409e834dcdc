//! The Payoff HTTP API and web dashboard: a thin translation between
//! requests and the store and pure core. Routers are composed per area
//! (`routes::*`, and `dashboard` for the pages at `/` and `/ui/…`); every
//! error leaves through [`problem::ApiError`].

pub mod actions;
pub mod answers;
mod audit;
pub mod auth;
pub use payoff_clock as clock;
mod dashboard;
pub mod gateway;
pub mod glances;
pub mod limits;
pub mod mcp;
mod metrics;
mod openapi;
mod paging;
pub mod problem;
pub mod projector;
pub mod records;
mod routes;
pub mod secrets;
pub mod startup;
pub mod support;
mod unread;
pub mod watch;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use ed25519_dalek::SigningKey;
use payoff_accounting::billing::KeyWindow;
use payoff_ledger::EventLimits;
use payoff_store::{Ledger, Store};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use metrics::Metrics;
pub use openapi::openapi_json;
use problem::ApiError;

/// Limits and settings of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub limits: EventLimits,
    /// Largest request body accepted.
    pub body_bytes_max: usize,
    /// How outgoing webhooks are paced.
    pub webhooks: webhooks::WebhookSettings,
    /// TLS trust and the egress policy of tenant URLs (webhooks).
    pub egress: payoff_egress::Egress,
    /// Requests per key, per address and logins per address.
    pub rate_limits: limits::RateLimits,
    /// Mark the dashboard's session cookie `Secure` on every answer (the
    /// dashboard is reached over https only); without it, only behind a
    /// proxy that sends `X-Forwarded-Proto: https`.
    pub secure_cookies: bool,
    /// The model gateway's upstreams (`[[gateway.upstream]]`).
    pub gateway: gateway::GatewayConfig,
    /// How OTLP traces are read (`[traces]`).
    pub traces: payoff_ledger::otlp::TraceSettings,
    /// The quality bands of agents (`[quality]`, see [`watch`]).
    pub quality: watch::QualitySettings,
    /// When the dashboard Overview's kept figures are shown as they are
    /// (`[dashboard] overview_exact_below_ms`, see [`glances`]).
    pub overview: payoff_accounting::glance::Policy,
    /// Whether the background workers run by themselves.
    pub background: Background,
}

/// Who drives the background workers: the support agent
/// ([`support::Worker::tick`]), the webhook outbox ([`webhooks::tick`]),
/// the quality watcher ([`watch::tick`]) and the Overview's refreshes
/// ([`glances::tick`]). Each pass of each is a tick
/// at the business time of `AppState::clock`; only the pacing of the ticks
/// differs. The outcome projector and the knowledge index's catch-up run
/// in both modes: reads catch up by themselves, and readiness waits for
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Background {
    /// `serve` runs each worker in a loop: a tick, then a sleep or a wake.
    #[default]
    Running,
    /// Nothing runs by itself: whoever holds the `AppState` (a test, a
    /// simulation) calls the ticks, after setting a manual clock. No route
    /// exposes them: a tick is an in-process call, not a door.
    Manual,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: EventLimits::default(),
            body_bytes_max: 16 * 1024 * 1024,
            webhooks: webhooks::WebhookSettings::default(),
            egress: payoff_egress::Egress::default(),
            rate_limits: limits::RateLimits::default(),
            secure_cookies: false,
            gateway: gateway::GatewayConfig::default(),
            traces: payoff_ledger::otlp::TraceSettings::default(),
            quality: watch::QualitySettings::default(),
            overview: payoff_accounting::glance::Policy::default(),
            background: Background::default(),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub ledger: Ledger,
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    /// The provider's key: it signs every statement this server closes.
    pub signing_key: Arc<SigningKey>,
    /// The knowledge index (in memory unless [`AppState::with_knowledge`]).
    pub knowledge: Arc<payoff_knowledge::KnowledgeIndex>,
    /// Drafts answers for the knowledge route and the support agent.
    pub answerer: Arc<answers::Answerer>,
    /// The support agent's settings.
    pub support: Arc<support::SupportConfig>,
    /// The agent rules (built-in and per customer) the support agent obeys.
    pub agent_policies: Arc<support::AgentPolicies>,
    /// Each customer's action rules, compiled once per version.
    pub action_policies: Arc<actions::ActionPolicies>,
    /// Wakes readers waiting for an action's approval ([`actions::wait`]).
    pub actions_decided: Arc<tokio::sync::Notify>,
    /// The sessions this node holds with customers' MCP servers.
    pub mcp_sessions: Arc<mcp::UpstreamSessions>,
    /// The client of tenant URLs (webhooks): `egress` checked on every
    /// resolved address, no redirects (see [`payoff_egress`]).
    pub http: reqwest::Client,
    /// The client of the gateway's upstreams: operator-configured, so
    /// trusted like the model endpoint (no egress policy, http allowed).
    pub gateway_http: reqwest::Client,
    /// The egress policy in force, the server's own address included once
    /// it listens ([`AppState::listening_on`]).
    pub egress: Arc<payoff_egress::EgressPolicy>,
    /// Business time (see [`clock::Clock`]).
    pub clock: clock::Clock,
    /// Searches allowed to run at once: one per core (see
    /// [`routes::knowledge::passages`]).
    pub search_slots: Arc<tokio::sync::Semaphore>,
    /// Wakes the outcome projector ([`projector::run`]) after an append.
    pub projector_due: Arc<tokio::sync::Notify>,
    /// Wakes the webhook outbox ([`webhooks::run`]) when a subscription
    /// is created on this node.
    pub webhooks_due: Arc<tokio::sync::Notify>,
    /// The Overview figures being refreshed ([`glances`]).
    pub glances: Arc<glances::Refreshes>,
    /// What this node still does before it is ready ([`startup::Startup`]).
    pub startup: Arc<startup::Startup>,
    /// Held while the knowledge index catches up with the change log.
    knowledge_sync: Arc<std::sync::Mutex<()>>,
    /// The buckets of [`ServerConfig::rate_limits`].
    pub limiters: Arc<limits::Limiters>,
    /// Every signing key with its window; empty: only `signing_key`, with
    /// no window recorded.
    pub key_history: Arc<Vec<KeyWindow>>,
    /// Seals tenants' secrets at rest (see [`secrets`]); a random key
    /// unless [`AppState::with_secret_key`] gives the data directory's.
    pub secrets: Arc<secrets::SecretBox>,
}

impl AppState {
    pub fn new(
        store: Store,
        ledger: Ledger,
        config: ServerConfig,
        signing_key: SigningKey,
    ) -> Self {
        let egress = Arc::new(config.egress.policy.clone());
        Self {
            limiters: limits::Limiters::new(config.rate_limits),
            key_history: Arc::default(),
            secrets: Arc::new(secrets::SecretBox::new(&secrets::SecretBox::generate())),
            http: config.egress.tenant_client(egress.clone()),
            gateway_http: payoff_egress::upstream_client(&config.egress.trust)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client with the configured roots builds"),
            egress,
            store,
            ledger,
            config,
            metrics: Arc::new(Metrics::default()),
            signing_key: Arc::new(signing_key),
            knowledge: Arc::new(
                payoff_knowledge::KnowledgeIndex::in_memory()
                    .expect("an in-memory index always opens"),
            ),
            answerer: Arc::new(answers::Answerer::Extractive),
            support: Arc::new(support::SupportConfig::default()),
            agent_policies: Arc::new(
                support::AgentPolicies::new(&support::SupportConfig::default().rule)
                    .expect("the default reply rule compiles (checked by payoff-policy's tests)"),
            ),
            action_policies: Arc::default(),
            actions_decided: Arc::new(tokio::sync::Notify::new()),
            mcp_sessions: Arc::default(),
            clock: clock::Clock::System,
            search_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            )),
            projector_due: Arc::new(tokio::sync::Notify::new()),
            webhooks_due: Arc::new(tokio::sync::Notify::new()),
            glances: Arc::default(),
            startup: Arc::default(),
            knowledge_sync: Arc::default(),
        }
    }

    /// Also refuses tenant URLs that lead to `own`, the address this
    /// server listens on.
    pub fn listening_on(mut self, own: SocketAddr) -> Self {
        self.egress = Arc::new(self.config.egress.policy.clone().listening_on(own));
        self.http = self.config.egress.tenant_client(self.egress.clone());
        self
    }

    /// Runs on `clock` instead of the system clock (simulations).
    pub fn with_clock(mut self, clock: clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Business time now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Drafts answers with `answerer` instead of the extractive default.
    pub fn with_answerer(mut self, answerer: answers::Answerer) -> Self {
        self.answerer = Arc::new(answerer);
        self
    }

    /// Runs the support agent with `config` instead of the defaults; fails
    /// when its reply rule does not make valid policies.
    pub fn with_support(
        mut self,
        config: support::SupportConfig,
    ) -> Result<Self, payoff_policy::PolicyErrors> {
        self.agent_policies = Arc::new(support::AgentPolicies::new(&config.rule)?);
        self.support = Arc::new(config);
        Ok(self)
    }

    /// Publishes `history` (every signing key with its window) instead of
    /// the signing key alone.
    pub fn with_key_history(mut self, history: Vec<KeyWindow>) -> Self {
        self.key_history = Arc::new(history);
        self
    }

    /// Seals tenants' secrets with `key` (the data directory's
    /// `secrets.key`, the same on every node).
    pub fn with_secret_key(mut self, key: &[u8; 32]) -> Self {
        self.secrets = Arc::new(secrets::SecretBox::new(key));
        self
    }

    /// Uses an index kept on disk (beside the database).
    pub fn with_knowledge(mut self, index: payoff_knowledge::KnowledgeIndex) -> Self {
        self.knowledge = Arc::new(index);
        self
    }

    /// Brings this node's knowledge index up to the documents' change log
    /// in the database: at start (an index on disk resumes where it
    /// stopped; an empty one takes every document), before each search,
    /// and after each write, so every node sharing the database answers
    /// the same. Returns the number of changes applied.
    pub fn catch_up_knowledge(&self) -> Result<usize, ApiError> {
        const BATCH: usize = 1_000;
        let unavailable = |e: payoff_knowledge::IndexError| {
            ApiError::new(problem::ErrorCode::Unavailable, e.to_string())
        };
        // One catch-up at a time: another waiting here finds it done.
        let _one = self
            .knowledge_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut applied = 0;
        loop {
            let changes = self
                .store
                .knowledge_changes(self.knowledge.watermark(), BATCH)?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(applied);
            };
            for change in &changes {
                match &change.body {
                    Some(body) => {
                        let document = routes::knowledge::document_of(body)?;
                        self.knowledge
                            .replace(&change.customer, &document)
                            .map_err(unavailable)?;
                    }
                    None => self
                        .knowledge
                        .delete(&change.customer, &change.doc_id)
                        .map_err(unavailable)?,
                }
            }
            self.knowledge.commit_through(last).map_err(unavailable)?;
            applied += changes.len();
        }
    }
}

/// The API's routes with their OpenAPI operations, per area. Each route is
/// declared with `routes!`, so it is in `/openapi.json`, and the
/// role-matrix test (driven by that document and
/// `tests/authz/permissions.csv`) calls it as every role; the one plain
/// route is an alias (OpenMeter's `/api/v1/events` for `POST /v1/events`).
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::events::router())
        .merge(routes::traces::router())
        .merge(routes::customers::router())
        .merge(routes::keys::router())
        .merge(routes::ledger::router())
        .merge(routes::billing::router())
        .merge(routes::economics::router())
        .merge(routes::assignments::router())
        .merge(routes::knowledge::router())
        .merge(routes::audit::router())
        .merge(routes::agents::router())
        .merge(routes::policies::router())
        .merge(routes::actions::router())
        .merge(mcp::router())
        .merge(routes::webhooks::router())
        .merge(gateway::router())
}

/// The whole server: the API, the operational routes (health, readiness,
/// metrics, the OpenAPI document) and the dashboard.
pub fn router(state: AppState) -> Router {
    let (api, _) = api().split_for_parts();
    Router::new()
        .merge(api)
        .merge(routes::operations::router())
        .merge(dashboard::router())
        .fallback(|| async {
            ApiError::new(
                problem::ErrorCode::NotFound,
                "no such route; see /openapi.json",
            )
        })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(
                problem::ErrorCode::MethodNotAllowed,
                format!("this route does not answer {method}; see /openapi.json"),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::from_fn(unread::read_before_answering))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Beside the requests: the projector keeps the read model current and,
    // unless background work is manual, the support agent works tickets
    // that arrive as ledger events and expires approvals, the webhook
    // outbox delivers and the quality watcher checks agents.
    let state = match listener.local_addr() {
        Ok(own) => state.listening_on(own),
        Err(_) => state,
    };
    webhooks::seal_clear_secrets(&state).await;
    // Each worker has its own stop: a `Notify` keeps one permit for a
    // worker still in a pass, so one shared among them would stop one.
    let mut stops = Vec::new();
    let mut workers = tokio::task::JoinSet::new();
    let mut stop = || {
        let stop = Arc::new(tokio::sync::Notify::new());
        stops.push(stop.clone());
        stop
    };
    workers.spawn(projector::run(state.clone(), stop()));
    if state.config.background == Background::Running {
        workers.spawn(watch::run(state.clone(), stop()));
        workers.spawn(support::run(
            state.clone(),
            std::time::Duration::from_secs(1),
            stop(),
        ));
        workers.spawn(webhooks::run(state.clone(), stop()));
    }
    let knowledge = tokio::spawn(catch_up_at_start(state.clone()));
    let served = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    knowledge.abort();
    for stop in stops {
        stop.notify_one();
    }
    while workers.join_next().await.is_some() {}
    served
}

/// The knowledge index catches up with the change log while the port
/// already answers (`/readyz` says so); a failure (a full disk, an index
/// another process holds) is reported there and tried again.
async fn catch_up_at_start(state: AppState) {
    const RETRY: std::time::Duration = std::time::Duration::from_secs(5);
    loop {
        let s = state.clone();
        let phase = match tokio::task::spawn_blocking(move || s.catch_up_knowledge()).await {
            Ok(Ok(applied)) => startup::Phase::Done(applied),
            Ok(Err(e)) => startup::Phase::Failed(e.detail),
            Err(e) => startup::Phase::Failed(format!("the task failed: {e}")),
        };
        let failed = matches!(phase, startup::Phase::Failed(_));
        if let startup::Phase::Failed(why) = &phase {
            tracing::error!(error = %why, "the knowledge index could not catch up; trying again");
        }
        state.startup.knowledge.send_replace(phase);
        if !failed {
            return;
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Runs blocking storage work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, payoff_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                problem::ErrorCode::Unavailable,
                format!("internal task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

/// One of the records Payoff writes into a customer's ledger itself (source
/// `payoff`: dispute steps, assignments, releases, budget crossings),
/// checked like any sent event.
pub(crate) fn own_event(
    state: &AppState,
    customer: &str,
    event: serde_json::Value,
) -> Result<payoff_store::Routed, ApiError> {
    let event = payoff_ledger::validate_event(event, &state.config.limits).map_err(|e| {
        ApiError::new(
            problem::ErrorCode::InvalidRequest,
            format!("{}: {}", e[0].field, e[0].reason),
        )
    })?;
    Ok(payoff_store::Routed {
        customer: customer.to_owned(),
        event,
    })
}

/// The `data` of an event from its canonical bytes (`null` when it has
/// none): how every reader of Payoff's own records takes their content.
pub(crate) fn data_of(canonical: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(canonical)
        .map(|mut body| body["data"].take())
        .unwrap_or_default()
}

/// Appends one of Payoff's own records. The inner `Err` says a record
/// with that id was stored earlier with other content; it stands.
pub(crate) async fn record_own(
    state: &AppState,
    customer: &str,
    event: serde_json::Value,
) -> Result<Result<(), payoff_store::AppendError>, ApiError> {
    record_own_audited(state, customer, event, Vec::new()).await
}

/// [`record_own`], with audit records that are written in the same
/// transaction when the record is stored (and not at all when it is not).
pub(crate) async fn record_own_audited(
    state: &AppState,
    customer: &str,
    event: serde_json::Value,
    audit: Vec<payoff_store::AuditEntry>,
) -> Result<Result<(), payoff_store::AppendError>, ApiError> {
    let routed = own_event(state, customer, event)?;
    let mut request = payoff_store::AppendRequest::new(vec![routed]);
    request.audit = audit;
    Ok(state.ledger.append(request).await?.map(|_| ()))
}

/// Runs blocking work that needs the store and may fail with any API error.
pub(crate) async fn blocking_with<T: Send + 'static>(
    f: impl FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    state: &AppState,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| {
            ApiError::new(
                problem::ErrorCode::Unavailable,
                format!("internal task failed: {e}"),
            )
        })?
}
