//! The controller and SDK workers together, on the embedded log and on Kafka (tansu started
//! by the harness, or `SENTINEL_TEST_KAFKA`): priority and capability matching, retries
//! with backoff, refusal, worker timeouts with give-up, and cancellation that kills the
//! running attempt's sandbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sentinel_agent_sdk::{
    Agent, AgentConfig, AgentError, AgentResult, AgentTask, AgentWorker, ArtifactKind,
    WorkerConfig, agent_id,
};
use sentinel_controller::{ControllerStage, SchedulerConfig};
use sentinel_events::facts::{TaskCancelled, TaskQueued};
use sentinel_events::{Event, Fact};
use sentinel_log::EventLog;
use sentinel_log_summariser::{LogSummariser, TASK_SUMMARISE_LOG};
use sentinel_runtime::{
    DLQ_TOPIC, EVENTS_TOPIC, RunnerConfig, Stage, TASKS_TOPIC, append_events, run_stage, scan_topic,
};
use sentinel_sandbox::{LocalJail, RunSpec, Sandbox};
use tokio_util::sync::CancellationToken;

fn fast() -> RunnerConfig {
    RunnerConfig {
        poll_wait: Duration::from_millis(50),
        retry_min_delay: Duration::from_millis(10),
        ..RunnerConfig::default()
    }
}

/// Fails its first attempt (retryable), succeeds afterwards.
#[derive(Default)]
struct Flaky {
    calls: AtomicU32,
}

#[async_trait]
impl Agent for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn version(&self) -> String {
        "1".into()
    }
    fn capabilities(&self) -> Vec<String> {
        vec!["flaky_work".into()]
    }
    async fn initialize(&mut self, _: &AgentConfig) -> Result<(), AgentError> {
        Ok(())
    }
    async fn execute(&self, task: AgentTask) -> AgentResult {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return AgentResult::failed(&task.id, "dependency briefly down");
        }
        AgentResult::completed(&task.id).artifact(ArtifactKind::Log.inline("log", "ok"))
    }
}

/// Runs the payload's `command` in the local jail, like PatchBot's validation does.
struct Jailed {
    jail: Option<LocalJail>,
    dir: tempfile::TempDir,
}

#[async_trait]
impl Agent for Jailed {
    fn name(&self) -> &'static str {
        "jailed"
    }
    fn version(&self) -> String {
        "1".into()
    }
    fn capabilities(&self) -> Vec<String> {
        vec!["run_command".into()]
    }
    async fn initialize(&mut self, _: &AgentConfig) -> Result<(), AgentError> {
        self.jail = Some(LocalJail::detect().await);
        Ok(())
    }
    async fn execute(&self, task: AgentTask) -> AgentResult {
        let Some(jail) = &self.jail else {
            return AgentResult::failed(&task.id, "not initialised");
        };
        let command = task.payload["command"].as_str().unwrap_or("false");
        let mut spec = RunSpec::new(self.dir.path(), command);
        spec.timeout = Duration::from_secs(3600);
        task.context.progress.report(0.2, "running");
        match jail.run(&spec).await {
            Ok(out) if out.success() => AgentResult::completed(&task.id),
            Ok(out) => AgentResult::failed(&task.id, format!("exit {}", out.exit_code)),
            Err(e) => AgentResult::failed(&task.id, e.to_string()),
        }
    }
}

fn queued(task: &str, agent: &str, ty: &str, priority: i32, payload: serde_json::Value) -> Event {
    queued_with(task, agent, ty, priority, payload, 60, 3)
}

fn queued_with(
    task: &str,
    agent: &str,
    ty: &str,
    priority: i32,
    payload: serde_json::Value,
    timeout_seconds: i64,
    max_attempts: i32,
) -> Event {
    Event::origin(
        TaskQueued {
            task_id: task.into(),
            agent_id: agent.into(),
            task_type: ty.into(),
            priority,
            decision_id: None,
            failure_event_id: None,
            payload: payload.to_string(),
            timeout_seconds,
            max_attempts,
        },
        Some(task),
        "default",
        &format!("repo-{task}"),
        sentinel_events::envelope::now(),
        "api@test",
    )
}

/// Every event on the fact log, once per id.
async fn events(log: &dyn EventLog) -> Vec<Event> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    scan_topic(log, EVENTS_TOPIC, |_, e| {
        if let Ok(e) = e
            && seen.insert(e.event_id)
        {
            out.push(e);
        }
        true
    })
    .await
    .unwrap();
    // Kafka is scanned partition by partition: put facts back in the order they were made.
    out.sort_by_key(|e| e.recorded_at);
    out
}

