//! The worker runtime on the embedded log: facts of an attempt, health changes, graceful
//! shutdown (grace, then cancellation recorded as a retryable failure) and cleanup.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sentinel_agent_sdk::{
    Agent, AgentConfig, AgentError, AgentResult, AgentTask, AgentWorker, Health, WorkerConfig,
};
use sentinel_events::facts::TaskAssigned;
use sentinel_events::{AgentStatus, Event, Fact};
use sentinel_log::EventLog;
use sentinel_runtime::{
    DLQ_TOPIC, EVENTS_TOPIC, RunnerConfig, TASKS_TOPIC, append_events, run_stage, scan_topic,
};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Probe {
    healthy: Arc<AtomicBool>,
    cleaned: Arc<AtomicBool>,
}

#[async_trait]
impl Agent for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn version(&self) -> String {
        "2".into()
    }
    fn capabilities(&self) -> Vec<String> {
        vec!["probe".into()]
    }
    async fn initialize(&mut self, config: &AgentConfig) -> Result<(), AgentError> {
        assert_eq!(config.settings["x"], 1);
        self.healthy.store(true, Ordering::SeqCst);
        Ok(())
    }
    async fn execute(&self, task: AgentTask) -> AgentResult {
        let ms = task.payload["ms"].as_u64().unwrap_or(0);
        task.context.progress.report(0.5, "half");
        tokio::time::sleep(Duration::from_millis(ms)).await;
        AgentResult::completed(&task.id).metric("ms", ms as f64)
    }
    async fn cleanup(&self) {
        self.cleaned.store(true, Ordering::SeqCst);
    }
    async fn health(&self) -> Health {
        if self.healthy.load(Ordering::SeqCst) {
            Health::Healthy
        } else {
            Health::Unhealthy("probe says no".into())
        }
    }
}

fn assignment(task: &str, ms: u64) -> Event {
    Event::origin(
        TaskAssigned {
            task_id: task.into(),
            agent_id: sentinel_agent_sdk::agent_id("probe").to_string(),
            attempt: 1,
            task_type: "probe".into(),
            payload: serde_json::json!({ "ms": ms }).to_string(),
            timeout_seconds: 60,
            delay_ms: 0,
            priority: 0,
        },
        Some(task),
        "default",
        "agent/probe",
        sentinel_events::envelope::now(),
        "controller@test",
    )
}

async fn facts(log: &dyn EventLog) -> Vec<Fact> {
    let mut out = Vec::new();
    scan_topic(log, EVENTS_TOPIC, |_, e| {
        out.extend(e.ok().map(|e| e.fact));
        true
    })
    .await
    .unwrap();
    out
}

async fn wait_for(log: &dyn EventLog, f: impl Fn(&[Fact]) -> bool) -> Vec<Fact> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = facts(log).await;
        if f(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "{all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_health_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let log = sentinel_log::sqlite::SqliteLog::open(&dir.path().join("log.db"))
        .await
        .unwrap();
    for t in [EVENTS_TOPIC, TASKS_TOPIC, DLQ_TOPIC] {
        log.ensure_topic(t, 1).await.unwrap();
    }
    let log: Arc<dyn EventLog> = Arc::new(log);
    let agent = Probe::default();
    let healthy = agent.healthy.clone();
    let cleaned = agent.cleaned.clone();
    let worker = AgentWorker::new(
        agent,
        log.clone(),
        WorkerConfig {
            worker: "w1".into(),
            max_concurrency: 2,
            health_interval: Duration::from_millis(50),
            shutdown_grace: Duration::from_millis(300),
            settings: serde_json::json!({ "x": 1 }),
            ..WorkerConfig::default()
        },
    );
    let shutdown = CancellationToken::new();
    let config = RunnerConfig {
        poll_wait: Duration::from_millis(50),
        ..RunnerConfig::default()
    };
    let task = tokio::spawn(run_stage(worker, log.clone(), config, shutdown.clone()));

    // One quick attempt: started, progressed, completed with its metric.
    append_events(log.as_ref(), TASKS_TOPIC, &[assignment("quick", 10)])
        .await
        .unwrap();
    let all = wait_for(log.as_ref(), |all| {
        all.iter()
            .any(|f| matches!(f, Fact::TaskCompleted(c) if c.task_id == "quick"))
    })
    .await;
    assert!(all.iter().any(|f| matches!(f, Fact::AgentRegistered(r) if r.name == "probe" && r.version == "2" && r.max_concurrency == 2)));
    assert!(
        all.iter()
            .any(|f| matches!(f, Fact::TaskStarted(s) if s.task_id == "quick" && s.worker == "w1"))
    );
    assert!(all.iter().any(
        |f| matches!(f, Fact::TaskProgressed(p) if p.task_id == "quick" && p.progress == 0.5)
    ));
    assert!(
        all.iter()
            .any(|f| matches!(f, Fact::TaskCompleted(c) if c.metrics["ms"] == 10.0))
    );

    // Health flips are recorded both ways.
    healthy.store(false, Ordering::SeqCst);
    wait_for(log.as_ref(), |all| {
        all.iter()
            .any(|f| matches!(f, Fact::AgentStatusChanged(s) if s.status == AgentStatus::Failed))
    })
    .await;
    healthy.store(true, Ordering::SeqCst);
    wait_for(log.as_ref(), |all| {
        all.iter()
            .any(|f| matches!(f, Fact::AgentStatusChanged(s) if s.status == AgentStatus::Active))
    })
    .await;

    // A long attempt outlives the shutdown grace: cancelled, recorded as retryable.
    append_events(log.as_ref(), TASKS_TOPIC, &[assignment("long", 60_000)])
        .await
        .unwrap();
    wait_for(log.as_ref(), |all| {
        all.iter()
            .any(|f| matches!(f, Fact::TaskStarted(s) if s.task_id == "long"))
    })
    .await;
    let stopping = Instant::now();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(10));
    assert!(cleaned.load(Ordering::SeqCst), "cleanup ran");
    let all = facts(log.as_ref()).await;
    assert!(all.iter().any(|f| matches!(f,
        Fact::TaskFailed(x) if x.task_id == "long" && x.retryable && x.error.contains("shut down"))));
    assert!(
        !all.iter()
            .any(|f| matches!(f, Fact::TaskCompleted(c) if c.task_id == "long"))
    );
}
