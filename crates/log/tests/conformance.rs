//! The event-log conformance suite: every scenario runs against the embedded SQLite log and
//! against Kafka (a private tansu broker per test, or `SENTINEL_TEST_KAFKA=host:port`).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Harness, assert_no_more, by_partition, new_topic, poll_n, read_all, rec, text, unique, values,
};
use sentinel_log::{Error, EventLog, HEADER_EVENT_ID, Position, Record, highest_per_partition};

/// Runs each scenario once per backend: `sqlite::<name>` and `kafka::<name>`.
macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::Harness::sqlite().await.run(super::$scenario).await;
                }
            )*
        }
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::Harness::kafka().await.run(super::$scenario).await;
                }
            )*
        }
    };
}

conformance!(
    append_returns_positions_in_order,
    per_key_order_is_preserved,
    read_starts_at_the_given_offset,
    resubscribing_resumes_after_the_committed_offset,
    uncommitted_records_are_redelivered_after_a_crash,
    a_new_group_starts_from_the_beginning,
    unknown_topics_are_errors,
    headers_round_trip,
    recent_event_ids_are_the_tail,
    leaving_during_the_group_join_does_not_stall_the_group,
);

/// Offsets strictly increase in call order within each partition.
fn assert_increasing_per_partition(positions: &[Position]) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for p in positions {
        if let Some(prev) = last.insert(p.partition, p.offset) {
            assert!(p.offset > prev, "offsets not increasing: {positions:?}");
        }
    }
}

async fn append_returns_positions_in_order(log: Arc<dyn EventLog>) {
    let topic = new_topic(&log, 3).await;
    assert!(log.append(&topic, Vec::new()).await.unwrap().is_empty());

    let first: Vec<Record> = (0..5).map(|i| rec("acme/api", format!("a{i}"))).collect();
    let p1 = log.append(&topic, first.clone()).await.unwrap();
    assert_eq!(p1.len(), 5);
    assert!(
        p1.iter().all(|p| p.partition == p1[0].partition),
        "one key, one partition: {p1:?}"
    );
    assert_increasing_per_partition(&p1);

    let p2 = log
        .append(&topic, vec![rec("acme/api", "a5"), rec("acme/api", "a6")])
        .await
        .unwrap();
    assert_eq!(p2.len(), 2);
    assert_eq!(p2[0].partition, p1[0].partition);
    assert!(p2[0].offset > p1[4].offset, "{p1:?} then {p2:?}");

    let mixed: Vec<Record> = (0..12)
        .map(|i| rec(&format!("acme/r{}", i % 4), format!("m{i}")))
        .collect();
    let p3 = log.append(&topic, mixed.clone()).await.unwrap();
    assert_eq!(p3.len(), mixed.len());
    assert_increasing_per_partition(&p3);

    // Each returned position holds the record appended there.
    for (pos, record) in p3.iter().zip(&mixed) {
        let got = log
            .read(&topic, pos.partition, pos.offset, 1)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "nothing at {pos:?}");
        assert_eq!(got[0].topic, topic);
        assert_eq!(got[0].position, *pos);
        assert_eq!(got[0].record, *record);
    }

    // The high-water mark is past every appended record.
    let ends = log.end_offsets(&topic).await.unwrap();
    assert_eq!(
        ends.len(),
        usize::try_from(log.partitions(&topic).await.unwrap()).unwrap()
    );
    for p in p1.iter().chain(&p2).chain(&p3) {
        assert!(
            ends[usize::try_from(p.partition).unwrap()] > p.offset,
            "{ends:?} vs {p:?}"
        );
    }
}

