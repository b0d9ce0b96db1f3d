//! The PatchBot stage: runs fix tasks, and once the policy has decided, pushes the fix
//! branch and opens the pull request.
//!
//! * `TaskQueued` (for PatchBot) is only remembered (payload, dispatch decision): the
//!   controller decides when PatchBot runs it (capabilities, the agent's status and
//!   concurrency, retries) and says so with `TaskAssigned`.
//! * `TaskAssigned` (to PatchBot) → `TaskStarted` (with the assigned attempt), then
//!   `FixCandidateProposed` + `FixValidated` (validation runs in the sandbox under the
//!   task's dispatch decision), or `FixNotFound` + `TaskCompleted`.
//! * `ActionDecided` → `BranchPushed` + `PullRequestOpened` + `TaskCompleted` (draft PR
//!   when review is required), or `TaskCompleted` (partial) when rejected.
//!
//! Side effects are idempotent: the branch name derives from the task id and the forge
//! returns the existing PR for a branch, so re-processing after a crash opens nothing twice.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{FixAttempt, FixRequest, PatchBot, PatchBotConfig};
use async_trait::async_trait;
use sentinel_events::facts::{
    AutoMergeEnabled, BranchPushed, FixCandidateProposed, FixNotFound, FixValidated,
    PullRequestOpened, TaskCompleted, TaskFailed, TaskStarted,
};
use sentinel_events::types::Artifact;
use sentinel_events::{ActionDecision, Event, Fact, FixStatus, FixTaskPayload, TaskOutcome};
use sentinel_forge::Forge;
use sentinel_runtime::{HandlerError, Output, Stage, producer};
use uuid::Uuid;

/// A task PatchBot has seen queued.
struct Task {
    agent_id: String,
    decision_id: String,
    payload: FixTaskPayload,
    /// The attempt the controller last assigned (0: not assigned yet).
    assigned: i32,
    started: Option<Instant>,
    /// The validated attempt, kept until the policy decides (its work dir holds the fix).
    attempt: Option<FixAttempt>,
    /// The diff recorded in `FixCandidateProposed`: what the policy decided on.
    decided_diff: Option<String>,
}

/// The PatchBot stage.
pub struct PatchBotStage {
    bot: PatchBot,
    forge: Arc<dyn Forge>,
    tasks: HashMap<String, Task>,
    /// Task → event time of its failure chain (for the time-to-PR histogram).
    queued_at: HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// Task → (failure signature, strategy) of each proposed fix whose outcome is pending.
    proposed: HashMap<String, (String, String)>,
    /// (signature, strategy) → past outcomes, folded from `FixOutcomeRecorded`.
    history: HashMap<(String, String), crate::History>,
    producer: String,
    /// Outcomes of past fixes: a strategy's record on a signature moves its confidence.
    rates: sentinel_tracker::learning::SuccessRates,
}

/// The fix branch of a task: `sentinel/fix-<first 12 hex digits of the task id>` (48 bits:
/// collisions between tasks of one repository are negligible).
pub fn fix_branch(task_id: &str) -> String {
    let short: String = task_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    format!("sentinel/fix-{short}")
}

impl PatchBotStage {
    /// Builds the stage: a local jail at `isolation`, pinned tools under `tool_cache`, and
    /// the local git forge keeping its records under `forge_dir`.
    ///
    /// Repository commands are attacker-controlled, so the default is bubblewrap; a weaker
    /// level (no filesystem or network isolation) must be chosen explicitly.
    ///
    /// # Errors
    ///
    /// When the requested isolation does not work on this machine.
    pub async fn new(
        tool_cache: PathBuf,
        forge_dir: PathBuf,
        isolation: sentinel_sandbox::Isolation,
    ) -> crate::Result<Self> {
        let sandbox = Arc::new(sentinel_sandbox::LocalJail::with_isolation(isolation).await?);
        if isolation != sentinel_sandbox::Isolation::Bubblewrap {
            tracing::warn!(
                isolation = isolation.as_str(),
                "Sandbox is weaker than bubblewrap: repository commands can reach the host."
            );
        }
        Ok(Self::with_sandbox(tool_cache, forge_dir, sandbox))
    }

