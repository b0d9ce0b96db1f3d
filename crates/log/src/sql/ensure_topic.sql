INSERT INTO log_topics (topic, partitions) VALUES (?1, 1) ON CONFLICT DO NOTHING
