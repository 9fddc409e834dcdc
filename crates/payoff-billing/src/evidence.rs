//! Signatures and evidence bundles: what lets a customer check a
//! statement with no server and no database.
//!
//! A bundle holds the contract versions, every event of the customer up to
//! the statement's ledger head with its chain hash, and the earlier
//! statements. [`verify`] checks the signatures, recomputes the chain to
//! the head the statement cites, recomputes the statement and compares it
//! byte for byte, naming the first difference.

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use payoff_ledger::{canonical_json, canonical_json_of, canonical_json_omitting, Head};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use crate::contract::Contract;
use crate::period::Period;
use crate::projection::BillingEvent;
use crate::statement::{
    compute, CloseInput, ContractVersion, Earlier, HeadRef, Signature, Statement,
};

pub const BUNDLE_FORMAT: &str = "payoff-evidence/1";

/// The bytes a statement's signature covers: its canonical JSON without
/// the signature. The signature is taken off the JSON tree rather than a
/// copy of the statement: a statement of a million outcomes is some 70 MB.
pub fn canonical_bytes(statement: &Statement) -> Vec<u8> {
    // Written straight from the statement (no JSON tree of its million
    // outcome ids), the same bytes as the tree's (payoff-ledger tests it).
    canonical_json_omitting(statement, Some("signature"), length_hint(statement))
        .expect("statements serialise")
}

/// The canonical JSON of a statement as stored and served, signature and
/// all: what a close answers, byte for byte.
pub fn stored_bytes(statement: &Statement) -> Vec<u8> {
    canonical_json_omitting(statement, None, length_hint(statement)).expect("statements serialise")
}

/// About how long a statement's canonical JSON is: its outcome ids (all
/// but a few hundred bytes of a large one) and room for the rest.
fn length_hint(statement: &Statement) -> usize {
    let ids: usize = statement
        .lines
        .iter()
        .flat_map(|l| &l.outcomes)
        .map(|id| id.len() + 3)
        .sum();
    ids + 1024 * (statement.lines.len() + 4)
}

/// A statement handed to [`sign`] that already carries a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("statement {0} is already signed: a statement is signed once")]
pub struct AlreadySigned(pub String);

/// Signs a statement with the provider's key and returns its
/// [`stored_bytes`]. Production assertion: a statement is signed once;
/// signing a signed one (a second key, a re-close reusing a value) is
/// refused, not silently replaced.
///
/// The statement is written once: the signed bytes become the stored ones
/// by putting the signature member in its place, not by writing a
/// statement of a million outcome ids a second time. In canonical order
/// `signature` comes right before `subtotal`, which with `total` after it
/// ends every statement; the corpus test checks the result against the
/// statement's JSON tree.
pub fn sign(statement: &mut Statement, key: &SigningKey) -> Result<Vec<u8>, AlreadySigned> {
    if statement.signature.is_some() {
        return Err(AlreadySigned(statement.id.clone()));
    }
    let signed = canonical_bytes(statement);
    let value = key.sign(&signed);
    let signature = Signature {
        algorithm: "ed25519".into(),
        key_id: Some(key_id(&key.verifying_key())),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        value: base64::engine::general_purpose::STANDARD.encode(value.to_bytes()),
    };
    let member = canonical_json_of(&signature).expect("a signature serialises");
    // A quote inside a string is escaped, so this text is a member's start;
    // no line has a `subtotal`, so the last one is the statement's own.
    const NEXT: &[u8] = b",\"subtotal\":";
    let at = signed
        .windows(NEXT.len())
        .rposition(|w| w == NEXT)
        .expect("a statement has a subtotal");
    let mut stored = Vec::with_capacity(signed.len() + member.len() + 16);
    stored.extend_from_slice(&signed[..at]);
    stored.extend_from_slice(b",\"signature\":");
    stored.extend_from_slice(&member);
    stored.extend_from_slice(&signed[at..]);
    drop(signed);
    statement.signature = Some(signature);
    Ok(stored)
}

/// A signing key's id: `ed25519:` and the first 16 hex digits of the
/// SHA-256 of its public key. Derived, so a keys document cannot pair an
/// id with another key unnoticed ([`key_id_matches`]).
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = sha2::Sha256::digest(key.as_bytes());
    format!("ed25519:{}", &hex::encode(digest)[..16])
}

/// Whether `id` is the id of the public key written as `public_key_hex`.
pub fn key_id_matches(id: &str, public_key_hex: &str) -> bool {
    parse_public_key(public_key_hex).is_ok_and(|k| key_id(&k) == id)
}

