//! Deduplication of the embedded log's appends on `(topic, event_id)`, with the index merged
//! in batches rather than maintained record by record.
//!
//! Event ids are random (UUID v5 of a delivery id, or v4). A unique index kept up to date by
//! every append writes one random leaf page per record: at a few dozen records per commit
//! that is a few dozen 4 KiB pages in the WAL per commit, written again by the checkpoint,
//! several times the records' own bytes. In `sentinel bench ingest` that index cost about
//! a quarter of the durable throughput (docs/ingestion.md, session 10).
//!
//! Here the ids of every record up to `merged_upto` are in the `log_event_ids` table, and
//! the ids of the later records not merged yet are in the writer's memory
//! (`EventIds::unmerged`, in key order), read back from `log_records` when the writer
//! starts. Once enough ids are unmerged (`EventIds::merge_threshold`), a *merge* starts:
//! every id of a record up to the newest offset seen then (`upto`) is merged into the table
//! in key order, a slice per append commit, in the same transaction as the appends (no
//! extra fsync). Consecutive slices cover consecutive key ranges, so a merge of `M` ids
//! writes about `min(M, L)` leaves of a table of `L` leaves, against `M` for the unique
//! index: a saving of `M / L` while the table is small. So that a large log does not lose
//! it entirely, a merge waits for about as many ids as the table has leaves (at least
//! 32 Ki, at most 256 Ki: about 3 to 25 MB of memory, the latter from about 11 million ids
//! on), which keeps it to about one leaf per merged id at worst.
//!
//! An id leaves memory once the commit holding its slice is durable (lookups then find it
//! in the table); the commit of the last slice raises `merged_upto` to `upto`. A slice
//! walks on from the last key merged, so no commit sorts or scans all the ids in memory. A
//! crash in the middle of a merge leaves `merged_upto` where it was: the writer reads the
//! ids after it back on restart and merges them again (`INSERT OR IGNORE`).
//!
//! Other processes may append to the same file. Holding the write lock (`BEGIN
//! IMMEDIATE`), the writer first reads the ids of any record appended since it last looked
//! (`EventIds::catch_up`), so deduplication stays exact across processes running this
//! version; slices are sized by every id a transaction takes into memory, its own and
//! those caught up, so memory shrinks whichever process appends. A process of an earlier
//! version, which relied on the unique index, must not run on the file once this version
//! has opened it (the index is gone): stop every process before upgrading. Like offsets,
//! this relies on records never being deleted (`schema.sql`).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::Bound::{Excluded, Included, Unbounded};

use rusqlite::{OptionalExtension, Transaction, params};

const OFFSET_OF_EVENT: &str = include_str!("../sql/offset_of_event.sql");
const MERGE_EVENT_ID: &str = include_str!("../sql/merge_event_id.sql");
const MERGED_UPTO: &str = include_str!("../sql/merged_upto.sql");
const SET_MERGED_UPTO: &str = include_str!("../sql/set_merged_upto.sql");
const UNMERGED_EVENT_IDS: &str = include_str!("../sql/unmerged_event_ids.sql");
const LAST_OFFSET: &str = include_str!("../sql/last_offset.sql");
const HAS_EVENT_ID_INDEX: &str = include_str!("../sql/has_event_id_index.sql");
const MIGRATE_EVENT_ID_INDEX: &str = include_str!("../sql/migrate_event_id_index.sql");

/// When merges start and how fast they go.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    /// Unmerged ids at which a merge starts, at least; a merge starts at about as many ids
    /// as the table has leaves (see [`EventIds::merge_threshold`]), up to [`MERGE_AT_MAX`].
    /// Larger merges write fewer pages per merged id but hold more in memory (about 100
    /// bytes per id) and take longer to read back when the writer starts.
    pub(super) merge_at: usize,
    /// Fewest ids merged per commit while a merge is in progress; a commit that takes `n`
    /// ids into memory merges `2 n` (at most [`SLICE_MAX`]), so merging outpaces appending.
    pub(super) slice_min: usize,
}

