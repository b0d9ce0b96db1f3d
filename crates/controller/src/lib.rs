//! The agent controller: turns `dispatch` decisions into queued tasks for the agent that can
//! do them, and owns the agent registry facts.
//!
//! Task ids are derived from the allowing decision's event id, so re-processing a decision
//! after a crash queues the same task again (a duplicate the log and consumers drop).

#![forbid(unsafe_code)]

use std::collections::HashMap;

use async_trait::async_trait;
use sentinel_events::envelope::{EVENT_ID_NAMESPACE, Timestamp};
use sentinel_events::facts::{AgentRegistered, TaskQueued};
use sentinel_events::{
    DEFAULT_TENANT, DispatchDecision, Event, Fact, FixTaskPayload, TASK_FIX_FAILURE,
};
use sentinel_runtime::{HandlerError, Output, Stage, producer};
use uuid::Uuid;

/// PatchBot's registered name.
pub const PATCHBOT: &str = "patchbot";

/// The stable id of a named agent.
pub fn agent_id(name: &str) -> Uuid {
    Uuid::new_v5(&EVENT_ID_NAMESPACE, format!("agent/{name}").as_bytes())
}

/// The `AgentRegistered` fact for PatchBot, idempotent per version (its id derives from name
/// and version, so registering again at every start appends nothing new).
pub fn patchbot_registration(version: &str, at: Timestamp) -> Event {
    let id = agent_id(PATCHBOT);
    Event::origin(
        AgentRegistered {
            agent_id: id.to_string(),
            name: PATCHBOT.to_owned(),
            version: version.to_owned(),
            capabilities: vec![TASK_FIX_FAILURE.to_owned()],
            max_concurrency: 1,
        },
        Some(&format!("agent/{PATCHBOT}/{version}")),
        DEFAULT_TENANT,
        &format!("agent/{PATCHBOT}"),
        at,
        &producer("controller"),
    )
}

/// A failure as far as the controller needs it.
#[derive(Debug, Clone, Default)]
struct Known {
    repository: String,
    branch: String,
    commit: String,
    command: Option<String>,
    log_excerpt: String,
    classification: Option<sentinel_events::facts::FailureClassified>,
}

/// Longest log excerpt carried in a task payload.
const EXCERPT_BYTES: usize = 16 * 1024;

/// The controller stage.
pub struct ControllerStage {
    failures: HashMap<String, Known>,
    producer: String,
    /// Default attempt deadline of fix tasks, in seconds.
    pub task_timeout_seconds: i64,
}

impl Default for ControllerStage {
    fn default() -> Self {
        Self {
            failures: HashMap::new(),
            producer: producer("controller"),
            task_timeout_seconds: 900,
        }
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

#[async_trait]
impl Stage for ControllerStage {
    fn name(&self) -> &'static str {
        "controller"
    }

    fn needs_history(&self) -> bool {
        true
    }

    fn fold(&mut self, event: &Event) {
        match &event.fact {
            Fact::CiRunFailed(f) => {
                self.failures.insert(
                    event.event_id.to_string(),
                    Known {
                        repository: f.repository.clone(),
                        branch: f.branch.clone(),
                        commit: f.commit.clone(),
                        command: f.command.clone(),
                        log_excerpt: tail(&f.log, EXCERPT_BYTES),
                        classification: None,
                    },
                );
            }
            Fact::FailureClassified(c) => {
                if let Some(k) = self.failures.get_mut(&c.failure_event_id) {
                    k.classification = Some(c.clone());
                }
            }
            Fact::DispatchDecided(d) if d.decision != DispatchDecision::Dispatch => {
                self.failures.remove(&d.failure_event_id);
            }
            Fact::TaskQueued(t) => {
                if let Some(f) = &t.failure_event_id {
                    self.failures.remove(f);
                }
            }
            _ => {}
        }
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let Fact::DispatchDecided(d) = &event.fact else {
            return Ok(Output::none());
        };
        if d.decision != DispatchDecision::Dispatch {
            return Ok(Output::none());
        }
        let Some(known) = self.failures.get(&d.failure_event_id) else {
            return Err(HandlerError::Poison(format!(
                "dispatch for unknown failure {}",
                d.failure_event_id
            )));
        };
        let Some(c) = &known.classification else {
            return Err(HandlerError::Poison(format!(
                "dispatch for unclassified failure {}",
                d.failure_event_id
            )));
        };
        let payload = FixTaskPayload {
            failure_event_id: d.failure_event_id.clone(),
            repository: known.repository.clone(),
            branch: known.branch.clone(),
            commit: known.commit.clone(),
            command: known.command.clone(),
            failure_type: c.failure_type,
            tool: c.tool.clone(),
            pattern_id: c.pattern_id.clone(),
            signature: c.signature.clone(),
            modules: c.modules.clone(),
            files: c.files.clone(),
            log_excerpt: known.log_excerpt.clone(),
        };
        let payload = serde_json::to_string(&payload)
            .map_err(|e| HandlerError::Poison(format!("payload: {e}")))?;
        let task_id = Uuid::new_v5(&event.event_id, b"task");
        let fact = TaskQueued {
            task_id: task_id.to_string(),
            agent_id: agent_id(PATCHBOT).to_string(),
            task_type: TASK_FIX_FAILURE.to_owned(),
            priority: 0,
            decision_id: Some(event.event_id.to_string()),
            failure_event_id: Some(d.failure_event_id.clone()),
            payload,
            timeout_seconds: self.task_timeout_seconds,
            max_attempts: 1,
        };
        let mut out = Output::none();
        out.push(event.caused(fact, &self.producer, 0, None));
        Ok(out)
    }
}
