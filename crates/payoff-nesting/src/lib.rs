//! The nesting depth of untrusted text, bounded before any recursive
//! parser reads it.
//!
//! The parsers of Cedar policies, CEL rules, TOML and JSON recurse once per
//! level of nesting, so a small document nested a few hundred levels deep
//! exhausts a thread's stack and aborts the process: no error can be
//! returned from a stack overflow. [`check`] counts brackets in one pass over
//! the bytes, with no recursion and no allocation, skipping strings and
//! comments the way the language does, and refuses text nested deeper than
//! a limit before the parser sees it.
//!
//! ```
//! use payoff_nesting::{check, Syntax};
//! assert!(check("[[1], {\"a\": \"((((\"}]", &Syntax::JSON, 2).is_ok());
//! let deep = "[".repeat(200);
//! let err = check(&deep, &Syntax::JSON, 64).unwrap_err();
//! assert_eq!((err.line, err.column), (1, 65));
//! ```
//!
//! The scan may count a level the parser would not (a bracket in text the
//! language would not read as code); it never misses one the parser reads,
//! so an error here is at worst a refusal, never a crash.

/// The default bound on nesting: far beyond what a hand-written policy,
/// rule, contract or event holds, far below what a 2 MiB thread's stack
/// can parse in a debug build.
pub const DEPTH_MAX: usize = 64;

/// Text nested deeper than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nested more than {max} levels deep (line {line}, column {column}); at most {max} levels of brackets are allowed")]
pub struct TooDeep {
    /// The limit that was exceeded.
    pub max: usize,
    /// Where the first level beyond the limit opens, from 1.
    pub line: usize,
    /// Column of that bracket in characters, from 1.
    pub column: usize,
    /// Byte offset of that bracket.
    pub offset: usize,
}

/// How a language nests, quotes and comments, as far as counting depth needs.
#[derive(Debug, Clone, Copy)]
pub struct Syntax {
    /// Bytes that open a level.
    pub opens: &'static [u8],
    /// Bytes that close one.
    pub closes: &'static [u8],
    /// Quotes in which `\` escapes the next byte.
    pub escaped_quotes: &'static [u8],
    /// Quotes in which `\` is an ordinary byte (TOML's `'`).
    pub literal_quotes: &'static [u8],
    /// Whether a tripled quote (`"""`) opens a string closed by the same.
    pub triple_quotes: bool,
    /// Whether `r"…"` / `R"…"` (also after `b`) is a raw string, without escapes (CEL).
    pub raw_prefix: bool,
    /// Markers of comments that run to the end of the line.
    pub line_comments: &'static [&'static str],
}

impl Syntax {
    /// JSON (RFC 8259).
    pub const JSON: Syntax = Syntax {
        opens: b"[{",
        closes: b"]}",
        escaped_quotes: b"\"",
        literal_quotes: b"",
        triple_quotes: false,
        raw_prefix: false,
        line_comments: &[],
    };

    /// Cedar policies.
    pub const CEDAR: Syntax = Syntax {
        opens: b"([{",
        closes: b")]}",
        escaped_quotes: b"\"",
        literal_quotes: b"",
        triple_quotes: false,
        raw_prefix: false,
        line_comments: &["//"],
    };

    /// CEL expressions.
    pub const CEL: Syntax = Syntax {
        opens: b"([{",
        closes: b")]}",
        escaped_quotes: b"\"'",
        literal_quotes: b"",
        triple_quotes: true,
        raw_prefix: true,
        line_comments: &["//"],
    };

    /// TOML 1.0 (arrays and inline tables).
    pub const TOML: Syntax = Syntax {
        opens: b"[{",
        closes: b"]}",
        escaped_quotes: b"\"",
        literal_quotes: b"'",
        triple_quotes: true,
        raw_prefix: false,
        line_comments: &["#"],
    };
}

