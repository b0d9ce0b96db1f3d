//! [`PatchBot`]: check out, fix, validate, commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sentinel_events::{FailureType, ValidationStep};
use sentinel_forge::git;
use sentinel_sandbox::{Limits, RunOutput, RunSpec, Sandbox};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;
use tracing::Instrument;
use uuid::Uuid;

use crate::index::{PackageIndex, Verdict};
use crate::llm::{CandidateReport, LlmFixer};
use crate::redact::redacted_tail;
use crate::strategy::{self, Action, Choice, Plan};
use crate::tools::{Tool, ToolCache, ToolEnv};
use crate::{Error, Result, imports};

/// `PATH` entries after the tools' own bin dirs.
const BASE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Lines and bytes of output kept per validation step.
const TAIL_LINES: usize = 60;
const TAIL_BYTES: usize = 8 * 1024;
/// Largest diff carried in an attempt; the commit holds the whole change regardless.
pub const MAX_DIFF_BYTES: usize = 512 * 1024;
/// Largest `requirements.txt` PatchBot edits.
const MAX_REQUIREMENTS_BYTES: u64 = 1 << 20;

/// Paths a fix may not touch without a human review (reported in
/// [`FixAttempt::protected_paths_touched`]; the policy decides). Entries ending in `/` are
/// directory prefixes, others exact paths.
pub const DEFAULT_PROTECTED_PATHS: &[&str] = &[
    ".github/workflows/",
    ".github/actions/",
    ".gitlab-ci.yml",
    ".gitlab/",
    ".circleci/",
    "Jenkinsfile",
    ".env",
    "secrets/",
];

/// PatchBot's configuration.
#[derive(Debug, Clone)]
pub struct PatchBotConfig {
    /// Root of the [`ToolCache`] (bound read-only into every sandboxed command).
    pub tool_cache: PathBuf,
    /// Where every command on repository content runs.
    pub sandbox: Arc<dyn Sandbox>,
    /// Wall-clock limit of each sandboxed command (fix, validation, tests).
    pub command_timeout: Duration,
    /// Resource limits of each sandboxed command.
    pub limits: Limits,
    /// Parent of the per-attempt work dirs; the system temp dir when `None`.
    pub work_root: Option<PathBuf>,
    /// Commit author name.
    pub author_name: String,
    /// Commit author e-mail.
    pub author_email: String,
    /// Python used to create tool virtualenvs.
    pub python: PathBuf,
    /// npm used to install Node tools.
    pub npm: PathBuf,
    /// Version pins overriding the defaults ([`Tool::default_version`]).
    pub tool_versions: BTreeMap<Tool, String>,
    /// Paths reported when a fix touches them (see [`DEFAULT_PROTECTED_PATHS`]).
    pub protected_paths: Vec<String>,
    /// The index a missing Python dependency must exist in (and be old enough in) before
    /// PatchBot adds it; `None`: no dependency is ever added.
    pub python_index: Option<PackageIndex>,
    /// The index pip installs from when validating a dependency fix (`PIP_INDEX_URL`);
    /// pip's default (PyPI) when `None`.
    pub pip_index_url: Option<String>,
    /// The npm registry a missing Node package must exist in (and be old enough in);
    /// `None`: no dependency is ever added. npm installs from it during validation.
    pub npm_index: Option<PackageIndex>,
    /// Globs of protected paths (the policy's `paths.protected`; default: the built-in
    /// policy's), matched like [`protected_paths`](Self::protected_paths): reported when a
    /// deterministic fix touches them, and never edited by the LLM strategy.
    pub protected_globs: Vec<String>,
    /// The LLM strategy, tried when no deterministic strategy applies; `None`: off.
    pub llm: Option<LlmFixer>,
}

impl PatchBotConfig {
    /// Defaults: 5-minute command timeout, [`Limits::default`], the system temp dir,
    /// author `Sentinel PatchBot <patchbot@sentinel.invalid>`, `python3` and `npm` from
    /// `PATH`, default pins, [`DEFAULT_PROTECTED_PATHS`] and the default policy's protected
    /// globs, no LLM.
    pub fn new(tool_cache: impl Into<PathBuf>, sandbox: Arc<dyn Sandbox>) -> Self {
        PatchBotConfig {
            tool_cache: tool_cache.into(),
            sandbox,
            command_timeout: Duration::from_secs(300),
            limits: Limits::default(),
            work_root: None,
            author_name: "Sentinel PatchBot".into(),
            author_email: "patchbot@sentinel.invalid".into(),
            python: "python3".into(),
            npm: "npm".into(),
            tool_versions: BTreeMap::new(),
            protected_paths: DEFAULT_PROTECTED_PATHS
                .iter()
                .map(|p| (*p).to_string())
                .collect(),
            python_index: Some(PackageIndex::pypi()),
            pip_index_url: None,
            npm_index: Some(PackageIndex::npm()),
            protected_globs: sentinel_policy::model::PathRules::default().protected,
            llm: None,
        }
    }
}

/// A classified failure to fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixRequest {
    /// The task this attempt belongs to.
    pub task_id: Uuid,
    /// The repository: a local path or a git URL.
    pub repository: String,
    /// The failing commit.
    pub commit: String,
    /// The command that failed in CI; re-run to validate a candidate.
    pub command: String,
    /// The classifier's verdict.
    pub failure_type: FailureType,
    /// The classifier's tool hint (`black`, `ruff`, `ruff-format`, `flake8`, `prettier`, …).
    pub tool: Option<String>,
    /// The repository's test command, run after the failing command passes.
    pub test_command: Option<String>,
    /// The (redacted) log excerpt the classification was made from.
    pub log_excerpt: String,
    /// How this failure signature fared before, per strategy (folded from facts by the
    /// caller); empty when unknown. Scales the confidence ([`History::factor`]).
    #[serde(default)]
    pub history: BTreeMap<String, History>,
}

/// Past outcomes of one strategy on one failure signature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Fixes of this strategy on this signature whose outcome is known.
    pub attempts: u32,
    /// Of those, the ones that were merged and stayed green.
    pub successes: u32,
}

