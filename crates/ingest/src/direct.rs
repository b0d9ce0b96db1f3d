//! Kafka-direct producers: CI systems that produce failure reports straight to
//! `sentinel.ci.failures`.
//!
//! Accepted record values:
//!
//! * **JSON** failure reports (`schemas/ci_failure_report.v1.schema.json`), the same
//!   contract as `POST /webhooks/generic`;
//! * **Avro** `CiRunFailed` (`schemas/facts/ci_run_failed.v1.avsc`) in single-object
//!   encoding (`C3 01`, the schema's 8-byte CRC-64-AVRO fingerprint, the datum);
//! * a whole Sentinel event (the envelope, single-object encoded) carrying a `CiRunFailed`.
//!
//! Each valid record becomes the same `CiRunFailed` fact the webhooks append (source
//! `kafka`, log redacted and bounded, loop guard applied). An invalid record goes to
//! `sentinel.dlq` as an `EventDeadLettered` fact with the reason also in the record's
//! headers (`dlq_reason`, `dlq_stage`, `dlq_source_topic`, `dlq_source_partition`,
//! `dlq_source_offset`), and the stage keeps going. Offsets are committed only after the
//! batch's facts and dead letters are durably appended (at-least-once; ids are derived
//! from `delivery_id` or the record's position, so a re-read appends nothing new on the
//! embedded log and is dropped by consumers on Kafka).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use backon::{BackoffBuilder, ExponentialBuilder};
use sentinel_events::facts::{CiRunFailed, EventDeadLettered};
use sentinel_events::{DEFAULT_TENANT, Event, Fact, codec};
use sentinel_log::{EventLog, Position, Record, Stored};
use sentinel_runtime::metrics::names;
use sentinel_runtime::{CI_FAILURES_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, producer, to_record};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::BotIdentity;
use crate::model::{Accepted, MAX_NATURAL_ID_LEN, ParseError, Problems, event_time, stored_log};
use crate::{Result, report};

/// The stage's name (and consumer group `sentinel-ingest-direct`).
pub const STAGE: &str = "ingest-direct";
/// The source name facts from Kafka-direct producers carry.
pub const SOURCE: &str = "kafka";
/// Dead-letter header: why the record was refused.
pub const HEADER_DLQ_REASON: &str = "dlq_reason";
/// Dead-letter header: the stage that refused it.
pub const HEADER_DLQ_STAGE: &str = "dlq_stage";
/// Dead-letter header: the topic it was read from.
pub const HEADER_DLQ_SOURCE_TOPIC: &str = "dlq_source_topic";
/// Dead-letter header: its partition.
pub const HEADER_DLQ_SOURCE_PARTITION: &str = "dlq_source_partition";
/// Dead-letter header: its offset.
pub const HEADER_DLQ_SOURCE_OFFSET: &str = "dlq_source_offset";

const FACT_TYPE: &str = "ci_run_failed";

/// Schema version and single-object header of the current `CiRunFailed` schema.
static FACT_HEADER: LazyLock<Option<(i32, Vec<u8>)>> = LazyLock::new(|| {
    let version = codec::current_version(FACT_TYPE).ok()?;
    let schema = codec::fact_schema(FACT_TYPE, version).ok()?;
    Some((
        version,
        RabinFingerprintHeader::from_schema(schema).build_header(),
    ))
});

/// Encodes a `CiRunFailed` as an Avro single-object record value (what an Avro producer
/// sends to `sentinel.ci.failures`).
///
/// # Errors
///
/// When the fact does not match its schema (a defect).
pub fn encode_avro(fact: &CiRunFailed) -> Result<Vec<u8>> {
    let (_, header) = FACT_HEADER
        .as_ref()
        .ok_or_else(|| sentinel_events::Error::Schema("ci_run_failed schema".into()))?;
    let (_, datum) = codec::encode_fact(&Fact::CiRunFailed(fact.clone()))?;
    let mut out = header.clone();
    out.extend_from_slice(&datum);
    Ok(out)
}

