//! The Kafka-direct stage on the embedded log and on a Kafka-protocol broker (tansu,
//! started by the harness, or `SENTINEL_TEST_KAFKA`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sentinel_events::facts::{CiRunFailed, EventDeadLettered};
use sentinel_events::{Event, Fact};
use sentinel_ingest::BotIdentity;
use sentinel_ingest::direct::{DirectStage, HEADER_DLQ_REASON, encode_avro};
use sentinel_log::sqlite::SqliteLog;
use sentinel_log::{EventLog, Record, Stored};
use sentinel_runtime::{CI_FAILURES_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, scan_topic};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn record(value: Vec<u8>) -> Record {
    Record {
        key: "default/repo".into(),
        value,
        headers: vec![("tenant".into(), b"acme".to_vec())],
    }
}

fn report(delivery: Option<&str>) -> serde_json::Value {
    let mut v = json!({
        "repository": "https://git.example.com/acme/app.git",
        "branch": "main",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "command": "ruff check .",
        "log": "app/x.py:1:1: F401 `os` imported but unused\npassword=hunter2hunter2\n",
        "job_name": "lint",
        "tenant": "acme",
    });
    if let Some(d) = delivery {
        v["delivery_id"] = json!(d);
    }
    v
}

async fn read(log: &dyn EventLog, topic: &str) -> Vec<(Stored, Event)> {
    let mut out = Vec::new();
    scan_topic(log, topic, |s, e| {
        out.push((s.clone(), e.expect("decodes")));
        true
    })
    .await
    .expect("scan");
    out
}