async fn per_key_order_is_preserved(log: Arc<dyn EventLog>) {
    let topic = new_topic(&log, 3).await;
    let keys: Vec<String> = (0..6).map(|k| format!("tenant-{k}/repo")).collect();
    let mut seq: BTreeMap<&str, usize> = BTreeMap::new();
    // Three appends, each interleaving all keys.
    for _ in 0..3 {
        let mut batch = Vec::new();
        for i in 0..30 {
            let key = &keys[i % keys.len()];
            let n = seq.entry(key).or_default();
            batch.push(rec(key, format!("{key}#{n:03}")));
            *n += 1;
        }
        log.append(&topic, batch).await.unwrap();
    }

    let all = read_all(&log, &topic).await;
    assert_eq!(all.len(), 90);
    let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut partitions_of_key: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for partition in by_partition(&all).values() {
        for (_, value) in partition {
            let key = value.split('#').next().unwrap().to_owned();
            per_key.entry(key.clone()).or_default().push(value.clone());
        }
    }
    for r in &all {
        partitions_of_key
            .entry(r.record.key.clone())
            .or_default()
            .insert(r.position.partition);
    }
    for key in &keys {
        let expected: Vec<String> = (0..15).map(|n| format!("{key}#{n:03}")).collect();
        assert_eq!(per_key[key], expected, "order of {key}");
        assert_eq!(
            partitions_of_key[key].len(),
            1,
            "{key} spread over partitions"
        );
    }
    if log.partitions(&topic).await.unwrap() > 1 {
        let used: BTreeSet<i32> = all.iter().map(|r| r.position.partition).collect();
        assert!(
            used.len() > 1,
            "all keys landed in one partition; the test proves little"
        );
    }
}

async fn read_starts_at_the_given_offset(log: Arc<dyn EventLog>) {
    let topic = new_topic(&log, 3).await;
    let records: Vec<Record> = (0..10).map(|i| rec("acme/web", format!("r{i}"))).collect();
    let pos = log.append(&topic, records).await.unwrap();
    let p = pos[0].partition;

    let got = log.read(&topic, p, pos[4].offset, 3).await.unwrap();
    assert_eq!(got.iter().map(text).collect::<Vec<_>>(), ["r4", "r5", "r6"]);
    assert_eq!(
        got.iter().map(|s| s.position).collect::<Vec<_>>(),
        pos[4..7]
    );

    // Stops at the end of the partition instead of waiting for more.
    let started = Instant::now();
    let tail = log.read(&topic, p, pos[8].offset, 100).await.unwrap();
    assert_eq!(tail.iter().map(text).collect::<Vec<_>>(), ["r8", "r9"]);
    let past_end = log.read(&topic, p, pos[9].offset + 1, 10).await.unwrap();
    assert!(past_end.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "reads at the end waited"
    );

    let everything = log.read(&topic, p, 0, 100).await.unwrap();
    assert_eq!(everything.len(), 10);
    assert!(log.read(&topic, p, 0, 0).await.unwrap().is_empty());

    let partitions = log.partitions(&topic).await.unwrap();
    if partitions > 1 {
        let other = (p + 1) % partitions;
        assert!(log.read(&topic, other, 0, 10).await.unwrap().is_empty());
    }
}

async fn resubscribing_resumes_after_the_committed_offset(log: Arc<dyn EventLog>) {
    let topic = new_topic(&log, 2).await;
    let group = unique("group");
    let records: Vec<Record> = (0..8)
        .map(|i| rec(&format!("acme/r{}", i % 4), format!("v{i}")))
        .collect();
    log.append(&topic, records).await.unwrap();
    assert!(log.committed(&group, &topic).await.unwrap().is_empty());

    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    let got = poll_n(&mut sub, 8).await;
    assert_eq!(
        values(&got),
        (0..8).map(|i| format!("v{i}")).collect::<Vec<_>>()
    );

    // Process (and commit) only the first half, in delivery order.
    let processed: Vec<Position> = got[..4].iter().map(|s| s.position).collect();
    sub.commit(&processed).await.unwrap();
    let expected_committed: Vec<(i32, i64)> = highest_per_partition(&processed)
        .iter()
        .map(|p| (p.partition, p.offset + 1))
        .collect();
    assert_eq!(
        log.committed(&group, &topic).await.unwrap(),
        expected_committed
    );
    sub.close().await.unwrap();

    let committed: BTreeMap<i32, i64> = expected_committed.into_iter().collect();
    let remaining: Vec<_> = got
        .iter()
        .filter(|s| {
            committed
                .get(&s.position.partition)
                .is_none_or(|c| s.position.offset >= *c)
        })
        .cloned()
        .collect();
    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    let again = poll_n(&mut sub, remaining.len()).await;
    assert_eq!(values(&again), values(&remaining));
    assert_no_more(&mut sub, Duration::from_millis(1500)).await;

    // Committing everything moves the group to the end.
    let all: Vec<Position> = again.iter().map(|s| s.position).collect();
    sub.commit(&all).await.unwrap();
    sub.close().await.unwrap();
    let ends = log.end_offsets(&topic).await.unwrap();
    for (partition, offset) in log.committed(&group, &topic).await.unwrap() {
        assert_eq!(offset, ends[usize::try_from(partition).unwrap()]);
    }
}

