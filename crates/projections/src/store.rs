//! The projection store: one enum over the SQLite and PostgreSQL backends, and the
//! transaction in which a batch of facts and its checkpoint are written together.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sentinel_events::Event;
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Postgres, Row, Sqlite, Transaction};
use tracing::warn;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::fold::{HEALTH_WINDOW, Keys, State, Writes};
use crate::phases::{self, Phase};
use crate::plan::{Op, Param, plan};
use crate::rows::{AgentRow, FailureRow, FixRow, PullRequestRow, ReviewRow, RollbackRow, TaskRow};
use crate::sql::{Stmt, batch_sql, has_batch_form, sql};
use crate::{Error, Result, migrate};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite (the embedded deployment; possibly the event log's own file).
    Sqlite,
    /// PostgreSQL (the distributed deployment).
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`; also the name of the backend's `migrations/` folder.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The projection database. Cheap to clone: clones share the connection pool.
///
/// Writes go through [`Store::begin`] (the [`Projector`](crate::Projector) does this);
/// the read queries (`list_fixes`, `get_agent`, …) are methods of the store.
#[derive(Debug, Clone)]
pub enum Store {
    /// SQLite.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// A projection's stored input position in one partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    /// The projection's name.
    pub projection: String,
    /// The topic it reads.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset to read.
    pub next_offset: i64,
    /// How many records of this partition could not be applied (undecodable, or facts
    /// with malformed ids) and were skipped.
    pub skipped: i64,
    /// When the checkpoint last moved (wall clock).
    pub updated_at: DateTime<Utc>,
}

/// What [`StoreTx::apply`] did with a batch of events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Facts that the projections use, applied.
    pub applied: usize,
    /// Facts of types the projections do not use.
    pub ignored: usize,
    /// Facts with an id that is not a UUID where the tables need one; skipped with a warning.
    pub invalid: usize,
}

/// A row of `load_checkpoints`.
fn checkpoint(r: &dyn RowExt) -> Result<Checkpoint> {
    Ok(Checkpoint {
        projection: r.text("projection")?,
        topic: r.text("topic")?,
        partition: i32::try_from(r.int("partition")?)
            .map_err(|e| Error::CorruptRow(format!("partition: {e}")))?,
        next_offset: r.int("next_offset")?,
        skipped: r.int("skipped")?,
        updated_at: r.time("updated_at")?,
    })
}

impl Store {
    /// Folds a batch into tables that held nothing before the batches `written` lists (a
    /// rebuild's fresh shadow, written by nothing else), while the batch before it may
    /// still be being written (its rows are `recent`): a row no earlier batch wrote cannot
    /// exist, a row of the batch before is taken from `recent`, and only the others are
    /// loaded — from the store (committed), in a transaction that is only read, or through
    /// `shared` when every load and write goes through one transaction (in place) — and
    /// only once `ready` says the tables exist. Returns the rows to update and the rows to
    /// append ([`Written::split`]), recorded in `written`.
    pub(crate) async fn fold_fresh(
        &self,
        planned: Planned,
        written: &mut Written,
        recent: &Recent,
        ready: &crate::projector::Ready,
        shared: Option<&crate::projector::SharedTx>,
    ) -> Result<(Writes, Writes, ApplyOutcome)> {
        let Planned {
            ops,
            outcome,
            mut keys,
        } = planned;
        let t = Instant::now();
        written.restrict(&mut keys);
        let mut state = State::default();
        recent.fill(&mut state, &mut keys);
        let t = phases::lap(Phase::Keys, t);
        if keys.needs_rows() {
            ready.wait().await?;
            if let Some(shared) = shared {
                // One transaction for everything: the rows earlier batches wrote are only
                // visible in it (this waits for the batch being written).
                let mut guard = shared.lock().await;
                let tx = guard.as_mut().ok_or_else(|| {
                    Error::CorruptRow("the rebuild's transaction has ended".into())
                })?;
                tx.load(&mut state, &keys, Some(written), Some(recent))
                    .await?;
            } else {
                // Loads only read (the batch being written holds no lock on what they
                // read: its rows come from `recent`).
                let mut tx = self.begin().await?;
                tx.load(&mut state, &keys, Some(written), Some(recent))
                    .await?;
                tx.rollback().await?;
            }
        } else {
            load_finished_written(&mut state, &keys, written);
        }
        let t = phases::lap(Phase::Load, t);
        for op in &ops {
            state.apply(op);
        }
        let (existing, new) = written.split(state.into_writes());
        phases::lap(Phase::Fold, t);
        Ok((existing, new, outcome))
    }

    /// Connects to `sqlite://PATH` (relative; `sqlite:///abs/path` for an absolute path),
    /// `sqlite::memory:`, or `postgres://…` / `postgresql://…`. Does not migrate.
    ///
    /// A SQLite file is created if missing and opened in WAL mode. An in-memory SQLite
    /// database lives as long as the pool, which holds exactly one connection.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for another scheme; connection errors.
    pub async fn connect(url: &str) -> Result<Store> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            return Ok(Store::Postgres(pool));
        }
        if !url.starts_with("sqlite:") {
            return Err(invalid(
                "expected sqlite://PATH, sqlite::memory: or postgres://…".into(),
            ));
        }
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| invalid(e.to_string()))?
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?
        } else {
            let path = options.get_filename().to_owned();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
            }
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // Rows and checkpoint commit together, so losing the last transactions on
                // power loss only means re-applying them: NORMAL is enough.
                .synchronous(SqliteSynchronous::Normal);
            SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await?
        };
        Ok(Store::Sqlite(pool))
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the embedded migrations that are not applied yet (recorded in
    /// `_sqlx_migrations`, compatible with `sqlx migrate run`). Safe to call on every start
    /// and from several processes at once (PostgreSQL takes an advisory lock).
    ///
    /// # Errors
    ///
    /// When a migration fails, or an applied migration's checksum differs from the
    /// embedded file (a released migration was edited).
    pub async fn migrate(&self) -> Result<()> {
        let migrator = migrate::migrator(self.backend()).await?;
        match self {
            Store::Sqlite(pool) => migrator.run(pool).await?,
            Store::Postgres(pool) => migrator.run(pool).await?,
        }
        Ok(())
    }

    /// Starts a write transaction.
    ///
    /// # Errors
    ///
    /// When no connection can be had.
    pub async fn begin(&self) -> Result<StoreTx> {
        Ok(StoreTx {
            inner: match self {
                Store::Sqlite(pool) => TxInner::Sqlite(pool.begin().await?),
                Store::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
            },
        })
    }

    /// The stored checkpoints of `projection` on `topic`, by partition.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn checkpoints(&self, projection: &str, topic: &str) -> Result<Vec<Checkpoint>> {
        let params = vec![text(projection), text(topic)];
        self.fetch_all(Stmt::LoadCheckpoints, &params, checkpoint)
            .await
    }

    /// Empties every projection table and forgets `projection`'s checkpoints, in one
    /// transaction, so the next run replays the log from offset 0.
    ///
    /// Readers see empty tables until the replay catches up; [`rebuild`](crate::rebuild)
    /// replays into fresh tables and swaps them in instead, so readers never do.
    ///
    /// It first locks the checkpoint table, as projectors, rebuilds and swaps do, so it
    /// waits for a batch being written (or makes it wait) rather than deadlocking with it.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn reset(&self, projection: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        tx.execute(&[
            Op {
                stmt: Stmt::LockCheckpoints,
                params: Vec::new(),
            },
            Op {
                stmt: Stmt::ResetRows,
                params: Vec::new(),
            },
            Op {
                stmt: Stmt::ResetCheckpoints,
                params: vec![text(projection)],
            },
        ])
        .await?;
        tx.commit().await
    }

    /// Checks that the database answers (`SELECT 1`), for readiness probes.
    ///
    /// # Errors
    ///
    /// When it does not.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Store::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Store::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(pool) => pool.close().await,
            Store::Postgres(pool) => pool.close().await,
        }
    }

    /// Runs a read statement and maps every row.
    pub(crate) async fn fetch_all<T>(
        &self,
        stmt: Stmt,
        params: &[Param],
        map: impl Fn(&dyn RowExt) -> Result<T>,
    ) -> Result<Vec<T>> {
        let backend = self.backend();
        match self {
            Store::Sqlite(pool) => {
                let rows = bind_sqlite(sqlx::query(sql(backend, stmt)?), params)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|r| map(r)).collect()
            }
            Store::Postgres(pool) => {
                let rows = bind_pg(sqlx::query(sql(backend, stmt)?), params)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|r| map(r)).collect()
            }
        }
    }

    /// Runs a read statement expected to return at most one row.
    pub(crate) async fn fetch_optional<T>(
        &self,
        stmt: Stmt,
        params: &[Param],
        map: impl Fn(&dyn RowExt) -> Result<T>,
    ) -> Result<Option<T>> {
        Ok(self.fetch_all(stmt, params, map).await?.into_iter().next())
    }
}

