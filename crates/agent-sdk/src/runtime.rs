//! The worker runtime: runs an [`Agent`]'s attempts from `sentinel.tasks` and records what
//! happened as facts on `sentinel.events`.
//!
//! The worker is a [`Stage`] reading [`TASKS_TOPIC`] in the consumer group
//! `sentinel-<agent name>`. Handling a `TaskAssigned` only *starts* the attempt (in its own
//! tokio task) and returns, so the worker keeps reading — that is how it sees a
//! `TaskCancelled` for an attempt it is running. The attempt appends its own facts
//! (`TaskStarted`, `TaskProgressed`…, `TaskCompleted`/`TaskFailed`) with ids derived from
//! the assignment, so a redelivered assignment produces the same ids. An assignment's
//! offset is committed when the attempt starts, not when it ends: a worker that dies
//! mid-attempt loses the attempt, and the controller's timeout (in event time) fails it
//! and schedules a retry. At-least-once on the attempt level, without holding the
//! partition hostage to a long task.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sentinel_events::facts::{
    AgentRegistered, AgentStatusChanged, TaskAssigned, TaskCompleted, TaskFailed, TaskProgressed,
    TaskStarted,
};
use sentinel_events::{AgentStatus, DEFAULT_TENANT, Event, Fact, TaskOutcome};
use sentinel_log::EventLog;
use sentinel_runtime::metrics::names;
use sentinel_runtime::{EVENTS_TOPIC, HandlerError, Output, Stage, TASKS_TOPIC, append_events};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::{Agent, AgentConfig, AgentResult, AgentTask, Health, Progress, ProgressUpdate};
use crate::{ResultStatus, TaskContext};

/// How an attempt ended, as the runtime saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Execution {
    /// The agent returned a result.
    Finished(AgentResult),
    /// The deadline expired first; the attempt was dropped.
    TimedOut(Duration),
    /// The attempt was cancelled; it was dropped.
    Cancelled,
}

/// Runs one attempt under its deadline and cancellation token: the building block of the
/// worker, usable on its own (CLIs, tests). Progress goes to the task's [`Progress`].
pub async fn execute_with_limits<A: Agent + ?Sized>(agent: &A, task: AgentTask) -> Execution {
    let timeout = task.timeout;
    let cancelled = task.context.cancelled.clone();
    let result = tokio::select! {
        biased;
        () = cancelled.cancelled() => Execution::Cancelled,
        r = tokio::time::timeout(timeout, agent.execute(task)) => match r {
            Ok(result) => Execution::Finished(result),
            Err(_) => Execution::TimedOut(timeout),
        },
    };
    // Whatever the agent started for this attempt and still watches the token: stop it.
    cancelled.cancel();
    result
}

/// Settings of an [`AgentWorker`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's name, recorded in `TaskStarted.worker`.
    pub worker: String,
    /// Attempts run at once by this worker.
    pub max_concurrency: usize,
    /// Upper bound of any attempt's deadline, whatever the task asks for.
    pub max_timeout: Duration,
    /// How often [`Agent::health`] is checked.
    pub health_interval: Duration,
    /// How long running attempts may take to finish at shutdown before they are cancelled.
    pub shutdown_grace: Duration,
    /// The agent's own settings, passed to [`Agent::initialize`].
    pub settings: serde_json::Value,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker: format!("worker-{}", std::process::id()),
            max_concurrency: 1,
            max_timeout: Duration::from_secs(3600),
            health_interval: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            settings: serde_json::Value::Null,
        }
    }
}

/// Progress facts kept per attempt (later reports are dropped, the attempt goes on).
const MAX_PROGRESS_FACTS: u32 = 1000;
/// The `caused` index of an attempt's final fact.
const FINAL_INDEX: u32 = 1_000_000;

/// Shared between the worker and its attempts.
struct Shared<A> {
    agent: A,
    log: Arc<dyn EventLog>,
    producer: String,
    worker: String,
    agent_id: String,
    slots: Semaphore,
    max_timeout: Duration,
    /// Cancellation tokens of attempts started or waiting, by task id.
    running: Mutex<HashMap<String, CancellationToken>>,
}

/// Runs an [`Agent`] as a stage on [`TASKS_TOPIC`] (see the module docs).
pub struct AgentWorker<A: Agent> {
    shared: Arc<Shared<A>>,
    config: WorkerConfig,
    attempts: JoinSet<()>,
    /// (task, attempt) pairs already started by this worker (redelivery guard).
    started: HashSet<(String, i32)>,
    health: Option<tokio::task::JoinHandle<()>>,
    stop_health: CancellationToken,
}