/// Reads a public key written as 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(text.trim()).map_err(|_| "the key is not hex".to_string())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an Ed25519 public key has 32 bytes (64 hex digits)".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// One contract version as the bundle carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundleContract {
    pub version: u32,
    /// First period it governs.
    pub effective: String,
    pub sha256: String,
    pub toml: String,
}

/// One event with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BundleEvent {
    pub sequence: u64,
    /// The exact canonical JSON the chain hashed.
    pub event: String,
    /// Hex chain hash after this event.
    pub hash: String,
}

/// What `verify` needs to recompute a statement with no server: the
/// contract versions, the events and their chain hashes, the statements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bundle {
    /// `payoff-evidence/1`.
    pub format: String,
    /// The id of the statement the bundle is evidence for.
    pub statement: String,
    pub customer: String,
    /// Every contract version up to the statement's.
    pub contracts: Vec<BundleContract>,
    /// The customer's events up to the statement's ledger head, in order.
    pub events: Vec<BundleEvent>,
    /// The statement and the earlier ones it builds on, signed.
    pub statements: Vec<Statement>,
}

/// Why a statement does not verify; each names where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the bundle is not a {BUNDLE_FORMAT} bundle for statement {0}")]
    WrongBundle(String),
    #[error("statement {0} is not signed")]
    Unsigned(String),
    #[error("statement {id}: the signature does not match its content or the key ({reason})")]
    Signature { id: String, reason: String },
    #[error("event at sequence {sequence}: {reason}")]
    Event { sequence: u64, reason: String },
    #[error("the chain ends at sequence {found_sequence} with hash {found_hash}, the statement cites sequence {sequence} hash {hash}")]
    Head {
        sequence: u64,
        hash: String,
        found_sequence: u64,
        found_hash: String,
    },
    #[error("contract version {version}: {reason}")]
    Contract { version: u32, reason: String },
    #[error("earlier statement {0} is missing from the bundle")]
    MissingPrior(String),
    #[error("recomputing the statement failed: {0}")]
    Recompute(String),
    #[error("the statement differs from its recomputation at {path}: the statement says {stated}, recomputed {recomputed}")]
    Differs {
        path: String,
        stated: String,
        recomputed: String,
    },
}

