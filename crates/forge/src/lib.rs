//! Forges: where Sentinel pushes fix branches and opens pull requests.
//!
//! [`LocalGitForge`] is the embedded default: it pushes branches to a local repository (a
//! path or `file://` URL) with the real `git` CLI and keeps pull-request records as JSON
//! files. Opening a pull request is idempotent: the record for a branch is looked up
//! before one is created.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::process::Command;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Forge errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A git command failed.
    #[error("git {args}: {stderr}")]
    Git {
        /// The arguments.
        args: String,
        /// What git printed.
        stderr: String,
    },
    /// I/O on the records directory or spawning git failed.
    #[error("forge I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A pull-request record is corrupt.
    #[error("pull request record {path}: {source}")]
    Record {
        /// The file.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A branch name Sentinel refuses to push (only `sentinel/…` branches are pushed).
    #[error("refusing to push branch {0:?}: only sentinel/* fix branches are pushed")]
    ProtectedBranch(String),
}

/// A repository: a local path or a git URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    /// Path or URL, as given in the failure report.
    pub location: String,
}

impl RepoRef {
    /// A repository at `location`.
    pub fn new(location: &str) -> Self {
        Self {
            location: location.to_owned(),
        }
    }
}

/// A pushed branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedBranch {
    /// Branch name.
    pub branch: String,
    /// Commit at its head.
    pub commit: String,
}

/// What to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestRequest {
    /// Repository.
    pub repository: String,
    /// Head branch.
    pub branch: String,
    /// Base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Body (Markdown).
    pub body: String,
    /// Open as draft.
    pub draft: bool,
    /// Labels.
    pub labels: Vec<String>,
}

/// An opened pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// Forge-specific id.
    pub id: String,
    /// Number within the repository.
    pub number: u64,
    /// URL.
    pub url: String,
    /// Head branch.
    pub branch: String,
    /// Base branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Draft.
    pub draft: bool,
    /// Labels.
    pub labels: Vec<String>,
    /// `open`, `merged` or `closed`.
    pub state: String,
}

/// Where fixes go.
#[async_trait]
pub trait Forge: Send + Sync {
    /// `local`, `github` or `gitlab`.
    fn name(&self) -> &'static str;

    /// Pushes `HEAD` of `workdir` to `branch` of the repository (force: the branch is
    /// Sentinel's own and derived from the task id).
    async fn push_branch(
        &self,
        repo: &RepoRef,
        workdir: &Path,
        branch: &str,
    ) -> Result<PushedBranch>;

    /// The pull request for a head branch, if one exists.
    async fn find_pull_request(
        &self,
        repository: &str,
        branch: &str,
    ) -> Result<Option<PullRequest>>;

    /// Opens a pull request, or returns the existing one for the branch.
    async fn open_pull_request(&self, req: &PullRequestRequest) -> Result<PullRequest>;
}

