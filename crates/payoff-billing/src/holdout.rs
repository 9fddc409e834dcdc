//! Statement lines of outcomes attributed by a holdout: only the lift the
//! AI arm shows over the control arm is billed.
//!
//! Per period and outcome kind: the subjects first assigned in the period,
//! per arm, and those among them with a billable outcome by the period's
//! end. For count-priced kinds the rate difference gets the unpooled
//! normal interval; for value-priced kinds the difference of mean value per
//! subject gets Welch's interval. Incremental outcomes are the lift times
//! the AI arm's subjects; `lower_bound` bills the interval's lower end,
//! never below zero. A sample-ratio mismatch holds the line (nothing
//! billed) until an operator releases it; too few subjects bills nothing.

use chrono::{DateTime, Utc};
use rust_decimal::prelude::FromPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::attribution::{mean_difference, proportion_difference, sample_ratio_p_value, Interval};
use crate::contract::{Attribution, Contract, HoldoutBill, Price, TierMode};
use crate::period::Period;
use crate::projection::{DisputeState, Outcome, Projection};
use crate::statement::{Line, LineKind};

/// A sample ratio this unlikely under the configured split holds the line.
pub const SRM_THRESHOLD: f64 = 0.001;

/// One arm's figures on a statement line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArmFigures {
    pub subjects: u64,
    pub outcomes: u64,
    /// Outcome rate, or mean value per subject for value-priced kinds.
    pub per_subject: String,
    /// SHA-256 of the arm's subjects in ledger order joined by newlines:
    /// the evidence (each subject's assignment is an event in the bundle).
    pub subjects_hash: String,
}

/// How a holdout line was estimated, printed on the statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttributionFigures {
    pub experiment: String,
    pub method: String,
    pub confidence: String,
    pub bill: String,
    /// `billed`, `held` (sample-ratio mismatch) or `insufficient`.
    pub status: String,
    pub reason: String,
    pub ai: ArmFigures,
    pub control: ArmFigures,
    pub estimate: String,
    pub low: String,
    pub high: String,
    pub srm_p_value: String,
    /// Incremental outcomes (or value) billed.
    pub billed_quantity: String,
}

fn f(x: f64) -> String {
    format!("{x:.9}")
}

/// One arm's subjects as they are read: how many, how many produced an
/// outcome, their values (for value-priced kinds), and the SHA-256 of the
/// subjects in ledger order joined by newlines.
struct Arm {
    subjects: u64,
    outcomes: u64,
    values: Option<Vec<f64>>,
    hash: Sha256,
}

impl Arm {
    fn new(valued: bool) -> Arm {
        Arm {
            subjects: 0,
            outcomes: 0,
            values: valued.then(Vec::new),
            hash: Sha256::new(),
        }
    }

    fn subjects(&mut self, subjects: u64, hash: Sha256) {
        self.subjects = subjects;
        self.hash = hash;
    }

    fn add_outcome(&mut self, outcome: &Outcome) {
        self.outcomes += 1;
        if let Some(values) = &mut self.values {
            values.push(outcome.value.map(to_f64).unwrap_or(0.0));
        }
    }

    /// Per subject values: those of the outcomes, then 0 for each subject
    /// without one.
    fn per_subject_values(&mut self) {
        let subjects = self.subjects as usize;
        if let Some(values) = &mut self.values {
            values.resize(subjects.max(values.len()), 0.0);
        }
    }

    fn mean(&self) -> f64 {
        match &self.values {
            Some(v) if !v.is_empty() => v.iter().sum::<f64>() / v.len() as f64,
            _ => 0.0,
        }
    }

    fn rate(&self) -> f64 {
        if self.subjects == 0 {
            0.0
        } else {
            self.outcomes as f64 / self.subjects as f64
        }
    }

    fn figures(self, per_subject: f64) -> ArmFigures {
        ArmFigures {
            subjects: self.subjects,
            outcomes: self.outcomes,
            per_subject: f(per_subject),
            subjects_hash: hex::encode(self.hash.finalize()),
        }
    }
}