impl History {
    /// `(successes + 1) / (attempts + 1)`: 1 with no history or only successes, falling
    /// towards the observed success rate as failures accumulate.
    pub fn factor(self) -> f64 {
        let successes = self.successes.min(self.attempts);
        (f64::from(successes) + 1.0) / (f64::from(self.attempts) + 1.0)
    }
}

/// The failing command run once on a fresh checkout: the evidence `sentinel fix` classifies
/// when no log is given.
#[derive(Debug)]
pub struct Reproduction {
    /// The commit checked out (full id).
    pub base_commit: String,
    /// The run (redacted output tail).
    pub step: ValidationStep,
    /// The whole (bounded, unredacted) output, for classification.
    pub output: String,
}

/// The repository's own PatchBot settings: `.sentinel.toml` at the root of the failing
/// commit, e.g. `test_command = "pytest -q"`.
#[derive(Debug, Default, Deserialize)]
struct RepoSettings {
    test_command: Option<String>,
}

/// Which dependency manifest a dependency fix edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manifest {
    Requirements,
    Pyproject,
}

/// Name of the per-repository settings file.
pub const REPO_SETTINGS_FILE: &str = ".sentinel.toml";

/// The outcome of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixStatus {
    /// A candidate changed the code and passed validation.
    Fixed,
    /// No candidate, or none that passed validation; the reason says which.
    NoFix,
    /// The failure type is never fixed by a code change (infrastructure, unknown).
    NotFixable,
}

/// Everything an attempt produced: the evidence for the fact and the PR description, and
/// (when fixed) the work dir holding the staged change.
#[derive(Debug, Serialize)]
pub struct FixAttempt {
    /// The task this attempt belongs to.
    pub task_id: Uuid,
    /// The outcome.
    pub status: FixStatus,
    /// The strategy tried, if any (`black`, `ruff_fix`, …).
    pub strategy: Option<String>,
    /// Why the attempt ended as it did, for people.
    pub reason: String,
    /// The commit that was checked out (full id), once checked out.
    pub base_commit: Option<String>,
    /// The candidate's `git diff` (bounded by [`MAX_DIFF_BYTES`]); empty when none.
    pub diff: String,
    /// Files the candidate changed, relative to the repository root.
    pub files_changed: Vec<String>,
    /// Changed files under a protected path (a human review gate applies).
    pub protected_paths_touched: Vec<String>,
    /// The failing command run before any change (evidence that the failure reproduces).
    pub baseline: Option<ValidationStep>,
    /// The fix commands as run.
    pub fix_steps: Vec<ValidationStep>,
    /// Validation: the failing command, then the test command, after the change.
    pub validation: Vec<ValidationStep>,
    /// Tool name → version used.
    pub tool_versions: BTreeMap<String, String>,
    /// Strategy prior × validation evidence × the strategy's history on this failure
    /// signature; 0 unless fixed.
    pub confidence: f64,
    /// The test command validation ran after the failing command: the request's, else the
    /// repository's `.sentinel.toml` `test_command`; `None` when neither names one.
    pub test_command: Option<String>,
    /// The sandbox that ran the commands (e.g. `local-jail/bubblewrap`).
    pub sandbox: String,
    /// What happened to each LLM candidate (empty unless the LLM strategy ran).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateReport>,
    /// The work tree: the repository checked out at `base_commit` with the fix staged
    /// (deleted when dropped). Kept only when fixed, for [`PatchBot::commit`] and for
    /// pushing (`git -C <workdir> push …` works: its `.git` file points at the git dir).
    #[serde(skip)]
    pub workdir: Option<TempDir>,
    /// The work tree's git dir, kept outside it (see [`sentinel_forge::git::clone_at_with_git_dir`]).
    #[serde(skip)]
    git_dir: Option<TempDir>,
}

impl FixAttempt {
    pub(crate) fn new(req: &FixRequest, sandbox: String) -> Self {
        FixAttempt {
            task_id: req.task_id,
            status: FixStatus::NoFix,
            strategy: None,
            reason: String::new(),
            base_commit: None,
            diff: String::new(),
            files_changed: Vec::new(),
            protected_paths_touched: Vec::new(),
            baseline: None,
            fix_steps: Vec::new(),
            validation: Vec::new(),
            tool_versions: BTreeMap::new(),
            confidence: 0.0,
            test_command: None,
            sandbox,
            candidates: Vec::new(),
            workdir: None,
            git_dir: None,
        }
    }

    pub(crate) fn set_git_dir(&mut self, git_dir: TempDir) {
        self.git_dir = Some(git_dir);
    }

    pub(crate) fn end(mut self, status: FixStatus, reason: impl Into<String>) -> Self {
        self.status = status;
        self.reason = reason.into();
        if status != FixStatus::Fixed {
            self.confidence = 0.0;
            self.workdir = None;
            self.git_dir = None;
        }
        self
    }

    /// The checked-out repository with the candidate (a git work tree), while kept.
    pub fn repo_dir(&self) -> Option<PathBuf> {
        self.workdir.as_ref().map(|d| d.path().to_path_buf())
    }

    fn work(&self) -> Option<Work> {
        Some(Work {
            repo: self.workdir.as_ref()?.path().to_path_buf(),
            git: self.git_dir.as_ref()?.path().join("git"),
            deps: None,
            ecosystem: None,
        })
    }
}

/// Paths of one attempt's checkout: the work tree (sandbox-writable) and its git dir
/// (outside the work tree; read-only in the sandbox).
pub(crate) struct Work {
    pub(crate) repo: PathBuf,
    pub(crate) git: PathBuf,
    /// A virtualenv (outside the work tree) holding the repository's dependencies, first on
    /// `PATH` and read-only, once a dependency fix installed them.
    pub(crate) deps: Option<PathBuf>,
    /// The repository's ecosystem ([`ecosystem`]): backends that run images pick one by it.
    pub(crate) ecosystem: Option<&'static str>,
}

