//! Outgoing webhooks: every ledger event a subscription asks for is
//! delivered to its URL, signed in the Standard Webhooks format
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
//! HMAC-SHA256 of "id.timestamp.body">`), retried with exponential backoff.
//! The schedule (when a delivery is due, its retries, its lease) is kept
//! in business time (`state.clock`): the system clock in production, and
//! in a simulation the clock that decides when a retry falls due, so
//! [`tick`] after [`tick`] gives the same attempts. Only the signature's
//! timestamp is real time.
//!
//! Deliveries are rows in the store before anything is sent (see
//! `payoff_store::webhooks`), so a restart loses nothing: the next pass
//! picks up what is pending. The body is the event's canonical JSON, read
//! from the ledger, so a receiver can check it against an export.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use payoff_store::{
    ClaimLimits, DeliveryStatus, EventFilter, Store, WebhookDelivery, WebhookSubscription,
};
use rand::RngCore;
use sha2::Sha256;

use crate::problem::{ApiError, ErrorCode};
use crate::support::DraftReader;
use crate::{blocking_with, AppState};

/// How deliveries are paced.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The wait before each retry; a delivery fails for good after
    /// `backoff.len() + 1` attempts.
    pub backoff: Vec<StdDuration>,
    /// How long one attempt may take.
    pub timeout: StdDuration,
    /// How often the outbox is looked at.
    pub poll: StdDuration,
}

impl Default for WebhookSettings {
    /// The schedule Standard Webhooks suggests, roughly: 5 s, 5 min,
    /// 30 min, 2 h, 5 h, 10 h, 10 h.
    fn default() -> Self {
        let s = StdDuration::from_secs;
        WebhookSettings {
            backoff: vec![
                s(5),
                s(300),
                s(1800),
                s(7200),
                s(18_000),
                s(36_000),
                s(36_000),
            ],
            timeout: s(10),
            poll: s(1),
        }
    }
}

const SECRET_PREFIX: &str = "whsec_";
const EVENTS_PAGE: usize = 500;
/// Customers whose deliveries one node sends at once.
const CUSTOMERS_MAX: usize = 32;
/// Deliveries of one customer claimed at once: one batch, one commit of
/// their outcomes.
const PER_CUSTOMER_MAX: usize = 64;
/// Deliveries of one customer in flight at once.
const PER_CUSTOMER_CONCURRENCY: usize = 16;
/// Widest run of ledger sequences a batch reads in one query.
const BODIES_SPAN_MAX: u64 = 2_000;
/// How long a claim keeps other nodes off its deliveries. Short, so the
/// deliveries a crashed node had claimed go out again within seconds; a
/// node still sending renews its leases every [`RENEW_EVERY`], so a slow
/// receiver (each attempt may take the whole `timeout`) never makes a
/// lease lapse under a live sender. Business time, like the due times a
/// claim compares it with; a simulated clock moved past it while a batch
/// is in flight lets another node send again (delivery is at least once).
const LEASE: Duration = Duration::seconds(15);
const RENEW_EVERY: StdDuration = StdDuration::from_secs(5);
const ERROR_CHARS_MAX: usize = 500;
/// Bytes of a receiver's answer read at most.
const RESPONSE_BYTES_MAX: usize = 4096;
const REFUSED: &str = "refused by egress policy";

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The `webhook-signature` header of one message.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .unwrap_or_else(|_| secret.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// What the outbox did: deliveries enqueued and attempted by a pass, and
/// the outcomes of the attempts that finished (see [`tick`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxPass {
    /// Deliveries left for ledger events subscriptions had not seen.
    pub enqueued: usize,
    /// Due deliveries claimed and sent (one attempt each).
    pub attempted: usize,
    /// Attempts the receiver accepted.
    pub delivered: usize,
    /// Attempts that failed, scheduled again after their backoff.
    pub retrying: usize,
    /// Deliveries given up on: the last attempt failed, or one that
    /// cannot succeed (410 Gone, the subscription deleted).
    pub failed: usize,
}

impl std::ops::AddAssign for OutboxPass {
    fn add_assign(&mut self, o: OutboxPass) {
        self.enqueued += o.enqueued;
        self.attempted += o.attempted;
        self.delivered += o.delivered;
        self.retrying += o.retrying;
        self.failed += o.failed;
    }
}

