SELECT next_offset FROM log_consumer_offsets WHERE grp = ?1 AND topic = ?2
