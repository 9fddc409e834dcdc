//! Outcomes: the events of one customer projected through one contract.
//!
//! The projection is a pure fold over events in ledger order, so the same
//! contract and events always give the same outcomes with the same ids.

use std::collections::HashMap;

/// Outcome of a kind by subject: looked up once per subject of every
/// holdout and every event of a close, so with a fast (seeded) hasher.
type SubjectIndex = HashMap<String, usize, foldhash::fast::RandomState>;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::attribution::Arm;
use crate::contract::{Contract, PercentOf, Price};
use crate::period::Period;
use crate::record::{
    Record, ASSIGNMENT, DISPUTE_ACCEPTED, DISPUTE_OPENED, DISPUTE_REJECTED, PAYOFF_SOURCE, RELEASE,
};
use crate::rules::{RuleEnv, Scope};

/// The part of a stored event that billing reads.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingEvent {
    /// Position in the customer's chain (1-based).
    pub sequence: u64,
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: DateTime<Utc>,
    pub data: Value,
}

impl BillingEvent {
    /// Reads a stored CloudEvent (its JSON object). Events without `time`
    /// cannot be placed in a period and give `None`.
    pub fn from_json(sequence: u64, event: &Value) -> Option<BillingEvent> {
        let text = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_string);
        let time = DateTime::parse_from_rfc3339(event.get("time")?.as_str()?)
            .ok()?
            .with_timezone(&Utc);
        Some(BillingEvent {
            sequence,
            id: text("id")?,
            source: text("source")?,
            event_type: text("type")?,
            subject: text("subject"),
            time,
            data: event.get("data").cloned().unwrap_or(Value::Null),
        })
    }
}

/// Where and when something happened to an outcome: the event behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub sequence: u64,
    pub event_id: String,
    pub time: DateTime<Utc>,
}

impl Mark {
    fn of(event: &BillingEvent) -> Mark {
        Mark {
            sequence: event.sequence,
            event_id: event.id.clone(),
            time: event.time,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accepted,
    Rejected,
}

/// One dispute of one outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispute {
    pub opened: Mark,
    pub reason: String,
    pub decision: Option<(Decision, Mark, String)>,
}

/// One result the contract recognises for one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: String,
    /// Index of the `[[outcome]]` kind in the contract.
    pub kind: usize,
    pub subject: String,
    pub created: Mark,
    pub matures_at: DateTime<Utc>,
    /// What a `percent_of` price applies to; zero when it could not be read
    /// (`value_error` says why).
    pub value: Option<Decimal>,
    /// Boxed text: a close holds a million outcomes, almost all without.
    pub value_error: Option<Box<str>>,
    /// Boxed: most outcomes are never voided, and a close holds a million
    /// outcomes (40 bytes each less).
    pub void: Option<Box<Mark>>,
    pub disputes: Vec<Dispute>,
}

/// The stable id of the outcome of `kind` for `subject` of `customer`:
/// `out.<customer>.<24 hex digits>`. The customer is readable in the id so
/// that an id alone finds its tenant; the hash keeps subjects (which may be
/// personal data) out of URLs.
pub fn outcome_id(customer: &str, kind: &str, subject: &str) -> String {
    let mut h = Sha256::new();
    for part in [customer, kind, subject] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("out.{customer}.{}", &hex::encode(h.finalize())[..24])
}

/// The customer named in an outcome or statement id.
pub fn customer_of_id(id: &str) -> Option<&str> {
    let mut parts = id.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("out" | "st"), Some(customer), Some(rest))
            if !customer.is_empty() && !rest.is_empty() =>
        {
            Some(customer)
        }
        _ => None,
    }
}

impl Outcome {
    /// Voided before it matured: it never becomes billable.
    pub fn voided_while_pending(&self) -> bool {
        self.void
            .as_ref()
            .is_some_and(|v| v.time <= self.matures_at)
    }

    /// The void, if it happened before `t`.
    pub fn void_before(&self, t: DateTime<Utc>) -> Option<&Mark> {
        self.void.as_deref().filter(|v| v.time < t)
    }

