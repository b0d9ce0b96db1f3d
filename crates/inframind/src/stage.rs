//! The correlator stages.
//!
//! * [`PredictionStage`] moves predictions from `sentinel.inframind.predictions` (Avro or
//!   JSON `PredictionReceived`, from Kafka producers or the gRPC sink) onto the fact log,
//!   keeping their ids, so every stage sees them in order with the failures they predict.
//! * [`CorrelatorStage`] links predictions to tasks (`PredictionCorrelated`) and reports
//!   each `FixOutcomeRecorded` to InfraMind, appending `OutcomeReported` once delivered.
//!   Delivery is tracked by the stage's committed offset: while InfraMind is down the
//!   handler fails transiently and the runtime retries with backoff, never dead-lettering
//!   (the outcome is a fact; nothing is lost); on shutdown the outcome stays uncommitted and
//!   is reported after the restart. Reports carry the outcome fact's id, so InfraMind can
//!   drop the duplicate a crash between delivery and commit causes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sentinel_events::facts::OutcomeReported;
use sentinel_events::{Event, Fact};
use sentinel_runtime::metrics::names;
use sentinel_runtime::{HandlerError, Output, RunnerConfig, Stage};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::client::Reporter;
use crate::correlate::CorrelatorState;
use crate::{Error, PREDICTIONS_TOPIC, Result};

/// Settings of the correlator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelatorConfig {
    /// InfraMind's gRPC endpoint (`http://host:port`); none: outcomes are not reported.
    pub inframind_url: Option<String>,
    /// A prediction links to a failure at most this long after it (event time), seconds.
    pub window_seconds: i64,
    /// Deadline of one report call, milliseconds.
    pub report_timeout_ms: u64,
    /// First retry delay while InfraMind is unreachable, milliseconds (doubles, jittered).
    pub retry_min_delay_ms: u64,
    /// Longest retry delay, milliseconds.
    pub retry_max_delay_ms: u64,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        Self {
            inframind_url: None,
            window_seconds: 6 * 3600,
            report_timeout_ms: 5_000,
            retry_min_delay_ms: 100,
            retry_max_delay_ms: 10_000,
        }
    }
}

/// Stage name of the correlator (consumer group `sentinel-correlator`).
pub const CORRELATOR: &str = "correlator";
/// Stage name of the prediction mover.
pub const PREDICTIONS: &str = "inframind-predictions";

/// Links predictions to tasks and reports outcomes to InfraMind.
#[derive(Debug)]
pub struct CorrelatorStage {
    state: CorrelatorState,
    config: CorrelatorConfig,
    reporter: Option<Reporter>,
    attempts: HashMap<Uuid, i32>,
    producer: String,
}

impl CorrelatorStage {
    /// A correlator; reports outcomes when `config.inframind_url` is set.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid URL.
    pub fn new(config: CorrelatorConfig) -> Result<Self> {
        let reporter = config
            .inframind_url
            .as_deref()
            .map(|u| Reporter::new(u, Duration::from_millis(config.report_timeout_ms)))
            .transpose()?;
        Ok(Self {
            state: CorrelatorState::default(),
            config,
            reporter,
            attempts: HashMap::new(),
            producer: sentinel_runtime::producer(CORRELATOR),
        })
    }
}

#[async_trait]
impl Stage for CorrelatorStage {
    fn name(&self) -> &'static str {
        CORRELATOR
    }

    fn needs_history(&self) -> bool {
        true
    }

    fn fold(&mut self, event: &Event) {
        self.state.apply(event);
    }

    fn tune(&self, config: RunnerConfig) -> RunnerConfig {
        RunnerConfig {
            // Never dead-letter an outcome because InfraMind is down: retry until it is back
            // (or until shutdown, which leaves the outcome for the restart).
            max_attempts: usize::MAX,
            retry_min_delay: Duration::from_millis(self.config.retry_min_delay_ms),
            retry_max_delay: Duration::from_millis(self.config.retry_max_delay_ms),
            ..config
        }
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let mut out = Output::none();
        let window = chrono::Duration::seconds(self.config.window_seconds);
        for (i, c) in self.state.correlate(event, window).into_iter().enumerate() {
            metrics::counter!(names::PREDICTIONS_CORRELATED, "method" => method_label(&c.method))
                .increment(1);
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            out.push(event.caused(c, &self.producer, index, None));
        }
        let Some(reporter) = &self.reporter else {
            return Ok(out);
        };
        if self.state.is_reported(&event.event_id) {
            return Ok(out);
        }
        let Some(mut outcome) = self.state.outcome(event) else {
            return Ok(out);
        };
        let attempts = self.attempts.entry(event.event_id).or_insert(0);
        *attempts += 1;
        outcome.reported_at_unix_ms = chrono::Utc::now().timestamp_millis();
        let (prediction_id, task_id, success) = (
            outcome.prediction_id.clone(),
            outcome.task_id.clone(),
            outcome.success,
        );
        let started = Instant::now();
        let result = reporter.report(outcome).await;
        metrics::histogram!(names::INFRAMIND_REPORT_DURATION)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(ack) => {
                debug!(task_id, accepted = ack.accepted, "Outcome reported.");
                metrics::counter!(names::INFRAMIND_OUTCOMES, "outcome" => "delivered").increment(1);
                let attempts = self.attempts.remove(&event.event_id).unwrap_or(1);
                out.push(event.caused(
                    OutcomeReported {
                        prediction_id,
                        task_id,
                        success,
                        attempts,
                    },
                    &self.producer,
                    1000,
                    None,
                ));
                Ok(out)
            }
            Err(Error::Rejected(reason)) => {
                self.attempts.remove(&event.event_id);
                Err(HandlerError::Poison(format!(
                    "InfraMind rejected the outcome: {reason}"
                )))
            }
            Err(e) => {
                metrics::counter!(names::INFRAMIND_OUTCOMES, "outcome" => "retried").increment(1);
                warn!(error = %e, task_id, attempt = *attempts, "Reporting to InfraMind failed.");
                Err(HandlerError::Transient(e.to_string()))
            }
        }
    }
}

fn method_label(m: &str) -> &'static str {
    match m {
        crate::correlate::method::CORRELATION_ID => "correlation_id",
        crate::correlate::method::SIGNATURE => "signature",
        _ => "failure_type",
    }
}

/// Moves `PredictionReceived` facts from `sentinel.inframind.predictions` to the fact log.
#[derive(Debug, Default)]
pub struct PredictionStage;

#[async_trait]
impl Stage for PredictionStage {
    fn name(&self) -> &'static str {
        PREDICTIONS
    }

    fn input_topic(&self) -> &'static str {
        PREDICTIONS_TOPIC
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let Fact::PredictionReceived(p) = &event.fact else {
            return Err(HandlerError::Poison(format!(
                "only prediction_received belongs on {PREDICTIONS_TOPIC}, not {}",
                event.event_type()
            )));
        };
        let proto = crate::proto::Prediction {
            prediction_id: p.prediction_id.clone(),
            repository: p.repository.clone(),
            failure_type: p.failure_type.as_str().to_owned(),
            probability: p.probability,
            model: p.model.clone().unwrap_or_default(),
            signature: p.signature.clone().unwrap_or_default(),
            correlation_id: p.correlation_id.clone().unwrap_or_default(),
            predicted_at_unix_ms: 0,
        };
        crate::sink::to_fact(&proto).map_err(HandlerError::Poison)?;
        let mut out = Output::none();
        // Same id: a prediction moved twice is one fact.
        out.push(event.clone());
        Ok(out)
    }
}
