//! Ingestion: HTTP receivers that turn CI failure reports into `CiRunFailed` facts.
//!
//! The handler validates the body, appends the fact to the log and only then answers
//! `202 Accepted` — an acknowledged report is durable. Invalid input is answered with a
//! JSON error and appends nothing: malformed JSON → 400, missing or invalid fields → 422
//! (naming them), body over the limit → 413, a content type other than JSON → 415.

#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use sentinel_events::facts::CiRunFailed;
use sentinel_events::{DEFAULT_TENANT, Event};
use sentinel_log::EventLog;
use sentinel_runtime::{EVENTS_TOPIC, append_events, producer};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

/// Default body limit: 25 MB, GitHub's and GitLab's own cap on webhook payloads.
pub const DEFAULT_BODY_LIMIT: usize = 25 * 1024 * 1024;

/// Longest log kept in a fact; longer logs keep their tail (where errors usually are).
pub const MAX_LOG_BYTES: usize = 1024 * 1024;

/// How far in the future a reported `occurred_at` may be (clock skew).
pub const MAX_CLOCK_SKEW_MINUTES: i64 = 5;

/// Branch prefix of Sentinel's own fix branches (loop guard).
pub const FIX_BRANCH_PREFIX: &str = "sentinel/fix-";

/// Configuration of the receivers.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest accepted body in bytes.
    pub body_limit: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

#[derive(Clone)]
struct AppState {
    log: Arc<dyn EventLog>,
    producer: String,
}

/// The webhook routes (`POST /webhooks/generic`).
pub fn router(log: Arc<dyn EventLog>, config: &IngestConfig) -> Router {
    Router::new()
        .route("/webhooks/generic", post(generic))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(AppState {
            log,
            producer: producer("ingest"),
        })
}

/// The generic failure report.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericReport {
    repository: Option<String>,
    branch: Option<String>,
    commit: Option<String>,
    command: Option<String>,
    log: Option<String>,
    run_url: Option<String>,
    occurred_at: Option<String>,
    tenant: Option<String>,
}

