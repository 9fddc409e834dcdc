//! The model gateway: an OpenAI-compatible base URL (`/gateway/v1`) that a
//! vendor's agents use with the official SDKs unchanged, their Payoff key
//! as the API key. Before a call goes upstream the agent's kill switch and
//! budgets are checked; after it, one `llm.call` record lands in the
//! customer's ledger with every token kind, latency, status and what went
//! wrong, so costs per outcome need no code in the agent.
//!
//! Upstreams are the provider's (`[[gateway.upstream]]` in `payoff.toml`):
//! trusted like the model endpoint, reached over TLS (or http on loopback).
//! Bodies go through as sent and come back as answered: the gateway reads
//! them only for the model, the stream flag and the usage.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{may, Action, Allowed, PresentedKey};
use crate::problem::{ApiError, ErrorCode};
use crate::records::{GatewayCall, OwnRecord};
use crate::{blocking_with, AppState};

/// A model answer read whole (not streamed) is cut at this size.
const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Longest agent, subject and outcome names taken from headers.
const HEADER_TEXT_MAX: usize = 128;

/// One upstream: the models it serves and how to reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Named in every `llm.call` record of its calls.
    pub name: String,
    /// The OpenAI-compatible base URL (`…/v1`).
    pub base_url: String,
    /// The variable holding its API key (read at start, never stored).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The key itself, read from `api_key_env` when the settings load.
    #[serde(skip)]
    pub api_key: Option<String>,
    /// The model names clients ask for; each served by one upstream.
    pub models: Vec<String>,
    /// Longest a call may take, the whole stream included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    60_000
}

/// `[gateway]`: the upstreams. None configured: every model is unknown.
#[derive(Debug, Clone, Default)]
pub struct GatewayConfig {
    pub upstreams: Vec<Upstream>,
}

impl GatewayConfig {
    /// Checks what the provider wrote: names, URLs, models served once.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashMap::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let at = format!("gateway.upstream[{i}]");
            if u.name.trim().is_empty() {
                return Err(format!("{at}.name: must not be empty"));
            }
            let url = reqwest::Url::parse(&u.base_url)
                .map_err(|e| format!("{at}.base_url: \"{}\" is not a URL ({e})", u.base_url))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("{at}.base_url: must be http or https"));
            }
            if u.models.is_empty() {
                return Err(format!("{at}.models: name at least one model"));
            }
            if u.timeout_ms == 0 {
                return Err(format!("{at}.timeout_ms: must be more than 0"));
            }
            for m in &u.models {
                if let Some(other) = seen.insert(m.clone(), u.name.clone()) {
                    return Err(format!(
                        "{at}.models: \"{m}\" is already served by upstream \"{other}\""
                    ));
                }
            }
        }
        Ok(())
    }

    fn serving(&self, model: &str) -> Option<&Upstream> {
        self.upstreams
            .iter()
            .find(|u| u.models.iter().any(|m| m == model))
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(models))
        .routes(routes!(chat_completions))
        .routes(routes!(embeddings))
        .routes(routes!(responses))
}

/// OpenAI's list of models.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: &'static str,
    pub data: Vec<ModelEntry>,
}

/// A model in OpenAI's shape.
#[derive(Serialize, ToSchema)]
pub struct ModelEntry {
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// Always 0: Payoff does not know when the provider made it.
    pub created: u64,
    /// The `[[gateway.upstream]]` that serves it.
    pub owned_by: String,
}

/// The models the gateway serves, in OpenAI's list shape.
#[utoipa::path(get, path = "/gateway/v1/models", operation_id = "gateway_models", tag = "gateway",
    responses((status = 200, body = ModelList), (status = 401), (status = 403)), security(("bearer" = [])))]
pub async fn models(
    State(state): State<AppState>,
    _: Allowed<may::CallModels>,
) -> Result<Json<ModelList>, ApiError> {
    let data = state
        .config
        .gateway
        .upstreams
        .iter()
        .flat_map(|u| {
            u.models.iter().map(|m| ModelEntry {
                id: m.clone(),
                object: "model",
                created: 0,
                owned_by: u.name.clone(),
            })
        })
        .collect();
    Ok(Json(ModelList {
        object: "list",
        data,
    }))
}

