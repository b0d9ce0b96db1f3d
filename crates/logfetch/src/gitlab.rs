//! GitLab CI: a pipeline's failed jobs and each job's trace (REST v4, `PRIVATE-TOKEN`).
//!
//! * `GET /projects/{id}/pipelines/{pipeline_id}/jobs?scope[]=failed&per_page=100&page=N`
//!   → `[{"id", "name", "stage", "status", "failure_reason", …}]`;
//! * `GET /projects/{id}/jobs/{job_id}` → one job;
//! * `GET /projects/{id}/jobs/{job_id}/trace` → the log as plain text.
//!
//! `{id}` is the numeric id or the URL-encoded full path (`group%2Fproject`).

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::download::{Download, read_reqwest};
use crate::{Error, Result};

/// A GitLab job, as far as log capture cares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitLabJob {
    /// Job id.
    pub id: u64,
    /// Job name.
    pub name: String,
    /// Stage name.
    #[serde(default)]
    pub stage: Option<String>,
    /// failed, success, …
    #[serde(default)]
    pub status: String,
}

/// GitLab REST client for log capture.
#[derive(Debug, Clone)]
pub struct GitLabClient {
    http: reqwest::Client,
    api: String,
    token: Option<String>,
    max_download: usize,
}

impl GitLabClient {
    /// A client for the API at `api_url` (e.g. `https://gitlab.com/api/v4`).
    ///
    /// # Errors
    ///
    /// The HTTP client cannot be built.
    pub fn new(
        api_url: &str,
        token: Option<String>,
        timeout: Duration,
        max_download: usize,
    ) -> Result<GitLabClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("GitLab client: {e}")))?;
        Ok(GitLabClient {
            http,
            api: api_url.trim_end_matches('/').to_owned(),
            token,
            max_download: max_download.max(1),
        })
    }

    fn project(project: &str) -> String {
        url::form_urlencoded::byte_serialize(project.as_bytes()).collect()
    }

    async fn get(&self, path: &str, what: &str) -> Result<reqwest::Response> {
        let mut req = self.http.get(format!("{}{path}", self.api));
        if let Some(t) = &self.token {
            req = req.header("PRIVATE-TOKEN", t);
        }
        let resp = req.send().await.map_err(|e| Error::Unavailable {
            what: what.to_owned(),
            message: e.without_url().to_string(),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let rate_limited = status.as_u16() == 429;
        let body = resp.text().await.unwrap_or_default();
        Err(Error::from_status(
            what,
            status.as_u16(),
            &body,
            rate_limited,
        ))
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let resp = self.get(path, what).await?;
        let body = resp.bytes().await.map_err(|e| Error::Unavailable {
            what: what.to_owned(),
            message: e.without_url().to_string(),
        })?;
        serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            what: what.to_owned(),
            message: e.to_string(),
        })
    }

    /// The failed jobs of a pipeline.
    ///
    /// # Errors
    ///
    /// Remote errors.
    pub async fn failed_jobs(&self, project: &str, pipeline_id: u64) -> Result<Vec<GitLabJob>> {
        let p = Self::project(project);
        let mut out = Vec::new();
        for page in 1..=50u32 {
            let jobs: Vec<GitLabJob> = self
                .get_json(
                    &format!(
                        "/projects/{p}/pipelines/{pipeline_id}/jobs?scope[]=failed&per_page=100&page={page}"
                    ),
                    &format!("jobs of pipeline {pipeline_id} of {project}"),
                )
                .await?;
            let n = jobs.len();
            out.extend(jobs.into_iter().filter(|j| j.status == "failed"));
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// One job.
    ///
    /// # Errors
    ///
    /// Remote errors.
    pub async fn job(&self, project: &str, job_id: u64) -> Result<GitLabJob> {
        let p = Self::project(project);
        self.get_json(
            &format!("/projects/{p}/jobs/{job_id}"),
            &format!("job {job_id} of {project}"),
        )
        .await
    }

    /// A job's trace (its end, when larger than the download cap).
    ///
    /// # Errors
    ///
    /// Remote errors.
    pub async fn trace(&self, project: &str, job_id: u64) -> Result<Download> {
        let p = Self::project(project);
        let what = format!("trace of job {job_id} of {project}");
        let resp = self
            .get(&format!("/projects/{p}/jobs/{job_id}/trace"), &what)
            .await?;
        read_reqwest(resp, self.max_download)
            .await
            .map_err(|e| Error::Unavailable {
                what,
                message: e.without_url().to_string(),
            })
    }
}
