//! Read models and the queries the API serves.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::plan::{Param, time};
use crate::sql::Stmt;
use crate::store::{RowExt, Store};
use crate::{Error, Result};

/// Largest page the list queries return.
pub const MAX_PAGE: usize = 1000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: usize = 50;

/// A fix attempt (`failure_fixes`): one per `fix_failure` task, keyed by the task id.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Fix {
    /// The task id.
    pub id: Uuid,
    /// The failure (its CiRunFailed event id).
    pub failure_id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Repository.
    pub repository: String,
    /// The failing branch.
    pub branch: Option<String>,
    /// The failing commit.
    pub commit_sha: Option<String>,
    /// The failure's class.
    pub failure_type: Option<String>,
    /// The failure's signature.
    pub signature: Option<String>,
    /// `queued`, `in_progress`, `validated`, `validation_failed`, `no_fix`, `not_fixable`,
    /// `failed`, `cancelled`, `pr_opened`, `merged` or `closed`.
    pub status: String,
    /// Why the fix stopped (no fix found, cancelled), when it did.
    pub status_reason: Option<String>,
    /// The strategy of the latest candidate.
    pub strategy: Option<String>,
    /// The latest candidate.
    pub candidate_id: Option<String>,
    /// Files the latest candidate changes.
    pub files_changed: Option<Value>,
    /// Confidence in the validated fix.
    pub confidence: Option<f64>,
    /// The latest candidate's diff (not filled by [`Store::list_fixes`]).
    pub diff: Option<String>,
    /// Validation evidence: `passed`, `candidate_id`, `decision_id`, `steps` (not filled by
    /// [`Store::list_fixes`]).
    pub validation: Option<Value>,
    /// The pushed fix branch.
    pub fix_branch: Option<String>,
    /// The pushed fix commit.
    pub fix_commit: Option<String>,
    /// The pull request.
    pub pr_url: Option<String>,
    /// The pull request's number.
    pub pr_number: Option<i64>,
    /// The recorded outcome: merged and CI stayed green.
    pub fix_success: Option<bool>,
    /// Seconds from the failure to the PR.
    pub time_to_pr_seconds: Option<f64>,
    /// Seconds from the failure to the merge.
    pub time_to_fix_seconds: Option<f64>,
    /// When the task was queued (event time).
    pub created_at: DateTime<Utc>,
    /// Event time of the latest fact applied.
    pub updated_at: DateTime<Utc>,
}

impl Fix {
    /// The cursor that continues a listing after this fix.
    pub fn cursor(&self) -> FixCursor {
        FixCursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

/// Position in a fix listing (newest first): continue after this fix. Its text form
/// (`Display`/`FromStr`) is URL-safe: `<created_at µs>_<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixCursor {
    /// The last listed fix's `created_at`.
    pub created_at: DateTime<Utc>,
    /// The last listed fix's id.
    pub id: Uuid,
}

impl std::fmt::Display for FixCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}_{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        )
    }
}

impl std::str::FromStr for FixCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::InvalidCursor(s.to_owned());
        let (micros, id) = s.split_once('_').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        Ok(FixCursor {
            created_at: DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?,
            id: Uuid::parse_str(id).map_err(|_| invalid())?,
        })
    }
}

/// Which fixes [`Store::list_fixes`] returns. Unset fields match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixFilter {
    /// Only this repository.
    pub repository: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this failure type.
    pub failure_type: Option<String>,
    /// At most this many (clamped to 1..=1000; default 50).
    pub limit: usize,
    /// Continue after this fix.
    pub after: Option<FixCursor>,
    /// Only fixes queued at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only fixes queued before this time.
    pub until: Option<DateTime<Utc>>,
}

impl Default for FixFilter {
    fn default() -> Self {
        FixFilter {
            repository: None,
            status: None,
            failure_type: None,
            limit: DEFAULT_PAGE,
            after: None,
            since: None,
            until: None,
        }
    }
}

