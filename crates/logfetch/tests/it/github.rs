//! The GitHub client against the local fake GitHub API (see `fake`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sentinel_logfetch::Error;
use sentinel_logfetch::config::GitHubAuth;
use sentinel_logfetch::github::GitHubClient;

use crate::fake::{self, APP_ID, STATIC_TOKEN, job_json};

const RUN: u64 = 30433642;

/// A run with 150 jobs (two pages of 100): two failed.
async fn github_with_run() -> (Arc<fake::GitHub>, String) {
    let state = Arc::new(fake::GitHub::default());
    state.tokens.lock().expect("lock").push(STATIC_TOKEN.into());
    state.token_ttl.store(3600, Ordering::SeqCst);
    let mut jobs = Vec::new();
    for i in 0..150u64 {
        let (conclusion, steps): (&str, &[(&str, &str)]) = match i {
            7 => (
                "failure",
                &[
                    ("Set up job", "success"),
                    ("Run black --check .", "failure"),
                    ("Post", "success"),
                ],
            ),
            120 => (
                "timed_out",
                &[("Set up job", "success"), ("Test", "cancelled")],
            ),
            _ => ("success", &[("Set up job", "success")]),
        };
        jobs.push(job_json(
            1000 + i,
            RUN,
            &format!("job-{i}"),
            conclusion,
            steps,
        ));
    }
    state.runs.lock().expect("lock").insert(RUN, jobs);
    state
        .logs
        .lock()
        .expect("lock")
        .insert(1007, fake::fixture("github-job-black.log"));
    let api = fake::github(state.clone()).await;
    (state, api)
}

fn token_client(api: &str) -> GitHubClient {
    GitHubClient::new(
        api,
        &GitHubAuth::Token(STATIC_TOKEN.into()),
        Duration::from_secs(5),
        1 << 20,
    )
    .expect("client")
}

fn app_client(api: &str) -> GitHubClient {
    GitHubClient::new(
        api,
        &GitHubAuth::App {
            app_id: APP_ID,
            private_key_pem: fake::private_key(),
        },
        Duration::from_secs(5),
        1 << 20,
    )
    .expect("client")
}

#[tokio::test]
async fn failed_jobs_are_found_across_pages_and_logs_follow_the_redirect_without_credentials() {
    let (state, api) = github_with_run().await;
    let gh = token_client(&api);
    let failed = gh.failed_jobs("octo-org", "app", RUN).await.expect("jobs");
    let names: Vec<&str> = failed.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["job-7", "job-120"]);
    assert_eq!(
        failed[0].failed_step().map(|s| s.name.as_str()),
        Some("Run black --check .")
    );
    let requests = state.requests.lock().expect("lock").clone();
    assert_eq!(
        requests,
        [
            format!(
                "GET /repos/octo-org/app/actions/runs/{RUN}/jobs?filter=latest&per_page=100&page=1"
            ),
            format!(
                "GET /repos/octo-org/app/actions/runs/{RUN}/jobs?filter=latest&per_page=100&page=2"
            ),
        ]
    );

    let log = gh.job_log("octo-org", "app", 1007).await.expect("log");
    let want = fake::fixture("github-job-black.log");
    assert_eq!(log.bytes, want.as_bytes());
    assert_eq!(log.total, want.len() as u64);
    assert!(
        !state.blob_saw_auth.load(Ordering::SeqCst),
        "the GitHub token must not be sent to the log storage host"
    );

    // A log GitHub no longer has (410 Gone) is not worth retrying.
    let err = gh
        .job_log("octo-org", "app", 1120)
        .await
        .expect_err("expired");
    assert!(matches!(err, Error::NotFound { status: 410, .. }), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn downloads_keep_the_end_of_huge_logs_and_count_every_byte() {
    let (state, api) = github_with_run().await;
    let big: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
    state.logs.lock().expect("lock").insert(1007, big.clone());
    let gh = GitHubClient::new(
        &api,
        &GitHubAuth::Token(STATIC_TOKEN.into()),
        Duration::from_secs(5),
        4096,
    )
    .expect("client");
    let log = gh.job_log("octo-org", "app", 1007).await.expect("log");
    assert_eq!(log.total, big.len() as u64);
    assert_eq!(log.bytes.len(), 4096);
    assert!(big.as_bytes().ends_with(&log.bytes));
}

#[tokio::test]
async fn errors_are_classified_for_retrying() {
    let (state, api) = github_with_run().await;
    let bad = GitHubClient::new(
        &api,
        &GitHubAuth::Token("ghp_WrongTokenWrongTokenWrongToken0000".into()),
        Duration::from_secs(5),
        1 << 20,
    )
    .expect("client");
    let err = bad
        .failed_jobs("octo-org", "app", RUN)
        .await
        .expect_err("denied");
    assert!(matches!(err, Error::Denied { status: 401, .. }), "{err}");
    assert!(!err.is_transient());

    let gh = token_client(&api);
    let err = gh
        .failed_jobs("octo-org", "app", 999)
        .await
        .expect_err("missing");
    assert!(matches!(err, Error::NotFound { status: 404, .. }), "{err}");

    state.fail_with.store(503, Ordering::SeqCst);
    let err = gh
        .failed_jobs("octo-org", "app", RUN)
        .await
        .expect_err("down");
    assert!(err.is_transient(), "{err}");

    let err = gh
        .failed_jobs("octo-org/../x", "app", RUN)
        .await
        .expect_err("bad owner");
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn app_auth_mints_installation_tokens_and_reuses_them_until_near_expiry() {
    let (state, api) = github_with_run().await;
    // Only minted installation tokens are accepted.
    state.tokens.lock().expect("lock").clear();
    let gh = app_client(&api);
    for _ in 0..3 {
        gh.job("octo-org", "app", 1007).await.expect("job");
    }
    assert_eq!(
        state.minted.load(Ordering::SeqCst),
        1,
        "a valid token is reused"
    );
    let installation_lookups = state
        .requests
        .lock()
        .expect("lock")
        .iter()
        .filter(|r| r.as_str() == "GET /repos/octo-org/app/installation")
        .count();
    assert_eq!(installation_lookups, 1, "the installation id is cached");

    // Tokens about to expire (inside the 30 s safety margin) are renewed before use.
    let (state, api) = github_with_run().await;
    state.tokens.lock().expect("lock").clear();
    state.token_ttl.store(20, Ordering::SeqCst);
    let gh = app_client(&api);
    for _ in 0..3 {
        gh.job("octo-org", "app", 1007).await.expect("job");
    }
    assert_eq!(state.minted.load(Ordering::SeqCst), 3);
}
