//! The common shape of a metered model call, read straight from an
//! event's stored bytes without building a JSON tree.
//!
//! A month may hold millions of `llm.call` events. The store reads each
//! one once at ingest to index its cost, and billing prices the indexed
//! fields; both must read the same fields the same way, so the reading is
//! here, beside the event it reads.

use std::borrow::Cow;

use serde::Deserialize;

/// Event type of one model call.
pub const LLM_CALL: &str = "llm.call";
/// Event type of any other cost.
pub const COST_INCURRED: &str = "cost.incurred";

/// A model call in the common shape: a model name, whole token counts of 0
/// or more (absent counts as 0), and text agent and subject.
///
/// Counts follow OpenAI's convention whatever the event's: the input counts
/// every input token (uncached, read from the cache, written to it) and the
/// output counts the reasoning tokens. A call whose parts exceed their whole
/// is kept as sent; pricing saturates the remainder at 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCall<'a> {
    pub model: Cow<'a, str>,
    pub agent: Option<Cow<'a, str>>,
    /// `data.subject`, else the envelope's subject: the call served it.
    pub subject: Option<Cow<'a, str>>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of the input, tokens read from the provider's prompt cache.
    pub cached_input_tokens: u64,
    /// Of the input, tokens written to the provider's prompt cache
    /// (`data.cache_creation_input_tokens`).
    pub cache_creation_tokens: u64,
    /// Of the output, tokens the model spent reasoning.
    pub reasoning_tokens: u64,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    subject: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    /// `prompt_tokens` as OpenAI's and LiteLLM's usage name it.
    #[serde(default, alias = "prompt_tokens")]
    input_tokens: Option<u64>,
    /// `completion_tokens` as OpenAI's and LiteLLM's usage name it.
    #[serde(default, alias = "completion_tokens")]
    output_tokens: Option<u64>,
    #[serde(default)]
    cached_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
    #[serde(default)]
    input_includes_cached: Option<bool>,
    #[serde(default, borrow)]
    agent: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    subject: Option<Cow<'a, str>>,
}

