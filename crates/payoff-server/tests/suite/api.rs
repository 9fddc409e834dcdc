//! The HTTP API against a real server on loopback, on every backend.

use crate::common::{on_every_backend, TestServer};
use payoff_server::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

fn event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "helpdesk", "type": "ticket.created", "subject": format!("T-{id}"),
           "time": "2026-11-04T10:00:00+02:00", "data": {"text": "Where is my order?"}})
}

const BATCH: &str = "application/cloudevents-batch+json";
const ONE: &str = "application/cloudevents+json";

/// One bad-input case: name, content type, body, status, problem code, needle.
type BadInputCase = (
    &'static str,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
    &'static str,
);

/// Every route, every role, own customer and another's: the exact status.
#[test]
fn every_route_answers_every_role_exactly() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        server.customer("globex").await;
        let secret_event = event("globex-secret");
        let globex_agent = server.key("agent", Some("globex")).await;
        assert_eq!(
            server.send(&globex_agent, ONE, &secret_event).await.0,
            StatusCode::OK
        );
        let globex_viewer_id = {
            let (_, v) = server
                .json(
                    Method::POST,
                    "/v1/keys",
                    &server.admin,
                    json!({"role": "customer_viewer", "customer": "globex"}),
                )
                .await;
            v["key_id"].as_str().unwrap().to_owned()
        };

        // (method, path, body) → expected status per role, in the order of `roles` below.
        let roles = [
            "admin",
            "operator",
            "customer_admin",
            "customer_viewer",
            "agent",
            "auditor",
        ];
        let own_event = |n: usize| json!([event(&format!("matrix-{n}"))]);
        type Case = (&'static str, String, Value, [u16; 6]);
        let cases: Vec<Case> = vec![
            // Ingest: provider keys must name the customer; these events do not, hence 400.
            (
                "POST",
                "/v1/events".into(),
                own_event(0),
                [400, 400, 200, 403, 200, 403],
            ),
            (
                "GET",
                "/v1/events?customer=acme".into(),
                Value::Null,
                [200, 200, 200, 200, 403, 200],
            ),
            (
                "GET",
                "/v1/events?customer=globex".into(),
                Value::Null,
                [200, 200, 404, 404, 403, 404],
            ),
            (
                "GET",
                "/v1/customers".into(),
                Value::Null,
                [200, 200, 403, 403, 403, 403],
            ),
            (
                "POST",
                "/v1/customers".into(),
                json!({"id": "initech", "name": "Initech"}),
                [201, 409, 403, 403, 403, 403],
            ),
            (
                "GET",
                "/v1/customers/acme".into(),
                Value::Null,
                [200, 200, 200, 200, 200, 200],
            ),
            (
                "GET",
                "/v1/customers/globex".into(),
                Value::Null,
                [200, 200, 404, 404, 404, 404],
            ),
            (
                "GET",
                "/v1/keys".into(),
                Value::Null,
                [200, 200, 200, 403, 403, 403],
            ),
            (
                "POST",
                "/v1/keys".into(),
                json!({"role": "customer_viewer", "customer": "acme"}),
                [201, 201, 201, 403, 403, 403],
            ),
            (
                "POST",
                "/v1/keys".into(),
                json!({"role": "agent", "customer": "globex"}),
                [201, 201, 404, 403, 403, 403],
            ),
            (
                "POST",
                "/v1/keys".into(),
                json!({"role": "admin"}),
                [201, 403, 403, 403, 403, 403],
            ),
            (
                "DELETE",
                format!("/v1/keys/{globex_viewer_id}"),
                Value::Null,
                [200, 200, 404, 403, 403, 403],
            ),
            (
                "GET",
                "/v1/ledger/head".into(),
                Value::Null,
                [400, 400, 200, 200, 200, 200],
            ),
            (
                "GET",
                "/v1/ledger/head?customer=acme".into(),
                Value::Null,
                [200, 200, 200, 200, 200, 200],
            ),
            (
                "GET",
                "/v1/ledger/head?customer=globex".into(),
                Value::Null,
                [200, 200, 404, 404, 404, 404],
            ),
        ];
        for (method, path, body, expected) in &cases {
            for (role, want) in roles.iter().zip(expected) {
                let customer = (!matches!(*role, "admin" | "operator")).then_some("acme");
                let key = server.key(role, customer).await;
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                let (bytes, ct) = if body.is_null() {
                    (Vec::new(), None)
                } else {
                    (body.to_string().into_bytes(), Some("application/json"))
                };
                let (status, _, text) = server
                    .call(method.clone(), path, Some(&key), ct, bytes.clone())
                    .await;
                assert_eq!(
                    status.as_u16(),
                    *want,
                    "{}: {role} {method} {path}: {text}",
                    label
                );
                if customer.is_some() {
                    assert!(
                        !text.contains("globex-secret") && !text.contains("GLOBEX"),
                        "{role} {path} leaked another customer's data: {text}"
                    );
                }
                // No key, an unknown key and a revoked key are 401 on every route.
                assert_eq!(
                    server
                        .call(method.clone(), path, None, ct, bytes.clone())
                        .await
                        .1["code"],
                    "missing_api_key"
                );
                let unknown = format!("pyk_{}_{}", "0".repeat(16), "0".repeat(64));
                assert_eq!(
                    server
                        .call(method.clone(), path, Some(&unknown), ct, bytes.clone())
                        .await
                        .1["code"],
                    "invalid_api_key"
                );
                let key_id = key.split('_').nth(1).unwrap();
                let (s, _) = server
                    .json(
                        Method::DELETE,
                        &format!("/v1/keys/{key_id}"),
                        &server.admin,
                        Value::Null,
                    )
                    .await;
                assert_eq!(s, StatusCode::OK);
                let (status, body, _) = server.call(method, path, Some(&key), ct, bytes).await;
                assert_eq!(
                    (status, body["code"].as_str()),
                    (StatusCode::UNAUTHORIZED, Some("invalid_api_key")),
                    "revoked {role} {path}"
                );
            }
        }
        // The public routes need no key and reveal no customer.
        for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
            let (status, _, text) = server.call(Method::GET, path, None, None, Vec::new()).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(
                !text.contains("globex") && !text.contains("acme"),
                "{path} names a customer"
            );
        }
    });
}

