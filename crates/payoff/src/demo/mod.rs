//! `payoff demo`: a month of a small online store's support and sales,
//! worked by the support agent and billed with evidence, all through the
//! real API of a real server; then the dashboard.
//!
//! The server runs in this process on loopback with a simulated clock:
//! the month is replayed in time order ([`simulation`]), so every act of
//! the agent is stamped when it happens in the story, and the month can be
//! closed at its end like any other.

mod business;
mod database;
mod simulation;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use payoff_clock::Clock;
use payoff_server::AppState;
use payoff_store::{LedgerConfig, Role};
use serde_json::{json, Value};

use crate::client::ApiClient;
use crate::commands::init::ensure_signing_key;
use crate::commands::{audit_local, create_store};
use crate::settings::Settings;
use crate::{bad_input, BadInput};
use simulation::{Actors, Simulation};

#[derive(Args)]
pub struct DemoArgs {
    /// Seed of the generated business: the same seed and month give the same story
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Support tickets in the month
    #[arg(long, default_value_t = 5000)]
    tickets: usize,
    /// Sales leads in the month
    #[arg(long, default_value_t = 1400)]
    leads: usize,
    /// The month to play, e.g. 2026-11 [default: the last full month]
    #[arg(long)]
    month: Option<String>,
    /// Where to build the demo, wiped first [default: --data-dir when
    /// given, else ./payoff-demo]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Address of the demo server
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Exit after the summary instead of serving the dashboard
    #[arg(long)]
    no_serve: bool,
}

const MARKER: &str = ".payoff-demo";
const CUSTOMER: &str = "acme";
/// The internal group of the help centre, and the article the browser
/// tests look for as someone outside it.
const STAFF: &str = "staff";
const RESTRICTED_TITLE: &str = "Refund approval limits (internal)";
const RESTRICTED_QUERY: &str = "refund approval limits supervisor";

/// Acme's contract: a base fee; a fee per extra ticket resolved within a
/// day, proven against the support holdout; 0.2 % of the expected value
/// of the extra qualified leads, proven against the leads holdout; 0.2 %
/// of the deals won from leads the AI qualified; and an accuracy service
/// level.
fn contract(month: &str) -> String {
    format!(
        r#"[contract]
customer = "{CUSTOMER}"
currency = "USD"
period = "monthly"
starts = "{month}-01"
base_fee = "300.00"
cap = "6000.00"
dispute_within = "45d"
# What a ticket handled by Acme's own staff costs Acme.
baseline_unit_cost = "4.20"
# The helpdesk AI licence this contract replaces, per year.
licence_equivalent = "18000.00"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed" && event.data.minutes_open <= 1440'
void_when = 'event.type == "ticket.reopened"'
matures_after = "72h"
attribution = {{ holdout = 0.10, confidence = 0.95, bill = "lower_bound", experiment = "support" }}
price = {{ per_unit = "0.60" }}

[[outcome]]
name = "qualified_lead"
when = 'event.type == "lead.stage_changed" && event.data.stage == "SQL"'
value = 'event.data.expected_value'
attribution = {{ holdout = 0.10, confidence = 0.95, bill = "lower_bound", experiment = "leads" }}
price = {{ percent_of = "value", rate = "0.002" }}

[[outcome]]
name = "deal_won"
when = 'event.type == "deal.won" && event.data.qualified_by == "ai"'
value = 'event.data.amount'
price = {{ percent_of = "value", rate = "0.002" }}

[[service_level]]
name = "answer_accuracy"
numerator = 'event.type == "review.done" && event.data.correct'
denominator = 'event.type == "review.done"'
at_least = "0.85"
min_samples = 30
credit = "5%"
"#
    )
}

/// The month to play: `--month`, or the last one that has ended.
fn month_of(args: &DemoArgs) -> anyhow::Result<(String, DateTime<Utc>, DateTime<Utc>)> {
    let first = match &args.month {
        Some(m) => NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
            .map_err(|_| BadInput(format!("--month: \"{m}\" is not a month like 2026-11")))?,
        None => {
            let today = payoff_clock::wall().date_naive();
            today.with_day(1).expect("day 1") - Months::new(1)
        }
    };
    let start = Utc.from_utc_datetime(&first.and_hms_opt(0, 0, 0).expect("midnight"));
    let end = start + Months::new(1);
    if end > payoff_clock::wall() {
        return bad_input(format!(
            "--month: {} has not ended yet; a month is closed when it is over",
            first.format("%Y-%m")
        ));
    }
    Ok((first.format("%Y-%m").to_string(), start, end))
}

