//! Index life cycle: replace, delete, reindex, commit, reopen; and errors.

use payoff_knowledge::{chunk, IndexError, KnowledgeIndex, QUERY_CHARS_MAX};

use crate::{doc, groups, ids, index_of};

#[test]
fn replace_by_id_swaps_the_content() {
    let index = index_of(&[("acme", doc("kb-1", "Fruit", "We sell apples.", &[]))]);
    index
        .replace("acme", &doc("kb-1", "Fruit", "We sell oranges now.", &[]))
        .unwrap();
    // Not visible before the commit.
    assert_eq!(
        ids(&index.search("acme", "apples", &[], 10).unwrap()),
        ["kb-1"]
    );
    index.commit().unwrap();
    assert!(index.search("acme", "apples", &[], 10).unwrap().is_empty());
    assert_eq!(
        ids(&index.search("acme", "oranges", &[], 10).unwrap()),
        ["kb-1"]
    );
    assert_eq!(index.passage_count(), 1);
}

#[test]
fn replace_can_change_who_may_read() {
    let index = index_of(&[("acme", doc("kb-1", "Pay", "Salary bands by level.", &[]))]);
    index
        .replace(
            "acme",
            &doc("kb-1", "Pay", "Salary bands by level.", &["hr"]),
        )
        .unwrap();
    index.commit().unwrap();
    assert!(index.search("acme", "salary", &[], 10).unwrap().is_empty());
    assert_eq!(
        ids(&index
            .search("acme", "salary", &groups(&["hr"]), 10)
            .unwrap()),
        ["kb-1"]
    );
}

#[test]
fn delete_removes_only_that_customers_document() {
    let index = index_of(&[
        (
            "acme",
            doc("kb-1", "Returns", "Returns within 30 days.", &[]),
        ),
        ("acme", doc("kb-2", "Returns", "Returns of gifts.", &[])),
        (
            "globex",
            doc("kb-1", "Returns", "Returns within 14 days.", &[]),
        ),
    ]);
    index.delete("acme", "kb-1").unwrap();
    index.delete("acme", "no-such-document").unwrap();
    index.commit().unwrap();
    assert_eq!(
        ids(&index.search("acme", "returns", &[], 10).unwrap()),
        ["kb-2"]
    );
    assert_eq!(
        ids(&index.search("globex", "returns", &[], 10).unwrap()),
        ["kb-1"]
    );
}

#[test]
fn reindex_rebuilds_one_customer_from_the_given_documents() {
    let index = index_of(&[
        ("acme", doc("a", "Old", "Legacy returns policy.", &[])),
        ("acme", doc("b", "Billing", "Invoices monthly.", &[])),
        ("globex", doc("a", "Old", "Legacy returns policy.", &[])),
    ]);
    let passages = index
        .reindex(
            "acme",
            &[
                doc("b", "Billing", "Invoices quarterly.", &[]),
                doc("c", "Returns", "New returns policy.", &[]),
            ],
        )
        .unwrap();
    assert_eq!(passages, 2);
    index.commit().unwrap();
    assert_eq!(
        ids(&index.search("acme", "legacy", &[], 10).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&index.search("acme", "quarterly", &[], 10).unwrap()),
        ["b"]
    );
    assert!(index.search("acme", "monthly", &[], 10).unwrap().is_empty());
    assert_eq!(
        ids(&index.search("acme", "returns", &[], 10).unwrap()),
        ["c"]
    );
    assert_eq!(
        ids(&index.search("globex", "legacy", &[], 10).unwrap()),
        ["a"]
    );
}

#[test]
fn reindex_refuses_duplicates_and_changes_nothing() {
    let index = index_of(&[("acme", doc("a", "Returns", "Returns policy.", &[]))]);
    let err = index
        .reindex(
            "acme",
            &[doc("x", "X", "One.", &[]), doc("x", "X", "Two.", &[])],
        )
        .unwrap_err();
    assert_eq!(err.code(), "document_duplicate");
    index.commit().unwrap();
    assert_eq!(
        ids(&index.search("acme", "returns", &[], 10).unwrap()),
        ["a"]
    );
}

#[test]
fn hits_carry_the_heading_of_their_passage() {
    let filler = "Our team answers every message within one working day. ".repeat(20);
    let body = format!(
        "# Billing\n\n{filler}\n\n## Refunds\n\nRefunds are paid to the original card within five days.\n\n\
         ## Invoices\n\n{filler}"
    );
    let index = index_of(&[("acme", doc("kb-9", "Billing guide", &body, &[]))]);
    let hits = index.search("acme", "refunds card", &[], 10).unwrap();
    assert_eq!(hits[0].heading, "Billing > Refunds");
    assert!(hits[0].text.starts_with("Refunds are paid"));
    assert_eq!(chunk(&body).len(), index.passage_count() as usize);
}