/// OpenAI's chat completions, streaming (SSE) or not.
#[utoipa::path(post, path = "/gateway/v1/chat/completions", operation_id = "gateway_chat_completions", tag = "gateway",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "The upstream's chat completion as it answered, or its server-sent events when `stream` is true",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 429), (status = 502), (status = 504)),
    security(("bearer" = [])))]
pub async fn chat_completions(
    State(state): State<AppState>,
    key: PresentedKey,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    forward(&state, key, &headers, &body, "chat/completions")
        .await
        .map_err(openai_error)
}

/// OpenAI's embeddings.
#[utoipa::path(post, path = "/gateway/v1/embeddings", operation_id = "gateway_embeddings", tag = "gateway",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "The upstream's embeddings as it answered", body = Object, content_type = "application/json"),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 429), (status = 502), (status = 504)),
    security(("bearer" = [])))]
pub async fn embeddings(
    State(state): State<AppState>,
    key: PresentedKey,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    forward(&state, key, &headers, &body, "embeddings")
        .await
        .map_err(openai_error)
}

/// OpenAI's responses, streaming (SSE) or not.
#[utoipa::path(post, path = "/gateway/v1/responses", operation_id = "gateway_responses", tag = "gateway",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "The upstream's response as it answered, or its server-sent events when `stream` is true",
            content((Object = "application/json"), (String = "text/event-stream"))),
        (status = 400), (status = 401), (status = 403), (status = 404), (status = 409), (status = 429), (status = 502), (status = 504)),
    security(("bearer" = [])))]
pub async fn responses(
    State(state): State<AppState>,
    key: PresentedKey,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    forward(&state, key, &headers, &body, "responses")
        .await
        .map_err(openai_error)
}

/// The gateway's own refusals also carry OpenAI's `error` object, which
/// the SDKs read their exception's message from; the problem members
/// stay beside it.
fn openai_error(e: ApiError) -> ApiError {
    let error =
        json!({"message": e.detail, "type": e.code.code(), "code": e.code.code(), "param": null});
    e.with("error", error)
}

/// Who a call is for and what it asks, from the request.
#[derive(Clone)]
struct Call {
    customer: String,
    agent: String,
    subject: Option<String>,
    outcome: Option<String>,
    upstream: Upstream,
    model: String,
    endpoint: &'static str,
    stream: bool,
}

/// What the upstream reported a call used.
#[derive(Debug, Default, Clone, PartialEq)]
struct Usage {
    input: u64,
    output: u64,
    cached_read: u64,
    cache_creation: u64,
    reasoning: u64,
    /// The cost the upstream reported (LiteLLM, OpenRouter), as written.
    cost: Option<Value>,
    /// The model that answered, when the answer names it.
    model: Option<String>,
}