/// Produces good and bad records, runs the stage until everything is handled, checks the
/// facts and dead letters. `log_dedupes`: the embedded log drops re-appended ids; on Kafka
/// they may appear twice and are compared by id.
async fn scenario(log: Arc<dyn EventLog>, log_dedupes: bool) {
    let avro = encode_avro(&CiRunFailed {
        source: "my-ci".into(),
        delivery_id: Some("avro-1".into()),
        repository: "https://git.example.com/acme/app.git".into(),
        branch: "sentinel/fix-0123456789ab".into(),
        commit: "89abcdef".into(),
        command: Some("black --check .".into()),
        log: format!(
            "would reformat x.py\nGITHUB_TOKEN=ghp_{}\n",
            "Z9y8".repeat(9)
        ),
        log_size_bytes: 10,
        run_url: None,
        job_name: None,
        author: None,
        sentinel_authored: false,
    })
    .expect("avro");
    let mut missing_commit = report(Some("bad-1"));
    missing_commit["commit"] = json!(null);
    let records = vec![
        record(report(Some("r1")).to_string().into_bytes()),
        record(report(Some("r1")).to_string().into_bytes()), // a producer retry
        record(b"{not json".to_vec()),
        record(missing_commit.to_string().into_bytes()),
        record(avro.clone()),
        record(vec![0x01, 0x02, 0x03]),
        record(report(None).to_string().into_bytes()),
    ];
    let bad_values: Vec<Vec<u8>> = vec![
        records[2].value.clone(),
        records[3].value.clone(),
        records[5].value.clone(),
    ];
    log.append(CI_FAILURES_TOPIC, records)
        .await
        .expect("produce");

    let shutdown = CancellationToken::new();
    let task =
        tokio::spawn(DirectStage::new(log.clone(), BotIdentity::default()).run(shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let facts = read(log.as_ref(), EVENTS_TOPIC).await;
        let dead = read(log.as_ref(), DLQ_TOPIC).await;
        let ids: std::collections::HashSet<_> = facts.iter().map(|(_, e)| e.event_id).collect();
        if ids.len() >= 3 && dead.len() >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stage did not handle everything: {} facts, {} dead letters",
            ids.len(),
            dead.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Committed after the appends: a restarted stage finds nothing to do.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let committed: i64 = log
            .committed("sentinel-ingest-direct", CI_FAILURES_TOPIC)
            .await
            .expect("committed")
            .iter()
            .map(|(_, o)| *o)
            .sum();
        let end: i64 = log
            .end_offsets(CI_FAILURES_TOPIC)
            .await
            .expect("end")
            .iter()
            .sum();
        if committed >= end {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "offsets not committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    task.await.expect("join").expect("stage ran cleanly");

    let facts = read(log.as_ref(), EVENTS_TOPIC).await;
    let by_id: BTreeMap<_, _> = facts.iter().map(|(_, e)| (e.event_id, e)).collect();
    assert_eq!(
        by_id.len(),
        3,
        "r1 once, the Avro report, the report without id"
    );
    if log_dedupes {
        assert_eq!(facts.len(), 3, "the producer's retry appended nothing");
    }
    let failures: Vec<(&Event, &CiRunFailed)> = by_id
        .values()
        .map(|e| match &e.fact {
            Fact::CiRunFailed(f) => (*e, f),
            other => panic!("unexpected {}", other.event_type()),
        })
        .collect();
    for (e, f) in &failures {
        assert_eq!(f.source, "kafka");
        assert_eq!(e.tenant, "acme");
        assert_eq!(e.subject, "https://git.example.com/acme/app.git");
        assert!(!f.log.contains("hunter2hunter2"), "redacted: {}", f.log);
        assert!(!f.log.contains("ghp_Z9y8"), "redacted: {}", f.log);
    }
    let avro_fact = failures
        .iter()
        .find(|(_, f)| f.delivery_id.as_deref() == Some("kafka/avro-1"))
        .expect("the Avro report");
    assert!(avro_fact.1.sentinel_authored, "loop guard on Avro reports");
    assert!(avro_fact.1.log.contains("would reformat x.py"));
    assert!(
        failures.iter().any(|(_, f)| f
            .delivery_id
            .as_deref()
            .is_some_and(|d| d.starts_with("kafka/sentinel.ci.failures/"))),
        "a report without delivery_id is keyed by its position"
    );

    let dead = read(log.as_ref(), DLQ_TOPIC).await;
    let mut seen = std::collections::HashSet::new();
    let dead: Vec<_> = dead
        .into_iter()
        .filter(|(_, e)| seen.insert(e.event_id))
        .collect();
    assert_eq!(dead.len(), 3);
    for ((stored, e), raw) in dead.iter().zip(&bad_values) {
        let reason = stored.header(HEADER_DLQ_REASON).expect("reason header");
        assert!(!reason.is_empty());
        let Fact::EventDeadLettered(EventDeadLettered {
            raw: kept,
            reason: r,
            source_topic,
            stage,
            ..
        }) = &e.fact
        else {
            panic!("not a dead letter")
        };
        assert_eq!(r, reason);
        assert_eq!(source_topic, CI_FAILURES_TOPIC);
        assert_eq!(stage, "ingest-direct");
        // On Kafka the order of partitions is not the produce order; compare as sets.
        assert!(bad_values.contains(kept), "original bytes kept");
        let _ = raw;
    }
    let reasons: Vec<&str> = dead
        .iter()
        .filter_map(|(s, _)| s.header(HEADER_DLQ_REASON))
        .collect();
    assert!(reasons.iter().any(|r| r.contains("commit")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("framing")), "{reasons:?}");
}

#[tokio::test]
async fn direct_producers_on_the_embedded_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = SqliteLog::open(&dir.path().join("l.db"))
        .await
        .expect("open");
    for t in [CI_FAILURES_TOPIC, EVENTS_TOPIC, DLQ_TOPIC] {
        log.ensure_topic(t, 1).await.expect("topic");
    }
    scenario(Arc::new(log), true).await;
}

#[tokio::test]
async fn direct_producers_on_kafka() {
    let broker = sentinel_log::testing::TestBroker::start_async()
        .await
        .expect("broker");
    let log = broker.connect().await.expect("connect");
    for t in [CI_FAILURES_TOPIC, EVENTS_TOPIC] {
        log.ensure_topic(t, 3).await.expect("topic");
    }
    log.ensure_topic(DLQ_TOPIC, 1).await.expect("topic");
    scenario(Arc::new(log), false).await;
}
