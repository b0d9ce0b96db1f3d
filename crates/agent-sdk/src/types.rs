//! What goes into an agent and what comes out.

use std::collections::BTreeMap;
use std::time::Duration;

use sentinel_events::types::Artifact;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What [`crate::Agent::initialize`] gets: the worker's identity and the agent's own
/// settings (a free-form JSON object from the configuration file).
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    /// The worker's name (host/process), recorded in `TaskStarted.worker`.
    pub worker: String,
    /// The agent's settings.
    pub settings: serde_json::Value,
}

/// One attempt of a task, as an agent sees it.
#[derive(Debug, Clone)]
pub struct AgentTask {
    /// The task id (stable across attempts).
    pub id: String,
    /// What kind of task (one of the agent's capabilities).
    pub task_type: String,
    /// Where the task runs: attempt, progress, cancellation.
    pub context: TaskContext,
    /// The task input (`TaskQueued.payload`, parsed; a string when it was not JSON).
    pub payload: serde_json::Value,
    /// The deadline of this attempt; the runtime drops the attempt when it expires.
    pub timeout: Duration,
}

impl AgentTask {
    /// A task outside any worker (tests, one-off runs, `sentinel fix`-style CLIs): a random
    /// id, attempt 1, and the receiving end of its progress reports.
    pub fn standalone(
        task_type: &str,
        payload: serde_json::Value,
        timeout: Duration,
    ) -> (AgentTask, mpsc::UnboundedReceiver<ProgressUpdate>) {
        let (progress, rx) = Progress::channel();
        let task = AgentTask {
            id: uuid::Uuid::new_v4().to_string(),
            task_type: task_type.to_owned(),
            context: TaskContext {
                attempt: 1,
                agent_id: String::new(),
                priority: 0,
                progress,
                cancelled: CancellationToken::new(),
            },
            payload,
            timeout,
        };
        (task, rx)
    }
}

/// The circumstances of one attempt.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The agent's id.
    pub agent_id: String,
    /// The task's priority.
    pub priority: i32,
    /// Where progress goes (`TaskProgressed` facts under a worker).
    pub progress: Progress,
    /// Cancelled when the task is cancelled, times out or the worker shuts down; the
    /// runtime also drops the attempt then, so checking it is an optimisation.
    pub cancelled: CancellationToken,
}

/// One progress report.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// Fraction done, 0..=1.
    pub fraction: f64,
    /// What the agent is doing.
    pub message: String,
}

/// Reports progress of a running attempt. Cheap to clone; reports after the attempt ended
/// are dropped.
#[derive(Debug, Clone)]
pub struct Progress {
    tx: mpsc::UnboundedSender<ProgressUpdate>,
}

/// Longest progress message kept.
const PROGRESS_MESSAGE_BYTES: usize = 1024;

impl Progress {
    /// A reporter and the receiving end of its reports.
    pub fn channel() -> (Progress, mpsc::UnboundedReceiver<ProgressUpdate>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Progress { tx }, rx)
    }

    /// Reports that `fraction` (clamped to 0..=1; NaN counts as 0) is done.
    pub fn report(&self, fraction: f64, message: impl Into<String>) {
        let mut message = message.into();
        if message.len() > PROGRESS_MESSAGE_BYTES {
            let mut cut = PROGRESS_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let _ = self.tx.send(ProgressUpdate { fraction, message });
    }
}

/// How an attempt ended, as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStatus {
    /// Done; the artifacts are the result.
    Completed,
    /// The attempt failed (see `error_message`, `retryable`).
    Failed,
    /// Some of the work was done, or the honest answer is "nothing to do" (e.g. PatchBot
    /// found no fix); the task ends without retry.
    Partial,
}

impl ResultStatus {
    /// The snake_case name (`completed`, `failed`, `partial`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Completed => "completed",
            ResultStatus::Failed => "failed",
            ResultStatus::Partial => "partial",
        }
    }
}

/// What an attempt produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentResult {
    /// The task.
    pub task_id: String,
    /// How it ended.
    pub status: ResultStatus,
    /// Fraction done at the end, 0..=1.
    pub progress: f64,
    /// What it produced (pull requests, diffs, logs, reports).
    pub artifacts: Vec<Artifact>,
    /// Numbers worth keeping (recorded in `TaskCompleted.metrics`).
    pub metrics: BTreeMap<String, f64>,
    /// What went wrong, for failed (and optionally partial) results.
    pub error_message: Option<String>,
    /// For failed results: whether another attempt may succeed (default true).
    pub retryable: bool,
}

impl AgentResult {
    fn new(task_id: &str, status: ResultStatus, progress: f64) -> Self {
        AgentResult {
            task_id: task_id.to_owned(),
            status,
            progress,
            artifacts: Vec::new(),
            metrics: BTreeMap::new(),
            error_message: None,
            retryable: true,
        }
    }

    /// Completed, progress 1.
    pub fn completed(task_id: &str) -> Self {
        Self::new(task_id, ResultStatus::Completed, 1.0)
    }

