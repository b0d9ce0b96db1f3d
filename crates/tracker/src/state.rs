//! The tracker's pure core: folded state of Sentinel's pull requests and the decision what
//! a forge observation or a new failure means (`apply` + `decide`, no I/O, no clock).

use std::collections::{HashMap, HashSet};

use sentinel_events::envelope::Timestamp;
use sentinel_events::facts::{
    FixOutcomeRecorded, ForgeEventReceived, PullRequestChecksCompleted, PullRequestClosed,
    PullRequestMerged, PullRequestReviewed, RollbackRequested,
};
use sentinel_events::types::{ActionDecision, FailureType};
use sentinel_events::{Event, Fact};
use uuid::Uuid;

use crate::config::TrackerConfig;

/// Where a tracked pull request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrStatus {
    /// Open: waiting for merge or close.
    Open,
    /// Merged into its base.
    Merged,
    /// Closed without merging.
    Closed,
}

/// One of Sentinel's pull requests, as far as the log tells.
#[derive(Debug, Clone)]
pub struct TrackedPr {
    /// The PR's URL (the key of every PR fact).
    pub url: String,
    /// The repository, as PatchBot opened it.
    pub repository: String,
    /// local-git, github or gitlab.
    pub forge: String,
    /// The PR number.
    pub number: i64,
    /// Head branch.
    pub branch: String,
    /// Base branch.
    pub base: String,
    /// When it was opened (event time).
    pub opened_at: Timestamp,
    /// Current status.
    pub status: PrStatus,
    /// When it merged (event time).
    pub merged_at: Option<Timestamp>,
    /// The merge commit, when known.
    pub merge_commit: Option<String>,
    /// The task that produced it.
    pub task_id: String,
    /// Checks already recorded: (head sha, conclusion).
    pub checks: HashSet<(String, String)>,
    /// Reviews already recorded: (reviewer, state).
    pub reviews: HashSet<(String, String)>,
    /// The last outcome recorded for the task, if any.
    pub outcome: Option<bool>,
    /// Whether a rollback was requested for it.
    pub rolled_back: bool,
}

/// Everything known about one failure → task → fix chain (keyed by correlation id).
#[derive(Debug, Clone, Default)]
pub struct Chain {
    /// The chain's correlation id.
    pub correlation_id: Uuid,
    /// Tenant of the chain's facts.
    pub tenant: String,
    /// Subject (repository) of the chain's facts.
    pub subject: String,
    /// The CiRunFailed fact.
    pub failure_event_id: Option<Uuid>,
    /// When CI failed (event time).
    pub failed_at: Option<Timestamp>,
    /// The failing repository.
    pub repository: Option<String>,
    /// The failing branch.
    pub branch: Option<String>,
    /// The failure's signature.
    pub signature: Option<String>,
    /// The failure's class.
    pub failure_type: Option<FailureType>,
    /// The fix task.
    pub task_id: Option<String>,
    /// The agent that ran it.
    pub agent_id: Option<String>,
    /// Strategy of each candidate.
    pub candidates: HashMap<String, String>,
    /// Confidence of each validated candidate.
    pub confidences: HashMap<String, f64>,
    /// The policy's action for the fix and the candidate it is about.
    pub action: Option<(ActionDecision, String)>,
    /// The fix's pull request.
    pub pr: Option<TrackedPr>,
}

impl Chain {
    /// The strategy of the candidate the policy acted on.
    pub fn strategy(&self) -> Option<&str> {
        let (_, candidate) = self.action.as_ref()?;
        self.candidates.get(candidate).map(String::as_str)
    }

    /// The confidence of the candidate the policy acted on.
    pub fn confidence(&self) -> Option<f64> {
        let (_, candidate) = self.action.as_ref()?;
        self.confidences.get(candidate).copied()
    }

    fn auto_merged(&self) -> bool {
        matches!(self.action, Some((ActionDecision::AutoMerge, _)))
    }
}

/// The tracker's folded state.
#[derive(Debug, Default)]
pub struct TrackerState {
    chains: HashMap<Uuid, Chain>,
    by_url: HashMap<String, Uuid>,
    by_task: HashMap<String, Uuid>,
}

/// Whether two repository names denote the same repository: equal, or one is the other's
/// `owner/name` tail (a PR opened as `https://github.com/o/r` and a webhook naming `o/r`).
fn same_repository(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim_end_matches('/')
            .trim_end_matches(".git")
            .to_ascii_lowercase()
    };
    let (a, b) = (norm(a), norm(b));
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

