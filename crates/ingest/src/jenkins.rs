//! Jenkins Notification-plugin payloads (pure: no I/O). Shape from the plugin's
//! documentation: `{name, url, build: {full_url, number, phase, status, url, scm: {url,
//! branch, commit, culprits}, log, …}}`.
//!
//! Only `phase = FINALIZED` with `status = FAILURE` becomes a `CiRunFailed` (the plugin
//! also sends QUEUED, STARTED and COMPLETED; COMPLETED and FINALIZED both carry the
//! result, so taking one avoids recording each failure twice). The log is used when the
//! notification carries one (the plugin's "Log lines" setting).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::BotIdentity;
use crate::model::{Accepted, Outcome, ParseError, Problems, event_time, stored_log};
use sentinel_events::facts::CiRunFailed;

/// The source name Jenkins facts carry.
pub const SOURCE: &str = "jenkins";

#[derive(Debug, Deserialize)]
struct Scm {
    url: Option<String>,
    branch: Option<String>,
    commit: Option<String>,
    culprits: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct Build {
    full_url: Option<String>,
    number: Option<i64>,
    phase: Option<String>,
    status: Option<String>,
    timestamp: Option<i64>,
    duration: Option<i64>,
    scm: Option<Scm>,
    log: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Payload {
    name: Option<String>,
    build: Option<Build>,
}

/// Parses one notification.
///
/// # Errors
///
/// [`ParseError::Malformed`] for a body that is not the documented JSON shape,
/// [`ParseError::Invalid`] when a failure lacks the fields a fact needs.
pub fn parse(body: &[u8], bot: &BotIdentity) -> Result<Outcome, ParseError> {
    let p: Payload = serde_json::from_slice(body)?;
    let b = p
        .build
        .as_ref()
        .ok_or_else(|| ParseError::Malformed("build missing".into()))?;
    let phase = b.phase.as_deref().unwrap_or("none");
    let status = b.status.as_deref().unwrap_or("none");
    if phase != "FINALIZED" {
        return Ok(Outcome::Ignored(format!(
            "phase {phase:?}, only FINALIZED is used"
        )));
    }
    if status != "FAILURE" {
        return Ok(Outcome::Ignored(format!("status {status:?}, not FAILURE")));
    }
    let scm = b.scm.as_ref();
    let mut problems = Problems::default();
    let full_url = problems.required("build.full_url", b.full_url.as_deref());
    let number = b.number.unwrap_or_else(|| {
        problems.0.push("build.number: required".into());
        0
    });
    let repository = problems.required("build.scm.url", scm.and_then(|s| s.url.as_deref()));
    let raw_branch = problems.required("build.scm.branch", scm.and_then(|s| s.branch.as_deref()));
    let commit = problems.commit("build.scm.commit", scm.and_then(|s| s.commit.as_deref()));
    problems.finish()?;
    // The git plugin reports remote-tracking names (`origin/main`).
    let branch = raw_branch
        .strip_prefix("origin/")
        .unwrap_or(&raw_branch)
        .to_owned();
    let sentinel_authored = bot.is_sentinel(&branch, None, None)
        || scm
            .and_then(|s| s.culprits.as_ref())
            .is_some_and(|c| c.iter().any(|c| bot.is_sentinel("", Some(c), Some(c))));
    let (log, log_size_bytes) = stored_log(b.log.as_deref().unwrap_or(""));
    let finished = b
        .timestamp
        .map(|t| t.saturating_add(b.duration.unwrap_or(0).max(0)))
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    // Dedupe on (build.full_url, build.number, phase).
    let natural = format!("{SOURCE}/{full_url}#{number}/{phase}");
    let fact = CiRunFailed {
        source: SOURCE.into(),
        delivery_id: Some(natural.clone()),
        sentinel_authored,
        repository,
        branch,
        commit,
        command: None,
        log,
        log_size_bytes,
        run_url: Some(full_url),
        job_name: p.name.clone(),
        author: None,
    };
    Ok(Outcome::Record(vec![Accepted::failure(
        fact,
        event_time(finished),
        natural,
    )]))
}
