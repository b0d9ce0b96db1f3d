//! The stage end to end: GitHub failures without a log are captured from the local fake
//! GitHub API (see `fake`) and then classified; failures with an inline log are classified
//! at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sentinel_events::facts::FailureClassified;
use sentinel_events::{Event, Fact, FailureType};
use sentinel_log::EventLog;
use sentinel_log::sqlite::SqliteLog;
use sentinel_logfetch::{LogfetchConfig, LogfetchStage};
use sentinel_runtime::{DLQ_TOPIC, EVENTS_TOPIC, RunnerConfig, Stage, append_events, run_stage};
use tokio_util::sync::CancellationToken;

use crate::fake::{self, STATIC_TOKEN, job_json};
use crate::gitlab_jenkins::{captured, failure};

pub const RUN: u64 = 30433642;

pub async fn fake_github() -> (Arc<fake::GitHub>, String) {
    let state = Arc::new(fake::GitHub::default());
    state.tokens.lock().expect("lock").push(STATIC_TOKEN.into());
    state.runs.lock().expect("lock").insert(
        RUN,
        vec![
            job_json(
                11,
                RUN,
                "lint",
                "failure",
                &[
                    ("Set up job", "success"),
                    ("Run black --check .", "failure"),
                ],
            ),
            job_json(12, RUN, "test", "success", &[("Set up job", "success")]),
            job_json(
                13,
                RUN,
                "deploy-preview",
                "failure",
                &[("Set up job", "success"), ("Publish", "failure")],
            ),
        ],
    );
    {
        let mut logs = state.logs.lock().expect("lock");
        logs.insert(11, fake::fixture("github-job-black.log"));
        logs.insert(
        13,
        "2024-05-02T10:01:00.0000000Z ##[group]Run curl -fsS -u deploy:Sup3rS3cretPassw0rd https://preview.example/upload\n\
2024-05-02T10:01:00.0000000Z curl -fsS -u deploy:Sup3rS3cretPassw0rd https://preview.example/upload\n\
2024-05-02T10:01:00.0000000Z shell: /usr/bin/bash -e {0}\n\
2024-05-02T10:01:00.0000000Z ##[endgroup]\n\
2024-05-02T10:01:01.0000000Z using corp-literal-secret-9000 and AKIAIOSFODNN7EXAMPLE\n\
2024-05-02T10:01:01.0000000Z curl: (22) The requested URL returned error: 403\n\
2024-05-02T10:01:01.5000000Z ##[error]Process completed with exit code 22.\n"
            .into(),
    );
    }
    let api = fake::github(state.clone()).await;
    (state, api)
}

pub fn config(api: &str) -> LogfetchConfig {
    LogfetchConfig {
        github_api_url: api.into(),
        github_token: Some(STATIC_TOKEN.into()),
        literal_secrets: vec!["corp-literal-secret-9000".into()],
        ..LogfetchConfig::default()
    }
}

#[tokio::test]
async fn github_run_logs_are_captured_with_command_job_step_and_secrets_removed() {
    let (state, api) = fake_github().await;
    let mut stage = LogfetchStage::from_config(&config(&api)).expect("stage");
    let url = format!("https://github.com/octo-org/app/actions/runs/{RUN}");
    let c = captured(&mut stage, &failure("github", &url, "")).await;
    assert_eq!(c.fetch_error, None);
    assert_eq!(c.failing_command.as_deref(), Some("black --check ."));
    assert_eq!(c.exit_code, Some(1));
    assert_eq!(c.job_name.as_deref(), Some("lint, deploy-preview"));
    assert_eq!(c.step_name.as_deref(), Some("Run black --check ."));
    let job13_len = state.logs.lock().expect("lock")[&13].len();
    assert_eq!(
        c.full_size_bytes,
        (fake::fixture("github-job-black.log").len() + job13_len) as i64
    );
    assert!(
        c.excerpt
            .starts_with("=== lint ===\nRequested labels: ubuntu-latest\n")
    );
    assert!(
        c.excerpt.contains(
            "would reformat /home/runner/work/app/app/src/app/main.py\n\nOh no! 💥 💔 💥\n"
        )
    );
    assert!(c.excerpt.contains("=== deploy-preview ===\n"));
    assert!(
        c.excerpt
            .contains("Error: Process completed with exit code 22.\n")
    );
    // The mask GitHub already applied stays; real secrets are gone.
    assert!(c.excerpt.contains("  PYPI_TOKEN: ***\n"));
    for secret in [
        "Sup3rS3cretPassw0rd",
        "corp-literal-secret-9000",
        "AKIAIOSFODNN7EXAMPLE",
        STATIC_TOKEN,
    ] {
        assert!(
            !c.excerpt.contains(secret),
            "{secret} leaked:\n{}",
            c.excerpt
        );
    }
    assert!(c.excerpt.contains("using [REDACTED] and [REDACTED]\n"));
    assert_eq!(c.redactions, 4, "{}", c.excerpt);
    assert!(!c.excerpt.contains('\x1b') && !c.excerpt.contains("##["));

    // A job URL (workflow_job) captures only that job.
    let url = format!("https://github.com/octo-org/app/actions/runs/{RUN}/job/13");
    let c = captured(&mut stage, &failure("github", &url, "")).await;
    assert_eq!(c.job_name.as_deref(), Some("deploy-preview"));
    assert_eq!(c.step_name.as_deref(), Some("Publish"));
    assert_eq!(
        c.failing_command.as_deref(),
        Some("curl -fsS -u deploy:[REDACTED] https://preview.example/upload")
    );
    assert_eq!(c.exit_code, Some(22));
}

