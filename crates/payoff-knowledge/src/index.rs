//! The passage index: tantivy underneath, one index for all customers,
//! every query confined to one customer and to what the caller may read.
//!
//! Confidentiality rests on one rule: the customer and ACL filter is part of
//! the tantivy query itself, so a passage the caller cannot read is never
//! matched, never ranked, never counted and never turned into a snippet.
//! Ranking statistics (document frequencies, average lengths) are also
//! computed over the readable passages only, so not even a score moves
//! because of a document the caller cannot see.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use tantivy::collector::{Collector, SegmentCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::fieldnorm::FieldNormReader;
use tantivy::index::{IndexSettings, SegmentId};
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, BoostQuery, ConstScoreQuery, EmptyScorer, EnableScoring,
    Explanation, Occur, Query, Scorer, TermQuery, Weight,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::{BoxTokenStream, TextAnalyzer, Token, TokenStream, Tokenizer};
use tantivy::{
    BitSet, DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentOrdinal,
    SegmentReader, TantivyDocument, TantivyError, Term, COLLECT_BLOCK_BUFFER_LEN, TERMINATED,
};

use crate::chunk::chunk;
use crate::document::{validate_group, Document, DocumentError};
use crate::snippet::Snippets;
use crate::text::{analyzer, escape_html, prefix_at_word, terms};

/// ACL principal of a document without groups: any reader of its customer.
pub const PUBLIC_PRINCIPAL: &str = "public";
/// Prefix of a group's ACL principal (`group:finance`), so that no group
/// name can ever equal [`PUBLIC_PRINCIPAL`].
pub const GROUP_PRINCIPAL_PREFIX: &str = "group:";

/// Longest customer id, in characters.
pub const CUSTOMER_CHARS_MAX: usize = 128;
/// Most groups a caller may present in one search.
pub const CALLER_GROUPS_MAX: usize = 1024;
/// Longest query, in characters.
pub const QUERY_CHARS_MAX: usize = 1024;
/// Distinct query terms used; the rest of a very long query is ignored.
pub const QUERY_TERMS_MAX: usize = 32;
/// Most hits one search returns.
pub const HITS_MAX: usize = 100;
/// Length of a snippet, in characters.
pub const SNIPPET_CHARS_MAX: usize = 200;

/// Name under which the per-customer analyzer ([`CustomerWords`]) is
/// registered; stored in the schema.
const TOKENIZER: &str = "payoff_customer_en";
/// Indexing memory budget. One thread: the machine has two cores and search
/// must stay responsive while a customer re-indexes.
const WRITER_HEAP_BYTES: usize = 50_000_000;
/// A title match says more about a passage than a body match.
const TITLE_BOOST: Score = 1.5;
const HEADING_BOOST: Score = 1.5;

/// One ranked passage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub doc_id: String,
    pub title: String,
    pub url: Option<String>,
    /// Heading path above the passage ("Billing > Refunds"), maybe empty.
    pub heading: String,
    /// About [`SNIPPET_CHARS_MAX`] characters of the passage, HTML-escaped,
    /// with query terms in `<b>`; safe to insert into a page as is.
    pub snippet_html: String,
    /// The whole passage as plain text (not escaped), for answer extraction.
    pub text: String,
    /// BM25 over the passages the caller may read; comparable only within
    /// one search.
    pub score: f64,
}

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("customer: {reason}")]
    CustomerInvalid { reason: &'static str },
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("document `{id}` appears twice in one reindex")]
    DocumentDuplicate { id: String },
    #[error("caller group `{group}`: {reason}")]
    CallerGroupInvalid { group: String, reason: &'static str },
    #[error("caller groups: {count} given, at most {max} allowed")]
    CallerGroupsTooMany { count: usize, max: usize },
    #[error("query: {chars} characters, at most {max} allowed")]
    QueryTooLong { chars: usize, max: usize },
    #[error("index directory {}: {message}", path.display())]
    Directory { path: PathBuf, message: String },
    #[error("index directory {} holds an index of another layout; rebuild it", path.display())]
    SchemaMismatch { path: PathBuf },
    #[error("index is locked by another writer: {0}")]
    Locked(String),
    #[error("search engine: {0}")]
    Engine(#[from] TantivyError),
}

impl IndexError {
    /// A stable snake_case code for API clients to match on.
    pub fn code(&self) -> &'static str {
        match self {
            IndexError::CustomerInvalid { .. } => "customer_invalid",
            IndexError::Document(e) => e.code(),
            IndexError::DocumentDuplicate { .. } => "document_duplicate",
            IndexError::CallerGroupInvalid { .. } => "caller_group_invalid",
            IndexError::CallerGroupsTooMany { .. } => "caller_groups_too_many",
            IndexError::QueryTooLong { .. } => "query_too_long",
            IndexError::Directory { .. } => "index_directory_unusable",
            IndexError::SchemaMismatch { .. } => "index_schema_mismatch",
            IndexError::Locked(_) => "index_locked",
            IndexError::Engine(_) => "index_engine_failure",
        }
    }
}

