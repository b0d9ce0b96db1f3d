SELECT merged_upto FROM log_event_ids_merged WHERE id = 0
