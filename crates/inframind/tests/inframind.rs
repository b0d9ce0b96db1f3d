//! The correlator against a real tonic InfraMind server on loopback and a real SQLite event
//! log: predictions in (Kafka-topic facts in Avro and JSON, and the gRPC sink), correlation,
//! outcome delivery, and InfraMind being down for a while across a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sentinel_events::types::FailureType;
use sentinel_events::{Event, Fact, codec};
use sentinel_inframind::proto::Prediction;
use sentinel_inframind::proto::prediction_sink_client::PredictionSinkClient;
use sentinel_inframind::proto::prediction_sink_server::PredictionSinkServer;
use sentinel_inframind::sink::PredictionSinkService;
use sentinel_inframind::testing::{RecordingInfraMind, chain_events, prediction, serve};
use sentinel_inframind::{CorrelatorConfig, CorrelatorStage, PREDICTIONS_TOPIC, PredictionStage};
use sentinel_log::sqlite::SqliteLog;
use sentinel_log::{EventLog, Record};
use sentinel_runtime::{
    DLQ_TOPIC, EVENTS_TOPIC, RunnerConfig, Stage, append_events, run_stage, to_record,
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

async fn log(dir: &TempDir) -> Arc<dyn EventLog> {
    let log = SqliteLog::open(&dir.path().join("log.db")).await.unwrap();
    for t in [EVENTS_TOPIC, DLQ_TOPIC, PREDICTIONS_TOPIC] {
        log.ensure_topic(t, 1).await.unwrap();
    }
    Arc::new(log)
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the stage stops promptly, even while retrying")
            .unwrap();
    }
}

fn start<S: Stage>(stage: S, log: &Arc<dyn EventLog>) -> Running {
    let stop = CancellationToken::new();
    let config = RunnerConfig {
        poll_wait: Duration::from_millis(50),
        ..RunnerConfig::default()
    };
    let task = tokio::spawn(run_stage(stage, log.clone(), config, stop.clone()));
    Running {
        stop,
        task: tokio::spawn(async move { task.await.unwrap().unwrap() }),
    }
}

fn correlator(url: &str) -> CorrelatorStage {
    CorrelatorStage::new(CorrelatorConfig {
        inframind_url: Some(url.to_owned()),
        report_timeout_ms: 500,
        retry_min_delay_ms: 20,
        retry_max_delay_ms: 200,
        ..CorrelatorConfig::default()
    })
    .unwrap()
}

async fn facts(log: &dyn EventLog, topic: &str) -> Vec<Event> {
    let mut out = Vec::new();
    sentinel_runtime::scan_topic(log, topic, |_, e| {
        out.push(e.unwrap());
        true
    })
    .await
    .unwrap();
    out
}

async fn wait_until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(events: &[Event], ty: &str) -> usize {
    events.iter().filter(|e| e.event_type() == ty).count()
}

