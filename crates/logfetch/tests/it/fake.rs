//! Local stand-ins for GitHub's, GitLab's and Jenkins' REST APIs, answering with the
//! documented response shapes, and recording what they were asked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{Duration, Utc};
use octocrab::jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::{Value, json};

pub const APP_ID: u64 = 424242;
pub const INSTALLATION_ID: u64 = 1357;
pub const STATIC_TOKEN: &str = "ghp_FakeTokenForLocalServer0123456789AB";
pub const GITLAB_TOKEN: &str = "glpat-FakeLocalGitLabToken1234";

pub fn private_key() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-app-key.pem"
    ))
    .expect("test key")
}

fn public_key() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-app-key.pub.pem"
    ))
    .expect("test public key")
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// Binds an axum router on 127.0.0.1:0; returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    format!("http://{addr}")
}

/// A GitHub job in the documented shape of `GET /repos/{o}/{r}/actions/jobs/{id}`.
pub fn job_json(
    id: u64,
    run_id: u64,
    name: &str,
    conclusion: &str,
    steps: &[(&str, &str)],
) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .enumerate()
        .map(|(i, (n, c))| {
            json!({
                "name": n, "status": "completed", "conclusion": c, "number": i + 1,
                "started_at": "2024-05-02T10:00:04Z", "completed_at": "2024-05-02T10:00:07Z"
            })
        })
        .collect();
    json!({
        "id": id,
        "run_id": run_id,
        "workflow_name": "CI",
        "head_branch": "main",
        "run_url": format!("https://api.github.com/repos/octo-org/app/actions/runs/{run_id}"),
        "run_attempt": 1,
        "node_id": "MDEyOldvcmtmbG93IEpvYjM5OTQ0NDQ5Ng==",
        "head_sha": "4f2c1e9a0b3d5c7e9f1a2b3c4d5e6f708192a3b4",
        "url": format!("https://api.github.com/repos/octo-org/app/actions/jobs/{id}"),
        "html_url": format!("https://github.com/octo-org/app/actions/runs/{run_id}/job/{id}"),
        "status": "completed",
        "conclusion": conclusion,
        "created_at": "2024-05-02T10:00:00Z",
        "started_at": "2024-05-02T10:00:01Z",
        "completed_at": "2024-05-02T10:00:08Z",
        "name": name,
        "steps": steps,
        "check_run_url": format!("https://api.github.com/repos/octo-org/app/check-runs/{id}"),
        "labels": ["ubuntu-latest"],
        "runner_id": 2,
        "runner_name": "GitHub Actions 2",
        "runner_group_id": 2,
        "runner_group_name": "GitHub Actions"
    })
}

#[derive(Default)]
pub struct GitHub {
    /// `METHOD path?query` of every API request.
    pub requests: Mutex<Vec<String>>,
    /// Installation tokens minted.
    pub minted: AtomicUsize,
    /// Lifetime of minted tokens, seconds.
    pub token_ttl: AtomicI64,
    /// Tokens the API accepts.
    pub tokens: Mutex<Vec<String>>,
    /// run id → jobs.
    pub runs: Mutex<HashMap<u64, Vec<Value>>>,
    /// job id → log text.
    pub logs: Mutex<HashMap<u64, String>>,
    /// Base URL of the blob server job logs redirect to.
    pub blob_base: Mutex<String>,
    /// Whether the blob server ever received credentials.
    pub blob_saw_auth: AtomicBool,
    /// Deliveries of the app hook, newest first.
    pub deliveries: Mutex<Vec<Value>>,
    /// Delivery ids redelivery was requested for.
    pub redelivered: Mutex<Vec<u64>>,
    /// Answer every API request with this status instead (0 = off).
    pub fail_with: AtomicUsize,
}

type Shared = Arc<GitHub>;