fn text(s: &str) -> Param {
    Param::Text(Some(s.to_owned()))
}

/// The keys of the rows a rebuild has written to its fresh shadow so far, per table and
/// per lookup the fold makes (see [`StoreTx::apply_planned`]), and every agent's finished
/// tasks (for the health window). It grows with the number of rows (tens of bytes per row,
/// about 150 more per finished task: 1M facts, about 60 MB).
///
/// Rows are recorded before their batch commits: a batch that fails ends the rebuild (its
/// shadow is dropped), so nothing is ever read back from a `Written` that lists rows the
/// tables do not hold.
#[derive(Debug, Default)]
pub(crate) struct Written {
    failures: HashSet<String>,
    agents: HashSet<String>,
    tasks: HashSet<String>,
    fixes: HashSet<String>,
    fixes_by_failure: HashSet<String>,
    fixes_by_pr: HashSet<String>,
    pull_requests: HashSet<String>,
    reviews: HashSet<String>,
    rollbacks: HashSet<String>,
    /// Agents with tasks written (their health score reads finished ones back).
    finished_by: HashSet<String>,
    /// Policy decisions written (insert-only).
    decisions: HashSet<String>,
    /// agent id → its finished tasks in the tables, by (completed_at, id) → status: what
    /// `load_agent_finished` would read, kept here because a fresh table has no planner
    /// statistics and that query would then sort all of an agent's tasks every batch.
    finished: HashMap<String, BTreeMap<(String, String), String>>,
    /// task id → (agent id, completed_at) of its entry in `finished`.
    finished_entry: HashMap<String, (String, String)>,
    /// Partition → the next offset of the tables' checkpoint (what the last committed
    /// batch moved it to; absent: 0).
    pub(crate) next: HashMap<i32, i64>,
}

/// Enough of each health-scored agent's latest finished tasks, from `written` (fresh
/// tables), that without the tasks `keys` loads the health window is still full.
fn load_finished_written(state: &mut State, keys: &Keys, written: &Written) {
    let limit = HEALTH_WINDOW + keys.tasks.len();
    for agent in &keys.health {
        for (id, status, at) in written.latest_finished(agent, limit) {
            state.load_finished(agent, id, &status, at);
        }
    }
}

impl Written {
    /// Drops from `keys` the rows no earlier batch wrote.
    fn restrict(&self, keys: &mut Keys) {
        keys.failures.retain(|k| self.failures.contains(k));
        keys.agents.retain(|k| self.agents.contains(k));
        keys.tasks.retain(|k| self.tasks.contains(k));
        keys.fixes.retain(|k| self.fixes.contains(k));
        keys.fixes_by_failure
            .retain(|k| self.fixes_by_failure.contains(k));
        keys.fixes_by_pr.retain(|k| self.fixes_by_pr.contains(k));
        keys.pull_requests
            .retain(|k| self.pull_requests.contains(k));
        keys.reviews.retain(|k| self.reviews.contains(k));
        keys.rollbacks.retain(|k| self.rollbacks.contains(k));
        keys.health.retain(|k| self.finished_by.contains(k));
    }

