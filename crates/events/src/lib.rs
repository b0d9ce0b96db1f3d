//! Sentinel's facts.
#![forbid(unsafe_code)]

pub mod types;
pub use types::{FailureType, ValidationStep};
