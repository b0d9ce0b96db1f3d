//! PatchBot's error type.

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an attempt could not be carried out at all. A fix that does not work is not an
/// error: it is a [`crate::FixAttempt`] with status `no_fix`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be worked on (empty command, bad repository, …).
    #[error("invalid fix request: {0}")]
    InvalidRequest(String),
    /// A pinned tool could not be provisioned.
    #[error("provisioning {tool} {version}: {reason}")]
    Tool {
        /// The tool.
        tool: String,
        /// The pinned version.
        version: String,
        /// What failed (the installer's message tail).
        reason: String,
    },
    /// Checking the repository out at the failing commit failed.
    #[error("checking out {repository} at {commit}: {source}")]
    Checkout {
        /// The repository as requested.
        repository: String,
        /// The commit as requested.
        commit: String,
        /// The git error.
        #[source]
        source: sentinel_forge::Error,
    },
    /// A git command in the work dir failed.
    #[error("git in the work dir: {0}")]
    Git(#[source] sentinel_forge::Error),
    /// The sandbox could not run a command.
    #[error("sandbox: {0}")]
    Sandbox(#[from] sentinel_sandbox::Error),
    /// [`crate::PatchBot::commit`] was called on an attempt that has nothing to commit.
    #[error("nothing to commit: {0}")]
    NotCommittable(String),
    /// The package index could not be asked.
    #[error("package index: {0}")]
    Index(String),
    /// The LLM could not be asked for a moment (timeout, unreachable, 429, 5xx); answers it
    /// did give that are unusable are a `no_fix`, not an error.
    #[error("LLM: {0}")]
    Llm(#[source] sentinel_llm::Error),
    /// File-system I/O failed.
    #[error("patchbot I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether retrying the attempt later may succeed (a registry or disk hiccup) rather
    /// than failing the same way.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Tool { .. } | Error::Io(_) | Error::Index(_) => true,
            Error::Llm(e) => e.is_transient(),
            Error::Checkout { source, .. } | Error::Git(source) => source.is_transient(),
            Error::Sandbox(e) => matches!(e, sentinel_sandbox::Error::Io(_)),
            Error::InvalidRequest(_) | Error::NotCommittable(_) => false,
        }
    }
}