/// The production pace: merges of 32 Ki ids, at least 64 merged per commit.
pub(super) const PACE: Pace = Pace {
    merge_at: 32 * 1024,
    slice_min: 64,
};

/// Most ids a merge waits for: 256 Ki, about 25 MB in memory.
const MERGE_AT_MAX: usize = 256 * 1024;

/// Most ids merged per commit.
const SLICE_MAX: usize = 4096;

/// Ids in a 4 KiB leaf of `log_event_ids`, roughly (two thirds full, 36-byte ids, a short
/// topic): for the WAL estimate and the merge threshold.
const IDS_PER_LEAF: u64 = 45;

/// The writer's view of the log's event ids.
#[derive(Debug)]
pub(super) struct EventIds {
    /// Per topic, event id → offset of every record after the table's `merged_upto` that
    /// this writer knows of (appended by it, or by another process before it looked) and
    /// that is not merged yet; in key order, the table's.
    unmerged: BTreeMap<String, BTreeMap<String, i64>>,
    /// Entries of `unmerged`.
    unmerged_len: usize,
    /// The highest offset this writer has seen (all records up to it are accounted for).
    seen_upto: i64,
    /// The highest `merged_upto` this writer knows of: an upper bound of the ids in
    /// `log_event_ids` (offsets also count other topics' records and records without ids).
    merged_upto: i64,
    /// The merge in progress.
    merge: Option<Merge>,
    pace: Pace,
}

/// A merge in progress.
#[derive(Debug)]
struct Merge {
    /// Every record up to this offset has its id merged once the merge is done.
    upto: i64,
    /// Ids in memory when it started (for the WAL estimate).
    size: usize,
    /// The last key merged so far: the next slice starts after it.
    after: Option<(String, String)>,
}

/// What a transaction did to the ids, applied by [`EventIds::committed`] once it committed.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Per topic, the ids appended and their offsets.
    appended: HashMap<String, HashMap<String, i64>>,
    /// The keys merged in this transaction, in key order.
    merged: Vec<(String, String)>,
    /// Whether this transaction finished the merge (raised `merged_upto`).
    merge_done: bool,
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
        self.merged.len()
    }
}

impl EventIds {
    /// Moves a log's former unique index into `log_event_ids` (once), then reads the ids of
    /// the records not yet merged.
    pub(super) fn load(conn: &mut rusqlite::Connection, pace: Pace) -> rusqlite::Result<Self> {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let old_index = tx
            .query_row(HAS_EVENT_ID_INDEX, [], |_| Ok(()))
            .optional()?
            .is_some();
        if old_index {
            tracing::info!("Moving the log's event-id index into log_event_ids (once).");
            tx.execute_batch(MIGRATE_EVENT_ID_INDEX)?;
        }
        let merged_upto: i64 = tx.query_row(MERGED_UPTO, [], |row| row.get(0))?;
        let mut ids = EventIds::empty(merged_upto, pace);
        ids.catch_up(&tx)?;
        // Stamped with the move, in the same transaction (the opener refused newer ones).
        let format: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if format < super::LOG_FORMAT {
            tx.pragma_update(None, "user_version", super::LOG_FORMAT)?;
        }
        tx.commit()?;
        ids.start_merge();
        Ok(ids)
    }

    /// No id in memory yet, and none merging: everything up to `merged_upto` is merged.
    fn empty(merged_upto: i64, pace: Pace) -> Self {
        EventIds {
            unmerged: BTreeMap::new(),
            unmerged_len: 0,
            seen_upto: merged_upto,
            merged_upto,
            merge: None,
            pace: Pace {
                merge_at: pace.merge_at.max(1),
                slice_min: pace.slice_min.max(1),
            },
        }
    }

