//! The tracker's settings.

use serde::{Deserialize, Serialize};

/// Settings of the tracker stage.
///
/// Rollback rules belong to the auto-remediation policy; until the policy exposes them
/// these two numbers are the tracker's own (the policy reads `RollbackRequested` and its
/// `cooldown_seconds`, nothing else couples the two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// A failure on the base branch with the fix's signature this soon after an auto-merge
    /// (event time, seconds) requests a rollback.
    pub rollback_window_seconds: i64,
    /// How long auto-merge stays paused for the repository after a rollback, seconds.
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
