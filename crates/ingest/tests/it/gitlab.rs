//! `POST /webhooks/gitlab`.

use axum::Router;
use axum::http::StatusCode;
use serde_json::json;

use crate::common::{GITLAB_TOKEN, config, env, failure, fixture, fixture_json, forge, send};

async fn hook(
    app: &Router,
    event: &str,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-gitlab-event", event),
        ("x-gitlab-token", GITLAB_TOKEN),
    ];
    headers.extend_from_slice(extra);
    send(app, "/webhooks/gitlab", &headers, body).await
}

#[tokio::test]
async fn failed_merge_request_pipeline_records_the_failure_and_the_pr_event() {
    let env = env(config()).await;
    let uuid = [(
        "x-gitlab-event-uuid",
        "13792a34-cac6-4fda-95a8-c58e00a3954e",
    )];
    let (s, b) = hook(
        &env.app,
        "Pipeline Hook",
        &uuid,
        fixture("gitlab/pipeline.failed.json"),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    assert_eq!(b["event_ids"].as_array().expect("ids").len(), 2);
    let events = env.events().await;
    assert_eq!(events.len(), 2);
    let mr = forge(&events[0]);
    assert_eq!(mr.event, "pipeline");
    assert_eq!(mr.repository, "gitlab-org/gitlab-test");
    assert_eq!(mr.pr_number, Some(1));
    assert_eq!(mr.conclusion.as_deref(), Some("failed"));
    let f = failure(&events[1]);
    assert_eq!(f.source, "gitlab");
    assert_eq!(
        f.repository,
        "http://192.168.64.1:3005/gitlab-org/gitlab-test.git"
    );
    assert_eq!(f.branch, "master");
    assert_eq!(f.commit, "bcbb5ec396a2c0f828686f14fac9b80b780504f2");
    assert_eq!(
        f.job_name.as_deref(),
        Some("test-image"),
        "only the failed build"
    );
    assert_eq!(
        f.run_url.as_deref(),
        Some("http://example.com/gitlab-org/gitlab-test/-/pipelines/31")
    );
    assert_eq!(f.author.as_deref(), Some("User <user@gitlab.com>"));
    assert_eq!(
        events[1].occurred_at.to_rfc3339(),
        "2016-08-12T15:26:29+00:00",
        "GitLab's time format is understood"
    );
    // Redelivery with the same event UUID appends nothing.
    let (s, b) = hook(
        &env.app,
        "Pipeline Hook",
        &uuid,
        fixture("gitlab/pipeline.failed.json"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["duplicate"], true);
    assert_eq!(env.events().await.len(), 2);
}

#[tokio::test]
async fn idempotency_key_wins_over_the_event_uuid() {
    let env = env(config()).await;
    let body = fixture("gitlab/job.failed.json");
    let uuid = ("x-gitlab-event-uuid", "same-uuid");
    hook(
        &env.app,
        "Job Hook",
        &[uuid, ("idempotency-key", "k1")],
        body.clone(),
    )
    .await;
    hook(
        &env.app,
        "Job Hook",
        &[uuid, ("idempotency-key", "k2")],
        body.clone(),
    )
    .await;
    assert_eq!(
        env.events().await.len(),
        2,
        "different keys, two deliveries"
    );
    let restarted = env.restarted(&config());
    hook(
        &restarted,
        "Job Hook",
        &[uuid, ("idempotency-key", "k1")],
        body.clone(),
    )
    .await;
    assert_eq!(env.events().await.len(), 2, "a retried key appends nothing");
    // Without any key, the job's own identity deduplicates.
    hook(&restarted, "Job Hook", &[], body.clone()).await;
    hook(&env.app, "Job Hook", &[], body).await;
    assert_eq!(env.events().await.len(), 3);
}

#[tokio::test]
async fn failed_job_is_recorded() {
    let env = env(config()).await;
    let (s, b) = hook(&env.app, "Job Hook", &[], fixture("gitlab/job.failed.json")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let events = env.events().await;
    let f = failure(&events[0]);
    assert_eq!(f.job_name.as_deref(), Some("test / test"));
    assert_eq!(f.branch, "gitlab-script-trigger");
    assert_eq!(f.commit, "2293ada6b400935a1378653304eaf6221e0fdb8f");
    assert_eq!(
        f.run_url.as_deref(),
        Some("http://192.168.64.1:3005/gitlab-org/gitlab-test/-/jobs/1977")
    );
    assert_eq!(f.author.as_deref(), Some("User <user@gitlab.com>"));
}

#[tokio::test]
async fn successful_allowed_to_fail_and_other_hooks_are_ignored() {
    let env = env(config()).await;
    let mut v = fixture_json("gitlab/job.failed.json");
    v["build_allow_failure"] = json!(true);
    let (s, b) = hook(&env.app, "Job Hook", &[], v.to_string().into_bytes()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].as_str().expect("reason").contains("allowed"));
    let mut v = fixture_json("gitlab/job.failed.json");
    v["build_status"] = json!("success");
    let (s, b) = hook(&env.app, "Job Hook", &[], v.to_string().into_bytes()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].is_string());
    let mut v = fixture_json("gitlab/pipeline.failed.json");
    v["object_attributes"]["status"] = json!("running");
    v["merge_request"] = json!(null);
    let (s, b) = hook(&env.app, "Pipeline Hook", &[], v.to_string().into_bytes()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].as_str().expect("reason").contains("running"));
    let (s, b) = hook(&env.app, "Push Hook", &[], b"{}".to_vec()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].as_str().expect("reason").contains("Push Hook"));
    assert!(env.events().await.is_empty());
}

