//! LiteLLM's price file (`model_prices_and_context_window.json`) read into
//! a price table, so a provider keeps Payoff's prices current from the
//! list most of the ecosystem already maintains instead of typing them.
//!
//! The file maps each model name to per-token USD prices
//! (`input_cost_per_token`, `output_cost_per_token`,
//! `cache_read_input_token_cost`, `cache_creation_input_token_cost`,
//! `output_cost_per_reasoning_token`, …) beside its provider
//! (`litellm_provider`) and kind (`mode`). Payoff's table is per million
//! tokens in exact decimals: a per-token price is read as the shortest
//! decimal that is the same binary number (what the file's author wrote),
//! then scaled by a million, which only moves the decimal point.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

use crate::economics::{ModelPrice, PriceTable};

/// Kinds of model whose calls are metered as `llm.call`; image, audio and
/// moderation entries are priced per image or second, not per token.
const METERED_MODES: &[&str] = &["chat", "completion", "embedding", "responses"];

/// Largest file read: LiteLLM's own is about 1.5 MB.
pub const FILE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A price table made from LiteLLM's file, and what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub table: PriceTable,
    /// Entries not imported, each with the reason.
    pub skipped: Vec<(String, String)>,
}

/// Reads LiteLLM's price file. `providers`, when not empty, keeps only
/// the models of those providers (`openai`, `anthropic`, `vertex_ai`, …).
pub fn import(
    text: &str,
    effective: DateTime<Utc>,
    providers: &[String],
) -> Result<Imported, String> {
    if text.len() > FILE_BYTES_MAX {
        return Err(format!("the file is over {FILE_BYTES_MAX} bytes"));
    }
    payoff_nesting::check(
        text,
        &payoff_nesting::Syntax::JSON,
        payoff_nesting::DEPTH_MAX,
    )
    .map_err(|e| format!("the file is {e}"))?;
    let file: serde_json::Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| format!("not LiteLLM's price file (a JSON object of models): {e}"))?;
    let mut models = Vec::new();
    let mut skipped = Vec::new();
    for (name, entry) in &file {
        if name == "sample_spec" {
            continue; // the file's own documentation of its keys
        }
        let provider = entry["litellm_provider"].as_str();
        if !providers.is_empty() && !provider.is_some_and(|p| providers.iter().any(|q| q == p)) {
            continue;
        }
        let mode = entry["mode"].as_str().unwrap_or("chat");
        if !METERED_MODES.contains(&mode) {
            skipped.push((
                name.clone(),
                format!("mode \"{mode}\" is not priced per token"),
            ));
            continue;
        }
        let price = |key: &str| -> Result<Option<Decimal>, String> {
            match &entry[key] {
                Value::Null => Ok(None),
                Value::Number(n) => {
                    let per_token = n
                        .as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .ok_or_else(|| format!("{key}: {n} is not a price of 0 or more"))?;
                    // `{}` prints the shortest decimal that reads back as
                    // the same binary number.
                    let exact = Decimal::from_str(&format!("{per_token}"))
                        .or_else(|_| Decimal::from_scientific(&format!("{per_token:e}")))
                        .map_err(|e| format!("{key}: {n}: {e}"))?;
                    exact
                        .checked_mul(Decimal::from(1_000_000))
                        .map(|d| Some(d.normalize()))
                        .ok_or_else(|| format!("{key}: {n} is too large"))
                }
                other => Err(format!("{key}: {other} is not a number")),
            }
        };
        let read = (|| {
            let input = price("input_cost_per_token")?;
            let output = price("output_cost_per_token")?;
            let cached = price("cache_read_input_token_cost")?;
            let cache_write = price("cache_creation_input_token_cost")?;
            let reasoning = price("output_cost_per_reasoning_token")?;
            Ok::<_, String>(input.map(|input| ModelPrice {
                model: name.clone(),
                provider: provider.map(str::to_owned),
                input_per_million: input,
                // Embeddings have no output.
                output_per_million: output.unwrap_or(Decimal::ZERO),
                cached_input_per_million: cached,
                cache_write_per_million: cache_write,
                reasoning_per_million: reasoning,
            }))
        })();
        match read {
            Ok(Some(model)) => models.push(model),
            Ok(None) => skipped.push((name.clone(), "no input_cost_per_token".into())),
            Err(why) => skipped.push((name.clone(), why)),
        }
    }
    if models.is_empty() {
        return Err(if providers.is_empty() {
            "the file prices no model per token".into()
        } else {
            format!(
                "the file prices no model of {} per token",
                providers.join(", ")
            )
        });
    }
    Ok(Imported {
        table: PriceTable { effective, models },
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries in LiteLLM's format; the expected prices are worked out by
    /// hand (a per-token price times a million).
    const FILE: &str = r#"{
      "sample_spec": {"input_cost_per_token": 0.0, "litellm_provider": "one of https://docs.litellm.ai/docs/providers", "mode": "one of chat, embedding, completion, image_generation"},
      "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06, "litellm_provider": "openai", "mode": "chat", "max_tokens": 16384},
      "claude-3-5-sonnet-20241022": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05, "cache_creation_input_token_cost": 3.75e-06, "cache_read_input_token_cost": 3e-07, "litellm_provider": "anthropic", "mode": "chat"},
      "o1": {"input_cost_per_token": 1.5e-05, "output_cost_per_token": 6e-05, "output_cost_per_reasoning_token": 6e-05, "litellm_provider": "openai", "mode": "chat"},
      "text-embedding-3-small": {"input_cost_per_token": 2e-08, "output_cost_per_token": 0.0, "litellm_provider": "openai", "mode": "embedding"},
      "tiny-model": {"input_cost_per_token": 1.1e-10, "litellm_provider": "local", "mode": "completion"},
      "dall-e-3": {"output_cost_per_image": 0.04, "litellm_provider": "openai", "mode": "image_generation"},
      "broken": {"input_cost_per_token": "cheap", "litellm_provider": "openai", "mode": "chat"},
      "broken-reasoning": {"input_cost_per_token": 1e-06, "output_cost_per_reasoning_token": "dear", "litellm_provider": "openai", "mode": "chat"},
      "negative-cache-write": {"input_cost_per_token": 1e-06, "cache_creation_input_token_cost": -2e-06, "litellm_provider": "anthropic", "mode": "chat"},
      "negative": {"input_cost_per_token": -1e-06, "litellm_provider": "openai", "mode": "chat"},
      "no-price": {"litellm_provider": "openai", "mode": "chat"}
    }"#;

    fn at() -> DateTime<Utc> {
        "2026-12-07T00:00:00Z".parse().unwrap()
    }

    fn price(
        model: &str,
        provider: &str,
        input: &str,
        output: &str,
        cached: Option<&str>,
    ) -> ModelPrice {
        ModelPrice {
            model: model.into(),
            provider: Some(provider.into()),
            input_per_million: input.parse().unwrap(),
            output_per_million: output.parse().unwrap(),
            cached_input_per_million: cached.map(|c| c.parse().unwrap()),
            cache_write_per_million: None,
            reasoning_per_million: None,
        }
    }

    #[test]
    fn per_token_prices_become_exact_prices_per_million() {
        let imported = import(FILE, at(), &[]).unwrap();
        let mut models = imported.table.models.clone();
        models.sort_by(|a, b| a.model.cmp(&b.model));
        assert_eq!(
            models,
            vec![
                // 3.75e-06 a cache-written token is 3.75 a million.
                ModelPrice {
                    cache_write_per_million: Some("3.75".parse().unwrap()),
                    ..price(
                        "claude-3-5-sonnet-20241022",
                        "anthropic",
                        "3",
                        "15",
                        Some("0.3"),
                    )
                },
                price("gpt-4o", "openai", "2.5", "10", Some("1.25")),
                // 6e-05 a reasoning token is 60 a million.
                ModelPrice {
                    reasoning_per_million: Some("60".parse().unwrap()),
                    ..price("o1", "openai", "15", "60", None)
                },
                price("text-embedding-3-small", "openai", "0.02", "0", None),
                price("tiny-model", "local", "0.00011", "0", None),
            ]
        );
        assert_eq!(imported.table.effective, at());
        let mut skipped = imported.skipped.clone();
        skipped.sort();
        let reasons: Vec<(&str, &str)> = skipped
            .iter()
            .map(|(m, r)| (m.as_str(), r.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("broken", "input_cost_per_token: \"cheap\" is not a number"),
                (
                    "broken-reasoning",
                    "output_cost_per_reasoning_token: \"dear\" is not a number"
                ),
                (
                    "dall-e-3",
                    "mode \"image_generation\" is not priced per token"
                ),
                (
                    "negative",
                    "input_cost_per_token: -1e-6 is not a price of 0 or more"
                ),
                (
                    "negative-cache-write",
                    "cache_creation_input_token_cost: -2e-6 is not a price of 0 or more"
                ),
                ("no-price", "no input_cost_per_token"),
            ]
        );
        // The table stored is the table read back.
        let text = imported.table.to_toml();
        assert_eq!(PriceTable::parse(&text).unwrap(), imported.table);
    }

    #[test]
    fn providers_filter_and_bad_files_are_named() {
        let only = import(FILE, at(), &["anthropic".into()]).unwrap();
        assert_eq!(only.table.models.len(), 1);
        assert_eq!(only.table.models[0].model, "claude-3-5-sonnet-20241022");
        for (text, providers, needle) in [
            (
                FILE,
                vec!["nobody".to_string()],
                "prices no model of nobody",
            ),
            ("[1, 2]", vec![], "not LiteLLM's price file"),
            ("{\"a\": ", vec![], "not LiteLLM's price file"),
            ("{}", vec![], "prices no model"),
        ] {
            let e = import(text, at(), &providers).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
        let deep = format!("{{\"m\": {}{}}}", "[".repeat(500), "]".repeat(500));
        assert!(import(&deep, at(), &[])
            .unwrap_err()
            .contains("nested more than"));
    }
}