impl TrackerState {
    /// The chain a correlation id names.
    pub fn chain(&self, correlation_id: &Uuid) -> Option<&Chain> {
        self.chains.get(correlation_id)
    }

    /// The chain of a task.
    pub fn chain_of_task(&self, task_id: &str) -> Option<&Chain> {
        self.by_task.get(task_id).and_then(|c| self.chains.get(c))
    }

    /// Every pull request still open (what the poller asks the forge about).
    pub fn open_prs(&self) -> impl Iterator<Item = &TrackedPr> {
        self.chains
            .values()
            .filter_map(|c| c.pr.as_ref())
            .filter(|p| p.status == PrStatus::Open)
    }

    /// Every pull request still open, with its chain (tenant, subject, signature, …).
    pub fn open_with_chain(&self) -> impl Iterator<Item = (&Chain, &TrackedPr)> {
        self.chains
            .values()
            .filter_map(|c| Some((c, c.pr.as_ref()?)))
            .filter(|(_, p)| p.status == PrStatus::Open)
    }

    fn pr_mut(&mut self, url: &str) -> Option<&mut TrackedPr> {
        let corr = self.by_url.get(url)?;
        self.chains.get_mut(corr)?.pr.as_mut()
    }

    /// Folds one fact. Pure; idempotent for facts that set state.
    pub fn apply(&mut self, event: &Event) {
        let at = event.occurred_at;
        let chain = |s: &mut Self| {
            let c = s.chains.entry(event.correlation_id).or_default();
            if c.tenant.is_empty() {
                c.correlation_id = event.correlation_id;
                c.tenant.clone_from(&event.tenant);
                c.subject.clone_from(&event.subject);
            }
            event.correlation_id
        };
        match &event.fact {
            Fact::CiRunFailed(f) => {
                let k = chain(self);
                let c = self.chains.entry(k).or_default();
                c.failure_event_id = Some(event.event_id);
                c.failed_at = Some(at);
                c.repository = Some(f.repository.clone());
                c.branch = Some(f.branch.clone());
            }
            Fact::FailureClassified(f) => {
                let k = chain(self);
                let c = self.chains.entry(k).or_default();
                c.signature = Some(f.signature.clone());
                c.failure_type = Some(f.failure_type);
            }
            Fact::TaskQueued(f) => {
                let k = chain(self);
                let c = self.chains.entry(k).or_default();
                c.task_id = Some(f.task_id.clone());
                c.agent_id = Some(f.agent_id.clone());
                self.by_task.insert(f.task_id.clone(), k);
            }
            Fact::FixCandidateProposed(f) => {
                let k = chain(self);
                let c = self.chains.entry(k).or_default();
                c.candidates
                    .insert(f.candidate_id.clone(), f.strategy.clone());
            }
            Fact::FixValidated(f) if f.passed => {
                let k = chain(self);
                let c = self.chains.entry(k).or_default();
                c.confidences.insert(f.candidate_id.clone(), f.confidence);
            }
            Fact::ActionDecided(f) => {
                let k = chain(self);
                let c = self.chains.entry(k).or_default();
                c.action = Some((f.decision, f.candidate_id.clone()));
                c.confidences
                    .entry(f.candidate_id.clone())
                    .or_insert(f.confidence);
            }
            Fact::PullRequestOpened(f) => {
                let k = chain(self);
                self.by_task.insert(f.task_id.clone(), k);
                self.by_url.insert(f.url.clone(), k);
                let c = self.chains.entry(k).or_default();
                if c.pr.is_none() {
                    c.task_id.get_or_insert_with(|| f.task_id.clone());
                    c.pr = Some(TrackedPr {
                        url: f.url.clone(),
                        repository: f.repository.clone(),
                        forge: f.forge.clone(),
                        number: f.number,
                        branch: f.branch.clone(),
                        base: f.base.clone(),
                        opened_at: at,
                        status: PrStatus::Open,
                        merged_at: None,
                        merge_commit: None,
                        task_id: f.task_id.clone(),
                        checks: HashSet::new(),
                        reviews: HashSet::new(),
                        outcome: None,
                        rolled_back: false,
                    });
                }
            }
            Fact::PullRequestMerged(f) => {
                if let Some(pr) = self.pr_mut(&f.url)
                    && pr.status == PrStatus::Open
                {
                    pr.status = PrStatus::Merged;
                    pr.merged_at = Some(at);
                    pr.merge_commit.clone_from(&f.merge_commit);
                }
            }
            Fact::PullRequestClosed(f) => {
                if let Some(pr) = self.pr_mut(&f.url)
                    && pr.status == PrStatus::Open
                {
                    pr.status = PrStatus::Closed;
                }
            }
            Fact::PullRequestChecksCompleted(f) => {
                if let Some(pr) = self.pr_mut(&f.url) {
                    pr.checks.insert((f.head_sha.clone(), f.conclusion.clone()));
                }
            }
            Fact::PullRequestReviewed(f) => {
                if let Some(pr) = self.pr_mut(&f.url) {
                    pr.reviews.insert((f.reviewer.clone(), f.state.clone()));
                }
            }
            Fact::FixOutcomeRecorded(f) => {
                if let Some(corr) = self.by_task.get(&f.task_id).copied()
                    && let Some(pr) = self.chains.get_mut(&corr).and_then(|c| c.pr.as_mut())
                {
                    pr.outcome = Some(f.success);
                }
            }
            Fact::RollbackRequested(f) => {
                if let Some(pr) = self.pr_mut(&f.url) {
                    pr.rolled_back = true;
                }
            }
            _ => {}
        }
    }

