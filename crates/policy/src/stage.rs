//! The policy stage: `FailureClassified` → `DispatchDecided`, `FixValidated` → `ActionDecided`.

use std::collections::HashMap;

use async_trait::async_trait;
use sentinel_events::facts::{ActionDecided, DispatchDecided};
use sentinel_events::{DispatchDecision, Event, Fact};
use sentinel_runtime::{HandlerError, Output, Stage, producer};

use crate::AutoRemediationPolicy;
use crate::decide::{DispatchRequest, PolicyState, decide_action, decide_dispatch};

/// The policy stage.
pub struct PolicyStage {
    policy: AutoRemediationPolicy,
    version: String,
    state: PolicyState,
    /// Failures seen but not yet decided: event id → sentinel_authored.
    pending: HashMap<String, bool>,
    producer: String,
}

impl PolicyStage {
    /// A policy stage deciding under `policy`.
    pub fn new(policy: AutoRemediationPolicy) -> Self {
        Self {
            version: policy.version(),
            policy,
            state: PolicyState::default(),
            pending: HashMap::new(),
            producer: producer("policy"),
        }
    }
}

#[async_trait]
impl Stage for PolicyStage {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn needs_history(&self) -> bool {
        true
    }

    fn fold(&mut self, event: &Event) {
        match &event.fact {
            Fact::CiRunFailed(f) => {
                self.pending
                    .insert(event.event_id.to_string(), f.sentinel_authored);
            }
            Fact::DispatchDecided(d) => {
                self.pending.remove(&d.failure_event_id);
                if d.decision == DispatchDecision::Dispatch {
                    self.state
                        .record_dispatch(event.occurred_at, &event.tenant, &event.subject);
                }
            }
            _ => {}
        }
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let mut out = Output::none();
        match &event.fact {
            Fact::FailureClassified(c) => {
                let sentinel_authored = self
                    .pending
                    .get(&c.failure_event_id)
                    .copied()
                    .unwrap_or(false);
                let req = DispatchRequest {
                    tenant: &event.tenant,
                    repository: &event.subject,
                    failure_type: c.failure_type,
                    confidence: c.confidence,
                    sentinel_authored,
                    at: event.occurred_at,
                };
                let d = decide_dispatch(&self.state, &req, &self.policy);
                let fact = DispatchDecided {
                    failure_event_id: c.failure_event_id.clone(),
                    classification_event_id: event.event_id.to_string(),
                    decision: d.decision,
                    reason_code: d.reason_code.to_owned(),
                    reason: d.reason,
                    policy_version: self.version.clone(),
                    failure_type: c.failure_type,
                    confidence: c.confidence,
                };
                out.push(event.caused(fact, &self.producer, 0, None));
            }
            Fact::FixValidated(v) => {
                let d = decide_action(
                    v.passed,
                    v.confidence,
                    &v.protected_paths_touched,
                    &self.policy,
                );
                let fact = ActionDecided {
                    task_id: v.task_id.clone(),
                    candidate_id: v.candidate_id.clone(),
                    decision: d.decision,
                    reason_code: d.reason_code.to_owned(),
                    reason: d.reason,
                    policy_version: self.version.clone(),
                    confidence: v.confidence,
                };
                out.push(event.caused(fact, &self.producer, 0, None));
            }
            _ => {}
        }
        Ok(out)
    }
}