    /// Splits a batch's writes into rows an earlier batch wrote (to be updated in place)
    /// and rows new to the shadow (which can simply be appended), and records both.
    fn split(&mut self, w: Writes) -> (Writes, Writes) {
        fn part<T>(
            rows: Vec<T>,
            seen: &HashSet<String>,
            key: fn(&T) -> Option<&str>,
        ) -> (Vec<T>, Vec<T>) {
            // A row without a key goes the update way, which reports the error.
            rows.into_iter()
                .partition(|r| key(r).is_none_or(|k| seen.contains(k)))
        }
        // The shape of the rows' `key` accessors (`fn(&Row)`), for `part`.
        #[allow(clippy::ptr_arg)]
        fn decision_key(p: &Vec<Param>) -> Option<&str> {
            match p.first() {
                Some(Param::Text(v)) => v.as_deref(),
                _ => None,
            }
        }
        let (failures, new_failures) = part(w.failures, &self.failures, FailureRow::key);
        let (decisions, new_decisions) = part(w.decisions, &self.decisions, decision_key);
        let (agents, new_agents) = part(w.agents, &self.agents, AgentRow::key);
        let (tasks, new_tasks) = part(w.tasks, &self.tasks, TaskRow::key);
        let (fixes, new_fixes) = part(w.fixes, &self.fixes, FixRow::key);
        let (pull_requests, new_pull_requests) =
            part(w.pull_requests, &self.pull_requests, PullRequestRow::key);
        let (reviews, new_reviews) = part(w.reviews, &self.reviews, ReviewRow::key);
        let (rollbacks, new_rollbacks) = part(w.rollbacks, &self.rollbacks, RollbackRow::key);
        let existing = Writes {
            failures,
            decisions,
            agents,
            tasks,
            fixes,
            pull_requests,
            reviews,
            rollbacks,
        };
        let new = Writes {
            failures: new_failures,
            decisions: new_decisions,
            agents: new_agents,
            tasks: new_tasks,
            fixes: new_fixes,
            pull_requests: new_pull_requests,
            reviews: new_reviews,
            rollbacks: new_rollbacks,
        };
        self.record(&existing);
        self.record(&new);
        for d in &new.decisions {
            if let Some(k) = decision_key(d) {
                self.decisions.insert(k.to_owned());
            }
        }
        (existing, new)
    }