#[derive(Clone, Copy)]
struct Fields {
    customer: Field,
    /// `customer \0 doc_id`: one term to replace or delete a document's passages.
    doc_key: Field,
    doc_id: Field,
    /// Shown as stored; searched through `title_terms`.
    title: Field,
    url: Field,
    heading: Field,
    text: Field,
    /// The analysed words of title, heading and text, each prefixed by the
    /// customer (`acme\0refund`): a word's postings hold one customer's
    /// passages only, so ranking never walks another customer's.
    title_terms: Field,
    heading_terms: Field,
    text_terms: Field,
    acl: Field,
}

impl Fields {
    /// Searchable fields with their boosts.
    fn searched(&self) -> [(Field, Score); 3] {
        [
            (self.title_terms, TITLE_BOOST),
            (self.heading_terms, HEADING_BOOST),
            (self.text_terms, 1.0),
        ]
    }
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    // Given `customer \0 text` (see `CustomerWords`).
    let searchable = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        customer: builder.add_text_field("customer", STRING),
        doc_key: builder.add_text_field("doc_key", STRING),
        doc_id: builder.add_text_field("doc_id", STORED),
        title: builder.add_text_field("title", STORED),
        url: builder.add_text_field("url", STORED),
        heading: builder.add_text_field("heading", STORED),
        text: builder.add_text_field("text", STORED),
        title_terms: builder.add_text_field("title_terms", searchable.clone()),
        heading_terms: builder.add_text_field("heading_terms", searchable.clone()),
        text_terms: builder.add_text_field("text_terms", searchable),
        acl: builder.add_text_field("acl", STRING),
    };
    (builder.build(), fields)
}

/// Stored passages in small blocks: every hit shown decompresses the block
/// holding it, and a 16 KiB block (tantivy's default) cost a fifth of a
/// search.
const DOCSTORE_BLOCK_BYTES: usize = 4096;

fn settings() -> IndexSettings {
    IndexSettings {
        docstore_blocksize: DOCSTORE_BLOCK_BYTES,
        ..IndexSettings::default()
    }
}

/// The knowledge of every customer, searchable passage by passage.
///
/// Changes (`replace`, `delete`, `reindex`) become visible to `search` at
/// the next [`KnowledgeIndex::commit`]. The index is `Send + Sync`: share
/// one behind an `Arc`.
///
/// ```
/// use payoff_knowledge::{Document, KnowledgeIndex};
/// let index = KnowledgeIndex::in_memory()?;
/// let doc = Document::new("kb-1", "Returns", None, "Returns are free within 30 days.", vec![])?;
/// index.replace("acme", &doc)?;
/// index.commit()?;
/// let hits = index.search("acme", "free returns", &[], 10)?;
/// assert_eq!(hits[0].doc_id, "kb-1");
/// assert!(index.search("globex", "free returns", &[], 10)?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KnowledgeIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    statistics: Mutex<StatisticsCache>,
    /// The last change of the documents' log this index has applied, kept
    /// in each commit's payload (see [`KnowledgeIndex::commit_through`]).
    watermark: AtomicU64,
}

