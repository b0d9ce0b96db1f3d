//! Folding a batch of facts into final rows, in memory: no I/O, no clock.
//!
//! The batched write path runs in three steps inside the batch's transaction:
//!
//! 1. [`Keys::of`] lists every row the batch's [`Op`]s (from [`plan`](crate::plan::plan))
//!    may read or write: by primary key, fixes by failure and by pull request URL, and the
//!    agents whose health score is recomputed.
//! 2. The store loads those rows (locking them on PostgreSQL) into a [`State`], plus each
//!    such agent's latest finished tasks.
//! 3. [`State::apply`] runs every op in order on the rows in memory, with exactly the
//!    semantics of the row-by-row SQL statement of the same name (`src/sql/*/apply.sql`,
//!    kept as the reference: a test compares both paths on generated logs); the store then
//!    writes each table's changed rows at once ([`State::into_writes`]).
//!
//! A row first seen in the batch is inserted with its final state; rows from earlier
//! batches are loaded, patched in memory and written back whole. Rows are locked from the
//! load to the commit, so concurrent projectors of other partitions cannot interleave
//! their writes with ours.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::plan::{Op, Param};
use crate::rows::{AgentRow, FailureRow, FixRow, PullRequestRow, ReviewRow, RollbackRow, TaskRow};
use crate::sql::Stmt;

/// How many finished tasks the health score averages (as in `agent_health`).
pub(crate) const HEALTH_WINDOW: usize = 50;

/// Task statuses that count for the health score.
fn finished_score(status: Option<&str>) -> Option<f64> {
    match status? {
        "completed" => Some(1.0),
        "partial" => Some(0.5),
        "failed" => Some(0.0),
        _ => None,
    }
}

/// The rows a batch may touch.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    pub failures: BTreeSet<String>,
    pub agents: BTreeSet<String>,
    pub tasks: BTreeSet<String>,
    pub fixes: BTreeSet<String>,
    /// Failure ids whose fixes are updated (`classify_fixes`).
    pub fixes_by_failure: BTreeSet<String>,
    /// Pull request URLs whose fixes are updated (`fix_merged`, `fix_closed`).
    pub fixes_by_pr: BTreeSet<String>,
    pub pull_requests: BTreeSet<String>,
    pub reviews: BTreeSet<String>,
    pub rollbacks: BTreeSet<String>,
    /// Agents whose health score is computed (registration, task outcomes).
    pub health: BTreeSet<String>,
}

impl Keys {
    /// Adds every key of `other`.
    pub(crate) fn append(&mut self, mut other: Keys) {
        self.failures.append(&mut other.failures);
        self.agents.append(&mut other.agents);
        self.tasks.append(&mut other.tasks);
        self.fixes.append(&mut other.fixes);
        self.fixes_by_failure.append(&mut other.fixes_by_failure);
        self.fixes_by_pr.append(&mut other.fixes_by_pr);
        self.pull_requests.append(&mut other.pull_requests);
        self.reviews.append(&mut other.reviews);
        self.rollbacks.append(&mut other.rollbacks);
        self.health.append(&mut other.health);
    }

    /// Whether any row must be looked up (every set but `health`, which is scored from
    /// rows loaded or written).
    pub(crate) fn needs_rows(&self) -> bool {
        !(self.failures.is_empty()
            && self.agents.is_empty()
            && self.tasks.is_empty()
            && self.fixes.is_empty()
            && self.fixes_by_failure.is_empty()
            && self.fixes_by_pr.is_empty()
            && self.pull_requests.is_empty()
            && self.reviews.is_empty()
            && self.rollbacks.is_empty())
    }

    /// Every key `ops` reads or writes.
    pub(crate) fn of(ops: &[Op]) -> Keys {
        let mut k = Keys::default();
        for op in ops {
            let Some(first) = text(op, 0) else { continue };
            let first = first.to_owned();
            match op.stmt {
                Stmt::InsertFailure | Stmt::ClassifyFailure => {
                    k.failures.insert(first);
                }
                Stmt::ClassifyFixes => {
                    k.fixes_by_failure.insert(first);
                }
                Stmt::UpsertAgent | Stmt::AgentHealth => {
                    k.agents.insert(first.clone());
                    k.health.insert(first);
                }
                Stmt::AgentStatus => {
                    k.agents.insert(first);
                }
                Stmt::InsertTask
                | Stmt::TaskStarted
                | Stmt::TaskCompleted
                | Stmt::TaskFailed
                | Stmt::TaskCancelled
                | Stmt::TaskAssigned
                | Stmt::TaskPrediction => {
                    k.tasks.insert(first);
                }
                Stmt::InsertFix => {
                    if let Some(failure) = text(op, 1) {
                        k.failures.insert(failure.to_owned());
                    }
                    k.fixes.insert(first);
                }
                Stmt::FixInProgress | Stmt::FixTaskFailed | Stmt::FixTaskCancelled => {
                    k.tasks.insert(first.clone());
                    k.fixes.insert(first);
                }
                Stmt::FixCandidate
                | Stmt::FixValidated
                | Stmt::FixNotFound
                | Stmt::FixBranch
                | Stmt::FixPrOpened
                | Stmt::FixOutcome => {
                    k.fixes.insert(first);
                }
                Stmt::FixMerged | Stmt::FixClosed => {
                    k.fixes_by_pr.insert(first);
                }
                Stmt::InsertPullRequest
                | Stmt::PrChecks
                | Stmt::PrMerged
                | Stmt::PrClosed
                | Stmt::PrReadied
                | Stmt::AutoMergeEnabled
                | Stmt::AutoMergeDisabled => {
                    k.pull_requests.insert(first);
                }
                Stmt::InsertReview | Stmt::ReviewCompleted | Stmt::ReviewEscalated => {
                    k.reviews.insert(first);
                }
                Stmt::RollbackDecided | Stmt::RevertOpened | Stmt::RevertFailed => {
                    k.rollbacks.insert(first);
                }
                _ => {}
            }
        }
        k
    }
}

