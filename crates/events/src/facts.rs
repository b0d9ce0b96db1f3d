//! Every fact type, one struct each, mirroring `schemas/facts/*.avsc`.
//!
//! Generated once from a field list, now maintained by hand together with the schemas;
//! `tests` in `codec.rs` prove every type round-trips through its schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::*;

/// A CI run failed (from a webhook or a CI system producing to Kafka).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiRunFailed {
    /// Where it came from: generic, github, gitlab, jenkins or kafka.
    pub source: String,
    /// The source's delivery id, when it has one (deduplication).
    #[serde(default)]
    pub delivery_id: Option<String>,
    /// Repository: a local path or a git URL.
    pub repository: String,
    /// Branch the run was on.
    pub branch: String,
    /// Commit the run was on.
    pub commit: String,
    /// The command that failed, when known.
    #[serde(default)]
    pub command: Option<String>,
    /// The log text (redacted, bounded).
    pub log: String,
    /// Size of the log as received, before bounding.
    pub log_size_bytes: i64,
    /// Link to the run.
    #[serde(default)]
    pub run_url: Option<String>,
    /// Name of the failed job or step.
    #[serde(default)]
    pub job_name: Option<String>,
    /// Author of the commit, when known.
    #[serde(default)]
    pub author: Option<String>,
    /// True when the commit or branch is Sentinel's own (loop guard).
    pub sentinel_authored: bool,
}

/// The failure's log was fetched, normalised and redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureLogsCaptured {
    /// The CiRunFailed fact.
    pub failure_event_id: String,
    /// Normalised, redacted excerpt (error windows and tail).
    pub excerpt: String,
    /// Size of the full log.
    pub full_size_bytes: i64,
    /// How many secrets were redacted.
    pub redactions: i32,
    /// The failing command, when the log shows it.
    #[serde(default)]
    pub failing_command: Option<String>,
    /// The failing command's exit code, when the log shows it.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The failed job(s), when the CI system names them (several joined with `, `).
    #[serde(default)]
    pub job_name: Option<String>,
    /// The failed step, when the CI system names it.
    #[serde(default)]
    pub step_name: Option<String>,
    /// Why no log could be captured (not found, expired, no credentials configured); the
    /// excerpt is then empty and the failure is classified without a log.
    #[serde(default)]
    pub fetch_error: Option<String>,
}

/// A failure was classified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureClassified {
    /// The CiRunFailed fact.
    pub failure_event_id: String,
    /// The class.
    pub failure_type: FailureType,
    /// Confidence in the class, 0..1.
    pub confidence: f64,
    /// pattern, llm or none.
    pub method: String,
    /// The matching pattern.
    #[serde(default)]
    pub pattern_id: Option<String>,
    /// The tool that reported the failure (black, ruff, flake8, ...).
    #[serde(default)]
    pub tool: Option<String>,
    /// Stable fingerprint of the root cause.
    pub signature: String,
    /// Files the error points at.
    pub files: Vec<String>,
    /// Line numbers the error points at.
    pub lines: Vec<i64>,
    /// Modules or packages named by the error.
    pub modules: Vec<String>,
    /// Symbols named by the error.
    pub symbols: Vec<String>,
}

/// The policy decided whether work may start on a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchDecided {
    /// The CiRunFailed fact.
    pub failure_event_id: String,
    /// The FailureClassified fact.
    pub classification_event_id: String,
    /// The decision.
    pub decision: DispatchDecision,
    /// Machine-readable reason.
    pub reason_code: String,
    /// A human sentence.
    pub reason: String,
    /// Content hash of the policy in force.
    pub policy_version: String,
    /// The failure's class.
    pub failure_type: FailureType,
    /// The classification's confidence.
    pub confidence: f64,
}

/// The policy decided what to do with a validated fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionDecided {
    /// The task that produced the fix.
    pub task_id: String,
    /// The validated candidate.
    pub candidate_id: String,
    /// The decision.
    pub decision: ActionDecision,
    /// Machine-readable reason.
    pub reason_code: String,
    /// A human sentence.
    pub reason: String,
    /// Content hash of the policy in force.
    pub policy_version: String,
    /// The fix's confidence.
    pub confidence: f64,
}

