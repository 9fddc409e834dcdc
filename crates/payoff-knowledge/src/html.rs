//! HTML to the lightweight Markdown of a document body: text and headings
//! kept, markup, scripts and styles dropped.
//!
//! A tolerant scanner rather than a full HTML5 parser: knowledge pages are
//! exported help-centre articles, and all we need is their text, their
//! block structure and their headings. This keeps a browser-grade parser
//! out of the dependency tree.

/// Elements whose content is never text a reader sees. `nav` is site chrome
/// (menus repeated on every exported page) and would pollute every passage.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "iframe", "object", "nav", "canvas",
];

/// Elements that start a new paragraph.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "hr",
    "ul",
    "ol",
    "table",
    "tr",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "aside",
    "blockquote",
    "pre",
    "dl",
    "dt",
    "dd",
    "figure",
    "figcaption",
    "form",
    "body",
    "html",
    "head",
    "address",
    "details",
    "summary",
];

/// Text of an HTML page: its `<title>` (if any) and its body as Markdown.
pub(crate) struct Converted {
    pub(crate) title: Option<String>,
    pub(crate) first_heading: Option<String>,
    pub(crate) body: String,
}

/// Converts an HTML page. Never fails: malformed markup degrades to text.
pub(crate) fn to_markdown(html: &str) -> Converted {
    let mut out = Builder::default();
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let end = memchr(bytes, i, b'<').unwrap_or(bytes.len());
            out.text(&html[i..end]);
            i = end;
            continue;
        }
        if html[i..].starts_with("<!--") {
            i = find(bytes, i + 4, b"-->").map_or(bytes.len(), |e| e + 3);
            continue;
        }
        let Some(tag) = parse_tag(bytes, i) else {
            // A lone `<`, as in "a < b": it is text.
            out.text("<");
            i += 1;
            continue;
        };
        i = tag.end;
        let name = tag.name.as_str();
        if tag.closing {
            out.close(name);
            continue;
        }
        if SKIPPED.contains(&name) || name == "title" {
            let close = format!("</{name}");
            let content_end = find_ci(bytes, i, close.as_bytes()).unwrap_or(bytes.len());
            if name == "title" && out.title.is_none() {
                let title = collapse(&decode_entities(&html[i..content_end]));
                if !title.is_empty() {
                    out.title = Some(title);
                }
            }
            i = memchr(bytes, content_end, b'>').map_or(bytes.len(), |e| e + 1);
            continue;
        }
        out.open(name);
    }
    out.flush();
    Converted {
        title: out.title,
        first_heading: out.first_heading,
        body: out.markdown.trim().to_owned(),
    }
}

#[derive(Default)]
struct Builder {
    markdown: String,
    current: String,
    /// Heading level (1–6) of the element being read, if it is a heading.
    heading: Option<usize>,
    list_item: bool,
    title: Option<String>,
    first_heading: Option<String>,
}

impl Builder {
    fn text(&mut self, raw: &str) {
        self.current.push_str(&decode_entities(raw));
    }

    fn open(&mut self, name: &str) {
        if let Some(level) = heading_level(name) {
            self.flush();
            self.heading = Some(level);
        } else if name == "li" {
            self.flush();
            self.list_item = true;
        } else if BLOCKS.contains(&name) {
            self.flush();
        } else if matches!(name, "td" | "th") {
            self.current.push(' ');
        }
    }

    fn close(&mut self, name: &str) {
        if heading_level(name).is_some() || name == "li" || BLOCKS.contains(&name) {
            self.flush();
        } else if matches!(name, "td" | "th") {
            self.current.push(' ');
        }
    }

    /// Ends the current block, writing it as a heading or a paragraph.
    fn flush(&mut self) {
        let text = collapse(&self.current);
        self.current.clear();
        let heading = self.heading.take();
        let list_item = std::mem::take(&mut self.list_item);
        if text.is_empty() {
            return;
        }
        match heading {
            Some(level) => {
                if self.first_heading.is_none() {
                    self.first_heading = Some(text.clone());
                }
                self.markdown.push_str(&"#".repeat(level));
                self.markdown.push(' ');
                self.markdown.push_str(&text);
            }
            None if list_item => {
                self.markdown.push_str("- ");
                self.markdown.push_str(&text);
            }
            None => self.markdown.push_str(&escape_leading_hash(&text)),
        }
        self.markdown.push_str("\n\n");
    }
}

/// A paragraph that starts with `#` must not become a heading.
pub(crate) fn escape_leading_hash(text: &str) -> String {
    if text.starts_with('#') {
        format!("\\{text}")
    } else {
        text.to_owned()
    }
}

fn heading_level(name: &str) -> Option<usize> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

struct Tag {
    name: String,
    closing: bool,
    /// Index just past the tag's `>`.
    end: usize,
}

/// Reads the tag starting at `start` (a `<`). `None` when what follows is not
/// a tag (`<` then neither a letter nor `/`, `!` or `?`).
fn parse_tag(bytes: &[u8], start: usize) -> Option<Tag> {
    let mut i = start + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let first = *bytes.get(i)?;
    if first == b'!' || first == b'?' {
        // Doctype or processing instruction: no content to keep.
        let end = memchr(bytes, i, b'>').map_or(bytes.len(), |e| e + 1);
        return Some(Tag {
            name: String::new(),
            closing: false,
            end,
        });
    }
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let name_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
        i += 1;
    }
    let name = String::from_utf8_lossy(&bytes[name_start..i]).to_ascii_lowercase();
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => {
                return Some(Tag {
                    name,
                    closing,
                    end: i + 1,
                })
            }
            None => {}
        }
        i += 1;
    }
    Some(Tag {
        name,
        closing,
        end: bytes.len(),
    })
}

fn memchr(bytes: &[u8], from: usize, needle: u8) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b == needle)
        .map(|p| p + from)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn find_ci(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| p + from)
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes character references: numeric ones and the named ones that turn
/// up in help-centre exports. Unknown names stay as written.
fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest
            .find(';')
            .filter(|&semi| semi <= 10)
            .and_then(|semi| entity(&rest[1..semi]).map(|c| (c, semi)));
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        return char::from_u32(code).filter(|c| *c != '\0');
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "middot" => '·',
        "bull" => '•',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_headings_and_paragraphs() {
        let c = to_markdown(
            "<html><head><title>Help &amp; Support</title></head><body>\
             <h1>Returns</h1><p>Send it <b>back</b>.</p><h2 class=\"x\">Refunds</h2>\
             <p>Five days.</p><ul><li>One</li><li>Two</li></ul></body></html>",
        );
        assert_eq!(c.title.as_deref(), Some("Help & Support"));
        assert_eq!(c.first_heading.as_deref(), Some("Returns"));
        assert_eq!(
            c.body,
            "# Returns\n\nSend it back.\n\n## Refunds\n\nFive days.\n\n- One\n\n- Two"
        );
    }

    #[test]
    fn drops_scripts_styles_comments_and_nav() {
        let c = to_markdown(
            "<style>p{color:red}</style><script>var s = '<p>not text</p>';</SCRIPT>\
             <!-- secret comment --><nav><a href=/>Home</a></nav><p>Visible</p>",
        );
        assert_eq!(c.body, "Visible");
    }

    #[test]
    fn tolerates_broken_markup() {
        let c = to_markdown("a < b and <p title='x>y'>c &unknown; &#x41;&#66;");
        assert_eq!(c.body, "a < b and\n\nc &unknown; AB");
    }

    #[test]
    fn paragraph_starting_with_hash_is_escaped() {
        assert_eq!(to_markdown("<p>#1 tip</p>").body, "\\#1 tip");
    }
}
