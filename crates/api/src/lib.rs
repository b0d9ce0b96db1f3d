//! Sentinel's REST API (axum): reads come from the projections, commands are appended to
//! the fact log as facts.
//!
//! | route | scope | answer |
//! |---|---|---|
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | open | liveness, readiness (database), Prometheus text |
//! | `GET /api/v1/openapi.json` | open | the OpenAPI 3 document of every route below |
//! | `GET /api/v1/fixes?repository=&status=&type=&since=&until=&limit=&cursor=` | read | fix summaries, newest first |
//! | `GET /api/v1/fixes/{id}` | read | one fix with its diff and validation evidence |
//! | `GET /api/v1/failures?repository=&type=&since=&until=&limit=&cursor=` | read | failed CI runs, newest first |
//! | `GET /api/v1/policy/decisions?repository=&kind=&decision=&type=&since=&until=&limit=&cursor=` | read | policy decisions, newest first |
//! | `GET /api/v1/agents`, `GET /api/v1/agents/{id}` | read | agents |
//! | `GET /api/v1/tasks/{id}` | read | one task |
//! | `POST /api/v1/agents` | admin | appends `AgentRegistered`; 202 |
//! | `POST /api/v1/agents/{id}/pause`, `…/resume` | admin | appends `AgentStatusChanged`; 202 |
//! | `POST /api/v1/agents/{id}/tasks` | write | appends `TaskQueued` for the agent; 202 |
//! | `DELETE /api/v1/tasks/{id}` | write | appends `TaskCancelled`; 202 |
//! | `GET /api/v1/reviews?status=` | read | human reviews, oldest first (see [`reviews`]) |
//! | `POST /api/v1/reviews/{id}/approve`, `…/reject` | write | appends `ReviewCompleted`; 200 |
//!
//! Listings are keyset-paginated: a full page carries the header `x-next-cursor`, passed
//! back as `?cursor=`. Commands answer `202` with the ids and `after`, the appended fact's
//! log position; any read with `?after=<position>` waits (bounded) until the projections
//! applied it — see [`consistency`] for the consistency model.
//!
//! Errors are `application/problem+json` (RFC 9457): 400 malformed ids, parameters or JSON,
//! 401 without a valid token, 403 without the scope, 404 unknown ids, 409 conflicts, 413
//! bodies over the limit, 422 invalid fields, 503 when the database or log is temporarily
//! unavailable or `?after=` timed out, 500 otherwise (details logged, not returned).
//!
//! [`router`] returns a stateless `Router` so the binary can `.merge()` it with other
//! routers (the webhook ingest, which keeps its own signature authentication). Token
//! authentication wraps every route of [`api_routes`], including routes merged into it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = sentinel_projections::Store::connect("sqlite://sentinel.db").await?;
//! store.migrate().await?;
//! let app = sentinel_api::router(sentinel_api::ApiState::new(store));
//! # let _ = app;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod auth;
mod commands;
pub mod consistency;
mod error;
mod handlers;
pub mod openapi;

use std::sync::Arc;
use std::time::Duration;
pub mod reviews;
pub mod telemetry;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware;
use axum::routing::{MethodRouter, get, post};
use sentinel_log::EventLog;
use sentinel_projections::Store;

pub use auth::{ApiConfig, ApiToken, Caller, Scope};
pub use commands::{Accepted, IDEMPOTENCY_KEY_HEADER, QueueTask, Reason, RegisterAgent};
pub use error::{ApiError, PROBLEM_CONTENT_TYPE};
pub use handlers::{FixSummary, NEXT_CURSOR_HEADER};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// This crate's error: what a request can fail with (rendered as a problem response).
pub type Error = ApiError;