/// The ecosystem (`python`, `node`, `rust`, `go`) a repository's commands need: the
/// failing command's tools or program first (`black` → python, `npx eslint` → node,
/// `cargo …` → rust), else the manifests at the repository root (`Cargo.toml`, `go.mod`,
/// `package.json`, `pyproject.toml`/`requirements.txt`/`setup.py`/`setup.cfg`).
pub fn ecosystem(command: &str, root_files: &[&str]) -> Option<&'static str> {
    if let Some(tool) = strategy::tools_named(command).first() {
        return Some(match tool {
            Tool::Black | Tool::Ruff | Tool::Isort | Tool::Flake8 => "python",
            Tool::Prettier | Tool::Eslint => "node",
            Tool::Rustfmt | Tool::Clippy => "rust",
        });
    }
    let first = command
        .split_whitespace()
        .find(|w| !w.contains('='))
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .unwrap_or_default();
    let by_program = match first {
        p if p.starts_with("python") => Some("python"),
        "pytest" | "pip" | "pip3" | "tox" | "nox" | "uv" | "poetry" | "mypy" | "pyright" => {
            Some("python")
        }
        "node" | "npm" | "npx" | "yarn" | "pnpm" | "jest" | "vitest" | "tsc" | "mocha" => {
            Some("node")
        }
        "cargo" | "rustc" => Some("rust"),
        "go" | "gofmt" => Some("go"),
        _ => None,
    };
    by_program.or_else(|| {
        [
            ("Cargo.toml", "rust"),
            ("go.mod", "go"),
            ("package.json", "node"),
            ("pyproject.toml", "python"),
            ("requirements.txt", "python"),
            ("setup.py", "python"),
            ("setup.cfg", "python"),
        ]
        .iter()
        .find(|(file, _)| root_files.contains(file))
        .map(|(_, e)| *e)
    })
}

