//! The demo's business, generated from a seed: Acme Outdoor Co.'s help
//! centre, a month of its support tickets and its sales leads. Pure: the
//! same seed and month give the same business. Every random choice about
//! a ticket's future (will the requester be satisfied, when do people
//! answer) is drawn here, up front, so the simulation's course depends on
//! what the real server does and on nothing else.

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The help centre: articles, and what customers write about.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelpCentre {
    pub article: Vec<Article>,
    pub intent: Vec<Intent>,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Article {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub name: String,
    /// The article that answers it; empty when none does.
    pub article: String,
    pub weight: u32,
    /// `(subject, body)` phrasings.
    pub texts: Vec<(String, String)>,
}

/// Acme's help centre (`help-centre.toml`).
pub fn help_centre() -> HelpCentre {
    toml::from_str(include_str!("help-centre.toml"))
        .expect("help-centre.toml parses (checked by the tests of this module)")
}

/// One support ticket and the dice already thrown for its future.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: String,
    pub opened: DateTime<Utc>,
    pub intent: usize,
    pub subject: String,
    pub body: String,
    pub requester: String,
    pub draws: Draws,
}

/// Uniform draws in `[0, 1)` and durations, decided when the ticket is made.
#[derive(Debug, Clone)]
pub struct Draws {
    /// Below the chance of being satisfied by the answer: satisfied.
    pub satisfied: f64,
    /// Below the reopen rate: the problem comes back two days later.
    pub reopens: f64,
    /// How the approver decides: approve, edit, reject.
    pub approval: f64,
    /// Below the review rate: quality assurance reviews the reply.
    pub reviewed: f64,
    /// Below the tier-two rate: a person needs days, not hours.
    pub tier_two: f64,
    /// Hours until the requester reacts to a reply.
    pub reaction_h: f64,
    /// Hours until a person first looks at a ticket handed to people.
    pub human_wait_h: f64,
    /// Hours a person then needs to solve it.
    pub human_work_h: f64,
    /// Input and output tokens of the triage model's call.
    pub triage_tokens: (u64, u64),
}

/// One sales lead and its draws.
#[derive(Debug, Clone)]
pub struct Lead {
    pub id: String,
    pub created: DateTime<Utc>,
    pub company: String,
    pub qualifies: f64,
    pub wins: f64,
    pub expected_value: u32,
    pub amount: u32,
    pub qualify_h: f64,
    pub win_days: f64,
}

const FIRST: &[&str] = &[
    "anna", "ben", "carla", "dev", "elena", "farid", "grace", "hugo", "ines", "jon", "kira",
    "liam", "maya", "noah", "olga", "pablo", "quinn", "rosa", "sam", "tara", "umar", "vera",
    "will", "xena", "yusuf", "zoe",
];
const LAST: &[&str] = &[
    "smith", "garcia", "chen", "novak", "okafor", "larsen", "rossi", "kim", "dubois", "silva",
    "patel", "meyer", "brown", "haddad", "ito", "kowalski",
];
const PRODUCTS: &[&str] = &[
    "Summit 2 tent",
    "Ridge 45 backpack",
    "Alpine down jacket",
    "Trail runner shoes",
    "Cascade hiking boots",
    "Nimbus sleeping bag",
    "Ember camp stove",
    "Glacier rain jacket",
];
const COUNTRIES: &[&str] = &[
    "Norway",
    "Switzerland",
    "Canada",
    "Germany",
    "the United Kingdom",
];
const POLITE: &[&str] = &["Hi,", "Hello,", "Hi there,", "Good morning,", "Hello team,"];
const ANGRY: &[&str] = &[
    "This is really frustrating.",
    "Third email about this!!",
    "Very disappointed right now.",
    "I expected better from you.",
];
const CLOSINGS: &[&str] = &["Thanks!", "Thank you.", "Regards", "Cheers", "Best"];
const COMPANIES: &[&str] = &[
    "Peak Guides",
    "Blue Ridge Scouts",
    "Canyon Camps",
    "Northwind Schools",
    "Pine Valley Resort",
    "Summit Rescue",
    "Trailhead Tours",
    "Granite Outfitters",
    "Lakeside Lodge",
    "Alpine Club",
];

/// How many tickets arrive on each weekday, relative to a Wednesday.
fn day_weight(day: Weekday) -> f64 {
    match day {
        Weekday::Mon => 1.3,
        Weekday::Tue => 1.1,
        Weekday::Wed | Weekday::Thu => 1.0,
        Weekday::Fri => 0.9,
        Weekday::Sat => 0.7,
        Weekday::Sun => 0.8,
    }
}

/// A time in `[start, end)`: days by weekday weight, and mostly US
/// daytime (14:00 to 04:00 UTC).
fn arrival(rng: &mut StdRng, start: DateTime<Utc>, end: DateTime<Utc>) -> DateTime<Utc> {
    let days = (end - start).num_days().max(1);
    let weights: Vec<f64> = (0..days)
        .map(|d| day_weight((start + Duration::days(d)).weekday()))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut pick = rng.gen::<f64>() * total;
    let mut day = 0;
    for (d, w) in weights.iter().enumerate() {
        if pick < *w {
            day = d as i64;
            break;
        }
        pick -= w;
    }
    let minute = if rng.gen_bool(0.85) {
        (14 * 60 + rng.gen_range(0..14 * 60)) % (24 * 60)
    } else {
        rng.gen_range(0..24 * 60)
    };
    start
        + Duration::days(day)
        + Duration::minutes(minute)
        + Duration::seconds(rng.gen_range(0..60))
}