fn record(s: &GitHub, method: &str, uri: &axum::http::Uri) {
    s.requests.lock().expect("lock").push(format!(
        "{method} {}",
        uri.path_and_query().map_or("", |p| p.as_str())
    ));
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

/// A valid JWT signed by the test App's key, with `iss` = the app id.
fn app_jwt_ok(headers: &HeaderMap) -> bool {
    let Some(jwt) = bearer(headers) else {
        return false;
    };
    let key = DecodingKey::from_rsa_pem(public_key().as_bytes()).expect("public key");
    let mut v = Validation::new(Algorithm::RS256);
    // GitHub App JWTs carry `iss` as a number, which the library's own check rejects:
    // it is compared below.
    v.set_required_spec_claims(&["exp"]);
    match decode::<Value>(&jwt, &key, &v) {
        Ok(data) => {
            data.claims["iss"] == json!(APP_ID) || data.claims["iss"] == json!(APP_ID.to_string())
        }
        Err(e) => {
            eprintln!("JWT refused: {e}");
            false
        }
    }
}

fn token_ok(s: &GitHub, headers: &HeaderMap) -> bool {
    bearer(headers).is_some_and(|t| s.tokens.lock().expect("lock").contains(&t))
}

fn failing(s: &GitHub) -> Option<Response> {
    let code = s.fail_with.load(Ordering::SeqCst);
    (code != 0).then(|| {
        (
            StatusCode::from_u16(code as u16).expect("status"),
            Json(json!({"message": "Server Error"})),
        )
            .into_response()
    })
}

async fn repo_installation(
    State(s): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path((owner, _repo)): Path<(String, String)>,
) -> Response {
    record(&s, "GET", &uri);
    if !app_jwt_ok(&headers) {
        return unauthorized();
    }
    Json(json!({
        "id": INSTALLATION_ID,
        "account": {"login": owner, "id": 1, "type": "Organization"},
        "repository_selection": "all",
        "access_tokens_url": format!("https://api.github.com/app/installations/{INSTALLATION_ID}/access_tokens"),
        "repositories_url": "https://api.github.com/installation/repositories",
        "app_id": APP_ID,
        "target_id": 1,
        "target_type": "Organization",
        "permissions": {"actions": "read", "metadata": "read"},
        "events": ["workflow_run", "workflow_job"],
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z"
    }))
    .into_response()
}

async fn access_tokens(
    State(s): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    record(&s, "POST", &uri);
    if !app_jwt_ok(&headers) || id != INSTALLATION_ID {
        return unauthorized();
    }
    let n = s.minted.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("ghs_LocalInstallationToken{n:012}abcdefgh");
    s.tokens.lock().expect("lock").push(token.clone());
    let expires = Utc::now() + Duration::seconds(s.token_ttl.load(Ordering::SeqCst));
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "permissions": {"actions": "read", "metadata": "read"},
            "repository_selection": "selected"
        })),
    )
        .into_response()
}

async fn run_jobs(
    State(s): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path((_o, _r, run_id)): Path<(String, String, u64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    record(&s, "GET", &uri);
    if let Some(r) = failing(&s) {
        return r;
    }
    if !token_ok(&s, &headers) {
        return unauthorized();
    }
    let runs = s.runs.lock().expect("lock");
    let Some(jobs) = runs.get(&run_id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    };
    let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let slice: Vec<Value> = jobs
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    Json(json!({"total_count": jobs.len(), "jobs": slice})).into_response()
}

async fn one_job(
    State(s): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path((_o, _r, job_id)): Path<(String, String, u64)>,
) -> Response {
    record(&s, "GET", &uri);
    if !token_ok(&s, &headers) {
        return unauthorized();
    }
    let runs = s.runs.lock().expect("lock");
    match runs.values().flatten().find(|j| j["id"] == json!(job_id)) {
        Some(j) => Json(j.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
    }
}

async fn job_logs(
    State(s): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path((_o, _r, job_id)): Path<(String, String, u64)>,
) -> Response {
    record(&s, "GET", &uri);
    if !token_ok(&s, &headers) {
        return unauthorized();
    }
    if !s.logs.lock().expect("lock").contains_key(&job_id) {
        return (
            StatusCode::GONE,
            Json(json!({"message": "Logs have expired"})),
        )
            .into_response();
    }
    let blob = s.blob_base.lock().expect("lock").clone();
    (
        StatusCode::FOUND,
        [(
            header::LOCATION,
            format!("{blob}/logs/{job_id}?sv=2021-08-06&sig=FakeSignature"),
        )],
    )
        .into_response()
}

async fn blob(State(s): State<Shared>, headers: HeaderMap, Path(job_id): Path<u64>) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        s.blob_saw_auth.store(true, Ordering::SeqCst);
    }
    match s.logs.lock().expect("lock").get(&job_id) {
        Some(l) => ([(header::CONTENT_TYPE, "text/plain")], l.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn deliveries(
    State(s): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    record(&s, "GET", &uri);
    if !app_jwt_ok(&headers) {
        return unauthorized();
    }
    let all = s.deliveries.lock().expect("lock").clone();
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .min(2);
    // Cursor = index of the next item, as an opaque string.
    let from: usize = q
        .get("cursor")
        .and_then(|c| c.strip_prefix("v1_"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = all.iter().skip(from).take(per_page).cloned().collect();
    let mut resp = Json(page).into_response();
    if from + per_page < all.len() {
        let link = format!(
            "<https://api.github.com/app/hook/deliveries?per_page={per_page}&cursor=v1_{}>; rel=\"next\"",
            from + per_page
        );
        resp.headers_mut()
            .insert(header::LINK, link.parse().expect("header"));
    }
    resp
}

async fn redeliver(
    State(s): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    record(&s, "POST", &uri);
    if !app_jwt_ok(&headers) {
        return unauthorized();
    }
    s.redelivered.lock().expect("lock").push(id);
    (StatusCode::ACCEPTED, Json(json!({}))).into_response()
}

/// Starts the fake GitHub API and its blob store; returns the API base URL.
pub async fn github(state: Shared) -> String {
    let blob_router = Router::new()
        .route("/logs/{job_id}", get(blob))
        .with_state(state.clone());
    *state.blob_base.lock().expect("lock") = serve(blob_router).await;
    let api = Router::new()
        .route("/repos/{owner}/{repo}/installation", get(repo_installation))
        .route("/app/installations/{id}/access_tokens", post(access_tokens))
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
            get(run_jobs),
        )
        .route("/repos/{owner}/{repo}/actions/jobs/{job_id}", get(one_job))
        .route(
            "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs",
            get(job_logs),
        )
        .route("/app/hook/deliveries", get(deliveries))
        .route("/app/hook/deliveries/{id}/attempts", post(redeliver))
        .with_state(state);
    serve(api).await
}

#[derive(Default)]
pub struct GitLab {
    pub requests: Mutex<Vec<String>>,
    /// (project path, pipeline id) → jobs.
    pub pipelines: Mutex<HashMap<(String, u64), Vec<Value>>>,
    /// job id → trace.
    pub traces: Mutex<HashMap<u64, String>>,
}

pub fn gitlab_job(id: u64, name: &str, stage: &str, status: &str) -> Value {
    json!({
        "id": id, "name": name, "stage": stage, "status": status,
        "ref": "main", "tag": false, "coverage": null, "allow_failure": false,
        "created_at": "2024-03-26T14:39:00.000Z", "started_at": "2024-03-26T14:39:10.000Z",
        "finished_at": "2024-03-26T14:39:15.000Z", "duration": 5.0, "queued_duration": 0.5,
        "failure_reason": if status == "failed" { json!("script_failure") } else { Value::Null },
        "web_url": format!("https://gitlab.example/grp/proj/-/jobs/{id}"),
        "pipeline": {"id": 9, "project_id": 42, "ref": "main", "sha": "4f2c1e9a", "status": "failed"},
        "user": {"id": 1, "username": "dev"}
    })
}

fn gitlab_auth(headers: &HeaderMap) -> bool {
    headers
        .get("PRIVATE-TOKEN")
        .is_some_and(|v| v.as_bytes() == GITLAB_TOKEN.as_bytes())
}

async fn gl_pipeline_jobs(
    State(s): State<Arc<GitLab>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path((project, pipeline)): Path<(String, u64)>,
) -> Response {
    record_gl(&s, &uri);
    if !gitlab_auth(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "401 Unauthorized"})),
        )
            .into_response();
    }
    let only_failed = uri.query().unwrap_or("").contains("scope%5B%5D=failed")
        || uri.query().unwrap_or("").contains("scope[]=failed");
    let p = s.pipelines.lock().expect("lock");
    match p.get(&(project, pipeline)) {
        Some(jobs) => Json(
            jobs.iter()
                .filter(|j| !only_failed || j["status"] == "failed")
                .cloned()
                .collect::<Vec<_>>(),
        )
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "404 Not found"})),
        )
            .into_response(),
    }
}