/// One whole pass of the outbox at the business time of `state.clock`:
/// enqueues what subscriptions have not looked at yet, sends what is due
/// then, and waits until every attempt's outcome is recorded. What a test
/// or a simulation calls: with a manual clock, a failed delivery is sent
/// again by the first pass at or after its backoff, and never before. The
/// running server ticks an [`Outbox`] instead, which does not wait.
pub async fn tick(state: &AppState) -> Result<OutboxPass, ApiError> {
    let mut outbox = Outbox::default();
    let mut pass = outbox.tick(state).await?;
    pass += outbox.settle().await;
    Ok(pass)
}

/// The deliveries this node is sending, by customer. Each customer has at
/// most one batch in flight (at most [`PER_CUSTOMER_MAX`] deliveries, sent
/// at once) and the node at most [`CUSTOMERS_MAX`] customers' batches, so
/// a customer whose receiver hangs holds back its own deliveries only:
/// every other customer's are claimed at the next tick.
#[derive(Default)]
pub struct Outbox {
    busy: HashSet<String>,
    sending: tokio::task::JoinSet<(String, Option<OutboxPass>)>,
    /// Whether the last tick saw a subscription that is not deleted:
    /// without one an append has nothing to deliver, and waking for it
    /// would take the store's write lock from ingest for nothing.
    live: bool,
}

impl Outbox {
    /// One pass at the business time of `state.clock` that does not wait
    /// for receivers: takes the outcomes of the batches that finished since
    /// the last tick, enqueues, then claims the deliveries due now of
    /// customers not already in flight and starts sending them.
    pub async fn tick(&mut self, state: &AppState) -> Result<OutboxPass, ApiError> {
        let mut pass = OutboxPass::default();
        while let Some(done) = self.sending.try_join_next() {
            pass += self.finished(done);
        }
        let now = state.now();
        let (subscriptions, enqueued) = blocking_with(
            move |s| {
                let all = s.webhooks(None)?;
                let mut enqueued = 0;
                for sub in all.iter().filter(|w| w.deleted_at.is_none()) {
                    enqueued += enqueue(s, sub, now)?;
                }
                Ok((all, enqueued))
            },
            state,
        )
        .await?;
        pass.enqueued = enqueued;
        self.live = subscriptions.iter().any(|w| w.deleted_at.is_none());
        if !self.live && self.sending.is_empty() {
            return Ok(pass);
        }
        if self.busy.len() >= CUSTOMERS_MAX {
            return Ok(pass);
        }
        let by_id: Arc<HashMap<String, WebhookSubscription>> = Arc::new(
            subscriptions
                .into_iter()
                .map(|w| (w.id.clone(), w))
                .collect(),
        );
        let skip: Vec<String> = self.busy.iter().cloned().collect();
        let customers_max = CUSTOMERS_MAX - self.busy.len();
        let claimed = blocking_with(
            move |s| {
                let limits = ClaimLimits {
                    customers_max,
                    per_customer_max: PER_CUSTOMER_MAX,
                    skip: &skip,
                };
                Ok(s.claim_deliveries(now, now + LEASE, limits)?)
            },
            state,
        )
        .await?;
        pass.attempted = claimed.len();
        let mut by_customer: BTreeMap<String, Vec<WebhookDelivery>> = BTreeMap::new();
        for d in claimed {
            by_customer.entry(d.customer.clone()).or_default().push(d);
        }
        for (customer, batch) in by_customer {
            assert!(batch.len() <= PER_CUSTOMER_MAX, "the claim's limit");
            self.busy.insert(customer.clone());
            let (state, by_id) = (state.clone(), by_id.clone());
            self.sending.spawn(async move {
                match send_batch(&state, &by_id, batch).await {
                    Ok(sent) => (customer, Some(sent)),
                    Err(e) => {
                        tracing::error!(error = %e.detail, "a customer's webhook batch could not be recorded");
                        (customer, None)
                    }
                }
            });
        }
        Ok(pass)
    }

    /// Waits for every batch in flight; the outcomes of their attempts.
    pub async fn settle(&mut self) -> OutboxPass {
        let mut pass = OutboxPass::default();
        while let Some(done) = self.next_done().await {
            pass += done;
        }
        pass
    }

    /// Waits for the next batch in flight to finish (whichever customer's
    /// it is); the outcomes of its attempts, or none when nothing is in
    /// flight.
    pub async fn next_done(&mut self) -> Option<OutboxPass> {
        let done = self.sending.join_next().await?;
        Some(self.finished(done))
    }

