//! The MCP servers a customer registered: Payoff's MCP gateway fronts
//! each of them at `/mcp/<name>` for the customer's agents. Written once
//! for both databases (`crate::sql`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::sql::{Sql, SqlRow};
use crate::store::from_us;
use crate::StoreError;

/// Schema version 18.
pub(crate) const SCHEMA: &str = "CREATE TABLE mcp_servers (
        customer_id TEXT NOT NULL,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_us BIGINT NOT NULL,
        PRIMARY KEY (customer_id, name)
    );";

/// One registered MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpServer {
    pub customer: String,
    /// Its agents reach it at `/mcp/<name>`.
    pub name: String,
    /// Its streamable HTTP endpoint.
    pub url: String,
    /// The key id that registered it.
    pub added_by: String,
    pub added_at: DateTime<Utc>,
}

const COLUMNS: &str = "customer_id, name, url, added_by, added_us";

fn row(r: &dyn SqlRow) -> Result<McpServer, StoreError> {
    Ok(McpServer {
        customer: r.text_req(0)?,
        name: r.text_req(1)?,
        url: r.text_req(2)?,
        added_by: r.text_req(3)?,
        added_at: from_us(r.int_req(4)?),
    })
}

/// Registers a server, or points an existing name at a new URL.
pub(crate) fn put(tx: &mut dyn Sql, server: &McpServer) -> Result<(), StoreError> {
    tx.execute(
        &format!(
            "INSERT INTO mcp_servers ({COLUMNS}) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (customer_id, name) DO UPDATE SET url = excluded.url,
                 added_by = excluded.added_by, added_us = excluded.added_us"
        ),
        &[
            server.customer.as_str().into(),
            server.name.as_str().into(),
            server.url.as_str().into(),
            server.added_by.as_str().into(),
            server.added_at.timestamp_micros().into(),
        ],
    )?;
    Ok(())
}

/// The customer's servers by name, or the one named.
pub(crate) fn list(
    tx: &mut dyn Sql,
    customer: &str,
    name: Option<&str>,
) -> Result<Vec<McpServer>, StoreError> {
    let mut out = Vec::new();
    let mut sink = |r: &dyn SqlRow| {
        out.push(row(r)?);
        Ok(())
    };
    match name {
        Some(n) => tx.query(
            &format!("SELECT {COLUMNS} FROM mcp_servers WHERE customer_id = ? AND name = ?"),
            &[customer.into(), n.into()],
            &mut sink,
        )?,
        None => tx.query(
            &format!("SELECT {COLUMNS} FROM mcp_servers WHERE customer_id = ? ORDER BY name"),
            &[customer.into()],
            &mut sink,
        )?,
    }
    Ok(out)
}

/// Removes a server; whether there was one.
pub(crate) fn delete(tx: &mut dyn Sql, customer: &str, name: &str) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "DELETE FROM mcp_servers WHERE customer_id = ? AND name = ?",
        &[customer.into(), name.into()],
    )? == 1)
}