/// The charge of `units` outcomes under a count price.
fn price_units(price: &Price, units: u64) -> Decimal {
    match price {
        Price::PerUnit(p) => Decimal::from(units) * p,
        Price::Tiers { mode, tiers } => {
            let mut floor = 0u64;
            let mut total = Decimal::ZERO;
            for t in tiers {
                let ceiling = t.up_to.unwrap_or(u64::MAX);
                match mode {
                    TierMode::Graduated => {
                        let n = ceiling.min(units).saturating_sub(floor.min(units));
                        total += Decimal::from(n) * t.price;
                    }
                    TierMode::Volume if units > floor && units <= ceiling => {
                        total = Decimal::from(units) * t.price;
                    }
                    TierMode::Volume => {}
                }
                floor = ceiling;
            }
            total
        }
        Price::Percent { .. } => Decimal::ZERO,
    }
}

fn billable(o: &Outcome, cut: DateTime<Utc>) -> bool {
    o.matures_at < cut
        && !o.voided_while_pending()
        && o.void_before(cut).is_none()
        && matches!(
            o.dispute_state(cut),
            DisputeState::None | DisputeState::Rejected
        )
}

/// The holdout lines of `period`, kinds in contract order (public for
/// benchmarks and tools that estimate lift without closing).
pub fn holdout_lines(contract: &Contract, projection: &Projection, period: Period) -> Vec<Line> {
    let cut = period.end;
    let currency = contract.currency;
    let mut lines = Vec::new();
    for (kind, rule) in contract.outcomes.iter().enumerate() {
        let Attribution::Holdout {
            holdout,
            confidence,
            bill,
            experiment,
            min_subjects,
        } = &rule.attribution
        else {
            continue;
        };
        let experiment = experiment.clone().unwrap_or_else(|| rule.name.clone());
        let valued = matches!(rule.price, Price::Percent { .. });
        // The arms in one pass over the experiment's subjects and, beside
        // it on a second core, their outcomes in one pass over the
        // outcomes: each billable outcome finds its subject's arm, rather
        // than each subject its outcome (a million subjects must take well
        // under a tenth of a second).
        let (mut ai, mut control) = (Arm::new(valued), Arm::new(valued));
        let subjects = || {
            let (mut ai, mut control) = (Sha256::new(), Sha256::new());
            let (mut n_ai, mut n_c) = (0u64, 0u64);
            for (subject, a) in projection.assignments(&experiment) {
                if period.contains(a.at) {
                    let (hash, n) = if a.control {
                        (&mut control, &mut n_c)
                    } else {
                        (&mut ai, &mut n_ai)
                    };
                    if *n > 0 {
                        hash.update(b"\n");
                    }
                    hash.update(subject.as_bytes());
                    *n += 1;
                }
            }
            ((n_ai, ai), (n_c, control))
        };
        let ((n_ai, hash_ai), (n_c, hash_c)) = std::thread::scope(|scope| {
            let subjects = scope.spawn(subjects);
            for o in projection.outcomes.iter().filter(|o| o.kind == kind) {
                let Some(a) = projection.assignment_of(&experiment, &o.subject) else {
                    continue;
                };
                if period.contains(a.at) && billable(o, cut) {
                    if a.control { &mut control } else { &mut ai }.add_outcome(o);
                }
            }
            subjects
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        ai.subjects(n_ai, hash_ai);
        control.subjects(n_c, hash_c);
        let released = projection
            .releases
            .contains(&(experiment.clone(), period.to_string()));
        let figures = estimate(
            &experiment,
            (ai, control),
            to_f64(*holdout),
            to_f64(*confidence),
            *bill,
            *min_subjects,
            released,
        );
        let (quantity, amount, unit_price) = match &rule.price {
            Price::Percent { rate, .. } => {
                let value: Decimal = figures.billed_quantity.parse().unwrap_or_default();
                (value, value * rate, Some(*rate))
            }
            price => {
                let units: u64 = figures.billed_quantity.parse().unwrap_or(0);
                let unit_price = match price {
                    Price::PerUnit(p) => Some(*p),
                    _ => None,
                };
                (Decimal::from(units), price_units(price, units), unit_price)
            }
        };
        let amount = contract.rounding.round(amount, currency);
        lines.push(Line {
            kind: LineKind::Outcome,
            description: format!(
                "{}: lift over holdout \"{}\" ({}): {}",
                rule.name, experiment, figures.status, figures.reason
            ),
            outcome: Some(rule.name.clone()),
            service_level: None,
            period: None,
            contract_version: None,
            quantity,
            included: None,
            unit_price: unit_price.map(|p| p.normalize()),
            amount: currency.amount(amount),
            outcomes: Vec::new(),
            outcomes_hash: None,
            attribution: Some(figures),
        });
    }
    lines
}

fn to_f64(d: Decimal) -> f64 {
    d.to_string().parse().unwrap_or(0.0)
}

fn estimate(
    experiment: &str,
    (ai, control): (Arm, Arm),
    holdout: f64,
    confidence: f64,
    bill: HoldoutBill,
    min_subjects: u64,
    released: bool,
) -> AttributionFigures {
    let (mut ai, mut control) = (ai, control);
    ai.per_subject_values();
    control.per_subject_values();
    let (n_ai, n_c) = (ai.subjects, control.subjects);
    let valued = ai.values.is_some();
    let srm = sample_ratio_p_value(n_ai, n_c, holdout);
    let (interval, method, per_ai, per_c): (Option<Interval>, &str, f64, f64) =
        match (&ai.values, &control.values) {
            (Some(va), Some(vc)) => (
                mean_difference(va, vc, confidence).map(|(i, _)| i),
                "difference of mean value per subject, Welch's t interval",
                ai.mean(),
                control.mean(),
            ),
            _ => (
                proportion_difference(ai.outcomes, n_ai, control.outcomes, n_c, confidence),
                "difference of proportions, unpooled normal (Wald) interval",
                ai.rate(),
                control.rate(),
            ),
        };
    let interval = interval.unwrap_or(Interval {
        estimate: 0.0,
        low: 0.0,
        high: 0.0,
    });
    let (status, reason) = if n_ai < min_subjects || n_c < min_subjects {
        (
            "insufficient",
            format!("{n_ai} AI and {n_c} control subjects; at least {min_subjects} in each arm are needed"),
        )
    } else if srm < SRM_THRESHOLD && !released {
        (
            "held",
            format!(
                "the arms ({n_ai} AI, {n_c} control) do not match the {holdout} holdout (p = {srm:.2e}); held until an operator releases it"
            ),
        )
    } else {
        ("billed", format!("{n_ai} AI and {n_c} control subjects"))
    };
    let bound = match bill {
        HoldoutBill::LowerBound => interval.low,
        HoldoutBill::Estimate => interval.estimate,
    };
    let incremental = if status == "billed" {
        (bound.max(0.0)) * n_ai as f64
    } else {
        0.0
    };
    let billed_quantity = if valued {
        Decimal::from_f64(incremental)
            .unwrap_or_default()
            .round_dp(2)
            .to_string()
    } else {
        (incremental.floor() as u64).to_string()
    };
    AttributionFigures {
        experiment: experiment.to_owned(),
        method: method.to_owned(),
        confidence: format!("{confidence}"),
        bill: match bill {
            HoldoutBill::LowerBound => "lower_bound",
            HoldoutBill::Estimate => "estimate",
        }
        .to_owned(),
        status: status.to_owned(),
        reason,
        ai: ai.figures(per_ai),
        control: control.figures(per_c),
        estimate: f(interval.estimate),
        low: f(interval.low),
        high: f(interval.high),
        srm_p_value: f(srm),
        billed_quantity,
    }
}
