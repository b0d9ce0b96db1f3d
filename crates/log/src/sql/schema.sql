-- Embedded event log (SQLite, WAL). Append-only: rows are never updated or deleted.
-- "offset" is the rowid: a new row gets the largest offset so far plus one. Because no row
-- is ever deleted, offsets are never reused and strictly increase, the guarantee that
-- AUTOINCREMENT gave logs created before it was dropped (those keep their table, which
-- is only created here when missing) at the cost of a sqlite_sequence read and write per
-- append. Anything that ever deletes rows must keep the row with the largest offset.
CREATE TABLE IF NOT EXISTS log_records (
    "offset"   INTEGER PRIMARY KEY,
    topic      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    event_id   TEXT,
    headers    TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    appended_at_micros INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_records_topic_offset ON log_records (topic, "offset");

-- Deduplication on (topic, event_id), merged in batches. Event ids are random (UUID v5 of a
-- delivery id, or v4), so an index maintained with every append would write one random
-- leaf page per record (to the WAL, then again at the checkpoint). Instead the ids of every
-- record up to `log_event_ids_merged.merged_upto` are here, and those of the records after
-- it are held by the writer in memory (read back from log_records when it starts) and
-- merged in key order a slice per commit: each leaf is written about once per merge of
-- many thousand ids. Logs that had the former unique index on log_records are moved here
-- when first opened.
CREATE TABLE IF NOT EXISTS log_event_ids (
    topic    TEXT    NOT NULL,
    event_id TEXT    NOT NULL,
    "offset" INTEGER NOT NULL,
    PRIMARY KEY (topic, event_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS log_event_ids_merged (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    merged_upto INTEGER NOT NULL
);
INSERT OR IGNORE INTO log_event_ids_merged (id, merged_upto) VALUES (0, 0);

CREATE TABLE IF NOT EXISTS log_topics (
    topic      TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS log_consumer_offsets (
    grp         TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
);
