//! The correlator's pure core: which task a prediction foresaw, and the outcome report of
//! a finished fix.

use std::collections::{HashMap, HashSet};

use chrono::Duration;
use sentinel_events::envelope::Timestamp;
use sentinel_events::facts::PredictionCorrelated;
use sentinel_events::types::FailureType;
use sentinel_events::{Event, Fact};
use uuid::Uuid;

use crate::proto::AgentOutcome;

/// A prediction as folded.
#[derive(Debug, Clone)]
struct Prediction {
    repository: String,
    failure_type: FailureType,
    signature: Option<String>,
    correlation_id: Option<String>,
    at: Timestamp,
    task: Option<String>,
}

/// A failure → task → fix chain as folded.
#[derive(Debug, Clone, Default)]
struct Chain {
    repository: Option<String>,
    failure_type: Option<FailureType>,
    signature: Option<String>,
    failed_at: Option<Timestamp>,
    task_id: Option<String>,
    agent_id: Option<String>,
    confidence: Option<f64>,
    prediction: Option<(String, String)>,
}

/// How a prediction was linked.
pub mod method {
    /// InfraMind named the chain's correlation id.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// Same repository and failure signature within the window.
    pub const SIGNATURE: &str = "signature";
    /// Same repository and failure type within the window.
    pub const FAILURE_TYPE: &str = "failure_type";
}

/// The correlator's folded state.
#[derive(Debug, Default)]
pub struct CorrelatorState {
    predictions: HashMap<String, Prediction>,
    chains: HashMap<Uuid, Chain>,
    task_chain: HashMap<String, Uuid>,
    reported: HashSet<Uuid>,
}

impl CorrelatorState {
    /// Folds one fact. Pure.
    pub fn apply(&mut self, event: &Event) {
        let corr = event.correlation_id;
        match &event.fact {
            Fact::PredictionReceived(p) => {
                self.predictions
                    .entry(p.prediction_id.clone())
                    .or_insert_with(|| Prediction {
                        repository: p.repository.clone(),
                        failure_type: p.failure_type,
                        signature: p.signature.clone(),
                        correlation_id: p.correlation_id.clone(),
                        at: event.occurred_at,
                        task: None,
                    });
            }
            Fact::CiRunFailed(f) => {
                let c = self.chains.entry(corr).or_default();
                c.repository = Some(f.repository.clone());
                c.failed_at = Some(event.occurred_at);
            }
            Fact::FailureClassified(f) => {
                let c = self.chains.entry(corr).or_default();
                c.failure_type = Some(f.failure_type);
                c.signature = Some(f.signature.clone());
            }
            Fact::TaskQueued(t) => {
                let c = self.chains.entry(corr).or_default();
                c.task_id = Some(t.task_id.clone());
                c.agent_id = Some(t.agent_id.clone());
                self.task_chain.insert(t.task_id.clone(), corr);
            }
            Fact::ActionDecided(a) => {
                self.chains.entry(corr).or_default().confidence = Some(a.confidence);
            }
            Fact::PredictionCorrelated(p) => {
                if let Some(pred) = self.predictions.get_mut(&p.prediction_id) {
                    pred.task = Some(p.task_id.clone());
                }
                if let Some(c) = self
                    .task_chain
                    .get(&p.task_id)
                    .and_then(|k| self.chains.get_mut(k))
                {
                    c.prediction = Some((p.prediction_id.clone(), p.method.clone()));
                }
            }
            Fact::OutcomeReported(_) => {
                if let Some(cause) = event.causation_id {
                    self.reported.insert(cause);
                }
            }
            _ => {}
        }
    }

    /// Whether the outcome fact `outcome_event_id` was already reported.
    pub fn is_reported(&self, outcome_event_id: &Uuid) -> bool {
        self.reported.contains(outcome_event_id)
    }

