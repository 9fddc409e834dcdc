//! The support agent through the real API, on every backend: replies,
//! approvals, escalations, the holdout, the kill switch, permissions,
//! tickets from the ledger, and the audit trail of every act.

use crate::common::{eventually, on_every_backend, TestServer};
use chrono::Datelike;
use payoff_billing::attribution::{assign, Arm};
use payoff_server::support::{Pass, SupportConfig, Worker};
use payoff_server::{Background, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn contract(customer: &str) -> String {
    let now = payoff_clock::wall();
    format!(
        r#"
[contract]
customer = "{customer}"
currency = "USD"
starts = "{}-{:02}-01"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.ai_replied"'
attribution = {{ holdout = 0.2, confidence = 0.95, bill = "lower_bound", experiment = "support" }}
price = {{ per_unit = "1.50" }}
"#,
        now.year(),
        now.month(),
    )
}

/// Ticket ids of the arm wanted, as the server will assign them.
fn ticket_in(arm: Arm, n: usize) -> String {
    ticket_in_for("acme", arm, n)
}

fn ticket_in_for(customer: &str, arm: Arm, n: usize) -> String {
    (0..)
        .map(|i| format!("T-{n}-{i}"))
        .find(|t| assign(&format!("{customer}/support"), t, 0.2) == arm)
        .unwrap()
}

struct Fixture {
    server: TestServer,
    customer: String,
    operator: String,
    agent: String,
    approver: String,
    viewer: String,
    outsider: String,
}

async fn setup(db_url: &str, config: SupportConfig) -> Fixture {
    let server = TestServer::start_with(db_url, ServerConfig::default(), |s| {
        s.with_support(config).unwrap()
    })
    .await;
    Fixture::on(server, "acme").await
}

impl Fixture {
    /// A customer `customer` (and another, `<customer>-other`) with a
    /// holdout contract, keys of every role and three articles.
    async fn on(server: TestServer, customer: &str) -> Fixture {
        let outsider_customer = format!("{customer}-other");
        server.customer(customer).await;
        server.customer(&outsider_customer).await;
        let operator = server.key("operator", None).await;
        let (s, v, _) = server
            .call(
                Method::POST,
                &format!("/v1/customers/{customer}/contracts"),
                Some(&operator),
                Some("application/toml"),
                contract(customer).into_bytes(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let approver = server.key("customer_admin", Some(customer)).await;
        let docs = json!([
            {"id": "returns", "title": "Returning an item", "url": "https://help.acme.test/returns",
             "body": "# Returns\nYou can return an item within 30 days of delivery. Print the prepaid return label from your account page and drop the parcel at any post office."},
            {"id": "refunds", "title": "Refunds", "body": "# Refunds\nRefunds are paid to the original card within five business days after the returned parcel arrives at our warehouse."},
            {"id": "vip", "title": "VIP shipping", "groups": ["vip"],
             "body": "# VIP shipping\nVIP members get free express shipping on every order placed before noon."},
        ]);
        let (s, v) = server
            .json(Method::POST, "/v1/knowledge/documents", &approver, docs)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        Fixture {
            agent: server.key("agent", Some(customer)).await,
            viewer: server.key("customer_viewer", Some(customer)).await,
            outsider: server.key("customer_admin", Some(&outsider_customer)).await,
            approver,
            operator,
            server,
            customer: customer.to_owned(),
        }
    }
    async fn ticket(
        &self,
        id: &str,
        subject: &str,
        body: &str,
        groups: &[&str],
    ) -> (StatusCode, Value) {
        self.server
            .json(
                Method::POST,
                "/v1/agents/support/tickets",
                &self.agent,
                json!({"id": id, "subject": subject, "body": body, "requester": "jane@example.com", "groups": groups}),
            )
            .await
    }

    /// The approval queue with `status`, as the approver reads it.
    async fn approvals(&self, status: &str) -> Value {
        let (s, v) = self
            .server
            .json(
                Method::GET,
                &format!("/v1/approvals?status={status}"),
                &self.approver,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    async fn events_of(&self, kind: &str) -> Vec<Value> {
        let (s, v) = self
            .server
            .json(
                Method::GET,
                &format!(
                    "/v1/events?customer={}&type={kind}&limit=1000",
                    self.customer
                ),
                &self.operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|listed| listed["event"].clone())
            .collect()
    }

    async fn audit(&self, query: &str) -> Vec<Value> {
        let (s, v) = self
            .server
            .json(
                Method::GET,
                &format!("/v1/audit?customer={}&{query}", self.customer),
                &self.operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["records"].as_array().unwrap().clone()
    }
}

const RETURN_SUBJECT: &str = "Return label";
const RETURN_BODY: &str = "Where do I print the return label?";

#[test]
fn a_confident_reply_goes_out_with_citations_and_leaves_records() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let id = ticket_in(Arm::Ai, 1);
        let (s, v) = f.ticket(&id, RETURN_SUBJECT, RETURN_BODY, &[]).await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        assert_eq!(v["status"], "replied", "{label}: {v}");
        assert_eq!(v["arm"], "ai");
        assert_eq!(v["category"], "returns");
        assert!(v["reply"].as_str().unwrap().contains("[1]"), "{v}");
        assert_eq!(v["citations"][0]["doc_id"], "returns");
        assert_eq!(v["policy_ids"], json!(["builtin.auto_send"]));

        let replies = f.events_of("ticket.ai_replied").await;
        assert_eq!(replies.len(), 1, "{label}");
        assert_eq!(replies[0]["subject"], id.as_str());
        assert_eq!(replies[0]["source"], "payoff");
        assert_eq!(f.events_of("ticket.created").await.len(), 1);
        assert_eq!(f.events_of("payoff.assignment").await.len(), 1);

        let acts = f.audit("actor=agent:support").await;
        assert_eq!(acts.len(), 1, "{label}: {acts:?}");
        assert_eq!(acts[0]["action"], "send_reply");
        assert_eq!(acts[0]["resource"], format!("ticket/{id}"));
        assert_eq!(acts[0]["policy_ids"], json!(["builtin.auto_send"]));

        // The same ticket again: nothing new happens.
        let (s, v) = f.ticket(&id, RETURN_SUBJECT, RETURN_BODY, &[]).await;
        assert_eq!(
            (s, v["status"].as_str()),
            (StatusCode::OK, Some("already_handled")),
            "{v}"
        );
        assert_eq!(f.events_of("ticket.ai_replied").await.len(), 1);
        // The same id with other content is a conflict.
        let (s, v) = f.ticket(&id, "Something else", RETURN_BODY, &[]).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
    })
}

#[test]
fn control_tickets_are_left_to_people_and_unknown_questions_escalate() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let control = ticket_in(Arm::Control, 2);
        let (_, v) = f.ticket(&control, RETURN_SUBJECT, RETURN_BODY, &[]).await;
        assert_eq!(
            (v["status"].as_str(), v["arm"].as_str()),
            (Some("left_to_humans"), Some("control")),
            "{label}: {v}"
        );

        let unknown = ticket_in(Arm::Ai, 3);
        let (_, v) = f
            .ticket(
                &unknown,
                "Quantum entanglement",
                "Explain quantum chromodynamics gluon confinement",
                &[],
            )
            .await;
        assert_eq!(v["status"], "escalated", "{v}");
        assert_eq!(v["policy_ids"], json!(["builtin.no_answer"]));
        assert!(f.events_of("ticket.ai_replied").await.is_empty());
        let escalated = f.events_of("ticket.escalated").await;
        assert_eq!(escalated.len(), 1);
        assert_eq!(escalated[0]["subject"], unknown.as_str());
    })
}

