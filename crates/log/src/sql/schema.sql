-- Embedded event log (SQLite, WAL). Append-only: rows are never updated or deleted.
CREATE TABLE IF NOT EXISTS log_records (
    "offset"   INTEGER PRIMARY KEY AUTOINCREMENT,
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