    /// Builds the stage on any sandbox (e.g. the one a
    /// [`sentinel_sandbox::SandboxConfig`] built: the local jail or Docker), with pinned
    /// tools under `tool_cache` and the local git forge keeping its records under
    /// `forge_dir`.
    pub fn with_sandbox(
        tool_cache: PathBuf,
        forge_dir: PathBuf,
        sandbox: Arc<dyn sentinel_sandbox::Sandbox>,
    ) -> Self {
        let bot = PatchBot::new(PatchBotConfig {
            command_timeout: Duration::from_secs(300),
            ..PatchBotConfig::new(tool_cache, sandbox)
        });
        let forge: Arc<dyn Forge> = Arc::new(sentinel_forge::LocalGitForge::new(forge_dir));
        Self {
            bot,
            forge,
            tasks: HashMap::new(),
            queued_at: HashMap::new(),
            proposed: HashMap::new(),
            history: HashMap::new(),
            producer: producer("patchbot"),
            rates: sentinel_tracker::learning::SuccessRates::default(),
        }
    }

    /// Checks missing Python dependencies against `index` instead of PyPI (`None`: no
    /// dependency is ever added).
    pub fn with_python_index(mut self, index: Option<crate::index::PackageIndex>) -> Self {
        let mut config = self.bot.config().clone();
        config.python_index = index;
        self.bot = PatchBot::new(config);
        self
    }

    /// Changes PatchBot's configuration, e.g. to turn the LLM strategy on
    /// ([`PatchBotConfig::llm`]) or to use the policy's protected globs
    /// ([`PatchBotConfig::protected_globs`]).
    pub fn with_config(mut self, change: impl FnOnce(&mut PatchBotConfig)) -> Self {
        let mut config = self.bot.config().clone();
        change(&mut config);
        self.bot = PatchBot::new(config);
        self
    }

    /// Replaces the forge (e.g. a [`sentinel_forge::GitHubForge`]).
    pub fn with_forge(mut self, forge: Arc<dyn Forge>) -> Self {
        self.forge = forge;
        self
    }

    async fn run_task(&mut self, event: &Event, task_id: &str) -> Result<Output, HandlerError> {
        let mut out = Output::none();
        let Some(task) = self.tasks.get_mut(task_id) else {
            return Ok(out);
        };
        task.started = Some(Instant::now());
        out.push(event.caused(
            TaskStarted {
                task_id: task_id.to_owned(),
                agent_id: task.agent_id.clone(),
                attempt: task.assigned.max(1),
                worker: self.producer.clone(),
            },
            &self.producer,
            0,
            None,
        ));
        let p = &task.payload;
        let req = FixRequest {
            task_id: Uuid::parse_str(task_id).unwrap_or_else(|_| Uuid::new_v4()),
            repository: p.repository.clone(),
            commit: p.commit.clone(),
            command: p.command.clone().unwrap_or_default(),
            failure_type: p.failure_type,
            tool: p.tool.clone(),
            test_command: None,
            log_excerpt: p.log_excerpt.clone(),
            history: self
                .history
                .iter()
                .filter(|((signature, _), _)| *signature == p.signature)
                .map(|((_, strategy), h)| (strategy.clone(), *h))
                .collect(),
        };
        let mut attempt = self
            .bot
            .attempt(&req)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        match attempt.status {
            crate::FixStatus::Fixed => {
                // Prior × validation, blended with this strategy's outcomes on this signature.
                let confidence = self.rates.blend_confidence(
                    attempt.confidence,
                    &task.payload.signature,
                    attempt.strategy.as_deref().unwrap_or_default(),
                );
                attempt.confidence = confidence;
                let candidate_id = Uuid::new_v5(&event.event_id, b"candidate-0").to_string();
                out.push(event.caused(
                    FixCandidateProposed {
                        task_id: task_id.to_owned(),
                        candidate_id: candidate_id.clone(),
                        strategy: attempt.strategy.clone().unwrap_or_default(),
                        diff: attempt.diff.clone(),
                        files_changed: attempt.files_changed.clone(),
                        tool_versions: attempt.tool_versions.clone(),
                    },
                    &self.producer,
                    1,
                    None,
                ));
                out.push(event.caused(
                    FixValidated {
                        task_id: task_id.to_owned(),
                        candidate_id,
                        decision_id: task.decision_id.clone(),
                        passed: true,
                        confidence,
                        steps: attempt.validation.clone(),
                        protected_paths_touched: attempt.protected_paths_touched.clone(),
                    },
                    &self.producer,
                    2,
                    None,
                ));
                task.attempt = Some(attempt);
            }
            status => {
                let status = match status {
                    crate::FixStatus::NotFixable => FixStatus::NotFixable,
                    _ => FixStatus::NoFix,
                };
                out.push(event.caused(
                    FixNotFound {
                        task_id: task_id.to_owned(),
                        status,
                        reason: attempt.reason.clone(),
                    },
                    &self.producer,
                    1,
                    None,
                ));
                out.push(event.caused(
                    completed(
                        task,
                        task_id,
                        TaskOutcome::Partial,
                        vec![report(&attempt.reason)],
                    ),
                    &self.producer,
                    2,
                    None,
                ));
                self.tasks.remove(task_id);
            }
        }
        Ok(out)
    }

