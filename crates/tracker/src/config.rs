//! The tracker's settings.

use serde::{Deserialize, Serialize};

/// Settings of the tracker stage.
///
/// The tracker only *requests* rollbacks; the auto-remediation policy decides them
/// (`rollback_rules`): a request later than the policy's `regression_window_hours` is not
/// reverted, and the policy's `auto_merge_pause_hours`, when set, overrides the cooldown
/// requested here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// A failure on the base branch with the fix's signature this soon after an auto-merge
    /// (event time, seconds) requests a rollback.
    pub rollback_window_seconds: i64,
    /// How long auto-merge should stay paused for the repository after a rollback, seconds
    /// (`RollbackRequested.cooldown_seconds`; the policy's decision is what applies).
    pub rollback_cooldown_seconds: i64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            rollback_window_seconds: 30 * 60,
            rollback_cooldown_seconds: 24 * 3600,
        }
    }
}
