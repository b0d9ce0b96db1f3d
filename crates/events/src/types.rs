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
