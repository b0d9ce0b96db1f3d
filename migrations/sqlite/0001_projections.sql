-- Sentinel projections (SQLite). Every table is rebuilt from the fact log
-- `sentinel.events`; rows are keyed by fact ids so replays never double them.
-- Migrations are numbered and additive: never edit this file once released.
-- Types: UUIDs are lowercase hyphenated TEXT, JSON is TEXT, times are TEXT in RFC 3339
-- UTC with microseconds (`2024-05-01T12:00:00.000000Z`, fixed width, so they sort).

-- One row per failed CI run (CiRunFailed), classification filled by FailureClassified.
CREATE TABLE IF NOT EXISTS failures (
    id                        TEXT PRIMARY KEY,           -- the CiRunFailed event id
    tenant                    TEXT NOT NULL,
    repository                TEXT NOT NULL,
    branch                    TEXT NOT NULL,
    commit_sha                TEXT NOT NULL,
    command                   TEXT,
    source                    TEXT NOT NULL,
    run_url                   TEXT,
    job_name                  TEXT,
    author                    TEXT,
    sentinel_authored         BOOLEAN NOT NULL DEFAULT FALSE,
    failure_type              TEXT,
    classification_confidence REAL,
    classification_method     TEXT,
    signature                 TEXT,
    tool                      TEXT,
    classified_at             TEXT,
    occurred_at               TEXT NOT NULL,
    recorded_at               TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_repository_occurred ON failures (repository, occurred_at);
CREATE INDEX IF NOT EXISTS failures_failure_type ON failures (failure_type);
CREATE INDEX IF NOT EXISTS failures_signature ON failures (signature);
CREATE INDEX IF NOT EXISTS failures_occurred_at ON failures (occurred_at);

-- Policy decisions: dispatch (DispatchDecided) and action (ActionDecided).
CREATE TABLE IF NOT EXISTS policy_decisions (
    id                TEXT PRIMARY KEY,                   -- the decision's event id
    kind              TEXT NOT NULL CHECK (kind IN ('dispatch', 'action')),
    tenant            TEXT NOT NULL,
    repository        TEXT NOT NULL,
    failure_id        TEXT,
    classification_id TEXT,
    task_id           TEXT,
    candidate_id      TEXT,
    decision          TEXT NOT NULL,
    reason_code       TEXT NOT NULL,
    reason            TEXT NOT NULL,
    policy_version    TEXT NOT NULL,
    failure_type      TEXT,
    confidence        REAL,
    correlation_id    TEXT NOT NULL,
    decided_at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS policy_decisions_repository_decided
    ON policy_decisions (repository, decided_at);
CREATE INDEX IF NOT EXISTS policy_decisions_decision ON policy_decisions (kind, decision);
CREATE INDEX IF NOT EXISTS policy_decisions_failure ON policy_decisions (failure_id);
CREATE INDEX IF NOT EXISTS policy_decisions_task ON policy_decisions (task_id);

-- Agents (AgentRegistered, AgentStatusChanged); health from their tasks' outcomes.
CREATE TABLE IF NOT EXISTS agents (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    status          TEXT NOT NULL,
    status_reason   TEXT,
    capabilities    TEXT NOT NULL DEFAULT '[]',
    max_concurrency INTEGER NOT NULL,
    health_score    REAL NOT NULL DEFAULT 1.0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_status ON agents (status);

-- Agent tasks (TaskQueued … TaskCompleted/Failed/Cancelled).
CREATE TABLE IF NOT EXISTS agent_tasks (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT NOT NULL,
    task_type       TEXT NOT NULL,
    status          TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    payload         TEXT NOT NULL,
    result          TEXT,
    error_message   TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    timeout_seconds INTEGER NOT NULL,
    tenant          TEXT NOT NULL,
    repository      TEXT NOT NULL,
    correlation_id  TEXT NOT NULL,
    decision_id     TEXT,
    failure_id      TEXT,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    completed_at    TEXT,
    updated_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_tasks_agent_status ON agent_tasks (agent_id, status);
CREATE INDEX IF NOT EXISTS agent_tasks_status ON agent_tasks (status);
CREATE INDEX IF NOT EXISTS agent_tasks_created_at ON agent_tasks (created_at);
CREATE INDEX IF NOT EXISTS agent_tasks_failure ON agent_tasks (failure_id);

-- One row per fix attempt (a `fix_failure` task): id = the task id.
CREATE TABLE IF NOT EXISTS failure_fixes (
    id                  TEXT PRIMARY KEY,
    failure_id          TEXT NOT NULL,
    tenant              TEXT NOT NULL,
    repository          TEXT NOT NULL,
    branch              TEXT,                             -- the failing branch
    commit_sha          TEXT,                             -- the failing commit
    failure_type        TEXT,
    signature           TEXT,
    status              TEXT NOT NULL,
    status_reason       TEXT,                             -- why: no fix found, cancelled
    strategy            TEXT,
    candidate_id        TEXT,
    files_changed       TEXT,
    confidence          REAL,
    diff                TEXT,
    validation          TEXT,
    fix_branch          TEXT,
    fix_commit          TEXT,
    pr_url              TEXT,
    pr_number           INTEGER,
    fix_success         BOOLEAN,
    time_to_pr_seconds  REAL,
    time_to_fix_seconds REAL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failure_fixes_repository_created
    ON failure_fixes (repository, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS failure_fixes_status ON failure_fixes (status);
CREATE INDEX IF NOT EXISTS failure_fixes_failure_type ON failure_fixes (failure_type);
CREATE INDEX IF NOT EXISTS failure_fixes_created_at ON failure_fixes (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS failure_fixes_failure ON failure_fixes (failure_id);
CREATE INDEX IF NOT EXISTS failure_fixes_pr_url ON failure_fixes (pr_url);

-- Pull requests opened for fixes, followed to merge or close.
CREATE TABLE IF NOT EXISTS pull_requests (
    url               TEXT PRIMARY KEY,
    task_id           TEXT NOT NULL,
    repository        TEXT NOT NULL,
    forge             TEXT NOT NULL,
    number            INTEGER NOT NULL,
    branch            TEXT NOT NULL,
    base              TEXT NOT NULL,
    title             TEXT NOT NULL,
    draft             BOOLEAN NOT NULL,
    state             TEXT NOT NULL,
    checks_conclusion TEXT,
    decision_id       TEXT,
    merged_by         TEXT,
    merge_commit      TEXT,
    closed_by         TEXT,
    opened_at         TEXT NOT NULL,
    merged_at         TEXT,
    closed_at         TEXT,
    updated_at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pull_requests_repository_state ON pull_requests (repository, state);
CREATE INDEX IF NOT EXISTS pull_requests_task ON pull_requests (task_id);

-- Human reviews of fixes.
CREATE TABLE IF NOT EXISTS reviews (
    id           TEXT PRIMARY KEY,                        -- the review id of the facts
    task_id      TEXT NOT NULL,
    decision_id  TEXT,
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL,
    reviewer     TEXT,
    comment      TEXT,
    waited_hours REAL,
    requested_at TEXT NOT NULL,
    completed_at TEXT,
    escalated_at TEXT,
    updated_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_task ON reviews (task_id);
CREATE INDEX IF NOT EXISTS reviews_status ON reviews (status);

-- Input position of each projection, written in the same transaction as its rows.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection  TEXT NOT NULL,
    topic       TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    skipped     INTEGER NOT NULL DEFAULT 0,                -- records that could not be applied
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (projection, topic, "partition")
);
