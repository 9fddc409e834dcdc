//! Cost of service, budgets, prices and ROI through the real API, on
//! every backend. Expected figures are worked out in the comments.

use crate::common::{on_every_backend, TestServer};
use payoff_server::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const CONTRACT: &str = r#"
[contract]
customer = "acme"
currency = "USD"
starts = "2026-09-01"
base_fee = "100.00"
baseline_unit_cost = "6.00"
licence_equivalent = "1200.00"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed"'
price = { per_unit = "2.00" }
"#;

fn ev(id: &str, kind: &str, subject: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "agent", "type": kind, "subject": subject,
           "time": "2026-09-10T10:00:00Z", "data": data})
}

#[test]
fn costs_follow_subjects_to_outcomes_and_budgets_stop_spending() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        let operator = server.key("operator", None).await;
        let agent = server.key("agent", Some("acme")).await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        server.upload_contract(&operator, "acme", CONTRACT).await;

        // T1 and T2 resolved (2 outcomes); T3 not. gpt-4o at 2.50 input and
        // 10.00 output per million: 1M input = 2.50; 100k output = 1.00.
        let events = json!([
            ev("1", "ticket.closed", "T1", json!({})),
            ev("2", "ticket.closed", "T2", json!({})),
            ev(
                "3",
                "llm.call",
                "T1",
                json!({"model": "gpt-4o", "input_tokens": 1_000_000, "output_tokens": 0, "agent": "support"})
            ),
            ev(
                "4",
                "llm.call",
                "T2",
                json!({"model": "gpt-4o", "input_tokens": 0, "output_tokens": 100_000, "agent": "support"})
            ),
            ev(
                "5",
                "llm.call",
                "T3",
                json!({"model": "gpt-4o", "input_tokens": 1_000_000, "output_tokens": 0, "agent": "triage"})
            ),
            ev(
                "6",
                "cost.incurred",
                "T3",
                json!({"amount": "4.00", "category": "human_review"})
            ),
            ev(
                "7",
                "llm.call",
                "T3",
                json!({"model": "mystery-9", "input_tokens": 10})
            ),
            ev(
                "8",
                "llm.call",
                "T1",
                json!({"model": "gpt-4o", "input_tokens": -5})
            ),
        ]);
        let (s, v) = server
            .send(&agent, "application/cloudevents-batch+json", &events)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let (s, v) = server
            .json(
                Method::GET,
                "/v1/customers/acme/economics?period=2026-09",
                &cadmin,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "provider roles only: {v}");
        let (s, e) = server
            .json(
                Method::GET,
                "/v1/customers/acme/economics?period=2026-09",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {e}");
        // Revenue: 100.00 + 2 × 2.00 = 104.00. Cost: 2.50 + 1.00 + 2.50 + 4.00 = 10.00.
        assert_eq!(e["revenue_total"], "104.00");
        assert_eq!(e["cost"]["total"], "10.00");
        assert_eq!(e["cost"]["by_model"]["gpt-4o"], "6.00");
        assert_eq!(e["cost"]["by_category"]["human_review"], "4.00");
        assert_eq!(e["cost"]["by_agent"]["support"], "3.50");
        assert_eq!(e["cost"]["by_outcome"]["ticket_resolved"]["cost"], "3.50");
        assert_eq!(
            e["cost"]["by_outcome"]["ticket_resolved"]["per_outcome"],
            "1.75"
        );
        assert_eq!(e["cost"]["without_outcome"], "6.50");
        assert_eq!(e["gross_margin"], "94.00");
        let warnings = e["cost"]["warnings"].to_string();
        assert!(
            warnings.contains("mystery-9") && warnings.contains("input_tokens"),
            "{warnings}"
        );

        // ROI: 2 outcomes, 104.00 billed: 52.00 each; baseline 2 × 6.00 - 104.00
        // = -92.00; licence 1200 / 12 = 100.00, paid 4.00 more.
        let (s, r) = server
            .json(
                Method::GET,
                "/v1/customers/acme/roi?period=2026-09",
                &cadmin,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(
            (
                r["outcomes_delivered"].as_u64(),
                r["effective_price_per_outcome"].as_str()
            ),
            (Some(2), Some("52.00"))
        );
        assert_eq!(
            (
                r["implied_saving"].as_str(),
                r["licence_for_period"].as_str(),
                r["paid_versus_licence"].as_str()
            ),
            (Some("-92.00"), Some("100.00"), Some("4.00"))
        );
        let (s, _, csv) = server
            .call(
                Method::GET,
                "/v1/customers/acme/roi?period=2026-09&format=csv",
                Some(&cadmin),
                None,
                Vec::new(),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            csv.starts_with("customer,period,")
                && csv.contains(
                    "\nacme,2026-09,preview,USD,2,104.00,52.00,6.00,-92.00,100.00,4.00\n"
                ),
            "{csv}"
        );

        // Budgets: spending this month decides. Nothing spent yet this month.
        let (s, v) = server.json(Method::PUT, "/v1/customers/acme/budgets", &operator,
            json!({"customer": {"limit": "1.00", "warn_at": "0.50"}, "agents": {"support": {"limit": "0.10"}}})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = server
            .json(
                Method::PUT,
                "/v1/customers/acme/budgets",
                &operator,
                json!({"customer": {"limit": "-1"}}),
            )
            .await;
        assert_eq!(
            (
                s,
                v["detail"]
                    .as_str()
                    .map(|d| d.starts_with("customer.limit"))
            ),
            (StatusCode::BAD_REQUEST, Some(true)),
            "{v}"
        );
        let (s, c) = server
            .json(
                Method::GET,
                "/v1/budgets/check?agent=support",
                &agent,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{c}");
        assert_eq!(c["allow"], true, "{c}");
        let now = payoff_clock::wall().to_rfc3339();
        let spend = json!({"specversion": "1.0", "id": "now-1", "source": "agent", "type": "llm.call", "subject": "T9", "time": now,
            "data": {"model": "gpt-4o", "input_tokens": 100_000, "output_tokens": 0, "agent": "support"}});
        server
            .send(&agent, "application/cloudevents+json", &spend)
            .await;
        // 100k input tokens of gpt-4o = 0.25: over support's 0.10, under the customer's 1.00.
        let (_, c) = server
            .json(
                Method::GET,
                "/v1/budgets/check?agent=support",
                &agent,
                Value::Null,
            )
            .await;
        assert_eq!(
            (c["allow"].as_bool(), c["spent"].as_str()),
            (Some(false), Some("0.25")),
            "{c}"
        );
        assert!(
            c["reason"].as_str().unwrap().contains("agent support"),
            "{c}"
        );
        let (_, c) = server
            .json(
                Method::GET,
                "/v1/budgets/check?agent=triage",
                &agent,
                Value::Null,
            )
            .await;
        assert_eq!(c["allow"], true, "{c}");
        let (_, c) = server
            .json(
                Method::GET,
                "/v1/budgets/check?customer=acme",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(c["allow"], true, "{c}");
        let (s, _) = server
            .json(Method::GET, "/v1/budgets/check", &operator, Value::Null)
            .await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "a provider key names the customer"
        );
        let (s, _) = server
            .json(Method::GET, "/v1/budgets/check", &cadmin, Value::Null)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        // Prices: never in the past; never negative.
        let past = "effective = \"2020-01-01T00:00:00Z\"\n[[model]]\nmodel = \"x\"\ninput_per_million = \"1\"\noutput_per_million = \"1\"\n";
        let (s, v, _) = server
            .call(
                Method::POST,
                "/v1/prices",
                Some(&operator),
                Some("application/toml"),
                past.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("in the past"));
        let future = past.replace("2020", "2099");
        let (s, v, _) = server
            .call(
                Method::POST,
                "/v1/prices",
                Some(&operator),
                Some("application/toml"),
                future
                    .replace("\"1\"\noutput", "\"-1\"\noutput")
                    .into_bytes(),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, v, _) = server
            .call(
                Method::POST,
                "/v1/prices",
                Some(&operator),
                Some("application/toml"),
                future.into_bytes(),
            )
            .await;
        assert_eq!(
            (s, v["version"].as_u64()),
            (StatusCode::CREATED, Some(1)),
            "{v}"
        );
        // A version in force from October names its outcome otherwise:
        // September is costed under the version that governs it.
        let (s, v, _) = server
            .call(
                Method::POST,
                "/v1/customers/acme/contracts?effective=2026-10",
                Some(&operator),
                Some("application/toml"),
                CONTRACT
                    .replace("ticket_resolved", "ticket_solved")
                    .into_bytes(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (_, e2) = server
            .json(
                Method::GET,
                "/v1/customers/acme/economics?period=2026-09",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(
            e2["cost"]["total"], "10.00",
            "a future price table does not re-price September"
        );
        assert_eq!(
            e2["cost"]["by_outcome"]["ticket_resolved"]["outcomes"], 2,
            "{label}: {e2}"
        );

        // Closed, the period's outcomes come from what the close kept, not
        // from a projection: the same report.
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/customers/acme/periods/2026-09/close",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        let (_, closed) = server
            .json(
                Method::GET,
                "/v1/customers/acme/economics?period=2026-09",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(closed["statement"], "closed", "{closed}");
        assert_eq!(closed["cost"], e2["cost"], "{label}");
        assert_eq!(
            closed["cost"]["by_outcome"]["ticket_resolved"]["outcomes"],
            2
        );
    });
}

/// What the gateway's upstream does with a call, by the model asked for.
async fn fake_upstream(
    axum::extract::Json(body): axum::extract::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let usage = json!({"prompt_tokens": 9, "completion_tokens": 3});
    match body["model"].as_str().unwrap_or("") {
        // An upstream refusal, passed through as answered.
        "refusing" => (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "context too long", "type": "invalid_request_error"}})),
        )
            .into_response(),
        // Never answers within the upstream's timeout.
        "slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            axum::http::StatusCode::OK.into_response()
        }
        _ => axum::Json(json!({"id": "c1", "object": "chat.completion", "model": "ok-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": usage}))
        .into_response(),
    }
}