/// The names of the regular files at the root of a work tree (for [`ecosystem`]).
async fn root_files(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(mut dir) = tokio::fs::read_dir(repo).await {
        while let Ok(Some(entry)) = dir.next_entry().await {
            if entry.file_type().await.is_ok_and(|t| t.is_file()) {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

async fn detect_ecosystem(command: &str, repo: &Path) -> Option<&'static str> {
    let files = root_files(repo).await;
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    ecosystem(command, &names)
}

/// The fixer. See the crate docs for the flow.
#[derive(Debug)]
pub struct PatchBot {
    config: PatchBotConfig,
    tools: ToolCache,
    config_error: Option<String>,
    /// `config.protected_globs`, compiled.
    protected: globset::GlobSet,
    /// The LLM strategy's forbidden globs, compiled.
    forbidden: globset::GlobSet,
}

impl PatchBot {
    /// A PatchBot with `config`. A configuration error (a bad version pin or author) is
    /// reported by every [`attempt`](PatchBot::attempt) and [`commit`](PatchBot::commit).
    pub fn new(config: PatchBotConfig) -> Self {
        let mut tools = ToolCache::new(&config.tool_cache)
            .with_python(&config.python)
            .with_npm(&config.npm);
        let mut config_error = None;
        for (tool, version) in &config.tool_versions {
            match tools.pin(*tool, version) {
                Ok(pinned) => tools = pinned,
                Err(e) => {
                    config_error = Some(e.to_string());
                    tools = ToolCache::new(&config.tool_cache)
                        .with_python(&config.python)
                        .with_npm(&config.npm);
                }
            }
        }
        let bad_identity = |s: &str| s.trim().is_empty() || s.contains(['<', '>', '\n', '\0']);
        if bad_identity(&config.author_name) || bad_identity(&config.author_email) {
            config_error =
                Some("author name and e-mail must be non-empty single lines without <>".into());
        }
        let mut compile = |what: &str, globs: &[String]| match glob_set(globs) {
            Ok(set) => set,
            Err(e) => {
                config_error = Some(format!("{what}: {e}"));
                globset::GlobSet::empty()
            }
        };
        let protected = compile("protected globs", &config.protected_globs);
        let forbidden = match &config.llm {
            Some(llm) => compile("LLM forbidden globs", &llm.config.forbidden),
            None => globset::GlobSet::empty(),
        };
        PatchBot {
            config,
            tools,
            config_error,
            protected,
            forbidden,
        }
    }

    /// Whether a repository-relative path is protected (a prefix of
    /// [`PatchBotConfig::protected_paths`] or one of the protected globs).
    pub fn is_protected(&self, path: &str) -> bool {
        is_protected(path, &self.config.protected_paths) || self.protected.is_match(path)
    }

    pub(crate) fn is_forbidden(&self, path: &str) -> bool {
        self.forbidden.is_match(path)
    }

    fn check_config(&self) -> Result<()> {
        match &self.config_error {
            Some(e) => Err(Error::InvalidRequest(format!(
                "PatchBot configuration: {e}"
            ))),
            None => Ok(()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PatchBotConfig {
        &self.config
    }

    /// The tool cache (e.g. to provision tools ahead of time).
    pub fn tool_cache(&self) -> &ToolCache {
        &self.tools
    }

    /// Tries to fix one failure. Never touches the original repository: the failing
    /// commit is cloned into a fresh work dir, every command on repository content runs
    /// in the sandbox, and the result is either a validated, staged change
    /// ([`FixStatus::Fixed`], work dir kept) or a reason.
    ///
    /// # Errors
    ///
    /// Only when the attempt itself could not run: a tool could not be provisioned, the
    /// checkout failed, the sandbox or git failed. A fix that does not validate is an
    /// `Ok` attempt with [`FixStatus::NoFix`].
    pub async fn attempt(&self, req: &FixRequest) -> Result<FixAttempt> {
        let span = tracing::info_span!(
            "patchbot.attempt",
            task_id = %req.task_id,
            failure_type = %req.failure_type,
            repository = %req.repository,
        );
        async move {
            let attempt = self.run_attempt(req).await?;
            tracing::info!(
                status = ?attempt.status,
                strategy = attempt.strategy.as_deref().unwrap_or("-"),
                confidence = attempt.confidence,
                reason = %attempt.reason,
                "Fix attempt finished."
            );
            Ok(attempt)
        }
        .instrument(span)
        .await
    }

    /// Runs the failing `command` once on a fresh checkout of `repository` at `commit`, in
    /// the sandbox, with the pinned tools the command names (every pinned tool when it names
    /// none, e.g. `make lint`) first on `PATH` — to obtain
    /// the log of a failure when none was given (`sentinel fix` without `--log`). The
    /// checkout is deleted afterwards; the original repository is never touched.
    ///
    /// # Errors
    ///
    /// As for [`attempt`](PatchBot::attempt): tools, checkout, sandbox.
    pub async fn reproduce(
        &self,
        repository: &str,
        commit: &str,
        command: &str,
    ) -> Result<Reproduction> {
        self.check_config()?;
        if command.trim().is_empty() || command.contains('\0') {
            return Err(Error::InvalidRequest("the failing command is empty".into()));
        }
        // A command that hides its tools (`make lint`, `tox -e fmt`) gets every pinned tool,
        // as a pre-commit environment would have them.
        let mut tools = strategy::tools_named(command);
        if tools.is_empty() {
            tools = Tool::ALL.to_vec();
        }
        let mut envs = Vec::new();
        for tool in tools {
            envs.push(self.tools.ensure(tool).await?);
        }
        let work_tree = self.temp_dir("sentinel-patchbot-").await?;
        let git_dir = self.temp_dir("sentinel-patchbot-git-").await?;
        let mut work = Work {
            repo: work_tree.path().to_path_buf(),
            git: git_dir.path().join("git"),
            deps: None,
            ecosystem: None,
        };
        let base_commit = git::clone_at_with_git_dir(repository, commit, &work.repo, &work.git)
            .await
            .map_err(|source| Error::Checkout {
                repository: repository.to_string(),
                commit: commit.to_string(),
                source,
            })?;
        work.ecosystem = detect_ecosystem(command, &work.repo).await;
        let (step, out) = self.run_step_output(&work, &envs, command).await?;
        Ok(Reproduction {
            base_commit,
            step,
            output: out.output,
        })
    }

    async fn run_attempt(&self, req: &FixRequest) -> Result<FixAttempt> {
        self.check_config()?;
        if req.command.trim().is_empty() || req.command.contains('\0') {
            return Err(Error::InvalidRequest("the failing command is empty".into()));
        }
        let mut attempt = FixAttempt::new(req, self.config.sandbox.describe());
        // Why no deterministic strategy applies, when the LLM is asked instead.
        let mut no_deterministic = None;
        let plan = match strategy::choose(
            req.failure_type,
            req.tool.as_deref(),
            &req.command,
            &req.log_excerpt,
        ) {
            Choice::NotFixable(reason) => return Ok(attempt.end(FixStatus::NotFixable, reason)),
            Choice::NoFix(reason) => match &self.config.llm {
                Some(llm) if llm.config.enabled => {
                    let plan = strategy::llm_plan(&req.command, llm.config.prior);
                    no_deterministic = Some(reason);
                    plan
                }
                _ => return Ok(attempt.end(FixStatus::NoFix, reason)),
            },
            Choice::Plan(plan) => plan,
        };
        attempt.strategy = Some(plan.name.clone());

        let mut envs = Vec::new();
        for tool in &plan.tools {
            let env = self.tools.ensure(*tool).await?;
            attempt
                .tool_versions
                .insert(tool.name().to_string(), env.version.clone());
            envs.push(env);
        }

        let work_tree = self.temp_dir("sentinel-patchbot-").await?;
        let git_dir = self.temp_dir("sentinel-patchbot-git-").await?;
        let mut work = Work {
            repo: work_tree.path().to_path_buf(),
            // git refuses to create a separate git dir that already exists, even empty.
            git: git_dir.path().join("git"),
            deps: None,
            ecosystem: None,
        };
        let base = git::clone_at_with_git_dir(&req.repository, &req.commit, &work.repo, &work.git)
            .await
            .map_err(|source| Error::Checkout {
                repository: req.repository.clone(),
                commit: req.commit.clone(),
                source,
            })?;
        work.ecosystem = detect_ecosystem(&req.command, &work.repo).await;
        attempt.base_commit = Some(base);
        attempt.test_command = match &req.test_command {
            Some(t) if !t.trim().is_empty() => Some(t.clone()),
            _ => match repo_test_command(&work.repo).await {
                Ok(t) => t,
                Err(reason) => return Ok(attempt.end(FixStatus::NoFix, reason)),
            },
        };

        let baseline = self.run_step(&work, &envs, &req.command).await?;
        let reproduced = baseline.exit_code != 0;
        attempt.baseline = Some(baseline);
        if !reproduced {
            return Ok(attempt.end(
                FixStatus::NoFix,
                "the failing command passes at this commit in the sandbox: nothing to \
                 fix (flaky, or it depends on the CI environment)",
            ));
        }
        // Keeps the dependency virtualenv alive until validation is over.
        let mut _deps_dir = None;
        match &plan.action {
            Action::LlmEdits => {
                let (Some(llm), Some(why)) = (&self.config.llm, no_deterministic) else {
                    return Ok(attempt.end(FixStatus::NoFix, "no LLM is configured"));
                };
                return self
                    .llm_attempt(
                        llm,
                        req,
                        attempt,
                        &plan,
                        &work,
                        &envs,
                        (work_tree, git_dir),
                        &why,
                    )
                    .await;
            }
            Action::Run(commands) => {
                for command in commands {
                    let step = self.run_step(&work, &envs, command).await?;
                    let timed_out = step.exit_code == -1;
                    attempt.fix_steps.push(step);
                    if timed_out {
                        return Ok(attempt.end(
                            FixStatus::NoFix,
                            format!("fix command `{command}` was killed (timeout or signal)"),
                        ));
                    }
                }
            }
            Action::AddNodeDependency { package } => {
                let Some(index) = &self.config.npm_index else {
                    return Ok(attempt.end(
                        FixStatus::NoFix,
                        format!(
                            "`{package}` is missing, but no npm registry is configured to \
                             check it against: PatchBot adds no dependency it cannot check"
                        ),
                    ));
                };
                let latest = match index.check(package).await {
                    Ok(Verdict::Known { latest, .. }) => latest,
                    Ok(Verdict::Refused(reason)) => {
                        return Ok(attempt.end(
                            FixStatus::NoFix,
                            format!("not adding `{package}`: {reason}"),
                        ));
                    }
                    Err(e) => {
                        return Ok(attempt.end(
                            FixStatus::NoFix,
                            format!(
                                "not adding `{package}`: it could not be checked against the \
                                 npm registry ({e})"
                            ),
                        ));
                    }
                };
                let range = latest.map_or_else(|| "*".to_string(), |v| format!("^{v}"));
                let path = work.repo.join("package.json");
                let meta = tokio::fs::symlink_metadata(&path).await;
                if !meta
                    .as_ref()
                    .is_ok_and(|m| m.is_file() && m.len() <= MAX_REQUIREMENTS_BYTES)
                {
                    return Ok(attempt.end(
                        FixStatus::NoFix,
                        format!("`{package}` is missing but there is no regular package.json"),
                    ));
                }
                let contents = tokio::fs::read_to_string(&path).await?;
                match imports::add_package_json_dependency(&contents, package, &range) {
                    Ok(Some(updated)) => tokio::fs::write(&path, updated).await?,
                    Ok(None) => {
                        return Ok(attempt.end(
                            FixStatus::NoFix,
                            format!(
                                "`{package}` is already a dependency: the CI environment did \
                                 not install it (an environment problem, not a code change)"
                            ),
                        ));
                    }
                    Err(reason) => return Ok(attempt.end(FixStatus::NoFix, reason)),
                }
                // npm install in the sandbox (network on, install scripts off), writing
                // node_modules into the work tree (untracked, so never committed).
                let deps = self.temp_dir("sentinel-patchbot-deps-").await?;
                let command = format!(
                    "npm install --no-audit --no-fund --ignore-scripts --loglevel=error \
                     --registry {}",
                    index.base_url()
                );
                let mut spec_env = vec![(
                    "NPM_CONFIG_CACHE".to_string(),
                    deps.path().join("cache").display().to_string(),
                )];
                spec_env.push(("NPM_CONFIG_UPDATE_NOTIFIER".into(), "false".into()));
                let step = self
                    .run_install_with(&work, &command, deps.path(), &spec_env)
                    .await?;
                let ok = step.exit_code == 0;
                attempt.fix_steps.push(step);
                if !ok {
                    return Ok(attempt.end(
                        FixStatus::NoFix,
                        format!("`npm install` with `{package}` added failed"),
                    ));
                }
                _deps_dir = Some(deps);
            }
            Action::DeclareGlobals { files, then } => {
                if let Err(reason) = declare_globals(&work.repo, files).await? {
                    return Ok(attempt.end(FixStatus::NoFix, reason));
                }
                for command in then {
                    let step = self.run_step(&work, &envs, command).await?;
                    attempt.fix_steps.push(step);
                }
            }
            Action::AddRequirement {
                module,
                distribution,
            } => {
                let manifest = match self.add_requirement(&work, module, distribution).await? {
                    Ok(manifest) => manifest,
                    Err(reason) => return Ok(attempt.end(FixStatus::NoFix, reason)),
                };
                // Install the repository's dependencies as CI would, into a virtualenv outside
                // the work tree: the only sandboxed step with network access (the name passed
                // the index guard). Validation then runs offline with it first on `PATH`.
                let deps = self.temp_dir("sentinel-patchbot-deps-").await?;
                let venv = deps.path().join("venv");
                let install = match manifest {
                    Manifest::Requirements => "-r requirements.txt",
                    Manifest::Pyproject => ".",
                };
                let command = format!(
                    "python3 -m venv {venv} && {venv}/bin/python -m pip install \
                     --disable-pip-version-check --no-input --quiet {install}",
                    venv = venv.display()
                );
                let step = self.run_install(&work, &command, deps.path()).await?;
                let ok = step.exit_code == 0;
                attempt.fix_steps.push(step);
                if !ok {
                    return Ok(attempt.end(
                        FixStatus::NoFix,
                        format!("installing the dependencies with `{distribution}` added failed"),
                    ));
                }
                work.deps = Some(venv);
                _deps_dir = Some(deps);
            }
        }

        // Only tracked files: whatever else the commands left behind (caches, bytecode,
        // build output) is not part of the fix.
        self.git(&work, &["add", "--update"]).await?;
        let diff = self
            .git(
                &work,
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
            .git(&work, &["diff", "--cached", "--name-only", "-z"])
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
            return Ok(attempt.end(
                FixStatus::NoFix,
                format!("strategy {} changed nothing", plan.name),
            ));
        }

        let (passed, reason) = self.validate(&work, &envs, req, &mut attempt).await?;
        restore_gitfile(&work).await?;
        if !passed {
            return Ok(attempt.end(FixStatus::NoFix, reason));
        }
        let history = req.history.get(&plan.name).copied().unwrap_or_default();
        attempt.confidence = confidence(&plan, attempt.test_command.is_some(), history);
        attempt.workdir = Some(work_tree);
        attempt.git_dir = Some(git_dir);
        Ok(attempt.end(FixStatus::Fixed, reason))
    }

    /// Re-runs the failing command, then the test command; both must exit 0.
    pub(crate) async fn validate(
        &self,
        work: &Work,
        envs: &[ToolEnv],
        req: &FixRequest,
        attempt: &mut FixAttempt,
    ) -> Result<(bool, String)> {
        let test_command = attempt.test_command.clone();
        let commands = std::iter::once(&req.command).chain(test_command.as_ref());
        for command in commands {
            let step = self.run_step(work, envs, command).await?;
            let code = step.exit_code;
            attempt.validation.push(step);
            if code != 0 {
                return Ok((
                    false,
                    format!("validation failed: `{command}` exited {code} after the fix"),
                ));
            }
        }
        let what = match &test_command {
            Some(t) => format!("`{}` and `{t}` pass", req.command),
            None => format!("`{}` passes (no test command given)", req.command),
        };
        Ok((true, format!("validated: {what} after the fix")))
    }

    /// Commits the staged fix in the attempt's work dir as the configured author with the
    /// message `Fix: <message>\n\nGenerated by PatchBot`, returning the commit id. Calling
    /// it again returns the same commit.
    ///
    /// # Errors
    ///
    /// [`Error::NotCommittable`] unless the attempt is [`FixStatus::Fixed`] with its work
    /// dir; [`Error::Git`] when git fails.
    pub async fn commit(&self, attempt: &FixAttempt, message: &str) -> Result<String> {
        self.check_config()?;
        if attempt.status != FixStatus::Fixed {
            return Err(Error::NotCommittable(format!(
                "attempt status is {:?}",
                attempt.status
            )));
        }
        let work = attempt
            .work()
            .ok_or_else(|| Error::NotCommittable("the work dir was not kept".into()))?;
        let head = self.git(&work, &["rev-parse", "HEAD"]).await?;
        let head = head.trim();
        if attempt
            .base_commit
            .as_deref()
            .is_some_and(|base| base != head)
        {
            return Ok(head.to_string());
        }
        let summary = one_line(message, 100);
        let summary = summary.strip_prefix("Fix: ").unwrap_or(&summary);
        let message = format!("Fix: {summary}\n\nGenerated by PatchBot");
        let name = format!("user.name={}", self.config.author_name);
        let email = format!("user.email={}", self.config.author_email);
        self.git(
            &work,
            &[
                "-c",
                &name,
                "-c",
                &email,
                "-c",
                "commit.gpgsign=false",
                "commit",
                "--quiet",
                "--no-verify",
                "-m",
                &message,
            ],
        )
        .await?;
        let sha = self.git(&work, &["rev-parse", "HEAD"]).await?;
        Ok(sha.trim().to_string())
    }

    async fn temp_dir(&self, prefix: &str) -> Result<TempDir> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(prefix);
        Ok(match &self.config.work_root {
            Some(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                builder.tempdir_in(dir)?
            }
            None => builder.tempdir()?,
        })
    }

    /// Runs one command on the work tree in the sandbox with the tools first on `PATH`.
    async fn run_step(
        &self,
        work: &Work,
        envs: &[ToolEnv],
        command: &str,
    ) -> Result<ValidationStep> {
        Ok(self.run_step_output(work, envs, command).await?.0)
    }

    async fn run_step_output(
        &self,
        work: &Work,
        envs: &[ToolEnv],
        command: &str,
    ) -> Result<(ValidationStep, RunOutput)> {
        let mut path: Vec<String> = work
            .deps
            .iter()
            .map(|venv| venv.join("bin").display().to_string())
            .collect();
        path.extend(envs.iter().map(|e| e.bin_dir.display().to_string()));
        path.push(BASE_PATH.to_string());
        tokio::fs::create_dir_all(&self.config.tool_cache).await?;
        let mut ro = vec![self.config.tool_cache.clone(), work.git.clone()];
        ro.extend(work.deps.clone());
        ro.extend(
            envs.iter()
                .filter(|e| !e.bin_dir.starts_with(&self.config.tool_cache))
                .map(|e| e.bin_dir.clone()),
        );
        // No network in the sandbox: make package managers fail fast instead of waiting
        // for DNS, and keep tool caches out of the work tree.
        let mut spec = RunSpec::new(&work.repo, command)
            .env("PATH", path.join(":"))
            .env("RUFF_NO_CACHE", "true")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PIP_NO_INDEX", "1")
            .env("NPM_CONFIG_OFFLINE", "true")
            .env("NPM_CONFIG_UPDATE_NOTIFIER", "false")
            .env("NO_COLOR", "1");
        for env in envs.iter().rev() {
            for (key, value) in &env.env {
                spec = spec.env(key.clone(), value.clone());
            }
        }
        spec.timeout = self.config.command_timeout;
        spec.limits = self.config.limits;
        spec.ecosystem = work.ecosystem.map(str::to_owned);
        spec.extra_ro_paths = ro;
        let out = self.config.sandbox.run(&spec).await?;
        let outcome = if out.timed_out {
            "timed_out"
        } else if out.exit_code == 0 {
            "passed"
        } else {
            "failed"
        };
        metrics::counter!(
            sentinel_runtime::metrics::names::SANDBOX_RUNS,
            "backend" => self.config.sandbox.describe(),
            "outcome" => outcome
        )
        .increment(1);
        tracing::debug!(
            command,
            exit_code = out.exit_code,
            "Sandboxed step finished."
        );
        Ok((step(command, &out), out))
    }

    /// Runs an installer in the sandbox: network on, `rw` writable besides the work tree.
    async fn run_install(&self, work: &Work, command: &str, rw: &Path) -> Result<ValidationStep> {
        self.run_install_with(work, command, rw, &[]).await
    }

    async fn run_install_with(
        &self,
        work: &Work,
        command: &str,
        rw: &Path,
        env: &[(String, String)],
    ) -> Result<ValidationStep> {
        let mut spec = RunSpec::new(&work.repo, command)
            .env("PATH", BASE_PATH)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_COLOR", "1");
        spec.timeout = self.config.command_timeout;
        spec.limits = self.config.limits;
        spec.ecosystem = work.ecosystem.map(str::to_owned);
        spec.allow_network = true;
        if let Some(url) = &self.config.pip_index_url {
            spec = spec.env("PIP_INDEX_URL", url.clone());
        }
        for (k, v) in env {
            spec = spec.env(k.clone(), v.clone());
        }
        spec.extra_ro_paths = vec![work.git.clone()];
        spec.extra_rw_paths = vec![rw.to_path_buf()];
        let out = self.config.sandbox.run(&spec).await?;
        Ok(step(command, &out))
    }

    /// Adds `distribution` to `requirements.txt` (or else `pyproject.toml`'s
    /// `[project] dependencies`) once the package index knows it; `Ok(Err(reason))` when
    /// that is not the right fix.
    async fn add_requirement(
        &self,
        work: &Work,
        module: &str,
        distribution: &str,
    ) -> Result<std::result::Result<Manifest, String>> {
        if self.is_stdlib(module).await {
            return Ok(Err(format!(
                "`{module}` is a standard-library module: the failure is a Python version \
                 mismatch, not a missing dependency"
            )));
        }
        for local in [
            format!("{module}.py"),
            module.to_string(),
            format!("src/{module}.py"),
            format!("src/{module}"),
        ] {
            if tokio::fs::symlink_metadata(work.repo.join(&local))
                .await
                .is_ok()
            {
                return Ok(Err(format!(
                    "`{module}` is the repository's own module ({local}): an import path or \
                     packaging problem, not a missing dependency"
                )));
            }
        }
        let mut manifest = None;
        for (name, kind) in [
            ("requirements.txt", Manifest::Requirements),
            ("pyproject.toml", Manifest::Pyproject),
        ] {
            let path = work.repo.join(name);
            // Repository content is untrusted: never write through a symlink out of the tree.
            match tokio::fs::symlink_metadata(&path).await {
                Ok(meta) if meta.is_file() && meta.len() <= MAX_REQUIREMENTS_BYTES => {
                    manifest = Some((path, kind));
                    break;
                }
                Ok(_) => {
                    return Ok(Err(format!(
                        "{name} is not a regular file of reasonable size"
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let Some((path, kind)) = manifest else {
            return Ok(Err(format!(
                "`{module}` is missing but the repository has neither requirements.txt nor \
                 pyproject.toml to add `{distribution}` to"
            )));
        };
        let distribution = match &self.config.python_index {
            Some(index) => match index.check(distribution).await {
                Ok(Verdict::Known { name, .. }) => name,
                Ok(Verdict::Refused(reason)) => {
                    return Ok(Err(format!(
                        "not adding `{distribution}` for `{module}`: {reason}"
                    )));
                }
                // Never add a name that could not be checked.
                Err(e) => {
                    return Ok(Err(format!(
                        "not adding `{distribution}` for `{module}`: it could not be checked \
                         against the package index ({e})"
                    )));
                }
            },
            None => {
                return Ok(Err(format!(
                    "`{module}` is missing, but no package index is configured to check \
                     `{distribution}` against: PatchBot adds no dependency it cannot check"
                )));
            }
        };
        let contents = tokio::fs::read_to_string(&path).await?;
        let updated = match kind {
            Manifest::Requirements => imports::add_requirement(&contents, &distribution),
            Manifest::Pyproject => {
                match imports::add_pyproject_dependency(&contents, &distribution) {
                    Ok(updated) => updated,
                    Err(reason) => return Ok(Err(reason)),
                }
            }
        };
        match updated {
            Some(updated) => {
                tokio::fs::write(&path, updated).await?;
                Ok(Ok(kind))
            }
            None => Ok(Err(format!(
                "`{distribution}` is already a dependency: the CI environment did not \
                 install it (an environment problem, not a code change)"
            ))),
        }
    }

    async fn is_stdlib(&self, module: &str) -> bool {
        let out = tokio::process::Command::new(&self.config.python)
            .args([
                "-c",
                "import sys; print('\\n'.join(sorted(sys.stdlib_module_names)))",
            ])
            .kill_on_drop(true)
            .output()
            .await;
        out.is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|m| m == module)
        })
    }

    /// git on the host against the attempt's own git dir, never through the work tree's
    /// `.git` (which sandboxed commands could have replaced), with hooks and fsmonitor off.
    pub(crate) async fn git(&self, work: &Work, args: &[&str]) -> Result<String> {
        let git_dir = format!("--git-dir={}", work.git.display());
        let work_tree = format!("--work-tree={}", work.repo.display());
        let mut all: Vec<&str> = vec![
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.quotePath=false",
            &git_dir,
            &work_tree,
        ];
        all.extend(args);
        git::run(Some(&work.repo), all).await.map_err(Error::Git)
    }
}

/// Prepends `/* global a, b */` to each file (resolved inside `repo` from the path the log
/// shows, which is usually absolute on the CI machine: the longest suffix that names a
/// regular file in the tree). `Ok(Err(reason))` when a file cannot be found.
async fn declare_globals(
    repo: &Path,
    files: &[(String, Vec<String>)],
) -> Result<std::result::Result<(), String>> {
    for (shown, names) in files {
        let parts: Vec<&str> = shown
            .split('/')
            .filter(|p| !p.is_empty() && *p != "." && *p != "..")
            .collect();
        let mut found = None;
        for start in 0..parts.len() {
            let candidate = repo.join(parts[start..].join("/"));
            // No symlinks: repository content must not redirect the write.
            if tokio::fs::symlink_metadata(&candidate)
                .await
                .is_ok_and(|m| m.is_file() && m.len() <= MAX_REQUIREMENTS_BYTES)
            {
                found = Some(candidate);
                break;
            }
        }
        let Some(path) = found else {
            return Ok(Err(format!(
                "{shown} (named by ESLint) is not in the repository"
            )));
        };
        let text = tokio::fs::read_to_string(&path).await?;
        let header = format!("/* global {} */\n", names.join(", "));
        let updated = match text.strip_prefix("#!") {
            // Keep a shebang first.
            Some(_) => match text.split_once('\n') {
                Some((shebang, rest)) => format!("{shebang}\n{header}{rest}"),
                None => format!("{text}\n{header}"),
            },
            None => format!("{header}{text}"),
        };
        tokio::fs::write(&path, updated).await?;
    }
    Ok(Ok(()))
}

/// Points the work tree's `.git` back at the real git dir, whatever a sandboxed command
/// left there, so later git commands in the work dir (e.g. the forge's push) are safe.
pub(crate) async fn restore_gitfile(work: &Work) -> Result<()> {
    let dot_git = work.repo.join(".git");
    match tokio::fs::symlink_metadata(&dot_git).await {
        Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(&dot_git).await?,
        Ok(_) => tokio::fs::remove_file(&dot_git).await?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    tokio::fs::write(&dot_git, format!("gitdir: {}\n", work.git.display())).await?;
    Ok(())
}

fn step(command: &str, out: &RunOutput) -> ValidationStep {
    ValidationStep {
        command: command.to_string(),
        exit_code: if out.timed_out { -1 } else { out.exit_code },
        duration_ms: i64::try_from(out.duration.as_millis()).unwrap_or(i64::MAX),
        output_tail: redacted_tail(&out.output, TAIL_LINES, TAIL_BYTES),
    }
}

/// Prior × validation: full prior when the change cannot alter behaviour or the tests
/// passed too; a lint autofix validated only by the linter loses a little.
pub(crate) fn confidence(plan: &Plan, tests_ran: bool, history: History) -> f64 {
    let evidence = if plan.behaviour_preserving || tests_ran {
        1.0
    } else {
        0.9
    };
    plan.prior * evidence * history.factor()
}

/// The `test_command` of the checked-out repository's `.sentinel.toml`; `Err` with a reason
/// when the file exists but is not a small regular file of valid settings.
async fn repo_test_command(repo: &std::path::Path) -> std::result::Result<Option<String>, String> {
    let path = repo.join(REPO_SETTINGS_FILE);
    let meta = match tokio::fs::symlink_metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{REPO_SETTINGS_FILE}: {e}")),
    };
    // Repository content is untrusted: no symlinks out of the tree, no huge files.
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return Err(format!(
            "{REPO_SETTINGS_FILE} is not a regular file of at most 64 KiB"
        ));
    }
    let text = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| format!("{REPO_SETTINGS_FILE}: {e}"))?;
    let settings: RepoSettings =
        toml::from_str(&text).map_err(|e| format!("invalid {REPO_SETTINGS_FILE}: {e}"))?;
    Ok(settings
        .test_command
        .filter(|t| !t.trim().is_empty() && !t.contains('\0')))
}

/// Compiles globs as the policy does (`*` stays within a directory, `**` crosses them).
fn glob_set(globs: &[String]) -> std::result::Result<globset::GlobSet, globset::Error> {
    let mut b = globset::GlobSetBuilder::new();
    for g in globs {
        b.add(
            globset::GlobBuilder::new(g)
                .literal_separator(true)
                .build()?,
        );
    }
    b.build()
}

fn is_protected(path: &str, protected: &[String]) -> bool {
    protected.iter().any(|p| {
        if p.ends_with('/') {
            path.starts_with(p.as_str())
        } else {
            path == p
        }
    })
}

pub(crate) fn bound_diff(mut diff: String) -> String {
    if diff.len() <= MAX_DIFF_BYTES {
        return diff;
    }
    let total = diff.len();
    let mut cut = MAX_DIFF_BYTES;
    while !diff.is_char_boundary(cut) {
        cut -= 1;
    }
    diff.truncate(cut);
    diff.push_str(&format!("\n[diff truncated: {total} bytes in all]\n"));
    diff
}

fn one_line(text: &str, max_chars: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("CI failure");
    line.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_paths_match_dirs_and_exact_files() {
        let protected: Vec<String> = DEFAULT_PROTECTED_PATHS
            .iter()
            .map(|p| (*p).to_string())
            .collect();
        assert!(is_protected(".github/workflows/ci.yml", &protected));
        assert!(is_protected(".gitlab-ci.yml", &protected));
        assert!(!is_protected("src/.github/workflows/x", &protected));
        assert!(!is_protected("app.py", &protected));
    }

    #[test]
    fn commit_summaries_are_one_bounded_line() {
        assert_eq!(
            one_line("\n  black would reformat app.py\nmore", 100),
            "black would reformat app.py"
        );
        assert_eq!(one_line("", 100), "CI failure");
        assert_eq!(one_line(&"x".repeat(300), 100).len(), 100);
    }

    #[test]
    fn history_scales_confidence_towards_the_observed_success_rate() {
        assert!((History::default().factor() - 1.0).abs() < 1e-9);
        let all_good = History {
            attempts: 5,
            successes: 5,
        };
        assert!((all_good.factor() - 1.0).abs() < 1e-9);
        let poor = History {
            attempts: 3,
            successes: 0,
        };
        assert!((poor.factor() - 0.25).abs() < 1e-9);
        let plan = Plan {
            name: "black".into(),
            tools: vec![],
            action: Action::Run(vec![]),
            prior: 0.9,
            behaviour_preserving: false,
        };
        assert!((confidence(&plan, false, poor) - 0.9 * 0.9 * 0.25).abs() < 1e-9);
        assert!((confidence(&plan, true, History::default()) - 0.9).abs() < 1e-9);
    }

    #[tokio::test]
    async fn the_repository_names_its_test_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(repo_test_command(dir.path()).await, Ok(None));
        std::fs::write(
            dir.path().join(REPO_SETTINGS_FILE),
            "test_command = \"pytest -q\"\n",
        )
        .expect("write");
        assert_eq!(
            repo_test_command(dir.path()).await,
            Ok(Some("pytest -q".into()))
        );
        std::fs::write(dir.path().join(REPO_SETTINGS_FILE), "test_command = [").expect("write");
        assert!(repo_test_command(dir.path()).await.is_err());
        std::fs::remove_file(dir.path().join(REPO_SETTINGS_FILE)).expect("rm");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(REPO_SETTINGS_FILE))
            .expect("symlink");
        assert!(repo_test_command(dir.path()).await.is_err());
    }

    #[test]
    fn the_ecosystem_comes_from_the_command_then_the_manifests() {
        assert_eq!(
            ecosystem("black --check .", &["package.json"]),
            Some("python")
        );
        assert_eq!(ecosystem("npx eslint .", &[]), Some("node"));
        assert_eq!(ecosystem("cargo fmt --all -- --check", &[]), Some("rust"));
        assert_eq!(ecosystem("CI=1 python3 -m unittest", &[]), Some("python"));
        assert_eq!(ecosystem("go vet ./...", &[]), Some("go"));
        assert_eq!(ecosystem("make test", &["README.md", "go.mod"]), Some("go"));
        assert_eq!(
            ecosystem("make test", &["requirements.txt", "package.json"]),
            Some("node")
        );
        assert_eq!(ecosystem("make test", &["README.md"]), None);
    }

    #[test]
    fn large_diffs_are_bounded() {
        let d = bound_diff("é".repeat(MAX_DIFF_BYTES));
        assert!(d.len() < MAX_DIFF_BYTES + 100);
        assert!(d.ends_with("bytes in all]\n"));
    }
}
