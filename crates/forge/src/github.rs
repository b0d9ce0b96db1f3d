//! [`GitHubForge`]: pull requests on GitHub (or GitHub Enterprise) through octocrab.
//!
//! REST calls used (<https://docs.github.com/en/rest>):
//!
//! * branch + commit through the Git Data API — no clone credentials needed:
//!   `POST /repos/{o}/{r}/git/blobs` (`{"content", "encoding": "base64"}` → `{"sha"}`) per
//!   added or modified file, `POST /repos/{o}/{r}/git/trees` (`{"base_tree", "tree": [{path,
//!   mode, type: "blob", sha}]}`, `sha: null` deletes), `POST /repos/{o}/{r}/git/commits`
//!   (`{"message", "tree", "parents", "author"}`), then `GET /repos/{o}/{r}/git/ref/heads/{b}`
//!   and `PATCH /repos/{o}/{r}/git/refs/heads/{b}` (`{"sha", "force": true}`) or
//!   `POST /repos/{o}/{r}/git/refs` (`{"ref", "sha"}`);
//! * `GET /repos/{o}/{r}/pulls?head={o}:{b}&state=all` — the idempotence lookup;
//! * `POST /repos/{o}/{r}/pulls` (`{"title", "head", "base", "body", "draft"}`);
//! * `POST /repos/{o}/{r}/issues/{n}/labels` (`{"labels"}`);
//! * `POST /repos/{o}/{r}/pulls/{n}/requested_reviewers` for draft (review-required) PRs;
//! * GraphQL `enablePullRequestAutoMerge` (only on an `auto_merge` decision);
//! * GraphQL `markPullRequestReadyForReview(input: {pullRequestId})` with the PR's `node_id`
//!   — after a human approved a review-required fix (REST cannot un-draft a pull request);
//! * `PATCH /repos/{o}/{r}/pulls/{n}` (`{"state": "closed"}`) — after a human rejected it.
//!
//! Authentication: a token, or a GitHub App (JWT from the private key → installation
//! token, which octocrab obtains and renews).

use std::path::Path;

use async_trait::async_trait;
use base64::Engine;
use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::git::{self, validate_branch};
use crate::{
    DEFAULT_BRANCH_PREFIX, Error, Forge, PullRequest, PullRequestRequest, PullRequestState,
    PushedBranch, RepoRef, Result,
};

/// How Sentinel authenticates to GitHub.
#[derive(Clone)]
pub enum GitHubAuth {
    /// A personal, fine-grained or installation access token.
    Token(String),
    /// A GitHub App installation: octocrab signs JWTs with the key and buys installation
    /// tokens.
    App {
        /// The App's id.
        app_id: u64,
        /// The App's private key (RSA PEM).
        private_key_pem: String,
        /// The installation on the repositories' owner.
        installation_id: u64,
    },
}

impl std::fmt::Debug for GitHubAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitHubAuth::Token(_) => f.write_str("Token(<redacted>)"),
            GitHubAuth::App {
                app_id,
                installation_id,
                ..
            } => write!(
                f,
                "App {{ app_id: {app_id}, installation_id: {installation_id} }}"
            ),
        }
    }
}

/// GitHub forge settings.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// API root, e.g. `https://api.github.com`.
    pub api_url: String,
    /// Credentials.
    pub auth: GitHubAuth,
    /// Users asked to review draft (review-required) pull requests.
    pub reviewers: Vec<String>,
    /// Teams (slugs) asked to review draft pull requests.
    pub team_reviewers: Vec<String>,
}

/// The GitHub forge; repositories are `owner/name` or `https://github.com/owner/name(.git)`.
#[derive(Debug)]
pub struct GitHubForge {
    crab: Octocrab,
    config: GitHubConfig,
}

#[derive(Deserialize)]
struct Sha {
    sha: String,
}

