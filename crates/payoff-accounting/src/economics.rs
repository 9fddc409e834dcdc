//! The shell of cost of service, budgets and ROI: reads a customer's
//! period from the store and runs the pure cost ledger over it.

use chrono::{DateTime, Utc};
use payoff_billing::{
    CostLedger, CostReport, EventSource, KeptOutcomes, Period, PeriodOutcomes, PriceTable, Prices,
    Projector, Statement, TypeFilter,
};
use payoff_store::{Budget, CostFact, Store, StoreError, StoredPriceTable};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

use crate::billing::{self, BillingError, StoredEvents, Versions};

/// The price tables in force: the stored versions, else the defaults.
pub fn prices(store: &Store) -> Result<Prices, BillingError> {
    let mut tables = vec![PriceTable::defaults()];
    for t in store.price_tables()? {
        let mut table = PriceTable::parse(&t.body)
            .map_err(|e| BillingError::Corrupt(format!("price table v{}: {e}", t.version)))?;
        table.effective = t.effective;
        tables.push(table);
    }
    Ok(Prices::new(tables))
}

/// Largest price table stored (LiteLLM's whole list is about 400 KiB).
pub const PRICE_TABLE_BYTES_MAX: usize = 1024 * 1024;

/// Why a price table was not stored.
#[derive(Debug, thiserror::Error)]
pub enum PricesError {
    #[error("price table: {0}")]
    Invalid(String),
    #[error("effective: {0} is in the past; a price table cannot re-price costs already incurred")]
    Past(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores a new version of the price table, for the API and the command
/// line alike. It may not take effect in the past (a minute's grace for
/// clocks), so costs already incurred are never re-priced.
pub fn store_prices(
    store: &Store,
    text: &str,
    now: DateTime<Utc>,
) -> Result<StoredPriceTable, PricesError> {
    if text.len() > PRICE_TABLE_BYTES_MAX {
        return Err(PricesError::Invalid(format!(
            "at most {PRICE_TABLE_BYTES_MAX} bytes"
        )));
    }
    let table = PriceTable::parse(text).map_err(PricesError::Invalid)?;
    if table.effective < now - chrono::Duration::minutes(1) {
        return Err(PricesError::Past(table.effective.to_rfc3339()));
    }
    Ok(store.add_price_table(table.effective, text, now)?)
}

/// Revenue, cost and margin of one customer's period. Amounts are
/// decimals as text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Economics {
    pub customer: String,
    pub period: String,
    /// `closed` when read from the stored statement, else `preview`.
    pub statement: String,
    /// The statement's currency (revenue's; costs are in `cost.currency`).
    pub currency: String,
    /// One per statement line.
    pub revenue: Vec<RevenueLine>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub revenue_total: Decimal,
    pub cost: CostReport,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub gross_margin: Decimal,
    /// Margin over revenue, in percent; `null` without revenue.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "decimal"))]
    pub gross_margin_percent: Option<Decimal>,
}

/// One statement line as revenue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevenueLine {
    /// The line's kind (`outcome`, `base_fee`, …).
    pub kind: String,
    pub description: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub amount: Decimal,
}

fn amount(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_default()
}

/// Revenue by statement line against cost by model, category, agent and
/// outcome kind, for one period.
pub fn economics(
    store: &Store,
    customer: &str,
    period_name: &str,
    now: DateTime<Utc>,
) -> Result<Economics, BillingError> {
    let versions = Versions::load(store, customer)?;
    let period = versions.period(period_name)?;
    let (_, economics) = preview_with_economics(store, customer, &versions, period, now)?;
    Ok(economics)
}

/// Whether a statement is the stored one of a closed period (signed) or
/// a preview (never signed).
pub fn state_of(statement: &Statement) -> &'static str {
    if statement.signature.is_some() {
        "closed"
    } else {
        "preview"
    }
}

