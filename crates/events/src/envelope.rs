//! The envelope every fact travels in, and how event ids are derived.

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use crate::Fact;

/// Namespace of Sentinel's v5 (name-based) event ids.
pub const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5e47_1e10_0000_4000_8000_5e47_1e10_0001);

/// A point in event time or record time.
pub type Timestamp = DateTime<Utc>;

/// The current time at the wire's (microsecond) precision.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// Tenant used when the input names none.
pub const DEFAULT_TENANT: &str = "default";

/// A fact with its envelope. Timestamps have microsecond precision (that of the wire).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique id; deterministic (v5) where the input has a natural id.
    pub event_id: Uuid,
    /// Event time, from the source.
    pub occurred_at: DateTime<Utc>,
    /// When Sentinel recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Tenant.
    pub tenant: String,
    /// Repository or agent the fact is about.
    pub subject: String,
    /// The failure → task → fix chain this fact belongs to.
    pub correlation_id: Uuid,
    /// The fact that caused this one.
    pub causation_id: Option<Uuid>,
    /// `stage@version` that appended it.
    pub producer: String,
    /// The fact.
    pub fact: Fact,
}

impl Event {
    /// A fact that starts a new chain: its id is derived from `natural_id` when given
    /// (e.g. a webhook delivery id), otherwise random; the correlation id is its own id.
    pub fn origin(
        fact: impl Into<Fact>,
        natural_id: Option<&str>,
        tenant: &str,
        subject: &str,
        occurred_at: DateTime<Utc>,
        producer: &str,
    ) -> Event {
        let fact = fact.into();
        let event_id = match natural_id {
            Some(n) => Uuid::new_v5(
                &EVENT_ID_NAMESPACE,
                format!("{}/{}/{n}", fact.event_type(), tenant).as_bytes(),
            ),
            None => Uuid::new_v4(),
        };
        Event {
            event_id,
            occurred_at: occurred_at.trunc_subsecs(6),
            recorded_at: Utc::now().trunc_subsecs(6),
            tenant: tenant.to_owned(),
            subject: subject.to_owned(),
            correlation_id: event_id,
            causation_id: None,
            producer: producer.to_owned(),
            fact,
        }
    }

    /// A fact caused by `self`, with a deterministic id: the same cause, stage (the part of
    /// `producer` before `@`, so an upgrade does not change ids) and `index` always give the
    /// same id, so a stage that re-processes an input after a crash
    /// appends facts the log and consumers recognise as duplicates. Keeps the tenant,
    /// subject and correlation id; event time is the cause's unless `occurred_at` is given.
    pub fn caused(
        &self,
        fact: impl Into<Fact>,
        producer: &str,
        index: u32,
        occurred_at: Option<DateTime<Utc>>,
    ) -> Event {
        let fact = fact.into();
        let stage = producer.split('@').next().unwrap_or(producer);
        let event_id = Uuid::new_v5(
            &self.event_id,
            format!("{stage}/{}/{index}", fact.event_type()).as_bytes(),
        );
        Event {
            event_id,
            occurred_at: occurred_at.map_or(self.occurred_at, |t| t.trunc_subsecs(6)),
            recorded_at: Utc::now().trunc_subsecs(6),
            tenant: self.tenant.clone(),
            subject: self.subject.clone(),
            correlation_id: self.correlation_id,
            causation_id: Some(self.event_id),
            producer: producer.to_owned(),
            fact,
        }
    }

    /// The fact's type name.
    pub fn event_type(&self) -> &'static str {
        self.fact.event_type()
    }

    /// The partition key: `tenant/subject`, so all facts about one repository (or agent)
    /// stay in order.
    pub fn key(&self) -> String {
        format!("{}/{}", self.tenant, self.subject)
    }
}
