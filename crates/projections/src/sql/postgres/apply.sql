-- Projection writes (PostgreSQL). Parameters arrive as text, bigint, double or boolean;
-- ids, times and JSON are cast here. Every write is idempotent: inserts ignore rows that
-- exist, updates are guarded transitions, so a replayed fact changes nothing.

-- name: insert_failure
-- CiRunFailed. $1 id, $2 tenant, $3 repository, $4 branch, $5 commit, $6 command,
-- $7 source, $8 run_url, $9 job_name, $10 author, $11 sentinel_authored,
-- $12 occurred_at, $13 recorded_at
INSERT INTO failures (id, tenant, repository, branch, commit_sha, command, source, run_url,
                      job_name, author, sentinel_authored, occurred_at, recorded_at)
VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::timestamptz, $13::timestamptz)
ON CONFLICT (id) DO NOTHING

-- name: insert_failure_batch
-- insert_failure for many rows: one array per parameter.
INSERT INTO failures (id, tenant, repository, branch, commit_sha, command, source, run_url,
                      job_name, author, sentinel_authored, occurred_at, recorded_at)
SELECT u.id::uuid, u.tenant, u.repository, u.branch, u.commit_sha, u.command, u.source,
       u.run_url, u.job_name, u.author, u.sentinel_authored, u.occurred_at::timestamptz,
       u.recorded_at::timestamptz
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::boolean[], $12::text[],
            $13::text[])
     AS u(id, tenant, repository, branch, commit_sha, command, source, run_url, job_name,
          author, sentinel_authored, occurred_at, recorded_at)
ON CONFLICT (id) DO NOTHING

-- name: classify_failure
-- FailureClassified: the latest classification wins (corrections are new facts).
-- $1 failure id, $2 failure_type, $3 confidence, $4 method, $5 signature, $6 tool, $7 at
UPDATE failures
SET failure_type = $2, classification_confidence = $3, classification_method = $4,
    signature = $5, tool = $6, classified_at = $7::timestamptz
WHERE id = $1::uuid

-- name: classify_fixes
-- FailureClassified: fixes copy their failure's classification.
-- $1 failure id, $2 failure_type, $3 signature, $4 at
UPDATE failure_fixes
SET failure_type = $2, signature = $3, updated_at = GREATEST(updated_at, $4::timestamptz)
WHERE failure_id = $1::uuid

-- name: insert_decision
-- DispatchDecided / ActionDecided. $1 id, $2 kind, $3 tenant, $4 repository,
-- $5 failure_id, $6 classification_id, $7 task_id, $8 candidate_id, $9 decision,
-- $10 reason_code, $11 reason, $12 policy_version, $13 failure_type, $14 confidence,
-- $15 correlation_id, $16 decided_at
INSERT INTO policy_decisions (id, kind, tenant, repository, failure_id, classification_id,
                              task_id, candidate_id, decision, reason_code, reason,
                              policy_version, failure_type, confidence, correlation_id,
                              decided_at)
VALUES ($1::uuid, $2, $3, $4, $5::uuid, $6::uuid, $7::uuid, $8, $9, $10, $11, $12, $13, $14,
        $15::uuid, $16::timestamptz)
ON CONFLICT (id) DO NOTHING

-- name: insert_decision_batch
-- insert_decision for many rows: one array per parameter.
INSERT INTO policy_decisions (id, kind, tenant, repository, failure_id, classification_id,
                              task_id, candidate_id, decision, reason_code, reason,
                              policy_version, failure_type, confidence, correlation_id,
                              decided_at)
SELECT u.id::uuid, u.kind, u.tenant, u.repository, u.failure_id::uuid,
       u.classification_id::uuid, u.task_id::uuid, u.candidate_id, u.decision,
       u.reason_code, u.reason, u.policy_version, u.failure_type, u.confidence,
       u.correlation_id::uuid, u.decided_at::timestamptz
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
            $13::text[], $14::float8[], $15::text[], $16::text[])
     AS u(id, kind, tenant, repository, failure_id, classification_id, task_id,
          candidate_id, decision, reason_code, reason, policy_version, failure_type,
          confidence, correlation_id, decided_at)
ON CONFLICT (id) DO NOTHING