    /// The links `event` makes possible (after it was folded): a new task is matched with
    /// an unlinked prediction, or a new prediction with an unlinked task. Pure.
    pub fn correlate(&self, event: &Event, window: Duration) -> Vec<PredictionCorrelated> {
        match &event.fact {
            Fact::TaskQueued(t) => self
                .chains
                .get(&event.correlation_id)
                .filter(|c| c.prediction.is_none())
                .and_then(|c| self.best_prediction(&event.correlation_id, c, window))
                .map(|(id, method)| PredictionCorrelated {
                    prediction_id: id,
                    task_id: t.task_id.clone(),
                    method: method.to_owned(),
                })
                .into_iter()
                .collect(),
            Fact::PredictionReceived(p) => {
                let Some(pred) = self.predictions.get(&p.prediction_id) else {
                    return Vec::new();
                };
                if pred.task.is_some() {
                    return Vec::new();
                }
                let mut best: Option<(u8, i64, &str, String)> = None;
                for (k, c) in &self.chains {
                    let Some(task) = &c.task_id else { continue };
                    if c.prediction.is_some() {
                        continue;
                    }
                    if let Some((rank, distance, m)) = link(k, c, pred, window)
                        && best
                            .as_ref()
                            .is_none_or(|b| (rank, distance, task) < (b.0, b.1, &b.3))
                    {
                        best = Some((rank, distance, m, task.clone()));
                    }
                }
                best.map(|(_, _, m, task)| PredictionCorrelated {
                    prediction_id: p.prediction_id.clone(),
                    task_id: task,
                    method: m.to_owned(),
                })
                .into_iter()
                .collect()
            }
            _ => Vec::new(),
        }
    }

    fn best_prediction(
        &self,
        key: &Uuid,
        chain: &Chain,
        window: Duration,
    ) -> Option<(String, &'static str)> {
        self.predictions
            .iter()
            .filter(|(_, p)| p.task.is_none())
            .filter_map(|(id, p)| link(key, chain, p, window).map(|(r, d, m)| (r, d, id, m)))
            .min_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)))
            .map(|(_, _, id, m)| (id.clone(), m))
    }

    /// The report for a `FixOutcomeRecorded` event, if it is one.
    pub fn outcome(&self, event: &Event) -> Option<AgentOutcome> {
        let Fact::FixOutcomeRecorded(o) = &event.fact else {
            return None;
        };
        let chain = self
            .task_chain
            .get(&o.task_id)
            .and_then(|k| self.chains.get(k))
            .cloned()
            .unwrap_or_default();
        let ms = |t: Timestamp| t.timestamp_millis();
        Some(AgentOutcome {
            outcome_id: event.event_id.to_string(),
            prediction_id: chain
                .prediction
                .as_ref()
                .map(|(id, _)| id.clone())
                .unwrap_or_default(),
            agent: chain.agent_id.clone().unwrap_or_default(),
            success: o.success,
            confidence: chain.confidence.unwrap_or_default(),
            time_to_fix_seconds: o.time_to_merge_seconds.unwrap_or_else(|| {
                chain.failed_at.map_or(0.0, |f| {
                    (event.occurred_at - f).num_milliseconds().max(0) as f64 / 1000.0
                })
            }),
            failure_type: chain
                .failure_type
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            repository: chain.repository.clone().unwrap_or_default(),
            task_id: o.task_id.clone(),
            signature: chain.signature.clone().unwrap_or_default(),
            failed_at_unix_ms: chain.failed_at.map(ms).unwrap_or_default(),
            outcome_at_unix_ms: ms(event.occurred_at),
            reported_at_unix_ms: 0,
            correlation_id: event.correlation_id.to_string(),
        })
    }
}

