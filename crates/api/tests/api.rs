//! The API in-process (`tower::ServiceExt::oneshot`), over projections built by the real
//! projector, on both backends.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::post;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use sentinel_api::{ApiState, FixSummary, NEXT_CURSOR_HEADER, PROBLEM_CONTENT_TYPE, router};
use sentinel_events::FailureType;
use sentinel_projections::testing::{self, FixChain, PATCHBOT, TestDb};
use sentinel_projections::{Backend, Projector, Store};
use serde_json::Value;
use tower::ServiceExt;
use uuid::Uuid;

sentinel_projections::on_both_backends!(
    fixes_are_listed_filtered_and_paginated,
    fix_listing_refuses_bad_parameters,
    agents_are_listed_and_found,
    tasks_are_found,
    fixes_and_failures_are_found,
    store_failures_are_problems_without_internals,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .single()
        .expect("t0")
}

/// A projected store holding two fixes in `org/a` and one in `org/b` (newest last).
struct Fixture {
    db: TestDb,
    chains: Vec<FixChain>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = testing::sqlite_log(dir.path()).await;
        let db = TestDb::new(backend).await;
        let chains = vec![
            FixChain::new("org/a", FailureType::Formatting, "api-1", t0()),
            FixChain::new(
                "org/a",
                FailureType::Linting,
                "api-2",
                t0() + chrono::Duration::hours(1),
            ),
            FixChain::new(
                "org/b",
                FailureType::Linting,
                "api-3",
                t0() + chrono::Duration::hours(2),
            ),
        ];
        let events: Vec<_> = chains.iter().flat_map(FixChain::events).collect();
        testing::append(log.as_ref(), &events).await;
        Projector::new(log, db.store().clone())
            .run_once()
            .await
            .expect("project");
        Fixture {
            db,
            chains,
            _dir: dir,
        }
    }

    fn app(&self) -> Router {
        router(ApiState::new(self.db.store().clone()))
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    next_cursor: Option<String>,
    body: Value,
}

async fn get(app: &Router, uri: &str) -> Reply {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let next_cursor = header(NEXT_CURSOR_HEADER);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        content_type,
        next_cursor,
        body,
    }
}

fn assert_problem(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.content_type, PROBLEM_CONTENT_TYPE);
    assert_eq!(reply.body["status"], status.as_u16());
    assert!(
        reply.body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:sentinel:problem:"))
    );
    assert!(reply.body["title"].is_string());
    assert!(reply.body["detail"].is_string());
}

fn ids(body: &Value) -> Vec<String> {
    body.as_array()
        .expect("array")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn healthz_answers_ok() {
    let store = Store::connect("sqlite::memory:").await.expect("store");
    let reply = get(&router(ApiState::new(store)), "/healthz").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, serde_json::json!({ "status": "ok" }));
}

#[tokio::test]
async fn router_merges_with_other_routers() {
    let store = Store::connect("sqlite::memory:").await.expect("store");
    store.migrate().await.expect("migrate");
    let app = Router::new()
        .route("/webhooks/generic", post(|| async { StatusCode::ACCEPTED }))
        .merge(router(ApiState::new(store)));
    let hook = app
        .clone()
        .oneshot(
            Request::post("/webhooks/generic")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(hook.status(), StatusCode::ACCEPTED);
    assert_eq!(
        get(&app, "/api/v1/agents").await.body,
        serde_json::json!([])
    );
}

async fn fixes_are_listed_filtered_and_paginated(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = fx.app();
    let [c1, c2, c3] = [&fx.chains[0], &fx.chains[1], &fx.chains[2]];

    let all = get(&app, "/api/v1/fixes").await;
    assert_eq!(all.status, StatusCode::OK);
    assert!(all.content_type.starts_with("application/json"));
    assert_eq!(ids(&all.body), [c3, c2, c1].map(|c| c.task_id.to_string()));
    assert_eq!(all.next_cursor, None, "a partial page has no next cursor");

    let repo_a = get(&app, "/api/v1/fixes?repository=org%2Fa").await;
    assert_eq!(ids(&repo_a.body), [c2, c1].map(|c| c.task_id.to_string()));
    let first = &repo_a.body[0];
    let keys: Vec<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "branch",
            "confidence",
            "created_at",
            "failure_type",
            "id",
            "pr_url",
            "repository",
            "status"
        ]
    );
    let summary: FixSummary = serde_json::from_value(first.clone()).expect("summary");
    assert_eq!(summary.repository, "org/a");
    assert_eq!(summary.failure_type.as_deref(), Some("linting"));
    assert_eq!(summary.status, "pr_opened");
    assert_eq!(summary.confidence, Some(0.92));
    assert_eq!(
        summary.branch,
        Some(format!("sentinel/fix-{}", &c2.task_id.to_string()[..8]))
    );
    assert_eq!(summary.pr_url, Some(c2.pr_url()));
    assert_eq!(
        summary.created_at,
        t0() + chrono::Duration::hours(1) + chrono::Duration::seconds(10)
    );
    assert_eq!(first["created_at"], "2024-05-01T13:00:10Z");

    let linting = get(&app, "/api/v1/fixes?failure_type=linting&status=pr_opened").await;
    assert_eq!(ids(&linting.body), [c3, c2].map(|c| c.task_id.to_string()));
    let none = get(&app, "/api/v1/fixes?repository=org%2Fnone").await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.body, serde_json::json!([]));

    // Pages of two, following the cursor.
    let page1 = get(&app, "/api/v1/fixes?limit=2").await;
    assert_eq!(ids(&page1.body), [c3, c2].map(|c| c.task_id.to_string()));
    let cursor = page1.next_cursor.expect("a full page has a next cursor");
    let page2 = get(&app, &format!("/api/v1/fixes?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&page2.body), [c1.task_id.to_string()]);
    assert_eq!(page2.next_cursor, None);
}

async fn fix_listing_refuses_bad_parameters(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = fx.app();
    for uri in [
        "/api/v1/fixes?limit=0",
        "/api/v1/fixes?limit=abc",
        "/api/v1/fixes?limit=1000000",
        "/api/v1/fixes?cursor=garbage",
        "/api/v1/fixes?repo=org%2Fa",
        "/api/v1/failures?limit=-1",
    ] {
        let reply = get(&app, uri).await;
        assert_problem(&reply, StatusCode::BAD_REQUEST);
    }
    let reply = get(&app, "/api/v1/fixes?limit=0").await;
    assert!(
        reply.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("limit"))
    );
}