/// The period's statement ([`billing::preview`]: the stored one of a
/// closed period, else a preview) and its [`economics`], as the Overview
/// shows them together. The statement is computed on this thread while
/// another reads the period's costs, so the two take the time of the
/// longer rather than their sum (at 10M events each took about 5 s). The
/// preview's `outcomes` are spent on the cost attribution (`None` after).
pub fn preview_with_economics(
    store: &Store,
    customer: &str,
    versions: &Versions,
    period: Period,
    now: DateTime<Utc>,
) -> Result<(billing::Preview, Economics), BillingError> {
    let (preview, cost) = period_costs(store, customer, versions, period, || {
        let mut preview = billing::preview(
            store,
            customer,
            &period.to_string(),
            now,
            billing::Listing::Listed,
        )?;
        let outcomes = preview.outcomes.take();
        Ok((preview, outcomes))
    })?;
    let statement = &preview.statement;
    let revenue: Vec<RevenueLine> = statement
        .lines
        .iter()
        .map(|l| RevenueLine {
            kind: serde_json::to_value(l.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            description: l.description.clone(),
            amount: l.amount,
        })
        .collect();
    let revenue_total = statement.total;
    let gross_margin = revenue_total - cost.total;
    let gross_margin_percent = (!revenue_total.is_zero())
        .then(|| (gross_margin * Decimal::ONE_HUNDRED / revenue_total).round_dp(2));
    let economics = Economics {
        customer: customer.to_owned(),
        period: period.to_string(),
        statement: state_of(statement).into(),
        currency: statement.currency.clone(),
        revenue,
        revenue_total,
        cost,
        gross_margin,
        gross_margin_percent,
    };
    Ok((preview, economics))
}

/// The costs of the period from the cost index, read on a thread of their
/// own while this one runs `alongside` (which may give the outcomes costs
/// are attributed to: those a preview was just computed from), then finds
/// the outcomes `alongside` did not give: those of the closed period
/// ([`closed_outcomes`]).
fn period_costs<T>(
    store: &Store,
    customer: &str,
    versions: &Versions,
    period: Period,
    alongside: impl FnOnce() -> Result<(T, Option<PeriodOutcomes>), BillingError>,
) -> Result<(T, CostReport), BillingError> {
    let prices = prices(store)?;
    let (events, kept) = billing::sources(store, customer, billing::Outcomes::Kept)?;
    let (prices, head) = (&prices, events.head.sequence);
    let (ledger, outcomes) = std::thread::scope(|scope| {
        let costs = scope.spawn(move || costs_of(store, customer, head, prices, period));
        let outcomes = alongside().and_then(|(done, given)| {
            let outcomes = match given {
                Some(outcomes) => outcomes,
                None => closed_outcomes(store, &events, kept.as_ref(), versions, period)?,
            };
            Ok((done, outcomes))
        });
        let ledger = costs
            .join()
            .unwrap_or_else(|_| Err(BillingError::Corrupt("the cost reader panicked".into())));
        (ledger, outcomes)
    });
    let (ledger, (done, outcomes)) = (ledger?, outcomes?);
    let pairs = outcomes.pairs().map_err(BillingError::Corrupt)?;
    Ok((
        done,
        ledger.finish(pairs.iter().map(|(k, s)| (*k, s.as_ref()))),
    ))
}

/// A closed period's outcomes by (kind, subject): those kept with its
/// statement (the outcomes it closed on); for a close from before they
/// were kept, the read model's or a projection's under the latest version.
fn closed_outcomes(
    store: &Store,
    events: &StoredEvents<'_>,
    kept: Option<&payoff_outcomes::Kept<'_>>,
    versions: &Versions,
    period: Period,
) -> Result<PeriodOutcomes, BillingError> {
    if let Some(kinds) = store.period_outcome_sets(&events.customer, &period.to_string())? {
        return Ok(PeriodOutcomes { kinds });
    }
    let contract = versions.latest();
    let mut side = Projector::side(&events.customer, contract, period.end, None);
    let vouched = match kept {
        Some(k) => k
            .outcomes(
                versions.latest_version(),
                (period.start, period.end),
                period.end,
                &mut side,
            )
            .map_err(BillingError::Corrupt)?,
        None => false,
    };
    let projection = if vouched {
        side.finish()
    } else {
        let mut projector = Projector::new(&events.customer, contract, period.end, None);
        events
            .replay(&TypeFilter::of(&[contract]), &mut |e| projector.feed(e))
            .map_err(BillingError::Corrupt)?;
        projector.finish()
    };
    Ok(payoff_billing::period_outcomes(
        contract,
        &projection,
        period,
    ))
}

/// Every cost of `period` among the customer's events up to `up_to`.
fn costs_of<'p>(
    store: &Store,
    customer: &str,
    up_to: u64,
    prices: &'p Prices,
    period: Period,
) -> Result<CostLedger<'p>, BillingError> {
    let mut ledger = CostLedger::new(prices, period);
    let mut failure = None;
    store.scan_costs(customer, up_to, period.start, period.end, |fact| {
        match fact {
            CostFact::Call {
                event_id,
                time,
                call,
                ..
            } => ledger.add_call(event_id, time, &call),
            CostFact::Event { sequence, body } => match billing::parse_stored(sequence, body) {
                Ok(Some(e)) => ledger.feed(&e),
                Ok(None) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            },
        }
        Ok(())
    })?;
    match failure {
        Some(e) => Err(BillingError::Corrupt(e)),
        None => Ok(ledger),
    }
}

