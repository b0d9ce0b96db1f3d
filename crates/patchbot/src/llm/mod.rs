//! The LLM fix strategy: used when an LLM is configured and no deterministic strategy
//! applies (DESIGN.md §6 step 2).
//!
//! 1. The model sees the failing command, the redacted end of the log (the CI excerpt and
//!    the sandboxed reproduction) and bounded excerpts of the repository files the log
//!    points at ([`context`]).
//! 2. It answers with strict JSON: up to N candidates, each a list of search/replace edits
//!    or a unified diff ([`edits`]).
//! 3. Each candidate is screened — paths inside the repository ([`edits::normalize_path`]),
//!    no protected path (the policy's protected globs and PatchBot's protected paths), no
//!    check configuration ([`LlmFixConfig::forbidden`]), within the blast radius
//!    ([`LlmFixConfig::max_files_changed`], …) — and discarded with a reason when it fails
//!    one. Survivors are written without following links ([`apply`]), then validated in the
//!    sandbox like deterministic fixes: the failing command, then the test command. The
//!    first that passes is the fix; the work tree is reset between candidates.
//!
//! Every candidate's fate is recorded in [`crate::FixAttempt::candidates`].

pub mod apply;
pub mod context;
pub mod edits;

use std::sync::Arc;

use sentinel_llm::{Llm, Purpose};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use crate::bot::{Work, bound_diff, confidence};
use crate::redact::redacted_tail;
use crate::strategy::Plan;
use crate::tools::ToolEnv;
use crate::{Error, FixAttempt, FixRequest, FixStatus, PatchBot, Result};

/// Name of the strategy in attempts and facts.
pub const STRATEGY: &str = "llm";

/// Files that configure the checks themselves: an LLM edit to one could make a check pass
/// by weakening it, so such candidates are discarded (globs over repository-relative
/// paths).
pub const DEFAULT_FORBIDDEN: &[&str] = &[
    ".sentinel.toml",
    "**/Makefile",
    "**/conftest.py",
    "pytest.ini",
    "tox.ini",
    "noxfile.py",
    "setup.cfg",
    ".pre-commit-config.yaml",
    ".flake8",
    "ruff.toml",
    ".ruff.toml",
    "mypy.ini",
    ".mypy.ini",
    "**/.eslintrc*",
    "**/eslint.config.*",
    "**/.prettierrc*",
    "**/.prettierignore",
    "**/prettier.config.*",
    "**/jest.config.*",
    "**/vitest.config.*",
    "**/tsconfig*.json",
    "rustfmt.toml",
    ".rustfmt.toml",
    "clippy.toml",
    ".clippy.toml",
];

/// The LLM strategy's settings (`[llm_fix]` in the config file). The client itself is the
/// shared `[llm]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmFixConfig {
    /// Whether PatchBot asks the LLM at all when an `[llm]` client is configured.
    pub enabled: bool,
    /// Candidates asked for (and at most validated) per failure.
    pub candidates: usize,
    /// Tokens the model may answer with on a fix call (fixes are longer than
    /// classifications).
    pub max_tokens: u32,
    /// Bytes of log shown (its end).
    pub max_log_bytes: usize,
    /// Files the log names that are shown.
    pub max_context_files: usize,
    /// Bytes shown of one file (an excerpt around the named line when larger).
    pub max_file_bytes: usize,
    /// Bytes of file excerpts in all.
    pub max_context_bytes: usize,
    /// Blast radius: files one candidate may change.
    pub max_files_changed: usize,
    /// Blast radius: lines one candidate may remove plus add.
    pub max_changed_lines: usize,
    /// Blast radius: bytes of search and replacement text of one candidate.
    pub max_edit_bytes: usize,
    /// Globs of paths an LLM edit may never touch besides the protected paths (default:
    /// [`DEFAULT_FORBIDDEN`], the checks' own configuration).
    pub forbidden: Vec<String>,
    /// Prior probability that a validated LLM candidate is right. Below the default
    /// policy's PR threshold (0.7), so LLM fixes wait for a human review.
    pub prior: f64,
}

impl Default for LlmFixConfig {
    fn default() -> Self {
        LlmFixConfig {
            enabled: true,
            candidates: 3,
            max_tokens: 4096,
            max_log_bytes: 12 * 1024,
            max_context_files: 6,
            max_file_bytes: 16 * 1024,
            max_context_bytes: 48 * 1024,
            max_files_changed: 5,
            max_changed_lines: 120,
            max_edit_bytes: 32 * 1024,
            forbidden: DEFAULT_FORBIDDEN.iter().map(|s| (*s).to_owned()).collect(),
            prior: 0.6,
        }
    }
}

impl LlmFixConfig {
    fn blast_radius(&self) -> edits::BlastRadius {
        edits::BlastRadius {
            max_files: self.max_files_changed,
            max_changed_lines: self.max_changed_lines,
            max_edit_bytes: self.max_edit_bytes,
        }
    }
}

