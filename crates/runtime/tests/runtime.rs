//! Stage runtime behaviour on the embedded log: at-least-once with idempotent output,
//! resume after a crash between append and commit, retries, dead letters, shutdown, keyed
//! outputs, and a stateful stage's own outputs folded before it resumes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sentinel_events::facts::{EventDeadLettered, TaskProgressed};
use sentinel_events::{Event, Fact};
use sentinel_log::sqlite::SqliteLog;
use sentinel_log::{EventLog, Record};
use sentinel_runtime::{
    DLQ_TOPIC, HandlerError, Output, RunnerConfig, Stage, append_events, run_stage,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const IN: &str = "test.in";
const OUT: &str = "test.out";

fn input(i: usize) -> Event {
    Event::origin(
        TaskProgressed {
            task_id: format!("t{i}"),
            progress: 0.0,
            message: format!("input {i}"),
        },
        Some(&format!("input-{i}")),
        "default",
        &format!("repo-{}", i % 3),
        sentinel_events::envelope::now(),
        "test@0",
    )
}

/// Echoes every input to `test.out`. Optionally hangs forever on one input (to be killed
/// mid-batch), fails transiently a number of times, or declares inputs poison.
struct Echo {
    hang_on: Option<String>,
    hung: Option<mpsc::Sender<()>>,
    transient_failures: Arc<AtomicUsize>,
    poison: Option<String>,
    handled: Arc<AtomicUsize>,
}

impl Echo {
    fn plain() -> Self {
        Echo {
            hang_on: None,
            hung: None,
            transient_failures: Arc::new(AtomicUsize::new(0)),
            poison: None,
            handled: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[async_trait]
impl Stage for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn input_topic(&self) -> &'static str {
        IN
    }
    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let Fact::TaskProgressed(p) = &event.fact else {
            return Ok(Output::none());
        };
        if self.hang_on.as_deref() == Some(p.task_id.as_str()) {
            if let Some(tx) = self.hung.take() {
                let _ = tx.send(()).await;
            }
            std::future::pending::<()>().await;
        }
        if self.poison.as_deref() == Some(p.task_id.as_str()) {
            return Err(HandlerError::Poison("cannot process this one".into()));
        }
        if self
            .transient_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(HandlerError::Transient("dependency down".into()));
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
        let mut out = Output::none();
        let echoed = TaskProgressed {
            progress: 1.0,
            ..p.clone()
        };
        out.push_to(OUT, event.caused(echoed, "echo@test", 0, None));
        Ok(out)
    }
}

fn fast() -> RunnerConfig {
    RunnerConfig {
        batch_size: 100,
        poll_wait: Duration::from_millis(50),
        retry_min_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(20),
        ..RunnerConfig::default()
    }
}

async fn sqlite_log(dir: &tempfile::TempDir) -> Arc<dyn EventLog> {
    let log = SqliteLog::open(&dir.path().join("log.db"))
        .await
        .expect("open");
    for t in [IN, OUT, DLQ_TOPIC] {
        log.ensure_topic(t, 1).await.expect("topic");
    }
    Arc::new(log)
}

async fn read_all(log: &dyn EventLog, topic: &str) -> Vec<Event> {
    let mut out = Vec::new();
    sentinel_runtime::scan_topic(log, topic, |_, decoded| {
        out.push(decoded.expect("decode"));
        true
    })
    .await
    .expect("scan");
    out
}

async fn wait_for(log: &dyn EventLog, topic: &str, n: usize) -> Vec<Event> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = read_all(log, topic).await;
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The embedded log: re-appended outputs are dropped by the log itself.
#[tokio::test]
async fn crash_between_append_and_commit_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    crash_between_append_and_commit(sqlite_log(&dir).await, true).await;
}

