//! Dashboard sessions: an API key exchanged once for a random token that a
//! browser keeps in a cookie.
//!
//! Only the SHA-256 of the token is stored, so a copy of the database
//! opens no session. Each session carries its own CSRF token (the
//! synchronizer token of its forms) and an absolute expiry; a revoked key
//! ends its sessions at once.

use chrono::{DateTime, Duration, Utc};

use crate::sql::Sql;
use crate::StoreError;

/// A session not used for this long ends, whatever its expiry: a browser
/// left open on a shared machine does not stay logged in for half a day.
pub const IDLE: Duration = Duration::minutes(30);

/// How old the mark of a session's last use may get before a request
/// renews it: a busy session costs a write a minute, not one a request.
const TOUCH_AFTER: Duration = Duration::minutes(1);

/// Schema version 15: when each session was last used (0: not yet).
pub(crate) const SCHEMA_SEEN: &str =
    "ALTER TABLE dashboard_sessions ADD COLUMN seen_us BIGINT NOT NULL DEFAULT 0;";

/// The session stored under `token_hash` (one statement: every dashboard
/// request reads it).
pub(crate) fn get(
    tx: &mut dyn Sql,
    token_hash: &[u8; 32],
) -> Result<Option<SessionRow>, StoreError> {
    tx.row(
        "SELECT key_id, csrf_token, created_us, expires_us FROM dashboard_sessions WHERE token_hash = ?",
        &[token_hash.as_slice().into()],
        |r| {
            Ok(SessionRow {
                token_hash: *token_hash,
                key_id: r.text_req(0)?,
                csrf_token: r.text_req(1)?,
                created_at: crate::store::from_us(r.int_req(2)?),
                expires_at: crate::store::from_us(r.int_req(3)?),
            })
        },
    )
}

/// When the session was last used (its creation if never since).
pub(crate) fn last_used(
    tx: &mut dyn Sql,
    token_hash: &[u8; 32],
) -> Result<Option<i64>, StoreError> {
    tx.row(
        "SELECT seen_us, created_us FROM dashboard_sessions WHERE token_hash = ?",
        &[token_hash.as_slice().into()],
        |r| Ok(r.int_req(0)?.max(r.int_req(1)?)),
    )
}

/// Whether a session last used at `seen_us` is still alive at `now_us`,
/// and whether its mark should be renewed.
pub(crate) fn idle_state(seen_us: i64, now_us: i64) -> (bool, bool) {
    let idle = now_us - seen_us;
    let limit = IDLE.num_microseconds().expect("minutes fit");
    let touch = TOUCH_AFTER.num_microseconds().expect("minutes fit");
    (idle <= limit, idle > touch)
}

/// Marks the session used at `now_us`.
pub(crate) fn touch(
    tx: &mut dyn Sql,
    token_hash: &[u8; 32],
    now_us: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE dashboard_sessions SET seen_us = ? WHERE token_hash = ?",
        &[now_us.into(), token_hash.as_slice().into()],
    )?;
    Ok(())
}
/// Stores a new session and deletes those expired by `now`.
pub(crate) fn insert(
    tx: &mut dyn Sql,
    s: &SessionRow,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM dashboard_sessions WHERE expires_us <= ?",
        &[now.timestamp_micros().into()],
    )?;
    tx.execute(
        "INSERT INTO dashboard_sessions (token_hash, key_id, csrf_token, created_us, expires_us) VALUES (?, ?, ?, ?, ?)",
        &[
            s.token_hash.as_slice().into(),
            s.key_id.as_str().into(),
            s.csrf_token.as_str().into(),
            s.created_at.timestamp_micros().into(),
            s.expires_at.timestamp_micros().into(),
        ],
    )?;
    Ok(())
}

/// Ends a session; false when there was none.
pub(crate) fn delete(tx: &mut dyn Sql, token_hash: &[u8; 32]) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "DELETE FROM dashboard_sessions WHERE token_hash = ?",
        &[token_hash.as_slice().into()],
    )? > 0)
}

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
