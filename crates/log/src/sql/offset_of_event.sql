SELECT "offset" FROM log_records WHERE topic = ?1 AND event_id = ?2