impl KnowledgeIndex {
    /// Opens the index stored in `dir`, creating the directory and an empty
    /// index when there is none. One process may hold it at a time.
    pub fn open(dir: impl AsRef<Path>) -> Result<KnowledgeIndex, IndexError> {
        let path = dir.as_ref();
        let unusable = |message: String| IndexError::Directory {
            path: path.to_owned(),
            message,
        };
        std::fs::create_dir_all(path).map_err(|e| unusable(e.to_string()))?;
        let directory = MmapDirectory::open(path).map_err(|e| unusable(e.to_string()))?;
        let (schema, fields) = schema();
        let index = Index::builder()
            .schema(schema)
            .settings(settings())
            .open_or_create(directory)
            .map_err(|e| match e {
                TantivyError::SchemaError(_) => IndexError::SchemaMismatch {
                    path: path.to_owned(),
                },
                other => IndexError::Engine(other),
            })?;
        KnowledgeIndex::with_index(index, fields)
    }

    /// An index that lives in memory only, for tests and benchmarks.
    pub fn in_memory() -> Result<KnowledgeIndex, IndexError> {
        let (schema, fields) = schema();
        let index = Index::builder()
            .schema(schema)
            .settings(settings())
            .create_in_ram()?;
        KnowledgeIndex::with_index(index, fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<KnowledgeIndex, IndexError> {
        // Tokenizers are not persisted with the index: register on every open.
        index.tokenizers().register(
            TOKENIZER,
            TextAnalyzer::from(CustomerWords {
                analyzer: analyzer(),
            }),
        );
        let writer = index
            .writer_with_num_threads(1, WRITER_HEAP_BYTES)
            .map_err(|e| match e {
                TantivyError::LockFailure(lock, message) => {
                    IndexError::Locked(message.unwrap_or_else(|| lock.to_string()))
                }
                other => IndexError::Engine(other),
            })?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let watermark = index
            .load_metas()?
            .payload
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Ok(KnowledgeIndex {
            reader,
            writer: Mutex::new(writer),
            fields,
            statistics: Mutex::new(StatisticsCache::default()),
            watermark: AtomicU64::new(watermark),
        })
    }

    /// Adds `document` to `customer`'s knowledge, replacing any document with
    /// the same id. Returns the number of passages staged.
    pub fn replace(&self, customer: &str, document: &Document) -> Result<usize, IndexError> {
        validate_customer(customer)?;
        document.validate()?;
        let writer = self.writer();
        writer.delete_term(self.doc_key(customer, &document.id));
        self.add_passages(&writer, customer, document)
    }

    /// Removes `customer`'s document `doc_id`, if there is one.
    pub fn delete(&self, customer: &str, doc_id: &str) -> Result<(), IndexError> {
        validate_customer(customer)?;
        let writer = self.writer();
        writer.delete_term(self.doc_key(customer, doc_id));
        Ok(())
    }

    /// Rebuilds `customer`'s passages from `documents`, the complete set of
    /// that customer's documents: anything not in it is removed. Every
    /// document is validated before anything changes. Returns the number of
    /// passages staged.
    pub fn reindex(&self, customer: &str, documents: &[Document]) -> Result<usize, IndexError> {
        validate_customer(customer)?;
        let mut seen = HashSet::new();
        for document in documents {
            document.validate()?;
            if !seen.insert(document.id.as_str()) {
                return Err(IndexError::DocumentDuplicate {
                    id: document.id.clone(),
                });
            }
        }
        let writer = self.writer();
        writer.delete_term(Term::from_field_text(self.fields.customer, customer));
        let mut passages = 0;
        for document in documents {
            passages += self.add_passages(&writer, customer, document)?;
        }
        Ok(passages)
    }

    /// Makes every change so far durable and visible to searches.
    pub fn commit(&self) -> Result<(), IndexError> {
        self.commit_through(self.watermark())
    }

    /// [`commit`](Self::commit), recording that the index now holds every
    /// change of the documents' log up to `watermark`, durably with the
    /// passages: a restart resumes from there.
    pub fn commit_through(&self, watermark: u64) -> Result<(), IndexError> {
        let mut writer = self.writer();
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&watermark.to_string());
        prepared.commit()?;
        drop(writer);
        self.watermark.store(watermark, Ordering::SeqCst);
        self.reader.reload()?;
        Ok(())
    }

    /// The last change of the documents' log this index holds (0: none).
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::SeqCst)
    }

    /// The best passages of `customer`'s knowledge for `query` that a caller
    /// belonging to `caller_groups` may read, best first, at most `limit`
    /// (capped at [`HITS_MAX`]).
    ///
    /// The query is free text: it is analysed like the passages and any word
    /// may match (no query syntax, so no field can be named or escaped from).
    pub fn search(
        &self,
        customer: &str,
        query: &str,
        caller_groups: &[String],
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        validate_customer(customer)?;
        validate_caller_groups(caller_groups)?;
        let chars = query.chars().count();
        if chars > QUERY_CHARS_MAX {
            return Err(IndexError::QueryTooLong {
                chars,
                max: QUERY_CHARS_MAX,
            });
        }
        let limit = limit.min(HITS_MAX);
        let query_terms = distinct_terms(query);
        if limit == 0 || query_terms.is_empty() {
            return Ok(Vec::new());
        }

        let f = self.fields;
        let mut matching: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for term in &query_terms {
            for (field, boost) in f.searched() {
                let term_query = TermQuery::new(
                    Term::from_field_text(field, &key(customer, term)),
                    IndexRecordOption::WithFreqs,
                );
                matching.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(term_query), boost)),
                ));
            }
        }
        let searcher = self.reader.searcher();
        let statistics = self.readable_statistics(&searcher, customer, caller_groups)?;
        if statistics.known.docs == 0 {
            return Ok(Vec::new());
        }
        let full = WithinReadable {
            matching: BooleanQuery::new(matching),
            readable: statistics.known.clone(),
        };
        let top = searcher.search_with_statistics_provider(
            &full,
            &TopDocs::with_limit(limit).order_by_score(),
            &statistics,
        )?;
        let mut snippets = self.snippets(&statistics, customer, &query_terms)?;

        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let stored: TantivyDocument = searcher.doc(address)?;
            let text_of = |field: Field| -> Option<String> {
                stored
                    .get_first(field)
                    .and_then(|v| v.as_str().map(str::to_owned))
            };
            let text = text_of(f.text).unwrap_or_default();
            let snippet_html = snippets.html(&text).unwrap_or_else(|| {
                // The match was in the title or heading: show the opening.
                escape_html(&prefix_at_word(&text, SNIPPET_CHARS_MAX))
            });
            hits.push(Hit {
                doc_id: text_of(f.doc_id).unwrap_or_default(),
                title: text_of(f.title).unwrap_or_default(),
                url: text_of(f.url),
                heading: text_of(f.heading).unwrap_or_default(),
                snippet_html,
                text,
                score: f64::from(score),
            });
        }
        Ok(hits)
    }

    /// The statistics of what a caller may read: the same customer and
    /// groups search again and again between two commits, so they are kept
    /// per searcher generation (and forgotten at the next one).
    fn readable_statistics<'s>(
        &self,
        searcher: &'s tantivy::Searcher,
        customer: &str,
        caller_groups: &[String],
    ) -> Result<ReadableStatistics<'s>, IndexError> {
        let mut principals = readable_principals(caller_groups);
        principals.sort();
        principals.dedup();
        let generation = searcher.generation().generation_id();
        let key = (customer.to_owned(), principals);
        let cached = {
            let mut cache = self
                .statistics
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Generations only grow; a search still on an older searcher
            // computes its own and keeps nothing.
            if cache.generation < generation {
                cache.generation = generation;
                cache.entries.clear();
                cache.bytes = 0;
            }
            (cache.generation == generation)
                .then(|| cache.entries.get(&key).cloned())
                .flatten()
        };
        let readable_set = match cached {
            Some(known) => known,
            None => {
                let readable = self.readable_query(customer, &key.1);
                let computed = Arc::new(Readable::compute(searcher, &readable, self.fields)?);
                let mut cache = self
                    .statistics
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if cache.generation == generation {
                    let bytes = computed.bytes();
                    if cache.bytes + bytes > READABLE_CACHED_BYTES_MAX {
                        cache.entries.clear();
                        cache.bytes = 0;
                    }
                    cache.bytes += bytes;
                    cache.entries.insert(key, computed.clone());
                }
                computed
            }
        };
        Ok(ReadableStatistics {
            searcher,
            known: readable_set,
        })
    }

    /// The passages of `customer` that one of `principals` may read.
    fn readable_query(&self, customer: &str, principals: &[String]) -> BooleanQuery {
        let f = self.fields;
        let customer_clause = const_zero(TermQuery::new(
            Term::from_field_text(f.customer, customer),
            IndexRecordOption::Basic,
        ));
        let acl_clause = const_zero(BooleanQuery::new(
            principals
                .iter()
                .map(|principal| {
                    let term = Term::from_field_text(f.acl, principal);
                    let query: Box<dyn Query> =
                        Box::new(TermQuery::new(term, IndexRecordOption::Basic));
                    (Occur::Should, query)
                })
                .collect(),
        ));
        BooleanQuery::new(vec![
            (Occur::Must, customer_clause),
            (Occur::Must, acl_clause),
        ])
    }

    /// Highlights weighted by rarity among the readable passages only, so
    /// which fragment is shown reveals nothing about other passages.
    fn snippets(
        &self,
        statistics: &ReadableStatistics<'_>,
        customer: &str,
        query_terms: &[String],
    ) -> Result<Snippets, IndexError> {
        let mut weights = HashMap::new();
        for term in query_terms {
            let doc_freq = statistics.doc_freq(&Term::from_field_text(
                self.fields.text_terms,
                &key(customer, term),
            ))?;
            if doc_freq > 0 {
                weights.insert(term.clone(), 1.0 / (1.0 + doc_freq as Score));
            }
        }
        Ok(Snippets::new(weights, SNIPPET_CHARS_MAX))
    }

    fn add_passages(
        &self,
        writer: &IndexWriter,
        customer: &str,
        document: &Document,
    ) -> Result<usize, IndexError> {
        let f = self.fields;
        let passages = chunk(&document.body);
        let title_terms = key(customer, &document.title);
        for passage in &passages {
            let mut stored = TantivyDocument::new();
            stored.add_text(f.customer, customer);
            stored.add_text(f.doc_key, key(customer, &document.id));
            stored.add_text(f.doc_id, &document.id);
            stored.add_text(f.title, &document.title);
            if let Some(url) = &document.url {
                stored.add_text(f.url, url);
            }
            stored.add_text(f.heading, &passage.heading);
            stored.add_text(f.text, &passage.text);
            stored.add_text(f.title_terms, &title_terms);
            stored.add_text(f.heading_terms, key(customer, &passage.heading));
            stored.add_text(f.text_terms, key(customer, &passage.text));
            for principal in document_principals(&document.groups) {
                stored.add_text(f.acl, principal);
            }
            writer.add_document(stored)?;
        }
        Ok(passages.len())
    }

    fn doc_key(&self, customer: &str, doc_id: &str) -> Term {
        Term::from_field_text(self.fields.doc_key, &key(customer, doc_id))
    }

    /// A panic while holding the writer leaves tantivy's own state
    /// consistent (each call is atomic), so a poisoned lock is still usable.
    fn writer(&self) -> MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Number of passages visible to searches, all customers together: for
    /// operators and tests, never for callers of `search`.
    pub fn passage_count(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// `rest` (a document id, a word, a text to analyse) under `customer`.
/// Customer ids may not contain control characters, so the first `\0` ends
/// the customer and the key is unambiguous.
fn key(customer: &str, rest: &str) -> String {
    format!("{customer}\0{rest}")
}

/// The tokenizer of the per-customer word fields: reads `customer \0 text`
/// and gives the words of `text` as [`analyzer`] gives them, each prefixed
/// like [`key`]. Analysis stays in tantivy's indexing thread, beside the
/// request that stages the passages.
#[derive(Clone)]
struct CustomerWords {
    analyzer: TextAnalyzer,
}

impl Tokenizer for CustomerWords {
    type TokenStream<'a> = CustomerWordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CustomerWordStream<'a> {
        // Customer ids hold no control character: the first `\0` ends it.
        let (customer, words) = text.split_once('\0').unwrap_or(("", text));
        CustomerWordStream {
            customer,
            words: self.analyzer.token_stream(words),
        }
    }
}

struct CustomerWordStream<'a> {
    customer: &'a str,
    words: BoxTokenStream<'a>,
}

