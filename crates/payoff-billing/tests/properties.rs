//! Properties of closing, over random ledgers that arrive in random order
//! and random sequences of closes.

use std::collections::HashMap;

use chrono::{Duration, TimeZone, Utc};
use payoff_billing::{
    canonical_bytes, compute, BillingEvent, CloseInput, Contract, ContractVersion, Earlier,
    HeadRef, LineKind, Statement,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;

fn contract(price: &str, cap: Option<&str>, included: u64) -> Contract {
    let cap = cap.map(|c| format!("cap = \"{c}\"\n")).unwrap_or_default();
    let text = format!(
        r#"
[contract]
customer = "p"
currency = "USD"
starts = "2026-09-01"
base_fee = "10.00"
included = {included}
{cap}
[[outcome]]
name = "resolved"
when = 'event.type == "closed"'
void_when = 'event.type == "reopened"'
matures_after = "2d"
clawback_within = "20d"
price = {price}

[[outcome]]
name = "lead"
when = 'event.type == "won"'
value = 'event.data.amount'
price = {{ percent_of = "value", rate = "0.1" }}
"#
    );
    Contract::parse("p.toml", &text).unwrap()
}

/// One generated event: kind, subject, day offset from 2026-09-01, hour.
type Raw = (u8, u8, i64, u32);

fn events(raw: &[Raw]) -> Vec<BillingEvent> {
    let start = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    raw.iter()
        .enumerate()
        .map(|(i, &(kind, subject, day, hour))| {
            let subject = format!("S{subject}");
            let (t, data) = match kind % 6 {
                0 | 1 => ("closed", json!({})),
                2 => ("reopened", json!({})),
                3 => ("won", json!({"amount": format!("{}.{}", 100 + day, hour)})),
                4 => (
                    "payoff.dispute.opened",
                    json!({"outcome": "resolved", "subject": subject, "reason": "r"}),
                ),
                _ => (
                    if hour % 2 == 0 {
                        "payoff.dispute.accepted"
                    } else {
                        "payoff.dispute.rejected"
                    },
                    json!({"outcome": "resolved", "subject": subject}),
                ),
            };
            BillingEvent {
                sequence: i as u64 + 1,
                id: format!("e{i}"),
                source: "gen".into(),
                event_type: t.into(),
                subject: Some(subject),
                time: start + Duration::days(day) + Duration::hours(hour as i64),
                data,
            }
        })
        .collect()
}

/// Closes September, October and November, each after a share of the
/// ledger has arrived; returns the statements.
fn close_all(c: &Contract, all: &[BillingEvent], arrivals: [usize; 3]) -> Vec<Statement> {
    let versions = [ContractVersion {
        version: 1,
        effective: c.starts,
        contract: c,
    }];
    let mut prior = Vec::new();
    let mut period = c.starts;
    let mut known = 0;
    for share in arrivals {
        known = (known + share).min(all.len());
        let seen = all[..known].to_vec();
        let earlier = Earlier::all(&prior).unwrap();
        let input = CloseInput {
            customer: "p",
            period,
            versions: &versions,
            events: &seen,
            head: HeadRef {
                sequence: known as u64,
                hash: "h".repeat(64),
            },
            prior: &earlier,
            issued_at: period.end,
            kept: None,
        };
        let s = compute(&input).unwrap();
        let again = compute(&input).unwrap();
        assert_eq!(
            canonical_bytes(&s),
            canonical_bytes(&again),
            "closing is deterministic"
        );
        drop(input);
        drop(earlier);
        prior.push(s);
        period = period.next();
    }
    prior
}

fn raw_events() -> impl Strategy<Value = Vec<Raw>> {
    prop::collection::vec((0u8..6, 0u8..12, 0i64..90, 0u32..24), 0..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn totals_add_up_and_no_outcome_is_billed_twice(
        raw in raw_events(),
        arrivals in [0usize..40, 0usize..40, 0usize..80],
        tiered in any::<bool>(),
        included in 0u64..3,
    ) {
        let price = if tiered {
            r#"{ tiers = [ { up_to = 2, price = "1.00" }, { up_to = 4, price = "0.75" }, { price = "0.50" } ] }"#
        } else {
            r#"{ per_unit = "1.25" }"#
        };
        let c = contract(price, None, included);
        let statements = close_all(&c, &events(&raw), arrivals);
        let mut billed: HashMap<String, i64> = HashMap::new();
        for s in &statements {
            let sum: Decimal = s.lines.iter().map(|l| l.amount).sum();
            prop_assert_eq!(sum, s.total, "total is the sum of the lines");
            for l in &s.lines {
                let sign = if l.quantity.is_sign_negative() { -1 } else { 1 };
                for id in &l.outcomes {
                    *billed.entry(id.clone()).or_default() += sign;
                }
                if matches!(l.kind, LineKind::Outcome | LineKind::Tier) {
                    prop_assert!(l.amount >= Decimal::ZERO);
                }
            }
            for (id, n) in &billed {
                prop_assert!(*n == 0 || *n == 1, "outcome {} billed {} times", id, n);
            }
        }
    }

    #[test]
    fn the_cap_is_never_exceeded(
        raw in raw_events(),
        arrivals in [0usize..40, 0usize..40, 0usize..80],
        cap_cents in 0u32..1200,
    ) {
        let cap = Decimal::new(cap_cents as i64, 2);
        let c = contract(r#"{ per_unit = "1.25" }"#, Some(&cap.to_string()), 0);
        let statements = close_all(&c, &events(&raw), arrivals);
        // Per billed period: its own outcome charges plus every later
        // adjustment and credit that concerns it.
        let mut per_period: HashMap<String, Decimal> = HashMap::new();
        for s in &statements {
            for l in &s.lines {
                let period = match l.kind {
                    LineKind::Outcome | LineKind::Tier | LineKind::Cap => s.period.clone(),
                    LineKind::Adjustment | LineKind::DisputeCredit => l.period.clone().unwrap(),
                    _ => continue,
                };
                *per_period.entry(period).or_default() += l.amount;
            }
        }
        for (period, charged) in per_period {
            prop_assert!(charged <= cap, "{}: {} > cap {}", period, charged, cap);
            prop_assert!(charged >= Decimal::ZERO, "{}: {} < 0", period, charged);
        }
    }

    #[test]
    fn arrival_order_of_a_closed_ledger_does_not_matter_within_a_period(
        raw in raw_events(),
    ) {
        // With everything known at every close, a statement depends on the
        // events' times, not on how the ledger interleaved subjects.
        let c = contract(r#"{ per_unit = "1.25" }"#, None, 1);
        let all = events(&raw);
        let mut by_subject = all.clone();
        by_subject.sort_by_key(|e| (e.subject.clone(), e.sequence));
        for (i, e) in by_subject.iter_mut().enumerate() {
            e.sequence = i as u64 + 1;
        }
        let a = close_all(&c, &all, [all.len(), 0, 0]);
        let b = close_all(&c, &by_subject, [all.len(), 0, 0]);
        for (x, y) in a.iter().zip(&b) {
            prop_assert_eq!(&x.total, &y.total, "{}", x.period);
        }
    }
}

#[test]
fn a_known_history_closes_as_worked_out_by_hand() {
    // S1 closed Sep 3 (matures Sep 5); S2 closed Sep 29 22:00 (matures Oct 1
    // 22:00, October); S1 reopened Sep 10, within clawback, after the close.
    let raw = vec![(0, 1, 2, 0), (0, 2, 28, 22), (2, 1, 9, 0)];
    let c = contract(r#"{ per_unit = "1.25" }"#, None, 0);
    let s = close_all(&c, &events(&raw), [2, 1, 0]);
    assert_eq!(s[0].total.to_string(), "11.25", "base 10.00 + S1 1.25");
    // October: base 10.00 + S2 1.25 - clawback of S1 1.25.
    assert_eq!(s[1].total.to_string(), "10.00");
    assert_eq!(s[2].total.to_string(), "10.00");
}