    /// Frees a finished batch's customer; the outcomes it recorded.
    fn finished(
        &mut self,
        done: Result<(String, Option<OutboxPass>), tokio::task::JoinError>,
    ) -> OutboxPass {
        match done {
            Ok((customer, sent)) => {
                self.busy.remove(&customer);
                sent.unwrap_or_default()
            }
            Err(e) => {
                // The batch's customer is unknown: start afresh; leases
                // keep its deliveries from being sent twice meanwhile.
                tracing::error!(error = %e, "a customer's webhook batch failed");
                if self.sending.is_empty() {
                    self.busy.clear();
                }
                OutboxPass::default()
            }
        }
    }
}

/// Moves `sub`'s cursor over the ledger, one page at a time, leaving a
/// delivery (due at `now`) for every event it wants; how many it left.
fn enqueue(
    store: &Store,
    sub: &WebhookSubscription,
    now: DateTime<Utc>,
) -> Result<usize, ApiError> {
    let mut cursor = sub.cursor;
    let mut enqueued = 0;
    loop {
        let page = store.events(&EventFilter {
            customer: sub.customer.clone(),
            after_sequence: Some(cursor),
            limit: EVENTS_PAGE,
            ..Default::default()
        })?;
        let Some(last) = page.events.last().map(|e| e.sequence) else {
            return Ok(enqueued);
        };
        let deliveries: Vec<WebhookDelivery> = page
            .events
            .iter()
            .filter(|e| sub.wants(&e.event_type))
            .map(|e| WebhookDelivery::new(sub, e.sequence, &e.event_type, now))
            .collect();
        if !store.advance_webhook(&sub.id, cursor, last, &deliveries)? {
            // Another node moved it first; it enqueued these.
            return Ok(enqueued);
        }
        enqueued += deliveries.len();
        cursor = last;
        if page.events.len() < EVENTS_PAGE {
            return Ok(enqueued);
        }
    }
}

/// Sends one customer's claimed deliveries, at most
/// [`PER_CUSTOMER_CONCURRENCY`] at a time, and records their outcomes in
/// one transaction; returns those outcomes counted. The events' bodies are read in one query when their
/// sequences are close (they usually are: deliveries follow the ledger).
async fn send_batch(
    state: &AppState,
    subscriptions: &Arc<HashMap<String, WebhookSubscription>>,
    batch: Vec<WebhookDelivery>,
) -> Result<OutboxPass, ApiError> {
    let bodies = Arc::new(bodies(state, subscriptions, &batch).await?);
    let ids: Arc<Vec<String>> = Arc::new(batch.iter().map(|d| d.id.clone()).collect());
    let slots = Arc::new(tokio::sync::Semaphore::new(PER_CUSTOMER_CONCURRENCY));
    let mut sends = tokio::task::JoinSet::new();
    for delivery in batch {
        let (state, subscriptions, bodies, slots) = (
            state.clone(),
            subscriptions.clone(),
            bodies.clone(),
            slots.clone(),
        );
        sends.spawn(async move {
            let _slot = slots.acquire_owned().await;
            attempt(&state, &subscriptions, &bodies, delivery).await
        });
    }
    let mut finished = Vec::new();
    let mut renew =
        tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
    loop {
        tokio::select! {
            done = sends.join_next() => match done {
                Some(Ok(delivery)) => finished.push(delivery),
                // Its lease runs out and it is claimed again.
                Some(Err(e)) => tracing::error!(error = %e, "a webhook delivery task failed"),
                None => break,
            },
            _ = renew.tick() => {
                let until = state.now() + LEASE;
                let ids = ids.clone();
                // A renewal that fails is logged: the lease may lapse and
                // another node send again (delivery is at least once).
                if let Err(e) = blocking_with(move |s| Ok(s.renew_deliveries(&ids, until)?), state).await {
                    tracing::warn!(error = %e.detail, "webhook leases could not be renewed");
                }
            }
        }
    }
    let mut sent = OutboxPass::default();
    for d in &finished {
        let result = match d.status {
            DeliveryStatus::Delivered => {
                sent.delivered += 1;
                "delivered"
            }
            DeliveryStatus::Failed => {
                sent.failed += 1;
                "failed"
            }
            _ => {
                sent.retrying += 1;
                "retry"
            }
        };
        crate::Metrics::result(&state.metrics.webhook_deliveries, result);
    }
    blocking_with(move |s| Ok(s.finish_deliveries(&finished)?), state).await?;
    Ok(sent)
}

