//! Pure decisions: functions of (folded state, request, policy, event time). No clock, no I/O.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use sentinel_events::{ActionDecision, DispatchDecision, FailureType};

use crate::AutoRemediationPolicy;

/// What the policy knows, folded from facts.
#[derive(Debug, Clone, Default)]
pub struct PolicyState {
    /// Event times and repositories of past `dispatch` decisions, oldest first (bounded to
    /// the longest window).
    dispatched: VecDeque<(DateTime<Utc>, String, String)>,
}

impl PolicyState {
    /// Records a dispatch (tenant, repository) at an event time.
    pub fn record_dispatch(&mut self, at: DateTime<Utc>, tenant: &str, repository: &str) {
        self.dispatched
            .push_back((at, tenant.to_owned(), repository.to_owned()));
        // Keep one day (the longest window) behind the newest dispatch.
        let horizon = at - Duration::days(1);
        self.dispatched.retain(|(t, ..)| *t > horizon);
    }

    fn count_since(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        tenant: &str,
        repo: Option<&str>,
    ) -> u32 {
        let n = self
            .dispatched
            .iter()
            .filter(|(t, ten, r)| {
                *t > since && *t <= until && ten == tenant && repo.is_none_or(|repo| r == repo)
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

/// A request to start work on a classified failure.
#[derive(Debug, Clone)]
pub struct DispatchRequest<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Repository.
    pub repository: &'a str,
    /// The failure's class.
    pub failure_type: FailureType,
    /// The classification's confidence.
    pub confidence: f64,
    /// Whether the failing commit or branch is Sentinel's own.
    pub sentinel_authored: bool,
    /// Event time of the failure.
    pub at: DateTime<Utc>,
}

/// A decision with its machine-readable reason and a human sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<D> {
    /// The decision.
    pub decision: D,
    /// Machine-readable reason.
    pub reason_code: &'static str,
    /// Human sentence.
    pub reason: String,
}

/// Decides whether work may start on a failure.
pub fn decide_dispatch(
    state: &PolicyState,
    req: &DispatchRequest<'_>,
    policy: &AutoRemediationPolicy,
) -> Decision<DispatchDecision> {
    let d = |decision, reason_code, reason: String| Decision {
        decision,
        reason_code,
        reason,
    };
    if req.sentinel_authored {
        return d(
            DispatchDecision::LoopGuard,
            "sentinel_authored",
            "the failing commit or branch is Sentinel's own; never fix a fix".into(),
        );
    }
    if !req.failure_type.is_fixable() {
        return d(
            DispatchDecision::NotFixable,
            "failure_type_not_fixable",
            format!(
                "{} failures are never fixed automatically",
                req.failure_type
            ),
        );
    }
    let limits = &policy.rate_limits;
    let hour = state.count_since(req.at - Duration::hours(1), req.at, req.tenant, None);
    if hour >= limits.max_fixes_per_hour {
        return d(
            DispatchDecision::RateLimited,
            "max_fixes_per_hour",
            format!(
                "{hour} of {} fixes in the last hour",
                limits.max_fixes_per_hour
            ),
        );
    }
    let day = state.count_since(req.at - Duration::days(1), req.at, req.tenant, None);
    if day >= limits.max_fixes_per_day {
        return d(
            DispatchDecision::RateLimited,
            "max_fixes_per_day",
            format!(
                "{day} of {} fixes in the last day",
                limits.max_fixes_per_day
            ),
        );
    }
    let repo = state.count_since(
        req.at - Duration::days(1),
        req.at,
        req.tenant,
        Some(req.repository),
    );
    if repo >= limits.max_fixes_per_repo {
        return d(
            DispatchDecision::RateLimited,
            "max_fixes_per_repo",
            format!(
                "{repo} of {} fixes of this repository in the last day",
                limits.max_fixes_per_repo
            ),
        );
    }
    d(
        DispatchDecision::Dispatch,
        "within_limits",
        format!(
            "{} failure, {hour} of {} fixes this hour",
            req.failure_type, limits.max_fixes_per_hour
        ),
    )
}

/// Decides what to do with a validated (or failed) fix candidate.
pub fn decide_action(
    passed: bool,
    confidence: f64,
    protected_paths_touched: &[String],
    policy: &AutoRemediationPolicy,
) -> Decision<ActionDecision> {
    let t = &policy.confidence_thresholds;
    let d = |decision, reason_code, reason: String| Decision {
        decision,
        reason_code,
        reason,
    };
    if !passed {
        return d(
            ActionDecision::Reject,
            "validation_failed",
            "the fix did not pass validation".into(),
        );
    }
    if !protected_paths_touched.is_empty() {
        return d(
            ActionDecision::RequireReview,
            "protected_paths",
            format!(
                "the fix changes protected paths: {}",
                protected_paths_touched.join(", ")
            ),
        );
    }
    if confidence < t.require_review_below || confidence < t.auto_create_pr_threshold {
        return d(
            ActionDecision::RequireReview,
            "low_confidence",
            format!(
                "confidence {confidence:.2} is below {:.2}",
                t.require_review_below.max(t.auto_create_pr_threshold)
            ),
        );
    }
    if confidence >= t.auto_merge_threshold {
        return d(
            ActionDecision::AutoMerge,
            "high_confidence",
            format!(
                "confidence {confidence:.2} is at or above {:.2}",
                t.auto_merge_threshold
            ),
        );
    }
    d(
        ActionDecision::OpenPr,
        "confident",
        format!(
            "confidence {confidence:.2} is at or above {:.2}",
            t.auto_create_pr_threshold
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(at: DateTime<Utc>) -> DispatchRequest<'static> {
        DispatchRequest {
            tenant: "t",
            repository: "r",
            failure_type: FailureType::Formatting,
            confidence: 0.95,
            sentinel_authored: false,
            at,
        }
    }

    #[test]
    fn twenty_requests_in_quick_succession_dispatch_exactly_ten() {
        let policy = AutoRemediationPolicy {
            rate_limits: crate::model::RateLimits {
                max_fixes_per_repo: 100,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut state = PolicyState::default();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).expect("ts");
        let mut counts = (0, 0);
        for i in 0..20 {
            let r = req(t0 + Duration::seconds(i));
            let dec = decide_dispatch(&state, &r, &policy);
            match dec.decision {
                DispatchDecision::Dispatch => {
                    state.record_dispatch(r.at, r.tenant, r.repository);
                    counts.0 += 1;
                }
                DispatchDecision::RateLimited => {
                    assert_eq!(dec.reason_code, "max_fixes_per_hour");
                    counts.1 += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(counts, (10, 10));
        // An hour later (event time) the window has moved on.
        let later = req(t0 + Duration::seconds(3601 + 20));
        assert_eq!(
            decide_dispatch(&state, &later, &policy).decision,
            DispatchDecision::Dispatch
        );
    }

    #[test]
    fn infrastructure_and_own_commits_are_never_dispatched() {
        let state = PolicyState::default();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).expect("ts");
        let policy = AutoRemediationPolicy::default();
        let infra = DispatchRequest {
            failure_type: FailureType::Infrastructure,
            ..req(t0)
        };
        assert_eq!(
            decide_dispatch(&state, &infra, &policy).decision,
            DispatchDecision::NotFixable
        );
        let own = DispatchRequest {
            sentinel_authored: true,
            ..req(t0)
        };
        assert_eq!(
            decide_dispatch(&state, &own, &policy).decision,
            DispatchDecision::LoopGuard
        );
    }

    #[test]
    fn action_follows_the_confidence_thresholds() {
        let p = AutoRemediationPolicy::default();
        assert_eq!(
            decide_action(true, 0.95, &[], &p).decision,
            ActionDecision::AutoMerge
        );
        assert_eq!(
            decide_action(true, 0.8, &[], &p).decision,
            ActionDecision::OpenPr
        );
        assert_eq!(
            decide_action(true, 0.5, &[], &p).decision,
            ActionDecision::RequireReview
        );
        assert_eq!(
            decide_action(false, 0.99, &[], &p).decision,
            ActionDecision::Reject
        );
    }
}
