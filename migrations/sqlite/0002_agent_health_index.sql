-- An agent's latest finished tasks, for the health score recomputed at every task outcome
-- (agent_health): without it each outcome sorts all of the agent's tasks, which makes a
-- rebuild quadratic in the number of tasks.
CREATE INDEX IF NOT EXISTS agent_tasks_agent_finished
    ON agent_tasks (agent_id, completed_at DESC, id DESC)
    WHERE status IN ('completed', 'partial', 'failed');
