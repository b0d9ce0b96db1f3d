//! `POST /webhooks/jenkins` and `/webhooks/jenkins/{token}`.

use axum::http::StatusCode;
use base64::Engine;
use serde_json::json;

use crate::common::{JENKINS_TOKEN, config, env, failure, fixture, fixture_json, send};

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn finalized_failure_is_recorded_with_its_log_redacted() {
    let env = env(config()).await;
    let path = format!("/webhooks/jenkins/{JENKINS_TOKEN}");
    let (s, b) = send(
        &env.app,
        &path,
        &[JSON],
        fixture("jenkins/finalized.failure.json"),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let events = env.events().await;
    let f = failure(&events[0]);
    assert_eq!(f.source, "jenkins");
    assert_eq!(f.repository, "https://github.com/evgeny-goldin/asgard.git");
    assert_eq!(f.branch, "master", "origin/ is stripped");
    assert_eq!(f.commit, "c6d86dc654b12425e706bcf951adfe5a8627a517");
    assert_eq!(
        f.run_url.as_deref(),
        Some("http://localhost:8080/job/asgard/18/")
    );
    assert_eq!(f.job_name.as_deref(), Some("asgard"));
    assert!(f.log.contains("would reformat app/main.py"), "{}", f.log);
    assert!(
        !f.log.contains("ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5"),
        "secrets are redacted before storing: {}",
        f.log
    );
    assert!(f.log_size_bytes > 0);
    assert_eq!(
        events[0].occurred_at.timestamp_millis(),
        1_444_321_236_000 + 42_000,
        "event time is the build's end"
    );
    // The same (full_url, number, phase) again, even via another receiver: nothing new.
    let restarted = env.restarted(&config());
    let (s, _) = send(
        &restarted,
        &path,
        &[JSON],
        fixture("jenkins/finalized.failure.json"),
    )
    .await;
    assert!(s.is_success());
    assert_eq!(env.events().await.len(), 1);
}

#[tokio::test]
async fn basic_auth_works_and_wrong_tokens_are_401() {
    let env = env(config()).await;
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let body = fixture("jenkins/finalized.failure.json");
    let good = basic("jenkins", JENKINS_TOKEN);
    let (s, b) = send(
        &env.app,
        "/webhooks/jenkins",
        &[JSON, ("authorization", &good)],
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let bad = basic("jenkins", "nope");
    for headers in [
        vec![JSON, ("authorization", bad.as_str())],
        vec![JSON, ("authorization", "Bearer jenkins-hook-token")],
        vec![JSON],
    ] {
        let (s, b) = send(&env.app, "/webhooks/jenkins", &headers, body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(b["error"], "unauthorized");
    }
    let (s, _) = send(
        &env.app,
        "/webhooks/jenkins/wrong-token",
        &[JSON],
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(env.events().await.len(), 1);

    // Without a configured token Jenkins is refused.
    let env = crate::common::env(sentinel_ingest::IngestConfig::default()).await;
    let (s, _) = send(&env.app, "/webhooks/jenkins/anything", &[JSON], body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn other_phases_and_results_are_ignored_and_bad_bodies_refused() {
    let env = env(config()).await;
    let path = format!("/webhooks/jenkins/{JENKINS_TOKEN}");
    for (phase, status) in [
        ("COMPLETED", "FAILURE"),
        ("STARTED", ""),
        ("FINALIZED", "SUCCESS"),
    ] {
        let mut v = fixture_json("jenkins/finalized.failure.json");
        v["build"]["phase"] = json!(phase);
        v["build"]["status"] = json!(status);
        let (s, b) = send(&env.app, &path, &[JSON], v.to_string()).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        assert!(b["ignored"].is_string(), "{phase} {status}: {b}");
    }
    let (s, _) = send(&env.app, &path, &[JSON], "nope").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let mut v = fixture_json("jenkins/finalized.failure.json");
    v["build"]["scm"] = json!(null);
    let (s, b) = send(&env.app, &path, &[JSON], v.to_string()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["fields"].to_string().contains("build.scm.url"), "{b}");
    let (s, _) = send(
        &env.app,
        &path,
        &[("content-type", "application/xml")],
        "<build/>",
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(env.events().await.is_empty());
}

#[tokio::test]
async fn loop_guard_applies_to_jenkins_failures() {
    let env = env(config()).await;
    let path = format!("/webhooks/jenkins/{JENKINS_TOKEN}");
    let mut v = fixture_json("jenkins/finalized.failure.json");
    v["build"]["scm"]["branch"] = json!("origin/sentinel/fix-0123456789ab");
    send(&env.app, &path, &[JSON], v.to_string()).await;
    assert!(failure(&env.events().await[0]).sentinel_authored);
}
