//! Rebuilds: replay the log from offset 0 into fresh tables, then swap them in atomically,
//! so readers never see a half-built projection (DESIGN §4 rule 4).
//!
//! - **PostgreSQL**: the fresh tables live in a shadow schema (`sentinel_rebuild_<pid>_<n>`)
//!   of the same database, created from the same migrations. The swap is one transaction
//!   of `ALTER TABLE … SET SCHEMA` renames — instant whatever the size — after whose
//!   commit the old tables are dropped with their retired schema.
//! - **PostgreSQL, small logs** (a full rebuild of at most
//!   [`RebuildOptions::in_place_max`] records, default [`DEFAULT_IN_PLACE_MAX`]): the live
//!   tables are emptied and refilled in **one transaction**, which first locks the
//!   checkpoint table (the live projector waits for the commit, then continues from the
//!   rebuilt checkpoints). Readers are never blocked and see the old rows until the commit
//!   (MVCC). A shadow's fixed cost — creating its tables, building its secondary indexes,
//!   the swap and the drop, ~0.1 s — was most of a small rebuild's time; the live
//!   projector's wait grows with the log, hence the bound.
//! - **SQLite**: the fresh tables live in a shadow database file beside the live one. The
//!   swap is one write transaction on the live file that replaces each table's rows with
//!   the shadow's (`ATTACH`, `DELETE`, `INSERT … SELECT`); readers keep their snapshot
//!   (WAL) until it commits.
//!
//! On PostgreSQL the shadow schema and its tables are created (or, in place, the
//! transaction opened and the live tables locked and emptied) on a task of their own while
//! the first batches are read, decoded and folded (which need no table: nothing was
//! written yet); loads and writes wait for it. Its secondary indexes are built after the
//! load, a few at a time, and the swap's statements go in one round trip.
//!
//! A full rebuild swaps every projection table **and** the checkpoint table, so the live
//! projector continues from where the replay stopped. Rebuilding one projection (one
//! table) instead stops the live projector for the swap (it locks the checkpoint table),
//! brings the shadow to exactly the live checkpoint and swaps only that table, so it stays
//! consistent with the tables it is joined with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sentinel_log::EventLog;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Connection, Row};
use tracing::info;

use crate::migrate::migrations;
use crate::projector::{Projector, ProjectorConfig, Ready};
use crate::sql::{Stmt, sql};
use crate::store::{Backend, Store};
use crate::{DEFAULT_PROJECTION, EVENTS_TOPIC, Error, Result};

/// The checkpoint table: swapped with a full rebuild, never rebuilt on its own.
const CHECKPOINTS: &str = "projection_checkpoints";

/// What to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildOptions {
    /// The projector whose checkpoints travel with the tables (default
    /// `sentinel-projections`).
    pub projector: String,
    /// Only this projection (a table: `failures`, `agents`, …); every one when `None`.
    pub projection: Option<String>,
    /// Records per replay transaction (default 20000). Memory grows with it: one batch's
    /// facts and the rows they touch, plus the next batch read ahead.
    pub batch_size: usize,
    /// A full rebuild on PostgreSQL of a log of at most this many records (default
    /// [`DEFAULT_IN_PLACE_MAX`]) replays into the live tables in one transaction instead
    /// of a shadow schema; 0 never does. See the module documentation.
    pub in_place_max: u64,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            projector: DEFAULT_PROJECTION.to_owned(),
            projection: None,
            batch_size: DEFAULT_REBUILD_BATCH,
            in_place_max: DEFAULT_IN_PLACE_MAX,
        }
    }
}

/// Progress of the replay, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Offsets replayed so far, summed over partitions.
    pub done: u64,
    /// The log's end offsets when the rebuild started, summed over partitions.
    pub total: u64,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildReport {
    /// The tables swapped in.
    pub tables: Vec<String>,
    /// Facts applied to the fresh tables.
    pub applied: u64,
    /// The checkpoints the rebuild committed with its tables, per partition (next offset):
    /// where the replay stopped. The live projector may have moved on since.
    pub offsets: Vec<(i32, i64)>,
    /// Time spent replaying (without building the deferred indexes and the swap).
    pub replay: Duration,
    /// Time spent building the shadow's secondary indexes after the replay.
    pub indexes: Duration,
    /// Time the swap transaction took (the commit, in place).
    pub swap: Duration,
    /// Whether the live tables were rebuilt in place, in one transaction
    /// ([`RebuildOptions::in_place_max`]), rather than through a shadow.
    pub in_place: bool,
}

