//! The Kafka backend: any Kafka-protocol broker through rdkafka's bundled librdkafka.
//!
//! * Appends go through one idempotent [`FutureProducer`] (`enable.idempotence=true`,
//!   `acks=all`); a batch is enqueued in order and every delivery is awaited, so records
//!   with the same key keep their order even across retries.
//! * Group-less reads ([`EventLog::read`]) use one shared reader that is assigned to the
//!   partition at the requested offset and stops at the end of the partition, so a read
//!   never waits for new data. The end is found from the fetch (librdkafka's partition
//!   EOF) and the high-water mark is only trusted as a lower bound: tansu 0.6 reports the
//!   base offset of the last batch + 1 as the high-water mark, which understates the end
//!   after a multi-record batch. [`EventLog::end_offsets`] corrects for that by reading the
//!   partition's tail.
//! * Subscriptions are consumer-group members with automatic commits and automatic offset
//!   stores disabled: progress is committed only through [`Subscription::commit`].
//! * Topics are never auto-created: appending to, reading or subscribing to a topic the
//!   broker does not know fails fast with [`Error::UnknownTopic`].
//!
//! librdkafka's API is partly blocking (metadata, watermarks, synchronous commits); those
//! calls run on tokio's blocking pool.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigResourceResult, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header as KafkaHeader, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::time::Instant;

use crate::{
    Error, EventLog, Header, Position, Record, Result, Stored, Subscription, highest_per_partition,
};

/// How long [`Subscription::poll`] keeps collecting once it has at least one record.
const POLL_LINGER: Duration = Duration::from_millis(10);
/// Back-off while the producer queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// Settings of the Kafka clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// `client.id` of every client (default `sentinel`).
    pub client_id: String,
    /// `session.timeout.ms` of consumer-group members (default 10000). A member that stops
    /// heartbeating is evicted after this long; group joins also take about this long on
    /// some brokers, so tests set it low (Apache Kafka accepts 6000 and up by default).
    pub session_timeout_ms: u32,
    /// `message.timeout.ms` of the producer (default 30000): an append fails rather than
    /// waits longer than this for an acknowledgement.
    pub message_timeout_ms: u32,
    /// Timeout of metadata, watermark, offset and admin requests (default 10 s).
    pub request_timeout: Duration,
    /// Replication factor of topics created by [`EventLog::ensure_topic`] (default `-1`:
    /// the broker's `default.replication.factor`). The topology declares its own.
    pub replication_factor: i32,
    /// Further librdkafka settings applied to every client last (so they may override the
    /// ones above), e.g. `security.protocol`, `sasl.mechanism`.
    pub extra: Vec<(String, String)>,
}

impl Default for KafkaOptions {
    fn default() -> Self {
        Self {
            client_id: "sentinel".to_owned(),
            session_timeout_ms: 10_000,
            message_timeout_ms: 30_000,
            request_timeout: Duration::from_secs(10),
            replication_factor: -1,
            extra: Vec::new(),
        }
    }
}

/// The Kafka event log. Cheap to clone; clones share the clients.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    brokers: String,
    opts: KafkaOptions,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// The group-less reader behind [`EventLog::read`], created on first use.
    reader: tokio::sync::Mutex<Option<StreamConsumer<ReaderContext>>>,
    /// Topics known to exist (checked before producing so a missing topic fails fast).
    known_topics: StdMutex<HashSet<String>>,
}

impl fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.inner.brokers)
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

/// What [`KafkaLog::create_topic`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The topic was created.
    Created,
    /// The topic already existed; nothing was changed.
    AlreadyExisted,
}

/// The layout of an existing topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    /// Number of partitions.
    pub partitions: i32,
    /// Replicas per partition (the smallest over the partitions).
    pub replication_factor: i32,
}

/// Runs a blocking librdkafka call on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

fn is_unknown_topic(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
    )
}

