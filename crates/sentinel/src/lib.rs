//! Sentinel's command line and process wiring. `main.rs` only parses flags and calls
//! [`cli::run`]; everything here is testable.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod projections;
pub mod summary;