#[tokio::test]
async fn merge_request_hook_is_recorded_for_the_tracker() {
    let env = env(config()).await;
    let (s, b) = hook(
        &env.app,
        "Merge Request Hook",
        &[],
        fixture("gitlab/merge_request.merged.json"),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let events = env.events().await;
    let mr = forge(&events[0]);
    assert_eq!(mr.event, "merge_request");
    assert_eq!(mr.action.as_deref(), Some("merge"));
    assert_eq!(mr.repository, "gitlabhq/gitlab-test");
    assert_eq!(mr.pr_number, Some(1));
    assert_eq!(mr.merged, Some(true));
    assert_eq!(mr.head_branch.as_deref(), Some("sentinel/fix-0123456789ab"));
    assert_eq!(mr.actor.as_deref(), Some("root"));
}

#[tokio::test]
async fn wrong_or_missing_token_is_401_and_bad_bodies_are_refused() {
    let env = env(config()).await;
    let body = fixture("gitlab/job.failed.json");
    for token in [
        None,
        Some("wrong"),
        Some("gitlab-hook-toke"),
        Some("gitlab-hook-token2"),
    ] {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-gitlab-event", "Job Hook"),
        ];
        if let Some(t) = token {
            headers.push(("x-gitlab-token", t));
        }
        let (s, b) = send(&env.app, "/webhooks/gitlab", &headers, body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(b["error"], "unauthorized");
    }
    let (s, _) = hook(&env.app, "Job Hook", &[], b"[1,2".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The event header and the body disagree.
    let (s, _) = hook(&env.app, "Pipeline Hook", &[], body.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let mut v = fixture_json("gitlab/job.failed.json");
    v["sha"] = json!("not a sha");
    let (s, b) = hook(&env.app, "Job Hook", &[], v.to_string().into_bytes()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _) = send(
        &env.app,
        "/webhooks/gitlab",
        &[
            ("content-type", "text/plain"),
            ("x-gitlab-event", "Job Hook"),
            ("x-gitlab-token", GITLAB_TOKEN),
        ],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(env.events().await.is_empty());
}

#[tokio::test]
async fn loop_guard_applies_to_gitlab_failures() {
    let env = env(config()).await;
    let mut v = fixture_json("gitlab/job.failed.json");
    v["commit"]["author_email"] = json!("patchbot@sentinel.invalid");
    hook(&env.app, "Job Hook", &[], v.to_string().into_bytes()).await;
    let mut v = fixture_json("gitlab/pipeline.failed.json");
    v["object_attributes"]["ref"] = json!("sentinel/fix-00ff00ff00ff");
    hook(&env.app, "Pipeline Hook", &[], v.to_string().into_bytes()).await;
    let events = env.events().await;
    let failures: Vec<_> = events
        .iter()
        .filter(|e| e.event_type() == "ci_run_failed")
        .collect();
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|e| failure(e).sentinel_authored));
}
