//! One LLM client for Sentinel (the classifier's fallback and PatchBot's LLM fix strategy).
//!
//! Two wire protocols, chosen by [`Provider`]:
//! - OpenAI-compatible `POST {base}/v1/chat/completions` (OpenAI, Azure-style gateways, vLLM,
//!   Ollama, LiteLLM): `Authorization: Bearer <key>`, answer in
//!   `choices[0].message.content`, usage in `usage.prompt_tokens` / `usage.completion_tokens`.
//! - Anthropic `POST {base}/v1/messages`: `x-api-key` and `anthropic-version: 2023-06-01`
//!   headers, the system prompt as a top-level `system` field, the answer in the `text`
//!   blocks of `content`, usage in `usage.input_tokens` / `usage.output_tokens`.
//!
//! Around the wire: a timeout per call, a per-hour call budget ([`budget`]), a response
//! cache keyed by a caller-supplied key such as a failure signature ([`cache`]), token usage
//! recorded as metrics ([`sentinel_runtime::metrics::names::LLM_TOKENS`] and
//! [`LLM_CALLS`](sentinel_runtime::metrics::names::LLM_CALLS)), secrets redacted from every
//! prompt before it leaves the process, bounded response sizes, and strict-JSON answers
//! ([`json`]): an answer that is not exactly one JSON object is an [`Error::MalformedAnswer`],
//! never guessed at. LLM output is untrusted input (DESIGN.md §4 rule 6): callers validate the
//! fields they read.
//!
//! ```no_run
//! # async fn demo() -> sentinel_llm::Result<()> {
//! use sentinel_llm::{Llm, LlmClient, LlmConfig, Prompt, Purpose};
//! let client = LlmClient::from_config(&LlmConfig::default())?;
//! let prompt = Prompt::new("Answer with JSON only.", "Classify this log: …");
//! let answer = client.complete_json(Purpose::Classify, &prompt, Some("sig:abc")).await?;
//! println!("{:?}", answer.value.get("type"));
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod budget;
pub mod cache;
mod client;
pub mod json;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::LlmClient;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong asking an LLM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (no API key, bad URL, HTTPS without TLS support).
    #[error("LLM configuration: {0}")]
    Config(String),
    /// The per-hour call budget is spent.
    #[error(
        "LLM call budget of {limit} calls per hour is spent; next call possible in {retry_in_secs}s"
    )]
    BudgetExhausted {
        /// Calls allowed per hour.
        limit: u32,
        /// Seconds until the oldest call in the window expires.
        retry_in_secs: u64,
    },
    /// No answer within the configured timeout.
    #[error("LLM call timed out after {after_ms} ms")]
    Timeout {
        /// The timeout.
        after_ms: u64,
    },
    /// The API could not be reached (connection refused, DNS, reset).
    #[error("LLM API unreachable: {0}")]
    Transport(String),
    /// The API answered 429.
    #[error("LLM API rate limit (429){}", retry_after.map(|s| format!(", retry after {s}s")).unwrap_or_default())]
    RateLimited {
        /// The `retry-after` header in seconds, when given.
        retry_after: Option<u64>,
    },
    /// The API answered another non-success status.
    #[error("LLM API answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The API's error message (`error.message`), bounded.
        message: String,
    },
    /// The response body is larger than allowed.
    #[error("LLM response larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The response is not in the documented shape of the API.
    #[error("LLM API response not understood: {0}")]
    Protocol(String),
    /// The model answered, but not with the strict JSON asked for.
    #[error("LLM answer is not strict JSON: {reason} (answer starts: {excerpt:?})")]
    MalformedAnswer {
        /// What is wrong.
        reason: String,
        /// The first characters of the answer, redacted.
        excerpt: String,
    },
}

impl Error {
    /// Whether trying again later may succeed (timeouts, unreachable, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Transport(_) | Error::RateLimited { .. } => true,
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The bounded metric label for this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            Error::Config(_) => "config_error",
            Error::BudgetExhausted { .. } => "budget_exhausted",
            Error::Timeout { .. } => "timeout",
            Error::Transport(_) => "unreachable",
            Error::RateLimited { .. } => "rate_limited",
            Error::Status { .. } => "http_error",
            Error::TooLarge { .. } => "too_large",
            Error::Protocol(_) => "protocol_error",
            Error::MalformedAnswer { .. } => "malformed_answer",
        }
    }
}

/// Which wire protocol the endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// OpenAI-compatible `/v1/chat/completions`.
    #[default]
    Openai,
    /// Anthropic `/v1/messages`.
    Anthropic,
}