    /// The state of its disputes as of `t`: is one open, was one accepted.
    pub fn dispute_state(&self, t: DateTime<Utc>) -> DisputeState {
        let mut state = DisputeState::None;
        for d in self.disputes.iter().filter(|d| d.opened.time < t) {
            state = match &d.decision {
                Some((Decision::Accepted, m, _)) if m.time < t => {
                    return DisputeState::Accepted(m.clone())
                }
                Some((Decision::Rejected, m, _)) if m.time < t => DisputeState::Rejected,
                _ => DisputeState::Open,
            };
        }
        state
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisputeState {
    None,
    Open,
    Rejected,
    Accepted(Mark),
}

/// One event's part in the service levels ([`OutcomeRules::service_hits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceHit {
    /// Index of the `[[service_level]]` in the contract.
    pub level: usize,
    pub numerator: bool,
    pub denominator: bool,
}

/// Service-level counts of one period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    pub numerator: u64,
    pub denominator: u64,
}

/// All outcomes of a customer under one contract, and the service-level
/// counts of one period.
#[derive(Debug, Default)]
pub struct Projection {
    pub outcomes: Vec<Outcome>,
    pub service_counts: Vec<ServiceCounts>,
    /// Events the rules looked at (for throughput figures).
    pub events_seen: u64,
    /// Per experiment, the subjects' assignments in ledger order, and
    /// each subject's arm (see [`Projection::assign`]).
    assignments: HashMap<String, Experiment>,
    /// Per outcome kind, the index in `outcomes` of each subject's outcome.
    by_subject: Vec<SubjectIndex>,
    /// (experiment, period) pairs an operator released despite a
    /// sample-ratio mismatch.
    pub releases: std::collections::HashSet<(String, String)>,
}

/// A subject's arm in a holdout experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub control: bool,
    pub at: DateTime<Utc>,
}

/// The subjects of one holdout experiment.
#[derive(Debug, Default)]
struct Experiment {
    in_order: Vec<(String, Assignment)>,
    by_subject: HashMap<String, Assignment, foldhash::fast::RandomState>,
}

impl Projection {
    /// Records a subject's arm; its first assignment stands (the ledger
    /// holds one per experiment and subject, keyed by its event id).
    pub fn assign(&mut self, experiment: &str, subject: &str, assignment: Assignment) {
        let e = match self.assignments.get_mut(experiment) {
            Some(e) => e,
            None => self.assignments.entry(experiment.to_owned()).or_default(),
        };
        if !e.by_subject.contains_key(subject) {
            e.by_subject.insert(subject.to_owned(), assignment);
            e.in_order.push((subject.to_owned(), assignment));
        }
    }

    /// An experiment's assignments in ledger order.
    pub fn assignments(&self, experiment: &str) -> &[(String, Assignment)] {
        self.assignments
            .get(experiment)
            .map_or(&[], |e| e.in_order.as_slice())
    }

    /// A subject's assignment in an experiment.
    pub fn assignment_of(&self, experiment: &str, subject: &str) -> Option<Assignment> {
        self.assignments
            .get(experiment)
            .and_then(|e| e.by_subject.get(subject))
            .copied()
    }

    /// Adds an outcome (for tools and benchmarks that build projections
    /// without events); the first outcome of a kind and subject stands.
    pub fn push_outcome(&mut self, outcome: Outcome) {
        if self.slot(outcome.kind, &outcome.subject).is_none() {
            self.create(outcome);
        }
    }

    /// Folds `events` (ledger order) with times before `until` through
    /// `contract`. Service levels are counted over `service_period`.
    pub fn run<'e>(
        customer: &str,
        contract: &Contract,
        events: impl IntoIterator<Item = &'e BillingEvent>,
        until: DateTime<Utc>,
        service_period: Option<Period>,
    ) -> Projection {
        let mut projector = Projector::new(customer, contract, until, service_period);
        for event in events {
            projector.feed(event);
        }
        projector.finish()
    }
}

/// Where an outcome fold keeps its outcomes: the in-memory [`Projection`]
/// of a close, or the rows of a read model that a shell loaded for the
/// events at hand (see [`OutcomeRules::touches`]).
pub trait OutcomeSlots {
    /// The outcome of `kind` for `subject`, if one was created.
    fn slot(&mut self, kind: usize, subject: &str) -> Option<&mut Outcome>;
    /// Keeps a new outcome; none of its kind and subject exists yet.
    fn create(&mut self, outcome: Outcome);
}

