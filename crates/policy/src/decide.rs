//! Pure decisions: functions of (folded state, request, policy, event time). No clock, no I/O.
//!
//! [`PolicyState`] is folded from facts with [`PolicyState::observe`]; the live stage and
//! replay fold the same facts with the same function and decide with the same
//! [`decide_dispatch`] and [`decide_action`].

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use sentinel_events::{
    ActionDecision, DispatchDecision, Event, Fact, FailureType, RollbackDecision, TaskOutcome,
};

use crate::AutoRemediationPolicy;
use crate::model::{Compiled, RollbackAction, matches};

/// A fix in flight longer than this (event time) no longer counts against the blast radius:
/// its task was lost without a terminal fact.
pub const IN_FLIGHT_HORIZON_HOURS: i64 = 24;

/// What the policy knows about one failure.
#[derive(Debug, Clone)]
pub struct FailureInfo {
    /// Tenant.
    pub tenant: String,
    /// Repository.
    pub repository: String,
    /// Branch the failure happened on.
    pub branch: String,
    /// Commit author, when known.
    pub author: Option<String>,
    /// Whether the failing commit or branch is Sentinel's own.
    pub sentinel_authored: bool,
    /// Failure signature (once classified).
    pub signature: String,
}

#[derive(Debug, Clone)]
struct Dispatched {
    at: DateTime<Utc>,
    tenant: String,
    repository: String,
    branch: String,
    signature: String,
}

#[derive(Debug, Clone)]
struct InFlight {
    tenant: String,
    repository: String,
    since: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Pause {
    until: DateTime<Utc>,
    action: RollbackAction,
    because: String,
}

/// A merged Sentinel fix: merge time and the failure signature it fixed.
type Merge = (DateTime<Utc>, String);

/// What the policy knows, folded from facts.
#[derive(Debug, Clone, Default)]
pub struct PolicyState {
    /// Dispatch decisions, oldest first (bounded to the longest window, one day).
    dispatched: VecDeque<Dispatched>,
    /// Failures seen, by CiRunFailed event id, until decided (or, when dispatched, until their
    /// task ends).
    failures: HashMap<String, FailureInfo>,
    /// Failures already decided (a failure is decided once).
    decided: HashSet<String>,
    /// Dispatched failures whose fix is in flight.
    in_flight: HashMap<String, InFlight>,
    /// Task id → failure id, for dispatched failures.
    tasks: HashMap<String, String>,
    /// Task id → the action decided for it.
    actions: HashMap<String, ActionDecision>,
    /// Open Sentinel pull requests: URL → failure id.
    prs: HashMap<String, String>,
    /// Last failed fix per (tenant, repository).
    last_fix_failure: HashMap<(String, String), DateTime<Utc>>,
    /// Merged Sentinel fixes per (tenant, repository): merge time and failure signature.
    merges: HashMap<(String, String), Vec<Merge>>,
    /// Rollback pauses per (tenant, repository).
    pauses: HashMap<(String, String), Pause>,
    /// Regressions per (tenant, repository, signature).
    regressions: HashMap<(String, String, String), u32>,
    /// Auto-merge pauses per (tenant, repository), from rollback decisions: until, and why.
    auto_merge_pauses: HashMap<(String, String), (DateTime<Utc>, String)>,
    /// `RollbackRequested` facts already decided (a rollback is decided once).
    rollbacks_decided: HashSet<String>,
}

fn key(tenant: &str, repository: &str) -> (String, String) {
    (tenant.to_owned(), repository.to_owned())
}

impl PolicyState {
    /// Folds one fact. Facts about fixes the state did not dispatch are ignored, so a replay
    /// that substitutes its own decisions folds only the consequences of those decisions.
    pub fn observe(&mut self, event: &Event, policy: &AutoRemediationPolicy) {
        let at = event.occurred_at;
        match &event.fact {
            Fact::CiRunFailed(f) => {
                self.failures.insert(
                    event.event_id.to_string(),
                    FailureInfo {
                        tenant: event.tenant.clone(),
                        repository: event.subject.clone(),
                        branch: f.branch.clone(),
                        author: f.author.clone(),
                        sentinel_authored: f.sentinel_authored,
                        signature: String::new(),
                    },
                );
            }
            Fact::FailureClassified(c) => {
                let Some(info) = self.failures.get_mut(&c.failure_event_id) else {
                    return;
                };
                if !info.signature.is_empty() {
                    return;
                }
                info.signature = c.signature.clone();
                if !info.sentinel_authored {
                    let (t, r, s) = (
                        info.tenant.clone(),
                        info.repository.clone(),
                        info.signature.clone(),
                    );
                    self.check_regression(&t, &r, &s, at, policy);
                }
            }
            Fact::DispatchDecided(d) => {
                self.apply_dispatch(&d.failure_event_id, d.decision, at);
            }
            Fact::TaskQueued(t) => {
                if let Some(f) = &t.failure_event_id
                    && self.in_flight.contains_key(f)
                {
                    self.tasks.insert(t.task_id.clone(), f.clone());
                }
            }
            Fact::ActionDecided(a) => self.apply_action(&a.task_id, a.decision, at),
            Fact::TaskCompleted(t) => {
                let failed = t.outcome != TaskOutcome::Completed;
                self.end_task(&t.task_id, failed, at);
            }
            Fact::TaskFailed(t) if !t.retryable => self.end_task(&t.task_id, true, at),
            Fact::TaskCancelled(t) => self.end_task(&t.task_id, false, at),
            Fact::FixNotFound(t) => self.end_task(&t.task_id, true, at),
            Fact::PullRequestOpened(p) => {
                let allowed = self.actions.get(&p.task_id).is_some_and(|a| {
                    matches!(
                        a,
                        ActionDecision::AutoMerge
                            | ActionDecision::OpenPr
                            | ActionDecision::RequireReview
                    )
                });
                if allowed && let Some(f) = self.tasks.get(&p.task_id) {
                    self.prs.insert(p.url.clone(), f.clone());
                }
            }
            Fact::PullRequestMerged(m) => {
                if let Some(f) = self.prs.remove(&m.url)
                    && let Some(info) = self.failures.get(&f)
                {
                    self.merges
                        .entry(key(&info.tenant, &info.repository))
                        .or_default()
                        .push((at, info.signature.clone()));
                }
            }
            Fact::PullRequestClosed(c) => {
                if let Some(f) = self.prs.remove(&c.url)
                    && let Some(info) = self.failures.get(&f)
                {
                    self.last_fix_failure
                        .insert(key(&info.tenant, &info.repository), at);
                }
            }
            Fact::RollbackDecided(r) => {
                self.apply_rollback(
                    &r.rollback_event_id,
                    &event.tenant,
                    &event.subject,
                    r.auto_merge_pause_seconds,
                    &r.url,
                    at,
                );
            }
            _ => {}
        }
    }