async fn wait_for<F: Fn(&[Event]) -> bool>(log: &dyn EventLog, what: &str, f: F) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = events(log).await;
        if f(&all) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ended(all: &[Event], task: &str) -> bool {
    all.iter().any(|e| match &e.fact {
        Fact::TaskCompleted(c) => c.task_id == task,
        Fact::TaskFailed(f) => f.task_id == task && !f.retryable,
        _ => false,
    })
}

struct Running {
    shutdown: CancellationToken,
    handles: Vec<tokio::task::JoinHandle<sentinel_runtime::Result<()>>>,
}

impl Running {
    fn new() -> Self {
        Running {
            shutdown: CancellationToken::new(),
            handles: Vec::new(),
        }
    }
    fn spawn<S: Stage>(&mut self, stage: S, log: &Arc<dyn EventLog>) {
        self.handles.push(tokio::spawn(run_stage(
            stage,
            log.clone(),
            fast(),
            self.shutdown.clone(),
        )));
    }
    async fn stop(self) {
        self.shutdown.cancel();
        for h in self.handles {
            h.await.unwrap().unwrap();
        }
    }
}

fn controller() -> ControllerStage {
    ControllerStage::with_scheduler(SchedulerConfig {
        backoff_base: Duration::from_millis(300),
        backoff_max: Duration::from_secs(2),
        ..SchedulerConfig::default()
    })
}

fn worker<A: Agent>(agent: A, log: &Arc<dyn EventLog>, concurrency: usize) -> AgentWorker<A> {
    AgentWorker::new(
        agent,
        log.clone(),
        WorkerConfig {
            max_concurrency: concurrency,
            health_interval: Duration::from_millis(200),
            shutdown_grace: Duration::from_secs(2),
            ..WorkerConfig::default()
        },
    )
}

