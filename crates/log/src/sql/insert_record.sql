INSERT INTO log_records (topic, key, event_id, headers, value, appended_at_micros)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