    /// Records a rollback decision (recorded or simulated): the requested rollback is
    /// decided, and auto-merge is paused for the repository for `pause_seconds` from `at`.
    pub fn apply_rollback(
        &mut self,
        rollback_event_id: &str,
        tenant: &str,
        repository: &str,
        pause_seconds: i64,
        fix_url: &str,
        at: DateTime<Utc>,
    ) {
        self.rollbacks_decided.insert(rollback_event_id.to_owned());
        if pause_seconds <= 0 {
            return;
        }
        let until = at + Duration::seconds(pause_seconds);
        let pause = self
            .auto_merge_pauses
            .entry(key(tenant, repository))
            .or_insert_with(|| (until, String::new()));
        if pause.0 <= until {
            *pause = (
                until,
                format!("the auto-merged fix {fix_url} was followed by the same failure"),
            );
        }
    }

    /// Whether the `RollbackRequested` fact `rollback_event_id` was already decided.
    pub fn rollback_decided(&self, rollback_event_id: &str) -> bool {
        self.rollbacks_decided.contains(rollback_event_id)
    }

    /// Until when auto-merge is paused for a repository at `at`, and why, if it is.
    pub fn auto_merge_paused(
        &self,
        tenant: &str,
        repository: &str,
        at: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, &str)> {
        self.auto_merge_pauses
            .get(&key(tenant, repository))
            .filter(|(until, _)| at < *until)
            .map(|(until, why)| (*until, why.as_str()))
    }

    fn check_regression(
        &mut self,
        tenant: &str,
        repo: &str,
        signature: &str,
        at: DateTime<Utc>,
        policy: &AutoRemediationPolicy,
    ) {
        let rules = &policy.rules_for(tenant, repo).rules.rollback_rules;
        let window = Duration::hours(i64::from(rules.regression_window_hours));
        let k = key(tenant, repo);
        let Some(merges) = self.merges.get_mut(&k) else {
            return;
        };
        merges.retain(|(t, _)| *t + window >= at);
        // Each merged fix regresses at most once.
        let Some(i) = merges.iter().rposition(|(t, _)| *t <= at) else {
            return;
        };
        let (merged_at, fixed_signature) = merges.remove(i);
        let (merged_at, fixed_signature) = (&merged_at, &fixed_signature);
        let same = fixed_signature == signature;
        let because = format!(
            "a {} failure followed a Sentinel fix merged {} minutes earlier",
            if same { "same-signature" } else { "new" },
            (at - *merged_at).num_minutes()
        );
        *self
            .regressions
            .entry((k.0.clone(), k.1.clone(), fixed_signature.clone()))
            .or_default() += 1;
        if rules.on_regression != RollbackAction::Ignore {
            self.pauses.insert(
                k,
                Pause {
                    until: at + Duration::hours(i64::from(rules.pause_hours)),
                    action: rules.on_regression,
                    because,
                },
            );
        }
    }

    /// Records the decision about a failure (recorded or simulated).
    pub fn apply_dispatch(
        &mut self,
        failure_id: &str,
        decision: DispatchDecision,
        at: DateTime<Utc>,
    ) {
        if !self.decided.insert(failure_id.to_owned()) {
            return;
        }
        if decision != DispatchDecision::Dispatch {
            self.failures.remove(failure_id);
            return;
        }
        let Some(info) = self.failures.get(failure_id) else {
            return;
        };
        self.dispatched.push_back(Dispatched {
            at,
            tenant: info.tenant.clone(),
            repository: info.repository.clone(),
            branch: info.branch.clone(),
            signature: info.signature.clone(),
        });
        self.in_flight.insert(
            failure_id.to_owned(),
            InFlight {
                tenant: info.tenant.clone(),
                repository: info.repository.clone(),
                since: at,
            },
        );
        // Keep two days: the longest window (a day) reaches a day past a request that
        // arrives up to a day late.
        let horizon = at - Duration::days(2);
        while self.dispatched.front().is_some_and(|d| d.at <= horizon) {
            self.dispatched.pop_front();
        }
        let stale = at - Duration::hours(IN_FLIGHT_HORIZON_HOURS);
        self.in_flight.retain(|_, f| f.since > stale);
    }

    /// Records the action decided for a task (recorded or simulated).
    pub fn apply_action(&mut self, task_id: &str, decision: ActionDecision, at: DateTime<Utc>) {
        if !self.tasks.contains_key(task_id) {
            return;
        }
        self.actions.insert(task_id.to_owned(), decision);
        if decision == ActionDecision::Reject {
            self.record_fix_failure(task_id, at);
        }
    }

    fn record_fix_failure(&mut self, task_id: &str, at: DateTime<Utc>) {
        if let Some(info) = self.tasks.get(task_id).and_then(|f| self.failures.get(f)) {
            self.last_fix_failure
                .insert(key(&info.tenant, &info.repository), at);
        }
    }

    fn end_task(&mut self, task_id: &str, failed: bool, at: DateTime<Utc>) {
        if failed {
            self.record_fix_failure(task_id, at);
        }
        if let Some(f) = self.tasks.get(task_id) {
            self.in_flight.remove(f);
        }
        self.actions.remove(task_id);
    }

    /// Ends a fix in flight by failure id (replay: fixes history never ran).
    pub fn end_in_flight(&mut self, failure_id: &str) {
        self.in_flight.remove(failure_id);
    }

