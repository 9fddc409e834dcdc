//! Contracts, outcomes, disputes and statements through the real API, on
//! every backend: a two-month life of one customer, checked line by line,
//! then verified offline and tampered with.

use crate::common::{on_every_backend, TestServer};
use payoff_billing::{parse_public_key, verify, Bundle, Statement, VerifyError};
use payoff_server::ServerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const CONTRACT: &str = r#"
[contract]
customer = "acme"
currency = "USD"
period = "monthly"
starts = "2026-09-01"
base_fee = "100.00"
dispute_within = "400d"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
void_when = 'event.type == "ticket.reopened"'
matures_after = "72h"
clawback_within = "30d"
price = { per_unit = "2.50" }
"#;

/// The test's months, written 2026-09, 2026-10 and 2026-11 below, are
/// shifted to the two months before this one and this one: the server stamps
/// decisions (a dispute accepted) with the real clock, and the credit lands
/// in the month that is open now.
fn shift(text: &str) -> String {
    let now = payoff_clock::wall().date_naive();
    let month = |back: u32| {
        let d = now - chrono::Months::new(back);
        d.format("%Y-%m").to_string()
    };
    // One pass, so a month already shifted is not shifted again.
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("2026-") {
        out.push_str(&rest[..at]);
        let token = rest.get(at..at + 7).unwrap_or_default();
        let shifted = match token {
            "2026-09" => month(2),
            "2026-10" => month(1),
            "2026-11" => month(0),
            _ => rest[at..at + 5].to_owned(),
        };
        let used = if shifted.len() == 7 { 7 } else { 5 };
        out.push_str(&shifted);
        rest = &rest[at + used..];
    }
    out.push_str(rest);
    out
}

/// Noon on the last day of the first month: it matures (72 h) in the second.
fn last_noon_of_first_month() -> String {
    let second = chrono::NaiveDate::parse_from_str(&shift("2026-10-01"), "%Y-%m-%d").unwrap();
    format!("{}T12:00:00Z", second.pred_opt().unwrap())
}

fn ev(id: &str, kind: &str, subject: &str, time: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "helpdesk", "type": kind, "subject": subject,
           "time": shift(time), "data": {"resolved_by": "ai"}})
}

impl TestServer {
    async fn toml(&self, path: &str, key: &str, body: &str) -> (StatusCode, Value) {
        let (s, v, _) = self
            .call(
                Method::POST,
                path,
                Some(key),
                Some("application/toml"),
                body.as_bytes().to_vec(),
            )
            .await;
        (s, v)
    }

    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value, String) {
        self.call(Method::GET, path, Some(key), None, Vec::new())
            .await
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.json(Method::POST, path, key, body).await
    }
}