/// The body of each delivery of the batch, by delivery id: the event's
/// canonical bytes, with an agent's draft withheld from a subscription
/// whose creator may not read it (see `support::DraftReader`).
async fn bodies(
    state: &AppState,
    subscriptions: &HashMap<String, WebhookSubscription>,
    batch: &[WebhookDelivery],
) -> Result<HashMap<String, Vec<u8>>, ApiError> {
    let Some(customer) = batch.first().map(|d| d.customer.clone()) else {
        return Ok(HashMap::new());
    };
    debug_assert!(
        batch.iter().all(|d| d.customer == customer),
        "one customer's batch"
    );
    let first = batch.iter().map(|d| d.sequence).min().unwrap_or(0);
    let last = batch.iter().map(|d| d.sequence).max().unwrap_or(0);
    let wanted: HashSet<u64> = batch.iter().map(|d| d.sequence).collect();
    // One range when the sequences are close, else one lookup each.
    let ranges: Vec<(u64, u64)> = if last - first < BODIES_SPAN_MAX {
        vec![(first, last)]
    } else {
        wanted.iter().map(|&s| (s, s)).collect()
    };
    let creators: HashMap<String, String> = batch
        .iter()
        .filter_map(|d| {
            let sub = subscriptions.get(&d.subscription)?;
            Some((sub.id.clone(), sub.created_by.clone()))
        })
        .collect();
    let deliveries: Vec<(String, String, u64)> = batch
        .iter()
        .map(|d| (d.id.clone(), d.subscription.clone(), d.sequence))
        .collect();
    blocking_with(
        move |s| {
            let mut events = HashMap::new();
            for (from, to) in ranges {
                let page = s.events(&EventFilter {
                    customer: customer.clone(),
                    after_sequence: Some(from.saturating_sub(1)),
                    limit: (to - from + 1) as usize,
                    ..Default::default()
                })?;
                for e in page.events {
                    if wanted.contains(&e.sequence) {
                        events.insert(e.sequence, e.canonical);
                    }
                }
            }
            let mut readers = HashMap::new();
            for (sub, creator) in creators {
                readers.insert(sub, DraftReader::of_key_id(s, &creator)?);
            }
            let mut out = HashMap::new();
            for (id, sub, sequence) in deliveries {
                if let (Some(body), Some(reader)) = (events.get(&sequence), readers.get(&sub)) {
                    out.insert(id, reader.redact_bytes(body.clone()));
                }
            }
            Ok(out)
        },
        state,
    )
    .await
}

/// One attempt of one delivery; returns it with the outcome recorded in
/// it (stored by the caller). Its next attempt is scheduled in business
/// time, the clock the claim compares it with.
async fn attempt(
    state: &AppState,
    subscriptions: &HashMap<String, WebhookSubscription>,
    bodies: &HashMap<String, Vec<u8>>,
    mut delivery: WebhookDelivery,
) -> WebhookDelivery {
    let now = state.now();
    let outcome = match subscriptions
        .get(&delivery.subscription)
        .filter(|s| s.deleted_at.is_none())
    {
        None => Err((None, "the subscription was deleted".to_owned(), true)),
        Some(sub) => match bodies.get(&delivery.id) {
            None => Err((None, "the event is not in the ledger".to_owned(), true)),
            Some(body) => send(state, sub, &delivery.id, body.clone()).await,
        },
    };
    delivery.attempts += 1;
    match outcome {
        Ok(status) => {
            delivery.status = DeliveryStatus::Delivered;
            delivery.last_status = Some(status);
            delivery.last_error = None;
            delivery.delivered_at = Some(state.now());
        }
        Err((status, error, final_)) => {
            delivery.last_status = status;
            delivery.last_error = Some(error.chars().take(ERROR_CHARS_MAX).collect());
            let backoff = &state.config.webhooks.backoff;
            match backoff.get(delivery.attempts as usize - 1) {
                Some(wait) if !final_ => {
                    delivery.next_attempt_at =
                        now + Duration::from_std(*wait).unwrap_or(Duration::hours(10));
                }
                _ => delivery.status = DeliveryStatus::Failed,
            }
        }
    }
    delivery
}