#[derive(Deserialize)]
struct GhPull {
    node_id: String,
    number: u64,
    html_url: String,
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    draft: bool,
    state: String,
    #[serde(default)]
    merged_at: Option<String>,
    head: GhRef,
    base: GhRef,
    #[serde(default)]
    labels: Vec<GhLabel>,
}

#[derive(Deserialize)]
struct GhRef {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
}

#[derive(Deserialize)]
struct GhLabel {
    name: String,
}

impl GhPull {
    fn into_pr(self, repository: &str) -> PullRequest {
        PullRequest {
            id: self.node_id,
            number: self.number,
            url: self.html_url,
            repository: repository.to_string(),
            branch: self.head.name,
            base: self.base.name,
            head_commit: self.head.sha,
            title: self.title,
            body: self.body.unwrap_or_default(),
            draft: self.draft,
            labels: self.labels.into_iter().map(|l| l.name).collect(),
            state: match (self.state.as_str(), self.merged_at.is_some()) {
                (_, true) => PullRequestState::Merged,
                ("closed", false) => PullRequestState::Closed,
                _ => PullRequestState::Open,
            },
        }
    }
}

pub(crate) fn remote(what: &str, e: octocrab::Error) -> Error {
    match e {
        octocrab::Error::GitHub { source, .. } => Error::Remote {
            status: Some(source.status_code.as_u16()),
            message: format!("{what}: {}", source.message),
        },
        other => Error::Remote {
            status: None,
            message: format!("{what}: {other}"),
        },
    }
}

/// `owner/name` of a GitHub repository reference.
pub(crate) fn owner_repo(repo: &str) -> Result<(String, String)> {
    let trimmed = repo.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let mut segments = trimmed.rsplit(['/', ':']);
    let path: Vec<&str> = segments.by_ref().take(2).collect();
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match path.as_slice() {
        [name, owner] if ok(owner) && ok(name) => Ok((owner.to_string(), (*name).to_string())),
        _ => Err(Error::InvalidInput(format!(
            "{repo:?} is not a GitHub repository (owner/name or its URL)"
        ))),
    }
}

impl GitHubForge {
    /// A forge talking to `config.api_url`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for a bad URL or App key.
    pub fn new(config: GitHubConfig) -> Result<Self> {
        let builder = Octocrab::builder()
            .base_uri(config.api_url.trim_end_matches('/'))
            .map_err(|e| Error::InvalidInput(format!("GitHub API URL: {e}")))?;
        let crab = match &config.auth {
            GitHubAuth::Token(t) => builder
                .personal_token(t.clone())
                .build()
                .map_err(|e| Error::InvalidInput(format!("GitHub client: {e}")))?,
            GitHubAuth::App {
                app_id,
                private_key_pem,
                installation_id,
            } => {
                let key = octocrab::EncodingKey::from_rsa_pem(private_key_pem.as_bytes())
                    .map_err(|e| Error::InvalidInput(format!("GitHub App key: {e}")))?;
                builder
                    .app(AppId(*app_id), key)
                    .build()
                    .map_err(|e| Error::InvalidInput(format!("GitHub client: {e}")))?
                    .installation(InstallationId(*installation_id))
                    .map_err(|e| Error::InvalidInput(format!("GitHub installation: {e}")))?
            }
        };
        Ok(GitHubForge { crab, config })
    }

    /// Runs a GraphQL mutation; GitHub answers GraphQL errors with `200` and an `errors`
    /// array, which this turns into [`Error::Remote`].
    async fn graphql(&self, body: &Value, what: &str) -> Result<Value> {
        let response: Value = self.crab.graphql(body).await.map_err(|e| remote(what, e))?;
        if let Some(errors) = response.get("errors").filter(|e| !e.is_null()) {
            return Err(Error::Remote {
                status: None,
                message: format!("{what}: {errors}"),
            });
        }
        Ok(response)
    }

    /// The pull request for `branch`, or [`Error::InvalidInput`] when none was opened.
    async fn existing(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        self.find_pull_request(repo, branch).await?.ok_or_else(|| {
            Error::InvalidInput(format!("no pull request for branch {branch:?} in {repo}"))
        })
    }

