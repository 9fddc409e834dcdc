//! Outgoing webhooks as stored: subscriptions, and one delivery row per
//! (subscription, ledger event) so that nothing is lost across a restart.
//!
//! A subscription keeps a cursor: the last ledger sequence it has looked
//! at. Moving the cursor and inserting the deliveries it passed happen in
//! one transaction that only succeeds if nobody moved the cursor first, so
//! nodes sharing a database never enqueue an event twice. Deliveries are
//! claimed with a lease before they are sent, so two nodes do not send the
//! same one at the same time (a crash mid-send sends it again: receivers
//! deduplicate by `webhook-id`, as Standard Webhooks asks them to).
//! Claims are fair ([`claim`]): a few deliveries of each customer, the
//! customers waiting longest first, so one tenant's backlog or slow
//! receiver never holds back another's.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::sql::{placeholders, Param, Sql, SqlRow};
use crate::store::from_us;
use crate::StoreError;

/// A customer's subscription to some of its ledger's event types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookSubscription {
    pub id: String,
    pub customer: String,
    pub url: String,
    /// Exact types, or prefixes ending in `*` (`ticket.*`), or `*`.
    pub event_types: Vec<String>,
    /// `whsec_` and the base64 key; shown once, at creation.
    #[serde(skip)]
    pub secret: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// The last ledger sequence looked at for this subscription.
    pub cursor: u64,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl WebhookSubscription {
    /// Whether an event of `event_type` is for this subscription.
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.iter().any(|t| match t.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => t == event_type,
        })
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not sent yet, or to be tried again at `next_attempt_at`.
    Pending,
    Delivered,
    /// Every attempt failed; an operator may retry it.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> DeliveryStatus {
        match s {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One event to deliver to one subscription, and how it went so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    /// The `webhook-id` the receiver sees: the same on every attempt.
    pub id: String,
    pub subscription: String,
    pub customer: String,
    /// The ledger event delivered (its body is read from the ledger).
    pub sequence: u64,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// The HTTP status of the last attempt, when there was one.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl WebhookDelivery {
    /// A new delivery of event `sequence` to `subscription`.
    pub fn new(
        subscription: &WebhookSubscription,
        sequence: u64,
        event_type: &str,
        now: DateTime<Utc>,
    ) -> WebhookDelivery {
        WebhookDelivery {
            id: format!("msg_{}_{sequence}", subscription.id),
            subscription: subscription.id.clone(),
            customer: subscription.customer.clone(),
            sequence,
            event_type: event_type.to_owned(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_status: None,
            last_error: None,
            created_at: now,
            delivered_at: None,
        }
    }
}

/// Event types as stored: a JSON array.
fn event_types_text(types: &[String]) -> String {
    serde_json::to_string(types).expect("strings serialise")
}

fn event_types_parse(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// How much one claim may take.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits<'a> {
    /// Customers whose deliveries are claimed, those due longest first.
    pub customers_max: usize,
    /// Deliveries claimed of each customer.
    pub per_customer_max: usize,
    /// Customers passed over (this node is still sending theirs).
    pub skip: &'a [String],
}

const DELIVERY_COLUMNS: &str = "id, subscription_id, customer_id, sequence, event_type, status, attempts, next_attempt_us, last_status, last_error, created_us, delivered_us";

/// Schema version 14: a customer's pending deliveries in the order a claim
/// takes them, so a claim reads the few it leases. Without it PostgreSQL
/// sorted every pending delivery of the customer at each claim, and
/// deliveries slowed as the backlog grew (1,748/s at 10,000, 954/s at
/// 50,000 events, `payoff bench webhooks`).
pub(crate) const CLAIM_INDEX: &str = "CREATE INDEX webhook_deliveries_claim
    ON webhook_deliveries (customer_id, next_attempt_us, id) WHERE status = 'pending';";

/// The earliest due deliveries a claim looks at to choose customers: the
/// index gives them in order, so a claim costs the same whatever the
/// backlog (it scanned every due delivery, and slowed as they piled up).
/// Customers this node is sending to are left out before the window, so a
/// large backlog of one customer does not hide the others.
const DUE_WINDOW: usize = 4_096;

/// Leases pending deliveries due at `now` until `lease_until`, at most
/// `limits.per_customer_max` of each of at most `limits.customers_max`
/// customers (those whose oldest due delivery is oldest first), oldest
/// first within a customer. One SQL text for both databases.
pub fn claim(
    tx: &mut dyn Sql,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limits: ClaimLimits<'_>,
) -> Result<Vec<WebhookDelivery>, StoreError> {
    let (now_us, until_us) = (now.timestamp_micros(), lease_until.timestamp_micros());
    let skip = if limits.skip.is_empty() {
        String::new()
    } else {
        format!(
            " AND customer_id NOT IN ({})",
            placeholders(limits.skip.len())
        )
    };
    let mut params: Vec<Param<'_>> = vec![now_us.into(), now_us.into()];
    params.extend(limits.skip.iter().map(|c| Param::from(c.as_str())));
    params.push((limits.customers_max as i64).into());
    let customers = tx.rows(
        &format!(
            "SELECT customer_id, MIN(next_attempt_us) AS due FROM (
                 SELECT customer_id, next_attempt_us FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_us <= ? AND lease_until_us <= ?{skip}
                 ORDER BY next_attempt_us LIMIT {DUE_WINDOW}) AS due_first
             GROUP BY customer_id ORDER BY due, customer_id LIMIT ?"
        ),
        &params,
        |r| r.text_req(0),
    )?;
    let lock = tx.dialect().for_update_skip_locked();
    let mut claimed = Vec::new();
    for customer in &customers {
        tx.query(
            &format!(
                "UPDATE webhook_deliveries SET lease_until_us = ?
                 WHERE id IN (SELECT id FROM webhook_deliveries
                              WHERE customer_id = ? AND status = 'pending' AND next_attempt_us <= ? AND lease_until_us <= ?
                              ORDER BY next_attempt_us, id LIMIT ?{lock})
                 RETURNING {DELIVERY_COLUMNS}"
            ),
            &[
                until_us.into(),
                customer.as_str().into(),
                now_us.into(),
                now_us.into(),
                (limits.per_customer_max as i64).into(),
            ],
            &mut |r| {
                claimed.push(delivery_row(r)?);
                Ok(())
            },
        )?;
    }
    // RETURNING gives rows in no particular order.
    claimed.sort_by(|a, b| {
        (&a.customer, a.next_attempt_at, &a.id).cmp(&(&b.customer, b.next_attempt_at, &b.id))
    });
    Ok(claimed)
}

