//! The stage runtime: one consumer loop used by every Sentinel stage.
//!
//! A [`Stage`] reads facts from a topic through a consumer group, handles each one, and
//! the runtime appends the facts it returns, then commits the input offsets — in that
//! order, so a crash between append and commit only causes re-processing (at-least-once),
//! and because output ids are derived deterministically from the input
//! ([`sentinel_events::Event::caused`]) the re-appended facts are recognised as duplicates.
//!
//! * A handler error marked [`HandlerError::Transient`] is retried with exponential backoff
//!   and jitter; after the configured attempts, or at once for a
//!   [`HandlerError::Poison`] error or an undecodable record, the input is written to the
//!   dead-letter topic with the reason and the stage moves on.
//! * Cancelling the shutdown token lets the record in flight finish, commits, and returns;
//!   a record whose handler is failing transiently is left uncommitted (handled again
//!   after the restart) instead of being retried to exhaustion.
//! * Stages that fold state ([`Stage::needs_history`]) are first fed every fact before their
//!   committed offset, so their state survives restarts — and, per partition, everything up
//!   to their own last output past that offset (outputs are appended before inputs are
//!   committed, so after a crash the stage's own decisions can lie ahead of where it
//!   resumes). When a partition comes to a member of a group after other members handled
//!   part of it (a Kafka rebalance), the records it missed are folded the same way before
//!   the next one is handled, so a stage keeping per-key state (the policy gate's per-tenant
//!   limits) never decides on a partial history.

#![forbid(unsafe_code)]

pub mod metrics;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use sentinel_events::facts::EventDeadLettered;
use sentinel_events::{Event, codec};
use sentinel_log::{EventLog, Position, Record, Stored};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::metrics::names;
use uuid::Uuid;

/// The fact log every pipeline stage reads and appends to.
pub const EVENTS_TOPIC: &str = "sentinel.events";
/// Dead letters: records a stage could not process, with the reason.
pub const DLQ_TOPIC: &str = "sentinel.dlq";
/// Work handed to agents by the controller (`TaskAssigned`, `TaskCancelled`), keyed by agent.
pub const TASKS_TOPIC: &str = "sentinel.tasks";
/// Failure reports produced straight to Kafka by CI systems.
pub const CI_FAILURES_TOPIC: &str = "sentinel.ci.failures";
/// The policy gate's inputs and decisions re-keyed by tenant (distributed deployments), so
/// one member of the policy consumer group owns each tenant's state.
pub const POLICY_TOPIC: &str = "sentinel.policy";

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the runtime itself (not of handlers).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log failed and retrying did not help.
    #[error("event log: {0}")]
    Log(#[from] sentinel_log::Error),
    /// An event could not be encoded (a defect in a fact type).
    #[error("encoding: {0}")]
    Encode(#[from] sentinel_events::Error),
    /// A stage's start-up failed.
    #[error("stage {stage} failed to start: {reason}")]
    Start {
        /// The stage.
        stage: String,
        /// Why.
        reason: String,
    },
}

/// What a handler can report instead of output facts.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (a dependency was down, a timeout).
    #[error("transient: {0}")]
    Transient(String),
    /// The input can never be processed; it goes to the dead-letter topic.
    #[error("poison: {0}")]
    Poison(String),
}

/// Encodes an event as a log record: single-object Avro value, `tenant/subject` key, and
/// the `event_id`, `event_type`, `tenant` headers.
///
/// # Errors
///
/// When the fact does not match its schema (a defect).
pub fn to_record(event: &Event) -> Result<Record, sentinel_events::Error> {
    Ok(Record {
        key: event.key(),
        value: codec::to_single_object(event)?,
        headers: vec![
            (
                sentinel_log::HEADER_EVENT_ID.into(),
                event.event_id.to_string().into_bytes(),
            ),
            (
                sentinel_log::HEADER_EVENT_TYPE.into(),
                event.event_type().as_bytes().to_vec(),
            ),
            (
                sentinel_log::HEADER_TENANT.into(),
                event.tenant.as_bytes().to_vec(),
            ),
        ],
    })
}

