//! Sentinel's command line and process wiring. `main.rs` only parses flags and calls
//! [`cli::run`]; everything here is testable.

#![forbid(unsafe_code)]

pub mod app;
pub mod bench;
pub mod bench_pr;
pub mod cli;
pub mod config;
pub mod demo;
pub mod docs;
pub mod fix;
pub mod ops;
pub mod projections;
pub mod replay;
pub mod summary;
pub mod telemetry;
pub mod tracking;
