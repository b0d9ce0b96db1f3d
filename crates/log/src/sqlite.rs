//! The embedded event log: one SQLite file in WAL mode.
//!
//! Every topic has one partition (0). Offsets are the rowids of one table shared by all
//! topics (rows are never deleted, so they are never reused), so within a topic they
//! strictly increase but are not contiguous. Appends
//! are deduplicated on the `event_id` header per topic, which makes redelivered webhooks and
//! re-run stages idempotent; the ids' index is merged in batches rather than maintained
//! record by record (see the `event_ids` module). Subscribers in this process are woken as
//! soon as a batch is committed; subscribers in other processes poll.
//!
//! Appends go through one writer thread that owns its own connection (rusqlite): it takes
//! every append queued while the previous transaction committed and writes them all in one
//! `BEGIN IMMEDIATE … COMMIT`, so concurrent appenders share one WAL fsync (group commit)
//! and each transaction is one hand-off between threads rather than one per statement.
//! Each caller is answered only after that commit (`synchronous=FULL`: the WAL is fsynced).
//! Reads, offsets and topics use the sqlx pool.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::Notify;

use rusqlite::{TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

mod event_ids;

use event_ids::{EventIds, PACE, Pace, Pending};

use crate::{
    EventLog, HEADER_EVENT_ID, Header, Position, Record, Result, Stored, Subscription,
    highest_per_partition,
};

const SCHEMA: &str = include_str!("sql/schema.sql");
const INSERT_RECORD: &str = include_str!("sql/insert_record.sql");
const READ_RECORDS: &str = include_str!("sql/read_records.sql");
const END_OFFSET: &str = include_str!("sql/end_offset.sql");
const LOAD_OFFSET: &str = include_str!("sql/load_offset.sql");
const COMMIT_OFFSET: &str = include_str!("sql/commit_offset.sql");
const ENSURE_TOPIC: &str = include_str!("sql/ensure_topic.sql");
const TOPIC_EXISTS: &str = include_str!("sql/topic_exists.sql");
const RECENT_EVENT_IDS: &str = include_str!("sql/recent_event_ids.sql");

/// How often a subscriber re-reads the file when nothing in this process woke it (records
/// appended by another process).
const CROSS_PROCESS_POLL: Duration = Duration::from_millis(200);

/// Most appends the writer commits in one transaction.
const GROUP_COMMIT_MAX: usize = 1024;

/// The embedded log's on-disk format, kept in the file's `PRAGMA user_version`, so that a
/// binary refuses a file a newer one has stamped (and may write differently) instead of
/// appending to it the old way — when it opens the file, and in every append's transaction.
/// 0: written before the stamp existed, with the former unique event-id index on
/// `log_records` or without it; such a file is moved to format 2 and stamped when first
/// opened (the `event_ids` module). 1 was never used. 2: deduplication through
/// `log_event_ids`. Raise it with any change that an older binary opening the file later
/// would break, and say so in the upgrade notes (docs/operations.md).
pub const LOG_FORMAT: i64 = 2;

/// How long the writer (and the pool) wait for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The embedded SQLite event log. Cheap to clone; clones share the pool, the writer and
/// wake-ups.
#[derive(Clone, Debug)]
pub struct SqliteLog {
    pool: SqlitePool,
    writer: mpsc::UnboundedSender<WriteRequest>,
    /// Connections for [`EventLog::read`], used on blocking threads (see [`Readers`]).
    readers: Arc<Readers>,
    appended: Arc<Notify>,
    /// Topics known to exist. Topics are never deleted, so a topic seen once needs no
    /// further lookup (saves a query per append and read).
    topics: Arc<RwLock<HashSet<String>>>,
}

impl SqliteLog {
    /// Opens (creating if needed) the log file at `path` in WAL mode with `synchronous=FULL`,
    /// so an acknowledged append survives power loss.
    ///
    /// # Errors
    ///
    /// When the file cannot be created or opened, or its schema cannot be created.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with_pace(path, PACE).await
    }

    /// [`SqliteLog::open`], merging the event-id index at `pace` (see [`event_ids`]).
    async fn open_with_pace(path: &Path, pace: Pace) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        // Before anything is created or moved: a newer binary's file is left as it is.
        let found: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&pool)
            .await?;
        if found > LOG_FORMAT {
            pool.close().await;
            return Err(crate::Error::NewerFormat {
                path: path.display().to_string(),
                found,
                supported: LOG_FORMAT,
            });
        }
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        // Reading the unmerged ids back (and moving an old log's index, once) blocks.
        let writer = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || spawn_writer(&path, pace))
                .await
                .map_err(|e| crate::Error::Append {
                    message: format!("starting the writer failed: {e}"),
                    transient: false,
                })??
        };
        Ok(Self {
            pool,
            writer,
            readers: Arc::new(Readers::new(path)),
            appended: Arc::new(Notify::new()),
            topics: Arc::default(),
        })
    }

    /// The connection pool (shared with the embedded projection store when both live in
    /// one file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn topic_known(&self, topic: &str) -> bool {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
    }

    fn remember_topic(&self, topic: &str) {
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned());
    }

    async fn require_topic(&self, topic: &str) -> Result<()> {
        if self.topic_known(topic) {
            return Ok(());
        }
        // Possibly created by another process since.
        let n: i64 = sqlx::query_scalar(TOPIC_EXISTS)
            .bind(topic)
            .fetch_one(&self.pool)
            .await?;
        if n == 0 {
            return Err(crate::Error::UnknownTopic(topic.to_owned()));
        }
        self.remember_topic(topic);
        Ok(())
    }

    async fn load_committed(&self, group: &str, topic: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(LOAD_OFFSET)
            .bind(group)
            .bind(topic)
            .fetch_optional(&self.pool)
            .await?)
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn encode_headers(headers: &[Header]) -> String {
    // Header values are bytes; they are stored as arrays of numbers only when not UTF-8.
    // Serialised straight from borrowed pairs (no `serde_json::Value` tree per record: this
    // runs on the single writer thread for every appended record).
    #[derive(serde::Serialize)]
    #[serde(untagged)]
    enum HeaderValue<'a> {
        Text(&'a str),
        Bytes(&'a [u8]),
    }
    let pairs: Vec<(&str, HeaderValue<'_>)> = headers
        .iter()
        .map(|(k, v)| {
            let value = match std::str::from_utf8(v) {
                Ok(s) => HeaderValue::Text(s),
                Err(_) => HeaderValue::Bytes(v),
            };
            (k.as_str(), value)
        })
        .collect();
    // Strings and byte arrays always serialise.
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_headers(s: &str) -> Vec<Header> {
    // The stored form: `[[name, "text"], [name, [bytes…]], …]` (see `encode_headers`).
    // Deserialised straight into pairs: reads run once per record for every consumer.
    struct Value(Vec<u8>);
    impl<'de> serde::Deserialize<'de> for Value {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Value;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a header value: a string or an array of bytes")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
                    Ok(Value(v.as_bytes().to_vec()))
                }
                fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
                    Ok(Value(v.into_bytes()))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Value, A::Error> {
                    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                    while let Some(b) = seq.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(Value(out))
                }
            }
            d.deserialize_any(V)
        }
    }
    serde_json::from_str::<Vec<(String, Value)>>(s)
        .map(|pairs| pairs.into_iter().map(|(k, v)| (k, v.0)).collect())
        .unwrap_or_default()
}

