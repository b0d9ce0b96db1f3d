//! Request handlers and the JSON they return.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sentinel_projections::{
    Agent, Cursor, Decision, DecisionFilter, Failure, FailureFilter, Fix, FixCursor, FixFilter,
    MAX_PAGE, Task,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::{ApiError, ApiState};

/// Response header carrying the cursor of the next page of a listing, present when the page
/// is full (there may be more).
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// A fix as listed by `GET /api/v1/fixes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FixSummary {
    /// The fix (= task) id.
    pub id: Uuid,
    /// The repository.
    pub repository: String,
    /// The failure's class.
    pub failure_type: Option<String>,
    /// The fix's status.
    pub status: String,
    /// Confidence in the validated fix.
    pub confidence: Option<f64>,
    /// The fix branch, once pushed.
    pub branch: Option<String>,
    /// The pull request, once opened.
    pub pr_url: Option<String>,
    /// When the fix task was queued (RFC 3339).
    pub created_at: DateTime<Utc>,
}

impl From<Fix> for FixSummary {
    fn from(f: Fix) -> Self {
        FixSummary {
            id: f.id,
            repository: f.repository,
            failure_type: f.failure_type,
            status: f.status,
            confidence: f.confidence,
            branch: f.fix_branch,
            pr_url: f.pr_url,
            created_at: f.created_at,
        }
    }
}

/// Query parameters of `GET /api/v1/fixes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FixesQuery {
    /// Only this repository (`owner/name`).
    repository: Option<String>,
    /// Only this status (`queued`, `in_progress`, `pr_opened`, `merged`, …).
    status: Option<String>,
    /// Only this failure type.
    #[serde(alias = "type")]
    failure_type: Option<String>,
    /// Only fixes queued at or after this time (RFC 3339).
    since: Option<String>,
    /// Only fixes queued before this time (RFC 3339).
    until: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<String>,
    /// The `x-next-cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the projections applied this log position (`PARTITION:OFFSET`).
    #[allow(dead_code)]
    after: Option<String>,
}

/// Query parameters of `GET /api/v1/failures`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FailuresQuery {
    /// Only this repository.
    repository: Option<String>,
    /// Only this failure type.
    #[serde(alias = "type")]
    failure_type: Option<String>,
    /// Only failures that occurred at or after this time (RFC 3339).
    since: Option<String>,
    /// Only failures that occurred before this time (RFC 3339).
    until: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<String>,
    /// The `x-next-cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the projections applied this log position (`PARTITION:OFFSET`).
    #[allow(dead_code)]
    after: Option<String>,
}

/// Query parameters of `GET /api/v1/policy/decisions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DecisionsQuery {
    /// Only this repository.
    repository: Option<String>,
    /// `dispatch` or `action`.
    kind: Option<String>,
    /// Only this decision (`dispatch`, `rate_limited`, `open_pr`, …).
    #[serde(alias = "status")]
    decision: Option<String>,
    /// Only this failure type.
    #[serde(alias = "type")]
    failure_type: Option<String>,
    /// Only decisions taken at or after this time (RFC 3339).
    since: Option<String>,
    /// Only decisions taken before this time (RFC 3339).
    until: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<String>,
    /// The `x-next-cursor` of the previous page.
    cursor: Option<String>,
    /// Wait until the projections applied this log position (`PARTITION:OFFSET`).
    #[allow(dead_code)]
    after: Option<String>,
}

/// Query parameters of reads without filters: only `after`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AfterQuery {
    /// Wait until the projections applied this log position (`PARTITION:OFFSET`).
    #[allow(dead_code)]
    after: Option<String>,
}

fn instant(name: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|r| {
        DateTime::parse_from_rfc3339(r)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "{name} must be an RFC 3339 time (2024-01-31T12:00:00Z), not {r:?}"
                ))
            })
    })
    .transpose()
}

fn cursor(raw: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    Ok(raw.map(str::parse::<FixCursor>).transpose()?)
}

fn with_next(body: Response, next: Option<Cursor>) -> Response {
    let mut response = body;
    // Cursors are ASCII digits, '_' and hex: always a valid header value.
    if let Some(value) = next.and_then(|c| HeaderValue::from_str(&c.to_string()).ok()) {
        response.headers_mut().insert(NEXT_CURSOR_HEADER, value);
    }
    response
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(sentinel_projections::DEFAULT_PAGE);
    };
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "limit must be an integer from 1 to {MAX_PAGE}, not {raw:?}"
            ))
        })
}

pub(crate) fn id(kind: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::BadRequest(format!("malformed {kind} id {raw:?}: expected a UUID")))
}

fn found<T: Serialize>(
    kind: &'static str,
    raw: &str,
    value: Option<T>,
) -> Result<Json<T>, ApiError> {
    value.map(Json).ok_or_else(|| ApiError::NotFound {
        kind,
        id: raw.to_owned(),
    })
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive")))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the projection database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready")))]
pub(crate) async fn readyz(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    state.store().ping().await.map_err(ApiError::Unavailable)?;
    Ok(Json(json!({ "status": "ready" })))
}

