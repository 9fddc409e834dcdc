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

use chrono::{DateTime, Utc};
use serde::Serialize;

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
pub(crate) fn event_types_text(types: &[String]) -> String {
    serde_json::to_string(types).expect("strings serialise")
}

pub(crate) fn event_types_parse(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}