    async fn act(
        &mut self,
        event: &Event,
        task_id: &str,
        decision: ActionDecision,
    ) -> Result<Output, HandlerError> {
        let mut out = Output::none();
        if !self.tasks.contains_key(task_id) {
            return Ok(out);
        }
        if decision == ActionDecision::Reject {
            if let Some(task) = self.tasks.remove(task_id) {
                out.push(event.caused(
                    completed(
                        &task,
                        task_id,
                        TaskOutcome::Partial,
                        vec![report("rejected by policy")],
                    ),
                    &self.producer,
                    0,
                    None,
                ));
            }
            return Ok(out);
        }
        // After a restart the work dir is gone: produce the fix again, and act only if it is
        // the very diff the policy decided on.
        if let Some(t) = self.tasks.get(task_id)
            && t.attempt.is_none()
        {
            let decided_diff = t.decided_diff.clone();
            let _ = self.run_task(event, task_id).await?;
            let same = self
                .tasks
                .get(task_id)
                .and_then(|t| t.attempt.as_ref())
                .is_some_and(|a| decided_diff.as_deref().is_none_or(|d| d == a.diff));
            if !same {
                return Err(HandlerError::Poison(format!(
                    "task {task_id}: after a restart the fix could not be reproduced identically"
                )));
            }
        }
        let Some(task) = self.tasks.get(task_id) else {
            return Ok(out);
        };
        let Some(attempt) = &task.attempt else {
            return Err(HandlerError::Poison(format!(
                "task {task_id}: the fix could not be reproduced"
            )));
        };
        let decision_id = event.event_id.to_string();
        let p = &task.payload;
        let title = format!(
            "Fix: {} failure in `{}`",
            p.failure_type,
            p.command.as_deref().unwrap_or("CI")
        );
        self.bot
            .commit(attempt, &title)
            .await
            .map_err(|e| HandlerError::Transient(format!("commit: {e}")))?;
        let workdir = attempt
            .workdir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .ok_or_else(|| HandlerError::Poison("fixed attempt without a work dir".into()))?;
        let branch = fix_branch(task_id);
        let repo = sentinel_forge::RepoRef::new(&p.repository);
        let pushed = self
            .forge
            .push_branch(&repo, &workdir, &branch)
            .await
            .map_err(|e| HandlerError::Transient(format!("push: {e}")))?;
        let draft = decision == ActionDecision::RequireReview;
        let body = pr_body(p, attempt, decision);
        let pr = self
            .forge
            .open_pull_request(&sentinel_forge::PullRequestRequest {
                repository: p.repository.clone(),
                branch: branch.clone(),
                base: p.branch.clone(),
                title: title.clone(),
                body,
                draft,
                labels: vec!["sentinel".into(), p.failure_type.to_string()],
            })
            .await
            .map_err(|e| HandlerError::Transient(format!("open PR: {e}")))?;
        // Auto-merge only on an explicit `auto_merge` decision; recorded as its own side
        // effect (`AutoMergeEnabled`, audited against the decision).
        let mut auto_merge_enabled = false;
        if decision == ActionDecision::AutoMerge {
            auto_merge_enabled = self
                .forge
                .enable_auto_merge(&pr)
                .await
                .map_err(|e| HandlerError::Transient(format!("enable auto-merge: {e}")))?;
            if !auto_merge_enabled {
                tracing::info!(forge = self.forge.name(), url = %pr.url, "Forge has no auto-merge; the PR stays open.");
            }
        }
        out.push(event.caused(
            BranchPushed {
                task_id: task_id.to_owned(),
                repository: p.repository.clone(),
                branch: branch.clone(),
                commit: pushed.commit.clone(),
                decision_id: decision_id.clone(),
            },
            &self.producer,
            10,
            None,
        ));
        out.push(event.caused(
            PullRequestOpened {
                task_id: task_id.to_owned(),
                repository: p.repository.clone(),
                forge: self.forge.name().to_owned(),
                number: i64::try_from(pr.number).unwrap_or_default(),
                url: pr.url.clone(),
                branch: branch.clone(),
                base: p.branch.clone(),
                title,
                draft,
                decision_id: decision_id.clone(),
            },
            &self.producer,
            11,
            None,
        ));
        if auto_merge_enabled {
            out.push(event.caused(
                AutoMergeEnabled {
                    task_id: task_id.to_owned(),
                    repository: p.repository.clone(),
                    url: pr.url.clone(),
                    forge: self.forge.name().to_owned(),
                    decision_id,
                },
                &self.producer,
                13,
                None,
            ));
        }
        let artifacts = vec![
            Artifact {
                kind: "pull_request".into(),
                name: branch,
                uri: Some(pr.url.clone()),
                content: None,
            },
            Artifact {
                kind: "fix_diff".into(),
                name: "diff".into(),
                uri: None,
                content: Some(attempt.diff.clone()),
            },
        ];
        out.push(event.caused(
            completed(task, task_id, TaskOutcome::Completed, artifacts),
            &self.producer,
            12,
            None,
        ));
        self.tasks.remove(task_id);
        Ok(out)
    }
}

