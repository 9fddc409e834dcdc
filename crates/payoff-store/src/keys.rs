//! API keys as stored (their shape is [`crate::access`]'s) and the
//! knowledge groups a key reads as. Written once for both databases
//! (`crate::sql`); the lookup every request makes ([`secret`]) runs through
//! [`crate::Store::read_one`], where it costs no transaction.

use chrono::{DateTime, Utc};

use crate::access::KeyInfo;
use crate::sql::{Sql, SqlRow};
use crate::store::from_us;
use crate::StoreError;

/// The columns of a key, its secret's hash last.
const KEY_COLUMNS: &str = "key_id, role, customer_id, created_us, revoked_us, secret_hash";

/// Stores a new key; only the hash of its secret.
pub(crate) fn insert(
    tx: &mut dyn Sql,
    key: &KeyInfo,
    secret_hash: &[u8; 32],
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO api_keys (key_id, secret_hash, role, customer_id, created_us) VALUES (?, ?, ?, ?, ?)",
        &[
            key.key_id.as_str().into(),
            secret_hash.as_slice().into(),
            key.role.as_str().into(),
            key.customer.as_deref().into(),
            key.created_at.timestamp_micros().into(),
        ],
    )?;
    Ok(())
}

/// Keys of one customer, or all keys, oldest first.
pub(crate) fn list(tx: &mut dyn Sql, customer: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
    tx.rows(
        &format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE CAST(? AS TEXT) IS NULL OR customer_id = ?
             ORDER BY created_us, key_id"
        ),
        &[customer.into(), customer.into()],
        key_info,
    )
}

fn key_info(r: &dyn SqlRow) -> Result<KeyInfo, StoreError> {
    Ok(KeyInfo {
        key_id: r.text_req(0)?,
        role: r.text_req(1)?.parse().map_err(StoreError::Corrupt)?,
        customer: r.text(2)?,
        created_at: from_us(r.int_req(3)?),
        revoked_at: r.int(4)?.map(from_us),
    })
}

/// A key and the hash of its secret: the lookup of every authenticated
/// request (one statement, for [`crate::Store::read_one`]).
pub(crate) fn secret(
    tx: &mut dyn Sql,
    key_id: &str,
) -> Result<Option<(KeyInfo, Vec<u8>)>, StoreError> {
    tx.row(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?"),
        &[key_id.into()],
        |r| Ok((key_info(r)?, r.bytes_req(5)?)),
    )
}

/// Marks a key revoked at `at`; a key revoked already keeps its first
/// revocation's time.
pub(crate) fn revoke(tx: &mut dyn Sql, key_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE api_keys SET revoked_us = COALESCE(revoked_us, ?) WHERE key_id = ?",
        &[at.timestamp_micros().into(), key_id.into()],
    )?;
    Ok(())
}

/// Sets (or replaces) the groups a key reads knowledge as.
pub(crate) fn set_groups(tx: &mut dyn Sql, key_id: &str, groups: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO key_groups (key_id, groups) VALUES (?, ?)
         ON CONFLICT (key_id) DO UPDATE SET groups = excluded.groups",
        &[key_id.into(), groups.into()],
    )?;
    Ok(())
}

/// The groups a key reads knowledge as, if set.
pub(crate) fn groups(tx: &mut dyn Sql, key_id: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .row(
            "SELECT groups FROM key_groups WHERE key_id = ?",
            &[key_id.into()],
            |r| r.text(0),
        )?
        .flatten())
}