    async fn post(&self, route: &str, body: &Value, what: &str) -> Result<Value> {
        self.crab
            .post(route, Some(body))
            .await
            .map_err(|e| remote(what, e))
    }
}

/// One changed file of the fix commit (`git diff-tree --raw`).
pub(crate) struct Change {
    pub(crate) path: String,
    pub(crate) mode: String,
    /// `A`, `M` or `D`.
    pub(crate) kind: char,
    /// The new content (empty for deletions).
    pub(crate) content: Vec<u8>,
}

/// The fix commit at `HEAD` of `workdir`: its parent, message, author and changed files.
pub(crate) struct FixCommit {
    pub(crate) parent: String,
    pub(crate) parent_tree: String,
    pub(crate) message: String,
    pub(crate) author_name: String,
    pub(crate) author_email: String,
    pub(crate) author_date: String,
    pub(crate) changes: Vec<Change>,
}

pub(crate) async fn read_fix_commit(workdir: &Path) -> Result<FixCommit> {
    let out = |args: Vec<String>| git::run(Some(workdir), args);
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_string()).collect::<Vec<String>>();
    let info = out(v(&[
        "log",
        "-1",
        "--format=%P%x00%an%x00%ae%x00%aI%x00%B",
        "HEAD",
    ]))
    .await?;
    let mut parts = info.splitn(5, '\0');
    let parents = parts.next().unwrap_or_default().trim().to_string();
    if parents.is_empty() || parents.contains(' ') {
        return Err(Error::InvalidInput(
            "the fix must be exactly one commit on top of the failing commit".into(),
        ));
    }
    let author_name = parts.next().unwrap_or_default().to_string();
    let author_email = parts.next().unwrap_or_default().to_string();
    let author_date = parts.next().unwrap_or_default().to_string();
    let message = parts.next().unwrap_or_default().trim_end().to_string();
    let parent_tree = out(v(&["rev-parse", &format!("{parents}^{{tree}}")]))
        .await?
        .trim()
        .to_string();
    let raw = out(v(&[
        "diff-tree",
        "-r",
        "--no-renames",
        "-z",
        "--raw",
        &parents,
        "HEAD",
    ]))
    .await?;
    let mut changes = Vec::new();
    let mut fields = raw.split('\0').filter(|f| !f.is_empty());
    while let (Some(meta), Some(path)) = (fields.next(), fields.next()) {
        // `:old_mode new_mode old_sha new_sha status`
        let m: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        let [_, new_mode, _, new_sha, status] = m.as_slice() else {
            return Err(Error::InvalidInput(format!(
                "unexpected diff-tree line {meta:?}"
            )));
        };
        let kind = status.chars().next().unwrap_or('M');
        if new_mode.starts_with("120") || new_mode.starts_with("160") {
            return Err(Error::InvalidInput(format!(
                "{path}: symlinks and submodules are not pushed through the API"
            )));
        }
        let content = if kind == 'D' {
            Vec::new()
        } else {
            git::run_bytes(Some(workdir), ["cat-file", "blob", new_sha]).await?
        };
        changes.push(Change {
            path: path.to_string(),
            mode: if kind == 'D' {
                "100644".into()
            } else {
                (*new_mode).to_string()
            },
            kind,
            content,
        });
    }
    Ok(FixCommit {
        parent: parents,
        parent_tree,
        message,
        author_name,
        author_email,
        author_date,
        changes,
    })
}

fn check_branch(branch: &str) -> Result<()> {
    validate_branch(branch)?;
    if !branch.starts_with(DEFAULT_BRANCH_PREFIX) {
        return Err(Error::InvalidInput(format!(
            "branch {branch:?} is outside {DEFAULT_BRANCH_PREFIX:?}: forced pushes only go there"
        )));
    }
    Ok(())
}

