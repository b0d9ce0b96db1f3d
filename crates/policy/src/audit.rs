//! The audit (DESIGN §4 rule 3): every side effect in the log must reference an allowing
//! decision made under the policy in force at that moment. Pure: a function of the facts in
//! log order.
//!
//! | side effect (fact) | must reference |
//! |---|---|
//! | `TaskQueued` with a decision (work starts) | an earlier `DispatchDecided` = `dispatch` for the same failure |
//! | `FixValidated` (sandbox run) | an earlier `DispatchDecided` = `dispatch` (via `decision_id`) |
//! | `BranchPushed` | an earlier `ActionDecided` = `auto_merge` / `open_pr` / `require_review` for the same task; the branch must start with the fix-branch prefix and not be protected |
//! | `PullRequestOpened` | the same; a `require_review` decision only allows a draft |
//! | `PullRequestReadied` (draft → ready) | an earlier approving `ReviewCompleted` of the fix's review |
//! | `AutoMergeEnabled` | an earlier `ActionDecided` = `auto_merge` for the same task, and an earlier `PullRequestOpened` of that task with the same URL |
//! | `PullRequestMerged` by Sentinel (`merged_by` names Sentinel) | an `auto_merge` decision for the PR's task, or an approving `ReviewCompleted` of its review |
//! | `RevertPullRequestOpened` | an earlier `RollbackDecided` = `revert` for the same task, naming the branch the revert was opened from; that branch must not be protected |
//! | `AutoMergeDisabled` | an earlier `RollbackDecided` of the same repository that pauses auto-merge (`auto_merge_pause_seconds > 0`) |
//!
//! *Policy in force*: the policy version of the newest decision the tenant's policy stage
//! recorded. An effect whose allowing decision was made under a version that has since been
//! superseded (a decision under another version was recorded between the allowing decision
//! and the effect) is a violation: a tightened policy must not be bypassed by decisions made
//! before it took effect.

use std::collections::HashMap;

use sentinel_events::{ActionDecision, DispatchDecision, Event, Fact, RollbackDecision};
use serde::Serialize;

use crate::AutoRemediationPolicy;
use crate::model::matches;

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The effect's event id.
    pub event_id: String,
    /// The effect's fact type.
    pub event_type: String,
    /// Tenant.
    pub tenant: String,
    /// Repository.
    pub repository: String,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}/{}): {}",
            self.event_type, self.event_id, self.tenant, self.repository, self.problem
        )
    }
}

#[derive(Debug, Clone)]
enum Decided {
    Dispatch {
        failure: String,
        decision: DispatchDecision,
        version: String,
        seq: usize,
    },
    Action {
        task: String,
        decision: ActionDecision,
        version: String,
        seq: usize,
    },
    Rollback {
        task: String,
        repository: String,
        decision: RollbackDecision,
        branch: Option<String>,
        pauses: bool,
        version: String,
        seq: usize,
    },
}

