//! PatchBot as an SDK [`Agent`]: a thin adapter from a `fix_failure` task to
//! [`PatchBot::attempt`] and from its [`FixAttempt`] to an [`AgentResult`].
//!
//! The adapter produces and validates a fix (artifacts: the `fix_diff` and a `report` with
//! the validation evidence); it opens nothing. Pushing the branch and opening the pull
//! request stay behind the policy's `ActionDecided` in [`crate::stage`], which is the only
//! place holding an allowing decision for those side effects.

use std::fmt::Write as _;

use async_trait::async_trait;
use sentinel_agent_sdk::{
    Agent, AgentConfig, AgentError, AgentResult, AgentTask, ArtifactKind, Health,
};
use sentinel_events::{FixTaskPayload, TASK_FIX_FAILURE};
use uuid::Uuid;

use crate::{FixAttempt, FixRequest, FixStatus, PatchBot};

/// PatchBot behind the [`Agent`] trait.
pub struct PatchBotAgent {
    bot: PatchBot,
    test_command: Option<String>,
}

impl PatchBotAgent {
    /// Wraps a configured PatchBot.
    pub fn new(bot: PatchBot) -> Self {
        PatchBotAgent {
            bot,
            test_command: None,
        }
    }

    /// The request for a task, from its [`FixTaskPayload`].
    fn request(&self, task: &AgentTask) -> Result<FixRequest, String> {
        let p: FixTaskPayload = serde_json::from_value(task.payload.clone())
            .map_err(|e| format!("payload is not a fix task: {e}"))?;
        let command = p
            .command
            .filter(|c| !c.trim().is_empty())
            .ok_or("the failing command is unknown: nothing to validate against")?;
        Ok(FixRequest {
            task_id: Uuid::parse_str(&task.id).unwrap_or_else(|_| {
                Uuid::new_v5(
                    &sentinel_events::envelope::EVENT_ID_NAMESPACE,
                    task.id.as_bytes(),
                )
            }),
            repository: p.repository,
            commit: p.commit,
            command,
            failure_type: p.failure_type,
            tool: p.tool,
            test_command: self.test_command.clone(),
            log_excerpt: p.log_excerpt,
            // The SDK adapter runs tasks without the stage's folded outcome history.
            history: Default::default(),
        })
    }
}

/// The validation evidence as Markdown.
fn report(a: &FixAttempt) -> String {
    let mut s = format!(
        "strategy: {}\nconfidence: {:.2}\nsandbox: {}\nreason: {}\n\n| command | exit | ms |\n|---|---|---|\n",
        a.strategy.as_deref().unwrap_or("-"),
        a.confidence,
        a.sandbox,
        a.reason
    );
    for v in a.baseline.iter().chain(&a.validation) {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} |",
            v.command, v.exit_code, v.duration_ms
        );
    }
    s
}

#[async_trait]
impl Agent for PatchBotAgent {
    fn name(&self) -> &'static str {
        sentinel_controller::PATCHBOT
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    fn capabilities(&self) -> Vec<String> {
        vec![TASK_FIX_FAILURE.to_owned()]
    }

