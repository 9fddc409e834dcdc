//! Extractive answers: the best sentences of the best passages, each with
//! its source, or an honest "no answer". Nothing here writes a word that is
//! not in a passage.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::index::Hit;
use crate::text::{analyzer, split_sentences, terms};

/// Passages, best first, that sentences are taken from.
pub const ANSWER_PASSAGES_MAX: usize = 3;
/// Sentences in one answer.
pub const ANSWER_SENTENCES_MAX: usize = 3;
/// Below this retrieval score the best passage matched only incidentally
/// (its words are common among the readable passages): no answer.
pub const ANSWER_SCORE_MIN: f64 = 0.25;
/// The retrieval score at which it contributes one half to the confidence.
const SCORE_HALF: f64 = 2.0;
/// Weight of the passage's rank against the sentence's own term overlap.
const PASSAGE_WEIGHT: f64 = 0.25;
/// Small preference for earlier sentences: passages tend to lead with the point.
const POSITION_PENALTY: f64 = 0.01;
/// A sentence after the first must score at least this share of the best
/// one: a weak sentence that happens to add a word makes an answer worse.
const FOLLOWER_SCORE_MIN: f64 = 0.6;

/// The source of a cited sentence; `n` is the number in its `[n]` marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Citation {
    pub n: usize,
    pub doc_id: String,
    pub title: String,
    pub url: Option<String>,
}

/// An answer stitched from passage sentences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// Sentences as written in the passages, each followed by ` [n]`.
    /// Plain text: escape it before putting it into HTML.
    pub text: String,
    pub citations: Vec<Citation>,
    /// In `[0, 1]`: the share of the question's content words the answer
    /// contains, times a saturating function of the best retrieval score.
    pub confidence: f64,
    /// The passages do not cover the question; `text` is empty and there
    /// are no citations.
    pub no_answer: bool,
}

impl Answer {
    fn none() -> Answer {
        Answer {
            text: String::new(),
            citations: Vec::new(),
            confidence: 0.0,
            no_answer: true,
        }
    }
}

struct Candidate<'a> {
    rank: usize,
    position: usize,
    sentence: &'a str,
    overlap: BTreeSet<String>,
    score: f64,
}

