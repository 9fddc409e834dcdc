//! Long documents become passages of about 120–200 words, cut on paragraph
//! or sentence boundaries, each remembering the headings above it.
//!
//! Search ranks passages rather than whole documents: a reader asking about
//! refunds wants the refund paragraph of a 5,000-word policy, and the
//! headings tell them where in the document it sits.

use crate::text::{split_sentences, word_count};

/// A passage is closed at a paragraph end once it has this many words.
pub const PASSAGE_WORDS_MIN: usize = 120;
/// No passage is longer than this many words.
pub const PASSAGE_WORDS_MAX: usize = 200;

/// Separates the levels of a heading path: "Billing > Refunds".
pub const HEADING_SEPARATOR: &str = " > ";

/// A piece of a document, the unit that search ranks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// The headings above the passage, outermost first, joined by
    /// [`HEADING_SEPARATOR`]; empty before the first heading.
    pub heading: String,
    /// Plain text: inline Markdown removed, one paragraph per line.
    pub text: String,
}

/// Splits a document body (lightweight Markdown) into passages.
///
/// Paragraphs are kept whole while they fit; a passage that has reached
/// [`PASSAGE_WORDS_MIN`] closes at a paragraph end rather than run over
/// [`PASSAGE_WORDS_MAX`]; a paragraph too long to fit is cut between
/// sentences; a single sentence over the limit is cut between words.
/// Passages never span two sections, so each has one heading path.
///
/// ```
/// use payoff_knowledge::chunk;
/// let passages = chunk("# Billing\n\n## Refunds\n\nRefunds take **five** days.");
/// assert_eq!(passages[0].heading, "Billing > Refunds");
/// assert_eq!(passages[0].text, "Refunds take five days.");
/// ```
pub fn chunk(body: &str) -> Vec<Passage> {
    let sections = sections(body);
    let mut packer = Packer::default();
    for section in &sections {
        packer.heading = section.path.join(HEADING_SEPARATOR);
        for paragraph in &section.paragraphs {
            packer.paragraph(paragraph);
        }
        packer.flush();
    }
    if packer.out.is_empty() {
        // A body of headings only still deserves to be findable.
        let headings: Vec<&str> = sections
            .iter()
            .filter_map(|s| s.path.last().map(String::as_str))
            .collect();
        if !headings.is_empty() {
            packer.out.push(Passage {
                heading: String::new(),
                text: headings.join("\n"),
            });
        }
    }
    packer.out
}

struct Section {
    path: Vec<String>,
    /// Each paragraph as its sentences, already cut to at most
    /// `PASSAGE_WORDS_MAX` words each.
    paragraphs: Vec<Vec<String>>,
}

/// Reads the body into sections, one per heading, each with the heading
/// path in force and its paragraphs.
fn sections(body: &str) -> Vec<Section> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out = vec![Section {
        path: Vec::new(),
        paragraphs: Vec::new(),
    }];
    let mut paragraph: Vec<String> = Vec::new();
    let mut fence: Option<&str> = None;
    for line in body.lines() {
        let trimmed = line.trim();
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            } else if !trimmed.is_empty() {
                paragraph.push(trimmed.to_owned());
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        if trimmed.is_empty() {
            end_paragraph(&mut paragraph, out.last_mut());
            continue;
        }
        if let Some((level, text)) = heading(line) {
            end_paragraph(&mut paragraph, out.last_mut());
            while stack.last().is_some_and(|(l, _)| *l >= level) {
                stack.pop();
            }
            stack.push((level, text));
            out.push(Section {
                path: stack.iter().map(|(_, t)| t.clone()).collect(),
                paragraphs: Vec::new(),
            });
            continue;
        }
        if is_list_item(trimmed) {
            // Each item is a paragraph of its own: items rarely end with a
            // period, and must not run into one sentence.
            end_paragraph(&mut paragraph, out.last_mut());
        }
        paragraph.push(strip_inline(trimmed.trim_start_matches('>').trim_start()));
    }
    end_paragraph(&mut paragraph, out.last_mut());
    out
}

