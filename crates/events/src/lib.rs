//! Sentinel's facts: the envelope of DESIGN §3, one struct per fact type mirroring
//! `schemas/facts/*.avsc`, and their encodings (Avro single-object, Confluent wire format,
//! JSON).
//!
//! ```
//! use sentinel_events::{Event, facts::TaskProgressed, codec};
//! let e = Event::origin(
//!     TaskProgressed { task_id: "t1".into(), progress: 0.5, message: "cloning".into() },
//!     Some("delivery-1"), "default", "agent/patchbot", chrono::Utc::now(), "doc@0",
//! );
//! let bytes = codec::to_single_object(&e).unwrap();
//! assert_eq!(codec::decode(&bytes, None).unwrap(), e);
//! ```
#![forbid(unsafe_code)]

mod avro_de;
pub mod codec;
pub mod envelope;
pub mod facts;
mod macros;
pub mod redact;
pub mod types;

pub use envelope::{DEFAULT_TENANT, Event};
pub use facts::Fact;
pub use types::*;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong encoding or decoding facts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `event_type` (or its version) has no schema.
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    /// A value does not match its Avro schema, or Avro bytes are corrupt.
    #[error("avro: {0}")]
    Avro(#[from] Box<apache_avro::Error>),
    /// JSON is malformed or does not match the fact.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A checked-in schema does not parse.
    #[error("schema: {0}")]
    Schema(String),
    /// The bytes are not a Sentinel event.
    #[error("invalid event: {0}")]
    Invalid(String),
}

impl From<apache_avro::Error> for Error {
    fn from(e: apache_avro::Error) -> Self {
        Error::Avro(Box::new(e))
    }
}