/// An agent (`agents`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Agent {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `active`, `paused`, `failed` or `stopped`.
    pub status: String,
    /// Why the status last changed.
    pub status_reason: Option<String>,
    /// Task types it can run.
    pub capabilities: Vec<String>,
    /// Tasks it runs at once.
    pub max_concurrency: i64,
    /// Share of its last 50 finished tasks that succeeded (partial counts half); 1.0 before
    /// any.
    pub health_score: f64,
    /// Registration (event time).
    pub created_at: DateTime<Utc>,
    /// Event time of the latest fact applied.
    pub updated_at: DateTime<Utc>,
}

/// A task (`agent_tasks`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Task {
    /// Id.
    pub id: Uuid,
    /// The agent it is for.
    pub agent_id: Uuid,
    /// Kind (`fix_failure`, …).
    pub task_type: String,
    /// `queued`, `running`, `completed`, `partial`, `failed` or `cancelled`.
    pub status: String,
    /// Higher runs first.
    pub priority: i64,
    /// Input.
    pub payload: Value,
    /// Output: outcome, duration, artifacts and metrics (or the failed attempt's details).
    pub result: Option<Value>,
    /// The latest error or cancellation reason.
    pub error_message: Option<String>,
    /// Attempts started.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Deadline of one attempt.
    pub timeout_seconds: i64,
    /// Tenant.
    pub tenant: String,
    /// Repository (or other subject).
    pub repository: String,
    /// The chain it belongs to.
    pub correlation_id: Uuid,
    /// The allowing decision.
    pub decision_id: Option<Uuid>,
    /// The failure it is about.
    pub failure_id: Option<Uuid>,
    /// Queued (event time).
    pub created_at: DateTime<Utc>,
    /// First started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Event time of the latest fact applied.
    pub updated_at: DateTime<Utc>,
}

/// A failed CI run (`failures`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Failure {
    /// The CiRunFailed event id.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Repository.
    pub repository: String,
    /// Branch.
    pub branch: String,
    /// Commit.
    pub commit_sha: String,
    /// The failing command.
    pub command: Option<String>,
    /// Where the report came from.
    pub source: String,
    /// Link to the run.
    pub run_url: Option<String>,
    /// Failed job.
    pub job_name: Option<String>,
    /// Commit author.
    pub author: Option<String>,
    /// Sentinel's own commit or branch.
    pub sentinel_authored: bool,
    /// Class.
    pub failure_type: Option<String>,
    /// Confidence in the class.
    pub classification_confidence: Option<f64>,
    /// pattern, llm or none.
    pub classification_method: Option<String>,
    /// Root-cause fingerprint.
    pub signature: Option<String>,
    /// Reporting tool.
    pub tool: Option<String>,
    /// When it was classified (event time).
    pub classified_at: Option<DateTime<Utc>>,
    /// When the run failed (event time).
    pub occurred_at: DateTime<Utc>,
    /// When Sentinel recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// Which failures [`Store::list_failures`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureFilter {
    /// Only this repository.
    pub repository: Option<String>,
    /// Only this failure type.
    pub failure_type: Option<String>,
    /// At most this many (clamped to 1..=1000; default 50).
    pub limit: usize,
    /// Continue after this failure ([`Failure::cursor`]).
    pub after: Option<Cursor>,
    /// Only failures that occurred at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only failures that occurred before this time.
    pub until: Option<DateTime<Utc>>,
}

impl Default for FailureFilter {
    fn default() -> Self {
        FailureFilter {
            repository: None,
            failure_type: None,
            limit: DEFAULT_PAGE,
            after: None,
            since: None,
            until: None,
        }
    }
}

impl Failure {
    /// The cursor that continues a listing after this failure.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.occurred_at,
            id: self.id,
        }
    }
}

/// A keyset pagination cursor of any listing (time, then id, descending). The same text
/// form as [`FixCursor`].
pub type Cursor = FixCursor;