/// Maps a Kafka error about `topic` to [`Error::UnknownTopic`] when the broker says the
/// topic does not exist.
fn map_topic_error(topic: &str, e: KafkaError) -> Error {
    match e.rdkafka_error_code() {
        Some(code) if is_unknown_topic(code) => Error::UnknownTopic(topic.to_owned()),
        _ => Error::Kafka(e),
    }
}

impl KafkaLog {
    /// Connects to the cluster at `brokers` (`host:port[,host:port]`) and checks that it
    /// answers a metadata request within [`KafkaOptions::request_timeout`].
    ///
    /// # Errors
    ///
    /// [`Error::Kafka`] when a client cannot be created (invalid settings) or the cluster
    /// does not answer.
    pub async fn connect(brokers: &str, opts: KafkaOptions) -> Result<Self> {
        let producer: FutureProducer = client_config(brokers, &opts, |c| {
            c.set("enable.idempotence", "true")
                .set("acks", "all")
                .set("message.timeout.ms", opts.message_timeout_ms.to_string())
                .set("allow.auto.create.topics", "false")
                .set("linger.ms", "5");
        })
        .create()?;
        let admin: AdminClient<DefaultClientContext> = client_config(brokers, &opts, |c| {
            c.set("allow.auto.create.topics", "false");
        })
        .create()?;
        let log = Self {
            inner: Arc::new(Inner {
                brokers: brokers.to_owned(),
                opts,
                producer,
                admin,
                reader: tokio::sync::Mutex::new(None),
                known_topics: StdMutex::new(HashSet::new()),
            }),
        };
        let this = log.clone();
        let timeout = log.inner.opts.request_timeout;
        blocking(move || {
            this.inner.admin.inner().fetch_metadata(None, timeout)?;
            Ok(())
        })
        .await?;
        Ok(log)
    }

    /// The bootstrap servers this log talks to.
    pub fn brokers(&self) -> &str {
        &self.inner.brokers
    }

    /// The options this log was connected with.
    pub fn options(&self) -> &KafkaOptions {
        &self.inner.opts
    }