/// Answers `question` from `hits` (best first, as [`crate::KnowledgeIndex::search`]
/// returns them) by picking sentences that share content words with it.
///
/// No answer when there is no hit, the best score is under
/// [`ANSWER_SCORE_MIN`], or the top passages (title, heading and text)
/// contain no more than half of the question's content words: a passage
/// about returns does not answer a question about returning a spaceship.
pub fn answer_extractive(hits: &[Hit], question: &str) -> Answer {
    let mut analyzer = analyzer();
    let question_terms: BTreeSet<String> = terms(&mut analyzer, question).into_iter().collect();
    let top = &hits[..hits.len().min(ANSWER_PASSAGES_MAX)];
    let Some(best) = top.first() else {
        return Answer::none();
    };
    if question_terms.is_empty() || best.score < ANSWER_SCORE_MIN {
        return Answer::none();
    }

    let mut passage_terms = BTreeSet::new();
    let mut framing: Vec<BTreeSet<String>> = Vec::new();
    for hit in top {
        let frame: BTreeSet<String> =
            terms(&mut analyzer, &format!("{} {}", hit.title, hit.heading))
                .into_iter()
                .filter(|t| question_terms.contains(t))
                .collect();
        passage_terms.extend(frame.iter().cloned());
        passage_terms.extend(terms(&mut analyzer, &hit.text));
        framing.push(frame);
    }
    let covered = question_terms.intersection(&passage_terms).count();
    if covered * 2 <= question_terms.len() {
        return Answer::none();
    }

    let mut candidates = Vec::new();
    for (rank, hit) in top.iter().enumerate() {
        for (position, sentence) in split_sentences(&hit.text).into_iter().enumerate() {
            let sentence_terms: BTreeSet<String> =
                terms(&mut analyzer, sentence).into_iter().collect();
            let overlap: BTreeSet<String> = question_terms
                .intersection(&sentence_terms)
                .cloned()
                .collect();
            if overlap.is_empty() {
                continue;
            }
            let score = overlap.len() as f64 / question_terms.len() as f64
                + PASSAGE_WEIGHT * hit.score / best.score
                - POSITION_PENALTY * position as f64;
            candidates.push(Candidate {
                rank,
                position,
                sentence,
                overlap,
                score,
            });
        }
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));

    // Greedy: the best sentence, then only strong sentences that add a
    // question word not yet answered, so the answer does not repeat itself.
    // A sentence also answers the words of its passage's title and heading:
    // they frame it for the reader, who sees them in the citation.
    let Some(first) = candidates.first() else {
        return Answer::none();
    };
    let mut picked: Vec<&Candidate> = Vec::new();
    let mut answered: BTreeSet<String> = BTreeSet::new();
    let mut in_sentences: BTreeSet<&String> = BTreeSet::new();
    for candidate in &candidates {
        if picked.len() == ANSWER_SENTENCES_MAX {
            break;
        }
        let adds = candidate.overlap.iter().any(|t| !answered.contains(t));
        let strong = candidate.score >= FOLLOWER_SCORE_MIN * first.score;
        let repeats = picked.iter().any(|p| p.sentence == candidate.sentence);
        if picked.is_empty() || (adds && strong && !repeats) {
            answered.extend(candidate.overlap.iter().cloned());
            answered.extend(framing[candidate.rank].iter().cloned());
            in_sentences.extend(&candidate.overlap);
            picked.push(candidate);
        }
    }
    // Read in document order: best passage first, sentences as written.
    picked.sort_by_key(|c| (c.rank, c.position));

    let mut numbers: HashMap<&str, usize> = HashMap::new();
    let mut citations = Vec::new();
    let mut parts = Vec::new();
    for candidate in &picked {
        let hit = &top[candidate.rank];
        let n = *numbers.entry(hit.doc_id.as_str()).or_insert_with(|| {
            citations.push(Citation {
                n: citations.len() + 1,
                doc_id: hit.doc_id.clone(),
                title: hit.title.clone(),
                url: hit.url.clone(),
            });
            citations.len()
        });
        parts.push(format!("{} [{n}]", candidate.sentence));
    }

    // Confidence counts only words the quoted sentences themselves contain.
    let coverage = in_sentences.len() as f64 / question_terms.len() as f64;
    let retrieval = best.score / (best.score + SCORE_HALF);
    Answer {
        text: parts.join(" "),
        citations,
        confidence: (coverage * retrieval).clamp(0.0, 1.0),
        no_answer: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc_id: &str, title: &str, text: &str, score: f64) -> Hit {
        Hit {
            doc_id: doc_id.into(),
            title: title.into(),
            url: Some(format!("/kb/{doc_id}")),
            heading: String::new(),
            snippet_html: String::new(),
            text: text.into(),
            score,
        }
    }

    #[test]
    fn cites_each_sentence_and_numbers_documents_in_order() {
        let hits = [
            hit(
                "refunds",
                "Refunds",
                "Refunds are paid within five business days. We love you.",
                6.0,
            ),
            hit(
                "cards",
                "Cards",
                "Refunds go back to the original card.",
                4.0,
            ),
        ];
        let a = answer_extractive(&hits, "When are refunds paid back to my card?");
        assert!(!a.no_answer);
        assert_eq!(
            a.text,
            "Refunds are paid within five business days. [1] Refunds go back to the original card. [2]"
        );
        assert_eq!(a.citations.len(), 2);
        assert_eq!(
            (a.citations[0].n, a.citations[0].doc_id.as_str()),
            (1, "refunds")
        );
        assert_eq!(
            (a.citations[1].n, a.citations[1].doc_id.as_str()),
            (2, "cards")
        );
        assert!(
            a.confidence > 0.5 && a.confidence <= 1.0,
            "{}",
            a.confidence
        );
    }

    #[test]
    fn half_the_question_is_not_enough() {
        let hits = [hit(
            "returns",
            "Returns",
            "Returns are free within 30 days.",
            6.0,
        )];
        let a = answer_extractive(&hits, "How do I return a spaceship?");
        assert_eq!(a, Answer::none());
    }

    #[test]
    fn weak_retrieval_or_nothing_gives_no_answer() {
        assert!(answer_extractive(&[], "refunds").no_answer);
        let weak = [hit("r", "Refunds", "Refunds take five days.", 0.1)];
        assert!(answer_extractive(&weak, "refunds").no_answer);
        let strong = [hit("r", "Refunds", "Refunds take five days.", 3.0)];
        assert!(answer_extractive(&strong, "the and of").no_answer);
    }
}