/// The demo's directory (keys, knowledge index, evidence and, unless
/// `--database` names another, its SQLite database) and its database.
/// Neither is touched before both are known to be new or the demo's own.
fn fresh_place(settings: &Settings, args: &DemoArgs) -> anyhow::Result<(PathBuf, String)> {
    let dir = args
        .dir
        .clone()
        .or_else(|| settings.data_dir_named.then(|| settings.data_dir.clone()))
        .unwrap_or_else(|| PathBuf::from("payoff-demo"));
    if dir.exists() && !dir.join(MARKER).exists() {
        return bad_input(format!(
            "{} exists and was not made by `payoff demo`; choose another --dir",
            dir.display()
        ));
    }
    let database = if settings.database_named {
        settings.database.clone()
    } else {
        dir.join("payoff.db").display().to_string()
    };
    // A SQLite file in the directory goes with it; any other database is
    // looked at (and refused unless new or the demo's) first.
    let in_dir = database::sqlite_path(&database).is_some_and(|p| p.starts_with(&dir));
    let found = if in_dir {
        database::Found::New
    } else {
        database::look(&database)?
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    if let database::Found::Demo(clear) = found {
        clear.run()?;
    }
    std::fs::create_dir_all(dir.join("knowledge"))?;
    std::fs::write(
        dir.join(MARKER),
        "made by payoff demo; removed by the next run\n",
    )?;
    Ok((dir, database))
}

pub fn run(settings: &Settings, args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.tickets == 0 || args.tickets > 100_000 || args.leads > 100_000 {
        return bad_input("--tickets must be 1 to 100000 and --leads at most 100000");
    }
    let (month, start, end) = month_of(&args)?;
    let (dir, database) = fresh_place(settings, &args)?;
    let demo = Settings {
        data_dir: dir.clone(),
        database,
        ..settings.clone()
    };
    let store = create_store(&demo)?;
    // First of all, so that a later run knows this database for the demo's.
    audit_local(
        &store,
        settings.clock.now(),
        None,
        database::MARK,
        "payoff demo",
        &format!(
            "seed {}, {month}; cleared by the next demo built here",
            args.seed
        ),
    )?;
    let signing_key = ensure_signing_key(&demo.signing_key_path())?;
    let (admin, _) = store.create_key(Role::Admin, None, settings.clock.now())?;
    let addr = demo.listen_addr(Some(&args.listen))?;
    let clock = Clock::manual(start - Duration::days(1));

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let url = format!("http://{}", listener.local_addr()?);
        let index = payoff_knowledge::KnowledgeIndex::open(dir.join("knowledge"))
            .context("cannot open the knowledge index")?;
        let mut state = AppState::new(
            store.clone(),
            store.ledger(LedgerConfig::default())?,
            // The month is replayed in minutes through one integration key.
            payoff_server::ServerConfig {
                rate_limits: payoff_server::limits::RateLimits::OFF,
                ..demo.server.clone()
            },
            signing_key,
        )
        .with_knowledge(index)
        .with_secret_key(&crate::commands::init::ensure_secrets_key(
            &demo.secrets_key_path(),
        )?)
        .with_clock(clock.clone())
        .with_support(demo.support.clone())
        .map_err(|e| BadInput(format!("support: {e}")))?;
        let answers = match &demo.model {
            Some(model) => {
                let provider = payoff_knowledge::OpenAiProvider::with_trust(
                    model.clone(),
                    &demo.server.egress.trust,
                )
                    .map_err(|e| BadInput(format!("model: {e}")))?;
                state = state.with_answerer(payoff_server::answers::Answerer::OpenAi(provider));
                format!("the model {} at {}", model.model, model.base_url)
            }
            None => "the offline extractive answerer".to_owned(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(payoff_server::serve(listener, state, async {
            let _ = stopped.await;
        }));

        let provider = ApiClient::new(&url, &admin.key)?;
        let keys = setup(&provider, &url, &month).await?;
        let help = business::help_centre();
        let cadmin = ApiClient::new(&url, &keys.customer_admin)?;
        upload_help_centre(&cadmin, &help).await?;

        let tickets = business::tickets(&help, args.seed, start, end, args.tickets);
        let leads = business::leads(args.seed, start, end, args.leads);
        println!(
            "Payoff demo: Acme Outdoor Co., {} (seed {}), answers by {answers}",
            start.format("%B %Y"),
            args.seed
        );
        println!(
            "  {} help-centre articles ({} internal), {} tickets, {} leads, replayed through {url}",
            help.article.len(),
            help.article.iter().filter(|a| !a.groups.is_empty()).count(),
            tickets.len(),
            leads.len()
        );
        let progress = ProgressBar::new(tickets.len() as u64);
        progress.set_style(
            ProgressStyle::with_template("  {bar:40} {pos}/{len} tickets, {elapsed}")
                .expect("template"),
        );
        let started = std::time::Instant::now();
        let mut sim = Simulation::new(
            Actors {
                integration: ApiClient::new(&url, &keys.agent)?,
                approver: cadmin.clone(),
            },
            clock.clone(),
            &help,
            &tickets,
            &leads,
            start,
            end,
        );
        sim.run(&progress).await?;
        progress.finish_and_clear();
        let worked = started.elapsed();

        // The month is over: close it, as the provider's operator would.
        clock.set(end + Duration::minutes(5));
        let operator = ApiClient::new(&url, &keys.operator)?;
        let report = close_and_report(&operator, &cadmin, &dir, &month).await?;
        print_summary(&sim.tally, &report, worked);

        let logins = json!({
            "url": url, "customer": CUSTOMER, "period": month,
            "keys": {
                "admin": admin.key, "operator": keys.operator, "customer_admin": keys.customer_admin,
                "customer_viewer": keys.customer_viewer, "auditor": keys.auditor,
            },
            "restricted": {"group": STAFF, "article_title": RESTRICTED_TITLE, "query": RESTRICTED_QUERY, "member": "customer_admin"},
        });
        std::fs::write(dir.join("logins.json"), serde_json::to_string_pretty(&logins)?)?;
        println!("\nEvidence, keys and data: {}", dir.display());
        println!(
            "  payoff verify {} --evidence {} --key {}",
            report.statement_path.display(),
            report.bundle_path.display(),
            report.public_key
        );
        if demo.database_named {
            println!(
                "  payoff ledger verify --data-dir {} --database {}",
                dir.display(),
                demo.database
            );
        } else {
            println!("  payoff ledger verify --data-dir {}", dir.display());
        }

        if args.no_serve {
            let _ = stop.send(());
        } else {
            // From here on time runs again, from the end of the month.
            clock.run();
            println!("\nDashboard: {url}/  (Ctrl-C to stop)  log in with one of these keys:");
            for (role, key) in [
                ("provider admin", &admin.key),
                ("provider operator", &keys.operator),
                ("Acme admin (approver, staff)", &keys.customer_admin),
                ("Acme viewer", &keys.customer_viewer),
                ("Acme auditor", &keys.auditor),
            ] {
                println!("  {role:<30} {key}");
            }
            println!("  (also in {})", dir.join("logins.json").display());
            tokio::signal::ctrl_c().await?;
            let _ = stop.send(());
        }
        server.await??;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

struct Keys {
    operator: String,
    agent: String,
    customer_admin: String,
    customer_viewer: String,
    auditor: String,
}

async fn key(provider: &ApiClient, body: Value) -> anyhow::Result<String> {
    Ok(ok(provider.post_json("/v1/keys", &body).await?)?["key"]
        .as_str()
        .context("key in reply")?
        .to_owned())
}

/// The customer, a key per role, the contract.
async fn setup(provider: &ApiClient, url: &str, month: &str) -> anyhow::Result<Keys> {
    ok(provider
        .post_json(
            "/v1/customers",
            &json!({"id": CUSTOMER, "name": "Acme Outdoor Co."}),
        )
        .await?)?;
    let keys = Keys {
        operator: key(provider, json!({"role": "operator"})).await?,
        agent: key(provider, json!({"role": "agent", "customer": CUSTOMER})).await?,
        customer_admin: key(
            provider,
            json!({"role": "customer_admin", "customer": CUSTOMER, "groups": [STAFF]}),
        )
        .await?,
        customer_viewer: key(
            provider,
            json!({"role": "customer_viewer", "customer": CUSTOMER}),
        )
        .await?,
        auditor: key(provider, json!({"role": "auditor", "customer": CUSTOMER})).await?,
    };
    let operator = ApiClient::new(url, &keys.operator)?;
    ok(operator
        .send(
            reqwest::Method::POST,
            &format!("/v1/customers/{CUSTOMER}/contracts"),
            "application/toml",
            contract(month).into_bytes(),
        )
        .await?)?;
    Ok(keys)
}

async fn upload_help_centre(cadmin: &ApiClient, help: &business::HelpCentre) -> anyhow::Result<()> {
    let docs: Vec<Value> = help
        .article
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "title": a.title, "body": a.body, "groups": a.groups,
                "url": format!("https://help.acme-outdoor.test/articles/{}", a.id),
            })
        })
        .collect();
    ok(cadmin
        .post_json("/v1/knowledge/documents", &Value::Array(docs))
        .await?)?;
    Ok(())
}