/// Subscriptions of a customer (or all), deleted ones too, oldest first.
pub(crate) fn subscriptions(
    tx: &mut dyn Sql,
    customer: Option<&str>,
) -> Result<Vec<WebhookSubscription>, StoreError> {
    tx.rows(
        "SELECT id, customer_id, url, event_types, secret, created_by, created_us, cursor, deleted_us FROM webhook_subscriptions
         WHERE (CAST(? AS TEXT) IS NULL OR customer_id = ?) ORDER BY created_us, id",
        &[customer.into(), customer.into()],
        |r| {
            Ok(WebhookSubscription {
                id: r.text_req(0)?,
                customer: r.text_req(1)?,
                url: r.text_req(2)?,
                event_types: event_types_parse(&r.text_req(3)?),
                secret: r.text_req(4)?,
                created_by: r.text_req(5)?,
                created_at: from_us(r.int_req(6)?),
                cursor: r.int_req(7)? as u64,
                deleted_at: r.int(8)?.map(from_us),
            })
        },
    )
}

/// Stores a new subscription.
pub(crate) fn insert_subscription(
    tx: &mut dyn Sql,
    w: &WebhookSubscription,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO webhook_subscriptions (id, customer_id, url, event_types, secret, created_by, created_us, cursor, deleted_us)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        &[
            w.id.as_str().into(),
            w.customer.as_str().into(),
            w.url.as_str().into(),
            event_types_text(&w.event_types).as_str().into(),
            w.secret.as_str().into(),
            w.created_by.as_str().into(),
            w.created_at.timestamp_micros().into(),
            (w.cursor as i64).into(),
        ],
    )?;
    Ok(())
}

/// Marks a live subscription deleted at `at`; false when there was none.
pub(crate) fn delete_subscription(
    tx: &mut dyn Sql,
    id: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE webhook_subscriptions SET deleted_us = ? WHERE id = ? AND deleted_us IS NULL",
        &[at.timestamp_micros().into(), id.into()],
    )? == 1)
}

/// A subscription's deliveries after `after_sequence`, oldest first.
pub(crate) fn deliveries(
    tx: &mut dyn Sql,
    subscription: &str,
    after_sequence: u64,
    limit: usize,
) -> Result<Vec<WebhookDelivery>, StoreError> {
    tx.rows(
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = ? AND sequence > ?
             ORDER BY sequence LIMIT ?"
        ),
        &[
            subscription.into(),
            (after_sequence as i64).into(),
            (limit as i64).into(),
        ],
        delivery_row,
    )
}

/// Extends the leases of deliveries still being sent to `lease_until`;
/// those already finished (lease released) are left alone. One SQL text
/// for both databases.
pub(crate) fn renew(
    tx: &mut dyn Sql,
    ids: &[String],
    lease_until: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut renewed = 0;
    for chunk in ids.chunks(500) {
        let mut params: Vec<Param<'_>> = vec![lease_until.timestamp_micros().into()];
        params.extend(chunk.iter().map(|id| Param::from(id.as_str())));
        renewed += tx.execute(
            &format!(
                "UPDATE webhook_deliveries SET lease_until_us = ?
                 WHERE status = 'pending' AND lease_until_us > 0 AND id IN ({})",
                placeholders(chunk.len())
            ),
            &params,
        )? as usize;
    }
    Ok(renewed)
}

