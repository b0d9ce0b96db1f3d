//! The HTTP receivers: authenticate the raw body, parse, append, then answer.
//!
//! Order on every endpoint: body size (413) → authentication on the raw bytes (401) →
//! content type (415) → parse (400 / 422) → append → answer. Nothing is appended for a
//! refused request, and a delivery is acknowledged only after its facts are durably
//! appended. Every request counts once in `sentinel_webhooks_received_total{source,
//! outcome}`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sentinel_events::Event;
use sentinel_log::EventLog;
use sentinel_runtime::metrics::names;
use sentinel_runtime::{EVENTS_TOPIC, append_events, producer};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use uuid::Uuid;

use crate::auth::{self, AuthError};
use crate::config::{IngestConfig, Secret};
use crate::model::{Outcome, ParseError, natural_id};
use crate::{github, gitlab, jenkins, report};

/// Header carrying the HMAC of generic reports (GitHub's header is accepted too).
pub const GENERIC_SIGNATURE_HEADER: &str = "x-sentinel-signature-256";

#[derive(Clone)]
struct AppState {
    appender: Appender,
    producer: String,
    config: Arc<IngestConfig>,
    recent: Arc<Mutex<RecentIds>>,
}

/// Most deliveries whose facts are appended in one transaction.
const GROUP_COMMIT_MAX: usize = 256;

type AppendRequest = (Vec<Event>, oneshot::Sender<Result<(), String>>);

/// Group commit: concurrent deliveries are appended together, one durable append (one
/// fsync on the embedded log) for all of them, and each is answered only after it. A
/// delivery waits for no timer: the writer takes whatever is queued when the previous
/// append finishes.
#[derive(Clone)]
struct Appender {
    tx: mpsc::Sender<AppendRequest>,
}

impl Appender {
    fn spawn(log: Arc<dyn EventLog>) -> Self {
        let (tx, mut rx) = mpsc::channel::<AppendRequest>(4 * GROUP_COMMIT_MAX);
        tokio::spawn(async move {
            let mut batch: Vec<AppendRequest> = Vec::with_capacity(GROUP_COMMIT_MAX);
            // Ends when every sender (the router and its clones) is gone.
            while rx.recv_many(&mut batch, GROUP_COMMIT_MAX).await > 0 {
                let events: Vec<Event> = batch
                    .iter()
                    .flat_map(|(events, _)| events.iter().cloned())
                    .collect();
                let result = append_events(log.as_ref(), EVENTS_TOPIC, &events)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(result.clone());
                }
            }
        });
        Appender { tx }
    }

    async fn append(&self, events: Vec<Event>) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((events, reply))
            .await
            .map_err(|_| "appender stopped".to_owned())?;
        answer.await.map_err(|_| "appender stopped".to_owned())?
    }
}

/// The webhook routes: `POST /webhooks/{generic,github,gitlab,jenkins}` and
/// `POST /webhooks/jenkins/{token}`.
///
/// Must be called within a tokio runtime (it starts the group-commit writer, which stops
/// when the router is dropped).
pub fn router(log: Arc<dyn EventLog>, config: &IngestConfig) -> Router {
    Router::new()
        .route("/webhooks/generic", post(generic))
        .route("/webhooks/github", post(github_hook))
        .route("/webhooks/gitlab", post(gitlab_hook))
        .route("/webhooks/jenkins", post(jenkins_basic))
        .route("/webhooks/jenkins/{token}", post(jenkins_path))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(AppState {
            appender: Appender::spawn(log),
            producer: producer("ingest"),
            recent: Arc::new(Mutex::new(RecentIds::new(config.dedupe_window))),
            config: Arc::new(config.clone()),
        })
}

/// A bounded set of recently appended event ids (answers redeliveries without an append).
struct RecentIds {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    cap: usize,
}

impl RecentIds {
    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn contains(&self, id: &Uuid) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: Uuid) {
        if self.cap == 0 || !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// An error answer with a JSON body.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
    fields: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            detail: detail.into(),
            fields: Vec::new(),
        }
    }

    /// The metric outcome label of this refusal.
    fn outcome(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "malformed",
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.reason())
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Malformed(m) => ApiError::new(StatusCode::BAD_REQUEST, "malformed", m),
            ParseError::Invalid(fields) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                error: "invalid_fields",
                detail: fields.join("; "),
                fields,
            },
        }
    }
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

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = header_str(headers, header::CONTENT_TYPE.as_str())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        })
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ))
    }
}

fn body_ok(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let status = r.status();
        let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "body_rejected"
        };
        ApiError::new(status, error, r.body_text())
    })
}

fn configured(secret: Option<&Secret>) -> Result<&Secret, ApiError> {
    secret.ok_or_else(|| AuthError::NotConfigured.into())
}

fn required_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    natural_id(header_str(headers, name)).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            format!("header {name} missing or invalid"),
        )
    })
}