/// Appends events to a topic.
///
/// # Errors
///
/// Encoding or log errors.
pub async fn append_events(
    log: &dyn EventLog,
    topic: &str,
    events: &[Event],
) -> Result<Vec<Position>> {
    let records = events
        .iter()
        .map(to_record)
        .collect::<Result<Vec<_>, _>>()?;
    let n = records.len();
    let positions = log.append(topic, records).await?;
    count_appended(topic, n);
    Ok(positions)
}

/// Counts appended events per topic. Topic names are a closed set (the declared topology),
/// so the label stays bounded.
fn count_appended(topic: &str, n: usize) {
    ::metrics::counter!(names::EVENTS_APPENDED, "topic" => topic.to_owned())
        .increment(u64::try_from(n).unwrap_or(u64::MAX));
}

/// Reads every record of `topic`, partition by partition in offset order, and hands each
/// one with its decoding to `visit`, which returns `false` to stop early. Streams: at most
/// one read batch is held in memory.
///
/// # Errors
///
/// Log errors (a record that does not decode is passed to `visit`, not an error).
pub async fn scan_topic<F>(log: &dyn EventLog, topic: &str, mut visit: F) -> Result<()>
where
    F: FnMut(&Stored, Result<Event, sentinel_events::Error>) -> bool,
{
    for partition in 0..log.partitions(topic).await? {
        let mut from = 0;
        loop {
            let batch = log.read(topic, partition, from, 1000).await?;
            let Some(last) = batch.last() else { break };
            from = last.position.offset + 1;
            for stored in &batch {
                if !visit(stored, codec::decode(&stored.record.value, None)) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Output of one handler call: facts and the topic each goes to.
#[derive(Debug, Default)]
pub struct Output {
    facts: Vec<Outgoing>,
}

/// One output fact: where it goes and, when not the event's own `tenant/subject`, its key.
#[derive(Debug)]
struct Outgoing {
    topic: String,
    key: Option<String>,
    event: Event,
}

impl Outgoing {
    fn record(&self) -> Result<Record, sentinel_events::Error> {
        let mut record = to_record(&self.event)?;
        if let Some(key) = &self.key {
            record.key.clone_from(key);
        }
        Ok(record)
    }
}

impl Output {
    /// No output.
    pub fn none() -> Output {
        Output::default()
    }

    /// Appends `event` to the fact log.
    pub fn push(&mut self, event: Event) -> &mut Self {
        self.push_to(EVENTS_TOPIC, event)
    }

    /// Appends `event` to another topic.
    pub fn push_to(&mut self, topic: &str, event: Event) -> &mut Self {
        self.facts.push(Outgoing {
            topic: topic.to_owned(),
            key: None,
            event,
        });
        self
    }

    /// Appends `event` to `topic` under record key `key` instead of its `tenant/subject`
    /// (e.g. keyed by tenant alone, so all of a tenant's facts share a partition).
    pub fn push_keyed(&mut self, topic: &str, key: impl Into<String>, event: Event) -> &mut Self {
        self.facts.push(Outgoing {
            topic: topic.to_owned(),
            key: Some(key.into()),
            event,
        });
        self
    }

    /// The events, in order (an event sent to several topics appears once per topic).
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.facts.iter().map(|o| &o.event)
    }

    /// The events with their topics, in order.
    pub fn routed(&self) -> impl Iterator<Item = (&str, &Event)> {
        self.facts.iter().map(|o| (o.topic.as_str(), &o.event))
    }

    /// Whether there is nothing to append.
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }
}

/// A pipeline stage: an independent consumer that turns facts into facts.
///
/// Handlers must be deterministic in their *output ids* (use [`Event::caused`] with a
/// stable index) so that re-processing after a crash is idempotent. Side effects (pushing
/// a branch, opening a PR) must themselves be idempotent (DESIGN §4 rule 5).
#[async_trait]
pub trait Stage: Send + 'static {
    /// The stage's name; also its consumer group (`sentinel-<name>`).
    fn name(&self) -> &'static str;

    /// The topic the stage reads.
    fn input_topic(&self) -> &'static str {
        EVENTS_TOPIC
    }

    /// Whether the stage folds state from history: if so, every fact before its committed
    /// offset is passed to [`Stage::fold`] before live processing starts.
    fn needs_history(&self) -> bool {
        false
    }

    /// Updates the stage's state from a fact (history, live input, and the stage's own
    /// output as soon as it is appended). Must not have side effects.
    fn fold(&mut self, _event: &Event) {}

    /// Adjusts the runner's knobs for this stage (e.g. a stage whose side effects talk to
    /// a remote forge retries for minutes, not seconds).
    fn tune(&self, config: RunnerConfig) -> RunnerConfig {
        config
    }

    /// Called once before the first event.
    async fn on_start(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }

    /// Handles one event. Events are handled one at a time, in log order per partition.
    async fn handle(&mut self, event: &Event) -> Result<Output, HandlerError>;

    /// Called once after the last event, before the final commit.
    async fn on_shutdown(&mut self) {}
}

