//! Errors in a policy text, each with its line and column.

use std::fmt;

use miette::Diagnostic;

/// One thing wrong with a policy text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// 1-based; 0 when Cedar gave no position.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Everything wrong with a policy text; nothing of it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors {
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", p.line, p.column, p.message)?;
        }
        Ok(())
    }
}

impl PolicyErrors {
    pub(crate) fn one(message: impl Into<String>) -> Self {
        PolicyErrors {
            problems: vec![Problem {
                line: 0,
                column: 0,
                message: message.into(),
            }],
        }
    }

    /// One problem at a known place.
    pub(crate) fn at(line: usize, column: usize, message: impl Into<String>) -> Self {
        PolicyErrors {
            problems: vec![Problem {
                line,
                column,
                message: message.into(),
            }],
        }
    }

    /// The problems of Cedar diagnostics whose spans point into `text`.
    pub(crate) fn from_diagnostics<'a>(
        text: &str,
        diagnostics: impl IntoIterator<Item = &'a (dyn Diagnostic + 'a)>,
    ) -> Self {
        let problems = diagnostics
            .into_iter()
            .map(|d| {
                let offset = d
                    .labels()
                    .and_then(|mut labels| labels.next())
                    .map(|l| l.offset());
                let (line, column) = offset.map_or((0, 0), |o| line_column(text, o));
                let mut message = d.to_string();
                if let Some(help) = d.help() {
                    message = format!("{message} ({help})");
                }
                Problem {
                    line,
                    column,
                    message,
                }
            })
            .collect();
        PolicyErrors { problems }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 6), (2, 3));
        assert_eq!(line_column(text, 7), (2, 4));
        assert_eq!(line_column(text, 8), (3, 1));
        assert_eq!(line_column(text, 99), (3, 2));
    }
}