/// A row in memory and whether the batch changed it.
#[derive(Debug)]
struct Slot<T> {
    row: T,
    dirty: bool,
}

fn slot<T>(row: T, dirty: bool) -> Slot<T> {
    Slot { row, dirty }
}

/// Adds a row loaded from the database (unchanged by the batch) under its primary key;
/// a row without one is skipped.
fn insert_loaded<T>(map: &mut BTreeMap<String, Slot<T>>, row: T, key: fn(&T) -> Option<&str>) {
    if let Some(k) = key(&row).map(str::to_owned) {
        map.insert(k, slot(row, false));
    }
}

/// The rows of one batch, in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    failures: BTreeMap<String, Slot<FailureRow>>,
    agents: BTreeMap<String, Slot<AgentRow>>,
    tasks: BTreeMap<String, Slot<TaskRow>>,
    fixes: BTreeMap<String, Slot<FixRow>>,
    pull_requests: BTreeMap<String, Slot<PullRequestRow>>,
    reviews: BTreeMap<String, Slot<ReviewRow>>,
    rollbacks: BTreeMap<String, Slot<RollbackRow>>,
    /// New decisions (insert-only; the database ignores ids it has).
    decisions: Vec<Vec<Param>>,
    decision_ids: HashSet<String>,
    /// failure id → ids of its fixes.
    fixes_by_failure: HashMap<String, BTreeSet<String>>,
    /// pull request URL → ids of the fixes that name it.
    fixes_by_pr: HashMap<String, BTreeSet<String>>,
    /// agent id → its finished tasks by (completed_at, id) → score, for the health score:
    /// the tasks in `tasks`, plus the latest ones of the database that are not.
    finished: HashMap<String, BTreeMap<(String, String), f64>>,
}

/// What to write: each table's changed rows and the new decisions.
#[derive(Debug, Default, Clone)]
pub(crate) struct Writes {
    pub failures: Vec<FailureRow>,
    pub decisions: Vec<Vec<Param>>,
    pub agents: Vec<AgentRow>,
    pub tasks: Vec<TaskRow>,
    pub fixes: Vec<FixRow>,
    pub pull_requests: Vec<PullRequestRow>,
    pub reviews: Vec<ReviewRow>,
    pub rollbacks: Vec<RollbackRow>,
}

fn dirty<T>(rows: BTreeMap<String, Slot<T>>) -> Vec<T> {
    rows.into_values()
        .filter(|s| s.dirty)
        .map(|s| s.row)
        .collect()
}

fn text(op: &Op, i: usize) -> Option<&str> {
    match op.params.get(i) {
        Some(Param::Text(v)) => v.as_deref(),
        _ => None,
    }
}

fn owned(op: &Op, i: usize) -> Option<String> {
    text(op, i).map(str::to_owned)
}

fn int(op: &Op, i: usize) -> Option<i64> {
    match op.params.get(i) {
        Some(Param::Int(v)) => *v,
        _ => None,
    }
}

fn float(op: &Op, i: usize) -> Option<f64> {
    match op.params.get(i) {
        Some(Param::Float(v)) => *v,
        _ => None,
    }
}

fn boolean(op: &Op, i: usize) -> Option<bool> {
    match op.params.get(i) {
        Some(Param::Bool(v)) => *v,
        _ => None,
    }
}

/// `GREATEST(a, b)` of two times (PostgreSQL's: NULLs are ignored).
fn greatest(a: &Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if *a >= b { a.clone() } else { b }),
        (Some(a), None) => Some(a.clone()),
        (None, b) => b,
    }
}

fn least(a: &Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if *a <= b { a.clone() } else { b }),
        (Some(a), None) => Some(a.clone()),
        (None, b) => b,
    }
}

