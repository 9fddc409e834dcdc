//! Snippets: the window of a passage richest in the query's words, with
//! those words highlighted.
//!
//! The window is chosen as tantivy's `SnippetGenerator` chooses it (cut the
//! passage into consecutive windows of at most `chars_max` bytes, score each
//! by the weights of the query words it holds, keep the best, the earliest
//! on ties), but each distinct word of the passages is analysed once per
//! search instead of once per occurrence: analysing every word of every
//! shown passage again was a quarter of a search's time.

use std::collections::HashMap;
use std::ops::Range;

use tantivy::tokenizer::{TextAnalyzer, TokenStream};
use tantivy::Score;

use crate::text::{analyzer, escape_html};

/// Highlights for one search: the query's analysed words with their
/// weights, and what each word seen so far analyses to.
pub(crate) struct Snippets {
    analyzer: TextAnalyzer,
    weights: HashMap<String, Score>,
    seen: HashMap<String, Word, foldhash::fast::RandomState>,
    chars_max: usize,
}

/// What a word of a passage is to the analyzer.
#[derive(Clone, Copy)]
enum Word {
    /// Not indexed (a stop word, or too long): not even part of a window.
    Dropped,
    /// Indexed, worth this much to the query (nothing when it is not in it).
    Kept(Option<Score>),
}

impl Snippets {
    /// `weights` maps an analysed query word to how much a window holding
    /// it is worth (rarer words more); `chars_max` bounds a window in bytes.
    pub(crate) fn new(weights: HashMap<String, Score>, chars_max: usize) -> Snippets {
        Snippets {
            analyzer: analyzer(),
            weights,
            seen: HashMap::with_capacity_and_hasher(256, Default::default()),
            chars_max,
        }
    }

    /// The best window of `text` as HTML (escaped, query words in `<b>`),
    /// or `None` when no query word occurs in it.
    pub(crate) fn html(&mut self, text: &str) -> Option<String> {
        let mut best: Option<Window> = None;
        let mut window = Window::starting_at(0);
        for word in words(text) {
            let Word::Kept(weight) = self.analysed(&text[word.clone()]) else {
                continue;
            };
            if word.end - window.start > self.chars_max {
                window.keep_if_better(&mut best);
                window = Window::starting_at(word.start);
            }
            window.end = word.end;
            if let Some(weight) = weight {
                window.score += weight;
                window.highlighted.push(word);
            }
        }
        window.keep_if_better(&mut best);
        best.map(|w| w.html(text))
    }

    /// A word as written, through the analyzer of the index.
    fn analysed(&mut self, word: &str) -> Word {
        if let Some(known) = self.seen.get(word) {
            return *known;
        }
        let mut stream = self.analyzer.token_stream(word);
        let analysed = if stream.advance() {
            Word::Kept(self.weights.get(&stream.token().text).copied())
        } else {
            Word::Dropped
        };
        self.seen.insert(word.to_owned(), analysed);
        analysed
    }
}

struct Window {
    start: usize,
    end: usize,
    score: Score,
    highlighted: Vec<Range<usize>>,
}

impl Window {
    fn starting_at(start: usize) -> Window {
        Window {
            start,
            end: start,
            score: 0.0,
            highlighted: Vec::new(),
        }
    }

    fn keep_if_better(self, best: &mut Option<Window>) {
        if self.score > 0.0 && best.as_ref().is_none_or(|b| self.score > b.score) {
            *best = Some(self);
        }
    }

    fn html(&self, text: &str) -> String {
        let mut out = String::with_capacity(self.end - self.start + 16);
        let mut at = self.start;
        for word in &self.highlighted {
            out.push_str(&escape_html(&text[at..word.start]));
            out.push_str("<b>");
            out.push_str(&escape_html(&text[word.clone()]));
            out.push_str("</b>");
            at = word.end;
        }
        out.push_str(&escape_html(&text[at..self.end]));
        out
    }
}

/// Byte ranges of the runs of letters and digits: the words the index's
/// tokenizer sees.
fn words(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = chars.find(|(_, c)| c.is_alphanumeric())?;
        let mut end = text.len();
        while let Some(&(at, c)) = chars.peek() {
            if !c.is_alphanumeric() {
                end = at;
                break;
            }
            chars.next();
        }
        Some(start..end)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tantivy::schema::{Schema, TEXT};
    use tantivy::snippet::SnippetGenerator;

    use super::*;
    use crate::text::terms;

    fn weights(query: &str) -> Vec<(String, Score)> {
        terms(&mut analyzer(), query)
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, 1.0 / (2.0 + i as Score)))
            .collect()
    }

    /// tantivy's own generator over the same weights and analyzer.
    fn tantivy_html(query: &str, text: &str, chars_max: usize) -> Option<String> {
        let mut schema = Schema::builder();
        let field = schema.add_text_field("text", TEXT);
        let terms: BTreeMap<String, Score> = weights(query).into_iter().collect();
        let generator = SnippetGenerator::new(terms, analyzer(), field, chars_max);
        let snippet = generator.snippet(text);
        (!snippet.is_empty()).then(|| snippet.to_html())
    }

    #[test]
    fn windows_and_highlights_are_those_of_tantivy() {
        let passages = [
            "Refunds are issued to the original card within 5 days. A refund for a gift \
             is store credit. Cards declined? Refunding takes longer when the card expired.",
            "Nothing here matches at all.",
            "Card card CARD, refund-refund; refunds… 返金 card",
            "A long opening without the words we look for, going on and on for a while, \
             until at last the refund appears, and then the card, and then the refund again.",
        ];
        for text in passages {
            for chars_max in [20, 60, 200] {
                let mut ours = Snippets::new(
                    weights("refund to my card").into_iter().collect(),
                    chars_max,
                );
                let theirs = tantivy_html("refund to my card", text, chars_max);
                // tantivy escapes `'` as `&#x27;`; nothing here has one.
                assert_eq!(ours.html(text), theirs, "{chars_max}: {text}");
                // Twice: the second reads the words already analysed.
                assert_eq!(ours.html(text), theirs, "{chars_max}: {text}");
            }
        }
    }

    #[test]
    fn highlighted_text_is_escaped() {
        let mut snippets = Snippets::new(weights("refund").into_iter().collect(), 200);
        assert_eq!(
            snippets.html("<script>refund</script> & more").as_deref(),
            Some("&lt;script&gt;<b>refund</b>&lt;/script&gt; &amp; more")
        );
    }

    #[test]
    fn words_are_runs_of_letters_and_digits() {
        let text = "état-civil, 42x  末尾";
        let found: Vec<&str> = words(text).map(|r| &text[r]).collect();
        assert_eq!(found, ["état", "civil", "42x", "末尾"]);
    }
}