/// A human review was requested for a fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRequested {
    /// The review.
    pub review_id: String,
    /// The task that produced the fix.
    pub task_id: String,
    /// The decision that asked for it.
    pub decision_event_id: String,
    /// Why review is needed.
    pub reason: String,
    /// The identity that triggered the fix (the failing commit's author); it may not review
    /// it.
    #[serde(default)]
    pub triggered_by: Option<String>,
    /// The repository of the fix.
    #[serde(default)]
    pub repository: Option<String>,
    /// The decision's machine-readable reason.
    #[serde(default)]
    pub reason_code: Option<String>,
    /// Content hash of the policy in force.
    #[serde(default)]
    pub policy_version: Option<String>,
}

/// A reviewer approved or rejected a fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewCompleted {
    /// The review.
    pub review_id: String,
    /// Approved (true) or rejected (false).
    pub approved: bool,
    /// Who reviewed.
    pub reviewer: String,
    /// The reviewer's comment.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A review was not answered in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewEscalated {
    /// The review.
    pub review_id: String,
    /// How long it had waited, in event time.
    pub waited_hours: f64,
}

/// An agent was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRegistered {
    /// The agent.
    pub agent_id: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What task types it can do.
    pub capabilities: Vec<String>,
    /// How many tasks it runs at once.
    pub max_concurrency: i32,
}

/// An agent was started, paused, resumed, stopped or failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatusChanged {
    /// The agent.
    pub agent_id: String,
    /// The new status.
    pub status: AgentStatus,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A task was queued for an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskQueued {
    /// The task.
    pub task_id: String,
    /// The agent it is for.
    pub agent_id: String,
    /// What kind of task (fix_failure, ...).
    pub task_type: String,
    /// Higher runs first.
    pub priority: i32,
    /// The allowing policy decision, for tasks with side effects.
    #[serde(default)]
    pub decision_id: Option<String>,
    /// The failure it is about, if any.
    #[serde(default)]
    pub failure_event_id: Option<String>,
    /// Task input (JSON).
    pub payload: String,
    /// Deadline for one attempt.
    pub timeout_seconds: i64,
    /// Attempts before giving up.
    pub max_attempts: i32,
}

/// The controller handed an attempt of a queued task to an agent (also written to
/// `sentinel.tasks`, keyed by the agent, for the agent's workers). Carries everything a
/// worker needs, so workers never fold the fact log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAssigned {
    /// The task.
    pub task_id: String,
    /// The agent that runs it (the one named in `TaskQueued`, or the capable agent the
    /// controller chose when the task named none).
    pub agent_id: String,
    /// Attempt number, from 1.
    pub attempt: i32,
    /// What kind of task (fix_failure, ...).
    pub task_type: String,
    /// Task input (JSON), as queued.
    pub payload: String,
    /// Deadline for this attempt.
    pub timeout_seconds: i64,
    /// How long the worker waits before starting (retry backoff with jitter; 0 for a first
    /// attempt).
    pub delay_ms: i64,
    /// The task's priority (higher runs first).
    pub priority: i32,
}

/// An agent started an attempt of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStarted {
    /// The task.
    pub task_id: String,
    /// The agent.
    pub agent_id: String,
    /// Attempt number, from 1.
    pub attempt: i32,
    /// Which worker runs it.
    pub worker: String,
}

/// A running task reported progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskProgressed {
    /// The task.
    pub task_id: String,
    /// Fraction done, 0..1.
    pub progress: f64,
    /// What it is doing.
    pub message: String,
}

/// A task finished (completed or partial).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCompleted {
    /// The task.
    pub task_id: String,
    /// The agent.
    pub agent_id: String,
    /// completed or partial.
    pub outcome: TaskOutcome,
    /// How long the attempt took.
    pub duration_ms: i64,
    /// What it produced.
    pub artifacts: Vec<Artifact>,
    /// Numbers it reported.
    pub metrics: BTreeMap<String, f64>,
}

/// An attempt of a task failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailed {
    /// The task.
    pub task_id: String,
    /// The agent.
    pub agent_id: String,
    /// Attempt number, from 1.
    pub attempt: i32,
    /// What went wrong.
    pub error: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// How long the attempt took.
    pub duration_ms: i64,
}

/// A task was cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCancelled {
    /// The task.
    pub task_id: String,
    /// Why.
    pub reason: String,
    /// Who asked.
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// PatchBot produced a candidate fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixCandidateProposed {
    /// The task.
    pub task_id: String,
    /// The candidate.
    pub candidate_id: String,
    /// The strategy that produced it.
    pub strategy: String,
    /// Unified diff.
    pub diff: String,
    /// Files it changes.
    pub files_changed: Vec<String>,
    /// Tools used and their versions.
    pub tool_versions: BTreeMap<String, String>,
}