/// What an agent (or anyone) learns before it spends. Amounts are USD,
/// decimals as text.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetCheck {
    pub allow: bool,
    pub customer: String,
    /// The agent asked about; `null` for the whole customer.
    pub agent: Option<String>,
    pub period: String,
    /// Spent this period by the scope whose budget decides.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub spent: Decimal,
    /// The deciding budget's limit; `null` when no budget is set.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "decimal"))]
    pub limit: Option<Decimal>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "decimal"))]
    pub warn_at: Option<Decimal>,
    /// Whether a warning threshold is reached.
    pub warning: bool,
    /// Why the answer is what it is, in words.
    pub reason: String,
}

/// Allow or deny further spending by `agent` for `customer` this period.
pub fn check_budget(
    store: &Store,
    customer: &str,
    agent: Option<&str>,
    now: DateTime<Utc>,
) -> Result<BudgetCheck, BillingError> {
    let cadence = match Versions::load(store, customer) {
        Ok(v) => v.latest().cadence,
        Err(payoff_outcomes::OutcomesError::NoContract(_)) => payoff_billing::Cadence::Monthly,
        Err(e) => return Err(e.into()),
    };
    if store.customer(customer)?.is_none() {
        return Err(StoreError::NotFound {
            what: "customer",
            id: customer.to_owned(),
        }
        .into());
    }
    let period = Period::containing(cadence, now);
    let budgets = store.budgets(customer)?;
    let find = |name: &str| budgets.iter().find(|b| b.agent == name);
    let prices = prices(store)?;
    let head = StoredEvents::at_head(store, customer)?.head.sequence;
    let ledger = costs_of(store, customer, head, &prices, period)?;
    let report = ledger.finish([]);
    let customer_spent = report.total;
    let agent_spent = agent.map(|a| report.by_agent.get(a).copied().unwrap_or_default());
    // The tighter of the customer's and the agent's budget decides.
    let mut checks: Vec<(&Budget, Decimal, String)> = Vec::new();
    if let Some(b) = find("*") {
        checks.push((b, customer_spent, format!("customer {customer}")));
    }
    if let (Some(a), Some(spent)) = (agent, agent_spent) {
        if let Some(b) = find(a) {
            checks.push((b, spent, format!("agent {a}")));
        }
    }
    let mut answer = BudgetCheck {
        allow: true,
        customer: customer.to_owned(),
        agent: agent.map(str::to_owned),
        period: period.to_string(),
        spent: agent_spent.unwrap_or(customer_spent),
        limit: None,
        warn_at: None,
        warning: false,
        reason: "no budget is set".into(),
    };
    for (budget, spent, who) in checks {
        let limit = amount(&budget.limit);
        let warn = budget.warn_at.as_deref().map(amount);
        let reached = spent >= limit;
        let warned = warn.is_some_and(|w| spent >= w);
        if answer.limit.is_none() || reached || (warned && answer.allow) {
            answer.spent = spent;
            answer.limit = Some(limit);
            answer.warn_at = warn;
        }
        answer.warning |= warned;
        if reached {
            answer.allow = false;
            answer.reason =
                format!("{who} has spent {spent} of its {limit} USD limit for {period}");
        } else if answer.allow {
            answer.reason = format!("{who} has spent {spent} of {limit} USD for {period}");
        }
    }
    Ok(answer)
}

