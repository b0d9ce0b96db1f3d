//! The classifier stage: `CiRunFailed` (with a log) or `FailureLogsCaptured` →
//! `FailureClassified`.

use async_trait::async_trait;
use sentinel_events::facts::FailureClassified;
use sentinel_events::{Event, Fact};
use sentinel_runtime::{HandlerError, Output, Stage, producer};

use crate::Catalogue;

/// The classifier stage.
pub struct ClassifierStage {
    catalogue: Catalogue,
    producer: String,
}

impl ClassifierStage {
    /// A stage classifying with `catalogue`.
    pub fn new(catalogue: Catalogue) -> Self {
        Self {
            catalogue,
            producer: producer("classifier"),
        }
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
        let c = self
            .catalogue
            .classify(f.log.as_bytes(), f.command.as_deref());
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