/// Parses and validates one record value. `tenant` is the record's `tenant` header;
/// `position_id` (`topic/partition/offset`) is the natural id when the report has no
/// `delivery_id`.
///
/// # Errors
///
/// [`ParseError`] saying what is wrong with the record.
pub fn parse_record(
    value: &[u8],
    tenant: Option<&str>,
    position_id: &str,
    bot: &BotIdentity,
) -> Result<Accepted, ParseError> {
    match value {
        [first, ..] if *first == b'{' || first.is_ascii_whitespace() => {
            report::parse_json(value)?.validate(SOURCE, Some(position_id), bot)
        }
        [0xC3, 0x01, rest @ ..] => {
            let (version, header) = FACT_HEADER
                .as_ref()
                .ok_or_else(|| ParseError::Malformed("ci_run_failed schema unavailable".into()))?;
            if value.starts_with(header) {
                let datum = rest.get(8..).unwrap_or_default();
                let fact = codec::decode_fact(FACT_TYPE, *version, datum)
                    .map_err(|e| ParseError::Malformed(format!("avro: {e}")))?;
                let Fact::CiRunFailed(f) = fact else {
                    return Err(ParseError::Malformed("not a CiRunFailed".into()));
                };
                let tenant = tenant
                    .filter(|t| !t.is_empty() && t.len() <= 128 && !t.contains('/'))
                    .unwrap_or(DEFAULT_TENANT);
                from_fact(f, tenant, event_time(None), position_id, bot)
            } else {
                let event = codec::decode(value, None)
                    .map_err(|e| ParseError::Malformed(format!("avro: {e}")))?;
                let Fact::CiRunFailed(f) = event.fact else {
                    return Err(ParseError::Invalid(vec![format!(
                        "event_type: {:?}, only ci_run_failed is accepted",
                        event.fact.event_type()
                    )]));
                };
                let id = event.event_id.to_string();
                from_fact(
                    f,
                    &event.tenant,
                    event_time(Some(event.occurred_at)),
                    &id,
                    bot,
                )
            }
        }
        [] => Err(ParseError::Malformed("empty record".into())),
        _ => Err(ParseError::Malformed(
            "unknown framing: expected JSON or Avro single-object encoding".into(),
        )),
    }
}

/// Re-validates an Avro fact: producers are untrusted, so the log is redacted and bounded
/// again and the loop guard applied.
fn from_fact(
    f: CiRunFailed,
    tenant: &str,
    occurred_at: chrono::DateTime<chrono::Utc>,
    fallback_id: &str,
    bot: &BotIdentity,
) -> Result<Accepted, ParseError> {
    let mut problems = Problems::default();
    let repository = problems.required("repository", Some(&f.repository));
    let branch = problems.required("branch", Some(&f.branch));
    let commit = problems.commit("commit", Some(&f.commit));
    if f.delivery_id
        .as_ref()
        .is_some_and(|d| d.trim().is_empty() || d.len() > MAX_NATURAL_ID_LEN)
    {
        problems
            .0
            .push(format!("delivery_id: 1 to {MAX_NATURAL_ID_LEN} characters"));
    }
    problems.finish()?;
    let (log, size) = stored_log(&f.log);
    let natural = format!(
        "{SOURCE}/{}",
        f.delivery_id.as_deref().unwrap_or(fallback_id)
    );
    let author = f.author.as_deref();
    let fact = CiRunFailed {
        source: SOURCE.into(),
        delivery_id: Some(natural.clone()),
        sentinel_authored: f.sentinel_authored || bot.is_sentinel(&branch, author, author),
        repository,
        branch,
        commit,
        command: f.command.filter(|c| !c.trim().is_empty()),
        log,
        log_size_bytes: size.max(f.log_size_bytes),
        run_url: f.run_url,
        job_name: f.job_name,
        author: f.author,
    };
    let mut a = Accepted::failure(fact, occurred_at, natural);
    a.tenant = tenant.to_owned();
    Ok(a)
}

/// The Kafka-direct stage: consumes `sentinel.ci.failures`, appends `CiRunFailed` facts to
/// `sentinel.events`, dead-letters invalid records.
pub struct DirectStage {
    log: Arc<dyn EventLog>,
    bot: BotIdentity,
    producer: String,
    batch_size: usize,
    poll_wait: Duration,
}

impl DirectStage {
    /// A stage reading from `log` with the loop guard's bot identity.
    pub fn new(log: Arc<dyn EventLog>, bot: BotIdentity) -> Self {
        Self {
            log,
            bot,
            producer: producer(STAGE),
            batch_size: 256,
            poll_wait: Duration::from_millis(500),
        }
    }

