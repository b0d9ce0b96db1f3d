//! The classifier stage: `CiRunFailed` (with a log) or `FailureLogsCaptured` →
//! `FailureClassified`.

use async_trait::async_trait;
use sentinel_events::facts::FailureClassified;
use sentinel_events::{Event, Fact, FailureType};
use sentinel_runtime::metrics::names;
use sentinel_runtime::{HandlerError, Output, Stage, producer};

use crate::fallback::LlmFallback;
use crate::{Catalogue, Classification};

/// The classifier stage.
pub struct ClassifierStage {
    catalogue: Catalogue,
    fallback: Option<LlmFallback>,
    producer: String,
}

impl ClassifierStage {
    /// A stage classifying with `catalogue` (patterns only).
    pub fn new(catalogue: Catalogue) -> Self {
        Self {
            catalogue,
            fallback: None,
            producer: producer("classifier"),
        }
    }

    /// Asks `fallback` about logs no pattern matched.
    pub fn with_llm(mut self, fallback: LlmFallback) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// Patterns first; the LLM (when configured) only for `unknown`. An LLM failure keeps
    /// `unknown` rather than holding the stage: classification must not stall on a remote
    /// API, and the budget or cache decides whether it is asked again next time.
    async fn classify(&self, log: &[u8], command: Option<&str>) -> Classification {
        let c = self.catalogue.classify(log, command);
        let c = match (&self.fallback, c.failure_type) {
            (Some(fb), FailureType::Unknown) => match fb.classify(&c, command).await {
                Ok(llm) => llm,
                Err(error) => {
                    tracing::warn!(%error, "LLM fallback gave no verdict; keeping unknown.");
                    c
                }
            },
            _ => c,
        };
        metrics::counter!(
            names::FAILURES_CLASSIFIED,
            "failure_type" => c.failure_type.as_str(),
            "method" => c.method
        )
        .increment(1);
        c
    }
}

#[async_trait]
impl Stage for ClassifierStage {
    fn name(&self) -> &'static str {
        "classifier"
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        // Input selection: a failure reported with its log (generic webhook, Kafka-direct,
        // Jenkins with the log) is classified at once; one reported without (GitHub,
        // GitLab, Jenkins) once the logfetch stage has captured its log.
        struct LogInput<'a> {
            log: &'a str,
            command: &'a Option<String>,
        }
        let (failure_id, f) = match &event.fact {
            Fact::CiRunFailed(f) if !f.log.trim().is_empty() => (
                event.event_id.to_string(),
                LogInput {
                    log: &f.log,
                    command: &f.command,
                },
            ),
            Fact::FailureLogsCaptured(c) => (
                c.failure_event_id.clone(),
                LogInput {
                    log: &c.excerpt,
                    command: &c.failing_command,
                },
            ),
            _ => return Ok(Output::none()),
        };
        let c = self.classify(f.log.as_bytes(), f.command.as_deref()).await;
        let fact = FailureClassified {
            failure_event_id: failure_id,
            failure_type: c.failure_type,
            confidence: c.confidence,
            method: c.method.to_owned(),
            pattern_id: c.pattern_id,
            tool: c.tool,
            signature: c.signature,
            files: c.extracted.files,
            lines: c.extracted.lines,
            modules: c.extracted.modules,
            symbols: c.extracted.symbols,
        };
        let mut out = Output::none();
        out.push(event.caused(fact, &self.producer, 0, None));
        Ok(out)
    }
}
