//! Value types shared by several facts.

use serde::{Deserialize, Serialize};

/// What kind of failure a CI run had. `infrastructure` and `unknown` are never fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureType {
    /// A linter reported violations (ruff check, flake8, eslint, clippy, …).
    Linting,
    /// A formatter check failed (black, ruff format, prettier --check, rustfmt, gofmt, …).
    Formatting,
    /// A type checker failed (mypy, pyright, tsc, …).
    TypeChecking,
    /// Tests ran and failed.
    TestFailure,
    /// Compilation or build failed.
    BuildError,
    /// Dependency resolution failed (version conflicts, missing lock entries).
    DependencyIssue,
    /// A module or package could not be imported or found.
    ImportError,
    /// A deprecation was turned into an error.
    Deprecation,
    /// The job died of its environment (network, DNS, OOM, disk, runner); never fixed.
    Infrastructure,
    /// Nothing recognisable.
    Unknown,
}

impl FailureType {
    /// Every failure type, in declaration order.
    pub const ALL: [FailureType; 10] = [
        FailureType::Linting,
        FailureType::Formatting,
        FailureType::TypeChecking,
        FailureType::TestFailure,
        FailureType::BuildError,
        FailureType::DependencyIssue,
        FailureType::ImportError,
        FailureType::Deprecation,
        FailureType::Infrastructure,
        FailureType::Unknown,
    ];

    /// The snake_case name used on the wire, in policies and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureType::Linting => "linting",
            FailureType::Formatting => "formatting",
            FailureType::TypeChecking => "type_checking",
            FailureType::TestFailure => "test_failure",
            FailureType::BuildError => "build_error",
            FailureType::DependencyIssue => "dependency_issue",
            FailureType::ImportError => "import_error",
            FailureType::Deprecation => "deprecation",
            FailureType::Infrastructure => "infrastructure",
            FailureType::Unknown => "unknown",
        }
    }

    /// Whether a code fix may ever be attempted for this type.
    pub fn is_fixable(self) -> bool {
        !matches!(self, FailureType::Infrastructure | FailureType::Unknown)
    }
}

impl std::fmt::Display for FailureType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FailureType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown failure type {s:?}"))
    }
}

/// One command run while validating a fix candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationStep {
    /// The command line as run (through `sh -c`).
    pub command: String,
    /// Exit code; -1 when killed by a signal or the timeout.
    pub exit_code: i32,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: i64,
    /// The last lines of combined stdout/stderr, redacted and bounded.
    pub output_tail: String,
}
/// The policy's answer before work starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchDecision {
    /// `dispatch`
    Dispatch,
    /// `rate_limited`
    RateLimited,
    /// `cooldown`
    Cooldown,
    /// `blast_radius`
    BlastRadius,
    /// `not_fixable`
    NotFixable,
    /// `loop_guard`
    LoopGuard,
    /// `not_eligible`
    NotEligible,
}

impl DispatchDecision {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DispatchDecision::Dispatch => "dispatch",
            DispatchDecision::RateLimited => "rate_limited",
            DispatchDecision::Cooldown => "cooldown",
            DispatchDecision::BlastRadius => "blast_radius",
            DispatchDecision::NotFixable => "not_fixable",
            DispatchDecision::LoopGuard => "loop_guard",
            DispatchDecision::NotEligible => "not_eligible",
        }
    }
}

/// The policy's answer once a validated fix exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionDecision {
    /// `auto_merge`
    AutoMerge,
    /// `open_pr`
    OpenPr,
    /// `require_review`
    RequireReview,
    /// `reject`
    Reject,
}

impl ActionDecision {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionDecision::AutoMerge => "auto_merge",
            ActionDecision::OpenPr => "open_pr",
            ActionDecision::RequireReview => "require_review",
            ActionDecision::Reject => "reject",
        }
    }
}

/// The policy's answer to a requested rollback (`RollbackRequested`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackDecision {
    /// `revert`: open a pull request reverting the fix.
    Revert,
    /// `no_revert`: leave the fix in place.
    NoRevert,
}

impl RollbackDecision {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackDecision::Revert => "revert",
            RollbackDecision::NoRevert => "no_revert",
        }
    }
}

/// Lifecycle status of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// `active`
    Active,
    /// `paused`
    Paused,
    /// `failed`
    Failed,
    /// `stopped`
    Stopped,
}

impl AgentStatus {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Paused => "paused",
            AgentStatus::Failed => "failed",
            AgentStatus::Stopped => "stopped",
        }
    }
}

/// What PatchBot concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixStatus {
    /// `fixed`
    Fixed,
    /// `no_fix`
    NoFix,
    /// `not_fixable`
    NotFixable,
}

impl FixStatus {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FixStatus::Fixed => "fixed",
            FixStatus::NoFix => "no_fix",
            FixStatus::NotFixable => "not_fixable",
        }
    }
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    /// `completed`
    Completed,
    /// `failed`
    Failed,
    /// `partial`
    Partial,
}

impl TaskOutcome {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskOutcome::Completed => "completed",
            TaskOutcome::Failed => "failed",
            TaskOutcome::Partial => "partial",
        }
    }
}
/// Something a task produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// `pull_request`, `fix_diff`, `log` or `report`.
    pub kind: String,
    /// A short name.
    pub name: String,
    /// Where it lives, when it lives elsewhere.
    #[serde(default)]
    pub uri: Option<String>,
    /// Inline content (bounded).
    #[serde(default)]
    pub content: Option<String>,
}

/// The JSON payload of a `fix_failure` task (`TaskQueued.payload`): everything PatchBot
/// needs to reproduce and fix the failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixTaskPayload {
    /// The CiRunFailed fact.
    pub failure_event_id: String,
    /// Repository: a local path or a git URL.
    pub repository: String,
    /// Branch the failure happened on (the PR's base).
    pub branch: String,
    /// The failing commit.
    pub commit: String,
    /// The command that failed.
    pub command: Option<String>,
    /// The failure's class.
    pub failure_type: FailureType,
    /// The tool that reported it.
    pub tool: Option<String>,
    /// The classifier's fix-strategy hint (pattern id).
    pub pattern_id: Option<String>,
    /// The failure signature.
    pub signature: String,
    /// Modules named by the error (import errors).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Files named by the error.
    #[serde(default)]
    pub files: Vec<String>,
    /// A bounded, redacted excerpt of the log.
    #[serde(default)]
    pub log_excerpt: String,
}

/// The task type of PatchBot's fix tasks.
pub const TASK_FIX_FAILURE: &str = "fix_failure";