async fn uncommitted_records_are_redelivered_after_a_crash(log: Arc<dyn EventLog>) {
    let topic = new_topic(&log, 2).await;
    let group = unique("group");
    let records: Vec<Record> = (0..6)
        .map(|i| rec(&format!("acme/r{}", i % 3), format!("v{i}")))
        .collect();
    log.append(&topic, records).await.unwrap();

    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    let got = poll_n(&mut sub, 6).await;
    let processed = [got[0].position, got[1].position];
    sub.commit(&processed).await.unwrap();
    // The consumer dies without committing the rest (and without leaving cleanly).
    drop(sub);
    log.append(&topic, vec![rec("acme/r0", "v6"), rec("acme/r1", "v7")])
        .await
        .unwrap();

    let committed: BTreeMap<i32, i64> = highest_per_partition(&processed)
        .iter()
        .map(|p| (p.partition, p.offset + 1))
        .collect();
    let mut expected: Vec<String> = got
        .iter()
        .filter(|s| {
            committed
                .get(&s.position.partition)
                .is_none_or(|c| s.position.offset >= *c)
        })
        .map(text)
        .chain(["v6".to_owned(), "v7".to_owned()])
        .collect();
    expected.sort();
    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    let again = poll_n(&mut sub, expected.len()).await;
    assert_eq!(values(&again), expected);
    sub.close().await.unwrap();
}

/// A member closed right after subscribing (on Kafka its group join is still in progress)
/// must not leave the group unable to form: the next member gets every record. On tansu
/// 0.6 a member leaving between its JoinGroup and SyncGroup used to stay the leader of the
/// forming group, answering every later SyncGroup with REBALANCE_IN_PROGRESS for good.
async fn leaving_during_the_group_join_does_not_stall_the_group(log: Arc<dyn EventLog>) {
    let topic = new_topic(&log, 2).await;
    let group = unique("group");
    let records: Vec<Record> = (0..4)
        .map(|i| rec(&format!("acme/r{i}"), format!("v{i}")))
        .collect();
    log.append(&topic, records).await.unwrap();

    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    // Whatever arrives is not committed: the next member gets it again.
    let _ = sub.poll(10, Duration::from_millis(10)).await.unwrap();
    sub.close().await.unwrap();

    let mut sub = log.subscribe(&group, &topic).await.unwrap();
    let got = poll_n(&mut sub, 4).await;
    assert_eq!(values(&got), vec!["v0", "v1", "v2", "v3"]);
    sub.close().await.unwrap();
}

async fn a_new_group_starts_from_the_beginning(log: Arc<dyn EventLog>) {
    let topic = new_topic(&log, 2).await;
    let records: Vec<Record> = (0..5)
        .map(|i| rec(&format!("acme/r{i}"), format!("v{i}")))
        .collect();
    log.append(&topic, records).await.unwrap();

    let first = unique("group");
    let mut sub = log.subscribe(&first, &topic).await.unwrap();
    let got = poll_n(&mut sub, 5).await;
    sub.commit(&got.iter().map(|s| s.position).collect::<Vec<_>>())
        .await
        .unwrap();
    sub.close().await.unwrap();
    assert!(!log.committed(&first, &topic).await.unwrap().is_empty());

    let second = unique("group");
    assert!(log.committed(&second, &topic).await.unwrap().is_empty());
    let mut sub = log.subscribe(&second, &topic).await.unwrap();
    let got = poll_n(&mut sub, 5).await;
    assert_eq!(
        values(&got),
        (0..5).map(|i| format!("v{i}")).collect::<Vec<_>>()
    );
    sub.close().await.unwrap();
}

