//! Deduplication of the embedded log's appends on `(topic, event_id)`, with the index merged
//! in batches rather than maintained record by record.
//!
//! Event ids are random (UUID v5 of a delivery id, or v4). A unique index kept up to date by
//! every append writes one random leaf page per record: at a few dozen records per commit
//! that is a few dozen 4 KiB pages in the WAL per commit, written again by the checkpoint,
//! several times the records' own bytes. In `sentinel bench ingest` that index cost about
//! a quarter of the durable throughput and was most of the tail at half of peak
//! (docs/ingestion.md, session 10).
//!
//! Here the ids of every record up to `merged_upto` are in the `log_event_ids` table, and
//! the ids of the records after it are in the writer's memory ([`EventIds::unmerged`]),
//! read back from `log_records` when the writer starts. Once [`MERGE_AT`] ids are
//! unmerged, they become a *generation*: sorted by key and merged into the table a slice
//! per append commit, in the same transaction as the appends (no extra fsync). Consecutive
//! slices cover consecutive key ranges, so every leaf of the table is written about once
//! per generation rather than once per record. The commit holding a generation's last
//! slice also raises `merged_upto`; only after that are its ids dropped from memory. A
//! crash in the middle of a generation leaves `merged_upto` where it was: the writer reads
//! the generation's ids back on restart and merges them again (`INSERT OR IGNORE`).
//!
//! Other processes may append to the same file. Holding the write lock (`BEGIN
//! IMMEDIATE`), the writer first reads the ids of any record appended since it last looked
//! ([`EventIds::catch_up`]), so deduplication stays exact across processes, as it was with
//! the unique index.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

const OFFSET_OF_EVENT: &str = include_str!("../sql/offset_of_event.sql");
const MERGE_EVENT_ID: &str = include_str!("../sql/merge_event_id.sql");
const MERGED_UPTO: &str = include_str!("../sql/merged_upto.sql");
const SET_MERGED_UPTO: &str = include_str!("../sql/set_merged_upto.sql");
const UNMERGED_EVENT_IDS: &str = include_str!("../sql/unmerged_event_ids.sql");
const LAST_OFFSET: &str = include_str!("../sql/last_offset.sql");
const MIGRATE_EVENT_ID_INDEX: &str = include_str!("../sql/migrate_event_id_index.sql");

/// When generations start and how fast they are merged.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    /// Unmerged ids at which a generation starts. Larger generations write fewer pages per
    /// merged id (each leaf about once per generation) but hold more in memory (about 100
    /// bytes per id) and take longer to read back when the writer starts.
    pub(super) merge_at: usize,
    /// Fewest ids merged per commit while a generation is in progress; a commit of `n`
    /// records merges `2 n` (at most [`SLICE_MAX`]), so merging outpaces appending.
    pub(super) slice_min: usize,
}

/// The production pace: generations of 32 Ki ids, at least 64 merged per commit.
pub(super) const PACE: Pace = Pace {
    merge_at: 32 * 1024,
    slice_min: 64,
};

/// Most ids merged per commit.
const SLICE_MAX: usize = 4096;

/// Merged ids that share a 4 KiB leaf of `log_events_ids`, roughly (for the WAL estimate).
pub(super) const MERGED_IDS_PER_PAGE: u64 = 64;

/// The writer's view of the log's event ids.
#[derive(Debug)]
pub(super) struct EventIds {
    /// Per topic, event id → offset of every record after the table's `merged_upto` that
    /// this writer knows of: appended by it, or by another process before it looked.
    unmerged: HashMap<String, HashMap<String, i64>>,
    /// Entries of `unmerged`.
    unmerged_len: usize,
    /// The highest offset this writer has seen (all records up to it are accounted for).
    seen_upto: i64,
    /// The generation being merged, sorted by `(topic, event_id)`, and the next to merge.
    generation: Vec<(String, String, i64)>,
    next: usize,
    /// Every record up to this offset has its id in the generation (or merged before).
    generation_upto: i64,
    pace: Pace,
}

/// What a transaction did to the ids, applied by [`EventIds::committed`] once it committed.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Per topic, the ids appended and their offsets.
    appended: HashMap<String, HashMap<String, i64>>,
    /// The generation's entries merged in this transaction.
    merged: usize,
    /// The highest offset appended in this transaction.
    last_offset: i64,
}

impl Pending {
    /// Records that `event_id` was appended to `topic` at `offset` in this transaction.
    pub(super) fn appended(&mut self, topic: &str, event_id: &str, offset: i64) {
        self.appended
            .entry(topic.to_owned())
            .or_default()
            .insert(event_id.to_owned(), offset);
        self.note_offset(offset);
    }

    /// Records that a record without an id was appended at `offset`.
    pub(super) fn note_offset(&mut self, offset: i64) {
        self.last_offset = self.last_offset.max(offset);
    }

    /// The offset this transaction appended `event_id` to `topic` at, if it did.
    pub(super) fn find(&self, topic: &str, event_id: &str) -> Option<i64> {
        self.appended
            .get(topic)
            .and_then(|ids| ids.get(event_id))
            .copied()
    }

    /// Ids merged in this transaction.
    pub(super) fn merged(&self) -> usize {
        self.merged
    }
}