    /// Reads the ids of the records appended (by any process) since this writer last looked,
    /// and returns how many. Call holding the write lock, so none is appended meanwhile.
    pub(super) fn catch_up(&mut self, tx: &Transaction<'_>) -> rusqlite::Result<usize> {
        let last: i64 = tx
            .prepare_cached(LAST_OFFSET)?
            .query_row([], |row| row.get(0))?;
        if last <= self.seen_upto {
            return Ok(0);
        }
        let mut read = 0;
        let mut stmt = tx.prepare_cached(UNMERGED_EVENT_IDS)?;
        let mut rows = stmt.query(params![self.seen_upto])?;
        while let Some(row) = rows.next()? {
            let (topic, event_id, offset): (String, String, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            self.insert(topic, event_id, offset);
            read += 1;
        }
        self.seen_upto = last;
        Ok(read)
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

    /// The merge's remaining ids in key order: those after `merge.after` of records up to
    /// `merge.upto` (later records' ids wait for the next merge).
    fn remaining<'a>(&'a self, merge: &'a Merge) -> impl Iterator<Item = (&'a str, &'a str, i64)> {
        let from_topic = merge
            .after
            .as_ref()
            .map_or(Unbounded, |(topic, _)| Included(topic.as_str()));
        self.unmerged
            .range::<str, _>((from_topic, Unbounded))
            .flat_map(move |(topic, ids)| {
                let ids = match &merge.after {
                    Some((t, id)) if t == topic => {
                        ids.range::<str, _>((Excluded(id.as_str()), Unbounded))
                    }
                    _ => ids.range::<str, _>(..),
                };
                ids.map(move |(id, offset)| (topic.as_str(), id.as_str(), *offset))
            })
            .filter(move |(_, _, offset)| *offset <= merge.upto)
    }

    /// Merges the next slice in `tx`, and raises `merged_upto` when that leaves none.
    /// `taken_in` is the ids this transaction brings into memory: its own records and those
    /// other processes appended since ([`EventIds::catch_up`]); twice as many are merged, so
    /// memory shrinks however the appends are shared between processes.
    pub(super) fn merge_slice(
        &self,
        tx: &Transaction<'_>,
        taken_in: usize,
        pending: &mut Pending,
    ) -> rusqlite::Result<()> {
        let Some(merge) = &self.merge else {
            return Ok(());
        };
        let n = (2 * taken_in).clamp(self.pace.slice_min, SLICE_MAX.max(self.pace.slice_min));
        let mut insert = tx.prepare_cached(MERGE_EVENT_ID)?;
        let mut remaining = self.remaining(merge);
        for (topic, event_id, offset) in remaining.by_ref().take(n) {
            insert.execute(params![topic, event_id, offset])?;
            pending.merged.push((topic.to_owned(), event_id.to_owned()));
        }
        if remaining.next().is_none() {
            tx.prepare_cached(SET_MERGED_UPTO)?
                .execute(params![merge.upto])?;
            pending.merge_done = true;
        }
        Ok(())
    }

    /// Applies a committed transaction: its appended ids join the unmerged ones, the ids it
    /// merged leave memory, and a merge starts when enough ids are unmerged.
    pub(super) fn committed(&mut self, pending: Pending) {
        for (topic, ids) in pending.appended {
            for (event_id, offset) in ids {
                self.insert(topic.clone(), event_id, offset);
            }
        }
        self.seen_upto = self.seen_upto.max(pending.last_offset);
        for (topic, event_id) in &pending.merged {
            if let Some(ids) = self.unmerged.get_mut(topic) {
                if ids.remove(event_id).is_some() {
                    self.unmerged_len -= 1;
                }
                if ids.is_empty() {
                    self.unmerged.remove(topic);
                }
            }
        }
        if pending.merge_done {
            if let Some(merge) = self.merge.take() {
                self.merged_upto = self.merged_upto.max(merge.upto);
            }
        } else if let (Some(merge), Some(last)) =
            (&mut self.merge, pending.merged.into_iter().last())
        {
            merge.after = Some(last);
        }
        self.start_merge();
    }

    /// Unmerged ids at which a merge starts: about as many as the table has leaves (so a
    /// merge writes at most about one leaf per id, however large the log), at least
    /// [`Pace::merge_at`] and at most [`MERGE_AT_MAX`].
    fn merge_threshold(&self) -> usize {
        let leaves = usize::try_from(self.table_leaves()).unwrap_or(usize::MAX);
        leaves.clamp(self.pace.merge_at, MERGE_AT_MAX.max(self.pace.merge_at))
    }

    /// Leaves of `log_event_ids`, at most (from the highest `merged_upto` known).
    fn table_leaves(&self) -> u64 {
        u64::try_from(self.merged_upto).unwrap_or(0) / IDS_PER_LEAF + 1
    }

    /// Starts a merge when none is in progress and enough ids are unmerged.
    fn start_merge(&mut self) {
        if self.merge.is_none() && self.unmerged_len >= self.merge_threshold() {
            self.merge = Some(Merge {
                upto: self.seen_upto,
                size: self.unmerged_len,
                after: None,
            });
        }
    }

    /// The leaves of `log_event_ids` that merging `merged` consecutive ids of the current
    /// merge writes, about: its ids are spread over the whole key space, so a slice of
    /// `merged` of its `size` ids spans `merged / size` of the table's leaves (plus the
    /// first), and never more leaves than ids.
    pub(super) fn merged_pages(&self, merged: usize) -> u64 {
        let (Some(merge), Ok(merged)) = (&self.merge, u64::try_from(merged)) else {
            return 0;
        };
        if merged == 0 {
            return 0;
        }
        let size = u64::try_from(merge.size.max(1)).unwrap_or(u64::MAX);
        let spanned =
            (merged.saturating_mul(self.table_leaves()) / size).max(merged / IDS_PER_LEAF);
        merged.min(1 + spanned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(merged_upto: i64, unmerged: usize) -> EventIds {
        let mut ids = EventIds::empty(merged_upto, PACE);
        for i in 0..unmerged {
            let offset = merged_upto + 1 + i64::try_from(i).unwrap_or(0);
            ids.insert("t".to_owned(), format!("id-{i:08}"), offset);
            ids.seen_upto = offset;
        }
        ids
    }

    /// A merge waits for about as many ids as the table has leaves, within bounds.
    #[test]
    fn merges_grow_with_the_table_within_bounds() {
        assert_eq!(ids(0, 0).merge_threshold(), PACE.merge_at);
        assert_eq!(ids(1_000_000, 0).merge_threshold(), PACE.merge_at);
        assert_eq!(ids(4_500_000, 0).merge_threshold(), 100_001);
        assert_eq!(ids(100_000_000, 0).merge_threshold(), MERGE_AT_MAX);
        // A merge starts at the threshold, not before.
        let mut small = ids(0, PACE.merge_at - 1);
        small.start_merge();
        assert!(small.merge.is_none());
        small.insert("t".to_owned(), "last".to_owned(), small.seen_upto + 1);
        small.start_merge();
        assert!(small.merge.is_some());
    }

    /// The WAL estimate of a slice: the share of the table's leaves its keys span, never
    /// more leaves than ids.
    #[test]
    fn merged_pages_span_the_tables_leaves() {
        // A small table: 64 ids of a merge of 32 Ki land on its first leaf or two.
        let mut small = ids(0, PACE.merge_at);
        small.start_merge();
        assert_eq!(small.merged_pages(0), 0);
        assert_eq!(small.merged_pages(64), 2);
        // A table of about as many leaves as the merge has ids: about one leaf per id.
        let mut large = ids(45 * 40_000, 40_001);
        large.start_merge();
        let pages = large.merged_pages(64);
        assert!((60..=64).contains(&pages), "{pages}");
        // No merge, nothing merged.
        assert_eq!(ids(0, 0).merged_pages(10), 0);
    }
}