#[test]
fn every_cloudevents_mode_is_accepted_and_read_back() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        let agent = server.key("agent", Some("acme")).await;

        let (s, v) = server.send(&agent, ONE, &event("s1")).await;
        assert_eq!(
            (s, v["accepted"].as_u64()),
            (StatusCode::OK, Some(1)),
            "{}: {v}",
            label
        );
        let (s, v) = server
            .send(&agent, BATCH, &json!([event("b1"), event("b2")]))
            .await;
        assert_eq!(
            (s, &v["results"][1]["status"], &v["results"][1]["sequence"]),
            (StatusCode::OK, &json!("accepted"), &json!(3))
        );
        let (s, _) = server.send(&agent, "application/json", &event("p1")).await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = server
            .send(
                &agent,
                "application/json; charset=utf-8",
                &json!([event("p2"), event("p1")]),
            )
            .await;
        assert_eq!(
            (s, &v["results"][1]["status"]),
            (StatusCode::OK, &json!("duplicate"))
        );

        // Binary mode: attributes in headers, the body is the data.
        let binary = |id: &str, ct: &str, body: Vec<u8>| {
            let request = server
                .http
                .post(format!("{}/v1/events", server.url))
                .bearer_auth(&agent)
                .header("ce-specversion", "1.0")
                .header("ce-id", id)
                .header("ce-source", "crm")
                .header("ce-type", "lead.created")
                .header("ce-subject", "L%201")
                .header("ce-time", "2026-11-04T10:00:00Z")
                .header("ce-region", "eu");
            // No Content-Type at all, as the CloudEvents SDKs send a dict.
            let request = if ct.is_empty() {
                request
            } else {
                request.header("content-type", ct.to_owned())
            };
            request.body(body).send()
        };
        assert_eq!(
            binary(
                "bin-json",
                "application/json",
                br#"{"stage":"new"}"#.to_vec()
            )
            .await
            .unwrap()
            .status(),
            StatusCode::OK
        );
        assert_eq!(
            binary("bin-text", "text/plain", b"hello".to_vec())
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            binary(
                "bin-raw",
                "application/octet-stream",
                vec![0xff, 0x00, 0x7f]
            )
            .await
            .unwrap()
            .status(),
            StatusCode::OK
        );
        assert_eq!(
            binary("bin-untyped", "", br#"{"stage":"won"}"#.to_vec())
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );

        // A provider key routes by payoffcustomer; a customer key may not name another customer.
        let mut routed = event("routed");
        routed["payoffcustomer"] = json!("acme");
        assert_eq!(
            server.send(&server.admin, ONE, &routed).await.0,
            StatusCode::OK
        );
        let (s, v) = server.send(&server.admin, ONE, &event("unrouted")).await;
        assert_eq!(
            (s, v["errors"][0]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("payoffcustomer"))
        );
        server.customer("globex").await;
        let mut foreign = event("foreign");
        foreign["payoffcustomer"] = json!("globex");
        assert_eq!(
            server.send(&agent, ONE, &foreign).await.1["code"],
            "customer_mismatch"
        );

        let viewer = server.key("customer_viewer", Some("acme")).await;
        let (s, page) = server
            .json(Method::GET, "/v1/events?limit=100", &viewer, Value::Null)
            .await;
        assert_eq!(s, StatusCode::OK);
        let events = page["events"].as_array().unwrap();
        let ids: Vec<&str> = events
            .iter()
            .map(|e| e["event"]["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "s1",
                "b1",
                "b2",
                "p1",
                "p2",
                "bin-json",
                "bin-text",
                "bin-raw",
                "bin-untyped",
                "routed"
            ]
        );
        assert_eq!(
            events[0]["event"]["time"], "2026-11-04T08:00:00Z",
            "time is stored in UTC"
        );
        assert_eq!(
            events[0]["event"]["data"],
            json!({"text": "Where is my order?"})
        );
        let bin = |i: usize| &events[i]["event"];
        assert_eq!(
            (&bin(5)["data"], &bin(5)["subject"], &bin(5)["region"]),
            (&json!({"stage": "new"}), &json!("L 1"), &json!("eu"))
        );
        assert_eq!(bin(6)["data"], "hello");
        assert_eq!(bin(7)["data_base64"], "/wB/");
        // Issue 17: data sent with no Content-Type was stored as a string,
        // so no contract rule could match it.
        assert_eq!(bin(8)["data"], json!({"stage": "won"}));
        assert!(
            bin(9).get("payoffcustomer").is_none(),
            "the routing attribute is not content"
        );
        assert_eq!(page["next_cursor"], Value::Null);
    });
}

#[test]
fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    on_every_backend(|db_url, label| async move {
        let config = ServerConfig {
            body_bytes_max: 4 * 1024 * 1024,
            ..ServerConfig::default()
        };
        let server = TestServer::start(&db_url, config).await;
        server.customer("acme").await;
        let agent = server.key("agent", Some("acme")).await;
        let without = |field: &str| {
            let mut e = event("x");
            e.as_object_mut().unwrap().remove(field);
            e
        };
        let with = |field: &str, value: Value| {
            let mut e = event("x");
            e[field] = value;
            e
        };
        let huge = with("data", json!({"text": "x".repeat(300 * 1024)}));
        let many: Vec<Value> = (0..10_001).map(|i| event(&format!("m{i}"))).collect();
        // (case, content type, body, status, problem code, text the reply must hold)
        let cases: Vec<BadInputCase> = vec![
            (
                "malformed JSON",
                ONE,
                b"{\"id\": ".to_vec(),
                400,
                "invalid_events",
                "not valid JSON",
            ),
            (
                "missing id",
                ONE,
                without("id").to_string().into_bytes(),
                400,
                "invalid_events",
                "id is required",
            ),
            (
                "wrong specversion",
                ONE,
                with("specversion", json!("0.3")).to_string().into_bytes(),
                400,
                "invalid_events",
                "specversion",
            ),
            (
                "bad time",
                ONE,
                with("time", json!("yesterday")).to_string().into_bytes(),
                400,
                "invalid_events",
                "RFC 3339",
            ),
            (
                "oversized event",
                ONE,
                huge.to_string().into_bytes(),
                400,
                "invalid_events",
                "at most 262144 bytes",
            ),
            (
                "oversized batch",
                BATCH,
                serde_json::to_vec(&many).unwrap(),
                400,
                "invalid_events",
                "at most 10000",
            ),
            (
                "invalid UTF-8",
                ONE,
                b"{\"id\": \"\xff\"}".to_vec(),
                400,
                "invalid_events",
                "UTF-8",
            ),
            (
                "unsupported type",
                "text/csv",
                b"a,b".to_vec(),
                415,
                "unsupported_media_type",
                "text/csv",
            ),
            (
                "no content type",
                "",
                b"{}".to_vec(),
                415,
                "unsupported_media_type",
                "Content-Type",
            ),
            (
                "batch mode needs an array",
                BATCH,
                event("x").to_string().into_bytes(),
                400,
                "invalid_events",
                "array",
            ),
            (
                "empty batch",
                BATCH,
                b"[]".to_vec(),
                400,
                "invalid_events",
                "no events",
            ),
            (
                "body over the limit",
                BATCH,
                vec![b' '; 5 * 1024 * 1024],
                413,
                "payload_too_large",
                "exceeds",
            ),
        ];
        for (name, ct, body, status, code, needle) in cases {
            let ct = (!ct.is_empty()).then_some(ct);
            let (s, v, text) = server
                .call(Method::POST, "/v1/events", Some(&agent), ct, body)
                .await;
            assert_eq!(
                (s.as_u16(), v["code"].as_str()),
                (status, Some(code)),
                "{}: {name}: {text}",
                label
            );
            assert!(text.contains(needle), "{name}: {needle:?} not in {text}");
            assert_eq!(server.head("acme").await, 0, "{name} stored something");
        }
        // Every bad event of a batch is listed, and the good ones are not stored.
        let batch = json!([
            event("good"),
            without("type"),
            event("good2"),
            with("time", json!(5))
        ]);
        let (s, v) = server.send(&agent, BATCH, &batch).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let listed: Vec<(u64, &str)> = v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
            .collect();
        assert_eq!(listed, [(1, "type"), (3, "time")]);
        assert_eq!(server.head("acme").await, 0);
        // An unknown customer, named by a provider key.
        let mut lost = event("lost");
        lost["payoffcustomer"] = json!("nobody");
        let (s, v) = server.send(&server.admin, ONE, &lost).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("unknown_customer"))
        );
        // Malformed management requests name the field.
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/customers",
                &server.admin,
                json!({"id": "Bad Id", "name": "x"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["detail"].as_str().unwrap().starts_with("id:"), "{v}");
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/keys",
                &server.admin,
                json!({"role": "root", "customer": "acme"}),
            )
            .await;
        assert!(
            s == StatusCode::BAD_REQUEST && v["detail"].as_str().unwrap().contains("role"),
            "{v}"
        );
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/customers",
                &server.admin,
                json!({"id": "a", "name": "b", "extra": 1}),
            )
            .await;
        assert!(
            s == StatusCode::BAD_REQUEST && v["detail"].as_str().unwrap().contains("extra"),
            "{v}"
        );
    });
}

