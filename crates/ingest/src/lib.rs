//! Ingestion: turns CI failure reports into `CiRunFailed` facts and forge events into
//! `ForgeEventReceived` facts.
//!
//! * HTTP receivers ([`router`]): `POST /webhooks/github` (HMAC-SHA256 signature),
//!   `/webhooks/gitlab` (token), `/webhooks/jenkins[/{token}]` (path token or Basic auth)
//!   and `/webhooks/generic` (optional HMAC). Each authenticates the raw body in constant
//!   time before parsing it, appends, and only then answers; redeliveries get the same
//!   deterministic event ids and append nothing new.
//! * Kafka-direct producers ([`direct::DirectStage`]): CI systems produce failure reports
//!   (JSON per `schemas/ci_failure_report.v1.schema.json`, or Avro `CiRunFailed`) to
//!   `sentinel.ci.failures`; invalid records go to the dead-letter topic.
//! * Loop guard: failures on Sentinel's fix branches or by its bot identity are recorded
//!   with `sentinel_authored = true`, which the policy refuses.
//!
//! The payload parsers ([`github::parse`], [`gitlab::parse`], [`jenkins::parse`],
//! [`report::parse_json`], [`direct::parse_record`]) are pure functions, fuzzed under
//! `fuzz/`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod bench;
pub mod config;
pub mod direct;
pub mod github;
pub mod gitlab;
mod http;
pub mod jenkins;
pub mod model;
pub mod report;

pub use config::{BotIdentity, DEFAULT_BODY_LIMIT, FIX_BRANCH_PREFIX, IngestConfig, Secret};
pub use http::{GENERIC_SIGNATURE_HEADER, router};
pub use model::{MAX_CLOCK_SKEW_MINUTES, MAX_LOG_BYTES};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the ingest stages (the HTTP receivers answer errors instead of returning them).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event log failed.
    #[error("event log: {0}")]
    Log(#[from] sentinel_log::Error),
    /// The runtime failed to append.
    #[error("runtime: {0}")]
    Runtime(#[from] sentinel_runtime::Error),
    /// A fact could not be encoded (a defect).
    #[error("encoding: {0}")]
    Encode(#[from] sentinel_events::Error),
    /// The benchmark could not run.
    #[error("benchmark: {0}")]
    Bench(String),
}
