//! Answers written by a language model behind an OpenAI-compatible
//! chat-completions endpoint, held to the same rules as the extractive
//! answer: only from the numbered passages, every answer cited, and an
//! honest "no answer" otherwise.
//!
//! The model's text is not trusted: citation markers that name no given
//! passage are removed, and an answer left without a valid citation is
//! reported as no answer.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::answer::{answer_extractive, Answer, Citation};
use crate::index::Hit;

/// What the model must reply, alone, when the passages do not answer.
pub const NO_ANSWER: &str = "NO_ANSWER";

/// The system message of every request.
pub const SYSTEM_PROMPT: &str = "You answer questions for a help centre using ONLY the numbered \
passages in the user's message. Do not use any other knowledge. Cite the passage that supports \
each sentence with its number in square brackets, like [1] or [2]; cite only numbers of \
passages that were given. If the passages do not contain the answer, reply with exactly \
NO_ANSWER and nothing else.";

/// Characters of an error response's body kept in [`ProviderError::Status`].
const ERROR_BODY_CHARS_MAX: usize = 200;
/// The most of a model's answer that is read: a chat completion is a few
/// kilobytes, and an endpoint that streams without end must not fill memory.
const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Where and how to reach the model.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Up to, not including, `/chat/completions`, e.g.
    /// `http://localhost:8000/v1`. A trailing `/` is ignored.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// For one attempt, from sending the request to reading the whole body.
    pub timeout: Duration,
    /// Attempts after the first one, on timeouts, connection failures,
    /// 429 and 5xx.
    pub max_retries: u32,
    /// Wait before the first retry; doubles for each further retry.
    pub initial_backoff: Duration,
}

/// What one answer cost, from the response's `usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The model the response names, or the configured one if it names none.
    pub model: String,
    /// `usage.prompt_tokens`.
    pub input_tokens: u64,
    /// `usage.completion_tokens`.
    pub output_tokens: u64,
    /// `usage.prompt_tokens_details.cached_tokens`, 0 when absent.
    pub cached_input_tokens: u64,
    /// Wall time of [`OpenAiProvider::answer`], retries and backoff included.
    pub latency_ms: u64,
}

/// Why no answer could be obtained from the model.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The configuration cannot work; nothing was sent.
    #[error("provider configuration: {0}")]
    Config(String),
    /// Every attempt took longer than the configured timeout.
    #[error("model timed out after {attempts} attempt(s)")]
    Timeout { attempts: u32 },
    /// The endpoint answered with a non-success status (the last one, when
    /// retried). `body` is its first 200 characters.
    #[error("model endpoint returned HTTP {status}: {body}")]
    Status { status: u16, body: String },
    /// A 2xx response without the fields an answer needs; names what is wrong.
    #[error("malformed model response: {0}")]
    Malformed(String),
    /// The endpoint could not be reached or the connection broke.
    #[error("model endpoint connection failed: {0}")]
    Connection(String),
}

impl ProviderError {
    fn retryable(&self) -> bool {
        match self {
            ProviderError::Timeout { .. } | ProviderError::Connection(_) => true,
            ProviderError::Status { status, .. } => *status == 429 || *status >= 500,
            ProviderError::Config(_) | ProviderError::Malformed(_) => false,
        }
    }
}