    /// Settings: `{"test_command": "..."}` (optional), run after the failing command.
    async fn initialize(&mut self, config: &AgentConfig) -> Result<(), AgentError> {
        self.test_command = match config.settings.get("test_command") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(other) => {
                return Err(AgentError::Config(format!(
                    "test_command must be a non-empty string: {other}"
                )));
            }
        };
        Ok(())
    }

    async fn execute(&self, task: AgentTask) -> AgentResult {
        if task.task_type != TASK_FIX_FAILURE {
            return AgentResult::failed(&task.id, format!("cannot do {:?}", task.task_type))
                .permanent();
        }
        let req = match self.request(&task) {
            Ok(r) => r,
            Err(e) => return AgentResult::failed(&task.id, e).permanent(),
        };
        task.context.progress.report(0.1, "reproducing the failure");
        let attempt = match self.bot.attempt(&req).await {
            Ok(a) => a,
            // Cloning, tool provisioning or the sandbox failed: another attempt may work.
            Err(e) => return AgentResult::failed(&task.id, e.to_string()),
        };
        let evidence = ArtifactKind::Report.inline("validation", report(&attempt));
        let steps = (attempt.validation.len() + usize::from(attempt.baseline.is_some())) as f64;
        match attempt.status {
            FixStatus::Fixed => AgentResult::completed(&task.id)
                .artifact(ArtifactKind::FixDiff.inline("diff", attempt.diff.clone()))
                .artifact(evidence)
                .metric("confidence", attempt.confidence)
                .metric("files_changed", attempt.files_changed.len() as f64)
                .metric("validation_steps", steps),
            FixStatus::NoFix | FixStatus::NotFixable => {
                AgentResult::partial(&task.id, attempt.reason.clone())
                    .artifact(evidence)
                    .metric("validation_steps", steps)
            }
        }
    }

    async fn health(&self) -> Health {
        let root = &self.bot.config().tool_cache;
        match std::fs::create_dir_all(root) {
            Ok(()) => Health::Healthy,
            Err(e) => Health::Unhealthy(format!("tool cache {}: {e}", root.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use sentinel_agent_sdk::{Execution, ResultStatus, execute_with_limits};
    use sentinel_events::FailureType;

    use super::*;
    use crate::PatchBotConfig;

    fn git(dir: &Path, args: &[&str]) -> String {
        sentinel_forge::testing::git_as(dir, args, "Dev", "dev@example.invalid")
    }

    async fn agent() -> PatchBotAgent {
        let cache = std::env::var_os("SENTINEL_TOOL_CACHE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("sentinel-tool-cache"));
        let jail = sentinel_sandbox::LocalJail::detect().await;
        let mut config = PatchBotConfig::new(cache, Arc::new(jail));
        config.command_timeout = Duration::from_secs(120);
        let mut a = PatchBotAgent::new(PatchBot::new(config));
        a.initialize(&AgentConfig::default()).await.unwrap();
        a
    }

    fn payload(repo: &Path, commit: &str, command: Option<&str>) -> serde_json::Value {
        serde_json::to_value(FixTaskPayload {
            failure_event_id: "f".into(),
            repository: repo.display().to_string(),
            branch: "main".into(),
            commit: commit.into(),
            command: command.map(str::to_owned),
            failure_type: FailureType::Formatting,
            tool: Some("rustfmt".into()),
            pattern_id: None,
            signature: "s".into(),
            modules: vec![],
            files: vec![],
            log_excerpt: String::new(),
        })
        .unwrap()
    }

    async fn run(a: &PatchBotAgent, payload: serde_json::Value) -> AgentResult {
        let (task, _rx) =
            AgentTask::standalone(TASK_FIX_FAILURE, payload, Duration::from_secs(300));
        match execute_with_limits(a, task).await {
            Execution::Finished(r) => r,
            other => panic!("{other:?}"),
        }
    }

    /// A real repository with a `cargo fmt --check` failure, fixed by the toolchain's
    /// rustfmt in the local jail, through the Agent trait.
    #[tokio::test]
    async fn a_fix_task_yields_a_validated_diff_and_evidence() {
        let repo = tempfile::TempDir::new().unwrap();
        git(repo.path(), &["init", "--quiet"]);
        std::fs::write(
            repo.path().join("Cargo.toml"),
            "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        std::fs::create_dir(repo.path().join("src")).unwrap();
        std::fs::write(
            repo.path().join("src/lib.rs"),
            "pub fn add(a:u32,b:u32)->u32{a+b}\n",
        )
        .unwrap();
        git(repo.path(), &["add", "."]);
        git(repo.path(), &["commit", "--quiet", "-m", "initial"]);
        let sha = git(repo.path(), &["rev-parse", "HEAD"]);
        let a = agent().await;
        assert_eq!(a.capabilities(), [TASK_FIX_FAILURE]);
        assert_eq!(a.health().await, Health::Healthy);

        let r = run(
            &a,
            payload(repo.path(), &sha, Some("cargo fmt --all -- --check")),
        )
        .await;
        assert_eq!(r.status, ResultStatus::Completed, "{r:?}");
        let diff = r.artifacts.iter().find(|x| x.kind == "fix_diff").unwrap();
        assert!(
            diff.content
                .as_deref()
                .unwrap()
                .contains("+pub fn add(a: u32, b: u32) -> u32 {"),
            "{diff:?}"
        );
        let report = r.artifacts.iter().find(|x| x.kind == "report").unwrap();
        assert!(report.content.as_deref().unwrap().contains("cargo_fmt"));
        assert!(r.metrics["confidence"] > 0.0);
        // The original working tree is untouched.
        assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");

        // Already formatted: nothing to fix is a partial result, not a failure.
        let r = run(&a, payload(repo.path(), &sha, Some("true"))).await;
        assert_eq!(r.status, ResultStatus::Partial, "{r:?}");
    }

    #[tokio::test]
    async fn bad_tasks_fail_permanently() {
        let a = agent().await;
        let r = run(&a, serde_json::json!({ "not": "a fix task" })).await;
        assert_eq!(r.status, ResultStatus::Failed);
        assert!(!r.retryable);
        let r = run(&a, payload(Path::new("/nonexistent"), "abc", None)).await;
        assert!(r.error_message.unwrap().contains("failing command"));
        let mut bad = PatchBotAgent::new(a.bot);
        let config = AgentConfig {
            settings: serde_json::json!({ "test_command": 3 }),
            ..AgentConfig::default()
        };
        assert!(bad.initialize(&config).await.is_err());
    }
}
