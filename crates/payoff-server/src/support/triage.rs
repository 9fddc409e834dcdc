//! The support agent's pure decisions: which category a ticket falls in,
//! and what to do with a drafted reply when no customer policy says
//! otherwise. No I/O: everything is an argument.

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

/// What happens to a drafted reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Sent to the requester at once.
    Send,
    /// Held until a person approves, edits or rejects it.
    NeedsApproval,
    /// The ticket goes to a person, the draft attached.
    Escalate,
}

impl Verdict {
    /// The agent action this verdict performs, as policies and the audit name it.
    pub fn action(self) -> &'static str {
        match self {
            Verdict::Send => "send_reply",
            Verdict::NeedsApproval => "queue_for_approval",
            Verdict::Escalate => "escalate",
        }
    }
}

/// A verdict, the rules that gave it, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub policy_ids: Vec<String>,
    pub reason: String,
}

/// The thresholds of the built-in reply rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyRule {
    /// Confidence from which a reply may go out alone.
    pub auto_send_min: f64,
    /// Confidence from which a reply is worth a person's approval; below,
    /// the ticket is escalated.
    pub approval_min: f64,
    /// Categories never sent without a person (money, for a start).
    pub approval_categories: Vec<String>,
}

impl Default for ReplyRule {
    fn default() -> Self {
        ReplyRule {
            auto_send_min: 0.6,
            approval_min: 0.3,
            approval_categories: vec!["billing".to_owned()],
        }
    }
}

/// The built-in rule: no answer ⇒ escalate; confident and not a sensitive
/// category ⇒ send; fairly confident ⇒ approval; else escalate.
pub fn decide(rule: &ReplyRule, no_answer: bool, confidence: f64, category: &str) -> Decision {
    let d = |verdict, id: &str, reason: String| Decision {
        verdict,
        policy_ids: vec![id.to_owned()],
        reason,
    };
    if no_answer {
        return d(
            Verdict::Escalate,
            "builtin.no_answer",
            "the knowledge does not cover the ticket".into(),
        );
    }
    let sensitive = rule.approval_categories.iter().any(|c| c == category);
    if confidence >= rule.auto_send_min && !sensitive {
        return d(
            Verdict::Send,
            "builtin.auto_send",
            format!(
                "confidence {confidence:.2} ≥ {:.2} and category {category} may be sent alone",
                rule.auto_send_min
            ),
        );
    }
    if confidence >= rule.approval_min {
        let why = if sensitive {
            format!("category {category} needs a person's approval")
        } else {
            format!(
                "confidence {confidence:.2} is below {:.2}",
                rule.auto_send_min
            )
        };
        return d(Verdict::NeedsApproval, "builtin.approval", why);
    }
    d(
        Verdict::Escalate,
        "builtin.low_confidence",
        format!(
            "confidence {confidence:.2} is below {:.2}",
            rule.approval_min
        ),
    )
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

    #[test]
    fn the_builtin_rule_on_a_table_of_cases() {
        let rule = ReplyRule::default();
        let cases = [
            (true, 0.95, "orders", Verdict::Escalate, "builtin.no_answer"),
            (false, 0.95, "orders", Verdict::Send, "builtin.auto_send"),
            (false, 0.60, "orders", Verdict::Send, "builtin.auto_send"),
            (
                false,
                0.59,
                "orders",
                Verdict::NeedsApproval,
                "builtin.approval",
            ),
            (
                false,
                0.95,
                "billing",
                Verdict::NeedsApproval,
                "builtin.approval",
            ),
            (
                false,
                0.30,
                "shipping",
                Verdict::NeedsApproval,
                "builtin.approval",
            ),
            (
                false,
                0.29,
                "shipping",
                Verdict::Escalate,
                "builtin.low_confidence",
            ),
            (
                false,
                0.10,
                "billing",
                Verdict::Escalate,
                "builtin.low_confidence",
            ),
        ];
        for (no_answer, confidence, category, verdict, id) in cases {
            let d = decide(&rule, no_answer, confidence, category);
            assert_eq!(
                (d.verdict, d.policy_ids[0].as_str()),
                (verdict, id),
                "{no_answer} {confidence} {category}"
            );
        }
    }
}