impl TokenStream for CustomerWordStream<'_> {
    fn advance(&mut self) -> bool {
        if !self.words.advance() {
            return false;
        }
        let word = &mut self.words.token_mut().text;
        word.insert(0, '\0');
        word.insert_str(0, self.customer);
        true
    }

    fn token(&self) -> &Token {
        self.words.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.words.token_mut()
    }
}

fn validate_customer(customer: &str) -> Result<(), IndexError> {
    let reason = if customer.trim().is_empty() {
        "must not be empty"
    } else if customer.chars().count() > CUSTOMER_CHARS_MAX {
        "longer than 128 characters"
    } else if customer.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(IndexError::CustomerInvalid { reason })
}

fn validate_caller_groups(groups: &[String]) -> Result<(), IndexError> {
    if groups.len() > CALLER_GROUPS_MAX {
        return Err(IndexError::CallerGroupsTooMany {
            count: groups.len(),
            max: CALLER_GROUPS_MAX,
        });
    }
    for group in groups {
        validate_group(group).map_err(|reason| IndexError::CallerGroupInvalid {
            group: crate::document::quoted(group),
            reason,
        })?;
    }
    Ok(())
}

/// Who may read a document: everyone of its customer, or its groups.
fn document_principals(groups: &[String]) -> Vec<String> {
    if groups.is_empty() {
        vec![PUBLIC_PRINCIPAL.to_owned()]
    } else {
        groups
            .iter()
            .map(|g| format!("{GROUP_PRINCIPAL_PREFIX}{g}"))
            .collect()
    }
}

