//! Log capture (`logfetch`): for each `CiRunFailed` whose log was not sent inline, fetch
//! the failed jobs' logs from the CI system, normalise, redact and bound them, and append
//! `FailureLogsCaptured` (the classifier then classifies that log).
//!
//! * GitHub Actions ([`github`]): list the run's jobs, pick the failed ones and their failed
//!   steps, download each failed job's log. Authenticates with a token or as a GitHub App
//!   (app id + private key → JWT → installation token, refreshed before it expires), through
//!   octocrab with a configurable API base URL.
//! * GitLab CI ([`gitlab`]): the pipeline's failed jobs and each job's trace.
//! * Jenkins ([`jenkins`]): the log comes inline with the notification when the plugin sends
//!   it (then there is nothing to fetch); otherwise the build's `consoleText`.
//!
//! [`normalise`] is the pure part (ANSI codes, timestamps and group markers stripped, the
//! failing command and exit code extracted, error windows and tail kept within a bound);
//! redaction is `sentinel_events::redact`. [`sweeper`] asks GitHub to redeliver webhook
//! deliveries that failed (GitHub never retries by itself).
//!
//! Which failures are fetched: a `CiRunFailed` with an empty `log` (after trimming). Every
//! such failure gets exactly one `FailureLogsCaptured` — with `fetch_error` set and an empty
//! excerpt when the log cannot be had (no credentials configured, not found, expired), so
//! the failure is still classified instead of silently waiting forever.
#![forbid(unsafe_code)]

pub mod config;
mod download;
pub mod github;
pub mod gitlab;
pub mod jenkins;
pub mod normalise;
pub mod source;
pub mod stage;
pub mod sweeper;

pub use config::LogfetchConfig;
pub use stage::LogfetchStage;
pub use sweeper::{SweepReport, Sweeper};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong fetching a log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The settings are unusable (bad URL, unreadable private key, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// The remote answered that the thing does not exist or is no longer there (404, 410):
    /// retrying will not help.
    #[error("{what} not found ({status})")]
    NotFound {
        /// What was looked up.
        what: String,
        /// The HTTP status.
        status: u16,
    },
    /// The remote refused our credentials (401, 403 without rate limiting): retrying
    /// will not help until the configuration changes.
    #[error("{what}: access denied ({status}): {message}")]
    Denied {
        /// What was looked up.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The remote's message.
        message: String,
    },
    /// The remote failed, timed out, rate-limited us, or could not be reached: retry later.
    #[error("{what}: {message}")]
    Unavailable {
        /// What was looked up.
        what: String,
        /// Why.
        message: String,
    },
    /// The remote answered something that is not the documented shape.
    #[error("{what}: unexpected response: {message}")]
    Protocol {
        /// What was looked up.
        what: String,
        /// Why.
        message: String,
    },
}

impl Error {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// Maps an HTTP status (not 2xx) to an error.
    pub(crate) fn from_status(what: &str, status: u16, body: &str, rate_limited: bool) -> Error {
        let message = error_message(body);
        match status {
            404 | 410 => Error::NotFound {
                what: what.to_owned(),
                status,
            },
            401 | 403 if !rate_limited => Error::Denied {
                what: what.to_owned(),
                status,
                message,
            },
            _ => Error::Unavailable {
                what: what.to_owned(),
                message: format!("HTTP {status}: {message}"),
            },
        }
    }
}

/// The `message` of a JSON error body, else the body's start.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}
