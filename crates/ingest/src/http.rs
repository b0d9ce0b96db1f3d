//! The HTTP receivers: authenticate the raw body, parse, append, then answer.
//!
//! Order on every endpoint: body size (413) → authentication on the raw bytes (401) →
//! content type (415) → parse (400 / 422) → append → answer. Nothing is appended for a
//! refused request, and a delivery is acknowledged only after its facts are durably
//! appended. Every request counts once in `sentinel_webhooks_received_total{source,
//! outcome}`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sentinel_events::Event;
use sentinel_log::{EventLog, Record};
use sentinel_runtime::metrics::names;
use sentinel_runtime::{EVENTS_TOPIC, producer, to_record};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
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
}

/// Most deliveries whose facts are appended in one transaction.
const GROUP_COMMIT_MAX: usize = 256;

/// What became of one delivery's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Appended {
    /// Durably appended now.
    New,
    /// Already in the log (a redelivery): nothing appended.
    Duplicate,
}

/// One delivery's facts, encoded, and where to send the answer.
struct AppendRequest {
    ids: Vec<Uuid>,
    records: Vec<Record>,
    reply: oneshot::Sender<Result<Appended, String>>,
}

/// Group commit: concurrent deliveries are appended together, one durable append (one
/// fsync on the embedded log) for all of them, and each is answered only after it. A
/// delivery waits for no timer: the writer takes whatever is queued when the previous
/// append finishes, after letting the tasks that are ready run once (so deliveries in the
/// middle of being parsed join the same commit).
///
/// The writer also owns deduplication: it remembers the event ids of the last
/// `dedupe_window` facts (seeded from the log's tail when it starts, so a restarted receiver
/// still recognises recent redeliveries; its first append waits for that seeding, at most
/// [`SEED_WAIT`]) and appends nothing for a delivery whose facts are all known, including
/// one delivered twice within the same batch.
#[derive(Clone)]
struct Appender {
    tx: mpsc::Sender<AppendRequest>,
    recent: Arc<Mutex<RecentIds>>,
}

impl Appender {
    fn spawn(log: Arc<dyn EventLog>, dedupe_window: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<AppendRequest>(4 * GROUP_COMMIT_MAX);
        let recent = Arc::new(Mutex::new(RecentIds::new(dedupe_window)));
        let (seeded_tx, mut seeded) = watch::channel(false);
        // Seeding reads the log's tail (on Kafka, the records themselves), which can take
        // long after a restart; it runs beside the writer, which waits for it for at most
        // `SEED_WAIT` before its first append.
        let deadline = tokio::time::Instant::now() + SEED_WAIT;
        {
            let (log, known) = (log.clone(), recent.clone());
            tokio::spawn(async move {
                seed(log.as_ref(), &known, dedupe_window).await;
                let _ = seeded_tx.send(true);
            });
        }
        let known = recent.clone();
        tokio::spawn(async move {
            let mut batch: Vec<AppendRequest> = Vec::with_capacity(GROUP_COMMIT_MAX);
            let mut waited = false;
            // Ends when every sender (the router and its clones) is gone.
            while rx.recv_many(&mut batch, GROUP_COMMIT_MAX).await > 0 {
                if !waited {
                    waited = true;
                    wait_for_seed(&mut seeded, deadline).await;
                }
                // Let the tasks that are ready run once before committing: deliveries being
                // authenticated and parsed right now join this commit instead of waiting
                // for the next one (fuller commits, fewer commits and fsyncs per delivery).
                // No timer: when nothing else is ready this returns at once.
                if batch.len() < GROUP_COMMIT_MAX {
                    tokio::task::yield_now().await;
                    while batch.len() < GROUP_COMMIT_MAX {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                }
                write_batch(log.as_ref(), &known, &mut batch).await;
            }
        });
        Appender { tx, recent }
    }

    /// Whether every id was appended recently (answers a redelivery without queueing it
    /// behind the writer; the writer checks again).
    fn all_known(&self, ids: &[Uuid]) -> bool {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        !ids.is_empty() && ids.iter().all(|id| recent.contains(id))
    }

    async fn append(&self, ids: Vec<Uuid>, records: Vec<Record>) -> Result<Appended, String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(AppendRequest {
                ids,
                records,
                reply,
            })
            .await
            .map_err(|_| "appender stopped".to_owned())?;
        answer.await.map_err(|_| "appender stopped".to_owned())?
    }
}

