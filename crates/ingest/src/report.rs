//! Sentinel's own failure report: the body of `POST /webhooks/generic` and the JSON value of
//! records on `sentinel.ci.failures`. Its contract is published as a JSON Schema in
//! `schemas/ci_failure_report.v1.schema.json` (a test keeps the two in step).

use chrono::{DateTime, Utc};
use sentinel_events::facts::CiRunFailed;
use sentinel_events::{DEFAULT_TENANT, Fact};
use serde::Deserialize;

use crate::config::BotIdentity;
use crate::model::{
    Accepted, MAX_CLOCK_SKEW_MINUTES, MAX_NATURAL_ID_LEN, ParseError, Problems, author, stored_log,
};

/// The published JSON Schema of the report.
pub const JSON_SCHEMA: &str = include_str!("../../../schemas/ci_failure_report.v1.schema.json");

/// The failure report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureReport {
    /// Repository: a local path or a git URL.
    pub repository: Option<String>,
    /// Branch the run was on.
    pub branch: Option<String>,
    /// Commit the run was on (hexadecimal).
    pub commit: Option<String>,
    /// The command that failed.
    pub command: Option<String>,
    /// The log text (may be empty).
    pub log: Option<String>,
    /// Link to the run.
    pub run_url: Option<String>,
    /// RFC 3339 event time (default: now).
    pub occurred_at: Option<String>,
    /// Tenant (default: `default`).
    pub tenant: Option<String>,
    /// Name of the failed job or step.
    pub job_name: Option<String>,
    /// Commit author's name.
    pub author: Option<String>,
    /// Commit author's email.
    pub author_email: Option<String>,
    /// The producer's unique id of this report: a retry with the same id appends nothing new.
    pub delivery_id: Option<String>,
}

/// Parses report JSON.
///
/// # Errors
///
/// [`ParseError::Malformed`] for bad JSON, [`ParseError::Invalid`] for unknown fields or
/// wrong types.
pub fn parse_json(body: &[u8]) -> Result<FailureReport, ParseError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ParseError::Invalid(vec![e.to_string()])
        } else {
            ParseError::Malformed(e.to_string())
        }
    })
}

impl FailureReport {
    /// Validates the report into a failure fact. `source` is `generic` or `kafka`;
    /// `fallback_id` is the natural id when the report has no `delivery_id` (the
    /// `Idempotency-Key` header, the record's position).
    ///
    /// # Errors
    ///
    /// [`ParseError::Invalid`] naming every bad field.
    pub fn validate(
        self,
        source: &str,
        fallback_id: Option<&str>,
        bot: &BotIdentity,
    ) -> Result<Accepted, ParseError> {
        let mut problems = Problems::default();
        let repository = problems.required("repository", self.repository.as_deref());
        let branch = problems.required("branch", self.branch.as_deref());
        let commit = problems.commit("commit", self.commit.as_deref());
        let command = problems.required("command", self.command.as_deref());
        if self.log.is_none() {
            problems.0.push("log: required".into());
        }
        let occurred_at = match self.occurred_at.as_deref() {
            None => Utc::now(),
            Some(t) => match DateTime::parse_from_rfc3339(t) {
                // Event time drives the policy's windows: a report from the future would
                // move them, so only a little clock skew is tolerated.
                Ok(t)
                    if t.with_timezone(&Utc)
                        > Utc::now() + chrono::Duration::minutes(MAX_CLOCK_SKEW_MINUTES) =>
                {
                    problems.0.push(format!(
                        "occurred_at: more than {MAX_CLOCK_SKEW_MINUTES} minutes in the future"
                    ));
                    Utc::now()
                }
                Ok(t) => t.with_timezone(&Utc),
                Err(e) => {
                    problems.0.push(format!("occurred_at: not RFC 3339 ({e})"));
                    Utc::now()
                }
            },
        };
        let tenant = self.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
        if tenant.is_empty() || tenant.len() > 128 || tenant.contains('/') {
            problems
                .0
                .push("tenant: 1 to 128 characters, no '/'".into());
        }
        if let Some(d) = &self.delivery_id
            && (d.trim().is_empty() || d.len() > MAX_NATURAL_ID_LEN)
        {
            problems
                .0
                .push(format!("delivery_id: 1 to {MAX_NATURAL_ID_LEN} characters"));
        }
        problems.finish()?;
        let (log, log_size_bytes) = stored_log(self.log.as_deref().unwrap_or(""));
        let sentinel_authored = bot.is_sentinel(
            &branch,
            self.author.as_deref(),
            self.author_email.as_deref(),
        ) || self
            .author
            .as_deref()
            .is_some_and(|a| bot.is_sentinel("", None, Some(a)));
        let natural = self
            .delivery_id
            .as_deref()
            .or(fallback_id)
            .map(|n| format!("{source}/{n}"));
        let fact = CiRunFailed {
            source: source.into(),
            delivery_id: natural.clone(),
            sentinel_authored,
            repository,
            branch,
            commit,
            command: Some(command),
            log,
            log_size_bytes,
            run_url: self.run_url,
            job_name: self.job_name,
            author: author(self.author.as_deref(), self.author_email.as_deref()),
        };
        Ok(Accepted {
            subject: fact.repository.clone(),
            fact: Fact::CiRunFailed(fact),
            tenant,
            occurred_at,
            natural_id: natural,
        })
    }
}
