//! The projection tables' rows as Rust values, for the batched write path: the store loads
//! the rows a batch touches into these, [`fold`](crate::fold) applies the batch's facts to
//! them in memory, and the store writes each table's final rows back at once.
//!
//! Every column is an `Option`: the database enforces `NOT NULL`. Ids, times (RFC 3339,
//! UTC, microseconds — fixed width, so they compare as text) and JSON documents are text,
//! as [`Param`] carries them. The column lists match the migrations and the generated
//! `src/sql/<backend>/fold.sql` (`sql-gen/gen.py`), in table order.

use crate::Result;
use crate::copy::{CopyRow, Value};
use crate::plan::Param;
use crate::store::RowExt;

/// Declares a row struct with one field per column, in table order.
macro_rules! row {
    ($(#[$doc:meta])* $name:ident, $table:literal, key $key:ident {
        $($col:ident: $kind:ident),* $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub(crate) struct $name {
            $(pub(crate) $col: row!(@ty $kind),)*
        }

        impl $name {
            /// The table.
            #[allow(dead_code)]
            pub(crate) const TABLE: &'static str = $table;
            /// Its columns, in table order.
            #[cfg(test)]
            pub(crate) const COLUMNS: &'static [&'static str] = &[$(stringify!($col),)*];

            /// The primary key.
            pub(crate) fn key(&self) -> Option<&str> {
                self.$key.as_deref()
            }

            /// The row as statement parameters, one per column, moving its values.
            pub(crate) fn into_params(self) -> Vec<Param> {
                vec![$(row!(@into $kind, self.$col),)*]
            }

            /// Reads a row loaded by the `load_<table>` statement.
            pub(crate) fn from_row(r: &dyn RowExt) -> Result<Self> {
                Ok($name {
                    $($col: row!(@read $kind, r, stringify!($col)),)*
                })
            }
        }

        impl CopyRow for $name {
            fn values(&self) -> impl Iterator<Item = Value<'_>> {
                [$(row!(@ref $kind, self.$col)),*].into_iter()
            }
        }
    };
    (@ref Text, $v:expr) => { Value::Text($v.as_deref()) };
    (@ref Time, $v:expr) => { Value::Text($v.as_deref()) };
    (@ref Int, $v:expr) => { Value::Int($v) };
    (@ref Float, $v:expr) => { Value::Float($v) };
    (@ref Bool, $v:expr) => { Value::Bool($v) };
    (@ty Text) => { Option<String> };
    (@ty Int) => { Option<i64> };
    (@ty Float) => { Option<f64> };
    (@ty Bool) => { Option<bool> };
    (@ty Time) => { Option<String> };
    (@into Text, $v:expr) => { Param::Text($v) };
    (@into Time, $v:expr) => { Param::Text($v) };
    (@into Int, $v:expr) => { Param::Int($v) };
    (@into Float, $v:expr) => { Param::Float($v) };
    (@into Bool, $v:expr) => { Param::Bool($v) };
    (@read Text, $r:expr, $c:expr) => { $r.opt_text($c)? };
    (@read Time, $r:expr, $c:expr) => { $r.time_text($c)? };
    (@read Int, $r:expr, $c:expr) => { $r.opt_int($c)? };
    (@read Float, $r:expr, $c:expr) => { $r.opt_float($c)? };
    (@read Bool, $r:expr, $c:expr) => { $r.opt_bool($c)? };
}

row! {
    /// A `failures` row.
    FailureRow, "failures", key id {
        id: Text, tenant: Text, repository: Text, branch: Text, commit_sha: Text,
        command: Text, source: Text, run_url: Text, job_name: Text, author: Text,
        sentinel_authored: Bool, failure_type: Text, classification_confidence: Float,
        classification_method: Text, signature: Text, tool: Text, classified_at: Time,
        occurred_at: Time, recorded_at: Time,
    }
}

row! {
    /// An `agents` row.
    AgentRow, "agents", key id {
        id: Text, name: Text, version: Text, status: Text, status_reason: Text,
        capabilities: Text, max_concurrency: Int, health_score: Float, created_at: Time,
        updated_at: Time,
    }
}