/// Appends the outcome's facts (unless they were appended recently) and answers.
async fn record(state: &AppState, outcome: Outcome) -> Result<(&'static str, Response), ApiError> {
    let accepted = match outcome {
        Outcome::Ping => {
            return Ok((
                "ping",
                (StatusCode::OK, axum::Json(json!({"pong": true}))).into_response(),
            ));
        }
        Outcome::Ignored(reason) => {
            return Ok((
                "ignored",
                (
                    StatusCode::ACCEPTED,
                    axum::Json(json!({ "ignored": reason })),
                )
                    .into_response(),
            ));
        }
        Outcome::Record(accepted) => accepted,
    };
    let events: Vec<Event> = accepted
        .iter()
        .map(|a| a.to_event(&state.producer))
        .collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let body = |duplicate: bool| {
        let mut b = json!({
            "event_id": ids.first(),
            "event_ids": ids,
            "correlation_id": events.first().map(|e| e.correlation_id),
        });
        if duplicate {
            b["duplicate"] = json!(true);
        }
        axum::Json(b)
    };
    let seen = {
        let recent = state.recent.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter().all(|id| recent.contains(id))
    };
    if seen {
        return Ok(("duplicate", (StatusCode::OK, body(true)).into_response()));
    }
    // Durable before acknowledged. Ids are deterministic from the delivery id, so a
    // redelivery this process no longer remembers is dropped by the log (embedded) or by
    // the consumers (Kafka).
    state.appender.append(events.clone()).await.map_err(|e| {
        warn!(error = %e, "Append failed.");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "log_unavailable",
            "the event log is unavailable; retry",
        )
    })?;
    {
        let mut recent = state.recent.lock().unwrap_or_else(|p| p.into_inner());
        for id in &ids {
            recent.insert(*id);
        }
    }
    for e in &events {
        info!(event_id = %e.event_id, event_type = e.event_type(), subject = %e.subject, "Recorded.");
    }
    Ok((
        "accepted",
        (StatusCode::ACCEPTED, body(false)).into_response(),
    ))
}

/// Runs one request through `parse`, `record`, metrics and logging.
async fn serve(
    state: &AppState,
    source: &'static str,
    parsed: Result<Outcome, ApiError>,
    started: Instant,
) -> Response {
    let result = match parsed {
        Ok(outcome) => record(state, outcome).await,
        Err(e) => Err(e),
    };
    let (label, response) = match result {
        Ok(r) => r,
        Err(e) => {
            warn!(source, status = e.status.as_u16(), error = e.error, detail = %e.detail, "Webhook refused.");
            (e.outcome(), e.into_response())
        }
    };
    metrics::counter!(names::WEBHOOKS_RECEIVED, "source" => source, "outcome" => label)
        .increment(1);
    metrics::histogram!(names::WEBHOOK_DURATION, "source" => source)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn github_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let parsed = (|| {
        let body = body_ok(body)?;
        let secret = configured(state.config.github_secret.as_ref())?;
        // Authenticate the raw bytes before anything looks inside them.
        auth::verify_sha256_signature(secret, &body, header_str(&headers, "x-hub-signature-256"))?;
        require_json(&headers)?;
        let event = required_header(&headers, "x-github-event")?;
        let delivery = required_header(&headers, "x-github-delivery")?;
        Ok(github::parse(event, delivery, &body, &state.config.bot)?)
    })();
    serve(&state, github::SOURCE, parsed, started).await
}

async fn gitlab_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let parsed = (|| {
        let body = body_ok(body)?;
        let token = configured(state.config.gitlab_token.as_ref())?;
        auth::verify_token(token, header_str(&headers, "x-gitlab-token"))?;
        require_json(&headers)?;
        let event = required_header(&headers, "x-gitlab-event")?;
        let key = natural_id(header_str(&headers, "idempotency-key"))
            .or_else(|| natural_id(header_str(&headers, "x-gitlab-event-uuid")));
        Ok(gitlab::parse(event, key, &body, &state.config.bot)?)
    })();
    serve(&state, gitlab::SOURCE, parsed, started).await
}

fn jenkins_parse(
    state: &AppState,
    headers: &HeaderMap,
    presented: Result<Vec<u8>, AuthError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Outcome, ApiError> {
    let body = body_ok(body)?;
    let token = configured(state.config.jenkins_token.as_ref())?;
    if !auth::token_matches(token, &presented?) {
        return Err(AuthError::Mismatch.into());
    }
    require_json(headers)?;
    Ok(jenkins::parse(&body, &state.config.bot)?)
}

async fn jenkins_path(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let parsed = jenkins_parse(&state, &headers, Ok(token.into_bytes()), body);
    serve(&state, jenkins::SOURCE, parsed, started).await
}

async fn jenkins_basic(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let presented = header_str(&headers, header::AUTHORIZATION.as_str())
        .ok_or(AuthError::Missing)
        .and_then(auth::basic_password);
    let parsed = jenkins_parse(&state, &headers, presented, body);
    serve(&state, jenkins::SOURCE, parsed, started).await
}

async fn generic(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let parsed = (|| {
        let body = body_ok(body)?;
        if let Some(secret) = &state.config.generic_secret {
            let sig = header_str(&headers, GENERIC_SIGNATURE_HEADER)
                .or_else(|| header_str(&headers, "x-hub-signature-256"));
            auth::verify_sha256_signature(secret, &body, sig)?;
        }
        require_json(&headers)?;
        let key = natural_id(header_str(&headers, "idempotency-key"));
        let accepted = report::parse_json(&body)?.validate("generic", key, &state.config.bot)?;
        Ok(Outcome::Record(vec![accepted]))
    })();
    serve(&state, "generic", parsed, started).await
}