/// What a caller may read: public documents and those of its groups.
fn readable_principals(caller_groups: &[String]) -> Vec<String> {
    std::iter::once(PUBLIC_PRINCIPAL.to_owned())
        .chain(
            caller_groups
                .iter()
                .map(|g| format!("{GROUP_PRINCIPAL_PREFIX}{g}")),
        )
        .collect()
}

fn distinct_terms(query: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    terms(&mut analyzer(), query)
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .take(QUERY_TERMS_MAX)
        .collect()
}

/// Filter clauses match or not; they must not add to the score.
fn const_zero(query: impl Query) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(Box::new(query), 0.0))
}

/// Memory kept for what callers may read (mostly one bit per passage per
/// caller); beyond it the cache starts afresh.
const READABLE_CACHED_BYTES_MAX: usize = 64 << 20;
/// Document frequencies kept per caller's statistics.
const DOC_FREQS_CACHED_MAX: usize = 100_000;

/// What callers may read by (customer, principals), valid for one searcher
/// generation.
#[derive(Default)]
struct StatisticsCache {
    generation: u64,
    bytes: usize,
    entries: HashMap<(String, Vec<String>), Arc<Readable>>,
}

/// What one caller may read: the passages themselves, one bit set per
/// segment, and in numbers: how many, the total length of each searched
/// field, and the document frequencies asked so far.
///
/// Searching within the bit set costs one lookup per candidate, where
/// intersecting the customer and ACL postings cost a walk over every
/// readable passage on every search.
struct Readable {
    segments: HashMap<SegmentId, Arc<BitSet>>,
    docs: u64,
    tokens: [(Field, u64); 3],
    doc_freqs: Mutex<HashMap<Term, u64>>,
}