impl<A: Agent> AgentWorker<A> {
    /// Wraps `agent`; it is initialised in [`Stage::on_start`]. Facts go to `log`.
    pub fn new(agent: A, log: Arc<dyn EventLog>, config: WorkerConfig) -> Self {
        let agent_id = crate::agent_id(agent.name()).to_string();
        let producer = sentinel_runtime::producer(agent.name());
        let shared = Arc::new(Shared {
            agent,
            log,
            producer,
            worker: config.worker.clone(),
            agent_id,
            slots: Semaphore::new(config.max_concurrency.max(1)),
            max_timeout: config.max_timeout,
            running: Mutex::new(HashMap::new()),
        });
        AgentWorker {
            shared,
            config,
            attempts: JoinSet::new(),
            started: HashSet::new(),
            health: None,
            stop_health: CancellationToken::new(),
        }
    }

    /// The agent's id.
    pub fn agent_id(&self) -> &str {
        &self.shared.agent_id
    }

    /// The `AgentRegistered` fact this worker appends at start (idempotent per name and
    /// version).
    pub fn registration(&self) -> Event {
        let agent = &self.shared.agent;
        let version = agent.version();
        Event::origin(
            AgentRegistered {
                agent_id: self.shared.agent_id.clone(),
                name: agent.name().to_owned(),
                version: version.clone(),
                capabilities: agent.capabilities(),
                max_concurrency: i32::try_from(self.config.max_concurrency).unwrap_or(i32::MAX),
            },
            Some(&format!("agent/{}/{version}", agent.name())),
            DEFAULT_TENANT,
            &format!("agent/{}", agent.name()),
            sentinel_events::envelope::now(),
            &self.shared.producer,
        )
    }

    fn start_attempt(&mut self, event: &Event, a: &TaskAssigned) {
        if !self.started.insert((a.task_id.clone(), a.attempt)) {
            return;
        }
        let cancel = CancellationToken::new();
        lock(&self.shared.running).insert(a.task_id.clone(), cancel.clone());
        let shared = Arc::clone(&self.shared);
        let event = event.clone();
        let a = a.clone();
        let span = info_span!(
            "agent_task",
            agent = shared.agent.name(),
            task_id = %a.task_id,
            attempt = a.attempt,
            task_type = %a.task_type,
            correlation_id = %event.correlation_id,
        );
        self.attempts
            .spawn(async move { run_attempt(shared, event, a, cancel).await }.instrument(span));
    }

