//! The HTTP client for both wire protocols.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sentinel_runtime::metrics::names;
use serde_json::{Value, json};

use crate::budget::HourlyBudget;
use crate::cache::ResponseCache;
use crate::{
    Completion, Error, JsonAnswer, Llm, LlmConfig, Prompt, Provider, Purpose, Result, Usage,
};

/// The Anthropic API version header value this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
const MAX_ERROR_MESSAGE: usize = 300;

/// An API key that never shows up in `Debug` output.
#[derive(Clone)]
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

/// The HTTP LLM client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct LlmClient {
    config: LlmConfig,
    endpoint: String,
    api_key: Option<ApiKey>,
    http: reqwest::Client,
    budget: Mutex<HourlyBudget>,
    cache: Mutex<ResponseCache>,
}

impl LlmClient {
    /// A client for `config`, with the API key read from the environment variable it names
    /// (absent is allowed: local OpenAI-compatible servers often need none).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unusable base URL.
    pub fn from_config(config: &LlmConfig) -> Result<Self> {
        let key = std::env::var(&config.api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        Self::new(config.clone(), key)
    }

    /// A client for `config` with an explicit API key.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unusable base URL.
    pub fn new(config: LlmConfig, api_key: Option<String>) -> Result<Self> {
        let endpoint = config.endpoint();
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| Error::Config(format!("base URL {endpoint:?}: {e}")))?;
        match url.scheme() {
            "http" => {}
            "https" if cfg!(feature = "tls") => {}
            "https" => {
                return Err(Error::Config(format!(
                    "{endpoint} needs TLS: build sentinel-llm with its `tls` feature, or use a \
                     plain-HTTP gateway"
                )));
            }
            other => return Err(Error::Config(format!("unsupported URL scheme {other:?}"))),
        }
        if config.model.trim().is_empty() {
            return Err(Error::Config("model is empty".into()));
        }
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            budget: Mutex::new(HourlyBudget::new(config.calls_per_hour)),
            cache: Mutex::new(ResponseCache::new(config.cache_entries)),
            endpoint,
            api_key: api_key.map(ApiKey),
            http,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    fn cache_key(&self, key: &str) -> String {
        // Changing the provider or model must not serve answers from another model.
        format!("{:?}\0{}\0{key}", self.config.provider, self.config.model)
    }

    fn cached(&self, key: Option<&str>) -> Option<Completion> {
        let key = self.cache_key(key?);
        self.cache.lock().ok()?.get(&key)
    }

    fn remember(&self, key: Option<&str>, completion: &Completion) {
        if let (Some(key), Ok(mut cache)) = (key, self.cache.lock()) {
            cache.insert(&self.cache_key(key), completion.clone());
        }
    }

    async fn call(&self, prompt: &Prompt, want_json: bool) -> Result<Completion> {
        {
            let mut budget = self
                .budget
                .lock()
                .map_err(|_| Error::Config("budget lock poisoned".into()))?;
            budget.acquire(Instant::now())?;
        }
        // Logs are attacker-controlled and may carry secrets the ingest redaction missed in
        // older facts; nothing leaves the process unredacted.
        let system = sentinel_events::redact::redact(&prompt.system);
        let user = sentinel_events::redact::redact(&prompt.user);
        let c = &self.config;
        let mut req = self.http.post(&self.endpoint);
        let body = match c.provider {
            Provider::Openai => {
                if let Some(key) = &self.api_key {
                    req = req.bearer_auth(&key.0);
                }
                let mut body = json!({
                    "model": c.model,
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                    ],
                    "max_tokens": c.max_tokens,
                    "temperature": 0,
                });
                if want_json && c.json_mode {
                    body["response_format"] = json!({"type": "json_object"});
                }
                body
            }
            Provider::Anthropic => {
                if let Some(key) = &self.api_key {
                    req = req.header("x-api-key", &key.0);
                }
                req = req.header("anthropic-version", ANTHROPIC_VERSION);
                json!({
                    "model": c.model,
                    "max_tokens": c.max_tokens,
                    "system": system,
                    "messages": [{"role": "user", "content": user}],
                    "temperature": 0,
                })
            }
        };
        let resp = req
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = self.read_bounded(resp).await?;
        if status.as_u16() == 429 {
            return Err(Error::RateLimited { retry_after });
        }
        if !status.is_success() {
            return Err(Error::Status {
                status: status.as_u16(),
                message: error_message(&bytes),
            });
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Protocol(format!("body is not JSON: {e}")))?;
        match c.provider {
            Provider::Openai => parse_openai(&v),
            Provider::Anthropic => parse_anthropic(&v),
        }
    }