impl Readable {
    /// One pass over the readable passages.
    fn compute(
        searcher: &tantivy::Searcher,
        readable: &BooleanQuery,
        fields: Fields,
    ) -> Result<Readable, IndexError> {
        let searched = fields.searched().map(|(field, _)| field);
        let parts = searcher.search(readable, &ReadableCollector { fields: searched })?;
        let mut known = Readable {
            segments: HashMap::with_capacity(parts.len()),
            docs: 0,
            tokens: searched.map(|field| (field, 0)),
            doc_freqs: Mutex::new(HashMap::new()),
        };
        for part in parts {
            known.docs += part.passages.len() as u64;
            for ((_, total), length) in known.tokens.iter_mut().zip(part.lengths) {
                *total += length;
            }
            known.segments.insert(part.segment, Arc::new(part.passages));
        }
        Ok(known)
    }

    /// The passages of `segment` the caller may read; `None` (nothing)
    /// for a segment these statistics did not see.
    fn passages(&self, segment: SegmentId) -> Option<&Arc<BitSet>> {
        self.segments.get(&segment)
    }

    /// Memory held by the bit sets, for the cache's bound.
    fn bytes(&self) -> usize {
        self.segments
            .values()
            .map(|passages| passages.max_value() as usize / 8 + 8)
            .sum()
    }

