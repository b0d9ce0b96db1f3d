//! What the pure parsers return, and the checks they share.

use chrono::{DateTime, Utc};
use sentinel_events::facts::CiRunFailed;
use sentinel_events::{DEFAULT_TENANT, Event, Fact};

/// Longest log kept in a fact; longer logs keep their tail (where errors usually are).
pub const MAX_LOG_BYTES: usize = 1024 * 1024;

/// How far in the future a reported `occurred_at` may be (clock skew).
pub const MAX_CLOCK_SKEW_MINUTES: i64 = 5;

/// Longest natural id (delivery id, idempotency key) accepted.
pub const MAX_NATURAL_ID_LEN: usize = 256;

/// A fact ready to append, with the envelope fields its source determines.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The fact.
    pub fact: Fact,
    /// Tenant.
    pub tenant: String,
    /// Subject (the repository).
    pub subject: String,
    /// Event time from the source.
    pub occurred_at: DateTime<Utc>,
    /// Natural id the event id is derived from (delivery id …), so a redelivery gets the
    /// same event id and appends nothing new.
    pub natural_id: Option<String>,
}

impl Accepted {
    /// The event to append.
    pub fn to_event(&self, producer: &str) -> Event {
        Event::origin(
            self.fact.clone(),
            self.natural_id.as_deref(),
            &self.tenant,
            &self.subject,
            self.occurred_at,
            producer,
        )
    }

    /// A failure fact in the default tenant.
    pub fn failure(fact: CiRunFailed, occurred_at: DateTime<Utc>, natural_id: String) -> Self {
        Accepted {
            subject: fact.repository.clone(),
            fact: Fact::CiRunFailed(fact),
            tenant: DEFAULT_TENANT.to_owned(),
            occurred_at,
            natural_id: Some(natural_id),
        }
    }
}

/// What a delivery amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Facts to append (a failure, a forge event, or both).
    Record(Vec<Accepted>),
    /// A ping / hook test: answered 200, nothing appended.
    Ping,
    /// Understood but not of interest: answered 202 with the reason, nothing appended.
    Ignored(String),
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON, or not the documented shape (400).
    Malformed(String),
    /// The shape is right but values are missing or invalid (422), by field.
    Invalid(Vec<String>),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Malformed(m) => write!(f, "malformed: {m}"),
            ParseError::Invalid(fields) => write!(f, "invalid: {}", fields.join("; ")),
        }
    }
}

impl From<serde_json::Error> for ParseError {
    fn from(e: serde_json::Error) -> Self {
        ParseError::Malformed(e.to_string())
    }
}

/// Whether `s` looks like a git commit id.
pub fn is_commit_id(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The last `max` bytes of `s` (at a char boundary).
pub fn tail_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The log as stored: bounded to its tail and redacted (DESIGN §4 rule 6), with its size
/// as received.
pub fn stored_log(log: &str) -> (String, i64) {
    let size = i64::try_from(log.len()).unwrap_or(i64::MAX);
    (
        sentinel_events::redact::redact(tail_bytes(log, MAX_LOG_BYTES)),
        size,
    )
}

/// A source timestamp, or now when absent; a time in the future (beyond the clock skew
/// allowance) is replaced by now, so a forge's clock cannot move the policy's windows.
pub fn event_time(t: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let now = Utc::now();
    match t {
        Some(t) if t <= now + chrono::Duration::minutes(MAX_CLOCK_SKEW_MINUTES) => t,
        _ => now,
    }
}

/// Collects "field: problem" messages for required fields.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    /// A required, non-empty string.
    pub fn required(&mut self, name: &str, v: Option<&str>) -> String {
        match v.map(str::trim) {
            Some(s) if !s.is_empty() => s.to_owned(),
            Some(_) => {
                self.0.push(format!("{name}: must not be empty"));
                String::new()
            }
            None => {
                self.0.push(format!("{name}: required"));
                String::new()
            }
        }
    }

    /// A required commit id.
    pub fn commit(&mut self, name: &str, v: Option<&str>) -> String {
        let c = self.required(name, v);
        if !c.is_empty() && !is_commit_id(&c) {
            self.0.push(format!(
                "{name}: must be a hexadecimal commit id (4 to 64 digits)"
            ));
        }
        c
    }

    /// Ok when no problem was found.
    ///
    /// # Errors
    ///
    /// [`ParseError::Invalid`] with every problem.
    pub fn finish(self) -> Result<(), ParseError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ParseError::Invalid(self.0))
        }
    }
}

/// A natural id from a header, when usable (non-empty, bounded).
pub fn natural_id(v: Option<&str>) -> Option<&str> {
    v.map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_NATURAL_ID_LEN)
}

/// `Name <email>` (or whichever part is known).
pub fn author(name: Option<&str>, email: Option<&str>) -> Option<String> {
    match (
        name.filter(|s| !s.is_empty()),
        email.filter(|s| !s.is_empty()),
    ) {
        (Some(n), Some(e)) => Some(format!("{n} <{e}>")),
        (Some(n), None) => Some(n.to_owned()),
        (None, Some(e)) => Some(format!("<{e}>")),
        (None, None) => None,
    }
}
