//! Specifications of the knowledge library, one module per concern.

mod acl;
mod answer;
mod index;
mod input;
mod provider;

use payoff_knowledge::{Document, Hit, KnowledgeIndex};

pub fn doc(id: &str, title: &str, body: &str, groups: &[&str]) -> Document {
    Document::new(
        id,
        title,
        Some(format!("https://help.example/{id}")),
        body,
        groups.iter().map(|g| g.to_string()).collect(),
    )
    .unwrap()
}

pub fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|g| g.to_string()).collect()
}

/// An in-memory index holding `docs`, committed.
pub fn index_of(docs: &[(&str, Document)]) -> KnowledgeIndex {
    let index = KnowledgeIndex::in_memory().unwrap();
    for (customer, d) in docs {
        index.replace(customer, d).unwrap();
    }
    index.commit().unwrap();
    index
}

/// Sorted, de-duplicated document ids of the hits.
pub fn ids(hits: &[Hit]) -> Vec<String> {
    let mut ids: Vec<String> = hits.iter().map(|h| h.doc_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}