/// What the close established.
struct Report {
    statement: Value,
    statement_path: PathBuf,
    bundle_path: PathBuf,
    public_key: String,
    verified_events: u64,
    economics: Value,
    roi: Value,
    disputed: Option<String>,
}

/// Closes the month, writes the statement and its evidence, verifies them
/// offline, reads economics and ROI, sets next month's budgets, and leaves
/// one dispute open for the dashboard.
async fn close_and_report(
    operator: &ApiClient,
    cadmin: &ApiClient,
    dir: &Path,
    month: &str,
) -> anyhow::Result<Report> {
    let statement = ok(operator
        .send(
            reqwest::Method::POST,
            &format!("/v1/customers/{CUSTOMER}/periods/{month}/close"),
            "application/json",
            Vec::new(),
        )
        .await?)?;
    let id = statement["id"].as_str().context("statement id")?.to_owned();
    let body = operator.get_text(&format!("/v1/statements/{id}")).await?;
    let bundle = operator
        .get_text(&format!("/v1/statements/{id}/evidence"))
        .await?;
    let statement_path = dir.join(format!("{id}.json"));
    let bundle_path = dir.join(format!("{id}.evidence.json"));
    std::fs::write(&statement_path, &body)?;
    std::fs::write(&bundle_path, &bundle)?;
    let keys = ok(operator.get_json("/.well-known/payoff/keys").await?)?;
    let public_key = keys["keys"][0]["public_key"]
        .as_str()
        .context("public key")?
        .to_owned();
    let verified = payoff_billing::verify(
        &serde_json::from_str(&body)?,
        &serde_json::from_str(&bundle)?,
        &payoff_billing::parse_public_key(&public_key).map_err(anyhow::Error::msg)?,
    )
    .map_err(|e| anyhow::anyhow!("the demo statement does not verify: {e}"))?;
    let economics = ok(operator
        .get_json(&format!(
            "/v1/customers/{CUSTOMER}/economics?period={month}"
        ))
        .await?)?;
    let roi = ok(cadmin
        .get_json(&format!("/v1/customers/{CUSTOMER}/roi?period={month}"))
        .await?)?;
    ok(operator
        .send(
            reqwest::Method::PUT,
            &format!("/v1/customers/{CUSTOMER}/budgets"),
            "application/json",
            serde_json::to_vec(&json!({
                "customer": {"limit": "900.00", "warn_at": "700.00"},
                "agents": {"support": {"limit": "400.00", "warn_at": "300.00"}},
            }))?,
        )
        .await?)?;
    let billed = ok(cadmin
        .get_json(&format!(
            "/v1/customers/{CUSTOMER}/outcomes?state=billed&name=deal_won&limit=1"
        ))
        .await?)?;
    let disputed = match billed["outcomes"][0]["id"].as_str() {
        Some(outcome) => {
            ok(cadmin
                .post_json(
                    &format!("/v1/outcomes/{outcome}/disputes"),
                    &json!({"reason": "We closed this deal ourselves at the trade fair; the lead came from our booth."}),
                )
                .await?)?;
            Some(outcome.to_owned())
        }
        None => None,
    };
    Ok(Report {
        statement,
        statement_path,
        bundle_path,
        public_key,
        verified_events: verified.events,
        economics,
        roi,
        disputed,
    })
}