/// Kafka (tansu started by the harness, or `SENTINEL_TEST_KAFKA`): re-appended outputs are
/// in the topic twice and consumers deduplicate them by event id.
#[tokio::test]
async fn crash_between_append_and_commit_kafka() {
    let broker = sentinel_log::testing::TestBroker::start_async()
        .await
        .expect("broker");
    let log = broker.connect().await.expect("connect");
    for t in [IN, OUT, DLQ_TOPIC] {
        log.ensure_topic(t, 3).await.expect("topic");
    }
    crash_between_append_and_commit(Arc::new(log), false).await;
}

/// Appends 20 inputs; a stage appends the outputs of 12 of them and is killed before it
/// commits; the restarted stage handles all 20 again. Every output exists, none twice
/// once deduplicated by event id, and the group's offsets end at the end of the input.
async fn crash_between_append_and_commit(log: Arc<dyn EventLog>, log_dedupes: bool) {
    let inputs: Vec<Event> = (0..20).map(input).collect();
    append_events(log.as_ref(), IN, &inputs)
        .await
        .expect("append");

    // First run: hangs on input 12 after appending the outputs of the inputs before it in
    // the same batch, then is killed before it can commit.
    let (tx, mut rx) = mpsc::channel(1);
    let stage = Echo {
        hang_on: Some("t12".into()),
        hung: Some(tx),
        ..Echo::plain()
    };
    let task = tokio::spawn(run_stage(
        stage,
        log.clone(),
        fast(),
        CancellationToken::new(),
    ));
    rx.recv().await.expect("stage reached input 12");
    task.abort();
    let _ = task.await;
    // 12 outputs on the one-partition embedded log; on Kafka it depends on how the
    // partitions interleave. Nothing was committed.
    let before = unique(&read_all(log.as_ref(), OUT).await);
    assert!(before < 20);
    if log_dedupes {
        assert_eq!(before, 12);
    }
    let committed = log.committed("sentinel-echo", IN).await.expect("committed");
    assert!(committed.iter().all(|(_, o)| *o <= 0), "{committed:?}");

    // Restart: re-processes everything from the last commit.
    let stage = Echo::plain();
    let handled = stage.handled.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_stage(stage, log.clone(), fast(), shutdown.clone()));
    let expected = if log_dedupes { 20 } else { before + 20 };
    let out = wait_for(log.as_ref(), OUT, expected).await;
    shutdown.cancel();
    task.await.expect("join").expect("clean stop");

    assert_eq!(
        handled.load(Ordering::SeqCst),
        20,
        "every input handled again after the crash"
    );
    assert_eq!(unique(&out), 20, "each output exactly once by event id");
    if log_dedupes {
        assert_eq!(
            out.len(),
            20,
            "the embedded log drops re-appended duplicates"
        );
    } else {
        assert_eq!(
            out.len(),
            before + 20,
            "Kafka keeps the re-appended duplicates"
        );
    }
    for (i, e) in inputs.iter().enumerate() {
        assert!(
            out.iter().any(|o| o.causation_id == Some(e.event_id)),
            "output for input {i} missing"
        );
    }
    let mut committed = log.committed("sentinel-echo", IN).await.expect("committed");
    committed.sort();
    let ends = log.end_offsets(IN).await.expect("end");
    for (p, end) in ends.iter().enumerate() {
        if *end > 0 {
            let p = i32::try_from(p).expect("partition");
            assert!(
                committed.contains(&(p, *end)),
                "partition {p}: {committed:?} vs end {end}"
            );
        }
    }
}

fn unique(events: &[Event]) -> usize {
    let mut ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    ids.sort();
    ids.dedup();
    ids.len()
}