#[async_trait]
impl Forge for GitHubForge {
    fn name(&self) -> &str {
        "github"
    }

    async fn push_branch(
        &self,
        repo: &RepoRef,
        workdir: &Path,
        branch: &str,
    ) -> Result<PushedBranch> {
        check_branch(branch)?;
        let (owner, name) = owner_repo(repo.as_str())?;
        let fix = read_fix_commit(workdir).await?;
        let base = format!("/repos/{owner}/{name}/git");
        let mut tree = Vec::new();
        for change in &fix.changes {
            let sha = if change.kind == 'D' {
                Value::Null
            } else {
                let blob = self
                    .post(
                        &format!("{base}/blobs"),
                        &json!({
                            "content": base64::engine::general_purpose::STANDARD.encode(&change.content),
                            "encoding": "base64",
                        }),
                        "creating a blob",
                    )
                    .await?;
                blob.get("sha").cloned().unwrap_or(Value::Null)
            };
            tree.push(
                json!({"path": change.path, "mode": change.mode, "type": "blob", "sha": sha}),
            );
        }
        let tree: Sha = serde_json::from_value(
            self.post(
                &format!("{base}/trees"),
                &json!({"base_tree": fix.parent_tree, "tree": tree}),
                "creating the tree",
            )
            .await?,
        )
        .map_err(|e| remote_shape("tree", e))?;
        let commit: Sha = serde_json::from_value(
            self.post(
                &format!("{base}/commits"),
                &json!({
                    "message": fix.message,
                    "tree": tree.sha,
                    "parents": [fix.parent],
                    "author": {"name": fix.author_name, "email": fix.author_email, "date": fix.author_date},
                }),
                "creating the commit",
            )
            .await?,
        )
        .map_err(|e| remote_shape("commit", e))?;
        let existing: std::result::Result<Value, octocrab::Error> = self
            .crab
            .get(format!("{base}/ref/heads/{branch}"), None::<&()>)
            .await;
        match existing {
            Ok(_) => {
                let _: Value = self
                    .crab
                    .patch(
                        format!("{base}/refs/heads/{branch}"),
                        Some(&json!({"sha": commit.sha, "force": true})),
                    )
                    .await
                    .map_err(|e| remote("moving the branch", e))?;
            }
            Err(octocrab::Error::GitHub { source, .. }) if source.status_code.as_u16() == 404 => {
                self.post(
                    &format!("{base}/refs"),
                    &json!({"ref": format!("refs/heads/{branch}"), "sha": commit.sha}),
                    "creating the branch",
                )
                .await?;
            }
            Err(e) => return Err(remote("looking the branch up", e)),
        }
        Ok(PushedBranch {
            branch: branch.to_string(),
            commit: commit.sha,
        })
    }

    async fn find_pull_request(&self, repo: &RepoRef, branch: &str) -> Result<Option<PullRequest>> {
        validate_branch(branch)?;
        let (owner, name) = owner_repo(repo.as_str())?;
        let pulls: Vec<GhPull> = self
            .crab
            .get(
                format!("/repos/{owner}/{name}/pulls"),
                Some(&[
                    ("head", format!("{owner}:{branch}")),
                    ("state", "all".to_string()),
                ]),
            )
            .await
            .map_err(|e| remote("listing pull requests", e))?;
        Ok(pulls
            .into_iter()
            .find(|p| p.head.name == branch)
            .map(|p| p.into_pr(repo.as_str())))
    }