fn ok(reply: Result<Value, crate::client::Problem>) -> anyhow::Result<Value> {
    reply.map_err(|p| anyhow::anyhow!("the demo server refused a request: {p}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// A decimal string with at most two decimals, for reading.
fn short(v: &Value) -> String {
    match text(v).parse::<f64>() {
        Ok(x) => format!("{x:.2}"),
        Err(_) => text(v).to_owned(),
    }
}

fn percent(v: &Value) -> String {
    match text(v).parse::<f64>() {
        Ok(x) => format!("{:.1} %", x * 100.0),
        Err(_) => text(v).to_owned(),
    }
}

fn print_summary(tally: &simulation::Tally, report: &Report, worked: std::time::Duration) {
    let n = |k: &str| tally.agent.get(k).copied().unwrap_or(0);
    let a = |k: &str| tally.approvals.get(k).copied().unwrap_or(0);
    println!(
        "\nThe support agent worked the month in {:.0} s:",
        worked.as_secs_f64()
    );
    println!(
        "  {} replied alone, {} queued for approval, {} handed to people, {} left to people (the holdout)",
        n("replied"),
        n("awaiting_approval"),
        n("escalated"),
        n("left_to_humans")
    );
    println!(
        "  approvals: {} sent as drafted, {} edited then sent, {} rejected; {} still waiting",
        a("approved"),
        a("edited"),
        a("rejected"),
        n("awaiting_approval").saturating_sub(a("approved") + a("edited") + a("rejected"))
    );
    let mut handed: Vec<(&String, &u64)> = tally.handed_over.iter().collect();
    handed.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!(
        "  handed to people most often: {}",
        handed
            .iter()
            .take(4)
            .map(|(k, v)| format!("{k} ({v})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  tickets resolved by the AI {}, by people {}; {} reopened; {} replies cited the wrong article",
        tally.resolved_by_ai, tally.resolved_by_people, tally.reopened, tally.answered_wrongly
    );
    let arm = |m: &std::collections::BTreeMap<&str, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    println!(
        "  leads: {} to the AI ({} qualified), {} to people ({} qualified); {} deals won",
        arm(&tally.leads, "ai"),
        arm(&tally.qualified, "ai"),
        arm(&tally.leads, "control"),
        arm(&tally.qualified, "control"),
        tally.won
    );

    let s = &report.statement;
    println!(
        "\nStatement {} ({}), contract v{}, signed; {} events behind it",
        text(&s["id"]),
        text(&s["currency"]),
        s["contract"]["version"],
        report.verified_events
    );
    for line in s["lines"].as_array().into_iter().flatten() {
        // A holdout line's figures follow on their own lines.
        let description = text(&line["description"]);
        let description = match line["attribution"].is_object() {
            true => description
                .split(" (")
                .next()
                .unwrap_or_default()
                .to_owned(),
            false => description.to_owned(),
        };
        println!(
            "  {:<18} {:<64} {:>11}",
            text(&line["kind"]),
            description.chars().take(64).collect::<String>(),
            text(&line["amount"])
        );
        let f = &line["attribution"];
        if f.is_object() {
            let valued = text(&f["method"]).contains("mean value");
            let billed = match (text(&f["status"]), valued) {
                ("billed", false) => format!(
                    "billed at the {}: {} incremental outcomes",
                    text(&f["bill"]).replace('_', " "),
                    text(&f["billed_quantity"])
                ),
                ("billed", true) => format!(
                    "billed at the {}: {} {} of incremental value",
                    text(&f["bill"]).replace('_', " "),
                    short(&f["billed_quantity"]),
                    text(&s["currency"])
                ),
                (status, _) => format!("{status}: nothing billed"),
            };
            println!(
                "  {:<18} AI arm {} subjects at {}, holdout {} at {}; lift {} [{}, {}] at {} confidence",
                "",
                f["ai"]["subjects"],
                short(&f["ai"]["per_subject"]),
                f["control"]["subjects"],
                short(&f["control"]["per_subject"]),
                short(&f["estimate"]),
                short(&f["low"]),
                short(&f["high"]),
                percent(&f["confidence"]),
            );
            println!("  {:<18} ({}); {billed}", "", text(&f["method"]));
        }
    }
    println!(
        "  {:>95}",
        format!("total {} {}", text(&s["total"]), text(&s["currency"]))
    );
    if let Some(o) = &report.disputed {
        println!("  Acme's admin has disputed {o}; the operator answers it in the dashboard");
    }

    let e = &report.economics;
    let c = &e["cost"];
    println!(
        "\nCost of service {} USD ({} model calls): {}",
        c["total"].as_str().unwrap_or("0"),
        c["calls"],
        c["by_category"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k} {}", text(v)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (kind, oc) in c["by_outcome"].as_object().into_iter().flatten() {
        println!(
            "  per {kind}: {} USD over {} outcomes",
            text(&oc["per_outcome"]),
            oc["outcomes"]
        );
    }
    println!(
        "  revenue {} USD, gross margin {} USD ({} %)",
        text(&e["revenue_total"]),
        text(&e["gross_margin"]),
        text(&e["gross_margin_percent"])
    );
    let r = &report.roi;
    println!(
        "\nFor Acme: {} units of work for {} USD ({} USD each); at {} USD per ticket handled by staff that saves {} USD;",
        r["outcomes_delivered"],
        text(&r["amount_billed"]),
        text(&r["effective_price_per_outcome"]),
        text(&r["baseline_unit_cost"]),
        text(&r["implied_saving"])
    );
    let versus = text(&r["paid_versus_licence"]);
    let versus = match versus.strip_prefix('-') {
        Some(less) => format!("{less} USD less than that"),
        None => format!("{versus} USD more than that"),
    };
    println!(
        "  the licence it replaces costs {} USD a month; Acme paid {versus}",
        text(&r["licence_for_period"]),
    );
}
