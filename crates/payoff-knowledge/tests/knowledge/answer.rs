//! Extractive answers over real searches.

use payoff_knowledge::{answer_extractive, KnowledgeIndex};

use crate::{doc, groups, index_of};

fn help_centre() -> KnowledgeIndex {
    let refunds = "# Returns\n\n## Refund timing\n\n\
        Refunds are paid to the original payment method within five business days after we receive the item. \
        You will get an email when the refund is issued.\n\n\
        ## Return window\n\nYou can return most items within 30 days of delivery.";
    index_of(&[
        ("acme", doc("returns", "Returns and refunds", refunds, &[])),
        (
            "acme",
            doc(
                "passwords",
                "Resetting your password",
                "Click Forgot password on the sign-in page. The reset link expires after 24 hours.",
                &[],
            ),
        ),
        (
            "acme",
            doc(
                "shipping",
                "Shipping",
                "Standard delivery takes three business days. Express delivery arrives the next day.",
                &[],
            ),
        ),
        (
            "acme",
            doc(
                "bonus",
                "Bonus policy",
                "Annual bonuses are paid in March to employees rated above target.",
                &["hr"],
            ),
        ),
    ])
}

#[test]
fn answers_cite_the_passage_they_come_from() {
    let index = help_centre();
    let question = "How long do refunds take to be paid?";
    let hits = index.search("acme", question, &[], 5).unwrap();
    let answer = answer_extractive(&hits, question);
    assert!(!answer.no_answer, "{answer:?}");
    assert!(
        answer
            .text
            .starts_with("Refunds are paid to the original payment method"),
        "{}",
        answer.text
    );
    assert!(answer.text.contains(" [1]"), "{}", answer.text);
    assert_eq!(answer.citations[0].n, 1);
    assert_eq!(answer.citations[0].doc_id, "returns");
    assert_eq!(
        answer.citations[0].url.as_deref(),
        Some("https://help.example/returns")
    );
    assert!(answer.confidence > 0.3, "{}", answer.confidence);

    let question = "When does the password reset link expire?";
    let answer = answer_extractive(&index.search("acme", question, &[], 5).unwrap(), question);
    assert_eq!(answer.text, "The reset link expires after 24 hours. [1]");
    assert_eq!(answer.citations[0].doc_id, "passwords");
}

#[test]
fn questions_outside_the_knowledge_get_no_answer() {
    let index = help_centre();
    for question in [
        "What is the capital of France?",
        "How do I return a spaceship?",
        "Can I pay the refund in bitcoin to my spaceship?",
        "?",
    ] {
        let answer = answer_extractive(&index.search("acme", question, &[], 5).unwrap(), question);
        assert!(answer.no_answer, "{question}: {answer:?}");
        assert!(answer.text.is_empty() && answer.citations.is_empty());
        assert_eq!(answer.confidence, 0.0);
    }
}

#[test]
fn answers_come_only_from_readable_passages() {
    let index = help_centre();
    let question = "When are annual bonuses paid?";
    let answer = answer_extractive(&index.search("acme", question, &[], 5).unwrap(), question);
    assert!(answer.no_answer, "{answer:?}");
    let hits = index.search("acme", question, &groups(&["hr"]), 5).unwrap();
    let answer = answer_extractive(&hits, question);
    assert_eq!(answer.citations[0].doc_id, "bonus");
}
