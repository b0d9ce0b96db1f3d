//! `POST /webhooks/github`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use sentinel_ingest::auth::sign_sha256;
use sentinel_ingest::{DEFAULT_BODY_LIMIT, IngestConfig};
use serde_json::json;

use crate::common::{
    Env, GITHUB_SECRET, SlowSeed, config, env, failure, fixture, fixture_json, forge, send,
};

async fn deliver(
    app: &Router,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> (StatusCode, serde_json::Value) {
    let sig = sign_sha256(GITHUB_SECRET.as_bytes(), body);
    send(
        app,
        "/webhooks/github",
        &[
            ("content-type", "application/json"),
            ("x-github-event", event),
            ("x-github-delivery", delivery),
            ("x-hub-signature-256", &sig),
        ],
        body.to_vec(),
    )
    .await
}

#[tokio::test]
async fn workflow_run_failure_is_recorded_once_per_delivery() {
    let env = env(config()).await;
    let body = fixture("github/workflow_run.completed.failure.json");
    let delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let (s, b) = deliver(&env.app, "workflow_run", delivery, &body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let events = env.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(b["event_id"], json!(events[0].event_id));
    assert_eq!(b["event_ids"], json!([events[0].event_id]));
    assert_eq!(b["correlation_id"], json!(events[0].correlation_id));
    assert!(b.get("duplicate").is_none(), "{b}");
    let f = failure(&events[0]);
    assert_eq!(f.source, "github");
    assert_eq!(f.repository, "https://github.com/octo-org/octo-repo.git");
    assert_eq!(events[0].subject, f.repository);
    assert_eq!(f.branch, "main");
    assert_eq!(f.commit, "acb5820ced9479c074f688cc328bf03f341a511d");
    assert_eq!(
        f.run_url.as_deref(),
        Some("https://github.com/octo-org/octo-repo/actions/runs/30433642")
    );
    assert_eq!(f.job_name.as_deref(), Some("Build"));
    assert_eq!(f.author.as_deref(), Some("Octo Cat <octocat@github.com>"));
    assert_eq!(
        f.delivery_id.as_deref(),
        Some(&*format!("github/{delivery}"))
    );
    assert!(!f.sentinel_authored);
    assert_eq!(
        events[0].occurred_at.to_rfc3339(),
        "2020-01-22T19:33:08+00:00",
        "event time is the run's"
    );

    // GitHub redelivers with the same delivery id: nothing new is appended.
    let (s, b2) = deliver(&env.app, "workflow_run", delivery, &body).await;
    assert_eq!(s, StatusCode::OK, "{b2}");
    assert_eq!(b2["duplicate"], true);
    assert_eq!(b2["event_id"], b["event_id"]);
    // Also after a restart: the receiver seeds its memory from the log's tail.
    let restarted = env.restarted(&config());
    let (s, b3) = deliver(&restarted, "workflow_run", delivery, &body).await;
    assert_eq!(s, StatusCode::OK, "{b3}");
    assert_eq!(b3["duplicate"], true);
    assert_eq!(b3["event_id"], b["event_id"]);
    assert_eq!(env.events().await.len(), 1);

    // A different delivery of the same payload is a new fact.
    let (s, _) = deliver(&env.app, "workflow_run", "another-delivery", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(env.events().await.len(), 2);
}

/// The same delivery arriving twice at once (GitHub retrying while the first attempt is
/// still being appended) is appended once: one answer is 202, the other a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redeliveries_are_appended_once() {
    let env = env(config()).await;
    let body = fixture("github/workflow_run.completed.failure.json");
    for round in 0..20 {
        let delivery = format!("concurrent-{round}");
        let (a, b) = tokio::join!(
            deliver(&env.app, "workflow_run", &delivery, &body),
            deliver(&env.app, "workflow_run", &delivery, &body),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::ACCEPTED],
            "{a:?} {b:?}"
        );
        assert_eq!(a.1["event_id"], b.1["event_id"]);
    }
    assert_eq!(env.events().await.len(), 20);
}

/// The receiver's memory of delivery ids is bounded by `dedupe_window`, also when seeded
/// from the log after a restart; beyond it the embedded log's unique event ids still keep
/// one fact per delivery.
#[tokio::test]
async fn dedupe_memory_is_bounded_and_the_log_stays_the_guarantee() {
    let small = IngestConfig {
        dedupe_window: 2,
        ..config()
    };
    let env = env(small.clone()).await;
    let body = fixture("github/workflow_run.completed.failure.json");
    for d in ["w-1", "w-2", "w-3"] {
        let (s, _) = deliver(&env.app, "workflow_run", d, &body).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    // w-1 fell out of the window of two: it reaches the log, which keeps one copy.
    let (s, _) = deliver(&env.app, "workflow_run", "w-1", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(env.events().await.len(), 3);
    // A restarted receiver remembers the log's last two facts (w-2 and w-3), not w-1.
    let restarted = env.restarted(&small);
    let (s, b) = deliver(&restarted, "workflow_run", "w-3", &body).await;
    assert_eq!((s, &b["duplicate"]), (StatusCode::OK, &json!(true)), "{b}");
    let (s, _) = deliver(&restarted, "workflow_run", "w-1", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(env.events().await.len(), 3);
}

/// A redelivery arriving right after a restart, while the receiver is still loading the
/// log's recent event ids, waits for them and is answered as a duplicate (on a log that
/// does not deduplicate by itself, such as Kafka, it would otherwise be appended twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_right_after_a_restart_waits_for_the_seeding() {
    let env = env(config()).await;
    let body = fixture("github/workflow_run.completed.failure.json");
    for i in 0..50 {
        let (s, _) = deliver(&env.app, "workflow_run", &format!("before-{i}"), &body).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let slow = Arc::new(SlowSeed {
        inner: env.log.clone(),
        delay: Some(Duration::from_millis(600)),
    });
    let restarted = sentinel_ingest::router(slow, &config());
    let started = Instant::now();
    let (s, b) = deliver(&restarted, "workflow_run", "before-49", &body).await;
    assert_eq!((s, &b["duplicate"]), (StatusCode::OK, &json!(true)), "{b}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "answered before the seeding finished"
    );
    let (s, b) = deliver(&restarted, "workflow_run", "before-0", &body).await;
    assert_eq!((s, &b["duplicate"]), (StatusCode::OK, &json!(true)), "{b}");
    assert_eq!(env.events().await.len(), 50);
}

/// A log that never answers the seeding query delays the first append by the bounded wait
/// (2 s) only; deliveries are then appended (and the log's unique ids still keep one copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeding_that_never_ends_delays_appends_by_a_bounded_wait() {
    let env = env(config()).await;
    let body = fixture("github/workflow_run.completed.failure.json");
    let stuck = Arc::new(SlowSeed {
        inner: env.log.clone(),
        delay: None,
    });
    let restarted = sentinel_ingest::router(stuck, &config());
    let started = Instant::now();
    let (s, b) = tokio::time::timeout(
        Duration::from_secs(10),
        deliver(&restarted, "workflow_run", "stuck-1", &body),
    )
    .await
    .expect("the append waits for the seeding for a bounded time");
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(5)).contains(&waited),
        "waited {waited:?}"
    );
    // Later deliveries do not wait again; the receiver's own memory works as usual.
    let started = Instant::now();
    let (s, b) = deliver(&restarted, "workflow_run", "stuck-1", &body).await;
    assert_eq!((s, &b["duplicate"]), (StatusCode::OK, &json!(true)), "{b}");
    let (s, _) = deliver(&restarted, "workflow_run", "stuck-2", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(env.events().await.len(), 2);
}

#[tokio::test]
async fn workflow_job_failure_names_the_job() {
    let env = env(config()).await;
    let body = fixture("github/workflow_job.completed.failure.json");
    let (s, b) = deliver(&env.app, "workflow_job", "d1", &body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let events = env.events().await;
    let f = failure(&events[0]);
    assert_eq!(f.job_name.as_deref(), Some("Build / Test workflow"));
    assert_eq!(f.commit, "e3103f8eb03e1ad7f2331c5446b23c070fc54055");
    assert_eq!(
        f.run_url.as_deref(),
        Some("https://github.com/octo-org/example-workflow/runs/2832853555")
    );
}

#[tokio::test]
async fn other_conclusions_actions_and_events_are_ignored_with_a_reason() {
    let env = env(config()).await;
    let mut v = fixture_json("github/workflow_run.completed.failure.json");
    v["workflow_run"]["conclusion"] = json!("success");
    let (s, b) = deliver(&env.app, "workflow_run", "a", v.to_string().as_bytes()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(
        b["ignored"].as_str().expect("reason").contains("success"),
        "{b}"
    );
    v["action"] = json!("requested");
    let (s, b) = deliver(&env.app, "workflow_run", "b", v.to_string().as_bytes()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].as_str().expect("reason").contains("requested"));
    let (s, b) = deliver(&env.app, "push", "c", &fixture("github/push.json")).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert!(b["ignored"].as_str().expect("reason").contains("push"));
    assert!(env.events().await.is_empty());
}

#[tokio::test]
async fn ping_answers_200() {
    let env = env(config()).await;
    let (s, b) = deliver(&env.app, "ping", "p", &fixture("github/ping.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["pong"], true);
    assert!(env.events().await.is_empty());
}

#[tokio::test]
async fn pull_request_events_are_recorded_for_the_tracker() {
    let env = env(config()).await;
    for (event, file) in [
        ("pull_request", "github/pull_request.closed.json"),
        ("check_run", "github/check_run.completed.json"),
        ("check_suite", "github/check_suite.completed.json"),
        (
            "pull_request_review",
            "github/pull_request_review.submitted.json",
        ),
    ] {
        let (s, b) = deliver(&env.app, event, &format!("d-{event}"), &fixture(file)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{event}: {b}");
    }
    let events = env.events().await;
    assert_eq!(events.len(), 4);
    let pr = forge(&events[0]);
    assert_eq!(pr.event, "pull_request");
    assert_eq!(pr.action.as_deref(), Some("closed"));
    assert_eq!(pr.repository, "octo-org/octo-repo");
    assert_eq!(pr.pr_number, Some(2));
    assert_eq!(pr.merged, Some(true));
    assert_eq!(
        pr.merge_commit.as_deref(),
        Some("c4295bd74fb0f4fda03689c3df3f2803b658fd85")
    );
    assert_eq!(pr.head_branch.as_deref(), Some("sentinel/fix-0123456789ab"));
    assert_eq!(pr.actor.as_deref(), Some("octocat"));
    assert_eq!(pr.delivery_id.as_deref(), Some("d-pull_request"));
    let run = forge(&events[1]);
    assert_eq!(run.pr_number, Some(2));
    assert_eq!(run.conclusion.as_deref(), Some("success"));
    assert_eq!(
        run.head_branch.as_deref(),
        Some("sentinel/fix-0123456789ab")
    );
    let suite = forge(&events[2]);
    assert_eq!(suite.conclusion.as_deref(), Some("failure"));
    assert_eq!(suite.pr_number, Some(2));
    let review = forge(&events[3]);
    assert_eq!(review.conclusion.as_deref(), Some("approved"));
    assert_eq!(review.pr_number, Some(2));
}

#[tokio::test]
async fn loop_guard_marks_sentinels_own_branches_and_commits() {
    let env = env(config()).await;
    let mut v = fixture_json("github/workflow_run.completed.failure.json");
    v["workflow_run"]["head_branch"] = json!("sentinel/fix-0123456789ab");
    deliver(&env.app, "workflow_run", "g1", v.to_string().as_bytes()).await;
    let mut v = fixture_json("github/workflow_run.completed.failure.json");
    v["workflow_run"]["head_commit"]["author"] =
        json!({"name": "Sentinel PatchBot", "email": "patchbot@sentinel.invalid"});
    deliver(&env.app, "workflow_run", "g2", v.to_string().as_bytes()).await;
    let events = env.events().await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| failure(e).sentinel_authored));

    // A configured bot identity is honoured.
    let custom = IngestConfig {
        bot: sentinel_ingest::BotIdentity {
            name: "ci-fixer".into(),
            email: "fixer@example.com".into(),
        },
        ..config()
    };
    let env = crate::common::env(custom).await;
    let mut v = fixture_json("github/workflow_run.completed.failure.json");
    v["workflow_run"]["head_commit"]["author"] =
        json!({"name": "Someone", "email": "fixer@example.com"});
    deliver(&env.app, "workflow_run", "g3", v.to_string().as_bytes()).await;
    assert!(failure(&env.events().await[0]).sentinel_authored);
}

async fn assert_nothing_appended(env: &Env) {
    assert!(env.events().await.is_empty(), "nothing appended");
}

#[tokio::test]
async fn unauthenticated_deliveries_get_401_and_append_nothing() {
    let env = env(config()).await;
    let body = fixture("github/workflow_run.completed.failure.json");
    let headers = |sig: &'static str| {
        vec![
            ("content-type", "application/json"),
            ("x-github-event", "workflow_run"),
            ("x-github-delivery", "x"),
            ("x-hub-signature-256", sig),
        ]
    };
    // Signed with another secret.
    let wrong: &'static str = Box::leak(sign_sha256(b"not the secret", &body).into_boxed_str());
    let (s, b) = send(&env.app, "/webhooks/github", &headers(wrong), body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"], "unauthorized");
    // Signature of a different body (tampered payload).
    let other: &'static str =
        Box::leak(sign_sha256(GITHUB_SECRET.as_bytes(), b"{}").into_boxed_str());
    let (s, _) = send(&env.app, "/webhooks/github", &headers(other), body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // No signature.
    let (s, _) = send(
        &env.app,
        "/webhooks/github",
        &[
            ("content-type", "application/json"),
            ("x-github-event", "workflow_run"),
            ("x-github-delivery", "x"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // SHA-1 signatures (X-Hub-Signature) are not accepted.
    let (s, _) = send(
        &env.app,
        "/webhooks/github",
        &headers("sha1=0123"),
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_nothing_appended(&env).await;

    // Without a configured secret the endpoint refuses even a "signed" body.
    let env = crate::common::env(IngestConfig::default()).await;
    let sig: &'static str = Box::leak(sign_sha256(b"", &body).into_boxed_str());
    let (s, b) = send(&env.app, "/webhooks/github", &headers(sig), body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["detail"].as_str().expect("detail").contains("no secret"));
    assert_nothing_appended(&env).await;
}

#[tokio::test]
async fn malformed_oversized_and_wrong_type_deliveries_are_refused() {
    let env = env(IngestConfig {
        body_limit: 64 * 1024,
        ..config()
    })
    .await;
    // Malformed JSON (correctly signed).
    let (s, b) = deliver(&env.app, "workflow_run", "m", b"{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"], "malformed");
    // JSON of the wrong shape.
    let (s, _) = deliver(&env.app, "workflow_run", "m", br#"{"action": 5}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A failure missing fields a fact needs.
    let mut v = fixture_json("github/workflow_run.completed.failure.json");
    v["workflow_run"]["head_sha"] = json!(null);
    let (s, b) = deliver(&env.app, "workflow_run", "m", v.to_string().as_bytes()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["fields"].to_string().contains("head_sha"), "{b}");
    // Missing delivery id.
    let body = fixture("github/workflow_run.completed.failure.json");
    let sig = sign_sha256(GITHUB_SECRET.as_bytes(), &body);
    let (s, b) = send(
        &env.app,
        "/webhooks/github",
        &[
            ("content-type", "application/json"),
            ("x-github-event", "workflow_run"),
            ("x-hub-signature-256", &sig),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["detail"]
            .as_str()
            .expect("d")
            .contains("x-github-delivery")
    );
    // Form-encoded webhooks are not supported.
    let (s, b) = send(
        &env.app,
        "/webhooks/github",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-github-event", "workflow_run"),
            ("x-github-delivery", "f"),
            ("x-hub-signature-256", &sig),
        ],
        body,
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(b["error"], "unsupported_media_type");
    // Over the limit.
    let mut v = fixture_json("github/workflow_run.completed.failure.json");
    v["padding"] = json!("x".repeat(70 * 1024));
    let (s, b) = deliver(&env.app, "workflow_run", "big", v.to_string().as_bytes()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(b["error"], "too_large");
    assert_nothing_appended(&env).await;
}

#[tokio::test]
async fn default_limit_accepts_large_payloads() {
    let env = env(config()).await;
    assert_eq!(DEFAULT_BODY_LIMIT, 25 * 1024 * 1024);
    let mut v = fixture_json("github/workflow_run.completed.failure.json");
    v["padding"] = json!("x".repeat(5 * 1024 * 1024));
    let (s, _) = deliver(&env.app, "workflow_run", "big", v.to_string().as_bytes()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
}
