//! The controller's pure core: a fold over task and agent facts ([`Scheduler::apply`]) and
//! deterministic decisions from the folded state and an event time
//! ([`Scheduler::decide`]). No I/O, no wall clock: live processing and replay make the same
//! decisions from the same facts.
//!
//! * **Registry**: `AgentRegistered` (name, version, capabilities, concurrency) and
//!   `AgentStatusChanged` (active, paused, stopped, failed). The health score is the share
//!   of successful attempts (completed or partial) among the agent's last
//!   [`SchedulerConfig::health_window`] attempts; when it falls below
//!   [`SchedulerConfig::unhealthy_below`] the controller marks the agent failed, and it
//!   gets no work until an operator starts or resumes it (which clears its record).
//! * **Queue**: queued tasks, highest priority first, then in queue order. A task that
//!   names an agent goes to that agent (refused when the agent lacks the task type); a
//!   task with an empty `agent_id` goes to the active agent with the capability, the
//!   best health and the fewest running tasks. Each agent runs at most its
//!   `max_concurrency` attempts; paused, stopped and failed agents get none.
//! * **Attempts**: a `TaskFailed` marked retryable re-queues the task with exponential
//!   backoff and deterministic jitter ([`backoff`]), up to the task's `max_attempts`; then
//!   the controller gives up with a final, non-retryable `TaskFailed`. An attempt with no
//!   result [`SchedulerConfig::timeout_grace`] after its deadline (a lost worker) is failed
//!   by the controller and retried like any other failure.
//! * **Cancellation**: `TaskCancelled` ends a queued task at once; for a running one the
//!   stage forwards the cancellation to the agent's workers, which drop the attempt (and
//!   with it the sandbox).
//!
//! Facts about one task may be read out of order on Kafka (the task's facts are keyed by
//! repository, the worker's by agent): every transition is keyed by attempt and idempotent,
//! and a late fact never reopens a finished attempt or task.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use sentinel_events::envelope::Timestamp;
use sentinel_events::{AgentStatus, Event, Fact, TaskOutcome};
use uuid::Uuid;

/// Knobs of the scheduler. Part of the decision function: change them and replay decides
/// differently.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// How long past an attempt's deadline the controller waits for its result before
    /// failing it (the worker's own timeout normally reports first).
    pub timeout_grace: Duration,
    /// How many recent attempts the health score looks at.
    pub health_window: usize,
    /// The fewest attempts in the window before the score can fail an agent.
    pub health_min_attempts: usize,
    /// An active agent whose score falls below this is marked failed.
    pub unhealthy_below: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            timeout_grace: Duration::from_secs(60),
            health_window: 10,
            health_min_attempts: 5,
            unhealthy_below: 0.3,
        }
    }
}

/// The delay before attempt `failed_attempt + 1`: `base · 2^(failed_attempt−1)` capped at
/// `max`, then "equal jitter" — half fixed, half spread by a hash of the task id and the
/// attempt, so every replay computes the same delay and retries of many tasks do not
/// arrive in lockstep.
pub fn backoff(config: &SchedulerConfig, task_id: &str, failed_attempt: i32) -> Duration {
    let exp = u32::try_from(failed_attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(0);
    let full = config
        .backoff_base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(config.backoff_max);
    let h = Uuid::new_v5(
        &sentinel_events::envelope::EVENT_ID_NAMESPACE,
        format!("backoff/{task_id}/{failed_attempt}").as_bytes(),
    );
    let bits = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]));
    let fraction = (bits >> 11) as f64 / (1u64 << 53) as f64;
    full / 2 + full.mul_f64(fraction / 2.0)
}

/// An agent in the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEntry {
    /// Its id.
    pub agent_id: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Task types it does.
    pub capabilities: BTreeSet<String>,
    /// Attempts it runs at once.
    pub max_concurrency: usize,
    /// Its status.
    pub status: AgentStatus,
    /// Outcomes of its recent attempts (true = completed or partial), oldest first.
    pub recent: VecDeque<bool>,
    /// Tasks it is running (or assigned and waiting to start).
    pub running: BTreeSet<String>,
}

impl AgentEntry {
    /// Share of successes among recent attempts (1.0 with no history).
    pub fn health_score(&self) -> f64 {
        if self.recent.is_empty() {
            return 1.0;
        }
        self.recent.iter().filter(|ok| **ok).count() as f64 / self.recent.len() as f64
    }

    fn free_slots(&self) -> usize {
        self.max_concurrency.saturating_sub(self.running.len())
    }
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for an agent (first attempt or retry).
    Queued,
    /// An attempt is assigned (and possibly started).
    Assigned,
    /// Completed or partial.
    Done(TaskOutcome),
    /// Failed for good (non-retryable, attempts exhausted, or refused).
    Failed,
    /// Cancelled.
    Cancelled,
}

