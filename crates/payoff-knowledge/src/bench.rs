//! A seeded, reproducible corpus of support articles for benchmarks and
//! load tests of search.

use crate::chunk::{PASSAGE_WORDS_MAX, PASSAGE_WORDS_MIN};
use crate::document::Document;

/// Customers of the corpus, most articles to the first.
const CUSTOMERS: &[&str] = &["acme", "globex", "initech", "umbrella"];
const PRODUCTS: &[&str] = &[
    "Aurora desk lamp",
    "Basalt backpack",
    "Cirrus headphones",
    "Delta running shoes",
    "Ember kettle",
    "Fjord rain jacket",
    "Granite water bottle",
    "Harbor office chair",
];
const PLANS: &[&str] = &["Starter", "Team", "Business", "Enterprise"];
const CARRIERS: &[&str] = &["DHL", "UPS", "FedEx", "La Poste", "Royal Mail"];

struct Topic {
    name: &'static str,
    titles: &'static [&'static str],
    sections: &'static [&'static str],
    sentences: &'static [&'static str],
}

/// Sentences use `{product}`, `{plan}`, `{carrier}`, `{days}` and `{amount}`.
const TOPICS: &[Topic] = &[
    Topic {
        name: "orders",
        titles: &["Placing and changing an order", "Tracking your {product} order", "Order confirmation emails"],
        sections: &["Placing an order", "Changing an order", "Cancelling an order", "Order status", "Order history"],
        sentences: &[
            "You can change the delivery address of an order until it has been packed, usually within {days} hours.",
            "Open Orders in your account and select the order you want to change.",
            "An order for the {product} is confirmed by email as soon as the payment is authorised.",
            "If you did not receive a confirmation email, check your spam folder before contacting support.",
            "Orders placed before 2 pm are packed on the same business day.",
            "To cancel an order, choose Cancel order on the order page; a cancelled order is refunded in full.",
            "Orders that have already shipped cannot be cancelled, but they can be returned once delivered.",
            "The order status moves from Received to Packed, Shipped and Delivered.",
            "Your order history keeps every order of the last {days} months, with invoices to download.",
            "Business customers on the {plan} plan can add a purchase order number at checkout.",
            "Split orders ship in several parcels, each with its own tracking number.",
            "Gift orders are sent without prices on the packing slip.",
        ],
    },
    Topic {
        name: "returns",
        titles: &["Returning an item", "Return policy for the {product}", "Refunds after a return"],
        sections: &["Return window", "Starting a return", "Refund timing", "Damaged items", "Exchanges"],
        sentences: &[
            "You can return most items within {days} days of delivery for a full refund.",
            "Start a return from the order page and print the prepaid {carrier} label.",
            "Refunds are issued to the original payment method within {days} business days after we receive the item.",
            "Items must be unused and in their original packaging to be eligible for a refund.",
            "If the {product} arrived damaged, send us a photo and we will replace it at no cost.",
            "Exchanges for a different size or colour are free of charge.",
            "Return shipping is free for orders above {amount} euros.",
            "Personalised items cannot be returned unless they are faulty.",
            "We email you when your return has been received and inspected.",
            "A refund for a gift return is issued as store credit to the recipient.",
            "Drop the parcel at any {carrier} point; keep the receipt until the refund arrives.",
            "Partial refunds apply when an item comes back used or incomplete.",
        ],
    },
    Topic {
        name: "billing",
        titles: &["Invoices and payment methods", "Understanding your {plan} plan bill", "Failed payments"],
        sections: &["Invoices", "Payment methods", "Failed payments", "Changing plan", "VAT and taxes"],
        sentences: &[
            "Invoices are issued on the first day of each month and sent to the billing contact.",
            "The {plan} plan is billed monthly in advance at {amount} euros per seat.",
            "You can pay by card, SEPA direct debit or bank transfer.",
            "When a card payment fails we retry it three times over {days} days before suspending the account.",
            "Update the card on file under Billing, Payment methods.",
            "Upgrading your plan takes effect immediately and is charged pro rata.",
            "Downgrades take effect at the start of the next billing period.",
            "VAT is added according to the billing address; enter a VAT number to apply the reverse charge.",
            "Credit notes are issued for any refund and appear next to the invoice they correct.",
            "Download past invoices as PDF from the billing history.",
            "Annual billing saves two months compared with paying monthly.",
            "Disputed charges are investigated within {days} business days.",
        ],
    },
    Topic {
        name: "passwords",
        titles: &["Resetting your password", "Two-factor authentication", "Account security"],
        sections: &["Forgotten password", "Password rules", "Two-factor authentication", "Locked accounts", "Single sign-on"],
        sentences: &[
            "To reset your password, click Forgot password on the sign-in page and follow the link we email you.",
            "The reset link expires after {days} hours; request a new one if it has expired.",
            "Passwords must have at least twelve characters and may not repeat one of your last five passwords.",
            "After five failed sign-in attempts the account is locked for fifteen minutes.",
            "Turn on two-factor authentication under Security to protect your account.",
            "Recovery codes let you sign in if you lose the phone with your authenticator app.",
            "Administrators on the {plan} plan can require two-factor authentication for every member.",
            "Single sign-on through your identity provider replaces passwords for your whole organisation.",
            "We never ask for your password by email or phone.",
            "If you suspect someone else used your account, reset your password and sign out all sessions.",
            "Password reset emails come from a no-reply address; check your spam folder.",
            "Support can unlock an account only after verifying the account owner's identity.",
        ],
    },
    Topic {
        name: "shipping",
        titles: &["Shipping times and costs", "International shipping", "Shipping the {product}"],
        sections: &["Delivery times", "Shipping costs", "International orders", "Tracking a parcel", "Missing parcels"],
        sentences: &[
            "Standard delivery takes {days} business days; express delivery arrives the next business day.",
            "Shipping is free for orders above {amount} euros; below that it costs 4.90 euros.",
            "We ship with {carrier}, and the tracking link is in your shipping confirmation email.",
            "International orders may be subject to import duties, which the recipient pays.",
            "Parcels to islands and remote areas can take two extra days.",
            "If tracking shows delivered but you have no parcel, check with neighbours and then contact us.",
            "A parcel that is not delivered within {days} days of shipping is investigated with the carrier.",
            "The {product} ships in recyclable packaging.",
            "We cannot change the delivery address once the parcel has been handed to {carrier}.",
            "Pick-up points hold parcels for {days} days before returning them to us.",
            "Large items such as the {product} are delivered by appointment.",
            "Express shipping is not available for orders with pre-order items.",
        ],
    },
];

