//! Runs every case of `tests/cases/`: a contract, the events in ledger
//! order, the closes to make and the statements expected, worked out by
//! hand. Each statement is also signed, bundled and verified offline, and
//! recomputed twice to check that it is byte-identical.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use payoff_billing::{
    canonical_bytes, compute, sign, stored_bytes, verify, BillingEvent, Bundle, BundleContract,
    BundleEvent, CloseInput, Contract, ContractVersion, Earlier, HeadRef, Period, Statement,
    BUNDLE_FORMAT,
};
use payoff_ledger::{canonical_json, Head};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    contract: Vec<CaseContract>,
    close: Vec<CaseClose>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseContract {
    file: String,
    effective: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseClose {
    period: String,
    events: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    statement: Vec<ExpectedStatement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedStatement {
    period: String,
    subtotal: String,
    total: String,
    #[serde(default)]
    line: Vec<ExpectedLine>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ExpectedLine {
    kind: String,
    outcome: Option<String>,
    service_level: Option<String>,
    period: Option<String>,
    quantity: Option<String>,
    included: Option<String>,
    unit_price: Option<String>,
    amount: String,
}

pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/cases")
}

/// The events of a case, canonical, with their chain hashes.
pub struct Ledger {
    pub canonical: Vec<String>,
    pub hashes: Vec<String>,
    pub events: Vec<BillingEvent>,
}

pub fn read_ledger(path: &Path) -> Ledger {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut ledger = Ledger {
        canonical: vec![],
        hashes: vec![],
        events: vec![],
    };
    let mut head = Head::EMPTY;
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
        let canonical = String::from_utf8(canonical_json(&value)).unwrap();
        head = head.append(canonical.as_bytes());
        ledger.hashes.push(head.hash_hex());
        ledger.canonical.push(canonical);
        let seq = i as u64 + 1;
        ledger
            .events
            .push(BillingEvent::from_json(seq, &value).unwrap_or_else(|| {
                panic!("{}:{}: needs id, source, type, time", path.display(), i + 1)
            }));
    }
    ledger
}

fn head_of(ledger: &Ledger, n: usize) -> HeadRef {
    HeadRef {
        sequence: n as u64,
        hash: if n == 0 {
            hex::encode([0u8; 32])
        } else {
            ledger.hashes[n - 1].clone()
        },
    }
}

fn run_case(dir: &Path) -> Result<usize, String> {
    let read = |name: &str| fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    let case: CaseFile =
        toml::from_str(&read("case.toml")?).map_err(|e| format!("case.toml: {e}"))?;
    let expected: Expected =
        toml::from_str(&read("expected.toml")?).map_err(|e| format!("expected.toml: {e}"))?;
    let specs = if case.contract.is_empty() {
        vec![CaseContract {
            file: "contract.toml".into(),
            effective: String::new(),
        }]
    } else {
        case.contract
    };
    let mut loaded = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let text = read(&spec.file)?;
        let contract = Contract::parse(&spec.file, &text).map_err(|e| e.to_string())?;
        let effective = if spec.effective.is_empty() {
            contract.starts
        } else {
            Period::parse(contract.cadence, &spec.effective)?
        };
        loaded.push((i as u32 + 1, effective, contract, text));
    }
    let versions: Vec<ContractVersion> = loaded
        .iter()
        .map(|(v, e, c, _)| ContractVersion {
            version: *v,
            effective: *e,
            contract: c,
        })
        .collect();
    let cadence = loaded[0].2.cadence;
    let ledger = read_ledger(&dir.join("events.jsonl"));
    if expected.statement.len() != case.close.len() {
        return Err("expected.toml must hold one [[statement]] per [[close]]".into());
    }
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut prior: Vec<Statement> = Vec::new();
    let mut problems = Vec::new();
    for (close, want) in case.close.iter().zip(&expected.statement) {
        let period = Period::parse(cadence, &close.period)?;
        let n = close
            .events
            .unwrap_or(ledger.events.len())
            .min(ledger.events.len());
        let issued_at: DateTime<Utc> = period.end;
        let known = ledger.events[..n].to_vec();
        let earlier = Earlier::all(&prior).map_err(|e| e.to_string())?;
        let input = CloseInput {
            customer: "case",
            period,
            versions: &versions,
            events: &known,
            head: head_of(&ledger, n),
            prior: &earlier,
            issued_at,
            kept: None,
        };
        let got = compute(&input).map_err(|e| format!("close {}: {e}", close.period))?;
        let again = compute(&input).map_err(|e| e.to_string())?;
        if canonical_bytes(&got) != canonical_bytes(&again) {
            problems.push(format!("{}: two computations differ", close.period));
        }
        compare(&got, want, &mut problems);

        let mut signed = got.clone();
        let stored = sign(&mut signed, &key).map_err(|e| e.to_string())?;
        // The bytes written straight from the statement are those of its
        // JSON tree, with and without the signature; those signing gives
        // (the signature put into the signed bytes) are the same again.
        let tree = serde_json::to_value(&signed).map_err(|e| e.to_string())?;
        let mut unsigned = tree.clone();
        unsigned.as_object_mut().map(|o| o.remove("signature"));
        if stored_bytes(&signed) != canonical_json(&tree)
            || stored != canonical_json(&tree)
            || canonical_bytes(&signed) != canonical_json(&unsigned)
        {
            problems.push(format!(
                "{}: the statement's bytes differ from its tree's",
                close.period
            ));
        }
        if sign(&mut signed.clone(), &key).is_ok() {
            problems.push(format!(
                "{}: a signed statement was signed again",
                close.period
            ));
        }
        let bundle = Bundle {
            format: BUNDLE_FORMAT.into(),
            statement: signed.id.clone(),
            customer: "case".into(),
            contracts: loaded
                .iter()
                .map(|(v, e, c, text)| BundleContract {
                    version: *v,
                    effective: e.to_string(),
                    sha256: c.sha256.clone(),
                    toml: text.clone(),
                })
                .collect(),
            events: (0..n)
                .map(|i| BundleEvent {
                    sequence: i as u64 + 1,
                    event: ledger.canonical[i].clone(),
                    hash: ledger.hashes[i].clone(),
                })
                .collect(),
            statements: prior.clone(),
        };
        // `PAYOFF_FUZZ_SEEDS=fuzz/seeds/verify cargo test --test cases`
        // writes what the `verify` fuzz target starts from.
        if let Some(seeds) = std::env::var_os("PAYOFF_FUZZ_SEEDS") {
            let mut seed = serde_json::to_vec(&signed).map_err(|e| e.to_string())?;
            seed.push(0);
            seed.extend(serde_json::to_vec(&bundle).map_err(|e| e.to_string())?);
            let case_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("case");
            let name = format!("{case_name}-{}", close.period);
            std::fs::write(std::path::Path::new(&seeds).join(name), seed)
                .map_err(|e| e.to_string())?;
        }
        if let Err(e) = verify(&signed, &bundle, &key.verifying_key()) {
            problems.push(format!(
                "{}: offline verification failed: {e}",
                close.period
            ));
        }
        drop(input);
        drop(earlier);
        prior.push(signed);
    }
    if problems.is_empty() {
        Ok(case.close.len())
    } else {
        Err(problems.join("\n    "))
    }
}

