//! What a knowledge document is, and the checks every one passes before it
//! can be indexed.

use serde::Serialize;

/// Longest document id, in characters.
pub const ID_CHARS_MAX: usize = 256;
/// Longest title, in characters.
pub const TITLE_CHARS_MAX: usize = 512;
/// Largest body (and largest raw input for one document), in bytes.
pub const BODY_BYTES_MAX: usize = 2 * 1024 * 1024;
/// Longest URL, in bytes.
pub const URL_BYTES_MAX: usize = 2048;
/// Most groups one document may be restricted to.
pub const GROUPS_MAX: usize = 64;
/// Longest group name, in characters.
pub const GROUP_CHARS_MAX: usize = 64;

/// How much of an offending value an error message repeats, in characters, so
/// a 2 MiB mistake does not become a 2 MiB log line.
const QUOTED_CHARS_MAX: usize = 80;

/// A knowledge document as it is indexed.
///
/// `body` is lightweight Markdown whatever the input format was: `#`
/// headings, paragraphs separated by blank lines, and `\#` for a line that
/// starts with a literal `#`. `groups` empty means every reader of the
/// customer may read it; otherwise only members of at least one listed group.
///
/// Fields are public for convenience; [`crate::KnowledgeIndex`] validates
/// again before indexing, so a hand-built invalid document is still refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
    pub body: String,
    pub groups: Vec<String>,
}

impl Document {
    /// Validates a document, then sorts and de-duplicates its `groups` (so an
    /// error's `groups[i]` points into the list as given).
    ///
    /// ```
    /// use payoff_knowledge::Document;
    /// let doc = Document::new("kb-1", "Returns", None, "Send it back within 30 days.", vec![])?;
    /// assert!(doc.groups.is_empty());
    /// # Ok::<(), payoff_knowledge::DocumentError>(())
    /// ```
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        url: Option<String>,
        body: impl Into<String>,
        groups: Vec<String>,
    ) -> Result<Document, DocumentError> {
        let mut document = Document {
            id: id.into(),
            title: title.into(),
            url,
            body: body.into(),
            groups,
        };
        document.validate()?;
        document.groups.sort();
        document.groups.dedup();
        Ok(document)
    }

    /// Checks every limit; the first problem found is returned, naming its field.
    pub fn validate(&self) -> Result<(), DocumentError> {
        validate_id(&self.id)?;
        let id = || self.id.clone();
        let title_chars = self.title.chars().count();
        if self.title.trim().is_empty() {
            return Err(DocumentError::TitleEmpty { id: id() });
        }
        if title_chars > TITLE_CHARS_MAX {
            return Err(DocumentError::TitleTooLong {
                id: id(),
                chars: title_chars,
                max: TITLE_CHARS_MAX,
            });
        }
        if let Some(url) = &self.url {
            validate_url(url).map_err(|reason| DocumentError::UrlInvalid { id: id(), reason })?;
        }
        if self.body.len() > BODY_BYTES_MAX {
            return Err(DocumentError::BodyTooLarge {
                id: id(),
                bytes: self.body.len(),
                max: BODY_BYTES_MAX,
            });
        }
        if self.body.trim().is_empty() {
            return Err(DocumentError::BodyEmpty { id: id() });
        }
        if self.groups.len() > GROUPS_MAX {
            return Err(DocumentError::GroupsTooMany {
                id: id(),
                count: self.groups.len(),
                max: GROUPS_MAX,
            });
        }
        for (index, group) in self.groups.iter().enumerate() {
            validate_group(group).map_err(|reason| DocumentError::GroupInvalid {
                id: id(),
                index,
                group: quoted(group),
                reason,
            })?;
        }
        Ok(())
    }
}

/// Why a document was refused. Each message names the document (when its id
/// is usable) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("field `id`: must not be empty")]
    IdEmpty,
    #[error("field `id`: {chars} characters, at most {max} allowed")]
    IdTooLong { chars: usize, max: usize },
    #[error("field `id`: `{id}` contains a control character")]
    IdControlCharacter { id: String },
    #[error("document `{id}`: field `title`: must not be empty")]
    TitleEmpty { id: String },
    #[error("document `{id}`: field `title`: {chars} characters, at most {max} allowed")]
    TitleTooLong {
        id: String,
        chars: usize,
        max: usize,
    },
    #[error("document `{id}`: field `url`: {reason}")]
    UrlInvalid { id: String, reason: &'static str },
    #[error("document `{id}`: field `body`: must not be empty")]
    BodyEmpty { id: String },
    #[error("document `{id}`: field `body`: {bytes} bytes, at most {max} allowed")]
    BodyTooLarge {
        id: String,
        bytes: usize,
        max: usize,
    },
    #[error("document `{id}`: field `groups`: {count} groups, at most {max} allowed")]
    GroupsTooMany {
        id: String,
        count: usize,
        max: usize,
    },
    #[error("document `{id}`: field `groups[{index}]`: `{group}` {reason}")]
    GroupInvalid {
        id: String,
        index: usize,
        group: String,
        reason: &'static str,
    },
}