/// An error answer with a JSON body.
struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
    fields: Vec<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error, "detail": self.detail });
        if !self.fields.is_empty() {
            body["fields"] = json!(self.fields);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

fn bad(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError {
        status,
        error,
        detail: detail.into(),
        fields: Vec::new(),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false)
}

fn tail_bytes(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

fn is_commit_id(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Validates a report; returns the fact and its metadata or the list of bad fields.
fn validate(report: GenericReport) -> Result<(CiRunFailed, String, DateTime<Utc>), Vec<String>> {
    let mut problems = Vec::new();
    let mut required = |name: &str, v: &Option<String>| match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_owned(),
        Some(_) => {
            problems.push(format!("{name}: must not be empty"));
            String::new()
        }
        None => {
            problems.push(format!("{name}: required"));
            String::new()
        }
    };
    let repository = required("repository", &report.repository);
    let branch = required("branch", &report.branch);
    let commit = required("commit", &report.commit);
    let command = required("command", &report.command);
    if report.log.is_none() {
        problems.push("log: required".into());
    }
    if !commit.is_empty() && !is_commit_id(&commit) {
        problems.push("commit: must be a hexadecimal commit id (4 to 64 digits)".into());
    }
    let occurred_at = match report.occurred_at.as_deref() {
        None => Utc::now(),
        Some(t) => match DateTime::parse_from_rfc3339(t) {
            // Event time drives the policy's windows: a report from the future would move
            // them, so only a little clock skew is tolerated.
            Ok(t)
                if t.with_timezone(&Utc)
                    > Utc::now() + chrono::Duration::minutes(MAX_CLOCK_SKEW_MINUTES) =>
            {
                problems.push(format!(
                    "occurred_at: more than {MAX_CLOCK_SKEW_MINUTES} minutes in the future"
                ));
                Utc::now()
            }
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                problems.push(format!("occurred_at: not RFC 3339 ({e})"));
                Utc::now()
            }
        },
    };
    let tenant = report.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    if tenant.is_empty() || tenant.len() > 128 || tenant.contains('/') {
        problems.push("tenant: 1 to 128 characters, no '/'".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let log = report.log.unwrap_or_default();
    let log_size_bytes = i64::try_from(log.len()).unwrap_or(i64::MAX);
    let fact = CiRunFailed {
        source: "generic".into(),
        delivery_id: None,
        sentinel_authored: branch
            .trim_start_matches("refs/heads/")
            .starts_with(FIX_BRANCH_PREFIX),
        repository,
        branch,
        commit,
        command: Some(command),
        // Secrets are redacted before the log is stored anywhere (DESIGN §4 rule 6).
        log: sentinel_events::redact::redact(&tail_bytes(log, MAX_LOG_BYTES)),
        log_size_bytes,
        run_url: report.run_url,
        job_name: None,
        author: None,
    };
    Ok((fact, tenant, occurred_at))
}

async fn generic(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let result = match body {
        Ok(body) => accept_generic(&state, &headers, &body).await,
        Err(rejection) => Err(bad(
            rejection.status(),
            "body_rejected",
            rejection.body_text(),
        )),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            warn!(status = e.status.as_u16(), error = e.error, detail = %e.detail, "Webhook refused.");
            e.into_response()
        }
    }
}

async fn accept_generic(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    if !is_json(headers) {
        return Err(bad(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ));
    }
    let report: GenericReport = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            bad(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_fields",
                e.to_string(),
            )
        } else {
            bad(StatusCode::BAD_REQUEST, "malformed_json", e.to_string())
        }
    })?;
    let (fact, tenant, occurred_at) = validate(report).map_err(|fields| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: "invalid_fields",
        detail: fields.join("; "),
        fields,
    })?;
    // A client-chosen idempotency key makes retries of the same report append nothing new.
    let natural = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .map(str::to_owned);
    let repository = fact.repository.clone();
    let event = Event::origin(
        fact,
        natural.as_deref(),
        &tenant,
        &repository,
        occurred_at,
        &state.producer,
    );
    append_events(
        state.log.as_ref(),
        EVENTS_TOPIC,
        std::slice::from_ref(&event),
    )
    .await
    .map_err(|e| {
        warn!(error = %e, "Append failed.");
        bad(
            StatusCode::SERVICE_UNAVAILABLE,
            "log_unavailable",
            "the event log is unavailable; retry",
        )
    })?;
    info!(event_id = %event.event_id, repository, "Failure recorded.");
    let body = json!({
        "event_id": event.event_id,
        "correlation_id": event.correlation_id,
    });
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use sentinel_log::sqlite::SqliteLog;
    use tower::ServiceExt;

    async fn setup(limit: usize) -> (tempfile::TempDir, Arc<dyn EventLog>, Router) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = SqliteLog::open(&dir.path().join("l.db"))
            .await
            .expect("open");
        log.ensure_topic(EVENTS_TOPIC, 1).await.expect("topic");
        let log: Arc<dyn EventLog> = Arc::new(log);
        let app = router(log.clone(), &IngestConfig { body_limit: limit });
        (dir, log, app)
    }

    async fn post(
        app: &Router,
        ct: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::post("/webhooks/generic")
            .header("content-type", ct)
            .body(body.into())
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn valid() -> serde_json::Value {
        json!({
            "repository": "/srv/repo", "branch": "main", "commit": "abc1234",
            "command": "black --check .", "log": "would reformat x.py"
        })
    }

    async fn appended(log: &Arc<dyn EventLog>) -> i64 {
        log.end_offsets(EVENTS_TOPIC).await.expect("end")[0]
    }

    #[tokio::test]
    async fn valid_report_is_appended_and_acknowledged() {
        let (_d, log, app) = setup(DEFAULT_BODY_LIMIT).await;
        let (status, body) = post(&app, "application/json", valid().to_string()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert!(body["event_id"].is_string() && body["correlation_id"] == body["event_id"]);
        let stored = log.read(EVENTS_TOPIC, 0, 0, 10).await.expect("read");
        assert_eq!(stored.len(), 1);
        let e = sentinel_events::codec::decode(&stored[0].record.value, None).expect("decode");
        assert_eq!(
            e.event_id.to_string(),
            body["event_id"].as_str().expect("id")
        );
        assert_eq!(e.subject, "/srv/repo");
    }

    #[tokio::test]
    async fn bad_input_gets_its_status_and_appends_nothing() {
        let (_d, log, app) = setup(1024).await;
        let (s, b) = post(&app, "application/json", "{not json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["error"], "malformed_json");
        let (s, b) = post(
            &app,
            "application/json",
            json!({"repository": "r"}).to_string(),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let fields = b["fields"].to_string();
        for f in ["branch", "commit", "command", "log"] {
            assert!(fields.contains(f), "{f} not named in {fields}");
        }
        let mut v = valid();
        v["commit"] = json!("not-a-sha");
        v["occurred_at"] = json!("yesterday");
        let (s, b) = post(&app, "application/json", v.to_string()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            b["detail"]
                .as_str()
                .expect("detail")
                .contains("occurred_at")
        );
        let mut v = valid();
        v["unexpected"] = json!(1);
        let (s, _) = post(&app, "application/json", v.to_string()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let mut v = valid();
        v["log"] = json!("x".repeat(2048));
        let (s, b) = post(&app, "application/json", v.to_string()).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(b["error"], "body_rejected", "413 has a JSON body too");
        let mut v = valid();
        v["occurred_at"] = json!("2999-01-01T00:00:00Z");
        let (s, b) = post(&app, "application/json", v.to_string()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(b["detail"].as_str().expect("detail").contains("future"));
        let (s, _) = post(&app, "text/plain", valid().to_string()).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(appended(&log).await, 0, "nothing appended for bad input");
    }

    #[tokio::test]
    async fn idempotency_key_makes_retries_append_nothing_new() {
        let (_d, log, app) = setup(DEFAULT_BODY_LIMIT).await;
        let mut ids = Vec::new();
        for _ in 0..2 {
            let req = Request::post("/webhooks/generic")
                .header("content-type", "application/json")
                .header("idempotency-key", "run-42")
                .body(Body::from(valid().to_string()))
                .expect("request");
            let resp = app.clone().oneshot(req).await.expect("response");
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            ids.push(v["event_id"].clone());
        }
        assert_eq!(ids[0], ids[1]);
        assert_eq!(
            log.read(EVENTS_TOPIC, 0, 0, 10).await.expect("read").len(),
            1
        );
    }

    #[tokio::test]
    async fn secrets_in_logs_are_redacted_before_they_are_stored() {
        let (_d, log, app) = setup(DEFAULT_BODY_LIMIT).await;
        let mut v = valid();
        let token = format!("ghp_{}", "a1B2".repeat(9));
        v["log"] = json!(format!(
            "Run git clone https://bot:hunter2secret@github.com/o/r\nGITHUB_TOKEN={token}\nwould reformat x.py\n"
        ));
        let (s, _) = post(&app, "application/json", v.to_string()).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let stored = log.read(EVENTS_TOPIC, 0, 0, 10).await.expect("read");
        let e = sentinel_events::codec::decode(&stored[0].record.value, None).expect("decode");
        let sentinel_events::Fact::CiRunFailed(f) = e.fact else {
            panic!("not a failure")
        };
        assert!(
            !f.log.contains(&token) && !f.log.contains("hunter2secret"),
            "{}",
            f.log
        );
        assert!(
            f.log.contains("would reformat x.py"),
            "the rest of the log is intact"
        );
    }

    #[test]
    fn fix_branches_are_marked_for_the_loop_guard() {
        let report: GenericReport = serde_json::from_value(json!({
            "repository": "r", "branch": "sentinel/fix-1234", "commit": "abcd",
            "command": "x", "log": ""
        }))
        .expect("parse");
        let (fact, ..) = validate(report).expect("valid");
        assert!(fact.sentinel_authored);
    }
}