impl OutcomeSlots for Projection {
    fn slot(&mut self, kind: usize, subject: &str) -> Option<&mut Outcome> {
        let at = *self.by_subject.get(kind)?.get(subject)?;
        Some(&mut self.outcomes[at])
    }

    fn create(&mut self, outcome: Outcome) {
        if self.by_subject.len() <= outcome.kind {
            self.by_subject
                .resize_with(outcome.kind + 1, SubjectIndex::default);
        }
        debug_assert!(!self.by_subject[outcome.kind].contains_key(&outcome.subject));
        self.by_subject[outcome.kind].insert(outcome.subject.clone(), self.outcomes.len());
        self.outcomes.push(outcome);
    }
}

/// The outcome rules of one contract for one customer: how one event
/// creates, voids or disputes outcomes. Each outcome depends only on the
/// events of its own kind and subject, so a read model can apply an event
/// to the few outcomes it touches instead of replaying the ledger; the
/// close's [`Projector`] applies the very same rules in memory.
pub struct OutcomeRules<'c> {
    customer: &'c str,
    contract: &'c Contract,
    env: RuleEnv,
}

impl<'c> OutcomeRules<'c> {
    /// The contract the rules are of.
    pub fn contract(&self) -> &'c Contract {
        self.contract
    }

    pub fn new(customer: &'c str, contract: &'c Contract) -> OutcomeRules<'c> {
        OutcomeRules {
            customer,
            contract,
            env: RuleEnv::default(),
        }
    }

    /// Does any outcome rule look at events of this type?
    pub fn wants(&self, event: &BillingEvent) -> bool {
        is_dispute(event)
            || self.contract.outcomes.iter().any(|rule| {
                rule.when.may_match(&event.event_type)
                    || rule
                        .void_when
                        .as_ref()
                        .is_some_and(|v| v.may_match(&event.event_type))
            })
    }

    /// The (kind, subject) outcomes `event` may create, void or dispute:
    /// what a read model loads before it [`apply`](Self::apply)s the event.
    pub fn touches(&self, event: &BillingEvent) -> Vec<(usize, String)> {
        let mut keys = Vec::new();
        if is_dispute(event) {
            if let Some((outcome, subject)) = Record::of(event).as_ref().and_then(disputed) {
                if let Some(kind) = self.contract.outcome_index(outcome) {
                    keys.push((kind, subject.to_owned()));
                }
            }
            return keys;
        }
        let mut scope = None;
        for (kind, rule) in self.contract.outcomes.iter().enumerate() {
            if let Some(subject) = self.subject_for(rule, event, &mut scope) {
                keys.push((kind, subject));
            }
        }
        keys
    }

    /// The subject an outcome rule reads off `event`, if the rule looks at
    /// events of its type at all.
    fn subject_for(
        &self,
        rule: &crate::contract::OutcomeRule,
        event: &BillingEvent,
        scope: &mut Option<Scope>,
    ) -> Option<String> {
        let creates = rule.when.may_match(&event.event_type);
        let voids = rule
            .void_when
            .as_ref()
            .is_some_and(|v| v.may_match(&event.event_type));
        if !creates && !voids {
            return None;
        }
        let subject = match &rule.subject {
            None => event.subject.clone(),
            Some(expr) => expr.text(self.bind(event, scope)).ok(),
        };
        subject.filter(|s| !s.is_empty())
    }

    fn bind<'s>(&self, event: &BillingEvent, scope: &'s mut Option<Scope>) -> &'s Scope {
        scope.get_or_insert_with(|| self.env.scope(event))
    }

    /// The service levels whose numerator and denominator `event` counts
    /// in, wherever its time falls: the close counts those of its period,
    /// the read model keeps them per period. One place for the rule.
    pub fn service_hits(&self, event: &BillingEvent) -> Vec<ServiceHit> {
        self.service_hits_bound(event, &mut None)
    }

    fn service_hits_bound(
        &self,
        event: &BillingEvent,
        scope: &mut Option<Scope>,
    ) -> Vec<ServiceHit> {
        let mut hits = Vec::new();
        // Payoff's own records of arms never count.
        let own = event.source == PAYOFF_SOURCE
            && (event.event_type == ASSIGNMENT || event.event_type == RELEASE);
        if own {
            return hits;
        }
        for (level, sl) in self.contract.service_levels.iter().enumerate() {
            let mut hit = |rule: &crate::rules::Rule| {
                rule.may_match(&event.event_type) && rule.holds(self.bind(event, scope))
            };
            let (numerator, denominator) = (hit(&sl.numerator), hit(&sl.denominator));
            if numerator || denominator {
                hits.push(ServiceHit {
                    level,
                    numerator,
                    denominator,
                });
            }
        }
        hits
    }

    /// Applies one event (ledger order) to the outcomes it touches.
    pub fn apply(&self, event: &BillingEvent, slots: &mut dyn OutcomeSlots) {
        self.apply_bound(event, &mut None, slots);
    }

    /// [`apply`](Self::apply) with an event scope the caller may already
    /// have bound (the projector shares it with the service-level rules).
    fn apply_bound(
        &self,
        event: &BillingEvent,
        scope: &mut Option<Scope>,
        slots: &mut dyn OutcomeSlots,
    ) {
        if is_dispute(event) {
            if let Some(record) = Record::of(event) {
                self.record_dispute(slots, event, record);
            }
            return;
        }
        for (kind, rule) in self.contract.outcomes.iter().enumerate() {
            let Some(subject) = self.subject_for(rule, event, scope) else {
                continue;
            };
            let scope = self.bind(event, scope);
            if let Some(outcome) = slots.slot(kind, &subject) {
                if outcome.void.is_none()
                    && event.sequence > outcome.created.sequence
                    && rule
                        .void_when
                        .as_ref()
                        .is_some_and(|v| v.may_match(&event.event_type) && v.holds(scope))
                {
                    outcome.void = Some(Box::new(Mark::of(event)));
                }
                continue;
            }
            if !rule.when.may_match(&event.event_type) || !rule.when.holds(scope) {
                continue;
            }
            let value = match &rule.price {
                Price::Percent {
                    of: PercentOf::Expression(expr),
                    ..
                } => Some(expr.decimal(scope)),
                _ => rule.value.as_ref().map(|v| v.decimal(scope)),
            };
            let (value, value_error) = match value {
                None => (None, None),
                Some(Ok(v)) => (Some(v), None),
                Some(Err(e)) => (Some(Decimal::ZERO), Some(format!("value {e}").into())),
            };
            slots.create(Outcome {
                id: outcome_id(self.customer, &rule.name, &subject),
                kind,
                subject,
                created: Mark::of(event),
                matures_at: event.time + rule.matures_after,
                value,
                value_error,
                void: None,
                disputes: Vec::new(),
            });
        }
    }

    fn record_dispute(&self, slots: &mut dyn OutcomeSlots, event: &BillingEvent, record: Record) {
        let contract = self.contract;
        let Some((name, subject)) = disputed(&record) else {
            return;
        };
        let Some(kind) = contract.outcome_index(name) else {
            return;
        };
        let Some(outcome) = slots.slot(kind, subject) else {
            return;
        };
        debug_assert_eq!(
            outcome.id,
            outcome_id(self.customer, name, &outcome.subject)
        );
        let window_end = dispute_window_end(contract, outcome);
        let created = outcome.created.sequence;
        let open = outcome.disputes.last_mut().filter(|d| d.decision.is_none());
        match (record, open) {
            (Record::DisputeOpened(o), None)
                if event.time <= window_end && event.sequence > created =>
            {
                outcome.disputes.push(Dispute {
                    opened: Mark::of(event),
                    reason: o.reason,
                    decision: None,
                });
            }
            (Record::DisputeAccepted(d), Some(open)) => {
                open.decision = Some((Decision::Accepted, Mark::of(event), d.note))
            }
            (Record::DisputeRejected(d), Some(open)) => {
                open.decision = Some((Decision::Rejected, Mark::of(event), d.note))
            }
            _ => {}
        }
    }
}

