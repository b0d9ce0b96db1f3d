//! Human review of fixes (DESIGN §5): list reviews, approve or reject one.
//!
//! | route | scope | answer |
//! |---|---|---|
//! | `GET /api/v1/reviews?status=pending\|approved\|rejected\|escalated` | read | reviews, oldest first (`escalated` = pending and escalated) |
//! | `POST /api/v1/reviews/{id}/approve` `{"reviewer", "comment"?}` | write | appends `ReviewCompleted` (approved); 200 with the review |
//! | `POST /api/v1/reviews/{id}/reject` `{"reviewer", "comment"?}` | write | appends `ReviewCompleted` (rejected); 200 with the review |
//!
//! The routes are part of [`api_routes`](crate::api_routes) (token check, OpenAPI
//! document). Reads fold the event log directly (the review facts are few, and approving
//! must see the log's latest state to refuse a second answer), so they answer 503 when the
//! process has no log. Commands are facts: the completion is caused by the
//! `ReviewRequested` fact with a fixed index, so its event id is deterministic and a
//! retried request cannot record a second answer. 404 for an unknown review, 409 for one
//! already answered, 403 when the reviewer is the identity that triggered the fix, 400 for
//! a missing or oversized reviewer or comment.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use sentinel_events::facts::ReviewCompleted;
use sentinel_events::{Event, Fact, redact};
use sentinel_log::EventLog;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiError, ApiState};

/// Longest reviewer identity accepted.
pub const MAX_REVIEWER_LEN: usize = 200;
/// Longest comment accepted.
pub const MAX_COMMENT_LEN: usize = 10_000;

/// A review as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Review {
    /// The review id.
    pub id: String,
    /// The fix task.
    pub task_id: String,
    /// Tenant.
    pub tenant: String,
    /// Repository.
    pub repository: String,
    /// Why review is needed.
    pub reason: String,
    /// Machine-readable reason, when recorded.
    pub reason_code: Option<String>,
    /// The decision that asked for it.
    pub decision_event_id: String,
    /// The identity that triggered the fix (it may not review it).
    pub triggered_by: Option<String>,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    /// Whether it waited past the escalation timeout.
    pub escalated: bool,
    /// When it was requested (event time).
    pub requested_at: DateTime<Utc>,
    /// Who answered.
    pub reviewer: Option<String>,
    /// Their comment (secrets redacted).
    pub comment: Option<String>,
    /// When it was answered.
    pub completed_at: Option<DateTime<Utc>>,
}

/// The body of approve and reject.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewAnswer {
    /// Who reviews (1 to 200 characters); may not be the identity that triggered the fix.
    pub reviewer: String,
    /// A comment (at most 10,000 characters; secrets are redacted before it is recorded).
    #[serde(default)]
    pub comment: Option<String>,
}

/// Query parameters of `GET /api/v1/reviews`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReviewsQuery {
    /// `pending`, `approved`, `rejected` or `escalated` (pending and past the escalation
    /// timeout); all when absent.
    status: Option<String>,
    /// Accepted for symmetry with the other reads (reviews are read from the log itself).
    #[allow(dead_code)]
    after: Option<String>,
}

fn log_of(state: &ApiState) -> Result<&dyn EventLog, ApiError> {
    state
        .log()
        .map(|l| l.as_ref())
        .ok_or_else(|| ApiError::LogUnavailable("this process has no event log".into()))
}

/// Folds the review facts of the log: reviews by id, with the request event of each.
async fn fold(log: &dyn EventLog) -> Result<BTreeMap<String, (Review, Event)>, ApiError> {
    let mut reviews: BTreeMap<String, (Review, Event)> = BTreeMap::new();
    sentinel_runtime::scan_topic(log, sentinel_runtime::EVENTS_TOPIC, |_, decoded| {
        let Ok(e) = decoded else { return true };
        match &e.fact {
            Fact::ReviewRequested(r) => {
                reviews.entry(r.review_id.clone()).or_insert_with(|| {
                    (
                        Review {
                            id: r.review_id.clone(),
                            task_id: r.task_id.clone(),
                            tenant: e.tenant.clone(),
                            repository: r.repository.clone().unwrap_or_else(|| e.subject.clone()),
                            reason: r.reason.clone(),
                            reason_code: r.reason_code.clone(),
                            decision_event_id: r.decision_event_id.clone(),
                            triggered_by: r.triggered_by.clone(),
                            status: "pending".into(),
                            escalated: false,
                            requested_at: e.occurred_at,
                            reviewer: None,
                            comment: None,
                            completed_at: None,
                        },
                        e.clone(),
                    )
                });
            }
            Fact::ReviewCompleted(c) => {
                if let Some((r, _)) = reviews.get_mut(&c.review_id)
                    && r.status == "pending"
                {
                    r.status = if c.approved { "approved" } else { "rejected" }.into();
                    r.reviewer = Some(c.reviewer.clone());
                    r.comment.clone_from(&c.comment);
                    r.completed_at = Some(e.occurred_at);
                }
            }
            Fact::ReviewEscalated(x) => {
                if let Some((r, _)) = reviews.get_mut(&x.review_id) {
                    r.escalated = true;
                }
            }
            _ => {}
        }
        true
    })
    .await
    .map_err(|e| ApiError::LogUnavailable(e.to_string()))?;
    Ok(reviews)
}