#[test]
fn duplicates_are_stored_once_and_conflicts_refused_whole() {
    on_every_backend(|db_url, label| async move {
        let server = Arc::new(TestServer::start(&db_url, ServerConfig::default()).await);
        server.customer("acme").await;
        let agent = server.key("agent", Some("acme")).await;
        assert_eq!(
            server.send(&agent, ONE, &event("e1")).await.0,
            StatusCode::OK
        );
        let (s, v) = server.send(&agent, ONE, &event("e1")).await;
        assert_eq!(
            (s, v["duplicates"].as_u64(), &v["results"][0]["status"]),
            (StatusCode::OK, Some(1), &json!("duplicate"))
        );
        let mut changed = event("e1");
        changed["data"]["text"] = json!("something else");
        let (s, v) = server
            .send(&agent, BATCH, &json!([event("e9"), changed]))
            .await;
        assert_eq!(
            (
                s,
                v["code"].as_str(),
                &v["event"]["id"],
                &v["event"]["index"]
            ),
            (
                StatusCode::CONFLICT,
                Some("event_conflict"),
                &json!("e1"),
                &json!(1)
            ),
            "{v}"
        );
        assert!(v["detail"].as_str().unwrap().contains("\"e1\""));
        assert_eq!(
            server.head("acme").await,
            1,
            "nothing of the conflicting batch is stored"
        );

        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (server, agent) = (server.clone(), agent.clone());
                tokio::spawn(async move { server.send(&agent, ONE, &event("raced")).await })
            })
            .collect();
        let mut accepted = 0;
        for t in tasks {
            let (s, v) = t.await.unwrap();
            assert_eq!(s, StatusCode::OK);
            accepted += v["accepted"].as_u64().unwrap();
        }
        assert_eq!(accepted, 1, "{}: the raced id is stored once", label);
        assert_eq!(server.head("acme").await, 2);

        let (_, _, metrics) = server
            .call(Method::GET, "/metrics", None, None, Vec::new())
            .await;
        assert!(
            metrics.contains("payoff_events_accepted_total 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("payoff_events_duplicate_total 32"),
            "{metrics}"
        );
        assert!(
            metrics.contains("payoff_event_conflicts_total 1"),
            "{metrics}"
        );
        assert!(
            metrics.lines().any(
                |l| l.starts_with("payoff_http_request_duration_seconds_bucket{")
                    && l.contains("route=\"/v1/events\"")
            ),
            "{metrics}"
        );
    });
}

#[test]
fn events_are_filtered_and_paged_with_clear_query_errors() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        let agent = server.key("agent", Some("acme")).await;
        let batch: Vec<Value> = (0..30)
            .map(|i| {
                let mut e = event(&format!("f{i}"));
                e["type"] = json!(if i % 3 == 0 {
                    "ticket.closed"
                } else {
                    "ticket.created"
                });
                e["time"] = json!(format!("2026-11-{:02}T12:00:00Z", i + 1));
                e
            })
            .collect();
        assert_eq!(
            server.send(&agent, BATCH, &Value::Array(batch)).await.0,
            StatusCode::OK
        );
        let viewer = server.key("auditor", Some("acme")).await;
        let get = |q: String| {
            let server = &server;
            let viewer = viewer.clone();
            async move {
                server
                    .json(
                        Method::GET,
                        &format!("/v1/events?{q}"),
                        &viewer,
                        Value::Null,
                    )
                    .await
            }
        };
        let mut seen = Vec::new();
        let mut query = "limit=7".to_owned();
        loop {
            let (s, page) = get(query.clone()).await;
            assert_eq!(s, StatusCode::OK);
            seen.extend(
                page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["sequence"].as_u64().unwrap()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => query = format!("limit=7&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seen, (1..=30).collect::<Vec<u64>>(), "{}", label);
        let count = |v: &Value| v["events"].as_array().unwrap().len();
        assert_eq!(count(&get("type=ticket.closed".into()).await.1), 10);
        assert_eq!(count(&get("subject=T-f4".into()).await.1), 1);
        assert_eq!(
            count(
                &get("since=2026-11-10T00:00:00Z&until=2026-11-20T00:00:00Z".into())
                    .await
                    .1
            ),
            10
        );
        assert_eq!(
            count(
                &get("since=2026-11-10T02:00:00%2B02:00&until=2026-11-11T00:00:00Z".into())
                    .await
                    .1
            ),
            1
        );
        for (q, field) in [
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("cursor=abc", "cursor"),
            ("cursor=1.0.1.1", "cursor"),
            ("cursor=1.0.x", "cursor"),
            ("since=monday", "since"),
            ("until=2026-13-01", "until"),
            ("limit=x", "limit"),
        ] {
            let (s, v) = get(q.into()).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_query")),
                "{q}: {v}"
            );
            assert!(v["detail"].as_str().unwrap().contains(field), "{q}: {v}");
        }
    });
}

