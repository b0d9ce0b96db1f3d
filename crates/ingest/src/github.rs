//! GitHub webhook payloads (pure: no I/O). Shapes from GitHub's "Webhook events and
//! payloads" documentation.
//!
//! * `workflow_run` / `workflow_job` with `action = completed` and `conclusion = failure`
//!   → `CiRunFailed` (the log is fetched later by the `logfetch` stage from `run_url`);
//! * `pull_request`, `pull_request_review`, `check_suite`, `check_run` →
//!   `ForgeEventReceived` for the PR tracker;
//! * `ping` → answered 200; everything else is ignored with a reason.

use chrono::{DateTime, Utc};
use sentinel_events::facts::{CiRunFailed, ForgeEventReceived};
use sentinel_events::{DEFAULT_TENANT, Fact};
use serde::Deserialize;

use crate::config::BotIdentity;
use crate::model::{Accepted, Outcome, ParseError, Problems, author, event_time};

/// The source name GitHub facts carry.
pub const SOURCE: &str = "github";

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: Option<String>,
    clone_url: Option<String>,
    html_url: Option<String>,
}

impl Repository {
    /// A git URL for failures (PatchBot clones it), falling back to the web URL or name.
    fn git_url(&self) -> Option<&str> {
        self.clone_url
            .as_deref()
            .or(self.html_url.as_deref())
            .or(self.full_name.as_deref())
    }
}

