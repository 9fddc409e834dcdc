//! The MCP gateway: Payoff fronts a customer's MCP servers (streamable
//! HTTP) at `/mcp/<server>`. An agent connects with its agent key and
//! sees only the tools the customer's action rules could let it call
//! (each tool is an action type on `Payoff::McpServer`, its arguments the
//! action's context); every `tools/call` is asked through the action
//! authorization of [`crate::actions`] (rules, approvals, kill switch,
//! budgets, audit, ledger) before it reaches the tool's server, and its
//! outcome is recorded as the action's result.
//!
//! Payoff answers the agent statelessly (no `Mcp-Session-Id`: any node
//! answers any request) and is itself a client of the upstream, keeping
//! the upstream's session per node and opening a new one when it is
//! gone. Tools only: resources, prompts, sampling and server-initiated
//! requests are not relayed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use payoff_policy::MCP_SERVER_TYPE;
use payoff_store::McpServer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::actions::{self, ActionRequest, ActionState, ActionView, ResourceRef, ResultRequest};
use crate::auth::{may, Allowed, Caller};
use crate::problem::{ApiError, ErrorCode};
use crate::routes::billing::scoped;
use crate::routes::Body;
use crate::{blocking_with, AppState};

/// The protocol versions Payoff speaks on both sides (streamable HTTP
/// exists since 2025-03-26); the newest is offered to upstreams.
const PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// How long an upstream may take to answer one request.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an upstream's answer read.
const UPSTREAM_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How long a call waits for a person's approval unless
/// `x-payoff-approval-wait` says (seconds): under the 30 s clients wait
/// for an answer by default.
const APPROVAL_WAIT_DEFAULT_S: u64 = 25;
const APPROVAL_WAIT_MAX_S: u64 = 55;
/// The `_meta` key naming the action a call resumes (one that waited for
/// approval) and the one the answer names.
const META_ACTION: &str = "payoff/action";

// JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const UPSTREAM_ERROR: i64 = -32603;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(endpoint))
        .routes(routes!(list_servers))
        .routes(routes!(register, unregister))
}

/// The upstream sessions this node holds, by customer, server and URL.
#[derive(Default)]
pub struct UpstreamSessions {
    open: Mutex<HashMap<(String, String, String), Session>>,
}

#[derive(Clone)]
struct Session {
    /// `None` when the upstream is stateless.
    id: Option<String>,
    protocol: String,
}

fn server_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The server's streamable HTTP endpoint, reached under the egress policy.
    url: String,
}

/// Registers one of the customer's MCP servers (or points the name at a
/// new URL); its agents reach it at `/mcp/<name>`.
#[utoipa::path(put, path = "/v1/customers/{customer}/mcp-servers/{name}", operation_id = "register_mcp_server",
    tag = "mcp", request_body = Registration, params(("customer" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = McpServer), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManagePolicies>,
    Path((customer, name)): Path<(String, String)>,
    Body(reg): Body<Registration>,
) -> Result<Json<McpServer>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    if !server_name_ok(&name) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "name: 1 to 64 lower-case letters, digits, _ . -",
        ));
    }
    let parsed = reqwest::Url::parse(&reg.url);
    let ok = reg.url.len() <= 2048
        && parsed
            .as_ref()
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !ok {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "url: must be an http or https URL of at most 2048 characters",
        ));
    }
    if let Err(refusal) = state
        .egress
        .check_url(parsed.as_ref().expect("checked above"))
    {
        return Err(ApiError::new(
            ErrorCode::UrlRefused,
            format!("url: {refusal}"),
        ));
    }
    let server = McpServer {
        customer,
        name,
        url: reg.url,
        added_by: caller.0.key_id.clone(),
        added_at: state.now(),
    };
    let stored = server.clone();
    blocking_with(move |s| Ok(s.put_mcp_server(&stored)?), &state).await?;
    Ok(Json(server))
}

/// A customer's MCP servers.
#[derive(Serialize, ToSchema)]
pub struct McpServerList {
    pub customer: String,
    pub servers: Vec<McpServer>,
}

/// The customer's MCP servers.
#[utoipa::path(get, path = "/v1/customers/{customer}/mcp-servers", operation_id = "list_mcp_servers",
    tag = "mcp", params(("customer" = String, Path)),
    responses((status = 200, body = McpServerList), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn list_servers(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ReadPolicies>,
    Path(customer): Path<String>,
) -> Result<Json<McpServerList>, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let c = customer.clone();
    let servers = blocking_with(move |s| Ok(s.mcp_servers(&c)?), &state).await?;
    Ok(Json(McpServerList { customer, servers }))
}