/// Read connections of the embedded log (rusqlite, on blocking threads): a read of many
/// records costs a fraction of what it costs through the async pool (no per-row hand-off
/// between threads, no intermediate row copies). Connections are opened on demand and
/// kept for reuse, at most [`READERS_KEPT`] of them.
#[derive(Debug)]
struct Readers {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
}

/// Idle read connections kept open.
const READERS_KEPT: usize = 4;

impl Readers {
    fn new(path: &Path) -> Self {
        Readers {
            path: path.to_owned(),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn connection(&self) -> rusqlite::Result<rusqlite::Connection> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    fn give_back(&self, conn: rusqlite::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < READERS_KEPT {
            idle.push(conn);
        }
    }

    /// Up to `max` records of `topic` from offset `from` on, in offset order.
    fn read(&self, topic: &str, from: i64, max: usize) -> Result<Vec<Stored>> {
        let conn = self.connection().map_err(|e| read_error(&e))?;
        let rows = Self::query(&conn, topic, from, max).map_err(|e| read_error(&e));
        // A connection whose read failed is dropped rather than reused.
        if rows.is_ok() {
            self.give_back(conn);
        }
        rows
    }

    fn query(
        conn: &rusqlite::Connection,
        topic: &str,
        from: i64,
        max: usize,
    ) -> rusqlite::Result<Vec<Stored>> {
        let mut stmt = conn.prepare_cached(READ_RECORDS)?;
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let mut rows = stmt.query(params![topic, from, limit])?;
        let mut out = Vec::with_capacity(max.min(READ_PREALLOCATE));
        while let Some(row) = rows.next()? {
            let headers = row.get_ref(2)?.as_str()?;
            out.push(Stored {
                topic: topic.to_owned(),
                position: Position {
                    partition: 0,
                    offset: row.get(0)?,
                },
                record: Record {
                    key: row.get(1)?,
                    value: row.get(3)?,
                    headers: decode_headers(headers),
                },
            });
        }
        Ok(out)
    }
}

/// Most records a read allocates room for up front: a projection rebuild's batch (20 000)
/// then fills its vector without regrowing it (each regrowth copied every record read so
/// far); a read of fewer records leaves the rest of the room untouched.
const READ_PREALLOCATE: usize = 20_000;

fn read_error(e: &rusqlite::Error) -> crate::Error {
    crate::Error::Read {
        message: e.to_string(),
        transient: is_transient(e),
    }
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.require_topic(topic).await?;
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteRequest {
                topic: topic.to_owned(),
                records,
                reply,
            })
            .map_err(|_| writer_stopped())?;
        let positions = answer.await.map_err(|_| writer_stopped())??;
        self.appended.notify_waiters();
        Ok(positions)
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max: usize,
    ) -> Result<Vec<Stored>> {
        self.require_topic(topic).await?;
        if partition != 0 || max == 0 {
            return Ok(Vec::new());
        }
        let readers = self.readers.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || readers.read(&topic, from, max))
            .await
            .map_err(|e| crate::Error::Read {
                message: format!("the read task failed: {e}"),
                transient: false,
            })?
    }

    async fn partitions(&self, topic: &str) -> Result<i32> {
        self.require_topic(topic).await?;
        Ok(1)
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        self.require_topic(topic).await?;
        let end: i64 = sqlx::query_scalar(END_OFFSET)
            .bind(topic)
            .fetch_one(&self.pool)
            .await?;
        Ok(vec![end])
    }

    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>> {
        self.require_topic(topic).await?;
        let next = self.load_committed(group, topic).await?.unwrap_or(0);
        Ok(Box::new(SqliteSubscription {
            log: self.clone(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            next,
        }))
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
        Ok(self
            .load_committed(group, topic)
            .await?
            .map(|o| (0, o))
            .into_iter()
            .collect())
    }

    async fn ensure_topic(&self, topic: &str, _partitions: i32) -> Result<()> {
        sqlx::query(ENSURE_TOPIC)
            .bind(topic)
            .execute(&self.pool)
            .await?;
        self.remember_topic(topic);
        Ok(())
    }

    async fn recent_event_ids(&self, topic: &str, max: usize) -> Result<Vec<String>> {
        self.require_topic(topic).await?;
        // Reads the id column only (not the values, which may be large logs).
        Ok(sqlx::query_scalar(RECENT_EVENT_IDS)
            .bind(topic)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?)
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

/// One `append` call waiting for the writer.
#[derive(Debug)]
struct WriteRequest {
    topic: String,
    records: Vec<Record>,
    reply: oneshot::Sender<Result<Vec<Position>>>,
}

fn writer_stopped() -> crate::Error {
    crate::Error::Append {
        message: "the writer thread stopped".to_owned(),
        transient: false,
    }
}

/// Whether a SQLite error may go away on a retry (a lock held by another process, I/O).
fn is_transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure};
    matches!(
        e.sqlite_error_code(),
        Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull)
    )
}