/// Deterministic across platforms and Rust versions (unlike the `rand`
/// crate's `StdRng`, whose algorithm may change), so a benchmark seed names
/// one corpus forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Support articles (orders, returns, billing, passwords, shipping) for
/// `n_passages` passages in all, as `(customer, document)` pairs. The same
/// seed always gives the same corpus.
///
/// Each section is written to be exactly one passage, so indexing the
/// corpus yields `n_passages` passages. About half the articles are public;
/// the rest are restricted to `support`, `finance`, `hr` or two groups.
///
/// ```
/// let corpus = payoff_knowledge::synthetic_corpus(50, 7);
/// let passages: usize = corpus.iter().map(|(_, d)| payoff_knowledge::chunk(&d.body).len()).sum();
/// assert_eq!(passages, 50);
/// ```
pub fn synthetic_corpus(n_passages: usize, seed: u64) -> Vec<(String, Document)> {
    let mut rng = SplitMix64(seed);
    let mut out = Vec::new();
    let mut remaining = n_passages;
    while remaining > 0 {
        let sections = (1 + rng.below(4)).min(remaining);
        remaining -= sections;
        let number = out.len();
        out.push(article(&mut rng, number, sections));
    }
    out
}

fn article(rng: &mut SplitMix64, number: usize, sections: usize) -> (String, Document) {
    // Skewed: the first customer has the most articles, as real tenants do.
    let customer = CUSTOMERS[rng.below(CUSTOMERS.len()).min(rng.below(CUSTOMERS.len()))];
    let topic = rng.pick(TOPICS);
    let title_template = rng.pick(topic.titles);
    let title = fill(rng, title_template);
    let mut body = format!("# {title}\n\n");
    let mut headings: Vec<&str> = topic.sections.to_vec();
    for _ in 0..sections {
        let heading = headings.remove(rng.below(headings.len()));
        body.push_str(&format!("## {heading}\n\n"));
        body.push_str(&section_text(rng, topic));
        body.push_str("\n\n");
    }
    let groups: Vec<String> = match rng.below(20) {
        0..=10 => vec![],
        11..=13 => vec!["support".into()],
        14..=15 => vec!["finance".into()],
        16..=17 => vec!["hr".into()],
        _ => vec!["finance".into(), "support".into()],
    };
    let id = format!("kb-{}-{number:06}", topic.name);
    let url = (rng.below(5) > 0).then(|| format!("https://help.{customer}.example/articles/{id}"));
    let document = Document {
        id,
        title,
        url,
        body: body.trim_end().to_owned(),
        groups,
    };
    (customer.to_owned(), document)
}

