//! The InfraMind correlator: links InfraMind's failure predictions to the tasks they
//! predicted and reports every fix outcome back over gRPC (`schemas/inframind.proto`,
//! compiled with protox — no `protoc` needed).
//!
//! * Predictions arrive on [`PREDICTIONS_TOPIC`] (Avro or JSON `PredictionReceived`) or
//!   through the [`sink::PredictionSinkService`] gRPC service, which appends them there;
//!   [`stage::PredictionStage`] moves them onto the fact log.
//! * [`stage::CorrelatorStage`] appends `PredictionCorrelated` (explicit correlation id,
//!   else same repository and signature, else same repository and failure type, within
//!   the window) and reports outcomes with [`client::Reporter`], retrying with backoff
//!   until InfraMind answers; undelivered outcomes survive restarts because delivery is
//!   tracked by the stage's committed offset.

#![forbid(unsafe_code)]

pub mod client;
pub mod correlate;
pub mod sink;
pub mod stage;
pub mod testing;

/// Generated protobuf types and gRPC clients/servers of `schemas/inframind.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("sentinel.inframind.v1");
}

pub use stage::{CorrelatorConfig, CorrelatorStage, PredictionStage};

/// Predictions published by InfraMind (declared in `topology/topics.toml`).
pub const PREDICTIONS_TOPIC: &str = "sentinel.inframind.predictions";

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the correlator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// InfraMind refused a report as invalid; retrying will not help.
    #[error("InfraMind rejected the report: {0}")]
    Rejected(String),
    /// InfraMind could not be reached or did not answer in time; retry.
    #[error("InfraMind unavailable: {0}")]
    Unavailable(String),
}
