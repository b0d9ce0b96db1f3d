//! The event log: an append-only, partitioned sequence of immutable records.
//!
//! Every Sentinel stage reads facts from an [`EventLog`] from its own committed offset,
//! folds what it needs and appends new facts. Two backends implement the trait:
//!
//! * [`sqlite::SqliteLog`] — the embedded default: one SQLite file in WAL mode, one
//!   partition per topic, offsets are a monotonic sequence;
//! * `kafka::KafkaLog` (feature `kafka`) — Apache Kafka (or any Kafka-protocol broker)
//!   through rdkafka with its bundled librdkafka: idempotent producer with `acks=all`,
//!   consumer groups, offsets committed only after the output was durably appended.
//!
//! The log deals in raw records (key, value bytes, headers); the `sentinel-events` crate
//! owns encoding. Both backends pass the same conformance suite (`tests/conformance.rs`).
//!
//! [`topology`] declares the topics (from the workspace's `topology/` directory) and
//! creates or checks them; `testing` (feature `testing`) starts a throwaway
//! Kafka-protocol broker for other crates' tests.

#![forbid(unsafe_code)]

use std::time::Duration;

use async_trait::async_trait;

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topology;
pub mod url;

pub use url::LogUrl;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQLite backend failed.
    #[error("sqlite event log: {0}")]
    Sqlite(#[from] sqlx::Error),
    /// The SQLite backend's writer could not append.
    #[error("sqlite event log append: {message}")]
    Append {
        /// What went wrong.
        message: String,
        /// Whether retrying may succeed (the file was locked by another process, I/O).
        transient: bool,
    },
    /// The SQLite backend could not read records.
    #[error("sqlite event log read: {message}")]
    Read {
        /// What went wrong.
        message: String,
        /// Whether retrying may succeed (the file was locked by another process, I/O).
        transient: bool,
    },
    /// The SQLite schema could not be migrated.
    #[error("sqlite event log migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The Kafka backend failed.
    #[cfg(feature = "kafka")]
    #[error("kafka event log: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic is not known to this log (not declared in the topology or not created).
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// A log URL could not be understood.
    #[error("invalid log url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An operation did not complete in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// I/O on the data directory failed.
    #[error("event log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The broker's topic configuration differs from the declared topology.
    #[error("topology: {0}")]
    Topology(String),
    /// The embedded log's file is in a newer format than this binary knows (it was opened
    /// by a newer Sentinel, which may have changed how it is written).
    #[error(
        "the event log file {path} is in format {found}, newer than this binary's {supported}: \
         run the Sentinel version that wrote it (or newer), or use another file"
    )]
    NewerFormat {
        /// The file.
        path: String,
        /// Its format (`PRAGMA user_version`).
        found: i64,
        /// The newest format this binary reads and writes.
        supported: i64,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed (broker or database
    /// temporarily unavailable), as opposed to a permanent error.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Sqlite(e) => {
                matches!(
                    e,
                    sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
                ) || e
                    .as_database_error()
                    .is_some_and(|d| d.message().contains("database is locked"))
            }
            #[cfg(feature = "kafka")]
            Error::Kafka(_) => true,
            Error::Append { transient, .. } | Error::Read { transient, .. } => *transient,
            Error::Timeout(..) | Error::Io(_) => true,
            _ => false,
        }
    }
}

/// A record header: a name and raw bytes.
pub type Header = (String, Vec<u8>);

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partitioning key: records with the same key keep their order.
    pub key: String,
    /// The encoded value.
    pub value: Vec<u8>,
    /// Headers (`event_type`, `event_id`, `tenant` on Sentinel facts).
    pub headers: Vec<Header>,
}

impl Record {
    /// The value of the first header with this name, if any and if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Where a record sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Partition of the topic (always 0 on the embedded log).
    pub partition: i32,
    /// Offset within the partition; strictly increasing in append order.
    pub offset: i64,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The topic it was read from.
    pub topic: String,
    /// Its position.
    pub position: Position,
    /// The record as appended.
    pub record: Record,
}

impl Stored {
    /// The value of the first header with this name, if any and if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.record.header(name)
    }
}

/// Name of the header carrying the event id; the embedded log deduplicates appends on it.
pub const HEADER_EVENT_ID: &str = "event_id";
/// Name of the header carrying the fact type.
pub const HEADER_EVENT_TYPE: &str = "event_type";
/// Name of the header carrying the tenant.
pub const HEADER_TENANT: &str = "tenant";

