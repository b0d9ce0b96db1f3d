//! The projector: reads the fact log from the stored checkpoint and applies it, exactly
//! once, to the store.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use sentinel_events::codec;
use sentinel_log::EventLog;
use sentinel_runtime::metrics::names::{
    PROJECTION_BATCH_DURATION, PROJECTION_EVENTS, PROJECTION_LAG,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::fold::Writes;
use crate::phases::{self, Phase};
use crate::store::{ApplyOutcome, Planned, Recent, Store, Written};
use crate::{DEFAULT_PROJECTION, EVENTS_TOPIC, Error, Result};

/// How a [`Projector`] runs. The defaults suit both deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorConfig {
    /// Name under which checkpoints are stored (default `sentinel-projections`). Two
    /// projectors with the same name share progress; a new name replays from offset 0.
    pub name: String,
    /// The topic to read (default `sentinel.events`).
    pub topic: String,
    /// Records read and applied per transaction (default 500).
    pub batch_size: usize,
    /// Pause of [`Projector::run`] when caught up (default 200 ms).
    pub idle_sleep: Duration,
    /// Longest pause of [`Projector::run`] after a transient error; pauses double from
    /// `idle_sleep` up to this (default 30 s).
    pub max_backoff: Duration,
    /// The schema registry id of the envelope schema, when records use the Confluent wire
    /// format (default none: single-object Avro or JSON).
    pub confluent_envelope_id: Option<u32>,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            name: DEFAULT_PROJECTION.to_owned(),
            topic: EVENTS_TOPIC.to_owned(),
            batch_size: 500,
            idle_sleep: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            confluent_envelope_id: None,
        }
    }
}

/// Counters since the projector was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectorStats {
    /// Facts applied to the projections.
    pub applied: u64,
    /// Facts of types the projections do not use.
    pub ignored: u64,
    /// Records skipped: undecodable, or facts with malformed ids.
    pub skipped: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Batches abandoned because another projector had moved the checkpoint.
    pub conflicts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    applied: AtomicU64,
    ignored: AtomicU64,
    skipped: AtomicU64,
    batches: AtomicU64,
    conflicts: AtomicU64,
}

/// How far a projection is behind the log in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    /// The partition.
    pub partition: i32,
    /// The projection's next offset (0 when it has none).
    pub next_offset: i64,
    /// The log's end offset (high-water mark).
    pub end_offset: i64,
    /// `end_offset - next_offset`, at least 0. On the embedded log offsets are shared by
    /// all topics, so this is an upper bound of the records left, not their count.
    pub lag: i64,
}

/// Keeps the projections up to date with the fact log.
///
/// Each batch — up to [`ProjectorConfig::batch_size`] records of one partition — is
/// decoded and applied in one database transaction that also moves the partition's
/// checkpoint, so a crash at any point leaves rows and checkpoint consistent and the next
/// run resumes exactly where the last commit ended. Records that do not decode are skipped
/// with a warning and counted (the checkpoint moves past them). Several projectors with the
/// same name may run against one store: the checkpoint update is conditional, so only one
/// of them applies any batch.
#[derive(Clone)]
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Store,
    config: ProjectorConfig,
    counters: Arc<Counters>,
    /// Set when the store's tables were empty at creation and only this projector writes
    /// them (a rebuild's shadow): the rows written so far, so only those are loaded.
    fresh: Option<Arc<tokio::sync::Mutex<Written>>>,
    /// First batches already being read ([`Projector::with_primed`]).
    primed: Arc<std::sync::Mutex<HashMap<i32, Prefetch>>>,
    /// When the fresh tables exist ([`Projector::for_fresh_tables`]).
    ready: Ready,
    /// The one transaction every load and write goes through, uncommitted
    /// ([`Projector::in_transaction`]); `None`: each batch commits on its own.
    shared: Option<SharedTx>,
}

/// A transaction shared by a fresh-table projector's loads and writes, which the caller
/// commits once the replay is done (an in-place rebuild). `None` inside once taken.
pub(crate) type SharedTx = Arc<tokio::sync::Mutex<Option<crate::store::StoreTx>>>;