#[test]
fn the_requesters_groups_bound_what_the_agent_reads() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let q = (
            "Express shipping for VIP",
            "Do VIP members get free express shipping before noon?",
        );
        let outsider = ticket_in(Arm::Ai, 4);
        let (_, v) = f.ticket(&outsider, q.0, q.1, &[]).await;
        assert!(
            !v.to_string().contains("VIP members get free"),
            "{label}: a restricted article leaked: {v}"
        );
        assert!(
            v["citations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["doc_id"] != "vip"),
            "{v}"
        );
        let member = ticket_in(Arm::Ai, 5);
        let (_, v) = f.ticket(&member, q.0, q.1, &["vip"]).await;
        assert_eq!(v["citations"][0]["doc_id"], "vip", "{label}: {v}");

        // Issue 15, finding 3: a customer admin (not an agent) handed the
        // agent a ticket read as a group it does not hold, and every viewer
        // then read the draft. Refused by every door: the ticket route (an
        // agent's), a `ticket.created` event, and a key minted with the group.
        let forged = ticket_in(Arm::Ai, 6);
        let tickets_before = f.events_of("ticket.created").await.len();
        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/agents/support/tickets",
                &f.approver,
                json!({"id": forged, "subject": q.0, "body": q.1, "requester": "x@example.com", "groups": ["vip"]}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{label}: {v}");
        let event = json!({"specversion": "1.0", "id": forged, "source": "helpdesk", "type": "ticket.created",
            "subject": forged, "data": {"subject": q.0, "body": q.1, "requester": "x@example.com", "groups": ["vip"]}});
        let (s, v) = f
            .server
            .send(&f.approver, "application/cloudevents+json", &event)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{label}: {v}");
        assert!(v["detail"].as_str().unwrap().contains("data.groups"), "{v}");
        assert_eq!(
            f.events_of("ticket.created").await.len(),
            tickets_before,
            "{label}: nothing stored"
        );
        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/keys",
                &f.approver,
                json!({"role": "customer_viewer", "customer": "acme", "groups": ["vip"]}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{label}: {v}");
        // A key that holds the group may pass it on; the agent's key acts
        // for anyone.
        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/keys",
                &f.operator,
                json!({"role": "customer_admin", "customer": "acme", "groups": ["vip"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let vip_admin = v["key"].as_str().unwrap().to_owned();
        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/keys",
                &vip_admin,
                json!({"role": "customer_viewer", "customer": "acme", "groups": ["vip"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        let (s, v) = f
            .server
            .send(&f.agent, "application/cloudevents+json", &event)
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
    })
}

/// Issue 15, finding 3: a draft written from a group's documents was read
/// by every viewer of the customer in `/v1/approvals`. It is withheld from
/// keys that do not hold the groups the ticket was read as, and they may
/// not decide it; a key that holds them sees and decides it.
#[test]
fn drafts_read_as_groups_are_shown_only_to_readers_of_those_groups() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let ticket = ticket_in(Arm::Ai, 31);
        let (_, v) = f
            .ticket(
                &ticket,
                "Refund payment",
                "When will my refund be paid to my card?",
                &["vip"],
            )
            .await;
        assert_eq!(v["status"], "awaiting_approval", "{label}: {v}");
        let approval = v["approval"].as_str().unwrap().to_owned();
        let queue = |key: String| {
            let server = &f.server;
            async move {
                let (s, v) = server
                    .json(
                        Method::GET,
                        "/v1/approvals?status=pending",
                        &key,
                        Value::Null,
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{v}");
                v["approvals"][0]["request"].clone()
            }
        };
        let seen = queue(f.viewer.clone()).await;
        assert!(seen["reply"].is_null(), "{label}: {seen}");
        assert_eq!(seen["citations"], json!([]));
        assert!(seen["withheld"].as_str().unwrap().contains("vip"), "{seen}");
        let path = format!("/v1/approvals/{approval}/approve");
        let (s, v) = f
            .server
            .json(Method::POST, &path, &f.approver, Value::Null)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{label}: deciding blind: {v}");

        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/keys",
                &f.operator,
                json!({"role": "customer_admin", "customer": "acme", "groups": ["vip"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let vip = v["key"].as_str().unwrap().to_owned();
        let seen = queue(vip.clone()).await;
        assert!(
            seen["reply"].as_str().is_some_and(|r| !r.is_empty()),
            "{label}: {seen}"
        );
        assert!(seen.get("withheld").is_none(), "{seen}");
        let (s, v) = f.server.json(Method::POST, &path, &vip, Value::Null).await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");

        // The same draft is in the ledger's records of the request, the
        // decision and the reply sent: `/v1/events` withholds their data
        // from the keys that may not read it, and shows it to the ones that may.
        let records = |key: String| {
            let server = &f.server;
            let ticket = ticket.clone();
            async move {
                let (s, v) = server
                    .json(
                        Method::GET,
                        &format!("/v1/events?customer=acme&subject={ticket}&limit=1000"),
                        &key,
                        Value::Null,
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{v}");
                v["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["event"].clone())
                    .filter(|e| e["source"] == "payoff")
                    .filter(|e| {
                        [
                            "payoff.approval.requested",
                            "payoff.approval.approved",
                            "ticket.ai_replied",
                        ]
                        .contains(&e["type"].as_str().unwrap_or(""))
                    })
                    .collect::<Vec<_>>()
            }
        };
        let hidden = records(f.viewer.clone()).await;
        assert_eq!(hidden.len(), 3, "{label}: {hidden:?}");
        for e in &hidden {
            assert!(e["data"]["reply"].is_null(), "{label}: {e}");
            assert!(e["data"]["citations"].is_null(), "{label}: {e}");
            assert!(
                e["data"]["withheld"].as_str().unwrap().contains("vip"),
                "{e}"
            );
            assert_eq!(e["data"]["read_as"], json!(["vip"]), "{e}");
        }
        let shown = records(vip.clone()).await;
        assert_eq!(shown.len(), 3, "{label}: {shown:?}");
        let replied = shown
            .iter()
            .find(|e| e["type"] == "ticket.ai_replied")
            .unwrap();
        assert!(
            replied["data"]["reply"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{replied}"
        );
        assert!(
            shown.iter().all(|e| e["data"].get("withheld").is_none()),
            "{shown:?}"
        );
    })
}

#[test]
fn approvals_are_approved_with_edits_rejected_and_decided_once() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let billing = "When will my refund be paid to my card?";
        let first = ticket_in(Arm::Ai, 6);
        let (_, v) = f.ticket(&first, "Refund payment", billing, &[]).await;
        assert_eq!(v["status"], "awaiting_approval", "{label}: {v}");
        assert_eq!(v["category"], "billing");
        let approval = v["approval"].as_str().unwrap().to_owned();

        let (s, v) = f
            .server
            .json(
                Method::GET,
                "/v1/approvals?status=pending",
                &f.viewer,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let queue = v["approvals"].as_array().unwrap();
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0]["id"], approval.as_str());
        assert_eq!(queue[0]["request"]["citations"][0]["doc_id"], "refunds");
        assert!(queue[0]["request"]["reply"]
            .as_str()
            .unwrap()
            .contains("five business days"));

        // Viewers, agents and other customers may not decide.
        let path = format!("/v1/approvals/{approval}/approve");
        let (s, _) = f
            .server
            .json(Method::POST, &path, &f.viewer, Value::Null)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = f
            .server
            .json(Method::POST, &path, &f.agent, Value::Null)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = f
            .server
            .json(Method::POST, &path, &f.outsider, Value::Null)
            .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "another customer's approval does not exist for it"
        );
        let (s, v) = f
            .server
            .json(Method::POST, &path, &f.approver, json!({"text": ""}))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["detail"].as_str().unwrap().starts_with("text:"), "{v}");

        let edited = "Your refund reaches your card within five business days. [1]";
        let (s, v) = f
            .server
            .json(Method::POST, &path, &f.approver, json!({"text": edited}))
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        assert_eq!(v["status"], "approved");
        assert_eq!(v["final_text"], edited);
        let (s, v) = f
            .server
            .json(
                Method::POST,
                &format!("/v1/approvals/{approval}/reject"),
                &f.approver,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["code"], "already_decided");
        let replies = f.events_of("ticket.ai_replied").await;
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0]["data"]["reply"], edited);
        let approver_id = f.approver.split('_').nth(1).unwrap();
        assert_eq!(replies[0]["data"]["approved_by"], approver_id);

        let second = ticket_in(Arm::Ai, 7);
        let (_, v) = f.ticket(&second, "Refund payment", billing, &[]).await;
        let approval2 = v["approval"].as_str().unwrap().to_owned();
        let (s, v) = f
            .server
            .json(
                Method::POST,
                &format!("/v1/approvals/{approval2}/reject"),
                &f.approver,
                json!({"reason": "tone"}),
            )
            .await;
        assert_eq!(
            (s, v["status"].as_str()),
            (StatusCode::OK, Some("rejected")),
            "{v}"
        );
        let escalated = f.events_of("ticket.escalated").await;
        assert_eq!(escalated.len(), 1);
        assert_eq!(escalated[0]["subject"], second.as_str());

        let decisions = f.audit("action=approve&decision=allow").await;
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        assert_eq!(decisions[0]["resource"], format!("approval/{approval}"));
        assert_eq!(f.audit("action=reject&decision=allow").await.len(), 1);
    })
}

#[test]
fn the_kill_switch_stops_every_act_until_resumed() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let queued = ticket_in(Arm::Ai, 8);
        let (_, v) = f
            .ticket(
                &queued,
                "Refund payment",
                "When will my refund be paid to my card?",
                &[],
            )
            .await;
        let approval = v["approval"].as_str().unwrap().to_owned();

        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/agents/support/pause",
                &f.viewer,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/agents/support/pause",
                &f.approver,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        assert_eq!(v["customer"], "acme");

        let id = ticket_in(Arm::Ai, 9);
        let (_, v) = f.ticket(&id, RETURN_SUBJECT, RETURN_BODY, &[]).await;
        assert_eq!(v["status"], "escalated", "{v}");
        assert!(v["reason"].as_str().unwrap().contains("paused"));
        let (s, v) = f
            .server
            .json(
                Method::POST,
                &format!("/v1/approvals/{approval}/approve"),
                &f.approver,
                Value::Null,
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("agent_paused")),
            "{v}"
        );
        assert!(f.events_of("ticket.ai_replied").await.is_empty());

        let (s, v) = f
            .server
            .json(Method::GET, "/v1/agents/support", &f.viewer, Value::Null)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["paused"].as_array().unwrap().len(), 1, "{v}");
        let (_, v) = f
            .server
            .json(Method::GET, "/v1/agents/support", &f.outsider, Value::Null)
            .await;
        assert!(
            v["paused"].as_array().unwrap().is_empty(),
            "acme's pause is not globex's business: {v}"
        );

        let (s, _) = f
            .server
            .json(
                Method::POST,
                "/v1/agents/support/resume",
                &f.approver,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = f
            .server
            .json(
                Method::POST,
                &format!("/v1/approvals/{approval}/approve"),
                &f.approver,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let next = ticket_in(Arm::Ai, 10);
        let (_, v) = f.ticket(&next, RETURN_SUBJECT, RETURN_BODY, &[]).await;
        assert_eq!(v["status"], "replied", "{v}");

        // A provider pause without a customer stops the agent for everyone.
        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/agents/support/pause",
                &f.operator,
                Value::Null,
            )
            .await;
        assert_eq!(
            (s, v["customer"].as_str()),
            (StatusCode::OK, Some("*")),
            "{v}"
        );
        let last = ticket_in(Arm::Ai, 11);
        let (_, v) = f.ticket(&last, RETURN_SUBJECT, RETURN_BODY, &[]).await;
        assert_eq!(v["status"], "escalated", "{v}");
        let (s, _) = f
            .server
            .json(
                Method::POST,
                "/v1/agents/No-Body/pause",
                &f.operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    })
}