/// The units of work a statement line delivered, as the baseline counts
/// them: the outcomes of a count-priced kind (per unit or tiers) and, for a
/// holdout-attributed one, the outcomes of the AI arm: that is the work
/// people did not have to do, even though only the lift over the control
/// arm is billed. Value-priced kinds (a share of a deal) are not units of
/// work.
fn units_of_work(contract: &payoff_billing::Contract, line: &payoff_billing::Line) -> u64 {
    let kind = line
        .outcome
        .as_deref()
        .and_then(|name| contract.outcomes.iter().find(|o| o.name == name));
    match kind {
        None => 0,
        Some(k) if matches!(k.price, payoff_billing::Price::Percent { .. }) => 0,
        // A line's quantity counts the outcomes it names (it is read from
        // the quantity, so a statement kept without its ids counts alike).
        Some(_) => match &line.attribution {
            Some(a) => a.ai.outcomes,
            None => rust_decimal::prelude::ToPrimitive::to_u64(&line.quantity).unwrap_or(0),
        },
    }
}

/// What the customer got for what it paid, against its own baseline.
/// Amounts are decimals as text, in `currency`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Roi {
    pub customer: String,
    pub period: String,
    /// `closed` when read from the stored statement, else `preview`.
    pub statement: &'static str,
    pub currency: String,
    pub outcomes_delivered: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "decimal"))]
    pub amount_billed: Decimal,
    /// `null` when no outcome was delivered.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "decimal"))]
    pub effective_price_per_outcome: Option<Decimal>,
    /// The contract's baseline cost of one unit of work, if it names one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "decimal"))]
    pub baseline_unit_cost: Option<Decimal>,
    /// Outcomes × baseline − billed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "decimal"))]
    pub implied_saving: Option<Decimal>,
    /// The licence the contract replaces, for this period (yearly / 12 or / 52).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "decimal"))]
    pub licence_for_period: Option<Decimal>,
    /// Billed − the licence for the period.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = "decimal"))]
    pub paid_versus_licence: Option<Decimal>,
}

pub fn roi(
    store: &Store,
    customer: &str,
    period_name: &str,
    now: DateTime<Utc>,
) -> Result<Roi, BillingError> {
    let versions = Versions::load(store, customer)?;
    let period = versions.period(period_name)?;
    let statement = billing::preview(
        store,
        customer,
        &period.to_string(),
        now,
        billing::Listing::Unlisted,
    )?
    .statement;
    Ok(roi_of(&versions, period, &statement, state_of(&statement)))
}