/// A candidate was validated in the sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixValidated {
    /// The task.
    pub task_id: String,
    /// The candidate.
    pub candidate_id: String,
    /// The decision that allowed the sandbox run.
    pub decision_id: String,
    /// Whether every validation step passed.
    pub passed: bool,
    /// Confidence in the fix, 0..1.
    pub confidence: f64,
    /// Commands run, exit codes, durations, output tails.
    pub steps: Vec<ValidationStep>,
    /// Protected paths the fix changes (CI workflows, secrets, deploy configs); the policy
    /// requires a review for them.
    #[serde(default)]
    pub protected_paths_touched: Vec<String>,
}

/// PatchBot found no valid fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixNotFound {
    /// The task.
    pub task_id: String,
    /// no_fix or not_fixable.
    pub status: FixStatus,
    /// Why.
    pub reason: String,
}

/// A fix branch was pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchPushed {
    /// The task.
    pub task_id: String,
    /// Where it was pushed.
    pub repository: String,
    /// The branch (`sentinel/fix-<short task id>`).
    pub branch: String,
    /// The pushed commit.
    pub commit: String,
    /// The allowing policy decision.
    pub decision_id: String,
}

/// A pull request was opened for a fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestOpened {
    /// The task.
    pub task_id: String,
    /// The repository.
    pub repository: String,
    /// local, github or gitlab.
    pub forge: String,
    /// The PR number.
    pub number: i64,
    /// The PR's URL.
    pub url: String,
    /// Head branch.
    pub branch: String,
    /// Base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Opened as draft.
    pub draft: bool,
    /// The allowing policy decision.
    pub decision_id: String,
}

/// CI finished on a fix pull request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestChecksCompleted {
    /// The PR's URL.
    pub url: String,
    /// The repository.
    pub repository: String,
    /// The commit checked.
    pub head_sha: String,
    /// success, failure, ...
    pub conclusion: String,
}

/// A fix pull request was merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestMerged {
    /// The PR's URL.
    pub url: String,
    /// The repository.
    pub repository: String,
    /// Who merged it.
    #[serde(default)]
    pub merged_by: Option<String>,
    /// The merge commit.
    #[serde(default)]
    pub merge_commit: Option<String>,
}

/// A fix pull request was closed without merging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestClosed {
    /// The PR's URL.
    pub url: String,
    /// The repository.
    pub repository: String,
    /// Who closed it.
    #[serde(default)]
    pub closed_by: Option<String>,
}

/// A fix pull request was reviewed on the forge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestReviewed {
    /// The PR's URL.
    pub url: String,
    /// The repository.
    pub repository: String,
    /// Who reviewed.
    pub reviewer: String,
    /// approved, changes_requested or commented.
    pub state: String,
}

/// The final outcome of a fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixOutcomeRecorded {
    /// The task.
    pub task_id: String,
    /// Merged and CI stayed green.
    pub success: bool,
    /// From failure to PR opened.
    #[serde(default)]
    pub time_to_pr_seconds: Option<f64>,
    /// From failure to merge.
    #[serde(default)]
    pub time_to_merge_seconds: Option<f64>,
}

/// InfraMind predicted a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionReceived {
    /// The prediction.
    pub prediction_id: String,
    /// The repository.
    pub repository: String,
    /// Predicted class.
    pub failure_type: FailureType,
    /// Predicted probability.
    pub probability: f64,
    /// Model that made it.
    #[serde(default)]
    pub model: Option<String>,
    /// Predicted failure signature, when InfraMind knows it (a stronger link than the type).
    #[serde(default)]
    pub signature: Option<String>,
    /// Explicit link: the correlation id of the failure → task chain it is about.
    #[serde(default)]
    pub correlation_id: Option<String>,
}

/// A prediction was linked to the task it predicted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionCorrelated {
    /// The prediction.
    pub prediction_id: String,
    /// The task.
    pub task_id: String,
    /// How: correlation_id, or repository+type within a window.
    pub method: String,
}

/// An outcome was delivered to InfraMind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeReported {
    /// The prediction.
    pub prediction_id: String,
    /// The task.
    pub task_id: String,
    /// The outcome.
    pub success: bool,
    /// Delivery attempts.
    pub attempts: i32,
}

/// A record could not be processed and was set aside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDeadLettered {
    /// The stage that gave up.
    pub stage: String,
    /// Where it was read.
    pub source_topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its event_type header, if any.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Why it was set aside.
    pub reason: String,
    /// The record's value as read.
    #[serde(with = "apache_avro::serde_avro_bytes")]
    pub raw: Vec<u8>,
}