/// A server whose support agent works only when the test ticks it.
fn manual() -> ServerConfig {
    ServerConfig {
        background: Background::Manual,
        ..ServerConfig::default()
    }
}

/// A `ticket.created` event as a help desk sends it to the ledger.
fn ticket_event(id: &str, subject: &str, body: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "helpdesk", "type": "ticket.created", "subject": id,
           "data": {"subject": subject, "body": body, "requester": "sam@example.com", "groups": []}})
}

#[test]
fn tickets_sent_as_ledger_events_are_worked_and_expired_approvals_escalate() {
    on_every_backend(|db_url, label| async move {
        let config = SupportConfig {
            approval_ttl: chrono::Duration::zero(),
            ..SupportConfig::default()
        };
        let server =
            TestServer::start_with(&db_url, manual(), |s| s.with_support(config).unwrap()).await;
        let f = Fixture::on(server, "acme").await;
        let replied = ticket_in(Arm::Ai, 12);
        let queued = ticket_in(Arm::Ai, 13);
        let batch = json!([
            ticket_event(&replied, RETURN_SUBJECT, RETURN_BODY),
            ticket_event(
                &queued,
                "Refund payment",
                "When will my refund be paid to my card?"
            ),
        ]);
        let (s, v) = f
            .server
            .send(&f.agent, "application/cloudevents-batch+json", &batch)
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        // One pass works both tickets; the queued reply, with no time to
        // wait, expires in the same pass's sweep.
        let pass = Worker::default().tick(&f.server.state).await.unwrap();
        assert_eq!(
            pass,
            Pass {
                tickets: 2,
                swept: true,
                approvals_expired: 1,
                actions_expired: 0
            },
            "{label}"
        );
        assert_eq!(f.events_of("ticket.ai_replied").await.len(), 1, "{label}");
        assert_eq!(f.events_of("ticket.escalated").await.len(), 1, "{label}");
        let v = f.approvals("expired").await;
        assert_eq!(v["approvals"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["approvals"][0]["ticket"], queued.as_str());
        assert_eq!(
            f.events_of("ticket.ai_replied").await[0]["subject"],
            replied.as_str()
        );
        // Worked once: the next pass finds nothing new.
        let pass = Worker::default().tick(&f.server.state).await.unwrap();
        assert_eq!((pass.tickets, pass.approvals_expired), (0, 0), "{label}");
    })
}

/// The one test of the agent's loop itself: a running server works a
/// ticket from the ledger without being ticked.
#[test]
fn a_running_server_works_ledger_tickets_on_its_own() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let replied = ticket_in(Arm::Ai, 14);
        let (s, v) = f
            .server
            .send(
                &f.agent,
                "application/cloudevents+json",
                &ticket_event(&replied, RETURN_SUBJECT, RETURN_BODY),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        eventually("the reply to the ledger ticket", || async {
            f.events_of("ticket.ai_replied").await.len() == 1
        })
        .await;
    })
}

