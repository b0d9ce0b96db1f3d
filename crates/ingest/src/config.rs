//! Receiver configuration: secrets, limits and the loop guard's bot identity.

use std::fmt;

/// Default body limit: 25 MB, GitHub's and GitLab's own cap on webhook payloads.
pub const DEFAULT_BODY_LIMIT: usize = 25 * 1024 * 1024;

/// Branch prefix of Sentinel's own fix branches (loop guard).
pub const FIX_BRANCH_PREFIX: &str = "sentinel/fix-";

/// Default bot name: the identity PatchBot commits as.
pub const DEFAULT_BOT_NAME: &str = "Sentinel PatchBot";
/// Default bot email: the identity PatchBot commits as.
pub const DEFAULT_BOT_EMAIL: &str = "patchbot@sentinel.invalid";

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret; empty strings count as "not configured" and give `None`.
    pub fn new(value: impl Into<String>) -> Option<Secret> {
        let v = value.into();
        (!v.is_empty()).then_some(Secret(v))
    }

    /// The secret's bytes (for HMAC keys and constant-time comparison).
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Sentinel's own commit identity: failures on commits it authored, or on its fix
/// branches, are recorded with `sentinel_authored = true` so the policy refuses them
/// (no fix-the-fix loops).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    /// Author name of Sentinel's commits.
    pub name: String,
    /// Author email of Sentinel's commits.
    pub email: String,
}

impl Default for BotIdentity {
    fn default() -> Self {
        Self {
            name: DEFAULT_BOT_NAME.into(),
            email: DEFAULT_BOT_EMAIL.into(),
        }
    }
}

impl BotIdentity {
    /// Whether a failure on `branch` by this author is Sentinel's own. Branches may come
    /// as `refs/heads/x` (GitHub, GitLab) or `origin/x` (Jenkins' git plugin).
    pub fn is_sentinel(
        &self,
        branch: &str,
        author_name: Option<&str>,
        author_email: Option<&str>,
    ) -> bool {
        let b = branch.trim();
        let b = b
            .strip_prefix("refs/heads/")
            .or_else(|| b.strip_prefix("origin/"))
            .unwrap_or(b);
        let same = |a: Option<&str>, mine: &str| {
            a.is_some_and(|a| !mine.is_empty() && a.trim().eq_ignore_ascii_case(mine))
        };
        b.starts_with(FIX_BRANCH_PREFIX)
            || same(author_name, &self.name)
            || same(author_email, &self.email)
    }
}

/// Configuration of the receivers.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest accepted body in bytes (413 beyond).
    pub body_limit: usize,
    /// GitHub webhook secret (`X-Hub-Signature-256`); without one `/webhooks/github` answers 401.
    pub github_secret: Option<Secret>,
    /// GitLab webhook token (`X-Gitlab-Token`); without one `/webhooks/gitlab` answers 401.
    pub gitlab_token: Option<Secret>,
    /// Jenkins token (in the path or as the Basic-auth password); without one
    /// `/webhooks/jenkins` answers 401.
    pub jenkins_token: Option<Secret>,
    /// Optional HMAC secret of `/webhooks/generic` (`X-Sentinel-Signature-256` or
    /// `X-Hub-Signature-256`); when unset the generic endpoint accepts unsigned reports.
    pub generic_secret: Option<Secret>,
    /// The loop guard's bot identity.
    pub bot: BotIdentity,
    /// How many recent delivery ids each process remembers to answer redeliveries without
    /// appending (the log's deterministic ids stay the durable guarantee).
    pub dedupe_window: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
            github_secret: None,
            gitlab_token: None,
            jenkins_token: None,
            generic_secret: None,
            bot: BotIdentity::default(),
            dedupe_window: 100_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let s = Secret::new("hunter2").expect("secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(Secret::new("").is_none());
    }

    #[test]
    fn loop_guard_matches_fix_branches_and_the_bot_author() {
        let bot = BotIdentity::default();
        assert!(bot.is_sentinel("sentinel/fix-abc", None, None));
        assert!(bot.is_sentinel("refs/heads/sentinel/fix-abc", None, None));
        assert!(bot.is_sentinel("origin/sentinel/fix-abc", None, None));
        assert!(bot.is_sentinel("main", Some("Sentinel PatchBot"), None));
        assert!(bot.is_sentinel("main", None, Some("PATCHBOT@sentinel.invalid")));
        assert!(!bot.is_sentinel("main", Some("Alice"), Some("alice@example.com")));
        assert!(!bot.is_sentinel("feature/sentinel/fix-x", None, None));
    }
}