/// Whether `event` is of a dispute step's type from Payoff (well formed or not).
fn is_dispute(event: &BillingEvent) -> bool {
    event.source == PAYOFF_SOURCE
        && matches!(
            event.event_type.as_str(),
            DISPUTE_OPENED | DISPUTE_ACCEPTED | DISPUTE_REJECTED
        )
}

/// The (outcome kind's name, subject) a dispute step is about.
fn disputed(record: &Record) -> Option<(&str, &str)> {
    match record {
        Record::DisputeOpened(d) => Some((&d.outcome, &d.subject)),
        Record::DisputeAccepted(d) | Record::DisputeRejected(d) => Some((&d.outcome, &d.subject)),
        _ => None,
    }
}

/// The last moment `outcome` may be disputed under `contract` (the version
/// that governs it): `dispute_within` after the end of the period it
/// matures in. The one place this rule lives; the API asks it too.
pub fn dispute_window_end(contract: &Contract, outcome: &Outcome) -> DateTime<Utc> {
    Period::containing(contract.cadence, outcome.matures_at).end + contract.dispute_within
}

/// A projection being built, one event at a time, so that a close can
/// stream the ledger instead of holding it in memory.
pub struct Projector<'c> {
    rules: OutcomeRules<'c>,
    until: DateTime<Utc>,
    service_period: Option<Period>,
    /// False when the outcomes come from elsewhere (a read model): the
    /// projector then only counts service levels and records assignments
    /// and releases.
    outcomes: bool,
    /// False once the service counts were given (kept by a read model).
    count_service: bool,
    projection: Projection,
}