/// `GET /metrics`: Prometheus text exposition of the process's metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Response {
    let body = state.render_metrics();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /api/v1/fixes`.
#[utoipa::path(get, path = "/api/v1/fixes", tag = "fixes", params(FixesQuery),
    responses(
        (status = 200, description = "Fixes, newest first; `x-next-cursor` when there may be more", body = [FixSummary]),
        (status = 400, description = "Malformed parameter"),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn list_fixes(
    State(state): State<ApiState>,
    q: Result<Query<FixesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let filter = FixFilter {
        repository: q.repository,
        status: q.status,
        failure_type: q.failure_type,
        limit: limit(q.limit.as_deref())?,
        after: cursor(q.cursor.as_deref())?,
        since: instant("since", q.since.as_deref())?,
        until: instant("until", q.until.as_deref())?,
    };
    let fixes = state.store().list_fixes(&filter).await?;
    let next = (fixes.len() == filter.limit)
        .then(|| fixes.last().map(Fix::cursor))
        .flatten();
    let body: Vec<FixSummary> = fixes.into_iter().map(FixSummary::from).collect();
    Ok(with_next(Json(body).into_response(), next))
}

/// `GET /api/v1/fixes/{id}`.
#[utoipa::path(get, path = "/api/v1/fixes/{id}", tag = "fixes",
    params(("id" = Uuid, Path, description = "The fix (= task) id"), AfterQuery),
    responses(
        (status = 200, description = "The fix with its diff and validation", body = Fix),
        (status = 400, description = "Malformed id"),
        (status = 404, description = "Unknown fix"),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn get_fix(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Fix>, ApiError> {
    let fix = state.store().get_fix(id("fix", &raw)?).await?;
    found("fix", &raw, fix)
}

/// `GET /api/v1/failures`.
#[utoipa::path(get, path = "/api/v1/failures", tag = "failures", params(FailuresQuery),
    responses(
        (status = 200, description = "Failed CI runs, newest first; `x-next-cursor` when there may be more", body = [Failure]),
        (status = 400, description = "Malformed parameter"),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn list_failures(
    State(state): State<ApiState>,
    q: Result<Query<FailuresQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let filter = FailureFilter {
        repository: q.repository,
        failure_type: q.failure_type,
        limit: limit(q.limit.as_deref())?,
        after: cursor(q.cursor.as_deref())?,
        since: instant("since", q.since.as_deref())?,
        until: instant("until", q.until.as_deref())?,
    };
    let failures = state.store().list_failures(&filter).await?;
    let next = (failures.len() == filter.limit)
        .then(|| failures.last().map(Failure::cursor))
        .flatten();
    Ok(with_next(Json(failures).into_response(), next))
}

/// `GET /api/v1/policy/decisions`.
#[utoipa::path(get, path = "/api/v1/policy/decisions", tag = "policy", params(DecisionsQuery),
    responses(
        (status = 200, description = "Policy decisions, newest first; `x-next-cursor` when there may be more", body = [Decision]),
        (status = 400, description = "Malformed parameter"),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn list_decisions(
    State(state): State<ApiState>,
    q: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    if let Some(k) = q
        .kind
        .as_deref()
        .filter(|k| !matches!(*k, "dispatch" | "action"))
    {
        return Err(ApiError::BadRequest(format!(
            "kind must be dispatch or action, not {k:?}"
        )));
    }
    let filter = DecisionFilter {
        repository: q.repository,
        kind: q.kind,
        decision: q.decision,
        failure_type: q.failure_type,
        limit: limit(q.limit.as_deref())?,
        after: cursor(q.cursor.as_deref())?,
        since: instant("since", q.since.as_deref())?,
        until: instant("until", q.until.as_deref())?,
    };
    let decisions = state.store().list_decisions(&filter).await?;
    let next = (decisions.len() == filter.limit)
        .then(|| decisions.last().map(Decision::cursor))
        .flatten();
    Ok(with_next(Json(decisions).into_response(), next))
}

/// `GET /api/v1/agents`.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(AfterQuery),
    responses((status = 200, description = "Every agent, by name", body = [Agent])),
    security(("bearer" = ["read"])))]
pub(crate) async fn list_agents(
    State(state): State<ApiState>,
) -> Result<Json<Vec<Agent>>, ApiError> {
    Ok(Json(state.store().list_agents().await?))
}

/// `GET /api/v1/agents/{id}`.
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = Uuid, Path, description = "The agent"), AfterQuery),
    responses(
        (status = 200, description = "The agent", body = Agent),
        (status = 400, description = "Malformed id"),
        (status = 404, description = "Unknown agent"),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn get_agent(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let agent = state.store().get_agent(id("agent", &raw)?).await?;
    found("agent", &raw, agent)
}

/// `GET /api/v1/tasks/{id}`.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = Uuid, Path, description = "The task"), AfterQuery),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 400, description = "Malformed id"),
        (status = 404, description = "Unknown task"),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn get_task(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Task>, ApiError> {
    let task = state.store().get_task(id("task", &raw)?).await?;
    found("task", &raw, task)
}
