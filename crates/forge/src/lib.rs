//! Forges: where Sentinel pushes fix branches and opens pull requests.
//!
//! A [`Forge`] is the only component that changes a repository people work in. Every call
//! is idempotent so that an at-least-once stage can retry it (DESIGN.md §4 rule 5): the
//! branch name is derived from the task id, pushing the same branch again moves it to the
//! new tip, and [`Forge::open_pull_request`] returns the pull request already open for a
//! branch instead of opening a second one.
//!
//! Implementations:
//!
//! * [`LocalGitForge`] — the embedded deployment: the repository is a local path or a
//!   `file://` URL, branches are pushed with the real `git` CLI and pull requests are JSON
//!   records on disk.
//! * [`GitHubForge`] — GitHub through octocrab (token or App installation), branch and
//!   commit through the Git Data API.
//! * [`GitLabForge`] — GitLab merge requests through its REST API (reqwest), branch and
//!   commit through the Commits API.
//!
//! [`git::clone_at`] checks a repository out at an exact commit into a fresh directory,
//! for PatchBot.

#![forbid(unsafe_code)]

mod error;
pub mod git;
mod github;
mod gitlab;
mod local;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use github::{GitHubAuth, GitHubConfig, GitHubForge};
pub use gitlab::{GitLabConfig, GitLabForge};
pub use local::{DEFAULT_BRANCH_PREFIX, LocalGitForge};

/// A repository as a forge addresses it: for [`LocalGitForge`] a local path or a
/// `file://` URL; for hosted forges an `owner/name` or clone URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RepoRef(String);

impl RepoRef {
    /// Wraps a repository location.
    pub fn new(location: impl Into<String>) -> Self {
        RepoRef(location.into())
    }

    /// The location as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RepoRef {
    fn from(s: &str) -> Self {
        RepoRef::new(s)
    }
}

impl From<String> for RepoRef {
    fn from(s: String) -> Self {
        RepoRef(s)
    }
}

/// A branch that now exists on the forge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedBranch {
    /// The branch name (without `refs/heads/`).
    pub branch: String,
    /// The full commit id the branch points to.
    pub commit: String,
}

/// What to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestRequest {
    /// The repository the pull request is opened in (as for [`RepoRef`]).
    pub repository: String,
    /// The head branch, already pushed.
    pub branch: String,
    /// The branch to merge into.
    pub base: String,
    /// One-line title.
    pub title: String,
    /// Markdown description (failure, diff, validation evidence, links).
    pub body: String,
    /// Open as a draft (used when the policy requires a human review).
    pub draft: bool,
    /// Labels to set.
    pub labels: Vec<String>,
}

/// Lifecycle state of a pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestState {
    /// Open for review.
    Open,
    /// Closed without merging.
    Closed,
    /// Merged into the base branch.
    Merged,
}

/// A pull request as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The forge's stable id for the pull request.
    pub id: String,
    /// The number people see (`#12`), unique per repository.
    pub number: u64,
    /// Where to look at it.
    pub url: String,
    /// The repository it belongs to, as requested.
    pub repository: String,
    /// The head branch.
    pub branch: String,
    /// The base branch.
    pub base: String,
    /// The head commit when the pull request was opened.
    pub head_commit: String,
    /// Title.
    pub title: String,
    /// Description.
    pub body: String,
    /// Whether it is a draft.
    pub draft: bool,
    /// Labels.
    pub labels: Vec<String>,
    /// Current state.
    pub state: PullRequestState,
}

/// Pushes branches and opens pull requests on one kind of forge.
///
/// # Idempotence
///
/// Stages are at-least-once, so every method may be called again with the same input
/// after a crash:
///
/// * [`push_branch`](Forge::push_branch) moves the branch to the work dir's `HEAD` (the
///   branch belongs to Sentinel: its name is derived from the task id), so a retry with
///   the same commit is a no-op and a retry with a new candidate replaces the old one;
/// * [`open_pull_request`](Forge::open_pull_request) first looks the branch up and
///   returns the pull request already open for it.
///
/// # Errors
///
/// [`Error::InvalidInput`] for a repository or branch this forge refuses (an option-like
/// name, a transport it does not serve, a branch name git rejects, a branch outside
/// Sentinel's prefix); [`Error::Git`] when
/// git itself fails (e.g. the branch is checked out in the target repository);
/// [`Error::is_transient`] says whether retrying may help.
#[async_trait]
pub trait Forge: Send + Sync + std::fmt::Debug {
    /// A short name for logs and facts, e.g. `local-git`.
    fn name(&self) -> &str;

    /// Pushes `HEAD` of the git work dir `workdir` to `branch` in `repo`.
    async fn push_branch(
        &self,
        repo: &RepoRef,
        workdir: &Path,
        branch: &str,
    ) -> Result<PushedBranch>;

    /// The pull request whose head is `branch` in `repo`, if one was opened.
    async fn find_pull_request(&self, repo: &RepoRef, branch: &str) -> Result<Option<PullRequest>>;

    /// Opens a pull request, or returns the one already opened for the branch.
    async fn open_pull_request(&self, req: &PullRequestRequest) -> Result<PullRequest>;

    /// Marks the (draft) pull request for `branch` ready for review; idempotent. Forges
    /// that cannot do this refuse with [`Error::InvalidInput`].
    async fn mark_ready(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        let _ = branch;
        Err(Error::InvalidInput(format!(
            "{} cannot mark pull requests of {repo} ready",
            self.name()
        )))
    }

    /// Closes the pull request for `branch` without merging; idempotent. Forges that cannot
    /// do this refuse with [`Error::InvalidInput`].
    async fn close_pull_request(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        let _ = branch;
        Err(Error::InvalidInput(format!(
            "{} cannot close pull requests of {repo}",
            self.name()
        )))
    }

    /// Asks the forge to merge `pr` once its checks pass — called only on an `auto_merge`
    /// policy decision. `Ok(false)` when this forge has no auto-merge (the default).
    async fn enable_auto_merge(&self, pr: &PullRequest) -> Result<bool> {
        let _ = pr;
        Ok(false)
    }

    /// Switches auto-merge of `pr` off again — called only while a rollback decision pauses
    /// auto-merge of its repository. `Ok(false)` when this forge has no auto-merge (the
    /// default). Idempotent: switching off an auto-merge that is already off succeeds.
    async fn disable_auto_merge(&self, pr: &PullRequest) -> Result<bool> {
        let _ = pr;
        Ok(false)
    }
}
