-- One id of a merge slice; an id merged before (by a slice that committed before a crash,
-- or by another process) is left as it is.
INSERT OR IGNORE INTO log_event_ids (topic, event_id, "offset") VALUES (?1, ?2, ?3)