    /// Every topic of the cluster (internal topics included) with its layout.
    ///
    /// # Errors
    ///
    /// [`Error::Kafka`] when the metadata request fails.
    pub async fn topics(&self) -> Result<HashMap<String, TopicInfo>> {
        let this = self.clone();
        blocking(move || {
            let md = this
                .inner
                .admin
                .inner()
                .fetch_metadata(None, this.inner.opts.request_timeout)?;
            Ok(md
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| {
                    let info = TopicInfo {
                        partitions: partition_count(t.partitions().len()),
                        replication_factor: t
                            .partitions()
                            .iter()
                            .map(|p| partition_count(p.replicas().len()))
                            .min()
                            .unwrap_or(0),
                    };
                    (t.name().to_owned(), info)
                })
                .collect())
        })
        .await
    }

    /// Creates `topic` with the given partitions, replication factor and topic configs
    /// (`retention.ms`, `cleanup.policy`, …) unless it exists, then waits until the
    /// cluster's metadata shows it.
    ///
    /// # Errors
    ///
    /// [`Error::Kafka`] when the broker rejects the creation for another reason than the
    /// topic already existing; [`Error::Timeout`] when the topic does not show up in the
    /// metadata in time.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(&str, &str)],
    ) -> Result<Created> {
        let mut new_topic = NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(replication_factor),
        );
        for (k, v) in configs {
            new_topic = new_topic.set(k, v);
        }
        let results = self
            .inner
            .admin
            .create_topics([&new_topic], &self.admin_options())
            .await?;
        let mut outcome = Created::Created;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    outcome = Created::AlreadyExisted;
                }
                Err((_, code)) => return Err(Error::Kafka(KafkaError::AdminOp(code))),
            }
        }
        self.wait_for_topic(topic).await?;
        Ok(outcome)
    }

    /// The configuration entries of `topic` (name → value) as the broker describes them.
    /// Apache Kafka reports every entry, defaults included; some Kafka-protocol brokers
    /// (tansu) report only the ones set when the topic was created.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownTopic`] when the topic does not exist; [`Error::Kafka`] when the
    /// broker cannot describe configurations (not every Kafka-protocol broker implements
    /// `DescribeConfigs`).
    pub async fn topic_configs(&self, topic: &str) -> Result<HashMap<String, String>> {
        let results: Vec<ConfigResourceResult> = self
            .inner
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &self.admin_options())
            .await?;
        let mut out = HashMap::new();
        for result in results {
            let resource = result.map_err(|code| {
                if is_unknown_topic(code) {
                    Error::UnknownTopic(topic.to_owned())
                } else {
                    Error::Kafka(KafkaError::AdminOp(code))
                }
            })?;
            for entry in resource.entries {
                if let Some(value) = entry.value {
                    out.insert(entry.name, value);
                }
            }
        }
        Ok(out)
    }

    fn admin_options(&self) -> AdminOptions {
        let t = self.inner.opts.request_timeout;
        AdminOptions::new()
            .request_timeout(Some(t))
            .operation_timeout(Some(t))
    }

    /// The partition count of `topic` from fresh metadata.
    async fn fetch_partitions(&self, topic: &str) -> Result<i32> {
        let this = self.clone();
        let name = topic.to_owned();
        let n = blocking(move || this.partitions_blocking(&name)).await?;
        self.remember(topic);
        Ok(n)
    }

    fn partitions_blocking(&self, topic: &str) -> Result<i32> {
        let md = self
            .inner
            .admin
            .inner()
            .fetch_metadata(Some(topic), self.inner.opts.request_timeout)
            .map_err(|e| map_topic_error(topic, e))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_owned()))?;
        if let Some(err) = t.error() {
            let code = RDKafkaErrorCode::from(err);
            return Err(if is_unknown_topic(code) {
                Error::UnknownTopic(topic.to_owned())
            } else {
                Error::Kafka(KafkaError::MetadataFetch(code))
            });
        }
        if t.partitions().is_empty() {
            return Err(Error::UnknownTopic(topic.to_owned()));
        }
        Ok(partition_count(t.partitions().len()))
    }

    /// Polls the metadata until `topic` shows up with leaders for all its partitions.
    async fn wait_for_topic(&self, topic: &str) -> Result<()> {
        let deadline = Instant::now() + self.inner.opts.request_timeout;
        let mut nap = Duration::from_millis(20);
        loop {
            let this = self.clone();
            let name = topic.to_owned();
            let ready = blocking(move || {
                this.partitions_blocking(&name)?;
                let md = this
                    .inner
                    .admin
                    .inner()
                    .fetch_metadata(Some(&name), this.inner.opts.request_timeout)?;
                Ok(md
                    .topics()
                    .iter()
                    .filter(|t| t.name() == name)
                    .flat_map(|t| t.partitions())
                    .all(|p| p.error().is_none() && p.leader() >= 0))
            })
            .await;
            match ready {
                Ok(true) => {
                    self.remember(topic);
                    return Ok(());
                }
                Ok(false) | Err(Error::UnknownTopic(_)) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() + nap > deadline {
                return Err(Error::Timeout(
                    self.inner.opts.request_timeout,
                    "topic metadata",
                ));
            }
            tokio::time::sleep(nap).await;
            nap = (nap * 2).min(Duration::from_millis(500));
        }
    }

    fn remember(&self, topic: &str) {
        if let Ok(mut known) = self.inner.known_topics.lock() {
            known.insert(topic.to_owned());
        }
    }

    fn forget(&self, topic: &str) {
        if let Ok(mut known) = self.inner.known_topics.lock() {
            known.remove(topic);
        }
    }

    fn is_known(&self, topic: &str) -> bool {
        self.inner
            .known_topics
            .lock()
            .is_ok_and(|known| known.contains(topic))
    }

    /// Fails with [`Error::UnknownTopic`] unless `topic` exists (cached once seen).
    async fn require_topic(&self, topic: &str) -> Result<()> {
        if !self.is_known(topic) {
            self.fetch_partitions(topic).await?;
        }
        Ok(())
    }

    async fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        let this = self.clone();
        let name = topic.to_owned();
        blocking(move || {
            this.inner
                .admin
                .inner()
                .fetch_watermarks(&name, partition, this.inner.opts.request_timeout)
                .map_err(|e| map_topic_error(&name, e))
        })
        .await
    }

    fn new_reader(&self) -> Result<StreamConsumer<ReaderContext>> {
        // librdkafka only assigns partitions to a consumer with a group id; this one never
        // joins its group nor commits, so the id only has to be unique.
        let group = format!(
            "{}.reader.{}.{}",
            self.inner.opts.client_id,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        Ok(client_config(&self.inner.brokers, &self.inner.opts, |c| {
            c.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("enable.partition.eof", "true")
                .set("auto.offset.reset", "earliest")
                .set("allow.auto.create.topics", "false")
                // Reads stop at the end of the partition: no point in long polls.
                .set("fetch.wait.max.ms", "10");
        })
        .create_with_context(ReaderContext)?)
    }

    /// Reads partitions of `topic` from the given offsets with the shared reader until each
    /// reaches its end (librdkafka's partition EOF) or `max` records.
    ///
    /// The end is detected from the fetch, not from the high-water mark the broker reports
    /// for `ListOffsets`: some Kafka-protocol brokers (tansu 0.6) report the base offset
    /// of the last batch + 1 there, which understates the end of multi-record batches.
    async fn consume(
        &self,
        topic: &str,
        starts: &[(i32, i64)],
        max: usize,
    ) -> Result<BTreeMap<i32, Vec<Stored>>> {
        let mut out: BTreeMap<i32, Vec<Stored>> = BTreeMap::new();
        if starts.is_empty() || max == 0 {
            return Ok(out);
        }
        let mut reader = self.inner.reader.lock().await;
        let consumer = match reader.take() {
            Some(c) => c,
            None => self.new_reader()?,
        };
        let mut tpl = TopicPartitionList::new();
        for (partition, start) in starts {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*start))?;
        }
        consumer.assign(&tpl)?;

        let timeout = self.inner.opts.request_timeout;
        let deadline = Instant::now() + timeout;
        let mut open: HashMap<i32, i64> = starts.iter().copied().collect();
        let outcome = loop {
            if open.is_empty() {
                break Ok(());
            }
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Err(_elapsed) => break Err(Error::Timeout(timeout, "the end of the partition")),
                Ok(Ok(m)) => {
                    let partition = m.partition();
                    let Some(&start) = open.get(&partition).filter(|_| m.topic() == topic) else {
                        continue;
                    };
                    let records = out.entry(partition).or_default();
                    let stale = m.offset() < start
                        || records
                            .last()
                            .is_some_and(|l| l.position.offset >= m.offset());
                    if stale {
                        continue;
                    }
                    records.push(stored(&m));
                    if records.len() >= max {
                        open.remove(&partition);
                    }
                }
                Ok(Err(KafkaError::PartitionEOF(partition))) => {
                    open.remove(&partition);
                }
                Ok(Err(e)) => break Err(map_topic_error(topic, e)),
            }
        };
        // A reader left assigned would keep fetching; a broken one is recreated next time.
        if consumer.unassign().is_ok() && outcome.is_ok() {
            *reader = Some(consumer);
        } else {
            drop(reader);
            drop(tokio::task::spawn_blocking(move || drop(consumer)));
        }
        match outcome {
            // Records up to a timeout are still a valid (shorter) answer.
            Err(Error::Timeout(..)) if out.values().any(|r| !r.is_empty()) => Ok(out),
            Err(e) => Err(e),
            Ok(()) => Ok(out),
        }
    }

    /// The end of each of `partitions` (the offset after its last record), in order.
    ///
    /// Starts from the reported high-water mark and reads the partition's tail from the
    /// record before it, so a broker that understates the mark (see
    /// [`KafkaLog::consume`]) still yields the true end.
    async fn ends(&self, topic: &str, partitions: &[i32]) -> Result<Vec<i64>> {
        let this = self.clone();
        let name = topic.to_owned();
        let list = partitions.to_vec();
        let marks: Vec<(i64, i64)> = blocking(move || {
            list.iter()
                .map(|&p| {
                    this.inner
                        .admin
                        .inner()
                        .fetch_watermarks(&name, p, this.inner.opts.request_timeout)
                        .map_err(|e| map_topic_error(&name, e))
                })
                .collect()
        })
        .await?;
        let tails: Vec<(i32, i64)> = partitions
            .iter()
            .zip(&marks)
            .filter(|(_, (low, high))| high > low)
            .map(|(&p, (_, high))| (p, high - 1))
            .collect();
        let tail = self.consume(topic, &tails, usize::MAX).await?;
        Ok(partitions
            .iter()
            .zip(&marks)
            .map(|(p, (_, high))| {
                let last = tail
                    .get(p)
                    .and_then(|r| r.last())
                    .map(|r| r.position.offset + 1);
                last.map_or(*high, |l| l.max(*high))
            })
            .collect())
    }
}