/// Audits facts in log order. `policy` supplies the branch rules (fix-branch prefix,
/// protected branches).
pub fn audit(events: &[Event], policy: &AutoRemediationPolicy) -> Vec<Violation> {
    let mut decisions: HashMap<String, Decided> = HashMap::new();
    // Per tenant: (current version, sequence number of the decision that changed it).
    let mut in_force: HashMap<String, (String, usize)> = HashMap::new();
    let mut task_failure: HashMap<String, String> = HashMap::new();
    let mut task_action: HashMap<String, String> = HashMap::new();
    let mut pr_task: HashMap<String, String> = HashMap::new();
    let mut review_task: HashMap<String, String> = HashMap::new();
    let mut approved_tasks: HashMap<String, bool> = HashMap::new();
    let mut completions: HashMap<String, (String, bool)> = HashMap::new();
    let mut out = Vec::new();
    for (seq, e) in events.iter().enumerate() {
        let mut violation = |problem: String| {
            out.push(Violation {
                event_id: e.event_id.to_string(),
                event_type: e.event_type().to_owned(),
                tenant: e.tenant.clone(),
                repository: e.subject.clone(),
                problem,
            });
        };
        // Checks that `id` names an allowing decision made under the policy still in force.
        let check_in_force = |version: &str, dseq: usize, violation: &mut dyn FnMut(String)| {
            match in_force.get(&e.tenant) {
                Some((current, changed_at)) if current != version && *changed_at > dseq => {
                    violation(format!(
                        "the allowing decision was made under policy {version}, superseded by {current} before this effect"
                    ));
                }
                _ => {}
            }
        };
        match &e.fact {
            Fact::DispatchDecided(d) => {
                decisions.insert(
                    e.event_id.to_string(),
                    Decided::Dispatch {
                        failure: d.failure_event_id.clone(),
                        decision: d.decision,
                        version: d.policy_version.clone(),
                        seq,
                    },
                );
                note_version(&mut in_force, &e.tenant, &d.policy_version, seq);
            }
            Fact::ActionDecided(a) => {
                decisions.insert(
                    e.event_id.to_string(),
                    Decided::Action {
                        task: a.task_id.clone(),
                        decision: a.decision,
                        version: a.policy_version.clone(),
                        seq,
                    },
                );
                task_action.insert(a.task_id.clone(), e.event_id.to_string());
                note_version(&mut in_force, &e.tenant, &a.policy_version, seq);
            }
            Fact::RollbackDecided(r) => {
                decisions.insert(
                    e.event_id.to_string(),
                    Decided::Rollback {
                        task: r.task_id.clone(),
                        repository: r.repository.clone(),
                        decision: r.decision,
                        branch: r.revert_branch.clone(),
                        pauses: r.auto_merge_pause_seconds > 0,
                        version: r.policy_version.clone(),
                        seq,
                    },
                );
                note_version(&mut in_force, &e.tenant, &r.policy_version, seq);
            }
            Fact::RevertPullRequestOpened(p) => {
                let rules = &policy.rules_for(&e.tenant, &e.subject);
                if matches(&rules.protected_branches, &p.branch) {
                    violation(format!(
                        "opened a revert from {}, which is protected",
                        p.branch
                    ));
                }
                match decisions.get(&p.decision_id) {
                    Some(Decided::Rollback {
                        task,
                        decision: RollbackDecision::Revert,
                        branch,
                        version,
                        seq: dseq,
                        ..
                    }) => {
                        if *task != p.task_id {
                            violation(format!(
                                "decision {} is about task {task}, not {}",
                                p.decision_id, p.task_id
                            ));
                        }
                        if branch.as_deref() != Some(p.branch.as_str()) {
                            violation(format!(
                                "decision {} allows a revert from {branch:?}, not from {}",
                                p.decision_id, p.branch
                            ));
                        }
                        check_in_force(version, *dseq, &mut violation);
                    }
                    Some(Decided::Rollback { decision, .. }) => violation(format!(
                        "decision {} is {}, not revert",
                        p.decision_id,
                        decision.as_str()
                    )),
                    _ => violation(format!(
                        "no earlier rollback decision {} for the revert {}",
                        p.decision_id, p.url
                    )),
                }
            }
            Fact::AutoMergeDisabled(a) => match decisions.get(&a.decision_id) {
                Some(Decided::Rollback {
                    repository,
                    pauses: true,
                    version,
                    seq: dseq,
                    ..
                }) => {
                    if *repository != a.repository {
                        violation(format!(
                            "decision {} pauses {repository}, not {}",
                            a.decision_id, a.repository
                        ));
                    }
                    check_in_force(version, *dseq, &mut violation);
                }
                Some(Decided::Rollback { .. }) => violation(format!(
                    "decision {} does not pause auto-merge",
                    a.decision_id
                )),
                _ => violation(format!(
                    "no earlier rollback decision {} for switching off auto-merge of {}",
                    a.decision_id, a.url
                )),
            },
            Fact::TaskQueued(t) => {
                let Some(id) = &t.decision_id else { continue };
                if let Some(f) = &t.failure_event_id {
                    task_failure.insert(t.task_id.clone(), f.clone());
                }
                match decisions.get(id) {
                    Some(Decided::Dispatch {
                        failure,
                        decision: DispatchDecision::Dispatch,
                        version,
                        seq: dseq,
                    }) => {
                        if t.failure_event_id.as_ref().is_some_and(|f| f != failure) {
                            violation(format!("decision {id} is about another failure"));
                        }
                        check_in_force(version, *dseq, &mut violation);
                    }
                    Some(Decided::Dispatch { decision, .. }) => violation(format!(
                        "decision {id} is {}, not dispatch",
                        decision.as_str()
                    )),
                    _ => violation(format!("no earlier dispatch decision {id}")),
                }
            }
            Fact::FixValidated(v) => match decisions.get(&v.decision_id) {
                Some(Decided::Dispatch {
                    failure,
                    decision: DispatchDecision::Dispatch,
                    version,
                    seq: dseq,
                }) => {
                    if task_failure.get(&v.task_id).is_some_and(|f| f != failure) {
                        violation(format!(
                            "sandbox run under decision {} which is about another failure",
                            v.decision_id
                        ));
                    }
                    check_in_force(version, *dseq, &mut violation);
                }
                Some(Decided::Dispatch { decision, .. }) => violation(format!(
                    "sandbox run under decision {} = {}, not dispatch",
                    v.decision_id,
                    decision.as_str()
                )),
                _ => violation(format!(
                    "sandbox run without an earlier dispatch decision ({})",
                    v.decision_id
                )),
            },
            Fact::BranchPushed(b) => {
                let rules = &policy.rules_for(&e.tenant, &e.subject);
                if !b
                    .branch
                    .starts_with(&rules.rules.branches.fix_branch_prefix)
                    || matches(&rules.protected_branches, &b.branch)
                {
                    violation(format!(
                        "pushed to {}, which is not a fix branch ({}…) or is protected",
                        b.branch, rules.rules.branches.fix_branch_prefix
                    ));
                }
                check_action(
                    &decisions,
                    &b.decision_id,
                    &b.task_id,
                    None,
                    &mut violation,
                    &check_in_force,
                );
            }
            Fact::PullRequestOpened(p) => {
                pr_task.insert(p.url.clone(), p.task_id.clone());
                check_action(
                    &decisions,
                    &p.decision_id,
                    &p.task_id,
                    Some(p.draft),
                    &mut violation,
                    &check_in_force,
                );
            }
            Fact::AutoMergeEnabled(a) => {
                match decisions.get(&a.decision_id) {
                    Some(Decided::Action {
                        task,
                        decision: ActionDecision::AutoMerge,
                        version,
                        seq: dseq,
                    }) => {
                        if *task != a.task_id {
                            violation(format!(
                                "decision {} is about task {task}, not {}",
                                a.decision_id, a.task_id
                            ));
                        }
                        check_in_force(version, *dseq, &mut violation);
                    }
                    Some(Decided::Action { decision, .. }) => violation(format!(
                        "auto-merge enabled on {} under decision {} = {}, not auto_merge",
                        a.url,
                        a.decision_id,
                        decision.as_str()
                    )),
                    _ => violation(format!(
                        "auto-merge enabled on {} without an earlier auto_merge decision ({})",
                        a.url, a.decision_id
                    )),
                }
                if pr_task.get(&a.url) != Some(&a.task_id) {
                    violation(format!(
                        "auto-merge enabled on {}, which is not the pull request opened for task {}",
                        a.url, a.task_id
                    ));
                }
            }
            Fact::ReviewRequested(r) => {
                review_task.insert(r.review_id.clone(), r.task_id.clone());
            }
            Fact::ReviewCompleted(r) => {
                if let Some(t) = review_task.get(&r.review_id) {
                    approved_tasks.insert(t.clone(), r.approved);
                    completions.insert(e.event_id.to_string(), (r.review_id.clone(), r.approved));
                }
            }
            Fact::PullRequestReadied(p) => match completions.get(&p.decision_id) {
                Some((review, true))
                    if *review == p.review_id && review_task.get(review) == Some(&p.task_id) => {}
                _ => violation(format!(
                    "marked {} ready without an approving review ({})",
                    p.url, p.decision_id
                )),
            },
            Fact::PullRequestMerged(m) => {
                let by_sentinel = m
                    .merged_by
                    .as_deref()
                    .is_some_and(|b| b.to_ascii_lowercase().contains("sentinel"));
                let Some(task) = pr_task.get(&m.url) else {
                    continue;
                };
                if !by_sentinel {
                    continue;
                }
                let auto = task_action
                    .get(task)
                    .and_then(|id| decisions.get(id))
                    .is_some_and(|d| {
                        matches!(
                            d,
                            Decided::Action {
                                decision: ActionDecision::AutoMerge,
                                ..
                            }
                        )
                    });
                let approved = approved_tasks.get(task).copied().unwrap_or(false);
                if !auto && !approved {
                    violation(format!(
                        "Sentinel merged {} without an auto_merge decision or an approved review",
                        m.url
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

fn note_version(
    in_force: &mut HashMap<String, (String, usize)>,
    tenant: &str,
    version: &str,
    seq: usize,
) {
    match in_force.get_mut(tenant) {
        Some((v, at)) if v != version => {
            *v = version.to_owned();
            *at = seq;
        }
        Some(_) => {}
        None => {
            in_force.insert(tenant.to_owned(), (version.to_owned(), seq));
        }
    }
}

/// Checks that a decision's policy version was still in force (see the module docs).
type InForceCheck<'a> = dyn Fn(&str, usize, &mut dyn FnMut(String)) + 'a;

fn check_action(
    decisions: &HashMap<String, Decided>,
    id: &str,
    task_id: &str,
    draft: Option<bool>,
    violation: &mut dyn FnMut(String),
    check_in_force: &InForceCheck<'_>,
) {
    match decisions.get(id) {
        Some(Decided::Action {
            task,
            decision,
            version,
            seq,
        }) => {
            if task != task_id {
                violation(format!("decision {id} is about task {task}, not {task_id}"));
            }
            match decision {
                ActionDecision::Reject => {
                    violation(format!("decision {id} rejected the fix"));
                }
                ActionDecision::RequireReview if draft == Some(false) => {
                    violation(format!(
                        "decision {id} requires review, but the pull request was not a draft"
                    ));
                }
                _ => {}
            }
            check_in_force(version, *seq, violation);
        }
        _ => violation(format!("no earlier action decision {id}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_events::facts::{ActionDecided, BranchPushed};

    #[test]
    fn a_push_without_a_decision_and_to_main_is_reported() {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("ts");
        let decided = Event::origin(
            ActionDecided {
                task_id: "task".into(),
                candidate_id: "c".into(),
                decision: ActionDecision::OpenPr,
                reason_code: "confident".into(),
                reason: "x".into(),
                policy_version: "sha256:1".into(),
                confidence: 0.8,
            },
            Some("d"),
            "t",
            "r",
            t0,
            "policy@0",
        );
        let push = |branch: &str, decision: &str| {
            Event::origin(
                BranchPushed {
                    task_id: "task".into(),
                    repository: "r".into(),
                    branch: branch.into(),
                    commit: "c".into(),
                    decision_id: decision.into(),
                },
                Some(branch),
                "t",
                "r",
                t0,
                "patchbot@0",
            )
        };
        let ok = push("sentinel/fix-abc", &decided.event_id.to_string());
        let p = AutoRemediationPolicy::default();
        assert!(audit(&[decided.clone(), ok.clone()], &p).is_empty());
        let v = audit(&[ok.clone(), decided.clone()], &p);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].problem.contains("no earlier action decision"));
        let v = audit(
            &[decided.clone(), push("main", &decided.event_id.to_string())],
            &p,
        );
        assert!(v[0].problem.contains("not a fix branch"), "{v:?}");
    }

    /// Enabling auto-merge needs an `auto_merge` decision for the task and its opened PR;
    /// an `open_pr` decision, a missing decision or a PR of another task are violations.
    #[test]
    fn auto_merge_needs_an_auto_merge_decision() {
        use sentinel_events::facts::{AutoMergeEnabled, PullRequestOpened};
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("ts");
        let decided = |decision: ActionDecision, id: &str| {
            Event::origin(
                ActionDecided {
                    task_id: "task".into(),
                    candidate_id: "c".into(),
                    decision,
                    reason_code: "x".into(),
                    reason: "x".into(),
                    policy_version: "sha256:1".into(),
                    confidence: 0.95,
                },
                Some(id),
                "t",
                "r",
                t0,
                "policy@0",
            )
        };
        let opened = |d: &Event| {
            d.caused(
                PullRequestOpened {
                    task_id: "task".into(),
                    repository: "r".into(),
                    forge: "github".into(),
                    number: 1,
                    url: "https://github.example/r/pull/1".into(),
                    branch: "sentinel/fix-abc".into(),
                    base: "main".into(),
                    title: "Fix".into(),
                    draft: false,
                    decision_id: d.event_id.to_string(),
                },
                "patchbot@0",
                11,
                None,
            )
        };
        let enabled = |d: &Event, url: &str| {
            d.caused(
                AutoMergeEnabled {
                    task_id: "task".into(),
                    repository: "r".into(),
                    url: url.into(),
                    forge: "github".into(),
                    decision_id: d.event_id.to_string(),
                },
                "patchbot@0",
                13,
                None,
            )
        };
        let p = AutoRemediationPolicy::default();
        let url = "https://github.example/r/pull/1";
        let auto = decided(ActionDecision::AutoMerge, "a");
        assert!(audit(&[auto.clone(), opened(&auto), enabled(&auto, url)], &p).is_empty());
        let pr = decided(ActionDecision::OpenPr, "b");
        let v = audit(&[pr.clone(), opened(&pr), enabled(&pr, url)], &p);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].problem.contains("not auto_merge"), "{v:?}");
        assert_eq!(v[0].event_type, "auto_merge_enabled");
        let v = audit(&[opened(&auto), enabled(&auto, url)], &p);
        assert!(
            v.iter()
                .any(|v| v.problem.contains("without an earlier auto_merge decision")),
            "{v:?}"
        );
        let v = audit(
            &[
                auto.clone(),
                opened(&auto),
                enabled(&auto, "https://github.example/r/pull/9"),
            ],
            &p,
        );
        assert!(
            v[0].problem.contains("not the pull request opened"),
            "{v:?}"
        );
    }

    #[test]
    fn switching_auto_merge_off_needs_a_pausing_rollback_decision_of_the_repository() {
        use sentinel_events::facts::{AutoMergeDisabled, RollbackDecided};
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("ts");
        let decision = |pause: i64, id: &str| {
            Event::origin(
                RollbackDecided {
                    rollback_event_id: "rb".into(),
                    task_id: "task".into(),
                    repository: "r".into(),
                    url: "https://forge.example/r/pull/7".into(),
                    base: "main".into(),
                    revert_commit: None,
                    decision: RollbackDecision::NoRevert,
                    revert_branch: None,
                    auto_merge_pause_seconds: pause,
                    reason_code: "x".into(),
                    reason: "x".into(),
                    policy_version: "sha256:1".into(),
                },
                Some(id),
                "t",
                "r",
                t0,
                "policy@0",
            )
        };
        let disabled = |repository: &str, decision: &Event| {
            Event::origin(
                AutoMergeDisabled {
                    task_id: "other".into(),
                    repository: repository.into(),
                    url: "https://forge.example/r/pull/9".into(),
                    forge: "github".into(),
                    decision_id: decision.event_id.to_string(),
                },
                Some(&format!("{repository}/{}", decision.event_id)),
                "t",
                repository,
                t0,
                "rollback@0",
            )
        };
        let p = AutoRemediationPolicy::default();
        let pauses = decision(3600, "pauses");
        assert!(audit(&[pauses.clone(), disabled("r", &pauses)], &p).is_empty());
        let v = audit(&[disabled("r", &pauses)], &p);
        assert!(
            v[0].problem.contains("no earlier rollback decision"),
            "{v:?}"
        );
        let v = audit(&[pauses.clone(), disabled("elsewhere", &pauses)], &p);
        assert!(v[0].problem.contains("pauses r, not elsewhere"), "{v:?}");
        let still = decision(0, "no-pause");
        let v = audit(&[still.clone(), disabled("r", &still)], &p);
        assert!(v[0].problem.contains("does not pause"), "{v:?}");
    }

    #[test]
    fn a_revert_needs_a_revert_decision_for_its_task_and_branch() {
        use sentinel_events::facts::{RevertPullRequestOpened, RollbackDecided};
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("ts");
        let decision = |d: RollbackDecision, id: &str| {
            Event::origin(
                RollbackDecided {
                    rollback_event_id: "rb".into(),
                    task_id: "task".into(),
                    repository: "r".into(),
                    url: "https://forge.example/r/pull/7".into(),
                    base: "main".into(),
                    revert_commit: Some("abc".into()),
                    decision: d,
                    revert_branch: (d == RollbackDecision::Revert)
                        .then(|| "sentinel/revert-abc".to_owned()),
                    auto_merge_pause_seconds: 3600,
                    reason_code: "x".into(),
                    reason: "x".into(),
                    policy_version: "sha256:1".into(),
                },
                Some(id),
                "t",
                "r",
                t0,
                "policy@0",
            )
        };
        let revert = |branch: &str, task: &str, decision: &Event| {
            Event::origin(
                RevertPullRequestOpened {
                    task_id: task.into(),
                    repository: "r".into(),
                    forge: "local-git".into(),
                    number: 8,
                    url: "file:///records/8.json".into(),
                    branch: branch.into(),
                    base: "main".into(),
                    reverted_commit: "abc".into(),
                    commit: "def".into(),
                    fix_url: "https://forge.example/r/pull/7".into(),
                    decision_id: decision.event_id.to_string(),
                },
                Some(&format!("{branch}/{task}")),
                "t",
                "r",
                t0,
                "rollback@0",
            )
        };
        let p = AutoRemediationPolicy::default();
        let yes = decision(RollbackDecision::Revert, "yes");
        let ok = revert("sentinel/revert-abc", "task", &yes);
        assert!(audit(&[yes.clone(), ok.clone()], &p).is_empty());
        let v = audit(&[ok.clone(), yes.clone()], &p);
        assert!(
            v[0].problem.contains("no earlier rollback decision"),
            "{v:?}"
        );
        let v = audit(
            &[yes.clone(), revert("sentinel/revert-zzz", "task", &yes)],
            &p,
        );
        assert!(v[0].problem.contains("allows a revert from"), "{v:?}");
        let v = audit(
            &[yes.clone(), revert("sentinel/revert-abc", "other", &yes)],
            &p,
        );
        assert!(v[0].problem.contains("not other"), "{v:?}");
        let v = audit(&[yes.clone(), revert("main", "task", &yes)], &p);
        assert!(v.iter().any(|v| v.problem.contains("protected")), "{v:?}");
        let no = decision(RollbackDecision::NoRevert, "no");
        let v = audit(
            &[no.clone(), revert("sentinel/revert-abc", "task", &no)],
            &p,
        );
        assert!(v[0].problem.contains("no_revert, not revert"), "{v:?}");
    }
}