/// Under a manual clock, an approval expires at the first pass at or
/// after its deadline, and not a microsecond before: the sweep's schedule
/// and the deadline are both read off the server's clock, never off the
/// machine's.
#[test]
fn an_approval_expires_exactly_at_its_deadline_under_a_manual_clock() {
    on_every_backend(|db_url, label| async move {
        let wall = payoff_clock::wall();
        // The month's first instant: inside the contract, before now.
        let start = chrono::NaiveDate::from_ymd_opt(wall.year(), wall.month(), 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        let clock = payoff_clock::Clock::manual(start);
        let ttl = chrono::Duration::minutes(10);
        let config = SupportConfig {
            approval_ttl: ttl,
            ..SupportConfig::default()
        };
        let server = TestServer::start_with(&db_url, manual(), {
            let clock = clock.clone();
            |s| s.with_clock(clock).with_support(config).unwrap()
        })
        .await;
        let f = Fixture::on(server, "acme").await;
        let (_, v) = f
            .ticket(
                &ticket_in(Arm::Ai, 15),
                "Refund payment",
                "When will my refund be paid to my card?",
                &[],
            )
            .await;
        assert_eq!(v["status"], "awaiting_approval", "{label}: {v}");
        let approval = v["approval"].as_str().unwrap().to_owned();
        let mut worker = Worker::default();
        let state = &f.server.state;
        let mut tick_at = async |at| {
            clock.set(at);
            worker.tick(state).await.unwrap()
        };
        let swept_nothing = Pass {
            swept: true,
            ..Pass::default()
        };
        assert_eq!(tick_at(start).await, swept_nothing, "{label}");
        let just_before = start + ttl - chrono::Duration::microseconds(1);
        assert_eq!(tick_at(just_before).await, swept_nothing, "{label}");
        let v = f.approvals("pending").await;
        assert_eq!(v["approvals"][0]["id"], approval.as_str(), "{label}: {v}");
        assert_eq!(f.events_of("ticket.escalated").await.len(), 0, "{label}");

        // A microsecond later the sweep is due (the deadline it saw), and
        // the approval expires.
        assert_eq!(
            tick_at(start + ttl).await,
            Pass {
                approvals_expired: 1,
                ..swept_nothing
            },
            "{label}"
        );
        let v = f.approvals("expired").await;
        assert_eq!(v["approvals"][0]["id"], approval.as_str(), "{label}: {v}");
        let decided: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(v["approvals"][0]["decided_at"].clone()).unwrap();
        assert_eq!(decided, start + ttl, "{label}: dated at the deadline: {v}");
        assert_eq!(f.events_of("ticket.escalated").await.len(), 1, "{label}");
        // Nothing left to expire; the sweep waits its period again.
        assert_eq!(
            tick_at(start + ttl + chrono::Duration::microseconds(1)).await,
            Pass::default(),
            "{label}"
        );
    })
}

#[test]
fn bad_tickets_are_refused_with_the_field_named() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let cases = [
            (
                json!({"id": "", "subject": "s", "body": "b", "requester": "r"}),
                "id:",
            ),
            (
                json!({"id": "has space", "subject": "s", "body": "b", "requester": "r"}),
                "id:",
            ),
            (
                json!({"id": "T", "subject": " ", "body": "b", "requester": "r"}),
                "subject:",
            ),
            (
                json!({"id": "T", "subject": "s", "body": "x".repeat(20_001), "requester": "r"}),
                "body:",
            ),
            (
                json!({"id": "T", "subject": "s", "body": "b", "requester": "r", "groups": [""]}),
                "groups:",
            ),
        ];
        for (body, field) in cases {
            let (s, v) = f
                .server
                .json(Method::POST, "/v1/agents/support/tickets", &f.agent, body)
                .await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{label}: {v}");
            assert!(
                v["detail"].as_str().unwrap().starts_with(field),
                "{field}: {v}"
            );
        }
        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/agents/support/tickets",
                &f.agent,
                json!({"id": "T"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let (s, _) = f
            .server
            .json(
                Method::POST,
                "/v1/agents/support/tickets",
                &f.viewer,
                json!({"id": "T", "subject": "s", "body": "b", "requester": "r"}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = f
            .server
            .json(
                Method::GET,
                "/v1/approvals?status=maybe",
                &f.viewer,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(
            f.events_of("ticket.created").await.is_empty(),
            "nothing was recorded"
        );
        // Every refusal of a role is in the audit log.
        assert!(f
            .audit("decision=deny")
            .await
            .iter()
            .any(|r| r["action"] == "POST /v1/agents/support/tickets"));
    })
}

#[test]
fn customer_rules_are_checked_versioned_and_decide_with_their_ids() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let path = "/v1/customers/acme/policies";
        let upload = |key: String, text: &'static str| {
            let server = &f.server;
            async move {
                server
                    .call(
                        Method::POST,
                        path,
                        Some(&key),
                        Some("application/cedar"),
                        text.as_bytes().to_vec(),
                    )
                    .await
            }
        };
        // A rule that does not validate: every error with its line; nothing stored.
        let (s, v, _) = upload(
            f.approver.clone(),
            "@id(\"careful\")\nforbid(principal, action, resource)\nwhen { resource.confidance.lessThan(decimal(\"0.9\")) };",
        )
        .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_policy")),
            "{label}: {v}"
        );
        assert_eq!(v["errors"][0]["line"], 3, "{v}");
        let (_, v, _) = f
            .server
            .call(Method::GET, path, Some(&f.viewer), None, Vec::new())
            .await;
        assert!(v["versions"].as_array().unwrap().is_empty(), "{v}");
        assert!(v["builtin"].as_str().unwrap().contains("builtin.auto_send"));

        // Viewers read, never write; other customers see nothing.
        let rule = "@id(\"careful\")\n@reason(\"a person reads what is not near certain\")\nforbid(principal, action == Payoff::Action::\"send_reply\", resource)\nwhen { resource.confidence.lessThan(decimal(\"0.99\")) };";
        let (s, _, _) = upload(f.viewer.clone(), rule).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _, _) = upload(f.outsider.clone(), rule).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = f
            .server
            .call(Method::GET, path, Some(&f.outsider), None, Vec::new())
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        let (s, v, _) = upload(f.approver.clone(), rule).await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        assert_eq!(v["version"], 1);
        assert_eq!(v["policy_ids"], json!(["acme.v1.careful"]));

        // The same ticket that went out alone now waits for a person, and
        // the decision names the customer's rule.
        let id = ticket_in(Arm::Ai, 14);
        let (_, v) = f.ticket(&id, RETURN_SUBJECT, RETURN_BODY, &[]).await;
        assert_eq!(v["status"], "awaiting_approval", "{label}: {v}");
        assert_eq!(
            v["policy_ids"],
            json!(["acme.v1.careful", "builtin.approval"]),
            "{v}"
        );
        let acts = f
            .audit("actor=agent:support&action=queue_for_approval")
            .await;
        assert_eq!(acts.len(), 1, "{acts:?}");
        assert_eq!(
            acts[0]["policy_ids"],
            json!(["acme.v1.careful", "builtin.approval"])
        );
        assert!(acts[0]["reason"]
            .as_str()
            .unwrap()
            .contains("a person reads"));

        // A second version replaces the first.
        let (s, v, _) = upload(
            f.approver.clone(),
            "@id(\"no_returns\")\nforbid(principal, action in Payoff::Action::\"agent_action\", resource)\nwhen { resource.category == \"returns\" };",
        )
        .await;
        assert_eq!((s, v["version"].as_u64()), (StatusCode::CREATED, Some(2)));
        let id = ticket_in(Arm::Ai, 15);
        let (_, v) = f.ticket(&id, RETURN_SUBJECT, RETURN_BODY, &[]).await;
        assert_eq!(v["status"], "escalated", "{v}");
        assert_eq!(v["policy_ids"], json!(["acme.v2.no_returns"]));
    })
}