impl<'c> Projector<'c> {
    pub fn new(
        customer: &'c str,
        contract: &'c Contract,
        until: DateTime<Utc>,
        service_period: Option<Period>,
    ) -> Projector<'c> {
        Projector {
            rules: OutcomeRules::new(customer, contract),
            until,
            service_period,
            outcomes: true,
            count_service: true,
            projection: Projection {
                service_counts: vec![ServiceCounts::default(); contract.service_levels.len()],
                by_subject: vec![SubjectIndex::default(); contract.outcomes.len()],
                ..Projection::default()
            },
        }
    }

    /// A projector of everything but the outcomes, which the caller
    /// supplies ([`Projector::take`]).
    pub fn side(
        customer: &'c str,
        contract: &'c Contract,
        until: DateTime<Utc>,
        service_period: Option<Period>,
    ) -> Projector<'c> {
        Projector {
            outcomes: false,
            ..Projector::new(customer, contract, until, service_period)
        }
    }

    /// The service levels' counts of its period, kept by a read model:
    /// events then no longer count in them.
    pub fn given_service_counts(&mut self, counts: Vec<ServiceCounts>) {
        assert_eq!(
            counts.len(),
            self.projection.service_counts.len(),
            "one count per service level"
        );
        self.projection.service_counts = counts;
        self.count_service = false;
    }

    /// Takes the next event in ledger order.
    pub fn feed(&mut self, event: &BillingEvent) {
        let p = &mut self.projection;
        if event.time >= self.until {
            return;
        }
        p.events_seen += 1;
        if event.source == PAYOFF_SOURCE
            && matches!(event.event_type.as_str(), ASSIGNMENT | RELEASE)
        {
            // A malformed one counts for nothing.
            match Record::of(event) {
                Some(Record::Release(r)) => {
                    p.releases.insert((r.experiment, r.period));
                }
                Some(Record::Assignment(a)) => p.assign(
                    &a.experiment,
                    &a.subject,
                    Assignment {
                        control: a.arm == Arm::Control,
                        at: event.time,
                    },
                ),
                _ => {}
            }
            return;
        }
        let mut scope: Option<Scope> = None;
        if self.count_service
            && self
                .service_period
                .is_some_and(|sp| sp.contains(event.time))
        {
            for hit in self.rules.service_hits_bound(event, &mut scope) {
                let counts = &mut p.service_counts[hit.level];
                counts.numerator += u64::from(hit.numerator);
                counts.denominator += u64::from(hit.denominator);
            }
        }
        if self.outcomes {
            self.rules.apply_bound(event, &mut scope, p);
        }
    }

    pub fn finish(self) -> Projection {
        self.projection
    }
}

/// A [`Projector::side`] takes the outcomes a replay would have made, in
/// the order it makes them (ledger order). They come one per kind and
/// subject (the store's key), so no index by subject is built: nothing
/// looks an outcome up in a finished projection.
impl crate::statement::OutcomeSink for Projector<'_> {
    fn reserve(&mut self, additional: usize) {
        self.projection.outcomes.reserve(additional);
    }

    fn take(&mut self, outcome: Outcome) {
        debug_assert!(!self.outcomes, "only a side projector takes outcomes");
        self.projection.outcomes.push(outcome);
    }
}