    /// Finds the tracked PR a forge event is about: by URL, else by repository and number,
    /// else by repository and head branch.
    fn match_forge_event(&self, f: &ForgeEventReceived) -> Option<Uuid> {
        if let Some(url) = &f.pr_url
            && let Some(c) = self.by_url.get(url)
        {
            return Some(*c);
        }
        self.chains.iter().find_map(|(k, c)| {
            let pr = c.pr.as_ref()?;
            if !same_repository(&pr.repository, &f.repository) {
                return None;
            }
            let by_number = f.pr_number.is_some_and(|n| n == pr.number);
            let by_branch = f.head_branch.as_deref() == Some(pr.branch.as_str());
            (by_number || by_branch).then_some(*k)
        })
    }

    /// What `event` means for the tracked pull requests: the facts to append (in order).
    /// Called after `event` was folded. Pure.
    pub fn decide(&self, event: &Event, config: &TrackerConfig) -> Vec<Decided> {
        match &event.fact {
            Fact::ForgeEventReceived(f) => self.decide_forge_event(event, f),
            Fact::FailureClassified(_) => self.decide_rollback(event, config),
            _ => Vec::new(),
        }
    }

    fn decide_forge_event(&self, event: &Event, f: &ForgeEventReceived) -> Vec<Decided> {
        let Some(corr) = self.match_forge_event(f) else {
            return Vec::new();
        };
        let Some(chain) = self.chains.get(&corr) else {
            return Vec::new();
        };
        let Some(pr) = chain.pr.as_ref() else {
            return Vec::new();
        };
        let at = event.occurred_at;
        let mut out = Vec::new();
        let emit = |out: &mut Vec<Decided>, fact: Fact| {
            out.push(Decided {
                fact,
                correlation_id: corr,
                tenant: chain.tenant.clone(),
                subject: chain.subject.clone(),
                occurred_at: at,
            });
        };
        match classify(f) {
            Observation::Merged if pr.status == PrStatus::Open => {
                emit(
                    &mut out,
                    Fact::PullRequestMerged(PullRequestMerged {
                        url: pr.url.clone(),
                        repository: pr.repository.clone(),
                        merged_by: f.actor.clone(),
                        merge_commit: f.merge_commit.clone(),
                    }),
                );
                emit(
                    &mut out,
                    Fact::FixOutcomeRecorded(outcome(chain, pr, true, Some(at))),
                );
            }
            Observation::Closed if pr.status == PrStatus::Open => {
                emit(
                    &mut out,
                    Fact::PullRequestClosed(PullRequestClosed {
                        url: pr.url.clone(),
                        repository: pr.repository.clone(),
                        closed_by: f.actor.clone(),
                    }),
                );
                emit(
                    &mut out,
                    Fact::FixOutcomeRecorded(outcome(chain, pr, false, None)),
                );
            }
            Observation::Checks { sha, conclusion }
                if !pr.checks.contains(&(sha.clone(), conclusion.clone())) =>
            {
                emit(
                    &mut out,
                    Fact::PullRequestChecksCompleted(PullRequestChecksCompleted {
                        url: pr.url.clone(),
                        repository: pr.repository.clone(),
                        head_sha: sha,
                        conclusion,
                    }),
                );
            }
            Observation::Reviewed { reviewer, state }
                if !pr.reviews.contains(&(reviewer.clone(), state.clone())) =>
            {
                emit(
                    &mut out,
                    Fact::PullRequestReviewed(PullRequestReviewed {
                        url: pr.url.clone(),
                        repository: pr.repository.clone(),
                        reviewer,
                        state,
                    }),
                );
            }
            _ => {}
        }
        out
    }