/// The usage in one answer or stream event: OpenAI's chat and embeddings
/// names (`prompt_tokens`…), the responses API's (`input_tokens`…), at
/// the top or under `response` (a `response.completed` event).
fn usage_in(v: &Value) -> Option<Usage> {
    let u = [&v["usage"], &v["response"]["usage"]]
        .into_iter()
        .find(|u| u.is_object())?;
    let n = |paths: &[&[&str]]| {
        paths
            .iter()
            .find_map(|path| {
                path.iter()
                    .try_fold(u, |at, k| at.get(*k))
                    .and_then(Value::as_u64)
            })
            .unwrap_or(0)
    };
    let cached_read = n(&[
        &["prompt_tokens_details", "cached_tokens"],
        &["input_tokens_details", "cached_tokens"],
        &["cache_read_input_tokens"],
    ]);
    let cache_creation = n(&[&["cache_creation_input_tokens"]]);
    // Anthropic's usage (`input_tokens` beside `cache_read_input_tokens`
    // and `cache_creation_input_tokens`, no `input_tokens_details`) counts
    // input without either cache; OpenAI's chat and responses usage count
    // it with the cached tokens. The record keeps OpenAI's convention
    // (`input_includes_cached`), which prices assume: otherwise the
    // uncached input of such a call would be priced as cached, and its
    // cache writes not at all.
    let excludes_caches = u.get("prompt_tokens").is_none()
        && u.get("input_tokens_details").is_none()
        && (u.get("cache_read_input_tokens").is_some()
            || u.get("cache_creation_input_tokens").is_some());
    let input = n(&[&["prompt_tokens"], &["input_tokens"]]);
    Some(Usage {
        input: if excludes_caches {
            input
                .saturating_add(cached_read)
                .saturating_add(cache_creation)
        } else {
            input
        },
        output: n(&[&["completion_tokens"], &["output_tokens"]]),
        cached_read,
        cache_creation,
        reasoning: n(&[
            &["completion_tokens_details", "reasoning_tokens"],
            &["output_tokens_details", "reasoning_tokens"],
        ]),
        cost: u
            .get("cost")
            .filter(|c| c.is_number() || c.is_string())
            .cloned(),
        model: [&v["model"], &v["response"]["model"]]
            .into_iter()
            .find_map(Value::as_str)
            .map(str::to_owned),
    })
}

/// A header's text when it is a sane name (printable, short).
pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let text = v.to_str().ok().map(str::trim).filter(|t| {
        !t.is_empty() && t.len() <= HEADER_TEXT_MAX && t.bytes().all(|b| b.is_ascii_graphic())
    });
    match text {
        Some(t) => Ok(Some(t.to_owned())),
        None => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{name}: must be 1 to {HEADER_TEXT_MAX} printable characters without spaces"),
        )),
    }
}

