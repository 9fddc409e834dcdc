//! The fuzz targets: each takes arbitrary bytes and feeds them to one
//! parser that takes outside input, checking what must hold of its answer.
//! `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run NAME`); the
//! tests here run each over its seeds (`fuzz/seeds/NAME/`), the inputs
//! that once crashed it (`fuzz/regressions/NAME/`) and a few thousand
//! mutations of them, so CI smoke-runs every target on stable.
//!
//! A target panics only when the code under test breaks a promise: a
//! panic, a 5xx, an answer that does not round-trip. Refusals are fine.

use std::sync::OnceLock;

use payoff_billing::{Bundle, Statement};
use payoff_knowledge::{DocumentMeta, Format};
use payoff_ledger::{decode_http, Event, EventLimits, HttpDecodeError};

mod dashboard;
pub use dashboard::dashboard;

/// A target's body: bytes in, a panic only on a broken promise.
pub type Target = fn(&[u8]);

/// Every target, by the name `fuzz/` and the seed folders use.
pub const TARGETS: [(&str, Target); 9] = [
    ("contract", contract),
    ("cedar", cedar),
    ("events", events),
    ("knowledge", knowledge),
    ("verify", verify),
    ("dashboard", dashboard),
    ("traces", traces),
    ("prices", prices),
    ("actions", actions),
];

/// A contract file (TOML and its CEL rules), as `contract push` and
/// `PUT …/contract` take it.
pub fn contract(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = payoff_billing::Contract::parse("fuzz.toml", text) {
        // A contract that loads can say which events it reads.
        let _ = payoff_billing::TypeFilter::of(&[&c]).types();
    }
}

/// A customer's Cedar rules for the support agent, checked and then
/// deciding a ticket, as `POST …/policies` does.
pub fn cedar(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Built once: what a server holds for its life.
    static BUILTIN: OnceLock<payoff_policy::AgentRules> = OnceLock::new();
    let builtin = BUILTIN.get_or_init(|| {
        payoff_policy::AgentRules::builtin(&payoff_policy::ReplyRule::default())
            .expect("the built-in rules load")
    });
    if let Ok(rules) = builtin.with_customer("fuzz", text) {
        let decision = rules.decide(
            "support",
            &payoff_policy::TicketFacts {
                ticket: "T-1",
                customer: "acme",
                category: "billing",
                confidence: 0.5,
                no_answer: false,
                citations: 1,
                requester: "a@example.com",
            },
        );
        assert!(!decision.policy_ids.is_empty() || !decision.reason.is_empty());
    }
}

/// A customer's action schema and rules, then one question, as
/// `POST …/action-rules` and `POST /v1/actions` take them: the three
/// parts separated by lines holding only `%%`. Whatever compiles decides
/// the question or names the field it cannot type; what it may show an
/// agent is decided too.
pub fn actions(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, "\n%%\n");
    let (Some(schema), Some(rules)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(compiled) = payoff_policy::ActionRules::compile("fuzz", schema, rules) else {
        return;
    };
    let question: serde_json::Value = parts
        .next()
        .and_then(|q| serde_json::from_str(q).ok())
        .unwrap_or_default();
    let text = |k: &str| question[k].as_str().unwrap_or("x").to_owned();
    let (agent, action) = (text("agent"), text("action"));
    let resource = &question["resource"];
    let (kind, id) = (
        resource["type"].as_str().unwrap_or("Order"),
        resource["id"].as_str().unwrap_or("o-1"),
    );
    match compiled.decide(&payoff_policy::ActionQuestion {
        agent: &agent,
        action: &action,
        resource_type: kind,
        resource_id: id,
        resource_attributes: &resource["attributes"],
        context: &question["context"],
    }) {
        Ok(d) => assert!(!d.reason.is_empty(), "a decision says why"),
        Err(e) => assert!(!e.field.is_empty() && !e.message.is_empty()),
    }
    let _ = compiled.reachable(&agent, &action, payoff_policy::MCP_SERVER_TYPE, id);
}