impl Phase {
    /// Whether the task is over.
    pub fn is_final(self) -> bool {
        !matches!(self, Phase::Queued | Phase::Assigned)
    }
}

/// A task as the controller knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEntry {
    /// The task.
    pub task_id: String,
    /// The agent named when queued (empty: any capable agent).
    pub requested_agent: String,
    /// The agent of the current or last attempt.
    pub agent_id: Option<String>,
    /// Task type.
    pub task_type: String,
    /// Priority (higher first).
    pub priority: i32,
    /// Payload.
    pub payload: String,
    /// Per-attempt deadline.
    pub timeout_seconds: i64,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Position in the queue (order of `TaskQueued`).
    pub seq: u64,
    /// Subject and correlation of the `TaskQueued` (kept by facts about the task).
    pub subject: String,
    /// Correlation id of the chain.
    pub correlation_id: Uuid,
    /// Where it is.
    pub phase: Phase,
    /// Highest attempt assigned or started.
    pub attempt: i32,
    /// Attempts that ended (completed, partial or failed).
    pub ended: BTreeSet<i32>,
    /// When the current attempt was assigned (event time) and its start delay.
    pub assigned_at: Option<Timestamp>,
    /// The current attempt's start delay.
    pub delay: Duration,
    /// Event time after which a retry may start.
    pub retry_not_before: Option<Timestamp>,
    /// Last error reported.
    pub last_error: Option<String>,
    /// Kinds of the final result's artifacts (the artifacts themselves stay in the log).
    pub artifact_kinds: Vec<String>,
    /// Duration of the final attempt.
    pub duration_ms: Option<i64>,
    /// Whether a final `TaskFailed` (give-up) was already recorded.
    pub gave_up: bool,
}

/// What the controller decided to do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Hand attempt `attempt` of a task to an agent after `delay`.
    Assign {
        /// The task.
        task_id: String,
        /// The agent.
        agent_id: String,
        /// Attempt number.
        attempt: i32,
        /// Start delay (retry backoff remaining).
        delay: Duration,
    },
    /// The attempt's result is overdue: fail it (retryable).
    TimeOut {
        /// The task.
        task_id: String,
        /// The agent.
        agent_id: String,
        /// Attempt number.
        attempt: i32,
        /// How long past assignment.
        after: Duration,
    },
    /// No more attempts: fail the task for good.
    GiveUp {
        /// The task.
        task_id: String,
        /// The agent.
        agent_id: String,
        /// The last attempt.
        attempt: i32,
        /// Why.
        reason: String,
    },
    /// The task can never run (its agent lacks the capability).
    Refuse {
        /// The task.
        task_id: String,
        /// The agent named.
        agent_id: String,
        /// Why.
        reason: String,
    },
    /// The agent's health score is too low: mark it failed.
    FailAgent {
        /// The agent.
        agent_id: String,
        /// Why.
        reason: String,
    },
}

/// Counts per agent and task type: the aggregation of results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Tasks completed.
    pub completed: u64,
    /// Tasks ended partial.
    pub partial: u64,
    /// Tasks failed for good.
    pub failed: u64,
    /// Tasks cancelled.
    pub cancelled: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    /// Tasks waiting or running.
    pub open: u64,
    /// Sum of final attempts' durations, ms (for a mean).
    pub duration_ms_total: i64,
    /// Artifacts produced, by kind.
    pub artifacts: BTreeMap<String, u64>,
}

