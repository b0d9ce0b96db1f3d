//! The Agent SDK: what an agent implements ([`Agent`]) and the runtime that runs it
//! ([`AgentWorker`]).
//!
//! An agent is a piece of code that does one kind of work for Sentinel — PatchBot fixes CI
//! failures, the log summariser condenses CI logs — and nothing else: it never reads or
//! writes the event log, counts metrics or enforces its own deadline. The runtime does that
//! for every agent alike:
//!
//! * **tasks** arrive as `TaskAssigned` facts on `sentinel.tasks` (keyed by agent, so the
//!   agent's workers form one consumer group); cancellations as `TaskCancelled`;
//! * **spans**: every attempt runs in an `agent_task` span (agent, task id, attempt, type);
//! * **metrics** (names in `sentinel_runtime::metrics::names`): tasks by final status, task
//!   duration, tasks running, health;
//! * **progress**: [`Progress::report`] becomes a `TaskProgressed` fact, live;
//! * **results**: `TaskStarted`, then `TaskCompleted` (completed/partial) or `TaskFailed`;
//! * **limits**: a per-attempt timeout (the task's, capped by the worker's) and a per-worker
//!   concurrency limit; a cancelled or timed-out attempt's future is dropped, which kills
//!   sandboxed processes it started (sandboxes kill their process tree on drop);
//! * **health**: [`Agent::health`] is polled; a change is recorded as `AgentStatusChanged`;
//! * **graceful shutdown**: running attempts get a grace period, then are cancelled and
//!   recorded as retryable failures; [`Agent::cleanup`] runs last.
//!
//! # Example
//!
//! A complete agent, run once through the same limits the worker applies:
//!
//! ```
//! use std::time::Duration;
//! use sentinel_agent_sdk::{
//!     Agent, AgentConfig, AgentError, AgentResult, AgentTask, ArtifactKind, Execution,
//!     execute_with_limits,
//! };
//!
//! /// Counts the words of the text in its payload.
//! struct WordCounter;
//!
//! #[async_trait::async_trait]
//! impl Agent for WordCounter {
//!     fn name(&self) -> &'static str { "word-counter" }
//!     fn version(&self) -> String { "1.0.0".into() }
//!     fn capabilities(&self) -> Vec<String> { vec!["count_words".into()] }
//!     async fn initialize(&mut self, _config: &AgentConfig) -> Result<(), AgentError> {
//!         Ok(())
//!     }
//!     async fn execute(&self, task: AgentTask) -> AgentResult {
//!         let Some(text) = task.payload["text"].as_str() else {
//!             return AgentResult::failed(&task.id, "payload.text is missing").permanent();
//!         };
//!         task.context.progress.report(0.5, "counting");
//!         let words = text.split_whitespace().count();
//!         AgentResult::completed(&task.id)
//!             .metric("words", words as f64)
//!             .artifact(ArtifactKind::Report.inline("count", words.to_string()))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (task, mut progress) = AgentTask::standalone(
//!     "count_words",
//!     serde_json::json!({"text": "three small words"}),
//!     Duration::from_secs(5),
//! );
//! let Execution::Finished(result) = execute_with_limits(&WordCounter, task).await else {
//!     panic!("no timeout or cancellation here");
//! };
//! assert_eq!(result.metrics["words"], 3.0);
//! assert_eq!(progress.try_recv().map(|p| p.message).ok(), Some("counting".to_string()));
//! # }
//! ```

#![forbid(unsafe_code)]

mod runtime;
mod types;

use async_trait::async_trait;

pub use runtime::{AgentWorker, Execution, WorkerConfig, execute_with_limits};
pub use sentinel_events::types::Artifact;
pub use types::{
    ARTIFACT_CONTENT_BYTES, AgentConfig, AgentResult, AgentTask, ArtifactKind, Health, Progress,
    ProgressUpdate, ResultStatus, TaskContext,
};

/// Result type of this crate.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// Why an agent could not start or stop, or the runtime failed around it.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent's configuration is unusable.
    #[error("agent configuration: {0}")]
    Config(String),
    /// A dependency the agent needs is not there (a tool, a service).
    #[error("agent unavailable: {0}")]
    Unavailable(String),
    /// The event log failed.
    #[error("event log: {0}")]
    Log(#[from] sentinel_runtime::Error),
}

/// The stable id of a named agent (`v5(namespace, "agent/<name>")`): the same id the
/// controller registers and assigns tasks to.
pub fn agent_id(name: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &sentinel_events::envelope::EVENT_ID_NAMESPACE,
        format!("agent/{name}").as_bytes(),
    )
}

/// An agent: does one kind of work, reports what it produced.
///
/// # Contract
///
/// * [`Agent::initialize`] runs once, before any task; an error stops the worker.
/// * [`Agent::execute`] may run concurrently for different tasks (up to the worker's
///   concurrency) and must not panic; whatever goes wrong is an [`AgentResult`] with
///   status [`ResultStatus::Failed`] and an `error_message`. It may be cancelled at any
///   `.await` (timeout, cancellation, shutdown): keep side effects idempotent and let
///   resources clean up on drop. Long attempts should check
///   [`TaskContext::cancelled`] and report [`TaskContext::progress`].
/// * [`Agent::cleanup`] runs once, after the last task ended.
/// * [`Agent::health`] is cheap and may be called at any time.
#[async_trait]
pub trait Agent: Send + Sync + 'static {
    /// The agent's registered name (also its consumer group, `sentinel-<name>`).
    fn name(&self) -> &'static str;

    /// The agent's version, recorded in `AgentRegistered`.
    fn version(&self) -> String;

    /// The task types it can do (matched against `TaskQueued.task_type`).
    fn capabilities(&self) -> Vec<String>;

    /// Prepares the agent (provision tools, check dependencies).
    ///
    /// # Errors
    ///
    /// When the agent cannot work with this configuration or on this machine.
    async fn initialize(&mut self, config: &AgentConfig) -> Result<()>;

    /// Runs one attempt of a task.
    async fn execute(&self, task: AgentTask) -> AgentResult;

    /// Releases what [`Agent::initialize`] acquired.
    async fn cleanup(&self) {}

    /// Whether the agent can take work now.
    async fn health(&self) -> Health {
        Health::Healthy
    }
}
