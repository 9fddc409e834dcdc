//! The web dashboard through a real server, on every backend: login and
//! logout, CSRF refusals, what each role sees on each page, tenant
//! isolation of every page, escaping of hostile strings, readable error
//! pages, and the dashboard agreeing with the API.

use crate::common::{eventually, on_every_backend, TestServer};
use chrono::{Datelike, Months};
use payoff_policy::ReplyRule;
use payoff_server::support::SupportConfig;
use payoff_server::ServerConfig;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const HOSTILE_NAME: &str = "Acme <script>alert(\"name\")</script> & Co";
const HOSTILE_SUBJECT: &str = "<script>alert(\"subject\")</script>";
const HOSTILE_TITLE: &str = "<img src=x onerror=alert(\"doc\")>Refunds";
const HOSTILE_REASON: &str = "<script>alert(\"reason\")</script> wrong";
const RESTRICTED_TITLE: &str = "Staff refund limits";

/// Every page of a customer, by path below `/ui/customers/{c}/`.
const PAGES: [&str; 10] = [
    "overview",
    "outcomes",
    "statements",
    "disputes",
    "approvals",
    "agents",
    "knowledge",
    "audit",
    "contract",
    "economics",
];

struct Fixture {
    server: TestServer,
    /// A client that does not follow redirects, so they can be checked.
    http: reqwest::Client,
    operator: String,
    admin: String,
    viewer: String,
    auditor: String,
    agent: String,
    outsider: String,
    last_month: String,
}

/// A browser's session: its cookie and the CSRF token its pages carry.
struct Session {
    cookie: String,
    csrf: String,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    content_type: String,
    csp: Option<String>,
    body: String,
}

fn month_start(back: u32) -> chrono::NaiveDate {
    let today = payoff_clock::wall().date_naive();
    let first = today.with_day(1).unwrap();
    first - Months::new(back)
}

fn contract() -> String {
    format!(
        r#"
[contract]
customer = "acme"
currency = "USD"
starts = "{}"
base_fee = "100.00"
dispute_within = "400d"
licence_equivalent = "6000.00"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
void_when = 'event.type == "ticket.reopened"'
matures_after = "72h"
price = {{ per_unit = "2.50" }}
"#,
        month_start(1)
    )
}