/// A local server speaking the chat-completions wire format: `/good`
/// answers with a cited reply and its token usage, `/garbage` with 200
/// and no JSON, `/hang` never in time.
async fn model_server() -> String {
    use axum::routing::post;
    let good = || async {
        axum::Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
            "model": "local-test-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                "content": "Print the prepaid return label from your account page and drop the parcel at any post office. [1]"}}],
            "usage": {"prompt_tokens": 321, "completion_tokens": 23, "total_tokens": 344}
        }))
    };
    let app = axum::Router::new()
        .route("/good/chat/completions", post(good))
        .route(
            "/garbage/chat/completions",
            post(|| async { "<html>oops</html>" }),
        )
        .route(
            "/hang/chat/completions",
            post(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[test]
fn model_calls_are_metered_and_a_broken_model_hands_the_ticket_to_a_person() {
    on_every_backend(|db_url, label| async move {
        let base = model_server().await;
        for (path, replied) in [("good", true), ("garbage", false), ("hang", false)] {
            let provider = payoff_knowledge::OpenAiProvider::new(payoff_knowledge::OpenAiConfig {
                base_url: format!("{base}/{path}"),
                model: "local-test-model".into(),
                api_key: Some("sk-test".into()),
                timeout: std::time::Duration::from_millis(300),
                max_retries: 1,
                initial_backoff: std::time::Duration::from_millis(10),
            })
            .unwrap();
            let server = TestServer::start_with(&db_url, ServerConfig::default(), |s| {
                s.with_answerer(payoff_server::answers::Answerer::OpenAi(provider))
            })
            .await;
            let f = Fixture::on(server, &format!("acme-{path}")).await;
            let id = ticket_in_for(&f.customer, Arm::Ai, 16);
            let (s, v) = f.ticket(&id, RETURN_SUBJECT, RETURN_BODY, &[]).await;
            assert_eq!(s, StatusCode::OK, "{label} {path}: {v}");
            if replied {
                assert_eq!(v["status"], "replied", "{label}: {v}");
                let calls = f.events_of("llm.call").await;
                assert_eq!(calls.len(), 1, "{calls:?}");
                let data = &calls[0]["data"];
                assert_eq!(
                    (
                        data["model"].as_str(),
                        data["input_tokens"].as_u64(),
                        data["output_tokens"].as_u64()
                    ),
                    (Some("local-test-model"), Some(321), Some(23))
                );
                assert_eq!(
                    (data["agent"].as_str(), data["subject"].as_str()),
                    (Some("support"), Some(id.as_str()))
                );
            } else {
                assert_eq!(v["status"], "escalated", "{label} {path}: {v}");
                assert!(
                    v["reason"]
                        .as_str()
                        .unwrap()
                        .contains("the answer model failed"),
                    "{v}"
                );
                assert!(f.events_of("ticket.ai_replied").await.is_empty());
                let acts = f.audit("actor=agent:support&action=escalate").await;
                assert_eq!(
                    acts.len(),
                    1,
                    "an escalation is never an unlogged act: {acts:?}"
                );
                assert_eq!(acts[0]["policy_ids"], json!(["builtin.model_failure"]));
            }
        }
    })
}

const ACTION_SCHEMA: &str = include_str!("../../../../examples/actions/schema.cedarschema");
const ACTION_RULES: &str = include_str!("../../../../examples/actions/rules.cedar");

/// A refund question of the agent `refunds`.
fn refund(order: &str, amount: &str, closed: bool) -> Value {
    json!({
        "agent": "refunds", "action": "issue_refund", "subject": format!("order/{order}"),
        "resource": {"type": "Order", "id": order, "attributes": {"country": "FR", "closed": closed}},
        "context": {"amount": amount, "currency": "EUR"},
    })
}

impl Fixture {
    async fn ask(&self, question: Value) -> (StatusCode, Value) {
        self.server
            .json(Method::POST, "/v1/actions", &self.agent, question)
            .await
    }

    async fn result(&self, id: &str, body: Value) -> (StatusCode, Value) {
        self.server
            .json(
                Method::POST,
                &format!("/v1/actions/{id}/result"),
                &self.agent,
                body,
            )
            .await
    }
}

/// Issue 17, item 4: an agent Payoff did not build asks before it acts.
/// The customer's own action types and rules decide allow, deny or a
/// person's approval; the agent waits for the approval on a long poll;
/// only an allowed or approved action takes a result, and that result is
/// a ledger record a contract counts. The kill switch stops the agent
/// whatever the rules say, every step is audited, and other customers
/// see nothing.
#[test]
fn any_agent_asks_before_acting_and_people_decide_what_the_rules_send_them() {
    on_every_backend(|db_url, label| async move {
        let f = setup(&db_url, SupportConfig::default()).await;
        let server = &f.server;
        let rules_path = format!("/v1/customers/{}/action-rules", f.customer);

        // The key is checked before anything is said about the body, and
        // the role before the body's fields.
        let broken = b"{\"agent\": ".to_vec();
        for (key, status) in [
            ("pk_unknown.secret", StatusCode::UNAUTHORIZED),
            (f.viewer.as_str(), StatusCode::FORBIDDEN),
            (f.agent.as_str(), StatusCode::BAD_REQUEST),
        ] {
            let (s, v, _) = server
                .call(
                    Method::POST,
                    "/v1/actions",
                    Some(key),
                    Some("application/json"),
                    broken.clone(),
                )
                .await;
            assert_eq!(s, status, "{label}: {v}");
        }
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/actions",
                &f.viewer,
                refund("o-1", "12.50", false),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{label}: {v}");

        // Nothing declared yet: the question cannot be typed.
        let (s, v) = f.ask(refund("o-1", "12.50", false)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{label}: {v}");
        assert_eq!(v["code"], "no_action_rules", "{label}");

        // Rules that do not validate are refused, naming the part and place.
        let (s, v) = server
            .json(Method::POST, &rules_path, &f.approver,
                json!({"schema": ACTION_SCHEMA, "rules": "permit(principal, action, resource) when { resource.total > 1 };"}))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{label}: {v}");
        assert!(
            v["detail"].as_str().unwrap().starts_with("rules: "),
            "{label}: {v}"
        );
        assert_eq!(v["errors"][0]["line"], 1, "{label}: {v}");
        let (s, v) = server
            .json(
                Method::POST,
                &rules_path,
                &f.viewer,
                json!({"schema": ACTION_SCHEMA, "rules": ACTION_RULES}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{label}: {v}");
        let (s, v) = server
            .json(
                Method::POST,
                &rules_path,
                &f.approver,
                json!({"schema": ACTION_SCHEMA, "rules": ACTION_RULES}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        assert_eq!(v["version"], 1);
        assert_eq!(v["actions"][0]["name"], "issue_refund", "{label}: {v}");
        assert!(
            v["policy_ids"]
                .as_array()
                .unwrap()
                .contains(&json!("acme.v1.large_refunds")),
            "{v}"
        );

        // A small refund is allowed, a result is recorded once.
        let (s, small) = f.ask(refund("o-1", "12.50", false)).await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {small}");
        assert_eq!(
            (small["decision"].as_str(), small["state"].as_str()),
            (Some("allow"), Some("allowed")),
            "{small}"
        );
        assert_eq!(small["policy_ids"], json!(["acme.v1.small_refunds"]));
        assert_eq!(small["may_proceed"], true);
        let small_id = small["id"].as_str().unwrap().to_owned();
        let done = json!({"status": "succeeded", "detail": {"refund": "re_1"}});
        let (s, v) = f.result(&small_id, done.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        assert_eq!(v["result"]["status"], "succeeded");
        assert_eq!(v["may_proceed"], false, "done once, not again");
        let (s, _) = f.result(&small_id, done).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "{label}: the same result again is answered as stored"
        );
        let (s, v) = f.result(&small_id, json!({"status": "failed"})).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("already_exists")),
            "{label}: {v}"
        );

        // A retried question (same request_key) gets the first answer;
        // the same key for another question is refused.
        let mut keyed = refund("o-9", "5.00", false);
        keyed["request_key"] = "retry-1".into();
        let (s, first) = f.ask(keyed.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {first}");
        let (s, again) = f.ask(keyed.clone()).await;
        assert_eq!(
            (s, &again["id"]),
            (StatusCode::OK, &first["id"]),
            "{label}: {again}"
        );
        keyed["context"]["amount"] = "6.00".into();
        let (s, v) = f.ask(keyed).await;
        assert_eq!(s, StatusCode::CONFLICT, "{label}: {v}");

        // A closed order: forbidden, and no result may be recorded.
        let (s, denied) = f.ask(refund("o-2", "80.00", true)).await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {denied}");
        assert_eq!(denied["decision"], "deny");
        assert_eq!(denied["policy_ids"], json!(["acme.v1.closed_orders"]));
        let (s, v) = f
            .result(
                denied["id"].as_str().unwrap(),
                json!({"status": "succeeded"}),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("action_not_allowed")),
            "{label}: {v}"
        );

        // A large refund waits for a person: the agent's long poll ends
        // pending when no one decides, and with the decision when someone does.
        let (s, large) = f.ask(refund("o-3", "120.00", false)).await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {large}");
        assert_eq!(
            (large["decision"].as_str(), large["state"].as_str()),
            (Some("approval_required"), Some("pending_approval"))
        );
        assert_eq!(large["policy_ids"], json!(["acme.v1.large_refunds"]));
        let large_id = large["id"].as_str().unwrap().to_owned();
        let (s, v) = f.result(&large_id, json!({"status": "succeeded"})).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("action_pending")),
            "{label}: {v}"
        );
        let (s, v) = server
            .json(
                Method::GET,
                &format!("/v1/actions/{large_id}?wait=100ms"),
                &f.agent,
                Value::Null,
            )
            .await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("pending_approval")),
            "{label}: {v}"
        );
        let (_, queue) = server
            .json(
                Method::GET,
                "/v1/approvals?status=pending",
                &f.approver,
                Value::Null,
            )
            .await;
        let queued: Vec<&Value> = queue["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "action")
            .collect();
        assert_eq!(queued.len(), 1, "{label}: {queue}");
        assert_eq!(queued[0]["id"], large_id.as_str());
        let waiter = {
            let (url, agent, id) = (server.url.clone(), f.agent.clone(), large_id.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(format!("{url}/v1/actions/{id}?wait=30s"))
                    .bearer_auth(agent)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        };
        let (s, v) = server
            .json(
                Method::POST,
                &format!("/v1/approvals/{large_id}/approve"),
                &f.viewer,
                Value::Null,
            )
            .await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "{label}: a viewer does not decide: {v}"
        );
        let (s, v) = server
            .json(
                Method::POST,
                &format!("/v1/approvals/{large_id}/approve"),
                &f.approver,
                Value::Null,
            )
            .await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("approved")),
            "{label}: {v}"
        );
        let waited = waiter.await.unwrap();
        assert_eq!(waited["state"], "approved", "{label}: {waited}");
        assert_eq!(waited["may_proceed"], true);
        assert_eq!(
            waited["approval"]["decided_by"],
            f.approver.split('_').nth(1).unwrap()
        );
        let (s, v) = server
            .json(
                Method::POST,
                &format!("/v1/approvals/{large_id}/reject"),
                &f.approver,
                Value::Null,
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("already_decided")),
            "{label}: {v}"
        );
        let (s, v) = f
            .result(
                &large_id,
                json!({"status": "succeeded", "detail": {"refund": "re_2"}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");

        // A rejected one may not be done.
        let (_, other) = f.ask(refund("o-4", "300.00", false)).await;
        let other_id = other["id"].as_str().unwrap().to_owned();
        let (s, v) = server
            .json(
                Method::POST,
                &format!("/v1/approvals/{other_id}/reject"),
                &f.approver,
                json!({"reason": "too much"}),
            )
            .await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("rejected")),
            "{label}: {v}"
        );
        assert_eq!(v["approval"]["reason"], "too much");
        let (s, v) = f.result(&other_id, json!({"status": "succeeded"})).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("action_not_allowed")),
            "{label}: {v}"
        );

        // Questions the schema cannot type: 400 naming the field, nothing recorded.
        let before = f.events_of("payoff.action.requested").await.len();
        let mut unknown = refund("o-5", "1.00", false);
        unknown["action"] = "delete_account".into();
        let mut mistyped = refund("o-5", "1.00", false);
        mistyped["context"]["amount"] = json!(1);
        let mut no_attr = refund("o-5", "1.00", false);
        no_attr["resource"]["attributes"] = json!({"country": "FR"});
        let mut bad_agent = refund("o-5", "1.00", false);
        bad_agent["agent"] = "Bad Agent".into();
        for (body, field) in [
            (unknown, "action"),
            (mistyped, "context"),
            (no_attr, "resource.attributes"),
            (bad_agent, "agent"),
        ] {
            let (s, v) = f.ask(body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{label}: {v}");
            assert!(
                v["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{field}: ")),
                "{label}: {field}: {v}"
            );
        }
        assert_eq!(
            f.events_of("payoff.action.requested").await.len(),
            before,
            "{label}"
        );

        // The kill switch stops the agent whatever the rules allow.
        let (s, _) = server
            .json(
                Method::POST,
                "/v1/agents/refunds/pause",
                &f.approver,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let (_, v) = f.ask(refund("o-6", "1.00", false)).await;
        assert_eq!(
            (v["decision"].as_str(), &v["policy_ids"]),
            (Some("deny"), &json!(["payoff.kill_switch"])),
            "{label}: {v}"
        );
        server
            .json(
                Method::POST,
                "/v1/agents/refunds/resume",
                &f.approver,
                Value::Null,
            )
            .await;
        let (_, v) = f.ask(refund("o-6", "1.00", false)).await;
        assert_eq!(v["decision"], "allow", "{label}: {v}");

        // Every question and decision is in the audit chain with its policies.
        let audited = f.audit("action=authorize_action").await;
        assert!(
            audited
                .iter()
                .any(|r| r["decision"] == "deny"
                    && r["policy_ids"] == json!(["acme.v1.closed_orders"])),
            "{label}: {audited:?}"
        );
        let approved = f.audit("action=approve").await;
        assert!(
            approved
                .iter()
                .any(|r| r["resource"] == format!("action/{large_id}")),
            "{label}: {approved:?}"
        );

        // The results are ledger records under the action's subject.
        let completed = f.events_of("payoff.action.completed").await;
        assert_eq!(completed.len(), 2, "{label}");
        assert!(
            completed
                .iter()
                .any(|e| e["subject"] == "order/o-3" && e["data"]["type"] == "issue_refund"),
            "{completed:?}"
        );

        // Lists, and tenant isolation.
        let (_, v) = server
            .json(
                Method::GET,
                "/v1/actions?state=rejected",
                &f.viewer,
                Value::Null,
            )
            .await;
        assert_eq!(v["actions"].as_array().unwrap().len(), 1, "{label}: {v}");
        // Pages of two, newest first, continued by `next_before`, give the
        // whole list once; the last page says nothing more.
        let (_, all) = server
            .json(Method::GET, "/v1/actions", &f.viewer, Value::Null)
            .await;
        assert!(all.get("next_before").is_none(), "{label}: {all}");
        let every = listed_ids(&all, "actions");
        assert!(every.len() >= 3, "{label}: {all}");
        let paged = page_through(server, "/v1/actions?", "actions", &f.viewer, 2).await;
        assert_eq!(paged, every, "{label}");
        // The approval queue pages the same way, the support agent's
        // drafts and the actions merged newest first.
        let (_, queue) = server
            .json(Method::GET, "/v1/approvals", &f.viewer, Value::Null)
            .await;
        assert!(queue.get("next_before").is_none(), "{label}: {queue}");
        let queued = listed_ids(&queue, "approvals");
        assert!(queued.len() >= 2, "{label}: {queue}");
        let paged = page_through(server, "/v1/approvals?", "approvals", &f.viewer, 1).await;
        assert_eq!(paged, queued, "{label}");
        let (s, v) = server
            .json(Method::GET, "/v1/approvals?limit=0", &f.viewer, Value::Null)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{label}: {v}");
        assert!(v["detail"].as_str().unwrap().starts_with("limit: "), "{v}");
        let times: Vec<String> = all["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["requested_at"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "{label}: newest first: {times:?}"
        );
        let (s, _) = server
            .json(
                Method::GET,
                &format!("/v1/actions/{large_id}"),
                &f.outsider,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{label}");
        let (s, _) = server
            .json(
                Method::POST,
                &format!("/v1/approvals/{other_id}/approve"),
                &f.outsider,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{label}");
        let (_, v) = server
            .json(Method::GET, "/v1/actions", &f.outsider, Value::Null)
            .await;
        assert_eq!(v["actions"], json!([]), "{label}");
    })
}

/// An action's result is an outcome a contract can count: the control
/// plane saw it happen. An approval left undecided expires at its time
/// (the server's clock), and then nothing may be done.
#[test]
fn a_witnessed_action_is_counted_and_an_undecided_approval_expires() {
    on_every_backend(|db_url, label| async move {
        let start: chrono::DateTime<chrono::Utc> = "2026-11-10T09:00:00Z".parse().unwrap();
        let clock = payoff_clock::Clock::manual(start);
        let server = TestServer::start_with(&db_url, ServerConfig::default(), {
            let clock = clock.clone();
            |s| s.with_clock(clock)
        })
        .await;
        server.customer("shop").await;
        let operator = server.key("operator", None).await;
        let admin = server.key("customer_admin", Some("shop")).await;
        let agent = server.key("agent", Some("shop")).await;
        server
            .upload_contract(&operator, "shop", r#"
[contract]
customer = "shop"
currency = "EUR"
starts = "2026-11-01"

[[outcome]]
name = "refund_done"
when = 'event.type == "payoff.action.completed" && event.data.type == "issue_refund" && event.data.status == "succeeded"'
price = { per_unit = "0.40" }
"#)
            .await;
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/customers/shop/action-rules",
                &admin,
                json!({"schema": ACTION_SCHEMA, "rules": ACTION_RULES}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        let (_, ok) = server
            .json(
                Method::POST,
                "/v1/actions",
                &agent,
                refund("o-1", "10.00", false),
            )
            .await;
        let id = ok["id"].as_str().unwrap();
        let (s, v) = server
            .json(
                Method::POST,
                &format!("/v1/actions/{id}/result"),
                &agent,
                json!({"status": "succeeded"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        let (_, failed) = server
            .json(
                Method::POST,
                "/v1/actions",
                &agent,
                refund("o-2", "10.00", false),
            )
            .await;
        let (s, _) = server
            .json(
                Method::POST,
                &format!("/v1/actions/{}/result", failed["id"].as_str().unwrap()),
                &agent,
                json!({"status": "failed"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, v) = server
            .json(
                Method::GET,
                "/v1/customers/shop/outcomes",
                &operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        let outcomes = v["outcomes"].as_array().unwrap();
        assert_eq!(
            outcomes.len(),
            1,
            "{label}: only the refund that succeeded: {v}"
        );
        assert_eq!(outcomes[0]["name"], "refund_done", "{v}");
        assert_eq!(outcomes[0]["subject"], "order/o-1");

        // Undecided for longer than it may wait: expired, not doable.
        let mut large = refund("o-3", "90.00", false);
        large["approval_expires_in"] = 60.into();
        let (_, pending) = server
            .json(Method::POST, "/v1/actions", &agent, large)
            .await;
        assert_eq!(pending["state"], "pending_approval", "{label}: {pending}");
        let pid = pending["id"].as_str().unwrap();
        clock.set(start + chrono::Duration::seconds(61));
        let (_, v) = server
            .json(
                Method::GET,
                &format!("/v1/actions/{pid}?wait=5s"),
                &agent,
                Value::Null,
            )
            .await;
        assert_eq!(v["state"], "expired", "{label}: {v}");
        assert_eq!(
            v["approval"]["decided_at"], "2026-11-10T09:01:00Z",
            "{label}: the expiry is dated at the deadline: {v}"
        );
        let (s, v) = server
            .json(
                Method::POST,
                &format!("/v1/approvals/{pid}/approve"),
                &admin,
                Value::Null,
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("already_decided")),
            "{label}: {v}"
        );
        let (s, v) = server
            .json(
                Method::POST,
                &format!("/v1/actions/{pid}/result"),
                &agent,
                json!({"status": "succeeded"}),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::CONFLICT, Some("action_not_allowed")),
            "{label}: {v}"
        );
    })
}

/// A customer's MCP server, as small as the protocol allows: sessions,
/// tools, JSON answers and (for `lookup_order`) an event stream with a
/// notification before the answer. It records every tool call it gets.
#[derive(Clone, Default)]
struct FakeMcp {
    calls: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    /// The session it knows; a request naming another is answered 404.
    session: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    sessions_opened: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn fake_mcp(
    axum::extract::State(f): axum::extract::State<FakeMcp>,
    headers: axum::http::HeaderMap,
    axum::Json(m): axum::Json<Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let json = |v: Value| axum::Json(v).into_response();
    let method = m["method"].as_str().unwrap_or_default();
    if method == "initialize" {
        let n = f
            .sessions_opened
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("s-{n}");
        *f.session.lock().unwrap() = Some(id.clone());
        let mut r = json(json!({"jsonrpc": "2.0", "id": m["id"], "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "shop", "version": "1"}}}));
        r.headers_mut()
            .insert("mcp-session-id", id.parse().unwrap());
        return r;
    }
    let named = headers.get("mcp-session-id").and_then(|v| v.to_str().ok());
    if named.is_none() || named != f.session.lock().unwrap().as_deref() {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    }
    match method {
        "notifications/initialized" => axum::http::StatusCode::ACCEPTED.into_response(),
        "tools/list" => json(
            json!({"jsonrpc": "2.0", "id": m["id"], "result": {"tools": [
                {"name": "lookup_order", "inputSchema": {"type": "object"}},
                {"name": "refund_order", "inputSchema": {"type": "object"}},
                {"name": "delete_order", "inputSchema": {"type": "object"}},
                {"name": "secret_tool", "inputSchema": {"type": "object"}},
            ]}}),
        ),
        "tools/call" => {
            f.calls.lock().unwrap().push(m["params"].clone());
            let order = m["params"]["arguments"]["order_id"].as_str().unwrap_or("?");
            let result = json!({"jsonrpc": "2.0", "id": m["id"], "result": {
                "content": [{"type": "text", "text": format!("order {order}: done")}]}});
            if m["params"]["name"] == "lookup_order" {
                let body = format!(
                    "event: message\ndata: {}\n\nevent: message\ndata: {}\n\n",
                    json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}),
                    result
                );
                (
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    body,
                )
                    .into_response()
            } else {
                json(result)
            }
        }
        _ => json(
            json!({"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32601, "message": "no"}}),
        ),
    }
}

const MCP_SCHEMA: &str = r#"
action "lookup_order" appliesTo { principal: [Payoff::Agent], resource: [Payoff::McpServer], context: { "order_id": String } };
action "refund_order" appliesTo { principal: [Payoff::Agent], resource: [Payoff::McpServer], context: { "order_id": String, "amount": Long } };
action "delete_order" appliesTo { principal: [Payoff::Agent], resource: [Payoff::McpServer], context: { "order_id": String } };
"#;

const MCP_RULES: &str = r#"
@id("lookups") permit(principal, action == Action::"lookup_order", resource == Payoff::McpServer::"shop");
@id("refunds") @approval
permit(principal == Payoff::Agent::"support", action == Action::"refund_order", resource) when { context.amount < 100 };
@id("never_delete") forbid(principal, action == Action::"delete_order", resource);
@id("deletes") permit(principal, action == Action::"delete_order", resource);
"#;

/// Issue 17, item 5: agents reach a customer's MCP server through Payoff.
/// They are shown only the tools the rules could let them call; every
/// call is an action (refused, waiting for a person, or relayed and its
/// outcome recorded), and the server never sees a call that was not
/// allowed.
#[test]
fn mcp_tools_are_shown_and_called_only_as_the_customers_rules_say() {
    on_every_backend(|db_url, label| async move {
        let fake = FakeMcp::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = format!("http://{}/mcp", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/mcp", axum::routing::post(fake_mcp))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = ServerConfig {
            egress: payoff_egress::Egress {
                policy: payoff_egress::EgressPolicy::allowing(["127.0.0.0/8"]).unwrap(),
                ..Default::default()
            },
            ..ServerConfig::default()
        };
        let server = TestServer::start(&db_url, config).await;
        server.customer("acme").await;
        let admin = server.key("customer_admin", Some("acme")).await;
        let agent = server.key("agent", Some("acme")).await;
        let viewer = server.key("customer_viewer", Some("acme")).await;
        let (s, v) = server
            .json(
                Method::PUT,
                "/v1/customers/acme/mcp-servers/shop",
                &admin,
                json!({"url": upstream}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        let (s, v) = server
            .json(
                Method::POST,
                "/v1/customers/acme/action-rules",
                &admin,
                json!({"schema": MCP_SCHEMA, "rules": MCP_RULES}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");

        let rpc = |agent_name: &'static str, wait: Option<&'static str>, body: Value| {
            let (url, key) = (server.url.clone(), agent.clone());
            async move {
                let mut request = reqwest::Client::new()
                    .post(format!("{url}/mcp/shop"))
                    .bearer_auth(key)
                    .header("x-payoff-agent", agent_name)
                    .header("x-payoff-subject", "order/o-1")
                    .json(&body);
                if let Some(w) = wait {
                    request = request.header("x-payoff-approval-wait", w);
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        let call = |name: &str, arguments: Value| json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}});

        let (s, init) = rpc("support", None, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})).await;
        assert_eq!(
            (s, init["result"]["protocolVersion"].as_str()),
            (StatusCode::OK, Some("2025-06-18")),
            "{label}: {init}"
        );
        let (s, _) = rpc(
            "support",
            None,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED);

        // Each agent sees what the rules could let it call, nothing undeclared.
        let names = |v: &Value| -> Vec<String> {
            v["result"]["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let (_, listed) = rpc(
            "support",
            None,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
        assert_eq!(
            names(&listed),
            ["lookup_order", "refund_order"],
            "{label}: {listed}"
        );
        let (_, listed) = rpc(
            "bot",
            None,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
        assert_eq!(names(&listed), ["lookup_order"], "{label}: {listed}");

        // Allowed: relayed (the answer came as an event stream) and recorded.
        let (s, v) = rpc(
            "support",
            None,
            call("lookup_order", json!({"order_id": "o-1"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        assert_eq!(
            v["result"]["content"][0]["text"], "order o-1: done",
            "{label}: {v}"
        );
        let action = v["result"]["_meta"]["payoff/action"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, seen) = server
            .json(
                Method::GET,
                &format!("/v1/actions/{action}"),
                &agent,
                Value::Null,
            )
            .await;
        assert_eq!(
            (seen["state"].as_str(), seen["result"]["status"].as_str()),
            (Some("allowed"), Some("succeeded")),
            "{seen}"
        );
        assert_eq!(seen["subject"], "order/o-1");
        assert_eq!(fake.calls.lock().unwrap().len(), 1);

        // Not shown, refused, mistyped: the server never hears of them.
        let (_, v) = rpc(
            "support",
            None,
            call("delete_order", json!({"order_id": "o-1"})),
        )
        .await;
        assert_eq!(v["error"]["code"], -32602, "{label}: {v}");
        let (_, v) = rpc("support", None, call("secret_tool", json!({}))).await;
        assert_eq!(v["error"]["code"], -32602, "{label}: {v}");
        let (_, v) = rpc(
            "support",
            None,
            call("refund_order", json!({"order_id": "o-1", "amount": 500})),
        )
        .await;
        assert_eq!(v["result"]["isError"], true, "{label}: {v}");
        assert_eq!(v["result"]["_meta"]["payoff/state"], "denied");
        let (_, v) = rpc(
            "support",
            None,
            call("lookup_order", json!({"order_id": 5})),
        )
        .await;
        assert_eq!(v["error"]["code"], -32602, "{label}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("context"),
            "{v}"
        );
        assert_eq!(fake.calls.lock().unwrap().len(), 1, "{label}");

        // Waiting for a person: pending, then approved and resumed once.
        let (_, v) = rpc(
            "support",
            Some("0"),
            call("refund_order", json!({"order_id": "o-1", "amount": 50})),
        )
        .await;
        assert_eq!(
            v["result"]["_meta"]["payoff/state"], "pending_approval",
            "{label}: {v}"
        );
        let pending = v["result"]["_meta"]["payoff/action"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
        let (s, v) = server
            .json(
                Method::POST,
                &format!("/v1/approvals/{pending}/approve"),
                &admin,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");
        let mut resume = call("refund_order", json!({"order_id": "o-1", "amount": 50}));
        resume["params"]["_meta"] = json!({"payoff/action": pending});
        let (_, v) = rpc("support", None, resume.clone()).await;
        assert_eq!(
            v["result"]["content"][0]["text"], "order o-1: done",
            "{label}: {v}"
        );
        assert_eq!(fake.calls.lock().unwrap().len(), 2);
        assert!(
            fake.calls.lock().unwrap()[1]
                .get("_meta")
                .is_none_or(|m| m.get("payoff/action").is_none()),
            "Payoff's key stays with Payoff"
        );
        let (_, v) = rpc("support", None, resume).await;
        assert_eq!(v["result"]["isError"], true, "{label}: done once: {v}");
        let mut other = call("refund_order", json!({"order_id": "o-2", "amount": 50}));
        other["params"]["_meta"] = json!({"payoff/action": pending});
        let (_, v) = rpc("support", None, other).await;
        assert_eq!(
            v["error"]["code"], -32602,
            "{label}: an approval is for its own arguments: {v}"
        );

        // The server forgot its session: a new one is opened, the call goes through.
        *fake.session.lock().unwrap() = Some("forgotten".into());
        let (_, v) = rpc(
            "bot",
            None,
            call("lookup_order", json!({"order_id": "o-3"})),
        )
        .await;
        assert_eq!(
            v["result"]["content"][0]["text"], "order o-3: done",
            "{label}: {v}"
        );
        assert_eq!(
            fake.sessions_opened
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );

        // The kill switch stops the agent's calls.
        server
            .json(Method::POST, "/v1/agents/bot/pause", &admin, Value::Null)
            .await;
        let (_, v) = rpc(
            "bot",
            None,
            call("lookup_order", json!({"order_id": "o-4"})),
        )
        .await;
        assert_eq!(
            v["result"]["_meta"]["payoff/policy_ids"],
            json!(["payoff.kill_switch"]),
            "{label}: {v}"
        );
        assert_eq!(fake.calls.lock().unwrap().len(), 3);

        // Unknown servers and keys that may not call tools.
        let (s, _, _) = server
            .call(
                Method::POST,
                "/mcp/nowhere",
                Some(&agent),
                Some("application/json"),
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _, _) = server
            .call(
                Method::POST,
                "/mcp/shop",
                Some(&viewer),
                Some("application/json"),
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (_, list) = server
            .json(
                Method::GET,
                "/v1/customers/acme/mcp-servers",
                &viewer,
                Value::Null,
            )
            .await;
        assert_eq!(list["servers"][0]["name"], "shop", "{list}");
    })
}

/// The ids of a listing's `field`, in order.
fn listed_ids(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field}: {v}"))
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every id of a paged listing, following `next_before` to the last page
/// (which must say nothing more), each page at most `limit` long.
async fn page_through(
    server: &TestServer,
    path: &str,
    field: &str,
    key: &str,
    limit: usize,
) -> Vec<String> {
    let (mut ids, mut before) = (Vec::new(), None::<u64>);
    loop {
        let mut at = format!("{path}limit={limit}");
        if let Some(b) = before {
            at.push_str(&format!("&before={b}"));
        }
        let (s, page) = server.json(Method::GET, &at, key, Value::Null).await;
        assert_eq!(s, StatusCode::OK, "{at}: {page}");
        let got = listed_ids(&page, field);
        assert!(got.len() <= limit, "{at}: {page}");
        ids.extend(got);
        match page["next_before"].as_u64() {
            Some(b) => {
                assert!(
                    before.is_none_or(|old| b < old),
                    "{at}: the cursor moves on"
                );
                before = Some(b);
            }
            None => return ids,
        }
    }
}