fn append_error(e: &rusqlite::Error) -> crate::Error {
    crate::Error::Append {
        message: e.to_string(),
        transient: is_transient(e),
    }
}

/// WAL pages (of the default 4 KiB) after which the writer asks the checkpointer to copy
/// the WAL back into the database. A quarter of SQLite's own `wal_autocheckpoint` default
/// (1000): each checkpoint ends with an fsync of the database file, and the appends' WAL
/// fsyncs queue behind its writes on the device, so smaller, more frequent checkpoints
/// keep that stall short. In `sentinel bench ingest --requests 20000` (docs/ingestion.md),
/// the p99 at half of peak went from 11.6–21.9 ms at 1000 pages to 7.9–12.1 ms at 250;
/// larger checkpoints (8000) had made it worse.
const CHECKPOINT_PAGES: u64 = 250;

/// The writer's own `wal_autocheckpoint`, a backstop: a WAL only restarts from its
/// beginning when it was checkpointed completely as a write transaction begins, which a
/// checkpoint running beside continuous appends rarely achieves. Past this many pages
/// (about 40 MB) the writer checkpoints the rest itself after a commit (little is left to
/// copy by then) and the WAL starts over.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 10 * 1000;

/// Page cache of the writer's connection, in KiB (SQLite's default is 2 MiB): event ids are
/// random, so every append looks its id up in a random leaf of `log_event_ids`, and a
/// cache smaller than that table turns appends into page reads.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Opens a connection of the writer or the checkpointer: WAL, and an fsync of the WAL at
/// every commit.
fn open_writer_connection(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Opens the writer's connection and starts its thread; the thread ends when every
/// [`SqliteLog`] clone (every sender) is gone.
///
/// Checkpoints (copying the WAL into the database file and fsyncing it) do not run in the
/// writer's commits, where they would hold up every append queued meanwhile: after about
/// [`CHECKPOINT_PAGES`] pages of appends the writer wakes a checkpointer thread with its own
/// connection that runs a `PASSIVE` checkpoint beside the appends (the writer's own
/// automatic checkpoint is only a backstop, see [`WRITER_AUTOCHECKPOINT_PAGES`]; the pages
/// are estimated by [`estimated_wal_pages`]). Durability is unchanged: an append is
/// acknowledged after its commit's WAL fsync, checkpointed or not.
fn spawn_writer(path: &Path, pace: Pace) -> Result<mpsc::UnboundedSender<WriteRequest>> {
    let mut conn = open_writer_connection(path).map_err(|e| append_error(&e))?;
    let mut ids = EventIds::load(&mut conn, pace).map_err(|e| append_error(&e))?;
    let file = path.display().to_string();
    // `load` stamped an older file; a newer binary may have stamped it since the opener
    // looked.
    let format = file_format(&conn).map_err(|e| append_error(&e))?;
    if format > LOG_FORMAT {
        return Err(BatchError::NewerFormat(format).to_error(&file));
    }
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
        .map_err(|e| append_error(&e))?;
    // Negative: a size in KiB rather than pages.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(|e| append_error(&e))?;
    let checkpointer = spawn_checkpointer(path)?;
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |row| row.get(0))
        .map_err(|e| append_error(&e))?;
    let page_size = u64::try_from(page_size.max(512)).unwrap_or(4096);
    let (tx, mut rx) = mpsc::unbounded_channel::<WriteRequest>();
    std::thread::Builder::new()
        .name("sentinel-log-writer".into())
        .spawn(move || {
            let mut batch: Vec<WriteRequest> = Vec::new();
            // WAL pages written since the last checkpoint request (estimated).
            let mut since_checkpoint: u64 = 0;
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                while batch.len() < GROUP_COMMIT_MAX {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let result = write_batch(&mut conn, &mut ids, &batch);
                match result {
                    Ok((all, merged_pages)) => {
                        since_checkpoint += estimated_wal_pages(&batch, merged_pages, page_size);
                        for (req, positions) in batch.drain(..).zip(all) {
                            let _ = req.reply.send(Ok(positions));
                        }
                    }
                    Err(e) => {
                        for req in batch.drain(..) {
                            let _ = req.reply.send(Err(e.to_error(&file)));
                        }
                    }
                }
                if since_checkpoint >= CHECKPOINT_PAGES {
                    since_checkpoint = 0;
                    // Full: a checkpoint is already pending, which will take these pages too.
                    let _ = checkpointer.try_send(());
                }
            }
        })?;
    Ok(tx)
}

