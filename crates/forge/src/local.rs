//! [`LocalGitForge`]: a local git repository plays the forge; pull requests are JSON files.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::git::{self, validate_branch};
use crate::{
    Error, Forge, PullRequest, PullRequestRequest, PullRequestState, PushedBranch, RepoRef, Result,
};

/// The embedded deployment's forge.
///
/// * The repository is a local path or a `file://` URL (bare or not). Branches are pushed
///   with `git push --force <repo> HEAD:refs/heads/<branch>`, and only branches under a
///   prefix ([`DEFAULT_BRANCH_PREFIX`]); pushing to a non-bare repository works for any
///   branch except the one it has checked out, which git refuses.
/// * A pull request is a JSON record at
///   `records_dir/<sha256(repo)>/<sha256(branch)>.json` (the repository is identified by
///   its canonical path, so `/x/repo` and `file:///x/repo` are the same). Its URL is the
///   record's `file://` URL. Numbers are unique per repository, also across processes.
/// * Records are created atomically (written aside, then hard-linked into place), so two
///   concurrent attempts to open a pull request for one branch yield a single record.
#[derive(Debug)]
pub struct LocalGitForge {
    records_dir: PathBuf,
    branch_prefix: String,
    lock: tokio::sync::Mutex<()>,
}

/// The only branches a forge pushes by default: pushes are forced, so they must never
/// reach a branch people work on.
pub const DEFAULT_BRANCH_PREFIX: &str = "sentinel/";