async fn setup(db_url: &str) -> Fixture {
    // Every billing draft waits for a person, however unsure the agent is.
    let rule = ReplyRule {
        approval_min: 0.0,
        ..ReplyRule::default()
    };
    // These tests log in dozens of times a minute from one address; the
    // login limit has its own test (api.rs).
    let config = ServerConfig {
        rate_limits: payoff_server::limits::RateLimits {
            login_per_minute: 0,
            ..Default::default()
        },
        // lead-bot's failing calls leave the band (the Agents page test).
        quality: payoff_server::watch::QualitySettings {
            band: vec![payoff_server::watch::Band {
                measure: payoff_server::watch::Measure::ErrorRate,
                agent: "lead-bot".into(),
                min: None,
                max: Some(0.2),
                min_samples: 4,
                level: None,
            }],
            every_seconds: 0.1,
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(db_url, config, |s| {
        s.with_support(SupportConfig {
            rule,
            ..SupportConfig::default()
        })
        .unwrap()
    })
    .await;
    let (s, v) = server
        .json(
            Method::POST,
            "/v1/customers",
            &server.admin,
            json!({"id": "acme", "name": HOSTILE_NAME}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    server.customer("globex").await;
    let operator = server.key("operator", None).await;
    let (s, v) = server
        .json(
            Method::POST,
            "/v1/keys",
            &server.admin,
            json!({"role": "customer_admin", "customer": "acme", "groups": ["finance"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let admin = v["key"].as_str().unwrap().to_owned();
    let (s, v, _) = server
        .call(
            Method::POST,
            "/v1/customers/acme/contracts",
            Some(&operator),
            Some("application/toml"),
            contract().into_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let docs = json!([
        {"id": "refunds", "title": HOSTILE_TITLE, "url": "https://help.acme.test/refunds",
         "body": "# Refunds\nRefunds are paid to the original card within five business days after the returned parcel arrives. A refund for a double charge on your card is issued at once."},
        {"id": "limits", "title": RESTRICTED_TITLE, "groups": ["finance"],
         "body": "# Staff refund limits\nStaff may approve a refund up to 150 USD alone; above the limit the finance lead approves."},
    ]);
    let (s, v) = server
        .json(Method::POST, "/v1/knowledge/documents", &admin, docs)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let agent = server.key("agent", Some("acme")).await;
    let last = month_start(1);
    let day = |d: u32| format!("{}-{:02}T12:00:00Z", last.format("%Y-%m"), d);
    let mut events = Vec::new();
    for (i, subject) in ["T-1", "T-2", HOSTILE_SUBJECT].iter().enumerate() {
        events.push(json!({"specversion": "1.0", "id": format!("closed-{i}"), "source": "helpdesk",
            "type": "ticket.closed", "subject": subject, "time": day(2 + i as u32), "data": {"resolved_by": "ai"}}));
    }
    let (s, v) = server
        .send(&agent, "application/cloudevents-batch+json", &json!(events))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let last_month = last.format("%Y-%m").to_string();
    let (s, v) = server
        .json(
            Method::POST,
            &format!("/v1/customers/acme/periods/{last_month}/close"),
            &operator,
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // This month: an open outcome, and a billing question the agent
    // drafts an answer to and queues for approval.
    let (s, v) = server
        .send(
            &agent,
            "application/cloudevents+json",
            &json!({"specversion": "1.0", "id": "closed-now", "source": "helpdesk", "type": "ticket.closed",
                    "subject": "T-NOW", "time": payoff_clock::wall().to_rfc3339(), "data": {"resolved_by": "ai"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = server
        .json(
            Method::POST,
            "/v1/agents/support/tickets",
            &agent,
            json!({"id": "T-BILL", "subject": "Charged twice", "requester": "jane@example.com",
                   "body": "I was charged twice on my card <script>alert(\"ticket\")</script>, when is the refund paid?"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "awaiting_approval", "{v}");
    Fixture {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        viewer: server.key("customer_viewer", Some("acme")).await,
        auditor: server.key("auditor", Some("acme")).await,
        outsider: server.key("customer_admin", Some("globex")).await,
        operator,
        admin,
        agent,
        server,
        last_month,
    }
}

impl Fixture {
    async fn request(
        &self,
        method: Method,
        path: &str,
        session: Option<&Session>,
        form: Option<&[(&str, &str)]>,
        origin: Option<&str>,
    ) -> Page {
        let mut r = self
            .http
            .request(method, format!("{}{}", self.server.url, path));
        if let Some(s) = session {
            r = r.header(COOKIE, &s.cookie);
        }
        if let Some(fields) = form {
            r = r
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(fields).unwrap());
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        let response = r.send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        Page {
            status: response.status(),
            location: header(LOCATION.as_str()),
            content_type: header("content-type").unwrap_or_default(),
            csp: header("content-security-policy"),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str, session: &Session) -> Page {
        self.request(Method::GET, path, Some(session), None, None)
            .await
    }

    async fn post(&self, path: &str, session: &Session, fields: &[(&str, &str)]) -> Page {
        self.request(Method::POST, path, Some(session), Some(fields), None)
            .await
    }

    /// Logs in with `key` through the form, as a browser does.
    async fn login(&self, key: &str) -> Session {
        login(&self.http, &self.server.url, key).await
    }
}

/// Logs in with `key` through the form at `url`, as a browser does
/// (`http` follows no redirect).
async fn login(http: &reqwest::Client, url: &str, key: &str) -> Session {
    let response = http
        .post(format!("{url}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("key", key)]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let home = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let page = http
        .get(format!("{url}{home}"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK, "{home}");
    let csrf = csrf_of(&page.text().await.unwrap());
    Session { cookie, csrf }
}

impl Fixture {
    /// An outcome's state as the API says it.
    async fn state_of(&self, outcome: &str) -> String {
        let (_, v) = self
            .server
            .json(
                Method::GET,
                &format!("/v1/outcomes/{outcome}"),
                &self.operator,
                Value::Null,
            )
            .await;
        v["state"].as_str().unwrap().to_owned()
    }
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..at + 64].to_owned()
}

fn ui(page: &str) -> String {
    format!("/ui/customers/acme/{page}")
}

/// The first outcome id on a page.
fn outcome_on(html: &str) -> String {
    let at = html.find("out.acme.").expect("an outcome id");
    html[at..at + 33].to_owned()
}

#[test]
fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        // Nobody logged in: every page sends to the login, and back.
        let anonymous = Session {
            cookie: "payoff_session=pys_nope".into(),
            csrf: String::new(),
        };
        let page = f.get(&ui("outcomes?state=billed"), &anonymous).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{label}");
        assert_eq!(
            page.location.as_deref(),
            Some("/ui/login?next=/ui/customers/acme/outcomes%3Fstate%3Dbilled")
        );
        let page = f.get("/", &anonymous).await;
        assert_eq!(page.location.as_deref(), Some("/ui/login"));

        // A wrong key, and an agent's key, are refused with the form again.
        for (key, status, says) in [
            (
                "pyk_0000000000000000_".to_owned() + &"0".repeat(64),
                StatusCode::UNAUTHORIZED,
                "unknown or has been revoked",
            ),
            (
                "not a key".to_owned(),
                StatusCode::UNAUTHORIZED,
                "unknown or has been revoked",
            ),
            (
                f.agent.clone(),
                StatusCode::FORBIDDEN,
                "agent keys are for machines",
            ),
        ] {
            let page = f
                .request(
                    Method::POST,
                    "/ui/login",
                    None,
                    Some(&[("key", &key)]),
                    None,
                )
                .await;
            assert_eq!(page.status, status, "{label}: {}", page.body);
            assert!(page.body.contains(says), "{}", page.body);
            assert!(
                page.body.contains("name=\"key\""),
                "the form is shown again"
            );
        }

        // A customer's person lands on their overview; a provider's on the list.
        let viewer = f.login(&f.viewer).await;
        assert_eq!(
            f.get("/", &viewer).await.location.as_deref(),
            Some("/ui/customers/acme/overview")
        );
        let operator = f.login(&f.operator).await;
        assert_eq!(
            f.get("/", &operator).await.location.as_deref(),
            Some("/ui/customers")
        );
        // Back to the page asked for, but never to another site.
        let page = f
            .request(
                Method::POST,
                "/ui/login",
                None,
                Some(&[("key", &f.viewer), ("next", "/ui/customers/acme/audit")]),
                None,
            )
            .await;
        assert_eq!(page.location.as_deref(), Some("/ui/customers/acme/audit"));
        let page = f
            .request(
                Method::POST,
                "/ui/login",
                None,
                Some(&[("key", &f.viewer), ("next", "//evil.test/ui/x")]),
                None,
            )
            .await;
        assert_eq!(
            page.location.as_deref(),
            Some("/ui/customers/acme/overview")
        );

        // Logout ends the session on the server: the old cookie opens nothing.
        let page = f
            .post("/ui/logout", &viewer, &[("csrf", &viewer.csrf)])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{label}: {}", page.body);
        assert_eq!(page.location.as_deref(), Some("/ui/login"));
        let page = f.get(&ui("overview"), &viewer).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert!(page.location.unwrap().starts_with("/ui/login"));
        // The other session lives on, and its overview counts the one
        // reply the agent queued for approval.
        let overview = f.get(&ui("overview"), &operator).await;
        assert_eq!(overview.status, StatusCode::OK);
        assert!(
            overview.body.contains(
                "<span class=\"figure\">1</span></a><span class=\"caption\">replies waiting for approval"
            ),
            "{label}: {}",
            overview.body
        );

        // A refused login of a known key is in the audit log; the two with
        // no valid key are counted in the metrics, not stored one by one.
        let (s, v) = f
            .server
            .json(
                Method::GET,
                "/v1/audit?action=/ui/login&decision=deny",
                &f.operator,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["records"].as_array().unwrap().len(), 1, "{label}: {v}");
        let (_, _, metrics) = f
            .server
            .call(Method::GET, "/metrics", None, None, Vec::new())
            .await;
        assert!(
            metrics.contains(
                r#"payoff_http_requests_total{method="POST",route="/ui/login",status="401"} 2"#
            ),
            "{label}: {metrics}"
        );
    });
}

#[test]
fn forms_without_the_sessions_csrf_token_are_refused() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let admin = f.login(&f.admin).await;
        let other = f.login(&f.admin).await;
        assert_ne!(admin.csrf, other.csrf, "each session has its own token");
        let page = f.get(&ui("outcomes"), &admin).await;
        let outcome = outcome_on(&page.body);
        let raise = |csrf: &str| {
            vec![
                ("csrf", csrf.to_owned()),
                ("outcome", outcome.clone()),
                ("reason", "wrong".to_owned()),
            ]
        };
        for (fields, origin, why) in [
            (raise("")[1..].to_vec(), None, "no token"),
            (raise(&other.csrf), None, "another session's token"),
            (raise(&"0".repeat(64)), None, "a made-up token"),
            (raise(&admin.csrf), Some("http://evil.test"), "another site"),
        ] {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let page = f
                .request(
                    Method::POST,
                    &ui("disputes"),
                    Some(&admin),
                    Some(&fields),
                    origin,
                )
                .await;
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{label}, {why}: {}",
                page.body
            );
            assert!(page.content_type.starts_with("text/html"), "{why}");
        }
        let (_, v) = f
            .server
            .json(
                Method::GET,
                &format!("/v1/outcomes/{outcome}"),
                &f.admin,
                Value::Null,
            )
            .await;
        assert_eq!(v["disputes"], json!([]), "{label}: nothing was recorded");
        // Logout needs the token too.
        let page = f.post("/ui/logout", &admin, &[]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert_eq!(f.get(&ui("overview"), &admin).await.status, StatusCode::OK);
        // With it, the form works.
        let fields = raise(&admin.csrf);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = f.post(&ui("disputes"), &admin, &fields).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{label}: {}", page.body);
    });
}

#[test]
fn each_page_shows_only_what_the_role_may_see() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        // Pages a role may not open answer 403; the tab is not offered.
        let table: [(&str, &str, &[&str]); 4] = [
            ("operator", &f.operator, &[]),
            ("customer_admin", &f.admin, &["economics"]),
            ("customer_viewer", &f.viewer, &["economics", "audit"]),
            ("auditor", &f.auditor, &["economics"]),
        ];
        for (role, key, refused) in table {
            let session = f.login(key).await;
            for page in PAGES {
                let got = f.get(&ui(page), &session).await;
                let want = if refused.contains(&page) {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::OK
                };
                assert_eq!(got.status, want, "{label}: {role} {page}: {}", got.body);
                assert!(got.content_type.starts_with("text/html"), "{role} {page}");
                let tab = format!("href=\"/ui/customers/acme/{page}\"");
                if refused.contains(&page) {
                    assert!(got.body.contains("may not"), "{role} {page}: {}", got.body);
                } else {
                    assert!(got.body.contains(&tab), "{role} sees the {page} tab");
                }
            }
            let overview = f.get(&ui("overview"), &session).await.body;
            for page in refused {
                assert!(
                    !overview.contains(&format!("href=\"/ui/customers/acme/{page}\"")),
                    "{role} is not offered {page}"
                );
            }
            // Costs are the provider's: only its overview compares them.
            assert_eq!(
                overview.contains("Cost against revenue"),
                role == "operator",
                "{role}"
            );
        }

        // Forms follow the roles: a customer admin disputes, an operator
        // decides, a viewer and an auditor do neither.
        let page = f.get(&ui("outcomes"), &f.login(&f.admin).await).await;
        let outcome = ui(&format!("outcomes/{}", outcome_on(&page.body)));
        for (key, disputes) in [
            (&f.admin, true),
            (&f.viewer, false),
            (&f.auditor, false),
            (&f.operator, false),
        ] {
            let page = f.get(&outcome, &f.login(key).await).await;
            assert_eq!(page.status, StatusCode::OK);
            assert_eq!(
                page.body.contains("Dispute this outcome"),
                disputes,
                "{label}"
            );
        }
        for (key, decides) in [(&f.admin, true), (&f.viewer, false), (&f.auditor, false)] {
            let page = f.get(&ui("approvals"), &f.login(key).await).await;
            assert!(
                page.body.contains("Charged twice"),
                "{label}: {}",
                page.body
            );
            assert_eq!(page.body.contains("Approve and send"), decides);
        }
        // A viewer's forged decision is refused on the server.
        let viewer = f.login(&f.viewer).await;
        let page = f
            .post(
                &ui("approvals/decide"),
                &viewer,
                &[
                    ("csrf", &viewer.csrf),
                    ("approval", "apr_x"),
                    ("decision", "approve"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{label}");
        // The operator picks among every customer.
        let operator = f.login(&f.operator).await;
        let list = f.get("/ui/customers", &operator).await;
        assert!(list.body.contains("/ui/customers/globex/overview"));
        let go = f.get("/ui/go?customer=globex", &operator).await;
        assert_eq!(
            go.location.as_deref(),
            Some("/ui/customers/globex/overview")
        );
        // A customer's person is sent to their own customer instead.
        let list = f.get("/ui/customers", &viewer).await;
        assert_eq!(
            list.location.as_deref(),
            Some("/ui/customers/acme/overview")
        );
    });
}

#[test]
fn another_customers_pages_answer_404() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let admin = f.login(&f.admin).await;
        let statement = format!("st.acme.{}", f.last_month);
        let outcome = outcome_on(&f.get(&ui("outcomes"), &admin).await.body);
        let outsider = f.login(&f.outsider).await;
        let mut paths: Vec<String> = PAGES.iter().map(|p| ui(p)).collect();
        paths.extend([
            ui(&format!("outcomes/{outcome}")),
            ui(&format!("statements/{statement}")),
            ui(&format!("statements/{statement}/verification")),
            ui(&format!("statements/{statement}/download/statement.json")),
            ui(&format!("statements/{statement}/download/evidence.json")),
            ui(&format!("statements/preview/{}", f.last_month)),
            // Their own customer's path with acme's ids in it.
            format!("/ui/customers/globex/outcomes/{outcome}"),
            format!("/ui/customers/globex/statements/{statement}"),
            format!("/ui/customers/globex/statements/{statement}/download/statement.json"),
            "/ui/customers/nobody/overview".to_owned(),
        ]);
        for path in &paths {
            let page = f.get(path, &outsider).await;
            assert_eq!(
                page.status,
                StatusCode::NOT_FOUND,
                "{label}: {path}: {}",
                page.body
            );
            assert!(!page.body.contains("T-1"), "{path} leaks nothing");
        }
        // Forms naming the other customer, or its outcomes, change nothing.
        let page = f
            .post(
                &ui("disputes"),
                &outsider,
                &[
                    ("csrf", &outsider.csrf),
                    ("outcome", &outcome),
                    ("reason", "mine"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{label}");
        let page = f
            .post(
                "/ui/customers/globex/disputes",
                &outsider,
                &[
                    ("csrf", &outsider.csrf),
                    ("outcome", &outcome),
                    ("reason", "mine"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{label}");
        let (_, v) = f
            .server
            .json(
                Method::GET,
                &format!("/v1/outcomes/{outcome}"),
                &f.admin,
                Value::Null,
            )
            .await;
        assert_eq!(v["disputes"], json!([]), "{label}");
        // The outsider's own pages work.
        let page = f.get("/ui/customers/globex/overview", &outsider).await;
        assert_eq!(page.status, StatusCode::OK, "{label}");
    });
}

#[test]
fn hostile_strings_stay_text() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let admin = f.login(&f.admin).await;
        let operator = f.login(&f.operator).await;
        // A dispute whose reason is markup.
        let outcomes = f.get(&ui("outcomes"), &admin).await.body;
        let at = outcomes
            .find("&lt;script&gt;alert(&quot;subject&quot;)")
            .expect("the hostile subject, escaped");
        let start = outcomes[..at].rfind("out.acme.").unwrap();
        let hostile_outcome = outcomes[start..start + 33].to_owned();
        let page = f
            .post(
                &ui("disputes"),
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("outcome", &hostile_outcome),
                    ("reason", HOSTILE_REASON),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{label}: {}", page.body);
        let pages = [
            (&operator, "/ui/customers".to_owned()),
            (&operator, ui("overview")),
            (&admin, ui("outcomes")),
            (&admin, ui(&format!("outcomes/{hostile_outcome}"))),
            (&admin, ui("disputes")),
            (&operator, ui("disputes")),
            (&admin, ui("approvals")),
            (&admin, ui("knowledge?q=refund+card")),
            (&admin, ui("audit")),
        ];
        for (session, path) in pages {
            let page = f.get(&path, session).await;
            assert_eq!(
                page.status,
                StatusCode::OK,
                "{label}: {path}: {}",
                page.body
            );
            for raw in ["<script>alert", "<img src=x", "href=\"javascript:"] {
                assert!(!page.body.contains(raw), "{path} contains {raw}");
            }
            assert!(
                page.body.contains("&lt;"),
                "{path} shows the markup as text"
            );
            let csp = page.csp.unwrap_or_default();
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        }
        assert!(f
            .get(&ui("overview"), &admin)
            .await
            .body
            .contains("Acme &lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt; &amp; Co"));
        let knowledge = f.get(&ui("knowledge?q=refund+card"), &admin).await.body;
        assert!(
            knowledge.contains("&lt;img src=x onerror=alert(&quot;doc&quot;)&gt;Refunds"),
            "{knowledge}"
        );
        // The error page of a hostile query escapes it too.
        let page = f.get(&ui("outcomes?state=%3Cscript%3E"), &admin).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(!page.body.contains("<script>"), "{}", page.body);
    });
}

#[test]
fn knowledge_answers_with_the_viewers_groups_only() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let q = ui("knowledge?q=staff+refund+limit+approve");
        let viewer = f.get(&q, &f.login(&f.viewer).await).await;
        assert_eq!(viewer.status, StatusCode::OK, "{label}");
        assert!(
            !viewer.body.contains(RESTRICTED_TITLE),
            "{label}: {}",
            viewer.body
        );
        assert!(
            !viewer.body.contains("150 USD"),
            "{label}: not a word of it"
        );
        let member = f.get(&q, &f.login(&f.admin).await).await;
        assert!(
            member.body.contains(RESTRICTED_TITLE),
            "{label}: {}",
            member.body
        );
        assert!(
            member.body.contains("finance"),
            "the page names the reader's groups"
        );
    });
}

#[test]
fn disputes_and_approvals_through_the_dashboard_change_what_the_api_says() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let admin = f.login(&f.admin).await;
        let operator = f.login(&f.operator).await;
        // The open outcome of this month.
        let month = payoff_clock::wall().format("%Y-%m-01");
        let list = f.get(&ui(&format!("outcomes?from={month}")), &admin).await;
        let outcome = outcome_on(&list.body);
        assert_eq!(f.state_of(&outcome).await, "pending");
        let page = f
            .post(
                &ui("disputes"),
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("outcome", &outcome),
                    ("reason", "not solved"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{label}: {}", page.body);
        let listed = f.get(page.location.as_deref().unwrap(), &admin).await;
        assert!(
            listed.body.contains("Dispute raised for outcome"),
            "{}",
            listed.body
        );
        assert!(listed.body.contains(&outcome));
        assert_eq!(f.state_of(&outcome).await, "disputed");
        // A rejection needs its note, as in the API.
        let page = f
            .post(
                &ui("disputes/decide"),
                &operator,
                &[
                    ("csrf", &operator.csrf),
                    ("outcome", &outcome),
                    ("decision", "reject"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{label}");
        assert!(page.body.contains("note: is required"), "{}", page.body);
        let page = f
            .post(
                &ui("disputes/decide"),
                &operator,
                &[
                    ("csrf", &operator.csrf),
                    ("outcome", &outcome),
                    ("decision", "accept"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{label}: {}", page.body);
        assert_eq!(f.state_of(&outcome).await, "voided");
        let shown = f
            .get(&ui(&format!("outcomes/{outcome}")), &admin)
            .await
            .body;
        assert!(
            shown.contains("state-voided"),
            "the page says what the API says"
        );

        // Approving the queued reply sends it and is audited.
        let queue = f.get(&ui("approvals"), &admin).await.body;
        let at = queue.find("name=\"approval\" value=\"").unwrap() + 23;
        let approval = queue[at..at + 24].to_owned();
        let page = f
            .post(
                &ui("approvals/decide"),
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("approval", &approval),
                    ("decision", "approve"),
                    ("text", "Refunded today."),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{label}: {}", page.body);
        let (_, v) = f
            .server
            .json(
                Method::GET,
                "/v1/approvals?customer=acme",
                &f.operator,
                Value::Null,
            )
            .await;
        assert_eq!(v["approvals"][0]["status"], "approved", "{v}");
        assert_eq!(v["approvals"][0]["final_text"], "Refunded today.");
        let audit = f.get(&ui("audit?action=approve"), &admin).await.body;
        assert!(audit.contains(&format!("approval/{approval}")), "{audit}");
        let (_, v) = f
            .server
            .json(
                Method::GET,
                "/v1/audit?customer=acme&action=approvals/decide&decision=allow",
                &f.operator,
                Value::Null,
            )
            .await;
        assert_eq!(
            v["records"],
            json!([]),
            "{label}: the decision's own record is the one"
        );
        // Deciding it again is a readable conflict, not a crash.
        let page = f
            .post(
                &ui("approvals/decide"),
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("approval", &approval),
                    ("decision", "reject"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::CONFLICT, "{label}");
        assert!(page.body.contains("already"), "{}", page.body);

        // Another agent's action the rules send to a person waits on the
        // same page, with what it would act on, and is decided there.
        let (s, v) = f
            .server
            .json(
                Method::POST,
                "/v1/customers/acme/action-rules",
                &f.operator,
                json!({
                    "schema": include_str!("../../../../examples/actions/schema.cedarschema"),
                    "rules": include_str!("../../../../examples/actions/rules.cedar"),
                }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let (s, asked) = f
            .server
            .json(
                Method::POST,
                "/v1/actions",
                &f.agent,
                json!({"agent": "refunds", "action": "issue_refund",
                    "resource": {"type": "Order", "id": "o-<b>77</b>", "attributes": {"country": "FR", "closed": false}},
                    "context": {"amount": "64.00", "currency": "EUR"}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{asked}");
        let id = asked["id"].as_str().unwrap();
        let queue = f.get(&ui("approvals"), &admin).await.body;
        assert!(queue.contains(&format!("id=\"{id}\"")), "{label}: {queue}");
        assert!(
            queue.contains("issue_refund") && queue.contains("64.00"),
            "{queue}"
        );
        assert!(
            queue.contains("o-&lt;b&gt;77&lt;/b&gt;"),
            "{label}: the resource stays text"
        );
        let page = f
            .post(
                &ui("approvals/decide"),
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("approval", id),
                    ("decision", "reject"),
                    ("reason", "ask the customer first"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{label}: {}", page.body);
        let (_, v) = f
            .server
            .json(
                Method::GET,
                &format!("/v1/actions/{id}"),
                &f.agent,
                Value::Null,
            )
            .await;
        assert_eq!(v["state"], "rejected", "{label}: {v}");
        assert_eq!(v["approval"]["reason"], "ask the customer first");
    });
}

/// Issue 17, item 6: the agents a customer's records name, whichever door
/// the records came through: calls per agent, their errors and latency
/// percentiles, tools, runs and actions; costs only for the provider's
/// roles, who also see every customer's agents.
#[test]
fn the_agents_page_shows_what_each_agent_did() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let now = payoff_clock::wall();
        // Minutes ago, but never before the ISO week the drift check looks
        // at (in a week's first minutes they fell in the week before, and
        // the notice never came): then milliseconds into it, in the same
        // order.
        let week = payoff_billing::Period::containing(payoff_billing::Cadence::Weekly, now).start;
        let at = |minutes: i64| {
            (now - chrono::Duration::minutes(minutes))
                .max(week + chrono::Duration::milliseconds(20 - minutes))
                .to_rfc3339()
        };
        let mut batch = Vec::new();
        for (i, latency) in [100u64, 200, 300, 400].into_iter().enumerate() {
            batch.push(
                json!({"specversion": "1.0", "id": format!("lead-call-{i}"), "source": "crm-bot",
                "type": "llm.call", "subject": "L-1", "time": at(10 + i as i64),
                "data": {"model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
                         "agent": "lead-bot", "latency_ms": latency,
                         "result": if i == 3 { "upstream_error" } else { "ok" }}}),
            );
        }
        batch.push(
            json!({"specversion": "1.0", "id": "tool-1", "source": "crm-bot", "type": "tool.call",
            "subject": "L-1", "time": at(5), "data": {"agent": "lead-bot", "tool": "crm.lookup"}}),
        );
        batch.push(json!({"specversion": "1.0", "id": "hostile-call", "source": "crm-bot", "type": "llm.call",
            "subject": "L-2", "time": at(3), "data": {"model": "gpt-4o", "input_tokens": 1, "agent": HOSTILE_SUBJECT}}));
        batch.push(
            json!({"specversion": "1.0", "id": "old-call", "source": "crm-bot", "type": "llm.call",
            "subject": "L-3", "time": (now - chrono::Duration::days(20)).to_rfc3339(),
            "data": {"model": "gpt-4o", "input_tokens": 1, "agent": "old-bot"}}),
        );
        let (s, v) = f
            .server
            .send(
                &f.agent,
                "application/cloudevents-batch+json",
                &Value::Array(batch),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{label}: {v}");

        let admin = f.login(&f.admin).await;
        let page = f.get(&ui("agents"), &admin).await;
        assert_eq!(page.status, StatusCode::OK, "{label}: {}", page.body);
        let body = &page.body;
        let row_at = body
            .find("<td class=\"mono\">lead-bot</td>")
            .expect("the lead-bot row");
        let row = &body[row_at..row_at + body[row_at..].find("</tr>").unwrap()];
        let cells: Vec<&str> = row
            .split("<td class=\"num\">")
            .skip(1)
            .map(|c| c.split("</td>").next().unwrap())
            .collect();
        // Calls, errors, p50, p95 (no cost column for the customer's people),
        // tool calls, runs.
        assert_eq!(
            &cells[..6],
            ["4", "1 (25.0%)", "200", "400", "1", "0"],
            "{label}: {row}"
        );
        assert!(
            !body.contains("old-bot"),
            "{label}: outside the 7-day window"
        );
        assert!(
            !body.contains(">Cost<"),
            "{label}: costs are the provider's"
        );
        assert!(
            !body.contains(HOSTILE_SUBJECT) && body.contains("&lt;script&gt;"),
            "{label}: names stay text"
        );
        // A quarter of its calls failed: above its band of 0.2.
        let drift = "<strong>0.2500</strong> in week";
        eventually("the drift notice", || async {
            f.get(&ui("agents"), &admin).await.body.contains(drift)
        })
        .await;
        let month = f.get(&ui("agents?days=30"), &admin).await.body;
        assert!(month.contains("old-bot"), "{label}");
        assert_eq!(
            f.get(&ui("agents?days=2"), &admin).await.status,
            StatusCode::BAD_REQUEST
        );

        let operator = f.login(&f.operator).await;
        let page = f.get(&ui("agents"), &operator).await.body;
        assert!(
            page.contains(">Cost<") && page.contains("Every customer"),
            "{label}: {page}"
        );
        let all_at = page
            .find("id=\"all-agents\"")
            .expect("every customer's agents");
        assert!(page[all_at..].contains("lead-bot"), "{label}");
    });
}

#[test]
fn the_statement_page_agrees_with_the_api_and_verifies() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let viewer = f.login(&f.viewer).await;
        let id = format!("st.acme.{}", f.last_month);
        let (s, signed) = f
            .server
            .json(
                Method::GET,
                &format!("/v1/statements/{id}"),
                &f.viewer,
                Value::Null,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let total = signed["total"].as_str().unwrap();
        let page = f.get(&ui(&format!("statements/{id}")), &viewer).await;
        assert_eq!(page.status, StatusCode::OK, "{label}: {}", page.body);
        assert!(
            page.body
                .contains(&format!("statement-total\">{total} USD<")),
            "{}",
            page.body
        );
        let overview = f.get(&ui("overview"), &viewer).await.body;
        assert!(
            overview.contains(&format!("{total} USD")),
            "the overview shows the closed period"
        );
        let verification = f
            .get(&ui(&format!("statements/{id}/verification")), &viewer)
            .await;
        let v: Value = serde_json::from_str(&verification.body).unwrap();
        assert_eq!(v["verified"], true, "{label}: {v}");
        // Downloads are the API's bytes.
        let (_, _, raw) = f
            .server
            .call(
                Method::GET,
                &format!("/v1/statements/{id}"),
                Some(&f.viewer),
                None,
                vec![],
            )
            .await;
        let json = f
            .get(
                &ui(&format!("statements/{id}/download/statement.json")),
                &viewer,
            )
            .await;
        assert_eq!(json.body, raw);
        let csv = f
            .get(
                &ui(&format!("statements/{id}/download/statement.csv")),
                &viewer,
            )
            .await;
        assert!(csv.content_type.starts_with("text/csv"));
        assert!(
            csv.body.ends_with(&format!("\"{total}\",\"0\"\n")),
            "{}",
            csv.body
        );
        let (_, _, api_csv) = f
            .server
            .call(
                Method::GET,
                &format!("/v1/statements/{id}?format=csv"),
                Some(&f.viewer),
                None,
                vec![],
            )
            .await;
        assert_eq!(csv.body, api_csv);
    });
}

#[test]
fn errors_are_readable_pages() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let admin = f.login(&f.admin).await;
        for (path, status, says) in [
            (
                "/ui/nowhere",
                StatusCode::NOT_FOUND,
                "no such dashboard page",
            ),
            (
                &*ui("outcomes?state=nope"),
                StatusCode::BAD_REQUEST,
                "is not one of",
            ),
            (
                &*ui("outcomes?from=yesterday"),
                StatusCode::BAD_REQUEST,
                "is not a date",
            ),
            (
                &*ui("outcomes/out.acme.000000000000000000000000"),
                StatusCode::NOT_FOUND,
                "no outcome",
            ),
            (
                &*ui("statements/preview/2001-13"),
                StatusCode::BAD_REQUEST,
                "period",
            ),
            (
                &*ui("contract?version=99"),
                StatusCode::NOT_FOUND,
                "no contract version 99",
            ),
            ("/ui/assets/nothing.js", StatusCode::NOT_FOUND, "no asset"),
        ] {
            let page = f.get(path, &admin).await;
            assert_eq!(page.status, status, "{label}: {path}: {}", page.body);
            assert!(page.content_type.starts_with("text/html"), "{path}");
            assert!(page.body.contains(says), "{path}: {}", page.body);
            assert!(page.body.contains("Back to the dashboard"), "{path}");
        }
        // A form larger than the limit is refused whole.
        let big = "x".repeat(300 * 1024);
        let page = f
            .post(
                &ui("disputes"),
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("outcome", "out.acme.x"),
                    ("reason", &big),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE, "{label}");
        assert!(page.body.contains("KiB"), "{}", page.body);
        // A reason longer than the API allows is refused with the API's words.
        let long = "y".repeat(2001);
        let outcome = outcome_on(&f.get(&ui("outcomes"), &admin).await.body);
        let page = f
            .post(
                &ui("disputes"),
                &admin,
                &[
                    ("csrf", &admin.csrf),
                    ("outcome", &outcome),
                    ("reason", &long),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(
            page.body.contains("at most 2000 characters"),
            "{}",
            page.body
        );
        // Assets are served from the binary.
        let css = f.get("/ui/assets/style.css", &admin).await;
        assert_eq!(css.status, StatusCode::OK);
        assert!(css.content_type.starts_with("text/css"));
    });
}

/// Regression: the Overview answered 409 ("close periods in order")
/// whenever the previous period was still open, i.e. in the first days of
/// every month. It shows the open period and says what it assumes.
#[test]
fn the_overview_of_a_month_after_an_open_one_shows_it_and_says_so() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let globex = contract().replace("\"acme\"", "\"globex\"");
        let (s, v, _) = f
            .server
            .call(
                Method::POST,
                "/v1/customers/globex/contracts",
                Some(&f.operator),
                Some("application/toml"),
                globex.into_bytes(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{label}: {v}");
        let operator = f.login(&f.operator).await;
        let page = f.get("/ui/customers/globex/overview", &operator).await;
        assert_eq!(page.status, StatusCode::OK, "{label}: {}", page.body);
        let last_month = month_start(1).format("%Y-%m").to_string();
        assert!(
            page.body.contains("id=\"assumed\"") && page.body.contains(&last_month),
            "{label}: {}",
            page.body
        );
    });
}

/// Issue 15: the session cookie was `Secure` only behind a proxy saying
/// `X-Forwarded-Proto: https`. With `secure_cookies` it always is.
#[test]
fn the_session_cookie_is_secure_when_the_operator_says_so() {
    on_every_backend(|db_url, label| async move {
        for secure in [false, true] {
            let config = ServerConfig {
                secure_cookies: secure,
                ..ServerConfig::default()
            };
            let server = TestServer::start(&db_url, config).await;
            let reply = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .post(format!("{}/ui/login", server.url))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string([("key", server.admin.as_str())]).unwrap())
                .send()
                .await
                .unwrap();
            let status = reply.status();
            let set = reply
                .headers()
                .get(SET_COOKIE)
                .map(|v| v.to_str().unwrap().to_owned());
            let body = reply.text().await.unwrap();
            assert_eq!(status, StatusCode::SEE_OTHER, "{label}: {body}");
            let set = set.unwrap();
            assert_eq!(set.contains("; Secure"), secure, "{label}: {set}");
        }
    });
}

/// Issue 14: the Overview priced every outcome of its period on every
/// look (seconds at a million). Its figures are kept with the ledger head
/// they count: a look at current figures reads them; stale ones are
/// computed again in the request when that was cheap, else shown marked
/// (with how many newer events they leave out) and refreshed in the
/// background, after which the page counts the new events. Both
/// policies, by a newer event and by age alone.
#[test]
fn the_overview_answers_its_kept_figures_and_says_what_they_count() {
    on_every_backend(|db_url, label| async move {
        for background in [true, false] {
            let exact_below = if background {
                std::time::Duration::ZERO
            } else {
                std::time::Duration::from_secs(3600)
            };
            let config = ServerConfig {
                overview: payoff_accounting::glance::Policy {
                    exact_below,
                    ..Default::default()
                },
                background: payoff_server::Background::Manual,
                ..ServerConfig::default()
            };
            let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
                .unwrap()
                .to_utc();
            let clock = payoff_clock::Clock::manual(at);
            let server = TestServer::start_with(&db_url, config, {
                let clock = clock.clone();
                |s| s.with_clock(clock)
            })
            .await;
            // One database for both servers: a customer each.
            let customer = if background { "acme" } else { "globex" };
            server.customer(customer).await;
            let operator = server.key("operator", None).await;
            server
                .upload_contract(
                    &operator,
                    customer,
                    &contract()
                        .replace(&month_start(1).to_string(), "2026-10-01")
                        .replace("\"acme\"", &format!("\"{customer}\"")),
                )
                .await;
            let agent = server.key("agent", Some(customer)).await;
            let close = |n: u32| {
                json!({"specversion": "1.0", "id": format!("closed-{n}"), "source": "helpdesk",
                    "type": "ticket.closed", "subject": format!("T-{n}"),
                    "time": format!("2026-11-{:02}T08:00:00Z", 2 + n), "data": {"resolved_by": "ai"}})
            };
            let (s, v) = server
                .send(
                    &agent,
                    "application/cloudevents-batch+json",
                    &json!([close(1), close(2)]),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{label}: {v}");
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let session = login(&http, &server.url, &operator).await;
            let look = |page: &'static str| {
                let (http, url, cookie) = (&http, &server.url, &session.cookie);
                async move {
                    let r = http
                        .get(format!("{url}/ui/customers/{customer}/{page}"))
                        .header(COOKIE, cookie)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::OK, "{page}");
                    r.text().await.unwrap()
                }
            };
            let overview = || look("overview");
            // The Economics page reads the same kept figures.
            let economics = || look("economics");
            let recognised = |n: u32| {
                format!("<span class=\"figure\">{n}</span><span class=\"caption\">outcomes recognised in 2026-11")
            };
            let catching_up = "Being brought up to date";
            let revenue = |amount: &str| {
                format!("<span class=\"figure\">{amount} USD</span><span class=\"caption\">revenue (preview statement)")
            };
            // The base fee and 2.50 per outcome, over the outcomes delivered
            // (counted from the kept lines, which keep no outcome ids).
            let per_unit = |price: &str| {
                format!("<span class=\"figure\">{price} USD</span><span class=\"caption\">per unit of work delivered")
            };

            // No figures kept yet: computed in the request, whatever the policy.
            let page = overview().await;
            assert!(page.contains(&recognised(2)), "{label}: {page}");
            assert!(page.contains(&per_unit("52.50")), "{label}: {page}");
            assert!(page.contains("ledger sequence 2."), "{label}: {page}");
            assert!(!page.contains(catching_up), "{label}: {page}");
            // Current: the same figures again, nothing to refresh.
            assert!(overview().await.contains(&recognised(2)));
            assert_eq!(
                payoff_server::glances::tick(&server.state).await,
                0,
                "{label}"
            );

            // A newer event.
            let (s, v) = server
                .send(&agent, "application/cloudevents+json", &close(3))
                .await;
            assert_eq!(s, StatusCode::OK, "{label}: {v}");
            let page = overview().await;
            if background {
                assert!(page.contains(&recognised(2)), "{label}: {page}");
                assert!(page.contains(catching_up), "{label}: {page}");
                assert!(page.contains("(1 newer events)"), "{label}: {page}");
                let costs = economics().await;
                assert!(costs.contains(&revenue("105.00")), "{label}: {costs}");
                assert!(costs.contains(catching_up), "{label}: {costs}");
                assert_eq!(
                    payoff_server::glances::tick(&server.state).await,
                    1,
                    "{label}"
                );
                let page = overview().await;
                assert!(page.contains(&recognised(3)), "{label}: {page}");
                assert!(page.contains(&per_unit("35.83")), "{label}: {page}");
                assert!(!page.contains(catching_up), "{label}: {page}");
            } else {
                assert!(page.contains(&recognised(3)), "{label}: {page}");
                assert!(!page.contains(catching_up), "{label}: {page}");
            }
            let costs = economics().await;
            assert!(costs.contains(&revenue("107.50")), "{label}: {costs}");
            assert!(!costs.contains(catching_up), "{label}: {costs}");
            assert!(overview().await.contains("ledger sequence 3."), "{label}");

            // Time alone: an open period's outcomes mature as it passes.
            clock.set(at + chrono::Duration::seconds(61));
            let page = overview().await;
            assert_eq!(page.contains(catching_up), background, "{label}: {page}");
            assert!(!page.contains("newer events"), "{label}: {page}");
            assert_eq!(
                payoff_server::glances::tick(&server.state).await,
                usize::from(background),
                "{label}"
            );
            let page = overview().await;
            assert!(!page.contains(catching_up), "{label}: {page}");
            assert!(page.contains("2026-11-20 12:01:01 UTC"), "{label}: {page}");
        }
    });
}

/// The Outcomes page counts the outcomes matching its filters up to a
/// thousand, and beyond says "more than": what the count costs stops
/// growing with the ledger there. A filter matching fewer still counts
/// them exactly.
#[test]
fn the_outcomes_page_counts_matches_up_to_a_thousand() {
    on_every_backend(|db, label| async move {
        let f = setup(&db).await;
        let session = f.login(&f.operator).await;
        let before = f.get(&ui("outcomes"), &session).await;
        assert!(
            before.body.contains("4 outcomes match."),
            "{label}: {}",
            before.body
        );
        let now = payoff_clock::wall().to_rfc3339();
        for batch in 0..2 {
            let events: Vec<Value> = (0..500)
                .map(|i| {
                    json!({"specversion": "1.0", "id": format!("more-{batch}-{i}"), "source": "helpdesk",
                           "type": "ticket.closed", "subject": format!("M-{batch}-{i}"), "time": now,
                           "data": {"resolved_by": "ai"}})
                })
                .collect();
            let (s, v) = f
                .server
                .send(
                    &f.agent,
                    "application/cloudevents-batch+json",
                    &json!(events),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{label}: {v}");
        }
        let after = f.get(&ui("outcomes"), &session).await;
        assert_eq!(after.status, StatusCode::OK, "{label}");
        assert!(
            after.body.contains("More than 1,000 outcomes match."),
            "{label}: {}",
            after.body
        );
        let billed = f.get(&ui("outcomes?state=billed"), &session).await;
        assert!(
            billed.body.contains("3 outcomes match."),
            "{label}: {}",
            billed.body
        );
    });
}
