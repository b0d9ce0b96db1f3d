//! The SQL of every statement, per backend, from `src/sql/<backend>/*.sql`.
//!
//! Each file holds several statements, each introduced by a `-- name: <name>` line and
//! documented by the comment lines under it. Parameters are numbered (`$1`, `$2`, …) in
//! both dialects and always bound as text, integer, real or boolean; PostgreSQL casts text
//! to `uuid`, `timestamptz` and `jsonb` in the SQL, SQLite stores the text as is.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::store::Backend;
use crate::{Error, Result};

const SQLITE_FILES: &[&str] = &[
    include_str!("sql/sqlite/apply.sql"),
    include_str!("sql/sqlite/fold.sql"),
    include_str!("sql/sqlite/read.sql"),
];
const POSTGRES_FILES: &[&str] = &[
    include_str!("sql/postgres/apply.sql"),
    include_str!("sql/postgres/fold.sql"),
    include_str!("sql/postgres/read.sql"),
];

macro_rules! statements {
    ($($variant:ident => $name:literal,)*) => {
        /// A named SQL statement.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Stmt {
            $($variant,)*
        }

        impl Stmt {
            /// Every statement.
            #[cfg(test)]
            pub(crate) const ALL: &'static [Stmt] = &[$(Stmt::$variant,)*];

            /// The name after `-- name:` in the SQL files.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Stmt::$variant => $name,)*
                }
            }
        }
    };
}

statements! {
    InsertFailure => "insert_failure",
    ClassifyFailure => "classify_failure",
    ClassifyFixes => "classify_fixes",
    InsertDecision => "insert_decision",
    UpsertAgent => "upsert_agent",
    AgentStatus => "agent_status",
    AgentHealth => "agent_health",
    InsertTask => "insert_task",
    InsertFix => "insert_fix",
    TaskStarted => "task_started",
    FixInProgress => "fix_in_progress",
    TaskCompleted => "task_completed",
    TaskFailed => "task_failed",
    FixTaskFailed => "fix_task_failed",
    TaskCancelled => "task_cancelled",
    FixTaskCancelled => "fix_task_cancelled",
    FixCandidate => "fix_candidate",
    FixValidated => "fix_validated",
    FixNotFound => "fix_not_found",
    FixBranch => "fix_branch",
    FixPrOpened => "fix_pr_opened",
    InsertPullRequest => "insert_pull_request",
    PrChecks => "pr_checks",
    PrMerged => "pr_merged",
    FixMerged => "fix_merged",
    PrClosed => "pr_closed",
    FixClosed => "fix_closed",
    FixOutcome => "fix_outcome",
    InsertReview => "insert_review",
    ReviewCompleted => "review_completed",
    ReviewEscalated => "review_escalated",
    TaskAssigned => "task_assigned",
    TaskPrediction => "task_prediction",
    PrReadied => "pr_readied",
    RollbackDecided => "rollback_decided",
    RevertOpened => "revert_opened",
    RevertFailed => "revert_failed",
    AutoMergeEnabled => "auto_merge_enabled",
    AutoMergeDisabled => "auto_merge_disabled",
    LoadFailures => "load_failures",
    UpsertFailures => "upsert_failures",
    LoadAgents => "load_agents",
    UpsertAgents => "upsert_agents",
    LoadTasks => "load_tasks",
    UpsertTasks => "upsert_tasks",
    LoadFixes => "load_fixes",
    LoadFixesByFailure => "load_fixes_by_failure",
    LoadFixesByPr => "load_fixes_by_pr",
    UpsertFixes => "upsert_fixes",
    LoadPullRequests => "load_pull_requests",
    UpsertPullRequests => "upsert_pull_requests",
    LoadReviews => "load_reviews",
    UpsertReviews => "upsert_reviews",
    LoadRollbacks => "load_rollbacks",
    UpsertRollbacks => "upsert_rollbacks",
    LoadAgentFinished => "load_agent_finished",
    AdvanceCheckpoint => "advance_checkpoint",
    LoadCheckpoints => "load_checkpoints",
    LockCheckpoints => "lock_checkpoints",
    ResetCheckpoints => "reset_checkpoints",
    ResetRows => "reset_rows",
    ListFixes => "list_fixes",
    GetFix => "get_fix",
    ListAgents => "list_agents",
    GetAgent => "get_agent",
    GetTask => "get_task",
    ListFailures => "list_failures",
    ListDecisions => "list_decisions",
}

