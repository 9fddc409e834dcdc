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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCall<'a> {
    pub model: Cow<'a, str>,
    pub agent: Option<Cow<'a, str>>,
    /// `data.subject`, else the envelope's subject: the call served it.
    pub subject: Option<Cow<'a, str>>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
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
    #[serde(default, borrow)]
    agent: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    subject: Option<Cow<'a, str>>,
}

impl ModelCall<'_> {
    /// The model call in an event's stored JSON, if it is one in the
    /// common shape. Anything else (another type, negative or fractional
    /// tokens, no model) is `None`: whoever prices it reads the whole event
    /// and explains what is wrong with it.
    pub fn read(stored: &[u8]) -> Option<ModelCall<'_>> {
        let envelope: Envelope<'_> = serde_json::from_slice(stored).ok()?;
        if envelope.kind != LLM_CALL {
            return None;
        }
        let data = envelope.data?;
        let model = data.model.filter(|m| !m.is_empty())?;
        Some(ModelCall {
            model,
            agent: data.agent,
            subject: data.subject.or(envelope.subject),
            input_tokens: data.input_tokens.unwrap_or(0),
            output_tokens: data.output_tokens.unwrap_or(0),
            cached_input_tokens: data.cached_input_tokens.unwrap_or(0),
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