fn report(text: &str) -> Artifact {
    Artifact {
        kind: "report".into(),
        name: "patchbot".into(),
        uri: None,
        content: Some(text.to_owned()),
    }
}

fn completed(
    task: &Task,
    task_id: &str,
    outcome: TaskOutcome,
    artifacts: Vec<Artifact>,
) -> TaskCompleted {
    let ms = task
        .started
        .map(|s| s.elapsed().as_millis())
        .unwrap_or_default();
    TaskCompleted {
        task_id: task_id.to_owned(),
        agent_id: task.agent_id.clone(),
        outcome,
        duration_ms: i64::try_from(ms).unwrap_or(i64::MAX),
        artifacts,
        metrics: Default::default(),
    }
}

fn pr_body(p: &FixTaskPayload, a: &FixAttempt, decision: ActionDecision) -> String {
    let mut s = format!(
        "## Sentinel fix\n\n**Failure:** {} (`{}`) on `{}` at {}\n\n**Strategy:** {}  \n**Confidence:** {:.2}  \n**Policy decision:** {}\n\n",
        p.failure_type,
        p.command.as_deref().unwrap_or("?"),
        p.branch,
        p.commit,
        a.strategy.as_deref().unwrap_or("?"),
        a.confidence,
        decision.as_str(),
    );
    s.push_str("### Validation\n\n| command | exit | ms |\n|---|---|---|\n");
    for v in &a.validation {
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            v.command, v.exit_code, v.duration_ms
        ));
    }
    for v in a.baseline.iter().chain(&a.validation) {
        let fence = fence_for(&v.output_tail);
        s.push_str(&format!(
            "\n<details><summary><code>{}</code> exited {} ({} ms)</summary>\n\n{fence}text\n{}\n{fence}\n</details>\n",
            html_escape(&v.command),
            v.exit_code,
            v.duration_ms,
            v.output_tail
        ));
    }
    if !a.candidates.is_empty() {
        // The LLM strategy's candidates: which one this is, and why the others were not.
        s.push_str("\n### LLM candidates\n\n| # | outcome | files | explanation | reason |\n|---|---|---|---|---|\n");
        let cell = |t: &str| html_escape(t).replace('|', "\\|").replace('\n', " ");
        for c in &a.candidates {
            let outcome = match c.outcome {
                crate::llm::CandidateOutcome::Discarded => "discarded",
                crate::llm::CandidateOutcome::FailedValidation => "failed validation",
                crate::llm::CandidateOutcome::Validated => "validated",
            };
            s.push_str(&format!(
                "| {} | {outcome} | {} | {} | {} |\n",
                c.index,
                cell(&c.files.join(", ")),
                cell(&c.explanation),
                cell(&c.reason)
            ));
        }
    }
    let fence = fence_for(&a.diff);
    s.push_str(&format!(
        "\n### Diff\n\n{fence}diff\n{}\n{fence}\n\nGenerated by PatchBot.\n",
        a.diff
    ));
    s
}

