SELECT COUNT(*) FROM log_topics WHERE topic = ?1
