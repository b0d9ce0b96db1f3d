//! `sentinel fix`: an offline PatchBot run on a local repository — classify, generate,
//! validate — that never touches the repository's working tree and opens nothing.
//!
//! The failing commit is cloned into a fresh work dir; every command runs in the sandbox
//! chosen by `[sandbox]` and `--sandbox-isolation` (the local jail with bubblewrap by
//! default). Without `--log`, the failing
//! command is run once on a checkout to obtain the log that is classified.
//!
//! Stable JSON contract (extra keys may be added, none removed):
//!
//! ```json
//! {"status": "fixed|no_fix|not_fixable", "failure_type": "formatting", "strategy": "black",
//!  "confidence": 0.95, "diff": "…", "files_changed": ["app.py"],
//!  "validation": [{"command": "black --check .", "exit_code": 0, "duration_ms": 180}]}
//! ```
//!
//! Exit code 0 when fixed, 1 when not, 2 when the run itself failed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use sentinel_patchbot::{FixAttempt, FixRequest, FixStatus, PatchBot, PatchBotConfig};

use crate::config::GlobalOpts;

/// Largest log read from `--log` (its tail is kept).
const MAX_LOG_BYTES: u64 = 8 << 20;
/// Bytes of the log kept as the request's (redacted) excerpt.
const EXCERPT_BYTES: usize = 64 * 1024;

/// The arguments of `sentinel fix`.
#[derive(Debug, Clone)]
pub struct FixArgs {
    /// The repository (a local git work tree or bare repository).
    pub repo: PathBuf,
    /// The failing commit; `HEAD` of the repository when `None`.
    pub commit: Option<String>,
    /// The failing command.
    pub command: String,
    /// The CI log; the command is run to obtain it when `None`.
    pub log: Option<PathBuf>,
    /// The test command run after the failing command passes (overrides the repository's
    /// `.sentinel.toml`).
    pub test_command: Option<String>,
    /// Print JSON (the stable contract) rather than text.
    pub json: bool,
}