impl ModelCall<'_> {
    /// Every input token of a call, from counts as an event gives them:
    /// `includes_cached` (`data.input_includes_cached`, absent means true) says
    /// whether `input` already counts the tokens read from and written to the
    /// cache (OpenAI's usage) or not (Anthropic's), and those are then added.
    ///
    /// ```
    /// use payoff_ledger::ModelCall;
    /// assert_eq!(ModelCall::input_with_caches(100, 40, 60, true), 100);
    /// assert_eq!(ModelCall::input_with_caches(5, 40, 60, false), 105);
    /// ```
    pub fn input_with_caches(
        input: u64,
        cached: u64,
        cache_creation: u64,
        includes_cached: bool,
    ) -> u64 {
        if includes_cached {
            input
        } else {
            input.saturating_add(cached).saturating_add(cache_creation)
        }
    }

    /// The model call in an event's stored JSON, if it is one in the
    /// common shape. Anything else (another type, negative or fractional
    /// tokens, `input_includes_cached` not a boolean, no model) is `None`:
    /// whoever prices it reads the whole event and explains what is wrong
    /// with it.
    pub fn read(stored: &[u8]) -> Option<ModelCall<'_>> {
        let envelope: Envelope<'_> = serde_json::from_slice(stored).ok()?;
        if envelope.kind != LLM_CALL {
            return None;
        }
        let data = envelope.data?;
        let model = data.model.filter(|m| !m.is_empty())?;
        let cached_input_tokens = data.cached_input_tokens.unwrap_or(0);
        let cache_creation_tokens = data.cache_creation_input_tokens.unwrap_or(0);
        Some(ModelCall {
            model,
            agent: data.agent,
            subject: data.subject.or(envelope.subject),
            input_tokens: ModelCall::input_with_caches(
                data.input_tokens.unwrap_or(0),
                cached_input_tokens,
                cache_creation_tokens,
                data.input_includes_cached.unwrap_or(true),
            ),
            output_tokens: data.output_tokens.unwrap_or(0),
            cached_input_tokens,
            cache_creation_tokens,
            reasoning_tokens: data.reasoning_tokens.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_shape_and_refuses_the_rest() {
        let call = ModelCall::read(
            br#"{"data":{"agent":"support","input_tokens":900,"model":"gpt-4o-mini","output_tokens":150},"subject":"T-1","type":"llm.call"}"#,
        )
        .unwrap();
        assert_eq!(call.model, "gpt-4o-mini");
        assert_eq!(call.agent.as_deref(), Some("support"));
        assert_eq!(call.subject.as_deref(), Some("T-1"));
        assert_eq!(
            (
                call.input_tokens,
                call.output_tokens,
                call.cached_input_tokens
            ),
            (900, 150, 0)
        );
        // OpenAI's and LiteLLM's names for the same counts.
        let call = ModelCall::read(
            br#"{"data":{"model":"gpt-4o","prompt_tokens":40,"completion_tokens":7,"total_tokens":47,"cost":0.0002},"type":"llm.call"}"#,
        )
        .unwrap();
        assert_eq!((call.input_tokens, call.output_tokens), (40, 7));
        // Cache writes and reasoning, counted as OpenAI counts (the flag
        // absent, or true as the gateway and OTLP ingest write it): input
        // 1,000 already holds the 400 read and 100 written; output 500
        // holds the 200 of reasoning. Read as they are.
        let counts = |call: ModelCall<'_>| {
            (
                call.input_tokens,
                call.cached_input_tokens,
                call.cache_creation_tokens,
                call.output_tokens,
                call.reasoning_tokens,
            )
        };
        for flag in [
            "",
            r#""input_includes_cached":true,"#,
            r#""input_includes_cached":null,"#,
        ] {
            let body = format!(
                r#"{{"data":{{{flag}"model":"m","input_tokens":1000,"cached_input_tokens":400,"cache_creation_input_tokens":100,"output_tokens":500,"reasoning_tokens":200}},"type":"llm.call"}}"#
            );
            assert_eq!(
                ModelCall::read(body.as_bytes()).map(counts),
                Some((1000, 400, 100, 500, 200)),
                "{body}"
            );
        }
        // Anthropic's counting (false): input 50 holds neither cache, so
        // the input read is 50 + 2,000 read + 300 written = 2,350.
        let call = ModelCall::read(
            br#"{"data":{"model":"m","input_tokens":50,"input_includes_cached":false,"cached_input_tokens":2000,"cache_creation_input_tokens":300,"output_tokens":7},"type":"llm.call"}"#,
        )
        .unwrap();
        assert_eq!(counts(call), (2350, 2000, 300, 7, 0));
        // Only the caches absent: 50 + 0 + 0.
        let call = ModelCall::read(
            br#"{"data":{"model":"m","input_tokens":50,"input_includes_cached":false},"type":"llm.call"}"#,
        )
        .unwrap();
        assert_eq!(counts(call), (50, 0, 0, 0, 0));
        // The sum saturates at the largest count instead of wrapping:
        // u64::MAX + 1 + 1 stays u64::MAX.
        let call = ModelCall::read(
            br#"{"data":{"model":"m","input_tokens":18446744073709551615,"input_includes_cached":false,"cached_input_tokens":1,"cache_creation_input_tokens":1},"type":"llm.call"}"#,
        )
        .unwrap();
        assert_eq!(counts(call), (u64::MAX, 1, 1, 0, 0));
        // data.subject beats the envelope's; escaped text is still read.
        let call = ModelCall::read(
            br#"{"data":{"model":"m\u00e9","subject":"T-9"},"subject":"T-1","type":"llm.call"}"#,
        )
        .unwrap();
        assert_eq!(
            (call.model.as_ref(), call.subject.as_deref()),
            ("m\u{e9}", Some("T-9"))
        );
        for odd in [
            &br#"{"data":{"model":"m","input_tokens":-5},"type":"llm.call"}"#[..],
            br#"{"data":{"model":"m","cache_creation_input_tokens":-1},"type":"llm.call"}"#,
            br#"{"data":{"model":"m","cache_creation_input_tokens":2.5},"type":"llm.call"}"#,
            br#"{"data":{"model":"m","reasoning_tokens":"3"},"type":"llm.call"}"#,
            br#"{"data":{"model":"m","reasoning_tokens":-3},"type":"llm.call"}"#,
            br#"{"data":{"model":"m","input_includes_cached":"false"},"type":"llm.call"}"#,
            br#"{"data":{"model":"m","input_includes_cached":0},"type":"llm.call"}"#,
            br#"{"data":{"model":"m","input_tokens":1.5},"type":"llm.call"}"#,
            br#"{"data":{"model":"m","input_tokens":"12"},"type":"llm.call"}"#,
            br#"{"data":{"input_tokens":12},"type":"llm.call"}"#,
            br#"{"data":{"model":""},"type":"llm.call"}"#,
            br#"{"data":{"model":"m","agent":7},"type":"llm.call"}"#,
            br#"{"data":{"model":"m"},"type":"cost.incurred"}"#,
            br#"{"type":"llm.call"}"#,
            b"not json",
        ] {
            assert_eq!(
                ModelCall::read(odd),
                None,
                "{}",
                String::from_utf8_lossy(odd)
            );
        }
    }
}
