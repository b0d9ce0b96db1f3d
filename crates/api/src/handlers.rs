//! Request handlers and the JSON they return.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sentinel_projections::{
    Agent, Failure, FailureFilter, Fix, FixCursor, FixFilter, MAX_PAGE, Task,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{ApiError, ApiState};

/// Response header carrying the cursor of the next page of a listing, present when the page
/// is full (there may be more).
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// A fix as listed by `GET /api/v1/fixes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FixesQuery {
    repository: Option<String>,
    status: Option<String>,
    failure_type: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Query parameters of `GET /api/v1/failures`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailuresQuery {
    repository: Option<String>,
    failure_type: Option<String>,
    limit: Option<String>,
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

fn id(kind: &'static str, raw: &str) -> Result<Uuid, ApiError> {
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

/// `GET /healthz`.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /api/v1/fixes`.
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
        after: q
            .cursor
            .as_deref()
            .map(str::parse::<FixCursor>)
            .transpose()?,
    };
    let fixes = state.store().list_fixes(&filter).await?;
    let next = (fixes.len() == filter.limit)
        .then(|| fixes.last().map(Fix::cursor))
        .flatten();
    let body: Vec<FixSummary> = fixes.into_iter().map(FixSummary::from).collect();
    let mut response = Json(body).into_response();
    // Cursors are ASCII digits, '_' and hex: always a valid header value.
    if let Some(value) = next.and_then(|c| HeaderValue::from_str(&c.to_string()).ok()) {
        response.headers_mut().insert(NEXT_CURSOR_HEADER, value);
    }
    Ok(response)
}

/// `GET /api/v1/fixes/{id}`.
pub(crate) async fn get_fix(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Fix>, ApiError> {
    let fix = state.store().get_fix(id("fix", &raw)?).await?;
    found("fix", &raw, fix)
}

/// `GET /api/v1/failures`.
pub(crate) async fn list_failures(
    State(state): State<ApiState>,
    q: Result<Query<FailuresQuery>, QueryRejection>,
) -> Result<Json<Vec<Failure>>, ApiError> {
    let q = query(q)?;
    let filter = FailureFilter {
        repository: q.repository,
        failure_type: q.failure_type,
        limit: limit(q.limit.as_deref())?,
    };
    Ok(Json(state.store().list_failures(&filter).await?))
}

/// `GET /api/v1/agents`.
pub(crate) async fn list_agents(
    State(state): State<ApiState>,
) -> Result<Json<Vec<Agent>>, ApiError> {
    Ok(Json(state.store().list_agents().await?))
}

/// `GET /api/v1/agents/{id}`.
pub(crate) async fn get_agent(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Agent>, ApiError> {
    let agent = state.store().get_agent(id("agent", &raw)?).await?;
    found("agent", &raw, agent)
}

/// `GET /api/v1/tasks/{id}`.
pub(crate) async fn get_task(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Json<Task>, ApiError> {
    let task = state.store().get_task(id("task", &raw)?).await?;
    found("task", &raw, task)
}