/// Issue 17: calls through the gateway are answered as the upstream
/// answered and recorded whatever became of them: an upstream refusal
/// (passed through, `upstream_error`), an upstream that does not answer in
/// time (504, `timeout`), one that cannot be reached (502,
/// `unreachable`), a stream that breaks off (`upstream_disconnected`);
/// a paused agent and a provider key are refused before any call.
#[test]
fn gateway_calls_are_passed_through_and_recorded_whatever_becomes_of_them() {
    on_every_backend(|db_url, label| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let app = axum::Router::new()
                .route("/v1/chat/completions", axum::routing::post(fake_upstream));
            axum::serve(listener, app).await.unwrap();
        });
        // An upstream whose stream breaks off after its first event: the
        // answer's head and one chunk are written, then the connection
        // is dropped.
        let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let breaking = raw.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = raw.accept().await {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let event = "data: {\"choices\":[{\"delta\":{\"content\":\"par\"}}]}\n\n";
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let answer = format!("{head}{:x}\r\n{event}\r\n", event.len());
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.flush().await;
            }
        });
        // A port nothing listens on.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let upstream = |name: &str, at: std::net::SocketAddr, models: &[&str], timeout_ms: u64| {
            payoff_server::gateway::Upstream {
                name: name.into(),
                base_url: format!("http://{at}/v1"),
                api_key_env: None,
                api_key: None,
                models: models.iter().map(|m| m.to_string()).collect(),
                timeout_ms,
            }
        };
        let config = ServerConfig {
            gateway: payoff_server::gateway::GatewayConfig {
                upstreams: vec![
                    upstream("local", up, &["ok-model", "refusing", "slow"], 500),
                    upstream("raw", breaking, &["breaking"], 2_000),
                    upstream("gone", dead, &["dead-model"], 2_000),
                ],
            },
            ..ServerConfig::default()
        };
        let server = TestServer::start(&db_url, config).await;
        server.customer("acme").await;
        let agent = server.key("agent", Some("acme")).await;
        let operator = server.key("operator", None).await;
        let chat = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        let path = "/gateway/v1/chat/completions";
        let (s, v) = server
            .json(Method::POST, path, &agent, chat("ok-model", false))
            .await;
        assert_eq!(
            (s, v["choices"][0]["message"]["content"].as_str()),
            (StatusCode::OK, Some("hi")),
            "{label}: {v}"
        );
        // The key is checked before the body is read, and the role before
        // the model: a stranger learns nothing; OpenAI's error shape too.
        for (key, status, code) in [
            ("pyk_unknown", StatusCode::UNAUTHORIZED, "invalid_api_key"),
            (
                operator.as_str(),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
        ] {
            let (s, v, _) = server
                .call(
                    Method::POST,
                    path,
                    Some(key),
                    Some("application/json"),
                    b"{\"model\": ".to_vec(),
                )
                .await;
            assert_eq!(
                (s, v["code"].as_str()),
                (status, Some(code)),
                "{label}: {v}"
            );
            assert_eq!(v["error"]["code"], code, "{label}: {v}");
        }
        // The upstream's own refusal, not a problem document of Payoff's.
        let refused = reqwest::Client::new()
            .post(format!("{}{path}", server.url))
            .bearer_auth(&agent)
            .json(&chat("refusing", false))
            .send()
            .await
            .unwrap();
        let s = refused.status();
        let v: Value = refused.json().await.unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{label}: {v}");
        assert_eq!(
            v["error"]["message"], "context too long",
            "passed through as answered: {v}"
        );
        let (s, v) = server
            .json(Method::POST, path, &agent, chat("slow", false))
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::GATEWAY_TIMEOUT, Some("upstream_timeout")),
            "{v}"
        );
        let (s, v) = server
            .json(Method::POST, path, &agent, chat("dead-model", false))
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_GATEWAY, Some("upstream_failed")),
            "{v}"
        );
        assert_eq!(
            v["error"]["code"], "upstream_failed",
            "OpenAI's error shape too: {v}"
        );
        // The client reads the stream until it breaks off.
        let response = reqwest::Client::new()
            .post(format!("{}{path}", server.url))
            .bearer_auth(&agent)
            .json(&chat("breaking", true))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let _ = response.bytes().await;
        for (body, status, code) in [
            (
                json!({"messages": []}),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                chat("no-such-model", false),
                StatusCode::NOT_FOUND,
                "unknown_model",
            ),
        ] {
            let (s, v) = server.json(Method::POST, path, &agent, body).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (status, Some(code)),
                "{label}: {v}"
            );
        }
        let (s, v) = server
            .json(Method::POST, path, &operator, chat("ok-model", false))
            .await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "a provider key names no customer: {v}"
        );
        let (s, _) = server
            .json(
                Method::POST,
                "/v1/agents/gateway/pause",
                &operator,
                json!({"customer": "acme"}),
            )
            .await;
        assert!(s.is_success(), "{label}: pause {s}");
        let (s, v) = server
            .json(Method::POST, path, &agent, chat("ok-model", false))
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("agent_paused")),
            "{v}"
        );

        // One record per call that went out, each saying what became of it.
        let wanted = [
            ("ok-model", "ok"),
            ("refusing", "upstream_error"),
            ("slow", "timeout"),
            ("dead-model", "unreachable"),
            ("breaking", "upstream_disconnected"),
        ];
        crate::common::eventually("every call recorded", || async {
            let (_, v) = server
                .json(
                    Method::GET,
                    "/v1/events?customer=acme&type=llm.call",
                    &operator,
                    Value::Null,
                )
                .await;
            v["events"]
                .as_array()
                .is_some_and(|e| e.len() == wanted.len())
        })
        .await;
        let (_, v) = server
            .json(
                Method::GET,
                "/v1/events?customer=acme&type=llm.call",
                &operator,
                Value::Null,
            )
            .await;
        let got: Vec<(String, String)> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let d = &e["event"]["data"];
                (
                    d["requested_model"].as_str().unwrap().to_owned(),
                    d["result"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = wanted
            .iter()
            .map(|(m, r)| (m.to_string(), r.to_string()))
            .collect();
        assert_eq!(got, want, "{label}");
        let first = &v["events"][0]["event"]["data"];
        assert_eq!(
            (
                first["input_tokens"].as_u64(),
                first["output_tokens"].as_u64()
            ),
            (Some(9), Some(3))
        );
        let (_, _, metrics) = server
            .call(Method::GET, "/metrics", None, None, Vec::new())
            .await;
        for (result, n) in [("ok", 1), ("timeout", 1), ("unreachable", 1)] {
            let line =
                format!("payoff_model_calls_total{{via=\"gateway\",result=\"{result}\"}} {n}");
            assert!(
                metrics.lines().any(|l| l == line),
                "{label}: {line} in {metrics}"
            );
        }
        assert_eq!(
            (first["upstream"].as_str(), first["agent"].as_str()),
            (Some("local"), Some("gateway"))
        );
    })
}

