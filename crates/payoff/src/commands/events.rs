//! `payoff events send FILE` and `payoff events export`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use payoff_ledger::CUSTOMER_EXTENSION;
use serde_json::Value;

use crate::client::ApiClient;
use crate::commands::open_store;
use crate::settings::Settings;
use crate::{bad_input, BadInput};

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Send events from a file (JSON Lines, or a JSON array of CloudEvents) to a
    /// server, in batches. Re-sending a file is harmless: stored events come
    /// back as duplicates.
    Send {
        /// JSON Lines, or a JSON array of CloudEvents.
        file: PathBuf,
        /// Events per request
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write events as JSON Lines, in chain order.
    Export {
        /// Only this customer's events, exactly as stored; without it every
        /// customer's, each line naming its customer in `payoffcustomer`.
        #[arg(long)]
        customer: Option<String>,
        /// Output file [default: standard output]
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

pub fn run(settings: &Settings, command: EventsCommand) -> anyhow::Result<ExitCode> {
    match command {
        EventsCommand::Send { file, batch, json } => send(settings, file, batch, json),
        EventsCommand::Export { customer, output } => export(settings, customer, output),
    }
}

/// A batch on its way: the JSON array body and the file line of each event.
struct Batch {
    body: Vec<u8>,
    lines: Vec<usize>,
}

fn send(
    settings: &Settings,
    path: PathBuf,
    batch_size: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if batch_size == 0 || batch_size > settings.server.limits.batch_events_max {
        return bad_input(format!(
            "--batch: must be between 1 and {}",
            settings.server.limits.batch_events_max
        ));
    }
    let client = ApiClient::new(&settings.url, settings.api_key()?)?;
    let file = File::open(&path).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
    let total_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::new(file);
    let array_file = reader.fill_buf()?.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let progress = ProgressBar::new(total_bytes);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}").expect("template"),
    );
    if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }

    let batches: Box<dyn Iterator<Item = anyhow::Result<Batch>>> = if array_file {
        let mut text = Vec::new();
        reader.read_to_end(&mut text)?;
        let items: Vec<Value> = serde_json::from_slice(&text).map_err(|e| {
            BadInput(format!(
                "{}: not a JSON array of events: {e}",
                path.display()
            ))
        })?;
        let chunks: Vec<Batch> = items
            .chunks(batch_size)
            .enumerate()
            .map(|(n, chunk)| Batch {
                body: serde_json::to_vec(chunk).unwrap_or_default(),
                lines: (0..chunk.len()).map(|i| n * batch_size + i + 1).collect(),
            })
            .collect();
        Box::new(chunks.into_iter().map(Ok))
    } else {
        Box::new(JsonLines {
            reader,
            path: path.clone(),
            line: 0,
            batch_size,
            progress: progress.clone(),
        })
    };

    let runtime = tokio::runtime::Runtime::new()?;
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    for batch in batches {
        let batch = batch?;
        let reply = runtime.block_on(client.send(
            reqwest::Method::POST,
            "/v1/events",
            "application/cloudevents-batch+json",
            batch.body,
        ))?;
        match reply {
            Ok(body) => {
                accepted += body["accepted"].as_u64().unwrap_or(0);
                duplicates += body["duplicates"].as_u64().unwrap_or(0);
                progress.set_message(format!("{accepted} accepted, {duplicates} duplicates"));
            }
            Err(problem) => {
                progress.abandon();
                return Err(located(problem, &batch.lines, &path));
            }
        }
    }
    progress.finish_and_clear();
    if json {
        println!(
            "{}",
            serde_json::json!({"accepted": accepted, "duplicates": duplicates})
        );
    } else {
        println!(
            "sent {}: {accepted} accepted, {duplicates} duplicates",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Names the file line of the first bad event of a refused batch.
fn located(
    problem: crate::client::Problem,
    lines: &[usize],
    path: &std::path::Path,
) -> anyhow::Error {
    let index = problem.body["errors"][0]["index"]
        .as_u64()
        .or_else(|| problem.body["event"]["index"].as_u64());
    let line = index.and_then(|i| lines.get(i as usize)).copied();
    let reason = match problem.body["errors"][0].as_object() {
        Some(e) => format!(
            "{} {}",
            e.get("field").and_then(Value::as_str).unwrap_or(""),
            e.get("reason").and_then(Value::as_str).unwrap_or("")
        ),
        None => problem.detail.clone(),
    };
    let place = line
        .map(|l| format!("{}:{l}: ", path.display()))
        .unwrap_or_else(|| format!("{}: ", path.display()));
    let message = format!("{place}{reason} (HTTP {} {}); the batches before it were stored, re-send the file after fixing it", problem.status, problem.code);
    if problem.status < 500 && problem.status != 401 {
        BadInput(message).into()
    } else {
        anyhow::anyhow!(message)
    }
}

/// Reads JSON Lines into batches, checking each line is JSON so that a
/// broken line is named by its number before anything is sent.
struct JsonLines {
    reader: BufReader<File>,
    path: PathBuf,
    line: usize,
    batch_size: usize,
    progress: ProgressBar,
}

impl Iterator for JsonLines {
    type Item = anyhow::Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut body = Vec::with_capacity(self.batch_size * 300);
        body.push(b'[');
        let mut lines = Vec::with_capacity(self.batch_size);
        let mut text = String::new();
        while lines.len() < self.batch_size {
            text.clear();
            match self.reader.read_line(&mut text) {
                Ok(0) => break,
                Ok(n) => self.progress.inc(n as u64),
                Err(e) => {
                    return Some(Err(BadInput(format!(
                        "{}:{}: {e}",
                        self.path.display(),
                        self.line + 1
                    ))
                    .into()))
                }
            }
            self.line += 1;
            let trimmed = text.trim();
            if trimmed.is_empty() {
                continue;
            }
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
                return Some(Err(BadInput(format!(
                    "{}:{}: not valid JSON: {e}",
                    self.path.display(),
                    self.line
                ))
                .into()));
            }
            if !lines.is_empty() {
                body.push(b',');
            }
            body.extend_from_slice(trimmed.as_bytes());
            lines.push(self.line);
        }
        if lines.is_empty() {
            return None;
        }
        body.push(b']');
        Some(Ok(Batch { body, lines }))
    }
}

fn export(
    settings: &Settings,
    customer: Option<String>,
    output: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let store = open_store(settings)?;
    let customers = match &customer {
        Some(c) if store.customer(c)?.is_none() => {
            return bad_input(format!("--customer: unknown customer \"{c}\""))
        }
        Some(c) => vec![c.clone()],
        None => store.customers()?.into_iter().map(|c| c.id).collect(),
    };
    let sink: Box<dyn Write> = match &output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let mut count = 0u64;
    for id in customers {
        store.scan(&id, 0, |event| {
            let written = if customer.is_some() {
                out.write_all(&event.canonical)
                    .and_then(|_| out.write_all(b"\n"))
            } else {
                let mut value: Value =
                    serde_json::from_slice(&event.canonical).unwrap_or(Value::Null);
                value[CUSTOMER_EXTENSION] = Value::String(event.customer.clone());
                serde_json::to_writer(&mut out, &value)
                    .map_err(std::io::Error::other)
                    .and_then(|_| out.write_all(b"\n"))
            };
            count += 1;
            written.map_err(|e| {
                payoff_store::StoreError::Stopped(format!("cannot write the export: {e}"))
            })
        })?;
    }
    out.flush()?;
    if let Some(path) = output {
        eprintln!("exported {count} events to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