async fn unknown_topics_are_errors(log: Arc<dyn EventLog>) {
    let missing = unique("test.missing");
    let started = Instant::now();
    let unknown = |r: Result<(), Error>, what: &str| match r {
        Err(Error::UnknownTopic(t)) => assert_eq!(t, missing, "{what}"),
        other => panic!("{what}: expected UnknownTopic, got {other:?}"),
    };
    unknown(
        log.append(&missing, vec![rec("k", "v")]).await.map(drop),
        "append",
    );
    unknown(log.read(&missing, 0, 0, 10).await.map(drop), "read");
    unknown(log.partitions(&missing).await.map(drop), "partitions");
    unknown(log.end_offsets(&missing).await.map(drop), "end_offsets");
    unknown(log.subscribe("g", &missing).await.map(drop), "subscribe");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "unknown topics should fail fast"
    );

    // Creating it afterwards works (no negative result is cached).
    log.ensure_topic(&missing, 1).await.unwrap();
    log.ensure_topic(&missing, 1).await.unwrap();
    let pos = log.append(&missing, vec![rec("k", "v")]).await.unwrap();
    assert_eq!(pos.len(), 1);
}

async fn headers_round_trip(log: Arc<dyn EventLog>) {
    let topic = new_topic(&log, 1).await;
    let record = Record {
        key: "acme/api".to_owned(),
        value: vec![0, 1, 2, 0xff, 0],
        headers: vec![
            (
                HEADER_EVENT_ID.to_owned(),
                b"0b5e7c1e-7c8e-4a8e-9d1a-6c1f0e7d9a10".to_vec(),
            ),
            ("binary".to_owned(), vec![0xff, 0, 0x80]),
            ("empty".to_owned(), Vec::new()),
            ("dup".to_owned(), b"first".to_vec()),
            ("dup".to_owned(), b"second".to_vec()),
        ],
    };
    let empty_value = Record {
        key: "acme/api".to_owned(),
        value: Vec::new(),
        headers: Vec::new(),
    };
    let pos = log
        .append(&topic, vec![record.clone(), empty_value.clone()])
        .await
        .unwrap();

    let got = log
        .read(&topic, pos[0].partition, pos[0].offset, 2)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].record, record);
    assert_eq!(got[0].header("dup"), Some("first"));
    assert_eq!(got[1].record, empty_value);

    let mut sub = log.subscribe(&unique("group"), &topic).await.unwrap();
    let consumed = poll_n(&mut sub, 2).await;
    assert_eq!(consumed[0].record, record);
    assert_eq!(consumed[1].record, empty_value);
    sub.close().await.unwrap();
}

/// `recent_event_ids` gives the ids of the last records, oldest first, skipping records
/// without an id.
async fn recent_event_ids_are_the_tail(log: Arc<dyn EventLog>) {
    let topic = new_topic(&log, 1).await;
    assert!(log.recent_event_ids(&topic, 10).await.unwrap().is_empty());
    let records: Vec<Record> = (0..8).map(|i| rec("acme/api", format!("r{i}"))).collect();
    let ids: Vec<String> = records
        .iter()
        .map(|r| r.header(HEADER_EVENT_ID).unwrap().to_owned())
        .collect();
    log.append(&topic, records).await.unwrap();
    let mut anonymous = rec("acme/api", "no id");
    anonymous.headers.retain(|(n, _)| n != HEADER_EVENT_ID);
    log.append(&topic, vec![anonymous]).await.unwrap();
    // The last four records: three with ids and the anonymous one.
    assert_eq!(log.recent_event_ids(&topic, 4).await.unwrap(), ids[5..]);
    assert_eq!(log.recent_event_ids(&topic, 100).await.unwrap(), ids);
    assert!(log.recent_event_ids(&topic, 0).await.unwrap().is_empty());
    assert!(matches!(
        log.recent_event_ids(&unique("test.missing"), 4).await,
        Err(Error::UnknownTopic(_))
    ));
}

/// The embedded log deduplicates appends on the `event_id` header (Kafka does not; its
/// consumers deduplicate).
#[tokio::test]
async fn sqlite_deduplicates_on_event_id() {
    Harness::sqlite()
        .await
        .run(|log| async move {
            let topic = new_topic(&log, 1).await;
            let original = rec("acme/api", "original");
            let mut again = original.clone();
            again.value = b"redelivered".to_vec();
            let first = log.append(&topic, vec![original.clone()]).await.unwrap();
            let second = log
                .append(&topic, vec![again.clone(), rec("acme/api", "new")])
                .await
                .unwrap();
            assert_eq!(
                second[0], first[0],
                "a duplicate returns the earlier position"
            );
            assert!(second[1].offset > first[0].offset);
            // Within one batch too.
            let dup = rec("acme/api", "twice");
            let third = log.append(&topic, vec![dup.clone(), dup]).await.unwrap();
            assert_eq!(third[0], third[1]);
            let all = read_all(&log, &topic).await;
            assert_eq!(
                all.iter().map(text).collect::<Vec<_>>(),
                ["original", "new", "twice"]
            );
            // Per topic: the same event id may be appended to another topic.
            let other = new_topic(&log, 1).await;
            assert_eq!(log.append(&other, vec![original]).await.unwrap().len(), 1);
            assert_eq!(read_all(&log, &other).await.len(), 1);
        })
        .await;
}

