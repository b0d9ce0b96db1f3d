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
                // Only failures seen and not yet decided get a decision: a repeated classification
                // never yields a second one.
                let Some(&sentinel_authored) = self.pending.get(&c.failure_event_id) else {
                    return Ok(out);
                };
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

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_events::facts::{CiRunFailed, FailureClassified};
    use sentinel_events::{FailureType, envelope::now};

    fn failure(i: usize, branch: &str) -> Event {
        Event::origin(
            CiRunFailed {
                source: "generic".into(),
                delivery_id: None,
                repository: format!("/repos/r{}", i % 7),
                branch: branch.into(),
                commit: "abcd".into(),
                command: Some("black --check .".into()),
                log: "would reformat a.py".into(),
                log_size_bytes: 19,
                run_url: None,
                job_name: None,
                author: None,
                sentinel_authored: branch.starts_with("sentinel/fix-"),
            },
            Some(&format!("f{i}")),
            "acme",
            &format!("/repos/r{}", i % 7),
            now(),
            "test@0",
        )
    }

    fn classified(f: &Event) -> Event {
        f.caused(
            FailureClassified {
                failure_event_id: f.event_id.to_string(),
                failure_type: FailureType::Formatting,
                confidence: 0.95,
                method: "pattern".into(),
                pattern_id: None,
                tool: Some("black".into()),
                signature: "formatting:x".into(),
                files: vec![],
                lines: vec![],
                modules: vec![],
                symbols: vec![],
            },
            "classifier@0",
            0,
            None,
        )
    }

    /// Drives the stage the way the runtime does: fold every input and every output.
    async fn feed(stage: &mut PolicyStage, e: &Event) -> Vec<DispatchDecided> {
        stage.fold(e);
        let out = stage.handle(e).await.expect("handle");
        let mut decisions = Vec::new();
        for o in out.events() {
            stage.fold(o);
            if let Fact::DispatchDecided(d) = &o.fact {
                decisions.push(d.clone());
            }
        }
        decisions
    }

    #[tokio::test]
    async fn twenty_failures_in_quick_succession_dispatch_ten() {
        let mut stage = PolicyStage::new(AutoRemediationPolicy {
            rate_limits: crate::model::RateLimits {
                max_fixes_per_repo: 100,
                ..Default::default()
            },
            ..Default::default()
        });
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..20 {
            let f = failure(i, "main");
            feed(&mut stage, &f).await;
            for d in feed(&mut stage, &classified(&f)).await {
                assert_eq!(d.policy_version, stage.version);
                *counts.entry(d.decision.as_str()).or_insert(0) += 1;
            }
        }
        assert_eq!(counts.get("dispatch"), Some(&10));
        assert_eq!(counts.get("rate_limited"), Some(&10));
    }

    #[tokio::test]
    async fn a_failure_is_decided_once_and_fix_branches_hit_the_loop_guard() {
        let mut stage = PolicyStage::new(AutoRemediationPolicy::default());
        let f = failure(1, "sentinel/fix-0123456789ab");
        feed(&mut stage, &f).await;
        let c = classified(&f);
        let first = feed(&mut stage, &c).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].decision, DispatchDecision::LoopGuard);
        assert!(feed(&mut stage, &c).await.is_empty(), "no second decision");
        // A classification of a failure never seen gets no decision either.
        assert!(
            feed(&mut stage, &classified(&failure(2, "main")))
                .await
                .is_empty()
        );
    }
}
