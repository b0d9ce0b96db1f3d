//! Backends and helpers for the conformance suite.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sentinel_log::sqlite::SqliteLog;
use sentinel_log::testing::TestBroker;
use sentinel_log::{
    EventLog, HEADER_EVENT_ID, HEADER_EVENT_TYPE, HEADER_TENANT, Record, Stored, Subscription,
};

/// Upper bound of one scenario (group joins on tansu take a few seconds each).
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);
/// Upper bound of waiting for records through a subscription.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A log under test and what keeps it alive. Fields drop in order: the log before the
/// broker or directory it uses.
pub struct Harness {
    pub log: Arc<dyn EventLog>,
    pub broker: Option<TestBroker>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// The embedded log in a fresh temporary directory.
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&dir.path().join("log.db")).await.unwrap();
        Harness {
            log: Arc::new(log),
            broker: None,
            _dir: Some(dir),
        }
    }

    /// A Kafka log on a private tansu broker (or `SENTINEL_TEST_KAFKA`).
    pub async fn kafka() -> Harness {
        let broker = TestBroker::start_async().await.unwrap();
        let log = broker.connect().await.unwrap();
        Harness {
            log: Arc::new(log),
            broker: Some(broker),
            _dir: None,
        }
    }

    /// Runs a scenario with an upper bound on its duration; on failure with a private broker,
    /// prints the broker's last log lines.
    pub async fn run<F, Fut>(self, scenario: F)
    where
        F: FnOnce(Arc<dyn EventLog>) -> Fut,
        Fut: Future<Output = ()>,
    {
        struct LogOnPanic<'a>(&'a Option<TestBroker>);
        impl Drop for LogOnPanic<'_> {
            fn drop(&mut self) {
                if std::thread::panicking()
                    && let Some(b) = self.0
                {
                    eprintln!("--- broker {} log tail ---\n{}", b.brokers, b.log_tail(40));
                }
            }
        }
        let _guard = LogOnPanic(&self.broker);
        let log = self.log.clone();
        tokio::time::timeout(SCENARIO_TIMEOUT, scenario(log))
            .await
            .unwrap_or_else(|_| panic!("scenario did not finish within {SCENARIO_TIMEOUT:?}"));
    }
}

/// A unique name with a prefix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// Creates a fresh topic (the embedded log has one partition whatever is asked).
pub async fn new_topic(log: &Arc<dyn EventLog>, partitions: i32) -> String {
    let topic = unique("test.conformance");
    log.ensure_topic(&topic, partitions).await.unwrap();
    topic
}

/// A record with the usual Sentinel headers and a value naming it.
pub fn rec(key: &str, value: impl Into<String>) -> Record {
    Record {
        key: key.to_owned(),
        value: value.into().into_bytes(),
        headers: vec![
            (
                HEADER_EVENT_ID.to_owned(),
                uuid::Uuid::new_v4().to_string().into_bytes(),
            ),
            (HEADER_EVENT_TYPE.to_owned(), b"TestHappened".to_vec()),
            (HEADER_TENANT.to_owned(), b"acme".to_vec()),
        ],
    }
}

/// The value of a stored record as text.
pub fn text(s: &Stored) -> String {
    String::from_utf8_lossy(&s.record.value).into_owned()
}

/// Every record of every partition, read without a group.
pub async fn read_all(log: &Arc<dyn EventLog>, topic: &str) -> Vec<Stored> {
    let partitions = log.partitions(topic).await.unwrap();
    let mut out = Vec::new();
    for p in 0..partitions {
        let mut from = 0;
        loop {
            let batch = log.read(topic, p, from, 7).await.unwrap();
            let Some(last) = batch.last() else { break };
            from = last.position.offset + 1;
            out.extend(batch);
        }
    }
    out
}

/// Polls until exactly `n` records arrived (panics after [`DELIVERY_TIMEOUT`]).
pub async fn poll_n(sub: &mut Box<dyn Subscription>, n: usize) -> Vec<Stored> {
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} records delivered within {DELIVERY_TIMEOUT:?}: {:?}",
            out.len(),
            out.iter().map(text).collect::<Vec<_>>()
        );
        out.extend(
            sub.poll(n - out.len(), Duration::from_millis(500))
                .await
                .unwrap(),
        );
    }
    out
}

/// Asserts that nothing more arrives within `wait`.
pub async fn assert_no_more(sub: &mut Box<dyn Subscription>, wait: Duration) {
    let extra = sub.poll(100, wait).await.unwrap();
    assert!(
        extra.is_empty(),
        "unexpected records: {:?}",
        extra.iter().map(text).collect::<Vec<_>>()
    );
}

/// Record values grouped by partition, each in offset order.
pub fn by_partition(records: &[Stored]) -> BTreeMap<i32, Vec<(i64, String)>> {
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for r in records {
        out.entry(r.position.partition)
            .or_default()
            .push((r.position.offset, text(r)));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Sorted values, for order-insensitive comparisons.
pub fn values(records: &[Stored]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(text).collect();
    v.sort();
    v
}
