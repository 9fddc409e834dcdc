//! Uploads: every format, and every refusal naming its line and field.

use std::fs;
use std::path::Path;

use payoff_knowledge::{
    chunk, parse_document, parse_json_lines, DocumentMeta, Format, BODY_BYTES_MAX,
};

/// Each `inputs/NAME.jsonl` has `inputs/NAME.expected`: `ok N` for N
/// documents, or the exact error message.
#[test]
fn json_lines_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/knowledge/inputs");
    let mut cases = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let input = fs::read_to_string(&path).unwrap();
        let expected = fs::read_to_string(path.with_extension("expected")).unwrap();
        let got = match parse_json_lines(&input) {
            Ok(docs) => format!("ok {}", docs.len()),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected.trim_end(), "{}", path.display());
        cases += 1;
    }
    assert!(cases >= 10, "only {cases} cases found");
}

fn meta(id: &str) -> DocumentMeta {
    DocumentMeta {
        id: id.into(),
        ..Default::default()
    }
}

#[test]
fn html_keeps_headings_and_drops_scripts() {
    let html = "<!doctype html><html><head><title>Help centre</title><style>h1{}</style></head>\
        <body><nav>Home | Account</nav><h1>Returns</h1><p>Send items back within <em>30&nbsp;days</em>.</p>\
        <script>track('refund')</script><h2>Refunds</h2><p>Paid in five days.</p></body></html>";
    let d = parse_document(Format::Html, meta("kb-1"), html).unwrap();
    assert_eq!(d.title, "Help centre");
    assert_eq!(
        d.body,
        "# Returns\n\nSend items back within 30 days.\n\n## Refunds\n\nPaid in five days."
    );
    let passages = chunk(&d.body);
    assert_eq!(passages[1].heading, "Returns > Refunds");
    assert!(!d.body.contains("track") && !d.body.contains("Home"));
}

#[test]
fn titles_come_from_meta_then_the_file_then_the_id() {
    let md = parse_document(
        Format::Markdown,
        meta("a"),
        "# Shipping *times*\n\nTwo days.",
    )
    .unwrap();
    assert_eq!(md.title, "Shipping *times*");
    let hashtag = parse_document(Format::Markdown, meta("h"), "#hashtag\n\n## Real").unwrap();
    assert_eq!(hashtag.title, "Real");
    let given = DocumentMeta {
        title: Some("Given".into()),
        ..meta("a")
    };
    assert_eq!(
        parse_document(Format::Markdown, given, "# Other\n\nx")
            .unwrap()
            .title,
        "Given"
    );
    let text = parse_document(
        Format::PlainText,
        meta("b"),
        "\n  First line here\n# not a heading",
    )
    .unwrap();
    assert_eq!(text.title, "First line here");
    assert_eq!(chunk(&text.body)[0].text, "First line here # not a heading");
    assert_eq!(chunk(&text.body)[0].heading, "");
    let html = parse_document(Format::Html, meta("c"), "<p>No title at all.</p>").unwrap();
    assert_eq!(html.title, "c");
}

#[test]
fn single_uploads_are_refused_with_the_field_named() {
    let code = |format, meta, input: &str| parse_document(format, meta, input).unwrap_err().code();
    assert_eq!(
        code(Format::Html, meta("a"), "<script>only()</script>"),
        "document_body_empty"
    );
    assert_eq!(code(Format::Markdown, meta(""), "x"), "document_id_empty");
    assert_eq!(
        code(Format::Markdown, meta(&"i".repeat(257)), "x"),
        "document_id_too_long"
    );
    let big = "word ".repeat(BODY_BYTES_MAX / 5 + 1);
    let err = parse_document(Format::PlainText, meta("big"), &big).unwrap_err();
    assert_eq!(err.code(), "document_body_too_large");
    assert!(
        err.to_string()
            .starts_with("document `big`: field `body`: 2097155 bytes"),
        "{err}"
    );
    let many = DocumentMeta {
        groups: (0..65).map(|i| format!("g{i}")).collect(),
        ..meta("a")
    };
    assert_eq!(
        code(Format::Markdown, many, "x"),
        "document_groups_too_many"
    );
    let bad = DocumentMeta {
        groups: vec!["ops team".into()],
        ..meta("a")
    };
    assert_eq!(code(Format::Markdown, bad, "x"), "document_group_invalid");
}

#[test]
fn media_types_map_to_formats() {
    assert_eq!(
        Format::from_media_type("text/html; charset=utf-8"),
        Some(Format::Html)
    );
    assert_eq!(
        Format::from_media_type("text/markdown"),
        Some(Format::Markdown)
    );
    assert_eq!(
        Format::from_media_type("TEXT/PLAIN"),
        Some(Format::PlainText)
    );
    assert_eq!(Format::from_media_type("application/pdf"), None);
}