#[tokio::test]
async fn unfetchable_logs_are_recorded_with_the_reason_and_outages_are_retried() {
    let (state, api) = fake_github().await;
    let url = format!("https://github.com/octo-org/app/actions/runs/{RUN}");
    // No credentials: recorded, with the reason.
    let mut bare = LogfetchStage::from_config(&LogfetchConfig {
        github_api_url: api.clone(),
        ..LogfetchConfig::default()
    })
    .expect("stage");
    let c = captured(&mut bare, &failure("github", &url, "")).await;
    assert_eq!(c.excerpt, "");
    assert_eq!(
        c.fetch_error.as_deref(),
        Some("configuration: no GitHub credentials configured")
    );
    // A run GitHub does not know.
    let mut stage = LogfetchStage::from_config(&config(&api)).expect("stage");
    let c = captured(
        &mut stage,
        &failure(
            "github",
            "https://github.com/octo-org/app/actions/runs/1",
            "",
        ),
    )
    .await;
    assert!(
        c.fetch_error
            .as_deref()
            .is_some_and(|m| m.contains("not found (404)")),
        "{c:?}"
    );
    // An unrecognisable URL or source.
    let c = captured(
        &mut stage,
        &failure("github", "https://github.com/octo-org/app", ""),
    )
    .await;
    assert!(c.fetch_error.is_some());
    // GitHub down: a transient error, so the runtime retries.
    state.fail_with.store(502, Ordering::SeqCst);
    let err = stage
        .handle(&failure("github", &url, ""))
        .await
        .expect_err("transient");
    assert!(
        matches!(err, sentinel_runtime::HandlerError::Transient(_)),
        "{err}"
    );
    // Failures that came with their log, and other facts, are not fetched.
    assert!(
        stage
            .handle(&failure("generic", &url, "log"))
            .await
            .expect("ok")
            .is_empty()
    );
}

pub fn fast() -> RunnerConfig {
    RunnerConfig {
        poll_wait: Duration::from_millis(50),
        ..RunnerConfig::default()
    }
}

async fn classified(log: &dyn EventLog, n: usize) -> Vec<(Event, FailureClassified)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut out = Vec::new();
        sentinel_runtime::scan_topic(log, EVENTS_TOPIC, |_, e| {
            if let Ok(e) = e
                && let Fact::FailureClassified(c) = &e.fact
            {
                out.push((e.clone(), c.clone()));
            }
            true
        })
        .await
        .expect("scan");
        if out.len() >= n || tokio::time::Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The classifier classifies a fetched log once logfetch captured it, and an inline log
/// at once — each failure exactly once.
#[tokio::test]
async fn captured_logs_are_classified_on_the_embedded_log() {
    let (_state, api) = fake_github().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = SqliteLog::open(&dir.path().join("log.db"))
        .await
        .expect("open");
    for t in [EVENTS_TOPIC, DLQ_TOPIC] {
        log.ensure_topic(t, 1).await.expect("topic");
    }
    let log: Arc<dyn EventLog> = Arc::new(log);
    let github = failure(
        "github",
        &format!("https://github.com/octo-org/app/actions/runs/{RUN}/job/11"),
        "",
    );
    let inline = failure(
        "generic",
        "https://ci.example/1",
        "would reformat app.py\nOh no! 1 file would be reformatted.\n",
    );
    append_events(
        log.as_ref(),
        EVENTS_TOPIC,
        &[github.clone(), inline.clone()],
    )
    .await
    .expect("append");
    let shutdown = CancellationToken::new();
    let logfetch = LogfetchStage::from_config(&config(&api)).expect("stage");
    let classifier = sentinel_classify::ClassifierStage::new(
        sentinel_classify::Catalogue::builtin().expect("catalogue"),
    );
    let t1 = tokio::spawn(run_stage(logfetch, log.clone(), fast(), shutdown.clone()));
    let t2 = tokio::spawn(run_stage(classifier, log.clone(), fast(), shutdown.clone()));
    let got = classified(log.as_ref(), 2).await;
    // Give a wrong third classification the chance to appear before checking there is none.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = classified(log.as_ref(), 2).await;
    shutdown.cancel();
    t1.await.expect("join").expect("logfetch");
    t2.await.expect("join").expect("classifier");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got_after.len(), 2, "{got_after:?}");
    for (e, c) in &got {
        assert_eq!(c.failure_type, FailureType::Formatting, "{c:?}");
        assert_eq!(
            e.correlation_id,
            if c.failure_event_id == github.event_id.to_string() {
                github.correlation_id
            } else {
                inline.correlation_id
            }
        );
    }
    let ids: Vec<&str> = got
        .iter()
        .map(|(_, c)| c.failure_event_id.as_str())
        .collect();
    assert!(ids.contains(&github.event_id.to_string().as_str()));
    assert!(ids.contains(&inline.event_id.to_string().as_str()));
}
