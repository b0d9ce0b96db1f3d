//! Commands: each appends one existing fact to the log and answers `202 Accepted` with the
//! ids and the position to read one's own write with (`?after=`).
//!
//! The facts' meaning belongs to the controller (it decides what a queued task or a
//! paused agent does); this layer validates input, derives ids and appends.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use sentinel_events::facts::{AgentRegistered, AgentStatusChanged, TaskCancelled, TaskQueued};
use sentinel_events::{AgentStatus, DEFAULT_TENANT, Event, envelope};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::consistency::position_token;
use crate::handlers::id;
use crate::{ApiError, ApiState};

/// Header whose value makes a task command idempotent: the same key queues the same task.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Longest accepted names, task types and reasons.
const MAX_TEXT: usize = 256;

/// Body of `POST /api/v1/agents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    /// Unique name; the agent's id derives from it.
    pub name: String,
    /// Version.
    pub version: String,
    /// Task types it can run.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Tasks it runs at once (1 to 1024; default 1).
    #[serde(default = "one")]
    pub max_concurrency: i32,
}

fn one() -> i32 {
    1
}

/// Body of `POST /api/v1/agents/{id}/tasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueTask {
    /// Kind of task (`fix_failure`, …); must be one of the agent's capabilities when it
    /// declares any.
    pub task_type: String,
    /// Task input (a JSON object).
    #[serde(default = "empty_object")]
    pub payload: Value,
    /// Higher runs first (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Deadline of one attempt in seconds (1 to 86400; default 1800).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: i64,
    /// Attempts before giving up (1 to 10; default 1).
    #[serde(default = "one")]
    pub max_attempts: i32,
    /// The repository the task is about, if any (its subject).
    #[serde(default)]
    pub repository: Option<String>,
    /// The tenant (default `default`).
    #[serde(default)]
    pub tenant: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn default_timeout() -> i64 {
    1800
}

/// Optional body of pause/resume and cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why (recorded in the fact).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The appended fact's event id.
    pub event_id: Uuid,
    /// The agent concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Uuid>,
    /// The task concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Uuid>,
    /// Position of the fact in the log: pass it as `?after=` to a read to see this write.
    pub after: String,
}

fn text_field(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be 1 to {MAX_TEXT} printable characters"
        )));
    }
    Ok(())
}

fn reason_text(reason: Option<String>, default: String) -> Result<String, ApiError> {
    match reason {
        Some(r) => {
            text_field("reason", &r)?;
            Ok(r)
        }
        None => Ok(default),
    }
}

/// Parses an optional JSON body: absent or empty is the default.
fn optional_body(body: Result<Json<Reason>, JsonRejection>) -> Result<Reason, ApiError> {
    match body {
        Ok(Json(b)) => Ok(b),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(Reason::default()),
        Err(e) => Err(e.into()),
    }
}

async fn append(state: &ApiState, event: &Event) -> Result<String, ApiError> {
    let log = state
        .log()
        .ok_or_else(|| ApiError::LogUnavailable("this process serves reads only".into()))?;
    let positions = sentinel_runtime::append_events(
        log.as_ref(),
        sentinel_runtime::EVENTS_TOPIC,
        std::slice::from_ref(event),
    )
    .await
    .map_err(|e| ApiError::LogUnavailable(e.to_string()))?;
    let position = positions
        .first()
        .copied()
        .ok_or_else(|| ApiError::LogUnavailable("the log returned no position".into()))?;
    Ok(position_token(position))
}

fn accepted(body: Accepted) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn producer() -> String {
    sentinel_runtime::producer("api")
}