/// Completes when a fresh projector's tables are ready. A rebuild creates its shadow tables
/// (or, in place, locks and empties the live ones) on a task of its own while the first
/// batches are read, decoded and folded (which need no table: nothing was written yet);
/// loads and writes wait for this first.
#[derive(Clone)]
pub(crate) struct Ready(Shared<BoxFuture<'static, std::result::Result<(), SetupFailure>>>);

/// Why a set-up failed, cloneable for every waiter: its error as text, and whether that
/// error was transient.
#[derive(Clone, Debug)]
pub(crate) struct SetupFailure {
    cause: String,
    transient: bool,
}

impl Ready {
    /// Already complete.
    pub(crate) fn now() -> Ready {
        Ready(futures::future::ready(Ok(())).boxed().shared())
    }

    /// Complete when `setup`, started now on a task of its own (it runs whether or not
    /// anything waits), has succeeded.
    pub(crate) fn after(setup: impl Future<Output = Result<()>> + Send + 'static) -> Ready {
        let task = tokio::spawn(setup);
        Ready(
            async move {
                match task.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(SetupFailure {
                        cause: e.to_string(),
                        transient: e.is_transient(),
                    }),
                    Err(e) => Err(SetupFailure {
                        cause: format!("the set-up task failed: {e}"),
                        transient: false,
                    }),
                }
            }
            .boxed()
            .shared(),
        )
    }

    /// Waits for the set-up; its error as [`Error::RebuildSetup`].
    pub(crate) async fn wait(&self) -> Result<()> {
        self.0
            .clone()
            .await
            .map_err(|SetupFailure { cause, transient }| Error::RebuildSetup { cause, transient })
    }
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("log", &self.log.backend())
            .field("store", &self.store.backend())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Projector {
    /// A projector with the default configuration.
    pub fn new(log: Arc<dyn EventLog>, store: Store) -> Self {
        Self::with_config(log, store, ProjectorConfig::default())
    }

    /// A projector with the given configuration.
    pub fn with_config(log: Arc<dyn EventLog>, store: Store, config: ProjectorConfig) -> Self {
        Projector {
            log,
            store,
            config,
            counters: Arc::new(Counters::default()),
            fresh: None,
            primed: Arc::default(),
            ready: Ready::now(),
            shared: None,
        }
    }

    /// A projector for tables that are empty now and that nothing else writes (a
    /// rebuild's shadow): it remembers the keys of the rows it writes and loads only
    /// those, instead of looking up every row a batch touches. The tables may still be
    /// being created: nothing touches the store before `ready` completes.
    pub(crate) fn for_fresh_tables(mut self, ready: Ready) -> Self {
        self.fresh = Some(Arc::default());
        self.ready = ready;
        self
    }

    /// Makes a fresh-table projector ([`Projector::for_fresh_tables`]) load and write
    /// through `tx` without committing it: the batches' rows and checkpoints become
    /// visible when the caller commits `tx` (an in-place rebuild, whose tables `tx` has
    /// emptied).
    pub(crate) fn in_transaction(mut self, tx: SharedTx) -> Self {
        self.shared = Some(tx);
        self
    }

    /// Hands over first batches read by [`prime`] (a rebuild reads them while it creates
    /// its shadow tables); used where they start where this projector does.
    pub(crate) fn with_primed(self, primed: Primed) -> Self {
        *self.primed.lock().unwrap_or_else(|p| p.into_inner()) = primed.0;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ProjectorConfig {
        &self.config
    }

    /// The store it writes.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Counters since creation (shared by clones).
    pub fn stats(&self) -> ProjectorStats {
        let c = &self.counters;
        ProjectorStats {
            applied: c.applied.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            conflicts: c.conflicts.load(Ordering::Relaxed),
        }
    }

    /// Catches up to the end of every partition and returns the number of facts applied
    /// (facts of unused types and skipped records are not counted).
    ///
    /// # Errors
    ///
    /// Log or database errors; everything committed before stays committed.
    pub async fn run_once(&self) -> Result<usize> {
        self.zero_metrics();
        self.catch_up(None).await
    }

    /// Runs until `shutdown` is cancelled: catches up, sleeps
    /// [`ProjectorConfig::idle_sleep`] when there is nothing new, retries transient errors
    /// with growing pauses. A batch in flight when shutdown is requested is finished.
    ///
    /// # Errors
    ///
    /// Permanent errors (a schema the database refuses, an unknown topic).
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        info!(projection = %self.config.name, topic = %self.config.topic, "Projector started.");
        self.zero_metrics();
        let mut backoff = self.config.idle_sleep;
        while !shutdown.is_cancelled() {
            let pause = match self.catch_up(Some(&shutdown)).await {
                Ok(0) => self.config.idle_sleep,
                Ok(_) => {
                    backoff = self.config.idle_sleep;
                    continue;
                }
                Err(error) if error.is_transient() => {
                    warn!(%error, projection = %self.config.name, "Projection failed; retrying.");
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    backoff
                }
                Err(error) => return Err(error),
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        info!(projection = %self.config.name, "Projector stopped.");
        Ok(())
    }

    /// How far the projection is behind the log, per partition.
    ///
    /// # Errors
    ///
    /// Log or database errors.
    pub async fn lag(&self) -> Result<Vec<PartitionLag>> {
        let ends = self.log.end_offsets(&self.config.topic).await?;
        let stored: HashMap<i32, i64> = self
            .store
            .checkpoints(&self.config.name, &self.config.topic)
            .await?
            .into_iter()
            .map(|c| (c.partition, c.next_offset))
            .collect();
        Ok(ends
            .into_iter()
            .enumerate()
            .map(|(p, end)| {
                let partition = i32::try_from(p).unwrap_or(i32::MAX);
                let next = stored.get(&partition).copied().unwrap_or(0);
                PartitionLag {
                    partition,
                    next_offset: next,
                    end_offset: end,
                    lag: (end - next).max(0),
                }
            })
            .collect())
    }

    async fn catch_up(&self, shutdown: Option<&CancellationToken>) -> Result<usize> {
        let applied = self.catch_up_bounded(shutdown, None, &|_, _| {}).await?;
        let lag: i64 = self.lag().await?.iter().map(|p| p.lag).sum();
        metrics::gauge!(PROJECTION_LAG, "projection" => self.config.name.clone()).set(lag as f64);
        Ok(applied)
    }

    /// Registers the projector's counters at zero.
    fn zero_metrics(&self) {
        for outcome in ["applied", "ignored", "invalid"] {
            metrics::counter!(
                PROJECTION_EVENTS,
                "projection" => self.config.name.clone(),
                "outcome" => outcome
            )
            .increment(0);
        }
    }

    /// Catches up to `targets` (partition → offset to stop before; partitions not listed
    /// are not read), or to the end of every partition when `targets` is `None`, calling
    /// `on_batch(partition, next_offset)` after each committed batch. Returns the facts
    /// applied. Used by rebuilds, which must stop exactly where the live projection is.
    ///
    /// # Errors
    ///
    /// Log or database errors; everything committed before stays committed.
    pub async fn catch_up_to(
        &self,
        targets: Option<&HashMap<i32, i64>>,
        on_batch: &(dyn Fn(i32, i64) + Send + Sync),
    ) -> Result<usize> {
        self.catch_up_bounded(None, targets, on_batch).await
    }

    async fn catch_up_bounded(
        &self,
        shutdown: Option<&CancellationToken>,
        targets: Option<&HashMap<i32, i64>>,
        on_batch: &(dyn Fn(i32, i64) + Send + Sync),
    ) -> Result<usize> {
        if let Some(written) = &self.fresh {
            return self.catch_up_fresh(written, targets, on_batch).await;
        }
        let partitions = self.log.partitions(&self.config.topic).await?;
        let mut pending: Vec<i32> = (0..partitions)
            .filter(|p| targets.is_none_or(|t| t.contains_key(p)))
            .collect();
        let mut applied = 0;
        // Per partition, the next batch being read and decoded while this one is written.
        let mut ahead: HashMap<i32, Prefetch> = HashMap::new();
        // One batch per partition in turn, so a busy partition does not starve the others.
        while !pending.is_empty() {
            let mut still = Vec::with_capacity(pending.len());
            for partition in pending {
                if shutdown.is_some_and(CancellationToken::is_cancelled) {
                    return Ok(applied);
                }
                let until = targets.and_then(|t| t.get(&partition).copied());
                match self.step(partition, until, &mut ahead).await? {
                    Step::Applied(n, next) => {
                        applied += n;
                        on_batch(partition, next);
                        still.push(partition);
                    }
                    Step::Conflict => still.push(partition),
                    Step::AtEnd => {}
                }
            }
            pending = still;
        }
        Ok(applied)
    }

    /// The batch of `partition` from `from` on (stopping before `until`), taken from the
    /// read-ahead in `ahead` when it starts there, and the offset after it; `None` at the
    /// end. Starts reading the batch after it.
    #[allow(clippy::too_many_arguments)]
    async fn next_batch(
        &self,
        partition: i32,
        from: i64,
        until: Option<i64>,
        size: usize,
        next_size: usize,
        ahead: &mut HashMap<i32, Prefetch>,
    ) -> Result<Option<(i64, Fetched)>> {
        let max = match until {
            Some(until) => {
                let left = usize::try_from(until - from).unwrap_or(0);
                if left == 0 {
                    return Ok(None);
                }
                size.max(1).min(left)
            }
            None => size.max(1),
        };
        let waited = Instant::now();
        let fetched = match ahead.remove(&partition) {
            Some(mut p) if p.from == from && p.max == max => {
                let f = (&mut p.handle)
                    .await
                    .map_err(|e| Error::CorruptRow(format!("prefetch task: {e}")))??;
                phases::lap(Phase::Wait, waited);
                f
            }
            // A stale prefetch is aborted when dropped.
            _ => self.fetcher().fetch(partition, from, max, until).await?,
        };
        let Some(next) = fetched.next else {
            return Ok(None);
        };
        // Read ahead while this batch is written.
        let next_max = match until {
            Some(until) => next_size
                .max(1)
                .min(usize::try_from(until - next).unwrap_or(0)),
            None => next_size.max(1),
        };
        if next_max > 0 {
            let fetcher = self.fetcher();
            ahead.insert(
                partition,
                Prefetch {
                    from: next,
                    max: next_max,
                    handle: tokio::spawn(async move {
                        fetcher.fetch(partition, next, next_max, until).await
                    }),
                },
            );
        }
        Ok(Some((next, fetched)))
    }

    /// Counts a committed batch in the metrics and the projector's counters.
    fn account(
        &self,
        partition: i32,
        from: i64,
        next: i64,
        outcome: &ApplyOutcome,
        skipped: usize,
        started: Instant,
    ) {
        let name = self.config.name.clone();
        metrics::histogram!(PROJECTION_BATCH_DURATION, "projection" => name.clone())
            .record(started.elapsed().as_secs_f64());
        for (outcome, n) in [
            ("applied", outcome.applied),
            ("ignored", outcome.ignored),
            ("invalid", skipped),
        ] {
            metrics::counter!(
                PROJECTION_EVENTS,
                "projection" => name.clone(),
                "outcome" => outcome
            )
            .increment(n as u64);
        }
        let c = &self.counters;
        c.applied
            .fetch_add(outcome.applied as u64, Ordering::Relaxed);
        c.ignored
            .fetch_add(outcome.ignored as u64, Ordering::Relaxed);
        c.skipped.fetch_add(skipped as u64, Ordering::Relaxed);
        c.batches.fetch_add(1, Ordering::Relaxed);
        debug!(
            partition,
            from,
            next,
            applied = outcome.applied,
            ignored = outcome.ignored,
            skipped,
            "Projected a batch."
        );
    }

    /// [`Projector::catch_up_to`] for fresh tables (a rebuild's shadow, see
    /// [`Projector::for_fresh_tables`]): three stages overlap. The next batch is read and
    /// decoded ahead, this batch is folded ([`StoreTx::fold_fresh`]: rows no earlier
    /// batch wrote need no lookup, rows of the batch still being written come from memory),
    /// and the batch before is written and committed with its checkpoint on another
    /// connection. One batch is written at a time, in log order, so the committed tables
    /// and checkpoints always match a prefix of the log.
    async fn catch_up_fresh(
        &self,
        written: &tokio::sync::Mutex<Written>,
        targets: Option<&HashMap<i32, i64>>,
        on_batch: &(dyn Fn(i32, i64) + Send + Sync),
    ) -> Result<usize> {
        let cfg = &self.config;
        let partitions = self.log.partitions(&cfg.topic).await?;
        let mut pending: Vec<i32> = (0..partitions)
            .filter(|p| targets.is_none_or(|t| t.contains_key(p)))
            .collect();
        let mut written = written.lock().await;
        // Where the fresh tables' checkpoints are: nothing else writes them, so they are
        // known here without reading them (the tables may not even exist yet).
        let mut from = written.next.clone();
        // The first batches, possibly being read since before the tables were created.
        let mut ahead = std::mem::take(&mut *self.primed.lock().unwrap_or_else(|p| p.into_inner()));
        // Batches start small and double up to the batch size, so the stages overlap
        // from the start (a small rebuild is otherwise one batch, read, folded and
        // written one after the other).
        let mut sizes: HashMap<i32, usize> = HashMap::new();
        let mut recent = Recent::default();
        let mut writing: Option<WriteJob> = None;
        let mut applied = 0;
        while !pending.is_empty() {
            let mut still = Vec::with_capacity(pending.len());
            for partition in pending {
                let until = targets.and_then(|t| t.get(&partition).copied());
                let start = from.get(&partition).copied().unwrap_or(0);
                let size = *sizes
                    .entry(partition)
                    .or_insert_with(|| first_batch(cfg.batch_size));
                let next_size = (size * 2).min(cfg.batch_size.max(1));
                sizes.insert(partition, next_size);
                let Some((next, fetched)) = self
                    .next_batch(partition, start, until, size, next_size, &mut ahead)
                    .await?
                else {
                    continue;
                };
                let started = Instant::now();
                let folded = self
                    .store
                    .fold_fresh(
                        fetched.planned,
                        &mut written,
                        &recent,
                        &self.ready,
                        self.shared.as_ref(),
                    )
                    .await;
                let (existing, new, outcome) = match folded {
                    Ok(folded) => folded,
                    Err(error) => {
                        // A write that failed aborted a shared transaction, which the fold's
                        // loads then report: the write's error is the cause.
                        if let Some(job) = writing.take() {
                            job.finish(self, on_batch).await?;
                        }
                        return Err(error);
                    }
                };
                // The new rows go to the write and stay readable for the next fold.
                let new = Arc::new(new);
                let next_recent = Recent::of(&existing, new.clone());
                if let Some(job) = writing.take() {
                    applied += job.finish(self, on_batch).await?;
                }
                recent = next_recent;
                writing = Some(WriteJob::start(
                    self,
                    Batch {
                        partition,
                        from: start,
                        next,
                        outcome,
                        skipped: fetched.undecodable + outcome.invalid,
                        started,
                    },
                    existing,
                    new,
                ));
                from.insert(partition, next);
                still.push(partition);
            }
            pending = still;
        }
        if let Some(job) = writing.take() {
            applied += job.finish(self, on_batch).await?;
        }
        written.next = from;
        Ok(applied)
    }

    /// Reads one batch of a partition from its checkpoint (stopping before `until`, when
    /// given) and applies it. The batch after it is read and decoded on another task
    /// meanwhile (kept in `ahead`), and used by the next step if the checkpoint is then
    /// where that batch starts — it is dropped otherwise (another projector moved it).
    async fn step(
        &self,
        partition: i32,
        until: Option<i64>,
        ahead: &mut HashMap<i32, Prefetch>,
    ) -> Result<Step> {
        let cfg = &self.config;
        // Read the checkpoint afresh each time: another projector may have moved it.
        let from = self
            .store
            .checkpoints(&cfg.name, &cfg.topic)
            .await?
            .into_iter()
            .find(|c| c.partition == partition)
            .map_or(0, |c| c.next_offset);
        let size = cfg.batch_size.max(1);
        let Some((next, fetched)) = self
            .next_batch(partition, from, until, size, size, ahead)
            .await?
        else {
            return Ok(Step::AtEnd);
        };
        let Fetched {
            planned,
            undecodable,
            ..
        } = fetched;

        let started = Instant::now();
        let mut tx = self.store.begin().await?;
        // The checkpoint first: on PostgreSQL this locks its row, queueing a concurrent
        // projector of the same partition until we commit.
        if !tx
            .advance_checkpoint(&cfg.name, &cfg.topic, partition, from, next, 0)
            .await?
        {
            tx.rollback().await?;
            self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
            debug!(
                partition,
                from, "Checkpoint moved by another projector; re-reading."
            );
            return Ok(Step::Conflict);
        }
        phases::lap(Phase::Begin, started);
        let outcome = tx.apply_planned(planned).await?;
        let skipped = undecodable + outcome.invalid;
        if skipped > 0 {
            // Count what was skipped with the checkpoint, in the same transaction.
            let skipped = i64::try_from(skipped).unwrap_or(i64::MAX);
            tx.advance_checkpoint(&cfg.name, &cfg.topic, partition, next, next, skipped)
                .await?;
        }
        let committing = Instant::now();
        tx.commit().await?;
        phases::lap(Phase::Commit, committing);

        self.account(partition, from, next, &outcome, skipped, started);
        Ok(Step::Applied(outcome.applied, next))
    }
}

enum Step {
    Applied(usize, i64),
    Conflict,
    AtEnd,
}

impl Projector {
    fn fetcher(&self) -> Fetcher {
        Fetcher {
            log: self.log.clone(),
            topic: self.config.topic.clone(),
            confluent_envelope_id: self.config.confluent_envelope_id,
        }
    }
}

/// Records from which a batch is decoded in two halves at once.
const PARALLEL_DECODE_MIN: usize = 1024;

/// The first batch of a fresh-table catch-up: a sixteenth of the batch size (it doubles
/// from there).
fn first_batch(batch_size: usize) -> usize {
    (batch_size / 16).max(1)
}

/// First batches being read ahead of a fresh-table projector (see [`prime`]).
pub(crate) struct Primed(HashMap<i32, Prefetch>);

/// Starts reading the first batch of every partition of `config.topic` from offset 0, as a
/// fresh-table projector with `config` will ask for it.
///
/// # Errors
///
/// Log errors (the topic's partitions).
pub(crate) async fn prime(log: Arc<dyn EventLog>, config: &ProjectorConfig) -> Result<Primed> {
    let partitions = log.partitions(&config.topic).await?;
    let fetcher = Fetcher {
        log,
        topic: config.topic.clone(),
        confluent_envelope_id: config.confluent_envelope_id,
    };
    let max = first_batch(config.batch_size);
    Ok(Primed(
        (0..partitions)
            .map(|partition| {
                let fetcher = fetcher.clone();
                let prefetch = Prefetch {
                    from: 0,
                    max,
                    handle: tokio::spawn(
                        async move { fetcher.fetch(partition, 0, max, None).await },
                    ),
                };
                (partition, prefetch)
            })
            .collect(),
    ))
}

/// A batch of a rebuild, folded and being written.
#[derive(Debug, Clone, Copy)]
struct Batch {
    partition: i32,
    from: i64,
    next: i64,
    outcome: ApplyOutcome,
    skipped: usize,
    started: Instant,
}

/// The write of one folded batch on its own task (and connection); abandoned when dropped
/// unfinished (the rebuild failed, its shadow is dropped).
struct WriteJob {
    batch: Batch,
    handle: tokio::task::JoinHandle<Result<()>>,
}

impl WriteJob {
    fn start(projector: &Projector, batch: Batch, existing: Writes, new: Arc<Writes>) -> WriteJob {
        let store = projector.store.clone();
        let name = projector.config.name.clone();
        let topic = projector.config.topic.clone();
        let ready = projector.ready.clone();
        let shared = projector.shared.clone();
        let handle = tokio::spawn(async move {
            ready.wait().await?;
            let write = async |tx: &mut crate::store::StoreTx| {
                let skipped = i64::try_from(batch.skipped).unwrap_or(i64::MAX);
                let moved = tx
                    .advance_checkpoint(
                        &name,
                        &topic,
                        batch.partition,
                        batch.from,
                        batch.next,
                        skipped,
                    )
                    .await?;
                if !moved {
                    return Err(Error::CorruptRow(format!(
                        "the rebuild's checkpoint of partition {} moved: something else \
                         writes its fresh tables",
                        batch.partition
                    )));
                }
                tx.write_fresh(existing, &new).await
            };
            match shared {
                // The caller commits, after the last batch.
                Some(shared) => {
                    let mut guard = shared.lock().await;
                    let tx = guard.as_mut().ok_or_else(|| {
                        Error::CorruptRow("the rebuild's transaction has ended".into())
                    })?;
                    write(tx).await
                }
                None => {
                    let mut tx = store.begin().await?;
                    write(&mut tx).await?;
                    let committing = Instant::now();
                    tx.commit().await?;
                    phases::lap(Phase::Commit, committing);
                    Ok(())
                }
            }
        });
        WriteJob { batch, handle }
    }

    /// Waits for the write to commit, then counts the batch and reports it.
    async fn finish(
        mut self,
        projector: &Projector,
        on_batch: &(dyn Fn(i32, i64) + Send + Sync),
    ) -> Result<usize> {
        let waited = Instant::now();
        (&mut self.handle)
            .await
            .map_err(|e| Error::CorruptRow(format!("rebuild write task: {e}")))??;
        phases::lap(Phase::WaitWrite, waited);
        let b = self.batch;
        projector.account(
            b.partition,
            b.from,
            b.next,
            &b.outcome,
            b.skipped,
            b.started,
        );
        on_batch(b.partition, b.next);
        Ok(b.outcome.applied)
    }
}

impl Drop for WriteJob {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// A batch being read ahead; the read is abandoned when this is dropped unused.
struct Prefetch {
    from: i64,
    max: usize,
    handle: tokio::task::JoinHandle<Result<Fetched>>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// One batch of a partition, read and decoded.
struct Fetched {
    /// The offset after the last record read; `None` when there was none.
    next: Option<i64>,
    /// The decoded events' writes, planned (pure) while the previous batch is written.
    planned: Planned,
    /// Records that did not decode (skipped with a warning).
    undecodable: usize,
}

/// Reads and decodes batches; owns what it needs, so it can run on its own task.
#[derive(Clone)]
struct Fetcher {
    log: Arc<dyn EventLog>,
    topic: String,
    confluent_envelope_id: Option<u32>,
}

impl Fetcher {
    /// Decodes `records` in order, skipping (and logging) those that do not decode; the
    /// events and how many were skipped. The events go straight into a vector of the
    /// batch's size: events are large, and growing the vector by doubling copied each
    /// one several times.
    fn decode(
        &self,
        partition: i32,
        records: &[sentinel_log::Stored],
    ) -> (Vec<sentinel_events::Event>, usize) {
        let mut events = Vec::with_capacity(records.len());
        let mut undecodable = 0;
        for stored in records {
            match codec::decode(&stored.record.value, self.confluent_envelope_id) {
                Ok(event) => events.push(event),
                Err(error) => {
                    warn!(
                        %error,
                        topic = %self.topic,
                        partition,
                        offset = stored.position.offset,
                        event_type = stored.header(sentinel_log::HEADER_EVENT_TYPE).unwrap_or("?"),
                        "Skipping an undecodable record."
                    );
                    undecodable += 1;
                }
            }
        }
        (events, undecodable)
    }

    async fn fetch(
        &self,
        partition: i32,
        from: i64,
        max: usize,
        until: Option<i64>,
    ) -> Result<Fetched> {
        let started = Instant::now();
        let mut records = self.log.read(&self.topic, partition, from, max).await?;
        phases::lap(Phase::Read, started);
        if let Some(until) = until {
            records.retain(|r| r.position.offset < until);
        }
        let next = records.last().map(|last| last.position.offset + 1);
        // A large batch is decoded and planned in two halves at once: reading ahead is the
        // longest stage of a small rebuild, whose batches are few and read one after the
        // other.
        let later = (records.len() >= PARALLEL_DECODE_MIN).then(|| {
            let half = records.split_off(records.len() / 2);
            let fetcher = self.clone();
            tokio::task::spawn_blocking(move || fetcher.decode_and_plan(partition, &half))
        });
        let (mut planned, mut undecodable) = self.decode_and_plan(partition, &records);
        if let Some(later) = later {
            let (rest, skipped) = later
                .await
                .map_err(|e| Error::CorruptRow(format!("decode task: {e}")))?;
            planned.append(rest);
            undecodable += skipped;
        }
        Ok(Fetched {
            next,
            planned,
            undecodable,
        })
    }

    /// Decodes and plans `records`; the plan and how many did not decode.
    fn decode_and_plan(
        &self,
        partition: i32,
        records: &[sentinel_log::Stored],
    ) -> (Planned, usize) {
        let started = Instant::now();
        let (events, undecodable) = self.decode(partition, records);
        phases::lap(Phase::Decode, started);
        (Planned::of(&events), undecodable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every waiter of a failed set-up gets [`Error::RebuildSetup`], which still says
    /// whether the cause may go away on a retry.
    #[tokio::test]
    async fn a_failed_set_up_keeps_whether_its_cause_was_transient() {
        let timed_out = Ready::after(async { Err(Error::Database(sqlx::Error::PoolTimedOut)) });
        for _ in 0..2 {
            let error = timed_out.wait().await.expect_err("the set-up failed");
            assert!(matches!(error, Error::RebuildSetup { .. }), "{error:?}");
            assert!(error.is_transient(), "{error:?}");
        }
        let corrupt = Ready::after(async { Err(Error::CorruptRow("a checkpoint".into())) });
        let error = corrupt.wait().await.expect_err("the set-up failed");
        assert!(!error.is_transient(), "{error:?}");
        assert_eq!(
            error.to_string(),
            "preparing the rebuild's tables: corrupt projection row: a checkpoint"
        );
        assert!(Ready::now().wait().await.is_ok());
    }
}