/// Whether `pred` foresaw `chain`: (rank — lower is stronger, distance in ms, method).
fn link(
    key: &Uuid,
    chain: &Chain,
    pred: &Prediction,
    window: Duration,
) -> Option<(u8, i64, &'static str)> {
    if let Some(c) = &pred.correlation_id {
        return (c == &key.to_string()).then_some((0, 0, method::CORRELATION_ID));
    }
    let repo = chain.repository.as_deref()?;
    let failed_at = chain.failed_at?;
    if repo != pred.repository {
        return None;
    }
    // A prediction precedes its failure; a little clock skew is tolerated.
    let skew = Duration::minutes(5);
    if failed_at < pred.at - skew || failed_at > pred.at + window {
        return None;
    }
    let distance = (failed_at - pred.at).num_milliseconds().abs();
    match (&pred.signature, &chain.signature) {
        (Some(p), Some(c)) if p == c => Some((1, distance, method::SIGNATURE)),
        (Some(_), _) => None,
        (None, _) if chain.failure_type == Some(pred.failure_type) => {
            Some((2, distance, method::FAILURE_TYPE))
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::{chain_events, prediction};

    fn folded(events: &[Event]) -> CorrelatorState {
        let mut s = CorrelatorState::default();
        events.iter().for_each(|e| s.apply(e));
        s
    }

    #[test]
    fn a_task_links_to_the_prediction_with_its_signature_before_one_with_its_type() {
        let window = Duration::hours(6);
        let by_type = prediction(
            "p-type",
            "acme/app",
            FailureType::Formatting,
            None,
            None,
            -600,
        );
        let by_sig = prediction(
            "p-sig",
            "acme/app",
            FailureType::Formatting,
            Some("sig-1"),
            None,
            -3600,
        );
        let other_repo = prediction(
            "p-other",
            "acme/lib",
            FailureType::Formatting,
            Some("sig-1"),
            None,
            -60,
        );
        let chain = chain_events("acme/app", "sig-1", 0, true);
        let mut all = vec![by_type, by_sig, other_repo];
        all.extend(chain.clone());
        let s = folded(&all);
        let task = chain
            .iter()
            .find(|e| e.event_type() == "task_queued")
            .unwrap();
        let out = s.correlate(task, window);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].prediction_id, "p-sig");
        assert_eq!(out[0].method, method::SIGNATURE);
    }

    #[test]
    fn windows_and_explicit_correlation_ids() {
        let window = Duration::hours(1);
        let chain = chain_events("acme/app", "sig-1", 0, true);
        let corr = chain[0].correlation_id.to_string();
        // Too old for the window.
        let old = prediction(
            "p-old",
            "acme/app",
            FailureType::Formatting,
            None,
            None,
            -7200,
        );
        let s = folded(&[vec![old], chain.clone()].concat());
        let task = chain
            .iter()
            .find(|e| e.event_type() == "task_queued")
            .unwrap();
        assert!(s.correlate(task, window).is_empty());
        // A late prediction naming the chain explicitly links, whatever its time.
        let explicit = prediction(
            "p-x",
            "elsewhere",
            FailureType::Linting,
            None,
            Some(&corr),
            99_999,
        );
        let mut s = folded(&chain);
        s.apply(&explicit);
        let out = s.correlate(&explicit, window);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].method, method::CORRELATION_ID);
    }

    #[test]
    fn the_outcome_report_carries_the_chain_and_the_prediction() {
        let chain = chain_events("acme/app", "sig-1", 0, true);
        let pred = prediction("p-1", "acme/app", FailureType::Formatting, None, None, -60);
        let mut s = folded(&[vec![pred], chain.clone()].concat());
        let task = chain
            .iter()
            .find(|e| e.event_type() == "task_queued")
            .unwrap();
        for c in s.correlate(task, Duration::hours(1)) {
            s.apply(&task.caused(c, "t@0", 0, None));
        }
        let outcome_event = chain.last().unwrap();
        let o = s.outcome(outcome_event).unwrap();
        assert_eq!(o.prediction_id, "p-1");
        assert_eq!(o.agent, "patchbot");
        assert!(o.success);
        assert_eq!(o.failure_type, "formatting");
        assert_eq!(o.repository, "acme/app");
        assert_eq!(o.signature, "sig-1");
        assert_eq!(o.confidence, 0.95);
        assert_eq!(o.time_to_fix_seconds, 1800.0);
        assert_eq!(o.outcome_id, outcome_event.event_id.to_string());
    }
}
