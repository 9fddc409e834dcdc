//! Customers, roles and API keys.
//!
//! A key is shown once as `pyk_<key id>_<secret>`; only the SHA-256 of the
//! secret is stored, and it is compared in constant time. The key id is not
//! secret: it names the key in listings and revocations.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a key may do. Provider roles act across customers; the others are
/// bound to exactly one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
    CustomerAdmin,
    CustomerViewer,
    Agent,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Operator,
        Role::CustomerAdmin,
        Role::CustomerViewer,
        Role::Agent,
        Role::Auditor,
    ];

    /// Provider roles belong to the vendor running Payoff, not to a customer.
    pub fn is_provider(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::CustomerAdmin => "customer_admin",
            Role::CustomerViewer => "customer_viewer",
            Role::Agent => "agent",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role \"{s}\"; expected one of admin, operator, customer_admin, customer_viewer, agent, auditor"))
    }
}

/// The identity behind an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub role: Role,
    /// `None` exactly for provider roles.
    pub customer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    pub key_id: String,
    pub role: Role,
    pub customer: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A freshly generated key: the full key to show once, and what to store.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: String,
    pub key_id: String,
    pub secret_hash: [u8; 32],
}

const KEY_PREFIX: &str = "pyk_";

/// Generates a random key (64 bits of id, 256 bits of secret).
pub fn generate_key() -> NewKey {
    let mut rng = rand::thread_rng();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret = hex::encode(secret);
    NewKey {
        key: format!("{KEY_PREFIX}{key_id}_{secret}"),
        secret_hash: hash_secret(&secret),
        key_id,
    }
}

/// Splits a presented key into its id and secret, if it has the key shape.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (is_hex(id, 16) && is_hex(secret, 64)).then_some((id, secret))
}

/// The stored form of a secret. Secrets are 256 random bits, so a plain
/// SHA-256 cannot be brute-forced and costs nothing per request.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_and_differ() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.key, b.key);
        let (id, secret) = parse_key(&a.key).unwrap();
        assert_eq!(id, a.key_id);
        assert_eq!(hash_secret(secret), a.secret_hash);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for bad in [
            "",
            "pyk_",
            "pyk_abc_def",
            "xyz_0123456789abcdef_00",
            &format!("pyk_0123456789abcdef_{}", "g".repeat(64)),
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().unwrap_err().contains("unknown role"));
    }
}
