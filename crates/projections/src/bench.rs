//! The P3 benchmark: rebuild rate into PostgreSQL against a binary `COPY` of the same rows.
//!
//! For each size, a fresh embedded log receives that many facts (whole fix chains:
//! failure, classification, decision, task lifecycle, candidate, validation, branch, PR),
//! a fresh PostgreSQL database is rebuilt from it with [`rebuild`] (in place or through a
//! shadow schema, as the options choose), and then every row the rebuild produced is
//! loaded again with `COPY … FROM STDIN (FORMAT binary)` into equivalent tables (same
//! migrations, same indexes) in another schema of that database — the baseline, measured
//! in the same run.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sentinel_events::FailureType;
use sentinel_log::EventLog;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::rebuild::{RebuildOptions, RebuildProgress, rebuild};
use crate::store::{Backend, Store};
use crate::testing::{FixChain, record, with_database};
use crate::{EVENTS_TOPIC, Error, Result, migrate::migrations};

/// One measured size.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// Facts in the log.
    pub events: u64,
    /// Rows the projections hold afterwards.
    pub rows: u64,
    /// Wall time of the rebuild (shadow set-up, replay, index builds and swap).
    pub rebuild: Duration,
    /// Of which replaying the log into the shadow tables.
    pub replay: Duration,
    /// Of which building the shadow's secondary indexes.
    pub indexes: Duration,
    /// Of which the swap transaction.
    pub swap: Duration,
    /// Wall time of the binary COPY of the same rows.
    pub copy: Duration,
    /// Where the rebuild's batches spent their time, per phase ([`crate::phases`]).
    pub phases: Vec<(&'static str, Duration)>,
}

impl BenchRow {
    /// Rebuild rate, facts per second.
    pub fn rebuild_rate(&self) -> f64 {
        self.events as f64 / self.rebuild.as_secs_f64().max(1e-9)
    }

    /// The COPY baseline, in facts per second (the same rows, loaded by COPY).
    pub fn copy_rate(&self) -> f64 {
        self.events as f64 / self.copy.as_secs_f64().max(1e-9)
    }

    /// Rebuild rate over COPY rate (goal ≥ 0.5).
    pub fn ratio(&self) -> f64 {
        self.rebuild_rate() / self.copy_rate()
    }
}

/// Tables the baseline copies (every projection table).
const TABLES: &[&str] = &[
    "failures",
    "policy_decisions",
    "agents",
    "agent_tasks",
    "failure_fixes",
    "pull_requests",
    "reviews",
    "rollbacks",
];

/// Runs the benchmark for `events` facts against the PostgreSQL server at `admin_url`
/// (a database there is created and dropped), rebuilding with `options` (a full
/// rebuild: their `projection` must be `None`). `progress` sees the rebuild's progress.
///
/// # Errors
///
/// Log or database errors.
pub async fn run(
    admin_url: &str,
    events: u64,
    options: &RebuildOptions,
    progress: &(dyn Fn(RebuildProgress) + Send + Sync),
) -> Result<BenchRow> {
    let dir = tempfile::tempdir().map_err(|e| Error::InvalidUrl {
        url: "tempdir".into(),
        reason: e.to_string(),
    })?;
    let log = sentinel_log::sqlite::SqliteLog::open(&dir.path().join("bench-log.db")).await?;
    log.ensure_topic(EVENTS_TOPIC, 1).await?;
    fill(&log, events).await?;
    let log: std::sync::Arc<dyn EventLog> = std::sync::Arc::new(log);
    let appended = u64::try_from(log.end_offsets(EVENTS_TOPIC).await?[0]).unwrap_or(0);

    let name = format!("sentinel_bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(admin_url).await?;
    admin
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await?;
    let result = measure(
        &with_database(admin_url, &name),
        log,
        appended,
        options,
        progress,
    )
    .await;
    let _ = admin
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await;
    result
}

async fn measure(
    url: &str,
    log: std::sync::Arc<dyn EventLog>,
    events: u64,
    options: &RebuildOptions,
    progress: &(dyn Fn(RebuildProgress) + Send + Sync),
) -> Result<BenchRow> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    crate::phases::reset();
    let started = Instant::now();
    let report = rebuild(log, &store, options, progress).await?;
    let rebuild_time = started.elapsed();
    let phases = crate::phases::snapshot();
    store.close().await;

    let mut conn = PgConnection::connect(url).await?;
    // The baseline's tables: the same migrations in their own schema.
    conn.execute("CREATE SCHEMA copy_baseline; SET search_path TO copy_baseline")
        .await?;
    for (_, sql) in migrations(Backend::Postgres) {
        sqlx::raw_sql(sql).execute(&mut conn).await?;
    }
    conn.execute("SET search_path TO public").await?;
    // Export (untimed) what the rebuild wrote, in COPY's binary format.
    let mut dumps = Vec::new();
    let mut rows = 0_u64;
    for t in TABLES {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM public.{t}"))
            .fetch_one(&mut conn)
            .await?;
        rows += u64::try_from(n).unwrap_or(0);
        let mut out = Vec::new();
        {
            use futures::TryStreamExt;
            let mut stream = conn
                .copy_out_raw(&format!("COPY public.{t} TO STDOUT (FORMAT binary)"))
                .await?;
            while let Some(chunk) = stream.try_next().await? {
                out.extend_from_slice(&chunk);
            }
        }
        dumps.push((t, out));
    }
    // Timed: load every table in one transaction, as the rebuild's swap publishes them.
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    for (t, bytes) in &dumps {
        let mut copy = tx
            .copy_in_raw(&format!(
                "COPY copy_baseline.{t} FROM STDIN (FORMAT binary)"
            ))
            .await?;
        for chunk in bytes.chunks(1 << 20) {
            copy.send(chunk).await?;
        }
        copy.finish().await?;
    }
    tx.commit().await?;
    let copy_time = started.elapsed();
    let _ = conn.close().await;
    Ok(BenchRow {
        events,
        rows,
        rebuild: rebuild_time,
        copy: copy_time,
        replay: report.replay,
        indexes: report.indexes,
        swap: report.swap,
        phases,
    })
}

/// Appends whole fix chains until at least `events` facts are in the log.
async fn fill(log: &sentinel_log::sqlite::SqliteLog, events: u64) -> Result<()> {
    let t0 = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let types = [
        FailureType::Formatting,
        FailureType::Linting,
        FailureType::DependencyIssue,
        FailureType::TestFailure,
    ];
    let mut written = 0_u64;
    let mut chain = 0_u64;
    let mut pending = Vec::with_capacity(10_000);
    while written < events {
        let at = t0 + chrono::Duration::seconds(i64::try_from(chain).unwrap_or(0) * 30);
        let c = FixChain::new(
            &format!("org/repo-{}", chain % 200),
            types[usize::try_from(chain % 4).unwrap_or(0)],
            &format!("bench-{chain}"),
            at,
        );
        for e in c.events() {
            // PatchBot registers once; the log would drop the repeats anyway.
            if chain > 0 && matches!(e.fact, sentinel_events::Fact::AgentRegistered(_)) {
                continue;
            }
            if written >= events {
                break;
            }
            pending.push(record(&e));
            written += 1;
        }
        chain += 1;
        if pending.len() >= 10_000 || written >= events {
            log.append(EVENTS_TOPIC, std::mem::take(&mut pending))
                .await?;
        }
    }
    Ok(())
}