/// A GenAI chat span in OTLP's JSON encoding.
/// Issue 17, item 1: the customer's rules decide which models an agent
/// may call through the gateway, when its action schema declares the
/// gateway's question (`call_model`). A refused call never reaches the
/// upstream and costs nothing.
#[test]
fn the_customers_rules_decide_which_models_an_agent_may_call() {
    on_every_backend(|db_url, label| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let app = axum::Router::new()
                .route("/v1/chat/completions", axum::routing::post(fake_upstream));
            axum::serve(listener, app).await.unwrap();
        });
        let config = ServerConfig {
            gateway: payoff_server::gateway::GatewayConfig {
                upstreams: vec![payoff_server::gateway::Upstream {
                    name: "local".into(),
                    base_url: format!("http://{up}/v1"),
                    api_key_env: None,
                    api_key: None,
                    models: vec!["ok-model".into(), "big-model".into()],
                    timeout_ms: 2_000,
                }],
            },
            ..ServerConfig::default()
        };
        let server = TestServer::start(&db_url, config).await;
        server.customer("acme").await;
        let agent = server.key("agent", Some("acme")).await;
        let admin = server.key("customer_admin", Some("acme")).await;
        let call = |agent_name: &'static str, model: &'static str| {
            let (url, key) = (server.url.clone(), agent.clone());
            async move {
                let r = reqwest::Client::new()
                    .post(format!("{url}/gateway/v1/chat/completions"))
                    .bearer_auth(key)
                    .header("x-payoff-agent", agent_name)
                    .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.json::<Value>().await.unwrap())
            }
        };
        // No rules on models: the gateway asks nothing.
        assert_eq!(
            call("intern", "big-model").await.0,
            StatusCode::OK,
            "{label}"
        );
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/customers/acme/action-rules",
                &admin,
                json!({
                    "schema": "action \"call_model\" appliesTo { principal: [Payoff::Agent], resource: [Payoff::Model], context: { \"endpoint\": String, \"upstream\": String } };",
                    "rules": "@id(\"small\") permit(principal, action == Action::\"call_model\", resource == Payoff::Model::\"ok-model\");\n@id(\"no_intern\") forbid(principal == Payoff::Agent::\"intern\", action, resource);",
                }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        assert_eq!(
            call("lead-bot", "ok-model").await.0,
            StatusCode::OK,
            "{label}"
        );
        let (s, v) = call("lead-bot", "big-model").await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("model_not_allowed")),
            "{label}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("big-model"),
            "{label}: OpenAI's error shape too: {v}"
        );
        let (s, v) = call("intern", "ok-model").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{label}: {v}");
        assert!(
            v["detail"].as_str().unwrap().contains("acme.v1.no_intern"),
            "{label}: {v}"
        );
        let (_, events) = server
            .json(
                Method::GET,
                "/v1/events?customer=acme&type=llm.call",
                &admin,
                Value::Null,
            )
            .await;
        assert_eq!(
            events["events"].as_array().unwrap().len(),
            2,
            "{label}: refused calls are not made: {events}"
        );
    });
}