#[tokio::test]
async fn predictions_are_correlated_and_outcomes_reported_once() {
    let dir = TempDir::new().unwrap();
    let log = log(&dir).await;
    let inframind = RecordingInfraMind::default();
    let server = serve(inframind.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // One prediction as Avro, one as JSON (a producer that cannot speak Avro).
    let by_sig = prediction(
        "p-sig",
        "acme/app",
        FailureType::Formatting,
        Some("sig-1"),
        None,
        -600,
    );
    let by_type = prediction(
        "p-type",
        "acme/lib",
        FailureType::Formatting,
        None,
        None,
        9_400,
    );
    append_events(log.as_ref(), PREDICTIONS_TOPIC, &[by_sig])
        .await
        .unwrap();
    let json = serde_json::to_vec(&codec::to_json(&by_type).unwrap()).unwrap();
    let mut record = to_record(&by_type).unwrap();
    record.value = json;
    log.append(PREDICTIONS_TOPIC, vec![record]).await.unwrap();
    // A record that is not a prediction is set aside, not lost in silence.
    log.append(
        PREDICTIONS_TOPIC,
        vec![Record {
            key: "x".into(),
            value: b"{\"not\": \"a prediction\"}".to_vec(),
            headers: vec![],
        }],
    )
    .await
    .unwrap();
    let predictions = start(PredictionStage, &log);
    wait_until("predictions on the fact log", async || {
        count(
            &facts(log.as_ref(), EVENTS_TOPIC).await,
            "prediction_received",
        ) == 2
    })
    .await;

    let app = chain_events("acme/app", "sig-1", 0, true);
    let lib = chain_events("acme/lib", "sig-9", 10_000, false);
    append_events(log.as_ref(), EVENTS_TOPIC, &app)
        .await
        .unwrap();
    append_events(log.as_ref(), EVENTS_TOPIC, &lib)
        .await
        .unwrap();
    let stage = start(correlator(&server.url()), &log);
    wait_until("two outcomes reported", async || {
        count(&facts(log.as_ref(), EVENTS_TOPIC).await, "outcome_reported") == 2
    })
    .await;
    stage.stop().await;
    predictions.stop().await;

    let events = facts(log.as_ref(), EVENTS_TOPIC).await;
    let mut links: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match &e.fact {
            Fact::PredictionCorrelated(c) => Some((c.prediction_id.clone(), c.method.clone())),
            _ => None,
        })
        .collect();
    links.sort();
    assert_eq!(
        links,
        vec![
            ("p-sig".to_owned(), "signature".to_owned()),
            ("p-type".to_owned(), "failure_type".to_owned())
        ]
    );
    let mut got: Vec<(String, bool, String)> = inframind
        .received()
        .into_iter()
        .map(|(o, _)| (o.prediction_id, o.success, o.repository))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("p-sig".to_owned(), true, "acme/app".to_owned()),
            ("p-type".to_owned(), false, "acme/lib".to_owned())
        ]
    );
    assert_eq!(inframind.calls(), 2, "each outcome sent once");
    let dlq = facts(log.as_ref(), DLQ_TOPIC).await;
    assert_eq!(dlq.len(), 1, "the non-prediction record is dead-lettered");

    // A restarted correlator does not report again: delivery is tracked by its offset.
    let again = start(correlator(&server.url()), &log);
    tokio::time::sleep(Duration::from_millis(500)).await;
    again.stop().await;
    assert_eq!(inframind.calls(), 2);
    server.stop().await;
}

#[tokio::test]
async fn inframind_down_for_a_while_across_a_restart_loses_nothing_sqlite() {
    let dir = TempDir::new().unwrap();
    down_for_a_while(log(&dir).await).await;
}

/// The same on Kafka (tansu started by the harness, or `SENTINEL_TEST_KAFKA`): the
/// outcomes spread over three partitions, the restarted consumer rejoins the group.
///
/// This used to hang on tansu: the first correlator was stopped ~0.8 s after it subscribed,
/// while its group join was still in progress (tansu takes ~2 s to form a group), and tansu
/// 0.6 keeps a member that leaves between its JoinGroup and SyncGroup as the leader of the
/// forming group. Every JoinGroup answer to the restarted member named the departed member
/// as leader and every SyncGroup was answered REBALANCE_IN_PROGRESS (librdkafka `debug=cgrp`
/// log, 30 s of it), so the group never consumed again — tansu clears a leader only when a
/// heartbeat finds it timed out, and a member that left is no longer checked. Nothing was
/// lost (the offsets were never committed), nothing was delivered. `KafkaSubscription::close`
/// now finishes a join in progress before leaving the group (`sentinel-log`'s conformance
/// scenario `leaving_during_the_group_join_does_not_stall_the_group`).
#[tokio::test]
async fn inframind_down_for_a_while_across_a_restart_loses_nothing_kafka() {
    let broker = sentinel_log::testing::TestBroker::start_async()
        .await
        .expect("broker");
    let log = broker.connect().await.expect("connect");
    for t in [EVENTS_TOPIC, DLQ_TOPIC, PREDICTIONS_TOPIC] {
        log.ensure_topic(t, 3).await.unwrap();
    }
    down_for_a_while(Arc::new(log)).await;
}

/// Where each `FixOutcomeRecorded` sits in the fact log: (partition, offset).
async fn outcome_positions(log: &dyn EventLog) -> Vec<(i32, i64)> {
    let mut out = Vec::new();
    sentinel_runtime::scan_topic(log, EVENTS_TOPIC, |stored, e| {
        if e.is_ok_and(|e| e.event_type() == "fix_outcome_recorded") {
            out.push((stored.position.partition, stored.position.offset));
        }
        true
    })
    .await
    .unwrap();
    out
}

/// Asserts the correlator's committed offsets are past exactly the outcomes delivered:
/// `delivered` says which (partition, offset) InfraMind acknowledged.
async fn assert_committed_only_past_delivered(log: &dyn EventLog, delivered: bool) {
    let committed = log
        .committed("sentinel-correlator", EVENTS_TOPIC)
        .await
        .unwrap();
    for (partition, offset) in outcome_positions(log).await {
        let done = committed
            .iter()
            .find(|(p, _)| *p == partition)
            .is_some_and(|(_, c)| *c > offset);
        assert_eq!(
            done, delivered,
            "outcome at {partition}/{offset}: committed {committed:?}, delivered: {delivered}"
        );
    }
}