-- name: upsert_agent
-- AgentRegistered (also a re-registration with a new version). A new agent is active.
-- $1 id, $2 name, $3 version, $4 capabilities, $5 max_concurrency, $6 at
-- Its tasks' outcomes may have been applied first (on Kafka they can sit in other
-- partitions): a new row starts from them, so the result does not depend on that order.
INSERT INTO agents (id, name, version, status, capabilities, max_concurrency, health_score,
                    created_at, updated_at)
SELECT $1::uuid, $2, $3, 'active', $4::jsonb, $5,
       COALESCE((
           SELECT AVG(CASE t.status WHEN 'completed' THEN 1.0 WHEN 'partial' THEN 0.5 ELSE 0.0 END)
           FROM (SELECT status FROM agent_tasks
                 WHERE agent_id = $1::uuid AND status IN ('completed', 'partial', 'failed')
                 ORDER BY completed_at DESC, id DESC
                 LIMIT 50) AS t), 1.0),
       $6::timestamptz,
       GREATEST($6::timestamptz, (
           SELECT max(completed_at) FROM agent_tasks
           WHERE agent_id = $1::uuid AND status IN ('completed', 'partial', 'failed')))
ON CONFLICT (id) DO UPDATE
SET name = excluded.name, version = excluded.version, capabilities = excluded.capabilities,
    max_concurrency = excluded.max_concurrency,
    -- The earliest registration, whatever order partitions are applied in.
    created_at = LEAST(agents.created_at, excluded.created_at),
    updated_at = GREATEST(agents.updated_at, excluded.updated_at)

-- name: agent_status
-- AgentStatusChanged. $1 id, $2 status, $3 reason, $4 at
UPDATE agents
SET status = $2, status_reason = $3, updated_at = GREATEST(updated_at, $4::timestamptz)
WHERE id = $1::uuid

-- name: agent_health
-- After a task outcome: the share of the agent's last 50 finished tasks that succeeded
-- (partial counts half); 1.0 before any. Recomputed from rows, so replays agree.
-- $1 agent id, $2 at
UPDATE agents
SET health_score = COALESCE((
        SELECT AVG(CASE t.status WHEN 'completed' THEN 1.0 WHEN 'partial' THEN 0.5 ELSE 0.0 END)
        FROM (SELECT status FROM agent_tasks
              WHERE agent_id = $1::uuid AND status IN ('completed', 'partial', 'failed')
              ORDER BY completed_at DESC, id DESC
              LIMIT 50) AS t), 1.0),
    updated_at = GREATEST(updated_at, $2::timestamptz)
WHERE id = $1::uuid

-- name: insert_task
-- TaskQueued. $1 id, $2 agent_id, $3 task_type, $4 priority, $5 payload, $6 max_attempts,
-- $7 timeout_seconds, $8 tenant, $9 repository, $10 correlation_id, $11 decision_id,
-- $12 failure_id, $13 created_at
INSERT INTO agent_tasks (id, agent_id, task_type, status, priority, payload, attempts,
                         max_attempts, timeout_seconds, tenant, repository, correlation_id,
                         decision_id, failure_id, created_at, updated_at)
VALUES ($1::uuid, $2::uuid, $3, 'queued', $4, $5::jsonb, 0, $6, $7, $8, $9, $10::uuid,
        $11::uuid, $12::uuid, $13::timestamptz, $13::timestamptz)
ON CONFLICT (id) DO NOTHING

-- name: insert_task_batch
-- insert_task for many rows: one array per parameter.
INSERT INTO agent_tasks (id, agent_id, task_type, status, priority, payload, attempts,
                         max_attempts, timeout_seconds, tenant, repository, correlation_id,
                         decision_id, failure_id, created_at, updated_at)
SELECT u.id::uuid, u.agent_id::uuid, u.task_type, 'queued', u.priority, u.payload::jsonb, 0,
       u.max_attempts, u.timeout_seconds, u.tenant, u.repository, u.correlation_id::uuid,
       u.decision_id::uuid, u.failure_id::uuid, u.created_at::timestamptz,
       u.created_at::timestamptz
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::int8[],
            $7::int8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
            $13::text[])
     AS u(id, agent_id, task_type, priority, payload, max_attempts, timeout_seconds, tenant,
          repository, correlation_id, decision_id, failure_id, created_at)
ON CONFLICT (id) DO NOTHING

-- name: insert_fix
-- TaskQueued of a fix_failure task: the fix copies the failure's branch, commit and
-- classification. $1 task id, $2 failure id, $3 tenant, $4 repository (when the failure is
-- unknown), $5 created_at
INSERT INTO failure_fixes (id, failure_id, tenant, repository, branch, commit_sha,
                           failure_type, signature, status, created_at, updated_at)
