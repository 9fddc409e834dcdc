//! Text helpers shared by chunking, indexing and answering, so that all three
//! agree on what a word, a sentence and a stop word are.

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};

use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, SimpleTokenizer, StopWordFilter, TextAnalyzer, Token,
    TokenFilter, TokenStream, Tokenizer,
};

/// Words that carry no topic: Lucene's English list plus the pronouns and
/// question words people type into a support search ("how do I ...").
/// The index drops them too, so "coverage" in answers and BM25 matching
/// count the same words.
pub(crate) const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with", "i", "me", "my", "we", "our", "you", "your", "he",
    "she", "his", "her", "its", "them", "do", "does", "did", "can", "could", "should", "would",
    "may", "might", "must", "have", "has", "had", "am", "been", "being", "how", "what", "when",
    "where", "which", "who", "whom", "why", "so", "too", "very", "just", "about", "from", "up",
    "out", "here", "get", "got", "please", "any", "some",
];

/// The longest token kept, in bytes: longer ones are base64 blobs or URLs,
/// never something a person searches for.
const TOKEN_BYTES_MAX: usize = 40;

/// The analyzer of every searchable text field and of questions.
pub(crate) fn analyzer() -> TextAnalyzer {
    static ANALYZER: LazyLock<TextAnalyzer> = LazyLock::new(|| {
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(TOKEN_BYTES_MAX))
            .filter(LowerCaser)
            .filter(StopWordFilter::remove(
                STOP_WORDS
                    .iter()
                    .map(|w| (*w).to_owned())
                    .collect::<Vec<_>>(),
            ))
            .filter(EnglishStemmer)
            .build()
    });
    // A clone shares the stop-word set; building one per search did not.
    ANALYZER.clone()
}

/// Words whose stem is kept; past it, new words are stemmed every time.
/// A help centre's vocabulary is far smaller.
const STEMS_KEPT_MAX: usize = 200_000;

/// English stems of the words seen so far. Snowball stemming was a third
/// of a search's time (every shown passage is analysed again for its
/// snippet), and the same few thousand words come back again and again.
static STEMS: LazyLock<RwLock<Stems>> = LazyLock::new(Default::default);

/// Word → stem.
type Stems = HashMap<Box<str>, Box<str>, foldhash::fast::RandomState>;

/// The Snowball English stemmer, remembering what it has stemmed: gives
/// exactly the stems of tantivy's `Stemmer` for English.
#[derive(Clone, Copy)]
struct EnglishStemmer;

impl TokenFilter for EnglishStemmer {
    type Tokenizer<T: Tokenizer> = Stemming<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> Stemming<T> {
        Stemming(tokenizer)
    }
}

#[derive(Clone)]
struct Stemming<T>(T);

impl<T: Tokenizer> Tokenizer for Stemming<T> {
    type TokenStream<'a> = Stemming<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        Stemming(self.0.token_stream(text))
    }
}

impl<T: TokenStream> TokenStream for Stemming<T> {
    fn advance(&mut self) -> bool {
        if !self.0.advance() {
            return false;
        }
        stem(&mut self.0.token_mut().text);
        true
    }

    fn token(&self) -> &Token {
        self.0.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.0.token_mut()
    }
}

/// Replaces `word` by its stem.
fn stem(word: &mut String) {
    {
        let stems = STEMS.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(stem) = stems.get(word.as_str()) {
            if **stem != **word {
                word.clear();
                word.push_str(stem);
            }
            return;
        }
    }
    let stemmed = frostem::Stemmer::new(frostem::Algorithm::English)
        .stem(word)
        .into_owned();
    let mut stems = STEMS.write().unwrap_or_else(PoisonError::into_inner);
    if stems.len() < STEMS_KEPT_MAX {
        stems.insert(word.as_str().into(), stemmed.as_str().into());
    }
    *word = stemmed;
}

/// The analysed terms of `text`, in order, with repeats.
pub(crate) fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// Number of whitespace-separated words.
pub(crate) fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Abbreviations whose trailing period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "st.", "no.", "approx.", "inc.",
    "ltd.", "co.", "fig.", "cf.",
];

/// Splits text into sentences on `.`, `!` or `?` followed by whitespace, and
/// on line breaks (list items and headings rarely end with a period).
/// Abbreviations such as "e.g." do not end a sentence. Sentences come back
/// trimmed, empty ones dropped.
pub(crate) fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut start = 0;
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if !matches!(b, b'.' | b'!' | b'?') {
                continue;
            }
            let next = bytes.get(i + 1).copied();
            let at_end = next.is_none();
            if !at_end && !next.is_some_and(|c| c.is_ascii_whitespace()) {
                continue;
            }
            let candidate = &line[start..=i];
            if b == b'.' && (ends_with_abbreviation(candidate) || is_number(candidate)) {
                continue;
            }
            push_trimmed(&mut out, candidate);
            start = i + 1;
        }
        push_trimmed(&mut out, &line[start..]);
    }
    out
}

/// `1.` alone is an ordered-list marker, not a sentence.
fn is_number(candidate: &str) -> bool {
    let digits = candidate.trim().trim_end_matches('.');
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn ends_with_abbreviation(candidate: &str) -> bool {
    let last = candidate
        .rsplit(char::is_whitespace)
        .next()
        .unwrap_or("")
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    ABBREVIATIONS.contains(&last.as_str())
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s);
    }
}

/// Escapes text for an HTML element body or a double-quoted attribute.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The first `chars_max` characters of `text`, cut at a word boundary, with
/// an ellipsis when something was cut.
pub(crate) fn prefix_at_word(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(chars_max).collect();
    let cut = match cut.rfind(char::is_whitespace) {
        Some(i) if i > 0 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_terminators_and_lines_but_not_abbreviations() {
        let text = "Refunds take 5 days. Use e.g. the portal! Really?\n- a list item\nLast one";
        assert_eq!(
            split_sentences(text),
            vec![
                "Refunds take 5 days.",
                "Use e.g. the portal!",
                "Really?",
                "- a list item",
                "Last one"
            ]
        );
    }

    #[test]
    fn decimals_do_not_end_a_sentence() {
        assert_eq!(
            split_sentences("It costs 4.99 today. Yes."),
            vec!["It costs 4.99 today.", "Yes."]
        );
    }

    #[test]
    fn analyzer_stems_and_drops_stop_words() {
        let mut a = analyzer();
        assert_eq!(
            terms(&mut a, "How do I return my Orders?"),
            vec!["return", "order"]
        );
    }

    #[test]
    fn kept_stems_are_the_snowball_stems() {
        use tantivy::tokenizer::{Language, Stemmer};
        let mut snowball = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(LowerCaser)
            .filter(Stemmer::new(Language::English))
            .build();
        let mut kept = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(LowerCaser)
            .filter(EnglishStemmer)
            .build();
        let text = "Connections fruitlessly consigned; skies dying early, generously \
                    happily ponies caresses agreed feed running runs ran généralement";
        let expected = terms(&mut snowball, text);
        assert!(expected.contains(&"connect".to_owned()));
        // Twice: the first pass stems and keeps, the second reads what was kept.
        assert_eq!(terms(&mut kept, text), expected);
        assert_eq!(terms(&mut kept, text), expected);
    }

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(
            escape_html(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn prefix_cuts_at_word_boundary() {
        assert_eq!(prefix_at_word("hello wonderful world", 12), "hello…");
        assert_eq!(prefix_at_word("short", 12), "short");
    }
}