impl LocalGitForge {
    /// A forge keeping its pull-request records under `records_dir` (created on demand)
    /// that pushes only branches under [`DEFAULT_BRANCH_PREFIX`].
    pub fn new(records_dir: impl Into<PathBuf>) -> Self {
        LocalGitForge {
            records_dir: records_dir.into(),
            branch_prefix: DEFAULT_BRANCH_PREFIX.to_string(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Pushes only branches starting with `prefix` instead (empty: any branch).
    pub fn with_branch_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.branch_prefix = prefix.into();
        self
    }

    /// Where the pull-request records live.
    pub fn records_dir(&self) -> &Path {
        &self.records_dir
    }

    /// Marks the pull request for `branch` merged or closed (what a maintainer does on a
    /// hosted forge), returning the updated record.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when no pull request exists for the branch.
    pub async fn set_state(
        &self,
        repo: &RepoRef,
        branch: &str,
        state: PullRequestState,
    ) -> Result<PullRequest> {
        self.update(repo, branch, |pr| pr.state = state).await
    }

    async fn update(
        &self,
        repo: &RepoRef,
        branch: &str,
        change: impl FnOnce(&mut PullRequest),
    ) -> Result<PullRequest> {
        let _guard = self.lock.lock().await;
        let target = Target::resolve(repo)?;
        let path = self.record_path(&target, branch);
        let mut pr = read_record(&path).await?.ok_or_else(|| {
            Error::InvalidInput(format!("no pull request for branch {branch:?} in {repo}"))
        })?;
        change(&mut pr);
        let tmp = temp_name(&path);
        tokio::fs::write(&tmp, to_json(&pr)?).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(pr)
    }

    fn record_path(&self, target: &Target, branch: &str) -> PathBuf {
        self.records_dir
            .join(&target.key)
            .join(format!("{}.json", short_hash(branch.as_bytes())))
    }

    /// Claims the next free pull-request number in the repository's record dir.
    async fn claim_number(&self, repo_dir: &Path) -> Result<u64> {
        let mut next = 1;
        let mut entries = tokio::fs::read_dir(repo_dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix("number-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                next = next.max(n + 1);
            }
        }
        loop {
            let claim = repo_dir.join(format!("number-{next}"));
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&claim)
                .await
            {
                Ok(_) => return Ok(next),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => next += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A repository this forge serves: where git finds it and its record key.
struct Target {
    path: PathBuf,
    key: String,
}

impl Target {
    fn resolve(repo: &RepoRef) -> Result<Self> {
        let location = repo.as_str();
        git::validate_repository(location)?;
        let path = match location.strip_prefix("file://") {
            Some(path) => path,
            None if location.contains("://") || is_scp_like(location) => {
                return Err(Error::InvalidInput(format!(
                    "the local git forge serves local paths and file:// URLs, not {location:?}"
                )));
            }
            None => location,
        };
        let path = std::fs::canonicalize(path).map_err(|e| {
            Error::InvalidInput(format!("repository {location:?} is not reachable: {e}"))
        })?;
        let key = short_hash(path.as_os_str().as_encoded_bytes());
        Ok(Target { path, key })
    }
}

/// `host:path` is ssh to git, unless a `/` comes before the `:`.
fn is_scp_like(location: &str) -> bool {
    match (location.find(':'), location.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}-{:x}", std::process::id(), rand_suffix()));
    path.with_file_name(name)
}

fn rand_suffix() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
    u128::from(h.finish())
}

/// `file://` URL of an absolute path, percent-encoding everything but unreserved bytes
/// and `/`.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

fn to_json(pr: &PullRequest) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(pr).map_err(|source| Error::Record {
        path: pr.url.clone(),
        source,
    })
}

async fn read_record(path: &Path) -> Result<Option<PullRequest>> {
    match tokio::fs::read(path).await {
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

/// The commit `branch` points to in the repository at `path`, if the branch exists.
async fn remote_branch(path: &Path, branch: &str) -> Result<Option<String>> {
    let out = git::run(
        None,
        [
            "ls-remote".as_ref(),
            "--heads".as_ref(),
            path.as_os_str(),
            format!("refs/heads/{branch}").as_ref(),
        ],
    )
    .await?;
    Ok(out
        .split_whitespace()
        .next()
        .map(str::to_string)
        .filter(|s| !s.is_empty()))
}

#[async_trait]
impl Forge for LocalGitForge {
    fn name(&self) -> &str {
        "local-git"
    }

    async fn push_branch(
        &self,
        repo: &RepoRef,
        workdir: &Path,
        branch: &str,
    ) -> Result<PushedBranch> {
        validate_branch(branch)?;
        if !branch.starts_with(&self.branch_prefix) {
            return Err(Error::InvalidInput(format!(
                "refusing to push {branch:?}: this forge only pushes branches under {:?}",
                self.branch_prefix
            )));
        }
        let target = Target::resolve(repo)?;
        let commit = git::run(Some(workdir), ["rev-parse", "--verify", "HEAD^{commit}"])
            .await?
            .trim()
            .to_string();
        git::run(
            Some(workdir),
            [
                "push".as_ref(),
                "--quiet".as_ref(),
                "--force".as_ref(),
                "--no-verify".as_ref(),
                "--end-of-options".as_ref(),
                target.path.as_os_str(),
                format!("HEAD:refs/heads/{branch}").as_ref(),
            ],
        )
        .await?;
        match remote_branch(&target.path, branch).await? {
            Some(tip) if tip == commit => {}
            other => {
                return Err(Error::Git {
                    command: format!("push {} HEAD:refs/heads/{branch}", target.path.display()),
                    exit_code: 0,
                    stderr: format!("branch points to {other:?} after the push, not {commit}"),
                });
            }
        }
        tracing::info!(repository = %repo, branch, commit, "Pushed fix branch.");
        Ok(PushedBranch {
            branch: branch.to_string(),
            commit,
        })
    }

    async fn mark_ready(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        validate_branch(branch)?;
        self.update(repo, branch, |pr| pr.draft = false).await
    }

    async fn close_pull_request(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        validate_branch(branch)?;
        self.update(repo, branch, |pr| {
            if pr.state == PullRequestState::Open {
                pr.state = PullRequestState::Closed;
            }
        })
        .await
    }

    async fn find_pull_request(&self, repo: &RepoRef, branch: &str) -> Result<Option<PullRequest>> {
        validate_branch(branch)?;
        let target = Target::resolve(repo)?;
        read_record(&self.record_path(&target, branch)).await
    }

    async fn open_pull_request(&self, req: &PullRequestRequest) -> Result<PullRequest> {
        validate_branch(&req.branch)?;
        validate_branch(&req.base)?;
        if req.title.trim().is_empty() {
            return Err(Error::InvalidInput("pull request title is empty".into()));
        }
        if req.branch == req.base {
            return Err(Error::InvalidInput(format!(
                "head and base are both {:?}",
                req.branch
            )));
        }
        let target = Target::resolve(&RepoRef::new(req.repository.as_str()))?;
        let path = self.record_path(&target, &req.branch);
        let _guard = self.lock.lock().await;
        if let Some(existing) = read_record(&path).await? {
            return Ok(existing);
        }
        let head_commit = remote_branch(&target.path, &req.branch)
            .await?
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "branch {:?} has not been pushed to {}",
                    req.branch, req.repository
                ))
            })?;
        if remote_branch(&target.path, &req.base).await?.is_none() {
            return Err(Error::InvalidInput(format!(
                "base branch {:?} does not exist in {}",
                req.base, req.repository
            )));
        }
        let repo_dir = self.records_dir.join(&target.key);
        tokio::fs::create_dir_all(&repo_dir).await?;
        let repo_dir = tokio::fs::canonicalize(&repo_dir).await?;
        let path = repo_dir.join(path.file_name().unwrap_or_default());
        let number = self.claim_number(&repo_dir).await?;
        let pr = PullRequest {
            id: format!("local-{}-{number}", &target.key[..12]),
            number,
            url: file_url(&path),
            repository: req.repository.clone(),
            branch: req.branch.clone(),
            base: req.base.clone(),
            head_commit,
            title: req.title.clone(),
            body: req.body.clone(),
            draft: req.draft,
            labels: req.labels.clone(),
            state: PullRequestState::Open,
        };
        // Create-if-absent with full content: another process may be opening the same
        // pull request right now, and exactly one record may win.
        let tmp = temp_name(&path);
        tokio::fs::write(&tmp, to_json(&pr)?).await?;
        let linked = tokio::fs::hard_link(&tmp, &path).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        match linked {
            Ok(()) => {
                tracing::info!(
                    repository = %req.repository,
                    branch = %req.branch,
                    number,
                    draft = req.draft,
                    "Opened pull request."
                );
                Ok(pr)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // Lost the race: hand the unused number back.
                let _ = tokio::fs::remove_file(repo_dir.join(format!("number-{number}"))).await;
                read_record(&path)
                    .await?
                    .ok_or_else(|| Error::InvalidInput("pull request record vanished".into()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scp_like_locations_are_recognised() {
        assert!(is_scp_like("git@host:repo.git"));
        assert!(is_scp_like("host:repo"));
        assert!(!is_scp_like("/srv/a:b"));
        assert!(!is_scp_like("./a:b"));
        assert!(!is_scp_like("repo"));
    }

    #[test]
    fn file_urls_are_percent_encoded() {
        assert_eq!(
            file_url(Path::new("/tmp/a b/c#d.json")),
            "file:///tmp/a%20b/c%23d.json"
        );
    }
}