/// An append-only, partitioned log of records.
///
/// # Invariants
///
/// * Records appended in one call with the same key are stored in call order, and
///   records with the same key are always read in append order.
/// * Offsets within a partition strictly increase; they need not be contiguous.
/// * [`EventLog::append`] returns only once every record is durable (fsynced WAL on SQLite,
///   acknowledged by all in-sync replicas on Kafka).
/// * Consumers see every record at least once; a consumer that crashes before
///   [`Subscription::commit`] sees the uncommitted records again.
///
/// # Errors
///
/// [`Error::UnknownTopic`] when the topic does not exist; backend errors otherwise
/// ([`Error::is_transient`] tells which are worth retrying).
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends a batch to `topic` and returns each record's position, in order.
    ///
    /// The embedded log ignores a record whose `event_id` header was already appended to the
    /// topic and returns the earlier position; Kafka appends it again, so consumers
    /// deduplicate on the event id.
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>>;

    /// Reads up to `max` records of one partition starting at `from` (inclusive), without a
    /// consumer group. Returns fewer (possibly none) at the end of the partition.
    async fn read(&self, topic: &str, partition: i32, from: i64, max: usize)
    -> Result<Vec<Stored>>;

    /// The number of partitions of `topic`.
    async fn partitions(&self, topic: &str) -> Result<i32>;

    /// The offset the next appended record of each partition will have at least (the
    /// high-water mark), indexed by partition.
    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>>;

    /// Joins consumer group `group` on `topic` and starts from the group's committed
    /// offsets (the beginning of the topic when the group has none).
    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>>;

    /// The group's committed offsets (next offset to read) per partition, if any.
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>>;

    /// Creates a topic if missing (embedded: a no-op beyond bookkeeping).
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<()>;

    /// The `event_id` headers of the most recently appended records of `topic`, oldest
    /// first: those among the last `max` records of the topic (on a partitioned topic, the
    /// last `max / partitions`, rounded up, of each partition). Records without an event id
    /// are skipped, so fewer may come back.
    ///
    /// Receivers seed their in-memory deduplication from it at start, so a restarted
    /// process still recognises recent redeliveries. The default reads the records; the
    /// embedded log reads only the ids.
    async fn recent_event_ids(&self, topic: &str, max: usize) -> Result<Vec<String>> {
        let ends = self.end_offsets(topic).await?;
        if max == 0 || ends.is_empty() {
            return Ok(Vec::new());
        }
        let share = i64::try_from(max.div_ceil(ends.len())).unwrap_or(i64::MAX);
        let mut ids = Vec::new();
        for (partition, end) in (0..).zip(ends) {
            let mut from = end.saturating_sub(share).max(0);
            while from < end {
                let batch = self.read(topic, partition, from, 1000).await?;
                let Some(last) = batch.last() else { break };
                from = last.position.offset + 1;
                ids.extend(
                    batch
                        .iter()
                        .filter(|s| s.position.offset < end)
                        .filter_map(|s| s.header(HEADER_EVENT_ID).map(str::to_owned)),
                );
            }
        }
        Ok(ids)
    }

    /// A short name of the backend (`sqlite` or `kafka`) for logs and metrics.
    fn backend(&self) -> &'static str;
}

/// A consumer group member's view of a topic.
#[async_trait]
pub trait Subscription: Send {
    /// Waits up to `wait` for records and returns at most `max` of them (possibly none).
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Stored>>;

    /// Commits progress: for every given position, the group resumes after it.
    ///
    /// Call this only once the output derived from these records is durably appended.
    async fn commit(&mut self, processed: &[Position]) -> Result<()>;

    /// Leaves the group cleanly (Kafka: commits nothing further, revokes partitions).
    async fn close(self: Box<Self>) -> Result<()>;
}

/// Highest processed position per partition: what a commit must store.
pub fn highest_per_partition(processed: &[Position]) -> Vec<Position> {
    let mut out: Vec<Position> = Vec::new();
    for p in processed {
        match out.iter_mut().find(|o| o.partition == p.partition) {
            Some(o) if o.offset < p.offset => o.offset = p.offset,
            Some(_) => {}
            None => out.push(*p),
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_per_partition_keeps_maximum() {
        let ps = [
            Position {
                partition: 1,
                offset: 5,
            },
            Position {
                partition: 0,
                offset: 9,
            },
            Position {
                partition: 1,
                offset: 7,
            },
            Position {
                partition: 1,
                offset: 6,
            },
        ];
        assert_eq!(
            highest_per_partition(&ps),
            vec![
                Position {
                    partition: 0,
                    offset: 9
                },
                Position {
                    partition: 1,
                    offset: 7
                }
            ]
        );
    }
}
