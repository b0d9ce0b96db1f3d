//! `POST /webhooks/generic`.

use axum::http::StatusCode;
use sentinel_ingest::auth::sign_sha256;
use sentinel_ingest::{IngestConfig, Secret};
use serde_json::json;

use crate::common::{env, failure, send};

fn valid() -> serde_json::Value {
    json!({
        "repository": "/srv/repo", "branch": "main", "commit": "abc1234",
        "command": "black --check .", "log": "would reformat x.py"
    })
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn valid_report_is_appended_and_acknowledged() {
    let env = env(IngestConfig::default()).await;
    let (status, body) = send(&env.app, "/webhooks/generic", &[JSON], valid().to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["event_id"].is_string() && body["correlation_id"] == body["event_id"]);
    let events = env.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(json!(events[0].event_id), body["event_id"]);
    assert_eq!(events[0].subject, "/srv/repo");
    assert_eq!(failure(&events[0]).source, "generic");
}

#[tokio::test]
async fn bad_input_gets_its_status_and_appends_nothing() {
    let env = env(IngestConfig {
        body_limit: 1024,
        ..IngestConfig::default()
    })
    .await;
    let app = &env.app;
    let (s, b) = send(app, "/webhooks/generic", &[JSON], "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "malformed");
    let (s, b) = send(
        app,
        "/webhooks/generic",
        &[JSON],
        json!({"repository": "r"}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = b["fields"].to_string();
    for f in ["branch", "commit", "command", "log"] {
        assert!(fields.contains(f), "{f} not named in {fields}");
    }
    let mut v = valid();
    v["commit"] = json!("not-a-sha");
    v["occurred_at"] = json!("yesterday");
    let (s, b) = send(app, "/webhooks/generic", &[JSON], v.to_string()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["detail"]
            .as_str()
            .expect("detail")
            .contains("occurred_at")
    );
    let mut v = valid();
    v["unexpected"] = json!(1);
    let (s, _) = send(app, "/webhooks/generic", &[JSON], v.to_string()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let mut v = valid();
    v["log"] = json!("x".repeat(2048));
    let (s, b) = send(app, "/webhooks/generic", &[JSON], v.to_string()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(b["error"], "too_large", "413 has a JSON body too");
    let mut v = valid();
    v["occurred_at"] = json!("2999-01-01T00:00:00Z");
    let (s, b) = send(app, "/webhooks/generic", &[JSON], v.to_string()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["detail"].as_str().expect("detail").contains("future"));
    let (s, _) = send(
        app,
        "/webhooks/generic",
        &[("content-type", "text/plain")],
        valid().to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        env.events().await.is_empty(),
        "nothing appended for bad input"
    );
}

#[tokio::test]
async fn idempotency_key_makes_retries_append_nothing_new() {
    let env = env(IngestConfig::default()).await;
    let headers = [JSON, ("idempotency-key", "run-42")];
    let (s1, b1) = send(&env.app, "/webhooks/generic", &headers, valid().to_string()).await;
    let (s2, b2) = send(&env.app, "/webhooks/generic", &headers, valid().to_string()).await;
    assert_eq!(s1, StatusCode::ACCEPTED);
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(b2["duplicate"], true);
    assert_eq!(b1["event_id"], b2["event_id"]);
    // The same id in the body works the same way.
    let mut v = valid();
    v["delivery_id"] = json!("run-42");
    let (_, b3) = send(&env.app, "/webhooks/generic", &[JSON], v.to_string()).await;
    assert_eq!(b3["event_id"], b1["event_id"]);
    assert_eq!(env.events().await.len(), 1);
}

#[tokio::test]
async fn secrets_in_logs_are_redacted_before_they_are_stored() {
    let env = env(IngestConfig::default()).await;
    let mut v = valid();
    let token = format!("ghp_{}", "a1B2".repeat(9));
    v["log"] = json!(format!(
        "Run git clone https://bot:hunter2secret@github.com/o/r\nGITHUB_TOKEN={token}\nwould reformat x.py\n"
    ));
    let (s, _) = send(&env.app, "/webhooks/generic", &[JSON], v.to_string()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let events = env.events().await;
    let f = failure(&events[0]);
    assert!(
        !f.log.contains(&token) && !f.log.contains("hunter2secret"),
        "{}",
        f.log
    );
    assert!(
        f.log.contains("would reformat x.py"),
        "the rest of the log is intact"
    );
}

#[tokio::test]
async fn fix_branches_and_bot_authors_are_marked_for_the_loop_guard() {
    let env = env(IngestConfig::default()).await;
    let mut v = valid();
    v["branch"] = json!("sentinel/fix-1234");
    send(&env.app, "/webhooks/generic", &[JSON], v.to_string()).await;
    let mut v = valid();
    v["author_email"] = json!("patchbot@sentinel.invalid");
    send(&env.app, "/webhooks/generic", &[JSON], v.to_string()).await;
    let mut v = valid();
    v["author"] = json!("Alice");
    send(&env.app, "/webhooks/generic", &[JSON], v.to_string()).await;
    let flags: Vec<bool> = env
        .events()
        .await
        .iter()
        .map(|e| failure(e).sentinel_authored)
        .collect();
    assert_eq!(flags, [true, true, false]);
}

#[tokio::test]
async fn optional_hmac_is_enforced_when_configured() {
    let env = env(IngestConfig {
        generic_secret: Secret::new("generic-secret"),
        ..IngestConfig::default()
    })
    .await;
    let body = valid().to_string();
    let (s, _) = send(&env.app, "/webhooks/generic", &[JSON], body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "unsigned");
    let wrong = sign_sha256(b"other", body.as_bytes());
    let (s, _) = send(
        &env.app,
        "/webhooks/generic",
        &[JSON, ("x-sentinel-signature-256", &wrong)],
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "wrong key");
    let sig = sign_sha256(b"generic-secret", body.as_bytes());
    let (s, _) = send(
        &env.app,
        "/webhooks/generic",
        &[JSON, ("x-sentinel-signature-256", &sig)],
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = send(
        &env.app,
        "/webhooks/generic",
        &[JSON, ("x-hub-signature-256", &sig)],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "GitHub's header name works too");
    assert_eq!(env.events().await.len(), 2);
}
