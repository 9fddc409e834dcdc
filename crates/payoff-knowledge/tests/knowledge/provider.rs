//! The OpenAI-compatible answer provider against a local chat-completions
//! server speaking the real wire format.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use payoff_knowledge::{
    answer_extractive, Hit, OpenAiConfig, OpenAiProvider, ProviderError, NO_ANSWER,
};
use serde_json::{json, Value};

/// What the server does for one request.
#[derive(Clone)]
enum Reply {
    Respond(u16, String),
    Hang,
}

/// Authorization header and JSON body of one request.
type Received = (Option<String>, Value);

#[derive(Clone, Default)]
struct Server {
    /// Replies in order; the last one repeats.
    script: Arc<Vec<Reply>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Server {
    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

async fn chat(
    State(server): State<Server>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut received = server.received.lock().unwrap();
        received.push((auth, json));
        received.len() - 1
    };
    let reply = server.script[index.min(server.script.len() - 1)].clone();
    match reply {
        Reply::Respond(status, body) => (StatusCode::from_u16(status).unwrap(), body),
        Reply::Hang => std::future::pending().await,
    }
}

/// Starts a server on 127.0.0.1:0 answering with `script`; returns its base URL.
async fn serve(script: Vec<Reply>) -> (String, Server) {
    let server = Server {
        script: Arc::new(script),
        received: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), server)
}

fn provider(base_url: &str, max_retries: u32) -> OpenAiProvider {
    OpenAiProvider::new(OpenAiConfig {
        base_url: base_url.into(),
        model: "gpt-test".into(),
        api_key: Some("sk-secret".into()),
        timeout: Duration::from_millis(200),
        max_retries,
        initial_backoff: Duration::from_millis(5),
    })
    .unwrap()
}

fn completion(content: &str) -> String {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test-2024",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 17,
            "total_tokens": 137,
            "prompt_tokens_details": {"cached_tokens": 64}
        }
    })
    .to_string()
}

fn ok(content: &str) -> Reply {
    Reply::Respond(200, completion(content))
}

fn hits() -> Vec<Hit> {
    vec![
        Hit {
            doc_id: "refunds".into(),
            title: "Refunds".into(),
            url: Some("https://help.example/refunds".into()),
            heading: "Timing".into(),
            snippet_html: String::new(),
            text: "Refunds are paid within five business days.".into(),
            score: 6.0,
        },
        Hit {
            doc_id: "cards".into(),
            title: "Cards".into(),
            url: None,
            heading: String::new(),
            snippet_html: String::new(),
            text: "Refunds go back to the original card.".into(),
            score: 4.0,
        },
    ]
}

const QUESTION: &str = "When are refunds paid back to my card?";

#[tokio::test]
async fn answers_with_citations_and_usage() {
    let (url, server) = serve(vec![ok(
        "Refunds are paid within five business days [1], to the original card [2].",
    )])
    .await;
    let (answer, usage) = provider(&url, 2).answer(&hits(), QUESTION).await.unwrap();

    assert!(!answer.no_answer);
    assert_eq!(
        answer.text,
        "Refunds are paid within five business days [1], to the original card [2]."
    );
    let cited: Vec<(usize, &str)> = answer
        .citations
        .iter()
        .map(|c| (c.n, c.doc_id.as_str()))
        .collect();
    assert_eq!(cited, [(1, "refunds"), (2, "cards")]);
    assert_eq!(
        answer.citations[0].url.as_deref(),
        Some("https://help.example/refunds")
    );
    assert_eq!(
        answer.confidence,
        answer_extractive(&hits(), QUESTION).confidence
    );
    assert!(answer.confidence > 0.0);

    assert_eq!(usage.model, "gpt-test-2024");
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens
        ),
        (120, 17, 64)
    );

    let received = server.received.lock().unwrap();
    assert_eq!(received.len(), 1);
    let (auth, body) = &received[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-secret"));
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["temperature"], 0);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    assert!(
        system.contains(NO_ANSWER) && system.contains("[1]"),
        "{system}"
    );
    assert_eq!(messages[1]["role"], "user");
    let user = messages[1]["content"].as_str().unwrap();
    assert!(
        user.contains("[1] Refunds (Timing)\nRefunds are paid within five business days."),
        "{user}"
    );
    assert!(
        user.contains("[2] Cards\nRefunds go back to the original card."),
        "{user}"
    );
    assert!(!user.contains("[3]"), "{user}");
    assert!(user.contains(QUESTION), "{user}");
}

#[tokio::test]
async fn no_api_key_sends_no_authorization() {
    let (url, server) = serve(vec![ok("Five business days [1].")]).await;
    let provider = OpenAiProvider::new(OpenAiConfig {
        base_url: url,
        model: "gpt-test".into(),
        api_key: None,
        timeout: Duration::from_millis(200),
        max_retries: 0,
        initial_backoff: Duration::ZERO,
    })
    .unwrap();
    let (answer, _) = provider.answer(&hits(), QUESTION).await.unwrap();
    assert!(!answer.no_answer);
    assert_eq!(server.received.lock().unwrap()[0].0, None);
}

