//! PatchBot: turns a classified CI failure into a validated, committed fix — or an honest
//! reason why not (DESIGN.md §6).
//!
//! One [`PatchBot::attempt`]:
//!
//! 1. picks a deterministic strategy from the failure type, the failing command and the
//!    classifier's tool hint ([`strategy::choose`]): formatters (black, ruff format,
//!    prettier, cargo fmt), linter autofixes (`ruff check --fix`, flake8 codes through
//!    ruff, `eslint --fix`), or adding a missing Python distribution to
//!    `requirements.txt`; infrastructure and unknown failures are
//!    [`FixStatus::NotFixable`], everything else [`FixStatus::NoFix`];
//! 2. provisions the pinned tools ([`ToolCache`]);
//! 3. clones the repository at the failing commit into a fresh work dir (the original
//!    working tree is never touched), with the git dir kept outside the work tree;
//! 4. in the [`Sandbox`](sentinel_sandbox::Sandbox), with the tools first on `PATH` and the
//!    tool cache and git dir read-only: re-runs the failing command (it must fail), runs
//!    the fix, stages changes to tracked files, then re-runs the failing command and the
//!    test command — the candidate passes only if both exit 0;
//!    when no deterministic strategy applies and an LLM is configured, the LLM strategy
//!    ([`llm`]) asks for up to N candidate edits instead, screens them (paths, protected
//!    paths, blast radius) and validates each the same way;
//! 5. returns a [`FixAttempt`] with the diff, the validation evidence (redacted output
//!    tails), tool versions and a confidence; a fixed attempt keeps its work dir so that
//!    [`PatchBot::commit`] can commit it and a forge can push it.
//!
//! Event-log wiring (facts, decisions) lives in the stage that calls this library.

#![forbid(unsafe_code)]

pub mod agent;
mod bot;
mod error;
pub mod imports;
pub mod index;
pub mod llm;
pub use sentinel_events::redact;
pub mod review;
pub mod stage;
pub mod strategy;
pub mod tools;

pub use bot::{
    DEFAULT_PROTECTED_PATHS, FixAttempt, FixRequest, FixStatus, History, MAX_DIFF_BYTES, PatchBot,
    PatchBotConfig, REPO_SETTINGS_FILE, Reproduction, ecosystem,
};
pub use error::{Error, Result};
pub use tools::{Tool, ToolCache, ToolEnv};