/// See [`crate::Store::reseal_webhook_secrets`]. One SQL text for both
/// databases.
pub(crate) fn reseal(
    tx: &mut dyn Sql,
    seal: &dyn Fn(&str) -> Option<String>,
) -> Result<usize, StoreError> {
    let stored = tx.rows(
        "SELECT id, secret FROM webhook_subscriptions ORDER BY id",
        &[],
        |r| Ok((r.text_req(0)?, r.text_req(1)?)),
    )?;
    let mut changed = 0;
    for (id, secret) in stored {
        if let Some(sealed) = seal(&secret) {
            changed += tx.execute(
                "UPDATE webhook_subscriptions SET secret = ? WHERE id = ? AND secret = ?",
                &[
                    sealed.as_str().into(),
                    id.as_str().into(),
                    secret.as_str().into(),
                ],
            )? as usize;
        }
    }
    Ok(changed)
}

fn delivery_row(r: &dyn SqlRow) -> Result<WebhookDelivery, StoreError> {
    let small = |v: i64, what: &str| {
        u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("webhook delivery {what} {v}")))
    };
    Ok(WebhookDelivery {
        id: r.text_req(0)?,
        subscription: r.text_req(1)?,
        customer: r.text_req(2)?,
        sequence: r.int_req(3)? as u64,
        event_type: r.text_req(4)?,
        status: DeliveryStatus::parse(&r.text_req(5)?),
        attempts: small(r.int_req(6)?, "attempts")?,
        next_attempt_at: from_us(r.int_req(7)?),
        last_status: match r.int(8)? {
            Some(s) => Some(small(s, "status")? as u16),
            None => None,
        },
        last_error: r.text(9)?,
        created_at: from_us(r.int_req(10)?),
        delivered_at: r.int(11)?.map(from_us),
    })
}

/// Rows per multi-row statement: one round trip for many rows (on
/// PostgreSQL a row each was a round trip each: 1,697 deliveries/s against
/// SQLite's 11,517, `payoff bench webhooks`), well under both databases'
/// limits on parameters.
const ROWS_PER_STATEMENT: usize = 100;

/// Moves a subscription's cursor from `from` to `to` and inserts the
/// deliveries it passed, in the caller's one transaction; false (nothing
/// written) when the cursor is no longer at `from` (another node moved
/// it, and enqueued these). One SQL text for both databases.
pub(crate) fn advance(
    tx: &mut dyn Sql,
    id: &str,
    from: u64,
    to: u64,
    deliveries: &[WebhookDelivery],
) -> Result<bool, StoreError> {
    let moved = tx.execute(
        "UPDATE webhook_subscriptions SET cursor = ? WHERE id = ? AND cursor = ?",
        &[(to as i64).into(), id.into(), (from as i64).into()],
    )?;
    if moved != 1 {
        return Ok(false);
    }
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 12);
        for d in chunk {
            params.extend::<[Param<'_>; 12]>([
                d.id.as_str().into(),
                d.subscription.as_str().into(),
                d.customer.as_str().into(),
                (d.sequence as i64).into(),
                d.event_type.as_str().into(),
                d.status.as_str().into(),
                i64::from(d.attempts).into(),
                d.next_attempt_at.timestamp_micros().into(),
                d.last_status.map(i64::from).into(),
                d.last_error.as_deref().into(),
                d.created_at.timestamp_micros().into(),
                d.delivered_at.map(|t| t.timestamp_micros()).into(),
            ]);
        }
        let row = "(?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)";
        tx.execute(
            &format!(
                "INSERT INTO webhook_deliveries (id, subscription_id, customer_id, sequence, event_type, status, attempts, next_attempt_us, lease_until_us, last_status, last_error, created_us, delivered_us)
                 VALUES {} ON CONFLICT DO NOTHING",
                vec![row; chunk.len()].join(", ")
            ),
            &params,
        )?;
    }
    Ok(true)
}

/// Stores the outcome of attempts and releases their leases, all in the
/// caller's one transaction: a batch of deliveries costs one commit, not
/// one each, and one statement per [`ROWS_PER_STATEMENT`] deliveries.
/// One SQL text for both databases (`UPDATE … FROM (VALUES …)`, whose
/// columns both name `column1…`; the casts type PostgreSQL's parameters).
pub(crate) fn finish(tx: &mut dyn Sql, deliveries: &[WebhookDelivery]) -> Result<(), StoreError> {
    for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
        let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 7);
        for d in chunk {
            params.extend::<[Param<'_>; 7]>([
                d.id.as_str().into(),
                d.status.as_str().into(),
                i64::from(d.attempts).into(),
                d.next_attempt_at.timestamp_micros().into(),
                d.last_status.map(i64::from).into(),
                d.last_error.as_deref().into(),
                d.delivered_at.map(|t| t.timestamp_micros()).into(),
            ]);
        }
        let row = "(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BIGINT))";
        tx.execute(
            &format!(
                "UPDATE webhook_deliveries SET status = v.column2, attempts = v.column3, next_attempt_us = v.column4,
                     lease_until_us = 0, last_status = v.column5, last_error = v.column6, delivered_us = v.column7
                 FROM (VALUES {}) AS v WHERE webhook_deliveries.id = v.column1",
                vec![row; chunk.len()].join(", ")
            ),
            &params,
        )?;
    }
    Ok(())
}
