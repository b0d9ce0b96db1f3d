-- Ids of the records after an offset (those not yet merged into log_event_ids, or appended
-- by another process since the writer last looked), oldest first.
SELECT topic, event_id, "offset" FROM log_records
WHERE "offset" > ?1 AND event_id IS NOT NULL
ORDER BY "offset"