static SHADOW_SEQ: AtomicU64 = AtomicU64::new(0);

/// Connections of a PostgreSQL shadow's pool: the replay folds on one and writes on
/// another, the secondary indexes are built this many at a time after the load (each
/// build ends with an fsync of its file, so they overlap on the disk).
const SHADOW_CONNECTIONS: u32 = 4;

/// Default records per replay transaction of a rebuild.
pub const DEFAULT_REBUILD_BATCH: usize = 20_000;

/// Default largest log (records) a full PostgreSQL rebuild replays in place, in one
/// transaction on the live tables ([`RebuildOptions::in_place_max`]).
pub const DEFAULT_IN_PLACE_MAX: u64 = 20_000;

/// Secondary indexes the batched writes look rows up by: a shadow keeps them while it is
/// filled (the others are built after the load, before the swap).
const LOOKUP_INDEXES: &[&str] = &[
    "failure_fixes_failure",
    "failure_fixes_pr_url",
    "agent_tasks_agent_finished",
];

/// Rebuilds the projections of `store` from `log`; see the module documentation.
///
/// `progress` is called after every replayed batch.
///
/// # Errors
///
/// [`Error::UnknownProjection`] for a projection name that is no table; log and database
/// errors (the live tables are untouched unless the swap committed; the shadow is removed).
pub async fn rebuild(
    log: Arc<dyn EventLog>,
    store: &Store,
    options: &RebuildOptions,
    progress: &(dyn Fn(RebuildProgress) + Send + Sync),
) -> Result<RebuildReport> {
    let config = ProjectorConfig {
        name: options.projector.clone(),
        batch_size: options.batch_size.max(1),
        ..ProjectorConfig::default()
    };
    // The first batches are read, decoded and folded while the shadow is created (or
    // the live tables are emptied).
    let primed = crate::projector::prime(log.clone(), &config).await?;
    // Where the log ends now: the progress bar's total, and the in-place bound's measure.
    let tally = Tally::new(&log.end_offsets(EVENTS_TOPIC).await?, progress);
    if let (None, Store::Postgres(pool)) = (&options.projection, store)
        && options.in_place_max > 0
        && tally.total <= options.in_place_max
    {
        return rebuild_in_place(log, store, pool, config, primed, &tally).await;
    }
    let shadow = Shadow::create(store).await?;
    let projector = Projector::with_config(log.clone(), shadow.store.clone(), config)
        .for_fresh_tables(shadow.ready.clone())
        .with_primed(primed);
    let result = rebuild_into(store, &shadow, &projector, options, &tally).await;
    shadow.remove().await;
    result
}

async fn rebuild_into(
    store: &Store,
    shadow: &Shadow,
    projector: &Projector,
    options: &RebuildOptions,
    tally: &Tally<'_>,
) -> Result<RebuildReport> {
    // One projection: checked before the replay (the shadow's tables must exist for
    // that). Every projection: listed after it, which the shadow's creation overlaps.
    if let Some(p) = &options.projection {
        let all = shadow.tables().await?;
        if p == CHECKPOINTS || !all.contains(p) {
            return Err(Error::UnknownProjection {
                name: p.clone(),
                known: all.iter().filter(|t| *t != CHECKPOINTS).cloned().collect(),
            });
        }
    }
    let on_batch = |partition: i32, next: i64| tally.batch(partition, next);
    let started = Instant::now();
    let mut applied = 0_u64;
    // A full rebuild replays to the end; a partial one never passes the live projector,
    // whose position it must meet exactly at the swap.
    let live_targets = if options.projection.is_some() {
        Some(live_offsets(store, &options.projector).await?)
    } else {
        None
    };
    applied += projector
        .catch_up_to(live_targets.as_ref(), &on_batch)
        .await? as u64;
    let replay = started.elapsed();
    info!(applied, ?replay, "Rebuild replayed the log.");
    let tables = match &options.projection {
        Some(p) => vec![p.clone()],
        None => shadow.tables().await?,
    };
    // Like pg_restore: the secondary indexes are built once over the loaded tables.
    let indexes_started = Instant::now();
    shadow.create_deferred_indexes().await?;
    let indexes = indexes_started.elapsed();

    let swap_started = Instant::now();
    let offsets = if options.projection.is_some() {
        swap_aligned(
            store,
            shadow,
            projector,
            &tables,
            &options.projector,
            &mut applied,
        )
        .await?
    } else {
        // Catch up once more right before swapping, to hand over as little lag as possible.
        applied += projector.catch_up_to(None, &on_batch).await? as u64;
        let mut tables = tables.clone();
        // The checkpoint table first: it is the lock the live projector takes first.
        tables.sort_by_key(|t| t != CHECKPOINTS);
        // The shadow's checkpoints, which the swap makes the live ones: read before it,
        // because the live projector moves them on as soon as the swap commits.
        let offsets = sorted_offsets(
            shadow
                .store
                .checkpoints(&options.projector, EVENTS_TOPIC)
                .await?,
        );
        shadow.swap(store, &tables).await?;
        offsets
    };
    Ok(RebuildReport {
        tables,
        applied,
        offsets,
        replay,
        indexes,
        swap: swap_started.elapsed(),
        in_place: false,
    })
}