/// Priority, capability matching, progress, artifacts, retries and refusal.
async fn priority_capabilities_retries(log: Arc<dyn EventLog>) {
    let mut running = Running::new();
    running.spawn(controller(), &log);
    let summariser = agent_id("log-summariser").to_string();
    // Queued before any agent exists: they wait, then run strictly by priority (one slot).
    let log_text =
        "step 1\nerror: tests failed\nGITHUB_TOKEN=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let payload = serde_json::json!({ "log": log_text });
    append_events(
        log.as_ref(),
        EVENTS_TOPIC,
        &[
            queued("low", "", TASK_SUMMARISE_LOG, 0, payload.clone()),
            queued("high", "", TASK_SUMMARISE_LOG, 9, payload.clone()),
            queued("mid", "", TASK_SUMMARISE_LOG, 5, payload.clone()),
            // Named agent without the capability: refused for good.
            queued("wrong", &summariser, "fix_failure", 0, payload.clone()),
        ],
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.spawn(worker(LogSummariser::default(), &log, 1), &log);
    running.spawn(worker(Flaky::default(), &log, 1), &log);
    append_events(
        log.as_ref(),
        EVENTS_TOPIC,
        &[queued("flaky", "", "flaky_work", 0, serde_json::json!({}))],
    )
    .await
    .unwrap();

    let all = wait_for(log.as_ref(), "every task to end", |all| {
        ["low", "mid", "high", "wrong", "flaky"]
            .iter()
            .all(|t| ended(all, t))
    })
    .await;
    running.stop().await;

    // Strict priority on the single slot.
    let started: Vec<&str> = all
        .iter()
        .filter_map(|e| match &e.fact {
            Fact::TaskStarted(s) if s.agent_id == summariser => Some(s.task_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["high", "mid", "low"]);
    // Completed with a redacted report and metrics; progress was reported as facts.
    for t in ["high", "mid", "low"] {
        let c = all
            .iter()
            .find_map(|e| match &e.fact {
                Fact::TaskCompleted(c) if c.task_id == t => Some(c),
                _ => None,
            })
            .unwrap();
        assert_eq!(c.agent_id, summariser);
        assert_eq!(c.metrics["errors"], 1.0);
        let report = c.artifacts[0].content.as_deref().unwrap();
        assert!(report.contains("tests failed") && !report.contains("ghp_0123"));
        assert!(all.iter().any(
            |e| matches!(&e.fact, Fact::TaskProgressed(p) if p.task_id == t && p.message == "summarising")
        ));
    }
    // Refused: the named agent cannot do fix_failure.
    assert!(all.iter().any(|e| matches!(&e.fact,
        Fact::TaskFailed(f) if f.task_id == "wrong" && !f.retryable && f.error.contains("cannot do"))));
    // Retried after a backoff, then completed.
    let flaky: Vec<&Fact> = all
        .iter()
        .map(|e| &e.fact)
        .filter(|f| match f {
            Fact::TaskAssigned(a) => a.task_id == "flaky",
            Fact::TaskFailed(x) => x.task_id == "flaky",
            Fact::TaskCompleted(x) => x.task_id == "flaky",
            _ => false,
        })
        .collect();
    assert!(
        matches!(
            &flaky[..],
            [
                Fact::TaskAssigned(a1),
                Fact::TaskFailed(f1),
                Fact::TaskAssigned(a2),
                Fact::TaskCompleted(_)
            ] if a1.attempt == 1 && a1.delay_ms == 0 && f1.retryable
                && a2.attempt == 2 && (150..=300).contains(&a2.delay_ms)
        ),
        "{flaky:#?}"
    );
    // Assignments also went to the agents' task topic, keyed by agent.
    let mut on_tasks = BTreeMap::<String, usize>::new();
    scan_topic(log.as_ref(), TASKS_TOPIC, |s, e| {
        if let Ok(Event {
            fact: Fact::TaskAssigned(a),
            ..
        }) = e
        {
            assert_eq!(s.record.key, format!("default/agent/{}", a.agent_id));
            *on_tasks.entry(a.task_id).or_default() += 1;
        }
        true
    })
    .await
    .unwrap();
    assert_eq!(on_tasks.get("flaky").copied(), Some(2), "{on_tasks:?}");
    assert!(!on_tasks.contains_key("wrong"));
    // Both workers registered themselves.
    let registered: HashSet<&str> = all
        .iter()
        .filter_map(|e| match &e.fact {
            Fact::AgentRegistered(r) => Some(r.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(registered, HashSet::from(["log-summariser", "flaky"]));
}

/// Pids of host processes whose command line contains `marker`.
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .count()
}

/// Cancelling a running task kills its sandboxed processes; a task past its deadline is
/// failed by the worker and given up by the controller (one attempt allowed).
async fn cancellation_and_timeouts(log: Arc<dyn EventLog>) {
    let mut running = Running::new();
    running.spawn(controller(), &log);
    let jailed = Jailed {
        jail: None,
        dir: tempfile::tempdir().unwrap(),
    };
    running.spawn(worker(jailed, &log, 2), &log);
    let marker = format!("sentinel-cancel-{}", uuid::Uuid::new_v4().simple());
    let slow = format!("marker-slow-{}", uuid::Uuid::new_v4().simple());
    let command = |m: &str| format!("sh -c 'sleep 1000; :' {m} & wait");
    append_events(
        log.as_ref(),
        EVENTS_TOPIC,
        &[
            queued_with(
                "cancel-me",
                "",
                "run_command",
                0,
                serde_json::json!({ "command": command(&marker) }),
                600,
                3,
            ),
            queued_with(
                "too-slow",
                "",
                "run_command",
                0,
                serde_json::json!({ "command": command(&slow) }),
                1,
                1,
            ),
        ],
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_with(&marker) == 0 {
        assert!(
            Instant::now() < deadline,
            "the sandboxed command never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancel = Event::origin(
        TaskCancelled {
            task_id: "cancel-me".into(),
            reason: "operator".into(),
            requested_by: Some("test".into()),
        },
        Some("cancel-me"),
        "default",
        "repo-cancel-me",
        sentinel_events::envelope::now(),
        "api@test",
    );
    append_events(log.as_ref(), EVENTS_TOPIC, &[cancel])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with(&marker) > 0 {
        assert!(
            Instant::now() < deadline,
            "cancelled task's sandbox still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = wait_for(log.as_ref(), "the slow task to be given up", |all| {
        ended(all, "too-slow")
    })
    .await;
    assert_eq!(
        processes_with(&slow),
        0,
        "timed-out attempt's sandbox still runs"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    let all_after = events(log.as_ref()).await;
    // No result for the cancelled task, and no retry of it.
    assert!(!all_after.iter().any(|e| matches!(&e.fact,
        Fact::TaskCompleted(c) if c.task_id == "cancel-me")));
    assert!(!all_after.iter().any(|e| matches!(&e.fact,
        Fact::TaskAssigned(a) if a.task_id == "cancel-me" && a.attempt > 1)));
    let failures: Vec<(bool, String)> = all
        .iter()
        .filter_map(|e| match &e.fact {
            Fact::TaskFailed(f) if f.task_id == "too-slow" => Some((f.retryable, f.error.clone())),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&failures[..], [(true, t), (false, g)] if t.contains("timed out") && g.contains("gave up after 1")),
        "{failures:?}"
    );
}

async fn sqlite() -> (Arc<dyn EventLog>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = sentinel_log::sqlite::SqliteLog::open(&dir.path().join("log.db"))
        .await
        .unwrap();
    for t in [EVENTS_TOPIC, TASKS_TOPIC, DLQ_TOPIC] {
        log.ensure_topic(t, 1).await.unwrap();
    }
    (Arc::new(log), dir)
}

async fn kafka() -> (Arc<dyn EventLog>, sentinel_log::testing::TestBroker) {
    let broker = sentinel_log::testing::TestBroker::start_async()
        .await
        .expect("broker");
    let log = broker.connect().await.expect("connect");
    for t in [EVENTS_TOPIC, TASKS_TOPIC, DLQ_TOPIC] {
        log.ensure_topic(t, 3).await.expect("topic");
    }
    (Arc::new(log), broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_capabilities_retries_sqlite() {
    let (log, _dir) = sqlite().await;
    priority_capabilities_retries(log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_capabilities_retries_kafka() {
    let (log, _broker) = kafka().await;
    priority_capabilities_retries(log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_and_timeouts_sqlite() {
    let (log, _dir) = sqlite().await;
    cancellation_and_timeouts(log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_and_timeouts_kafka() {
    let (log, _broker) = kafka().await;
    cancellation_and_timeouts(log).await;
}

/// Metric compliance: the controller and an SDK worker, run by the stage runtime on the
/// embedded log, emit the metrics the dashboards rely on
/// (`sentinel_runtime::metrics::required::{RUNTIME, CONTROLLER, AGENT}`) with their labels:
/// a task whose first attempt fails is assigned, retried and completed; a task of a type
/// the agent lacks is refused.
#[test]
fn the_controller_emits_its_required_metrics() {
    use sentinel_runtime::metrics::{names, required};

    let (all, exposition) = sentinel_runtime::testing::metrics::capture(async {
        let (log, _dir) = sqlite().await;
        let mut running = Running::new();
        running.spawn(controller(), &log);
        running.spawn(worker(Flaky::default(), &log, 1), &log);
        let flaky = agent_id("flaky").to_string();
        append_events(
            log.as_ref(),
            EVENTS_TOPIC,
            &[
                queued("m-retry", &flaky, "flaky_work", 0, serde_json::json!({})),
                queued(
                    "m-refuse",
                    &flaky,
                    "summarise_log",
                    0,
                    serde_json::json!({}),
                ),
            ],
        )
        .await
        .unwrap();
        let all = wait_for(log.as_ref(), "both tasks ended", |all| {
            ended(all, "m-retry") && ended(all, "m-refuse")
        })
        .await;
        running.stop().await;
        all
    });
    assert!(
        all.iter()
            .any(|e| matches!(&e.fact, Fact::TaskCompleted(c) if c.task_id == "m-retry"))
    );
    exposition.assert_emitted(required::RUNTIME, &[("stage", "controller")]);
    exposition.assert_emitted(required::CONTROLLER, &[]);
    exposition.assert_emitted(required::RUNTIME, &[("stage", "flaky")]);
    exposition.assert_emitted(required::AGENT, &[("agent", "flaky")]);
    let value = |name, labels: &[(&str, &str)]| exposition.value(name, labels).unwrap_or(-1.0);
    let decisions = |d| value(names::CONTROLLER_DECISIONS, &[("decision", d)]);
    assert_eq!(decisions("assigned"), 1.0);
    assert_eq!(decisions("retried"), 1.0);
    assert_eq!(decisions("refused"), 1.0);
    let tasks = |s| value(names::AGENT_TASKS, &[("agent", "flaky"), ("status", s)]);
    assert_eq!(tasks("failed"), 1.0);
    assert_eq!(tasks("completed"), 1.0);
    assert_eq!(
        value(names::AGENT_TASK_DURATION, &[("agent", "flaky")]),
        2.0
    );
}