/// A client configuration with the common settings, `specific` ones, then the extras.
fn client_config(
    brokers: &str,
    opts: &KafkaOptions,
    specific: impl FnOnce(&mut ClientConfig),
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", &opts.client_id)
        .set(
            "socket.timeout.ms",
            opts.request_timeout.as_millis().to_string(),
        );
    specific(&mut c);
    for (k, v) in &opts.extra {
        c.set(k, v);
    }
    c
}

fn partition_count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn to_kafka_headers(headers: &[Header]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |h, (key, value)| {
            h.insert(KafkaHeader {
                key,
                value: Some(value),
            })
        },
    )
}

fn stored(m: &BorrowedMessage<'_>) -> Stored {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Stored {
        topic: m.topic().to_owned(),
        position: Position {
            partition: m.partition(),
            offset: m.offset(),
        },
        record: Record {
            key: m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
        },
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.require_topic(topic).await?;
        let enqueue_deadline =
            Instant::now() + Duration::from_millis(u64::from(self.inner.opts.message_timeout_ms));
        // Enqueue the whole batch in order first: librdkafka keeps per-partition order and,
        // being idempotent, keeps it across retries.
        let mut pending = Vec::with_capacity(records.len());
        let mut enqueue_error = None;
        'records: for r in &records {
            let mut record = FutureRecord::to(topic)
                .key(r.key.as_str())
                .payload(r.value.as_slice())
                .headers(to_kafka_headers(&r.headers));
            loop {
                match self.inner.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < enqueue_deadline =>
                    {
                        record = back;
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                    }
                    Err((e, _)) => {
                        enqueue_error = Some(map_topic_error(topic, e));
                        break 'records;
                    }
                }
            }
        }
        // Await every delivery (also after an error, so none is left in flight unobserved).
        let mut positions = Vec::with_capacity(pending.len());
        let mut first_error = enqueue_error;
        for delivery in pending {
            match delivery.await {
                Ok(Ok(d)) => positions.push(Position {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((e, _))) => {
                    first_error.get_or_insert_with(|| map_topic_error(topic, e));
                }
                Err(_canceled) => {
                    first_error.get_or_insert(Error::Kafka(KafkaError::Canceled));
                }
            }
        }
        match first_error {
            Some(e) => {
                if matches!(e, Error::UnknownTopic(_)) {
                    self.forget(topic);
                }
                Err(e)
            }
            None => Ok(positions),
        }
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max: usize,
    ) -> Result<Vec<Stored>> {
        let partitions = self.fetch_partitions(topic).await?;
        if max == 0 || partition < 0 || partition >= partitions {
            return Ok(Vec::new());
        }
        let (low, high) = self.watermarks(topic, partition).await?;
        let start = from.max(low);
        // At or past the reported end: check the true end before assigning (a fetch past
        // the end of a partition is answered with silence by some brokers).
        if start >= high {
            let end = self.ends(topic, &[partition]).await?;
            if end.first().is_none_or(|end| start >= *end) {
                return Ok(Vec::new());
            }
        }
        let mut read = self.consume(topic, &[(partition, start)], max).await?;
        Ok(read.remove(&partition).unwrap_or_default())
    }

    async fn partitions(&self, topic: &str) -> Result<i32> {
        self.fetch_partitions(topic).await
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<i64>> {
        let partitions = self.fetch_partitions(topic).await?;
        self.ends(topic, &(0..partitions).collect::<Vec<_>>()).await
    }

    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>> {
        self.fetch_partitions(topic).await?;
        let opts = &self.inner.opts;
        let heartbeat_ms = (opts.session_timeout_ms / 3).max(100);
        let consumer: GroupConsumer = client_config(&self.inner.brokers, opts, |c| {
            c.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set("allow.auto.create.topics", "false")
                .set("session.timeout.ms", opts.session_timeout_ms.to_string())
                .set("heartbeat.interval.ms", heartbeat_ms.to_string());
        })
        .create_with_context(GroupContext::default())?;
        consumer.subscribe(&[topic])?;
        Ok(Box::new(KafkaSubscription {
            consumer: Some(Arc::new(consumer)),
            topic: topic.to_owned(),
            pending_error: None,
            join_wait: Duration::from_millis(u64::from(opts.session_timeout_ms))
                .saturating_mul(2)
                .max(MIN_JOIN_WAIT),
        }))
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
        let partitions = self.fetch_partitions(topic).await?;
        let brokers = self.inner.brokers.clone();
        let opts = self.inner.opts.clone();
        let group = group.to_owned();
        let name = topic.to_owned();
        blocking(move || {
            let consumer: BaseConsumer = client_config(&brokers, &opts, |c| {
                c.set("group.id", &group)
                    .set("enable.auto.commit", "false")
                    .set("allow.auto.create.topics", "false");
            })
            .create()?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_range(&name, 0, partitions - 1);
            let committed = consumer.committed_offsets(tpl, opts.request_timeout)?;
            let mut out: Vec<(i32, i64)> = committed
                .elements_for_topic(&name)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some((e.partition(), o)),
                    _ => None,
                })
                .collect();
            out.sort_unstable();
            Ok(out)
        })
        .await
    }

    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        self.create_topic(topic, partitions, self.inner.opts.replication_factor, &[])
            .await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "kafka"
    }
}