/// Progress of a replay: each partition's replayed offset against the log's end.
struct Tally<'a> {
    done: Vec<AtomicU64>,
    total: u64,
    progress: &'a (dyn Fn(RebuildProgress) + Send + Sync),
}

impl<'a> Tally<'a> {
    /// Progress towards the log's end offsets `ends` (one per partition), for `progress`.
    fn new(ends: &[i64], progress: &'a (dyn Fn(RebuildProgress) + Send + Sync)) -> Tally<'a> {
        Tally {
            done: ends.iter().map(|_| AtomicU64::new(0)).collect(),
            total: ends.iter().map(|e| u64::try_from(*e).unwrap_or(0)).sum(),
            progress,
        }
    }

    /// A batch of `partition` ended before `next`.
    fn batch(&self, partition: i32, next: i64) {
        if let Some(d) = usize::try_from(partition)
            .ok()
            .and_then(|p| self.done.get(p))
        {
            d.store(u64::try_from(next).unwrap_or(0), Ordering::Relaxed);
        }
        (self.progress)(RebuildProgress {
            done: self
                .done
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .sum::<u64>()
                .min(self.total),
            total: self.total,
        });
    }
}

/// A full rebuild of a small log on PostgreSQL, in one transaction on the live tables:
/// lock the checkpoint table (the live projector waits from its first statement), delete
/// every row of every projection table and checkpoint, replay the log into them as into
/// fresh tables, commit. Readers keep seeing the old rows until the commit (MVCC) and are
/// never blocked; nothing is created, indexed, swapped or dropped, which is most of a
/// small shadow rebuild's time.
async fn rebuild_in_place(
    log: Arc<dyn EventLog>,
    store: &Store,
    pool: &sqlx::PgPool,
    config: ProjectorConfig,
    primed: crate::projector::Primed,
    tally: &Tally<'_>,
) -> Result<RebuildReport> {
    let name = config.name.clone();
    let started = Instant::now();
    let tables = migration_tables(migrations(Backend::Postgres));
    let shared: crate::projector::SharedTx = Arc::new(tokio::sync::Mutex::new(None));
    // The transaction is opened, the tables locked and emptied, and the binary COPY's
    // column types (cached per process) read on its own connection (so the rebuild needs
    // no other) on a task of its own, while the first batches are read, decoded and
    // folded: they need no table. Loads and writes wait for it.
    let ready = Ready::after(prepare_in_place(
        pool.clone(),
        in_place_reset_script(&tables)?,
        shared.clone(),
    ));
    let projector = Projector::with_config(log.clone(), store.clone(), config)
        .for_fresh_tables(ready.clone())
        .with_primed(primed)
        .in_transaction(shared.clone());
    let replayed = projector
        .catch_up_to(None, &|partition, next| tally.batch(partition, next))
        .await;
    // Always waited for, even after a failed replay: the set-up holds the checkpoint
    // table's lock, which the live projector must not wait on after the rebuild returned.
    // (An empty log also wrote nothing, so nothing waited for it yet.)
    let set_up = ready.wait().await;
    let tx = shared.lock().await.take();
    let applied = match (replayed, set_up) {
        (Ok(applied), Ok(())) => applied as u64,
        (Err(error), _) | (Ok(_), Err(error)) => {
            if let Some(tx) = tx {
                let _ = tx.rollback().await;
            }
            return Err(error);
        }
    };
    let replay = started.elapsed();
    info!(applied, ?replay, "Rebuild replayed the log in place.");
    let mut tx =
        tx.ok_or_else(|| Error::CorruptRow("the rebuild's transaction has ended".into()))?;
    // Read in the transaction: once it commits, the live projector (waiting on the
    // checkpoint table's lock) moves them on.
    let offsets = match tx.checkpoints(&name, EVENTS_TOPIC).await {
        Ok(checkpoints) => sorted_offsets(checkpoints),
        Err(error) => {
            let _ = tx.rollback().await;
            return Err(error);
        }
    };
    let committing = Instant::now();
    tx.commit().await?;
    Ok(RebuildReport {
        tables,
        applied,
        offsets,
        replay,
        indexes: Duration::ZERO,
        swap: committing.elapsed(),
        in_place: true,
    })
}

/// Opens an in-place rebuild's transaction on `pool`, runs `script` in it (lock the
/// checkpoint table, empty the tables), looks up the binary COPY's column types on its
/// connection, and hands it over in `shared`.
async fn prepare_in_place(
    pool: sqlx::PgPool,
    script: String,
    shared: crate::projector::SharedTx,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // A `&str` without arguments goes as one simple query: every statement, one round
    // trip (`raw_sql`'s executor bound is not provably `Send` in a spawned task).
    sqlx::Executor::execute(&mut *tx, script.as_str()).await?;
    crate::store::prefetch_copy_columns(&mut tx).await?;
    *shared.lock().await = Some(crate::store::StoreTx::postgres(tx));
    Ok(())
}

/// The statements that empty `tables` for an in-place rebuild: the checkpoint table is
/// locked first (`lock_checkpoints`, as a reset locks it), as the live projector locks it
/// first.
fn in_place_reset_script(tables: &[String]) -> Result<String> {
    // The statement without its leading comment, so the script starts with the lock.
    let lock: Vec<&str> = sql(Backend::Postgres, Stmt::LockCheckpoints)?
        .lines()
        .filter(|l| !l.starts_with("--"))
        .collect();
    let mut script = format!("{};\n", lock.join("\n"));
    for t in tables {
        script.push_str(&format!("DELETE FROM {};\n", ident(t)));
    }
    Ok(script)
}

/// The tables the migrations create (`CREATE TABLE IF NOT EXISTS <name>`), sorted.
fn migration_tables(migrations: &[(&str, &str)]) -> Vec<String> {
    let mut tables: Vec<String> = migrations
        .iter()
        .flat_map(|(_, sql)| sql.lines())
        .filter_map(|l| l.trim().strip_prefix("CREATE TABLE IF NOT EXISTS "))
        .filter_map(|rest| rest.split(|c: char| c == '(' || c.is_whitespace()).next())
        .map(str::to_owned)
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

async fn live_offsets(store: &Store, projector: &str) -> Result<HashMap<i32, i64>> {
    Ok(store
        .checkpoints(projector, EVENTS_TOPIC)
        .await?
        .into_iter()
        .map(|c| (c.partition, c.next_offset))
        .collect())
}

/// `(partition, next offset)` of `checkpoints`, by partition.
fn sorted_offsets(checkpoints: Vec<crate::store::Checkpoint>) -> Vec<(i32, i64)> {
    let mut v: Vec<(i32, i64)> = checkpoints
        .into_iter()
        .map(|c| (c.partition, c.next_offset))
        .collect();
    v.sort_unstable();
    v
}

/// Locks the live checkpoints, brings the shadow to exactly them, swaps `tables`.
async fn swap_aligned(
    store: &Store,
    shadow: &Shadow,
    projector: &Projector,
    tables: &[String],
    name: &str,
    applied: &mut u64,
) -> Result<Vec<(i32, i64)>> {
    let topic = EVENTS_TOPIC;
    match (store, &shadow.store) {
        (Store::Postgres(live), Store::Postgres(_)) => {
            let mut conn = live.acquire().await?;
            let mut tx = conn.begin().await?;
            // Blocks the live projector (its first statement moves its checkpoint) until
            // the swap commits; readers are not blocked by this lock.
            sqlx::query(sql(Backend::Postgres, Stmt::LockCheckpoints)?)
                .execute(&mut *tx)
                .await?;
            let targets = checkpoint_rows_pg(&mut tx, name, topic).await?;
            *applied += projector.catch_up_to(Some(&targets), &|_, _| {}).await? as u64;
            let live_schema: String = sqlx::query_scalar("SELECT current_schema()")
                .fetch_one(&mut *tx)
                .await?;
            swap_pg(&mut tx, &shadow.name, &live_schema, tables).await?;
            tx.commit().await?;
            let mut v: Vec<(i32, i64)> = targets.into_iter().collect();
            v.sort_unstable();
            Ok(v)
        }
        (Store::Sqlite(live), Store::Sqlite(_)) => {
            let mut conn = live.acquire().await?;
            attach(&mut conn, shadow).await?;
            let result = async {
                // Take the live file's write lock with the first statement (the live
                // projector waits for the swap from here), but not the shadow's — as
                // `BEGIN IMMEDIATE` would — which the catch-up below still writes.
                sqlx::query("BEGIN").execute(&mut *conn).await?;
                for t in tables {
                    sqlx::query(&format!("DELETE FROM main.{}", ident(t)))
                        .execute(&mut *conn)
                        .await?;
                }
                let rows = sqlx::query(
                    "SELECT \"partition\", next_offset FROM main.projection_checkpoints \
                     WHERE projection = $1 AND topic = $2",
                )
                .bind(name)
                .bind(topic)
                .fetch_all(&mut *conn)
                .await?;
                let mut targets = HashMap::new();
                for r in rows {
                    targets.insert(r.try_get::<i32, _>(0)?, r.try_get::<i64, _>(1)?);
                }
                *applied += projector.catch_up_to(Some(&targets), &|_, _| {}).await? as u64;
                for t in tables {
                    let t = ident(t);
                    sqlx::query(&format!("INSERT INTO main.{t} SELECT * FROM shadow.{t}"))
                        .execute(&mut *conn)
                        .await?;
                }
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                let mut v: Vec<(i32, i64)> = targets.into_iter().collect();
                v.sort_unstable();
                Ok::<_, Error>(v)
            }
            .await;
            if result.is_err() {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            }
            let _ = sqlx::query("DETACH DATABASE shadow")
                .execute(&mut *conn)
                .await;
            result
        }
        _ => Err(Error::CorruptRow(
            "shadow and live stores differ in backend".into(),
        )),
    }
}

async fn checkpoint_rows_pg(
    tx: &mut sqlx::PgConnection,
    name: &str,
    topic: &str,
) -> Result<HashMap<i32, i64>> {
    let rows = sqlx::query(&format!(
        "SELECT \"partition\", next_offset FROM {CHECKPOINTS} WHERE projection = $1 AND topic = $2"
    ))
    .bind(name)
    .bind(topic)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        out.insert(r.try_get::<i32, _>(0)?, r.try_get::<i64, _>(1)?);
    }
    Ok(out)
}

/// Moves `tables` from the live schema into a retired one and the shadow's in, inside the
/// caller's transaction and in one round trip. The retired schema is dropped after the
/// commit ([`Shadow::remove`]).
async fn swap_pg(
    tx: &mut sqlx::PgConnection,
    shadow: &str,
    live: &str,
    tables: &[String],
) -> Result<()> {
    sqlx::raw_sql(&swap_pg_script(shadow, live, tables))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The statements of [`swap_pg`]: every live table is locked before any is moved.
fn swap_pg_script(shadow: &str, live: &str, tables: &[String]) -> String {
    let retired = ident(&format!("{shadow}_retired"));
    let (shadow, live) = (ident(shadow), ident(live));
    let mut script = format!("CREATE SCHEMA {retired};\n");
    for t in tables {
        script.push_str(&format!(
            "LOCK TABLE {live}.{} IN ACCESS EXCLUSIVE MODE;\n",
            ident(t)
        ));
    }
    for t in tables {
        let t = ident(t);
        script.push_str(&format!(
            "ALTER TABLE IF EXISTS {live}.{t} SET SCHEMA {retired};\n\
             ALTER TABLE {shadow}.{t} SET SCHEMA {live};\n"
        ));
    }
    script
}

async fn attach(conn: &mut sqlx::SqliteConnection, shadow: &Shadow) -> Result<()> {
    let path = shadow
        .path
        .as_ref()
        .ok_or_else(|| Error::CorruptRow("a SQLite shadow without a file".into()))?;
    sqlx::query("ATTACH DATABASE $1 AS shadow")
        .bind(path.to_string_lossy().into_owned())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn copy_sqlite(conn: &mut sqlx::SqliteConnection, tables: &[String]) -> Result<()> {
    for t in tables {
        let t = ident(t);
        sqlx::query(&format!("DELETE FROM main.{t}"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("INSERT INTO main.{t} SELECT * FROM shadow.{t}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Drops the secondary indexes of `schema` (not those of primary keys or unique
/// constraints, which the upserts need, nor [`LOOKUP_INDEXES`]) and returns the
/// statements that create them again.
async fn drop_secondary_indexes(pool: &sqlx::PgPool, schema: &str) -> Result<Vec<String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexname::text, i.indexdef FROM pg_indexes AS i \
         JOIN pg_class AS c ON c.relname = i.indexname \
         JOIN pg_namespace AS n ON n.oid = c.relnamespace AND n.nspname = i.schemaname \
         WHERE i.schemaname = $1 \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = c.oid) \
         ORDER BY i.indexname",
    )
    .bind(schema)
    .fetch_all(pool)
    .await?;
    let mut deferred = Vec::new();
    for (name, definition) in rows {
        if LOOKUP_INDEXES.contains(&name.as_str()) {
            continue;
        }
        sqlx::query(&format!("DROP INDEX {}.{}", ident(schema), ident(&name)))
            .execute(pool)
            .await?;
        deferred.push(definition);
    }
    Ok(deferred)
}

/// The PostgreSQL migrations as one script for a fresh shadow, and the `CREATE INDEX`
/// statements left out of it (secondary indexes other than [`LOOKUP_INDEXES`]), to run
/// after the load. Comments are dropped; statements end with `;` (the migrations hold no
/// `;` in string literals or function bodies).
fn shadow_ddl(migrations: &[(&str, &str)]) -> (String, Vec<String>) {
    let mut script = String::new();
    let mut deferred = Vec::new();
    for (_, sql) in migrations {
        let code: String = sql
            .lines()
            .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
            .collect::<Vec<_>>()
            .join("\n");
        for statement in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let words: Vec<&str> = statement.split_whitespace().take(6).collect();
            let name = match words.as_slice() {
                ["CREATE", "INDEX", "IF", "NOT", "EXISTS", name] => Some(*name),
                ["CREATE", "INDEX", name, ..] => Some(*name),
                _ => None,
            };
            match name {
                Some(name) if !LOOKUP_INDEXES.contains(&name) => {
                    deferred.push(statement.to_owned());
                }
                _ => {
                    script.push_str(statement);
                    script.push_str(";\n");
                }
            }
        }
    }
    (script, deferred)
}

/// A quoted SQL identifier (names here come from the catalogue or are generated).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The fresh tables a rebuild fills.
struct Shadow {
    /// The schema name (PostgreSQL) or a label (SQLite).
    name: String,
    /// The shadow SQLite file.
    path: Option<PathBuf>,
    /// A store writing the shadow tables.
    store: Store,
    /// The live store (to drop the shadow schema with).
    live: Store,
    /// `CREATE INDEX` statements of the secondary indexes left out while the shadow is
    /// filled (PostgreSQL): those of the migrations, then any the set-up dropped.
    deferred_indexes: Vec<String>,
    /// `CREATE INDEX` statements of secondary indexes the set-up found and dropped (none
    /// today: every migration's index is in `deferred_indexes` or kept).
    dropped_indexes: Arc<std::sync::Mutex<Vec<String>>>,
    /// When the shadow's tables exist (PostgreSQL creates them on a task of their own).
    ready: Ready,
}

impl Shadow {
    /// Creates the shadow tables; on PostgreSQL without the secondary indexes other than
    /// [`LOOKUP_INDEXES`] (they are built after the load).
    async fn create(live: &Store) -> Result<Shadow> {
        let n = SHADOW_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("sentinel_rebuild_{}_{n}", std::process::id());
        match live {
            Store::Postgres(pool) => {
                // The shadow is thrown away if anything fails before the swap, and the swap
                // commits on the live pool (durably, after everything written here): its
                // own commits need not wait for the disk.
                let options = (*pool.connect_options()).clone().options([
                    ("search_path", name.as_str()),
                    ("synchronous_commit", "off"),
                ]);
                let shadow_pool = PgPoolOptions::new()
                    .max_connections(SHADOW_CONNECTIONS)
                    .connect_lazy_with(options);
                // The schema and every migration in one round trip, without the secondary
                // indexes built after the load (rather than created and dropped again).
                let (ddl, deferred_indexes) = shadow_ddl(migrations(Backend::Postgres));
                let script = format!("CREATE SCHEMA {};\n{ddl}", ident(&name));
                let dropped_indexes = Arc::new(std::sync::Mutex::new(Vec::new()));
                let ready = Ready::after({
                    let (pool, name, dropped) =
                        (shadow_pool.clone(), name.clone(), dropped_indexes.clone());
                    async move {
                        sqlx::raw_sql(&script).execute(&pool).await?;
                        // Any other secondary index (none today) is dropped the slow way.
                        let more = drop_secondary_indexes(&pool, &name).await?;
                        dropped
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend(more);
                        // The binary COPY's column types, looked up beside the replay.
                        let mut conn = pool.acquire().await?;
                        crate::store::prefetch_copy_columns(&mut conn).await?;
                        Ok(())
                    }
                });
                Ok(Shadow {
                    name,
                    path: None,
                    store: Store::Postgres(shadow_pool),
                    live: live.clone(),
                    deferred_indexes,
                    dropped_indexes,
                    ready,
                })
            }
            Store::Sqlite(pool) => {
                let live_path = pool.connect_options().get_filename().to_owned();
                if live_path.as_os_str().is_empty()
                    || live_path.to_string_lossy().contains(":memory:")
                {
                    return Err(Error::InvalidUrl {
                        url: "sqlite::memory:".into(),
                        reason: "an in-memory database cannot be rebuilt beside itself".into(),
                    });
                }
                let mut file = live_path.clone().into_os_string();
                file.push(format!(".{name}"));
                let path = PathBuf::from(file);
                let _ = tokio::fs::remove_file(&path).await;
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Off)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Off);
                let shadow_pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await?;
                for (_, sql) in migrations(Backend::Sqlite) {
                    sqlx::raw_sql(sql).execute(&shadow_pool).await?;
                }
                Ok(Shadow {
                    name,
                    path: Some(path),
                    store: Store::Sqlite(shadow_pool),
                    live: live.clone(),
                    deferred_indexes: Vec::new(),
                    dropped_indexes: Arc::default(),
                    ready: Ready::now(),
                })
            }
        }
    }

    /// Builds the secondary indexes left out at creation, [`SHADOW_CONNECTIONS`] at a time.
    async fn create_deferred_indexes(&self) -> Result<()> {
        self.ready.wait().await?;
        if let Store::Postgres(pool) = &self.store {
            use futures::StreamExt;
            let dropped = self
                .dropped_indexes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let mut builds = futures::stream::iter(self.deferred_indexes.iter().chain(&dropped))
                .map(|sql| async move { sqlx::query(sql).execute(pool).await })
                .buffer_unordered(SHADOW_CONNECTIONS as usize);
            while let Some(built) = builds.next().await {
                built?;
            }
        }
        Ok(())
    }

    /// The shadow's tables (those the migrations create), sorted.
    async fn tables(&self) -> Result<Vec<String>> {
        self.ready.wait().await?;
        let mut names: Vec<String> = match &self.store {
            Store::Postgres(pool) => {
                sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
                    .bind(&self.name)
                    .fetch_all(pool)
                    .await?
            }
            Store::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
                )
                .fetch_all(pool)
                .await?
            }
        };
        names.sort();
        Ok(names)
    }