    /// The latest `limit` finished tasks of `agent` as `(id, status, completed_at)`, newest
    /// first, as `load_agent_finished` returns them.
    fn latest_finished(&self, agent: &str, limit: usize) -> Vec<(String, String, String)> {
        self.finished
            .get(agent)
            .map(|tasks| {
                tasks
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|((at, id), status)| (id.clone(), status.clone(), at.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Keeps `finished` in step with a written task row.
    fn record_finished(&mut self, task: &TaskRow) {
        let Some(id) = &task.id else { return };
        if let Some((agent, at)) = self.finished_entry.remove(id)
            && let Some(tasks) = self.finished.get_mut(&agent)
        {
            tasks.remove(&(at, id.clone()));
        }
        let finished = matches!(
            task.status.as_deref(),
            Some("completed" | "partial" | "failed")
        );
        if let (true, Some(agent), Some(at), Some(status)) =
            (finished, &task.agent_id, &task.completed_at, &task.status)
        {
            self.finished
                .entry(agent.clone())
                .or_default()
                .insert((at.clone(), id.clone()), status.clone());
            self.finished_entry
                .insert(id.clone(), (agent.clone(), at.clone()));
        }
    }

    /// Adds the rows a batch writes.
    fn record(&mut self, w: &Writes) {
        fn add<'a>(set: &mut HashSet<String>, keys: impl Iterator<Item = Option<&'a str>>) {
            for k in keys.flatten() {
                if !set.contains(k) {
                    set.insert(k.to_owned());
                }
            }
        }
        add(&mut self.failures, w.failures.iter().map(FailureRow::key));
        add(&mut self.agents, w.agents.iter().map(AgentRow::key));
        add(&mut self.tasks, w.tasks.iter().map(TaskRow::key));
        for task in &w.tasks {
            self.record_finished(task);
        }
        add(
            &mut self.finished_by,
            w.tasks.iter().map(|t| t.agent_id.as_deref()),
        );
        add(&mut self.fixes, w.fixes.iter().map(FixRow::key));
        add(
            &mut self.fixes_by_failure,
            w.fixes.iter().map(|f| f.failure_id.as_deref()),
        );
        add(
            &mut self.fixes_by_pr,
            w.fixes.iter().map(|f| f.pr_url.as_deref()),
        );
        add(
            &mut self.pull_requests,
            w.pull_requests.iter().map(PullRequestRow::key),
        );
        add(&mut self.reviews, w.reviews.iter().map(ReviewRow::key));
        add(
            &mut self.rollbacks,
            w.rollbacks.iter().map(RollbackRow::key),
        );
    }
}

/// The rows of the batch being written while a rebuild folds the next one
/// ([`Store::fold_fresh`]): the newest version of each, which the store may not hold yet.
/// The batch's new rows are shared with its write, not copied: each table maps a key to
/// its row there, or to a copy of an updated row (few: those of earlier batches).
#[derive(Debug, Default)]
pub(crate) struct Recent {
    new: Arc<Writes>,
    failures: HashMap<String, At<FailureRow>>,
    agents: HashMap<String, At<AgentRow>>,
    tasks: HashMap<String, At<TaskRow>>,
    fixes: HashMap<String, At<FixRow>>,
    pull_requests: HashMap<String, At<PullRequestRow>>,
    reviews: HashMap<String, At<ReviewRow>>,
    rollbacks: HashMap<String, At<RollbackRow>>,
}

/// Where a row of [`Recent`] is.
#[derive(Debug)]
enum At<T> {
    /// A row earlier batches wrote, updated by this one (copied).
    Updated(T),
    /// The row at this index of the batch's new rows.
    New(usize),
}

impl<T> At<T> {
    fn get<'a>(&'a self, new: &'a [T]) -> Option<&'a T> {
        match self {
            At::Updated(row) => Some(row),
            At::New(i) => new.get(*i),
        }
    }
}

impl Recent {
    /// The rows of a batch's writes (both parts of [`Written::split`]).
    pub(crate) fn of(existing: &Writes, new: Arc<Writes>) -> Recent {
        fn index<T: Clone>(
            map: &mut HashMap<String, At<T>>,
            existing: &[T],
            new: &[T],
            key: fn(&T) -> Option<&str>,
        ) {
            map.reserve(existing.len() + new.len());
            for row in existing {
                if let Some(k) = key(row) {
                    map.insert(k.to_owned(), At::Updated(row.clone()));
                }
            }
            for (i, row) in new.iter().enumerate() {
                if let Some(k) = key(row) {
                    map.insert(k.to_owned(), At::New(i));
                }
            }
        }
        let (e, n) = (existing, &*new);
        let mut r = Recent::default();
        index(&mut r.failures, &e.failures, &n.failures, FailureRow::key);
        index(&mut r.agents, &e.agents, &n.agents, AgentRow::key);
        index(&mut r.tasks, &e.tasks, &n.tasks, TaskRow::key);
        index(&mut r.fixes, &e.fixes, &n.fixes, FixRow::key);
        index(
            &mut r.pull_requests,
            &e.pull_requests,
            &n.pull_requests,
            PullRequestRow::key,
        );
        index(&mut r.reviews, &e.reviews, &n.reviews, ReviewRow::key);
        index(
            &mut r.rollbacks,
            &e.rollbacks,
            &n.rollbacks,
            RollbackRow::key,
        );
        r.new = new;
        r
    }

    fn has_fix(&self, id: &str) -> bool {
        self.fixes.contains_key(id)
    }

    /// Puts the rows `keys` names that are here into `state` and drops them from `keys`
    /// (the store need not load them), plus the fixes here that the failure and pull
    /// request lookups of `keys` match (the store adds the others).
    fn fill(&self, state: &mut State, keys: &mut Keys) {
        fn take<T: Clone>(
            rows: &HashMap<String, At<T>>,
            new: &[T],
            keys: &mut BTreeSet<String>,
            mut load: impl FnMut(T),
        ) {
            keys.retain(|k| match rows.get(k).and_then(|at| at.get(new)) {
                Some(row) => {
                    load(row.clone());
                    false
                }
                None => true,
            });
        }
        let new = &*self.new;
        take(&self.failures, &new.failures, &mut keys.failures, |r| {
            state.load_failure(r)
        });
        take(&self.agents, &new.agents, &mut keys.agents, |r| {
            state.load_agent(r)
        });
        // Tasks before anything reads the agents' finished tasks.
        take(&self.tasks, &new.tasks, &mut keys.tasks, |r| {
            state.load_task(r)
        });
        take(&self.fixes, &new.fixes, &mut keys.fixes, |r| {
            state.load_fix(r)
        });
        take(
            &self.pull_requests,
            &new.pull_requests,
            &mut keys.pull_requests,
            |r| state.load_pull_request(r),
        );
        take(&self.reviews, &new.reviews, &mut keys.reviews, |r| {
            state.load_review(r)
        });
        take(&self.rollbacks, &new.rollbacks, &mut keys.rollbacks, |r| {
            state.load_rollback(r)
        });
        if keys.fixes_by_failure.is_empty() && keys.fixes_by_pr.is_empty() {
            return;
        }
        for fix in self.fixes.values().filter_map(|at| at.get(&new.fixes)) {
            let by_failure = fix
                .failure_id
                .as_ref()
                .is_some_and(|f| keys.fixes_by_failure.contains(f));
            let by_pr = fix
                .pr_url
                .as_ref()
                .is_some_and(|u| keys.fixes_by_pr.contains(u));
            if by_failure || by_pr {
                state.load_fix(fix.clone());
            }
        }
    }
}

/// A batch of events turned into writes ([`Planned::of`]): pure, so the read-ahead does
/// it while the previous batch is written.
#[derive(Debug)]
pub(crate) struct Planned {
    ops: Vec<Op>,
    outcome: ApplyOutcome,
    keys: Keys,
}

impl Planned {
    /// Plans `events` and lists the rows their writes touch.
    pub(crate) fn of(events: &[Event]) -> Planned {
        let t = Instant::now();
        let (ops, outcome) = plan_all(events);
        let t = phases::lap(Phase::Plan, t);
        let keys = Keys::of(&ops);
        phases::lap(Phase::Keys, t);
        Planned { ops, outcome, keys }
    }

    /// The plan of this batch's events followed by `later`'s (planning is per event, so
    /// planning two halves and appending equals planning the whole).
    pub(crate) fn append(&mut self, later: Planned) {
        self.ops.extend(later.ops);
        self.outcome.applied += later.outcome.applied;
        self.outcome.ignored += later.outcome.ignored;
        self.outcome.invalid += later.outcome.invalid;
        self.keys.append(later.keys);
    }
}

enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction on the store: apply events, move the checkpoint, then commit.
/// Dropping it without [`StoreTx::commit`] rolls everything back.
pub struct StoreTx {
    inner: TxInner,
}

impl StoreTx {
    /// A PostgreSQL transaction begun by the caller (an in-place rebuild prepares it on a
    /// task of its own).
    pub(crate) fn postgres(tx: Transaction<'static, Postgres>) -> StoreTx {
        StoreTx {
            inner: TxInner::Postgres(tx),
        }
    }
}

impl std::fmt::Debug for StoreTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.inner {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        };
        f.debug_struct("StoreTx")
            .field("backend", &backend)
            .finish()
    }
}

impl StoreTx {
    /// Applies events in order. Facts the projections do not use are counted as ignored;
    /// facts whose ids are malformed are logged, counted as invalid and skipped.
    ///
    /// The batch is folded in memory (see the `fold` module): the rows it touches are
    /// loaded once (and locked on PostgreSQL), every fact is applied to them in order, and
    /// each table's changed rows are written with one statement per table (PostgreSQL
    /// `UNNEST`, SQLite multi-row upserts) — the same rows as applying every fact with its
    /// own statements, as `StoreTx::apply_row_by_row` (feature `testing`) does.
    ///
    /// # Errors
    ///
    /// Database errors; the transaction should then be dropped.
    pub async fn apply(&mut self, events: &[Event]) -> Result<ApplyOutcome> {
        self.apply_planned(Planned::of(events)).await
    }

    /// [`StoreTx::apply`] of a batch planned beforehand (by the read-ahead).
    pub(crate) async fn apply_planned(&mut self, planned: Planned) -> Result<ApplyOutcome> {
        let Planned { ops, outcome, keys } = planned;
        let t = Instant::now();
        let mut state = State::default();
        self.load(&mut state, &keys, None, None).await?;
        let t = phases::lap(Phase::Load, t);
        for op in &ops {
            state.apply(op);
        }
        let writes = state.into_writes();
        phases::lap(Phase::Fold, t);
        self.write(writes).await?;
        Ok(outcome)
    }

    /// Writes a batch folded by [`Store::fold_fresh`]: updates rows earlier batches
    /// wrote, appends the new ones (`COPY` on PostgreSQL).
    ///
    /// # Errors
    ///
    /// Database errors; the transaction should then be dropped.
    pub(crate) async fn write_fresh(&mut self, existing: Writes, new: &Writes) -> Result<()> {
        self.write(existing).await?;
        self.append_new(new).await
    }