/// Shortest time [`Subscription::close`] waits for a group join in progress to complete.
const MIN_JOIN_WAIT: Duration = Duration::from_secs(5);

/// Context of a group member: notes when the member got its first assignment, i.e. when
/// its join (JoinGroup + SyncGroup) completed.
#[derive(Debug, Default)]
struct GroupContext {
    joined: std::sync::atomic::AtomicBool,
}

impl rdkafka::ClientContext for GroupContext {}

impl rdkafka::consumer::ConsumerContext for GroupContext {
    fn post_rebalance(
        &self,
        _consumer: &BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if matches!(rebalance, rdkafka::consumer::Rebalance::Assign(_)) {
            self.joined.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

/// A consumer-group member on one topic.
struct KafkaSubscription {
    /// `None` only once closed.
    consumer: Option<Arc<GroupConsumer>>,
    topic: String,
    /// An error that arrived after records were collected, reported by the next poll so no
    /// collected record is dropped.
    pending_error: Option<Error>,
    /// How long leaving waits for a join in progress to complete.
    join_wait: Duration,
}

impl KafkaSubscription {
    fn consumer(&self) -> Result<Arc<GroupConsumer>> {
        self.consumer
            .clone()
            .ok_or(Error::Kafka(KafkaError::Subscription(
                "subscription closed".to_owned(),
            )))
    }
}

/// Leaves the group — but never in the middle of a join.
///
/// A member that leaves after its JoinGroup and before its SyncGroup may be the leader the
/// coordinator waits for: tansu (0.6) then keeps the departed member as the leader of the
/// forming group, so every later member's SyncGroup is answered REBALANCE_IN_PROGRESS and
/// the group never consumes again (Apache Kafka re-elects a leader; tansu does not). So a
/// member whose first assignment has not arrived yet keeps serving the join (records it
/// receives meanwhile are dropped: they are uncommitted, the next member gets them) for up
/// to `join_wait`, then leaves. Blocking librdkafka calls run on the blocking pool.
async fn leave_group(consumer: Arc<GroupConsumer>, join_wait: Duration) -> Result<()> {
    let deadline = Instant::now() + join_wait;
    while !consumer
        .context()
        .joined
        .load(std::sync::atomic::Ordering::SeqCst)
        && Instant::now() < deadline
    {
        // Serving the consumer queue is what lets librdkafka run the rebalance callback.
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    blocking(move || {
        consumer.unsubscribe();
        drop(consumer);
        Ok(())
    })
    .await
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Stored>> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let consumer = self.consumer()?;
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while out.len() < max {
            let until = if out.is_empty() {
                deadline
            } else {
                deadline.min(Instant::now() + POLL_LINGER)
            };
            let error = match tokio::time::timeout_at(until, consumer.recv()).await {
                Err(_elapsed) => break,
                Ok(Ok(m)) => {
                    out.push(stored(&m));
                    continue;
                }
                Ok(Err(e)) => e,
            };
            // librdkafka reports recoverable conditions (a broker connection lost, a
            // rebalance in progress) through the consumer too; it recovers on its own.
            let fatal = match &error {
                KafkaError::MessageConsumptionFatal(_) => true,
                KafkaError::MessageConsumption(code) => is_unknown_topic(*code),
                _ => false,
            };
            if !fatal {
                tracing::warn!(topic = %self.topic, error = %error, "kafka consumer");
                continue;
            }
            let error = map_topic_error(&self.topic, error);
            if out.is_empty() {
                return Err(error);
            }
            self.pending_error = Some(error);
            break;
        }
        Ok(out)
    }

    async fn commit(&mut self, processed: &[Position]) -> Result<()> {
        if processed.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for p in highest_per_partition(processed) {
            tpl.add_partition_offset(&self.topic, p.partition, Offset::Offset(p.offset + 1))?;
        }
        let consumer = self.consumer()?;
        blocking(move || Ok(consumer.commit(&tpl, CommitMode::Sync)?)).await
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(consumer) = self.consumer.take() {
            // Dropping the last handle leaves the group (blocking until the broker answers).
            leave_group(consumer, self.join_wait).await?;
        }
        Ok(())
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        // Leaving the group blocks; keep that off the async worker threads when possible.
        if let Some(consumer) = self.consumer.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let join_wait = self.join_wait;
            drop(handle.spawn(async move {
                if let Err(error) = leave_group(consumer, join_wait).await {
                    tracing::warn!(%error, "Leaving the consumer group failed.");
                }
            }));
        }
    }
}

/// Context of the group-less reader: it asks for partition-EOF events to find the end of a
/// partition, which librdkafka also reports as a global error; those are expected and not
/// logged. Other errors are logged as usual.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        tracing::error!(%error, reason, "librdkafka error.");
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}
