INSERT INTO log_consumer_offsets (grp, topic, next_offset) VALUES (?1, ?2, ?3)
ON CONFLICT (grp, topic) DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)
