-- Whether the log still has the unique event-id index of logs created before log_event_ids.
SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'log_records_topic_event_id'