/// `POST /api/v1/agents`: appends `AgentRegistered`.
#[utoipa::path(
    post, path = "/api/v1/agents", tag = "agents",
    request_body = RegisterAgent,
    responses(
        (status = 202, description = "AgentRegistered appended", body = Accepted),
        (status = 400, description = "Malformed JSON"),
        (status = 422, description = "Invalid field"),
        (status = 401, description = "No valid token"),
        (status = 403, description = "Token lacks the admin scope"),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn register_agent(
    State(state): State<ApiState>,
    body: Result<Json<RegisterAgent>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    text_field("name", &body.name)?;
    text_field("version", &body.version)?;
    for c in &body.capabilities {
        text_field("capabilities[]", c)?;
    }
    if !(1..=1024).contains(&body.max_concurrency) {
        return Err(ApiError::Unprocessable(
            "max_concurrency must be from 1 to 1024".into(),
        ));
    }
    let agent_id = sentinel_controller::agent_id(&body.name);
    let event = Event::origin(
        AgentRegistered {
            agent_id: agent_id.to_string(),
            name: body.name.clone(),
            version: body.version.clone(),
            capabilities: body.capabilities,
            max_concurrency: body.max_concurrency,
        },
        Some(&format!("agent/{}/{}", body.name, body.version)),
        DEFAULT_TENANT,
        &format!("agent/{}", body.name),
        envelope::now(),
        &producer(),
    );
    let after = append(&state, &event).await?;
    Ok(accepted(Accepted {
        event_id: event.event_id,
        agent_id: Some(agent_id),
        task_id: None,
        after,
    }))
}

/// `POST /api/v1/agents/{id}/tasks`: appends `TaskQueued` for that agent.
#[utoipa::path(
    post, path = "/api/v1/agents/{id}/tasks", tag = "tasks",
    params(
        ("id" = Uuid, Path, description = "The agent"),
        ("idempotency-key" = Option<String>, Header, description = "Same key, same task"),
    ),
    request_body = QueueTask,
    responses(
        (status = 202, description = "TaskQueued appended", body = Accepted),
        (status = 400, description = "Malformed id or JSON"),
        (status = 404, description = "Unknown agent"),
        (status = 422, description = "Invalid field"),
        (status = 401, description = "No valid token"),
        (status = 403, description = "Token lacks the write scope"),
    ),
    security(("bearer" = ["write"]))
)]
pub(crate) async fn queue_task(
    State(state): State<ApiState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Json<QueueTask>, JsonRejection>,
) -> Result<Response, ApiError> {
    let agent_id = id("agent", &raw)?;
    let Json(body) = body?;
    let agent = state
        .store()
        .get_agent(agent_id)
        .await?
        .ok_or(ApiError::NotFound {
            kind: "agent",
            id: raw.clone(),
        })?;
    text_field("task_type", &body.task_type)?;
    if !agent.capabilities.is_empty() && !agent.capabilities.contains(&body.task_type) {
        return Err(ApiError::Unprocessable(format!(
            "agent {} cannot run {:?} tasks (capabilities: {})",
            agent.name,
            body.task_type,
            agent.capabilities.join(", ")
        )));
    }
    if !body.payload.is_object() {
        return Err(ApiError::Unprocessable(
            "payload must be a JSON object".into(),
        ));
    }
    if !(1..=86_400).contains(&body.timeout_seconds) {
        return Err(ApiError::Unprocessable(
            "timeout_seconds must be from 1 to 86400".into(),
        ));
    }
    if !(1..=10).contains(&body.max_attempts) {
        return Err(ApiError::Unprocessable(
            "max_attempts must be from 1 to 10".into(),
        ));
    }
    if let Some(r) = &body.repository {
        text_field("repository", r)?;
    }
    let tenant = body.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    text_field("tenant", &tenant)?;
    let key = headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_TEXT)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "{IDEMPOTENCY_KEY_HEADER} must be 1 to {MAX_TEXT} visible ASCII characters"
                    ))
                })
        })
        .transpose()?;
    let natural = key.map(|k| format!("api-task/{agent_id}/{k}"));
    let task_id = match &natural {
        Some(n) => Uuid::new_v5(&envelope::EVENT_ID_NAMESPACE, n.as_bytes()),
        None => Uuid::new_v4(),
    };
    let subject = body
        .repository
        .clone()
        .unwrap_or_else(|| format!("agent/{}", agent.name));
    let event = Event::origin(
        TaskQueued {
            task_id: task_id.to_string(),
            agent_id: agent_id.to_string(),
            task_type: body.task_type,
            priority: body.priority,
            decision_id: None,
            failure_event_id: None,
            payload: body.payload.to_string(),
            timeout_seconds: body.timeout_seconds,
            max_attempts: body.max_attempts,
        },
        natural.as_deref(),
        &tenant,
        &subject,
        envelope::now(),
        &producer(),
    );
    let after = append(&state, &event).await?;
    Ok(accepted(Accepted {
        event_id: event.event_id,
        agent_id: Some(agent_id),
        task_id: Some(task_id),
        after,
    }))
}