/// A policy decision (`policy_decisions`): a dispatch decision before work starts, or an
/// action decision once a validated fix exists.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Decision {
    /// The decision's event id.
    pub id: Uuid,
    /// `dispatch` or `action`.
    pub kind: String,
    /// Tenant.
    pub tenant: String,
    /// Repository.
    pub repository: String,
    /// The failure decided about.
    pub failure_id: Option<Uuid>,
    /// The classification it used.
    pub classification_id: Option<Uuid>,
    /// The task (action decisions).
    pub task_id: Option<Uuid>,
    /// The candidate (action decisions).
    pub candidate_id: Option<String>,
    /// `dispatch`, `rate_limited`, `cooldown`, `blast_radius`, `not_fixable`, `auto_merge`,
    /// `open_pr`, `require_review` or `reject`.
    pub decision: String,
    /// Machine-readable reason.
    pub reason_code: String,
    /// Human-readable reason.
    pub reason: String,
    /// Content hash of the policy that decided.
    pub policy_version: String,
    /// The failure's class.
    pub failure_type: Option<String>,
    /// Confidence the decision used.
    pub confidence: Option<f64>,
    /// The chain it belongs to.
    pub correlation_id: Uuid,
    /// Event time of the decision.
    pub decided_at: DateTime<Utc>,
}

impl Decision {
    /// The cursor that continues a listing after this decision.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.decided_at,
            id: self.id,
        }
    }
}

/// Which decisions [`Store::list_decisions`] returns. Unset fields match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionFilter {
    /// Only this repository.
    pub repository: Option<String>,
    /// Only `dispatch` or only `action` decisions.
    pub kind: Option<String>,
    /// Only this decision (`dispatch`, `rate_limited`, …).
    pub decision: Option<String>,
    /// Only this failure type.
    pub failure_type: Option<String>,
    /// At most this many (clamped to 1..=1000; default 50).
    pub limit: usize,
    /// Continue after this decision.
    pub after: Option<Cursor>,
    /// Only decisions taken at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only decisions taken before this time.
    pub until: Option<DateTime<Utc>>,
}

impl Default for DecisionFilter {
    fn default() -> Self {
        DecisionFilter {
            repository: None,
            kind: None,
            decision: None,
            failure_type: None,
            limit: DEFAULT_PAGE,
            after: None,
            since: None,
            until: None,
        }
    }
}

fn decision_from_row(r: &dyn RowExt) -> Result<Decision> {
    Ok(Decision {
        id: id(r, "id")?,
        kind: r.text("kind")?,
        tenant: r.text("tenant")?,
        repository: r.text("repository")?,
        failure_id: opt_id(r, "failure_id")?,
        classification_id: opt_id(r, "classification_id")?,
        task_id: opt_id(r, "task_id")?,
        candidate_id: r.opt_text("candidate_id")?,
        decision: r.text("decision")?,
        reason_code: r.text("reason_code")?,
        reason: r.text("reason")?,
        policy_version: r.text("policy_version")?,
        failure_type: r.opt_text("failure_type")?,
        confidence: r.opt_float("confidence")?,
        correlation_id: id(r, "correlation_id")?,
        decided_at: r.time("decided_at")?,
    })
}

fn opt_time(t: Option<DateTime<Utc>>) -> Param {
    Param::Text(t.map(time))
}

fn id(r: &dyn RowExt, col: &str) -> Result<Uuid> {
    let s = r.text(col)?;
    Uuid::parse_str(&s).map_err(|e| Error::CorruptRow(format!("{col} {s:?}: {e}")))
}

fn opt_id(r: &dyn RowExt, col: &str) -> Result<Option<Uuid>> {
    r.opt_text(col)?
        .map(|s| Uuid::parse_str(&s).map_err(|e| Error::CorruptRow(format!("{col} {s:?}: {e}"))))
        .transpose()
}