    /// Swaps every table of `tables` in (full rebuild).
    async fn swap(&self, live: &Store, tables: &[String]) -> Result<()> {
        self.ready.wait().await?;
        match live {
            Store::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let mut tx = conn.begin().await?;
                let live_schema: String = sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(&mut *tx)
                    .await?;
                swap_pg(&mut tx, &self.name, &live_schema, tables).await?;
                tx.commit().await?;
                Ok(())
            }
            Store::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                attach(&mut conn, self).await?;
                let result = async {
                    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                    copy_sqlite(&mut conn, tables).await?;
                    sqlx::query("COMMIT").execute(&mut *conn).await?;
                    Ok::<_, Error>(())
                }
                .await;
                if result.is_err() {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                }
                let _ = sqlx::query("DETACH DATABASE shadow")
                    .execute(&mut *conn)
                    .await;
                result
            }
        }
    }

    /// Drops whatever is left of the shadow (once its set-up has ended, whatever its
    /// outcome, so that nothing creates it again afterwards).
    async fn remove(&self) {
        let _ = self.ready.wait().await;
        self.store.close().await;
        match (&self.live, &self.path) {
            (Store::Postgres(pool), _) => {
                // No wait for the disk: were this commit lost, only unused schemas would be
                // left (the swap, if any, committed durably before).
                let script = format!(
                    "SET LOCAL synchronous_commit TO off; \
                     DROP SCHEMA IF EXISTS {} CASCADE; DROP SCHEMA IF EXISTS {} CASCADE;",
                    ident(&self.name),
                    ident(&format!("{}_retired", self.name))
                );
                let dropped = async {
                    let mut tx = pool.begin().await?;
                    sqlx::raw_sql(&script).execute(&mut *tx).await?;
                    tx.commit().await
                }
                .await;
                if let Err(error) = dropped {
                    tracing::warn!(
                        %error,
                        schema = %self.name,
                        "Could not drop a rebuild's shadow schemas."
                    );
                }
            }
            (Store::Sqlite(_), Some(path)) => {
                let _ = tokio::fs::remove_file(path).await;
            }
            (Store::Sqlite(_), None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_place_rebuild_empties_every_table_the_migrations_create() {
        let tables = migration_tables(migrations(Backend::Postgres));
        assert_eq!(
            tables,
            [
                "agent_tasks",
                "agents",
                "failure_fixes",
                "failures",
                "policy_decisions",
                "projection_checkpoints",
                "pull_requests",
                "reviews",
                "rollbacks",
            ]
        );
        let created = migrations(Backend::Postgres)
            .iter()
            .map(|(_, sql)| sql.matches("CREATE TABLE").count())
            .sum::<usize>();
        assert_eq!(tables.len(), created, "every CREATE TABLE is parsed");
        let script = in_place_reset_script(&tables).expect("script");
        assert!(script.starts_with("LOCK TABLE projection_checkpoints IN SHARE ROW EXCLUSIVE"));
        for t in &tables {
            assert!(script.contains(&format!("DELETE FROM \"{t}\";")), "{t}");
        }
    }

    #[test]
    fn shadow_ddl_defers_secondary_indexes_but_keeps_lookups_and_tables() {
        let (script, deferred) = shadow_ddl(migrations(Backend::Postgres));
        assert!(script.contains("CREATE TABLE IF NOT EXISTS rollbacks"));
        assert!(!script.contains("--"), "comments are dropped");
        for lookup in LOOKUP_INDEXES {
            assert!(script.contains(lookup), "{lookup} is kept");
            // (`failure_fixes_failure_type` is deferred; `failure_fixes_failure` is not.)
            assert!(
                !deferred
                    .iter()
                    .any(|d| d.split_whitespace().nth(5) == Some(lookup))
            );
        }
        assert!(
            deferred
                .iter()
                .any(|d| d.starts_with("CREATE INDEX IF NOT EXISTS failures_signature"))
        );
        assert!(!script.contains("failures_signature"));
        // Every index of the migrations is either kept or deferred.
        let all = migrations(Backend::Postgres)
            .iter()
            .map(|(_, sql)| sql.matches("CREATE INDEX").count())
            .sum::<usize>();
        assert_eq!(all, deferred.len() + script.matches("CREATE INDEX").count());
    }
}