/// Why a batch was not appended.
#[derive(Debug)]
enum BatchError {
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// The file is stamped with this newer format than [`LOG_FORMAT`].
    NewerFormat(i64),
}

impl From<rusqlite::Error> for BatchError {
    fn from(e: rusqlite::Error) -> Self {
        BatchError::Sqlite(e)
    }
}

impl BatchError {
    /// The error each request of the batch is answered with (`file`: the log's path).
    fn to_error(&self, file: &str) -> crate::Error {
        match self {
            BatchError::Sqlite(e) => append_error(e),
            BatchError::NewerFormat(found) => crate::Error::NewerFormat {
                path: file.to_owned(),
                found: *found,
                supported: LOG_FORMAT,
            },
        }
    }
}

/// The file's format stamp (`PRAGMA user_version`), as the connection's current
/// transaction sees it.
fn file_format(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA user_version")?
        .query_row([], |row| row.get(0))
}

/// Pages written per commit besides the records' own: the last, partly filled leaf of the
/// table and of the `(topic, offset)` index (rewritten by every commit) and the interior
/// pages above the leaves that changed.
const COMMIT_OVERHEAD_PAGES: u64 = 4;

/// The WAL pages (frames) a commit of `batch` writes, roughly: the records' own bytes in
/// table pages, the `merged_pages` leaves of `log_event_ids` its merge slice wrote, plus
/// [`COMMIT_OVERHEAD_PAGES`]. Underestimating lets the WAL grow to the writer's own
/// checkpoint far ahead of the checkpointer (the estimate once counted bytes alone, which
/// underestimated the random index leaf each record then wrote).
fn estimated_wal_pages(batch: &[WriteRequest], merged_pages: u64, page_size: u64) -> u64 {
    let bytes: u64 = batch
        .iter()
        .flat_map(|r| &r.records)
        .map(|r| {
            let headers: usize = r.headers.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
            (r.value.len() + r.key.len() + headers) as u64
        })
        .sum();
    COMMIT_OVERHEAD_PAGES + merged_pages + bytes.div_ceil(page_size.max(1))
}