/// Asks an OpenAI-compatible chat-completions endpoint to answer from hits.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    config: OpenAiConfig,
    url: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: [Message<'a>; 2],
    temperature: u32,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

impl OpenAiProvider {
    /// Checks the configuration and builds the HTTP client, trusting the
    /// process's default roots ([`payoff_egress::Trust::process_default`]).
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        Self::with_trust(config, &payoff_egress::Trust::process_default())
    }

    /// Checks the configuration and builds the HTTP client, verifying TLS
    /// against `trust`. The endpoint is an operator-configured upstream:
    /// http and loopback are allowed.
    pub fn with_trust(
        config: OpenAiConfig,
        trust: &payoff_egress::Trust,
    ) -> Result<Self, ProviderError> {
        if config.model.trim().is_empty() {
            return Err(ProviderError::Config("model is empty".into()));
        }
        if config.timeout.is_zero() {
            return Err(ProviderError::Config("timeout is zero".into()));
        }
        let base = config.base_url.trim_end_matches('/');
        let url = format!("{base}/chat/completions");
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| ProviderError::Config(format!("base_url {:?}: {e}", config.base_url)))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::Config(format!(
                "base_url scheme {:?} is not supported (http or https)",
                parsed.scheme()
            )));
        }
        let client = payoff_egress::upstream_client(trust)
            .timeout(config.timeout)
            .build()
            .map_err(|e| ProviderError::Config(format!("http client: {e}")))?;
        Ok(OpenAiProvider {
            config,
            url,
            client,
        })
    }

    /// Answers `question` from `hits` (best first), numbering them `[1]`..`[k]`.
    ///
    /// With no hits there is nothing to answer from: no answer, and no
    /// request is sent (usage is zero). The confidence of an answer is the
    /// extractive answer's confidence over the same hits.
    pub async fn answer(
        &self,
        hits: &[Hit],
        question: &str,
    ) -> Result<(Answer, Usage), ProviderError> {
        let started = Instant::now();
        if hits.is_empty() {
            return Ok((
                no_answer(),
                Usage {
                    model: self.config.model.clone(),
                    input_tokens: 0,
                    output_tokens: 0,
                    cached_input_tokens: 0,
                    latency_ms: 0,
                },
            ));
        }
        let user = user_message(hits, question);
        let request = ChatRequest {
            model: &self.config.model,
            messages: [
                Message {
                    role: "system",
                    content: SYSTEM_PROMPT,
                },
                Message {
                    role: "user",
                    content: &user,
                },
            ],
            temperature: 0,
        };

        let body = self.send_with_retries(&request).await?;
        let (content, mut usage) = parse_response(&body, &self.config.model)?;
        usage.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

        let answer = match cited_text(&content, hits) {
            None => no_answer(),
            Some((text, citations)) => Answer {
                text,
                citations,
                confidence: answer_extractive(hits, question).confidence,
                no_answer: false,
            },
        };
        Ok((answer, usage))
    }

    async fn send_with_retries(&self, request: &ChatRequest<'_>) -> Result<Vec<u8>, ProviderError> {
        let mut attempt: u32 = 0;
        loop {
            let result = self.send_once(request).await;
            let error = match result {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            if !error.retryable() || attempt >= self.config.max_retries {
                return Err(match error {
                    ProviderError::Timeout { .. } => ProviderError::Timeout {
                        attempts: attempt + 1,
                    },
                    other => other,
                });
            }
            let factor = 2u32.checked_pow(attempt).unwrap_or(u32::MAX);
            let backoff = self
                .config
                .initial_backoff
                .checked_mul(factor)
                .unwrap_or(Duration::MAX);
            tokio::time::sleep(backoff).await;
            attempt += 1;
        }
    }

    async fn send_once(&self, request: &ChatRequest<'_>) -> Result<Vec<u8>, ProviderError> {
        let mut builder = self.client.post(&self.url).json(request);
        if let Some(key) = &self.config.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.map_err(transport_error)?;
        let status = response.status();
        let (body, beyond) = payoff_egress::read_capped(response, RESPONSE_BYTES_MAX)
            .await
            .map_err(transport_error)?;
        if beyond && status.is_success() {
            return Err(ProviderError::Malformed(format!(
                "the response is longer than {RESPONSE_BYTES_MAX} bytes"
            )));
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(ProviderError::Status {
                status: status.as_u16(),
                body: text.chars().take(ERROR_BODY_CHARS_MAX).collect(),
            });
        }
        Ok(body)
    }
}

fn transport_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout { attempts: 1 }
    } else if e.is_builder() {
        ProviderError::Config(e.to_string())
    } else {
        // Connect failures, resets and broken bodies: worth another try.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        ProviderError::Connection(message)
    }
}

fn no_answer() -> Answer {
    Answer {
        text: String::new(),
        citations: Vec::new(),
        confidence: 0.0,
        no_answer: true,
    }
}

/// The passages, numbered from 1 with their titles (and headings), then the
/// question.
fn user_message(hits: &[Hit], question: &str) -> String {
    let mut message = String::from("Passages:\n\n");
    for (i, hit) in hits.iter().enumerate() {
        let n = i + 1;
        if hit.heading.is_empty() {
            message.push_str(&format!("[{n}] {}\n", hit.title));
        } else {
            message.push_str(&format!("[{n}] {} ({})\n", hit.title, hit.heading));
        }
        message.push_str(hit.text.trim());
        message.push_str("\n\n");
    }
    message.push_str("Question: ");
    message.push_str(question.trim());
    message
}

/// The message content and usage of a chat-completions response.
fn parse_response(body: &[u8], configured_model: &str) -> Result<(String, Usage), ProviderError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Malformed(format!("body is not JSON: {e}")))?;
    let choices = value
        .get("choices")
        .ok_or_else(|| ProviderError::Malformed("choices missing".into()))?;
    let first = choices
        .as_array()
        .ok_or_else(|| ProviderError::Malformed("choices is not an array".into()))?
        .first()
        .ok_or_else(|| ProviderError::Malformed("choices is empty".into()))?;
    let content = first
        .get("message")
        .ok_or_else(|| ProviderError::Malformed("choices[0].message missing".into()))?
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ProviderError::Malformed("choices[0].message.content missing or not a string".into())
        })?;

    let usage = value
        .get("usage")
        .ok_or_else(|| ProviderError::Malformed("usage missing".into()))?;
    let count = |field: &str| {
        usage
            .get(field)
            .and_then(Value::as_u64)
            .ok_or_else(|| ProviderError::Malformed(format!("usage.{field} missing")))
    };
    let input_tokens = count("prompt_tokens")?;
    let output_tokens = count("completion_tokens")?;
    let cached_input_tokens = usage
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or(configured_model)
        .to_string();
    Ok((
        content.to_string(),
        Usage {
            model,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            latency_ms: 0,
        },
    ))
}

