//! Statements: one period of one customer, closed into lines that each
//! name the outcomes behind them.
//!
//! [`compute`] is a pure function of the contract versions, the ledger up
//! to a head, the earlier statements and the issue time. The provider runs
//! it to close a period; the customer runs it again (`payoff verify`) to
//! check the provider's arithmetic byte for byte.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contract::{Attribution, Bound, Contract, Credit, Price, TierMode, TypeFilter};
use crate::holdout::{holdout_lines, AttributionFigures};
use crate::period::Period;
use crate::projection::{DisputeState, Outcome, Projection, Projector, ServiceCounts};
use crate::BillingEvent;

/// One contract version and the first period it governs.
#[derive(Debug, Clone, Copy)]
pub struct ContractVersion<'a> {
    pub version: u32,
    pub effective: Period,
    pub contract: &'a Contract,
}

/// The ledger head a statement was cut at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeadRef {
    pub sequence: u64,
    /// Hex chain hash after the event at `sequence`.
    pub hash: String,
}

/// The contract version that priced a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContractRef {
    pub version: u32,
    /// Hex SHA-256 of the contract's TOML.
    pub sha256: String,
}

/// One line of a statement. Amounts, prices and quantities are exact
/// decimals written as text (`"100.90"`, never a JSON number a reader
/// could round); an amount has exactly its currency's minor digits
/// ([`crate::Currency::amount`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    /// The outcome kind, for outcome, tier, adjustment and credit lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub service_level: Option<String>,
    /// The earlier period an adjustment or credit concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub period: Option<String>,
    /// The contract version that priced an adjustment or credit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub contract_version: Option<u32>,
    /// Negative for credits that take outcomes back; a decimal for a
    /// value billed by lift.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub quantity: Decimal,
    /// Units included before any is billed: a count written as text (`"50"`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "count_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9]+$"))]
    pub included: Option<u64>,
    /// Normalised (`2.5`, not `2.50`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub unit_price: Option<Decimal>,
    /// Exactly the currency's minor digits (`"100.90"`).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub amount: Decimal,
    /// The outcomes behind the line, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<String>,
    /// SHA-256 of the sorted outcome ids joined by newlines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub outcomes_hash: Option<String>,
    /// For outcomes billed by holdout lift: how the lift was estimated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub attribution: Option<AttributionFigures>,
}

/// What a statement line bills or takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    BaseFee,
    Outcome,
    Tier,
    Cap,
    ServiceCredit,
    Minimum,
    Adjustment,
    DisputeCredit,
}

/// The provider's Ed25519 signature over the statement's canonical bytes
/// (the statement without this field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Signature {
    /// `ed25519`.
    pub algorithm: String,
    /// The key's id in the provider's keys document ([`crate::key_id`]);
    /// absent from statements signed before ids were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub key_id: Option<String>,
    /// Hex of the 32-byte public key.
    pub public_key: String,
    /// Base64 of the 64-byte signature.
    pub value: String,
}

/// One period of one customer, priced line by line; signed once closed.
/// Decimals are text, times RFC 3339 in UTC to the second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Statement {
    pub id: String,
    pub customer: String,
    /// e.g. `2026-11` or `2026-W45`.
    pub period: String,
    /// The period's first instant (`2026-11-01T00:00:00Z`).
    #[serde(with = "utc_seconds")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub period_start: DateTime<Utc>,
    /// The instant after the period (half-open).
    #[serde(with = "utc_seconds")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub period_end: DateTime<Utc>,
    pub contract: ContractRef,
    /// ISO 4217 code.
    pub currency: String,
    /// The contract's rounding rule: `half_even`, `half_up`, `down` or `up`.
    pub rounding: String,
    pub lines: Vec<Line>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub subtotal: Decimal,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub total: Decimal,
    pub ledger_head: HeadRef,
    /// Ids of the earlier statements this one builds on.
    pub depends_on: Vec<String>,
    /// To the second.
    #[serde(with = "utc_seconds")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub issued_at: DateTime<Utc>,
    /// The provider's signature; absent from a preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub signature: Option<Signature>,
}

/// A customer's events up to a head, replayable in ledger order.
///
/// `wants` says, from an event's type alone, whether the close needs it:
/// a source reading from storage can skip parsing the others, and may read
/// on another thread (the filter is plain data).
pub trait EventSource {
    fn replay(&self, wants: &TypeFilter, sink: &mut dyn FnMut(&BillingEvent))
        -> Result<(), String>;
}

impl EventSource for [BillingEvent] {
    fn replay(
        &self,
        wants: &TypeFilter,
        sink: &mut dyn FnMut(&BillingEvent),
    ) -> Result<(), String> {
        for e in self.iter().filter(|e| wants.wants(&e.event_type)) {
            sink(e);
        }
        Ok(())
    }
}

impl EventSource for Vec<BillingEvent> {
    fn replay(
        &self,
        wants: &TypeFilter,
        sink: &mut dyn FnMut(&BillingEvent),
    ) -> Result<(), String> {
        self.as_slice().replay(wants, sink)
    }
}

