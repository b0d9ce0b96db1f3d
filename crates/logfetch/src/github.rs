//! GitHub Actions: failed jobs of a run and their logs, through octocrab.
//!
//! Endpoints (REST, `X-GitHub-Api-Version: 2022-11-28`):
//! * `GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=latest&per_page=100&page=N`
//!   → `{"total_count": n, "jobs": [{"id", "name", "status", "conclusion", "steps": [...]}]}`;
//! * `GET /repos/{owner}/{repo}/actions/jobs/{job_id}` → one job;
//! * `GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs` → `302 Found` to a short-lived
//!   download URL (followed; credentials are not forwarded to another host) → plain text;
//! * as an App: `GET /repos/{owner}/{repo}/installation` (JWT) → `{"id": …}`, then
//!   `POST /app/installations/{id}/access_tokens` → `{"token", "expires_at"}`, which
//!   octocrab caches and renews 30 s before `expires_at`.
//!
//! Responses are read into lenient structs holding only the fields used, so an added or
//! renamed field elsewhere in GitHub's payloads does not break log capture.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::config::GitHubAuth;
use crate::download::{Download, read_http_body};
use crate::{Error, Result};

/// A workflow job, as far as log capture cares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Job {
    /// Job id.
    pub id: u64,
    /// Job name.
    pub name: String,
    /// queued, in_progress, completed, …
    #[serde(default)]
    pub status: String,
    /// success, failure, cancelled, timed_out, …
    #[serde(default)]
    pub conclusion: Option<String>,
    /// The job's steps.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// A step of a job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Step {
    /// Step name (`Run black --check .` for unnamed `run:` steps).
    pub name: String,
    /// Step number.
    #[serde(default)]
    pub number: u64,
    /// Its conclusion.
    #[serde(default)]
    pub conclusion: Option<String>,
}

fn failed(conclusion: Option<&str>) -> bool {
    matches!(
        conclusion,
        Some("failure" | "timed_out" | "startup_failure")
    )
}

impl Job {
    /// Whether the job failed.
    pub fn failed(&self) -> bool {
        failed(self.conclusion.as_deref())
    }

    /// The first failed step.
    pub fn failed_step(&self) -> Option<&Step> {
        self.steps.iter().find(|s| failed(s.conclusion.as_deref()))
    }
}

#[derive(Debug, Deserialize)]
struct JobsPage {
    total_count: u64,
    jobs: Vec<Job>,
}

#[derive(Debug, Deserialize)]
struct RepoInstallation {
    id: u64,
}

/// A failed job's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLog {
    /// The job.
    pub job: Job,
    /// Its log (the end of it, when larger than the download cap).
    pub log: Download,
}

/// GitHub REST client for log capture (and, as an App, for the delivery sweeper).
pub struct GitHubClient {
    /// Token client, or the App's JWT client.
    root: Arc<Octocrab>,
    app: bool,
    /// `owner/repo` → installation id.
    repo_installations: Mutex<HashMap<String, u64>>,
    /// installation id → client holding (and renewing) its installation token. Shared, not
    /// cloned: a cloned `Octocrab` starts with its own copy of the token cache.
    installations: Mutex<HashMap<u64, Arc<Octocrab>>>,
    max_download: usize,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

fn check_name(kind: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 100
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "not a valid GitHub {kind} name: {s:?}"
        )))
    }
}

impl GitHubClient {
    /// A client for the API at `api_url`.
    ///
    /// # Errors
    ///
    /// A bad URL or private key.
    pub fn new(
        api_url: &str,
        auth: &GitHubAuth,
        timeout: Duration,
        max_download: usize,
    ) -> Result<GitHubClient> {
        let builder = Octocrab::builder()
            .base_uri(api_url.trim_end_matches('/'))
            .map_err(|e| Error::Config(format!("GitHub API URL {api_url:?}: {e}")))?
            .set_connect_timeout(Some(timeout))
            .set_read_timeout(Some(timeout))
            .set_write_timeout(Some(timeout))
            .add_header(
                http::HeaderName::from_static("x-github-api-version"),
                "2022-11-28".to_owned(),
            )
            .add_header(
                http::header::ACCEPT,
                "application/vnd.github+json".to_owned(),
            );
        let (builder, app) = match auth {
            GitHubAuth::Token(t) => (builder.personal_token(t.clone()), false),
            GitHubAuth::App {
                app_id,
                private_key_pem,
            } => {
                let key = octocrab::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(
                    |e| Error::Config(format!("the GitHub App private key is not RSA PEM: {e}")),
                )?;
                (builder.app(AppId(*app_id), key), true)
            }
        };
        let root = builder
            .build()
            .map_err(|e| Error::Config(format!("GitHub client: {e}")))?;
        Ok(GitHubClient {
            root: Arc::new(root),
            app,
            repo_installations: Mutex::new(HashMap::new()),
            installations: Mutex::new(HashMap::new()),
            max_download: max_download.max(1),
        })
    }