async fn agents_are_listed_and_found(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = fx.app();

    let list = get(&app, "/api/v1/agents").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
    let agent = get(&app, &format!("/api/v1/agents/{PATCHBOT}")).await;
    assert_eq!(agent.status, StatusCode::OK);
    assert_eq!(agent.body, list.body[0]);
    assert_eq!(agent.body["id"], PATCHBOT.to_string());
    assert_eq!(agent.body["name"], "patchbot");
    assert_eq!(agent.body["status"], "active");
    assert_eq!(
        agent.body["capabilities"],
        serde_json::json!(["fix_failure"])
    );
    assert_eq!(agent.body["max_concurrency"], 4);
    assert_eq!(agent.body["health_score"], 1.0);

    let unknown = Uuid::new_v4();
    let reply = get(&app, &format!("/api/v1/agents/{unknown}")).await;
    assert_problem(&reply, StatusCode::NOT_FOUND);
    assert!(
        reply.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&unknown.to_string()))
    );
    assert_problem(
        &get(&app, "/api/v1/agents/not-a-uuid").await,
        StatusCode::BAD_REQUEST,
    );
}

async fn tasks_are_found(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = fx.app();
    let chain = &fx.chains[0];

    let task = get(&app, &format!("/api/v1/tasks/{}", chain.task_id)).await;
    assert_eq!(task.status, StatusCode::OK);
    assert_eq!(task.body["id"], chain.task_id.to_string());
    assert_eq!(task.body["agent_id"], PATCHBOT.to_string());
    assert_eq!(task.body["task_type"], "fix_failure");
    assert_eq!(task.body["status"], "completed");
    assert_eq!(task.body["attempts"], 1);
    assert_eq!(task.body["payload"]["repository"], "org/a");
    assert_eq!(task.body["result"]["outcome"], "completed");
    assert_eq!(task.body["failure_id"], chain.failure_id().to_string());

    assert_problem(
        &get(&app, &format!("/api/v1/tasks/{}", Uuid::new_v4())).await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(
        &get(&app, "/api/v1/tasks/12345").await,
        StatusCode::BAD_REQUEST,
    );
}

async fn fixes_and_failures_are_found(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = fx.app();
    let chain = &fx.chains[1];

    let fix = get(&app, &format!("/api/v1/fixes/{}", chain.task_id)).await;
    assert_eq!(fix.status, StatusCode::OK);
    assert!(
        fix.body["diff"]
            .as_str()
            .is_some_and(|d| d.contains("-import os"))
    );
    assert_eq!(fix.body["validation"]["passed"], true);
    assert_problem(
        &get(&app, &format!("/api/v1/fixes/{}", Uuid::new_v4())).await,
        StatusCode::NOT_FOUND,
    );
    assert_problem(&get(&app, "/api/v1/fixes/x").await, StatusCode::BAD_REQUEST);

    let failures = get(&app, "/api/v1/failures?repository=org%2Fb").await;
    assert_eq!(failures.status, StatusCode::OK);
    assert_eq!(ids(&failures.body), [fx.chains[2].failure_id().to_string()]);
    assert_eq!(failures.body[0]["failure_type"], "linting");
}

async fn store_failures_are_problems_without_internals(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = fx.app();
    fx.db.store().close().await;
    let reply = get(&app, "/api/v1/agents").await;
    assert!(reply.status.is_server_error(), "{}", reply.status);
    assert_problem(&reply, reply.status);
    let detail = reply.body["detail"]
        .as_str()
        .expect("detail")
        .to_lowercase();
    assert!(
        !detail.contains("pool") && !detail.contains("sqlx"),
        "leaks internals: {detail}"
    );
}
