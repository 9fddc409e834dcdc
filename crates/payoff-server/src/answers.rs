//! Which provider drafts answers, and the metering of every model call.
//!
//! One entry point serves the knowledge route and the support agent, so a
//! model call can never be made without its `llm.call` record.

use payoff_knowledge::{answer_extractive, Answer, Hit, OpenAiProvider};

use crate::problem::{ApiError, ErrorCode};
use crate::records::{AnswerCall, OwnRecord};
use crate::AppState;

/// The configured answer provider.
pub enum Answerer {
    /// Offline: sentences of the best passages, cited. No model call.
    Extractive,
    /// Any OpenAI-compatible `/v1/chat/completions` endpoint.
    OpenAi(OpenAiProvider),
}

impl Answerer {
    pub fn name(&self) -> &'static str {
        match self {
            Answerer::Extractive => "extractive",
            Answerer::OpenAi(_) => "openai",
        }
    }
}

/// Who a model call works for, for its cost record.
pub struct Meter<'a> {
    pub customer: &'a str,
    pub agent: &'a str,
    /// The subject (ticket, user) the cost belongs to.
    pub subject: Option<&'a str>,
}

/// Drafts an answer to `question` from `hits` and, when a model was
/// called, records its token usage as an `llm.call` event before the
/// answer is returned.
pub async fn draft(
    state: &AppState,
    hits: &[Hit],
    question: &str,
    meter: Meter<'_>,
) -> Result<Answer, ApiError> {
    let provider = match state.answerer.as_ref() {
        Answerer::Extractive => return Ok(answer_extractive(hits, question)),
        Answerer::OpenAi(p) => p,
    };
    let asked = provider.answer(hits, question).await;
    state
        .metrics
        .model_call("support_agent", if asked.is_ok() { "ok" } else { "failed" });
    let (answer, usage) = asked.map_err(|e| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the answer model failed: {e}"),
        )
    })?;
    if usage.input_tokens + usage.output_tokens > 0 {
        let now = state.now();
        let record = OwnRecord::AnswerCall(AnswerCall {
            model: usage.model.clone(),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            latency_ms: usage.latency_ms,
            agent: meter.agent.to_owned(),
            subject: meter.subject.map(str::to_owned),
        });
        let event = record.to_event(
            &format!(
                "llm/{}/{}",
                meter.agent,
                now.timestamp_nanos_opt().unwrap_or_default()
            ),
            meter.subject,
            now,
        );
        crate::record_own(state, meter.customer, event)
            .await?
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::Unavailable,
                    format!("the model call could not be metered: {e}"),
                )
            })?;
    }
    Ok(answer)
}
