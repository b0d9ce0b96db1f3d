#!/usr/bin/env python3
"""Writes src/sql/<backend>/fold.sql: the per-table load and upsert statements of the
batched write path, generated from the column lists below (which must match the row
structs in src/rows.rs and the migrations). Run from crates/projections:
    python3 sql-gen/gen.py
"""

TABLES = [
    ("failures", "id", [
        ("id", "uuid"), ("tenant", "text"), ("repository", "text"), ("branch", "text"),
        ("commit_sha", "text"), ("command", "text"), ("source", "text"), ("run_url", "text"),
        ("job_name", "text"), ("author", "text"), ("sentinel_authored", "bool"),
        ("failure_type", "text"), ("classification_confidence", "float"),
        ("classification_method", "text"), ("signature", "text"), ("tool", "text"),
        ("classified_at", "time"), ("occurred_at", "time"), ("recorded_at", "time"),
    ]),
    ("agents", "id", [
        ("id", "uuid"), ("name", "text"), ("version", "text"), ("status", "text"),
        ("status_reason", "text"), ("capabilities", "json"), ("max_concurrency", "int"),
        ("health_score", "float"), ("created_at", "time"), ("updated_at", "time"),
    ]),
    ("agent_tasks", "id", [
        ("id", "uuid"), ("agent_id", "uuid"), ("task_type", "text"), ("status", "text"),
        ("priority", "int"), ("payload", "json"), ("result", "json"),
        ("error_message", "text"), ("attempts", "int"), ("max_attempts", "int"),
        ("timeout_seconds", "int"), ("tenant", "text"), ("repository", "text"),
        ("correlation_id", "uuid"), ("decision_id", "uuid"), ("failure_id", "uuid"),
        ("created_at", "time"), ("started_at", "time"), ("completed_at", "time"),
        ("updated_at", "time"), ("assigned_agent_id", "uuid"), ("assigned_at", "time"),
        ("prediction_id", "text"),
    ]),
    ("failure_fixes", "id", [
        ("id", "uuid"), ("failure_id", "uuid"), ("tenant", "text"), ("repository", "text"),
        ("branch", "text"), ("commit_sha", "text"), ("failure_type", "text"),
        ("signature", "text"), ("status", "text"), ("status_reason", "text"),
        ("strategy", "text"), ("candidate_id", "text"), ("files_changed", "json"),
        ("confidence", "float"), ("diff", "text"), ("validation", "json"),
        ("fix_branch", "text"), ("fix_commit", "text"), ("pr_url", "text"),
        ("pr_number", "int"), ("fix_success", "bool"), ("time_to_pr_seconds", "float"),
        ("time_to_fix_seconds", "float"), ("created_at", "time"), ("updated_at", "time"),
    ]),
    ("pull_requests", "url", [
        ("url", "text"), ("task_id", "uuid"), ("repository", "text"), ("forge", "text"),
        ("number", "int"), ("branch", "text"), ("base", "text"), ("title", "text"),
        ("draft", "bool"), ("state", "text"), ("checks_conclusion", "text"),
        ("decision_id", "uuid"), ("merged_by", "text"), ("merge_commit", "text"),
        ("closed_by", "text"), ("opened_at", "time"), ("merged_at", "time"),
        ("closed_at", "time"), ("updated_at", "time"), ("readied_at", "time"),
        ("auto_merge", "bool"), ("auto_merge_enabled_at", "time"),
        ("auto_merge_disabled_at", "time"),
    ]),
    ("reviews", "id", [
        ("id", "text"), ("task_id", "uuid"), ("decision_id", "uuid"), ("reason", "text"),
        ("status", "text"), ("reviewer", "text"), ("comment", "text"),
        ("waited_hours", "float"), ("requested_at", "time"), ("completed_at", "time"),
        ("escalated_at", "time"), ("updated_at", "time"),
    ]),
    ("rollbacks", "id", [
        ("id", "uuid"), ("rollback_request_id", "uuid"), ("tenant", "text"),
        ("repository", "text"), ("task_id", "uuid"), ("fix_pr_url", "text"), ("base", "text"),
        ("revert_commit", "text"), ("decision", "text"), ("reason_code", "text"),
        ("reason", "text"), ("policy_version", "text"), ("revert_branch", "text"),
        ("auto_merge_paused_until", "time"), ("revert_pr_url", "text"),
        ("revert_pr_number", "int"), ("decided_at", "time"), ("revert_opened_at", "time"),
        ("updated_at", "time"), ("revert_failure", "text"), ("revert_failed_at", "time"),
    ]),
]

# Statement names: load_<x>, upsert_<x>.
STMT = {"failures": "failures", "agents": "agents", "agent_tasks": "tasks",
        "failure_fixes": "fixes", "pull_requests": "pull_requests", "reviews": "reviews",
        "rollbacks": "rollbacks"}

PG_ARRAY = {"uuid": "text", "text": "text", "time": "text", "json": "text",
            "int": "int8", "float": "float8", "bool": "boolean"}
PG_CAST = {"uuid": "::uuid", "time": "::timestamptz", "json": "::jsonb"}


def wrap(items, indent, width=92):
    lines, cur = [], ""
    for i, it in enumerate(items):
        piece = it + ("," if i < len(items) - 1 else "")
        if cur and len(indent) + len(cur) + 1 + len(piece) > width:
            lines.append(cur)
            cur = piece
        else:
            cur = f"{cur} {piece}" if cur else piece
    lines.append(cur)
    return ("\n" + indent).join(lines)


def pg_select(cols):
    out = []
    for c, k in cols:
        if k in ("uuid", "json"):
            out.append(f"{c}::text AS {c}")
        else:
            out.append(c)
    return out