    /// Applies events in order with one statement per write, as the projections did
    /// before writes were batched. Kept as the reference the batched path is tested
    /// against; same results, much slower.
    ///
    /// # Errors
    ///
    /// Database errors; the transaction should then be dropped.
    #[cfg(feature = "testing")]
    pub async fn apply_row_by_row(&mut self, events: &[Event]) -> Result<ApplyOutcome> {
        let (ops, outcome) = plan_all(events);
        self.execute(&ops).await?;
        Ok(outcome)
    }

    /// Loads every row `keys` names into `state` (locking them on PostgreSQL); the agents'
    /// latest finished tasks come from `written` when it is given (fresh tables), and fixes
    /// in `recent` are not taken from the store.
    async fn load(
        &mut self,
        state: &mut State,
        keys: &Keys,
        written: Option<&Written>,
        recent: Option<&Recent>,
    ) -> Result<()> {
        for row in self
            .load_rows(Stmt::LoadFailures, &keys.failures, FailureRow::from_row)
            .await?
        {
            state.load_failure(row);
        }
        for row in self
            .load_rows(Stmt::LoadAgents, &keys.agents, AgentRow::from_row)
            .await?
        {
            state.load_agent(row);
        }
        for row in self
            .load_rows(Stmt::LoadTasks, &keys.tasks, TaskRow::from_row)
            .await?
        {
            state.load_task(row);
        }
        for (stmt, set) in [
            (Stmt::LoadFixes, &keys.fixes),
            (Stmt::LoadFixesByFailure, &keys.fixes_by_failure),
            (Stmt::LoadFixesByPr, &keys.fixes_by_pr),
        ] {
            for row in self.load_rows(stmt, set, FixRow::from_row).await? {
                // A fix of the batch being written is newer in `recent` (loaded there if
                // it matches); the store's copy may match a lookup the newer one does not.
                if recent.is_some_and(|r| row.key().is_some_and(|k| r.has_fix(k))) {
                    continue;
                }
                state.load_fix(row);
            }
        }
        for row in self
            .load_rows(
                Stmt::LoadPullRequests,
                &keys.pull_requests,
                PullRequestRow::from_row,
            )
            .await?
        {
            state.load_pull_request(row);
        }
        for row in self
            .load_rows(Stmt::LoadReviews, &keys.reviews, ReviewRow::from_row)
            .await?
        {
            state.load_review(row);
        }
        for row in self
            .load_rows(Stmt::LoadRollbacks, &keys.rollbacks, RollbackRow::from_row)
            .await?
        {
            state.load_rollback(row);
        }
        // Enough of each agent's latest finished tasks that, without the tasks loaded
        // above, the health window is still full.
        if let Some(w) = written {
            load_finished_written(state, keys, w);
            return Ok(());
        }
        let limit = i64::try_from(HEALTH_WINDOW + keys.tasks.len()).unwrap_or(i64::MAX);
        for agent in &keys.health {
            let params = vec![text(agent), Param::Int(Some(limit))];
            let rows = self
                .fetch(Stmt::LoadAgentFinished, &params, |r| {
                    Ok((
                        r.text("id")?,
                        r.text("status")?,
                        r.time_text("completed_at")?,
                    ))
                })
                .await?;
            for (id, status, at) in rows {
                if let Some(at) = at {
                    state.load_finished(agent, id, &status, at);
                }
            }
        }
        Ok(())
    }