/// Runs `sentinel fix` and returns its exit code.
///
/// # Errors
///
/// When the run itself fails: bad repository or commit, unreadable log, a sandbox that does
/// not work here, a tool that cannot be provisioned.
pub async fn run(global: &GlobalOpts, args: FixArgs) -> Result<ExitCode> {
    let settings = global.resolve()?;
    let repo = std::fs::canonicalize(&args.repo)
        .with_context(|| format!("repository {}", args.repo.display()))?;
    let rev = args.commit.as_deref().unwrap_or("HEAD");
    if rev.starts_with('-') {
        bail!("commit {rev:?} must not start with '-'");
    }
    let commit = sentinel_forge::git::run(
        Some(&repo),
        [
            "rev-parse",
            "--verify",
            "--end-of-options",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .await
    .with_context(|| format!("{rev} is not a commit of {}", repo.display()))?
    .trim()
    .to_string();

    let sandbox = crate::app::patchbot_sandbox(&settings).await?;
    let mut config = PatchBotConfig::new(settings.tool_cache.clone(), sandbox);
    config.protected_globs = sentinel_policy::load(settings.policy.as_deref())?
        .rules
        .paths
        .protected;
    // With an `[llm]` table in --config, failures no deterministic strategy fixes go to
    // the LLM strategy.
    config.llm = crate::app::patchbot_llm(&settings)?;
    let bot = PatchBot::new(config);
    let repository = repo.display().to_string();

    let log = match &args.log {
        Some(path) => read_log(path)?,
        None => {
            let run = bot
                .reproduce(&repository, &commit, &args.command)
                .await
                .context("running the failing command on a checkout")?;
            if run.step.exit_code == 0 {
                let report = Report {
                    status: FixStatus::NoFix,
                    failure_type: None,
                    strategy: None,
                    reason: format!(
                        "`{}` passes at {commit} in the sandbox: nothing to fix",
                        args.command
                    ),
                    attempt: None,
                    baseline: Some(run.step),
                };
                return Ok(report.print(args.json));
            }
            run.output
        }
    };

    let catalogue = sentinel_classify::Catalogue::builtin()?;
    let mut c = catalogue.classify(log.as_bytes(), Some(&args.command));
    // A log no pattern recognises: the failing command itself (a formatter in check mode, a
    // linter) is the evidence.
    if c.failure_type == sentinel_events::FailureType::Unknown
        && let Some(implied) = sentinel_patchbot::strategy::implied_failure_type(&args.command)
    {
        c.failure_type = implied;
    }
    let excerpt = tail(&log, EXCERPT_BYTES);
    let req = FixRequest {
        task_id: uuid::Uuid::new_v4(),
        repository,
        commit,
        command: args.command.clone(),
        failure_type: c.failure_type,
        tool: c.tool.clone(),
        test_command: args.test_command.clone(),
        log_excerpt: sentinel_events::redact::redact(excerpt),
        history: Default::default(),
    };
    let attempt = bot.attempt(&req).await?;
    let report = Report {
        status: attempt.status,
        failure_type: Some(c.failure_type.to_string()),
        strategy: attempt.strategy.clone(),
        reason: attempt.reason.clone(),
        baseline: attempt.baseline.clone(),
        attempt: Some(attempt),
    };
    Ok(report.print(args.json))
}

struct Report {
    status: FixStatus,
    failure_type: Option<String>,
    strategy: Option<String>,
    reason: String,
    baseline: Option<sentinel_events::ValidationStep>,
    attempt: Option<FixAttempt>,
}

impl Report {
    fn json(&self) -> serde_json::Value {
        let a = self.attempt.as_ref();
        let steps = |s: &[sentinel_events::ValidationStep]| -> Vec<serde_json::Value> {
            s.iter()
                .map(|v| {
                    serde_json::json!({
                        "command": v.command,
                        "exit_code": v.exit_code,
                        "duration_ms": v.duration_ms,
                    })
                })
                .collect()
        };
        serde_json::json!({
            "status": self.status,
            "failure_type": self.failure_type,
            "strategy": self.strategy,
            "confidence": a.map_or(0.0, |a| a.confidence),
            "diff": a.map_or("", |a| a.diff.as_str()),
            "files_changed": a.map(|a| a.files_changed.clone()).unwrap_or_default(),
            "validation": a.map(|a| steps(&a.validation)).unwrap_or_default(),
            "reason": self.reason,
            "baseline": self.baseline.as_ref().map(|b| steps(std::slice::from_ref(b))[0].clone()),
            "fix_steps": a.map(|a| steps(&a.fix_steps)).unwrap_or_default(),
            "base_commit": a.and_then(|a| a.base_commit.clone()),
            "test_command": a.and_then(|a| a.test_command.clone()),
            "tool_versions": a.map(|a| a.tool_versions.clone()).unwrap_or_default(),
            "protected_paths_touched": a.map(|a| a.protected_paths_touched.clone()).unwrap_or_default(),
            "sandbox": a.map(|a| a.sandbox.clone()),
            "candidates": a.map(|a| a.candidates.clone()).unwrap_or_default(),
        })
    }

    fn print(&self, json: bool) -> ExitCode {
        if json {
            println!("{}", self.json());
        } else {
            let status = match self.status {
                FixStatus::Fixed => "fixed",
                FixStatus::NoFix => "no fix",
                FixStatus::NotFixable => "not fixable",
            };
            println!(
                "{status}: {} failure, strategy {} — {}",
                self.failure_type.as_deref().unwrap_or("-"),
                self.strategy.as_deref().unwrap_or("-"),
                self.reason
            );
            if let Some(a) = &self.attempt {
                if a.status == FixStatus::Fixed {
                    println!("confidence {:.2}", a.confidence);
                }
                for v in &a.validation {
                    println!(
                        "  validated `{}`: exit {} in {} ms",
                        v.command, v.exit_code, v.duration_ms
                    );
                }
                if !a.diff.is_empty() {
                    println!("\n{}", a.diff);
                }
            }
        }
        if self.status == FixStatus::Fixed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}

/// The log at `path` (`-`: standard input), its last [`MAX_LOG_BYTES`] when longer.
fn read_log(path: &Path) -> Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_LOG_BYTES * 4)
            .read_to_end(&mut bytes)
            .context("reading the log from standard input")?;
    } else {
        use std::io::{Seek, SeekFrom};
        let mut file =
            std::fs::File::open(path).with_context(|| format!("log {}", path.display()))?;
        let len = file.metadata()?.len();
        if len > MAX_LOG_BYTES {
            file.seek(SeekFrom::Start(len - MAX_LOG_BYTES))?;
        }
        file.take(MAX_LOG_BYTES)
            .read_to_end(&mut bytes)
            .with_context(|| format!("log {}", path.display()))?;
    }
    let start = bytes.len().saturating_sub(MAX_LOG_BYTES as usize);
    Ok(String::from_utf8_lossy(&bytes[start..]).into_owned())
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