/// Refuses `text` if its brackets nest deeper than `max` outside strings
/// and comments. One pass, constant stack, no allocation.
pub fn check(text: &str, syntax: &Syntax, max: usize) -> Result<(), TooDeep> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut line_start = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            line_start = i + 1;
            i += 1;
            continue;
        }
        if syntax
            .line_comments
            .iter()
            .any(|m| b[i..].starts_with(m.as_bytes()))
        {
            i = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
            continue;
        }
        let escaped = syntax.escaped_quotes.contains(&c);
        if escaped || syntax.literal_quotes.contains(&c) {
            let escapes = escaped && !(syntax.raw_prefix && raw_before(b, i));
            let triple = syntax.triple_quotes && b[i..].starts_with(&[c, c, c]);
            let quote_len = if triple { 3 } else { 1 };
            let mut j = i + quote_len;
            loop {
                if j >= b.len() {
                    // An unterminated string: nothing after it is code.
                    return Ok(());
                }
                let x = b[j];
                if escapes && x == b'\\' {
                    if b.get(j + 1) == Some(&b'\n') {
                        line += 1;
                        line_start = j + 2;
                    }
                    j += 2;
                    continue;
                }
                if x == b'\n' {
                    line += 1;
                    line_start = j + 1;
                }
                if x == c && (!triple || b[j..].starts_with(&[c, c, c])) {
                    j += quote_len;
                    break;
                }
                j += 1;
            }
            i = j;
            continue;
        }
        if syntax.opens.contains(&c) {
            depth += 1;
            if depth > max {
                return Err(TooDeep {
                    max,
                    line,
                    column: text[line_start..i].chars().count() + 1,
                    offset: i,
                });
            }
        } else if syntax.closes.contains(&c) {
            depth = depth.saturating_sub(1);
        }
        i += 1;
    }
    Ok(())
}

/// Whether the quote at `at` opens a raw string: a prefix of one or two of
/// `r`, `R`, `b`, `B` with an `r` among them, that is a token of its own
/// (`bar"…"` is the name `bar` and an ordinary string).
fn raw_before(b: &[u8], at: usize) -> bool {
    let is_prefix = |x: &u8| matches!(x, b'b' | b'B' | b'r' | b'R');
    let run = b[..at].iter().rev().take_while(|x| is_prefix(x)).count();
    if run == 0 || run > 2 {
        return false;
    }
    let start = at - run;
    let standalone = start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
    standalone && b[start..at].iter().any(|x| matches!(x, b'r' | b'R'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_at_the_limit_passes_one_more_is_refused() {
        let at = format!("{}{}", "(".repeat(5), ")".repeat(5));
        assert!(check(&at, &Syntax::CEDAR, 5).is_ok());
        let over = format!("{}{}", "(".repeat(6), ")".repeat(6));
        let e = check(&over, &Syntax::CEDAR, 5).unwrap_err();
        assert_eq!((e.line, e.column, e.offset), (1, 6, 5));
    }

    #[test]
    fn siblings_do_not_add_up() {
        let text = "[1], ".repeat(10_000);
        assert!(check(&text, &Syntax::JSON, 1).is_ok());
    }

    #[test]
    fn brackets_in_strings_and_comments_are_not_counted() {
        assert!(check(r#"["[[[[", "\"[[[["]"#, &Syntax::JSON, 1).is_ok());
        assert!(check(
            "permit(principal, action, resource) // ((((((\n;",
            &Syntax::CEDAR,
            1
        )
        .is_ok());
        assert!(check(
            "a = \"\"\"[[[\"[[\"\"\"\nb = '''[[[''' # [[[[",
            &Syntax::TOML,
            0
        )
        .is_ok());
        assert!(check(r"a = 'C:\' # [", &Syntax::TOML, 0).is_ok());
        assert!(check(r#"'(((' + "(((" + '''((('''"#, &Syntax::CEL, 0).is_ok());
    }

    #[test]
    fn a_raw_string_cannot_hide_brackets_behind_a_backslash() {
        // In CEL `r"\"` is a complete string: the brackets after it are code.
        let text = format!(r#"r"\" + {}1{} + "x""#, "(".repeat(3), ")".repeat(3));
        assert!(check(&text, &Syntax::CEL, 2).is_err());
        let text = format!(r#"br'\' + {}1{}"#, "[".repeat(3), "]".repeat(3));
        assert!(check(&text, &Syntax::CEL, 2).is_err());
        // Not raw: an escaped quote keeps the string open.
        assert!(check(r#""\" ((( ""#, &Syntax::CEL, 0).is_ok());
        assert!(check(r#"bar"\" ((( ""#, &Syntax::CEL, 0).is_ok());
    }

    #[test]
    fn the_line_and_column_of_the_first_level_too_deep_are_given() {
        let e = check("{\n  \"a\": [[[", &Syntax::JSON, 2).unwrap_err();
        assert_eq!((e.line, e.column), (2, 9));
        assert!(e.to_string().contains("at most 2 levels"), "{e}");
    }

    #[test]
    fn very_deep_text_is_refused_without_recursion() {
        let text = "[".repeat(10_000_000);
        assert!(check(&text, &Syntax::JSON, DEPTH_MAX).is_err());
    }
}