fn record_gl(s: &GitLab, uri: &axum::http::Uri) {
    s.requests
        .lock()
        .expect("lock")
        .push(uri.path_and_query().map_or("", |p| p.as_str()).to_owned());
}

async fn gl_job(
    State(s): State<Arc<GitLab>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path((_project, job)): Path<(String, u64)>,
) -> Response {
    record_gl(&s, &uri);
    if !gitlab_auth(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let p = s.pipelines.lock().expect("lock");
    match p.values().flatten().find(|j| j["id"] == json!(job)) {
        Some(j) => Json(j.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "404 Not found"})),
        )
            .into_response(),
    }
}

async fn gl_trace(
    State(s): State<Arc<GitLab>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path((_project, job)): Path<(String, u64)>,
) -> Response {
    record_gl(&s, &uri);
    if !gitlab_auth(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match s.traces.lock().expect("lock").get(&job) {
        Some(t) => ([(header::CONTENT_TYPE, "text/plain")], t.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "404 Not found"})),
        )
            .into_response(),
    }
}

/// Starts the fake GitLab API; returns the `/api/v4` base URL.
pub async fn gitlab(state: Arc<GitLab>) -> String {
    let api = Router::new()
        .route(
            "/api/v4/projects/{project}/pipelines/{pipeline}/jobs",
            get(gl_pipeline_jobs),
        )
        .route("/api/v4/projects/{project}/jobs/{job}", get(gl_job))
        .route("/api/v4/projects/{project}/jobs/{job}/trace", get(gl_trace))
        .with_state(state);
    format!("{}/api/v4", serve(api).await)
}

/// Starts a fake Jenkins serving one build's `consoleText` (Basic auth `bot:jenkins-api-token-1`).
pub async fn jenkins(console: String) -> String {
    let r = Router::new().route(
        "/job/app/12/consoleText",
        get(move |headers: HeaderMap| {
            let console = console.clone();
            async move {
                // "bot:jenkins-api-token-1"
                let ok = headers
                    .get(header::AUTHORIZATION)
                    .is_some_and(|v| v.as_bytes() == b"Basic Ym90OmplbmtpbnMtYXBpLXRva2VuLTE=");
                if ok {
                    ([(header::CONTENT_TYPE, "text/plain")], console).into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }
        }),
    );
    serve(r).await
}