fn same_number(a: &str, b: &str) -> bool {
    match (Decimal::from_str(a), Decimal::from_str(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn compare(got: &Statement, want: &ExpectedStatement, problems: &mut Vec<String>) {
    let p = &want.period;
    if got.period != *p {
        problems.push(format!("period: got {}, expected {p}", got.period));
    }
    // Amounts as printed: the text, minor digits included, is the contract.
    if got.subtotal.to_string() != want.subtotal {
        problems.push(format!(
            "{p}: subtotal: got {}, expected {}",
            got.subtotal, want.subtotal
        ));
    }
    if got.total.to_string() != want.total {
        problems.push(format!(
            "{p}: total: got {}, expected {}",
            got.total, want.total
        ));
    }
    let shown = |l: &payoff_billing::Line| {
        format!(
            "{} {} q={} inc={} price={} amount={}",
            serde_json::to_value(l.kind).unwrap().as_str().unwrap(),
            l.outcome
                .clone()
                .or(l.service_level.clone())
                .unwrap_or_default()
                + &l.period
                    .clone()
                    .map(|x| format!("@{x}"))
                    .unwrap_or_default(),
            l.quantity,
            l.included.map(|i| i.to_string()).unwrap_or_default(),
            l.unit_price.map(|p| p.to_string()).unwrap_or_default(),
            l.amount
        )
    };
    let all = || {
        got.lines
            .iter()
            .map(shown)
            .collect::<Vec<_>>()
            .join("\n      ")
    };
    if got.lines.len() != want.line.len() {
        problems.push(format!(
            "{p}: {} lines, expected {}; got:\n      {}",
            got.lines.len(),
            want.line.len(),
            all()
        ));
        return;
    }
    for (i, (g, w)) in got.lines.iter().zip(&want.line).enumerate() {
        let kind = serde_json::to_value(g.kind).unwrap();
        let mut bad = kind.as_str() != Some(w.kind.as_str()) || g.amount.to_string() != w.amount;
        bad |= w.outcome.is_some() && g.outcome != w.outcome;
        bad |= w.service_level.is_some() && g.service_level != w.service_level;
        bad |= w.period.is_some() && g.period != w.period;
        bad |= w
            .quantity
            .as_ref()
            .is_some_and(|q| !same_number(q, &g.quantity.to_string()));
        bad |= w
            .included
            .as_ref()
            .is_some_and(|q| !g.included.is_some_and(|gi| same_number(q, &gi.to_string())));
        bad |= w.unit_price.as_ref().is_some_and(|q| {
            !g.unit_price
                .is_some_and(|gp| same_number(q, &gp.to_string()))
        });
        if bad {
            problems.push(format!(
                "{p}: line {}: expected {:?}\n      got:\n      {}",
                i + 1,
                w,
                all()
            ));
        }
    }
}

#[test]
fn every_case_gives_its_expected_statements() {
    let mut dirs: Vec<PathBuf> = fs::read_dir(cases_dir())
        .expect("tests/cases exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.toml").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 30,
        "the corpus holds {} cases, at least 30 are expected",
        dirs.len()
    );
    let mut failures = Vec::new();
    let mut closes = 0;
    for dir in &dirs {
        match run_case(dir) {
            Ok(n) => closes += n,
            Err(e) => failures.push(format!(
                "  {}:\n    {e}",
                dir.file_name().unwrap().to_string_lossy()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
    assert!(closes >= dirs.len());
}
