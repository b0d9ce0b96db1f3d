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
    commands_append_facts_that_reads_see_after_their_position,
    commands_refuse_bad_input,
    decisions_are_listed_filtered_and_paginated,
    failures_are_paginated_and_bounded_in_time,
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
    log: std::sync::Arc<sentinel_log::sqlite::SqliteLog>,
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
        let mut events: Vec<_> = chains.iter().flat_map(FixChain::events).collect();
        events.push(chains[0].action());
        testing::append(log.as_ref(), &events).await;
        Projector::new(log.clone(), db.store().clone())
            .run_once()
            .await
            .expect("project");
        Fixture {
            db,
            chains,
            log,
            _dir: dir,
        }
    }

    fn app(&self) -> Router {
        router(ApiState::new(self.db.store().clone()))
    }

    fn state(&self) -> ApiState {
        ApiState::new(self.db.store().clone()).with_log(self.log.clone())
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

// ---- commands, read-your-writes, auth, OpenAPI ----

const ADMIN: &str = "admin-secret";
const WRITER: &str = "writer-secret";
const READER: &str = "reader-secret";

fn tokens() -> sentinel_api::ApiConfig {
    let token =
        |name: &str, token: &str, scopes: Vec<sentinel_api::Scope>| sentinel_api::ApiToken {
            name: name.into(),
            token: token.into(),
            scopes,
        };
    sentinel_api::ApiConfig {
        tokens: vec![
            token("ops", ADMIN, vec![sentinel_api::Scope::Admin]),
            token("bot", WRITER, vec![sentinel_api::Scope::Write]),
            token("dash", READER, vec![sentinel_api::Scope::Read]),
        ],
    }
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_owned())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let next_cursor = response
        .headers()
        .get(NEXT_CURSOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        content_type,
        next_cursor,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

mod tokio_util_token {
    /// Cancels on drop.
    pub struct Token(pub tokio::sync::watch::Sender<bool>);
    impl Drop for Token {
        fn drop(&mut self) {
            let _ = self.0.send(true);
        }
    }
}

/// Runs the real projector in the background until the returned token is dropped.
fn run_projector(fx: &Fixture) -> tokio_util_token::Token {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let projector = Projector::with_config(
        fx.log.clone(),
        fx.db.store().clone(),
        sentinel_projections::ProjectorConfig {
            idle_sleep: std::time::Duration::from_millis(20),
            ..Default::default()
        },
    );
    tokio::spawn(async move {
        loop {
            projector.run_once().await.expect("project");
            tokio::select! {
                _ = rx.changed() => return,
                () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            }
        }
    });
    tokio_util_token::Token(tx)
}

async fn commands_append_facts_that_reads_see_after_their_position(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = router(fx.state().with_config(tokens()));
    let _projector = run_projector(&fx);

    let reply = send(
        &app,
        "POST",
        "/api/v1/agents",
        Some(ADMIN),
        Some(
            r#"{"name":"lint-bot","version":"1.2.0","capabilities":["lint"],"max_concurrency":2}"#,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let agent = reply.body["agent_id"]
        .as_str()
        .expect("agent id")
        .to_owned();
    let after = reply.body["after"].as_str().expect("after").to_owned();
    let seen = send(
        &app,
        "GET",
        &format!("/api/v1/agents/{agent}?after={after}"),
        Some(READER),
        None,
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    assert_eq!(seen.body["name"], "lint-bot");
    assert_eq!(seen.body["status"], "active");
    assert_eq!(seen.body["max_concurrency"], 2);

    let reply = send(
        &app,
        "POST",
        &format!("/api/v1/agents/{agent}/tasks"),
        Some(WRITER),
        Some(r#"{"task_type":"lint","payload":{"path":"src"},"priority":3,"repository":"org/a"}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let task = reply.body["task_id"].as_str().expect("task id").to_owned();
    let after = reply.body["after"].as_str().expect("after").to_owned();
    let seen = send(
        &app,
        "GET",
        &format!("/api/v1/tasks/{task}?after={after}"),
        Some(READER),
        None,
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    assert_eq!(seen.body["status"], "queued");
    assert_eq!(seen.body["agent_id"], agent.as_str());
    assert_eq!(seen.body["priority"], 3);
    assert_eq!(seen.body["payload"]["path"], "src");
    assert_eq!(seen.body["repository"], "org/a");

    // The same idempotency key queues the same task.
    let keyed = |key: &'static str| {
        let app = app.clone();
        let uri = format!("/api/v1/agents/{agent}/tasks");
        async move {
            let request = Request::post(uri)
                .header(header::AUTHORIZATION, format!("Bearer {WRITER}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", key)
                .body(Body::from(r#"{"task_type":"lint"}"#))
                .expect("request");
            let response = app.oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            let v: Value = serde_json::from_slice(&bytes).expect("json");
            v["task_id"].as_str().expect("task").to_owned()
        }
    };
    assert_eq!(keyed("k-1").await, keyed("k-1").await);
    assert_ne!(keyed("k-1").await, keyed("k-2").await);

    for (verb, status) in [("pause", "paused"), ("resume", "active")] {
        let reply = send(
            &app,
            "POST",
            &format!("/api/v1/agents/{agent}/{verb}"),
            Some(ADMIN),
            Some(r#"{"reason":"maintenance"}"#),
        )
        .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        let after = reply.body["after"].as_str().expect("after").to_owned();
        let seen = send(
            &app,
            "GET",
            &format!("/api/v1/agents/{agent}?after={after}"),
            Some(READER),
            None,
        )
        .await;
        assert_eq!(seen.body["status"], status, "{verb}");
    }
    // Pause without a body.
    let reply = send(
        &app,
        "POST",
        &format!("/api/v1/agents/{agent}/pause"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);

    let reply = send(
        &app,
        "DELETE",
        &format!("/api/v1/tasks/{task}"),
        Some(WRITER),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let after = reply.body["after"].as_str().expect("after").to_owned();
    let seen = send(
        &app,
        "GET",
        &format!("/api/v1/tasks/{task}?after={after}"),
        Some(READER),
        None,
    )
    .await;
    assert_eq!(seen.body["status"], "cancelled", "{}", seen.body);
    assert!(
        seen.body["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("bot"),
        "the canceller is recorded: {}",
        seen.body
    );
    let again = send(
        &app,
        "DELETE",
        &format!("/api/v1/tasks/{task}"),
        Some(WRITER),
        None,
    )
    .await;
    assert_problem(&again, StatusCode::CONFLICT);

    // The facts are in the log, produced by the API.
    let mut types = Vec::new();
    sentinel_runtime_scan(fx.log.as_ref(), &mut types).await;
    for t in [
        "agent_registered",
        "task_queued",
        "agent_status_changed",
        "task_cancelled",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} appended: {types:?}");
    }
}

async fn sentinel_runtime_scan(log: &dyn sentinel_log::EventLog, types: &mut Vec<String>) {
    let end = log
        .end_offsets(sentinel_projections::EVENTS_TOPIC)
        .await
        .expect("ends")[0];
    let records = log
        .read(
            sentinel_projections::EVENTS_TOPIC,
            0,
            0,
            usize::try_from(end).expect("end") + 1,
        )
        .await
        .expect("read");
    for r in records {
        if let Some(t) = r.header(sentinel_log::HEADER_EVENT_TYPE) {
            types.push(t.to_owned());
        }
    }
}

async fn commands_refuse_bad_input(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = router(fx.state().with_max_body_bytes(1024));
    let patchbot = PATCHBOT.to_string();
    let unknown = Uuid::from_u128(7).to_string();
    let cases: Vec<(&str, String, Option<String>, StatusCode)> = vec![
        (
            "POST",
            "/api/v1/agents".into(),
            Some("{not json".into()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/v1/agents".into(),
            Some(r#"{"name":1,"version":"1"}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v1/agents".into(),
            Some(r#"{"name":"x","version":"1","extra":1}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v1/agents".into(),
            Some(r#"{"name":"x","version":"1","max_concurrency":0}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v1/agents".into(),
            Some(r#"{"name":"","version":"1"}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v1/agents".into(),
            Some(format!(
                r#"{{"name":"{}","version":"1"}}"#,
                "x".repeat(4096)
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "POST",
            format!("/api/v1/agents/{unknown}/tasks"),
            Some(r#"{"task_type":"fix_failure"}"#.into()),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/api/v1/agents/nope/tasks".into(),
            Some(r#"{"task_type":"fix_failure"}"#.into()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("/api/v1/agents/{patchbot}/tasks"),
            Some(r#"{"task_type":"paint"}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            format!("/api/v1/agents/{patchbot}/tasks"),
            Some(r#"{"task_type":"fix_failure","payload":[1]}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            format!("/api/v1/agents/{patchbot}/tasks"),
            Some(r#"{"task_type":"fix_failure","timeout_seconds":0}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            format!("/api/v1/agents/{unknown}/pause"),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            format!("/api/v1/agents/{patchbot}/resume"),
            Some(r#"{"reason":5}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "DELETE",
            format!("/api/v1/tasks/{unknown}"),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "DELETE",
            "/api/v1/tasks/123".into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/v1/agents?after=x".into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/v1/policy/decisions?kind=maybe".into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/v1/failures?since=yesterday".into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/v1/failures?cursor=zzz".into(),
            None,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, uri, body, status) in cases {
        let reply = send(&app, method, &uri, None, body.as_deref()).await;
        assert_eq!(
            reply.status, status,
            "{method} {uri} {body:?}: {}",
            reply.body
        );
        assert_problem(&reply, status);
    }
    // A read-only API (no log) cannot take commands.
    let reply = send(
        &fx.app(),
        "POST",
        "/api/v1/agents",
        None,
        Some(r#"{"name":"x","version":"1"}"#),
    )
    .await;
    assert_problem(&reply, StatusCode::SERVICE_UNAVAILABLE);
    // `?after=` beyond what was projected times out with 503.
    let app = router(
        fx.state()
            .with_read_your_writes_timeout(std::time::Duration::from_millis(100)),
    );
    let reply = send(&app, "GET", "/api/v1/agents?after=0:999999", None, None).await;
    assert_problem(&reply, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.body["detail"]
            .as_str()
            .expect("detail")
            .contains("0:999999")
    );
}

async fn decisions_are_listed_filtered_and_paginated(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = fx.app();
    let all = get(&app, "/api/v1/policy/decisions").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    // One dispatch per chain, one action for the first.
    assert_eq!(all.body.as_array().expect("array").len(), 4, "{}", all.body);
    let action = get(&app, "/api/v1/policy/decisions?kind=action").await;
    assert_eq!(action.body.as_array().expect("array").len(), 1);
    assert_eq!(action.body[0]["kind"], "action");
    let b = get(&app, "/api/v1/policy/decisions?repository=org%2Fb").await;
    assert_eq!(b.body.as_array().expect("array").len(), 1);
    assert_eq!(
        b.body[0]["failure_id"],
        fx.chains[2].failure_id().to_string()
    );
    let lint = get(
        &app,
        "/api/v1/policy/decisions?type=linting&decision=dispatch",
    )
    .await;
    assert_eq!(
        lint.body.as_array().expect("array").len(),
        2,
        "{}",
        lint.body
    );

    let mut seen = Vec::new();
    let mut uri = "/api/v1/policy/decisions?limit=3".to_owned();
    loop {
        let page = get(&app, &uri).await;
        assert_eq!(page.status, StatusCode::OK);
        seen.extend(ids(&page.body));
        match page.next_cursor {
            Some(c) => uri = format!("/api/v1/policy/decisions?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ids(&all.body),
        "pages cover the listing once, in order"
    );
}

async fn failures_are_paginated_and_bounded_in_time(backend: Backend) {
    let fx = Fixture::new(backend).await;
    let app = fx.app();
    let page1 = get(&app, "/api/v1/failures?limit=2").await;
    assert_eq!(
        ids(&page1.body),
        [
            fx.chains[2].failure_id().to_string(),
            fx.chains[1].failure_id().to_string()
        ]
    );
    let cursor = page1.next_cursor.expect("full page has a cursor");
    let page2 = get(&app, &format!("/api/v1/failures?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&page2.body), [fx.chains[0].failure_id().to_string()]);
    assert!(page2.next_cursor.is_none());
    let since = (t0() + chrono::Duration::minutes(30)).to_rfc3339();
    let until = (t0() + chrono::Duration::minutes(90)).to_rfc3339();
    let window = get(
        &app,
        &format!(
            "/api/v1/failures?since={}&until={}",
            since.replace('+', "%2B"),
            until.replace('+', "%2B")
        ),
    )
    .await;
    assert_eq!(
        ids(&window.body),
        [fx.chains[1].failure_id().to_string()],
        "{}",
        window.body
    );
    let fixes = get(
        &app,
        &format!("/api/v1/fixes?since={}", since.replace('+', "%2B")),
    )
    .await;
    assert_eq!(
        fixes.body.as_array().expect("array").len(),
        2,
        "{}",
        fixes.body
    );
}

#[tokio::test]
async fn tokens_and_scopes_guard_every_api_route_but_probes_stay_open() {
    let store = Store::connect("sqlite::memory:").await.expect("store");
    store.migrate().await.expect("migrate");
    let state = ApiState::new(store)
        .with_config(tokens())
        .with_metrics(|| "sentinel_up 1\n".to_owned());
    let app = router(state);
    for (_, path) in sentinel_api::OPEN_ROUTES {
        let reply = send(&app, "GET", path, None, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path} is open");
    }
    let metrics = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).expect("r"))
        .await
        .expect("infallible");
    let text = metrics.into_body().collect().await.expect("b").to_bytes();
    assert_eq!(&text[..], b"sentinel_up 1\n");

    let id = Uuid::from_u128(1);
    for (method, template) in sentinel_api::API_ROUTES {
        let uri = template.replace("{id}", &id.to_string());
        let body = (*method != "GET").then_some("{}");
        let none = send(&app, method, &uri, None, body).await;
        assert_problem(&none, StatusCode::UNAUTHORIZED);
        let wrong = send(&app, method, &uri, Some("not-a-token"), body).await;
        assert_problem(&wrong, StatusCode::UNAUTHORIZED);
        let needed = sentinel_api::auth::required_scope(&method.parse().expect("method"), template);
        let reader = send(&app, method, &uri, Some(READER), body).await;
        let writer = send(&app, method, &uri, Some(WRITER), body).await;
        let admin = send(&app, method, &uri, Some(ADMIN), body).await;
        let allowed =
            |r: &Reply| r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN;
        match needed {
            sentinel_api::Scope::Read => assert!(
                allowed(&reader) && allowed(&writer) && allowed(&admin),
                "{method} {uri}"
            ),
            sentinel_api::Scope::Write => {
                assert_problem(&reader, StatusCode::FORBIDDEN);
                assert!(allowed(&writer) && allowed(&admin), "{method} {uri}");
            }
            sentinel_api::Scope::Admin => {
                assert_problem(&reader, StatusCode::FORBIDDEN);
                assert_problem(&writer, StatusCode::FORBIDDEN);
                assert!(allowed(&admin), "{method} {uri}: {}", admin.body);
            }
        }
    }
    let none = app
        .clone()
        .oneshot(
            Request::get("/api/v1/agents")
                .body(Body::empty())
                .expect("r"),
        )
        .await
        .expect("infallible");
    assert_eq!(
        none.headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_no_other_method_is_served() {
    let store = Store::connect("sqlite::memory:").await.expect("store");
    store.migrate().await.expect("migrate");
    let app = router(ApiState::new(store));
    let doc = get(&app, "/api/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(
        doc.body["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.")
    );
    let paths = doc.body["paths"].as_object().expect("paths");
    let routes: Vec<&(&str, &str)> = sentinel_api::API_ROUTES
        .iter()
        .chain(sentinel_api::OPEN_ROUTES)
        .collect();
    for (method, path) in &routes {
        let op = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"))
            [method.to_lowercase()];
        assert!(
            op.is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
        assert!(op["responses"].is_object(), "{method} {path} has responses");
    }
    // And the listed methods are all the router serves on those paths: any other is 405.
    let id = Uuid::from_u128(1).to_string();
    for (_, path) in &routes {
        let uri = path.replace("{id}", &id);
        for m in sentinel_api::PROBED_METHODS {
            let listed = routes
                .iter()
                .any(|(lm, lp)| lp == path && *lm == m.as_str());
            let reply = send(&app, m.as_str(), &uri, None, None).await;
            if listed {
                assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {path}");
                assert!(
                    !(reply.status == StatusCode::NOT_FOUND && reply.body.is_null()),
                    "{m} {path} is not routed"
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path} is served but not listed"
                );
            }
        }
    }
    // Every documented operation is a listed route (the document invents nothing).
    for (path, item) in paths {
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                assert!(
                    routes
                        .iter()
                        .any(|(lm, lp)| lp == path && lm.eq_ignore_ascii_case(m)),
                    "{m} {path} documented but not routed"
                );
            }
        }
    }
}

/// Review answers are writes: with tokens configured, the review routes (API routes like
/// the others; they fold the log) refuse a missing token (401) and a read-only token (403).
#[tokio::test]
async fn review_routes_are_behind_token_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: std::sync::Arc<dyn sentinel_log::EventLog> = std::sync::Arc::new(
        sentinel_log::sqlite::SqliteLog::open(&dir.path().join("log.db"))
            .await
            .expect("log"),
    );
    log.ensure_topic("sentinel.events", 1).await.expect("topic");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("p.db").display()))
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let app = router(ApiState::new(store).with_log(log).with_config(tokens()));
    let body = r#"{"reviewer": "alice", "comment": "ok"}"#;
    let anonymous = send(
        &app,
        "POST",
        "/api/v1/reviews/r-1/approve",
        None,
        Some(body),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let reader = send(
        &app,
        "POST",
        "/api/v1/reviews/r-1/approve",
        Some(READER),
        Some(body),
    )
    .await;
    assert_eq!(reader.status, StatusCode::FORBIDDEN);
    let listed = send(
        &app,
        "GET",
        "/api/v1/reviews?status=pending",
        Some(READER),
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let unknown = send(
        &app,
        "POST",
        "/api/v1/reviews/r-1/approve",
        Some(WRITER),
        Some(body),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{:?}", unknown.body);
}

/// The API's metric compliance: authenticated routes are counted by route template,
/// method and status — successes and refusals alike — with their durations, and the
/// route label is the template, never the id a client sent.
#[test]
fn the_api_emits_its_required_metrics() {
    use sentinel_runtime::metrics::{names, required};

    let ((), exposition) = sentinel_runtime::testing::metrics::capture(async {
        let store = Store::connect("sqlite::memory:").await.expect("store");
        store.migrate().await.expect("migrate");
        let app = router(ApiState::new(store).with_config(tokens()));
        let ok = send(&app, "GET", "/api/v1/fixes", Some(READER), None).await;
        assert_eq!(ok.status, StatusCode::OK);
        let unauthorized = send(&app, "GET", "/api/v1/fixes", None, None).await;
        assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
        for n in 1..=2_u128 {
            let uri = format!("/api/v1/tasks/{}", Uuid::from_u128(n));
            let missing = send(&app, "GET", &uri, Some(READER), None).await;
            assert_eq!(missing.status, StatusCode::NOT_FOUND);
        }
        let probe = send(&app, "GET", "/healthz", None, None).await;
        assert_eq!(probe.status, StatusCode::OK);
    });
    exposition.assert_emitted(required::API, &[("route", "/api/v1/fixes")]);
    let requests = |route, status| {
        exposition
            .value(
                names::API_REQUESTS,
                &[("route", route), ("method", "GET"), ("status", status)],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(requests("/api/v1/fixes", "200"), 1.0);
    assert_eq!(requests("/api/v1/fixes", "401"), 1.0);
    assert_eq!(requests("/api/v1/tasks/{id}", "404"), 2.0);
    assert!(
        !exposition.text().contains(&Uuid::from_u128(1).to_string()),
        "ids never become label values:\n{}",
        exposition.text()
    );
    assert!(
        exposition
            .find(names::API_REQUESTS, &[("route", "/healthz")])
            .is_empty(),
        "probes are not counted"
    );
}
