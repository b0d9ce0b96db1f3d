//! Pure translation of facts into projection writes: no I/O, no clock.
//!
//! [`plan`] turns one event into the statements (and their parameters) that apply it; the
//! store runs them in order inside the batch's transaction. Every timestamp written comes
//! from the event's `occurred_at`, so replaying the log produces identical rows.

use chrono::{DateTime, SecondsFormat, Utc};
use sentinel_events::facts::*;
use sentinel_events::{Event, Fact};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::sql::Stmt;

/// A statement parameter. Everything is bound as one of these four types so that one
/// parameter list serves both backends (UUIDs, times and JSON travel as text).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    /// Text (also UUIDs, RFC 3339 times and JSON documents).
    Text(Option<String>),
    /// A 64-bit integer.
    Int(Option<i64>),
    /// A double.
    Float(Option<f64>),
    /// A boolean.
    Bool(Option<bool>),
}

/// One statement to run with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Op {
    pub stmt: Stmt,
    pub params: Vec<Param>,
}

/// Why a decoded event cannot be projected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is not a UUID: {value:?}")]
pub(crate) struct InvalidFact {
    /// The field.
    pub field: &'static str,
    /// Its value.
    pub value: String,
}

/// Formats a time the way the projections store it: RFC 3339, UTC, microseconds, `Z`.
/// Fixed width, so SQLite's text comparison orders times correctly.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn text(s: impl Into<String>) -> Param {
    Param::Text(Some(s.into()))
}

fn opt_text(s: Option<&str>) -> Param {
    Param::Text(s.map(str::to_owned))
}

fn uuid(u: Uuid) -> Param {
    text(u.to_string())
}

fn opt_uuid(u: Option<Uuid>) -> Param {
    Param::Text(u.map(|u| u.to_string()))
}

fn at(t: DateTime<Utc>) -> Param {
    text(time(t))
}

fn json(v: &Value) -> Param {
    text(v.to_string())
}

fn int(i: impl Into<i64>) -> Param {
    Param::Int(Some(i.into()))
}

fn float(f: f64) -> Param {
    Param::Float(Some(f))
}

fn opt_float(f: Option<f64>) -> Param {
    Param::Float(f)
}

fn boolean(b: bool) -> Param {
    Param::Bool(Some(b))
}

fn parse_id(field: &'static str, s: &str) -> Result<Uuid, InvalidFact> {
    Uuid::parse_str(s).map_err(|_| InvalidFact {
        field,
        value: s.to_owned(),
    })
}

fn parse_opt_id(field: &'static str, s: Option<&str>) -> Result<Option<Uuid>, InvalidFact> {
    s.filter(|s| !s.is_empty())
        .map(|s| parse_id(field, s))
        .transpose()
}

fn op(stmt: Stmt, params: Vec<Param>) -> Op {
    Op { stmt, params }
}

/// The task type whose tasks are fix attempts (one `failure_fixes` row each).
pub(crate) const FIX_TASK_TYPE: &str = "fix_failure";