SELECT $1::uuid, $2::uuid, $3, COALESCE(f.repository, $4), f.branch, f.commit_sha,
       f.failure_type, f.signature, 'queued', $5::timestamptz, $5::timestamptz
FROM (SELECT 1) AS one
LEFT JOIN failures AS f ON f.id = $2::uuid
ON CONFLICT (id) DO NOTHING

-- name: task_started
-- TaskStarted: a newer attempt, or the first start of a queued task.
-- $1 id, $2 attempt, $3 at
UPDATE agent_tasks
SET status = 'running', attempts = $2, started_at = COALESCE(started_at, $3::timestamptz),
    completed_at = NULL, updated_at = GREATEST(updated_at, $3::timestamptz)
WHERE id = $1::uuid
  AND status NOT IN ('completed', 'partial', 'cancelled')
  AND (attempts < $2 OR (attempts = $2 AND status = 'queued'))

-- name: fix_in_progress
-- TaskStarted of a fix task (also a retry after a failed attempt), if it moved the task.
-- $1 id, $2 at
UPDATE failure_fixes
SET status = 'in_progress', updated_at = GREATEST(updated_at, $2::timestamptz)
WHERE id = $1::uuid AND status IN ('queued', 'failed')
  AND EXISTS (SELECT 1 FROM agent_tasks AS t WHERE t.id = $1::uuid AND t.status = 'running')

-- name: task_completed
-- TaskCompleted. $1 id, $2 status (the outcome), $3 result, $4 at
UPDATE agent_tasks
SET status = $2, result = $3::jsonb, completed_at = $4::timestamptz,
    updated_at = GREATEST(updated_at, $4::timestamptz)
WHERE id = $1::uuid

-- name: task_failed
-- TaskFailed of the current (or a newer) attempt.
-- $1 id, $2 attempt, $3 error, $4 result, $5 at
UPDATE agent_tasks
SET status = 'failed', error_message = $3, attempts = GREATEST(attempts, $2),
    result = $4::jsonb, completed_at = $5::timestamptz,
    updated_at = GREATEST(updated_at, $5::timestamptz)
WHERE id = $1::uuid
  AND attempts <= $2
  AND status NOT IN ('completed', 'partial', 'cancelled')

-- name: fix_task_failed
-- TaskFailed of a fix task still in flight, if it failed the task (a late copy of an
-- earlier attempt's failure does not). $1 id, $2 attempt, $3 at
UPDATE failure_fixes
SET status = 'failed', updated_at = GREATEST(updated_at, $3::timestamptz)
WHERE id = $1::uuid AND status IN ('queued', 'in_progress')
  AND EXISTS (SELECT 1 FROM agent_tasks AS t
              WHERE t.id = $1::uuid AND t.status = 'failed' AND t.attempts = $2)

-- name: task_cancelled
-- TaskCancelled of a task not finished. $1 id, $2 reason, $3 at
UPDATE agent_tasks
SET status = 'cancelled', error_message = $2, completed_at = $3::timestamptz,
    updated_at = GREATEST(updated_at, $3::timestamptz)
WHERE id = $1::uuid AND status IN ('queued', 'running', 'failed')

-- name: fix_task_cancelled
-- TaskCancelled of a fix task not past validation, if it cancelled the task.
-- $1 id, $2 reason, $3 at
UPDATE failure_fixes
SET status = 'cancelled', status_reason = $2, updated_at = GREATEST(updated_at, $3::timestamptz)
WHERE id = $1::uuid AND status IN ('queued', 'in_progress', 'failed')
  AND EXISTS (SELECT 1 FROM agent_tasks AS t WHERE t.id = $1::uuid AND t.status = 'cancelled')

-- name: fix_candidate
-- FixCandidateProposed (a later candidate replaces one that failed validation).
-- $1 id, $2 candidate_id, $3 strategy, $4 diff, $5 files_changed, $6 at
UPDATE failure_fixes
SET candidate_id = $2, strategy = $3, diff = $4, files_changed = $5::jsonb,
    updated_at = GREATEST(updated_at, $6::timestamptz)
WHERE id = $1::uuid
  AND status NOT IN ('validated', 'pr_opened', 'merged', 'closed', 'no_fix', 'not_fixable')

-- name: fix_validated
-- FixValidated. $1 id, $2 candidate_id, $3 confidence, $4 validation, $5 status, $6 at
UPDATE failure_fixes
SET confidence = $3, validation = $4::jsonb, status = $5,
    updated_at = GREATEST(updated_at, $6::timestamptz)
WHERE id = $1::uuid
  AND status NOT IN ('pr_opened', 'merged', 'closed', 'no_fix', 'not_fixable')
  AND NOT (status = 'validated' AND $5 = 'validation_failed')

-- name: fix_not_found
-- FixNotFound. $1 id, $2 status (no_fix, not_fixable), $3 reason, $4 at
UPDATE failure_fixes
SET status = $2, status_reason = $3, updated_at = GREATEST(updated_at, $4::timestamptz)
WHERE id = $1::uuid AND status IN ('queued', 'in_progress', 'validation_failed', 'failed')

-- name: fix_branch
-- BranchPushed. $1 id, $2 branch, $3 commit, $4 at
UPDATE failure_fixes
SET fix_branch = $2, fix_commit = $3, updated_at = GREATEST(updated_at, $4::timestamptz)
WHERE id = $1::uuid

-- name: insert_pull_request
-- PullRequestOpened. $1 url, $2 task_id, $3 repository, $4 forge, $5 number, $6 branch,
-- $7 base, $8 title, $9 draft, $10 decision_id, $11 opened_at
INSERT INTO pull_requests (url, task_id, repository, forge, number, branch, base, title,
                           draft, state, decision_id, opened_at, updated_at)
VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9, 'open', $10::uuid, $11::timestamptz,
        $11::timestamptz)