    /// CI failed on a branch: if it is the base of a fix auto-merged within the rollback
    /// window and the failure has the fix's signature, the fix is suspected.
    fn decide_rollback(&self, event: &Event, config: &TrackerConfig) -> Vec<Decided> {
        let Some(new) = self.chains.get(&event.correlation_id) else {
            return Vec::new();
        };
        let (Some(repo), Some(branch), Some(sig), Some(failed_at), Some(failure_id)) = (
            new.repository.as_deref(),
            new.branch.as_deref(),
            new.signature.as_deref(),
            new.failed_at,
            new.failure_event_id,
        ) else {
            return Vec::new();
        };
        let window = chrono::Duration::seconds(config.rollback_window_seconds);
        let mut out = Vec::new();
        let mut suspects: Vec<(&Uuid, &Chain, &TrackedPr)> = self
            .chains
            .iter()
            .filter(|(k, _)| **k != event.correlation_id)
            .filter_map(|(k, c)| Some((k, c, c.pr.as_ref()?)))
            .filter(|(_, c, pr)| {
                c.auto_merged()
                    && pr.status == PrStatus::Merged
                    && !pr.rolled_back
                    && c.signature.as_deref() == Some(sig)
                    && pr.base == branch
                    && same_repository(&pr.repository, repo)
                    && pr
                        .merged_at
                        .is_some_and(|m| m <= failed_at && failed_at - m <= window)
            })
            .collect();
        // Deterministic output order (HashMap iteration is not).
        suspects.sort_by(|a, b| a.2.url.cmp(&b.2.url));
        for (k, c, pr) in suspects {
            let after = pr
                .merged_at
                .map_or(0.0, |m| (failed_at - m).num_milliseconds() as f64 / 1000.0);
            let decided = |fact| Decided {
                fact,
                correlation_id: *k,
                tenant: c.tenant.clone(),
                subject: c.subject.clone(),
                occurred_at: event.occurred_at,
            };
            out.push(decided(Fact::RollbackRequested(RollbackRequested {
                task_id: pr.task_id.clone(),
                repository: pr.repository.clone(),
                url: pr.url.clone(),
                base: pr.base.clone(),
                merge_commit: pr.merge_commit.clone(),
                signature: sig.to_owned(),
                failure_event_id: failure_id.to_string(),
                seconds_after_merge: after,
                cooldown_seconds: config.rollback_cooldown_seconds,
                reason_code: "same_signature_after_auto_merge".to_owned(),
            })));
            // The earlier success is superseded: merged, but CI did not stay green.
            let mut failed = outcome(c, pr, false, pr.merged_at);
            failed.success = false;
            out.push(decided(Fact::FixOutcomeRecorded(failed)));
        }
        out
    }
}

fn outcome(
    chain: &Chain,
    pr: &TrackedPr,
    success: bool,
    merged_at: Option<Timestamp>,
) -> FixOutcomeRecorded {
    let secs = |to: Timestamp| {
        chain
            .failed_at
            .map(|from| (to - from).num_milliseconds().max(0) as f64 / 1000.0)
    };
    FixOutcomeRecorded {
        task_id: pr.task_id.clone(),
        success,
        time_to_pr_seconds: secs(pr.opened_at),
        time_to_merge_seconds: merged_at.and_then(secs),
    }
}

/// A fact the tracker decided to append, with the envelope fields it belongs under (the
/// fix chain's correlation id and subject, not the forge event's).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The fact.
    pub fact: Fact,
    /// The fix chain it belongs to.
    pub correlation_id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Subject (repository).
    pub subject: String,
    /// Event time.
    pub occurred_at: Timestamp,
}

