-- Logs created before log_event_ids deduplicated with a unique index on log_records: move
-- every id into log_event_ids, mark them all merged and drop the index (in the caller's
-- transaction, which holds the write lock).
INSERT OR IGNORE INTO log_event_ids (topic, event_id, "offset")
SELECT topic, event_id, "offset" FROM log_records
WHERE event_id IS NOT NULL
ORDER BY topic, event_id;
UPDATE log_event_ids_merged
SET merged_upto = MAX(merged_upto, (SELECT COALESCE(MAX("offset"), 0) FROM log_records))
WHERE id = 0;
DROP INDEX log_records_topic_event_id;