/// An LLM client with the strategy's settings.
#[derive(Clone)]
pub struct LlmFixer {
    /// The client (an [`sentinel_llm::LlmClient`], or any [`Llm`]).
    pub client: Arc<dyn Llm>,
    /// The model's name, recorded with the tool versions of a fix.
    pub model: String,
    /// The settings.
    pub config: LlmFixConfig,
}

impl std::fmt::Debug for LlmFixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmFixer")
            .field("model", &self.model)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LlmFixer {
    /// The fixer for an `[llm]` client table and the `[llm_fix]` settings: an
    /// [`sentinel_llm::LlmClient`] of its own (its own call budget), allowed
    /// [`LlmFixConfig::max_tokens`] per answer; `None` when the strategy is disabled.
    ///
    /// # Errors
    ///
    /// The client's configuration error (bad URL, HTTPS without TLS support, no model).
    pub fn from_config(
        llm: &sentinel_llm::LlmConfig,
        config: &LlmFixConfig,
    ) -> std::result::Result<Option<Self>, sentinel_llm::Error> {
        if !config.enabled {
            return Ok(None);
        }
        let client = sentinel_llm::LlmClient::from_config(&sentinel_llm::LlmConfig {
            max_tokens: config.max_tokens.max(llm.max_tokens),
            ..llm.clone()
        })?;
        Ok(Some(Self::new(
            Arc::new(client),
            llm.model.clone(),
            config.clone(),
        )))
    }

    /// A fixer asking `client` (which answers as `model`).
    pub fn new(client: Arc<dyn Llm>, model: impl Into<String>, config: LlmFixConfig) -> Self {
        LlmFixer {
            client,
            model: model.into(),
            config,
        }
    }
}

/// What happened to one candidate of the LLM's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CandidateOutcome {
    /// Refused before touching the work tree (shape, paths, protected, blast radius) or
    /// because it did not apply to the files.
    Discarded,
    /// Applied, but the failing command or the test command still failed.
    FailedValidation,
    /// Applied and validated: the fix.
    Validated,
}

/// One candidate's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateReport {
    /// Its position in the answer, from 1.
    pub index: usize,
    /// The model's one-line explanation.
    pub explanation: String,
    /// The files it changes (as far as it could be read).
    pub files: Vec<String>,
    /// What happened.
    pub outcome: CandidateOutcome,
    /// Why, for people.
    pub reason: String,
}

