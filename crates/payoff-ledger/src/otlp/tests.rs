//! The cases of `tests/otlp/` (a user adds a case there, not here), each
//! read as JSON and as protobuf, and the ways a request can be malformed.

use std::path::Path;

use super::*;

fn cases() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/otlp");
    let mut cases: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("tests/otlp")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("case");
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let case = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, case)
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

#[test]
fn every_case_reads_the_same_events_from_json_and_from_protobuf() {
    let cases = cases();
    assert!(cases.len() >= 4, "the cases of tests/otlp are missing");
    for (name, case) in cases {
        let settings = match case.get("settings") {
            Some(s) => TraceSettings {
                subject_attribute: s["subject_attribute"]
                    .as_str()
                    .expect("subject_attribute")
                    .into(),
            },
            None => TraceSettings::default(),
        };
        let body = serde_json::to_vec(&case["request"]).unwrap();
        let from_json = decode(&body, Encoding::Json).unwrap_or_else(|e| panic!("{name}: {e}"));
        let protobuf = from_json.encode_to_vec();
        let from_protobuf =
            decode(&protobuf, Encoding::Protobuf).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(from_json, from_protobuf, "{name}");

        let read = events(&from_json, &settings);
        assert_eq!(
            read.spans as u64,
            case["spans"].as_u64().unwrap(),
            "{name}: spans"
        );
        let expected: Vec<(usize, Value)> = serde_json::from_value(case["events"].clone()).unwrap();
        assert_eq!(
            read.events.len(),
            expected.len(),
            "{name}: {:#?}",
            read.events
        );
        for ((index, got), (want_index, want)) in read.events.iter().zip(&expected) {
            assert_eq!(index, want_index, "{name}");
            assert_eq!(
                got, want,
                "{name}: span {index}\ngot  {got:#}\nwant {want:#}"
            );
            // Every event is one the ledger takes as it is.
            crate::validate_event(got.clone(), &crate::EventLimits::default())
                .unwrap_or_else(|e| panic!("{name}: span {index}: {e:?}"));
        }
        let rejected: Vec<(usize, String)> =
            serde_json::from_value(case.get("rejected").cloned().unwrap_or(json!([]))).unwrap();
        assert_eq!(
            read.rejected.len(),
            rejected.len(),
            "{name}: {:?}",
            read.rejected
        );
        for ((index, why), (want_index, needle)) in read.rejected.iter().zip(&rejected) {
            assert_eq!(index, want_index, "{name}");
            assert!(why.contains(needle.as_str()), "{name}: {why}");
        }
        // No prompt, completion or tool argument reaches the ledger.
        let stored = serde_json::to_string(&read.events).unwrap();
        for secret in ["card number", "private text", "secret", "amount"] {
            assert!(!stored.contains(secret), "{name}: {secret} was copied");
        }
    }
}

#[test]
fn a_malformed_request_is_refused_with_the_reason() {
    for (body, encoding, needle) in [
        (&b"{"[..], Encoding::Json, "not an OTLP JSON export request"),
        (b"[1]", Encoding::Json, "not an OTLP JSON export request"),
        (b"\xff\xfe", Encoding::Json, "not UTF-8"),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
            Encoding::Json,
            "not a hex trace or span id",
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"soon"}]}]}]}"#,
            Encoding::Json,
            "not a 64-bit integer",
        ),
        (
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":{"bytesValue":"!!"}}]}]}]}]}"#,
            Encoding::Json,
            "bytesValue is not base64",
        ),
        (b"\x0a\xff\xff\xff", Encoding::Protobuf, "not an OTLP protobuf export request"),
        (b"garbage that is no protobuf", Encoding::Protobuf, "not an OTLP protobuf"),
    ] {
        let e = decode(body, encoding).unwrap_err();
        assert!(e.0.contains(needle), "{:?}: {e}", String::from_utf8_lossy(body));
    }
}

