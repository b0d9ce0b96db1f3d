SELECT "offset", key, headers, value FROM log_records
WHERE topic = ?1 AND "offset" >= ?2
ORDER BY "offset"
LIMIT ?3
