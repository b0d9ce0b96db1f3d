//! The `logfetch` stage: `CiRunFailed` without a log → `FailureLogsCaptured`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sentinel_events::facts::{CiRunFailed, FailureLogsCaptured};
use sentinel_events::redact::Redactor;
use sentinel_events::{Event, Fact};
use sentinel_runtime::metrics::names;
use sentinel_runtime::{HandlerError, Output, RunnerConfig, Stage, producer};
use tracing::{info, warn};

use crate::config::LogfetchConfig;
use crate::download::Download;
use crate::github::GitHubClient;
use crate::gitlab::GitLabClient;
use crate::jenkins::JenkinsClient;
use crate::normalise::{Captured, ExcerptLimits, LogPart, capture_parts};
use crate::source::{LogLocation, locate, needs_fetch};
use crate::{Error, Result};

/// The stage's name (and consumer group `sentinel-logfetch`).
pub const STAGE_NAME: &str = "logfetch";

/// One fetched job log.
#[derive(Debug, Clone)]
struct JobText {
    job: String,
    step: Option<String>,
    log: Download,
}

/// The log capture stage.
pub struct LogfetchStage {
    github: Option<Arc<GitHubClient>>,
    gitlab: Option<GitLabClient>,
    jenkins: Option<JenkinsClient>,
    redactor: Redactor,
    limits: ExcerptLimits,
    producer: String,
}

impl LogfetchStage {
    /// Builds the stage's clients from the settings.
    ///
    /// # Errors
    ///
    /// Unusable settings (bad URL, unreadable or invalid private key).
    pub fn from_config(config: &LogfetchConfig) -> Result<LogfetchStage> {
        let timeout = config.request_timeout();
        let github = config
            .github_auth()?
            .map(|auth| {
                GitHubClient::new(
                    &config.github_api_url,
                    &auth,
                    timeout,
                    config.max_download_bytes,
                )
            })
            .transpose()?
            .map(Arc::new);
        let gitlab = Some(GitLabClient::new(
            &config.gitlab_api_url,
            config.gitlab_token.clone(),
            timeout,
            config.max_download_bytes,
        )?);
        let jenkins = config
            .jenkins_url
            .as_deref()
            .map(|url| {
                let auth = match (&config.jenkins_user, &config.jenkins_api_token) {
                    (Some(u), Some(t)) => Some((u.clone(), t.clone())),
                    _ => None,
                };
                JenkinsClient::new(url, auth, timeout, config.max_download_bytes)
            })
            .transpose()?;
        Ok(LogfetchStage {
            github,
            gitlab,
            jenkins,
            redactor: Redactor::new(config.own_secrets()),
            limits: config.limits(),
            producer: producer(STAGE_NAME),
        })
    }

    /// The GitHub client, shared with the delivery sweeper.
    pub fn github(&self) -> Option<Arc<GitHubClient>> {
        self.github.clone()
    }

    async fn fetch(&self, loc: &LogLocation) -> Result<Vec<JobText>> {
        let unconfigured = |what: &str| Error::Config(format!("no {what} configured"));
        match loc {
            LogLocation::GitHubRun {
                owner,
                repo,
                run_id,
            } => {
                let gh = self
                    .github
                    .as_ref()
                    .ok_or_else(|| unconfigured("GitHub credentials"))?;
                let jobs = gh.failed_jobs(owner, repo, *run_id).await?;
                if jobs.is_empty() {
                    return Err(Error::NotFound {
                        what: format!("a failed job in run {run_id} of {owner}/{repo}"),
                        status: 200,
                    });
                }
                let mut out = Vec::with_capacity(jobs.len());
                for job in jobs {
                    let log = gh.job_log(owner, repo, job.id).await?;
                    out.push(JobText {
                        step: job.failed_step().map(|s| s.name.clone()),
                        job: job.name,
                        log,
                    });
                }
                Ok(out)
            }
            LogLocation::GitHubJob {
                owner,
                repo,
                job_id,
            } => {
                let gh = self
                    .github
                    .as_ref()
                    .ok_or_else(|| unconfigured("GitHub credentials"))?;
                let job = gh.job(owner, repo, *job_id).await?;
                let log = gh.job_log(owner, repo, *job_id).await?;
                Ok(vec![JobText {
                    step: job.failed_step().map(|s| s.name.clone()),
                    job: job.name,
                    log,
                }])
            }
            LogLocation::GitLabPipeline {
                project,
                pipeline_id,
            } => {
                let gl = self
                    .gitlab
                    .as_ref()
                    .ok_or_else(|| unconfigured("GitLab API"))?;
                let jobs = gl.failed_jobs(project, *pipeline_id).await?;
                if jobs.is_empty() {
                    return Err(Error::NotFound {
                        what: format!("a failed job in pipeline {pipeline_id} of {project}"),
                        status: 200,
                    });
                }
                let mut out = Vec::with_capacity(jobs.len());
                for job in jobs {
                    let log = gl.trace(project, job.id).await?;
                    out.push(JobText {
                        job: job.name,
                        step: job.stage,
                        log,
                    });
                }
                Ok(out)
            }
            LogLocation::GitLabJob { project, job_id } => {
                let gl = self
                    .gitlab
                    .as_ref()
                    .ok_or_else(|| unconfigured("GitLab API"))?;
                let job = gl.job(project, *job_id).await?;
                let log = gl.trace(project, *job_id).await?;
                Ok(vec![JobText {
                    job: job.name,
                    step: job.stage,
                    log,
                }])
            }
            LogLocation::JenkinsBuild { build_url } => {
                let j = self.jenkins.as_ref().ok_or_else(|| {
                    unconfigured("Jenkins URL (SENTINEL_JENKINS_URL) for console logs")
                })?;
                let log = j.console_text(build_url).await?;
                Ok(vec![JobText {
                    job: String::new(),
                    step: None,
                    log,
                }])
            }
        }
    }