/// The writes that apply `event`; empty for facts the projections do not use.
///
/// # Errors
///
/// [`InvalidFact`] when an id the tables key on is not a UUID: the event is skipped.
pub(crate) fn plan(event: &Event) -> Result<Vec<Op>, InvalidFact> {
    let e = event;
    let ts = e.occurred_at;
    Ok(match &e.fact {
        Fact::CiRunFailed(f) => {
            let repository = if e.subject.is_empty() {
                &f.repository
            } else {
                &e.subject
            };
            vec![op(
                Stmt::InsertFailure,
                vec![
                    uuid(e.event_id),
                    text(&e.tenant),
                    text(repository),
                    text(&f.branch),
                    text(&f.commit),
                    opt_text(f.command.as_deref()),
                    text(&f.source),
                    opt_text(f.run_url.as_deref()),
                    opt_text(f.job_name.as_deref()),
                    opt_text(f.author.as_deref()),
                    boolean(f.sentinel_authored),
                    at(ts),
                    at(e.recorded_at),
                ],
            )]
        }
        Fact::FailureClassified(f) => {
            let failure = parse_id("failure_event_id", &f.failure_event_id)?;
            vec![
                op(
                    Stmt::ClassifyFailure,
                    vec![
                        uuid(failure),
                        text(f.failure_type.as_str()),
                        float(f.confidence),
                        text(&f.method),
                        text(&f.signature),
                        opt_text(f.tool.as_deref()),
                        at(ts),
                    ],
                ),
                op(
                    Stmt::ClassifyFixes,
                    vec![
                        uuid(failure),
                        text(f.failure_type.as_str()),
                        text(&f.signature),
                        at(ts),
                    ],
                ),
            ]
        }
        Fact::DispatchDecided(f) => {
            let failure = parse_id("failure_event_id", &f.failure_event_id)?;
            let classification =
                parse_opt_id("classification_event_id", Some(&f.classification_event_id))?;
            vec![decision(
                e,
                "dispatch",
                Some(failure),
                classification,
                None,
                None,
                f.decision.as_str(),
                &f.reason_code,
                &f.reason,
                &f.policy_version,
                Some(f.failure_type.as_str()),
                Some(f.confidence),
            )]
        }
        Fact::ActionDecided(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            vec![decision(
                e,
                "action",
                Some(e.correlation_id),
                None,
                Some(task),
                Some(&f.candidate_id),
                f.decision.as_str(),
                &f.reason_code,
                &f.reason,
                &f.policy_version,
                None,
                Some(f.confidence),
            )]
        }
        Fact::AgentRegistered(f) => {
            let agent = parse_id("agent_id", &f.agent_id)?;
            vec![op(
                Stmt::UpsertAgent,
                vec![
                    uuid(agent),
                    text(&f.name),
                    text(&f.version),
                    json(&json!(f.capabilities)),
                    int(f.max_concurrency),
                    at(ts),
                ],
            )]
        }
        Fact::AgentStatusChanged(f) => {
            let agent = parse_id("agent_id", &f.agent_id)?;
            vec![op(
                Stmt::AgentStatus,
                vec![
                    uuid(agent),
                    text(f.status.as_str()),
                    opt_text(f.reason.as_deref()),
                    at(ts),
                ],
            )]
        }
        Fact::TaskQueued(f) => task_queued(e, f)?,
        Fact::TaskStarted(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            vec![
                op(Stmt::TaskStarted, vec![uuid(task), int(f.attempt), at(ts)]),
                op(Stmt::FixInProgress, vec![uuid(task), at(ts)]),
            ]
        }
        Fact::TaskCompleted(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            let agent = parse_id("agent_id", &f.agent_id)?;
            let result = json!({
                "outcome": f.outcome.as_str(),
                "duration_ms": f.duration_ms,
                "artifacts": f.artifacts,
                "metrics": f.metrics,
            });
            vec![
                op(
                    Stmt::TaskCompleted,
                    vec![uuid(task), text(f.outcome.as_str()), json(&result), at(ts)],
                ),
                op(Stmt::AgentHealth, vec![uuid(agent), at(ts)]),
            ]
        }
        Fact::TaskFailed(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            let agent = parse_id("agent_id", &f.agent_id)?;
            let result = json!({
                "outcome": "failed",
                "attempt": f.attempt,
                "retryable": f.retryable,
                "duration_ms": f.duration_ms,
            });
            vec![
                op(
                    Stmt::TaskFailed,
                    vec![
                        uuid(task),
                        int(f.attempt),
                        text(&f.error),
                        json(&result),
                        at(ts),
                    ],
                ),
                op(
                    Stmt::FixTaskFailed,
                    vec![uuid(task), int(f.attempt), at(ts)],
                ),
                op(Stmt::AgentHealth, vec![uuid(agent), at(ts)]),
            ]
        }
        Fact::TaskCancelled(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            vec![
                op(
                    Stmt::TaskCancelled,
                    vec![uuid(task), text(&f.reason), at(ts)],
                ),
                op(
                    Stmt::FixTaskCancelled,
                    vec![uuid(task), text(&f.reason), at(ts)],
                ),
            ]
        }
        Fact::FixCandidateProposed(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            vec![op(
                Stmt::FixCandidate,
                vec![
                    uuid(task),
                    text(&f.candidate_id),
                    text(&f.strategy),
                    text(&f.diff),
                    json(&json!(f.files_changed)),
                    at(ts),
                ],
            )]
        }
        Fact::FixValidated(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            let validation = json!({
                "passed": f.passed,
                "candidate_id": f.candidate_id,
                "decision_id": f.decision_id,
                "steps": f.steps,
            });
            let status = if f.passed {
                "validated"
            } else {
                "validation_failed"
            };
            vec![op(
                Stmt::FixValidated,
                vec![
                    uuid(task),
                    text(&f.candidate_id),
                    float(f.confidence),
                    json(&validation),
                    text(status),
                    at(ts),
                ],
            )]
        }
        Fact::FixNotFound(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            vec![op(
                Stmt::FixNotFound,
                vec![uuid(task), text(f.status.as_str()), text(&f.reason), at(ts)],
            )]
        }
        Fact::BranchPushed(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            vec![op(
                Stmt::FixBranch,
                vec![uuid(task), text(&f.branch), text(&f.commit), at(ts)],
            )]
        }
        Fact::PullRequestOpened(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            let decision = parse_opt_id("decision_id", Some(&f.decision_id))?;
            vec![
                op(
                    Stmt::InsertPullRequest,
                    vec![
                        text(&f.url),
                        uuid(task),
                        text(&f.repository),
                        text(&f.forge),
                        int(f.number),
                        text(&f.branch),
                        text(&f.base),
                        text(&f.title),
                        boolean(f.draft),
                        opt_uuid(decision),
                        at(ts),
                    ],
                ),
                op(
                    Stmt::FixPrOpened,
                    vec![
                        uuid(task),
                        text(&f.url),
                        int(f.number),
                        text(&f.branch),
                        at(ts),
                    ],
                ),
            ]
        }
        Fact::PullRequestChecksCompleted(f) => {
            vec![op(
                Stmt::PrChecks,
                vec![text(&f.url), text(&f.conclusion), at(ts)],
            )]
        }
        Fact::PullRequestMerged(f) => vec![
            op(
                Stmt::PrMerged,
                vec![
                    text(&f.url),
                    opt_text(f.merged_by.as_deref()),
                    opt_text(f.merge_commit.as_deref()),
                    at(ts),
                ],
            ),
            op(Stmt::FixMerged, vec![text(&f.url), at(ts)]),
        ],
        Fact::PullRequestClosed(f) => vec![
            op(
                Stmt::PrClosed,
                vec![text(&f.url), opt_text(f.closed_by.as_deref()), at(ts)],
            ),
            op(Stmt::FixClosed, vec![text(&f.url), at(ts)]),
        ],
        Fact::FixOutcomeRecorded(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            vec![op(
                Stmt::FixOutcome,
                vec![
                    uuid(task),
                    boolean(f.success),
                    opt_float(f.time_to_pr_seconds),
                    opt_float(f.time_to_merge_seconds),
                    at(ts),
                ],
            )]
        }
        Fact::ReviewRequested(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            let decision = parse_opt_id("decision_event_id", Some(&f.decision_event_id))?;
            vec![op(
                Stmt::InsertReview,
                vec![
                    text(&f.review_id),
                    uuid(task),
                    opt_uuid(decision),
                    text(&f.reason),
                    at(ts),
                ],
            )]
        }
        Fact::ReviewCompleted(f) => {
            let status = if f.approved { "approved" } else { "rejected" };
            vec![op(
                Stmt::ReviewCompleted,
                vec![
                    text(&f.review_id),
                    text(status),
                    text(&f.reviewer),
                    opt_text(f.comment.as_deref()),
                    at(ts),
                ],
            )]
        }
        Fact::ReviewEscalated(f) => vec![op(
            Stmt::ReviewEscalated,
            vec![text(&f.review_id), float(f.waited_hours), at(ts)],
        )],
        Fact::TaskAssigned(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            let agent = parse_id("agent_id", &f.agent_id)?;
            vec![op(
                Stmt::TaskAssigned,
                vec![uuid(task), uuid(agent), at(ts)],
            )]
        }
        Fact::PredictionCorrelated(f) => {
            let task = parse_id("task_id", &f.task_id)?;
            vec![op(
                Stmt::TaskPrediction,
                vec![uuid(task), text(&f.prediction_id), at(ts)],
            )]
        }
        Fact::PullRequestReadied(f) => vec![op(Stmt::PrReadied, vec![text(&f.url), at(ts)])],
        Fact::RollbackDecided(f) => {
            let request = parse_id("rollback_event_id", &f.rollback_event_id)?;
            let task = parse_id("task_id", &f.task_id)?;
            let paused_until = (f.auto_merge_pause_seconds > 0)
                .then(|| ts + chrono::Duration::seconds(f.auto_merge_pause_seconds));
            vec![op(
                Stmt::RollbackDecided,
                vec![
                    uuid(e.event_id),
                    uuid(request),
                    text(&e.tenant),
                    text(&f.repository),
                    uuid(task),
                    text(&f.url),
                    text(&f.base),
                    opt_text(f.revert_commit.as_deref()),
                    text(f.decision.as_str()),
                    text(&f.reason_code),
                    text(&f.reason),
                    text(&f.policy_version),
                    opt_text(f.revert_branch.as_deref()),
                    Param::Text(paused_until.map(time)),
                    at(ts),
                ],
            )]
        }
        Fact::RevertPullRequestOpened(f) => {
            let decision = parse_id("decision_id", &f.decision_id)?;
            let task = parse_id("task_id", &f.task_id)?;
            vec![op(
                Stmt::RevertOpened,
                vec![
                    uuid(decision),
                    text(&e.tenant),
                    text(&f.repository),
                    uuid(task),
                    text(&f.fix_url),
                    text(&f.base),
                    text(&f.reverted_commit),
                    text(&f.url),
                    int(f.number),
                    text(&f.branch),
                    at(ts),
                ],
            )]
        }
        Fact::RevertFailed(f) => {
            let decision = parse_id("decision_id", &f.decision_id)?;
            let task = parse_id("task_id", &f.task_id)?;
            vec![op(
                Stmt::RevertFailed,
                vec![
                    uuid(decision),
                    text(&e.tenant),
                    text(&f.repository),
                    uuid(task),
                    text(&f.fix_url),
                    text(&f.base),
                    opt_text(f.reverted_commit.as_deref()),
                    text(&f.reason),
                    at(ts),
                ],
            )]
        }
        Fact::AutoMergeEnabled(f) => {
            vec![op(Stmt::AutoMergeEnabled, vec![text(&f.url), at(ts)])]
        }
        Fact::AutoMergeDisabled(f) => {
            vec![op(Stmt::AutoMergeDisabled, vec![text(&f.url), at(ts)])]
        }
        Fact::FailureLogsCaptured(_)
        | Fact::TaskProgressed(_)
        | Fact::PullRequestReviewed(_)
        | Fact::PredictionReceived(_)
        | Fact::OutcomeReported(_)
        | Fact::EventDeadLettered(_)
        | Fact::ForgeEventReceived(_)
        | Fact::RollbackRequested(_) => Vec::new(),
    })
}