/// Starts the checkpointer thread: one `PASSIVE` checkpoint per request from the writer; it
/// ends with the writer (when the sender is dropped).
fn spawn_checkpointer(path: &Path) -> Result<std::sync::mpsc::SyncSender<()>> {
    let conn = open_writer_connection(path).map_err(|e| append_error(&e))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("sentinel-log-checkpointer".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                });
                match done {
                    Ok((wal, copied)) => {
                        tracing::debug!(wal, copied, "WAL checkpointed.");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "WAL checkpoint failed; the next one retries.");
                    }
                }
            }
        })?;
    Ok(tx)
}

/// Writes every request of the batch in one transaction, with a slice of the event-id
/// merge (see [`event_ids`]); positions per request, in order, and the pages of
/// `log_event_ids` the merge wrote (estimated).
///
/// A record whose `event_id` was appended to its topic before (or earlier in this batch)
/// is not written again: it gets the earlier offset.
///
/// A file stamped with a newer format than [`LOG_FORMAT`] since this process opened it (a
/// newer binary opened it too) gets nothing: [`BatchError::NewerFormat`].
fn write_batch(
    conn: &mut rusqlite::Connection,
    ids: &mut EventIds,
    batch: &[WriteRequest],
) -> Result<(Vec<Vec<Position>>, u64), BatchError> {
    let now = now_micros();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let format = file_format(&tx)?;
    if format > LOG_FORMAT {
        return Err(BatchError::NewerFormat(format));
    }
    // Records another process appended since this writer last looked.
    let caught_up = ids.catch_up(&tx)?;
    let mut pending = Pending::default();
    let mut all = Vec::with_capacity(batch.len());
    let mut records = 0;
    {
        let mut insert = tx.prepare_cached(INSERT_RECORD)?;
        for req in batch {
            let mut positions = Vec::with_capacity(req.records.len());
            for record in &req.records {
                records += 1;
                let event_id = record.header(HEADER_EVENT_ID);
                let earlier = match event_id {
                    Some(id) => match pending.find(&req.topic, id) {
                        Some(offset) => Some(offset),
                        None => ids.offset_of(&tx, &req.topic, id)?,
                    },
                    None => None,
                };
                let offset = match earlier {
                    Some(offset) => offset,
                    None => {
                        insert.execute(params![
                            req.topic,
                            record.key,
                            event_id,
                            encode_headers(&record.headers),
                            record.value,
                            now
                        ])?;
                        // No `RETURNING` (SQLite buffers returned rows in an ephemeral
                        // table per statement): the new row's offset is its rowid.
                        let offset = tx.last_insert_rowid();
                        match event_id {
                            Some(id) => pending.appended(&req.topic, id, offset),
                            None => pending.note_offset(offset),
                        }
                        offset
                    }
                };
                positions.push(Position {
                    partition: 0,
                    offset,
                });
            }
            all.push(positions);
        }
    }
    ids.merge_slice(&tx, records + caught_up, &mut pending)?;
    tx.commit()?;
    let merged_pages = ids.merged_pages(pending.merged());
    ids.committed(pending);
    Ok((all, merged_pages))
}

/// A group member on the embedded log. Groups have one member at a time: the embedded log
/// runs every stage once, in one process.
struct SqliteSubscription {
    log: SqliteLog,
    group: String,
    topic: String,
    /// Next offset to hand out (in memory; the committed offset may lag behind).
    next: i64,
}

