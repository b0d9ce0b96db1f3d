//! Polling the forge for open Sentinel pull requests where webhooks are missing.
//!
//! The [`Poller`] tails the fact log to know which of Sentinel's pull requests are open,
//! asks each one's forge ([`PrSource`]) what became of it, and appends what it sees as
//! `ForgeEventReceived` (source `poll`, GitHub's event names) with an id derived from the
//! observation, so the same observation is appended once however often it is polled. The
//! tracker stage then decides on it exactly as on a webhook.
//!
//! Sources: [`LocalGitSource`] (the embedded forge: the record's state, or the fix branch
//! being an ancestor of the base), [`GitHubSource`] (REST v3: pulls, check-suites,
//! reviews) and [`GitLabSource`] (REST v4: merge requests, head pipeline, approvals).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sentinel_events::facts::ForgeEventReceived;
use sentinel_events::{Event, codec};
use sentinel_forge::{Forge, LocalGitForge, PullRequestState, RepoRef, git};
use sentinel_log::EventLog;
use sentinel_runtime::metrics::names;
use sentinel_runtime::{EVENTS_TOPIC, append_events};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::state::{TrackedPr, TrackerState};
use crate::{Error, Result};

/// What a forge reports about one pull request: zero or more observations, each a
/// `ForgeEventReceived` (GitHub's event names) and its event time when the forge says it.
#[async_trait]
pub trait PrSource: Send + Sync {
    /// Observations about `pr` now (merged/closed, completed checks, reviews).
    ///
    /// # Errors
    ///
    /// The forge could not be asked; the poller retries at the next tick.
    async fn observe(&self, pr: &TrackedPr) -> Result<Vec<Observed>>;
}

/// One observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// What was seen.
    pub fact: ForgeEventReceived,
    /// When it happened, when the forge says so (else the poll's time is used).
    pub at: Option<sentinel_events::envelope::Timestamp>,
}

fn observation(pr: &TrackedPr, event: &str, action: &str) -> ForgeEventReceived {
    ForgeEventReceived {
        source: "poll".to_owned(),
        delivery_id: None,
        event: event.to_owned(),
        action: Some(action.to_owned()),
        repository: pr.repository.clone(),
        pr_number: Some(pr.number),
        pr_url: Some(pr.url.clone()),
        head_branch: Some(pr.branch.clone()),
        head_sha: None,
        merged: None,
        merge_commit: None,
        conclusion: None,
        actor: None,
    }
}

fn merged(pr: &TrackedPr, yes: bool, commit: Option<String>, actor: Option<String>) -> Observed {
    let mut f = observation(pr, "pull_request", "closed");
    f.merged = Some(yes);
    f.merge_commit = commit;
    f.actor = actor;
    Observed { fact: f, at: None }
}

/// The embedded forge: the pull request's record (closed or merged by a maintainer with
/// [`LocalGitForge::set_state`]), or — what a maintainer merging by hand does — the fix
/// branch's tip being reachable from the base branch in the repository.
#[derive(Debug)]
pub struct LocalGitSource {
    forge: LocalGitForge,
}

impl LocalGitSource {
    /// A source reading PR records under `records_dir` (PatchBot's forge dir).
    pub fn new(records_dir: impl Into<PathBuf>) -> Self {
        Self {
            forge: LocalGitForge::new(records_dir),
        }
    }
}