ON CONFLICT (url) DO NOTHING

-- name: fix_pr_opened
-- PullRequestOpened. $1 id, $2 url, $3 number, $4 head branch, $5 at
UPDATE failure_fixes
SET pr_url = $2, pr_number = $3, fix_branch = COALESCE(fix_branch, $4),
    status = CASE WHEN status IN ('merged', 'closed') THEN status ELSE 'pr_opened' END,
    updated_at = GREATEST(updated_at, $5::timestamptz)
WHERE id = $1::uuid

-- name: pr_checks
-- PullRequestChecksCompleted. $1 url, $2 conclusion, $3 at
UPDATE pull_requests
SET checks_conclusion = $2, updated_at = GREATEST(updated_at, $3::timestamptz)
WHERE url = $1

-- name: pr_merged
-- PullRequestMerged. $1 url, $2 merged_by, $3 merge_commit, $4 at
UPDATE pull_requests
SET state = 'merged', merged_by = $2, merge_commit = $3,
    merged_at = COALESCE(merged_at, $4::timestamptz),
    updated_at = GREATEST(updated_at, $4::timestamptz)
WHERE url = $1

-- name: fix_merged
-- PullRequestMerged. $1 url, $2 at
UPDATE failure_fixes
SET status = 'merged', updated_at = GREATEST(updated_at, $2::timestamptz)
WHERE pr_url = $1

-- name: pr_closed
-- PullRequestClosed (a merged PR stays merged). $1 url, $2 closed_by, $3 at
UPDATE pull_requests
SET state = 'closed', closed_by = $2, closed_at = COALESCE(closed_at, $3::timestamptz),
    updated_at = GREATEST(updated_at, $3::timestamptz)
WHERE url = $1 AND state = 'open'

-- name: fix_closed
-- PullRequestClosed. $1 url, $2 at
UPDATE failure_fixes
SET status = 'closed', updated_at = GREATEST(updated_at, $2::timestamptz)
WHERE pr_url = $1 AND status <> 'merged'

-- name: fix_outcome
-- FixOutcomeRecorded. $1 id, $2 success, $3 time_to_pr_seconds, $4 time_to_merge_seconds,
-- $5 at
UPDATE failure_fixes
SET fix_success = $2, time_to_pr_seconds = COALESCE($3, time_to_pr_seconds),
    time_to_fix_seconds = $4, updated_at = GREATEST(updated_at, $5::timestamptz)
WHERE id = $1::uuid

-- name: insert_review
-- ReviewRequested. $1 review id, $2 task_id, $3 decision_id, $4 reason, $5 requested_at
INSERT INTO reviews (id, task_id, decision_id, reason, status, requested_at, updated_at)
VALUES ($1, $2::uuid, $3::uuid, $4, 'pending', $5::timestamptz, $5::timestamptz)
ON CONFLICT (id) DO NOTHING