/// Statements PostgreSQL can run for many rows at once: `<name>_batch` takes one array per
/// parameter (the same order) and inserts with `UNNEST`.
pub(crate) fn has_batch_form(stmt: Stmt) -> bool {
    matches!(
        stmt,
        Stmt::InsertFailure | Stmt::InsertDecision | Stmt::InsertTask
    )
}

type Sections = HashMap<String, &'static str>;

fn parse(files: &[&'static str]) -> Sections {
    let mut out = HashMap::new();
    for file in files {
        let mut rest: &'static str = file;
        // Find each `-- name:` line; the statement runs until the next one.
        while let Some(start) = rest.find("-- name:") {
            let after = &rest[start + "-- name:".len()..];
            let (name, body) = after.split_once('\n').unwrap_or((after, ""));
            let end = body.find("-- name:").unwrap_or(body.len());
            out.insert(name.trim().to_owned(), body[..end].trim());
            rest = &body[end..];
        }
    }
    out
}

static SQLITE: LazyLock<Sections> = LazyLock::new(|| parse(SQLITE_FILES));
static POSTGRES: LazyLock<Sections> = LazyLock::new(|| parse(POSTGRES_FILES));

fn sections(backend: Backend) -> &'static Sections {
    match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    }
}

/// The SQL of a statement.
pub(crate) fn sql(backend: Backend, stmt: Stmt) -> Result<&'static str> {
    sections(backend)
        .get(stmt.name())
        .copied()
        .ok_or(Error::MissingStatement {
            name: stmt.name(),
            backend: backend.as_str(),
        })
}

/// The `UNNEST` form of a statement (PostgreSQL only).
pub(crate) fn batch_sql(stmt: Stmt) -> Result<&'static str> {
    let name = stmt.name();
    POSTGRES
        .iter()
        .find(|(k, _)| k.strip_suffix("_batch") == Some(name))
        .map(|(_, v)| *v)
        .ok_or(Error::MissingStatement {
            name,
            backend: "postgres (batch)",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_exists_for_both_backends_and_nothing_else() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            for stmt in Stmt::ALL {
                let sql = sql(backend, *stmt).expect("statement");
                assert!(!sql.is_empty(), "{} is empty", stmt.name());
            }
            let mut extra: Vec<&String> = sections(backend)
                .keys()
                .filter(|k| {
                    !Stmt::ALL.iter().any(|s| {
                        s.name() == k.as_str()
                            || (has_batch_form(*s)
                                && backend == Backend::Postgres
                                && k.strip_suffix("_batch") == Some(s.name()))
                    })
                })
                .collect();
            extra.sort();
            assert!(
                extra.is_empty(),
                "{backend:?}: statements without a Stmt: {extra:?}"
            );
        }
        for stmt in Stmt::ALL.iter().filter(|s| has_batch_form(**s)) {
            batch_sql(*stmt).expect("batch form");
        }
    }

    #[test]
    fn parameter_counts_agree_between_backends() {
        fn max_param(sql: &str) -> usize {
            let mut max = 0;
            let b = sql.as_bytes();
            for (i, c) in b.iter().enumerate() {
                if *c == b'$' {
                    let digits: String = b[i + 1..]
                        .iter()
                        .take_while(|d| d.is_ascii_digit())
                        .map(|d| *d as char)
                        .collect();
                    if let Ok(n) = digits.parse::<usize>() {
                        max = max.max(n);
                    }
                }
            }
            if max == 0 {
                // The SQLite upserts' VALUES tuple uses anonymous `?` (it is repeated).
                max = sql.matches('?').count();
            }
            max
        }
        for stmt in Stmt::ALL {
            let a = max_param(sql(Backend::Sqlite, *stmt).expect("sqlite"));
            let b = max_param(sql(Backend::Postgres, *stmt).expect("postgres"));
            assert_eq!(a, b, "{}: parameter counts differ", stmt.name());
            if has_batch_form(*stmt) {
                assert_eq!(
                    max_param(batch_sql(*stmt).expect("batch")),
                    b,
                    "{}_batch",
                    stmt.name()
                );
            }
        }
    }
}