async fn change_status(
    state: ApiState,
    caller: Caller,
    raw: String,
    body: Result<Json<Reason>, JsonRejection>,
    status: AgentStatus,
) -> Result<Response, ApiError> {
    let agent_id = id("agent", &raw)?;
    let body = optional_body(body)?;
    let agent = state
        .store()
        .get_agent(agent_id)
        .await?
        .ok_or(ApiError::NotFound {
            kind: "agent",
            id: raw.clone(),
        })?;
    let verb = match status {
        AgentStatus::Paused => "paused",
        _ => "resumed",
    };
    let reason = reason_text(
        body.reason,
        format!("{verb} via the API by {}", caller.name),
    )?;
    let event = Event::origin(
        AgentStatusChanged {
            agent_id: agent_id.to_string(),
            status,
            reason: Some(reason),
        },
        None,
        DEFAULT_TENANT,
        &format!("agent/{}", agent.name),
        envelope::now(),
        &producer(),
    );
    let after = append(&state, &event).await?;
    Ok(accepted(Accepted {
        event_id: event.event_id,
        agent_id: Some(agent_id),
        task_id: None,
        after,
    }))
}

/// `POST /api/v1/agents/{id}/pause`: appends `AgentStatusChanged` (paused).
#[utoipa::path(
    post, path = "/api/v1/agents/{id}/pause", tag = "agents",
    params(("id" = Uuid, Path, description = "The agent")),
    request_body(content = Option<Reason>, description = "Optional reason"),
    responses(
        (status = 202, description = "AgentStatusChanged appended", body = Accepted),
        (status = 400, description = "Malformed id"),
        (status = 404, description = "Unknown agent"),
        (status = 401, description = "No valid token"),
        (status = 403, description = "Token lacks the admin scope"),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn pause_agent(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Response, ApiError> {
    change_status(state, caller, raw, body, AgentStatus::Paused).await
}

/// `POST /api/v1/agents/{id}/resume`: appends `AgentStatusChanged` (active).
#[utoipa::path(
    post, path = "/api/v1/agents/{id}/resume", tag = "agents",
    params(("id" = Uuid, Path, description = "The agent")),
    request_body(content = Option<Reason>, description = "Optional reason"),
    responses(
        (status = 202, description = "AgentStatusChanged appended", body = Accepted),
        (status = 400, description = "Malformed id"),
        (status = 404, description = "Unknown agent"),
        (status = 401, description = "No valid token"),
        (status = 403, description = "Token lacks the admin scope"),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn resume_agent(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Response, ApiError> {
    change_status(state, caller, raw, body, AgentStatus::Active).await
}

/// `DELETE /api/v1/tasks/{id}`: appends `TaskCancelled`.
#[utoipa::path(
    delete, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = Uuid, Path, description = "The task")),
    request_body(content = Option<Reason>, description = "Optional reason"),
    responses(
        (status = 202, description = "TaskCancelled appended", body = Accepted),
        (status = 400, description = "Malformed id"),
        (status = 404, description = "Unknown task"),
        (status = 409, description = "The task already finished"),
        (status = 401, description = "No valid token"),
        (status = 403, description = "Token lacks the write scope"),
    ),
    security(("bearer" = ["write"]))
)]
pub(crate) async fn cancel_task(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Response, ApiError> {
    let task_id = id("task", &raw)?;
    let body = optional_body(body)?;
    let task = state
        .store()
        .get_task(task_id)
        .await?
        .ok_or(ApiError::NotFound {
            kind: "task",
            id: raw.clone(),
        })?;
    if matches!(
        task.status.as_str(),
        "completed" | "partial" | "failed" | "cancelled"
    ) {
        return Err(ApiError::Conflict(format!(
            "task {task_id} is already {}",
            task.status
        )));
    }
    let reason = reason_text(
        body.reason,
        format!("cancelled via the API by {}", caller.name),
    )?;
    let event = Event::origin(
        TaskCancelled {
            task_id: task_id.to_string(),
            reason,
            requested_by: Some(caller.name),
        },
        None,
        &task.tenant,
        &task.repository,
        envelope::now(),
        &producer(),
    );
    let after = append(&state, &event).await?;
    Ok(accepted(Accepted {
        event_id: event.event_id,
        agent_id: Some(task.agent_id),
        task_id: Some(task_id),
        after,
    }))
}