    /// Readable passages holding `term`.
    fn count_holding(&self, searcher: &tantivy::Searcher, term: &Term) -> tantivy::Result<u64> {
        let mut count = 0;
        let mut buffer = [0; COLLECT_BLOCK_BUFFER_LEN];
        for reader in searcher.segment_readers() {
            let Some(passages) = self.passages(reader.segment_id()) else {
                continue;
            };
            let Some(mut postings) = reader
                .inverted_index(term.field())?
                .read_postings(term, IndexRecordOption::Basic)?
            else {
                continue;
            };
            loop {
                let filled = postings.fill_buffer(&mut buffer);
                count += buffer[..filled]
                    .iter()
                    .filter(|&&doc| passages.contains(doc))
                    .count() as u64;
                if filled < buffer.len() {
                    break;
                }
            }
        }
        Ok(count)
    }
}

/// BM25 statistics over the passages one caller may read.
struct ReadableStatistics<'a> {
    searcher: &'a tantivy::Searcher,
    known: Arc<Readable>,
}

impl Bm25StatisticsProvider for ReadableStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        let tokens = self
            .known
            .tokens
            .iter()
            .find(|(f, _)| *f == field)
            .map_or(0, |(_, n)| *n);
        // Never zero: BM25 divides by the average length.
        Ok(tokens.max(1))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.known.docs)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let freqs = || {
            self.known
                .doc_freqs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if let Some(known) = freqs().get(term) {
            return Ok(*known);
        }
        let doc_freq = self.known.count_holding(self.searcher, term)?;
        let mut freqs = freqs();
        if freqs.len() < DOC_FREQS_CACHED_MAX {
            freqs.insert(term.clone(), doc_freq);
        }
        Ok(doc_freq)
    }
}

/// The matching passages a caller may read, ranked as `matching` ranks them.
///
/// Top-k search keeps its pruning (block-max WAND over the term postings):
/// the readable set only decides which candidates enter the top k, the way
/// tantivy itself skips deleted passages.
#[derive(Clone)]
struct WithinReadable {
    matching: BooleanQuery,
    readable: Arc<Readable>,
}

impl std::fmt::Debug for WithinReadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithinReadable")
            .field("matching", &self.matching)
            .field("readable_passages", &self.readable.docs)
            .finish()
    }
}

impl Query for WithinReadable {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(WithinReadableWeight {
            matching: self.matching.weight(enable_scoring)?,
            readable: self.readable.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.matching.query_terms(visitor);
    }
}

struct WithinReadableWeight {
    matching: Box<dyn Weight>,
    readable: Arc<Readable>,
}

impl Weight for WithinReadableWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let Some(passages) = self.readable.passages(reader.segment_id()) else {
            return Ok(Box::new(EmptyScorer));
        };
        let mut scorer = ReadableScorer {
            matching: self.matching.scorer(reader, boost)?,
            passages: passages.clone(),
        };
        if !scorer.readable(scorer.matching.doc()) {
            scorer.advance();
        }
        Ok(Box::new(scorer))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let readable = self
            .readable
            .passages(reader.segment_id())
            .is_some_and(|passages| passages.contains(doc));
        if !readable {
            return Err(TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )));
        }
        self.matching.explain(reader, doc)
    }

    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        let Some(passages) = self.readable.passages(reader.segment_id()) else {
            return Ok(());
        };
        let mut threshold = threshold;
        self.matching
            .for_each_pruning(threshold, reader, &mut |doc, score| {
                if passages.contains(doc) {
                    threshold = callback(doc, score);
                }
                threshold
            })
    }
}

/// The matching scorer, stepping over passages the caller may not read.
struct ReadableScorer {
    matching: Box<dyn Scorer>,
    /// The readable passages of the scorer's segment.
    passages: Arc<BitSet>,
}

impl ReadableScorer {
    fn readable(&self, doc: DocId) -> bool {
        doc == TERMINATED || self.passages.contains(doc)
    }
}

impl DocSet for ReadableScorer {
    fn advance(&mut self) -> DocId {
        loop {
            let doc = self.matching.advance();
            if self.readable(doc) {
                return doc;
            }
        }
    }

