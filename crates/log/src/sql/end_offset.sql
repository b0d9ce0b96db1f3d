SELECT COALESCE(MAX("offset"), -1) + 1 FROM log_records WHERE topic = ?1