row! {
    /// An `agent_tasks` row.
    TaskRow, "agent_tasks", key id {
        id: Text, agent_id: Text, task_type: Text, status: Text, priority: Int,
        payload: Text, result: Text, error_message: Text, attempts: Int, max_attempts: Int,
        timeout_seconds: Int, tenant: Text, repository: Text, correlation_id: Text,
        decision_id: Text, failure_id: Text, created_at: Time, started_at: Time,
        completed_at: Time, updated_at: Time, assigned_agent_id: Text, assigned_at: Time,
        prediction_id: Text,
    }
}

row! {
    /// A `failure_fixes` row.
    FixRow, "failure_fixes", key id {
        id: Text, failure_id: Text, tenant: Text, repository: Text, branch: Text,
        commit_sha: Text, failure_type: Text, signature: Text, status: Text,
        status_reason: Text, strategy: Text, candidate_id: Text, files_changed: Text,
        confidence: Float, diff: Text, validation: Text, fix_branch: Text, fix_commit: Text,
        pr_url: Text, pr_number: Int, fix_success: Bool, time_to_pr_seconds: Float,
        time_to_fix_seconds: Float, created_at: Time, updated_at: Time,
    }
}

row! {
    /// A `pull_requests` row.
    PullRequestRow, "pull_requests", key url {
        url: Text, task_id: Text, repository: Text, forge: Text, number: Int, branch: Text,
        base: Text, title: Text, draft: Bool, state: Text, checks_conclusion: Text,
        decision_id: Text, merged_by: Text, merge_commit: Text, closed_by: Text,
        opened_at: Time, merged_at: Time, closed_at: Time, updated_at: Time,
        readied_at: Time, auto_merge: Bool, auto_merge_enabled_at: Time,
        auto_merge_disabled_at: Time,
    }
}

row! {
    /// A `reviews` row.
    ReviewRow, "reviews", key id {
        id: Text, task_id: Text, decision_id: Text, reason: Text, status: Text,
        reviewer: Text, comment: Text, waited_hours: Float, requested_at: Time,
        completed_at: Time, escalated_at: Time, updated_at: Time,
    }
}

row! {
    /// A `rollbacks` row.
    RollbackRow, "rollbacks", key id {
        id: Text, rollback_request_id: Text, tenant: Text, repository: Text, task_id: Text,
        fix_pr_url: Text, base: Text, revert_commit: Text, decision: Text, reason_code: Text,
        reason: Text, policy_version: Text, revert_branch: Text,
        auto_merge_paused_until: Time, revert_pr_url: Text, revert_pr_number: Int,
        decided_at: Time, revert_opened_at: Time, updated_at: Time, revert_failure: Text,
        revert_failed_at: Time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Stmt, sql};
    use crate::store::Backend;

    /// The generated SQL lists the same columns, in the same order, as the structs.
    #[test]
    fn generated_sql_matches_the_row_structs() {
        for (load, upsert, columns) in [
            (
                Stmt::LoadFailures,
                Stmt::UpsertFailures,
                FailureRow::COLUMNS,
            ),
            (Stmt::LoadAgents, Stmt::UpsertAgents, AgentRow::COLUMNS),
            (Stmt::LoadTasks, Stmt::UpsertTasks, TaskRow::COLUMNS),
            (Stmt::LoadFixes, Stmt::UpsertFixes, FixRow::COLUMNS),
            (
                Stmt::LoadPullRequests,
                Stmt::UpsertPullRequests,
                PullRequestRow::COLUMNS,
            ),
            (Stmt::LoadReviews, Stmt::UpsertReviews, ReviewRow::COLUMNS),
            (
                Stmt::LoadRollbacks,
                Stmt::UpsertRollbacks,
                RollbackRow::COLUMNS,
            ),
        ] {
            for backend in [Backend::Sqlite, Backend::Postgres] {
                let upsert = sql(backend, upsert).expect("upsert");
                let listed = upsert
                    .split_once("INSERT INTO")
                    .and_then(|(_, rest)| rest.split_once('('))
                    .and_then(|(_, rest)| rest.split_once(')'))
                    .map(|(cols, _)| cols)
                    .expect("column list");
                let listed: Vec<&str> = listed.split(',').map(str::trim).collect();
                assert_eq!(listed, columns, "{backend}: {upsert}");
                let load = sql(backend, load).expect("load");
                for c in columns {
                    assert!(load.contains(c), "{backend}: {c} not loaded");
                }
            }
        }
    }
}
