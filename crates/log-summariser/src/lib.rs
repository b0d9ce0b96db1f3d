//! The log summariser: a small agent on the Agent SDK, proof that the SDK serves agents
//! other than PatchBot.
//!
//! Task type [`TASK_SUMMARISE_LOG`]; payload `{"log": "<text>", "max_lines": 20}`. The
//! result is a `report` artifact — line, error and warning counts, the first error with
//! the lines before it, and the log's tail — plus the counts as metrics. The log is
//! redacted before anything is kept; a missing or oversized log is a permanent failure.

#![forbid(unsafe_code)]

use std::sync::LazyLock;

use async_trait::async_trait;
use regex::Regex;
use sentinel_agent_sdk::{
    Agent, AgentConfig, AgentError, AgentResult, AgentTask, ArtifactKind, Health,
};

/// The task type this agent does.
pub const TASK_SUMMARISE_LOG: &str = "summarise_log";

/// The agent's registered name.
pub const NAME: &str = "log-summariser";

/// Largest log accepted, in bytes.
pub const MAX_LOG_BYTES: usize = 4 * 1024 * 1024;

/// Default number of tail lines in the summary.
const DEFAULT_MAX_LINES: usize = 20;
/// Lines of context kept before the first error.
const CONTEXT_LINES: usize = 3;

static ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(error\b|\bfailed\b|\bfailure\b|\bfatal\b|\bpanicked\b|\btraceback\b|exception\b)",
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});
static WARNING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(warning\b|\bwarn\b|\bdeprecated\b)")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

/// A summary of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Lines in the log.
    pub lines: usize,
    /// Lines that look like errors.
    pub errors: usize,
    /// Lines that look like warnings (and not errors).
    pub warnings: usize,
    /// The first error line with up to three lines before it.
    pub first_error: Vec<String>,
    /// The last lines.
    pub tail: Vec<String>,
}

impl Summary {
    /// Summarises `log` (already redacted), keeping `max_lines` tail lines.
    pub fn of(log: &str, max_lines: usize) -> Summary {
        let lines: Vec<&str> = log.lines().collect();
        let mut errors = 0;
        let mut warnings = 0;
        let mut first = None;
        for (i, l) in lines.iter().enumerate() {
            if ERROR.is_match(l) {
                errors += 1;
                first.get_or_insert(i);
            } else if WARNING.is_match(l) {
                warnings += 1;
            }
        }
        let first_error = first
            .map(|i| lines[i.saturating_sub(CONTEXT_LINES)..=i].to_vec())
            .unwrap_or_default();
        let tail = lines[lines.len().saturating_sub(max_lines)..].to_vec();
        Summary {
            lines: lines.len(),
            errors,
            warnings,
            first_error: first_error.into_iter().map(str::to_owned).collect(),
            tail: tail.into_iter().map(str::to_owned).collect(),
        }
    }

    /// The summary as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = format!(
            "**{} lines, {} errors, {} warnings**\n",
            self.lines, self.errors, self.warnings
        );
        if !self.first_error.is_empty() {
            s.push_str("\nFirst error:\n```\n");
            s.push_str(&self.first_error.join("\n"));
            s.push_str("\n```\n");
        }
        s.push_str("\nTail:\n```\n");
        s.push_str(&self.tail.join("\n"));
        s.push_str("\n```\n");
        s
    }
}

/// The agent.
#[derive(Debug, Default)]
pub struct LogSummariser {
    max_lines: usize,
}

#[async_trait]
impl Agent for LogSummariser {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    fn capabilities(&self) -> Vec<String> {
        vec![TASK_SUMMARISE_LOG.to_owned()]
    }