/// A fence longer than any backtick run in `text`: repository content cannot close it.
fn fence_for(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[async_trait]
impl Stage for PatchBotStage {
    fn name(&self) -> &'static str {
        "patchbot"
    }

    fn needs_history(&self) -> bool {
        true
    }

    /// Pushing and opening PRs talk to a forge that may be down for a while: retry for
    /// minutes (about 10 attempts, up to a minute apart) before giving up on an input.
    fn tune(&self, config: sentinel_runtime::RunnerConfig) -> sentinel_runtime::RunnerConfig {
        sentinel_runtime::RunnerConfig {
            max_attempts: 10,
            retry_min_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            ..config
        }
    }

    fn fold(&mut self, event: &Event) {
        self.rates.apply(event);
        match &event.fact {
            Fact::TaskQueued(t)
                if t.agent_id
                    == sentinel_controller::agent_id(sentinel_controller::PATCHBOT).to_string() =>
            {
                self.queued_at
                    .entry(t.task_id.clone())
                    .or_insert(event.occurred_at);
                if let Ok(payload) = serde_json::from_str::<FixTaskPayload>(&t.payload) {
                    self.tasks.entry(t.task_id.clone()).or_insert(Task {
                        agent_id: t.agent_id.clone(),
                        decision_id: t.decision_id.clone().unwrap_or_default(),
                        payload,
                        assigned: 0,
                        started: None,
                        attempt: None,
                        decided_diff: None,
                    });
                }
            }
            Fact::TaskAssigned(a) => {
                if let Some(t) = self.tasks.get_mut(&a.task_id)
                    && a.agent_id == t.agent_id
                {
                    t.assigned = t.assigned.max(a.attempt);
                }
            }
            Fact::FixCandidateProposed(c) => {
                if let Some(t) = self.tasks.get_mut(&c.task_id) {
                    t.decided_diff = Some(c.diff.clone());
                    self.proposed.insert(
                        c.task_id.clone(),
                        (t.payload.signature.clone(), c.strategy.clone()),
                    );
                }
            }
            Fact::FixOutcomeRecorded(o) => {
                if let Some(key) = self.proposed.remove(&o.task_id) {
                    let h = self.history.entry(key).or_default();
                    h.attempts = h.attempts.saturating_add(1);
                    if o.success {
                        h.successes = h.successes.saturating_add(1);
                    }
                }
            }
            Fact::TaskCompleted(t) => {
                self.tasks.remove(&t.task_id);
                self.queued_at.remove(&t.task_id);
            }
            Fact::TaskFailed(t) if !t.retryable => {
                self.tasks.remove(&t.task_id);
            }
            Fact::TaskCancelled(t) => {
                self.tasks.remove(&t.task_id);
            }
            _ => {}
        }
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let queued_at = match &event.fact {
            Fact::ActionDecided(a) => self.queued_at.get(&a.task_id).copied(),
            _ => None,
        };
        let out = self.handle_fact(event).await?;
        record_metrics(&out, queued_at);
        Ok(out)
    }
}