    /// Whether this client authenticates as a GitHub App.
    pub fn is_app(&self) -> bool {
        self.app
    }

    /// The App-authenticated (JWT) client, for `/app/...` endpoints.
    pub(crate) fn app_client(&self) -> Option<&Octocrab> {
        self.app.then_some(self.root.as_ref())
    }

    /// The client to use for `owner/repo`: the token client, or the installation's.
    async fn client_for(&self, owner: &str, repo: &str) -> Result<Arc<Octocrab>> {
        check_name("owner", owner)?;
        check_name("repository", repo)?;
        if !self.app {
            return Ok(self.root.clone());
        }
        let key = format!("{owner}/{repo}");
        let known = self.repo_installations.lock().await.get(&key).copied();
        let installation = match known {
            Some(id) => id,
            None => {
                let found: RepoInstallation = get_json(
                    &self.root,
                    &format!("/repos/{owner}/{repo}/installation"),
                    &format!("the App's installation on {key}"),
                )
                .await?;
                self.repo_installations.lock().await.insert(key, found.id);
                found.id
            }
        };
        let mut clients = self.installations.lock().await;
        if let Some(c) = clients.get(&installation) {
            return Ok(c.clone());
        }
        let c = Arc::new(
            self.root
                .installation(InstallationId(installation))
                .map_err(|e| Error::Config(format!("GitHub installation client: {e}")))?,
        );
        clients.insert(installation, c.clone());
        Ok(c)
    }

    /// The failed jobs of a run (latest attempt).
    ///
    /// # Errors
    ///
    /// Remote errors.
    pub async fn failed_jobs(&self, owner: &str, repo: &str, run_id: u64) -> Result<Vec<Job>> {
        let crab = self.client_for(owner, repo).await?;
        let mut jobs = Vec::new();
        let mut seen = 0u64;
        for page in 1..=50u32 {
            let p: JobsPage = get_json(
                &crab,
                &format!(
                    "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=latest&per_page=100&page={page}"
                ),
                &format!("jobs of run {run_id} of {owner}/{repo}"),
            )
            .await?;
            let n = p.jobs.len() as u64;
            seen += n;
            jobs.extend(p.jobs.into_iter().filter(Job::failed));
            if n == 0 || seen >= p.total_count {
                break;
            }
        }
        Ok(jobs)
    }

    /// One job.
    ///
    /// # Errors
    ///
    /// Remote errors.
    pub async fn job(&self, owner: &str, repo: &str, job_id: u64) -> Result<Job> {
        let crab = self.client_for(owner, repo).await?;
        get_json(
            &crab,
            &format!("/repos/{owner}/{repo}/actions/jobs/{job_id}"),
            &format!("job {job_id} of {owner}/{repo}"),
        )
        .await
    }

    /// A job's log (its end, when larger than the download cap).
    ///
    /// # Errors
    ///
    /// Remote errors; `NotFound` when the log has expired.
    pub async fn job_log(&self, owner: &str, repo: &str, job_id: u64) -> Result<Download> {
        let crab = self.client_for(owner, repo).await?;
        let what = format!("log of job {job_id} of {owner}/{repo}");
        let resp = crab
            ._get(format!("/repos/{owner}/{repo}/actions/jobs/{job_id}/logs"))
            .await
            .map_err(|e| unavailable(&what, &e))?;
        let resp = check_status(resp, &what).await?;
        read_http_body(resp.into_body(), self.max_download)
            .await
            .map_err(|message| Error::Unavailable { what, message })
    }
}

fn unavailable(what: &str, e: &octocrab::Error) -> Error {
    Error::Unavailable {
        what: what.to_owned(),
        message: format!("{e}"),
    }
}

type OctoResponse =
    http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, octocrab::Error>>;

/// Passes 2xx responses; maps the rest to errors (rate limits are transient).
async fn check_status(resp: OctoResponse, what: &str) -> Result<OctoResponse> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let rate_limited = status.as_u16() == 429
        || resp
            .headers()
            .get("x-ratelimit-remaining")
            .is_some_and(|v| v.as_bytes() == b"0")
        || resp.headers().contains_key(http::header::RETRY_AFTER);
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    Err(Error::from_status(
        what,
        status.as_u16(),
        &body,
        rate_limited,
    ))
}

/// GET `path` and parse its JSON body.
pub(crate) async fn get_json<T: DeserializeOwned>(
    crab: &Octocrab,
    path: &str,
    what: &str,
) -> Result<T> {
    let resp = crab._get(path).await.map_err(|e| unavailable(what, &e))?;
    let resp = check_status(resp, what).await?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| unavailable(what, &e))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| Error::Protocol {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

/// POST to `path` with an empty JSON body; the status must be 2xx.
pub(crate) async fn post_empty(crab: &Octocrab, path: &str, what: &str) -> Result<()> {
    let resp = crab
        ._post(path, None::<&()>)
        .await
        .map_err(|e| unavailable(what, &e))?;
    check_status(resp, what).await.map(|_| ())
}
