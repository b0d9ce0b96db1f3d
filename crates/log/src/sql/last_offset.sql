SELECT COALESCE(MAX("offset"), 0) FROM log_records