#[test]
fn operations_routes_answer() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        let (s, v, _) = server
            .call(Method::GET, "/readyz", None, None, Vec::new())
            .await;
        assert_eq!((s, v["database"].as_str()), (StatusCode::OK, Some(label)));
        let (_, doc, _) = server
            .call(Method::GET, "/openapi.json", None, None, Vec::new())
            .await;
        for path in [
            "/v1/events",
            "/v1/customers",
            "/v1/customers/{customer}",
            "/v1/keys",
            "/v1/keys/{key_id}",
            "/v1/ledger/head",
        ] {
            assert!(
                doc["paths"].get(path).is_some(),
                "{path} missing from the OpenAPI document"
            );
        }
        assert!(
            doc["paths"]["/v1/events"].get("post").is_some()
                && doc["paths"]["/v1/events"].get("get").is_some()
        );
        let faults = openapi_faults(&doc);
        assert!(
            faults.is_empty(),
            "the OpenAPI document is not one a client generator can use:\n{}",
            faults.join("\n")
        );
        let (s, v, _) = server
            .call(
                Method::GET,
                "/v1/nowhere",
                Some(&server.admin),
                None,
                Vec::new(),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        // Issue 16: a 405 answered with an empty body.
        let (s, v, _) = server
            .call(
                Method::PUT,
                "/v1/customers",
                Some(&server.admin),
                None,
                Vec::new(),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")),
            "{v}"
        );
        assert!(v["detail"].as_str().unwrap().contains("PUT"), "{v}");
    });
}

/// Issue 15, finding 4: anonymous POSTs wrote one audit record each into
/// the log of the customer the path named (300 in 0.4 s), and POSTs to
/// unknown routes were recorded too. They are counted, not stored; a known
/// key refused is still recorded. Authentication schemes are
/// case-insensitive: `bearer` works as `Bearer` does.
#[test]
fn requests_without_a_valid_key_are_counted_not_stored() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        let viewer = server.key("customer_viewer", Some("acme")).await;
        let records = || async {
            let (s, v) = server
                .json(
                    Method::GET,
                    "/v1/audit?customer=acme&limit=1000",
                    &server.admin,
                    Value::Null,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            v["records"].as_array().unwrap().len()
        };
        let before = records().await;
        let unknown = format!("pyk_{}_{}", "0".repeat(16), "0".repeat(64));
        for n in 0..40 {
            let key = [None, Some(unknown.as_str())][n % 2];
            let path = ["/v1/customers/acme/policies", "/v1/customers/acme/nowhere"][n / 20];
            let (status, _, _) = server
                .call(
                    Method::POST,
                    path,
                    key,
                    Some("application/json"),
                    b"{}".to_vec(),
                )
                .await;
            assert!(
                [StatusCode::UNAUTHORIZED, StatusCode::NOT_FOUND].contains(&status),
                "{label}: {path}: {status}"
            );
        }
        assert_eq!(records().await, before, "{label}: nothing stored");
        let (_, _, metrics) = server
            .call(Method::GET, "/metrics", None, None, Vec::new())
            .await;
        assert!(
            metrics.contains(
                r#"payoff_http_requests_total{method="POST",route="/v1/customers/{customer}/policies",status="401"} 20"#
            ),
            "{label}: counted: {metrics}"
        );
        // A known key refused is recorded, once.
        let (s, _, _) = server
            .call(
                Method::POST,
                "/v1/customers/acme/policies",
                Some(&viewer),
                Some("application/json"),
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(records().await, before + 1, "{label}");

        for scheme in ["bearer", "BEARER", "Bearer"] {
            let response = reqwest::Client::new()
                .get(format!("{}/v1/customers/acme", server.url))
                .header("authorization", format!("{scheme} {viewer}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{label}: {scheme}");
        }
    });
}

/// Issue 16, finding 1: after one dropped database connection every event
/// POST answered 503 until the process restarted, while `/readyz` said
/// ready. Every session of the server is ended (as a restart or failover
/// would); the next write, read and readiness check each succeed, and
/// nothing is lost or doubled.
#[test]
fn a_dropped_database_connection_is_replaced_without_losing_a_request() {
    on_every_backend(|db_url, label| async move {
        if label != "postgres" {
            return; // an embedded database has no connection to lose
        }
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        let agent = server.key("agent", Some("acme")).await;
        for round in 0..3 {
            // A write first, so the ledger writer holds its connection:
            // pooled idle connections may be closed by background work
            // between rounds, and the drop must find a session to end.
            let (s, v) = server
                .send(&agent, ONE, &event(&format!("before-drop-{round}")))
                .await;
            assert_eq!(
                (s, &v["accepted"]),
                (StatusCode::OK, &json!(1)),
                "round {round}: {v}"
            );
            let url = db_url.clone();
            let ended = tokio::task::spawn_blocking(move || {
                payoff_store::scratch::terminate_postgres_sessions(&url)
            })
            .await
            .unwrap();
            assert!(ended >= 1, "round {round}: the server held sessions");
            let (s, v) = server
                .send(&agent, ONE, &event(&format!("after-drop-{round}")))
                .await;
            assert_eq!(s, StatusCode::OK, "round {round}: {v}");
            assert_eq!(v["accepted"], 1, "{v}");
            let (s, v, _) = server
                .call(Method::GET, "/readyz", None, None, Vec::new())
                .await;
            assert_eq!(s, StatusCode::OK, "round {round}: {v}");
            // A read may meet a pooled connection that is gone: that one
            // request fails, naming the cause, and the pool drops every idle
            // connection with it (before: up to 64 requests failed).
            let url = db_url.clone();
            tokio::task::spawn_blocking(move || {
                payoff_store::scratch::terminate_postgres_sessions(&url)
            })
            .await
            .unwrap();
            let read = || {
                server.json(
                    Method::GET,
                    "/v1/events?customer=acme",
                    &server.admin,
                    Value::Null,
                )
            };
            let (mut s, mut v) = read().await;
            if s != StatusCode::OK {
                assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "round {round}: {v}");
                (s, v) = read().await;
            }
            assert_eq!(s, StatusCode::OK, "round {round}: {v}");
            assert_eq!(
                v["events"].as_array().unwrap().len(),
                2 * (round + 1),
                "{v}"
            );
        }
    });
}

