//! [`GitLabForge`]: merge requests on GitLab through its REST API v4 (reqwest).
//!
//! Calls used (<https://docs.gitlab.com/api/>), the project addressed by its URL-encoded
//! path (`group%2Fproject`), authenticated with `PRIVATE-TOKEN`:
//!
//! * `POST /projects/:id/repository/commits` — branch + commit in one call:
//!   `{"branch", "start_sha", "commit_message", "author_name", "author_email", "force": true,
//!   "actions": [{"action": "create|update|delete", "file_path", "content",
//!   "encoding": "base64"}]}` → `{"id"}`; `force` with `start_sha` makes a retry replace
//!   the branch rather than stack a second commit;
//! * `GET /projects/:id/merge_requests?source_branch=…&state=all` — the idempotence lookup;
//! * `POST /projects/:id/merge_requests` — `{"source_branch", "target_branch", "title",
//!   "description", "labels", "reviewer_ids"}`; a review-required fix is a draft (`Draft:`
//!   title prefix) with the configured reviewers;
//! * `PUT /projects/:id/merge_requests/:iid/merge` with `{"auto_merge": true}` (merge when
//!   the pipeline succeeds), only on an `auto_merge` decision;
//! * `PUT /projects/:id/merge_requests/:iid` — after a human answered a review: `{"title"}`
//!   without the draft prefix (`Draft:`, `[Draft]`, `(Draft)`, or the older `WIP:`/`[WIP]`)
//!   marks the draft ready (GitLab derives `draft` from the title), `{"state_event":
//!   "close"}` closes it.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::git::validate_branch;
use crate::github::{read_fix_commit, remote_shape};
use crate::{
    DEFAULT_BRANCH_PREFIX, Error, Forge, PullRequest, PullRequestRequest, PullRequestState,
    PushedBranch, RepoRef, Result,
};

/// GitLab forge settings.
#[derive(Clone)]
pub struct GitLabConfig {
    /// API root, e.g. `https://gitlab.com/api/v4`.
    pub api_url: String,
    /// A project, group or personal access token with `api` scope.
    pub token: String,
    /// User ids asked to review draft (review-required) merge requests.
    pub reviewer_ids: Vec<u64>,
}

impl std::fmt::Debug for GitLabConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabConfig")
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("reviewer_ids", &self.reviewer_ids)
            .finish()
    }
}

