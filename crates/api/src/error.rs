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
    /// The store failed in a way worth retrying (database unavailable, lock contention).
    #[error("the projection store is temporarily unavailable: {0}")]
    Unavailable(#[source] sentinel_projections::Error),
    /// The store failed otherwise.
    #[error("internal error: {0}")]
    Internal(#[source] sentinel_projections::Error),
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
            _ => {}
        }
        let status = self.status();
        let mut response = (status, axum::Json(self.problem())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
