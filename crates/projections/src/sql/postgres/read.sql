-- Read queries (PostgreSQL). Ids and JSON are returned as text so that one row decoder
-- serves both backends.

-- name: list_fixes
-- Newest first, keyset-paginated on (created_at, id); diff and validation are left out.
-- $1 repository, $2 status, $3 failure_type (each NULL for any), $4 cursor created_at,
-- $5 cursor id (both NULL for the first page), $6 limit, $7 created since, $8 created
-- before (each NULL for unbounded)
SELECT id::text AS id, failure_id::text AS failure_id, tenant, repository, branch, commit_sha,
       failure_type, signature, status, status_reason, strategy, candidate_id,
       files_changed::text AS files_changed, confidence, NULL::text AS diff,
       NULL::text AS validation, fix_branch, fix_commit, pr_url, pr_number, fix_success,
       time_to_pr_seconds, time_to_fix_seconds, created_at, updated_at
FROM failure_fixes
WHERE ($1::text IS NULL OR repository = $1)
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR failure_type = $3)
  AND ($4::text IS NULL OR (created_at, id) < ($4::timestamptz, $5::uuid))
  AND ($7::text IS NULL OR created_at >= $7::timestamptz)
  AND ($8::text IS NULL OR created_at < $8::timestamptz)
ORDER BY created_at DESC, id DESC
LIMIT $6

-- name: get_fix
-- $1 id
SELECT id::text AS id, failure_id::text AS failure_id, tenant, repository, branch, commit_sha,
       failure_type, signature, status, status_reason, strategy, candidate_id,
       files_changed::text AS files_changed, confidence, diff, validation::text AS validation,
       fix_branch, fix_commit, pr_url, pr_number, fix_success, time_to_pr_seconds,
       time_to_fix_seconds, created_at, updated_at
FROM failure_fixes
WHERE id = $1::uuid

-- name: list_agents
SELECT id::text AS id, name, version, status, status_reason,
       capabilities::text AS capabilities, max_concurrency, health_score, created_at,
       updated_at
FROM agents
ORDER BY name, id

-- name: get_agent
-- $1 id
SELECT id::text AS id, name, version, status, status_reason,
       capabilities::text AS capabilities, max_concurrency, health_score, created_at,
       updated_at
FROM agents
WHERE id = $1::uuid

-- name: get_task
-- $1 id
SELECT id::text AS id, agent_id::text AS agent_id, task_type, status, priority,
       payload::text AS payload, result::text AS result, error_message, attempts,
       max_attempts, timeout_seconds, tenant, repository,
       correlation_id::text AS correlation_id, decision_id::text AS decision_id,
       failure_id::text AS failure_id, created_at, started_at, completed_at, updated_at
FROM agent_tasks
WHERE id = $1::uuid

-- name: list_failures
-- Newest first, keyset-paginated on (occurred_at, id). $1 repository, $2 failure_type
-- (each NULL for any), $3 limit, $4 cursor occurred_at, $5 cursor id, $6 since, $7 before
SELECT id::text AS id, tenant, repository, branch, commit_sha, command, source, run_url,
       job_name, author, sentinel_authored, failure_type, classification_confidence,
       classification_method, signature, tool, classified_at, occurred_at, recorded_at
FROM failures
WHERE ($1::text IS NULL OR repository = $1)
  AND ($2::text IS NULL OR failure_type = $2)
  AND ($4::text IS NULL OR (occurred_at, id) < ($4::timestamptz, $5::uuid))
  AND ($6::text IS NULL OR occurred_at >= $6::timestamptz)
  AND ($7::text IS NULL OR occurred_at < $7::timestamptz)
ORDER BY occurred_at DESC, id DESC
LIMIT $3

-- name: list_decisions
-- Newest first, keyset-paginated on (decided_at, id). $1 repository, $2 kind, $3 decision,
-- $4 failure_type (each NULL for any), $5 cursor decided_at, $6 cursor id, $7 since,
-- $8 before, $9 limit
SELECT id::text AS id, kind, tenant, repository, failure_id::text AS failure_id,
       classification_id::text AS classification_id, task_id::text AS task_id, candidate_id,
       decision, reason_code, reason, policy_version, failure_type, confidence,
       correlation_id::text AS correlation_id, decided_at
FROM policy_decisions
WHERE ($1::text IS NULL OR repository = $1)
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL OR decision = $3)
  AND ($4::text IS NULL OR failure_type = $4)
  AND ($5::text IS NULL OR (decided_at, id) < ($5::timestamptz, $6::uuid))
  AND ($7::text IS NULL OR decided_at >= $7::timestamptz)
  AND ($8::text IS NULL OR decided_at < $8::timestamptz)
ORDER BY decided_at DESC, id DESC
LIMIT $9::bigint