impl PatchBot {
    /// The LLM strategy on a checked-out, reproduced failure (see the module docs).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn llm_attempt(
        &self,
        fixer: &LlmFixer,
        req: &FixRequest,
        mut attempt: FixAttempt,
        plan: &Plan,
        work: &Work,
        envs: &[ToolEnv],
        dirs: (TempDir, TempDir),
        no_deterministic: &str,
    ) -> Result<FixAttempt> {
        let cfg = &fixer.config;
        attempt
            .tool_versions
            .insert(STRATEGY.to_owned(), fixer.model.clone());
        // The CI excerpt and what the sandbox just saw: the model gets both ends.
        let baseline = attempt
            .baseline
            .as_ref()
            .map(|b| b.output_tail.clone())
            .unwrap_or_default();
        let half = cfg.max_log_bytes / 2;
        let mut log = redacted_tail(&req.log_excerpt, 400, half);
        if !baseline.is_empty() && !req.log_excerpt.contains(baseline.trim()) {
            log.push_str("\n--- the failing command re-run in the sandbox ---\n");
            log.push_str(&redacted_tail(
                &baseline,
                400,
                cfg.max_log_bytes - log.len().min(half),
            ));
        }
        let mut refs = context::referenced_files(&req.log_excerpt);
        for r in context::referenced_files(&baseline) {
            if !refs.iter().any(|x| x.path == r.path) {
                refs.push(r);
            }
        }
        let files = apply::context_files(
            &work.repo,
            &refs,
            cfg.max_context_files,
            cfg.max_file_bytes,
            cfg.max_context_bytes,
        )
        .await;
        let failure_type = req.failure_type.to_string();
        let prompt = context::prompt(&context::PromptInput {
            command: &req.command,
            failure_type: &failure_type,
            tool: req.tool.as_deref(),
            test_command: attempt.test_command.as_deref(),
            log: &log,
            files: &files,
            candidates: cfg.candidates,
        });
        let key = format!(
            "patchbot-fix\0{}\0{}\0{}",
            req.repository,
            attempt.base_commit.as_deref().unwrap_or(&req.commit),
            req.command
        );
        let answer = match fixer
            .client
            .complete_json(Purpose::Fix, &prompt, Some(&key))
            .await
        {
            Ok(a) => a,
            // A gateway hiccup: the task is retried rather than given up.
            Err(e) if e.is_transient() => return Err(Error::Llm(e)),
            Err(e) => {
                return Ok(attempt.end(
                    FixStatus::NoFix,
                    format!("{no_deterministic}; the LLM gave no usable answer: {e}"),
                ));
            }
        };
        let parsed = match edits::parse_answer(&answer.value, cfg.candidates.max(1)) {
            Ok(p) => p,
            Err(reason) => {
                return Ok(attempt.end(
                    FixStatus::NoFix,
                    format!("{no_deterministic}; the LLM's answer is malformed: {reason}"),
                ));
            }
        };
        for (i, candidate) in parsed.into_iter().enumerate() {
            let index = i + 1;
            let c = match candidate {
                Ok(c) => c,
                Err(reason) => {
                    attempt.candidates.push(CandidateReport {
                        index,
                        explanation: String::new(),
                        files: Vec::new(),
                        outcome: CandidateOutcome::Discarded,
                        reason: format!("malformed: {reason}"),
                    });
                    continue;
                }
            };
            let mut report = CandidateReport {
                index,
                explanation: c.explanation.clone(),
                files: c.files.iter().map(|f| f.path.clone()).collect(),
                outcome: CandidateOutcome::Discarded,
                reason: String::new(),
            };
            if let Err(reason) = self.screen(&c, cfg) {
                tracing::info!(index, %reason, "LLM candidate discarded.");
                report.reason = reason;
                attempt.candidates.push(report);
                continue;
            }
            let created = match apply::write_candidate(&work.repo, &c).await? {
                Ok(created) => created,
                Err(reason) => {
                    report.reason = format!("does not apply: {reason}");
                    attempt.candidates.push(report);
                    continue;
                }
            };
            for path in &created {
                self.git(work, &["add", "--", path]).await?;
            }
            let (passed, reason) = self
                .stage_and_validate(work, envs, req, &mut attempt)
                .await?;
            crate::bot::restore_gitfile(work).await?;
            if passed {
                report.outcome = CandidateOutcome::Validated;
                report.reason.clone_from(&reason);
                attempt.candidates.push(report);
                let history = req.history.get(&plan.name).copied().unwrap_or_default();
                attempt.confidence = confidence(plan, attempt.test_command.is_some(), history);
                let (work_tree, git_dir) = dirs;
                attempt.workdir = Some(work_tree);
                attempt.set_git_dir(git_dir);
                let explanation = if c.explanation.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.explanation)
                };
                return Ok(attempt.end(
                    FixStatus::Fixed,
                    format!("LLM candidate {index}{explanation}: {reason}"),
                ));
            }
            report.outcome = CandidateOutcome::FailedValidation;
            report.reason = reason;
            attempt.candidates.push(report);
            // Back to the failing commit for the next candidate (new files were staged, so
            // the hard reset removes them too).
            self.git(work, &["reset", "--hard", "--quiet", "HEAD"])
                .await?;
            attempt.diff.clear();
            attempt.files_changed.clear();
            attempt.protected_paths_touched.clear();
        }
        let summary: Vec<String> = attempt
            .candidates
            .iter()
            .map(|c| format!("candidate {}: {}", c.index, c.reason))
            .collect();
        Ok(attempt.end(
            FixStatus::NoFix,
            format!(
                "{no_deterministic}; no LLM candidate passed ({})",
                summary.join("; ")
            ),
        ))
    }

    /// The rules a candidate must pass before it touches the work tree.
    fn screen(&self, c: &edits::Candidate, cfg: &LlmFixConfig) -> std::result::Result<(), String> {
        for f in &c.files {
            if self.is_protected(&f.path) {
                return Err(format!(
                    "edits the protected path {}: fixes there need a human",
                    f.path
                ));
            }
            if self.is_forbidden(&f.path) {
                return Err(format!(
                    "edits {}, which configures the checks themselves",
                    f.path
                ));
            }
        }
        edits::check_blast_radius(c, cfg.blast_radius())
    }

    /// Stages the tracked changes, records the diff, and validates (failing command, then
    /// test command).
    async fn stage_and_validate(
        &self,
        work: &Work,
        envs: &[ToolEnv],
        req: &FixRequest,
        attempt: &mut FixAttempt,
    ) -> Result<(bool, String)> {
        self.git(work, &["add", "--update"]).await?;
        let diff = self
            .git(
                work,
                &[
                    "diff",
                    "--cached",
                    "--no-ext-diff",
                    "--no-textconv",
                    "--no-color",
                ],
            )
            .await?;
        let files = self
            .git(work, &["diff", "--cached", "--name-only", "-z"])
            .await?;
        attempt.files_changed = files
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        attempt.diff = bound_diff(diff);
        attempt.protected_paths_touched = attempt
            .files_changed
            .iter()
            .filter(|f| self.is_protected(f))
            .cloned()
            .collect();
        if attempt.files_changed.is_empty() {
            return Ok((false, "the candidate changes nothing".into()));
        }
        attempt.validation.clear();
        self.validate(work, envs, req, attempt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_llm_fixes_below_the_pr_threshold_and_parse_from_toml() {
        let d = LlmFixConfig::default();
        assert!(d.prior < 0.7);
        assert!(d.forbidden.iter().any(|f| f == ".sentinel.toml"));
        let c: LlmFixConfig =
            toml::from_str("candidates = 2\nmax_changed_lines = 40\n").expect("valid");
        assert_eq!(c.candidates, 2);
        assert_eq!(c.max_changed_lines, 40);
        assert_eq!(c.max_files_changed, d.max_files_changed);
        assert!(toml::from_str::<LlmFixConfig>("candiates = 2").is_err());
    }
}
