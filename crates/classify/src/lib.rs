//! Failure classification.
//!
//! A [`Catalogue`] of patterns (TOML data under `patterns/`, one file per ecosystem, compiled
//! into the binary) is matched over the normalised log in one pass ([`scan`]); the winning
//! pattern gives the failure type, the tool, a confidence, a fix-strategy hint and what it
//! extracted (files, lines, modules, symbols). A [`signature`](fn@signature) fingerprints the root cause so
//! the same failure in two runs compares equal. When no pattern matches, an optional LLM
//! fallback ([`fallback`]) may answer. [`eval`] scores the classifier on a labelled corpus.
//!
//! Everything but [`fallback`] and [`stage`] is pure: no I/O.
//!
//! # Precedence
//!
//! When several patterns match, the winner is chosen per class, then across classes:
//! 1. the highest `priority` (see the tiers in `patterns/README.md`): a fatal infrastructure
//!    signal (100) beats everything, because the job died of it and no code fix can help;
//!    root causes (import errors, dependency resolution: 50) beat what they cascade into
//!    (build errors 30, test failures 10); deprecations turned into errors (40) beat the
//!    test failure they cause; weak, ambiguous signals have priority below 10 and only win
//!    when nothing better matched;
//! 2. then the highest confidence;
//! 3. then the earliest match in the log (the first error is the root cause).

#![forbid(unsafe_code)]

pub mod bench;
pub mod catalogue;
pub mod eval;
pub mod fallback;
pub mod scan;
pub mod signature;
pub mod stage;

pub use catalogue::{Catalogue, PatternSpec};
pub use scan::Scanner;
pub use signature::signature;
pub use stage::ClassifierStage;

use sentinel_events::FailureType;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors loading a catalogue or reading a corpus.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pattern file is not valid TOML or has unknown keys.
    #[error("pattern file {file}: {source}")]
    Toml {
        /// The file.
        file: String,
        /// The parse error (with line and column).
        source: toml::de::Error,
    },
    /// A pattern's regex does not compile.
    #[error("pattern {id}: invalid regex: {source}")]
    Regex {
        /// The pattern id.
        id: String,
        /// The regex error.
        source: regex::Error,
    },
    /// A pattern is invalid (unknown class, confidence outside 0..1, duplicate id).
    #[error("pattern {id}: {reason}")]
    Invalid {
        /// The pattern id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A labelled corpus cannot be read.
    #[error("corpus {path}: {reason}")]
    Corpus {
        /// The file or directory.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// What was extracted from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Extracted {
    /// Files the error points at.
    pub files: Vec<String>,
    /// Line numbers.
    pub lines: Vec<i64>,
    /// Modules or packages.
    pub modules: Vec<String>,
    /// Symbols (lint codes, error codes, names).
    pub symbols: Vec<String>,
}

/// The result of classifying a log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Classification {
    /// The failure type.
    pub failure_type: FailureType,
    /// Confidence, 0..1.
    pub confidence: f64,
    /// `pattern`, `llm` or `none`.
    pub method: &'static str,
    /// The winning pattern.
    pub pattern_id: Option<String>,
    /// The tool.
    pub tool: Option<String>,
    /// Fix-strategy hint.
    pub strategy: Option<String>,
    /// Stable fingerprint of the root cause.
    pub signature: String,
    /// What the patterns extracted.
    pub extracted: Extracted,
    /// The first error lines of the winning class (or the log's last lines when nothing
    /// matched), normalised and bounded: what the signature was computed from.
    #[serde(skip)]
    pub evidence: Vec<String>,
    /// The log's last bytes, normalised and bounded (the LLM fallback's excerpt).
    #[serde(skip)]
    pub tail: String,
}