#[async_trait]
impl PrSource for LocalGitSource {
    async fn observe(&self, pr: &TrackedPr) -> Result<Vec<Observed>> {
        git::validate_branch(&pr.branch)?;
        git::validate_branch(&pr.base)?;
        let repo = RepoRef::new(pr.repository.as_str());
        if let Some(record) = self.forge.find_pull_request(&repo, &pr.branch).await? {
            match record.state {
                PullRequestState::Closed => return Ok(vec![merged(pr, false, None, None)]),
                PullRequestState::Merged => return Ok(vec![merged(pr, true, None, None)]),
                PullRequestState::Open => {}
            }
        }
        git::validate_repository(&pr.repository)?;
        let path = PathBuf::from(
            pr.repository
                .strip_prefix("file://")
                .unwrap_or(&pr.repository),
        );
        let head = format!("refs/heads/{}", pr.branch);
        let base = format!("refs/heads/{}", pr.base);
        let ancestor = git::run(
            Some(&path),
            ["merge-base", "--is-ancestor", head.as_str(), base.as_str()],
        )
        .await;
        match ancestor {
            Ok(_) => {}
            // 1: not an ancestor (still open). 128 with a missing branch: deleted unmerged.
            Err(sentinel_forge::Error::Git { exit_code: 1, .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        // The first commit on the base that contains the fix (a fast-forward: the tip).
        let range = format!("{head}..{base}");
        let path_list = git::run(
            Some(&path),
            [
                "rev-list",
                "--ancestry-path",
                "--reverse",
                range.as_str(),
                "--",
            ],
        )
        .await?;
        let commit = match path_list.lines().next() {
            Some(c) => c.trim().to_owned(),
            None => git::run(Some(&path), ["rev-parse", head.as_str()])
                .await?
                .trim()
                .to_owned(),
        };
        Ok(vec![merged(pr, true, Some(commit), None)])
    }
}

/// Longest body read from a forge API.
const MAX_API_BODY: usize = 4 * 1024 * 1024;

async fn get_json<T: for<'de> Deserialize<'de>>(
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<T> {
    let err = |reason: String| Error::Forge {
        url: url.to_owned(),
        reason,
    };
    let resp = req
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(err(format!("HTTP {status}")));
    }
    let bytes = resp.bytes().await.map_err(|e| err(e.to_string()))?;
    if bytes.len() > MAX_API_BODY {
        return Err(err(format!(
            "response of {} bytes is too large",
            bytes.len()
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| err(format!("unexpected response: {e}")))
}

/// `owner/name` from `owner/name`, `https://github.com/owner/name(.git)` or
/// `git@github.com:owner/name.git`.
fn owner_name(repository: &str) -> Option<String> {
    let trimmed = repository.trim_end_matches('/').trim_end_matches(".git");
    let tail = trimmed.rsplit([':', '/']).take(2).collect::<Vec<_>>();
    match tail.as_slice() {
        [name, owner] if !name.is_empty() && !owner.is_empty() && !owner.contains('.') => {
            Some(format!("{owner}/{name}"))
        }
        _ => None,
    }
}

/// GitHub's REST API (v3): `GET /repos/{o}/{r}/pulls/{n}`, then for an open PR
/// `GET /repos/{o}/{r}/commits/{sha}/check-suites` and `GET /repos/{o}/{r}/pulls/{n}/reviews`.
#[derive(Debug, Clone)]
pub struct GitHubSource {
    api: String,
    token: Option<String>,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct GhUser {
    login: String,
}

#[derive(Deserialize)]
struct GhHead {
    sha: String,
}

#[derive(Deserialize)]
struct GhPull {
    state: String,
    #[serde(default)]
    merged: bool,
    #[serde(default)]
    merged_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    closed_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    merged_by: Option<GhUser>,
    head: GhHead,
}

#[derive(Deserialize)]
struct GhSuites {
    check_suites: Vec<GhSuite>,
}

#[derive(Deserialize)]
struct GhSuite {
    status: Option<String>,
    conclusion: Option<String>,
}

#[derive(Deserialize)]
struct GhReview {
    user: Option<GhUser>,
    state: String,
    #[serde(default)]
    submitted_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Sums up check suites: none or any still running → `None`; else the worst conclusion.
fn suites_conclusion(suites: &[GhSuite]) -> Option<String> {
    if suites.is_empty()
        || suites
            .iter()
            .any(|s| s.status.as_deref() != Some("completed"))
    {
        return None;
    }
    let bad = [
        "failure",
        "timed_out",
        "cancelled",
        "action_required",
        "stale",
    ];
    let worst = suites
        .iter()
        .filter_map(|s| s.conclusion.as_deref())
        .find(|c| bad.contains(c));
    Some(worst.unwrap_or("success").to_owned())
}

impl GitHubSource {
    /// A source calling the API at `api` (`https://api.github.com`, or an Enterprise
    /// `https://host/api/v3`) with an optional token.
    pub fn new(api: impl Into<String>, token: Option<String>) -> Self {
        Self {
            api: api.into().trim_end_matches('/').to_owned(),
            token,
            client: reqwest::Client::new(),
        }
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .get(url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("user-agent", "sentinel-tracker");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req
    }
}

#[async_trait]
impl PrSource for GitHubSource {
    async fn observe(&self, pr: &TrackedPr) -> Result<Vec<Observed>> {
        let repo = owner_name(&pr.repository)
            .ok_or_else(|| Error::InvalidRepository(pr.repository.clone()))?;
        let url = format!("{}/repos/{repo}/pulls/{}", self.api, pr.number);
        let pull: GhPull = get_json(self.get(&url), &url).await?;
        if pull.state == "closed" {
            let mut o = merged(
                pr,
                pull.merged,
                pull.merge_commit_sha.filter(|_| pull.merged),
                pull.merged_by.map(|u| u.login),
            );
            o.at = if pull.merged {
                pull.merged_at
            } else {
                pull.closed_at
            };
            return Ok(vec![o]);
        }
        let mut out = Vec::new();
        let url = format!(
            "{}/repos/{repo}/commits/{}/check-suites",
            self.api, pull.head.sha
        );
        let suites: GhSuites = get_json(self.get(&url), &url).await?;
        if let Some(conclusion) = suites_conclusion(&suites.check_suites) {
            let mut f = observation(pr, "check_suite", "completed");
            f.head_sha = Some(pull.head.sha.clone());
            f.conclusion = Some(conclusion);
            out.push(Observed { fact: f, at: None });
        }
        let url = format!("{}/repos/{repo}/pulls/{}/reviews", self.api, pr.number);
        let reviews: Vec<GhReview> = get_json(self.get(&url), &url).await?;
        for r in reviews {
            let state = r.state.to_ascii_lowercase();
            if !matches!(state.as_str(), "approved" | "changes_requested") {
                continue;
            }
            let mut f = observation(pr, "pull_request_review", "submitted");
            f.actor = r.user.map(|u| u.login);
            f.conclusion = Some(state);
            out.push(Observed {
                fact: f,
                at: r.submitted_at,
            });
        }
        Ok(out)
    }
}

/// GitLab's REST API (v4): `GET /projects/{path}/merge_requests/{iid}` (state, merge
/// commit, head pipeline) and `GET /projects/{path}/merge_requests/{iid}/approvals`.
#[derive(Debug, Clone)]
pub struct GitLabSource {
    api: String,
    token: Option<String>,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct GlUser {
    username: String,
}

#[derive(Deserialize)]
struct GlPipeline {
    status: String,
    #[serde(default)]
    sha: Option<String>,
}

#[derive(Deserialize)]
struct GlMergeRequest {
    state: String,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    merged_by: Option<GlUser>,
    #[serde(default)]
    merged_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    closed_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    head_pipeline: Option<GlPipeline>,
}

#[derive(Deserialize)]
struct GlApprovals {
    #[serde(default)]
    approved_by: Vec<GlApprover>,
}

#[derive(Deserialize)]
struct GlApprover {
    user: GlUser,
}

/// The project path from `group/sub/name`, `https://gitlab.example/group/name(.git)`.
fn project_path(repository: &str) -> String {
    let trimmed = repository.trim_end_matches('/').trim_end_matches(".git");
    match trimmed.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or(rest, |(_, p)| p).to_owned(),
        None => trimmed.to_owned(),
    }
}

impl GitLabSource {
    /// A source calling the API at `api` (`https://gitlab.com/api/v4`) with an optional
    /// token (sent as `PRIVATE-TOKEN`).
    pub fn new(api: impl Into<String>, token: Option<String>) -> Self {
        Self {
            api: api.into().trim_end_matches('/').to_owned(),
            token,
            client: reqwest::Client::new(),
        }
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .get(url)
            .header("user-agent", "sentinel-tracker");
        if let Some(t) = &self.token {
            req = req.header("private-token", t);
        }
        req
    }
}

#[async_trait]
impl PrSource for GitLabSource {
    async fn observe(&self, pr: &TrackedPr) -> Result<Vec<Observed>> {
        let path = project_path(&pr.repository);
        if path.is_empty() {
            return Err(Error::InvalidRepository(pr.repository.clone()));
        }
        let project = utf8_percent_encode(&path, NON_ALPHANUMERIC).to_string();
        let url = format!(
            "{}/projects/{project}/merge_requests/{}",
            self.api, pr.number
        );
        let mr: GlMergeRequest = get_json(self.get(&url), &url).await?;
        match mr.state.as_str() {
            "merged" => {
                let mut o = merged(
                    pr,
                    true,
                    mr.merge_commit_sha,
                    mr.merged_by.map(|u| u.username),
                );
                o.at = mr.merged_at;
                return Ok(vec![o]);
            }
            "closed" => {
                let mut o = merged(pr, false, None, None);
                o.at = mr.closed_at;
                return Ok(vec![o]);
            }
            _ => {}
        }
        let mut out = Vec::new();
        if let Some(p) = mr.head_pipeline {
            let mut f = observation(pr, "pipeline", "completed");
            f.head_sha = p.sha.or(mr.sha);
            f.conclusion = Some(p.status);
            out.push(Observed { fact: f, at: None });
        }
        let url = format!("{url}/approvals");
        let approvals: GlApprovals = get_json(self.get(&url), &url).await?;
        for a in approvals.approved_by {
            let mut f = observation(pr, "merge_request", "approved");
            f.actor = Some(a.user.username);
            out.push(Observed { fact: f, at: None });
        }
        Ok(out)
    }
}

/// Polls the forges of open Sentinel pull requests on a schedule.
pub struct Poller {
    log: Arc<dyn EventLog>,
    sources: HashMap<String, Arc<dyn PrSource>>,
    state: TrackerState,
    next: Vec<i64>,
    appended: HashSet<Uuid>,
    producer: String,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Poller {
    /// A poller over `log` with no sources yet.
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Self {
            log,
            sources: HashMap::new(),
            state: TrackerState::default(),
            next: Vec::new(),
            appended: HashSet::new(),
            producer: sentinel_runtime::producer("tracker-poller"),
        }
    }

    /// Asks `source` about pull requests whose `PullRequestOpened.forge` is `forge`
    /// (`local-git`, `github`, `gitlab`).
    pub fn with_source(mut self, forge: &str, source: Arc<dyn PrSource>) -> Self {
        self.sources.insert(forge.to_owned(), source);
        self
    }

    /// Reads the log up to its end, folding every fact.
    async fn catch_up(&mut self) -> Result<()> {
        let log = self.log.as_ref();
        let partitions = log
            .partitions(EVENTS_TOPIC)
            .await
            .map_err(sentinel_runtime::Error::from)?;
        self.next
            .resize(usize::try_from(partitions).unwrap_or(0), 0);
        for (p, from) in self.next.iter_mut().enumerate() {
            let partition = i32::try_from(p).unwrap_or(i32::MAX);
            loop {
                let batch = log
                    .read(EVENTS_TOPIC, partition, *from, 1000)
                    .await
                    .map_err(sentinel_runtime::Error::from)?;
                let Some(last) = batch.last() else { break };
                *from = last.position.offset + 1;
                for stored in &batch {
                    if let Ok(e) = codec::decode(&stored.record.value, None) {
                        self.state.apply(&e);
                    }
                }
            }
        }
        Ok(())
    }

    /// One round: catch up with the log, ask each open PR's forge, append new
    /// observations. Returns how many were appended.
    ///
    /// # Errors
    ///
    /// Only log errors; a forge that fails is logged and asked again next round.
    pub async fn poll_once(&mut self) -> Result<usize> {
        self.catch_up().await?;
        let mut events = Vec::new();
        let mut open: Vec<_> = self.state.open_with_chain().collect();
        open.sort_by(|a, b| a.1.url.cmp(&b.1.url));
        for (chain, pr) in open {
            let Some(source) = self.sources.get(&pr.forge) else {
                continue;
            };
            let forge = match pr.forge.as_str() {
                "local-git" => "local-git",
                "github" => "github",
                "gitlab" => "gitlab",
                _ => "other",
            };
            match source.observe(pr).await {
                Ok(seen) => {
                    metrics::counter!(names::FORGE_POLLS, "forge" => forge, "outcome" => "ok")
                        .increment(1);
                    for o in seen {
                        let f = &o.fact;
                        let natural = format!(
                            "poll/{}/{}/{}/{:?}/{:?}/{:?}/{:?}",
                            pr.url,
                            f.event,
                            f.action.as_deref().unwrap_or(""),
                            f.merged,
                            f.head_sha,
                            f.conclusion,
                            f.actor
                        );
                        let mut e = Event::origin(
                            o.fact,
                            Some(&natural),
                            &chain.tenant,
                            &chain.subject,
                            o.at.unwrap_or_else(sentinel_events::envelope::now),
                            &self.producer,
                        );
                        e.correlation_id = chain.correlation_id;
                        if !self.appended.contains(&e.event_id) {
                            events.push(e);
                        }
                    }
                }
                Err(error) => {
                    metrics::counter!(names::FORGE_POLLS, "forge" => forge, "outcome" => "error")
                        .increment(1);
                    warn!(%error, url = %pr.url, "Polling the forge failed; retrying next round.");
                }
            }
        }
        if !events.is_empty() {
            append_events(self.log.as_ref(), EVENTS_TOPIC, &events).await?;
            self.appended.extend(events.iter().map(|e| e.event_id));
            debug!(n = events.len(), "Appended forge observations.");
        }
        Ok(events.len())
    }

    /// Polls every `interval` until `shutdown` is cancelled.
    ///
    /// # Errors
    ///
    /// Log errors that persist (the supervisor restarts the poller).
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) -> Result<()> {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return Ok(()),
            }
            match self.poll_once().await {
                Ok(_) => failures = 0,
                Err(e) if failures < 10 => {
                    failures += 1;
                    warn!(error = %e, failures, "Poll round failed.");
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_map_to_api_paths() {
        assert_eq!(owner_name("acme/app").as_deref(), Some("acme/app"));
        assert_eq!(
            owner_name("https://github.com/acme/app.git").as_deref(),
            Some("acme/app")
        );
        assert_eq!(
            owner_name("git@github.com:acme/app.git").as_deref(),
            Some("acme/app")
        );
        assert_eq!(owner_name("app"), None);
        assert_eq!(
            project_path("https://gitlab.example/grp/sub/app.git"),
            "grp/sub/app"
        );
        assert_eq!(project_path("grp/app"), "grp/app");
    }

    #[test]
    fn suites_sum_up_to_the_worst_conclusion_once_all_completed() {
        let s = |status: &str, c: Option<&str>| GhSuite {
            status: Some(status.into()),
            conclusion: c.map(Into::into),
        };
        assert_eq!(suites_conclusion(&[]), None);
        assert_eq!(
            suites_conclusion(&[s("completed", Some("success")), s("in_progress", None)]),
            None
        );
        assert_eq!(
            suites_conclusion(&[
                s("completed", Some("success")),
                s("completed", Some("neutral"))
            ])
            .as_deref(),
            Some("success")
        );
        assert_eq!(
            suites_conclusion(&[
                s("completed", Some("success")),
                s("completed", Some("failure"))
            ])
            .as_deref(),
            Some("failure")
        );
    }
}