/// Issue 15, finding 6: no rate limiting anywhere (300 wrong dashboard
/// logins in 0.6 s). A key over its limit gets 429 problem+json with
/// `Retry-After`, other keys do not; logins are limited per address.
#[test]
fn callers_over_their_rate_get_429_with_retry_after() {
    on_every_backend(|db_url, label| async move {
        let config = ServerConfig {
            rate_limits: payoff_server::limits::RateLimits {
                key_per_second: 1,
                key_burst: 3,
                address_per_second: 0,
                address_burst: 0,
                login_per_minute: 1,
                login_burst: 2,
            },
            ..ServerConfig::default()
        };
        let server = TestServer::start(&db_url, config).await;
        server.customer("acme").await;
        let viewer = server.key("customer_viewer", Some("acme")).await;
        let other = server.key("customer_viewer", Some("acme")).await;
        let read = |key: String| {
            let request = server
                .http
                .get(format!("{}/v1/customers/acme", server.url))
                .bearer_auth(key);
            async move { request.send().await.unwrap() }
        };
        // The burst is served whole; within the same second the next 17
        // cannot all be (one more token a second at most).
        let mut statuses = Vec::new();
        let mut limited = None;
        for _ in 0..20 {
            let reply = read(viewer.clone()).await;
            statuses.push(reply.status().as_u16());
            if reply.status() == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
                limited = Some(reply);
            }
        }
        assert_eq!(statuses[..3], [200, 200, 200], "{label}: {statuses:?}");
        let limited = limited.unwrap_or_else(|| panic!("{label}: never limited: {statuses:?}"));
        let retry: u64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1, "{retry}");
        assert_eq!(
            limited.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["code"], "rate_limited", "{body}");
        assert_eq!(
            read(other).await.status(),
            StatusCode::OK,
            "another key is not limited"
        );

        // Logins: two tries, then 429 from this address, the right key too.
        let login = |key: &str| {
            server
                .http
                .post(format!("{}/ui/login", server.url))
                .header("origin", server.url.clone())
                .form(&[("key", key)])
                .send()
        };
        let wrong = format!("pyk_{}_{}", "0".repeat(16), "0".repeat(64));
        for _ in 0..2 {
            assert_eq!(
                login(&wrong).await.unwrap().status(),
                StatusCode::UNAUTHORIZED
            );
        }
        let refused = login(&viewer).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{label}");
        assert!(refused.headers().contains_key("retry-after"));
        // Each refusal is counted by the limit that made it.
        let (_, _, metrics) = server
            .call(Method::GET, "/metrics", None, None, Vec::new())
            .await;
        for scope in ["key", "login"] {
            assert!(
                metrics
                    .lines()
                    .any(|l| l
                        .starts_with(&format!("payoff_rate_limited_total{{scope=\"{scope}\"}} "))),
                "{label}: {metrics}"
            );
        }
    });
}

/// Issue 16, finding 6: a failed audit write was only logged and the 2xx
/// still went out. With audit inserts failing (a failpoint: a trigger that
/// refuses them), a change answers 503 naming the missing record.
#[test]
fn a_change_whose_audit_record_fails_does_not_answer_success() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        let (failpoint, _) = payoff_store::scratch::failpoint(
            label == "postgres",
            "refuse_audit",
            &[("audit_log", "INSERT")],
            100,
            "no space left on device",
        );
        let url = db_url.clone();
        tokio::task::spawn_blocking(move || payoff_store::scratch::execute_sql(&url, &failpoint))
            .await
            .unwrap();
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/customers",
                &server.admin,
                json!({"id": "acme", "name": "Acme"}),
            )
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{label}: {v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.contains("audit record could not be written")
                && detail.contains("no space left"),
            "{label}: {detail}"
        );
    });
}

/// Issue 16, finding 5: `/readyz` said ready while every write failed.
/// Its probe was an empty transaction, which commits on a full disk. With
/// every write refused (a failpoint: triggers on the ledger and the
/// probe's row, as a full disk refuses them), an event answers 503 naming
/// the cause, `/readyz` says not ready and why, and both come back when
/// writes do, with no restart.
#[test]
fn readiness_is_refused_while_writes_fail_and_given_back_when_they_succeed() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        let agent = server.key("agent", Some("acme")).await;
        let event = |id: &str| {
            json!({"specversion": "1.0", "id": id, "source": "crm",
            "type": "lead.created", "subject": "L-1", "time": "2026-11-03T10:00:00Z", "data": {}})
        };
        let (fail, heal) = payoff_store::scratch::failpoint(
            label == "postgres",
            "refuse_write",
            &[
                ("events", "INSERT"),
                ("ledger_probe", "INSERT"),
                ("ledger_probe", "UPDATE"),
            ],
            100,
            "no space left on device",
        );
        let sql = |text: String| {
            let url = db_url.clone();
            tokio::task::spawn_blocking(move || payoff_store::scratch::execute_sql(&url, &text))
        };
        let ready = || async {
            let (s, v, _) = server
                .call(Method::GET, "/readyz", None, None, Vec::new())
                .await;
            (s, v)
        };
        // A probe that wrote before the failure must not be the last word.
        assert_eq!(ready().await.0, StatusCode::OK, "{label}");
        sql(fail).await.unwrap();
        let (s, v) = server.send(&agent, ONE, &event("e-1")).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{label}: {v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.contains("nothing was written") && detail.contains("no space left"),
            "{label}: {detail}"
        );
        for _ in 0..2 {
            let (s, v) = ready().await;
            assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{label}: {v}");
            let detail = v["detail"].as_str().unwrap();
            assert!(
                detail.starts_with("events cannot be written") && detail.contains("no space left"),
                "{label}: {detail}"
            );
        }
        sql(heal).await.unwrap();
        let (s, v) = ready().await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        let (s, v) = server.send(&agent, ONE, &event("e-1")).await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
    });
}

/// Issue 15: the role matrix covered 17 cases on 6 of about 52 paths.
/// Generated from the route table (the served OpenAPI document): every
/// operation, with the other customer's keys of every role, an unknown key
/// and no key, on paths that name a customer that has data. No stranger
/// gets a 2xx or a byte of that customer's data, and without a valid key
/// every route but the public ones answers 401.
#[test]
fn every_route_refuses_strangers() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        server.customer("globex").await;
        let agent = server.key("agent", Some("acme")).await;
        let secret = json!({"specversion": "1.0", "id": "acme-secret-1", "source": "crm",
            "type": "lead.created", "subject": "ACME-SECRET", "time": "2026-11-03T10:00:00Z",
            "data": {"note": "ACME-SECRET"}});
        assert_eq!(server.send(&agent, ONE, &secret).await.0, StatusCode::OK);
        let acme_key_id = agent.split('_').nth(1).unwrap().to_owned();
        let (_, doc, _) = server
            .call(Method::GET, "/openapi.json", None, None, Vec::new())
            .await;
        let public = ["/.well-known/payoff/keys"];
        let strangers: Vec<(String, Option<String>)> = {
            let mut list = vec![
                ("no key".to_owned(), None),
                (
                    "unknown key".to_owned(),
                    Some(format!("pyk_{}_{}", "0".repeat(16), "0".repeat(64))),
                ),
            ];
            for role in ["customer_admin", "customer_viewer", "agent", "auditor"] {
                list.push((
                    format!("globex {role}"),
                    Some(server.key(role, Some("globex")).await),
                ));
            }
            list
        };
        let mut checked = 0;
        for (template, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let path = acme_request_path(template, operation, &acme_key_id);
                let bare_path = path.split('?').next().unwrap_or(&path);
                // Does the request name acme (in its path, or its customer
                // parameter)? Else the route answers for the key's own
                // customer, and only must not leak acme's data.
                let names_customer = operation["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == "customer"));
                let addressed = template.contains('{')
                    && !template.starts_with("/v1/agents/{agent}")
                    || names_customer;
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                // `{}`, and the body that names acme where the route reads
                // its customer from the body (so the tenant check is reached).
                let named =
                    request_body(operation["operationId"].as_str().unwrap_or(""), "stranger");
                let mut bodies = vec![(addressed, json!({}))];
                if named.to_string().contains("acme") {
                    bodies.push((true, named));
                }
                for ((who, key), (addressed, body)) in strangers
                    .iter()
                    .flat_map(|s| bodies.iter().map(move |b| (s, b)))
                {
                    let addressed = *addressed;
                    let (status, _, text) = server
                        .call(
                            method.clone(),
                            &path,
                            key.as_deref(),
                            Some("application/json"),
                            body.to_string().into_bytes(),
                        )
                        .await;
                    checked += 1;
                    if public.contains(&template.as_str()) {
                        continue;
                    }
                    assert!(
                        !addressed || !status.is_success() && !status.is_redirection(),
                        "{label}: {who} {method} {path} answered {status}: {text}"
                    );
                    // (The path's own ids may be echoed in an error.)
                    assert!(
                        !text
                            .replace(&path, "")
                            .replace(bare_path, "")
                            .contains("ACME-SECRET"),
                        "{label}: {who} {method} {path} leaked acme's data: {text}"
                    );
                    if key.is_none() || who == "unknown key" {
                        assert_eq!(
                            status,
                            StatusCode::UNAUTHORIZED,
                            "{label}: {who} {method} {path}: {text}"
                        );
                    }
                }
            }
        }
        assert!(checked > 250, "{label}: {checked} requests");
    });
}