    /// The failure, if seen and not yet decided.
    pub fn undecided(&self, failure_id: &str) -> Option<&FailureInfo> {
        if self.decided.contains(failure_id) {
            return None;
        }
        self.failures.get(failure_id)
    }

    /// What is known about a failure (seen, and undecided or dispatched).
    pub fn failure(&self, failure_id: &str) -> Option<&FailureInfo> {
        self.failures.get(failure_id)
    }

    /// The failure a task fixes, when this state dispatched it.
    pub fn task_failure(&self, task_id: &str) -> Option<&str> {
        self.tasks.get(task_id).map(String::as_str)
    }

    /// Whether the task's action was decided (by this state).
    pub fn action_of(&self, task_id: &str) -> Option<ActionDecision> {
        self.actions.get(task_id).copied()
    }

    fn count(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        pred: impl Fn(&Dispatched) -> bool,
    ) -> u32 {
        let n = self
            .dispatched
            .iter()
            .filter(|d| d.at > since && d.at <= until && pred(d))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The most dispatches matching `pred` in any rolling window `(s, s + width]` that
    /// contains `at` — what a new dispatch at `at` must fit into.
    ///
    /// When facts arrive in event-time order (one process, replay) nothing later than `at`
    /// is recorded yet and this is the window ending at `at`. When a request arrives late
    /// (on Kafka a tenant's repositories reach the gate through different partitions of
    /// `sentinel.events`), dispatches after `at` are already recorded, and a window ending
    /// after `at` may be the fuller one: counting only the window ending at `at` would let
    /// that window exceed the limit.
    fn busiest(
        &self,
        at: DateTime<Utc>,
        width: Duration,
        pred: impl Fn(&Dispatched) -> bool,
    ) -> u32 {
        let mut times: Vec<DateTime<Utc>> = self
            .dispatched
            .iter()
            .filter(|d| d.at > at - width && d.at < at + width && pred(d))
            .map(|d| d.at)
            .collect();
        times.sort_unstable();
        // The count of a window only grows when a later dispatch enters it, so the windows
        // worth checking start at `at - width` or where a dispatch after `at` enters.
        let starts = std::iter::once(at - width)
            .chain(times.iter().filter(|t| **t > at).map(|t| *t - width));
        let most = starts
            .map(|s| times.iter().filter(|t| **t > s && **t <= s + width).count())
            .max()
            .unwrap_or(0);
        u32::try_from(most).unwrap_or(u32::MAX)
    }

    fn in_flight_at(&self, tenant: &str, at: DateTime<Utc>) -> (u32, HashSet<&str>) {
        let stale = at - Duration::hours(IN_FLIGHT_HORIZON_HOURS);
        let mut n = 0u32;
        let mut repos = HashSet::new();
        // Fixes dispatched after `at` (a late request) are in flight alongside it too.
        for f in self.in_flight.values() {
            if f.tenant == tenant && f.since > stale {
                n += 1;
                repos.insert(f.repository.as_str());
            }
        }
        (n, repos)
    }

    /// Number of fixes in flight for a tenant at an event time.
    pub fn in_flight_count(&self, tenant: &str, at: DateTime<Utc>) -> u32 {
        self.in_flight_at(tenant, at).0
    }

    /// Dispatches for a tenant in the hour before `at` (inclusive).
    pub fn dispatched_in_hour(&self, tenant: &str, at: DateTime<Utc>) -> u32 {
        self.count(at - Duration::hours(1), at, |d| d.tenant == tenant)
    }
}

/// A request to start work on a classified failure.
#[derive(Debug, Clone)]
pub struct DispatchRequest<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Repository.
    pub repository: &'a str,
    /// Branch the failure happened on.
    pub branch: &'a str,
    /// Failure signature.
    pub signature: &'a str,
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

fn d<D>(decision: D, reason_code: &'static str, reason: String) -> Decision<D> {
    Decision {
        decision,
        reason_code,
        reason,
    }
}

/// Decides whether work may start on a failure. Reason codes:
///
/// | decision | reason codes |
/// |---|---|
/// | `loop_guard` | `sentinel_authored`, `max_attempts_per_signature`, `max_attempts_per_pr` |
/// | `not_fixable` | `failure_type_never_fixed` |
/// | `not_eligible` | `failure_type_not_eligible`, `branch_not_eligible`, `signature_disabled` |
/// | `cooldown` | `rollback_pause`, `cooldown_after_failure` |
/// | `rate_limited` | `max_fixes_per_hour`, `max_fixes_per_day`, `max_fixes_per_repo` |
/// | `blast_radius` | `max_concurrent_fixes`, `max_repos_affected` |
/// | `dispatch` | `within_limits` |
pub fn decide_dispatch(
    state: &PolicyState,
    req: &DispatchRequest<'_>,
    policy: &AutoRemediationPolicy,
) -> Decision<DispatchDecision> {
    use DispatchDecision as D;
    let c: &Compiled = policy.rules_for(req.tenant, req.repository);
    let rules = &c.rules;
    let tenant_rules = &policy.rules_for_tenant(req.tenant).rules;
    let at = req.at;

    let own_branch = req.branch.starts_with(&rules.branches.fix_branch_prefix);
    if rules.loop_guards.never_fix_own_commits && (req.sentinel_authored || own_branch) {
        return d(
            D::LoopGuard,
            "sentinel_authored",
            "the failing commit or branch is Sentinel's own; never fix a fix".into(),
        );
    }
    if !req.failure_type.is_fixable() || rules.failure_types.never_fix.contains(&req.failure_type) {
        return d(
            D::NotFixable,
            "failure_type_never_fixed",
            format!(
                "{} failures are never fixed automatically",
                req.failure_type
            ),
        );
    }
    if !rules.failure_types.eligible.contains(&req.failure_type) {
        return d(
            D::NotEligible,
            "failure_type_not_eligible",
            format!(
                "{} is not among the eligible failure types of {}",
                req.failure_type, req.repository
            ),
        );
    }
    if !matches(&c.eligible_branches, req.branch) {
        return d(
            D::NotEligible,
            "branch_not_eligible",
            format!("failures on branch {} are not eligible", req.branch),
        );
    }
    let disable_after = rules.rollback_rules.disable_signature_after_regressions;
    let regressions = state
        .regressions
        .get(&(
            req.tenant.to_owned(),
            req.repository.to_owned(),
            req.signature.to_owned(),
        ))
        .copied()
        .unwrap_or(0);
    if disable_after > 0 && regressions >= disable_after {
        return d(
            D::NotEligible,
            "signature_disabled",
            format!(
                "Sentinel's fixes of this failure regressed {regressions} times (limit {disable_after})"
            ),
        );
    }
    let sig = state.busiest(at, Duration::days(1), |x| {
        x.tenant == req.tenant && x.repository == req.repository && x.signature == req.signature
    });
    if sig >= rules.loop_guards.max_attempts_per_signature_per_day {
        return d(
            D::LoopGuard,
            "max_attempts_per_signature",
            format!(
                "{sig} of {} fix attempts for this failure signature in the last day",
                rules.loop_guards.max_attempts_per_signature_per_day
            ),
        );
    }
    if !matches(&c.protected_branches, req.branch) {
        let pr = state.busiest(at, Duration::days(1), |x| {
            x.tenant == req.tenant && x.repository == req.repository && x.branch == req.branch
        });
        if pr >= rules.loop_guards.max_attempts_per_pr {
            return d(
                D::LoopGuard,
                "max_attempts_per_pr",
                format!(
                    "{pr} of {} fix attempts on branch {} in the last day",
                    rules.loop_guards.max_attempts_per_pr, req.branch
                ),
            );
        }
    }
    let k = key(req.tenant, req.repository);
    if let Some(p) = state.pauses.get(&k)
        && p.action == RollbackAction::PauseRepository
        && at < p.until
    {
        return d(
            D::Cooldown,
            "rollback_pause",
            format!(
                "fixes of {} are paused until {} because {}",
                req.repository,
                p.until.format("%Y-%m-%d %H:%M UTC"),
                p.because
            ),
        );
    }
    if let Some(last) = state.last_fix_failure.get(&k) {
        let cooldown =
            Duration::minutes(i64::from(rules.rate_limits.cooldown_after_failure_minutes));
        if *last <= at && at < *last + cooldown {
            return d(
                D::Cooldown,
                "cooldown_after_failure",
                format!(
                    "a fix of {} failed {} minutes ago; cooldown is {} minutes",
                    req.repository,
                    (at - *last).num_minutes(),
                    rules.rate_limits.cooldown_after_failure_minutes
                ),
            );
        }
    }
    let limits = &tenant_rules.rate_limits;
    let hour = state.busiest(at, Duration::hours(1), |x| x.tenant == req.tenant);
    if hour >= limits.max_fixes_per_hour {
        return d(
            D::RateLimited,
            "max_fixes_per_hour",
            format!(
                "{hour} of {} fixes in the last hour",
                limits.max_fixes_per_hour
            ),
        );
    }
    let in_day = state.busiest(at, Duration::days(1), |x| x.tenant == req.tenant);
    if in_day >= limits.max_fixes_per_day {
        return d(
            D::RateLimited,
            "max_fixes_per_day",
            format!(
                "{in_day} of {} fixes in the last day",
                limits.max_fixes_per_day
            ),
        );
    }
    let repo = state.busiest(at, Duration::days(1), |x| {
        x.tenant == req.tenant && x.repository == req.repository
    });
    if repo >= rules.rate_limits.max_fixes_per_repo {
        return d(
            D::RateLimited,
            "max_fixes_per_repo",
            format!(
                "{repo} of {} fixes of this repository in the last day",
                rules.rate_limits.max_fixes_per_repo
            ),
        );
    }
    let blast = &tenant_rules.blast_radius;
    let (flying, repos) = state.in_flight_at(req.tenant, at);
    if flying >= blast.max_concurrent_fixes {
        return d(
            D::BlastRadius,
            "max_concurrent_fixes",
            format!(
                "{flying} of {} concurrent fixes in flight",
                blast.max_concurrent_fixes
            ),
        );
    }
    let n_repos = u32::try_from(repos.len()).unwrap_or(u32::MAX);
    if !repos.contains(req.repository) && n_repos >= blast.max_repos_affected_simultaneously {
        return d(
            D::BlastRadius,
            "max_repos_affected",
            format!(
                "{n_repos} of {} repositories have a fix in flight",
                blast.max_repos_affected_simultaneously
            ),
        );
    }
    d(
        D::Dispatch,
        "within_limits",
        format!(
            "{} failure, {hour} of {} fixes this hour, {flying} of {} in flight",
            req.failure_type, limits.max_fixes_per_hour, blast.max_concurrent_fixes
        ),
    )
}

/// A validated (or failed) fix candidate, for the action decision.
#[derive(Debug, Clone)]
pub struct ActionRequest<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Repository.
    pub repository: &'a str,
    /// Whether every validation step passed.
    pub passed: bool,
    /// Confidence in the fix.
    pub confidence: f64,
    /// Files the fix changes.
    pub files_changed: &'a [String],
    /// The fix's unified diff, when known (dependency additions).
    pub diff: Option<&'a str>,
    /// Protected paths PatchBot reported the fix touches.
    pub protected_paths_touched: &'a [String],
    /// Event time.
    pub at: DateTime<Utc>,
}

/// Dependencies a unified diff adds to manifest files: names on added lines of manifests that
/// no removed line of the same file names.
pub fn added_dependencies(diff: &str, manifests: &globset::GlobSet) -> Vec<String> {
    fn name(line: &str) -> Option<String> {
        let t = line
            .trim()
            .trim_matches(|c| c == '"' || c == '\'' || c == ',');
        if t.is_empty() || t.starts_with('#') || t.starts_with("//") || t.starts_with('[') {
            return None;
        }
        let n: String = t
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@'))
            .collect();
        (!n.is_empty()).then(|| n.to_ascii_lowercase())
    }
    let mut out = Vec::new();
    let mut file: Option<String> = None;
    let mut added: Vec<String> = Vec::new();
    let mut removed: HashSet<String> = HashSet::new();
    let mut flush =
        |file: &Option<String>, added: &mut Vec<String>, removed: &mut HashSet<String>| {
            if file.as_deref().is_some_and(|f| matches(manifests, f)) {
                out.extend(added.drain(..).filter(|a| !removed.contains(a)));
            }
            added.clear();
            removed.clear();
        };
    for line in diff.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            flush(&file, &mut added, &mut removed);
            let p = path.trim();
            file = (p != "/dev/null").then(|| p.strip_prefix("b/").unwrap_or(p).to_owned());
        } else if line.starts_with("--- ") {
        } else if let Some(l) = line.strip_prefix('+') {
            added.extend(name(l));
        } else if let Some(l) = line.strip_prefix('-') {
            removed.extend(name(l));
        }
    }
    flush(&file, &mut added, &mut removed);
    out
}

