//! Canonical JSON bytes, following RFC 8785 (JSON Canonicalization Scheme).
//!
//! Object members are sorted by the UTF-16 code units of their names,
//! strings use the minimal JSON escapes, and numbers that are not integers
//! are written as ECMAScript writes a `Number`. One documented deviation:
//! integers that `serde_json` holds exactly (`i64`/`u64`) are written exactly,
//! even beyond 2^53, where RFC 8785 would round them through a double. The
//! same bytes come out of every node, which is what the hash chain needs.

use serde_json::Value;

/// Returns the canonical bytes of a JSON value.
///
/// ```
/// let v: serde_json::Value = serde_json::from_str(r#"{"b": 1.50, "a": [true, null]}"#).unwrap();
/// assert_eq!(payoff_ledger::canonical_json(&v), br#"{"a":[true,null],"b":1.5}"#);
/// ```
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    canonical_json_into(value, &mut out);
    out
}

/// Appends the canonical bytes of `value` to `out` (no allocation per call).
pub fn canonical_json_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json_into(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            sort_members(&mut members, |m| m.0.as_str());
            out.push(b'{');
            for (i, (name, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                canonical_json_into(item, out);
            }
            out.push(b'}');
        }
    }
}

/// Sorts object members by their names' UTF-16 code units, stably (equal
/// names keep their order). Names that are all ASCII (the usual case)
/// sort the same by bytes, so only non-ASCII names take the slow path.
pub(crate) fn sort_members<T>(members: &mut [T], name: impl Fn(&T) -> &str) {
    if members.iter().all(|m| name(m).is_ascii()) {
        members.sort_by(|a, b| name(a).as_bytes().cmp(name(b).as_bytes()));
    } else {
        members.sort_by(|a, b| name(a).encode_utf16().cmp(name(b).encode_utf16()));
    }
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        // serde_json never holds NaN or infinities.
        write_finite(f, out);
    }
}

/// A finite number as ECMAScript writes it.
pub(crate) fn write_finite(f: f64, out: &mut Vec<u8>) {
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(buf.format_finite(f).as_bytes());
}

/// Whether any byte must be escaped. Sixteen bytes at a time without a
/// branch per byte, which the compiler turns into vector compares: a
/// statement writes a million ids (tens of megabytes) twice.
fn needs_escape(bytes: &[u8]) -> bool {
    let special = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | special(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| special(b))
}

pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Almost every string (ids, names, amounts) needs no escape: one scan,
    // one copy.
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(canonical_json(&v)).unwrap()
    }

    /// The worked example of RFC 8785, section 3.2.2/3.2.3.
    #[test]
    fn rfc8785_example_object() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
        );
    }

    /// The sorting example of RFC 8785, section 3.2.3: UTF-16 code unit order.
    #[test]
    fn rfc8785_sorting_by_utf16_code_units() {
        let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let v: Value = serde_json::from_str(input).unwrap();
        let out = canonical_json(&v);
        let back: serde_json::Map<String, Value> = serde_json::from_slice(&out).unwrap();
        let _ = back;
        let text = String::from_utf8(out).unwrap();
        let order: Vec<usize> = [
            "\\r",
            "\"1\"",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .iter()
        .map(|k| {
            text.find(k)
                .unwrap_or_else(|| panic!("{k} missing in {text}"))
        })
        .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "{text}");
    }

    #[test]
    fn integers_beyond_double_precision_are_kept_exactly() {
        assert_eq!(
            canon("[9007199254740993, -12, 0]"),
            "[9007199254740993,-12,0]"
        );
    }

    #[test]
    fn control_characters_use_lowercase_unicode_escapes() {
        assert_eq!(canon(r#""\u0001\u001f\u007f""#), "\"\\u0001\\u001f\u{7f}\"");
    }

    /// A byte to escape is found wherever it sits: inside a sixteen-byte
    /// chunk, on its edges, or in the remainder after the last one.
    #[test]
    fn an_escape_is_found_at_every_position() {
        for len in 1..50 {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1}'] {
                    let mut text: Vec<char> = vec!['a'; len];
                    text[at] = special;
                    let text: String = text.into_iter().collect();
                    let mut out = Vec::new();
                    write_string(&text, &mut out);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        serde_json::to_string(&text).unwrap(),
                        "{text:?}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn canonical_form_is_a_fixed_point(s in "\\PC{0,40}", n in proptest::num::f64::NORMAL, i in proptest::num::i64::ANY) {
            let v = serde_json::json!({"s": s, "n": n, "i": i, "nested": {"z": [s.clone()], "a": null}});
            let once = canonical_json(&v);
            let reparsed: Value = serde_json::from_slice(&once).unwrap();
            proptest::prop_assert_eq!(canonical_json(&reparsed), once);
        }
    }
}