/// `- item`, `* item`, `+ item`, `1. item` or `1) item`.
fn is_list_item(line: &str) -> bool {
    if line.starts_with("- ") || line.starts_with("* ") || line.starts_with("+ ") {
        return true;
    }
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    digits > 0 && (line[digits..].starts_with(". ") || line[digits..].starts_with(") "))
}

/// Lines of one paragraph are soft-wrapped prose: joined before the
/// sentences are found, so a sentence broken over two lines stays whole.
fn end_paragraph(lines: &mut Vec<String>, section: Option<&mut Section>) {
    let Some(section) = section else { return };
    let joined = lines.join(" ");
    lines.clear();
    let mut sentences = Vec::new();
    for sentence in split_sentences(&joined) {
        cut_words(sentence, &mut sentences);
    }
    if !sentences.is_empty() {
        section.paragraphs.push(sentences);
    }
}

/// Cuts a sentence longer than `PASSAGE_WORDS_MAX` words between words.
fn cut_words(sentence: &str, out: &mut Vec<String>) {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    for piece in words.chunks(PASSAGE_WORDS_MAX) {
        out.push(piece.join(" "));
    }
}

/// An ATX heading (`## Text ##`, at most three spaces of indent).
pub(crate) fn heading(line: &str) -> Option<(usize, String)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let level = rest.len() - rest.trim_start_matches('#').len();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after = &rest[level..];
    if !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let text = after.trim().trim_end_matches('#').trim();
    Some((level, strip_inline(text)))
}