/// One HTTP request to `POST /v1/events`: header lines (`name: value`),
/// a blank line, the body. Structured, batch and binary mode all come
/// through here, as they do in the server.
pub fn events(data: &[u8]) {
    let (head, body) = match find(data, b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut headers: Vec<(String, &[u8])> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = std::str::from_utf8(&line[..colon]) else {
            continue;
        };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        headers.push((name.trim().to_ascii_lowercase(), value));
    }
    let content_type = headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .unwrap_or("")
        .to_owned();
    let pairs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    match decode_http(&content_type, &pairs, body, &EventLimits::default()) {
        Ok(events) => {
            for e in events {
                // What is stored reads back as the same event.
                let again = Event::from_canonical(&e.canonical).expect("stored bytes read back");
                assert_eq!(again.canonical, e.canonical);
                assert_eq!((again.id, again.source), (e.id, e.source));
            }
        }
        Err(HttpDecodeError::Invalid(errors)) => assert!(!errors.is_empty()),
        Err(HttpDecodeError::UnsupportedMediaType(why)) => assert!(!why.is_empty()),
    }
}

/// An OTLP export to `POST /v1/traces`: the first byte picks the
/// encoding (even: protobuf, odd: JSON), the rest is the body.
pub fn traces(data: &[u8]) {
    use payoff_ledger::otlp::{self, Encoding};
    use prost::Message as _;
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let encoding = if pick % 2 == 0 {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let Ok(request) = otlp::decode(body, encoding) else {
        return;
    };
    // What was read is what protobuf carries: it encodes and reads back
    // as the same request.
    let again = otlp::decode(&request.encode_to_vec(), Encoding::Protobuf)
        .expect("an encoded request reads back");
    assert_eq!(again, request);
    let read = otlp::events(&request, &otlp::TraceSettings::default());
    assert!(read.events.len() + read.rejected.len() <= read.spans);
    for (index, event) in read.events {
        assert!(index < read.spans);
        // Whatever the ledger refuses, it refuses naming the field.
        if let Err(errors) = payoff_ledger::validate_event(event, &EventLimits::default()) {
            assert!(!errors.is_empty());
        }
    }
}

/// LiteLLM's price file, as `payoff prices import` reads it: whatever it
/// makes is a price table that stores and reads back the same.
pub fn prices(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let effective = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
    if let Ok(imported) = payoff_billing::litellm::import(text, effective, &[]) {
        let toml = imported.table.to_toml();
        let back = payoff_billing::PriceTable::parse(&toml).expect("an imported table reads back");
        assert_eq!(back, imported.table);
    }
}

/// A knowledge upload: the first byte picks the format (Markdown, plain
/// text, HTML or JSON Lines), the rest is the file.
pub fn knowledge(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = match pick % 4 {
        0 => Format::Markdown,
        1 => Format::PlainText,
        2 => Format::Html,
        _ => {
            if let Ok(docs) = payoff_knowledge::parse_json_lines(text) {
                for d in docs {
                    let _ = payoff_knowledge::chunk(&d.body);
                }
            }
            return;
        }
    };
    let meta = DocumentMeta {
        id: "kb-1".into(),
        ..Default::default()
    };
    if let Ok(doc) = payoff_knowledge::parse_document(format, meta, text) {
        let _ = payoff_knowledge::chunk(&doc.body);
    }
}

/// What `payoff verify` reads: a statement, a NUL byte, its evidence
/// bundle; verified against the key the seeds are signed with.
pub fn verify(data: &[u8]) {
    let (statement, bundle) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => return,
    };
    let (Ok(statement), Ok(bundle)) = (
        serde_json::from_slice::<Statement>(statement),
        serde_json::from_slice::<Bundle>(bundle),
    ) else {
        return;
    };
    let key = SEED_KEY.get_or_init(|| ed25519_dalek::SigningKey::from_bytes(&[7; 32]));
    let _ = payoff_billing::verify(&statement, &bundle, &key.verifying_key());
}

/// The key `crates/payoff-billing/tests/cases.rs` signs the corpus with,
/// which writes the `verify` seeds.
static SEED_KEY: OnceLock<ed25519_dalek::SigningKey> = OnceLock::new();

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