/// The request path of an operation of the served OpenAPI document aimed
/// at acme, the customer the tests of every route address: the path
/// template filled with acme's ids (`key_id` for a `{key_id}`),
/// `customer=acme` where the operation takes a `customer` query
/// parameter, and a value for every other required query parameter.
/// Written once, for `every_route_refuses_strangers` and
/// `every_route_answers_each_role_as_the_permission_table_says`.
fn acme_request_path(template: &str, operation: &Value, key_id: &str) -> String {
    let path = template
        .replace("{customer}", "acme")
        .replace("{key_id}", key_id)
        .replace("{period}", "2026-11")
        .replace("{experiment}", "support")
        .replace("{subject}", "ACME-SECRET")
        .replace("{agent}", "support")
        .replace("{server}", "shop")
        .replace("{name}", "shop")
        .replace("{id}", "st.acme.2026-11");
    assert!(
        !path.contains('{'),
        "a path parameter this test does not fill: {template}"
    );
    let mut query = Vec::new();
    let parameters = operation["parameters"].as_array().into_iter().flatten();
    for parameter in parameters.filter(|p| p["in"] == "query") {
        let name = parameter["name"].as_str().unwrap_or_default();
        let value = match name {
            "customer" => "acme",
            _ if parameter["required"] != true => continue,
            "period" => "2026-11",
            "q" => "refunds",
            _ => panic!("{template}: a required query parameter this test does not fill: {name}"),
        };
        query.push(format!("{name}={value}"));
    }
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// The roles, in the column order of `tests/authz/permissions.csv`.
const ROLES: [&str; 6] = [
    "admin",
    "operator",
    "customer_admin",
    "customer_viewer",
    "agent",
    "auditor",
];

/// One row of `tests/authz/permissions.csv`.
struct Permission {
    /// Its line in the file, for messages.
    line: usize,
    operation_id: String,
    /// Per role of [`ROLES`]: does it pass the route's permission check?
    allow: [bool; 6],
}

/// `tests/authz/permissions.csv` by (method, path template): the reviewed
/// statement of which role may call which operation.
fn permission_table() -> std::collections::BTreeMap<(String, String), Permission> {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/authz/permissions.csv"
    );
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let header = format!("method,path_template,operation_id,{}", ROLES.join(","));
    let mut rows = std::collections::BTreeMap::new();
    let mut header_seen = false;
    for (n, line) in text.lines().enumerate() {
        let (line, at) = (
            line.trim(),
            format!("tests/authz/permissions.csv:{}", n + 1),
        );
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !header_seen {
            assert_eq!(line, header, "{at}: the first row names the columns");
            header_seen = true;
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        assert_eq!(cells.len(), 3 + ROLES.len(), "{at}: a row is {header}");
        let (method, template) = (cells[0], cells[1]);
        assert!(
            method.bytes().all(|b| b.is_ascii_uppercase()) && template.starts_with('/'),
            "{at}: \"{method} {template}\" is not an upper-case method and a path template"
        );
        let mut allow = [false; 6];
        for (r, cell) in cells[3..].iter().enumerate() {
            allow[r] = match *cell {
                "allow" => true,
                "deny" => false,
                other => panic!("{at}: {}: \"{other}\" is not allow or deny", ROLES[r]),
            };
        }
        let row = Permission {
            line: n + 1,
            operation_id: cells[2].to_owned(),
            allow,
        };
        if let Some(first) = rows.insert((method.to_owned(), template.to_owned()), row) {
            panic!(
                "{at}: {method} {template} has a row already, at line {}",
                first.line
            );
        }
    }
    assert!(header_seen, "{file}: no rows");
    rows
}

/// A body that gets a request of `role` past body parsing to the
/// operation's permission check (extractors run before the handler), and
/// where it is cheap, a valid one that succeeds for a role that may. Each
/// role creates under its own id, so none meets another's 409.
fn request_body(operation_id: &str, role: &str) -> Value {
    match operation_id {
        "ingest_events" => json!({"specversion": "1.0", "id": format!("authz-{role}"),
            "source": "crm", "type": "lead.created", "subject": "L-1",
            "time": "2026-11-03T10:00:00Z", "payoffcustomer": "acme", "data": {}}),
        "create_customer" => json!({"id": format!("initech-{role}"), "name": "Initech"}),
        "create_key" => json!({"role": "customer_viewer", "customer": "acme"}),
        "raise_dispute" => json!({"reason": "the ticket was not resolved"}),
        "accept_dispute" | "reject_dispute" => json!({"note": "checked"}),
        "set_budgets" => json!({"customer": {"limit": "500.00"}}),
        "batch" => json!({"customer": "acme", "experiment": "support", "subjects": ["L-1"]}),
        "release" => json!({"experiment": "support"}),
        "upload" => json!({"id": "refunds", "title": "Refunds",
            "body": "Refunds take five working days.", "groups": []}),
        "answer" => json!({"question": "How long do refunds take?", "customer": "acme"}),
        "submit" => json!({"id": format!("T-authz-{role}"), "subject": "Refund",
            "body": "Where is my refund?", "requester": "pat@acme.example", "customer": "acme"}),
        "pause" | "resume" | "approve" | "reject" => json!({"customer": "acme"}),
        "authorize_action" => {
            json!({"customer": "acme", "agent": "refunds", "action": "issue_refund",
            "resource": {"type": "Order", "id": "o-1"}})
        }
        "record_action_result" => json!({"customer": "acme", "status": "succeeded"}),
        // Refused by the egress policy after the permission check: no connection.
        "register_mcp_server" => json!({"url": "https://127.0.0.1/mcp"}),
        "mcp_endpoint" => json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        "upload_action_rules" => {
            json!({"schema": "entity Order;", "rules": "permit(principal, action, resource);"})
        }
        // A loopback URL is refused after the permission check, so no
        // delivery is ever attempted.
        "create_webhook" => json!({"url": "https://127.0.0.1/payoff", "event_types": ["*"],
            "customer": "acme"}),
        _ => json!({}),
    }
}

/// Issue 15, the other half: every operation of the served OpenAPI
/// document, with a key of every role of the customer it addresses (acme;
/// provider keys name acme), answers as `tests/authz/permissions.csv`
/// says: 403 exactly where it says deny, anything but 401 or 403 where it
/// says allow. The table and the document must list the same operations,
/// so a route cannot be added without stating who may call it. (Other
/// customers' keys: `every_route_refuses_strangers`.)
#[test]
fn every_route_answers_each_role_as_the_permission_table_says() {
    on_every_backend(|db_url, label| async move {
        let table = permission_table();
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        server.customer("globex").await;
        let acme_agent = server.key("agent", Some("acme")).await;
        let lead = json!({"specversion": "1.0", "id": "acme-lead-1", "source": "crm",
            "type": "lead.created", "subject": "L-1", "time": "2026-11-03T10:00:00Z",
            "data": {"note": "a lead"}});
        assert_eq!(server.send(&acme_agent, ONE, &lead).await.0, StatusCode::OK);
        let mut keys = Vec::new();
        for role in ROLES {
            let customer = (!matches!(role, "admin" | "operator")).then_some("acme");
            keys.push(server.key(role, customer).await);
        }
        let (_, doc, _) = server
            .call(Method::GET, "/openapi.json", None, None, Vec::new())
            .await;

        // The table and the route table list the same operations.
        let mut faults = Vec::new();
        let mut operations = Vec::new();
        for (template, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let method = method.to_uppercase();
                let id = operation["operationId"].as_str().unwrap_or("(none)");
                match table.get(&(method.clone(), template.clone())) {
                    None => faults.push(format!(
                        "{method} {template} (operation {id}) is served but has no row: \
                         add one stating which roles may call it"
                    )),
                    Some(row) if row.operation_id != id => faults.push(format!(
                        "line {}: {method} {template} is operation {id}, not {}",
                        row.line, row.operation_id
                    )),
                    Some(row) => operations.push((method, template, operation, row)),
                }
            }
        }
        for ((method, template), row) in &table {
            if doc["paths"][template][method.to_lowercase()].is_null() {
                faults.push(format!(
                    "line {}: {method} {template} is not an operation of the served API: \
                     remove the row, or correct it",
                    row.line
                ));
            }
        }
        assert!(
            faults.is_empty(),
            "{label}: tests/authz/permissions.csv and GET /openapi.json differ:\n{}",
            faults.join("\n")
        );

        // Every operation, every role, the own customer.
        let acme_agent_id = acme_agent.split('_').nth(1).unwrap().to_owned();
        let mut disagreements = Vec::new();
        let mut checked = 0;
        for (method, template, operation, row) in &operations {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            for (r, role) in ROLES.iter().enumerate() {
                // A route acting on a key acts on a throwaway one, never
                // on a key this test calls with.
                let key_id = if template.contains("{key_id}") {
                    let throwaway = server.key("customer_viewer", Some("acme")).await;
                    throwaway.split('_').nth(1).unwrap().to_owned()
                } else {
                    acme_agent_id.clone()
                };
                let path = acme_request_path(template, operation, &key_id);
                let body = request_body(&row.operation_id, role).to_string();
                let (status, _, text) = server
                    .call(
                        method.clone(),
                        &path,
                        Some(&keys[r]),
                        Some("application/json"),
                        body.into_bytes(),
                    )
                    .await;
                checked += 1;
                // Allowed, the key also reaches its own customer: it is
                // not answered as if acme were someone else's.
                let (agrees, says) = if row.allow[r] {
                    (
                        status != StatusCode::UNAUTHORIZED
                            && status != StatusCode::FORBIDDEN
                            && !text.contains("no customer \"acme\" is visible"),
                        "allow (anything but 401/403, or acme hidden from its own key)",
                    )
                } else {
                    // Refused before its body is read: a body that is
                    // not even JSON gets the same 403, not a 400.
                    let (unread, _, unread_text) = server
                        .call(
                            method.clone(),
                            &path,
                            Some(&keys[r]),
                            Some("application/json"),
                            b"{\"not json".to_vec(),
                        )
                        .await;
                    if unread != StatusCode::FORBIDDEN {
                        disagreements.push(format!(
                            "line {}: {role} {method} {path} with a body that is not JSON: \
                             the table says deny (403), the server answered {unread}: {unread_text}",
                            row.line
                        ));
                    }
                    (status == StatusCode::FORBIDDEN, "deny (403)")
                };
                if !agrees {
                    disagreements.push(format!(
                        "line {}: {role} {method} {path}: the table says {says}, \
                         the server answered {status}: {text}",
                        row.line
                    ));
                }
            }
        }
        assert!(
            disagreements.is_empty(),
            "{label}: {} of {checked} requests disagree with tests/authz/permissions.csv:\n{}",
            disagreements.len(),
            disagreements.join("\n")
        );
        assert_eq!(checked, table.len() * ROLES.len(), "{label}");
        eprintln!(
            "{label}: {} operations x {} roles: {checked} requests as the table says",
            operations.len(),
            ROLES.len()
        );
    });
}