    /// Settings: `{"max_lines": N}` (default 20, at most 1000).
    async fn initialize(&mut self, config: &AgentConfig) -> Result<(), AgentError> {
        self.max_lines = match config.settings.get("max_lines") {
            None => DEFAULT_MAX_LINES,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| AgentError::Config(format!("max_lines must be 1..=1000: {v}")))?,
        };
        Ok(())
    }

    async fn execute(&self, task: AgentTask) -> AgentResult {
        if task.task_type != TASK_SUMMARISE_LOG {
            return AgentResult::failed(&task.id, format!("cannot do {:?}", task.task_type))
                .permanent();
        }
        let Some(log) = task.payload.get("log").and_then(|v| v.as_str()) else {
            return AgentResult::failed(&task.id, "payload.log (a string) is missing").permanent();
        };
        if log.len() > MAX_LOG_BYTES {
            return AgentResult::failed(
                &task.id,
                format!("log is {} bytes, more than {MAX_LOG_BYTES}", log.len()),
            )
            .permanent();
        }
        let max_lines = task
            .payload
            .get("max_lines")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(self.max_lines.max(1))
            .clamp(1, 1000);
        task.context.progress.report(0.1, "redacting");
        let log = sentinel_events::redact::redact(log);
        task.context.progress.report(0.5, "summarising");
        let summary = Summary::of(&log, max_lines);
        AgentResult::completed(&task.id)
            .metric("lines", summary.lines as f64)
            .metric("errors", summary.errors as f64)
            .metric("warnings", summary.warnings as f64)
            .artifact(ArtifactKind::Report.inline("summary", summary.to_markdown()))
    }

    async fn health(&self) -> Health {
        if self.max_lines == 0 {
            Health::Unhealthy("not initialised".into())
        } else {
            Health::Healthy
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use sentinel_agent_sdk::{Execution, ResultStatus, execute_with_limits};

    use super::*;

    const LOG: &str = "\
Run pytest
collected 3 items
tests/test_a.py::test_ok PASSED
DeprecationWarning: warn is deprecated
tests/test_b.py::test_x FAILED
E   AssertionError: 1 != 2
GITHUB_TOKEN=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB
=== 1 failed, 2 passed in 0.12s ===";

    async fn ready() -> LogSummariser {
        let mut a = LogSummariser::default();
        a.initialize(&AgentConfig::default()).await.unwrap();
        a
    }

    async fn run(agent: &LogSummariser, payload: serde_json::Value) -> AgentResult {
        let (task, _rx) =
            AgentTask::standalone(TASK_SUMMARISE_LOG, payload, Duration::from_secs(5));
        match execute_with_limits(agent, task).await {
            Execution::Finished(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn counts_errors_and_warnings_and_keeps_the_first_error_in_context() {
        let s = Summary::of(LOG, 2);
        assert_eq!(s.lines, 8);
        assert_eq!(s.errors, 3, "FAILED, AssertionError, 1 failed");
        assert_eq!(s.warnings, 1);
        assert_eq!(
            s.first_error,
            [
                "collected 3 items",
                "tests/test_a.py::test_ok PASSED",
                "DeprecationWarning: warn is deprecated",
                "tests/test_b.py::test_x FAILED"
            ]
        );
        assert_eq!(s.tail.len(), 2);
        assert!(s.to_markdown().contains("8 lines, 3 errors, 1 warnings"));
        assert_eq!(Summary::of("", 5).lines, 0);
    }

    #[tokio::test]
    async fn a_task_yields_a_redacted_report_with_metrics() {
        let agent = ready().await;
        let r = run(&agent, serde_json::json!({ "log": LOG, "max_lines": 3 })).await;
        assert_eq!(r.status, ResultStatus::Completed);
        assert_eq!(r.metrics["errors"], 3.0);
        let report = r.artifacts[0].content.clone().unwrap();
        assert_eq!(r.artifacts[0].kind, "report");
        assert!(report.contains("1 failed, 2 passed"), "{report}");
        assert!(
            !report.contains("ghp_0123"),
            "secrets must be redacted: {report}"
        );
    }

    #[tokio::test]
    async fn bad_input_is_a_permanent_failure() {
        let agent = ready().await;
        let r = run(&agent, serde_json::json!({ "text": "no log" })).await;
        assert_eq!(r.status, ResultStatus::Failed);
        assert!(!r.retryable);
        let huge = "x".repeat(MAX_LOG_BYTES + 1);
        let r = run(&agent, serde_json::json!({ "log": huge })).await;
        assert!(r.error_message.unwrap().contains("bytes"));
    }

    #[tokio::test]
    async fn settings_are_validated_and_health_follows_initialisation() {
        let mut a = LogSummariser::default();
        assert!(matches!(a.health().await, Health::Unhealthy(_)));
        let bad = AgentConfig {
            settings: serde_json::json!({ "max_lines": 0 }),
            ..AgentConfig::default()
        };
        assert!(a.initialize(&bad).await.is_err());
        a.initialize(&AgentConfig::default()).await.unwrap();
        assert_eq!(a.health().await, Health::Healthy);
    }

    /// The agent under the real worker on the embedded log, as `sentinel serve` runs it:
    /// an assignment on `sentinel.tasks` becomes `TaskStarted`, `TaskProgressed` and a
    /// `TaskCompleted` carrying the report — and the worker emits the agent metrics the
    /// dashboards rely on (`sentinel_runtime::metrics::required::{RUNTIME, AGENT}`).
    #[test]
    fn under_the_worker_a_task_completes_and_the_agent_metrics_are_emitted() {
        use sentinel_agent_sdk::{AgentWorker, WorkerConfig};
        use sentinel_events::facts::TaskAssigned;
        use sentinel_events::{Event, Fact};
        use sentinel_log::EventLog;
        use sentinel_runtime::metrics::{names, required};
        use sentinel_runtime::{
            DLQ_TOPIC, EVENTS_TOPIC, RunnerConfig, TASKS_TOPIC, append_events, run_stage,
            scan_topic,
        };

        let (facts, exposition) = sentinel_runtime::testing::metrics::capture(async {
            let dir = tempfile::tempdir().unwrap();
            let log = sentinel_log::sqlite::SqliteLog::open(&dir.path().join("log.db"))
                .await
                .unwrap();
            for t in [EVENTS_TOPIC, TASKS_TOPIC, DLQ_TOPIC] {
                log.ensure_topic(t, 1).await.unwrap();
            }
            let log: std::sync::Arc<dyn EventLog> = std::sync::Arc::new(log);
            let worker = AgentWorker::new(
                LogSummariser::default(),
                log.clone(),
                WorkerConfig {
                    health_interval: Duration::from_millis(50),
                    ..WorkerConfig::default()
                },
            );
            // What the controller writes when it assigns a queued task to this agent.
            let assigned = Event::origin(
                TaskAssigned {
                    task_id: "t-1".into(),
                    agent_id: sentinel_agent_sdk::agent_id(NAME).to_string(),
                    attempt: 1,
                    task_type: TASK_SUMMARISE_LOG.into(),
                    payload: serde_json::json!({ "log": LOG }).to_string(),
                    timeout_seconds: 60,
                    delay_ms: 0,
                    priority: 0,
                },
                Some("t-1"),
                "default",
                "agent/log-summariser",
                sentinel_events::envelope::now(),
                "controller@test",
            );
            append_events(log.as_ref(), TASKS_TOPIC, &[assigned])
                .await
                .unwrap();
            let shutdown = tokio_util::sync::CancellationToken::new();
            let config = RunnerConfig {
                poll_wait: Duration::from_millis(50),
                ..RunnerConfig::default()
            };
            let task = tokio::spawn(run_stage(worker, log.clone(), config, shutdown.clone()));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let facts = loop {
                let mut facts = Vec::new();
                scan_topic(log.as_ref(), EVENTS_TOPIC, |_, e| {
                    facts.extend(e.ok().map(|e| e.fact));
                    true
                })
                .await
                .unwrap();
                let done = facts.iter().any(|f| matches!(f, Fact::TaskCompleted(_)));
                if done || tokio::time::Instant::now() > deadline {
                    break facts;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            // Let one health check run before stopping.
            tokio::time::sleep(Duration::from_millis(100)).await;
            shutdown.cancel();
            task.await.unwrap().unwrap();
            facts
        });
        let kinds: Vec<&str> = facts.iter().map(Fact::event_type).collect();
        assert_eq!(
            kinds,
            [
                "agent_registered",
                "task_started",
                "task_progressed",
                "task_progressed",
                "task_completed"
            ],
            "{facts:#?}"
        );
        let Some(Fact::TaskCompleted(done)) = facts.last() else {
            unreachable!("checked above")
        };
        assert_eq!(done.artifacts[0].kind, "report");
        assert!(
            done.artifacts[0]
                .content
                .as_deref()
                .is_some_and(|r| r.contains("8 lines, 3 errors") && !r.contains("ghp_0123"))
        );

        exposition.assert_emitted(required::RUNTIME, &[("stage", NAME)]);
        exposition.assert_emitted(required::AGENT, &[("agent", NAME)]);
        let value = |name, labels: &[(&str, &str)]| exposition.value(name, labels).unwrap_or(-1.0);
        assert_eq!(
            value(
                names::AGENT_TASKS,
                &[("agent", NAME), ("status", "completed")]
            ),
            1.0
        );
        assert_eq!(value(names::AGENT_TASK_DURATION, &[("agent", NAME)]), 1.0);
        assert_eq!(value(names::AGENT_TASKS_RUNNING, &[("agent", NAME)]), 0.0);
        assert_eq!(value(names::AGENT_HEALTH, &[("agent", NAME)]), 1.0);
    }
}