#[allow(clippy::too_many_arguments)]
fn decision(
    e: &Event,
    kind: &str,
    failure: Option<Uuid>,
    classification: Option<Uuid>,
    task: Option<Uuid>,
    candidate: Option<&str>,
    decision: &str,
    reason_code: &str,
    reason: &str,
    policy_version: &str,
    failure_type: Option<&str>,
    confidence: Option<f64>,
) -> Op {
    op(
        Stmt::InsertDecision,
        vec![
            uuid(e.event_id),
            text(kind),
            text(&e.tenant),
            text(&e.subject),
            opt_uuid(failure),
            opt_uuid(classification),
            opt_uuid(task),
            opt_text(candidate),
            text(decision),
            text(reason_code),
            text(reason),
            text(policy_version),
            opt_text(failure_type),
            opt_float(confidence),
            uuid(e.correlation_id),
            at(e.occurred_at),
        ],
    )
}

fn task_queued(e: &Event, f: &TaskQueued) -> Result<Vec<Op>, InvalidFact> {
    let task = parse_id("task_id", &f.task_id)?;
    let agent = parse_id("agent_id", &f.agent_id)?;
    let decision = parse_opt_id("decision_id", f.decision_id.as_deref())?;
    let failure = parse_opt_id("failure_event_id", f.failure_event_id.as_deref())?;
    // The payload is JSON by contract; anything else is kept, as a JSON string.
    let payload: Value =
        serde_json::from_str(&f.payload).unwrap_or_else(|_| Value::String(f.payload.clone()));
    let ts = e.occurred_at;
    let mut ops = vec![op(
        Stmt::InsertTask,
        vec![
            uuid(task),
            uuid(agent),
            text(&f.task_type),
            int(f.priority),
            json(&payload),
            int(f.max_attempts),
            int(f.timeout_seconds),
            text(&e.tenant),
            text(&e.subject),
            uuid(e.correlation_id),
            opt_uuid(decision),
            opt_uuid(failure),
            at(ts),
        ],
    )];
    if f.task_type == FIX_TASK_TYPE {
        // Every fact of a failure's chain carries its id as correlation id.
        let failure = failure.unwrap_or(e.correlation_id);
        ops.push(op(
            Stmt::InsertFix,
            vec![
                uuid(task),
                uuid(failure),
                text(&e.tenant),
                text(&e.subject),
                at(ts),
            ],
        ));
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_events::FailureType;

    fn origin(fact: impl Into<Fact>) -> Event {
        Event::origin(fact, Some("d1"), "acme", "org/app", Utc::now(), "test@0")
    }

    fn ci_failed() -> CiRunFailed {
        CiRunFailed {
            source: "github".into(),
            delivery_id: Some("d1".into()),
            repository: "org/app".into(),
            branch: "main".into(),
            commit: "abc".into(),
            command: Some("ruff check".into()),
            log: "E501".into(),
            log_size_bytes: 4,
            run_url: None,
            job_name: None,
            author: None,
            sentinel_authored: false,
        }
    }

    #[test]
    fn failure_row_uses_the_event_id_subject_and_event_time() {
        let e = origin(ci_failed());
        let ops = plan(&e).expect("plan");
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].stmt, Stmt::InsertFailure);
        assert_eq!(ops[0].params[0], Param::Text(Some(e.event_id.to_string())));
        assert_eq!(ops[0].params[2], Param::Text(Some("org/app".into())));
        assert_eq!(ops[0].params[11], Param::Text(Some(time(e.occurred_at))));
    }

    #[test]
    fn fix_tasks_also_create_a_fix_keyed_by_the_task_id() {
        let e = origin(ci_failed());
        let task = Uuid::new_v4();
        let queued = e.caused(
            TaskQueued {
                task_id: task.to_string(),
                agent_id: Uuid::new_v4().to_string(),
                task_type: FIX_TASK_TYPE.into(),
                priority: 5,
                decision_id: None,
                failure_event_id: None,
                payload: "not json".into(),
                timeout_seconds: 60,
                max_attempts: 3,
            },
            "controller@0",
            0,
            None,
        );
        let ops = plan(&queued).expect("plan");
        assert_eq!(
            ops.iter().map(|o| o.stmt).collect::<Vec<_>>(),
            [Stmt::InsertTask, Stmt::InsertFix]
        );
        assert_eq!(ops[0].params[4], Param::Text(Some("\"not json\"".into())));
        // Without an explicit failure id the chain's correlation id names the failure.
        assert_eq!(ops[1].params[1], Param::Text(Some(e.event_id.to_string())));
    }

    #[test]
    fn malformed_ids_are_refused_and_unused_facts_plan_nothing() {
        let e = origin(ci_failed());
        let bad = e.caused(
            FailureClassified {
                failure_event_id: "not-a-uuid".into(),
                failure_type: FailureType::Linting,
                confidence: 0.9,
                method: "pattern".into(),
                pattern_id: None,
                tool: None,
                signature: "sig".into(),
                files: vec![],
                lines: vec![],
                modules: vec![],
                symbols: vec![],
            },
            "classifier@0",
            0,
            None,
        );
        assert_eq!(plan(&bad).expect_err("invalid").field, "failure_event_id");
        let progress = e.caused(
            TaskProgressed {
                task_id: "x".into(),
                progress: 0.5,
                message: "m".into(),
            },
            "agent@0",
            0,
            None,
        );
        assert!(plan(&progress).expect("plan").is_empty());
    }

    #[test]
    fn times_are_fixed_width_utc_micros() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_000_000).expect("ts");
        assert_eq!(time(t), "2023-11-14T22:13:20.000000Z");
    }
}