/// Decides what to do with a validated (or failed) fix candidate. Reason codes:
///
/// | decision | reason codes |
/// |---|---|
/// | `reject` | `validation_failed`, `below_pr_threshold` |
/// | `require_review` | `protected_paths`, `security_sensitive`, `dependency_addition`, `production_config`, `rollback_review`, `low_confidence` |
/// | `auto_merge` | `high_confidence` |
/// | `open_pr` | `confident`, `auto_merge_paused` |
pub fn decide_action(
    state: &PolicyState,
    req: &ActionRequest<'_>,
    policy: &AutoRemediationPolicy,
) -> Decision<ActionDecision> {
    use ActionDecision as A;
    let c = policy.rules_for(req.tenant, req.repository);
    let t = &c.rules.confidence_thresholds;
    let gates = &c.rules.review_gates;
    let confidence = req.confidence;
    if !req.passed {
        return d(
            A::Reject,
            "validation_failed",
            "the fix did not pass validation".into(),
        );
    }
    let mut protected: Vec<&str> = req
        .protected_paths_touched
        .iter()
        .map(String::as_str)
        .chain(
            req.files_changed
                .iter()
                .filter(|f| matches(&c.protected, f))
                .map(String::as_str),
        )
        .collect();
    protected.sort_unstable();
    protected.dedup();
    if !protected.is_empty() {
        return d(
            A::RequireReview,
            "protected_paths",
            format!("the fix changes protected paths: {}", protected.join(", ")),
        );
    }
    if gates.require_review_for_security_changes {
        let security: Vec<&str> = req
            .files_changed
            .iter()
            .filter(|f| matches(&c.security, f))
            .map(String::as_str)
            .collect();
        if !security.is_empty() {
            return d(
                A::RequireReview,
                "security_sensitive",
                format!(
                    "the fix changes security-sensitive paths: {}",
                    security.join(", ")
                ),
            );
        }
        if let Some(diff) = req.diff {
            let deps = added_dependencies(diff, &c.manifests);
            if !deps.is_empty() {
                return d(
                    A::RequireReview,
                    "dependency_addition",
                    format!("the fix adds dependencies: {}", deps.join(", ")),
                );
            }
        }
    }
    if gates.require_review_for_production_configs {
        let prod: Vec<&str> = req
            .files_changed
            .iter()
            .filter(|f| matches(&c.production, f))
            .map(String::as_str)
            .collect();
        if !prod.is_empty() {
            return d(
                A::RequireReview,
                "production_config",
                format!(
                    "the fix changes production configuration: {}",
                    prod.join(", ")
                ),
            );
        }
    }
    if let Some(p) = state.pauses.get(&key(req.tenant, req.repository))
        && p.action == RollbackAction::RequireReview
        && req.at < p.until
    {
        return d(
            A::RequireReview,
            "rollback_review",
            format!(
                "fixes of {} need review because {}",
                req.repository, p.because
            ),
        );
    }
    if confidence < t.require_review_below {
        return d(
            A::RequireReview,
            "low_confidence",
            format!(
                "confidence {confidence:.2} is below the review threshold {:.2}",
                t.require_review_below
            ),
        );
    }
    if confidence < t.auto_create_pr_threshold {
        return d(
            A::Reject,
            "below_pr_threshold",
            format!(
                "confidence {confidence:.2} is below the pull-request threshold {:.2}",
                t.auto_create_pr_threshold
            ),
        );
    }
    if confidence >= t.auto_merge_threshold {
        if let Some((until, why)) = state.auto_merge_paused(req.tenant, req.repository, req.at) {
            return d(
                A::OpenPr,
                "auto_merge_paused",
                format!(
                    "confidence {confidence:.2} would auto-merge, but auto-merge of {} is paused until {} because {why}",
                    req.repository,
                    until.format("%Y-%m-%d %H:%M UTC"),
                ),
            );
        }
        return d(
            A::AutoMerge,
            "high_confidence",
            format!(
                "confidence {confidence:.2} is at or above the auto-merge threshold {:.2}",
                t.auto_merge_threshold
            ),
        );
    }
    d(
        A::OpenPr,
        "confident",
        format!(
            "confidence {confidence:.2} is at or above the pull-request threshold {:.2}",
            t.auto_create_pr_threshold
        ),
    )
}