FIX_COLS = [c for t, _, cols in TABLES if t == "failure_fixes" for c in cols]

PG_EXTRA = """
-- name: load_fixes_by_failure
-- The failure_fixes rows of these failures ($1, text[]), locked (classify_fixes).
SELECT {fix}
FROM failure_fixes
WHERE failure_id = ANY($1::text[]::uuid[])
ORDER BY id
FOR UPDATE

-- name: load_fixes_by_pr
-- The failure_fixes rows naming these pull request URLs ($1, text[]), locked
-- (fix_merged, fix_closed).
SELECT {fix}
FROM failure_fixes
WHERE pr_url = ANY($1::text[])
ORDER BY id
FOR UPDATE

-- name: load_agent_finished
-- An agent's latest finished tasks, for its health score (agent_health).
-- $1 agent id, $2 how many. Ordered by the uuid column (same order as its text), not
-- the `id` output alias: that lets the agent_tasks_agent_finished index stop after $2
-- rows instead of sorting every finished task of the agent.
SELECT id::text AS id, status, completed_at
FROM agent_tasks
WHERE agent_id = $1::uuid AND status IN ('completed', 'partial', 'failed')
ORDER BY agent_tasks.completed_at DESC, agent_tasks.id DESC
LIMIT $2
"""

SQLITE_EXTRA = """
-- name: load_fixes_by_failure
-- The failure_fixes rows of these failures ($1, a JSON array) (classify_fixes).
SELECT {fix}
FROM failure_fixes
WHERE failure_id IN (SELECT value FROM json_each($1))
ORDER BY id

-- name: load_fixes_by_pr
-- The failure_fixes rows naming these pull request URLs ($1, a JSON array)
-- (fix_merged, fix_closed).
SELECT {fix}
FROM failure_fixes
WHERE pr_url IN (SELECT value FROM json_each($1))
ORDER BY id

-- name: load_agent_finished
-- An agent's latest finished tasks, for its health score (agent_health).
-- $1 agent id, $2 how many
SELECT id, status, completed_at
FROM agent_tasks
WHERE agent_id = $1 AND status IN ('completed', 'partial', 'failed')
ORDER BY completed_at DESC, id DESC
LIMIT $2
"""


def gen_pg():
    parts = ["-- Batched writes (PostgreSQL), GENERATED by sql-gen/gen.py: edit the script.\n"
             "-- The projector folds a batch of facts into final rows in memory: it loads the rows\n"
             "-- the batch touches (locking them), applies the facts, then writes each table once.\n"]
    for table, key, cols in TABLES:
        names = [c for c, _ in cols]
        keycast = "uuid" if dict(cols)[key] == "uuid" else "text"
        parts.append(
            f"-- name: load_{STMT[table]}\n-- The {table} rows with these keys ($1, text[]), locked.\n"
            f"SELECT {wrap(pg_select(cols), '       ')}\n"
            f"FROM {table}\nWHERE {key} = ANY($1::text[]::{keycast}[])\nORDER BY {key}\nFOR UPDATE\n")
        arrays = [f"${i + 1}::{PG_ARRAY[k]}[]" for i, (_, k) in enumerate(cols)]
        sel = [f"u.{c}{PG_CAST.get(k, '')}" for c, k in cols]
        sets = [f"{c} = excluded.{c}" for c in names if c != key]
        parts.append(
            f"-- name: upsert_{STMT[table]}\n-- Final {table} rows of a batch: one array per column, in table order.\n"
            f"INSERT INTO {table} (\n    {wrap(names, '    ')})\n"
            f"SELECT {wrap(sel, '       ')}\n"
            f"FROM UNNEST({wrap(arrays, '            ')})\n"
            f"     AS u({wrap(names, '          ')})\n"
            f"ON CONFLICT ({key}) DO UPDATE\nSET {wrap(sets, '    ')}\n")
    parts.append(PG_EXTRA.format(fix=wrap(pg_select(FIX_COLS), "       ")).lstrip())
    return "\n".join(parts)


def gen_sqlite():
    parts = ["-- Batched writes (SQLite), GENERATED by sql-gen/gen.py: edit the script.\n"
             "-- The projector folds a batch of facts into final rows in memory: it loads the rows\n"
             "-- the batch touches, applies the facts, then writes each table once; the VALUES\n"
             "-- tuple of an upsert is repeated for as many rows as a chunk holds.\n"]
    for table, key, cols in TABLES:
        names = [c for c, _ in cols]
        sets = [f"{c} = excluded.{c}" for c in names if c != key]
        parts.append(
            f"-- name: load_{STMT[table]}\n-- The {table} rows with these keys ($1, a JSON array).\n"
            f"SELECT {wrap(names, '       ')}\n"
            f"FROM {table}\nWHERE {key} IN (SELECT value FROM json_each($1))\nORDER BY {key}\n")
        parts.append(
            f"-- name: upsert_{STMT[table]}\n-- Final {table} rows of a batch ({len(cols)} parameters per row).\n"
            f"INSERT INTO {table} (\n    {wrap(names, '    ')})\n"
            f"VALUES ({', '.join('?' for _ in cols)})\n"
            f"ON CONFLICT ({key}) DO UPDATE\nSET {wrap(sets, '    ')}\n")
    parts.append(SQLITE_EXTRA.format(fix=wrap([c for c, _ in FIX_COLS], "       ")).lstrip())
    return "\n".join(parts)


if __name__ == "__main__":
    with open("src/sql/postgres/fold.sql", "w") as f:
        f.write(gen_pg())
    with open("src/sql/sqlite/fold.sql", "w") as f:
        f.write(gen_sqlite())