/// Longest a receiver's first append waits for the deduplication window to be seeded from
/// the log (counted from the receiver's start). A redelivery arriving right after a restart
/// is then recognised; a log too slow to answer delays appends by this much at most, after
/// which deliveries are appended with what is known (the embedded log still refuses
/// duplicate ids; on Kafka the consumers deduplicate).
const SEED_WAIT: Duration = Duration::from_secs(2);

/// Waits until seeding finished or `deadline` passed; the latter is logged and counted as
/// `sentinel_ingest_dedupe_seeds_total{outcome="timed_out"}`.
async fn wait_for_seed(seeded: &mut watch::Receiver<bool>, deadline: tokio::time::Instant) {
    // An error means the seeding task ended without a word: nothing left to wait for.
    if tokio::time::timeout_at(deadline, seeded.wait_for(|done| *done))
        .await
        .is_err()
    {
        warn!(
            wait_ms = SEED_WAIT.as_millis(),
            "Recent event ids still loading; appending without them (redeliveries of older deliveries may be appended again)."
        );
        metrics::counter!(names::DEDUPE_SEEDS, "outcome" => "timed_out").increment(1);
    }
}

/// Loads the ids of the log's last `window` facts into the deduplication window. A log that
/// cannot be read leaves it empty (the embedded log still refuses duplicate ids itself).
async fn seed(log: &dyn EventLog, recent: &Mutex<RecentIds>, window: usize) {
    if window == 0 {
        return;
    }
    match log.recent_event_ids(EVENTS_TOPIC, window).await {
        Ok(ids) => {
            let mut recent = recent.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids.iter().filter_map(|s| Uuid::parse_str(s).ok()) {
                recent.insert(id);
            }
            metrics::counter!(names::DEDUPE_SEEDS, "outcome" => "seeded").increment(1);
        }
        Err(error) => {
            warn!(%error, "Could not read recent event ids; deduplicating from now on.");
            metrics::counter!(names::DEDUPE_SEEDS, "outcome" => "failed").increment(1);
        }
    }
}

/// Appends one batch of deliveries in one durable append and answers each.
async fn write_batch(
    log: &dyn EventLog,
    recent: &Mutex<RecentIds>,
    batch: &mut Vec<AppendRequest>,
) {
    // Per request: known before this batch (a duplicate whatever happens to the batch),
    // a duplicate of an earlier request in this batch (shares the batch's fate), or new.
    #[derive(Clone, Copy)]
    enum Fate {
        Known,
        SameBatch,
        New,
    }
    let mut fates = Vec::with_capacity(batch.len());
    let mut records = Vec::new();
    let mut in_batch: HashSet<Uuid> = HashSet::new();
    {
        let known = recent.lock().unwrap_or_else(|p| p.into_inner());
        for req in batch.iter_mut() {
            let fate = if req.ids.is_empty() {
                Fate::New
            } else if req.ids.iter().all(|id| known.contains(id)) {
                Fate::Known
            } else if req
                .ids
                .iter()
                .all(|id| known.contains(id) || in_batch.contains(id))
            {
                Fate::SameBatch
            } else {
                Fate::New
            };
            if let Fate::New = fate {
                for (id, record) in req.ids.iter().zip(req.records.drain(..)) {
                    if !known.contains(id) && in_batch.insert(*id) {
                        records.push(record);
                    }
                }
            }
            fates.push(fate);
        }
    }
    let n = records.len();
    let result = if records.is_empty() {
        Ok(())
    } else {
        log.append(EVENTS_TOPIC, records)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    if result.is_ok() {
        metrics::counter!(names::EVENTS_APPENDED, "topic" => EVENTS_TOPIC)
            .increment(u64::try_from(n).unwrap_or(u64::MAX));
        let mut known = recent.lock().unwrap_or_else(|p| p.into_inner());
        for id in in_batch {
            known.insert(id);
        }
    }
    for (req, fate) in batch.drain(..).zip(fates) {
        let answer = match fate {
            Fate::Known => Ok(Appended::Duplicate),
            Fate::SameBatch => result.clone().map(|()| Appended::Duplicate),
            Fate::New => result.clone().map(|()| Appended::New),
        };
        let _ = req.reply.send(answer);
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
            appender: Appender::spawn(log, config.dedupe_window),
            producer: producer("ingest"),
            config: Arc::new(config.clone()),
        })
}