/// Removes the inline Markdown a reader would not see: emphasis markers,
/// code ticks, link and image syntax (keeping their text), and the escape
/// of a leading `#`.
fn strip_inline(line: &str) -> String {
    let line = line
        .strip_prefix('\\')
        .filter(|l| l.starts_with('#'))
        .unwrap_or(line);
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        if let Some((text, after)) = link(rest) {
            out.push_str(text);
            rest = after;
            continue;
        }
        if rest.starts_with("**") || rest.starts_with("__") {
            rest = &rest[2..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        if c != '`' {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `[text](target)` or `![text](target)` at the start of `s`: the text and
/// what follows the link.
fn link(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix('!').unwrap_or(s);
    let inner = s.strip_prefix('[')?;
    let close = inner.find("](")?;
    let text = &inner[..close];
    if text.contains('[') {
        return None;
    }
    let target_end = inner[close + 2..].find(')')?;
    Some((text, &inner[close + 2 + target_end + 1..]))
}

#[derive(Default)]
struct Packer {
    heading: String,
    text: String,
    words: usize,
    out: Vec<Passage>,
}

impl Packer {
    fn paragraph(&mut self, sentences: &[String]) {
        let paragraph_words: usize = sentences.iter().map(|s| word_count(s)).sum();
        // A passage long enough closes rather than split the paragraph;
        // a short one is filled up sentence by sentence below.
        if self.words + paragraph_words > PASSAGE_WORDS_MAX && self.words >= PASSAGE_WORDS_MIN {
            self.flush();
        }
        for (i, sentence) in sentences.iter().enumerate() {
            let words = word_count(sentence);
            if self.words > 0 && self.words + words > PASSAGE_WORDS_MAX {
                self.flush();
            }
            if !self.text.is_empty() {
                self.text.push(if i == 0 { '\n' } else { ' ' });
            }
            self.text.push_str(sentence);
            self.words += words;
        }
    }

    fn flush(&mut self) {
        if !self.text.is_empty() {
            self.out.push(Passage {
                heading: self.heading.clone(),
                text: std::mem::take(&mut self.text),
            });
        }
        self.words = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(n: usize, tag: &str) -> String {
        (0..n)
            .map(|i| format!("{tag}{i}"))
            .collect::<Vec<_>>()
            .join(" ")
            + "."
    }

    #[test]
    fn keeps_the_heading_path_above_each_passage() {
        let body = "Intro text.\n\n# Billing\n\nAbout billing.\n\n## Refunds\n\nRefund text.\n\n\
                    ### Timing\n\nFive days.\n\n## Invoices\n\nInvoice text.\n\n# Shipping\n\nShip text.";
        let got: Vec<(String, String)> = chunk(body)
            .into_iter()
            .map(|p| (p.heading, p.text))
            .collect();
        let want = [
            ("", "Intro text."),
            ("Billing", "About billing."),
            ("Billing > Refunds", "Refund text."),
            ("Billing > Refunds > Timing", "Five days."),
            ("Billing > Invoices", "Invoice text."),
            ("Shipping", "Ship text."),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(h, t)| (h.to_string(), t.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn closes_at_a_paragraph_end_once_long_enough() {
        let body = format!(
            "{}\n\n{}\n\n{}",
            words(100, "a"),
            words(50, "b"),
            words(100, "c")
        );
        let passages = chunk(&body);
        assert_eq!(passages.len(), 2);
        assert_eq!(word_count(&passages[0].text), 150);
        assert!(passages[1].text.starts_with("c0 "));
    }

    #[test]
    fn cuts_a_long_paragraph_between_sentences() {
        let sentences: Vec<String> = (0..30).map(|i| words(15, &format!("s{i}w"))).collect();
        let passages = chunk(&sentences.join(" "));
        assert!(passages.len() >= 3);
        for p in &passages {
            assert!(word_count(&p.text) <= PASSAGE_WORDS_MAX);
            assert!(p.text.ends_with('.'), "cut mid-sentence: {}", p.text);
        }
    }

    #[test]
    fn strips_inline_markdown_but_not_code_content() {
        let p =
            chunk("See **the** [portal](https://x.example) and `cfg` ![logo](l.png).\n\n\\#1 tip");
        assert_eq!(p[0].text, "See the portal and cfg logo.\n#1 tip");
    }

    #[test]
    fn hash_inside_code_fence_is_not_a_heading() {
        let p = chunk("# Real\n\n```\n# comment\n```");
        assert_eq!(
            p,
            vec![Passage {
                heading: "Real".into(),
                text: "# comment".into()
            }]
        );
    }

    #[test]
    fn soft_wrapped_sentences_stay_whole_and_list_items_stay_apart() {
        let p =
            chunk("Refunds are paid\nwithin five days.\n- first item\n- second\n  item\n1. third");
        assert_eq!(
            split_sentences(&p[0].text),
            vec![
                "Refunds are paid within five days.",
                "- first item",
                "- second item",
                "1. third"
            ]
        );
    }

    #[test]
    fn headings_only_body_still_yields_a_passage() {
        let p = chunk("# Returns\n\n## Refunds");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].text, "Returns\nRefunds");
    }

    proptest! {
        #[test]
        fn no_word_is_lost_and_no_passage_is_too_long(
            paragraphs in proptest::collection::vec((1usize..260, 1usize..40), 1..12)
        ) {
            let body: Vec<String> = paragraphs
                .iter()
                .enumerate()
                .map(|(i, (n, sentence_len))| {
                    (0..*n)
                        .map(|w| {
                            let end = if (w + 1) % sentence_len == 0 { "." } else { "" };
                            format!("p{i}w{w}{end}")
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let body = body.join("\n\n");
            let passages = chunk(&body);
            let joined: Vec<String> = passages
                .iter()
                .flat_map(|p| p.text.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect();
            let original: Vec<String> = body.split_whitespace().map(str::to_owned).collect();
            prop_assert_eq!(joined, original);
            for p in &passages {
                prop_assert!(word_count(&p.text) <= PASSAGE_WORDS_MAX);
            }
        }
    }
}
