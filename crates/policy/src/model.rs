//! The policy file: `AutoRemediationPolicy`, with the seed's fields and defaults.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The auto-remediation policy. Every field has a default (the seed's values), so an empty
/// file is the default policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AutoRemediationPolicy {
    /// Rate limits and cooldowns.
    pub rate_limits: RateLimits,
    /// Confidence thresholds of the action decision.
    pub confidence_thresholds: ConfidenceThresholds,
    /// Limits on how much is in flight at once.
    pub blast_radius: BlastRadius,
    /// When a human must review.
    pub review_gates: ReviewGates,
}

/// Rate limits (event-time windows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Fixes dispatched per tenant in any rolling hour.
    pub max_fixes_per_hour: u32,
    /// Fixes dispatched per tenant in any rolling day.
    pub max_fixes_per_day: u32,
    /// Fixes dispatched per repository in any rolling day.
    pub max_fixes_per_repo: u32,
    /// Minutes to wait on a repository after a fix of it failed.
    pub cooldown_after_failure_minutes: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            max_fixes_per_hour: 10,
            max_fixes_per_day: 50,
            max_fixes_per_repo: 5,
            cooldown_after_failure_minutes: 60,
        }
    }
}

/// Confidence thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfidenceThresholds {
    /// At or above: the fix may be merged automatically.
    pub auto_merge_threshold: f64,
    /// At or above: a pull request is opened.
    pub auto_create_pr_threshold: f64,
    /// Below: a human review is required.
    pub require_review_below: f64,
}

impl Default for ConfidenceThresholds {
    fn default() -> Self {
        Self {
            auto_merge_threshold: 0.9,
            auto_create_pr_threshold: 0.7,
            require_review_below: 0.7,
        }
    }
}

/// Blast-radius limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlastRadius {
    /// Fixes in flight at once per tenant.
    pub max_concurrent_fixes: u32,
    /// Repositories with a fix in flight at once per tenant.
    pub max_repos_affected_simultaneously: u32,
}

impl Default for BlastRadius {
    fn default() -> Self {
        Self {
            max_concurrent_fixes: 3,
            max_repos_affected_simultaneously: 10,
        }
    }
}

/// Review gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewGates {
    /// Security-sensitive changes need a review.
    pub require_review_for_security_changes: bool,
    /// Production configuration changes need a review.
    pub require_review_for_production_configs: bool,
    /// Hours before an unanswered review is escalated.
    pub escalation_timeout_hours: u32,
}

impl Default for ReviewGates {
    fn default() -> Self {
        Self {
            require_review_for_security_changes: true,
            require_review_for_production_configs: true,
            escalation_timeout_hours: 24,
        }
    }
}

impl AutoRemediationPolicy {
    /// Parses a policy file. Unknown keys and wrong types fail with the key and line.
    ///
    /// # Errors
    ///
    /// [`Error::Parse`] with the TOML parser's message (it names the line and key).
    pub fn from_toml(source: &str, text: &str) -> Result<Self> {
        let policy: Self = toml::from_str(text).map_err(|e| Error::Parse {
            source_name: source.to_owned(),
            message: e.to_string(),
        })?;
        policy.validate(source)?;
        Ok(policy)
    }

    fn validate(&self, source: &str) -> Result<()> {
        let c = &self.confidence_thresholds;
        for (key, v) in [
            (
                "confidence_thresholds.auto_merge_threshold",
                c.auto_merge_threshold,
            ),
            (
                "confidence_thresholds.auto_create_pr_threshold",
                c.auto_create_pr_threshold,
            ),
            (
                "confidence_thresholds.require_review_below",
                c.require_review_below,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Parse {
                    source_name: source.to_owned(),
                    message: format!("{key} = {v} must be between 0 and 1"),
                });
            }
        }
        Ok(())
    }

    /// The version: a content hash of the policy's canonical form (so formatting and
    /// comments do not change it, and defaults spelled out equal defaults left out).
    pub fn version(&self) -> String {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        format!("sha256:{}", &hex::encode(digest)[..16])
    }
}