fn kinds_and_amounts(statement: &Value) -> Vec<(String, String)> {
    statement["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_owned(),
                l["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_customer_life_closes_into_verifiable_statements() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        server.customer("other").await;
        let operator = server.key("operator", None).await;
        let agent = server.key("agent", Some("acme")).await;
        let cadmin = server.key("customer_admin", Some("acme")).await;
        let viewer = server.key("customer_viewer", Some("acme")).await;
        let outsider = server.key("customer_admin", Some("other")).await;
        let contracts = "/v1/customers/acme/contracts";

        // Bad contracts: every error, with its position; nothing stored.
        let bad = CONTRACT
            .replace("\"2.50\"", "\"-2.50\"")
            .replace("\"USD\"", "\"USX\"");
        let (s, v) = server.toml(contracts, &operator, &bad).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_contract")),
            "{label}: {v}"
        );
        assert_eq!(v["errors"].as_array().unwrap().len(), 2, "{v}");
        assert!(v["errors"][0]["line"].as_u64().unwrap() > 0);
        let (s, v) = server
            .toml(
                contracts,
                &operator,
                &CONTRACT.replace("\"acme\"", "\"other\""),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            v["detail"].as_str().unwrap().contains("contract.customer"),
            "{v}"
        );
        for key in [&agent, &cadmin, &outsider] {
            let (s, _) = server.toml(contracts, key, CONTRACT).await;
            assert!(
                s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
                "{label}: {s}"
            );
        }
        let (_, v, _) = server.get(contracts, &viewer).await;
        assert_eq!(
            v["contracts"].as_array().unwrap().len(),
            0,
            "nothing was stored: {v}"
        );

        let (s, v) = server.toml(contracts, &operator, &shift(CONTRACT)).await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        assert_eq!(
            (v["version"].as_u64(), v["effective"].as_str()),
            (Some(1), Some(shift("2026-09").as_str()))
        );

        let mut t3 = ev("3", "ticket.closed", "T3", "2026-09-01T00:00:00Z");
        t3["time"] = last_noon_of_first_month().into();
        let september = json!([
            ev("1", "ticket.closed", "T1", "2026-09-05T10:00:00Z"),
            ev("2", "ticket.closed", "T2", "2026-09-10T10:00:00Z"),
            t3,
            ev("4", "ticket.closed", "T4", "2026-09-12T10:00:00Z"),
            ev("5", "ticket.reopened", "T4", "2026-09-13T10:00:00Z"),
        ]);
        let (s, v) = server
            .send(&agent, "application/cloudevents-batch+json", &september)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        // Preview: T1 and T2 matured in September; T3 matures in October; T4 was voided.
        let (s, v, _) = server
            .get(
                &shift("/v1/customers/acme/periods/2026-09/preview"),
                &viewer,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        assert_eq!(
            kinds_and_amounts(&v),
            vec![
                ("base_fee".into(), "100.00".into()),
                ("outcome".into(), "5.00".into())
            ]
        );
        assert_eq!(v["total"], "105.00");

        // Closing: in order, once, only when ended, only by the provider.
        let close = |p: &str| shift(&format!("/v1/customers/acme/periods/{p}/close"));
        let (s, v) = server.post(&close("2026-10"), &operator, Value::Null).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("period_out_of_order")),
            "{v}"
        );
        // A preview of a later period does not wait for that close: it
        // assumes September closes as previewed, and says so.
        let (s, v, _) = server
            .get(
                &shift("/v1/customers/acme/periods/2026-10/preview"),
                &viewer,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        assert_eq!(
            v["assumes_closed_as_previewed"],
            json!([shift("2026-09")]),
            "{v}"
        );
        assert_eq!(
            v["depends_on"],
            json!([format!("st.acme.{}", shift("2026-09"))]),
            "{v}"
        );
        // A period that has not started is not previewed: found by the
        // dashboard fuzz target, `2999-12` previewed every month before it
        // (140 s, 2.1 GB) on the preview, economics and ROI routes.
        for path in [
            "/v1/customers/acme/periods/2999-12/preview",
            "/v1/customers/acme/economics?period=2999-12",
        ] {
            let (s, v, text) = server.get(path, &operator).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{label}: {path}: {v}");
            assert!(
                text.contains("has not started yet"),
                "{label}: {path}: {text}"
            );
        }
        let (s, v) = server.post(&close("2099-01"), &operator, Value::Null).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("period_not_ended")),
            "{v}"
        );
        let (s, _) = server.post(&close("2026-09"), &cadmin, Value::Null).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        // Issue 16: every concurrent closer got 201, and the reply bytes
        // differed from the signed bytes stored. One closer stores the
        // statement and says 201; the others get it with 200; every reply
        // is the stored signed bytes.
        let mut closers = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let request = server
                .http
                .post(format!("{}{}", server.url, close("2026-09")))
                .bearer_auth(&operator);
            closers.spawn(async move {
                let reply = request.send().await.unwrap();
                (reply.status(), reply.text().await.unwrap())
            });
        }
        let replies = closers.join_all().await;
        let created: Vec<&String> = replies
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .map(|(_, text)| text)
            .collect();
        assert_eq!(
            created.len(),
            1,
            "{label}: one closer stores it: {replies:?}"
        );
        let first_text = created[0].clone();
        assert!(
            replies.iter().all(
                |(s, text)| [StatusCode::CREATED, StatusCode::OK].contains(s)
                    && *text == first_text
            ),
            "{label}: every closer answers the one statement: {replies:?}"
        );
        let first: Value = serde_json::from_str(&first_text).unwrap();
        assert_eq!(first["total"], "105.00");
        let (_, _, stored) = server
            .get(
                &format!("/v1/statements/{}", first["id"].as_str().unwrap()),
                &viewer,
            )
            .await;
        assert_eq!(stored, first_text, "the close answers the stored bytes");
        let (s, _, again) = server
            .call(
                Method::POST,
                &close("2026-09"),
                Some(&operator),
                None,
                Vec::new(),
            )
            .await;
        assert_eq!(
            (s, &again),
            (StatusCode::OK, &first_text),
            "closing twice returns the same statement"
        );
        let september_id = first["id"].as_str().unwrap().to_owned();

        // Outcome states and evidence.
        let (_, v, _) = server
            .get("/v1/customers/acme/outcomes?state=billed", &viewer)
            .await;
        let billed: Vec<&str> = v["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["subject"].as_str().unwrap())
            .collect();
        assert_eq!(billed, vec!["T1", "T2"], "{v}");
        let (_, v, _) = server
            .get("/v1/customers/acme/outcomes?subject=T4", &viewer)
            .await;
        assert_eq!(v["outcomes"][0]["state"], "voided", "{v}");
        let (_, v, _) = server
            .get("/v1/customers/acme/outcomes?limit=2", &viewer)
            .await;
        assert_eq!(
            (v["outcomes"].as_array().unwrap().len(), v["total"].as_u64()),
            (2, None),
            "a listing counts only when asked"
        );
        let (_, counted, _) = server
            .get("/v1/customers/acme/outcomes?limit=2&count=true", &viewer)
            .await;
        assert_eq!(counted["total"].as_u64(), Some(4), "{counted}");
        assert!(
            counted["freshness"]["ledger_head"].as_u64().unwrap() > 0,
            "{counted}"
        );
        let (_, page2, _) = server
            .get(
                &format!(
                    "/v1/customers/acme/outcomes?limit=2&cursor={}",
                    v["next_cursor"].as_str().unwrap()
                ),
                &viewer,
            )
            .await;
        assert_eq!(page2["outcomes"].as_array().unwrap().len(), 2);
        assert!(page2["next_cursor"].is_null());
        let (s, v, _) = server
            .get("/v1/customers/acme/outcomes?state=lost", &viewer)
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_query"))
        );
        let (_, v, _) = server
            .get("/v1/customers/acme/outcomes?subject=T2", &viewer)
            .await;
        let t2 = v["outcomes"][0]["id"].as_str().unwrap().to_owned();
        let (_, v, _) = server
            .get("/v1/customers/acme/outcomes?subject=T1", &viewer)
            .await;
        let t1 = v["outcomes"][0]["id"].as_str().unwrap().to_owned();
        let (s, v, _) = server.get(&format!("/v1/outcomes/{t2}"), &viewer).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["evidence"][0]["role"], "created");
        assert_eq!(v["evidence"][0]["event"]["id"], "2");
        assert_eq!(v["billed_in"], september_id.as_str());

        // Only Payoff records dispute steps: the reserved source is refused,
        // and dispute events from any other source are ignored.
        let forged = json!({"specversion": "1.0", "id": "f1", "source": "payoff", "type": "payoff.dispute.opened",
            "subject": "T1", "time": shift("2026-09-06T00:00:00Z"), "data": {"outcome": "ticket_resolved", "subject": "T1"}});
        let (s, v) = server
            .send(&agent, "application/cloudevents+json", &forged)
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_events")),
            "{v}"
        );
        assert!(v["detail"].as_str().unwrap().contains("reserved"), "{v}");
        let mut disguised = forged.clone();
        disguised["source"] = json!("helpdesk");
        let (s, _) = server
            .send(&agent, "application/cloudevents+json", &disguised)
            .await;
        assert_eq!(s, StatusCode::OK);
        let (_, v, _) = server.get(&format!("/v1/outcomes/{t1}"), &viewer).await;
        assert_eq!(
            (v["state"].as_str(), v["disputes"].as_array().unwrap().len()),
            (Some("billed"), 0),
            "{v}"
        );

        // Disputes: customer admins raise, operators decide; one open at a time.
        let disputes = format!("/v1/outcomes/{t2}/disputes");
        let (s, _) = server
            .post(&disputes, &operator, json!({"reason": "x"}))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = server.post(&disputes, &cadmin, json!({})).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{v}"
        );
        let (s, v) = server
            .post(&disputes, &cadmin, json!({"reason": "a human closed it"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["state"], "disputed");
        let (s, v) = server
            .post(&disputes, &cadmin, json!({"reason": "again"}))
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("dispute_not_allowed")),
            "{v}"
        );
        let (s, _) = server
            .post(&format!("{disputes}/accept"), &cadmin, json!({"note": "x"}))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = server
            .post(
                &format!("{disputes}/accept"),
                &operator,
                json!({"note": "agreed"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["disputes"][0]["decision"]["outcome"], "accepted", "{v}");
        let (s, v) = server
            .post(
                &format!("{disputes}/reject"),
                &operator,
                json!({"note": "late"}),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("dispute_not_allowed")),
            "{v}"
        );

        // A late September event, a clawback within 30 days of maturity.
        let late = json!([
            ev("6", "ticket.closed", "T5", "2026-09-15T10:00:00Z"),
            ev("7", "ticket.reopened", "T1", "2026-09-20T10:00:00Z"),
        ]);
        let (s, v) = server
            .send(&agent, "application/cloudevents-batch+json", &late)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, october) = server.post(&close("2026-10"), &operator, Value::Null).await;
        assert_eq!(s, StatusCode::CREATED, "{october}");
        assert_eq!(
            kinds_and_amounts(&october),
            vec![
                ("base_fee".into(), "100.00".into()),
                ("outcome".into(), "2.50".into()),
                ("adjustment".into(), "2.50".into()),
                ("adjustment".into(), "-2.50".into()),
            ],
            "{label}: {october}"
        );
        assert_eq!(october["total"], "102.50");
        assert_eq!(october["lines"][3]["outcomes"][0], t1.as_str());
        assert_eq!(october["depends_on"][0], september_id.as_str());

        // A new version only governs periods not closed yet.
        let v2 = shift(CONTRACT).replace("\"2.50\"", "\"3.00\"");
        let (s, v) = server
            .toml(
                &shift(&format!("{contracts}?effective=2026-10")),
                &operator,
                &v2,
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("already_exists")),
            "{v}"
        );
        let (s, v) = server
            .toml(
                &shift(&format!("{contracts}?effective=2026-11")),
                &operator,
                &v2,
            )
            .await;
        assert_eq!(
            (s, v["version"].as_u64()),
            (StatusCode::CREATED, Some(2)),
            "{v}"
        );

        // The dispute was accepted in November: its credit lands on November's
        // statement, priced by the version that billed September.
        let (s, november, _) = server
            .get(
                &shift("/v1/customers/acme/periods/2026-11/preview"),
                &viewer,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{november}");
        assert_eq!(
            kinds_and_amounts(&november),
            vec![
                ("base_fee".into(), "100.00".into()),
                ("dispute_credit".into(), "-2.50".into())
            ],
            "{label}: {november}"
        );
        assert_eq!(november["contract"]["version"], 2);
        assert_eq!(november["lines"][1]["outcomes"][0], t2.as_str());
        assert_eq!(november["lines"][1]["contract_version"], 1);

        // Offline verification with the published key, then tampering.
        let (_, keys, _) = server
            .call(
                Method::GET,
                "/.well-known/payoff/keys",
                None,
                None,
                Vec::new(),
            )
            .await;
        let key = parse_public_key(keys["keys"][0]["public_key"].as_str().unwrap()).unwrap();
        let october_id = october["id"].as_str().unwrap();
        let (s, _, statement_text) = server
            .get(&format!("/v1/statements/{october_id}"), &viewer)
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, _, bundle_text) = server
            .get(&format!("/v1/statements/{october_id}/evidence"), &viewer)
            .await;
        assert_eq!(s, StatusCode::OK);
        let statement: Statement = serde_json::from_str(&statement_text).unwrap();
        let bundle: Bundle = serde_json::from_str(&bundle_text).unwrap();
        let verified = verify(&statement, &bundle, &key).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(verified.total.to_string(), "102.50");
        // The statement names its key by the id the document publishes.
        let id = statement
            .signature
            .as_ref()
            .unwrap()
            .key_id
            .clone()
            .unwrap();
        assert_eq!(keys["keys"][0]["key_id"], id.as_str(), "{label}: {keys}");
        assert_eq!(id, payoff_billing::key_id(&key));

        // Tampering is found and located.
        let mut altered = statement.clone();
        altered.total = "90.00".parse().unwrap();
        match verify(&altered, &bundle, &key) {
            Err(VerifyError::Differs {
                path,
                stated,
                recomputed,
            }) => {
                assert_eq!(
                    (path.as_str(), stated.as_str(), recomputed.as_str()),
                    ("total", "\"90.00\"", "\"102.50\"")
                );
            }
            other => panic!("{label}: {other:?}"),
        }
        let mut altered = statement.clone();
        altered.issued_at = "2030-01-01T00:00:00Z".parse().unwrap();
        assert!(matches!(
            verify(&altered, &bundle, &key),
            Err(VerifyError::Signature { .. })
        ));
        let other_key = parse_public_key(&"11".repeat(32)).unwrap_or(key);
        assert!(verify(&statement, &bundle, &other_key).is_err());
        let mut altered = bundle.clone();
        altered.events[2].event = altered.events[2].event.replace("T3", "T9");
        match verify(&statement, &altered, &key) {
            Err(VerifyError::Event { sequence: 3, .. }) => {}
            other => panic!("{label}: {other:?}"),
        }
        let mut altered = bundle.clone();
        altered.contracts[0].toml = altered.contracts[0].toml.replace("2.50", "2.60");
        assert!(matches!(
            verify(&statement, &altered, &key),
            Err(VerifyError::Contract { version: 1, .. })
        ));

        // Another tenant sees none of it.
        let (_, v, _) = server.get("/v1/customers/acme/outcomes", &outsider).await;
        assert_eq!(v["code"], "not_found");
        for path in [
            format!("/v1/outcomes/{t1}"),
            format!("/v1/statements/{october_id}"),
            format!("/v1/statements/{october_id}/evidence"),
            shift("/v1/customers/acme/periods/2026-11/preview"),
            "/v1/customers/acme/statements".into(),
            "/v1/customers/acme/contracts".into(),
        ] {
            let (s, v, _) = server.get(&path, &outsider).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{label}: {path}: {v}");
        }
        let (s, _) = server
            .post(&disputes, &outsider, json!({"reason": "mine"}))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = server.get("/v1/customers/acme/outcomes", &agent).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "agents do not read billing");
        let (s, _, _) = server
            .get(&shift("/v1/statements/st.nobody.2026-09"), &operator)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    });
}