#[async_trait]
impl Subscription for SqliteSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Stored>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before reading so an append between read and wait wakes us.
            let notified = self.log.appended.notified();
            let batch = self.log.read(&self.topic, 0, self.next, max).await?;
            if let Some(last) = batch.last() {
                self.next = last.position.offset + 1;
                return Ok(batch);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let nap = (deadline - now).min(CROSS_PROCESS_POLL);
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn commit(&mut self, processed: &[Position]) -> Result<()> {
        let mut seen = HashSet::new();
        for p in highest_per_partition(processed) {
            if seen.insert(p.partition) {
                sqlx::query(COMMIT_OFFSET)
                    .bind(&self.group)
                    .bind(&self.topic)
                    .bind(p.offset + 1)
                    .execute(&self.log.pool)
                    .await?;
            }
        }
        Ok(())
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(id: &str) -> Record {
        Record {
            key: "acme/api".to_owned(),
            value: id.as_bytes().to_vec(),
            headers: vec![(HEADER_EVENT_ID.to_owned(), id.as_bytes().to_vec())],
        }
    }

    async fn table_sql(log: &SqliteLog) -> String {
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'log_records'")
            .fetch_one(log.pool())
            .await
            .unwrap()
    }

    /// A new log numbers records by rowid; a log created when the table had
    /// `AUTOINCREMENT` keeps that table, so an offset freed by a deleted last row is still
    /// never handed out again there.
    #[tokio::test]
    async fn new_logs_use_rowid_offsets_and_older_logs_keep_autoincrement() {
        let dir = tempfile::tempdir().unwrap();

        let log = SqliteLog::open(&dir.path().join("new.db")).await.unwrap();
        log.ensure_topic("t", 1).await.unwrap();
        assert!(!table_sql(&log).await.contains("AUTOINCREMENT"));
        let first = log
            .append("t", vec![record("a"), record("b")])
            .await
            .unwrap();
        let again = log
            .append("t", vec![record("a"), record("c")])
            .await
            .unwrap();
        assert_eq!(again[0], first[0], "a duplicate gets the earlier offset");
        assert!(again[1].offset > first[1].offset && first[1].offset > first[0].offset);

        let old = dir.path().join("old.db");
        let old_schema =
            SCHEMA.replace("INTEGER PRIMARY KEY,", "INTEGER PRIMARY KEY AUTOINCREMENT,");
        assert_ne!(old_schema, SCHEMA);
        {
            let conn = rusqlite::Connection::open(&old).unwrap();
            conn.execute_batch(&old_schema).unwrap();
        }
        let log = SqliteLog::open(&old).await.unwrap();
        log.ensure_topic("t", 1).await.unwrap();
        assert!(table_sql(&log).await.contains("AUTOINCREMENT"));
        let written = log
            .append("t", vec![record("a"), record("b")])
            .await
            .unwrap();
        sqlx::query("DELETE FROM log_records WHERE \"offset\" = ?1")
            .bind(written[1].offset)
            .execute(log.pool())
            .await
            .unwrap();
        let next = log.append("t", vec![record("c")]).await.unwrap();
        assert_eq!(next[0].offset, written[1].offset + 1);
    }

    /// Checkpoints are requested by WAL pages: the records' bytes, the merged ids' leaves
    /// and a commit's own overhead.
    #[test]
    fn wal_page_estimate_counts_bytes_and_merged_leaves() {
        let request = |records: Vec<Record>| WriteRequest {
            topic: "t".to_owned(),
            records,
            reply: oneshot::channel().0,
        };
        let small: Vec<Record> = (0..10).map(|i| record(&format!("id-{i}"))).collect();
        let pages = estimated_wal_pages(&[request(small.clone())], 0, 4096);
        assert_eq!(pages, 1 + COMMIT_OVERHEAD_PAGES);
        let pages = estimated_wal_pages(&[request(small)], 3, 4096);
        assert_eq!(pages, 1 + 3 + COMMIT_OVERHEAD_PAGES);
        let mut large = record("big");
        large.value = vec![0; 10 * 4096];
        let pages = estimated_wal_pages(
            &[request(vec![large.clone()]), request(vec![large])],
            0,
            4096,
        );
        assert!((21 + COMMIT_OVERHEAD_PAGES..=22 + COMMIT_OVERHEAD_PAGES).contains(&pages));
    }

    /// Generations of 8 ids, merged 2 a commit: a few single-record appends leave one
    /// half merged.
    const TEST_PACE: Pace = Pace {
        merge_at: 8,
        slice_min: 2,
    };

    async fn merged(log: &SqliteLog) -> (i64, i64) {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM log_event_ids), \
             (SELECT merged_upto FROM log_event_ids_merged)",
        )
        .fetch_one(log.pool())
        .await
        .unwrap()
    }

    /// Appends each id alone (one commit each) and returns the offsets.
    async fn append_each(log: &SqliteLog, topic: &str, ids: &[String]) -> Vec<i64> {
        let mut offsets = Vec::new();
        for id in ids {
            offsets.push(log.append(topic, vec![record(id)]).await.unwrap()[0].offset);
        }
        offsets
    }

    /// Deduplication stays exact while ids move from the writer's memory into
    /// `log_event_ids`: before, during and after a merge, and across a restart in the
    /// middle of one (the restarted writer reads the unmerged ids back and merges them
    /// again); every duplicate gets the first offset and nothing is appended twice.
    #[tokio::test]
    async fn deduplication_is_exact_across_merges_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let log = SqliteLog::open_with_pace(&path, TEST_PACE).await.unwrap();
        log.ensure_topic("t", 1).await.unwrap();
        log.ensure_topic("u", 1).await.unwrap();
        let ids: Vec<String> = (0..40).map(|i| format!("id-{i:02}")).collect();
        let mut first = append_each(&log, "t", &ids[..9]).await;
        // 9 unmerged ids started a generation (8 or more) after the 8th commit; the 9th
        // commit merged 2 of them.
        let (rows, upto) = merged(&log).await;
        assert_eq!((rows, upto), (2, 0), "a generation is half merged");

        // Restart in the middle of the generation.
        drop(log);
        let log = SqliteLog::open_with_pace(&path, TEST_PACE).await.unwrap();
        assert_eq!(merged(&log).await, (2, 0), "merged_upto was not raised");
        // Duplicates in memory and in the table, also inside one batch.
        let again = log
            .append("t", vec![record(&ids[0]), record(&ids[8]), record(&ids[8])])
            .await
            .unwrap();
        assert_eq!(
            again.iter().map(|p| p.offset).collect::<Vec<_>>(),
            vec![first[0], first[8], first[8]]
        );
        // The restarted writer began merging the 9 ids it read back (6 merged by that
        // commit of 3 records, 2 of them again), and the next commit finishes.
        assert_eq!(merged(&log).await, (6, 0));
        let other = log.append("u", vec![record(&ids[0])]).await.unwrap()[0].offset;
        assert!(other > first[8], "another topic may hold the same id");
        assert_eq!(merged(&log).await, (8, 0));
        let other_again = log.append("u", vec![record(&ids[0])]).await.unwrap()[0].offset;
        assert_eq!(other_again, other);
        assert_eq!(
            merged(&log).await,
            (9, first[8]),
            "the generation is merged"
        );
        first.extend(append_each(&log, "t", &ids[9..]).await);
        for (id, offset) in ids.iter().zip(&first) {
            let again = log.append("t", vec![record(id)]).await.unwrap()[0].offset;
            assert_eq!(again, *offset, "{id}");
        }
        let (rows, upto) = merged(&log).await;
        assert!(
            upto > 0 && rows >= 8,
            "generations were merged: {rows} ids, up to {upto}"
        );
        // Every id merged so far is in the table once, with its first offset.
        let table: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT topic, event_id, \"offset\" FROM log_event_ids")
                .fetch_all(log.pool())
                .await
                .unwrap();
        for (topic, id, offset) in &table {
            let expected = if topic == "u" {
                other
            } else {
                first[ids.iter().position(|i| i == id).unwrap()]
            };
            assert_eq!(*offset, expected, "{topic}/{id}");
        }
        // Nothing was appended twice.
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM log_records")
            .fetch_one(log.pool())
            .await
            .unwrap();
        assert_eq!(n, 41);
    }

    /// Two writers on one file (two processes, or two opens in one): each sees the ids
    /// the other appended, merged or not.
    #[tokio::test]
    async fn deduplication_is_exact_across_writers_of_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let a = SqliteLog::open_with_pace(&path, TEST_PACE).await.unwrap();
        let b = SqliteLog::open_with_pace(&path, TEST_PACE).await.unwrap();
        a.ensure_topic("t", 1).await.unwrap();
        let ids: Vec<String> = (0..30).map(|i| format!("id-{i:02}")).collect();
        let mut offsets = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let (first, second) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            let offset = first.append("t", vec![record(id)]).await.unwrap()[0].offset;
            // At once through the other writer, and every earlier id again.
            let again = second.append("t", vec![record(id)]).await.unwrap()[0].offset;
            assert_eq!(again, offset, "{id}");
            offsets.push(offset);
            for (id, offset) in ids.iter().zip(&offsets) {
                assert_eq!(
                    first.append("t", vec![record(id)]).await.unwrap()[0].offset,
                    *offset
                );
            }
        }
        assert!(merged(&a).await.1 > 0, "generations were merged");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM log_records")
            .fetch_one(a.pool())
            .await
            .unwrap();
        assert_eq!(n, 30);
    }

    async fn user_version(log: &SqliteLog) -> i64 {
        sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(log.pool())
            .await
            .unwrap()
    }

    /// A new file is stamped with this binary's format. A file a newer binary stamped is
    /// refused with a message that says so, with nothing created or appended in it — at
    /// open, or at the next append when the newer binary stamped it afterwards.
    #[tokio::test]
    async fn files_carry_their_format_and_newer_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let log = SqliteLog::open(&path).await.unwrap();
        assert_eq!(user_version(&log).await, LOG_FORMAT);
        log.ensure_topic("t", 1).await.unwrap();
        let first = log.append("t", vec![record("a")]).await.unwrap();
        // A newer binary opens the file while this one runs.
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", LOG_FORMAT + 1)
            .unwrap();
        let refused = log.append("t", vec![record("b")]).await.unwrap_err();
        assert!(
            matches!(refused, crate::Error::NewerFormat { found, .. } if found == LOG_FORMAT + 1),
            "{refused:?}"
        );
        let end = log.end_offsets("t").await.unwrap()[0];
        assert_eq!(end, first[0].offset + 1, "nothing appended after the stamp");

        let newer = dir.path().join("newer.db");
        {
            let conn = rusqlite::Connection::open(&newer).unwrap();
            conn.pragma_update(None, "user_version", LOG_FORMAT + 1)
                .unwrap();
        }
        let error = SqliteLog::open(&newer).await.unwrap_err();
        assert!(
            matches!(error, crate::Error::NewerFormat { found, supported, .. }
                if found == LOG_FORMAT + 1 && supported == LOG_FORMAT),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("newer than this binary's"),
            "{error}"
        );
        assert!(!error.is_transient());
        let conn = rusqlite::Connection::open(&newer).unwrap();
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing created in the newer file");
    }

    /// A log created with the former unique index on `log_records` keeps deduplicating
    /// its old ids: they move into `log_event_ids`, all marked merged, and the index goes.
    #[tokio::test]
    async fn a_log_with_the_former_unique_index_is_moved_to_log_event_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE log_records (
                    \"offset\" INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                    key TEXT NOT NULL, event_id TEXT, headers TEXT NOT NULL,
                    value BLOB NOT NULL, appended_at_micros INTEGER NOT NULL);
                 CREATE INDEX log_records_topic_offset ON log_records (topic, \"offset\");
                 CREATE UNIQUE INDEX log_records_topic_event_id
                    ON log_records (topic, event_id) WHERE event_id IS NOT NULL;
                 CREATE TABLE log_topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
                 INSERT INTO log_topics VALUES ('t', 1);
                 INSERT INTO log_records (topic, key, event_id, headers, value, appended_at_micros)
                 VALUES ('t', 'k', 'old-1', '[]', x'00', 0), ('t', 'k', NULL, '[]', x'00', 0),
                        ('t', 'k', 'old-2', '[]', x'00', 0);",
            )
            .unwrap();
        }
        let log = SqliteLog::open(&path).await.unwrap();
        let index: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'log_records_topic_event_id'",
        )
        .fetch_one(log.pool())
        .await
        .unwrap();
        assert_eq!(index, 0);
        assert_eq!(merged(&log).await, (2, 3));
        assert_eq!(
            user_version(&log).await,
            LOG_FORMAT,
            "stamped with the move"
        );
        let again = log
            .append("t", vec![record("old-2"), record("old-1"), record("new")])
            .await
            .unwrap();
        assert_eq!(
            again.iter().map(|p| p.offset).collect::<Vec<_>>(),
            vec![3, 1, 4]
        );
        // Opening it again finds nothing to move.
        drop(log);
        let log = SqliteLog::open(&path).await.unwrap();
        assert_eq!(merged(&log).await, (2, 3));
        assert_eq!(user_version(&log).await, LOG_FORMAT);
        assert_eq!(
            log.append("t", vec![record("new")]).await.unwrap()[0].offset,
            4
        );
    }

    #[test]
    fn headers_round_trip_including_binary() {
        let h = vec![
            ("a".to_owned(), b"x".to_vec()),
            ("b".to_owned(), vec![0xff, 0]),
        ];
        assert_eq!(decode_headers(&encode_headers(&h)), h);
        // The stored form is unchanged: `[name, text]`, or `[name, [bytes…]]`.
        assert_eq!(encode_headers(&h), r#"[["a","x"],["b",[255,0]]]"#);
        assert_eq!(encode_headers(&[]), "[]");
    }
}