/// A rollback the tracker requested (`RollbackRequested`), for the rollback decision.
#[derive(Debug, Clone)]
pub struct RollbackRequest<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Repository (the fix chain's subject).
    pub repository: &'a str,
    /// The task whose fix is concerned.
    pub task_id: &'a str,
    /// The merged fix pull request's URL.
    pub url: &'a str,
    /// The base branch that failed again.
    pub base: &'a str,
    /// The commit to revert, when known.
    pub revert_commit: Option<&'a str>,
    /// Seconds from the merge to the new failure (event time).
    pub seconds_after_merge: f64,
    /// The auto-merge pause the tracker requests, seconds.
    pub requested_cooldown_seconds: i64,
}

/// The rollback decision with what it allows.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackVerdict {
    /// Revert or not, with the reason.
    pub decision: Decision<RollbackDecision>,
    /// The only branch a revert pull request may be opened from (when reverting).
    pub revert_branch: Option<String>,
    /// How long auto-merge is paused for the repository, seconds (0: not at all).
    pub auto_merge_pause_seconds: i64,
}

/// Prefix of the branches revert pull requests are opened from.
pub const REVERT_BRANCH_PREFIX: &str = "sentinel/revert-";

/// The revert branch of a task's fix: `sentinel/revert-` + the first 12 hex digits of the
/// task id (as its fix branch `sentinel/fix-…`), or of the id's SHA-256 when it has fewer
/// than 8.
pub fn revert_branch(task_id: &str) -> String {
    let mut short: String = task_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    if short.len() < 8 {
        use sha2::{Digest, Sha256};
        short = hex::encode(Sha256::digest(task_id.as_bytes()))[..12].to_owned();
    }
    format!("{REVERT_BRANCH_PREFIX}{short}")
}

