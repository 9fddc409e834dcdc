//! Which category a ticket falls in, for routing and for the policies
//! that decide what the agent may do with it. Pure.

use serde::{Deserialize, Serialize};

/// A routing category and the words that point to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub name: String,
    pub keywords: Vec<String>,
}

/// The category of tickets no keyword points anywhere.
pub const OTHER: &str = "other";

/// The categories of a typical online store's help desk.
pub fn default_categories() -> Vec<Category> {
    let c = |name: &str, words: &[&str]| Category {
        name: name.to_owned(),
        keywords: words.iter().map(|w| (*w).to_owned()).collect(),
    };
    vec![
        c(
            "billing",
            &[
                "invoice", "charge", "charged", "refund", "payment", "card", "billing", "price",
                "vat",
            ],
        ),
        c(
            "returns",
            &[
                "return", "returns", "exchange", "damaged", "broken", "wrong", "label",
            ],
        ),
        c(
            "shipping",
            &[
                "shipping",
                "delivery",
                "delivered",
                "courier",
                "tracking",
                "late",
                "delay",
                "parcel",
                "package",
            ],
        ),
        c(
            "orders",
            &["order", "orders", "cancel", "address", "item", "stock"],
        ),
        c(
            "account",
            &[
                "password", "login", "log", "account", "email", "reset", "locked", "sign",
            ],
        ),
    ]
}

/// The category whose keywords occur most often in `text` (ties: the
/// first listed), or [`OTHER`].
pub fn classify(categories: &[Category], text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut best: Option<(&str, usize)> = None;
    for category in categories {
        let hits = words
            .iter()
            .filter(|w| category.keywords.iter().any(|k| k.eq_ignore_ascii_case(w)))
            .count();
        if hits > 0 && best.is_none_or(|(_, b)| hits > b) {
            best = Some((&category.name, hits));
        }
    }
    best.map_or_else(|| OTHER.to_owned(), |(name, _)| name.to_owned())
}

const GREETINGS: &[&str] = &["hi", "hello", "hey", "dear", "good", "greetings"];
const SIGN_OFFS: &[&str] = &[
    "thanks",
    "thank",
    "regards",
    "best",
    "cheers",
    "sincerely",
    "kind",
    "many",
    "cordially",
];

/// What a ticket asks, without the greeting and the sign-off: the words
/// that are there for politeness are not part of the question, and they
/// would make every answer look as if it missed something.
pub fn request_text(subject: &str, body: &str) -> String {
    let first_word = |line: &str| {
        line.split(|c: char| !c.is_alphanumeric())
            .find(|w| !w.is_empty())
            .unwrap_or("")
            .to_lowercase()
    };
    let short = |line: &str| line.split_whitespace().count() <= 4;
    let mut lines: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // "Hi," alone, or "Hi team, where is…" on the first line.
    if let Some(first) = lines.first_mut() {
        if GREETINGS.contains(&first_word(first).as_str()) {
            match first.split_once(',') {
                Some((greeting, rest)) if greeting.split_whitespace().count() <= 3 => {
                    *first = rest.trim();
                }
                _ if short(first) => *first = "",
                _ => {}
            }
        }
    }
    // "Thanks,\nAnna" or "Regards, Anna" at the end.
    while let Some(last) = lines.last() {
        let sign_off = SIGN_OFFS.contains(&first_word(last).as_str()) && short(last);
        let name_only = lines.len() > 1
            && last.split_whitespace().count() <= 2
            && !last.contains('?')
            && lines
                .get(lines.len() - 2)
                .is_some_and(|l| SIGN_OFFS.contains(&first_word(l).as_str()) && short(l));
        if sign_off || name_only {
            lines.pop();
        } else {
            break;
        }
    }
    let body = lines
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    without_identifiers(&format!("{subject}\n{body}"))
}

/// Drops order numbers, tracking codes and the like (a word with digits
/// and letters, or of four digits or more): they never occur in the
/// knowledge, and they are not what is asked.
fn without_identifiers(text: &str) -> String {
    let identifier = |w: &str| {
        let core = w.trim_matches(|c: char| !c.is_alphanumeric());
        let digits = core.chars().filter(char::is_ascii_digit).count();
        digits > 0 && (digits < core.chars().count() || digits >= 4)
    };
    text.lines()
        .map(|line| {
            line.split(' ')
                .filter(|w| !identifier(w))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_and_sign_offs_are_not_part_of_the_request() {
        let cases = [
            (
                "Hi,\nWhere is my parcel?\nThanks,\nAnna",
                "Where is my parcel?",
            ),
            (
                "Hello team, where is my parcel?\nRegards, Ben",
                "where is my parcel?",
            ),
            ("Where is my parcel?\nCheers", "Where is my parcel?"),
            (
                "Good morning,\n\nI was charged twice.\n\nKind regards,\nCarla Silva",
                "I was charged twice.",
            ),
            // Nothing to strip; and a question that starts with "Thanks" stays.
            (
                "Thanks for the refund, but why only half?",
                "Thanks for the refund, but why only half?",
            ),
            ("Dear Acme, my tent pole broke.", "my tent pole broke."),
            // Order numbers and codes are not part of the question; "30 days" is.
            (
                "Where is order A123456? Tracking 1Z999AA10123456784.",
                "Where is order Tracking",
            ),
            (
                "Can I return it after 30 days (order 48213)?",
                "Can I return it after 30 days (order",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(request_text("S", body), format!("S\n{want}"), "{body:?}");
        }
    }

    #[test]
    fn the_most_pointed_to_category_wins_and_nothing_means_other() {
        let cats = default_categories();
        assert_eq!(
            classify(&cats, "I was charged twice, please refund my card"),
            "billing"
        );
        assert_eq!(
            classify(
                &cats,
                "Where is my parcel? The tracking says delivery delayed"
            ),
            "shipping"
        );
        assert_eq!(classify(&cats, "I cannot reset my PASSWORD"), "account");
        assert_eq!(classify(&cats, "Hello, nice shop!"), OTHER);
        // A tie goes to the first listed category.
        assert_eq!(classify(&cats, "refund the return"), "billing");
    }
}