#[tokio::test]
async fn transient_errors_are_retried_and_poison_goes_to_the_dead_letter_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sqlite_log(&dir).await;
    let mut events: Vec<Event> = (0..5).map(input).collect();
    append_events(log.as_ref(), IN, &events[..2])
        .await
        .expect("append");
    // A record that is not an event at all.
    log.append(
        IN,
        vec![Record {
            key: "k".into(),
            value: b"\x07garbage".to_vec(),
            headers: vec![],
        }],
    )
    .await
    .expect("append garbage");
    append_events(log.as_ref(), IN, &events.split_off(2))
        .await
        .expect("append");

    let stage = Echo {
        poison: Some("t3".into()),
        transient_failures: Arc::new(AtomicUsize::new(2)),
        ..Echo::plain()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_stage(stage, log.clone(), fast(), shutdown.clone()));
    let out = wait_for(log.as_ref(), OUT, 4).await;
    let dlq = wait_for(log.as_ref(), DLQ_TOPIC, 2).await;
    shutdown.cancel();
    task.await.expect("join").expect("clean stop");

    assert_eq!(
        out.len(),
        4,
        "all but the poison input are echoed (after retries)"
    );
    assert_eq!(dlq.len(), 2);
    let reasons: Vec<EventDeadLettered> = dlq
        .into_iter()
        .map(|e| match e.fact {
            Fact::EventDeadLettered(d) => d,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|d| d.raw == b"\x07garbage" && d.reason.contains("not an event"))
    );
    assert!(
        reasons
            .iter()
            .any(|d| d.reason.contains("cannot process this one"))
    );
    assert!(
        reasons
            .iter()
            .all(|d| d.stage == "echo" && d.source_topic == IN)
    );
}

#[tokio::test]
async fn a_handler_that_never_recovers_is_dead_lettered_after_max_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sqlite_log(&dir).await;
    append_events(log.as_ref(), IN, &[input(0), input(1)])
        .await
        .expect("append");
    let stage = Echo {
        transient_failures: Arc::new(AtomicUsize::new(5)),
        ..Echo::plain()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_stage(stage, log.clone(), fast(), shutdown.clone()));
    let dlq = wait_for(log.as_ref(), DLQ_TOPIC, 1).await;
    let out = wait_for(log.as_ref(), OUT, 1).await;
    shutdown.cancel();
    task.await.expect("join").expect("clean stop");
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        out.len(),
        1,
        "the stage kept going after giving up on the first input"
    );
}

#[tokio::test]
async fn shutdown_during_retries_leaves_the_record_for_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sqlite_log(&dir).await;
    append_events(log.as_ref(), IN, &[input(0)])
        .await
        .expect("append");
    let failures = Arc::new(AtomicUsize::new(usize::MAX));
    let stage = Echo {
        transient_failures: failures.clone(),
        ..Echo::plain()
    };
    let config = RunnerConfig {
        max_attempts: usize::MAX,
        retry_min_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(50),
        ..fast()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_stage(stage, log.clone(), config, shutdown.clone()));
    while failures.load(Ordering::SeqCst) > usize::MAX - 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops promptly while retrying")
        .expect("join")
        .expect("clean stop");
    assert!(
        read_all(log.as_ref(), DLQ_TOPIC).await.is_empty(),
        "not dead-lettered"
    );
    // The dependency is back: a restarted stage handles the record.
    let handled = Arc::new(AtomicUsize::new(0));
    let stage = Echo {
        handled: handled.clone(),
        ..Echo::plain()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_stage(stage, log.clone(), fast(), shutdown.clone()));
    let out = wait_for(log.as_ref(), OUT, 1).await;
    shutdown.cancel();
    task.await.expect("join").expect("clean stop");
    assert_eq!(out.len(), 1);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

const LEDGER: &str = "test.ledger";

/// A stateful stage whose outputs go to its own input topic (as the policy gate's do): for
/// each request it appends one decision, and records how many decisions it had folded when
/// it handled each request (a rate limit would be computed from that count).
struct Ledger {
    decided: std::collections::HashSet<String>,
    seen_at_handle: Arc<std::sync::Mutex<Vec<(String, usize)>>>,
}