impl EventIds {
    /// Moves a log's former unique index into `log_event_ids` (once), then reads the ids of
    /// the records not yet merged.
    pub(super) fn load(conn: &mut rusqlite::Connection, pace: Pace) -> rusqlite::Result<Self> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let old_index: bool = tx
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'log_records_topic_event_id'",
                [],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if old_index {
            tracing::info!("Moving the log's event-id index into log_event_ids (once).");
            tx.execute_batch(MIGRATE_EVENT_ID_INDEX)?;
        }
        let merged_upto: i64 = tx.query_row(MERGED_UPTO, [], |row| row.get(0))?;
        let mut ids = EventIds {
            unmerged: HashMap::new(),
            unmerged_len: 0,
            seen_upto: merged_upto,
            generation: Vec::new(),
            next: 0,
            generation_upto: merged_upto,
            pace: Pace {
                merge_at: pace.merge_at.max(1),
                slice_min: pace.slice_min.max(1),
            },
        };
        ids.catch_up(&tx)?;
        tx.commit()?;
        ids.start_generation();
        Ok(ids)
    }

    /// Reads the ids of the records appended (by any process) since this writer last looked.
    /// Call holding the write lock, so none is appended meanwhile.
    pub(super) fn catch_up(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let last: i64 = tx
            .prepare_cached(LAST_OFFSET)?
            .query_row([], |row| row.get(0))?;
        if last <= self.seen_upto {
            return Ok(());
        }
        let mut stmt = tx.prepare_cached(UNMERGED_EVENT_IDS)?;
        let mut rows = stmt.query(params![self.seen_upto])?;
        while let Some(row) = rows.next()? {
            let (topic, event_id, offset): (String, String, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            self.insert(topic, event_id, offset);
        }
        self.seen_upto = last;
        Ok(())
    }

    fn insert(&mut self, topic: String, event_id: String, offset: i64) {
        if self
            .unmerged
            .entry(topic)
            .or_default()
            .insert(event_id, offset)
            .is_none()
        {
            self.unmerged_len += 1;
        }
    }

    /// The offset `event_id` was appended to `topic` at, if it was (in memory, else in
    /// `log_event_ids`).
    pub(super) fn offset_of(
        &self,
        tx: &Transaction<'_>,
        topic: &str,
        event_id: &str,
    ) -> rusqlite::Result<Option<i64>> {
        if let Some(offset) = self.unmerged.get(topic).and_then(|ids| ids.get(event_id)) {
            return Ok(Some(*offset));
        }
        tx.prepare_cached(OFFSET_OF_EVENT)?
            .query_row(params![topic, event_id], |row| row.get(0))
            .optional()
    }

    /// Merges the generation's next slice (sized for a commit of `records` records) in
    /// `tx`, raising `merged_upto` when the slice is its last.
    pub(super) fn merge_slice(
        &self,
        tx: &Transaction<'_>,
        records: usize,
        pending: &mut Pending,
    ) -> rusqlite::Result<()> {
        if self.next >= self.generation.len() {
            return Ok(());
        }
        let n = (2 * records).clamp(self.pace.slice_min, SLICE_MAX.max(self.pace.slice_min));
        let end = (self.next + n).min(self.generation.len());
        let mut merge = tx.prepare_cached(MERGE_EVENT_ID)?;
        for (topic, event_id, offset) in &self.generation[self.next..end] {
            merge.execute(params![topic, event_id, offset])?;
        }
        if end == self.generation.len() {
            tx.prepare_cached(SET_MERGED_UPTO)?
                .execute(params![self.generation_upto])?;
        }
        pending.merged = end - self.next;
        Ok(())
    }

    /// Applies a committed transaction: its appended ids join the unmerged ones, the
    /// generation advances (and is dropped from memory when done), and a new generation
    /// starts when enough ids are unmerged.
    pub(super) fn committed(&mut self, pending: Pending) {
        for (topic, ids) in pending.appended {
            for (event_id, offset) in ids {
                self.insert(topic.clone(), event_id, offset);
            }
        }
        self.seen_upto = self.seen_upto.max(pending.last_offset);
        self.next += pending.merged;
        if !self.generation.is_empty() && self.next >= self.generation.len() {
            let upto = self.generation_upto;
            for ids in self.unmerged.values_mut() {
                ids.retain(|_, offset| *offset > upto);
            }
            self.unmerged.retain(|_, ids| !ids.is_empty());
            self.unmerged_len = self.unmerged.values().map(HashMap::len).sum();
            self.generation = Vec::new();
            self.next = 0;
        }
        self.start_generation();
    }

    /// Starts a generation when none is in progress and enough ids are unmerged.
    fn start_generation(&mut self) {
        if self.generation.is_empty() && self.unmerged_len >= self.pace.merge_at {
            let mut generation: Vec<(String, String, i64)> = self
                .unmerged
                .iter()
                .flat_map(|(topic, ids)| {
                    ids.iter()
                        .map(|(id, offset)| (topic.clone(), id.clone(), *offset))
                })
                .collect();
            // The table's key order (SQLite compares TEXT bytewise, as `str` does).
            generation.sort_unstable();
            self.generation = generation;
            self.generation_upto = self.seen_upto;
        }
    }
}
