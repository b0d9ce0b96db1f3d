//! The agent controller: turns `dispatch` decisions into queued tasks for the agent that can
//! do them, and owns the agent registry facts.
//!
//! Task ids are derived from the allowing decision's event id, so re-processing a decision
//! after a crash queues the same task again (a duplicate the log and consumers drop).
//!
//! Besides queueing fix tasks, the stage runs the [`schedule::Scheduler`]: it folds the
//! registry and every task's attempts, and after each fact it reads appends what the
//! scheduler decides at that fact's event time — `TaskAssigned` (also to
//! `sentinel.tasks`, keyed by agent, for the agent's workers), controller-side timeouts
//! and give-ups as `TaskFailed`, refusals of tasks an agent cannot do, and
//! `AgentStatusChanged` (failed) for agents whose health score collapsed. A `TaskCancelled`
//! for a task that has an agent is forwarded to `sentinel.tasks`, where the agent's worker
//! drops the attempt. See `docs/agents.md`.

#![forbid(unsafe_code)]

pub mod schedule;

use std::collections::HashMap;

use async_trait::async_trait;
pub use schedule::{Decision, Scheduler, SchedulerConfig};
use sentinel_events::envelope::Timestamp;
use sentinel_events::facts::{
    AgentRegistered, AgentStatusChanged, TaskAssigned, TaskFailed, TaskQueued,
};
use sentinel_events::{
    DEFAULT_TENANT, DispatchDecision, Event, Fact, FixTaskPayload, TASK_FIX_FAILURE,
};
use sentinel_runtime::TASKS_TOPIC;
use sentinel_runtime::metrics::names;
use sentinel_runtime::{HandlerError, Output, Stage, producer};
use uuid::Uuid;

/// PatchBot's registered name.
pub const PATCHBOT: &str = "patchbot";

/// The stable id of a named agent (the SDK's [`sentinel_agent_sdk::agent_id`]).
pub fn agent_id(name: &str) -> Uuid {
    sentinel_agent_sdk::agent_id(name)
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
    /// The registry, queue and attempts.
    pub scheduler: Scheduler,
}

impl Default for ControllerStage {
    fn default() -> Self {
        Self {
            failures: HashMap::new(),
            producer: producer("controller"),
            task_timeout_seconds: 900,
            scheduler: Scheduler::default(),
        }
    }
}

/// First `caused` index of scheduler output (0..100 belong to the dispatch path).
const DECISION_INDEX: u32 = 100;

impl ControllerStage {
    /// A stage with these scheduler knobs.
    pub fn with_scheduler(config: SchedulerConfig) -> Self {
        Self {
            scheduler: Scheduler::new(config),
            ..Self::default()
        }
    }

    /// Turns the scheduler's decisions at `event`'s time into facts.
    fn schedule(&self, event: &Event, out: &mut Output) {
        let decisions = self.scheduler.decide(event.occurred_at);
        let mut index = DECISION_INDEX;
        let mut next = || {
            index += 2;
            index
        };
        for d in decisions {
            let label = match &d {
                Decision::Assign { attempt: 1, .. } => "assigned",
                Decision::Assign { .. } => "retried",
                Decision::TimeOut { .. } => "timed_out",
                Decision::GiveUp { .. } => "gave_up",
                Decision::Refuse { .. } => "refused",
                Decision::FailAgent { .. } => "agent_failed",
            };
            metrics::counter!(names::CONTROLLER_DECISIONS, "decision" => label).increment(1);
            let i = next();
            match d {
                Decision::Assign {
                    task_id,
                    agent_id,
                    attempt,
                    delay,
                } => {
                    let Some(t) = self.scheduler.task(&task_id) else {
                        continue;
                    };
                    let fact = TaskAssigned {
                        task_id: task_id.clone(),
                        agent_id: agent_id.clone(),
                        attempt,
                        task_type: t.task_type.clone(),
                        payload: t.payload.clone(),
                        timeout_seconds: t.timeout_seconds,
                        delay_ms: i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                        priority: t.priority,
                    };
                    let mut e = event.caused(fact, &self.producer, i, None);
                    e.subject = t.subject.clone();
                    e.correlation_id = t.correlation_id;
                    let mut copy = event.caused(e.fact.clone(), &self.producer, i + 1, None);
                    copy.subject = format!("agent/{agent_id}");
                    copy.correlation_id = t.correlation_id;
                    out.push(e);
                    out.push_to(TASKS_TOPIC, copy);
                }
                Decision::TimeOut {
                    task_id,
                    agent_id,
                    attempt,
                    after,
                } => {
                    let timeout = self
                        .scheduler
                        .task(&task_id)
                        .map(|t| t.timeout_seconds)
                        .unwrap_or_default();
                    let fact = TaskFailed {
                        task_id: task_id.clone(),
                        agent_id,
                        attempt,
                        error: format!(
                            "no result {:.0}s after assignment (attempt timeout {timeout}s): \
                             the worker was lost or is stuck",
                            after.as_secs_f64()
                        ),
                        retryable: true,
                        duration_ms: i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
                    };
                    out.push(self.about_task(event, &task_id, fact, i));
                }
                Decision::GiveUp {
                    task_id,
                    agent_id,
                    reason,
                    ..
                }
                | Decision::Refuse {
                    task_id,
                    agent_id,
                    reason,
                } => {
                    let attempt = match self.scheduler.task(&task_id) {
                        Some(t) => t.attempt,
                        None => 0,
                    };
                    let fact = TaskFailed {
                        task_id: task_id.clone(),
                        agent_id,
                        attempt,
                        error: reason,
                        retryable: false,
                        duration_ms: 0,
                    };
                    out.push(self.about_task(event, &task_id, fact, i));
                }
                Decision::FailAgent { agent_id, reason } => {
                    let name = self
                        .scheduler
                        .agent(&agent_id)
                        .map(|a| a.name.clone())
                        .unwrap_or_default();
                    let mut e = event.caused(
                        AgentStatusChanged {
                            agent_id,
                            status: sentinel_events::AgentStatus::Failed,
                            reason: Some(reason),
                        },
                        &self.producer,
                        i,
                        None,
                    );
                    e.subject = format!("agent/{name}");
                    out.push(e);
                }
            }
        }
    }

    /// A fact caused by `event` about a task, under the task's subject and correlation.
    fn about_task(&self, event: &Event, task_id: &str, fact: impl Into<Fact>, i: u32) -> Event {
        let mut e = event.caused(fact, &self.producer, i, None);
        if let Some(t) = self.scheduler.task(task_id) {
            e.subject = t.subject.clone();
            e.correlation_id = t.correlation_id;
        }
        e
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
        self.scheduler.apply(event);
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
        let mut out = self.dispatch(event)?;
        if let Fact::TaskCancelled(c) = &event.fact
            && let Some(agent) = self
                .scheduler
                .task(&c.task_id)
                .and_then(|t| t.agent_id.clone())
        {
            // The agent's workers only read sentinel.tasks: tell them, keyed by agent.
            let mut copy = event.caused(c.clone(), &self.producer, DECISION_INDEX - 1, None);
            copy.subject = format!("agent/{agent}");
            out.push_to(TASKS_TOPIC, copy);
        }
        self.schedule(event, &mut out);
        Ok(out)
    }
}

impl ControllerStage {
    /// `DispatchDecided` (dispatch) → `TaskQueued` for PatchBot.
    fn dispatch(&self, event: &Event) -> Result<Output, HandlerError> {
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