/// `GET /api/v1/reviews`.
#[utoipa::path(get, path = "/api/v1/reviews", tag = "reviews", params(ReviewsQuery),
    responses(
        (status = 200, description = "Reviews, oldest first", body = [Review]),
        (status = 400, description = "Unknown status or parameter"),
        (status = 401, description = "No valid token"),
        (status = 503, description = "The event log is unavailable"),
    ),
    security(("bearer" = ["read"])))]
pub(crate) async fn list(
    State(state): State<ApiState>,
    q: Result<Query<ReviewsQuery>, QueryRejection>,
) -> Result<Json<Vec<Review>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = q.status.as_deref();
    if let Some(s) = filter
        && !["pending", "approved", "rejected", "escalated"].contains(&s)
    {
        return Err(ApiError::BadRequest(format!(
            "status must be pending, approved, rejected or escalated, not {s:?}"
        )));
    }
    let mut out: Vec<Review> = fold(log_of(&state)?)
        .await?
        .into_values()
        .map(|(r, _)| r)
        .filter(|r| match filter {
            None => true,
            Some("escalated") => r.status == "pending" && r.escalated,
            Some(s) => r.status == s,
        })
        .collect();
    out.sort_by(|a, b| (a.requested_at, &a.id).cmp(&(b.requested_at, &b.id)));
    Ok(Json(out))
}

/// `POST /api/v1/reviews/{id}/approve`.
#[utoipa::path(post, path = "/api/v1/reviews/{id}/approve", tag = "reviews",
    params(("id" = String, Path, description = "The review (the requesting decision's event id)")),
    request_body = ReviewAnswer,
    responses(
        (status = 200, description = "ReviewCompleted (approved) appended; the answered review", body = Review),
        (status = 400, description = "Malformed JSON, missing or oversized reviewer or comment"),
        (status = 401, description = "No valid token"),
        (status = 403, description = "Token lacks the write scope, or the reviewer triggered the fix"),
        (status = 404, description = "Unknown review"),
        (status = 409, description = "Already answered"),
        (status = 503, description = "The event log is unavailable"),
    ),
    security(("bearer" = ["write"])))]
pub(crate) async fn approve(
    state: State<ApiState>,
    id: Path<String>,
    body: Result<Json<ReviewAnswer>, JsonRejection>,
) -> Result<Json<Review>, ApiError> {
    answer(state, id, body, true).await
}

/// `POST /api/v1/reviews/{id}/reject`.
#[utoipa::path(post, path = "/api/v1/reviews/{id}/reject", tag = "reviews",
    params(("id" = String, Path, description = "The review (the requesting decision's event id)")),
    request_body = ReviewAnswer,
    responses(
        (status = 200, description = "ReviewCompleted (rejected) appended; the answered review", body = Review),
        (status = 400, description = "Malformed JSON, missing or oversized reviewer or comment"),
        (status = 401, description = "No valid token"),
        (status = 403, description = "Token lacks the write scope, or the reviewer triggered the fix"),
        (status = 404, description = "Unknown review"),
        (status = 409, description = "Already answered"),
        (status = 503, description = "The event log is unavailable"),
    ),
    security(("bearer" = ["write"])))]
pub(crate) async fn reject(
    state: State<ApiState>,
    id: Path<String>,
    body: Result<Json<ReviewAnswer>, JsonRejection>,
) -> Result<Json<Review>, ApiError> {
    answer(state, id, body, false).await
}