/// The model's text with only valid citation markers kept, and the
/// citations they refer to (by passage number, ascending). `None` when the
/// model said [`NO_ANSWER`] or cited no given passage.
///
/// A marker is `[n]` or `[n, m, …]`; numbers outside `1..=hits.len()` are
/// dropped (with the marker when nothing valid is left in it).
fn cited_text(content: &str, hits: &[Hit]) -> Option<(String, Vec<Citation>)> {
    let content = content.trim();
    if content.is_empty() || content == NO_ANSWER {
        return None;
    }
    let mut text = String::with_capacity(content.len());
    let mut cited: Vec<usize> = Vec::new();
    let mut rest = content;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let marker = after.find(']').and_then(|close| {
            let numbers = citation_numbers(&after[..close])?;
            Some((close, numbers))
        });
        match marker {
            Some((close, numbers)) => {
                let valid: Vec<usize> = numbers
                    .into_iter()
                    .filter(|n| (1..=hits.len()).contains(n))
                    .collect();
                if valid.is_empty() {
                    // Drop the invented marker and the space before it.
                    let kept = text.trim_end_matches(' ').len();
                    text.truncate(kept);
                } else {
                    let markers: Vec<String> = valid.iter().map(|n| format!("[{n}]")).collect();
                    text.push_str(&markers.join(" "));
                    cited.extend(valid);
                }
                rest = &after[close + 1..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);

    cited.sort_unstable();
    cited.dedup();
    if cited.is_empty() {
        return None;
    }
    let citations = cited
        .into_iter()
        .map(|n| {
            let hit = &hits[n - 1];
            Citation {
                n,
                doc_id: hit.doc_id.clone(),
                title: hit.title.clone(),
                url: hit.url.clone(),
            }
        })
        .collect();
    Some((text.trim().to_string(), citations))
}

/// The numbers of a marker's inside, `"2"` or `"1, 3"`; `None` if it is not
/// a list of numbers (an ordinary bracket).
fn citation_numbers(inside: &str) -> Option<Vec<usize>> {
    let numbers: Option<Vec<usize>> = inside
        .split(',')
        .map(|part| {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Absurdly long digit runs are invented numbers, not passages.
            Some(part.parse().unwrap_or(usize::MAX))
        })
        .collect();
    numbers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(n: usize) -> Vec<Hit> {
        (1..=n)
            .map(|i| Hit {
                doc_id: format!("d{i}"),
                title: format!("T{i}"),
                url: None,
                heading: String::new(),
                snippet_html: String::new(),
                text: format!("passage {i}"),
                score: 1.0,
            })
            .collect()
    }

    #[test]
    fn keeps_valid_markers_and_drops_invented_ones() {
        let (text, citations) = cited_text(
            "Refunds take 5 days [2] [9]. Cards [1, 7]. See [note].",
            &hits(2),
        )
        .unwrap();
        assert_eq!(text, "Refunds take 5 days [2]. Cards [1]. See [note].");
        let ns: Vec<usize> = citations.iter().map(|c| c.n).collect();
        assert_eq!(ns, [1, 2]);
        assert_eq!(citations[1].doc_id, "d2");
    }

    #[test]
    fn uncited_or_declined_is_no_answer() {
        assert!(cited_text("  NO_ANSWER\n", &hits(2)).is_none());
        assert!(cited_text("Refunds take 5 days.", &hits(2)).is_none());
        assert!(cited_text("Refunds take 5 days [0] [3].", &hits(2)).is_none());
        assert!(cited_text("Huge [99999999999999999999999].", &hits(2)).is_none());
        assert!(cited_text("Unclosed [1", &hits(2)).is_none());
    }

    #[test]
    fn rejects_unusable_configuration() {
        let config = OpenAiConfig {
            base_url: "ftp://api.example/v1".into(),
            model: "m".into(),
            api_key: None,
            timeout: Duration::from_secs(1),
            max_retries: 0,
            initial_backoff: Duration::ZERO,
        };
        assert!(matches!(
            OpenAiProvider::new(config.clone()),
            Err(ProviderError::Config(_))
        ));
        // Hosted models are reached over TLS.
        let https = OpenAiConfig {
            base_url: "https://api.example/v1".into(),
            ..config.clone()
        };
        assert!(OpenAiProvider::new(https).is_ok());
        let config = OpenAiConfig {
            base_url: "http://127.0.0.1:1/v1/".into(),
            ..config
        };
        let provider = OpenAiProvider::new(config).unwrap();
        assert_eq!(provider.url, "http://127.0.0.1:1/v1/chat/completions");
    }
}