/// Checks the request and the agent, then sends the call upstream.
async fn forward(
    state: &AppState,
    key: PresentedKey,
    headers: &HeaderMap,
    body: &Bytes,
    endpoint: &'static str,
) -> Result<Response, ApiError> {
    let agent = header_text(headers, "x-payoff-agent")
        .map(|a| a.unwrap_or_else(|| "gateway".into()))
        .and_then(|agent| {
            crate::routes::agents::known_agent(&agent).map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("x-payoff-agent: {}", e.detail),
                )
            })?;
            Ok(agent)
        });
    // One step on the blocking pool for everything the store must say
    // before a call goes upstream: who calls, whether the agent is
    // stopped, and the customer's rules on models. The key is checked
    // first, so a stranger learns nothing from the other answers.
    let (now, policies, named) = (
        state.now(),
        state.action_policies.clone(),
        agent.as_ref().ok().cloned(),
    );
    let (customer, halt, rules) = blocking_with(
        move |s| {
            let caller = key.admit(s)?;
            caller.require(Action::CallModels)?;
            let customer = caller.0.customer.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "the gateway is called with a customer's agent key: provider keys name no customer",
                )
            })?;
            let Some(agent) = named else {
                return Ok((customer, None, None));
            };
            let halt = crate::actions::halted(s, &customer, &agent, now)?;
            let rules = match policies.for_customer(s, &customer) {
                Ok((_, rules)) => rules.governs_models().then_some(rules),
                Err(e) if e.code == ErrorCode::NoActionRules => None,
                Err(e) => return Err(e),
            };
            Ok((customer, halt, rules))
        },
        state,
    )
    .await?;
    let mut request: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("body: not JSON ({e})")))?;
    if !request.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "body: must be a JSON object",
        ));
    }
    let model = request["model"]
        .as_str()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "model: required, a model name"))?
        .to_owned();
    let upstream = state.config.gateway.serving(&model).cloned().ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownModel,
            format!("model \"{model}\": no upstream of this gateway serves it (GET /gateway/v1/models lists them)"),
        )
    })?;
    let stream = request["stream"].as_bool().unwrap_or(false) && endpoint != "embeddings";
    // Usage is what the record is for: a chat stream is asked to end with it.
    if stream
        && endpoint == "chat/completions"
        && request["stream_options"]["include_usage"] != true
    {
        if !request["stream_options"].is_object() {
            request["stream_options"] = json!({});
        }
        request["stream_options"]["include_usage"] = true.into();
    }
    let call = Call {
        customer,
        agent: agent?,
        subject: header_text(headers, "x-payoff-subject")?,
        outcome: header_text(headers, "x-payoff-outcome")?,
        upstream,
        model,
        endpoint,
        stream,
    };
    stop_or_go(&call, halt, rules)?;

    let url = format!(
        "{}/{endpoint}",
        call.upstream.base_url.trim_end_matches('/')
    );
    let mut outgoing = state
        .gateway_http
        .post(url)
        .timeout(Duration::from_millis(call.upstream.timeout_ms))
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&request).expect("JSON values serialise"));
    if let Some(key) = &call.upstream.api_key {
        outgoing = outgoing.bearer_auth(key);
    }
    let started = Instant::now();
    let answer = match outgoing.send().await {
        Ok(a) => a,
        Err(e) => {
            let (code, result) = if e.is_timeout() {
                (ErrorCode::UpstreamTimeout, "timeout")
            } else {
                (ErrorCode::UpstreamFailed, "unreachable")
            };
            meter(
                state,
                &call,
                &Usage::default(),
                None,
                result,
                started.elapsed(),
            )
            .await?;
            return Err(ApiError::new(
                code,
                format!("upstream \"{}\": {result}", call.upstream.name),
            ));
        }
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let event_stream = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    if status.is_success() && event_stream {
        return Ok(relay_stream(
            state.clone(),
            call,
            answer,
            started,
            content_type,
        ));
    }
    let (bytes, beyond) = match payoff_egress::read_capped(answer, ANSWER_BYTES_MAX).await {
        Ok(read) => read,
        Err(e) => {
            let result = if e.is_timeout() {
                "timeout"
            } else {
                "upstream_disconnected"
            };
            meter(
                state,
                &call,
                &Usage::default(),
                Some(status),
                result,
                started.elapsed(),
            )
            .await?;
            return Err(ApiError::new(
                if e.is_timeout() {
                    ErrorCode::UpstreamTimeout
                } else {
                    ErrorCode::UpstreamFailed
                },
                format!(
                    "upstream \"{}\": the answer broke off ({result})",
                    call.upstream.name
                ),
            ));
        }
    };
    if beyond {
        meter(
            state,
            &call,
            &Usage::default(),
            Some(status),
            "answer_too_large",
            started.elapsed(),
        )
        .await?;
        return Err(ApiError::new(
            ErrorCode::UpstreamFailed,
            format!(
                "upstream \"{}\": the answer is larger than {ANSWER_BYTES_MAX} bytes",
                call.upstream.name
            ),
        ));
    }
    let usage = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| usage_in(&v));
    let result = match (status.is_success(), &usage) {
        (true, Some(_)) => "ok",
        (true, None) => "no_usage",
        (false, _) => "upstream_error",
    };
    meter(
        state,
        &call,
        &usage.unwrap_or_default(),
        Some(status),
        result,
        started.elapsed(),
    )
    .await?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() =
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("application/json")),
    );
    Ok(response)
}