    /// Partly done (or nothing to do), with the reason.
    pub fn partial(task_id: &str, reason: impl Into<String>) -> Self {
        let mut r = Self::new(task_id, ResultStatus::Partial, 1.0);
        r.error_message = Some(reason.into());
        r
    }

    /// Failed with `error`; retryable unless [`AgentResult::permanent`] is called.
    pub fn failed(task_id: &str, error: impl Into<String>) -> Self {
        let mut r = Self::new(task_id, ResultStatus::Failed, 0.0);
        r.error_message = Some(error.into());
        r
    }

    /// Marks a failure as one that another attempt cannot fix (bad input).
    pub fn permanent(mut self) -> Self {
        self.retryable = false;
        self
    }

    /// Adds an artifact.
    pub fn artifact(mut self, artifact: Artifact) -> Self {
        self.artifacts.push(artifact);
        self
    }

    /// Adds a metric.
    pub fn metric(mut self, name: &str, value: f64) -> Self {
        self.metrics.insert(name.to_owned(), value);
        self
    }
}

/// The kinds of [`Artifact`] Sentinel knows (`Artifact.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtifactKind {
    /// A pull or merge request (its URL).
    PullRequest,
    /// A unified diff.
    FixDiff,
    /// A log excerpt.
    Log,
    /// A human-readable report.
    Report,
}

/// Longest inline artifact content kept (larger content is cut, keeping the beginning).
pub const ARTIFACT_CONTENT_BYTES: usize = 64 * 1024;

impl ArtifactKind {
    /// The wire name (`pull_request`, `fix_diff`, `log`, `report`).
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::PullRequest => "pull_request",
            ArtifactKind::FixDiff => "fix_diff",
            ArtifactKind::Log => "log",
            ArtifactKind::Report => "report",
        }
    }

    /// An artifact with inline content, bounded to [`ARTIFACT_CONTENT_BYTES`] and with
    /// secrets redacted (artifacts are stored in the log and shown in the API).
    pub fn inline(self, name: impl Into<String>, content: impl Into<String>) -> Artifact {
        let mut content = sentinel_events::redact::redact(&content.into());
        if content.len() > ARTIFACT_CONTENT_BYTES {
            let mut cut = ARTIFACT_CONTENT_BYTES;
            while !content.is_char_boundary(cut) {
                cut -= 1;
            }
            content.truncate(cut);
        }
        Artifact {
            kind: self.as_str().to_owned(),
            name: name.into(),
            uri: None,
            content: Some(content),
        }
    }

    /// An artifact that lives elsewhere.
    pub fn link(self, name: impl Into<String>, uri: impl Into<String>) -> Artifact {
        Artifact {
            kind: self.as_str().to_owned(),
            name: name.into(),
            uri: Some(uri.into()),
            content: None,
        }
    }
}

/// The answer of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Ready for work.
    Healthy,
    /// Working, but something is off (slow dependency, cache missing).
    Degraded(String),
    /// Cannot do its work; the worker records the agent as failed until it recovers.
    Unhealthy(String),
}

impl Health {
    /// 1 healthy, 0.5 degraded, 0 unhealthy (the `sentinel_agent_health` gauge).
    pub fn score(&self) -> f64 {
        match self {
            Health::Healthy => 1.0,
            Health::Degraded(_) => 0.5,
            Health::Unhealthy(_) => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_clamped_and_bounded() {
        let (p, mut rx) = Progress::channel();
        p.report(1.5, "x".repeat(5000));
        p.report(f64::NAN, "nan");
        p.report(-1.0, "neg");
        let a = rx.try_recv().unwrap_or_else(|_| panic!("report"));
        assert_eq!(a.fraction, 1.0);
        assert_eq!(a.message.len(), PROGRESS_MESSAGE_BYTES);
        assert_eq!(rx.try_recv().map(|u| u.fraction).ok(), Some(0.0));
        assert_eq!(rx.try_recv().map(|u| u.fraction).ok(), Some(0.0));
    }

    #[test]
    fn inline_artifacts_are_redacted_and_bounded() {
        let token = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
        let a = ArtifactKind::Log.inline("log", format!("token={token}\n{}", "é".repeat(40_000)));
        assert_eq!(a.kind, "log");
        let content = a.content.unwrap_or_default();
        assert!(!content.contains(token), "{}", &content[..80]);
        assert!(content.len() <= ARTIFACT_CONTENT_BYTES);
        let l = ArtifactKind::PullRequest.link("pr", "https://example.invalid/pr/1");
        assert_eq!(l.kind, "pull_request");
        assert_eq!(l.content, None);
    }

    #[test]
    fn result_builders() {
        let r = AgentResult::failed("t", "boom").permanent();
        assert_eq!(r.status, ResultStatus::Failed);
        assert!(!r.retryable);
        let r = AgentResult::completed("t").metric("n", 2.0);
        assert_eq!(r.progress, 1.0);
        assert_eq!(r.metrics["n"], 2.0);
        assert_eq!(
            AgentResult::partial("t", "nothing").status.as_str(),
            "partial"
        );
    }
}