/// A forge event about a pull request or its checks, recorded by ingestion for the PR tracker
/// (GitHub `pull_request`, `pull_request_review`, `check_suite`, `check_run`; GitLab merge
/// request and pipeline hooks on merge requests). The tracker turns these into
/// `PullRequestMerged`, `PullRequestClosed`, `PullRequestChecksCompleted` and
/// `PullRequestReviewed` for Sentinel's own pull requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForgeEventReceived {
    /// github, gitlab, jenkins, ...
    pub source: String,
    /// The forge's delivery id, when it sends one.
    #[serde(default)]
    pub delivery_id: Option<String>,
    /// The forge's event name (pull_request, check_suite, check_run, pull_request_review,
    /// merge_request, ...).
    pub event: String,
    /// The event's action (opened, closed, completed, submitted, ...), when it has one.
    #[serde(default)]
    pub action: Option<String>,
    /// The repository, as `owner/name` (GitHub) or the project path (GitLab).
    pub repository: String,
    /// The pull/merge request number, when the event is about one.
    #[serde(default)]
    pub pr_number: Option<i64>,
    /// The pull/merge request's web URL, when known.
    #[serde(default)]
    pub pr_url: Option<String>,
    /// The head branch, when known.
    #[serde(default)]
    pub head_branch: Option<String>,
    /// The head commit, when known.
    #[serde(default)]
    pub head_sha: Option<String>,
    /// For closed pull requests: whether it was merged.
    #[serde(default)]
    pub merged: Option<bool>,
    /// The merge commit, when merged.
    #[serde(default)]
    pub merge_commit: Option<String>,
    /// Check conclusion (success, failure, ...) or review state (approved, ...), when any.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// Who acted (merged, closed, reviewed), when known.
    #[serde(default)]
    pub actor: Option<String>,
}

/// A fix that was auto-merged is suspected of breaking its base branch: CI on the base
/// failed with the same signature within the rollback window after the merge. The policy
/// turns this into a revert pull request and pauses auto-merge for the repository until
/// `occurred_at + cooldown_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRequested {
    /// The task whose fix is rolled back.
    pub task_id: String,
    /// The repository.
    pub repository: String,
    /// The merged pull request's URL.
    pub url: String,
    /// The base branch that failed again.
    pub base: String,
    /// The merge commit to revert, when known.
    #[serde(default)]
    pub merge_commit: Option<String>,
    /// The failure signature seen again.
    pub signature: String,
    /// The CiRunFailed fact of the new failure.
    pub failure_event_id: String,
    /// Seconds from the merge to the new failure (event time).
    pub seconds_after_merge: f64,
    /// How long auto-merge stays paused for the repository, seconds.
    pub cooldown_seconds: i64,
    /// Machine-readable reason (same_signature_after_auto_merge).
    pub reason_code: String,
}

/// A draft fix pull request was marked ready for review after a human approved the fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestReadied {
    /// The task.
    pub task_id: String,
    /// The repository.
    pub repository: String,
    /// The PR's URL.
    pub url: String,
    /// The approved review.
    pub review_id: String,
    /// The allowing fact: the approving `ReviewCompleted`.
    pub decision_id: String,
}

/// Auto-merge was enabled on a fix pull request: the forge merges it once its required checks
/// pass. A side effect, allowed only by an `auto_merge` decision (`sentinel audit` checks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoMergeEnabled {
    /// The task.
    pub task_id: String,
    /// The repository.
    pub repository: String,
    /// The PR's URL.
    pub url: String,
    /// The forge that merges it (github, gitlab).
    pub forge: String,
    /// The allowing policy decision: the `auto_merge` `ActionDecided`.
    pub decision_id: String,
}

/// The policy decided what a requested rollback does: revert the fix (a pull request from
/// `revert_branch`) or not, and how long auto-merge stays paused for the repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackDecided {
    /// The `RollbackRequested` fact decided on.
    pub rollback_event_id: String,
    /// The task whose fix is concerned.
    pub task_id: String,
    /// The repository.
    pub repository: String,
    /// The merged fix pull request's URL.
    pub url: String,
    /// The base branch the fix was merged into.
    pub base: String,
    /// The commit to revert (the fix's merge commit), when known.
    #[serde(default)]
    pub revert_commit: Option<String>,
    /// The decision.
    pub decision: RollbackDecision,
    /// The only branch a revert pull request may be opened from (set when reverting).
    #[serde(default)]
    pub revert_branch: Option<String>,
    /// Auto-merge is paused for the repository this long from the decision (event time),
    /// seconds; 0: no pause.
    pub auto_merge_pause_seconds: i64,
    /// Machine-readable reason.
    pub reason_code: String,
    /// A human sentence.
    pub reason: String,
    /// Content hash of the policy in force.
    pub policy_version: String,
}