/// An exponential duration with the given mean, in hours.
fn hours(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list[rng.gen_range(0..list.len())]
}

/// `count` tickets in `[start, end)`, oldest first.
pub fn tickets(
    help: &HelpCentre,
    seed: u64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    count: usize,
) -> Vec<Ticket> {
    let mut rng = StdRng::seed_from_u64(seed);
    let total_weight: u32 = help.intent.iter().map(|i| i.weight).sum();
    let mut out: Vec<Ticket> = (0..count)
        .map(|_| {
            let mut w = rng.gen_range(0..total_weight);
            let intent = help
                .intent
                .iter()
                .position(|i| {
                    if w < i.weight {
                        true
                    } else {
                        w -= i.weight;
                        false
                    }
                })
                .unwrap_or(0);
            let (subject, body) =
                &help.intent[intent].texts[rng.gen_range(0..help.intent[intent].texts.len())];
            let fill = |text: &str, rng: &mut StdRng| {
                text.replace("{order}", &format!("A{}", rng.gen_range(200_000..999_999)))
                    .replace("{product}", pick(rng, PRODUCTS))
                    .replace("{country}", pick(rng, COUNTRIES))
            };
            let (first, last) = (pick(&mut rng, FIRST), pick(&mut rng, LAST));
            let opener = if rng.gen_bool(0.15) {
                pick(&mut rng, ANGRY)
            } else {
                pick(&mut rng, POLITE)
            };
            let closing = pick(&mut rng, CLOSINGS);
            let mut name = first.to_owned();
            name[..1].make_ascii_uppercase();
            let body = format!("{opener}\n\n{}\n\n{closing},\n{name}", fill(body, &mut rng));
            Ticket {
                id: String::new(),
                opened: arrival(&mut rng, start, end),
                intent,
                subject: fill(subject, &mut rng),
                body,
                requester: format!("{first}.{last}{}@mail.test", rng.gen_range(1..200)),
                draws: Draws {
                    satisfied: rng.gen(),
                    reopens: rng.gen(),
                    approval: rng.gen(),
                    reviewed: rng.gen(),
                    tier_two: rng.gen(),
                    reaction_h: hours(&mut rng, 1.2).min(72.0),
                    human_wait_h: hours(&mut rng, 5.0).min(30.0),
                    human_work_h: 0.2 + hours(&mut rng, 1.0).min(8.0),
                    triage_tokens: (rng.gen_range(2_400..4_200), rng.gen_range(60..320)),
                },
            }
        })
        .collect();
    out.sort_by_key(|t| t.opened);
    for (n, t) in out.iter_mut().enumerate() {
        t.id = format!("T-{}", 40_001 + n);
    }
    out
}

/// `count` leads in `[start, end)`, oldest first.
pub fn leads(seed: u64, start: DateTime<Utc>, end: DateTime<Utc>, count: usize) -> Vec<Lead> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x1ead);
    let mut out: Vec<Lead> = (0..count)
        .map(|_| Lead {
            id: String::new(),
            created: arrival(&mut rng, start, end),
            company: format!("{} {}", pick(&mut rng, COMPANIES), rng.gen_range(1..90)),
            qualifies: rng.gen(),
            wins: rng.gen(),
            expected_value: 50 * rng.gen_range(8..120),
            amount: 50 * rng.gen_range(6..140),
            qualify_h: hours(&mut rng, 20.0).min(200.0),
            win_days: rng.gen_range(3.0..20.0),
        })
        .collect();
    out.sort_by_key(|l| l.created);
    for (n, l) in out.iter_mut().enumerate() {
        l.id = format!("L-{}", 7_001 + n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn month() -> (DateTime<Utc>, DateTime<Utc>) {
        (
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        )
    }

    #[test]
    fn the_help_centre_is_big_enough_and_every_intent_points_at_an_article() {
        let help = help_centre();
        assert!(help.article.len() >= 40, "{}", help.article.len());
        assert!(help.article.iter().any(|a| a.groups == ["staff"]));
        for intent in &help.intent {
            assert!(
                intent.article.is_empty() || help.article.iter().any(|a| a.id == intent.article),
                "{}",
                intent.name
            );
            assert!(!intent.texts.is_empty());
        }
        assert!(help.intent.iter().any(|i| i.article.is_empty()));
        let mut ids: Vec<&str> = help.article.iter().map(|a| a.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), help.article.len(), "article ids are unique");
    }

    #[test]
    fn the_same_seed_gives_the_same_month_inside_the_month() {
        let help = help_centre();
        let (start, end) = month();
        let a = tickets(&help, 7, start, end, 500);
        let b = tickets(&help, 7, start, end, 500);
        assert_eq!(
            a.iter()
                .map(|t| (&t.id, t.opened, &t.body))
                .collect::<Vec<_>>(),
            b.iter()
                .map(|t| (&t.id, t.opened, &t.body))
                .collect::<Vec<_>>()
        );
        assert!(a.iter().all(|t| t.opened >= start && t.opened < end));
        assert!(a.windows(2).all(|w| w[0].opened <= w[1].opened));
        assert!(
            a.iter().all(|t| !t.body.contains('{')),
            "placeholders filled"
        );
        let other = tickets(&help, 8, start, end, 500);
        assert_ne!(a[0].body, other[0].body);
        // Every intent turns up in a month's worth of tickets.
        let seen: std::collections::BTreeSet<usize> = a.iter().map(|t| t.intent).collect();
        assert!(seen.len() > help.intent.len() / 2);
        let l = leads(7, start, end, 100);
        assert!(l.iter().all(|l| l.created >= start && l.created < end));
    }
}
