//! `payoff contract …`, `payoff statement …` and `payoff verify`.
//!
//! `contract check`, `contract simulate` and `verify` are pure: no server,
//! no database. The others work on the configured database, like
//! `customers` and `keys`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use payoff_accounting::billing::{self as shell, UploadError};
use payoff_billing::{
    compute, key_id_matches, parse_public_key, verify, BillingEvent, Bundle, CloseInput, Contract,
    ContractVersion, Earlier, EventSource, HeadRef, Period, Statement,
};
use payoff_ledger::{validate_event, EventLimits, Head};
use serde::Serialize;
use serde_json::Value;

use crate::commands::init::ensure_signing_key;
use crate::commands::read_text;
use crate::commands::{audit_local, open_store};
use crate::settings::Settings;
use crate::{bad_input, BadInput};

#[derive(Subcommand)]
pub enum ContractCommand {
    /// Validate a contract file: exit 0, or 2 with every error, one per line.
    Check {
        /// The contract (TOML).
        file: PathBuf,
        /// Print what the contract holds as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store a new version of a customer's contract.
    Push {
        /// The contract (TOML).
        file: PathBuf,
        /// Default: the customer named in the file.
        #[arg(long)]
        customer: Option<String>,
        /// First period it governs, e.g. 2026-12 [default: the first period not closed].
        #[arg(long)]
        effective: Option<String>,
        /// Print the stored version as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a customer's contract versions.
    List {
        /// The customer.
        #[arg(long)]
        customer: String,
        /// Print the versions (with their text) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print, offline, the statement a contract gives for some events.
    Simulate {
        /// The contract (TOML).
        file: PathBuf,
        /// JSON Lines or a JSON array of CloudEvents.
        #[arg(long)]
        events: PathBuf,
        /// The period to print, e.g. 2026-11 (earlier ones are closed first).
        #[arg(long)]
        period: String,
        /// Print the statement as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum StatementCommand {
    /// Close a period into a signed statement (again: the same statement).
    Close {
        /// The customer.
        #[arg(long)]
        customer: String,
        /// The period, e.g. 2026-10.
        #[arg(long)]
        period: String,
        /// Print the statement as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compute the statement a period would close into now.
    Preview {
        /// The customer.
        #[arg(long)]
        customer: String,
        /// The period, e.g. 2026-11.
        #[arg(long)]
        period: String,
        /// Print the statement as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a statement.
    Show {
        /// The statement's id, e.g. st.acme.2026-10.
        id: String,
        /// Print the statement as stored (signed JSON).
        #[arg(long)]
        json: bool,
    },
    /// List a customer's statements.
    List {
        /// The customer.
        #[arg(long)]
        customer: String,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a statement and its evidence bundle, for `payoff verify`.
    Evidence {
        /// The statement's id, e.g. st.acme.2026-10.
        id: String,
        /// Directory to write `<id>.json` and `<id>.evidence.json` into.
        #[arg(long, default_value = ".")]
        output: PathBuf,
        /// Print the files written and the provider's key as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `contract check` found in a valid contract.
#[derive(Serialize)]
struct Checked {
    file: String,
    customer: String,
    currency: String,
    cadence: String,
    outcome_kinds: usize,
    service_levels: usize,
    sha256: String,
}

/// A statement as `statement list` shows it.
#[derive(Serialize)]
struct Listed {
    id: String,
    period: String,
    total: String,
    currency: String,
    issued_at: String,
}

/// What `statement evidence` wrote, and how to verify it.
#[derive(Serialize)]
struct Written {
    statement: String,
    evidence: String,
    public_key: String,
}

/// The verdict of `payoff verify`.
#[derive(Serialize)]
struct Verdict {
    verified: bool,
    statement: String,
    /// The figures recomputed, when verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<u64>,
    /// The first difference found, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

fn load_contract(path: &Path) -> anyhow::Result<Contract> {
    let text = read_text(path)?;
    Contract::parse(&path.display().to_string(), &text).map_err(|e| BadInput(e.to_string()).into())
}

pub fn contract(settings: &Settings, command: ContractCommand) -> anyhow::Result<ExitCode> {
    match command {
        ContractCommand::Check { file, json } => {
            let c = load_contract(&file)?;
            let checked = Checked {
                file: file.display().to_string(),
                customer: c.customer,
                currency: c.currency.code.to_string(),
                cadence: c.cadence.name().to_string(),
                outcome_kinds: c.outcomes.len(),
                service_levels: c.service_levels.len(),
                sha256: c.sha256,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&checked)?);
            } else {
                println!(
                    "{}: ok: customer {}, {} {}, {} outcome kinds, {} service levels, sha256 {}",
                    checked.file,
                    checked.customer,
                    checked.currency,
                    checked.cadence,
                    checked.outcome_kinds,
                    checked.service_levels,
                    checked.sha256
                );
            }
        }
        ContractCommand::Push {
            file,
            customer,
            effective,
            json,
        } => {
            let text = read_text(&file)?;
            let customer = match customer {
                Some(c) => c,
                None => load_contract(&file)?.customer,
            };
            let store = open_store(settings)?;
            let stored = shell::upload_contract(
                &store,
                &customer,
                &text,
                effective.as_deref(),
                settings.clock.now(),
            )
            .map_err(|e| -> anyhow::Error {
                match e {
                    UploadError::Billing(b) => b.into(),
                    other => BadInput(other.to_string()).into(),
                }
            })?;
            audit_local(
                &store,
                settings.clock.now(),
                Some(&stored.customer),
                "contract push",
                &format!("/v1/customers/{}/contracts", stored.customer),
                &format!(
                    "version {} effective {}, sha256 {}",
                    stored.version, stored.effective, stored.sha256
                ),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stored)?);
            } else {
                println!(
                    "stored contract version {} for {}, effective {}, sha256 {}",
                    stored.version, stored.customer, stored.effective, stored.sha256
                );
            }
        }
        ContractCommand::List { customer, json } => {
            let store = open_store(settings)?;
            let versions = store.contracts(&customer)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
                return Ok(ExitCode::SUCCESS);
            }
            for v in versions {
                println!(
                    "v{}  effective {}  sha256 {}  uploaded {}",
                    v.version,
                    v.effective,
                    v.sha256,
                    v.uploaded_at.to_rfc3339()
                );
            }
        }
        ContractCommand::Simulate {
            file,
            events,
            period,
            json,
        } => {
            let contract = load_contract(&file)?;
            let (events, head) = read_events(&events)?;
            let statement = simulate(&contract, &events, head, &period)?;
            print_statement(&statement, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads JSON Lines or a JSON array of CloudEvents, validated as the API
/// would, duplicates (same source and id) dropped as the ledger would.
fn read_events(path: &Path) -> anyhow::Result<(Vec<BillingEvent>, Head)> {
    let text = read_text(path)?;
    let values: Vec<(usize, Value)> = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<Value>>(&text)
            .map_err(|e| BadInput(format!("{}: {e}", path.display())))?
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map(|v| (i + 1, v))
                    .map_err(|e| BadInput(format!("{}:{}: {e}", path.display(), i + 1)))
            })
            .collect::<Result<_, _>>()?
    };
    let limits = EventLimits::default();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut head = Head::EMPTY;
    for (line, value) in values {
        let event = validate_event(value, &limits).map_err(|e| {
            BadInput(format!(
                "{}:{line}: {}: {}",
                path.display(),
                e[0].field,
                e[0].reason
            ))
        })?;
        if !seen.insert((event.source.clone(), event.id.clone())) {
            continue;
        }
        head = head.append(&event.canonical);
        let value: Value = serde_json::from_slice(&event.canonical)?;
        if let Some(e) = BillingEvent::from_json(head.sequence, &value) {
            out.push(e);
        }
    }
    Ok((out, head))
}

/// Closes every period from the contract's start to `period` over the
/// events, as a provider would month after month, and returns the last.
fn simulate(
    contract: &Contract,
    events: &dyn EventSource,
    head: Head,
    period: &str,
) -> anyhow::Result<Statement> {
    let target =
        Period::parse(contract.cadence, period).map_err(|e| BadInput(format!("--period: {e}")))?;
    if target.start < contract.starts.start {
        return bad_input(format!(
            "--period: {target} is before the contract starts ({})",
            contract.starts
        ));
    }
    let versions = [ContractVersion {
        version: 1,
        effective: contract.starts,
        contract,
    }];
    let mut prior: Vec<Statement> = Vec::new();
    let mut p = contract.starts;
    loop {
        let earlier = Earlier::all(&prior)?;
        let statement = compute(&CloseInput {
            customer: &contract.customer,
            period: p,
            versions: &versions,
            events,
            head: HeadRef {
                sequence: head.sequence,
                hash: head.hash_hex(),
            },
            prior: &earlier,
            issued_at: p.end,
            kept: None,
        })?;
        if p == target {
            return Ok(statement);
        }
        drop(earlier);
        prior.push(statement);
        p = p.next();
    }
}

fn print_statement(s: &Statement, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    println!(
        "statement {}  customer {}  period {} ({} to {})",
        s.id, s.customer, s.period, s.period_start, s.period_end
    );
    println!(
        "contract v{} sha256 {}  ledger head {} {}",
        s.contract.version, s.contract.sha256, s.ledger_head.sequence, s.ledger_head.hash
    );
    println!(
        "{:<16} {:<44} {:>10} {:>12} {:>14}",
        "kind", "description", "quantity", "unit price", "amount"
    );
    for l in &s.lines {
        let kind = serde_json::to_value(l.kind)?;
        println!(
            "{:<16} {:<44} {:>10} {:>12} {:>14}",
            kind.as_str().unwrap_or(""),
            truncate(&l.description, 44),
            l.quantity.to_string(),
            l.unit_price.map(|p| p.to_string()).unwrap_or_default(),
            l.amount.to_string()
        );
    }
    println!("{:>100}", format!("subtotal {} {}", s.subtotal, s.currency));
    println!("{:>100}", format!("total {} {}", s.total, s.currency));
    if let Some(sig) = &s.signature {
        println!("signed ed25519 by {}", sig.public_key);
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn billing_error(e: shell::BillingError) -> anyhow::Error {
    match e {
        shell::BillingError::Store(s) => crate::commands::user_error(s),
        shell::BillingError::Corrupt(_) => e.into(),
        other => BadInput(other.to_string()).into(),
    }
}

pub fn statement(settings: &Settings, command: StatementCommand) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    match command {
        StatementCommand::Close {
            customer,
            period,
            json,
        } => {
            let key = ensure_signing_key(&settings.signing_key_path())?;
            let closed = shell::close(&store, &key, &customer, &period, settings.clock.now())
                .map_err(billing_error)?;
            if closed.created {
                audit_local(
                    &store,
                    settings.clock.now(),
                    Some(&customer),
                    "statement close",
                    &format!("/v1/statements/{}", closed.stored.summary.id),
                    &format!(
                        "total {} {}",
                        closed.stored.summary.total, closed.stored.summary.currency
                    ),
                )?;
            }
            let s = closed.statement().map_err(billing_error)?;
            if !json {
                println!(
                    "{}",
                    if closed.created {
                        "closed"
                    } else {
                        "already closed; the stored statement:"
                    }
                );
            }
            print_statement(&s, json)?;
        }
        StatementCommand::Preview {
            customer,
            period,
            json,
        } => {
            let preview = shell::preview(
                &store,
                &customer,
                &period,
                settings.clock.now(),
                shell::Listing::Unlisted,
            )
            .map_err(billing_error)?;
            if !preview.assumed.is_empty() {
                eprintln!(
                    "note: {} not closed yet; this preview assumes they close as previewed",
                    preview.assumed.join(", ")
                );
            }
            print_statement(&preview.statement, json)?;
        }
        StatementCommand::Show { id, json } => {
            let stored = store
                .statement(&id)?
                .ok_or_else(|| BadInput(format!("no statement \"{id}\"")))?;
            if json {
                println!("{}", stored.body);
            } else {
                print_statement(&serde_json::from_str(&stored.body)?, false)?;
            }
        }
        StatementCommand::List { customer, json } => {
            let listed: Vec<Listed> = shell::summaries(&store, &customer)
                .map_err(billing_error)?
                .into_iter()
                .map(|s| Listed {
                    issued_at: shell::rfc3339(s.issued_at),
                    id: s.id,
                    period: s.period,
                    total: s.total,
                    currency: s.currency,
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
                return Ok(ExitCode::SUCCESS);
            }
            for s in listed {
                println!(
                    "{}  {}  total {} {}  issued {}",
                    s.id, s.period, s.total, s.currency, s.issued_at
                );
            }
        }
        StatementCommand::Evidence { id, output, json } => {
            let stored = store
                .statement(&id)?
                .ok_or_else(|| BadInput(format!("no statement \"{id}\"")))?;
            let statement: Statement = serde_json::from_str(&stored.body)?;
            let bundle = shell::evidence(&store, &statement).map_err(billing_error)?;
            std::fs::create_dir_all(&output)?;
            let s_path = output.join(format!("{id}.json"));
            let b_path = output.join(format!("{id}.evidence.json"));
            std::fs::write(&s_path, &stored.body)?;
            std::fs::write(&b_path, serde_json::to_vec(&bundle)?)?;
            let key = ensure_signing_key(&settings.signing_key_path())?;
            let written = Written {
                statement: s_path.display().to_string(),
                evidence: b_path.display().to_string(),
                public_key: hex::encode(key.verifying_key().as_bytes()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&written)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("wrote {} and {}", written.statement, written.evidence);
            println!(
                "verify with: payoff verify {} --evidence {} --key {}",
                written.statement, written.evidence, written.public_key
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `payoff verify`: needs no server and no database.
pub fn verify_statement(
    statement: &Path,
    evidence: &Path,
    key: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let s: Statement = serde_json::from_str(&read_text(statement)?)
        .map_err(|e| BadInput(format!("{}: not a statement: {e}", statement.display())))?;
    let key_text = if key.starts_with("http://") || key.starts_with("https://") {
        fetch_keys_document(key)?
    } else if Path::new(key).is_file() {
        read_text(Path::new(key))?
    } else {
        key.to_string()
    };
    let key = provider_key(&key_text, s.signature.as_ref())
        .map_err(|e| BadInput(format!("--key: {e}")))?;
    let b: Bundle = serde_json::from_str(&read_text(evidence)?).map_err(|e| {
        BadInput(format!(
            "{}: not an evidence bundle: {e}",
            evidence.display()
        ))
    })?;
    let verdict = match verify(&s, &b, &key) {
        Ok(v) => Verdict {
            verified: true,
            statement: v.statement,
            total: Some(v.total.to_string()),
            currency: Some(v.currency),
            events: Some(v.events),
            problem: None,
        },
        Err(e) => Verdict {
            verified: false,
            statement: s.id.clone(),
            total: None,
            currency: None,
            events: None,
            problem: Some(e.to_string()),
        },
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else if verdict.verified {
        println!(
            "verified: statement {} total {} {}: signature valid, {} events chain to the cited head, recomputed byte for byte",
            verdict.statement,
            verdict.total.as_deref().unwrap_or_default(),
            verdict.currency.as_deref().unwrap_or_default(),
            verdict.events.unwrap_or_default()
        );
    } else {
        println!(
            "NOT VERIFIED: {}",
            verdict.problem.as_deref().unwrap_or_default()
        );
    }
    Ok(if verdict.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The provider's key from `--key`: 64 hex digits, or the keys document a
/// server publishes at `/.well-known/payoff/keys` (`{"keys": [{"algorithm":
/// "ed25519", "key_id": ID, "public_key": HEX}, …]}`), from which the key
/// the statement's signature names is taken: by its id, or by its public
/// key for a statement signed before ids were given. A document that does
/// not list it is refused (the statement was signed by a key this provider
/// does not publish), and so is an entry whose id is not its key's.
fn provider_key(
    text: &str,
    signature: Option<&payoff_billing::Signature>,
) -> Result<ed25519_dalek::VerifyingKey, String> {
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return parse_public_key(trimmed);
    }
    let doc: serde_json::Value =
        serde_json::from_str(trimmed).map_err(|e| format!("not a keys document: {e}"))?;
    let keys = doc["keys"]
        .as_array()
        .ok_or("a keys document has a \"keys\" array")?;
    let mut listed: Vec<(Option<&str>, &str)> = Vec::new();
    for k in keys.iter().filter(|k| k["algorithm"] == "ed25519") {
        let Some(public) = k["public_key"].as_str() else {
            continue;
        };
        let id = k["key_id"].as_str();
        if let Some(id) = id.filter(|id| !key_id_matches(id, public)) {
            return Err(format!(
                "the keys document gives {public} the id {id}, which is not that key's id"
            ));
        }
        listed.push((id, public));
    }
    let chosen = match signature {
        Some(sig) => {
            let by_id = sig
                .key_id
                .as_deref()
                .and_then(|id| listed.iter().find(|(k, _)| *k == Some(id)));
            let by_key = || {
                listed
                    .iter()
                    .find(|(_, k)| k.eq_ignore_ascii_case(&sig.public_key))
            };
            by_id.or_else(by_key).map(|(_, k)| *k).ok_or_else(|| {
                format!(
                    "the statement is signed by {}, which the keys document does not list ({} keys)",
                    sig.key_id.as_deref().unwrap_or(&sig.public_key),
                    listed.len()
                )
            })?
        }
        None => listed
            .first()
            .map(|(_, k)| *k)
            .ok_or("the keys document lists no ed25519 key")?,
    };
    parse_public_key(chosen)
}

/// The keys document at `url` (a provider's `/.well-known/payoff/keys`).
fn fetch_keys_document(url: &str) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let http = payoff_egress::upstream_client(&payoff_egress::Trust::process_default())
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let response = http
            .get(url)
            .send()
            .await
            .map_err(|e| BadInput(format!("--key: cannot fetch {url}: {e}")))?;
        if !response.status().is_success() {
            return Err(BadInput(format!("--key: {url} answered {}", response.status())).into());
        }
        let (body, beyond) = payoff_egress::read_capped(response, 1024 * 1024)
            .await
            .map_err(|e| BadInput(format!("--key: cannot read {url}: {e}")))?;
        if beyond {
            return Err(BadInput(format!("--key: {url} is larger than a keys document")).into());
        }
        String::from_utf8(body).map_err(|_| BadInput(format!("--key: {url} is not text")).into())
    })
}