    fn captured(&self, f: &CiRunFailed, jobs: &[JobText]) -> FailureLogsCaptured {
        let titled = jobs.len() > 1;
        let parts: Vec<LogPart<'_>> = jobs
            .iter()
            .map(|j| LogPart {
                title: (titled && !j.job.is_empty()).then_some(j.job.as_str()),
                raw: &j.log.bytes,
                full_size_bytes: j.log.total,
            })
            .collect();
        let Captured {
            excerpt,
            full_size_bytes,
            redactions,
            failing_command,
            exit_code,
            truncated: _,
        } = capture_parts(&parts, &self.redactor, &self.limits);
        let names: Vec<&str> = jobs
            .iter()
            .map(|j| j.job.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        FailureLogsCaptured {
            failure_event_id: String::new(),
            excerpt,
            full_size_bytes: i64::try_from(full_size_bytes).unwrap_or(i64::MAX),
            redactions: i32::try_from(redactions).unwrap_or(i32::MAX),
            failing_command: failing_command
                .or_else(|| f.command.as_ref().map(|c| self.redactor.redact(c).text)),
            exit_code,
            job_name: (!names.is_empty())
                .then(|| names.join(", "))
                .or_else(|| f.job_name.clone()),
            step_name: jobs.iter().find_map(|j| j.step.clone()),
            fetch_error: None,
        }
    }

    fn not_captured(&self, f: &CiRunFailed, reason: &str) -> FailureLogsCaptured {
        FailureLogsCaptured {
            failure_event_id: String::new(),
            excerpt: String::new(),
            full_size_bytes: 0,
            redactions: 0,
            failing_command: f.command.as_ref().map(|c| self.redactor.redact(c).text),
            exit_code: None,
            job_name: f.job_name.clone(),
            step_name: None,
            fetch_error: Some(self.redactor.redact(reason).text),
        }
    }
}

fn source_label(source: &str) -> &'static str {
    match source {
        "github" => "github",
        "gitlab" => "gitlab",
        "jenkins" => "jenkins",
        _ => "other",
    }
}

#[async_trait]
impl Stage for LogfetchStage {
    fn name(&self) -> &'static str {
        STAGE_NAME
    }

    fn tune(&self, config: RunnerConfig) -> RunnerConfig {
        // CI APIs rate-limit and have outages: keep retrying for minutes before a failure
        // is dead-lettered.
        RunnerConfig {
            max_attempts: 10,
            retry_min_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            ..config
        }
    }

    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let Fact::CiRunFailed(f) = &event.fact else {
            return Ok(Output::none());
        };
        if !needs_fetch(f) {
            return Ok(Output::none());
        }
        let source = source_label(&f.source);
        let (mut fact, outcome) = match locate(f) {
            Err(reason) => (self.not_captured(f, &reason), "invalid"),
            Ok(loc) => match self.fetch(&loc).await {
                Ok(jobs) => (self.captured(f, &jobs), "captured"),
                Err(e) if e.is_transient() => {
                    metrics::counter!(names::LOGS_FETCHED, "source" => source, "outcome" => "retried")
                        .increment(1);
                    warn!(error = %e, failure = %event.event_id, "Log fetch failed; will retry.");
                    return Err(HandlerError::Transient(e.to_string()));
                }
                Err(e) => {
                    let outcome = match &e {
                        Error::NotFound { .. } => "not_found",
                        Error::Denied { .. } => "denied",
                        Error::Config(_) => "unconfigured",
                        _ => "invalid",
                    };
                    (self.not_captured(f, &e.to_string()), outcome)
                }
            },
        };
        fact.failure_event_id = event.event_id.to_string();
        metrics::counter!(names::LOGS_FETCHED, "source" => source, "outcome" => outcome)
            .increment(1);
        if fact.redactions > 0 {
            metrics::counter!(names::LOG_REDACTIONS, "source" => source)
                .increment(u64::try_from(fact.redactions).unwrap_or(0));
        }
        if fact.fetch_error.is_none() {
            metrics::histogram!(names::LOG_SIZE, "source" => source)
                .record(fact.full_size_bytes as f64);
        }
        info!(
            failure = %event.event_id,
            outcome,
            bytes = fact.full_size_bytes,
            redactions = fact.redactions,
            "Failure log handled."
        );
        let mut out = Output::none();
        out.push(event.caused(fact, &self.producer, 0, None));
        Ok(out)
    }
}