/// Removes one of the customer's MCP servers.
#[utoipa::path(delete, path = "/v1/customers/{customer}/mcp-servers/{name}", operation_id = "remove_mcp_server",
    tag = "mcp", params(("customer" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)), security(("bearer" = [])))]
pub async fn unregister(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::ManagePolicies>,
    Path((customer, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let customer = scoped(&caller, &customer)?;
    let n = name.clone();
    if blocking_with(move |s| Ok(s.delete_mcp_server(&customer, &n)?), &state).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no MCP server \"{name}\""),
        ))
    }
}

/// One JSON-RPC answer to the agent.
fn answer(id: &Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

fn rpc_error(id: &Value, code: i64, message: impl Into<String>) -> Response {
    let message = message.into();
    Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
        .into_response()
}

/// A tool's answer that tells the model the call did not happen, and why.
fn refusal(view: &ActionView, text: String) -> Value {
    json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
        "_meta": {META_ACTION: view.id, "payoff/state": view.state, "payoff/policy_ids": view.policy_ids},
    })
}

/// The streamable HTTP endpoint an agent's MCP client connects to.
#[utoipa::path(post, path = "/mcp/{server}", operation_id = "mcp_endpoint", tag = "mcp",
    params(("server" = String, Path)),
    request_body(content = Object, description = "one JSON-RPC message"),
    responses(
        (status = 200, description = "The JSON-RPC response to a request", body = Object, content_type = "application/json"),
        (status = 202, description = "A notification, or a response, taken: nothing to answer"),
        (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
pub async fn endpoint(
    State(state): State<AppState>,
    Allowed(caller, _): Allowed<may::AuthorizeActions>,
    Path(server): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let customer = caller.0.customer.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "the MCP gateway is called with a customer's agent key: provider keys name no customer",
        )
    })?;
    let agent =
        crate::gateway::header_text(&headers, "x-payoff-agent")?.unwrap_or_else(|| "mcp".into());
    crate::routes::agents::known_agent(&agent).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("x-payoff-agent: {}", e.detail),
        )
    })?;
    let subject = crate::gateway::header_text(&headers, "x-payoff-subject")?;
    let wait = match crate::gateway::header_text(&headers, "x-payoff-approval-wait")? {
        None => APPROVAL_WAIT_DEFAULT_S,
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= APPROVAL_WAIT_MAX_S)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("x-payoff-approval-wait: 0 to {APPROVAL_WAIT_MAX_S} seconds"),
                )
            })?,
    };
    let (c, s) = (customer.clone(), server.clone());
    let registered = blocking_with(move |st| Ok(st.mcp_server(&c, &s)?), &state)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no MCP server \"{server}\" is registered for this customer"),
            )
        })?;
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return Ok(rpc_error(
                &Value::Null,
                PARSE_ERROR,
                format!("not JSON: {e}"),
            ))
        }
    };
    let Some(method) = message["method"].as_str().map(str::to_owned) else {
        if message.is_object()
            && (message.get("result").is_some() || message.get("error").is_some())
        {
            // An answer to a request Payoff never sends: accepted, ignored.
            return Ok(StatusCode::ACCEPTED.into_response());
        }
        return Ok(rpc_error(
            &message["id"],
            INVALID_REQUEST,
            "one JSON-RPC request or notification per POST (batches are not part of the protocol)",
        ));
    };
    let Some(id) = message.get("id").cloned() else {
        // A notification (`notifications/initialized`, cancellations): nothing to answer.
        return Ok(StatusCode::ACCEPTED.into_response());
    };
    let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
    let call = ToolCall {
        state: &state,
        caller: &caller,
        customer: &customer,
        agent: &agent,
        subject,
        server: &registered,
        wait: Duration::from_secs(wait),
    };
    Ok(match method.as_str() {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or_default();
            let version = PROTOCOL_VERSIONS
                .into_iter()
                .find(|v| *v == asked)
                .unwrap_or(PROTOCOL_VERSIONS[0]);
            answer(
                &id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": format!("payoff/{server}"), "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Tools of this server are governed by Payoff: a call may be refused or wait for a person's approval.",
                }),
            )
        }
        "ping" => answer(&id, json!({})),
        "tools/list" => call.list(&id, params).await?,
        "tools/call" => call.call(&id, params).await?,
        other => rpc_error(
            &id,
            METHOD_NOT_FOUND,
            format!("\"{other}\": Payoff's MCP gateway relays tools only"),
        ),
    })
}