/// Agent-task, pull-request and time-to-PR metrics of what the stage appended.
/// `queued_at` is the event time of the task's failure chain (TaskQueued inherits it).
fn record_metrics(out: &Output, queued_at: Option<chrono::DateTime<chrono::Utc>>) {
    use sentinel_runtime::metrics::names;
    for e in out.events() {
        match &e.fact {
            Fact::TaskCompleted(t) => {
                let status = match t.outcome {
                    sentinel_events::types::TaskOutcome::Completed => "completed",
                    sentinel_events::types::TaskOutcome::Failed => "failed",
                    sentinel_events::types::TaskOutcome::Partial => "partial",
                };
                metrics::counter!(names::AGENT_TASKS, "agent" => "patchbot", "status" => status)
                    .increment(1);
                #[allow(clippy::cast_precision_loss)] // milliseconds of a task: far below 2^53
                metrics::histogram!(names::AGENT_TASK_DURATION, "agent" => "patchbot")
                    .record(t.duration_ms.max(0) as f64 / 1000.0);
            }
            Fact::TaskFailed(t) if !t.retryable => {
                metrics::counter!(names::AGENT_TASKS, "agent" => "patchbot", "status" => "failed")
                    .increment(1);
            }
            Fact::PullRequestOpened(_) => {
                metrics::counter!(names::PULL_REQUESTS, "event" => "opened").increment(1);
                if let Some(at) = queued_at {
                    let secs = (sentinel_events::envelope::now() - at).num_milliseconds();
                    #[allow(clippy::cast_precision_loss)] // a duration in ms: far below 2^53
                    metrics::histogram!(names::TIME_TO_PR).record(secs.max(0) as f64 / 1000.0);
                }
            }
            _ => {}
        }
    }
}