/// Largest request body accepted (bytes), unless configured otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Default bound of a `?after=` wait.
pub const DEFAULT_READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// What the handlers share: the projection store, the log commands go to, the security
/// settings.
#[derive(Clone)]
pub struct ApiState {
    store: Store,
    log: Option<Arc<dyn EventLog>>,
    config: Arc<ApiConfig>,
    metrics: Option<MetricsRender>,
    projection: String,
    read_your_writes_timeout: Duration,
    max_body_bytes: usize,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("store", &self.store.backend())
            .field("log", &self.log.as_ref().map(|l| l.backend()))
            .field("config", &self.config)
            .field("projection", &self.projection)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// Read-only state over a connected (and migrated) store, without authentication:
    /// commands answer 503 until [`ApiState::with_log`].
    pub fn new(store: Store) -> Self {
        ApiState {
            store,
            log: None,
            config: Arc::new(ApiConfig::default()),
            metrics: None,
            projection: sentinel_projections::DEFAULT_PROJECTION.to_owned(),
            read_your_writes_timeout: DEFAULT_READ_YOUR_WRITES_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Commands append to this log.
    #[must_use]
    pub fn with_log(mut self, log: Arc<dyn EventLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Authentication settings.
    #[must_use]
    pub fn with_config(mut self, config: ApiConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// `/metrics` answers what this renders (Prometheus text format).
    #[must_use]
    pub fn with_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// Bound of a `?after=` wait (default 5 s).
    #[must_use]
    pub fn with_read_your_writes_timeout(mut self, timeout: Duration) -> Self {
        self.read_your_writes_timeout = timeout;
        self
    }

    /// Largest request body (default 64 KiB).
    #[must_use]
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The log commands go to.
    pub fn log(&self) -> Option<&Arc<dyn EventLog>> {
        self.log.as_ref()
    }

    /// Authentication settings.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// The projector whose checkpoint `?after=` waits for.
    pub fn projection(&self) -> &str {
        &self.projection
    }

    /// Bound of a `?after=` wait.
    pub fn read_your_writes_timeout(&self) -> Duration {
        self.read_your_writes_timeout
    }

    fn render_metrics(&self) -> String {
        self.metrics.as_ref().map(|m| m()).unwrap_or_default()
    }
}

/// The authenticated API routes (method, path template), as registered by [`api_routes`].
/// The OpenAPI test checks each is documented and that no other method is served.
pub const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/fixes"),
    ("GET", "/api/v1/fixes/{id}"),
    ("GET", "/api/v1/failures"),
    ("GET", "/api/v1/policy/decisions"),
    ("GET", "/api/v1/agents"),
    ("POST", "/api/v1/agents"),
    ("GET", "/api/v1/agents/{id}"),
    ("POST", "/api/v1/agents/{id}/tasks"),
    ("POST", "/api/v1/agents/{id}/pause"),
    ("POST", "/api/v1/agents/{id}/resume"),
    ("GET", "/api/v1/tasks/{id}"),
    ("DELETE", "/api/v1/tasks/{id}"),
    ("GET", "/api/v1/reviews"),
    ("POST", "/api/v1/reviews/{id}/approve"),
    ("POST", "/api/v1/reviews/{id}/reject"),
];

/// The open routes (no token): probes, metrics and the OpenAPI document.
pub const OPEN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
];

/// The routes that need a token (when tokens are configured). Routes merged here are
/// covered by authentication and `?after=`.
pub fn api_routes() -> Router<ApiState> {
    let routes: [(&str, MethodRouter<ApiState>); 7] = [
        ("/api/v1/fixes", get(handlers::list_fixes)),
        ("/api/v1/fixes/{id}", get(handlers::get_fix)),
        ("/api/v1/failures", get(handlers::list_failures)),
        ("/api/v1/policy/decisions", get(handlers::list_decisions)),
        (
            "/api/v1/agents",
            get(handlers::list_agents).post(commands::register_agent),
        ),
        ("/api/v1/agents/{id}", get(handlers::get_agent)),
        (
            "/api/v1/tasks/{id}",
            get(handlers::get_task).delete(commands::cancel_task),
        ),
    ];
    let mut router = Router::new();
    for (path, method_router) in routes {
        router = router.route(path, method_router);
    }
    router
        .route("/api/v1/agents/{id}/tasks", post(commands::queue_task))
        .route("/api/v1/agents/{id}/pause", post(commands::pause_agent))
        .route("/api/v1/agents/{id}/resume", post(commands::resume_agent))
        .route("/api/v1/reviews", get(reviews::list))
        .route("/api/v1/reviews/{id}/approve", post(reviews::approve))
        .route("/api/v1/reviews/{id}/reject", post(reviews::reject))
}

/// The API's routes, with their state, authentication and body limit applied.
pub fn router(state: ApiState) -> Router {
    let api = api_routes()
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            consistency::read_your_writes,
        ))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .route_layer(middleware::from_fn(telemetry::record));
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .merge(api)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Methods the OpenAPI test probes on every path.
pub const PROBED_METHODS: &[Method] = &[
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];