/// [`roi`] of a period whose statement (or preview) the caller already
/// holds.
pub fn roi_of(
    versions: &Versions,
    period: Period,
    statement: &Statement,
    state: &'static str,
) -> Roi {
    let list = versions.list();
    let contract = list
        .iter()
        .find(|v| v.version == statement.contract.version)
        .map_or(versions.latest(), |v| v.contract);
    let delivered: u64 = statement
        .lines
        .iter()
        .filter(|l| {
            matches!(
                l.kind,
                payoff_billing::LineKind::Outcome | payoff_billing::LineKind::Tier
            )
        })
        .map(|l| units_of_work(contract, l))
        .sum();
    let billed = statement.total;
    let round = |d: Decimal| contract.rounding.round(d, contract.currency);
    let per_year = match contract.cadence {
        payoff_billing::Cadence::Monthly => Decimal::from(12),
        payoff_billing::Cadence::Weekly => Decimal::from(52),
    };
    let licence = contract.licence_equivalent.map(|l| round(l / per_year));
    Roi {
        customer: statement.customer.clone(),
        period: period.to_string(),
        statement: state,
        currency: statement.currency.clone(),
        outcomes_delivered: delivered,
        amount_billed: billed,
        effective_price_per_outcome: (delivered > 0)
            .then(|| round(billed / Decimal::from(delivered))),
        baseline_unit_cost: contract.baseline_unit_cost,
        implied_saving: contract
            .baseline_unit_cost
            .map(|b| round(b * Decimal::from(delivered) - billed)),
        licence_for_period: licence,
        paid_versus_licence: licence.map(|l| billed - l),
    }
}

impl Roi {
    /// The same figures as one CSV header and one row.
    pub fn csv(&self) -> String {
        let opt = |d: Option<Decimal>| d.map(|d| d.to_string()).unwrap_or_default();
        format!(
            "customer,period,statement,currency,outcomes_delivered,amount_billed,effective_price_per_outcome,baseline_unit_cost,implied_saving,licence_for_period,paid_versus_licence\n{},{},{},{},{},{},{},{},{},{},{}\n",
            self.customer,
            self.period,
            self.statement,
            self.currency,
            self.outcomes_delivered,
            self.amount_billed,
            opt(self.effective_price_per_outcome),
            opt(self.baseline_unit_cost),
            opt(self.implied_saving),
            opt(self.licence_for_period),
            opt(self.paid_versus_licence)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn units_of_work_count_outcomes_and_the_ai_arm_but_not_shares_of_value() {
        let contract = payoff_billing::Contract::parse(
            "c.toml",
            r#"
[contract]
customer = "acme"
currency = "USD"
starts = "2026-11-01"

[[outcome]]
name = "resolved"
when = 'event.type == "ticket.closed"'
price = { per_unit = "1.00" }

[[outcome]]
name = "proven"
when = 'event.type == "ticket.closed"'
attribution = { holdout = 0.1 }
price = { per_unit = "0.50" }

[[outcome]]
name = "deal"
when = 'event.type == "deal.won"'
value = 'event.data.amount'
price = { percent_of = "value", rate = "0.01" }
"#,
        )
        .unwrap();
        let line =
            |v: serde_json::Value| serde_json::from_value::<payoff_billing::Line>(v).unwrap();
        let direct = line(
            json!({"kind": "outcome", "description": "", "outcome": "resolved",
            "quantity": "3", "amount": "3.00", "outcomes": ["a", "b", "c"]}),
        );
        assert_eq!(units_of_work(&contract, &direct), 3);
        let deal = line(
            json!({"kind": "outcome", "description": "", "outcome": "deal",
            "quantity": "2", "amount": "40.00", "outcomes": ["d", "e"]}),
        );
        assert_eq!(units_of_work(&contract, &deal), 0);
        let arm = |n: u64| json!({"subjects": 500, "outcomes": n, "per_subject": "0.5", "subjects_hash": ""});
        let lift = line(
            json!({"kind": "outcome", "description": "", "outcome": "proven",
            "quantity": "41", "amount": "20.50", "attribution": {
                "experiment": "proven", "method": "", "confidence": "0.95", "bill": "lower_bound",
                "status": "billed", "reason": "", "ai": arm(380), "control": arm(30), "estimate": "0.2",
                "low": "0.1", "high": "0.3", "srm_p_value": "0.5", "billed_quantity": "41"}}),
        );
        // The AI arm's outcomes are the work done; the lift is what is billed.
        assert_eq!(units_of_work(&contract, &lift), 380);
    }
}
