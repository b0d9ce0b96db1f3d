-- Never lowered: another process may have merged further.
UPDATE log_event_ids_merged SET merged_upto = MAX(merged_upto, ?1) WHERE id = 0