    async fn open_pull_request(&self, req: &PullRequestRequest) -> Result<PullRequest> {
        let repo = RepoRef::new(&req.repository);
        if let Some(pr) = self.find_pull_request(&repo, &req.branch).await? {
            return Ok(pr);
        }
        validate_branch(&req.base)?;
        let (owner, name) = owner_repo(&req.repository)?;
        let created: GhPull = serde_json::from_value(
            self.post(
                &format!("/repos/{owner}/{name}/pulls"),
                &json!({
                    "title": req.title,
                    "head": req.branch,
                    "base": req.base,
                    "body": req.body,
                    "draft": req.draft,
                    "maintainer_can_modify": true,
                }),
                "opening the pull request",
            )
            .await?,
        )
        .map_err(|e| remote_shape("pull request", e))?;
        let number = created.number;
        let mut pr = created.into_pr(&req.repository);
        if !req.labels.is_empty() {
            self.post(
                &format!("/repos/{owner}/{name}/issues/{number}/labels"),
                &json!({"labels": req.labels}),
                "labelling the pull request",
            )
            .await?;
            pr.labels = req.labels.clone();
        }
        if req.draft
            && (!self.config.reviewers.is_empty() || !self.config.team_reviewers.is_empty())
        {
            self.post(
                &format!("/repos/{owner}/{name}/pulls/{number}/requested_reviewers"),
                &json!({
                    "reviewers": self.config.reviewers,
                    "team_reviewers": self.config.team_reviewers,
                }),
                "requesting reviews",
            )
            .await?;
        }
        Ok(pr)
    }

    async fn mark_ready(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        let mut pr = self.existing(repo, branch).await?;
        if pr.state != PullRequestState::Open {
            return Err(Error::InvalidInput(format!(
                "pull request {} is {:?}; only an open one can be marked ready",
                pr.url, pr.state
            )));
        }
        if !pr.draft {
            return Ok(pr);
        }
        self.graphql(
            &json!({
                "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: \
                          {pullRequestId: $id}) { pullRequest { number isDraft } } }",
                "variables": {"id": pr.id},
            }),
            "marking the pull request ready for review",
        )
        .await?;
        pr.draft = false;
        Ok(pr)
    }

    async fn close_pull_request(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        let pr = self.existing(repo, branch).await?;
        if pr.state != PullRequestState::Open {
            return Ok(pr);
        }
        let (owner, name) = owner_repo(repo.as_str())?;
        let closed: GhPull = self
            .crab
            .patch(
                format!("/repos/{owner}/{name}/pulls/{}", pr.number),
                Some(&json!({"state": "closed"})),
            )
            .await
            .map_err(|e| remote("closing the pull request", e))?;
        Ok(closed.into_pr(repo.as_str()))
    }

    async fn enable_auto_merge(&self, pr: &PullRequest) -> Result<bool> {
        self.graphql(
            &json!({
                "query": "mutation($id: ID!) { enablePullRequestAutoMerge(input: \
                          {pullRequestId: $id, mergeMethod: SQUASH}) { pullRequest { number } } }",
                "variables": {"id": pr.id},
            }),
            "enabling auto-merge",
        )
        .await?;
        Ok(true)
    }

    /// GraphQL `disablePullRequestAutoMerge` by the pull request's node id.
    async fn disable_auto_merge(&self, pr: &PullRequest) -> Result<bool> {
        self.graphql(
            &json!({
                "query": "mutation($id: ID!) { disablePullRequestAutoMerge(input: \
                          {pullRequestId: $id}) { pullRequest { number } } }",
                "variables": {"id": pr.id},
            }),
            "disabling auto-merge",
        )
        .await?;
        Ok(true)
    }
}

pub(crate) fn remote_shape(what: &str, e: serde_json::Error) -> Error {
    Error::Remote {
        status: None,
        message: format!("unexpected {what} response: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_owner_and_name() {
        for (input, owner, name) in [
            ("acme/app", "acme", "app"),
            ("https://github.com/acme/app.git", "acme", "app"),
            ("https://github.com/acme/app/", "acme", "app"),
            ("git@github.com:acme/app.git", "acme", "app"),
        ] {
            assert_eq!(
                owner_repo(input).ok(),
                Some((owner.to_string(), name.to_string())),
                "{input}"
            );
        }
        for bad in ["app", "acme/..", "acme/a b", ""] {
            assert!(owner_repo(bad).is_err(), "{bad}");
        }
    }
}
