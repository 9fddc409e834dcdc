//! Raw input (Markdown, plain text, HTML, JSON Lines) to validated
//! [`Document`]s.

use serde::Deserialize;

use crate::chunk::heading;
use crate::document::{validate_id, Document, DocumentError, BODY_BYTES_MAX};
use crate::html::{self, escape_leading_hash};
use crate::text::prefix_at_word;

/// Most documents one JSON Lines upload may hold.
pub const DOCUMENTS_PER_BATCH_MAX: usize = 10_000;

/// Longest title taken from the first line of a plain-text file, in characters.
const DERIVED_TITLE_CHARS_MAX: usize = 120;

/// Format of a single-document upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    PlainText,
    Html,
}

impl Format {
    /// The format for a media type (parameters such as `; charset=utf-8` ignored).
    pub fn from_media_type(media_type: &str) -> Option<Format> {
        let essence = media_type.split(';').next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "text/markdown" | "text/x-markdown" => Some(Format::Markdown),
            "text/plain" => Some(Format::PlainText),
            "text/html" | "application/xhtml+xml" => Some(Format::Html),
            _ => None,
        }
    }
}

/// What the uploader says about a single document; the file is the body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentMeta {
    pub id: String,
    /// When absent or blank, taken from the file: the first Markdown heading,
    /// the HTML `<title>` or first heading, the first line of plain text; and
    /// failing that, the id.
    pub title: Option<String>,
    pub url: Option<String>,
    pub groups: Vec<String>,
}

/// Parses one uploaded file into a validated document.
///
/// ```
/// use payoff_knowledge::{parse_document, DocumentMeta, Format};
/// let meta = DocumentMeta { id: "kb-7".into(), ..Default::default() };
/// let doc = parse_document(Format::Html, meta, "<h1>Returns</h1><script>x()</script><p>30 days.</p>")?;
/// assert_eq!(doc.title, "Returns");
/// assert_eq!(doc.body, "# Returns\n\n30 days.");
/// # Ok::<(), payoff_knowledge::DocumentError>(())
/// ```
pub fn parse_document(
    format: Format,
    meta: DocumentMeta,
    input: &str,
) -> Result<Document, DocumentError> {
    validate_id(&meta.id)?;
    // Checked before parsing so an oversized upload costs nothing.
    if input.len() > BODY_BYTES_MAX {
        return Err(DocumentError::BodyTooLarge {
            id: meta.id,
            bytes: input.len(),
            max: BODY_BYTES_MAX,
        });
    }
    let input = input.replace("\r\n", "\n");
    let (derived_title, body) = match format {
        Format::Markdown => (first_markdown_heading(&input), input.trim().to_owned()),
        Format::PlainText => (first_line(&input), plain_text_body(&input)),
        Format::Html => {
            let converted = html::to_markdown(&input);
            (converted.title.or(converted.first_heading), converted.body)
        }
    };
    let title = meta
        .title
        .filter(|t| !t.trim().is_empty())
        .or(derived_title)
        .unwrap_or_else(|| meta.id.clone());
    Document::new(meta.id, title.trim(), meta.url, body, meta.groups)
}

/// Why a JSON Lines upload was refused; always names the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonLinesError {
    /// Not a JSON object of the expected shape; serde's message names the
    /// field (missing, unknown or of the wrong type).
    #[error("line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("line {line}: {source}")]
    Document {
        line: usize,
        #[source]
        source: DocumentError,
    },
    #[error("line {line}: more than {max} documents in one upload")]
    TooManyDocuments { line: usize, max: usize },
}

impl JsonLinesError {
    /// A stable snake_case code for API clients to match on.
    pub fn code(&self) -> &'static str {
        match self {
            JsonLinesError::Json { .. } => "jsonl_invalid",
            JsonLinesError::Document { source, .. } => source.code(),
            JsonLinesError::TooManyDocuments { .. } => "jsonl_too_many_documents",
        }
    }
}

/// One line as it comes off the wire, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    id: String,
    title: String,
    #[serde(default)]
    url: Option<String>,
    body: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// Parses JSON Lines of `{id, title, url?, body, groups?}`; `body` is
/// Markdown. Blank lines are skipped. The first bad line fails the whole
/// upload, so a batch is never half-applied.
///
/// ```
/// use payoff_knowledge::parse_json_lines;
/// let docs = parse_json_lines(r#"{"id":"a","title":"A","body":"Hello.","groups":["hr"]}"#)?;
/// assert_eq!(docs[0].groups, vec!["hr"]);
/// # Ok::<(), payoff_knowledge::JsonLinesError>(())
/// ```
pub fn parse_json_lines(input: &str) -> Result<Vec<Document>, JsonLinesError> {
    let mut documents = Vec::new();
    for (index, raw_line) in input.lines().enumerate() {
        let line = index + 1;
        if raw_line.trim().is_empty() {
            continue;
        }
        if documents.len() == DOCUMENTS_PER_BATCH_MAX {
            return Err(JsonLinesError::TooManyDocuments {
                line,
                max: DOCUMENTS_PER_BATCH_MAX,
            });
        }
        let raw: RawDocument = serde_json::from_str(raw_line).map_err(|e| json_error(line, &e))?;
        let document = Document::new(raw.id, raw.title, raw.url, raw.body.trim(), raw.groups)
            .map_err(|source| JsonLinesError::Document { line, source })?;
        documents.push(document);
    }
    Ok(documents)
}

/// serde_json counts lines within the one line it was given; its position
/// suffix is replaced by the line in the upload and the column.
fn json_error(line: usize, error: &serde_json::Error) -> JsonLinesError {
    let full = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    JsonLinesError::Json {
        line,
        column: error.column(),
        message: full.strip_suffix(&suffix).unwrap_or(&full).to_owned(),
    }
}

fn first_markdown_heading(markdown: &str) -> Option<String> {
    markdown
        .lines()
        .filter_map(heading)
        .map(|(_, text)| text)
        .find(|text| !text.is_empty())
}

fn first_line(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(prefix_at_word(line, DERIVED_TITLE_CHARS_MAX))
}

/// Plain text has no headings: a line that happens to start with `#` is
/// escaped so the chunker does not take it for one.
fn plain_text_body(text: &str) -> String {
    text.trim()
        .lines()
        .map(|line| escape_leading_hash(line.trim_start()))
        .collect::<Vec<_>>()
        .join("\n")
}