-- name: review_completed
-- ReviewCompleted. $1 review id, $2 status (approved, rejected), $3 reviewer, $4 comment,
-- $5 at
UPDATE reviews
SET status = $2, reviewer = $3, comment = $4, completed_at = $5::timestamptz,
    updated_at = GREATEST(updated_at, $5::timestamptz)
WHERE id = $1

-- name: review_escalated
-- ReviewEscalated of a review still pending. $1 review id, $2 waited_hours, $3 at
UPDATE reviews
SET status = 'escalated', waited_hours = $2, escalated_at = $3::timestamptz,
    updated_at = GREATEST(updated_at, $3::timestamptz)
WHERE id = $1 AND status = 'pending'

-- name: task_assigned
-- TaskAssigned: the agent running the task's latest attempt. $1 id, $2 agent id, $3 at
UPDATE agent_tasks
SET assigned_agent_id = $2::uuid, assigned_at = $3::timestamptz,
    updated_at = GREATEST(updated_at, $3::timestamptz)
WHERE id = $1::uuid

-- name: task_prediction
-- PredictionCorrelated: the InfraMind prediction linked to the task.
-- $1 task id, $2 prediction id, $3 at
UPDATE agent_tasks
SET prediction_id = $2, updated_at = GREATEST(updated_at, $3::timestamptz)
WHERE id = $1::uuid

-- name: pr_readied
-- PullRequestReadied: a draft marked ready for review. $1 url, $2 at
UPDATE pull_requests
SET draft = FALSE, readied_at = COALESCE(readied_at, $2::timestamptz),
    updated_at = GREATEST(updated_at, $2::timestamptz)
WHERE url = $1