/// Knobs of the consumer loop.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Largest batch polled at once.
    pub batch_size: usize,
    /// How long a poll waits for new records.
    pub poll_wait: Duration,
    /// Attempts for a transiently failing handler before the input is dead-lettered.
    pub max_attempts: usize,
    /// First retry delay (doubles each time, with jitter).
    pub retry_min_delay: Duration,
    /// Longest retry delay.
    pub retry_max_delay: Duration,
    /// How many recent input event ids are remembered to drop duplicate deliveries.
    pub dedupe_window: usize,
    /// Version string recorded in `producer` (`stage@version`).
    pub version: &'static str,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            poll_wait: Duration::from_millis(500),
            max_attempts: 5,
            retry_min_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(10),
            dedupe_window: 100_000,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// The `producer` value a stage writes into its facts.
pub fn producer(stage: &str) -> String {
    format!("{stage}@{}", env!("CARGO_PKG_VERSION"))
}

/// Longest time handled records stay uncommitted within a batch.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// A bounded set of recently seen ids.
struct RecentIds {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    cap: usize,
}

impl RecentIds {
    fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn remove(&mut self, id: &Uuid) {
        if self.set.remove(id) {
            self.order.retain(|x| x != id);
        }
    }

    /// Returns false when the id was already present.
    fn insert(&mut self, id: Uuid) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// Runs `stage` against `log` until `shutdown` is cancelled.
///
/// # Errors
///
/// Only when the log itself keeps failing (the supervisor should restart the stage) or the
/// stage cannot start. Handler failures never end the loop.
pub async fn run_stage<S: Stage>(
    mut stage: S,
    log: Arc<dyn EventLog>,
    config: RunnerConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let config = stage.tune(config);
    let name = stage.name();
    let group = format!("sentinel-{name}");
    let topic = stage.input_topic();
    let producer = format!("{name}@{}", config.version);

    // Outputs folded the moment they were appended, and records folded ahead of their
    // delivery: skipped when read.
    let mut folded_early: HashSet<Uuid> = HashSet::new();
    // Stages that fold history: the next offset folded or handled, per partition.
    let mut progress: HashMap<i32, i64> = HashMap::new();
    if stage.needs_history() {
        let folded = fold_history(
            &mut stage,
            log.as_ref(),
            &group,
            topic,
            &mut progress,
            &mut folded_early,
        )
        .await?;
        debug!(stage = name, folded, "Folded history.");
    }
    stage.on_start().await.map_err(|e| Error::Start {
        stage: name.to_owned(),
        reason: e.to_string(),
    })?;

    let mut sub = log.subscribe(&group, topic).await?;
    let mut seen_inputs = RecentIds::new(config.dedupe_window);
    let mut last_lag_sample = tokio::time::Instant::now();
    sample_lag(log.as_ref(), name, &group, topic).await;
    crate::metrics::zero(names::DLQ, &[("stage", name)]);
    for outcome in ["ok", "retried", "dead_lettered"] {
        crate::metrics::zero(
            names::STAGE_RECORDS,
            &[("stage", name), ("outcome", outcome)],
        );
    }
    info!(
        stage = name,
        topic,
        backend = log.backend(),
        "Stage started."
    );

    while !shutdown.is_cancelled() {
        let batch = tokio::select! {
            b = sub.poll(config.batch_size, config.poll_wait) => b?,
            () = shutdown.cancelled() => break,
        };
        if batch.is_empty() {
            // Idle: the group is caught up (or the topic is empty).
            if last_lag_sample.elapsed() >= LAG_SAMPLE_INTERVAL {
                sample_lag(log.as_ref(), name, &group, topic).await;
                last_lag_sample = tokio::time::Instant::now();
            }
            continue;
        }
        let mut processed = Vec::with_capacity(batch.len());
        let mut last_commit = tokio::time::Instant::now();
        if last_lag_sample.elapsed() >= LAG_SAMPLE_INTERVAL {
            sample_lag(log.as_ref(), name, &group, topic).await;
            last_lag_sample = tokio::time::Instant::now();
        }
        for stored in &batch {
            // Stop between records, not between batches: a batch of slow tasks must not
            // hold up shutdown (what was not handled is redelivered after the restart).
            if shutdown.is_cancelled() {
                break;
            }
            if stage.needs_history() {
                catch_up(
                    &mut stage,
                    log.as_ref(),
                    topic,
                    stored.position,
                    &mut progress,
                    &mut folded_early,
                )
                .await?;
            }
            let handled = process_one(
                &mut stage,
                log.as_ref(),
                &config,
                &producer,
                stored,
                &mut seen_inputs,
                &mut folded_early,
                &shutdown,
            )
            .await?;
            if !handled {
                // Shut down while retrying: left uncommitted, handled again after restart.
                break;
            }
            processed.push(stored.position);
            // Slow handlers commit as they go, so a crash redoes as little as possible.
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                sub.commit(&processed).await?;
                processed.clear();
                last_commit = tokio::time::Instant::now();
            }
        }
        // Every output up to here is durably appended: now the inputs may be committed.
        if !processed.is_empty() {
            sub.commit(&processed).await?;
        }
    }
    stage.on_shutdown().await;
    sub.close().await?;
    info!(stage = name, "Stage stopped.");
    Ok(())
}

