//! Outgoing webhooks through the real API, on every backend: signed in the
//! Standard Webhooks format (checked here by an implementation of the
//! scheme written from its specification, HMAC included), retried with
//! backoff, given up after the last attempt, and not lost across a restart.
//! The outbox is ticked by the tests (`Background::Manual`), under a manual
//! clock where retries matter; only `a_new_subscription_is_served_at_once…`
//! tests the running loop (what wakes it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{eventually, on_every_backend, TestServer};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use payoff_clock::Clock;
use payoff_server::webhooks::{OutboxPass, WebhookSettings};
use payoff_server::{Background, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// HMAC-SHA256 as RFC 2104 defines it, on SHA-256 alone.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The receiver's check, per the Standard Webhooks specification: the
/// signed content is `id.timestamp.body`, the key is the base64 after
/// `whsec_`, the header lists space-separated `v1,<base64>` signatures,
/// and a timestamp more than five minutes away is refused.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(format!("no {name}"))
    };
    let (id, timestamp, signatures) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    let ts: i64 = timestamp.parse().map_err(|_| "bad timestamp".to_string())?;
    if (payoff_clock::wall().timestamp() - ts).abs() > 300 {
        return Err("timestamp too far from now".into());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.strip_prefix("whsec_").ok_or("secret prefix")?)
        .map_err(|e| e.to_string())?;
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let expected = b64.encode(hmac_sha256(&key, &signed));
    signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
        .then_some(())
        .ok_or_else(|| "no valid signature".into())
}