fn opt_json(r: &dyn RowExt, col: &str) -> Result<Option<Value>> {
    r.opt_text(col)?
        .map(|s| serde_json::from_str(&s).map_err(|e| Error::CorruptRow(format!("{col}: {e}"))))
        .transpose()
}

fn json(r: &dyn RowExt, col: &str) -> Result<Value> {
    opt_json(r, col)?.ok_or_else(|| Error::CorruptRow(format!("{col} is null")))
}

fn fix_from_row(r: &dyn RowExt) -> Result<Fix> {
    Ok(Fix {
        id: id(r, "id")?,
        failure_id: id(r, "failure_id")?,
        tenant: r.text("tenant")?,
        repository: r.text("repository")?,
        branch: r.opt_text("branch")?,
        commit_sha: r.opt_text("commit_sha")?,
        failure_type: r.opt_text("failure_type")?,
        signature: r.opt_text("signature")?,
        status: r.text("status")?,
        status_reason: r.opt_text("status_reason")?,
        strategy: r.opt_text("strategy")?,
        candidate_id: r.opt_text("candidate_id")?,
        files_changed: opt_json(r, "files_changed")?,
        confidence: r.opt_float("confidence")?,
        diff: r.opt_text("diff")?,
        validation: opt_json(r, "validation")?,
        fix_branch: r.opt_text("fix_branch")?,
        fix_commit: r.opt_text("fix_commit")?,
        pr_url: r.opt_text("pr_url")?,
        pr_number: r.opt_int("pr_number")?,
        fix_success: r.opt_bool("fix_success")?,
        time_to_pr_seconds: r.opt_float("time_to_pr_seconds")?,
        time_to_fix_seconds: r.opt_float("time_to_fix_seconds")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn agent_from_row(r: &dyn RowExt) -> Result<Agent> {
    let capabilities = serde_json::from_value(json(r, "capabilities")?)
        .map_err(|e| Error::CorruptRow(format!("capabilities: {e}")))?;
    Ok(Agent {
        id: id(r, "id")?,
        name: r.text("name")?,
        version: r.text("version")?,
        status: r.text("status")?,
        status_reason: r.opt_text("status_reason")?,
        capabilities,
        max_concurrency: r.int("max_concurrency")?,
        health_score: r.float("health_score")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn task_from_row(r: &dyn RowExt) -> Result<Task> {
    Ok(Task {
        id: id(r, "id")?,
        agent_id: id(r, "agent_id")?,
        task_type: r.text("task_type")?,
        status: r.text("status")?,
        priority: r.int("priority")?,
        payload: json(r, "payload")?,
        result: opt_json(r, "result")?,
        error_message: r.opt_text("error_message")?,
        attempts: r.int("attempts")?,
        max_attempts: r.int("max_attempts")?,
        timeout_seconds: r.int("timeout_seconds")?,
        tenant: r.text("tenant")?,
        repository: r.text("repository")?,
        correlation_id: id(r, "correlation_id")?,
        decision_id: opt_id(r, "decision_id")?,
        failure_id: opt_id(r, "failure_id")?,
        created_at: r.time("created_at")?,
        started_at: r.opt_time("started_at")?,
        completed_at: r.opt_time("completed_at")?,
        updated_at: r.time("updated_at")?,
    })
}

fn failure_from_row(r: &dyn RowExt) -> Result<Failure> {
    Ok(Failure {
        id: id(r, "id")?,
        tenant: r.text("tenant")?,
        repository: r.text("repository")?,
        branch: r.text("branch")?,
        commit_sha: r.text("commit_sha")?,
        command: r.opt_text("command")?,
        source: r.text("source")?,
        run_url: r.opt_text("run_url")?,
        job_name: r.opt_text("job_name")?,
        author: r.opt_text("author")?,
        sentinel_authored: r.boolean("sentinel_authored")?,
        failure_type: r.opt_text("failure_type")?,
        classification_confidence: r.opt_float("classification_confidence")?,
        classification_method: r.opt_text("classification_method")?,
        signature: r.opt_text("signature")?,
        tool: r.opt_text("tool")?,
        classified_at: r.opt_time("classified_at")?,
        occurred_at: r.time("occurred_at")?,
        recorded_at: r.time("recorded_at")?,
    })
}

fn opt(s: &Option<String>) -> Param {
    Param::Text(s.clone())
}

fn page(limit: usize) -> Param {
    Param::Int(Some(i64::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(50)))
}

fn uuid(u: Uuid) -> Param {
    Param::Text(Some(u.to_string()))
}

impl Store {
    /// Fixes matching `filter`, newest first (`created_at`, then id, descending). `diff`
    /// and `validation` are left out; [`Store::get_fix`] has them. Continue with
    /// `after = Some(last.cursor())`.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn list_fixes(&self, filter: &FixFilter) -> Result<Vec<Fix>> {
        let params = vec![
            opt(&filter.repository),
            opt(&filter.status),
            opt(&filter.failure_type),
            Param::Text(filter.after.map(|c| time(c.created_at))),
            Param::Text(filter.after.map(|c| c.id.to_string())),
            page(filter.limit),
            opt_time(filter.since),
            opt_time(filter.until),
        ];
        self.fetch_all(Stmt::ListFixes, &params, fix_from_row).await
    }

    /// One fix, with its diff and validation evidence.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn get_fix(&self, id: Uuid) -> Result<Option<Fix>> {
        self.fetch_optional(Stmt::GetFix, &[uuid(id)], fix_from_row)
            .await
    }

    /// Every agent, by name.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn list_agents(&self) -> Result<Vec<Agent>> {
        self.fetch_all(Stmt::ListAgents, &[], agent_from_row).await
    }

    /// One agent.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn get_agent(&self, id: Uuid) -> Result<Option<Agent>> {
        self.fetch_optional(Stmt::GetAgent, &[uuid(id)], agent_from_row)
            .await
    }

    /// One task.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn get_task(&self, id: Uuid) -> Result<Option<Task>> {
        self.fetch_optional(Stmt::GetTask, &[uuid(id)], task_from_row)
            .await
    }

    /// Failures matching `filter`, newest first.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn list_failures(&self, filter: &FailureFilter) -> Result<Vec<Failure>> {
        let params = vec![
            opt(&filter.repository),
            opt(&filter.failure_type),
            page(filter.limit),
            Param::Text(filter.after.map(|c| time(c.created_at))),
            Param::Text(filter.after.map(|c| c.id.to_string())),
            opt_time(filter.since),
            opt_time(filter.until),
        ];
        self.fetch_all(Stmt::ListFailures, &params, failure_from_row)
            .await
    }

    /// Policy decisions matching `filter`, newest first (`decided_at`, then id,
    /// descending). Continue with `after = Some(last.cursor())`.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn list_decisions(&self, filter: &DecisionFilter) -> Result<Vec<Decision>> {
        let params = vec![
            opt(&filter.repository),
            opt(&filter.kind),
            opt(&filter.decision),
            opt(&filter.failure_type),
            Param::Text(filter.after.map(|c| time(c.created_at))),
            Param::Text(filter.after.map(|c| c.id.to_string())),
            opt_time(filter.since),
            opt_time(filter.until),
            page(filter.limit),
        ];
        self.fetch_all(Stmt::ListDecisions, &params, decision_from_row)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = FixCursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("ts"),
            id: Uuid::from_u128(0xabc),
        };
        let s = c.to_string();
        assert!(
            s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'),
            "{s}"
        );
        assert_eq!(s.parse::<FixCursor>().expect("parse"), c);
        for bad in [
            "",
            "x",
            "1_notauuid",
            "abc_00000000000000000000000000000abc",
        ] {
            assert!(
                matches!(bad.parse::<FixCursor>(), Err(Error::InvalidCursor(_))),
                "{bad}"
            );
        }
    }
}