/// Runs git in `dir` with a fixed identity and no global configuration surprises.
///
/// # Errors
///
/// [`Error::Git`] with git's message when it exits non-zero.
pub async fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Sentinel PatchBot",
            "-c",
            "user.email=patchbot@sentinel.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await?;
    if !out.status.success() {
        return Err(Error::Git {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Checks out `commit` of `repository` into the fresh directory `dest` (created), without
/// touching the repository's working tree.
///
/// # Errors
///
/// git failures (unknown commit, unreachable repository).
pub async fn clone_at(repository: &str, commit: &str, dest: &Path) -> Result<()> {
    tokio::fs::create_dir_all(dest).await?;
    git(dest, &["init", "-q"]).await?;
    git(dest, &["fetch", "-q", "--no-tags", repository, commit]).await?;
    git(dest, &["checkout", "-q", "--detach", "FETCH_HEAD"]).await?;
    Ok(())
}

/// The embedded forge: a local git repository plus JSON pull-request records.
#[derive(Debug, Clone)]
pub struct LocalGitForge {
    records_dir: PathBuf,
}

impl LocalGitForge {
    /// A forge keeping its records under `records_dir`.
    pub fn new(records_dir: PathBuf) -> Self {
        Self { records_dir }
    }

    fn record_path(&self, repository: &str, branch: &str) -> PathBuf {
        let key = hex::encode(Sha256::digest(repository.as_bytes()));
        let file = branch.replace('/', "__");
        self.records_dir
            .join(&key[..16])
            .join(format!("{file}.json"))
    }

    fn repo_dir(&self, repository: &str) -> PathBuf {
        let key = hex::encode(Sha256::digest(repository.as_bytes()));
        self.records_dir.join(&key[..16])
    }
}

#[async_trait]
impl Forge for LocalGitForge {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn push_branch(
        &self,
        repo: &RepoRef,
        workdir: &Path,
        branch: &str,
    ) -> Result<PushedBranch> {
        if !branch.starts_with("sentinel/") {
            return Err(Error::ProtectedBranch(branch.to_owned()));
        }
        let commit = git(workdir, &["rev-parse", "HEAD"]).await?;
        let refspec = format!("+HEAD:refs/heads/{branch}");
        git(workdir, &["push", "-q", &repo.location, &refspec]).await?;
        Ok(PushedBranch {
            branch: branch.to_owned(),
            commit,
        })
    }

    async fn find_pull_request(
        &self,
        repository: &str,
        branch: &str,
    ) -> Result<Option<PullRequest>> {
        let path = self.record_path(repository, branch);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| Error::Record {
                    path: path.display().to_string(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn open_pull_request(&self, req: &PullRequestRequest) -> Result<PullRequest> {
        if let Some(existing) = self.find_pull_request(&req.repository, &req.branch).await? {
            return Ok(existing);
        }
        let dir = self.repo_dir(&req.repository);
        tokio::fs::create_dir_all(&dir).await?;
        let mut entries = tokio::fs::read_dir(&dir).await?;
        let mut number = 1;
        while entries.next_entry().await?.is_some() {
            number += 1;
        }
        let path = self.record_path(&req.repository, &req.branch);
        let pr = PullRequest {
            id: format!(
                "local-{}-{number}",
                &hex::encode(Sha256::digest(req.repository.as_bytes()))[..8]
            ),
            number,
            url: format!("file://{}", path.display()),
            branch: req.branch.clone(),
            base: req.base.clone(),
            title: req.title.clone(),
            body: req.body.clone(),
            draft: req.draft,
            labels: req.labels.clone(),
            state: "open".into(),
        };
        let bytes = serde_json::to_vec_pretty(&pr).map_err(|source| Error::Record {
            path: path.display().to_string(),
            source,
        })?;
        // Write then rename: a crash never leaves a half-written record.
        let tmp = path.with_extension("json.tmp");
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(pr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn repo_with_commit(dir: &Path) -> String {
        git(dir, &["init", "-q"]).await.expect("init");
        tokio::fs::write(dir.join("a.txt"), "one\n")
            .await
            .expect("write");
        git(dir, &["add", "-A"]).await.expect("add");
        git(dir, &["commit", "-qm", "one"]).await.expect("commit");
        git(dir, &["rev-parse", "HEAD"]).await.expect("rev-parse")
    }

    #[tokio::test]
    async fn clone_push_and_idempotent_pull_request() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let origin = tmp.path().join("origin");
        tokio::fs::create_dir_all(&origin).await.expect("mkdir");
        let commit = repo_with_commit(&origin).await;
        let head_before = git(&origin, &["symbolic-ref", "HEAD"]).await.expect("head");

        let work = tmp.path().join("work");
        clone_at(&origin.display().to_string(), &commit, &work)
            .await
            .expect("clone");
        tokio::fs::write(work.join("a.txt"), "two\n")
            .await
            .expect("write");
        git(&work, &["commit", "-qam", "Fix: two"])
            .await
            .expect("commit");

        let forge = LocalGitForge::new(tmp.path().join("records"));
        let repo = RepoRef::new(&origin.display().to_string());
        let pushed = forge
            .push_branch(&repo, &work, "sentinel/fix-abcd1234")
            .await
            .expect("push");
        let on_origin = git(&origin, &["rev-parse", "refs/heads/sentinel/fix-abcd1234"])
            .await
            .expect("ref");
        assert_eq!(on_origin, pushed.commit);
        // The origin's checked-out branch and working tree are untouched.
        assert_eq!(
            git(&origin, &["symbolic-ref", "HEAD"]).await.expect("head"),
            head_before
        );
        assert_eq!(
            tokio::fs::read_to_string(origin.join("a.txt"))
                .await
                .expect("read"),
            "one\n"
        );

        let req = PullRequestRequest {
            repository: repo.location.clone(),
            branch: "sentinel/fix-abcd1234".into(),
            base: "main".into(),
            title: "Fix".into(),
            body: "body".into(),
            draft: true,
            labels: vec!["sentinel".into()],
        };
        let first = forge.open_pull_request(&req).await.expect("open");
        let second = forge.open_pull_request(&req).await.expect("open again");
        assert_eq!(first, second, "opening twice returns the same PR");
        assert_eq!(
            forge
                .find_pull_request(&req.repository, &req.branch)
                .await
                .expect("find"),
            Some(first)
        );
        assert!(matches!(
            forge.push_branch(&repo, &work, "main").await,
            Err(Error::ProtectedBranch(_))
        ));
    }

    #[tokio::test]
    async fn unknown_commits_fail_clearly() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let origin = tmp.path().join("origin");
        tokio::fs::create_dir_all(&origin).await.expect("mkdir");
        repo_with_commit(&origin).await;
        let err = clone_at(
            &origin.display().to_string(),
            "deadbeef",
            &tmp.path().join("w"),
        )
        .await
        .expect_err("unknown commit");
        assert!(matches!(err, Error::Git { .. }));
    }
}