/// The kill switch, the budgets and the customer's rules on models (when
/// its action schema declares `call_model`), before anything is spent:
/// decided on what the store said in [`forward`]'s one blocking step.
fn stop_or_go(
    call: &Call,
    halt: Option<(ErrorCode, &'static str, String)>,
    rules: Option<std::sync::Arc<payoff_policy::ActionRules>>,
) -> Result<(), ApiError> {
    if let (None, Some(rules)) = (&halt, rules) {
        let refused = |why: String| {
            Err(ApiError::new(
                ErrorCode::ModelNotAllowed,
                format!(
                    "model \"{}\" for agent \"{}\": {why}",
                    call.model, call.agent
                ),
            ))
        };
        return match rules.model_call(&call.agent, &call.model, call.endpoint, &call.upstream.name)
        {
            Ok(d) if d.verdict == payoff_policy::ActionVerdict::Allow => Ok(()),
            Ok(d) if d.verdict == payoff_policy::ActionVerdict::ApprovalRequired => {
                refused(format!(
                    "a model call cannot wait for a person's approval ({})",
                    d.reason
                ))
            }
            Ok(d) => refused(format!(
                "{} (policies: {})",
                d.reason,
                d.policy_ids.join(", ")
            )),
            Err(e) => refused(e.to_string()),
        };
    }
    match halt {
        None => Ok(()),
        Some((code @ ErrorCode::AgentPaused, _, why)) => Err(ApiError::new(
            code,
            format!("{why}: resume it before it calls models"),
        )),
        Some((code, _, why)) => Err(ApiError::new(code, why)),
    }
}

/// Relays an upstream's event stream as it comes, reading the usage the
/// stream ends with; the call is recorded when the stream ends, breaks
/// off, or the client goes away.
fn relay_stream(
    state: AppState,
    call: Call,
    mut answer: reqwest::Response,
    started: Instant,
    content_type: Option<HeaderValue>,
) -> Response {
    let status = answer.status();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        let mut events = SseUsage::default();
        let result = loop {
            match answer.chunk().await {
                Ok(Some(chunk)) => {
                    events.feed(&chunk);
                    if tx.send(chunk).await.is_err() {
                        break "client_disconnected";
                    }
                }
                Ok(None) if events.usage.is_some() => break "ok",
                Ok(None) => break "no_usage",
                Err(e) if e.is_timeout() => break "timeout",
                Err(_) => break "upstream_disconnected",
            }
        };
        drop(tx);
        let usage = events.usage.unwrap_or_default();
        if let Err(e) = meter(
            &state,
            &call,
            &usage,
            Some(status),
            result,
            started.elapsed(),
        )
        .await
        {
            tracing::error!(error = %e.detail, customer = %call.customer, "a streamed model call could not be metered");
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (Ok::<_, std::io::Error>(c), rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or_else(|| HeaderValue::from_static("text/event-stream")),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Reads `data:` lines of a server-sent event stream for the last usage.
#[derive(Default)]
struct SseUsage {
    line: Vec<u8>,
    usage: Option<Usage>,
}

impl SseUsage {
    /// Lines longer than this are not usage events: they are skipped.
    const LINE_MAX: usize = 1024 * 1024;

    fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                let text = String::from_utf8_lossy(&line);
                if let Some(data) = text.strip_prefix("data:").map(str::trim) {
                    if let Some(usage) = serde_json::from_str::<Value>(data)
                        .ok()
                        .and_then(|v| usage_in(&v))
                    {
                        self.usage = Some(usage);
                    }
                }
            } else if self.line.len() < Self::LINE_MAX {
                self.line.push(b);
            }
        }
    }
}

/// One `llm.call` record of a gateway call, whatever became of it.
async fn meter(
    state: &AppState,
    call: &Call,
    usage: &Usage,
    status: Option<reqwest::StatusCode>,
    result: &str,
    latency: Duration,
) -> Result<(), ApiError> {
    state.metrics.model_call("gateway", result);
    state
        .metrics
        .model_call_seconds
        .observe(latency.as_secs_f64());
    let now = state.now();
    let record = OwnRecord::GatewayCall(GatewayCall {
        model: usage.model.clone().unwrap_or_else(|| call.model.clone()),
        requested_model: call.model.clone(),
        upstream: call.upstream.name.clone(),
        endpoint: call.endpoint.to_owned(),
        agent: call.agent.clone(),
        stream: call.stream,
        input_tokens: usage.input,
        input_includes_cached: true,
        cached_input_tokens: usage.cached_read,
        cache_creation_input_tokens: usage.cache_creation,
        reasoning_tokens: usage.reasoning,
        output_tokens: usage.output,
        latency_ms: latency.as_millis() as u64,
        status: status.map(|s| s.as_u16()),
        result: result.to_owned(),
        via: "gateway".into(),
        provider_cost: usage.cost.clone(),
        subject: call.subject.clone(),
        outcome: call.outcome.clone(),
    });
    let event = record.to_event(
        &format!(
            "gateway/{}/{}",
            call.agent,
            hex::encode(rand::random::<[u8; 12]>())
        ),
        call.subject.as_deref(),
        now,
    );
    crate::record_own(state, &call.customer, event)
        .await?
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("the model call could not be metered: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_in_every_shape_openai_compatible_upstreams_answer() {
        let chat = json!({"model": "gpt-4o-mini-2024", "usage": {"prompt_tokens": 120, "completion_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 7}, "cost": 0.0012}});
        let u = usage_in(&chat).unwrap();
        assert_eq!(
            (u.input, u.output, u.cached_read, u.reasoning),
            (120, 30, 100, 7)
        );
        assert_eq!(u.cost, Some(json!(0.0012)));
        assert_eq!(u.model.as_deref(), Some("gpt-4o-mini-2024"));
        let responses = json!({"type": "response.completed", "response": {"model": "o4", "usage": {"input_tokens": 50,
            "output_tokens": 9, "input_tokens_details": {"cached_tokens": 10}, "output_tokens_details": {"reasoning_tokens": 4}}}});
        let u = usage_in(&responses).unwrap();
        assert_eq!(
            (u.input, u.output, u.cached_read, u.reasoning),
            (50, 9, 10, 4)
        );
        let anthropic_style = json!({"usage": {"input_tokens": 5, "output_tokens": 2,
            "cache_read_input_tokens": 40, "cache_creation_input_tokens": 60}});
        let u = usage_in(&anthropic_style).unwrap();
        // Anthropic counts input without its caches: 5 + 40 read + 60 written.
        assert_eq!((u.input, u.cached_read, u.cache_creation), (105, 40, 60));
        // A chat answer that carries Anthropic's cache keys beside OpenAI's
        // names (as LiteLLM's proxy does) already counts them in its input.
        let proxied = json!({"usage": {"prompt_tokens": 105, "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 40}, "cache_read_input_tokens": 40, "cache_creation_input_tokens": 60}});
        let u = usage_in(&proxied).unwrap();
        assert_eq!((u.input, u.cached_read, u.cache_creation), (105, 40, 60));
        assert_eq!(usage_in(&json!({"choices": []})), None);
    }

    #[test]
    fn a_stream_split_anywhere_yields_its_last_usage() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
                      data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n\
                      data: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut sse = SseUsage::default();
            sse.feed(&stream.as_bytes()[..cut]);
            sse.feed(&stream.as_bytes()[cut..]);
            let u = sse.usage.expect("usage");
            assert_eq!((u.input, u.output), (3, 1), "cut at {cut}");
        }
    }

    #[test]
    fn upstream_settings_are_checked_naming_the_field() {
        let up = |name: &str, url: &str, models: &[&str]| Upstream {
            name: name.into(),
            base_url: url.into(),
            api_key_env: None,
            api_key: None,
            models: models.iter().map(|m| m.to_string()).collect(),
            timeout_ms: 1000,
        };
        let config = |u: Vec<Upstream>| GatewayConfig { upstreams: u };
        assert!(config(vec![up("a", "https://x/v1", &["m"])])
            .validate()
            .is_ok());
        for (bad, needle) in [
            (vec![up("", "https://x/v1", &["m"])], "upstream[0].name"),
            (vec![up("a", "ftp://x", &["m"])], "upstream[0].base_url"),
            (vec![up("a", "not a url", &["m"])], "upstream[0].base_url"),
            (vec![up("a", "https://x/v1", &[])], "upstream[0].models"),
            (
                vec![
                    up("a", "https://x/v1", &["m"]),
                    up("b", "https://y/v1", &["m"]),
                ],
                "already served by upstream \"a\"",
            ),
        ] {
            let e = config(bad).validate().unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