/// The event ids of the last `cap` facts appended or seen in the log, in a set bounded by
/// count: when full, the id remembered longest ago is forgotten first (ids are inserted once,
/// so this is also least-recently-used order). About 40 bytes per id: the default window of
/// 100 000 ids holds about 4 MB.
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

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.len()
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
            StatusCode::INTERNAL_SERVER_ERROR => "internal",
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

/// The answer to a recorded (or duplicate) delivery, serialised straight from borrowed
/// fields (no `serde_json::Value` tree per request).
#[derive(serde::Serialize)]
struct RecordedBody<'a> {
    /// The chain the delivery's first fact starts.
    correlation_id: Option<Uuid>,
    /// Present (and true) only for a redelivery that appended nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
    /// The first fact's id.
    event_id: Option<&'a Uuid>,
    /// Every fact's id.
    event_ids: &'a [Uuid],
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
    let correlation_id = events.first().map(|e| e.correlation_id);
    let body = |duplicate: bool| {
        axum::Json(RecordedBody {
            correlation_id,
            duplicate,
            event_id: ids.first(),
            event_ids: &ids,
        })
    };
    if state.appender.all_known(&ids) {
        return Ok(("duplicate", (StatusCode::OK, body(true)).into_response()));
    }
    // Encoded here, on the request's task, so the single writer only appends.
    let records = events.iter().map(to_record).collect::<Result<Vec<_>, _>>();
    let records = records.map_err(|e| {
        warn!(error = %e, "A fact does not encode.");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the delivery could not be recorded",
        )
    })?;
    // Durable before acknowledged. Ids are deterministic from the delivery id, so a
    // redelivery the writer no longer remembers is dropped by the log (embedded) or by the
    // consumers (Kafka).
    let appended = state
        .appender
        .append(ids.clone(), records)
        .await
        .map_err(|e| {
            warn!(error = %e, "Append failed.");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "log_unavailable",
                "the event log is unavailable; retry",
            )
        })?;
    if appended == Appended::Duplicate {
        return Ok(("duplicate", (StatusCode::OK, body(true)).into_response()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_stay_within_their_bound_and_forget_the_oldest() {
        let mut r = RecentIds::new(3);
        let ids: Vec<Uuid> = (0..5u128).map(Uuid::from_u128).collect();
        for id in &ids {
            r.insert(*id);
            r.insert(*id); // inserting again changes nothing
            assert!(r.len() <= 3);
        }
        assert_eq!(r.len(), 3);
        assert!(!r.contains(&ids[0]) && !r.contains(&ids[1]));
        assert!(ids[2..].iter().all(|id| r.contains(id)));
        assert_eq!(r.order.len(), 3, "the order queue is bounded too");

        let mut off = RecentIds::new(0);
        off.insert(ids[0]);
        assert!(!off.contains(&ids[0]) && off.len() == 0);
    }
}