async fn answer(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<ReviewAnswer>, JsonRejection>,
    approved: bool,
) -> Result<Json<Review>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let reviewer = body.reviewer.trim().to_owned();
    if reviewer.is_empty() || reviewer.len() > MAX_REVIEWER_LEN {
        return Err(ApiError::BadRequest(format!(
            "reviewer must be 1 to {MAX_REVIEWER_LEN} characters"
        )));
    }
    if body
        .comment
        .as_ref()
        .is_some_and(|c| c.len() > MAX_COMMENT_LEN)
    {
        return Err(ApiError::BadRequest(format!(
            "comment must be at most {MAX_COMMENT_LEN} characters"
        )));
    }
    let log = log_of(&state)?;
    let reviews = fold(log).await?;
    let Some((review, requested)) = reviews.get(&id) else {
        return Err(ApiError::NotFound { kind: "review", id });
    };
    if review.status != "pending" {
        return Err(ApiError::Conflict(format!(
            "review {id} was already {} by {}",
            review.status,
            review.reviewer.as_deref().unwrap_or("someone")
        )));
    }
    if review
        .triggered_by
        .as_deref()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(&reviewer))
    {
        return Err(ApiError::NotAllowed(format!(
            "{reviewer} triggered this fix and may not review it"
        )));
    }
    let comment = body.comment.map(|c| redact::redact(&c));
    let completed = requested.caused(
        ReviewCompleted {
            review_id: id.clone(),
            approved,
            reviewer: reviewer.clone(),
            comment: comment.clone(),
        },
        &sentinel_runtime::producer("api"),
        0,
        Some(sentinel_events::envelope::now()),
    );
    sentinel_runtime::append_events(
        log,
        sentinel_runtime::EVENTS_TOPIC,
        std::slice::from_ref(&completed),
    )
    .await
    .map_err(|e| ApiError::LogUnavailable(e.to_string()))?;
    let mut review = review.clone();
    review.status = if approved { "approved" } else { "rejected" }.into();
    review.reviewer = Some(reviewer);
    review.comment = comment;
    review.completed_at = Some(completed.occurred_at);
    Ok(Json(review))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use sentinel_events::facts::{ReviewEscalated, ReviewRequested};
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn log_with_review(dir: &std::path::Path) -> Arc<dyn EventLog> {
        let log = sentinel_log::sqlite::SqliteLog::open(&dir.join("log.db"))
            .await
            .expect("log");
        sentinel_log::topology::Topology::builtin()
            .expect("topology")
            .apply_embedded(&log)
            .await
            .expect("topics");
        let t0 = DateTime::from_timestamp(1_767_225_600, 0).expect("t0");
        let request = |id: &str| {
            Event::origin(
                ReviewRequested {
                    review_id: id.into(),
                    task_id: format!("task-{id}"),
                    decision_event_id: "d".into(),
                    reason: "the fix changes protected paths: .github/workflows/ci.yml".into(),
                    triggered_by: Some("alice".into()),
                    repository: Some("org/app".into()),
                    reason_code: Some("protected_paths".into()),
                    policy_version: Some("sha256:x".into()),
                },
                Some(id),
                "acme",
                "org/app",
                t0,
                "policy@test",
            )
        };
        let r2 = request("r2");
        let escalated = r2.caused(
            ReviewEscalated {
                review_id: "r2".into(),
                waited_hours: 25.0,
            },
            "policy@test",
            100,
            None,
        );
        sentinel_runtime::append_events(
            &log,
            sentinel_runtime::EVENTS_TOPIC,
            &[request("r1"), r2, escalated],
        )
        .await
        .expect("append");
        Arc::new(log)
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
        body: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.unwrap_or("").to_owned()))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Approve, reject and list against a real embedded log; the completion is a fact.
    #[tokio::test]
    async fn reviews_are_listed_answered_once_and_not_by_the_trigger() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log_with_review(dir.path()).await;
        let store = sentinel_projections::Store::connect("sqlite::memory:")
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let app = crate::router(ApiState::new(store.clone()).with_log(log.clone()));
        // Without a log the routes exist but cannot answer.
        let readonly = crate::router(ApiState::new(store));
        let (s, _) = call(&readonly, "GET", "/api/v1/reviews", None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);

        let (s, v) = call(&app, "GET", "/api/v1/reviews?status=pending", None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v.as_array().expect("list").len(), 2);
        let (_, v) = call(&app, "GET", "/api/v1/reviews?status=escalated", None).await;
        assert_eq!(v[0]["id"], "r2");
        let (s, _) = call(&app, "GET", "/api/v1/reviews?status=bogus", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);

        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/reviews/r1/approve",
            Some(r#"{"reviewer":"Alice"}"#),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        let (s, _) = call(
            &app,
            "POST",
            "/api/v1/reviews/r1/approve",
            Some(r#"{"reviewer":""}"#),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = call(
            &app,
            "POST",
            "/api/v1/reviews/nope/approve",
            Some(r#"{"reviewer":"bob"}"#),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/reviews/r1/approve",
            Some(r#"{"reviewer":"bob","comment":"lgtm, token=ghp_abcdefghijklmnopqrstuvwxyz0123456789"}"#),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "approved");
        assert!(
            !v["comment"]
                .as_str()
                .expect("comment")
                .contains("ghp_abcdef")
        );
        let (s, _) = call(
            &app,
            "POST",
            "/api/v1/reviews/r1/reject",
            Some(r#"{"reviewer":"carol"}"#),
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/reviews/r2/reject",
            Some(r#"{"reviewer":"carol","comment":"no"}"#),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");

        let (_, v) = call(&app, "GET", "/api/v1/reviews?status=pending", None).await;
        assert_eq!(v.as_array().expect("list").len(), 0);
        // The answers are facts in the log.
        let mut answers = Vec::new();
        sentinel_runtime::scan_topic(log.as_ref(), sentinel_runtime::EVENTS_TOPIC, |_, e| {
            if let Ok(Event {
                fact: Fact::ReviewCompleted(c),
                ..
            }) = e
            {
                answers.push((c.review_id, c.approved, c.reviewer));
            }
            true
        })
        .await
        .expect("scan");
        assert_eq!(
            answers,
            vec![
                ("r1".into(), true, "bob".into()),
                ("r2".into(), false, "carol".into())
            ]
        );
    }
}