    fn cancel(&self, task_id: &str) {
        if let Some(token) = lock(&self.shared.running).get(task_id) {
            info!(task_id, "Cancelling running attempt.");
            token.cancel();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Appends `events`, logging (not failing) when the log refuses: the controller's timeout
/// covers an attempt whose facts were lost.
async fn append(shared: &Shared<impl Agent>, events: &[Event]) {
    if let Err(error) = append_events(shared.log.as_ref(), EVENTS_TOPIC, events).await {
        warn!(%error, "Appending agent facts failed.");
    }
}

async fn run_attempt<A: Agent>(
    shared: Arc<Shared<A>>,
    event: Event,
    a: TaskAssigned,
    cancel: CancellationToken,
) {
    let agent_name = shared.agent.name();
    let ended = |shared: &Shared<A>| {
        lock(&shared.running).remove(&a.task_id);
    };
    // Retry backoff, then a free slot; both give way to cancellation.
    let delay = Duration::from_millis(u64::try_from(a.delay_ms).unwrap_or(0));
    let permit = tokio::select! {
        () = cancel.cancelled() => None,
        p = async {
            tokio::time::sleep(delay).await;
            shared.slots.acquire().await.ok()
        } => p,
    };
    let Some(_permit) = permit else {
        ended(&shared);
        return;
    };
    let timeout = Duration::from_secs(u64::try_from(a.timeout_seconds).unwrap_or(0))
        .min(shared.max_timeout)
        .max(Duration::from_millis(1));
    let now = sentinel_events::envelope::now;
    append(
        &shared,
        &[event.caused(
            TaskStarted {
                task_id: a.task_id.clone(),
                agent_id: shared.agent_id.clone(),
                attempt: a.attempt,
                worker: shared.worker.clone(),
            },
            &shared.producer,
            0,
            Some(now()),
        )],
    )
    .await;
    metrics::gauge!(names::AGENT_TASKS_RUNNING, "agent" => agent_name).increment(1.0);

    let (progress, mut progress_rx) = Progress::channel();
    let payload = serde_json::from_str(&a.payload)
        .unwrap_or_else(|_| serde_json::Value::String(a.payload.clone()));
    let task = AgentTask {
        id: a.task_id.clone(),
        task_type: a.task_type.clone(),
        context: TaskContext {
            attempt: u32::try_from(a.attempt).unwrap_or(1),
            agent_id: shared.agent_id.clone(),
            priority: a.priority,
            progress,
            cancelled: cancel.clone(),
        },
        payload,
        timeout,
    };
    let started = Instant::now();
    let mut index = 0u32;
    let progress_fact = |u: ProgressUpdate, index: u32| {
        event.caused(
            TaskProgressed {
                task_id: a.task_id.clone(),
                progress: u.fraction,
                message: u.message,
            },
            &shared.producer,
            index,
            Some(now()),
        )
    };
    let execution = {
        let exec = execute_with_limits(&shared.agent, task);
        tokio::pin!(exec);
        loop {
            tokio::select! {
                r = &mut exec => break r,
                Some(u) = progress_rx.recv() => {
                    if index < MAX_PROGRESS_FACTS {
                        index += 1;
                        append(&shared, &[progress_fact(u, index)]).await;
                    }
                }
            }
        }
    };
    let mut late = Vec::new();
    while let Ok(u) = progress_rx.try_recv() {
        if index < MAX_PROGRESS_FACTS {
            index += 1;
            late.push(progress_fact(u, index));
        }
    }
    if !late.is_empty() {
        append(&shared, &late).await;
    }
    let elapsed = started.elapsed();
    let duration_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
    metrics::gauge!(names::AGENT_TASKS_RUNNING, "agent" => agent_name).decrement(1.0);
    metrics::histogram!(names::AGENT_TASK_DURATION, "agent" => agent_name)
        .record(elapsed.as_secs_f64());
    let failed = |error: String, retryable: bool| {
        Fact::TaskFailed(TaskFailed {
            task_id: a.task_id.clone(),
            agent_id: shared.agent_id.clone(),
            attempt: a.attempt,
            error,
            retryable,
            duration_ms,
        })
    };
    let (status, fact) = match execution {
        Execution::Finished(r) => match r.status {
            ResultStatus::Failed => (
                "failed",
                Some(failed(
                    r.error_message.unwrap_or_else(|| "failed".into()),
                    r.retryable,
                )),
            ),
            ok => {
                let mut artifacts = r.artifacts;
                if let Some(reason) = r.error_message.filter(|_| ok == ResultStatus::Partial) {
                    artifacts.push(crate::ArtifactKind::Report.inline("reason", reason));
                }
                let outcome = if ok == ResultStatus::Completed {
                    TaskOutcome::Completed
                } else {
                    TaskOutcome::Partial
                };
                (
                    outcome.as_str(),
                    Some(Fact::TaskCompleted(TaskCompleted {
                        task_id: a.task_id.clone(),
                        agent_id: shared.agent_id.clone(),
                        outcome,
                        duration_ms,
                        artifacts,
                        metrics: r.metrics,
                    })),
                )
            }
        },
        Execution::TimedOut(t) => (
            "timed_out",
            Some(failed(
                format!("timed out after {:.1}s", t.as_secs_f64()),
                true,
            )),
        ),
        // The task's TaskCancelled is its terminal fact; a shutdown cancels with a
        // retryable failure instead (see `on_shutdown`).
        Execution::Cancelled => ("cancelled", None),
    };
    metrics::counter!(names::AGENT_TASKS, "agent" => agent_name, "status" => status).increment(1);
    info!(status, duration_ms, "Attempt ended.");
    if let Some(fact) = fact {
        let e = event.caused(fact, &shared.producer, FINAL_INDEX, Some(now()));
        append(&shared, &[e]).await;
    }
    ended(&shared);
}

/// Appends `AgentStatusChanged` whenever the health check flips between usable and not.
async fn watch_health<A: Agent>(shared: Arc<Shared<A>>, every: Duration, stop: CancellationToken) {
    let mut last_ok = true;
    let name = shared.agent.name();
    loop {
        let health = shared.agent.health().await;
        metrics::gauge!(names::AGENT_HEALTH, "agent" => name).set(health.score());
        let ok = !matches!(health, Health::Unhealthy(_));
        if ok != last_ok {
            let (status, reason) = match &health {
                Health::Unhealthy(r) => (AgentStatus::Failed, format!("health check: {r}")),
                _ => (AgentStatus::Active, "health check passes again".to_owned()),
            };
            warn!(agent = name, status = status.as_str(), %reason, "Agent health changed.");
            let e = Event::origin(
                AgentStatusChanged {
                    agent_id: shared.agent_id.clone(),
                    status,
                    reason: Some(reason),
                },
                None,
                DEFAULT_TENANT,
                &format!("agent/{name}"),
                sentinel_events::envelope::now(),
                &shared.producer,
            );
            append(&shared, &[e]).await;
            last_ok = ok;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[async_trait]
impl<A: Agent> Stage for AgentWorker<A> {
    fn name(&self) -> &'static str {
        self.shared.agent.name()
    }

    fn input_topic(&self) -> &'static str {
        TASKS_TOPIC
    }

    async fn on_start(&mut self) -> Result<(), HandlerError> {
        let config = AgentConfig {
            worker: self.config.worker.clone(),
            settings: self.config.settings.clone(),
        };
        let shared = Arc::get_mut(&mut self.shared).ok_or_else(|| {
            HandlerError::Poison("agent already shared before initialisation".into())
        })?;
        shared
            .agent
            .initialize(&config)
            .await
            .map_err(|e| HandlerError::Poison(e.to_string()))?;
        append_events(
            self.shared.log.as_ref(),
            EVENTS_TOPIC,
            &[self.registration()],
        )
        .await
        .map_err(|e| HandlerError::Transient(e.to_string()))?;
        self.health = Some(tokio::spawn(watch_health(
            Arc::clone(&self.shared),
            self.config.health_interval,
            self.stop_health.clone(),
        )));
        info!(agent = self.shared.agent.name(), worker = %self.config.worker, "Agent worker started.");
        Ok(())
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        // Reap finished attempts so the set does not grow.
        while self.attempts.try_join_next().is_some() {}
        match &event.fact {
            Fact::TaskAssigned(a) if a.agent_id == self.shared.agent_id => {
                self.start_attempt(event, a);
            }
            Fact::TaskCancelled(c) => self.cancel(&c.task_id),
            _ => {}
        }
        Ok(Output::none())
    }

    async fn on_shutdown(&mut self) {
        let grace = self.config.shutdown_grace;
        let drained = tokio::time::timeout(grace, async {
            while self.attempts.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            let running: Vec<(String, CancellationToken)> = lock(&self.shared.running)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            warn!(
                running = running.len(),
                "Shutdown grace expired; cancelling running attempts."
            );
            let ids: HashMap<String, i32> = self.started.iter().cloned().collect();
            for (task_id, token) in &running {
                token.cancel();
                let attempt = ids.get(task_id).copied().unwrap_or(1);
                let e = Event::origin(
                    TaskFailed {
                        task_id: task_id.clone(),
                        agent_id: self.shared.agent_id.clone(),
                        attempt,
                        error: "worker shut down before the attempt finished".into(),
                        retryable: true,
                        duration_ms: 0,
                    },
                    Some(&format!("shutdown/{task_id}/{attempt}")),
                    DEFAULT_TENANT,
                    &format!("agent/{}", self.shared.agent.name()),
                    sentinel_events::envelope::now(),
                    &self.shared.producer,
                );
                append(&self.shared, &[e]).await;
            }
            while self.attempts.join_next().await.is_some() {}
        }
        self.stop_health.cancel();
        if let Some(h) = self.health.take() {
            let _ = h.await;
        }
        self.shared.agent.cleanup().await;
        info!(agent = self.shared.agent.name(), "Agent worker stopped.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    struct Sleepy;

    #[async_trait]
    impl Agent for Sleepy {
        fn name(&self) -> &'static str {
            "sleepy"
        }
        fn version(&self) -> String {
            "0".into()
        }
        fn capabilities(&self) -> Vec<String> {
            vec!["sleep".into()]
        }
        async fn initialize(&mut self, _: &AgentConfig) -> crate::Result<()> {
            Ok(())
        }
        async fn execute(&self, task: AgentTask) -> AgentResult {
            let ms = task.payload["ms"].as_u64().unwrap_or(0);
            task.context.progress.report(0.1, "sleeping");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            AgentResult::completed(&task.id)
        }
    }

    fn task(ms: u64, timeout: Duration) -> (AgentTask, mpsc::UnboundedReceiver<ProgressUpdate>) {
        AgentTask::standalone("sleep", serde_json::json!({ "ms": ms }), timeout)
    }

    #[tokio::test]
    async fn finishes_times_out_or_is_cancelled() {
        let (t, mut rx) = task(1, Duration::from_secs(5));
        let id = t.id.clone();
        assert_eq!(
            execute_with_limits(&Sleepy, t).await,
            Execution::Finished(AgentResult::completed(&id))
        );
        assert_eq!(
            rx.try_recv().map(|u| u.message).ok().as_deref(),
            Some("sleeping")
        );

        let (t, _rx) = task(10_000, Duration::from_millis(50));
        let started = Instant::now();
        assert_eq!(
            execute_with_limits(&Sleepy, t).await,
            Execution::TimedOut(Duration::from_millis(50))
        );
        assert!(started.elapsed() < Duration::from_secs(5));

        let (t, _rx) = task(10_000, Duration::from_secs(60));
        let token = t.context.cancelled.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            token.cancel();
        });
        assert_eq!(execute_with_limits(&Sleepy, t).await, Execution::Cancelled);
    }
}
