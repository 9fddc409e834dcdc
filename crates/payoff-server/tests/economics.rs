//! Cost of service, budgets, prices and ROI through the real API, on
//! every backend. Expected figures are worked out in the comments.

mod common;

use common::{on_every_backend, TestServer};
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
        let (s, v, _) = server
            .call(
                Method::POST,
                "/v1/customers/acme/contracts",
                Some(&operator),
                Some("application/toml"),
                CONTRACT.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");

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
        let now = chrono::Utc::now().to_rfc3339();
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
