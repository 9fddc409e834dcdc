//! `payoff knowledge add|reindex`: documents go through the server's API,
//! which owns the index (one writer per index).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use payoff_knowledge::{parse_document, parse_json_lines, Document, DocumentMeta, Format};
use serde_json::{json, Value};

use crate::client::ApiClient;
use crate::settings::Settings;
use crate::BadInput;

#[derive(Subcommand)]
pub enum KnowledgeCommand {
    /// Add (or replace) documents from a file or a folder: Markdown (.md),
    /// text (.txt), HTML (.html) or JSON Lines (.jsonl) of
    /// {id, title, url, body, groups}. A file's id is its path in the folder.
    Add {
        /// A file, or a folder read with its subfolders.
        path: PathBuf,
        /// Groups allowed to read Markdown, text and HTML files (JSON Lines
        /// documents carry their own); none: the whole customer.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Required with a provider key.
        #[arg(long)]
        customer: Option<String>,
        /// Print how many documents were stored as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the customer's passages from its stored documents.
    Reindex {
        /// Required with a provider key.
        #[arg(long)]
        customer: Option<String>,
        /// Print how many passages were indexed as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "md" | "markdown" => Some(Format::Markdown),
        "txt" | "text" => Some(Format::PlainText),
        "html" | "htm" => Some(Format::Html),
        _ => None,
    }
}

/// Every document under `path`, checked before anything is sent.
fn read_documents(path: &Path, groups: &[String]) -> anyhow::Result<Vec<Document>> {
    let mut files = Vec::new();
    if path.is_dir() {
        // Each real folder is read once: a symbolic link back up the tree
        // would otherwise be walked forever.
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if !seen.insert(std::fs::canonicalize(&dir)?) {
                continue;
            }
            for entry in std::fs::read_dir(&dir)? {
                let p = entry?.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.sort();
    } else if path.is_file() {
        files.push(path.to_path_buf());
    } else {
        return Err(BadInput(format!("{}: no such file or folder", path.display())).into());
    }
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| BadInput(format!("{}: {e}", file.display())))?;
        let is_jsonl = file.extension().is_some_and(|e| e == "jsonl");
        if is_jsonl {
            documents.extend(
                parse_json_lines(&text)
                    .map_err(|e| BadInput(format!("{}: {e}", file.display())))?,
            );
            continue;
        }
        let Some(format) = format_of(&file) else {
            if path.is_file() {
                return Err(BadInput(format!(
                    "{}: not .md, .txt, .html or .jsonl",
                    file.display()
                ))
                .into());
            }
            continue;
        };
        let id = file
            .strip_prefix(path)
            .ok()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(&file)
            .to_string_lossy()
            .into_owned();
        let meta = DocumentMeta {
            id: id.clone(),
            title: None,
            url: None,
            groups: groups.to_vec(),
        };
        documents.push(
            parse_document(format, meta, &text)
                .map_err(|e| BadInput(format!("{}: {e}", file.display())))?,
        );
    }
    if documents.is_empty() {
        return Err(BadInput(format!("{}: no documents found", path.display())).into());
    }
    Ok(documents)
}

pub fn run(settings: &Settings, command: KnowledgeCommand) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(&settings.url, settings.api_key()?)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let query = |customer: &Option<String>| {
        customer
            .as_ref()
            .map(|c| format!("?customer={c}"))
            .unwrap_or_default()
    };
    match command {
        KnowledgeCommand::Add {
            path,
            groups,
            customer,
            json,
        } => {
            let documents = read_documents(&path, &groups)?;
            let progress = ProgressBar::new(documents.len() as u64);
            progress.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} documents").expect("template"),
            );
            if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            for chunk in uploads(&documents)? {
                let n = chunk.len() as u64;
                let body = Value::Array(chunk);
                let path = format!("/v1/knowledge/documents{}", query(&customer));
                runtime
                    .block_on(client.post_json(&path, &body))?
                    .map_err(|p| BadInput(format!("the server refused the documents: {p}")))?;
                progress.inc(n);
            }
            progress.finish_and_clear();
            if json {
                println!("{}", json!({ "documents": documents.len() }));
            } else {
                println!("stored {} documents", documents.len());
            }
        }
        KnowledgeCommand::Reindex { customer, json } => {
            let path = format!("/v1/knowledge/reindex{}", query(&customer));
            let reply = runtime
                .block_on(client.post_json(&path, &json!({})))?
                .map_err(|p| BadInput(format!("the server refused: {p}")))?;
            let passages = &reply["passages"];
            if json {
                println!("{}", json!({ "passages": passages }));
            } else {
                println!("reindexed: {passages} passages");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The documents in requests of at most 100 documents and 8 MiB, well
/// inside the server's upload limit (16 MiB); a document alone is never
/// over it (its body is at most 2 MiB).
fn uploads<T: serde::Serialize>(documents: &[T]) -> anyhow::Result<Vec<Vec<Value>>> {
    const DOCUMENTS: usize = 100;
    const BYTES: usize = 8 * 1024 * 1024;
    let mut out: Vec<Vec<Value>> = Vec::new();
    let mut bytes = 0;
    for d in documents {
        let value = serde_json::to_value(d)?;
        let size = value.to_string().len();
        match out.last_mut() {
            Some(last) if last.len() < DOCUMENTS && bytes + size <= BYTES => {
                bytes += size;
                last.push(value);
            }
            _ => {
                bytes = size;
                out.push(vec![value]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_stay_under_a_hundred_documents_and_eight_mib() {
        let small: Vec<String> = (0..250).map(|i| format!("doc {i}")).collect();
        let sizes: Vec<usize> = uploads(&small).unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let big: Vec<String> = (0..9).map(|_| "x".repeat(2 * 1024 * 1024)).collect();
        let parts = uploads(&big).unwrap();
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3]);
        assert_eq!(parts.concat().len(), 9, "nothing is left out");
    }
}