/// POSTs one signed message; `Err((status, why, final))`. `why` says no
/// more than a tenant needs to mend its receiver, so the log is no port
/// scanner: refused, connection failed, timed out, or the status.
async fn send(
    state: &AppState,
    sub: &WebhookSubscription,
    id: &str,
    body: Vec<u8>,
) -> Result<u16, (Option<u16>, String, bool)> {
    // A URL naming an address is never resolved, so the policy (which may
    // have changed since the subscription was made) is checked here.
    let url = reqwest::Url::parse(&sub.url).map_err(|_| (None, "invalid URL".into(), true))?;
    if state.egress.check_url(&url).is_err() {
        return Err((None, REFUSED.into(), false));
    }
    // Real time, not business time: the receiver checks it against its own
    // clock.
    let timestamp = payoff_clock::wall().timestamp();
    let secret = state
        .secrets
        .open(&sub.secret)
        .map_err(|e| (None, e.detail, false))?;
    let signature = signature(&secret, id, timestamp, &body);
    let response = state
        .http
        .post(url)
        .timeout(state.config.webhooks.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| (None, describe(&e), false))?;
    let status = response.status();
    // The body is not needed; a little is read so a small answer leaves
    // the connection reusable, and no more.
    let _ = payoff_egress::read_capped(response, RESPONSE_BYTES_MAX).await;
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        // 410 Gone: the receiver says never again. A 3xx is a failure:
        // redirects are not followed.
        let final_ = status == reqwest::StatusCode::GONE;
        Err((
            Some(status.as_u16()),
            format!("HTTP {}", status.as_u16()),
            final_,
        ))
    }
}

/// What the delivery log says of a failed request.
fn describe(e: &reqwest::Error) -> String {
    if payoff_egress::refusal(e).is_some() {
        REFUSED.into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

/// Seals the secrets stored in clear before they were sealed at rest
/// (they still sign meanwhile); a failure is tried again at the next
/// start. Run by `serve` before any worker.
pub async fn seal_clear_secrets(state: &AppState) {
    let secrets = state.secrets.clone();
    match blocking_with(
        move |s| Ok(s.reseal_webhook_secrets(&|stored| secrets.reseal(stored))?),
        state,
    )
    .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(sealed = n, "webhook secrets stored in clear are now sealed"),
        Err(e) => {
            tracing::error!(error = %e.detail, "could not seal webhook secrets stored in clear")
        }
    }
}

/// Ticks an [`Outbox`] every `poll` of real time, and whenever something
/// may be due sooner, until `stop` is notified; then waits for the
/// batches in flight (not started when the server's background work is
/// manual).
pub async fn run(state: AppState, stop: Arc<tokio::sync::Notify>) {
    let poll = state.config.webhooks.poll;
    let mut appended = state.ledger.appended();
    let mut outbox = Outbox::default();
    loop {
        if let Err(e) = outbox.tick(&state).await {
            tracing::error!(error = %e.detail, "webhook pass failed");
        }
        // New events written through this node wake the outbox at once
        // when some subscription may want them, as does a subscription
        // created here; the poll finds those of other nodes, their new
        // subscriptions, and retries that fall due.
        let sleep = tokio::time::sleep(poll);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = stop.notified() => {
                    outbox.settle().await;
                    return;
                }
                _ = &mut sleep => break,
                _ = state.webhooks_due.notified() => break,
                Ok(()) = appended.changed() => if outbox.live { break },
                Some(_) = outbox.next_done(), if !outbox.sending.is_empty() => break,
            }
        }
    }
}

/// Checks a subscription's URL and event types; the error names the field.
/// A well-formed URL the egress policy refuses is 422 (`url_refused`).
pub fn check_subscription(
    policy: &payoff_egress::EgressPolicy,
    url: &str,
    event_types: &[String],
) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::new(ErrorCode::InvalidRequest, m));
    let parsed = reqwest::Url::parse(url);
    let ok = url.len() <= 2048
        && parsed
            .as_ref()
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !ok {
        return bad("url: must be an http or https URL of at most 2048 characters".into());
    }
    if let Err(refusal) = policy.check_url(parsed.as_ref().expect("checked above")) {
        return Err(ApiError::new(
            ErrorCode::UrlRefused,
            format!("url: {refusal}"),
        ));
    }
    if event_types.is_empty() || event_types.len() > 32 {
        return bad("event_types: list 1 to 32 event types".into());
    }
    for t in event_types {
        let body = t.strip_suffix('*').unwrap_or(t);
        let ok = t.len() <= 128
            && (t == "*" || !body.is_empty())
            && body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return bad(format!(
                "event_types: \"{t}\" is not an event type (letters, digits, . _ -, optionally ending in *)"
            ));
        }
    }
    Ok(())
}