#[derive(Debug, Deserialize)]
struct Person {
    name: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HeadCommit {
    author: Option<Person>,
}

#[derive(Debug, Deserialize)]
struct User {
    login: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WorkflowRun {
    name: Option<String>,
    head_branch: Option<String>,
    head_sha: Option<String>,
    conclusion: Option<String>,
    html_url: Option<String>,
    updated_at: Option<DateTime<Utc>>,
    head_commit: Option<HeadCommit>,
}

#[derive(Debug, Deserialize)]
struct WorkflowJob {
    name: Option<String>,
    workflow_name: Option<String>,
    head_branch: Option<String>,
    head_sha: Option<String>,
    conclusion: Option<String>,
    html_url: Option<String>,
    completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct Ref {
    #[serde(rename = "ref")]
    branch: Option<String>,
    sha: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    number: Option<i64>,
    html_url: Option<String>,
    head: Option<Ref>,
    merged: Option<bool>,
    merge_commit_sha: Option<String>,
    merged_by: Option<User>,
}

#[derive(Debug, Deserialize)]
struct PrRef {
    number: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Check {
    head_branch: Option<String>,
    head_sha: Option<String>,
    conclusion: Option<String>,
    pull_requests: Option<Vec<PrRef>>,
    check_suite: Option<Box<Check>>,
}

#[derive(Debug, Deserialize)]
struct Review {
    state: Option<String>,
    user: Option<User>,
}

#[derive(Debug, Deserialize)]
struct Payload {
    action: Option<String>,
    repository: Option<Repository>,
    sender: Option<User>,
    workflow_run: Option<WorkflowRun>,
    workflow_job: Option<WorkflowJob>,
    pull_request: Option<PullRequest>,
    review: Option<Review>,
    check_run: Option<Check>,
    check_suite: Option<Check>,
}

/// Events recorded for the PR tracker.
pub const FORGE_EVENTS: &[&str] = &[
    "pull_request",
    "pull_request_review",
    "check_suite",
    "check_run",
];

/// Parses one delivery: `event` is `X-GitHub-Event`, `delivery` is `X-GitHub-Delivery`.
///
/// # Errors
///
/// [`ParseError::Malformed`] for a body that is not the documented JSON shape,
/// [`ParseError::Invalid`] when fields a fact needs are missing.
pub fn parse(
    event: &str,
    delivery: &str,
    body: &[u8],
    bot: &BotIdentity,
) -> Result<Outcome, ParseError> {
    if event == "ping" {
        // The body still has to be JSON: a ping is GitHub's hook test.
        let _: serde_json::Value = serde_json::from_slice(body)?;
        return Ok(Outcome::Ping);
    }
    if event != "workflow_run" && event != "workflow_job" && !FORGE_EVENTS.contains(&event) {
        // Not parsed at all: nothing of interest can be in it.
        return Ok(Outcome::Ignored(format!(
            "event {event:?} is not used by Sentinel"
        )));
    }
    let p: Payload = serde_json::from_slice(body)?;
    let natural = format!("{SOURCE}/{delivery}");
    let action = p.action.as_deref().unwrap_or("");
    match event {
        "workflow_run" | "workflow_job" => {
            if action != "completed" {
                return Ok(Outcome::Ignored(format!(
                    "{event} action {action:?}, not completed"
                )));
            }
            failure(event, &p, bot, natural)
        }
        _ => forge_event(event, &p, delivery, natural),
    }
}

fn failure(
    event: &str,
    p: &Payload,
    bot: &BotIdentity,
    natural: String,
) -> Result<Outcome, ParseError> {
    let mut problems = Problems::default();
    let repo = p.repository.as_ref().and_then(Repository::git_url);
    let (conclusion, branch, sha, url, job_name, time, author_name, author_email) =
        if event == "workflow_run" {
            let r = p
                .workflow_run
                .as_ref()
                .ok_or_else(|| ParseError::Malformed("workflow_run missing".into()))?;
            let a = r.head_commit.as_ref().and_then(|c| c.author.as_ref());
            (
                r.conclusion.as_deref(),
                r.head_branch.as_deref(),
                r.head_sha.as_deref(),
                r.html_url.clone(),
                r.name.clone(),
                r.updated_at,
                a.and_then(|a| a.name.as_deref()),
                a.and_then(|a| a.email.as_deref()),
            )
        } else {
            let j = p
                .workflow_job
                .as_ref()
                .ok_or_else(|| ParseError::Malformed("workflow_job missing".into()))?;
            let name = match (&j.workflow_name, &j.name) {
                (Some(w), Some(n)) => Some(format!("{w} / {n}")),
                (None, Some(n)) => Some(n.clone()),
                (w, None) => w.clone(),
            };
            (
                j.conclusion.as_deref(),
                j.head_branch.as_deref(),
                j.head_sha.as_deref(),
                j.html_url.clone(),
                name,
                j.completed_at,
                None,
                None,
            )
        };
    if conclusion != Some("failure") {
        return Ok(Outcome::Ignored(format!(
            "{event} conclusion {:?}, not failure",
            conclusion.unwrap_or("none")
        )));
    }
    let repository = problems.required("repository.clone_url", repo);
    let branch = problems.required(&format!("{event}.head_branch"), branch);
    let commit = problems.commit(&format!("{event}.head_sha"), sha);
    problems.finish()?;
    // The sender is who triggered the run; for workflow_job it is the only hint of the
    // author GitHub sends.
    let sender = p.sender.as_ref().and_then(|s| s.login.as_deref());
    let sentinel_authored = bot.is_sentinel(&branch, author_name.or(sender), author_email);
    let fact = CiRunFailed {
        source: SOURCE.into(),
        delivery_id: Some(natural.clone()),
        sentinel_authored,
        repository,
        branch,
        commit,
        command: None,
        log: String::new(),
        log_size_bytes: 0,
        run_url: url,
        job_name,
        author: author(author_name, author_email),
    };
    Ok(Outcome::Record(vec![Accepted::failure(
        fact,
        event_time(time),
        natural,
    )]))
}

fn forge_event(
    event: &str,
    p: &Payload,
    delivery: &str,
    natural: String,
) -> Result<Outcome, ParseError> {
    let mut problems = Problems::default();
    let repository = problems.required(
        "repository.full_name",
        p.repository.as_ref().and_then(|r| r.full_name.as_deref()),
    );
    problems.finish()?;
    let pr = p.pull_request.as_ref();
    let check = match event {
        "check_run" => p.check_run.as_ref(),
        "check_suite" => p.check_suite.as_ref(),
        _ => None,
    };
    let check_pr = check.and_then(|c| {
        c.pull_requests
            .as_ref()
            .or(c
                .check_suite
                .as_ref()
                .and_then(|s| s.pull_requests.as_ref()))
            .and_then(|prs| prs.first())
            .and_then(|p| p.number)
    });
    let head_branch = pr
        .and_then(|p| p.head.as_ref())
        .and_then(|h| h.branch.clone())
        .or_else(|| check.and_then(|c| c.head_branch.clone()))
        .or_else(|| {
            check
                .and_then(|c| c.check_suite.as_ref())
                .and_then(|s| s.head_branch.clone())
        });
    let head_sha = pr
        .and_then(|p| p.head.as_ref())
        .and_then(|h| h.sha.clone())
        .or_else(|| check.and_then(|c| c.head_sha.clone()));
    let conclusion = match event {
        "pull_request_review" => p.review.as_ref().and_then(|r| r.state.clone()),
        _ => check.and_then(|c| c.conclusion.clone()),
    };
    let actor = match event {
        "pull_request_review" => p.review.as_ref().and_then(|r| r.user.as_ref()),
        "pull_request" => pr.and_then(|p| p.merged_by.as_ref()).or(p.sender.as_ref()),
        _ => p.sender.as_ref(),
    }
    .and_then(|u| u.login.clone());
    let fact = ForgeEventReceived {
        source: SOURCE.into(),
        delivery_id: Some(delivery.to_owned()),
        event: event.to_owned(),
        action: p.action.clone(),
        repository: repository.clone(),
        pr_number: pr.and_then(|p| p.number).or(check_pr),
        pr_url: pr.and_then(|p| p.html_url.clone()),
        head_branch,
        head_sha,
        merged: pr.and_then(|p| p.merged),
        merge_commit: pr
            .filter(|p| p.merged == Some(true))
            .and_then(|p| p.merge_commit_sha.clone()),
        conclusion,
        actor,
    };
    Ok(Outcome::Record(vec![Accepted {
        fact: Fact::ForgeEventReceived(fact),
        tenant: DEFAULT_TENANT.to_owned(),
        subject: repository,
        occurred_at: event_time(None),
        natural_id: Some(natural),
    }]))
}