impl DocumentError {
    /// A stable snake_case code for API clients to match on.
    pub fn code(&self) -> &'static str {
        match self {
            DocumentError::IdEmpty => "document_id_empty",
            DocumentError::IdTooLong { .. } => "document_id_too_long",
            DocumentError::IdControlCharacter { .. } => "document_id_invalid",
            DocumentError::TitleEmpty { .. } => "document_title_empty",
            DocumentError::TitleTooLong { .. } => "document_title_too_long",
            DocumentError::UrlInvalid { .. } => "document_url_invalid",
            DocumentError::BodyEmpty { .. } => "document_body_empty",
            DocumentError::BodyTooLarge { .. } => "document_body_too_large",
            DocumentError::GroupsTooMany { .. } => "document_groups_too_many",
            DocumentError::GroupInvalid { .. } => "document_group_invalid",
        }
    }
}

pub(crate) fn validate_id(id: &str) -> Result<(), DocumentError> {
    if id.trim().is_empty() {
        return Err(DocumentError::IdEmpty);
    }
    let chars = id.chars().count();
    if chars > ID_CHARS_MAX {
        return Err(DocumentError::IdTooLong {
            chars,
            max: ID_CHARS_MAX,
        });
    }
    // Control characters would make ids ambiguous in the index's
    // customer/id key, and are never intended.
    if id.chars().any(char::is_control) {
        return Err(DocumentError::IdControlCharacter { id: quoted(id) });
    }
    Ok(())
}

/// Checks a group name: 1 to 64 characters from `[a-z0-9_.:@-]`. Upper case
/// is refused rather than folded, so two spellings never name one group.
pub(crate) fn validate_group(group: &str) -> Result<(), &'static str> {
    if group.is_empty() {
        return Err("must not be empty");
    }
    if group.chars().count() > GROUP_CHARS_MAX {
        return Err("is longer than 64 characters");
    }
    let allowed = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '@' | '-')
    };
    if !group.chars().all(allowed) {
        return Err("may contain only a-z, 0-9 and _ . : @ -");
    }
    Ok(())
}

/// URLs end up as links in answers shown to people, so only web links and
/// site-relative paths are allowed: never `javascript:` or `data:`.
fn validate_url(url: &str) -> Result<(), &'static str> {
    if url.len() > URL_BYTES_MAX {
        return Err("longer than 2048 bytes");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains whitespace or a control character");
    }
    let lower = url.to_ascii_lowercase();
    let web = lower.starts_with("https://") || lower.starts_with("http://");
    let relative = url.starts_with('/') && !url.starts_with("//");
    if !(web || relative) {
        return Err("must start with https://, http:// or /");
    }
    Ok(())
}

pub(crate) fn quoted(value: &str) -> String {
    if value.chars().count() <= QUOTED_CHARS_MAX {
        return value.to_owned();
    }
    let mut cut: String = value.chars().take(QUOTED_CHARS_MAX).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        Document::new("kb-1", "Title", None, "Body text.", vec![]).unwrap()
    }

    #[test]
    fn groups_are_sorted_and_deduplicated() {
        let d = Document::new(
            "a",
            "t",
            None,
            "b",
            vec!["hr".into(), "finance".into(), "hr".into()],
        )
        .unwrap();
        assert_eq!(d.groups, vec!["finance", "hr"]);
    }

    #[test]
    fn urls_must_be_web_links_or_paths() {
        for ok in ["https://x.example/a", "http://x", "/help/a"] {
            let d = Document {
                url: Some(ok.into()),
                ..doc()
            };
            assert_eq!(d.validate(), Ok(()), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "//evil.example",
            "data:text/html,x",
            "https://a b",
        ] {
            let d = Document {
                url: Some(bad.into()),
                ..doc()
            };
            assert_eq!(
                d.validate().unwrap_err().code(),
                "document_url_invalid",
                "{bad}"
            );
        }
    }

    #[test]
    fn group_names_follow_the_alphabet() {
        assert!(validate_group("finance").is_ok());
        assert!(validate_group("team:eu-west@acme_1.x").is_ok());
        assert!(validate_group("Finance").is_err());
        assert!(validate_group("a b").is_err());
        assert!(validate_group("").is_err());
        assert!(validate_group(&"a".repeat(65)).is_err());
        assert!(validate_group(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let d = Document {
            groups: vec!["X".repeat(1000)],
            ..doc()
        };
        let message = d.validate().unwrap_err().to_string();
        assert!(message.len() < 300, "{message}");
        assert!(message.contains("groups[0]"), "{message}");
    }
}