/// The folded state.
#[derive(Debug, Clone, Default)]
pub struct Scheduler {
    /// Tuning.
    pub config: SchedulerConfig,
    agents: BTreeMap<String, AgentEntry>,
    tasks: HashMap<String, TaskEntry>,
    /// Tasks the decisions still concern (open, or failed without a recorded give-up), so
    /// deciding costs O(open tasks), not O(history).
    active: BTreeSet<String>,
    /// The latest event time folded: attempts are timed on this monotonic clock, so facts
    /// carrying an old event time (a replayed or late-delivered failure) neither start an
    /// attempt in the past nor time out the attempts already running.
    clock: Option<Timestamp>,
    next_seq: u64,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            ..Scheduler::default()
        }
    }

    /// The registry.
    pub fn agents(&self) -> impl Iterator<Item = &AgentEntry> {
        self.agents.values()
    }

    /// One agent.
    pub fn agent(&self, agent_id: &str) -> Option<&AgentEntry> {
        self.agents.get(agent_id)
    }

    /// How many tasks decisions still concern (queued, assigned, or awaiting a give-up).
    pub fn open_tasks(&self) -> usize {
        self.active.len()
    }

    /// One task.
    pub fn task(&self, task_id: &str) -> Option<&TaskEntry> {
        self.tasks.get(task_id)
    }

    /// Folds one fact. Idempotent per fact; facts about unknown tasks are ignored.
    pub fn apply(&mut self, event: &Event) {
        self.apply_fact(event);
        let task_id = match &event.fact {
            Fact::TaskQueued(f) => &f.task_id,
            Fact::TaskAssigned(f) => &f.task_id,
            Fact::TaskStarted(f) => &f.task_id,
            Fact::TaskCompleted(f) => &f.task_id,
            Fact::TaskFailed(f) => &f.task_id,
            Fact::TaskCancelled(f) => &f.task_id,
            _ => return,
        };
        if let Some(t) = self.tasks.get_mut(task_id) {
            let concerns = !t.phase.is_final() || (t.phase == Phase::Failed && !t.gave_up);
            if concerns {
                self.active.insert(task_id.clone());
            } else {
                self.active.remove(task_id);
                // The payload is only needed to assign attempts.
                t.payload = String::new();
            }
        }
    }

    fn apply_fact(&mut self, event: &Event) {
        let clock = self
            .clock
            .map_or(event.occurred_at, |c| c.max(event.occurred_at));
        self.clock = Some(clock);
        match &event.fact {
            Fact::AgentRegistered(r) => {
                let a = self
                    .agents
                    .entry(r.agent_id.clone())
                    .or_insert_with(|| AgentEntry {
                        agent_id: r.agent_id.clone(),
                        name: String::new(),
                        version: String::new(),
                        capabilities: BTreeSet::new(),
                        max_concurrency: 1,
                        status: AgentStatus::Active,
                        recent: VecDeque::new(),
                        running: BTreeSet::new(),
                    });
                // A re-registration (new version, new capabilities) keeps status and record.
                a.name = r.name.clone();
                a.version = r.version.clone();
                a.capabilities = r.capabilities.iter().cloned().collect();
                a.max_concurrency = usize::try_from(r.max_concurrency.max(1)).unwrap_or(1);
            }
            Fact::AgentStatusChanged(s) => {
                if let Some(a) = self.agents.get_mut(&s.agent_id) {
                    if s.status == AgentStatus::Active && a.status != AgentStatus::Active {
                        // Started or resumed by an operator (or healthy again): a fresh record.
                        a.recent.clear();
                    }
                    a.status = s.status;
                }
            }
            Fact::TaskQueued(q) => {
                if self.tasks.contains_key(&q.task_id) {
                    return;
                }
                self.next_seq += 1;
                self.tasks.insert(
                    q.task_id.clone(),
                    TaskEntry {
                        task_id: q.task_id.clone(),
                        requested_agent: q.agent_id.clone(),
                        agent_id: None,
                        task_type: q.task_type.clone(),
                        priority: q.priority,
                        payload: q.payload.clone(),
                        timeout_seconds: q.timeout_seconds,
                        max_attempts: q.max_attempts.max(1),
                        seq: self.next_seq,
                        subject: event.subject.clone(),
                        correlation_id: event.correlation_id,
                        phase: Phase::Queued,
                        attempt: 0,
                        ended: BTreeSet::new(),
                        assigned_at: None,
                        delay: Duration::ZERO,
                        retry_not_before: None,
                        last_error: None,
                        artifact_kinds: Vec::new(),
                        duration_ms: None,
                        gave_up: false,
                    },
                );
            }
            Fact::TaskAssigned(a) => {
                self.on_attempt(&a.task_id, &a.agent_id, a.attempt, clock);
                if let Some(t) = self.tasks.get_mut(&a.task_id)
                    && t.attempt == a.attempt
                {
                    t.delay = Duration::from_millis(u64::try_from(a.delay_ms).unwrap_or(0));
                }
            }
            Fact::TaskStarted(s) => {
                // Normally after a TaskAssigned (read first or later: idempotent per attempt);
                // a start without one still counts against the agent's slots.
                self.on_attempt(&s.task_id, &s.agent_id, s.attempt, clock);
            }
            Fact::TaskProgressed(_) => {}
            Fact::TaskCompleted(c) => {
                let Some(t) = self.tasks.get_mut(&c.task_id) else {
                    return;
                };
                if t.phase.is_final() {
                    return;
                }
                let attempt = t.attempt.max(1);
                t.ended.insert(attempt);
                t.phase = Phase::Done(c.outcome);
                t.artifact_kinds = c.artifacts.iter().map(|a| a.kind.clone()).collect();
                t.duration_ms = Some(c.duration_ms);
                let task_id = t.task_id.clone();
                self.release(&c.agent_id, &task_id, Some(true));
            }
            Fact::TaskFailed(f) => {
                let Some(t) = self.tasks.get_mut(&f.task_id) else {
                    return;
                };
                if t.phase.is_final() {
                    // A give-up recorded after the task ended, or a late duplicate.
                    if !f.retryable {
                        t.gave_up = true;
                    }
                    return;
                }
                let first_report = t.ended.insert(f.attempt);
                t.last_error = Some(f.error.clone());
                t.duration_ms = Some(f.duration_ms);
                let current = f.attempt >= t.attempt;
                let exhausted = f.attempt >= t.max_attempts;
                if !f.retryable && current {
                    t.phase = Phase::Failed;
                    t.gave_up = true;
                } else if current && t.phase == Phase::Assigned {
                    t.phase = if exhausted {
                        Phase::Failed
                    } else {
                        t.retry_not_before =
                            Some(clock + backoff(&self.config, &f.task_id, f.attempt));
                        Phase::Queued
                    };
                }
                let task_id = t.task_id.clone();
                self.release(&f.agent_id, &task_id, first_report.then_some(false));
            }
            Fact::TaskCancelled(c) => {
                let Some(t) = self.tasks.get_mut(&c.task_id) else {
                    return;
                };
                if t.phase.is_final() {
                    return;
                }
                t.phase = Phase::Cancelled;
                let agent = t.agent_id.clone();
                let task_id = t.task_id.clone();
                if let Some(agent) = agent {
                    self.release(&agent, &task_id, None);
                }
            }
            _ => {}
        }
    }

    fn on_attempt(&mut self, task_id: &str, agent_id: &str, attempt: i32, at: Timestamp) {
        let Some(t) = self.tasks.get_mut(task_id) else {
            return;
        };
        if t.phase.is_final() || attempt < t.attempt || t.ended.contains(&attempt) {
            return;
        }
        if attempt > t.attempt || t.phase == Phase::Queued {
            t.attempt = attempt;
            t.assigned_at = Some(at);
            t.delay = Duration::ZERO;
            t.retry_not_before = None;
        }
        t.phase = Phase::Assigned;
        t.agent_id = Some(agent_id.to_owned());
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.running.insert(task_id.to_owned());
        }
    }

    fn release(&mut self, agent_id: &str, task_id: &str, outcome: Option<bool>) {
        let window = self.config.health_window.max(1);
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.running.remove(task_id);
            if let Some(ok) = outcome {
                a.recent.push_back(ok);
                while a.recent.len() > window {
                    a.recent.pop_front();
                }
            }
        }
    }

    /// The queue: tasks waiting for an agent, in the order they are served (priority
    /// descending, then queue order).
    pub fn queue(&self) -> Vec<&TaskEntry> {
        let mut q: Vec<&TaskEntry> = self
            .active
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .filter(|t| t.phase == Phase::Queued)
            .collect();
        q.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
        q
    }

    /// What to do at event time `now`. Pure: the same state and time give the same list.
    pub fn decide(&self, now: Timestamp) -> Vec<Decision> {
        let now = self.clock.map_or(now, |c| c.max(now));
        let mut out = Vec::new();
        // Agents' health first: a failing agent gets no new work in this round.
        let mut failed_now = BTreeSet::new();
        for a in self.agents.values() {
            if a.status == AgentStatus::Active
                && a.recent.len() >= self.config.health_min_attempts
                && a.health_score() < self.config.unhealthy_below
            {
                failed_now.insert(a.agent_id.clone());
                out.push(Decision::FailAgent {
                    agent_id: a.agent_id.clone(),
                    reason: format!(
                        "health score {:.2} over the last {} attempts is below {:.2}",
                        a.health_score(),
                        a.recent.len(),
                        self.config.unhealthy_below
                    ),
                });
            }
        }
        // Overdue attempts and exhausted tasks, in a stable order.
        for t in self.active.iter().filter_map(|id| self.tasks.get(id)) {
            if t.phase == Phase::Assigned
                && let (Some(at), Some(agent)) = (t.assigned_at, &t.agent_id)
            {
                let deadline = Duration::from_secs(u64::try_from(t.timeout_seconds).unwrap_or(0))
                    + t.delay
                    + self.config.timeout_grace;
                let waited = (now - at).to_std().unwrap_or_default();
                if waited > deadline {
                    out.push(Decision::TimeOut {
                        task_id: t.task_id.clone(),
                        agent_id: agent.clone(),
                        attempt: t.attempt.max(1),
                        after: waited,
                    });
                }
            }
            if t.phase == Phase::Failed && !t.gave_up {
                out.push(Decision::GiveUp {
                    task_id: t.task_id.clone(),
                    agent_id: t.agent_id.clone().unwrap_or_default(),
                    attempt: t.attempt,
                    reason: format!(
                        "gave up after {} attempt(s): {}",
                        t.attempt,
                        t.last_error.as_deref().unwrap_or("failed")
                    ),
                });
            }
        }
        // Assignments, strictly by priority.
        let mut free: BTreeMap<&str, usize> = self
            .agents
            .values()
            .filter(|a| a.status == AgentStatus::Active && !failed_now.contains(&a.agent_id))
            .map(|a| (a.agent_id.as_str(), a.free_slots()))
            .collect();
        for t in self.queue() {
            let chosen = if t.requested_agent.is_empty() {
                self.agents
                    .values()
                    .filter(|a| a.capabilities.contains(&t.task_type))
                    .filter(|a| free.get(a.agent_id.as_str()).is_some_and(|n| *n > 0))
                    .max_by(|a, b| {
                        a.health_score()
                            .total_cmp(&b.health_score())
                            .then(b.running.len().cmp(&a.running.len()))
                            .then(b.agent_id.cmp(&a.agent_id))
                    })
                    .map(|a| a.agent_id.clone())
            } else {
                match self.agents.get(&t.requested_agent) {
                    Some(a) if !a.capabilities.contains(&t.task_type) => {
                        out.push(Decision::Refuse {
                            task_id: t.task_id.clone(),
                            agent_id: a.agent_id.clone(),
                            reason: format!(
                                "agent {} ({}) cannot do {:?}: its capabilities are {:?}",
                                a.name, a.agent_id, t.task_type, a.capabilities
                            ),
                        });
                        None
                    }
                    Some(a) if free.get(a.agent_id.as_str()).is_some_and(|n| *n > 0) => {
                        Some(a.agent_id.clone())
                    }
                    // Unknown (not registered yet), busy, paused, stopped or failed: wait.
                    _ => None,
                }
            };
            if let Some(agent_id) = chosen {
                if let Some(n) = free.get_mut(agent_id.as_str()) {
                    *n -= 1;
                }
                let delay = t
                    .retry_not_before
                    .and_then(|nb| (nb - now).to_std().ok())
                    .unwrap_or_default();
                out.push(Decision::Assign {
                    task_id: t.task_id.clone(),
                    agent_id,
                    attempt: t.attempt + 1,
                    delay,
                });
            }
        }
        out
    }

    /// Results aggregated per agent (by agent id; tasks not yet assigned under `""`).
    pub fn totals_by_agent(&self) -> BTreeMap<String, Totals> {
        self.totals(|t| t.agent_id.clone().unwrap_or_default())
    }

    /// Results aggregated per task type.
    pub fn totals_by_task_type(&self) -> BTreeMap<String, Totals> {
        self.totals(|t| t.task_type.clone())
    }

    fn totals(&self, key: impl Fn(&TaskEntry) -> String) -> BTreeMap<String, Totals> {
        let mut out: BTreeMap<String, Totals> = BTreeMap::new();
        for t in self.tasks.values() {
            let e = out.entry(key(t)).or_default();
            match t.phase {
                Phase::Queued | Phase::Assigned => e.open += 1,
                Phase::Done(TaskOutcome::Partial) => e.partial += 1,
                Phase::Done(_) => e.completed += 1,
                Phase::Failed => e.failed += 1,
                Phase::Cancelled => e.cancelled += 1,
            }
            e.failed_attempts += t
                .ended
                .len()
                .saturating_sub(usize::from(matches!(t.phase, Phase::Done(_))))
                as u64;
            if t.phase.is_final() {
                e.duration_ms_total += t.duration_ms.unwrap_or(0);
            }
            for kind in &t.artifact_kinds {
                *e.artifacts.entry(kind.clone()).or_default() += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use sentinel_events::facts::{
        AgentRegistered, AgentStatusChanged, TaskAssigned, TaskCancelled, TaskCompleted,
        TaskFailed, TaskQueued,
    };

    fn t0() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn at(secs: i64) -> Timestamp {
        t0() + chrono::Duration::seconds(secs)
    }

    fn ev(fact: impl Into<Fact>, secs: i64) -> Event {
        Event::origin(fact, None, "default", "repo", at(secs), "test@0")
    }

    fn agent(name: &str, caps: &[&str], max: i32) -> Event {
        ev(
            AgentRegistered {
                agent_id: name.into(),
                name: name.into(),
                version: "1".into(),
                capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
                max_concurrency: max,
            },
            0,
        )
    }

    fn queued(id: &str, agent: &str, ty: &str, priority: i32, attempts: i32) -> Event {
        ev(
            TaskQueued {
                task_id: id.into(),
                agent_id: agent.into(),
                task_type: ty.into(),
                priority,
                decision_id: None,
                failure_event_id: None,
                payload: "{}".into(),
                timeout_seconds: 60,
                max_attempts: attempts,
            },
            0,
        )
    }

    fn assigned(id: &str, agent: &str, attempt: i32, secs: i64) -> Event {
        ev(
            TaskAssigned {
                task_id: id.into(),
                agent_id: agent.into(),
                attempt,
                task_type: "t".into(),
                payload: "{}".into(),
                timeout_seconds: 60,
                delay_ms: 0,
                priority: 0,
            },
            secs,
        )
    }

    fn failed(id: &str, agent: &str, attempt: i32, retryable: bool, secs: i64) -> Event {
        ev(
            TaskFailed {
                task_id: id.into(),
                agent_id: agent.into(),
                attempt,
                error: "boom".into(),
                retryable,
                duration_ms: 10,
            },
            secs,
        )
    }

    fn completed(id: &str, agent: &str, secs: i64) -> Event {
        ev(
            TaskCompleted {
                task_id: id.into(),
                agent_id: agent.into(),
                outcome: TaskOutcome::Completed,
                duration_ms: 5,
                artifacts: vec![],
                metrics: BTreeMap::new(),
            },
            secs,
        )
    }

    fn status(agent: &str, status: AgentStatus) -> Event {
        ev(
            AgentStatusChanged {
                agent_id: agent.into(),
                status,
                reason: None,
            },
            0,
        )
    }

    fn given(events: &[Event]) -> Scheduler {
        let mut s = Scheduler::default();
        for e in events {
            s.apply(e);
            // Folding twice changes nothing (the runtime folds outputs, then reads them back).
            s.apply(e);
        }
        s
    }

    fn assigns(d: &[Decision]) -> Vec<(String, String, i32)> {
        d.iter()
            .filter_map(|d| match d {
                Decision::Assign {
                    task_id,
                    agent_id,
                    attempt,
                    ..
                } => Some((task_id.clone(), agent_id.clone(), *attempt)),
                _ => None,
            })
            .collect()
    }

    fn a(task: &str, agent: &str, attempt: i32) -> (String, String, i32) {
        (task.into(), agent.into(), attempt)
    }

    #[test]
    fn higher_priority_first_then_queue_order_within_concurrency() {
        let s = given(&[
            agent("w", &["t"], 2),
            queued("low", "w", "t", 0, 1),
            queued("high", "w", "t", 5, 1),
            queued("low2", "w", "t", 0, 1),
            queued("mid", "w", "t", 3, 1),
        ]);
        assert_eq!(
            assigns(&s.decide(at(1))),
            [a("high", "w", 1), a("mid", "w", 1)]
        );
        let ids: Vec<&str> = s.queue().iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["high", "mid", "low", "low2"]);
    }

    #[test]
    fn running_attempts_hold_slots_until_they_end() {
        let mut s = given(&[
            agent("w", &["t"], 1),
            queued("a", "w", "t", 0, 1),
            queued("b", "w", "t", 0, 1),
            assigned("a", "w", 1, 1),
        ]);
        assert_eq!(assigns(&s.decide(at(2))), []);
        assert_eq!(s.open_tasks(), 2);
        s.apply(&completed("a", "w", 3));
        assert_eq!(assigns(&s.decide(at(3))), [a("b", "w", 1)]);
        // Finished tasks leave the decision loop and drop their payload.
        assert_eq!(s.open_tasks(), 1);
        assert_eq!(s.task("a").map(|t| t.payload.as_str()), Some(""));
        assert_eq!(s.totals_by_agent()["w"].completed, 1);
    }

    #[test]
    fn capability_matching_picks_a_capable_healthy_agent_or_refuses() {
        let s = given(&[
            agent("fixer", &["fix_failure"], 1),
            agent("summariser", &["summarise_log"], 1),
            queued("any", "", "summarise_log", 0, 1),
            queued("nobody", "", "translate", 0, 1),
            queued("wrong", "fixer", "summarise_log", 0, 1),
        ]);
        let d = s.decide(at(1));
        assert_eq!(assigns(&d), [a("any", "summariser", 1)]);
        assert!(
            d.iter()
                .any(|d| matches!(d, Decision::Refuse { task_id, .. } if task_id == "wrong")),
            "{d:?}"
        );
        // No agent has `translate` yet: it waits (one may register later).
        assert!(!d.iter().any(
            |d| matches!(d, Decision::Refuse { task_id, .. } | Decision::Assign { task_id, .. } if task_id == "nobody")
        ));
        // Once refused (the TaskFailed is folded), the task is over.
        let mut s = s;
        s.apply(&failed("wrong", "fixer", 0, false, 1));
        assert_eq!(s.task("wrong").map(|t| t.phase), Some(Phase::Failed));
        assert!(
            !s.decide(at(2))
                .iter()
                .any(|d| matches!(d, Decision::GiveUp { .. }))
        );
    }

    #[test]
    fn paused_stopped_and_failed_agents_get_no_work_until_resumed() {
        for st in [
            AgentStatus::Paused,
            AgentStatus::Stopped,
            AgentStatus::Failed,
        ] {
            let mut s = given(&[
                agent("w", &["t"], 1),
                status("w", st),
                queued("x", "w", "t", 0, 1),
            ]);
            assert_eq!(assigns(&s.decide(at(1))), [], "{st:?}");
            s.apply(&status("w", AgentStatus::Active));
            assert_eq!(assigns(&s.decide(at(1))), [a("x", "w", 1)], "{st:?}");
        }
    }

    #[test]
    fn retryable_failures_retry_with_growing_jittered_backoff_then_give_up() {
        let mut s = given(&[agent("w", &["t"], 1), queued("x", "w", "t", 0, 3)]);
        let mut delays = Vec::new();
        for attempt in 1..=3 {
            let now = i64::from(attempt) * 1000;
            let d = s.decide(at(now));
            let Some(Decision::Assign {
                delay, attempt: n, ..
            }) = d.first()
            else {
                panic!("attempt {attempt}: {d:?}");
            };
            assert_eq!(*n, attempt);
            delays.push(*delay);
            s.apply(&assigned("x", "w", attempt, now));
            s.apply(&failed("x", "w", attempt, true, now + 1));
        }
        // First attempt immediately; retries wait base·2^(n−1) with jitter in [½, 1).
        let cfg = SchedulerConfig::default();
        assert_eq!(delays[0], Duration::ZERO);
        for (i, d) in delays.iter().enumerate().skip(1) {
            let full = cfg.backoff_base * 2u32.pow(u32::try_from(i - 1).unwrap_or(0));
            // Decided 999 s after the failure: the remaining delay is what is left of it.
            assert!(*d <= full, "{i}: {d:?}");
        }
        assert_eq!(s.task("x").map(|t| t.phase), Some(Phase::Failed));
        let d = s.decide(at(5000));
        assert!(
            matches!(&d[..], [Decision::GiveUp { attempt: 3, .. }]),
            "{d:?}"
        );
        s.apply(&failed("x", "", 3, false, 5000));
        assert_eq!(s.decide(at(5001)), []);
        assert_eq!(s.totals_by_agent()["w"].failed, 1);
        assert_eq!(s.totals_by_agent()["w"].failed_attempts, 3);
    }

    #[test]
    fn backoff_is_exponential_capped_deterministic_and_jittered() {
        let cfg = SchedulerConfig {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            ..SchedulerConfig::default()
        };
        for n in 1..=10 {
            let full = Duration::from_secs(1u64 << (n - 1)).min(Duration::from_secs(30));
            let d = backoff(&cfg, "task", n);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?} vs {full:?}");
            assert_eq!(d, backoff(&cfg, "task", n));
        }
        // Different tasks spread out.
        let spread: BTreeSet<Duration> = (0..20)
            .map(|i| backoff(&cfg, &format!("t{i}"), 4))
            .collect();
        assert!(spread.len() > 15, "{spread:?}");
    }

    #[test]
    fn a_retry_waits_out_the_rest_of_its_backoff() {
        let mut s = given(&[agent("w", &["t"], 1), queued("x", "w", "t", 0, 2)]);
        s.apply(&assigned("x", "w", 1, 0));
        s.apply(&failed("x", "w", 1, true, 10));
        let full = backoff(&s.config, "x", 1);
        let d = s.decide(at(10));
        assert!(
            matches!(&d[..], [Decision::Assign { attempt: 2, delay, .. }] if *delay == full),
            "{d:?} vs {full:?}"
        );
    }

    #[test]
    fn lost_attempts_time_out_in_event_time_and_are_retried() {
        let mut s = given(&[
            agent("w", &["t"], 1),
            queued("x", "w", "t", 0, 2),
            assigned("x", "w", 1, 0),
        ]);
        // Deadline 60 s + grace 60 s.
        assert_eq!(s.decide(at(119)), []);
        let d = s.decide(at(121));
        assert!(
            matches!(&d[..], [Decision::TimeOut { attempt: 1, .. }]),
            "{d:?}"
        );
        s.apply(&failed("x", "w", 1, true, 121));
        assert_eq!(assigns(&s.decide(at(200))), [a("x", "w", 2)]);
        // The lost worker's late result for attempt 1 does not reopen anything.
        s.apply(&assigned("x", "w", 2, 200));
        s.apply(&failed("x", "w", 1, true, 201));
        assert_eq!(s.task("x").map(|t| t.phase), Some(Phase::Assigned));
        assert_eq!(s.task("x").map(|t| t.attempt), Some(2));
    }

    #[test]
    fn cancellation_ends_queued_and_running_tasks_and_frees_the_slot() {
        let mut s = given(&[
            agent("w", &["t"], 1),
            queued("run", "w", "t", 9, 1),
            queued("wait", "w", "t", 0, 1),
            queued("other", "w", "t", 0, 1),
            assigned("run", "w", 1, 0),
        ]);
        let cancel = |id: &str| {
            ev(
                TaskCancelled {
                    task_id: id.into(),
                    reason: "operator".into(),
                    requested_by: None,
                },
                1,
            )
        };
        s.apply(&cancel("wait"));
        s.apply(&cancel("run"));
        assert_eq!(s.task("run").map(|t| t.phase), Some(Phase::Cancelled));
        assert_eq!(assigns(&s.decide(at(2))), [a("other", "w", 1)]);
        // A result arriving after the cancellation changes nothing.
        s.apply(&completed("run", "w", 3));
        assert_eq!(s.task("run").map(|t| t.phase), Some(Phase::Cancelled));
        assert_eq!(s.totals_by_agent()["w"].cancelled, 1);
    }

    #[test]
    fn health_score_from_recent_outcomes_fails_the_agent_and_a_resume_clears_it() {
        let mut events = vec![agent("w", &["t"], 1)];
        for i in 0..6 {
            let id = format!("t{i}");
            events.push(queued(&id, "w", "t", 0, 1));
            events.push(assigned(&id, "w", 1, i));
            if i == 0 {
                events.push(completed(&id, "w", i));
            } else {
                events.push(failed(&id, "w", 1, false, i));
            }
        }
        events.push(queued("next", "w", "t", 0, 1));
        let mut s = given(&events);
        let score = s.agent("w").map(AgentEntry::health_score).unwrap_or(1.0);
        assert!((score - 1.0 / 6.0).abs() < 1e-9, "{score}");
        let d = s.decide(at(10));
        assert!(matches!(&d[0], Decision::FailAgent { .. }), "{d:?}");
        assert_eq!(assigns(&d), [], "a failing agent gets no new work");
        s.apply(&status("w", AgentStatus::Failed));
        assert_eq!(s.decide(at(11)), []);
        s.apply(&status("w", AgentStatus::Active));
        assert_eq!(s.agent("w").map(AgentEntry::health_score), Some(1.0));
        assert_eq!(assigns(&s.decide(at(12))), [a("next", "w", 1)]);
    }

    #[test]
    fn old_event_times_neither_start_attempts_in_the_past_nor_time_them_out() {
        // The worker registered now; a failure replayed from a year ago queues a task.
        let mut s = given(&[agent("w", &["t"], 1)]);
        let year_ago = ev(
            TaskQueued {
                task_id: "old".into(),
                agent_id: "w".into(),
                task_type: "t".into(),
                priority: 0,
                decision_id: None,
                failure_event_id: None,
                payload: "{}".into(),
                timeout_seconds: 60,
                max_attempts: 1,
            },
            -365 * 86_400,
        );
        s.apply(&year_ago);
        s.apply(&assigned("old", "w", 1, -365 * 86_400));
        // Facts at "now" (t0) arrive: the attempt started on the clock's time, not a year ago.
        assert_eq!(s.decide(at(1)), []);
        assert!(matches!(&s.decide(at(200))[..], [Decision::TimeOut { .. }]));
    }

    #[test]
    fn decisions_are_a_pure_function_of_facts_and_time() {
        let events = [
            agent("a", &["t"], 2),
            agent("b", &["t"], 1),
            queued("1", "", "t", 1, 2),
            queued("2", "", "t", 2, 2),
            queued("3", "", "t", 0, 2),
            queued("4", "", "t", 0, 2),
        ];
        let d1 = given(&events).decide(at(5));
        let d2 = given(&events).decide(at(5));
        assert_eq!(d1, d2);
        assert_eq!(assigns(&d1).len(), 3, "{d1:?}");
    }
}