/// What a forge event says about a pull request.
#[derive(Debug, PartialEq)]
enum Observation {
    Merged,
    Closed,
    Checks { sha: String, conclusion: String },
    Reviewed { reviewer: String, state: String },
    Other,
}

/// Normalises GitHub and GitLab event names and actions (and the poller's, which uses
/// GitHub's names).
fn classify(f: &ForgeEventReceived) -> Observation {
    let action = f.action.as_deref().unwrap_or("").to_ascii_lowercase();
    let lower = |s: &Option<String>| s.as_deref().map(str::to_ascii_lowercase);
    match f.event.as_str() {
        "pull_request" if action == "closed" => {
            if f.merged == Some(true) {
                Observation::Merged
            } else {
                Observation::Closed
            }
        }
        "merge_request" => match action.as_str() {
            "merge" | "merged" => Observation::Merged,
            "close" | "closed" => Observation::Closed,
            "approved" | "approval" => Observation::Reviewed {
                reviewer: f.actor.clone().unwrap_or_default(),
                state: "approved".to_owned(),
            },
            _ => Observation::Other,
        },
        // check_run is one job among many: the suite (or pipeline) is the verdict.
        "check_suite" | "pipeline" => match (&f.head_sha, lower(&f.conclusion)) {
            (Some(sha), Some(c)) if is_terminal_conclusion(&c) => Observation::Checks {
                sha: sha.clone(),
                conclusion: normalise_conclusion(&c).to_owned(),
            },
            _ => Observation::Other,
        },
        "pull_request_review" if action == "submitted" || action.is_empty() => {
            match (&f.actor, lower(&f.conclusion)) {
                (Some(who), Some(state)) => Observation::Reviewed {
                    reviewer: who.clone(),
                    state,
                },
                _ => Observation::Other,
            }
        }
        _ => Observation::Other,
    }
}

fn is_terminal_conclusion(c: &str) -> bool {
    matches!(
        c,
        "success"
            | "failure"
            | "failed"
            | "neutral"
            | "cancelled"
            | "canceled"
            | "timed_out"
            | "action_required"
            | "skipped"
            | "stale"
    )
}

