//! Metric compliance: the logfetch stage, run by the stage runtime on the embedded log
//! against the local fake GitHub, emits the metrics its dashboards rely on
//! (`sentinel_runtime::metrics::required::{RUNTIME, LOGFETCH}`) with their labels, as
//! served on `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

use sentinel_events::Fact;
use sentinel_log::EventLog;
use sentinel_log::sqlite::SqliteLog;
use sentinel_logfetch::LogfetchStage;
use sentinel_runtime::metrics::{names, required};
use sentinel_runtime::testing::metrics::capture;
use sentinel_runtime::{DLQ_TOPIC, EVENTS_TOPIC, append_events, run_stage};
use tokio_util::sync::CancellationToken;

use crate::gitlab_jenkins::failure;
use crate::pipeline::{RUN, config, fake_github, fast};

async fn captured_count(log: &dyn EventLog) -> usize {
    let mut n = 0;
    sentinel_runtime::scan_topic(log, EVENTS_TOPIC, |_, e| {
        if matches!(e.map(|e| e.fact), Ok(Fact::FailureLogsCaptured(_))) {
            n += 1;
        }
        true
    })
    .await
    .expect("scan");
    n
}

#[test]
fn logfetch_emits_its_required_metrics() {
    let (captured, exposition) = capture(async {
        let (_state, api) = fake_github().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let log = SqliteLog::open(&dir.path().join("log.db"))
            .await
            .expect("open");
        for t in [EVENTS_TOPIC, DLQ_TOPIC] {
            log.ensure_topic(t, 1).await.expect("topic");
        }
        let log: Arc<dyn EventLog> = Arc::new(log);
        // One run with a log holding secrets, one run GitHub does not know.
        let found = failure(
            "github",
            &format!("https://github.com/octo-org/app/actions/runs/{RUN}"),
            "",
        );
        let missing = failure(
            "github",
            "https://github.com/octo-org/app/actions/runs/1",
            "",
        );
        append_events(log.as_ref(), EVENTS_TOPIC, &[found, missing])
            .await
            .expect("append");
        let shutdown = CancellationToken::new();
        let stage = LogfetchStage::from_config(&config(&api)).expect("stage");
        let task = tokio::spawn(run_stage(stage, log.clone(), fast(), shutdown.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while captured_count(log.as_ref()).await < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.cancel();
        task.await.expect("join").expect("logfetch");
        captured_count(log.as_ref()).await
    });
    assert_eq!(captured, 2);
    exposition.assert_emitted(required::RUNTIME, &[("stage", "logfetch")]);
    exposition.assert_emitted(required::LOGFETCH, &[("source", "github")]);
    let value = |name, labels: &[(&str, &str)]| exposition.value(name, labels).unwrap_or(-1.0);
    // The two failures were handled; the stage's own two captures coming by (ignored) may
    // or may not have been read before the shutdown.
    let handled = value(
        names::STAGE_RECORDS,
        &[("stage", "logfetch"), ("outcome", "ok")],
    );
    assert!((2.0..=4.0).contains(&handled), "{handled}");
    assert_eq!(value(names::DLQ, &[("stage", "logfetch")]), 0.0);
    assert_eq!(
        value(
            names::LOGS_FETCHED,
            &[("source", "github"), ("outcome", "captured")]
        ),
        1.0
    );
    assert_eq!(
        value(
            names::LOGS_FETCHED,
            &[("source", "github"), ("outcome", "not_found")]
        ),
        1.0
    );
    // The run's two failed jobs carry four secrets (see `pipeline`).
    assert_eq!(value(names::LOG_REDACTIONS, &[("source", "github")]), 4.0);
    // Sizes are recorded for captured logs only.
    assert_eq!(value(names::LOG_SIZE, &[("source", "github")]), 1.0);
    assert_eq!(
        value(names::EVENTS_APPENDED, &[("topic", EVENTS_TOPIC)]),
        4.0,
        "two failures appended by the test, two captures by the stage"
    );
}