fn is(v: &Option<String>, any: &[&str]) -> bool {
    v.as_deref().is_some_and(|v| any.contains(&v))
}

impl State {
    /// Adds a loaded `failures` row.
    pub(crate) fn load_failure(&mut self, row: FailureRow) {
        insert_loaded(&mut self.failures, row, FailureRow::key);
    }

    /// Adds a loaded `agents` row.
    pub(crate) fn load_agent(&mut self, row: AgentRow) {
        insert_loaded(&mut self.agents, row, AgentRow::key);
    }

    /// Adds a loaded `agent_tasks` row.
    pub(crate) fn load_task(&mut self, row: TaskRow) {
        if let Some(k) = row.key().map(str::to_owned) {
            self.index_task(&row, true);
            self.tasks.insert(k, slot(row, false));
        }
    }

    /// Adds a loaded `failure_fixes` row (loaded by id, failure or pull request; a row
    /// already present is kept).
    pub(crate) fn load_fix(&mut self, row: FixRow) {
        if let Some(k) = row.key().map(str::to_owned) {
            if self.fixes.contains_key(&k) {
                return;
            }
            self.index_fix(&row, true);
            self.fixes.insert(k, slot(row, false));
        }
    }

    /// Adds a loaded `pull_requests` row.
    pub(crate) fn load_pull_request(&mut self, row: PullRequestRow) {
        insert_loaded(&mut self.pull_requests, row, PullRequestRow::key);
    }

    /// Adds a loaded `reviews` row.
    pub(crate) fn load_review(&mut self, row: ReviewRow) {
        insert_loaded(&mut self.reviews, row, ReviewRow::key);
    }

    /// Adds a loaded `rollbacks` row.
    pub(crate) fn load_rollback(&mut self, row: RollbackRow) {
        insert_loaded(&mut self.rollbacks, row, RollbackRow::key);
    }

    /// Adds one of an agent's latest finished tasks from the database; ignored when the
    /// task is loaded as a row (the row in memory is the truth). Call after the tasks
    /// are loaded.
    pub(crate) fn load_finished(&mut self, agent: &str, id: String, status: &str, at: String) {
        if self.tasks.contains_key(&id) {
            return;
        }
        if let Some(score) = finished_score(Some(status)) {
            self.finished
                .entry(agent.to_owned())
                .or_default()
                .insert((at, id), score);
        }
    }

    fn index_task(&mut self, row: &TaskRow, add: bool) {
        let (Some(agent), Some(id), Some(at)) = (&row.agent_id, &row.id, &row.completed_at) else {
            return;
        };
        let Some(score) = finished_score(row.status.as_deref()) else {
            return;
        };
        let key = (at.clone(), id.clone());
        if add {
            self.finished
                .entry(agent.clone())
                .or_default()
                .insert(key, score);
        } else if let Some(m) = self.finished.get_mut(agent) {
            m.remove(&key);
        }
    }

    fn index_fix(&mut self, row: &FixRow, add: bool) {
        let Some(id) = &row.id else { return };
        if let Some(f) = &row.failure_id {
            let set = self.fixes_by_failure.entry(f.clone()).or_default();
            if add {
                set.insert(id.clone());
            } else {
                set.remove(id);
            }
        }
        if let Some(url) = &row.pr_url {
            let set = self.fixes_by_pr.entry(url.clone()).or_default();
            if add {
                set.insert(id.clone());
            } else {
                set.remove(id);
            }
        }
    }

    /// Changes a task in place if `f` says so (returns true), keeping the health index.
    fn task(&mut self, id: &str, f: impl FnOnce(&mut TaskRow) -> bool) {
        let Some(mut s) = self.tasks.remove(id) else {
            return;
        };
        self.index_task(&s.row, false);
        if f(&mut s.row) {
            s.dirty = true;
        }
        self.index_task(&s.row, true);
        self.tasks.insert(id.to_owned(), s);
    }

    /// Changes a fix in place if `f` says so (returns true), keeping the indexes.
    fn fix(&mut self, id: &str, f: impl FnOnce(&mut FixRow) -> bool) {
        let Some(mut s) = self.fixes.remove(id) else {
            return;
        };
        self.index_fix(&s.row, false);
        if f(&mut s.row) {
            s.dirty = true;
        }
        self.index_fix(&s.row, true);
        self.fixes.insert(id.to_owned(), s);
    }

    fn task_status(&self, id: &str) -> Option<(&str, Option<i64>)> {
        self.tasks
            .get(id)
            .and_then(|s| Some((s.row.status.as_deref()?, s.row.attempts)))
    }