#[tokio::test]
async fn no_answer_from_the_model() {
    let (url, _server) = serve(vec![ok("  NO_ANSWER\n")]).await;
    let (answer, usage) = provider(&url, 0).answer(&hits(), QUESTION).await.unwrap();
    assert!(answer.no_answer);
    assert_eq!(answer.text, "");
    assert!(answer.citations.is_empty());
    assert_eq!(answer.confidence, 0.0);
    assert_eq!(usage.input_tokens, 120);
}

#[tokio::test]
async fn invented_citation_is_dropped_and_gives_no_answer() {
    let (url, _server) = serve(vec![ok("Refunds take a week [7].")]).await;
    let (answer, _) = provider(&url, 0).answer(&hits(), QUESTION).await.unwrap();
    assert!(answer.no_answer, "{answer:?}");
    assert_eq!(answer.text, "");
    assert!(answer.citations.is_empty());
}

#[tokio::test]
async fn invented_citation_next_to_a_real_one_is_removed() {
    let (url, _server) = serve(vec![ok("Five business days [1] [7].")]).await;
    let (answer, _) = provider(&url, 0).answer(&hits(), QUESTION).await.unwrap();
    assert!(!answer.no_answer);
    assert_eq!(answer.text, "Five business days [1].");
    assert_eq!(answer.citations.len(), 1);
}

#[tokio::test]
async fn server_error_is_retried() {
    let (url, server) = serve(vec![
        Reply::Respond(500, "upstream exploded".into()),
        ok("Five business days [1]."),
    ])
    .await;
    let (answer, _) = provider(&url, 2).answer(&hits(), QUESTION).await.unwrap();
    assert!(!answer.no_answer);
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn rate_limit_is_retried_until_retries_run_out() {
    let (url, server) = serve(vec![Reply::Respond(429, "slow down".into())]).await;
    let err = provider(&url, 2)
        .answer(&hits(), QUESTION)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Status { status: 429, body } if body == "slow down"),
        "{err:?}"
    );
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn client_error_is_not_retried() {
    let long_body = format!("{{\"error\":\"bad request\"}}{}", "x".repeat(500));
    let (url, server) = serve(vec![Reply::Respond(400, long_body)]).await;
    let err = provider(&url, 3)
        .answer(&hits(), QUESTION)
        .await
        .unwrap_err();
    match &err {
        ProviderError::Status { status, body } => {
            assert_eq!(*status, 400);
            assert_eq!(body.chars().count(), 200);
            assert!(body.starts_with("{\"error\":\"bad request\"}"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("400"), "{err}");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn garbage_json_is_malformed() {
    let (url, server) = serve(vec![Reply::Respond(200, "{not json".into())]).await;
    let err = provider(&url, 3)
        .answer(&hits(), QUESTION)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");
    assert_eq!(server.count(), 1);
}

/// Issue 15: the model's answer was read whole, with no cap.
#[tokio::test]
async fn an_answer_beyond_the_cap_is_refused_not_held() {
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(5 * 1024 * 1024));
    let (url, _server) = serve(vec![Reply::Respond(200, huge)]).await;
    let err = provider(&url, 0)
        .answer(&hits(), QUESTION)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Malformed(m) if m.contains("longer than 4194304 bytes")),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_fields_are_named() {
    let no_content = json!({"choices": [{"message": {"role": "assistant"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
    let (url, _server) = serve(vec![Reply::Respond(200, no_content.to_string())]).await;
    let err = provider(&url, 0)
        .answer(&hits(), QUESTION)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("choices[0].message.content"),
        "{err}"
    );

    let no_usage = json!({"choices": [{"message": {"content": "Yes [1]."}}]});
    let (url, _server) = serve(vec![Reply::Respond(200, no_usage.to_string())]).await;
    let err = provider(&url, 0)
        .answer(&hits(), QUESTION)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("usage"), "{err}");
}

#[tokio::test]
async fn hanging_server_times_out_after_retries() {
    let (url, _server) = serve(vec![Reply::Hang]).await;
    let err = provider(&url, 1)
        .answer(&hits(), QUESTION)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Timeout { attempts: 2 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_a_connection_error() {
    // Bind then drop: the port is closed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = provider(&format!("http://{addr}/v1"), 1)
        .answer(&hits(), QUESTION)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Connection(_)), "{err:?}");
}

#[tokio::test]
async fn no_hits_sends_nothing() {
    let (url, server) = serve(vec![ok("Anything [1].")]).await;
    let (answer, usage) = provider(&url, 0).answer(&[], QUESTION).await.unwrap();
    assert!(answer.no_answer);
    assert_eq!(usage.input_tokens, 0);
    assert_eq!(server.count(), 0);
}
