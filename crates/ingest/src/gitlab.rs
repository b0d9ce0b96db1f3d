//! GitLab webhook payloads (pure: no I/O). Shapes from GitLab's "Webhook events"
//! documentation.
//!
//! * `Pipeline Hook` with `object_attributes.status = failed` and `Job Hook` with
//!   `build_status = failed` (unless `allow_failure`) → `CiRunFailed`;
//! * `Merge Request Hook`, and pipeline hooks of merge-request pipelines →
//!   `ForgeEventReceived` for the PR tracker;
//! * everything else is ignored with a reason.

use chrono::{DateTime, NaiveDateTime, Utc};
use sentinel_events::facts::{CiRunFailed, ForgeEventReceived};
use sentinel_events::{DEFAULT_TENANT, Fact};
use serde::{Deserialize, Deserializer};

use crate::config::BotIdentity;
use crate::model::{Accepted, Outcome, ParseError, Problems, author, event_time};

/// The source name GitLab facts carry.
pub const SOURCE: &str = "gitlab";

/// GitLab writes times as `2016-08-12 15:23:28 UTC` in hooks (and RFC 3339 elsewhere).
fn gitlab_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.and_then(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(s.trim_end_matches(" UTC"), "%Y-%m-%d %H:%M:%S")
                    .ok()
                    .map(|n| n.and_utc())
            })
            .or_else(|| {
                DateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S %z")
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            })
    }))
}