/// Checks a statement's signature against `key`.
pub fn check_signature(statement: &Statement, key: &VerifyingKey) -> Result<(), VerifyError> {
    let sig = statement
        .signature
        .as_ref()
        .ok_or_else(|| VerifyError::Unsigned(statement.id.clone()))?;
    let bad = |reason: &str| VerifyError::Signature {
        id: statement.id.clone(),
        reason: reason.into(),
    };
    if sig.public_key != hex::encode(key.as_bytes())
        || sig.key_id.as_ref().is_some_and(|id| *id != key_id(key))
    {
        return Err(bad("signed by another key"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&sig.value)
        .map_err(|_| bad("the signature is not base64"))?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| bad("the signature is not 64 bytes"))?;
    key.verify(
        &canonical_bytes(statement),
        &ed25519_dalek::Signature::from_bytes(&bytes),
    )
    .map_err(|_| bad("verification failed"))
}

/// Recomputes the chain of the bundle's events and reads them for billing.
pub fn bundle_events(bundle: &Bundle) -> Result<(Vec<BillingEvent>, Head), VerifyError> {
    let mut head = Head::EMPTY;
    let mut events = Vec::with_capacity(bundle.events.len());
    for e in &bundle.events {
        let fail = |reason: String| VerifyError::Event {
            sequence: e.sequence,
            reason,
        };
        if e.sequence != head.sequence + 1 {
            return Err(fail(format!("expected sequence {}", head.sequence + 1)));
        }
        let value: Value =
            serde_json::from_str(&e.event).map_err(|err| fail(format!("not JSON: {err}")))?;
        if canonical_json(&value) != e.event.as_bytes() {
            return Err(fail("not in canonical form".into()));
        }
        head = head.append(e.event.as_bytes());
        if head.hash_hex() != e.hash {
            return Err(fail(format!(
                "its chain hash should be {}, the bundle says {}: the event or an earlier one was altered",
                head.hash_hex(),
                e.hash
            )));
        }
        if let Some(event) = BillingEvent::from_json(e.sequence, &value) {
            events.push(event);
        }
    }
    Ok((events, head))
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub statement: String,
    pub events: u64,
    pub total: rust_decimal::Decimal,
    pub currency: String,
}

/// Verifies `statement` against `bundle` and the provider's `key`.
pub fn verify(
    statement: &Statement,
    bundle: &Bundle,
    key: &VerifyingKey,
) -> Result<Verified, VerifyError> {
    if bundle.format != BUNDLE_FORMAT
        || bundle.statement != statement.id
        || bundle.customer != statement.customer
    {
        return Err(VerifyError::WrongBundle(statement.id.clone()));
    }
    // A bad signature is reported last, after looking for the place where
    // the statement and its recomputation differ: that names what changed.
    let signature = check_signature(statement, key);
    for id in &statement.depends_on {
        let prior = bundle
            .statements
            .iter()
            .find(|s| &s.id == id)
            .ok_or_else(|| VerifyError::MissingPrior(id.clone()))?;
        check_signature(prior, key)?;
    }
    let (events, head) = bundle_events(bundle)?;
    let cited = &statement.ledger_head;
    if head.sequence != cited.sequence || head.hash_hex() != cited.hash {
        return Err(VerifyError::Head {
            sequence: cited.sequence,
            hash: cited.hash.clone(),
            found_sequence: head.sequence,
            found_hash: head.hash_hex(),
        });
    }
    let mut contracts = Vec::new();
    for c in &bundle.contracts {
        let contract =
            Contract::parse(&format!("contract v{}", c.version), &c.toml).map_err(|e| {
                VerifyError::Contract {
                    version: c.version,
                    reason: e.to_string(),
                }
            })?;
        if contract.sha256 != c.sha256 {
            return Err(VerifyError::Contract {
                version: c.version,
                reason: format!(
                    "its text hashes to {}, the bundle says {}",
                    contract.sha256, c.sha256
                ),
            });
        }
        let effective = Period::parse(contract.cadence, &c.effective).map_err(|reason| {
            VerifyError::Contract {
                version: c.version,
                reason,
            }
        })?;
        contracts.push((c.version, effective, contract));
    }
    if let Some((_, _, c)) = contracts
        .iter()
        .find(|(v, _, _)| *v == statement.contract.version)
    {
        if c.sha256 != statement.contract.sha256 {
            return Err(VerifyError::Contract {
                version: statement.contract.version,
                reason: format!(
                    "the statement cites SHA-256 {}, the bundle's text hashes to {}",
                    statement.contract.sha256, c.sha256
                ),
            });
        }
    }
    let versions: Vec<ContractVersion> = contracts
        .iter()
        .map(|(version, effective, contract)| ContractVersion {
            version: *version,
            effective: *effective,
            contract,
        })
        .collect();
    let period = versions
        .first()
        .ok_or(VerifyError::Contract {
            version: statement.contract.version,
            reason: "the bundle holds no contract".into(),
        })
        .and_then(|v| {
            Period::parse(v.contract.cadence, &statement.period).map_err(VerifyError::Recompute)
        })?;
    let issued_at = statement.issued_at;
    let prior: Vec<Statement> = bundle
        .statements
        .iter()
        .filter(|s| statement.depends_on.contains(&s.id))
        .cloned()
        .collect();
    let prior = Earlier::all(&prior).map_err(|e| VerifyError::Recompute(e.to_string()))?;
    let recomputed = compute(&CloseInput {
        customer: &statement.customer,
        period,
        versions: &versions,
        events: &events,
        head: HeadRef {
            sequence: head.sequence,
            hash: head.hash_hex(),
        },
        prior: &prior,
        issued_at,
        kept: None,
    })
    .map_err(|e| VerifyError::Recompute(e.to_string()))?;
    let stated = canonical_bytes(statement);
    if canonical_bytes(&recomputed) != stated {
        let a = serde_json::to_value(statement).expect("serialises");
        let b = serde_json::to_value(&recomputed).expect("serialises");
        let (path, stated, recomputed) = first_difference("", &a, &b)
            .unwrap_or_else(|| ("(bytes)".into(), "?".into(), "?".into()));
        return Err(VerifyError::Differs {
            path,
            stated,
            recomputed,
        });
    }
    signature?;
    Ok(Verified {
        statement: statement.id.clone(),
        events: head.sequence,
        total: statement.total,
        currency: statement.currency.clone(),
    })
}

/// The first place two JSON values differ, ignoring the signature.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<(String, String, String)> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| k.as_str() != "signature" || !path.is_empty())
                .find_map(|k| {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    first_difference(
                        &p,
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    )
                })
        }
        (Value::Array(x), Value::Array(y)) => {
            let n = x.len().max(y.len());
            (0..n).find_map(|i| {
                first_difference(
                    &format!("{path}[{i}]"),
                    x.get(i).unwrap_or(&Value::Null),
                    y.get(i).unwrap_or(&Value::Null),
                )
            })
        }
        _ if a == b => None,
        _ => Some((path.to_string(), short(a), short(b))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}