    /// Consumes until `shutdown` is cancelled.
    ///
    /// # Errors
    ///
    /// Only when the log keeps failing (the supervisor restarts the stage; uncommitted
    /// records are read again).
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let group = format!("sentinel-{STAGE}");
        let mut sub = self.log.subscribe(&group, CI_FAILURES_TOPIC).await?;
        info!(
            stage = STAGE,
            topic = CI_FAILURES_TOPIC,
            backend = self.log.backend(),
            "Stage started."
        );
        while !shutdown.is_cancelled() {
            let batch = tokio::select! {
                b = sub.poll(self.batch_size, self.poll_wait) => b?,
                () = shutdown.cancelled() => break,
            };
            if batch.is_empty() {
                continue;
            }
            let positions: Vec<Position> = batch.iter().map(|s| s.position).collect();
            let (facts, dead) = self.handle_batch(&batch)?;
            // Output first, then the commit: a crash in between only re-reads the batch.
            self.append(EVENTS_TOPIC, facts).await?;
            self.append(DLQ_TOPIC, dead).await?;
            sub.commit(&positions).await?;
        }
        sub.close().await?;
        info!(stage = STAGE, "Stage stopped.");
        Ok(())
    }

    /// Splits a batch into fact records and dead-letter records.
    fn handle_batch(&self, batch: &[Stored]) -> Result<(Vec<Record>, Vec<Record>)> {
        let mut facts = Vec::new();
        let mut dead = Vec::new();
        for stored in batch {
            let position_id = format!(
                "{}/{}/{}",
                stored.topic, stored.position.partition, stored.position.offset
            );
            match parse_record(
                &stored.record.value,
                stored.header(sentinel_log::HEADER_TENANT),
                &position_id,
                &self.bot,
            ) {
                Ok(accepted) => {
                    let event = accepted.to_event(&self.producer);
                    facts.push(to_record(&event)?);
                    metrics::counter!(names::WEBHOOKS_RECEIVED, "source" => SOURCE, "outcome" => "accepted").increment(1);
                    metrics::counter!(names::STAGE_RECORDS, "stage" => STAGE, "outcome" => "ok")
                        .increment(1);
                }
                Err(e) => {
                    let reason = e.to_string();
                    warn!(stage = STAGE, position = %position_id, %reason, "Record dead-lettered.");
                    dead.push(self.dead_letter(stored, &position_id, &reason)?);
                    let outcome = match e {
                        ParseError::Malformed(_) => "malformed",
                        ParseError::Invalid(_) => "invalid",
                    };
                    metrics::counter!(names::WEBHOOKS_RECEIVED, "source" => SOURCE, "outcome" => outcome).increment(1);
                    metrics::counter!(names::STAGE_RECORDS, "stage" => STAGE, "outcome" => "dead_lettered").increment(1);
                    metrics::counter!(names::DLQ, "stage" => STAGE).increment(1);
                }
            }
        }
        Ok((facts, dead))
    }

    fn dead_letter(&self, stored: &Stored, position_id: &str, reason: &str) -> Result<Record> {
        let fact = EventDeadLettered {
            stage: STAGE.to_owned(),
            source_topic: stored.topic.clone(),
            partition: stored.position.partition,
            offset: stored.position.offset,
            event_type: stored
                .header(sentinel_log::HEADER_EVENT_TYPE)
                .map(str::to_owned),
            reason: reason.to_owned(),
            raw: stored.record.value.clone(),
        };
        let tenant = stored
            .header(sentinel_log::HEADER_TENANT)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .unwrap_or(DEFAULT_TENANT);
        let event = Event::origin(
            fact,
            Some(&format!("{STAGE}/{position_id}")),
            tenant,
            &stored.record.key,
            sentinel_events::envelope::now(),
            &self.producer,
        );
        let mut record = to_record(&event)?;
        record.headers.extend([
            (HEADER_DLQ_REASON.to_owned(), reason.as_bytes().to_vec()),
            (HEADER_DLQ_STAGE.to_owned(), STAGE.as_bytes().to_vec()),
            (
                HEADER_DLQ_SOURCE_TOPIC.to_owned(),
                stored.topic.as_bytes().to_vec(),
            ),
            (
                HEADER_DLQ_SOURCE_PARTITION.to_owned(),
                stored.position.partition.to_string().into_bytes(),
            ),
            (
                HEADER_DLQ_SOURCE_OFFSET.to_owned(),
                stored.position.offset.to_string().into_bytes(),
            ),
        ]);
        Ok(record)
    }

    /// Appends, retrying transient log errors with backoff (a few minutes at most).
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut delays = ExponentialBuilder::default()
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(20)
            .with_jitter()
            .build();
        loop {
            match self.log.append(topic, records.clone()).await {
                Ok(_) => {
                    metrics::counter!(names::EVENTS_APPENDED, "topic" => topic.to_owned())
                        .increment(records.len() as u64);
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
}