-- name: rollback_decided
-- RollbackDecided (the revert pull request may have been recorded first).
-- $1 id (the decision's event id), $2 rollback_request_id, $3 tenant, $4 repository,
-- $5 task_id, $6 fix_pr_url, $7 base, $8 revert_commit, $9 decision, $10 reason_code,
-- $11 reason, $12 policy_version, $13 revert_branch, $14 auto_merge_paused_until,
-- $15 decided_at
INSERT INTO rollbacks AS r (id, rollback_request_id, tenant, repository, task_id, fix_pr_url,
                            base, revert_commit, decision, reason_code, reason,
                            policy_version, revert_branch, auto_merge_paused_until,
                            decided_at, updated_at)
VALUES ($1::uuid, $2::uuid, $3, $4, $5::uuid, $6, $7, $8, $9, $10, $11, $12, $13,
        $14::timestamptz, $15::timestamptz, $15::timestamptz)
ON CONFLICT (id) DO UPDATE
SET rollback_request_id = excluded.rollback_request_id, tenant = excluded.tenant,
    repository = excluded.repository, task_id = excluded.task_id,
    fix_pr_url = excluded.fix_pr_url, base = excluded.base,
    revert_commit = COALESCE(excluded.revert_commit, r.revert_commit),
    decision = excluded.decision, reason_code = excluded.reason_code,
    reason = excluded.reason, policy_version = excluded.policy_version,
    revert_branch = COALESCE(excluded.revert_branch, r.revert_branch),
    auto_merge_paused_until = excluded.auto_merge_paused_until,
    decided_at = excluded.decided_at, updated_at = GREATEST(r.updated_at, excluded.updated_at)

-- name: revert_opened
-- RevertPullRequestOpened (possibly before its RollbackDecided is applied).
-- $1 id (the allowing RollbackDecided's event id), $2 tenant, $3 repository, $4 task_id,
-- $5 fix_pr_url, $6 base, $7 revert_commit, $8 revert_pr_url, $9 revert_pr_number,
-- $10 revert_branch, $11 at
INSERT INTO rollbacks AS r (id, tenant, repository, task_id, fix_pr_url, base, revert_commit,
                            revert_pr_url, revert_pr_number, revert_branch, revert_opened_at,
                            updated_at)
VALUES ($1::uuid, $2, $3, $4::uuid, $5, $6, $7, $8, $9, $10, $11::timestamptz,
        $11::timestamptz)
ON CONFLICT (id) DO UPDATE
SET base = COALESCE(r.base, excluded.base),
    revert_commit = COALESCE(r.revert_commit, excluded.revert_commit),
    revert_pr_url = excluded.revert_pr_url, revert_pr_number = excluded.revert_pr_number,
    revert_branch = COALESCE(r.revert_branch, excluded.revert_branch),
    revert_opened_at = COALESCE(r.revert_opened_at, excluded.revert_opened_at),
    updated_at = GREATEST(r.updated_at, excluded.updated_at)

-- name: revert_failed
-- RevertFailed (possibly before its RollbackDecided is applied): the revert a decision
-- asked for could not be made. $1 id (the RollbackDecided's event id), $2 tenant,
-- $3 repository, $4 task_id, $5 fix_pr_url, $6 base, $7 revert_commit, $8 reason, $9 at
INSERT INTO rollbacks AS r (id, tenant, repository, task_id, fix_pr_url, base, revert_commit,
                            revert_failure, revert_failed_at, updated_at)
VALUES ($1::uuid, $2, $3, $4::uuid, $5, $6, $7, $8, $9::timestamptz, $9::timestamptz)
ON CONFLICT (id) DO UPDATE
SET base = COALESCE(r.base, excluded.base),
    revert_commit = COALESCE(r.revert_commit, excluded.revert_commit),
    revert_failure = excluded.revert_failure, revert_failed_at = excluded.revert_failed_at,
    updated_at = GREATEST(r.updated_at, excluded.updated_at)

-- name: auto_merge_enabled
-- AutoMergeEnabled: the later of enable and disable (event time) wins, a tie disables.
-- $1 url, $2 at
UPDATE pull_requests
SET auto_merge_enabled_at = GREATEST(auto_merge_enabled_at, $2::timestamptz),
    auto_merge = (auto_merge_disabled_at IS NULL
                  OR auto_merge_disabled_at < GREATEST(auto_merge_enabled_at, $2::timestamptz)),
    updated_at = GREATEST(updated_at, $2::timestamptz)
WHERE url = $1

-- name: auto_merge_disabled
-- AutoMergeDisabled (a rollback decision paused auto-merge for the repository).
-- $1 url, $2 at
UPDATE pull_requests
SET auto_merge_disabled_at = GREATEST(auto_merge_disabled_at, $2::timestamptz),
    auto_merge = (auto_merge_enabled_at IS NOT NULL
                  AND auto_merge_enabled_at > GREATEST(auto_merge_disabled_at, $2::timestamptz)),
    updated_at = GREATEST(updated_at, $2::timestamptz)
WHERE url = $1

-- name: advance_checkpoint
-- Moves a partition's checkpoint from $4 to $5 — only if it still is at $4, so of two
-- projectors racing on one partition exactly one applies the batch. The row lock taken here
-- serialises them. $1 projection, $2 topic, $3 partition, $4 expected next_offset,
-- $5 new next_offset, $6 records skipped in the batch, $7 now
INSERT INTO projection_checkpoints AS c (projection, topic, "partition", next_offset, skipped,
                                         updated_at)
SELECT $1, $2, $3, $5, $6, $7::timestamptz
WHERE $4 = 0 OR EXISTS (SELECT 1 FROM projection_checkpoints
                        WHERE projection = $1 AND topic = $2 AND "partition" = $3)
ON CONFLICT (projection, topic, "partition") DO UPDATE
SET next_offset = excluded.next_offset, skipped = c.skipped + excluded.skipped,
    updated_at = excluded.updated_at
WHERE c.next_offset = $4

-- name: load_checkpoints
-- $1 projection, $2 topic
SELECT projection, topic, "partition"::bigint AS "partition", next_offset, skipped, updated_at
FROM projection_checkpoints
WHERE projection = $1 AND topic = $2
ORDER BY "partition"

-- name: lock_checkpoints
-- The first statement of a reset, an in-place rebuild and a one-projection swap: the
-- checkpoint table is the lock every writer of the projections takes first (the projector
-- its checkpoint row, a full swap the table), so they queue behind each other instead of
-- each holding a lock another needs (a deadlock PostgreSQL would break by failing one).
-- Readers are not blocked by it.
LOCK TABLE projection_checkpoints IN SHARE ROW EXCLUSIVE MODE

-- name: reset_checkpoints
-- Forgets a projection's position. $1 projection
DELETE FROM projection_checkpoints WHERE projection = $1

-- name: reset_rows
-- Empties every projection table (before a replay from offset 0).
TRUNCATE failures, policy_decisions, agents, agent_tasks, failure_fixes, pull_requests,
         reviews, rollbacks