/// The line kinds and optional members a statement carries: included
/// units, graduated tiers, a share of a value, a missed service level, a
/// minimum, and (in the second month) adjustments of the first.
const EVERY_LINE: &str = r#"
[contract]
customer = "acme"
currency = "USD"
period = "monthly"
starts = "2026-09-01"
base_fee = "50.00"
minimum = "100.00"
baseline_unit_cost = "6.00"
licence_equivalent = "1200.00"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
void_when = 'event.type == "ticket.reopened"'
clawback_within = "30d"
included = 1
price = { per_unit = "1.00" }

[[outcome]]
name = "lead_qualified"
when = 'event.type == "lead.qualified"'
price = { tiers = [ { up_to = 2, price = "5.00" }, { price = "2.50" } ], mode = "graduated" }

[[outcome]]
name = "deal_won"
when = 'event.type == "deal.won"'
value = 'event.data.amount'
price = { percent_of = "value", rate = "0.05" }

[[service_level]]
name = "answer_accuracy"
numerator = 'event.type == "review.done" && event.data.correct == true'
denominator = 'event.type == "review.done"'
at_least = "0.9"
credit = "10%"
"#;

/// Issue 13, item 7: the close, the stored statement, its evidence, the
/// preview, economics, ROI and the budget check answered JSON their
/// operations declared as a bare `object`. Each real answer, on
/// statements with most line kinds, is checked member by member against
/// the schema the served document declares for it (a member the schema
/// does not list, a required one missing, a wrong type, a decimal or time
/// that does not parse are faults), and the check is shown to catch each.
#[test]
fn openapi_schemas_describe_the_statements_and_reports_as_sent() {
    on_every_backend(|db_url, label| async move {
        let server = TestServer::start(&db_url, ServerConfig::default()).await;
        server.customer("acme").await;
        let admin = server.admin.clone();
        let agent = server.key("agent", Some("acme")).await;
        server
            .upload_contract(&admin, "acme", &shift(EVERY_LINE))
            .await;
        let with = |mut event: Value, data: Value| {
            event["data"] = data;
            event
        };
        let september = json!([
            ev("t1", "ticket.closed", "T1", "2026-09-05T10:00:00Z"),
            ev("t2", "ticket.closed", "T2", "2026-09-06T10:00:00Z"),
            ev("t3", "ticket.closed", "T3", "2026-09-07T10:00:00Z"),
            ev("l1", "lead.qualified", "L1", "2026-09-08T10:00:00Z"),
            ev("l2", "lead.qualified", "L2", "2026-09-08T11:00:00Z"),
            ev("l3", "lead.qualified", "L3", "2026-09-08T12:00:00Z"),
            with(
                ev("d1", "deal.won", "D1", "2026-09-09T10:00:00Z"),
                json!({"amount": "300.00"})
            ),
            with(
                ev("r1", "review.done", "R1", "2026-09-10T10:00:00Z"),
                json!({"correct": true})
            ),
            with(
                ev("r2", "review.done", "R2", "2026-09-10T11:00:00Z"),
                json!({"correct": false})
            ),
            with(
                ev("c1", "llm.call", "T1", "2026-09-05T09:00:00Z"),
                json!({"model": "gpt-4o", "input_tokens": 1000, "output_tokens": 10, "agent": "support"})
            ),
        ]);
        let (s, v) = server
            .send(&agent, "application/cloudevents-batch+json", &september)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let close = "/v1/customers/{customer}/periods/{period}/close";
        let close_path = |p: &str| shift(&format!("/v1/customers/acme/periods/{p}/close"));
        let mut faults = Vec::new();
        let (s, first) = server
            .post(&close_path("2026-09"), &admin, Value::Null)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {first}");
        let kinds: Vec<String> = kinds_and_amounts(&first)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for kind in ["base_fee", "outcome", "tier", "service_credit", "minimum"] {
            assert!(
                kinds.iter().any(|k| k == kind),
                "{label}: no {kind} line: {first}"
            );
        }
        assert!(
            first["lines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["included"] == "1"),
            "{label}: {first}"
        );
        let mut check = |what: &str, reply_faults: Vec<String>| {
            faults.extend(reply_faults.into_iter().map(|f| format!("{what}: {f}")));
        };
        check(
            "close (201)",
            server
                .reply_faults("POST", close, StatusCode::CREATED, &first)
                .await,
        );
        let (s, again) = server
            .post(&close_path("2026-09"), &admin, Value::Null)
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {again}");
        check(
            "close (200)",
            server
                .reply_faults("POST", close, StatusCode::OK, &again)
                .await,
        );

        // A late ticket of September and a clawback: October adjusts it.
        let late = json!([
            ev("t4", "ticket.closed", "T4", "2026-09-20T10:00:00Z"),
            ev("t5", "ticket.reopened", "T1", "2026-10-02T10:00:00Z"),
        ]);
        let (s, v) = server
            .send(&agent, "application/cloudevents-batch+json", &late)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, october) = server
            .post(&close_path("2026-10"), &admin, Value::Null)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {october}");
        assert!(
            october["lines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["kind"] == "adjustment" && l["contract_version"] == 1),
            "{label}: {october}"
        );
        check(
            "close (201, adjustments)",
            server
                .reply_faults("POST", close, StatusCode::CREATED, &october)
                .await,
        );

        let id = october["id"].as_str().unwrap();
        let september_name = shift("2026-09");
        let reads = [
            ("GET", "/v1/statements/{id}", format!("/v1/statements/{id}")),
            (
                "GET",
                "/v1/statements/{id}/evidence",
                format!("/v1/statements/{id}/evidence"),
            ),
            (
                "GET",
                "/v1/customers/{customer}/periods/{period}/preview",
                format!("/v1/customers/acme/periods/{september_name}/preview"),
            ),
            (
                "GET",
                "/v1/customers/{customer}/periods/{period}/preview",
                shift("/v1/customers/acme/periods/2026-11/preview"),
            ),
            (
                "GET",
                "/v1/customers/{customer}/economics",
                format!("/v1/customers/acme/economics?period={september_name}"),
            ),
            (
                "GET",
                "/v1/customers/{customer}/roi",
                format!("/v1/customers/acme/roi?period={september_name}"),
            ),
            (
                "GET",
                "/v1/budgets/check",
                "/v1/budgets/check?customer=acme".into(),
            ),
        ];
        for (method, template, path) in &reads {
            let (s, reply, _) = server.get(path, &admin).await;
            assert_eq!(s, StatusCode::OK, "{label}: {path}: {reply}");
            check(path, server.reply_faults(method, template, s, &reply).await);
        }
        // A budget set: the check's limits are decimals, not null.
        let (s, v) = server
            .json(
                Method::PUT,
                "/v1/customers/acme/budgets",
                &admin,
                json!({"customer": {"limit": "10", "warn_at": "0"}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        let (s, budget, _) = server
            .get("/v1/budgets/check?customer=acme&agent=support", &admin)
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {budget}");
        assert!(
            budget["limit"].is_string() && budget["warning"] == true,
            "{budget}"
        );
        check(
            "budget check",
            server
                .reply_faults("GET", "/v1/budgets/check", s, &budget)
                .await,
        );
        assert!(faults.is_empty(), "{label}: {faults:#?}");

        // The check catches what it is for: a member the schema does not
        // list, one missing, a line's wrong type, a decimal that is not one.
        let mut altered = first.clone();
        altered["surprise"] = json!(1);
        altered.as_object_mut().unwrap().remove("total");
        altered["lines"][0]["amount"] = json!(50);
        altered["lines"][1]["unit_price"] = json!("one");
        altered["lines"][1]["extra"] = json!("x");
        let found = server
            .reply_faults("POST", close, StatusCode::CREATED, &altered)
            .await;
        let mut at: Vec<&str> = found.iter().map(|f| f.split(':').next().unwrap()).collect();
        at.sort();
        assert_eq!(
            at,
            [
                "$",
                "$.lines[0].amount",
                "$.lines[1].extra",
                "$.lines[1].unit_price",
                "$.surprise"
            ],
            "{found:#?}"
        );
    });
}
