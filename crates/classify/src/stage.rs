//! The classifier stage: `CiRunFailed` → `FailureClassified`.

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
        let Fact::CiRunFailed(f) = &event.fact else {
            return Ok(Output::none());
        };
        let c = self
            .catalogue
            .classify(f.log.as_bytes(), f.command.as_deref());
        let fact = FailureClassified {
            failure_event_id: event.event_id.to_string(),
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
