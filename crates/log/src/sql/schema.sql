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
CREATE UNIQUE INDEX IF NOT EXISTS log_records_topic_event_id
    ON log_records (topic, event_id) WHERE event_id IS NOT NULL;

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