/// Everything a close depends on.
pub struct CloseInput<'a> {
    pub customer: &'a str,
    pub period: Period,
    /// Every version, in the order they take effect.
    pub versions: &'a [ContractVersion<'a>],
    /// The customer's events up to the head, in ledger order.
    pub events: &'a dyn EventSource,
    pub head: HeadRef,
    /// Every earlier statement of the customer, in period order.
    pub prior: &'a [Earlier<'a>],
    pub issued_at: DateTime<Utc>,
    /// Outcomes a store keeps as events land, up to the same head: when
    /// it can give every version's, the close reads only the events the
    /// outcomes do not hold (service levels, holdout arms), if any.
    pub kept: Option<&'a dyn KeptOutcomes>,
}

/// Outcomes kept up to date as events land (the read model), standing in
/// for the outcome part of the replay. What it gives must be exactly what
/// [`Projector`] makes of the same events cut at `cut`: the close's bytes
/// do not depend on where the outcomes came from, and a test closes every
/// corpus case both ways.
pub trait KeptOutcomes {
    /// Hands `sink` the outcomes of contract `version`, as a replay of the
    /// events before `cut` leaves them, in the order it creates them, one
    /// per kind and subject; only those that mature in `matures` (`[from,
    /// until)`, `until` at most `cut`) are needed. Returns `false`, before
    /// handing any, when the store cannot vouch for them (the close then
    /// replays). The marks' `event_id`s may be left empty: nothing a close
    /// computes reads them (a million of them were a million allocations).
    fn outcomes(
        &self,
        version: u32,
        matures: (DateTime<Utc>, DateTime<Utc>),
        cut: DateTime<Utc>,
        sink: &mut dyn OutcomeSink,
    ) -> Result<bool, String>;

    /// Whether no outcome of contract `version` maturing in `matures` was
    /// touched by an event after ledger sequence `since.0` or dated at or
    /// after `since.1`: the last statement, cut at `since.1` over the
    /// ledger up to `since.0`, then saw them as they are, so its billing of
    /// their period stands and the close need not read them. `false` when
    /// the store cannot vouch (the period is then re-priced in full).
    fn untouched_since(
        &self,
        version: u32,
        matures: (DateTime<Utc>, DateTime<Utc>),
        since: (u64, DateTime<Utc>),
    ) -> Result<bool, String>;

    /// The counts of each of `levels` service levels of contract `version`
    /// over the events of `period` (named as statements name it), as a
    /// replay counts them; `None` when the store cannot vouch for them (the
    /// close then reads the service levels' events).
    fn service_counts(
        &self,
        version: u32,
        period: &str,
        levels: usize,
    ) -> Result<Option<Vec<ServiceCounts>>, String>;
}

/// Where kept outcomes go: a close's side projector, or a plain list.
pub trait OutcomeSink {
    /// At most this many more are coming: room is made once, rather than
    /// by doubling (and copying) a vector of a million outcomes.
    fn reserve(&mut self, additional: usize);
    fn take(&mut self, outcome: Outcome);
}

impl OutcomeSink for Vec<Outcome> {
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }

    fn take(&mut self, outcome: Outcome) {
        self.push(outcome);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    #[error("no contract version governs period {0}")]
    NoContract(String),
    #[error("period {missing} is not closed yet: close periods in order")]
    OutOfOrder { missing: String },
    #[error("period {0} is already closed")]
    AlreadyClosed(String),
    #[error("an earlier statement is unreadable: {0}")]
    BadPrior(String),
    #[error("reading the events failed: {0}")]
    Events(String),
    /// A production assertion failed: the close stops rather than sign a
    /// statement that contradicts itself.
    #[error("invariant broken, nothing closed: {0}")]
    Invariant(String),
}

/// The stable id of the statement of `customer` for `period`:
/// `st.<customer>.<period>`, so closing twice names the same statement.
pub fn statement_id(customer: &str, period: &str) -> String {
    format!("st.{customer}.{period}")
}

/// The version that governs `period`: the last one effective at its start.
pub fn version_for<'a>(
    versions: &'a [ContractVersion<'a>],
    period: Period,
) -> Option<&'a ContractVersion<'a>> {
    versions
        .iter()
        .filter(|v| v.effective.start <= period.start && v.contract.starts.start <= period.start)
        .max_by_key(|v| (v.effective.start, v.version))
}

/// A time as statements print it: RFC 3339 in UTC, whole seconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A statement's times: RFC 3339 in UTC to the second (`2026-11-01T00:00:00Z`),
/// as every statement has printed them; a fraction is dropped on writing.
mod utc_seconds {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.to_utc())
            .map_err(|e| {
                serde::de::Error::custom(format!("\"{text}\" is not an RFC 3339 time: {e}"))
            })
    }
}

/// A count written as text (`"50"`), as statements have always written
/// included units.
mod count_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match n {
            Some(n) => s.serialize_str(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| {
                t.parse()
                    .map_err(|_| serde::de::Error::custom(format!("\"{t}\" is not a count")))
            })
            .transpose()
    }
}

/// SHA-256 of the ids joined by newlines, fed to the hash one id at a
/// time: a line of a million ids is not copied into one string first.
fn hash_ids(ids: &[String]) -> String {
    let mut h = Sha256::new();
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(id.as_bytes());
    }
    hex::encode(h.finalize())
}

/// An earlier statement as a close reads it: its identity and where it was
/// cut always, its lines only when the close needs them. Each statement
/// names every outcome it billed (a million in a large month), so a close
/// or preview that held every earlier statement would grow with the
/// customer's history; this way it holds one at a time, and none when
/// nothing it closes could have been billed before.
pub struct Earlier<'a> {
    pub id: String,
    pub period: String,
    pub period_end: DateTime<Utc>,
    /// The ledger sequence it was cut at.
    pub head: u64,
    pub lines: EarlierLines<'a>,
}