/// A few paragraphs of distinct sentences, at most `PASSAGE_WORDS_MAX`
/// words in all, so the chunker keeps the section as one passage.
fn section_text(rng: &mut SplitMix64, topic: &Topic) -> String {
    let target = PASSAGE_WORDS_MIN + rng.below(PASSAGE_WORDS_MAX - PASSAGE_WORDS_MIN - 30);
    let mut templates: Vec<&str> = topic.sentences.to_vec();
    let mut paragraphs: Vec<Vec<String>> = vec![Vec::new()];
    let mut words = 0;
    while words < target && !templates.is_empty() {
        let template = templates.swap_remove(rng.below(templates.len()));
        let sentence = fill(rng, template);
        let n = sentence.split_whitespace().count();
        if words + n > PASSAGE_WORDS_MAX {
            break;
        }
        words += n;
        let paragraph = paragraphs.last_mut().expect("starts with one paragraph");
        paragraph.push(sentence);
        if paragraph.len() >= 3 && rng.below(2) == 0 {
            paragraphs.push(Vec::new());
        }
    }
    paragraphs
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn fill(rng: &mut SplitMix64, template: &str) -> String {
    let mut out = template.to_owned();
    for (placeholder, choices) in [
        ("{product}", PRODUCTS),
        ("{plan}", PLANS),
        ("{carrier}", CARRIERS),
    ] {
        while out.contains(placeholder) {
            let choice: &&str = rng.pick(choices);
            out = out.replacen(placeholder, choice, 1);
        }
    }
    while out.contains("{days}") {
        out = out.replacen("{days}", &(2 + rng.below(29)).to_string(), 1);
    }
    while out.contains("{amount}") {
        out = out.replacen("{amount}", &(20 + 5 * rng.below(17)).to_string(), 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::chunk;

    #[test]
    fn same_seed_same_corpus_and_exact_passage_count() {
        for n in [1, 2, 17, 300] {
            let corpus = synthetic_corpus(n, 42);
            assert_eq!(corpus, synthetic_corpus(n, 42));
            let passages: usize = corpus.iter().map(|(_, d)| chunk(&d.body).len()).sum();
            assert_eq!(passages, n);
            for (_, d) in &corpus {
                assert_eq!(d.validate(), Ok(()));
            }
        }
        assert_ne!(synthetic_corpus(20, 1), synthetic_corpus(20, 2));
    }

    #[test]
    fn no_sentence_repeats_within_a_section() {
        for (_, d) in synthetic_corpus(200, 5) {
            for passage in chunk(&d.body) {
                let sentences = crate::text::split_sentences(&passage.text);
                let distinct: std::collections::HashSet<_> = sentences.iter().collect();
                assert_eq!(distinct.len(), sentences.len(), "{}", passage.text);
            }
        }
    }

    #[test]
    fn acls_and_customers_vary() {
        let corpus = synthetic_corpus(400, 3);
        assert!(corpus.iter().any(|(_, d)| d.groups.is_empty()));
        assert!(corpus.iter().any(|(_, d)| d.groups.len() == 2));
        for customer in CUSTOMERS {
            assert!(corpus.iter().any(|(c, _)| c == customer), "{customer}");
        }
    }
}
