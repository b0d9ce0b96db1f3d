//! The sandbox's error type.

use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a command could not be run. A command that ran and failed is not an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run spec is unusable (empty command, bad env name, missing work dir, …).
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    /// A path named in the spec does not exist or cannot be resolved.
    #[error("sandbox path {path:?}: {source}")]
    Path {
        /// The path as given.
        path: PathBuf,
        /// Why it could not be used.
        source: std::io::Error,
    },
    /// The requested isolation is not available on this machine.
    #[error("isolation {requested} is not available here: {reason}")]
    Unavailable {
        /// The isolation level asked for.
        requested: String,
        /// What is missing (e.g. `bwrap` not on PATH, user namespaces disabled).
        reason: String,
    },
    /// Starting the isolation wrapper or the command failed.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The program that failed to start.
        program: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Other I/O around the run failed (pipes, temp dirs, cgroups).
    #[error("sandbox I/O: {0}")]
    Io(#[from] std::io::Error),
}