/// Where an earlier statement's lines come from.
pub enum EarlierLines<'a> {
    /// At hand: a statement in memory (a bundle's, a previewed one).
    Here(&'a [Line]),
    /// Read when needed, e.g. from the database, one statement at a time.
    Later(Box<dyn Fn() -> Result<Vec<Line>, String> + 'a>),
}

impl<'a> Earlier<'a> {
    /// A statement at hand.
    pub fn of(s: &'a Statement) -> Result<Earlier<'a>, CloseError> {
        Ok(Earlier {
            id: s.id.clone(),
            period: s.period.clone(),
            period_end: s.period_end,
            head: s.ledger_head.sequence,
            lines: EarlierLines::Here(&s.lines),
        })
    }

    /// Statements at hand, in the order given.
    pub fn all(statements: &'a [Statement]) -> Result<Vec<Earlier<'a>>, CloseError> {
        statements.iter().map(Earlier::of).collect()
    }

    fn with_lines<T>(&self, f: impl FnOnce(&[Line]) -> T) -> Result<T, CloseError> {
        match &self.lines {
            EarlierLines::Here(lines) => Ok(f(lines)),
            EarlierLines::Later(read) => {
                let lines =
                    read().map_err(|e| CloseError::BadPrior(format!("{}: {e}", self.id)))?;
                Ok(f(&lines))
            }
        }
    }
}

/// What earlier statements billed, as far as one close needs it: the
/// outcomes still billed for each re-priced (period, kind), and which of
/// the outcomes it may bill were ever billed before.
#[derive(Default)]
struct Billed {
    sets: BTreeMap<(String, String), BTreeSet<String>>,
    ever: HashSet<String>,
}

impl Billed {
    /// Reads the earlier statements in order, one at a time, keeping only
    /// the sets of `periods` and the ids among `candidates`; a statement
    /// that can hold neither is not read at all (lines about a period are
    /// only in its own statement and later ones). Any statement may hold a
    /// candidate: which event creates an outcome, and so when it matures,
    /// depends on the cut when events arrive out of time order (the
    /// properties test found one billed twice when that was assumed away).
    fn read(
        prior: &[Earlier],
        periods: &[Period],
        candidates: &HashSet<&str>,
    ) -> Result<Billed, CloseError> {
        let mut b = Billed::default();
        let names: BTreeSet<String> = periods.iter().map(Period::to_string).collect();
        let first = periods.iter().map(|p| p.start).min();
        for s in prior {
            let about_repriced = first.is_some_and(|start| s.period_end > start);
            if about_repriced || !candidates.is_empty() {
                s.with_lines(|lines| b.apply(s, lines, &names, candidates))??;
            }
        }
        Ok(b)
    }

    fn apply(
        &mut self,
        s: &Earlier,
        lines: &[Line],
        periods: &BTreeSet<String>,
        candidates: &HashSet<&str>,
    ) -> Result<(), CloseError> {
        for line in lines {
            let Some(kind) = &line.outcome else { continue };
            let period = line.period.as_ref().unwrap_or(&s.period);
            let mut set = periods
                .contains(period)
                .then(|| self.sets.entry((period.clone(), kind.clone())).or_default());
            let taking_back = line.quantity.is_sign_negative();
            match line.kind {
                LineKind::Outcome | LineKind::Tier | LineKind::Adjustment if !taking_back => {
                    for id in &line.outcomes {
                        if let Some(set) = set.as_mut() {
                            set.insert(id.clone());
                        }
                        if candidates.contains(id.as_str()) {
                            self.ever.insert(id.clone());
                        }
                    }
                }
                LineKind::Adjustment | LineKind::DisputeCredit => {
                    if let Some(set) = set.as_mut() {
                        for id in &line.outcomes {
                            set.remove(id);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn of(&self, period: &str, kind: &str) -> BTreeSet<String> {
        self.sets
            .get(&(period.to_string(), kind.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

/// The charge of one kind in one period.
struct KindCharge {
    lines: Vec<Line>,
    amount: Decimal,
}

/// Prices the outcomes billed in one period, per kind (in contract order),
/// each kind's outcomes sorted by (maturity, id).
fn price_period(contract: &Contract, billed: &[Vec<&Outcome>]) -> Vec<KindCharge> {
    // Included units: kinds with their own allowance use it; the others
    // share the contract-wide pool in order of maturity.
    let mut included = vec![0u64; contract.outcomes.len()];
    let mut pooled: Vec<&Outcome> = Vec::new();
    for (kind, rule) in contract.outcomes.iter().enumerate() {
        match rule.included {
            Some(own) => included[kind] = own.min(billed[kind].len() as u64),
            None => pooled.extend(billed[kind].iter().copied()),
        }
    }
    // Unstable sorts throughout: ids are unique, so no two keys tie.
    pooled.sort_unstable_by(|a, b| (a.matures_at, &a.id).cmp(&(b.matures_at, &b.id)));
    for o in pooled.iter().take(contract.included.unwrap_or(0) as usize) {
        included[o.kind] += 1;
    }
    let currency = contract.currency;
    let round = |d: Decimal| contract.rounding.round(d, currency);
    let fmt = |d: Decimal| currency.amount(d);
    contract
        .outcomes
        .iter()
        .enumerate()
        .map(|(kind, rule)| {
            let outcomes = &billed[kind];
            let n = outcomes.len() as u64;
            let free = included[kind];
            // Sorted as borrowed text, then copied in order: a million
            // 16-byte references move faster than a million strings.
            let ids = |slice: &[&Outcome]| {
                let mut v: Vec<&str> = slice.iter().map(|o| o.id.as_str()).collect();
                v.sort_unstable();
                v.into_iter().map(str::to_owned).collect::<Vec<String>>()
            };
            let line = |kind_: LineKind,
                        description: String,
                        quantity: u64,
                        included: Option<u64>,
                        unit_price: Option<Decimal>,
                        amount: Decimal,
                        members: &[&Outcome]| {
                let outcomes = ids(members);
                Line {
                    kind: kind_,
                    description,
                    outcome: Some(rule.name.clone()),
                    service_level: None,
                    period: None,
                    contract_version: None,
                    quantity: Decimal::from(quantity),
                    included,
                    unit_price: unit_price.map(|p| p.normalize()),
                    amount: fmt(amount),
                    outcomes_hash: Some(hash_ids(&outcomes)),
                    outcomes,
                    attribution: None,
                }
            };
            let mut lines = Vec::new();
            if n == 0 {
                return KindCharge {
                    lines,
                    amount: Decimal::ZERO,
                };
            }
            let chargeable = &outcomes[free as usize..];
            let units = chargeable.len() as u64;
            match &rule.price {
                Price::PerUnit(p) => {
                    let amount = round(Decimal::from(units) * p);
                    lines.push(line(
                        LineKind::Outcome,
                        format!(
                            "{}: {n} outcomes, {free} included, {units} at {}",
                            rule.name,
                            p.normalize()
                        ),
                        n,
                        Some(free),
                        Some(*p),
                        amount,
                        outcomes,
                    ));
                }
                Price::Percent { rate, .. } => {
                    let base: Decimal = chargeable.iter().filter_map(|o| o.value).sum();
                    let amount = round(base * rate);
                    lines.push(line(
                        LineKind::Outcome,
                        format!(
                            "{}: {n} outcomes, {free} included, {} of {}",
                            rule.name,
                            rate.normalize(),
                            base.normalize()
                        ),
                        n,
                        Some(free),
                        Some(*rate),
                        amount,
                        outcomes,
                    ));
                }
                Price::Tiers { mode, tiers } => {
                    if free > 0 {
                        lines.push(line(
                            LineKind::Outcome,
                            format!("{}: {free} outcomes included", rule.name),
                            free,
                            Some(free),
                            None,
                            Decimal::ZERO,
                            &outcomes[..free as usize],
                        ));
                    }
                    let mut floor = 0u64;
                    for tier in tiers {
                        let ceiling = tier.up_to.unwrap_or(u64::MAX);
                        match mode {
                            TierMode::Graduated => {
                                let from = floor.min(units);
                                let to = ceiling.min(units);
                                if to > from {
                                    let members = &chargeable[from as usize..to as usize];
                                    lines.push(line(
                                        LineKind::Tier,
                                        tier_name(&rule.name, floor, tier.up_to, tier.price),
                                        to - from,
                                        None,
                                        Some(tier.price),
                                        round(Decimal::from(to - from) * tier.price),
                                        members,
                                    ));
                                }
                            }
                            TierMode::Volume => {
                                if units > floor && units <= ceiling {
                                    lines.push(line(
                                        LineKind::Tier,
                                        tier_name(&rule.name, floor, tier.up_to, tier.price),
                                        units,
                                        None,
                                        Some(tier.price),
                                        round(Decimal::from(units) * tier.price),
                                        chargeable,
                                    ));
                                }
                            }
                        }
                        floor = ceiling;
                    }
                }
            }
            let amount = lines.iter().map(|l| l.amount).sum();
            KindCharge { lines, amount }
        })
        .collect()
}

fn tier_name(kind: &str, floor: u64, up_to: Option<u64>, price: Decimal) -> String {
    match up_to {
        Some(u) => format!("{kind}: units {}-{u} at {}", floor + 1, price.normalize()),
        None => format!("{kind}: units from {} at {}", floor + 1, price.normalize()),
    }
}

fn capped(contract: &Contract, total: Decimal) -> Decimal {
    contract.cap.map_or(total, |cap| total.min(cap))
}

/// Is this outcome billable as of `t` (ignoring whether it was billed)?
fn billable_at(o: &Outcome, t: DateTime<Utc>) -> bool {
    o.matures_at < t
        && !o.voided_while_pending()
        && o.void_before(t).is_none()
        && matches!(
            o.dispute_state(t),
            DisputeState::None | DisputeState::Rejected
        )
}

fn direct(contract: &Contract, o: &Outcome) -> bool {
    contract.outcomes[o.kind].attribution == Attribution::Direct
}

/// Every period before `period`, from the first one any version governs,
/// in order: what a close of `period` builds on (each must be closed), and
/// what a preview of it assumes closed as previewed where one is not.
pub fn periods_before(versions: &[ContractVersion<'_>], period: Period) -> Vec<Period> {
    let Some(first_start) = versions
        .iter()
        .map(|v| v.contract.starts.start.max(v.effective.start))
        .min()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut p = Period::containing(period.cadence(), first_start);
    while p.start < period.start {
        out.push(p);
        p = p.next();
    }
    out
}

/// What a close reads of one contract version.
struct Needed<'a> {
    contract: &'a Contract,
    /// The period whose service levels it counts (the closed one's).
    service: Option<Period>,
    /// The maturities of the outcomes it prices: `[from, until)`.
    matures: (DateTime<Utc>, DateTime<Utc>),
}

/// The ledger head and the cut of the latest earlier statement, the one
/// that re-priced every period before it; `None` before the first.
fn last_statement(prior: &[Earlier]) -> Option<(u64, DateTime<Utc>)> {
    prior
        .iter()
        .max_by_key(|s| s.period_end)
        .map(|last| (last.head, last.period_end))
}

/// Closes (or previews) one period.
pub fn compute(input: &CloseInput) -> Result<Statement, CloseError> {
    close(input, false).map(|(statement, _)| statement)
}

/// The outcomes of a period: those that matured in it and were not
/// voided, billed or not. Costs are attributed to them (cost per outcome
/// kind), so a close keeps them beside its statement. Each kind's
/// subjects are one JSON array of text, in the projection's order: a
/// million outcomes are then a few megabytes to hold and one row per kind
/// to store, where a million pairs of strings took about 100 MB and a
/// million rows took seconds to insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodOutcomes {
    /// (kind name, JSON array of its subjects), in contract order; a kind
    /// without outcomes is absent.
    pub kinds: Vec<(String, String)>,
}

/// One subject of a [`PeriodOutcomes`] array, borrowed from its text
/// unless it had escapes to undo.
#[derive(Deserialize)]
struct Subject<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

impl PeriodOutcomes {
    /// Every outcome as (kind name, subject); `Err` names a kind whose
    /// array does not parse (damaged stored data).
    pub fn pairs(&self) -> Result<Vec<(&str, std::borrow::Cow<'_, str>)>, String> {
        let mut pairs = Vec::new();
        for (kind, subjects) in &self.kinds {
            let list: Vec<Subject> = serde_json::from_str(subjects)
                .map_err(|e| format!("the subjects of outcome kind {kind}: {e}"))?;
            pairs.extend(list.into_iter().map(|s| (kind.as_str(), s.0)));
        }
        Ok(pairs)
    }
}

/// [`compute`], also returning the [`PeriodOutcomes`] of the projection it
/// closed from, so that a store can keep them without a second pass.
pub fn compute_with_outcomes(
    input: &CloseInput,
) -> Result<(Statement, PeriodOutcomes), CloseError> {
    close(input, true)
}

/// [`compute`], with the period's outcomes listed only when `keep` (a
/// million of them cost a pass and their strings; a preview of an earlier
/// period or a recomputation throws them away).
fn close(input: &CloseInput, keep: bool) -> Result<(Statement, PeriodOutcomes), CloseError> {
    let period = input.period;
    let current = version_for(input.versions, period)
        .ok_or_else(|| CloseError::NoContract(period.to_string()))?;
    let contract = current.contract;

    // Earlier statements must be exactly the periods since the start.
    let closed: BTreeSet<&str> = input.prior.iter().map(|s| s.period.as_str()).collect();
    if closed.contains(period.to_string().as_str()) {
        return Err(CloseError::AlreadyClosed(period.to_string()));
    }
    let earlier = periods_before(input.versions, period);
    if let Some(p) = earlier
        .iter()
        .find(|p| !closed.contains(p.to_string().as_str()))
    {
        return Err(CloseError::OutOfOrder {
            missing: p.to_string(),
        });
    }
    let cut = period.end;

    // The earlier periods to re-price: those whose outcomes an event
    // touched since the last statement, which re-priced every period
    // before it (all of them when the store cannot tell).
    let since = last_statement(input.prior);
    let mut reprice: Vec<(Period, &ContractVersion)> = Vec::new();
    for p in &earlier {
        let Some(v) = version_for(input.versions, *p) else {
            continue;
        };
        let stands = match (input.kept, since) {
            (Some(k), Some(since)) => k
                .untouched_since(v.version, (p.start, p.end), since)
                .map_err(CloseError::Events)?,
            _ => false,
        };
        if !stands {
            reprice.push((*p, v));
        }
    }

    // The versions this close needs: the period's, and each re-priced
    // period's. One pass over the ledger feeds them all; with outcomes
    // kept, only what they do not hold is read.
    // Each version with the maturities it is read for.
    let mut needed: BTreeMap<u32, Needed> = BTreeMap::new();
    needed.insert(
        current.version,
        Needed {
            contract,
            service: Some(period),
            matures: (period.start, cut),
        },
    );
    for (p, v) in &reprice {
        let e = needed.entry(v.version).or_insert(Needed {
            contract: v.contract,
            service: None,
            matures: (p.start, p.end),
        });
        e.matures = (e.matures.0.min(p.start), e.matures.1.max(p.end));
    }
    let contracts: Vec<&Contract> = needed.values().map(|n| n.contract).collect();
    let replayers = || -> BTreeMap<u32, Projector> {
        needed
            .iter()
            .map(|(&v, n)| {
                (
                    v,
                    Projector::new(input.customer, n.contract, cut, n.service),
                )
            })
            .collect()
    };
    // The outcomes streamed from the store straight into side projectors
    // (no second copy of a million outcomes); the replay's projectors if
    // the store cannot vouch for every version.
    let kept = match input.kept {
        Some(k) => {
            let mut side: BTreeMap<u32, Projector> = needed
                .iter()
                .map(|(&v, n)| {
                    (
                        v,
                        Projector::side(input.customer, n.contract, cut, n.service),
                    )
                })
                .collect();
            let mut vouched = true;
            for (&v, n) in &needed {
                let p = side.get_mut(&v).expect("one per version");
                vouched = k
                    .outcomes(v, n.matures, cut, p)
                    .map_err(CloseError::Events)?;
                if !vouched {
                    break;
                }
            }
            // The period's service counts, when the store keeps them too.
            let levels = contract.service_levels.len();
            let mut counted = levels == 0;
            if vouched && !counted {
                if let Some(counts) = k
                    .service_counts(current.version, &period.to_string(), levels)
                    .map_err(CloseError::Events)?
                {
                    side.get_mut(&current.version)
                        .expect("one per version")
                        .given_service_counts(counts);
                    counted = true;
                }
            }
            vouched.then_some((side, counted))
        }
        None => None,
    };
    let (kept, filter) = match kept {
        Some((side, counted)) => (Some(side), TypeFilter::side(&contracts, !counted)),
        None => (None, Some(TypeFilter::of(&contracts))),
    };
    let mut projectors = kept.unwrap_or_else(replayers);
    if let Some(filter) = filter {
        input
            .events
            .replay(&filter, &mut |e: &BillingEvent| {
                for p in projectors.values_mut() {
                    p.feed(e);
                }
            })
            .map_err(CloseError::Events)?;
    }
    let projections: BTreeMap<u32, Projection> = projectors
        .into_iter()
        .map(|(v, p)| (v, p.finish()))
        .collect();

    let currency = contract.currency;
    let fmt = |d: Decimal| currency.amount(d);
    let round = |d: Decimal| contract.rounding.round(d, currency);
    let mut lines = Vec::new();
    let simple = |kind: LineKind, description: String, amount: Decimal| Line {
        kind,
        description,
        outcome: None,
        service_level: None,
        period: None,
        contract_version: None,
        quantity: Decimal::ONE,
        included: None,
        unit_price: None,
        amount: fmt(amount),
        outcomes: Vec::new(),
        outcomes_hash: None,
        attribution: None,
    };

    // 1. Base fee.
    if !contract.base_fee.is_zero() {
        let mut l = simple(LineKind::BaseFee, "base fee".into(), contract.base_fee);
        l.unit_price = Some(fmt(contract.base_fee));
        lines.push(l);
    }

    // What earlier statements billed: the sets of the re-priced periods,
    // and which of the outcomes this close may bill were billed before.
    let projection = &projections[&current.version];
    let billable = |c: &Contract, o: &Outcome, p: &Period| {
        p.contains(o.matures_at) && direct(c, o) && billable_at(o, cut)
    };
    let billed = {
        let mut candidates: HashSet<&str> = HashSet::new();
        if !input.prior.is_empty() {
            candidates.extend(
                projection
                    .outcomes
                    .iter()
                    .filter(|o| billable(contract, o, &period))
                    .map(|o| o.id.as_str()),
            );
            for (p, v) in &reprice {
                candidates.extend(
                    projections[&v.version]
                        .outcomes
                        .iter()
                        .filter(|o| billable(v.contract, o, p))
                        .map(|o| o.id.as_str()),
                );
            }
        }
        let periods: Vec<Period> = reprice.iter().map(|(p, _)| *p).collect();
        Billed::read(input.prior, &periods, &candidates)?
    };

    // 2. Outcomes maturing in this period.
    let mut own: Vec<Vec<&Outcome>> = vec![Vec::new(); contract.outcomes.len()];
    for o in &projection.outcomes {
        if billable(contract, o, &period) && !billed.ever.contains(&o.id) {
            own[o.kind].push(o);
        }
    }
    for list in &mut own {
        list.sort_unstable_by(|a, b| (a.matures_at, &a.id).cmp(&(b.matures_at, &b.id)));
    }
    let charges = price_period(contract, &own);
    let mut outcome_total: Decimal = charges.iter().map(|c| c.amount).sum();
    for c in charges {
        lines.extend(c.lines);
    }
    // Outcomes attributed by a holdout: the proven lift only.
    for line in holdout_lines(contract, projection, period) {
        outcome_total += line.amount;
        lines.push(line);
    }

    // 3. Cap.
    let after_cap = capped(contract, outcome_total);
    if after_cap < outcome_total {
        let cap = contract.cap.expect("capped");
        lines.push(simple(
            LineKind::Cap,
            format!("cap of {} on outcome charges", fmt(cap)),
            after_cap - outcome_total,
        ));
    }

    // 4. Service levels.
    let charged = contract.base_fee + after_cap;
    let mut service_total = Decimal::ZERO;
    for (sl, counts) in contract
        .service_levels
        .iter()
        .zip(&projection.service_counts)
    {
        if counts.denominator < sl.min_samples.max(1) {
            continue;
        }
        let ratio = Decimal::from(counts.numerator) / Decimal::from(counts.denominator);
        let missed = match sl.bound {
            Bound::AtLeast(b) => ratio < b,
            Bound::AtMost(b) => ratio > b,
        };
        if !missed {
            continue;
        }
        let (credit, how) = match sl.credit {
            Credit::Percent(p) => (
                round(charged * p),
                format!(
                    "{}% of {}",
                    (p * Decimal::ONE_HUNDRED).normalize(),
                    fmt(charged)
                ),
            ),
            Credit::Amount(a) => (a, fmt(a).to_string()),
        };
        let bound = match sl.bound {
            Bound::AtLeast(b) => format!("at least {}", b.normalize()),
            Bound::AtMost(b) => format!("at most {}", b.normalize()),
        };
        let mut l = simple(
            LineKind::ServiceCredit,
            format!(
                "{} missed: {}/{} against {bound}; credit {how}",
                sl.name, counts.numerator, counts.denominator
            ),
            -credit,
        );
        l.service_level = Some(sl.name.clone());
        service_total -= credit;
        lines.push(l);
    }
    let subtotal = charged + service_total;

    // 5. Minimum.
    if let Some(minimum) = contract.minimum {
        if subtotal < minimum {
            lines.push(simple(
                LineKind::Minimum,
                format!("minimum of {} per period", fmt(minimum)),
                minimum - subtotal,
            ));
        }
    }

    // 6-7. Earlier periods: late outcomes, clawbacks, accepted disputes.
    let mut credits = Vec::new();
    for (p, v) in &reprice {
        let c = v.contract;
        let proj = &projections[&v.version];
        let name = p.to_string();
        let by_id: HashMap<&str, &Outcome> =
            proj.outcomes.iter().map(|o| (o.id.as_str(), o)).collect();
        let set_of = |kind: usize| -> Vec<&Outcome> {
            billed
                .of(&name, &c.outcomes[kind].name)
                .iter()
                .filter_map(|id| by_id.get(id.as_str()).copied())
                .collect()
        };
        let stage0: Vec<Vec<&Outcome>> = (0..c.outcomes.len()).map(set_of).collect();
        let mut late: Vec<Vec<&Outcome>> = vec![Vec::new(); c.outcomes.len()];
        for o in &proj.outcomes {
            if billable(c, o, p) && !billed.ever.contains(&o.id) {
                late[o.kind].push(o);
            }
        }
        let stage1 = merge(&stage0, &late, true);
        let mut clawed: Vec<Vec<&Outcome>> = vec![Vec::new(); c.outcomes.len()];
        let mut accepted: Vec<Vec<&Outcome>> = vec![Vec::new(); c.outcomes.len()];
        for (kind, set) in stage0.iter().enumerate() {
            for o in set {
                let window = c.outcomes[kind].clawback_within;
                let clawback = match (o.void_before(cut), window) {
                    (Some(v), Some(w)) => v.time - o.matures_at <= w,
                    _ => false,
                };
                if clawback {
                    clawed[kind].push(o);
                } else if matches!(o.dispute_state(cut), DisputeState::Accepted(_)) {
                    accepted[kind].push(o);
                }
            }
        }
        let stage2 = merge(&stage1, &clawed, false);
        let stage3 = merge(&stage2, &accepted, false);
        let ctx = Restatement {
            contract: c,
            version: v.version,
            period: &name,
        };
        lines.extend(ctx.delta(
            &stage0,
            &stage1,
            &late,
            LineKind::Adjustment,
            "late outcomes",
        ));
        lines.extend(ctx.delta(
            &stage1,
            &stage2,
            &clawed,
            LineKind::Adjustment,
            "clawback of voided outcomes",
        ));
        credits.extend(ctx.delta(
            &stage2,
            &stage3,
            &accepted,
            LineKind::DisputeCredit,
            "disputes accepted",
        ));
    }
    lines.extend(credits);

    let total: Decimal = lines.iter().map(|l| l.amount).sum();
    check_subtotal(&lines, subtotal)?;
    let mut depends_on: Vec<String> = input.prior.iter().map(|s| s.id.clone()).collect();
    depends_on.sort();
    let outcomes = if keep {
        period_outcomes(contract, projection, period)
    } else {
        PeriodOutcomes::default()
    };
    let statement = Statement {
        id: statement_id(input.customer, &period.to_string()),
        customer: input.customer.to_string(),
        period: period.to_string(),
        period_start: period.start,
        period_end: period.end,
        contract: ContractRef {
            version: current.version,
            sha256: contract.sha256.clone(),
        },
        currency: currency.code.to_string(),
        rounding: contract.rounding.name().to_string(),
        lines,
        subtotal: fmt(subtotal),
        total: fmt(total),
        ledger_head: input.head.clone(),
        depends_on,
        issued_at: input.issued_at.trunc_subsecs(0),
        signature: None,
    };
    Ok((statement, outcomes))
}

/// Production assertion: the subtotal, computed from the charges as they
/// were priced, equals the sum of the printed lines it covers (base fee,
/// outcomes, tiers, cap, service credits). The two are reached by
/// different roads (exact decimals, then rounded and formatted lines), so
/// a pricing or formatting change that lets them drift stops the close
/// instead of issuing a statement whose lines do not add up.
fn check_subtotal(lines: &[Line], subtotal: Decimal) -> Result<(), CloseError> {
    let mut printed = Decimal::ZERO;
    for l in lines.iter().filter(|l| {
        matches!(
            l.kind,
            LineKind::BaseFee
                | LineKind::Outcome
                | LineKind::Tier
                | LineKind::Cap
                | LineKind::ServiceCredit
        )
    }) {
        printed += l.amount;
    }
    if printed != subtotal {
        return Err(CloseError::Invariant(format!(
            "the lines before the minimum add up to {printed}, the subtotal is {subtotal}"
        )));
    }
    Ok(())
}

/// The outcomes of `projection` (made under `contract`) that matured in
/// `period`, not voided.
pub fn period_outcomes(
    contract: &Contract,
    projection: &Projection,
    period: Period,
) -> PeriodOutcomes {
    let mut arrays: Vec<Vec<u8>> = vec![Vec::new(); contract.outcomes.len()];
    for o in projection
        .outcomes
        .iter()
        .filter(|o| period.contains(o.matures_at) && o.void.is_none())
    {
        let out = &mut arrays[o.kind];
        out.push(if out.is_empty() { b'[' } else { b',' });
        serde_json::to_writer(&mut *out, &o.subject).expect("text serialises");
    }
    PeriodOutcomes {
        kinds: contract
            .outcomes
            .iter()
            .zip(arrays)
            .filter(|(_, array)| !array.is_empty())
            .map(|(rule, mut array)| {
                array.push(b']');
                (
                    rule.name.clone(),
                    String::from_utf8(array).expect("JSON is UTF-8"),
                )
            })
            .collect(),
    }
}

/// Adds (or removes) `change` to every kind's list, keeping (maturity, id) order.
fn merge<'o>(
    base: &[Vec<&'o Outcome>],
    change: &[Vec<&'o Outcome>],
    add: bool,
) -> Vec<Vec<&'o Outcome>> {
    base.iter()
        .zip(change)
        .map(|(b, c)| {
            let mut out: Vec<&Outcome> = if add {
                b.iter().chain(c.iter()).copied().collect()
            } else {
                let gone: BTreeSet<&str> = c.iter().map(|o| o.id.as_str()).collect();
                b.iter()
                    .filter(|o| !gone.contains(o.id.as_str()))
                    .copied()
                    .collect()
            };
            out.sort_by(|a, b| (a.matures_at, &a.id).cmp(&(b.matures_at, &b.id)));
            out
        })
        .collect()
}

/// Re-prices an earlier period before and after a change.
struct Restatement<'a> {
    contract: &'a Contract,
    version: u32,
    period: &'a str,
}

impl Restatement<'_> {
    /// One line per kind whose outcomes changed: the difference of that
    /// kind's charge, with the change of the period's capped total shared
    /// out over the kinds in contract order so the lines add up to it.
    fn delta(
        &self,
        before: &[Vec<&Outcome>],
        after: &[Vec<&Outcome>],
        changed: &[Vec<&Outcome>],
        kind: LineKind,
        why: &str,
    ) -> Vec<Line> {
        if changed.iter().all(Vec::is_empty) {
            return Vec::new();
        }
        let c = self.contract;
        let old = price_period(c, before);
        let new = price_period(c, after);
        let old_total: Decimal = old.iter().map(|k| k.amount).sum();
        let new_total: Decimal = new.iter().map(|k| k.amount).sum();
        let mut remaining = capped(c, new_total) - capped(c, old_total);
        let mut lines = Vec::new();
        for (k, members) in changed.iter().enumerate() {
            if members.is_empty() {
                continue;
            }
            let raw = new[k].amount - old[k].amount;
            let amount = if raw >= Decimal::ZERO {
                raw.min(remaining.max(Decimal::ZERO))
            } else {
                raw.max(remaining.min(Decimal::ZERO))
            };
            remaining -= amount;
            let mut ids: Vec<String> = members.iter().map(|o| o.id.clone()).collect();
            ids.sort();
            let count = members.len() as i64;
            let quantity = if kind == LineKind::Adjustment && why == "late outcomes" {
                count
            } else {
                -count
            };
            lines.push(Line {
                kind,
                description: format!(
                    "{}: {why} of {} ({} outcomes)",
                    c.outcomes[k].name, self.period, count
                ),
                outcome: Some(c.outcomes[k].name.clone()),
                service_level: None,
                period: Some(self.period.to_string()),
                contract_version: Some(self.version),
                quantity: Decimal::from(quantity),
                included: None,
                unit_price: None,
                amount: c.currency.amount(amount),
                outcomes_hash: Some(hash_ids(&ids)),
                outcomes: ids,
                attribution: None,
            });
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subjects read back are those written, escapes undone, each
    /// under its kind.
    #[test]
    fn period_outcomes_give_back_every_kind_and_subject() {
        let kept = PeriodOutcomes {
            kinds: vec![
                ("resolved".into(), r#"["T-1","T \"2\"\n","é"]"#.into()),
                ("upsold".into(), r#"["T-1"]"#.into()),
            ],
        };
        let pairs: Vec<(&str, String)> = kept
            .pairs()
            .unwrap()
            .into_iter()
            .map(|(k, s)| (k, s.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("resolved", "T-1".to_string()),
                ("resolved", "T \"2\"\n".to_string()),
                ("resolved", "é".to_string()),
                ("upsold", "T-1".to_string()),
            ]
        );
        let damaged = PeriodOutcomes {
            kinds: vec![("resolved".into(), "[\"T-1\"".into())],
        };
        assert!(damaged
            .pairs()
            .unwrap_err()
            .contains("outcome kind resolved"));
    }
}