/// What makes an OpenAPI document unusable by a generated client: an
/// operation id used twice, a `{name}` in a path that no path parameter
/// declares, or a path parameter the path does not have (a query
/// parameter declared in the wrong place).
fn openapi_faults(doc: &Value) -> Vec<String> {
    let mut faults = Vec::new();
    let mut ids = std::collections::BTreeMap::new();
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 40, "the document lists the API");
    for (path, item) in paths {
        let template: std::collections::BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split('}').next())
            .collect();
        for (method, op) in item.as_object().expect("path item") {
            let at = format!("{} {path}", method.to_uppercase());
            match op["operationId"].as_str() {
                None => faults.push(format!("{at}: no operationId")),
                Some(id) => {
                    if let Some(first) = ids.insert(id.to_owned(), at.clone()) {
                        faults.push(format!("{at}: operationId {id} also names {first}"));
                    }
                }
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let declared: std::collections::BTreeSet<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for name in template.difference(&declared) {
                faults.push(format!("{at}: path parameter {name} is not declared"));
            }
            for name in declared.difference(&template) {
                faults.push(format!(
                    "{at}: {name} is declared in the path, which has no {{{name}}}"
                ));
            }
        }
    }
    faults
}

/// The operations whose JSON answers are what another party wrote, relayed
/// as it is: an upstream's OpenAI-compatible answers through the model
/// gateway, an MCP server's JSON-RPC messages. They alone may declare a
/// bare `object`.
const PASSTHROUGHS: [&str; 4] = [
    "POST /gateway/v1/chat/completions",
    "POST /gateway/v1/embeddings",
    "POST /gateway/v1/responses",
    "POST /mcp/{server}",
];