/// A pull request reverting a merged Sentinel fix was opened, as a `revert` rollback
/// decision allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevertPullRequestOpened {
    /// The task whose fix is reverted.
    pub task_id: String,
    /// The repository.
    pub repository: String,
    /// Which forge: local-git, github or gitlab.
    pub forge: String,
    /// The revert pull request's number.
    pub number: i64,
    /// The revert pull request's URL.
    pub url: String,
    /// Its head branch (the decision's revert branch).
    pub branch: String,
    /// The branch it reverts on.
    pub base: String,
    /// The commit reverted (the fix's merge commit).
    pub reverted_commit: String,
    /// The revert commit at the head of the branch.
    pub commit: String,
    /// The merged fix pull request's URL.
    pub fix_url: String,
    /// The allowing decision: the `RollbackDecided` (revert) event id.
    pub decision_id: String,
}

/// Auto-merge of an open fix pull request was switched off because a rollback decision
/// paused auto-merge for its repository. A side effect, allowed only by a
/// `RollbackDecided` with a pause (`sentinel audit` checks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoMergeDisabled {
    /// The task whose pull request it is.
    pub task_id: String,
    /// The repository.
    pub repository: String,
    /// The PR's URL.
    pub url: String,
    /// The forge (github, gitlab).
    pub forge: String,
    /// The allowing decision: the `RollbackDecided` event id whose pause this enforces.
    pub decision_id: String,
}

/// A `revert` rollback decision could not be carried out: the fix's merge commit is no
/// longer on the base branch, the revert conflicts with later changes, or the decision is
/// incomplete. A human has to revert by hand; nothing was pushed or opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevertFailed {
    /// The task whose fix was to be reverted.
    pub task_id: String,
    /// The repository.
    pub repository: String,
    /// The merged fix pull request's URL.
    pub fix_url: String,
    /// The commit that was to be reverted (the fix's merge commit), when the decision named
    /// one.
    #[serde(default)]
    pub reverted_commit: Option<String>,
    /// The branch the revert was to be made on.
    pub base: String,
    /// Why the revert could not be made (a human sentence).
    pub reason: String,
    /// The decision: the `RollbackDecided` (revert) event id.
    pub decision_id: String,
}

crate::fact_enum! {
    CiRunFailed => "ci_run_failed",
    FailureLogsCaptured => "failure_logs_captured",
    FailureClassified => "failure_classified",
    DispatchDecided => "dispatch_decided",
    ActionDecided => "action_decided",
    ReviewRequested => "review_requested",
    ReviewCompleted => "review_completed",
    ReviewEscalated => "review_escalated",
    AgentRegistered => "agent_registered",
    AgentStatusChanged => "agent_status_changed",
    TaskQueued => "task_queued",
    TaskAssigned => "task_assigned",
    TaskStarted => "task_started",
    TaskProgressed => "task_progressed",
    TaskCompleted => "task_completed",
    TaskFailed => "task_failed",
    TaskCancelled => "task_cancelled",
    FixCandidateProposed => "fix_candidate_proposed",
    FixValidated => "fix_validated",
    FixNotFound => "fix_not_found",
    BranchPushed => "branch_pushed",
    PullRequestOpened => "pull_request_opened",
    PullRequestChecksCompleted => "pull_request_checks_completed",
    PullRequestMerged => "pull_request_merged",
    PullRequestClosed => "pull_request_closed",
    PullRequestReviewed => "pull_request_reviewed",
    FixOutcomeRecorded => "fix_outcome_recorded",
    PredictionReceived => "prediction_received",
    PredictionCorrelated => "prediction_correlated",
    OutcomeReported => "outcome_reported",
    EventDeadLettered => "event_dead_lettered",
    ForgeEventReceived => "forge_event_received",
    RollbackRequested => "rollback_requested",
    PullRequestReadied => "pull_request_readied",
    AutoMergeEnabled => "auto_merge_enabled",
    RollbackDecided => "rollback_decided",
    RevertPullRequestOpened => "revert_pull_request_opened",
    RevertFailed => "revert_failed",
    AutoMergeDisabled => "auto_merge_disabled",
}
