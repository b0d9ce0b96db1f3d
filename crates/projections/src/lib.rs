//! Read models of the fact log, kept exactly once in SQLite or PostgreSQL.
//!
//! The [`Projector`] reads `sentinel.events` ([`EVENTS_TOPIC`]) from its stored checkpoint,
//! decodes each record and applies the facts to the tables people query — `failures`,
//! `policy_decisions`, `agents`, `agent_tasks`, `failure_fixes`, `pull_requests`,
//! `reviews` — writing the rows **and** the next offset in the same database transaction
//! (DESIGN §4 rule 4). After a crash it resumes from the stored offset, so every fact is
//! applied exactly once; and because every write is keyed by a fact id (inserts are
//! `ON CONFLICT DO NOTHING`, updates are guarded status transitions), replaying the log
//! from the beginning never doubles a row.
//!
//! Projections are deterministic: every timestamp comes from the facts' event time, never
//! the wall clock, so a rebuild produces the same rows.
//!
//! ```no_run
//! # async fn demo(log: std::sync::Arc<dyn sentinel_log::EventLog>) -> sentinel_projections::Result<()> {
//! use sentinel_projections::{FixFilter, Projector, Store};
//!
//! let store = Store::connect("sqlite://sentinel.db").await?;
//! store.migrate().await?;
//! let projector = Projector::new(log, store.clone());
//! let applied = projector.run_once().await?;
//! let fixes = store.list_fixes(&FixFilter::default()).await?;
//! # let _ = (applied, fixes);
//! # Ok(()) }
//! ```
//!
//! The store is an enum over both backends ([`Store::Sqlite`], [`Store::Postgres`]); the
//! SQL for each lives in `src/sql/<backend>/*.sql`, the schema in the workspace's
//! `migrations/<backend>/` (embedded, and runnable with `sqlx migrate run` as well).
#![forbid(unsafe_code)]

#[cfg(feature = "bench")]
pub mod bench;
mod copy;
mod fold;
mod migrate;
pub mod phases;
mod plan;
mod projector;
mod read;
mod rebuild;
mod rows;
mod sql;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use migrate::migrations;
pub use projector::{PartitionLag, Projector, ProjectorConfig, ProjectorStats};
pub use read::{
    Agent, Cursor, DEFAULT_PAGE, Decision, DecisionFilter, Failure, FailureFilter, Fix, FixCursor,
    FixFilter, MAX_PAGE, Task,
};
pub use rebuild::{
    DEFAULT_IN_PLACE_MAX, DEFAULT_REBUILD_BATCH, RebuildOptions, RebuildProgress, RebuildReport,
    rebuild,
};
pub use store::{ApplyOutcome, Backend, Checkpoint, Store, StoreTx};

/// The fact log topic the projections read. A permanent identifier: renaming it breaks
/// every deployed log.
pub const EVENTS_TOPIC: &str = "sentinel.events";

/// Name under which the projector stores its checkpoints, unless configured otherwise.
pub const DEFAULT_PROJECTION: &str = "sentinel-projections";

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong projecting facts or querying projections.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The projection database failed.
    #[error("projection database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be migrated.
    #[error("projection schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Reading the fact log failed.
    #[error("event log: {0}")]
    Log(#[from] sentinel_log::Error),
    /// A store URL could not be understood.
    #[error("invalid projection store url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A pagination cursor could not be understood.
    #[error("invalid cursor {0:?}: expected the value of a previous page's next cursor")]
    InvalidCursor(String),
    /// A stored row does not hold what the projection wrote (a defect or manual edit).
    #[error("corrupt projection row: {0}")]
    CorruptRow(String),
    /// A rebuild was asked for a projection that does not exist.
    #[error("unknown projection {name:?}; known: {}", known.join(", "))]
    UnknownProjection {
        /// The name asked for.
        name: String,
        /// The projections there are (their tables).
        known: Vec<String>,
    },
    /// A rebuild's tables could not be prepared: its shadow tables created, or (in place)
    /// the live tables locked and emptied. The cause is kept as text, with whether it was
    /// transient, because every stage waiting for those tables reports it.
    #[error("preparing the rebuild's tables: {cause}")]
    RebuildSetup {
        /// The set-up's error.
        cause: String,
        /// Whether that error was transient ([`Error::is_transient`]): a pool timeout or a
        /// deadlock may go away on a retry, a missing privilege will not.
        transient: bool,
    },
    /// The SQL of a statement is missing for a backend (a build defect the tests catch).
    #[error("no SQL statement {name:?} for the {backend} backend")]
    MissingStatement {
        /// The statement.
        name: &'static str,
        /// The backend.
        backend: &'static str,
    },
}

impl Error {
    /// Whether retrying later may succeed (database or log temporarily unavailable, lock
    /// contention, serialization failure), as opposed to a permanent error.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(e) => is_transient_sqlx(e),
            Error::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_transient_sqlx(e),
            Error::Log(e) => e.is_transient(),
            Error::RebuildSetup { transient, .. } => *transient,
            _ => false,
        }
    }
}

fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(d) => {
            // SQLSTATE classes 08 (connection), 40 (serialization, deadlock), 53
            // (resources), 57P0x (shutdown); SQLite's busy/locked.
            let code = d.code().unwrap_or_default();
            code.starts_with("08")
                || code.starts_with("40")
                || code.starts_with("53")
                || code.starts_with("57P0")
                || d.message().contains("database is locked")
                || d.message().contains("database table is locked")
        }
        _ => false,
    }
}