/// Issue 13, item 7: most operations answered `Json<Value>` and declared a
/// bare `200`, so a generated client got untyped dictionaries; then the
/// close, the statement, its evidence, economics, ROI, the budget check and
/// the OTLP reply still declared a bare `object`. Every operation of the
/// served document has a unique operationId and at least one 2xx answer
/// whose content names a schema (a 204, or a 3xx, has no content to
/// name), and no 2xx content of any operation but the [`PASSTHROUGHS`] is
/// a schema that says nothing (`{}`, or an `object` with no properties);
/// each offender is listed.
#[test]
fn openapi_operations_have_unique_ids_and_typed_success_replies() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        let (s, doc, _) = server
            .call(Method::GET, "/openapi.json", None, None, Vec::new())
            .await;
        assert_eq!(s, StatusCode::OK, "{label}");
        let mut ids = std::collections::BTreeMap::new();
        let mut offenders = Vec::new();
        let mut passthroughs = Vec::new();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                operations += 1;
                let at = format!("{} {path}", method.to_uppercase());
                match op["operationId"].as_str() {
                    None => offenders.push(format!("{at}: no operationId")),
                    Some(id) => {
                        if let Some(first) = ids.insert(id.to_owned(), at.clone()) {
                            offenders.push(format!("{at}: operationId {id} also names {first}"));
                        }
                    }
                }
                let responses = op["responses"].as_object().cloned().unwrap_or_default();
                let typed = responses.iter().any(|(status, reply)| {
                    let reply = match reply["$ref"].as_str() {
                        Some(r) => {
                            let name = r.trim_start_matches("#/components/responses/");
                            &doc["components"]["responses"][name]
                        }
                        None => reply,
                    };
                    let content = reply["content"].as_object();
                    match status.as_bytes().first() {
                        Some(b'2') if status == "204" => content.is_none_or(|c| c.is_empty()),
                        Some(b'2') => content.is_some_and(|c| {
                            !c.is_empty()
                                && c.values().all(|media| {
                                    media["schema"].as_object().is_some_and(|s| !s.is_empty())
                                })
                        }),
                        Some(b'3') => content.is_none_or(|c| c.is_empty()),
                        _ => false,
                    }
                });
                if !typed {
                    let id = op["operationId"].as_str().unwrap_or("(none)");
                    offenders.push(format!(
                        "{at} ({id}): no 2xx answer with a schema (nor a bare 204 or 3xx)"
                    ));
                }
                if PASSTHROUGHS.contains(&at.as_str()) {
                    passthroughs.push(at.clone());
                    continue;
                }
                for (status, reply) in responses.iter().filter(|(s, _)| s.starts_with('2')) {
                    let content = reply["content"].as_object().cloned().unwrap_or_default();
                    for (media, body) in content {
                        if says_nothing(&doc, &body["schema"]) {
                            offenders.push(format!(
                                "{at} answers {status} {media} with an untyped schema {}: \
                                 name a ToSchema type in its body",
                                body["schema"]
                            ));
                        }
                    }
                }
            }
        }
        passthroughs.sort();
        let mut expected = PASSTHROUGHS.to_vec();
        expected.sort();
        assert_eq!(
            passthroughs, expected,
            "{label}: every passthrough is an operation of the document"
        );
        assert!(operations > 60, "{label}: the document lists the API");
        assert!(
            offenders.is_empty(),
            "{label}: {} of {operations} operations:\n{}",
            offenders.len(),
            offenders.join("\n")
        );
    });
}

/// Whether a schema of `doc` says nothing of what it admits: `{}`, or an
/// object (or an array of them) without properties, a map's values or
/// alternatives to name, its references followed.
fn says_nothing(doc: &Value, schema: &Value) -> bool {
    let schema = match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    };
    let Some(keywords) = schema.as_object() else {
        return true;
    };
    if schema["type"] == "array" {
        return says_nothing(doc, &schema["items"]);
    }
    let names_something = ["properties", "allOf", "oneOf", "anyOf", "enum", "const"]
        .iter()
        .any(|k| keywords.contains_key(*k))
        || schema["additionalProperties"].is_object()
            && !says_nothing(doc, &schema["additionalProperties"]);
    let object_or_untyped = match &schema["type"] {
        Value::Null => true,
        t => t == "object",
    };
    object_or_untyped && !names_something
}

/// Issue 17: LiteLLM's OpenMeter callback posts to `/api/v1/events` (404
/// before) with OpenAI's usage names, and a call that cannot be costed was
/// stored at 0 without a word. The path is served; `prompt_tokens` and
/// `completion_tokens` are read; a call with an unpriced model, without a
/// model or without token counts is stored, flagged in the reply and
/// counted in `/metrics`.
#[test]
fn openmeter_shaped_model_calls_are_read_and_uncostable_ones_flagged() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        let agent = server.key("agent", Some("acme")).await;
        let call = |id: &str, data: Value| {
            json!({"specversion": "1.0", "id": id, "source": "litellm", "type": "llm.call",
                   "subject": "user-7", "time": "2026-11-04T10:00:00Z", "data": data})
        };
        let (s, v, _) = server
            .call(
                Method::POST,
                "/api/v1/events",
                Some(&agent),
                Some(ONE),
                serde_json::to_vec(&call(
                    "lm-1",
                    json!({"model": "gpt-4o", "cost": 0.00017, "prompt_tokens": 40,
                           "completion_tokens": 7, "total_tokens": 47}),
                ))
                .unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        assert_eq!(v["accepted"], 1);
        assert!(v.get("warnings").is_none(), "{label}: priced: {v}");
        let batch = json!([
            call(
                "lm-2",
                json!({"model": "house-model-9", "prompt_tokens": 5})
            ),
            call("lm-3", json!({"model": "gpt-4o"})),
            call("lm-4", json!({"prompt_tokens": 5})),
        ]);
        let (s, v) = server.send(&agent, BATCH, &batch).await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        assert_eq!(v["accepted"], 3, "stored all the same: {v}");
        let codes: Vec<(u64, &str)> = v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["index"].as_u64().unwrap(), w["code"].as_str().unwrap()))
            .collect();
        assert_eq!(
            codes,
            vec![
                (0, "unpriced_model"),
                (1, "no_token_counts"),
                (2, "no_model")
            ],
            "{label}: {v}"
        );
        assert!(v["warnings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("house-model-9"));
        let (_, _, metrics) = server
            .call(Method::GET, "/metrics", None, None, Vec::new())
            .await;
        for code in ["unpriced_model", "no_token_counts", "no_model"] {
            let line = format!("payoff_llm_call_warnings_total{{result=\"{code}\"}} 1");
            assert!(metrics.lines().any(|l| l == line), "{label}: {line}");
        }
    });
}
