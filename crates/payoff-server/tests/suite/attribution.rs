//! Holdout attribution through the real API, on every backend: stable
//! assignments recorded in the ledger, lift billed at its lower bound,
//! a sample-ratio mismatch held until released, too few subjects billed
//! at nothing.

use crate::common::{on_every_backend, TestServer};
use chrono::Datelike;
use payoff_billing::attribution::{assign, proportion_difference, Arm};
use payoff_server::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn contract(min_subjects: u64) -> String {
    let month = payoff_clock::wall();
    format!(
        r#"
[contract]
customer = "acme"
currency = "USD"
starts = "{}-{:02}-01"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed"'
attribution = {{ holdout = 0.2, confidence = 0.95, bill = "lower_bound", experiment = "support", min_subjects = {min_subjects} }}
price = {{ per_unit = "1.50" }}
"#,
        month.year(),
        month.month()
    )
}

fn closed(subject: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("c-{subject}"), "source": "helpdesk", "type": "ticket.closed",
           "subject": subject, "time": payoff_clock::wall().to_rfc3339()})
}

fn period() -> String {
    payoff_clock::wall().format("%Y-%m").to_string()
}

async fn setup(server: &TestServer, min_subjects: u64) -> (String, String) {
    server.customer("acme").await;
    let operator = server.key("operator", None).await;
    let agent = server.key("agent", Some("acme")).await;
    let (s, v, _) = server
        .call(
            Method::POST,
            "/v1/customers/acme/contracts",
            Some(&operator),
            Some("application/toml"),
            contract(min_subjects).into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (operator, agent)
}

fn holdout_line(preview: &Value) -> Value {
    preview["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["attribution"].is_object())
        .cloned()
        .unwrap_or_else(|| panic!("no holdout line in {preview}"))
}

#[test]
fn only_the_lift_over_the_holdout_is_billed() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        let (operator, agent) = setup(&server, 20).await;
        let subjects: Vec<String> = (0..600).map(|i| format!("T-{i}")).collect();

        // Stable: singles, batches and repeats agree, and match the hash.
        let (s, batch) = server
            .json(
                Method::POST,
                "/v1/assignments",
                &agent,
                json!({"experiment": "support", "subjects": subjects}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {batch}");
        let arms: Vec<&str> = batch["assignments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["arm"].as_str().unwrap())
            .collect();
        for (i, s) in subjects.iter().enumerate().step_by(97) {
            let (_, one) = server
                .json(
                    Method::GET,
                    &format!("/v1/assignments/support/{s}"),
                    &agent,
                    Value::Null,
                )
                .await;
            assert_eq!(one["arm"].as_str(), Some(arms[i]), "{s}");
            assert_eq!(assign("acme/support", s, 0.2).name(), arms[i]);
        }
        let (s, again) = server
            .json(
                Method::POST,
                "/v1/assignments",
                &agent,
                json!({"experiment": "support", "subjects": subjects}),
            )
            .await;
        assert_eq!(
            (s, &again["assignments"]),
            (StatusCode::OK, &batch["assignments"]),
            "a retry is harmless"
        );
        let (s, v) = server
            .json(Method::GET, "/v1/assignments/nope/T-1", &agent, Value::Null)
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{v}"
        );
        let (s, _) = server
            .json(
                Method::POST,
                "/v1/assignments",
                &agent,
                json!({"experiment": "support", "subjects": []}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        // The AI resolves 3 in 4 of its tickets; humans 2 in 5 of theirs.
        let mut events = Vec::new();
        let (mut n_ai, mut n_c, mut x_ai, mut x_c) = (0u64, 0u64, 0u64, 0u64);
        for (i, s) in subjects.iter().enumerate() {
            let control = arms[i] == "control";
            let resolved = if control { i % 5 < 2 } else { i % 4 < 3 };
            if control {
                n_c += 1
            } else {
                n_ai += 1
            }
            if resolved {
                if control {
                    x_c += 1
                } else {
                    x_ai += 1
                }
                events.push(closed(s));
            }
        }
        let (s, v) = server
            .send(&agent, "application/cloudevents-batch+json", &json!(events))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let (s, preview) = server
            .json(
                Method::GET,
                &format!("/v1/customers/acme/periods/{}/preview", period()),
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {preview}");
        // The line's figures are as the OpenAPI document declares them.
        let faults = server
            .reply_faults(
                "GET",
                "/v1/customers/{customer}/periods/{period}/preview",
                StatusCode::OK,
                &preview,
            )
            .await;
        assert!(faults.is_empty(), "{label}: {faults:#?}");
        let line = holdout_line(&preview);
        let a = &line["attribution"];
        assert_eq!(a["status"], "billed", "{line}");
        assert_eq!(
            (
                a["ai"]["subjects"].as_u64(),
                a["control"]["subjects"].as_u64()
            ),
            (Some(n_ai), Some(n_c))
        );
        assert_eq!(
            (
                a["ai"]["outcomes"].as_u64(),
                a["control"]["outcomes"].as_u64()
            ),
            (Some(x_ai), Some(x_c))
        );
        // The interval itself is checked against scipy in payoff-billing.
        let interval = proportion_difference(x_ai, n_ai, x_c, n_c, 0.95).unwrap();
        let units = (interval.low.max(0.0) * n_ai as f64).floor() as u64;
        assert!(
            units > 0 && (units as f64) < (x_ai as f64 - n_ai as f64 * x_c as f64 / n_c as f64),
            "{units}"
        );
        assert_eq!(line["quantity"], units.to_string());
        assert_eq!(line["amount"], format!("{:.2}", units as f64 * 1.5));
        assert_eq!(a["low"], format!("{:.9}", interval.low));
        assert!(a["method"].as_str().unwrap().contains("unpooled"), "{a}");
        assert_eq!(preview["total"], line["amount"]);

        // Offline, over the exported ledger (as `payoff contract simulate`
        // does), the same figures come out.
        let mut events = Vec::new();
        let mut cursor = String::new();
        loop {
            let (_, page) = server
                .json(
                    Method::GET,
                    &format!("/v1/events?customer=acme&limit=1000{cursor}"),
                    &operator,
                    Value::Null,
                )
                .await;
            for e in page["events"].as_array().unwrap() {
                events.push(
                    payoff_billing::BillingEvent::from_json(
                        e["sequence"].as_u64().unwrap(),
                        &e["event"],
                    )
                    .unwrap(),
                );
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        let contract = payoff_billing::Contract::parse("c.toml", &contract(20)).unwrap();
        let period_now = payoff_billing::Period::parse(contract.cadence, &period()).unwrap();
        let versions = [payoff_billing::ContractVersion {
            version: 1,
            effective: contract.starts,
            contract: &contract,
        }];
        let offline = payoff_billing::compute(&payoff_billing::CloseInput {
            customer: "acme",
            period: period_now,
            versions: &versions,
            events: &events,
            head: payoff_billing::HeadRef {
                sequence: events.len() as u64,
                hash: String::new(),
            },
            prior: &[],
            issued_at: payoff_clock::wall(),
            kept: None,
        })
        .unwrap();
        let offline_line = offline
            .lines
            .iter()
            .find(|l| l.attribution.is_some())
            .unwrap();
        assert_eq!(
            serde_json::to_value(&offline_line.attribution).unwrap(),
            line["attribution"],
            "{label}"
        );
        assert_eq!(
            offline_line.amount.to_string(),
            line["amount"].as_str().unwrap()
        );
    });
}

#[test]
fn a_sample_ratio_mismatch_holds_the_line_until_released() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        let (operator, agent) = setup(&server, 20).await;
        // An agent that asks only about some control subjects skews the arms.
        let mut asked = Vec::new();
        let (mut ai, mut control) = (0, 0);
        for i in 0..2000 {
            let s = format!("L-{i}");
            match assign("acme/support", &s, 0.2) {
                Arm::Ai if ai < 200 => {
                    ai += 1;
                    asked.push(s)
                }
                Arm::Control if control < 200 => {
                    control += 1;
                    asked.push(s)
                }
                _ => {}
            }
        }
        let (s, _) = server
            .json(
                Method::POST,
                "/v1/assignments",
                &agent,
                json!({"experiment": "support", "subjects": asked}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let resolved: Vec<Value> = asked.iter().take(150).map(|s| closed(s)).collect();
        server
            .send(
                &agent,
                "application/cloudevents-batch+json",
                &json!(resolved),
            )
            .await;
        let preview_path = format!("/v1/customers/acme/periods/{}/preview", period());
        let (_, preview) = server
            .json(Method::GET, &preview_path, &operator, Value::Null)
            .await;
        let line = holdout_line(&preview);
        assert_eq!(line["attribution"]["status"], "held", "{label}: {line}");
        assert_eq!(line["amount"], "0.00");
        let release = format!("/v1/customers/acme/periods/{}/release", period());
        let (s, _) = server
            .json(
                Method::POST,
                &release,
                &agent,
                json!({"experiment": "support"}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = server
            .json(
                Method::POST,
                &release,
                &operator,
                json!({"experiment": "support"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (_, preview) = server
            .json(Method::GET, &preview_path, &operator, Value::Null)
            .await;
        assert_eq!(
            holdout_line(&preview)["attribution"]["status"],
            "billed",
            "{preview}"
        );
    });
}

#[test]
fn too_few_subjects_bill_nothing_and_say_why() {
    on_every_backend(|db_url, _label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        let (operator, agent) = setup(&server, 1000).await;
        let subjects: Vec<String> = (0..50).map(|i| format!("S-{i}")).collect();
        server
            .json(
                Method::POST,
                "/v1/assignments",
                &agent,
                json!({"experiment": "support", "subjects": subjects}),
            )
            .await;
        let resolved: Vec<Value> = subjects.iter().map(|s| closed(s)).collect();
        server
            .send(
                &agent,
                "application/cloudevents-batch+json",
                &json!(resolved),
            )
            .await;
        let (_, preview) = server
            .json(
                Method::GET,
                &format!("/v1/customers/acme/periods/{}/preview", period()),
                &operator,
                Value::Null,
            )
            .await;
        let line = holdout_line(&preview);
        assert_eq!(
            (
                line["attribution"]["status"].as_str(),
                line["amount"].as_str()
            ),
            (Some("insufficient"), Some("0.00"))
        );
        assert!(
            line["description"]
                .as_str()
                .unwrap()
                .contains("at least 1000"),
            "{line}"
        );
    });
}
