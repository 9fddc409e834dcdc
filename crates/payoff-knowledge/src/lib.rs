//! Permission-aware search over each customer's knowledge documents.
//!
//! Uploads ([`parse_document`], [`parse_json_lines`]) become validated
//! [`Document`]s; [`chunk`] cuts each into passages that keep their
//! headings; [`KnowledgeIndex`] stores passages per customer with an ACL and
//! answers searches with the ACL inside the query, so nothing a caller may
//! not read can influence what they see; [`answer_extractive`] stitches cited
//! sentences from the hits, or says it has no answer. [`synthetic_corpus`]
//! generates articles for benchmarks. [`OpenAiProvider`] asks an
//! OpenAI-compatible chat-completions endpoint for a cited answer instead.
//!
//! The server maps [`IndexError::code`] and
//! [`DocumentError::code`] to responses.

mod answer;
mod bench;
mod chunk;
mod document;
mod html;
mod index;
mod input;
mod provider;
mod snippet;
mod text;

pub use answer::{
    answer_extractive, Answer, Citation, ANSWER_PASSAGES_MAX, ANSWER_SCORE_MIN,
    ANSWER_SENTENCES_MAX,
};
pub use bench::synthetic_corpus;
pub use chunk::{chunk, Passage, HEADING_SEPARATOR, PASSAGE_WORDS_MAX, PASSAGE_WORDS_MIN};
pub use document::{
    Document, DocumentError, BODY_BYTES_MAX, GROUPS_MAX, GROUP_CHARS_MAX, ID_CHARS_MAX,
    TITLE_CHARS_MAX, URL_BYTES_MAX,
};
pub use index::{
    Hit, IndexError, KnowledgeIndex, CALLER_GROUPS_MAX, CUSTOMER_CHARS_MAX, GROUP_PRINCIPAL_PREFIX,
    HITS_MAX, PUBLIC_PRINCIPAL, QUERY_CHARS_MAX, QUERY_TERMS_MAX, SNIPPET_CHARS_MAX,
};
pub use input::{
    parse_document, parse_json_lines, DocumentMeta, Format, JsonLinesError, DOCUMENTS_PER_BATCH_MAX,
};
pub use provider::{OpenAiConfig, OpenAiProvider, ProviderError, Usage, NO_ANSWER, SYSTEM_PROMPT};
