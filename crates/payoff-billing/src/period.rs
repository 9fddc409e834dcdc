//! Billing periods: calendar months or ISO weeks, half-open, in UTC.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use std::fmt;

/// How long a contract's periods are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Calendar months, named `2026-11`.
    Monthly,
    /// ISO weeks from Monday 00:00 UTC, named `2026-W48`.
    Weekly,
}

impl Cadence {
    pub fn parse(text: &str) -> Option<Cadence> {
        match text {
            "monthly" => Some(Cadence::Monthly),
            "weekly" => Some(Cadence::Weekly),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Cadence::Monthly => "monthly",
            Cadence::Weekly => "weekly",
        }
    }
}

/// One billing window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub cadence_weekly: bool,
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

impl Period {
    /// The period of `cadence` that starts on `date`, if one does.
    pub fn starting_on(cadence: Cadence, date: NaiveDate) -> Option<Period> {
        let period = Period::containing(cadence, midnight(date));
        (period.start == midnight(date)).then_some(period)
    }

    /// The period of `cadence` that holds the instant `t`.
    pub fn containing(cadence: Cadence, t: DateTime<Utc>) -> Period {
        let date = t.date_naive();
        match cadence {
            Cadence::Monthly => {
                let first = NaiveDate::from_ymd_opt(date.year(), date.month(), 1).expect("day 1");
                let next = if date.month() == 12 {
                    NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
                }
                .expect("day 1");
                Period {
                    start: midnight(first),
                    end: midnight(next),
                    cadence_weekly: false,
                }
            }
            Cadence::Weekly => {
                let monday = date - Duration::days(date.weekday().num_days_from_monday() as i64);
                Period {
                    start: midnight(monday),
                    end: midnight(monday + Duration::days(7)),
                    cadence_weekly: true,
                }
            }
        }
    }

    /// Parses a period name of `cadence`: `2026-11` or `2026-W48`.
    pub fn parse(cadence: Cadence, name: &str) -> Result<Period, String> {
        match cadence {
            Cadence::Monthly => {
                let date = NaiveDate::parse_from_str(&format!("{name}-01"), "%Y-%m-%d")
                    .ok()
                    .filter(|_| name.len() == 7)
                    .ok_or_else(|| format!("{name:?} is not a month like 2026-11"))?;
                Ok(Period::containing(cadence, midnight(date)))
            }
            Cadence::Weekly => {
                let bad = || format!("{name:?} is not an ISO week like 2026-W48");
                let (year, week) = name.split_once("-W").ok_or_else(bad)?;
                let year: i32 = year.parse().map_err(|_| bad())?;
                let week: u32 = week.parse().map_err(|_| bad())?;
                let date = NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).ok_or_else(bad)?;
                Ok(Period::containing(cadence, midnight(date)))
            }
        }
    }

    pub fn cadence(&self) -> Cadence {
        if self.cadence_weekly {
            Cadence::Weekly
        } else {
            Cadence::Monthly
        }
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    pub fn next(&self) -> Period {
        Period::containing(self.cadence(), self.end)
    }

    pub fn previous(&self) -> Period {
        Period::containing(self.cadence(), self.start - Duration::seconds(1))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cadence_weekly {
            let week = self.start.date_naive().iso_week();
            write!(f, "{}-W{:02}", week.year(), week.week())
        } else {
            write!(f, "{}", self.start.format("%Y-%m"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn months_are_half_open_and_roll_over_the_year() {
        let dec = Period::parse(Cadence::Monthly, "2026-12").unwrap();
        assert_eq!(dec.start, t("2026-12-01T00:00:00Z"));
        assert_eq!(dec.end, t("2027-01-01T00:00:00Z"));
        assert!(dec.contains(t("2026-12-31T23:59:59Z")));
        assert!(!dec.contains(dec.end));
        assert_eq!(dec.next().to_string(), "2027-01");
        assert_eq!(dec.previous().to_string(), "2026-11");
        let feb = Period::parse(Cadence::Monthly, "2028-02").unwrap();
        assert_eq!(feb.end - feb.start, Duration::days(29));
    }

    #[test]
    fn iso_weeks_start_on_monday_and_cross_years() {
        let w = Period::parse(Cadence::Weekly, "2026-W48").unwrap();
        assert_eq!(w.start, t("2026-11-23T00:00:00Z"));
        assert_eq!(w.to_string(), "2026-W48");
        // 2027-01-01 is a Friday: it belongs to 2026-W53.
        let p = Period::containing(Cadence::Weekly, t("2027-01-01T12:00:00Z"));
        assert_eq!(p.to_string(), "2026-W53");
        assert_eq!(p.next().to_string(), "2027-W01");
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["2026-13", "2026-1", "november", "2026-11-01"] {
            assert!(Period::parse(Cadence::Monthly, name).is_err(), "{name}");
        }
        for name in ["2026-W60", "2026W48", "2026-11"] {
            assert!(Period::parse(Cadence::Weekly, name).is_err(), "{name}");
        }
        let d = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        assert!(Period::starting_on(Cadence::Monthly, d).is_none());
        assert!(Period::starting_on(Cadence::Weekly, d).is_some());
    }
}