/// InfraMind is down while 20 outcomes are recorded and the correlator restarts once; it
/// comes back answering UNAVAILABLE, then healthy: every outcome arrives, each once, and no
/// offset is committed past an outcome before InfraMind acknowledged it.
///
/// Steps wait on what the correlator did, not on sleeps alone: the first run is known to be
/// consuming once it links a canary prediction to its task; the second once InfraMind
/// (back, but answering UNAVAILABLE) sees its retries.
async fn down_for_a_while(log: Arc<dyn EventLog>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
    let inframind = RecordingInfraMind::default();
    // Reserve an address, then take the server down.
    let server = serve(inframind.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (addr, url) = (server.addr, server.url());
    server.stop().await;

    let mut outcome_ids = Vec::new();
    let mut append_chains = async |from: i64, n: i64| {
        for i in from..from + n {
            let chain = chain_events(&format!("acme/r{i}"), "sig", i * 10_000, i % 3 != 0);
            outcome_ids.push(chain.last().unwrap().event_id.to_string());
            append_events(log.as_ref(), EVENTS_TOPIC, &chain)
                .await
                .unwrap();
        }
    };
    // First run: InfraMind is down the whole time; the stage is stopped while retrying.
    let first = start(correlator(&url), &log);
    // A task (no outcome yet) and the prediction it matches: linked once the stage consumes.
    let canary = chain_events("acme/canary", "sig-canary", 1_000_000, true);
    let mut facts_in = vec![prediction(
        "p-canary",
        "acme/canary",
        FailureType::Formatting,
        Some("sig-canary"),
        None,
        1_000_000 - 600,
    )];
    facts_in.extend_from_slice(&canary[..3]);
    append_events(log.as_ref(), EVENTS_TOPIC, &facts_in)
        .await
        .unwrap();
    wait_until("the first correlator consuming", async || {
        count(
            &facts(log.as_ref(), EVENTS_TOPIC).await,
            "prediction_correlated",
        ) == 1
    })
    .await;
    append_chains(0, 10).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.stop().await;
    let events = facts(log.as_ref(), EVENTS_TOPIC).await;
    assert_eq!(count(&events, "outcome_reported"), 0);
    assert_committed_only_past_delivered(log.as_ref(), false).await;
    assert!(
        facts(log.as_ref(), DLQ_TOPIC).await.is_empty(),
        "nothing dead-lettered"
    );

    // Second run: still down, more outcomes arrive; then InfraMind comes back (first
    // answering UNAVAILABLE, as an overloaded server does), while the stage runs.
    let second = start(correlator(&url), &log);
    append_chains(10, 10).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    inframind.set_unavailable(true);
    let server = serve(inframind.clone(), addr).await.unwrap();
    wait_until("the restarted correlator retrying", async || {
        inframind.calls() >= 3
    })
    .await;
    assert_eq!(inframind.distinct(), 0);
    assert_committed_only_past_delivered(log.as_ref(), false).await;
    inframind.set_unavailable(false);
    wait_until("all 20 outcomes delivered", async || {
        inframind.distinct() == 20
    })
    .await;
    wait_until("all 20 recorded as reported", async || {
        count(&facts(log.as_ref(), EVENTS_TOPIC).await, "outcome_reported") == 20
    })
    .await;
    second.stop().await;
    server.stop().await;
    assert_committed_only_past_delivered(log.as_ref(), true).await;

    let mut received: Vec<String> = inframind
        .received()
        .into_iter()
        .map(|(o, _)| o.outcome_id)
        .collect();
    received.sort();
    outcome_ids.sort();
    assert_eq!(received, outcome_ids, "every outcome, each once");
    let events = facts(log.as_ref(), EVENTS_TOPIC).await;
    let retried = events.iter().any(|e| {
        matches!(&e.fact,
        Fact::OutcomeReported(r) if r.attempts > 1)
    });
    assert!(
        retried,
        "the outcome in flight during the outage records its attempts"
    );
    assert!(facts(log.as_ref(), DLQ_TOPIC).await.is_empty());
}

#[tokio::test]
async fn the_grpc_sink_records_valid_predictions_once() {
    let dir = TempDir::new().unwrap();
    let log = log(&dir).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = PredictionSinkService::new(log.clone(), "default");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PredictionSinkServer::new(sink))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = PredictionSinkClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let p = |id: &str, ty: &str, probability: f64| Prediction {
        prediction_id: id.into(),
        repository: "acme/app".into(),
        failure_type: ty.into(),
        probability,
        model: "m1".into(),
        signature: "sig-1".into(),
        correlation_id: String::new(),
        predicted_at_unix_ms: 1_750_000_000_000,
    };
    let batch = vec![
        p("p1", "formatting", 0.9),
        p("p2", "linting", 0.4),
        p("p3", "no_such_type", 0.5),
        p("p4", "linting", 1.5),
        p("", "linting", 0.5),
    ];
    let ack = client
        .publish_predictions(tokio_stream::iter(batch.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ack.accepted, ack.rejected), (2, 3));
    // Published again: the same facts (ids derive from the prediction ids).
    client
        .publish_predictions(tokio_stream::iter(batch))
        .await
        .unwrap();
    let recorded = facts(log.as_ref(), PREDICTIONS_TOPIC).await;
    assert_eq!(recorded.len(), 2);
    match &recorded[0].fact {
        Fact::PredictionReceived(r) => {
            assert_eq!(r.prediction_id, "p1");
            assert_eq!(r.signature.as_deref(), Some("sig-1"));
            assert_eq!(recorded[0].occurred_at.timestamp(), 1_750_000_000);
        }
        other => panic!("{other:?}"),
    }
}

