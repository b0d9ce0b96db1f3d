//! The forge's error type.

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a forge operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller asked for something this forge refuses (bad branch or repository name,
    /// a branch that was never pushed, …). Retrying will not help.
    #[error("invalid forge input: {0}")]
    InvalidInput(String),
    /// A git command failed.
    #[error("`git {command}` failed (exit {exit_code}): {stderr}")]
    Git {
        /// The arguments, space-joined.
        command: String,
        /// git's exit code (-1 when killed).
        exit_code: i32,
        /// The tail of git's stderr.
        stderr: String,
    },
    /// git could not be started.
    #[error("could not run git: {0}")]
    GitMissing(#[source] std::io::Error),
    /// A pull-request record is corrupt.
    #[error("pull request record {path}: {source}")]
    Record {
        /// The record file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A hosted forge's API refused or failed a request.
    #[error("forge API ({status:?}): {message}")]
    Remote {
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// What was being done and what the API said.
        message: String,
    },
    /// File-system I/O failed.
    #[error("forge I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether retrying later may succeed (I/O trouble) rather than failing the same way.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io(_) => true,
            // No response, rate limits, server trouble.
            Error::Remote { status, .. } => status.is_none_or(|s| s == 408 || s == 429 || s >= 500),
            _ => false,
        }
    }
}