#[async_trait]
impl Stage for Ledger {
    fn name(&self) -> &'static str {
        "ledger"
    }
    fn input_topic(&self) -> &'static str {
        LEDGER
    }
    fn needs_history(&self) -> bool {
        true
    }
    fn fold(&mut self, event: &Event) {
        if event.producer.starts_with("ledger@")
            && let Fact::TaskProgressed(p) = &event.fact
        {
            self.decided.insert(p.task_id.clone());
        }
    }
    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
        let mut out = Output::none();
        let Fact::TaskProgressed(p) = &event.fact else {
            return Ok(out);
        };
        if event.producer.starts_with("ledger@") || self.decided.contains(&p.task_id) {
            return Ok(out);
        }
        self.seen_at_handle
            .lock()
            .expect("lock")
            .push((p.task_id.clone(), self.decided.len()));
        out.push_to(LEDGER, decision(event));
        Ok(out)
    }
}

fn decision(request: &Event) -> Event {
    let Fact::TaskProgressed(p) = &request.fact else {
        panic!("a request")
    };
    request.caused(
        TaskProgressed {
            progress: 1.0,
            ..p.clone()
        },
        "ledger@test",
        0,
        None,
    )
}

/// The stage handled request 0 and appended its decision, but another producer had
/// appended request 1 in between; it committed request 0 and crashed. On restart its
/// decision lies past the committed offset, behind request 1: the runtime folds through it
/// before handling request 1, so request 1 is decided knowing one earlier decision (not
/// zero, which would let a limit be exceeded), and request 0 is not decided again.
#[tokio::test]
async fn a_restarted_stage_folds_its_own_outputs_past_its_commit_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = SqliteLog::open(&dir.path().join("log.db"))
        .await
        .expect("open");
    for t in [LEDGER, DLQ_TOPIC] {
        log.ensure_topic(t, 1).await.expect("topic");
    }
    let log: Arc<dyn EventLog> = Arc::new(log);
    let requests: Vec<Event> = (0..3).map(input).collect();
    append_events(
        log.as_ref(),
        LEDGER,
        &[
            requests[0].clone(),
            requests[1].clone(),
            decision(&requests[0]),
            requests[2].clone(),
        ],
    )
    .await
    .expect("append");
    let mut sub = log.subscribe("sentinel-ledger", LEDGER).await.expect("sub");
    let first = sub
        .poll(1, Duration::from_secs(1))
        .await
        .expect("poll")
        .remove(0);
    sub.commit(&[first.position]).await.expect("commit");
    sub.close().await.expect("close");

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stage = Ledger {
        decided: Default::default(),
        seen_at_handle: seen.clone(),
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_stage(stage, log.clone(), fast(), shutdown.clone()));
    let out = wait_for(log.as_ref(), LEDGER, 6).await;
    shutdown.cancel();
    task.await.expect("join").expect("clean stop");
    assert_eq!(
        *seen.lock().expect("lock"),
        [("t1".to_owned(), 1), ("t2".to_owned(), 2)]
    );
    let decisions = out
        .iter()
        .filter(|e| e.producer.starts_with("ledger@"))
        .count();
    assert_eq!(decisions, 3, "one decision per request");
}

/// `Output::push_keyed` replaces the record key (`tenant/subject` otherwise).
#[tokio::test]
async fn keyed_outputs_carry_their_key() {
    struct Rekey;
    #[async_trait]
    impl Stage for Rekey {
        fn name(&self) -> &'static str {
            "rekey"
        }
        fn input_topic(&self) -> &'static str {
            IN
        }
        async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError> {
            let mut out = Output::none();
            out.push_keyed(OUT, event.tenant.clone(), event.clone());
            out.push_to(OUT, event.caused(event.fact.clone(), "rekey@test", 0, None));
            Ok(out)
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sqlite_log(&dir).await;
    append_events(log.as_ref(), IN, &[input(1)])
        .await
        .expect("append");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_stage(Rekey, log.clone(), fast(), shutdown.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let records = loop {
        let r = log.read(OUT, 0, 0, 10).await.expect("read");
        if r.len() >= 2 || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    shutdown.cancel();
    task.await.expect("join").expect("clean stop");
    let keys: Vec<&str> = records.iter().map(|r| r.record.key.as_str()).collect();
    assert_eq!(keys, ["default", "default/repo-1"]);
}