/// Metric compliance: the correlator (and the prediction mover before it), run by the stage
/// runtime against a real tonic InfraMind that is overloaded at first, emit the metrics the
/// dashboards rely on (`sentinel_runtime::metrics::required::{RUNTIME, CORRELATOR}`) with
/// their labels, as served on `GET /metrics`.
#[test]
fn the_correlator_emits_its_required_metrics() {
    use sentinel_inframind::stage::{CORRELATOR, PREDICTIONS};
    use sentinel_runtime::metrics::{names, required};

    let (calls, exposition) = sentinel_runtime::testing::metrics::capture(async {
        let dir = TempDir::new().unwrap();
        let log = log(&dir).await;
        let inframind = RecordingInfraMind::default();
        inframind.set_unavailable(true);
        let server = serve(inframind.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let p = prediction(
            "p-sig",
            "acme/app",
            FailureType::Formatting,
            Some("sig-1"),
            None,
            -600,
        );
        append_events(log.as_ref(), PREDICTIONS_TOPIC, &[p])
            .await
            .unwrap();
        let predictions = start(PredictionStage, &log);
        wait_until("the prediction on the fact log", async || {
            count(
                &facts(log.as_ref(), EVENTS_TOPIC).await,
                "prediction_received",
            ) == 1
        })
        .await;
        let chain = chain_events("acme/app", "sig-1", 0, true);
        append_events(log.as_ref(), EVENTS_TOPIC, &chain)
            .await
            .unwrap();
        let stage = start(correlator(&server.url()), &log);
        wait_until("a refused delivery", async || inframind.calls() >= 1).await;
        inframind.set_unavailable(false);
        wait_until("the outcome reported", async || {
            count(&facts(log.as_ref(), EVENTS_TOPIC).await, "outcome_reported") == 1
        })
        .await;
        stage.stop().await;
        predictions.stop().await;
        server.stop().await;
        inframind.calls()
    });
    exposition.assert_emitted(required::RUNTIME, &[("stage", CORRELATOR)]);
    exposition.assert_emitted(required::RUNTIME, &[("stage", PREDICTIONS)]);
    exposition.assert_emitted(required::CORRELATOR, &[]);
    let value = |name, labels: &[(&str, &str)]| exposition.value(name, labels).unwrap_or(-1.0);
    assert_eq!(
        value(names::PREDICTIONS_CORRELATED, &[("method", "signature")]),
        1.0
    );
    assert_eq!(
        value(names::INFRAMIND_OUTCOMES, &[("outcome", "delivered")]),
        1.0
    );
    let retried = value(names::INFRAMIND_OUTCOMES, &[("outcome", "retried")]);
    assert!(retried >= 1.0, "{retried}");
    // Every call is timed, the refused ones too.
    assert_eq!(
        value(names::INFRAMIND_REPORT_DURATION, &[]),
        calls as f64,
        "{}",
        exposition.text()
    );
    assert!(
        value(
            names::STAGE_RECORDS,
            &[("stage", CORRELATOR), ("outcome", "retried")]
        ) >= 1.0
    );
    assert_eq!(value(names::DLQ, &[("stage", CORRELATOR)]), 0.0);
}
