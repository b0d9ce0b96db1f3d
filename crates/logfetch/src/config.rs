//! Settings of the log capture stage and the delivery sweeper.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::normalise::{DEFAULT_MAX_EXCERPT_BYTES, ExcerptLimits};

/// GitHub's public API.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
/// GitLab.com's API.
pub const DEFAULT_GITLAB_API_URL: &str = "https://gitlab.com/api/v4";
/// Largest log downloaded per job (its end is kept when it is larger): 64 MB.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: usize = 64 * 1024 * 1024;

/// How Sentinel authenticates to GitHub.
#[derive(Clone, PartialEq, Eq)]
pub enum GitHubAuth {
    /// A personal access token or another token used as is.
    Token(String),
    /// A GitHub App: JWTs signed with the private key buy installation tokens.
    App {
        /// The app's id.
        app_id: u64,
        /// The app's RSA private key (PEM).
        private_key_pem: String,
    },
}

impl std::fmt::Debug for GitHubAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitHubAuth::Token(_) => f.write_str("Token([REDACTED])"),
            GitHubAuth::App { app_id, .. } => write!(f, "App {{ app_id: {app_id}, .. }}"),
        }
    }
}

/// Settings of the `logfetch` stage (and of the sweeper, which needs GitHub App
/// credentials). Every field has a default; without credentials a failure from that CI
/// system is recorded with `fetch_error` saying so.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogfetchConfig {
    /// GitHub REST API base URL (GitHub Enterprise: `https://HOST/api/v3`).
    pub github_api_url: String,
    /// A GitHub token (used when no App is configured).
    #[serde(skip)]
    pub github_token: Option<String>,
    /// GitHub App id.
    pub github_app_id: Option<u64>,
    /// GitHub App private key (PEM), inline.
    #[serde(skip)]
    pub github_app_private_key: Option<String>,
    /// GitHub App private key (PEM), from a file.
    pub github_app_private_key_file: Option<PathBuf>,
    /// GitLab REST API base URL.
    pub gitlab_api_url: String,
    /// A GitLab token with `read_api` scope.
    #[serde(skip)]
    pub gitlab_token: Option<String>,
    /// Jenkins base URL: only build URLs under it are fetched (`consoleText`); unset, no
    /// Jenkins console is fetched (the URL comes from a webhook and must not point anywhere).
    pub jenkins_url: Option<String>,
    /// Jenkins user for Basic auth.
    pub jenkins_user: Option<String>,
    /// Jenkins API token for Basic auth.
    #[serde(skip)]
    pub jenkins_api_token: Option<String>,
    /// Largest stored excerpt in bytes (the full size is recorded).
    pub max_excerpt_bytes: usize,
    /// Largest log downloaded per job; the end is kept when a log is larger.
    pub max_download_bytes: usize,
    /// Literal secrets redacted wherever they appear (besides the built-in rules).
    #[serde(skip)]
    pub literal_secrets: Vec<String>,
    /// Timeout of one HTTP request, in seconds.
    pub request_timeout_secs: u64,
    /// How often the delivery sweeper runs, in seconds.
    pub sweep_interval_secs: u64,
    /// How far back the sweeper looks for failed deliveries, in seconds.
    pub sweep_lookback_secs: u64,
}

impl Default for LogfetchConfig {
    fn default() -> Self {
        LogfetchConfig {
            github_api_url: DEFAULT_GITHUB_API_URL.to_owned(),
            github_token: None,
            github_app_id: None,
            github_app_private_key: None,
            github_app_private_key_file: None,
            gitlab_api_url: DEFAULT_GITLAB_API_URL.to_owned(),
            gitlab_token: None,
            jenkins_url: None,
            jenkins_user: None,
            jenkins_api_token: None,
            max_excerpt_bytes: DEFAULT_MAX_EXCERPT_BYTES,
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            literal_secrets: Vec::new(),
            request_timeout_secs: 30,
            sweep_interval_secs: 300,
            sweep_lookback_secs: 3 * 3600,
        }
    }
}

impl LogfetchConfig {
    /// The GitHub credentials: the App when an id and key are configured, else the token.
    ///
    /// # Errors
    ///
    /// An App id without a key (or the key file unreadable), or a key without an id.
    pub fn github_auth(&self) -> crate::Result<Option<GitHubAuth>> {
        let key = match (
            &self.github_app_private_key,
            &self.github_app_private_key_file,
        ) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                crate::Error::Config(format!(
                    "cannot read the GitHub App private key {}: {e}",
                    path.display()
                ))
            })?),
            (None, None) => None,
        };
        match (self.github_app_id, key) {
            (Some(app_id), Some(private_key_pem)) => Ok(Some(GitHubAuth::App {
                app_id,
                private_key_pem,
            })),
            (Some(_), None) => Err(crate::Error::Config(
                "a GitHub App id is configured without its private key \
                 (SENTINEL_GITHUB_APP_PRIVATE_KEY or SENTINEL_GITHUB_APP_PRIVATE_KEY_FILE)"
                    .into(),
            )),
            (None, Some(_)) => Err(crate::Error::Config(
                "a GitHub App private key is configured without the app id \
                 (SENTINEL_GITHUB_APP_ID)"
                    .into(),
            )),
            (None, None) => Ok(self.github_token.clone().map(GitHubAuth::Token)),
        }
    }

    /// The excerpt bounds.
    pub fn limits(&self) -> ExcerptLimits {
        ExcerptLimits {
            max_bytes: self.max_excerpt_bytes,
            ..ExcerptLimits::default()
        }
    }

    /// The HTTP request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// Every configured credential, so that none of them can leak into a stored log.
    pub fn own_secrets(&self) -> Vec<String> {
        let mut out = self.literal_secrets.clone();
        out.extend(self.github_token.clone());
        out.extend(self.gitlab_token.clone());
        out.extend(self.jenkins_api_token.clone());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_wins_over_token_and_half_an_app_is_an_error() {
        let mut c = LogfetchConfig {
            github_token: Some("t".into()),
            ..LogfetchConfig::default()
        };
        assert_eq!(
            c.github_auth().expect("auth"),
            Some(GitHubAuth::Token("t".into()))
        );
        c.github_app_id = Some(7);
        assert!(c.github_auth().is_err());
        c.github_app_private_key = Some("pem".into());
        assert!(matches!(
            c.github_auth().expect("auth"),
            Some(GitHubAuth::App { app_id: 7, .. })
        ));
        assert!(!format!("{:?}", GitHubAuth::Token("secret-x".into())).contains("secret-x"));
    }
}
