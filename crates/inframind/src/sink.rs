//! The `PredictionSink` gRPC service: InfraMind streams predictions, each is validated and
//! appended to `sentinel.inframind.predictions` as a `PredictionReceived` fact (its id
//! derived from the prediction id, so a re-sent prediction is recorded once).

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use sentinel_events::facts::PredictionReceived;
use sentinel_events::types::FailureType;
use sentinel_events::{Event, redact};
use sentinel_log::EventLog;
use tonic::{Request, Response, Status, Streaming};
use tracing::warn;

use crate::PREDICTIONS_TOPIC;
use crate::proto::prediction_sink_server::PredictionSink;
use crate::proto::{Prediction, PublishAck};

/// Longest id, signature or model name accepted.
const MAX_ID: usize = 256;
/// Longest repository name accepted.
const MAX_REPOSITORY: usize = 1024;

/// Checks a prediction from outside and turns it into a fact.
///
/// # Errors
///
/// A sentence saying which field is wrong.
pub fn to_fact(p: &Prediction) -> Result<PredictionReceived, String> {
    let short = |name: &str, v: &str, max: usize| {
        if v.len() > max {
            Err(format!("{name} is longer than {max} bytes"))
        } else {
            Ok(())
        }
    };
    if p.prediction_id.trim().is_empty() {
        return Err("prediction_id is required".into());
    }
    if p.repository.trim().is_empty() {
        return Err("repository is required".into());
    }
    short("prediction_id", &p.prediction_id, MAX_ID)?;
    short("repository", &p.repository, MAX_REPOSITORY)?;
    short("model", &p.model, MAX_ID)?;
    short("signature", &p.signature, MAX_ID)?;
    short("correlation_id", &p.correlation_id, MAX_ID)?;
    if !(0.0..=1.0).contains(&p.probability) {
        return Err("probability must be within 0..1".into());
    }
    let failure_type: FailureType =
        serde_json::from_value(serde_json::Value::String(p.failure_type.clone()))
            .map_err(|_| format!("unknown failure_type {:?}", p.failure_type))?;
    let opt = |s: &str| (!s.is_empty()).then(|| redact::redact(s));
    Ok(PredictionReceived {
        prediction_id: p.prediction_id.clone(),
        repository: p.repository.clone(),
        failure_type,
        probability: p.probability,
        model: opt(&p.model),
        signature: opt(&p.signature),
        correlation_id: opt(&p.correlation_id),
    })
}

/// The sink: appends what InfraMind publishes.
#[derive(Clone)]
pub struct PredictionSinkService {
    log: Arc<dyn EventLog>,
    tenant: String,
}

impl std::fmt::Debug for PredictionSinkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictionSinkService")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl PredictionSinkService {
    /// A sink appending to `log` under `tenant`.
    pub fn new(log: Arc<dyn EventLog>, tenant: &str) -> Self {
        Self {
            log,
            tenant: tenant.to_owned(),
        }
    }
}

#[tonic::async_trait]
impl PredictionSink for PredictionSinkService {
    async fn publish_predictions(
        &self,
        request: Request<Streaming<Prediction>>,
    ) -> Result<Response<PublishAck>, Status> {
        let mut stream = request.into_inner();
        let (mut accepted, mut rejected) = (0u64, 0u64);
        let producer = sentinel_runtime::producer("inframind-sink");
        while let Some(p) = stream.message().await? {
            let fact = match to_fact(&p) {
                Ok(f) => f,
                Err(reason) => {
                    warn!(reason, "Prediction rejected.");
                    rejected += 1;
                    continue;
                }
            };
            let at = Utc
                .timestamp_millis_opt(p.predicted_at_unix_ms)
                .single()
                .filter(|_| p.predicted_at_unix_ms > 0)
                .unwrap_or_else(sentinel_events::envelope::now);
            let subject = fact.repository.clone();
            let natural = fact.prediction_id.clone();
            let event = Event::origin(fact, Some(&natural), &self.tenant, &subject, at, &producer);
            sentinel_runtime::append_events(self.log.as_ref(), PREDICTIONS_TOPIC, &[event])
                .await
                .map_err(|e| Status::unavailable(format!("event log: {e}")))?;
            accepted += 1;
        }
        Ok(Response::new(PublishAck { accepted, rejected }))
    }
}
