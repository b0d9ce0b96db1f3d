//! Sentinel's REST API: JSON over HTTP (axum), reading the projections.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}` |
//! | `GET /api/v1/fixes?repository=&status=&failure_type=&limit=&cursor=` | fix summaries, newest first; header `x-next-cursor` when there may be more |
//! | `GET /api/v1/fixes/{id}` | one fix with its diff and validation evidence |
//! | `GET /api/v1/failures?repository=&failure_type=&limit=` | failed CI runs, newest first |
//! | `GET /api/v1/agents` | every agent |
//! | `GET /api/v1/agents/{id}` | one agent |
//! | `GET /api/v1/tasks/{id}` | one task |
//!
//! Errors are `application/problem+json` (RFC 9457) with `type`, `title`, `status` and
//! `detail`: 400 for malformed ids and parameters, 404 for unknown ids, 503 when the
//! database is temporarily unavailable, 500 otherwise (details logged, not returned).
//!
//! [`router`] returns a stateless `Router` so the binary can `.merge()` it with other
//! routers (the webhook ingest). It sets no fallback, for the same reason.
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

mod error;
mod handlers;
pub mod reviews;

use axum::Router;
use axum::routing::get;
use sentinel_projections::Store;

pub use error::{ApiError, PROBLEM_CONTENT_TYPE};
pub use handlers::{FixSummary, NEXT_CURSOR_HEADER};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// This crate's error: what a request can fail with (rendered as a problem response).
pub type Error = ApiError;

/// What the handlers share: the projection store.
#[derive(Debug, Clone)]
pub struct ApiState {
    store: Store,
}

impl ApiState {
    /// State over a connected (and migrated) store.
    pub fn new(store: Store) -> Self {
        ApiState { store }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The API's routes, with their state applied.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/api/v1/fixes", get(handlers::list_fixes))
        .route("/api/v1/fixes/{id}", get(handlers::get_fix))
        .route("/api/v1/failures", get(handlers::list_failures))
        .route("/api/v1/agents", get(handlers::list_agents))
        .route("/api/v1/agents/{id}", get(handlers::get_agent))
        .route("/api/v1/tasks/{id}", get(handlers::get_task))
        .with_state(state)
}