struct ToolCall<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    customer: &'a str,
    agent: &'a str,
    subject: Option<String>,
    server: &'a McpServer,
    wait: Duration,
}

impl ToolCall<'_> {
    /// The tool names the agent may be shown on this server: declared as
    /// action types on `Payoff::McpServer` and reachable by some rule.
    async fn visible(&self) -> Result<Vec<String>, ApiError> {
        let (c, policies) = (self.customer.to_owned(), self.state.action_policies.clone());
        let rules = match blocking_with(move |s| policies.for_customer(s, &c), self.state).await {
            Ok((_, rules)) => rules,
            Err(e) if e.code == ErrorCode::NoActionRules => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(rules
            .actions_on(MCP_SERVER_TYPE)
            .filter(|a| rules.reachable(self.agent, &a.name, MCP_SERVER_TYPE, &self.server.name))
            .map(|a| a.name.clone())
            .collect())
    }

    async fn list(&self, id: &Value, params: Value) -> Result<Response, ApiError> {
        let visible = self.visible().await?;
        let upstream = match relay(self.state, self.server, "tools/list", params).await {
            Ok(v) => v,
            Err(e) => return Ok(rpc_error(id, UPSTREAM_ERROR, e)),
        };
        if let Some(error) = upstream.get("error") {
            return Ok(Json(json!({"jsonrpc": "2.0", "id": id, "error": error})).into_response());
        }
        let mut result = upstream["result"].clone();
        if let Some(tools) = result["tools"].as_array_mut() {
            tools.retain(|t| {
                t["name"]
                    .as_str()
                    .is_some_and(|n| visible.iter().any(|v| v == n))
            });
        }
        Ok(answer(id, result))
    }

    async fn call(&self, id: &Value, mut params: Value) -> Result<Response, ApiError> {
        let Some(tool) = params["name"].as_str().map(str::to_owned) else {
            return Ok(rpc_error(
                id,
                INVALID_PARAMS,
                "params.name: the tool to call",
            ));
        };
        let arguments = params
            .get("arguments")
            .cloned()
            .unwrap_or_else(|| json!({}));
        // A tool the agent is not shown does not exist for it.
        if !self.visible().await?.contains(&tool) {
            return Ok(rpc_error(
                id,
                INVALID_PARAMS,
                format!("unknown tool: {tool}"),
            ));
        }
        let resumed = params["_meta"][META_ACTION].as_str().map(str::to_owned);
        let view = match resumed {
            Some(action) => match self.resume(&action, &tool, &arguments).await? {
                Ok(v) => v,
                Err(why) => return Ok(rpc_error(id, INVALID_PARAMS, why)),
            },
            None => {
                let (by, customer) = (self.caller.0.clone(), self.customer.to_owned());
                let asked = actions::request(
                    self.state,
                    ActionRequest {
                        customer: None,
                        agent: self.agent.to_owned(),
                        action: tool.clone(),
                        resource: ResourceRef {
                            kind: MCP_SERVER_TYPE.to_owned(),
                            id: self.server.name.clone(),
                            attributes: json!({}),
                        },
                        subject: self.subject.clone(),
                        context: arguments.clone(),
                        request_key: None,
                        approval_expires_in: None,
                    },
                    move |_, _| Ok((by, customer)),
                )
                .await;
                match asked {
                    Ok((_, v)) => v,
                    Err(e) if e.code == ErrorCode::InvalidRequest => {
                        return Ok(rpc_error(
                            id,
                            INVALID_PARAMS,
                            format!("arguments of {tool}: {}", e.detail),
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let view = if view.state == ActionState::PendingApproval {
            actions::wait(self.state, self.customer, &view.id, self.wait)
                .await?
                .unwrap_or(view)
        } else {
            view
        };
        match view.state {
            ActionState::Allowed | ActionState::Approved if view.result.is_none() => {}
            ActionState::Allowed | ActionState::Approved => {
                return Ok(answer(
                    id,
                    refusal(&view, format!("action {} was done already", view.id)),
                ))
            }
            ActionState::PendingApproval => {
                let text = format!(
                    "{tool} waits for a person's approval (action {}): call it again with _meta {{\"{META_ACTION}\": \"{}\"}} once approved",
                    view.id, view.id
                );
                return Ok(answer(id, refusal(&view, text)));
            }
            ActionState::Denied | ActionState::Rejected | ActionState::Expired => {
                let why = view
                    .approval
                    .as_ref()
                    .and_then(|a| a.reason.clone())
                    .unwrap_or_else(|| view.reason.clone());
                let text = format!(
                    "Payoff refused {tool} ({}): {why}",
                    actions::state_name(view.state)
                );
                return Ok(answer(id, refusal(&view, text)));
            }
        }
        // Payoff's own `_meta` key is not the tool's business.
        if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
            meta.remove(META_ACTION);
        }
        let relayed = relay(self.state, self.server, "tools/call", params).await;
        let (status, detail, reply) = match relayed {
            Err(e) => (
                "failed",
                json!({"error": e}),
                rpc_error(id, UPSTREAM_ERROR, e.clone()),
            ),
            Ok(upstream) => match upstream.get("error") {
                Some(error) => (
                    "failed",
                    json!({"error": error["message"]}),
                    Json(json!({"jsonrpc": "2.0", "id": id, "error": error})).into_response(),
                ),
                None => {
                    let mut result = upstream["result"].clone();
                    let is_error = result["isError"].as_bool().unwrap_or(false);
                    if result.is_object() {
                        if !result["_meta"].is_object() {
                            result["_meta"] = json!({});
                        }
                        result["_meta"][META_ACTION] = view.id.clone().into();
                    }
                    (
                        if is_error { "failed" } else { "succeeded" },
                        json!({"is_error": is_error}),
                        answer(id, result),
                    )
                }
            },
        };
        actions::complete(
            self.state,
            self.customer,
            &view.id,
            &self.caller.0,
            ResultRequest {
                customer: None,
                status: status.to_owned(),
                detail: Some(detail),
            },
        )
        .await?;
        Ok(reply)
    }

    /// The action a call that waited for approval resumes: the same
    /// agent, tool, server and arguments.
    async fn resume(
        &self,
        action: &str,
        tool: &str,
        arguments: &Value,
    ) -> Result<Result<ActionView, String>, ApiError> {
        let (c, a) = (self.customer.to_owned(), action.to_owned());
        let found = blocking_with(move |s| actions::find(s, &c, &a), self.state).await?;
        Ok(match found {
            Some(v)
                if v.agent == self.agent
                    && v.action == tool
                    && v.resource.kind == MCP_SERVER_TYPE
                    && v.resource.id == self.server.name
                    && v.context == *arguments =>
            {
                Ok(v)
            }
            _ => Err(format!(
                "_meta.{META_ACTION}: \"{action}\" is not a call of {tool} with these arguments by this agent"
            )),
        })
    }
}

/// Sends one request to the upstream and returns its JSON-RPC answer,
/// opening a session first when this node holds none (or the upstream
/// forgot it). `Err` says why there is no answer.
async fn relay(
    state: &AppState,
    server: &McpServer,
    method: &str,
    params: Value,
) -> Result<Value, String> {
    let key = (
        server.customer.clone(),
        server.name.clone(),
        server.url.clone(),
    );
    for attempt in 0..2 {
        let cached = state
            .mcp_sessions
            .open
            .lock()
            .expect("mcp sessions")
            .get(&key)
            .cloned();
        let session = match cached {
            Some(s) => s,
            None => {
                let s = open_session(state, &server.url).await?;
                state
                    .mcp_sessions
                    .open
                    .lock()
                    .expect("mcp sessions")
                    .insert(key.clone(), s.clone());
                s
            }
        };
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        match post_message(state, &server.url, Some(&session), &request).await {
            Ok((StatusCode::NOT_FOUND, _)) if attempt == 0 && session.id.is_some() => {
                // The upstream ended the session: open another once.
                state
                    .mcp_sessions
                    .open
                    .lock()
                    .expect("mcp sessions")
                    .remove(&key);
            }
            Ok((status, Some(reply))) if status.is_success() => return Ok(reply),
            Ok((status, _)) => return Err(format!("the MCP server answered HTTP {status}")),
            Err(e) => return Err(e),
        }
    }
    Err("the MCP server keeps forgetting its session".into())
}

async fn open_session(state: &AppState, url: &str) -> Result<Session, String> {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL_VERSIONS[0],
        "capabilities": {},
        "clientInfo": {"name": "payoff-mcp-gateway", "version": env!("CARGO_PKG_VERSION")},
    }});
    let response = send(state, url, None, &init).await?;
    let id = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status();
    let reply = read_reply(response, &json!(0)).await?;
    if !status.is_success() {
        return Err(format!(
            "the MCP server refused to initialize: HTTP {status}"
        ));
    }
    let reply = reply.ok_or("the MCP server did not answer initialize")?;
    if let Some(e) = reply.get("error") {
        return Err(format!(
            "the MCP server refused to initialize: {}",
            e["message"]
        ));
    }
    let protocol = reply["result"]["protocolVersion"]
        .as_str()
        .filter(|v| PROTOCOL_VERSIONS.contains(v))
        .ok_or("the MCP server speaks no protocol version Payoff knows")?
        .to_owned();
    let session = Session { id, protocol };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _) = post_message(state, url, Some(&session), &initialized).await?;
    if !status.is_success() {
        return Err(format!(
            "the MCP server refused notifications/initialized: HTTP {status}"
        ));
    }
    Ok(session)
}

async fn send(
    state: &AppState,
    url: &str,
    session: Option<&Session>,
    message: &Value,
) -> Result<reqwest::Response, String> {
    let mut request = state
        .http
        .post(url)
        .timeout(UPSTREAM_TIMEOUT)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(serde_json::to_vec(message).expect("JSON values serialise"));
    if let Some(s) = session {
        request = request.header(
            "mcp-protocol-version",
            HeaderValue::from_str(&s.protocol).map_err(|e| e.to_string())?,
        );
        if let Some(id) = &s.id {
            request = request.header("mcp-session-id", id);
        }
    }
    request.send().await.map_err(|e| {
        if e.is_timeout() {
            "the MCP server did not answer in time".to_owned()
        } else {
            format!("the MCP server could not be reached: {e}")
        }
    })
}

/// POSTs a message; the status and, for a request, the answer.
async fn post_message(
    state: &AppState,
    url: &str,
    session: Option<&Session>,
    message: &Value,
) -> Result<(StatusCode, Option<Value>), String> {
    let response = send(state, url, session, message).await?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match message.get("id") {
        Some(id) if status.is_success() => Ok((status, read_reply(response, id).await?)),
        _ => Ok((status, None)),
    }
}

/// The JSON-RPC answer with `id`, from a JSON body or an event stream
/// (read until that answer; other messages on the stream are skipped).
async fn read_reply(response: reqwest::Response, id: &Value) -> Result<Option<Value>, String> {
    let stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let mut response = response;
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the MCP server's answer broke off: {e}"))?
    {
        buffer.extend_from_slice(&chunk);
        if buffer.len() > UPSTREAM_BYTES_MAX {
            return Err(format!(
                "the MCP server's answer is over {UPSTREAM_BYTES_MAX} bytes"
            ));
        }
        if stream {
            if let Some(found) = answer_in_events(&buffer, id) {
                return Ok(Some(found));
            }
        }
    }
    if stream {
        return Ok(answer_in_events(&buffer, id));
    }
    if buffer.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&buffer)
        .map_err(|e| format!("the MCP server answered something that is not JSON: {e}"))?;
    Ok(Some(value))
}

/// The message answering `id` among the complete events of an SSE body.
fn answer_in_events(buffer: &[u8], id: &Value) -> Option<Value> {
    let text = String::from_utf8_lossy(buffer).replace("\r\n", "\n");
    let complete = text.rfind("\n\n").map_or("", |end| &text[..end]);
    complete.split("\n\n").find_map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let message: Value = serde_json::from_str(&data.join("\n")).ok()?;
        let answers = message.get("result").is_some() || message.get("error").is_some();
        (answers && message["id"] == *id).then_some(message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_found_among_other_events_and_split_lines() {
        let body = b"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\nid: 7\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\"result\":{\"ok\":true}}\n\n";
        let found = answer_in_events(body, &json!(1)).unwrap();
        assert_eq!(found["result"]["ok"], true);
        assert!(answer_in_events(body, &json!(2)).is_none());
        // An event not yet complete is not read.
        assert!(answer_in_events(
            b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n",
            &json!(1)
        )
        .is_none());
    }
}
