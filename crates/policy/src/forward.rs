//! The tenant-keyed policy topic (distributed deployments, DESIGN §3): per-tenant limits hold
//! when the policy gate is scaled out on Kafka.
//!
//! `sentinel.events` is keyed `tenant/repository`, so a tenant's facts are spread over its
//! partitions and policy instances in one consumer group would each see only part of a
//! tenant and each allow the full limit. Instead:
//!
//! * [`PolicyForwardStage`] (consumer group `sentinel-policy-forward`, stateless, any number
//!   of members) copies every fact the gate consumes ([`POLICY_INPUTS`]) from
//!   `sentinel.events` to `sentinel.policy`, keyed by tenant alone, unchanged (same event
//!   id, same envelope).
//! * The gate ([`PolicyStage::on_tenant_topic`](crate::PolicyStage::on_tenant_topic),
//!   group `sentinel-policy`) reads `sentinel.policy` and appends each decision to
//!   `sentinel.events` (for the rest of the pipeline) and then to `sentinel.policy` under
//!   the tenant key (for itself). All of a tenant's inputs and decisions are thus in one
//!   partition, owned by one group member at a time, in order; the runtime folds what other
//!   members handled when a partition changes hands.
//!
//! The gate's own facts are never forwarded: they reach `sentinel.policy` from the gate
//! itself, so a decision is in the tenant's partition before the gate commits the input
//! it decided. On the embedded log none of this runs: the gate reads `sentinel.events`.

use async_trait::async_trait;
use sentinel_events::Event;
use sentinel_runtime::{HandlerError, Output, POLICY_TOPIC, Stage};

/// The facts the policy gate folds or decides on, by `event_type`: what
/// [`PolicyForwardStage`] copies to `sentinel.policy`. Its own outputs
/// ([`POLICY_OUTPUTS`]) are not among them.
pub const POLICY_INPUTS: &[&str] = &[
    "ci_run_failed",
    "failure_classified",
    "task_queued",
    "task_completed",
    "task_failed",
    "task_cancelled",
    "fix_candidate_proposed",
    "fix_validated",
    "fix_not_found",
    "pull_request_opened",
    "pull_request_merged",
    "pull_request_closed",
    "review_completed",
    "rollback_requested",
];

/// The facts only the policy gate appends.
pub const POLICY_OUTPUTS: &[&str] = &[
    "dispatch_decided",
    "action_decided",
    "review_requested",
    "review_escalated",
    "rollback_decided",
];

/// The stage copying the gate's inputs from `sentinel.events` to `sentinel.policy`, keyed by
/// tenant (see the module docs).
#[derive(Debug, Default)]
pub struct PolicyForwardStage;

#[async_trait]
impl Stage for PolicyForwardStage {
    fn name(&self) -> &'static str {
        "policy-forward"
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let mut out = Output::none();
        if POLICY_INPUTS.contains(&event.event_type()) {
            out.push_keyed(POLICY_TOPIC, event.tenant.clone(), event.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_events::Fact;

    #[test]
    fn inputs_and_outputs_are_fact_types_and_disjoint() {
        for t in POLICY_INPUTS.iter().chain(POLICY_OUTPUTS) {
            assert!(Fact::TYPES.contains(t), "{t}");
        }
        assert!(POLICY_INPUTS.iter().all(|t| !POLICY_OUTPUTS.contains(t)));
    }
}