    /// The health score of `agent` and its latest finished task's time.
    fn health(&self, agent: &str) -> (f64, Option<String>) {
        let Some(m) = self.finished.get(agent) else {
            return (1.0, None);
        };
        let latest = m.keys().next_back().map(|(at, _)| at.clone());
        let scores: Vec<f64> = m.values().rev().take(HEALTH_WINDOW).copied().collect();
        if scores.is_empty() {
            return (1.0, latest);
        }
        let sum: f64 = scores.iter().sum();
        (sum / scores.len() as f64, latest)
    }

    /// Applies one op, as its SQL statement would.
    // One arm per statement, each reading like its SQL: no guards folded into the match.
    #[allow(clippy::collapsible_match)]
    pub(crate) fn apply(&mut self, op: &Op) {
        let Some(key) = owned(op, 0) else { return };
        match op.stmt {
            Stmt::InsertFailure => {
                self.failures.entry(key.clone()).or_insert_with(|| {
                    slot(
                        FailureRow {
                            id: Some(key),
                            tenant: owned(op, 1),
                            repository: owned(op, 2),
                            branch: owned(op, 3),
                            commit_sha: owned(op, 4),
                            command: owned(op, 5),
                            source: owned(op, 6),
                            run_url: owned(op, 7),
                            job_name: owned(op, 8),
                            author: owned(op, 9),
                            sentinel_authored: boolean(op, 10),
                            occurred_at: owned(op, 11),
                            recorded_at: owned(op, 12),
                            ..FailureRow::default()
                        },
                        true,
                    )
                });
            }
            Stmt::ClassifyFailure => {
                if let Some(s) = self.failures.get_mut(&key) {
                    let r = &mut s.row;
                    r.failure_type = owned(op, 1);
                    r.classification_confidence = float(op, 2);
                    r.classification_method = owned(op, 3);
                    r.signature = owned(op, 4);
                    r.tool = owned(op, 5);
                    r.classified_at = owned(op, 6);
                    s.dirty = true;
                }
            }
            Stmt::ClassifyFixes => {
                let ids: Vec<String> = self
                    .fixes_by_failure
                    .get(&key)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for id in ids {
                    self.fix(&id, |r| {
                        r.failure_type = owned(op, 1);
                        r.signature = owned(op, 2);
                        r.updated_at = greatest(&r.updated_at, owned(op, 3));
                        true
                    });
                }
            }
            Stmt::InsertDecision => {
                if self.decision_ids.insert(key) {
                    self.decisions.push(op.params.clone());
                }
            }
            Stmt::UpsertAgent => {
                let at = owned(op, 5);
                if let Some(s) = self.agents.get_mut(&key) {
                    let r = &mut s.row;
                    r.name = owned(op, 1);
                    r.version = owned(op, 2);
                    r.capabilities = owned(op, 3);
                    r.max_concurrency = int(op, 4);
                    r.created_at = least(&r.created_at, at.clone());
                    r.updated_at = greatest(&r.updated_at, at);
                    s.dirty = true;
                } else {
                    let (health, latest) = self.health(&key);
                    let row = AgentRow {
                        id: Some(key.clone()),
                        name: owned(op, 1),
                        version: owned(op, 2),
                        status: Some("active".into()),
                        status_reason: None,
                        capabilities: owned(op, 3),
                        max_concurrency: int(op, 4),
                        health_score: Some(health),
                        created_at: at.clone(),
                        updated_at: greatest(&at, latest),
                    };
                    self.agents.insert(key, slot(row, true));
                }
            }
            Stmt::AgentStatus => {
                if let Some(s) = self.agents.get_mut(&key) {
                    let r = &mut s.row;
                    r.status = owned(op, 1);
                    r.status_reason = owned(op, 2);
                    r.updated_at = greatest(&r.updated_at, owned(op, 3));
                    s.dirty = true;
                }
            }
            Stmt::AgentHealth => {
                if self.agents.contains_key(&key) {
                    let (health, _) = self.health(&key);
                    if let Some(s) = self.agents.get_mut(&key) {
                        s.row.health_score = Some(health);
                        s.row.updated_at = greatest(&s.row.updated_at, owned(op, 1));
                        s.dirty = true;
                    }
                }
            }
            Stmt::InsertTask => {
                if !self.tasks.contains_key(&key) {
                    let at = owned(op, 12);
                    let row = TaskRow {
                        id: Some(key.clone()),
                        agent_id: owned(op, 1),
                        task_type: owned(op, 2),
                        status: Some("queued".into()),
                        priority: int(op, 3),
                        payload: owned(op, 4),
                        attempts: Some(0),
                        max_attempts: int(op, 5),
                        timeout_seconds: int(op, 6),
                        tenant: owned(op, 7),
                        repository: owned(op, 8),
                        correlation_id: owned(op, 9),
                        decision_id: owned(op, 10),
                        failure_id: owned(op, 11),
                        created_at: at.clone(),
                        updated_at: at,
                        ..TaskRow::default()
                    };
                    self.load_task(row);
                    if let Some(s) = self.tasks.get_mut(&key) {
                        s.dirty = true;
                    }
                }
            }
            Stmt::InsertFix => {
                if !self.fixes.contains_key(&key) {
                    let failure = text(op, 1)
                        .and_then(|f| self.failures.get(f))
                        .map(|s| &s.row);
                    let row = FixRow {
                        id: Some(key.clone()),
                        failure_id: owned(op, 1),
                        tenant: owned(op, 2),
                        repository: failure
                            .and_then(|f| f.repository.clone())
                            .or_else(|| owned(op, 3)),
                        branch: failure.and_then(|f| f.branch.clone()),
                        commit_sha: failure.and_then(|f| f.commit_sha.clone()),
                        failure_type: failure.and_then(|f| f.failure_type.clone()),
                        signature: failure.and_then(|f| f.signature.clone()),
                        status: Some("queued".into()),
                        created_at: owned(op, 4),
                        updated_at: owned(op, 4),
                        ..FixRow::default()
                    };
                    self.load_fix(row);
                    if let Some(s) = self.fixes.get_mut(&key) {
                        s.dirty = true;
                    }
                }
            }
            Stmt::TaskStarted => {
                let attempt = int(op, 1);
                self.task(&key, |r| {
                    let ok = !is(&r.status, &["completed", "partial", "cancelled"])
                        && (r.attempts < attempt
                            || (r.attempts == attempt && is(&r.status, &["queued"])));
                    if ok {
                        r.status = Some("running".into());
                        r.attempts = attempt;
                        r.started_at = r.started_at.clone().or_else(|| owned(op, 2));
                        r.completed_at = None;
                        r.updated_at = greatest(&r.updated_at, owned(op, 2));
                    }
                    ok
                });
            }
            Stmt::FixInProgress => {
                let running = matches!(self.task_status(&key), Some(("running", _)));
                self.fix(&key, |r| {
                    let ok = running && is(&r.status, &["queued", "failed"]);
                    if ok {
                        r.status = Some("in_progress".into());
                        r.updated_at = greatest(&r.updated_at, owned(op, 1));
                    }
                    ok
                });
            }
            Stmt::TaskCompleted => {
                self.task(&key, |r| {
                    r.status = owned(op, 1);
                    r.result = owned(op, 2);
                    r.completed_at = owned(op, 3);
                    r.updated_at = greatest(&r.updated_at, owned(op, 3));
                    true
                });
            }
            Stmt::TaskFailed => {
                let attempt = int(op, 1);
                self.task(&key, |r| {
                    let ok = r.attempts <= attempt
                        && attempt.is_some()
                        && r.attempts.is_some()
                        && !is(&r.status, &["completed", "partial", "cancelled"]);
                    if ok {
                        r.status = Some("failed".into());
                        r.error_message = owned(op, 2);
                        r.attempts = r.attempts.max(attempt);
                        r.result = owned(op, 3);
                        r.completed_at = owned(op, 4);
                        r.updated_at = greatest(&r.updated_at, owned(op, 4));
                    }
                    ok
                });
            }
            Stmt::FixTaskFailed => {
                let attempt = int(op, 1);
                let failed = matches!(self.task_status(&key), Some(("failed", a)) if a == attempt);
                self.fix(&key, |r| {
                    let ok = failed && is(&r.status, &["queued", "in_progress"]);
                    if ok {
                        r.status = Some("failed".into());
                        r.updated_at = greatest(&r.updated_at, owned(op, 2));
                    }
                    ok
                });
            }
            Stmt::TaskCancelled => {
                self.task(&key, |r| {
                    let ok = is(&r.status, &["queued", "running", "failed"]);
                    if ok {
                        r.status = Some("cancelled".into());
                        r.error_message = owned(op, 1);
                        r.completed_at = owned(op, 2);
                        r.updated_at = greatest(&r.updated_at, owned(op, 2));
                    }
                    ok
                });
            }
            Stmt::FixTaskCancelled => {
                let cancelled = matches!(self.task_status(&key), Some(("cancelled", _)));
                self.fix(&key, |r| {
                    let ok = cancelled && is(&r.status, &["queued", "in_progress", "failed"]);
                    if ok {
                        r.status = Some("cancelled".into());
                        r.status_reason = owned(op, 1);
                        r.updated_at = greatest(&r.updated_at, owned(op, 2));
                    }
                    ok
                });
            }
            Stmt::FixCandidate => {
                self.fix(&key, |r| {
                    let ok = !is(
                        &r.status,
                        &[
                            "validated",
                            "pr_opened",
                            "merged",
                            "closed",
                            "no_fix",
                            "not_fixable",
                        ],
                    );
                    if ok {
                        r.candidate_id = owned(op, 1);
                        r.strategy = owned(op, 2);
                        r.diff = owned(op, 3);
                        r.files_changed = owned(op, 4);
                        r.updated_at = greatest(&r.updated_at, owned(op, 5));
                    }
                    ok
                });
            }
            Stmt::FixValidated => {
                let status = owned(op, 4);
                self.fix(&key, |r| {
                    let finished = is(
                        &r.status,
                        &["pr_opened", "merged", "closed", "no_fix", "not_fixable"],
                    );
                    let downgrade =
                        is(&r.status, &["validated"]) && is(&status, &["validation_failed"]);
                    let ok = !finished && !downgrade;
                    if ok {
                        r.confidence = float(op, 2);
                        r.validation = owned(op, 3);
                        r.status = status;
                        r.updated_at = greatest(&r.updated_at, owned(op, 5));
                    }
                    ok
                });
            }
            Stmt::FixNotFound => {
                self.fix(&key, |r| {
                    let ok = is(
                        &r.status,
                        &["queued", "in_progress", "validation_failed", "failed"],
                    );
                    if ok {
                        r.status = owned(op, 1);
                        r.status_reason = owned(op, 2);
                        r.updated_at = greatest(&r.updated_at, owned(op, 3));
                    }
                    ok
                });
            }
            Stmt::FixBranch => {
                self.fix(&key, |r| {
                    r.fix_branch = owned(op, 1);
                    r.fix_commit = owned(op, 2);
                    r.updated_at = greatest(&r.updated_at, owned(op, 3));
                    true
                });
            }
            Stmt::FixPrOpened => {
                self.fix(&key, |r| {
                    r.pr_url = owned(op, 1);
                    r.pr_number = int(op, 2);
                    r.fix_branch = r.fix_branch.clone().or_else(|| owned(op, 3));
                    if !is(&r.status, &["merged", "closed"]) {
                        r.status = Some("pr_opened".into());
                    }
                    r.updated_at = greatest(&r.updated_at, owned(op, 4));
                    true
                });
            }
            Stmt::FixMerged | Stmt::FixClosed => {
                let ids: Vec<String> = self
                    .fixes_by_pr
                    .get(&key)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                let merged = op.stmt == Stmt::FixMerged;
                for id in ids {
                    self.fix(&id, |r| {
                        let ok = merged || !is(&r.status, &["merged"]);
                        if ok {
                            r.status = Some(if merged { "merged" } else { "closed" }.into());
                            r.updated_at = greatest(&r.updated_at, owned(op, 1));
                        }
                        ok
                    });
                }
            }
            Stmt::FixOutcome => {
                self.fix(&key, |r| {
                    r.fix_success = boolean(op, 1);
                    r.time_to_pr_seconds = float(op, 2).or(r.time_to_pr_seconds);
                    r.time_to_fix_seconds = float(op, 3);
                    r.updated_at = greatest(&r.updated_at, owned(op, 4));
                    true
                });
            }
            Stmt::InsertPullRequest => {
                self.pull_requests.entry(key.clone()).or_insert_with(|| {
                    slot(
                        PullRequestRow {
                            url: Some(key),
                            task_id: owned(op, 1),
                            repository: owned(op, 2),
                            forge: owned(op, 3),
                            number: int(op, 4),
                            branch: owned(op, 5),
                            base: owned(op, 6),
                            title: owned(op, 7),
                            draft: boolean(op, 8),
                            state: Some("open".into()),
                            decision_id: owned(op, 9),
                            opened_at: owned(op, 10),
                            updated_at: owned(op, 10),
                            ..PullRequestRow::default()
                        },
                        true,
                    )
                });
            }
            Stmt::PrChecks => {
                if let Some(s) = self.pull_requests.get_mut(&key) {
                    s.row.checks_conclusion = owned(op, 1);
                    s.row.updated_at = greatest(&s.row.updated_at, owned(op, 2));
                    s.dirty = true;
                }
            }
            Stmt::PrMerged => {
                if let Some(s) = self.pull_requests.get_mut(&key) {
                    let r = &mut s.row;
                    r.state = Some("merged".into());
                    r.merged_by = owned(op, 1);
                    r.merge_commit = owned(op, 2);
                    r.merged_at = r.merged_at.clone().or_else(|| owned(op, 3));
                    r.updated_at = greatest(&r.updated_at, owned(op, 3));
                    s.dirty = true;
                }
            }
            Stmt::PrClosed => {
                if let Some(s) = self.pull_requests.get_mut(&key) {
                    let r = &mut s.row;
                    if is(&r.state, &["open"]) {
                        r.state = Some("closed".into());
                        r.closed_by = owned(op, 1);
                        r.closed_at = r.closed_at.clone().or_else(|| owned(op, 2));
                        r.updated_at = greatest(&r.updated_at, owned(op, 2));
                        s.dirty = true;
                    }
                }
            }
            Stmt::PrReadied => {
                if let Some(s) = self.pull_requests.get_mut(&key) {
                    let r = &mut s.row;
                    r.draft = Some(false);
                    r.readied_at = r.readied_at.clone().or_else(|| owned(op, 1));
                    r.updated_at = greatest(&r.updated_at, owned(op, 1));
                    s.dirty = true;
                }
            }
            Stmt::InsertReview => {
                self.reviews.entry(key.clone()).or_insert_with(|| {
                    slot(
                        ReviewRow {
                            id: Some(key),
                            task_id: owned(op, 1),
                            decision_id: owned(op, 2),
                            reason: owned(op, 3),
                            status: Some("pending".into()),
                            requested_at: owned(op, 4),
                            updated_at: owned(op, 4),
                            ..ReviewRow::default()
                        },
                        true,
                    )
                });
            }
            Stmt::ReviewCompleted => {
                if let Some(s) = self.reviews.get_mut(&key) {
                    let r = &mut s.row;
                    r.status = owned(op, 1);
                    r.reviewer = owned(op, 2);
                    r.comment = owned(op, 3);
                    r.completed_at = owned(op, 4);
                    r.updated_at = greatest(&r.updated_at, owned(op, 4));
                    s.dirty = true;
                }
            }
            Stmt::ReviewEscalated => {
                if let Some(s) = self.reviews.get_mut(&key) {
                    let r = &mut s.row;
                    if is(&r.status, &["pending"]) {
                        r.status = Some("escalated".into());
                        r.waited_hours = float(op, 1);
                        r.escalated_at = owned(op, 2);
                        r.updated_at = greatest(&r.updated_at, owned(op, 2));
                        s.dirty = true;
                    }
                }
            }
            Stmt::TaskAssigned => {
                self.task(&key, |r| {
                    r.assigned_agent_id = owned(op, 1);
                    r.assigned_at = owned(op, 2);
                    r.updated_at = greatest(&r.updated_at, owned(op, 2));
                    true
                });
            }
            Stmt::TaskPrediction => {
                self.task(&key, |r| {
                    r.prediction_id = owned(op, 1);
                    r.updated_at = greatest(&r.updated_at, owned(op, 2));
                    true
                });
            }
            Stmt::RollbackDecided => {
                let s = self.rollbacks.entry(key.clone()).or_insert_with(|| {
                    slot(
                        RollbackRow {
                            id: Some(key),
                            ..RollbackRow::default()
                        },
                        true,
                    )
                });
                let r = &mut s.row;
                r.rollback_request_id = owned(op, 1);
                r.tenant = owned(op, 2);
                r.repository = owned(op, 3);
                r.task_id = owned(op, 4);
                r.fix_pr_url = owned(op, 5);
                r.base = owned(op, 6);
                r.revert_commit = owned(op, 7).or_else(|| r.revert_commit.clone());
                r.decision = owned(op, 8);
                r.reason_code = owned(op, 9);
                r.reason = owned(op, 10);
                r.policy_version = owned(op, 11);
                r.revert_branch = owned(op, 12).or_else(|| r.revert_branch.clone());
                r.auto_merge_paused_until = owned(op, 13);
                r.decided_at = owned(op, 14);
                r.updated_at = greatest(&r.updated_at, owned(op, 14));
                s.dirty = true;
            }
            Stmt::RevertOpened => {
                let at = owned(op, 10);
                if let Some(s) = self.rollbacks.get_mut(&key) {
                    let r = &mut s.row;
                    r.base = r.base.clone().or_else(|| owned(op, 5));
                    r.revert_commit = r.revert_commit.clone().or_else(|| owned(op, 6));
                    r.revert_pr_url = owned(op, 7);
                    r.revert_pr_number = int(op, 8);
                    r.revert_branch = r.revert_branch.clone().or_else(|| owned(op, 9));
                    r.revert_opened_at = r.revert_opened_at.clone().or_else(|| at.clone());
                    r.updated_at = greatest(&r.updated_at, at);
                    s.dirty = true;
                } else {
                    let row = RollbackRow {
                        id: Some(key.clone()),
                        tenant: owned(op, 1),
                        repository: owned(op, 2),
                        task_id: owned(op, 3),
                        fix_pr_url: owned(op, 4),
                        base: owned(op, 5),
                        revert_commit: owned(op, 6),
                        revert_pr_url: owned(op, 7),
                        revert_pr_number: int(op, 8),
                        revert_branch: owned(op, 9),
                        revert_opened_at: at.clone(),
                        updated_at: at,
                        ..RollbackRow::default()
                    };
                    self.rollbacks.insert(key, slot(row, true));
                }
            }
            Stmt::RevertFailed => {
                let at = owned(op, 8);
                if let Some(s) = self.rollbacks.get_mut(&key) {
                    let r = &mut s.row;
                    r.base = r.base.clone().or_else(|| owned(op, 5));
                    r.revert_commit = r.revert_commit.clone().or_else(|| owned(op, 6));
                    r.revert_failure = owned(op, 7);
                    r.revert_failed_at = at.clone();
                    r.updated_at = greatest(&r.updated_at, at);
                    s.dirty = true;
                } else {
                    let row = RollbackRow {
                        id: Some(key.clone()),
                        tenant: owned(op, 1),
                        repository: owned(op, 2),
                        task_id: owned(op, 3),
                        fix_pr_url: owned(op, 4),
                        base: owned(op, 5),
                        revert_commit: owned(op, 6),
                        revert_failure: owned(op, 7),
                        revert_failed_at: at.clone(),
                        updated_at: at,
                        ..RollbackRow::default()
                    };
                    self.rollbacks.insert(key, slot(row, true));
                }
            }
            Stmt::AutoMergeEnabled => {
                if let Some(s) = self.pull_requests.get_mut(&key) {
                    let r = &mut s.row;
                    let enabled = greatest(&r.auto_merge_enabled_at, owned(op, 1));
                    r.auto_merge = Some(match (&r.auto_merge_disabled_at, &enabled) {
                        (None, _) => true,
                        (Some(d), Some(e)) => d < e,
                        (Some(_), None) => false,
                    });
                    r.auto_merge_enabled_at = enabled;
                    r.updated_at = greatest(&r.updated_at, owned(op, 1));
                    s.dirty = true;
                }
            }
            Stmt::AutoMergeDisabled => {
                if let Some(s) = self.pull_requests.get_mut(&key) {
                    let r = &mut s.row;
                    let disabled = greatest(&r.auto_merge_disabled_at, owned(op, 1));
                    r.auto_merge = Some(match (&r.auto_merge_enabled_at, &disabled) {
                        (Some(e), Some(d)) => e > d,
                        _ => false,
                    });
                    r.auto_merge_disabled_at = disabled;
                    r.updated_at = greatest(&r.updated_at, owned(op, 1));
                    s.dirty = true;
                }
            }
            _ => {}
        }
    }