#[derive(Debug, Deserialize)]
struct Project {
    id: Option<i64>,
    web_url: Option<String>,
    git_http_url: Option<String>,
    path_with_namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Person {
    name: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Commit {
    author: Option<Person>,
    author_name: Option<String>,
    author_email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    username: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Build {
    name: Option<String>,
    status: Option<String>,
    allow_failure: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct MergeRequestRef {
    iid: Option<i64>,
    url: Option<String>,
    source_branch: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LastCommit {
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Attributes {
    id: Option<i64>,
    iid: Option<i64>,
    #[serde(rename = "ref")]
    branch: Option<String>,
    sha: Option<String>,
    status: Option<String>,
    url: Option<String>,
    #[serde(default, deserialize_with = "gitlab_time")]
    finished_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "gitlab_time")]
    updated_at: Option<DateTime<Utc>>,
    // Merge requests.
    action: Option<String>,
    state: Option<String>,
    source_branch: Option<String>,
    merge_commit_sha: Option<String>,
    last_commit: Option<LastCommit>,
}

#[derive(Debug, Deserialize)]
struct Payload {
    object_kind: Option<String>,
    user: Option<User>,
    project: Option<Project>,
    commit: Option<Commit>,
    object_attributes: Option<Attributes>,
    merge_request: Option<MergeRequestRef>,
    builds: Option<Vec<Build>>,
    // Job hooks.
    build_id: Option<i64>,
    build_name: Option<String>,
    build_stage: Option<String>,
    build_status: Option<String>,
    build_allow_failure: Option<bool>,
    #[serde(default, deserialize_with = "gitlab_time")]
    build_finished_at: Option<DateTime<Utc>>,
    #[serde(rename = "ref")]
    branch: Option<String>,
    sha: Option<String>,
}

/// Parses one delivery. `event` is `X-Gitlab-Event`; `key` is the dedupe key
/// (`Idempotency-Key`, else `X-Gitlab-Event-UUID`), when the request carried one.
///
/// # Errors
///
/// [`ParseError::Malformed`] for a body that is not the documented JSON shape,
/// [`ParseError::Invalid`] when fields a fact needs are missing.
pub fn parse(
    event: &str,
    key: Option<&str>,
    body: &[u8],
    bot: &BotIdentity,
) -> Result<Outcome, ParseError> {
    let kind = match event {
        "Pipeline Hook" => "pipeline",
        "Job Hook" => "build",
        "Merge Request Hook" => "merge_request",
        other => {
            return Ok(Outcome::Ignored(format!(
                "event {other:?} is not used by Sentinel"
            )));
        }
    };
    let p: Payload = serde_json::from_slice(body)?;
    if p.object_kind.as_deref() != Some(kind) {
        return Err(ParseError::Malformed(format!(
            "{event} with object_kind {:?}, expected {kind:?}",
            p.object_kind.as_deref().unwrap_or("none")
        )));
    }
    let project_id = p.project.as_ref().and_then(|pr| pr.id).unwrap_or_default();
    match kind {
        "pipeline" => pipeline(&p, key, project_id, bot),
        "build" => job(&p, key, project_id, bot),
        _ => merge_request(&p, key, project_id),
    }
}

fn natural(key: Option<&str>, fallback: impl FnOnce() -> String) -> String {
    format!("{SOURCE}/{}", key.map_or_else(fallback, str::to_owned))
}

fn commit_author(p: &Payload) -> (Option<&str>, Option<&str>) {
    let c = p.commit.as_ref();
    let name = c
        .and_then(|c| c.author.as_ref())
        .and_then(|a| a.name.as_deref())
        .or(c.and_then(|c| c.author_name.as_deref()));
    let email = c
        .and_then(|c| c.author.as_ref())
        .and_then(|a| a.email.as_deref())
        .or(c.and_then(|c| c.author_email.as_deref()));
    (name, email)
}

fn pipeline(
    p: &Payload,
    key: Option<&str>,
    project_id: i64,
    bot: &BotIdentity,
) -> Result<Outcome, ParseError> {
    let a = p
        .object_attributes
        .as_ref()
        .ok_or_else(|| ParseError::Malformed("object_attributes missing".into()))?;
    let status = a.status.as_deref().unwrap_or("none");
    let pipeline_id = a.id.unwrap_or_default();
    let mut out = Vec::new();
    if let Some(mr) = &p.merge_request {
        // A merge-request pipeline: the tracker follows its result.
        let repository = project_path(p)?;
        out.push(Accepted {
            fact: Fact::ForgeEventReceived(ForgeEventReceived {
                source: SOURCE.into(),
                delivery_id: key.map(str::to_owned),
                event: "pipeline".into(),
                action: Some(status.to_owned()),
                repository: repository.clone(),
                pr_number: mr.iid,
                pr_url: mr.url.clone(),
                head_branch: mr.source_branch.clone().or(a.branch.clone()),
                head_sha: a.sha.clone(),
                merged: None,
                merge_commit: None,
                conclusion: Some(status.to_owned()),
                actor: p.user.as_ref().and_then(|u| u.username.clone()),
            }),
            tenant: DEFAULT_TENANT.to_owned(),
            subject: repository,
            occurred_at: event_time(a.finished_at),
            natural_id: Some(natural(key, || {
                format!("pipeline/{project_id}/{pipeline_id}/{status}")
            })),
        });
    }
    if status == "failed" {
        let mut problems = Problems::default();
        let repository = problems.required("project.git_http_url", git_url(p));
        let branch = problems.required("object_attributes.ref", a.branch.as_deref());
        let commit = problems.commit("object_attributes.sha", a.sha.as_deref());
        problems.finish()?;
        let failed: Vec<&str> = p
            .builds
            .iter()
            .flatten()
            .filter(|b| b.status.as_deref() == Some("failed") && b.allow_failure != Some(true))
            .filter_map(|b| b.name.as_deref())
            .collect();
        let (name, email) = commit_author(p);
        let run_url = a.url.clone().or_else(|| {
            p.project
                .as_ref()
                .and_then(|pr| pr.web_url.as_ref())
                .map(|w| format!("{w}/-/pipelines/{pipeline_id}"))
        });
        let natural_id = natural(key, || {
            format!("pipeline/{project_id}/{pipeline_id}/failed")
        });
        let fact = CiRunFailed {
            source: SOURCE.into(),
            delivery_id: Some(natural_id.clone()),
            sentinel_authored: bot.is_sentinel(&branch, name, email),
            repository,
            branch,
            commit,
            command: None,
            log: String::new(),
            log_size_bytes: 0,
            run_url,
            job_name: (!failed.is_empty()).then(|| failed.join(", ")),
            author: author(name, email),
        };
        out.push(Accepted::failure(
            fact,
            event_time(a.finished_at.or(a.updated_at)),
            natural_id,
        ));
    }
    if out.is_empty() {
        return Ok(Outcome::Ignored(format!(
            "pipeline status {status:?}, not failed"
        )));
    }
    Ok(Outcome::Record(out))
}

fn git_url(p: &Payload) -> Option<&str> {
    p.project.as_ref().and_then(|pr| {
        pr.git_http_url
            .as_deref()
            .or(pr.web_url.as_deref())
            .or(pr.path_with_namespace.as_deref())
    })
}

fn project_path(p: &Payload) -> Result<String, ParseError> {
    let mut problems = Problems::default();
    let r = problems.required(
        "project.path_with_namespace",
        p.project
            .as_ref()
            .and_then(|pr| pr.path_with_namespace.as_deref()),
    );
    problems.finish()?;
    Ok(r)
}

fn job(
    p: &Payload,
    key: Option<&str>,
    project_id: i64,
    bot: &BotIdentity,
) -> Result<Outcome, ParseError> {
    let status = p.build_status.as_deref().unwrap_or("none");
    if status != "failed" {
        return Ok(Outcome::Ignored(format!(
            "job status {status:?}, not failed"
        )));
    }
    if p.build_allow_failure == Some(true) {
        return Ok(Outcome::Ignored("job failed but is allowed to fail".into()));
    }
    let mut problems = Problems::default();
    let repository = problems.required("project.git_http_url", git_url(p));
    let branch = problems.required("ref", p.branch.as_deref());
    let commit = problems.commit("sha", p.sha.as_deref());
    problems.finish()?;
    let build_id = p.build_id.unwrap_or_default();
    let (name, email) = commit_author(p);
    let natural_id = natural(key, || format!("job/{project_id}/{build_id}/failed"));
    let job_name = match (&p.build_stage, &p.build_name) {
        (Some(s), Some(n)) => Some(format!("{s} / {n}")),
        (None, Some(n)) => Some(n.clone()),
        (s, None) => s.clone(),
    };
    let fact = CiRunFailed {
        source: SOURCE.into(),
        delivery_id: Some(natural_id.clone()),
        sentinel_authored: bot.is_sentinel(&branch, name, email),
        repository,
        branch,
        commit,
        command: None,
        log: String::new(),
        log_size_bytes: 0,
        run_url: p
            .project
            .as_ref()
            .and_then(|pr| pr.web_url.as_ref())
            .map(|w| format!("{w}/-/jobs/{build_id}")),
        job_name,
        author: author(name, email),
    };
    Ok(Outcome::Record(vec![Accepted::failure(
        fact,
        event_time(p.build_finished_at),
        natural_id,
    )]))
}

fn merge_request(p: &Payload, key: Option<&str>, project_id: i64) -> Result<Outcome, ParseError> {
    let a = p
        .object_attributes
        .as_ref()
        .ok_or_else(|| ParseError::Malformed("object_attributes missing".into()))?;
    let repository = project_path(p)?;
    let merged = a.state.as_deref().map(|s| s == "merged");
    let action = a.action.clone();
    let iid = a.iid.unwrap_or_default();
    let natural_id = natural(key, || {
        format!(
            "mr/{project_id}/{iid}/{}/{}",
            action.as_deref().unwrap_or(""),
            a.last_commit
                .as_ref()
                .and_then(|c| c.id.as_deref())
                .unwrap_or("")
        )
    });
    let fact = ForgeEventReceived {
        source: SOURCE.into(),
        delivery_id: key.map(str::to_owned),
        event: "merge_request".into(),
        action,
        repository: repository.clone(),
        pr_number: a.iid,
        pr_url: a.url.clone(),
        head_branch: a.source_branch.clone(),
        head_sha: a.last_commit.as_ref().and_then(|c| c.id.clone()),
        merged,
        merge_commit: a.merge_commit_sha.clone().filter(|_| merged == Some(true)),
        conclusion: None,
        actor: p.user.as_ref().and_then(|u| u.username.clone()),
    };
    Ok(Outcome::Record(vec![Accepted {
        fact: Fact::ForgeEventReceived(fact),
        tenant: DEFAULT_TENANT.to_owned(),
        subject: repository,
        occurred_at: event_time(a.updated_at),
        natural_id: Some(natural_id),
    }]))
}