impl Provider {
    fn default_base_url(self) -> &'static str {
        match self {
            Provider::Openai => "https://api.openai.com",
            Provider::Anthropic => "https://api.anthropic.com",
        }
    }

    /// The path appended to the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Provider::Openai => "/v1/chat/completions",
            Provider::Anthropic => "/v1/messages",
        }
    }
}

/// LLM settings (the `[llm]` table). The API key is never in the file: it is read from the
/// environment variable named by `api_key_env`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Wire protocol: `openai` (also any OpenAI-compatible server) or `anthropic`.
    pub provider: Provider,
    /// Base URL; the provider's public API when unset. A trailing `/v1` is accepted.
    pub base_url: Option<String>,
    /// Model name sent with every request.
    pub model: String,
    /// Environment variable holding the API key (may be unset for local servers).
    pub api_key_env: String,
    /// Timeout per call, milliseconds (connect + response).
    pub timeout_ms: u64,
    /// Maximum tokens the model may answer with.
    pub max_tokens: u32,
    /// Calls allowed in any sliding hour; cached answers do not count.
    pub calls_per_hour: u32,
    /// Cached answers kept (oldest evicted first); 0 disables the cache.
    pub cache_entries: usize,
    /// Largest response body accepted, bytes.
    pub max_response_bytes: usize,
    /// Ask OpenAI-compatible servers for JSON mode (`response_format: json_object`) when a
    /// JSON answer is wanted. Turn off for servers that reject the field.
    pub json_mode: bool,
    /// Price of a million prompt (input) tokens in US dollars, for the cost metric
    /// (`sentinel_llm_cost_usd_total`); 0 (the default) records no cost.
    pub prompt_usd_per_million_tokens: f64,
    /// Price of a million completion (output) tokens in US dollars; 0 records no cost.
    pub completion_usd_per_million_tokens: f64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: Provider::Openai,
            base_url: None,
            model: "gpt-4o-mini".into(),
            api_key_env: "SENTINEL_LLM_API_KEY".into(),
            timeout_ms: 30_000,
            max_tokens: 512,
            calls_per_hour: 60,
            cache_entries: 1024,
            max_response_bytes: 1 << 20,
            json_mode: true,
            prompt_usd_per_million_tokens: 0.0,
            completion_usd_per_million_tokens: 0.0,
        }
    }
}

impl LlmConfig {
    /// What `usage` cost at the configured prices, in US dollars (0 without prices).
    pub fn cost_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.prompt_usd_per_million_tokens
            + completion_tokens as f64 * self.completion_usd_per_million_tokens)
            / 1e6
    }

    /// The full endpoint URL.
    pub fn endpoint(&self) -> String {
        let base = self
            .base_url
            .as_deref()
            .unwrap_or(self.provider.default_base_url())
            .trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        format!("{base}{}", self.provider.path())
    }
}

/// Why the LLM is called; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Classifying a failure log.
    Classify,
    /// Producing a fix.
    Fix,
}

impl Purpose {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Classify => "classify",
            Purpose::Fix => "fix",
        }
    }
}

/// A system instruction and one user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The system prompt.
    pub system: String,
    /// The user message.
    pub user: String,
}

impl Prompt {
    /// A prompt from its two parts.
    pub fn new(system: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            system: system.into(),
            user: user.into(),
        }
    }
}

/// Tokens spent on one call, as the API reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
}

/// A text answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The answer text.
    pub text: String,
    /// The model that answered, as the API named it.
    pub model: String,
    /// Tokens spent (zero when served from the cache).
    pub usage: Usage,
    /// Whether this came from the cache.
    pub cached: bool,
}

/// A strict-JSON answer: exactly one JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonAnswer {
    /// The object.
    pub value: serde_json::Map<String, serde_json::Value>,
    /// Tokens spent (zero when served from the cache).
    pub usage: Usage,
    /// Whether this came from the cache.
    pub cached: bool,
}

/// An LLM. [`LlmClient`] is the HTTP implementation; stages hold an `Arc<dyn Llm>`.
#[async_trait]
pub trait Llm: Send + Sync {
    /// Asks for a text answer. With a `cache_key`, an earlier answer to the same key is
    /// returned without a call (and without spending budget).
    ///
    /// # Errors
    ///
    /// Budget spent, timeout, transport, HTTP status, oversized or unexpected responses.
    async fn complete(
        &self,
        purpose: Purpose,
        prompt: &Prompt,
        cache_key: Option<&str>,
    ) -> Result<Completion>;

    /// Asks for a strict-JSON answer (see [`json::parse_object`]). Only answers that parse
    /// are cached.
    ///
    /// # Errors
    ///
    /// As [`Llm::complete`], plus [`Error::MalformedAnswer`].
    async fn complete_json(
        &self,
        purpose: Purpose,
        prompt: &Prompt,
        cache_key: Option<&str>,
    ) -> Result<JsonAnswer>;
}