    fn transport(&self, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout {
                after_ms: self.config.timeout_ms,
            }
        } else {
            Error::Transport(error_chain(&e))
        }
    }

    async fn read_bounded(&self, mut resp: reqwest::Response) -> Result<Vec<u8>> {
        let limit = self.config.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(Error::TooLarge { limit });
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(e))? {
            if out.len() + chunk.len() > limit {
                return Err(Error::TooLarge { limit });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn record(&self, purpose: Purpose, outcome: &'static str, usage: Usage) {
        metrics::counter!(names::LLM_CALLS, "purpose" => purpose.as_str(), "outcome" => outcome)
            .increment(1);
        if usage.prompt_tokens > 0 {
            metrics::counter!(names::LLM_TOKENS, "purpose" => purpose.as_str(), "kind" => "prompt")
                .increment(usage.prompt_tokens);
        }
        if usage.completion_tokens > 0 {
            metrics::counter!(names::LLM_TOKENS, "purpose" => purpose.as_str(), "kind" => "completion")
                .increment(usage.completion_tokens);
        }
        let cost = self
            .config
            .cost_usd(usage.prompt_tokens, usage.completion_tokens);
        if cost > 0.0 {
            metrics::gauge!(names::LLM_COST, "purpose" => purpose.as_str()).increment(cost);
        }
    }
}

#[async_trait]
impl Llm for LlmClient {
    async fn complete(
        &self,
        purpose: Purpose,
        prompt: &Prompt,
        cache_key: Option<&str>,
    ) -> Result<Completion> {
        if let Some(hit) = self.cached(cache_key) {
            self.record(purpose, "cached", Usage::default());
            return Ok(hit);
        }
        match self.call(prompt, false).await {
            Ok(c) => {
                self.record(purpose, "ok", c.usage);
                self.remember(cache_key, &c);
                Ok(c)
            }
            Err(e) => {
                self.record(purpose, e.outcome(), Usage::default());
                tracing::warn!(error = %e, purpose = purpose.as_str(), "LLM call failed.");
                Err(e)
            }
        }
    }

    async fn complete_json(
        &self,
        purpose: Purpose,
        prompt: &Prompt,
        cache_key: Option<&str>,
    ) -> Result<JsonAnswer> {
        if let Some(hit) = self.cached(cache_key)
            && let Ok(value) = crate::json::parse_object(&hit.text)
        {
            self.record(purpose, "cached", Usage::default());
            return Ok(JsonAnswer {
                value,
                usage: hit.usage,
                cached: true,
            });
        }
        let result = match self.call(prompt, true).await {
            Ok(c) => match crate::json::parse_object(&c.text) {
                Ok(value) => {
                    self.remember(cache_key, &c);
                    Ok((value, c.usage))
                }
                // The tokens were spent even though the answer is useless.
                Err(e) => Err((e, c.usage)),
            },
            Err(e) => Err((e, Usage::default())),
        };
        match result {
            Ok((value, usage)) => {
                self.record(purpose, "ok", usage);
                Ok(JsonAnswer {
                    value,
                    usage,
                    cached: false,
                })
            }
            Err((e, usage)) => {
                self.record(purpose, e.outcome(), usage);
                tracing::warn!(error = %e, purpose = purpose.as_str(), "LLM call failed.");
                Err(e)
            }
        }
    }
}

fn usage_field(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `choices[0].message.content`, `usage.prompt_tokens`, `usage.completion_tokens`.
fn parse_openai(v: &Value) -> Result<Completion> {
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| Error::Protocol("no choices[0] in a chat completion".into()))?;
    let message = choice
        .get("message")
        .ok_or_else(|| Error::Protocol("choices[0] has no message".into()))?;
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            let refusal = message
                .get("refusal")
                .and_then(Value::as_str)
                .unwrap_or("no content");
            return Err(Error::Protocol(format!(
                "choices[0].message has no text content: {}",
                bounded(refusal)
            )));
        }
    };
    let usage = v.get("usage").cloned().unwrap_or(Value::Null);
    Ok(Completion {
        text,
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        usage: Usage {
            prompt_tokens: usage_field(&usage, "prompt_tokens"),
            completion_tokens: usage_field(&usage, "completion_tokens"),
        },
        cached: false,
    })
}

/// The `text` blocks of `content`, `usage.input_tokens`, `usage.output_tokens`.
fn parse_anthropic(v: &Value) -> Result<Completion> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Protocol("no content array in a message".into()))?;
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    if text.is_empty() {
        let stop = v
            .get("stop_reason")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        return Err(Error::Protocol(format!(
            "message has no text block (stop_reason {stop})"
        )));
    }
    let usage = v.get("usage").cloned().unwrap_or(Value::Null);
    Ok(Completion {
        text,
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        usage: Usage {
            prompt_tokens: usage_field(&usage, "input_tokens"),
            completion_tokens: usage_field(&usage, "output_tokens"),
        },
        cached: false,
    })
}

/// Both APIs put a message at `error.message`; fall back to the start of the body.
fn error_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let msg = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    sentinel_events::redact::redact(&bounded(msg.trim()))
}

fn bounded(s: &str) -> String {
    s.chars().take(MAX_ERROR_MESSAGE).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_bases_with_or_without_v1() {
        let mut c = LlmConfig {
            base_url: Some("http://127.0.0.1:8000/v1/".into()),
            ..LlmConfig::default()
        };
        assert_eq!(c.endpoint(), "http://127.0.0.1:8000/v1/chat/completions");
        c.provider = Provider::Anthropic;
        c.base_url = Some("http://127.0.0.1:9".into());
        assert_eq!(c.endpoint(), "http://127.0.0.1:9/v1/messages");
        c.base_url = None;
        assert_eq!(c.endpoint(), "https://api.anthropic.com/v1/messages");
    }

    #[test]
    fn https_without_tls_is_a_config_error_and_keys_stay_out_of_debug() {
        let c = LlmConfig::default();
        if !cfg!(feature = "tls") {
            assert!(matches!(
                LlmClient::new(c.clone(), None),
                Err(Error::Config(_))
            ));
        }
        let local = LlmConfig {
            base_url: Some("http://127.0.0.1:1".into()),
            ..c
        };
        let client = LlmClient::new(local, Some("sk-secret-value".into())).expect("client");
        assert!(!format!("{client:?}").contains("sk-secret"));
    }
}