impl PatchBotStage {
    async fn handle_fact(&mut self, event: &Event) -> Result<Output, HandlerError> {
        match &event.fact {
            // Only what the controller assigned to PatchBot runs, and only its latest
            // attempt; a fix already validated waits for the policy instead of running again.
            Fact::TaskAssigned(t)
                if self.tasks.get(&t.task_id).is_some_and(|task| {
                    task.agent_id == t.agent_id
                        && task.assigned == t.attempt
                        && task.attempt.is_none()
                }) =>
            {
                let task_id = t.task_id.clone();
                if t.delay_ms > 0 {
                    // Retry backoff chosen by the controller (bounded like its maximum).
                    let delay = Duration::from_millis(u64::try_from(t.delay_ms).unwrap_or(0))
                        .min(Duration::from_secs(300));
                    tokio::time::sleep(delay).await;
                }
                match self.run_task(event, &task_id).await {
                    Err(HandlerError::Poison(reason)) => {
                        let mut out = Output::none();
                        out.push(event.caused(
                            TaskFailed {
                                task_id: task_id.clone(),
                                agent_id: t.agent_id.clone(),
                                attempt: t.attempt,
                                error: reason,
                                retryable: false,
                                duration_ms: 0,
                            },
                            &self.producer,
                            9,
                            None,
                        ));
                        self.tasks.remove(&task_id);
                        Ok(out)
                    }
                    other => other,
                }
            }
            Fact::ActionDecided(a) => {
                let task_id = a.task_id.clone();
                let agent_id = self.tasks.get(&task_id).map(|t| t.agent_id.clone());
                match (self.act(event, &task_id, a.decision).await, agent_id) {
                    // A task that cannot proceed ends with a terminal fact, never silently.
                    (Err(HandlerError::Poison(reason)), Some(agent_id)) => {
                        self.tasks.remove(&task_id);
                        let mut out = Output::none();
                        out.push(event.caused(
                            TaskFailed {
                                task_id,
                                agent_id,
                                attempt: 1,
                                error: reason,
                                retryable: false,
                                duration_ms: 0,
                            },
                            &self.producer,
                            19,
                            None,
                        ));
                        Ok(out)
                    }
                    (other, _) => other,
                }
            }
            _ => Ok(Output::none()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sentinel_controller::{ControllerStage, PATCHBOT, agent_id, patchbot_registration};
    use sentinel_events::facts::{AgentStatusChanged, TaskAssigned, TaskQueued};
    use sentinel_events::{AgentStatus, DEFAULT_TENANT, FailureType, TASK_FIX_FAILURE};

    use super::*;

    fn facts(out: &Output) -> Vec<&Fact> {
        out.events().map(|e| &e.fact).collect()
    }

    async fn step<S: Stage>(stage: &mut S, event: &Event) -> Output {
        stage.fold(event);
        stage.handle(event).await.unwrap()
    }

    #[test]
    fn the_pr_body_lists_the_llm_candidates() {
        let payload = FixTaskPayload {
            failure_event_id: "f".into(),
            repository: "r".into(),
            branch: "main".into(),
            commit: "c".into(),
            command: Some("python3 -m unittest".into()),
            failure_type: FailureType::TestFailure,
            tool: None,
            pattern_id: None,
            signature: "s".into(),
            modules: vec![],
            files: vec![],
            log_excerpt: String::new(),
        };
        let req = FixRequest {
            task_id: Uuid::new_v4(),
            repository: "r".into(),
            commit: "c".into(),
            command: "python3 -m unittest".into(),
            failure_type: FailureType::TestFailure,
            tool: None,
            test_command: None,
            log_excerpt: String::new(),
            history: Default::default(),
        };
        let mut a = FixAttempt::new(&req, "local-jail/bubblewrap".into());
        a.strategy = Some("llm".into());
        a.candidates = vec![
            crate::llm::CandidateReport {
                index: 1,
                explanation: String::new(),
                files: vec![".github/workflows/ci.yml".into()],
                outcome: crate::llm::CandidateOutcome::Discarded,
                reason: "edits the protected path .github/workflows/ci.yml: a | b".into(),
            },
            crate::llm::CandidateReport {
                index: 2,
                explanation: "add <adds>".into(),
                files: vec!["calc.py".into()],
                outcome: crate::llm::CandidateOutcome::Validated,
                reason: "validated".into(),
            },
        ];
        let body = pr_body(&payload, &a, ActionDecision::RequireReview);
        assert!(body.contains("### LLM candidates"), "{body}");
        assert!(
            body.contains("| 1 | discarded | .github/workflows/ci.yml |  | edits the protected path .github/workflows/ci.yml: a \\| b |"),
            "{body}"
        );
        assert!(
            body.contains("| 2 | validated | calc.py | add &lt;adds&gt; | validated |"),
            "{body}"
        );
    }

    /// The controller decides when PatchBot works: a queued task runs only once the
    /// controller assigns it to PatchBot (not while PatchBot is paused, not when assigned
    /// to another agent), and then with the assigned attempt number.
    #[tokio::test]
    async fn only_tasks_the_controller_assigns_to_patchbot_run() {
        let dir = tempfile::tempdir().unwrap();
        let mut bot = PatchBotStage::new(
            dir.path().join("tools"),
            dir.path().join("forge"),
            sentinel_sandbox::Isolation::ProcessOnly,
        )
        .await
        .unwrap();
        let mut controller = ControllerStage::default();
        let at = sentinel_events::envelope::now();
        let patchbot = agent_id(PATCHBOT).to_string();
        let registration = patchbot_registration("test", at);
        let event = |fact: Fact, id: &str| {
            Event::origin(fact, Some(id), DEFAULT_TENANT, "repo", at, "test@0")
        };
        let payload = FixTaskPayload {
            failure_event_id: "f1".into(),
            repository: "/nonexistent/repo".into(),
            branch: "main".into(),
            commit: "abc".into(),
            command: Some("curl https://example.invalid".into()),
            failure_type: FailureType::Infrastructure,
            tool: None,
            pattern_id: None,
            signature: "infrastructure:0".into(),
            modules: vec![],
            files: vec![],
            log_excerpt: "Could not resolve host".into(),
        };
        let task_id = Uuid::new_v4().to_string();
        let queued = event(
            TaskQueued {
                task_id: task_id.clone(),
                agent_id: patchbot.clone(),
                task_type: TASK_FIX_FAILURE.into(),
                priority: 0,
                decision_id: Some("decision-1".into()),
                failure_event_id: Some("f1".into()),
                payload: serde_json::to_string(&payload).unwrap(),
                timeout_seconds: 900,
                max_attempts: 1,
            }
            .into(),
            "queued",
        );
        let paused = event(
            AgentStatusChanged {
                agent_id: patchbot.clone(),
                status: AgentStatus::Paused,
                reason: Some("maintenance".into()),
            }
            .into(),
            "paused",
        );
        let resumed = event(
            AgentStatusChanged {
                agent_id: patchbot.clone(),
                status: AgentStatus::Active,
                reason: None,
            }
            .into(),
            "resumed",
        );

        for e in [&registration, &paused] {
            assert!(step(&mut controller, e).await.is_empty());
            assert!(step(&mut bot, e).await.is_empty());
        }
        // Queued while PatchBot is paused: the controller assigns nothing, PatchBot waits.
        assert!(step(&mut bot, &queued).await.is_empty());
        let out = step(&mut controller, &queued).await;
        assert!(
            !facts(&out)
                .iter()
                .any(|f| matches!(f, Fact::TaskAssigned(_))),
            "{out:?}"
        );

        // Assigned to someone else: not PatchBot's to run.
        let elsewhere = event(
            TaskAssigned {
                task_id: task_id.clone(),
                agent_id: Uuid::new_v4().to_string(),
                attempt: 1,
                task_type: TASK_FIX_FAILURE.into(),
                payload: serde_json::to_string(&payload).unwrap(),
                timeout_seconds: 900,
                delay_ms: 0,
                priority: 0,
            }
            .into(),
            "elsewhere",
        );
        assert!(step(&mut bot, &elsewhere).await.is_empty());

        // Resumed: the controller assigns attempt 1 to PatchBot, which runs it.
        assert!(step(&mut bot, &resumed).await.is_empty());
        let out = step(&mut controller, &resumed).await;
        let assigned = out
            .events()
            .find(|e| matches!(&e.fact, Fact::TaskAssigned(a) if a.agent_id == patchbot))
            .cloned()
            .expect("assigned to PatchBot");
        let out = step(&mut bot, &assigned).await;
        match facts(&out).as_slice() {
            [
                Fact::TaskStarted(s),
                Fact::FixNotFound(n),
                Fact::TaskCompleted(c),
            ] => {
                assert_eq!((s.task_id.as_str(), s.attempt), (task_id.as_str(), 1));
                assert_eq!(n.status, FixStatus::NotFixable);
                assert_eq!(c.outcome, TaskOutcome::Partial);
            }
            other => panic!("{other:?}"),
        }
        // The task is over: a replayed assignment runs nothing.
        for e in out.events() {
            bot.fold(e);
        }
        assert!(bot.handle(&assigned).await.unwrap().is_empty());
    }
}