/// Decides what a requested rollback does. Pure: a function of (request, policy). Reason
/// codes:
///
/// | decision | reason codes |
/// |---|---|
/// | `no_revert` | `outside_regression_window` (no pause), `revert_disabled`, `revert_commit_unknown` |
/// | `revert` | `same_signature_after_auto_merge` |
///
/// Except outside the window, auto-merge is paused for the repository for
/// `rollback_rules.auto_merge_pause_hours`, or the tracker's requested cooldown when unset.
pub fn decide_rollback(
    req: &RollbackRequest<'_>,
    policy: &AutoRemediationPolicy,
) -> RollbackVerdict {
    use RollbackDecision as R;
    let rules = &policy
        .rules_for(req.tenant, req.repository)
        .rules
        .rollback_rules;
    let minutes = (req.seconds_after_merge / 60.0).round();
    let window_hours = rules.regression_window_hours;
    if req.seconds_after_merge > f64::from(window_hours) * 3600.0 {
        return RollbackVerdict {
            decision: d(
                R::NoRevert,
                "outside_regression_window",
                format!(
                    "the failure came {minutes} minutes after the merge, beyond the regression window of {window_hours} hours"
                ),
            ),
            revert_branch: None,
            auto_merge_pause_seconds: 0,
        };
    }
    let pause = rules
        .auto_merge_pause_hours
        .map_or(req.requested_cooldown_seconds, |h| i64::from(h) * 3600)
        .max(0);
    let pause_text = if pause > 0 {
        format!(
            "auto-merge of {} paused for {:.1} hours",
            req.repository,
            pause as f64 / 3600.0
        )
    } else {
        "auto-merge not paused".to_owned()
    };
    let decision = if !rules.revert_auto_merged_fixes {
        d(
            R::NoRevert,
            "revert_disabled",
            format!("rollback_rules.revert_auto_merged_fixes is off; {pause_text}"),
        )
    } else if req.revert_commit.is_none_or(|c| c.trim().is_empty()) {
        d(
            R::NoRevert,
            "revert_commit_unknown",
            format!(
                "the merge commit of {} is unknown, so it cannot be reverted; {pause_text}",
                req.url
            ),
        )
    } else {
        d(
            R::Revert,
            "same_signature_after_auto_merge",
            format!(
                "CI on {} failed with the fix's signature {minutes} minutes after Sentinel auto-merged {}; reverting it, {pause_text}",
                req.base, req.url
            ),
        )
    };
    RollbackVerdict {
        revert_branch: (decision.decision == R::Revert).then(|| revert_branch(req.task_id)),
        decision,
        auto_merge_pause_seconds: pause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RateLimits, Rules};
    use sentinel_events::facts::{CiRunFailed, FailureClassified};

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("ts")
    }

    fn req(at: DateTime<Utc>) -> DispatchRequest<'static> {
        DispatchRequest {
            tenant: "t",
            repository: "r",
            branch: "main",
            signature: "formatting:x",
            failure_type: FailureType::Formatting,
            confidence: 0.95,
            sentinel_authored: false,
            at,
        }
    }

    fn policy(f: impl FnOnce(&mut Rules)) -> AutoRemediationPolicy {
        let mut r = Rules::default();
        f(&mut r);
        AutoRemediationPolicy::build(r, Default::default(), Default::default(), "t")
            .expect("policy")
    }

    /// Feeds a failure + classification into the state and dispatches it if allowed.
    fn step(
        state: &mut PolicyState,
        p: &AutoRemediationPolicy,
        i: usize,
        at: DateTime<Utc>,
        repo: &str,
        signature: &str,
    ) -> Decision<DispatchDecision> {
        let f = Event::origin(
            CiRunFailed {
                source: "generic".into(),
                delivery_id: None,
                repository: repo.into(),
                branch: "main".into(),
                commit: "c".into(),
                command: None,
                log: String::new(),
                log_size_bytes: 0,
                run_url: None,
                job_name: None,
                author: None,
                sentinel_authored: false,
            },
            Some(&format!("f{i}")),
            "t",
            repo,
            at,
            "test@0",
        );
        let c = f.caused(
            FailureClassified {
                failure_event_id: f.event_id.to_string(),
                failure_type: FailureType::Formatting,
                confidence: 0.95,
                method: "pattern".into(),
                pattern_id: None,
                tool: None,
                signature: signature.into(),
                files: vec![],
                lines: vec![],
                modules: vec![],
                symbols: vec![],
            },
            "classifier@0",
            0,
            None,
        );
        state.observe(&f, p);
        state.observe(&c, p);
        let r = DispatchRequest {
            repository: repo,
            signature,
            ..req(at)
        };
        let dec = decide_dispatch(state, &r, p);
        state.apply_dispatch(&f.event_id.to_string(), dec.decision, at);
        dec
    }

    #[test]
    fn twenty_requests_in_quick_succession_dispatch_exactly_ten() {
        let p = policy(|r| {
            r.rate_limits = RateLimits {
                max_fixes_per_repo: 100,
                ..Default::default()
            };
            r.blast_radius.max_concurrent_fixes = 100;
            r.loop_guards.max_attempts_per_signature_per_day = 100;
        });
        let mut state = PolicyState::default();
        let mut counts = (0, 0);
        for i in 0..20 {
            let dec = step(
                &mut state,
                &p,
                i,
                t0() + Duration::seconds(i as i64),
                "r",
                &format!("s{i}"),
            );
            match dec.decision {
                DispatchDecision::Dispatch => counts.0 += 1,
                DispatchDecision::RateLimited => {
                    assert_eq!(dec.reason_code, "max_fixes_per_hour");
                    assert_eq!(dec.reason, "10 of 10 fixes in the last hour");
                    counts.1 += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(counts, (10, 10));
        // An hour later (event time) the window has moved on.
        let later = req(t0() + Duration::seconds(3601 + 20));
        assert_eq!(
            decide_dispatch(&state, &later, &p).decision,
            DispatchDecision::Dispatch
        );
    }

    /// Requests arriving out of event-time order (on Kafka a tenant's repositories reach
    /// the gate through different partitions): ten dispatches in the 50 minutes after t0,
    /// then a request stamped t0 arrives. The hour ending at t0 is empty, but the hour
    /// (t0 - 10 min, t0 + 50 min] would hold eleven: rate_limited. A request stamped two
    /// hours earlier fits every window it falls into.
    #[test]
    fn late_requests_must_fit_every_window_they_fall_into() {
        let p = policy(|r| {
            r.rate_limits = RateLimits {
                max_fixes_per_repo: 100,
                ..Default::default()
            };
            r.blast_radius.max_concurrent_fixes = 100;
            r.loop_guards.max_attempts_per_signature_per_day = 100;
        });
        let mut state = PolicyState::default();
        for i in 0..10 {
            let at = t0() + Duration::minutes(5 * (i as i64 + 1));
            let dec = step(&mut state, &p, i, at, "r", &format!("s{i}"));
            assert_eq!(dec.decision, DispatchDecision::Dispatch, "{i}");
        }
        let late = step(&mut state, &p, 10, t0(), "r", "s10");
        assert_eq!(late.decision, DispatchDecision::RateLimited);
        assert_eq!(late.reason, "10 of 10 fixes in the last hour");
        let much_earlier = step(&mut state, &p, 11, t0() - Duration::hours(2), "r", "s11");
        assert_eq!(much_earlier.decision, DispatchDecision::Dispatch);
    }

    #[test]
    fn blast_radius_counts_fixes_in_flight() {
        let p = AutoRemediationPolicy::default();
        let mut state = PolicyState::default();
        for i in 0..3 {
            let dec = step(&mut state, &p, i, t0(), &format!("r{i}"), "s");
            assert_eq!(dec.decision, DispatchDecision::Dispatch, "{dec:?}");
        }
        let dec = step(&mut state, &p, 9, t0(), "r9", "s");
        assert_eq!(dec.decision, DispatchDecision::BlastRadius);
        assert_eq!(dec.reason, "3 of 3 concurrent fixes in flight");
    }

    #[test]
    fn loop_guard_per_signature_and_eligibility() {
        let p = policy(|r| {
            r.rate_limits.max_fixes_per_repo = 100;
            r.blast_radius.max_concurrent_fixes = 100;
            r.failure_types.eligible = vec![FailureType::Formatting, FailureType::Linting];
        });
        let mut state = PolicyState::default();
        for i in 0..3 {
            assert_eq!(
                step(&mut state, &p, i, t0(), "r", "same").decision,
                DispatchDecision::Dispatch
            );
        }
        let dec = step(&mut state, &p, 3, t0(), "r", "same");
        assert_eq!(
            (dec.decision, dec.reason_code),
            (DispatchDecision::LoopGuard, "max_attempts_per_signature")
        );
        let typing = DispatchRequest {
            failure_type: FailureType::TypeChecking,
            ..req(t0())
        };
        assert_eq!(
            decide_dispatch(&state, &typing, &p).reason_code,
            "failure_type_not_eligible"
        );
        let infra = DispatchRequest {
            failure_type: FailureType::Infrastructure,
            ..req(t0())
        };
        assert_eq!(
            decide_dispatch(&state, &infra, &p).decision,
            DispatchDecision::NotFixable
        );
        let own = DispatchRequest {
            branch: "sentinel/fix-0123456789ab",
            ..req(t0())
        };
        assert_eq!(
            decide_dispatch(&state, &own, &p).decision,
            DispatchDecision::LoopGuard
        );
    }

    fn action(files: &[String], diff: Option<&str>, confidence: f64) -> ActionDecision {
        let req = ActionRequest {
            tenant: "t",
            repository: "r",
            passed: true,
            confidence,
            files_changed: files,
            diff,
            protected_paths_touched: &[],
            at: t0(),
        };
        decide_action(
            &PolicyState::default(),
            &req,
            &AutoRemediationPolicy::default(),
        )
        .decision
    }

    #[test]
    fn action_follows_thresholds_and_gates() {
        let src = vec!["src/app.py".to_owned()];
        assert_eq!(action(&src, None, 0.95), ActionDecision::AutoMerge);
        assert_eq!(action(&src, None, 0.8), ActionDecision::OpenPr);
        assert_eq!(action(&src, None, 0.5), ActionDecision::RequireReview);
        let wf = vec![".github/workflows/ci.yml".to_owned()];
        assert_eq!(action(&wf, None, 0.99), ActionDecision::RequireReview);
        let auth = vec!["src/auth/session.py".to_owned()];
        assert_eq!(action(&auth, None, 0.99), ActionDecision::RequireReview);
        let prod = vec!["deploy/values.yaml".to_owned()];
        assert_eq!(action(&prod, None, 0.99), ActionDecision::RequireReview);
        let req = vec!["requirements.txt".to_owned()];
        let diff = "--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1 +1,2 @@\n requests==2.0\n+leftpad==1.0\n";
        assert_eq!(
            action(&req, Some(diff), 0.99),
            ActionDecision::RequireReview
        );
        let bump = "--- a/requirements.txt\n+++ b/requirements.txt\n@@ -1 +1 @@\n-requests==2.0\n+requests==2.1\n";
        assert_eq!(action(&req, Some(bump), 0.99), ActionDecision::AutoMerge);
        let p = policy(|r| {
            r.confidence_thresholds.require_review_below = 0.5;
        });
        let r = ActionRequest {
            tenant: "t",
            repository: "r",
            passed: true,
            confidence: 0.6,
            files_changed: &src,
            diff: None,
            protected_paths_touched: &[],
            at: t0(),
        };
        assert_eq!(
            decide_action(&PolicyState::default(), &r, &p).reason_code,
            "below_pr_threshold"
        );
    }

    fn rollback(
        seconds_after_merge: f64,
        commit: Option<&'static str>,
    ) -> RollbackRequest<'static> {
        RollbackRequest {
            tenant: "t",
            repository: "r",
            task_id: "3f2a9c41-77d0-4e1b-9d2f-0c5e8a6b1d22",
            url: "https://forge.example/r/pull/7",
            base: "main",
            revert_commit: commit,
            seconds_after_merge,
            requested_cooldown_seconds: 7200,
        }
    }

    #[test]
    fn a_same_signature_regression_is_reverted_and_pauses_auto_merge() {
        let p = AutoRemediationPolicy::default();
        let v = decide_rollback(&rollback(600.0, Some("abc123")), &p);
        assert_eq!(
            (v.decision.decision, v.decision.reason_code),
            (RollbackDecision::Revert, "same_signature_after_auto_merge")
        );
        assert_eq!(
            v.revert_branch.as_deref(),
            Some("sentinel/revert-3f2a9c4177d0")
        );
        // Unset in the policy: the tracker's requested cooldown.
        assert_eq!(v.auto_merge_pause_seconds, 7200);
        assert!(
            v.decision.reason.contains("10 minutes"),
            "{}",
            v.decision.reason
        );

        // The policy's own pause wins; reverting can be switched off (the pause stays).
        let p = policy(|r| {
            r.rollback_rules.auto_merge_pause_hours = Some(48);
            r.rollback_rules.revert_auto_merged_fixes = false;
        });
        let v = decide_rollback(&rollback(600.0, Some("abc123")), &p);
        assert_eq!(
            (v.decision.decision, v.decision.reason_code),
            (RollbackDecision::NoRevert, "revert_disabled")
        );
        assert_eq!(
            (v.revert_branch, v.auto_merge_pause_seconds),
            (None, 48 * 3600)
        );

        // Without the merge commit there is nothing to revert.
        let v = decide_rollback(&rollback(600.0, None), &AutoRemediationPolicy::default());
        assert_eq!(v.decision.reason_code, "revert_commit_unknown");
        assert_eq!(v.auto_merge_pause_seconds, 7200);

        // Beyond the policy's regression window it is no regression at all.
        let p = policy(|r| r.rollback_rules.regression_window_hours = 1);
        let v = decide_rollback(&rollback(3601.0, Some("abc123")), &p);
        assert_eq!(
            (
                v.decision.decision,
                v.decision.reason_code,
                v.auto_merge_pause_seconds
            ),
            (RollbackDecision::NoRevert, "outside_regression_window", 0)
        );
        let v = decide_rollback(&rollback(3600.0, Some("abc123")), &p);
        assert_eq!(v.decision.decision, RollbackDecision::Revert);
    }

    #[test]
    fn revert_branches_mirror_fix_branches_and_survive_odd_task_ids() {
        assert_eq!(
            revert_branch("3f2a9c41-77d0-4e1b-9d2f-0c5e8a6b1d22"),
            "sentinel/revert-3f2a9c4177d0"
        );
        let odd = revert_branch("task-xyz");
        assert!(
            odd.starts_with(REVERT_BRANCH_PREFIX) && odd.len() == REVERT_BRANCH_PREFIX.len() + 12
        );
        assert_ne!(odd, revert_branch("task-xyw"));
    }

    #[test]
    fn auto_merge_is_paused_per_repository_until_the_pause_ends() {
        let p = AutoRemediationPolicy::default();
        let mut state = PolicyState::default();
        let decided = Event::origin(
            sentinel_events::facts::RollbackDecided {
                rollback_event_id: "rb".into(),
                task_id: "task".into(),
                repository: "r".into(),
                url: "https://forge.example/r/pull/7".into(),
                base: "main".into(),
                revert_commit: Some("abc".into()),
                decision: RollbackDecision::Revert,
                revert_branch: Some("sentinel/revert-abc".into()),
                auto_merge_pause_seconds: 3600,
                reason_code: "same_signature_after_auto_merge".into(),
                reason: "x".into(),
                policy_version: p.version(),
            },
            Some("rb-decided"),
            "t",
            "r",
            t0(),
            "policy@0",
        );
        state.observe(&decided, &p);
        assert!(state.rollback_decided("rb"));
        let src = vec!["src/app.py".to_owned()];
        let at = |secs: i64, repository: &'static str| ActionRequest {
            tenant: "t",
            repository,
            passed: true,
            confidence: 0.95,
            files_changed: &src,
            diff: None,
            protected_paths_touched: &[],
            at: t0() + Duration::seconds(secs),
        };
        let d = decide_action(&state, &at(60, "r"), &p);
        assert_eq!(
            (d.decision, d.reason_code),
            (ActionDecision::OpenPr, "auto_merge_paused")
        );
        assert!(d.reason.contains("pull/7"), "{}", d.reason);
        // Other repositories, and this one once the hour is over, auto-merge again.
        assert_eq!(
            decide_action(&state, &at(60, "other"), &p).decision,
            ActionDecision::AutoMerge
        );
        assert_eq!(
            decide_action(&state, &at(3600, "r"), &p).decision,
            ActionDecision::AutoMerge
        );
        // Below the auto-merge bar nothing changes.
        let low = ActionRequest {
            confidence: 0.8,
            ..at(60, "r")
        };
        assert_eq!(decide_action(&state, &low, &p).reason_code, "confident");
    }

    #[test]
    fn new_rollback_keys_keep_the_version_of_policies_that_do_not_set_them() {
        let before = AutoRemediationPolicy::default().version();
        let spelled = AutoRemediationPolicy::from_toml(
            "t",
            "[rollback_rules]\nrevert_auto_merged_fixes = true\n",
        )
        .expect("parse");
        assert_eq!(spelled.version(), before);
        let changed =
            AutoRemediationPolicy::from_toml("t", "[rollback_rules]\nauto_merge_pause_hours = 6\n")
                .expect("parse");
        assert_ne!(changed.version(), before);
        assert_eq!(changed.rules.rollback_rules.auto_merge_pause_hours, Some(6));
    }
}