/// How often a stage samples its consumer lag for the lag gauge.
const LAG_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Sets the lag gauge: records between the group's committed offsets and the topic's end.
/// Best effort: a log error leaves the gauge as it was.
async fn sample_lag(log: &dyn EventLog, stage: &'static str, group: &str, topic: &str) {
    let (Ok(ends), Ok(committed)) = (
        log.end_offsets(topic).await,
        log.committed(group, topic).await,
    ) else {
        return;
    };
    let lag: i64 = ends
        .iter()
        .enumerate()
        .map(|(partition, end)| {
            let done = committed
                .iter()
                .find(|(p, _)| usize::try_from(*p).ok() == Some(partition))
                .map_or(0, |(_, o)| *o);
            (end - done).max(0)
        })
        .sum();
    #[allow(clippy::cast_precision_loss)] // a gauge; lags beyond 2^53 records are moot
    ::metrics::gauge!(names::STAGE_LAG, "stage" => stage).set(lag as f64);
}

/// How far past a partition's start a stage looks for facts it produced itself (see
/// [`fold_through_own_outputs`]). A stage commits at least every batch, so its uncommitted
/// outputs lie well within this.
const OWN_OUTPUT_SCAN: usize = 5_000;

/// Folds every fact before the group's committed offsets, then, per partition, everything
/// up to the stage's own last output past the committed offset (see
/// [`fold_through_own_outputs`]). Fills `progress` with the committed offsets.
async fn fold_history<S: Stage>(
    stage: &mut S,
    log: &dyn EventLog,
    group: &str,
    topic: &str,
    progress: &mut HashMap<i32, i64>,
    folded_early: &mut HashSet<Uuid>,
) -> Result<usize> {
    let committed: HashMap<i32, i64> = log.committed(group, topic).await?.into_iter().collect();
    // A partition without a committed offset is read from its start.
    let starts: Vec<(i32, i64)> = (0..log.partitions(topic).await?)
        .map(|p| (p, committed.get(&p).copied().unwrap_or(0)))
        .collect();
    // Kafka keeps duplicates appended by a stage that crashed before committing: fold
    // each fact once, as live processing does.
    let mut seen = HashSet::new();
    let mut n = 0;
    for &(partition, end) in &starts {
        n += fold_range(
            stage,
            log,
            topic,
            partition,
            0,
            end,
            &mut seen,
            folded_early,
        )
        .await?;
        progress.insert(partition, end);
    }
    for &(partition, end) in &starts {
        n += fold_through_own_outputs(stage, log, topic, partition, end, &mut seen, folded_early)
            .await?;
    }
    Ok(n)
}

