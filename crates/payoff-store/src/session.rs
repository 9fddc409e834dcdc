//! Dashboard sessions: an API key exchanged once for a random token that a
//! browser keeps in a cookie.
//!
//! Only the SHA-256 of the token is stored, so a copy of the database
//! opens no session. Each session carries its own CSRF token (the
//! synchronizer token of its forms) and an absolute expiry; a revoked key
//! ends its sessions at once.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A session as stored: never its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub token_hash: [u8; 32],
    pub key_id: String,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A freshly opened session: the token to hand to the browser once.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

const TOKEN_PREFIX: &str = "pys_";

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new random session token (256 bits) and CSRF token (256 bits).
pub(crate) fn generate() -> (String, String) {
    (format!("{TOKEN_PREFIX}{}", random_hex()), random_hex())
}

/// The stored form of a token, `None` when it does not have the token
/// shape (so garbage never reaches the database). Tokens are 256 random
/// bits: a plain SHA-256 cannot be brute-forced.
pub(crate) fn hash_token(token: &str) -> Option<[u8; 32]> {
    let secret = token.strip_prefix(TOKEN_PREFIX)?;
    (secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Sha256::digest(token.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_hash_and_malformed_ones_do_not() {
        let (a, csrf) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert_eq!(csrf.len(), 64);
        assert!(hash_token(&a).is_some());
        assert_ne!(hash_token(&a), hash_token(&b));
        for bad in ["", "pys_", "pys_zz", &format!("pyk_{}", "0".repeat(64))] {
            assert!(hash_token(bad).is_none(), "{bad}");
        }
    }
}
