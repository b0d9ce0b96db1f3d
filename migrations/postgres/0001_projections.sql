-- Sentinel projections (PostgreSQL). Every table is rebuilt from the fact log
-- `sentinel.events`; rows are keyed by fact ids so replays never double them.
-- Migrations are numbered and additive: never edit this file once released.

-- One row per failed CI run (CiRunFailed), classification filled by FailureClassified.
CREATE TABLE IF NOT EXISTS failures (
    id                        UUID PRIMARY KEY,           -- the CiRunFailed event id
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
    classification_confidence DOUBLE PRECISION,
    classification_method     TEXT,
    signature                 TEXT,
    tool                      TEXT,
    classified_at             TIMESTAMPTZ,
    occurred_at               TIMESTAMPTZ NOT NULL,
    recorded_at               TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_repository_occurred ON failures (repository, occurred_at);
CREATE INDEX IF NOT EXISTS failures_failure_type ON failures (failure_type);
CREATE INDEX IF NOT EXISTS failures_signature ON failures (signature);
CREATE INDEX IF NOT EXISTS failures_occurred_at ON failures (occurred_at);

-- Policy decisions: dispatch (DispatchDecided) and action (ActionDecided).
CREATE TABLE IF NOT EXISTS policy_decisions (
    id                UUID PRIMARY KEY,                   -- the decision's event id
    kind              TEXT NOT NULL CHECK (kind IN ('dispatch', 'action')),
    tenant            TEXT NOT NULL,
    repository        TEXT NOT NULL,
    failure_id        UUID,
    classification_id UUID,
    task_id           UUID,
    candidate_id      TEXT,
    decision          TEXT NOT NULL,
    reason_code       TEXT NOT NULL,
    reason            TEXT NOT NULL,
    policy_version    TEXT NOT NULL,
    failure_type      TEXT,
    confidence        DOUBLE PRECISION,
    correlation_id    UUID NOT NULL,
    decided_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS policy_decisions_repository_decided
    ON policy_decisions (repository, decided_at);
CREATE INDEX IF NOT EXISTS policy_decisions_decision ON policy_decisions (kind, decision);
CREATE INDEX IF NOT EXISTS policy_decisions_failure ON policy_decisions (failure_id);
CREATE INDEX IF NOT EXISTS policy_decisions_task ON policy_decisions (task_id);

-- Agents (AgentRegistered, AgentStatusChanged); health from their tasks' outcomes.
CREATE TABLE IF NOT EXISTS agents (
    id              UUID PRIMARY KEY,
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    status          TEXT NOT NULL,
    status_reason   TEXT,
    capabilities    JSONB NOT NULL DEFAULT '[]'::jsonb,
    max_concurrency BIGINT NOT NULL,
    health_score    DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_status ON agents (status);

-- Agent tasks (TaskQueued … TaskCompleted/Failed/Cancelled).
CREATE TABLE IF NOT EXISTS agent_tasks (
    id              UUID PRIMARY KEY,
    agent_id        UUID NOT NULL,
    task_type       TEXT NOT NULL,
    status          TEXT NOT NULL,
    priority        BIGINT NOT NULL,
    payload         JSONB NOT NULL,
    result          JSONB,
    error_message   TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    max_attempts    BIGINT NOT NULL,
    timeout_seconds BIGINT NOT NULL,
    tenant          TEXT NOT NULL,
    repository      TEXT NOT NULL,
    correlation_id  UUID NOT NULL,
    decision_id     UUID,
    failure_id      UUID,
    created_at      TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ,
    completed_at    TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_tasks_agent_status ON agent_tasks (agent_id, status);
CREATE INDEX IF NOT EXISTS agent_tasks_status ON agent_tasks (status);
CREATE INDEX IF NOT EXISTS agent_tasks_created_at ON agent_tasks (created_at);
CREATE INDEX IF NOT EXISTS agent_tasks_failure ON agent_tasks (failure_id);

-- One row per fix attempt (a `fix_failure` task): id = the task id.
CREATE TABLE IF NOT EXISTS failure_fixes (
    id                  UUID PRIMARY KEY,
    failure_id          UUID NOT NULL,
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
    files_changed       JSONB,
    confidence          DOUBLE PRECISION,
    diff                TEXT,
    validation          JSONB,
    fix_branch          TEXT,
    fix_commit          TEXT,
    pr_url              TEXT,
    pr_number           BIGINT,
    fix_success         BOOLEAN,
    time_to_pr_seconds  DOUBLE PRECISION,
    time_to_fix_seconds DOUBLE PRECISION,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
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
    task_id           UUID NOT NULL,
    repository        TEXT NOT NULL,
    forge             TEXT NOT NULL,
    number            BIGINT NOT NULL,
    branch            TEXT NOT NULL,
    base              TEXT NOT NULL,
    title             TEXT NOT NULL,
    draft             BOOLEAN NOT NULL,
    state             TEXT NOT NULL,
    checks_conclusion TEXT,
    decision_id       UUID,
    merged_by         TEXT,
    merge_commit      TEXT,
    closed_by         TEXT,
    opened_at         TIMESTAMPTZ NOT NULL,
    merged_at         TIMESTAMPTZ,
    closed_at         TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS pull_requests_repository_state ON pull_requests (repository, state);
CREATE INDEX IF NOT EXISTS pull_requests_task ON pull_requests (task_id);

-- Human reviews of fixes.
CREATE TABLE IF NOT EXISTS reviews (
    id           TEXT PRIMARY KEY,                        -- the review id of the facts
    task_id      UUID NOT NULL,
    decision_id  UUID,
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL,
    reviewer     TEXT,
    comment      TEXT,
    waited_hours DOUBLE PRECISION,
    requested_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    escalated_at TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_task ON reviews (task_id);
CREATE INDEX IF NOT EXISTS reviews_status ON reviews (status);

-- Input position of each projection, written in the same transaction as its rows.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection  TEXT NOT NULL,
    topic       TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    skipped     BIGINT NOT NULL DEFAULT 0,                -- records that could not be applied
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (projection, topic, "partition")
);
