-- Facts projected since 0003: TaskAssigned, PredictionCorrelated, PullRequestReadied,
-- RollbackDecided, RevertPullRequestOpened, RevertFailed, AutoMergeEnabled and
-- AutoMergeDisabled. Additive: new nullable columns, one table.
-- SQLite: ids, times (RFC 3339 UTC, microseconds) and JSON are TEXT, as in 0001.

-- TaskAssigned: the agent the controller handed the task's latest attempt to, and when.
ALTER TABLE agent_tasks ADD COLUMN assigned_agent_id TEXT;
ALTER TABLE agent_tasks ADD COLUMN assigned_at TEXT;
-- PredictionCorrelated: the InfraMind prediction the task was linked to. The task's
-- correlation_id keeps naming its failure → task → fix chain (the id a prediction quotes
-- when it correlates explicitly); the prediction's own id is kept here.
ALTER TABLE agent_tasks ADD COLUMN prediction_id TEXT;
CREATE INDEX IF NOT EXISTS agent_tasks_prediction ON agent_tasks (prediction_id);
-- PullRequestReadied: when a draft fix pull request was marked ready (draft = false).
ALTER TABLE pull_requests ADD COLUMN readied_at TEXT;
-- AutoMergeEnabled / AutoMergeDisabled: whether the forge merges the pull request once its
-- checks pass (the later of the two facts, by event time, wins; a tie counts as disabled),
-- and when each was last recorded. NULL: auto-merge never enabled nor disabled.
ALTER TABLE pull_requests ADD COLUMN auto_merge BOOLEAN;
ALTER TABLE pull_requests ADD COLUMN auto_merge_enabled_at TEXT;
ALTER TABLE pull_requests ADD COLUMN auto_merge_disabled_at TEXT;

-- Rollbacks of merged fixes: the policy's RollbackDecided and the revert pull request
-- opened for it (RevertPullRequestOpened) or why it could not be made (RevertFailed).
-- Keyed by the decision's event id; the facts may be applied in any order (they can sit in
-- different partitions), so the columns only some of them fill are nullable.
CREATE TABLE IF NOT EXISTS rollbacks (
    id                      TEXT PRIMARY KEY,              -- the RollbackDecided event id
    rollback_request_id     TEXT,                          -- the RollbackRequested decided on
    tenant                  TEXT NOT NULL,
    repository              TEXT NOT NULL,
    task_id                 TEXT NOT NULL,                 -- the fix reverted (or kept)
    fix_pr_url              TEXT NOT NULL,                 -- the merged fix pull request
    base                    TEXT,
    revert_commit           TEXT,                          -- the fix's merge commit
    decision                TEXT,                          -- revert, no_revert
    reason_code             TEXT,
    reason                  TEXT,
    policy_version          TEXT,
    revert_branch           TEXT,
    auto_merge_paused_until TEXT,                          -- NULL: no pause
    revert_pr_url           TEXT,
    revert_pr_number        INTEGER,
    decided_at              TEXT,
    revert_opened_at        TEXT,
    updated_at              TEXT NOT NULL,
    revert_failure          TEXT,                          -- RevertFailed's reason
    revert_failed_at        TEXT
);
CREATE INDEX IF NOT EXISTS rollbacks_repository_decided ON rollbacks (repository, decided_at);
CREATE INDEX IF NOT EXISTS rollbacks_task ON rollbacks (task_id);
