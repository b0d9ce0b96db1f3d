-- A merged event id's offset (ids after merged_upto are in the writer's memory).
SELECT "offset" FROM log_event_ids WHERE topic = ?1 AND event_id = ?2