#[test]
fn hmac_matches_the_rfc_4231_test_vector() {
    // RFC 4231, test case 2.
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[derive(Clone, Default)]
struct Receiver {
    /// Answer 503 to this many requests first.
    fail_first: Arc<Mutex<usize>>,
    /// `(headers, body)` of every request that got a 2xx.
    received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    requests: Arc<Mutex<usize>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxStatus {
    *r.requests.lock().unwrap() += 1;
    let mut fail = r.fail_first.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        return AxStatus::SERVICE_UNAVAILABLE;
    }
    r.received.lock().unwrap().push((headers, body));
    AxStatus::NO_CONTENT
}

async fn start_receiver(listener: tokio::net::TcpListener, r: Receiver) -> String {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(receive))
        .route(
            "/broken",
            post(|| async { AxStatus::INTERNAL_SERVER_ERROR }),
        )
        .with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Subscribes `key`'s customer to `event_types` at `url`; the subscription
/// as created (its id and secret).
async fn subscribe(
    server: &TestServer,
    key: &str,
    url: impl Into<String>,
    event_types: &[&str],
) -> Value {
    let url: String = url.into();
    let (s, created) = server
        .json(
            Method::POST,
            "/v1/webhooks",
            key,
            json!({"url": url, "event_types": event_types}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{url}: {created}");
    created
}

fn fast() -> ServerConfig {
    ServerConfig {
        webhooks: WebhookSettings {
            backoff: vec![Duration::from_millis(50); 3],
            timeout: Duration::from_secs(2),
            poll: Duration::from_millis(50),
        },
        egress: loopback_allowed(),
        ..ServerConfig::default()
    }
}

/// A server whose outbox (and quality watcher) moves only when the test
/// ticks it, on the system clock.
async fn start_manual(db_url: &str, config: ServerConfig) -> TestServer {
    let config = ServerConfig {
        background: Background::Manual,
        ..config
    };
    TestServer::start(db_url, config).await
}

/// [`start_manual`] on a manual clock the test sets: a retry falls due
/// when the test moves the clock past its backoff.
async fn start_on_manual_clock(db_url: &str, config: ServerConfig) -> (TestServer, Clock) {
    let clock = Clock::manual("2026-11-05T10:00:00Z".parse().unwrap());
    let config = ServerConfig {
        background: Background::Manual,
        ..config
    };
    let server = TestServer::start_with(db_url, config, {
        let clock = clock.clone();
        |s| s.with_clock(clock)
    })
    .await;
    (server, clock)
}

/// One whole pass of the outbox.
async fn tick(server: &TestServer) -> OutboxPass {
    payoff_server::webhooks::tick(&server.state).await.unwrap()
}

/// Moves a manual clock on by `by`.
fn advance(clock: &Clock, by: Duration) {
    clock.set(clock.now() + chrono::Duration::from_std(by).unwrap());
}

/// The receivers of these tests listen on loopback, which tenants may
/// reach only when the operator allows it.
fn loopback_allowed() -> payoff_egress::Egress {
    payoff_egress::Egress {
        policy: payoff_egress::EgressPolicy::allowing(["127.0.0.0/8"]).unwrap(),
        ..Default::default()
    }
}

fn ev(id: &str, kind: &str, subject: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "helpdesk", "type": kind, "subject": subject,
           "time": "2026-11-05T10:00:00Z", "data": {"n": id}})
}

async fn deliveries(server: &TestServer, key: &str, id: &str) -> Vec<Value> {
    let (s, v) = server
        .json(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries"),
            key,
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["deliveries"].as_array().unwrap().clone()
}

#[test]
fn deliveries_are_signed_retried_and_given_up_on() {
    on_every_backend(|db_url, label| async move {
        let receiver = Receiver::default();
        *receiver.fail_first.lock().unwrap() = 2;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = start_receiver(listener, receiver.clone()).await;
        let (server, clock) = start_on_manual_clock(&db_url, fast()).await;
        let backoff = fast().webhooks.backoff[0];
        server.customer("acme").await;
        server.customer("globex").await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let viewer = server.key("customer_viewer", Some("acme")).await;
        let outsider = server.key("customer_admin", Some("globex")).await;
        let agent = server.key("agent", Some("acme")).await;

        // Bad subscriptions name the field; viewers may not subscribe.
        for (body, field) in [
            (
                json!({"url": "ftp://x.test/h", "event_types": ["ticket.*"]}),
                "url:",
            ),
            (
                json!({"url": "not a url", "event_types": ["ticket.*"]}),
                "url:",
            ),
            (
                json!({"url": format!("{hook}/hook"), "event_types": []}),
                "event_types:",
            ),
            (
                json!({"url": format!("{hook}/hook"), "event_types": ["ticket.*x"]}),
                "event_types:",
            ),
            (
                json!({"url": format!("{hook}/hook"), "event_types": ["a b"]}),
                "event_types:",
            ),
        ] {
            let (s, v) = server
                .json(Method::POST, "/v1/webhooks", &cadmin, body)
                .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
            assert!(v["detail"].as_str().unwrap().starts_with(field), "{v}");
        }
        let sub = json!({"url": format!("{hook}/hook"), "event_types": ["ticket.*"]});
        let (s, _) = server
            .json(Method::POST, "/v1/webhooks", &viewer, sub.clone())
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        let (s, created) = server
            .json(Method::POST, "/v1/webhooks", &cadmin, sub)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {created}");
        let secret = created["secret"].as_str().unwrap().to_owned();
        let id = created["id"].as_str().unwrap().to_owned();
        let broken = json!({"url": format!("{hook}/broken"), "event_types": ["lead.created"]});
        let (_, broken) = server
            .json(Method::POST, "/v1/webhooks", &cadmin, broken)
            .await;
        let broken_id = broken["id"].as_str().unwrap().to_owned();

        let batch = json!([
            ev("1", "ticket.created", "T1"),
            ev("2", "lead.created", "L1"),
            ev("3", "ticket.closed", "T1"),
        ]);
        let (s, v) = server
            .send(&agent, "application/cloudevents-batch+json", &batch)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        // The ticket events are refused (503) and the lead's endpoint fails
        // (500): all three wait for their backoff; then the ticket events go.
        let retrying = |attempted, retrying| OutboxPass {
            attempted,
            retrying,
            ..OutboxPass::default()
        };
        assert_eq!(
            tick(&server).await,
            OutboxPass {
                enqueued: 3,
                ..retrying(3, 3)
            },
            "{label}"
        );
        advance(&clock, backoff);
        assert_eq!(
            tick(&server).await,
            OutboxPass {
                delivered: 2,
                ..retrying(3, 1)
            },
            "{label}"
        );
        assert_eq!(receiver.received.lock().unwrap().len(), 2);
        let received = receiver.received.lock().unwrap().clone();
        let (_, listed) = server
            .json(
                Method::GET,
                "/v1/events?customer=acme",
                &cadmin,
                Value::Null,
            )
            .await;
        let stored: Vec<Value> = listed["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].clone())
            .collect();
        let mut ids = Vec::new();
        for (headers, body) in &received {
            verify(&secret, headers, body).unwrap_or_else(|e| panic!("{label}: {e}"));
            let event: Value = serde_json::from_slice(body).unwrap();
            assert!(
                stored.contains(&event),
                "the body is the stored event: {event}"
            );
            assert!(event["type"].as_str().unwrap().starts_with("ticket."));
            ids.push(headers["webhook-id"].to_str().unwrap().to_owned());
            // Another secret does not verify.
            assert!(verify("whsec_b3RoZXI=", headers, body).is_err());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids.len(),
            2,
            "one webhook-id per event, the same on retries"
        );

        // The log: two deliveries, both delivered, four attempts in all.
        let log = deliveries(&server, &cadmin, &id).await;
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(log.iter().all(|d| d["status"] == "delivered"), "{log:?}");
        let attempts: u64 = log.iter().map(|d| d["attempts"].as_u64().unwrap()).sum();
        assert_eq!(attempts, 4, "two 503s, then two successes: {log:?}");
        assert_eq!(*receiver.requests.lock().unwrap(), 4);

        // An endpoint that always fails is given up after 1 + 3 retries.
        advance(&clock, backoff);
        assert_eq!(tick(&server).await, retrying(1, 1), "{label}");
        advance(&clock, backoff);
        assert_eq!(
            tick(&server).await,
            OutboxPass {
                failed: 1,
                ..retrying(1, 0)
            },
            "{label}"
        );
        let d = &deliveries(&server, &cadmin, &broken_id).await[0];
        assert_eq!(
            (
                d["status"].as_str(),
                d["attempts"].as_u64(),
                d["last_status"].as_u64()
            ),
            (Some("failed"), Some(4), Some(500))
        );

        // Other customers see none of it; lists never show secrets.
        let (s, _) = server
            .json(
                Method::GET,
                &format!("/v1/webhooks/{id}/deliveries"),
                &outsider,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = server
            .json(
                Method::DELETE,
                &format!("/v1/webhooks/{id}"),
                &outsider,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (_, v) = server
            .json(Method::GET, "/v1/webhooks", &outsider, Value::Null)
            .await;
        assert!(v["webhooks"].as_array().unwrap().is_empty(), "{v}");
        let (_, v, text) = server
            .call(Method::GET, "/v1/webhooks", Some(&cadmin), None, vec![])
            .await;
        assert_eq!(v["webhooks"].as_array().unwrap().len(), 2);
        assert!(!text.contains(&secret));

        // Deleted: nothing new is delivered. A witness subscribed to the
        // same events shows when the outbox has passed over the new one.
        let witness = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let witness_url = start_receiver(listener, witness.clone()).await;
        let _ = subscribe(
            &server,
            &cadmin,
            format!("{witness_url}/hook"),
            &["ticket.closed"],
        )
        .await;
        let (s, _) = server
            .json(
                Method::DELETE,
                &format!("/v1/webhooks/{id}"),
                &cadmin,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = server
            .send(
                &agent,
                "application/cloudevents-batch+json",
                &json!([ev("4", "ticket.closed", "T2")]),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            tick(&server).await,
            OutboxPass {
                enqueued: 1,
                attempted: 1,
                delivered: 1,
                ..OutboxPass::default()
            },
            "{label}: the witness's delivery only"
        );
        assert_eq!(witness.received.lock().unwrap().len(), 1);
        assert_eq!(deliveries(&server, &cadmin, &id).await.len(), 2);
        assert_eq!(receiver.received.lock().unwrap().len(), 2);
    })
}

#[test]
fn pending_deliveries_survive_a_restart() {
    on_every_backend(|db_url, label| async move {
        // The receiver's port is known before it listens.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut config = fast();
        config.webhooks.backoff = vec![Duration::from_millis(200); 50];
        let (server, clock) = start_on_manual_clock(&db_url, config.clone()).await;
        server.customer("acme").await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let agent = server.key("agent", Some("acme")).await;
        let created = subscribe(&server, &cadmin, format!("http://{addr}/hook"), &["*"]).await;
        let (secret, id) = (
            created["secret"].as_str().unwrap().to_owned(),
            created["id"].as_str().unwrap().to_owned(),
        );
        // Issue 15: webhook secrets were stored in clear. Sealed at rest,
        // they still sign after a restart (the data directory's key).
        let url = db_url.clone();
        let stored = tokio::task::spawn_blocking(move || {
            payoff_store::scratch::query_texts(&url, "SELECT secret FROM webhook_subscriptions")
        })
        .await
        .unwrap();
        assert_eq!(stored.len(), 1, "{label}");
        assert!(
            stored[0].starts_with("enc1:") && !stored[0].contains(&secret[6..]),
            "{label}: stored in clear: {}",
            stored[0]
        );
        let (s, _) = server
            .send(
                &agent,
                "application/cloudevents-batch+json",
                &json!([ev("1", "ticket.created", "T1")]),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(tick(&server).await.retrying, 1, "{label}: a failed attempt");
        let log = deliveries(&server, &cadmin, &id).await;
        assert_eq!(log.len(), 1, "{label}: {log:?}");
        assert_eq!(log[0]["attempts"], 1, "{label}: {log:?}");
        assert_eq!(log[0]["status"], "pending", "{label}: {log:?}");
        assert_eq!(log[0]["last_error"], "connection failed");
        drop(server);
        // A subscription made before secrets were sealed, as such a
        // database holds it: sealed at the next start, and still signing.
        let url = db_url.clone();
        let clear = secret.clone();
        tokio::task::spawn_blocking(move || {
            payoff_store::scratch::execute_sql(
                &url,
                &format!("UPDATE webhook_subscriptions SET secret = '{clear}'"),
            )
        })
        .await
        .unwrap();

        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        start_receiver(listener, receiver.clone()).await;
        // The same data directory and the same (simulated) time.
        let server = TestServer::start_with(
            &db_url,
            ServerConfig {
                background: Background::Manual,
                ..config
            },
            |s| s.with_clock(clock.clone()),
        )
        .await;
        advance(&clock, Duration::from_millis(200));
        assert_eq!(tick(&server).await.delivered, 1, "{label}");
        assert_eq!(receiver.received.lock().unwrap().len(), 1);
        let (headers, body) = receiver.received.lock().unwrap()[0].clone();
        verify(&secret, &headers, &body).unwrap();
        assert_eq!(
            deliveries(&server, &cadmin, &id).await[0]["status"],
            "delivered"
        );
        let url = db_url.clone();
        let stored = tokio::task::spawn_blocking(move || {
            payoff_store::scratch::query_texts(&url, "SELECT secret FROM webhook_subscriptions")
        })
        .await
        .unwrap();
        assert!(
            stored[0].starts_with("enc1:") && !stored[0].contains(&secret[6..]),
            "{label}: still in clear after a start: {}",
            stored[0]
        );
    })
}

#[test]
fn a_budget_crossing_reaches_its_subscriber_signed() {
    on_every_backend(|db_url, label| async move {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = start_receiver(listener, receiver.clone()).await;
        let server = start_manual(&db_url, fast()).await;
        server.customer("acme").await;
        let operator = server.key("operator", None).await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let agent = server.key("agent", Some("acme")).await;
        let created = subscribe(
            &server,
            &cadmin,
            format!("{hook}/hook"),
            &["payoff.budget.*"],
        )
        .await;
        let secret = created["secret"].as_str().unwrap().to_owned();
        let (s, v) = server
            .json(
                Method::PUT,
                "/v1/customers/acme/budgets",
                &operator,
                json!({"customer": {"limit": "1.00", "warn_at": "0.20"}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // 100k input tokens of gpt-4o cost 0.25: past the warning, under the limit.
        let spend = json!({"specversion": "1.0", "id": "c-1", "source": "agent", "type": "llm.call",
            "subject": "T9", "time": payoff_clock::wall().to_rfc3339(),
            "data": {"model": "gpt-4o", "input_tokens": 100_000, "agent": "support"}});
        let (s, v) = server
            .send(&agent, "application/cloudevents+json", &spend)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, c) = server
            .json(
                Method::GET,
                "/v1/budgets/check?agent=support",
                &agent,
                Value::Null,
            )
            .await;
        assert_eq!(
            (s, c["allow"].as_bool(), c["warning"].as_bool()),
            (StatusCode::OK, Some(true), Some(true)),
            "{c}"
        );
        assert_eq!(tick(&server).await.delivered, 1, "{label}: the warning");
        assert_eq!(receiver.received.lock().unwrap().len(), 1);
        let (headers, body) = receiver.received.lock().unwrap()[0].clone();
        verify(&secret, &headers, &body).unwrap();
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["type"], "payoff.budget.warning", "{label}: {event}");
        assert_eq!(event["source"], "payoff", "{event}");
    });
}

/// An outbox with no subscription sleeps through appends (it would only
/// take the store's write lock from ingest); a subscription created on
/// the node wakes it, and from then on each append does. With a poll of
/// an hour, the delivery can only come from those two wakes.
#[test]
fn a_new_subscription_is_served_at_once_though_the_outbox_slept_through_appends() {
    on_every_backend(|db_url, label| async move {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = start_receiver(listener, receiver.clone()).await;
        let mut config = fast();
        config.webhooks.poll = Duration::from_secs(3600);
        let server = TestServer::start(&db_url, config).await;
        server.customer("acme").await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let agent = server.key("agent", Some("acme")).await;
        let (s, _) = server
            .json(
                Method::POST,
                "/v1/events",
                &agent,
                ev("before", "ticket.opened", "t-0"),
            )
            .await;
        assert!(s.is_success(), "{label}: {s}");
        subscribe(&server, &cadmin, format!("{hook}/hook"), &["ticket.*"]).await;
        let (s, _) = server
            .json(
                Method::POST,
                "/v1/events",
                &agent,
                ev("after", "ticket.opened", "t-1"),
            )
            .await;
        assert!(s.is_success(), "{label}: {s}");
        eventually("the event after the subscription delivered", || async {
            !receiver.received.lock().unwrap().is_empty()
        })
        .await;
        let (_, body) = receiver.received.lock().unwrap()[0].clone();
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            event["id"], "after",
            "{label}: a subscription starts at the head: {event}"
        );
    });
}

/// Issue 17, item 4: an agent waiting for a person's approval of an
/// action may take the decision as a signed webhook instead of a long
/// poll (`payoff.action.decided`).
#[test]
fn an_actions_approval_reaches_its_subscriber_signed() {
    on_every_backend(|db_url, label| async move {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = start_receiver(listener, receiver.clone()).await;
        let server = start_manual(&db_url, fast()).await;
        server.customer("acme").await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let agent = server.key("agent", Some("acme")).await;
        let created = subscribe(
            &server,
            &cadmin,
            format!("{hook}/hook"),
            &["payoff.action.decided"],
        )
        .await;
        let secret = created["secret"].as_str().unwrap().to_owned();
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/customers/acme/action-rules",
                &cadmin,
                json!({
                    "schema": include_str!("../../../../examples/actions/schema.cedarschema"),
                    "rules": include_str!("../../../../examples/actions/rules.cedar"),
                }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, asked) = server
            .json(
                Method::POST,
                "/v1/actions",
                &agent,
                json!({"agent": "refunds", "action": "issue_refund", "subject": "order/o-7",
                    "resource": {"type": "Order", "id": "o-7", "attributes": {"country": "DE", "closed": false}},
                    "context": {"amount": "75.00", "currency": "EUR"}}),
            )
            .await;
        assert_eq!(
            (s, asked["state"].as_str()),
            (StatusCode::CREATED, Some("pending_approval")),
            "{asked}"
        );
        let id = asked["id"].as_str().unwrap();
        let (s, v) = server
            .json(
                Method::POST,
                &format!("/v1/approvals/{id}/approve"),
                &cadmin,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(tick(&server).await.delivered, 1, "{label}: the decision");
        assert_eq!(receiver.received.lock().unwrap().len(), 1);
        let (headers, body) = receiver.received.lock().unwrap()[0].clone();
        verify(&secret, &headers, &body).unwrap();
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["type"], "payoff.action.decided", "{label}: {event}");
        assert_eq!(event["subject"], "order/o-7", "{event}");
        assert_eq!(
            (
                event["data"]["action"].as_str(),
                event["data"]["decision"].as_str()
            ),
            (Some(id), Some("approved")),
            "{event}"
        );
    });
}

/// Issue 17, item 6: a quality measure that leaves the band the provider
/// configured reaches subscribers as a signed webhook, once per agent,
/// measure and week.
#[test]
fn a_drifting_agent_reaches_its_subscriber_signed() {
    on_every_backend(|db_url, label| async move {
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = start_receiver(listener, receiver.clone()).await;
        let config = ServerConfig {
            quality: payoff_server::watch::QualitySettings {
                band: vec![
                    payoff_server::watch::Band {
                        measure: payoff_server::watch::Measure::ErrorRate,
                        agent: "*".into(),
                        min: None,
                        max: Some(0.2),
                        min_samples: 4,
                        level: None,
                    },
                    payoff_server::watch::Band {
                        measure: payoff_server::watch::Measure::ServiceLevel,
                        agent: "*".into(),
                        min: Some(0.9),
                        max: None,
                        min_samples: 3,
                        level: Some("ai_closes".into()),
                    },
                    payoff_server::watch::Band {
                        measure: payoff_server::watch::Measure::VoidRate,
                        agent: "lead-bot".into(),
                        min: None,
                        max: Some(0.3),
                        min_samples: 2,
                        level: None,
                    },
                ],
                every_seconds: 0.05,
            },
            ..fast()
        };
        let server = start_manual(&db_url, config).await;
        server.customer("acme").await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let agent = server.key("agent", Some("acme")).await;
        let operator = server.key("operator", None).await;
        server
            .upload_contract(
                &operator,
                "acme",
                &format!(
                    "{}{}",
                    include_str!("../../../../examples/acme.toml"),
                    r#"
[[service_level]]
name = "ai_closes"
numerator = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
denominator = 'event.type == "ticket.closed"'
at_least = "0.5"
credit = "10%"
"#
                ),
            )
            .await;
        let created = subscribe(
            &server,
            &cadmin,
            format!("{hook}/hook"),
            &["payoff.quality.*"],
        )
        .await;
        let secret = created["secret"].as_str().unwrap().to_owned();
        // The bot works on tickets L-0 and L-1 by turns.
        let call = |i: usize, result: &str| {
            json!({"specversion": "1.0", "id": format!("call-{i}"), "source": "bot",
            "type": "llm.call", "subject": format!("L-{}", i % 2), "time": payoff_clock::wall().to_rfc3339(),
            "data": {"model": "gpt-4o", "input_tokens": 10, "agent": "lead-bot", "result": result}})
        };
        let ticket = |id: &str, kind: &str, subject: &str, by: &str| {
            json!({"specversion": "1.0", "id": id, "source": "helpdesk", "type": kind,
            "subject": subject, "time": payoff_clock::wall().to_rfc3339(), "data": {"resolved_by": by}})
        };
        // Both of its tickets resolved (two outcomes), one of them reopened
        // (voided): a void rate of 0.5 against a band of at most 0.3. Of
        // the three closes of its tickets, two by the AI: 0.6667 of the
        // `ai_closes` level, against a band of at least 0.9.
        let tickets = json!([
            ticket("c-0", "ticket.closed", "L-0", "ai"),
            ticket("c-1", "ticket.closed", "L-1", "ai"),
            ticket("r-0", "ticket.reopened", "L-0", "customer"),
            ticket("h-1", "ticket.closed", "L-1", "human"),
            // Another ticket, no agent's: not counted for the bot.
            ticket("c-9", "ticket.closed", "L-9", "ai"),
        ]);
        let (s, v) = server
            .send(&agent, "application/cloudevents-batch+json", &tickets)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // Three calls, one failed: too few samples to say anything yet.
        let few = json!([call(0, "ok"), call(1, "ok"), call(2, "timeout")]);
        let (s, v) = server
            .send(&agent, "application/cloudevents-batch+json", &few)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, v) = server
            .send(
                &agent,
                "application/cloudevents+json",
                &call(3, "upstream_error"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let watch = || payoff_server::watch::tick(&server.state);
        assert_eq!(watch().await.unwrap(), 3, "{label}: three drifts recorded");
        assert_eq!(tick(&server).await.delivered, 3, "{label}");
        assert_eq!(receiver.received.lock().unwrap().len(), 3);
        let mut measures = Vec::new();
        for (headers, body) in receiver.received.lock().unwrap().clone() {
            verify(&secret, &headers, &body).unwrap();
            let event: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(event["type"], "payoff.quality.drift", "{label}: {event}");
            assert_eq!(event["subject"], "agent/lead-bot");
            let d = &event["data"];
            measures.push((
                d["measure"].as_str().unwrap().to_owned(),
                d["level"].as_str().map(str::to_owned),
                d["value"].as_str().unwrap().to_owned(),
                d["hits"].as_u64().unwrap(),
                d["samples"].as_u64().unwrap(),
            ));
        }
        measures.sort();
        assert_eq!(
            measures,
            [
                ("error_rate".to_owned(), None, "0.5000".to_owned(), 2, 4),
                (
                    "service_level".to_owned(),
                    Some("ai_closes".to_owned()),
                    "0.6667".to_owned(),
                    2,
                    3
                ),
                ("void_rate".to_owned(), None, "0.5000".to_owned(), 1, 2),
            ],
            "{label}"
        );
        // More failures the same week: the week's record stands alone.
        let (s, _) = server
            .send(&agent, "application/cloudevents+json", &call(4, "timeout"))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(watch().await.unwrap(), 0, "{label}: nothing new recorded");
        let (_, v) = server
            .json(
                Method::GET,
                "/v1/events?type=payoff.quality.drift",
                &cadmin,
                Value::Null,
            )
            .await;
        assert_eq!(v["events"].as_array().unwrap().len(), 3, "{label}: {v}");
        // The same figures as data, for the provider's tools.
        let (s, v) = server
            .json(
                Method::GET,
                "/v1/customers/acme/agents?days=1",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let bot = &v["agents"].as_array().unwrap()[0];
        assert_eq!(bot["agent"], "lead-bot", "{v}");
        assert_eq!(
            (
                bot["model_calls"].as_u64(),
                bot["errors"].as_u64(),
                &bot["outcomes"],
                &bot["service_levels"]["ai_closes"]
            ),
            (
                Some(5),
                Some(3),
                &json!({"created": 2, "voided": 1}),
                &json!({"numerator": 2, "denominator": 3})
            ),
            "{label}: {v}"
        );
        // gpt-4o's list input price, 2.50 per million: 5 calls of 10 tokens.
        assert_eq!(bot["cost"], "0.000125", "{v}");
        assert_eq!(v["drifts"].as_array().unwrap().len(), 3, "{v}");
        let (s, _) = server
            .json(
                Method::GET,
                "/v1/customers/acme/agents?days=0",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    });
}

/// Names resolved from a table: a test decides what a host name "is",
/// and no name ever reaches a real resolver.
struct Table(Vec<(&'static str, Vec<std::net::IpAddr>)>);

impl payoff_egress::Lookup for Table {
    fn lookup(&self, host: &str) -> payoff_egress::Lookups {
        let found = self
            .0
            .iter()
            .find(|(name, _)| *name == host)
            .map(|(_, ips)| ips.clone())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "not in the table"));
        Box::pin(async move { found })
    }
}

/// Accepts connections on loopback, counts them, and never answers.
async fn silent_listener() -> (std::net::SocketAddr, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            held.push(socket);
        }
    });
    (addr, accepted)
}

#[test]
fn the_egress_policy_refuses_addresses_before_any_connection() {
    use payoff_egress::{EgressPolicy, PolicyResolver, Refusal};
    let url = |u: &str| reqwest::Url::parse(u).unwrap();
    let strict = EgressPolicy::default();
    for (u, why) in [
        ("https://127.0.0.1/h", Refusal::Address("loopback")),
        // Decimal, hex and octal forms of 127.0.0.1.
        ("https://2130706433/h", Refusal::Address("loopback")),
        ("https://0x7f.0.0.1/h", Refusal::Address("loopback")),
        ("https://0177.0.0.1/h", Refusal::Address("loopback")),
        ("https://[::1]/h", Refusal::Address("loopback")),
        ("https://[::ffff:127.0.0.1]/h", Refusal::Address("loopback")),
        ("https://[::ffff:10.1.2.3]/h", Refusal::Address("private")),
        ("https://10.0.0.1/h", Refusal::Address("private")),
        ("https://192.168.1.1/h", Refusal::Address("private")),
        ("https://169.254.169.254/h", Refusal::Address("link-local")),
        ("https://[fe80::1]/h", Refusal::Address("link-local")),
        ("https://[fd00::1]/h", Refusal::Address("private")),
        ("https://224.0.0.1/h", Refusal::Address("multicast")),
        ("https://0.0.0.0/h", Refusal::Address("unspecified")),
        (
            "https://100.64.0.1/h",
            Refusal::Address("carrier-grade NAT"),
        ),
        ("http://hooks.example.com/h", Refusal::NotHttps),
        ("https://user:pw@hooks.example.com/h", Refusal::Userinfo),
    ] {
        assert_eq!(strict.check_url(&url(u)), Err(why), "{u}");
    }
    assert_eq!(
        strict.check_url(&url("https://hooks.example.com/h")),
        Ok(())
    );
    assert_eq!(strict.check_url(&url("https://93.184.215.14/h")), Ok(()));

    // The operator's allow list opens loopback (over http too), but never
    // the server's own address.
    let allowed = EgressPolicy::allowing(["127.0.0.0/8", "sink.internal"])
        .unwrap()
        .listening_on("127.0.0.1:8080".parse().unwrap());
    assert_eq!(allowed.check_url(&url("http://127.0.0.2:9000/h")), Ok(()));
    assert_eq!(allowed.check_url(&url("http://sink.internal/h")), Ok(()));
    assert_eq!(
        allowed.check_url(&url("http://127.0.0.1:8080/h")),
        Err(Refusal::OwnAddress)
    );
    assert_eq!(
        allowed.check_url(&url("https://10.0.0.1/h")),
        Err(Refusal::Address("private"))
    );
    assert!(EgressPolicy::allowing_list("10.0.0.0/8, bad entry").is_err());

    // Names are checked as they resolve: the resolver is a table, so
    // nothing leaves the process.
    let table = Arc::new(Table(vec![
        ("rebound.test", vec!["10.0.0.1".parse().unwrap()]),
        (
            "mixed.test",
            vec!["10.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
        ),
    ]));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let strict = PolicyResolver::new(Arc::new(EgressPolicy::default()), table.clone());
        let e = strict.addresses("rebound.test").await.unwrap_err();
        assert!(
            matches!(
                e,
                payoff_egress::ResolveError::Refused(Refusal::Address("private"))
            ),
            "{e}"
        );
        let loopback = PolicyResolver::new(
            Arc::new(EgressPolicy::allowing(["127.0.0.0/8"]).unwrap()),
            table,
        );
        let addrs = loopback.addresses("mixed.test").await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.2:0".parse().unwrap()]);
    });
}

#[test]
fn a_tenant_webhook_to_loopback_is_refused_unless_the_operator_allows_it() {
    on_every_backend(|db_url, label| async move {
        let (addr, accepted) = silent_listener().await;
        let mut config = fast();
        config.egress = payoff_egress::Egress {
            lookup: Arc::new(Table(vec![(
                "sink.test",
                vec!["127.0.0.1".parse().unwrap()],
            )])),
            ..Default::default()
        };
        let server = start_manual(&db_url, config).await;
        server.customer("acme").await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let agent = server.key("agent", Some("acme")).await;
        let port = addr.port();
        for url in [
            format!("http://127.0.0.1:{port}/hook"),
            format!("https://127.0.0.1:{port}/hook"),
            format!("https://2130706433:{port}/hook"),
            format!("https://[::ffff:127.0.0.1]:{port}/hook"),
            format!("https://u:p@sink.test:{port}/hook"),
            format!("http://sink.test:{port}/hook"),
        ] {
            let (s, v) = server
                .json(
                    Method::POST,
                    "/v1/webhooks",
                    &cadmin,
                    json!({"url": url, "event_types": ["*"]}),
                )
                .await;
            assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{label} {url}: {v}");
            assert_eq!(v["code"], "url_refused", "{v}");
            assert!(v["detail"].as_str().unwrap().starts_with("url: "), "{v}");
        }
        // A name is accepted at registration; where it leads is checked
        // when it resolves, before any connection.
        let created = subscribe(
            &server,
            &cadmin,
            format!("https://sink.test:{port}/hook"),
            &["*"],
        )
        .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let (s, _) = server
            .send(
                &agent,
                "application/cloudevents-batch+json",
                &json!([ev("1", "ticket.created", "T1")]),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            tick(&server).await.retrying,
            1,
            "{label}: an attempt refused"
        );
        let log = deliveries(&server, &cadmin, &id).await;
        assert_eq!(
            (log.len(), log[0]["attempts"].as_u64()),
            (1, Some(1)),
            "{log:?}"
        );
        assert_eq!(log[0]["last_error"], "refused by egress policy", "{log:?}");
        assert_eq!(log[0]["last_status"], Value::Null);
        assert_eq!(*accepted.lock().unwrap(), 0, "never connected");
    })
}

/// A CA and a certificate for 127.0.0.1 it signed, made by the openssl
/// command: `(ca.pem, server cert chain, server key)` in `dir`.
fn make_certificates(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=payoff test CA",
            ],
            &[
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        std::fs::read(dir.join("server.pem")).unwrap(),
        std::fs::read(dir.join("server.key")).unwrap(),
    )
}

/// An https receiver on loopback: answers 204 to each request and keeps
/// `(headers, body)`.
async fn start_tls_receiver(cert: &[u8], key: &[u8], r: Receiver) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, r) = (acceptor.clone(), r.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_len, length) = loop {
                    let n = tls.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_len + length {
                    let n = tls.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_len]).to_string();
                let mut headers = HeaderMap::new();
                for line in head.lines().skip(1) {
                    if let Some((k, v)) = line.split_once(':') {
                        if let (Ok(k), Ok(v)) = (
                            axum::http::HeaderName::from_bytes(k.trim().as_bytes()),
                            axum::http::HeaderValue::from_str(v.trim()),
                        ) {
                            headers.insert(k, v);
                        }
                    }
                }
                let body = Bytes::copy_from_slice(&buf[head_len..head_len + length]);
                *r.requests.lock().unwrap() += 1;
                r.received.lock().unwrap().push((headers, body));
                let _ = tls
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[test]
fn an_https_webhook_reaches_a_receiver_whose_ca_is_in_the_operator_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(dir.path());
    on_every_backend(|db_url, label| {
        let (ca, cert, key) = (ca.clone(), cert.clone(), key.clone());
        async move {
            let receiver = Receiver::default();
            let addr = start_tls_receiver(&cert, &key, receiver.clone()).await;
            let mut config = fast();
            // What SSL_CERT_FILE names in production, given here without
            // touching the process's environment.
            config.egress.trust = payoff_egress::Trust::load(Some(&ca)).unwrap();
            let server = start_manual(&db_url, config).await;
            server.customer("acme").await;
            let cadmin = server.key("customer_admin", Some("acme")).await;
            let agent = server.key("agent", Some("acme")).await;
            let created = subscribe(&server, &cadmin, format!("https://{addr}/hook"), &["*"]).await;
            let (secret, id) = (
                created["secret"].as_str().unwrap().to_owned(),
                created["id"].as_str().unwrap().to_owned(),
            );
            let (s, _) = server
                .send(
                    &agent,
                    "application/cloudevents-batch+json",
                    &json!([ev("1", "ticket.created", "T1")]),
                )
                .await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(tick(&server).await.delivered, 1, "{label}");
            assert_eq!(
                deliveries(&server, &cadmin, &id).await[0]["status"],
                "delivered"
            );
            let (headers, body) = receiver.received.lock().unwrap()[0].clone();
            verify(&secret, &headers, &body).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(
                deliveries(&server, &cadmin, &id).await[0]["last_status"],
                204
            );
        }
    });
}

/// An outbox ticked by hand, as the running loop ticks it: acme's batch
/// goes to a receiver that never answers (and may take an hour), and
/// globex's, claimed at the next tick, is delivered while acme's is still
/// in flight.
#[test]
fn a_hanging_receiver_delays_only_its_own_tenant() {
    on_every_backend(|db_url, label| async move {
        let (hang, _) = silent_listener().await;
        let receiver = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = start_receiver(listener, receiver.clone()).await;
        let mut config = fast();
        config.webhooks.timeout = Duration::from_secs(3600);
        let server = start_manual(&db_url, config).await;
        for c in ["acme", "globex"] {
            server.customer(c).await;
        }
        let mut agents = Vec::new();
        for (c, url) in [
            ("acme", format!("http://{hang}/hook")),
            ("globex", format!("{hook}/hook")),
        ] {
            let admin = server.key("customer_admin", Some(c)).await;
            subscribe(&server, &admin, url, &["*"]).await;
            agents.push(server.key("agent", Some(c)).await);
        }
        // More than the old global claim of 50, all due before globex's.
        let backlog: Vec<Value> = (0..60)
            .map(|i| ev(&format!("a{i}"), "ticket.created", "T1"))
            .collect();
        let (s, _) = server
            .send(
                &agents[0],
                "application/cloudevents-batch+json",
                &json!(backlog),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let mut outbox = payoff_server::webhooks::Outbox::default();
        let pass = outbox.tick(&server.state).await.unwrap();
        assert_eq!(
            (pass.enqueued, pass.attempted),
            (60, 60),
            "{label}: acme's backlog in flight"
        );
        let (s, _) = server
            .send(
                &agents[1],
                "application/cloudevents-batch+json",
                &json!([ev("g1", "ticket.created", "T1")]),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let pass = outbox.tick(&server.state).await.unwrap();
        assert_eq!(
            (pass.enqueued, pass.attempted),
            (1, 1),
            "{label}: globex claimed beside acme's batch"
        );
        // The first batch to finish is globex's: acme's still hangs.
        assert_eq!(
            outbox.next_done().await,
            Some(OutboxPass {
                delivered: 1,
                ..OutboxPass::default()
            }),
            "{label}"
        );
        assert_eq!(receiver.received.lock().unwrap().len(), 1, "{label}");
    })
}

/// A subscription's creation and deletion are business facts: stamped by
/// the server's clock (here a simulated one, as the demo runs), not read
/// off the machine's.
#[test]
fn subscriptions_are_stamped_by_the_servers_clock() {
    on_every_backend(|db_url, label| async move {
        let at: chrono::DateTime<chrono::Utc> = "2026-03-04T05:06:07Z".parse().unwrap();
        let clock = payoff_clock::Clock::manual(at);
        let server = TestServer::start_with(&db_url, fast(), |s| s.with_clock(clock)).await;
        server.customer("acme").await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let created = subscribe(&server, &cadmin, "http://127.0.0.1:9/hook", &["*"]).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let (s, _) = server
            .json(
                Method::DELETE,
                &format!("/v1/webhooks/{id}"),
                &cadmin,
                Value::Null,
            )
            .await;
        assert!(s.is_success(), "{label}: {s}");
        let (_, list) = server
            .json(Method::GET, "/v1/webhooks", &cadmin, Value::Null)
            .await;
        let listed = list["webhooks"]
            .as_array()
            .and_then(|a| a.iter().find(|w| w["id"] == id.as_str()))
            .unwrap_or_else(|| panic!("{label}: {list}"));
        for field in ["created_at", "deleted_at"] {
            let t: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(listed[field].clone()).unwrap();
            assert_eq!(t, at, "{label}: {field} of {listed}");
        }
    });
}

/// Under a manual clock a failed delivery is tried again at the first pass
/// at or after its backoff, and not a microsecond before: the due time is
/// set and compared in business time, never the machine's.
#[test]
fn a_retry_falls_due_exactly_at_its_backoff_under_a_manual_clock() {
    on_every_backend(|db_url, label| async move {
        let receiver = Receiver::default();
        *receiver.fail_first.lock().unwrap() = 1;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = start_receiver(listener, receiver.clone()).await;
        let backoff = chrono::Duration::seconds(10);
        let mut config = fast();
        config.webhooks.backoff = vec![backoff.to_std().unwrap()];
        let (server, clock) = start_on_manual_clock(&db_url, config).await;
        server.customer("acme").await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let agent = server.key("agent", Some("acme")).await;
        let created = subscribe(&server, &cadmin, format!("{hook}/hook"), &["*"]).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let (s, _) = server
            .send(
                &agent,
                "application/cloudevents+json",
                &ev("1", "ticket.created", "T1"),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let start = clock.now();
        assert_eq!(
            tick(&server).await,
            OutboxPass {
                enqueued: 1,
                attempted: 1,
                retrying: 1,
                ..OutboxPass::default()
            },
            "{label}: refused once"
        );
        let log = deliveries(&server, &cadmin, &id).await;
        let due: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(log[0]["next_attempt_at"].clone()).unwrap();
        assert_eq!(due, start + backoff, "{label}: {log:?}");

        clock.set(start + backoff - chrono::Duration::microseconds(1));
        assert_eq!(
            tick(&server).await,
            OutboxPass::default(),
            "{label}: not due yet"
        );
        assert_eq!(*receiver.requests.lock().unwrap(), 1, "{label}");

        clock.set(start + backoff);
        assert_eq!(
            tick(&server).await,
            OutboxPass {
                attempted: 1,
                delivered: 1,
                ..OutboxPass::default()
            },
            "{label}: due at its backoff"
        );
        let log = deliveries(&server, &cadmin, &id).await;
        assert_eq!(
            (log[0]["status"].as_str(), log[0]["attempts"].as_u64()),
            (Some("delivered"), Some(2)),
            "{label}: {log:?}"
        );
        let delivered: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(log[0]["delivered_at"].clone()).unwrap();
        assert_eq!(delivered, start + backoff, "{label}: {log:?}");
        assert_eq!(receiver.received.lock().unwrap().len(), 1);
    });
}