/// An attribute value nested `depth` levels of arrays deep.
fn nested(depth: usize) -> AnyValue {
    let mut value = AnyValue {
        value: Some(Scalar::Int(1)),
    };
    for _ in 0..depth {
        value = AnyValue {
            value: Some(Scalar::Array(ArrayValue {
                values: vec![value],
            })),
        };
    }
    value
}

fn request_with(value: AnyValue) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "deep".into(),
                    value: Some(value),
                }],
            }),
            scope_spans: vec![],
        }],
    }
}

#[test]
fn nesting_is_bounded_before_it_can_exhaust_the_stack() {
    // JSON: within the bound is read, beyond it refused before parsing.
    let json_of = |depth: usize| {
        let v = format!(
            r#"{}{{"intValue":"1"}}{}"#,
            r#"{"arrayValue":{"values":["#.repeat(depth),
            "]}}".repeat(depth)
        );
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"deep","value":{v}}}]}}]}}]}}]}}"#
        )
    };
    let read = decode(json_of(DEPTH_MAX).as_bytes(), Encoding::Json).unwrap();
    let attribute = &read.resource_spans[0].scope_spans[0].spans[0].attributes[0];
    assert_eq!(attribute.value, Some(nested(DEPTH_MAX)));
    let e = decode(json_of(DEPTH_MAX + 1).as_bytes(), Encoding::Json).unwrap_err();
    assert!(e.0.contains("nested more than"), "{e}");
    let e = decode(json_of(100_000).as_bytes(), Encoding::Json).unwrap_err();
    assert!(e.0.contains("nested more than"), "{e}");
    // Protobuf: prost's own bound.
    let ok = request_with(nested(20)).encode_to_vec();
    assert!(decode(&ok, Encoding::Protobuf).is_ok());
    // Deeper than prost allows, written by hand: each level is field 5
    // (array) of an AnyValue holding field 1 (values) of an ArrayValue.
    let mut deep = vec![0x18, 0x01]; // intValue = 1
    for _ in 0..200 {
        let mut array = vec![0x0a];
        put_len(&mut array, deep.len());
        array.extend_from_slice(&deep);
        let mut value = vec![0x2a];
        put_len(&mut value, array.len());
        value.extend_from_slice(&array);
        deep = value;
    }
    let body = request_bytes(&deep);
    let e = decode(&body, Encoding::Protobuf).unwrap_err();
    assert!(e.0.contains("recursion limit"), "{e}");
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// An export request whose resource's one attribute holds `value` (an
/// encoded AnyValue).
fn request_bytes(value: &[u8]) -> Vec<u8> {
    let field = |tag: u8, body: &[u8]| {
        let mut out = vec![tag];
        put_len(&mut out, body.len());
        out.extend_from_slice(body);
        out
    };
    let mut kv = field(0x0a, b"deep");
    kv.extend(field(0x12, value));
    let resource = field(0x0a, &kv);
    let resource_spans = field(0x0a, &resource);
    field(0x0a, &resource_spans)
}

#[test]
fn the_reply_is_otlps_in_the_requests_encoding() {
    assert_eq!(reply(Encoding::Json, 0, ""), b"{}");
    let v: Value = serde_json::from_slice(&reply(Encoding::Json, 2, "span 3: why")).unwrap();
    assert_eq!(
        v,
        json!({"partialSuccess": {"rejectedSpans": "2", "errorMessage": "span 3: why"}})
    );
    assert!(reply(Encoding::Protobuf, 0, "").is_empty());
    let r = ExportTraceServiceResponse::decode(&reply(Encoding::Protobuf, 1, "w")[..]).unwrap();
    assert_eq!(
        r.partial_success,
        Some(PartialSuccess {
            rejected_spans: 1,
            error_message: "w".into()
        })
    );
    for (content_type, encoding) in [
        ("application/x-protobuf", Some(Encoding::Protobuf)),
        ("application/json; charset=utf-8", Some(Encoding::Json)),
        ("Application/JSON", Some(Encoding::Json)),
        ("text/plain", None),
        ("", None),
    ] {
        assert_eq!(Encoding::of(content_type), encoding, "{content_type}");
    }
}
