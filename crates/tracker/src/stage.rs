//! The tracker stage: folds the fact log, turns forge observations (webhooks recorded by
//! ingestion as `ForgeEventReceived`, or the poller's) into pull-request and outcome facts,
//! and requests rollbacks.

use async_trait::async_trait;
use sentinel_events::{Event, Fact};
use sentinel_runtime::metrics::names;
use sentinel_runtime::{HandlerError, Output, Stage};

use crate::config::TrackerConfig;
use crate::state::TrackerState;

/// Stage name (consumer group `sentinel-tracker`).
pub const STAGE_NAME: &str = "tracker";

/// The PR tracker stage. Pure apart from appending: decisions come from
/// [`TrackerState::decide`].
#[derive(Debug, Default)]
pub struct TrackerStage {
    state: TrackerState,
    config: TrackerConfig,
    producer: String,
}

impl TrackerStage {
    /// A tracker with `config`.
    pub fn new(config: TrackerConfig) -> Self {
        for event in ["opened", "merged", "closed"] {
            sentinel_runtime::metrics::zero(names::PULL_REQUESTS, &[("event", event)]);
        }
        Self {
            state: TrackerState::default(),
            config,
            producer: sentinel_runtime::producer(STAGE_NAME),
        }
    }

    /// The folded state (for tests and diagnostics).
    pub fn state(&self) -> &TrackerState {
        &self.state
    }
}

#[async_trait]
impl Stage for TrackerStage {
    fn name(&self) -> &'static str {
        STAGE_NAME
    }

    fn needs_history(&self) -> bool {
        true
    }

    fn fold(&mut self, event: &Event) {
        self.state.apply(event);
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let mut out = Output::none();
        let decided = self.state.decide(event, &self.config);
        // A rollback supersedes the fix's successful outcome with a failed one for the same
        // merge: its time to merge was already observed once.
        let superseding = decided
            .iter()
            .any(|d| matches!(d.fact, Fact::RollbackRequested(_)));
        for (i, d) in decided.into_iter().enumerate() {
            if let Fact::FixOutcomeRecorded(o) = &d.fact {
                let failure_type = self
                    .state
                    .chain(&d.correlation_id)
                    .and_then(|c| c.failure_type)
                    .map_or("unknown", |t| t.as_str());
                metrics::counter!(names::FIX_OUTCOMES, "failure_type" => failure_type,
                    "success" => if o.success { "true" } else { "false" })
                .increment(1);
                if let Some(s) = o.time_to_merge_seconds
                    && !superseding
                {
                    metrics::histogram!(names::TIME_TO_MERGE).record(s);
                }
            }
            match &d.fact {
                Fact::PullRequestMerged(_) => {
                    metrics::counter!(names::PULL_REQUESTS, "event" => "merged").increment(1);
                }
                Fact::PullRequestClosed(_) => {
                    metrics::counter!(names::PULL_REQUESTS, "event" => "closed").increment(1);
                }
                _ => {}
            }
            if matches!(d.fact, Fact::RollbackRequested(_)) {
                metrics::counter!(names::ROLLBACKS_REQUESTED).increment(1);
            }
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let mut e = event.caused(d.fact, &self.producer, index, Some(d.occurred_at));
            e.correlation_id = d.correlation_id;
            e.tenant = d.tenant;
            e.subject = d.subject;
            out.push(e);
        }
        Ok(out)
    }
}