    fn seek(&mut self, target: DocId) -> DocId {
        let doc = self.matching.seek(target);
        if self.readable(doc) {
            doc
        } else {
            self.advance()
        }
    }

    fn doc(&self) -> DocId {
        self.matching.doc()
    }

    fn size_hint(&self) -> u32 {
        self.matching.size_hint()
    }
}

impl Scorer for ReadableScorer {
    fn score(&mut self) -> Score {
        self.matching.score()
    }
}

/// Collects the matching passages of each segment with their number and
/// the total length (field norm) of three fields.
struct ReadableCollector {
    fields: [Field; 3],
}

struct SegmentReadable {
    norms: [FieldNormReader; 3],
    part: ReadablePart,
}

/// What one segment holds of what a caller may read.
struct ReadablePart {
    segment: SegmentId,
    passages: BitSet,
    lengths: [u64; 3],
}

impl Collector for ReadableCollector {
    type Fruit = Vec<ReadablePart>;
    type Child = SegmentReadable;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentReadable> {
        Ok(SegmentReadable {
            norms: [
                reader.get_fieldnorms_reader(self.fields[0])?,
                reader.get_fieldnorms_reader(self.fields[1])?,
                reader.get_fieldnorms_reader(self.fields[2])?,
            ],
            part: ReadablePart {
                segment: reader.segment_id(),
                passages: BitSet::with_max_value(reader.max_doc()),
                lengths: [0; 3],
            },
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<ReadablePart>) -> tantivy::Result<Vec<ReadablePart>> {
        Ok(fruits)
    }
}

impl SegmentCollector for SegmentReadable {
    type Fruit = ReadablePart;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.part.passages.insert(doc);
        for (total, norms) in self.part.lengths.iter_mut().zip(&self.norms) {
            *total += u64::from(norms.fieldnorm(doc));
        }
    }

    fn harvest(self) -> ReadablePart {
        self.part
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<KnowledgeIndex>();
    }

    #[test]
    fn principals_are_prefixed_so_no_group_means_everyone() {
        assert_eq!(document_principals(&[]), ["public"]);
        let groups = vec!["public".to_owned(), "hr".to_owned()];
        assert_eq!(document_principals(&groups), ["group:public", "group:hr"]);
        assert_eq!(
            readable_principals(&groups),
            ["public", "group:public", "group:hr"]
        );
    }

    #[test]
    fn words_are_indexed_under_their_customer() {
        let mut words = TextAnalyzer::from(CustomerWords {
            analyzer: analyzer(),
        });
        let mut stream = words.token_stream("acme\0Refunds to your cards");
        let mut seen = Vec::new();
        while stream.advance() {
            seen.push(stream.token().text.clone());
        }
        assert_eq!(seen, ["acme\0refund", "acme\0card"]);
    }

    #[test]
    fn kept_statistics_follow_every_commit_and_each_caller() {
        let index = KnowledgeIndex::in_memory().unwrap();
        let doc = |id: &str, body: &str, groups: &[&str]| {
            Document::new(
                id,
                id,
                None,
                body,
                groups.iter().map(|g| g.to_string()).collect(),
            )
            .unwrap()
        };
        index
            .replace("acme", &doc("a", "refund policy for tents", &[]))
            .unwrap();
        index
            .replace("acme", &doc("b", "shipping times", &[]))
            .unwrap();
        index.commit().unwrap();
        let score = |groups: &[String]| index.search("acme", "refund", groups, 5).unwrap()[0].score;
        let before = score(&[]);
        assert_eq!(
            before,
            score(&[]),
            "the same statistics give the same score"
        );
        // A finance-only passage moves the score for finance readers only.
        index
            .replace(
                "acme",
                &doc("c", "refund approvals by finance", &["finance"]),
            )
            .unwrap();
        index.commit().unwrap();
        assert_eq!(
            score(&[]),
            before,
            "what a caller cannot read changes nothing"
        );
        let finance = score(&["finance".to_owned()]);
        assert_ne!(finance, before, "a finance reader's statistics include it");
        // Another readable passage with the word: the kept statistics are
        // those of the new generation.
        index
            .replace("acme", &doc("d", "refund by card", &[]))
            .unwrap();
        index.commit().unwrap();
        assert_ne!(score(&[]), before);
    }
}
