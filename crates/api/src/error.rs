//! The API's one error type and its `application/problem+json` rendering.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::{error, warn};

/// Content type of error bodies (RFC 9457).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Why a request failed. 4xx variants say what was wrong; 5xx variants hide internals
/// (they are logged instead).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed id, parameter or cursor.
    #[error("{0}")]
    BadRequest(String),
    /// No such resource.
    #[error("no {kind} with id {id}")]
    NotFound {
        /// What was looked for (`agent`, `task`, `fix`).
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The body is well-formed JSON but its content is unacceptable.
    #[error("{0}")]
    Unprocessable(String),
    /// The request conflicts with the resource's state (cancelling a finished task).
    #[error("{0}")]
    Conflict(String),
    /// The request body was refused before reaching the handler (not JSON, too large,
    /// wrong content type): the status and message of axum's rejection.
    #[error("{1}")]
    Rejected(StatusCode, String),
    /// No valid token was presented.
    #[error("a valid API token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The token lacks the scope the route needs.
    #[error("token {token:?} lacks the {scope:?} scope this route needs")]
    Forbidden {
        /// The token's name.
        token: String,
        /// The scope needed.
        scope: &'static str,
    },
    /// The caller may not do this to this resource, whatever its token (a reviewer
    /// answering the review of a fix they triggered).
    #[error("{0}")]
    NotAllowed(String),
    /// `?after=` asked for a position the projections did not reach in time.
    #[error("the projections have not reached {after} yet; retry later")]
    NotCaughtUp {
        /// The position asked for.
        after: String,
    },
    /// The event log could not take a command.
    #[error("the event log is unavailable: {0}")]
    LogUnavailable(String),
    /// The store failed in a way worth retrying (database unavailable, lock contention).
    #[error("the projection store is temporarily unavailable: {0}")]
    Unavailable(#[source] sentinel_projections::Error),
    /// The store failed otherwise.
    #[error("internal error: {0}")]
    Internal(#[source] sentinel_projections::Error),
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::Rejected(r.status(), r.body_text())
    }
}

impl From<sentinel_projections::Error> for ApiError {
    fn from(e: sentinel_projections::Error) -> Self {
        match e {
            sentinel_projections::Error::InvalidCursor(_) => ApiError::BadRequest(e.to_string()),
            e if e.is_transient() => ApiError::Unavailable(e),
            e => ApiError::Internal(e),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Rejected(status, _) => *status,
            ApiError::Forbidden { .. } | ApiError::NotAllowed(_) => StatusCode::FORBIDDEN,
            ApiError::NotCaughtUp { .. } | ApiError::LogUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem(&self) -> Problem {
        let (kind, title, detail) = match self {
            ApiError::BadRequest(d) => {
                ("urn:sentinel:problem:bad-request", "Bad request", d.clone())
            }
            ApiError::NotFound { .. } => (
                "urn:sentinel:problem:not-found",
                "Not found",
                self.to_string(),
            ),
            ApiError::Unprocessable(d) => (
                "urn:sentinel:problem:unprocessable",
                "Unprocessable content",
                d.clone(),
            ),
            ApiError::Conflict(d) => ("urn:sentinel:problem:conflict", "Conflict", d.clone()),
            ApiError::Rejected(_, d) => (
                "urn:sentinel:problem:bad-request",
                "Bad request body",
                d.clone(),
            ),
            ApiError::Unauthorized => (
                "urn:sentinel:problem:unauthorized",
                "Unauthorized",
                self.to_string(),
            ),
            ApiError::Forbidden { .. } => (
                "urn:sentinel:problem:forbidden",
                "Forbidden",
                self.to_string(),
            ),
            ApiError::NotAllowed(d) => ("urn:sentinel:problem:forbidden", "Forbidden", d.clone()),
            ApiError::NotCaughtUp { .. } => (
                "urn:sentinel:problem:not-caught-up",
                "Projection not caught up",
                self.to_string(),
            ),
            ApiError::LogUnavailable(_) => (
                "urn:sentinel:problem:unavailable",
                "Service unavailable",
                "The event log is temporarily unavailable; retry later.".to_owned(),
            ),
            ApiError::Unavailable(_) => (
                "urn:sentinel:problem:unavailable",
                "Service unavailable",
                "The projection store is temporarily unavailable; retry later.".to_owned(),
            ),
            ApiError::Internal(_) => (
                "urn:sentinel:problem:internal",
                "Internal error",
                "The request could not be completed; the error was logged.".to_owned(),
            ),
        };
        Problem {
            kind,
            title,
            status: self.status().as_u16(),
            detail,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(source) => error!(error = %source, "API request failed."),
            ApiError::Unavailable(source) => warn!(error = %source, "API store unavailable."),
            ApiError::LogUnavailable(source) => warn!(error = %source, "API log unavailable."),
            _ => {}
        }
        let status = self.status();
        let mut response = (status, axum::Json(self.problem())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
