//! The auto-remediation policy (DESIGN §5): the TOML model with the seed's defaults, pure
//! decision functions, and the policy stage that records every decision as a fact with the
//! policy's version hash and a machine-readable reason.

#![forbid(unsafe_code)]

pub mod audit;
pub mod decide;
pub mod forward;
pub mod model;
pub mod replay;
pub mod stage;
pub mod testing;

pub use decide::{
    ActionRequest, Decision, DispatchRequest, PolicyState, REVERT_BRANCH_PREFIX, RollbackRequest,
    RollbackVerdict, decide_action, decide_dispatch, decide_rollback, revert_branch,
};
pub use forward::PolicyForwardStage;
pub use model::{AutoRemediationPolicy, Rules};
pub use stage::PolicyStage;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors loading a policy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy file is invalid.
    #[error("invalid policy {source_name}: {message}")]
    Parse {
        /// The file (or `<builtin>`).
        source_name: String,
        /// What is wrong, with the line and key.
        message: String,
    },
    /// An override is invalid (turned into [`Error::Parse`] with its line by `from_toml`).
    #[error("invalid {kind}.{name:?}: {message}")]
    Override {
        /// `tenants` or `repositories`.
        kind: String,
        /// The tenant or repository.
        name: String,
        /// The offending key, when known.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The policy file cannot be read.
    #[error("cannot read policy {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Loads a policy file, or the built-in defaults when `path` is `None`.
///
/// # Errors
///
/// Unreadable file or invalid policy.
pub fn load(path: Option<&std::path::Path>) -> Result<AutoRemediationPolicy> {
    match path {
        None => Ok(AutoRemediationPolicy::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| Error::Read {
                path: p.display().to_string(),
                source,
            })?;
            AutoRemediationPolicy::from_toml(&p.display().to_string(), &text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_policy_and_versions_are_content_hashes() {
        let p = AutoRemediationPolicy::from_toml("t", "").expect("parse");
        assert_eq!(p, AutoRemediationPolicy::default());
        assert_eq!(p.rules.rate_limits.max_fixes_per_hour, 10);
        assert_eq!(p.rules.confidence_thresholds.auto_merge_threshold, 0.9);
        let spelled = "# comment\n[rate_limits]\nmax_fixes_per_hour = 10\n";
        let q = AutoRemediationPolicy::from_toml("t", spelled).expect("parse");
        assert_eq!(p.version(), q.version());
        let r = AutoRemediationPolicy::from_toml("t", "[rate_limits]\nmax_fixes_per_hour = 3\n")
            .expect("parse");
        assert_ne!(p.version(), r.version());
    }

    #[test]
    fn invalid_files_name_the_key_and_line() {
        let err =
            AutoRemediationPolicy::from_toml("p.toml", "[rate_limits]\nmax_fixes_per_hr = 3\n")
                .expect_err("unknown key");
        let msg = err.to_string();
        assert!(
            msg.contains("max_fixes_per_hr") && msg.contains("line 2"),
            "{msg}"
        );
        let err = AutoRemediationPolicy::from_toml(
            "p.toml",
            "[confidence_thresholds]\nauto_merge_threshold = 1.5\n",
        )
        .expect_err("out of range");
        assert!(err.to_string().contains("auto_merge_threshold"));
    }
}