    /// Runs a `load_<table>` statement for `keys` (nothing when there are none).
    async fn load_rows<T>(
        &mut self,
        stmt: Stmt,
        keys: &BTreeSet<String>,
        map: impl Fn(&dyn RowExt) -> Result<T>,
    ) -> Result<Vec<T>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&String> = keys.iter().collect();
        match &mut self.inner {
            TxInner::Sqlite(tx) => {
                let json = serde_json::to_string(&keys)
                    .map_err(|e| Error::CorruptRow(format!("keys: {e}")))?;
                let rows = sqlx::query(sql(Backend::Sqlite, stmt)?)
                    .bind(json)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| map(r)).collect()
            }
            TxInner::Postgres(tx) => {
                let rows = sqlx::query(sql(Backend::Postgres, stmt)?)
                    .bind(keys)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| map(r)).collect()
            }
        }
    }

    /// The checkpoints of `projection` on `topic` as this transaction sees them (its own
    /// uncommitted moves included), by partition.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub(crate) async fn checkpoints(
        &mut self,
        projection: &str,
        topic: &str,
    ) -> Result<Vec<Checkpoint>> {
        let params = vec![text(projection), text(topic)];
        self.fetch(Stmt::LoadCheckpoints, &params, checkpoint).await
    }

    /// Runs a read statement in the transaction and maps every row.
    async fn fetch<T>(
        &mut self,
        stmt: Stmt,
        params: &[Param],
        map: impl Fn(&dyn RowExt) -> Result<T>,
    ) -> Result<Vec<T>> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => {
                let rows = bind_sqlite(sqlx::query(sql(Backend::Sqlite, stmt)?), params)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| map(r)).collect()
            }
            TxInner::Postgres(tx) => {
                let rows = bind_pg(sqlx::query(sql(Backend::Postgres, stmt)?), params)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| map(r)).collect()
            }
        }
    }

    /// Writes each table's final rows: one statement per table on PostgreSQL, chunks of
    /// multi-row upserts on SQLite.
    async fn write(&mut self, w: Writes) -> Result<()> {
        self.upsert(
            Phase::UpsertFailures,
            Stmt::UpsertFailures,
            encode(w.failures, FailureRow::into_params),
        )
        .await?;
        if !w.decisions.is_empty() {
            match &self.inner {
                TxInner::Postgres(_) => {
                    self.upsert_pg(
                        Phase::UpsertDecisions,
                        batch_sql(Stmt::InsertDecision)?,
                        w.decisions,
                    )
                    .await?;
                }
                TxInner::Sqlite(_) => {
                    for p in &w.decisions {
                        self.run(Stmt::InsertDecision, p).await?;
                    }
                }
            }
        }
        self.upsert(
            Phase::UpsertAgents,
            Stmt::UpsertAgents,
            encode(w.agents, AgentRow::into_params),
        )
        .await?;
        self.upsert(
            Phase::UpsertTasks,
            Stmt::UpsertTasks,
            encode(w.tasks, TaskRow::into_params),
        )
        .await?;
        self.upsert(
            Phase::UpsertFixes,
            Stmt::UpsertFixes,
            encode(w.fixes, FixRow::into_params),
        )
        .await?;
        self.upsert(
            Phase::UpsertPullRequests,
            Stmt::UpsertPullRequests,
            encode(w.pull_requests, PullRequestRow::into_params),
        )
        .await?;
        self.upsert(
            Phase::UpsertReviews,
            Stmt::UpsertReviews,
            encode(w.reviews, ReviewRow::into_params),
        )
        .await?;
        self.upsert(
            Phase::UpsertRollbacks,
            Stmt::UpsertRollbacks,
            encode(w.rollbacks, RollbackRow::into_params),
        )
        .await?;
        Ok(())
    }

    /// Writes rows that are not in the tables yet (a fresh shadow's): one `COPY` per table
    /// on PostgreSQL, into the columns the table's batched upsert names; the upserts on
    /// SQLite.
    async fn append_new(&mut self, w: &Writes) -> Result<()> {
        if matches!(self.inner, TxInner::Sqlite(_)) {
            return self.write(w.clone()).await;
        }
        self.copy_rows(Stmt::UpsertFailures, &w.failures).await?;
        self.copy_rows(Stmt::InsertDecision, &w.decisions).await?;
        self.copy_rows(Stmt::UpsertAgents, &w.agents).await?;
        self.copy_rows(Stmt::UpsertTasks, &w.tasks).await?;
        self.copy_rows(Stmt::UpsertFixes, &w.fixes).await?;
        self.copy_rows(Stmt::UpsertPullRequests, &w.pull_requests)
            .await?;
        self.copy_rows(Stmt::UpsertReviews, &w.reviews).await?;
        self.copy_rows(Stmt::UpsertRollbacks, &w.rollbacks).await
    }

    /// Appends `rows` to the table of `stmt` (PostgreSQL) with one `COPY`, encoded
    /// straight from the rows: binary where every column has a binary encoder and every
    /// value fits, text otherwise.
    async fn copy_rows<R: crate::copy::CopyRow>(&mut self, stmt: Stmt, rows: &[R]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let copy = copy_statement(stmt)?;
        let TxInner::Postgres(tx) = &mut self.inner else {
            return Err(Error::CorruptRow("COPY on SQLite".into()));
        };
        let columns = copy_columns(tx, &copy).await?;
        let t = Instant::now();
        let binary = columns
            .as_deref()
            .and_then(|columns| crate::copy::encode_binary(rows, columns));
        let (copy, data) = match binary {
            Some(data) => (format!("{copy} (FORMAT binary)"), data),
            None => (copy, crate::copy::encode_text(rows)),
        };
        let t = phases::lap(Phase::Encode, t);
        let mut sink = tx.copy_in_raw(&copy).await?;
        for chunk in data.chunks(crate::copy::CHUNK) {
            sink.send(chunk).await?;
        }
        sink.finish().await?;
        phases::lap(Phase::Copy, t);
        Ok(())
    }

    /// Runs an `upsert_<table>` statement for `rows` (each one parameter per column).
    async fn upsert(&mut self, phase: Phase, stmt: Stmt, rows: Vec<Vec<Param>>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        match &mut self.inner {
            TxInner::Postgres(_) => {
                self.upsert_pg(phase, sql(Backend::Postgres, stmt)?, rows)
                    .await
            }
            TxInner::Sqlite(tx) => {
                let template = sql(Backend::Sqlite, stmt)?;
                let width = rows[0].len().max(1);
                let per_chunk = (SQLITE_MAX_PARAMS / width).clamp(1, SQLITE_MAX_ROWS);
                for chunk in rows.chunks(per_chunk) {
                    let text =
                        repeat_values(template, chunk.len()).ok_or(Error::MissingStatement {
                            name: stmt.name(),
                            backend: "sqlite (VALUES tuple)",
                        })?;
                    let mut query = sqlx::query(&text);
                    for p in chunk.iter().flatten() {
                        query = match p {
                            Param::Text(v) => query.bind(v.as_deref()),
                            Param::Int(v) => query.bind(*v),
                            Param::Float(v) => query.bind(*v),
                            Param::Bool(v) => query.bind(*v),
                        };
                    }
                    query.execute(&mut **tx).await?;
                }
                Ok(())
            }
        }
    }

    /// Runs an `UNNEST` statement with one array per column of `rows`.
    async fn upsert_pg(
        &mut self,
        phase: Phase,
        statement: &str,
        rows: Vec<Vec<Param>>,
    ) -> Result<()> {
        let TxInner::Postgres(tx) = &mut self.inner else {
            return Err(Error::CorruptRow("UNNEST on SQLite".into()));
        };
        let t = Instant::now();
        let mut query = sqlx::query(statement);
        for column in columns(rows)? {
            query = match column {
                Column::Text(v) => query.bind(v),
                Column::Int(v) => query.bind(v),
                Column::Float(v) => query.bind(v),
                Column::Bool(v) => query.bind(v),
            };
        }
        let t = phases::lap(Phase::Encode, t);
        query.execute(&mut **tx).await?;
        phases::lap(phase, t);
        Ok(())
    }

    /// Moves `projection`'s checkpoint on `topic`/`partition` from `expected` (0 when none
    /// is stored) to `next_offset`, adding `skipped` to its skipped count. Returns false,
    /// changing nothing, when the stored checkpoint is not at `expected` — another
    /// projector got there first, and this transaction must be rolled back.
    ///
    /// Call it first in the transaction: on PostgreSQL it locks the checkpoint row, so
    /// concurrent projectors of one partition queue up instead of doing the work twice.
    ///
    /// # Errors
    ///
    /// Database errors.
    pub async fn advance_checkpoint(
        &mut self,
        projection: &str,
        topic: &str,
        partition: i32,
        expected: i64,
        next_offset: i64,
        skipped: i64,
    ) -> Result<bool> {
        let params = vec![
            text(projection),
            text(topic),
            Param::Int(Some(partition.into())),
            Param::Int(Some(expected)),
            Param::Int(Some(next_offset)),
            Param::Int(Some(skipped)),
            Param::Text(Some(crate::plan::time(Utc::now()))),
        ];
        let affected = self.run(Stmt::AdvanceCheckpoint, &params).await?;
        Ok(affected == 1)
    }

    /// Commits.
    ///
    /// # Errors
    ///
    /// When the commit fails; nothing was written then.
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(tx) => tx.commit().await?,
            TxInner::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Rolls back everything done in this transaction.
    ///
    /// # Errors
    ///
    /// When the database cannot be told; it rolls back on its own then.
    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(tx) => tx.rollback().await?,
            TxInner::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    /// Runs one statement; returns the rows affected.
    async fn run(&mut self, stmt: Stmt, params: &[Param]) -> Result<u64> {
        Ok(match &mut self.inner {
            TxInner::Sqlite(tx) => bind_sqlite(sqlx::query(sql(Backend::Sqlite, stmt)?), params)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            TxInner::Postgres(tx) => bind_pg(sqlx::query(sql(Backend::Postgres, stmt)?), params)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    /// Runs statements in order. On PostgreSQL, runs of consecutive inserts into the same
    /// table become one `UNNEST` insert.
    pub(crate) async fn execute(&mut self, ops: &[Op]) -> Result<()> {
        let mut i = 0;
        while i < ops.len() {
            let stmt = ops[i].stmt;
            let run_len = ops[i..].iter().take_while(|o| o.stmt == stmt).count();
            match &mut self.inner {
                TxInner::Postgres(tx) if run_len > 1 && has_batch_form(stmt) => {
                    let batch: Vec<Vec<Param>> = ops[i..i + run_len]
                        .iter()
                        .map(|o| o.params.clone())
                        .collect();
                    let mut query = sqlx::query(batch_sql(stmt)?);
                    for column in columns(batch)? {
                        query = match column {
                            Column::Text(v) => query.bind(v),
                            Column::Int(v) => query.bind(v),
                            Column::Float(v) => query.bind(v),
                            Column::Bool(v) => query.bind(v),
                        };
                    }
                    query.execute(&mut **tx).await?;
                    i += run_len;
                }
                _ => {
                    self.run(stmt, &ops[i].params).await?;
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

/// Rows as statement parameters (timed as encoding).
fn encode<T>(rows: Vec<T>, f: impl Fn(T) -> Vec<Param>) -> Vec<Vec<Param>> {
    let t = Instant::now();
    let out = rows.into_iter().map(f).collect();
    phases::lap(Phase::Encode, t);
    out
}

/// One parameter across many rows, for `UNNEST`.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
}

/// Transposes rows of parameters into one array per parameter.
fn columns(rows: Vec<Vec<Param>>) -> Result<Vec<Column>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Column> = first
        .iter()
        .map(|p| match p {
            Param::Text(_) => Column::Text(Vec::with_capacity(rows.len())),
            Param::Int(_) => Column::Int(Vec::with_capacity(rows.len())),
            Param::Float(_) => Column::Float(Vec::with_capacity(rows.len())),
            Param::Bool(_) => Column::Bool(Vec::with_capacity(rows.len())),
        })
        .collect();
    for row in rows {
        if row.len() != out.len() {
            return Err(Error::CorruptRow("ragged batch".into()));
        }
        for (column, param) in out.iter_mut().zip(row) {
            match (column, param) {
                (Column::Text(c), Param::Text(v)) => c.push(v),
                (Column::Int(c), Param::Int(v)) => c.push(v),
                (Column::Float(c), Param::Float(v)) => c.push(v),
                (Column::Bool(c), Param::Bool(v)) => c.push(v),
                _ => {
                    return Err(Error::CorruptRow(
                        "parameter types differ within a batch".into(),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// SQLite's default limit of bound parameters per statement (since 3.32).
const SQLITE_MAX_PARAMS: usize = 32_766;
/// Rows per SQLite upsert statement, at most.
const SQLITE_MAX_ROWS: usize = 500;

/// `template` (an `INSERT … VALUES (?, …) …`) with its VALUES tuple repeated `n` times.
fn repeat_values(template: &str, n: usize) -> Option<String> {
    let start = template.find("VALUES (")? + "VALUES ".len();
    let len = template[start..].find(')')? + 1;
    let tuple = &template[start..start + len];
    let mut out = String::with_capacity(template.len() + (tuple.len() + 2) * n);
    out.push_str(&template[..start]);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(tuple);
    }
    out.push_str(&template[start + len..]);
    Some(out)
}

/// Plans every event: the ops to run, and what was applied, ignored or invalid.
fn plan_all(events: &[Event]) -> (Vec<Op>, ApplyOutcome) {
    let mut outcome = ApplyOutcome::default();
    // At least one write per event for most facts: room for that up front.
    let mut ops = Vec::with_capacity(events.len());
    for event in events {
        match plan(event) {
            Ok(planned) if planned.is_empty() => outcome.ignored += 1,
            Ok(planned) => {
                outcome.applied += 1;
                ops.extend(planned);
            }
            Err(error) => {
                warn!(
                    %error,
                    event_id = %event.event_id,
                    event_type = event.event_type(),
                    "Skipping a fact the projections cannot key."
                );
                outcome.invalid += 1;
            }
        }
    }
    (ops, outcome)
}

fn bind_sqlite<'q>(
    mut query: Query<'q, Sqlite, SqliteArguments<'q>>,
    params: &'q [Param],
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    for p in params {
        query = match p {
            Param::Text(v) => query.bind(v.as_deref()),
            Param::Int(v) => query.bind(*v),
            Param::Float(v) => query.bind(*v),
            Param::Bool(v) => query.bind(*v),
        };
    }
    query
}

fn bind_pg<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    params: &'q [Param],
) -> Query<'q, Postgres, PgArguments> {
    for p in params {
        query = match p {
            Param::Text(v) => query.bind(v.as_deref()),
            Param::Int(v) => query.bind(*v),
            Param::Float(v) => query.bind(*v),
            Param::Bool(v) => query.bind(*v),
        };
    }
    query
}

/// Typed access to a result row of either backend.
pub(crate) trait RowExt {
    /// A non-null text column.
    fn text(&self, col: &str) -> Result<String>;
    /// A nullable text column.
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    /// A non-null integer column.
    fn int(&self, col: &str) -> Result<i64>;
    /// A nullable integer column.
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    /// A non-null double column.
    fn float(&self, col: &str) -> Result<f64>;
    /// A nullable double column.
    fn opt_float(&self, col: &str) -> Result<Option<f64>>;
    /// A non-null boolean column.
    fn boolean(&self, col: &str) -> Result<bool>;
    /// A nullable boolean column.
    fn opt_bool(&self, col: &str) -> Result<Option<bool>>;
    /// A non-null time column.
    fn time(&self, col: &str) -> Result<DateTime<Utc>>;
    /// A nullable time column.
    fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>>;
    /// A nullable time column as the projections write it (RFC 3339, UTC, microseconds).
    fn time_text(&self, col: &str) -> Result<Option<String>>;
}

macro_rules! row_ext {
    ($row:ty) => {
        impl RowExt for $row {
            fn text(&self, col: &str) -> Result<String> {
                Ok(self.try_get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                Ok(self.try_get(col)?)
            }
            fn int(&self, col: &str) -> Result<i64> {
                Ok(self.try_get(col)?)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>> {
                Ok(self.try_get(col)?)
            }
            fn float(&self, col: &str) -> Result<f64> {
                Ok(self.try_get(col)?)
            }
            fn opt_float(&self, col: &str) -> Result<Option<f64>> {
                Ok(self.try_get(col)?)
            }
            fn boolean(&self, col: &str) -> Result<bool> {
                Ok(self.try_get(col)?)
            }
            fn opt_bool(&self, col: &str) -> Result<Option<bool>> {
                Ok(self.try_get(col)?)
            }
            fn time(&self, col: &str) -> Result<DateTime<Utc>> {
                Ok(self.try_get(col)?)
            }
            fn opt_time(&self, col: &str) -> Result<Option<DateTime<Utc>>> {
                Ok(self.try_get(col)?)
            }
            fn time_text(&self, col: &str) -> Result<Option<String>> {
                time_text(self, col)
            }
        }
    };
}

row_ext!(SqliteRow);
row_ext!(PgRow);

// SQLite stores the text the projections wrote; PostgreSQL a timestamptz.
fn time_text(row: &dyn RowRaw, col: &str) -> Result<Option<String>> {
    row.time_text_raw(col)
}

/// How each backend's rows hold times.
trait RowRaw {
    fn time_text_raw(&self, col: &str) -> Result<Option<String>>;
}

impl RowRaw for SqliteRow {
    fn time_text_raw(&self, col: &str) -> Result<Option<String>> {
        Ok(self.try_get(col)?)
    }
}

impl RowRaw for PgRow {
    fn time_text_raw(&self, col: &str) -> Result<Option<String>> {
        let t: Option<DateTime<Utc>> = self.try_get(col)?;
        Ok(t.map(crate::plan::time))
    }
}

/// The `COPY … FROM STDIN` statement appending rows of `stmt`'s table, into the columns its
/// batched `INSERT` names.
fn copy_statement(stmt: Stmt) -> Result<String> {
    let statement = match stmt {
        Stmt::InsertDecision => batch_sql(stmt)?,
        _ => sql(Backend::Postgres, stmt)?,
    };
    crate::copy::statement(statement).ok_or(Error::MissingStatement {
        name: stmt.name(),
        backend: "postgres (INSERT column list for COPY)",
    })
}

/// The statements whose rows a rebuild appends with `COPY`, one per table.
const APPENDED: [Stmt; 8] = [
    Stmt::UpsertFailures,
    Stmt::InsertDecision,
    Stmt::UpsertAgents,
    Stmt::UpsertTasks,
    Stmt::UpsertFixes,
    Stmt::UpsertPullRequests,
    Stmt::UpsertReviews,
    Stmt::UpsertRollbacks,
];

/// Looks up (and caches) the binary `COPY` column types of every table a rebuild appends
/// to, with the tables `conn`'s search path resolves.
///
/// # Errors
///
/// Database errors.
pub(crate) async fn prefetch_copy_columns(conn: &mut sqlx::PgConnection) -> Result<()> {
    for stmt in APPENDED {
        copy_columns(conn, &copy_statement(stmt)?).await?;
    }
    Ok(())
}

impl Store {
    /// For each `COPY` a rebuild appends rows with (PostgreSQL), whether every column has
    /// a binary encoder, so the binary format is used: the statement and the answer.
    ///
    /// # Errors
    ///
    /// Database errors; [`Error::InvalidUrl`] on SQLite, which appends without `COPY`.
    #[cfg(feature = "testing")]
    pub async fn binary_copy_support(&self) -> Result<Vec<(String, bool)>> {
        let Store::Postgres(pool) = self else {
            return Err(Error::InvalidUrl {
                url: "sqlite".into(),
                reason: "SQLite appends without COPY".into(),
            });
        };
        let mut conn = pool.acquire().await?;
        let mut out = Vec::new();
        for stmt in APPENDED {
            let copy = copy_statement(stmt)?;
            let binary = copy_columns(&mut conn, &copy).await?.is_some();
            out.push((copy, binary));
        }
        Ok(out)
    }
}

/// The binary `COPY` column types of `copy` (a `COPY <table> (<columns>) FROM STDIN`
/// statement), looked up in the catalogue once per process and statement (every store
/// has the tables of the same migrations); `None` when a column's type has no binary
/// encoder ([`crate::copy::Column`]), so the text format is used.
async fn copy_columns(
    tx: &mut sqlx::PgConnection,
    copy: &str,
) -> Result<Option<Arc<[crate::copy::Column]>>> {
    type Cache = std::sync::Mutex<HashMap<String, Option<Arc<[crate::copy::Column]>>>>;
    static CACHE: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(Cache::default);
    if let Some(hit) = CACHE.lock().unwrap_or_else(|p| p.into_inner()).get(copy) {
        return Ok(hit.clone());
    }
    let (table, columns) = crate::copy::table_and_columns(copy).ok_or_else(|| {
        Error::CorruptRow(format!("not a COPY statement with a column list: {copy}"))
    })?;
    let types: Vec<Option<String>> =
        sqlx::query_scalar(include_str!("sql/postgres/copy_column_types.sql"))
            .bind(table)
            .bind(&columns)
            .fetch_all(&mut *tx)
            .await?;
    let found = if types.len() == columns.len() {
        types
            .iter()
            .map(|t| t.as_deref().and_then(crate::copy::Column::of))
            .collect::<Option<Vec<_>>>()
            .map(Arc::from)
    } else {
        None
    };
    CACHE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(copy.to_owned(), found.clone());
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_tuples_repeat_for_multi_row_upserts() {
        let t = "INSERT INTO t (a, b)\nVALUES (?, ?)\nON CONFLICT (a) DO UPDATE SET b = excluded.b";
        assert_eq!(
            repeat_values(t, 3).expect("tuple"),
            "INSERT INTO t (a, b)\nVALUES (?, ?), (?, ?), (?, ?)\nON CONFLICT (a) DO UPDATE SET b = excluded.b"
        );
        assert!(repeat_values("SELECT 1", 2).is_none());
    }
}