fn chat_span(span_id: &str, subject: &str, model: &str, input: u64, output: u64) -> Value {
    json!({
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": span_id,
        "name": format!("chat {model}"),
        "startTimeUnixNano": "1789034400000000000",
        "endTimeUnixNano": "1789034400800000000",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": model}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": input.to_string()}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": output}},
            {"key": "payoff.subject", "value": {"stringValue": subject}}
        ]
    })
}

fn export(resource: Value, spans: Vec<Value>) -> Value {
    json!({"resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]})
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn traces_from_opentelemetry_are_metered_like_any_model_call() {
    use prost::Message as _;
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        server.customer("globex").await;
        let operator = server.key("operator", None).await;
        let agent = server.key("agent", Some("acme")).await;
        let viewer = server.key("customer_viewer", Some("acme")).await;
        server.upload_contract(&operator, "acme", CONTRACT).await;
        let (s, v) = server
            .send(
                &agent,
                "application/cloudevents-batch+json",
                &json!([
                    ev("c1", "ticket.closed", "T1", json!({})),
                    ev("c2", "ticket.closed", "T2", json!({}))
                ]),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let service = json!([{"key": "service.name", "value": {"stringValue": "refund-agent"}}]);
        let traces = |key: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>| {
            let mut request = server
                .http
                .post(format!("{}/v1/traces", server.url))
                .bearer_auth(key)
                .header("content-type", content_type)
                .body(body);
            if let Some(e) = encoding {
                request = request.header("content-encoding", e);
            }
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let media = response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                (status, media, response.bytes().await.unwrap().to_vec())
            }
        };

        // JSON: T1's call, 1M input tokens of gpt-4o = 2.50 (2026-09-10T10:00:00.8Z);
        // an HTTP span beside it is skipped.
        let http_span = json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00000000000000aa",
            "name": "GET /", "attributes": [{"key": "http.request.method", "value": {"stringValue": "GET"}}]});
        let body = export(
            service.clone(),
            vec![
                chat_span("00000000000000a1", "T1", "gpt-4o", 1_000_000, 0),
                http_span,
            ],
        );
        let (s, media, reply) = traces(
            &agent,
            "application/json",
            None,
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            (s, media.as_str()),
            (StatusCode::OK, "application/json"),
            "{label}: {}",
            String::from_utf8_lossy(&reply)
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&reply).unwrap(),
            json!({}),
            "full success"
        );
        let head = server.head("acme").await;
        // Sent again (an exporter's retry): stored once.
        let (s, _, _) = traces(
            &agent,
            "application/json",
            None,
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!((s, server.head("acme").await), (StatusCode::OK, head));

        // Protobuf, gzipped: T2's call, 100k output tokens = 1.00.
        let request: payoff_ledger::otlp::ExportTraceServiceRequest =
            serde_json::from_value(export(
                service.clone(),
                vec![chat_span("00000000000000a2", "T2", "gpt-4o", 0, 100_000)],
            ))
            .unwrap();
        let (s, media, reply) = traces(
            &agent,
            "application/x-protobuf",
            Some("gzip"),
            gzip(&request.encode_to_vec()),
        )
        .await;
        assert_eq!(
            (s, media.as_str()),
            (StatusCode::OK, "application/x-protobuf")
        );
        assert!(
            reply.is_empty(),
            "full success is an empty message: {reply:?}"
        );

        // An unpriced model is stored and flagged; a span without ids is refused.
        let no_ids = json!({"name": "chat", "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}]});
        let body = export(
            service.clone(),
            vec![
                no_ids,
                chat_span("00000000000000a3", "T1", "mystery-9", 10, 1),
            ],
        );
        let (s, _, reply) = traces(
            &agent,
            "application/json",
            None,
            body.to_string().into_bytes(),
        )
        .await;
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(
            (s, &reply["partialSuccess"]["rejectedSpans"]),
            (StatusCode::OK, &json!("1")),
            "{reply}"
        );
        let faults = server
            .reply_faults("POST", "/v1/traces", StatusCode::OK, &reply)
            .await;
        assert!(
            faults.is_empty(),
            "{label}: as the OpenAPI document says: {faults:#?}"
        );
        let message = reply["partialSuccess"]["errorMessage"].as_str().unwrap();
        assert!(
            message.contains("span 0: span \"chat\": traceId must be 16 bytes"),
            "{message}"
        );
        assert!(
            message.contains("span 1: unpriced_model") && message.contains("mystery-9"),
            "{message}"
        );

        // What landed: the events, priced into the period's economics.
        let (s, v) = server
            .json(
                Method::GET,
                "/v1/events?customer=acme&type=llm.call",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let calls = v["events"].as_array().unwrap();
        assert_eq!(calls.len(), 3, "{v}");
        let first = &calls[0]["event"];
        assert_eq!(
            (
                &first["id"],
                &first["source"],
                &first["subject"],
                &first["time"]
            ),
            (
                &json!("5b8efff798038103d269b633813fc60c-00000000000000a1"),
                &json!("otlp/refund-agent"),
                &json!("T1"),
                &json!("2026-09-10T10:00:00.800Z")
            )
        );
        assert_eq!(
            (&first["data"]["via"], &first["data"]["latency_ms"]),
            (&json!("otlp"), &json!(800))
        );
        let (s, e) = server
            .json(
                Method::GET,
                "/v1/customers/acme/economics?period=2026-09",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {e}");
        assert_eq!(e["cost"]["by_model"]["gpt-4o"], "3.50", "{e}");
        assert_eq!(e["cost"]["by_agent"]["refund-agent"], "3.50", "{e}");
        assert_eq!(
            e["cost"]["by_outcome"]["ticket_resolved"]["per_outcome"], "1.75",
            "{e}"
        );

        // Whose spans: a provider key names the customer on the resource; a
        // customer's key may not name another.
        let body = export(
            service.clone(),
            vec![chat_span("00000000000000b1", "T9", "gpt-4o", 1, 1)],
        );
        let (s, _, reply) = traces(
            &operator,
            "application/json",
            None,
            body.to_string().into_bytes(),
        )
        .await;
        let problem: Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(s, StatusCode::BAD_REQUEST, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with("resource attribute payoff.customer: is required"),
            "{problem}"
        );
        let globex = json!([{"key": "service.name", "value": {"stringValue": "x"}},
                            {"key": "payoff.customer", "value": {"stringValue": "globex"}}]);
        let body = export(
            globex.clone(),
            vec![chat_span("00000000000000b2", "T9", "gpt-4o", 1, 1)],
        );
        let (s, _, _) = traces(
            &operator,
            "application/json",
            None,
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(server.head("globex").await, 1);
        let (s, _, reply) = traces(
            &agent,
            "application/json",
            None,
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "{}",
            String::from_utf8_lossy(&reply)
        );
        let (s, _, _) = traces(
            &viewer,
            "application/json",
            None,
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "a viewer does not send");
        assert_eq!(
            server.head("globex").await,
            1,
            "nothing of a refused request is stored"
        );

        // Bad input: each a problem naming what is wrong, nothing stored.
        let head = server.head("acme").await;
        for (content_type, encoding, body, status, needle) in [
            (
                "text/plain",
                None,
                b"x".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "application/x-protobuf or application/json",
            ),
            (
                "application/json",
                None,
                b"{\"resourceSpans\": 7}".to_vec(),
                StatusCode::BAD_REQUEST,
                "body: not an OTLP JSON export request",
            ),
            (
                "application/x-protobuf",
                None,
                b"\x0a\xff\xff".to_vec(),
                StatusCode::BAD_REQUEST,
                "body: not an OTLP protobuf export request",
            ),
            (
                "application/json",
                Some("gzip"),
                b"not gzip".to_vec(),
                StatusCode::BAD_REQUEST,
                "body: not valid gzip",
            ),
            (
                "application/json",
                Some("br"),
                b"{}".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Encoding \"br\"",
            ),
            (
                "application/json",
                None,
                format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
                StatusCode::BAD_REQUEST,
                "nested more than",
            ),
        ] {
            let (s, media, reply) = traces(&agent, content_type, encoding, body).await;
            let problem: Value = serde_json::from_slice(&reply).unwrap();
            assert_eq!(
                (s, media.as_str()),
                (status, "application/problem+json"),
                "{problem}"
            );
            assert!(
                problem["detail"].as_str().unwrap().contains(needle),
                "{problem}"
            );
        }
        // A gzip bomb is refused at the body limit, not inflated into memory.
        let small = TestServer::start(
            &db_url,
            ServerConfig {
                body_bytes_max: 64 * 1024,
                ..ServerConfig::default()
            },
        )
        .await;
        let small_agent = small.key("agent", Some("acme")).await;
        let bomb = gzip(&vec![b' '; 8 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        let response = small
            .http
            .post(format!("{}/v1/traces", small.url))
            .bearer_auth(&small_agent)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(bomb)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(server.head("acme").await, head);

        let metrics = server
            .http
            .get(format!("{}/metrics", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // The HTTP span was sent twice; the retried call counts as recorded.
        for line in [
            "payoff_otlp_spans_total{result=\"recorded\"} 5",
            "payoff_otlp_spans_total{result=\"skipped\"} 2",
            "payoff_otlp_spans_total{result=\"rejected\"} 1",
        ] {
            assert!(metrics.contains(line), "{line}\n{metrics}");
        }

        // Cache writes and reasoning at prices of their own, through the
        // cost index, on a node whose clock stands at the start of 2098
        // (prices take effect from now on). A table in force from then
        // prices claude-x per million: input 3, output 15, cache read 0.30,
        // cache write 3.75, reasoning 20.
        let clock = payoff_clock::Clock::manual("2098-01-01T00:00:00Z".parse().unwrap());
        let later = TestServer::start_with(&db_url, ServerConfig::default(), {
            let clock = clock.clone();
            |s| s.with_clock(clock)
        })
        .await;
        let table = "effective = \"2098-01-01T00:00:00Z\"\n[[model]]\nmodel = \"claude-x\"\n\
            input_per_million = \"3\"\noutput_per_million = \"15\"\ncached_input_per_million = \"0.30\"\n\
            cache_write_per_million = \"3.75\"\nreasoning_per_million = \"20\"\n";
        let (s, v, _) = later
            .call(
                Method::POST,
                "/v1/prices",
                Some(&operator),
                Some("application/toml"),
                table.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        // A span (input counts both caches, output counts reasoning): input
        // 10,000 holding 4,000 read and 2,000 written, output 1,000 holding
        // 600 of reasoning. Per million: uncached 4,000 × 3 = 12,000; read
        // 4,000 × 0.30 = 1,200; written 2,000 × 3.75 = 7,500; answer
        // 400 × 15 = 6,000; reasoning 600 × 20 = 12,000. Sum 38,700: 0.0387.
        let mut span = chat_span("00000000000000c1", "T5", "claude-x", 10_000, 1_000);
        span["startTimeUnixNano"] = json!("4040150400000000000"); // 2098-01-10T00:00:00Z
        span["endTimeUnixNano"] = json!("4040150401000000000");
        let attributes = span["attributes"].as_array_mut().unwrap();
        for (key, n) in [
            ("gen_ai.usage.cache_read.input_tokens", 4_000),
            ("gen_ai.usage.cache_creation.input_tokens", 2_000),
            ("gen_ai.usage.reasoning.output_tokens", 600),
        ] {
            attributes.push(json!({"key": key, "value": {"intValue": n}}));
        }
        let reply = later
            .http
            .post(format!("{}/v1/traces", later.url))
            .bearer_auth(&agent)
            .header("content-type", "application/json")
            .body(export(service.clone(), vec![span]).to_string())
            .send()
            .await
            .unwrap();
        let (s, reply) = (reply.status(), reply.text().await.unwrap());
        assert_eq!(s, StatusCode::OK, "{label}: {reply}");
        // The same call as an event counted Anthropic's way: input 4,000
        // holding neither cache (4,000 + 4,000 + 2,000 = 10,000): 0.0387.
        let (s, v) = later
            .send(
                &agent,
                "application/cloudevents+json",
                &json!({"specversion": "1.0", "id": "anthropic-1", "source": "agent",
                    "type": "llm.call", "subject": "T5", "time": "2098-01-10T00:00:00Z",
                    "data": {"model": "claude-x", "agent": "refund-agent", "input_tokens": 4_000,
                        "input_includes_cached": false, "cached_input_tokens": 4_000,
                        "cache_creation_input_tokens": 2_000, "output_tokens": 1_000,
                        "reasoning_tokens": 600}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        // February: January can be read.
        clock.set("2098-02-01T00:00:00Z".parse().unwrap());
        let (s, e) = later
            .json(
                Method::GET,
                "/v1/customers/acme/economics?period=2098-01",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {e}");
        // Two calls of 0.0387: 0.0774, all of it the agent's, none tied to
        // an outcome.
        assert_eq!(
            (
                &e["cost"]["by_model"]["claude-x"],
                &e["cost"]["by_agent"]["refund-agent"],
                &e["cost"]["without_outcome"],
                &e["cost"]["warnings"],
            ),
            (
                &json!("0.0774"),
                &json!("0.0774"),
                &json!("0.0774"),
                &json!([])
            ),
            "{label}: {e}"
        );
    });
}