/// Folds the records of `[from, until)` of one partition, each event once; ids in
/// `folded_early` were folded already.
#[allow(clippy::too_many_arguments)]
async fn fold_range<S: Stage>(
    stage: &mut S,
    log: &dyn EventLog,
    topic: &str,
    partition: i32,
    mut from: i64,
    until: i64,
    seen: &mut HashSet<Uuid>,
    folded_early: &mut HashSet<Uuid>,
) -> Result<usize> {
    let mut n = 0;
    while from < until {
        let batch = log.read(topic, partition, from, 1000).await?;
        let Some(last) = batch.last() else { break };
        from = last.position.offset + 1;
        for stored in batch.iter().filter(|s| s.position.offset < until) {
            if let Ok(event) = codec::decode(&stored.record.value, None)
                && seen.insert(event.event_id)
                && !folded_early.remove(&event.event_id)
            {
                stage.fold(&event);
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Folds, ahead of their delivery, the records from `from` up to and including the last
/// one this stage produced itself (within [`OWN_OUTPUT_SCAN`] records), and remembers
/// them in `folded_early`.
///
/// Why: a stage appends its outputs before it commits its inputs, so after a crash or a
/// rebalance its own decisions about inputs it already handled can lie past the offset it
/// resumes from, behind inputs it has not seen. Deciding those inputs without the earlier
/// decisions would, for the policy gate, let a rate limit be exceeded. Everything before
/// the last own output is folded too, in log order, so a decision is never folded before
/// the facts it was made on.
async fn fold_through_own_outputs<S: Stage>(
    stage: &mut S,
    log: &dyn EventLog,
    topic: &str,
    partition: i32,
    mut from: i64,
    seen: &mut HashSet<Uuid>,
    folded_early: &mut HashSet<Uuid>,
) -> Result<usize> {
    let own = format!("{}@", stage.name());
    let mut ahead: Vec<Event> = Vec::new();
    let mut last_own = None;
    let mut scanned = 0;
    while scanned < OWN_OUTPUT_SCAN {
        let batch = log.read(topic, partition, from, 1000).await?;
        let Some(last) = batch.last() else { break };
        from = last.position.offset + 1;
        scanned += batch.len();
        for stored in &batch {
            if let Ok(event) = codec::decode(&stored.record.value, None) {
                if event.producer.starts_with(&own) {
                    last_own = Some(ahead.len());
                }
                ahead.push(event);
            }
        }
    }
    let Some(last_own) = last_own else {
        return Ok(0);
    };
    let mut n = 0;
    for event in ahead.into_iter().take(last_own + 1) {
        if seen.insert(event.event_id) && folded_early.insert(event.event_id) {
            stage.fold(&event);
            n += 1;
        }
    }
    Ok(n)
}

/// Before a stage that folds history handles a record: if records of its partition were
/// skipped since this member last read it (another group member owned the partition in
/// between), folds them, then folds ahead through the stage's own outputs (see
/// [`fold_through_own_outputs`]).
async fn catch_up<S: Stage>(
    stage: &mut S,
    log: &dyn EventLog,
    topic: &str,
    at: Position,
    progress: &mut HashMap<i32, i64>,
    folded_early: &mut HashSet<Uuid>,
) -> Result<()> {
    let next = progress.get(&at.partition).copied().unwrap_or(0);
    if at.offset > next {
        let mut seen = HashSet::new();
        let skipped = fold_range(
            stage,
            log,
            topic,
            at.partition,
            next,
            at.offset,
            &mut seen,
            folded_early,
        )
        .await?;
        if skipped > 0 {
            let ahead = fold_through_own_outputs(
                stage,
                log,
                topic,
                at.partition,
                at.offset,
                &mut seen,
                folded_early,
            )
            .await?;
            info!(
                stage = stage.name(),
                partition = at.partition,
                skipped,
                ahead,
                "Partition taken over: folded what other group members handled."
            );
        }
    }
    if at.offset >= next {
        progress.insert(at.partition, at.offset + 1);
    }
    Ok(())
}

/// Handles one record. `Ok(false)`: shutdown came while a transient failure was being
/// retried; the record was not handled and must not be committed.
#[allow(clippy::too_many_arguments)]
async fn process_one<S: Stage>(
    stage: &mut S,
    log: &dyn EventLog,
    config: &RunnerConfig,
    producer: &str,
    stored: &Stored,
    seen_inputs: &mut RecentIds,
    folded_early: &mut HashSet<Uuid>,
    shutdown: &CancellationToken,
) -> Result<bool> {
    let event = match codec::decode(&stored.record.value, None) {
        Ok(e) => e,
        Err(e) => {
            dead_letter(log, stage.name(), producer, stored, None, &e.to_string()).await?;
            return Ok(true);
        }
    };
    if !seen_inputs.insert(event.event_id) {
        debug!(stage = stage.name(), event_id = %event.event_id, "Duplicate delivery dropped.");
        return Ok(true);
    }
    if !folded_early.remove(&event.event_id) {
        stage.fold(&event);
    }
    let span = info_span!(
        "handle",
        stage = stage.name(),
        event_type = event.event_type(),
        event_id = %event.event_id,
        correlation_id = %event.correlation_id,
    );
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(config.retry_min_delay)
        .with_max_delay(config.retry_max_delay)
        .with_max_times(config.max_attempts.saturating_sub(1))
        .with_jitter()
        .build();
    let started = std::time::Instant::now();
    let stage_name = stage.name();
    loop {
        let result = stage.handle(&event).instrument(span.clone()).await;
        ::metrics::histogram!(names::STAGE_HANDLER_DURATION, "stage" => stage_name)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(output) => {
                ::metrics::counter!(names::STAGE_RECORDS, "stage" => stage_name, "outcome" => "ok")
                    .increment(1);
                // One append per topic, in the order the topics first appear: on the
                // embedded log a handler's facts for one topic land together or not at all.
                let mut topics: Vec<&str> = Vec::new();
                for o in &output.facts {
                    if !topics.contains(&o.topic.as_str()) {
                        topics.push(&o.topic);
                    }
                }
                for topic in topics {
                    let records = output
                        .facts
                        .iter()
                        .filter(|o| o.topic == topic)
                        .map(Outgoing::record)
                        .collect::<Result<Vec<_>, _>>()?;
                    append_with_retry(log, topic, records).await?;
                }
                // Each output is folded once, also when it went to several topics.
                let mut folded_now: HashSet<Uuid> = HashSet::new();
                for o in &output.facts {
                    if folded_now.insert(o.event.event_id) {
                        stage.fold(&o.event);
                    }
                    if o.topic == stage.input_topic() {
                        if folded_early.len() >= config.dedupe_window {
                            // Outputs another group member reads back are never removed.
                            folded_early.clear();
                        }
                        folded_early.insert(o.event.event_id);
                    }
                }
                return Ok(true);
            }
            Err(HandlerError::Transient(reason)) => match delays.next() {
                Some(delay) => {
                    ::metrics::counter!(names::STAGE_RECORDS, "stage" => stage_name, "outcome" => "retried")
                        .increment(1);
                    warn!(parent: &span, %reason, ?delay, "Handler failed; retrying.");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {
                            // Not handled: forget the id so the redelivery is not dropped
                            // as a duplicate by a runner that keeps going.
                            seen_inputs.remove(&event.event_id);
                            return Ok(false);
                        }
                    }
                }
                None => {
                    let reason =
                        format!("gave up after {} attempts: {reason}", config.max_attempts);
                    dead_letter(log, stage.name(), producer, stored, Some(&event), &reason).await?;
                    return Ok(true);
                }
            },
            Err(HandlerError::Poison(reason)) => {
                dead_letter(log, stage.name(), producer, stored, Some(&event), &reason).await?;
                return Ok(true);
            }
        }
    }
}

/// Appends outputs, retrying transient log errors with backoff (a few minutes at most).
async fn append_with_retry(log: &dyn EventLog, topic: &str, records: Vec<Record>) -> Result<()> {
    let mut delays = ExponentialBuilder::default()
        .with_max_delay(Duration::from_secs(10))
        .with_max_times(20)
        .with_jitter()
        .build();
    loop {
        match log.append(topic, records.clone()).await {
            Ok(_) => {
                count_appended(topic, records.len());
                return Ok(());
            }
            Err(e) if e.is_transient() => match delays.next() {
                Some(d) => {
                    warn!(error = %e, topic, "Append failed; retrying.");
                    tokio::time::sleep(d).await;
                }
                None => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

async fn dead_letter(
    log: &dyn EventLog,
    stage: &str,
    producer: &str,
    stored: &Stored,
    event: Option<&Event>,
    reason: &str,
) -> Result<()> {
    ::metrics::counter!(names::DLQ, "stage" => stage.to_owned()).increment(1);
    ::metrics::counter!(names::STAGE_RECORDS, "stage" => stage.to_owned(), "outcome" => "dead_lettered")
        .increment(1);
    warn!(
        stage,
        topic = %stored.topic,
        partition = stored.position.partition,
        offset = stored.position.offset,
        reason,
        "Record dead-lettered."
    );
    let fact = EventDeadLettered {
        stage: stage.to_owned(),
        source_topic: stored.topic.clone(),
        partition: stored.position.partition,
        offset: stored.position.offset,
        event_type: stored
            .header(sentinel_log::HEADER_EVENT_TYPE)
            .map(str::to_owned),
        reason: reason.to_owned(),
        raw: stored.record.value.clone(),
    };
    let natural = format!(
        "{stage}/{}/{}/{}",
        stored.topic, stored.position.partition, stored.position.offset
    );
    let dl = match event {
        Some(e) => e.caused(fact, producer, u32::MAX, None),
        None => Event::origin(
            fact,
            Some(&natural),
            stored
                .header(sentinel_log::HEADER_TENANT)
                .unwrap_or(sentinel_events::DEFAULT_TENANT),
            &stored.record.key,
            sentinel_events::envelope::now(),
            producer,
        ),
    };
    append_with_retry(log, DLQ_TOPIC, vec![to_record(&dl)?]).await
}

/// Whether a fact is of one of the given types (a small helper for `match`-less filters).
pub fn is_fact(event: &Event, types: &[&str]) -> bool {
    types.contains(&event.event_type())
}

/// Re-exported so stages can name facts without another dependency line.
pub use sentinel_events::facts;
