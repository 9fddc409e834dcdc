//! No caller ever sees, or is influenced by, a passage it may not read.

use payoff_knowledge::{synthetic_corpus, Document, KnowledgeIndex, HITS_MAX};

use crate::{doc, groups, ids, index_of};

const SHARED: &str =
    "The quarterly bonus payout schedule for the retail team is published each March.";

fn acme_and_globex() -> KnowledgeIndex {
    index_of(&[
        ("acme", doc("everyone", "Bonus payout", SHARED, &[])),
        (
            "acme",
            doc("finance-only", "Bonus payout", SHARED, &["finance"]),
        ),
        ("acme", doc("hr-only", "Bonus payout", SHARED, &["hr"])),
        (
            "acme",
            doc(
                "merger",
                "Project notes",
                "The merger codename is Bluebird and closes in May.",
                &["finance"],
            ),
        ),
        (
            "acme",
            doc("group-named-public", "Bonus payout", SHARED, &["public"]),
        ),
        (
            "globex",
            doc("globex-everyone", "Bonus payout", SHARED, &[]),
        ),
        (
            "globex",
            doc(
                "globex-merger",
                "Project notes",
                "The merger codename is Bluebird.",
                &[],
            ),
        ),
    ])
}

#[test]
fn each_caller_gets_exactly_the_documents_it_may_read() {
    let index = acme_and_globex();
    let cases: [(&[&str], &[&str]); 6] = [
        (&[], &["everyone"]),
        (&["finance"], &["everyone", "finance-only"]),
        (&["hr"], &["everyone", "hr-only"]),
        (&["finance", "hr"], &["everyone", "finance-only", "hr-only"]),
        (&["support"], &["everyone"]),
        (&["public"], &["everyone", "group-named-public"]),
    ];
    for (caller, expected) in cases {
        let hits = index
            .search("acme", "bonus payout schedule", &groups(caller), 50)
            .unwrap();
        assert_eq!(ids(&hits), groups(expected), "caller {caller:?}");
    }
}

#[test]
fn a_restricted_match_leaves_no_trace_for_an_unauthorised_caller() {
    let index = acme_and_globex();
    for caller in [&[][..], &["hr"], &["support", "hr"]] {
        let hits = index
            .search("acme", "bluebird merger codename", &groups(caller), 50)
            .unwrap();
        assert!(hits.is_empty(), "caller {caller:?} saw {hits:?}");
    }
    let hits = index
        .search(
            "acme",
            "bluebird merger codename",
            &groups(&["finance"]),
            50,
        )
        .unwrap();
    assert_eq!(ids(&hits), ["merger"]);
    assert!(
        hits[0].snippet_html.contains("<b>Bluebird</b>"),
        "{}",
        hits[0].snippet_html
    );
}

#[test]
fn customers_never_see_each_other() {
    let index = acme_and_globex();
    let all = groups(&["finance", "hr", "public", "support"]);
    let hits = index
        .search("globex", "bonus payout bluebird", &all, 50)
        .unwrap();
    assert_eq!(ids(&hits), ["globex-everyone", "globex-merger"]);
    for caller in [&[][..], &["hr"]] {
        let hits = index
            .search("acme", "bluebird", &groups(caller), 50)
            .unwrap();
        assert!(
            hits.is_empty(),
            "acme caller {caller:?} saw globex: {hits:?}"
        );
    }
    assert!(index
        .search("initech", "bonus", &all, 50)
        .unwrap()
        .is_empty());
    // Naming a field is not query syntax: it is just two more words.
    let hits = index
        .search("acme", "customer:globex acl:public bluebird", &[], 50)
        .unwrap();
    assert!(hits.is_empty(), "{hits:?}");
}

/// BM25 statistics come from readable passages only: adding passages the
/// caller cannot read must not move a single score or snippet.
#[test]
fn scores_and_snippets_ignore_unreadable_passages() {
    let public = [
        (
            "acme",
            doc(
                "a",
                "Refunds",
                "Refunds are paid within five days of the return.",
                &[],
            ),
        ),
        (
            "acme",
            doc(
                "b",
                "Shipping",
                "Returns ship free with a prepaid label from the portal.",
                &[],
            ),
        ),
    ];
    let mut with_secrets = public.to_vec();
    for i in 0..20 {
        let id = format!("secret-{i}");
        with_secrets.push((
            "acme",
            doc(
                &id,
                "Refunds",
                "Refunds refunds returns prepaid.",
                &["finance"],
            ),
        ));
        with_secrets.push((
            "globex",
            doc(&id, "Refunds", "Refunds returns prepaid label.", &[]),
        ));
    }
    let plain = index_of(&public);
    let busy = index_of(&with_secrets);
    let query = "refunds for a prepaid return";
    let a = plain.search("acme", query, &groups(&["hr"]), 10).unwrap();
    let b = busy.search("acme", query, &groups(&["hr"]), 10).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.doc_id, y.doc_id);
        assert_eq!(x.snippet_html, y.snippet_html);
        assert!(
            (x.score - y.score).abs() < 1e-5,
            "{} vs {}",
            x.score,
            y.score
        );
    }
}

/// Brute force over a generated corpus: for every customer, caller and
/// query word, the documents found are exactly the readable documents of
/// that customer containing the word.
#[test]
fn generated_corpus_matches_brute_force() {
    let corpus = synthetic_corpus(120, 11);
    let docs: Vec<(&str, Document)> = corpus
        .iter()
        .map(|(c, d)| (c.as_str(), d.clone()))
        .collect();
    let index = index_of(&docs);
    let callers: [&[&str]; 5] = [
        &[],
        &["support"],
        &["finance"],
        &["hr", "support"],
        &["finance", "hr", "support"],
    ];
    for customer in ["acme", "globex", "initech", "umbrella", "nobody"] {
        for caller in callers {
            for word in ["refund", "password", "invoice", "parcel", "order"] {
                let hits = index
                    .search(customer, word, &groups(caller), HITS_MAX)
                    .unwrap();
                assert!(
                    hits.len() < HITS_MAX,
                    "corpus too large for an exact comparison"
                );
                let mut expected: Vec<String> = corpus
                    .iter()
                    .filter(|(c, d)| {
                        c == customer
                            && (d.groups.is_empty()
                                || d.groups.iter().any(|g| caller.contains(&g.as_str())))
                            && format!("{} {}", d.title, d.body)
                                .to_lowercase()
                                .contains(word)
                    })
                    .map(|(_, d)| d.id.clone())
                    .collect();
                expected.sort();
                assert_eq!(ids(&hits), expected, "{customer} {caller:?} {word}");
            }
        }
    }
}