/// GitLab says `failed`/`canceled`; facts use GitHub's words.
fn normalise_conclusion(c: &str) -> &str {
    match c {
        "failed" => "failure",
        "canceled" => "cancelled",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn repositories_match_by_owner_name_tail() {
        assert!(same_repository("https://github.com/acme/app", "acme/app"));
        assert!(same_repository("acme/app.git", "ACME/app"));
        assert!(!same_repository("acme/app", "acme/application"));
        assert!(!same_repository("other/app2", "acme/app"));
    }

    #[test]
    fn merged_webhook_gives_merged_and_a_successful_outcome_once() {
        let chain = fix_chain("acme/app", "sig-1", ActionDecision::OpenPr, 0);
        let merged = forge_event(&chain, "pull_request", "closed", Some(true), 3600);
        let mut state = given(&chain);
        state.apply(&merged);
        let out = state.decide(&merged, &TrackerConfig::default());
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(matches!(&out[0].fact, Fact::PullRequestMerged(m) if m.url == chain.url));
        match &out[1].fact {
            Fact::FixOutcomeRecorded(o) => {
                assert!(o.success);
                assert_eq!(o.time_to_pr_seconds, Some(600.0));
                assert_eq!(o.time_to_merge_seconds, Some(3600.0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(out[0].correlation_id, chain.correlation_id);
        // The outputs folded, a redelivered webhook changes nothing.
        for d in &out {
            state.apply(&as_event(d));
        }
        assert!(state.decide(&merged, &TrackerConfig::default()).is_empty());
    }

    #[test]
    fn closed_unmerged_is_a_failed_outcome_and_unrelated_prs_are_ignored() {
        let chain = fix_chain("acme/app", "sig-1", ActionDecision::OpenPr, 0);
        let mut state = given(&chain);
        let closed = forge_event(&chain, "pull_request", "closed", Some(false), 100);
        let out = state.decide(&closed, &TrackerConfig::default());
        assert!(matches!(&out[0].fact, Fact::PullRequestClosed(_)));
        assert!(matches!(&out[1].fact, Fact::FixOutcomeRecorded(o) if !o.success));
        let mut other = forge_event(&chain, "pull_request", "closed", Some(true), 100);
        if let Fact::ForgeEventReceived(f) = &mut other.fact {
            f.pr_number = Some(999);
            f.pr_url = None;
            f.head_branch = Some("feature/x".into());
        }
        state.apply(&other);
        assert!(state.decide(&other, &TrackerConfig::default()).is_empty());
    }

    #[test]
    fn checks_and_reviews_are_recorded_once_each() {
        let chain = fix_chain("acme/app", "sig-1", ActionDecision::OpenPr, 0);
        let mut state = given(&chain);
        let mut suite = forge_event(&chain, "check_suite", "completed", None, 50);
        if let Fact::ForgeEventReceived(f) = &mut suite.fact {
            f.conclusion = Some("success".into());
            f.head_sha = Some("abc".into());
        }
        let out = state.decide(&suite, &TrackerConfig::default());
        assert!(
            matches!(&out[..], [d] if matches!(&d.fact, Fact::PullRequestChecksCompleted(c) if c.conclusion == "success" && c.head_sha == "abc"))
        );
        state.apply(&as_event(&out[0]));
        assert!(state.decide(&suite, &TrackerConfig::default()).is_empty());
        let mut review = forge_event(&chain, "pull_request_review", "submitted", None, 60);
        if let Fact::ForgeEventReceived(f) = &mut review.fact {
            f.conclusion = Some("APPROVED".into());
            f.actor = Some("maintainer".into());
        }
        let out = state.decide(&review, &TrackerConfig::default());
        assert!(
            matches!(&out[..], [d] if matches!(&d.fact, Fact::PullRequestReviewed(r) if r.state == "approved" && r.reviewer == "maintainer"))
        );
    }

    #[test]
    fn same_signature_on_the_base_soon_after_an_auto_merge_requests_a_rollback() {
        let config = TrackerConfig {
            rollback_window_seconds: 1800,
            rollback_cooldown_seconds: 7200,
        };
        let chain = fix_chain("acme/app", "sig-1", ActionDecision::AutoMerge, 0);
        let mut state = given(&chain);
        let merged = forge_event(&chain, "pull_request", "closed", Some(true), 1000);
        state.apply(&merged);
        for d in state.decide(&merged, &config) {
            state.apply(&as_event(&d));
        }
        // Same signature on main 10 minutes after the merge: rollback.
        let again = new_failure(&mut state, "acme/app", "main", "sig-1", 1600);
        let out = state.decide(&again, &config);
        assert_eq!(out.len(), 2, "{out:?}");
        match &out[0].fact {
            Fact::RollbackRequested(r) => {
                assert_eq!(r.cooldown_seconds, 7200);
                assert_eq!(r.seconds_after_merge, 600.0);
                assert_eq!(r.task_id, chain.task_id);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&out[1].fact, Fact::FixOutcomeRecorded(o) if !o.success));
        for d in &out {
            state.apply(&as_event(d));
        }
        // Only once.
        let third = new_failure(&mut state, "acme/app", "main", "sig-1", 1700);
        assert!(state.decide(&third, &config).is_empty());
    }

    #[test]
    fn no_rollback_outside_the_window_for_other_signatures_or_without_auto_merge() {
        let config = TrackerConfig {
            rollback_window_seconds: 1800,
            rollback_cooldown_seconds: 7200,
        };
        for (action, sig, branch, at, expect) in [
            (
                ActionDecision::AutoMerge,
                "sig-1",
                "main",
                1000 + 1799,
                true,
            ),
            (
                ActionDecision::AutoMerge,
                "sig-1",
                "main",
                1000 + 1801,
                false,
            ),
            (ActionDecision::AutoMerge, "sig-2", "main", 1100, false),
            (ActionDecision::AutoMerge, "sig-1", "develop", 1100, false),
            (ActionDecision::OpenPr, "sig-1", "main", 1100, false),
        ] {
            let chain = fix_chain("acme/app", "sig-1", action, 0);
            let mut state = given(&chain);
            let merged = forge_event(&chain, "pull_request", "closed", Some(true), 1000);
            for d in state.decide(&merged, &config) {
                state.apply(&as_event(&d));
            }
            let again = new_failure(&mut state, "acme/app", branch, sig, at);
            let got = !state.decide(&again, &config).is_empty();
            assert_eq!(got, expect, "{action:?} {sig} {branch} {at}");
        }
    }
}
