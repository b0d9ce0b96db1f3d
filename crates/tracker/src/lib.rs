//! The PR tracker: follows Sentinel's pull requests to merge or close and records how each
//! fix ended.
//!
//! * [`TrackerStage`] folds the fact log (failure → classification → task → candidate →
//!   action → `PullRequestOpened`) and turns forge observations — webhooks recorded by
//!   ingestion as `ForgeEventReceived`, or the [`poll::Poller`]'s — into
//!   `PullRequestMerged` / `PullRequestClosed` / `PullRequestChecksCompleted` /
//!   `PullRequestReviewed` and `FixOutcomeRecorded {success, time_to_pr_seconds,
//!   time_to_merge_seconds}`. Each is appended once per pull request whatever the number of
//!   redeliveries.
//! * Rollback: CI failing on the base branch with the fix's signature within
//!   [`TrackerConfig::rollback_window_seconds`] of an auto-merge appends `RollbackRequested`
//!   (with the requested cooldown) and a superseding failed `FixOutcomeRecorded`. The policy
//!   decides from that fact (`RollbackDecided`: revert or not, the revert branch, the
//!   auto-merge pause); [`rollback::RollbackStage`] carries out a `revert` decision — the
//!   merge commit reverted on `sentinel/revert-…` and a pull request opened through the
//!   forge (`RevertPullRequestOpened`).
//! * [`poll::Poller`] asks the forge about open Sentinel PRs where webhooks are missing:
//!   the local git forge by inspecting the repository, GitHub and GitLab over their REST
//!   APIs. It appends what it sees as `ForgeEventReceived` (source `poll`), so webhooks and
//!   polling share one decision path.
//! * [`learning::SuccessRates`] folds outcomes into per (signature, strategy) and per
//!   (failure type, repository) success rates for PatchBot's confidence and agent health.

#![forbid(unsafe_code)]

pub mod config;
pub mod learning;
pub mod poll;
pub mod rollback;
pub mod stage;
pub mod state;
pub mod testing;

pub use config::TrackerConfig;
pub use rollback::{ROLLBACK_STAGE, RollbackStage};
pub use stage::{STAGE_NAME, TrackerStage};
pub use state::{PrStatus, TrackedPr, TrackerState};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the tracker (the poller's forge calls).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A forge API call failed (network, status); retried at the next poll.
    #[error("forge API {url}: {reason}")]
    Forge {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Inspecting a local repository failed.
    #[error("local forge: {0}")]
    Local(#[from] sentinel_forge::Error),
    /// The event log failed.
    #[error("event log: {0}")]
    Log(#[from] sentinel_runtime::Error),
    /// A repository name the forge cannot address.
    #[error("invalid repository {0:?} for this forge")]
    InvalidRepository(String),
}
