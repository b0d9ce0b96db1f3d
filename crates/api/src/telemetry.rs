//! Request metrics of the API: every authenticated route's requests by route template,
//! method and status, and their durations.
//!
//! The `route` label is the matched path template (`/api/v1/tasks/{id}`), never the
//! request path, so label values stay a closed set however clients spell ids; `status` is
//! the numeric HTTP status. Requests refused by authentication (401/403) and by the
//! read-your-writes wait (503) are counted too, because the layer wraps both.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use sentinel_runtime::metrics::names;

/// Middleware (a `route_layer`): records [`names::API_REQUESTS`] and
/// [`names::API_REQUEST_DURATION`] for each request of a matched route.
pub async fn record(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        names::API_REQUEST_DURATION,
        "route" => route.clone(),
        "method" => method.clone(),
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        names::API_REQUESTS,
        "route" => route,
        "method" => method,
        "status" => status,
    )
    .increment(1);
    response
}
