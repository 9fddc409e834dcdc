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

#[cfg(test)]
mod tests {
    use super::*;

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
