SELECT event_id FROM (
    SELECT "offset", event_id FROM log_records
    WHERE topic = ?1
    ORDER BY "offset" DESC
    LIMIT ?2
)
WHERE event_id IS NOT NULL
ORDER BY "offset"