    /// The rows the batch changed, per table, in key order.
    pub(crate) fn into_writes(self) -> Writes {
        Writes {
            failures: dirty(self.failures),
            decisions: self.decisions,
            agents: dirty(self.agents),
            tasks: dirty(self.tasks),
            fixes: dirty(self.fixes),
            pull_requests: dirty(self.pull_requests),
            reviews: dirty(self.reviews),
            rollbacks: dirty(self.rollbacks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(stmt: Stmt, params: Vec<Param>) -> Op {
        Op { stmt, params }
    }

    fn t(s: &str) -> Param {
        Param::Text(Some(s.into()))
    }

    fn task(id: &str, agent: &str, status: &str, at: &str) -> TaskRow {
        TaskRow {
            id: Some(id.into()),
            agent_id: Some(agent.into()),
            status: Some(status.into()),
            attempts: Some(1),
            completed_at: Some(at.into()),
            updated_at: Some(at.into()),
            ..TaskRow::default()
        }
    }

    #[test]
    fn health_averages_the_latest_fifty_finished_tasks_of_memory_and_database() {
        let mut s = State::default();
        s.load_agent(AgentRow {
            id: Some("a".into()),
            health_score: Some(1.0),
            updated_at: Some("t0".into()),
            ..AgentRow::default()
        });
        // The database's latest: 60 completed tasks, older than the batch's.
        for i in 0..60 {
            s.load_finished("a", format!("db{i:02}"), "completed", format!("t1-{i:02}"));
        }
        // A loaded task the database also listed: the row in memory wins.
        s.load_task(task("mem", "a", "running", "t0"));
        s.load_finished("a", "mem".into(), "completed", "t9".into());
        s.apply(&op(
            Stmt::TaskFailed,
            vec![t("mem"), Param::Int(Some(1)), t("boom"), t("{}"), t("t2")],
        ));
        s.apply(&op(Stmt::AgentHealth, vec![t("a"), t("t2")]));
        let w = s.into_writes();
        assert_eq!(w.agents.len(), 1);
        // One failure among the latest 50: 49/50.
        assert_eq!(w.agents[0].health_score, Some(49.0 / 50.0));
        assert_eq!(w.agents[0].updated_at.as_deref(), Some("t2"));
        assert_eq!(w.tasks[0].status.as_deref(), Some("failed"));
    }

    #[test]
    fn keys_cover_lookups_by_failure_and_pull_request() {
        let ops = vec![
            op(Stmt::ClassifyFixes, vec![t("f1")]),
            op(Stmt::FixMerged, vec![t("https://pr/1")]),
            op(Stmt::InsertFix, vec![t("x1"), t("f2")]),
        ];
        let k = Keys::of(&ops);
        assert!(k.fixes_by_failure.contains("f1"));
        assert!(k.fixes_by_pr.contains("https://pr/1"));
        assert!(k.failures.contains("f2"));
        assert!(k.fixes.contains("x1"));
    }
}