/// Concurrent appends on the embedded log are committed together by its writer thread;
/// each caller still gets the positions of its own records (also for a duplicate event id
/// sent by two callers at once), and everything acknowledged is in the file when it is
/// opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_appends_get_their_own_positions_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    let log: Arc<dyn EventLog> =
        Arc::new(sentinel_log::sqlite::SqliteLog::open(&path).await.unwrap());
    let topic = new_topic(&log, 1).await;
    let shared = rec("acme/api", "shared");
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..40 {
        let (log, topic, shared) = (log.clone(), topic.clone(), shared.clone());
        tasks.spawn(async move {
            let mut records: Vec<Record> = (0..3)
                .map(|i| rec("acme/api", format!("t{t}-{i}")))
                .collect();
            if t % 10 == 0 {
                records.push(shared);
            }
            let positions = log.append(&topic, records.clone()).await.unwrap();
            (records, positions)
        });
    }
    let mut acknowledged = Vec::new();
    while let Some(r) = tasks.join_next().await {
        acknowledged.push(r.unwrap());
    }
    drop(log);
    let reopened: Arc<dyn EventLog> =
        Arc::new(sentinel_log::sqlite::SqliteLog::open(&path).await.unwrap());
    let all = read_all(&reopened, &topic).await;
    assert_eq!(all.len(), 40 * 3 + 1, "the shared record is stored once");
    let by_offset: BTreeMap<i64, &Record> =
        all.iter().map(|s| (s.position.offset, &s.record)).collect();
    for (records, positions) in &acknowledged {
        assert_eq!(records.len(), positions.len());
        assert_increasing_per_partition(&positions[..3]);
        for (record, p) in records.iter().zip(positions) {
            assert_eq!(by_offset[&p.offset].value, record.value);
        }
    }
}

/// `Topology::apply_to` creates what is missing and reports drift on what exists, against
/// a real Kafka-protocol broker. Topic names are made unique so an external broker is not
/// polluted with Sentinel's real topic names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_topology_apply_creates_then_reports_drift() {
    use sentinel_log::topology::{Action, Topology};

    let harness = Harness::kafka().await;
    let broker = harness.broker.as_ref().unwrap();
    let log = broker.connect().await.unwrap();
    let prefix = unique("t");
    let topics = Topology::builtin()
        .unwrap()
        .topics()
        .iter()
        .map(|t| {
            let mut t = t.clone();
            t.name = format!("{prefix}.{}", t.name);
            t
        })
        .collect();
    let topology = Topology::from_topics(topics).unwrap();
    let events = format!("{prefix}.sentinel.events");
    // Someone created the fact log by hand, with too few partitions.
    log.ensure_topic(&events, 2).await.unwrap();

    let report = tokio::time::timeout(Duration::from_secs(60), topology.apply_to(&log))
        .await
        .unwrap()
        .unwrap();
    println!("{report}");
    for row in &report.rows {
        if row.topic == events {
            match &row.action {
                Action::Drift(d) => assert!(
                    d.iter().any(|d| d.starts_with("partitions 2 (declared 6)")),
                    "{report}"
                ),
                other => panic!("expected drift on {events}, got {other:?}\n{report}"),
            }
        } else {
            assert_eq!(row.action, Action::Created, "{report}");
        }
    }
    for t in topology.topics() {
        let partitions = log.partitions(&t.name).await.unwrap();
        let expected = if t.name == events { 2 } else { t.partitions };
        assert_eq!(partitions, expected, "{}", t.name);
    }

    let again = topology.apply_to(&log).await.unwrap();
    println!("{again}");
    for row in &again.rows {
        if row.topic != events {
            assert!(matches!(row.action, Action::Ok), "{again}");
        }
    }
}