#[test]
fn snippets_are_escaped_and_highlighted() {
    let body = "Never paste <script>alert('x')</script> & such into the refund form.";
    let index = index_of(&[("acme", doc("kb-1", "Refund <form>", body, &[]))]);
    let hit = &index.search("acme", "refund", &[], 10).unwrap()[0];
    assert!(
        hit.snippet_html.contains("<b>refund</b>"),
        "{}",
        hit.snippet_html
    );
    assert!(
        hit.snippet_html.contains("&lt;script&gt;"),
        "{}",
        hit.snippet_html
    );
    assert!(
        !hit.snippet_html.contains("<script"),
        "{}",
        hit.snippet_html
    );
    // A title-only match shows the escaped opening of the passage.
    let hit = &index.search("acme", "form", &[], 10).unwrap()[0];
    assert!(
        hit.snippet_html.contains("&lt;script&gt;"),
        "{}",
        hit.snippet_html
    );
}

#[test]
fn better_matches_rank_first() {
    let index = index_of(&[
        (
            "acme",
            doc(
                "shipping",
                "Shipping",
                "Parcels ship with DHL in two days.",
                &[],
            ),
        ),
        (
            "acme",
            doc(
                "password",
                "Password reset",
                "Reset your password from the sign-in page.",
                &[],
            ),
        ),
        (
            "acme",
            doc(
                "misc",
                "Account",
                "Your account page shows orders and the password settings.",
                &[],
            ),
        ),
    ]);
    let hits = index
        .search("acme", "how do I reset my password", &[], 10)
        .unwrap();
    assert_eq!(hits[0].doc_id, "password");
    assert_eq!(ids(&hits), ["misc", "password"]);
    assert!(hits[0].score > hits[1].score);
    assert_eq!(index.search("acme", "password", &[], 1).unwrap().len(), 1);
    assert!(index.search("acme", "password", &[], 0).unwrap().is_empty());
    assert!(index
        .search("acme", "how do I", &[], 10)
        .unwrap()
        .is_empty());
}

fn code<T: std::fmt::Debug>(result: Result<T, IndexError>) -> &'static str {
    result.unwrap_err().code()
}

#[test]
fn bad_search_arguments_are_refused() {
    let index = index_of(&[]);
    assert_eq!(code(index.search("", "x", &[], 10)), "customer_invalid");
    assert_eq!(
        code(index.search("acme", "x", &groups(&["Finance"]), 10)),
        "caller_group_invalid"
    );
    assert_eq!(
        code(index.search("acme", "x", &vec!["g".to_string(); 1025], 10)),
        "caller_groups_too_many"
    );
    let long = "x".repeat(QUERY_CHARS_MAX + 1);
    assert_eq!(code(index.search("acme", &long, &[], 10)), "query_too_long");
    let mut bad = doc("a", "A", "Body.", &[]);
    bad.body = "   ".into();
    assert_eq!(code(index.replace("acme", &bad)), "document_body_empty");
    assert_eq!(
        code(index.replace("ac\0me", &doc("a", "A", "B.", &[]))),
        "customer_invalid"
    );
}

#[test]
fn a_reopened_index_still_finds_documents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("knowledge");
    {
        let index = KnowledgeIndex::open(&path).unwrap();
        index
            .replace(
                "acme",
                &doc(
                    "kb-1",
                    "Returns",
                    "Returns are free within 30 days.",
                    &["support"],
                ),
            )
            .unwrap();
        index
            .replace("acme", &doc("kb-2", "Draft", "Never committed draft.", &[]))
            .unwrap();
        index.commit().unwrap();
        index
            .replace("acme", &doc("kb-3", "Draft", "Uncommitted draft.", &[]))
            .unwrap();
        // A second holder of the same directory is refused while this one lives.
        let second = KnowledgeIndex::open(&path);
        assert_eq!(second.err().map(|e| e.code()), Some("index_locked"));
    }
    let index = KnowledgeIndex::open(&path).unwrap();
    let hits = index
        .search("acme", "free returns", &groups(&["support"]), 10)
        .unwrap();
    assert_eq!(ids(&hits), ["kb-1"]);
    assert!(index
        .search("acme", "free returns", &[], 10)
        .unwrap()
        .is_empty());
    assert!(index
        .search("acme", "uncommitted", &[], 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&index.search("acme", "draft", &[], 10).unwrap()),
        ["kb-2"]
    );
}