/// The GitLab forge; repositories are `group/project` paths or their URLs.
#[derive(Debug)]
pub struct GitLabForge {
    config: GitLabConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Mr {
    id: u64,
    iid: u64,
    web_url: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    draft: bool,
    state: String,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

impl Mr {
    fn into_pr(self, repository: &str) -> PullRequest {
        PullRequest {
            id: self.id.to_string(),
            number: self.iid,
            url: self.web_url,
            repository: repository.to_string(),
            branch: self.source_branch,
            base: self.target_branch,
            head_commit: self.sha.unwrap_or_default(),
            title: self.title,
            body: self.description.unwrap_or_default(),
            draft: self.draft,
            labels: self.labels,
            state: match self.state.as_str() {
                "merged" => PullRequestState::Merged,
                "closed" => PullRequestState::Closed,
                _ => PullRequestState::Open,
            },
        }
    }
}

/// The URL-encoded project path of a repository reference.
fn project_id(repo: &str) -> Result<String> {
    let trimmed = repo.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let path = match trimmed.split_once("://") {
        // https://host/group/sub/project → group/sub/project
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, p)| p),
        None => trimmed.rsplit(':').next().unwrap_or(trimmed),
    };
    let segments: Vec<&str> = path.split('/').collect();
    let ok = segments.len() >= 2
        && segments.iter().all(|s| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if !ok {
        return Err(Error::InvalidInput(format!(
            "{repo:?} is not a GitLab project (group/project or its URL)"
        )));
    }
    Ok(segments.join("%2F"))
}

impl GitLabForge {
    /// A forge talking to `config.api_url`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] when the HTTP client cannot be built.
    pub fn new(config: GitLabConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent("sentinel-forge")
            .build()
            .map_err(|e| Error::InvalidInput(format!("GitLab client: {e}")))?;
        Ok(GitLabForge { config, http })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        route: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value> {
        let url = format!("{}{route}", self.config.api_url.trim_end_matches('/'));
        let mut req = self
            .http
            .request(method, &url)
            .header("PRIVATE-TOKEN", &self.config.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| Error::Remote {
            status: None,
            message: format!("{what}: {e}"),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| Error::Remote {
            status: Some(status.as_u16()),
            message: format!("{what}: {e}"),
        })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(Error::Remote {
                status: Some(status.as_u16()),
                message: format!("{what}: {}", text.chars().take(500).collect::<String>()),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| remote_shape(what, e))
    }
}

/// `title` without GitLab's draft prefixes (repeated ones too), or `None` when it has none.
fn undrafted(title: &str) -> Option<String> {
    const PREFIXES: [&str; 6] = ["draft:", "[draft]", "(draft)", "wip:", "[wip]", "(wip)"];
    let mut rest = title.trim_start();
    let mut changed = false;
    while let Some(p) = PREFIXES.iter().find(|p| {
        rest.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    }) {
        rest = rest[p.len()..].trim_start();
        changed = true;
    }
    changed.then(|| rest.to_string())
}

impl GitLabForge {
    /// The merge request for `branch`, or [`Error::InvalidInput`] when none was opened.
    async fn existing(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        self.find_pull_request(repo, branch).await?.ok_or_else(|| {
            Error::InvalidInput(format!("no merge request for branch {branch:?} in {repo}"))
        })
    }

    async fn update(
        &self,
        repo: &RepoRef,
        iid: u64,
        body: &Value,
        what: &str,
    ) -> Result<PullRequest> {
        let project = project_id(repo.as_str())?;
        let updated = self
            .call(
                reqwest::Method::PUT,
                &format!("/projects/{project}/merge_requests/{iid}"),
                Some(body),
                what,
            )
            .await?;
        let mr: Mr =
            serde_json::from_value(updated).map_err(|e| remote_shape("merge request", e))?;
        Ok(mr.into_pr(repo.as_str()))
    }
}

#[async_trait]
impl Forge for GitLabForge {
    fn name(&self) -> &str {
        "gitlab"
    }

    async fn push_branch(
        &self,
        repo: &RepoRef,
        workdir: &Path,
        branch: &str,
    ) -> Result<PushedBranch> {
        validate_branch(branch)?;
        if !branch.starts_with(DEFAULT_BRANCH_PREFIX) {
            return Err(Error::InvalidInput(format!(
                "branch {branch:?} is outside {DEFAULT_BRANCH_PREFIX:?}: forced pushes only go there"
            )));
        }
        let project = project_id(repo.as_str())?;
        let fix = read_fix_commit(workdir).await?;
        let actions: Vec<Value> = fix
            .changes
            .iter()
            .map(|c| match c.kind {
                'D' => json!({"action": "delete", "file_path": c.path}),
                kind => json!({
                    "action": if kind == 'A' { "create" } else { "update" },
                    "file_path": c.path,
                    "content": base64::engine::general_purpose::STANDARD.encode(&c.content),
                    "encoding": "base64",
                    "execute_filemode": c.mode == "100755",
                }),
            })
            .collect();
        let commit = self
            .call(
                reqwest::Method::POST,
                &format!("/projects/{project}/repository/commits"),
                Some(&json!({
                    "branch": branch,
                    "start_sha": fix.parent,
                    "commit_message": fix.message,
                    "author_name": fix.author_name,
                    "author_email": fix.author_email,
                    "force": true,
                    "actions": actions,
                })),
                "committing the fix",
            )
            .await?;
        let id = commit
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Remote {
                status: None,
                message: "the commit response has no id".into(),
            })?;
        Ok(PushedBranch {
            branch: branch.to_string(),
            commit: id.to_string(),
        })
    }

    async fn find_pull_request(&self, repo: &RepoRef, branch: &str) -> Result<Option<PullRequest>> {
        validate_branch(branch)?;
        let project = project_id(repo.as_str())?;
        let list = self
            .call(
                reqwest::Method::GET,
                &format!(
                    "/projects/{project}/merge_requests?state=all&source_branch={}",
                    branch.replace('/', "%2F")
                ),
                None,
                "listing merge requests",
            )
            .await?;
        let mrs: Vec<Mr> =
            serde_json::from_value(list).map_err(|e| remote_shape("merge request list", e))?;
        Ok(mrs
            .into_iter()
            .find(|m| m.source_branch == branch)
            .map(|m| m.into_pr(repo.as_str())))
    }

    async fn open_pull_request(&self, req: &PullRequestRequest) -> Result<PullRequest> {
        let repo = RepoRef::new(&req.repository);
        if let Some(pr) = self.find_pull_request(&repo, &req.branch).await? {
            return Ok(pr);
        }
        validate_branch(&req.base)?;
        let project = project_id(&req.repository)?;
        let title = if req.draft {
            format!("Draft: {}", req.title)
        } else {
            req.title.clone()
        };
        let mut body = json!({
            "source_branch": req.branch,
            "target_branch": req.base,
            "title": title,
            "description": req.body,
            "labels": req.labels.join(","),
            "remove_source_branch": true,
        });
        if req.draft && !self.config.reviewer_ids.is_empty() {
            body["reviewer_ids"] = json!(self.config.reviewer_ids);
        }
        let created = self
            .call(
                reqwest::Method::POST,
                &format!("/projects/{project}/merge_requests"),
                Some(&body),
                "opening the merge request",
            )
            .await?;
        let mr: Mr =
            serde_json::from_value(created).map_err(|e| remote_shape("merge request", e))?;
        Ok(mr.into_pr(&req.repository))
    }

    async fn mark_ready(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        let pr = self.existing(repo, branch).await?;
        if pr.state != PullRequestState::Open {
            return Err(Error::InvalidInput(format!(
                "merge request {} is {:?}; only an open one can be marked ready",
                pr.url, pr.state
            )));
        }
        let Some(title) = undrafted(&pr.title) else {
            return Ok(pr);
        };
        let ready = self
            .update(
                repo,
                pr.number,
                &json!({"title": title}),
                "marking the merge request ready",
            )
            .await?;
        if ready.draft {
            return Err(Error::Remote {
                status: None,
                message: format!("{} is still a draft after removing the prefix", ready.url),
            });
        }
        Ok(ready)
    }

    async fn close_pull_request(&self, repo: &RepoRef, branch: &str) -> Result<PullRequest> {
        let pr = self.existing(repo, branch).await?;
        if pr.state != PullRequestState::Open {
            return Ok(pr);
        }
        self.update(
            repo,
            pr.number,
            &json!({"state_event": "close"}),
            "closing the merge request",
        )
        .await
    }

    async fn enable_auto_merge(&self, pr: &PullRequest) -> Result<bool> {
        let project = project_id(&pr.repository)?;
        self.call(
            reqwest::Method::PUT,
            &format!("/projects/{project}/merge_requests/{}/merge", pr.number),
            Some(&json!({"auto_merge": true, "merge_when_pipeline_succeeds": true})),
            "enabling auto-merge",
        )
        .await?;
        Ok(true)
    }

    /// `POST /projects/:id/merge_requests/:iid/cancel_merge_when_pipeline_succeeds`.
    async fn disable_auto_merge(&self, pr: &PullRequest) -> Result<bool> {
        let project = project_id(&pr.repository)?;
        self.call(
            reqwest::Method::POST,
            &format!(
                "/projects/{project}/merge_requests/{}/cancel_merge_when_pipeline_succeeds",
                pr.number
            ),
            None,
            "disabling auto-merge",
        )
        .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_prefixes_are_removed() {
        assert_eq!(undrafted("Draft: Fix x").as_deref(), Some("Fix x"));
        assert_eq!(undrafted("[draft] (WIP) Fix x").as_deref(), Some("Fix x"));
        assert_eq!(undrafted("WIP: Fix").as_deref(), Some("Fix"));
        assert_eq!(undrafted("Fix: drafting"), None);
        assert_eq!(undrafted("Drafted fix"), None);
    }

    #[test]
    fn projects_are_url_encoded_paths() {
        assert_eq!(project_id("acme/app").ok().as_deref(), Some("acme%2Fapp"));
        assert_eq!(
            project_id("https://gitlab.example/acme/sub/app.git")
                .ok()
                .as_deref(),
            Some("acme%2Fsub%2Fapp")
        );
        assert_eq!(
            project_id("git@gitlab.example:acme/app.git")
                .ok()
                .as_deref(),
            Some("acme%2Fapp")
        );
        for bad in ["app", "acme/../x", "acme/a b", ""] {
            assert!(project_id(bad).is_err(), "{bad}");
        }
    }
}
